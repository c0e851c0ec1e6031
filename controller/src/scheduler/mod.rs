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

use graph::{cycles, rotate_to_least};
use tasks::{outlook, task_order, Outlook};

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

/// The agents with the slots this round has left on each.
struct AgentPool<'a> {
    agents: &'a [Agent],
    /// Agent indices, fastest first.
    ranked: Vec<usize>,
    /// Free slots per agent index; zero for agents that take no work.
    free: Vec<u32>,
    free_total: u64,
    /// ART verdicts by (job, agent index, ART identifier).
    art_verdicts: HashMap<(JobId, usize, &'a str), ArtVerdict>,
}

/// Whether an agent may take a job's tasks.
enum Fitness<'a> {
    Fit,
    Unfit,
    /// ARTs that still need a run on this agent before it can be judged.
    Unmeasured(Vec<&'a str>),
}

impl<'a> AgentPool<'a> {
    fn new(agents: &'a [Agent]) -> Self {
        let mut ranked: Vec<usize> = (0..agents.len()).collect();
        ranked.sort_by(|&a, &b| match (agents.get(a), agents.get(b)) {
            (Some(left), Some(right)) => right
                .task_megahertz()
                .cmp(&left.task_megahertz())
                .then(right.total_megahertz.cmp(&left.total_megahertz))
                .then(left.id.cmp(&right.id))
                .then(a.cmp(&b)),
            _ => a.cmp(&b),
        });
        let free: Vec<u32> = agents
            .iter()
            .map(|agent| match agent.state {
                AgentState::Available => agent
                    .maximum_task_count
                    .saturating_sub(agent.current_task_count),
                AgentState::Unavailable | AgentState::Offline => 0,
            })
            .collect();
        let free_total = free.iter().map(|&slots| u64::from(slots)).sum();
        let mut art_verdicts = HashMap::new();
        for (index, agent) in agents.iter().enumerate() {
            for result in &agent.art_results {
                art_verdicts.insert((result.job, index, result.art.as_str()), result.verdict);
            }
        }
        Self {
            agents,
            ranked,
            free,
            free_total,
            art_verdicts,
        }
    }

    fn free_slots(&self, agent: usize) -> u32 {
        self.free.get(agent).copied().unwrap_or(0)
    }

    fn take_slot(&mut self, agent: usize) {
        if let Some(slots) = self.free.get_mut(agent) {
            *slots = slots.saturating_sub(1);
            self.free_total = self.free_total.saturating_sub(1);
        }
    }

    fn fitness(&self, job: &'a Job, agent: usize) -> Fitness<'a> {
        let mut unmeasured = Vec::new();
        let mut measuring = false;
        for condition in &job.art_conditions {
            match self
                .art_verdicts
                .get(&(job.id, agent, condition.art.as_str()))
            {
                Some(ArtVerdict::Qualified) => {}
                Some(ArtVerdict::Unqualified) => return Fitness::Unfit,
                Some(ArtVerdict::Measuring) => measuring = true,
                None => unmeasured.push(condition.art.as_str()),
            }
        }
        if unmeasured.is_empty() && !measuring {
            Fitness::Fit
        } else {
            Fitness::Unmeasured(unmeasured)
        }
    }

    /// Starts what it can of `job`'s `ready` tasks, and plans the ART runs the job needs.
    fn place(
        &mut self,
        job: &'a Job,
        mut ready: Vec<usize>,
        gang_minimum: Option<usize>,
        plan: &mut Plan,
    ) {
        if self.free_total == 0 {
            return;
        }
        let mut candidates = Vec::new();
        let mut capacity: u64 = 0;
        for position in 0..self.ranked.len() {
            let Some(&agent) = self.ranked.get(position) else {
                break;
            };
            if self.free_slots(agent) == 0
                || self.agents.get(agent).is_none_or(|a| a.grid != job.grid)
            {
                continue;
            }
            match self.fitness(job, agent) {
                Fitness::Fit => {
                    capacity += u64::from(self.free_slots(agent));
                    candidates.push(agent);
                }
                Fitness::Unfit => {}
                Fitness::Unmeasured(arts) => {
                    for art in arts {
                        if self.free_slots(agent) == 0 {
                            break;
                        }
                        self.take_slot(agent);
                        if let Some(on) = self.agents.get(agent) {
                            plan.art_runs.push(ArtRun {
                                job: job.id,
                                art: art.to_owned(),
                                agent: on.id,
                            });
                        }
                    }
                }
            }
        }

        let fitting = usize::try_from(capacity).unwrap_or(usize::MAX);
        let mut count = ready.len().min(fitting);
        if gang_minimum.is_some_and(|minimum| count < minimum) {
            count = 0;
        }
        if count == 0 {
            return;
        }
        // Only the first `count` tasks in order are needed, so avoid sorting them all.
        let tasks = &job.tasks;
        if count < ready.len() {
            ready.select_nth_unstable_by(count, |&a, &b| task_order(tasks, a, b));
            ready.truncate(count);
        }
        ready.sort_unstable_by(|&a, &b| task_order(tasks, a, b));

        let mut chosen: Vec<Option<usize>> = vec![None; ready.len()];
        for (slot, &task) in chosen.iter_mut().zip(&ready) {
            let Some(hint) = tasks.get(task).and_then(|t| t.scheduler_hint.as_deref()) else {
                continue;
            };
            let hinted = candidates.iter().copied().find(|&agent| {
                self.free_slots(agent) > 0 && self.agents.get(agent).is_some_and(|a| a.name == hint)
            });
            if let Some(agent) = hinted {
                self.take_slot(agent);
                *slot = Some(agent);
            }
        }
        let mut next = candidates.iter().copied();
        let mut current = next.next();
        for slot in chosen.iter_mut().filter(|slot| slot.is_none()) {
            while let Some(agent) = current {
                if self.free_slots(agent) > 0 {
                    break;
                }
                current = next.next();
            }
            let Some(agent) = current else { break };
            self.take_slot(agent);
            *slot = Some(agent);
        }

        for (&task, agent) in ready.iter().zip(&chosen) {
            let (Some(task), Some(agent)) =
                (tasks.get(task), agent.and_then(|a| self.agents.get(a)))
            else {
                continue;
            };
            plan.assignments.push(TaskAssignment {
                job: job.id,
                task: task.id.clone(),
                agent: agent.id,
            });
        }
    }
}
