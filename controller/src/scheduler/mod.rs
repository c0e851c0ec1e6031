//! The scheduler: a pure function from a [`Snapshot`] of agents and jobs to a [`Plan`] of
//! task assignments, ART runs and job outcomes. No I/O, clock or randomness: the same
//! snapshot always gives the same plan, so the controller's applier is the only place where
//! decisions turn into messages and store writes.
//!
//! Rules, in the order a round applies them:
//! - Jobs are served in the snapshot's order (submission order). A job that cannot use the
//!   free slots (waiting on dependencies, suspended, a gang that does not fit yet) does not
//!   hold them back from later jobs. A large gang can therefore wait while smaller later jobs
//!   keep the grid busy; nothing reserves slots for it.
//! - A job's tasks go only to agents of its grid that are `Available`, have free slots
//!   (`maximumTaskCount` minus the tasks and ART runs placed there) and pass its ARTs.
//!   Agents are tried fastest first: by the speed one task gets there
//!   ([`Agent::task_megahertz`]), then by total speed, then by agent identifier.
//! - A task is ready when it is pending and every task in its `dependsOnTasks` finished. Ready
//!   tasks start in natural identifier order ("2" before "10") while slots last.
//! - `schedulerHints` are a preference, as Apple documents them: a hinted task goes to its
//!   named agent when that agent could take the task anyway and has a slot left, and otherwise
//!   to whichever agent comes next. A hint never keeps a task waiting and never sends it to an
//!   agent the job could not use.
//! - `tasksMustStartSimultaneously`: until some task of the job has started, either at least
//!   `minimumTaskCount` (default: all) ready tasks start in the same round, as many as fit, or
//!   none does. Once the gang has started, its remaining tasks start like any others.
//! - ARTs: an agent gets the job's tasks only once every ART of the job qualified it. An agent
//!   with no result for some ART gets an ART run planned (one slot each) while the job has
//!   ready tasks; one that failed any ART never gets the job's tasks.
//! - `dependsOnJobs`: a job's tasks start only after every job it depends on is `Finished`.
//! - Suspended jobs start nothing (running tasks go on); jobs not `Pending`, `Prepared` or
//!   `Running` get nothing at all.
//!
//! A job is decided `Failed` when one of its tasks failed or was canceled, when a job it
//! depends on failed, was canceled or does not exist, or when it can never start (a cycle in
//! `dependsOnJobs` or `dependsOnTasks`, a `dependsOnTasks` entry naming no task of the job, or
//! a gang larger than the tasks that could start together). It is decided `Finished` when
//! every task finished. A job with no tasks is left alone: `jobAddTask` may still add some.
//! Decisions count for jobs later in the same round, so a failure runs down a chain of
//! dependent jobs in one round.

mod graph;
mod natural;
mod plan;
mod pool;
mod snapshot;
mod tasks;

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

use std::collections::HashMap;

pub use plan::{ArtRun, FailureReason, JobDecision, Plan, TaskAssignment};
pub use snapshot::{
    Agent, AgentId, AgentState, ArtCondition, ArtResult, ArtVerdict, GridId, Job, JobDependency,
    JobId, JobStatus, Snapshot, Task, TaskState,
};

pub(crate) use natural::natural_cmp;

use graph::{cycles, rotate_to_least};
use pool::AgentPool;
use tasks::{outlook, Outlook};

/// Runs one scheduling round over `snapshot`.
pub fn schedule(snapshot: &Snapshot) -> Plan {
    let mut pool = AgentPool::new(&snapshot.agents);
    let job_cycles = job_cycles(&snapshot.jobs);
    let mut plan = Plan::default();
    // Outcomes decided earlier in this round, so that dependents see them at once.
    let mut decided: HashMap<JobId, JobStatus> = HashMap::new();

    for (index, job) in snapshot.jobs.iter().enumerate() {
        if !job.status.is_open() {
            continue;
        }
        // A cycle is named first: it is the cause even when a job on it already failed for it.
        let cycle = job_cycles.get(index).cloned().flatten();
        let (failure, waiting_on_jobs) = match cycle {
            Some(jobs) => (Some(FailureReason::JobCycle { jobs }), false),
            None => match awaited_jobs(job, &decided) {
                Ok(waiting) => (None, waiting),
                Err(reason) => (Some(reason), false),
            },
        };
        let outlook = match failure {
            Some(reason) => Outlook::Fails(reason),
            None => outlook(job),
        };
        match outlook {
            Outlook::Fails(reason) => {
                decided.insert(job.id, JobStatus::Failed);
                plan.decisions.push(JobDecision::Fail {
                    job: job.id,
                    reason,
                });
            }
            Outlook::AllFinished => {
                decided.insert(job.id, JobStatus::Finished);
                plan.decisions.push(JobDecision::Finish { job: job.id });
            }
            Outlook::Open {
                ready,
                gang_minimum,
            } => {
                if !job.suspended && !waiting_on_jobs && !ready.is_empty() {
                    pool.place(job, ready, gang_minimum, &mut plan);
                }
            }
        }
    }
    plan
}

/// Whether `job` still waits on jobs in its `dependsOnJobs`, or why it never can start.
fn awaited_jobs(job: &Job, decided: &HashMap<JobId, JobStatus>) -> Result<bool, FailureReason> {
    let mut waiting = false;
    for dependency in &job.depends_on_jobs {
        let job = dependency.job;
        match decided.get(&job).copied().or(dependency.status) {
            Some(JobStatus::Finished) => {}
            Some(JobStatus::Failed | JobStatus::Failing) => {
                return Err(FailureReason::DependencyFailed { job })
            }
            Some(JobStatus::Canceled | JobStatus::Canceling) => {
                return Err(FailureReason::DependencyCanceled { job })
            }
            None => return Err(FailureReason::DependencyMissing { job }),
            Some(
                JobStatus::Pending
                | JobStatus::Prepared
                | JobStatus::Running
                | JobStatus::Finishing,
            ) => waiting = true,
        }
    }
    Ok(waiting)
}

/// For each job of the snapshot, the `dependsOnJobs` cycle it lies on, if any. Only jobs that
/// may still start count: a cycle through a finished or failed job is no cycle.
fn job_cycles(jobs: &[Job]) -> Vec<Option<Vec<JobId>>> {
    let mut on_cycle = vec![None; jobs.len()];
    if jobs.iter().all(|job| job.depends_on_jobs.is_empty()) {
        return on_cycle;
    }
    let mut index_of: HashMap<JobId, usize> = HashMap::with_capacity(jobs.len());
    for (index, job) in jobs.iter().enumerate() {
        index_of.entry(job.id).or_insert(index);
    }
    let edges: Vec<Vec<usize>> = jobs
        .iter()
        .map(|job| {
            job.depends_on_jobs
                .iter()
                .filter_map(|dependency| index_of.get(&dependency.job).copied())
                .collect()
        })
        .collect();
    let open = |index: usize| jobs.get(index).is_some_and(|job| job.status.is_open());
    for cycle in cycles(&edges, open, false) {
        let mut ids: Vec<JobId> = cycle
            .iter()
            .filter_map(|&index| jobs.get(index).map(|job| job.id))
            .collect();
        rotate_to_least(&mut ids, |a, b| a < b);
        for &index in &cycle {
            if let Some(slot @ None) = on_cycle.get_mut(index) {
                *slot = Some(ids.clone());
            }
        }
    }
    on_cycle
}
