//! The checkpointer against real CRIU and real tasks started by the executor: a task is
//! dumped, its checkpoint streamed, its directory torn down and rebuilt at the same path
//! (as on another machine), and restored. Tests that need root, CRIU or POV-Ray say why
//! they skipped; `scripts/install-criu` provides CRIU.

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use xgrid_agent::checkpoint::{Checkpoint, CheckpointError, Checkpointer, RestoredTask, Unpacker};
use xgrid_agent::executor::{Executor, ExecutorConfig, Isolation, Task, STDIN_INPUT_FILE};
use xgrid_protocol::messages::{InputFile, TaskSubmission};

const CHESS: &str = "/usr/share/doc/povray/examples/advanced/chess2.pov";

/// A test's scratch directory (source and destination data directories inside), removed
/// when the test ends.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Scratch {
    /// The source agent's data directory.
    fn source(&self) -> PathBuf {
        self.0.join("source")
    }

    /// Where the destination agent keeps the incoming checkpoint.
    fn destination_checkpoint(&self) -> PathBuf {
        self.0.join("destination/checkpoints/1")
    }

    fn source_checkpoint(&self) -> PathBuf {
        self.0.join("source/checkpoints/1")
    }
}

fn is_root() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"))
}

/// An executor with PID namespaces over a fresh source data directory and a working
/// checkpointer; `None`, after saying why, when this machine cannot run the test.
fn setup(test: &str) -> Option<(Executor, Checkpointer, Scratch)> {
    setup_as(test, Some("root"))
}

/// [`setup`] with tasks run as `task_user` (`None`: the executor's default, `nobody`).
/// Most tests run tasks as root: CRIU needs CAP_SYS_RESOURCE to dump another user's
/// processes (see `task_run_as_the_unprivileged_user_moves_and_finishes`).
fn setup_as(test: &str, task_user: Option<&str>) -> Option<(Executor, Checkpointer, Scratch)> {
    if !is_root() {
        eprintln!("skipped {test}: CRIU and PID namespaces need root");
        return None;
    }
    let checkpointer = Checkpointer::probe();
    if let Some(reason) = checkpointer.unavailable_reason() {
        eprintln!("skipped {test}: {reason}");
        return None;
    }
    let scratch =
        Scratch(std::env::temp_dir().join(format!("xgrid-ckpt-{}-{test}", std::process::id())));
    let _ = std::fs::remove_dir_all(&scratch.0);
    std::fs::create_dir_all(scratch.source()).expect("data dir");
    std::fs::set_permissions(&scratch.0, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    std::fs::set_permissions(scratch.source(), std::fs::Permissions::from_mode(0o755))
        .expect("chmod");
    let mut config = ExecutorConfig::new(scratch.source(), "ckpt-test", 2, 2000);
    config.task_user = task_user.map(str::to_string);
    let executor = Executor::new(config).expect("executor");
    if executor.isolation() != &Isolation::PidNamespace {
        eprintln!("skipped {test}: {}", executor.isolation());
        return None;
    }
    Some((executor, checkpointer, scratch))
}

fn submission(command: &str, arguments: &[&str]) -> TaskSubmission {
    TaskSubmission {
        command: command.to_string(),
        arguments: arguments.iter().map(|a| a.to_string()).collect(),
        ..TaskSubmission::default()
    }
}

/// A shell loop printing 1, 2, … `count`, one line every 50 ms, then exiting with `status`.
fn counting_script(count: u32, status: i32) -> String {
    format!(
        "i=0; while [ $i -lt {count} ]; do i=$((i+1)); echo $i; sleep 0.05; done; exit {status}"
    )
}

fn lines(path: &Path) -> Vec<u32> {
    std::fs::read_to_string(path)
        .expect("stdout")
        .lines()
        .map(|l| l.parse().expect("a number per line"))
        .collect()
}

/// Wait (at most 20 s) until `done` holds.
async fn until(mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Stream a checkpoint the way two agents would: everything through one byte stream, read
/// and fed in modest pieces.
fn transfer(mut from: impl Read, into: &mut Unpacker) -> u64 {
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0;
    loop {
        let n = from.read(&mut buf).expect("read the stream");
        if n == 0 {
            return total;
        }
        into.feed(&buf[..n]).expect("unpack");
        total += n as u64;
    }
}

/// Move a running task: dump it (left stopped), then [`move_checkpoint`].
async fn migrate(checkpointer: &Checkpointer, task: &mut Task, scratch: &Scratch) -> RestoredTask {
    let leader = task.leader_pid().expect("running task");
    let checkpoint = checkpointer
        .dump(leader, task.task_dir(), &scratch.source_checkpoint(), true)
        .await
        .expect("dump");
    move_checkpoint(checkpointer, &checkpoint, task, scratch).await
}

/// Pack a checkpoint, end the task at the source and delete its directory, unpack at the
/// destination (the same task directory path), restore.
async fn move_checkpoint(
    checkpointer: &Checkpointer,
    checkpoint: &Checkpoint,
    task: &mut Task,
    scratch: &Scratch,
) -> RestoredTask {
    let mut unpacker = Unpacker::new(&scratch.destination_checkpoint());
    // The stream is produced while the task is still frozen, as it would be over the wire.
    // Here source and destination share a machine, so the task directory must be gone
    // before the destination recreates it: buffer the stream in between.
    let mut stream = Vec::new();
    let sent = checkpoint
        .pack()
        .expect("pack")
        .read_to_end(&mut stream)
        .expect("pack stream");
    task.cancel().expect("end the source task");
    let _ = task.wait().await;
    std::fs::remove_dir_all(task.task_dir()).expect("delete the source task directory");
    std::fs::remove_dir_all(scratch.source_checkpoint()).expect("delete the source checkpoint");
    assert_eq!(transfer(&stream[..], &mut unpacker), sent as u64);
    let unpacked = unpacker.finish().expect("whole stream");
    assert_eq!(unpacked.task_dir, task.task_dir());
    checkpointer
        .restore(&scratch.destination_checkpoint())
        .await
        .expect("restore")
}

#[tokio::test]
async fn counting_task_moves_and_continues_where_it_was() {
    let Some((executor, checkpointer, scratch)) = setup("count") else {
        return;
    };
    let mut task = executor
        .prepare(
            "1",
            &submission("/bin/sh", &["-c", &counting_script(60, 3)]),
        )
        .expect("prepare");
    task.start().await.expect("start");
    let stdout = task.stdout_path().to_path_buf();
    until(|| lines(&stdout).len() >= 10).await;

    let mut restored = migrate(&checkpointer, &mut task, &scratch).await;
    let at_move = lines(&stdout).len();
    assert!((10..60).contains(&at_move), "moved after {at_move} lines");
    assert!(!restored.process_ids().is_empty(), "the restored task runs");
    assert_ne!(Some(restored.leader_pid()), task.leader_pid());
    let status = restored.wait().await.expect("wait");
    assert_eq!(status, 3, "the restored task's exit status comes through");
    assert_eq!(lines(&stdout), (1..=60).collect::<Vec<u32>>());
}

#[tokio::test]
async fn dump_without_leave_stopped_ends_the_source_and_still_restores() {
    let Some((executor, checkpointer, scratch)) = setup("no-leave-stopped") else {
        return;
    };
    let mut task = executor
        .prepare(
            "1",
            &submission("/bin/sh", &["-c", &counting_script(50, 2)]),
        )
        .expect("prepare");
    task.start().await.expect("start");
    let stdout = task.stdout_path().to_path_buf();
    let stderr = task.stderr_path().to_path_buf();
    until(|| lines(&stdout).len() >= 5).await;
    let leader = task.leader_pid().expect("leader");
    let checkpoint = checkpointer
        .dump(leader, task.task_dir(), &scratch.source_checkpoint(), false)
        .await
        .expect("dump");
    // The task is killed at the source once the checkpoint is safe.
    let ended = tokio::time::timeout(Duration::from_secs(5), task.wait())
        .await
        .expect("the source task ends by itself");
    assert!(ended.is_ok(), "{ended:?}");
    let at_dump = lines(&stdout).len();
    eprintln!(
        "stderr at the source after the kill: {:?}",
        std::fs::read_to_string(&stderr)
    );
    // `unshare` may complain into stderr after its child was killed; the checkpoint carries
    // stderr as it was at the dump, so the restore still finds the size CRIU recorded.
    let mut stream = Vec::new();
    checkpoint
        .pack()
        .expect("pack")
        .read_to_end(&mut stream)
        .expect("stream");
    std::fs::remove_dir_all(task.task_dir()).expect("delete");
    let mut unpacker = Unpacker::new(&scratch.destination_checkpoint());
    transfer(&stream[..], &mut unpacker);
    unpacker.finish().expect("unpack");
    assert_eq!(std::fs::read(&stderr).expect("stderr"), b"");
    let mut restored = checkpointer
        .restore(&scratch.destination_checkpoint())
        .await
        .expect("restore");
    assert_eq!(restored.wait().await.expect("wait"), 2);
    assert!(at_dump < 50);
    assert_eq!(lines(&stdout), (1..=50).collect::<Vec<u32>>());
}

#[tokio::test]
async fn restored_task_can_be_stopped_resumed_and_killed() {
    let Some((executor, checkpointer, scratch)) = setup("control") else {
        return;
    };
    let mut task = executor
        .prepare(
            "1",
            &submission("/bin/sh", &["-c", &counting_script(400, 0)]),
        )
        .expect("prepare");
    task.start().await.expect("start");
    let stdout = task.stdout_path().to_path_buf();
    until(|| lines(&stdout).len() >= 3).await;
    let mut restored = migrate(&checkpointer, &mut task, &scratch).await;
    let moved_at = lines(&stdout).len();
    until(|| lines(&stdout).len() > moved_at).await;

    restored.signal(Signal::SIGSTOP).expect("stop");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let stopped_at = lines(&stdout).len();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        lines(&stdout).len(),
        stopped_at,
        "a stopped task prints nothing"
    );
    restored.signal(Signal::SIGCONT).expect("resume");
    until(|| lines(&stdout).len() > stopped_at).await;

    restored.kill().expect("kill");
    assert_eq!(restored.wait().await.expect("wait"), 128 + 9);
    assert!(restored.process_ids().is_empty());
    let printed = lines(&stdout);
    assert_eq!(printed, (1..=printed.len() as u32).collect::<Vec<u32>>());
}

#[tokio::test]
async fn task_reading_standard_input_resumes_at_the_same_line() {
    let Some((executor, checkpointer, scratch)) = setup("stdin") else {
        return;
    };
    let numbers: String = (1..=60).map(|n| format!("{n}\n")).collect();
    let mut spec = submission(
        "/bin/sh",
        &["-c", "while read n; do echo $n; sleep 0.05; done; exit 9"],
    );
    spec.input_files.insert(
        STDIN_INPUT_FILE.into(),
        InputFile {
            file_data: numbers.into_bytes(),
            is_executable: false,
        },
    );
    let mut task = executor.prepare("1", &spec).expect("prepare");
    task.start().await.expect("start");
    let stdout = task.stdout_path().to_path_buf();
    until(|| lines(&stdout).len() >= 10).await;
    let mut restored = migrate(&checkpointer, &mut task, &scratch).await;
    assert!(
        lines(&stdout).len() < 60,
        "moved before the end of the input"
    );
    assert_eq!(restored.wait().await.expect("wait"), 9);
    assert_eq!(lines(&stdout), (1..=60).collect::<Vec<u32>>());
}

#[tokio::test]
async fn povray_render_moves_and_finishes_with_identical_pixels() {
    let Some((executor, checkpointer, scratch)) = setup("povray") else {
        return;
    };
    if !Path::new("/usr/bin/povray").exists() || !Path::new(CHESS).exists() {
        eprintln!(
            "skipped povray: POV-Ray or its chess2 example is missing (apt-get install povray)"
        );
        return;
    }
    let render = |output: &str| -> Vec<String> {
        [
            &format!("+I{CHESS}"),
            "+W320",
            "+H240",
            "+WT4",
            "-D",
            "+FP",
            &format!("+O{output}"),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    // The uninterrupted reference, at the same time.
    let reference_dir = scratch.0.join("reference");
    std::fs::create_dir_all(&reference_dir).expect("reference dir");
    let reference_out = reference_dir.join("render.ppm");
    let reference = tokio::process::Command::new("/usr/bin/povray")
        .args(render(reference_out.to_str().expect("utf-8")))
        .current_dir(&reference_dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();

    let args = render("render.ppm");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut task = executor
        .prepare("1", &submission("/usr/bin/povray", &args))
        .expect("prepare");
    task.start().await.expect("start");
    // Rendering has begun once POV-Ray (the init's child) runs several threads.
    let threads =
        |pid: &i32| std::fs::read_dir(format!("/proc/{pid}/task")).map_or(0, |d| d.count());
    until(|| task.process_ids().iter().any(|pid| threads(pid) > 2)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        task.state().expect("state"),
        xgrid_protocol::messages::TaskState::Running,
        "the render must still be running when it is moved"
    );
    let output = task.work_dir().join("render.ppm");
    let mut restored = migrate(&checkpointer, &mut task, &scratch).await;
    assert_eq!(
        restored.wait().await.expect("wait"),
        0,
        "the render finishes"
    );
    assert!(reference.await.expect("reference render").success());
    let moved = std::fs::read(&output).expect("moved render");
    let expected = std::fs::read(&reference_out).expect("reference render");
    let (moved, expected) = (ppm_pixels(&moved), ppm_pixels(&expected));
    assert_eq!(moved.len(), 320 * 240 * 3, "a whole picture");
    let first_difference = moved.iter().zip(expected).position(|(a, b)| a != b);
    assert!(
        moved == expected,
        "pixels differ from the uninterrupted render, first at byte {first_difference:?}"
    );
}

/// The pixel bytes of a binary PPM (`P6`), past its header and `#` comments (POV-Ray
/// writes the render date in one).
fn ppm_pixels(ppm: &[u8]) -> &[u8] {
    let mut fields = 0;
    let mut at = 0;
    while fields < 4 {
        match ppm.get(at) {
            Some(b'#') => {
                while ppm.get(at).is_some_and(|&b| b != b'\n') {
                    at += 1;
                }
            }
            Some(b) if b.is_ascii_whitespace() => at += 1,
            Some(_) => {
                while ppm.get(at).is_some_and(|b| !b.is_ascii_whitespace()) {
                    at += 1;
                }
                fields += 1;
            }
            None => panic!("not a whole PPM file"),
        }
    }
    // One whitespace byte separates the header from the pixels.
    &ppm[at + 1..]
}

#[tokio::test]
async fn failed_restore_leaves_the_task_running_once_at_the_source() {
    let Some((executor, checkpointer, scratch)) = setup("failed-restore") else {
        return;
    };
    // A private copy of the shell: deleting it makes the restore impossible.
    let bin = scratch.0.join("bin");
    std::fs::create_dir_all(&bin).expect("bin");
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let shell = bin.join("counting-sh");
    std::fs::copy("/bin/sh", &shell).expect("copy the shell");
    let shell_str = shell.to_str().expect("utf-8");
    let mut task = executor
        .prepare(
            "1",
            &submission(shell_str, &["-c", &counting_script(40, 5)]),
        )
        .expect("prepare");
    task.start().await.expect("start");
    let stdout = task.stdout_path().to_path_buf();
    until(|| lines(&stdout).len() >= 5).await;
    let leader = task.leader_pid().expect("leader");

    let checkpoint = checkpointer
        .dump(leader, task.task_dir(), &scratch.source_checkpoint(), true)
        .await
        .expect("dump");
    let frozen_at = lines(&stdout).len();
    let mut stream = Vec::new();
    checkpoint
        .pack()
        .expect("pack")
        .read_to_end(&mut stream)
        .expect("stream");
    let running_copies = || {
        std::fs::read_dir("/proc")
            .expect("proc")
            .filter_map(|e| std::fs::read_link(e.ok()?.path().join("exe")).ok())
            .filter(|exe| exe.to_string_lossy().contains("counting-sh"))
            .count()
    };
    let before = running_copies();
    assert!(before >= 1);

    // The destination: same task directory path, but the program is gone.
    let away = scratch.0.join("source-task-away");
    std::fs::rename(task.task_dir(), &away).expect("move the source directory aside");
    std::fs::remove_file(&shell).expect("delete the program");
    let mut unpacker = Unpacker::new(&scratch.destination_checkpoint());
    transfer(&stream[..], &mut unpacker);
    let unpacked = unpacker.finish().expect("unpack");
    let error = checkpointer
        .restore(&scratch.destination_checkpoint())
        .await
        .expect_err("the restore cannot find the program");
    assert!(
        matches!(
            error,
            CheckpointError::Criu {
                action: "restore",
                ..
            }
        ),
        "{error}"
    );
    assert_eq!(running_copies(), before, "nothing runs at the destination");
    unpacked.discard();
    assert!(!task.task_dir().exists());

    // The move failed: the source goes on from where it was frozen.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(lines(&away.join("stdout")).len(), frozen_at, "still frozen");
    std::fs::rename(&away, task.task_dir()).expect("move the source directory back");
    checkpoint.resume().expect("resume");
    let termination = task.wait().await.expect("the source task ends");
    assert_eq!(termination.status, 5);
    assert_eq!(
        lines(&stdout),
        (1..=40).collect::<Vec<u32>>(),
        "ran exactly once"
    );
}

/// Whether this process may read and set other users' resource limits (CAP_SYS_RESOURCE),
/// which CRIU does for every process it dumps or restores that is not its own user's.
fn has_sys_resource() -> bool {
    const CAP_SYS_RESOURCE: u32 = 24;
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << CAP_SYS_RESOURCE) != 0)
}

/// A task the executor runs as its default unprivileged user (`nobody`) under the
/// launcher's root init: CRIU dumps it and restores it, and it finishes with every line
/// once and its exit status. That needs CAP_SYS_RESOURCE besides root; without it (a
/// sandbox that withholds it) CRIU's dump must fail cleanly and leave the task running.
#[tokio::test]
async fn task_run_as_the_unprivileged_user_moves_and_finishes() {
    let Some((executor, checkpointer, scratch)) = setup_as("unprivileged", None) else {
        return;
    };
    assert_ne!(
        executor.run_as().uid,
        0,
        "the default task user is unprivileged"
    );
    let mut task = executor
        .prepare(
            "1",
            &submission("/bin/sh", &["-c", &counting_script(40, 6)]),
        )
        .expect("prepare");
    task.start().await.expect("start");
    let stdout = task.stdout_path().to_path_buf();
    until(|| lines(&stdout).len() >= 5).await;
    if !has_sys_resource() {
        let leader = task.leader_pid().expect("leader");
        let error = checkpointer
            .dump(leader, task.task_dir(), &scratch.source_checkpoint(), true)
            .await
            .expect_err("CRIU cannot read another user's resource limits");
        eprintln!(
            "skipped the restore of a task run as nobody: this process lacks \
             CAP_SYS_RESOURCE, which CRIU needs for another user's processes ({error})"
        );
        // The root init got CRIU past the namespace's /proc; only the limits stop it.
        assert!(
            matches!(error, CheckpointError::Criu { action: "dump", .. })
                && error.to_string().contains("rlimit"),
            "{error}"
        );
        // The failed dump left the task running: it finishes, every line exactly once.
        let termination = task.wait().await.expect("the task ends");
        assert_eq!(termination.status, 6);
        assert_eq!(lines(&stdout), (1..=40).collect::<Vec<u32>>());
        return;
    }
    let mut restored = migrate(&checkpointer, &mut task, &scratch).await;
    let at_move = lines(&stdout).len();
    assert!((5..40).contains(&at_move), "moved after {at_move} lines");
    let status = restored.wait().await.expect("wait");
    assert_eq!(status, 6, "the restored task's exit status comes through");
    assert_eq!(lines(&stdout), (1..=40).collect::<Vec<u32>>());
}

#[tokio::test]
async fn pre_copy_then_dump() {
    let Some((executor, checkpointer, scratch)) = setup("pre-copy") else {
        return;
    };
    // Holds 30 MB it has written to, and counts.
    let script = "my $n = 30 << 20; my $m = 'x' x $n; $| = 1; \
                  for my $i (1..60) { print \"$i\\n\"; select(undef, undef, undef, 0.05) } exit 4";
    let mut task = executor
        .prepare("1", &submission("/usr/bin/perl", &["-e", script]))
        .expect("prepare");
    task.start().await.expect("start");
    let stdout = task.stdout_path().to_path_buf();
    until(|| lines(&stdout).len() >= 5).await;
    let leader = task.leader_pid().expect("leader");
    let capabilities = checkpointer.capabilities().expect("criu").clone();
    if !capabilities.pre_copy {
        let error = checkpointer
            .pre_dump(leader, &scratch.source_checkpoint())
            .await
            .expect_err("no soft-dirty tracking here");
        assert!(
            matches!(error, CheckpointError::PreCopyUnsupported),
            "{error}"
        );
        eprintln!("skipped the rest of pre_copy_then_dump: {error}");
        return;
    }
    let first = checkpointer
        .pre_dump(leader, &scratch.source_checkpoint())
        .await
        .expect("pre-dump");
    assert!(first.pages_written >= (30 << 20) / 4096, "{first:?}");
    let checkpoint = checkpointer
        .dump(leader, task.task_dir(), &scratch.source_checkpoint(), true)
        .await
        .expect("dump after the pre-dump");
    let last = checkpoint.stats();
    // The 30 MB did not change since the pre-dump: the final dump leaves it out.
    assert!(
        last.pages_skipped_from_parent >= (30 << 20) / 4096,
        "{last:?}"
    );
    assert!(
        last.pages_written < first.pages_written / 4,
        "{last:?} after {first:?}"
    );
    let mut restored = move_checkpoint(&checkpointer, &checkpoint, &mut task, &scratch).await;
    assert_eq!(restored.wait().await.expect("wait"), 4);
    assert_eq!(lines(&stdout), (1..=60).collect::<Vec<u32>>());
}

#[tokio::test]
async fn without_criu_every_request_says_why() {
    let checkpointer = Checkpointer::with_criu(Path::new("/nonexistent/criu"));
    assert!(checkpointer.capabilities().is_none());
    let reason = checkpointer.unavailable_reason().expect("unavailable");
    assert!(reason.contains("/nonexistent/criu"), "{reason}");
    let error = checkpointer
        .dump(1, Path::new("/tmp"), Path::new("/tmp/none"), true)
        .await
        .expect_err("cannot dump");
    assert!(matches!(error, CheckpointError::Unavailable(_)), "{error}");
    assert!(
        error.to_string().contains("restart from scratch"),
        "{error}"
    );
    let error = checkpointer
        .restore(Path::new("/tmp/none"))
        .await
        .expect_err("cannot restore");
    assert!(matches!(error, CheckpointError::Unavailable(_)), "{error}");
}

#[tokio::test]
async fn dumping_a_task_that_is_gone_is_refused() {
    let Some((_executor, checkpointer, scratch)) = setup("gone") else {
        return;
    };
    let error = checkpointer
        .dump(i32::MAX - 7, &scratch.0, &scratch.source_checkpoint(), true)
        .await
        .expect_err("no such process");
    assert!(matches!(error, CheckpointError::NoSuchTask(_)), "{error}");
}
