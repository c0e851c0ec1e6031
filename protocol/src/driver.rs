//! Runs a [`beep::Session`](crate::beep::Session) over a byte stream (a TCP connection, or a
//! `tokio::io::duplex` pipe in tests): one task reads the socket into the session, hands the
//! session's events to the application and its commands to the session, and a second task
//! writes what the session sends. The application holds a cloneable [`ConnectionHandle`]
//! and a receiver of [`Event`]s.
//!
//! Flow control reaches the application: a message's octets are granted back to the peer
//! when the driver moves its event into the event channel, so a slow reader of events slows
//! the peer down (the channel holds [`EVENT_QUEUE`] events).

use std::collections::HashMap;
use std::fmt;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

use crate::beep::{BeepError, Config, Event, ProfileOffer, Role, Session};

/// How many events may wait for the application before the driver stops taking more.
pub const EVENT_QUEUE: usize = 64;

/// Why a command through a [`ConnectionHandle`] failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DriverError {
    /// The session refused the command, or ended while it was pending.
    #[error(transparent)]
    Beep(#[from] BeepError),
    /// The connection's task has finished; nothing more can be sent.
    #[error("the connection is closed")]
    Closed,
}

/// The answer to [`ConnectionHandle::start_channel`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartOutcome {
    Started {
        channel: u32,
        profile: String,
        piggyback: Option<String>,
    },
    Refused {
        channel: u32,
        code: u16,
        text: String,
    },
}

/// The answer to [`ConnectionHandle::close_channel`] and [`ConnectionHandle::close`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseOutcome {
    Closed,
    Refused { code: u16, text: String },
}

type Reply<T> = oneshot::Sender<Result<T, DriverError>>;

// Commands waiting for an answer from the peer, by channel (0: the session close).
#[derive(Default)]
struct Waiters {
    starts: HashMap<u32, Reply<StartOutcome>>,
    closes: HashMap<u32, Reply<CloseOutcome>>,
}

impl Waiters {
    // Whether `event` answers a command that is waiting.
    fn wants(&self, event: &Event) -> bool {
        match event {
            Event::ChannelStarted { channel, .. } | Event::StartRefused { channel, .. } => {
                self.starts.contains_key(channel)
            }
            Event::ChannelClosed {
                channel,
                by_peer: false,
            }
            | Event::CloseRefused { channel, .. } => self.closes.contains_key(channel),
            _ => false,
        }
    }

    fn answer(&mut self, event: Event) {
        match event {
            Event::ChannelStarted {
                channel,
                profile,
                piggyback,
            } => {
                if let Some(tx) = self.starts.remove(&channel) {
                    let _ = tx.send(Ok(StartOutcome::Started {
                        channel,
                        profile,
                        piggyback,
                    }));
                }
            }
            Event::StartRefused {
                channel,
                code,
                text,
            } => {
                if let Some(tx) = self.starts.remove(&channel) {
                    let _ = tx.send(Ok(StartOutcome::Refused {
                        channel,
                        code,
                        text,
                    }));
                }
            }
            Event::ChannelClosed { channel, .. } => {
                if let Some(tx) = self.closes.remove(&channel) {
                    let _ = tx.send(Ok(CloseOutcome::Closed));
                }
            }
            Event::CloseRefused {
                channel,
                code,
                text,
            } => {
                if let Some(tx) = self.closes.remove(&channel) {
                    let _ = tx.send(Ok(CloseOutcome::Refused { code, text }));
                }
            }
            _ => {}
        }
    }

    // The session has ended: a waiting session close succeeded if it ended in order;
    // everything else fails.
    fn finish(&mut self, session: &Session) {
        let error = match session.failure() {
            Some(e) => DriverError::Beep(e.clone()),
            None => DriverError::Closed,
        };
        if let Some(tx) = self.closes.remove(&0) {
            let outcome = match session.failure() {
                Some(_) => Err(error.clone()),
                None => Ok(CloseOutcome::Closed),
            };
            let _ = tx.send(outcome);
        }
        for (_, tx) in self.starts.drain() {
            let _ = tx.send(Err(error.clone()));
        }
        for (_, tx) in self.closes.drain() {
            let _ = tx.send(Err(error.clone()));
        }
    }
}

// A command runs inside the driver task with the session and the waiters at hand.
type Command = Box<dyn FnOnce(&mut Session, &mut Waiters) + Send>;

/// Sends commands to a connection's driver task. Cheap to clone; every method waits only
/// for the driver to take the command, except `start_channel` and the closes, which wait
/// for the peer's answer. Those answers come back as return values only: the matching
/// `ChannelStarted`, `StartRefused`, `ChannelClosed { by_peer: false }` and `CloseRefused`
/// events are not also put in the event channel (`SessionClosed` always is).
#[derive(Clone)]
pub struct ConnectionHandle {
    commands: mpsc::Sender<Command>,
}

impl fmt::Debug for ConnectionHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionHandle")
            .field("closed", &self.commands.is_closed())
            .finish()
    }
}

impl ConnectionHandle {
    async fn call<T: Send + 'static>(
        &self,
        command: impl FnOnce(&mut Session, &mut Waiters, Reply<T>) + Send + 'static,
    ) -> Result<T, DriverError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Box::new(move |session, waiters| {
                command(session, waiters, tx)
            }))
            .await
            .map_err(|_| DriverError::Closed)?;
        rx.await.map_err(|_| DriverError::Closed)?
    }

    /// Start a channel with one of `profiles` and wait for the peer's answer.
    pub async fn start_channel(
        &self,
        profiles: Vec<ProfileOffer>,
    ) -> Result<StartOutcome, DriverError> {
        self.call(
            move |session, waiters, tx| match session.start_channel(profiles) {
                Ok(channel) => {
                    waiters.starts.insert(channel, tx);
                }
                Err(e) => {
                    let _ = tx.send(Err(e.into()));
                }
            },
        )
        .await
    }

    /// Accept the peer's start of `channel` (from [`Event::StartRequested`]).
    pub async fn accept_start(
        &self,
        channel: u32,
        profile: &str,
        piggyback: Option<String>,
    ) -> Result<(), DriverError> {
        let profile = profile.to_string();
        self.call(move |s, _, tx| {
            let _ = tx.send(
                s.accept_start(channel, &profile, piggyback)
                    .map_err(Into::into),
            );
        })
        .await
    }

    /// Refuse the peer's start of `channel` with a BEEP reply code, e.g. 530.
    pub async fn refuse_start(
        &self,
        channel: u32,
        code: u16,
        text: &str,
    ) -> Result<(), DriverError> {
        let text = text.to_string();
        self.call(move |s, _, tx| {
            let _ = tx.send(s.refuse_start(channel, code, &text).map_err(Into::into));
        })
        .await
    }

    /// Send a MSG; returns its msgno. Replies arrive as events.
    pub async fn send_msg(&self, channel: u32, payload: Vec<u8>) -> Result<u32, DriverError> {
        self.call(move |s, _, tx| {
            let _ = tx.send(s.send_msg(channel, payload).map_err(Into::into));
        })
        .await
    }

    /// Answer the peer's MSG with a RPY.
    pub async fn send_rpy(
        &self,
        channel: u32,
        msgno: u32,
        payload: Vec<u8>,
    ) -> Result<(), DriverError> {
        self.call(move |s, _, tx| {
            let _ = tx.send(s.send_rpy(channel, msgno, payload).map_err(Into::into));
        })
        .await
    }

    /// Answer the peer's MSG with an ERR.
    pub async fn send_err(
        &self,
        channel: u32,
        msgno: u32,
        payload: Vec<u8>,
    ) -> Result<(), DriverError> {
        self.call(move |s, _, tx| {
            let _ = tx.send(s.send_err(channel, msgno, payload).map_err(Into::into));
        })
        .await
    }

    /// Send one ANS to the peer's MSG; returns its ansno.
    pub async fn send_ans(
        &self,
        channel: u32,
        msgno: u32,
        payload: Vec<u8>,
    ) -> Result<u32, DriverError> {
        self.call(move |s, _, tx| {
            let _ = tx.send(s.send_ans(channel, msgno, payload).map_err(Into::into));
        })
        .await
    }

    /// End the ANS series to the peer's MSG.
    pub async fn send_nul(&self, channel: u32, msgno: u32) -> Result<(), DriverError> {
        self.call(move |s, _, tx| {
            let _ = tx.send(s.send_nul(channel, msgno).map_err(Into::into));
        })
        .await
    }

    /// Close `channel` and wait for the peer's answer.
    pub async fn close_channel(&self, channel: u32) -> Result<CloseOutcome, DriverError> {
        self.call(
            move |session, waiters, tx| match session.close_channel(channel) {
                Ok(()) => {
                    waiters.closes.insert(channel, tx);
                }
                Err(e) => {
                    let _ = tx.send(Err(e.into()));
                }
            },
        )
        .await
    }

    /// Close the session and wait for the peer's answer; on `Closed` the connection ends.
    pub async fn close(&self) -> Result<CloseOutcome, DriverError> {
        self.call(move |session, waiters, tx| match session.close_session() {
            Ok(()) => {
                waiters.closes.insert(0, tx);
            }
            Err(e) => {
                let _ = tx.send(Err(e.into()));
            }
        })
        .await
    }

    /// True once the driver task has finished.
    pub fn is_closed(&self) -> bool {
        self.commands.is_closed()
    }
}

/// Run a new session over `stream` in a spawned task (call from within a tokio runtime).
/// The session greets at once. The task ends after an orderly close, when the peer closes
/// the connection, on a violation or transport error (delivered as [`Event::Failed`]), or
/// when both the handle and the event receiver have been dropped.
pub fn spawn<S>(stream: S, role: Role, config: Config) -> (ConnectionHandle, mpsc::Receiver<Event>)
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (command_tx, command_rx) = mpsc::channel(16);
    let (event_tx, event_rx) = mpsc::channel(EVENT_QUEUE);
    tokio::spawn(drive(
        stream,
        Session::new(role, config),
        command_rx,
        event_tx,
    ));
    (
        ConnectionHandle {
            commands: command_tx,
        },
        event_rx,
    )
}

async fn drive<S>(
    stream: S,
    mut session: Session,
    mut commands: mpsc::Receiver<Command>,
    events: mpsc::Sender<Event>,
) where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (mut reader, writer) = tokio::io::split(stream);
    // Writing in its own task keeps reading going while a slow peer drains our output; what
    // is queued there is bounded by the peer's windows.
    let (write_tx, write_rx) = mpsc::unbounded_channel::<Vec<u8>>();
    let (write_err_tx, mut write_err) = oneshot::channel::<std::io::Error>();
    let write_task = tokio::spawn(write_loop(writer, write_rx, write_err_tx));
    let mut waiters = Waiters::default();
    let mut buf = vec![0u8; 64 * 1024];
    let mut commands_open = true;
    let mut writer_alive = true;
    loop {
        // Answers to waiting commands leave the queue at once, ahead of events the
        // application has not taken yet; with nobody taking events, they are dropped.
        while let Some(event) = session.poll_event_where(|e| waiters.wants(e) || events.is_closed())
        {
            waiters.answer(event);
        }
        if session.is_closed() {
            waiters.finish(&session);
        }
        let mut out = Vec::new();
        session.poll_transmit(&mut out);
        if !out.is_empty() && write_tx.send(out).is_err() {
            session.handle_transport_error("the writer stopped");
        }
        if session.is_closed() && !session.has_events() {
            break;
        }
        if !commands_open && events.is_closed() {
            break;
        }
        tokio::select! {
            err = &mut write_err, if writer_alive => {
                writer_alive = false;
                let message = err.map(|e| e.to_string()).unwrap_or_else(|_| "the writer stopped".into());
                session.handle_transport_error(message);
            }
            permit = events.reserve(), if session.has_events() => {
                if let (Ok(permit), Some(event)) = (permit, session.poll_event()) {
                    permit.send(event);
                }
            }
            command = commands.recv(), if commands_open => match command {
                Some(command) => command(&mut session, &mut waiters),
                None => commands_open = false,
            },
            read = reader.read(&mut buf), if !session.is_closed() => match read {
                Ok(0) => session.handle_eof(),
                Ok(n) => session.handle_input(buf.get(..n).unwrap_or_default()),
                Err(e) => session.handle_transport_error(e.to_string()),
            },
        }
    }
    waiters.finish(&session);
    drop(write_tx);
    let _ = write_task.await;
}

async fn write_loop<W: AsyncWrite + Unpin>(
    mut writer: W,
    mut chunks: mpsc::UnboundedReceiver<Vec<u8>>,
    failed: oneshot::Sender<std::io::Error>,
) {
    while let Some(chunk) = chunks.recv().await {
        let written = async {
            writer.write_all(&chunk).await?;
            writer.flush().await
        };
        if let Err(e) = written.await {
            let _ = failed.send(e);
            return;
        }
    }
    let _ = writer.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile;
    use tokio::net::{TcpListener, TcpStream};

    fn controller_config() -> Config {
        Config {
            profiles: profile::CONTROLLER_GREETING
                .iter()
                .map(|s| s.to_string())
                .collect(),
            ..Config::default()
        }
    }

    async fn next(events: &mut mpsc::Receiver<Event>) -> Event {
        match tokio::time::timeout(std::time::Duration::from_secs(10), events.recv()).await {
            Ok(Some(e)) => e,
            other => panic!("no event: {other:?}"),
        }
    }

    #[tokio::test]
    async fn client_and_controller_over_real_tcp() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");

        // The controller side: refuse the client profile until the auth channel was used,
        // echo every message, answer a big one.
        let server = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.expect("accept");
            let (handle, mut events) = spawn(stream, Role::Listener, controller_config());
            let mut authenticated = false;
            let mut seen = Vec::new();
            loop {
                let event = next(&mut events).await;
                seen.push(event.clone());
                match event {
                    Event::StartRequested { channel, profiles } => {
                        let uri = profiles[0].uri.clone();
                        if uri == profile::CLIENT && !authenticated {
                            handle
                                .refuse_start(channel, 530, "Authentication required")
                                .await
                                .expect("refuse");
                        } else if uri == profile::TWO_WAY_RANDOM {
                            authenticated = true;
                            handle
                                .accept_start(channel, &uri, Some("<blob>Rs</blob>".into()))
                                .await
                                .expect("accept");
                        } else {
                            handle
                                .accept_start(channel, &uri, None)
                                .await
                                .expect("accept");
                        }
                    }
                    Event::Message {
                        channel,
                        msgno,
                        payload,
                    } => {
                        handle.send_rpy(channel, msgno, payload).await.expect("rpy");
                    }
                    Event::SessionClosed { .. } | Event::Failed(_) => break,
                    _ => {}
                }
            }
            seen
        });

        let stream = TcpStream::connect(addr).await.expect("connect");
        let (client, mut events) = spawn(stream, Role::Initiator, Config::default());
        assert_eq!(
            next(&mut events).await,
            Event::Greeting {
                profiles: controller_config().profiles
            }
        );
        let refused = client
            .start_channel(vec![ProfileOffer::new(profile::CLIENT)])
            .await
            .expect("start");
        assert_eq!(
            refused,
            StartOutcome::Refused {
                channel: 1,
                code: 530,
                text: "Authentication required".into()
            }
        );
        let auth = client
            .start_channel(vec![ProfileOffer::with_piggyback(
                profile::TWO_WAY_RANDOM,
                "",
            )])
            .await;
        assert_eq!(
            auth,
            Ok(StartOutcome::Started {
                channel: 3,
                profile: profile::TWO_WAY_RANDOM.into(),
                piggyback: Some("<blob>Rs</blob>".into())
            })
        );
        let started = client
            .start_channel(vec![ProfileOffer::new(profile::CLIENT)])
            .await
            .expect("start");
        let StartOutcome::Started { channel, .. } = started else {
            panic!("{started:?}")
        };
        assert_eq!(channel, 5);

        let big: Vec<u8> = (0..100_000u32).map(|i| (i * 7) as u8).collect();
        for payload in [crate::mime::bare_entity(b"<plist/>"), big] {
            let msgno = client
                .send_msg(channel, payload.clone())
                .await
                .expect("msg");
            assert_eq!(
                next(&mut events).await,
                Event::Reply {
                    channel,
                    msgno,
                    payload
                }
            );
        }
        assert_eq!(client.close_channel(3).await, Ok(CloseOutcome::Closed));
        assert_eq!(client.close().await, Ok(CloseOutcome::Closed));
        assert_eq!(
            next(&mut events).await,
            Event::SessionClosed { by_peer: false }
        );
        assert_eq!(events.recv().await, None, "the driver ends after the close");
        assert_eq!(
            client.send_msg(channel, vec![]).await,
            Err(DriverError::Closed)
        );

        let seen = server.await.expect("server task");
        assert_eq!(seen.last(), Some(&Event::SessionClosed { by_peer: true }));
        assert!(seen.contains(&Event::ChannelClosed {
            channel: 3,
            by_peer: true
        }));
    }

    #[tokio::test]
    async fn answers_reach_a_command_while_events_pile_up_unread() {
        let (a, b) = tokio::io::duplex(1 << 16);
        let client_config = Config {
            profiles: vec![profile::AGENT.into()],
            ..Config::default()
        };
        let (client, mut client_events) = spawn(a, Role::Initiator, client_config);
        let (server, mut server_events) = spawn(b, Role::Listener, controller_config());
        // The controller asks for many channels the client's application never answers:
        // more events than the event channel holds.
        for _ in 0..(EVENT_QUEUE + 30) {
            let server = server.clone();
            tokio::spawn(async move {
                let _ = server
                    .start_channel(vec![ProfileOffer::new(profile::AGENT)])
                    .await;
            });
        }
        let server_app = tokio::spawn(async move {
            loop {
                match next(&mut server_events).await {
                    Event::StartRequested { channel, profiles } => {
                        server
                            .accept_start(channel, &profiles[0].uri, None)
                            .await
                            .expect("accept");
                    }
                    Event::Failed(_) | Event::SessionClosed { .. } => return,
                    _ => {}
                }
            }
        });
        assert!(matches!(
            next(&mut client_events).await,
            Event::Greeting { .. }
        ));
        // Let the requests arrive before asking, so the answer queues behind them.
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        let started = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            client.start_channel(vec![ProfileOffer::new(profile::CLIENT)]),
        )
        .await
        .expect("the answer must not wait behind unread events");
        assert!(
            matches!(started, Ok(StartOutcome::Started { channel: 1, .. })),
            "{started:?}"
        );
        let first = next(&mut client_events).await;
        assert!(
            matches!(first, Event::StartRequested { channel: 2, .. }),
            "{first:?}"
        );
        drop(client_events);
        drop(client);
        server_app.await.expect("server app");
    }

    #[tokio::test]
    async fn peer_violation_and_disconnect_reach_the_application() {
        let (ours, mut theirs) = tokio::io::duplex(4096);
        let (handle, mut events) = spawn(ours, Role::Listener, controller_config());
        // Our greeting arrives without waiting for anything from the peer.
        let mut greeting = vec![0u8; 12];
        theirs.read_exact(&mut greeting).await.expect("greeting");
        assert_eq!(&greeting, b"RPY 0 0 . 0 ");
        theirs.write_all(b"HELLO\r\n").await.expect("write");
        let event = next(&mut events).await;
        assert!(
            matches!(event, Event::Failed(BeepError::BadHeader { .. })),
            "{event:?}"
        );
        assert_eq!(events.recv().await, None);
        assert_eq!(handle.send_msg(1, vec![]).await, Err(DriverError::Closed));

        let (ours, theirs) = tokio::io::duplex(4096);
        let (_handle, mut events) = spawn(ours, Role::Initiator, Config::default());
        drop(theirs);
        assert_eq!(
            next(&mut events).await,
            Event::Failed(BeepError::ConnectionLost)
        );
    }
}
