//! The `xgridcontrollerd` binary: its startup line, a clean stop on SIGTERM, and jobs that
//! survive the process being killed, with tasks picked up again from agents that come back
//! and moved elsewhere when their agent does not.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use xgrid_protocol::envelope::MessageType;
use xgrid_protocol::messages::{
    AgentNotification, AgentReply, TaskFinalResultsReply, TaskOutputs, TaskResultsReply, TaskState,
    TaskStatus, TaskStreams,
};
use xgrid_protocol::plist::{Dictionary, Value};
use xgrid_protocol::profile;

/// The daemon as a child process, killed when dropped.
struct Daemon {
    child: Child,
    addr: SocketAddr,
}

impl Daemon {
    fn start(data_dir: &Path, extra: &[&str]) -> Daemon {
        let stderr = if std::env::var_os("XGRID_TEST_LOG").is_some() {
            Stdio::inherit()
        } else {
            Stdio::null()
        };
        let mut child = Command::new(env!("CARGO_BIN_EXE_xgridcontrollerd"))
            // No dashboard: several daemons run at once, and only the first line is read.
            .args(["--listen", "127.0.0.1:0", "--no-web", "--data-dir"])
            .arg(data_dir)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("start xgridcontrollerd");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read the first line");
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .parse()
            .expect("an address");
        Daemon { child, addr }
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
    }

    /// Waits for the process to end; its exit status.
    fn wait(&mut self) -> std::process::ExitStatus {
        let deadline = std::time::Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the daemon did not stop"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn submit(client: &mut Peer, job: Dictionary) -> String {
    let reply = client
        .request("jobSubmission", dict! {"jobSpecification" => job})
        .await;
    text(&reply, "jobIdentifier")
}

async fn wait_for_status(client: &mut Peer, job: &str, status: &str) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let reply = client
            .request("jobAttributes", dict! {"jobIdentifier" => job})
            .await;
        let now = text(nested(&reply, "jobAttributes"), "jobStatus");
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

/// Takes the next submission with `task_ref`, takes the start, reports Running.
async fn take_and_run(agent: &mut Peer, task_ref: &str) {
    agent.take_task(task_ref).await;
    report(agent, task_ref, TaskState::Running).await;
}

async fn report(agent: &mut Peer, task_ref: &str, state: TaskState) {
    let status = TaskStatus {
        task_state: state,
        task_megahertz: 1000.0,
        termination_status: (state == TaskState::Terminated).then_some(3),
        data_available: state == TaskState::Terminated,
    };
    agent
        .notify(AgentNotification::TaskStatus {
            task_ref: task_ref.into(),
            status,
        })
        .await;
}

/// Reports the task ended and serves its results: `stdout`, exit status 3.
async fn finish(agent: &mut Peer, name: &str, task_ref: &str, stdout: &[u8]) {
    report(agent, task_ref, TaskState::Terminated).await;
    let fetch = agent
        .expect_named("taskResults", MessageType::Request)
        .await;
    let streams = TaskResultsReply {
        agent_name: name.into(),
        task_ref: task_ref.into(),
        streams: TaskStreams {
            read_data: stdout.to_vec(),
            err_data: Vec::new(),
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
            output_files: Default::default(),
            termination_status: Some(3),
        },
    };
    agent
        .reply(&last, AgentReply::TaskFinalResults(outputs))
        .await;
}

fn stdout_of(results: &Dictionary, task: &str) -> Option<Value> {
    nested(nested(results, "taskResults"), task)
        .get("readData")
        .cloned()
}

#[test]
fn help_tells_the_flags() {
    let output = Command::new(env!("CARGO_BIN_EXE_xgridcontrollerd"))
        .arg("--help")
        .output()
        .expect("run --help");
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    for flag in [
        "--listen",
        "--data-dir",
        "--client-password",
        "--agent-password",
        "--client-password-file",
        "--agent-grace",
        "--web",
        "--no-web",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}");
    }
    let bad = Command::new(env!("CARGO_BIN_EXE_xgridcontrollerd"))
        .arg("--bogus")
        .output()
        .expect("run with a bad flag");
    assert_eq!(bad.status.code(), Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_the_daemon_cleanly() {
    let dir = TempDir::new("sigterm");
    let mut daemon = Daemon::start(dir.path(), &[]);
    let mut client = Peer::client(daemon.addr).await;
    let reply = client.request("controllerRole", Dictionary::new()).await;
    assert_eq!(text(&reply, "controllerRole"), "MASTER");
    daemon.signal("TERM");
    let status = tokio::task::block_in_place(|| daemon.wait());
    assert!(status.success(), "{status:?}");
    assert!(dir.path().join("controller.sqlite").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_controller_comes_back_with_its_jobs_and_running_tasks() {
    let dir = TempDir::new("restart");
    let daemon = Daemon::start(dir.path(), &[]);
    let mut agent = Peer::open(daemon.addr, profile::AGENT, None).await;
    let cookie = agent.register("mac1", 2, 2000.0).await;
    let mut client = Peer::client(daemon.addr).await;

    let done = submit(&mut client, echo_job("done", 1)).await;
    take_and_run(&mut agent, "1").await;
    finish(&mut agent, "mac1", "1", b"first\n").await;
    wait_for_status(&mut client, &done, "Finished").await;
    let running = submit(&mut client, echo_job("running", 1)).await;
    take_and_run(&mut agent, "2").await;
    wait_for_status(&mut client, &running, "Running").await;

    drop(daemon);
    drop(agent);
    drop(client);
    let daemon = Daemon::start(dir.path(), &[]);
    let mut client = Peer::client(daemon.addr).await;
    wait_for_status(&mut client, &done, "Finished").await;
    let results = client
        .request("jobResults", dict! {"jobIdentifier" => done.as_str()})
        .await;
    assert_eq!(
        stdout_of(&results, "0"),
        Some(Value::Data(b"first\n".to_vec()))
    );
    let finals = client
        .request("jobFinalResults", dict! {"jobIdentifier" => done.as_str()})
        .await;
    let task = nested(nested(&finals, "taskResults"), "0");
    assert_eq!(text(task, "terminationStatus"), "3");
    wait_for_status(&mut client, &running, "Running").await;

    // The agent comes back with its cookie, still running task 2, which then ends.
    let mut agent = Peer::open(daemon.addr, profile::AGENT, None).await;
    let again = agent.register_with("mac1", &cookie, 2, 2000.0).await;
    assert_eq!(again, cookie);
    agent.report_status(&cookie, "mac1", &["2"]).await;
    finish(&mut agent, "mac1", "2", b"second\n").await;
    wait_for_status(&mut client, &running, "Finished").await;
    let results = client
        .request("jobResults", dict! {"jobIdentifier" => running.as_str()})
        .await;
    assert_eq!(
        stdout_of(&results, "0"),
        Some(Value::Data(b"second\n".to_vec()))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_of_an_agent_that_never_returns_move_on_after_the_grace_period() {
    let dir = TempDir::new("grace");
    let daemon = Daemon::start(dir.path(), &[]);
    let mut agent = Peer::open(daemon.addr, profile::AGENT, None).await;
    agent.register("gone", 1, 2000.0).await;
    let mut client = Peer::client(daemon.addr).await;
    let job = submit(&mut client, echo_job("orphan", 1)).await;
    take_and_run(&mut agent, "1").await;
    wait_for_status(&mut client, &job, "Running").await;

    drop(daemon);
    drop(agent);
    let daemon = Daemon::start(dir.path(), &["--agent-grace", "1"]);
    let mut other = Peer::open(daemon.addr, profile::AGENT, None).await;
    other.register("other", 1, 1000.0).await;
    take_and_run(&mut other, "9").await;
    finish(&mut other, "other", "9", b"elsewhere\n").await;
    let mut client = Peer::client(daemon.addr).await;
    wait_for_status(&mut client, &job, "Finished").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_stop_leaves_running_tasks_with_their_agents() {
    let dir = TempDir::new("clean-stop");
    let mut daemon = Daemon::start(dir.path(), &[]);
    let mut agent = Peer::open(daemon.addr, profile::AGENT, None).await;
    let cookie = agent.register("mac1", 1, 2000.0).await;
    let mut client = Peer::client(daemon.addr).await;
    let job = submit(&mut client, echo_job("long", 1)).await;
    take_and_run(&mut agent, "5").await;
    wait_for_status(&mut client, &job, "Running").await;

    daemon.signal("TERM");
    let status = tokio::task::block_in_place(|| daemon.wait());
    assert!(status.success(), "{status:?}");
    drop(agent);
    let daemon = Daemon::start(dir.path(), &[]);
    let mut client = Peer::client(daemon.addr).await;
    wait_for_status(&mut client, &job, "Running").await;
    let mut agent = Peer::open(daemon.addr, profile::AGENT, None).await;
    assert_eq!(
        agent.register_with("mac1", &cookie, 1, 2000.0).await,
        cookie
    );
    agent.report_status(&cookie, "mac1", &["5"]).await;
    finish(&mut agent, "mac1", "5", b"survived\n").await;
    wait_for_status(&mut client, &job, "Finished").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passwords_come_from_apple_password_files() {
    let dir = TempDir::new("password-file");
    let file = dir.path().join("client-password");
    xgrid_protocol::password::write_password_file(&file, "from-a-file").expect("write");
    let data = dir.path().join("data");
    let file_arg = file.to_string_lossy().to_string();
    let daemon = Daemon::start(&data, &["--client-password-file", &file_arg]);
    let (conn, mut events) = connect(daemon.addr).await;
    assert_eq!(
        authenticate(&conn, &mut events, profile::CLIENT_USER, "wrong").await,
        Err(535)
    );
    let mut client = Peer::open(
        daemon.addr,
        profile::CLIENT,
        Some((profile::CLIENT_USER, "from-a-file")),
    )
    .await;
    let reply = client.request("controllerRole", Dictionary::new()).await;
    assert_eq!(text(&reply, "controllerRole"), "MASTER");

    let missing = Command::new(env!("CARGO_BIN_EXE_xgridcontrollerd"))
        .args(["--agent-password-file"])
        .arg(dir.path().join("nowhere"))
        .output()
        .expect("run");
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no password file"));
}

#[test]
fn the_daemon_reports_and_serves_its_dashboard() {
    let dir = TempDir::new("dashboard");
    let mut child = Command::new(env!("CARGO_BIN_EXE_xgridcontrollerd"))
        .args(["--listen", "127.0.0.1:0", "--web", "127.0.0.1:0", "--quiet"])
        .arg("--data-dir")
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start xgridcontrollerd");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let first = lines.next().and_then(Result::ok).unwrap_or_default();
    let second = lines.next().and_then(Result::ok).unwrap_or_default();
    let page = second.strip_prefix("dashboard on http://").map(|web| {
        let mut stream = std::net::TcpStream::connect(web).expect("connect to the dashboard");
        let request = format!("GET / HTTP/1.1\r\nHost: {web}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).expect("send");
        let mut response = String::new();
        stream.read_to_string(&mut response).expect("read");
        response
    });
    let _ = child.kill();
    let _ = child.wait();
    assert!(first.starts_with("listening on "), "{first:?}");
    let page = page.unwrap_or_else(|| panic!("no dashboard line: {second:?}"));
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
}
