//! A BEEP session (RFC 3080 with the RFC 3081 TCP mapping) as a state machine with no
//! sockets and no clock: feed it received bytes and commands, take events and bytes to send.
//!
//! Flow control: each channel grants the peer `Config::window` octets. Octets of a message
//! the session is still reassembling count as consumed at once (the session holds them,
//! bounded by `max_message_size`); the octets of a message's last frame count as consumed
//! when the application takes the message's event from [`Session::poll_event`]. A SEQ that
//! grants more window goes out with the next [`Session::poll_transmit`] once half the window
//! is used, so many messages cost one SEQ.
//!
//! What the session decides by itself, where RFC 3080 or Xgrid's peers leave room:
//! - A peer's start of a channel with the wrong parity (or 0) gets ERR 501, of a channel in
//!   use ERR 550, naming no profile we offer ERR 550; the session goes on and reports each
//!   as [`Event::StartRejected`].
//! - A peer's close of a channel we still use (data queued, replies owed or awaited) gets
//!   ERR 550. A peer's close of the session is always accepted, open channels or not
//!   (Xgrid clients close that way).
//! - A SEQ for a channel we do not know is ignored (it may cross a close); a malformed
//!   channel-0 message ends the session.
//! - Our own channel close waits until our queued data is out and every MSG we sent on the
//!   channel and every MSG we received on it has its reply.

use std::collections::{BTreeMap, HashMap, VecDeque};

use super::channel0::{self, Channel0Message, ProfileOffer};
use super::frame::{encode_data, encode_seq, DataFrame, Frame, FrameDecoder, FrameKind, MAX_I31};
use super::BeepError;

/// The window every channel starts with, in both directions (RFC 3081 §3.1.4).
pub const INITIAL_WINDOW: u32 = 4096;

/// Which end of the TCP connection this session is: it decides channel-number parity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// The TCP client; opens odd-numbered channels.
    Initiator,
    /// The TCP server; opens even-numbered channels.
    Listener,
}

/// Session settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Profiles listed in our greeting; a peer's start naming none of them is refused by the
    /// session itself with ERR 550, without asking the application.
    pub profiles: Vec<String>,
    /// Receive window per channel; values below 4096 are raised to 4096. A larger window is
    /// announced with a SEQ as soon as the channel exists.
    pub window: u32,
    /// Largest frame payload we accept, and largest we send. Keep it at least `window`: a
    /// peer may send a frame as large as the window we grant.
    pub max_frame_size: u32,
    /// Largest reassembled message (or single answer) we accept.
    pub max_message_size: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            profiles: Vec::new(),
            window: INITIAL_WINDOW,
            max_frame_size: 65536,
            max_message_size: 64 << 20,
        }
    }
}

/// Something that happened on the session, in the order it happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The peer's greeting, with the profiles it offers.
    Greeting { profiles: Vec<String> },
    /// The peer asks to start `channel` with one of `profiles` (only those we offer, in the
    /// peer's order). Answer with [`Session::accept_start`] or [`Session::refuse_start`].
    StartRequested {
        channel: u32,
        profiles: Vec<ProfileOffer>,
    },
    /// The session refused a peer's start by itself (wrong parity, number in use, no profile
    /// we offer); reported so the application can log it.
    StartRejected { channel: u32, error: BeepError },
    /// Our start was accepted: the channel is open with `profile`.
    ChannelStarted {
        channel: u32,
        profile: String,
        piggyback: Option<String>,
    },
    /// Our start was refused.
    StartRefused {
        channel: u32,
        code: u16,
        text: String,
    },
    /// A complete MSG from the peer; answer it with send_rpy/send_err/send_ans+send_nul.
    Message {
        channel: u32,
        msgno: u32,
        payload: Vec<u8>,
    },
    /// A complete RPY to our MSG `msgno`.
    Reply {
        channel: u32,
        msgno: u32,
        payload: Vec<u8>,
    },
    /// A complete ERR to our MSG `msgno`.
    ErrorReply {
        channel: u32,
        msgno: u32,
        payload: Vec<u8>,
    },
    /// One complete ANS to our MSG `msgno`.
    Answer {
        channel: u32,
        msgno: u32,
        ansno: u32,
        payload: Vec<u8>,
    },
    /// The NUL that ends the answers to our MSG `msgno`.
    AnswersDone { channel: u32, msgno: u32 },
    /// `channel` is closed, at the peer's request (`by_peer`) or at ours.
    ChannelClosed { channel: u32, by_peer: bool },
    /// The peer refused to close `channel` (0: the session).
    CloseRefused {
        channel: u32,
        code: u16,
        text: String,
    },
    /// The session ended in an orderly way; nothing more will be sent or read.
    SessionClosed { by_peer: bool },
    /// The session ended on an error: a rule broken by the peer, or the transport lost.
    Failed(BeepError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Open,
    /// We want to close the session once channel data already queued has been sent.
    CloseWanted,
    /// Our `<close number='0'>` is queued or sent.
    CloseSent,
    Closed,
    Failed,
}

/// What to do once a channel-0 message has been completely written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AfterWrite {
    /// The start reply for this channel is out: the channel may carry data now.
    Announce(u32),
    /// Our `<ok/>` to the peer's session close is out.
    EndSession,
}

#[derive(Debug)]
struct Outgoing {
    kind: FrameKind,
    msgno: u32,
    payload: Vec<u8>,
    offset: usize,
    after: Option<AfterWrite>,
}

/// A MSG from the peer that we still owe a reply to; replies the application gives out of
/// order wait here until every earlier MSG has been answered (RFC 3080 §2.6.1).
#[derive(Debug)]
struct Owed {
    msgno: u32,
    held: Vec<Outgoing>,
    next_ansno: u32,
    finished: bool,
}

#[derive(Debug)]
struct Partial {
    kind: FrameKind,
    msgno: u32,
    payload: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CloseState {
    Open,
    /// Close once our queued data is out and every MSG we sent has its reply.
    Wanted,
    Sent,
}

#[derive(Debug)]
struct Channel {
    // Distinguishes channels that reuse a number, so a late window credit finds no target.
    generation: u64,
    profile: String,
    // Receiving.
    recv_seq: u32,
    consumed: u32,
    advertised_ackno: u32,
    advertised_window: u32,
    partial_msg: Option<Partial>,
    partial_reply: Option<Partial>,
    partial_answers: BTreeMap<u32, Vec<u8>>,
    answering: bool,
    owed: VecDeque<Owed>,
    // Sending.
    send_seq: u32,
    peer_ackno: u32,
    peer_window: u32,
    next_msgno: u32,
    awaiting: VecDeque<u32>,
    outgoing: VecDeque<Outgoing>,
    announced: bool,
    close: CloseState,
}

impl Channel {
    fn new(generation: u64, profile: String, announced: bool) -> Self {
        Channel {
            generation,
            profile,
            recv_seq: 0,
            consumed: 0,
            advertised_ackno: 0,
            advertised_window: INITIAL_WINDOW,
            partial_msg: None,
            partial_reply: None,
            partial_answers: BTreeMap::new(),
            answering: false,
            owed: VecDeque::new(),
            send_seq: 0,
            peer_ackno: 0,
            peer_window: INITIAL_WINDOW,
            next_msgno: 0,
            awaiting: VecDeque::new(),
            outgoing: VecDeque::new(),
            announced,
            close: CloseState::Open,
        }
    }

    fn idle(&self) -> bool {
        self.outgoing.is_empty()
            && self.awaiting.is_empty()
            && self.owed.is_empty()
            && self.partial_msg.is_none()
            && self.partial_reply.is_none()
            && self.partial_answers.is_empty()
    }

    // Move replies of the front owed MSGs to the outgoing queue, as far as order allows.
    fn release_replies(&mut self) {
        while let Some(front) = self.owed.front_mut() {
            self.outgoing.extend(front.held.drain(..));
            if !front.finished {
                break;
            }
            self.owed.pop_front();
        }
    }

    fn send_window(&self) -> u32 {
        let avail = self
            .peer_ackno
            .wrapping_add(self.peer_window)
            .wrapping_sub(self.send_seq);
        // A peer that shrank its window below what we already sent leaves us nothing.
        if avail > MAX_I31 {
            0
        } else {
            avail
        }
    }
}

/// What a MSG we sent on channel 0 asked for.
#[derive(Debug, Clone, Copy)]
enum Request {
    Start { channel: u32 },
    Close { channel: u32 },
}

#[derive(Debug)]
struct PendingStart {
    msgno: u32,
    offered: Vec<ProfileOffer>,
}

/// Window octets that taking an event grants back: channel, its generation, octets.
type Credit = (u32, u64, u32);

/// One BEEP session. See the module documentation for how flow control is granted.
#[derive(Debug)]
pub struct Session {
    role: Role,
    config: Config,
    state: State,
    decoder: FrameDecoder,
    channels: BTreeMap<u32, Channel>,
    generation: u64,
    greeted: bool,
    peer_profiles: Vec<String>,
    next_channel: u32,
    requests: HashMap<u32, Request>,
    our_starts: HashMap<u32, Vec<ProfileOffer>>,
    peer_starts: HashMap<u32, PendingStart>,
    // Each event with the window credit (channel, generation, octets) its taking releases.
    events: VecDeque<(Event, Option<Credit>)>,
    failure: Option<BeepError>,
}

impl Session {
    /// A new session; its greeting (and a SEQ, if the window is larger than 4096) is queued
    /// at once, so the listener greets without waiting for the initiator.
    pub fn new(role: Role, mut config: Config) -> Session {
        config.window = config.window.clamp(INITIAL_WINDOW, MAX_I31);
        config.max_frame_size = config.max_frame_size.clamp(1, MAX_I31);
        let mut session = Session {
            role,
            decoder: FrameDecoder::new(config.max_frame_size),
            state: State::Open,
            channels: BTreeMap::new(),
            generation: 0,
            greeted: false,
            peer_profiles: Vec::new(),
            next_channel: match role {
                Role::Initiator => 1,
                Role::Listener => 2,
            },
            requests: HashMap::new(),
            our_starts: HashMap::new(),
            peer_starts: HashMap::new(),
            events: VecDeque::new(),
            failure: None,
            config,
        };
        let mut zero = Channel::new(0, String::new(), true);
        // The greetings are replies to an implicit MSG 0 in each direction, so our own
        // channel-0 MSGs start at 1 and the peer's greeting answers our "MSG 0".
        zero.next_msgno = 1;
        zero.awaiting.push_back(0);
        let greeting = Channel0Message::Greeting {
            profiles: session.config.profiles.clone(),
        };
        zero.outgoing.push_back(Outgoing {
            kind: FrameKind::Rpy,
            msgno: 0,
            payload: greeting.to_payload(),
            offset: 0,
            after: None,
        });
        session.channels.insert(0, zero);
        session
    }

    pub fn role(&self) -> Role {
        self.role
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The profiles of the peer's greeting (empty until it arrives).
    pub fn peer_profiles(&self) -> &[String] {
        &self.peer_profiles
    }

    /// Whether the peer's greeting has arrived.
    pub fn is_greeted(&self) -> bool {
        self.greeted
    }

    /// The profile running on an open channel.
    pub fn channel_profile(&self, channel: u32) -> Option<&str> {
        self.channels
            .get(&channel)
            .filter(|_| channel != 0)
            .map(|c| c.profile.as_str())
    }

    /// True once the session has ended, in order or on an error.
    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed | State::Failed)
    }

    /// Whether [`poll_event`](Self::poll_event) has something.
    pub fn has_events(&self) -> bool {
        !self.events.is_empty()
    }

    /// Take the next event; taking a message event grants its octets back to the peer.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.poll_event_where(|_| true)
    }

    /// Take the first event that `wanted` picks, leaving the others in order. A driver uses
    /// this to hand answers to the commands waiting for them while the application is not
    /// yet taking its other events.
    pub fn poll_event_where(&mut self, mut wanted: impl FnMut(&Event) -> bool) -> Option<Event> {
        let index = self.events.iter().position(|(event, _)| wanted(event))?;
        let (event, credit) = self.events.remove(index)?;
        if let Some((channel, generation, octets)) = credit {
            if let Some(ch) = self
                .channels
                .get_mut(&channel)
                .filter(|c| c.generation == generation)
            {
                ch.consumed = ch.consumed.wrapping_add(octets);
            }
        }
        Some(event)
    }

    /// The error that ended the session, if it ended on one.
    pub fn failure(&self) -> Option<&BeepError> {
        self.failure.as_ref()
    }

    /// Feed bytes received from the peer. A broken rule ends the session with an
    /// [`Event::Failed`]; bytes after the end are ignored.
    pub fn handle_input(&mut self, bytes: &[u8]) {
        if self.is_closed() {
            return;
        }
        self.decoder.push(bytes);
        while !self.is_closed() {
            match self.decoder.next_frame() {
                Ok(Some(frame)) => {
                    if let Err(e) = self.handle_frame(frame) {
                        self.fail(e);
                    }
                }
                Ok(None) => break,
                Err(e) => self.fail(e),
            }
        }
    }

    /// The peer closed the connection. Unless the session had already ended, this is
    /// [`BeepError::ConnectionLost`].
    pub fn handle_eof(&mut self) {
        if !self.is_closed() {
            self.fail(BeepError::ConnectionLost);
        }
    }

    /// End the session because the transport failed.
    pub fn handle_transport_error(&mut self, message: impl Into<String>) {
        if !self.is_closed() {
            self.fail(BeepError::Transport {
                message: message.into(),
            });
        }
    }

    fn fail(&mut self, error: BeepError) {
        self.state = State::Failed;
        self.failure = Some(error.clone());
        self.events.push_back((Event::Failed(error), None));
    }

    // ---------------------------------------------------------------- commands

    // New work (starts, MSGs, closes) needs an open session.
    fn check_open(&self) -> Result<(), BeepError> {
        match self.state {
            State::Open => Ok(()),
            _ => Err(BeepError::SessionClosed),
        }
    }

    // Answers are still owed while our session close is pending.
    fn check_alive(&self) -> Result<(), BeepError> {
        if self.is_closed() {
            Err(BeepError::SessionClosed)
        } else {
            Ok(())
        }
    }

    /// Ask the peer to start a channel with one of `profiles` (in order of preference).
    /// Returns the channel number; the answer arrives as [`Event::ChannelStarted`] or
    /// [`Event::StartRefused`].
    pub fn start_channel(&mut self, profiles: Vec<ProfileOffer>) -> Result<u32, BeepError> {
        self.check_open()?;
        if profiles.is_empty() {
            return Err(BeepError::NoProfiles);
        }
        let mut number = self.next_channel;
        while self.channels.contains_key(&number) || self.our_starts.contains_key(&number) {
            number = number
                .checked_add(2)
                .filter(|n| *n <= MAX_I31)
                .ok_or(BeepError::ChannelsExhausted)?;
        }
        self.next_channel = number
            .checked_add(2)
            .filter(|n| *n <= MAX_I31)
            .unwrap_or(number);
        let message = Channel0Message::Start {
            number,
            profiles: profiles.clone(),
        };
        let msgno = self.send_channel0_msg(message);
        self.requests
            .insert(msgno, Request::Start { channel: number });
        self.our_starts.insert(number, profiles);
        Ok(number)
    }

    /// Accept the peer's start of `channel` with `profile` (one of those it asked for),
    /// optionally with a piggyback in the reply.
    pub fn accept_start(
        &mut self,
        channel: u32,
        profile: &str,
        piggyback: Option<String>,
    ) -> Result<(), BeepError> {
        self.check_alive()?;
        let pending = self
            .peer_starts
            .get(&channel)
            .ok_or(BeepError::NoPendingStart { channel })?;
        if !pending.offered.iter().any(|p| p.uri == profile) {
            return Err(BeepError::ProfileNotRequested {
                uri: profile.to_string(),
            });
        }
        let msgno = pending.msgno;
        self.peer_starts.remove(&channel);
        self.generation += 1;
        self.channels.insert(
            channel,
            Channel::new(self.generation, profile.to_string(), false),
        );
        let reply = Channel0Message::Profile(ProfileOffer {
            uri: profile.to_string(),
            piggyback,
        });
        self.queue_reply(
            0,
            msgno,
            FrameKind::Rpy,
            reply.to_payload(),
            Some(AfterWrite::Announce(channel)),
        )
    }

    /// Refuse the peer's start of `channel`, e.g. 530 "Authentication required".
    pub fn refuse_start(&mut self, channel: u32, code: u16, text: &str) -> Result<(), BeepError> {
        self.check_alive()?;
        if !(100..1000).contains(&code) {
            return Err(BeepError::BadReplyCode { code });
        }
        let pending = self
            .peer_starts
            .remove(&channel)
            .ok_or(BeepError::NoPendingStart { channel })?;
        let reply = Channel0Message::Error {
            code,
            text: text.to_string(),
        };
        self.queue_reply(0, pending.msgno, FrameKind::Err, reply.to_payload(), None)
    }

    /// Send a MSG; returns its msgno. The payload is sent untouched (for Xgrid data, build it
    /// with `crate::mime::bare_entity`).
    pub fn send_msg(&mut self, channel: u32, payload: Vec<u8>) -> Result<u32, BeepError> {
        self.check_open()?;
        let ch = self.user_channel(channel)?;
        if ch.close != CloseState::Open {
            return Err(BeepError::ChannelClosing { channel });
        }
        let mut msgno = ch.next_msgno;
        while ch.awaiting.contains(&msgno) {
            msgno = if msgno == MAX_I31 { 0 } else { msgno + 1 };
        }
        ch.next_msgno = if msgno == MAX_I31 { 0 } else { msgno + 1 };
        ch.awaiting.push_back(msgno);
        ch.outgoing.push_back(Outgoing {
            kind: FrameKind::Msg,
            msgno,
            payload,
            offset: 0,
            after: None,
        });
        Ok(msgno)
    }

    /// Answer the peer's MSG `msgno` with a RPY.
    pub fn send_rpy(
        &mut self,
        channel: u32,
        msgno: u32,
        payload: Vec<u8>,
    ) -> Result<(), BeepError> {
        self.user_reply(channel, msgno, FrameKind::Rpy, payload)
    }

    /// Answer the peer's MSG `msgno` with an ERR.
    pub fn send_err(
        &mut self,
        channel: u32,
        msgno: u32,
        payload: Vec<u8>,
    ) -> Result<(), BeepError> {
        self.user_reply(channel, msgno, FrameKind::Err, payload)
    }

    /// Send one ANS to the peer's MSG `msgno`; returns its ansno. End the series with
    /// [`send_nul`](Self::send_nul).
    pub fn send_ans(
        &mut self,
        channel: u32,
        msgno: u32,
        payload: Vec<u8>,
    ) -> Result<u32, BeepError> {
        self.check_alive()?;
        let ch = self.user_channel(channel)?;
        let owed = ch
            .owed
            .iter_mut()
            .find(|o| o.msgno == msgno && !o.finished)
            .ok_or(BeepError::NoSuchMessage { channel, msgno })?;
        let ansno = owed.next_ansno;
        owed.next_ansno = owed.next_ansno.wrapping_add(1) & MAX_I31;
        owed.held.push(Outgoing {
            kind: FrameKind::Ans { ansno },
            msgno,
            payload,
            offset: 0,
            after: None,
        });
        ch.release_replies();
        Ok(ansno)
    }

    /// End the ANS series to the peer's MSG `msgno`.
    pub fn send_nul(&mut self, channel: u32, msgno: u32) -> Result<(), BeepError> {
        self.user_reply(channel, msgno, FrameKind::Nul, Vec::new())
    }

    fn user_reply(
        &mut self,
        channel: u32,
        msgno: u32,
        kind: FrameKind,
        payload: Vec<u8>,
    ) -> Result<(), BeepError> {
        self.check_alive()?;
        self.user_channel(channel)?;
        self.queue_reply(channel, msgno, kind, payload, None)
    }

    fn user_channel(&mut self, channel: u32) -> Result<&mut Channel, BeepError> {
        if channel == 0 {
            return Err(BeepError::NoSuchChannel { channel });
        }
        self.channels
            .get_mut(&channel)
            .ok_or(BeepError::NoSuchChannel { channel })
    }

    fn queue_reply(
        &mut self,
        channel: u32,
        msgno: u32,
        kind: FrameKind,
        payload: Vec<u8>,
        after: Option<AfterWrite>,
    ) -> Result<(), BeepError> {
        let ch = self
            .channels
            .get_mut(&channel)
            .ok_or(BeepError::NoSuchChannel { channel })?;
        let owed = ch
            .owed
            .iter_mut()
            .find(|o| o.msgno == msgno && !o.finished)
            .ok_or(BeepError::NoSuchMessage { channel, msgno })?;
        owed.held.push(Outgoing {
            kind,
            msgno,
            payload,
            offset: 0,
            after,
        });
        owed.finished = true;
        ch.release_replies();
        Ok(())
    }

    /// Close `channel` (code 200). The close is sent once the data already queued on it is
    /// out and every MSG we sent on it has its reply; the result arrives as
    /// [`Event::ChannelClosed`] or [`Event::CloseRefused`].
    pub fn close_channel(&mut self, channel: u32) -> Result<(), BeepError> {
        self.check_open()?;
        let ch = self.user_channel(channel)?;
        if ch.close != CloseState::Open {
            return Err(BeepError::ChannelClosing { channel });
        }
        ch.close = CloseState::Wanted;
        Ok(())
    }

    /// Close the whole session, once the data already queued on every channel is out. Open
    /// channels need not be closed first (Xgrid clients do not); a peer may refuse.
    pub fn close_session(&mut self) -> Result<(), BeepError> {
        self.check_open()?;
        self.state = State::CloseWanted;
        Ok(())
    }

    fn send_channel0_msg(&mut self, message: Channel0Message) -> u32 {
        let Some(zero) = self.channels.get_mut(&0) else {
            return 0;
        };
        let msgno = zero.next_msgno;
        zero.next_msgno = if msgno == MAX_I31 { 1 } else { msgno + 1 };
        zero.awaiting.push_back(msgno);
        zero.outgoing.push_back(Outgoing {
            kind: FrameKind::Msg,
            msgno,
            payload: message.to_payload(),
            offset: 0,
            after: None,
        });
        msgno
    }

    // ---------------------------------------------------------------- output

    /// Append every frame that may be sent now to `out`: data within the peer's windows,
    /// channel-0 traffic first, then SEQ frames granting window for what was consumed.
    pub fn poll_transmit(&mut self, out: &mut Vec<u8>) {
        loop {
            if self.is_closed() {
                return;
            }
            let mut progress = self.emit_channel(0, out);
            let numbers: Vec<u32> = self.channels.keys().copied().filter(|n| *n != 0).collect();
            for number in numbers {
                progress |= self.emit_channel(number, out);
            }
            progress |= self.queue_closes();
            if !progress {
                break;
            }
        }
        let window = self.config.window;
        for (number, ch) in self.channels.iter_mut() {
            // No SEQ for a channel the peer does not know of yet. Otherwise one once half the
            // window is used up, not after every message: the peer can still send the other
            // half meanwhile, and each SEQ of its own is a TCP segment that wakes the peer
            // (on loopback, a third of the segments a task cost before).
            let unacknowledged = ch.consumed.wrapping_sub(ch.advertised_ackno);
            if ch.announced && (unacknowledged >= window / 2 || ch.advertised_window != window) {
                encode_seq(*number, ch.consumed, window, out);
                ch.advertised_ackno = ch.consumed;
                ch.advertised_window = window;
            }
        }
    }

    // Frames of `number`'s queue as far as the window allows; true if anything was written.
    fn emit_channel(&mut self, number: u32, out: &mut Vec<u8>) -> bool {
        let max_frame = self.config.max_frame_size as usize;
        let mut wrote = false;
        let mut done = Vec::new();
        {
            let Some(ch) = self.channels.get_mut(&number) else {
                return false;
            };
            if !ch.announced {
                return false;
            }
            loop {
                let window = ch.send_window() as usize;
                let Some(front) = ch.outgoing.front_mut() else {
                    break;
                };
                let remaining = front.payload.len().saturating_sub(front.offset);
                let n = remaining.min(window).min(max_frame);
                if n == 0 && remaining > 0 {
                    break;
                }
                let end = front.offset + n;
                let more = end < front.payload.len();
                let chunk = front.payload.get(front.offset..end).unwrap_or_default();
                encode_data(
                    front.kind,
                    number,
                    front.msgno,
                    more,
                    ch.send_seq,
                    chunk,
                    out,
                );
                ch.send_seq = ch.send_seq.wrapping_add(n as u32);
                front.offset = end;
                wrote = true;
                if !more {
                    if let Some(after) = front.after {
                        done.push(after);
                    }
                    ch.outgoing.pop_front();
                }
            }
        }
        for after in done {
            match after {
                AfterWrite::Announce(channel) => {
                    if let Some(ch) = self.channels.get_mut(&channel) {
                        ch.announced = true;
                    }
                }
                AfterWrite::EndSession => {
                    self.state = State::Closed;
                    self.events
                        .push_back((Event::SessionClosed { by_peer: true }, None));
                }
            }
        }
        wrote
    }

    // Queue the closes whose preconditions now hold; true if any was queued.
    fn queue_closes(&mut self) -> bool {
        let ready: Vec<u32> = self
            .channels
            .iter()
            .filter(|(n, c)| {
                **n != 0
                    && c.close == CloseState::Wanted
                    && c.outgoing.is_empty()
                    && c.awaiting.is_empty()
                    && c.owed.is_empty()
            })
            .map(|(n, _)| *n)
            .collect();
        let mut queued = false;
        for channel in ready {
            if let Some(ch) = self.channels.get_mut(&channel) {
                ch.close = CloseState::Sent;
            }
            let msgno = self.send_channel0_msg(Channel0Message::Close {
                number: channel,
                code: 200,
            });
            self.requests.insert(msgno, Request::Close { channel });
            queued = true;
        }
        if self.state == State::CloseWanted
            && self
                .channels
                .iter()
                .all(|(n, c)| *n == 0 || c.outgoing.is_empty() || !c.announced)
        {
            self.state = State::CloseSent;
            let msgno = self.send_channel0_msg(Channel0Message::Close {
                number: 0,
                code: 200,
            });
            self.requests.insert(msgno, Request::Close { channel: 0 });
            queued = true;
        }
        queued
    }

    // ---------------------------------------------------------------- input

    fn handle_frame(&mut self, frame: Frame) -> Result<(), BeepError> {
        let frame = match frame {
            Frame::Seq {
                channel,
                ackno,
                window,
            } => return self.handle_seq(channel, ackno, window),
            Frame::Data(frame) => frame,
        };
        let is_greeting = frame.channel == 0
            && frame.msgno == 0
            && matches!(frame.kind, FrameKind::Rpy | FrameKind::Err);
        if !self.greeted && !is_greeting {
            return Err(BeepError::MissingGreeting {
                what: describe(&frame),
            });
        }
        let max_message = self.config.max_message_size;
        let number = frame.channel;
        let ch = self
            .channels
            .get_mut(&number)
            .ok_or(BeepError::UnknownChannel { channel: number })?;
        let size = frame.payload.len() as u32;
        if frame.seqno != ch.recv_seq {
            return Err(BeepError::UnexpectedSeqno {
                channel: number,
                expected: ch.recv_seq,
                got: frame.seqno,
            });
        }
        let end = frame.seqno.wrapping_add(size);
        let used = end.wrapping_sub(ch.advertised_ackno);
        if used > ch.advertised_window {
            return Err(BeepError::WindowOverrun {
                channel: number,
                excess: used - ch.advertised_window,
            });
        }
        ch.recv_seq = end;
        // Frames that do not finish a message are held by the session: consumed now.
        if frame.more {
            ch.consumed = ch.consumed.wrapping_add(size);
        }
        let credit = (number, ch.generation, if frame.more { 0 } else { size });
        let DataFrame {
            kind,
            msgno,
            more,
            payload,
            ..
        } = frame;
        let complete = match kind {
            FrameKind::Msg => {
                let partial = match ch.partial_msg.take() {
                    Some(p) if p.msgno == msgno => p,
                    Some(p) => {
                        return Err(BeepError::BadContinuation {
                            channel: number,
                            reason: format!("MSG {msgno} while MSG {} is unfinished", p.msgno),
                        })
                    }
                    None if ch.owed.iter().any(|o| o.msgno == msgno) => {
                        return Err(BeepError::MsgnoInUse {
                            channel: number,
                            msgno,
                        })
                    }
                    None => Partial {
                        kind,
                        msgno,
                        payload: Vec::new(),
                    },
                };
                let partial = append(partial, payload, number, max_message)?;
                if more {
                    ch.partial_msg = Some(partial);
                    None
                } else {
                    ch.owed.push_back(Owed {
                        msgno,
                        held: Vec::new(),
                        next_ansno: 0,
                        finished: false,
                    });
                    Some((kind, msgno, partial.payload))
                }
            }
            FrameKind::Rpy | FrameKind::Err => {
                check_reply_order(ch, number, msgno)?;
                if ch.answering {
                    return Err(BeepError::BadReply {
                        channel: number,
                        msgno,
                        reason: "RPY or ERR after ANS".into(),
                    });
                }
                let partial = match ch.partial_reply.take() {
                    Some(p) if p.kind == kind => p,
                    Some(_) => {
                        return Err(BeepError::BadContinuation {
                            channel: number,
                            reason: "reply changes between RPY and ERR".into(),
                        })
                    }
                    None => Partial {
                        kind,
                        msgno,
                        payload: Vec::new(),
                    },
                };
                let partial = append(partial, payload, number, max_message)?;
                if more {
                    ch.partial_reply = Some(partial);
                    None
                } else {
                    ch.awaiting.pop_front();
                    Some((kind, msgno, partial.payload))
                }
            }
            FrameKind::Ans { ansno } => {
                check_reply_order(ch, number, msgno)?;
                if ch.partial_reply.is_some() {
                    return Err(BeepError::BadContinuation {
                        channel: number,
                        reason: "ANS inside an unfinished RPY".into(),
                    });
                }
                ch.answering = true;
                let so_far = ch.partial_answers.remove(&ansno).unwrap_or_default();
                let partial = append(
                    Partial {
                        kind,
                        msgno,
                        payload: so_far,
                    },
                    payload,
                    number,
                    max_message,
                )?;
                if more {
                    ch.partial_answers.insert(ansno, partial.payload);
                    None
                } else {
                    Some((kind, msgno, partial.payload))
                }
            }
            FrameKind::Nul => {
                check_reply_order(ch, number, msgno)?;
                if !payload.is_empty() || more {
                    return Err(BeepError::BadReply {
                        channel: number,
                        msgno,
                        reason: "NUL must be a single empty frame".into(),
                    });
                }
                if ch.partial_reply.is_some() || !ch.partial_answers.is_empty() {
                    return Err(BeepError::BadReply {
                        channel: number,
                        msgno,
                        reason: "NUL before the answers were complete".into(),
                    });
                }
                ch.answering = false;
                ch.awaiting.pop_front();
                Some((kind, msgno, Vec::new()))
            }
        };
        let Some((kind, msgno, payload)) = complete else {
            return Ok(());
        };
        if number == 0 {
            if let Some(ch) = self.channels.get_mut(&0) {
                ch.consumed = ch.consumed.wrapping_add(credit.2);
            }
            return self.handle_channel0(kind, msgno, &payload);
        }
        let event = match kind {
            FrameKind::Msg => Event::Message {
                channel: number,
                msgno,
                payload,
            },
            FrameKind::Rpy => Event::Reply {
                channel: number,
                msgno,
                payload,
            },
            FrameKind::Err => Event::ErrorReply {
                channel: number,
                msgno,
                payload,
            },
            FrameKind::Ans { ansno } => Event::Answer {
                channel: number,
                msgno,
                ansno,
                payload,
            },
            FrameKind::Nul => Event::AnswersDone {
                channel: number,
                msgno,
            },
        };
        self.events.push_back((event, Some(credit)));
        Ok(())
    }

    fn handle_seq(&mut self, channel: u32, ackno: u32, window: u32) -> Result<(), BeepError> {
        // A SEQ may race with a close, so one for a channel we do not know is ignored.
        let Some(ch) = self.channels.get_mut(&channel) else {
            return Ok(());
        };
        let acked = ackno.wrapping_sub(ch.peer_ackno);
        let sent = ch.send_seq.wrapping_sub(ch.peer_ackno);
        if acked > sent {
            return Err(BeepError::BadAck {
                channel,
                ackno,
                sent: ch.send_seq,
            });
        }
        ch.peer_ackno = ackno;
        ch.peer_window = window;
        Ok(())
    }

    fn handle_channel0(
        &mut self,
        kind: FrameKind,
        msgno: u32,
        payload: &[u8],
    ) -> Result<(), BeepError> {
        let message = channel0::parse(payload)?;
        match kind {
            FrameKind::Msg => self.handle_channel0_request(msgno, message),
            FrameKind::Rpy | FrameKind::Err if msgno == 0 && !self.greeted => match message {
                Channel0Message::Greeting { profiles } if kind == FrameKind::Rpy => {
                    self.greeted = true;
                    self.peer_profiles = profiles.clone();
                    self.events.push_back((Event::Greeting { profiles }, None));
                    Ok(())
                }
                Channel0Message::Error { code, text } => {
                    Err(BeepError::GreetingRefused { code, text })
                }
                other => Err(BeepError::BadChannelZeroMessage {
                    reason: format!("expected a greeting, got {other:?}"),
                }),
            },
            FrameKind::Rpy | FrameKind::Err => {
                let request = self
                    .requests
                    .remove(&msgno)
                    .ok_or(BeepError::UnexpectedReply { channel: 0, msgno })?;
                self.handle_channel0_reply(request, kind, message)
            }
            FrameKind::Ans { .. } | FrameKind::Nul => Err(BeepError::BadChannelZeroMessage {
                reason: "channel 0 does not use ANS or NUL".into(),
            }),
        }
    }

    fn handle_channel0_request(
        &mut self,
        msgno: u32,
        message: Channel0Message,
    ) -> Result<(), BeepError> {
        match message {
            Channel0Message::Start { number, profiles } => {
                let peer_parity = match self.role {
                    Role::Listener => 1,
                    Role::Initiator => 0,
                };
                let rejection = if number == 0 || number % 2 != peer_parity {
                    Some((501, BeepError::WrongChannelParity { channel: number }))
                } else if self.channels.contains_key(&number)
                    || self.peer_starts.contains_key(&number)
                {
                    Some((550, BeepError::ChannelInUse { channel: number }))
                } else {
                    None
                };
                let offered: Vec<ProfileOffer> = profiles
                    .iter()
                    .filter(|p| self.config.profiles.contains(&p.uri))
                    .cloned()
                    .collect();
                let rejection = rejection.or_else(|| {
                    offered.is_empty().then(|| {
                        let requested = profiles.into_iter().map(|p| p.uri).collect();
                        (
                            550,
                            BeepError::NoProfileOffered {
                                channel: number,
                                requested,
                            },
                        )
                    })
                });
                if let Some((code, error)) = rejection {
                    let reply = Channel0Message::Error {
                        code,
                        text: error.to_string(),
                    };
                    self.queue_reply(0, msgno, FrameKind::Err, reply.to_payload(), None)?;
                    self.events.push_back((
                        Event::StartRejected {
                            channel: number,
                            error,
                        },
                        None,
                    ));
                    return Ok(());
                }
                self.peer_starts.insert(
                    number,
                    PendingStart {
                        msgno,
                        offered: offered.clone(),
                    },
                );
                self.events.push_back((
                    Event::StartRequested {
                        channel: number,
                        profiles: offered,
                    },
                    None,
                ));
                Ok(())
            }
            Channel0Message::Close { number: 0, .. } => {
                // Xgrid clients close the session with channels still open: always agree.
                self.queue_reply(
                    0,
                    msgno,
                    FrameKind::Rpy,
                    Channel0Message::Ok.to_payload(),
                    Some(AfterWrite::EndSession),
                )
            }
            Channel0Message::Close { number, .. } => {
                let verdict = match self.channels.get(&number) {
                    None => Some((550, format!("channel {number} is not open"))),
                    Some(ch) if !ch.idle() => {
                        Some((550, format!("channel {number} is still in use")))
                    }
                    Some(_) => None,
                };
                if let Some((code, text)) = verdict {
                    let reply = Channel0Message::Error { code, text };
                    return self.queue_reply(0, msgno, FrameKind::Err, reply.to_payload(), None);
                }
                self.channels.remove(&number);
                self.queue_reply(
                    0,
                    msgno,
                    FrameKind::Rpy,
                    Channel0Message::Ok.to_payload(),
                    None,
                )?;
                self.events.push_back((
                    Event::ChannelClosed {
                        channel: number,
                        by_peer: true,
                    },
                    None,
                ));
                Ok(())
            }
            other => Err(BeepError::BadChannelZeroMessage {
                reason: format!("a MSG cannot carry {other:?}"),
            }),
        }
    }

    fn handle_channel0_reply(
        &mut self,
        request: Request,
        kind: FrameKind,
        message: Channel0Message,
    ) -> Result<(), BeepError> {
        match (request, kind, message) {
            (Request::Start { channel }, FrameKind::Rpy, Channel0Message::Profile(p)) => {
                self.our_starts.remove(&channel);
                self.generation += 1;
                let ch = Channel::new(self.generation, p.uri.clone(), true);
                self.channels.insert(channel, ch);
                self.events.push_back((
                    Event::ChannelStarted {
                        channel,
                        profile: p.uri,
                        piggyback: p.piggyback,
                    },
                    None,
                ));
            }
            (Request::Start { channel }, FrameKind::Err, Channel0Message::Error { code, text }) => {
                self.our_starts.remove(&channel);
                self.events.push_back((
                    Event::StartRefused {
                        channel,
                        code,
                        text,
                    },
                    None,
                ));
            }
            (Request::Close { channel: 0 }, FrameKind::Rpy, Channel0Message::Ok) => {
                self.state = State::Closed;
                self.events
                    .push_back((Event::SessionClosed { by_peer: false }, None));
            }
            (
                Request::Close { channel: 0 },
                FrameKind::Err,
                Channel0Message::Error { code, text },
            ) => {
                if self.state == State::CloseSent {
                    self.state = State::Open;
                }
                self.events.push_back((
                    Event::CloseRefused {
                        channel: 0,
                        code,
                        text,
                    },
                    None,
                ));
            }
            (Request::Close { channel }, FrameKind::Rpy, Channel0Message::Ok) => {
                // Gone already if the peer's own close of it crossed ours.
                if self.channels.remove(&channel).is_some() {
                    self.events.push_back((
                        Event::ChannelClosed {
                            channel,
                            by_peer: false,
                        },
                        None,
                    ));
                }
            }
            (Request::Close { channel }, FrameKind::Err, Channel0Message::Error { code, text }) => {
                if let Some(ch) = self.channels.get_mut(&channel) {
                    ch.close = CloseState::Open;
                }
                self.events.push_back((
                    Event::CloseRefused {
                        channel,
                        code,
                        text,
                    },
                    None,
                ));
            }
            (_, _, other) => {
                return Err(BeepError::BadChannelZeroMessage {
                    reason: format!("unexpected reply {other:?}"),
                })
            }
        }
        Ok(())
    }

    /// Test hook: move every sequence counter of `channel` to `value`, as if that many
    /// octets had flowed both ways, so wrap-around at 2^32 can be tested quickly.
    #[cfg(test)]
    fn force_seqnos(&mut self, channel: u32, value: u32) {
        if let Some(ch) = self.channels.get_mut(&channel) {
            ch.recv_seq = value;
            ch.consumed = value;
            ch.advertised_ackno = value;
            ch.send_seq = value;
            ch.peer_ackno = value;
        }
    }
}

fn describe(frame: &DataFrame) -> String {
    format!(
        "{:?} on channel {} (msgno {})",
        frame.kind, frame.channel, frame.msgno
    )
}

fn append(
    mut partial: Partial,
    payload: Vec<u8>,
    channel: u32,
    limit: usize,
) -> Result<Partial, BeepError> {
    if partial.payload.len() + payload.len() > limit {
        return Err(BeepError::MessageTooLarge { channel, limit });
    }
    if partial.payload.is_empty() {
        partial.payload = payload;
    } else {
        partial.payload.extend_from_slice(&payload);
    }
    Ok(partial)
}

// A reply must answer the oldest of our MSGs still awaiting one (RFC 3080 §2.6.1).
fn check_reply_order(ch: &Channel, channel: u32, msgno: u32) -> Result<(), BeepError> {
    match ch.awaiting.front() {
        Some(&front) if front == msgno => Ok(()),
        Some(&front) if ch.awaiting.contains(&msgno) => Err(BeepError::ReplyOutOfOrder {
            channel,
            expected: front,
            got: msgno,
        }),
        _ => Err(BeepError::UnexpectedReply { channel, msgno }),
    }
}

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;
