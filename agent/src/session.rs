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
    AgentNotification, AgentRegistration, AgentReply, AgentState, AgentStatus,
    ControllerToAgentReply, ControllerToAgentRequest, ErrorCode,
};
use xgrid_protocol::peer::{self, Address, Peer, PeerOptions, PeerRole};
use xgrid_protocol::plist::Dictionary;

use crate::config::AgentConfig;
use crate::executor::{ExecError, Executor, ExecutorConfig, Isolation};
use crate::log;
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
        let processors = probe::read_processors();
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
        let executor = Executor::new(executor_config)?;
        log(executor.isolation());
        let capabilities = match executor.isolation() {
            Isolation::PidNamespace => vec![PID_NAMESPACE_CAPABILITY.to_string()],
            Isolation::Plain { .. } => Vec::new(),
        };
        let run_as = executor.run_as();
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
        let controller = self.config.controller.clone();
        let connected = tokio::select! {
            connected = peer::connect(&controller, options) => connected,
            _ = shutdown.as_mut() => return Ended::Shutdown,
        };
        let (peer, mut incoming) = match connected {
            Ok(connection) => connection,
            Err(e) => return lost(false, format!("cannot reach the controller: {e}")),
        };
        let registered = tokio::select! {
            registered = self.register(&peer) => registered,
            _ = shutdown.as_mut() => {
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
            Err(reason) => lost(true, format!("lost the controller: {reason}")),
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
        // A task's first process is the agent's child, so its end arrives as SIGCHLD: look
        // then rather than at the next poll, so its slot is free at once. Without the
        // signal the poll still finds it.
        let mut children = signal(SignalKind::child()).ok();
        loop {
            let status_due = self.status_owed.map(|since| since + STATUS_DELAY);
            tokio::select! {
                _ = shutdown.as_mut() => return Ok(()),
                message = incoming.recv() => {
                    let message = message.ok_or("the controller ended the connection")?;
                    self.handle(peer, message).await.map_err(text)?;
                    self.report(peer).await.map_err(text)?;
                }
                Some(()) = child_ended(&mut children) => self.report(peer).await.map_err(text)?,
                _ = poll.tick() => self.report(peer).await.map_err(text)?,
                _ = sleep_until(status_due.unwrap_or_else(Instant::now)), if status_due.is_some() => {
                    self.send_status(peer).await.map_err(text)?;
                }
                _ = status.tick() => self.send_status(peer).await.map_err(text)?,
                reason = dead.recv() => {
                    return Err(reason.unwrap_or_else(|| "the keepalive stopped".to_string()));
                }
            }
        }
    }

    /// `agentRegistration`, once more without the cookie if the controller no longer
    /// knows it.
    async fn register(&mut self, peer: &Peer) -> Result<(), String> {
        self.addresses = local_addresses(&self.config.controller);
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
            agent_custom: None,
            linux_capabilities: Some(self.capabilities.clone()),
        }
    }

    /// The agent's status dictionary (the notification and the `agentStatus` reply).
    fn status(&mut self) -> AgentStatus {
        AgentStatus {
            agent_cookie: self.cookie.clone(),
            agent_name: self.config.agent_name.clone(),
            agent_status: AgentState::Available,
            current_cpu_power: self.tasks.current_cpu_power(),
            current_task_count: i64::try_from(self.tasks.active_count()).unwrap_or(i64::MAX),
            task_ref_array: self.tasks.task_refs(),
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
            R::TaskSubmission(submission) => answer(
                self.tasks
                    .submit(&submission)
                    .map(|task_ref| AgentReply::TaskSubmission { task_ref }),
            ),
            R::TaskControl(control) => answer(
                self.tasks
                    .control(&control)
                    .await
                    .map(|()| AgentReply::TaskControl),
            ),
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

    /// Leave cleanly: cancel the tasks, tell the controller, close the connection.
    async fn stop(&mut self, peer: &Peer) {
        log("stopping: cancelling tasks and closing the connection");
        self.tasks.cancel_all().await;
        // Best effort: the agent exits whatever the controller does.
        let _ = self.send_status(peer).await;
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, peer.close()).await;
    }
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
