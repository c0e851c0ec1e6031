//! An Xgrid connection from the initiator's side, shared by the `xgrid` client and the agent:
//! connect to a controller, run the opening sequence of xgrid-wire.md §2 (greeting, profile
//! start, two-way-random when the controller answers 530, the `controllerList` check), then
//! exchange Xgrid messages.
//!
//! Xgrid answers every MSG at once with an empty RPY and carries its own replies as separate
//! MSGs in the other direction (§4). [`Peer::request`] hides that: it numbers requests with a
//! per-connection decimal counter (a known Java agent parses identifiers as integers) and
//! hands back the reply MSG whose identifier matches, in whatever order replies arrive.
//! Requests and notifications from the controller arrive on the [`Incoming`] receiver.

mod router;
#[cfg(test)]
mod tests;

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};

use crate::auth::{AuthError, Initiator, InitiatorStep};
use crate::beep::{channel0, Channel0Message, Config, Event, ProfileOffer, Role};
use crate::driver::{self, ConnectionHandle, DriverError, StartOutcome};
use crate::envelope::Envelope;
use crate::messages::{ControllerReply, MASTER_ROLE};
use crate::plist::Dictionary;
use crate::profile;

use router::{Op, Router};

/// Xgrid's TCP port (xgrid-wire.md §1).
pub const DEFAULT_PORT: u16 = 4111;

/// How long [`connect`] waits for the TCP connection and the whole opening sequence.
pub const OPENING_TIMEOUT: Duration = Duration::from_secs(30);

/// Requests and notifications the controller sends; replies never appear here. The receiver
/// is unbounded so that a reply is never stuck behind notifications the application has not
/// read yet; it ends when the connection does.
pub type Incoming = mpsc::UnboundedReceiver<Envelope>;

/// Which Xgrid profile the connection is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerRole {
    /// A client (`…/controller/client`), authenticating as `one-xgrid-client`.
    Client,
    /// An agent (`…/controller/agent`), authenticating as `one-xgrid-agent`.
    Agent,
}

impl PeerRole {
    pub fn profile(self) -> &'static str {
        match self {
            PeerRole::Client => profile::CLIENT,
            PeerRole::Agent => profile::AGENT,
        }
    }

    /// The fixed two-way-random user name of this role.
    pub fn user(self) -> &'static str {
        match self {
            PeerRole::Client => profile::CLIENT_USER,
            PeerRole::Agent => profile::AGENT_USER,
        }
    }

    fn noun(self) -> &'static str {
        match self {
            PeerRole::Client => "client",
            PeerRole::Agent => "agent",
        }
    }
}

/// A controller's address: `host`, `host:port`, `[v6]:port` or a bare IPv6 address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    pub host: String,
    pub port: u16,
}

impl Address {
    /// Read `host[:port]`; the port defaults to [`DEFAULT_PORT`].
    pub fn parse(text: &str) -> Result<Address, PeerError> {
        let bad = |reason: &str| PeerError::BadAddress {
            text: text.to_string(),
            reason: reason.to_string(),
        };
        let text = text.trim();
        let (host, port) = if let Some(rest) = text.strip_prefix('[') {
            let (host, after) = rest
                .split_once(']')
                .ok_or_else(|| bad("an IPv6 address opened with `[` needs a closing `]`"))?;
            match after {
                "" => (host, None),
                _ => match after.strip_prefix(':') {
                    Some(port) => (host, Some(port)),
                    None => return Err(bad("expected `:port` after `]`")),
                },
            }
        } else if text.matches(':').count() > 1 {
            // Several colons without brackets: a bare IPv6 address, no port.
            (text, None)
        } else {
            match text.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (text, None),
            }
        };
        if host.is_empty() {
            return Err(bad("the host name is empty"));
        }
        let port = match port {
            None => DEFAULT_PORT,
            Some(p) => match p.parse::<u16>() {
                Ok(port) if port > 0 => port,
                _ => return Err(bad("the port must be a number from 1 to 65535")),
            },
        };
        Ok(Address {
            host: host.to_string(),
            port,
        })
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// How to open the connection.
#[derive(Clone)]
pub struct PeerOptions {
    pub role: PeerRole,
    /// Used only if the controller asks for authentication (ERR 530 on the profile start).
    pub password: Option<String>,
}

impl fmt::Debug for PeerOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PeerOptions")
            .field("role", &self.role)
            .field("password", &self.password.as_ref().map(|_| "…"))
            .finish()
    }
}

/// Why a connection could not be opened or a message could not be exchanged.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PeerError {
    #[error("{text:?} is not a valid controller address: {reason}")]
    BadAddress { text: String, reason: String },
    #[error("cannot connect to {address}: {reason}")]
    Connect { address: String, reason: String },
    #[error("{address} did not complete the Xgrid opening sequence within {seconds} s")]
    OpeningTimedOut { address: String, seconds: u64 },
    #[error("the controller refused the session: {code} {text}")]
    SessionRefused { code: u16, text: String },
    #[error(
        "the peer does not offer the Xgrid {role} profile (it offers: {offered}); is it an Xgrid controller?"
    )]
    ProfileNotOffered { role: &'static str, offered: String },
    #[error("the controller requires a password")]
    PasswordRequired,
    #[error("the controller requires authentication but does not offer password authentication (it may require Kerberos, which is not supported)")]
    PasswordAuthNotOffered,
    #[error("wrong password (535): the controller did not accept it")]
    WrongPassword,
    #[error("the controller refused password authentication: {detail}")]
    AuthRefused { detail: String },
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error("the controller refused the Xgrid {role} profile: {code} {text}")]
    ProfileRefused {
        role: &'static str,
        code: u16,
        text: String,
    },
    #[error("the controller is not the master controller (it says its role is {role:?}); connect to the master instead")]
    NotMaster { role: String },
    #[error(
        "the controller answered `{request}` with something this program cannot read: {reason}"
    )]
    BadReply { request: String, reason: String },
    #[error("the controller refused the `{request}` message: {code} {text}")]
    MessageRefused {
        request: String,
        code: u16,
        text: String,
    },
    #[error("the controller broke the BEEP protocol: {reason}")]
    Protocol { reason: String },
    #[error("the connection to the controller was lost: {reason}")]
    ConnectionLost { reason: String },
    #[error("the connection to the controller is closed")]
    Closed,
}

impl PeerError {
    fn lost(reason: impl fmt::Display) -> PeerError {
        PeerError::ConnectionLost {
            reason: reason.to_string(),
        }
    }
}

impl From<DriverError> for PeerError {
    fn from(e: DriverError) -> PeerError {
        match e {
            DriverError::Closed => PeerError::lost("the connection ended"),
            DriverError::Beep(e) => PeerError::lost(e),
        }
    }
}

/// An open Xgrid connection. Cheap to clone; the connection ends when [`Peer::close`] is
/// called, when the controller ends it, or when every clone has been dropped.
#[derive(Clone)]
pub struct Peer {
    ops: mpsc::Sender<Op>,
    ended: Arc<Mutex<Option<PeerError>>>,
    authenticated: bool,
}

impl fmt::Debug for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Peer")
            .field("authenticated", &self.authenticated)
            .field("open", &!self.ops.is_closed())
            .finish()
    }
}

/// Connect over TCP to `address` and open the connection (see [`open`]), all within
/// [`OPENING_TIMEOUT`].
pub async fn connect(
    address: &Address,
    options: PeerOptions,
) -> Result<(Peer, Incoming), PeerError> {
    let opening = async {
        let stream = TcpStream::connect((address.host.as_str(), address.port))
            .await
            .map_err(|e| PeerError::Connect {
                address: address.to_string(),
                reason: e.to_string(),
            })?;
        // Xgrid messages are small request/reply exchanges: do not let Nagle delay them.
        let _ = stream.set_nodelay(true);
        open(stream, options).await
    };
    tokio::time::timeout(OPENING_TIMEOUT, opening)
        .await
        .unwrap_or_else(|_| {
            Err(PeerError::OpeningTimedOut {
                address: address.to_string(),
                seconds: OPENING_TIMEOUT.as_secs(),
            })
        })
}

/// The receive window a client or agent grants the controller. BEEP's default 4096 octets
/// costs a SEQ round trip every 4 KiB: a task's results, and above all a checkpoint stream
/// an agent receives (megabytes, while the task is frozen), would crawl.
const RECEIVE_WINDOW: u32 = 2 * 1024 * 1024;

/// Run the opening sequence over an established byte stream: wait for the greeting, start
/// the role's profile (authenticating first if the controller answers 530 and a password is
/// given), then check with `controllerList` that the controller is the master.
pub async fn open<S>(stream: S, options: PeerOptions) -> Result<(Peer, Incoming), PeerError>
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let config = Config {
        window: RECEIVE_WINDOW,
        max_frame_size: RECEIVE_WINDOW,
        ..Config::default()
    };
    let (handle, mut events) = driver::spawn(stream, Role::Initiator, config);
    let offered = match next_event(&mut events).await? {
        Event::Greeting { profiles } => profiles,
        other => {
            return Err(PeerError::Protocol {
                reason: format!("expected a greeting, got {other:?}"),
            })
        }
    };
    let role = options.role;
    if !offered.iter().any(|p| p == role.profile()) {
        return Err(PeerError::ProfileNotOffered {
            role: role.noun(),
            offered: if offered.is_empty() {
                "nothing".to_string()
            } else {
                offered.join(", ")
            },
        });
    }

    let mut authenticated = false;
    let channel = match start_profile(&handle, role).await? {
        Ok(channel) => channel,
        Err((530, _)) => {
            let password = options
                .password
                .as_deref()
                .ok_or(PeerError::PasswordRequired)?;
            if !offered.iter().any(|p| p == profile::TWO_WAY_RANDOM) {
                return Err(PeerError::PasswordAuthNotOffered);
            }
            authenticate(&handle, &mut events, role, password).await?;
            authenticated = true;
            match start_profile(&handle, role).await? {
                Ok(channel) => channel,
                Err((code, text)) => {
                    return Err(PeerError::ProfileRefused {
                        role: role.noun(),
                        code,
                        text,
                    })
                }
            }
        }
        Err((code, text)) => {
            return Err(PeerError::ProfileRefused {
                role: role.noun(),
                code,
                text,
            })
        }
    };

    let (peer, incoming) = Router::spawn(handle, events, channel, authenticated);
    let reply = peer.request("controllerList", Dictionary::new()).await?;
    match ControllerReply::from_envelope(&reply) {
        Ok(ControllerReply::ControllerList(list))
            if list.controller_role.eq_ignore_ascii_case(MASTER_ROLE) => {}
        Ok(ControllerReply::ControllerList(list)) => {
            return Err(PeerError::NotMaster {
                role: list.controller_role,
            })
        }
        Ok(other) => {
            return Err(PeerError::BadReply {
                request: "controllerList".into(),
                reason: format!("expected the controller list, got {other:?}"),
            })
        }
        Err(e) => {
            return Err(PeerError::BadReply {
                request: "controllerList".into(),
                reason: e.to_string(),
            })
        }
    }
    Ok((peer, incoming))
}

/// Start the role's profile: `Ok(Ok(channel))`, or the refusal's code and text.
async fn start_profile(
    handle: &ConnectionHandle,
    role: PeerRole,
) -> Result<Result<u32, (u16, String)>, PeerError> {
    match handle
        .start_channel(vec![ProfileOffer::new(role.profile())])
        .await?
    {
        StartOutcome::Started { channel, .. } => Ok(Ok(channel)),
        StartOutcome::Refused { code, text, .. } => Ok(Err((code, text))),
    }
}

/// The two-way-random exchange (xgrid-wire.md §3) on a channel of its own. The channel is
/// left open afterwards: authentication belongs to the session, and closing the channel
/// would only cost a round trip.
async fn authenticate(
    handle: &ConnectionHandle,
    events: &mut mpsc::Receiver<Event>,
    role: PeerRole,
    password: &str,
) -> Result<(), PeerError> {
    let mut initiator = Initiator::new(role.user(), password)?;
    let outcome = handle
        .start_channel(vec![ProfileOffer::with_piggyback(
            profile::TWO_WAY_RANDOM,
            "",
        )])
        .await?;
    let (channel, challenge) = match outcome {
        StartOutcome::Started {
            channel, piggyback, ..
        } => (channel, piggyback.unwrap_or_default()),
        StartOutcome::Refused { code, text, .. } => {
            return Err(PeerError::AuthRefused {
                detail: format!("{code} {text}"),
            })
        }
    };
    let mut message = initiator.answer_challenge(&challenge)?;
    loop {
        let msgno = handle.send_msg(channel, message).await?;
        let reply = loop {
            match next_event(events).await? {
                Event::Reply {
                    channel: c,
                    msgno: m,
                    payload,
                } if c == channel && m == msgno => break payload,
                Event::ErrorReply {
                    channel: c,
                    msgno: m,
                    payload,
                } if c == channel && m == msgno => return Err(auth_refusal(&payload)),
                // Nothing else is expected during the exchange; what comes is not ours.
                _ => {}
            }
        };
        match initiator.receive_reply(&reply)? {
            InitiatorStep::Send(next) => message = next,
            InitiatorStep::Authenticated => return Ok(()),
        }
    }
}

/// The error for an ERR on the authentication channel; 535 is the wrong-password answer.
fn auth_refusal(payload: &[u8]) -> PeerError {
    match channel0::parse(payload) {
        Ok(Channel0Message::Error { code: 535, .. }) => PeerError::WrongPassword,
        Ok(Channel0Message::Error { code, text }) => PeerError::AuthRefused {
            detail: format!("{code} {text}"),
        },
        _ => PeerError::AuthRefused {
            detail: String::from_utf8_lossy(crate::mime::entity_body(payload))
                .trim()
                .to_string(),
        },
    }
}

/// The next event of the opening sequence; the end of the session is an error here.
async fn next_event(events: &mut mpsc::Receiver<Event>) -> Result<Event, PeerError> {
    match events.recv().await {
        Some(Event::Failed(crate::beep::BeepError::GreetingRefused { code, text })) => {
            Err(PeerError::SessionRefused { code, text })
        }
        Some(Event::Failed(e)) => Err(PeerError::lost(e)),
        Some(Event::SessionClosed { .. }) | None => {
            Err(PeerError::lost("the controller closed the session"))
        }
        Some(event) => Ok(event),
    }
}

impl Peer {
    /// Whether the opening included a password exchange.
    pub fn authenticated(&self) -> bool {
        self.authenticated
    }

    /// Send the request `name` and wait for its reply (an error reply `{error = CODE}` is
    /// still a reply: the caller reads the payload).
    pub async fn request(&self, name: &str, payload: Dictionary) -> Result<Envelope, PeerError> {
        let name = name.to_string();
        self.call(|reply| Op::Request {
            name,
            payload,
            reply,
        })
        .await
    }

    /// Answer a request the controller sent: a reply with its identifier and name.
    pub async fn reply(&self, request: &Envelope, payload: Dictionary) -> Result<(), PeerError> {
        self.send(Envelope::reply(
            request.identifier.as_str(),
            request.name.as_str(),
            payload,
        ))
        .await
    }

    /// Send a notification about the resource `identifier` (`""` for none).
    pub async fn notify(
        &self,
        identifier: &str,
        name: &str,
        payload: Dictionary,
    ) -> Result<(), PeerError> {
        self.send(Envelope::notification(identifier, name, payload))
            .await
    }

    /// Send a message that expects no Xgrid reply (a reply or a notification) as it is.
    pub async fn send(&self, envelope: Envelope) -> Result<(), PeerError> {
        self.call(|done| Op::Send { envelope, done }).await
    }

    /// Close the session and wait for the controller's answer; pending requests then fail
    /// with [`PeerError::Closed`] and the [`Incoming`] receiver ends.
    pub async fn close(&self) -> Result<(), PeerError> {
        self.call(|done| Op::Close { done }).await
    }

    async fn call<T>(
        &self,
        op: impl FnOnce(oneshot::Sender<Result<T, PeerError>>) -> Op,
    ) -> Result<T, PeerError> {
        let (tx, rx) = oneshot::channel();
        if self.ops.send(op(tx)).await.is_err() {
            return Err(self.end_reason());
        }
        rx.await.unwrap_or_else(|_| Err(self.end_reason()))
    }

    fn end_reason(&self) -> PeerError {
        self.ended
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
            .unwrap_or(PeerError::Closed)
    }
}
