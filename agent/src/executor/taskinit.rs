//! `xgridtaskinit`, the small program every task is started through (its `main` is
//! [`run`]). It replaces a chain of util-linux tools (`unshare`, `setpriv`, `setsid`), each
//! an extra exec per task, and it keeps the namespace's init as root, which CRIU needs to
//! dump the namespace (its parasite must mount the namespace's /proc as that init).
//!
//! With a PID namespace it runs twice:
//! 1. stage 1 (`--namespace`), the agent's child: `unshare(CLONE_NEWPID)`, starts stage 2
//!    (its first child, so PID 1 of the new namespace), writes stage 2's pid as the agent
//!    numbers it on its own stdout (a pipe the agent reads; the task never sees it), waits
//!    and exits as stage 2 did;
//! 2. stage 2 (`--init`), still root: `setsid()` (so the session leader is inside the
//!    namespace), dies with stage 1, starts the command as the task's user, reaps every
//!    process the namespace's orphans leave behind, and exits with the command's status
//!    (128 + the signal when a signal killed it). When it exits, the kernel kills whatever
//!    else is left in the namespace.
//!
//! Without a namespace (`Isolation::Plain`) it only calls `setsid()` and becomes the command
//! as the task's user, so the task leads its own session with no extra process.
//!
//! Standard input and error, the working directory and the environment are the task's from
//! the start (the agent sets them on stage 1; they are inherited all the way down); only
//! standard output is handed over by path (`--stdout`) in a namespace, because stage 1's
//! own stdout is the pipe to the agent.

use std::ffi::{OsStr, OsString};
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};

use nix::errno::Errno;
use nix::sys::signal::{self, Signal};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;

use super::identity::RunAs;

/// The launcher's binary name; the agent looks for it beside its own.
pub const LAUNCHER_NAME: &str = "xgridtaskinit";

/// The exit status of a launcher that could not start the command (as a shell's 127).
const CANNOT_START: i32 = 127;

/// Which part of the launch a process plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// No namespace: a session of its own, then become the command.
    Plain,
    /// Stage 1: make the namespace and start its init.
    Namespace,
    /// Stage 2: the namespace's init.
    Init,
}

/// One launcher invocation, as the agent builds it and the launcher reads it back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launch {
    pub stage: Stage,
    /// The user the command runs as; `None`: the launcher's own.
    pub user: Option<RunAs>,
    /// Stage 1 and plain: the niceness to take before anything else (0: the agent's).
    pub nice: u8,
    /// Stage 1 only: the file the task's standard output goes to.
    pub stdout: Option<PathBuf>,
    pub program: OsString,
    pub arguments: Vec<OsString>,
}

impl Launch {
    /// The launcher's arguments (without its own name).
    pub fn to_args(&self) -> Vec<OsString> {
        let mut args: Vec<OsString> = Vec::new();
        match self.stage {
            Stage::Plain => {}
            Stage::Namespace => args.push("--namespace".into()),
            Stage::Init => args.push("--init".into()),
        }
        if let Some(user) = self.user {
            args.push("--user".into());
            args.push(format!("{}:{}", user.uid, user.gid).into());
        }
        if self.nice > 0 {
            args.push("--nice".into());
            args.push(self.nice.to_string().into());
        }
        if let Some(stdout) = &self.stdout {
            args.push("--stdout".into());
            args.push(stdout.into());
        }
        args.push("--".into());
        args.push(self.program.clone());
        args.extend(self.arguments.iter().cloned());
        args
    }

    /// Read [`Launch::to_args`] back; the error says what is wrong.
    pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Launch, String> {
        let mut args = args.into_iter();
        let mut stage = Stage::Plain;
        let mut user = None;
        let mut nice = 0;
        let mut stdout = None;
        loop {
            let arg = args
                .next()
                .ok_or("no command given (expected `-- PROGRAM ARGS…`)")?;
            match arg.to_str() {
                Some("--namespace") => stage = Stage::Namespace,
                Some("--init") => stage = Stage::Init,
                Some("--user") => {
                    let value = args.next().ok_or("--user needs UID:GID")?;
                    user = Some(parse_user(&value).ok_or("--user needs UID:GID")?);
                }
                Some("--nice") => {
                    let value = args.next().ok_or("--nice needs a number")?;
                    nice = value
                        .to_str()
                        .and_then(super::priority::parse)
                        .ok_or("--nice needs a number from 0 to 19")?;
                }
                Some("--stdout") => {
                    stdout = Some(PathBuf::from(args.next().ok_or("--stdout needs a path")?));
                }
                Some("--") => break,
                _ => return Err(format!("unknown argument {arg:?}")),
            }
        }
        let program = args.next().ok_or("no command given after `--`")?;
        Ok(Launch {
            stage,
            user,
            nice,
            stdout,
            program,
            arguments: args.collect(),
        })
    }
}

fn parse_user(value: &OsStr) -> Option<RunAs> {
    let (uid, gid) = value.to_str()?.split_once(':')?;
    Some(RunAs {
        uid: uid.parse().ok()?,
        gid: gid.parse().ok()?,
    })
}

/// The launcher's `main`: the process's exit status. Messages go to standard error, which
/// is the task's stderr file, so the job's owner reads why a launch failed.
pub fn run(args: impl IntoIterator<Item = OsString>) -> i32 {
    let mut args = args.into_iter().peekable();
    if args.peek().is_some_and(|a| a == "--version") {
        println!("{LAUNCHER_NAME} {}", env!("CARGO_PKG_VERSION"));
        return 0;
    }
    let launch = match Launch::parse(args) {
        Ok(launch) => launch,
        Err(e) => {
            eprintln!("{LAUNCHER_NAME}: {e}");
            return CANNOT_START;
        }
    };
    // First, so that the whole launch (namespace, init, exec) already yields to the agent.
    if launch.nice > 0 {
        if let Err(e) = super::priority::lower(launch.nice) {
            eprintln!("{LAUNCHER_NAME}: could not lower the task's priority: {e}");
            return CANNOT_START;
        }
    }
    let outcome = match launch.stage {
        Stage::Plain => plain(&launch),
        Stage::Namespace => namespace(&launch),
        Stage::Init => init(&launch),
    };
    outcome.unwrap_or_else(|message| {
        eprintln!("{LAUNCHER_NAME}: {message}");
        CANNOT_START
    })
}

/// The command with the task's user; everything else is inherited.
fn command(launch: &Launch) -> Command {
    let mut command = Command::new(&launch.program);
    command.args(&launch.arguments);
    if let Some(user) = launch.user {
        // Started by root with a uid and no explicit groups, std also clears the
        // supplementary groups (what `setpriv --clear-groups` did).
        command.uid(user.uid).gid(user.gid);
    }
    command
}

fn plain(launch: &Launch) -> Result<i32, String> {
    nix::unistd::setsid().map_err(|e| format!("could not start a session: {e}"))?;
    let error = command(launch).exec();
    Err(format!("could not run {:?}: {error}", launch.program))
}

fn namespace(launch: &Launch) -> Result<i32, String> {
    // If the agent dies, so does the task (stage 2 dies with this process). The kernel ties
    // this to the thread that started us: the agent starts tasks from its runtime's own
    // thread, which lives as long as the agent.
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)
        .map_err(|e| format!("could not tie the task to the agent: {e}"))?;
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWPID)
        .map_err(|e| format!("could not create a PID namespace: {e}"))?;
    let myself = std::env::current_exe()
        .map_err(|e| format!("could not find the launcher's own path: {e}"))?;
    let stage_two = Launch {
        stage: Stage::Init,
        stdout: None,
        // Inherited already.
        nice: 0,
        ..launch.clone()
    };
    let mut init = Command::new(myself);
    init.args(stage_two.to_args());
    if let Some(path) = &launch.stdout {
        let file = OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(|e| format!("could not open {}: {e}", path.display()))?;
        init.stdout(Stdio::from(file));
    }
    let mut init = init
        .spawn()
        .map_err(|e| format!("could not start the namespace's init: {e}"))?;
    // The agent waits for this line to know the init; a closed pipe (an agent that stopped
    // listening) must not stop the task.
    let mut report = std::io::stdout().lock();
    let _ = writeln!(report, "{}", init.id()).and_then(|()| report.flush());
    drop(report);
    let status = init
        .wait()
        .map_err(|e| format!("could not wait for the namespace's init: {e}"))?;
    Ok(pass_on(status))
}

/// Stage 1 ends as stage 2 did: the same exit code, or killed by the same signal (as a
/// task killed from outside, e.g. cancelled with SIGKILL, is reported).
fn pass_on(status: ExitStatus) -> i32 {
    if let Some(code) = status.code() {
        return code;
    }
    let number = status.signal().unwrap_or(0);
    if let Ok(sig) = Signal::try_from(number) {
        // A fresh exec has every signal at its default action (but SIGPIPE, which the Rust
        // runtime ignores), so raising it ends this process the same way.
        let _ = signal::raise(sig);
    }
    128 + number
}

fn init(launch: &Launch) -> Result<i32, String> {
    nix::unistd::setsid().map_err(|e| format!("could not start a session: {e}"))?;
    // Stage 1 is the tie to the agent; without it nothing would end the namespace.
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)
        .map_err(|e| format!("could not tie the task to the agent: {e}"))?;
    let child = command(launch)
        .spawn()
        .map_err(|e| format!("could not run {:?}: {e}", launch.program))?;
    let command = Pid::from_raw(child.id() as i32);
    // As init, every orphan of the namespace becomes ours: reap them all, and end with the
    // command's status.
    loop {
        match waitpid(None::<Pid>, None) {
            Ok(WaitStatus::Exited(pid, code)) if pid == command => return Ok(code),
            Ok(WaitStatus::Signaled(pid, sig, _)) if pid == command => return Ok(128 + sig as i32),
            Ok(_) | Err(Errno::EINTR) => continue,
            Err(e) => return Err(format!("lost track of the command: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_round_trip() {
        let launch = Launch {
            stage: Stage::Namespace,
            user: Some(RunAs {
                uid: 65534,
                gid: 65533,
            }),
            nice: 10,
            stdout: Some(PathBuf::from("/data/tasks/7/stdout")),
            program: "/data/tasks/7/work/prog".into(),
            arguments: vec!["--".into(), "two words".into(), "--init".into()],
        };
        let args = launch.to_args();
        let text: Vec<&str> = args.iter().map(|a| a.to_str().expect("utf-8")).collect();
        assert_eq!(
            text,
            [
                "--namespace",
                "--user",
                "65534:65533",
                "--nice",
                "10",
                "--stdout",
                "/data/tasks/7/stdout",
                "--",
                "/data/tasks/7/work/prog",
                "--",
                "two words",
                "--init"
            ]
        );
        assert_eq!(Launch::parse(args), Ok(launch));
    }

    #[test]
    fn plain_launch_has_only_the_command() {
        let launch = Launch::parse(["--", "/bin/echo"].map(OsString::from)).expect("parsed");
        assert_eq!(launch.stage, Stage::Plain);
        assert_eq!((launch.user, launch.nice, launch.stdout), (None, 0, None));
        assert_eq!(launch.program, "/bin/echo");
        assert!(launch.arguments.is_empty());
    }

    #[test]
    fn bad_arguments_are_refused() {
        let parse = |args: &[&str]| Launch::parse(args.iter().map(OsString::from));
        assert!(parse(&[]).is_err());
        assert!(parse(&["--"]).is_err());
        assert!(parse(&["/bin/echo"]).is_err(), "the command comes after --");
        assert!(parse(&["--user", "nobody", "--", "x"]).is_err());
        assert!(parse(&["--user", "1:", "--", "x"]).is_err());
        assert!(parse(&["--stdout"]).is_err());
        assert!(
            parse(&["--nice", "20", "--", "x"]).is_err(),
            "Linux stops at 19"
        );
        assert!(
            parse(&["--nice", "-5", "--", "x"]).is_err(),
            "only ever nicer"
        );
        assert!(parse(&["--nice", "--", "x"]).is_err());
    }

    #[test]
    fn status_of_an_exit_is_passed_on() {
        assert_eq!(pass_on(ExitStatus::from_raw(3 << 8)), 3);
        assert_eq!(pass_on(ExitStatus::from_raw(0)), 0);
    }
}
