//! The task behind a [`Peer`]: the only owner of the connection's events and of the table of
//! requests awaiting their replies, so that a message number is always recorded before the
//! event that answers it is looked at, with no lock shared between tasks.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot};

use super::{Incoming, Peer, PeerError};
use crate::beep::{channel0, Channel0Message, Event};
use crate::driver::{CloseOutcome, ConnectionHandle};
use crate::envelope::{Envelope, MessageType};
use crate::plist::Dictionary;

/// What a [`Peer`] asks its router to do.
pub(super) enum Op {
    Request {
        name: String,
        payload: Dictionary,
        reply: oneshot::Sender<Result<Envelope, PeerError>>,
    },
    Send {
        envelope: Envelope,
        done: oneshot::Sender<Result<(), PeerError>>,
    },
    Close {
        done: oneshot::Sender<Result<(), PeerError>>,
    },
}

/// The body of the empty RPY that acknowledges every Xgrid MSG (no headers, no content).
const EMPTY_REPLY: &[u8] = b"\r\n";

struct Waiting {
    name: String,
    reply: oneshot::Sender<Result<Envelope, PeerError>>,
}

pub(super) struct Router {
    handle: ConnectionHandle,
    channel: u32,
    next_identifier: u64,
    /// Requests by identifier, until their reply MSG arrives.
    waiting: HashMap<String, Waiting>,
    /// Identifier of each request MSG by message number, until its empty RPY arrives, so a
    /// BEEP-level ERR can fail the right request.
    by_msgno: HashMap<u32, String>,
    incoming: mpsc::UnboundedSender<Envelope>,
    ended: Arc<Mutex<Option<PeerError>>>,
}

impl Router {
    /// Start the router for an opened `channel`; returns the application's ends.
    pub(super) fn spawn(
        handle: ConnectionHandle,
        events: mpsc::Receiver<Event>,
        channel: u32,
        authenticated: bool,
    ) -> (Peer, Incoming) {
        let (ops_tx, ops_rx) = mpsc::channel(32);
        let (incoming_tx, incoming_rx) = mpsc::unbounded_channel();
        let ended = Arc::new(Mutex::new(None));
        let router = Router {
            handle,
            channel,
            next_identifier: 1,
            waiting: HashMap::new(),
            by_msgno: HashMap::new(),
            incoming: incoming_tx,
            ended: ended.clone(),
        };
        tokio::spawn(router.run(ops_rx, events));
        let peer = Peer {
            ops: ops_tx,
            ended,
            authenticated,
        };
        (peer, incoming_rx)
    }

    async fn run(mut self, mut ops: mpsc::Receiver<Op>, mut events: mpsc::Receiver<Event>) {
        let reason = loop {
            tokio::select! {
                op = ops.recv() => match op {
                    Some(op) => self.handle_op(op).await,
                    // Every Peer is gone: nobody can use the connection any more.
                    None => break PeerError::Closed,
                },
                event = events.recv() => match event {
                    Some(event) => {
                        if let Some(reason) = self.handle_event(event).await {
                            break reason;
                        }
                    }
                    None => break PeerError::lost("the connection ended"),
                },
            }
        };
        self.finish(reason);
        // Dropping the handle and the event receiver here ends the driver task.
    }

    async fn handle_op(&mut self, op: Op) {
        match op {
            Op::Request {
                name,
                payload,
                reply,
            } => {
                let identifier = self.next_identifier.to_string();
                self.next_identifier += 1;
                let envelope = Envelope::request(identifier.as_str(), name.as_str(), payload);
                match self
                    .handle
                    .send_msg(self.channel, envelope.to_beep_payload())
                    .await
                {
                    Ok(msgno) => {
                        self.by_msgno.insert(msgno, identifier.clone());
                        self.waiting.insert(identifier, Waiting { name, reply });
                    }
                    Err(e) => {
                        let _ = reply.send(Err(e.into()));
                    }
                }
            }
            Op::Send { envelope, done } => {
                let sent = self
                    .handle
                    .send_msg(self.channel, envelope.to_beep_payload())
                    .await;
                let _ = done.send(sent.map(|_| ()).map_err(Into::into));
            }
            Op::Close { done } => {
                // The close waits for the controller, and the session may first need our
                // empty RPYs to messages still arriving: keep routing meanwhile.
                let handle = self.handle.clone();
                tokio::spawn(async move {
                    let outcome = match handle.close().await {
                        Ok(CloseOutcome::Closed) => Ok(()),
                        Ok(CloseOutcome::Refused { code, text }) => Err(PeerError::Protocol {
                            reason: format!(
                                "the controller refused to close the session: {code} {text}"
                            ),
                        }),
                        Err(e) => Err(e.into()),
                    };
                    let _ = done.send(outcome);
                });
            }
        }
    }

    /// Handle one event; `Some(reason)` when the connection is over.
    async fn handle_event(&mut self, event: Event) -> Option<PeerError> {
        match event {
            Event::Message {
                channel,
                msgno,
                payload,
            } => {
                // Every MSG gets its empty RPY at once, whatever it holds (§4).
                if let Err(e) = self
                    .handle
                    .send_rpy(channel, msgno, EMPTY_REPLY.to_vec())
                    .await
                {
                    return Some(e.into());
                }
                if channel == self.channel {
                    self.deliver(&payload);
                }
                None
            }
            Event::Reply { msgno, .. } => {
                self.by_msgno.remove(&msgno);
                None
            }
            Event::ErrorReply { msgno, payload, .. } => {
                if let Some(identifier) = self.by_msgno.remove(&msgno) {
                    if let Some(waiting) = self.waiting.remove(&identifier) {
                        let (code, text) = refusal(&payload);
                        let _ = waiting.reply.send(Err(PeerError::MessageRefused {
                            request: waiting.name,
                            code,
                            text,
                        }));
                    }
                }
                None
            }
            Event::ChannelClosed {
                channel,
                by_peer: true,
            } if channel == self.channel => {
                Some(PeerError::lost("the controller closed the Xgrid channel"))
            }
            Event::SessionClosed { by_peer: false } => Some(PeerError::Closed),
            Event::SessionClosed { by_peer: true } => {
                Some(PeerError::lost("the controller closed the session"))
            }
            Event::Failed(e) => Some(PeerError::lost(e)),
            // Starts from the controller are refused by the session itself (we offer no
            // profile); the rest needs nothing from us.
            _ => None,
        }
    }

    /// Route an Xgrid message: a reply to its request, anything else to the application.
    /// A message that is not an Xgrid envelope is dropped: one bad notification must not end
    /// the connection.
    fn deliver(&mut self, payload: &[u8]) {
        let Ok(envelope) = Envelope::from_beep_payload(payload) else {
            return;
        };
        match envelope.message_type {
            MessageType::Reply => {
                // A reply nobody waits for (its requester gave up) is dropped.
                if let Some(waiting) = self.waiting.remove(&envelope.identifier) {
                    let _ = waiting.reply.send(Ok(envelope));
                }
            }
            MessageType::Request | MessageType::Notification => {
                let _ = self.incoming.send(envelope);
            }
        }
    }

    fn finish(&mut self, reason: PeerError) {
        *self
            .ended
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(reason.clone());
        for (_, waiting) in self.waiting.drain() {
            let _ = waiting.reply.send(Err(reason.clone()));
        }
    }
}

/// Code and text of a BEEP ERR payload (`<error code='NNN'>text</error>`), or the raw text.
fn refusal(payload: &[u8]) -> (u16, String) {
    match channel0::parse(payload) {
        Ok(Channel0Message::Error { code, text }) => (code, text),
        _ => (
            0,
            String::from_utf8_lossy(crate::mime::entity_body(payload))
                .trim()
                .to_string(),
        ),
    }
}
