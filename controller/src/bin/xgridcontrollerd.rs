//! `xgridcontrollerd`: the Xgrid controller daemon. Reads its settings from the command line,
//! runs a controller until SIGTERM or SIGINT, and reports on standard output the address it
//! listens on (`listening on ADDR:PORT`, then `dashboard on http://ADDR:PORT` when the
//! dashboard's port was 0) so that scripts started with port 0 learn the ports.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use xgrid_controller::apple_config::AppleControllerConfig;
use xgrid_controller::bonjour::{self, Advertisement};
use xgrid_controller::{Config, Controller};
use xgrid_manual::{Entry, Manual, Section};
use xgrid_protocol::password::read_password_file;

const DEFAULT_DATA_DIR: &str = "/var/lib/xgrid/controller";
/// The dashboard answers on loopback only unless told otherwise.
const DEFAULT_WEB: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 4112);

/// The single source of `--help` and of `man/xgridcontrollerd.8`.
const MANUAL: Manual = Manual {
    name: "xgridcontrollerd",
    section: "8",
    summary: "the Xgrid controller daemon",
    synopsis: &["xgridcontrollerd [options]"],
    description: &[
        "Runs an Xgrid controller: clients (Apple's xgrid tool, Xgrid Admin, our xgrid \
         command) submit jobs to it, agents (Apple's agents on old Macs, xgridagentd on Linux) \
         run the jobs' tasks. Jobs are kept in a SQLite job store and survive restarts.",
        "Settings come from the options below and, with --apple-config, from an old Mac \
         controller's com.apple.xgrid.controller.plist; options given on the command line win \
         over the plist.",
    ],
    sections: &[
        Section {
            title: "options",
            entries: &[
                Entry {
                    term: "--listen ADDR:PORT",
                    text: "address to listen on (default 0.0.0.0:4111; port 0 picks a free \
                           port, printed as `listening on ADDR:PORT`)",
                },
                Entry {
                    term: "--data-dir DIR",
                    text: "directory for the job store, DIR/controller.sqlite (default \
                           /var/lib/xgrid/controller; created if missing)",
                },
                Entry {
                    term: "--apple-config FILE",
                    text: "read Apple's controller preferences (com.apple.xgrid.controller.plist, \
                           XML, binary or old-style) before the other options; password files \
                           it asks for are looked for in controller/ beside FILE, then in \
                           /etc/xgrid/controller/",
                },
                Entry {
                    term: "--client-password PW",
                    text: "password clients must give (default: none needed)",
                },
                Entry {
                    term: "--client-password-file FILE",
                    text: "read the client password from an Apple-format password file, \
                           e.g. /etc/xgrid/controller/client-password",
                },
                Entry {
                    term: "--agent-password PW",
                    text: "password agents must give (default: none needed)",
                },
                Entry {
                    term: "--agent-password-file FILE",
                    text: "read the agent password from an Apple-format password file, \
                           e.g. /etc/xgrid/controller/agent-password",
                },
                Entry {
                    term: "--agent-grace SECONDS",
                    text: "after a restart, how long agents that had tasks may take to come \
                           back before their tasks go to other agents (default 30)",
                },
                Entry {
                    term: "--agent-timeout SECONDS",
                    text: "an agent silent this long is taken for lost and its tasks go to \
                           other agents (default 300)",
                },
                Entry {
                    term: "--web ADDR:PORT",
                    text: "address of the web dashboard (default 127.0.0.1:4112, this machine \
                           only; port 0 picks a free port, printed as `dashboard on \
                           http://ADDR:PORT`). Without a client password anyone who can reach \
                           it may submit and control jobs.",
                },
                Entry {
                    term: "--web off, --no-web",
                    text: "no web dashboard",
                },
                Entry {
                    term: "--service-name NAME",
                    text: "the Bonjour service name agents and `xgrid -h` find the controller \
                           by (default: this machine's host name)",
                },
                Entry {
                    term: "--no-advertise",
                    text: "do not advertise the controller through Bonjour",
                },
                Entry {
                    term: "--advertise",
                    text: "advertise it (the default; never done when listening on loopback, \
                           where no other machine can reach it)",
                },
                Entry {
                    term: "--checkpoint-interval SECONDS",
                    text: "checkpoint each task on a checkpointing agent this often, so it \
                           resumes from there if its agent is lost (default 300; 0: never)",
                },
                Entry {
                    term: "--no-balance",
                    text: "never move running tasks between agents (Xgrid's behaviour: \
                           suspend when the owner is back, run again when lost)",
                },
                Entry {
                    term: "--quiet",
                    text: "do not log jobs and agents to standard error",
                },
                Entry {
                    term: "-h, --help",
                    text: "print this help",
                },
            ],
            notes: &[],
        },
        Section {
            title: "Apple plist keys",
            entries: &[
                Entry {
                    term: "Enabled",
                    text: "NO: the controller does not start (it exits with status 0)",
                },
                Entry {
                    term: "ClientAuthentication",
                    text: "Password or Any: clients must give the password in \
                           controller/client-password; None: no password; Kerberos is refused",
                },
                Entry {
                    term: "AgentAuthentication",
                    text: "the same for agents, with controller/agent-password",
                },
                Entry {
                    term: "ControllerPortnumber",
                    text: "the port to listen on, on every interface",
                },
                Entry {
                    term: "ControllerHostname",
                    text: "the host name the controller reports to clients",
                },
                Entry {
                    term: "HeartbeatUpdateInterval",
                    text: "seconds between agent reports; an agent silent for five of them \
                           is taken for lost",
                },
                Entry {
                    term: "AdvertiseNetService",
                    text: "whether to announce the controller with Bonjour",
                },
                Entry {
                    term: "ServiceLabel, ServiceDomain",
                    text: "the Bonjour service name and domain",
                },
            ],
            notes: &["Other keys are reported once and ignored."],
        },
        Section {
            title: "signals",
            entries: &[Entry {
                term: "SIGTERM, SIGINT",
                text: "stop the controller cleanly; jobs survive in the job store",
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
                    text: "the controller could not start (port in use, job store unreadable)",
                },
                Entry {
                    term: "2",
                    text: "bad command line, or an unusable Apple plist or password file",
                },
            ],
            notes: &[],
        },
    ],
    see_also: &["xgridagentd(8)", "xgrid(1)"],
};

/// What the command line asked for.
#[derive(Debug)]
enum Command {
    Run(Box<Config>),
    Help,
    /// The Apple plist says `Enabled = NO`.
    Disabled(PathBuf),
}

/// Read the command line: defaults, then the Apple plist if one is named, then the flags.
fn parse(args: impl IntoIterator<Item = String>) -> Result<Command, String> {
    let args: Vec<String> = args.into_iter().collect();
    let mut config = Config::new(DEFAULT_DATA_DIR);
    config.web = Some(DEFAULT_WEB);
    // The plist is applied first wherever --apple-config stands, so that every flag wins.
    let apple = match apple_config_path(&args)? {
        Some(path) => {
            let apple = AppleControllerConfig::read(&path).map_err(|e| e.to_string())?;
            if !apple.enabled {
                return Ok(Command::Disabled(path));
            }
            if let Some(warning) = apple.unknown_keys_warning() {
                eprintln!("xgridcontrollerd: {warning}");
            }
            apple.apply(&mut config);
            Some(apple)
        }
        None => None,
    };
    let names = MANUAL.option_names();
    let mut args = args.into_iter();
    while let Some(flag) = args.next() {
        // The manual is the list of options: what it does not name is not accepted.
        if !names.contains(&flag.as_str()) {
            return Err(format!("unknown option {flag} (see --help)"));
        }
        if flag == "--help" || flag == "-h" {
            return Ok(Command::Help);
        }
        if flag == "--quiet" {
            config.log = false;
            continue;
        }
        if flag == "--no-web" {
            config.web = None;
            continue;
        }
        if flag == "--no-balance" {
            config.balance = false;
            continue;
        }
        if flag == "--advertise" || flag == "--no-advertise" {
            config.advertise = flag == "--advertise";
            continue;
        }
        let value = args
            .next()
            .ok_or_else(|| format!("{flag} needs a value (see --help)"))?;
        match flag.as_str() {
            "--listen" => {
                config.listen = value.parse::<SocketAddr>().map_err(|e| {
                    format!("--listen wants ADDR:PORT such as 0.0.0.0:4111, not {value:?}: {e}")
                })?
            }
            "--web" if value == "off" => config.web = None,
            "--web" => {
                config.web = Some(value.parse::<SocketAddr>().map_err(|e| {
                    format!(
                        "--web wants ADDR:PORT such as 127.0.0.1:4112 or `off`, not {value:?}: {e}"
                    )
                })?)
            }
            "--apple-config" => {}
            "--data-dir" => config.data_dir = PathBuf::from(value),
            "--service-name" => config.service_name = Some(non_empty_name(value)?),
            "--client-password" => config.client_password = Some(non_empty(&flag, value)?),
            "--agent-password" => config.agent_password = Some(non_empty(&flag, value)?),
            "--client-password-file" => {
                config.client_password = Some(password_file(Path::new(&value))?)
            }
            "--agent-password-file" => {
                config.agent_password = Some(password_file(Path::new(&value))?)
            }
            "--agent-grace" => {
                let seconds: u64 = value.parse().map_err(|_| {
                    format!("--agent-grace wants a whole number of seconds, not {value:?}")
                })?;
                config.agent_grace = Duration::from_secs(seconds);
            }
            "--agent-timeout" => {
                let seconds: u64 = value.parse().ok().filter(|s| *s > 0).ok_or_else(|| {
                    format!("--agent-timeout wants a positive number of seconds, not {value:?}")
                })?;
                config.agent_timeout = Duration::from_secs(seconds);
            }
            "--checkpoint-interval" => {
                let seconds: u64 = value.parse().map_err(|_| {
                    format!("--checkpoint-interval wants a whole number of seconds (0: never), not {value:?}")
                })?;
                config.checkpoint_interval =
                    Some(Duration::from_secs(seconds)).filter(|i| !i.is_zero());
            }
            _ => return Err(format!("unknown option {flag} (see --help)")),
        }
    }
    // Passwords the flags did not give come from Apple's password files, if the plist
    // asks for them; a file given by a flag makes Apple's file unnecessary.
    if let Some(apple) = apple {
        apple
            .apply_passwords(&mut config)
            .map_err(|e| e.to_string())?;
    }
    Ok(Command::Run(Box::new(config)))
}

/// The file after `--apple-config`, if the flag is given (once at most).
fn apple_config_path(args: &[String]) -> Result<Option<PathBuf>, String> {
    let mut found = None;
    let mut words = args.iter();
    while let Some(word) = words.next() {
        if word == "--help" || word == "-h" {
            return Ok(None);
        }
        if word == "--apple-config" {
            let path = words
                .next()
                .ok_or("--apple-config needs a value (see --help)")?;
            if found.replace(PathBuf::from(path)).is_some() {
                return Err("--apple-config was given more than once".into());
            }
        } else if !matches!(word.as_str(), "--quiet" | "--no-web") {
            // Skip the value of any other flag, so a value that reads `--apple-config`
            // (a password, say) is not taken for the flag.
            words.next();
        }
    }
    Ok(found)
}

fn non_empty(flag: &str, value: String) -> Result<String, String> {
    if value.is_empty() {
        Err(format!(
            "{flag} must not be empty; leave it out to need no password"
        ))
    } else {
        Ok(value)
    }
}

fn non_empty_name(value: String) -> Result<String, String> {
    if value.trim().is_empty() {
        Err("--service-name must not be empty; leave it out to use the host name".into())
    } else {
        Ok(value)
    }
}

fn password_file(path: &Path) -> Result<String, String> {
    read_password_file(path).map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    xgrid_protocol::allocator::keep_large_buffers();
    let config = match parse(std::env::args().skip(1)) {
        Ok(Command::Run(config)) => *config,
        Ok(Command::Help) => {
            print!("{}", MANUAL.help());
            return ExitCode::SUCCESS;
        }
        Ok(Command::Disabled(path)) => {
            eprintln!(
                "xgridcontrollerd: {} says Enabled = NO, so the controller does not start",
                path.display()
            );
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("xgridcontrollerd: {message}");
            return ExitCode::from(2);
        }
    };
    // One thread runs the controller's own work: short steps between messages and store
    // queries, which block nothing (files go through tokio::fs, the store runs on sqlx's
    // threads). With a second worker most of the CPU went into the workers waking and
    // handing work to each other: 0.91 ms of CPU per task of /bin/true with two workers,
    // 0.71 with one, and submit-to-running 4.0 ms at the median against 2.6 (2 cores).
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("xgridcontrollerd: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(config))
}

async fn run(config: Config) -> ExitCode {
    let data_dir = config.data_dir.clone();
    let asked_web_port = config.web.map(|w| w.port());
    let bonjour = config
        .advertise
        .then(|| (config.bonjour_name().to_string(), config.hostname.clone()));
    let controller = match Controller::start(config).await {
        Ok(controller) => controller,
        Err(e) => {
            eprintln!("xgridcontrollerd: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("listening on {}", controller.local_addr());
    if let Some(web) = controller.web_addr() {
        if asked_web_port == Some(0) {
            println!("dashboard on http://{web}");
        }
        controller
            .shared()
            .log(format!("the dashboard is on http://{web}"));
    }
    let _ = std::io::stdout().flush();
    controller.shared().log(format!(
        "serving on {} with the job store in {}",
        controller.local_addr(),
        data_dir.display()
    ));
    let advertisement =
        bonjour.and_then(|(name, hostname)| advertise(&controller, &name, &hostname));
    match stop_signal().await {
        Ok(name) => controller
            .shared()
            .log(format!("{name} received; shutting down")),
        Err(e) => eprintln!("xgridcontrollerd: cannot wait for signals ({e}); shutting down"),
    }
    if let Some(advertisement) = advertisement {
        advertisement.stop().await;
    }
    controller.shutdown().await;
    ExitCode::SUCCESS
}

/// Start the Bonjour advertisement where it makes sense; a failure is logged, not fatal:
/// agents and clients can still be given the controller's address.
fn advertise(controller: &Controller, name: &str, hostname: &str) -> Option<Advertisement> {
    let listen = controller.local_addr();
    if let Err(why) = bonjour::advertisable(listen) {
        controller
            .shared()
            .log(format!("not advertising through Bonjour: {why}"));
        return None;
    }
    match Advertisement::start(name, hostname, listen) {
        Ok(advertisement) => {
            controller.shared().log(format!(
                "advertising {:?} through Bonjour on port {}",
                name,
                listen.port()
            ));
            Some(advertisement)
        }
        Err(e) => {
            eprintln!("xgridcontrollerd: {e}; agents must be given the address");
            None
        }
    }
}

async fn stop_signal() -> std::io::Result<&'static str> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    Ok(tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = interrupt.recv() => "SIGINT",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn reads_every_setting() {
        let parsed = parse(args(&[
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            "/tmp/x",
            "--client-password",
            "c",
            "--agent-password",
            "a",
            "--agent-grace",
            "5",
            "--agent-timeout",
            "90",
            "--quiet",
        ]));
        let Ok(Command::Run(config)) = parsed else {
            panic!("{parsed:?}")
        };
        assert_eq!(
            config.listen,
            "127.0.0.1:0".parse::<SocketAddr>().expect("addr")
        );
        assert_eq!(config.data_dir, PathBuf::from("/tmp/x"));
        assert_eq!(config.client_password.as_deref(), Some("c"));
        assert_eq!(config.agent_password.as_deref(), Some("a"));
        assert_eq!(config.agent_grace, Duration::from_secs(5));
        assert_eq!(config.agent_timeout, Duration::from_secs(90));
        assert!(!config.log);
        assert_eq!(config.web, Some(DEFAULT_WEB));
    }

    #[test]
    fn the_dashboard_is_on_loopback_unless_moved_or_turned_off() {
        let Ok(Command::Run(config)) = parse(Vec::new()) else {
            panic!("no arguments must run with defaults")
        };
        let web = config.web.expect("a dashboard by default");
        assert!(web.ip().is_loopback());
        assert_eq!(web.port(), 4112);
        for off in [&["--web", "off"][..], &["--no-web"][..]] {
            let Ok(Command::Run(config)) = parse(args(off)) else {
                panic!("{off:?} must parse")
            };
            assert_eq!(config.web, None, "{off:?}");
        }
        let Ok(Command::Run(config)) = parse(args(&["--web", "0.0.0.0:8080"])) else {
            panic!("--web ADDR:PORT must parse")
        };
        assert_eq!(config.web, Some(SocketAddr::from(([0, 0, 0, 0], 8080))));
        assert!(parse(args(&["--web", "nowhere"])).is_err());
        assert!(parse(args(&["--web"])).is_err());
    }

    #[test]
    fn migration_settings() {
        let Ok(Command::Run(config)) = parse(Vec::new()) else {
            panic!("no arguments must run with defaults")
        };
        assert!(config.balance);
        assert_eq!(config.checkpoint_interval, Some(Duration::from_secs(300)));
        let Ok(Command::Run(config)) =
            parse(args(&["--checkpoint-interval", "45", "--no-balance"]))
        else {
            panic!("both must parse")
        };
        assert!(!config.balance);
        assert_eq!(config.checkpoint_interval, Some(Duration::from_secs(45)));
        let Ok(Command::Run(config)) = parse(args(&["--checkpoint-interval", "0"])) else {
            panic!("0 must parse")
        };
        assert_eq!(config.checkpoint_interval, None);
        assert!(parse(args(&["--checkpoint-interval", "-1"])).is_err());
        assert!(parse(args(&["--checkpoint-interval", "soon"])).is_err());
    }

    #[test]
    fn defaults_and_mistakes() {
        let Ok(Command::Run(config)) = parse(Vec::new()) else {
            panic!("no arguments must run with defaults")
        };
        assert_eq!(config.listen.port(), 4111);
        assert!(config.client_password.is_none());
        assert!(matches!(parse(args(&["--help"])), Ok(Command::Help)));
        assert!(parse(args(&["--listen"])).is_err());
        assert!(parse(args(&["--listen", "nowhere"])).is_err());
        assert!(parse(args(&["--bogus", "1"])).is_err());
        assert!(parse(args(&["--client-password", ""])).is_err());
        assert!(
            config.advertise,
            "advertised by default, as Apple's AdvertiseNetService"
        );
        assert_eq!(config.service_name, None);
    }

    #[test]
    fn bonjour_flags() {
        let Ok(Command::Run(config)) = parse(args(&["--no-advertise", "--service-name", "Lab"]))
        else {
            panic!("Bonjour flags must parse")
        };
        assert!(!config.advertise);
        assert_eq!(config.bonjour_name(), "Lab");
        let Ok(Command::Run(config)) = parse(args(&["--no-advertise", "--advertise"])) else {
            panic!("--advertise must parse")
        };
        assert!(config.advertise);
        assert_eq!(config.bonjour_name(), config.hostname);
        assert!(parse(args(&["--service-name", " "])).is_err());
        assert!(parse(args(&["--service-name"])).is_err());
        for flag in ["--service-name", "--no-advertise", "--advertise"] {
            assert!(
                MANUAL.option_names().contains(&flag),
                "{flag} missing from the help"
            );
        }
    }

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "xgridcontrollerd-args-{}-{name}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch dir");
        dir
    }

    #[test]
    fn flags_win_over_the_apple_plist() {
        let dir = scratch("override");
        let plist = dir.join("com.apple.xgrid.controller.plist");
        std::fs::write(
            &plist,
            "{ ControllerPortnumber = 4300; ControllerHostname = mac.example; \
             ClientAuthentication = Password; HeartbeatUpdateInterval = 10; }",
        )
        .expect("write plist");
        xgrid_protocol::password::write_password_file(
            &dir.join("controller/client-password"),
            "apple",
        )
        .expect("password file");
        let plist = plist.to_str().expect("utf8");
        let Ok(Command::Run(config)) = parse(args(&["--apple-config", plist])) else {
            panic!("the plist alone must parse")
        };
        assert_eq!(config.listen.port(), 4300);
        assert_eq!(config.hostname, "mac.example");
        assert_eq!(config.client_password.as_deref(), Some("apple"));
        assert_eq!(config.agent_timeout, Duration::from_secs(50));
        // Flags after or before --apple-config override it all the same.
        for order in [
            &[
                "--listen",
                "127.0.0.1:0",
                "--apple-config",
                plist,
                "--client-password",
                "flag",
                "--agent-timeout",
                "7",
            ][..],
            &[
                "--apple-config",
                plist,
                "--listen",
                "127.0.0.1:0",
                "--agent-timeout",
                "7",
                "--client-password",
                "flag",
            ][..],
        ] {
            let Ok(Command::Run(config)) = parse(args(order)) else {
                panic!("{order:?} must parse")
            };
            assert_eq!(config.listen, SocketAddr::from(([127, 0, 0, 1], 0)));
            assert_eq!(config.client_password.as_deref(), Some("flag"));
            assert_eq!(config.agent_timeout, Duration::from_secs(7));
            assert_eq!(config.hostname, "mac.example");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn unusable_apple_plists_are_refused_by_name() {
        let dir = scratch("refused");
        let plist = dir.join("broken.plist");
        std::fs::write(
            &plist,
            "<?xml version=\"1.0\"?><plist><dict><key>Enabled</key>",
        )
        .expect("write");
        let path = plist.to_str().expect("utf8");
        let err = parse(args(&["--apple-config", path])).expect_err("malformed");
        assert!(err.contains(path), "{err}");
        // A password the plist asks for must exist unless a flag gives one.
        std::fs::write(&plist, "{ AgentAuthentication = Password; }").expect("write");
        let err = parse(args(&["--apple-config", path])).expect_err("no password file");
        assert!(err.contains("agent-password"), "{err}");
        assert!(matches!(
            parse(args(&["--apple-config", path, "--agent-password", "x"])),
            Ok(Command::Run(_))
        ));
        std::fs::write(&plist, "{ Enabled = NO; }").expect("write");
        assert!(matches!(
            parse(args(&["--apple-config", path])),
            Ok(Command::Disabled(_))
        ));
        assert!(parse(args(&["--apple-config", path, "--apple-config", path])).is_err());
        assert!(parse(args(&["--apple-config"])).is_err());
        // A password that reads like the flag is a value, not the flag.
        assert!(matches!(
            parse(args(&["--client-password", "--apple-config"])),
            Ok(Command::Run(_))
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn every_option_in_the_help_is_accepted() {
        let help = MANUAL.help();
        let names = MANUAL.option_names();
        assert!(names.len() >= 14, "{names:?}");
        for name in names {
            assert!(help.contains(name));
            let mut line = vec![name.to_string()];
            match parse(line.clone()) {
                Err(e) if e.starts_with("unknown option") => panic!("{name} is not accepted"),
                Err(e) => assert!(e.contains("needs a value"), "{name}: {e}"),
                Ok(_) => {}
            }
            line.push("x".into());
            if let Err(e) = parse(line) {
                assert!(!e.starts_with(&format!("unknown option {name} ")), "{e}");
            }
        }
    }

    #[test]
    fn the_committed_man_page_is_what_the_help_source_renders() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../man/xgridcontrollerd.8");
        if let Err(e) = xgrid_manual::check_committed(&MANUAL, &path) {
            panic!("{e}");
        }
    }
}
