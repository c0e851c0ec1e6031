//! The controller's settings: where it listens, where its job store lives, which passwords
//! clients and agents must prove, and how long it waits for agents after a restart.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Xgrid's well-known port (xgrid-wire.md §1).
pub const DEFAULT_PORT: u16 = 4111;
/// The file inside the data directory that holds the job store.
pub const STORE_FILE: &str = "controller.sqlite";

/// Everything [`crate::server::Controller::start`] needs.
#[derive(Clone)]
pub struct Config {
    /// Address to listen on; port 0 picks a free port (see `Controller::local_addr`).
    pub listen: SocketAddr,
    /// Directory holding the job store; created when missing.
    pub data_dir: PathBuf,
    /// Password clients must prove with two-way-random; `None`: clients need none.
    pub client_password: Option<String>,
    /// Password agents must prove with two-way-random; `None`: agents need none.
    pub agent_password: Option<String>,
    /// After a restart, how long an agent that had tasks placed on it may take to come back
    /// before those tasks are queued again for other agents.
    pub agent_grace: Duration,
    /// An agent silent this long (no status, keepalive or reply) is taken for lost: its
    /// connection is dropped and its tasks go to other agents.
    pub agent_timeout: Duration,
    /// A scheduling round runs at least this often, even with nothing new to trigger one.
    pub schedule_tick: Duration,
    /// The host name reported in `controllerList`.
    pub hostname: String,
    /// Whether to log to standard error what happens to jobs and agents.
    pub log: bool,
    /// Address of the web dashboard; `None`: no dashboard. Port 0 picks a free port (see
    /// `Controller::web_addr`).
    pub web: Option<SocketAddr>,
    // Bonjour advertisement settings, as Apple's controller plist names them (§7).
    /// `AdvertiseNetService`: announce the controller as `_xgrid._tcp` (Apple's default: yes).
    pub advertise: bool,
    /// `ServiceLabel`: the Bonjour service name; `None`: the host name.
    pub service_name: Option<String>,
    /// `ServiceDomain`: the Bonjour domain; `None`: `local.`.
    pub service_domain: Option<String>,
    /// Migration (docs/migration.md): how often a task on a checkpointing agent is
    /// checkpointed to the controller, so it resumes from there if its agent is lost;
    /// `None` (`--checkpoint-interval 0`): never.
    pub checkpoint_interval: Option<Duration>,
    /// Whether running tasks move between checkpointing agents (owner back, shutdown, load);
    /// false (`--no-balance`) keeps Xgrid's behaviour: suspend, or run again.
    pub balance: bool,
    /// A balancing round runs at least this often.
    pub balance_tick: Duration,
    /// Watchers hear of a job's task counts and progress at most this often, a burst of
    /// changes told as one ([`crate::throttle`]); changes of its status are told at once.
    pub job_change_spacing: Duration,
}

/// Five minutes: a task loses at most that much work with its agent, for a freeze of a few
/// tenths of a second per checkpoint (0.155 s for a 7.4 MB POV-Ray image, under 0.1 % of
/// the interval) and one image per running task kept on the controller's disk.
pub const DEFAULT_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(300);

impl Config {
    /// Defaults: all interfaces on port 4111, no passwords, 30 s grace after a restart,
    /// agents lost after 300 s of silence, 1 s ticks, no dashboard, advertised through
    /// Bonjour under the host name.
    pub fn new(data_dir: impl Into<PathBuf>) -> Config {
        Config {
            listen: SocketAddr::from(([0, 0, 0, 0], DEFAULT_PORT)),
            data_dir: data_dir.into(),
            client_password: None,
            agent_password: None,
            agent_grace: Duration::from_secs(30),
            // Apple's agents report every 60 s by default (HeartbeatUpdateInterval).
            agent_timeout: Duration::from_secs(300),
            schedule_tick: Duration::from_secs(1),
            hostname: local_hostname(),
            log: true,
            web: None,
            advertise: true,
            service_name: None,
            service_domain: None,
            checkpoint_interval: Some(DEFAULT_CHECKPOINT_INTERVAL),
            balance: true,
            balance_tick: Duration::from_secs(5),
            job_change_spacing: crate::throttle::JOB_CHANGE_SPACING,
        }
    }

    /// The name the controller is advertised under.
    pub fn bonjour_name(&self) -> &str {
        self.service_name.as_deref().unwrap_or(&self.hostname)
    }

    /// Where checkpoint streams are kept: `DATA_DIR/checkpoints`.
    pub fn checkpoint_dir(&self) -> PathBuf {
        self.data_dir.join("checkpoints")
    }

    /// The SQLite file of the job store.
    pub fn store_path(&self) -> PathBuf {
        self.data_dir.join(STORE_FILE)
    }
}

// Passwords stay out of debug output, which may end up in logs.
impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("listen", &self.listen)
            .field("data_dir", &self.data_dir)
            .field(
                "client_password",
                &self.client_password.as_ref().map(|_| "…"),
            )
            .field("agent_password", &self.agent_password.as_ref().map(|_| "…"))
            .field("agent_grace", &self.agent_grace)
            .field("agent_timeout", &self.agent_timeout)
            .field("schedule_tick", &self.schedule_tick)
            .field("hostname", &self.hostname)
            .field("log", &self.log)
            .field("web", &self.web)
            .field("advertise", &self.advertise)
            .field("service_name", &self.service_name)
            .field("service_domain", &self.service_domain)
            .field("checkpoint_interval", &self.checkpoint_interval)
            .field("balance", &self.balance)
            .field("balance_tick", &self.balance_tick)
            .finish()
    }
}

/// The machine's host name, from the kernel, else `localhost`.
pub fn local_hostname() -> String {
    let from_kernel = std::fs::read_to_string(Path::new("/proc/sys/kernel/hostname"))
        .ok()
        .map(|name| name.trim().to_string())
        .filter(|name| !name.is_empty());
    from_kernel
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|n| !n.is_empty()))
        .unwrap_or_else(|| "localhost".to_string())
}
