//! Table tests: each builds a small grid, runs one round (or several, applying each plan as
//! the controller would) and compares the decisions with the expected ones.

use super::*;

const COMMON: [&str; 2] = ["sse2", "avx"];

/// An available checkpointing agent on grid 0 with the common CPU features.
pub(super) fn agent(id: AgentId, megahertz: f64, slots: u32) -> BalancerAgent {
    BalancerAgent {
        id,
        grid: 0,
        availability: Availability::Available,
        can_checkpoint: true,
        cpu_features: COMMON.iter().map(|f| f.to_string()).collect(),
        maximum_task_count: slots,
        current_task_count: 0,
        task_megahertz: megahertz,
    }
}

/// An Apple agent: no checkpoint capability, no CPU features announced.
fn apple(id: AgentId, megahertz: f64, slots: u32) -> BalancerAgent {
    BalancerAgent {
        can_checkpoint: false,
        cpu_features: Vec::new(),
        ..agent(id, megahertz, slots)
    }
}

fn with(agent: BalancerAgent, availability: Availability) -> BalancerAgent {
    BalancerAgent {
        availability,
        ..agent
    }
}

/// Task `task` of job 1 running on `agent` for 100 s, started there at 0, never moved or
/// checkpointed, needing the common CPU features.
pub(super) fn running(task: &str, agent: AgentId) -> BalancerTask {
    BalancerTask {
        job: 1,
        task: task.to_string(),
        grid: 0,
        place: Placement::On {
            agent,
            state: TaskRun::Running,
        },
        job_suspended: false,
        cpu_features: COMMON.iter().map(|f| f.to_string()).collect(),
        elapsed: 100.0,
        expected_duration: None,
        image_octets: None,
        freeze_milliseconds: None,
        last_checkpoint_at: None,
        last_moved_at: None,
        running_since: 0.0,
    }
}

fn stopped(task: &str, agent: AgentId) -> BalancerTask {
    BalancerTask {
        place: Placement::On {
            agent,
            state: TaskRun::Stopped,
        },
        ..running(task, agent)
    }
}

fn held(task: &str, reason: MigrationReason) -> BalancerTask {
    BalancerTask {
        place: Placement::Held { reason },
        ..running(task, 0)
    }
}

/// The snapshot at time 1000 with default settings; each agent's `current_task_count` counts
/// the tasks placed on it.
pub(super) fn grid(agents: Vec<BalancerAgent>, tasks: Vec<BalancerTask>) -> BalancerSnapshot {
    let mut snapshot = BalancerSnapshot {
        now: 1000.0,
        settings: BalancerSettings::default(),
        agents,
        tasks,
        waiting: Vec::new(),
    };
    recount(&mut snapshot);
    snapshot
}

fn recount(snapshot: &mut BalancerSnapshot) {
    for agent in &mut snapshot.agents {
        agent.current_task_count = snapshot
            .tasks
            .iter()
            .filter(|t| t.agent() == Some(agent.id))
            .count() as u32;
    }
}

/// Carries `decisions` out as the controller would when every step succeeds, then lets
/// `seconds` pass.
pub(super) fn apply(snapshot: &mut BalancerSnapshot, decisions: &[Decision], seconds: f64) {
    let now = snapshot.now;
    for decision in decisions {
        let (job, name) = decision.task();
        let Some(task) = snapshot
            .tasks
            .iter_mut()
            .find(|t| t.job == job && t.task == name)
        else {
            panic!("a decision names a task the snapshot lacks: {decision:?}")
        };
        let arrive = |task: &mut BalancerTask, to: AgentId| {
            task.place = Placement::On {
                agent: to,
                state: TaskRun::Running,
            };
            task.last_moved_at = Some(now);
            task.last_checkpoint_at = Some(now);
            task.running_since = now;
        };
        match decision {
            Decision::Migrate { to, .. } | Decision::Restore { to, .. } => arrive(task, *to),
            Decision::Evacuate { .. } => {
                task.place = Placement::Held {
                    reason: MigrationReason::ShuttingDown,
                };
                task.last_checkpoint_at = Some(now);
            }
            Decision::Suspend { agent, .. } => {
                task.place = Placement::On {
                    agent: *agent,
                    state: TaskRun::Stopped,
                }
            }
            Decision::Resume { agent, .. } => {
                task.place = Placement::On {
                    agent: *agent,
                    state: TaskRun::Running,
                }
            }
            Decision::Checkpoint { .. } => task.last_checkpoint_at = Some(now),
        }
    }
    for task in &mut snapshot.tasks {
        if matches!(
            task.place,
            Placement::On {
                state: TaskRun::Running,
                ..
            }
        ) {
            task.elapsed += seconds;
        }
    }
    snapshot.now += seconds;
    recount(snapshot);
}

fn migrate(task: &str, from: AgentId, to: AgentId, reason: MigrationReason) -> Decision {
    Decision::Migrate {
        job: 1,
        task: task.to_string(),
        from,
        to,
        reason,
    }
}

fn suspend(task: &str, agent: AgentId) -> Decision {
    Decision::Suspend {
        job: 1,
        task: task.to_string(),
        agent,
    }
}

fn evacuate(task: &str, from: AgentId) -> Decision {
    Decision::Evacuate {
        job: 1,
        task: task.to_string(),
        from,
    }
}

fn checkpoint(task: &str, agent: AgentId) -> Decision {
    Decision::Checkpoint {
        job: 1,
        task: task.to_string(),
        agent,
    }
}

use MigrationReason::{AgentLost, LoadBalancing, OwnerReturned, ShuttingDown};

#[test]
fn owner_back_moves_tasks_to_the_fastest_idle_agent() {
    let snapshot = grid(
        vec![
            with(agent(1, 2000.0, 2), Availability::OwnerBack),
            agent(2, 1000.0, 1),
            agent(3, 3000.0, 1),
        ],
        vec![running("0", 1), running("1", 1)],
    );
    assert_eq!(
        plan(&snapshot),
        [
            migrate("0", 1, 3, OwnerReturned),
            migrate("1", 1, 2, OwnerReturned)
        ]
    );
}

#[test]
fn owner_back_without_a_free_agent_suspends() {
    let snapshot = grid(
        vec![
            with(agent(1, 2000.0, 1), Availability::OwnerBack),
            agent(2, 3000.0, 1),
        ],
        vec![running("0", 1), running("1", 2)],
    );
    assert_eq!(plan(&snapshot), [suspend("0", 1)]);
}

#[test]
fn a_suspended_task_moves_when_a_slot_frees_and_resumes_when_its_owner_leaves() {
    let mut snapshot = grid(
        vec![
            with(agent(1, 2000.0, 1), Availability::OwnerBack),
            agent(2, 3000.0, 1),
        ],
        vec![stopped("0", 1)],
    );
    assert_eq!(plan(&snapshot), [migrate("0", 1, 2, OwnerReturned)]);

    // With the other agent busy it stays stopped; once the owner leaves, it resumes.
    snapshot.tasks.push(running("1", 2));
    recount(&mut snapshot);
    assert_eq!(plan(&snapshot), []);
    snapshot.agents[0].availability = Availability::Available;
    assert_eq!(
        plan(&snapshot),
        [Decision::Resume {
            job: 1,
            task: "0".into(),
            agent: 1
        }]
    );
}

#[test]
fn a_task_of_a_suspended_job_is_never_resumed_or_restored() {
    let suspended = |task: BalancerTask| BalancerTask {
        job_suspended: true,
        ..task
    };
    let snapshot = grid(
        vec![agent(1, 2000.0, 1), agent(2, 3000.0, 2)],
        vec![suspended(stopped("0", 1)), suspended(held("1", AgentLost))],
    );
    assert_eq!(plan(&snapshot), []);
}

#[test]
fn apple_agents_suspend_and_never_migrate() {
    // The owner of an Apple agent is back: suspend, though a checkpointing agent is idle.
    let snapshot = grid(
        vec![
            with(apple(1, 1000.0, 1), Availability::OwnerBack),
            agent(2, 3000.0, 1),
        ],
        vec![running("0", 1)],
    );
    assert_eq!(plan(&snapshot), [suspend("0", 1)]);

    // An idle Apple agent is no destination, even a much faster one.
    let snapshot = grid(
        vec![
            with(agent(1, 1000.0, 1), Availability::OwnerBack),
            apple(2, 9000.0, 4),
        ],
        vec![running("0", 1)],
    );
    assert_eq!(plan(&snapshot), [suspend("0", 1)]);

    // Nor does a slow Apple agent's task move for speed, or get periodic checkpoints.
    let mut snapshot = grid(
        vec![apple(1, 500.0, 1), agent(2, 3000.0, 1)],
        vec![BalancerTask {
            elapsed: 5000.0,
            ..running("0", 1)
        }],
    );
    snapshot.settings.checkpoint_interval = Some(60.0);
    assert_eq!(plan(&snapshot), []);
}

#[test]
fn destinations_lacking_a_cpu_feature_are_passed_over() {
    let needs_avx512 = BalancerTask {
        cpu_features: vec!["sse2".into(), "avx512f".into()],
        ..running("0", 1)
    };
    let with_avx512 = BalancerAgent {
        cpu_features: vec!["sse2".into(), "avx".into(), "avx512f".into()],
        ..agent(3, 1000.0, 1)
    };
    let snapshot = grid(
        vec![
            with(agent(1, 2000.0, 1), Availability::OwnerBack),
            agent(2, 3000.0, 1),
            with_avx512,
        ],
        vec![needs_avx512.clone()],
    );
    assert_eq!(plan(&snapshot), [migrate("0", 1, 3, OwnerReturned)]);

    let snapshot = grid(
        vec![
            with(agent(1, 2000.0, 1), Availability::OwnerBack),
            agent(2, 3000.0, 1),
        ],
        vec![needs_avx512],
    );
    assert_eq!(plan(&snapshot), [suspend("0", 1)]);
}

#[test]
fn shutdown_evacuates_every_task() {
    let of_suspended_job = BalancerTask {
        job_suspended: true,
        ..stopped("3", 1)
    };
    let snapshot = grid(
        vec![
            with(agent(1, 2000.0, 4), Availability::ShuttingDown),
            agent(2, 1000.0, 1),
        ],
        vec![
            running("0", 1),
            running("1", 1),
            stopped("2", 1),
            of_suspended_job,
        ],
    );
    assert_eq!(
        plan(&snapshot),
        [
            migrate("0", 1, 2, ShuttingDown),
            evacuate("1", 1),
            evacuate("2", 1),
            evacuate("3", 1),
        ]
    );
}

#[test]
fn evacuated_and_lost_tasks_are_restored_when_slots_free() {
    let mut snapshot = grid(
        vec![agent(1, 2000.0, 1), agent(2, 3000.0, 1)],
        vec![
            held("0", ShuttingDown),
            held("1", AgentLost),
            held("2", AgentLost),
        ],
    );
    let restore = |task: &str, to, reason| Decision::Restore {
        job: 1,
        task: task.to_string(),
        to,
        reason,
    };
    let first = plan(&snapshot);
    assert_eq!(
        first,
        [restore("0", 2, ShuttingDown), restore("1", 1, AgentLost)]
    );
    apply(&mut snapshot, &first, 10.0);
    assert_eq!(plan(&snapshot), []);
}

/// The tail of a job: its other tasks took 600 s; the last one has run 100 s on a slow agent
/// while a fast one sits idle.
fn tail(slow: f64, fast: f64) -> BalancerSnapshot {
    grid(
        vec![agent(1, slow, 1), agent(2, fast, 1)],
        vec![BalancerTask {
            expected_duration: Some(600.0),
            ..running("7", 1)
        }],
    )
}

#[test]
fn the_tail_of_a_job_moves_from_a_slow_agent_to_an_idle_fast_one() {
    assert_eq!(
        plan(&tail(1000.0, 3000.0)),
        [migrate("7", 1, 2, LoadBalancing)]
    );
}

#[test]
fn no_move_below_the_hysteresis_factor() {
    assert_eq!(plan(&tail(1000.0, 1250.0)), []);
    // At exactly 1.3 times the speed the remaining 500 s shrink by 115 s: worth it.
    assert_eq!(
        plan(&tail(1000.0, 1300.0)),
        [migrate("7", 1, 2, LoadBalancing)]
    );
}

#[test]
fn no_move_when_the_gain_is_small() {
    // 12 s left: running them three times faster saves 8 s, under the minimum gain.
    let mut snapshot = tail(1000.0, 3000.0);
    snapshot.tasks[0].expected_duration = Some(112.0);
    assert_eq!(plan(&snapshot), []);

    // A 10 GB image takes 400 s to relay: more than the 333 s saved.
    let mut snapshot = tail(1000.0, 3000.0);
    snapshot.tasks[0].image_octets = Some(10_000_000_000);
    assert_eq!(plan(&snapshot), []);

    // A task that just started, in a job with no finished task, has nothing to gain yet.
    let mut snapshot = tail(1000.0, 3000.0);
    snapshot.tasks[0].expected_duration = None;
    snapshot.tasks[0].elapsed = 5.0;
    assert_eq!(plan(&snapshot), []);
}

#[test]
fn no_ping_pong_over_many_rounds() {
    // Agent 2 is 1.4 times faster than agent 1; then a second task lands on agent 2 and its
    // speed per task drops below agent 1's, as an owner's load would do.
    let mut snapshot = tail(1000.0, 1400.0);
    snapshot.tasks[0].expected_duration = Some(10_000.0);
    let mut moves = Vec::new();
    for round in 0..20 {
        let decisions = plan(&snapshot);
        moves.extend(
            decisions
                .iter()
                .filter(|d| matches!(d, Decision::Migrate { .. }))
                .cloned(),
        );
        apply(&mut snapshot, &decisions, 30.0);
        if round == 3 {
            snapshot.agents[1].task_megahertz = 900.0;
        }
    }
    assert_eq!(moves, [migrate("7", 1, 2, LoadBalancing)]);
}

#[test]
fn a_moved_task_stays_the_minimum_residency() {
    let mut snapshot = tail(1000.0, 3000.0);
    snapshot.tasks[0].expected_duration = Some(10_000.0);
    let first = plan(&snapshot);
    assert_eq!(first, [migrate("7", 1, 2, LoadBalancing)]);
    apply(&mut snapshot, &first, 10.0);
    // A much faster agent joins: the task waits out its residency before moving on.
    snapshot.agents.push(agent(3, 9000.0, 1));
    assert_eq!(plan(&snapshot), []);
    snapshot.now += snapshot.settings.minimum_residency;
    assert_eq!(plan(&snapshot), [migrate("7", 2, 3, LoadBalancing)]);
}

#[test]
fn no_move_takes_a_slot_a_waiting_task_needs() {
    let mut snapshot = tail(1000.0, 3000.0);
    snapshot.waiting = vec![(0, 1)];
    assert_eq!(plan(&snapshot), []);

    // With two fast slots, the scheduler keeps the first, the task takes the second.
    snapshot.agents.push(agent(3, 2500.0, 1));
    assert_eq!(plan(&snapshot), [migrate("7", 1, 3, LoadBalancing)]);

    // Waiting tasks of another grid do not count.
    snapshot.waiting = vec![(5, 3)];
    assert_eq!(plan(&snapshot), [migrate("7", 1, 2, LoadBalancing)]);
}

#[test]
fn the_longest_remaining_task_gets_the_fast_slot() {
    let short = BalancerTask {
        expected_duration: Some(300.0),
        ..running("1", 1)
    };
    let long = BalancerTask {
        expected_duration: Some(3000.0),
        ..running("2", 1)
    };
    let snapshot = grid(
        vec![agent(1, 1000.0, 2), agent(2, 3000.0, 1)],
        vec![short, long],
    );
    assert_eq!(plan(&snapshot), [migrate("2", 1, 2, LoadBalancing)]);
}

#[test]
fn periodic_checkpoints_only_when_due() {
    let mut snapshot = grid(
        vec![agent(1, 2000.0, 4)],
        vec![
            // Checkpointed 200 s ago: not due with a 300 s interval.
            BalancerTask {
                last_checkpoint_at: Some(800.0),
                ..running("0", 1)
            },
            // Checkpointed 400 s ago: due.
            BalancerTask {
                last_checkpoint_at: Some(600.0),
                ..running("1", 1)
            },
            // Never checkpointed, running since 0: due.
            running("2", 1),
            // Never checkpointed, running for 100 s only: not due.
            BalancerTask {
                running_since: 900.0,
                ..running("3", 1)
            },
        ],
    );
    assert_eq!(plan(&snapshot), []);
    snapshot.settings.checkpoint_interval = Some(300.0);
    let due = plan(&snapshot);
    assert_eq!(due, [checkpoint("1", 1), checkpoint("2", 1)]);
    apply(&mut snapshot, &due, 100.0);
    let due = plan(&snapshot);
    assert_eq!(due, [checkpoint("0", 1)]);
    apply(&mut snapshot, &due, 100.0);
    assert_eq!(plan(&snapshot), [checkpoint("3", 1)]);
    snapshot.settings.checkpoint_interval = Some(0.0);
    assert_eq!(plan(&snapshot), []);
}

#[test]
fn without_balancing_every_agent_behaves_as_in_xgrid() {
    let mut snapshot = grid(
        vec![
            with(agent(1, 2000.0, 1), Availability::OwnerBack),
            with(agent(2, 2000.0, 1), Availability::ShuttingDown),
            agent(3, 500.0, 1),
            agent(4, 3000.0, 4),
        ],
        vec![
            running("0", 1),
            running("1", 2),
            BalancerTask {
                expected_duration: Some(10_000.0),
                ..running("2", 3)
            },
        ],
    );
    snapshot.settings.balancing = false;
    assert_eq!(plan(&snapshot), [suspend("0", 1)]);
}
