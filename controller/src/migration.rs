//! The balancing loop and the migrations it runs (docs/migration.md): on a trigger (an
//! agent's availability changed) or a periodic tick it builds a [`BalancerSnapshot`] from the
//! store, asks [`balancer::plan`] for decisions, and carries each out over the agents'
//! connections: the five steps of a migration (checkpoint, output, stream, restore, release),
//! evacuations to the controller, restores of held checkpoints, suspensions, resumptions and
//! periodic checkpoints. Streams go through a file under `DATA_DIR/checkpoints` chunk by
//! chunk, never whole in memory; the file is what recovery from a lost agent restores.
//! Every move and failed attempt is recorded in the store, the job log and the dashboard.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;
use xgrid_protocol::messages::{
    self, AgentReply, AgentStatus, CheckpointDisposition, CheckpointReadRequest,
    CheckpointReleaseRequest, CheckpointWriteRequest, ControllerToAgentRequest, ErrorCode,
    MigrationReply, MigrationRequest, TaskAction, TaskCheckpointReply, TaskCheckpointRequest,
    TaskControlRequest, TaskRefRequest, TaskRestoreRequest, CHECKPOINT_CHUNK,
};
use xgrid_protocol::plist::Date;

use crate::agent_service::{AgentLink, LinkError};
use crate::balancer::{
    self, Availability, BalancerAgent, BalancerSettings, BalancerSnapshot, BalancerTask, Decision,
    MigrationReason, Placement, TaskRun,
};
use crate::dispatch;
use crate::notify::GridEvent;
use crate::shared::Shared;
use crate::store::{
    self, AgentId, BalancingTask, CheckpointRecord, JobId, MigrationRecord, OutputStream,
    StoreError, TaskState,
};

/// A task whose move or checkpoint failed is left alone this long before the balancer may
/// try again, so a broken agent is not asked every round.
const BACKOFF: Duration = Duration::from_secs(30);
/// How many `taskResults` requests a frozen task's output may take to reach its checkpoint
/// sizes.
const DRAIN_ATTEMPTS: u32 = 40;
/// Every this many rounds, checkpoints of runs that ended are forgotten and their files go.
const PRUNE_EVERY: u32 = 60;
/// A file in the checkpoint directory that the store does not name is removed once it is
/// this old: younger ones may be transfers under way.
const STRAY_AGE: Duration = Duration::from_secs(3600);

/// Why one step of a migration failed, in words for the job log.
#[derive(Debug, thiserror::Error)]
pub enum MigrationError {
    #[error("agent {0} is not connected")]
    NotConnected(AgentId),
    #[error("job {job} task {task} is not running on agent {agent}")]
    NotThere {
        job: JobId,
        task: String,
        agent: AgentId,
    },
    #[error(transparent)]
    Link(#[from] LinkError),
    #[error("the agent answered {request} with a {answer} reply")]
    UnexpectedReply {
        request: &'static str,
        answer: String,
    },
    #[error("the checkpoint stream stopped at {offset} octets without its end")]
    StalledStream { offset: u64 },
    #[error("the checkpoint stream had {got} octets, not the {announced} announced")]
    WrongStreamSize { got: u64, announced: u64 },
    #[error(
        "the task's output stayed at {stdout}/{stderr} octets, short of the checkpoint's \
         {want_stdout}/{want_stderr}"
    )]
    OutputBehind {
        stdout: u64,
        stderr: u64,
        want_stdout: u64,
        want_stderr: u64,
    },
    #[error("no checkpoint of the task is kept")]
    NoCheckpoint,
    #[error("cannot keep the checkpoint file {path}: {source}")]
    File {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl MigrationError {
    /// Whether the agent judged the checkpoint itself bad (as opposed to a lost connection
    /// or a full agent, which a later try may get past).
    fn checkpoint_refused(&self) -> bool {
        matches!(
            self,
            MigrationError::Link(LinkError::Declined { refusal, .. })
                if matches!(refusal.code, ErrorCode::RestoreFailed | ErrorCode::InvalidCheckpoint)
        ) || matches!(
            self,
            MigrationError::File { .. } | MigrationError::NoCheckpoint
        )
    }
}

/// Which step failed, for the `outcome` of the migration's record.
#[derive(Debug, Clone, Copy)]
enum Step {
    Checkpoint,
    Transfer,
    Restore,
}

impl Step {
    fn failed(self, error: MigrationError) -> Failure {
        Failure { step: self, error }
    }
}

#[derive(Debug)]
struct Failure {
    step: Step,
    error: MigrationError,
}

impl Failure {
    fn outcome(&self) -> String {
        let step = match self.step {
            Step::Checkpoint => "checkpoint",
            Step::Transfer => "transfer",
            Step::Restore => "restore",
        };
        format!("{step} failed: {}", self.error)
    }
}

type TaskKey = (JobId, String);

/// What is under way, so that no round decides twice about the same task or slot.
#[derive(Debug, Default)]
struct Flights {
    tasks: Mutex<HashSet<TaskKey>>,
    /// Moves on their way to each agent.
    incoming: Mutex<HashMap<AgentId, u32>>,
    /// Tasks whose last move or restore failed, with when.
    backoff: Mutex<HashMap<TaskKey, Instant>>,
    /// When a task's last periodic checkpoint was tried (done or failed).
    checkpoint_tried: Mutex<HashMap<TaskKey, f64>>,
}

// A poisoned lock only means a panic elsewhere while holding it; the sets stay usable.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// One decision under way; dropping it frees its task and destination slot.
struct Flight {
    flights: Arc<Flights>,
    task: TaskKey,
    destination: Option<AgentId>,
}

impl Drop for Flight {
    fn drop(&mut self) {
        lock(&self.flights.tasks).remove(&self.task);
        if let Some(agent) = self.destination {
            let mut incoming = lock(&self.flights.incoming);
            if let Some(count) = incoming.get_mut(&agent) {
                *count = count.saturating_sub(1);
                if *count == 0 {
                    incoming.remove(&agent);
                }
            }
        }
    }
}

impl Flights {
    fn take_off(self: &Arc<Self>, decision: &Decision) -> Option<Flight> {
        let (job, task) = decision.task();
        let key = (job, task.to_string());
        if !lock(&self.tasks).insert(key.clone()) {
            return None;
        }
        let destination = decision.destination();
        if let Some(agent) = destination {
            *lock(&self.incoming).entry(agent).or_default() += 1;
        }
        Some(Flight {
            flights: Arc::clone(self),
            task: key,
            destination,
        })
    }

    /// Tasks under way or backing off. Taken before a round reads the store: a task whose
    /// flight lands during the read would otherwise be judged on what the store said
    /// before it landed.
    fn busy(&self) -> HashSet<TaskKey> {
        let mut backoff = lock(&self.backoff);
        backoff.retain(|_, when| when.elapsed() < BACKOFF);
        let mut busy: HashSet<TaskKey> = backoff.keys().cloned().collect();
        busy.extend(lock(&self.tasks).iter().cloned());
        busy
    }

    fn back_off(&self, key: &TaskKey) {
        lock(&self.backoff).insert(key.clone(), Instant::now());
    }
}

/// Runs balancing rounds until `shutdown` turns true.
pub async fn run(shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    let flights = Arc::new(Flights::default());
    let started = Instant::now();
    let dir = shared.config.checkpoint_dir();
    if let Err(e) = tokio::fs::create_dir_all(&dir).await {
        shared.log(format!(
            "cannot create the checkpoint directory {}: {e}; no task will move or be checkpointed",
            dir.display()
        ));
        return;
    }
    sweep(&shared, Duration::ZERO).await;
    let mut tick = tokio::time::interval(shared.config.balance_tick);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut rounds: u32 = 0;
    loop {
        tokio::select! {
            _ = shared.balance_requested() => {}
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        if *shutdown.borrow() {
            return;
        }
        if let Err(e) = round(&shared, &flights, started).await {
            shared.log(format!("a balancing round failed: {e}"));
        }
        rounds = rounds.wrapping_add(1);
        if rounds % PRUNE_EVERY == 0 {
            sweep(&shared, STRAY_AGE).await;
        }
    }
}

/// The agent's own `agentStatus`: records why it is unavailable (an Apple agent that is
/// unavailable counts as its owner being back) and, when that changed, asks for a balancing
/// round (other changes wait for the tick, so busy agents do not keep the balancer busy).
pub async fn note_agent_status(shared: &Shared, agent: AgentId, status: &AgentStatus) {
    let reason = match status.agent_status {
        messages::AgentState::Available => None,
        messages::AgentState::Unavailable | messages::AgentState::Offline => Some(
            status
                .unavailable_reason
                .map_or("owner", messages::UnavailableReason::as_str),
        ),
    };
    match shared
        .store
        .set_agent_unavailable_reason(agent, reason)
        .await
    {
        Ok(true) => shared.rebalance(),
        Ok(false) => {}
        Err(e) => shared.log(format!(
            "cannot record why agent {agent} is unavailable: {e}"
        )),
    }
}

async fn round(
    shared: &Arc<Shared>,
    flights: &Arc<Flights>,
    started: Instant,
) -> Result<(), StoreError> {
    let (snapshot, stranded) = snapshot(shared, flights).await?;
    for decision in balancer::plan(&snapshot) {
        let Some(flight) = flights.take_off(&decision) else {
            continue;
        };
        tokio::spawn(carry_out(
            Arc::clone(shared),
            Arc::clone(flights),
            decision,
            flight,
        ));
    }
    // A held checkpoint no connected agent could ever restore runs again from the start, once
    // agents had their time to come back after a restart.
    if started.elapsed() >= shared.config.agent_grace {
        for (job, task) in stranded {
            requeue_held(
                shared,
                job,
                &task,
                "no connected agent can restore its checkpoint",
            )
            .await;
        }
    }
    Ok(())
}

/// The balancer's view of the store, and the held tasks no connected agent could take.
async fn snapshot(
    shared: &Shared,
    flights: &Flights,
) -> Result<(BalancerSnapshot, Vec<TaskKey>), StoreError> {
    let busy = flights.busy();
    let incoming = lock(&flights.incoming).clone();
    let tried = lock(&flights.checkpoint_tried).clone();
    let now = Date::now().0;
    let records = shared.store.agents().await?;
    let extensions: HashMap<AgentId, store::AgentExtensions> = shared
        .store
        .agent_extensions()
        .await?
        .into_iter()
        .map(|e| (e.agent, e))
        .collect();
    let balancing = shared.store.balancing_records().await?;
    let connected: HashSet<AgentId> = shared.connected_agents().into_iter().collect();
    let agents: Vec<BalancerAgent> = records
        .iter()
        .map(|agent| {
            let extension = extensions.get(&agent.id);
            let reason = extension.and_then(|e| e.unavailable_reason.as_deref());
            let availability =
                if !connected.contains(&agent.id) || agent.state == store::AgentState::Offline {
                    Availability::Offline
                } else {
                    match reason {
                        Some("shutdown") => Availability::ShuttingDown,
                        Some(_) => Availability::OwnerBack,
                        None => Availability::Available,
                    }
                };
            // Unavailable with no reason of its own: the dispatcher rested it after it
            // refused work. It keeps its tasks and takes none.
            let rested = agent.state == store::AgentState::Unavailable && reason.is_none();
            let task_megahertz = agent
                .core_megahertz
                .unwrap_or(agent.maximum_cpu_power / agent.maximum_task_count.max(1));
            BalancerAgent {
                id: agent.id,
                grid: agent.grid,
                availability,
                can_checkpoint: agent.can_checkpoint(),
                cpu_features: extension
                    .map(|e| e.cpu_features.clone())
                    .unwrap_or_default(),
                maximum_task_count: if rested { 0 } else { agent.maximum_task_count },
                current_task_count: agent
                    .placed_task_count
                    .saturating_add(incoming.get(&agent.id).copied().unwrap_or(0)),
                task_megahertz: f64::from(task_megahertz),
            }
        })
        .collect();
    let features: HashMap<AgentId, &Vec<String>> =
        agents.iter().map(|a| (a.id, &a.cpu_features)).collect();
    // Waiting tasks and run times only matter to load balancing, which needs a free slot on
    // an available checkpointing agent; reading them costs a pass over big jobs' tasks.
    let free_slots: u32 = agents
        .iter()
        .filter(|a| a.availability == Availability::Available)
        .map(BalancerAgent::free_slots)
        .sum();
    let could_balance = shared.config.balance
        && agents.iter().any(|a| {
            a.availability == Availability::Available && a.can_checkpoint && a.free_slots() > 0
        });
    let (waiting, durations) = if could_balance {
        let mut jobs: Vec<JobId> = balancing
            .iter()
            .filter(|t| t.state == TaskState::Running && t.agent.is_some())
            .map(|t| t.job)
            .collect();
        jobs.dedup();
        (
            shared.store.waiting_tasks(free_slots).await?,
            shared.store.job_durations(&jobs).await?,
        )
    } else {
        (Vec::new(), HashMap::new())
    };
    let mut tasks = Vec::new();
    let mut stranded = Vec::new();
    for record in &balancing {
        let key = (record.job, record.task.clone());
        if busy.contains(&key) {
            continue;
        }
        let Some(mut task) = balancer_task(record, &features, now) else {
            continue;
        };
        task.expected_duration = durations.get(&record.job).copied();
        if let Some(&at) = tried.get(&key) {
            task.last_checkpoint_at = Some(task.last_checkpoint_at.map_or(at, |t| t.max(at)));
        }
        if matches!(task.place, Placement::Held { .. })
            && !agents.iter().any(|a| {
                a.availability != Availability::Offline
                    && a.can_checkpoint
                    && a.grid == task.grid
                    && a.has_features(&task.cpu_features)
            })
        {
            stranded.push(key);
        }
        tasks.push(task);
    }
    let settings = BalancerSettings {
        balancing: shared.config.balance,
        checkpoint_interval: shared.config.checkpoint_interval.map(|i| i.as_secs_f64()),
        ..BalancerSettings::default()
    };
    Ok((
        BalancerSnapshot {
            now,
            settings,
            agents,
            tasks,
            waiting,
        },
        stranded,
    ))
}

/// One stored task as the balancer sees it; `None` for a task it has no say over (placed
/// but not started yet).
fn balancer_task(
    record: &BalancingTask,
    features: &HashMap<AgentId, &Vec<String>>,
    now: f64,
) -> Option<BalancerTask> {
    let place = match (record.agent, record.state, record.held_reason.as_deref()) {
        (Some(agent), TaskState::Running, _) => Placement::On {
            agent,
            state: TaskRun::Running,
        },
        (Some(agent), TaskState::Stopped, _) => Placement::On {
            agent,
            state: TaskRun::Stopped,
        },
        (None, _, Some(reason)) => Placement::Held {
            reason: MigrationReason::parse(reason).unwrap_or(MigrationReason::AgentLost),
        },
        _ => return None,
    };
    // A checkpoint records the CPU of the agent that took it; a running task would be
    // checkpointed where it runs now.
    let cpu_features = match place {
        Placement::Held { .. } => record
            .checkpoint
            .as_ref()
            .map(|c| c.cpu_features.clone())
            .unwrap_or_default(),
        Placement::On { agent, .. } => features
            .get(&agent)
            .map(|f| (*f).clone())
            .unwrap_or_default(),
    };
    let started = record.date_started.map_or(now, |d| d.0);
    Some(BalancerTask {
        job: record.job,
        task: record.task.clone(),
        grid: record.grid,
        place,
        job_suspended: record.job_suspended,
        cpu_features,
        elapsed: (now - started).max(0.0),
        expected_duration: None,
        image_octets: record.checkpoint.as_ref().map(|c| c.size),
        freeze_milliseconds: record.checkpoint.as_ref().map(|c| c.frozen_milliseconds),
        last_checkpoint_at: record.checkpoint.as_ref().map(|c| c.taken_at.0),
        last_moved_at: record.last_moved_at.map(|d| d.0),
        running_since: record.last_moved_at.map_or(started, |d| d.0),
    })
}

async fn carry_out(
    shared: Arc<Shared>,
    flights: Arc<Flights>,
    decision: Decision,
    _flight: Flight,
) {
    match decision {
        Decision::Migrate {
            job,
            task,
            from,
            to,
            reason,
        } => move_task(&shared, &flights, job, &task, from, Some(to), reason).await,
        Decision::Evacuate { job, task, from } => {
            move_task(
                &shared,
                &flights,
                job,
                &task,
                from,
                None,
                MigrationReason::ShuttingDown,
            )
            .await
        }
        Decision::Restore {
            job,
            task,
            to,
            reason,
        } => restore_held(&shared, &flights, job, &task, to, reason).await,
        Decision::Suspend { job, task, agent } => {
            control(&shared, job, &task, agent, TaskAction::Stop).await
        }
        Decision::Resume { job, task, agent } => {
            control(&shared, job, &task, agent, TaskAction::Start).await
        }
        Decision::Checkpoint { job, task, agent } => {
            periodic_checkpoint(&shared, &flights, job, &task, agent).await
        }
    }
}

fn link(shared: &Shared, agent: AgentId) -> Result<Arc<AgentLink>, MigrationError> {
    shared
        .agent_link(agent)
        .ok_or(MigrationError::NotConnected(agent))
}

/// The taskRef of a task placed on `agent`.
async fn task_ref_on(
    shared: &Shared,
    job: JobId,
    task: &str,
    agent: AgentId,
) -> Result<String, MigrationError> {
    let record = shared.store.task(job, task).await?;
    match record.task_ref {
        Some(task_ref) if record.agent == Some(agent) && record.state.is_on_agent() => Ok(task_ref),
        _ => Err(MigrationError::NotThere {
            job,
            task: task.to_string(),
            agent,
        }),
    }
}

/// Where a new stream of the task goes; the name is also the checkpoint identifier the
/// destination agent gets.
fn stream_path(dir: &Path, job: JobId, task: &str) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let task: String = task
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    let stamp = (Date::now().0 * 1000.0) as u64;
    let name = format!(
        "{job}-{task}-{stamp}-{}",
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    dir.join(name)
}

fn stream_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn part_of(path: &Path) -> PathBuf {
    let mut part = path.as_os_str().to_owned();
    part.push(".part");
    PathBuf::from(part)
}

async fn remove_file(shared: &Shared, path: &str) {
    if let Err(e) = tokio::fs::remove_file(path).await {
        if e.kind() != std::io::ErrorKind::NotFound {
            shared.log(format!("cannot remove the checkpoint file {path}: {e}"));
        }
    }
}

/// Step 1: dump the task on its agent.
async fn checkpoint(
    source: &AgentLink,
    task_ref: &str,
    leave_running: bool,
) -> Result<TaskCheckpointReply, MigrationError> {
    let request = MigrationRequest::TaskCheckpoint(TaskCheckpointRequest {
        task_ref: task_ref.to_string(),
        leave_running,
    });
    match source.request_migration(&request).await? {
        MigrationReply::TaskCheckpoint(reply) => Ok(reply),
        other => Err(unexpected("taskCheckpoint", &other)),
    }
}

fn unexpected(request: &'static str, reply: &MigrationReply) -> MigrationError {
    MigrationError::UnexpectedReply {
        request,
        answer: reply.name().to_string(),
    }
}

/// Step 2: fetch the task's output until the store holds at least what the task had
/// written at the dump.
async fn drain_output(
    shared: &Shared,
    source: &AgentLink,
    job: JobId,
    task: &str,
    task_ref: &str,
    taken: &TaskCheckpointReply,
) -> Result<(), MigrationError> {
    let (mut stdout, mut stderr) = shared.store.output_sizes(job, task).await?;
    for attempt in 0..DRAIN_ATTEMPTS {
        if stdout >= taken.stdout_size && stderr >= taken.stderr_size {
            return Ok(());
        }
        let request = ControllerToAgentRequest::TaskResults(TaskRefRequest {
            task_ref: task_ref.to_string(),
        });
        let streams = match source.request(request).await? {
            AgentReply::TaskResults(reply) => reply.streams,
            other => {
                return Err(MigrationError::UnexpectedReply {
                    request: "taskResults",
                    answer: other.name().to_string(),
                })
            }
        };
        if streams.read_data.is_empty() && streams.err_data.is_empty() {
            // The task's driver may have fetched it first; give the store a moment.
            tokio::time::sleep(Duration::from_millis(10 * u64::from(attempt + 1))).await;
        } else {
            for (stream, data) in [
                (OutputStream::Stdout, &streams.read_data),
                (OutputStream::Stderr, &streams.err_data),
            ] {
                shared.store.append_output(job, task, stream, data).await?;
            }
            shared.publish(GridEvent::JobOutput { job });
        }
        (stdout, stderr) = shared.store.output_sizes(job, task).await?;
    }
    Err(MigrationError::OutputBehind {
        stdout,
        stderr,
        want_stdout: taken.stdout_size,
        want_stderr: taken.stderr_size,
    })
}

/// Step 3: read the stream from the source into `path` (through `path.part`), relaying
/// each chunk to the destination as it arrives. Returns the octets moved.
async fn relay(
    source: &AgentLink,
    taken: &TaskCheckpointReply,
    destination: Option<&AgentLink>,
    path: &Path,
) -> Result<u64, MigrationError> {
    let part = part_of(path);
    let file_error = |source| MigrationError::File {
        path: part.display().to_string(),
        source,
    };
    let mut file = tokio::fs::File::create(&part).await.map_err(file_error)?;
    let identifier = stream_name(path);
    let mut offset = 0u64;
    loop {
        let read = MigrationRequest::CheckpointRead(CheckpointReadRequest {
            checkpoint_identifier: taken.checkpoint_identifier.clone(),
            offset,
            length: CHECKPOINT_CHUNK,
        });
        let chunk = match source.request_migration(&read).await? {
            MigrationReply::CheckpointRead(chunk) => chunk,
            other => return Err(unexpected("checkpointRead", &other)),
        };
        if chunk.checkpoint_data.is_empty() && !chunk.end_of_checkpoint {
            return Err(MigrationError::StalledStream { offset });
        }
        file.write_all(&chunk.checkpoint_data)
            .await
            .map_err(file_error)?;
        let length = chunk.checkpoint_data.len() as u64;
        if let Some(destination) = destination {
            let write = MigrationRequest::CheckpointWrite(CheckpointWriteRequest {
                checkpoint_identifier: identifier.clone(),
                offset,
                checkpoint_data: chunk.checkpoint_data,
                end_of_checkpoint: chunk.end_of_checkpoint,
            });
            match destination.request_migration(&write).await? {
                MigrationReply::CheckpointWrite => {}
                other => return Err(unexpected("checkpointWrite", &other)),
            }
        }
        offset += length;
        if chunk.end_of_checkpoint {
            break;
        }
    }
    if offset != taken.checkpoint_size {
        return Err(MigrationError::WrongStreamSize {
            got: offset,
            announced: taken.checkpoint_size,
        });
    }
    file.sync_all().await.map_err(file_error)?;
    drop(file);
    tokio::fs::rename(&part, path)
        .await
        .map_err(|source| MigrationError::File {
            path: path.display().to_string(),
            source,
        })?;
    Ok(offset)
}

/// Step 3 from a kept file: write it to the destination chunk by chunk.
async fn send_file(
    destination: &AgentLink,
    path: &Path,
    identifier: &str,
) -> Result<u64, MigrationError> {
    let file_error = |source| MigrationError::File {
        path: path.display().to_string(),
        source,
    };
    let mut file = tokio::fs::File::open(path).await.map_err(file_error)?;
    let size = file.metadata().await.map_err(file_error)?.len();
    let chunk_size = usize::try_from(CHECKPOINT_CHUNK).unwrap_or(1 << 20);
    let mut offset = 0u64;
    loop {
        let mut chunk = Vec::with_capacity(chunk_size);
        (&mut file)
            .take(CHECKPOINT_CHUNK)
            .read_to_end(&mut chunk)
            .await
            .map_err(file_error)?;
        let length = chunk.len() as u64;
        let end = offset + length >= size || chunk.is_empty();
        let write = MigrationRequest::CheckpointWrite(CheckpointWriteRequest {
            checkpoint_identifier: identifier.to_string(),
            offset,
            checkpoint_data: chunk,
            end_of_checkpoint: end,
        });
        match destination.request_migration(&write).await? {
            MigrationReply::CheckpointWrite => {}
            other => return Err(unexpected("checkpointWrite", &other)),
        }
        offset += length;
        if end {
            return Ok(offset);
        }
    }
}

/// Step 4: run the written stream on the destination; returns the new taskRef.
async fn restore(destination: &AgentLink, identifier: &str) -> Result<String, MigrationError> {
    let request = MigrationRequest::TaskRestore(TaskRestoreRequest {
        checkpoint_identifier: identifier.to_string(),
    });
    match destination.request_migration(&request).await? {
        MigrationReply::TaskRestore { task_ref } => Ok(task_ref),
        other => Err(unexpected("taskRestore", &other)),
    }
}

/// Step 5 (and clean-ups): `checkpointRelease`.
async fn release(
    agent: &AgentLink,
    identifier: &str,
    disposition: CheckpointDisposition,
) -> Result<(), MigrationError> {
    let request = MigrationRequest::CheckpointRelease(CheckpointReleaseRequest {
        checkpoint_identifier: identifier.to_string(),
        disposition,
    });
    match agent.request_migration(&request).await? {
        MigrationReply::CheckpointRelease => Ok(()),
        other => Err(unexpected("checkpointRelease", &other)),
    }
}

/// Keeps the stream at `path` as the task's last checkpoint; removes the one it replaces.
async fn keep_checkpoint(
    shared: &Shared,
    job: JobId,
    task: &str,
    path: &Path,
    taken: &TaskCheckpointReply,
    source: AgentId,
    taken_at: Date,
) -> Result<(), MigrationError> {
    let cpu_features = shared
        .store
        .agent_extensions()
        .await?
        .into_iter()
        .find(|e| e.agent == source)
        .map(|e| e.cpu_features)
        .unwrap_or_default();
    let record = CheckpointRecord {
        path: path.display().to_string(),
        size: taken.checkpoint_size,
        stdout_size: taken.stdout_size,
        stderr_size: taken.stderr_size,
        frozen_milliseconds: taken.frozen_milliseconds,
        cpu_features,
        taken_at,
    };
    if let Some(old) = shared.store.record_checkpoint(job, task, &record).await? {
        remove_file(shared, &old).await;
    }
    Ok(())
}

/// What a finished move leaves for its record.
struct Moved {
    octets: u64,
}

/// Moves a task off `from`: to agent `to`, or, with `None`, into a checkpoint the controller
/// holds until a slot frees. Records the move or the failed attempt.
async fn move_task(
    shared: &Arc<Shared>,
    flights: &Flights,
    job: JobId,
    task: &str,
    from: AgentId,
    to: Option<AgentId>,
    reason: MigrationReason,
) {
    let started = Date::now();
    let clock = Instant::now();
    let result = try_move(shared, job, task, from, to, reason, started).await;
    let frozen = u64::try_from(clock.elapsed().as_millis()).unwrap_or(u64::MAX);
    let (outcome, octets) = match &result {
        Ok(moved) => ("moved".to_string(), moved.octets),
        Err(failure) => {
            flights.back_off(&(job, task.to_string()));
            (failure.outcome(), 0)
        }
    };
    let text = match (&result, to) {
        (Ok(_), Some(to)) => format!(
            "had task {task} moved from agent {from} to agent {to} ({reason}): frozen {frozen} ms, {octets} octets of checkpoint"
        ),
        (Ok(_), None) => format!(
            "had task {task} checkpointed off agent {from} ({reason}) to wait for a free slot: {octets} octets"
        ),
        (Err(_), _) => format!(
            "could not move task {task} off agent {from} ({reason}): {outcome}; it stays there"
        ),
    };
    record(
        shared,
        MigrationRecord {
            id: 0,
            job,
            task: task.to_string(),
            from: Some(from),
            to,
            reason: reason.as_str().to_string(),
            started,
            frozen_milliseconds: Some(frozen),
            octets,
            outcome,
        },
        &text,
    )
    .await;
}

async fn try_move(
    shared: &Arc<Shared>,
    job: JobId,
    task: &str,
    from: AgentId,
    to: Option<AgentId>,
    reason: MigrationReason,
    started: Date,
) -> Result<Moved, Failure> {
    let source = link(shared, from).map_err(|e| Step::Checkpoint.failed(e))?;
    let task_ref = task_ref_on(shared, job, task, from)
        .await
        .map_err(|e| Step::Checkpoint.failed(e))?;
    let taken = checkpoint(&source, &task_ref, false)
        .await
        .map_err(|e| Step::Checkpoint.failed(e))?;
    // From here the task is frozen on the source: a failure must resume it there.
    let path = stream_path(&shared.config.checkpoint_dir(), job, task);
    let identifier = stream_name(&path);
    let destination = match to {
        Some(to) => match link(shared, to) {
            Ok(link) => Some((to, link)),
            Err(e) => {
                resume_source(shared, &source, &taken).await;
                return Err(Step::Transfer.failed(e));
            }
        },
        None => None,
    };
    let moved: Result<(u64, Option<String>), Failure> = async {
        drain_output(shared, &source, job, task, &task_ref, &taken)
            .await
            .map_err(|e| Step::Transfer.failed(e))?;
        let octets = relay(
            &source,
            &taken,
            destination.as_ref().map(|(_, link)| link.as_ref()),
            &path,
        )
        .await
        .map_err(|e| Step::Transfer.failed(e))?;
        // The restored task writes on from the dump's sizes: the store must end there too.
        shared
            .store
            .truncate_output(job, task, taken.stdout_size, taken.stderr_size)
            .await
            .map_err(|e| Step::Transfer.failed(e.into()))?;
        let new_ref = match &destination {
            Some((_, link)) => Some(
                restore(link, &identifier)
                    .await
                    .map_err(|e| Step::Restore.failed(e))?,
            ),
            None => None,
        };
        Ok((octets, new_ref))
    }
    .await;
    let (octets, new_ref) = match moved {
        Ok(moved) => moved,
        Err(failure) => {
            resume_source(shared, &source, &taken).await;
            if let Some((_, link)) = &destination {
                // Best effort: the destination drops what it got of the stream.
                let _ = release(link, &identifier, CheckpointDisposition::Discard).await;
            }
            remove_file(shared, &part_of(&path).display().to_string()).await;
            remove_file(shared, &path.display().to_string()).await;
            return Err(failure);
        }
    };
    // The task now runs at the destination (or lives only in the file): the source's copy
    // is no longer followed, and the new one is, before anything else can be heard of it.
    source.unwatch_task(&task_ref);
    if let (Some((to, link)), Some(new_ref)) = (&destination, &new_ref) {
        dispatch::follow_again(shared, link, *to, job, task, new_ref, None);
    }
    if let Err(e) = keep_checkpoint(shared, job, task, &path, &taken, from, started).await {
        shared.log(format!(
            "job {job} task {task}: cannot keep the checkpoint it moved with: {e}"
        ));
    }
    let settled = match (&destination, &new_ref) {
        (Some((to, _)), Some(new_ref)) => shared.store.record_move(job, task, *to, new_ref).await,
        _ => shared.store.hold_task(job, task, reason.as_str()).await,
    };
    if let Err(e) = settled {
        // The restored task may already have ended and been recorded by its driver.
        shared.log(format!(
            "job {job} task {task}: cannot record where it runs now: {e}"
        ));
    }
    if let Err(e) = release(
        &source,
        &taken.checkpoint_identifier,
        CheckpointDisposition::Cancel,
    )
    .await
    {
        // The source resumes the frozen task only if it loses the controller; its next
        // status then lists a taskRef nobody wants, which is canceled.
        shared.log(format!(
            "agent {from} did not drop job {job} task {task} after its move: {e}"
        ));
    }
    shared.publish(GridEvent::JobChanged { job });
    shared.reschedule();
    shared.rebalance();
    Ok(Moved { octets })
}

async fn resume_source(shared: &Shared, source: &AgentLink, taken: &TaskCheckpointReply) {
    if let Err(e) = release(
        source,
        &taken.checkpoint_identifier,
        CheckpointDisposition::Resume,
    )
    .await
    {
        shared.log(format!(
            "cannot resume a frozen task after a failed move ({e}); it resumes when its agent loses the controller"
        ));
    }
}

/// Restores a task the controller holds as a checkpoint on agent `to`. A checkpoint the
/// destination refuses, or a lost file, sends the task back to run from the start; a
/// transport failure leaves it held for a later round.
async fn restore_held(
    shared: &Arc<Shared>,
    flights: &Flights,
    job: JobId,
    task: &str,
    to: AgentId,
    reason: MigrationReason,
) {
    let started = Date::now();
    let clock = Instant::now();
    let result = try_restore(shared, job, task, to).await;
    let frozen = u64::try_from(clock.elapsed().as_millis()).unwrap_or(u64::MAX);
    let (outcome, octets, text) = match &result {
        Ok(octets) => (
            "moved".to_string(),
            *octets,
            format!("had task {task} restored on agent {to} from its checkpoint ({reason})"),
        ),
        Err(failure) => {
            let outcome = failure.outcome();
            let text = format!("could not restore task {task} on agent {to} ({reason}): {outcome}");
            (outcome, 0, text)
        }
    };
    record(
        shared,
        MigrationRecord {
            id: 0,
            job,
            task: task.to_string(),
            from: None,
            to: Some(to),
            reason: reason.as_str().to_string(),
            started,
            frozen_milliseconds: Some(frozen),
            octets,
            outcome,
        },
        &text,
    )
    .await;
    if let Err(failure) = result {
        if failure.error.checkpoint_refused() {
            requeue_held(shared, job, task, "its checkpoint could not be restored").await;
        } else {
            flights.back_off(&(job, task.to_string()));
        }
    }
}

async fn try_restore(
    shared: &Arc<Shared>,
    job: JobId,
    task: &str,
    to: AgentId,
) -> Result<u64, Failure> {
    let destination = link(shared, to).map_err(|e| Step::Transfer.failed(e))?;
    let checkpoint = shared
        .store
        .task_checkpoint(job, task)
        .await
        .map_err(|e| Step::Transfer.failed(e.into()))?
        .ok_or_else(|| Step::Transfer.failed(MigrationError::NoCheckpoint))?;
    shared
        .store
        .truncate_output(job, task, checkpoint.stdout_size, checkpoint.stderr_size)
        .await
        .map_err(|e| Step::Transfer.failed(e.into()))?;
    let identifier = stream_name(&stream_path(&shared.config.checkpoint_dir(), job, task));
    let path = PathBuf::from(&checkpoint.path);
    let sent = async {
        let octets = send_file(&destination, &path, &identifier)
            .await
            .map_err(|e| Step::Transfer.failed(e))?;
        let new_ref = restore(&destination, &identifier)
            .await
            .map_err(|e| Step::Restore.failed(e))?;
        Ok::<_, Failure>((octets, new_ref))
    }
    .await;
    let (octets, new_ref) = match sent {
        Ok(sent) => sent,
        Err(failure) => {
            let _ = release(&destination, &identifier, CheckpointDisposition::Discard).await;
            return Err(failure);
        }
    };
    dispatch::follow_again(shared, &destination, to, job, task, &new_ref, None);
    if let Err(e) = shared.store.record_move(job, task, to, &new_ref).await {
        shared.log(format!(
            "job {job} task {task}: cannot record where it runs now: {e}"
        ));
    }
    shared.publish(GridEvent::JobChanged { job });
    shared.reschedule();
    Ok(octets)
}

/// A held task that cannot be restored runs again from the start.
async fn requeue_held(shared: &Shared, job: JobId, task: &str, why: &str) {
    match shared.store.requeue_held_task(job, task).await {
        Ok(path) => {
            if let Some(path) = path {
                remove_file(shared, &path).await;
            }
            shared
                .job_event(
                    job,
                    &format!("had task {task} queued to run again from the start: {why}"),
                )
                .await;
            shared.publish(GridEvent::JobChanged { job });
            shared.reschedule();
        }
        Err(e) => shared.log(format!("cannot queue job {job} task {task} again: {e}")),
    }
}

/// Suspends or resumes a task on its agent (`taskControl stop|start`).
async fn control(shared: &Shared, job: JobId, task: &str, agent: AgentId, action: TaskAction) {
    let done = async {
        let link = link(shared, agent)?;
        let task_ref = task_ref_on(shared, job, task, agent).await?;
        link.request(ControllerToAgentRequest::TaskControl(TaskControlRequest {
            task_ref,
            control: action,
        }))
        .await?;
        // The agent's own report follows; recording it now keeps the next round from
        // asking again meanwhile.
        match action {
            TaskAction::Stop => shared.store.mark_stopped(job, task).await?,
            _ => shared.store.mark_running(job, task).await?,
        }
        Ok::<(), MigrationError>(())
    }
    .await;
    match (done, action) {
        (Ok(()), TaskAction::Stop) => {
            shared
                .job_event(
                    job,
                    &format!(
                        "had task {task} suspended on agent {agent}: its owner is back and no agent can take it"
                    ),
                )
                .await
        }
        (Ok(()), _) => {
            shared
                .job_event(
                    job,
                    &format!("had task {task} resumed on agent {agent}: the agent is free again"),
                )
                .await
        }
        (Err(e), _) => shared.log(format!(
            "cannot {action} job {job} task {task} on agent {agent}: {e}"
        )),
    }
    shared.publish(GridEvent::JobChanged { job });
}

/// A periodic checkpoint: the task runs on; its stream is kept for recovery.
async fn periodic_checkpoint(
    shared: &Shared,
    flights: &Flights,
    job: JobId,
    task: &str,
    agent: AgentId,
) {
    let key = (job, task.to_string());
    let taken_at = Date::now();
    lock(&flights.checkpoint_tried).insert(key.clone(), taken_at.0);
    let done = async {
        let source = link(shared, agent)?;
        let task_ref = task_ref_on(shared, job, task, agent).await?;
        let taken = checkpoint(&source, &task_ref, true).await?;
        let path = stream_path(&shared.config.checkpoint_dir(), job, task);
        let kept = async {
            drain_output(shared, &source, job, task, &task_ref, &taken).await?;
            relay(&source, &taken, None, &path).await?;
            keep_checkpoint(shared, job, task, &path, &taken, agent, taken_at).await
        }
        .await;
        if kept.is_err() {
            remove_file(shared, &part_of(&path).display().to_string()).await;
            remove_file(shared, &path.display().to_string()).await;
        }
        // The images on the agent go either way; the task never stopped.
        if let Err(e) = release(
            &source,
            &taken.checkpoint_identifier,
            CheckpointDisposition::Discard,
        )
        .await
        {
            shared.log(format!(
                "agent {agent} did not discard a checkpoint of job {job} task {task}: {e}"
            ));
        }
        kept.map(|()| taken)
    }
    .await;
    match done {
        Ok(taken) => shared.log(format!(
            "job {job} task {task} checkpointed on agent {agent}: {} octets, frozen {} ms",
            taken.checkpoint_size, taken.frozen_milliseconds
        )),
        Err(e) => shared.log(format!(
            "cannot checkpoint job {job} task {task} on agent {agent}: {e}"
        )),
    }
}

/// Stores a migration, tells the dashboard, and writes `text` in the job's log.
async fn record(shared: &Shared, migration: MigrationRecord, text: &str) {
    match shared.store.record_migration(&migration).await {
        Ok(id) => shared.publish(GridEvent::MigrationRecorded {
            job: migration.job,
            migration: id,
        }),
        Err(e) => shared.log(format!(
            "cannot record a migration of job {} task {}: {e}",
            migration.job, migration.task
        )),
    }
    shared.job_event(migration.job, text).await;
}

/// Forgets the checkpoints of runs that ended, and removes their files.
async fn prune(shared: &Shared) {
    match shared.store.prune_checkpoints().await {
        Ok(paths) => {
            for path in paths {
                remove_file(shared, &path).await;
            }
        }
        Err(e) => shared.log(format!("cannot prune old checkpoints: {e}")),
    }
}

/// Forgets ended runs' checkpoints, and removes files in the checkpoint directory older
/// than `min_age` that the store does not refer to (their task or job was deleted, or a
/// transfer was cut short). At start nothing is under way, so any age will do.
async fn sweep(shared: &Shared, min_age: Duration) {
    prune(shared).await;
    let kept: HashSet<PathBuf> = match shared.store.checkpoint_paths().await {
        Ok(paths) => paths.into_iter().map(PathBuf::from).collect(),
        Err(e) => {
            shared.log(format!("cannot list the kept checkpoints: {e}"));
            return;
        }
    };
    let Ok(mut entries) = tokio::fs::read_dir(shared.config.checkpoint_dir()).await else {
        return;
    };
    while let Ok(Some(entry)) = entries.next_entry().await {
        let path = entry.path();
        let age = match entry.metadata().await.and_then(|m| m.modified()) {
            Ok(modified) => modified.elapsed().unwrap_or_default(),
            Err(_) => continue,
        };
        if !kept.contains(&path) && age >= min_age {
            remove_file(shared, &path.display().to_string()).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(agent: Option<AgentId>, state: TaskState, held: Option<&str>) -> BalancingTask {
        BalancingTask {
            job: 3,
            task: "7".into(),
            grid: 0,
            agent,
            state,
            held_reason: held.map(str::to_string),
            job_suspended: false,
            date_started: Some(Date(1000.0)),
            last_moved_at: None,
            checkpoint: Some(CheckpointRecord {
                path: "/cp".into(),
                size: 9,
                stdout_size: 1,
                stderr_size: 0,
                frozen_milliseconds: 155,
                cpu_features: vec!["sse2".into(), "avx512f".into()],
                taken_at: Date(1200.0),
            }),
        }
    }

    #[test]
    fn stored_tasks_become_the_balancers() {
        let avx = vec!["sse2".to_string(), "avx".to_string()];
        let features = HashMap::from([(4, &avx)]);
        // Running on an agent: it needs that agent's features; the checkpoint gives the
        // cost of a move and the time of the last checkpoint.
        let on = balancer_task(
            &record(Some(4), TaskState::Running, None),
            &features,
            1300.0,
        )
        .expect("a running task counts");
        assert_eq!(
            on.place,
            Placement::On {
                agent: 4,
                state: TaskRun::Running
            }
        );
        assert_eq!(on.cpu_features, avx);
        assert_eq!(
            (on.elapsed, on.running_since, on.last_checkpoint_at),
            (300.0, 1000.0, Some(1200.0))
        );
        assert_eq!(
            (on.image_octets, on.freeze_milliseconds),
            (Some(9), Some(155))
        );
        // Held: it needs the features of the agent that took its checkpoint.
        let held = balancer_task(
            &record(None, TaskState::Assigned, Some("agent shutting down")),
            &features,
            1300.0,
        )
        .expect("a held task counts");
        assert_eq!(
            held.place,
            Placement::Held {
                reason: MigrationReason::ShuttingDown
            }
        );
        assert_eq!(held.cpu_features, ["sse2", "avx512f"]);
        // Placed but not started: not the balancer's.
        assert!(balancer_task(
            &record(Some(4), TaskState::Assigned, None),
            &features,
            1300.0
        )
        .is_none());
    }

    #[test]
    fn refused_checkpoints_run_again_but_lost_connections_wait() {
        let declined = |code| {
            MigrationError::Link(LinkError::Declined {
                request: "taskRestore".into(),
                refusal: messages::MigrationRefusal::new(code, "criu"),
            })
        };
        assert!(declined(ErrorCode::RestoreFailed).checkpoint_refused());
        assert!(declined(ErrorCode::InvalidCheckpoint).checkpoint_refused());
        assert!(MigrationError::NoCheckpoint.checkpoint_refused());
        assert!(!declined(ErrorCode::TooManyTasks).checkpoint_refused());
        assert!(!MigrationError::Link(LinkError::Closed).checkpoint_refused());
        assert!(!MigrationError::NotConnected(2).checkpoint_refused());
    }

    #[test]
    fn stream_names_are_plain_and_unique() {
        let dir = Path::new("/data/checkpoints");
        let first = stream_path(dir, 12, "frame 0/../x");
        let second = stream_path(dir, 12, "frame 0/../x");
        assert_ne!(first, second);
        let name = stream_name(&first);
        assert!(name.starts_with("12-frame_0____x-"), "{name}");
        assert!(name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
        assert_eq!(first.parent(), Some(dir));
        assert_eq!(
            part_of(&first).extension().and_then(|e| e.to_str()),
            Some("part")
        );
    }
}
