//! `xgridcontrollerd`: the Xgrid controller daemon. Reads its settings from the command line,
//! runs a controller until SIGTERM or SIGINT, and reports on standard output the address it
//! listens on (`listening on ADDR:PORT`, then `dashboard on http://ADDR:PORT` when the
//! dashboard's port was 0) so that scripts started with port 0 learn the ports.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use xgrid_controller::{Config, Controller};
use xgrid_protocol::password::read_password_file;

const DEFAULT_DATA_DIR: &str = "/var/lib/xgrid/controller";
/// The dashboard answers on loopback only unless told otherwise.
const DEFAULT_WEB: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 4112);

const USAGE: &str = "\
usage: xgridcontrollerd [options]

Runs an Xgrid controller: clients submit jobs to it, agents run the jobs' tasks.

options:
  --listen ADDR:PORT           address to listen on (default 0.0.0.0:4111; port 0 picks a
                               free port, printed as `listening on ADDR:PORT`)
  --data-dir DIR               directory for the job store, DIR/controller.sqlite
                               (default /var/lib/xgrid/controller; created if missing)
  --client-password PW         password clients must give (default: none needed)
  --client-password-file FILE  read the client password from an Apple-format password
                               file, e.g. /etc/xgrid/controller/client-password
  --agent-password PW          password agents must give (default: none needed)
  --agent-password-file FILE   read the agent password from an Apple-format password
                               file, e.g. /etc/xgrid/controller/agent-password
  --agent-grace SECONDS        after a restart, how long agents that had tasks may take to
                               come back before their tasks go to other agents (default 30)
  --agent-timeout SECONDS      an agent silent this long is taken for lost and its tasks
                               go to other agents (default 300)
  --web ADDR:PORT              address of the web dashboard (default 127.0.0.1:4112,
                               this machine only; port 0 picks a free port, printed as
                               `dashboard on http://ADDR:PORT`). Without a client password
                               anyone who can reach it may submit and control jobs.
  --web off, --no-web          no web dashboard
  --checkpoint-interval SECS   checkpoint each task on a checkpointing agent this often, so
                               it resumes from there if its agent is lost (default 300;
                               0: never)
  --no-balance                 never move running tasks between agents (Xgrid's behaviour:
                               suspend when the owner is back, run again when lost)
  --quiet                      do not log jobs and agents to standard error
  --help                       print this help

SIGTERM or SIGINT stops the controller cleanly; jobs survive in the job store.";

/// What the command line asked for.
#[derive(Debug)]
enum Command {
    Run(Box<Config>),
    Help,
}

fn parse(args: impl IntoIterator<Item = String>) -> Result<Command, String> {
    let mut config = Config::new(DEFAULT_DATA_DIR);
    config.web = Some(DEFAULT_WEB);
    let mut args = args.into_iter();
    while let Some(flag) = args.next() {
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
            "--data-dir" => config.data_dir = PathBuf::from(value),
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
    Ok(Command::Run(Box::new(config)))
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

fn password_file(path: &Path) -> Result<String, String> {
    read_password_file(path).map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    let config = match parse(std::env::args().skip(1)) {
        Ok(Command::Run(config)) => *config,
        Ok(Command::Help) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("xgridcontrollerd: {message}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
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
    match stop_signal().await {
        Ok(name) => controller
            .shared()
            .log(format!("{name} received; shutting down")),
        Err(e) => eprintln!("xgridcontrollerd: cannot wait for signals ({e}); shutting down"),
    }
    controller.shutdown().await;
    ExitCode::SUCCESS
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
    }
}
