//! The agent's settings and the `xgridagentd` command line that fills them.

use std::path::PathBuf;
use std::time::Duration;

use xgrid_protocol::peer::{Address, PeerError};

use crate::discovery::{ControllerLocation, Search};
use crate::owner::OwnerPolicy;

/// Where the daemon keeps its cookie and task directories unless told otherwise.
pub const DEFAULT_DATA_DIR: &str = "/var/lib/xgridagentd";

/// The `--help` text; every flag the parser accepts is listed here.
pub const USAGE: &str = "\
Usage: xgridagentd [--controller HOST[:PORT] | --controller-service NAME] [options]

The Linux Xgrid agent: registers with an Xgrid controller and runs the tasks it sends.

Options:
  --controller HOST[:PORT]  the controller to serve (port 4111 when left out)
  --controller-service NAME serve the controller that Bonjour finds advertised under
                            this service name
                            (without either: the first controller Bonjour finds; the
                            agent looks again whenever it loses its controller)
  --data-dir DIR            where the agent keeps its cookie and task directories
                            (default /var/lib/xgridagentd)
  --name NAME               the agent's name on the grid (default: this machine's hostname)
  --password PW             the password the controller requires of agents (other users
                            can see it in the process list: prefer --password-file)
  --password-file FILE      read that password from a file in Apple's obfuscated format
                            (as /etc/xgrid/agent/controller-password)
  --slots N                 how many tasks may run at once (default: the processor count)
  --task-user USER          run tasks as USER (default: nobody when run as root, else the
                            agent's own user)
  --status-interval SECONDS how often to send an agentStatus notification (default 10)
  --no-pid-namespace        run tasks without a PID namespace of their own

Moving tasks (docs/migration.md):
  --tasks-dir DIR           where task directories go (default DATA/tasks); agents that
                            move tasks between them must use the same path
  --no-checkpoint           do not offer checkpoints to the controller (tasks then restart
                            from scratch when they must leave this agent)
  --evacuation-timeout SECONDS
                            on SIGTERM, how long to wait for the controller to move the
                            running tasks away before cancelling them (default 60; only
                            when checkpoints work here)
  --only-when-idle          report Unavailable while the machine's owner is using it
                            (Apple's OnlyWhenIdle): the controller then moves or suspends
                            the tasks
  --owner-idle SECONDS      input (keyboard, mouse, terminal) more recent than this means
                            the owner is back (default 900)
  --owner-load CORES        cores kept busy by processes other than the grid's that mean the
                            owner is back (default 0.5)
  --owner-devices PATHS     colon-separated input devices or directories of them whose
                            access times show input (default /dev/input:/dev/pts:/dev/tty)
  -h, --help                print this help and exit

Logs go to standard error. SIGTERM or SIGINT cancels running tasks and exits.
";

/// Why the command line was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("unknown option {0:?} (see --help)")]
    UnknownOption(String),
    #[error("{0} needs a value (see --help)")]
    MissingValue(&'static str),
    #[error("give either --controller or --controller-service, not both")]
    TwoControllers,
    #[error("--controller-service must not be empty")]
    EmptyService,
    #[error(transparent)]
    BadController(#[from] PeerError),
    #[error("{flag} must be a whole number from {min} up, not {value:?}")]
    BadNumber {
        flag: &'static str,
        min: u64,
        value: String,
    },
    #[error("give either --password or --password-file, not both")]
    TwoPasswords,
    #[error(transparent)]
    PasswordFile(#[from] xgrid_protocol::password::PasswordFileError),
    #[error("--name must not be empty")]
    EmptyName,
    #[error("--owner-load must be a number of cores, 0 or more, not {0:?}")]
    BadLoad(String),
}

/// Everything the agent needs to run.
#[derive(Clone)]
pub struct AgentConfig {
    /// A configured address, or a Bonjour search (`--controller-service`, or neither flag).
    pub controller: ControllerLocation,
    pub data_dir: PathBuf,
    /// `agentName`, also `XGRID_AGENT_NAME` for tasks.
    pub agent_name: String,
    /// Presented only if the controller asks for authentication.
    pub password: Option<String>,
    /// `maximumTaskCount`; `None`: the processor count.
    pub slots: Option<u32>,
    /// `None`: `nobody` when the agent is root, else the agent's own user.
    pub task_user: Option<String>,
    /// Use a PID namespace per task when the machine allows it.
    pub pid_namespace: bool,
    /// Period of the unprompted `agentStatus` notification.
    pub status_interval: Duration,
    /// Period of the keepalive request (an empty name, answered with InvalidRequest).
    pub keepalive_interval: Duration,
    /// How often running tasks are looked at for new output and state changes.
    pub poll_interval: Duration,
    /// The longest wait between two attempts to reach the controller.
    pub max_reconnect_delay: Duration,
    /// Where task directories go; `None`: `DATA/tasks`.
    pub tasks_dir: Option<PathBuf>,
    /// Offer checkpoints to the controller when CRIU works here.
    pub checkpoint: bool,
    /// On SIGTERM, how long the controller has to move the tasks away.
    pub evacuation_timeout: Duration,
    /// `Some`: report Unavailable while the owner is present (OnlyWhenIdle).
    pub owner: Option<OwnerPolicy>,
}

impl std::fmt::Debug for AgentConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentConfig")
            .field("controller", &self.controller)
            .field("data_dir", &self.data_dir)
            .field("agent_name", &self.agent_name)
            .field("password", &self.password.as_ref().map(|_| "…"))
            .field("slots", &self.slots)
            .field("task_user", &self.task_user)
            .field("pid_namespace", &self.pid_namespace)
            .field("status_interval", &self.status_interval)
            .field("keepalive_interval", &self.keepalive_interval)
            .field("poll_interval", &self.poll_interval)
            .field("max_reconnect_delay", &self.max_reconnect_delay)
            .field("tasks_dir", &self.tasks_dir)
            .field("checkpoint", &self.checkpoint)
            .field("evacuation_timeout", &self.evacuation_timeout)
            .field("owner", &self.owner)
            .finish()
    }
}

impl AgentConfig {
    /// The defaults for everything but the controller (an [`Address`] or a
    /// [`ControllerLocation`]), the data directory and the name.
    pub fn new(
        controller: impl Into<ControllerLocation>,
        data_dir: impl Into<PathBuf>,
        agent_name: &str,
    ) -> AgentConfig {
        AgentConfig {
            controller: controller.into(),
            data_dir: data_dir.into(),
            agent_name: agent_name.to_string(),
            password: None,
            slots: None,
            task_user: None,
            pid_namespace: true,
            status_interval: Duration::from_secs(10),
            keepalive_interval: Duration::from_secs(30),
            // How soon a task's end reaches the controller: with short tasks the slots sit
            // idle for this long, so it bounds throughput (8 slots / 20 ms = 400 tasks/s).
            // A poll reads only what changed in the task files, so it costs little.
            poll_interval: Duration::from_millis(20),
            max_reconnect_delay: Duration::from_secs(5),
            tasks_dir: None,
            checkpoint: true,
            evacuation_timeout: Duration::from_secs(60),
            owner: None,
        }
    }
}

/// What the command line asks for.
#[derive(Debug)]
pub enum Command {
    Run(Box<AgentConfig>),
    Help,
}

/// Read the arguments (without the program name). `hostname` is the default agent name.
/// Values may follow their flag as the next argument or after `=`.
pub fn parse_args<I>(args: I, hostname: &str) -> Result<Command, ConfigError>
where
    I: IntoIterator<Item = String>,
{
    let mut args = args.into_iter();
    let mut controller = None;
    let mut controller_service = None;
    let mut data_dir = PathBuf::from(DEFAULT_DATA_DIR);
    let mut name = None;
    let mut password = None;
    let mut password_file = None;
    let mut slots = None;
    let mut task_user = None;
    let mut status_interval = None;
    let mut pid_namespace = true;
    let mut moving = MovingFlags::default();
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => (flag.to_string(), Some(value)),
            _ => (arg.clone(), None),
        };
        let mut value = |flag: &'static str| -> Result<String, ConfigError> {
            match inline {
                Some(v) => Ok(v.to_string()),
                None => args.next().ok_or(ConfigError::MissingValue(flag)),
            }
        };
        match flag.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "--controller" => controller = Some(value("--controller")?),
            "--controller-service" => controller_service = Some(value("--controller-service")?),
            "--data-dir" => data_dir = PathBuf::from(value("--data-dir")?),
            "--name" => name = Some(value("--name")?),
            "--password" => password = Some(value("--password")?),
            "--password-file" => password_file = Some(PathBuf::from(value("--password-file")?)),
            "--slots" => slots = Some(number("--slots", &value("--slots")?, 1)?),
            "--task-user" => task_user = Some(value("--task-user")?),
            "--status-interval" => {
                status_interval = Some(number(
                    "--status-interval",
                    &value("--status-interval")?,
                    1,
                )?)
            }
            "--no-pid-namespace" if inline.is_none() => pid_namespace = false,
            "--tasks-dir" => moving.tasks_dir = Some(PathBuf::from(value("--tasks-dir")?)),
            "--no-checkpoint" if inline.is_none() => moving.checkpoint = false,
            "--evacuation-timeout" => {
                moving.evacuation = Some(number(
                    "--evacuation-timeout",
                    &value("--evacuation-timeout")?,
                    0,
                )?)
            }
            "--only-when-idle" if inline.is_none() => moving.only_when_idle = true,
            "--owner-idle" => {
                moving.owner_idle = Some(number("--owner-idle", &value("--owner-idle")?, 0)?)
            }
            "--owner-load" => {
                let text = value("--owner-load")?;
                moving.owner_load = Some(
                    text.trim()
                        .parse::<f64>()
                        .ok()
                        .filter(|l| l.is_finite() && *l >= 0.0)
                        .ok_or(ConfigError::BadLoad(text))?,
                )
            }
            "--owner-devices" => moving.owner_devices = Some(value("--owner-devices")?),
            _ => return Err(ConfigError::UnknownOption(arg)),
        }
    }
    let controller = match (controller, controller_service) {
        (Some(_), Some(_)) => return Err(ConfigError::TwoControllers),
        (Some(host), None) => ControllerLocation::Host(Address::parse(&host)?),
        (None, Some(name)) if name.trim().is_empty() => return Err(ConfigError::EmptyService),
        (None, Some(name)) => ControllerLocation::Bonjour(Search::Named(name)),
        (None, None) => ControllerLocation::Bonjour(Search::FirstAvailable),
    };
    let name = name.unwrap_or_else(|| hostname.to_string());
    if name.trim().is_empty() {
        return Err(ConfigError::EmptyName);
    }
    let mut config = AgentConfig::new(controller, data_dir, &name);
    config.password = match (password, password_file) {
        (Some(_), Some(_)) => return Err(ConfigError::TwoPasswords),
        (Some(password), None) => Some(password),
        (None, Some(path)) => Some(xgrid_protocol::password::read_password_file(&path)?),
        (None, None) => None,
    };
    config.slots = slots;
    config.task_user = task_user;
    config.pid_namespace = pid_namespace;
    if let Some(seconds) = status_interval {
        config.status_interval = Duration::from_secs(u64::from(seconds));
    }
    moving.apply(&mut config);
    Ok(Command::Run(Box::new(config)))
}

/// The command line's settings for moving tasks, before they go into the configuration.
#[derive(Debug)]
struct MovingFlags {
    tasks_dir: Option<PathBuf>,
    checkpoint: bool,
    evacuation: Option<u32>,
    only_when_idle: bool,
    owner_idle: Option<u32>,
    owner_load: Option<f64>,
    owner_devices: Option<String>,
}

impl Default for MovingFlags {
    fn default() -> Self {
        MovingFlags {
            tasks_dir: None,
            checkpoint: true,
            evacuation: None,
            only_when_idle: false,
            owner_idle: None,
            owner_load: None,
            owner_devices: None,
        }
    }
}

impl MovingFlags {
    fn apply(self, config: &mut AgentConfig) {
        config.tasks_dir = self.tasks_dir;
        config.checkpoint = self.checkpoint;
        if let Some(seconds) = self.evacuation {
            config.evacuation_timeout = Duration::from_secs(u64::from(seconds));
        }
        if self.only_when_idle {
            let mut policy = OwnerPolicy::default();
            if let Some(seconds) = self.owner_idle {
                policy.input_idle = Duration::from_secs(u64::from(seconds));
            }
            if let Some(load) = self.owner_load {
                policy.foreign_load = load;
            }
            if let Some(devices) = self.owner_devices {
                policy.devices = devices
                    .split(':')
                    .filter(|d| !d.is_empty())
                    .map(PathBuf::from)
                    .collect();
            }
            config.owner = Some(policy);
        }
    }
}

/// This machine's host name (the default agent name and the registration's `hostnames`).
pub fn machine_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_string())
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

fn number(flag: &'static str, value: &str, min: u32) -> Result<u32, ConfigError> {
    value
        .trim()
        .parse::<u32>()
        .ok()
        .filter(|n| *n >= min)
        .ok_or_else(|| ConfigError::BadNumber {
            flag,
            min: u64::from(min),
            value: value.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Command, ConfigError> {
        parse_args(args.iter().map(|s| s.to_string()), "host-a")
    }

    fn run(args: &[&str]) -> AgentConfig {
        match parse(args) {
            Ok(Command::Run(config)) => *config,
            other => panic!("expected a configuration, got {other:?}"),
        }
    }

    #[test]
    fn moving_flags() {
        let config = run(&[
            "--controller",
            "c",
            "--tasks-dir",
            "/srv/tasks",
            "--no-checkpoint",
            "--evacuation-timeout=5",
            "--only-when-idle",
            "--owner-idle",
            "30",
            "--owner-load",
            "1.5",
            "--owner-devices",
            "/dev/input:/tmp/kbd",
        ]);
        assert_eq!(config.tasks_dir, Some(PathBuf::from("/srv/tasks")));
        assert!(!config.checkpoint);
        assert_eq!(config.evacuation_timeout, Duration::from_secs(5));
        let owner = config.owner.expect("owner policy");
        assert_eq!(owner.input_idle, Duration::from_secs(30));
        assert_eq!(owner.foreign_load, 1.5);
        assert_eq!(
            owner.devices,
            [PathBuf::from("/dev/input"), PathBuf::from("/tmp/kbd")]
        );
        let plain = run(&["--controller", "c", "--owner-idle", "30"]);
        assert!(
            plain.owner.is_none(),
            "owner flags alone do not turn the policy on"
        );
        assert!(plain.checkpoint);
        assert!(matches!(
            parse(&["--controller", "c", "--owner-load", "lots"]),
            Err(ConfigError::BadLoad(_))
        ));
    }

    #[test]
    fn defaults() {
        let config = run(&["--controller", "grid.example"]);
        let ControllerLocation::Host(controller) = &config.controller else {
            panic!("--controller names a host: {:?}", config.controller)
        };
        assert_eq!(controller.host, "grid.example");
        assert_eq!(controller.port, 4111);
        assert_eq!(config.agent_name, "host-a");
        assert_eq!(config.data_dir, PathBuf::from(DEFAULT_DATA_DIR));
        assert_eq!(config.slots, None);
        assert_eq!(config.password, None);
        assert!(config.pid_namespace);
        assert_eq!(config.status_interval, Duration::from_secs(10));
    }

    #[test]
    fn every_flag() {
        let config = run(&[
            "--controller=10.0.0.1:5000",
            "--data-dir",
            "/tmp/agent",
            "--name",
            "node7",
            "--password=secret",
            "--slots",
            "3",
            "--task-user",
            "daemon",
            "--status-interval=2",
            "--no-pid-namespace",
        ]);
        assert_eq!(
            config.controller,
            ControllerLocation::Host(Address::parse("10.0.0.1:5000").expect("address"))
        );
        assert_eq!(config.data_dir, PathBuf::from("/tmp/agent"));
        assert_eq!(config.agent_name, "node7");
        assert_eq!(config.password.as_deref(), Some("secret"));
        assert_eq!(config.slots, Some(3));
        assert_eq!(config.task_user.as_deref(), Some("daemon"));
        assert_eq!(config.status_interval, Duration::from_secs(2));
        assert!(!config.pid_namespace);
    }

    #[test]
    fn every_flag_is_in_the_help() {
        for flag in [
            "--controller ",
            "--controller-service",
            "--data-dir",
            "--name",
            "--password ",
            "--password-file",
            "--slots",
            "--task-user",
            "--status-interval",
            "--no-pid-namespace",
            "--help",
        ] {
            assert!(USAGE.contains(flag), "{flag} missing from the help");
        }
        assert!(matches!(parse(&["-h"]), Ok(Command::Help)));
        assert!(matches!(
            parse(&["--controller", "x", "--help"]),
            Ok(Command::Help)
        ));
    }

    #[test]
    fn without_a_controller_bonjour_finds_one() {
        assert_eq!(
            run(&[]).controller,
            ControllerLocation::Bonjour(Search::FirstAvailable)
        );
        assert_eq!(
            run(&["--controller-service=Lab Grid"]).controller,
            ControllerLocation::Bonjour(Search::Named("Lab Grid".into()))
        );
    }

    #[test]
    fn password_file_in_apples_format() {
        let path = std::env::temp_dir().join(format!("xgrid-agent-pw-{}", std::process::id()));
        xgrid_protocol::password::write_password_file(&path, "hunter2").expect("write");
        let config = run(&[
            "--controller",
            "c",
            "--password-file",
            path.to_str().expect("utf8"),
        ]);
        assert_eq!(config.password.as_deref(), Some("hunter2"));
        let both = parse(&[
            "--controller",
            "c",
            "--password",
            "x",
            "--password-file",
            path.to_str().expect("utf8"),
        ]);
        assert!(matches!(both, Err(ConfigError::TwoPasswords)));
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn refusals() {
        assert!(matches!(
            parse(&["--controller", "c", "--controller-service", "lab"]),
            Err(ConfigError::TwoControllers)
        ));
        assert!(matches!(
            parse(&["--controller-service", " "]),
            Err(ConfigError::EmptyService)
        ));
        assert!(matches!(
            parse(&["--controller"]),
            Err(ConfigError::MissingValue("--controller"))
        ));
        assert!(matches!(
            parse(&["--controller", "c", "--slots", "0"]),
            Err(ConfigError::BadNumber {
                flag: "--slots",
                ..
            })
        ));
        assert!(matches!(
            parse(&["--controller", "c", "--slots", "many"]),
            Err(ConfigError::BadNumber { .. })
        ));
        assert!(matches!(
            parse(&["--controller", "c:99999"]),
            Err(ConfigError::BadController(_))
        ));
        assert!(matches!(
            parse(&["--controller", "c", "--bogus"]),
            Err(ConfigError::UnknownOption(_))
        ));
        assert!(matches!(
            parse(&["--controller", "c", "--name", " "]),
            Err(ConfigError::EmptyName)
        ));
    }
}
