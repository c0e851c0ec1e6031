//! Whole-grid tests of moving running tasks (issue: checkpoint, balancing, evacuation,
//! recovery): the real controller and two real agents with CRIU, each agent in a mount
//! namespace of its own over a shared tasks path (see `Grid::add_moving_agent`). A task is
//! placed on agent `a` while it is alone, then agent `b` joins and something makes `a` give
//! the task up: its owner comes back, it gets SIGTERM, or it dies.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use xgrid_grid_tests::{job_identifier, Grid};

/// Lines the counting task writes, one every ~50 ms: long enough to be caught mid-run.
const COUNT: u32 = 200;

/// Why moving tasks cannot be tested here, if it cannot.
fn cannot_run() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    if !status
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
    {
        return Some("moving tasks needs root (CRIU, mount namespaces)".into());
    }
    let criu = Command::new("criu").arg("check").output();
    match criu {
        Ok(out) if out.status.success() => None,
        Ok(out) => Some(format!(
            "`criu check` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Err(e) => Some(format!(
            "criu cannot run ({e}); scripts/install-criu installs it"
        )),
    }
}

/// The counting task's script: a start line with the time it started (nanoseconds), then
/// the numbers 1 to COUNT, its state kept in a file as it goes.
fn counting_script() -> String {
    format!(
        "echo start $(date +%s%N); i=0; while [ $i -lt {COUNT} ]; do i=$((i+1)); echo $i; \
         echo $i > state; sleep 0.05; done"
    )
}

fn numbers() -> String {
    (1..=COUNT).map(|i| format!("{i}\n")).collect()
}

/// Submit the counting task; the job's identifier.
fn submit_counting(grid: &Grid) -> String {
    let script = counting_script();
    let out = grid.xgrid(&["-job", "submit", "/bin/sh", "-c", &script]);
    assert!(
        out.status.success(),
        "submit failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    job_identifier(&out)
}

/// The job's one task's stdout as the controller holds it now.
fn output(grid: &Grid, job: &str) -> String {
    grid.task_stdout(job)
        .into_values()
        .next()
        .map(|data| String::from_utf8_lossy(&data).into_owned())
        .unwrap_or_default()
}

/// Wait until the task has written `lines` lines.
fn wait_for_lines(grid: &Grid, job: &str, lines: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while output(grid, job).lines().count() < lines {
        assert!(
            Instant::now() < deadline,
            "the task did not get going: {:?}",
            output(grid, job)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn wait_finished(grid: &Grid, job: &str, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let status = grid.job_status(job);
        match status.as_str() {
            "Finished" => return,
            "Failed" | "Canceled" => panic!("job {job} ended {status}: {}", job_log(grid, job)),
            _ => {}
        }
        assert!(
            Instant::now() < deadline,
            "job {job} still {status} after {limit:?}; log:\n{}",
            job_log(grid, job)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn job_log(grid: &Grid, job: &str) -> String {
    let out = grid.xgrid(&["-job", "log", "-id", job]);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Split the counting task's output into its start time and the rest.
fn start_and_numbers(text: &str) -> (u128, String) {
    let (first, rest) = text.split_once('\n').unwrap_or((text, ""));
    let start = first
        .strip_prefix("start ")
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or_else(|| panic!("no start line in {text:?}"));
    (start, rest.to_string())
}

fn now_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

/// An input device for agent `a`'s owner watch: a file whose times say when the owner last
/// touched the machine.
struct Device(PathBuf);

impl Device {
    fn new(grid: &Grid) -> Device {
        let path = grid.dir.join("event0");
        std::fs::write(&path, b"").expect("device file");
        let device = Device(path);
        device.touched(SystemTime::now() - Duration::from_secs(3600));
        device
    }

    fn touched(&self, at: SystemTime) {
        let file = std::fs::File::options()
            .write(true)
            .open(&self.0)
            .expect("open the device file");
        file.set_times(std::fs::FileTimes::new().set_accessed(at).set_modified(at))
            .expect("set the device's times");
    }

    /// `xgridagentd` options that watch this device, with a load threshold no test machine
    /// reaches (the machine is busy with other tests, which is not an owner).
    fn options(&self) -> Vec<String> {
        [
            "--only-when-idle",
            "--owner-idle",
            "5",
            "--owner-load",
            "64",
            "--owner-devices",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain(std::iter::once(self.0.display().to_string()))
        .collect()
    }
}

fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

/// A grid with agent `a` running the counting task and agent `b` idle beside it.
fn grid_with_task_on_a(label: &str, controller: &[&str], a_options: &[&str]) -> (Grid, String) {
    let mut grid = Grid::start_moving(label, controller);
    grid.add_moving_agent("a", 1, a_options);
    grid.wait_for_agents(1);
    let job = submit_counting(&grid);
    wait_for_lines(&grid, &job, 3);
    grid.add_moving_agent("b", 1, &[]);
    grid.wait_for_agents(2);
    (grid, job)
}

#[test]
fn the_owner_coming_back_moves_the_task_and_its_output_is_exact() {
    if let Some(reason) = cannot_run() {
        eprintln!("skipped: {reason}");
        return;
    }
    let mut grid = Grid::start_moving("owner", &["--checkpoint-interval", "0"]);
    let device = Device::new(&grid);
    grid.add_moving_agent("a", 1, &strs(&device.options()));
    grid.wait_for_agents(1);
    let job = submit_counting(&grid);
    wait_for_lines(&grid, &job, 3);
    grid.add_moving_agent("b", 1, &[]);
    grid.wait_for_agents(2);
    wait_for_lines(&grid, &job, 10);

    device.touched(SystemTime::now());
    wait_finished(&grid, &job, Duration::from_secs(90));
    let log = job_log(&grid, &job);
    assert!(
        log.contains("moved from agent") && log.contains("owner returned"),
        "the job log tells of the move:\n{log}"
    );
    let (_, rest) = start_and_numbers(&output(&grid, &job));
    assert_eq!(
        rest,
        numbers(),
        "the moved task wrote exactly an uninterrupted run's output"
    );
}

#[test]
fn sigterm_evacuates_the_agent_before_it_exits() {
    if let Some(reason) = cannot_run() {
        eprintln!("skipped: {reason}");
        return;
    }
    let (mut grid, job) = grid_with_task_on_a("evacuate", &["--checkpoint-interval", "0"], &[]);
    wait_for_lines(&grid, &job, 10);
    grid.signal_agent("a", nix::sys::signal::Signal::SIGTERM);
    let exit = grid.wait_for_agent_exit("a", Duration::from_secs(60));
    assert_eq!(
        exit,
        Some(0),
        "agent a stopped cleanly once its task had left"
    );
    wait_finished(&grid, &job, Duration::from_secs(90));
    let log = job_log(&grid, &job);
    assert!(
        log.contains("moved from agent") && log.contains("agent shutting down"),
        "the job log tells of the evacuation:\n{log}"
    );
    let (_, rest) = start_and_numbers(&output(&grid, &job));
    assert_eq!(
        rest,
        numbers(),
        "the evacuated task finished its count exactly once"
    );
}

/// The states (`/proc/PID/stat`'s letter) of the processes whose command line holds every
/// one of `markers`.
fn process_states(markers: &[&str]) -> Vec<char> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter(|e| {
            std::fs::read(e.path().join("cmdline")).is_ok_and(|c| {
                let line = String::from_utf8_lossy(&c);
                markers.iter().all(|m| line.contains(m))
            })
        })
        .filter_map(|e| {
            let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
            stat.rsplit_once(')')?.1.trim_start().chars().next()
        })
        .collect()
}

#[test]
fn a_controller_killed_mid_move_leaves_the_task_running_exactly_once() {
    if let Some(reason) = cannot_run() {
        eprintln!("skipped: {reason}");
        return;
    }
    let mut grid = Grid::start_moving("crash-mid-move", &["--checkpoint-interval", "0"]);
    let device = Device::new(&grid);
    grid.add_moving_agent("a", 1, &strs(&device.options()));
    grid.wait_for_agents(1);
    // Every copy of the task that runs appends its numbers to one file outside the task
    // directory, which both agents see: a task that ran twice, even for a moment, leaves
    // numbers twice there.
    let witness = grid.dir.join("witness");
    let script = format!(
        "{}; i=0; while [ $i -lt {COUNT} ]; do i=$((i+1)); echo $i; echo $i >> '{}'; \
         sleep 0.05; done",
        "echo start $(date +%s%N)",
        witness.display()
    );
    let out = grid.xgrid(&["-job", "submit", "/bin/sh", "-c", &script]);
    assert!(out.status.success(), "submit failed");
    let job = job_identifier(&out);
    wait_for_lines(&grid, &job, 3);
    grid.add_moving_agent("b", 1, &[]);
    grid.wait_for_agents(2);
    wait_for_lines(&grid, &job, 10);

    // The owner comes back; the controller dies while agent b restores the task (the
    // source holding it frozen), before it can record the move, and comes back on the same
    // store. The restored copy must not run, nor may the source's stay frozen for good.
    device.touched(SystemTime::now());
    let images = grid.dir.join("b").join("checkpoints").display().to_string();
    let deadline = Instant::now() + Duration::from_secs(60);
    while process_states(&["restore", &images]).is_empty() {
        assert!(Instant::now() < deadline, "agent b never restored the task");
        std::thread::sleep(Duration::from_millis(1));
    }
    grid.crash_and_restart_controller();

    wait_finished(&grid, &job, Duration::from_secs(120));
    let witnessed = std::fs::read_to_string(&witness).expect("the witness file");
    assert_eq!(
        witnessed,
        numbers(),
        "the task ran exactly once, never at both ends"
    );
    let (_, rest) = start_and_numbers(&output(&grid, &job));
    assert_eq!(rest, numbers(), "its output is an uninterrupted run's");
}

/// A checkpoint file the controller keeps (complete, not a `.part`).
fn has_checkpoint(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries
            .flatten()
            .any(|e| !e.file_name().to_string_lossy().ends_with(".part"))
    })
}

#[test]
fn a_killed_agents_task_resumes_elsewhere_from_its_last_checkpoint() {
    if let Some(reason) = cannot_run() {
        eprintln!("skipped: {reason}");
        return;
    }
    let (mut grid, job) = grid_with_task_on_a(
        "recover",
        &["--checkpoint-interval", "1", "--no-balance"],
        &[],
    );
    let checkpoints = grid.dir.join("controller").join("checkpoints");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !has_checkpoint(&checkpoints) {
        assert!(
            Instant::now() < deadline,
            "no periodic checkpoint was taken"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    wait_for_lines(&grid, &job, 20);
    let killed_at = now_nanos();
    grid.kill_agent("a");
    wait_finished(&grid, &job, Duration::from_secs(90));
    let (started, rest) = start_and_numbers(&output(&grid, &job));
    assert!(
        started < killed_at,
        "the task kept the start it had before its agent died (a run from scratch would \
         start after {killed_at}, it says {started})"
    );
    assert_eq!(
        rest,
        numbers(),
        "resumed from the checkpoint, the count is exact"
    );
    let log = job_log(&grid, &job);
    assert!(
        log.contains("agent lost"),
        "the job log tells of the recovery:\n{log}"
    );
}

const CHESS: &str = "/usr/share/doc/povray/examples/advanced/chess2.pov";
/// 640×480 takes about 11 s with two threads here: long enough that the move lands
/// mid-render however quickly the grid starts.
const RENDER: [&str; 6] = ["+W640", "+H480", "+WT2", "-D", "+FT", "+Ochess.tga"];

#[test]
fn a_multithreaded_povray_render_moves_and_its_pixels_are_identical() {
    if let Some(reason) = cannot_run() {
        eprintln!("skipped: {reason}");
        return;
    }
    if !Path::new("/usr/bin/povray").exists() || !Path::new(CHESS).exists() {
        eprintln!("skipped: POV-Ray or its examples are missing (scripts/setup installs them)");
        return;
    }
    let mut grid = Grid::start_moving("povray-move", &["--checkpoint-interval", "0"]);
    let device = Device::new(&grid);
    grid.add_moving_agent("a", 1, &strs(&device.options()));
    grid.wait_for_agents(1);
    let input = format!("+I{CHESS}");
    let mut args = vec!["-job", "submit", "/usr/bin/povray", input.as_str()];
    args.extend(RENDER);
    let out = grid.xgrid(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let job = job_identifier(&out);
    grid.add_moving_agent("b", 1, &[]);
    grid.wait_for_agents(2);
    // Well into the render: POV-Ray has parsed the scene (about 1.5 s) and is tracing rows.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(grid.job_status(&job), "Running", "{}", job_log(&grid, &job));
    device.touched(SystemTime::now());
    wait_finished(&grid, &job, Duration::from_secs(300));
    let log = job_log(&grid, &job);
    assert!(log.contains("moved from agent"), "the render moved:\n{log}");

    let results = grid.dir.join("results");
    let out = grid.xgrid(&[
        "-job",
        "results",
        "-id",
        &job,
        "-out",
        &results.display().to_string(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let moved = find_file(&results, "chess.tga").expect("the render's image came back");

    let direct = grid.dir.join("direct");
    std::fs::create_dir_all(&direct).expect("direct dir");
    let status = Command::new("/usr/bin/povray")
        .arg(&input)
        .args(RENDER)
        .current_dir(&direct)
        .output()
        .expect("run povray");
    assert!(status.status.success(), "direct render failed");
    let a = std::fs::read(moved).expect("moved image");
    let b = std::fs::read(direct.join("chess.tga")).expect("direct image");
    assert!(
        targa_pixels(&a) == targa_pixels(&b),
        "the moved render's pixels equal a direct render's"
    );
}

/// The pixels of an uncompressed 640×480 24-bit Targa file (POV-Ray's `+FT`): after the
/// 18-octet header and the image ID, before the extension area, which holds the render's
/// date and so differs between any two renders.
fn targa_pixels(file: &[u8]) -> &[u8] {
    let id_length = usize::from(file.first().copied().unwrap_or(0));
    let start = 18 + id_length;
    file.get(start..start + 640 * 480 * 3)
        .unwrap_or_else(|| panic!("not a whole 640×480 image: {} octets", file.len()))
}

fn find_file(dir: &Path, name: &str) -> Option<PathBuf> {
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        if path.is_dir() {
            if let Some(found) = find_file(&path, name) {
                return Some(found);
            }
        } else if path.file_name().is_some_and(|n| n == name) {
            return Some(path);
        }
    }
    None
}
