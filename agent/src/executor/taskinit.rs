//! `xgridtaskinit`, the small program every task is started through (its `main` is
//! [`run`]). It replaces a chain of util-linux tools (`unshare`, `setpriv`, `setsid`), each
//! an extra exec per task, and it keeps the namespace's init as root, which CRIU needs to
//! dump the namespace (its parasite must mount the namespace's /proc as that init).
//!
//! With a PID namespace the init is forked by `xgridtaskinit --zygote` ([`super::zygote`]),
//! one per agent; `--init`, the same init started by exec as PID 1 of a fresh namespace
//! ([`super::pidns`]), is what the agent's trial at start runs. Still root, the init calls
//! `setsid()` (so the session leader is inside the namespace), dies with the agent, starts
//! the command as the task's user, reaps every process the namespace's orphans leave
//! behind, and exits with the command's status (128 + the signal when a signal killed it).
//! When it exits, the kernel kills whatever else is left in the namespace.
//!
//! Without a namespace (`Isolation::Plain`) it only calls `setsid()` and becomes the command
//! as the task's user, so the task leads its own session with no extra process.
//!
//! Either way it first takes the task's niceness, for itself and for the session's
//! scheduling group ([`super::priority`]). Standard input, output and error, the working
//! directory and the environment are the task's from the start: the agent sets them, and
//! they are inherited all the way down.

use std::ffi::{OsStr, OsString};
use std::os::unix::process::CommandExt;
use std::process::Command;

use nix::errno::Errno;
use nix::sys::signal::Signal;
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;

use super::identity::RunAs;

/// The launcher's binary name; the agent looks for it beside its own.
pub const LAUNCHER_NAME: &str = "xgridtaskinit";

/// The exit status of a launcher that could not start the command (as a shell's 127).
pub(crate) const CANNOT_START: i32 = 127;

/// Which part of the launch a process plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// No namespace: a session of its own, then become the command.
    Plain,
    /// PID 1 of the task's namespace: start the command and reap.
    Init,
}

/// One launcher invocation, as the agent builds it and the launcher reads it back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launch {
    pub stage: Stage,
    /// The user the command runs as; `None`: the launcher's own.
    pub user: Option<RunAs>,
    /// The niceness to take before anything else (0: the agent's).
    pub nice: u8,
    pub program: OsString,
    pub arguments: Vec<OsString>,
}

impl Launch {
    /// The launcher's arguments (without its own name).
    pub fn to_args(&self) -> Vec<OsString> {
        let mut args: Vec<OsString> = Vec::new();
        match self.stage {
            Stage::Plain => {}
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
        loop {
            let arg = args
                .next()
                .ok_or("no command given (expected `-- PROGRAM ARGS…`)")?;
            match arg.to_str() {
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
                Some("--") => break,
                _ => return Err(format!("unknown argument {arg:?}")),
            }
        }
        let program = args.next().ok_or("no command given after `--`")?;
        Ok(Launch {
            stage,
            user,
            nice,
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
    if args.peek().is_some_and(|a| a == "--zygote") {
        return super::zygote::server::run();
    }
    let launch = match Launch::parse(args) {
        Ok(launch) => launch,
        Err(e) => {
            eprintln!("{LAUNCHER_NAME}: {e}");
            return CANNOT_START;
        }
    };
    // First, so that the whole launch (session, exec) already yields to the agent.
    if launch.nice > 0 {
        if let Err(e) = super::priority::lower(launch.nice) {
            eprintln!("{LAUNCHER_NAME}: could not lower the task's priority: {e}");
            return CANNOT_START;
        }
    }
    let outcome = match launch.stage {
        Stage::Plain => plain(&launch),
        Stage::Init => init(&launch, None),
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

/// A session of its own, at the task's niceness (see [`super::priority::lower_session`]).
fn new_session(launch: &Launch) -> Result<(), String> {
    nix::unistd::setsid().map_err(|e| format!("could not start a session: {e}"))?;
    if launch.nice > 0 {
        super::priority::lower_session(launch.nice);
    }
    Ok(())
}

fn plain(launch: &Launch) -> Result<i32, String> {
    new_session(launch)?;
    let error = command(launch).exec();
    Err(format!("could not run {:?}: {error}", launch.program))
}

/// PID 1 of the task's namespace: start the command (with the `NAME=value` entries of
/// `environment`, else our own environment) and reap until it ends; its exit status. Also
/// what a zygote's forked init runs ([`super::zygote::server`]).
pub(crate) fn init(launch: &Launch, environment: Option<&[OsString]>) -> Result<i32, String> {
    new_session(launch)?;
    // If the agent dies, so does the task: the kernel ties this to the thread that started
    // us, the agent's runtime thread, which lives as long as the agent (or the zygote,
    // which dies with the agent in the same way).
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)
        .map_err(|e| format!("could not tie the task to the agent: {e}"))?;
    // The agent's `--init` trial passes no environment: the command gets ours.
    let inherited: Vec<OsString>;
    let environment = match environment {
        Some(entries) => entries,
        None => {
            inherited = std::env::vars_os()
                .map(|(name, value)| super::vfork::environment_entry(name, value))
                .collect();
            &inherited
        }
    };
    let command = Pid::from_raw(super::vfork::spawn(
        &launch.program,
        &launch.arguments,
        environment,
        launch.user,
    )?);
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
            stage: Stage::Init,
            user: Some(RunAs {
                uid: 65534,
                gid: 65533,
            }),
            nice: 10,
            program: "/data/tasks/7/work/prog".into(),
            arguments: vec!["--".into(), "two words".into(), "--init".into()],
        };
        let args = launch.to_args();
        let text: Vec<&str> = args.iter().map(|a| a.to_str().expect("utf-8")).collect();
        assert_eq!(
            text,
            [
                "--init",
                "--user",
                "65534:65533",
                "--nice",
                "10",
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
        assert_eq!((launch.user, launch.nice), (None, 0));
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
        assert!(parse(&["--namespace", "--", "x"]).is_err(), "no such stage");
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
}
