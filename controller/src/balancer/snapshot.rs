//! The balancer's input: the agents, the tasks placed on them or held by the controller as a
//! checkpoint, and the settings, as the controller saw them at the start of a round.

pub use crate::scheduler::{AgentId, GridId, JobId};

use super::decision::MigrationReason;

/// Everything one balancing round looks at.
#[derive(Debug, Clone, PartialEq)]
pub struct BalancerSnapshot {
    /// Seconds on the controller's clock (any origin; the tests start at 0).
    pub now: f64,
    pub settings: BalancerSettings,
    /// Every agent the controller knows, in any order.
    pub agents: Vec<BalancerAgent>,
    /// Tasks on agents (running or stopped) and tasks held as a checkpoint, in any order.
    /// Tasks already being moved are left out by the controller.
    pub tasks: Vec<BalancerTask>,
    /// Per grid, how many tasks wait to be started by the scheduler: load balancing leaves
    /// them the fastest free slots, since the scheduler hands those out first.
    pub waiting: Vec<(GridId, u32)>,
}

/// The knobs of the balancer; [`BalancerSettings::default`] gives the documented figures.
#[derive(Debug, Clone, PartialEq)]
pub struct BalancerSettings {
    /// `--no-balance`: Xgrid's behaviour for every agent (suspend when the owner is back,
    /// nothing on shutdown, no load balancing). Periodic checkpoints go on.
    pub balancing: bool,
    /// `--checkpoint-interval` in seconds; `None` turns periodic checkpoints off.
    pub checkpoint_interval: Option<f64>,
    /// A destination must be this many times faster than the source (MOSIX used 1.3).
    pub hysteresis: f64,
    /// The gain must exceed `gain_factor` × the cost …
    pub gain_factor: f64,
    /// … plus this many seconds.
    pub minimum_gain: f64,
    /// A task that moved stays this many seconds before load balancing moves it again.
    pub minimum_residency: f64,
    /// Octets per second a checkpoint crosses the controller at, for the cost estimate.
    pub transfer_rate: f64,
    /// Image size assumed for a task never checkpointed.
    pub assumed_image_octets: u64,
    /// Freeze time assumed for a task never checkpointed, in milliseconds.
    pub assumed_freeze_milliseconds: u64,
}

impl Default for BalancerSettings {
    fn default() -> Self {
        BalancerSettings {
            balancing: true,
            checkpoint_interval: None,
            hysteresis: 1.3,
            gain_factor: 2.0,
            minimum_gain: 10.0,
            minimum_residency: 60.0,
            // A loopback or LAN relay through the controller, two hops at ~50 MB/s.
            transfer_rate: 25e6,
            assumed_image_octets: 64 << 20,
            assumed_freeze_milliseconds: 500,
        }
    }
}

/// One agent as the balancer sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct BalancerAgent {
    pub id: AgentId,
    pub grid: GridId,
    pub availability: Availability,
    /// It announced `checkpoint` (CRIU works there): its tasks can move, and it can take
    /// moved tasks. Apple agents cannot.
    pub can_checkpoint: bool,
    /// `xgridCPUFeatures`: a task checkpointed elsewhere is restored here only when these
    /// include every feature of its source.
    pub cpu_features: Vec<String>,
    pub maximum_task_count: u32,
    /// Tasks the controller has placed here (running, stopped, frozen) and moves on their way
    /// here.
    pub current_task_count: u32,
    /// The speed one task gets here, in MHz (the scheduler's `task_megahertz`).
    pub task_megahertz: f64,
}

/// Whether an agent takes and keeps work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Availability {
    Available,
    /// `Unavailable` with reason `owner`, or any `Unavailable` from an Apple agent.
    OwnerBack,
    /// `Unavailable` with reason `shutdown`: it leaves once its tasks are gone.
    ShuttingDown,
    /// Not connected: its tasks are the lost-agent path's, not the balancer's.
    Offline,
}

/// One task the balancer may act on.
#[derive(Debug, Clone, PartialEq)]
pub struct BalancerTask {
    pub job: JobId,
    /// The task identifier within the job.
    pub task: String,
    pub grid: GridId,
    pub place: Placement,
    /// Its job is suspended (`jobControl suspend`): the balancer never starts it running.
    pub job_suspended: bool,
    /// The CPU features the task's checkpoint needs (its source agent's), which any
    /// destination must have.
    pub cpu_features: Vec<String>,
    /// Seconds it has run so far, on any agent.
    pub elapsed: f64,
    /// How long the job's finished tasks took on average, when some did.
    pub expected_duration: Option<f64>,
    /// The last checkpoint's size in octets, when one was taken.
    pub image_octets: Option<u64>,
    /// The last checkpoint's freeze time.
    pub freeze_milliseconds: Option<u64>,
    /// When the last checkpoint was taken.
    pub last_checkpoint_at: Option<f64>,
    /// When it last moved.
    pub last_moved_at: Option<f64>,
    /// When its current run began on its agent (the reference for the first periodic
    /// checkpoint).
    pub running_since: f64,
}

/// Where a task is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Placement {
    /// On an agent, in a state.
    On { agent: AgentId, state: TaskRun },
    /// Only a checkpoint at the controller (evacuated, or its agent was lost): it waits for
    /// a slot to be restored in. `reason` is why it left its agent.
    Held { reason: MigrationReason },
}

/// The state of a task on an agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TaskRun {
    Running,
    /// `taskControl stop`: by the balancer when the task's job is not suspended (it is then
    /// resumed or moved later), by `jobControl suspend` otherwise.
    Stopped,
}

impl BalancerTask {
    /// The agent it is on, if any.
    pub fn agent(&self) -> Option<AgentId> {
        match self.place {
            Placement::On { agent, .. } => Some(agent),
            Placement::Held { .. } => None,
        }
    }

    /// Seconds it still needs where it is: what the job's finished tasks took minus what it
    /// has run, or, past that or with no finished task, as long again as it has run (a task
    /// that has run long is likely to run long).
    pub fn expected_remaining(&self) -> f64 {
        match self.expected_duration {
            Some(duration) if duration > self.elapsed => duration - self.elapsed,
            _ => self.elapsed,
        }
    }
}

impl BalancerAgent {
    /// Whether a task needing `features` may be restored here.
    pub fn has_features(&self, features: &[String]) -> bool {
        features.iter().all(|f| self.cpu_features.contains(f))
    }

    pub fn free_slots(&self) -> u32 {
        self.maximum_task_count
            .saturating_sub(self.current_task_count)
    }
}
