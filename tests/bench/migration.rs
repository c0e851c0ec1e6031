//! Migration benchmarks (issue: moving running tasks). Prints figures; asserts nothing about
//! time. Needs root, CRIU, POV-Ray and its example scenes (scripts/setup installs them):
//!
//! ```sh
//! cargo build --release --bins && cargo bench -p xgrid-grid-tests --bench migration
//! ```
//!
//! 1. **Freeze time.** A two-thread POV-Ray render (`chess2.pov`) moves from agent `a` to
//!    agent `b` of a real grid when `a`'s owner comes back; the controller records how long
//!    the task was frozen (from its checkpoint request until it ran at `b`: dump, transfer
//!    through the controller, restore). Beside it, the same kind of render is dumped and
//!    restored with bare `criu dump` + `criu restore` on this machine. Median of
//!    `XGRID_BENCH_MIGRATION_ROUNDS` (default 3; 0 skips this part) each, and their ratio
//!    (target ≤ 1.3).
//! 2. **A heterogeneous grid.** Agent `fast` has a whole core; agent `g3` is held to a quarter
//!    of a core by a cgroup CPU quota (an old G3 beside a new desktop). The same scene, at
//!    800x600 with antialiasing (about a minute of CPU), is cut into
//!    `XGRID_BENCH_MIGRATION_TASKS` (default 3; 0 skips this part) bands, one task each, and rendered with
//!    balancing on and with it off (`--no-balance`, Xgrid's behaviour). The ideal is the total
//!    CPU work (the bands rendered one after another on one core, measured) over the total
//!    capacity (1.25 cores); beside it, the same with each band's run time alone on a core
//!    (POV-Ray's front end idles about half a second a run). `fast` has processor 1 to
//!    itself; `g3`, the controller and this program share processor 0, as if on two machines.
//!    Targets: on ≤ 1.15 × ideal, and on ≥ 1.3 × faster than off.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use xgrid_grid_tests::{job_identifier, scratch_dir, Grid};

const POVRAY: &str = "/usr/bin/povray";
const CHESS: &str = "/usr/share/doc/povray/examples/advanced/chess2.pov";
/// The moved render: about 11 s with two threads here, so the move (3 s in) lands mid-render.
const WIDTH: u32 = 640;
const HEIGHT: u32 = 480;
/// The heterogeneous grid's picture: large and antialiased, so that a band keeps a core
/// busy for many seconds (moves are only worth it for tasks that long).
const BAND_WIDTH: u32 = 800;
const BAND_HEIGHT: u32 = 600;

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    if let Err(reason) = ready() {
        println!("migration: skipped: {reason}");
        return;
    }
    let rounds = env_number("XGRID_BENCH_MIGRATION_ROUNDS", 3);
    if rounds > 0 {
        println!("migration benchmark: chess2.pov at {WIDTH}x{HEIGHT}, {rounds} round(s)");
        freeze(rounds);
    }
    let bands = env_number("XGRID_BENCH_MIGRATION_TASKS", 3);
    if bands > 0 {
        heterogeneous(bands);
    }
}

fn ready() -> Result<(), String> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    if !status
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
    {
        return Err("needs root".into());
    }
    for needed in [POVRAY, CHESS] {
        if !Path::new(needed).exists() {
            return Err(format!("{needed} is missing (scripts/setup installs it)"));
        }
    }
    match Command::new("criu").arg("check").output() {
        Ok(out) if out.status.success() => Ok(()),
        _ => Err("`criu check` fails (scripts/install-criu)".into()),
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Render options: a two-thread render of the whole image into `chess.tga`.
fn render_args() -> Vec<String> {
    vec![
        format!("+I{CHESS}"),
        format!("+W{WIDTH}"),
        format!("+H{HEIGHT}"),
        "+WT2".into(),
        "-D".into(),
        "+FT".into(),
        "+Ochess.tga".into(),
    ]
}

fn touch(path: &Path, at: SystemTime) {
    if let Ok(file) = std::fs::File::options().write(true).open(path) {
        let _ = file.set_times(std::fs::FileTimes::new().set_accessed(at).set_modified(at));
    }
}

fn job_log(grid: &Grid, job: &str) -> String {
    String::from_utf8_lossy(&grid.xgrid(&["-job", "log", "-id", job]).stdout).into_owned()
}

fn wait_finished(grid: &Grid, job: &str, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < limit {
        match grid.job_status(job).as_str() {
            "Finished" => return Some(started.elapsed()),
            "Failed" | "Canceled" => return None,
            _ => std::thread::sleep(Duration::from_millis(100)),
        }
    }
    None
}

/// What the job log says of a move: `frozen N ms, M octets of checkpoint (dump D ms,
/// transfer T ms, restore R ms)`.
struct Frozen {
    ms: f64,
    octets: u64,
    /// Dump, transfer, restore.
    phases: [f64; 3],
}

fn frozen_of(log: &str) -> Option<Frozen> {
    let line = log.lines().find(|l| l.contains("moved from agent"))?;
    let after = line.split("frozen ").nth(1)?;
    let ms: f64 = after.split(' ').next()?.parse().ok()?;
    let octets: u64 = after.split(", ").nth(1)?.split(' ').next()?.parse().ok()?;
    let phase = |name: &str| -> Option<f64> {
        line.split(&format!("{name} "))
            .nth(1)?
            .split(' ')
            .next()?
            .parse()
            .ok()
    };
    Some(Frozen {
        ms,
        octets,
        phases: [phase("dump")?, phase("transfer")?, phase("restore")?],
    })
}

fn freeze(rounds: usize) {
    let mut grid_ms = Vec::new();
    let mut phases: [Vec<f64>; 3] = Default::default();
    let mut bare_ms = Vec::new();
    let mut bare_dump_ms = Vec::new();
    let mut octets = 0;
    for round in 0..rounds {
        match grid_move() {
            Some(moved) => {
                grid_ms.push(moved.ms);
                octets = moved.octets;
                for (all, phase) in phases.iter_mut().zip(moved.phases) {
                    all.push(phase);
                }
            }
            None => println!("  round {round}: the grid's move did not happen"),
        }
        match bare_criu(round) {
            Ok((ms, dump)) => {
                bare_ms.push(ms);
                bare_dump_ms.push(dump);
            }
            Err(e) => println!("  round {round}: bare CRIU failed: {e}"),
        }
    }
    let (grid, bare) = (median(grid_ms.clone()), median(bare_ms.clone()));
    println!(
        "1. freeze time of a moved two-thread render ({} MB of checkpoint)",
        octets / 1_000_000
    );
    println!("   grid (dump, relay through the controller, restore): {grid_ms:?} ms, median {grid:.0} ms");
    let [dump, transfer, restore] = phases.map(median);
    println!("     of which (medians): dump {dump:.0} ms, transfer through the controller {transfer:.0} ms, restore {restore:.0} ms");
    println!("   bare criu dump + criu restore:                       {bare_ms:?} ms, median {bare:.0} ms");
    let bare_dump = median(bare_dump_ms);
    println!(
        "     of which (medians): dump {bare_dump:.0} ms, the rest (criu restore) {:.0} ms",
        bare - bare_dump
    );
    println!("   ratio grid / bare: {:.2} (target <= 1.3)", grid / bare);
}

/// One move of a render through a real grid, as its job log tells it.
fn grid_move() -> Option<Frozen> {
    let mut grid = Grid::start_moving("bench-freeze", &["--checkpoint-interval", "0"]);
    let device = grid.dir.join("event0");
    std::fs::write(&device, b"").ok()?;
    touch(&device, SystemTime::now() - Duration::from_secs(3600));
    let device_arg = device.display().to_string();
    grid.add_moving_agent(
        "a",
        1,
        &[
            "--only-when-idle",
            "--owner-idle",
            "5",
            "--owner-load",
            "64",
            "--owner-devices",
            &device_arg,
        ],
    );
    grid.wait_for_agents(1);
    let args = render_args();
    let mut submit = vec!["-job", "submit", POVRAY];
    submit.extend(args.iter().map(String::as_str));
    let job = job_identifier(&grid.xgrid(&submit));
    grid.add_moving_agent("b", 1, &[]);
    grid.wait_for_agents(2);
    std::thread::sleep(Duration::from_secs(3));
    touch(&device, SystemTime::now());
    wait_finished(&grid, &job, Duration::from_secs(300))?;
    frozen_of(&job_log(&grid, &job))
}

/// The same kind of render, dumped and restored by bare CRIU: milliseconds from the start
/// of `criu dump` until `criu restore -d` returned with the task running again, and of
/// those, the dump's.
fn bare_criu(round: usize) -> Result<(f64, f64), String> {
    let dir = scratch_dir(&format!("bench-bare-{round}"));
    let work = dir.join("work");
    std::fs::create_dir_all(&work).map_err(|e| e.to_string())?;
    let render = render_args().join(" ");
    let script = format!("exec {POVRAY} {render} </dev/null >../stdout 2>../stderr");
    let mut unshare = Command::new("unshare")
        .args([
            "--pid",
            "--fork",
            "--kill-child",
            "--",
            "setsid",
            "sh",
            "-c",
            &script,
        ])
        .current_dir(&work)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| e.to_string())?;
    std::thread::sleep(Duration::from_secs(3));
    let init = children(unshare.id())
        .first()
        .copied()
        .ok_or("no render process")?;
    let images = dir.join("images");
    std::fs::create_dir_all(&images).map_err(|e| e.to_string())?;
    let started = Instant::now();
    let dump = Command::new("criu")
        .args(["dump", "--tree", &init.to_string(), "--images-dir"])
        .arg(&images)
        .args(["--log-file", "dump.log", "--file-locks"])
        .output()
        .map_err(|e| e.to_string())?;
    if !dump.status.success() {
        let _ = unshare.kill();
        return Err(format!(
            "criu dump: {}",
            String::from_utf8_lossy(&dump.stderr)
        ));
    }
    let dumped = started.elapsed().as_secs_f64() * 1000.0;
    let _ = unshare.wait();
    let pidfile = dir.join("restored.pid");
    let restore = Command::new("criu")
        .args(["restore", "--images-dir"])
        .arg(&images)
        .args([
            "--log-file",
            "restore.log",
            "--file-locks",
            "--restore-detached",
            "--pidfile",
        ])
        .arg(&pidfile)
        .output()
        .map_err(|e| e.to_string())?;
    let frozen = started.elapsed().as_secs_f64() * 1000.0;
    if let Some(pid) = std::fs::read_to_string(&pidfile)
        .ok()
        .and_then(|p| p.trim().parse::<i32>().ok())
    {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    if restore.status.success() {
        Ok((frozen, dumped))
    } else {
        Err(format!(
            "criu restore: {}",
            String::from_utf8_lossy(&restore.stderr)
        ))
    }
}

fn children(pid: u32) -> Vec<u32> {
    let path = format!("/proc/{pid}/task/{pid}/children");
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// The povray arguments of band `i` of `bands` (rows, one thread).
fn band_args(i: u32, bands: u32) -> Vec<String> {
    let first = i * BAND_HEIGHT / bands + 1;
    let last = (i + 1) * BAND_HEIGHT / bands;
    vec![
        format!("+I{CHESS}"),
        format!("+W{BAND_WIDTH}"),
        format!("+H{BAND_HEIGHT}"),
        "+A0.3".into(),
        format!("+SR{first}"),
        format!("+ER{last}"),
        "+WT1".into(),
        "-D".into(),
        "+FT".into(),
        format!("+Oband{i}.tga"),
    ]
}

/// CPU seconds of this process's reaped children so far.
fn children_cpu() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<f64> = after
        .split_whitespace()
        .skip(13)
        .take(2)
        .filter_map(|f| f.parse().ok())
        .collect();
    fields.iter().sum::<f64>() / 100.0
}

/// Each band rendered on this machine one after another: its CPU work (seconds of a
/// processor) and its run time alone on an idle core (the CPU work plus the time POV-Ray's
/// front end spends waiting in its message loop, about half a second a run here).
fn band_work(bands: u32) -> Vec<(f64, f64)> {
    let dir = scratch_dir("bench-work");
    let mut work = Vec::new();
    for i in 0..bands {
        let before = children_cpu();
        let started = Instant::now();
        let _ = Command::new(POVRAY)
            .args(band_args(i, bands))
            .current_dir(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        work.push((children_cpu() - before, started.elapsed().as_secs_f64()));
    }
    let _ = std::fs::remove_dir_all(&dir);
    work
}

/// A cgroup (v1 `cpu`, or v2) holding its members to a quarter of a core.
struct QuarterCore(PathBuf);

impl QuarterCore {
    fn create() -> Option<QuarterCore> {
        let name = format!("xgrid-bench-g3-{}", std::process::id());
        let v1 = Path::new("/sys/fs/cgroup/cpu");
        if v1.join("cpu.cfs_quota_us").exists() {
            let dir = v1.join(name);
            std::fs::create_dir_all(&dir).ok()?;
            std::fs::write(dir.join("cpu.cfs_period_us"), "100000").ok()?;
            std::fs::write(dir.join("cpu.cfs_quota_us"), "25000").ok()?;
            return Some(QuarterCore(dir));
        }
        let dir = Path::new("/sys/fs/cgroup").join(name);
        std::fs::create_dir_all(&dir).ok()?;
        std::fs::write(dir.join("cpu.max"), "25000 100000").ok()?;
        Some(QuarterCore(dir))
    }

    /// The shell line that moves the running shell (and what it execs) into the cgroup.
    fn join_line(&self) -> String {
        format!(
            "echo $$ > '{}' || exit 96",
            self.0.join("cgroup.procs").display()
        )
    }
}

impl Drop for QuarterCore {
    fn drop(&mut self) {
        // Its members are gone by now (the grid was dropped first).
        for _ in 0..50 {
            if std::fs::remove_dir(&self.0).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Render the bands on a grid of `fast` and `g3`; the makespan and the job log's lines about
/// its submission and moves.
fn heterogeneous_run(
    bands: u32,
    quarter: &QuarterCore,
    balance: bool,
) -> Option<(f64, Vec<String>)> {
    let args: &[&str] = if balance {
        &["--checkpoint-interval", "0"]
    } else {
        &["--checkpoint-interval", "0", "--no-balance"]
    };
    let mut grid = Grid::start_moving(if balance { "bench-on" } else { "bench-off" }, args);
    // Two machines on one: `fast` has processor 1 to itself; `g3`, the controller and this
    // program share processor 0 (they would otherwise take time from the fast core now and
    // then).
    let pin = |cpu: u32| format!("taskset -cp {cpu} $$ >/dev/null || exit 95");
    grid.add_moving_agent_after("fast", 1, &[], &pin(1));
    grid.add_moving_agent_after(
        "g3",
        1,
        &[],
        &format!("{}\n{}", quarter.join_line(), pin(0)),
    );
    grid.wait_for_agents(2);
    let mut tasks = String::new();
    for i in 0..bands {
        let arguments: Vec<String> = band_args(i, bands)
            .iter()
            .map(|a| format!("\"{a}\""))
            .collect();
        tasks.push_str(&format!(
            "        {i} = {{ command = \"{POVRAY}\"; arguments = ({}); }};\n",
            arguments.join(", ")
        ));
    }
    let batch = format!(
        "(\n  {{\n    name = \"bands\";\n    taskSpecifications = {{\n{tasks}    }};\n  }}\n)\n"
    );
    let file = grid.dir.join("bands.plist");
    std::fs::write(&file, batch).ok()?;
    let out = grid.xgrid(&["-job", "batch", &file.display().to_string()]);
    let job = job_identifier(&out);
    let took = wait_finished(&grid, &job, Duration::from_secs(1800))?;
    Some((took.as_secs_f64(), move_lines(&job_log(&grid, &job))))
}

/// The job log's lines about the submission and the moves, tried or done, each with its
/// date (`xgrid -job log` prints a `date` line before each `message` line), so that a late
/// move shows when it happened and what was tried before it.
fn move_lines(log: &str) -> Vec<String> {
    let mut date = "";
    let mut lines = Vec::new();
    for line in log.lines().map(str::trim) {
        if let Some(value) = line.strip_prefix("date = ") {
            date = value.trim_end_matches(';');
        } else if line.contains("submitted to grid")
            || line.contains("moved from agent")
            || line.contains("could not move")
            || line.contains("checkpointed off")
        {
            lines.push(format!("{date}: {line}"));
        }
    }
    lines
}

fn heterogeneous(bands: usize) {
    let bands = u32::try_from(bands).unwrap_or(4);
    let Some(quarter) = QuarterCore::create() else {
        println!("2. heterogeneous grid: skipped (no cgroup CPU quota can be set here)");
        return;
    };
    let per_band = band_work(bands);
    let work: f64 = per_band.iter().map(|(cpu, _)| cpu).sum();
    let alone: f64 = per_band.iter().map(|(_, wall)| wall).sum();
    let ideal = work / 1.25;
    let ideal_alone = alone / 1.25;
    // This program, and the controller it starts, stay off the fast agent's processor.
    let _ = Command::new("taskset")
        .args(["-a", "-cp", "0", &std::process::id().to_string()])
        .stdout(Stdio::null())
        .status();
    let on = heterogeneous_run(bands, &quarter, true);
    let off = heterogeneous_run(bands, &quarter, false);
    println!(
        "2. heterogeneous grid: {bands} bands, one agent at a full core, one held to 1/4 core"
    );
    let shown: Vec<String> = per_band
        .iter()
        .map(|(cpu, _)| format!("{cpu:.1}"))
        .collect();
    println!(
        "   total CPU work {work:.1} s (bands: {} s); ideal makespan {ideal:.1} s (work / 1.25 cores)",
        shown.join(", ")
    );
    println!(
        "   the bands alone on an idle core take {alone:.1} s in all; by that, the ideal is {ideal_alone:.1} s"
    );
    match (&on, &off) {
        (Some((on, moves)), Some((off, _))) => {
            let (on, off) = (*on, *off);
            println!(
                "   balancing on:  {on:.1} s ({} move(s)), {:.2} x ideal (target <= 1.15)",
                moves
                    .iter()
                    .filter(|l| l.contains("moved from agent"))
                    .count(),
                on / ideal
            );
            println!(
                "                  {:.2} x the ideal by run time alone on a core",
                on / ideal_alone
            );
            for line in moves.iter() {
                println!("     {}", line.trim());
            }
            println!(
                "   balancing off: {off:.1} s (Xgrid's behaviour), {:.2} x ideal",
                off / ideal
            );
            println!("   on is {:.2} x faster than off (target >= 1.3)", off / on);
        }
        _ => println!("   a run did not finish: on {on:?}, off {off:?}"),
    }
}
