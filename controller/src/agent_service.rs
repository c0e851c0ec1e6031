//! The agent profile (`…/controller/agent`, xgrid-wire.md §4.2): registration with cookies,
//! status reports, keepalives, and the link through which the controller sends an agent its
//! requests and routes the agent's task notifications to the task that awaits them.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, Notify};
use xgrid_protocol::driver::ConnectionHandle;
use xgrid_protocol::envelope::{Envelope, MessageType};
use xgrid_protocol::messages::{
    self, AgentNotification, AgentReply, AgentRequest, AgentStatus, ControllerToAgentReply,
    ControllerToAgentRequest, ErrorCode, MessageError, MigrationRefusal, MigrationReply,
    MigrationRequest, TaskAction, TaskControlNotice, TaskControlRequest, TaskStatus,
};

use crate::client_service::controller_list;
use crate::dispatch;
use crate::migration;
use crate::notify::GridEvent;
use crate::shared::Shared;
use crate::store::{self, AgentId, AgentLoad, StoreError};
use crate::wording;

/// Why a request to an agent got no usable answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LinkError {
    #[error("the agent's connection is closed")]
    Closed,
    #[error("the agent's reply to {request} could not be read: {source}")]
    BadReply {
        request: String,
        source: MessageError,
    },
    #[error("the agent answered {request} with the error {code:?}")]
    Refused { request: String, code: ErrorCode },
    #[error("the agent did not answer {request} within {} s", REPLY_TIMEOUT.as_secs())]
    NoAnswer { request: String },
    /// An error reply of the checkpoint extension, with the agent's reason.
    #[error("the agent declined {request}: {refusal}")]
    Declined {
        request: String,
        refusal: MigrationRefusal,
    },
}

/// How long the controller waits for an agent's reply before it gives up on the request
/// (and, for a submission, places the task elsewhere).
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(120);

/// What an agent said about one of its tasks.
#[derive(Debug, Clone, PartialEq)]
pub enum TaskEvent {
    Status(TaskStatus),
    Control(TaskControlNotice),
}

/// One agent channel: sends requests to the agent and routes what comes back.
pub struct AgentLink {
    conn: ConnectionHandle,
    channel: u32,
    /// Where the agent connected from, for the log.
    peer: String,
    /// Wakes the session's loop to drop the whole connection.
    hang_up: Arc<Notify>,
    /// When the agent last sent anything on the channel.
    last_heard: Mutex<Instant>,
    next_request: AtomicU64,
    closed: AtomicBool,
    /// Our requests awaiting the agent's reply, by envelope identifier.
    pending: Mutex<HashMap<String, oneshot::Sender<Envelope>>>,
    /// Tasks followed on this agent, by taskRef.
    tasks: Mutex<HashMap<String, mpsc::UnboundedSender<TaskEvent>>>,
    /// The registered agent behind the channel, with its name.
    agent: Mutex<Option<(AgentId, String)>>,
    /// TaskRefs the agent's last status listed that nobody follows (see `cancel_orphans`).
    suspects: Mutex<HashSet<String>>,
    /// The agent announced `END_OUTPUT_FLAGGED_CAPABILITY` when it registered.
    end_output_flagged: AtomicBool,
}

impl fmt::Debug for AgentLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AgentLink")
            .field("channel", &self.channel)
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}

// A poisoned lock only means another task panicked while holding it; the maps stay usable.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl AgentLink {
    /// `hang_up` ends the session the channel belongs to (see [`AgentLink::hang_up`]).
    pub fn new(
        conn: ConnectionHandle,
        channel: u32,
        peer: String,
        hang_up: Arc<Notify>,
    ) -> Arc<AgentLink> {
        Arc::new(AgentLink {
            conn,
            channel,
            peer,
            hang_up,
            last_heard: Mutex::new(Instant::now()),
            next_request: AtomicU64::new(1),
            closed: AtomicBool::new(false),
            pending: Mutex::new(HashMap::new()),
            tasks: Mutex::new(HashMap::new()),
            agent: Mutex::new(None),
            suspects: Mutex::new(HashSet::new()),
            end_output_flagged: AtomicBool::new(false),
        })
    }

    /// Whether a task's end reported with `dataAvailable = NO` leaves no output to fetch
    /// (see [`messages::END_OUTPUT_FLAGGED_CAPABILITY`]).
    pub fn flags_output_at_end(&self) -> bool {
        self.end_output_flagged.load(Ordering::Relaxed)
    }

    /// The registered agent behind this channel.
    pub fn agent(&self) -> Option<AgentId> {
        lock(&self.agent).as_ref().map(|(id, _)| *id)
    }

    /// How the log names this agent: "agent mac-mini (10.0.0.5)", or before it has
    /// registered, where it connected from.
    pub fn describe(&self) -> String {
        match lock(&self.agent).as_ref() {
            Some((_, name)) => {
                let host = self
                    .peer
                    .rsplit_once(':')
                    .map_or(self.peer.as_str(), |(host, _)| host);
                format!("agent {name} ({host})")
            }
            None => format!("the agent at {}", self.peer),
        }
    }

    fn bind(&self, agent: AgentId, name: String) {
        *lock(&self.agent) = Some((agent, name));
    }

    /// Sends `request` and waits for the agent's reply; an `{error}` reply is an error.
    pub async fn request(
        &self,
        request: ControllerToAgentRequest,
    ) -> Result<AgentReply, LinkError> {
        let name = request.name().to_string();
        let envelope = self
            .exchange(&name, |identifier| request.to_envelope(identifier))
            .await?;
        match AgentReply::from_envelope(&envelope) {
            Ok(AgentReply::Error { code, .. }) => Err(LinkError::Refused {
                request: name,
                code,
            }),
            Ok(reply) => Ok(reply),
            Err(source) => Err(LinkError::BadReply {
                request: name,
                source,
            }),
        }
    }

    /// Sends a request of the checkpoint extension (docs/migration.md) and waits for the
    /// agent's reply; an `{error; reason}` reply is [`LinkError::Declined`].
    pub async fn request_migration(
        &self,
        request: &MigrationRequest,
    ) -> Result<MigrationReply, LinkError> {
        let name = request.name().to_string();
        let envelope = self
            .exchange(&name, |identifier| request.to_envelope(identifier))
            .await?;
        match MigrationReply::from_envelope(&envelope) {
            Ok(MigrationReply::Error { refusal, .. }) => Err(LinkError::Declined {
                request: name,
                refusal,
            }),
            Ok(reply) => Ok(reply),
            Err(source) => Err(LinkError::BadReply {
                request: name,
                source,
            }),
        }
    }

    /// Sends the envelope `build` makes with a fresh identifier; waits for the reply.
    async fn exchange(
        &self,
        name: &str,
        build: impl FnOnce(&str) -> Envelope,
    ) -> Result<Envelope, LinkError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(LinkError::Closed);
        }
        let identifier = self
            .next_request
            .fetch_add(1, Ordering::Relaxed)
            .to_string();
        let (tx, rx) = oneshot::channel();
        lock(&self.pending).insert(identifier.clone(), tx);
        let payload = build(&identifier).to_beep_payload();
        if self.conn.send_msg(self.channel, payload).await.is_err() {
            lock(&self.pending).remove(&identifier);
            return Err(LinkError::Closed);
        }
        match tokio::time::timeout(REPLY_TIMEOUT, rx).await {
            Ok(reply) => reply.map_err(|_| LinkError::Closed),
            Err(_) => {
                lock(&self.pending).remove(&identifier);
                Err(LinkError::NoAnswer {
                    request: name.to_string(),
                })
            }
        }
    }

    /// Sends a request whose answer nobody waits for (e.g. a cancel).
    pub fn request_detached(self: &Arc<Self>, request: ControllerToAgentRequest) {
        let link = Arc::clone(self);
        tokio::spawn(async move {
            let _ = link.request(request).await;
        });
    }

    /// Hands the agent's reply to the request awaiting it; false when none does.
    pub fn deliver_reply(&self, envelope: Envelope) -> bool {
        match lock(&self.pending).remove(&envelope.identifier) {
            Some(waiter) => waiter.send(envelope).is_ok(),
            None => false,
        }
    }

    /// Starts following `task_ref`: its notifications go to the returned receiver.
    pub fn watch_task(&self, task_ref: &str) -> mpsc::UnboundedReceiver<TaskEvent> {
        let (tx, rx) = mpsc::unbounded_channel();
        lock(&self.tasks).insert(task_ref.to_string(), tx);
        rx
    }

    /// Stops following `task_ref`; whoever followed it sees its receiver end.
    pub fn unwatch_task(&self, task_ref: &str) {
        lock(&self.tasks).remove(task_ref);
    }

    pub fn is_watching(&self, task_ref: &str) -> bool {
        lock(&self.tasks).contains_key(task_ref)
    }

    /// Routes a task notification; gives it back when no one follows the task.
    fn route(&self, task_ref: &str, event: TaskEvent) -> Option<TaskEvent> {
        match lock(&self.tasks).get(task_ref) {
            Some(tx) => tx.send(event).err().map(|e| e.0),
            None => Some(event),
        }
    }

    /// The agent sent something: it is alive.
    pub fn heard(&self) {
        *lock(&self.last_heard) = Instant::now();
    }

    /// How long the agent has been silent.
    pub fn silence(&self) -> Duration {
        lock(&self.last_heard).elapsed()
    }

    /// Drops the agent's connection, as when it is silent too long: a connection that died
    /// without closing would otherwise hold its tasks forever. The session's end then
    /// counts as the agent lost.
    pub fn hang_up(&self) {
        self.hang_up.notify_one();
    }

    /// The channel is gone: waiting requests fail and followed tasks stop being followed.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        lock(&self.pending).clear();
        lock(&self.tasks).clear();
    }

    async fn send(&self, envelope: &Envelope) {
        let _ = self
            .conn
            .send_msg(self.channel, envelope.to_beep_payload())
            .await;
    }
}

/// Serves one agent channel until the connection drops `inbox`'s sender, then treats the
/// agent as lost. Replies to the controller's own requests never come through `inbox`: the
/// connection hands them to [`AgentLink::deliver_reply`] at once.
pub async fn run_agent_channel(
    shared: Arc<Shared>,
    link: Arc<AgentLink>,
    mut inbox: mpsc::Receiver<Envelope>,
) {
    while let Some(envelope) = inbox.recv().await {
        match envelope.message_type {
            MessageType::Request => answer_request(&shared, &link, &envelope).await,
            MessageType::Notification => take_notification(&shared, &link, &envelope).await,
            MessageType::Reply => {
                link.deliver_reply(envelope);
            }
        }
    }
    channel_closed(&shared, &link).await;
}

async fn answer_request(shared: &Arc<Shared>, link: &Arc<AgentLink>, envelope: &Envelope) {
    let reply = match AgentRequest::from_envelope(envelope) {
        Ok(AgentRequest::ControllerList(_)) => {
            ControllerToAgentReply::ControllerList(controller_list(shared))
        }
        Ok(AgentRequest::AgentRegistration(registration)) => {
            register(shared, link, registration).await
        }
        // Agents expect exactly this answer to their keepalive (§4.2).
        Ok(AgentRequest::Keepalive) | Ok(AgentRequest::Unknown(_)) => invalid(envelope),
        Err(e) => {
            shared.log(format!(
                "{} sent a request the controller cannot read: {e}",
                link.describe()
            ));
            invalid(envelope)
        }
    };
    link.send(&reply.to_envelope(&envelope.identifier)).await;
}

fn invalid(envelope: &Envelope) -> ControllerToAgentReply {
    ControllerToAgentReply::Error {
        name: envelope.name.clone(),
        code: ErrorCode::InvalidRequest,
    }
}

async fn register(
    shared: &Arc<Shared>,
    link: &Arc<AgentLink>,
    registration: messages::AgentRegistration,
) -> ControllerToAgentReply {
    let first_time = registration.agent_cookie.trim().is_empty();
    let record = store::AgentRegistration {
        cookie: Some(registration.agent_cookie.trim().to_string()),
        name: registration.agent_name.clone(),
        hostnames: registration.hostnames.clone(),
        addresses: registration.addresses.clone(),
        maximum_task_count: clamp_u32(registration.maximum_task_count as f64),
        maximum_cpu_power: clamp_u32(registration.maximum_cpu_power),
        core_megahertz: None,
        custom: registration.agent_custom.as_ref().map(|v| format!("{v:?}")),
        extensions: registration
            .linux_capabilities
            .as_ref()
            .map(|c| c.join(",")),
        cpu_features: registration.cpu_features.as_ref().map(|f| f.join(",")),
    };
    let flagged = registration.announces(messages::END_OUTPUT_FLAGGED_CAPABILITY);
    link.end_output_flagged.store(flagged, Ordering::Relaxed);
    match shared.store.register_agent(&record).await {
        Ok((agent, cookie)) => {
            let how = if first_time {
                "registered"
            } else {
                "came back and registered again"
            };
            bind_agent(shared, link, agent, registration.agent_name.clone()).await;
            shared.log(format!(
                "{} {how} as agent number {agent}: {}, {} of processing power",
                link.describe(),
                wording::count(u64::from(record.maximum_task_count), "task slot"),
                wording::megahertz(u64::from(record.maximum_cpu_power)),
            ));
            if first_time {
                if let Ok(a) = shared.store.agent(agent).await {
                    shared.publish(GridEvent::AgentAdded {
                        grid: a.grid,
                        agent,
                    });
                }
            } else {
                shared.publish(GridEvent::AgentChanged { agent });
            }
            shared.reschedule();
            // Checkpoints held for a slot may be restored there.
            shared.rebalance();
            ControllerToAgentReply::AgentRegistration {
                agent_cookie: cookie,
            }
        }
        Err(StoreError::InvalidCookie) => {
            shared.log(format!(
                "the agent {} at {} presented a cookie this controller never gave out; it must register afresh",
                registration.agent_name, link.peer
            ));
            ControllerToAgentReply::Error {
                name: "agentRegistration".into(),
                code: ErrorCode::InvalidCookie,
            }
        }
        Err(e) => {
            shared.log(format!(
                "cannot register the agent {}: {e}",
                registration.agent_name
            ));
            ControllerToAgentReply::Error {
                name: "agentRegistration".into(),
                code: ErrorCode::InvalidRequest,
            }
        }
    }
}

/// Ties the channel to `agent`. A channel the agent used before is dropped; the tasks it
/// followed are picked up again from the agent's next status report.
async fn bind_agent(shared: &Arc<Shared>, link: &Arc<AgentLink>, agent: AgentId, name: String) {
    link.bind(agent, name);
    if let Some(old) = shared.attach_agent(agent, Arc::clone(link)) {
        if !Arc::ptr_eq(&old, link) {
            old.close();
            shared.expect_recovery(agent, std::time::Instant::now());
        }
    }
}

fn clamp_u32(value: f64) -> u32 {
    if value.is_nan() || value <= 0.0 {
        0
    } else if value >= f64::from(u32::MAX) {
        u32::MAX
    } else {
        value as u32
    }
}

async fn take_notification(shared: &Arc<Shared>, link: &Arc<AgentLink>, envelope: &Envelope) {
    let notification = match AgentNotification::from_envelope(envelope) {
        Ok(n) => n,
        Err(e) => {
            shared.log(format!(
                "{} sent a notification the controller cannot read: {e}",
                link.describe()
            ));
            return;
        }
    };
    match notification {
        AgentNotification::AgentStatus(status) => agent_status(shared, link, status).await,
        AgentNotification::TaskStatus { task_ref, status } => {
            task_event(shared, link, task_ref, TaskEvent::Status(status)).await
        }
        AgentNotification::TaskControl { task_ref, notice } => {
            task_event(shared, link, task_ref, TaskEvent::Control(notice)).await
        }
    }
}

async fn agent_status(shared: &Arc<Shared>, link: &Arc<AgentLink>, status: AgentStatus) {
    let agent = match link.agent() {
        Some(agent) => agent,
        // After a reconnect an agent may report before it registers (§8): its cookie says
        // who it is.
        None => match shared
            .store
            .agent_by_cookie(status.agent_cookie.trim())
            .await
        {
            Ok(Some(agent)) if !status.agent_cookie.trim().is_empty() => {
                bind_agent(shared, link, agent, status.agent_name.clone()).await;
                agent
            }
            _ => return,
        },
    };
    let state = match status.agent_status {
        messages::AgentState::Available => store::AgentState::Available,
        messages::AgentState::Unavailable | messages::AgentState::Offline => {
            store::AgentState::Unavailable
        }
    };
    let load = AgentLoad {
        state,
        current_cpu_power: clamp_u32(status.current_cpu_power),
        current_task_count: clamp_u32(status.current_task_count as f64),
    };
    if let Err(e) = shared.store.update_agent_load(agent, load).await {
        shared.log(format!("cannot record the status of agent {agent}: {e}"));
        return;
    }
    migration::note_agent_status(shared, agent, &status).await;
    shared.publish(GridEvent::AgentChanged { agent });
    if shared.take_recovery(agent) {
        reconcile(shared, link, agent, &status.task_ref_array).await;
    } else {
        cancel_orphans(shared, link, agent, &status.task_ref_array).await;
    }
    shared.reschedule();
}

/// Cancels tasks the agent runs that the controller no longer follows (it gave them up when
/// the agent's earlier connection dropped, or their job is gone), so they stop holding the
/// agent's slots. A taskRef must be unknown in two reports in a row: a submission the agent
/// has just answered may show in a report before its driver has seen the answer.
async fn cancel_orphans(shared: &Shared, link: &Arc<AgentLink>, agent: AgentId, listed: &[String]) {
    let mut unknown = HashSet::new();
    for task_ref in listed {
        if link.is_watching(task_ref) {
            continue;
        }
        if let Ok(None) = shared.store.task_by_ref(agent, task_ref).await {
            unknown.insert(task_ref.clone());
        }
    }
    let previous = std::mem::replace(&mut *lock(&link.suspects), unknown.clone());
    for task_ref in unknown.intersection(&previous) {
        shared.log(format!(
            "{} is running its task {task_ref}, which no job wants any more; canceling it",
            link.describe()
        ));
        link.request_detached(ControllerToAgentRequest::TaskControl(TaskControlRequest {
            task_ref: task_ref.clone(),
            control: TaskAction::Cancel,
        }));
    }
}

/// Matches the tasks the store has placed on `agent` against the taskRefs the agent still
/// runs: those it runs are followed again, those it lost are queued again, and tasks it runs
/// that the controller no longer wants are canceled.
async fn reconcile(shared: &Arc<Shared>, link: &Arc<AgentLink>, agent: AgentId, listed: &[String]) {
    let attached = match shared.store.agent_tasks(agent).await {
        Ok(tasks) => tasks,
        Err(e) => {
            shared.log(format!(
                "cannot read the tasks placed on agent {agent}: {e}"
            ));
            return;
        }
    };
    let listed: HashSet<&str> = listed.iter().map(String::as_str).collect();
    let mut known: HashSet<&str> = HashSet::new();
    let mut requeued = false;
    for task in &attached {
        match task.task_ref.as_deref() {
            Some(task_ref) if listed.contains(task_ref) => {
                known.insert(task_ref);
                if !link.is_watching(task_ref) {
                    shared.log(format!(
                        "job {} task {} is still running on {}; following it again",
                        task.job,
                        task.task,
                        link.describe()
                    ));
                    dispatch::follow_again(
                        shared, link, agent, task.job, &task.task, task_ref, None,
                    );
                }
            }
            _ => {
                shared.log(format!(
                    "{} no longer has job {} task {}; it will run again, here or elsewhere",
                    link.describe(),
                    task.job,
                    task.task
                ));
                if let Err(e) = shared.store.requeue_task(task.job, &task.task).await {
                    shared.log(format!(
                        "cannot queue job {} task {} again: {e}",
                        task.job, task.task
                    ));
                }
                shared.publish(GridEvent::JobChanged { job: task.job });
                requeued = true;
            }
        }
    }
    for task_ref in listed.difference(&known) {
        shared.log(format!(
            "{} is running its task {task_ref}, which no job wants any more; canceling it",
            link.describe()
        ));
        link.request_detached(ControllerToAgentRequest::TaskControl(TaskControlRequest {
            task_ref: task_ref.to_string(),
            control: TaskAction::Cancel,
        }));
    }
    if requeued {
        shared.reschedule();
    }
}

async fn task_event(
    shared: &Arc<Shared>,
    link: &Arc<AgentLink>,
    task_ref: String,
    event: TaskEvent,
) {
    let Some(event) = link.route(&task_ref, event) else {
        return;
    };
    // Nobody follows the task: after a controller restart or a reconnect it may still be one
    // of ours, placed on this agent.
    let Some(agent) = link.agent() else {
        return;
    };
    match shared.store.task_by_ref(agent, &task_ref).await {
        Ok(Some((job, task))) => {
            dispatch::follow_again(shared, link, agent, job, &task, &task_ref, Some(event));
        }
        Ok(None) => {}
        Err(e) => shared.log(format!(
            "cannot look up task {task_ref} of agent {agent}: {e}"
        )),
    }
}

/// The channel closed: the agent goes Offline and its tasks are queued for other agents,
/// unless a newer channel of the same agent has already taken over.
async fn channel_closed(shared: &Arc<Shared>, link: &Arc<AgentLink>) {
    link.close();
    let Some(agent) = link.agent() else {
        return;
    };
    // A controller shutting down closes every session; its agents' tasks stay attached to
    // them for the restart (the store marks every agent Offline when it opens).
    if shared.is_stopping() {
        return;
    }
    if !shared.detach_agent(agent, link) {
        return;
    }
    if let Err(e) = shared.store.set_agent_offline(agent).await {
        shared.log(format!("cannot mark agent {agent} offline: {e}"));
    }
    match shared.store.requeue_agent_tasks(agent).await {
        Ok(requeued) => {
            let tasks = match requeued.len() {
                0 => "it had no tasks".to_string(),
                1 => "its 1 task will run elsewhere".to_string(),
                n => format!("its {n} tasks will run elsewhere"),
            };
            shared.log(format!("{} went offline: {tasks}", link.describe()));
            let jobs: HashSet<_> = requeued.iter().map(|t| t.job).collect();
            for job in jobs {
                shared.publish(GridEvent::JobChanged { job });
            }
        }
        Err(e) => shared.log(format!(
            "{} disconnected, but its tasks could not be queued again: {e}",
            link.describe()
        )),
    }
    shared.publish(GridEvent::AgentChanged { agent });
    shared.reschedule();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clamps_reported_numbers_into_u32() {
        assert_eq!(clamp_u32(-5.0), 0);
        assert_eq!(clamp_u32(f64::NAN), 0);
        assert_eq!(clamp_u32(2400.7), 2400);
        assert_eq!(clamp_u32(1e12), u32::MAX);
    }
}
