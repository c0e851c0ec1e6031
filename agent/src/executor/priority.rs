//! Task priority: tasks run niced (`--task-nice`, 10 by default), so the machine's owner,
//! the agent and, on a machine that also runs it, the controller come first. Grid work is
//! what the idle cycles are for; a task that competes at full priority delays the very
//! messages that start the next task (measured here: with a controller beside the agent,
//! a task's launch took the processor from the controller while it recorded the start).

/// The highest niceness Linux accepts.
pub const MAX_NICE: u8 = 19;

/// A niceness as written on a command line: a whole number from 0 to [`MAX_NICE`].
pub fn parse(text: &str) -> Option<u8> {
    text.parse().ok().filter(|n| *n <= MAX_NICE)
}

/// Sets the niceness of the calling thread (the launcher is single-threaded: the whole
/// process) to `nice`, at most [`MAX_NICE`]; what it starts inherits it. A thread already
/// nicer than that (an agent started with `nice`) stays as it is: only raising a priority
/// needs a privilege, so a refusal means it is low enough. The error is the C library's.
pub fn lower(nice: u8) -> std::io::Result<()> {
    match set_nice(i32::from(nice.min(MAX_NICE))) {
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => Ok(()),
        other => other,
    }
}

/// Gives the session the calling process just opened the niceness `nice` as a whole. With
/// autogroups (`CONFIG_SCHED_AUTOGROUP`, on in most distributions' kernels) every new session
/// gets a scheduling group of its own, and the scheduler shares the processors between
/// groups first, by the group's niceness (0 when made): a task's own niceness would then
/// only order it against its own processes, and eight tasks would weigh as eight users
/// against the machine's owner. Best effort: a kernel without autogroups has no such file,
/// and a refusal (an unprivileged launcher asking too often) leaves the task as niced as
/// [`lower`] made it.
pub fn lower_session(nice: u8) {
    let _ = std::fs::write("/proc/self/autogroup", nice.min(MAX_NICE).to_string());
}

#[allow(unsafe_code)]
fn set_nice(nice: i32) -> std::io::Result<()> {
    // SAFETY: setpriority takes plain integers and touches no memory of ours. `who` 0 is
    // the calling thread (Linux applies PRIO_PROCESS to one thread).
    let result = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, nice) };
    if result == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Field 19 of `/proc/thread-self/stat`: the thread's niceness.
    fn own_nice() -> i32 {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").expect("stat");
        let after = stat.rsplit_once(')').expect("comm").1;
        after
            .split_whitespace()
            .nth(16)
            .expect("nice")
            .parse()
            .expect("number")
    }

    #[test]
    fn niceness_is_read_from_0_to_19() {
        assert_eq!(parse("0"), Some(0));
        assert_eq!(parse("19"), Some(19));
        for refused in ["20", "-1", "", "low", "1.5", " 5"] {
            assert_eq!(parse(refused), None, "{refused:?}");
        }
    }

    #[test]
    fn a_thread_is_made_nicer_and_the_limit_holds() {
        // A thread of its own, so that the test runner's other threads keep their priority.
        let seen = std::thread::spawn(|| {
            lower(5).expect("setpriority");
            let after = own_nice();
            lower(40).expect("setpriority");
            (after, own_nice())
        })
        .join()
        .expect("thread");
        assert_eq!(seen, (5, 19));
        assert_ne!(own_nice(), 19, "the other threads keep their own priority");
    }
}
