//! Table tests: each builds a small snapshot from a compact description, runs one round and
//! compares the plan with the expected assignments, ART runs and decisions.

use super::*;

/// An available agent on grid 0 named `agent<id>`, whose cores run at `megahertz`.
fn agent(id: AgentId, megahertz: u32, slots: u32) -> Agent {
    Agent {
        id,
        name: format!("agent{id}"),
        grid: 0,
        state: AgentState::Available,
        maximum_task_count: slots,
        current_task_count: 0,
        total_megahertz: megahertz * slots,
        core_megahertz: Some(megahertz),
        art_results: Vec::new(),
    }
}

/// A running job on grid 0 whose tasks are described by space-separated words
/// `id[:state][<dependency,…][@hinted agent]`; states are P(ending, the default), A(ssigned),
/// R(unning), S(topped), F(inished), X (failed) and C(anceled).
fn job(id: JobId, tasks: &str) -> Job {
    Job {
        id,
        grid: 0,
        status: JobStatus::Running,
        suspended: false,
        depends_on_jobs: Vec::new(),
        tasks_must_start_simultaneously: false,
        minimum_task_count: None,
        art_conditions: Vec::new(),
        tasks: tasks.split_whitespace().map(task).collect(),
    }
}

fn task(word: &str) -> Task {
    let (word, hint) = match word.split_once('@') {
        Some((rest, hint)) => (rest, Some(hint.to_owned())),
        None => (word, None),
    };
    let (word, dependencies) = match word.split_once('<') {
        Some((rest, list)) => (rest, list.split(',').map(str::to_owned).collect()),
        None => (word, Vec::new()),
    };
    let (id, state) = match word.split_once(':') {
        Some((id, letter)) => (id, state(letter)),
        None => (word, TaskState::Pending),
    };
    Task {
        id: id.to_owned(),
        state,
        depends_on_tasks: dependencies,
        scheduler_hint: hint,
    }
}

fn state(letter: &str) -> TaskState {
    match letter {
        "P" => TaskState::Pending,
        "A" => TaskState::Assigned,
        "R" => TaskState::Running,
        "S" => TaskState::Stopped,
        "F" => TaskState::Finished,
        "X" => TaskState::Failed,
        "C" => TaskState::Canceled,
        other => panic!("unknown task state letter {other:?} in a test description"),
    }
}

fn depends(job: Job, on: JobId, status: Option<JobStatus>) -> Job {
    let mut job = job;
    job.depends_on_jobs.push(JobDependency { job: on, status });
    job
}

fn gang(job: Job, minimum: Option<u32>) -> Job {
    Job {
        tasks_must_start_simultaneously: true,
        minimum_task_count: minimum,
        ..job
    }
}

fn art_condition(art: &str) -> ArtCondition {
    ArtCondition {
        art: art.to_owned(),
        min: Some(1.0),
        max: None,
        equal: None,
    }
}

fn art_result(job: JobId, art: &str, verdict: ArtVerdict) -> ArtResult {
    ArtResult {
        job,
        art: art.to_owned(),
        verdict,
    }
}

fn run(agents: Vec<Agent>, jobs: Vec<Job>) -> Plan {
    schedule(&Snapshot { agents, jobs })
}

/// The plan's assignments as (job, task, agent).
fn assigned(plan: &Plan) -> Vec<(JobId, &str, AgentId)> {
    plan.assignments
        .iter()
        .map(|a| (a.job, a.task.as_str(), a.agent))
        .collect()
}

fn art_runs(plan: &Plan) -> Vec<(JobId, &str, AgentId)> {
    plan.art_runs
        .iter()
        .map(|r| (r.job, r.art.as_str(), r.agent))
        .collect()
}

fn fail(job: JobId, reason: FailureReason) -> JobDecision {
    JobDecision::Fail { job, reason }
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|&item| item.to_owned()).collect()
}

#[test]
fn fills_only_free_slots() {
    let busy = Agent {
        current_task_count: 1,
        ..agent(1, 2000, 3)
    };
    let plan = run(vec![busy], vec![job(1, "0 1 2 3 4")]);
    assert_eq!(assigned(&plan), [(1, "0", 1), (1, "1", 1)]);
    assert!(plan.art_runs.is_empty() && plan.decisions.is_empty());
}

#[test]
fn overfull_agent_gets_nothing() {
    let overfull = Agent {
        current_task_count: 5,
        ..agent(1, 2000, 2)
    };
    assert_eq!(run(vec![overfull], vec![job(1, "0")]), Plan::default());
}

#[test]
fn only_available_agents_of_the_jobs_grid() {
    let unavailable = Agent {
        state: AgentState::Unavailable,
        ..agent(1, 3000, 2)
    };
    let offline = Agent {
        state: AgentState::Offline,
        ..agent(2, 3000, 2)
    };
    let other_grid = Agent {
        grid: 7,
        ..agent(3, 3000, 2)
    };
    let plan = run(
        vec![unavailable, offline, other_grid, agent(4, 1000, 1)],
        vec![job(1, "0 1 2")],
    );
    assert_eq!(assigned(&plan), [(1, "0", 4)]);
}

#[test]
fn fastest_agents_first_ties_by_identifier() {
    let plan = run(
        vec![agent(1, 1000, 1), agent(9, 3000, 1), agent(5, 3000, 1)],
        vec![job(1, "0 1 2 3")],
    );
    assert_eq!(assigned(&plan), [(1, "0", 5), (1, "1", 9), (1, "2", 1)]);
}

#[test]
fn speed_per_task_decides_over_total_speed() {
    // Eight slow cores (8000 MHz in all) against two fast ones (6000 MHz in all).
    let many_slow = agent(1, 1000, 8);
    let few_fast = agent(2, 3000, 2);
    // Without a core speed the total is shared among the slots: 9000 / 3 = 3000 per task,
    // level with agent 2, so the larger total decides.
    let total_only = Agent {
        core_megahertz: None,
        total_megahertz: 9000,
        ..agent(3, 1, 3)
    };
    let plan = run(
        vec![many_slow, few_fast, total_only],
        vec![job(1, "0 1 2 3 4 5")],
    );
    assert_eq!(
        assigned(&plan),
        [
            (1, "0", 3),
            (1, "1", 3),
            (1, "2", 3),
            (1, "3", 2),
            (1, "4", 2),
            (1, "5", 1)
        ]
    );
}

#[test]
fn tasks_start_in_natural_order() {
    let plan = run(vec![agent(1, 2000, 3)], vec![job(1, "10 b 2 a 1")]);
    assert_eq!(assigned(&plan), [(1, "1", 1), (1, "2", 1), (1, "10", 1)]);
}

#[test]
fn task_waits_until_all_its_dependencies_finished() {
    let plan = run(
        vec![agent(1, 2000, 10)],
        vec![job(1, "0:F 1:R 2<0 3<0,1 4<1 5<3 6")],
    );
    assert_eq!(assigned(&plan), [(1, "2", 1), (1, "6", 1)]);
}

#[test]
fn job_waits_for_the_jobs_it_depends_on() {
    let agents = || vec![agent(1, 2000, 4)];
    for status in [JobStatus::Pending, JobStatus::Running, JobStatus::Finishing] {
        let plan = run(agents(), vec![depends(job(2, "0"), 1, Some(status))]);
        assert_eq!(plan, Plan::default(), "dependency {status:?}");
    }
    let both = depends(
        depends(job(3, "0"), 1, Some(JobStatus::Finished)),
        2,
        Some(JobStatus::Running),
    );
    assert_eq!(run(agents(), vec![both]), Plan::default());
    let plan = run(
        agents(),
        vec![depends(job(2, "0"), 1, Some(JobStatus::Finished))],
    );
    assert_eq!(assigned(&plan), [(2, "0", 1)]);
}

#[test]
fn job_fails_when_a_job_it_depends_on_cannot_finish() {
    let cases = [
        (
            Some(JobStatus::Failed),
            FailureReason::DependencyFailed { job: 1 },
        ),
        (
            Some(JobStatus::Failing),
            FailureReason::DependencyFailed { job: 1 },
        ),
        (
            Some(JobStatus::Canceled),
            FailureReason::DependencyCanceled { job: 1 },
        ),
        (
            Some(JobStatus::Canceling),
            FailureReason::DependencyCanceled { job: 1 },
        ),
        (None, FailureReason::DependencyMissing { job: 1 }),
    ];
    for (status, reason) in cases {
        let plan = run(
            vec![agent(1, 2000, 4)],
            vec![depends(job(2, "0"), 1, status)],
        );
        assert_eq!(plan.decisions, [fail(2, reason)], "dependency {status:?}");
        assert!(plan.assignments.is_empty());
    }
}

#[test]
fn outcomes_reach_dependent_jobs_in_the_same_round() {
    let plan = run(
        vec![agent(1, 2000, 4)],
        vec![
            job(1, "0:F 1:X"),
            depends(job(2, "0"), 1, Some(JobStatus::Running)),
            depends(job(3, "0"), 2, Some(JobStatus::Pending)),
            job(4, "0:F"),
            depends(job(5, "0"), 4, Some(JobStatus::Running)),
        ],
    );
    assert_eq!(
        plan.decisions,
        [
            fail(1, FailureReason::TaskFailed { task: "1".into() }),
            fail(2, FailureReason::DependencyFailed { job: 1 }),
            fail(3, FailureReason::DependencyFailed { job: 2 }),
            JobDecision::Finish { job: 4 },
        ]
    );
    assert_eq!(assigned(&plan), [(5, "0", 1)]);
}

#[test]
fn hinted_task_takes_its_agent_before_speed_order() {
    // Agent 1 is fastest with one slot; task 1 names it, so task 0 goes to agent 2.
    let plan = run(
        vec![agent(1, 3000, 1), agent(2, 1000, 2)],
        vec![job(1, "0 1@agent1 2")],
    );
    assert_eq!(assigned(&plan), [(1, "0", 2), (1, "1", 1), (1, "2", 2)]);
}

#[test]
fn hint_is_only_a_preference() {
    let unavailable = Agent {
        state: AgentState::Unavailable,
        ..agent(2, 3000, 1)
    };
    let full = Agent {
        current_task_count: 1,
        ..agent(3, 3000, 1)
    };
    let plan = run(
        vec![agent(1, 1000, 4), unavailable, full],
        vec![job(1, "0@agent2 1@agent3 2@nobody")],
    );
    assert_eq!(assigned(&plan), [(1, "0", 1), (1, "1", 1), (1, "2", 1)]);
}

#[test]
fn two_tasks_hinted_to_one_slot() {
    let plan = run(
        vec![agent(1, 3000, 1), agent(2, 1000, 2)],
        vec![job(1, "5@agent1 3@agent1")],
    );
    assert_eq!(assigned(&plan), [(1, "3", 1), (1, "5", 2)]);
}

#[test]
fn gang_starts_all_at_once_or_not_at_all() {
    let three = || gang(job(1, "0 1 2"), None);
    assert_eq!(run(vec![agent(1, 2000, 2)], vec![three()]), Plan::default());
    let plan = run(vec![agent(1, 2000, 2), agent(2, 1000, 1)], vec![three()]);
    assert_eq!(assigned(&plan), [(1, "0", 1), (1, "1", 1), (1, "2", 2)]);
}

#[test]
fn gang_minimum_starts_as_many_as_fit() {
    let job_of_four = || gang(job(1, "0 1 2 3"), Some(2));
    assert_eq!(
        run(vec![agent(1, 2000, 1)], vec![job_of_four()]),
        Plan::default()
    );
    let plan = run(vec![agent(1, 2000, 3)], vec![job_of_four()]);
    assert_eq!(assigned(&plan), [(1, "0", 1), (1, "1", 1), (1, "2", 1)]);
}

#[test]
fn started_gang_continues_task_by_task() {
    let plan = run(
        vec![agent(1, 2000, 1)],
        vec![gang(job(1, "0:R 1:R 2 3"), Some(2))],
    );
    assert_eq!(assigned(&plan), [(1, "2", 1)]);
}

#[test]
fn gang_that_can_never_start_fails() {
    let plan = run(
        vec![agent(1, 2000, 8)],
        vec![
            gang(job(1, "0 1 2"), Some(5)),
            gang(job(2, "0 1 2<0"), None),
            gang(job(3, "0 1 2<0"), Some(2)),
        ],
    );
    assert_eq!(
        plan.decisions,
        [
            fail(
                1,
                FailureReason::GangLargerThanJob {
                    minimum: 5,
                    tasks: 3
                }
            ),
            fail(
                2,
                FailureReason::GangBlockedByDependencies {
                    minimum: 3,
                    startable: 2
                }
            ),
        ]
    );
    assert_eq!(assigned(&plan), [(3, "0", 1), (3, "1", 1)]);
}

#[test]
fn art_decides_which_agents_get_the_job() {
    let mut qualified = agent(1, 1000, 2);
    qualified.art_results = vec![art_result(1, "speed", ArtVerdict::Qualified)];
    let mut failed = agent(2, 3000, 2);
    failed.art_results = vec![art_result(1, "speed", ArtVerdict::Unqualified)];
    let mut measuring = agent(3, 3000, 2);
    measuring.art_results = vec![art_result(1, "speed", ArtVerdict::Measuring)];
    // A result for another job says nothing about this one.
    let mut unmeasured = agent(4, 2000, 2);
    unmeasured.art_results = vec![art_result(9, "speed", ArtVerdict::Qualified)];
    let mut with_art = job(1, "0 1 2 3");
    with_art.art_conditions = vec![art_condition("speed")];

    let plan = run(
        vec![qualified, failed, measuring, unmeasured],
        vec![with_art],
    );
    assert_eq!(assigned(&plan), [(1, "0", 1), (1, "1", 1)]);
    assert_eq!(art_runs(&plan), [(1, "speed", 4)]);
}

#[test]
fn every_art_must_qualify_and_each_run_takes_a_slot() {
    let mut half = agent(1, 3000, 1);
    half.art_results = vec![art_result(1, "a", ArtVerdict::Qualified)];
    let mut both = agent(2, 1000, 1);
    both.art_results = vec![
        art_result(1, "a", ArtVerdict::Qualified),
        art_result(1, "b", ArtVerdict::Qualified),
    ];
    let mut with_arts = job(1, "0 1");
    with_arts.art_conditions = vec![art_condition("a"), art_condition("b")];
    // Agent 3 needs both ARTs measured and has slots for both; job 2 gets what is left.
    let plan = run(
        vec![half, both, agent(3, 500, 3)],
        vec![with_arts, job(2, "0 1")],
    );
    assert_eq!(assigned(&plan), [(1, "0", 2), (2, "0", 3)]);
    assert_eq!(art_runs(&plan), [(1, "b", 1), (1, "a", 3), (1, "b", 3)]);
}

#[test]
fn no_art_runs_for_a_job_that_cannot_start_tasks() {
    let mut waiting = depends(job(1, "0"), 5, Some(JobStatus::Running));
    waiting.art_conditions = vec![art_condition("a")];
    let mut suspended = job(2, "0");
    suspended.suspended = true;
    suspended.art_conditions = vec![art_condition("a")];
    let plan = run(vec![agent(1, 1000, 4)], vec![waiting, suspended]);
    assert_eq!(plan, Plan::default());
}

#[test]
fn art_condition_bounds() {
    let condition = ArtCondition {
        art: "a".into(),
        min: Some(2.0),
        max: Some(5.0),
        equal: None,
    };
    assert!(condition.accepts(2.0) && condition.accepts(5.0));
    assert!(!condition.accepts(1.9) && !condition.accepts(5.1) && !condition.accepts(f64::NAN));
    let exact = ArtCondition {
        art: "a".into(),
        min: None,
        max: None,
        equal: Some(3.0),
    };
    assert!(exact.accepts(3.0) && !exact.accepts(3.5));
}

#[test]
fn suspended_job_starts_nothing_but_still_fails() {
    let mut quiet = job(1, "0:R 1 2");
    quiet.suspended = true;
    let mut broken = job(2, "0:X 1");
    broken.suspended = true;
    let plan = run(vec![agent(1, 2000, 4)], vec![quiet, broken, job(3, "0")]);
    assert_eq!(assigned(&plan), [(3, "0", 1)]);
    assert_eq!(
        plan.decisions,
        [fail(2, FailureReason::TaskFailed { task: "0".into() })]
    );
}

#[test]
fn jobs_past_running_get_nothing() {
    let jobs = [
        JobStatus::Canceling,
        JobStatus::Canceled,
        JobStatus::Failing,
        JobStatus::Failed,
        JobStatus::Finishing,
        JobStatus::Finished,
    ]
    .into_iter()
    .zip(1..)
    .map(|(status, id)| Job {
        status,
        ..job(id, "0:X 1")
    })
    .collect();
    assert_eq!(run(vec![agent(1, 2000, 4)], jobs), Plan::default());
}

#[test]
fn pending_and_prepared_jobs_start() {
    let pending = Job {
        status: JobStatus::Pending,
        ..job(1, "0")
    };
    let prepared = Job {
        status: JobStatus::Prepared,
        ..job(2, "0")
    };
    let plan = run(vec![agent(1, 2000, 4)], vec![pending, prepared]);
    assert_eq!(assigned(&plan), [(1, "0", 1), (2, "0", 1)]);
}

#[test]
fn earlier_jobs_first() {
    let plan = run(
        vec![agent(1, 2000, 3)],
        vec![job(1, "0 1"), job(2, "0 1"), job(3, "0")],
    );
    assert_eq!(assigned(&plan), [(1, "0", 1), (1, "1", 1), (2, "0", 1)]);
}

#[test]
fn blocked_jobs_do_not_hold_slots_back() {
    let too_big_gang = gang(job(1, "0 1 2 3"), None);
    let waiting = depends(job(2, "0"), 1, Some(JobStatus::Running));
    let mut suspended = job(3, "0");
    suspended.suspended = true;
    let plan = run(
        vec![agent(1, 2000, 3)],
        vec![too_big_gang, waiting, suspended, job(4, "0 1 2 3")],
    );
    assert_eq!(assigned(&plan), [(4, "0", 1), (4, "1", 1), (4, "2", 1)]);
}

#[test]
fn failed_task_fails_the_job_naming_it() {
    let plan = run(
        vec![agent(1, 2000, 4)],
        vec![job(1, "0:F 10:X 2:X 3"), job(2, "0:R 1:C 2")],
    );
    assert_eq!(
        plan.decisions,
        [
            fail(1, FailureReason::TaskFailed { task: "2".into() }),
            fail(2, FailureReason::TaskCanceled { task: "1".into() }),
        ]
    );
    assert!(plan.assignments.is_empty());
}

#[test]
fn task_dependency_problems_fail_the_job_at_once() {
    let plan = run(
        vec![agent(1, 2000, 4)],
        vec![
            job(1, "0 9<10 10<2 2<9"),
            job(2, "0 1<1"),
            job(3, "0 1<7"),
            // A cycle hidden behind a running task still cannot start.
            job(4, "0:R 1<2,0 2<1"),
        ],
    );
    assert_eq!(
        plan.decisions,
        [
            fail(
                1,
                FailureReason::TaskCycle {
                    tasks: strings(&["2", "9", "10"])
                }
            ),
            fail(
                2,
                FailureReason::TaskCycle {
                    tasks: strings(&["1"])
                }
            ),
            fail(
                3,
                FailureReason::UnknownTaskDependency {
                    task: "1".into(),
                    missing: "7".into()
                }
            ),
            fail(
                4,
                FailureReason::TaskCycle {
                    tasks: strings(&["1", "2"])
                }
            ),
        ]
    );
    assert!(plan.assignments.is_empty());
}

#[test]
fn job_dependency_cycles_fail_every_job_on_them() {
    let plan = run(
        vec![agent(1, 2000, 4)],
        vec![
            depends(job(5, "0"), 3, Some(JobStatus::Pending)),
            depends(job(3, "0"), 5, Some(JobStatus::Pending)),
            depends(job(4, "0"), 4, Some(JobStatus::Pending)),
            // Waits on a cycle without being on it: it fails through job 3's failure.
            depends(job(6, "0"), 3, Some(JobStatus::Pending)),
        ],
    );
    assert_eq!(
        plan.decisions,
        [
            fail(5, FailureReason::JobCycle { jobs: vec![3, 5] }),
            fail(3, FailureReason::JobCycle { jobs: vec![3, 5] }),
            fail(4, FailureReason::JobCycle { jobs: vec![4] }),
            fail(6, FailureReason::DependencyFailed { job: 3 }),
        ]
    );
}

#[test]
fn finished_job_is_decided_and_empty_job_left_alone() {
    let plan = run(
        vec![agent(1, 2000, 4)],
        vec![job(1, "0:F 1:F"), job(2, ""), job(3, "0:F 1:R")],
    );
    assert_eq!(plan.decisions, [JobDecision::Finish { job: 1 }]);
    assert!(plan.assignments.is_empty());
}

#[test]
fn same_snapshot_same_plan_whatever_the_agent_order() {
    let agents = vec![
        agent(3, 2000, 2),
        agent(1, 2000, 2),
        agent(2, 3000, 1),
        agent(4, 1000, 3),
    ];
    let jobs = vec![job(1, "0 1 2<0 3"), job(2, "a b c d e f")];
    let plan = run(agents.clone(), jobs.clone());
    assert_eq!(plan.assignments.len(), 8);
    assert_eq!(run(agents.clone(), jobs.clone()), plan);
    let mut reversed = agents;
    reversed.reverse();
    assert_eq!(run(reversed, jobs), plan);
}

#[test]
fn failure_messages_name_the_culprit() {
    let cases = [
        (
            FailureReason::TaskFailed { task: "7".into() },
            "task 7 failed",
        ),
        (
            FailureReason::DependencyCanceled { job: 12 },
            "job 12, which this job depends on, was canceled",
        ),
        (
            FailureReason::JobCycle { jobs: vec![3, 5] },
            "jobs 3 → 5 → 3 depend on each other in a cycle (dependsOnJobs), so none can start",
        ),
        (
            FailureReason::TaskCycle {
                tasks: strings(&["a"]),
            },
            "task a depends on itself (dependsOnTasks), so it can never start",
        ),
        (
            FailureReason::GangLargerThanJob {
                minimum: 5,
                tasks: 3,
            },
            "minimumTaskCount is 5 but the job has only 3 tasks, so they can never start \
             simultaneously",
        ),
    ];
    for (reason, text) in cases {
        assert_eq!(reason.to_string(), text);
    }
}
