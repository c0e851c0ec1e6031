//! `xgrid-povray scene.pov [POV-Ray options] -o out.png`: a POV-Ray render as one Xgrid job.

use std::process::ExitCode;

fn main() -> ExitCode {
    let status = xgrid_cli::povray::main_with(std::env::args_os().skip(1), &|name| {
        std::env::var(name).ok()
    });
    ExitCode::from(status)
}
