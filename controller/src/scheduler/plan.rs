//! The scheduler's output: what the controller should do after one round. The controller's
//! applier carries it out (submits tasks, starts ART runs, records job outcomes).

use std::fmt;

use super::snapshot::{AgentId, JobId};

/// Everything one round decided. Each list is in the order the round made its choices: jobs in
/// submission order, and within a job tasks in natural identifier order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Tasks to submit now.
    pub assignments: Vec<TaskAssignment>,
    /// ART executables to run now, each as a short task taking one slot on its agent.
    pub art_runs: Vec<ArtRun>,
    /// Jobs whose outcome is settled.
    pub decisions: Vec<JobDecision>,
}

/// Start task `task` of job `job` on agent `agent`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskAssignment {
    pub job: JobId,
    pub task: String,
    pub agent: AgentId,
}

/// Run ART `art` of job `job` on agent `agent`, then record whether its score meets the job's
/// condition for that ART.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtRun {
    pub job: JobId,
    pub art: String,
    pub agent: AgentId,
}

/// A job's settled outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobDecision {
    /// Every task finished: the job is `Finished`.
    Finish { job: JobId },
    /// The job is `Failed`; the reason's text is meant for the job's `error` attribute. Tasks
    /// of the job still running should be canceled.
    Fail { job: JobId, reason: FailureReason },
}

/// Why a job failed, each naming what the user must look at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailureReason {
    /// A task ended in failure (the first one in task order, when several did).
    TaskFailed { task: String },
    /// A task was canceled, so the job cannot complete.
    TaskCanceled { task: String },
    /// A job in `dependsOnJobs` failed.
    DependencyFailed { job: JobId },
    /// A job in `dependsOnJobs` was canceled.
    DependencyCanceled { job: JobId },
    /// A job in `dependsOnJobs` does not exist.
    DependencyMissing { job: JobId },
    /// The jobs' `dependsOnJobs` form a cycle, listed from its smallest job identifier; a
    /// single entry means the job depends on itself.
    JobCycle { jobs: Vec<JobId> },
    /// A task's `dependsOnTasks` names a task the job does not have.
    UnknownTaskDependency { task: String, missing: String },
    /// Tasks' `dependsOnTasks` form a cycle, listed from its first task in task order.
    TaskCycle { tasks: Vec<String> },
    /// `minimumTaskCount` asks for more simultaneous tasks than the job has.
    GangLargerThanJob { minimum: usize, tasks: usize },
    /// `minimumTaskCount` asks for more simultaneous tasks than can start first: the others
    /// wait on `dependsOnTasks`.
    GangBlockedByDependencies { minimum: usize, startable: usize },
}

impl fmt::Display for FailureReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TaskFailed { task } => write!(f, "task {task} failed"),
            Self::TaskCanceled { task } => write!(f, "task {task} was canceled"),
            Self::DependencyFailed { job } => {
                write!(f, "job {job}, which this job depends on, failed")
            }
            Self::DependencyCanceled { job } => {
                write!(f, "job {job}, which this job depends on, was canceled")
            }
            Self::DependencyMissing { job } => write!(
                f,
                "this job depends on job {job}, which does not exist (check dependsOnJobs)"
            ),
            Self::JobCycle { jobs } => match jobs.as_slice() {
                [only] => write!(
                    f,
                    "job {only} depends on itself (dependsOnJobs), so it can never start"
                ),
                _ => write!(
                    f,
                    "jobs {} depend on each other in a cycle (dependsOnJobs), so none can start",
                    cycle_text(jobs)
                ),
            },
            Self::UnknownTaskDependency { task, missing } => write!(
                f,
                "task {task} depends on task {missing}, which this job does not have"
            ),
            Self::TaskCycle { tasks } => match tasks.as_slice() {
                [only] => write!(
                    f,
                    "task {only} depends on itself (dependsOnTasks), so it can never start"
                ),
                _ => write!(
                    f,
                    "tasks {} depend on each other in a cycle (dependsOnTasks), so none can start",
                    cycle_text(tasks)
                ),
            },
            Self::GangLargerThanJob { minimum, tasks } => write!(
                f,
                "minimumTaskCount is {minimum} but the job has only {tasks} tasks, so they can \
                 never start simultaneously"
            ),
            Self::GangBlockedByDependencies { minimum, startable } => write!(
                f,
                "{minimum} tasks must start simultaneously but only {startable} have no \
                 dependsOnTasks, so they can never start together"
            ),
        }
    }
}

/// `a → b → a`: the cycle written out, closed on its first member.
fn cycle_text<T: fmt::Display>(members: &[T]) -> String {
    let mut text = String::new();
    for member in members.iter().chain(members.first()) {
        if !text.is_empty() {
            text.push_str(" → ");
        }
        text.push_str(&member.to_string());
    }
    text
}
