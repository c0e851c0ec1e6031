//! The `xgrid` command-line client for Linux, with Apple's options and output
//! (xgrid-wire.md §6). The modules are public so that other client tools can reuse the
//! connection ([`client`]), the job building ([`submission`]) and the printing ([`output`]).

pub mod args;
pub mod client;
pub mod commands;
pub mod error;
pub mod output;
pub mod povray;
pub mod progress;
pub mod submission;

#[cfg(test)]
mod test_support;

use std::ffi::OsString;

use args::{Parsed, UsageError};
use client::ConnectionSettings;
use error::CliError;

/// Run `xgrid` with `args` (without the program name), reading environment variables
/// through `env`. Prints any failure as `xgrid: <message>` and returns the exit status.
pub fn main_with(
    args: impl IntoIterator<Item = OsString>,
    env: &dyn Fn(&str) -> Option<String>,
) -> u8 {
    match run(args, env) {
        Ok(status) => status,
        Err(e) => {
            eprintln!("xgrid: {e}");
            e.exit_code()
        }
    }
}

/// Run `xgrid`; `Ok` carries the exit status of a command that ran (for `-job run`, the
/// task's own status).
pub fn run(
    args: impl IntoIterator<Item = OsString>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<u8, CliError> {
    let words = args
        .into_iter()
        .map(|a| {
            a.into_string()
                .map_err(|a| UsageError::NotUtf8(a.to_string_lossy().into_owned()))
        })
        .collect::<Result<Vec<String>, UsageError>>()?;
    let invocation = match args::parse(&words)? {
        Parsed::Help => {
            output::StreamSink::Stdout.write(args::MANUAL.help().as_bytes())?;
            return Ok(0);
        }
        Parsed::Version => {
            let version = format!("xgrid {}\n", env!("CARGO_PKG_VERSION"));
            output::StreamSink::Stdout.write(version.as_bytes())?;
            return Ok(0);
        }
        Parsed::Invocation(invocation) => invocation,
    };
    let settings = ConnectionSettings::resolve(&invocation.connection, env)?;
    let cwd = std::env::current_dir().map_err(|source| CliError::System {
        what: "find the current directory",
        source,
    })?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| CliError::System {
            what: "start the async runtime",
            source,
        })?;
    runtime.block_on(commands::execute(&invocation, &settings, &cwd))
}
