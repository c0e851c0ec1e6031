//! Lifecycle benchmark (issue: the whole Xgrid job lifecycle). Prints figures; asserts
//! nothing about time. Needs release binaries and GNU parallel:
//!
//! ```sh
//! cargo build --release --bins && cargo bench -p xgrid-grid-tests --bench lifecycle
//! ```
//!
//! 1. N trivial tasks (`/bin/true`) as one batch through the controller and one local agent
//!    with 8 slots, beside GNU parallel running the same N commands with 8 jobs at a time:
//!    tasks per second for both and their ratio (target ≥ 1,000 tasks/s);
//! 2. submit → running latency, p50 and p99, over single-task jobs submitted one after
//!    another on an idle grid (target p50 ≤ 5 ms);
//! 3. the controller's resident memory with 100,000 finished tasks stored (target ≤ 100 MB).
//!
//! With the throughput it prints the CPU time each task cost the controller, the agent and
//! the task's own processes (the zygote that forks each task's init, the init and the
//! command), so what bounds the rate shows on a loaded machine too.
//!
//! `XGRID_BENCH_TASKS` (default 5000) and `XGRID_BENCH_STORED` (default 100000) scale it.

use std::process::Command;
use std::time::{Duration, Instant};

use xgrid_grid_tests::Grid;
use xgrid_protocol::envelope::MessageType;
use xgrid_protocol::peer::{self, Address, Incoming, Peer, PeerOptions, PeerRole};
use xgrid_protocol::plist::{Dictionary, Value};

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn trivial_job(name: &str, tasks: usize, command: &str, arguments: &[&str]) -> Dictionary {
    let mut specifications = Dictionary::new();
    for i in 0..tasks {
        let mut task = Dictionary::new();
        task.insert("command".into(), Value::from(command));
        if !arguments.is_empty() {
            task.insert(
                "arguments".into(),
                Value::Array(arguments.iter().map(|a| Value::from(*a)).collect()),
            );
        }
        specifications.insert(i.to_string(), Value::Dictionary(task));
    }
    let mut job = Dictionary::new();
    job.insert("name".into(), Value::from(name));
    job.insert(
        "taskSpecifications".into(),
        Value::Dictionary(specifications),
    );
    let mut payload = Dictionary::new();
    payload.insert("jobSpecification".into(), Value::Dictionary(job));
    payload
}

async fn submit(client: &Peer, payload: Dictionary) -> String {
    let reply = client
        .request("jobSubmission", payload)
        .await
        .expect("jobSubmission");
    reply
        .payload
        .get("jobIdentifier")
        .and_then(Value::to_string_lenient)
        .expect("a job identifier")
}

async fn status(client: &Peer, job: &str) -> String {
    let mut payload = Dictionary::new();
    payload.insert("jobIdentifier".into(), Value::from(job));
    let reply = client
        .request("jobAttributes", payload)
        .await
        .expect("jobAttributes");
    status_in(&reply.payload)
}

/// Subscribes to the job's attributes and waits until the subscription's reply, or a
/// notification, shows the job in one of `wanted`: how a client is told rather than asks.
async fn wait_notified(client: &Peer, incoming: &mut Incoming, job: &str, wanted: &[&str]) {
    let mut payload = Dictionary::new();
    payload.insert("jobIdentifier".into(), Value::from(job));
    payload.insert("shouldSubscribe".into(), Value::Boolean(true));
    let reply = client
        .request("jobAttributes", payload)
        .await
        .expect("jobAttributes");
    if wanted.contains(&status_in(&reply.payload).as_str()) {
        return;
    }
    while let Some(envelope) = incoming.recv().await {
        let about_job = envelope.name == "jobAttributes"
            && envelope.message_type == MessageType::Notification
            && (envelope.identifier == job
                || envelope
                    .payload
                    .get("jobIdentifier")
                    .and_then(Value::to_string_lenient)
                    .as_deref()
                    == Some(job));
        if about_job && wanted.contains(&status_in(&envelope.payload).as_str()) {
            return;
        }
    }
    panic!("the controller ended the connection before job {job} was {wanted:?}");
}

/// `jobAttributes.jobStatus` of a reply or notification payload.
fn status_in(payload: &Dictionary) -> String {
    payload
        .get("jobAttributes")
        .and_then(|a| a.as_dictionary())
        .and_then(|a| a.get("jobStatus"))
        .and_then(|s| s.as_str())
        .unwrap_or_default()
        .to_string()
}

async fn wait_until(client: &Peer, job: &str, wanted: &[&str], pause: Duration) {
    loop {
        let now = status(client, job).await;
        if wanted.contains(&now.as_str()) {
            return;
        }
        assert!(
            !matches!(now.as_str(), "Failed" | "Canceled"),
            "job {job} ended {now}"
        );
        tokio::time::sleep(pause).await;
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn resident_mb(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    kb / 1024.0
}

/// CPU time a process has used, in seconds: its own, and that of its children it reaped.
fn cpu_seconds(pid: u32) -> (f64, f64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name: state is 3rd, utime 14th … cstime 17th (1-based).
    let fields: Vec<f64> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .unwrap_or_default()
        .split_whitespace()
        .skip(11)
        .take(4)
        .map(|v| v.parse().unwrap_or(0.0))
        .collect();
    // The kernel's clock ticks: 100 per second on Linux.
    let ticks = |i: usize| fields.get(i).copied().unwrap_or(0.0) / 100.0;
    (ticks(0) + ticks(1), ticks(2) + ticks(3))
}

/// CPU time of what runs a task beside the agent: the children it reaped, and those still
/// running with what they reaped (the zygote and every init it forked).
fn task_processes_cpu(agent: u32) -> f64 {
    let living: f64 = std::fs::read_dir(format!("/proc/{agent}/task"))
        .into_iter()
        .flatten()
        .flatten()
        .flat_map(|thread| {
            std::fs::read_to_string(thread.path().join("children"))
                .unwrap_or_default()
                .split_whitespace()
                .filter_map(|pid| pid.parse::<u32>().ok())
                .collect::<Vec<_>>()
        })
        .map(|child| {
            let (own, reaped) = cpu_seconds(child);
            own + reaped
        })
        .sum();
    cpu_seconds(agent).1 + living
}

fn main() {
    let tasks = env_number("XGRID_BENCH_TASKS", 5000);
    let stored = env_number("XGRID_BENCH_STORED", 100_000);
    let grid = Grid::start("bench", 1, 8);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let address = Address::parse(&grid.address).expect("address");
        let (client, mut incoming) =
            peer::connect(&address, PeerOptions { role: PeerRole::Client, password: None }).await.expect("connect");

        // 1. Throughput.
        let agent = grid.agent_pids()[0];
        let controller_before = cpu_seconds(grid.controller_pid());
        let agent_before = cpu_seconds(agent);
        let tasks_before = task_processes_cpu(agent);
        let start = Instant::now();
        let job = submit(&client, trivial_job("throughput", tasks, "/bin/true", &[])).await;
        // Waiting as `xgrid -job wait` does: subscribed to the job's attributes.
        wait_notified(&client, &mut incoming, &job, &["Finished"]).await;
        let grid_rate = tasks as f64 / start.elapsed().as_secs_f64();
        let controller_after = cpu_seconds(grid.controller_pid());
        let agent_after = cpu_seconds(agent);
        let tasks_after = task_processes_cpu(agent);
        let start = Instant::now();
        let parallel = Command::new("sh")
            .arg("-c")
            .arg(format!("seq {tasks} | parallel -j 8 /bin/true"))
            .status()
            .expect("GNU parallel (Debian package `parallel`) is installed");
        assert!(parallel.success(), "GNU parallel failed");
        let parallel_rate = tasks as f64 / start.elapsed().as_secs_f64();
        println!("throughput: {tasks} tasks of /bin/true, one agent with 8 slots");
        println!("  grid:          {grid_rate:8.0} tasks/s (target ≥ 1000)");
        println!("  GNU parallel:  {parallel_rate:8.0} tasks/s (-j 8)");
        println!("  grid / parallel: {:.2}", grid_rate / parallel_rate);
        let per_task = |before: f64, after: f64| (after - before) * 1e3 / tasks as f64;
        println!(
            "  CPU per task: controller {:.2} ms, agent {:.2} ms, zygote, init and command {:.2} ms",
            per_task(controller_before.0, controller_after.0),
            per_task(agent_before.0, agent_after.0),
            per_task(tasks_before, tasks_after),
        );

        // 2. Submit → running latency of single-task jobs, each submitted once the one before
        // has finished: otherwise the 50 ms tasks of the jobs before, one every few
        // milliseconds, fill the agent's 8 slots and the figure measures waiting for a slot.
        // Told by a subscription's notification (as `xgrid -job run` is), and, beside it,
        // seen by asking for the job's attributes again and again.
        let mut notified = Vec::new();
        let mut polled = Vec::new();
        for round in 0..400 {
            let start = Instant::now();
            let job = submit(&client, trivial_job("latency", 1, "/bin/sleep", &["0.05"])).await;
            if round % 2 == 0 {
                wait_notified(&client, &mut incoming, &job, &["Running", "Finished"]).await;
                notified.push(start.elapsed());
            } else {
                wait_until(&client, &job, &["Running", "Finished"], Duration::ZERO).await;
                polled.push(start.elapsed());
            }
            wait_until(&client, &job, &["Finished"], Duration::from_millis(5)).await;
        }
        for (how, latencies) in [("told by notification", &mut notified), ("seen by polling", &mut polled)] {
            latencies.sort();
            println!(
                "submit → running over {} single-task jobs, {how}: p50 {:.2} ms, p99 {:.2} ms (target p50 ≤ 5 ms)",
                latencies.len(),
                percentile(latencies, 0.50).as_secs_f64() * 1e3,
                percentile(latencies, 0.99).as_secs_f64() * 1e3
            );
        }

        // 3. Memory with many finished tasks stored.
        let mut done = tasks;
        while done < stored {
            let batch = (stored - done).min(10_000);
            let job = submit(&client, trivial_job("memory", batch, "/bin/true", &[])).await;
            wait_until(&client, &job, &["Finished"], Duration::from_millis(200)).await;
            done += batch;
        }
        println!(
            "controller resident memory with {done} finished tasks stored: {:.1} MB (target ≤ 100 MB)",
            resident_mb(grid.controller_pid())
        );
        let _ = client.close().await;
    });
}
