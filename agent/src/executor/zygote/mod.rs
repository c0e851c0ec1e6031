//! The agent's side of its zygote: one `xgridtaskinit --zygote` process, started on the
//! first task that needs a PID namespace, that forks each such task's init on request
//! ([`server`] says why and how). [`Zygote::launch`] sends a [`wire::Start`] and gives back
//! a [`Child`], which stands for the init as a `tokio::process::Child` would: its pid, its
//! exit status (which the zygote reaps and reports), a kill.
//!
//! If the zygote ends (killed from outside), its inits die of their parent-death signal; the
//! tasks are reported killed (SIGKILL) and the next launch starts a new zygote.

pub mod server;
pub mod wire;

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};

use nix::sys::signal::Signal;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{oneshot, Notify};

use super::procs;
use wire::{Report, Start};

/// Starts task inits through a zygote process; one per executor.
#[derive(Debug)]
pub(crate) struct Zygote {
    launcher: PathBuf,
    current: Mutex<Option<Arc<Connection>>>,
    /// Woken whenever an init ends (see [`Zygote::ended`]).
    ended: Arc<Notify>,
}

/// A running zygote: the process, the request side of its socket, and what the reader of
/// its reports shares with the launches.
#[derive(Debug)]
struct Connection {
    pid: i32,
    /// Killed (and reaped by tokio) when the connection is dropped.
    _process: tokio::process::Child,
    requests: tokio::sync::Mutex<OwnedWriteHalf>,
    shared: Arc<Mutex<Shared>>,
}

#[derive(Debug, Default)]
struct Shared {
    next_id: u64,
    /// Launches waiting for their `Started` or `Refused`.
    starting: HashMap<u64, oneshot::Sender<Result<Started, String>>>,
    /// Started inits waiting for their `Ended`.
    running: HashMap<i32, oneshot::Sender<i32>>,
    /// The zygote is gone: no more launches through it.
    closed: bool,
}

#[derive(Debug)]
struct Started {
    pid: i32,
    namespace: String,
    ended: oneshot::Receiver<i32>,
}

fn lock(shared: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    // A panic while holding it leaves plain maps, still usable.
    shared
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Zygote {
    /// Nothing runs until the first launch.
    pub fn new(launcher: PathBuf) -> Zygote {
        Zygote {
            launcher,
            current: Mutex::new(None),
            ended: Arc::new(Notify::new()),
        }
    }

    /// Start the init a request describes (its `id` is filled in here); the error is the
    /// message the task fails with. Call it from the agent's runtime thread, as for any
    /// task start: the zygote, when started here, dies with that thread.
    pub async fn launch(&self, mut request: Start) -> Result<Child, String> {
        let connection = self.connection()?;
        let (reply, replied) = oneshot::channel();
        {
            let mut shared = lock(&connection.shared);
            if shared.closed {
                return Err("the task launcher's zygote ended".into());
            }
            request.id = shared.next_id;
            shared.next_id += 1;
            shared.starting.insert(request.id, reply);
        }
        let sent = connection
            .requests
            .lock()
            .await
            .write_all(&request.encode())
            .await;
        if let Err(e) = sent {
            lock(&connection.shared).starting.remove(&request.id);
            return Err(format!("could not reach the task launcher's zygote: {e}"));
        }
        let started = replied.await.map_err(|_| {
            "the task launcher's zygote ended before the task started".to_string()
        })??;
        Ok(Child {
            pid: started.pid,
            namespace: started.namespace,
            zygote: connection.pid,
            ended: started.ended,
            status: None,
        })
    }

    /// Woken when an init ends (or the zygote does), as SIGCHLD would tell the agent of its
    /// own children: the inits are the zygote's. A wake-up with nobody waiting is kept for
    /// the next wait.
    pub fn ended(&self) -> Arc<Notify> {
        Arc::clone(&self.ended)
    }

    /// The running zygote, started first if there is none or it ended.
    fn connection(&self) -> Result<Arc<Connection>, String> {
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(connection) = current.as_ref() {
            if !lock(&connection.shared).closed {
                return Ok(Arc::clone(connection));
            }
        }
        let connection = Arc::new(self.start()?);
        *current = Some(Arc::clone(&connection));
        Ok(connection)
    }

    fn start(&self) -> Result<Connection, String> {
        let (ours, theirs) = std::os::unix::net::UnixStream::pair()
            .map_err(|e| format!("could not make a socket for the task launcher: {e}"))?;
        let process = tokio::process::Command::new(&self.launcher)
            .arg("--zygote")
            .stdin(Stdio::from(OwnedFd::from(theirs)))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("could not start {}: {e}", self.launcher.display()))?;
        let pid = process
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .ok_or("the task launcher's zygote ended at once")?;
        ours.set_nonblocking(true)
            .map_err(|e| format!("could not set up the task launcher's socket: {e}"))?;
        let (reports, requests) = tokio::net::UnixStream::from_std(ours)
            .map_err(|e| format!("could not set up the task launcher's socket: {e}"))?
            .into_split();
        let shared = Arc::new(Mutex::new(Shared::default()));
        tokio::spawn(read_reports(
            reports,
            Arc::clone(&shared),
            Arc::clone(&self.ended),
        ));
        Ok(Connection {
            pid,
            _process: process,
            requests: tokio::sync::Mutex::new(requests),
            shared,
        })
    }
}

/// Marks the zygote gone when the reader stops for any reason (end of file, an error, or
/// its runtime shutting down), failing whatever still waits on it.
struct CloseOnDrop(Arc<Mutex<Shared>>, Arc<Notify>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        let mut shared = lock(&self.0);
        shared.closed = true;
        shared.starting.clear();
        shared.running.clear();
        self.1.notify_one();
    }
}

/// Hands each report to whoever waits for it, until the zygote's socket closes.
async fn read_reports(mut reports: OwnedReadHalf, shared: Arc<Mutex<Shared>>, ended: Arc<Notify>) {
    let _close = CloseOnDrop(Arc::clone(&shared), Arc::clone(&ended));
    let mut body = Vec::new();
    loop {
        let mut head = [0; 4];
        if reports.read_exact(&mut head).await.is_err() {
            return;
        }
        let Some(len) = wire::frame_length(head) else {
            return;
        };
        body.resize(len, 0);
        if reports.read_exact(&mut body).await.is_err() {
            return;
        }
        let Some(report) = Report::decode(&body) else {
            return;
        };
        let mut shared = lock(&shared);
        match report {
            Report::Started { id, pid, namespace } => {
                let (tell, ended) = oneshot::channel();
                shared.running.insert(pid, tell);
                let started = Started {
                    pid,
                    namespace,
                    ended,
                };
                let waiting = shared.starting.remove(&id);
                if waiting.is_none_or(|w| w.send(Ok(started)).is_err()) {
                    // Nobody will own this task (its launch was given up): end it now; its
                    // pid is still the zygote's unreaped child.
                    let _ = procs::send(pid, Signal::SIGKILL);
                }
            }
            Report::Refused { id, message } => {
                if let Some(waiting) = shared.starting.remove(&id) {
                    let _ = waiting.send(Err(message));
                }
            }
            Report::Ended { pid, status } => {
                if let Some(waiting) = shared.running.remove(&pid) {
                    let _ = waiting.send(status);
                }
                ended.notify_one();
            }
        }
    }
}

/// A task's init started by the zygote: what the executor needs of it.
#[derive(Debug)]
pub(crate) struct Child {
    pid: i32,
    /// Its PID namespace as `/proc/PID/ns/pid` names it (empty if the zygote could not
    /// read it: the init ended at once).
    namespace: String,
    zygote: i32,
    ended: oneshot::Receiver<i32>,
    status: Option<ExitStatus>,
}

/// How an init whose zygote is gone ended: its parent-death signal killed it.
fn killed() -> ExitStatus {
    ExitStatus::from_raw(libc::SIGKILL)
}

impl Child {
    /// The init's pid, whether or not it has ended.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// The init's pid until its exit is known (as `tokio::process::Child::id`).
    pub fn id(&self) -> Option<i32> {
        self.status.is_none().then_some(self.pid)
    }

    pub fn namespace(&self) -> Option<&str> {
        (!self.namespace.is_empty()).then_some(self.namespace.as_str())
    }

    pub async fn wait(&mut self) -> ExitStatus {
        if let Some(status) = self.status {
            return status;
        }
        let status = (&mut self.ended)
            .await
            .map_or_else(|_| killed(), ExitStatus::from_raw);
        self.status = Some(status);
        status
    }

    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = match self.ended.try_recv() {
                Ok(raw) => Some(ExitStatus::from_raw(raw)),
                Err(oneshot::error::TryRecvError::Empty) => None,
                Err(oneshot::error::TryRecvError::Closed) => Some(killed()),
            };
        }
        self.status
    }

    /// Whether the pid still names this init: not reported ended, still the zygote's
    /// child and still in its namespace (a reaped pid the kernel gave to another process
    /// fails one or the other).
    pub fn alive(&self) -> bool {
        self.status.is_none()
            && procs::parent_of(self.pid) == Some(self.zygote)
            && procs::pid_namespace(self.pid).as_deref() == self.namespace()
    }

    /// SIGKILL the init (and with it its namespace), if it still runs.
    pub fn start_kill(&mut self) {
        if self.alive() {
            let _ = procs::send(self.pid, Signal::SIGKILL);
        }
    }
}
