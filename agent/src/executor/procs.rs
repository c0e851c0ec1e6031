//! Finding a task's processes in `/proc` and signalling them. A task is either every process
//! in its PID namespace or, without a namespace, every process in its session; both survive
//! a task that forks, double-forks or changes its process group.

use nix::errno::Errno;
use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;

/// The fields of `/proc/PID/stat` the executor uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stat {
    pub pid: i32,
    pub ppid: i32,
    pub session: i32,
}

/// Read `/proc/PID/stat` text: `pid (comm) state ppid pgrp session …`. The command name may
/// hold spaces and parentheses, so the fields after it are found from the last `)`.
pub(crate) fn parse_stat(text: &str) -> Option<Stat> {
    let (head, tail) = text.rsplit_once(')')?;
    let pid = head.split_once('(')?.0.trim().parse().ok()?;
    let mut fields = tail.split_whitespace();
    let _state = fields.next()?;
    let ppid = fields.next()?.parse().ok()?;
    let _pgrp = fields.next()?;
    let session = fields.next()?.parse().ok()?;
    Some(Stat { pid, ppid, session })
}

fn stat_of(pid: i32) -> Option<Stat> {
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// Every process id in `/proc`, as the agent's namespace numbers them.
fn all_pids() -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

/// The parent of `pid`, if it still exists.
pub(crate) fn parent_of(pid: i32) -> Option<i32> {
    stat_of(pid).map(|s| s.ppid)
}

/// The PID namespace of `pid`, as the kernel names it (`pid:[4026532198]`); the name is
/// unique while the namespace lives.
pub(crate) fn pid_namespace(pid: i32) -> Option<String> {
    let link = std::fs::read_link(format!("/proc/{pid}/ns/pid")).ok()?;
    link.to_str().map(str::to_string)
}

/// How a task's processes are recognised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Membership {
    /// Every process in this PID namespace.
    Namespace(String),
    /// Every process in the session this leader opened.
    Session(i32),
}

impl Membership {
    pub fn members(&self) -> Vec<i32> {
        all_pids()
            .into_iter()
            .filter(|&pid| match self {
                Membership::Namespace(ns) => pid_namespace(pid).as_deref() == Some(ns),
                Membership::Session(sid) => stat_of(pid).is_some_and(|s| s.session == *sid),
            })
            .collect()
    }

    /// Send `sig` to every member, looking again until no new member turns up, so children
    /// forked while the signals went out are caught as well. Returns the pids signalled.
    pub fn signal_all(&self, sig: Signal) -> Result<Vec<i32>, Errno> {
        const ROUNDS: usize = 16;
        let mut signalled: Vec<i32> = Vec::new();
        for _ in 0..ROUNDS {
            let fresh: Vec<i32> = self
                .members()
                .into_iter()
                .filter(|pid| !signalled.contains(pid))
                .collect();
            if fresh.is_empty() {
                break;
            }
            for pid in fresh {
                send(pid, sig)?;
                signalled.push(pid);
            }
        }
        Ok(signalled)
    }
}

/// Send one signal; a process that is already gone is not an error.
pub(crate) fn send(pid: i32, sig: Signal) -> Result<(), Errno> {
    match signal::kill(Pid::from_raw(pid), sig) {
        Ok(()) | Err(Errno::ESRCH) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Whether a process with this id exists (a zombie counts).
pub(crate) fn exists(pid: i32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_awkward_command_name() {
        let text = "4242 (my (odd) prog) S 17 4242 4200 0 -1 4194560 100 0 0 0\n";
        assert_eq!(
            parse_stat(text),
            Some(Stat {
                pid: 4242,
                ppid: 17,
                session: 4200
            })
        );
    }

    #[test]
    fn broken_stat_is_none() {
        assert_eq!(parse_stat("4242 (cat S 1 2 3"), None);
        assert_eq!(parse_stat("4242 (cat) S"), None);
        assert_eq!(parse_stat(""), None);
    }

    #[test]
    fn own_process_is_found() {
        let me = i32::try_from(std::process::id()).expect("pid fits");
        let stat = stat_of(me).expect("own stat");
        assert_eq!(stat.pid, me);
        assert_eq!(parent_of(me), Some(stat.ppid));
        assert!(pid_namespace(me).is_some_and(|ns| ns.starts_with("pid:[")));
        assert!(Membership::Session(stat.session).members().contains(&me));
    }
}
