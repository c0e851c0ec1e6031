//! The peer against a scripted controller on loopback: a real listener-side driver that
//! refuses the profile with 530 until two-way-random succeeded, answers `controllerList`, and
//! otherwise hands every Xgrid message to the test, which answers as it likes.

use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::mpsc;

use super::*;
use crate::auth::{Listener, ListenerStep};
use crate::beep::Event;
use crate::driver::ConnectionHandle;
use crate::envelope::MessageType;
use crate::messages::{ControllerEntry, ControllerListReply};
use crate::plist::Value;

const WAIT: Duration = Duration::from_secs(10);

fn payload(entries: &[(&str, &str)]) -> Dictionary {
    entries
        .iter()
        .map(|(k, v)| (k.to_string(), Value::from(*v)))
        .collect()
}

/// What the scripted controller saw that the test may check.
#[derive(Debug)]
enum Seen {
    /// An Xgrid message on the role's channel (controllerList excluded).
    Message(Envelope),
    /// The payload of an RPY to one of the controller's own MSGs.
    Reply(Vec<u8>),
}

/// The test's side of the scripted controller.
struct Controller {
    handle: ConnectionHandle,
    channel: u32,
    seen: mpsc::UnboundedReceiver<Seen>,
    script: tokio::task::JoinHandle<()>,
}

impl Controller {
    async fn send(&self, envelope: Envelope) {
        self.handle
            .send_msg(self.channel, envelope.to_beep_payload())
            .await
            .expect("controller send");
    }

    /// Drop the TCP connection without closing the session.
    fn hang_up(self) {
        // Stopping the script drops its handle and event receiver; with ours gone too the
        // driver ends and shuts the socket.
        self.script.abort();
    }

    async fn next(&mut self) -> Seen {
        tokio::time::timeout(WAIT, self.seen.recv())
            .await
            .expect("the controller waited too long")
            .expect("the controller's session ended")
    }

    async fn next_message(&mut self) -> Envelope {
        loop {
            if let Seen::Message(envelope) = self.next().await {
                return envelope;
            }
        }
    }
}

/// Listen on loopback; the returned future accepts one peer and runs the script until the
/// role's channel is open, then gives the test its [`Controller`].
async fn scripted_controller(
    password: Option<&'static str>,
    role: &'static str,
) -> (Address, tokio::task::JoinHandle<Controller>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("address").port();
    let task = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.expect("accept");
        let config = Config {
            profiles: profile::CONTROLLER_GREETING
                .iter()
                .map(|s| s.to_string())
                .collect(),
            ..Config::default()
        };
        let (handle, mut events) = driver::spawn(stream, Role::Listener, config);
        let (seen_tx, seen_rx) = mpsc::unbounded_channel();
        let (channel_tx, channel_rx) = tokio::sync::oneshot::channel();
        let script_handle = handle.clone();
        let script = tokio::spawn(async move {
            let handle = script_handle;
            let mut authenticated = password.is_none();
            let mut auth: Option<(u32, Listener)> = None;
            let mut role_channel = None;
            let mut channel_tx = Some(channel_tx);
            while let Some(event) = events.recv().await {
                match event {
                    Event::StartRequested { channel, profiles } => {
                        let uri = profiles[0].uri.clone();
                        if uri == profile::TWO_WAY_RANDOM {
                            let secret = password.unwrap_or_default().to_string();
                            let listener = Listener::new(move |user| {
                                (user == PeerRole::Client.user() || user == PeerRole::Agent.user())
                                    .then(|| secret.clone())
                            })
                            .expect("random");
                            let challenge = listener.challenge();
                            handle
                                .accept_start(channel, &uri, Some(challenge))
                                .await
                                .expect("accept auth");
                            auth = Some((channel, listener));
                        } else if uri == role && !authenticated {
                            handle
                                .refuse_start(channel, 530, "Authentication required")
                                .await
                                .expect("refuse");
                        } else {
                            handle
                                .accept_start(channel, &uri, None)
                                .await
                                .expect("accept");
                            role_channel = Some(channel);
                            if let Some(tx) = channel_tx.take() {
                                let _ = tx.send(channel);
                            }
                        }
                    }
                    Event::Message {
                        channel,
                        msgno,
                        payload,
                    } => match &mut auth {
                        Some((auth_channel, listener)) if *auth_channel == channel => {
                            match listener.receive(&payload) {
                                Ok(ListenerStep::Reply(reply)) => {
                                    handle.send_rpy(channel, msgno, reply).await.expect("rpy");
                                }
                                Ok(ListenerStep::Authenticated { reply, .. }) => {
                                    authenticated = true;
                                    handle.send_rpy(channel, msgno, reply).await.expect("rpy");
                                }
                                Err(e) => {
                                    let err = Channel0Message::Error {
                                        code: e.reply_code(),
                                        text: e.reply_text().into(),
                                    };
                                    handle
                                        .send_err(channel, msgno, err.to_payload())
                                        .await
                                        .expect("err");
                                }
                            }
                        }
                        _ => {
                            handle
                                .send_rpy(channel, msgno, b"\r\n".to_vec())
                                .await
                                .expect("empty rpy");
                            let envelope =
                                Envelope::from_beep_payload(&payload).expect("an envelope");
                            if envelope.name == "controllerList"
                                && envelope.message_type == MessageType::Request
                            {
                                let list = ControllerListReply {
                                    controllers: vec![ControllerEntry {
                                        hostname: "test".into(),
                                        role: "MASTER".into(),
                                    }],
                                    controller_role: "MASTER".into(),
                                };
                                let reply = ControllerReply::ControllerList(list)
                                    .to_envelope(&envelope.identifier);
                                if let Some(c) = role_channel {
                                    handle
                                        .send_msg(c, reply.to_beep_payload())
                                        .await
                                        .expect("reply");
                                }
                            } else {
                                let _ = seen_tx.send(Seen::Message(envelope));
                            }
                        }
                    },
                    Event::Reply { payload, .. } => {
                        let _ = seen_tx.send(Seen::Reply(payload));
                    }
                    Event::SessionClosed { .. } | Event::Failed(_) => break,
                    _ => {}
                }
            }
        });
        let channel = channel_rx.await.unwrap_or(0);
        Controller {
            handle,
            channel,
            seen: seen_rx,
            script,
        }
    });
    (
        Address {
            host: "127.0.0.1".into(),
            port,
        },
        task,
    )
}

fn client(password: Option<&str>) -> PeerOptions {
    PeerOptions {
        role: PeerRole::Client,
        password: password.map(str::to_string),
    }
}

async fn within<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, future)
        .await
        .expect("took too long")
}

#[tokio::test]
async fn password_then_requests_matched_by_identifier_out_of_order() {
    let (address, controller) = scripted_controller(Some("sesame"), profile::CLIENT).await;
    let (peer, _incoming) = within(connect(&address, client(Some("sesame"))))
        .await
        .expect("connect");
    assert!(peer.authenticated());
    let mut controller = controller.await.expect("controller");

    let first = peer.request("jobAttributes", payload(&[("jobIdentifier", "1")]));
    let second = peer.request("jobAttributes", payload(&[("jobIdentifier", "2")]));
    let answer = async {
        let a = controller.next_message().await;
        let b = controller.next_message().await;
        // The identifiers are decimal numbers, distinct, after controllerList's.
        assert!(a.identifier.parse::<u64>().is_ok(), "{a:?}");
        assert!(b.identifier.parse::<u64>().is_ok(), "{b:?}");
        assert_ne!(a.identifier, b.identifier);
        assert_eq!(a.message_type, MessageType::Request);
        // Answer in reverse order, each echoing the job it was asked about.
        for request in [&b, &a] {
            let job = request.payload["jobIdentifier"].clone();
            let mut reply = Dictionary::new();
            reply.insert("echo".into(), job);
            controller
                .send(Envelope::reply(
                    request.identifier.as_str(),
                    "jobAttributes",
                    reply,
                ))
                .await;
        }
    };
    let (first, second, ()) = within(async { tokio::join!(first, second, answer) }).await;
    let first = first.expect("first reply");
    let second = second.expect("second reply");
    assert_eq!(first.payload.get("echo"), Some(&Value::from("1")));
    assert_eq!(second.payload.get("echo"), Some(&Value::from("2")));
    assert_eq!(first.message_type, MessageType::Reply);
    within(peer.close()).await.expect("close");
    let after = peer.request("jobList", Dictionary::new()).await;
    assert_eq!(after, Err(PeerError::Closed));
}

#[tokio::test]
async fn notifications_reach_the_application_and_get_an_empty_rpy() {
    let (address, controller) = scripted_controller(None, profile::CLIENT).await;
    let (peer, mut incoming) = within(connect(&address, client(None)))
        .await
        .expect("connect");
    assert!(!peer.authenticated());
    let mut controller = controller.await.expect("controller");
    controller
        .send(Envelope::notification(
            "7",
            "jobLatestResultsAvailable",
            Dictionary::new(),
        ))
        .await;
    let notification = within(incoming.recv()).await.expect("a notification");
    assert_eq!(notification.name, "jobLatestResultsAvailable");
    assert_eq!(notification.identifier, "7");
    assert_eq!(notification.message_type, MessageType::Notification);
    match controller.next().await {
        Seen::Reply(payload) => assert_eq!(payload, b"\r\n"),
        other => panic!("expected the empty RPY, got {other:?}"),
    }
}

#[tokio::test]
async fn a_request_from_the_controller_is_answered() {
    let (address, controller) = scripted_controller(Some("pw"), profile::AGENT).await;
    let options = PeerOptions {
        role: PeerRole::Agent,
        password: Some("pw".into()),
    };
    let (peer, mut incoming) = within(connect(&address, options)).await.expect("connect");
    let mut controller = controller.await.expect("controller");
    controller
        .send(Envelope::request(
            "c1",
            "agentStatus",
            payload(&[("gridMegahertz", "0")]),
        ))
        .await;
    let request = within(incoming.recv()).await.expect("the request");
    assert_eq!(request.message_type, MessageType::Request);
    assert_eq!(request.name, "agentStatus");
    peer.reply(&request, payload(&[("agentStatus", "Available")]))
        .await
        .expect("reply");
    peer.notify("", "agentStatus", payload(&[("currentTaskCount", "0")]))
        .await
        .expect("notify");
    let reply = controller.next_message().await;
    assert_eq!(reply.message_type, MessageType::Reply);
    assert_eq!(reply.identifier, "c1");
    assert_eq!(reply.name, "agentStatus");
    assert_eq!(
        reply.payload.get("agentStatus"),
        Some(&Value::from("Available"))
    );
    let notification = controller.next_message().await;
    assert_eq!(notification.message_type, MessageType::Notification);
    assert_eq!(notification.identifier, "");
}

#[tokio::test]
async fn wrong_or_missing_password_is_a_clear_error() {
    let (address, _controller) = scripted_controller(Some("right"), profile::CLIENT).await;
    let wrong = within(connect(&address, client(Some("wrong")))).await;
    assert_eq!(wrong.err(), Some(PeerError::WrongPassword));
    assert_eq!(
        PeerError::WrongPassword.to_string(),
        "wrong password (535): the controller did not accept it"
    );

    let (address, _controller) = scripted_controller(Some("right"), profile::CLIENT).await;
    let missing = within(connect(&address, client(None))).await;
    assert_eq!(missing.err(), Some(PeerError::PasswordRequired));
    assert_eq!(
        PeerError::PasswordRequired.to_string(),
        "the controller requires a password"
    );
}

#[tokio::test]
async fn a_lost_connection_fails_pending_requests() {
    let (address, controller) = scripted_controller(None, profile::CLIENT).await;
    let (peer, mut incoming) = within(connect(&address, client(None)))
        .await
        .expect("connect");
    let mut controller = controller.await.expect("controller");
    let pending = tokio::spawn({
        let peer = peer.clone();
        async move { peer.request("jobList", Dictionary::new()).await }
    });
    let _ = controller.next_message().await;
    controller.hang_up();
    let result = within(pending).await.expect("task");
    assert!(
        matches!(result, Err(PeerError::ConnectionLost { .. })),
        "{result:?}"
    );
    assert_eq!(within(incoming.recv()).await, None);
}

#[tokio::test]
async fn connection_refused_names_the_address() {
    // Bind then drop a listener: the port is very likely closed afterwards.
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("address").port();
    drop(listener);
    let address = Address {
        host: "127.0.0.1".into(),
        port,
    };
    let err = within(connect(&address, client(None)))
        .await
        .expect_err("nobody listens");
    assert!(
        err.to_string()
            .starts_with(&format!("cannot connect to 127.0.0.1:{port}: ")),
        "{err}"
    );
}

#[test]
fn addresses_take_an_optional_port() {
    let parse = |t: &str| Address::parse(t).map(|a| (a.host, a.port));
    assert_eq!(parse("grid.local"), Ok(("grid.local".into(), 4111)));
    assert_eq!(parse("grid.local:4200"), Ok(("grid.local".into(), 4200)));
    assert_eq!(parse("[::1]:4200"), Ok(("::1".into(), 4200)));
    assert_eq!(parse("[::1]"), Ok(("::1".into(), 4111)));
    assert_eq!(parse("fe80::1"), Ok(("fe80::1".into(), 4111)));
    assert!(parse("host:").is_err());
    assert!(parse("host:0").is_err());
    assert!(parse("host:99999").is_err());
    assert!(parse(":4111").is_err());
    assert!(parse("[::1").is_err());
    let shown = Address::parse("[::1]:5").expect("v6").to_string();
    assert_eq!(shown, "[::1]:5");
    assert_eq!(
        Address::parse("h").expect("host").to_string(),
        "h:4111".to_string()
    );
}
