//! A process as PID 1 of a namespace of its own: the trial init the agent runs at start to
//! learn whether namespaces work here, and each task's init, forked by the zygote
//! (`super::zygote::server`) the same way.
//!
//! `unshare(CLONE_NEWPID)` does not move the caller: the next child the calling thread
//! starts becomes the init of a new namespace. So the agent unshares, starts the launcher
//! (which becomes that init, [`super::taskinit`]), and at once points the thread back at its
//! own namespace with `setns`, so that what it starts next (CRIU, the next task's init)
//! starts where the agent is.

use std::fs::File;
use std::sync::OnceLock;

use nix::sched::{setns, unshare, CloneFlags};

/// The process's own PID namespace, opened on first use (it never changes).
fn own_namespace() -> Result<&'static File, String> {
    static OWN: OnceLock<Result<File, String>> = OnceLock::new();
    OWN.get_or_init(|| {
        File::open("/proc/self/ns/pid")
            .map_err(|e| format!("could not open the agent's own PID namespace: {e}"))
    })
    .as_ref()
    .map_err(Clone::clone)
}

/// Runs `start`, which starts one child process, so that the child is PID 1 of a new PID
/// namespace. The error says which step failed; `start`'s own result is passed back.
pub(crate) fn start_in_new_namespace<T>(start: impl FnOnce() -> T) -> Result<T, String> {
    make_for_next_child()?;
    let started = start();
    return_to_own()?;
    Ok(started)
}

/// Makes the calling thread's next child the init of a new PID namespace (and every child
/// after it a member of that namespace, until [`return_to_own`]).
pub(crate) fn make_for_next_child() -> Result<(), String> {
    // Opened first, while it is sure to name our own namespace.
    own_namespace()?;
    unshare(CloneFlags::CLONE_NEWPID).map_err(|e| format!("could not create a PID namespace: {e}"))
}

/// Points the calling thread's next children back at its own PID namespace. Were this to
/// fail, every later child would land in the namespace made last, where nothing can start
/// once its init has ended: callers report it rather than go on.
pub(crate) fn return_to_own() -> Result<(), String> {
    setns(own_namespace()?, CloneFlags::CLONE_NEWPID)
        .map_err(|e| format!("could not return to its own PID namespace: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> bool {
        std::fs::read_to_string("/proc/self/status")
            .unwrap_or_default()
            .lines()
            .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"))
    }

    fn namespace_of(pid: u32) -> String {
        std::fs::read_link(format!("/proc/{pid}/ns/pid"))
            .expect("pid namespace")
            .to_string_lossy()
            .into_owned()
    }

    #[test]
    fn each_child_started_inside_gets_a_namespace_of_its_own_and_later_ones_do_not() {
        if !root() {
            eprintln!("skipped: creating PID namespaces needs root");
            return;
        }
        let own = namespace_of(std::process::id());
        let start = || std::process::Command::new("sleep").arg("5").spawn();
        let mut first = start_in_new_namespace(start)
            .expect("namespace")
            .expect("sleep");
        let mut second = start_in_new_namespace(start)
            .expect("namespace")
            .expect("sleep");
        let mut after = start().expect("sleep");
        let (a, b, c) = (
            namespace_of(first.id()),
            namespace_of(second.id()),
            namespace_of(after.id()),
        );
        for child in [&mut first, &mut second, &mut after] {
            let _ = child.kill();
            let _ = child.wait();
        }
        assert_ne!(a, own);
        assert_ne!(b, own);
        assert_ne!(a, b, "one namespace per task");
        assert_eq!(c, own, "back in the agent's namespace");
    }
}
