//! Running an [`Invocation`]: everything local first (files read, job specifications built,
//! output files opened), so a typo costs no connection; then one connection to the
//! controller for the requests.

mod grid;
mod job;
mod results;
mod watch;

use std::path::{Path, PathBuf};

use xgrid_protocol::messages::{ClientRequest, JobSubmission};

use crate::args::{Command, Format, Invocation};
use crate::client::{Client, ConnectionSettings};
use crate::error::CliError;
use crate::output::{print_payload, StreamSinks};

pub use watch::exit_status;

/// A command after its local preparation.
enum Prepared {
    /// Send each request in turn and print each reply's payload.
    Print(Vec<ClientRequest>),
    Run {
        submission: Box<JobSubmission>,
        sinks: StreamSinks,
        out_dir: Option<PathBuf>,
    },
    Results {
        job: String,
        task: Option<String>,
        sinks: StreamSinks,
        out_dir: Option<PathBuf>,
    },
    Wait {
        job: String,
    },
}

/// Run `invocation`; relative local paths are taken from `cwd`. Returns the exit status.
pub async fn execute(
    invocation: &Invocation,
    settings: &ConnectionSettings,
    cwd: &Path,
) -> Result<u8, CliError> {
    let prepared = prepare(&invocation.command, cwd)?;
    let mut client = Client::connect(settings).await?;
    let outcome = perform(&mut client, prepared, invocation.format).await;
    client.close().await;
    outcome
}

fn prepare(command: &Command, cwd: &Path) -> Result<Prepared, CliError> {
    let local = |path: &Option<PathBuf>| path.as_ref().map(|p| cwd.join(p));
    Ok(match command {
        Command::JobSubmit(args) => Prepared::Print(vec![job::submit(args, cwd)?]),
        Command::JobBatch { grid, file } => Prepared::Print(job::batch(&cwd.join(file), grid)?),
        Command::JobRun { submit, outputs } => Prepared::Run {
            submission: Box::new(crate::submission::job_submission(submit, cwd)?),
            sinks: StreamSinks::open(
                local(&outputs.stdout).as_deref(),
                local(&outputs.stderr).as_deref(),
            )?,
            out_dir: local(&outputs.out_dir),
        },
        Command::JobResults { job, task, outputs } => Prepared::Results {
            job: job.clone(),
            task: task.clone(),
            sinks: StreamSinks::open(
                local(&outputs.stdout).as_deref(),
                local(&outputs.stderr).as_deref(),
            )?,
            out_dir: local(&outputs.out_dir),
        },
        Command::JobWait { job } => Prepared::Wait { job: job.clone() },
        Command::JobControl { job, action } => Prepared::Print(vec![job::control(job, *action)]),
        Command::JobAttributes { job } => Prepared::Print(vec![job::attributes(job)]),
        Command::JobSpecification { job } => Prepared::Print(vec![job::specification(job)]),
        Command::JobLog { job } => Prepared::Print(vec![job::log(job)]),
        Command::JobList { grid } => Prepared::Print(vec![job::list(grid.as_deref())]),
        Command::GridList => Prepared::Print(vec![grid::list()]),
        Command::GridAttributes { grid } => Prepared::Print(vec![grid::attributes(grid)]),
    })
}

async fn perform(client: &mut Client, prepared: Prepared, format: Format) -> Result<u8, CliError> {
    match prepared {
        Prepared::Print(requests) => {
            for request in &requests {
                print_payload(&client.call(request).await?, format)?;
            }
            Ok(0)
        }
        Prepared::Run {
            submission,
            mut sinks,
            out_dir,
        } => watch::run(client, *submission, &mut sinks, out_dir.as_deref()).await,
        Prepared::Results {
            job,
            task,
            mut sinks,
            out_dir,
        } => {
            results::results(
                client,
                &job,
                task.as_deref(),
                &mut sinks,
                out_dir.as_deref(),
            )
            .await
        }
        Prepared::Wait { job } => watch::wait(client, &job, format).await,
    }
}
