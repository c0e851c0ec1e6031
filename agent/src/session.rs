//! The agent's life (xgrid-wire.md §2, §4.2): connect to the controller, register, then
//! answer its requests and report status until the connection drops, and connect again
//! with backoff. Tasks live outside any one connection and keep running in between; a
//! reconnecting agent presents its cookie and lists its tasks in `taskRefArray`.

use std::future::Future;
use std::net::{ToSocketAddrs, UdpSocket};
use std::path::Path;
use std::pin::{pin, Pin};
use std::time::Duration;

use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::mpsc;
use tokio::time::{interval_at, sleep_until, Instant, MissedTickBehavior};
use xgrid_protocol::envelope::{Envelope, MessageType};
use xgrid_protocol::messages::{
    AgentNotification, AgentRegistration, AgentReply, AgentState, AgentStatus, CheckpointReadReply,
    ControllerToAgentReply, ControllerToAgentRequest, ErrorCode, MigrationRefusal, MigrationReply,
    MigrationRequest, TaskAction, TaskCheckpointReply, UnavailableReason, CHECKPOINT_CAPABILITY,
    END_OUTPUT_FLAGGED_CAPABILITY,
};
use xgrid_protocol::peer::{self, Address, Peer, PeerOptions, PeerRole};
use xgrid_protocol::plist::Dictionary;

use crate::checkpoint::Checkpointer;
use crate::checkpoint::PackError;
use crate::config::AgentConfig;
use crate::discovery;
use crate::executor::{ExecError, Executor, ExecutorConfig, Isolation, RunAs};
use crate::log;
use crate::migration::{MigrationError, Migrations, Released, TaskFiles};
use crate::owner::{OwnerWatch, Presence};
use crate::probe::{self, Processors};
use crate::store::{DataStore, StoreError};
use crate::tasks::TaskTable;

/// The capability announced under `LINUX_CAPABILITIES_KEY` when tasks get their own PID
/// namespace.
pub const PID_NAMESPACE_CAPABILITY: &str = "pid-namespace";

/// The first wait before reconnecting; it doubles up to `max_reconnect_delay`.
const FIRST_RECONNECT_DELAY: Duration = Duration::from_millis(250);

/// A controller that does not answer a keepalive within this time is taken for gone.
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(30);

/// A controller that does not answer the registration within this time is given up on
/// (and tried again), rather than waited for forever.
const REGISTRATION_TIMEOUT: Duration = Duration::from_secs(30);

/// How often the owner watch looks at the machine (with `--only-when-idle`).
const OWNER_LOOK_INTERVAL: Duration = Duration::from_secs(1);

/// CAP_SYS_RESOURCE's bit in `/proc/self/status`'s CapEff.
const CAP_SYS_RESOURCE: u32 = 24;

/// How long the agent waits for the controller to acknowledge the close when stopping.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// How long after a task changes state the `agentStatus` saying so goes out: with short
/// tasks, tasks start and end many times a second, and each status costs the controller a
/// write and a scheduling round; the changes within this time are folded into one status,
/// which also stays off the path from a submission to the task's `Running` report.
const STATUS_DELAY: Duration = Duration::from_millis(50);

/// Why the agent could not start.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the agent cannot run tasks: {0}")]
    Executor(#[from] ExecError),
}

/// How one connection ended.
enum Ended {
    Shutdown,
    Lost { registered: bool, reason: String },
}

/// The running agent: its settings, saved state and tasks.
#[derive(Debug)]
pub struct Agent {
    config: AgentConfig,
    store: DataStore,
    tasks: TaskTable,
    cookie: String,
    hostname: String,
    addresses: Vec<String>,
    processors: Processors,
    slots: u32,
    capabilities: Vec<String>,
    /// Checkpoints this agent sends and receives (docs/migration.md).
    migrations: Migrations,
    /// With `--only-when-idle`: who is using the machine.
    owner: Option<OwnerWatch>,
    presence: Presence,
    /// SIGTERM came: the controller is moving the tasks away before the agent stops.
    evacuating: bool,
    /// The shutdown future has completed (it must not be polled again).
    shutdown_seen: bool,
    /// Since when a task change waits for an `agentStatus` (`None`: nothing waits).
    status_owed: Option<Instant>,
}

impl Agent {
    /// Start the agent with `config` and serve until `shutdown` completes; then cancel
    /// the tasks and close the connection. Errors only when the agent cannot start at all;
    /// an unreachable controller is retried, not an error.
    pub async fn run(
        config: AgentConfig,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), AgentError> {
        Agent::new(config)?.serve(shutdown).await;
        Ok(())
    }

    /// Open the data directory, read the cookie, probe the machine and set up the executor.
    /// Blocks briefly (the executor launches a trial task once).
    pub fn new(config: AgentConfig) -> Result<Agent, AgentError> {
        let store = DataStore::open(&config.data_dir)?;
        let processors = config.processors(probe::read_processors());
        let slots = config.slots.unwrap_or(processors.count).max(1);
        clear_stale_tasks(&config.data_dir.join("tasks"));
        let mut executor_config = ExecutorConfig::new(
            &config.data_dir,
            &config.agent_name,
            processors.count,
            processors.mhz_per_core,
        );
        executor_config.task_user = config.task_user.clone();
        executor_config.pid_namespace = config.pid_namespace;
        executor_config.task_nice = config.task_nice;
        executor_config.tasks_dir = config.tasks_dir.clone();
        let executor = Executor::new(executor_config)?;
        log(executor.isolation());
        // A task's end is reported after its output was read (see `Tasks::poll`), so its
        // `dataAvailable` is exact.
        let mut capabilities = vec![END_OUTPUT_FLAGGED_CAPABILITY.to_string()];
        if *executor.isolation() == Isolation::PidNamespace {
            capabilities.push(PID_NAMESPACE_CAPABILITY.to_string());
        }
        let run_as = executor.run_as();
        let checkpointer = choose_checkpointer(&config, executor.isolation(), run_as);
        match checkpointer.capabilities() {
            Some(criu) => {
                log(format!(
                    "tasks can move: CRIU {} works here{}",
                    criu.version,
                    if criu.pre_copy {
                        " (with pre-copy)"
                    } else {
                        " (no pre-copy: this kernel does not track dirty memory)"
                    }
                ));
                capabilities.push(CHECKPOINT_CAPABILITY.to_string());
            }
            None => log(format!(
                "tasks cannot move from this agent: {}",
                checkpointer
                    .unavailable_reason()
                    .unwrap_or("no reason given")
            )),
        }
        let migrations = Migrations::new(checkpointer, &config.data_dir.join("checkpoints"));
        let owner = config
            .owner
            .clone()
            .map(|policy| OwnerWatch::new(policy, processors.count));
        log(format!(
            "agent {:?}: {} processors at {} MHz, {} task slots, tasks run as uid {}",
            config.agent_name, processors.count, processors.mhz_per_core, slots, run_as.uid
        ));
        let cookie = store.cookie()?;
        let tasks = TaskTable::new(
            executor,
            store.clone(),
            &config.agent_name,
            slots,
            processors,
        );
        Ok(Agent {
            hostname: crate::config::machine_hostname(),
            config,
            store,
            tasks,
            cookie,
            addresses: Vec::new(),
            processors,
            slots,
            capabilities,
            migrations,
            owner,
            presence: Presence::Away,
            evacuating: false,
            shutdown_seen: false,
            status_owed: None,
        })
    }

    /// Connect, serve and reconnect until `shutdown` completes.
    pub async fn serve(mut self, shutdown: impl Future<Output = ()>) {
        let mut shutdown = pin!(shutdown);
        let mut delay = FIRST_RECONNECT_DELAY;
        // A controller that stays away would otherwise fill the log with one line per try.
        let mut last_reason = String::new();
        loop {
            match self.session(shutdown.as_mut()).await {
                Ended::Shutdown => break,
                Ended::Lost { registered, reason } => {
                    if registered {
                        delay = FIRST_RECONNECT_DELAY;
                        last_reason.clear();
                    }
                    if reason != last_reason {
                        log(format!(
                            "{reason}; trying again every {:?} or less",
                            self.config.max_reconnect_delay
                        ));
                        last_reason = reason;
                    }
                    if self.shutdown_seen {
                        break;
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = shutdown.as_mut() => break,
                    }
                    delay = (delay * 2).min(self.config.max_reconnect_delay);
                }
            }
        }
        self.tasks.cancel_all().await;
        log("stopped");
    }

    /// One connection, from the opening to its end.
    async fn session<F: Future<Output = ()>>(&mut self, mut shutdown: Pin<&mut F>) -> Ended {
        let lost = |registered, reason: String| Ended::Lost { registered, reason };
        let options = PeerOptions {
            role: PeerRole::Agent,
            password: self.config.password.clone(),
        };
        // Looked up before every attempt: a controller found through Bonjour may have
        // restarted on another port or moved since the last one.
        let located = tokio::select! {
            located = discovery::locate(&self.config.controller) => located,
            _ = shutdown.as_mut(), if !self.shutdown_seen => return Ended::Shutdown,
        };
        let controller = match located {
            Ok(located) => located,
            Err(e) => return lost(false, format!("cannot find the controller: {e}")),
        };
        let connected = tokio::select! {
            connected = peer::connect(&controller.address, options) => connected,
            _ = shutdown.as_mut(), if !self.shutdown_seen => return Ended::Shutdown,
        };
        let (peer, mut incoming) = match connected {
            Ok(connection) => connection,
            Err(e) => return lost(false, format!("cannot reach the controller: {e}")),
        };
        let registered = tokio::select! {
            registered = self.register(&peer, &controller.address) => registered,
            _ = shutdown.as_mut(), if !self.shutdown_seen => {
                self.stop(&peer).await;
                return Ended::Shutdown;
            }
        };
        if let Err(reason) = registered {
            return lost(false, reason);
        }
        log(format!(
            "registered with {controller} as {:?}{}",
            self.config.agent_name,
            if peer.authenticated() {
                " (password accepted)"
            } else {
                ""
            }
        ));
        self.tasks.forget_reports();
        let (dead_tx, mut dead_rx) = mpsc::channel(1);
        let keepalive = tokio::spawn(keepalive(
            peer.clone(),
            self.config.keepalive_interval,
            dead_tx,
        ));
        let served = self
            .serve_connection(&peer, &mut incoming, &mut dead_rx, shutdown)
            .await;
        keepalive.abort();
        match served {
            Ok(()) => {
                self.stop(&peer).await;
                Ended::Shutdown
            }
            Err(reason) => {
                let frozen = self.migrations.connection_lost();
                if frozen > 0 {
                    log(format!(
                        "{frozen} task(s) frozen for a move stay frozen until the controller, \
                         back, says whether they now run elsewhere"
                    ));
                }
                if self.shutdown_seen {
                    // Evacuating, and nobody left to evacuate to.
                    return Ended::Shutdown;
                }
                lost(true, format!("lost the controller: {reason}"))
            }
        }
    }

    /// Answer the controller and report until the connection fails (`Err`, with the
    /// reason) or `shutdown` completes (`Ok`).
    async fn serve_connection<F: Future<Output = ()>>(
        &mut self,
        peer: &Peer,
        incoming: &mut peer::Incoming,
        dead: &mut mpsc::Receiver<String>,
        mut shutdown: Pin<&mut F>,
    ) -> Result<(), String> {
        let text = |e: peer::PeerError| e.to_string();
        self.send_status(peer).await.map_err(text)?;
        let mut poll = ticker(self.config.poll_interval);
        let mut status = ticker(self.config.status_interval);
        let mut owner_look = ticker(OWNER_LOOK_INTERVAL);
        let evacuation_deadline = tokio::time::sleep(Duration::MAX / 4);
        let mut evacuation_deadline = pin!(evacuation_deadline);
        // A task's end is looked at when it happens rather than at the next poll, so its
        // slot is free at once: the end of the agent's own child (a task without a
        // namespace, a restored task's waiter) arrives as SIGCHLD, that of an init the
        // zygote forked as word from the zygote. Without either the poll still finds it.
        let mut children = signal(SignalKind::child()).ok();
        let task_ended = self.tasks.task_ended();
        loop {
            let status_due = self.status_owed.map(|since| since + STATUS_DELAY);
            tokio::select! {
                _ = shutdown.as_mut(), if !self.shutdown_seen => {
                    self.shutdown_seen = true;
                    if !self.start_evacuation(peer).await.map_err(text)? {
                        return Ok(());
                    }
                    evacuation_deadline
                        .as_mut()
                        .reset(Instant::now() + self.config.evacuation_timeout);
                }
                _ = evacuation_deadline.as_mut(), if self.evacuating => {
                    log(format!(
                        "the controller did not move every task within {} s; cancelling the rest",
                        self.config.evacuation_timeout.as_secs()
                    ));
                    return Ok(());
                }
                message = incoming.recv() => {
                    let message = message.ok_or("the controller ended the connection")?;
                    self.handle(peer, message).await.map_err(text)?;
                    self.report(peer).await.map_err(text)?;
                }
                Some(()) = child_ended(&mut children) => self.report(peer).await.map_err(text)?,
                () = task_ended.notified() => self.report(peer).await.map_err(text)?,
                _ = poll.tick() => self.report(peer).await.map_err(text)?,
                _ = sleep_until(status_due.unwrap_or_else(Instant::now)), if status_due.is_some() => {
                    self.send_status(peer).await.map_err(text)?;
                }
                _ = status.tick() => self.send_status(peer).await.map_err(text)?,
                _ = owner_look.tick(), if self.owner.is_some() => {
                    if self.look_for_owner() {
                        self.send_status(peer).await.map_err(text)?;
                    }
                }
                reason = dead.recv() => {
                    return Err(reason.unwrap_or_else(|| "the keepalive stopped".to_string()));
                }
            }
            if self.evacuating && self.tasks.active_count() == 0 {
                log("every task has left this agent; stopping");
                return Ok(());
            }
        }
    }

    /// SIGTERM: with checkpoints and running tasks, ask the controller to move them away
    /// (status `Unavailable`, reason `shutdown`) and keep serving; `false` when there is
    /// nothing to wait for, so the agent stops at once (its tasks are cancelled and run
    /// again elsewhere, as with Xgrid).
    async fn start_evacuation(&mut self, peer: &Peer) -> Result<bool, peer::PeerError> {
        let running = self.tasks.active_count();
        if running == 0
            || self.migrations.checkpointer().capabilities().is_none()
            || self.config.evacuation_timeout.is_zero()
        {
            return Ok(false);
        }
        log(format!(
            "stopping: asking the controller to move {running} running task(s) elsewhere first \
             (at most {} s)",
            self.config.evacuation_timeout.as_secs()
        ));
        self.evacuating = true;
        self.send_status(peer).await?;
        Ok(true)
    }

    /// Look at the machine for its owner; `true` when that changed what the agent reports.
    fn look_for_owner(&mut self) -> bool {
        let pids = self.tasks.process_ids();
        let Some(watch) = self.owner.as_mut() else {
            return false;
        };
        let now = watch.look(&pids);
        let changed = now.is_present() != self.presence.is_present();
        if changed {
            log(if now.is_present() {
                format!("the owner is back ({now}): reporting Unavailable")
            } else {
                "the owner has left: reporting Available again".to_string()
            });
        }
        self.presence = now;
        changed
    }

    /// `agentRegistration`, once more without the cookie if the controller no longer
    /// knows it.
    async fn register(&mut self, peer: &Peer, controller: &Address) -> Result<(), String> {
        self.addresses = local_addresses(controller);
        loop {
            let request = peer.request("agentRegistration", self.registration().to_payload());
            let reply = tokio::time::timeout(REGISTRATION_TIMEOUT, request)
                .await
                .map_err(|_| {
                    format!(
                        "the controller did not answer the registration within {} s",
                        REGISTRATION_TIMEOUT.as_secs()
                    )
                })?
                .map_err(|e| e.to_string())?;
            match ControllerToAgentReply::from_envelope(&reply) {
                Ok(ControllerToAgentReply::AgentRegistration { agent_cookie }) => {
                    if agent_cookie != self.cookie {
                        self.set_cookie(&agent_cookie);
                    }
                    return Ok(());
                }
                Ok(ControllerToAgentReply::Error {
                    code: ErrorCode::InvalidCookie,
                    ..
                }) if !self.cookie.is_empty() => {
                    log("the controller does not know our cookie; registering afresh");
                    self.set_cookie("");
                }
                Ok(ControllerToAgentReply::Error { code, .. }) => {
                    return Err(format!("the controller refused the registration: {code}"))
                }
                Ok(other) => {
                    return Err(format!(
                        "the controller answered the registration with {}",
                        other.name()
                    ))
                }
                Err(e) => return Err(format!("unreadable registration reply: {e}")),
            }
        }
    }

    fn set_cookie(&mut self, cookie: &str) {
        self.cookie = cookie.to_string();
        if let Err(e) = self.store.save_cookie(cookie) {
            // The agent can go on with the cookie in memory; only a restart loses it.
            log(format!("could not save the agent's cookie: {e}"));
        }
    }

    /// The registration dictionary (also the `agentInfo` reply).
    fn registration(&self) -> AgentRegistration {
        AgentRegistration {
            agent_cookie: self.cookie.clone(),
            agent_name: self.config.agent_name.clone(),
            hostnames: vec![self.hostname.clone()],
            addresses: self.addresses.clone(),
            maximum_cpu_power: self.processors.total_mhz() as f64,
            maximum_task_count: i64::from(self.slots),
            agent_custom: self.config.agent_custom.clone(),
            linux_capabilities: Some(self.capabilities.clone()),
            cpu_features: self
                .migrations
                .checkpointer()
                .capabilities()
                .map(|criu| criu.cpu_flags.clone()),
        }
    }

    /// The agent's status dictionary (the notification and the `agentStatus` reply).
    fn status(&mut self) -> AgentStatus {
        let unavailable_reason = if self.evacuating {
            Some(UnavailableReason::Shutdown)
        } else if self.presence.is_present() {
            Some(UnavailableReason::Owner)
        } else {
            None
        };
        AgentStatus {
            agent_cookie: self.cookie.clone(),
            agent_name: self.config.agent_name.clone(),
            agent_status: if unavailable_reason.is_some() {
                AgentState::Unavailable
            } else {
                AgentState::Available
            },
            current_cpu_power: self.tasks.current_cpu_power(),
            current_task_count: i64::try_from(self.tasks.active_count()).unwrap_or(i64::MAX),
            task_ref_array: self.tasks.task_refs(),
            unavailable_reason,
            frozen_checkpoints: self.migrations.frozen(),
        }
    }

    async fn send_status(&mut self, peer: &Peer) -> Result<(), peer::PeerError> {
        self.status_owed = None;
        peer.send(AgentNotification::AgentStatus(self.status()).to_envelope())
            .await
    }

    /// Send what changed in the tasks since the last look; the agent's own status follows
    /// [`STATUS_DELAY`] after the first change it reports.
    async fn report(&mut self, peer: &Peer) -> Result<(), peer::PeerError> {
        let changes = self.tasks.poll();
        for notification in changes.notifications {
            peer.send(notification).await?;
        }
        if changes.status_changed && self.status_owed.is_none() {
            self.status_owed = Some(Instant::now());
        }
        Ok(())
    }

    /// Answer one message from the controller.
    async fn handle(&mut self, peer: &Peer, message: Envelope) -> Result<(), peer::PeerError> {
        if message.message_type != MessageType::Request {
            // The controller has no notifications for agents in Apple's protocol.
            log(format!(
                "ignored a {} {:?} from the controller",
                message.message_type.as_str(),
                message.name
            ));
            return Ok(());
        }
        match MigrationRequest::from_envelope(&message) {
            Ok(Some(request)) => {
                let payload = self.migrate(request).await;
                return peer.reply(&message, payload).await;
            }
            Ok(None) => {}
            Err(e) => {
                log(format!("could not read a checkpoint request: {e}"));
                return peer.reply(&message, e.reply_code().to_payload()).await;
            }
        }
        use ControllerToAgentRequest as R;
        let request = match ControllerToAgentRequest::from_envelope(&message) {
            Ok(request) => request,
            Err(e) => {
                log(format!("could not read a request from the controller: {e}"));
                return peer.reply(&message, e.reply_code().to_payload()).await;
            }
        };
        let answer = |result: Result<AgentReply, ErrorCode>| match result {
            Ok(reply) => reply.to_payload(),
            Err(code) => code.to_payload(),
        };
        let payload: Dictionary = match request {
            R::AgentStatus(_) => AgentReply::AgentStatus(self.status()).to_payload(),
            R::AgentInfo => AgentReply::AgentInfo(self.registration()).to_payload(),
            R::TaskSubmission(_) if self.evacuating || self.presence.is_present() => {
                log("refused a task: this agent is unavailable");
                ErrorCode::AgentUnavailable.to_payload()
            }
            R::TaskSubmission(submission) => answer(
                self.tasks
                    .submit(&submission)
                    .map(|task_ref| AgentReply::TaskSubmission { task_ref }),
            ),
            R::TaskControl(control) if self.migrations.is_frozen(&control.task_ref) => {
                if control.control == TaskAction::Cancel {
                    // Frozen for a move and no longer wanted: it ends here for good,
                    // directory and all, as when a move settles it (a restored copy's
                    // directory has the task's own path, which a later move of the task must
                    // find free).
                    self.migrations.forget_task(&control.task_ref);
                    let why = "canceled while frozen for a move";
                    self.tasks.withdraw(&control.task_ref, why).await;
                    AgentReply::TaskControl.to_payload()
                } else {
                    // Suspending or starting it would be undone, unseen, when its move
                    // settles.
                    log(format!(
                        "task {}: refused to {} it while it is frozen for a move",
                        control.task_ref, control.control
                    ));
                    ErrorCode::InvalidControl.to_payload()
                }
            }
            R::TaskControl(control) => {
                let done = self.tasks.control(&control).await;
                if done.is_ok() && control.control == TaskAction::Cancel {
                    self.migrations.forget_task(&control.task_ref);
                }
                answer(done.map(|()| AgentReply::TaskControl))
            }
            R::TaskResults(request) => answer(
                self.tasks
                    .results(&request.task_ref)
                    .map(AgentReply::TaskResults),
            ),
            R::TaskFinalResults(request) => answer(
                self.tasks
                    .final_results(&request.task_ref)
                    .await
                    .map(AgentReply::TaskFinalResults),
            ),
            R::Unknown(name) => {
                log(format!("the controller sent an unknown request {name:?}"));
                ErrorCode::InvalidRequest.to_payload()
            }
        };
        peer.reply(&message, payload).await
    }

    /// Answer one request of the checkpoint extension (docs/migration.md).
    async fn migrate(&mut self, request: MigrationRequest) -> Dictionary {
        use MigrationRequest as M;
        let refuse = |e: crate::migration::MigrationError| {
            log(format!("{e}"));
            MigrationRefusal::new(e.code(), e.to_string())
        };
        if !self.capabilities.iter().any(|c| c == CHECKPOINT_CAPABILITY) {
            let reason = self
                .migrations
                .checkpointer()
                .unavailable_reason()
                .unwrap_or("checkpoints are turned off")
                .to_string();
            return MigrationRefusal::new(ErrorCode::CheckpointFailed, reason).to_payload();
        }
        let reply: Result<MigrationReply, MigrationRefusal> = match request {
            M::TaskCheckpoint(r) if self.migrations.is_frozen(&r.task_ref) => {
                Err(MigrationRefusal::new(
                    ErrorCode::CheckpointFailed,
                    format!(
                        "task {} is frozen for a move whose checkpoint is not released yet",
                        r.task_ref
                    ),
                ))
            }
            M::TaskCheckpoint(r) => match self.tasks.checkpoint_target(&r.task_ref) {
                Err(code) => Err(MigrationRefusal::new(
                    code,
                    format!("task {} is not running here", r.task_ref),
                )),
                Ok(target) => {
                    let files = TaskFiles {
                        task_ref: &r.task_ref,
                        leader_pid: target.leader_pid,
                        task_dir: &target.task_dir,
                        stdout: &target.stdout,
                        stderr: &target.stderr,
                    };
                    match self.migrations.checkpoint(files, r.leave_running).await {
                        Ok(made) => {
                            log(format!(
                                "task {}: checkpoint {} taken ({} octets, frozen {} ms{})",
                                r.task_ref,
                                made.id,
                                made.size,
                                made.frozen.as_millis(),
                                if r.leave_running {
                                    ", running on"
                                } else {
                                    ", held frozen for its move"
                                }
                            ));
                            Ok(MigrationReply::TaskCheckpoint(TaskCheckpointReply {
                                checkpoint_identifier: made.id,
                                checkpoint_size: made.size,
                                stdout_size: made.stdout_size,
                                stderr_size: made.stderr_size,
                                frozen_milliseconds: u64::try_from(made.frozen.as_millis())
                                    .unwrap_or(u64::MAX),
                            }))
                        }
                        Err(e) => Err(refuse(e)),
                    }
                }
            },
            M::CheckpointRead(r) => self
                .migrations
                .read(&r.checkpoint_identifier, r.offset, r.length)
                .map(|(checkpoint_data, end_of_checkpoint)| {
                    MigrationReply::CheckpointRead(CheckpointReadReply {
                        checkpoint_data,
                        end_of_checkpoint,
                    })
                })
                .map_err(refuse),
            M::CheckpointWrite(r) => {
                let (id, data, end) = (
                    &r.checkpoint_identifier,
                    &r.checkpoint_data,
                    r.end_of_checkpoint,
                );
                let mut written = self.migrations.write(id, r.offset, data, end);
                // The task's directory is still here from an ended run of it (an orphan the
                // controller cancelled, its results never fetched): that run gives way.
                if let Err(MigrationError::Stream(PackError::Exists { path })) = &written {
                    if let Some(stale) = self.tasks.ended_task_at(path) {
                        let why = "removed: a restore of the same task takes its directory";
                        self.tasks.withdraw(&stale, why).await;
                        written = self.migrations.write(id, r.offset, data, end);
                    }
                }
                written
                    .map(|()| MigrationReply::CheckpointWrite)
                    .map_err(refuse)
            }
            M::TaskRestore(r) => {
                if self.tasks.active_count() >= self.slots as usize
                    || self.evacuating
                    || self.presence.is_present()
                {
                    let _ = self.migrations.release(
                        &r.checkpoint_identifier,
                        xgrid_protocol::messages::CheckpointDisposition::Discard,
                    );
                    Err(MigrationRefusal::new(
                        ErrorCode::RestoreFailed,
                        "this agent has no free slot for the task",
                    ))
                } else {
                    let id = &r.checkpoint_identifier;
                    match self.migrations.restore(id, r.leave_stopped).await {
                        Ok((restored, unpacked, sizes)) => {
                            let took = restored.restore_time();
                            let leader_pid = restored.leader_pid();
                            match self.tasks.adopt(restored, &unpacked.task_dir, sizes) {
                                Ok(task_ref) => {
                                    if r.leave_stopped {
                                        self.migrations.hold_restored(id, &task_ref, leader_pid);
                                    }
                                    log(format!(
                                        "task {task_ref}: restored from checkpoint {id} in {} ms{}",
                                        took.as_millis(),
                                        if r.leave_stopped {
                                            ", held frozen until its move is recorded"
                                        } else {
                                            ""
                                        }
                                    ));
                                    Ok(MigrationReply::TaskRestore { task_ref })
                                }
                                Err(code) => Err(MigrationRefusal::new(
                                    code,
                                    "the restored task could not be taken over",
                                )),
                            }
                        }
                        Err(e) => Err(refuse(e)),
                    }
                }
            }
            M::CheckpointRelease(r) => {
                match self
                    .migrations
                    .release(&r.checkpoint_identifier, r.disposition)
                {
                    Ok(Released::Withdraw { task_ref, why }) => {
                        self.tasks.withdraw(&task_ref, why).await;
                        Ok(MigrationReply::CheckpointRelease)
                    }
                    Ok(Released::Done) => Ok(MigrationReply::CheckpointRelease),
                    Err(e) => Err(refuse(e)),
                }
            }
        };
        match reply {
            Ok(reply) => reply.to_payload(),
            Err(refusal) => refusal.to_payload(),
        }
    }

    /// Leave cleanly: cancel the tasks, tell the controller, close the connection.
    async fn stop(&mut self, peer: &Peer) {
        log("stopping: cancelling tasks and closing the connection");
        self.tasks.cancel_all().await;
        // Best effort: the agent exits whatever the controller does.
        let _ = self.send_status(peer).await;
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, peer.close()).await;
    }
}

/// CRIU, when this agent may offer checkpoints: it is wanted, tasks get their own PID
/// namespace, and the tasks' processes can be dumped (CRIU must read the rlimits of
/// another user's processes, which needs CAP_SYS_RESOURCE; root tasks need nothing more).
fn choose_checkpointer(config: &AgentConfig, isolation: &Isolation, run_as: RunAs) -> Checkpointer {
    if !config.checkpoint {
        return Checkpointer::unavailable("turned off with --no-checkpoint");
    }
    if !matches!(isolation, Isolation::PidNamespace) {
        return Checkpointer::unavailable("tasks do not get a PID namespace of their own");
    }
    if run_as.uid != 0 && !has_capability(CAP_SYS_RESOURCE) {
        return Checkpointer::unavailable(format!(
            "tasks run as uid {} and this agent lacks CAP_SYS_RESOURCE, which CRIU needs to \
             dump another user's processes (run tasks as root with --task-user root, or \
             grant the capability)",
            run_as.uid
        ));
    }
    Checkpointer::probe()
}

/// Whether this process has capability `bit` in its effective set.
fn has_capability(bit: u32) -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|l| l.starts_with("CapEff:"))?;
            u64::from_str_radix(line.trim_start_matches("CapEff:").trim(), 16).ok()
        })
        .is_some_and(|mask| mask >> bit & 1 == 1)
}

/// The next SIGCHLD; never, without the signal stream.
async fn child_ended(children: &mut Option<Signal>) -> Option<()> {
    match children {
        Some(children) => children.recv().await,
        None => std::future::pending().await,
    }
}

/// An interval whose first tick is one period from now, that does not bunch up missed ticks.
fn ticker(period: Duration) -> tokio::time::Interval {
    let mut ticker = interval_at(Instant::now() + period, period);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    ticker
}

/// The periodic request with an empty name (as Apple's agents send); the controller answers
/// `{error = InvalidRequest}`. Any answer shows the controller alive; none, or a failure,
/// is reported on `dead`.
async fn keepalive(peer: Peer, period: Duration, dead: mpsc::Sender<String>) {
    let mut ticks = ticker(period);
    loop {
        ticks.tick().await;
        let reason = match tokio::time::timeout(
            KEEPALIVE_TIMEOUT,
            peer.request("", Dictionary::new()),
        )
        .await
        {
            Ok(Ok(_)) => continue,
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!(
                "the controller did not answer a keepalive within {} s",
                KEEPALIVE_TIMEOUT.as_secs()
            ),
        };
        let _ = dead.send(reason).await;
        return;
    }
}

/// The address this machine uses to reach the controller (a UDP `connect` sends nothing,
/// it only picks the route); loopback when that cannot be worked out.
fn local_addresses(controller: &Address) -> Vec<String> {
    let route = (controller.host.as_str(), controller.port)
        .to_socket_addrs()
        .ok()
        .and_then(|mut addresses| addresses.next())
        .and_then(|target| {
            let any = if target.is_ipv4() {
                "0.0.0.0:0"
            } else {
                "[::]:0"
            };
            let socket = UdpSocket::bind(any).ok()?;
            socket.connect(target).ok()?;
            socket.local_addr().ok()
        });
    vec![route.map_or_else(|| "127.0.0.1".to_string(), |a| a.ip().to_string())]
}

/// Task directories from an earlier run: their tasks cannot be taken over (the processes
/// were the earlier agent's children), and the controller learns they are gone from
/// `taskRefArray`, so the directories only take up room.
fn clear_stale_tasks(tasks: &Path) {
    let Ok(entries) = std::fs::read_dir(tasks) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        match std::fs::remove_dir_all(&path) {
            Ok(()) => log(format!("removed {} left by an earlier run", path.display())),
            Err(e) => log(format!("could not remove {}: {e}", path.display())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_route_to_a_loopback_controller_is_loopback() {
        let controller = Address {
            host: "127.0.0.1".into(),
            port: 4111,
        };
        assert_eq!(local_addresses(&controller), ["127.0.0.1"]);
    }

    #[test]
    fn stale_task_directories_are_removed() {
        let tasks = std::env::temp_dir().join(format!("xgrid-stale-{}", std::process::id()));
        std::fs::create_dir_all(tasks.join("12/work")).expect("create");
        std::fs::write(tasks.join("12/stdout"), "old").expect("write");
        clear_stale_tasks(&tasks);
        assert!(tasks.exists(), "the tasks directory itself stays");
        assert_eq!(std::fs::read_dir(&tasks).expect("read").count(), 0);
        let _ = std::fs::remove_dir_all(&tasks);
        // A missing directory (the first run) is not an error.
        clear_stale_tasks(&tasks);
    }
}
