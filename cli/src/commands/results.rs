//! `-job results`, and the result fetching that `-job run` shares: output streams from
//! `jobResults`/`jobLatestResults`, output files and exit statuses from `jobFinalResults`.

use std::collections::BTreeMap;
use std::path::Path;

use xgrid_protocol::messages::{
    ClientRequest, ControllerReply, JobQuery, TaskOutputs, TaskStreams,
};
use xgrid_protocol::plist::Dictionary;

use crate::client::Client;
use crate::error::CliError;
use crate::output::{write_task_files, StreamSinks};

fn query(job: &str) -> JobQuery {
    JobQuery {
        job_identifier: job.to_string(),
        subscription: None,
    }
}

/// `-job results`: every task's output so far (or task `task`'s), then, with `-out`, the
/// output files of the finished tasks.
pub(super) async fn results(
    client: &Client,
    job: &str,
    task: Option<&str>,
    sinks: &mut StreamSinks,
    out_dir: Option<&Path>,
) -> Result<u8, CliError> {
    let request = ClientRequest::JobResults(query(job));
    let payload = client.call(&request).await?;
    let mut streams = read_streams(&request, &payload)?;
    if let Some(task) = task {
        streams.retain(|t, _| t == task);
        if streams.is_empty() {
            return Err(CliError::NoSuchTask {
                job: job.to_string(),
                task: task.to_string(),
            });
        }
    }
    sinks.write_streams(&streams)?;
    if let Some(dir) = out_dir {
        let mut outputs = final_results(client, job).await?;
        if let Some(task) = task {
            outputs.retain(|t, _| t == task);
        }
        write_task_files(dir, &outputs)?;
    }
    Ok(0)
}

/// Fetch and write the output that arrived since the previous `jobLatestResults`.
pub(super) async fn latest_results(
    client: &Client,
    job: &str,
    sinks: &mut StreamSinks,
) -> Result<(), CliError> {
    let request = ClientRequest::JobLatestResults(query(job));
    let payload = client.call(&request).await?;
    sinks.write_streams(&read_streams(&request, &payload)?)
}

/// Output files and exit statuses of the job's finished tasks.
pub(super) async fn final_results(
    client: &Client,
    job: &str,
) -> Result<BTreeMap<String, TaskOutputs>, CliError> {
    let request = ClientRequest::JobFinalResults(query(job));
    let payload = client.call(&request).await?;
    match ControllerReply::from_payload(request.name(), &payload) {
        Ok(ControllerReply::JobFinalResults(tasks)) => Ok(tasks),
        Ok(_) => Err(unexpected(&request)),
        Err(e) => Err(CliError::BadReply {
            request: request.name().to_string(),
            reason: e.to_string(),
        }),
    }
}

fn read_streams(
    request: &ClientRequest,
    payload: &Dictionary,
) -> Result<BTreeMap<String, TaskStreams>, CliError> {
    match ControllerReply::from_payload(request.name(), payload) {
        Ok(ControllerReply::JobResults(tasks) | ControllerReply::JobLatestResults(tasks)) => {
            Ok(tasks)
        }
        Ok(_) => Err(unexpected(request)),
        Err(e) => Err(CliError::BadReply {
            request: request.name().to_string(),
            reason: e.to_string(),
        }),
    }
}

fn unexpected(request: &ClientRequest) -> CliError {
    CliError::BadReply {
        request: request.name().to_string(),
        reason: "the reply has an unexpected shape".to_string(),
    }
}
