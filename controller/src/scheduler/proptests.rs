//! Property tests: on random snapshots, the plan never breaks the scheduler's invariants, and
//! on simple ones it leaves no usable slot idle.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use proptest::prelude::*;

use super::*;

fn agent_state() -> impl Strategy<Value = AgentState> {
    prop_oneof![
        6 => Just(AgentState::Available),
        1 => Just(AgentState::Unavailable),
        1 => Just(AgentState::Offline),
    ]
}

fn verdict() -> impl Strategy<Value = ArtVerdict> {
    prop_oneof![
        1 => Just(ArtVerdict::Measuring),
        3 => Just(ArtVerdict::Qualified),
        1 => Just(ArtVerdict::Unqualified),
    ]
}

const ARTS: [&str; 2] = ["a", "b"];

fn agents() -> impl Strategy<Value = Vec<Agent>> {
    let one = (
        0u64..2,
        agent_state(),
        0u32..5,
        prop_oneof![3 => Just(0u32), 1 => 0u32..5],
        prop::option::of(prop_oneof![Just(1000u32), Just(2000), Just(3000)]),
        0u32..8000,
        prop::collection::btree_map((1u64..=6, 0usize..ARTS.len()), verdict(), 0..10),
    );
    prop::collection::vec(one, 1..7).prop_map(|agents| {
        agents
            .into_iter()
            .enumerate()
            .map(
                |(index, (grid, state, slots, busy, core, total, results))| Agent {
                    id: index as AgentId,
                    // Names may repeat: hints must cope.
                    name: format!("agent{}", index % 4),
                    grid,
                    state,
                    maximum_task_count: slots,
                    current_task_count: busy,
                    total_megahertz: total,
                    core_megahertz: core,
                    art_results: art_results(results),
                },
            )
            .collect()
    })
}

fn art_results(results: BTreeMap<(JobId, usize), ArtVerdict>) -> Vec<ArtResult> {
    results
        .into_iter()
        .filter_map(|((job, art), verdict)| {
            ARTS.get(art).map(|&art| ArtResult {
                job,
                art: art.to_owned(),
                verdict,
            })
        })
        .collect()
}

fn task_state() -> impl Strategy<Value = TaskState> {
    prop_oneof![
        25 => Just(TaskState::Pending),
        20 => Just(TaskState::Finished),
        6 => Just(TaskState::Running),
        4 => Just(TaskState::Assigned),
        3 => Just(TaskState::Stopped),
        1 => Just(TaskState::Failed),
        1 => Just(TaskState::Canceled),
    ]
}

/// Up to eight tasks named "0", "1", …. A drawn dependency mostly names an earlier task; now and
/// then any task (making cycles possible) or, drawn as 63, a missing one.
fn tasks() -> impl Strategy<Value = Vec<Task>> {
    let dependencies = prop_oneof![
        3 => Just(Vec::new()),
        1 => prop::collection::vec(0usize..64, 1..3),
    ];
    let hint = prop::option::weighted(0.4, 0usize..3);
    prop::collection::vec((task_state(), dependencies, hint), 0..8).prop_map(|drawn| {
        let count = drawn.len();
        drawn
            .into_iter()
            .enumerate()
            .map(|(index, (state, dependencies, hint))| Task {
                id: index.to_string(),
                state,
                depends_on_tasks: dependencies
                    .into_iter()
                    .filter_map(|on| match on {
                        63 => Some("missing".to_owned()),
                        56.. => Some((on % count).to_string()),
                        _ if index > 0 => Some((on % index).to_string()),
                        _ => None,
                    })
                    .collect(),
                scheduler_hint: hint.map(|agent| format!("agent{agent}")),
            })
            .collect()
    })
}

fn job_status() -> impl Strategy<Value = JobStatus> {
    prop_oneof![
        4 => Just(JobStatus::Running),
        2 => Just(JobStatus::Pending),
        1 => Just(JobStatus::Prepared),
        1 => prop_oneof![
            Just(JobStatus::Canceling),
            Just(JobStatus::Canceled),
            Just(JobStatus::Failing),
            Just(JobStatus::Failed),
            Just(JobStatus::Finishing),
            Just(JobStatus::Finished),
        ],
    ]
}

fn jobs() -> impl Strategy<Value = Vec<Job>> {
    let status = prop_oneof![
        4 => Just(Some(JobStatus::Finished)),
        1 => prop::option::weighted(0.9, job_status()),
    ];
    let dependency = (1u64..=7, status).prop_map(|(job, status)| JobDependency { job, status });
    let dependencies = prop_oneof![
        2 => Just(Vec::new()),
        1 => prop::collection::vec(dependency, 1..3),
    ];
    let one = (
        0u64..2,
        job_status(),
        prop::bool::weighted(0.2),
        dependencies,
        prop::bool::weighted(0.3),
        prop::option::of(0u32..6),
        prop_oneof![
            2 => Just(BTreeSet::new()),
            1 => prop::collection::btree_set(0usize..ARTS.len(), 1..3),
        ],
        tasks(),
        prop::bool::weighted(0.4),
    );
    prop::collection::vec(one, 1..6).prop_map(|jobs| {
        jobs.into_iter()
            .enumerate()
            .map(
                |(index, (grid, status, suspended, deps, gang, minimum, arts, tasks, fresh))| Job {
                    id: index as JobId + 1,
                    grid,
                    status,
                    suspended,
                    depends_on_jobs: deps,
                    tasks_must_start_simultaneously: gang,
                    minimum_task_count: minimum,
                    art_conditions: arts
                        .into_iter()
                        .filter_map(|art| ARTS.get(art))
                        .map(|&art| ArtCondition {
                            art: art.to_owned(),
                            min: Some(0.0),
                            max: None,
                            equal: None,
                        })
                        .collect(),
                    // A fresh job has started nothing yet, as gangs need to be tested.
                    tasks: if fresh { reset(tasks) } else { tasks },
                },
            )
            .collect()
    })
}

fn reset(tasks: Vec<Task>) -> Vec<Task> {
    tasks
        .into_iter()
        .map(|task| Task {
            state: TaskState::Pending,
            ..task
        })
        .collect()
}

/// Checks every invariant of `plan` against `snapshot`, naming the first one broken.
fn check(snapshot: &Snapshot, plan: &Plan) -> Result<(), String> {
    let agents: HashMap<AgentId, &Agent> = snapshot.agents.iter().map(|a| (a.id, a)).collect();
    let jobs: HashMap<JobId, &Job> = snapshot.jobs.iter().map(|j| (j.id, j)).collect();
    let mut decided = HashMap::new();
    for decision in &plan.decisions {
        let (job, finished) = match decision {
            JobDecision::Finish { job } => (*job, true),
            JobDecision::Fail { job, .. } => (*job, false),
        };
        let stored = jobs
            .get(&job)
            .ok_or(format!("decision on unknown job {job}"))?;
        if !stored.status.is_open() {
            return Err(format!(
                "decision on job {job} in status {:?}",
                stored.status
            ));
        }
        if decided.insert(job, finished).is_some() {
            return Err(format!("two decisions on job {job}"));
        }
        let all_finished =
            !stored.tasks.is_empty() && stored.tasks.iter().all(|t| t.state == TaskState::Finished);
        if finished && !all_finished {
            return Err(format!("job {job} finished with unfinished tasks"));
        }
    }

    let mut used: HashMap<AgentId, u32> = HashMap::new();
    let usable = |agent: &AgentId, job: &Job| -> Result<(), String> {
        let agent = agents.get(agent).ok_or(format!("unknown agent {agent}"))?;
        if agent.state != AgentState::Available {
            return Err(format!("agent {} is {:?}", agent.id, agent.state));
        }
        if agent.grid != job.grid {
            return Err(format!(
                "agent {} serves another grid than job {}",
                agent.id, job.id
            ));
        }
        Ok(())
    };
    let startable = |job: &Job| -> Result<(), String> {
        if !job.status.is_open() || job.suspended || decided.contains_key(&job.id) {
            return Err(format!("job {} may not start anything", job.id));
        }
        for dependency in &job.depends_on_jobs {
            let finished = dependency.status == Some(JobStatus::Finished)
                || decided.get(&dependency.job) == Some(&true);
            if !finished {
                return Err(format!(
                    "job {} started before job {}",
                    job.id, dependency.job
                ));
            }
        }
        Ok(())
    };
    let verdict = |agent: AgentId, job: JobId, art: &str| {
        agents.get(&agent).and_then(|a| {
            a.art_results
                .iter()
                .find(|r| r.job == job && r.art == art)
                .map(|r| r.verdict)
        })
    };

    let mut started = HashSet::new();
    let mut per_job: HashMap<JobId, usize> = HashMap::new();
    for assignment in &plan.assignments {
        let job = jobs
            .get(&assignment.job)
            .ok_or(format!("assignment for unknown job {}", assignment.job))?;
        usable(&assignment.agent, job)?;
        startable(job)?;
        if !started.insert((assignment.job, assignment.task.as_str())) {
            return Err(format!("task {} started twice", assignment.task));
        }
        let task = job
            .tasks
            .iter()
            .find(|t| t.id == assignment.task)
            .ok_or(format!("unknown task {}", assignment.task))?;
        if task.state != TaskState::Pending {
            return Err(format!("task {} was {:?}", task.id, task.state));
        }
        for on in &task.depends_on_tasks {
            let done = job
                .tasks
                .iter()
                .any(|t| &t.id == on && t.state == TaskState::Finished);
            if !done {
                return Err(format!("task {} started before task {on}", task.id));
            }
        }
        for condition in &job.art_conditions {
            if verdict(assignment.agent, job.id, &condition.art) != Some(ArtVerdict::Qualified) {
                return Err(format!(
                    "agent {} not qualified by ART {} for job {}",
                    assignment.agent, condition.art, job.id
                ));
            }
        }
        *used.entry(assignment.agent).or_default() += 1;
        *per_job.entry(job.id).or_default() += 1;
    }

    let mut measured = HashSet::new();
    for run in &plan.art_runs {
        let job = jobs
            .get(&run.job)
            .ok_or(format!("ART run for unknown job {}", run.job))?;
        usable(&run.agent, job)?;
        startable(job)?;
        if !job.art_conditions.iter().any(|c| c.art == run.art) {
            return Err(format!("job {} has no ART {}", job.id, run.art));
        }
        if verdict(run.agent, job.id, &run.art).is_some() {
            return Err(format!("ART {} run again on agent {}", run.art, run.agent));
        }
        if !measured.insert((run.job, run.art.as_str(), run.agent)) {
            return Err(format!(
                "ART {} planned twice on agent {}",
                run.art, run.agent
            ));
        }
        *used.entry(run.agent).or_default() += 1;
    }

    for (agent, count) in used {
        let agent = agents.get(&agent).ok_or("unknown agent")?;
        let free = agent
            .maximum_task_count
            .saturating_sub(agent.current_task_count);
        if count > free {
            return Err(format!(
                "agent {} got {count} with {free} free slots",
                agent.id
            ));
        }
    }

    for job in &snapshot.jobs {
        let not_started = job.tasks.iter().all(|t| t.state == TaskState::Pending);
        if job.tasks_must_start_simultaneously && not_started {
            let minimum = job
                .minimum_task_count
                .filter(|&m| m > 0)
                .map_or(job.tasks.len(), |m| m as usize);
            let count = per_job.get(&job.id).copied().unwrap_or(0);
            if count > 0 && count < minimum {
                return Err(format!(
                    "gang {} half-started: {count} of {minimum}",
                    job.id
                ));
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn plans_keep_every_invariant(agents in agents(), jobs in jobs()) {
        let snapshot = Snapshot { agents, jobs };
        let plan = schedule(&snapshot);
        if let Err(broken) = check(&snapshot, &plan) {
            return Err(TestCaseError::fail(format!("{broken}\nplan: {plan:?}")));
        }
        let mut reordered = snapshot.clone();
        reordered.agents.reverse();
        prop_assert_eq!(schedule(&reordered), plan);
    }

    /// Independent tasks of plain jobs on one grid: every free slot is used, or every task
    /// started, whatever the job order.
    #[test]
    fn plain_jobs_use_every_free_slot(
        slots in prop::collection::vec((0u32..4, 0u32..3), 0..5),
        pending in prop::collection::vec(0usize..6, 0..5),
    ) {
        let agents: Vec<Agent> = slots
            .iter()
            .enumerate()
            .map(|(index, &(maximum, busy))| Agent {
                id: index as AgentId,
                name: format!("agent{index}"),
                grid: 0,
                state: AgentState::Available,
                maximum_task_count: maximum,
                current_task_count: busy,
                total_megahertz: 1000,
                core_megahertz: None,
                art_results: Vec::new(),
            })
            .collect();
        let jobs: Vec<Job> = pending
            .iter()
            .enumerate()
            .map(|(index, &count)| Job {
                id: index as JobId,
                grid: 0,
                status: JobStatus::Running,
                suspended: false,
                depends_on_jobs: Vec::new(),
                tasks_must_start_simultaneously: false,
                minimum_task_count: None,
                art_conditions: Vec::new(),
                tasks: (0..count)
                    .map(|task| Task {
                        id: task.to_string(),
                        state: TaskState::Pending,
                        depends_on_tasks: Vec::new(),
                        scheduler_hint: None,
                    })
                    .collect(),
            })
            .collect();
        let free: usize = slots.iter().map(|&(m, b)| m.saturating_sub(b) as usize).sum();
        let waiting: usize = pending.iter().sum();
        let snapshot = Snapshot { agents, jobs };
        let plan = schedule(&snapshot);
        prop_assert_eq!(plan.assignments.len(), free.min(waiting));
        prop_assert!(check(&snapshot, &plan).is_ok());
    }
}
