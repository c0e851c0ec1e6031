//! Runs one Xgrid task on Linux, shaped so CRIU can later checkpoint it (checkpoint.md):
//! a fresh working directory holding the job's input files, an unprivileged user, a PID
//! namespace of its own with the task as init and session leader, standard input from a
//! file or `/dev/null`, standard output and error to files beside the working directory
//! (never pipes to the agent).
//!
//! Layout of a task's directory, `DATA/tasks/<taskRef>/`:
//! `work/` (the working directory, owned by the task's user), `stdin` (when the job gives
//! standard input), `stdout`, `stderr`. The streams live outside `work/` so they are never
//! taken for output files.
//! The directory of a task that ran in its own namespace is emptied and kept for the next
//! task once the controller has its results ([`spare`]).
//!
//! Decisions the controller side should know:
//! - Xgrid has no resume message: the controller sends `start` again after `stop`, so
//!   [`Task::start`] on a stopped task resumes it.
//! - Tasks are started through the agent's launcher, `xgridtaskinit` ([`taskinit`]): with a
//!   namespace, one long-lived copy of it (the [`zygote`]) forks each task's init as PID 1
//!   of a new namespace, which saves an exec per task; the init leads the session and stays
//!   root (CRIU needs both), and runs the command as the task's user one level down. So the
//!   command's `getpid()` is 2 and its session id 1 inside the namespace. Without a
//!   namespace the agent executes the launcher for each task, which becomes the command.
//! - `terminationStatus` is the exit code, or 128 + the signal number for a task killed by a
//!   signal (the shell's convention), so a cancelled task ends with 137. A task killed from
//!   outside (cancel, the OOM killer on the init) is reported with the signal; a command
//!   killed by a signal inside the namespace is reported through the init's exit code
//!   (128 + the signal, no signal number).
//! - A command that cannot be found fails the task (`Failed`, "command not found: X") rather
//!   than terminating it with the shell's 127.
//! - Without CAP_SYS_ADMIN tasks run without a PID namespace, in a session of their own;
//!   [`Executor::isolation`] says so and why.
//! - `/proc` is not remounted in the namespace (that would need a mount namespace too), so a
//!   task reading `/proc/self/stat` sees the host's numbers; the `NSpid`/`NSsid` lines of
//!   `/proc/self/status` end in the namespace's numbers.

mod control;
mod identity;
mod launch;
mod pidns;
pub mod priority;
mod procs;
mod spare;
pub mod taskinit;
mod vfork;
mod workdir;
pub mod zygote;

use std::collections::BTreeMap;
use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, OnceLock};

use nix::sys::signal::Signal;
use xgrid_protocol::messages::{TaskState, TaskSubmission};
use xgrid_protocol::plist::Value;

pub use control::{MalformedControl, MAX_BLOCK};
pub use identity::RunAs;
pub use workdir::OutputFiles;

use control::{ControlFilter, Filtered};
use identity::Credentials;
use procs::Membership;
use taskinit::{Launch, Stage, LAUNCHER_NAME};

use crate::checkpoint::RestoredTask;

/// The input file key that names standard input (xgrid-wire.md §4.2, agent facts).
pub const STDIN_INPUT_FILE: &str = "__stdin";

/// PATH given to tasks whose job does not set one.
pub const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// [`Task::read_new_output`] returns at most this much of each stream per call, so a
/// chatty task cannot make one `taskResults` reply arbitrarily large; the rest waits for
/// the next call.
pub const MAX_STREAM_CHUNK: u64 = 4 << 20;

/// The file in a task's directory (beside `work/`, so never an output) that records the
/// input files as written, for telling outputs apart after a migration.
const INPUTS_FILE: &str = "inputs";

/// Why the executor could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error(
        "task reference {0:?} cannot name a directory: use only letters, digits, `.`, `_` and `-`"
    )]
    InvalidTaskRef(String),
    #[error("a directory for task {0} already exists: remove it before reusing the reference")]
    TaskExists(String),
    #[error("invalid task: {0}")]
    InvalidTask(String),
    #[error("input file {path:?} refused: {reason}")]
    InputFile { path: String, reason: String },
    #[error("could not {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("no user {0:?} in /etc/passwd: configure an existing unprivileged user for tasks")]
    UnknownUser(String),
    #[error("could not read the agent's own user and capabilities from /proc/self/status")]
    Credentials,
    #[error(
        "the agent cannot run tasks as uid {uid}: it lacks CAP_SETUID, CAP_SETGID or CAP_CHOWN \
         (run it as root, or leave the task user unset to run tasks as the agent's own user)"
    )]
    CannotSwitchUser { uid: u32 },
    #[error(
        "the task launcher {LAUNCHER_NAME} is neither beside the agent's program nor on PATH: \
         install it beside xgridagentd"
    )]
    LauncherMissing,
    #[error("cannot {action} a task that is {state}")]
    InvalidState {
        action: &'static str,
        state: TaskState,
    },
    #[error("the task failed: {0}")]
    TaskFailed(String),
    #[error("could not {action} the task's processes: {source}")]
    Signal {
        action: &'static str,
        source: nix::errno::Errno,
    },
    #[error("could not learn whether the task is still running: {0}")]
    Wait(#[source] std::io::Error),
}

impl ExecError {
    fn io(action: &'static str, path: &Path, source: std::io::Error) -> ExecError {
        ExecError::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    }
}

/// The niceness tasks run at unless configured otherwise (HTCondor's old default too).
pub const DEFAULT_TASK_NICE: u8 = 10;

/// How the executor is set up; the agent fills it from its configuration and the probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecutorConfig {
    /// The agent's data directory; tasks go under `tasks/`. It should be traversable
    /// (mode 711 or wider) so the task's user can reach its working directory by path.
    pub data_dir: PathBuf,
    /// `XGRID_AGENT_NAME`.
    pub agent_name: String,
    /// `XGRID_PROCESSOR_COUNT`.
    pub processor_count: u32,
    /// `XGRID_PROCESSOR_SPEED`, megahertz of one processor.
    pub processor_speed_mhz: u32,
    /// The user tasks run as. `None`: `nobody` when the agent is root, else the agent's
    /// own user.
    pub task_user: Option<String>,
    /// Use a PID namespace when the machine allows it (the default); `false` forces the
    /// plain fallback.
    pub pid_namespace: bool,
    /// The niceness tasks run at ([`priority`]); 0 leaves them at the agent's own.
    pub task_nice: u8,
    /// Where task directories go; `None`: `DATA/tasks`. Agents that move tasks between
    /// them need the same path (docs/migration.md).
    pub tasks_dir: Option<PathBuf>,
    /// The task launcher (`xgridtaskinit`); `None`: look beside the running program, then
    /// on PATH.
    pub launcher: Option<PathBuf>,
}

impl ExecutorConfig {
    pub fn new(
        data_dir: impl Into<PathBuf>,
        agent_name: impl Into<String>,
        processor_count: u32,
        processor_speed_mhz: u32,
    ) -> ExecutorConfig {
        ExecutorConfig {
            data_dir: data_dir.into(),
            agent_name: agent_name.into(),
            processor_count,
            processor_speed_mhz,
            task_user: None,
            pid_namespace: true,
            task_nice: DEFAULT_TASK_NICE,
            tasks_dir: None,
            launcher: None,
        }
    }
}

/// How tasks are separated from the agent and from each other.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Isolation {
    /// Each task is init and session leader of its own PID namespace: checkpointable.
    PidNamespace,
    /// Each task leads a session of its own in the agent's PID namespace: it can be
    /// stopped and cancelled as a whole, but not checkpointed.
    Plain { reason: String },
}

impl std::fmt::Display for Isolation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Isolation::PidNamespace => f.write_str("tasks run in their own PID namespace"),
            Isolation::Plain { reason } => {
                write!(
                    f,
                    "tasks run without a PID namespace ({reason}); they cannot be checkpointed"
                )
            }
        }
    }
}

/// Prepares tasks; one per agent.
#[derive(Debug)]
pub struct Executor {
    config: ExecutorConfig,
    /// `DATA/tasks`, absolute.
    tasks: PathBuf,
    run_as: RunAs,
    /// The task user differs from the agent's: switch to it and hand files over.
    switch_user: bool,
    isolation: Isolation,
    launcher: PathBuf,
    /// Forks the inits of namespaced tasks ([`zygote`]).
    zygote: Arc<zygote::Zygote>,
    /// Directories of ended tasks, kept for new ones ([`spare`]).
    spares: Arc<spare::Spares>,
}

impl Executor {
    /// Work out who tasks run as and how they are isolated, and create `DATA/tasks`.
    /// Blocks briefly: it launches a trial task once to learn whether PID namespaces work
    /// here, so call it at startup rather than on a busy async thread.
    pub fn new(config: ExecutorConfig) -> Result<Executor, ExecError> {
        let credentials = Credentials::read().ok_or(ExecError::Credentials)?;
        let run_as = match &config.task_user {
            Some(name) => lookup_user(name)?,
            None if credentials.effective.uid == 0 => lookup_user("nobody")?,
            None => credentials.effective,
        };
        let switch_user = run_as != credentials.effective;
        if switch_user && !credentials.can_switch_user() {
            return Err(ExecError::CannotSwitchUser { uid: run_as.uid });
        }
        let launcher =
            launch::find_launcher(config.launcher.as_deref()).ok_or(ExecError::LauncherMissing)?;
        let isolation = choose_isolation(&config, &credentials, &launcher);
        let tasks = config
            .tasks_dir
            .clone()
            .unwrap_or_else(|| config.data_dir.join("tasks"));
        DirBuilder::new()
            .recursive(true)
            .mode(0o711)
            .create(&tasks)
            .map_err(|e| ExecError::io("create the task directory", &tasks, e))?;
        // Absolute, because the task's command, HOME and working directory are derived
        // from it and used from inside the working directory.
        let tasks = std::fs::canonicalize(&tasks)
            .map_err(|e| ExecError::io("find the absolute path of", &tasks, e))?;
        Ok(Executor {
            config,
            spares: Arc::new(spare::Spares::new(&tasks)),
            tasks,
            run_as,
            switch_user,
            isolation,
            zygote: Arc::new(zygote::Zygote::new(launcher.clone())),
            launcher,
        })
    }

    /// Whether tasks get a PID namespace, and if not, why not (for the agent's log).
    pub fn isolation(&self) -> &Isolation {
        &self.isolation
    }

    /// The user and group tasks run as.
    pub fn run_as(&self) -> RunAs {
        self.run_as
    }

    /// Woken when a task started in a namespace ends: its init is the zygote's child, so
    /// its end raises no SIGCHLD in the agent.
    pub fn task_ended(&self) -> Arc<tokio::sync::Notify> {
        self.zygote.ended()
    }

    /// `DATA/tasks` (made absolute), where every task's directory lives.
    pub fn tasks_dir(&self) -> &Path {
        &self.tasks
    }

    /// Set up a task from a `taskSubmission`: create its directory and write its input
    /// files. Nothing runs until [`Task::start`]. On an error nothing is left behind.
    pub fn prepare(&self, task_ref: &str, submission: &TaskSubmission) -> Result<Task, ExecError> {
        if !valid_task_ref(task_ref) {
            return Err(ExecError::InvalidTaskRef(task_ref.to_string()));
        }
        let root = self.tasks_dir().join(task_dir_name(task_ref));
        let environment = self.environment(submission, &root.join("work"))?;
        for argument in std::iter::once(&submission.command).chain(&submission.arguments) {
            if argument.contains('\0') {
                return Err(ExecError::InvalidTask(format!(
                    "the command line holds a NUL byte: {argument:?}"
                )));
            }
        }
        // Check every path before writing anything.
        let mut inputs = Vec::new();
        for (path, file) in &submission.input_files {
            if path == STDIN_INPUT_FILE {
                continue;
            }
            let relative =
                workdir::checked_relative(path).map_err(|reason| ExecError::InputFile {
                    path: path.clone(),
                    reason: reason.to_string(),
                })?;
            inputs.push((relative, file));
        }

        if root.symlink_metadata().is_ok() {
            return Err(ExecError::TaskExists(task_ref.to_string()));
        }
        // Only a task alone in its namespace leaves nothing behind that could reach the next.
        let spares = (self.isolation == Isolation::PidNamespace).then(|| Arc::clone(&self.spares));
        let reused = spares.as_ref().is_some_and(|spares| spares.take(&root));
        if !reused {
            DirBuilder::new().mode(0o711).create(&root).map_err(|e| {
                if e.kind() == std::io::ErrorKind::AlreadyExists {
                    ExecError::TaskExists(task_ref.to_string())
                } else {
                    ExecError::io("create the task's directory", &root, e)
                }
            })?;
        }
        let filled = self
            .fill_task_dir(&root, submission, &inputs, reused)
            .and_then(|(snapshot, stdin)| {
                write_private(&root.join(INPUTS_FILE), &snapshot.to_bytes(), reused)?;
                Ok((snapshot, stdin))
            });
        let (snapshot, stdin) = match filled {
            Ok(filled) => filled,
            Err(e) => {
                // Best effort: the error that matters is the one being returned.
                let _ = std::fs::remove_dir_all(&root);
                return Err(e);
            }
        };
        let search_path = environment
            .get("PATH")
            .cloned()
            .unwrap_or_else(|| DEFAULT_PATH.to_string());
        Ok(Task {
            task_ref: task_ref.to_string(),
            work: root.join("work"),
            stdin,
            stdout: Cursor::new(root.join("stdout")),
            stderr: Cursor::new(root.join("stderr")),
            root,
            command: submission.command.clone(),
            arguments: submission.arguments.clone(),
            environment,
            search_path,
            namespace: self.isolation == Isolation::PidNamespace,
            launcher: self.launcher.clone(),
            zygote: Arc::clone(&self.zygote),
            user: self.switch_user.then_some(self.run_as),
            nice: self.config.task_nice,
            snapshot,
            run: Run::Pending,
            filter: ControlFilter::default(),
            stdout_finished: false,
            spares,
        })
    }

    /// Take over a task restored from a checkpoint (docs/migration.md): it already runs,
    /// from the task directory `task_dir` the checkpoint recreated. Its output is read on
    /// from `stream_sizes`, the sizes its stdout and stderr had at the dump (the controller
    /// holds what came before), and its output files are judged against the inputs
    /// recorded at its first start, which travelled in the directory.
    pub fn adopt(
        &self,
        task_ref: &str,
        restored: RestoredTask,
        task_dir: &Path,
        stream_sizes: (u64, u64),
    ) -> Result<Task, ExecError> {
        if !valid_task_ref(task_ref) {
            return Err(ExecError::InvalidTaskRef(task_ref.to_string()));
        }
        let inputs = task_dir.join(INPUTS_FILE);
        let snapshot = std::fs::read(&inputs)
            .ok()
            .and_then(|bytes| workdir::Snapshot::from_bytes(&bytes))
            .ok_or_else(|| {
                ExecError::InvalidTask(format!(
                    "{} is missing or damaged: the restored task cannot tell its outputs",
                    inputs.display()
                ))
            })?;
        let (child, leader) = restored.into_parts().ok_or_else(|| {
            ExecError::InvalidTask("the restored task was already handed over".into())
        })?;
        let (stdout_at, stderr_at) = stream_sizes;
        Ok(Task {
            task_ref: task_ref.to_string(),
            work: task_dir.join("work"),
            stdin: None,
            stdout: Cursor::at(task_dir.join("stdout"), stdout_at),
            stderr: Cursor::at(task_dir.join("stderr"), stderr_at),
            root: task_dir.to_path_buf(),
            command: "(restored task)".into(),
            arguments: Vec::new(),
            environment: BTreeMap::new(),
            search_path: String::new(),
            namespace: true,
            launcher: self.launcher.clone(),
            zygote: Arc::clone(&self.zygote),
            user: None,
            // A restored task keeps the niceness it was dumped with.
            nice: 0,
            snapshot,
            run: Run::Active(Active {
                child: Parent::Own(child),
                // The waiter is the restored init's parent.
                leader: Leader::init(leader),
                stopped: false,
                cancelled: false,
            }),
            filter: ControlFilter::default(),
            stdout_finished: false,
            // Its directory came from another agent, named as that agent named it.
            spares: None,
        })
    }

    /// Defaults (PATH, HOME = the working directory) that the job's environment may
    /// override, then the grid's variables, which it may not.
    fn environment(
        &self,
        submission: &TaskSubmission,
        work: &Path,
    ) -> Result<BTreeMap<String, String>, ExecError> {
        let mut environment = BTreeMap::new();
        environment.insert("PATH".to_string(), DEFAULT_PATH.to_string());
        environment.insert("HOME".to_string(), work.to_string_lossy().into_owned());
        for (key, value) in &submission.environment {
            if key.is_empty() || key.contains('=') || key.contains('\0') || value.contains('\0') {
                return Err(ExecError::InvalidTask(format!(
                    "environment variable {key:?} cannot be set: names must be non-empty without \
                     `=` or NUL, values without NUL"
                )));
            }
            environment.insert(key.clone(), value.clone());
        }
        let config = &self.config;
        environment.insert("XGRID_AGENT_NAME".into(), config.agent_name.clone());
        environment.insert(
            "XGRID_PROCESSOR_COUNT".into(),
            config.processor_count.to_string(),
        );
        environment.insert(
            "XGRID_PROCESSOR_SPEED".into(),
            config.processor_speed_mhz.to_string(),
        );
        Ok(environment)
    }

    /// Create `work/`, the input files, the stream files and `stdin`.
    /// `reused`: the directory is a spare ([`spare`]), its working directory and files there
    /// already, empty.
    fn fill_task_dir(
        &self,
        root: &Path,
        submission: &TaskSubmission,
        inputs: &[(PathBuf, &xgrid_protocol::messages::InputFile)],
        reused: bool,
    ) -> Result<(workdir::Snapshot, Option<PathBuf>), ExecError> {
        let owner = self.switch_user.then_some(self.run_as);
        let work = root.join("work");
        if !reused {
            DirBuilder::new()
                .mode(spare::WORK_MODE)
                .create(&work)
                .map_err(|e| ExecError::io("create the working directory", &work, e))?;
        }
        if let Some(owner) = owner {
            std::os::unix::fs::lchown(&work, Some(owner.uid), Some(owner.gid))
                .map_err(|e| ExecError::io("hand over the working directory", &work, e))?;
        }
        let mut snapshot = workdir::Snapshot::default();
        for (relative, file) in inputs {
            workdir::write_input_file(
                &work,
                relative,
                &file.file_data,
                file.is_executable,
                owner,
                &mut snapshot,
            )?;
        }
        for stream in ["stdout", "stderr"] {
            write_private(&root.join(stream), b"", reused)?;
        }
        let stdin = match stdin_bytes(submission) {
            Some(bytes) => {
                let path = root.join("stdin");
                create_private(&path, bytes)?;
                Some(path)
            }
            None => None,
        };
        Ok((snapshot, stdin))
    }
}

/// Decide between a PID namespace and the plain fallback, checking once that the launcher
/// really can make one here (a container may forbid it even to root).
fn choose_isolation(
    config: &ExecutorConfig,
    credentials: &Credentials,
    launcher: &Path,
) -> Isolation {
    let plain = |reason: &str| Isolation::Plain {
        reason: reason.to_string(),
    };
    if !config.pid_namespace {
        return plain("PID namespaces are turned off in the agent's configuration");
    }
    if !credentials.can_create_pid_namespace() {
        return plain("the agent lacks CAP_SYS_ADMIN; run it as root");
    }
    // The launcher, as the init of a namespace of its own, runs itself as the trial task.
    let trial = Launch {
        stage: Stage::Init,
        user: None,
        nice: 0,
        program: launcher.into(),
        arguments: vec!["--version".into()],
    };
    let started = pidns::start_in_new_namespace(|| {
        std::process::Command::new(launcher)
            .args(trial.to_args())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
    });
    let trial = match started {
        Ok(started) => started.and_then(|mut child| child.wait()),
        Err(reason) => return plain(&reason),
    };
    match trial {
        Ok(status) if status.success() => Isolation::PidNamespace,
        Ok(status) => Isolation::Plain {
            reason: format!("{LAUNCHER_NAME} cannot create a PID namespace here ({status})"),
        },
        Err(e) => Isolation::Plain {
            reason: format!("{LAUNCHER_NAME} could not be run ({e})"),
        },
    }
}

fn lookup_user(name: &str) -> Result<RunAs, ExecError> {
    let passwd = std::fs::read_to_string("/etc/passwd")
        .map_err(|e| ExecError::io("read", Path::new("/etc/passwd"), e))?;
    identity::lookup_user(&passwd, name).ok_or_else(|| ExecError::UnknownUser(name.to_string()))
}

/// A task reference becomes a directory name, so only tame characters pass.
/// A task directory's name: the taskRef, for whoever reads the directory, and random
/// digits, so that a directory restored from another agent's checkpoint (at the path it had
/// there, docs/migration.md) cannot collide with one of this agent's own.
fn task_dir_name(task_ref: &str) -> String {
    let mut noise = [0u8; 6];
    let random = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut noise))
        .is_ok();
    if !random {
        // Time and pid still tell agents apart in practice.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        noise[..4].copy_from_slice(&nanos.to_be_bytes());
        noise[4..].copy_from_slice(&(std::process::id() as u16).to_be_bytes());
    }
    let hex: String = noise.iter().map(|b| format!("{b:02x}")).collect();
    format!("{task_ref}.{hex}")
}

fn valid_task_ref(task_ref: &str) -> bool {
    !task_ref.is_empty()
        && task_ref.len() <= 128
        && !task_ref.starts_with('.')
        && task_ref
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Standard input: the input file `inputStream` names, else the `__stdin` input file.
/// An `inputStream` that names no input file is taken as the text itself [guess: tolerant
/// of a peer that sends the data inline].
fn stdin_bytes(submission: &TaskSubmission) -> Option<&[u8]> {
    match submission.input_stream.as_deref() {
        Some(name) if !name.is_empty() => Some(
            submission
                .input_files
                .get(name)
                .map_or(name.as_bytes(), |f| f.file_data.as_slice()),
        ),
        _ => submission
            .input_files
            .get(STDIN_INPUT_FILE)
            .map(|f| f.file_data.as_slice()),
    }
}

/// Opens one of a task's standard streams (`write`: stdout or stderr) for handing to its
/// first process; the error is the message the task fails with.
pub(crate) fn open_stream(path: &Path, write: bool) -> Result<File, String> {
    OpenOptions::new()
        .read(!write)
        .write(write)
        .open(path)
        .map_err(|e| format!("could not open {}: {e}", path.display()))
}

/// A file only the agent may read: the streams and standard input. The task gets them as
/// open descriptors, so it needs no permission on the paths.
fn create_private(path: &Path, contents: &[u8]) -> Result<(), ExecError> {
    write_private(path, contents, false)
}

/// Writes one of the task directory's own files: a new file only the agent reads, or, in a
/// reused directory, the file already there.
fn write_private(path: &Path, contents: &[u8], reused: bool) -> Result<(), ExecError> {
    use std::io::Write;
    let opened = if reused {
        spare::truncate(path)
    } else {
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
    };
    let mut file = opened.map_err(|e| ExecError::io("create", path, e))?;
    if contents.is_empty() {
        return Ok(());
    }
    file.write_all(contents)
        .map_err(|e| ExecError::io("write", path, e))
}

/// How a task ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Termination {
    /// `terminationStatus`: the exit code, or 128 + the signal number.
    pub status: i32,
    /// The signal that killed the task, if one did.
    pub signal: Option<i32>,
    /// Whether the task ended because it was cancelled.
    pub cancelled: bool,
}

impl Termination {
    fn from_exit(status: ExitStatus, cancelled: bool) -> Termination {
        use std::os::unix::process::ExitStatusExt;
        let signal = status.signal();
        Termination {
            status: status.code().unwrap_or(128 + signal.unwrap_or(0)),
            signal,
            cancelled,
        }
    }
}

/// What a task wrote since the last [`Task::read_new_output`]: the `readData` and
/// `errData` of `taskResults`, and the task-control blocks taken out of stdout (each one a
/// `taskControl` notification for the controller).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TaskOutput {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub controls: Vec<Value>,
    pub malformed_controls: Vec<MalformedControl>,
}

/// A read position in one of the stream files. The file stays open once read: the agent
/// looks at every running task's streams each time it reports, and a look at an open file
/// needs no walk of its path.
#[derive(Debug)]
struct Cursor {
    path: PathBuf,
    offset: u64,
    file: OnceLock<File>,
}

impl Cursor {
    fn new(path: PathBuf) -> Cursor {
        Cursor::at(path, 0)
    }

    fn at(path: PathBuf, offset: u64) -> Cursor {
        Cursor {
            path,
            offset,
            file: OnceLock::new(),
        }
    }

    fn file(&self) -> std::io::Result<&File> {
        if let Some(file) = self.file.get() {
            return Ok(file);
        }
        let file = File::open(&self.path)?;
        Ok(self.file.get_or_init(|| file))
    }

    fn unread(&self) -> u64 {
        self.file()
            .and_then(File::metadata)
            .map_or(0, |m| m.len().saturating_sub(self.offset))
    }

    /// Up to `MAX_STREAM_CHUNK` new bytes, and whether the end of the file was reached.
    fn read_new(&mut self) -> Result<(Vec<u8>, bool), ExecError> {
        let io = |e| ExecError::io("read", &self.path, e);
        let mut file = self.file().map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        let wanted = len.saturating_sub(self.offset).min(MAX_STREAM_CHUNK);
        file.seek(SeekFrom::Start(self.offset)).map_err(io)?;
        let mut data = Vec::new();
        file.take(wanted).read_to_end(&mut data).map_err(io)?;
        self.offset += data.len() as u64;
        Ok((data, self.offset >= len))
    }
}

/// Where a task is in its life.
// One per task, so the size of the running variant costs nothing worth a box.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
enum Run {
    Pending,
    Active(Active),
    Terminated(Termination),
    Failed(String),
}

/// A task whose processes were started and not yet reaped.
#[derive(Debug)]
struct Active {
    /// The task's first process (the namespace's init, or the session leader the launcher
    /// became), or a restored task's restore waiter.
    child: Parent,
    leader: Leader,
    stopped: bool,
    cancelled: bool,
}

/// What the agent holds of a task's first process, whose exit status is the task's.
#[derive(Debug)]
enum Parent {
    /// The agent's own child: the plain launcher, or a restored task's waiter.
    Own(tokio::process::Child),
    /// A namespace's init forked by the zygote.
    Zygote(zygote::Child),
}

impl Parent {
    fn id(&self) -> Option<i32> {
        match self {
            Parent::Own(child) => child.id().and_then(|id| i32::try_from(id).ok()),
            Parent::Zygote(child) => child.id(),
        }
    }

    async fn wait(&mut self) -> std::io::Result<ExitStatus> {
        match self {
            Parent::Own(child) => child.wait().await,
            Parent::Zygote(child) => Ok(child.wait().await),
        }
    }

    fn try_wait(&mut self) -> std::io::Result<Option<ExitStatus>> {
        match self {
            Parent::Own(child) => child.try_wait(),
            Parent::Zygote(child) => Ok(child.try_wait()),
        }
    }

    fn start_kill(&mut self) {
        match self {
            Parent::Own(child) => {
                let _ = child.start_kill();
            }
            Parent::Zygote(child) => child.start_kill(),
        }
    }
}

/// The task's first process as the agent numbers it (the namespace's init, or the session
/// leader) and how its processes are recognised.
#[derive(Debug)]
struct Leader {
    /// `None` when the process could not be looked at in time (it ended at once).
    pid: Option<i32>,
    membership: Option<Membership>,
}

impl Leader {
    fn known(pid: i32, membership: Membership) -> Leader {
        Leader {
            pid: Some(pid),
            membership: Some(membership),
        }
    }

    /// The init of a namespace, if its namespace can still be read.
    fn init(pid: i32) -> Leader {
        Leader::in_namespace(pid, procs::pid_namespace(pid))
    }

    /// The init `pid` of the namespace `namespace` names; unknown without a name (the init
    /// ended before its namespace could be read).
    fn in_namespace(pid: i32, namespace: Option<String>) -> Leader {
        match namespace {
            Some(namespace) => Leader::known(pid, Membership::Namespace(namespace)),
            None => Leader {
                pid: None,
                membership: None,
            },
        }
    }

    fn pid(&self) -> Option<i32> {
        self.pid
    }

    fn membership(&self) -> Option<&Membership> {
        self.membership.as_ref()
    }
}

/// One task: prepared, then started, stopped, resumed, cancelled, waited for, its streams
/// read as they grow and its output files collected at the end. Dropping a running task
/// kills it.
#[derive(Debug)]
pub struct Task {
    task_ref: String,
    root: PathBuf,
    work: PathBuf,
    stdin: Option<PathBuf>,
    stdout: Cursor,
    stderr: Cursor,
    command: String,
    arguments: Vec<String>,
    environment: BTreeMap<String, String>,
    search_path: String,
    namespace: bool,
    launcher: PathBuf,
    zygote: Arc<zygote::Zygote>,
    /// The user to switch to; `None`: the agent's own.
    user: Option<RunAs>,
    /// The niceness it runs at (0: the agent's own).
    nice: u8,
    snapshot: workdir::Snapshot,
    run: Run,
    filter: ControlFilter,
    stdout_finished: bool,
    /// Where the directory goes once the task is removed; `None`: deleted.
    spares: Option<Arc<spare::Spares>>,
}

impl Task {
    pub fn task_ref(&self) -> &str {
        &self.task_ref
    }

    /// `DATA/tasks/<taskRef>`.
    pub fn task_dir(&self) -> &Path {
        &self.root
    }

    /// The task's working directory, `DATA/tasks/<taskRef>/work`.
    pub fn work_dir(&self) -> &Path {
        &self.work
    }

    pub fn stdout_path(&self) -> &Path {
        &self.stdout.path
    }

    pub fn stderr_path(&self) -> &Path {
        &self.stderr.path
    }

    /// The current `taskState`; notices an exit that happened since the last look.
    pub fn state(&mut self) -> Result<TaskState, ExecError> {
        self.refresh()?;
        Ok(self.known_state())
    }

    fn known_state(&self) -> TaskState {
        match &self.run {
            Run::Pending => TaskState::Pending,
            Run::Active(active) if active.stopped => TaskState::Stopped,
            Run::Active(_) => TaskState::Running,
            Run::Terminated(_) => TaskState::Terminated,
            Run::Failed(_) => TaskState::Failed,
        }
    }

    /// Why the task failed, once it has.
    pub fn failure(&self) -> Option<&str> {
        match &self.run {
            Run::Failed(message) => Some(message),
            _ => None,
        }
    }

    /// How the task ended, once it has terminated.
    pub fn termination(&self) -> Option<Termination> {
        match &self.run {
            Run::Terminated(termination) => Some(*termination),
            _ => None,
        }
    }

    /// The agent-side pid of the task's first process (the namespace's init: the root of
    /// the tree CRIU dumps), while it runs.
    pub fn leader_pid(&self) -> Option<i32> {
        match &self.run {
            Run::Active(active) => active.leader.pid(),
            _ => None,
        }
    }

    /// The agent-side pids of all the task's processes now.
    pub fn process_ids(&self) -> Vec<i32> {
        match &self.run {
            Run::Active(active) if self.leader_alive(active) => active
                .leader
                .membership()
                .map(Membership::members)
                .unwrap_or_default(),
            _ => Vec::new(),
        }
    }

    /// `taskControl start`. A pending task starts (or fails, with the reason in
    /// [`Task::failure`]: that is a task state, not an error of this call); a stopped task
    /// resumes, since the controller resends `start` after `stop`; a running task is left
    /// alone.
    pub async fn start(&mut self) -> Result<(), ExecError> {
        self.refresh()?;
        match &self.run {
            Run::Pending => {}
            Run::Active(active) if active.stopped => return self.resume(),
            Run::Active(_) => return Ok(()),
            Run::Terminated(_) | Run::Failed(_) => {
                return Err(ExecError::InvalidState {
                    action: "start",
                    state: self.known_state(),
                })
            }
        }
        self.run = match self.spawn().await {
            Ok(active) => Run::Active(active),
            Err(message) => Run::Failed(message),
        };
        Ok(())
    }

    /// Start the processes; the error is the message the task fails with.
    async fn spawn(&mut self) -> Result<Active, String> {
        let program = launch::resolve_command(&self.command, &self.work, &self.search_path)?;
        if self.namespace {
            return self.spawn_init(program).await;
        }
        let launch = Launch {
            stage: Stage::Plain,
            user: self.user,
            nice: self.nice,
            program: program.into(),
            arguments: self.arguments.iter().map(Into::into).collect(),
        };
        let stdin = open_stream(self.stdin_path(), false)?;
        let stdout = open_stream(&self.stdout.path, true)?;
        let stderr = open_stream(&self.stderr.path, true)?;
        let child = tokio::process::Command::new(&self.launcher)
            .args(launch.to_args())
            .env_clear()
            .envs(&self.environment)
            .current_dir(&self.work)
            .stdin(Stdio::from(stdin))
            .stdout(Stdio::from(stdout))
            .stderr(Stdio::from(stderr))
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("could not start {}: {e}", self.command))?;
        let pid = child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .ok_or_else(|| format!("{} ended before it could be looked at", self.command))?;
        Ok(Active {
            child: Parent::Own(child),
            leader: Leader::known(pid, Membership::Session(pid)),
            stopped: false,
            cancelled: false,
        })
    }

    /// Have the zygote fork the task's init as PID 1 of a namespace of its own.
    async fn spawn_init(&mut self, program: PathBuf) -> Result<Active, String> {
        let request = zygote::wire::Start {
            // The zygote numbers requests itself.
            id: 0,
            user: self.user,
            nice: self.nice,
            work_dir: self.work.clone(),
            stdin: self.stdin_path().to_path_buf(),
            stdout: self.stdout.path.clone(),
            stderr: self.stderr.path.clone(),
            program: program.into(),
            arguments: self.arguments.iter().map(Into::into).collect(),
            environment: self
                .environment
                .iter()
                .map(|(name, value)| vfork::environment_entry(name, value))
                .collect(),
        };
        let init = self.zygote.launch(request).await?;
        let leader = Leader::in_namespace(init.pid(), init.namespace().map(str::to_string));
        Ok(Active {
            child: Parent::Zygote(init),
            leader,
            stopped: false,
            cancelled: false,
        })
    }

    fn stdin_path(&self) -> &Path {
        self.stdin.as_deref().unwrap_or(Path::new("/dev/null"))
    }

    /// `taskControl stop`: suspend every process of the task with SIGSTOP.
    pub fn stop(&mut self) -> Result<(), ExecError> {
        self.refresh()?;
        let state = self.known_state();
        let alive = self.active_leader_alive();
        match &mut self.run {
            Run::Active(active) if !active.stopped => {
                if alive {
                    if let Some(membership) = active.leader.membership() {
                        membership.signal_all(Signal::SIGSTOP).map_err(|source| {
                            ExecError::Signal {
                                action: "stop",
                                source,
                            }
                        })?;
                    }
                }
                active.stopped = true;
                Ok(())
            }
            Run::Active(_) => Ok(()),
            _ => Err(ExecError::InvalidState {
                action: "stop",
                state,
            }),
        }
    }

    /// Continue a stopped task with SIGCONT (Xgrid itself resumes through `start`).
    pub fn resume(&mut self) -> Result<(), ExecError> {
        self.refresh()?;
        let state = self.known_state();
        let alive = self.active_leader_alive();
        match &mut self.run {
            Run::Active(active) if active.stopped => {
                if alive {
                    if let Some(membership) = active.leader.membership() {
                        membership.signal_all(Signal::SIGCONT).map_err(|source| {
                            ExecError::Signal {
                                action: "resume",
                                source,
                            }
                        })?;
                    }
                }
                active.stopped = false;
                Ok(())
            }
            Run::Active(_) => Ok(()),
            _ => Err(ExecError::InvalidState {
                action: "resume",
                state,
            }),
        }
    }

    /// `taskControl cancel`: kill the task and everything it started. In a namespace,
    /// killing its init makes the kernel kill every other process in it. A pending task
    /// fails without running; an ended task is left as it is. The task is Terminated once
    /// [`Task::wait`] (or [`Task::state`]) sees the exit.
    pub fn cancel(&mut self) -> Result<(), ExecError> {
        self.refresh()?;
        let alive = self.active_leader_alive();
        match &mut self.run {
            Run::Pending => {
                self.run = Run::Failed("cancelled before it started".into());
                Ok(())
            }
            Run::Active(active) => {
                active.cancelled = true;
                kill_tree(active, alive).map_err(|source| ExecError::Signal {
                    action: "cancel",
                    source,
                })
            }
            Run::Terminated(_) | Run::Failed(_) => Ok(()),
        }
    }

    /// Wait for the task to end. Cancel-safe, so it can sit in a `tokio::select!` beside the
    /// controller's messages. A failed task gives [`ExecError::TaskFailed`].
    pub async fn wait(&mut self) -> Result<Termination, ExecError> {
        if let Run::Active(active) = &mut self.run {
            let status = active.child.wait().await.map_err(ExecError::Wait)?;
            self.finish(status);
        }
        match &self.run {
            Run::Terminated(termination) => Ok(*termination),
            Run::Failed(message) => Err(ExecError::TaskFailed(message.clone())),
            Run::Pending | Run::Active(_) => Err(ExecError::InvalidState {
                action: "wait for",
                state: self.known_state(),
            }),
        }
    }

    /// Whether stdout or stderr hold bytes not yet returned by
    /// [`Task::read_new_output`] (`dataAvailable`).
    pub fn has_new_output(&self) -> bool {
        let ended = matches!(self.run, Run::Terminated(_) | Run::Failed(_));
        self.stdout.unread() > 0 || self.stderr.unread() > 0 || (ended && !self.stdout_finished)
    }

    /// The stdout and stderr bytes written since the last call (at most
    /// [`MAX_STREAM_CHUNK`] of each), with `<xgrid>` control blocks taken out of stdout.
    /// The files themselves are left untouched.
    pub fn read_new_output(&mut self) -> Result<TaskOutput, ExecError> {
        self.refresh()?;
        // Decided before reading: once the task has ended, reading to the end of the file
        // means the stream is complete and held-back bytes can be released.
        let ended = matches!(self.run, Run::Terminated(_) | Run::Failed(_));
        let (stdout, stdout_at_end) = self.stdout.read_new()?;
        let (stderr, _) = self.stderr.read_new()?;
        let mut filtered = Filtered::default();
        self.filter.feed(&stdout, &mut filtered);
        if ended && stdout_at_end && !self.stdout_finished {
            self.filter.finish(&mut filtered);
            self.stdout_finished = true;
        }
        Ok(TaskOutput {
            stdout: filtered.data,
            stderr,
            controls: filtered.controls,
            malformed_controls: filtered.malformed,
        })
    }

    /// The files the task created or changed in its working directory (`outputFiles` of
    /// `taskFinalResults`), once it has ended.
    pub fn output_files(&mut self) -> Result<OutputFiles, ExecError> {
        self.refresh()?;
        match self.run {
            Run::Terminated(_) | Run::Failed(_) => {
                Ok(workdir::changed_files(&self.work, &self.snapshot))
            }
            Run::Pending | Run::Active(_) => Err(ExecError::InvalidState {
                action: "collect the output files of",
                state: self.known_state(),
            }),
        }
    }

    /// Delete the task's directory (or keep it, emptied, for a new task), cancelling the
    /// task first if it still runs.
    pub async fn remove(mut self) -> Result<(), ExecError> {
        if matches!(self.run, Run::Active(_)) {
            self.cancel()?;
            // Only the exit matters here, not how it went.
            let _ = self.wait().await;
        }
        let removed = match self.spares.take() {
            Some(spares) => spares.keep(&self.root),
            None => std::fs::remove_dir_all(&self.root),
        };
        removed.map_err(|e| ExecError::io("remove", &self.root, e))
    }

    /// Notice an exit without blocking.
    fn refresh(&mut self) -> Result<(), ExecError> {
        if let Run::Active(active) = &mut self.run {
            if let Some(status) = active.child.try_wait().map_err(ExecError::Wait)? {
                self.finish(status);
            }
        }
        Ok(())
    }

    /// Record the exit of the agent's child. Without a namespace, processes the task left
    /// behind in its session are killed, so nothing of it outlives it.
    fn finish(&mut self, status: ExitStatus) {
        if let Run::Active(active) = &self.run {
            if !self.namespace {
                if let Some(membership) = active.leader.membership() {
                    // Best effort: the leader is gone, so these are leftovers.
                    let _ = membership.signal_all(Signal::SIGKILL);
                }
            }
            self.run = Run::Terminated(Termination::from_exit(status, active.cancelled));
        }
    }

    fn active_leader_alive(&self) -> bool {
        match &self.run {
            Run::Active(active) => self.leader_alive(active),
            _ => false,
        }
    }

    /// Whether the leader's pid still means the task's process. Our own unreaped child (a
    /// session leader, a namespace's init) keeps its pid; a restored init is the child of
    /// its restore waiter until the waiter reaps it, after which its pid (and the
    /// namespace's name) may be reused, so nothing is signalled by them.
    fn leader_alive(&self, active: &Active) -> bool {
        let Some(leader) = active.leader.pid() else {
            return false;
        };
        if let Parent::Zygote(init) = &active.child {
            return init.id() == Some(leader) && init.alive();
        }
        let child = active.child.id();
        if child == Some(leader) {
            procs::exists(leader)
        } else {
            child.is_some() && procs::parent_of(leader) == child
        }
    }
}

impl Drop for Task {
    fn drop(&mut self) {
        let alive = self.active_leader_alive();
        if let Run::Active(active) = &mut self.run {
            // Best effort; `kill_on_drop` also kills the agent's direct child.
            let _ = kill_tree(active, alive);
        }
    }
}

/// SIGKILL the whole task: the namespace's init (the kernel takes the rest with it), or
/// every process of the session.
fn kill_tree(active: &mut Active, leader_alive: bool) -> Result<(), nix::errno::Errno> {
    match (active.leader.membership(), active.leader.pid()) {
        (Some(Membership::Namespace(_)), Some(init)) if leader_alive => {
            // For a restored task the waiter goes first, so the agent's child ends by
            // SIGKILL whatever its init does; the init is still alive meanwhile (merely
            // reparented), so its pid still names it. A started task's child is the init.
            active.child.start_kill();
            procs::send(init, Signal::SIGKILL)
        }
        (Some(membership @ Membership::Session(_)), _) if leader_alive => {
            membership.signal_all(Signal::SIGKILL).map(|_| ())
        }
        _ => {
            // The leader is gone or unknown: killing the agent's child ends what is left.
            active.child.start_kill();
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use xgrid_protocol::messages::InputFile;

    #[test]
    fn task_refs_that_can_be_directories() {
        for good in ["1", "42", "task-7", "a.b_c"] {
            assert!(valid_task_ref(good), "{good}");
        }
        for bad in ["", ".", "..", ".hidden", "a/b", "a b", "ü"] {
            assert!(!valid_task_ref(bad), "{bad:?}");
        }
    }

    fn file(data: &[u8]) -> InputFile {
        InputFile {
            file_data: data.to_vec(),
            is_executable: false,
        }
    }

    #[test]
    fn standard_input_sources() {
        let mut s = TaskSubmission::default();
        assert_eq!(stdin_bytes(&s), None);
        s.input_files
            .insert(STDIN_INPUT_FILE.into(), file(b"from __stdin"));
        assert_eq!(stdin_bytes(&s), Some(&b"from __stdin"[..]));
        s.input_files.insert("data.txt".into(), file(b"from data"));
        s.input_stream = Some("data.txt".into());
        assert_eq!(stdin_bytes(&s), Some(&b"from data"[..]));
        s.input_stream = Some("inline text\n".into());
        assert_eq!(stdin_bytes(&s), Some(&b"inline text\n"[..]));
        s.input_stream = Some(String::new());
        assert_eq!(stdin_bytes(&s), Some(&b"from __stdin"[..]));
    }

    #[test]
    fn termination_status_convention() {
        use std::os::unix::process::ExitStatusExt;
        let exited = Termination::from_exit(ExitStatus::from_raw(3 << 8), false);
        assert_eq!((exited.status, exited.signal), (3, None));
        let killed = Termination::from_exit(ExitStatus::from_raw(9), true);
        assert_eq!(
            (killed.status, killed.signal, killed.cancelled),
            (137, Some(9), true)
        );
    }
}
