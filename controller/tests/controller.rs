//! The controller served on 127.0.0.1, driven through the raw protocol by a test client and
//! fake agents: passwords, job submission through to results, errors, subscriptions, a lost
//! agent, and a restart on the same data directory.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use xgrid_protocol::envelope::{Envelope, MessageType};
use xgrid_protocol::messages::{
    AgentNotification, AgentReply, ControllerReply, TaskControlNotice, TaskFinalResultsReply,
    TaskOutputs, TaskResultsReply, TaskState, TaskStatus, TaskStreams,
    END_OUTPUT_FLAGGED_CAPABILITY,
};
use xgrid_protocol::plist::{Dictionary, Value};
use xgrid_protocol::profile;

/// Plays the agent's part for the next task it is given: answers the submission with
/// `task_ref`, takes the start, reports Running then Terminated with `stdout` waiting, and
/// serves the results and an output file `out.txt`. Returns the submission.
async fn run_next_task(agent: &mut Peer, name: &str, task_ref: &str, stdout: &[u8]) -> Envelope {
    let submission = agent.take_task(task_ref).await;
    report(agent, task_ref, TaskState::Running, false).await;
    report(agent, task_ref, TaskState::Terminated, true).await;
    let fetch = agent
        .expect_named("taskResults", MessageType::Request)
        .await;
    assert_eq!(text(&fetch.payload, "taskRef"), task_ref);
    let streams = TaskResultsReply {
        agent_name: name.into(),
        task_ref: task_ref.into(),
        streams: TaskStreams {
            read_data: stdout.to_vec(),
            err_data: b"warning\n".to_vec(),
        },
    };
    agent.reply(&fetch, AgentReply::TaskResults(streams)).await;
    let last = agent
        .expect_named("taskFinalResults", MessageType::Request)
        .await;
    let outputs = TaskFinalResultsReply {
        agent_name: name.into(),
        task_ref: task_ref.into(),
        outputs: TaskOutputs {
            output_files: BTreeMap::from([("out.txt".to_string(), stdout.to_vec())]),
            termination_status: Some(0),
        },
    };
    agent
        .reply(&last, AgentReply::TaskFinalResults(outputs))
        .await;
    submission
}

/// The messages of the job's log, oldest first.
async fn log_messages(client: &mut Peer, job: &str) -> Vec<String> {
    let log = client
        .request("jobLog", dict! {"jobIdentifier" => job})
        .await;
    match log.get("jobLog") {
        Some(Value::Array(lines)) => lines
            .iter()
            .filter_map(Value::as_dictionary)
            .map(|line| text(line, "message"))
            .collect(),
        other => panic!("no jobLog array: {other:?}"),
    }
}

async fn report(agent: &mut Peer, task_ref: &str, state: TaskState, data_available: bool) {
    let status = TaskStatus {
        task_state: state,
        task_megahertz: 1000.0,
        termination_status: (state == TaskState::Terminated).then_some(0),
        data_available,
    };
    agent
        .notify(AgentNotification::TaskStatus {
            task_ref: task_ref.into(),
            status,
        })
        .await;
}

async fn job_status(client: &mut Peer, job: &str) -> String {
    let reply = client
        .request("jobAttributes", dict! {"jobIdentifier" => job})
        .await;
    text(nested(&reply, "jobAttributes"), "jobStatus")
}

/// Polls until the job reaches `status`.
async fn wait_for_status(client: &mut Peer, job: &str, status: &str) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let now = job_status(client, job).await;
        if now == status {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "job {job} stayed {now}, never {status}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn submit(client: &mut Peer, job: Dictionary) -> String {
    let reply = client
        .request("jobSubmission", dict! {"jobSpecification" => job})
        .await;
    text(&reply, "jobIdentifier")
}

fn error_of(reply: &Dictionary) -> Option<String> {
    reply.get("error").and_then(Value::to_string_lenient)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passwords_guard_the_client_profile() {
    let dir = TempDir::new("passwords");
    let mut config = test_config(&dir);
    config.client_password = Some("secret".into());
    let controller = start(config).await;
    let addr = controller.local_addr();

    let (conn, events) = connect(addr).await;
    let refused = Peer::start(conn, events, profile::CLIENT).await.err();
    assert_eq!(refused.map(|r| r.0), Some(530), "no authentication yet");

    let (conn, mut events) = connect(addr).await;
    let wrong = authenticate(&conn, &mut events, profile::CLIENT_USER, "guess").await;
    assert_eq!(wrong, Err(535));
    let refused = Peer::start(conn, events, profile::CLIENT).await.err();
    assert_eq!(
        refused.map(|r| r.0),
        Some(530),
        "a failed exchange gives no channel"
    );

    // The agent password is not set, so an agent needs no authentication; authenticated as
    // an agent, the client profile is refused for that user.
    let (conn, mut events) = connect(addr).await;
    let as_agent = authenticate(&conn, &mut events, profile::AGENT_USER, "secret").await;
    assert_eq!(as_agent, Err(535), "no agent password exists to prove");

    let mut client = Peer::open(
        addr,
        profile::CLIENT,
        Some((profile::CLIENT_USER, "secret")),
    )
    .await;
    let reply = client.request("controllerList", Dictionary::new()).await;
    assert_eq!(text(&reply, "controllerRole"), "MASTER");
    let agent = Peer::open(addr, profile::AGENT, None).await;
    drop(agent);
    controller.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_password_admits_only_agents() {
    let dir = TempDir::new("agent-password");
    let mut config = test_config(&dir);
    config.agent_password = Some("agents".into());
    let controller = start(config).await;
    let addr = controller.local_addr();

    let (conn, events) = connect(addr).await;
    assert_eq!(
        Peer::start(conn, events, profile::AGENT)
            .await
            .err()
            .map(|r| r.0),
        Some(530)
    );
    let (conn, mut events) = connect(addr).await;
    authenticate(&conn, &mut events, profile::AGENT_USER, "agents")
        .await
        .expect("the agent password");
    let mut agent = Peer::start(conn, events, profile::AGENT)
        .await
        .expect("agent channel");
    let cookie = agent.register("mac1", 1, 2000.0).await;
    assert_eq!(cookie.len(), 32);
    // Keepalive: the empty request name gets InvalidRequest, as agents expect.
    let keepalive = agent.request("", Dictionary::new()).await;
    assert_eq!(error_of(&keepalive).as_deref(), Some("InvalidRequest"));
    let unknown = agent.register_with("mac1", "not-a-cookie", 1, 2000.0).await;
    assert_eq!(unknown, "", "an unknown cookie is refused");
    controller.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_runs_on_an_agent_and_its_results_come_back() {
    let dir = TempDir::new("job");
    let controller = start(test_config(&dir)).await;
    let addr = controller.local_addr();
    let mut agent = Peer::open(addr, profile::AGENT, None).await;
    let list = agent.request("controllerList", Dictionary::new()).await;
    assert_eq!(text(&list, "controllerRole"), "MASTER");
    agent.register("mac1", 2, 4000.0).await;

    let mut client = Peer::client(addr).await;
    let job = submit(&mut client, echo_job("hello", 1)).await;
    let submission = run_next_task(&mut agent, "mac1", "7", b"task 0\n").await;
    assert_eq!(text(&submission.payload, "command"), "/bin/echo");
    assert_eq!(
        submission.payload.get("arguments"),
        Some(&strings(&["task", "0"]))
    );
    wait_for_status(&mut client, &job, "Finished").await;

    let attributes = client
        .request("jobAttributes", dict! {"jobIdentifier" => job.as_str()})
        .await;
    let attributes = nested(&attributes, "jobAttributes");
    assert!(attributes.contains_key("dateNow"));
    assert_eq!(text(attributes, "name"), "hello");
    assert_eq!(text(attributes, "taskCount"), "1");
    assert_eq!(text(attributes, "undoneTaskCount"), "0");
    let messages = log_messages(&mut client, &job).await;
    assert_eq!(
        messages[..2],
        ["submitted to grid 0: 1 task", "is running"],
        "{messages:?}"
    );
    assert!(messages[2].starts_with("finished: 1 task"), "{messages:?}");

    let results = client
        .request("jobResults", dict! {"jobIdentifier" => job.as_str()})
        .await;
    match ControllerReply::from_payload("jobResults", &results) {
        Ok(ControllerReply::JobResults(tasks)) => {
            let task = tasks.get("0").expect("task 0");
            assert_eq!(task.read_data, b"task 0\n");
            assert_eq!(task.err_data, b"warning\n");
        }
        other => panic!("{other:?}"),
    }
    let finals = client
        .request("jobFinalResults", dict! {"jobIdentifier" => job.as_str()})
        .await;
    match ControllerReply::from_payload("jobFinalResults", &finals) {
        Ok(ControllerReply::JobFinalResults(tasks)) => {
            let task = tasks.get("0").expect("task 0");
            assert_eq!(task.termination_status, Some(0));
            assert_eq!(
                task.output_files.get("out.txt").map(Vec::as_slice),
                Some(&b"task 0\n"[..])
            );
        }
        other => panic!("{other:?}"),
    }
    let spec = client
        .request("jobSpecification", dict! {"jobIdentifier" => job.as_str()})
        .await;
    let tasks = nested(nested(&spec, "jobSpecification"), "taskSpecifications");
    assert_eq!(text(nested(tasks, "0"), "command"), "/bin/echo");
    let list = client
        .request("gridJobList", dict! {"gridIdentifier" => ""})
        .await;
    assert_eq!(list.get("jobList"), Some(&strings(&[&job])));
    controller.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_the_documented_errors() {
    let dir = TempDir::new("errors");
    let controller = start(test_config(&dir)).await;
    let mut client = Peer::client(controller.local_addr()).await;

    // No controllerList first: clients may start with anything.
    let unknown_job = client
        .request("jobAttributes", dict! {"jobIdentifier" => "999"})
        .await;
    assert_eq!(
        error_of(&unknown_job).as_deref(),
        Some("InvalidJobIdentifier")
    );
    let not_a_number = client
        .request("jobResults", dict! {"jobIdentifier" => "abc"})
        .await;
    assert_eq!(
        error_of(&not_a_number).as_deref(),
        Some("InvalidJobIdentifier")
    );
    let control = client
        .request(
            "jobControl",
            dict! {"jobIdentifier" => "999", "control" => "cancel"},
        )
        .await;
    assert_eq!(error_of(&control).as_deref(), Some("InvalidJobIdentifier"));

    let no_tasks = dict! {"name" => "empty"};
    let malformed = client
        .request("jobSubmission", dict! {"jobSpecification" => no_tasks})
        .await;
    assert_eq!(
        error_of(&malformed).as_deref(),
        Some("InvalidJobSpecification")
    );
    let bad_dependency = dict! {
        "taskSpecifications" => dict! {
            "0" => dict! {"command" => "/bin/true", "dependsOnTasks" => strings(&["9"])},
        },
    };
    let malformed = client
        .request(
            "jobSubmission",
            dict! {"jobSpecification" => bad_dependency},
        )
        .await;
    assert_eq!(
        error_of(&malformed).as_deref(),
        Some("InvalidJobSpecification")
    );

    let nonsense = client.request("makeCoffee", Dictionary::new()).await;
    assert_eq!(error_of(&nonsense).as_deref(), Some("InvalidRequest"));
    let grid = client
        .request("gridAttributes", dict! {"gridIdentifier" => "77"})
        .await;
    assert_eq!(error_of(&grid).as_deref(), Some("InvalidGridIdentifier"));
    let grids = client.request("gridList", Dictionary::new()).await;
    assert_eq!(grids.get("gridList"), Some(&strings(&["0"])));
    let default = client
        .request("gridAttributes", dict! {"gridIdentifier" => "0"})
        .await;
    assert_eq!(text(nested(&default, "gridAttributes"), "isDefault"), "YES");
    controller.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_of_a_lost_agent_runs_on_another() {
    let dir = TempDir::new("lost-agent");
    let controller = start(test_config(&dir)).await;
    let addr = controller.local_addr();
    let mut first = Peer::open(addr, profile::AGENT, None).await;
    first.register("first", 1, 3000.0).await;
    let mut client = Peer::client(addr).await;
    let job = submit(&mut client, echo_job("moves", 1)).await;

    first.take_task("1").await;
    report(&mut first, "1", TaskState::Running, false).await;
    wait_for_status(&mut client, &job, "Running").await;

    let mut second = Peer::open(addr, profile::AGENT, None).await;
    second.register("second", 1, 1000.0).await;
    drop(first);
    let submission = run_next_task(&mut second, "second", "1", b"again\n").await;
    assert_eq!(text(&submission.payload, "command"), "/bin/echo");
    wait_for_status(&mut client, &job, "Finished").await;
    let results = client
        .request("jobResults", dict! {"jobIdentifier" => job.as_str()})
        .await;
    let task = nested(nested(&results, "taskResults"), "0");
    assert_eq!(
        task.get("readData"),
        Some(&Value::Data(b"again\n".to_vec())),
        "only the run that finished left output"
    );
    controller.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_hear_of_new_jobs_and_their_changes() {
    let dir = TempDir::new("subscriptions");
    let controller = start(test_config(&dir)).await;
    let addr = controller.local_addr();
    let mut watcher = Peer::client(addr).await;
    let mut blind = Peer::client(addr).await;
    let list = watcher
        .request(
            "gridJobList",
            dict! {
                "gridIdentifier" => "",
                "shouldSubscribe" => "YES",
                "predicate" => "applicationIdentifier == \"com.apple.xgrid.cli\"",
            },
        )
        .await;
    assert_eq!(list.get("jobList"), Some(&Value::Array(Vec::new())));
    blind
        .request(
            "gridJobList",
            dict! {"gridIdentifier" => "", "shouldSubscribe" => "YES", "predicate" => "FALSE"},
        )
        .await;

    let mut client = Peer::client(addr).await;
    let mut other_app = echo_job("other", 1);
    other_app.insert("applicationIdentifier".into(), Value::from("org.example"));
    let skipped = submit(&mut client, other_app).await;
    let job = submit(&mut client, echo_job("seen", 1)).await;
    let added = watcher
        .expect_named("gridJobListDidAddJob", MessageType::Notification)
        .await;
    assert_eq!(
        text(&added.payload, "jobIdentifier"),
        job,
        "{skipped} is filtered out"
    );

    watcher
        .request(
            "jobAttributes",
            dict! {"jobIdentifier" => job.as_str(), "shouldSubscribe" => "YES"},
        )
        .await;
    watcher
        .request(
            "jobLog",
            dict! {"jobIdentifier" => job.as_str(), "shouldSubscribe" => "YES"},
        )
        .await;
    client
        .request(
            "jobControl",
            dict! {"jobIdentifier" => job.as_str(), "control" => "cancel"},
        )
        .await;
    let changed = watcher
        .expect(|e| {
            e.name == "jobAttributes"
                && e.message_type == MessageType::Notification
                && e.payload
                    .get("jobAttributes")
                    .and_then(Value::as_dictionary)
                    .and_then(|a| a.get("jobStatus"))
                    == Some(&Value::from("Canceled"))
        })
        .await;
    assert_eq!(changed.identifier, job);
    let logged = watcher
        .expect_named("jobLog", MessageType::Notification)
        .await;
    assert_eq!(logged.identifier, job);
    let line = match logged.payload.get("jobLog") {
        Some(Value::Array(lines)) => lines.first().and_then(Value::as_dictionary).cloned(),
        _ => None,
    };
    assert_eq!(
        line.map(|l| text(&l, "message")).as_deref(),
        Some("canceled by a client")
    );

    let agents = watcher
        .request(
            "agentList",
            dict! {"shouldSubscribe" => "YES", "predicate" => "maximumTaskCount >= 2"},
        )
        .await;
    assert_eq!(agents.get("agentList"), Some(&Value::Array(Vec::new())));
    watcher
        .request(
            "gridAttributes",
            dict! {"gridIdentifier" => "0", "shouldSubscribe" => "YES"},
        )
        .await;
    let mut small = Peer::open(addr, profile::AGENT, None).await;
    small.register("small", 1, 1000.0).await;
    let grid = watcher
        .expect(|e| {
            e.name == "gridAttributes"
                && e.message_type == MessageType::Notification
                && e.payload
                    .get("gridAttributes")
                    .and_then(Value::as_dictionary)
                    .and_then(|a| a.get("gridMegahertz"))
                    .and_then(Value::to_string_lenient)
                    .as_deref()
                    == Some("1000")
        })
        .await;
    assert_eq!(grid.identifier, "0");
    let mut big = Peer::open(addr, profile::AGENT, None).await;
    big.register("big", 4, 4000.0).await;
    let added = watcher
        .expect_named("agentListDidAddAgent", MessageType::Notification)
        .await;
    assert_eq!(
        text(&added.payload, "agentIdentifier"),
        "2",
        "only the big agent"
    );

    // The FALSE subscriber heard nothing: its next message is the reply to this request.
    let role = blind.request("controllerRole", Dictionary::new()).await;
    assert_eq!(text(&role, "controllerRole"), "MASTER");
    assert!(blind.unread().is_empty(), "{:?}", blind.unread());
    controller.shutdown().await;
}

/// The `jobAttributes` notification of `job`, if `envelope` is one: its percentDone and
/// jobStatus.
fn told_attributes(envelope: &Envelope, job: &str) -> Option<(f64, String)> {
    if envelope.name != "jobAttributes"
        || envelope.message_type != MessageType::Notification
        || envelope.identifier != job
    {
        return None;
    }
    let attributes = nested(&envelope.payload, "jobAttributes");
    let percent = text(attributes, "percentDone").parse().ok()?;
    Some((percent, text(attributes, "jobStatus")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_progress_is_told_as_few_notifications() {
    let dir = TempDir::new("burst");
    let controller = start(test_config(&dir)).await;
    let addr = controller.local_addr();
    let mut agent = Peer::open(addr, profile::AGENT, None).await;
    agent.register("mac1", 1, 1000.0).await;
    let mut client = Peer::client(addr).await;
    let job = submit(&mut client, echo_job("burst", 1)).await;
    agent.take_task("1").await;
    report(&mut agent, "1", TaskState::Running, false).await;
    wait_for_status(&mut client, &job, "Running").await;
    client
        .request(
            "jobAttributes",
            dict! {"jobIdentifier" => job.as_str(), "shouldSubscribe" => "YES"},
        )
        .await;

    // A hundred progress reports, one after the other: each changes the job's percentDone.
    const UPDATES: u32 = 100;
    for percent in 1..=UPDATES {
        agent
            .notify(AgentNotification::TaskControl {
                task_ref: "1".into(),
                notice: TaskControlNotice::StatusUpdate {
                    percent_done: f64::from(percent),
                },
            })
            .await;
    }
    // Told one by one, the last would come after 99 others; held while they keep coming,
    // they come as a handful, the last with the final figure.
    let mut told = 0;
    loop {
        let envelope = client.expect(|e| told_attributes(e, &job).is_some()).await;
        told += 1;
        let (percent, _) = told_attributes(&envelope, &job).expect("attributes");
        if percent >= f64::from(UPDATES) {
            break;
        }
    }
    assert!(
        told <= 10,
        "{told} notifications for {UPDATES} progress reports"
    );

    controller.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_of_status_is_told_at_once_even_while_progress_is_held() {
    let dir = TempDir::new("status-at-once");
    let mut config = test_config(&dir);
    // Progress told once an hour at most: only a change of status can come in time.
    config.job_change_spacing = Duration::from_secs(3600);
    let controller = start(config).await;
    let addr = controller.local_addr();
    let mut agent = Peer::open(addr, profile::AGENT, None).await;
    agent.register("mac1", 1, 1000.0).await;
    let mut client = Peer::client(addr).await;
    let job = submit(&mut client, echo_job("at-once", 1)).await;
    client
        .request(
            "jobAttributes",
            dict! {"jobIdentifier" => job.as_str(), "shouldSubscribe" => "YES"},
        )
        .await;
    agent.take_task("1").await;
    report(&mut agent, "1", TaskState::Running, false).await;
    let running = client.expect(|e| told_attributes(e, &job).is_some()).await;
    assert_eq!(
        told_attributes(&running, &job).map(|t| t.1).as_deref(),
        Some("Running")
    );

    for percent in [10.0, 20.0] {
        agent
            .notify(AgentNotification::TaskControl {
                task_ref: "1".into(),
                notice: TaskControlNotice::StatusUpdate {
                    percent_done: percent,
                },
            })
            .await;
    }
    wait_for_percent(&mut client, &job, 20.0).await;
    client
        .request(
            "jobControl",
            dict! {"jobIdentifier" => job.as_str(), "control" => "suspend"},
        )
        .await;
    let told = client.expect(|e| told_attributes(e, &job).is_some()).await;
    let attributes = nested(&told.payload, "jobAttributes");
    assert_eq!(text(attributes, "suspended"), "YES", "{attributes:?}");
    assert_eq!(
        text(attributes, "percentDone"),
        "20",
        "the latest progress comes with it"
    );

    client
        .request(
            "jobControl",
            dict! {"jobIdentifier" => job.as_str(), "control" => "cancel"},
        )
        .await;
    let told = client.expect(|e| told_attributes(e, &job).is_some()).await;
    assert_eq!(
        told_attributes(&told, &job).map(|t| t.1).as_deref(),
        Some("Canceled")
    );
    controller.shutdown().await;
}

/// Polls until the job's percentDone reaches `percent`.
async fn wait_for_percent(client: &mut Peer, job: &str, percent: f64) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let reply = client
            .request("jobAttributes", dict! {"jobIdentifier" => job})
            .await;
        let now: f64 = text(nested(&reply, "jobAttributes"), "percentDone")
            .parse()
            .expect("percentDone");
        if now >= percent {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "job {job} stayed at {now} %"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_task_fails_its_job_with_the_reason() {
    let dir = TempDir::new("failed");
    let controller = start(test_config(&dir)).await;
    let addr = controller.local_addr();
    let mut agent = Peer::open(addr, profile::AGENT, None).await;
    agent.register("mac1", 1, 2000.0).await;
    let mut client = Peer::client(addr).await;
    let job = submit(&mut client, echo_job("doomed", 2)).await;
    agent.take_task("1").await;
    report(&mut agent, "1", TaskState::Running, false).await;
    report(&mut agent, "1", TaskState::Failed, false).await;
    // The failed run's output is still fetched.
    let fetch = agent
        .expect_named("taskResults", MessageType::Request)
        .await;
    agent
        .reply(
            &fetch,
            AgentReply::TaskResults(TaskResultsReply {
                agent_name: "mac1".into(),
                task_ref: "1".into(),
                // Where agents say why a task failed.
                streams: TaskStreams {
                    read_data: Vec::new(),
                    err_data: b"partial output\ncommand not found: /bin/nothing\n".to_vec(),
                },
            }),
        )
        .await;
    wait_for_status(&mut client, &job, "Failed").await;
    let reply = client
        .request("jobAttributes", dict! {"jobIdentifier" => job.as_str()})
        .await;
    let attributes = nested(&reply, "jobAttributes");
    assert_eq!(
        text(attributes, "error"),
        "task 0 failed: command not found: /bin/nothing (on agent 1)"
    );
    assert!(attributes.contains_key("dateStopped"));
    let messages = log_messages(&mut client, &job).await;
    assert!(
        messages.first().is_some_and(|m| m.contains("submitted")),
        "{messages:?}"
    );
    assert_eq!(
        messages.last().map(String::as_str),
        Some("failed: task 0 failed: command not found: /bin/nothing (on agent 1)"),
        "{messages:?}"
    );
    controller.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_running_job_cancels_its_task_on_the_agent() {
    let dir = TempDir::new("delete");
    let controller = start(test_config(&dir)).await;
    let addr = controller.local_addr();
    let mut agent = Peer::open(addr, profile::AGENT, None).await;
    agent.register("mac1", 1, 2000.0).await;
    let mut client = Peer::client(addr).await;
    let job = submit(&mut client, echo_job("brief", 1)).await;
    agent.take_task("4").await;
    report(&mut agent, "4", TaskState::Running, false).await;
    wait_for_status(&mut client, &job, "Running").await;

    let reply = client
        .request(
            "jobControl",
            dict! {"jobIdentifier" => job.as_str(), "control" => "remove"},
        )
        .await;
    assert_eq!(error_of(&reply), None);
    let cancel = agent
        .expect_named("taskControl", MessageType::Request)
        .await;
    assert_eq!(text(&cancel.payload, "taskRef"), "4");
    assert_eq!(text(&cancel.payload, "control"), "cancel");
    agent.reply(&cancel, AgentReply::TaskControl).await;
    let gone = client
        .request("jobAttributes", dict! {"jobIdentifier" => job.as_str()})
        .await;
    assert_eq!(error_of(&gone).as_deref(), Some("InvalidJobIdentifier"));
    let list = client
        .request("gridJobList", dict! {"gridIdentifier" => "0"})
        .await;
    assert_eq!(list.get("jobList"), Some(&Value::Array(Vec::new())));
    controller.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_job_runs_again_and_a_canceled_one_stops() {
    let dir = TempDir::new("restart-job");
    let controller = start(test_config(&dir)).await;
    let addr = controller.local_addr();
    let mut agent = Peer::open(addr, profile::AGENT, None).await;
    agent.register("mac1", 1, 2000.0).await;
    let mut client = Peer::client(addr).await;
    let job = submit(&mut client, echo_job("twice", 1)).await;
    run_next_task(&mut agent, "mac1", "1", b"one\n").await;
    wait_for_status(&mut client, &job, "Finished").await;

    let control = |what: &str| dict! {"jobIdentifier" => job.as_str(), "control" => what};
    let reply = client.request("jobControl", control("restart")).await;
    assert_eq!(error_of(&reply), None);
    run_next_task(&mut agent, "mac1", "2", b"two\n").await;
    wait_for_status(&mut client, &job, "Finished").await;
    let results = client
        .request("jobResults", dict! {"jobIdentifier" => job.as_str()})
        .await;
    let task = nested(nested(&results, "taskResults"), "0");
    assert_eq!(task.get("readData"), Some(&Value::Data(b"two\n".to_vec())));

    let reply = client.request("jobControl", control("restart")).await;
    assert_eq!(error_of(&reply), None);
    agent.take_task("3").await;
    report(&mut agent, "3", TaskState::Running, false).await;
    wait_for_status(&mut client, &job, "Running").await;
    let reply = client.request("jobControl", control("cancel")).await;
    assert_eq!(error_of(&reply), None);
    let cancel = agent
        .expect_named("taskControl", MessageType::Request)
        .await;
    assert_eq!(text(&cancel.payload, "taskRef"), "3");
    assert_eq!(text(&cancel.payload, "control"), "cancel");
    wait_for_status(&mut client, &job, "Canceled").await;
    let bogus = client.request("jobControl", control("explode")).await;
    assert_eq!(error_of(&bogus).as_deref(), Some("InvalidControl"));
    controller.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grids_are_added_and_agents_moved_between_them() {
    let dir = TempDir::new("grids");
    let controller = start(test_config(&dir)).await;
    let addr = controller.local_addr();
    let mut agent = Peer::open(addr, profile::AGENT, None).await;
    agent.register("mac1", 1, 2000.0).await;
    let mut client = Peer::client(addr).await;
    let reply = client
        .request(
            "gridControl",
            dict! {"gridIdentifier" => "", "control" => "add", "gridName" => "render"},
        )
        .await;
    assert_eq!(error_of(&reply), None);
    let grids = client.request("gridList", Dictionary::new()).await;
    assert_eq!(grids.get("gridList"), Some(&strings(&["0", "1"])));
    let agents = client
        .request("gridAgentList", dict! {"gridIdentifier" => "0"})
        .await;
    assert_eq!(agents.get("agentList"), Some(&strings(&["1"])));

    let reply = client
        .request(
            "agentAssign",
            dict! {"agentIdentifier" => "1", "gridIdentifier" => "1"},
        )
        .await;
    assert_eq!(error_of(&reply), None);
    let agents = client
        .request("gridAgentList", dict! {"gridIdentifier" => "1"})
        .await;
    assert_eq!(agents.get("agentList"), Some(&strings(&["1"])));
    // The reply echoes the request's name (the test peer checks it).
    let again = client
        .request(
            "agentAdd",
            dict! {"agentIdentifier" => "mac1", "gridIdentifier" => "1"},
        )
        .await;
    assert_eq!(error_of(&again), None);
    let attributes = client
        .request("gridAttributes", dict! {"gridIdentifier" => "1"})
        .await;
    let attributes = nested(&attributes, "gridAttributes");
    assert_eq!(text(attributes, "name"), "render");
    assert_eq!(text(attributes, "gridMegahertz"), "2000");

    // A job for the default grid waits: its only agent now serves grid 1.
    let job = submit(&mut client, echo_job("waits", 1)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(job_status(&mut client, &job).await, "Pending");
    let agent_attributes = client
        .request("agentAttributes", dict! {"agentIdentifier" => "mac1"})
        .await;
    assert_eq!(
        text(nested(&agent_attributes, "agentAttributes"), "agentState"),
        "Available"
    );
    let duplicate = client
        .request(
            "gridControl",
            dict! {"gridIdentifier" => "", "control" => "add", "gridName" => "render"},
        )
        .await;
    assert_eq!(error_of(&duplicate).as_deref(), Some("InvalidGridName"));
    controller.shutdown().await;
}

/// Plays an agent running an ART that prints `output`.
async fn answer_art(agent: &mut Peer, name: &str, task_ref: &str, output: &[u8]) {
    let submission = agent.take_task(task_ref).await;
    assert_eq!(text(&submission.payload, "command"), "./rank");
    let files = nested(&submission.payload, "inputFiles");
    assert!(files.contains_key("rank"), "the ART travels as a file");
    report(agent, task_ref, TaskState::Terminated, true).await;
    let fetch = agent
        .expect_named("taskResults", MessageType::Request)
        .await;
    let streams = TaskResultsReply {
        agent_name: name.into(),
        task_ref: task_ref.into(),
        streams: TaskStreams {
            read_data: output.to_vec(),
            err_data: Vec::new(),
        },
    };
    agent.reply(&fetch, AgentReply::TaskResults(streams)).await;
    let last = agent
        .expect_named("taskFinalResults", MessageType::Request)
        .await;
    agent
        .reply(
            &last,
            AgentReply::TaskFinalResults(TaskFinalResultsReply {
                agent_name: name.into(),
                task_ref: task_ref.into(),
                outputs: TaskOutputs::default(),
            }),
        )
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_agents_whose_art_scores_well_get_the_tasks() {
    let dir = TempDir::new("art");
    let controller = start(test_config(&dir)).await;
    let addr = controller.local_addr();
    let mut slow = Peer::open(addr, profile::AGENT, None).await;
    slow.register("slow", 1, 3000.0).await;
    let mut fast = Peer::open(addr, profile::AGENT, None).await;
    fast.register("fast", 1, 1000.0).await;
    let mut client = Peer::client(addr).await;
    let mut job = echo_job("ranked", 1);
    job.insert(
        "artSpecifications".into(),
        Value::Dictionary(dict! {
            "rank" => dict! {"artData" => Value::Data(b"#!/bin/sh\necho $1\n".to_vec())},
        }),
    );
    job.insert(
        "artConditions".into(),
        Value::Dictionary(dict! {"rank" => dict! {"artMin" => "10"}}),
    );
    let job = submit(&mut client, job).await;

    answer_art(&mut slow, "slow", "a1", b"5\n").await;
    answer_art(&mut fast, "fast", "b1", b"score 20\n").await;
    run_next_task(&mut fast, "fast", "b2", b"ranked\n").await;
    wait_for_status(&mut client, &job, "Finished").await;
    assert!(
        slow.unread().is_empty(),
        "the unqualified agent got {:?}",
        slow.unread()
    );
    controller.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_added_to_a_running_job_run_too() {
    let dir = TempDir::new("add-task");
    let controller = start(test_config(&dir)).await;
    let addr = controller.local_addr();
    let mut agent = Peer::open(addr, profile::AGENT, None).await;
    agent.register("mac1", 1, 2000.0).await;
    let mut client = Peer::client(addr).await;
    let job = submit(&mut client, echo_job("grows", 1)).await;
    agent.take_task("1").await;
    report(&mut agent, "1", TaskState::Running, false).await;
    wait_for_status(&mut client, &job, "Running").await;
    assert_eq!(
        log_messages(&mut client, &job).await,
        ["submitted to grid 0: 1 task", "is running"]
    );

    let extra = dict! {"extra" => dict! {"command" => "/bin/date"}};
    let reply = client
        .request(
            "jobAddTask",
            dict! {"jobIdentifier" => job.as_str(), "taskSpecifications" => extra.clone()},
        )
        .await;
    assert_eq!(error_of(&reply), None);
    let again = client
        .request(
            "jobAddTask",
            dict! {"jobIdentifier" => job.as_str(), "taskSpecifications" => extra},
        )
        .await;
    assert_eq!(
        error_of(&again).as_deref(),
        Some("InvalidTaskSpecification")
    );

    // Task 0 ends; the added task follows on the freed slot.
    report(&mut agent, "1", TaskState::Terminated, false).await;
    let fetch = agent
        .expect_named("taskResults", MessageType::Request)
        .await;
    agent
        .reply(
            &fetch,
            AgentReply::TaskResults(TaskResultsReply {
                agent_name: "mac1".into(),
                task_ref: "1".into(),
                streams: TaskStreams::default(),
            }),
        )
        .await;
    let last = agent
        .expect_named("taskFinalResults", MessageType::Request)
        .await;
    agent
        .reply(
            &last,
            AgentReply::TaskFinalResults(TaskFinalResultsReply {
                agent_name: "mac1".into(),
                task_ref: "1".into(),
                outputs: TaskOutputs::default(),
            }),
        )
        .await;
    let submission = run_next_task(&mut agent, "mac1", "2", b"today\n").await;
    assert_eq!(text(&submission.payload, "command"), "/bin/date");
    wait_for_status(&mut client, &job, "Finished").await;
    let attributes = client
        .request("jobAttributes", dict! {"jobIdentifier" => job.as_str()})
        .await;
    assert_eq!(text(nested(&attributes, "jobAttributes"), "taskCount"), "2");
    controller.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_is_no_lost_agent() {
    let dir = TempDir::new("shutdown");
    let controller = start(test_config(&dir)).await;
    let mut agent = Peer::open(controller.local_addr(), profile::AGENT, None).await;
    let cookie = agent.register("mac1", 1, 2000.0).await;
    let mut client = Peer::client(controller.local_addr()).await;
    let job = submit(&mut client, echo_job("kept", 1)).await;
    agent.take_task("5").await;
    report(&mut agent, "5", TaskState::Running, false).await;
    wait_for_status(&mut client, &job, "Running").await;
    controller.shutdown().await;
    drop(agent);
    // Whatever the closing sessions set off has had time to happen.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let controller = start(test_config(&dir)).await;
    let mut agent = Peer::open(controller.local_addr(), profile::AGENT, None).await;
    assert_eq!(
        agent.register_with("mac1", &cookie, 1, 2000.0).await,
        cookie
    );
    agent.report_status(&cookie, "mac1", &["5"]).await;
    report(&mut agent, "5", TaskState::Terminated, true).await;
    let fetch = agent
        .expect(|e| e.message_type == MessageType::Request)
        .await;
    assert_eq!(
        fetch.name, "taskResults",
        "the task was not submitted again"
    );
    controller.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_that_refuses_work_rests_until_it_reports_available() {
    let dir = TempDir::new("refusal");
    let controller = start(test_config(&dir)).await;
    let addr = controller.local_addr();
    let mut agent = Peer::open(addr, profile::AGENT, None).await;
    let cookie = agent.register("busy", 2, 2000.0).await;
    let mut client = Peer::client(addr).await;
    let job = submit(&mut client, echo_job("patient", 1)).await;
    let submission = agent
        .expect_named("taskSubmission", MessageType::Request)
        .await;
    agent
        .reply(
            &submission,
            AgentReply::Error {
                name: "taskSubmission".into(),
                code: xgrid_protocol::messages::ErrorCode::TooManyTasks,
            },
        )
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(job_status(&mut client, &job).await, "Pending");
    let state = client
        .request("agentAttributes", dict! {"agentIdentifier" => "1"})
        .await;
    assert_eq!(
        text(nested(&state, "agentAttributes"), "agentState"),
        "Unavailable"
    );
    assert!(agent.unread().is_empty(), "no new offer while resting");

    agent.report_status(&cookie, "busy", &[]).await;
    run_next_task(&mut agent, "busy", "1", b"at last\n").await;
    wait_for_status(&mut client, &job, "Finished").await;
    controller.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_an_agent_runs_for_nobody_are_canceled() {
    let dir = TempDir::new("orphans");
    let controller = start(test_config(&dir)).await;
    let mut agent = Peer::open(controller.local_addr(), profile::AGENT, None).await;
    let cookie = agent.register("mac1", 2, 2000.0).await;
    agent.report_status(&cookie, "mac1", &["zz"]).await;
    // One report is not enough: a just-answered submission could look like this.
    let role = agent.request("controllerList", Dictionary::new()).await;
    assert_eq!(text(&role, "controllerRole"), "MASTER");
    assert!(agent.unread().is_empty(), "{:?}", agent.unread());
    agent.report_status(&cookie, "mac1", &["zz"]).await;
    let cancel = agent
        .expect_named("taskControl", MessageType::Request)
        .await;
    assert_eq!(text(&cancel.payload, "taskRef"), "zz");
    assert_eq!(text(&cancel.payload, "control"), "cancel");
    controller.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latest_results_come_once_and_their_arrival_is_announced() {
    let dir = TempDir::new("latest");
    let controller = start(test_config(&dir)).await;
    let addr = controller.local_addr();
    let mut agent = Peer::open(addr, profile::AGENT, None).await;
    agent.register("mac1", 1, 2000.0).await;
    let mut client = Peer::client(addr).await;
    let job = submit(&mut client, echo_job("chatty", 1)).await;
    let first = client
        .request(
            "jobLatestResults",
            dict! {"jobIdentifier" => job.as_str(), "shouldSubscribe" => "YES"},
        )
        .await;
    assert_eq!(
        nested(&first, "taskResults").len(),
        0,
        "nothing has run yet: {first:?}"
    );
    agent.take_task("1").await;
    // Output while running: the controller fetches it at once.
    report(&mut agent, "1", TaskState::Running, true).await;
    let fetch = agent
        .expect_named("taskResults", MessageType::Request)
        .await;
    agent
        .reply(
            &fetch,
            AgentReply::TaskResults(TaskResultsReply {
                agent_name: "mac1".into(),
                task_ref: "1".into(),
                streams: TaskStreams {
                    read_data: b"partial\n".to_vec(),
                    err_data: Vec::new(),
                },
            }),
        )
        .await;
    let announced = client
        .expect_named("jobLatestResultsAvailable", MessageType::Notification)
        .await;
    assert_eq!(announced.identifier, job);
    let latest = client
        .request("jobLatestResults", dict! {"jobIdentifier" => job.as_str()})
        .await;
    let task = nested(nested(&latest, "taskResults"), "0");
    assert_eq!(
        task.get("readData"),
        Some(&Value::Data(b"partial\n".to_vec()))
    );
    let again = client
        .request("jobLatestResults", dict! {"jobIdentifier" => job.as_str()})
        .await;
    assert_eq!(
        nested(&again, "taskResults").len(),
        0,
        "already taken: {again:?}"
    );
    controller.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_agent_is_taken_for_lost() {
    let dir = TempDir::new("silent");
    let mut config = test_config(&dir);
    config.agent_timeout = Duration::from_millis(1500);
    let controller = start(config).await;
    let addr = controller.local_addr();
    let mut quiet = Peer::open(addr, profile::AGENT, None).await;
    quiet.register("quiet", 1, 2000.0).await;
    let mut client = Peer::client(addr).await;
    let job = submit(&mut client, echo_job("abandoned", 1)).await;
    quiet.take_task("1").await;
    report(&mut quiet, "1", TaskState::Running, false).await;
    wait_for_status(&mut client, &job, "Running").await;

    // The agent says nothing more, its connection open: it is dropped and goes Offline.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let reply = client
            .request("agentAttributes", dict! {"agentIdentifier" => "1"})
            .await;
        if text(nested(&reply, "agentAttributes"), "agentState") == "Offline" {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "still not offline");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut other = Peer::open(addr, profile::AGENT, None).await;
    other.register("other", 1, 1000.0).await;
    run_next_task(&mut other, "other", "1", b"rescued\n").await;
    wait_for_status(&mut client, &job, "Finished").await;
    drop(quiet);
    controller.shutdown().await;
}

/// The controller's next `count` requests to `agent`, answered as an agent whose task wrote
/// nothing; their names.
async fn answer_next_requests(agent: &mut Peer, task_ref: &str, count: usize) -> Vec<String> {
    let mut names = Vec::with_capacity(count);
    for _ in 0..count {
        let request = agent
            .expect(|e| e.message_type == MessageType::Request)
            .await;
        assert_eq!(text(&request.payload, "taskRef"), task_ref);
        let reply = match request.name.as_str() {
            "taskResults" => AgentReply::TaskResults(TaskResultsReply {
                agent_name: "linux".into(),
                task_ref: task_ref.into(),
                streams: TaskStreams::default(),
            }),
            "taskFinalResults" => AgentReply::TaskFinalResults(TaskFinalResultsReply {
                agent_name: "linux".into(),
                task_ref: task_ref.into(),
                outputs: TaskOutputs {
                    output_files: BTreeMap::new(),
                    termination_status: Some(0),
                },
            }),
            other => panic!("unexpected request {other}"),
        };
        agent.reply(&request, reply).await;
        names.push(request.name);
    }
    names
}

/// An agent that announced `end-output-flagged` is not asked for output when a task's end
/// says there is none; when it says there is, or the agent did not announce it (Apple's
/// agents), the output is fetched before the final results.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_is_fetched_at_a_tasks_end_unless_its_agent_says_there_is_none() {
    let dir = TempDir::new("end-output");
    let controller = start(test_config(&dir)).await;
    let addr = controller.local_addr();
    let mut client = Peer::client(addr).await;
    let mut apple = Peer::open(addr, profile::AGENT, None).await;
    apple.register("mac", 1, 1000.0).await;
    let mut linux = Peer::open(addr, profile::AGENT, None).await;
    linux
        .register_announcing("linux", 1, &[END_OUTPUT_FLAGGED_CAPABILITY])
        .await;

    // Both agents get a task each: one job of two tasks, one slot each.
    let job = submit(&mut client, echo_job("ends", 2)).await;
    apple.take_task("a1").await;
    linux.take_task("l1").await;
    report(&mut apple, "a1", TaskState::Terminated, false).await;
    report(&mut linux, "l1", TaskState::Terminated, false).await;
    assert_eq!(
        answer_next_requests(&mut apple, "a1", 2).await,
        ["taskResults", "taskFinalResults"]
    );
    assert_eq!(
        answer_next_requests(&mut linux, "l1", 1).await,
        ["taskFinalResults"]
    );
    wait_for_status(&mut client, &job, "Finished").await;

    // Flagged output is fetched from the flagging agent too.
    let job = submit(&mut client, echo_job("flagged", 2)).await;
    apple.take_task("a2").await;
    linux.take_task("l2").await;
    report(&mut linux, "l2", TaskState::Terminated, true).await;
    assert_eq!(
        answer_next_requests(&mut linux, "l2", 1).await,
        ["taskResults"]
    );
    report(&mut apple, "a2", TaskState::Terminated, false).await;
    assert_eq!(
        answer_next_requests(&mut apple, "a2", 2).await,
        ["taskResults", "taskFinalResults"]
    );
    assert_eq!(
        answer_next_requests(&mut linux, "l2", 1).await,
        ["taskFinalResults"]
    );
    wait_for_status(&mut client, &job, "Finished").await;
    controller.shutdown().await;
}
