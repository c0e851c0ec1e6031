//! The executor against real processes. Most tests need root and util-linux (PID
//! namespaces, running as `nobody`); without them they print why and return.

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use xgrid_agent::executor::{
    ExecError, Executor, ExecutorConfig, Isolation, Task, TaskOutput, STDIN_INPUT_FILE,
};
use xgrid_protocol::messages::{InputFile, TaskState, TaskSubmission};
use xgrid_protocol::plist::Value;

const AGENT_NAME: &str = "test-agent";

/// A test's data directory, removed when the test ends, passed or not.
struct DataDir(PathBuf);

impl Drop for DataDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A fresh data directory per test, and an executor over it (`namespace`: the test needs
/// PID namespaces and root); `None`, after saying why, when the machine cannot run the test.
fn setup(test: &str, namespace: bool) -> Option<(Executor, DataDir)> {
    setup_with(test, namespace, |_| {})
}

/// [`setup`], with `adjust` applied to the executor's configuration first.
fn setup_with(
    test: &str,
    namespace: bool,
    adjust: impl FnOnce(&mut ExecutorConfig),
) -> Option<(Executor, DataDir)> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let root = status
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"));
    // Without a namespace a non-root agent runs tasks as itself: that path is tested too.
    if !root && namespace {
        eprintln!("skipped {test}: needs root (to run tasks as nobody in a PID namespace)");
        return None;
    }
    let data =
        DataDir(std::env::temp_dir().join(format!("xgrid-exec-{}-{test}", std::process::id())));
    let _ = std::fs::remove_dir_all(&data.0);
    std::fs::create_dir_all(&data.0).expect("data dir");
    std::fs::set_permissions(&data.0, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let mut config = ExecutorConfig::new(&data.0, AGENT_NAME, 3, 2500);
    config.pid_namespace = namespace;
    adjust(&mut config);
    let executor = match Executor::new(config) {
        Ok(executor) => executor,
        Err(e @ ExecError::LauncherMissing) => {
            eprintln!("skipped {test}: {e}");
            return None;
        }
        Err(e) => panic!("executor: {e}"),
    };
    if namespace && executor.isolation() != &Isolation::PidNamespace {
        eprintln!("skipped {test}: {}", executor.isolation());
        return None;
    }
    Some((executor, data))
}

fn submission(command: &str, arguments: &[&str]) -> TaskSubmission {
    TaskSubmission {
        command: command.to_string(),
        arguments: arguments.iter().map(|a| a.to_string()).collect(),
        ..TaskSubmission::default()
    }
}

fn shell(script: &str) -> TaskSubmission {
    submission("/bin/sh", &["-c", script])
}

fn input(data: &[u8], is_executable: bool) -> InputFile {
    InputFile {
        file_data: data.to_vec(),
        is_executable,
    }
}

async fn run_to_end(task: &mut Task) -> (i32, Vec<u8>) {
    task.start().await.expect("start");
    let termination = task.wait().await.expect("terminated");
    let stdout = std::fs::read(task.stdout_path()).expect("stdout file");
    (termination.status, stdout)
}

/// The uid and gid of `nobody`, read independently of the executor.
fn nobody() -> (u32, u32) {
    let passwd = std::fs::read_to_string("/etc/passwd").expect("passwd");
    let line = passwd
        .lines()
        .find(|l| l.starts_with("nobody:"))
        .expect("nobody in /etc/passwd");
    let fields: Vec<&str> = line.split(':').collect();
    (
        fields[2].parse().expect("uid"),
        fields[3].parse().expect("gid"),
    )
}

fn status_field<'a>(status: &'a str, key: &str) -> Vec<&'a str> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .expect("field present")
        .split_whitespace()
        .collect()
}

/// Poll until `done` holds, for at most five seconds.
async fn eventually(mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    done()
}

#[tokio::test]
async fn echo_hello() {
    let Some((executor, _data)) = setup("echo", true) else {
        return;
    };
    let mut task = executor
        .prepare("1", &submission("echo", &["hello"]))
        .expect("prepare");
    assert_eq!(task.state().expect("state"), TaskState::Pending);
    let (status, stdout) = run_to_end(&mut task).await;
    assert_eq!(stdout, b"hello\n");
    assert_eq!(status, 0);
    assert_eq!(task.state().expect("state"), TaskState::Terminated);
    assert_eq!(task.termination().map(|t| t.cancelled), Some(false));
    assert!(task.stdout_path().starts_with(task.task_dir()));
    assert!(!task.stdout_path().starts_with(task.work_dir()));
}

#[tokio::test]
async fn exit_code_is_the_termination_status() {
    let Some((executor, _data)) = setup("exitcode", true) else {
        return;
    };
    let mut task = executor
        .prepare("1", &shell("echo oops >&2; exit 3"))
        .expect("prepare");
    let (status, _) = run_to_end(&mut task).await;
    assert_eq!(status, 3);
    assert_eq!(
        std::fs::read(task.stderr_path()).expect("stderr"),
        b"oops\n"
    );
}

#[tokio::test]
async fn environment_variables() {
    let Some((executor, _data)) = setup("env", true) else {
        return;
    };
    let mut spec = submission("/usr/bin/env", &[]);
    spec.environment.insert("FOO".into(), "bar baz".into());
    spec.environment
        .insert("XGRID_AGENT_NAME".into(), "impostor".into());
    let mut task = executor.prepare("1", &spec).expect("prepare");
    let (status, stdout) = run_to_end(&mut task).await;
    assert_eq!(status, 0);
    let text = String::from_utf8(stdout).expect("utf-8");
    let vars: BTreeMap<&str, &str> = text.lines().filter_map(|l| l.split_once('=')).collect();
    assert_eq!(vars.get("FOO"), Some(&"bar baz"));
    assert_eq!(vars.get("XGRID_AGENT_NAME"), Some(&AGENT_NAME));
    assert_eq!(vars.get("XGRID_PROCESSOR_COUNT"), Some(&"3"));
    assert_eq!(vars.get("XGRID_PROCESSOR_SPEED"), Some(&"2500"));
    assert_eq!(
        vars.get("HOME").map(PathBuf::from).as_deref(),
        Some(task.work_dir())
    );
    assert!(vars
        .get("PATH")
        .is_some_and(|p| p.split(':').any(|d| d == "/bin")));
    // Nothing of the agent's own environment leaks in.
    assert_eq!(vars.len(), 6, "{vars:?}");
}

#[tokio::test]
async fn standard_input_from_input_stream() {
    let Some((executor, _data)) = setup("stdin", true) else {
        return;
    };
    let mut spec = submission("cat", &[]);
    spec.input_files
        .insert("in.txt".into(), input(b"line one\nline two\n", false));
    spec.input_stream = Some("in.txt".into());
    let mut task = executor.prepare("1", &spec).expect("prepare");
    let (_, stdout) = run_to_end(&mut task).await;
    assert_eq!(stdout, b"line one\nline two\n");

    // The `__stdin` input file is standard input and is not put in the working directory.
    let mut spec = shell("cat; ls");
    spec.input_files
        .insert(STDIN_INPUT_FILE.into(), input(b"piped\n", false));
    let mut task = executor.prepare("2", &spec).expect("prepare");
    let (_, stdout) = run_to_end(&mut task).await;
    assert_eq!(stdout, b"piped\n");

    // No input: /dev/null, so a reader sees end of file at once.
    let mut task = executor
        .prepare("3", &submission("cat", &[]))
        .expect("prepare");
    let (status, stdout) = run_to_end(&mut task).await;
    assert_eq!((status, stdout.as_slice()), (0, &b""[..]));
}

#[tokio::test]
async fn a_directory_kept_for_the_next_task_holds_nothing_of_the_last() {
    let Some((executor, _data)) = setup("reuse", true) else {
        return;
    };
    // The first task leaves files, a directory, standard input and output behind, and
    // opens its working directory to everyone.
    let mut spec = shell("cat; echo secret > left.txt; mkdir d; echo x > d/y; chmod 777 .");
    spec.input_files
        .insert(STDIN_INPUT_FILE.into(), input(b"piped\n", false));
    spec.input_files
        .insert("given.txt".into(), input(b"given\n", false));
    let mut first = executor.prepare("1", &spec).expect("prepare");
    let (_, stdout) = run_to_end(&mut first).await;
    assert_eq!(stdout, b"piped\n");
    let first_dir = first.task_dir().to_path_buf();
    let first_work = std::fs::metadata(first.work_dir()).expect("work").ino();
    first.remove().await.expect("remove");
    assert!(!first_dir.exists());

    // The next task gets the same directory (same inode), as empty as a new one.
    let mut second = executor
        .prepare("2", &shell("ls -A; stat -c %a .; cat"))
        .expect("prepare");
    assert_eq!(
        std::fs::metadata(second.work_dir()).expect("work").ino(),
        first_work,
        "the first task's directory was not reused"
    );
    let (status, stdout) = run_to_end(&mut second).await;
    assert_eq!(
        (status, String::from_utf8_lossy(&stdout).as_ref()),
        (0, "700\n")
    );
    assert!(second.output_files().expect("outputs").files.is_empty());
    assert_eq!(std::fs::read(second.stderr_path()).expect("stderr"), b"");
    second.remove().await.expect("remove");
}

#[tokio::test]
async fn input_files_and_a_relative_command() {
    let Some((executor, _data)) = setup("inputs", true) else {
        return;
    };
    let mut spec = submission("bin/run.sh", &["arg1"]);
    spec.input_files.insert(
        "bin/run.sh".into(),
        input(b"#!/bin/sh\necho ran $1\ncat data/in.txt\n", true),
    );
    spec.input_files
        .insert("data/in.txt".into(), input(b"contents\n", false));
    let mut task = executor.prepare("1", &spec).expect("prepare");

    let (uid, gid) = nobody();
    let script = std::fs::metadata(task.work_dir().join("bin/run.sh")).expect("script");
    let text = std::fs::metadata(task.work_dir().join("data/in.txt")).expect("data");
    assert_eq!(script.mode() & 0o777, 0o755);
    assert_eq!(text.mode() & 0o777, 0o644);
    assert_eq!((script.uid(), script.gid()), (uid, gid));
    let work = std::fs::metadata(task.work_dir()).expect("work dir");
    assert_eq!(work.uid(), uid);

    let (status, stdout) = run_to_end(&mut task).await;
    assert_eq!(status, 0);
    assert_eq!(stdout, b"ran arg1\ncontents\n");

    // A bare name that is an input file runs from the working directory too.
    let mut spec = submission("tool", &[]);
    spec.input_files
        .insert("tool".into(), input(b"#!/bin/sh\necho tool here\n", true));
    let mut task = executor.prepare("2", &spec).expect("prepare");
    let (_, stdout) = run_to_end(&mut task).await;
    assert_eq!(stdout, b"tool here\n");
}

#[tokio::test]
async fn output_files_are_the_created_and_changed_ones() {
    let Some((executor, _data)) = setup("outputs", true) else {
        return;
    };
    let script = "\
        printf 'longer now' > grow.txt; \
        touch -r same-size.txt stamp; printf 'BBB' > same-size.txt; touch -r stamp same-size.txt; \
        touch -r rewritten.txt stamp; printf 'CCC' > rewritten.txt; touch -r stamp rewritten.txt; \
        rm stamp; \
        mkdir -p new/dir && echo made > new/dir/out.txt; \
        ln -s /etc/passwd link";
    let mut spec = shell(script);
    for name in ["keep.txt", "grow.txt", "same-size.txt", "rewritten.txt"] {
        let contents: &[u8] = if name == "rewritten.txt" {
            b"CCC"
        } else {
            b"AAA"
        };
        spec.input_files.insert(name.into(), input(contents, false));
    }
    let mut task = executor.prepare("1", &spec).expect("prepare");
    assert!(matches!(
        task.output_files(),
        Err(ExecError::InvalidState { .. })
    ));
    let (status, _) = run_to_end(&mut task).await;
    assert_eq!(status, 0);
    let outputs = task.output_files().expect("outputs");
    let expected: BTreeMap<String, Vec<u8>> = [
        ("grow.txt", &b"longer now"[..]),
        ("new/dir/out.txt", b"made\n"),
        ("same-size.txt", b"BBB"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_vec()))
    .collect();
    assert_eq!(outputs.files, expected);
    assert!(outputs.skipped.is_empty(), "{:?}", outputs.skipped);
}

#[tokio::test]
async fn escaping_input_paths_are_refused() {
    let Some((executor, data)) = setup("escape", true) else {
        return;
    };
    for bad in [
        "../escape.txt",
        "sub/../../escape.txt",
        "/tmp/xgrid-escape.txt",
    ] {
        let mut spec = submission("true", &[]);
        spec.input_files
            .insert("fine.txt".into(), input(b"ok", false));
        spec.input_files.insert(bad.into(), input(b"evil", false));
        let err = executor.prepare("1", &spec).expect_err(bad);
        assert!(
            matches!(err, ExecError::InputFile { ref path, .. } if path == bad),
            "{err}"
        );
        assert!(
            !executor.tasks_dir().join("1").exists(),
            "left behind for {bad}"
        );
    }
    assert!(!executor.tasks_dir().join("escape.txt").exists());
    assert!(!data.0.join("escape.txt").exists());
    assert!(!Path::new("/tmp/xgrid-escape.txt").exists());

    // A file where a later input file needs a directory: refused, nothing left behind.
    let mut spec = submission("true", &[]);
    spec.input_files.insert("a".into(), input(b"file", false));
    spec.input_files
        .insert("a/b".into(), input(b"under a file", false));
    assert!(matches!(
        executor.prepare("2", &spec),
        Err(ExecError::InputFile { .. })
    ));
    assert!(!executor.tasks_dir().join("2").exists());
}

#[tokio::test]
async fn runs_as_nobody() {
    let Some((executor, _data)) = setup("nobody", true) else {
        return;
    };
    let (uid, gid) = nobody();
    assert_eq!((executor.run_as().uid, executor.run_as().gid), (uid, gid));
    let mut task = executor
        .prepare("1", &submission("cat", &["/proc/self/status"]))
        .expect("prepare");
    let (_, stdout) = run_to_end(&mut task).await;
    let status = String::from_utf8(stdout).expect("utf-8");
    let uid = uid.to_string();
    let gid = gid.to_string();
    assert_eq!(status_field(&status, "Uid:"), [&uid; 4]);
    assert_eq!(status_field(&status, "Gid:"), [&gid; 4]);
    assert!(status_field(&status, "Groups:").is_empty());
}

#[tokio::test]
async fn tasks_run_niced() {
    // Where the kernel groups each session for scheduling (autogroups), the task's session
    // gets its niceness too, or the task's own would not count against other sessions.
    let autogroups = Path::new("/proc/self/autogroup").exists();
    for (namespace, nice, expected) in [(true, None, 10), (false, None, 10), (true, Some(3), 3)] {
        let test = format!("nice-{namespace}-{expected}");
        let Some((executor, _data)) = setup_with(&test, namespace, |config| {
            if let Some(nice) = nice {
                config.task_nice = nice;
            }
        }) else {
            continue;
        };
        // `nice` with no arguments prints the niceness it runs at.
        let mut task = executor
            .prepare("1", &shell("nice; cat /proc/self/autogroup 2>/dev/null"))
            .expect("prepare");
        let (status, stdout) = run_to_end(&mut task).await;
        let text = String::from_utf8_lossy(&stdout).into_owned();
        let mut lines = text.lines();
        assert_eq!(status, 0, "{text}");
        assert_eq!(
            lines.next(),
            Some(expected.to_string().as_str()),
            "namespace {namespace}"
        );
        if autogroups {
            let group = lines.next().unwrap_or_default();
            assert!(
                group.ends_with(&format!(" nice {expected}")),
                "namespace {namespace}: the session's group is {group:?}"
            );
        }
    }
}

#[tokio::test]
async fn command_runs_under_a_root_init_that_leads_its_session() {
    let Some((executor, _data)) = setup("pid1", true) else {
        return;
    };
    // The command reads its own status and its parent's (found by its host pid: /proc is
    // the host's): NSpid and NSsid list the id in each namespace, the last being the
    // namespace's own numbering. The parent, PID 1 of
    // the namespace, must be root (CRIU needs a privileged init) and the session leader
    // (CRIU needs the session leader inside the namespace).
    let mut task = executor
        .prepare(
            "1",
            &shell(
                "cat /proc/self/status; echo ---; \
                 while read k v; do [ $k = PPid: ] && cat /proc/$v/status; done </proc/self/status",
            ),
        )
        .expect("prepare");
    let (_, stdout) = run_to_end(&mut task).await;
    let text = String::from_utf8(stdout).expect("utf-8");
    let parts: Vec<&str> = text.split("---\n").collect();
    let [command, init] = parts[..] else {
        panic!("two parts expected: {text}");
    };
    // `cat` is forked by the shell, the namespace's second process, so it is the third.
    assert_eq!(
        status_field(command, "NSpid:").last(),
        Some(&"3"),
        "{command}"
    );
    assert_eq!(
        status_field(command, "NSsid:").last(),
        Some(&"1"),
        "{command}"
    );
    let (nobody_uid, _) = nobody();
    assert_eq!(
        status_field(command, "Uid:"),
        [nobody_uid.to_string().as_str(); 4]
    );
    assert_eq!(status_field(init, "NSpid:").last(), Some(&"1"), "{init}");
    assert_eq!(status_field(init, "NSsid:").last(), Some(&"1"), "{init}");
    assert_eq!(status_field(init, "Uid:"), ["0"; 4], "{init}");

    let mut task = executor
        .prepare("2", &shell("echo $$ $PPID"))
        .expect("prepare");
    let (_, stdout) = run_to_end(&mut task).await;
    assert_eq!(stdout, b"2 1\n");
}

fn stdout_len(task: &Task) -> u64 {
    std::fs::metadata(task.stdout_path()).map_or(0, |m| m.len())
}

fn process_state(pid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

#[tokio::test]
async fn stop_and_resume() {
    let Some((executor, _data)) = setup("stop", true) else {
        return;
    };
    let mut task = executor
        .prepare("1", &shell("while :; do echo tick; sleep 0.02; done"))
        .expect("prepare");
    task.start().await.expect("start");
    assert!(
        eventually(|| stdout_len(&task) > 0).await,
        "task never printed"
    );
    assert!(
        eventually(|| task.process_ids().len() >= 2).await,
        "no sleep child seen"
    );

    task.stop().expect("stop");
    assert_eq!(task.state().expect("state"), TaskState::Stopped);
    let pids = task.process_ids();
    // SIGSTOP takes effect when each process next runs, not when kill() returns. A shell
    // caught in vfork() waits in state D for its child, which was stopped before exec; it
    // stops as soon as the child lets it go, so D counts as stopped here. A `sleep` that
    // ended just before the stop stays a zombie (Z) until its stopped shell reaps it: it
    // runs no more either.
    let all_stopped = || {
        pids.iter()
            .all(|&p| process_state(p).is_none_or(|s| matches!(s, 'T' | 'D' | 'Z')))
    };
    assert!(
        eventually(all_stopped).await,
        "{:?}",
        pids.iter().map(|&p| process_state(p)).collect::<Vec<_>>()
    );
    let frozen = stdout_len(&task);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(stdout_len(&task), frozen, "a stopped task kept printing");

    // Xgrid resumes with a second `start`.
    task.start().await.expect("start again");
    assert_eq!(task.state().expect("state"), TaskState::Running);
    assert!(
        eventually(|| stdout_len(&task) > frozen).await,
        "not resumed"
    );

    // stop and resume by name, too.
    task.stop().expect("stop");
    let frozen = stdout_len(&task);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(stdout_len(&task), frozen);
    task.resume().expect("resume");
    assert!(
        eventually(|| stdout_len(&task) > frozen).await,
        "not resumed"
    );

    task.cancel().expect("cancel");
    let termination = task.wait().await.expect("ended");
    assert!(termination.cancelled);
}

async fn cancel_kills_every_process(namespace: bool) {
    let name = if namespace {
        "cancel-ns"
    } else {
        "cancel-plain"
    };
    let Some((executor, _data)) = setup(name, namespace) else {
        return;
    };
    // The sleepers are grandchildren, one in a process group of its own.
    let script = "sleep 1000 & (set -m; sleep 1001 &) ; sleep 1002 & echo started; wait";
    let mut task = executor.prepare("1", &shell(script)).expect("prepare");
    task.start().await.expect("start");
    assert!(
        eventually(|| task.process_ids().len() >= 4).await,
        "{:?}",
        task.process_ids()
    );
    let pids = task.process_ids();
    let leader = task.leader_pid().expect("leader");
    assert!(pids.contains(&leader));

    task.stop()
        .expect("stop first: a stopped task must be cancellable too");
    task.cancel().expect("cancel");
    let termination = task.wait().await.expect("terminated");
    assert!(termination.cancelled);
    assert_eq!(termination.signal, Some(9));
    assert_eq!(termination.status, 137);
    assert_eq!(task.state().expect("state"), TaskState::Terminated);
    let all_gone = eventually(|| {
        pids.iter()
            .all(|p| !Path::new(&format!("/proc/{p}")).exists())
    })
    .await;
    assert!(all_gone, "left behind: {:?}", pids);
}

#[tokio::test]
async fn cancel_kills_children_in_a_namespace() {
    cancel_kills_every_process(true).await;
}

#[tokio::test]
async fn cancel_kills_children_without_a_namespace() {
    cancel_kills_every_process(false).await;
}

#[tokio::test]
async fn plain_fallback_runs_tasks_in_their_own_session() {
    let Some((executor, _data)) = setup("plain", false) else {
        return;
    };
    assert!(matches!(executor.isolation(), Isolation::Plain { .. }));
    let mut task = executor
        .prepare("1", &submission("cat", &["/proc/self/stat"]))
        .expect("prepare");
    let (status, stdout) = run_to_end(&mut task).await;
    assert_eq!(status, 0);
    let stat = String::from_utf8(stdout).expect("utf-8");
    let pid = stat.split_whitespace().next().expect("pid");
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .expect("comm")
        .1
        .split_whitespace()
        .collect();
    assert_eq!(fields[3], pid, "not a session leader: {stat}");
    assert_ne!(pid, "1");
}

#[tokio::test]
async fn missing_command_fails_the_task() {
    let Some((executor, _data)) = setup("missing", true) else {
        return;
    };
    let mut task = executor
        .prepare("1", &submission("no-such-command-xyz", &[]))
        .expect("prepare");
    task.start().await.expect("start is not the error");
    assert_eq!(task.state().expect("state"), TaskState::Failed);
    assert_eq!(
        task.failure(),
        Some("command not found: no-such-command-xyz")
    );
    match task.wait().await {
        Err(ExecError::TaskFailed(message)) => {
            assert_eq!(message, "command not found: no-such-command-xyz")
        }
        other => panic!("expected a failure, got {other:?}"),
    }
    assert!(matches!(
        task.start().await,
        Err(ExecError::InvalidState { .. })
    ));
}

fn collect(outputs: &[TaskOutput]) -> (Vec<u8>, Vec<Value>) {
    let stdout = outputs.iter().flat_map(|o| o.stdout.clone()).collect();
    let controls = outputs.iter().flat_map(|o| o.controls.clone()).collect();
    (stdout, controls)
}

#[tokio::test]
async fn control_blocks_are_extracted_across_reads() {
    let Some((executor, _data)) = setup("control", true) else {
        return;
    };
    let script = "printf 'a<xgr'; sleep 0.4; \
                  printf 'id>{control = statusUpdate; percentDone = 50; }</xg'; sleep 0.4; \
                  printf 'rid>\\nb\\n'";
    let mut task = executor.prepare("1", &shell(script)).expect("prepare");
    task.start().await.expect("start");
    let mut reads = Vec::new();
    while task.state().expect("state") == TaskState::Running {
        reads.push(task.read_new_output().expect("read"));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    reads.push(task.read_new_output().expect("read"));
    let (stdout, controls) = collect(&reads);
    assert_eq!(stdout, b"ab\n");
    let mut update = BTreeMap::new();
    update.insert("control".to_string(), Value::String("statusUpdate".into()));
    update.insert("percentDone".to_string(), Value::String("50".into()));
    assert_eq!(controls, vec![Value::Dictionary(update)]);
    // The first piece came out while the tag was still incomplete.
    assert_eq!(
        reads
            .iter()
            .find(|r| !r.stdout.is_empty())
            .map(|r| &r.stdout[..]),
        Some(&b"a"[..])
    );
    // The file itself keeps everything the task wrote.
    let raw = std::fs::read(task.stdout_path()).expect("stdout");
    assert!(raw.windows(7).any(|w| w == b"<xgrid>"));
}

#[tokio::test]
async fn streaming_returns_only_new_bytes() {
    let Some((executor, _data)) = setup("stream", true) else {
        return;
    };
    let mut task = executor
        .prepare("1", &shell("echo one; echo err >&2; sleep 0.5; echo two"))
        .expect("prepare");
    task.start().await.expect("start");
    let mut first = TaskOutput::default();
    assert!(
        eventually(|| {
            let out = task.read_new_output().expect("read");
            first.stdout.extend(out.stdout);
            first.stderr.extend(out.stderr);
            first.stdout == b"one\n" && first.stderr == b"err\n"
        })
        .await,
        "{first:?}"
    );
    task.wait().await.expect("terminated");
    assert!(task.has_new_output());
    let rest = task.read_new_output().expect("read");
    assert_eq!(rest.stdout, b"two\n");
    assert!(rest.stderr.is_empty());
    assert!(!task.has_new_output());
    assert_eq!(task.read_new_output().expect("read"), TaskOutput::default());
}

#[tokio::test]
async fn remove_deletes_the_task_directory() {
    let Some((executor, _data)) = setup("remove", true) else {
        return;
    };
    let task = executor
        .prepare("1", &shell("sleep 1000"))
        .expect("prepare");
    let dir = task.task_dir().to_path_buf();
    let mut running = executor
        .prepare("2", &shell("sleep 1000"))
        .expect("prepare");
    running.start().await.expect("start");
    assert!(eventually(|| running.leader_pid().is_some()).await);
    let leader = running.leader_pid().expect("leader");
    let running_dir = running.task_dir().to_path_buf();

    task.remove().await.expect("remove pending");
    running.remove().await.expect("remove running");
    assert!(!dir.exists());
    assert!(!running_dir.exists());
    assert!(eventually(|| !Path::new(&format!("/proc/{leader}")).exists()).await);
    // The reference can be used again, and each task gets a directory of its own (so a
    // directory restored from another agent's checkpoint cannot collide with ours).
    let again = executor
        .prepare("1", &submission("true", &[]))
        .expect("prepare again");
    let twice = executor
        .prepare("1", &submission("true", &[]))
        .expect("prepare twice");
    assert_ne!(again.task_dir(), twice.task_dir());
    assert!(again.task_dir().exists() && twice.task_dir().exists());
}

#[tokio::test]
async fn configured_task_user() {
    let Some((_, data)) = setup("user", true) else {
        return;
    };
    let mut config = ExecutorConfig::new(&data.0, AGENT_NAME, 1, 1000);
    config.task_user = Some("root".into());
    let executor = Executor::new(config).expect("executor");
    assert_eq!(executor.run_as().uid, 0);
    let mut task = executor.prepare("1", &shell("id -u")).expect("prepare");
    let (_, stdout) = run_to_end(&mut task).await;
    assert_eq!(stdout, b"0\n");

    let mut config = ExecutorConfig::new(&data.0, AGENT_NAME, 1, 1000);
    config.task_user = Some("no-such-user-xyz".into());
    assert!(
        matches!(Executor::new(config), Err(ExecError::UnknownUser(name)) if name == "no-such-user-xyz")
    );
}

#[test]
fn tasks_can_move_between_threads() {
    fn send<T: Send>() {}
    send::<Task>();
    send::<Executor>();
}

fn parent_of(pid: i32) -> i32 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    let after = stat.rsplit_once(')').expect("comm").1;
    after
        .split_whitespace()
        .nth(1)
        .expect("ppid")
        .parse()
        .expect("number")
}

fn open_descriptors(pid: i32) -> Vec<String> {
    let mut fds: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("fd directory")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    fds.sort();
    fds
}

#[tokio::test]
async fn an_init_forked_by_the_zygote_holds_only_the_task_streams() {
    // CRIU refuses to dump a task holding a socket to a process outside it: the init must
    // hold nothing of the zygote's (its socket to the agent, its pidfds of other inits).
    let Some((executor, _data)) = setup("zygote-fds", true) else {
        return;
    };
    let mut first = executor.prepare("1", &shell("sleep 30")).expect("prepare");
    first.start().await.expect("start");
    let mut second = executor.prepare("2", &shell("sleep 30")).expect("prepare");
    second.start().await.expect("start");
    let init = second.leader_pid().expect("init pid");
    // Right after the fork the child still holds the zygote's copies; it drops them before
    // it starts the command.
    assert!(
        eventually(|| open_descriptors(init) == ["0", "1", "2"]).await,
        "{:?}",
        open_descriptors(init)
    );
    let link = |fd: &str| std::fs::read_link(format!("/proc/{init}/fd/{fd}")).expect("link");
    assert_eq!(link("1"), second.stdout_path());
    assert_eq!(link("2"), second.stderr_path());
    assert_eq!(link("0"), Path::new("/dev/null"));
    // Both inits come from the same zygote, which is not the test (the agent) itself.
    let zygote = parent_of(init);
    assert_eq!(parent_of(first.leader_pid().expect("init pid")), zygote);
    assert_ne!(zygote, std::process::id() as i32);
    first.cancel().expect("cancel");
    second.cancel().expect("cancel");
    assert!(first.wait().await.expect("ended").cancelled);
    assert!(second.wait().await.expect("ended").cancelled);
}

#[tokio::test]
async fn a_task_end_wakes_the_agent_and_a_lost_zygote_is_replaced() {
    let Some((executor, _data)) = setup("zygote-lost", true) else {
        return;
    };
    let ended = executor.task_ended();
    let mut quick = executor.prepare("1", &shell("exit 3")).expect("prepare");
    quick.start().await.expect("start");
    tokio::time::timeout(Duration::from_secs(10), ended.notified())
        .await
        .expect("the end of a task is told without a poll");
    assert_eq!(quick.state().expect("state"), TaskState::Terminated);
    assert_eq!(quick.termination().expect("ended").status, 3);

    // Killing the zygote (our own child) kills the inits it forked: the task ends as
    // killed rather than waiting for ever, and the next task gets a new zygote.
    let mut long = executor.prepare("2", &shell("sleep 30")).expect("prepare");
    long.start().await.expect("start");
    let zygote = parent_of(long.leader_pid().expect("init pid"));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(zygote),
        nix::sys::signal::SIGKILL,
    )
    .expect("kill the zygote");
    let termination = tokio::time::timeout(Duration::from_secs(10), long.wait())
        .await
        .expect("the task's end is known")
        .expect("terminated");
    assert_eq!(termination.signal, Some(9), "{termination:?}");
    let mut next = executor
        .prepare("3", &shell("echo again"))
        .expect("prepare");
    let (status, stdout) = run_to_end(&mut next).await;
    assert_eq!((status, stdout.as_slice()), (0, b"again\n".as_slice()));
    assert_ne!(current_zygote(&executor).await, zygote);
}

/// The zygote now serving `executor`: the parent of a task's init.
async fn current_zygote(executor: &Executor) -> i32 {
    let mut probe = executor
        .prepare("probe", &shell("sleep 30"))
        .expect("prepare");
    probe.start().await.expect("start");
    let zygote = parent_of(probe.leader_pid().expect("init pid"));
    probe.cancel().expect("cancel");
    let _ = probe.wait().await;
    zygote
}
