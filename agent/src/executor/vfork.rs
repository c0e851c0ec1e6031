//! How a task's init starts the command: `clone(CLONE_VM | CLONE_VFORK)`, as the C library's
//! `posix_spawn` does, rather than the `fork` that `std::process::Command` uses whenever it
//! must change the user. A fork copies the init's page tables only for the exec to throw
//! them away; here the child runs on a stack of its own inside the init's memory until it
//! executes the command, and the init waits meanwhile (about 0.1 ms of CPU a task saved on
//! the machine measured). Everything the child needs is prepared beforehand, so it only
//! makes system calls: no allocation, no lock.

use std::ffi::{CString, OsStr, OsString};
use std::os::unix::ffi::OsStrExt;

use super::identity::RunAs;

/// The child's stack: it only makes a handful of system calls.
const CHILD_STACK: usize = 64 * 1024;

/// What the child reads, and where it leaves the reason it could not start the command.
struct Child {
    program: CString,
    /// NULL-terminated arrays of pointers to the caller's strings.
    argv: Vec<*const libc::c_char>,
    envp: Vec<*const libc::c_char>,
    user: Option<RunAs>,
    /// The `errno` of the call that failed, 0 when the exec happened.
    error: libc::c_int,
}

fn c_string(bytes: &OsStr) -> Result<CString, String> {
    CString::new(bytes.as_bytes()).map_err(|_| format!("{bytes:?} holds a NUL byte"))
}

/// `NAME=value`, as `execve` wants an environment entry.
pub(crate) fn environment_entry(name: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> OsString {
    let mut entry = name.as_ref().to_os_string();
    entry.push("=");
    entry.push(value);
    entry
}

/// Starts `program` with `arguments` (after its own name) and the `environment` entries
/// (`NAME=value`), as `user` with no supplementary groups when given; its pid. Standard
/// streams, working directory, session and niceness are the caller's. The error says why
/// the command could not be started.
#[allow(unsafe_code)]
pub(crate) fn spawn(
    program: &OsStr,
    arguments: &[OsString],
    environment: &[OsString],
    user: Option<RunAs>,
) -> Result<i32, String> {
    let program_c = c_string(program)?;
    let arguments: Vec<CString> = std::iter::once(program)
        .chain(arguments.iter().map(OsString::as_os_str))
        .map(c_string)
        .collect::<Result<_, _>>()?;
    let environment: Vec<CString> = environment
        .iter()
        .map(|e| c_string(e))
        .collect::<Result<_, _>>()?;
    let pointers = |strings: &[CString]| -> Vec<*const libc::c_char> {
        strings
            .iter()
            .map(|s| s.as_ptr())
            .chain(std::iter::once(std::ptr::null()))
            .collect()
    };
    let mut child = Child {
        program: program_c,
        argv: pointers(&arguments),
        envp: pointers(&environment),
        user,
        error: 0,
    };
    // Left unwritten: zeroing it would touch (and, in a freshly forked init, copy) all of its
    // pages, where the child uses only the top one or two.
    let mut stack: Vec<u8> = Vec::with_capacity(CHILD_STACK);
    // SAFETY: the stack grows down on every architecture Linux runs this on; its top, kept
    // 16-byte aligned, is one past the end of the allocation, which outlives the child's use
    // of it (CLONE_VFORK holds us until the child executes or exits). Only the child writes
    // there, before it reads.
    let top = unsafe { stack.as_mut_ptr().add(CHILD_STACK) };
    let top = (top as usize & !15) as *mut libc::c_void;
    // SAFETY: `run` only reads `child` and writes its `error`, and makes system calls;
    // `child`, its strings and the stack live until clone returns, which with CLONE_VFORK
    // is after the child has executed the command or exited.
    let pid = unsafe {
        libc::clone(
            run,
            top,
            libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
            (&raw mut child).cast::<libc::c_void>(),
        )
    };
    if pid < 0 {
        return Err(format!(
            "could not start {program:?}: {}",
            std::io::Error::last_os_error()
        ));
    }
    if child.error != 0 {
        let mut status = 0;
        // SAFETY: reaps the child we just made, which has exited.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        return Err(format!(
            "could not run {program:?}: {}",
            std::io::Error::from_raw_os_error(child.error)
        ));
    }
    Ok(pid)
}

/// The child: become the task's user, put SIGPIPE back to its default (Rust's runtime
/// ignores it in the init, and an ignored signal stays ignored across exec), execute.
#[allow(unsafe_code)]
extern "C" fn run(argument: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `argument` is the `Child` the parent passed, alive and not otherwise used
    // while the parent is held by CLONE_VFORK.
    let child = unsafe { &mut *argument.cast::<Child>() };
    // SAFETY: raw system calls with plain arguments and pointers into `child`, which
    // stays valid; no allocation, no lock, no C library state (the parent's thread
    // bookkeeping is not ours to use, so the set-id calls bypass their glibc wrappers).
    unsafe {
        let fail = |child: &mut Child| -> libc::c_int {
            child.error = *libc::__errno_location();
            libc::_exit(127)
        };
        if let Some(user) = child.user {
            // Arguments widened to the register size the kernel reads.
            let none: libc::c_long = 0;
            if libc::syscall(libc::SYS_setgroups, none, std::ptr::null::<libc::gid_t>()) != 0
                || libc::syscall(libc::SYS_setgid, libc::c_long::from(user.gid)) != 0
                || libc::syscall(libc::SYS_setuid, libc::c_long::from(user.uid)) != 0
            {
                return fail(child);
            }
        }
        let mut default: libc::sigaction = std::mem::zeroed();
        default.sa_sigaction = libc::SIG_DFL;
        libc::sigaction(libc::SIGPIPE, &default, std::ptr::null_mut());
        libc::execve(
            child.program.as_ptr(),
            child.argv.as_ptr(),
            child.envp.as_ptr(),
        );
        fail(child)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wait(pid: i32) -> i32 {
        let status = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
        match status {
            Ok(nix::sys::wait::WaitStatus::Exited(_, code)) => code,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_command_gets_its_arguments_and_only_the_given_environment() {
        let pid = spawn(
            OsStr::new("/bin/sh"),
            &[
                "-c".into(),
                r#"[ "$1 $2" = "two words" ] && [ "$X" = y ] && [ -z "$HOME" ] && exit 7"#.into(),
                "sh".into(),
                "two".into(),
                "words".into(),
            ],
            &[environment_entry("X", "y")],
            None,
        )
        .expect("started");
        assert_eq!(wait(pid), 7);
    }

    #[test]
    fn sigpipe_is_back_to_its_default() {
        // This test program, like the init, runs with SIGPIPE ignored by Rust's runtime; an
        // ignored signal would stay ignored across exec (and a shell cannot undo it).
        // SIGPIPE is signal 13: bit 12 of the ignored-signal mask the command reads.
        let script = "m=$(awk '/^SigIgn/ {print $2}' /proc/self/status); \
                      [ $(( 0x$m & 0x1000 )) -eq 0 ] && exit 5";
        let pid = spawn(
            OsStr::new("/bin/sh"),
            &["-c".into(), script.into()],
            &[],
            None,
        )
        .expect("started");
        assert_eq!(wait(pid), 5);
    }

    #[test]
    fn a_missing_program_is_an_error_that_says_so() {
        let error =
            spawn(OsStr::new("/nonexistent/program"), &[], &[], None).expect_err("nothing to run");
        assert!(
            error.contains("/nonexistent/program") && error.contains("No such file"),
            "{error}"
        );
        let error = spawn(OsStr::new("/bin/sh"), &["a\0b".into()], &[], None)
            .expect_err("a NUL cannot be passed");
        assert!(error.contains("NUL"), "{error}");
    }
}
