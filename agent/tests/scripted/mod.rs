//! A scripted Xgrid controller for the agent's tests: a real listener-side BEEP session on
//! loopback that greets, optionally demands two-way-random, accepts the agent profile,
//! acknowledges every MSG with an empty RPY, answers `controllerList` (MASTER) and keepalives
//! by itself, and hands every other agent message to the test, which answers as it likes.

#![allow(dead_code)]

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use xgrid_protocol::auth::{Listener, ListenerStep};
use xgrid_protocol::beep::{Channel0Message, Config, Event, Role};
use xgrid_protocol::driver::{self, ConnectionHandle};
use xgrid_protocol::envelope::{Envelope, MessageType};
use xgrid_protocol::messages::{
    AgentNotification, AgentRegistration, AgentRequest, AgentStatus, ControllerEntry,
    ControllerListReply, ControllerToAgentReply, ErrorCode, TaskStatus,
};
use xgrid_protocol::peer::Address;
use xgrid_protocol::plist::Dictionary;
use xgrid_protocol::profile;

/// The longest a test waits for the agent to say something.
pub const WAIT: Duration = Duration::from_secs(15);

/// A listening controller; each [`ScriptedController::accept`] takes one agent connection.
pub struct ScriptedController {
    listener: TcpListener,
    pub address: Address,
    password: Option<String>,
}

impl ScriptedController {
    pub async fn bind(password: Option<&str>) -> ScriptedController {
        ScriptedController::listen("127.0.0.1:0", password).await
    }

    /// Listen again where an earlier controller did (a restarted controller).
    pub async fn bind_to(address: &Address) -> ScriptedController {
        ScriptedController::listen(&address.to_string(), None).await
    }

    async fn listen(at: &str, password: Option<&str>) -> ScriptedController {
        let listener = TcpListener::bind(at).await.expect("bind");
        let port = listener.local_addr().expect("local address").port();
        ScriptedController {
            listener,
            address: Address {
                host: "127.0.0.1".into(),
                port,
            },
            password: password.map(str::to_string),
        }
    }

    /// Wait for the agent to connect and open the agent profile.
    pub async fn accept(&self) -> Connection {
        let (stream, _) = tokio::time::timeout(WAIT, self.listener.accept())
            .await
            .expect("the agent did not connect in time")
            .expect("accept");
        let config = Config {
            profiles: profile::CONTROLLER_GREETING
                .iter()
                .map(|p| p.to_string())
                .collect(),
            ..Config::default()
        };
        let (handle, events) = driver::spawn(stream, Role::Listener, config);
        let (to_test, from_agent) = mpsc::unbounded_channel();
        let (opened_tx, opened_rx) = oneshot::channel();
        let keepalives = Arc::new(AtomicUsize::new(0));
        let pump = tokio::spawn(pump(
            handle.clone(),
            events,
            self.password.clone(),
            to_test,
            opened_tx,
            keepalives.clone(),
        ));
        let channel = tokio::time::timeout(WAIT, opened_rx)
            .await
            .expect("the agent did not open its profile in time")
            .expect("the session ended before the agent profile opened");
        Connection {
            handle,
            channel,
            from_agent,
            backlog: VecDeque::new(),
            next_id: 1000,
            pump,
            keepalives,
        }
    }

    /// Expect no connection within `wait` (e.g. after the agent stopped).
    pub async fn no_connection_within(&self, wait: Duration) -> bool {
        tokio::time::timeout(wait, self.listener.accept())
            .await
            .is_err()
    }
}

/// Runs the controller's side of the session; sends the agent profile's channel on `opened`.
async fn pump(
    handle: ConnectionHandle,
    mut events: mpsc::Receiver<Event>,
    password: Option<String>,
    to_test: mpsc::UnboundedSender<Envelope>,
    opened: oneshot::Sender<u32>,
    keepalives: Arc<AtomicUsize>,
) {
    let mut opened = Some(opened);
    let mut authenticated = password.is_none();
    let mut auth: Option<(u32, Listener)> = None;
    let mut agent_channel = None;
    while let Some(event) = events.recv().await {
        match event {
            Event::StartRequested { channel, profiles } => {
                let Some(uri) = profiles.first().map(|p| p.uri.clone()) else {
                    continue;
                };
                if uri == profile::TWO_WAY_RANDOM {
                    let secret = password.clone().unwrap_or_default();
                    let listener = Listener::new(move |user| {
                        (user == profile::AGENT_USER).then(|| secret.clone())
                    })
                    .expect("nonces");
                    let challenge = listener.challenge();
                    let _ = handle.accept_start(channel, &uri, Some(challenge)).await;
                    auth = Some((channel, listener));
                } else if uri == profile::AGENT && !authenticated {
                    let _ = handle
                        .refuse_start(channel, 530, "Authentication required")
                        .await;
                } else if uri == profile::AGENT {
                    let _ = handle.accept_start(channel, &uri, None).await;
                    agent_channel = Some(channel);
                    if let Some(opened) = opened.take() {
                        let _ = opened.send(channel);
                    }
                } else {
                    let _ = handle.refuse_start(channel, 550, "not offered").await;
                }
            }
            Event::Message {
                channel,
                msgno,
                payload,
            } => {
                if let Some((auth_channel, listener)) = &mut auth {
                    if *auth_channel == channel {
                        match listener.receive(&payload) {
                            Ok(ListenerStep::Reply(reply)) => {
                                let _ = handle.send_rpy(channel, msgno, reply).await;
                            }
                            Ok(ListenerStep::Authenticated { reply, .. }) => {
                                authenticated = true;
                                let _ = handle.send_rpy(channel, msgno, reply).await;
                            }
                            Err(e) => {
                                let refusal = Channel0Message::Error {
                                    code: e.reply_code(),
                                    text: e.reply_text().into(),
                                };
                                let _ = handle.send_err(channel, msgno, refusal.to_payload()).await;
                            }
                        }
                        continue;
                    }
                }
                let _ = handle.send_rpy(channel, msgno, b"\r\n".to_vec()).await;
                let Ok(envelope) = Envelope::from_beep_payload(&payload) else {
                    panic!("the agent sent something that is not an Xgrid envelope");
                };
                let Some(agent_channel) = agent_channel else {
                    continue;
                };
                let answer = match (&envelope.message_type, envelope.name.as_str()) {
                    (MessageType::Request, "controllerList") => Some(
                        ControllerToAgentReply::ControllerList(ControllerListReply {
                            controllers: vec![ControllerEntry {
                                hostname: "scripted".into(),
                                role: "MASTER".into(),
                            }],
                            controller_role: "MASTER".into(),
                        }),
                    ),
                    (MessageType::Request, "") => {
                        keepalives.fetch_add(1, Ordering::SeqCst);
                        Some(ControllerToAgentReply::Error {
                            name: String::new(),
                            code: ErrorCode::InvalidRequest,
                        })
                    }
                    _ => None,
                };
                match answer {
                    Some(answer) => {
                        let reply = answer.to_envelope(&envelope.identifier);
                        let _ = handle
                            .send_msg(agent_channel, reply.to_beep_payload())
                            .await;
                    }
                    None => {
                        let _ = to_test.send(envelope);
                    }
                }
            }
            Event::SessionClosed { .. } | Event::Failed(_) => break,
            _ => {}
        }
    }
}

/// The test's end of one agent connection.
pub struct Connection {
    handle: ConnectionHandle,
    channel: u32,
    from_agent: mpsc::UnboundedReceiver<Envelope>,
    /// Messages received while the test waited for something else.
    backlog: VecDeque<Envelope>,
    next_id: u64,
    pump: tokio::task::JoinHandle<()>,
    pub keepalives: Arc<AtomicUsize>,
}

impl Connection {
    /// The first message (old or new) that `wanted` accepts; the others stay queued.
    pub async fn next_matching(
        &mut self,
        what: &str,
        wanted: impl Fn(&Envelope) -> bool,
    ) -> Envelope {
        if let Some(at) = self.backlog.iter().position(&wanted) {
            if let Some(found) = self.backlog.remove(at) {
                return found;
            }
        }
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let message = tokio::time::timeout_at(deadline, self.from_agent.recv())
                .await
                .unwrap_or_else(|_| {
                    panic!(
                        "waited {} s for {what}; got meanwhile: {:#?}",
                        WAIT.as_secs(),
                        self.backlog
                    )
                })
                .unwrap_or_else(|| panic!("the connection ended while waiting for {what}"));
            if wanted(&message) {
                return message;
            }
            self.backlog.push_back(message);
        }
    }

    /// Whether the agent closed the session (or the connection ended) within [`WAIT`].
    pub async fn ended(&mut self) -> bool {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            match tokio::time::timeout_at(deadline, self.from_agent.recv()).await {
                Err(_) => return false,
                Ok(None) => return true,
                Ok(Some(message)) => self.backlog.push_back(message),
            }
        }
    }

    /// Every message received so far that `wanted` accepts, without waiting; the others
    /// stay queued.
    pub fn take_received(&mut self, wanted: impl Fn(&Envelope) -> bool) -> Vec<Envelope> {
        while let Ok(message) = self.from_agent.try_recv() {
            self.backlog.push_back(message);
        }
        let mut taken = Vec::new();
        let mut kept = VecDeque::new();
        for message in self.backlog.drain(..) {
            if wanted(&message) {
                taken.push(message);
            } else {
                kept.push_back(message);
            }
        }
        self.backlog = kept;
        taken
    }

    /// Send a request to the agent and wait for its reply.
    pub async fn request(&mut self, name: &str, payload: Dictionary) -> Envelope {
        self.next_id += 1;
        let identifier = self.next_id.to_string();
        self.send(Envelope::request(identifier.as_str(), name, payload))
            .await;
        self.next_matching(&format!("the reply to {name}"), |m| {
            m.message_type == MessageType::Reply && m.identifier == identifier
        })
        .await
    }

    pub async fn send(&self, envelope: Envelope) {
        self.handle
            .send_msg(self.channel, envelope.to_beep_payload())
            .await
            .expect("send to the agent");
    }

    pub async fn reply(&self, request: &Envelope, payload: Dictionary) {
        self.send(Envelope::reply(
            request.identifier.as_str(),
            request.name.as_str(),
            payload,
        ))
        .await;
    }

    /// The agent's next `agentRegistration` request, read.
    pub async fn registration(&mut self) -> (Envelope, AgentRegistration) {
        let request = self
            .next_matching("agentRegistration", |m| {
                m.message_type == MessageType::Request && m.name == "agentRegistration"
            })
            .await;
        match AgentRequest::from_envelope(&request) {
            Ok(AgentRequest::AgentRegistration(registration)) => (request, registration),
            other => panic!("unreadable registration: {other:?}"),
        }
    }

    /// Take the registration and hand out `cookie`.
    pub async fn accept_registration(&mut self, cookie: &str) -> AgentRegistration {
        let (request, registration) = self.registration().await;
        let reply = ControllerToAgentReply::AgentRegistration {
            agent_cookie: cookie.into(),
        };
        self.reply(&request, reply.to_payload()).await;
        registration
    }

    /// The next `agentStatus` notification that `wanted` accepts.
    pub async fn agent_status(&mut self, wanted: impl Fn(&AgentStatus) -> bool) -> AgentStatus {
        let read = |m: &Envelope| match AgentNotification::from_envelope(m) {
            Ok(AgentNotification::AgentStatus(status))
                if m.message_type == MessageType::Notification =>
            {
                Some(status)
            }
            _ => None,
        };
        let found = self
            .next_matching("an agentStatus notification", |m| {
                read(m).is_some_and(|s| wanted(&s))
            })
            .await;
        read(&found).expect("agentStatus")
    }

    /// The next `taskStatus` notification about `task_ref` that `wanted` accepts.
    pub async fn task_status(
        &mut self,
        task_ref: &str,
        wanted: impl Fn(&TaskStatus) -> bool,
    ) -> TaskStatus {
        let read = |m: &Envelope| match AgentNotification::from_envelope(m) {
            Ok(AgentNotification::TaskStatus {
                task_ref: about,
                status,
            }) if about == task_ref && m.message_type == MessageType::Notification => Some(status),
            _ => None,
        };
        let found = self
            .next_matching(&format!("a taskStatus of task {task_ref}"), |m| {
                read(m).is_some_and(|s| wanted(&s))
            })
            .await;
        read(&found).expect("taskStatus")
    }

    /// Drop the TCP connection without closing the session, as a crashed controller would.
    pub fn hang_up(self) {
        self.pump.abort();
    }
}
