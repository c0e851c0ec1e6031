//! The controller's persistent store: grids, jobs, tasks and their results, agents, ART
//! results and job logs in one SQLite file, so that jobs survive a controller restart.
//!
//! SQLite runs in WAL mode with a single writer connection (every change goes through it, one
//! transaction at a time) and a few read-only connections that never block the
//! writer. The schema lives in `migrations/` and is applied when the store opens.

mod agents;
mod checkpoints;
mod connections;
mod error;
mod grids;
mod job_files;
mod jobs;
mod snapshot;
mod specification;
mod tasks;
mod types;

#[cfg(test)]
mod tests;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::ConnectOptions;
use xgrid_protocol::plist::Date;

pub use error::StoreError;
pub use types::{
    AgentExtensions, AgentId, AgentLoad, AgentRecord, AgentRegistration, AgentState,
    ArtResultRecord, ArtVerdict, AttachedTask, BalancingTask, CheckpointRecord, FinalResults, Grid,
    GridId, JobAttributes, JobDependency, JobId, JobStatus, LogEntry, MigrationRecord, MovedFrom,
    OutputStream, SchedulingSnapshot, SnapshotJob, SnapshotTask, StreamResults, TaskLaunch,
    TaskRecord, TaskState,
};

type Result<T> = std::result::Result<T, StoreError>;

/// How long a connection waits for a lock before giving up. Only checkpoints and the single
/// writer take locks, so waits are short; this only guards against a stuck peer process.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// Read-only connections: enough for the client service, the web view and the scheduler to
/// read at once on a small machine.
const READERS: usize = 4;

/// A handle on the store; clones share the same connections.
#[derive(Debug, Clone)]
pub struct Store {
    /// The one connection that writes.
    writer: Arc<connections::Writer>,
    readers: Arc<connections::Readers>,
    /// The input files of the job last launched from ([`job_files`]).
    job_files: Arc<job_files::JobFilesCache>,
}

impl Store {
    /// Opens the store at `path`, creating the file if needed and applying any migrations the
    /// file lacks. Every agent is marked Offline: no agent connection outlives the controller,
    /// while the tasks placed on agents stay attached to them (see [`Store::attached_tasks`]).
    pub async fn open(path: impl AsRef<Path>) -> Result<Store> {
        let path = path.as_ref();
        let open_error = |source| StoreError::Open {
            path: path.display().to_string(),
            source,
        };
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // Under WAL, NORMAL loses no committed transaction when the process dies; only a
            // power loss may drop the last ones.
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true);
        let mut writer = options.connect().await.map_err(open_error)?;
        sqlx::migrate!("../migrations").run(&mut writer).await?;
        let readers = connections::Readers::open(&options.read_only(true), READERS)
            .await
            .map_err(open_error)?;
        sqlx::query("UPDATE agents SET state = 'Offline' WHERE state <> 'Offline'")
            .execute(&mut writer)
            .await?;
        Ok(Store {
            writer: Arc::new(connections::Writer::new(writer)),
            readers: Arc::new(readers),
            job_files: Default::default(),
        })
    }
}

/// The database form of an identifier. No stored row has an identifier above `i64::MAX`, so
/// such a request gets -1, which matches nothing and ends as a "no such …" error.
fn db_id(id: u64) -> i64 {
    i64::try_from(id).unwrap_or(-1)
}

/// The wire form of a stored identifier.
fn wire_id(id: i64) -> Result<u64> {
    u64::try_from(id).map_err(|_| StoreError::Corrupt(format!("negative identifier {id}")))
}

/// A stored count or size, clamped into `u32`.
fn small_count(n: i64) -> u32 {
    u32::try_from(n.max(0)).unwrap_or(u32::MAX)
}

fn now() -> f64 {
    Date::now().0
}

fn date(seconds: Option<f64>) -> Option<Date> {
    seconds.map(Date)
}
