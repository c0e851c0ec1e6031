//! Test peers that speak the raw protocol to a real controller on 127.0.0.1: a client and a
//! fake agent, both built on the protocol crate's tokio driver, plus temporary data
//! directories and an in-process controller.

#![allow(dead_code)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::sync::mpsc;
use xgrid_controller::{Config, Controller};
use xgrid_protocol::auth::{Initiator, InitiatorStep};
use xgrid_protocol::beep::{Config as BeepConfig, Event, ProfileOffer, Role};
use xgrid_protocol::driver::{self, ConnectionHandle, StartOutcome};
use xgrid_protocol::envelope::{Envelope, MessageType};
use xgrid_protocol::messages::{AgentNotification, AgentRegistration, AgentReply, AgentStatus};
use xgrid_protocol::plist::{Dictionary, Value};
use xgrid_protocol::profile;

/// How long any single wait for the controller may take before the test fails.
pub const PATIENCE: Duration = Duration::from_secs(15);

/// A directory of its own for one test, removed when the test ends.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(test: &str) -> TempDir {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "xgrid-controller-{}-{}-{}",
            std::process::id(),
            test,
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the test directory");
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Settings for a test controller on a free loopback port; it logs when
/// `XGRID_TEST_LOG` is set.
pub fn test_config(dir: &TempDir) -> Config {
    let mut config = Config::new(dir.path().join("data"));
    config.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    config.schedule_tick = Duration::from_millis(200);
    config.log = std::env::var_os("XGRID_TEST_LOG").is_some();
    config
}

pub async fn start(config: Config) -> Controller {
    Controller::start(config)
        .await
        .expect("the controller starts")
}

/// Builds a dictionary: `dict! { "key" => value, ... }`.
#[macro_export]
macro_rules! dict {
    ($($key:expr => $value:expr),* $(,)?) => {{
        #[allow(unused_mut)]
        let mut d = xgrid_protocol::plist::Dictionary::new();
        $(d.insert($key.to_string(), xgrid_protocol::plist::Value::from($value));)*
        d
    }};
}

pub fn strings(items: &[&str]) -> Value {
    Value::Array(items.iter().map(|s| Value::from(*s)).collect())
}

/// A job of `tasks` tasks, each running `/bin/echo task N`.
pub fn echo_job(name: &str, tasks: usize) -> Dictionary {
    let mut specs = Dictionary::new();
    for n in 0..tasks {
        let task = dict! {
            "command" => "/bin/echo",
            "arguments" => strings(&["task", &n.to_string()]),
        };
        specs.insert(n.to_string(), Value::Dictionary(task));
    }
    dict! {
        "name" => name,
        "applicationIdentifier" => "com.apple.xgrid.cli",
        "taskSpecifications" => specs,
    }
}

/// A session with the controller and its one Xgrid channel. Dropping it drops the
/// connection.
pub struct Peer {
    // Declared (so dropped) before `conn`: the driver notices a dropped handle at once, but
    // a dropped event receiver only once something else wakes it, so the receiver must
    // already be gone when the handle goes, or the connection may linger open.
    events: mpsc::Receiver<Event>,
    pub conn: ConnectionHandle,
    pub channel: u32,
    next_id: u64,
    /// Messages read while waiting for another one.
    backlog: VecDeque<Envelope>,
}

/// Connects and waits for the controller's greeting.
pub async fn connect(addr: SocketAddr) -> (ConnectionHandle, mpsc::Receiver<Event>) {
    let stream = TcpStream::connect(addr).await.expect("connect");
    // Without this, Nagle's algorithm and delayed ACKs add ~40 ms to small exchanges.
    stream.set_nodelay(true).expect("nodelay");
    let (conn, mut events) = driver::spawn(stream, Role::Initiator, BeepConfig::default());
    match next_event(&mut events).await {
        Event::Greeting { profiles } => {
            let expected: Vec<String> = profile::CONTROLLER_GREETING
                .iter()
                .map(|s| s.to_string())
                .collect();
            assert_eq!(profiles, expected, "the controller's greeting");
        }
        other => panic!("expected the greeting, got {other:?}"),
    }
    (conn, events)
}

pub async fn next_event(events: &mut mpsc::Receiver<Event>) -> Event {
    match tokio::time::timeout(PATIENCE, events.recv()).await {
        Ok(Some(event)) => event,
        Ok(None) => panic!("the session ended"),
        Err(_) => panic!("no event from the controller in time"),
    }
}

/// Why two-way-random failed: the ERR code the controller sent.
pub async fn authenticate(
    conn: &ConnectionHandle,
    events: &mut mpsc::Receiver<Event>,
    user: &str,
    password: &str,
) -> Result<(), u16> {
    let started = conn
        .start_channel(vec![ProfileOffer::with_piggyback(
            profile::TWO_WAY_RANDOM,
            "",
        )])
        .await
        .expect("start two-way-random");
    let StartOutcome::Started {
        channel, piggyback, ..
    } = started
    else {
        panic!("two-way-random refused: {started:?}")
    };
    let mut initiator = Initiator::new(user, password).expect("nonce");
    let mut message = initiator
        .answer_challenge(piggyback.as_deref().unwrap_or(""))
        .expect("a readable challenge");
    loop {
        conn.send_msg(channel, message).await.expect("send");
        let payload = loop {
            match next_event(events).await {
                Event::Reply {
                    channel: c,
                    payload,
                    ..
                } if c == channel => break payload,
                Event::ErrorReply {
                    channel: c,
                    payload,
                    ..
                } if c == channel => return Err(error_code(&payload)),
                _ => {}
            }
        };
        match initiator.receive_reply(&payload).expect("a valid proof") {
            InitiatorStep::Send(next) => message = next,
            InitiatorStep::Authenticated => return Ok(()),
        }
    }
}

/// The code of a BEEP `<error code='NNN'>` payload.
pub fn error_code(payload: &[u8]) -> u16 {
    let text = String::from_utf8_lossy(payload);
    let start = text
        .find("code='")
        .or_else(|| text.find("code=\""))
        .expect("an error code")
        + 6;
    text[start..start + 3].parse().expect("three digits")
}

impl Peer {
    /// Starts `profile_uri` on a session (already authenticated or not).
    pub async fn start(
        conn: ConnectionHandle,
        events: mpsc::Receiver<Event>,
        profile_uri: &str,
    ) -> Result<Peer, (u16, String)> {
        match conn
            .start_channel(vec![ProfileOffer::new(profile_uri)])
            .await
            .expect("start")
        {
            StartOutcome::Started { channel, .. } => Ok(Peer {
                conn,
                events,
                channel,
                next_id: 1,
                backlog: VecDeque::new(),
            }),
            StartOutcome::Refused { code, text, .. } => Err((code, text)),
        }
    }

    /// A session with one channel of `profile_uri`, authenticated as `auth` if given.
    pub async fn open(addr: SocketAddr, profile_uri: &str, auth: Option<(&str, &str)>) -> Peer {
        let (conn, mut events) = connect(addr).await;
        if let Some((user, password)) = auth {
            authenticate(&conn, &mut events, user, password)
                .await
                .expect("authentication");
        }
        Peer::start(conn, events, profile_uri)
            .await
            .expect("the channel starts")
    }

    pub async fn client(addr: SocketAddr) -> Peer {
        Peer::open(addr, profile::CLIENT, None).await
    }

    /// The next message from the wire, answered with an empty RPY; `None` once the
    /// session has ended.
    async fn try_read_message(&mut self) -> Option<Envelope> {
        loop {
            match tokio::time::timeout(PATIENCE, self.events.recv()).await {
                Ok(Some(Event::Message {
                    channel,
                    msgno,
                    payload,
                })) => {
                    self.conn
                        .send_rpy(channel, msgno, b"\r\n".to_vec())
                        .await
                        .ok()?;
                    return Some(Envelope::from_beep_payload(&payload).expect("an Xgrid envelope"));
                }
                Ok(Some(Event::Failed(_) | Event::SessionClosed { .. })) | Ok(None) => return None,
                Ok(Some(_)) => {}
                Err(_) => panic!("no message from the controller in time"),
            }
        }
    }

    async fn read_message(&mut self) -> Envelope {
        self.try_read_message()
            .await
            .expect("the session ended while a message was awaited")
    }

    /// The first message (from the backlog or the wire) that `wanted` accepts; others wait
    /// in the backlog.
    pub async fn expect(&mut self, wanted: impl Fn(&Envelope) -> bool) -> Envelope {
        if let Some(index) = self.backlog.iter().position(&wanted) {
            if let Some(envelope) = self.backlog.remove(index) {
                return envelope;
            }
        }
        loop {
            let envelope = self.read_message().await;
            if wanted(&envelope) {
                return envelope;
            }
            self.backlog.push_back(envelope);
        }
    }

    /// The next message, whatever it is; `None` once the session has ended.
    pub async fn next_message(&mut self) -> Option<Envelope> {
        match self.backlog.pop_front() {
            Some(envelope) => Some(envelope),
            None => self.try_read_message().await,
        }
    }

    /// Waits for a request or notification named `name`.
    pub async fn expect_named(&mut self, name: &str, kind: MessageType) -> Envelope {
        self.expect(|e| e.name == name && e.message_type == kind)
            .await
    }

    /// Messages that arrived while waiting for others and nobody has taken yet.
    pub fn unread(&self) -> &VecDeque<Envelope> {
        &self.backlog
    }

    pub async fn send(&mut self, envelope: Envelope) {
        self.conn
            .send_msg(self.channel, envelope.to_beep_payload())
            .await
            .expect("send");
    }

    /// Sends a request and waits for its reply's payload.
    pub async fn request(&mut self, name: &str, payload: Dictionary) -> Dictionary {
        let identifier = self.next_id.to_string();
        self.next_id += 1;
        self.send(Envelope::request(identifier.clone(), name, payload))
            .await;
        let reply = self
            .expect(|e| e.message_type == MessageType::Reply && e.identifier == identifier)
            .await;
        assert_eq!(reply.name, name, "a reply names its request");
        reply.payload
    }

    /// Answers the controller's request `to`.
    pub async fn reply(&mut self, to: &Envelope, reply: AgentReply) {
        self.send(reply.to_envelope(&to.identifier)).await;
    }

    /// Takes the next `taskSubmission`, answers it with `task_ref`, then takes and answers
    /// the start of that task. Returns the submission.
    pub async fn take_task(&mut self, task_ref: &str) -> Envelope {
        let submission = self
            .expect_named("taskSubmission", MessageType::Request)
            .await;
        self.reply(
            &submission,
            AgentReply::TaskSubmission {
                task_ref: task_ref.into(),
            },
        )
        .await;
        let start = self.expect_named("taskControl", MessageType::Request).await;
        assert_eq!(text(&start.payload, "taskRef"), task_ref);
        assert_eq!(text(&start.payload, "control"), "start");
        self.reply(&start, AgentReply::TaskControl).await;
        submission
    }

    pub async fn notify(&mut self, notification: AgentNotification) {
        self.send(notification.to_envelope()).await;
    }

    /// Registers as an agent with `slots` task slots and `megahertz` in all; returns the
    /// cookie, after reporting itself Available.
    pub async fn register(&mut self, name: &str, slots: i64, megahertz: f64) -> String {
        let cookie = self.register_with(name, "", slots, megahertz).await;
        assert!(!cookie.is_empty(), "registration gives a cookie");
        self.report_status(&cookie, name, &[]).await;
        cookie
    }

    /// Sends `agentRegistration` with `cookie`; returns the cookie given back, or `""` when
    /// refused.
    pub async fn register_with(
        &mut self,
        name: &str,
        cookie: &str,
        slots: i64,
        megahertz: f64,
    ) -> String {
        let registration = agent_registration(name, cookie, slots, megahertz);
        self.send_registration(registration)
            .await
            .unwrap_or_default()
    }

    /// Registers as a Linux agent announcing `capabilities` (`xgridLinuxCapabilities`);
    /// returns the cookie, after reporting itself Available.
    pub async fn register_announcing(
        &mut self,
        name: &str,
        slots: i64,
        capabilities: &[&str],
    ) -> String {
        let cookie = self
            .register_linux(name, "", (slots, 1000.0), capabilities, None)
            .await;
        self.report_status(&cookie, name, &[]).await;
        cookie
    }

    /// Registers as a Linux agent that can checkpoint (`xgridLinuxCapabilities`) with the
    /// CPU flags `features`; returns the cookie, after reporting itself Available.
    pub async fn register_checkpointing(
        &mut self,
        name: &str,
        slots: i64,
        megahertz: f64,
        features: &[&str],
    ) -> String {
        let cookie = self
            .register_linux(name, "", (slots, megahertz), &CHECKPOINTING, Some(features))
            .await;
        self.report_status(&cookie, name, &[]).await;
        cookie
    }

    /// Registers again, with `cookie`, as a checkpointing agent of one slot that comes back;
    /// returns the cookie given back, without reporting a status.
    pub async fn register_checkpointing_again(
        &mut self,
        cookie: &str,
        name: &str,
        megahertz: f64,
        features: &[&str],
    ) -> String {
        self.register_linux(name, cookie, (1, megahertz), &CHECKPOINTING, Some(features))
            .await
    }

    /// Registers as a Linux agent with `slots` of `megahertz` each; the cookie given back
    /// (a refusal fails the test).
    async fn register_linux(
        &mut self,
        name: &str,
        cookie: &str,
        (slots, megahertz): (i64, f64),
        capabilities: &[&str],
        features: Option<&[&str]>,
    ) -> String {
        let owned = |list: &[&str]| list.iter().map(|s| s.to_string()).collect();
        let registration = AgentRegistration {
            linux_capabilities: Some(owned(capabilities)),
            cpu_features: features.map(owned),
            ..agent_registration(name, cookie, slots, megahertz * slots as f64)
        };
        match self.send_registration(registration).await {
            Ok(cookie) => cookie,
            Err(reply) => panic!("registration refused: {reply:?}"),
        }
    }

    /// Sends `registration`; the cookie given back, or the reply that gave none.
    async fn send_registration(
        &mut self,
        registration: AgentRegistration,
    ) -> Result<String, Dictionary> {
        let reply = self
            .request("agentRegistration", registration.to_payload())
            .await;
        match reply.get("agentCookie") {
            Some(Value::String(cookie)) => Ok(cookie.clone()),
            _ => Err(reply),
        }
    }

    /// Reports itself Unavailable, with `xgridUnavailableReason` when given.
    pub async fn report_unavailable(
        &mut self,
        cookie: &str,
        name: &str,
        task_refs: &[&str],
        reason: Option<xgrid_protocol::messages::UnavailableReason>,
    ) {
        let status = AgentStatus {
            agent_cookie: cookie.to_string(),
            agent_name: name.to_string(),
            agent_status: xgrid_protocol::messages::AgentState::Unavailable,
            current_cpu_power: 0.0,
            current_task_count: task_refs.len() as i64,
            task_ref_array: task_refs.iter().map(|s| s.to_string()).collect(),
            unavailable_reason: reason,
            frozen_checkpoints: Default::default(),
        };
        self.notify(AgentNotification::AgentStatus(status)).await;
    }

    /// Reports itself Available with `task_refs`, of which `frozen` (checkpoint identifier,
    /// taskRef) are held frozen for a move.
    pub async fn report_frozen(
        &mut self,
        cookie: &str,
        name: &str,
        task_refs: &[&str],
        frozen: &[(&str, &str)],
    ) {
        let status = AgentStatus {
            agent_cookie: cookie.to_string(),
            agent_name: name.to_string(),
            agent_status: xgrid_protocol::messages::AgentState::Available,
            current_cpu_power: 0.0,
            current_task_count: task_refs.len() as i64,
            task_ref_array: task_refs.iter().map(|s| s.to_string()).collect(),
            unavailable_reason: None,
            frozen_checkpoints: frozen
                .iter()
                .map(|(id, task_ref)| (id.to_string(), task_ref.to_string()))
                .collect(),
        };
        self.notify(AgentNotification::AgentStatus(status)).await;
    }

    pub async fn report_status(&mut self, cookie: &str, name: &str, task_refs: &[&str]) {
        self.report_frozen(cookie, name, task_refs, &[]).await;
    }
}

/// What a Linux agent that can checkpoint announces.
const CHECKPOINTING: [&str; 2] = ["pid-namespace", "checkpoint"];

/// An Apple-style registration of agent `name` with `slots` task slots and `megahertz` in
/// all, presenting `cookie`.
fn agent_registration(name: &str, cookie: &str, slots: i64, megahertz: f64) -> AgentRegistration {
    AgentRegistration {
        agent_cookie: cookie.to_string(),
        agent_name: name.to_string(),
        hostnames: vec![format!("{name}.local")],
        addresses: vec!["127.0.0.1".into()],
        maximum_cpu_power: megahertz,
        maximum_task_count: slots,
        agent_custom: None,
        linux_capabilities: None,
        cpu_features: None,
    }
}

/// The string under `key`, or panics naming what was there.
pub fn text(dict: &Dictionary, key: &str) -> String {
    match dict.get(key) {
        Some(value) => value
            .to_string_lenient()
            .unwrap_or_else(|| panic!("{key} is not text: {value:?}")),
        None => panic!("no {key} in {dict:?}"),
    }
}

pub fn nested<'a>(dict: &'a Dictionary, key: &str) -> &'a Dictionary {
    dict.get(key)
        .and_then(Value::as_dictionary)
        .unwrap_or_else(|| panic!("no dictionary {key} in {dict:?}"))
}
