//! The records the store hands out and the state names it keeps, spelled as on the wire.

use std::collections::BTreeMap;
use std::fmt;

use xgrid_protocol::jobspec::{ArtCondition, InputFile};
use xgrid_protocol::messages::CHECKPOINT_CAPABILITY;
use xgrid_protocol::plist::Date;

use super::StoreError;

/// A job identifier (`jobIdentifier`, a decimal number on the wire).
pub type JobId = u64;
/// An agent identifier (`agentIdentifier`).
pub type AgentId = u64;
/// A grid identifier (`gridIdentifier`); the default grid created with the store is 0.
pub type GridId = u64;

// Each state enum is stored as its wire spelling, so the database reads like the protocol.
macro_rules! wire_names {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vdoc])* $variant),+
        }

        impl $name {
            /// The name as the wire and the database spell it.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => stringify!($variant)),+
                }
            }

            pub(super) fn parse(text: &str) -> Result<Self, StoreError> {
                match text {
                    $(stringify!($variant) => Ok(Self::$variant),)+
                    other => Err(StoreError::Corrupt(format!(
                        "{other:?} is not a {}",
                        stringify!($name)
                    ))),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

wire_names! {
    /// `jobStatus` (xgrid-wire.md §5.4).
    JobStatus { Pending, Prepared, Running, Canceling, Canceled, Failing, Failed, Finishing, Finished }
}

wire_names! {
    /// Where a task stands, as the controller tracks it.
    TaskState {
        /// Not placed on any agent.
        Pending,
        /// Placed on an agent (taskSubmission sent or answered); not reported running yet.
        Assigned,
        Running,
        /// Suspended on its agent.
        Stopped,
        Finished,
        Failed,
        Canceled,
    }
}

wire_names! {
    /// `agentState`.
    AgentState { Offline, Available, Unavailable }
}

wire_names! {
    /// Whether an agent passed one ART of one job.
    ArtVerdict {
        /// An ART run was started and has not reported a score yet.
        Measuring,
        Qualified,
        Unqualified,
    }
}

impl JobStatus {
    /// Whether the job has ended for good (until a restart).
    pub fn is_final(self) -> bool {
        matches!(self, Self::Canceled | Self::Failed | Self::Finished)
    }
}

impl TaskState {
    /// Whether the task has ended for good (until a restart).
    pub fn is_final(self) -> bool {
        matches!(self, Self::Finished | Self::Failed | Self::Canceled)
    }

    /// Whether the task is placed on an agent.
    pub fn is_on_agent(self) -> bool {
        matches!(self, Self::Assigned | Self::Running | Self::Stopped)
    }
}

/// Which output stream a piece of task output belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputStream {
    /// `readData`: standard output.
    Stdout,
    /// `errData`: standard error.
    Stderr,
}

impl OutputStream {
    pub(super) fn code(self) -> i64 {
        match self {
            Self::Stdout => 1,
            Self::Stderr => 2,
        }
    }
}

/// One grid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grid {
    pub id: GridId,
    pub name: String,
    pub is_default: bool,
}

/// What `jobAttributes` reports about a job (the controller adds `dateNow` and
/// `activeCPUPower`, which are not stored).
#[derive(Debug, Clone, PartialEq)]
pub struct JobAttributes {
    pub id: JobId,
    pub grid: GridId,
    pub name: Option<String>,
    pub application_identifier: Option<String>,
    pub status: JobStatus,
    pub suspended: bool,
    pub error: Option<String>,
    pub date_submitted: Date,
    pub date_started: Option<Date>,
    pub date_stopped: Option<Date>,
    pub task_count: u64,
    /// Tasks not yet Finished, Failed or Canceled.
    pub undone_task_count: u64,
    /// 0 to 100: finished tasks count fully, others by their last reported `percentDone`.
    pub percent_done: f64,
}

/// One task's stored state (not its specification or results).
#[derive(Debug, Clone, PartialEq)]
pub struct TaskRecord {
    pub job: JobId,
    pub id: String,
    pub state: TaskState,
    /// The agent the task is placed on, or last ran on.
    pub agent: Option<AgentId>,
    /// The agent's `taskRef` while the task is placed there and the agent answered.
    pub task_ref: Option<String>,
    /// How many times the task was taken back from a lost agent and queued again.
    pub attempts: u32,
    pub termination_status: Option<i64>,
    pub percent_done: Option<f64>,
    pub error: Option<String>,
    pub date_started: Option<Date>,
    pub date_stopped: Option<Date>,
}

/// A task placed on an agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachedTask {
    pub job: JobId,
    pub task: String,
    pub agent: AgentId,
    /// `None` when the controller chose the agent but never got a taskRef back.
    pub task_ref: Option<String>,
    pub state: TaskState,
}

/// What a `taskSubmission` to an agent carries for one task.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskLaunch {
    pub command: String,
    pub arguments: Vec<String>,
    pub environment: BTreeMap<String, String>,
    pub input_stream: Option<String>,
    /// Every file the task receives, by path in its directory: the job's input files, then
    /// its `inputFileMap` entries, which win on a clash.
    pub input_files: BTreeMap<String, InputFile>,
}

/// Streamed output of one task (`readData`, `errData`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamResults {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// The end results of one task (`jobFinalResults`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FinalResults {
    pub termination_status: Option<i64>,
    pub output_files: BTreeMap<String, Vec<u8>>,
}

/// What an agent says about itself in `agentRegistration`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgentRegistration {
    /// `agentCookie`; `None` or empty for an agent registering for the first time.
    pub cookie: Option<String>,
    pub name: String,
    pub hostnames: Vec<String>,
    pub addresses: Vec<String>,
    pub maximum_task_count: u32,
    /// `maximumCPUPower`: MHz of all processors together.
    pub maximum_cpu_power: u32,
    /// MHz of one processor, when known.
    pub core_megahertz: Option<u32>,
    /// `agentCustom`, as text.
    pub custom: Option<String>,
    /// This project's extension capabilities the agent announced, as text.
    pub extensions: Option<String>,
    /// `xgridCPUFeatures`, comma-separated; `None` for Apple agents.
    pub cpu_features: Option<String>,
}

/// What an `agentStatus` notification reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AgentLoad {
    pub state: AgentState,
    pub current_cpu_power: u32,
    pub current_task_count: u32,
}

/// One agent as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentRecord {
    pub id: AgentId,
    pub name: String,
    pub cookie: String,
    pub grid: GridId,
    pub state: AgentState,
    pub hostnames: Vec<String>,
    pub addresses: Vec<String>,
    pub maximum_task_count: u32,
    pub maximum_cpu_power: u32,
    pub core_megahertz: Option<u32>,
    /// `currentCPUPower` from the last agentStatus.
    pub current_cpu_power: u32,
    /// `currentTaskCount` from the last agentStatus.
    pub reported_task_count: u32,
    /// Tasks the controller has placed on the agent (Assigned, Running or Stopped) plus ART
    /// runs still measuring there.
    pub placed_task_count: u32,
    pub custom: Option<String>,
    pub extensions: Option<String>,
    pub last_seen: Option<Date>,
}

impl AgentRecord {
    /// The agent announced `checkpoint` among its extensions: CRIU works there, so its
    /// tasks can move and it can take moved tasks.
    pub fn can_checkpoint(&self) -> bool {
        self.extensions
            .as_deref()
            .is_some_and(|e| e.split(',').any(|c| c.trim() == CHECKPOINT_CAPABILITY))
    }
}

/// What a checkpointing agent told beyond Apple's protocol (read apart from
/// [`AgentRecord`], which only the balancer needs this for).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgentExtensions {
    pub agent: AgentId,
    /// `xgridCPUFeatures` (empty for Apple agents).
    pub cpu_features: Vec<String>,
    /// `xgridUnavailableReason` from the last status (`owner`, `shutdown`).
    pub unavailable_reason: Option<String>,
}

/// The last checkpoint of a task, kept at the controller.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckpointRecord {
    /// The stream's file under the controller's checkpoint directory.
    pub path: String,
    pub size: u64,
    /// The task's stdout and stderr sizes at the dump.
    pub stdout_size: u64,
    pub stderr_size: u64,
    pub frozen_milliseconds: u64,
    /// The CPU features of the agent that took it: a destination must have them all.
    pub cpu_features: Vec<String>,
    pub taken_at: Date,
}

/// Where a task was when a move of it began. The move lands only if the task is still
/// there: meanwhile its agent may have been lost (and the task queued again or held), or
/// its job stopped, and a move landing anyway would run the task twice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MovedFrom<'a> {
    /// Placed on `agent` as `task_ref`.
    Agent { agent: AgentId, task_ref: &'a str },
    /// Held at the controller as a checkpoint.
    Held,
}

/// One move of a task (or an attempt), as the `migrations` table keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct MigrationRecord {
    /// Given by the store; ignored when recording.
    pub id: u64,
    pub job: JobId,
    pub task: String,
    /// `None`: restored from a checkpoint the controller held.
    pub from: Option<AgentId>,
    /// `None`: evacuated to the controller.
    pub to: Option<AgentId>,
    /// `owner returned`, `agent shutting down`, `load balancing`, `agent lost`.
    pub reason: String,
    pub started: Date,
    pub frozen_milliseconds: Option<u64>,
    /// Octets of checkpoint stream relayed.
    pub octets: u64,
    /// `moved`, or what failed (`restore failed: …`).
    pub outcome: String,
}

/// One task a balancing round may act on: placed on an agent, or held as a checkpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct BalancingTask {
    pub job: JobId,
    pub task: String,
    pub grid: GridId,
    /// `None` while held.
    pub agent: Option<AgentId>,
    pub state: TaskState,
    /// Why it is held at the controller, when it is.
    pub held_reason: Option<String>,
    pub job_suspended: bool,
    pub date_started: Option<Date>,
    pub last_moved_at: Option<Date>,
    pub checkpoint: Option<CheckpointRecord>,
}

/// What one agent's run of one ART of one job found.
#[derive(Debug, Clone, PartialEq)]
pub struct ArtResultRecord {
    pub job: JobId,
    pub agent: AgentId,
    pub art: String,
    pub verdict: ArtVerdict,
    pub score: Option<f64>,
}

/// One line of a job's log.
#[derive(Debug, Clone, PartialEq)]
pub struct LogEntry {
    pub time: Date,
    pub text: String,
}

/// Everything a scheduling round reads, loaded with one query per table.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SchedulingSnapshot {
    /// Every agent, by identifier (without hostnames and addresses).
    pub agents: Vec<AgentRecord>,
    /// ART results for the jobs in `jobs`.
    pub art_results: Vec<ArtResultRecord>,
    /// Jobs still Pending, Prepared or Running, in submission order, with all their tasks.
    /// Jobs in any other status are left out, and so are their tasks.
    pub jobs: Vec<SnapshotJob>,
}

/// One open job, as the scheduler sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct SnapshotJob {
    pub id: JobId,
    pub grid: GridId,
    pub status: JobStatus,
    pub suspended: bool,
    pub depends_on_jobs: Vec<JobDependency>,
    pub tasks_must_start_simultaneously: bool,
    pub minimum_task_count: Option<u64>,
    /// ART identifier → condition, for every ART that has one.
    pub art_conditions: BTreeMap<String, ArtCondition>,
    /// Every task of the job, in identifier order (byte order).
    pub tasks: Vec<SnapshotTask>,
}

/// One entry of `dependsOnJobs` with the status of the job it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobDependency {
    /// As written in the specification.
    pub job: String,
    /// `None` when no stored job has that identifier (never submitted, deleted, or not a
    /// number).
    pub status: Option<JobStatus>,
}

/// One task, as the scheduler sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotTask {
    pub id: String,
    pub state: TaskState,
    pub depends_on_tasks: Vec<String>,
    /// The agent name `schedulerHints` gives for this task.
    pub scheduler_hint: Option<String>,
    pub agent: Option<AgentId>,
}
