//! Finding what a task starts: its command, and the launcher (`xgridtaskinit`,
//! [`super::taskinit`]) it is started through.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::taskinit::LAUNCHER_NAME;

/// Where the launcher is: the configured path, else beside the running program (the
/// agent's daemon), or one directory up (a test binary in Cargo's `target/*/deps`), else
/// on the agent's PATH.
pub(crate) fn find_launcher(configured: Option<&Path>) -> Option<PathBuf> {
    if let Some(path) = configured {
        return is_executable_file(path).then(|| path.to_path_buf());
    }
    let own = std::env::current_exe().ok();
    let beside = own
        .iter()
        .flat_map(|exe| exe.ancestors().skip(1).take(2))
        .map(|dir| dir.join(LAUNCHER_NAME))
        .find(|candidate| is_executable_file(candidate));
    beside.or_else(|| find_in_path(LAUNCHER_NAME, &std::env::var("PATH").unwrap_or_default()))
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

#[cfg(test)]
mod tests {
    use super::*;

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
