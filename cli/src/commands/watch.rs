//! Following a job until it ends: `-job run` (submit, stream the output, fetch the results,
//! exit with the task's status) and `-job wait` (progress bar, final attributes).
//!
//! The client subscribes to the job's attributes; the controller then sends `jobAttributes`
//! and `jobLatestResultsAvailable` notifications. In case a controller ignores the
//! subscription, the attributes and the latest output are also fetched whenever
//! [`POLL_INTERVAL`] passes without a notification.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use xgrid_protocol::envelope::MessageType;
use xgrid_protocol::messages::{
    ClientNotification, ClientRequest, ControllerReply, JobAttributes, JobQuery, JobStatus,
    JobSubmission, Subscription, TaskOutputs,
};
use xgrid_protocol::peer::PeerError;
use xgrid_protocol::plist::Dictionary;

use super::results::{final_results, latest_results};
use crate::args::Format;
use crate::client::Client;
use crate::error::CliError;
use crate::output::{print_payload, task_order, write_task_files, StreamSinks};
use crate::progress::ProgressBar;

/// How long to wait for a notification before asking the controller directly.
pub const POLL_INTERVAL: Duration = Duration::from_secs(2);

/// `-job run`: returns the task's exit status once the job has finished.
pub(super) async fn run(
    client: &mut Client,
    submission: JobSubmission,
    sinks: &mut StreamSinks,
    out_dir: Option<&Path>,
) -> Result<u8, CliError> {
    let request = ClientRequest::JobSubmission(submission);
    let reply = client.call(&request).await?;
    let job = match ControllerReply::from_payload(request.name(), &reply) {
        Ok(ControllerReply::JobSubmission { job_identifier }) => job_identifier,
        _ => {
            return Err(CliError::BadReply {
                request: request.name().to_string(),
                reason: "it carries no jobIdentifier".to_string(),
            })
        }
    };
    let mut watch = JobWatch::start(client, &job).await?;
    loop {
        if std::mem::take(&mut watch.new_output) {
            latest_results(client, &job, sinks).await?;
        }
        if watch.is_over() {
            break;
        }
        watch.wait_for_change(client).await?;
    }
    // Whatever arrived between the last fetch and the end.
    latest_results(client, &job, sinks).await?;
    let outputs = final_results(client, &job).await?;
    if let Some(dir) = out_dir {
        write_task_files(dir, &outputs)?;
    }
    match watch.attributes.job_status {
        JobStatus::Failed => Err(CliError::JobFailed {
            job,
            error: watch.attributes.error.clone(),
        }),
        JobStatus::Canceled => Err(CliError::JobCanceled { job }),
        _ => Ok(exit_status(&outputs)),
    }
}

/// `-job wait`: prints the final attributes; a failed or canceled job is also an error.
pub(super) async fn wait(client: &mut Client, job: &str, format: Format) -> Result<u8, CliError> {
    let mut progress = ProgressBar::on_stderr();
    let mut watch = JobWatch::start(client, job).await?;
    progress.show(&watch.attributes);
    while !watch.is_over() {
        watch.wait_for_change(client).await?;
        progress.show(&watch.attributes);
    }
    progress.finish();
    print_payload(&watch.payload, format)?;
    match watch.attributes.job_status {
        JobStatus::Failed => Err(CliError::JobFailed {
            job: job.to_string(),
            error: watch.attributes.error.clone(),
        }),
        JobStatus::Canceled => Err(CliError::JobCanceled {
            job: job.to_string(),
        }),
        _ => Ok(0),
    }
}

/// The exit status for a finished job: the first non-zero task status in task order; a
/// status outside 1..=255 (a signal, a negative number) becomes 1.
pub fn exit_status(tasks: &BTreeMap<String, TaskOutputs>) -> u8 {
    for task in task_order(tasks.keys()) {
        match tasks.get(task).and_then(|t| t.termination_status) {
            None | Some(0) => {}
            Some(status) => return u8::try_from(status).unwrap_or(1),
        }
    }
    0
}

/// What is known of the job being followed.
struct JobWatch {
    job: String,
    attributes: JobAttributes,
    /// The latest `{jobAttributes = …}` payload, as `-job attributes` would print it.
    payload: Dictionary,
    /// Whether output may be waiting at the controller.
    new_output: bool,
}

impl JobWatch {
    /// Subscribe to the job's attributes and take the current ones.
    async fn start(client: &Client, job: &str) -> Result<JobWatch, CliError> {
        let subscription = Some(Subscription {
            should_subscribe: true,
            predicate: None,
        });
        let (attributes, payload) = fetch_attributes(client, job, subscription).await?;
        Ok(JobWatch {
            job: job.to_string(),
            attributes,
            payload,
            new_output: true,
        })
    }

    fn is_over(&self) -> bool {
        matches!(
            self.attributes.job_status,
            JobStatus::Finished | JobStatus::Failed | JobStatus::Canceled
        )
    }

    /// Wait for a notification about the job, or poll after [`POLL_INTERVAL`].
    async fn wait_for_change(&mut self, client: &mut Client) -> Result<(), CliError> {
        let message = tokio::select! {
            message = client.next_message() => Some(message),
            () = tokio::time::sleep(POLL_INTERVAL) => None,
        };
        match message {
            Some(None) => Err(CliError::Peer(PeerError::ConnectionLost {
                reason: "the controller ended the connection while the job was running".to_string(),
            })),
            Some(Some(envelope)) => {
                if envelope.message_type != MessageType::Notification {
                    return Ok(());
                }
                match ClientNotification::from_envelope(&envelope) {
                    Ok(ClientNotification::JobAttributes {
                        job_identifier,
                        attributes,
                    }) if job_identifier == self.job => {
                        self.attributes = attributes;
                        self.payload = envelope.payload;
                        // A change of state is a good moment to look for output too.
                        self.new_output = true;
                    }
                    Ok(ClientNotification::JobLatestResultsAvailable { job_identifier })
                        if job_identifier == self.job =>
                    {
                        self.new_output = true;
                    }
                    _ => {}
                }
                Ok(())
            }
            None => {
                let (attributes, payload) = fetch_attributes(client, &self.job, None).await?;
                self.attributes = attributes;
                self.payload = payload;
                self.new_output = true;
                Ok(())
            }
        }
    }
}

async fn fetch_attributes(
    client: &Client,
    job: &str,
    subscription: Option<Subscription>,
) -> Result<(JobAttributes, Dictionary), CliError> {
    let request = ClientRequest::JobAttributes(JobQuery {
        job_identifier: job.to_string(),
        subscription,
    });
    let payload = client.call(&request).await?;
    match ControllerReply::from_payload(request.name(), &payload) {
        Ok(ControllerReply::JobAttributes(attributes)) => Ok((attributes, payload)),
        Ok(_) => Err(CliError::BadReply {
            request: request.name().to_string(),
            reason: "the reply has an unexpected shape".to_string(),
        }),
        Err(e) => Err(CliError::BadReply {
            request: request.name().to_string(),
            reason: e.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(s: Option<i64>) -> TaskOutputs {
        TaskOutputs {
            output_files: BTreeMap::new(),
            termination_status: s,
        }
    }

    #[test]
    fn exit_status_is_the_first_failing_task() {
        let tasks = |list: &[(&str, Option<i64>)]| -> BTreeMap<String, TaskOutputs> {
            list.iter()
                .map(|(t, s)| (t.to_string(), status(*s)))
                .collect()
        };
        assert_eq!(exit_status(&tasks(&[])), 0);
        assert_eq!(exit_status(&tasks(&[("0", Some(0))])), 0);
        assert_eq!(exit_status(&tasks(&[("0", None)])), 0);
        assert_eq!(exit_status(&tasks(&[("0", Some(3))])), 3);
        assert_eq!(exit_status(&tasks(&[("10", Some(4)), ("2", Some(9))])), 9);
        assert_eq!(exit_status(&tasks(&[("0", Some(256))])), 1);
        assert_eq!(exit_status(&tasks(&[("0", Some(-9))])), 1);
    }
}
