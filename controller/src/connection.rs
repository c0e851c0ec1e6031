//! One peer's BEEP session (xgrid-wire.md §2–§4): the greeting, channel starts with the
//! password rules, the two-way-random exchange, the empty RPY that answers every Xgrid MSG
//! at once, and the hand-off of each Xgrid message to its channel's client or agent service.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch, Notify};
use xgrid_protocol::auth::{self, ListenerStep};
use xgrid_protocol::beep::{Channel0Message, Config as BeepConfig, Event, ProfileOffer, Role};
use xgrid_protocol::driver::{self, ConnectionHandle};
use xgrid_protocol::envelope::{Envelope, MessageType};
use xgrid_protocol::profile;

use crate::agent_service::{self, AgentLink};
use crate::client_service;
use crate::shared::Shared;

/// Xgrid messages a channel may queue for its service before the session stops reading.
const INBOX: usize = 256;
/// A larger receive window than BEEP's 4096 octets lets task output, input files and
/// checkpoint streams (megabytes, while a task is frozen) flow without waiting for a SEQ
/// every few kilobytes.
const WINDOW: u32 = 2 * 1024 * 1024;
/// How long a shutting-down controller waits for a peer to accept the session close.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

/// The session settings of the controller's side.
pub fn beep_config() -> BeepConfig {
    BeepConfig {
        profiles: profile::CONTROLLER_GREETING
            .iter()
            .map(|uri| uri.to_string())
            .collect(),
        window: WINDOW,
        max_frame_size: WINDOW,
        ..BeepConfig::default()
    }
}

/// Whether a channel of a profile guarded by `password` may start for the session's
/// authenticated `user`; the refusal's BEEP code and text otherwise (§2).
pub fn admission(
    password: Option<&str>,
    user: Option<&str>,
    allowed_users: [&str; 2],
) -> Result<(), (u16, &'static str)> {
    match (password, user) {
        (None, _) => Ok(()),
        (Some(_), None) => Err((530, "Authentication required")),
        (Some(_), Some(user)) if allowed_users.contains(&user) => Ok(()),
        (Some(_), Some(_)) => Err((537, "Action not authorized for user")),
    }
}

enum Channel {
    Auth(auth::Listener),
    Client(mpsc::Sender<Envelope>),
    Agent {
        link: Arc<AgentLink>,
        inbox: mpsc::Sender<Envelope>,
    },
}

struct Session {
    shared: Arc<Shared>,
    conn: ConnectionHandle,
    peer: SocketAddr,
    /// Who the session authenticated as with two-way-random.
    user: Option<String>,
    /// Notified to drop the connection (an agent silent too long).
    hang_up: Arc<Notify>,
    channels: HashMap<u32, Channel>,
}

/// Serves one TCP connection until the peer leaves or the controller shuts down.
pub async fn serve(
    shared: Arc<Shared>,
    stream: TcpStream,
    peer: SocketAddr,
    mut shutdown: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let (conn, mut events) = driver::spawn(stream, Role::Listener, beep_config());
    let mut session = Session {
        shared,
        conn: conn.clone(),
        peer,
        user: None,
        hang_up: Arc::new(Notify::new()),
        channels: HashMap::new(),
    };
    let hang_up = Arc::clone(&session.hang_up);
    loop {
        let event = tokio::select! {
            event = events.recv() => match event {
                Some(event) => event,
                None => break,
            },
            _ = shutdown.changed() => {
                let _ = tokio::time::timeout(CLOSE_WAIT, conn.close()).await;
                break;
            }
            // No polite close: the peer is presumed dead.
            _ = hang_up.notified() => {
                session.shared.log(format!("dropping the connection of {peer}"));
                break;
            }
        };
        if !session.handle(event).await {
            break;
        }
    }
    // Dropping the channels' inboxes ends their services; an agent's counts as lost.
    session.channels.clear();
}

impl Session {
    /// Handles one event; false when the session is over.
    async fn handle(&mut self, event: Event) -> bool {
        match event {
            Event::StartRequested { channel, profiles } => self.start(channel, profiles).await,
            Event::Message {
                channel,
                msgno,
                payload,
            } => self.message(channel, msgno, payload).await,
            Event::ChannelClosed { channel, .. } => {
                self.channels.remove(&channel);
            }
            Event::StartRejected { channel, error } => {
                self.shared.log(format!(
                    "refused a channel {channel} from {}: {error}",
                    self.peer
                ));
            }
            Event::SessionClosed { .. } => return false,
            Event::Failed(error) => {
                self.shared
                    .log(format!("the session with {} ended: {error}", self.peer));
                return false;
            }
            // The peer's greeting, and its RPYs to our MSGs (empty by Xgrid's rules), need no
            // answer.
            _ => {}
        }
        true
    }

    async fn start(&mut self, channel: u32, profiles: Vec<ProfileOffer>) {
        // The session offers only profiles of our greeting; the peer's first choice wins.
        let Some(uri) = profiles.first().map(|p| p.uri.clone()) else {
            let _ = self
                .conn
                .refuse_start(channel, 550, "No profile offered")
                .await;
            return;
        };
        let config = &self.shared.config;
        let (password, users) = match uri.as_str() {
            profile::TWO_WAY_RANDOM => return self.start_auth(channel, &uri).await,
            profile::CLIENT => (
                config.client_password.as_deref(),
                [profile::CLIENT_USER, profile::LOCAL_CLIENT_USER],
            ),
            profile::AGENT => (
                config.agent_password.as_deref(),
                [profile::AGENT_USER, profile::LOCAL_AGENT_USER],
            ),
            _ => {
                let _ = self
                    .conn
                    .refuse_start(channel, 550, "Profile not served")
                    .await;
                return;
            }
        };
        if let Err((code, text)) = admission(password, self.user.as_deref(), users) {
            let _ = self.conn.refuse_start(channel, code, text).await;
            return;
        }
        if self.conn.accept_start(channel, &uri, None).await.is_err() {
            return;
        }
        let (inbox, rx) = mpsc::channel(INBOX);
        if uri == profile::CLIENT {
            tokio::spawn(client_service::run_client_channel(
                Arc::clone(&self.shared),
                self.conn.clone(),
                channel,
                rx,
            ));
            self.channels.insert(channel, Channel::Client(inbox));
        } else {
            let link = AgentLink::new(
                self.conn.clone(),
                channel,
                self.peer.to_string(),
                Arc::clone(&self.hang_up),
            );
            tokio::spawn(agent_service::run_agent_channel(
                Arc::clone(&self.shared),
                Arc::clone(&link),
                rx,
            ));
            self.channels
                .insert(channel, Channel::Agent { link, inbox });
        }
    }

    async fn start_auth(&mut self, channel: u32, uri: &str) {
        if self.user.is_some() {
            let _ = self
                .conn
                .refuse_start(channel, 550, "Authentication already completed")
                .await;
            return;
        }
        let client = self.shared.config.client_password.clone();
        let agent = self.shared.config.agent_password.clone();
        let passwords = move |user: &str| match user {
            profile::CLIENT_USER | profile::LOCAL_CLIENT_USER => client.clone(),
            profile::AGENT_USER | profile::LOCAL_AGENT_USER => agent.clone(),
            _ => None,
        };
        match auth::Listener::new(passwords) {
            Ok(listener) => {
                let challenge = listener.challenge();
                if self
                    .conn
                    .accept_start(channel, uri, Some(challenge))
                    .await
                    .is_ok()
                {
                    self.channels.insert(channel, Channel::Auth(listener));
                }
            }
            Err(e) => {
                let _ = self
                    .conn
                    .refuse_start(channel, e.reply_code(), e.reply_text())
                    .await;
            }
        }
    }

    async fn message(&mut self, channel: u32, msgno: u32, payload: Vec<u8>) {
        match self.channels.get_mut(&channel) {
            Some(Channel::Auth(listener)) => match listener.receive(&payload) {
                Ok(ListenerStep::Reply(reply)) => {
                    let _ = self.conn.send_rpy(channel, msgno, reply).await;
                }
                Ok(ListenerStep::Authenticated { user, reply }) => {
                    self.shared
                        .log(format!("{} authenticated as {user}", self.peer));
                    self.user = Some(user);
                    let _ = self.conn.send_rpy(channel, msgno, reply).await;
                }
                Err(e) => {
                    self.shared
                        .log(format!("authentication of {} failed: {e}", self.peer));
                    let error = Channel0Message::Error {
                        code: e.reply_code(),
                        text: e.reply_text().to_string(),
                    };
                    let _ = self.conn.send_err(channel, msgno, error.to_payload()).await;
                }
            },
            Some(Channel::Client(inbox)) => {
                let _ = self.conn.send_rpy(channel, msgno, b"\r\n".to_vec()).await;
                if let Some(envelope) = decode(&self.shared, self.peer, &payload) {
                    let _ = inbox.send(envelope).await;
                }
            }
            Some(Channel::Agent { link, inbox }) => {
                link.heard();
                let _ = self.conn.send_rpy(channel, msgno, b"\r\n".to_vec()).await;
                let Some(envelope) = decode(&self.shared, self.peer, &payload) else {
                    return;
                };
                if envelope.message_type == MessageType::Reply {
                    let identifier = envelope.identifier.clone();
                    if !link.deliver_reply(envelope) {
                        self.shared.log(format!(
                            "{} answered request {identifier:?}, which nobody awaits",
                            link.describe()
                        ));
                    }
                } else {
                    let _ = inbox.send(envelope).await;
                }
            }
            None => {
                let _ = self.conn.send_rpy(channel, msgno, b"\r\n".to_vec()).await;
            }
        }
    }
}

fn decode(shared: &Shared, peer: SocketAddr, payload: &[u8]) -> Option<Envelope> {
    match Envelope::from_beep_payload(payload) {
        Ok(envelope) => Some(envelope),
        Err(e) => {
            shared.log(format!(
                "{peer} sent a message that is not an Xgrid envelope: {e}"
            ));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLIENTS: [&str; 2] = [profile::CLIENT_USER, profile::LOCAL_CLIENT_USER];

    #[test]
    fn profiles_without_a_password_are_open_to_anyone() {
        assert_eq!(admission(None, None, CLIENTS), Ok(()));
        assert_eq!(admission(None, Some(profile::AGENT_USER), CLIENTS), Ok(()));
    }

    #[test]
    fn a_password_needs_the_profile_s_own_user() {
        assert_eq!(
            admission(Some("pw"), None, CLIENTS),
            Err((530, "Authentication required"))
        );
        assert_eq!(
            admission(Some("pw"), Some(profile::CLIENT_USER), CLIENTS),
            Ok(())
        );
        assert_eq!(
            admission(Some("pw"), Some(profile::LOCAL_CLIENT_USER), CLIENTS),
            Ok(())
        );
        assert_eq!(
            admission(Some("pw"), Some(profile::AGENT_USER), CLIENTS).map_err(|e| e.0),
            Err(537)
        );
    }
}
