//! The scheduling loop, the single applier of the scheduler's plans: on a trigger (a job
//! submitted, a task ended, an agent came, changed or left) or a periodic tick it reads a
//! snapshot from the store, asks [`crate::scheduler::schedule`] for a plan, and carries the
//! plan out (tasks marked Assigned and handed to their agents' drivers, ART runs started,
//! jobs finished or failed). It also gives up on agents that did not come back after a restart.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::watch;

use crate::art;
use crate::dispatch;
use crate::notify::GridEvent;
use crate::scheduler::{self, FailureReason, JobDecision, Plan, Snapshot};
use crate::shared::Shared;
use crate::store::{self, AgentId, JobStatus, SchedulingSnapshot, StoreError};
use crate::wording;

/// Runs rounds until `shutdown` turns true.
pub async fn run(shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(shared.config.schedule_tick);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shared.schedule_requested() => {}
            _ = tick.tick() => {
                expire_recoveries(&shared).await;
                hang_up_silent_agents(&shared);
            }
            _ = shutdown.changed() => return,
        }
        if *shutdown.borrow() {
            return;
        }
        // Let what is already under way (other tasks' ends being recorded, a submission
        // being stored) finish first, so that one round places what they free.
        tokio::task::yield_now().await;
        if let Err(e) = round(&shared).await {
            shared.log(format!("a scheduling round failed: {e}"));
        }
    }
}

/// One round: snapshot, plan, apply.
async fn round(shared: &Arc<Shared>) -> Result<(), StoreError> {
    let stored = shared.store.scheduling_snapshot_compact().await?;
    let connected: HashSet<AgentId> = shared.connected_agents().into_iter().collect();
    let plan = scheduler::schedule(&to_scheduler(&stored, &connected));
    apply(shared, plan).await;
    Ok(())
}

async fn apply(shared: &Arc<Shared>, plan: Plan) {
    // Only agents with a live channel get tasks (the snapshot showed the others Offline, but
    // a channel may have closed since).
    let placements: Vec<(store::JobId, String, AgentId)> = plan
        .assignments
        .into_iter()
        .filter(|a| shared.agent_link(a.agent).is_some())
        .map(|a| (a.job, a.task, a.agent))
        .collect();
    if !placements.is_empty() {
        match shared.store.mark_assigned_many(&placements).await {
            Ok(placed) => {
                for ((job, task, agent), placed) in placements.into_iter().zip(placed) {
                    let Some(link) = shared.agent_link(agent).filter(|_| placed) else {
                        continue;
                    };
                    tokio::spawn(dispatch::launch_task(
                        Arc::clone(shared),
                        link,
                        agent,
                        job,
                        task,
                    ));
                }
            }
            Err(e) => shared.log(format!("cannot place tasks on agents: {e}")),
        }
    }
    for decision in plan.decisions {
        match decision {
            JobDecision::Finish { job } => {
                match shared.store.set_job_status(job, JobStatus::Finished).await {
                    Ok(()) => {
                        shared
                            .job_event(job, &finished_summary(shared, job).await)
                            .await
                    }
                    Err(e) => shared.log(format!("cannot mark job {job} finished: {e}")),
                }
                shared.publish(GridEvent::JobStatusChanged { job });
            }
            JobDecision::Fail { job, reason } => {
                // The scheduler knows which task failed; the store knows why.
                let why = match &reason {
                    FailureReason::TaskFailed { task } => shared
                        .store
                        .task(job, task)
                        .await
                        .ok()
                        .and_then(|t| t.error),
                    _ => None,
                };
                let reason = match why {
                    Some(why) => format!("{reason}: {why}"),
                    None => reason.to_string(),
                };
                fail_job(shared, job, &reason).await;
            }
        }
    }
    for run in plan.art_runs {
        let Some(link) = shared.agent_link(run.agent) else {
            continue;
        };
        // Measuring takes a slot on the agent and keeps the next round from running the
        // same ART there again.
        let marked = shared
            .store
            .set_art_result(
                run.job,
                run.agent,
                &run.art,
                store::ArtVerdict::Measuring,
                None,
            )
            .await;
        if let Err(e) = marked {
            shared.log(format!(
                "cannot start ART {} of job {}: {e}",
                run.art, run.job
            ));
            continue;
        }
        tokio::spawn(art::run_art(
            Arc::clone(shared),
            link,
            run.agent,
            run.job,
            run.art,
        ));
    }
}

/// "finished: 40 tasks, took 3 m 12 s" (from the job's start to its end).
async fn finished_summary(shared: &Shared, job: store::JobId) -> String {
    let Ok(attributes) = shared.store.job_attributes(job).await else {
        return "finished".to_string();
    };
    let tasks = wording::count(attributes.task_count, "task");
    // A job whose tasks ended before anyone saw them run has no start date: count from
    // its submission then.
    let started = attributes.date_started.unwrap_or(attributes.date_submitted);
    match (started, attributes.date_stopped) {
        (started, Some(stopped)) if stopped.0 >= started.0 => format!(
            "finished: {tasks}, took {}",
            wording::duration(std::time::Duration::from_secs_f64(stopped.0 - started.0))
        ),
        _ => format!("finished: {tasks}"),
    }
}

/// Marks the job Failed with `reason` as its error and cancels what still runs of it.
pub async fn fail_job(shared: &Shared, job: store::JobId, reason: &str) {
    shared.job_event(job, &format!("failed: {reason}")).await;
    let store = &shared.store;
    if let Err(e) = store.set_job_error(job, Some(reason)).await {
        shared.log(format!("cannot record why job {job} failed: {e}"));
    }
    if let Err(e) = store.set_job_status(job, JobStatus::Failed).await {
        shared.log(format!("cannot mark job {job} failed: {e}"));
    }
    match store.cancel_unfinished_tasks(job).await {
        Ok(attached) => dispatch::cancel_on_agents(shared, &attached),
        Err(e) => shared.log(format!("cannot stop the remaining tasks of job {job}: {e}")),
    }
    shared.publish(GridEvent::JobStatusChanged { job });
}

/// Agents silent past `agent_timeout` lose their connection, which then counts as lost.
fn hang_up_silent_agents(shared: &Shared) {
    for agent in shared.connected_agents() {
        let Some(link) = shared.agent_link(agent) else {
            continue;
        };
        let silence = link.silence();
        if silence > shared.config.agent_timeout {
            shared.log(format!(
                "{} lost: nothing heard from it for {} (the limit is {}); dropping its connection",
                link.describe(),
                wording::duration(silence),
                wording::duration(shared.config.agent_timeout)
            ));
            link.hang_up();
        }
    }
}

/// Agents that held tasks before a restart and did not come back in time lose them.
async fn expire_recoveries(shared: &Arc<Shared>) {
    for agent in shared.overdue_recoveries(Instant::now()) {
        match shared.store.requeue_agent_tasks(agent).await {
            Ok(requeued) => {
                shared.log(format!(
                    "{} did not come back within {} of the restart: {} will run elsewhere",
                    shared.agent_label(agent).await,
                    wording::duration(shared.config.agent_grace),
                    match requeued.len() {
                        1 => "its 1 task".to_string(),
                        n => format!("its {n} tasks"),
                    }
                ));
                let jobs: HashSet<_> = requeued.iter().map(|t| t.job).collect();
                for job in jobs {
                    shared.publish(GridEvent::JobChanged { job });
                }
            }
            Err(e) => shared.log(format!(
                "cannot queue the tasks of agent {agent} again: {e}"
            )),
        }
        shared.reschedule();
    }
}

/// The scheduler's view of the store's snapshot. An agent without a live channel is
/// Offline whatever the store says, so no task goes to an agent nobody can reach.
pub fn to_scheduler(stored: &SchedulingSnapshot, connected: &HashSet<AgentId>) -> Snapshot {
    let agents = stored
        .agents
        .iter()
        .map(|a| scheduler::Agent {
            id: a.id,
            name: a.name.clone(),
            grid: a.grid,
            state: if connected.contains(&a.id) {
                agent_state(a.state)
            } else {
                scheduler::AgentState::Offline
            },
            maximum_task_count: a.maximum_task_count,
            current_task_count: a.placed_task_count,
            total_megahertz: a.maximum_cpu_power,
            core_megahertz: a.core_megahertz,
            art_results: stored
                .art_results
                .iter()
                .filter(|r| r.agent == a.id)
                .map(|r| scheduler::ArtResult {
                    job: r.job,
                    art: r.art.clone(),
                    verdict: match r.verdict {
                        store::ArtVerdict::Measuring => scheduler::ArtVerdict::Measuring,
                        store::ArtVerdict::Qualified => scheduler::ArtVerdict::Qualified,
                        store::ArtVerdict::Unqualified => scheduler::ArtVerdict::Unqualified,
                    },
                })
                .collect(),
        })
        .collect();
    let jobs = stored
        .jobs
        .iter()
        .map(|j| scheduler::Job {
            id: j.id,
            grid: j.grid,
            status: job_status(j.status),
            suspended: j.suspended,
            depends_on_jobs: j
                .depends_on_jobs
                .iter()
                .map(|d| match d.job.trim().parse::<u64>() {
                    Ok(job) => scheduler::JobDependency {
                        job,
                        status: d.status.map(job_status),
                    },
                    // A name that is no job identifier names no job: the scheduler fails
                    // the job for a missing dependency, under an identifier no job has.
                    Err(_) => scheduler::JobDependency {
                        job: u64::MAX,
                        status: None,
                    },
                })
                .collect(),
            tasks_must_start_simultaneously: j.tasks_must_start_simultaneously,
            minimum_task_count: j
                .minimum_task_count
                .map(|n| u32::try_from(n).unwrap_or(u32::MAX)),
            art_conditions: j
                .art_conditions
                .iter()
                .map(|(art, c)| scheduler::ArtCondition {
                    art: art.clone(),
                    min: c.min,
                    max: c.max,
                    equal: c.equal,
                })
                .collect(),
            tasks: j
                .tasks
                .iter()
                .map(|t| scheduler::Task {
                    id: t.id.clone(),
                    state: task_state(t.state),
                    depends_on_tasks: t.depends_on_tasks.clone(),
                    scheduler_hint: t.scheduler_hint.clone(),
                })
                .collect(),
        })
        .collect();
    Snapshot { agents, jobs }
}

fn agent_state(state: store::AgentState) -> scheduler::AgentState {
    match state {
        store::AgentState::Available => scheduler::AgentState::Available,
        store::AgentState::Unavailable => scheduler::AgentState::Unavailable,
        store::AgentState::Offline => scheduler::AgentState::Offline,
    }
}

fn job_status(status: JobStatus) -> scheduler::JobStatus {
    use scheduler::JobStatus as S;
    match status {
        JobStatus::Pending => S::Pending,
        JobStatus::Prepared => S::Prepared,
        JobStatus::Running => S::Running,
        JobStatus::Canceling => S::Canceling,
        JobStatus::Canceled => S::Canceled,
        JobStatus::Failing => S::Failing,
        JobStatus::Failed => S::Failed,
        JobStatus::Finishing => S::Finishing,
        JobStatus::Finished => S::Finished,
    }
}

fn task_state(state: store::TaskState) -> scheduler::TaskState {
    use scheduler::TaskState as S;
    match state {
        store::TaskState::Pending => S::Pending,
        store::TaskState::Assigned => S::Assigned,
        store::TaskState::Running => S::Running,
        store::TaskState::Stopped => S::Stopped,
        store::TaskState::Finished => S::Finished,
        store::TaskState::Failed => S::Failed,
        store::TaskState::Canceled => S::Canceled,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{AgentRecord, JobDependency, SnapshotJob, SnapshotTask};

    fn agent(id: AgentId, state: store::AgentState) -> AgentRecord {
        AgentRecord {
            id,
            name: format!("a{id}"),
            cookie: String::new(),
            grid: 0,
            state,
            hostnames: Vec::new(),
            addresses: Vec::new(),
            maximum_task_count: 2,
            maximum_cpu_power: 2000,
            core_megahertz: None,
            current_cpu_power: 0,
            reported_task_count: 0,
            placed_task_count: 1,
            custom: None,
            extensions: None,
            last_seen: None,
        }
    }

    #[test]
    fn agents_without_a_live_channel_are_offline_to_the_scheduler() {
        let stored = SchedulingSnapshot {
            agents: vec![
                agent(1, store::AgentState::Available),
                agent(2, store::AgentState::Available),
                agent(3, store::AgentState::Unavailable),
            ],
            art_results: Vec::new(),
            jobs: Vec::new(),
        };
        let connected: HashSet<AgentId> = [1, 3].into_iter().collect();
        let snapshot = to_scheduler(&stored, &connected);
        let states: Vec<_> = snapshot.agents.iter().map(|a| (a.id, a.state)).collect();
        assert_eq!(
            states,
            [
                (1, scheduler::AgentState::Available),
                (2, scheduler::AgentState::Offline),
                (3, scheduler::AgentState::Unavailable)
            ]
        );
        assert_eq!(snapshot.agents[0].current_task_count, 1);
    }

    #[test]
    fn a_dependency_that_is_no_number_names_no_job() {
        let stored = SchedulingSnapshot {
            agents: Vec::new(),
            art_results: Vec::new(),
            jobs: vec![SnapshotJob {
                id: 7,
                grid: 0,
                status: JobStatus::Pending,
                suspended: false,
                depends_on_jobs: vec![
                    JobDependency {
                        job: "3".into(),
                        status: Some(JobStatus::Running),
                    },
                    JobDependency {
                        job: "x".into(),
                        status: None,
                    },
                ],
                tasks_must_start_simultaneously: false,
                minimum_task_count: None,
                art_conditions: Default::default(),
                tasks: vec![SnapshotTask {
                    id: "0".into(),
                    state: store::TaskState::Assigned,
                    depends_on_tasks: Vec::new(),
                    scheduler_hint: None,
                    agent: Some(1),
                }],
            }],
        };
        let snapshot = to_scheduler(&stored, &HashSet::new());
        let job = &snapshot.jobs[0];
        assert_eq!(
            job.depends_on_jobs,
            [
                scheduler::JobDependency {
                    job: 3,
                    status: Some(scheduler::JobStatus::Running)
                },
                scheduler::JobDependency {
                    job: u64::MAX,
                    status: None
                }
            ]
        );
        assert_eq!(job.tasks[0].state, scheduler::TaskState::Assigned);
        // The missing dependency fails the job.
        let plan = scheduler::schedule(&snapshot);
        assert!(matches!(
            plan.decisions.as_slice(),
            [JobDecision::Fail { job: 7, .. }]
        ));
    }
}
