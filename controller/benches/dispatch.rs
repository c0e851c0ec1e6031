//! Dispatch benchmark: how fast the controller pushes trivial tasks through one 8-slot agent
//! that answers at once, and how long a submitted job takes to reach its agent's start.
//! Prints figures; asserts nothing. `cargo bench -p xgrid-controller --bench dispatch`
//! (`BENCH_TASKS` and `BENCH_JOBS` change the counts).

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::*;
use tokio::sync::mpsc;
use xgrid_protocol::envelope::MessageType;
use xgrid_protocol::messages::{
    AgentNotification, AgentReply, TaskFinalResultsReply, TaskOutputs, TaskResultsReply, TaskState,
    TaskStatus,
};
use xgrid_protocol::plist::{Dictionary, Value};
use xgrid_protocol::profile;

fn count(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// An agent whose tasks end the moment they start; each start is reported on `started`.
async fn instant_agent(mut agent: Peer, started: mpsc::UnboundedSender<Instant>) {
    let mut next_ref = 0u64;
    while let Some(message) = agent.next_message().await {
        if message.message_type != MessageType::Request {
            continue;
        }
        let task_ref = message
            .payload
            .get("taskRef")
            .and_then(Value::to_string_lenient)
            .unwrap_or_default();
        match message.name.as_str() {
            "taskSubmission" => {
                next_ref += 1;
                let reply = AgentReply::TaskSubmission {
                    task_ref: next_ref.to_string(),
                };
                agent.reply(&message, reply).await;
            }
            "taskControl" => {
                agent.reply(&message, AgentReply::TaskControl).await;
                if message.payload.get("control") != Some(&Value::from("start")) {
                    continue;
                }
                let _ = started.send(Instant::now());
                for state in [TaskState::Running, TaskState::Terminated] {
                    let status = TaskStatus {
                        task_state: state,
                        task_megahertz: 1000.0,
                        termination_status: (state == TaskState::Terminated).then_some(0),
                        data_available: false,
                    };
                    agent
                        .notify(AgentNotification::TaskStatus {
                            task_ref: task_ref.clone(),
                            status,
                        })
                        .await;
                }
            }
            "taskResults" => {
                let reply = TaskResultsReply {
                    agent_name: "bench".into(),
                    task_ref,
                    streams: Default::default(),
                };
                agent.reply(&message, AgentReply::TaskResults(reply)).await;
            }
            "taskFinalResults" => {
                let reply = TaskFinalResultsReply {
                    agent_name: "bench".into(),
                    task_ref,
                    outputs: TaskOutputs {
                        output_files: Default::default(),
                        termination_status: Some(0),
                    },
                };
                agent
                    .reply(&message, AgentReply::TaskFinalResults(reply))
                    .await;
            }
            _ => {}
        }
    }
}

async fn status(client: &mut Peer, job: &str) -> String {
    let reply = client
        .request("jobAttributes", dict! {"jobIdentifier" => job})
        .await;
    text(nested(&reply, "jobAttributes"), "jobStatus")
}

async fn submit(client: &mut Peer, job: Dictionary) -> String {
    let reply = client
        .request("jobSubmission", dict! {"jobSpecification" => job})
        .await;
    text(&reply, "jobIdentifier")
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(index).copied().unwrap_or_default()
}

/// CPU seconds used so far by this process's threads, by thread name: the SQLite worker
/// threads (`sqlx-sqlite-worker-N`) count as one, everything else (the controller and the
/// bench's own agent and client) as the other.
fn cpu_by_thread() -> (f64, f64) {
    let (mut sqlite, mut rest) = (0.0, 0.0);
    let Ok(threads) = std::fs::read_dir("/proc/self/task") else {
        return (0.0, 0.0);
    };
    for thread in threads.flatten() {
        let path = thread.path();
        let comm = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        let stat = std::fs::read_to_string(path.join("stat")).unwrap_or_default();
        // Fields after the command name (which may hold spaces): utime and stime are the
        // 14th and 15th fields of the whole line, in clock ticks of 1/100 s.
        let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        let fields: Vec<&str> = after.split_whitespace().collect();
        let ticks: f64 = [11, 12]
            .iter()
            .filter_map(|&i| fields.get(i)?.parse::<f64>().ok())
            .sum();
        if comm.starts_with("sqlx-sqlite") {
            sqlite += ticks / 100.0;
        } else {
            rest += ticks / 100.0;
        }
    }
    (sqlite, rest)
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(bench());
}

async fn bench() {
    let tasks = count("BENCH_TASKS", 2000);
    let jobs = count("BENCH_JOBS", 200);
    let dir = TempDir::new("bench");
    let controller = start(test_config(&dir)).await;
    let addr = controller.local_addr();
    let mut agent = Peer::open(addr, profile::AGENT, None).await;
    agent.register("bench", 8, 8000.0).await;
    let (started_tx, mut started) = mpsc::unbounded_channel();
    let agent = tokio::spawn(instant_agent(agent, started_tx));
    let mut client = Peer::client(addr).await;

    // Throughput: one job of many trivial tasks, from submission to Finished.
    let cpu_before = cpu_by_thread();
    let begin = Instant::now();
    let job = submit(&mut client, echo_job("wide", tasks)).await;
    while status(&mut client, &job).await != "Finished" {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let elapsed = begin.elapsed();
    while started.try_recv().is_ok() {}
    println!(
        "{tasks} tasks of one job through one 8-slot agent in {:.3} s: {:.0} tasks/s",
        elapsed.as_secs_f64(),
        tasks as f64 / elapsed.as_secs_f64()
    );
    let cpu_after = cpu_by_thread();
    let per_task = |before: f64, after: f64| (after - before) * 1e3 / tasks as f64;
    println!(
        "CPU per task: SQLite worker threads {:.3} ms, the rest (controller, agent, client) {:.3} ms",
        per_task(cpu_before.0, cpu_after.0),
        per_task(cpu_before.1, cpu_after.1)
    );

    // Latency: single-task jobs one at a time, submission sent to the agent's start.
    let mut latencies = Vec::with_capacity(jobs);
    for n in 0..jobs {
        let sent = Instant::now();
        submit(&mut client, echo_job(&format!("one-{n}"), 1)).await;
        match tokio::time::timeout(PATIENCE, started.recv()).await {
            Ok(Some(at)) => latencies.push(at.saturating_duration_since(sent)),
            _ => panic!("job {n} never started"),
        }
    }
    latencies.sort();
    println!(
        "submit → start at the agent over {jobs} single-task jobs: p50 {:.2} ms, p90 {:.2} ms, max {:.2} ms",
        percentile(&latencies, 0.5).as_secs_f64() * 1000.0,
        percentile(&latencies, 0.9).as_secs_f64() * 1000.0,
        percentile(&latencies, 1.0).as_secs_f64() * 1000.0
    );
    // The agent stops first, so it never answers into a closed session.
    agent.abort();
    controller.shutdown().await;
}
