//! The zygote's side: `xgridtaskinit --zygote`, one long-lived process per agent that forks
//! every task's init instead of the agent executing the launcher for each task.
//!
//! Why: on the virtual machines measured here an exec costs far more than a fork of a small
//! process (the dynamic loader and the C library question the processor with `cpuid`, which
//! the hypervisor traps, dozens of times per exec): the launcher's exec was 0.7 ms of CPU
//! per task, more than the agent's whole handling of a task. A fork of this small process
//! is a tenth of that. The init it forks is the same program, in the same state, as an
//! exec'd `xgridtaskinit --init` would be, so CRIU dumps and restores it the same way.
//!
//! The agent's socket is its standard input. For each [`Start`] it reads, it makes a PID
//! namespace, forks, and reports [`Report::Started`] with the child's pid; the child
//! becomes the task's init ([`become_init`]). It watches every child through a pidfd and
//! reports [`Report::Ended`] with the wait status once it has reaped it. When the agent
//! goes (end of file on the socket, or the parent-death signal if it was killed), the
//! zygote exits, and every init it forked dies of its own parent-death signal, taking its
//! namespace with it.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

use nix::sys::signal::Signal;
use nix::unistd::ForkResult;

use super::wire::{self, Report, Start};
use crate::executor::taskinit::{self, Launch, Stage, CANNOT_START, LAUNCHER_NAME};
use crate::executor::{open_stream, pidns, procs};

/// The zygote's `main`: the process's exit status.
pub fn run() -> i32 {
    match serve() {
        Ok(()) => 0,
        Err(message) => {
            eprintln!("{LAUNCHER_NAME} --zygote: {message}");
            1
        }
    }
}

/// One forked init the zygote waits for.
struct Init {
    pid: i32,
    pidfd: OwnedFd,
}

fn serve() -> Result<(), String> {
    // Tied to the agent's thread that started us: if the agent is killed, so are we, and
    // through their own parent-death signal every task's init.
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)
        .map_err(|e| format!("could not tie the zygote to the agent: {e}"))?;
    let mut socket = agent_socket();
    let mut inits: Vec<Init> = Vec::new();
    loop {
        let ready = wait_for_work(socket.as_raw_fd(), &inits)?;
        // Ends first, so a pid is reported ended before a new init could take it.
        let mut ended = Vec::new();
        inits.retain(|init| {
            if !ready.iter().any(|&fd| fd == init.pidfd.as_raw_fd()) {
                return true;
            }
            match reap(init.pid) {
                Some(status) => {
                    ended.push(Report::Ended {
                        pid: init.pid,
                        status,
                    });
                    false
                }
                None => true,
            }
        });
        for report in ended {
            send(&mut socket, &report)?;
        }
        if ready.contains(&socket.as_raw_fd()) {
            let Some(request) = receive(&mut socket)? else {
                return Ok(());
            };
            let report = match start(&request) {
                Ok(init) => {
                    let report = Report::Started {
                        id: request.id,
                        pid: init.pid,
                        // Read now, before the init can end and be reaped.
                        namespace: procs::pid_namespace(init.pid).unwrap_or_default(),
                    };
                    inits.push(init);
                    report
                }
                Err(message) => Report::Refused {
                    id: request.id,
                    message,
                },
            };
            send(&mut socket, &report)?;
        }
    }
}

/// The socket to the agent, which the agent made our standard input.
#[allow(unsafe_code)]
fn agent_socket() -> UnixStream {
    // SAFETY: fd 0 is open (the agent gave it) and nothing else in this process owns it.
    UnixStream::from(unsafe { OwnedFd::from_raw_fd(0) })
}

/// Blocks until the agent wrote or an init ended; the descriptors that are ready.
#[allow(unsafe_code)]
fn wait_for_work(socket: RawFd, inits: &[Init]) -> Result<Vec<RawFd>, String> {
    let mut fds: Vec<libc::pollfd> = std::iter::once(socket)
        .chain(inits.iter().map(|i| i.pidfd.as_raw_fd()))
        .map(|fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    loop {
        // SAFETY: `fds` is a valid array of `fds.len()` pollfd structures.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) };
        if n >= 0 {
            break;
        }
        let error = std::io::Error::last_os_error();
        if error.kind() != std::io::ErrorKind::Interrupted {
            return Err(format!("could not wait for work: {error}"));
        }
    }
    Ok(fds
        .iter()
        .filter(|p| p.revents != 0)
        .map(|p| p.fd)
        .collect())
}

/// The wait status of an init whose pidfd said it ended; `None` if it has not after all.
#[allow(unsafe_code)]
fn reap(pid: i32) -> Option<i32> {
    let mut status = 0;
    loop {
        // SAFETY: `status` is a valid place for the status; `pid` is our own child.
        let got = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        match got {
            0 => return None,
            p if p == pid => return Some(status),
            _ if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted => {}
            // Not our child any more (cannot happen): report it ended rather than wait
            // for ever on a pidfd that stays readable.
            _ => return Some(libc::SIGKILL),
        }
    }
}

/// The next request; `None` at end of file (the agent is gone).
fn receive(socket: &mut UnixStream) -> Result<Option<Start>, String> {
    let mut head = [0; 4];
    match socket.read_exact(&mut head) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(format!("could not read from the agent: {e}")),
    }
    let len = wire::frame_length(head).ok_or("the agent sent a frame too large")?;
    let mut body = vec![0; len];
    socket
        .read_exact(&mut body)
        .map_err(|e| format!("could not read from the agent: {e}"))?;
    Start::decode(&body)
        .map(Some)
        .ok_or_else(|| "the agent sent a request that is not one".to_string())
}

fn send(socket: &mut UnixStream, report: &Report) -> Result<(), String> {
    socket
        .write_all(&report.encode())
        .map_err(|e| format!("could not write to the agent: {e}"))
}

/// Forks the task's init into a new PID namespace.
#[allow(unsafe_code)]
fn start(request: &Start) -> Result<Init, String> {
    // Not `pidns::start_in_new_namespace`: the child must not return to our namespace, as
    // its own children (the command) belong in the one it is init of.
    pidns::make_for_next_child()?;
    // SAFETY: this process has one thread, so the child may run any code.
    let forked = unsafe { nix::unistd::fork() };
    if let Ok(ForkResult::Child) = forked {
        let status = become_init(request);
        // Not `exit`: the zygote's exit handlers and buffers are not the init's to run, and
        // skipping them spares the pages they would touch (each a copy after the fork).
        // SAFETY: ends this process only; nothing of it is left to flush (its messages went
        // to standard error unbuffered).
        unsafe { libc::_exit(status) };
    }
    if let Err(reason) = pidns::return_to_own() {
        // Stop (the agent starts a new zygote) rather than go on.
        eprintln!("{LAUNCHER_NAME} --zygote: {reason}");
        std::process::exit(1);
    }
    let pid = match forked {
        Ok(ForkResult::Parent { child }) => child.as_raw(),
        Ok(ForkResult::Child) => unreachable!("the child became the init above"),
        Err(e) => return Err(format!("could not start the task's init: {e}")),
    };
    // SAFETY: pidfd_open takes plain integers; `pid` is our unreaped child.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    match i32::try_from(fd) {
        // SAFETY: the kernel just gave us this descriptor, owned by nothing else.
        Ok(fd) if fd >= 0 => Ok(Init {
            pid,
            pidfd: unsafe { OwnedFd::from_raw_fd(fd) },
        }),
        _ => {
            let error = std::io::Error::last_os_error();
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL);
            let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
            Err(format!("could not watch the task's init: {error}"))
        }
    }
}

/// In the forked child, PID 1 of the new namespace: take the task's niceness, standard
/// streams and working directory, drop every other descriptor of the zygote's (CRIU
/// refuses to dump a socket to a process outside the tree), then act as `--init` does.
/// The process's exit status.
fn become_init(request: &Start) -> i32 {
    match prepare_init(request) {
        Ok(()) => {}
        Err(message) => {
            eprintln!("{LAUNCHER_NAME}: {message}");
            return CANNOT_START;
        }
    }
    let launch = Launch {
        stage: Stage::Init,
        user: request.user,
        nice: request.nice,
        program: request.program.clone(),
        arguments: request.arguments.clone(),
    };
    taskinit::init(&launch, Some(&request.environment)).unwrap_or_else(|message| {
        eprintln!("{LAUNCHER_NAME}: {message}");
        CANNOT_START
    })
}

#[allow(unsafe_code)]
fn prepare_init(request: &Start) -> Result<(), String> {
    if request.nice > 0 {
        crate::executor::priority::lower(request.nice)
            .map_err(|e| format!("could not lower the task's priority: {e}"))?;
    }
    let streams = [
        open_stream(&request.stdin, false)?,
        open_stream(&request.stdout, true)?,
        open_stream(&request.stderr, true)?,
    ];
    for (target, file) in streams.iter().enumerate() {
        let target = target as RawFd;
        // SAFETY: both are open descriptors; dup2 replaces `target` (the socket, for 0).
        if unsafe { libc::dup2(file.as_raw_fd(), target) } < 0 {
            return Err(format!(
                "could not set up the task's standard streams: {}",
                std::io::Error::last_os_error()
            ));
        }
    }
    drop(streams);
    // SAFETY: closes descriptors 3 and up; nothing in this process uses them from here on
    // (the zygote's `Init` records are never touched again in the child).
    unsafe { libc::syscall(libc::SYS_close_range, 3, u32::MAX, 0) };
    std::env::set_current_dir(&request.work_dir)
        .map_err(|e| format!("could not enter {}: {e}", request.work_dir.display()))
}
