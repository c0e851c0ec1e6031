//! Property tests: on random grids, no plan names a task twice, oversubscribes a destination
//! or sends a task where it cannot be restored; and applying plans round after round never
//! moves a task for load balancing back to an agent it left.

use std::collections::{HashMap, HashSet};

use proptest::prelude::*;

use super::tests::{agent, apply, grid, running};
use super::*;

fn availability() -> impl Strategy<Value = Availability> {
    prop_oneof![
        5 => Just(Availability::Available),
        1 => Just(Availability::OwnerBack),
        1 => Just(Availability::ShuttingDown),
        1 => Just(Availability::Offline),
    ]
}

const FEATURES: [&str; 3] = ["sse2", "avx", "avx512f"];

fn features() -> impl Strategy<Value = Vec<String>> {
    prop::sample::subsequence(FEATURES.to_vec(), 0..=FEATURES.len())
        .prop_map(|f| f.into_iter().map(str::to_string).collect())
}

fn agents() -> impl Strategy<Value = Vec<BalancerAgent>> {
    let one = (
        0u64..2,
        availability(),
        any::<bool>(),
        features(),
        0u32..4,
        prop_oneof![Just(500.0), Just(1000.0), Just(1300.0), Just(3000.0)],
    );
    prop::collection::vec(one, 1..6).prop_map(|agents| {
        agents
            .into_iter()
            .enumerate()
            .map(
                |(index, (grid, availability, can_checkpoint, cpu_features, slots, mhz))| {
                    BalancerAgent {
                        grid,
                        availability,
                        can_checkpoint,
                        cpu_features,
                        ..agent(index as AgentId, mhz, slots)
                    }
                },
            )
            .collect()
    })
}

fn tasks(agent_count: usize) -> impl Strategy<Value = Vec<BalancerTask>> {
    let one = (
        prop::option::of(0..agent_count as AgentId),
        any::<bool>(),
        any::<bool>(),
        0u64..2,
        features(),
        0.0..2000.0f64,
        prop::option::of(0.0..5000.0f64),
        prop::option::of(900.0..1000.0f64),
    );
    prop::collection::vec(one, 0..10).prop_map(|tasks| {
        tasks
            .into_iter()
            .enumerate()
            .map(
                |(
                    index,
                    (on, stopped, job_suspended, grid, features, elapsed, duration, moved),
                )| {
                    let place = match on {
                        Some(agent) => Placement::On {
                            agent,
                            state: if stopped {
                                TaskRun::Stopped
                            } else {
                                TaskRun::Running
                            },
                        },
                        None => Placement::Held {
                            reason: MigrationReason::AgentLost,
                        },
                    };
                    BalancerTask {
                        grid,
                        place,
                        job_suspended,
                        cpu_features: features,
                        elapsed,
                        expected_duration: duration,
                        last_moved_at: moved,
                        ..running(&index.to_string(), 0)
                    }
                },
            )
            .collect()
    })
}

fn snapshots() -> impl Strategy<Value = BalancerSnapshot> {
    agents()
        .prop_flat_map(|agents| {
            let count = agents.len();
            (
                Just(agents),
                tasks(count),
                prop::option::of(prop_oneof![Just(0.0), Just(300.0)]),
                prop::collection::vec((0u64..2, 0u32..3), 0..2),
                any::<bool>(),
            )
        })
        .prop_map(|(agents, tasks, interval, waiting, balancing)| {
            let mut snapshot = grid(agents, tasks);
            snapshot.settings.checkpoint_interval = interval;
            snapshot.settings.balancing = balancing;
            snapshot.waiting = waiting;
            snapshot
        })
}

fn check(snapshot: &BalancerSnapshot, decisions: &[Decision]) -> Result<(), TestCaseError> {
    let agents: HashMap<AgentId, &BalancerAgent> =
        snapshot.agents.iter().map(|a| (a.id, a)).collect();
    let mut named = HashSet::new();
    let mut incoming: HashMap<AgentId, u32> = HashMap::new();
    for decision in decisions {
        let (job, task) = decision.task();
        prop_assert!(named.insert((job, task.to_string())), "{task} named twice");
        let Some(subject) = snapshot
            .tasks
            .iter()
            .find(|t| t.job == job && t.task == task)
        else {
            return Err(TestCaseError::fail(format!("unknown task {task}")));
        };
        if let Decision::Migrate { from, .. } | Decision::Evacuate { from, .. } = decision {
            prop_assert_eq!(subject.agent(), Some(*from));
            let source = agents.get(from).copied();
            prop_assert!(source.is_some_and(|a| a.can_checkpoint));
            prop_assert!(snapshot.settings.balancing);
        }
        if let Some(to) = decision.destination() {
            let Some(destination) = agents.get(&to).copied() else {
                return Err(TestCaseError::fail(format!("unknown agent {to}")));
            };
            prop_assert!(destination.can_checkpoint);
            prop_assert_eq!(destination.availability, Availability::Available);
            prop_assert_eq!(destination.grid, subject.grid);
            prop_assert!(destination.has_features(&subject.cpu_features));
            prop_assert!(!subject.job_suspended);
            prop_assert_ne!(subject.agent(), Some(to));
            *incoming.entry(to).or_default() += 1;
        }
    }
    for (to, count) in incoming {
        let free = agents.get(&to).map_or(0, |a| a.free_slots());
        prop_assert!(
            count <= free,
            "{count} tasks sent to agent {to} with {free} free slots"
        );
    }
    Ok(())
}

proptest! {
    #[test]
    fn plans_keep_the_invariants(snapshot in snapshots()) {
        let decisions = plan(&snapshot);
        check(&snapshot, &decisions)?;
    }

    #[test]
    fn load_balancing_never_sends_a_task_back(snapshot in snapshots()) {
        let mut snapshot = snapshot;
        // Where each task has been, in order.
        let mut visited: HashMap<String, Vec<AgentId>> = HashMap::new();
        for _ in 0..6 {
            let decisions = plan(&snapshot);
            check(&snapshot, &decisions)?;
            for decision in &decisions {
                if let Decision::Migrate { task, from, to, reason: MigrationReason::LoadBalancing, .. } = decision {
                    let path = visited.entry(task.clone()).or_insert_with(|| vec![*from]);
                    prop_assert!(!path.contains(to), "task {task} went back to agent {to} after {path:?}");
                    path.push(*to);
                }
            }
            apply(&mut snapshot, &decisions, 120.0);
        }
    }
}
