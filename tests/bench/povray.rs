//! POV-Ray benchmark (issue: POV-Ray on the grid). Prints figures; asserts nothing about time.
//! Needs POV-Ray and GNU parallel (scripts/setup installs both, and POV-Ray's sample scenes):
//!
//! ```sh
//! cargo build --release --bins && cargo bench -p xgrid-grid-tests --bench povray
//! # or with debug binaries (POV-Ray's own time dominates, so the figures hardly change):
//! cargo build --bins && cargo test -p xgrid-grid-tests --bench povray
//! ```
//!
//! The scene is POV-Ray's own benchmark scene (`benchmark.pov` from `povray-examples`) with
//! the quality settings of its `benchmark.ini`, at `XGRID_BENCH_POVRAY_SIZE` pixels square
//! (default 256, about a minute with two threads on an idle two-core machine). Without that
//! package it falls back to the test scene `tests/scenes/still.pov`, at 4x the size.
//! The same picture is made three ways on this machine:
//! 1. one POV-Ray process with two threads (`+WT2`), the whole image;
//! 2. `xgrid-povray` through a controller and two agents with one slot each, in
//!    `XGRID_BENCH_POVRAY_TILES` tiles (default 8: every tile parses the scene and shoots its
//!    photons again, about a second of work each for this scene);
//! 3. GNU parallel running the same tiles two at a time, one POV-Ray thread each, each in a
//!    session of its own (`setsid`), as the agents run their tasks.
//!
//! On a shared machine, mind Linux's autogroup scheduling (`sched_autogroup_enabled`): every
//! session competes for the processors as one group. The agents start each task in its own
//! session, so under outside load the two tiles being rendered get two groups' share, while
//! the single process (both threads in one session) gets one. (2) and (3) compare fairly;
//! against (1), only figures from an otherwise idle machine are fair.
//!
//! `XGRID_BENCH_POVRAY_ROUNDS` (default 1) repeats the three, starting each round with a
//! different one, and keeps each one's best time.
//!
//! Printed: wall times, each way's speed relative to (1) (target for the grid: ≥ 0.9), and
//! how many pixels of (2) and (3) differ from (1) and from each other. The benchmark scene
//! jitters its area light, which POV-Ray draws from a random sequence running from block to
//! block, so tiles differ from (1) in some pixels (as POV-Ray's own +WT1 and +WT2 renders
//! of it differ); (2) and (3) render the same tiles and must agree exactly.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use xgrid_cli::povray::options::RenderOptions;
use xgrid_cli::povray::plan::{spread, tile_rects};
use xgrid_grid_tests::{binary, scratch_dir, Grid};
use xgrid_image::targa::read_targa;
use xgrid_image::Image;

const POVRAY: &str = "/usr/bin/povray";
const BENCHMARK_SCENE: &str = "/usr/share/povray-3.7/scenes/advanced/benchmark/benchmark.pov";
/// The rendering settings of POV-Ray's `benchmark.ini` that differ from the defaults.
const BENCHMARK_OPTIONS: &[&str] = &[
    "+A0.3",
    "+AM1",
    "+R3",
    "+J0.3",
    "+Q9",
    "Antialias_Gamma=2.5",
    "Bounding_Threshold=3",
];
const BLOCK_SIZE: usize = 16;

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn tool_present(path: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {path}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

fn timed(what: &str, command: &mut Command) -> Duration {
    let start = Instant::now();
    let output = command.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    let elapsed = start.elapsed();
    assert!(
        output.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    elapsed
}

fn read_image(path: &Path) -> Image {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    read_targa(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// What every way of rendering needs to know.
struct Setup {
    scene_arg: String,
    scene_path: String,
    options: Vec<String>,
    size: usize,
    tiles: usize,
    work: PathBuf,
}

const QUIET: [&str; 5] = ["-D", "-V", "-GR", "-GS", "+FC"];

/// 1. One POV-Ray process with two threads; its picture.
fn one_process(setup: &Setup) -> (Duration, Vec<u8>) {
    let elapsed = timed(
        "povray +WT2",
        Command::new(POVRAY)
            .args(&setup.options)
            .args(QUIET)
            .args(["+WT2", "+Osingle.tga", &setup.scene_arg])
            .current_dir(&setup.work),
    );
    (elapsed, read_image(&setup.work.join("single.tga")).pixels)
}

/// 2. `xgrid-povray` on the grid; its picture.
fn on_the_grid(setup: &Setup, grid: &Grid) -> (Duration, Vec<u8>) {
    let tile_count = setup.tiles.to_string();
    let mut args: Vec<&str> = vec!["-h", &grid.address, &setup.scene_path];
    args.extend(setup.options.iter().map(String::as_str));
    args.extend(["-tiles", &tile_count, "-o", "grid.ppm"]);
    let elapsed = timed(
        "xgrid-povray",
        Command::new(binary("xgrid-povray"))
            .args(&args)
            .current_dir(&setup.work)
            .env_remove("XGRID_CONTROLLER_HOSTNAME")
            .env_remove("XGRID_CONTROLLER_PASSWORD"),
    );
    let ppm = std::fs::read(setup.work.join("grid.ppm")).expect("the grid's picture");
    // The tool's PPM header is short; the picture is the last width*height*3 bytes.
    let pixels = ppm
        .get(ppm.len().saturating_sub(setup.size * setup.size * 3)..)
        .unwrap_or_default()
        .to_vec();
    (elapsed, pixels)
}

/// 3. GNU parallel over the tiles xgrid-povray makes, in its order; the assembled picture.
fn gnu_parallel(setup: &Setup) -> (Duration, Vec<u8>) {
    let render = RenderOptions {
        width: setup.size,
        height: setup.size,
        block_size: BLOCK_SIZE,
        alpha: false,
        frames: None,
    };
    let rects = spread(&tile_rects(&render, setup.tiles));
    let mut commands = String::new();
    for (i, r) in rects.iter().enumerate() {
        commands.push_str(&format!(
            "setsid -w {POVRAY} {} {} +WT1 +Otile{i}.tga +SR{} +ER{} +SC{} +EC{} {}\n",
            setup.options.join(" "),
            QUIET.join(" "),
            r.top + 1,
            r.bottom,
            r.left + 1,
            r.right,
            setup.scene_arg
        ));
    }
    std::fs::write(setup.work.join("tiles.txt"), commands).expect("write the command list");
    let elapsed = timed(
        "parallel",
        Command::new("parallel")
            .args(["-j2", "--arg-file", "tiles.txt"])
            .current_dir(&setup.work),
    );
    let mut assembled = Image::blank(setup.size, setup.size, 3);
    for (i, r) in rects.iter().enumerate() {
        let tile = read_image(&setup.work.join(format!("tile{i}.tga")));
        assembled.copy_rect(&tile, *r).expect("the tile fits");
    }
    (elapsed, assembled.pixels)
}

fn differing(a: &[u8], b: &[u8]) -> usize {
    if a.len() != b.len() {
        return a.len().max(b.len()) / 3;
    }
    a.chunks(3).zip(b.chunks(3)).filter(|(x, y)| x != y).count()
}

fn main() {
    if !Path::new(POVRAY).exists() || !tool_present("parallel") {
        eprintln!("povray benchmark: skipped, it needs {POVRAY} and GNU parallel (scripts/setup)");
        return;
    }
    let size = env_number("XGRID_BENCH_POVRAY_SIZE", 256);
    let tiles = env_number("XGRID_BENCH_POVRAY_TILES", 8);
    let rounds = env_number("XGRID_BENCH_POVRAY_ROUNDS", 1).max(1);
    let (scene, mut options, size) = if Path::new(BENCHMARK_SCENE).exists() {
        let options: Vec<String> = BENCHMARK_OPTIONS.iter().map(|s| s.to_string()).collect();
        (PathBuf::from(BENCHMARK_SCENE), options, size)
    } else {
        let scene = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenes/still.pov");
        (scene, vec!["+A0.3".to_string()], size * 4)
    };
    options.extend([
        format!("+BS{BLOCK_SIZE}"),
        format!("+W{size}"),
        format!("+H{size}"),
    ]);
    let setup = Setup {
        scene_arg: format!("+I{}", scene.display()),
        scene_path: scene.to_string_lossy().into_owned(),
        options,
        size,
        tiles,
        work: scratch_dir("povray-bench"),
    };
    println!(
        "POV-Ray benchmark: {} at {size}x{size}, {tiles} tiles for the grid and GNU parallel, \
         {rounds} round(s); load average before: {}",
        scene.display(),
        load_average()
    );
    let grid = Grid::start("povray-bench", 2, 1);
    let mut best = [Duration::MAX; 3];
    let mut pictures: [Vec<u8>; 3] = Default::default();
    let names = [
        "one POV-Ray process, +WT2",
        "xgrid-povray, 2 agents x 1 slot",
        "GNU parallel -j2, same tiles",
    ];
    for round in 0..rounds {
        // The machine may be shared: each round starts with a different way, so a burst of
        // outside load does not always land on the same one.
        for way in (0..3).map(|i| (i + round) % 3) {
            let (elapsed, picture) = match way {
                0 => one_process(&setup),
                1 => on_the_grid(&setup, &grid),
                _ => gnu_parallel(&setup),
            };
            println!(
                "round {}: {:<32} {:>8.2} s  (load {})",
                round + 1,
                names[way],
                elapsed.as_secs_f64(),
                load_average()
            );
            best[way] = best[way].min(elapsed);
            pictures[way] = picture;
        }
    }
    drop(grid);
    println!("best of {rounds} round(s):");
    for (name, time) in names.iter().zip(best) {
        println!("  {name:<32} {:>8.2} s", time.as_secs_f64());
    }
    let ratio = |d: Duration| best[0].as_secs_f64() / d.as_secs_f64();
    println!(
        "speed relative to one process: grid {:.3} (target >= 0.9), GNU parallel {:.3}",
        ratio(best[1]),
        ratio(best[2])
    );
    println!(
        "pixels differing from one process: grid {}, GNU parallel {} (of {}); grid from GNU parallel: {}",
        differing(&pictures[1], &pictures[0]),
        differing(&pictures[2], &pictures[0]),
        size * size,
        differing(&pictures[1], &pictures[2])
    );
    let _ = std::fs::remove_dir_all(&setup.work);
}
