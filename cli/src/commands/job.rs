//! The `-job` requests whose replies are printed as they are: submit, batch, the controls,
//! attributes, specification, log and list.

use std::path::Path;

use xgrid_protocol::messages::{
    ClientRequest, GridQuery, JobAction, JobControlRequest, JobQuery, JobSubmission,
};

use crate::args::SubmitArgs;
use crate::error::CliError;
use crate::submission::{job_submission, read_batch_file};

pub(super) fn submit(args: &SubmitArgs, cwd: &Path) -> Result<ClientRequest, CliError> {
    Ok(ClientRequest::JobSubmission(job_submission(args, cwd)?))
}

/// One submission per job of the batch file; `-gid` applies to all of them.
pub(super) fn batch(file: &Path, grid: &Option<String>) -> Result<Vec<ClientRequest>, CliError> {
    Ok(read_batch_file(file)?
        .into_iter()
        .map(|job_specification| {
            ClientRequest::JobSubmission(JobSubmission {
                job_specification,
                grid_identifier: grid.clone(),
            })
        })
        .collect())
}

pub(super) fn control(job: &str, control: JobAction) -> ClientRequest {
    ClientRequest::JobControl(JobControlRequest {
        job_identifier: job.to_string(),
        control,
    })
}

fn query(job: &str) -> JobQuery {
    JobQuery {
        job_identifier: job.to_string(),
        subscription: None,
    }
}

pub(super) fn attributes(job: &str) -> ClientRequest {
    ClientRequest::JobAttributes(query(job))
}

pub(super) fn specification(job: &str) -> ClientRequest {
    ClientRequest::JobSpecification(query(job))
}

pub(super) fn log(job: &str) -> ClientRequest {
    ClientRequest::JobLog(query(job))
}

/// The jobs of a grid; an empty identifier asks for the default grid.
pub(super) fn list(grid: Option<&str>) -> ClientRequest {
    ClientRequest::GridJobList(GridQuery {
        grid_identifier: grid.unwrap_or_default().to_string(),
        subscription: None,
    })
}
