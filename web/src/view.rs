//! What the dashboard asks of the grid: the `GridView` trait the controller implements, the
//! plain records it hands back, the live events it broadcasts, and its one error type.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use tokio::sync::broadcast;
pub use xgrid_image::Rect;
pub use xgrid_protocol::messages::{AgentState, GridStatus, JobAction, JobStatus};
pub use xgrid_protocol::plist::Date;

/// A job identifier (`jobIdentifier`).
pub type JobId = u64;
/// An agent identifier (`agentIdentifier`).
pub type AgentId = u64;
/// A grid identifier (`gridIdentifier`).
pub type GridId = u64;

/// The future every `GridView` method returns: boxed so the trait stays object-safe.
pub type ViewFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, ViewError>> + Send + 'a>>;

/// Why the grid could not answer or act. The text is shown to the user as is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ViewError {
    /// The job, task or file asked for does not exist (any more).
    #[error("not found: {0}")]
    NotFound(String),
    /// The request is understood but the grid will not do it (e.g. resuming a finished job).
    #[error("refused: {0}")]
    Refused(String),
    /// The controller could not answer right now (e.g. its database is busy or gone).
    #[error("the controller is unavailable: {0}")]
    Unavailable(String),
}

/// The read-only view of the grid (plus a few job actions) that the dashboard is built on.
/// The controller implements it over its store; tests and previews use `demo::DemoGrid`.
pub trait GridView: Send + Sync + 'static {
    /// Every grid, default grid first.
    fn grids(&self) -> ViewFuture<'_, Vec<GridSummary>>;
    /// Every agent the controller knows, connected or not.
    fn agents(&self) -> ViewFuture<'_, Vec<AgentView>>;
    /// Every job, newest first.
    fn jobs(&self) -> ViewFuture<'_, Vec<JobSummary>>;
    /// One job with its tasks and output files; `None` when there is no such job.
    fn job(&self, id: JobId) -> ViewFuture<'_, Option<JobDetail>>;
    /// What a job that renders a picture tile by tile (an `xgrid-povray` job) has rendered
    /// so far; `None` when there is no such job or it renders no tiled picture.
    fn job_picture(&self, id: JobId) -> ViewFuture<'_, Option<JobPicture>>;
    /// The bytes of one output file of one task; `None` when there is no such file.
    fn output_file(
        &self,
        job: JobId,
        task: String,
        path: String,
    ) -> ViewFuture<'_, Option<Vec<u8>>>;
    /// Task moves between agents, newest first.
    fn migrations(&self) -> ViewFuture<'_, Vec<MigrationView>>;
    /// Recent samples of the grid's CPU use, oldest first (a few hundred at most).
    fn usage(&self) -> ViewFuture<'_, Vec<UsageSample>>;
    /// The figures behind `/metrics`.
    fn metrics(&self) -> ViewFuture<'_, MetricsView>;
    /// Stop (`Cancel`), suspend, resume, delete (`Remove`) or restart a job.
    fn control_job(&self, id: JobId, action: JobAction) -> ViewFuture<'_, ()>;
    /// Submit a one-task job; answers the new job's identifier.
    fn submit_job(&self, job: SimpleJob) -> ViewFuture<'_, JobId>;
    /// A new subscription to live changes (one per open dashboard tab).
    fn events(&self) -> broadcast::Receiver<GridEvent>;
    /// The client password, when the controller has one: the dashboard then asks for it.
    fn client_password(&self) -> Option<String>;
}

/// One grid as the overview shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct GridSummary {
    pub id: GridId,
    pub name: String,
    pub is_default: bool,
    pub status: GridStatus,
    pub agent_count: u32,
    pub job_count: u32,
}

/// One agent: what it is, what it is doing, how busy it has been lately.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentView {
    pub id: AgentId,
    pub name: String,
    pub state: AgentState,
    pub cores: u32,
    pub mhz: u32,
    /// The machine's load average (runnable processes), as the agent last reported it.
    pub load: f64,
    pub running_tasks: u32,
    /// Someone is using the machine (the agent then refuses or gives back work).
    pub owner_present: bool,
    /// The agent can checkpoint tasks, so they can move to another agent.
    pub can_checkpoint: bool,
    /// Recent load reports, oldest first, for the sparkline (a few dozen at most).
    pub recent_load: Vec<f64>,
}

/// How a job's tasks stand.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TaskCounts {
    pub total: u32,
    pub pending: u32,
    pub running: u32,
    pub finished: u32,
    pub failed: u32,
}

/// One line of the job list.
#[derive(Debug, Clone, PartialEq)]
pub struct JobSummary {
    pub id: JobId,
    pub name: String,
    pub grid: GridId,
    pub status: JobStatus,
    pub suspended: bool,
    pub tasks: TaskCounts,
    /// 0 to 100.
    pub percent_done: f64,
    pub submitted: Option<Date>,
    pub started: Option<Date>,
    pub finished: Option<Date>,
}

/// One job in full.
#[derive(Debug, Clone, PartialEq)]
pub struct JobDetail {
    pub summary: JobSummary,
    pub tasks: Vec<TaskView>,
    pub outputs: Vec<OutputFileView>,
    /// The size of the picture the job renders tile by tile, when it is such a job: its
    /// page then shows the picture filling in.
    pub picture: Option<PictureSize>,
}

/// Width and height in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PictureSize {
    pub width: usize,
    pub height: usize,
}

/// A picture rendered tile by tile, as far as its tasks have come.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobPicture {
    pub size: PictureSize,
    /// The tiles whose tasks finished.
    pub tiles: Vec<PictureTile>,
}

/// One finished tile: where it lies, and the Targa file its task wrote (the whole picture's
/// size, black outside the tile, as POV-Ray writes a partial render).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PictureTile {
    pub rect: Rect,
    pub targa: Vec<u8>,
}

/// One task of a job.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskView {
    /// The task's name in the job (its taskRef).
    pub name: String,
    /// The state as the controller names it (`Pending`, `Running`, `Finished`...).
    pub state: String,
    /// The agent it runs or ran on.
    pub agent: Option<String>,
    pub started: Option<Date>,
    pub finished: Option<Date>,
    pub exit_code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// An output file a task left behind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputFileView {
    pub task: String,
    /// The path relative to the task's working directory.
    pub path: String,
    pub size: u64,
}

/// One move of a running task from one agent to another.
#[derive(Debug, Clone, PartialEq)]
pub struct MigrationView {
    pub at: Date,
    pub job: JobId,
    pub task: String,
    pub from: String,
    pub to: String,
    /// Why it moved, in words (`owner returned`, `load balancing`, `agent shutting down`).
    pub reason: String,
    /// How long the task was frozen between its checkpoint and its restore.
    pub frozen: Duration,
}

/// The grid's CPU use at one moment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct UsageSample {
    pub at: Date,
    /// Cores busy with tasks (may be fractional when computed from load).
    pub cores_busy: f64,
    /// Cores of every available agent.
    pub cores_total: u32,
}

/// A job to submit from the dashboard: one task, one command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimpleJob {
    pub name: String,
    pub command: String,
    pub arguments: Vec<String>,
    /// `None`: the default grid.
    pub grid: Option<GridId>,
}

/// The figures `/metrics` exposes.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MetricsView {
    /// Jobs per status; statuses left out count as zero.
    pub jobs_by_status: Vec<(JobStatus, u64)>,
    pub tasks_running: u64,
    /// Agents per state; states left out count as zero.
    pub agents_by_state: Vec<(AgentState, u64)>,
    /// Task moves since the controller started.
    pub migrations_total: u64,
    /// Time from a task becoming ready to its agent accepting it.
    pub dispatch_latency: LatencyHistogram,
}

/// A latency histogram the controller fills with `observe`, shaped as Prometheus wants it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LatencyHistogram {
    /// Upper bounds in seconds, increasing.
    bounds: Vec<f64>,
    /// Observations at or below each bound (not cumulative; cumulated when written).
    counts: Vec<u64>,
    count: u64,
    sum_seconds: f64,
}

impl LatencyHistogram {
    /// Bounds from 5 ms to 10 s, fit for dispatch over a LAN.
    pub const DEFAULT_BOUNDS: &'static [f64] = &[
        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    ];

    /// An empty histogram; bounds are sorted and non-finite ones dropped.
    pub fn new(bounds: &[f64]) -> LatencyHistogram {
        let mut bounds: Vec<f64> = bounds.iter().copied().filter(|b| b.is_finite()).collect();
        bounds.sort_by(f64::total_cmp);
        bounds.dedup();
        let counts = vec![0; bounds.len()];
        LatencyHistogram {
            bounds,
            counts,
            count: 0,
            sum_seconds: 0.0,
        }
    }

    pub fn observe(&mut self, latency: Duration) {
        let seconds = latency.as_secs_f64();
        if let Some(slot) = self.bounds.iter().position(|b| seconds <= *b) {
            if let Some(count) = self.counts.get_mut(slot) {
                *count += 1;
            }
        }
        self.count += 1;
        self.sum_seconds += seconds;
    }

    /// `(upper bound, observations at or below it)`, cumulative, without `+Inf`.
    pub fn cumulative_buckets(&self) -> Vec<(f64, u64)> {
        let mut total = 0;
        self.bounds
            .iter()
            .zip(&self.counts)
            .map(|(bound, count)| {
                total += count;
                (*bound, total)
            })
            .collect()
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn sum_seconds(&self) -> f64 {
        self.sum_seconds
    }
}

/// A live change, sent to every open dashboard over server-sent events.
#[derive(Debug, Clone, PartialEq)]
pub enum GridEvent {
    /// A job was submitted or changed (status, progress, suspension).
    Job(JobSummary),
    /// A job was deleted.
    JobRemoved(JobId),
    /// An agent connected, left, or reported new load.
    Agent(AgentView),
    /// A task moved.
    Migration(MigrationView),
    /// A new CPU-use sample for the grid chart.
    Usage(UsageSample),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_counts_each_latency_in_its_bucket_and_cumulates() {
        let mut h = LatencyHistogram::new(&[1.0, 0.1, f64::NAN]);
        h.observe(Duration::from_millis(50));
        h.observe(Duration::from_millis(100));
        h.observe(Duration::from_millis(500));
        h.observe(Duration::from_secs(3));
        assert_eq!(h.cumulative_buckets(), vec![(0.1, 2), (1.0, 3)]);
        assert_eq!(h.count(), 4);
        assert!((h.sum_seconds() - 3.65).abs() < 1e-9);
    }
}
