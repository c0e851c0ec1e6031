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
//! The same picture is made four ways on this machine's two processors:
//! 1. one POV-Ray process with two threads (`+WT2`), the whole image;
//! 2. `xgrid-povray` through a controller and two agents with one slot each, tasks with one
//!    thread (the tool's default), in about `XGRID_BENCH_POVRAY_TILES` tiles (default 6:
//!    every tile parses the scene and shoots its photons again, 1.5 s of a processor each
//!    for this scene, so few tiles; the last ones handed out are halves);
//! 3. GNU parallel running the same tiles two at a time, one POV-Ray thread each, each in a
//!    session of its own (`setsid`), as the agents run their tasks;
//! 4. as (2), with two threads per task (`+WT2` given to xgrid-povray): the agents' two
//!    tasks then share the two processors, and the last tile left uses both.
//!
//! Each grid run starts a grid of its own and stops it afterwards, so that the processor
//! time of the controller, the agents and their tasks is counted with the run's (read from
//! this process's `cutime` and `cstime` once they are reaped).
//!
//! On a shared machine, mind Linux's autogroup scheduling (`sched_autogroup_enabled`): every
//! session competes for the processors as one group. The agents start each task in its own
//! session, so under outside load the two tiles being rendered get two groups' share, while
//! the single process (both threads in one session) gets one. (2) and (3) compare fairly;
//! against (1), only figures from an otherwise idle machine are fair. The processor
//! seconds are fair under load: they say what each way costs, and wall time x 2 minus them
//! what it left idle.
//!
//! `XGRID_BENCH_POVRAY_ROUNDS` (default 1) repeats the four, starting each round with a
//! different one, and keeps each one's best time. `XGRID_BENCH_POVRAY_WAYS` (default
//! `1234`) picks some of them; (1) always runs, as the yardstick.
//!
//! Printed: wall and processor times, each way's speed relative to (1) (target for the
//! grid: ≥ 0.9), and how many pixels differ from (1) and between the tiled ways. The
//! benchmark scene jitters its area light, which POV-Ray draws from a random sequence
//! running from block to block, so tiles differ from (1) in some pixels (as POV-Ray's own
//! +WT1 and +WT2 renders of it differ); (2) and (3) render the same tiles with the same
//! options and must agree exactly, or the benchmark stops.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use xgrid_cli::povray::options::RenderOptions;
use xgrid_cli::povray::plan::{pieces, Piece};
use xgrid_grid_tests::{binary, scratch_dir, Grid};
use xgrid_image::targa::read_targa;
use xgrid_image::{Image, Rect};

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

/// Processor seconds (user and system) of this process's reaped children so far, from
/// `/proc/self/stat` (fields 16 and 17, in clock ticks of 1/100 s on Linux).
fn children_cpu() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The command name (field 2) may hold spaces; the fields after it are plain.
    let after_name = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // `after_name` starts at field 3.
    let ticks = |field: usize| {
        fields
            .get(field - 3)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(16) + ticks(17)) / 100.0
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
    /// The tiles xgrid-povray cuts, in its order.
    rects: Vec<Rect>,
    work: PathBuf,
}

/// One way's result: wall time, processor seconds, RGB pixels.
struct Run {
    wall: Duration,
    cpu: f64,
    pixels: Vec<u8>,
}

const QUIET: [&str; 5] = ["-D", "-V", "-GR", "-GS", "+FC"];

/// 1. One POV-Ray process with two threads.
fn one_process(setup: &Setup) -> Run {
    let cpu = children_cpu();
    let wall = timed(
        "povray +WT2",
        Command::new(POVRAY)
            .args(&setup.options)
            .args(QUIET)
            .args(["+WT2", "+Osingle.tga", &setup.scene_arg])
            .current_dir(&setup.work),
    );
    Run {
        wall,
        cpu: children_cpu() - cpu,
        pixels: read_image(&setup.work.join("single.tga")).pixels,
    }
}

/// 2 and 4. `xgrid-povray` on a grid of its own with two one-slot agents; `extra` are more
/// POV-Ray options for every task.
fn on_the_grid(setup: &Setup, extra: &[&str]) -> Run {
    let cpu = children_cpu();
    let grid = Grid::start("povray-bench", 2, 1);
    let tile_count = setup.tiles.to_string();
    let mut args: Vec<&str> = vec!["-h", &grid.address, &setup.scene_path];
    args.extend(setup.options.iter().map(String::as_str));
    args.extend(extra);
    args.extend(["-tiles", &tile_count, "-o", "grid.ppm"]);
    let wall = timed(
        "xgrid-povray",
        Command::new(binary("xgrid-povray"))
            .args(&args)
            .current_dir(&setup.work)
            .env_remove("XGRID_CONTROLLER_HOSTNAME")
            .env_remove("XGRID_CONTROLLER_PASSWORD"),
    );
    drop(grid);
    let ppm = std::fs::read(setup.work.join("grid.ppm")).expect("the grid's picture");
    // The tool's PPM header is short; the picture is the last width*height*3 bytes.
    let pixels = ppm
        .get(ppm.len().saturating_sub(setup.size * setup.size * 3)..)
        .unwrap_or_default()
        .to_vec();
    Run {
        wall,
        cpu: children_cpu() - cpu,
        pixels,
    }
}

/// 3. GNU parallel over the tiles xgrid-povray makes, in its order; the assembled picture.
fn gnu_parallel(setup: &Setup) -> Run {
    let mut commands = String::new();
    for (i, r) in setup.rects.iter().enumerate() {
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
    let cpu = children_cpu();
    let wall = timed(
        "parallel",
        Command::new("parallel")
            .args(["-j2", "--arg-file", "tiles.txt"])
            .current_dir(&setup.work),
    );
    let cpu = children_cpu() - cpu;
    let mut assembled = Image::blank(setup.size, setup.size, 3);
    for (i, r) in setup.rects.iter().enumerate() {
        let tile = read_image(&setup.work.join(format!("tile{i}.tga")));
        assembled.copy_rect(&tile, *r).expect("the tile fits");
    }
    Run {
        wall,
        cpu,
        pixels: assembled.pixels,
    }
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
    let tiles = env_number("XGRID_BENCH_POVRAY_TILES", 6);
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
    let render = RenderOptions {
        width: size,
        height: size,
        block_size: BLOCK_SIZE,
        alpha: false,
        frames: None,
    };
    let rects: Vec<Rect> = pieces(&render, Some(tiles))
        .into_iter()
        .filter_map(|piece| match piece {
            Piece::Tile(rect) => Some(rect),
            Piece::Frame(_) => None,
        })
        .collect();
    let setup = Setup {
        scene_arg: format!("+I{}", scene.display()),
        scene_path: scene.to_string_lossy().into_owned(),
        options,
        size,
        tiles,
        work: scratch_dir("povray-bench"),
        rects,
    };
    let shapes: Vec<String> = setup
        .rects
        .iter()
        .map(|r| format!("{}x{}", r.right - r.left, r.bottom - r.top))
        .collect();
    println!(
        "POV-Ray benchmark: {} at {size}x{size}, {} tiles for the grid and GNU parallel \
         (in hand-out order: {}), {rounds} round(s); load average before: {}",
        scene.display(),
        setup.rects.len(),
        shapes.join(" "),
        load_average()
    );
    let names = [
        "one POV-Ray process, +WT2",
        "xgrid-povray, 2 agents x 1 slot",
        "GNU parallel -j2, same tiles",
        "xgrid-povray, same, +WT2 a task",
    ];
    let chosen = std::env::var("XGRID_BENCH_POVRAY_WAYS").unwrap_or_else(|_| "1234".into());
    let ways: Vec<usize> = (0..names.len())
        .filter(|way| *way == 0 || chosen.contains(&(way + 1).to_string()))
        .collect();
    let mut best: [Option<Run>; 4] = Default::default();
    for round in 0..rounds {
        // The machine may be shared: each round starts with a different way, so a burst of
        // outside load does not always land on the same one.
        for way in (0..ways.len()).map(|i| ways[(i + round) % ways.len()]) {
            let run = match way {
                0 => one_process(&setup),
                1 => on_the_grid(&setup, &[]),
                2 => gnu_parallel(&setup),
                _ => on_the_grid(&setup, &["+WT2"]),
            };
            println!(
                "round {}: {:<32} {:>8.2} s wall {:>8.2} s CPU  (load {})",
                round + 1,
                names[way],
                run.wall.as_secs_f64(),
                run.cpu,
                load_average()
            );
            let slot = &mut best[way];
            if slot.as_ref().is_none_or(|b| run.wall < b.wall) {
                *slot = Some(run);
            }
        }
    }
    println!("best of {rounds} round(s):");
    for (name, run) in names.iter().zip(&best) {
        if let Some(run) = run {
            println!(
                "  {name:<32} {:>8.2} s wall {:>8.2} s CPU",
                run.wall.as_secs_f64(),
                run.cpu
            );
        }
    }
    let Some(single) = &best[0] else {
        return;
    };
    let pixels = size * size;
    println!("relative to one process (speed: its wall time over theirs; work: its processor time over theirs):");
    for (name, run) in names.iter().zip(&best).skip(1) {
        if let Some(run) = run {
            println!(
                "  {name:<32} speed {:.3} (target >= 0.9)  work {:.3}  pixels differing {} of {pixels}",
                single.wall.as_secs_f64() / run.wall.as_secs_f64(),
                single.cpu / run.cpu,
                differing(&run.pixels, &single.pixels)
            );
        }
    }
    if let (Some(grid), Some(parallel)) = (&best[1], &best[2]) {
        let grid_vs_parallel = differing(&grid.pixels, &parallel.pixels);
        println!("pixels differing between the grid and GNU parallel: {grid_vs_parallel}");
        assert_eq!(
            grid_vs_parallel, 0,
            "the grid and GNU parallel rendered the same tiles differently"
        );
    }
    let _ = std::fs::remove_dir_all(&setup.work);
}
