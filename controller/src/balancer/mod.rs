//! The balancer: a pure function from a [`BalancerSnapshot`] of agents and placed tasks to the
//! [`Decision`]s that move, suspend, resume or checkpoint them (docs/migration.md), in the
//! spirit of MOSIX. No I/O or clock: the controller's migration module carries decisions out.
//!
//! Rules, in the order a round applies them (earlier rules get destination slots first):
//! 1. **Shutdown**: every task of a checkpointing agent that is shutting down moves to the
//!    fastest free slot that can take it; with none, it is evacuated (checkpointed to the
//!    controller). A task of a suspended job is always evacuated: a restore would run it.
//! 2. **Held checkpoints** (evacuated, or their agent was lost) are restored on the fastest
//!    free slot, unless their job is suspended.
//! 3. **Owner back**: each task of a checkpointing agent whose owner is back moves to the
//!    fastest free slot; with none, a running one is suspended, and moves in a later round
//!    when a slot frees. Apple agents and agents without CRIU keep Xgrid's behaviour: their
//!    running tasks are suspended. A task the balancer suspended is resumed once its agent
//!    is available again.
//! 4. **Load balancing**: first the scheduler's waiting tasks are given the fastest free
//!    slots of their grid (it hands those out first). Then a running task on agent S moves to
//!    a free slot on agent D when D's speed per task is at least the hysteresis factor (1.3)
//!    times S's, and the expected gain, remaining time × (1 − speed_S/speed_D), is at least
//!    the gain factor times the expected cost (freeze time plus image transfer time) plus a
//!    minimum gain. A task that moved stays a minimum residency first, and tasks of
//!    suspended jobs stay. Tasks with the most to
//!    gain choose first. The hysteresis means a task never qualifies to move straight back.
//! 5. **Periodic checkpoints**: a running task on an available checkpointing agent, not
//!    otherwise decided, whose last checkpoint (or current run, if none) is older than the
//!    interval gets one.
//!
//! Destinations are always available checkpointing agents of the task's grid whose CPU
//! features include the task's, with a free slot this round has not given away; agents are
//! ranked by speed per task, then by identifier. With `balancing` off (`--no-balance`),
//! rules 1, 3's moves and 4 are skipped: every agent behaves as in Xgrid.

mod decision;
mod snapshot;

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

use std::cmp::Ordering;
use std::collections::HashMap;

pub use decision::{Decision, MigrationReason};
pub use snapshot::{
    AgentId, Availability, BalancerAgent, BalancerSettings, BalancerSnapshot, BalancerTask, GridId,
    JobId, Placement, TaskRun,
};

use crate::scheduler::natural_cmp;

/// Runs one balancing round over `snapshot`. Each task appears in at most one decision.
pub fn plan(snapshot: &BalancerSnapshot) -> Vec<Decision> {
    let settings = &snapshot.settings;
    let mut slots = Slots::new(&snapshot.agents);
    let mut tasks: Vec<&BalancerTask> = snapshot.tasks.iter().collect();
    tasks.sort_by(|a, b| {
        a.job
            .cmp(&b.job)
            .then_with(|| natural_cmp(&a.task, &b.task))
    });
    let by_id: HashMap<AgentId, &BalancerAgent> =
        snapshot.agents.iter().map(|a| (a.id, a)).collect();
    let agent_of = |task: &BalancerTask| task.agent().and_then(|id| by_id.get(&id).copied());
    let mut decisions = Vec::new();
    let mut decided = vec![false; tasks.len()];

    // 1. Shutdown.
    if settings.balancing {
        for (index, task) in tasks.iter().enumerate() {
            let Some(source) = agent_of(task) else {
                continue;
            };
            if source.availability != Availability::ShuttingDown || !source.can_checkpoint {
                continue;
            }
            let destination = if task.job_suspended {
                None
            } else {
                slots.take_fastest(task, source.id, 0.0)
            };
            decisions.push(match destination {
                Some(to) => migrate(task, source.id, to, MigrationReason::ShuttingDown),
                None => Decision::Evacuate {
                    job: task.job,
                    task: task.task.clone(),
                    from: source.id,
                },
            });
            decided[index] = true;
        }
    }

    // 2. Held checkpoints.
    for (index, task) in tasks.iter().enumerate() {
        let Placement::Held { reason } = task.place else {
            continue;
        };
        if task.job_suspended {
            continue;
        }
        if let Some(to) = slots.take_fastest(task, AgentId::MAX, 0.0) {
            decisions.push(Decision::Restore {
                job: task.job,
                task: task.task.clone(),
                to,
                reason,
            });
            decided[index] = true;
        }
    }

    // 3. Owner back, and resuming what it suspended.
    for (index, task) in tasks.iter().enumerate() {
        let (Some(source), Placement::On { state, .. }) = (agent_of(task), task.place) else {
            continue;
        };
        let decision = match source.availability {
            Availability::OwnerBack => {
                let movable = settings.balancing && source.can_checkpoint && !task.job_suspended;
                let destination = if movable {
                    slots.take_fastest(task, source.id, 0.0)
                } else {
                    None
                };
                match (destination, state) {
                    (Some(to), _) => {
                        Some(migrate(task, source.id, to, MigrationReason::OwnerReturned))
                    }
                    (None, TaskRun::Running) => Some(Decision::Suspend {
                        job: task.job,
                        task: task.task.clone(),
                        agent: source.id,
                    }),
                    (None, TaskRun::Stopped) => None,
                }
            }
            Availability::Available if state == TaskRun::Stopped && !task.job_suspended => {
                Some(Decision::Resume {
                    job: task.job,
                    task: task.task.clone(),
                    agent: source.id,
                })
            }
            _ => None,
        };
        if let Some(decision) = decision {
            decisions.push(decision);
            decided[index] = true;
        }
    }

    // 4. Load balancing.
    if settings.balancing {
        for &(grid, waiting) in &snapshot.waiting {
            slots.reserve(grid, waiting);
        }
        let mut candidates: Vec<(usize, f64, f64)> = Vec::new();
        for (index, task) in tasks.iter().enumerate() {
            let Some(source) = agent_of(task) else {
                continue;
            };
            let running = matches!(
                task.place,
                Placement::On {
                    state: TaskRun::Running,
                    ..
                }
            );
            let settled = task
                .last_moved_at
                .is_none_or(|moved| snapshot.now - moved >= settings.minimum_residency);
            if decided[index]
                || !running
                || task.job_suspended
                || !settled
                || source.availability != Availability::Available
                || !source.can_checkpoint
                || source.task_megahertz <= 0.0
            {
                continue;
            }
            let cost = move_cost(task, settings);
            candidates.push((index, source.task_megahertz, cost));
        }
        // Most to gain first: judged against the fastest destination, which is where the
        // first choosers go.
        let fastest = slots.fastest_speed();
        let potential = |&(index, speed, cost): &(usize, f64, f64)| {
            let remaining = tasks.get(index).map_or(0.0, |t| t.expected_remaining());
            gain(remaining, speed, fastest) - cost
        };
        candidates.sort_by(|a, b| {
            potential(b)
                .partial_cmp(&potential(a))
                .unwrap_or(Ordering::Equal)
                .then(a.0.cmp(&b.0))
        });
        for (index, speed, cost) in candidates {
            let Some(task) = tasks.get(index) else {
                continue;
            };
            let Some(source) = task.agent() else {
                continue;
            };
            let Some(to) = slots.fastest(task, source, speed * settings.hysteresis) else {
                continue;
            };
            let to_speed = by_id.get(&to).map_or(0.0, |a| a.task_megahertz);
            let gain = gain(task.expected_remaining(), speed, to_speed);
            if gain >= settings.gain_factor * cost + settings.minimum_gain {
                slots.take(to);
                decisions.push(migrate(task, source, to, MigrationReason::LoadBalancing));
                if let Some(done) = decided.get_mut(index) {
                    *done = true;
                }
            }
        }
    }

    // 5. Periodic checkpoints.
    if let Some(interval) = settings.checkpoint_interval.filter(|i| *i > 0.0) {
        for (index, task) in tasks.iter().enumerate() {
            let (Some(agent), Placement::On { state, .. }) = (agent_of(task), task.place) else {
                continue;
            };
            let since = task.last_checkpoint_at.unwrap_or(task.running_since);
            if !decided[index]
                && state == TaskRun::Running
                && agent.availability == Availability::Available
                && agent.can_checkpoint
                && snapshot.now - since >= interval
            {
                decisions.push(Decision::Checkpoint {
                    job: task.job,
                    task: task.task.clone(),
                    agent: agent.id,
                });
            }
        }
    }
    decisions
}

fn migrate(task: &BalancerTask, from: AgentId, to: AgentId, reason: MigrationReason) -> Decision {
    Decision::Migrate {
        job: task.job,
        task: task.task.clone(),
        from,
        to,
        reason,
    }
}

/// Seconds saved by running the rest of a task at `to_speed` instead of `from_speed`.
fn gain(remaining: f64, from_speed: f64, to_speed: f64) -> f64 {
    if to_speed <= 0.0 {
        return 0.0;
    }
    (remaining * (1.0 - from_speed / to_speed)).max(0.0)
}

/// Seconds a move costs: the task stands frozen while its image is dumped and relayed.
fn move_cost(task: &BalancerTask, settings: &BalancerSettings) -> f64 {
    let freeze = task
        .freeze_milliseconds
        .unwrap_or(settings.assumed_freeze_milliseconds) as f64
        / 1000.0;
    let octets = task.image_octets.unwrap_or(settings.assumed_image_octets) as f64;
    let transfer = if settings.transfer_rate > 0.0 {
        octets / settings.transfer_rate
    } else {
        f64::INFINITY
    };
    freeze + transfer
}

/// The free slots of one round: what each destination agent can still take.
struct Slots<'a> {
    /// Available agents, fastest first (Apple agents included: waiting tasks may go there).
    ranked: Vec<&'a BalancerAgent>,
    free: HashMap<AgentId, u32>,
}

impl<'a> Slots<'a> {
    fn new(agents: &'a [BalancerAgent]) -> Self {
        let mut ranked: Vec<&BalancerAgent> = agents
            .iter()
            .filter(|a| a.availability == Availability::Available)
            .collect();
        ranked.sort_by(|a, b| {
            b.task_megahertz
                .partial_cmp(&a.task_megahertz)
                .unwrap_or(Ordering::Equal)
                .then(a.id.cmp(&b.id))
        });
        let mut free = HashMap::new();
        for agent in &ranked {
            free.entry(agent.id).or_insert_with(|| agent.free_slots());
        }
        Slots { ranked, free }
    }

    fn free(&self, id: AgentId) -> u32 {
        self.free.get(&id).copied().unwrap_or(0)
    }

    fn take(&mut self, id: AgentId) {
        if let Some(free) = self.free.get_mut(&id) {
            *free = free.saturating_sub(1);
        }
    }

    /// The fastest agent that can take `task` (not `source`), at least `minimum_speed` fast.
    fn fastest(&self, task: &BalancerTask, source: AgentId, minimum_speed: f64) -> Option<AgentId> {
        self.ranked
            .iter()
            .take_while(|a| a.task_megahertz >= minimum_speed)
            .find(|a| {
                a.id != source
                    && a.can_checkpoint
                    && a.grid == task.grid
                    && a.has_features(&task.cpu_features)
                    && self.free(a.id) > 0
            })
            .map(|a| a.id)
    }

    fn take_fastest(
        &mut self,
        task: &BalancerTask,
        source: AgentId,
        minimum_speed: f64,
    ) -> Option<AgentId> {
        let to = self.fastest(task, source, minimum_speed)?;
        self.take(to);
        Some(to)
    }

    /// Gives `count` of `grid`'s fastest free slots, of any agent, to the scheduler.
    fn reserve(&mut self, grid: GridId, mut count: u32) {
        for agent in &self.ranked {
            if count == 0 {
                break;
            }
            if agent.grid != grid {
                continue;
            }
            if let Some(free) = self.free.get_mut(&agent.id) {
                let given = (*free).min(count);
                *free -= given;
                count -= given;
            }
        }
    }

    /// The speed of the fastest checkpointing agent with a free slot.
    fn fastest_speed(&self) -> f64 {
        self.ranked
            .iter()
            .find(|a| a.can_checkpoint && self.free(a.id) > 0)
            .map_or(0.0, |a| a.task_megahertz)
    }
}
