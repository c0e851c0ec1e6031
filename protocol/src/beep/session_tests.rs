//! Tests of the session state machine: two sessions driven against each other in memory,
//! and one session fed hand-written bytes for each rule a peer can break.

use super::*;
use crate::profile;
use proptest::prelude::*;

const CLIENT: &str = profile::CLIENT;
const AUTH: &str = profile::TWO_WAY_RANDOM;

fn listener_config() -> Config {
    Config {
        profiles: profile::CONTROLLER_GREETING
            .iter()
            .map(|s| s.to_string())
            .collect(),
        ..Config::default()
    }
}

/// Two sessions and everything that crossed between them.
struct Pair {
    client: Session,
    server: Session,
    client_events: Vec<Event>,
    server_events: Vec<Event>,
    /// Frames the client sent, decoded, to check fragmentation and SEQs.
    client_frames: Vec<Frame>,
    server_frames: Vec<Frame>,
}

impl Pair {
    fn new(client_config: Config, server_config: Config) -> Pair {
        Pair {
            client: Session::new(Role::Initiator, client_config),
            server: Session::new(Role::Listener, server_config),
            client_events: Vec::new(),
            server_events: Vec::new(),
            client_frames: Vec::new(),
            server_frames: Vec::new(),
        }
    }

    fn greeted() -> Pair {
        let mut p = Pair::new(Config::default(), listener_config());
        p.run();
        assert_eq!(
            p.take_client(),
            vec![Event::Greeting {
                profiles: listener_config().profiles
            }]
        );
        assert_eq!(p.take_server(), vec![Event::Greeting { profiles: vec![] }]);
        p
    }

    /// Move bytes both ways until neither side has anything to send, taking every event.
    fn run(&mut self) {
        for _ in 0..10_000 {
            let mut a = Vec::new();
            self.client.poll_transmit(&mut a);
            let mut b = Vec::new();
            self.server.poll_transmit(&mut b);
            record(&a, &mut self.client_frames);
            record(&b, &mut self.server_frames);
            self.server.handle_input(&a);
            self.client.handle_input(&b);
            while let Some(e) = self.client.poll_event() {
                self.client_events.push(e);
            }
            while let Some(e) = self.server.poll_event() {
                self.server_events.push(e);
            }
            if a.is_empty() && b.is_empty() {
                return;
            }
        }
        panic!("sessions never went quiet");
    }

    fn take_client(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.client_events)
    }

    fn take_server(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.server_events)
    }

    /// Start a channel from the client with `profile`, accepted by the server.
    fn open(&mut self, profile: &str) -> u32 {
        let channel = self
            .client
            .start_channel(vec![ProfileOffer::new(profile)])
            .expect("start");
        self.run();
        assert_eq!(
            self.take_server(),
            vec![Event::StartRequested {
                channel,
                profiles: vec![ProfileOffer::new(profile)]
            }]
        );
        self.server
            .accept_start(channel, profile, None)
            .expect("accept");
        self.run();
        // An accept with no piggyback writes `<profile uri='…'/>`.
        assert_eq!(
            self.take_client(),
            vec![Event::ChannelStarted {
                channel,
                profile: profile.into(),
                piggyback: None
            }]
        );
        channel
    }
}

fn record(bytes: &[u8], frames: &mut Vec<Frame>) {
    let mut d = FrameDecoder::default();
    d.push(bytes);
    while let Ok(Some(f)) = d.next_frame() {
        frames.push(f);
    }
}

fn data_frames(frames: &[Frame], channel: u32) -> Vec<&DataFrame> {
    frames
        .iter()
        .filter_map(|f| match f {
            Frame::Data(d) if d.channel == channel => Some(d),
            _ => None,
        })
        .collect()
}

#[test]
fn whole_conversation_between_two_sessions() {
    let mut p = Pair::greeted();

    // A start the server refuses, as a controller does before authentication.
    let refused = p
        .client
        .start_channel(vec![ProfileOffer::new(CLIENT)])
        .expect("start");
    assert_eq!(refused, 1, "the initiator opens odd channels");
    p.run();
    assert_eq!(
        p.take_server(),
        vec![Event::StartRequested {
            channel: 1,
            profiles: vec![ProfileOffer::new(CLIENT)]
        }]
    );
    p.server
        .refuse_start(1, 530, "Authentication required")
        .expect("refuse");
    p.run();
    assert_eq!(
        p.take_client(),
        vec![Event::StartRefused {
            channel: 1,
            code: 530,
            text: "Authentication required".into()
        }]
    );
    let last_err = data_frames(&p.server_frames, 0)
        .last()
        .map(|f| (f.kind, f.payload.clone()));
    assert_eq!(
        last_err,
        Some((FrameKind::Err, b"Content-Type: application/beep+xml\r\n\r\n<error code='530'>Authentication required</error>".to_vec()))
    );

    // A start with a piggyback, answered with a piggyback.
    let auth = p
        .client
        .start_channel(vec![ProfileOffer::with_piggyback(AUTH, "")])
        .expect("start");
    assert_eq!(
        auth, 3,
        "channel 1 was refused, so the next odd number is used"
    );
    p.run();
    assert_eq!(
        p.take_server(),
        vec![Event::StartRequested {
            channel: 3,
            profiles: vec![ProfileOffer::with_piggyback(AUTH, "")]
        }]
    );
    p.server
        .accept_start(3, AUTH, Some("<blob>QUFF</blob>".into()))
        .expect("accept");
    p.run();
    assert_eq!(
        p.take_client(),
        vec![Event::ChannelStarted {
            channel: 3,
            profile: AUTH.into(),
            piggyback: Some("<blob>QUFF</blob>".into())
        }]
    );
    assert_eq!(p.client.channel_profile(3), Some(AUTH));

    // Several MSG/RPY exchanges; replies carry the msgno of their MSG.
    for i in 0..3u32 {
        let msgno = p
            .client
            .send_msg(3, format!("\r\nrequest {i}").into_bytes())
            .expect("msg");
        assert_eq!(msgno, i);
        p.run();
        assert_eq!(
            p.take_server(),
            vec![Event::Message {
                channel: 3,
                msgno,
                payload: format!("\r\nrequest {i}").into_bytes()
            }]
        );
        p.server
            .send_rpy(3, msgno, format!("\r\nreply {i}").into_bytes())
            .expect("rpy");
        p.run();
        assert_eq!(
            p.take_client(),
            vec![Event::Reply {
                channel: 3,
                msgno,
                payload: format!("\r\nreply {i}").into_bytes()
            }]
        );
    }

    // A message larger than the 4096 window has to wait for SEQs.
    let big: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
    let sent_before = p.client_frames.len();
    let msgno = p.client.send_msg(3, big.clone()).expect("msg");
    p.run();
    assert_eq!(
        p.take_server(),
        vec![Event::Message {
            channel: 3,
            msgno,
            payload: big.clone()
        }]
    );
    let frames: Vec<&DataFrame> = data_frames(&p.client_frames[sent_before..], 3);
    assert!(
        frames.len() >= 3,
        "10000 octets need at least three frames in a 4096 window"
    );
    assert!(frames.iter().all(|f| f.payload.len() <= 4096));
    assert_eq!(
        frames.iter().map(|f| f.payload.len()).sum::<usize>(),
        10_000
    );
    let server_seqs = p
        .server_frames
        .iter()
        .filter(|f| matches!(f, Frame::Seq { channel: 3, .. }))
        .count();
    assert!(
        server_seqs >= 2,
        "the server granted window with SEQ frames"
    );
    p.server.send_rpy(3, msgno, Vec::new()).expect("rpy");
    p.run();
    assert_eq!(
        p.take_client(),
        vec![Event::Reply {
            channel: 3,
            msgno,
            payload: vec![]
        }]
    );

    // ANS/NUL, the other way round: the server asks, the client answers twice.
    let msgno = p.server.send_msg(3, b"\r\nlist".to_vec()).expect("msg");
    p.run();
    assert_eq!(
        p.take_client(),
        vec![Event::Message {
            channel: 3,
            msgno,
            payload: b"\r\nlist".to_vec()
        }]
    );
    assert_eq!(p.client.send_ans(3, msgno, b"one".to_vec()), Ok(0));
    assert_eq!(p.client.send_ans(3, msgno, b"two".to_vec()), Ok(1));
    p.client.send_nul(3, msgno).expect("nul");
    p.run();
    assert_eq!(
        p.take_server(),
        vec![
            Event::Answer {
                channel: 3,
                msgno,
                ansno: 0,
                payload: b"one".to_vec()
            },
            Event::Answer {
                channel: 3,
                msgno,
                ansno: 1,
                payload: b"two".to_vec()
            },
            Event::AnswersDone { channel: 3, msgno },
        ]
    );

    // Close the channel, then the session.
    p.client.close_channel(3).expect("close");
    p.run();
    assert_eq!(
        p.take_client(),
        vec![Event::ChannelClosed {
            channel: 3,
            by_peer: false
        }]
    );
    assert_eq!(
        p.take_server(),
        vec![Event::ChannelClosed {
            channel: 3,
            by_peer: true
        }]
    );
    assert_eq!(
        p.client.send_msg(3, vec![]),
        Err(BeepError::NoSuchChannel { channel: 3 })
    );
    p.client.close_session().expect("close session");
    p.run();
    assert_eq!(
        p.take_client(),
        vec![Event::SessionClosed { by_peer: false }]
    );
    assert_eq!(
        p.take_server(),
        vec![Event::SessionClosed { by_peer: true }]
    );
    assert!(p.client.is_closed() && p.server.is_closed());
    assert_eq!(p.client.send_msg(3, vec![]), Err(BeepError::SessionClosed));
}

#[test]
fn listener_opens_even_channels_and_its_close_waits_for_owed_replies() {
    let mut p = Pair::new(
        Config {
            profiles: vec![CLIENT.into()],
            ..Config::default()
        },
        listener_config(),
    );
    p.run();
    p.take_client();
    p.take_server();
    let ch = p
        .server
        .start_channel(vec![ProfileOffer::new(CLIENT)])
        .expect("start");
    assert_eq!(ch, 2);
    p.run();
    assert_eq!(
        p.take_client(),
        vec![Event::StartRequested {
            channel: 2,
            profiles: vec![ProfileOffer::new(CLIENT)]
        }]
    );
    p.client.accept_start(2, CLIENT, None).expect("accept");
    p.run();
    assert!(matches!(
        p.take_server().as_slice(),
        [Event::ChannelStarted { channel: 2, .. }]
    ));
    // The server owes the client a reply on channel 2, so its close waits for that reply.
    let msgno = p.client.send_msg(2, b"x".to_vec()).expect("msg");
    p.run();
    assert_eq!(
        p.take_server(),
        vec![Event::Message {
            channel: 2,
            msgno,
            payload: b"x".to_vec()
        }]
    );
    p.server.close_channel(2).expect("close");
    p.run();
    let early = p.take_client();
    assert!(
        early.is_empty(),
        "the close waits for the reply the server owes: {early:?}"
    );
    p.server.send_rpy(2, msgno, b"y".to_vec()).expect("rpy");
    p.run();
    assert_eq!(
        p.take_client(),
        vec![
            Event::Reply {
                channel: 2,
                msgno,
                payload: b"y".to_vec()
            },
            Event::ChannelClosed {
                channel: 2,
                by_peer: true
            }
        ]
    );
    assert_eq!(
        p.take_server(),
        vec![Event::ChannelClosed {
            channel: 2,
            by_peer: false
        }]
    );
}

#[test]
fn replies_go_out_in_msgno_order() {
    let mut p = Pair::greeted();
    let ch = p.open(CLIENT);
    let m0 = p.client.send_msg(ch, b"a".to_vec()).expect("msg");
    let m1 = p.client.send_msg(ch, b"b".to_vec()).expect("msg");
    let m2 = p.client.send_msg(ch, b"c".to_vec()).expect("msg");
    p.run();
    assert_eq!(p.take_server().len(), 3);
    // Answer the last two first: nothing may leave until MSG 0 is answered.
    p.server.send_rpy(ch, m2, b"C".to_vec()).expect("rpy");
    p.server.send_err(ch, m1, b"B".to_vec()).expect("err");
    p.run();
    assert!(p.take_client().is_empty(), "replies to later MSGs wait");
    assert_eq!(
        p.server.send_rpy(ch, m1, vec![]),
        Err(BeepError::NoSuchMessage {
            channel: ch,
            msgno: m1
        })
    );
    p.server.send_rpy(ch, m0, b"A".to_vec()).expect("rpy");
    p.run();
    assert_eq!(
        p.take_client(),
        vec![
            Event::Reply {
                channel: ch,
                msgno: m0,
                payload: b"A".to_vec()
            },
            Event::ErrorReply {
                channel: ch,
                msgno: m1,
                payload: b"B".to_vec()
            },
            Event::Reply {
                channel: ch,
                msgno: m2,
                payload: b"C".to_vec()
            },
        ]
    );
}

#[test]
fn larger_window_is_announced_and_used() {
    let big = Config {
        window: 65536,
        ..listener_config()
    };
    let mut p = Pair::new(Config::default(), big);
    p.run();
    assert!(p.server_frames.contains(&Frame::Seq {
        channel: 0,
        ackno: 0,
        window: 65536
    }));
    p.take_client();
    p.take_server();
    let ch = p.open(CLIENT);
    assert!(p.server_frames.contains(&Frame::Seq {
        channel: ch,
        ackno: 0,
        window: 65536
    }));
    let before = p.client_frames.len();
    let payload = vec![7u8; 20_000];
    let msgno = p.client.send_msg(ch, payload.clone()).expect("msg");
    p.run();
    let frames = data_frames(&p.client_frames[before..], ch);
    assert_eq!(
        frames.len(),
        1,
        "20000 octets fit the 65536 window in one frame"
    );
    assert_eq!(
        p.take_server(),
        vec![Event::Message {
            channel: ch,
            msgno,
            payload
        }]
    );
}

#[test]
fn frames_respect_the_configured_frame_size() {
    let mut p = Pair::new(
        Config {
            max_frame_size: 1000,
            ..Config::default()
        },
        listener_config(),
    );
    p.run();
    p.take_client();
    p.take_server();
    let ch = p.open(CLIENT);
    let before = p.client_frames.len();
    p.client.send_msg(ch, vec![1u8; 2500]).expect("msg");
    p.run();
    let sizes: Vec<usize> = data_frames(&p.client_frames[before..], ch)
        .iter()
        .map(|f| f.payload.len())
        .collect();
    assert_eq!(sizes, vec![1000, 1000, 500]);
}

#[test]
fn sequence_numbers_wrap_at_2_pow_32() {
    let mut p = Pair::greeted();
    let ch = p.open(CLIENT);
    let start = u32::MAX - 99;
    p.client.force_seqnos(ch, start);
    p.server.force_seqnos(ch, start);
    let before = p.client_frames.len();
    let payload: Vec<u8> = (0..9000u32).map(|i| i as u8).collect();
    let msgno = p.client.send_msg(ch, payload.clone()).expect("msg");
    p.run();
    assert_eq!(
        p.take_server(),
        vec![Event::Message {
            channel: ch,
            msgno,
            payload
        }]
    );
    let seqnos: Vec<u32> = data_frames(&p.client_frames[before..], ch)
        .iter()
        .map(|f| f.seqno)
        .collect();
    assert_eq!(seqnos.first(), Some(&start));
    assert!(
        seqnos.iter().any(|s| *s < 9000),
        "seqnos wrapped past 2^32: {seqnos:?}"
    );
    let acks: Vec<u32> = p
        .server_frames
        .iter()
        .filter_map(|f| match f {
            Frame::Seq { channel, ackno, .. } if *channel == ch => Some(*ackno),
            _ => None,
        })
        .collect();
    // SEQs come each time half the 4096-octet window is used: the last one leaves less
    // than that unacknowledged, counted across the wrap.
    let last = *acks.last().expect("the server granted window");
    assert!(
        start.wrapping_add(9000).wrapping_sub(last) < 2048,
        "acks {acks:?} from {start}"
    );
    assert!(acks.iter().any(|a| *a < 9000), "no ack wrapped: {acks:?}");
    // The channel still works after the wrap.
    p.server.send_rpy(ch, msgno, b"ok".to_vec()).expect("rpy");
    p.run();
    assert_eq!(
        p.take_client(),
        vec![Event::Reply {
            channel: ch,
            msgno,
            payload: b"ok".to_vec()
        }]
    );
}

#[test]
fn seq_before_greeting_is_tolerated_and_server_greets_at_once() {
    let mut server = Session::new(Role::Listener, listener_config());
    let mut out = Vec::new();
    server.poll_transmit(&mut out);
    assert!(
        out.starts_with(b"RPY 0 0 . 0 "),
        "the listener greets before hearing anything"
    );
    server.handle_input(b"SEQ 0 0 4096\r\n");
    assert_eq!(server.poll_event(), None);
    assert!(!server.is_closed());
}

// ------------------------------------------------------------------ hand-written peer

/// A peer written by hand: it tracks its own seqnos so that each test breaks only one rule.
struct RawPeer {
    seq: HashMap<u32, u32>,
}

impl RawPeer {
    fn new() -> Self {
        RawPeer {
            seq: HashMap::new(),
        }
    }

    fn frame(
        &mut self,
        kind: FrameKind,
        channel: u32,
        msgno: u32,
        more: bool,
        payload: &[u8],
    ) -> Vec<u8> {
        let seq = self.seq.entry(channel).or_insert(0);
        let mut out = Vec::new();
        encode_data(kind, channel, msgno, more, *seq, payload, &mut out);
        *seq = seq.wrapping_add(payload.len() as u32);
        out
    }

    fn channel0(&mut self, kind: FrameKind, msgno: u32, message: Channel0Message) -> Vec<u8> {
        self.frame(kind, 0, msgno, false, &message.to_payload())
    }

    fn greeting(&mut self) -> Vec<u8> {
        self.channel0(
            FrameKind::Rpy,
            0,
            Channel0Message::Greeting { profiles: vec![] },
        )
    }
}

fn drain(session: &mut Session) -> Vec<Event> {
    std::iter::from_fn(|| session.poll_event()).collect()
}

fn output(session: &mut Session) -> Vec<Frame> {
    let mut out = Vec::new();
    session.poll_transmit(&mut out);
    let mut frames = Vec::new();
    record(&out, &mut frames);
    frames
}

/// A listener that has seen the raw initiator's greeting.
fn greeted_listener(config: Config) -> (Session, RawPeer) {
    let mut server = Session::new(Role::Listener, config);
    let mut peer = RawPeer::new();
    server.handle_input(&peer.greeting());
    assert_eq!(
        drain(&mut server),
        vec![Event::Greeting { profiles: vec![] }]
    );
    output(&mut server);
    (server, peer)
}

/// A listener with channel 1 open on the client profile.
fn listener_with_channel(config: Config) -> (Session, RawPeer) {
    let (mut server, mut peer) = greeted_listener(config);
    let start = Channel0Message::Start {
        number: 1,
        profiles: vec![ProfileOffer::new(CLIENT)],
    };
    server.handle_input(&peer.channel0(FrameKind::Msg, 1, start));
    assert!(matches!(
        drain(&mut server).as_slice(),
        [Event::StartRequested { channel: 1, .. }]
    ));
    server.accept_start(1, CLIENT, None).expect("accept");
    output(&mut server);
    (server, peer)
}

fn failure(session: &mut Session) -> Option<BeepError> {
    let events = drain(session);
    assert!(
        session.is_closed(),
        "the session must be closed after a violation: {events:?}"
    );
    match events.last() {
        Some(Event::Failed(e)) => Some(e.clone()),
        _ => None,
    }
}

#[test]
fn violation_bad_header() {
    let (mut s, _) = greeted_listener(listener_config());
    s.handle_input(b"MSG 0 one . 0 0\r\nEND\r\n");
    assert!(matches!(failure(&mut s), Some(BeepError::BadHeader { .. })));
    assert_eq!(
        s.start_channel(vec![ProfileOffer::new(CLIENT)]),
        Err(BeepError::SessionClosed)
    );
    assert!(
        output(&mut s).is_empty(),
        "nothing is sent after a violation"
    );
}

#[test]
fn violation_wrong_size() {
    let (mut s, _) = greeted_listener(listener_config());
    s.handle_input(b"MSG 0 1 . 0 10\r\n<ok/>END\r\nMSG 0 2 . 10 0\r\nEND\r\n");
    assert_eq!(failure(&mut s), Some(BeepError::MissingTrailer));
}

#[test]
fn violation_missing_trailer() {
    let (mut s, _) = greeted_listener(listener_config());
    s.handle_input(b"MSG 0 1 . 0 5\r\n<ok/>\r\n");
    assert_eq!(failure(&mut s), Some(BeepError::MissingTrailer));
}

#[test]
fn violation_wrong_seqno() {
    let (mut s, peer) = greeted_listener(listener_config());
    let expected = peer.seq[&0];
    let mut bytes = Vec::new();
    encode_data(FrameKind::Msg, 0, 1, false, expected + 7, b"", &mut bytes);
    s.handle_input(&bytes);
    assert_eq!(
        failure(&mut s),
        Some(BeepError::UnexpectedSeqno {
            channel: 0,
            expected,
            got: expected + 7
        })
    );
}

#[test]
fn violation_window_overrun() {
    let (mut s, mut peer) = listener_with_channel(listener_config());
    // Nothing of channel 1 was acknowledged yet, so the window ends at octet 4096.
    s.handle_input(&peer.frame(FrameKind::Msg, 1, 0, true, &[0u8; 4000]));
    assert!(!s.is_closed());
    s.handle_input(&peer.frame(FrameKind::Msg, 1, 0, true, &[0u8; 100]));
    assert_eq!(
        failure(&mut s),
        Some(BeepError::WindowOverrun {
            channel: 1,
            excess: 4
        })
    );
}

#[test]
fn violation_reply_out_of_order_and_unexpected_reply() {
    let (mut s, mut peer) = listener_with_channel(listener_config());
    assert_eq!(s.send_msg(1, b"a".to_vec()), Ok(0));
    assert_eq!(s.send_msg(1, b"b".to_vec()), Ok(1));
    output(&mut s);
    s.handle_input(&peer.frame(FrameKind::Rpy, 1, 1, false, b""));
    assert_eq!(
        failure(&mut s),
        Some(BeepError::ReplyOutOfOrder {
            channel: 1,
            expected: 0,
            got: 1
        })
    );

    let (mut s, mut peer) = listener_with_channel(listener_config());
    s.handle_input(&peer.frame(FrameKind::Rpy, 1, 5, false, b""));
    assert_eq!(
        failure(&mut s),
        Some(BeepError::UnexpectedReply {
            channel: 1,
            msgno: 5
        })
    );
}

#[test]
fn violation_channel_of_wrong_parity_is_refused_with_501() {
    let (mut s, mut peer) = greeted_listener(listener_config());
    let start = Channel0Message::Start {
        number: 2,
        profiles: vec![ProfileOffer::new(CLIENT)],
    };
    s.handle_input(&peer.channel0(FrameKind::Msg, 1, start));
    assert_eq!(
        drain(&mut s),
        vec![Event::StartRejected {
            channel: 2,
            error: BeepError::WrongChannelParity { channel: 2 }
        }]
    );
    let frames = output(&mut s);
    let Some(Frame::Data(reply)) = frames.first() else {
        panic!("no reply: {frames:?}")
    };
    assert_eq!(
        (reply.kind, reply.channel, reply.msgno),
        (FrameKind::Err, 0, 1)
    );
    assert!(matches!(
        channel0::parse(&reply.payload),
        Ok(Channel0Message::Error { code: 501, .. })
    ));
    // Data on the refused channel is then a frame on an unknown channel.
    s.handle_input(&peer.frame(FrameKind::Msg, 2, 0, false, b"x"));
    assert_eq!(
        failure(&mut s),
        Some(BeepError::UnknownChannel { channel: 2 })
    );
}

#[test]
fn violation_unknown_profile_is_refused_with_550_by_the_session() {
    let (mut s, mut peer) = greeted_listener(listener_config());
    let start = Channel0Message::Start {
        number: 1,
        profiles: vec![ProfileOffer::new("http://example.com/nope")],
    };
    s.handle_input(&peer.channel0(FrameKind::Msg, 1, start));
    assert_eq!(
        drain(&mut s),
        vec![Event::StartRejected {
            channel: 1,
            error: BeepError::NoProfileOffered {
                channel: 1,
                requested: vec!["http://example.com/nope".into()]
            }
        }]
    );
    let frames = output(&mut s);
    let Some(Frame::Data(reply)) = frames.first() else {
        panic!("no reply: {frames:?}")
    };
    assert!(matches!(
        channel0::parse(&reply.payload),
        Ok(Channel0Message::Error { code: 550, .. })
    ));
    assert!(!s.is_closed());
}

#[test]
fn violation_oversize_frame() {
    let (mut s, mut peer) = listener_with_channel(Config {
        max_frame_size: 1000,
        ..listener_config()
    });
    s.handle_input(&peer.frame(FrameKind::Msg, 1, 0, false, &[0u8; 1001]));
    assert_eq!(
        failure(&mut s),
        Some(BeepError::FrameTooLarge {
            size: 1001,
            limit: 1000
        })
    );
}

#[test]
fn violation_oversize_message() {
    let (mut s, mut peer) = listener_with_channel(Config {
        max_message_size: 3000,
        ..listener_config()
    });
    s.handle_input(&peer.frame(FrameKind::Msg, 1, 0, true, &[0u8; 2000]));
    s.handle_input(&peer.frame(FrameKind::Msg, 1, 0, false, &[0u8; 1001]));
    assert_eq!(
        failure(&mut s),
        Some(BeepError::MessageTooLarge {
            channel: 1,
            limit: 3000
        })
    );
}

#[test]
fn violation_data_before_greeting() {
    let mut s = Session::new(Role::Listener, listener_config());
    let mut peer = RawPeer::new();
    let start = Channel0Message::Start {
        number: 1,
        profiles: vec![ProfileOffer::new(CLIENT)],
    };
    s.handle_input(&peer.channel0(FrameKind::Msg, 1, start));
    assert!(matches!(
        failure(&mut s),
        Some(BeepError::MissingGreeting { .. })
    ));
}

#[test]
fn violation_greeting_refused_by_peer() {
    let mut s = Session::new(Role::Initiator, Config::default());
    let mut peer = RawPeer::new();
    s.handle_input(&peer.channel0(
        FrameKind::Err,
        0,
        Channel0Message::Error {
            code: 421,
            text: "busy".into(),
        },
    ));
    assert_eq!(
        failure(&mut s),
        Some(BeepError::GreetingRefused {
            code: 421,
            text: "busy".into()
        })
    );
}

#[test]
fn violation_bad_channel_zero_message() {
    let (mut s, mut peer) = greeted_listener(listener_config());
    s.handle_input(&peer.frame(FrameKind::Msg, 0, 1, false, b"<start number='1'>"));
    assert!(matches!(
        failure(&mut s),
        Some(BeepError::BadChannelZeroMessage { .. })
    ));
}

#[test]
fn violation_ack_of_octets_never_sent() {
    let (mut s, _) = greeted_listener(listener_config());
    s.handle_input(b"SEQ 0 999999 4096\r\n");
    assert!(matches!(
        failure(&mut s),
        Some(BeepError::BadAck {
            channel: 0,
            ackno: 999_999,
            ..
        })
    ));
}

#[test]
fn violation_msgno_in_use_and_bad_continuation() {
    let (mut s, mut peer) = listener_with_channel(listener_config());
    s.handle_input(&peer.frame(FrameKind::Msg, 1, 0, false, b"a"));
    s.handle_input(&peer.frame(FrameKind::Msg, 1, 0, false, b"b"));
    assert_eq!(
        failure(&mut s),
        Some(BeepError::MsgnoInUse {
            channel: 1,
            msgno: 0
        })
    );

    let (mut s, mut peer) = listener_with_channel(listener_config());
    s.handle_input(&peer.frame(FrameKind::Msg, 1, 0, true, b"a"));
    s.handle_input(&peer.frame(FrameKind::Msg, 1, 1, false, b"b"));
    assert!(matches!(
        failure(&mut s),
        Some(BeepError::BadContinuation { channel: 1, .. })
    ));
}

#[test]
fn close_of_a_busy_channel_is_refused_both_ways() {
    // The peer closes channel 1 while we still owe it a reply: we refuse with 550.
    let (mut s, mut peer) = listener_with_channel(listener_config());
    s.handle_input(&peer.frame(FrameKind::Msg, 1, 0, false, b"job"));
    assert!(matches!(
        drain(&mut s).as_slice(),
        [Event::Message {
            channel: 1,
            msgno: 0,
            ..
        }]
    ));
    output(&mut s);
    let close = Channel0Message::Close {
        number: 1,
        code: 200,
    };
    s.handle_input(&peer.channel0(FrameKind::Msg, 2, close));
    assert!(drain(&mut s).is_empty());
    let frames = output(&mut s);
    let replies: Vec<_> = data_frames(&frames, 0)
        .into_iter()
        .map(|f| (f.kind, f.msgno, channel0::parse(&f.payload)))
        .collect();
    assert!(
        matches!(
            replies.as_slice(),
            [(
                FrameKind::Err,
                2,
                Ok(Channel0Message::Error { code: 550, .. })
            )]
        ),
        "{replies:?}"
    );
    // The channel still works.
    s.send_rpy(1, 0, b"done".to_vec()).expect("rpy");

    // We close channel 1 and the peer refuses: the channel is ours to use again.
    s.close_channel(1).expect("close");
    let frames = output(&mut s);
    let close_msg = data_frames(&frames, 0)
        .into_iter()
        .find(|f| f.kind == FrameKind::Msg)
        .map(|f| (f.msgno, channel0::parse(&f.payload)));
    let Some((
        msgno,
        Ok(Channel0Message::Close {
            number: 1,
            code: 200,
        }),
    )) = close_msg
    else {
        panic!("no close sent: {frames:?}")
    };
    let refusal = Channel0Message::Error {
        code: 550,
        text: "still working".into(),
    };
    s.handle_input(&peer.channel0(FrameKind::Err, msgno, refusal));
    assert_eq!(
        drain(&mut s),
        vec![Event::CloseRefused {
            channel: 1,
            code: 550,
            text: "still working".into()
        }]
    );
    assert!(s.send_msg(1, b"more".to_vec()).is_ok());
}

#[test]
fn peer_may_close_the_session_with_channels_open() {
    let (mut s, mut peer) = listener_with_channel(listener_config());
    let close = Channel0Message::Close {
        number: 0,
        code: 200,
    };
    s.handle_input(&peer.channel0(FrameKind::Msg, 2, close));
    let frames = output(&mut s);
    let reply = data_frames(&frames, 0)
        .first()
        .map(|f| (f.kind, f.msgno, channel0::parse(&f.payload)));
    assert_eq!(reply, Some((FrameKind::Rpy, 2, Ok(Channel0Message::Ok))));
    assert_eq!(drain(&mut s), vec![Event::SessionClosed { by_peer: true }]);
    assert!(s.is_closed());
    // The peer then drops the connection; that is no error any more.
    s.handle_eof();
    assert!(drain(&mut s).is_empty());
}

#[test]
fn eof_before_close_is_connection_lost() {
    let (mut s, _) = greeted_listener(listener_config());
    s.handle_eof();
    assert_eq!(failure(&mut s), Some(BeepError::ConnectionLost));
}

// ------------------------------------------------------------------ property tests

/// The bytes a listener sends an initiator that has started channel 1: greeting, the start
/// reply, then `messages` as MSGs cut into frames of `frame_sizes`.
fn listener_stream(messages: &[Vec<u8>], frame_sizes: &[usize]) -> Vec<u8> {
    let mut peer = RawPeer::new();
    let mut out = peer.greeting();
    out.extend(peer.channel0(
        FrameKind::Rpy,
        1,
        Channel0Message::Profile(ProfileOffer::new(CLIENT)),
    ));
    let mut sizes = frame_sizes.iter().cycle();
    for (msgno, m) in messages.iter().enumerate() {
        let mut offset = 0;
        loop {
            let n = sizes
                .next()
                .copied()
                .unwrap_or(m.len())
                .min(m.len() - offset);
            let more = offset + n < m.len();
            out.extend(peer.frame(
                FrameKind::Msg,
                1,
                msgno as u32,
                more,
                &m[offset..offset + n],
            ));
            offset += n;
            if !more {
                break;
            }
        }
    }
    out
}

fn initiator_events(stream: &[u8], cuts: &[usize]) -> Vec<Event> {
    let mut s = Session::new(Role::Initiator, Config::default());
    s.start_channel(vec![ProfileOffer::new(CLIENT)])
        .expect("start");
    let mut sink = Vec::new();
    s.poll_transmit(&mut sink);
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (stream.len() + 1)).collect();
    cuts.sort_unstable();
    cuts.push(stream.len());
    let mut events = Vec::new();
    let mut pos = 0;
    for cut in cuts {
        s.handle_input(&stream[pos..cut]);
        pos = cut;
        events.extend(std::iter::from_fn(|| s.poll_event()));
        s.poll_transmit(&mut sink);
    }
    events
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn any_split_of_the_stream_gives_the_same_events(
        // At most 4096 octets: the peer may not send more before it sees our SEQ.
        messages in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..800), 0..6),
        frame_sizes in proptest::collection::vec(1usize..600, 1..4),
        cuts in proptest::collection::vec(any::<usize>(), 0..12),
        garbage in proptest::option::of(proptest::collection::vec(any::<u8>(), 1..40)),
    ) {
        let mut stream = listener_stream(&messages, &frame_sizes);
        if let Some(g) = &garbage {
            stream.extend_from_slice(g);
        }
        let whole = initiator_events(&stream, &[]);
        let split = initiator_events(&stream, &cuts);
        prop_assert_eq!(&whole, &split);
        // And the events are the messages that were sent.
        let expected: Vec<Event> = messages
            .iter()
            .enumerate()
            .map(|(i, m)| Event::Message { channel: 1, msgno: i as u32, payload: m.clone() })
            .collect();
        prop_assert!(whole.len() >= 2 + expected.len());
        prop_assert_eq!(&whole[2..2 + expected.len()], expected.as_slice());
    }

    #[test]
    fn messages_of_any_size_arrive_whole_and_in_order(
        sizes in proptest::collection::vec(0usize..20_000, 1..5),
        window in prop_oneof![Just(4096u32), 4096u32..70_000],
        max_frame in 1u32..9000,
    ) {
        let mut p = Pair::new(
            Config { window, max_frame_size: max_frame, ..Config::default() },
            Config { window, max_frame_size: max_frame, ..listener_config() },
        );
        p.run();
        p.take_client();
        p.take_server();
        let ch = p.open(CLIENT);
        let payloads: Vec<Vec<u8>> = sizes.iter().enumerate().map(|(i, n)| vec![i as u8; *n]).collect();
        let msgnos: Vec<u32> = payloads.iter().map(|m| p.client.send_msg(ch, m.clone()).expect("msg")).collect();
        p.run();
        let expected: Vec<Event> = msgnos
            .iter()
            .zip(&payloads)
            .map(|(msgno, m)| Event::Message { channel: ch, msgno: *msgno, payload: m.clone() })
            .collect();
        prop_assert_eq!(p.take_server(), expected);
        prop_assert!(data_frames(&p.client_frames, ch).iter().all(|f| f.payload.len() <= max_frame as usize));
    }

    #[test]
    fn arbitrary_bytes_never_panic_a_session(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let (mut s, mut peer) = greeted_listener(listener_config());
        s.handle_input(&peer.frame(FrameKind::Msg, 0, 1, false, &bytes));
        s.handle_input(&bytes);
        drain(&mut s);
        output(&mut s);
    }
}

/// A SEQ goes out once half the window is used, not after every message: small messages
/// cost the peer no segment of their own until then.
#[test]
fn window_is_granted_again_once_half_of_it_is_used() {
    let mut p = Pair::greeted();
    let ch = p.open(CLIENT);
    let seqs = |p: &Pair| {
        p.server_frames
            .iter()
            .filter(|f| matches!(f, Frame::Seq { channel, .. } if *channel == ch))
            .count()
    };
    let before = seqs(&p);
    // Nine messages of 200 octets (plus headers): less than half of the 4096 window.
    for _ in 0..9 {
        p.client.send_msg(ch, vec![7u8; 200]).expect("msg");
        p.run();
    }
    assert_eq!(p.take_server().len(), 9);
    assert_eq!(seqs(&p), before, "no SEQ before half the window is used");
    // Two more pass the half: one SEQ acknowledges all eleven.
    for _ in 0..2 {
        p.client.send_msg(ch, vec![7u8; 200]).expect("msg");
        p.run();
    }
    assert_eq!(p.take_server().len(), 2);
    assert_eq!(seqs(&p), before + 1);
    // The client can go on sending: its window never ran out.
    for _ in 0..40 {
        p.client.send_msg(ch, vec![7u8; 200]).expect("msg");
        p.run();
    }
    assert_eq!(p.take_server().len(), 40);
}
