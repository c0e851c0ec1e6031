//! The checkpoint extension end to end between two real `xgridagentd` processes, driven by a
//! scripted controller on loopback, with real CRIU: a running task moves from one agent to
//! the other and finishes with exactly the output of an uninterrupted run; a restore that
//! fails leaves the task running once, at its source.
//!
//! Two agents on one machine would restore a task at the path it had at its source, where
//! the frozen source still keeps it; each agent therefore runs in its own mount namespace,
//! with a private directory bound over the same tasks path, as two machines would have.

// Shared with daemon.rs, which uses all of it.
#[allow(dead_code)]
mod scripted;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use scripted::{Connection, ScriptedController, WAIT};
use xgrid_protocol::envelope::Envelope;
use xgrid_protocol::messages::{
    AgentReply, CheckpointDisposition, MigrationReply, MigrationRequest, TaskCheckpointReply,
    TaskCheckpointRequest, TaskState, TaskSubmission, CHECKPOINT_CAPABILITY, CHECKPOINT_CHUNK,
};
use xgrid_protocol::plist::{Dictionary, Value};

/// How many lines the counting task writes (one every ~20 ms).
const COUNT: u32 = 150;

/// The scratch tree of one test, removed at the end.
struct Scratch(PathBuf);

impl Scratch {
    fn new(test: &str) -> Scratch {
        let path = std::env::temp_dir().join(format!("xgrid-move-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(path.join("tasks")).expect("scratch");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        Scratch(path)
    }

    /// The tasks path both agents use (each sees its own directory there).
    fn tasks(&self) -> PathBuf {
        self.0.join("tasks")
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One `xgridagentd` in its own mount namespace; killed when dropped.
struct AgentProcess {
    child: tokio::process::Child,
}

impl AgentProcess {
    /// Start agent `name`, with `hide` (if any) covered by an empty directory in its mount
    /// namespace: a machine that lacks what is there.
    fn start(
        scratch: &Scratch,
        controller: &ScriptedController,
        name: &str,
        hide: Option<&Path>,
    ) -> AgentProcess {
        let own = scratch.0.join(format!("{name}-tasks"));
        let data = scratch.0.join(format!("{name}-data"));
        let empty = scratch.0.join("empty");
        for dir in [&own, &data, &empty] {
            std::fs::create_dir_all(dir).expect("agent dirs");
        }
        let mut script = format!(
            "mount --bind {} {} || exit 97\n",
            own.display(),
            scratch.tasks().display()
        );
        if let Some(hide) = hide {
            script.push_str(&format!(
                "mount --bind {} {} || exit 98\n",
                empty.display(),
                hide.display()
            ));
        }
        script.push_str("exec \"$@\"\n");
        let child = tokio::process::Command::new("unshare")
            .args(["--mount", "--propagation", "private", "--", "/bin/sh", "-c"])
            .arg(script)
            .arg("sh")
            .arg(env!("CARGO_BIN_EXE_xgridagentd"))
            .arg("--controller")
            .arg(controller.address.to_string())
            .arg("--data-dir")
            .arg(&data)
            .arg("--tasks-dir")
            .arg(scratch.tasks())
            .args(["--name", name, "--slots", "2", "--task-user", "root"])
            .args(["--status-interval", "60"])
            .kill_on_drop(true)
            .spawn()
            .expect("start xgridagentd");
        AgentProcess { child }
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// Why these tests cannot run here, if they cannot.
fn cannot_run() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    if !status
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
    {
        return Some("moving tasks needs root (CRIU, mount namespaces)".into());
    }
    let checkpointer = xgrid_agent::checkpoint::Checkpointer::probe();
    checkpointer.unavailable_reason().map(str::to_string)
}

/// Accept an agent and check it offers checkpoints.
async fn accept(controller: &ScriptedController, cookie: &str) -> Connection {
    let mut connection = controller.accept().await;
    let registration = connection.accept_registration(cookie).await;
    assert!(
        registration.announces(CHECKPOINT_CAPABILITY),
        "{cookie} does not offer checkpoints: {:?}",
        registration.linux_capabilities
    );
    assert!(
        registration.cpu_features.is_some_and(|f| !f.is_empty()),
        "a checkpointing agent announces its CPU features"
    );
    connection
}

/// Agents `source` and `destination` (with `hide` covered at the destination), accepted in
/// that order.
async fn two_agents(
    scratch: &Scratch,
    controller: &ScriptedController,
    hide: Option<&Path>,
) -> ([AgentProcess; 2], Connection, Connection) {
    let source_agent = AgentProcess::start(scratch, controller, "source", None);
    let source = accept(controller, "source").await;
    let destination_agent = AgentProcess::start(scratch, controller, "destination", hide);
    let destination = accept(controller, "destination").await;
    ([source_agent, destination_agent], source, destination)
}

fn counting_task(shell: &str) -> TaskSubmission {
    let script = format!(
        "i=0; while [ $i -lt {COUNT} ]; do i=$((i+1)); echo $i; echo $i > state; sleep 0.02; done"
    );
    TaskSubmission {
        command: shell.into(),
        arguments: vec!["-c".into(), script],
        ..TaskSubmission::default()
    }
}

fn expected_output() -> Vec<u8> {
    (1..=COUNT)
        .map(|i| format!("{i}\n"))
        .collect::<String>()
        .into_bytes()
}

async fn ask(connection: &mut Connection, request: MigrationRequest) -> MigrationReply {
    let reply = connection
        .request(request.name(), request.to_payload())
        .await;
    MigrationReply::from_envelope(&reply).expect("a readable checkpoint reply")
}

fn task_ref_payload(task_ref: &str) -> Dictionary {
    [("taskRef".to_string(), Value::from(task_ref))]
        .into_iter()
        .collect()
}

async fn submit_and_start(connection: &mut Connection, submission: &TaskSubmission) -> String {
    let reply = connection
        .request("taskSubmission", submission.to_payload())
        .await;
    let task_ref = match AgentReply::from_envelope(&reply) {
        Ok(AgentReply::TaskSubmission { task_ref }) => task_ref,
        other => panic!("taskSubmission refused: {other:?}"),
    };
    let mut control = task_ref_payload(&task_ref);
    control.insert("control".into(), Value::from("start"));
    connection.request("taskControl", control).await;
    task_ref
}

/// Append what `taskResults` hands out to `received`.
async fn fetch(connection: &mut Connection, task_ref: &str, received: &mut Vec<u8>) {
    let reply = connection
        .request("taskResults", task_ref_payload(task_ref))
        .await;
    match AgentReply::from_envelope(&reply) {
        Ok(AgentReply::TaskResults(results)) => received.extend(results.streams.read_data),
        other => panic!("taskResults refused: {other:?}"),
    }
}

/// Fetch until `received` holds at least `lines` lines.
async fn fetch_until(
    connection: &mut Connection,
    task_ref: &str,
    received: &mut Vec<u8>,
    lines: usize,
) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while received.iter().filter(|b| **b == b'\n').count() < lines {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the task wrote too little"
        );
        fetch(connection, task_ref, received).await;
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

async fn checkpoint(connection: &mut Connection, task_ref: &str) -> TaskCheckpointReply {
    let request = MigrationRequest::TaskCheckpoint(TaskCheckpointRequest {
        task_ref: task_ref.into(),
        leave_running: false,
    });
    match ask(connection, request).await {
        MigrationReply::TaskCheckpoint(reply) => reply,
        other => panic!("taskCheckpoint refused: {other:?}"),
    }
}

/// Relay a checkpoint stream from `source` to `destination` chunk by chunk; the octets moved.
async fn relay(source: &mut Connection, destination: &mut Connection, from: &str, to: &str) -> u64 {
    let mut offset = 0;
    loop {
        let read =
            MigrationRequest::CheckpointRead(xgrid_protocol::messages::CheckpointReadRequest {
                checkpoint_identifier: from.into(),
                offset,
                // Smaller than the controller's chunks, so even a small task's stream takes
                // many reads and the end is announced only at the end.
                length: CHECKPOINT_CHUNK / 16,
            });
        let chunk = match ask(source, read).await {
            MigrationReply::CheckpointRead(chunk) => chunk,
            other => panic!("checkpointRead refused: {other:?}"),
        };
        let write =
            MigrationRequest::CheckpointWrite(xgrid_protocol::messages::CheckpointWriteRequest {
                checkpoint_identifier: to.into(),
                offset,
                checkpoint_data: chunk.checkpoint_data.clone(),
                end_of_checkpoint: chunk.end_of_checkpoint,
            });
        match ask(destination, write).await {
            MigrationReply::CheckpointWrite => {}
            other => panic!("checkpointWrite refused: {other:?}"),
        }
        offset += chunk.checkpoint_data.len() as u64;
        if chunk.end_of_checkpoint {
            return offset;
        }
    }
}

async fn release(connection: &mut Connection, id: &str, disposition: CheckpointDisposition) {
    let request =
        MigrationRequest::CheckpointRelease(xgrid_protocol::messages::CheckpointReleaseRequest {
            checkpoint_identifier: id.into(),
            disposition,
        });
    match ask(connection, request).await {
        MigrationReply::CheckpointRelease => {}
        other => panic!("checkpointRelease refused: {other:?}"),
    }
}

/// Wait for the task to end, fetch the rest of its output and its final results.
async fn finish(
    connection: &mut Connection,
    task_ref: &str,
    received: &mut Vec<u8>,
) -> xgrid_protocol::messages::TaskFinalResultsReply {
    connection
        .task_status(task_ref, |s| s.task_state == TaskState::Terminated)
        .await;
    fetch(connection, task_ref, received).await;
    let reply: Envelope = connection
        .request("taskFinalResults", task_ref_payload(task_ref))
        .await;
    match AgentReply::from_envelope(&reply) {
        Ok(AgentReply::TaskFinalResults(results)) => results,
        other => panic!("taskFinalResults refused: {other:?}"),
    }
}

#[tokio::test]
async fn a_counting_task_moves_and_writes_exactly_what_an_uninterrupted_run_writes() {
    if let Some(reason) = cannot_run() {
        eprintln!("skipped: {reason}");
        return;
    }
    let scratch = Scratch::new("count");
    let controller = ScriptedController::bind(None).await;
    let (_agents, mut source, mut destination) = two_agents(&scratch, &controller, None).await;

    let task_ref = submit_and_start(&mut source, &counting_task("/bin/sh")).await;
    let mut received = Vec::new();
    fetch_until(&mut source, &task_ref, &mut received, 20).await;

    let made = checkpoint(&mut source, &task_ref).await;
    assert!(made.checkpoint_size > 0);
    // Everything written before the dump, and nothing after: the task is frozen.
    fetch_to(&mut source, &task_ref, &mut received, made.stdout_size).await;
    let lines_at_dump = received.iter().filter(|b| **b == b'\n').count();
    assert!(
        lines_at_dump < COUNT as usize,
        "the move must happen mid-run"
    );

    let moved = relay(
        &mut source,
        &mut destination,
        &made.checkpoint_identifier,
        "m1",
    )
    .await;
    assert_eq!(
        moved, made.checkpoint_size,
        "the announced size is the stream's"
    );
    let restored = restore_frozen(&mut destination, "m1").await;
    // Restored, but held frozen until the move is recorded: nothing written yet.
    let status = destination
        .agent_status(|s| s.task_ref_array.contains(&restored))
        .await;
    assert_eq!(
        status.frozen_checkpoints.get("m1"),
        Some(&restored),
        "the destination lists the restored task as frozen"
    );
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let mut early = Vec::new();
    fetch(&mut destination, &restored, &mut early).await;
    assert!(early.is_empty(), "a frozen restored task wrote {early:?}");
    release(
        &mut source,
        &made.checkpoint_identifier,
        CheckpointDisposition::Cancel,
    )
    .await;
    release(&mut destination, "m1", CheckpointDisposition::Resume).await;
    // The source forgets the task without a word.
    let status = source
        .agent_status(|s| !s.task_ref_array.contains(&task_ref))
        .await;
    assert_eq!(status.current_task_count, 0);

    let results = finish(&mut destination, &restored, &mut received).await;
    assert_eq!(results.outputs.termination_status, Some(0));
    assert_eq!(
        String::from_utf8_lossy(&received),
        String::from_utf8_lossy(&expected_output()),
        "the moved task's output is exactly an uninterrupted run's"
    );
    assert_eq!(
        results.outputs.output_files.get("state").map(Vec::as_slice),
        Some(format!("{COUNT}\n").as_bytes()),
        "the state file travelled and was finished at the destination"
    );
    assert!(
        source
            .take_received(|m| m.name == "taskStatus"
                && m.payload.get("taskRef") == Some(&Value::from(task_ref.as_str())))
            .iter()
            .all(|m| m.payload.get("taskState") != Some(&Value::from("Terminated"))),
        "the source never reports the moved task as ended"
    );
}

#[tokio::test]
async fn a_restore_that_fails_leaves_the_task_running_once_at_its_source() {
    if let Some(reason) = cannot_run() {
        eprintln!("skipped: {reason}");
        return;
    }
    let scratch = Scratch::new("fail");
    // The task's program lives where the destination has nothing.
    let bin = scratch.0.join("bin");
    std::fs::create_dir_all(&bin).expect("bin");
    let shell = bin.join("counter-shell");
    std::fs::copy("/bin/sh", &shell).expect("copy the shell");
    let controller = ScriptedController::bind(None).await;
    let (_agents, mut source, mut destination) =
        two_agents(&scratch, &controller, Some(&bin)).await;

    let task_ref = submit_and_start(&mut source, &counting_task(&shell.to_string_lossy())).await;
    let mut received = Vec::new();
    fetch_until(&mut source, &task_ref, &mut received, 20).await;
    let made = checkpoint(&mut source, &task_ref).await;
    relay(
        &mut source,
        &mut destination,
        &made.checkpoint_identifier,
        "m1",
    )
    .await;
    let refused = ask(
        &mut destination,
        MigrationRequest::TaskRestore(xgrid_protocol::messages::TaskRestoreRequest {
            checkpoint_identifier: "m1".into(),
            leave_stopped: false,
        }),
    )
    .await;
    match refused {
        MigrationReply::Error { refusal, .. } => {
            assert!(refusal.to_string().contains("RestoreFailed"), "{refusal}")
        }
        other => panic!("the restore should fail without the program: {other:?}"),
    }
    let status = destination.agent_status(|_| true).await;
    assert!(
        status.task_ref_array.is_empty(),
        "nothing of the task stays at the destination"
    );
    release(
        &mut source,
        &made.checkpoint_identifier,
        CheckpointDisposition::Resume,
    )
    .await;
    let results = finish(&mut source, &task_ref, &mut received).await;
    assert_eq!(results.outputs.termination_status, Some(0));
    assert_eq!(
        String::from_utf8_lossy(&received),
        String::from_utf8_lossy(&expected_output()),
        "the task ran exactly once, at its source"
    );
}

#[tokio::test]
async fn a_task_frozen_for_a_move_stays_frozen_while_the_controller_is_away() {
    if let Some(reason) = cannot_run() {
        eprintln!("skipped: {reason}");
        return;
    }
    let scratch = Scratch::new("away");
    let controller = ScriptedController::bind(None).await;
    let _agent = AgentProcess::start(&scratch, &controller, "source", None);
    let mut source = accept(&controller, "source").await;
    let kept = submit_and_start(&mut source, &counting_task("/bin/sh")).await;
    let dropped = submit_and_start(&mut source, &counting_task("/bin/sh")).await;
    let (mut kept_output, mut dropped_output) = (Vec::new(), Vec::new());
    fetch_until(&mut source, &kept, &mut kept_output, 20).await;
    fetch_until(&mut source, &dropped, &mut dropped_output, 20).await;
    let kept_dump = checkpoint(&mut source, &kept).await;
    let dropped_dump = checkpoint(&mut source, &dropped).await;
    // A task frozen for a move is not dumped a second time.
    let again = MigrationRequest::TaskCheckpoint(TaskCheckpointRequest {
        task_ref: kept.clone(),
        leave_running: true,
    });
    match ask(&mut source, again).await {
        MigrationReply::Error { refusal, .. } => {
            assert!(
                refusal.to_string().contains("CheckpointFailed"),
                "{refusal}"
            )
        }
        other => panic!("a frozen task was checkpointed again: {other:?}"),
    }

    // The controller is gone mid-move: whether the tasks now run elsewhere is its to say.
    source.hang_up();
    let mut source = accept(&controller, "source").await;
    let status = source
        .agent_status(|s| !s.frozen_checkpoints.is_empty())
        .await;
    let frozen: Vec<(String, String)> = status.frozen_checkpoints.into_iter().collect();
    let mut expected = vec![
        (kept_dump.checkpoint_identifier.clone(), kept.clone()),
        (dropped_dump.checkpoint_identifier.clone(), dropped.clone()),
    ];
    expected.sort();
    assert_eq!(frozen, expected, "the agent lists what it holds frozen");
    assert_eq!(
        status.current_task_count, 2,
        "frozen tasks keep their slots"
    );
    // Counting every 20 ms, a thawed task would have written lines by now.
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    fetch_to(&mut source, &kept, &mut kept_output, kept_dump.stdout_size).await;
    fetch(&mut source, &kept, &mut kept_output).await;
    assert_eq!(
        kept_output.len() as u64,
        kept_dump.stdout_size,
        "nothing written while the controller was away: the task stayed frozen"
    );

    // Back, the controller settles each: one moved on elsewhere, one resumes here.
    release(
        &mut source,
        &dropped_dump.checkpoint_identifier,
        CheckpointDisposition::Cancel,
    )
    .await;
    release(
        &mut source,
        &kept_dump.checkpoint_identifier,
        CheckpointDisposition::Resume,
    )
    .await;
    let results = finish(&mut source, &kept, &mut kept_output).await;
    assert_eq!(results.outputs.termination_status, Some(0));
    assert_eq!(
        String::from_utf8_lossy(&kept_output),
        String::from_utf8_lossy(&expected_output()),
        "the resumed task ran exactly once"
    );
    let status = source
        .agent_status(|s| !s.task_ref_array.contains(&dropped))
        .await;
    assert!(status.frozen_checkpoints.is_empty(), "{status:?}");
}

/// `taskRestore` of stream `id`, frozen until released; the restored task's taskRef.
async fn restore_frozen(connection: &mut Connection, id: &str) -> String {
    let request = MigrationRequest::TaskRestore(xgrid_protocol::messages::TaskRestoreRequest {
        checkpoint_identifier: id.into(),
        leave_stopped: true,
    });
    match ask(connection, request).await {
        MigrationReply::TaskRestore { task_ref } => task_ref,
        other => panic!("taskRestore refused: {other:?}"),
    }
}

/// Fetch the task's output until `received` holds `size` octets.
async fn fetch_to(connection: &mut Connection, task_ref: &str, received: &mut Vec<u8>, size: u64) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while (received.len() as u64) < size {
        assert!(
            tokio::time::Instant::now() < deadline,
            "output before the dump missing"
        );
        fetch(connection, task_ref, received).await;
    }
    assert_eq!(
        received.len() as u64,
        size,
        "nothing written after the dump"
    );
}

#[tokio::test]
async fn a_task_comes_back_where_an_ended_run_of_it_left_its_directory() {
    if let Some(reason) = cannot_run() {
        eprintln!("skipped: {reason}");
        return;
    }
    let scratch = Scratch::new("back");
    let controller = ScriptedController::bind(None).await;
    let (_agents, mut source, mut destination) = two_agents(&scratch, &controller, None).await;
    let task_ref = submit_and_start(&mut source, &counting_task("/bin/sh")).await;
    let mut received = Vec::new();
    fetch_until(&mut source, &task_ref, &mut received, 10).await;

    // A first move lands at the destination, but the controller gives that copy up (as when
    // the destination was lost) and cancels it; the task runs on at its source.
    let first = checkpoint(&mut source, &task_ref).await;
    fetch_to(&mut source, &task_ref, &mut received, first.stdout_size).await;
    relay(
        &mut source,
        &mut destination,
        &first.checkpoint_identifier,
        "m1",
    )
    .await;
    let given_up = restore_frozen(&mut destination, "m1").await;
    release(&mut destination, "m1", CheckpointDisposition::Resume).await;
    let mut cancel = task_ref_payload(&given_up);
    cancel.insert("control".into(), Value::from("cancel"));
    destination.request("taskControl", cancel).await;
    destination
        .task_status(&given_up, |s| s.task_state != TaskState::Running)
        .await;
    release(
        &mut source,
        &first.checkpoint_identifier,
        CheckpointDisposition::Resume,
    )
    .await;

    // The same task moves there again: the ended copy's directory, at the task's own path,
    // gives way to it.
    fetch_until(&mut source, &task_ref, &mut received, 30).await;
    let second = checkpoint(&mut source, &task_ref).await;
    fetch_to(&mut source, &task_ref, &mut received, second.stdout_size).await;
    relay(
        &mut source,
        &mut destination,
        &second.checkpoint_identifier,
        "m2",
    )
    .await;
    let restored = restore_frozen(&mut destination, "m2").await;
    release(
        &mut source,
        &second.checkpoint_identifier,
        CheckpointDisposition::Cancel,
    )
    .await;
    release(&mut destination, "m2", CheckpointDisposition::Resume).await;
    let results = finish(&mut destination, &restored, &mut received).await;
    assert_eq!(results.outputs.termination_status, Some(0));
    assert_eq!(
        String::from_utf8_lossy(&received),
        String::from_utf8_lossy(&expected_output()),
        "the task that came back wrote exactly an uninterrupted run's output"
    );
    // Nothing of the ended copy stays behind (a status listing it would never come empty).
    destination
        .agent_status(|s| s.task_ref_array.is_empty())
        .await;
}
