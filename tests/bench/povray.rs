//! POV-Ray benchmark (issue: POV-Ray on the grid). Prints figures; asserts nothing about time.
//! Needs POV-Ray and GNU parallel (scripts/setup installs both, and POV-Ray's sample scenes):
//!
//! ```sh
//! cargo build --release --bins && cargo bench -p xgrid-grid-tests --bench povray
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
//! 3. GNU parallel running the same tiles two at a time, one POV-Ray thread each.
//!
//! Printed: wall times, each way's speed relative to (1) (target for the grid: ≥ 0.9), and
//! how many pixels of (2) and (3) differ from (1) and from each other. The benchmark scene
//! jitters its area light, which POV-Ray draws from a random sequence running from block to
//! block, so tiles differ from (1) in some pixels (as POV-Ray's own +WT1 and +WT2 renders
//! of it differ); (2) and (3) render the same tiles and must agree exactly.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use xgrid_cli::povray::image::{read_targa, Image};
use xgrid_cli::povray::options::RenderOptions;
use xgrid_cli::povray::plan::{spread, tile_rects};
use xgrid_grid_tests::{binary, scratch_dir, Grid};

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

fn main() {
    if !Path::new(POVRAY).exists() || !tool_present("parallel") {
        eprintln!("povray benchmark: skipped, it needs {POVRAY} and GNU parallel (scripts/setup)");
        return;
    }
    let size = env_number("XGRID_BENCH_POVRAY_SIZE", 256);
    let tiles = env_number("XGRID_BENCH_POVRAY_TILES", 8);
    let (scene, options, size): (PathBuf, Vec<String>, usize) = if Path::new(BENCHMARK_SCENE)
        .exists()
    {
        let mut options: Vec<String> = BENCHMARK_OPTIONS.iter().map(|s| s.to_string()).collect();
        options.push(format!("+BS{BLOCK_SIZE}"));
        (PathBuf::from(BENCHMARK_SCENE), options, size)
    } else {
        let scene = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenes/still.pov");
        let options = vec!["+A0.3".to_string(), format!("+BS{BLOCK_SIZE}")];
        (scene, options, size * 4)
    };
    let mut options = options;
    options.extend([format!("+W{size}"), format!("+H{size}")]);
    let scene_arg = format!("+I{}", scene.display());
    let quiet = ["-D", "-V", "-GR", "-GS", "+FC"];
    let work = scratch_dir("povray-bench");
    println!(
        "POV-Ray benchmark: {} at {size}x{size}, {tiles} tiles for the grid and GNU parallel; load average before: {}",
        scene.display(),
        load_average()
    );

    // 1. One process, two threads.
    let single = timed(
        "povray +WT2",
        Command::new(POVRAY)
            .args(&options)
            .args(quiet)
            .args(["+WT2", "+Osingle.tga", &scene_arg])
            .current_dir(&work),
    );
    let reference = read_image(&work.join("single.tga"));
    println!(
        "one POV-Ray process, +WT2:        {:>8.2} s",
        single.as_secs_f64()
    );

    // 2. The grid: a controller and two agents with one slot each.
    let grid = Grid::start("povray-bench", 2, 1);
    let scene_path = scene.to_string_lossy().into_owned();
    let mut args: Vec<&str> = vec!["-h", &grid.address, &scene_path];
    args.extend(options.iter().map(String::as_str));
    let tile_count = tiles.to_string();
    args.extend(["-tiles", &tile_count, "-o", "grid.ppm"]);
    let on_grid = timed(
        "xgrid-povray",
        Command::new(binary("xgrid-povray"))
            .args(&args)
            .current_dir(&work)
            .env_remove("XGRID_CONTROLLER_HOSTNAME")
            .env_remove("XGRID_CONTROLLER_PASSWORD"),
    );
    drop(grid);
    let grid_ppm = std::fs::read(work.join("grid.ppm")).expect("the grid's picture");
    // Our PPM header is short and fixed; the picture is the last width*height*3 bytes.
    let grid_pixels = grid_ppm
        .get(grid_ppm.len().saturating_sub(size * size * 3)..)
        .unwrap_or_default()
        .to_vec();
    println!(
        "xgrid-povray, 2 agents x 1 slot:  {:>8.2} s",
        on_grid.as_secs_f64()
    );

    // 3. GNU parallel over the same tiles, in the same order.
    let render = RenderOptions {
        width: size,
        height: size,
        block_size: BLOCK_SIZE,
        alpha: false,
        frames: None,
    };
    let rects = spread(&tile_rects(&render, tiles));
    let mut commands = String::new();
    for (i, r) in rects.iter().enumerate() {
        commands.push_str(&format!(
            "{POVRAY} {} {} +WT1 +Otile{i}.tga +SR{} +ER{} +SC{} +EC{} {scene_arg}\n",
            options.join(" "),
            quiet.join(" "),
            r.top + 1,
            r.bottom,
            r.left + 1,
            r.right
        ));
    }
    std::fs::write(work.join("tiles.txt"), commands).expect("write the command list");
    let parallel = timed(
        "parallel",
        Command::new("parallel")
            .args(["-j2", "--arg-file", "tiles.txt"])
            .current_dir(&work),
    );
    let mut assembled = Image::blank(size, size, 3);
    for (i, r) in rects.iter().enumerate() {
        let tile = read_image(&work.join(format!("tile{i}.tga")));
        assembled.copy_rect(&tile, *r).expect("the tile fits");
    }
    println!(
        "GNU parallel -j2, {} tiles:         {:>8.2} s",
        rects.len(),
        parallel.as_secs_f64()
    );

    let ratio = |d: Duration| single.as_secs_f64() / d.as_secs_f64();
    println!(
        "speed relative to one process: grid {:.3} (target >= 0.9), GNU parallel {:.3}",
        ratio(on_grid),
        ratio(parallel)
    );
    let differing =
        |a: &[u8], b: &[u8]| a.chunks(3).zip(b.chunks(3)).filter(|(x, y)| x != y).count();
    println!(
        "pixels differing from one process: grid {}, GNU parallel {} (of {}); grid from GNU parallel: {}",
        differing(&grid_pixels, &reference.pixels),
        differing(&assembled.pixels, &reference.pixels),
        size * size,
        differing(&grid_pixels, &assembled.pixels)
    );
    println!("load average after: {}", load_average());
    let _ = std::fs::remove_dir_all(&work);
}
