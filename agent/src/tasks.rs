//! The agent's tasks, kept across reconnections: what the controller's task requests do to
//! them, and what the agent must tell the controller about them (`taskStatus` on each
//! change, `taskControl` for the blocks a task prints, the agent's own counts).
//!
//! Output is read from the task's files into a buffer as it appears, because the executor
//! takes `<xgrid>` control blocks out of stdout only while reading it; `taskResults` then
//! hands over and clears the buffer. The buffer stops growing at [`MAX_STREAM_CHUNK`]: the
//! rest waits in the files until the controller fetches what is buffered.
//!
//! Choices the controller side should know (xgrid-wire.md leaves them open):
//! - `taskRefArray` lists every task the agent holds, including ended ones whose final
//!   results were not fetched yet; `currentTaskCount` counts only Pending, Running and
//!   Stopped tasks, which are also the ones that take a slot (a submitted task takes its
//!   slot before it starts).
//! - `taskFinalResults` removes the task: fetch `taskResults` first when the last
//!   `taskStatus` said `dataAvailable = YES`. Asked of a task that has not ended, it gets
//!   `{error = InvalidRequest}`.
//! - Error codes: an unknown taskRef gets `InvalidTaskRef`; a control the task's state does
//!   not allow (start after the end) `InvalidControl`; a submission the executor refuses
//!   (bad input file path, NUL in an argument) `InvalidTaskSpecification`; a local failure
//!   (disk, signals) `agent unavailable`.
//! - A failed task (e.g. its command does not exist) has its reason appended to `errData`.
//! - `taskMegahertz` is one core's speed while the task runs, else 0; `currentCPUPower` is
//!   that per running task, capped at `maximumCPUPower`.

use std::collections::BTreeMap;
use std::ops::Range;

use xgrid_protocol::envelope::Envelope;
use xgrid_protocol::messages::{
    AgentNotification, ErrorCode, TaskAction, TaskControlRequest, TaskFinalResultsReply,
    TaskOutputs, TaskResultsReply, TaskState, TaskStatus, TaskStreams, TaskSubmission,
};
use xgrid_protocol::plist::Value;

use crate::executor::{ExecError, Executor, Task, MAX_STREAM_CHUNK};
use crate::log;
use crate::probe::Processors;
use crate::store::DataStore;

/// How many taskRefs are reserved in the data directory at a time: saving the counter
/// costs an fsync, which per task was a good part of a submission's time.
const TASK_REF_RESERVATION: u64 = 1024;

/// One task and what the controller has been told about it.
#[derive(Debug)]
struct Entry {
    task: Task,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    /// The last `taskStatus` sent (`None`: none yet on this connection).
    reported: Option<TaskStatus>,
    /// The reason of a failure was added to the stderr buffer.
    failure_noted: bool,
}

impl Entry {
    /// A task nothing has been said about yet.
    fn new(task: Task) -> Entry {
        Entry {
            task,
            stdout: Vec::new(),
            stderr: Vec::new(),
            reported: None,
            failure_noted: false,
        }
    }

    fn buffered(&self) -> usize {
        self.stdout.len() + self.stderr.len()
    }
}

/// What a look at the tasks found to tell the controller.
#[derive(Debug, Default)]
pub struct Changes {
    /// `taskStatus` and `taskControl` notifications, in the order they happened.
    pub notifications: Vec<Envelope>,
    /// A task started, stopped, ended or went away: the agent's status changed too.
    pub status_changed: bool,
}

/// A running task as a checkpoint sees it.
#[derive(Debug, Clone)]
pub struct CheckpointTarget {
    pub leader_pid: i32,
    pub task_dir: std::path::PathBuf,
    pub stdout: std::path::PathBuf,
    pub stderr: std::path::PathBuf,
}

/// All tasks of the agent, by taskRef.
#[derive(Debug)]
pub struct TaskTable {
    executor: Executor,
    store: DataStore,
    agent_name: String,
    slots: u32,
    processors: Processors,
    tasks: BTreeMap<String, Entry>,
    /// taskRefs reserved and not handed out yet.
    reserved_refs: Range<u64>,
}

impl TaskTable {
    pub fn new(
        executor: Executor,
        store: DataStore,
        agent_name: &str,
        slots: u32,
        processors: Processors,
    ) -> TaskTable {
        TaskTable {
            executor,
            store,
            agent_name: agent_name.to_string(),
            slots,
            processors,
            tasks: BTreeMap::new(),
            reserved_refs: 0..0,
        }
    }

    /// Woken when a task started in a PID namespace ends ([`Executor::task_ended`]).
    pub fn task_ended(&self) -> std::sync::Arc<tokio::sync::Notify> {
        self.executor.task_ended()
    }

    /// Every task the agent holds, running or with results waiting to be fetched
    /// (`taskRefArray`), so a controller that lost track can re-attach them.
    pub fn task_refs(&self) -> Vec<String> {
        self.tasks.keys().cloned().collect()
    }

    /// Tasks that occupy a slot: not yet ended (`currentTaskCount`).
    pub fn active_count(&mut self) -> usize {
        self.tasks
            .values_mut()
            .map(|entry| entry.task.state().ok())
            .filter(|state| is_active(*state))
            .count()
    }

    /// `currentCPUPower`: one core's speed per running task, up to the whole machine.
    pub fn current_cpu_power(&mut self) -> f64 {
        let running = self
            .tasks
            .values_mut()
            .map(|entry| entry.task.state().ok())
            .filter(|state| *state == Some(TaskState::Running))
            .count();
        let power = f64::from(self.processors.mhz_per_core) * running as f64;
        power.min(self.processors.total_mhz() as f64)
    }

    /// `taskSubmission`: prepare the task under a fresh taskRef; it starts on `start`.
    pub fn submit(&mut self, submission: &TaskSubmission) -> Result<String, ErrorCode> {
        let active = self.active_count();
        if active >= self.slots as usize {
            log(format!(
                "refused a task: all {} slots are taken",
                self.slots
            ));
            return Err(ErrorCode::TooManyTasks);
        }
        let task_ref = self.next_task_ref().map_err(|e| {
            log(format!("refused a task: {e}"));
            ErrorCode::AgentUnavailable
        })?;
        let task = self.executor.prepare(&task_ref, submission).map_err(|e| {
            log(format!("refused a task ({}): {e}", submission.command));
            match e {
                ExecError::InvalidTask(_) | ExecError::InputFile { .. } => {
                    ErrorCode::InvalidTaskSpecification
                }
                _ => ErrorCode::AgentUnavailable,
            }
        })?;
        log(format!("task {task_ref} prepared: {}", submission.command));
        self.tasks.insert(task_ref.clone(), Entry::new(task));
        Ok(task_ref)
    }

    /// `taskControl`: start (or resume after a stop), stop (suspend) or cancel.
    pub async fn control(&mut self, request: &TaskControlRequest) -> Result<(), ErrorCode> {
        let entry = self.entry(&request.task_ref)?;
        let task = &mut entry.task;
        let outcome = match request.control {
            TaskAction::Start => task.start().await,
            TaskAction::Stop => task.stop(),
            TaskAction::Cancel => task.cancel(),
        };
        match outcome {
            Ok(()) => {
                let done = match request.control {
                    TaskAction::Start => "started",
                    TaskAction::Stop => "suspended",
                    TaskAction::Cancel => "canceled",
                };
                log(format!(
                    "task {} {done} as the controller asked; it is now {}",
                    request.task_ref,
                    task.state()
                        .map_or_else(|e| e.to_string(), |s| s.to_string().to_lowercase())
                ));
                Ok(())
            }
            Err(e) => {
                log(format!(
                    "task {}: could not {}: {e}",
                    request.task_ref, request.control
                ));
                Err(match e {
                    ExecError::InvalidState { .. } => ErrorCode::InvalidControl,
                    _ => ErrorCode::AgentUnavailable,
                })
            }
        }
    }

    /// `taskResults`: what the task wrote since the previous request.
    pub fn results(&mut self, task_ref: &str) -> Result<TaskResultsReply, ErrorCode> {
        let agent_name = self.agent_name.clone();
        let entry = self.entry(task_ref)?;
        if let Err(e) = collect_output(entry, &mut Vec::new()) {
            log(format!("task {task_ref}: could not read its output: {e}"));
        }
        let streams = TaskStreams {
            read_data: std::mem::take(&mut entry.stdout),
            err_data: std::mem::take(&mut entry.stderr),
        };
        Ok(TaskResultsReply {
            agent_name,
            task_ref: task_ref.to_string(),
            streams,
        })
    }

    /// `taskFinalResults`: the ended task's output files and exit status; the task's
    /// directory is removed afterwards, so the controller should fetch any remaining
    /// stream data (`dataAvailable = YES`) with `taskResults` first.
    pub async fn final_results(
        &mut self,
        task_ref: &str,
    ) -> Result<TaskFinalResultsReply, ErrorCode> {
        let entry = self.entry(task_ref)?;
        let state = entry.task.state().ok();
        if is_active(state) {
            log(format!(
                "task {task_ref}: final results asked for while it is still {}",
                state.map_or("unknown".to_string(), |s| s.to_string())
            ));
            return Err(ErrorCode::InvalidRequest);
        }
        let files = entry.task.output_files().map_err(|e| {
            log(format!(
                "task {task_ref}: could not collect its output files: {e}"
            ));
            ErrorCode::AgentUnavailable
        })?;
        for skipped in &files.skipped {
            log(format!("task {task_ref}: output file left out: {skipped}"));
        }
        let termination_status = entry.task.termination().map(|t| i64::from(t.status));
        let reply = TaskFinalResultsReply {
            agent_name: self.agent_name.clone(),
            task_ref: task_ref.to_string(),
            outputs: TaskOutputs {
                output_files: files.files,
                termination_status,
            },
        };
        if let Some(entry) = self.tasks.remove(task_ref) {
            if let Err(e) = entry.task.remove().await {
                log(format!(
                    "task {task_ref}: could not remove its directory: {e}"
                ));
            }
        }
        log(format!("task {task_ref}: results delivered, task removed"));
        Ok(reply)
    }

    /// Look at every task: read new output, and say what changed since it was last
    /// reported. One `taskStatus` per change of state, and one when output appears after
    /// the controller had fetched everything.
    pub fn poll(&mut self) -> Changes {
        let mut changes = Changes::default();
        let mhz = f64::from(self.processors.mhz_per_core);
        for (task_ref, entry) in &mut self.tasks {
            let state = match entry.task.state() {
                Ok(state) => state,
                Err(e) => {
                    log(format!("task {task_ref}: {e}"));
                    continue;
                }
            };
            let mut controls = Vec::new();
            let unread = collect_output(entry, &mut controls).unwrap_or_else(|e| {
                log(format!("task {task_ref}: could not read its output: {e}"));
                entry.task.has_new_output()
            });
            changes.notifications.extend(
                controls
                    .into_iter()
                    .filter_map(|control| control_notification(task_ref, control)),
            );
            if state == TaskState::Failed && !entry.failure_noted {
                entry.failure_noted = true;
                // The reason reaches the job's owner through the task's stderr.
                if let Some(reason) = entry.task.failure() {
                    log(format!("task {task_ref} failed: {reason}"));
                    entry.stderr.extend_from_slice(reason.as_bytes());
                    entry.stderr.push(b'\n');
                }
            }
            let status = TaskStatus {
                task_state: state,
                task_megahertz: if state == TaskState::Running {
                    mhz
                } else {
                    0.0
                },
                termination_status: entry.task.termination().map(|t| i64::from(t.status)),
                data_available: entry.buffered() > 0 || unread,
            };
            if is_news(entry.reported.as_ref(), &status) {
                if entry.reported.as_ref().map(|r| r.task_state) != Some(state) {
                    changes.status_changed = true;
                    if matches!(state, TaskState::Terminated) {
                        log(format!(
                            "task {task_ref} ended with status {}",
                            status.termination_status.unwrap_or_default()
                        ));
                    }
                }
                changes.notifications.push(
                    AgentNotification::TaskStatus {
                        task_ref: task_ref.clone(),
                        status: status.clone(),
                    }
                    .to_envelope(),
                );
                entry.reported = Some(status);
            } else if let Some(last) = &mut entry.reported {
                // Fetched since: the next output is news again, but this is not.
                last.data_available = status.data_available;
            }
        }
        changes
    }

    /// What a checkpoint of `task_ref` needs: its running namespace init and its files.
    pub fn checkpoint_target(&mut self, task_ref: &str) -> Result<CheckpointTarget, ErrorCode> {
        let entry = self.entry(task_ref)?;
        let state = entry.task.state().ok();
        let leader = entry.task.leader_pid().filter(|_| is_active(state));
        let Some(leader_pid) = leader else {
            log(format!(
                "task {task_ref}: cannot be checkpointed while it is {}",
                state.map_or("unknown".to_string(), |s| s.to_string())
            ));
            return Err(ErrorCode::InvalidTaskRef);
        };
        Ok(CheckpointTarget {
            leader_pid,
            task_dir: entry.task.task_dir().to_path_buf(),
            stdout: entry.task.stdout_path().to_path_buf(),
            stderr: entry.task.stderr_path().to_path_buf(),
        })
    }

    /// Take over a task restored from another agent's checkpoint, under a fresh taskRef; it
    /// is reported as any task from the next look on.
    pub fn adopt(
        &mut self,
        restored: crate::checkpoint::RestoredTask,
        task_dir: &std::path::Path,
        stream_sizes: (u64, u64),
    ) -> Result<String, ErrorCode> {
        let task_ref = self.next_task_ref().map_err(|e| {
            log(format!("could not number a restored task: {e}"));
            ErrorCode::AgentUnavailable
        })?;
        let task = self
            .executor
            .adopt(&task_ref, restored, task_dir, stream_sizes)
            .map_err(|e| {
                log(format!("could not take over a restored task: {e}"));
                ErrorCode::AgentUnavailable
            })?;
        log(format!(
            "task {task_ref} restored from a checkpoint in {}",
            task_dir.display()
        ));
        self.tasks.insert(task_ref.clone(), Entry::new(task));
        Ok(task_ref)
    }

    /// Drop a task that now runs on another agent, without a word to the controller: its
    /// taskRef simply leaves `taskRefArray`.
    pub async fn withdraw(&mut self, task_ref: &str, why: &str) {
        if let Some(entry) = self.tasks.remove(task_ref) {
            if let Err(e) = entry.task.remove().await {
                log(format!("task {task_ref}: could not clean up: {e}"));
            }
            log(format!("task {task_ref} {why}"));
        }
    }

    /// The ended task (its results not fetched) whose directory is `dir`: a run of a task
    /// the controller gave up on here, whose directory a restore of the same task may take.
    pub fn ended_task_at(&mut self, dir: &std::path::Path) -> Option<String> {
        self.tasks
            .iter_mut()
            .filter(|(_, entry)| entry.task.task_dir() == dir)
            .find_map(|(task_ref, entry)| {
                (!is_active(entry.task.state().ok())).then(|| task_ref.clone())
            })
    }

    /// The agent-side pids of every process of every task (what is not the owner's load).
    pub fn process_ids(&self) -> Vec<i32> {
        self.tasks
            .values()
            .flat_map(|entry| entry.task.process_ids())
            .collect()
    }

    /// A new connection knows nothing yet: report every task afresh on the next poll.
    pub fn forget_reports(&mut self) {
        for entry in self.tasks.values_mut() {
            entry.reported = None;
        }
    }

    /// Cancel every task and remove its directory (the agent is stopping).
    pub async fn cancel_all(&mut self) {
        for (task_ref, entry) in std::mem::take(&mut self.tasks) {
            let mut task = entry.task;
            let running = is_active(task.state().ok());
            if let Err(e) = task.remove().await {
                log(format!("task {task_ref}: could not clean up: {e}"));
            } else if running {
                log(format!("task {task_ref} cancelled"));
            }
        }
    }

    fn next_task_ref(&mut self) -> Result<String, crate::store::StoreError> {
        if self.reserved_refs.is_empty() {
            self.reserved_refs = self.store.reserve_task_refs(TASK_REF_RESERVATION)?;
        }
        let next = self.reserved_refs.start;
        self.reserved_refs.start += 1;
        Ok(next.to_string())
    }

    fn entry(&mut self, task_ref: &str) -> Result<&mut Entry, ErrorCode> {
        self.tasks.get_mut(task_ref).ok_or_else(|| {
            log(format!("the controller named an unknown task {task_ref:?}"));
            ErrorCode::InvalidTaskRef
        })
    }
}

/// Whether `now` should be sent after `last` was: a new state or exit status, or output
/// waiting when none was. Output that keeps growing before the controller fetches it is not
/// news again, so a chatty task cannot flood the controller.
fn is_news(last: Option<&TaskStatus>, now: &TaskStatus) -> bool {
    match last {
        None => true,
        Some(last) => {
            last.task_state != now.task_state
                || last.termination_status != now.termination_status
                || (now.data_available && !last.data_available)
        }
    }
}

/// Whether a task still holds a slot; an unreadable state counts as holding one.
fn is_active(state: Option<TaskState>) -> bool {
    !matches!(state, Some(TaskState::Terminated | TaskState::Failed))
}

/// Move new output from the task's files into the entry's buffer (while it is small),
/// adding the control blocks found in stdout to `controls`. True when output is still in
/// the files after a read (more than a chunk was waiting, or the task wrote meanwhile):
/// with what is buffered, that is `dataAvailable`. The files are looked at a second time
/// only after a read, not on every poll of every task (each look is two `fstat`s).
fn collect_output(entry: &mut Entry, controls: &mut Vec<Value>) -> Result<bool, ExecError> {
    // A full buffer is `dataAvailable` already, whatever the files hold.
    if entry.buffered() as u64 >= MAX_STREAM_CHUNK || !entry.task.has_new_output() {
        return Ok(false);
    }
    let output = entry.task.read_new_output()?;
    entry.stdout.extend_from_slice(&output.stdout);
    entry.stderr.extend_from_slice(&output.stderr);
    controls.extend(output.controls);
    for malformed in output.malformed_controls {
        log(format!(
            "task {}: ignored a malformed <xgrid> block ({}): {:?}",
            entry.task.task_ref(),
            malformed.error,
            malformed.text
        ));
    }
    Ok(entry.task.has_new_output())
}

/// A `taskControl` notification carrying the block as the task wrote it (so keys this
/// agent does not know still reach the controller); `None`, after a log line, for a block
/// that is not a task-control dictionary the protocol knows.
fn control_notification(task_ref: &str, control: Value) -> Option<Envelope> {
    let Value::Dictionary(payload) = control else {
        log(format!(
            "task {task_ref}: ignored an <xgrid> block that is a {}, not a dictionary",
            control.kind_name()
        ));
        return None;
    };
    let envelope = Envelope::notification(task_ref, "taskControl", payload);
    match AgentNotification::from_envelope(&envelope) {
        Ok(_) => Some(envelope),
        Err(e) => {
            log(format!("task {task_ref}: ignored an <xgrid> block: {e}"));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use xgrid_protocol::plist::Dictionary;

    fn status(task_state: TaskState, termination: Option<i64>, data: bool) -> TaskStatus {
        TaskStatus {
            task_state,
            task_megahertz: 2000.0,
            termination_status: termination,
            data_available: data,
        }
    }

    #[test]
    fn what_counts_as_news() {
        let running = status(TaskState::Running, None, false);
        let running_with_data = status(TaskState::Running, None, true);
        assert!(is_news(None, &running), "the first status is always sent");
        assert!(!is_news(Some(&running), &running));
        assert!(is_news(Some(&running), &running_with_data));
        assert!(
            !is_news(Some(&running_with_data), &running_with_data),
            "more output before a fetch is not news"
        );
        assert!(
            !is_news(Some(&running_with_data), &running),
            "a fetch is not news"
        );
        assert!(is_news(
            Some(&running),
            &status(TaskState::Stopped, None, false)
        ));
        assert!(is_news(
            Some(&running_with_data),
            &status(TaskState::Terminated, Some(0), true)
        ));
        assert!(is_news(
            Some(&status(TaskState::Terminated, None, false)),
            &status(TaskState::Terminated, Some(1), false)
        ));
    }

    #[test]
    fn control_blocks_become_notifications_only_when_readable() {
        let mut block = Dictionary::new();
        block.insert("control".into(), Value::from("statusUpdate"));
        block.insert("percentDone".into(), Value::Real(12.5));
        block.insert("extra".into(), Value::from("kept"));
        let notification =
            control_notification("7", Value::Dictionary(block.clone())).expect("a notification");
        assert_eq!(notification.identifier, "7");
        assert_eq!(notification.name, "taskControl");
        assert_eq!(notification.payload, block, "sent as the task wrote it");

        assert!(control_notification("7", Value::from("statusUpdate")).is_none());
        let mut unknown = Dictionary::new();
        unknown.insert("control".into(), Value::from("makeCoffee"));
        assert!(control_notification("7", Value::Dictionary(unknown)).is_none());
        assert!(control_notification("7", Value::Dictionary(Dictionary::new())).is_none());
    }

    #[test]
    fn ended_tasks_free_their_slot() {
        assert!(is_active(Some(TaskState::Pending)));
        assert!(is_active(Some(TaskState::Running)));
        assert!(is_active(Some(TaskState::Stopped)));
        assert!(is_active(None), "an unreadable task is not assumed gone");
        assert!(!is_active(Some(TaskState::Terminated)));
        assert!(!is_active(Some(TaskState::Failed)));
    }
}
