//! How long a moved task is frozen: from the moment its dump starts at the source until it
//! runs again at the destination. Measured for a POV-Ray render through the agent's own path
//! (dump, pack, unpack, restore) beside bare `criu dump` + `criu restore` of the same kind
//! of render, and for a process holding 30 MB, with pre-copy when the kernel allows it.
//! Source and destination are this one machine, so the stream goes through memory and the
//! source task is ended before its directory is recreated. Needs root, CRIU and POV-Ray.
//!
//! `cargo bench -p xgrid-agent --bench freeze` prints the figures.

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use xgrid_agent::checkpoint::{Checkpointer, DumpStats, Unpacker};
use xgrid_agent::executor::{Executor, ExecutorConfig, Task};
use xgrid_protocol::messages::TaskSubmission;

const CHESS: &str = "/usr/share/doc/povray/examples/advanced/chess2.pov";
const ROUNDS: usize = 3;

/// The figures of one move through the agent's path.
#[derive(Debug, Default, Clone, Copy)]
struct Move {
    dump: Duration,
    pack: Duration,
    end_source: Duration,
    unpack: Duration,
    restore: Duration,
    frozen: Duration,
    stream_bytes: u64,
    stats: DumpStats,
}

fn main() {
    if let Err(reason) = run() {
        println!("freeze: skipped: {reason}");
    }
}

fn run() -> Result<(), String> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    if !status
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"))
    {
        return Err("needs root".into());
    }
    let checkpointer = Checkpointer::probe();
    if let Some(reason) = checkpointer.unavailable_reason() {
        return Err(reason.to_string());
    }
    let criu = find("criu").ok_or("criu not found")?;
    let scratch = std::env::temp_dir().join(format!("xgrid-freeze-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch).map_err(|e| e.to_string())?;
    std::fs::set_permissions(&scratch, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| e.to_string())?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let result = runtime.block_on(bench(&checkpointer, &criu, &scratch));
    let _ = std::fs::remove_dir_all(&scratch);
    result
}

async fn bench(checkpointer: &Checkpointer, criu: &Path, scratch: &Path) -> Result<(), String> {
    let mut config = ExecutorConfig::new(scratch.join("agent"), "freeze-bench", 2, 2000);
    // CRIU cannot dump an unprivileged namespace init (see the checkpoint module).
    config.task_user = Some("root".into());
    let executor = Executor::new(config).map_err(|e| e.to_string())?;
    let capabilities = checkpointer.capabilities().ok_or("no criu")?;
    println!(
        "freeze: CRIU {}, pre-copy {}",
        capabilities.version,
        if capabilities.pre_copy {
            "available"
        } else {
            "unavailable (no soft-dirty tracking)"
        }
    );

    if Path::new("/usr/bin/povray").exists() && Path::new(CHESS).exists() {
        let render = povray_submission();
        let mut ours = Vec::new();
        let mut bare = Vec::new();
        for round in 0..ROUNDS {
            let mut task = start(&executor, &format!("ours-{round}"), &render).await?;
            tokio::time::sleep(Duration::from_secs(2)).await;
            let dir = scratch.join(format!("ckpt-ours-{round}"));
            let (figures, mut restored) = move_task(checkpointer, &mut task, &dir, false).await?;
            let _ = restored.kill();
            let _ = restored.wait().await;
            ours.push(figures);

            let mut task = start(&executor, &format!("bare-{round}"), &render).await?;
            tokio::time::sleep(Duration::from_secs(2)).await;
            bare.push(
                bare_criu(criu, &mut task, &scratch.join(format!("ckpt-bare-{round}"))).await?,
            );
        }
        report_povray(&ours, &bare);
    } else {
        println!("freeze: POV-Ray or {CHESS} missing: render figures skipped");
    }

    // A process holding 30 MB it has written to.
    let big = TaskSubmission {
        command: "/usr/bin/perl".into(),
        arguments: vec![
            "-e".into(),
            "my $n = 30 << 20; my $m = 'x' x $n; while (1) { select(undef, undef, undef, 0.05) }"
                .into(),
        ],
        ..TaskSubmission::default()
    };
    for pre_copy in [false, true] {
        if pre_copy && !capabilities.pre_copy {
            println!(
                "freeze: 30 MB with pre-copy: not measured, this kernel has no soft-dirty tracking"
            );
            continue;
        }
        let mut frozen = Vec::new();
        for round in 0..ROUNDS {
            let name = format!("big-{pre_copy}-{round}");
            let mut task = start(&executor, &name, &big).await?;
            tokio::time::sleep(Duration::from_millis(500)).await;
            let dir = scratch.join(format!("ckpt-{name}"));
            let (figures, mut restored) =
                move_task(checkpointer, &mut task, &dir, pre_copy).await?;
            let _ = restored.kill();
            let _ = restored.wait().await;
            frozen.push(figures);
        }
        let label = if pre_copy {
            "with one pre-copy round"
        } else {
            "without pre-copy"
        };
        println!(
            "freeze: 30 MB process {label}: frozen {} (dump {}, {} pages written, stream {:.1} MB)",
            ms(median(frozen.iter().map(|m| m.frozen))),
            ms(median(frozen.iter().map(|m| m.dump))),
            frozen.first().map_or(0, |m| m.stats.pages_written),
            frozen.first().map_or(0, |m| m.stream_bytes) as f64 / 1e6,
        );
    }
    Ok(())
}

fn povray_submission() -> TaskSubmission {
    TaskSubmission {
        command: "/usr/bin/povray".into(),
        arguments: [
            &format!("+I{CHESS}"),
            "+W320",
            "+H240",
            "+WT4",
            "-D",
            "+FP",
            "+Orender.ppm",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
        ..TaskSubmission::default()
    }
}

async fn start(
    executor: &Executor,
    task_ref: &str,
    submission: &TaskSubmission,
) -> Result<Task, String> {
    let mut task = executor
        .prepare(task_ref, submission)
        .map_err(|e| e.to_string())?;
    task.start().await.map_err(|e| e.to_string())?;
    task.leader_pid().ok_or("the task did not start")?;
    Ok(task)
}

/// Move a task through the agent's path; the frozen time runs from the dump's start until
/// the restored task runs.
async fn move_task(
    checkpointer: &Checkpointer,
    task: &mut Task,
    dir: &Path,
    pre_copy: bool,
) -> Result<(Move, xgrid_agent::checkpoint::RestoredTask), String> {
    let leader = task.leader_pid().ok_or("task not running")?;
    let source = dir.join("source");
    if pre_copy {
        checkpointer
            .pre_dump(leader, &source)
            .await
            .map_err(|e| e.to_string())?;
    }
    let mut figures = Move::default();
    let frozen_from = Instant::now();
    let checkpoint = checkpointer
        .dump(leader, task.task_dir(), &source, true)
        .await
        .map_err(|e| e.to_string())?;
    figures.dump = frozen_from.elapsed();
    figures.stats = checkpoint.stats();

    let t = Instant::now();
    let mut stream = Vec::new();
    checkpoint
        .pack()
        .map_err(|e| e.to_string())?
        .read_to_end(&mut stream)
        .map_err(|e| e.to_string())?;
    figures.pack = t.elapsed();
    figures.stream_bytes = stream.len() as u64;

    // One machine: the source must be gone before its directory is recreated.
    let t = Instant::now();
    task.cancel().map_err(|e| e.to_string())?;
    let _ = task.wait().await;
    std::fs::remove_dir_all(task.task_dir()).map_err(|e| e.to_string())?;
    figures.end_source = t.elapsed();

    let t = Instant::now();
    let mut unpacker = Unpacker::new(&dir.join("destination"));
    for piece in stream.chunks(64 * 1024) {
        unpacker.feed(piece).map_err(|e| e.to_string())?;
    }
    unpacker.finish().map_err(|e| e.to_string())?;
    figures.unpack = t.elapsed();

    let t = Instant::now();
    let restored = checkpointer
        .restore(&dir.join("destination"))
        .await
        .map_err(|e| e.to_string())?;
    figures.restore = t.elapsed();
    figures.frozen = frozen_from.elapsed();
    Ok((figures, restored))
}

/// `criu dump` (left stopped, so the source can be ended cleanly) and `criu restore -d`
/// of the task in place; returns the frozen time without the source's teardown.
async fn bare_criu(criu: &Path, task: &mut Task, dir: &Path) -> Result<Duration, String> {
    let leader = task.leader_pid().ok_or("task not running")?;
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let images = dir.to_str().ok_or("path")?;
    let t = Instant::now();
    let dump = tokio::process::Command::new(criu)
        .args([
            "dump",
            "--tree",
            &leader.to_string(),
            "--images-dir",
            images,
        ])
        .args(["--log-file", "dump.log", "--leave-stopped"])
        .stdin(Stdio::null())
        .status()
        .await
        .map_err(|e| e.to_string())?;
    let dump_time = t.elapsed();
    if !dump.success() {
        return Err(format!("bare criu dump failed, see {images}/dump.log"));
    }
    task.cancel().map_err(|e| e.to_string())?;
    let _ = task.wait().await;
    let pidfile = dir.join("restore.pid");
    let t = Instant::now();
    let restore = tokio::process::Command::new(criu)
        .args([
            "restore",
            "--images-dir",
            images,
            "--log-file",
            "restore.log",
        ])
        .arg("--restore-detached")
        .arg("--pidfile")
        .arg(&pidfile)
        .stdin(Stdio::null())
        .status()
        .await
        .map_err(|e| e.to_string())?;
    let restore_time = t.elapsed();
    if !restore.success() {
        return Err(format!(
            "bare criu restore failed, see {images}/restore.log"
        ));
    }
    // The restored render is an orphan now; end it.
    if let Some(pid) = std::fs::read_to_string(&pidfile)
        .ok()
        .and_then(|p| p.trim().parse::<i32>().ok())
    {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    Ok(dump_time + restore_time)
}

fn report_povray(ours: &[Move], bare: &[Duration]) {
    let median_of = |f: fn(&Move) -> Duration| median(ours.iter().map(f));
    let ours_frozen = median_of(|m| m.frozen);
    let bare_frozen = median(bare.iter().copied());
    println!(
        "freeze: POV-Ray chess2 320x240, 4 threads, median of {ROUNDS}: frozen {} through the \
         agent (dump {}, pack {}, end source {}, unpack {}, restore {}; stream {:.1} MB, CRIU \
         frozen {} us) vs {} bare criu dump + restore: ratio {:.2}",
        ms(ours_frozen),
        ms(median_of(|m| m.dump)),
        ms(median_of(|m| m.pack)),
        ms(median_of(|m| m.end_source)),
        ms(median_of(|m| m.unpack)),
        ms(median_of(|m| m.restore)),
        ours.first().map_or(0, |m| m.stream_bytes) as f64 / 1e6,
        ours.first().map_or(0, |m| m.stats.frozen_us),
        ms(bare_frozen),
        ours_frozen.as_secs_f64() / bare_frozen.as_secs_f64().max(1e-9),
    );
}

fn median(values: impl Iterator<Item = Duration>) -> Duration {
    let mut values: Vec<Duration> = values.collect();
    values.sort();
    values.get(values.len() / 2).copied().unwrap_or_default()
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn find(name: &str) -> Option<PathBuf> {
    std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .chain(["/usr/local/sbin", "/usr/sbin"])
        .map(|dir| Path::new(dir).join(name))
        .find(|p| p.is_file())
}
