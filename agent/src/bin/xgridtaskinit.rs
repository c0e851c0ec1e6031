//! `xgridtaskinit`: starts one task for the agent (see `xgrid_agent::executor::taskinit`).

fn main() {
    std::process::exit(xgrid_agent::executor::taskinit::run(
        std::env::args_os().skip(1),
    ));
}
