//! How a task's command line is built: finding the command, and wrapping it in the
//! util-linux tools that give it its own PID namespace (`unshare`), its unprivileged user
//! (`setpriv`) and its own session (`setsid`, run inside the namespace so the task is both
//! the namespace's init and its session leader, which CRIU needs).
//!
//! Every wrapper `exec`s the next one without forking, except `unshare --fork`, whose one
//! child becomes PID 1 of the new namespace and then becomes the command itself.

use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::identity::RunAs;

/// Where to look for the util-linux tools when the agent's own PATH lacks them.
const SYSTEM_DIRS: &str = "/usr/bin:/bin:/usr/sbin:/sbin";

/// The util-linux tools found on this machine.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Tools {
    pub unshare: Option<PathBuf>,
    pub setpriv: Option<PathBuf>,
    pub setsid: Option<PathBuf>,
}

impl Tools {
    pub fn find() -> Tools {
        let mut search = std::env::var("PATH").unwrap_or_default();
        search.push(':');
        search.push_str(SYSTEM_DIRS);
        Tools {
            unshare: find_in_path("unshare", &search),
            setpriv: find_in_path("setpriv", &search),
            setsid: find_in_path("setsid", &search),
        }
    }
}

fn is_executable_file(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn find_in_path(name: &str, search: &str) -> Option<PathBuf> {
    search
        .split(':')
        .filter(|dir| !dir.is_empty())
        .map(|dir| Path::new(dir).join(name))
        .find(|candidate| is_executable_file(candidate))
}

/// Find the program a task's `command` names. An absolute path is taken as it is. A
/// relative path (a program the job sent along as an input file) is looked up in the working
/// directory; a bare name is looked up there first and then in `search` (the task's PATH).
/// The error is the message the task fails with.
pub(crate) fn resolve_command(command: &str, work: &Path, search: &str) -> Result<PathBuf, String> {
    let not_found = || format!("command not found: {command}");
    if command.is_empty() {
        return Err("no command given".into());
    }
    let candidate = if command.starts_with('/') {
        PathBuf::from(command)
    } else if command.contains('/') || work.join(command).is_file() {
        work.join(command)
    } else {
        return find_in_path(command, search).ok_or_else(not_found);
    };
    if !candidate.is_file() {
        return Err(not_found());
    }
    if !is_executable_file(&candidate) {
        return Err(format!("command is not executable: {command}"));
    }
    Ok(candidate)
}

/// The wrappers a task is started through; `None` leaves one out.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Wrappers<'a> {
    /// `unshare`, for a PID namespace.
    pub unshare: Option<&'a Path>,
    /// `setpriv` and the user to become.
    pub setpriv: Option<(&'a Path, RunAs)>,
    /// `setsid`, for a session of the task's own.
    pub setsid: Option<&'a Path>,
}

/// The full command line: wrappers, then the program and its arguments.
pub(crate) fn command_line(
    wrappers: Wrappers<'_>,
    program: &Path,
    arguments: &[String],
) -> Vec<OsString> {
    let mut argv: Vec<OsString> = Vec::new();
    if let Some(unshare) = wrappers.unshare {
        argv.push(unshare.into());
        // --kill-child: if unshare dies first, its child (the task) gets SIGKILL. The kernel
        // drops that request when setpriv changes the user, so the executor also kills the
        // namespace itself; it is kept for agents that run tasks as themselves.
        for flag in ["--pid", "--fork", "--kill-child", "--"] {
            argv.push(flag.into());
        }
    }
    if let Some((setpriv, user)) = wrappers.setpriv {
        argv.push(setpriv.into());
        argv.push(format!("--reuid={}", user.uid).into());
        argv.push(format!("--regid={}", user.gid).into());
        argv.push("--clear-groups".into());
        argv.push("--".into());
    }
    if let Some(setsid) = wrappers.setsid {
        // The program path is absolute, so setsid cannot mistake it for an option.
        argv.push(setsid.into());
    }
    argv.push(program.into());
    argv.extend(arguments.iter().map(OsString::from));
    argv
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(argv: &[OsString]) -> Vec<&str> {
        argv.iter().map(|a| a.to_str().expect("utf-8")).collect()
    }

    #[test]
    fn full_wrapping() {
        let argv = command_line(
            Wrappers {
                unshare: Some(Path::new("/usr/bin/unshare")),
                setpriv: Some((
                    Path::new("/usr/bin/setpriv"),
                    RunAs {
                        uid: 65534,
                        gid: 65533,
                    },
                )),
                setsid: Some(Path::new("/usr/bin/setsid")),
            },
            Path::new("/data/tasks/7/work/prog"),
            &["-x".to_string(), "two words".to_string()],
        );
        assert_eq!(
            strings(&argv),
            [
                "/usr/bin/unshare",
                "--pid",
                "--fork",
                "--kill-child",
                "--",
                "/usr/bin/setpriv",
                "--reuid=65534",
                "--regid=65533",
                "--clear-groups",
                "--",
                "/usr/bin/setsid",
                "/data/tasks/7/work/prog",
                "-x",
                "two words"
            ]
        );
    }

    #[test]
    fn no_wrappers() {
        let argv = command_line(
            Wrappers {
                unshare: None,
                setpriv: None,
                setsid: None,
            },
            Path::new("/bin/echo"),
            &[],
        );
        assert_eq!(strings(&argv), ["/bin/echo"]);
    }

    #[test]
    fn command_resolution() {
        let dir = std::env::temp_dir().join(format!("xgrid-launch-test-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("bin")).expect("temp dir");
        let write = |name: &str, mode: u32| {
            let path = dir.join(name);
            std::fs::write(&path, b"#!/bin/sh\n").expect("write");
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
        };
        write("tool", 0o755);
        write("bin/inner", 0o755);
        write("data", 0o644);
        write("bin/sh", 0o755);
        let search = "/usr/bin:/bin";

        assert_eq!(resolve_command("tool", &dir, search), Ok(dir.join("tool")));
        assert_eq!(
            resolve_command("bin/inner", &dir, search),
            Ok(dir.join("bin/inner"))
        );
        assert_eq!(
            resolve_command("./tool", &dir, search),
            Ok(dir.join("./tool"))
        );
        // A bare name that is not in the working directory comes from PATH.
        let sh = resolve_command("sh", &dir, search).expect("sh on PATH");
        assert!(sh.is_absolute() && sh.ends_with("sh") && !sh.starts_with(&dir));
        assert_eq!(
            resolve_command("/bin/sh", &dir, search),
            Ok(PathBuf::from("/bin/sh"))
        );
        assert_eq!(
            resolve_command("no-such-program-xyz", &dir, search),
            Err("command not found: no-such-program-xyz".to_string())
        );
        assert_eq!(
            resolve_command("/nonexistent/prog", &dir, search),
            Err("command not found: /nonexistent/prog".to_string())
        );
        assert_eq!(
            resolve_command("data", &dir, search),
            Err("command is not executable: data".to_string())
        );
        assert!(resolve_command("", &dir, search).is_err());
        std::fs::remove_dir_all(&dir).expect("clean up");
    }
}
