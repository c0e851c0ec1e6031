//! Two in-memory BEEP sessions, an Xgrid client and a controller, driven against each other
//! through a whole Xgrid exchange with no sockets: greetings, the client profile refused with
//! ERR 530, two-way-random authentication, the client profile again, `controllerList`, a
//! `jobSubmission` carrying a batch file larger than the BEEP window, `jobAttributes`, an
//! error reply, and the session's close. Every layer of the protocol crate takes part.

use xgrid_protocol::auth::{Initiator, InitiatorStep, Listener, ListenerStep};
use xgrid_protocol::beep::{Config, Event, ProfileOffer, Role, Session};
use xgrid_protocol::envelope::{Envelope, MessageType};
use xgrid_protocol::jobspec::{parse_batch, JobSpecification};
use xgrid_protocol::messages::{
    ClientRequest, ControllerEntry, ControllerListReply, ControllerReply, JobQuery, JobSubmission,
    ListQuery,
};
use xgrid_protocol::messages::{ErrorCode, JobAttributes, JobStatus};
use xgrid_protocol::plist::{self, Date};
use xgrid_protocol::profile;

const PASSWORD: &str = "grid secret";

/// Move bytes both ways until neither session has anything more to send.
fn pump(client: &mut Session, controller: &mut Session) {
    let mut buf = Vec::new();
    loop {
        buf.clear();
        client.poll_transmit(&mut buf);
        let sent = !buf.is_empty();
        controller.handle_input(&buf);
        buf.clear();
        controller.poll_transmit(&mut buf);
        let answered = !buf.is_empty();
        client.handle_input(&buf);
        if !sent && !answered {
            return;
        }
    }
}

macro_rules! event {
    ($side:ident, $client:ident, $controller:ident) => {{
        pump(&mut $client, &mut $controller);
        let e = $side.poll_event();
        pump(&mut $client, &mut $controller);
        e.expect(concat!("an event is due at the ", stringify!($side)))
    }};
}

fn body(payload: &[u8]) -> Envelope {
    Envelope::from_beep_payload(payload).expect("an Xgrid envelope")
}

const BATCH: &str = r#"
// A hand-written batch file: one job, two tasks, an input file.
{
    jobSpecification = {
        applicationIdentifier = "com.apple.xgrid.cli";
        name = "exchange test";
        inputFiles = { "data.bin" = { fileData = <DATA>; isExecutable = NO; }; };
        taskSpecifications = {
            0 = { command = "/bin/cat"; arguments = ("data.bin"); };
            1 = { command = "/bin/echo"; arguments = (done); dependsOnTasks = (0); };
        };
    };
}
"#;

#[test]
fn whole_xgrid_exchange_between_a_client_and_a_controller() {
    let mut client = Session::new(Role::Initiator, Config::default());
    let mut controller = Session::new(
        Role::Listener,
        Config {
            profiles: profile::CONTROLLER_GREETING
                .iter()
                .map(|p| p.to_string())
                .collect(),
            ..Config::default()
        },
    );

    // Greetings: the client learns the controller's profiles in Apple's order.
    let Event::Greeting { profiles } = event!(client, client, controller) else {
        panic!("greeting expected")
    };
    assert_eq!(profiles, profile::CONTROLLER_GREETING);
    assert!(matches!(
        event!(controller, client, controller),
        Event::Greeting { .. }
    ));

    // The client profile first: the controller wants a password, so ERR 530.
    let refused = client
        .start_channel(vec![ProfileOffer::new(profile::CLIENT)])
        .expect("start");
    let Event::StartRequested { channel, profiles } = event!(controller, client, controller) else {
        panic!()
    };
    assert_eq!(
        (channel, profiles[0].uri.as_str()),
        (refused, profile::CLIENT)
    );
    controller
        .refuse_start(channel, 530, "Authentication required")
        .expect("refuse");
    let Event::StartRefused { code, .. } = event!(client, client, controller) else {
        panic!()
    };
    assert_eq!(code, 530);

    // Two-way-random on its own channel: challenge in the piggyback, then two MSG/RPY pairs.
    let auth_channel = client
        .start_channel(vec![ProfileOffer::new(profile::TWO_WAY_RANDOM)])
        .expect("start");
    let Event::StartRequested { channel, .. } = event!(controller, client, controller) else {
        panic!()
    };
    let mut listener =
        Listener::new(|user| (user == profile::CLIENT_USER).then(|| PASSWORD.to_string()))
            .expect("random");
    controller
        .accept_start(channel, profile::TWO_WAY_RANDOM, Some(listener.challenge()))
        .expect("accept");
    let Event::ChannelStarted {
        channel, piggyback, ..
    } = event!(client, client, controller)
    else {
        panic!()
    };
    assert_eq!(channel, auth_channel);
    let mut initiator = Initiator::new(profile::CLIENT_USER, PASSWORD).expect("random");
    let mut outgoing = initiator
        .answer_challenge(&piggyback.expect("challenge"))
        .expect("digest");
    let authenticated_user = loop {
        client.send_msg(auth_channel, outgoing).expect("send");
        let Event::Message { msgno, payload, .. } = event!(controller, client, controller) else {
            panic!()
        };
        let (reply, user) = match listener.receive(&payload).expect("right password") {
            ListenerStep::Reply(reply) => (reply, None),
            ListenerStep::Authenticated { user, reply } => (reply, Some(user)),
        };
        controller
            .send_rpy(auth_channel, msgno, reply)
            .expect("rpy");
        let Event::Reply { payload, .. } = event!(client, client, controller) else {
            panic!()
        };
        match initiator
            .receive_reply(&payload)
            .expect("controller proves the password")
        {
            InitiatorStep::Send(next) => outgoing = next,
            InitiatorStep::Authenticated => break user.expect("controller authenticated too"),
        }
    };
    assert_eq!(authenticated_user, profile::CLIENT_USER);

    // The client profile again, now accepted.
    let xgrid = client
        .start_channel(vec![ProfileOffer::new(profile::CLIENT)])
        .expect("start");
    let Event::StartRequested { channel, .. } = event!(controller, client, controller) else {
        panic!()
    };
    controller
        .accept_start(channel, profile::CLIENT, None)
        .expect("accept");
    assert!(
        matches!(event!(client, client, controller), Event::ChannelStarted { channel, .. } if channel == xgrid)
    );

    // Each Xgrid request: a MSG answered by an empty RPY, the Xgrid reply as a MSG the other
    // way, answered in turn by an empty RPY.
    let mut roundtrip =
        |request: ClientRequest,
         identifier: &str,
         answer: &dyn Fn(ClientRequest) -> ControllerReply| {
            client
                .send_msg(xgrid, request.to_envelope(identifier).to_beep_payload())
                .expect("send");
            let Event::Message { msgno, payload, .. } = event!(controller, client, controller)
            else {
                panic!()
            };
            controller
                .send_rpy(xgrid, msgno, b"\r\n".to_vec())
                .expect("empty rpy");
            let received = body(&payload);
            assert_eq!(
                (received.message_type, received.identifier.as_str()),
                (MessageType::Request, identifier)
            );
            let reply = answer(ClientRequest::from_envelope(&received).expect("typed request"));
            controller
                .send_msg(xgrid, reply.to_envelope(identifier).to_beep_payload())
                .expect("send reply");
            let Event::Reply { payload: empty, .. } = event!(client, client, controller) else {
                panic!()
            };
            assert_eq!(empty, b"\r\n");
            let Event::Message { msgno, payload, .. } = event!(client, client, controller) else {
                panic!()
            };
            client
                .send_rpy(xgrid, msgno, b"\r\n".to_vec())
                .expect("empty rpy");
            assert!(matches!(
                event!(controller, client, controller),
                Event::Reply { .. }
            ));
            let envelope = body(&payload);
            assert_eq!(
                (envelope.message_type, envelope.identifier.as_str()),
                (MessageType::Reply, identifier)
            );
            ControllerReply::from_envelope(&envelope).expect("typed reply")
        };

    let master = ControllerListReply {
        controllers: vec![ControllerEntry {
            hostname: "localhost".into(),
            role: "MASTER".into(),
        }],
        controller_role: "MASTER".into(),
    };
    let reply = roundtrip(
        ClientRequest::ControllerList(ListQuery::default()),
        "0",
        &|request| {
            assert_eq!(request, ClientRequest::ControllerList(ListQuery::default()));
            ControllerReply::ControllerList(master.clone())
        },
    );
    assert_eq!(reply, ControllerReply::ControllerList(master.clone()));

    // A batch file whose input file alone is three times the 4096-octet window.
    let data: Vec<u8> = (0..12_000u32).map(|i| (i % 251) as u8).collect();
    let hex: String = data.iter().map(|b| format!("{b:02x}")).collect();
    let batch = plist::parse(BATCH.replace("<DATA>", &format!("<{hex}>")).as_bytes())
        .expect("batch file parses");
    let specification = parse_batch(&batch).expect("batch shape").remove(0);
    let submission = ClientRequest::JobSubmission(JobSubmission {
        job_specification: specification,
        grid_identifier: None,
    });
    let reply = roundtrip(submission, "1", &|request| {
        let ClientRequest::JobSubmission(submission) = request else {
            panic!("jobSubmission expected")
        };
        let job = JobSpecification::from_plist(&submission.job_specification).expect("valid job");
        assert_eq!(
            job.input_files["data.bin"].data.as_ref(),
            data.as_slice(),
            "input file arrived whole"
        );
        assert_eq!(job.task_order().expect("acyclic"), ["0", "1"]);
        ControllerReply::JobSubmission {
            job_identifier: "42".into(),
        }
    });
    assert_eq!(
        reply,
        ControllerReply::JobSubmission {
            job_identifier: "42".into()
        }
    );

    let now = Date::from_unix_seconds(1_795_000_000);
    let attributes = JobAttributes {
        name: "exchange test".into(),
        application_identifier: Some("com.apple.xgrid.cli".into()),
        job_status: JobStatus::Running,
        error: None,
        active_cpu_power: 2000.0,
        date_now: now,
        date_submitted: Some(now),
        date_started: Some(now),
        date_stopped: None,
        task_count: 2,
        undone_task_count: 1,
        percent_done: 50.0,
        suspended: false,
    };
    let query = JobQuery {
        job_identifier: "42".into(),
        subscription: None,
    };
    let reply = roundtrip(ClientRequest::JobAttributes(query.clone()), "2", &|_| {
        ControllerReply::JobAttributes(attributes.clone())
    });
    assert_eq!(reply, ControllerReply::JobAttributes(attributes.clone()));

    let unknown = JobQuery {
        job_identifier: "99".into(),
        subscription: None,
    };
    let reply = roundtrip(ClientRequest::JobAttributes(unknown), "", &|_| {
        ControllerReply::Error {
            name: "jobAttributes".into(),
            code: ErrorCode::InvalidJobIdentifier,
        }
    });
    assert_eq!(
        reply,
        ControllerReply::Error {
            name: "jobAttributes".into(),
            code: ErrorCode::InvalidJobIdentifier
        }
    );

    // Xgrid clients close the session without closing their channels first.
    client.close_session().expect("close");
    assert!(matches!(
        event!(controller, client, controller),
        Event::SessionClosed { by_peer: true }
    ));
    assert!(matches!(
        event!(client, client, controller),
        Event::SessionClosed { by_peer: false }
    ));
    assert!(client.is_closed() && controller.is_closed());
    assert!(client.failure().is_none() && controller.failure().is_none());
}
