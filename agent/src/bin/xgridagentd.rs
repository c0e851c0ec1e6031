//! `xgridagentd`: the Linux Xgrid agent daemon. Reads the command line, then runs the agent
//! until SIGTERM or SIGINT.

use std::process::ExitCode;

use tokio::signal::unix::{signal, SignalKind};
use xgrid_agent::config::{machine_hostname, parse_args, Command, MANUAL};
use xgrid_agent::Agent;

fn main() -> ExitCode {
    xgrid_protocol::allocator::keep_large_buffers();
    close_inherited_descriptors();
    let config = match parse_args(std::env::args().skip(1), &machine_hostname()) {
        Ok(Command::Help) => {
            print!("{}", MANUAL.help());
            return ExitCode::SUCCESS;
        }
        Ok(Command::Disabled(path)) => {
            eprintln!(
                "xgridagentd: {} says Enabled = NO, so the agent does not start",
                path.display()
            );
            return ExitCode::SUCCESS;
        }
        Ok(Command::Run(config)) => config,
        Err(e) => {
            eprintln!("xgridagentd: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("xgridagentd: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let (mut terminate, mut interrupt) = match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(terminate), Ok(interrupt)) => (terminate, interrupt),
            (Err(e), _) | (_, Err(e)) => {
                eprintln!("xgridagentd: cannot listen for signals: {e}");
                return ExitCode::FAILURE;
            }
        };
        let shutdown = async {
            tokio::select! {
                _ = terminate.recv() => eprintln!("xgridagentd: SIGTERM received"),
                _ = interrupt.recv() => eprintln!("xgridagentd: SIGINT received"),
            }
        };
        match Agent::run(*config, shutdown).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("xgridagentd: {e}");
                ExitCode::FAILURE
            }
        }
    })
}

/// Close every descriptor above stderr that the agent inherited from whoever started it
/// (a shell, a service manager, a test runner): tasks would inherit them too, and CRIU
/// refuses to checkpoint a task holding a file of a mount it cannot see. Runs before any
/// thread or descriptor of the agent's own exists.
fn close_inherited_descriptors() {
    let Ok(entries) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    // Collected first: the directory being read is itself a descriptor.
    let inherited: Vec<i32> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .filter(|fd| *fd > 2)
        .collect();
    for fd in inherited {
        // The listing's own descriptor is already closed by now: EBADF is expected.
        let _ = nix::unistd::close(fd);
    }
}
