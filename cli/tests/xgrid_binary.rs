//! The compiled `xgrid` binary against a scripted controller on loopback: a listener-side
//! BEEP driver that asks for the password (530, then two-way-random), answers
//! `controllerList`, and answers every other request from the test's script. Checks what
//! the binary prints, byte for byte, and how it exits.

use std::path::Path;
use std::process::Output;
use std::sync::{Arc, Mutex};

use tokio::net::TcpListener;
use xgrid_protocol::auth::{Listener, ListenerStep};
use xgrid_protocol::beep::{Channel0Message, Config, Event, Role};
use xgrid_protocol::driver;
use xgrid_protocol::envelope::{Envelope, MessageType};
use xgrid_protocol::messages::{
    ClientNotification, ControllerEntry, ControllerListReply, ControllerReply, ErrorCode,
    JobAttributes, JobStatus, TaskOutputs, TaskStreams,
};
use xgrid_protocol::plist::{Date, Dictionary, Value};
use xgrid_protocol::profile;

type Script = Box<dyn FnMut(&Envelope) -> Vec<Envelope> + Send>;

/// Start a controller that serves one connection; returns its port and the requests it saw.
async fn controller(
    password: Option<&'static str>,
    mut script: Script,
) -> (u16, Arc<Mutex<Vec<Envelope>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("address").port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.expect("accept");
        let config = Config {
            profiles: profile::CONTROLLER_GREETING
                .iter()
                .map(|s| s.to_string())
                .collect(),
            ..Config::default()
        };
        let (handle, mut events) = driver::spawn(stream, Role::Listener, config);
        let mut authenticated = password.is_none();
        let mut auth: Option<(u32, Listener)> = None;
        let mut client_channel = None;
        while let Some(event) = events.recv().await {
            match event {
                Event::StartRequested { channel, profiles } => {
                    let uri = profiles[0].uri.clone();
                    if uri == profile::TWO_WAY_RANDOM {
                        let secret = password.unwrap_or_default().to_string();
                        let listener = Listener::new(move |user| {
                            (user == profile::CLIENT_USER).then(|| secret.clone())
                        })
                        .expect("random");
                        let challenge = listener.challenge();
                        handle
                            .accept_start(channel, &uri, Some(challenge))
                            .await
                            .expect("accept");
                        auth = Some((channel, listener));
                    } else if !authenticated {
                        handle
                            .refuse_start(channel, 530, "Authentication required")
                            .await
                            .expect("refuse");
                    } else {
                        handle
                            .accept_start(channel, &uri, None)
                            .await
                            .expect("accept");
                        client_channel = Some(channel);
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
                            continue;
                        }
                    }
                    handle
                        .send_rpy(channel, msgno, b"\r\n".to_vec())
                        .await
                        .expect("empty rpy");
                    let Ok(request) = Envelope::from_beep_payload(&payload) else {
                        continue;
                    };
                    if request.message_type != MessageType::Request {
                        continue;
                    }
                    let answers = if request.name == "controllerList" {
                        let list = ControllerListReply {
                            controllers: vec![ControllerEntry {
                                hostname: "localhost".into(),
                                role: "MASTER".into(),
                            }],
                            controller_role: "MASTER".into(),
                        };
                        vec![ControllerReply::ControllerList(list).to_envelope(&request.identifier)]
                    } else {
                        record.lock().expect("lock").push(request.clone());
                        script(&request)
                    };
                    for answer in answers {
                        if let Some(c) = client_channel {
                            handle
                                .send_msg(c, answer.to_beep_payload())
                                .await
                                .expect("send");
                        }
                    }
                }
                Event::SessionClosed { .. } | Event::Failed(_) => break,
                _ => {}
            }
        }
    });
    (port, seen)
}

/// Run the binary with `args` and only the environment variables given.
async fn xgrid(args: &[&str], env: &[(&str, &str)], dir: &Path) -> Output {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_xgrid"));
    command
        .args(args)
        .current_dir(dir)
        .env_remove("XGRID_CONTROLLER_HOSTNAME")
        .env_remove("XGRID_CONTROLLER_PASSWORD");
    for (k, v) in env {
        command.env(k, v);
    }
    let run = tokio::task::spawn_blocking(move || command.output().expect("run xgrid"));
    tokio::time::timeout(std::time::Duration::from_secs(30), run)
        .await
        .expect("xgrid took too long")
        .expect("join")
}

fn text(bytes: &[u8]) -> &str {
    std::str::from_utf8(bytes).expect("utf-8")
}

fn reply(request: &Envelope, payload: Dictionary) -> Envelope {
    Envelope::reply(request.identifier.as_str(), request.name.as_str(), payload)
}

fn dict(entries: Vec<(&str, Value)>) -> Dictionary {
    entries
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
}

fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("xgrid-binary-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

#[tokio::test]
async fn submit_with_a_password_prints_the_job_identifier() {
    let (port, seen) = controller(
        Some("sesame"),
        Box::new(|request| {
            vec![reply(
                request,
                dict(vec![("jobIdentifier", Value::from("27"))]),
            )]
        }),
    )
    .await;
    let host = format!("127.0.0.1:{port}");
    let dir = scratch("submit");
    let out = xgrid(
        &[
            "-h",
            &host,
            "-p",
            "sesame",
            "-job",
            "submit",
            "/usr/bin/cal",
            "6",
            "2007",
        ],
        &[],
        &dir,
    )
    .await;
    assert_eq!(text(&out.stderr), "");
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(text(&out.stdout), "{\n    jobIdentifier = 27;\n}\n");

    let requests = seen.lock().expect("lock").clone();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].name, "jobSubmission");
    let spec = requests[0].payload["jobSpecification"]
        .as_dictionary()
        .expect("a specification");
    assert_eq!(spec.get("name"), Some(&Value::from("/usr/bin/cal")));
    assert_eq!(
        spec.get("applicationIdentifier"),
        Some(&Value::from("com.apple.xgrid.cli"))
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn attributes_from_the_environment_settings_print_byte_for_byte() {
    let attributes = dict(vec![(
        "jobAttributes",
        Value::Dictionary(dict(vec![
            ("activeCPUPower", Value::from("0")),
            ("applicationIdentifier", Value::from("com.apple.xgrid.cli")),
            (
                "dateNow",
                Value::Date(Date::from_unix_seconds(1_169_742_239)),
            ),
            (
                "dateStarted",
                Value::Date(Date::from_unix_seconds(1_169_742_230)),
            ),
            ("jobStatus", Value::from("Finished")),
            ("name", Value::from("/usr/bin/cal")),
            ("percentDone", Value::Real(100.0)),
            ("taskCount", Value::from("1")),
            ("undoneTaskCount", Value::from("0")),
        ])),
    )]);
    let (port, seen) = controller(
        Some("pw"),
        Box::new(move |request| vec![reply(request, attributes.clone())]),
    )
    .await;
    let host = format!("127.0.0.1:{port}");
    let dir = scratch("attributes");
    let out = xgrid(
        &["-job", "attributes", "-id", "27"],
        &[
            ("XGRID_CONTROLLER_HOSTNAME", &host),
            ("XGRID_CONTROLLER_PASSWORD", "pw"),
        ],
        &dir,
    )
    .await;
    assert_eq!(text(&out.stderr), "");
    assert_eq!(out.status.code(), Some(0));
    let expected = "{
    jobAttributes =     {
        activeCPUPower = 0;
        applicationIdentifier = \"com.apple.xgrid.cli\";
        dateNow = \"2007-01-25 16:23:59 +0000\";
        dateStarted = \"2007-01-25 16:23:50 +0000\";
        jobStatus = Finished;
        name = \"/usr/bin/cal\";
        percentDone = 100;
        taskCount = 1;
        undoneTaskCount = 0;
    };
}
";
    assert_eq!(text(&out.stdout), expected);
    let requests = seen.lock().expect("lock").clone();
    assert_eq!(requests[0].name, "jobAttributes");
    assert_eq!(
        requests[0].payload.get("jobIdentifier"),
        Some(&Value::from("27"))
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn wrong_password_fails_with_a_clear_message() {
    let (port, _) = controller(Some("right"), Box::new(|_| Vec::new())).await;
    let host = format!("127.0.0.1:{port}");
    let dir = scratch("wrong");
    let out = xgrid(&["-h", &host, "-p", "wrong", "-grid", "list"], &[], &dir).await;
    assert_eq!(out.status.code(), Some(77));
    assert_eq!(
        text(&out.stderr),
        "xgrid: wrong password (535): the controller did not accept it\n"
    );
    assert_eq!(text(&out.stdout), "");

    let (port, _) = controller(Some("right"), Box::new(|_| Vec::new())).await;
    let host = format!("127.0.0.1:{port}");
    let out = xgrid(&["-h", &host, "-grid", "list"], &[], &dir).await;
    assert_eq!(out.status.code(), Some(77));
    assert!(
        text(&out.stderr).starts_with("xgrid: the controller requires a password"),
        "{}",
        text(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn an_error_reply_names_the_job() {
    let (port, _) = controller(
        None,
        Box::new(|request| vec![reply(request, ErrorCode::InvalidJobIdentifier.to_payload())]),
    )
    .await;
    let host = format!("127.0.0.1:{port}");
    let dir = scratch("invalid");
    let out = xgrid(
        &["-h", &host, "-job", "attributes", "-id", "999"],
        &[],
        &dir,
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        "xgrid: job 999 does not exist on the controller (InvalidJobIdentifier)\n"
    );
    assert_eq!(text(&out.stdout), "");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn usage_and_connection_errors() {
    let dir = scratch("usage");
    let out = xgrid(&["-bogus"], &[], &dir).await;
    assert_eq!(out.status.code(), Some(64));
    assert_eq!(
        text(&out.stderr),
        "xgrid: unknown option -bogus (see xgrid -help)\n"
    );
    let out = xgrid(&["-grid", "list"], &[], &dir).await;
    assert_eq!(out.status.code(), Some(64));
    assert!(text(&out.stderr).contains("XGRID_CONTROLLER_HOSTNAME"));

    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("address").port();
    drop(listener);
    let host = format!("127.0.0.1:{port}");
    let out = xgrid(&["-h", &host, "-grid", "list"], &[], &dir).await;
    assert_eq!(out.status.code(), Some(69));
    assert!(
        text(&out.stderr).starts_with(&format!("xgrid: cannot connect to 127.0.0.1:{port}: ")),
        "{}",
        text(&out.stderr)
    );

    let out = xgrid(&["-help"], &[], &dir).await;
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stdout).starts_with("usage: xgrid"));
    let _ = std::fs::remove_dir_all(dir);
}

fn attributes(status: JobStatus) -> JobAttributes {
    JobAttributes {
        name: "./job.sh".into(),
        application_identifier: Some("com.apple.xgrid.cli".into()),
        job_status: status,
        error: None,
        active_cpu_power: 0.0,
        date_now: Date::from_unix_seconds(1_169_742_239),
        date_submitted: None,
        date_started: None,
        date_stopped: None,
        task_count: 1,
        undone_task_count: i64::from(status != JobStatus::Finished),
        percent_done: if status == JobStatus::Finished {
            100.0
        } else {
            0.0
        },
        suspended: false,
    }
}

#[tokio::test]
async fn run_streams_output_writes_files_and_exits_with_the_task_status() {
    let mut latest_calls = 0;
    let script: Script = Box::new(move |request| {
        let streams = |out: &[u8], err: &[u8]| {
            let tasks = std::collections::BTreeMap::from([(
                "0".to_string(),
                TaskStreams {
                    read_data: out.to_vec(),
                    err_data: err.to_vec(),
                },
            )]);
            reply(
                request,
                ControllerReply::JobLatestResults(tasks).to_payload(),
            )
        };
        match request.name.as_str() {
            "jobSubmission" => vec![reply(
                request,
                dict(vec![("jobIdentifier", Value::from("5"))]),
            )],
            "jobAttributes" => vec![
                reply(
                    request,
                    ControllerReply::JobAttributes(attributes(JobStatus::Running)).to_payload(),
                ),
                ClientNotification::JobLatestResultsAvailable {
                    job_identifier: "5".into(),
                }
                .to_envelope(),
            ],
            "jobLatestResults" => {
                latest_calls += 1;
                match latest_calls {
                    1 => vec![
                        streams(b"hello\n", b"oops\n"),
                        ClientNotification::JobAttributes {
                            job_identifier: "5".into(),
                            attributes: attributes(JobStatus::Finished),
                        }
                        .to_envelope(),
                    ],
                    2 => vec![streams(b"world\n", b"")],
                    _ => vec![streams(b"", b"")],
                }
            }
            "jobFinalResults" => {
                let outputs = TaskOutputs {
                    output_files: std::collections::BTreeMap::from([(
                        "out/result.txt".to_string(),
                        b"42\n".to_vec(),
                    )]),
                    termination_status: Some(3),
                };
                let tasks = std::collections::BTreeMap::from([("0".to_string(), outputs)]);
                vec![reply(
                    request,
                    ControllerReply::JobFinalResults(tasks).to_payload(),
                )]
            }
            _ => vec![reply(request, ErrorCode::InvalidRequest.to_payload())],
        }
    });
    let (port, seen) = controller(None, script).await;
    let host = format!("127.0.0.1:{port}");
    let dir = scratch("run");
    std::fs::write(dir.join("job.sh"), b"#!/bin/sh\necho hello\n").expect("script");
    let out = xgrid(
        &[
            "-h", &host, "-job", "run", "-out", "results", "./job.sh", "arg",
        ],
        &[],
        &dir,
    )
    .await;
    assert_eq!(text(&out.stdout), "hello\nworld\n");
    assert_eq!(text(&out.stderr), "oops\n");
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(
        std::fs::read(dir.join("results/out/result.txt")).expect("output file"),
        b"42\n"
    );

    let requests = seen.lock().expect("lock").clone();
    let spec = requests[0].payload["jobSpecification"]
        .as_dictionary()
        .expect("spec");
    let files = spec["inputFiles"].as_dictionary().expect("input files");
    assert!(files.contains_key("job.sh"), "the relative command is sent");
    let subscribe = &requests[1];
    assert_eq!(subscribe.name, "jobAttributes");
    assert_eq!(
        subscribe.payload.get("shouldSubscribe"),
        Some(&Value::from("YES"))
    );
    assert_eq!(
        requests.last().map(|r| r.name.as_str()),
        Some("jobFinalResults")
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn wait_prints_the_final_attributes_without_a_bar_off_a_terminal() {
    let script: Script = Box::new(move |request| match request.name.as_str() {
        "jobAttributes" => vec![
            reply(
                request,
                ControllerReply::JobAttributes(attributes(JobStatus::Running)).to_payload(),
            ),
            ClientNotification::JobAttributes {
                job_identifier: "8".into(),
                attributes: attributes(JobStatus::Finished),
            }
            .to_envelope(),
        ],
        _ => vec![reply(request, ErrorCode::InvalidRequest.to_payload())],
    });
    let (port, _) = controller(None, script).await;
    let host = format!("127.0.0.1:{port}");
    let dir = scratch("wait");
    let out = xgrid(&["-h", &host, "-job", "wait", "-id", "8"], &[], &dir).await;
    assert_eq!(
        text(&out.stderr),
        "",
        "no progress bar when stderr is a pipe"
    );
    assert_eq!(out.status.code(), Some(0));
    let stdout = text(&out.stdout);
    assert!(
        stdout.starts_with("{\n    jobAttributes =     {\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("        jobStatus = Finished;\n"),
        "{stdout}"
    );
    let _ = std::fs::remove_dir_all(dir);
}
