//! The agent's checkpointer: freezes a running task into CRIU images, packs the images and
//! the task's directory into one stream, and brings the task back to life from such a
//! stream, on this machine or another (docs/checkpoint.md says what CRIU needs here).
//!
//! A checkpoint directory holds `dump/` (the final images) and, with pre-copy, `pre-1/`,
//! `pre-2/`… (earlier memory copies the final dump refers to). The whole directory travels.
//!
//! Decisions the agent's session should know:
//! - Every dump leaves the task stopped while the task directory is recorded; only then, if
//!   the caller did not ask to keep it stopped, is it killed. (Killed by CRIU, the task's
//!   first process could write into the task's files before the directory was recorded,
//!   and CRIU refuses to restore a file whose size changed.)
//! - A restore runs `criu restore` in the foreground with `--exec-cmd`: once the tree is
//!   back, CRIU becomes a small Perl waiter (Perl is essential on Debian), so the restored
//!   task stays the agent's grandchild, never an orphan, and the waiter's exit status is the
//!   task's: its exit code, or 128 + the signal that killed it (the executor's convention).
//!   A plain foreground `criu restore` waits for the restored tree but then exits 0
//!   whatever the task's status (exit 7 and SIGKILL both gave 0 with CRIU 4.1.1).
//! - Pre-copy needs the kernel's soft-dirty page tracking; [`Capabilities::pre_copy`] says
//!   whether this machine has it ([`CheckpointError::PreCopyUnsupported`] otherwise).
//! - `--file-locks` is always on, so a task holding file locks can move (with them).
//! - CRIU cannot dump a PID namespace whose init is unprivileged: its parasite, running
//!   as that init, must mount a /proc of the namespace (the agent's /proc belongs to the
//!   agent's namespace). The executor's launcher therefore keeps the init root and runs the
//!   task as its user one level down. Dumping another user's processes also needs
//!   CAP_SYS_RESOURCE (CRIU reads their rlimits), which the sandbox here lacks: there the
//!   dump of a task run as `nobody` fails and the task runs on.

mod criu;
mod pack;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncRead, ReadBuf};

pub use criu::{
    missing_cpu_flags, parse_cpu_flags, parse_dump_stats, parse_version, DumpStats, MIN_MAJOR,
};
pub use pack::{Manifest, PackError, PackReader, Unpacked, Unpacker};

/// The final images of a checkpoint, inside its directory.
pub const DUMP_DIR: &str = "dump";

/// How long a restore may take before it is given up.
const RESTORE_TIMEOUT: Duration = Duration::from_secs(120);

/// What the restoring `criu` execs into once the tree is back: say so (with the restored
/// init's pid, from CRIU's pidfile), close stdout, then wait for that init and exit with
/// its status.
const WAITER: &str = r#"
open(my $f, '<', $ARGV[0]) or exit 254;
my $leader = <$f>; close $f; $leader =~ s/\s+//g;
$| = 1; print "restored $leader\n"; close STDOUT;
while (1) {
    my $pid = wait;
    exit 255 if $pid < 0;
    next if $pid != $leader;
    my $s = $?;
    exit(($s & 127) ? 128 + ($s & 127) : ($s >> 8));
}
"#;

/// Why a checkpoint or restore did not happen.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("this agent cannot checkpoint tasks ({0}); a task can only restart from scratch")]
    Unavailable(String),
    #[error(
        "this kernel cannot track which memory a task changed (soft-dirty pages are off), so \
         pre-copy is impossible here; dump the task directly"
    )]
    PreCopyUnsupported,
    #[error("process {0} is not running: there is no task to checkpoint")]
    NoSuchTask(i32),
    #[error("could not run {program}: {source}")]
    Run {
        program: String,
        source: std::io::Error,
    },
    #[error("criu could not {action} the task: {reason} (log: {})", log.display())]
    Criu {
        action: &'static str,
        reason: String,
        log: PathBuf,
    },
    #[error("could not {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} holds no checkpoint (no {DUMP_DIR}/ inside)", .0.display())]
    NoCheckpoint(PathBuf),
    #[error("{} already exists: use a fresh checkpoint directory", .0.display())]
    CheckpointExists(PathBuf),
    #[error("could not {action} the task's processes: {source}")]
    Signal {
        action: &'static str,
        source: nix::errno::Errno,
    },
    #[error("criu took more than {0:?} to restore the task; it was stopped")]
    RestoreTimeout(Duration),
    #[error(transparent)]
    Pack(#[from] PackError),
}

impl CheckpointError {
    fn io<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> Self + 'a {
        move |source| CheckpointError::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    }
}

/// What this machine's CRIU can do, for the agent's log and the controller's balancer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capabilities {
    /// `criu --version`'s number, e.g. `4.1.1`.
    pub version: String,
    /// Whether `pre-dump --track-mem` works (iterative pre-copy).
    pub pre_copy: bool,
    /// This machine's CPU feature flags, sorted: a task should only move to a machine that
    /// has every flag of its source (see [`missing_cpu_flags`]).
    pub cpu_flags: Vec<String>,
}

#[derive(Debug, Clone)]
enum Backend {
    Criu {
        criu: PathBuf,
        perl: PathBuf,
        capabilities: Capabilities,
    },
    /// No usable CRIU: every operation says so and why.
    Unavailable(String),
}

/// Checkpoints and restores tasks; one per agent.
#[derive(Debug, Clone)]
pub struct Checkpointer {
    backend: Backend,
}

impl Checkpointer {
    /// Look for a working CRIU (on PATH or in the system directories). Blocks for a moment
    /// (`criu check`), so call it at startup. Never fails: without CRIU the checkpointer
    /// says why on every request.
    pub fn probe() -> Checkpointer {
        match criu::find_program("criu") {
            Some(criu) => Checkpointer::with_criu(&criu),
            None => Checkpointer::unavailable(
                "criu is not installed; scripts/install-criu installs CRIU 4",
            ),
        }
    }

    /// Use the `criu` at `path`, if it works here.
    pub fn with_criu(path: &Path) -> Checkpointer {
        match probe_criu(path) {
            Ok(backend) => Checkpointer { backend },
            Err(reason) => Checkpointer::unavailable(reason),
        }
    }

    /// A checkpointer that refuses everything (configuration turned checkpoints off, or
    /// tasks run without a PID namespace).
    pub fn unavailable(reason: impl Into<String>) -> Checkpointer {
        Checkpointer {
            backend: Backend::Unavailable(reason.into()),
        }
    }

    /// What CRIU can do here; `None` when checkpoints are unavailable.
    pub fn capabilities(&self) -> Option<&Capabilities> {
        match &self.backend {
            Backend::Criu { capabilities, .. } => Some(capabilities),
            Backend::Unavailable(_) => None,
        }
    }

    /// Why checkpoints are unavailable, if they are.
    pub fn unavailable_reason(&self) -> Option<&str> {
        match &self.backend {
            Backend::Criu { .. } => None,
            Backend::Unavailable(reason) => Some(reason),
        }
    }

    fn criu(&self) -> Result<(&Path, &Path, &Capabilities), CheckpointError> {
        match &self.backend {
            Backend::Criu {
                criu,
                perl,
                capabilities,
            } => Ok((criu, perl, capabilities)),
            Backend::Unavailable(reason) => Err(CheckpointError::Unavailable(reason.clone())),
        }
    }

    /// Copy the task's memory while it keeps running (one pre-copy round), into the next
    /// `pre-N/` of `checkpoint_dir`. The final [`Checkpointer::dump`] then writes only
    /// the pages changed since the last round.
    pub async fn pre_dump(
        &self,
        leader_pid: i32,
        checkpoint_dir: &Path,
    ) -> Result<DumpStats, CheckpointError> {
        let (criu, _, capabilities) = self.criu()?;
        if !capabilities.pre_copy {
            return Err(CheckpointError::PreCopyUnsupported);
        }
        running(leader_pid)?;
        let previous = latest_pre_dump(checkpoint_dir);
        let name = format!("pre-{}", previous.as_ref().map_or(1, |(n, _)| n + 1));
        let images = checkpoint_dir.join(&name);
        create_fresh_dir(&images)?;
        let mut args = dump_args("pre-dump", leader_pid, &images, "pre-dump.log");
        args.push("--track-mem".into());
        if let Some((_, parent)) = previous {
            args.extend(["--prev-images-dir".into(), format!("../{parent}")]);
        }
        let output = run_criu(criu, &args).await?;
        if !output.status.success() {
            return Err(criu_failure("pre-dump", &images, "pre-dump.log"));
        }
        Ok(parse_dump_stats(&output.text))
    }

    /// Checkpoint the task whose namespace init is `leader_pid` into `checkpoint_dir/dump`
    /// and record `task_dir` as it is at that moment. With `leave_stopped` the task stays
    /// frozen (so it can be resumed if the move fails); otherwise it is killed once the
    /// checkpoint is safe. If the dump fails the task runs on (or stays stopped, if it was
    /// stopped before).
    pub async fn dump(
        &self,
        leader_pid: i32,
        task_dir: &Path,
        checkpoint_dir: &Path,
        leave_stopped: bool,
    ) -> Result<Checkpoint, CheckpointError> {
        let (criu, _, capabilities) = self.criu()?;
        let was_stopped = running(leader_pid)?;
        let images = checkpoint_dir.join(DUMP_DIR);
        create_fresh_dir(&images)?;
        let mut args = dump_args("dump", leader_pid, &images, "dump.log");
        args.push("--leave-stopped".into());
        if let Some((_, parent)) = latest_pre_dump(checkpoint_dir) {
            if capabilities.pre_copy {
                args.extend([
                    "--track-mem".into(),
                    "--prev-images-dir".into(),
                    format!("../{parent}"),
                ]);
            }
        }
        let started = Instant::now();
        let outcome = run_criu(criu, &args).await;
        let dump_time = started.elapsed();
        let output = match outcome {
            Ok(output) if output.status.success() => output,
            failed => {
                // CRIU resumes the tree itself when a dump fails; this catches a tree left
                // frozen by a crashed criu. A task stopped before is left stopped.
                if !was_stopped {
                    let _ = signal_namespace(leader_pid, Signal::SIGCONT);
                }
                return Err(match failed {
                    Err(e) => e,
                    Ok(_) => criu_failure("dump", &images, "dump.log"),
                });
            }
        };
        let manifest = match Manifest::capture(task_dir) {
            Ok(manifest) => manifest,
            Err(e) => {
                // Without its directory the checkpoint is useless: the task must not stay
                // frozen (or die) for it.
                if !was_stopped {
                    let _ = signal_namespace(leader_pid, Signal::SIGCONT);
                }
                return Err(e.into());
            }
        };
        let checkpoint = Checkpoint {
            dir: checkpoint_dir.to_path_buf(),
            task_dir: task_dir.to_path_buf(),
            manifest,
            stats: parse_dump_stats(&output.text),
            dump_time,
            leader_pid,
            was_stopped,
        };
        if !leave_stopped {
            checkpoint.kill()?;
        }
        Ok(checkpoint)
    }

    /// Restore the task checkpointed in `checkpoint_dir` (its task directory must already
    /// be back at its original path, see [`Unpacker`]). Returns once the task runs again.
    /// On failure nothing of the task is left running here.
    pub async fn restore(&self, checkpoint_dir: &Path) -> Result<RestoredTask, CheckpointError> {
        self.restore_tree(checkpoint_dir, false).await
    }

    /// [`Checkpointer::restore`], leaving every process of the task stopped until
    /// [`thaw`]: a task whose move is not yet recorded must not run.
    pub async fn restore_frozen(
        &self,
        checkpoint_dir: &Path,
    ) -> Result<RestoredTask, CheckpointError> {
        self.restore_tree(checkpoint_dir, true).await
    }

    async fn restore_tree(
        &self,
        checkpoint_dir: &Path,
        leave_stopped: bool,
    ) -> Result<RestoredTask, CheckpointError> {
        let (criu, perl, _) = self.criu()?;
        let images = checkpoint_dir.join(DUMP_DIR);
        if !images.join("inventory.img").is_file() {
            return Err(CheckpointError::NoCheckpoint(checkpoint_dir.to_path_buf()));
        }
        let pidfile = images.join("restore.pid");
        let stderr_path = images.join("restore.stderr");
        let stderr = std::fs::File::create(&stderr_path)
            .map_err(CheckpointError::io("create", &stderr_path))?;
        let mut child = tokio::process::Command::new(criu)
            .arg("restore")
            .arg("--images-dir")
            .arg(&images)
            .args(["--log-file", "restore.log", "--file-locks", "--pidfile"])
            .arg(&pidfile)
            .args(leave_stopped.then_some("--leave-stopped"))
            .args(["--exec-cmd", "--"])
            .arg(perl)
            .args(["-e", WAITER])
            .arg(&pidfile)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr))
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| CheckpointError::Run {
                program: criu.display().to_string(),
                source,
            })?;
        let started = Instant::now();
        let announced = match child.stdout.take() {
            Some(mut stdout) => {
                match tokio::time::timeout(RESTORE_TIMEOUT, read_line(&mut stdout)).await {
                    Ok(line) => line
                        .strip_prefix("restored ")
                        .and_then(|pid| pid.trim().parse::<i32>().ok()),
                    Err(_) => {
                        // Killing criu mid-restore kills the half-built tree with it.
                        let _ = child.kill().await;
                        return Err(CheckpointError::RestoreTimeout(RESTORE_TIMEOUT));
                    }
                }
            }
            None => None,
        };
        let Some(leader_pid) = announced else {
            // criu exited without exec'ing the waiter: the restore failed, and CRIU has
            // killed whatever it had already recreated.
            let _ = child.wait().await;
            return Err(criu_failure("restore", &images, "restore.log"));
        };
        Ok(RestoredTask {
            child: Some(child),
            leader_pid,
            restore_time: started.elapsed(),
            finished: None,
        })
    }
}

/// The checks behind [`Checkpointer::probe`]; the error is the reason to report.
fn probe_criu(criu: &Path) -> Result<Backend, String> {
    let run = |args: &[&str]| {
        std::process::Command::new(criu)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("{} could not be run: {e}", criu.display()))
    };
    let version = run(&["--version"])?;
    let text = String::from_utf8_lossy(&version.stdout);
    let Some((major, minor, patch)) = parse_version(&text) else {
        return Err(format!("{} did not report a version", criu.display()));
    };
    if major < MIN_MAJOR {
        return Err(format!(
            "CRIU {major}.{minor} is too old for this kernel (4 or newer is needed; \
             scripts/install-criu installs it)"
        ));
    }
    let check = run(&["check"])?;
    if !check.status.success() {
        let said = String::from_utf8_lossy(&check.stderr);
        let said = criu::log_errors(&said, 3);
        return Err(format!(
            "`criu check` failed ({}){}",
            check.status,
            if said.is_empty() {
                " (CRIU needs root)".to_string()
            } else {
                format!(": {said}")
            }
        ));
    }
    let pre_copy = run(&["check", "--feature", "mem_dirty_track"])?
        .status
        .success();
    let Some(perl) = criu::find_program("perl") else {
        return Err("perl is not installed; restores need it to wait for the task".into());
    };
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    Ok(Backend::Criu {
        criu: criu.to_path_buf(),
        perl,
        capabilities: Capabilities {
            version: format!("{major}.{minor}.{patch}"),
            pre_copy,
            cpu_flags: parse_cpu_flags(&cpuinfo),
        },
    })
}

/// The first line the waiter prints (at most a few dozen bytes), or what came before EOF.
async fn read_line(stdout: &mut tokio::process::ChildStdout) -> String {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    // Byte by byte: the line is short and nothing after it may be consumed.
    while line.len() < 64 {
        let mut buf = ReadBuf::new(&mut byte);
        let read =
            std::future::poll_fn(|cx| std::pin::Pin::new(&mut *stdout).poll_read(cx, &mut buf))
                .await;
        if read.is_err() || buf.filled().is_empty() || byte[0] == b'\n' {
            break;
        }
        line.push(byte[0]);
    }
    String::from_utf8_lossy(&line).into_owned()
}

fn dump_args(command: &str, leader_pid: i32, images: &Path, log: &str) -> Vec<String> {
    vec![
        command.into(),
        "--tree".into(),
        leader_pid.to_string(),
        "--images-dir".into(),
        images.to_string_lossy().into_owned(),
        "--log-file".into(),
        log.into(),
        "--file-locks".into(),
        "--display-stats".into(),
    ]
}

/// The newest `pre-N/` in a checkpoint directory.
fn latest_pre_dump(checkpoint_dir: &Path) -> Option<(u32, String)> {
    std::fs::read_dir(checkpoint_dir)
        .ok()?
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            let n = name.strip_prefix("pre-")?.parse().ok()?;
            Some((n, name))
        })
        .max()
}

fn create_fresh_dir(dir: &Path) -> Result<(), CheckpointError> {
    if let Some(parent) = dir.parent() {
        std::fs::create_dir_all(parent).map_err(CheckpointError::io("create", parent))?;
    }
    std::fs::create_dir(dir).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            CheckpointError::CheckpointExists(dir.to_path_buf())
        } else {
            CheckpointError::io("create", dir)(e)
        }
    })
}

struct CriuOutput {
    status: std::process::ExitStatus,
    /// stdout and stderr together (`--display-stats` goes to one of them).
    text: String,
}

async fn run_criu(criu: &Path, args: &[String]) -> Result<CriuOutput, CheckpointError> {
    let output = tokio::process::Command::new(criu)
        .args(args)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|source| CheckpointError::Run {
            program: criu.display().to_string(),
            source,
        })?;
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    Ok(CriuOutput {
        status: output.status,
        text,
    })
}

fn criu_failure(action: &'static str, images: &Path, log: &str) -> CheckpointError {
    let log = images.join(log);
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let mut reason = criu::log_errors(&text, 4);
    if reason.is_empty() {
        reason = "no error in its log".into();
    }
    if text.contains("Can't get proc fd") {
        // The parasite, running as the task's init, must mount a /proc for the task's
        // namespace, which an unprivileged init cannot do.
        reason = format!(
            "the task's namespace init is unprivileged and has no /proc of its own \
             namespace, so CRIU cannot dump it (run the namespace init as root, or give \
             the task a mount namespace with its own /proc) [{reason}]"
        );
    }
    CheckpointError::Criu {
        action,
        reason,
        log,
    }
}

/// Check the task's init exists; returns whether it is stopped (`T` in its stat).
fn running(leader_pid: i32) -> Result<bool, CheckpointError> {
    let stat = std::fs::read_to_string(format!("/proc/{leader_pid}/stat"))
        .map_err(|_| CheckpointError::NoSuchTask(leader_pid))?;
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next());
    match state {
        Some("Z" | "X") | None => Err(CheckpointError::NoSuchTask(leader_pid)),
        Some(state) => Ok(state == "T"),
    }
}

/// Every process in the PID namespace whose init is `leader_pid`.
fn namespace_members(leader_pid: i32) -> Vec<i32> {
    let namespace = |pid: &str| std::fs::read_link(format!("/proc/{pid}/ns/pid")).ok();
    let Some(ours) = namespace(&leader_pid.to_string()) else {
        return Vec::new();
    };
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            let pid = name.parse::<i32>().ok()?;
            (namespace(&name).as_ref() == Some(&ours)).then_some(pid)
        })
        .collect()
}

fn signal_namespace(leader_pid: i32, sig: Signal) -> Result<(), nix::errno::Errno> {
    for pid in namespace_members(leader_pid) {
        match signal::kill(Pid::from_raw(pid), sig) {
            Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Lets every process of the task whose namespace init is `leader_pid` run again (a task
/// restored with [`Checkpointer::restore_frozen`]).
pub fn thaw(leader_pid: i32) -> Result<(), CheckpointError> {
    signal_namespace(leader_pid, Signal::SIGCONT).map_err(|source| CheckpointError::Signal {
        action: "resume",
        source,
    })
}

/// Ends the task whose namespace init is `leader_pid`: SIGKILL to the init takes the whole
/// namespace with it.
pub fn kill_tree(leader_pid: i32) -> Result<(), CheckpointError> {
    match signal::kill(Pid::from_raw(leader_pid), Signal::SIGKILL) {
        Ok(()) | Err(nix::errno::Errno::ESRCH) => Ok(()),
        Err(source) => Err(CheckpointError::Signal {
            action: "kill",
            source,
        }),
    }
}

/// A dumped task: its images, its task directory as it was at the dump, and (when left
/// stopped) the frozen task itself.
#[derive(Debug)]
pub struct Checkpoint {
    dir: PathBuf,
    task_dir: PathBuf,
    manifest: Manifest,
    stats: DumpStats,
    dump_time: Duration,
    leader_pid: i32,
    was_stopped: bool,
}

impl Checkpoint {
    /// The checkpoint directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn task_dir(&self) -> &Path {
        &self.task_dir
    }

    /// CRIU's figures for the final dump.
    pub fn stats(&self) -> DumpStats {
        self.stats
    }

    /// Wall time of the final `criu dump`.
    pub fn dump_time(&self) -> Duration {
        self.dump_time
    }

    /// The migration stream: the checkpoint directory and the task directory as recorded.
    /// The task must stay stopped or dead until the stream has been read to its end.
    pub fn pack(&self) -> Result<PackReader, CheckpointError> {
        Ok(PackReader::new(&self.dir, &self.task_dir, &self.manifest)?)
    }

    /// Let a task left stopped run on here (the move failed). A task that was stopped
    /// before the dump stays stopped.
    pub fn resume(&self) -> Result<(), CheckpointError> {
        if self.was_stopped {
            return Ok(());
        }
        thaw(self.leader_pid)
    }

    /// End the source task (the move succeeded).
    pub fn kill(&self) -> Result<(), CheckpointError> {
        kill_tree(self.leader_pid)
    }
}

/// A task brought back by [`Checkpointer::restore`]. Its processes are the agent's
/// grandchildren (through the waiter); dropping this kills the task.
#[derive(Debug)]
pub struct RestoredTask {
    /// `criu restore`, now the waiter; `None` once handed over by [`RestoredTask::into_parts`].
    child: Option<tokio::process::Child>,
    leader_pid: i32,
    restore_time: Duration,
    finished: Option<i32>,
}

impl RestoredTask {
    /// The agent-side pid of the restored namespace init.
    pub fn leader_pid(&self) -> i32 {
        self.leader_pid
    }

    /// The waiter (the restored init's parent, whose exit status is the task's) and the
    /// init's pid, for an owner that watches them itself (the executor). The task lives on.
    pub fn into_parts(mut self) -> Option<(tokio::process::Child, i32)> {
        let child = self.child.take()?;
        Some((child, self.leader_pid))
    }

    /// The agent-side pids of all the task's processes now.
    pub fn process_ids(&mut self) -> Vec<i32> {
        if !self.alive() {
            return Vec::new();
        }
        namespace_members(self.leader_pid)
    }

    /// Whether the leader's pid still names the task: once the waiter has reaped it, the
    /// pid may be reused, so nothing is signalled by it.
    fn alive(&mut self) -> bool {
        let Some(child) = self.child.as_mut() else {
            return false;
        };
        if self.finished.is_some() || !matches!(child.try_wait(), Ok(None)) {
            return false;
        }
        let waiter = child.id().and_then(|id| i32::try_from(id).ok());
        let parent = std::fs::read_to_string(format!("/proc/{}/stat", self.leader_pid))
            .ok()
            .and_then(|stat| {
                let (_, rest) = stat.rsplit_once(')')?;
                rest.split_whitespace().nth(1)?.parse::<i32>().ok()
            });
        waiter.is_some() && parent == waiter
    }

    /// From starting `criu restore` until the task ran again.
    pub fn restore_time(&self) -> Duration {
        self.restore_time
    }

    /// Wait for the task to end: its exit code, or 128 + the signal that killed it.
    /// Cancel-safe.
    pub async fn wait(&mut self) -> Result<i32, CheckpointError> {
        if let Some(status) = self.finished {
            return Ok(status);
        }
        let Some(child) = self.child.as_mut() else {
            return Err(CheckpointError::NoSuchTask(self.leader_pid));
        };
        let status = child.wait().await.map_err(|source| CheckpointError::Run {
            program: "the restored task's waiter".into(),
            source,
        })?;
        use std::os::unix::process::ExitStatusExt;
        let status = status
            .code()
            .unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
        self.finished = Some(status);
        Ok(status)
    }

    /// Send a signal to every process of the task (SIGSTOP/SIGCONT for stop and resume).
    pub fn signal(&mut self, sig: Signal) -> Result<(), CheckpointError> {
        if !self.alive() {
            return Ok(());
        }
        signal_namespace(self.leader_pid, sig).map_err(|source| CheckpointError::Signal {
            action: "signal",
            source,
        })
    }

    /// Kill the task (SIGKILL to its init ends the whole namespace).
    pub fn kill(&mut self) -> Result<(), CheckpointError> {
        if !self.alive() {
            return Ok(());
        }
        kill_tree(self.leader_pid)
    }
}

impl Drop for RestoredTask {
    fn drop(&mut self) {
        // Best effort, like a dropped executor task: nothing of it outlives its handle.
        let _ = self.kill();
    }
}
