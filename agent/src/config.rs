//! The agent's settings and the `xgridagentd` command line that fills them.

use std::path::PathBuf;
use std::time::Duration;

use xgrid_manual::{Entry, Manual, Section};
use xgrid_protocol::peer::{Address, PeerError};
use xgrid_protocol::plist::Value;
use xgrid_protocol::preferences::PreferencesError;

use crate::apple_config::AppleAgentConfig;
use crate::probe::Processors;

use crate::discovery::{ControllerLocation, Search};
use crate::owner::OwnerPolicy;

/// Where the daemon keeps its cookie and task directories unless told otherwise.
pub const DEFAULT_DATA_DIR: &str = "/var/lib/xgridagentd";

/// The single source of `--help` and of `man/xgridagentd.8`; the parser accepts exactly
/// the options named here.
pub const MANUAL: Manual = Manual {
    name: "xgridagentd",
    section: "8",
    summary: "the Linux Xgrid agent daemon",
    synopsis: &[
        "xgridagentd [--controller HOST[:PORT] | --controller-service NAME] [options]",
        "xgridagentd --apple-config FILE [options]",
    ],
    description: &[
        "The Linux Xgrid agent: registers with an Xgrid controller (ours or Apple's) and runs \
         the tasks it sends, each in a fresh working directory as an unprivileged user and, \
         where the machine allows it, in a PID namespace of its own.",
        "Settings come from the options below and, with --apple-config, from an old Mac \
         agent's com.apple.xgrid.agent.plist; options given on the command line win over the \
         plist. Logs go to standard error.",
    ],
    sections: &[
        Section {
            title: "options",
            entries: &[
                Entry {
                    term: "--controller HOST[:PORT]",
                    text: "the controller to serve (port 4111 when left out)",
                },
                Entry {
                    term: "--controller-service NAME",
                    text: "serve the controller that Bonjour finds advertised under this \
                           service name (without either option, nor a controller in the Apple \
                           plist: the first controller Bonjour finds; the agent looks again \
                           whenever it loses its controller)",
                },
                Entry {
                    term: "--apple-config FILE",
                    text: "read Apple's agent preferences (com.apple.xgrid.agent.plist, XML, \
                           binary or old-style); the password file it asks for is looked for \
                           in agent/ beside FILE, then in /etc/xgrid/agent/",
                },
                Entry {
                    term: "--data-dir DIR",
                    text: "where the agent keeps its cookie and task directories (default \
                           /var/lib/xgridagentd)",
                },
                Entry {
                    term: "--name NAME",
                    text: "the agent's name on the grid (default: this machine's hostname)",
                },
                Entry {
                    term: "--password PW",
                    text: "the password the controller requires of agents (other users can \
                           see it in the process list: prefer --password-file)",
                },
                Entry {
                    term: "--password-file FILE",
                    text: "read that password from a file in Apple's obfuscated format (as \
                           /etc/xgrid/agent/controller-password)",
                },
                Entry {
                    term: "--slots N",
                    text: "how many tasks may run at once (default: the processor count)",
                },
                Entry {
                    term: "--task-user USER",
                    text: "run tasks as USER (default: nobody when run as root, else the \
                           agent's own user)",
                },
                Entry {
                    term: "--task-nice N",
                    text: "run tasks at niceness N, 0 to 19, so that the machine's owner and \
                           the grid's daemons come first (default 10; 0: the agent's own)",
                },
                Entry {
                    term: "--status-interval SECONDS",
                    text: "how often to send an agentStatus notification (default 10)",
                },
                Entry {
                    term: "--no-pid-namespace",
                    text: "run tasks without a PID namespace of their own",
                },
                Entry {
                    term: "-h, --help",
                    text: "print this help and exit",
                },
            ],
            notes: &["Values may follow their option as the next argument or after `=`."],
        },
        Section {
            title: "moving tasks (docs/migration.md)",
            entries: &[
                Entry {
                    term: "--tasks-dir DIR",
                    text: "where task directories go (default DATA/tasks); agents that move \
                           tasks between them must use the same path",
                },
                Entry {
                    term: "--no-checkpoint",
                    text: "do not offer checkpoints to the controller (tasks then restart from \
                           scratch when they must leave this agent)",
                },
                Entry {
                    term: "--evacuation-timeout SECONDS",
                    text: "on SIGTERM, how long to wait for the controller to move the running \
                           tasks away before cancelling them (default 60; only when checkpoints \
                           work here)",
                },
                Entry {
                    term: "--only-when-idle",
                    text: "report Unavailable while the machine's owner is using it (Apple's \
                           OnlyWhenIdle): the controller then moves or suspends the tasks",
                },
                Entry {
                    term: "--owner-idle SECONDS",
                    text: "input (keyboard, mouse, terminal) more recent than this means the \
                           owner is back (default 900)",
                },
                Entry {
                    term: "--owner-load CORES",
                    text: "cores kept busy by processes other than the grid's that mean the \
                           owner is back (default 0.5)",
                },
                Entry {
                    term: "--owner-devices PATHS",
                    text: "colon-separated input devices, or directories of them, whose access \
                           times show input (default /dev/input:/dev/pts:/dev/tty)",
                },
            ],
            notes: &[],
        },
        Section {
            title: "Apple plist keys",
            entries: &[
                Entry {
                    term: "Enabled",
                    text: "NO: the agent does not start (it exits with status 0)",
                },
                Entry {
                    term: "ControllerName",
                    text: "the controller's host name (as --controller)",
                },
                Entry {
                    term: "ControllerAuthentication",
                    text: "Password: give the password in agent/controller-password; None: no \
                           password; Kerberos is refused",
                },
                Entry {
                    term: "BindToFirstAvailable",
                    text: "YES: serve the first controller Bonjour finds (as giving no \
                           controller at all)",
                },
                Entry {
                    term: "ResolveNameAsNetService",
                    text: "YES: ControllerName is a Bonjour service name (as \
                           --controller-service)",
                },
                Entry {
                    term: "MaximumTaskCount",
                    text: "as --slots (0: the processor count)",
                },
                Entry {
                    term: "AgentName",
                    text: "as --name",
                },
                Entry {
                    term: "AgentCustom",
                    text: "sent to the controller as agentCustom when the agent registers",
                },
                Entry {
                    term: "ProcessorCount, ProcessorSpeed",
                    text: "the processor count and megahertz of one processor to advertise, \
                           instead of what the machine reports",
                },
                Entry {
                    term: "OnlyWhenIdle",
                    text: "YES: as --only-when-idle",
                },
                Entry {
                    term: "SuspendWhenNotIdle",
                    text: "the controller decides what happens to the tasks of an agent whose \
                           owner is back: it moves them to an idle agent, or suspends them when \
                           none is free",
                },
            ],
            notes: &["Other keys are reported once in the log and ignored."],
        },
        Section {
            title: "signals",
            entries: &[Entry {
                term: "SIGTERM, SIGINT",
                text: "with checkpoints and running tasks: ask the controller to move them \
                       away (up to --evacuation-timeout), then exit; otherwise cancel running \
                       tasks and exit",
            }],
            notes: &[],
        },
        Section {
            title: "exit status",
            entries: &[
                Entry {
                    term: "0",
                    text: "stopped by a signal, or disabled by Enabled = NO",
                },
                Entry {
                    term: "1",
                    text: "the agent could not start (data directory, task isolation)",
                },
                Entry {
                    term: "2",
                    text: "bad command line, or an unusable Apple plist or password file",
                },
            ],
            notes: &[],
        },
    ],
    see_also: &["xgridcontrollerd(8)", "xgrid(1)"],
};

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
    Apple(#[from] PreferencesError),
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
    #[error("--task-nice must be a whole number from 0 to 19, not {0:?}")]
    BadNice(String),
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
    /// The niceness tasks run at (0: the agent's own).
    pub task_nice: u8,
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
    // Settings from Apple's agent plist (xgrid-wire.md §7).
    /// `AgentCustom`: sent as `agentCustom` in the registration.
    pub agent_custom: Option<Value>,
    /// `ProcessorCount`: advertised instead of the probed count.
    pub processor_count: Option<u32>,
    /// `ProcessorSpeed`: megahertz of one processor, advertised instead of the probed speed.
    pub processor_speed_mhz: Option<u32>,
    /// `BindToFirstAvailable`: serve the first controller Bonjour finds (Apple's default: yes).
    pub bind_to_first_available: bool,
    /// `ResolveNameAsNetService`: the controller's name is a Bonjour service name.
    pub resolve_name_as_net_service: bool,
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
            .field("task_nice", &self.task_nice)
            .field("status_interval", &self.status_interval)
            .field("keepalive_interval", &self.keepalive_interval)
            .field("poll_interval", &self.poll_interval)
            .field("max_reconnect_delay", &self.max_reconnect_delay)
            .field("tasks_dir", &self.tasks_dir)
            .field("checkpoint", &self.checkpoint)
            .field("evacuation_timeout", &self.evacuation_timeout)
            .field("owner", &self.owner)
            .field("agent_custom", &self.agent_custom)
            .field("processor_count", &self.processor_count)
            .field("processor_speed_mhz", &self.processor_speed_mhz)
            .field("bind_to_first_available", &self.bind_to_first_available)
            .field(
                "resolve_name_as_net_service",
                &self.resolve_name_as_net_service,
            )
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
            task_nice: crate::executor::DEFAULT_TASK_NICE,
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
            agent_custom: None,
            processor_count: None,
            processor_speed_mhz: None,
            bind_to_first_available: false,
            resolve_name_as_net_service: false,
        }
    }

    /// The processors to advertise: the probed ones, with `ProcessorCount` and
    /// `ProcessorSpeed` from Apple's plist in their place when given.
    pub fn processors(&self, probed: Processors) -> Processors {
        Processors {
            count: self.processor_count.unwrap_or(probed.count),
            mhz_per_core: self.processor_speed_mhz.unwrap_or(probed.mhz_per_core),
        }
    }
}

/// What the command line asks for.
#[derive(Debug)]
pub enum Command {
    Run(Box<AgentConfig>),
    Help,
    /// The Apple plist at this path says `Enabled = NO`.
    Disabled(PathBuf),
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
    let mut task_nice = None;
    let mut moving = MovingFlags::default();
    let mut apple_path = None;
    let names = MANUAL.option_names();
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => (flag.to_string(), Some(value)),
            _ => (arg.clone(), None),
        };
        // The manual is the list of options: what it does not name is not accepted.
        if !names.contains(&flag.as_str()) {
            return Err(ConfigError::UnknownOption(arg));
        }
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
            "--apple-config" => apple_path = Some(PathBuf::from(value("--apple-config")?)),
            "--data-dir" => data_dir = PathBuf::from(value("--data-dir")?),
            "--name" => name = Some(value("--name")?),
            "--password" => password = Some(value("--password")?),
            "--password-file" => password_file = Some(PathBuf::from(value("--password-file")?)),
            "--slots" => slots = Some(number("--slots", &value("--slots")?, 1)?),
            "--task-user" => task_user = Some(value("--task-user")?),
            "--task-nice" => {
                let given = value("--task-nice")?;
                task_nice = Some(
                    crate::executor::priority::parse(given.trim())
                        .ok_or(ConfigError::BadNice(given))?,
                );
            }
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
    let apple = match apple_path {
        Some(path) => {
            let apple = AppleAgentConfig::read(&path)?;
            if !apple.enabled {
                return Ok(Command::Disabled(path));
            }
            for warning in apple.warnings() {
                crate::log(warning);
            }
            Some(apple)
        }
        None => None,
    };
    let controller = match (controller, controller_service, &apple) {
        (Some(_), Some(_), _) => return Err(ConfigError::TwoControllers),
        (Some(host), None, _) => ControllerLocation::Host(Address::parse(&host)?),
        (None, Some(name), _) if name.trim().is_empty() => return Err(ConfigError::EmptyService),
        (None, Some(name), _) => ControllerLocation::Bonjour(Search::Named(name)),
        (None, None, Some(apple)) => apple_controller(apple)?,
        (None, None, None) => ControllerLocation::Bonjour(Search::FirstAvailable),
    };
    let name = name
        .or_else(|| apple.as_ref().and_then(|a| a.agent_name.clone()))
        .unwrap_or_else(|| hostname.to_string());
    if name.trim().is_empty() {
        return Err(ConfigError::EmptyName);
    }
    let mut config = AgentConfig::new(controller, data_dir, &name);
    config.password = match (password, password_file) {
        (Some(_), Some(_)) => return Err(ConfigError::TwoPasswords),
        (Some(password), None) => Some(password),
        (None, Some(path)) => Some(xgrid_protocol::password::read_password_file(&path)?),
        (None, None) => match &apple {
            Some(apple) => apple.password()?,
            None => None,
        },
    };
    config.slots = slots.or_else(|| {
        apple
            .as_ref()
            .and_then(|a| a.maximum_task_count)
            .filter(|n| *n > 0)
    });
    config.task_user = task_user;
    config.pid_namespace = pid_namespace;
    if let Some(nice) = task_nice {
        config.task_nice = nice;
    }
    if let Some(seconds) = status_interval {
        config.status_interval = Duration::from_secs(u64::from(seconds));
    }
    if let Some(apple) = apple {
        config.agent_custom = apple.agent_custom;
        config.processor_count = apple.processor_count;
        config.processor_speed_mhz = apple.processor_speed;
        moving.only_when_idle |= apple.only_when_idle == Some(true);
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

/// The controller an Apple plist names. `BindToFirstAvailable = YES` wins over a
/// `ControllerName`, as in Apple's preference pane, where the two are choices; a name with
/// `ResolveNameAsNetService = YES` is a Bonjour service name.
fn apple_controller(apple: &AppleAgentConfig) -> Result<ControllerLocation, ConfigError> {
    if apple.bind_to_first_available == Some(true) {
        return Ok(ControllerLocation::Bonjour(Search::FirstAvailable));
    }
    match &apple.controller_name {
        Some(name) if apple.resolve_name_as_net_service == Some(true) => {
            Ok(ControllerLocation::Bonjour(Search::Named(name.clone())))
        }
        Some(name) => Ok(ControllerLocation::Host(Address::parse(name)?)),
        None => Ok(ControllerLocation::Bonjour(Search::FirstAvailable)),
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
        assert_eq!(config.task_nice, 10);
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
            "--task-nice",
            "0",
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
        assert_eq!(config.task_nice, 0);
    }

    #[test]
    fn every_option_in_the_help_is_accepted() {
        let help = MANUAL.help();
        let names = MANUAL.option_names();
        assert!(names.len() >= 12, "{names:?}");
        for name in names {
            assert!(help.contains(name), "{name}");
            for line in [vec![name], vec![name, "1"]] {
                let mut line: Vec<&str> = line;
                line.extend(["--controller", "c"]);
                if let Err(ConfigError::UnknownOption(option)) = parse(&line) {
                    assert_ne!(option, name, "{name} is in the help but not accepted");
                }
            }
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
    fn the_committed_man_page_is_what_the_help_source_renders() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../man/xgridagentd.8");
        if let Err(e) = xgrid_manual::check_committed(&MANUAL, &path) {
            panic!("{e}");
        }
    }

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("xgrid-agent-args-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch dir");
        dir
    }

    #[test]
    fn the_apple_plist_alone_configures_the_agent() {
        let dir = scratch("plist");
        let plist = dir.join("com.apple.xgrid.agent.plist");
        std::fs::write(
            &plist,
            "{ ControllerName = \"10.0.0.9\"; ControllerAuthentication = Password; \
             MaximumTaskCount = 3; AgentName = imac; BindToFirstAvailable = NO; \
             ProcessorCount = 2; ProcessorSpeed = 1420; AgentCustom = { room = B12; }; }",
        )
        .expect("write");
        xgrid_protocol::password::write_password_file(
            &dir.join("agent/controller-password"),
            "from-file",
        )
        .expect("password");
        let path = plist.to_str().expect("utf8");
        let config = run(&["--apple-config", path]);
        assert_eq!(
            config.controller,
            ControllerLocation::Host(Address::parse("10.0.0.9:4111").expect("address"))
        );
        assert_eq!(config.password.as_deref(), Some("from-file"));
        assert_eq!(config.slots, Some(3));
        assert_eq!(config.agent_name, "imac");
        let probed = Processors {
            count: 16,
            mhz_per_core: 3000,
        };
        assert_eq!(
            config.processors(probed),
            Processors {
                count: 2,
                mhz_per_core: 1420
            }
        );
        assert!(config.agent_custom.is_some());
        // Flags win over every key.
        let config = run(&[
            "--apple-config",
            path,
            "--controller=grid.example:5000",
            "--password",
            "flag",
            "--slots",
            "1",
            "--name",
            "linux-box",
        ]);
        assert_eq!(
            config.controller,
            ControllerLocation::Host(Address::parse("grid.example:5000").expect("address"))
        );
        assert_eq!(config.password.as_deref(), Some("flag"));
        assert_eq!(config.slots, Some(1));
        assert_eq!(config.agent_name, "linux-box");
        // Without a plist the probed processors stand.
        let bare = run(&["--controller", "c"]);
        assert_eq!(bare.processors(probed), probed);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn apple_plists_that_cannot_be_followed() {
        let dir = scratch("refusals");
        let plist = dir.join("agent.plist");
        let path = plist.to_str().expect("utf8");
        // Bonjour keys first (not refusals: they choose how the controller is found).
        std::fs::write(
            &plist,
            "{ BindToFirstAvailable = YES; ControllerName = c; OnlyWhenIdle = YES; }",
        )
        .expect("write");
        let config = run(&["--apple-config", path]);
        assert_eq!(
            config.controller,
            ControllerLocation::Bonjour(Search::FirstAvailable)
        );
        assert!(
            config.owner.is_some(),
            "OnlyWhenIdle turns the owner watch on"
        );
        // A controller on the command line wins.
        assert!(matches!(
            run(&["--apple-config", path, "--controller", "c"]).controller,
            ControllerLocation::Host(_)
        ));
        std::fs::write(
            &plist,
            "{ ControllerName = Farm; ResolveNameAsNetService = YES; }",
        )
        .expect("write");
        assert_eq!(
            run(&["--apple-config", path]).controller,
            ControllerLocation::Bonjour(Search::Named("Farm".into()))
        );
        std::fs::write(&plist, "{ ControllerName = c; Enabled = NO; }").expect("write");
        assert!(matches!(
            parse(&["--apple-config", path]),
            Ok(Command::Disabled(_))
        ));
        std::fs::write(&plist, "{ ControllerName = c; MaximumTaskCount = lots; }").expect("write");
        let err = parse(&["--apple-config", path]).expect_err("bad number");
        assert!(err.to_string().contains(path), "{err}");
        assert!(err.to_string().contains("MaximumTaskCount"), "{err}");
        std::fs::write(
            &plist,
            [0x62, 0x70, 0x6c, 0x69, 0x73, 0x74, 0x30, 0x30, 1, 2],
        )
        .expect("write");
        let err = parse(&["--apple-config", path]).expect_err("truncated binary plist");
        assert!(err.to_string().contains(path), "{err}");
        std::fs::write(
            &plist,
            "{ ControllerName = c; ControllerAuthentication = Kerberos; }",
        )
        .expect("write");
        assert!(matches!(
            parse(&["--apple-config", path]),
            Err(ConfigError::Apple(PreferencesError::Kerberos { .. }))
        ));
        let _ = std::fs::remove_dir_all(&dir);
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
        for nice in ["20", "-1", "low"] {
            assert!(matches!(
                parse(&["--controller", "c", "--task-nice", nice]),
                Err(ConfigError::BadNice(given)) if given == nice
            ));
        }
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
