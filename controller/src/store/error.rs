//! The store's error type: what went wrong with the database or with what was asked of it.

use super::{AgentId, GridId, JobId, TaskState};

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the job store at {path}: {source}")]
    Open {
        path: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("cannot bring the job store's tables up to date (is the file from a newer controller?): {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("the job store's database failed: {0}")]
    Database(#[from] sqlx::Error),
    #[error("the job store holds a value this controller cannot read: {0}")]
    Corrupt(String),
    #[error("there is no grid {0}")]
    NoSuchGrid(GridId),
    #[error("a grid name must not be empty")]
    EmptyGridName,
    #[error("there is already a grid named {0:?}")]
    GridNameTaken(String),
    #[error("grid {0} is the default grid; make another grid the default before removing it")]
    CannotRemoveDefaultGrid(GridId),
    #[error("grid {grid} still holds {jobs} job(s); delete them before removing the grid")]
    GridNotEmpty { grid: GridId, jobs: u64 },
    #[error("there is no job {0}")]
    NoSuchJob(JobId),
    #[error("job {job} already has a task {task:?}")]
    TaskNameTaken { job: JobId, task: String },
    #[error("job {job} has no task {task:?}")]
    NoSuchTask { job: JobId, task: String },
    #[error("task {task:?} of job {job} is {state}, so it cannot be {action}")]
    TaskStateConflict {
        job: JobId,
        task: String,
        state: TaskState,
        action: &'static str,
    },
    #[error("task {task:?} of job {job} is no longer where its move began (it is {state} now)")]
    TaskMovedMeanwhile {
        job: JobId,
        task: String,
        state: TaskState,
    },
    #[error("there is no agent {0}")]
    NoSuchAgent(AgentId),
    /// Also the text the agent profile sends back (`{error = "invalid cookie"}`).
    #[error("invalid cookie")]
    InvalidCookie,
    #[error("cannot make an agent cookie: the system's random source failed: {0}")]
    Random(String),
}
