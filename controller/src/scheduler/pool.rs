//! The agents during one round: their ranking, the slots the round has left on each, and the
//! choice of agents for one job's tasks and ART runs.

use std::collections::HashMap;

use super::plan::{ArtRun, Plan, TaskAssignment};
use super::snapshot::{Agent, AgentState, ArtVerdict, Job, JobId};
use super::tasks::task_order;

pub(super) struct AgentPool<'a> {
    agents: &'a [Agent],
    /// Agent indices, fastest first.
    ranked: Vec<usize>,
    slots: Slots,
    /// ART verdicts by (job, agent index, ART identifier).
    art_verdicts: HashMap<(JobId, usize, &'a str), ArtVerdict>,
}

/// Free slots per agent index; zero for agents that take no work.
struct Slots {
    free: Vec<u32>,
    total: u64,
}

impl Slots {
    fn free(&self, agent: usize) -> u32 {
        self.free.get(agent).copied().unwrap_or(0)
    }

    fn take(&mut self, agent: usize) {
        if let Some(free) = self.free.get_mut(agent) {
            if *free > 0 {
                *free -= 1;
                self.total -= 1;
            }
        }
    }
}

/// Whether an agent may take a job's tasks, as its ARTs tell.
enum Fitness<'a> {
    Fit,
    Unfit,
    /// Not judged yet: these ARTs still need a run (others may be running).
    Unmeasured(Vec<&'a str>),
}

impl<'a> AgentPool<'a> {
    pub(super) fn new(agents: &'a [Agent]) -> Self {
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
        let total = free.iter().map(|&slots| u64::from(slots)).sum();
        let mut art_verdicts = HashMap::new();
        for (index, agent) in agents.iter().enumerate() {
            for result in &agent.art_results {
                art_verdicts.insert((result.job, index, result.art.as_str()), result.verdict);
            }
        }
        Self {
            agents,
            ranked,
            slots: Slots { free, total },
            art_verdicts,
        }
    }

    /// Starts what it can of `job`'s `ready` tasks (indices into `job.tasks`), and plans the
    /// ART runs the job needs.
    pub(super) fn place(
        &mut self,
        job: &'a Job,
        ready: Vec<usize>,
        gang_minimum: Option<usize>,
        plan: &mut Plan,
    ) {
        if self.slots.total == 0 {
            return;
        }
        let candidates = self.candidates(job, plan);
        let capacity: u64 = candidates
            .iter()
            .map(|&agent| u64::from(self.slots.free(agent)))
            .sum();
        let mut count = ready
            .len()
            .min(usize::try_from(capacity).unwrap_or(usize::MAX));
        if gang_minimum.is_some_and(|minimum| count < minimum) {
            count = 0;
        }
        if count > 0 {
            self.assign(job, first_tasks(job, ready, count), &candidates, plan);
        }
    }

    /// The agents, fastest first, that may take `job`'s tasks and have a free slot. Agents
    /// still unmeasured for some ART of the job get an ART run for it, slots permitting.
    fn candidates(&mut self, job: &'a Job, plan: &mut Plan) -> Vec<usize> {
        let mut candidates = Vec::new();
        for &agent in &self.ranked {
            let Some(on) = self.agents.get(agent) else {
                continue;
            };
            if self.slots.free(agent) == 0 || on.grid != job.grid {
                continue;
            }
            match fitness(&self.art_verdicts, job, agent) {
                Fitness::Fit => candidates.push(agent),
                Fitness::Unfit => {}
                Fitness::Unmeasured(arts) => {
                    for art in arts.into_iter().take(self.slots.free(agent) as usize) {
                        self.slots.take(agent);
                        plan.art_runs.push(ArtRun {
                            job: job.id,
                            art: art.to_owned(),
                            agent: on.id,
                        });
                    }
                }
            }
        }
        candidates
    }

    /// Places every task of `chosen` (in task order) on `candidates`, which have room for all
    /// of them: hinted tasks claim their named agent first, the others then fill the fastest
    /// agents in turn.
    fn assign(&mut self, job: &Job, chosen: Vec<usize>, candidates: &[usize], plan: &mut Plan) {
        let mut placed: Vec<Option<usize>> = vec![None; chosen.len()];
        for (slot, &task) in placed.iter_mut().zip(&chosen) {
            let Some(hint) = job
                .tasks
                .get(task)
                .and_then(|task| task.scheduler_hint.as_deref())
            else {
                continue;
            };
            let named = candidates.iter().copied().find(|&agent| {
                self.slots.free(agent) > 0
                    && self.agents.get(agent).is_some_and(|on| on.name == hint)
            });
            if let Some(agent) = named {
                self.slots.take(agent);
                *slot = Some(agent);
            }
        }
        let mut fastest = candidates.iter().copied().peekable();
        for slot in placed.iter_mut().filter(|slot| slot.is_none()) {
            while fastest
                .peek()
                .is_some_and(|&agent| self.slots.free(agent) == 0)
            {
                fastest.next();
            }
            let Some(&agent) = fastest.peek() else { break };
            self.slots.take(agent);
            *slot = Some(agent);
        }
        for (&task, agent) in chosen.iter().zip(&placed) {
            let task = job.tasks.get(task);
            let agent = agent.and_then(|agent| self.agents.get(agent));
            if let (Some(task), Some(agent)) = (task, agent) {
                plan.assignments.push(TaskAssignment {
                    job: job.id,
                    task: task.id.clone(),
                    agent: agent.id,
                });
            }
        }
    }
}

fn fitness<'a>(
    verdicts: &HashMap<(JobId, usize, &str), ArtVerdict>,
    job: &'a Job,
    agent: usize,
) -> Fitness<'a> {
    let mut unmeasured = Vec::new();
    let mut measuring = false;
    for condition in &job.art_conditions {
        match verdicts.get(&(job.id, agent, condition.art.as_str())) {
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

/// The first `count` of the `ready` tasks in task order, sorted. Only those are sorted: with
/// thousands ready and a few slots free, a full sort would dominate the round.
fn first_tasks(job: &Job, mut ready: Vec<usize>, count: usize) -> Vec<usize> {
    let order = |a: &usize, b: &usize| task_order(&job.tasks, *a, *b);
    if count < ready.len() {
        ready.select_nth_unstable_by(count, order);
        ready.truncate(count);
    }
    ready.sort_unstable_by(order);
    ready
}
