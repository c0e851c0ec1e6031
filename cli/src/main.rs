//! `xgrid`: Apple's Xgrid command-line client, for Linux. Everything is in the library.

use std::process::ExitCode;

fn main() -> ExitCode {
    let env = |name: &str| std::env::var(name).ok();
    ExitCode::from(xgrid_cli::main_with(std::env::args_os().skip(1), &env))
}
