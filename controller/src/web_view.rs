//! The dashboard's view of this controller: `xgrid_web::GridView` answered from the job
//! store and the shared state, job actions and submissions through the same code as the
//! client profile, and the hub's events turned into the dashboard's live events. It also
//! keeps the few minutes of CPU-use samples the dashboard charts.
//!
//! A job `xgrid-povray` submitted is known by its `applicationIdentifier`, and where each
//! task's tile lies by the task's POV-Ray command line (see `xgrid_image::povray`): both
//! are plain fields of the stored job, so its picture can be put together from the store
//! alone, for a job submitted before a restart as much as for one running now.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::{broadcast, watch};
use xgrid_image::povray::{task_tile, APPLICATION_IDENTIFIER as POVRAY_APPLICATION};
use xgrid_image::Rect;
use xgrid_protocol::jobspec::{JobSpecification, TaskSpecification};
use xgrid_protocol::messages::{AgentState, ErrorCode, GridStatus, JobAction, JobStatus};
use xgrid_protocol::plist::Date;
use xgrid_web::{
    AgentView, GridEvent, GridSummary, GridView, JobDetail, JobPicture, JobSummary,
    LatencyHistogram, MetricsView, MigrationView, OutputFileView, PictureSize, PictureTile,
    SimpleJob, TaskCounts, TaskView, UsageSample, ViewError, ViewFuture,
};

use crate::client_service::{control_job, submit_job, Refusal};
use crate::notify;
use crate::shared::Shared;
use crate::store::{self, AgentId, AgentRecord, JobId, StoreError, TaskState};
use crate::throttle::{self, Throttle};

/// How often the grid's CPU use is sampled.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(3);
/// Samples kept: ten minutes at one every three seconds.
const SAMPLES_KEPT: usize = 200;
/// Load reports kept per agent for its sparkline.
const AGENT_LOADS_KEPT: usize = 40;
/// Dashboard events a slow tab may fall behind by before it misses some.
const EVENT_BACKLOG: usize = 1024;
/// Migrations the dashboard's page lists, newest first.
const MIGRATIONS_LISTED: u32 = 500;

/// The controller as the dashboard sees it.
#[derive(Debug)]
pub struct WebView {
    shared: Arc<Shared>,
    samples: Mutex<VecDeque<UsageSample>>,
    agent_loads: Mutex<HashMap<AgentId, VecDeque<f64>>>,
    /// Jobs submitted since the dashboard started that have no task started yet, with the
    /// moment their submission was announced.
    awaiting_start: Mutex<HashMap<JobId, Instant>>,
    /// Submission to first task start, per job, as this view saw the events go by.
    dispatch_latency: Mutex<LatencyHistogram>,
    /// The tiles of `xgrid-povray` jobs, by job and task count (a job only changes its
    /// tasks by adding some), so that the job page does not read the whole specification,
    /// input files and all, each time it is refreshed.
    tile_plans: Mutex<HashMap<(JobId, u64), Option<TilePlan>>>,
    events: broadcast::Sender<GridEvent>,
}

// A poisoned lock only means a panic elsewhere while holding it; the samples stay usable.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl From<StoreError> for ViewError {
    fn from(e: StoreError) -> ViewError {
        match e {
            StoreError::NoSuchJob(_)
            | StoreError::NoSuchTask { .. }
            | StoreError::NoSuchGrid(_)
            | StoreError::NoSuchAgent(_) => ViewError::NotFound(e.to_string()),
            other => ViewError::Unavailable(other.to_string()),
        }
    }
}

impl From<Refusal> for ViewError {
    fn from(refusal: Refusal) -> ViewError {
        let why = refusal.log.unwrap_or_else(|| refusal.code.to_string());
        match refusal.code {
            ErrorCode::InvalidJobIdentifier | ErrorCode::InvalidGridIdentifier => {
                ViewError::NotFound(why)
            }
            _ => ViewError::Refused(why),
        }
    }
}

fn job_status(status: store::JobStatus) -> JobStatus {
    JobStatus::parse(status.as_str()).unwrap_or(JobStatus::Pending)
}

fn is_final(status: JobStatus) -> bool {
    matches!(
        status,
        JobStatus::Finished | JobStatus::Failed | JobStatus::Canceled
    )
}

fn agent_state(state: store::AgentState) -> AgentState {
    AgentState::parse(state.as_str()).unwrap_or(AgentState::Offline)
}

/// Cores busy on the agent: the tasks placed there, at most one per core.
fn cores_busy(agent: &AgentRecord) -> f64 {
    f64::from(agent.placed_task_count.min(agent.maximum_task_count))
}

fn task_counts(tasks: &[store::TaskRecord]) -> TaskCounts {
    let mut counts = TaskCounts {
        total: u32::try_from(tasks.len()).unwrap_or(u32::MAX),
        ..TaskCounts::default()
    };
    for task in tasks {
        match task.state {
            TaskState::Pending => counts.pending += 1,
            TaskState::Assigned | TaskState::Running | TaskState::Stopped => counts.running += 1,
            TaskState::Finished => counts.finished += 1,
            TaskState::Failed | TaskState::Canceled => counts.failed += 1,
        }
    }
    counts
}

impl WebView {
    pub fn new(shared: Arc<Shared>) -> WebView {
        let (events, _) = broadcast::channel(EVENT_BACKLOG);
        WebView {
            shared,
            samples: Mutex::new(VecDeque::new()),
            agent_loads: Mutex::new(HashMap::new()),
            awaiting_start: Mutex::new(HashMap::new()),
            dispatch_latency: Mutex::new(LatencyHistogram::new(LatencyHistogram::DEFAULT_BOUNDS)),
            tile_plans: Mutex::new(HashMap::new()),
            events,
        }
    }

    /// Samples CPU use and relays the hub's events until `shutdown`.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let mut hub = self.shared.hub.subscribe();
        let mut ticks = tokio::time::interval(SAMPLE_EVERY);
        // Each told change costs a read of the job's tasks: a burst is told as one.
        let mut job_changes = Throttle::new(self.shared.config.job_change_spacing);
        loop {
            tokio::select! {
                _ = ticks.tick() => self.sample().await,
                () = throttle::until(job_changes.next_due()) => {
                    for job in job_changes.take_due(Instant::now()) {
                        self.relay(notify::GridEvent::JobChanged { job }).await;
                    }
                }
                event = hub.recv() => match event {
                    Ok(event) => {
                        if job_changes.admit(&event, Instant::now()) {
                            self.relay(event).await;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = shutdown.changed() => return,
            }
        }
    }

    async fn sample(&self) {
        let Ok(agents) = self.shared.store.agents().await else {
            return;
        };
        let working: Vec<&AgentRecord> = agents
            .iter()
            .filter(|a| a.state != store::AgentState::Offline)
            .collect();
        let sample = UsageSample {
            at: Date::now(),
            cores_busy: working.iter().map(|a| cores_busy(a)).sum(),
            cores_total: working.iter().map(|a| a.maximum_task_count).sum(),
        };
        {
            let mut loads = lock(&self.agent_loads);
            for agent in &agents {
                let history = loads.entry(agent.id).or_default();
                history.push_back(cores_busy(agent));
                if history.len() > AGENT_LOADS_KEPT {
                    history.pop_front();
                }
            }
        }
        {
            let mut samples = lock(&self.samples);
            samples.push_back(sample);
            if samples.len() > SAMPLES_KEPT {
                samples.pop_front();
            }
        }
        let _ = self.events.send(GridEvent::Usage(sample));
    }

    async fn relay(&self, event: notify::GridEvent) {
        use notify::GridEvent as E;
        if let E::JobAdded { job, .. } = event {
            lock(&self.awaiting_start).insert(job, Instant::now());
        }
        // With no tab open, only jobs awaiting their first start are worth reading.
        let watched = self.events.receiver_count() > 0;
        let translated = match event {
            E::JobAdded { job, .. } | E::JobChanged { job } | E::JobStatusChanged { job }
                if !watched && !lock(&self.awaiting_start).contains_key(&job) =>
            {
                None
            }
            E::AgentAdded { .. }
            | E::AgentRemoved { .. }
            | E::AgentChanged { .. }
            | E::MigrationRecorded { .. }
                if !watched =>
            {
                None
            }
            E::JobAdded { job, .. } | E::JobChanged { job } | E::JobStatusChanged { job } => {
                let summary = self.job_summary(job).await.ok();
                if let Some(summary) = &summary {
                    self.note_start(summary);
                }
                summary.map(GridEvent::Job)
            }
            E::JobRemoved { job, .. } => {
                lock(&self.awaiting_start).remove(&job);
                lock(&self.tile_plans).retain(|(id, _), _| *id != job);
                Some(GridEvent::JobRemoved(job))
            }
            E::AgentAdded { agent, .. }
            | E::AgentRemoved { agent, .. }
            | E::AgentChanged { agent } => match self.shared.store.agent(agent).await {
                Ok(record) => Some(GridEvent::Agent(self.agent_view(&record))),
                Err(_) => None,
            },
            E::MigrationRecorded { migration, .. } => self
                .migration_view(migration)
                .await
                .map(GridEvent::Migration),
            E::GridAdded { .. }
            | E::GridRemoved { .. }
            | E::GridChanged { .. }
            | E::JobOutput { .. }
            | E::JobLogged { .. } => None,
        };
        if let Some(event) = translated {
            let _ = self.events.send(event);
        }
    }

    /// A job awaiting its first task start that now has one (or is over) leaves the wait
    /// list; a start is observed as dispatch latency. The latency includes the hub's delay
    /// in telling this view, a few milliseconds at most on an idle controller.
    fn note_start(&self, job: &JobSummary) {
        let started = job.started.is_some() || job.tasks.running > 0;
        if !started && !is_final(job.status) {
            return;
        }
        let Some(submitted) = lock(&self.awaiting_start).remove(&job.id) else {
            return;
        };
        if started {
            lock(&self.dispatch_latency).observe(submitted.elapsed());
        }
    }

    fn agent_view(&self, agent: &AgentRecord) -> AgentView {
        let recent_load = lock(&self.agent_loads)
            .get(&agent.id)
            .map(|h| h.iter().copied().collect())
            .unwrap_or_default();
        let megahertz = agent
            .core_megahertz
            .unwrap_or(agent.maximum_cpu_power / agent.maximum_task_count.max(1));
        AgentView {
            id: agent.id,
            name: agent.name.clone(),
            state: agent_state(agent.state),
            cores: agent.maximum_task_count,
            mhz: megahertz,
            load: f64::from(agent.current_cpu_power) / f64::from(megahertz.max(1)),
            running_tasks: agent.placed_task_count,
            owner_present: agent.state == store::AgentState::Unavailable,
            can_checkpoint: agent.can_checkpoint(),
            recent_load,
        }
    }

    async fn agent_names(&self) -> Result<HashMap<AgentId, String>, ViewError> {
        Ok(self
            .shared
            .store
            .agents()
            .await?
            .into_iter()
            .map(|a| (a.id, a.name))
            .collect())
    }

    async fn migration_view(&self, migration: u64) -> Option<MigrationView> {
        let record = self.shared.store.migration(migration).await.ok()??;
        let names = self.agent_names().await.ok()?;
        Some(migration_view(&record, &names))
    }

    async fn job_summary(&self, job: JobId) -> Result<JobSummary, ViewError> {
        let attributes = self.shared.store.job_attributes(job).await?;
        let tasks = self.shared.store.tasks(job).await?;
        Ok(summary(&attributes, &tasks))
    }

    async fn all_jobs(&self) -> Result<Vec<JobSummary>, ViewError> {
        let mut jobs = Vec::new();
        for grid in self.shared.store.grids().await? {
            for job in self.shared.store.job_ids(grid.id).await? {
                match self.job_summary(job).await {
                    Ok(summary) => jobs.push(summary),
                    // Deleted between listing and reading: not worth an error page.
                    Err(ViewError::NotFound(_)) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        jobs.sort_by_key(|j| std::cmp::Reverse(j.id));
        Ok(jobs)
    }

    async fn detail(&self, job: JobId) -> Result<Option<JobDetail>, ViewError> {
        let store = &self.shared.store;
        let attributes = match store.job_attributes(job).await {
            Ok(attributes) => attributes,
            Err(StoreError::NoSuchJob(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let records = store.tasks(job).await?;
        let mut streams = store.job_results(job).await?;
        let finals = store.job_final_results(job).await?;
        let agent_names: HashMap<AgentId, String> = store
            .agents()
            .await?
            .into_iter()
            .map(|a| (a.id, a.name))
            .collect();
        let tasks = records
            .iter()
            .map(|task| {
                let output = streams.remove(&task.id).unwrap_or_default();
                TaskView {
                    name: task.id.clone(),
                    state: task.state.as_str().to_string(),
                    agent: task.agent.and_then(|a| agent_names.get(&a).cloned()),
                    started: task.date_started,
                    finished: task.date_stopped,
                    exit_code: task.termination_status.and_then(|s| i32::try_from(s).ok()),
                    stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
                    stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
                }
            })
            .collect();
        let outputs = finals
            .iter()
            .flat_map(|(task, results)| {
                results
                    .output_files
                    .iter()
                    .map(|(path, bytes)| OutputFileView {
                        task: task.clone(),
                        path: path.clone(),
                        size: bytes.len() as u64,
                    })
            })
            .collect();
        let picture = self.picture_tiles(&attributes).await?.map(|(size, _)| size);
        Ok(Some(JobDetail {
            summary: summary(&attributes, &records),
            tasks,
            outputs,
            picture,
        }))
    }

    /// The picture size and each task's tile, for an `xgrid-povray` job cut into tiles.
    async fn picture_tiles(
        &self,
        attributes: &store::JobAttributes,
    ) -> Result<Option<TilePlan>, ViewError> {
        if attributes.application_identifier.as_deref() != Some(POVRAY_APPLICATION) {
            return Ok(None);
        }
        let key = (attributes.id, attributes.task_count);
        if let Some(known) = lock(&self.tile_plans).get(&key) {
            return Ok(known.clone());
        }
        let spec = self.shared.store.job_specification(attributes.id).await?;
        let plan = tile_plan(&spec);
        let mut plans = lock(&self.tile_plans);
        plans.retain(|(job, _), _| *job != attributes.id);
        plans.insert(key, plan.clone());
        Ok(plan)
    }

    async fn picture(&self, job: JobId) -> Result<Option<JobPicture>, ViewError> {
        let store = &self.shared.store;
        let attributes = match store.job_attributes(job).await {
            Ok(attributes) => attributes,
            Err(StoreError::NoSuchJob(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let Some((size, mut rects)) = self.picture_tiles(&attributes).await? else {
            return Ok(None);
        };
        let finished: Vec<String> = store
            .tasks(job)
            .await?
            .into_iter()
            .filter(|t| t.state == TaskState::Finished)
            .map(|t| t.id)
            .collect();
        let mut finals = store.job_final_results(job).await?;
        let mut tiles = Vec::new();
        for task in finished {
            let (Some(rect), Some(results)) = (rects.remove(&task), finals.remove(&task)) else {
                continue;
            };
            // The tool names the file; any Targa file will do for a job written by hand.
            let targa = results
                .output_files
                .into_iter()
                .find(|(path, _)| path.to_ascii_lowercase().ends_with(".tga"))
                .map(|(_, bytes)| bytes);
            if let Some(targa) = targa {
                tiles.push(PictureTile { rect, targa });
            }
        }
        Ok(Some(JobPicture { size, tiles }))
    }

    async fn collect_metrics(&self) -> Result<MetricsView, ViewError> {
        let jobs = self.all_jobs().await?;
        let mut by_status: BTreeMap<&'static str, (JobStatus, u64)> = BTreeMap::new();
        for job in &jobs {
            by_status
                .entry(job.status.as_str())
                .or_insert((job.status, 0))
                .1 += 1;
        }
        let agents = self.shared.store.agents().await?;
        let mut by_state: BTreeMap<&'static str, (AgentState, u64)> = BTreeMap::new();
        for agent in &agents {
            let state = agent_state(agent.state);
            by_state.entry(state.as_str()).or_insert((state, 0)).1 += 1;
        }
        Ok(MetricsView {
            jobs_by_status: by_status.into_values().collect(),
            tasks_running: jobs.iter().map(|j| u64::from(j.tasks.running)).sum(),
            agents_by_state: by_state.into_values().collect(),
            migrations_total: self.shared.store.migration_count().await?,
            dispatch_latency: lock(&self.dispatch_latency).clone(),
        })
    }

    async fn grid_summaries(&self) -> Result<Vec<GridSummary>, ViewError> {
        let store = &self.shared.store;
        let agents = store.agents().await?;
        let mut grids = store.grids().await?;
        grids.sort_by_key(|g| (!g.is_default, g.id));
        let mut summaries = Vec::new();
        for grid in grids {
            let jobs = store.job_ids(grid.id).await?;
            let mut working = false;
            for job in &jobs {
                if let Ok(attributes) = store.job_attributes(*job).await {
                    working |= attributes.status == store::JobStatus::Running;
                }
            }
            summaries.push(GridSummary {
                id: grid.id,
                name: grid.name,
                is_default: grid.is_default,
                status: if working {
                    GridStatus::Working
                } else {
                    GridStatus::Idle
                },
                agent_count: u32::try_from(agents.iter().filter(|a| a.grid == grid.id).count())
                    .unwrap_or(u32::MAX),
                job_count: u32::try_from(jobs.len()).unwrap_or(u32::MAX),
            });
        }
        Ok(summaries)
    }
}

/// One row of the migrations page. A move from or to no agent went through a checkpoint
/// the controller kept; a failed attempt says what failed after its reason.
fn migration_view(
    record: &store::MigrationRecord,
    names: &HashMap<AgentId, String>,
) -> MigrationView {
    let name = |agent: Option<AgentId>| match agent {
        Some(id) => names
            .get(&id)
            .cloned()
            .unwrap_or_else(|| format!("agent {id}")),
        None => "the controller".to_string(),
    };
    let reason = if record.outcome == "moved" {
        record.reason.clone()
    } else {
        format!("{} ({})", record.reason, record.outcome)
    };
    MigrationView {
        at: record.started,
        job: record.job,
        task: record.task.clone(),
        from: name(record.from),
        to: name(record.to),
        reason,
        frozen: Duration::from_millis(record.frozen_milliseconds.unwrap_or(0)),
    }
}

/// A tiled picture's size and each task's tile in it.
type TilePlan = (PictureSize, BTreeMap<String, Rect>);

/// Every task's tile, when every task renders a tile of one picture size.
fn tile_plan(spec: &JobSpecification) -> Option<TilePlan> {
    let mut size = None;
    let mut rects = BTreeMap::new();
    for (name, task) in &spec.tasks {
        let tile = task_tile(&task.arguments)?;
        let this = PictureSize {
            width: tile.width,
            height: tile.height,
        };
        if *size.get_or_insert(this) != this {
            return None;
        }
        rects.insert(name.clone(), tile.rect);
    }
    Some((size?, rects))
}

fn summary(attributes: &store::JobAttributes, tasks: &[store::TaskRecord]) -> JobSummary {
    JobSummary {
        id: attributes.id,
        name: attributes.name.clone().unwrap_or_default(),
        grid: attributes.grid,
        status: job_status(attributes.status),
        suspended: attributes.suspended,
        tasks: task_counts(tasks),
        percent_done: attributes.percent_done.clamp(0.0, 100.0),
        submitted: Some(attributes.date_submitted),
        started: attributes.date_started,
        finished: attributes.date_stopped,
    }
}

/// The dashboard's one-task job as a job specification (task `0`, like Apple's tools name
/// a single task).
fn specification(job: &SimpleJob) -> JobSpecification {
    let task = TaskSpecification {
        command: job.command.clone(),
        arguments: job.arguments.clone(),
        environment: BTreeMap::new(),
        input_stream: None,
        input_file_map: BTreeMap::new(),
        depends_on_tasks: Vec::new(),
    };
    JobSpecification {
        name: Some(job.name.clone()),
        application_identifier: Some("xgrid-web".to_string()),
        submission_identifier: None,
        notification_email: None,
        grid_identifier: job.grid.map(|g| g.to_string()),
        scheduler: Default::default(),
        scheduler_hints: BTreeMap::new(),
        input_files: BTreeMap::new(),
        art_specifications: BTreeMap::new(),
        art_conditions: BTreeMap::new(),
        tasks: BTreeMap::from([("0".to_string(), task)]),
    }
}

impl GridView for WebView {
    fn grids(&self) -> ViewFuture<'_, Vec<GridSummary>> {
        Box::pin(self.grid_summaries())
    }

    fn agents(&self) -> ViewFuture<'_, Vec<AgentView>> {
        Box::pin(async move {
            let agents = self.shared.store.agents().await?;
            Ok(agents.iter().map(|a| self.agent_view(a)).collect())
        })
    }

    fn jobs(&self) -> ViewFuture<'_, Vec<JobSummary>> {
        Box::pin(self.all_jobs())
    }

    fn job(&self, id: JobId) -> ViewFuture<'_, Option<JobDetail>> {
        Box::pin(self.detail(id))
    }

    fn output_file(
        &self,
        job: JobId,
        task: String,
        path: String,
    ) -> ViewFuture<'_, Option<Vec<u8>>> {
        Box::pin(async move {
            let mut finals = match self.shared.store.job_final_results(job).await {
                Ok(finals) => finals,
                Err(StoreError::NoSuchJob(_)) => return Ok(None),
                Err(e) => return Err(e.into()),
            };
            Ok(finals
                .remove(&task)
                .and_then(|mut results| results.output_files.remove(&path)))
        })
    }

    fn job_picture(&self, id: JobId) -> ViewFuture<'_, Option<JobPicture>> {
        Box::pin(self.picture(id))
    }

    fn migrations(&self) -> ViewFuture<'_, Vec<MigrationView>> {
        Box::pin(async move {
            let records = self.shared.store.migrations(MIGRATIONS_LISTED).await?;
            let names = self.agent_names().await?;
            Ok(records
                .iter()
                .map(|record| migration_view(record, &names))
                .collect())
        })
    }

    fn usage(&self) -> ViewFuture<'_, Vec<UsageSample>> {
        Box::pin(async move { Ok(lock(&self.samples).iter().copied().collect()) })
    }

    fn metrics(&self) -> ViewFuture<'_, MetricsView> {
        Box::pin(self.collect_metrics())
    }

    fn control_job(&self, id: JobId, action: JobAction) -> ViewFuture<'_, ()> {
        Box::pin(async move { Ok(control_job(&self.shared, id, action).await?) })
    }

    fn submit_job(&self, job: SimpleJob) -> ViewFuture<'_, JobId> {
        Box::pin(async move {
            if job.command.trim().is_empty() {
                return Err(ViewError::Refused("a job needs a command".to_string()));
            }
            let spec = specification(&job);
            Ok(submit_job(&self.shared, &spec, None).await?)
        })
    }

    fn events(&self) -> broadcast::Receiver<GridEvent> {
        self.events.subscribe()
    }

    fn client_password(&self) -> Option<String> {
        self.shared.config.client_password.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(state: TaskState) -> store::TaskRecord {
        store::TaskRecord {
            job: 1,
            id: "t".to_string(),
            state,
            agent: None,
            task_ref: None,
            attempts: 0,
            termination_status: None,
            percent_done: None,
            error: None,
            date_started: None,
            date_stopped: None,
        }
    }

    #[test]
    fn task_counts_put_each_state_in_its_column() {
        let tasks: Vec<_> = [
            TaskState::Pending,
            TaskState::Assigned,
            TaskState::Running,
            TaskState::Stopped,
            TaskState::Finished,
            TaskState::Failed,
            TaskState::Canceled,
        ]
        .into_iter()
        .map(task)
        .collect();
        let counts = task_counts(&tasks);
        assert_eq!(
            counts,
            TaskCounts {
                total: 7,
                pending: 1,
                running: 3,
                finished: 1,
                failed: 2,
            }
        );
    }

    #[test]
    fn migrations_name_their_agents_and_say_what_failed() {
        let names = HashMap::from([(3, "linux-rack-3".to_string())]);
        let record = store::MigrationRecord {
            id: 1,
            job: 12,
            task: "4".into(),
            from: Some(3),
            to: None,
            reason: "agent shutting down".into(),
            started: Date(1000.0),
            frozen_milliseconds: Some(1840),
            octets: 7_400_000,
            outcome: "moved".into(),
        };
        let view = migration_view(&record, &names);
        assert_eq!(
            (view.from.as_str(), view.to.as_str(), view.reason.as_str()),
            ("linux-rack-3", "the controller", "agent shutting down")
        );
        assert_eq!(view.frozen, Duration::from_millis(1840));
        let failed = store::MigrationRecord {
            from: Some(9),
            to: Some(3),
            outcome: "restore failed: RestoreFailed: no CPU feature avx".into(),
            ..record
        };
        let view = migration_view(&failed, &names);
        assert_eq!(
            (view.from.as_str(), view.to.as_str()),
            ("agent 9", "linux-rack-3")
        );
        assert_eq!(
            view.reason,
            "agent shutting down (restore failed: RestoreFailed: no CPU feature avx)"
        );
    }

    #[test]
    fn a_simple_job_becomes_one_task_in_its_grid() {
        let spec = specification(&SimpleJob {
            name: "n".to_string(),
            command: "/bin/echo".to_string(),
            arguments: vec!["hi".to_string()],
            grid: Some(3),
        });
        assert_eq!(spec.name.as_deref(), Some("n"));
        assert_eq!(spec.grid_identifier.as_deref(), Some("3"));
        let only = spec.tasks.get("0").map(|t| (&t.command, &t.arguments));
        assert_eq!(
            only,
            Some((&"/bin/echo".to_string(), &vec!["hi".to_string()]))
        );
        assert_eq!(spec.tasks.len(), 1);
    }

    #[test]
    fn a_picture_needs_every_task_to_be_a_tile_of_one_size() {
        let task = |line: &str| TaskSpecification {
            command: "/usr/bin/povray".to_string(),
            arguments: line.split_whitespace().map(String::from).collect(),
            environment: BTreeMap::new(),
            input_stream: None,
            input_file_map: BTreeMap::new(),
            depends_on_tasks: Vec::new(),
        };
        let mut spec = specification(&SimpleJob {
            name: "render".to_string(),
            command: "/usr/bin/povray".to_string(),
            arguments: Vec::new(),
            grid: None,
        });
        spec.tasks = BTreeMap::from([
            ("0".to_string(), task("+W64 +H32 +SR1 +ER32 +SC1 +EC32")),
            ("1".to_string(), task("+W64 +H32 +SR1 +ER32 +SC33 +EC64")),
        ]);
        let (size, rects) = tile_plan(&spec).expect("two tiles");
        assert_eq!((size.width, size.height), (64, 32));
        assert_eq!(rects.get("1").map(|r| (r.left, r.right)), Some((32, 64)));

        spec.tasks
            .insert("2".to_string(), task("+W32 +H32 +SR1 +ER32 +SC1 +EC32"));
        assert_eq!(tile_plan(&spec), None, "tiles of two picture sizes");
        spec.tasks
            .insert("2".to_string(), task("+W64 +H32 +SF1 +EF1"));
        assert_eq!(tile_plan(&spec), None, "a frame among the tiles");
        spec.tasks.clear();
        assert_eq!(tile_plan(&spec), None, "no tasks, no picture");
    }

    #[test]
    fn every_store_status_has_a_wire_status() {
        assert_eq!(job_status(store::JobStatus::Finished), JobStatus::Finished);
        assert_eq!(
            job_status(store::JobStatus::Canceling),
            JobStatus::Canceling
        );
        assert_eq!(
            agent_state(store::AgentState::Unavailable),
            AgentState::Unavailable
        );
    }
}
