//! The scheduler's input: an immutable picture of the grid's agents and jobs, built by the
//! controller from its store at the start of a scheduling round.

/// A job identifier (`jobIdentifier` on the wire, a decimal number).
pub type JobId = u64;
/// An agent identifier (`agentIdentifier` on the wire).
pub type AgentId = u64;
/// A grid identifier (`gridIdentifier` on the wire).
pub type GridId = u64;

/// Everything one scheduling round looks at.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    /// Every agent the controller knows, in any order (the scheduler ranks them itself).
    pub agents: Vec<Agent>,
    /// The jobs that may still need something, in submission order: earlier jobs are served
    /// first. Jobs in a final state may be left out.
    pub jobs: Vec<Job>,
}

/// One agent as the controller last saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct Agent {
    pub id: AgentId,
    /// `agentName`: what a job's `schedulerHints` refer to.
    pub name: String,
    /// The grid the agent serves; it runs only that grid's jobs.
    pub grid: GridId,
    pub state: AgentState,
    /// `maximumTaskCount`: how many tasks the agent runs at once.
    pub maximum_task_count: u32,
    /// Tasks and ART runs the controller has placed on this agent and not yet seen end
    /// (submitted, running or stopped). Counting the controller's own placements, rather than
    /// the agent's last `currentTaskCount`, keeps a round from reusing a slot that an earlier
    /// round's plan already took.
    pub current_task_count: u32,
    /// `maximumCPUPower`: the agent's total speed in MHz.
    pub total_megahertz: u32,
    /// The speed of one processor core in MHz, when the agent says so (`ProcessorSpeed`).
    pub core_megahertz: Option<u32>,
    /// What the ART runs on this agent found, per job and ART. An (job, ART) pair missing
    /// here has not been measured yet.
    pub art_results: Vec<ArtResult>,
}

/// `agentState`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AgentState {
    Available,
    /// The machine's owner is using it: no new tasks.
    Unavailable,
    Offline,
}

/// The outcome, so far, of one job's ART on one agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtResult {
    pub job: JobId,
    /// The ART identifier: a key of the job's `artConditions`.
    pub art: String,
    pub verdict: ArtVerdict,
}

/// Whether an agent passed one ART of one job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ArtVerdict {
    /// An ART run was started and has not reported a score yet.
    Measuring,
    /// The score met the condition (see [`ArtCondition::accepts`]).
    Qualified,
    /// The score missed the condition, or the ART could not run: the agent never gets this
    /// job's tasks.
    Unqualified,
}

/// One job as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub id: JobId,
    pub grid: GridId,
    pub status: JobStatus,
    /// Set by `jobControl suspend`: no new tasks start; running ones go on.
    pub suspended: bool,
    /// `schedulerParameters.dependsOnJobs`, each with that job's current status.
    pub depends_on_jobs: Vec<JobDependency>,
    /// `schedulerParameters.tasksMustStartSimultaneously`.
    pub tasks_must_start_simultaneously: bool,
    /// `schedulerParameters.minimumTaskCount`; absent or 0 means every task of the job.
    /// Only read when `tasks_must_start_simultaneously` is set.
    pub minimum_task_count: Option<u32>,
    /// `artConditions`, one entry per ART identifier.
    pub art_conditions: Vec<ArtCondition>,
    /// The job's tasks, in any order; identifiers are unique within the job.
    pub tasks: Vec<Task>,
}

/// `jobStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobStatus {
    Pending,
    Prepared,
    Running,
    Canceling,
    Canceled,
    Failing,
    Failed,
    Finishing,
    Finished,
}

impl JobStatus {
    /// Whether a job in this status may still get tasks started.
    pub(super) fn is_open(self) -> bool {
        matches!(self, Self::Pending | Self::Prepared | Self::Running)
    }
}

/// One entry of `dependsOnJobs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobDependency {
    pub job: JobId,
    /// That job's status, or `None` when the controller has no such job (never submitted, or
    /// deleted).
    pub status: Option<JobStatus>,
}

/// One entry of `artConditions`: the score an agent's ART run must print.
#[derive(Debug, Clone, PartialEq)]
pub struct ArtCondition {
    pub art: String,
    /// `artMin`: the score must be at least this.
    pub min: Option<f64>,
    /// `artMax`: the score must be at most this.
    pub max: Option<f64>,
    /// `artEqual`: the score must be exactly this.
    pub equal: Option<f64>,
}

impl ArtCondition {
    /// Whether `score` meets the condition. Apple's documents give one bound per ART, but the
    /// `xgrid` tool accepts several flags at once, so every bound given must hold.
    pub fn accepts(&self, score: f64) -> bool {
        if score.is_nan() {
            return false;
        }
        self.min.is_none_or(|min| score >= min)
            && self.max.is_none_or(|max| score <= max)
            && self.equal.is_none_or(|equal| score == equal)
    }
}

/// One task of a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Task {
    /// The task identifier: a key of `taskSpecifications`.
    pub id: String,
    pub state: TaskState,
    /// `dependsOnTasks`: identifiers of tasks of the same job.
    pub depends_on_tasks: Vec<String>,
    /// The agent name the job's `schedulerHints` gives for this task.
    pub scheduler_hint: Option<String>,
}

/// Where a task stands, as the controller tracks it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TaskState {
    /// Not placed on any agent: the only state the scheduler starts.
    Pending,
    /// Placed on an agent; the agent has not reported it running yet.
    Assigned,
    Running,
    /// Suspended on its agent (`taskControl stop`).
    Stopped,
    /// Ended and its results were collected.
    Finished,
    Failed,
    Canceled,
}

impl Agent {
    /// The speed one task gets on this agent: a core's speed when known, otherwise the total
    /// shared among the agent's task slots. Tasks are mostly single-threaded, so this is what
    /// decides how fast a task finishes there.
    pub fn task_megahertz(&self) -> u32 {
        self.core_megahertz
            .unwrap_or(self.total_megahertz / self.maximum_task_count.max(1))
    }
}
