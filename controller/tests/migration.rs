//! Migration driven by the controller (docs/migration.md), against fake agents that speak the
//! checkpoint extension on 127.0.0.1: a task moves off an agent whose owner is back, a
//! failed restore resumes the task where it was, an Apple agent's task is suspended and
//! resumed, a shutting-down agent's task waits at the controller for a slot, and a lost
//! agent's task resumes elsewhere from its periodic checkpoint. The fakes check what the
//! controller asks, in order, and answer as a real agent would; the real agents with CRIU
//! are the whole-grid tests'.

mod common;

use std::time::Duration;

use common::*;
use xgrid_controller::store::{MigrationRecord, Store};
use xgrid_controller::Controller;
use xgrid_protocol::envelope::{Envelope, MessageType};
use xgrid_protocol::messages::{
    AgentNotification, AgentReply, CheckpointDisposition, CheckpointReadReply, ErrorCode,
    MigrationRefusal, MigrationReply, MigrationRequest, TaskCheckpointReply, TaskFinalResultsReply,
    TaskOutputs, TaskResultsReply, TaskState, TaskStatus, TaskStreams, UnavailableReason,
    CHECKPOINT_CHUNK,
};
use xgrid_protocol::plist::Dictionary;
use xgrid_protocol::profile;

const FEATURES: [&str; 2] = ["sse2", "avx"];

/// A controller that balances every 100 ms, with periodic checkpoints every `interval`.
async fn controller(dir: &TempDir, interval: Option<Duration>) -> Controller {
    let mut config = test_config(dir);
    config.balance_tick = Duration::from_millis(100);
    config.checkpoint_interval = interval;
    start(config).await
}

async fn submit(client: &mut Peer, job: Dictionary) -> u64 {
    let reply = client
        .request("jobSubmission", dict! {"jobSpecification" => job})
        .await;
    text(&reply, "jobIdentifier").parse().expect("a job number")
}

/// Takes the next submission as `task_ref`, takes its start and reports it Running.
async fn run_task(agent: &mut Peer, task_ref: &str) {
    agent.take_task(task_ref).await;
    report(agent, task_ref, TaskState::Running, false).await;
}

async fn report(agent: &mut Peer, task_ref: &str, state: TaskState, data_available: bool) {
    let status = TaskStatus {
        task_state: state,
        task_megahertz: 1000.0,
        termination_status: (state == TaskState::Terminated).then_some(0),
        data_available,
    };
    agent
        .notify(AgentNotification::TaskStatus {
            task_ref: task_ref.into(),
            status,
        })
        .await;
}

/// Answers the next `taskResults` for `task_ref` with `stdout`.
async fn serve_output(agent: &mut Peer, task_ref: &str, stdout: &[u8]) {
    let fetch = agent
        .expect_named("taskResults", MessageType::Request)
        .await;
    assert_eq!(text(&fetch.payload, "taskRef"), task_ref);
    let reply = TaskResultsReply {
        agent_name: "fake".into(),
        task_ref: task_ref.into(),
        streams: TaskStreams {
            read_data: stdout.to_vec(),
            err_data: Vec::new(),
        },
    };
    agent.reply(&fetch, AgentReply::TaskResults(reply)).await;
}

/// Ends `task_ref` with `stdout` as its last output.
async fn finish(agent: &mut Peer, task_ref: &str, stdout: &[u8]) {
    report(agent, task_ref, TaskState::Terminated, true).await;
    serve_output(agent, task_ref, stdout).await;
    let last = agent
        .expect_named("taskFinalResults", MessageType::Request)
        .await;
    let outputs = TaskFinalResultsReply {
        agent_name: "fake".into(),
        task_ref: task_ref.into(),
        outputs: TaskOutputs {
            termination_status: Some(0),
            ..TaskOutputs::default()
        },
    };
    agent
        .reply(&last, AgentReply::TaskFinalResults(outputs))
        .await;
}

/// The next request of the checkpoint extension named `name`, read.
async fn expect_migration(agent: &mut Peer, name: &str) -> (Envelope, MigrationRequest) {
    let envelope = agent.expect_named(name, MessageType::Request).await;
    let request = MigrationRequest::from_envelope(&envelope)
        .expect("a readable request")
        .expect("a checkpoint request");
    (envelope, request)
}

async fn answer(agent: &mut Peer, to: &Envelope, reply: MigrationReply) {
    agent.send(reply.to_envelope(&to.identifier)).await;
}

/// Plays the source's part of steps 1 to 3: a dump of `image` with `stdout` written so far,
/// served in one chunk. Returns the checkpoint identifier it gave.
async fn give_checkpoint(
    source: &mut Peer,
    task_ref: &str,
    leave_running: bool,
    stdout: &[u8],
    image: &[u8],
) -> String {
    let (request, read) = expect_migration(source, "taskCheckpoint").await;
    let MigrationRequest::TaskCheckpoint(checkpoint) = read else {
        panic!("{read:?}")
    };
    assert_eq!(checkpoint.task_ref, task_ref);
    assert_eq!(checkpoint.leave_running, leave_running);
    let identifier = format!("cp-{task_ref}");
    let taken = TaskCheckpointReply {
        checkpoint_identifier: identifier.clone(),
        checkpoint_size: image.len() as u64,
        stdout_size: stdout.len() as u64,
        stderr_size: 0,
        frozen_milliseconds: 42,
    };
    answer(source, &request, MigrationReply::TaskCheckpoint(taken)).await;
    // The controller fetches output only while it holds less than the dump's.
    if !stdout.is_empty() {
        serve_output(source, task_ref, stdout).await;
    }
    let (request, read) = expect_migration(source, "checkpointRead").await;
    let MigrationRequest::CheckpointRead(chunk) = read else {
        panic!("{read:?}")
    };
    assert_eq!(
        (
            chunk.checkpoint_identifier.as_str(),
            chunk.offset,
            chunk.length
        ),
        (identifier.as_str(), 0, CHECKPOINT_CHUNK)
    );
    let data = CheckpointReadReply {
        checkpoint_data: image.to_vec(),
        end_of_checkpoint: true,
    };
    answer(source, &request, MigrationReply::CheckpointRead(data)).await;
    identifier
}

/// Plays the destination's part of steps 3 and 4 up to the `taskRestore` request: checks
/// the stream is `image` in one chunk, and returns that request with the identifier used.
async fn take_stream(destination: &mut Peer, image: &[u8]) -> (Envelope, String) {
    let (request, read) = expect_migration(destination, "checkpointWrite").await;
    let MigrationRequest::CheckpointWrite(write) = read else {
        panic!("{read:?}")
    };
    assert_eq!(write.offset, 0);
    assert_eq!(write.checkpoint_data, image);
    assert!(write.end_of_checkpoint);
    answer(destination, &request, MigrationReply::CheckpointWrite).await;
    let (request, read) = expect_migration(destination, "taskRestore").await;
    let MigrationRequest::TaskRestore(restore) = read else {
        panic!("{read:?}")
    };
    assert_eq!(restore.checkpoint_identifier, write.checkpoint_identifier);
    assert!(
        restore.leave_stopped,
        "restored tasks wait for their move to be recorded"
    );
    (request, write.checkpoint_identifier)
}

/// Plays the destination's steps 3 and 4: takes the stream `image` and restores it, frozen,
/// as `task_ref`. Returns the stream's identifier.
async fn restore_as(destination: &mut Peer, image: &[u8], task_ref: &str) -> String {
    let (restore, written) = take_stream(destination, image).await;
    let restored = MigrationReply::TaskRestore {
        task_ref: task_ref.into(),
    };
    answer(destination, &restore, restored).await;
    written
}

/// Expects `checkpointRelease` of `identifier` with `disposition`, and answers it.
async fn take_release(agent: &mut Peer, identifier: &str, disposition: CheckpointDisposition) {
    let (request, read) = expect_migration(agent, "checkpointRelease").await;
    let MigrationRequest::CheckpointRelease(release) = read else {
        panic!("{read:?}")
    };
    assert_eq!(
        (release.checkpoint_identifier.as_str(), release.disposition),
        (identifier, disposition)
    );
    answer(agent, &request, MigrationReply::CheckpointRelease).await;
}

async fn agent_id(store: &Store, name: &str) -> u64 {
    store
        .agents()
        .await
        .expect("agents")
        .into_iter()
        .find(|a| a.name == name)
        .map(|a| a.id)
        .expect("the agent is registered")
}

/// Polls the store until the job's migrations satisfy `done`.
async fn wait_for_migrations(
    store: &Store,
    job: u64,
    done: impl Fn(&[MigrationRecord]) -> bool,
) -> Vec<MigrationRecord> {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let list = store.job_migrations(job).await.expect("migrations");
        if done(&list) {
            return list;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "migrations stayed {list:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls the store until the task is in `state`.
async fn wait_for_task(store: &Store, job: u64, state: xgrid_controller::store::TaskState) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let task = store.task(job, "0").await.expect("task");
        if task.state == state {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the task stayed {:?}, never {state:?}",
            task.state
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls the job's log until a line satisfies `wanted`.
async fn wait_for_log(store: &Store, job: u64, wanted: impl Fn(&str) -> bool) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let log = store.job_log(job).await.expect("log");
        if log.iter().any(|l| wanted(&l.text)) {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "log stayed {log:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn stdout_of(store: &Store, job: u64) -> Vec<u8> {
    store.job_results(job).await.expect("results")["0"]
        .stdout
        .clone()
}

/// A controller with one job of one task running as `s1` on the checkpointing agent
/// `source`, and a second checkpointing agent `destination` (with CPU flags `features`)
/// with a free slot; then the source's owner comes back (it reports Unavailable, `owner`),
/// which moves the task.
struct TwoAgents {
    controller: Controller,
    store: Store,
    source: Peer,
    cookie: String,
    destination: Peer,
    destination_cookie: String,
    job: u64,
    /// Kept open: the job's client.
    _client: Peer,
}

async fn owner_back_on_source(dir: &TempDir, job_name: &str, features: &[&str]) -> TwoAgents {
    let controller = controller(dir, None).await;
    let store = controller.shared().store.clone();
    let addr = controller.local_addr();
    let mut source = Peer::open(addr, profile::AGENT, None).await;
    let cookie = source
        .register_checkpointing("source", 1, 1000.0, &FEATURES)
        .await;
    let mut client = Peer::client(addr).await;
    let job = submit(&mut client, echo_job(job_name, 1)).await;
    run_task(&mut source, "s1").await;
    wait_for_task(&store, job, xgrid_controller::store::TaskState::Running).await;
    let mut destination = Peer::open(addr, profile::AGENT, None).await;
    let destination_cookie = destination
        .register_checkpointing("destination", 1, 1000.0, features)
        .await;
    source
        .report_unavailable(&cookie, "source", &["s1"], Some(UnavailableReason::Owner))
        .await;
    TwoAgents {
        controller,
        store,
        source,
        cookie,
        destination,
        destination_cookie,
        job,
        _client: client,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_moves_off_an_agent_whose_owner_is_back() {
    let dir = TempDir::new("owner-back");
    let TwoAgents {
        controller,
        store,
        mut source,
        mut destination,
        job,
        ..
    } = owner_back_on_source(&dir, "moving", &["sse2", "avx", "avx512f"]).await;

    let image = b"IMAGE-0123456789";
    let identifier = give_checkpoint(&mut source, "s1", false, b"hello\n", image).await;
    let written = restore_as(&mut destination, image, "d1").await;
    // The restored task's status comes at once, as a real agent's does: the move still lands;
    // then the restored copy may run, and the source's goes.
    report(&mut destination, "d1", TaskState::Running, false).await;
    take_release(&mut destination, &written, CheckpointDisposition::Resume).await;
    take_release(&mut source, &identifier, CheckpointDisposition::Cancel).await;

    let (from, to) = (
        agent_id(&store, "source").await,
        agent_id(&store, "destination").await,
    );
    let moved = wait_for_migrations(&store, job, |l| !l.is_empty()).await;
    assert_eq!(
        (
            moved[0].from,
            moved[0].to,
            moved[0].reason.as_str(),
            moved[0].outcome.as_str(),
            moved[0].octets
        ),
        (
            Some(from),
            Some(to),
            "owner returned",
            "moved",
            image.len() as u64
        )
    );
    let task = store.task(job, "0").await.expect("task");
    assert_eq!(
        (task.agent, task.task_ref.as_deref()),
        (Some(to), Some("d1"))
    );
    // The stream stays at the controller as the task's last checkpoint.
    let kept = store
        .task_checkpoint(job, "0")
        .await
        .expect("read")
        .expect("a checkpoint is kept");
    assert_eq!(std::fs::read(&kept.path).expect("the file"), image);
    assert!(kept.path.starts_with(&dir.path().display().to_string()));
    wait_for_log(&store, job, |line| {
        line.contains("moved from agent") && line.contains("owner returned")
    })
    .await;

    // It ends on the destination; its output is what each agent gave, once.
    finish(&mut destination, "d1", b"world\n").await;
    wait_for_task(&store, job, xgrid_controller::store::TaskState::Finished).await;
    assert_eq!(stdout_of(&store, job).await, b"hello\nworld\n");
    controller.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_restore_resumes_the_task_where_it_was() {
    let dir = TempDir::new("restore-fails");
    let TwoAgents {
        controller,
        store,
        mut source,
        mut destination,
        job,
        ..
    } = owner_back_on_source(&dir, "stays", &FEATURES).await;

    let image = b"IMAGE";
    let identifier = give_checkpoint(&mut source, "s1", false, b"", image).await;
    let (restore, written) = take_stream(&mut destination, image).await;
    let refusal = MigrationRefusal::new(ErrorCode::RestoreFailed, "criu: cannot restore");
    answer(
        &mut destination,
        &restore,
        MigrationReply::Error {
            name: "taskRestore".into(),
            refusal,
        },
    )
    .await;
    take_release(&mut source, &identifier, CheckpointDisposition::Resume).await;
    take_release(&mut destination, &written, CheckpointDisposition::Discard).await;

    let failed = wait_for_migrations(&store, job, |l| !l.is_empty()).await;
    assert!(
        failed[0].outcome.starts_with("restore failed")
            && failed[0].outcome.contains("criu: cannot restore"),
        "{failed:?}"
    );
    let task = store.task(job, "0").await.expect("task");
    assert_eq!(
        (task.agent, task.task_ref.as_deref()),
        (Some(agent_id(&store, "source").await), Some("s1"))
    );
    assert_eq!(store.migration_count().await.expect("count"), 0);
    // Nothing half-written is left behind.
    let files = std::fs::read_dir(dir.path().join("data").join("checkpoints"))
        .expect("the checkpoint directory")
        .count();
    assert_eq!(files, 0);
    finish(&mut source, "s1", b"done\n").await;
    wait_for_task(&store, job, xgrid_controller::store::TaskState::Finished).await;
    controller.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_apple_agents_task_is_suspended_and_resumed_never_moved() {
    let dir = TempDir::new("apple-owner");
    let controller = controller(&dir, Some(Duration::from_secs(1))).await;
    let store = controller.shared().store.clone();
    let addr = controller.local_addr();
    let mut mac = Peer::open(addr, profile::AGENT, None).await;
    let cookie = mac.register("mac", 1, 1000.0).await;
    let mut client = Peer::client(addr).await;
    let job = submit(&mut client, echo_job("suspended", 1)).await;
    run_task(&mut mac, "m1").await;
    wait_for_task(&store, job, xgrid_controller::store::TaskState::Running).await;
    // An idle checkpointing agent is no destination for an Apple agent's task.
    let mut linux = Peer::open(addr, profile::AGENT, None).await;
    linux
        .register_checkpointing("linux", 1, 3000.0, &FEATURES)
        .await;

    mac.report_unavailable(&cookie, "mac", &["m1"], None).await;
    let stop = mac.expect_named("taskControl", MessageType::Request).await;
    assert_eq!(
        (
            text(&stop.payload, "taskRef"),
            text(&stop.payload, "control")
        ),
        ("m1".to_string(), "stop".to_string())
    );
    mac.reply(&stop, AgentReply::TaskControl).await;
    wait_for_task(&store, job, xgrid_controller::store::TaskState::Stopped).await;

    mac.report_status(&cookie, "mac", &["m1"]).await;
    let start = mac.expect_named("taskControl", MessageType::Request).await;
    assert_eq!(text(&start.payload, "control"), "start");
    mac.reply(&start, AgentReply::TaskControl).await;
    wait_for_task(&store, job, xgrid_controller::store::TaskState::Running).await;
    finish(&mut mac, "m1", b"done\n").await;
    wait_for_task(&store, job, xgrid_controller::store::TaskState::Finished).await;

    // No checkpoint request ever reached the Apple agent, and nothing moved.
    assert!(
        mac.unread()
            .iter()
            .all(|e| MigrationRequest::from_envelope(e) == Ok(None)),
        "{:?}",
        mac.unread()
    );
    assert!(store.job_migrations(job).await.expect("list").is_empty());
    wait_for_log(&store, job, |line| line.contains("suspended on agent")).await;
    controller.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutting_down_agents_task_waits_at_the_controller_for_a_slot() {
    let dir = TempDir::new("evacuate");
    let controller = controller(&dir, None).await;
    let store = controller.shared().store.clone();
    let addr = controller.local_addr();
    let mut leaving = Peer::open(addr, profile::AGENT, None).await;
    let cookie = leaving
        .register_checkpointing("leaving", 1, 1000.0, &FEATURES)
        .await;
    let mut client = Peer::client(addr).await;
    let job = submit(&mut client, echo_job("evacuated", 1)).await;
    run_task(&mut leaving, "l1").await;
    wait_for_task(&store, job, xgrid_controller::store::TaskState::Running).await;

    leaving
        .report_unavailable(
            &cookie,
            "leaving",
            &["l1"],
            Some(UnavailableReason::Shutdown),
        )
        .await;
    let image = b"EVACUATED";
    let identifier = give_checkpoint(&mut leaving, "l1", false, b"part 1\n", image).await;
    take_release(&mut leaving, &identifier, CheckpointDisposition::Cancel).await;
    wait_for_migrations(&store, job, |l| !l.is_empty()).await;
    let task = store.task(job, "0").await.expect("task");
    assert_eq!(
        (task.state, task.agent),
        (xgrid_controller::store::TaskState::Assigned, None),
        "held at the controller"
    );
    drop(leaving);

    let mut next = Peer::open(addr, profile::AGENT, None).await;
    next.register_checkpointing("next", 1, 1000.0, &FEATURES)
        .await;
    let written = restore_as(&mut next, image, "n1").await;
    take_release(&mut next, &written, CheckpointDisposition::Resume).await;
    let moves = wait_for_migrations(&store, job, |l| l.len() == 2).await;
    let next_id = agent_id(&store, "next").await;
    assert_eq!(
        moves
            .iter()
            .map(|m| (m.to, m.reason.as_str(), m.outcome.as_str()))
            .collect::<Vec<_>>(),
        [
            (None, "agent shutting down", "moved"),
            (Some(next_id), "agent shutting down", "moved")
        ]
    );
    finish(&mut next, "n1", b"part 2\n").await;
    wait_for_task(&store, job, xgrid_controller::store::TaskState::Finished).await;
    assert_eq!(stdout_of(&store, job).await, b"part 1\npart 2\n");
    controller.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_agents_task_resumes_elsewhere_from_its_periodic_checkpoint() {
    let dir = TempDir::new("recovery");
    let controller = controller(&dir, Some(Duration::from_secs(1))).await;
    let store = controller.shared().store.clone();
    let addr = controller.local_addr();
    let mut doomed = Peer::open(addr, profile::AGENT, None).await;
    doomed
        .register_checkpointing("doomed", 1, 1000.0, &FEATURES)
        .await;
    let mut client = Peer::client(addr).await;
    let job = submit(&mut client, echo_job("recovered", 1)).await;
    run_task(&mut doomed, "x1").await;

    // The periodic checkpoint: the task runs on, the images go.
    let image = b"SNAPSHOT";
    let identifier = give_checkpoint(&mut doomed, "x1", true, b"abc", image).await;
    take_release(&mut doomed, &identifier, CheckpointDisposition::Discard).await;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while store
        .task_checkpoint(job, "0")
        .await
        .expect("read")
        .is_none()
    {
        assert!(tokio::time::Instant::now() < deadline, "no checkpoint kept");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Output written after the checkpoint is lost with the agent.
    report(&mut doomed, "x1", TaskState::Running, true).await;
    serve_output(&mut doomed, "x1", b"def").await;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while stdout_of(&store, job).await != b"abcdef" {
        assert!(tokio::time::Instant::now() < deadline, "output not stored");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(doomed);
    wait_for_task(&store, job, xgrid_controller::store::TaskState::Assigned).await;
    assert_eq!(stdout_of(&store, job).await, b"abc");

    // An agent with the checkpoint agent's CPU features (and more) restores it.
    let mut rescuer = Peer::open(addr, profile::AGENT, None).await;
    rescuer
        .register_checkpointing("rescuer", 1, 1000.0, &["sse2", "avx", "avx2"])
        .await;
    let written = restore_as(&mut rescuer, image, "r1").await;
    take_release(&mut rescuer, &written, CheckpointDisposition::Resume).await;
    let moves = wait_for_migrations(&store, job, |l| !l.is_empty()).await;
    assert_eq!(
        (
            moves[0].from,
            moves[0].reason.as_str(),
            moves[0].outcome.as_str()
        ),
        (None, "agent lost", "moved")
    );
    finish(&mut rescuer, "r1", b"def\n").await;
    wait_for_task(&store, job, xgrid_controller::store::TaskState::Finished).await;
    assert_eq!(stdout_of(&store, job).await, b"abcdef\n");
    let task = store.task(job, "0").await.expect("task");
    assert_eq!(task.attempts, 0, "resumed, not run again");
    controller.shutdown().await;
}

/// Plays a source that dumps `task_ref` for a move (frozen from here) and is gone before the
/// controller reads the stream. Returns the checkpoint identifier it gave.
async fn dump_and_vanish(mut source: Peer, task_ref: &str, image: &[u8]) -> String {
    let (request, read) = expect_migration(&mut source, "taskCheckpoint").await;
    let MigrationRequest::TaskCheckpoint(checkpoint) = read else {
        panic!("{read:?}")
    };
    assert_eq!(
        (checkpoint.task_ref.as_str(), checkpoint.leave_running),
        (task_ref, false)
    );
    let identifier = format!("cp-{task_ref}");
    let taken = TaskCheckpointReply {
        checkpoint_identifier: identifier.clone(),
        checkpoint_size: image.len() as u64,
        stdout_size: 0,
        stderr_size: 0,
        frozen_milliseconds: 42,
    };
    answer(&mut source, &request, MigrationReply::TaskCheckpoint(taken)).await;
    drop(source);
    identifier
}

/// Agent `name` back on a new connection to `addr`, holding its task `task_ref` frozen under
/// checkpoint `identifier`, as a real agent reports after a lost connection.
async fn agent_back(
    addr: std::net::SocketAddr,
    (name, cookie): (&str, &str),
    task_ref: &str,
    identifier: &str,
) -> Peer {
    let mut agent = Peer::open(addr, profile::AGENT, None).await;
    agent
        .register_checkpointing_again(cookie, name, 1000.0, &FEATURES)
        .await;
    agent
        .report_frozen(cookie, name, &[task_ref], &[(identifier, task_ref)])
        .await;
    agent
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_lost_between_the_restore_and_its_release_drops_its_frozen_copy_when_back() {
    let dir = TempDir::new("lost-after-restore");
    let TwoAgents {
        controller,
        store,
        mut source,
        cookie,
        mut destination,
        job,
        ..
    } = owner_back_on_source(&dir, "cut-short", &FEATURES).await;
    let addr = controller.local_addr();

    let image = b"IMAGE";
    let identifier = give_checkpoint(&mut source, "s1", false, b"hello\n", image).await;
    let written = restore_as(&mut destination, image, "d1").await;
    take_release(&mut destination, &written, CheckpointDisposition::Resume).await;
    // The release is sent, but the source is gone before it acts on it: the task runs at
    // the destination, and the source still holds it frozen.
    expect_migration(&mut source, "checkpointRelease").await;
    drop(source);
    let moved = wait_for_migrations(&store, job, |l| !l.is_empty()).await;
    assert_eq!(moved[0].outcome, "moved");

    // Back, the source lists the frozen task; the controller has it dropped, not resumed.
    let mut source = agent_back(addr, ("source", &cookie), "s1", &identifier).await;
    take_release(&mut source, &identifier, CheckpointDisposition::Cancel).await;

    let task = store.task(job, "0").await.expect("task");
    assert_eq!(
        (task.agent, task.task_ref.as_deref()),
        (Some(agent_id(&store, "destination").await), Some("d1"))
    );
    finish(&mut destination, "d1", b"world\n").await;
    wait_for_task(&store, job, xgrid_controller::store::TaskState::Finished).await;
    assert_eq!(stdout_of(&store, job).await, b"hello\nworld\n");
    controller.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_lost_mid_move_drops_its_frozen_copy_once_the_task_ran_again_elsewhere() {
    let dir = TempDir::new("lost-mid-move");
    let TwoAgents {
        controller,
        store,
        source,
        cookie,
        mut destination,
        job,
        ..
    } = owner_back_on_source(&dir, "again", &FEATURES).await;
    let addr = controller.local_addr();

    let identifier = dump_and_vanish(source, "s1", b"IMAGE").await;
    // With no checkpoint kept, the lost source's task runs again from the start; the
    // destination drops whatever it had of the stream.
    let (discard, read) = expect_migration(&mut destination, "checkpointRelease").await;
    let MigrationRequest::CheckpointRelease(release) = read else {
        panic!("{read:?}")
    };
    assert_eq!(release.disposition, CheckpointDisposition::Discard);
    answer(
        &mut destination,
        &discard,
        MigrationReply::CheckpointRelease,
    )
    .await;
    run_task(&mut destination, "d1").await;

    let mut source = agent_back(addr, ("source", &cookie), "s1", &identifier).await;
    take_release(&mut source, &identifier, CheckpointDisposition::Cancel).await;
    let task = store.task(job, "0").await.expect("task");
    assert_eq!(
        (task.agent, task.task_ref.as_deref(), task.attempts),
        (Some(agent_id(&store, "destination").await), Some("d1"), 1)
    );
    finish(&mut destination, "d1", b"once\n").await;
    wait_for_task(&store, job, xgrid_controller::store::TaskState::Finished).await;
    assert_eq!(stdout_of(&store, job).await, b"once\n");
    controller.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_frozen_when_the_controller_stopped_is_resumed_where_it_was() {
    let dir = TempDir::new("frozen-restart");
    let mut grid = owner_back_on_source(&dir, "thawed", &FEATURES).await;
    let (cookie, job) = (grid.cookie.clone(), grid.job);
    // The controller stops after the destination got the whole stream and the restore
    // request, before it recorded the move: as if it crashed right after the restore.
    let image = b"IMAGE";
    let identifier = give_checkpoint(&mut grid.source, "s1", false, b"", image).await;
    let (_, written) = take_stream(&mut grid.destination, image).await;
    drop((grid._client, grid.source, grid.destination, grid.store));
    grid.controller.shutdown().await;

    // Back, each lists its frozen copy: the restored one is dropped (the store never placed
    // the task there), the source's runs on.
    let controller = controller(&dir, None).await;
    let store = controller.shared().store.clone();
    let addr = controller.local_addr();
    let destination_cookie = grid.destination_cookie;
    let mut destination =
        agent_back(addr, ("destination", &destination_cookie), "d1", &written).await;
    take_release(&mut destination, &written, CheckpointDisposition::Cancel).await;
    let mut source = agent_back(addr, ("source", &cookie), "s1", &identifier).await;
    take_release(&mut source, &identifier, CheckpointDisposition::Resume).await;
    wait_for_log(&store, job, |line| {
        line.contains("resumed on agent") && line.contains("frozen")
    })
    .await;
    let task = store.task(job, "0").await.expect("task");
    assert_eq!(
        (task.agent, task.task_ref.as_deref(), task.attempts),
        (Some(agent_id(&store, "source").await), Some("s1"), 0)
    );
    finish(&mut source, "s1", b"done\n").await;
    wait_for_task(&store, job, xgrid_controller::store::TaskState::Finished).await;
    controller.shutdown().await;
}
