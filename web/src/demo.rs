//! An in-memory grid behind `GridView`, for previews of the dashboard without a controller
//! and for the route tests. Actions change its state and broadcast events like the real one.

use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::broadcast;

use crate::view::{
    AgentState, AgentView, Date, GridEvent, GridStatus, GridSummary, GridView, JobAction,
    JobDetail, JobId, JobPicture, JobStatus, JobSummary, LatencyHistogram, MetricsView,
    MigrationView, OutputFileView, SimpleJob, TaskCounts, TaskView, UsageSample, ViewError,
    ViewFuture,
};

/// What the demo grid holds; public so tests can arrange and inspect it.
#[derive(Debug, Clone, Default)]
pub struct DemoState {
    pub grids: Vec<GridSummary>,
    pub agents: Vec<AgentView>,
    pub jobs: Vec<JobDetail>,
    /// `(job, task, path, bytes)`.
    pub files: Vec<(JobId, String, String, Vec<u8>)>,
    /// Pictures of jobs rendered tile by tile, by job.
    pub pictures: Vec<(JobId, JobPicture)>,
    pub migrations: Vec<MigrationView>,
    pub usage: Vec<UsageSample>,
    /// Every action asked for, in order, for tests to check.
    pub actions: Vec<(JobId, JobAction)>,
}

/// An in-memory grid.
#[derive(Debug)]
pub struct DemoGrid {
    pub state: Mutex<DemoState>,
    password: Option<String>,
    events: broadcast::Sender<GridEvent>,
}

fn ready<'a, T: Send + 'a>(value: Result<T, ViewError>) -> ViewFuture<'a, T> {
    Box::pin(std::future::ready(value))
}

impl DemoGrid {
    pub fn new(state: DemoState, password: Option<String>) -> DemoGrid {
        let (events, _) = broadcast::channel(256);
        DemoGrid {
            state: Mutex::new(state),
            password,
            events,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, DemoState> {
        self.state
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// Broadcast an event to every open dashboard (ignored when none is open).
    pub fn publish(&self, event: GridEvent) {
        let _ = self.events.send(event);
    }

    /// A plausible small grid: three agents, a few jobs in every state, one migration.
    pub fn sample_state(now: Date) -> DemoState {
        let at = |minutes_ago: f64| Some(Date(now.0 - minutes_ago * 60.0));
        let agent =
            |id, name: &str, state, cores, mhz, load: f64, running, owner, ckpt| AgentView {
                id,
                name: name.to_owned(),
                state,
                cores,
                mhz,
                load,
                running_tasks: running,
                owner_present: owner,
                can_checkpoint: ckpt,
                recent_load: (0..40)
                    .map(|i| (load + (f64::from(i) * 0.7 + id as f64).sin() * 0.6).max(0.0))
                    .collect(),
            };
        let job =
            |id, name: &str, status, suspended, total, done, running, failed, started: f64| {
                JobSummary {
                    id,
                    name: name.to_owned(),
                    grid: 0,
                    status,
                    suspended,
                    tasks: TaskCounts {
                        total,
                        pending: total - done - running - failed,
                        running,
                        finished: done,
                        failed,
                    },
                    percent_done: f64::from(done + failed) * 100.0 / f64::from(total.max(1)),
                    submitted: at(started + 1.0),
                    started: at(started),
                    finished: if status == JobStatus::Finished || status == JobStatus::Failed {
                        at(started - 4.5)
                    } else {
                        None
                    },
                }
            };
        let task = |name: &str, state: &str, agent: &str, exit: Option<i32>, out: &str| TaskView {
            name: name.to_owned(),
            state: state.to_owned(),
            agent: Some(agent.to_owned()),
            started: at(30.0),
            finished: exit.and(at(25.0)),
            exit_code: exit,
            stdout: out.to_owned(),
            stderr: String::new(),
        };
        let render = JobDetail {
            summary: job(
                12,
                "Render frames 1–48",
                JobStatus::Running,
                false,
                48,
                30,
                6,
                0,
                30.0,
            ),
            tasks: vec![
                task(
                    "0",
                    "Finished",
                    "mac-mini-studio",
                    Some(0),
                    "frame 1 done in 41.2 s\n",
                ),
                task("1", "Running", "linux-rack-3", None, "rendering frame 2…\n"),
            ],
            outputs: vec![OutputFileView {
                task: "0".into(),
                path: "frames/frame-0001.png".into(),
                size: 182_331,
            }],
            picture: None,
        };
        let cal = JobDetail {
            summary: job(11, "cal 2026", JobStatus::Finished, false, 1, 1, 0, 0, 50.0),
            tasks: vec![task(
                "0",
                "Finished",
                "linux-rack-3",
                Some(0),
                "   November 2026\nSu Mo Tu We Th Fr Sa\n",
            )],
            outputs: Vec::new(),
            picture: None,
        };
        let mut broken = JobDetail {
            summary: job(
                10,
                "Monte Carlo π",
                JobStatus::Failed,
                false,
                8,
                6,
                0,
                2,
                90.0,
            ),
            tasks: vec![task("3", "Failed", "old-imac", Some(1), "")],
            outputs: Vec::new(),
            picture: None,
        };
        if let Some(t) = broken.tasks.first_mut() {
            t.stderr = "montecarlo: cannot open seed file\n".into();
        }
        let paused = JobDetail {
            summary: job(
                13,
                "Protein fold batch",
                JobStatus::Running,
                true,
                16,
                4,
                0,
                0,
                12.0,
            ),
            tasks: Vec::new(),
            outputs: Vec::new(),
            picture: None,
        };
        let waiting = JobDetail {
            summary: job(
                14,
                "Nightly backup check",
                JobStatus::Pending,
                false,
                2,
                0,
                0,
                0,
                1.0,
            ),
            tasks: Vec::new(),
            outputs: Vec::new(),
            picture: None,
        };
        DemoState {
            grids: vec![
                GridSummary {
                    id: 0,
                    name: "Xgrid".into(),
                    is_default: true,
                    status: GridStatus::Working,
                    agent_count: 3,
                    job_count: 4,
                },
                GridSummary {
                    id: 1,
                    name: "Render farm".into(),
                    is_default: false,
                    status: GridStatus::Idle,
                    agent_count: 0,
                    job_count: 1,
                },
            ],
            agents: vec![
                agent(
                    1,
                    "mac-mini-studio",
                    AgentState::Available,
                    4,
                    2600,
                    3.2,
                    3,
                    false,
                    false,
                ),
                agent(
                    2,
                    "linux-rack-3",
                    AgentState::Available,
                    8,
                    3400,
                    4.1,
                    3,
                    false,
                    true,
                ),
                agent(
                    3,
                    "old-imac",
                    AgentState::Unavailable,
                    2,
                    2000,
                    0.9,
                    0,
                    true,
                    false,
                ),
                agent(
                    4,
                    "laptop-anna",
                    AgentState::Offline,
                    4,
                    2200,
                    0.0,
                    0,
                    false,
                    true,
                ),
            ],
            jobs: vec![waiting, paused, render, cal, broken],
            files: vec![(
                12,
                "0".into(),
                "frames/frame-0001.png".into(),
                b"\x89PNG demo".to_vec(),
            )],
            pictures: Vec::new(),
            migrations: vec![MigrationView {
                at: Date(now.0 - 600.0),
                job: 12,
                task: "4".into(),
                from: "laptop-anna".into(),
                to: "linux-rack-3".into(),
                reason: "owner returned".into(),
                frozen: Duration::from_millis(1840),
            }],
            usage: (0..60)
                .map(|i| UsageSample {
                    at: Date(now.0 - f64::from(60 - i) * 10.0),
                    cores_busy: (6.0 + (f64::from(i) / 6.0).sin() * 3.0).max(0.0),
                    cores_total: 14,
                })
                .collect(),
            actions: Vec::new(),
        }
    }

    /// Move the demo along a step: new loads and a new CPU sample, broadcast as events.
    pub fn tick(&self, step: u32) {
        let (agents, sample) = {
            let mut state = self.lock();
            for a in state
                .agents
                .iter_mut()
                .filter(|a| a.state != AgentState::Offline)
            {
                let wave = (f64::from(step) * 0.5 + a.id as f64).sin();
                a.load = (f64::from(a.cores) * 0.5 + wave * f64::from(a.cores) * 0.4).max(0.0);
                a.recent_load.push(a.load);
                if a.recent_load.len() > 40 {
                    a.recent_load.remove(0);
                }
            }
            let busy = 6.0 + (f64::from(60 + step) / 6.0).sin() * 3.0;
            let sample = UsageSample {
                at: Date::now(),
                cores_busy: busy,
                cores_total: 14,
            };
            state.usage.push(sample);
            if state.usage.len() > 120 {
                state.usage.remove(0);
            }
            (state.agents.clone(), sample)
        };
        for a in agents {
            self.publish(GridEvent::Agent(a));
        }
        self.publish(GridEvent::Usage(sample));
    }
}

impl GridView for DemoGrid {
    fn grids(&self) -> ViewFuture<'_, Vec<GridSummary>> {
        ready(Ok(self.lock().grids.clone()))
    }

    fn agents(&self) -> ViewFuture<'_, Vec<AgentView>> {
        ready(Ok(self.lock().agents.clone()))
    }

    fn jobs(&self) -> ViewFuture<'_, Vec<JobSummary>> {
        let mut list: Vec<JobSummary> =
            self.lock().jobs.iter().map(|j| j.summary.clone()).collect();
        list.sort_by_key(|j| std::cmp::Reverse(j.id));
        ready(Ok(list))
    }

    fn job(&self, id: JobId) -> ViewFuture<'_, Option<JobDetail>> {
        ready(Ok(self
            .lock()
            .jobs
            .iter()
            .find(|j| j.summary.id == id)
            .cloned()))
    }

    fn output_file(
        &self,
        job: JobId,
        task: String,
        path: String,
    ) -> ViewFuture<'_, Option<Vec<u8>>> {
        let state = self.lock();
        let found = state
            .files
            .iter()
            .find(|(j, t, p, _)| *j == job && *t == task && *p == path)
            .map(|(.., bytes)| bytes.clone());
        ready(Ok(found))
    }

    fn job_picture(&self, id: JobId) -> ViewFuture<'_, Option<JobPicture>> {
        let state = self.lock();
        let found = state
            .pictures
            .iter()
            .find(|(job, _)| *job == id)
            .map(|(_, picture)| picture.clone());
        ready(Ok(found))
    }

    fn migrations(&self) -> ViewFuture<'_, Vec<MigrationView>> {
        ready(Ok(self.lock().migrations.clone()))
    }

    fn usage(&self) -> ViewFuture<'_, Vec<UsageSample>> {
        ready(Ok(self.lock().usage.clone()))
    }

    fn metrics(&self) -> ViewFuture<'_, MetricsView> {
        let state = self.lock();
        let mut jobs_by_status: Vec<(JobStatus, u64)> = Vec::new();
        for j in &state.jobs {
            match jobs_by_status
                .iter_mut()
                .find(|(s, _)| *s == j.summary.status)
            {
                Some((_, n)) => *n += 1,
                None => jobs_by_status.push((j.summary.status, 1)),
            }
        }
        let mut agents_by_state: Vec<(AgentState, u64)> = Vec::new();
        for a in &state.agents {
            match agents_by_state.iter_mut().find(|(s, _)| *s == a.state) {
                Some((_, n)) => *n += 1,
                None => agents_by_state.push((a.state, 1)),
            }
        }
        let mut dispatch_latency = LatencyHistogram::new(LatencyHistogram::DEFAULT_BOUNDS);
        dispatch_latency.observe(Duration::from_millis(40));
        ready(Ok(MetricsView {
            jobs_by_status,
            tasks_running: state
                .agents
                .iter()
                .map(|a| u64::from(a.running_tasks))
                .sum(),
            agents_by_state,
            migrations_total: state.migrations.len() as u64,
            dispatch_latency,
        }))
    }

    fn control_job(&self, id: JobId, action: JobAction) -> ViewFuture<'_, ()> {
        let event = {
            let mut state = self.lock();
            state.actions.push((id, action));
            let Some(index) = state.jobs.iter().position(|j| j.summary.id == id) else {
                return ready(Err(ViewError::NotFound(format!("there is no job {id}"))));
            };
            if action == JobAction::Remove {
                state.jobs.remove(index);
                GridEvent::JobRemoved(id)
            } else {
                let Some(job) = state.jobs.get_mut(index) else {
                    return ready(Err(ViewError::NotFound(format!("there is no job {id}"))));
                };
                let s = &mut job.summary;
                match action {
                    JobAction::Suspend => s.suspended = true,
                    JobAction::Resume => s.suspended = false,
                    JobAction::Cancel => s.status = JobStatus::Canceled,
                    JobAction::Restart => {
                        s.status = JobStatus::Pending;
                        s.suspended = false;
                        s.percent_done = 0.0;
                    }
                    JobAction::Remove => {}
                }
                GridEvent::Job(s.clone())
            }
        };
        self.publish(event);
        ready(Ok(()))
    }

    fn submit_job(&self, job: SimpleJob) -> ViewFuture<'_, JobId> {
        let summary = {
            let mut state = self.lock();
            let id = state.jobs.iter().map(|j| j.summary.id).max().unwrap_or(0) + 1;
            let summary = JobSummary {
                id,
                name: job.name,
                grid: job.grid.unwrap_or(0),
                status: JobStatus::Pending,
                suspended: false,
                tasks: TaskCounts {
                    total: 1,
                    pending: 1,
                    ..TaskCounts::default()
                },
                percent_done: 0.0,
                submitted: Some(Date::now()),
                started: None,
                finished: None,
            };
            state.jobs.push(JobDetail {
                summary: summary.clone(),
                tasks: Vec::new(),
                outputs: Vec::new(),
                picture: None,
            });
            summary
        };
        let id = summary.id;
        self.publish(GridEvent::Job(summary));
        ready(Ok(id))
    }

    fn events(&self) -> broadcast::Receiver<GridEvent> {
        self.events.subscribe()
    }

    fn client_password(&self) -> Option<String> {
        self.password.clone()
    }
}
