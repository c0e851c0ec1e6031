//! The agent daemon against a scripted controller on loopback, with real task processes:
//! registration and its cookie, the controller's task requests, status notifications,
//! reconnection, shutdown, and the `xgridagentd` binary itself.

mod scripted;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use scripted::{Connection, ScriptedController, WAIT};
use tokio::sync::oneshot;
use xgrid_agent::{Agent, AgentConfig, AgentError};
use xgrid_protocol::envelope::Envelope;
use xgrid_protocol::messages::{
    AgentReply, ErrorCode, InputFile, TaskState, TaskSubmission, END_OUTPUT_FLAGGED_CAPABILITY,
    LINUX_CAPABILITIES_KEY,
};
use xgrid_protocol::plist::{Dictionary, Value};

/// A test's data directory, removed when the test ends.
struct DataDir(PathBuf);

impl DataDir {
    fn new(test: &str) -> DataDir {
        let path = std::env::temp_dir().join(format!("xgrid-agentd-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("data dir");
        // Tasks may run as nobody: they must be able to walk to their working directory.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        DataDir(path)
    }
}

impl Drop for DataDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn config(controller: &ScriptedController, data: &Path, slots: u32) -> AgentConfig {
    let mut config = AgentConfig::new(controller.address.clone(), data, "test-agent");
    config.slots = Some(slots);
    config.poll_interval = Duration::from_millis(50);
    config.status_interval = Duration::from_secs(60);
    config.max_reconnect_delay = Duration::from_millis(400);
    config
}

/// The agent running in this test's runtime.
struct RunningAgent {
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), AgentError>>,
}

impl RunningAgent {
    fn start(config: AgentConfig) -> RunningAgent {
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(Agent::run(config, async {
            let _ = stopped.await;
        }));
        RunningAgent {
            stop: Some(stop),
            task,
        }
    }

    /// Ask the agent to stop and wait until it has.
    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(WAIT, &mut self.task)
            .await
            .expect("the agent did not stop in time")
            .expect("the agent panicked")
            .expect("the agent failed");
    }
}

/// Start an agent and accept its first registration, handing out `cookie`.
async fn registered(
    controller: &ScriptedController,
    config: AgentConfig,
    cookie: &str,
) -> (RunningAgent, Connection) {
    let agent = RunningAgent::start(config);
    let mut connection = controller.accept().await;
    connection.accept_registration(cookie).await;
    (agent, connection)
}

fn payload(entries: &[(&str, Value)]) -> Dictionary {
    entries
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

fn task_ref_payload(task_ref: &str) -> Dictionary {
    payload(&[("taskRef", Value::from(task_ref))])
}

fn submission(command: &str, arguments: &[&str]) -> TaskSubmission {
    TaskSubmission {
        command: command.into(),
        arguments: arguments.iter().map(|a| a.to_string()).collect(),
        ..TaskSubmission::default()
    }
}

fn read_reply(reply: &Envelope) -> AgentReply {
    AgentReply::from_envelope(reply).expect("a readable agent reply")
}

fn error_of(reply: &Envelope) -> Option<ErrorCode> {
    ErrorCode::from_payload(&reply.payload)
}

async fn submit(connection: &mut Connection, submission: &TaskSubmission) -> String {
    let reply = connection
        .request("taskSubmission", submission.to_payload())
        .await;
    match read_reply(&reply) {
        AgentReply::TaskSubmission { task_ref } => task_ref,
        other => panic!("taskSubmission refused: {other:?}"),
    }
}

async fn control(connection: &mut Connection, task_ref: &str, action: &str) -> Envelope {
    let mut request = task_ref_payload(task_ref);
    request.insert("control".into(), Value::from(action));
    connection.request("taskControl", request).await
}

async fn start(connection: &mut Connection, task_ref: &str) {
    let reply = control(connection, task_ref, "start").await;
    assert_eq!(error_of(&reply), None, "start refused: {reply:?}");
}

/// All stdout and stderr of the task fetched with `taskResults` until the stream is done.
async fn fetch_streams(connection: &mut Connection, task_ref: &str) -> (Vec<u8>, Vec<u8>) {
    let reply = connection
        .request("taskResults", task_ref_payload(task_ref))
        .await;
    match read_reply(&reply) {
        AgentReply::TaskResults(results) => {
            assert_eq!(results.task_ref, task_ref);
            assert_eq!(results.agent_name, "test-agent");
            (results.streams.read_data, results.streams.err_data)
        }
        other => panic!("taskResults refused: {other:?}"),
    }
}

#[tokio::test]
async fn registration_saves_the_cookie_and_reuses_it_after_a_restart() {
    let data = DataDir::new("cookie");
    let controller = ScriptedController::bind(None).await;
    let agent = RunningAgent::start(config(&controller, &data.0, 2));
    let mut connection = controller.accept().await;
    let (request, registration) = connection.registration().await;
    assert_eq!(
        registration.agent_cookie, "",
        "first registration has no cookie"
    );
    assert_eq!(registration.agent_name, "test-agent");
    assert_eq!(registration.maximum_task_count, 2);
    assert!(registration.maximum_cpu_power > 0.0);
    assert!(!registration.hostnames.is_empty());
    assert_eq!(registration.addresses, ["127.0.0.1"]);
    assert!(
        request.payload.contains_key(LINUX_CAPABILITIES_KEY),
        "the Linux agent announces its capabilities"
    );
    assert!(
        registration.announces(END_OUTPUT_FLAGGED_CAPABILITY),
        "the agent promises exact dataAvailable at a task's end: {:?}",
        registration.linux_capabilities
    );
    connection
        .reply(
            &request,
            payload(&[("agentCookie", Value::from("cookie-1"))]),
        )
        .await;
    let status = connection.agent_status(|_| true).await;
    assert_eq!(status.agent_cookie, "cookie-1");
    assert_eq!(status.agent_name, "test-agent");
    assert_eq!(status.current_task_count, 0);
    assert!(status.task_ref_array.is_empty());
    let before_restart = submit(&mut connection, &submission("/bin/true", &[])).await;
    agent.stop().await;
    assert_eq!(
        std::fs::read_to_string(data.0.join("cookie")).expect("cookie file"),
        "cookie-1"
    );

    let agent = RunningAgent::start(config(&controller, &data.0, 2));
    let mut connection = controller.accept().await;
    let registration = connection.accept_registration("cookie-1").await;
    assert_eq!(registration.agent_cookie, "cookie-1");
    let after_restart = submit(&mut connection, &submission("/bin/true", &[])).await;
    let number = |r: &str| r.parse::<u64>().expect("decimal taskRef");
    assert!(
        number(&after_restart) > number(&before_restart),
        "taskRefs are not reused across restarts: {before_restart} then {after_restart}"
    );
    agent.stop().await;
}

#[tokio::test]
async fn an_invalid_cookie_makes_the_agent_register_afresh() {
    let data = DataDir::new("invalid-cookie");
    std::fs::write(data.0.join("cookie"), "stale").expect("write cookie");
    let controller = ScriptedController::bind(None).await;
    let agent = RunningAgent::start(config(&controller, &data.0, 1));
    let mut connection = controller.accept().await;
    let (request, registration) = connection.registration().await;
    assert_eq!(registration.agent_cookie, "stale");
    connection
        .reply(&request, ErrorCode::InvalidCookie.to_payload())
        .await;
    let registration = connection.accept_registration("fresh").await;
    assert_eq!(registration.agent_cookie, "");
    connection.agent_status(|s| s.agent_cookie == "fresh").await;
    assert_eq!(
        std::fs::read_to_string(data.0.join("cookie")).expect("cookie file"),
        "fresh"
    );
    agent.stop().await;
}

#[tokio::test]
async fn echo_runs_to_the_end_and_its_results_are_fetched() {
    let data = DataDir::new("echo");
    let controller = ScriptedController::bind(None).await;
    let (agent, mut connection) =
        registered(&controller, config(&controller, &data.0, 2), "c").await;

    let task_ref = submit(&mut connection, &submission("/bin/echo", &["hello"])).await;
    assert!(
        task_ref.parse::<u64>().is_ok(),
        "taskRef {task_ref:?} is a decimal number"
    );
    let pending = connection.task_status(&task_ref, |_| true).await;
    assert_eq!(pending.task_state, TaskState::Pending);
    start(&mut connection, &task_ref).await;
    let ended = connection
        .task_status(&task_ref, |s| s.task_state == TaskState::Terminated)
        .await;
    assert_eq!(ended.termination_status, Some(0));
    assert!(ended.data_available, "the output is waiting");
    let (stdout, stderr) = fetch_streams(&mut connection, &task_ref).await;
    assert_eq!(String::from_utf8_lossy(&stdout), "hello\n");
    assert_eq!(stderr, b"");
    // Incremental: what was fetched is not sent again.
    let (stdout, _) = fetch_streams(&mut connection, &task_ref).await;
    assert_eq!(stdout, b"");

    let reply = connection
        .request("taskFinalResults", task_ref_payload(&task_ref))
        .await;
    match read_reply(&reply) {
        AgentReply::TaskFinalResults(results) => {
            assert_eq!(results.task_ref, task_ref);
            assert_eq!(results.outputs.termination_status, Some(0));
            assert!(results.outputs.output_files.is_empty());
        }
        other => panic!("taskFinalResults refused: {other:?}"),
    }
    assert!(
        task_dir_exists(&data.0, &task_ref).is_none(),
        "the task's directory is cleaned after its final results"
    );
    let reply = connection
        .request("taskResults", task_ref_payload(&task_ref))
        .await;
    assert_eq!(error_of(&reply), Some(ErrorCode::InvalidTaskRef));
    agent.stop().await;
}

#[tokio::test]
async fn input_files_output_files_and_control_blocks() {
    let data = DataDir::new("files");
    let controller = ScriptedController::bind(None).await;
    let (agent, mut connection) =
        registered(&controller, config(&controller, &data.0, 2), "c").await;

    let mut task = submission(
        "/bin/sh",
        &[
            "-c",
            "cat in.txt; echo '<xgrid>{control = statusUpdate; percentDone = 40.0;}</xgrid>'; \
             tr a-z A-Z < in.txt > out.txt; echo oops >&2; exit 3",
        ],
    );
    task.input_files.insert(
        "in.txt".into(),
        InputFile {
            file_data: b"some input\n".to_vec(),
            is_executable: false,
        },
    );
    let task_ref = submit(&mut connection, &task).await;
    start(&mut connection, &task_ref).await;
    let control = connection
        .next_matching("a taskControl notification", |m| {
            m.name == "taskControl" && m.identifier == task_ref
        })
        .await;
    assert_eq!(
        control.payload.get("control").and_then(Value::as_str),
        Some("statusUpdate")
    );
    assert_eq!(
        control.payload.get("percentDone").and_then(Value::to_f64),
        Some(40.0)
    );
    let ended = connection
        .task_status(&task_ref, |s| s.task_state == TaskState::Terminated)
        .await;
    assert_eq!(ended.termination_status, Some(3));
    let (stdout, stderr) = fetch_streams(&mut connection, &task_ref).await;
    assert_eq!(String::from_utf8_lossy(&stdout), "some input\n");
    assert_eq!(String::from_utf8_lossy(&stderr), "oops\n");
    let reply = connection
        .request("taskFinalResults", task_ref_payload(&task_ref))
        .await;
    match read_reply(&reply) {
        AgentReply::TaskFinalResults(results) => {
            assert_eq!(results.outputs.termination_status, Some(3));
            assert_eq!(
                results
                    .outputs
                    .output_files
                    .get("out.txt")
                    .map(Vec::as_slice),
                Some(&b"SOME INPUT\n"[..])
            );
            assert!(!results.outputs.output_files.contains_key("in.txt"));
        }
        other => panic!("taskFinalResults refused: {other:?}"),
    }
    agent.stop().await;
}

#[tokio::test]
async fn stop_start_and_cancel() {
    let data = DataDir::new("stop-start");
    let controller = ScriptedController::bind(None).await;
    let (agent, mut connection) =
        registered(&controller, config(&controller, &data.0, 2), "c").await;

    let task_ref = submit(&mut connection, &submission("/bin/sleep", &["30"])).await;
    start(&mut connection, &task_ref).await;
    let running = connection
        .task_status(&task_ref, |s| s.task_state == TaskState::Running)
        .await;
    assert_eq!(running.termination_status, None);
    assert!(running.task_megahertz > 0.0);
    let status = connection.agent_status(|s| s.current_task_count == 1).await;
    assert_eq!(status.task_ref_array, vec![task_ref.clone()]);

    let reply = control(&mut connection, &task_ref, "stop").await;
    assert_eq!(error_of(&reply), None);
    connection
        .task_status(&task_ref, |s| s.task_state == TaskState::Stopped)
        .await;
    start(&mut connection, &task_ref).await;
    connection
        .task_status(&task_ref, |s| s.task_state == TaskState::Running)
        .await;

    let reply = control(&mut connection, &task_ref, "cancel").await;
    assert_eq!(error_of(&reply), None);
    let ended = connection
        .task_status(&task_ref, |s| s.task_state == TaskState::Terminated)
        .await;
    assert_eq!(ended.termination_status, Some(137), "killed by SIGKILL");
    // Asked, not waited for: the backlog holds older notifications with a count of 0.
    let reply = connection.request("agentStatus", Dictionary::new()).await;
    let AgentReply::AgentStatus(status) = read_reply(&reply) else {
        panic!("agentStatus refused: {reply:?}");
    };
    assert_eq!(status.current_task_count, 0);
    assert_eq!(
        status.task_ref_array,
        vec![task_ref.clone()],
        "the ended task stays until its results are fetched"
    );
    agent.stop().await;
}

#[tokio::test]
async fn a_missing_command_fails_the_task_and_says_why() {
    let data = DataDir::new("missing-command");
    let controller = ScriptedController::bind(None).await;
    let (agent, mut connection) =
        registered(&controller, config(&controller, &data.0, 1), "c").await;
    let task_ref = submit(&mut connection, &submission("no-such-program-xyz", &[])).await;
    start(&mut connection, &task_ref).await;
    let failed = connection
        .task_status(&task_ref, |s| s.task_state == TaskState::Failed)
        .await;
    assert_eq!(failed.termination_status, None);
    assert!(failed.data_available);
    let (_, stderr) = fetch_streams(&mut connection, &task_ref).await;
    let stderr = String::from_utf8_lossy(&stderr);
    assert!(
        stderr.contains("no-such-program-xyz"),
        "the reason reaches errData: {stderr:?}"
    );
    // A failed task no longer takes the only slot.
    submit(&mut connection, &submission("/bin/true", &[])).await;
    agent.stop().await;
}

#[tokio::test]
async fn steady_output_gives_one_notification_until_fetched() {
    let data = DataDir::new("no-flood");
    let controller = ScriptedController::bind(None).await;
    let (agent, mut connection) =
        registered(&controller, config(&controller, &data.0, 1), "c").await;
    // Twenty lines over about a second: some twenty polls see new output.
    let script =
        "for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do echo $i; sleep 0.05; done";
    let task_ref = submit(&mut connection, &submission("/bin/sh", &["-c", script])).await;
    start(&mut connection, &task_ref).await;
    connection
        .task_status(&task_ref, |s| s.task_state == TaskState::Terminated)
        .await;
    let statuses = connection.take_received(|m| m.name == "taskStatus" && m.identifier == task_ref);
    // Pending, Running, output available, Terminated: at most one each.
    assert!(
        statuses.len() <= 3,
        "{} taskStatus notifications besides Terminated: {statuses:#?}",
        statuses.len()
    );
    let (stdout, _) = fetch_streams(&mut connection, &task_ref).await;
    let expected: String = (1..=20).map(|i| format!("{i}\n")).collect();
    assert_eq!(String::from_utf8_lossy(&stdout), expected);
    agent.stop().await;
}

#[tokio::test]
async fn too_many_tasks() {
    let data = DataDir::new("slots");
    let controller = ScriptedController::bind(None).await;
    let (agent, mut connection) =
        registered(&controller, config(&controller, &data.0, 1), "c").await;

    let first = submit(&mut connection, &submission("/bin/sleep", &["30"])).await;
    let reply = connection
        .request("taskSubmission", submission("/bin/true", &[]).to_payload())
        .await;
    assert_eq!(error_of(&reply), Some(ErrorCode::TooManyTasks));
    assert_eq!(
        reply.payload.get("error").and_then(Value::as_str),
        Some("too many tasks")
    );
    // A cancelled task frees its slot.
    let reply = control(&mut connection, &first, "cancel").await;
    assert_eq!(error_of(&reply), None);
    let second = submit(&mut connection, &submission("/bin/true", &[])).await;
    assert_ne!(first, second);
    agent.stop().await;
}

#[tokio::test]
async fn unknown_task_refs_and_requests() {
    let data = DataDir::new("unknown");
    let controller = ScriptedController::bind(None).await;
    let (agent, mut connection) =
        registered(&controller, config(&controller, &data.0, 3), "c").await;

    for name in ["taskResults", "taskFinalResults"] {
        let reply = connection.request(name, task_ref_payload("999")).await;
        assert_eq!(error_of(&reply), Some(ErrorCode::InvalidTaskRef), "{name}");
        assert_eq!(reply.name, name);
    }
    let reply = control(&mut connection, "999", "start").await;
    assert_eq!(error_of(&reply), Some(ErrorCode::InvalidTaskRef));
    let reply = connection.request("noSuchRequest", Dictionary::new()).await;
    assert_eq!(error_of(&reply), Some(ErrorCode::InvalidRequest));
    // Malformed requests are answered with an error, not dropped.
    let reply = connection
        .request("taskControl", task_ref_payload("999"))
        .await;
    assert_eq!(error_of(&reply), Some(ErrorCode::InvalidControl));
    let reply = connection
        .request("taskSubmission", Dictionary::new())
        .await;
    assert!(error_of(&reply).is_some(), "no command: {reply:?}");
    let mut escaping = submission("/bin/true", &[]);
    escaping.input_files.insert(
        "../outside".into(),
        InputFile {
            file_data: b"x".to_vec(),
            is_executable: false,
        },
    );
    let reply = connection
        .request("taskSubmission", escaping.to_payload())
        .await;
    assert_eq!(error_of(&reply), Some(ErrorCode::InvalidTaskSpecification));

    let reply = connection.request("agentInfo", Dictionary::new()).await;
    match read_reply(&reply) {
        AgentReply::AgentInfo(info) => {
            assert_eq!(info.agent_name, "test-agent");
            assert_eq!(info.agent_cookie, "c");
            assert_eq!(info.maximum_task_count, 3);
        }
        other => panic!("agentInfo: {other:?}"),
    }
    let reply = connection
        .request(
            "agentStatus",
            payload(&[("gridMegahertz", Value::from("1000"))]),
        )
        .await;
    match read_reply(&reply) {
        AgentReply::AgentStatus(status) => {
            assert_eq!(status.agent_cookie, "c");
            assert_eq!(status.current_task_count, 0);
        }
        other => panic!("agentStatus: {other:?}"),
    }
    agent.stop().await;
}

#[tokio::test]
async fn reconnects_and_lists_the_task_it_still_runs() {
    let data = DataDir::new("reconnect");
    let controller = ScriptedController::bind(None).await;
    let (agent, mut connection) =
        registered(&controller, config(&controller, &data.0, 2), "cookie-r").await;
    let task_ref = submit(&mut connection, &submission("/bin/sleep", &["30"])).await;
    start(&mut connection, &task_ref).await;
    connection
        .task_status(&task_ref, |s| s.task_state == TaskState::Running)
        .await;

    // This one ends while nobody listens; its results must wait.
    let short = submit(
        &mut connection,
        &submission("/bin/sh", &["-c", "sleep 0.3; echo later"]),
    )
    .await;
    start(&mut connection, &short).await;

    connection.hang_up();
    tokio::time::sleep(Duration::from_millis(600)).await;
    let mut connection = controller.accept().await;
    let registration = connection.accept_registration("cookie-r").await;
    assert_eq!(registration.agent_cookie, "cookie-r");
    let status = connection.agent_status(|_| true).await;
    assert_eq!(status.task_ref_array, vec![task_ref.clone(), short.clone()]);
    assert_eq!(status.current_task_count, 1);
    // The new connection hears each task's state afresh.
    connection
        .task_status(&task_ref, |s| s.task_state == TaskState::Running)
        .await;
    let ended = connection
        .task_status(&short, |s| s.task_state == TaskState::Terminated)
        .await;
    assert!(ended.data_available);
    let (stdout, _) = fetch_streams(&mut connection, &short).await;
    assert_eq!(String::from_utf8_lossy(&stdout), "later\n");
    let reply = control(&mut connection, &task_ref, "cancel").await;
    assert_eq!(error_of(&reply), None);
    connection
        .task_status(&task_ref, |s| s.task_state == TaskState::Terminated)
        .await;
    agent.stop().await;
}

#[tokio::test]
async fn retries_until_a_restarted_controller_listens_again() {
    let data = DataDir::new("controller-restart");
    let controller = ScriptedController::bind(None).await;
    let address = controller.address.clone();
    let (agent, mut connection) =
        registered(&controller, config(&controller, &data.0, 2), "cookie-x").await;
    let task_ref = submit(&mut connection, &submission("/bin/sleep", &["30"])).await;
    start(&mut connection, &task_ref).await;
    connection
        .task_status(&task_ref, |s| s.task_state == TaskState::Running)
        .await;

    // The controller goes away entirely: connections are refused for a while.
    connection.hang_up();
    drop(controller);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let controller = ScriptedController::bind_to(&address).await;
    let mut connection = controller.accept().await;
    let registration = connection.accept_registration("cookie-x").await;
    assert_eq!(registration.agent_cookie, "cookie-x");
    let status = connection.agent_status(|_| true).await;
    assert_eq!(status.task_ref_array, vec![task_ref.clone()]);
    let reply = connection
        .request("taskResults", task_ref_payload(&task_ref))
        .await;
    assert_eq!(error_of(&reply), None, "the task is still known");
    agent.stop().await;
}

#[tokio::test]
async fn stops_promptly_whatever_the_controller_does() {
    let data = DataDir::new("stop-early");
    let controller = ScriptedController::bind(None).await;
    // The controller never answers the registration.
    let agent = RunningAgent::start(config(&controller, &data.0, 1));
    let mut connection = controller.accept().await;
    connection.registration().await;
    agent.stop().await;
    assert!(connection.ended().await, "the agent closes the session");

    // Nobody listens at all.
    let address = controller.address.clone();
    drop(connection);
    drop(controller);
    let mut config = config(&ScriptedController::bind(None).await, &data.0, 1);
    config.controller = address.into();
    let agent = RunningAgent::start(config);
    tokio::time::sleep(Duration::from_millis(300)).await;
    agent.stop().await;
}

#[tokio::test]
async fn keepalives_and_periodic_status() {
    let data = DataDir::new("keepalive");
    let controller = ScriptedController::bind(None).await;
    let mut config = config(&controller, &data.0, 1);
    config.keepalive_interval = Duration::from_millis(100);
    config.status_interval = Duration::from_millis(100);
    let (agent, mut connection) = registered(&controller, config, "c").await;
    for _ in 0..3 {
        connection.agent_status(|_| true).await;
    }
    let deadline = tokio::time::Instant::now() + WAIT;
    while connection
        .keepalives
        .load(std::sync::atomic::Ordering::SeqCst)
        < 2
    {
        assert!(tokio::time::Instant::now() < deadline, "no keepalives");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    agent.stop().await;
}

#[tokio::test]
async fn password_and_orderly_shutdown() {
    let data = DataDir::new("password");
    let controller = ScriptedController::bind(Some("s3cret")).await;
    let mut config = config(&controller, &data.0, 1);
    config.password = Some("s3cret".into());
    let (agent, mut connection) = registered(&controller, config, "c").await;
    let task_ref = submit(&mut connection, &submission("/bin/sleep", &["30"])).await;
    start(&mut connection, &task_ref).await;
    connection
        .task_status(&task_ref, |s| s.task_state == TaskState::Running)
        .await;
    agent.stop().await;
    assert!(connection.ended().await, "the agent closes the session");
    assert!(
        task_dir_exists(&data.0, &task_ref).is_none(),
        "the cancelled task's directory is gone"
    );
}

#[test]
fn the_binary_explains_itself() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_xgridagentd"))
        .arg("--help")
        .output()
        .expect("run xgridagentd");
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    for flag in [
        "--controller",
        "--data-dir",
        "--name",
        "--password",
        "--password-file",
        "--slots",
        "--task-user",
    ] {
        assert!(help.contains(flag), "{flag} missing from --help");
    }
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_xgridagentd"))
        .arg("--bogus")
        .output()
        .expect("run xgridagentd");
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--bogus"));
}

#[tokio::test]
async fn the_binary_serves_and_exits_cleanly_on_sigterm() {
    let data = DataDir::new("binary");
    let controller = ScriptedController::bind(None).await;
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_xgridagentd"))
        .arg("--controller")
        .arg(controller.address.to_string())
        .arg("--data-dir")
        .arg(&data.0)
        .args(["--name", "binary-agent", "--slots", "1"])
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start xgridagentd");
    let mut connection = controller.accept().await;
    let registration = connection.accept_registration("bin-cookie").await;
    assert_eq!(registration.agent_name, "binary-agent");
    assert_eq!(registration.maximum_task_count, 1);
    let task_ref = submit(&mut connection, &submission("/bin/sleep", &["30"])).await;
    start(&mut connection, &task_ref).await;
    connection
        .task_status(&task_ref, |s| s.task_state == TaskState::Running)
        .await;

    let pid = child
        .id()
        .and_then(|id| i32::try_from(id).ok())
        .expect("pid");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("SIGTERM");
    let output = tokio::time::timeout(WAIT, child.wait_with_output())
        .await
        .expect("the agent did not exit in time")
        .expect("wait");
    assert_eq!(output.status.code(), Some(0));
    let log = String::from_utf8_lossy(&output.stderr);
    for line in [
        "SIGTERM received",
        &format!("task {task_ref} cancelled"),
        "stopped",
    ] {
        assert!(log.contains(line), "{line:?} missing from the log:\n{log}");
    }
    assert!(connection.ended().await);
    assert_eq!(
        std::fs::read_to_string(data.0.join("cookie")).expect("cookie"),
        "bin-cookie"
    );
}

/// The directory of task `task_ref` under `DATA/tasks` (named `<taskRef>.<random>`), if any.
fn task_dir_exists(data: &std::path::Path, task_ref: &str) -> Option<std::path::PathBuf> {
    let prefix = format!("{task_ref}.");
    std::fs::read_dir(data.join("tasks"))
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&prefix))
        })
}
