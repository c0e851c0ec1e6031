//! `xgrid`: Apple's Xgrid command-line client, for Linux (in progress).

fn main() {
    eprintln!("xgrid: not yet implemented");
    std::process::exit(1);
}
