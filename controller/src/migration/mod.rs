//! The balancing loop and the migrations it runs (docs/migration.md): on a trigger (an
//! agent's availability changed, a task ended, a move ended; at most one round per
//! [`ROUND_GAP`]) or a periodic tick it builds a [`BalancerSnapshot`] from the
//! store, asks [`balancer::plan`] for decisions, and carries each out over the agents'
//! connections: the five steps of a migration (checkpoint, output, stream, restore, release),
//! evacuations to the controller, restores of held checkpoints, suspensions, resumptions and
//! periodic checkpoints. Streams go through a file under `DATA_DIR/checkpoints` chunk by
//! chunk, never whole in memory; the file is what recovery from a lost agent restores.
//! Tasks agents report frozen for a move that no move under way settles are settled at the
//! start of a round (settle.rs). Every move and failed attempt is recorded in the store,
//! the job log and the dashboard.

mod moves;
mod settle;
mod steps;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use xgrid_protocol::messages::{self, AgentStatus, ErrorCode, TaskAction};
use xgrid_protocol::plist::Date;

use crate::agent_service::LinkError;
use crate::balancer::{
    self, Availability, BalancerAgent, BalancerSettings, BalancerSnapshot, BalancerTask, Decision,
    MigrationReason, Placement, TaskRun,
};
use crate::shared::Shared;
use crate::store::{self, AgentId, BalancingTask, JobId, StoreError, TaskState};

use moves::{control, move_task, periodic_checkpoint, requeue_held, restore_held};
use settle::settle_reported;
use steps::remove_file;

/// A task whose move or checkpoint failed is left alone this long before the balancer may
/// try again, so a broken agent is not asked every round.
const BACKOFF: Duration = Duration::from_secs(30);
/// ... but only this long when the destination declined for want of a free slot: the slot
/// the balancer saw free was taken by a new task in the meantime, which the next rounds see
/// (another slot may free up soon, at a job's tail most of all).
const BACKOFF_NO_SLOT: Duration = Duration::from_secs(2);
/// After this many failed restores of a held checkpoint (a lost agent's task) the task runs
/// again from the start, rather than wait on restores for ever. Declines for want of a free
/// slot do not count: the checkpoint is not to blame.
const HELD_RESTORE_TRIES: u32 = 5;
/// The shortest time between two balancing rounds.
const ROUND_GAP: Duration = Duration::from_millis(200);
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

    /// Whether the destination declined only for want of a free slot.
    fn destination_full(&self) -> bool {
        matches!(
            self,
            MigrationError::Link(LinkError::Declined { refusal, .. })
                if refusal.code == ErrorCode::TooManyTasks
        )
    }

    /// How long the task is left alone after this failure.
    fn back_off(&self) -> Duration {
        if self.destination_full() {
            BACKOFF_NO_SLOT
        } else {
            BACKOFF
        }
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
    /// Tasks whose last move or restore failed, with when they may be tried again.
    backoff: Mutex<HashMap<TaskKey, Instant>>,
    /// When a task's last periodic checkpoint was tried (done or failed).
    checkpoint_tried: Mutex<HashMap<TaskKey, f64>>,
    /// Failed restores of each held checkpoint so far.
    held_failures: Mutex<HashMap<TaskKey, u32>>,
    /// Restores under way, by destination and stream identifier: the task they bring back
    /// is frozen there until its move settles it, whatever the destination reports.
    restoring: Mutex<HashSet<(AgentId, String)>>,
}

/// A restore under way ([`Flights::restore_started`]); dropping it ends it.
struct Restoring {
    flights: Arc<Flights>,
    key: (AgentId, String),
}

impl Drop for Restoring {
    fn drop(&mut self) {
        lock(&self.flights.restoring).remove(&self.key);
    }
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
        let mut flight = self.claim((job, task.to_string()))?;
        flight.destination = decision.destination();
        if let Some(agent) = flight.destination {
            *lock(&self.incoming).entry(agent).or_default() += 1;
        }
        Some(flight)
    }

    /// The task for work of its own (no destination slot); `None` while it is under way.
    fn claim(self: &Arc<Self>, key: TaskKey) -> Option<Flight> {
        if !lock(&self.tasks).insert(key.clone()) {
            return None;
        }
        Some(Flight {
            flights: Arc::clone(self),
            task: key,
            destination: None,
        })
    }

    /// A restore of stream `identifier` on agent `to` is under way until the guard drops.
    fn restore_started(self: &Arc<Self>, to: AgentId, identifier: &str) -> Restoring {
        let key = (to, identifier.to_string());
        lock(&self.restoring).insert(key.clone());
        Restoring {
            flights: Arc::clone(self),
            key,
        }
    }

    /// Whether stream `identifier` is being restored on `agent` by a move under way.
    fn is_restoring(&self, agent: AgentId, identifier: &str) -> bool {
        lock(&self.restoring).contains(&(agent, identifier.to_string()))
    }

    /// Tasks under way or backing off. Taken before a round reads the store: a task whose
    /// flight lands during the read would otherwise be judged on what the store said
    /// before it landed.
    fn busy(&self) -> HashSet<TaskKey> {
        let mut backoff = lock(&self.backoff);
        let now = Instant::now();
        backoff.retain(|_, until| *until > now);
        let mut busy: HashSet<TaskKey> = backoff.keys().cloned().collect();
        busy.extend(lock(&self.tasks).iter().cloned());
        busy
    }

    /// Counts a failed restore of the task's held checkpoint: true once it is the
    /// [`HELD_RESTORE_TRIES`]th that counts (the count then starts over).
    fn held_restore_failed(&self, key: &TaskKey, error: &MigrationError) -> bool {
        if error.destination_full() {
            return false;
        }
        let mut failures = lock(&self.held_failures);
        let count = failures.entry(key.clone()).or_insert(0);
        *count += 1;
        if *count < HELD_RESTORE_TRIES {
            return false;
        }
        failures.remove(key);
        true
    }

    /// The task's held checkpoint was restored, or given up: forget its failures.
    fn held_restore_over(&self, key: &TaskKey) {
        lock(&self.held_failures).remove(key);
    }

    /// Forgets the periodic-checkpoint times and held-restore failures of every task not in
    /// `live` (those on agents or held): a task that finished, failed or was deleted needs
    /// neither, and its entries would otherwise stay for the controller's life.
    fn forget_all_but(&self, live: &HashSet<TaskKey>) {
        lock(&self.checkpoint_tried).retain(|key, _| live.contains(key));
        lock(&self.held_failures).retain(|key, _| live.contains(key));
    }

    /// Leaves the task alone for as long as `error` calls for.
    fn back_off(&self, key: &TaskKey, error: &MigrationError) {
        lock(&self.backoff).insert(key.clone(), Instant::now() + error.back_off());
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
        // Every task's end asks for a round: with hundreds ending a second, they share one.
        tokio::select! {
            () = tokio::time::sleep(ROUND_GAP) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// The agent's own `agentStatus`: records why it is unavailable (an Apple agent that is
/// unavailable counts as its owner being back) and, when that changed, asks for a balancing
/// round (load changes wait for the tick, so busy agents do not keep the balancer busy);
/// tasks it holds frozen for a move are left for the next round to settle.
pub async fn note_agent_status(shared: &Shared, agent: AgentId, status: &AgentStatus) {
    // Noted first: the round the reason below may start must settle these before it
    // decides anything about the same tasks.
    shared.note_frozen(agent, status.frozen_checkpoints.clone());
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
    // Before the snapshot, so that a task being settled is not also decided on.
    settle_reported(shared, flights).await;
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
    flights.forget_all_but(&balancing.iter().map(|t| (t.job, t.task.clone())).collect());
    let connected: HashSet<AgentId> = shared.connected_agents().into_iter().collect();
    let mut agents = balancer_agents(&records, &extensions, &connected, &incoming);
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
        let waiting = shared.store.waiting_tasks(free_slots).await?;
        // The agents again, now after the waiting tasks: a task the scheduler places
        // between the two reads then counts as waiting, or on its agent, or both, never as
        // neither. Read the other way round, such a task's slot looked free to a move,
        // which its destination then declined (and the move waited 30 s to be tried again).
        let records = shared.store.agents().await?;
        agents = balancer_agents(&records, &extensions, &connected, &incoming);
        (waiting, shared.store.job_durations(&jobs).await?)
    } else {
        (Vec::new(), HashMap::new())
    };
    let features: HashMap<AgentId, &Vec<String>> =
        agents.iter().map(|a| (a.id, &a.cpu_features)).collect();
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

/// The agents as the balancer sees them: availability from their connection and what they
/// reported, and their task counts with the moves under way towards them.
fn balancer_agents(
    records: &[store::AgentRecord],
    extensions: &HashMap<AgentId, store::AgentExtensions>,
    connected: &HashSet<AgentId>,
    incoming: &HashMap<AgentId, u32>,
) -> Vec<BalancerAgent> {
    records
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
        .collect()
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
            remove_file(shared, &path).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::CheckpointRecord;

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

    /// A destination's refusal of a restore, with `code`.
    fn declined(code: ErrorCode) -> MigrationError {
        MigrationError::Link(LinkError::Declined {
            request: "taskRestore".into(),
            refusal: messages::MigrationRefusal::new(code, "refused"),
        })
    }

    #[test]
    fn refused_checkpoints_run_again_but_lost_connections_wait() {
        assert!(declined(ErrorCode::RestoreFailed).checkpoint_refused());
        assert!(declined(ErrorCode::InvalidCheckpoint).checkpoint_refused());
        assert!(MigrationError::NoCheckpoint.checkpoint_refused());
        assert!(!declined(ErrorCode::TooManyTasks).checkpoint_refused());
        assert!(!MigrationError::Link(LinkError::Closed).checkpoint_refused());
        assert!(!MigrationError::NotConnected(2).checkpoint_refused());
    }

    #[test]
    fn a_full_destination_is_tried_again_sooner_than_a_broken_one() {
        assert_eq!(
            declined(ErrorCode::TooManyTasks).back_off(),
            BACKOFF_NO_SLOT
        );
        assert_eq!(declined(ErrorCode::RestoreFailed).back_off(), BACKOFF);
        assert_eq!(MigrationError::Link(LinkError::Closed).back_off(), BACKOFF);
        assert!(BACKOFF_NO_SLOT < BACKOFF);
    }

    #[test]
    fn what_is_kept_of_tasks_that_are_gone_is_forgotten() {
        let flights = Flights::default();
        let running: TaskKey = (3, "1".to_string());
        let held: TaskKey = (3, "2".to_string());
        let ended: TaskKey = (4, "1".to_string());
        let lost = MigrationError::Link(LinkError::Closed);
        for key in [&running, &ended] {
            lock(&flights.checkpoint_tried).insert(key.clone(), 10.0);
        }
        for key in [&held, &ended] {
            assert!(!flights.held_restore_failed(key, &lost));
        }
        flights.forget_all_but(&HashSet::from([running.clone(), held.clone()]));
        let tried: Vec<TaskKey> = lock(&flights.checkpoint_tried).keys().cloned().collect();
        assert_eq!(tried, [running]);
        let failed: Vec<TaskKey> = lock(&flights.held_failures).keys().cloned().collect();
        assert_eq!(failed, [held]);
    }

    #[test]
    fn a_held_checkpoint_is_given_up_after_its_tries_but_not_for_full_agents() {
        let flights = Flights::default();
        let key: TaskKey = (3, "7".to_string());
        let lost = MigrationError::Link(LinkError::Closed);
        for _ in 1..HELD_RESTORE_TRIES {
            assert!(!flights.held_restore_failed(&key, &lost));
            // Full destinations in between change nothing.
            assert!(!flights.held_restore_failed(&key, &declined(ErrorCode::TooManyTasks)));
        }
        assert!(flights.held_restore_failed(&key, &lost), "the last try");
        // Counted afresh after that, and after a restore.
        assert!(!flights.held_restore_failed(&key, &lost));
        flights.held_restore_over(&key);
        for _ in 1..HELD_RESTORE_TRIES {
            assert!(!flights.held_restore_failed(&key, &lost));
        }
    }
}
