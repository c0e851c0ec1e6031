//! The steps of docs/migration.md over one agent connection each: checkpoint, fetch the
//! output a dump needs, relay the stream through its file, write a kept file to an agent,
//! restore, release; and where a stream's file lives.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use xgrid_protocol::messages::{
    AgentReply, CheckpointDisposition, CheckpointReadRequest, CheckpointReleaseRequest,
    CheckpointWriteRequest, ControllerToAgentRequest, MigrationReply, MigrationRequest,
    TaskCheckpointReply, TaskCheckpointRequest, TaskRefRequest, TaskRestoreRequest,
    CHECKPOINT_CHUNK,
};
use xgrid_protocol::plist::Date;

use super::{MigrationError, DRAIN_ATTEMPTS};
use crate::agent_service::AgentLink;
use crate::notify::GridEvent;
use crate::shared::Shared;
use crate::store::{AgentId, CheckpointRecord, JobId, OutputStream};

pub(super) fn link(shared: &Shared, agent: AgentId) -> Result<Arc<AgentLink>, MigrationError> {
    shared
        .agent_link(agent)
        .ok_or(MigrationError::NotConnected(agent))
}

/// The taskRef of a task placed on `agent`.
pub(super) async fn task_ref_on(
    shared: &Shared,
    job: JobId,
    task: &str,
    agent: AgentId,
) -> Result<String, MigrationError> {
    let record = shared.store.task(job, task).await?;
    match record.task_ref {
        Some(task_ref) if record.agent == Some(agent) && record.state.is_on_agent() => Ok(task_ref),
        _ => Err(MigrationError::NotThere {
            job,
            task: task.to_string(),
            agent,
        }),
    }
}

/// Where a new stream of the task goes; the name is also the checkpoint identifier the
/// destination agent gets.
pub(super) fn stream_path(dir: &Path, job: JobId, task: &str) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let task: String = task
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    let stamp = (Date::now().0 * 1000.0) as u64;
    let name = format!(
        "{job}-{task}-{stamp}-{}",
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    dir.join(name)
}

pub(super) fn stream_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn part_of(path: &Path) -> PathBuf {
    let mut part = path.as_os_str().to_owned();
    part.push(".part");
    PathBuf::from(part)
}

pub(super) async fn remove_file(shared: &Shared, path: impl AsRef<Path>) {
    let path = path.as_ref();
    if let Err(e) = tokio::fs::remove_file(path).await {
        if e.kind() != std::io::ErrorKind::NotFound {
            shared.log(format!(
                "cannot remove the checkpoint file {}: {e}",
                path.display()
            ));
        }
    }
}

/// Removes what a stream left at `path`, complete or not.
pub(super) async fn remove_stream(shared: &Shared, path: &Path) {
    remove_file(shared, part_of(path)).await;
    remove_file(shared, path).await;
}

/// Step 1: dump the task on its agent.
pub(super) async fn checkpoint(
    source: &AgentLink,
    task_ref: &str,
    leave_running: bool,
) -> Result<TaskCheckpointReply, MigrationError> {
    let request = MigrationRequest::TaskCheckpoint(TaskCheckpointRequest {
        task_ref: task_ref.to_string(),
        leave_running,
    });
    match source.request_migration(&request).await? {
        MigrationReply::TaskCheckpoint(reply) => Ok(reply),
        other => Err(unexpected("taskCheckpoint", &other)),
    }
}

fn unexpected(request: &'static str, reply: &MigrationReply) -> MigrationError {
    MigrationError::UnexpectedReply {
        request,
        answer: reply.name().to_string(),
    }
}

/// Step 2: fetch the task's output until the store holds at least what the task had
/// written at the dump.
pub(super) async fn drain_output(
    shared: &Shared,
    source: &AgentLink,
    job: JobId,
    task: &str,
    task_ref: &str,
    taken: &TaskCheckpointReply,
) -> Result<(), MigrationError> {
    let (mut stdout, mut stderr) = shared.store.output_sizes(job, task).await?;
    for attempt in 0..DRAIN_ATTEMPTS {
        if stdout >= taken.stdout_size && stderr >= taken.stderr_size {
            return Ok(());
        }
        let request = ControllerToAgentRequest::TaskResults(TaskRefRequest {
            task_ref: task_ref.to_string(),
        });
        let streams = match source.request(request).await? {
            AgentReply::TaskResults(reply) => reply.streams,
            other => {
                return Err(MigrationError::UnexpectedReply {
                    request: "taskResults",
                    answer: other.name().to_string(),
                })
            }
        };
        if streams.read_data.is_empty() && streams.err_data.is_empty() {
            // The task's driver may have fetched it first; give the store a moment.
            tokio::time::sleep(Duration::from_millis(10 * u64::from(attempt + 1))).await;
        } else {
            for (stream, data) in [
                (OutputStream::Stdout, &streams.read_data),
                (OutputStream::Stderr, &streams.err_data),
            ] {
                shared.store.append_output(job, task, stream, data).await?;
            }
            shared.publish(GridEvent::JobOutput { job });
        }
        (stdout, stderr) = shared.store.output_sizes(job, task).await?;
    }
    Err(MigrationError::OutputBehind {
        stdout,
        stderr,
        want_stdout: taken.stdout_size,
        want_stderr: taken.stderr_size,
    })
}

/// Step 3: read the stream from the source into `path` (through `path.part`), relaying
/// each chunk to the destination as it arrives. Returns the octets moved.
pub(super) async fn relay(
    source: &AgentLink,
    taken: &TaskCheckpointReply,
    destination: Option<&AgentLink>,
    path: &Path,
) -> Result<u64, MigrationError> {
    let part = part_of(path);
    let file_error = |source| MigrationError::File {
        path: part.display().to_string(),
        source,
    };
    let mut file = tokio::fs::File::create(&part).await.map_err(file_error)?;
    let identifier = stream_name(path);
    let read_at = |offset: u64| async move {
        let read = MigrationRequest::CheckpointRead(CheckpointReadRequest {
            checkpoint_identifier: taken.checkpoint_identifier.clone(),
            offset,
            length: CHECKPOINT_CHUNK,
        });
        match source.request_migration(&read).await? {
            MigrationReply::CheckpointRead(chunk) => Ok(chunk),
            other => Err(unexpected("checkpointRead", &other)),
        }
    };
    // The next chunk is read from the source while this one is written to the file and to
    // the destination: the hops overlap instead of taking turns, which matters because the
    // task is frozen meanwhile.
    let mut offset = 0u64;
    let mut chunk = read_at(0).await?;
    loop {
        if chunk.checkpoint_data.is_empty() && !chunk.end_of_checkpoint {
            return Err(MigrationError::StalledStream { offset });
        }
        let length = chunk.checkpoint_data.len() as u64;
        let end = chunk.end_of_checkpoint;
        let write = CheckpointWriteRequest {
            checkpoint_identifier: identifier.clone(),
            offset,
            checkpoint_data: chunk.checkpoint_data,
            end_of_checkpoint: end,
        };
        let reading = async {
            match end {
                true => Ok(None),
                false => read_at(offset + length).await.map(Some),
            }
        };
        let to_file = async {
            file.write_all(&write.checkpoint_data)
                .await
                .map_err(file_error)
        };
        let to_destination = async {
            let Some(destination) = destination else {
                return Ok(());
            };
            let request = MigrationRequest::CheckpointWrite(write.clone());
            match destination.request_migration(&request).await? {
                MigrationReply::CheckpointWrite => Ok(()),
                other => Err(unexpected("checkpointWrite", &other)),
            }
        };
        let (next, written, sent) = tokio::join!(reading, to_file, to_destination);
        written?;
        sent?;
        offset += length;
        match next? {
            Some(following) => chunk = following,
            None => break,
        }
    }
    if offset != taken.checkpoint_size {
        return Err(MigrationError::WrongStreamSize {
            got: offset,
            announced: taken.checkpoint_size,
        });
    }
    // Not synced here: a move's task is frozen meanwhile. `checkpoint_record` syncs the file
    // before the store counts on it.
    drop(file);
    tokio::fs::rename(&part, path)
        .await
        .map_err(|source| MigrationError::File {
            path: path.display().to_string(),
            source,
        })?;
    Ok(offset)
}

/// Step 3 from a kept file: write it to the destination chunk by chunk.
pub(super) async fn send_file(
    destination: &AgentLink,
    path: &Path,
    identifier: &str,
) -> Result<u64, MigrationError> {
    let file_error = |source| MigrationError::File {
        path: path.display().to_string(),
        source,
    };
    let mut file = tokio::fs::File::open(path).await.map_err(file_error)?;
    let size = file.metadata().await.map_err(file_error)?.len();
    let chunk_size = usize::try_from(CHECKPOINT_CHUNK).unwrap_or(1 << 20);
    let mut offset = 0u64;
    loop {
        let mut chunk = Vec::with_capacity(chunk_size);
        (&mut file)
            .take(CHECKPOINT_CHUNK)
            .read_to_end(&mut chunk)
            .await
            .map_err(file_error)?;
        let length = chunk.len() as u64;
        let end = offset + length >= size || chunk.is_empty();
        let write = MigrationRequest::CheckpointWrite(CheckpointWriteRequest {
            checkpoint_identifier: identifier.to_string(),
            offset,
            checkpoint_data: chunk,
            end_of_checkpoint: end,
        });
        match destination.request_migration(&write).await? {
            MigrationReply::CheckpointWrite => {}
            other => return Err(unexpected("checkpointWrite", &other)),
        }
        offset += length;
        if end {
            return Ok(offset);
        }
    }
}

/// Step 4: bring the written stream back on the destination, frozen until the move is
/// recorded (`checkpointRelease` of `identifier` there then lets it run); the new taskRef.
pub(super) async fn restore(
    destination: &AgentLink,
    identifier: &str,
) -> Result<String, MigrationError> {
    let request = MigrationRequest::TaskRestore(TaskRestoreRequest {
        checkpoint_identifier: identifier.to_string(),
        leave_stopped: true,
    });
    match destination.request_migration(&request).await? {
        MigrationReply::TaskRestore { task_ref } => Ok(task_ref),
        other => Err(unexpected("taskRestore", &other)),
    }
}

/// Step 5 (and clean-ups): `checkpointRelease`.
pub(super) async fn release(
    agent: &AgentLink,
    identifier: &str,
    disposition: CheckpointDisposition,
) -> Result<(), MigrationError> {
    let request = MigrationRequest::CheckpointRelease(CheckpointReleaseRequest {
        checkpoint_identifier: identifier.to_string(),
        disposition,
    });
    match agent.request_migration(&request).await? {
        MigrationReply::CheckpointRelease => Ok(()),
        other => Err(unexpected("checkpointRelease", &other)),
    }
}

/// Keeps the stream at `path` as the task's last checkpoint; removes the one it replaces.
pub(super) async fn keep_checkpoint(
    shared: &Shared,
    job: JobId,
    task: &str,
    path: &Path,
    taken: &TaskCheckpointReply,
    source: AgentId,
    taken_at: Date,
) -> Result<(), MigrationError> {
    let record = checkpoint_record(shared, path, taken, source, taken_at).await?;
    if let Some(old) = shared.store.record_checkpoint(job, task, &record).await? {
        remove_file(shared, &old).await;
    }
    Ok(())
}

/// The record of the stream at `path`, once the file is on disk for good.
pub(super) async fn checkpoint_record(
    shared: &Shared,
    path: &Path,
    taken: &TaskCheckpointReply,
    source: AgentId,
    taken_at: Date,
) -> Result<CheckpointRecord, MigrationError> {
    // On disk for good before the store says a task can resume from it.
    let file_error = |source| MigrationError::File {
        path: path.display().to_string(),
        source,
    };
    tokio::fs::File::open(path)
        .await
        .map_err(file_error)?
        .sync_all()
        .await
        .map_err(file_error)?;
    let cpu_features = shared
        .store
        .agent_extensions()
        .await?
        .into_iter()
        .find(|e| e.agent == source)
        .map(|e| e.cpu_features)
        .unwrap_or_default();
    Ok(CheckpointRecord {
        path: path.display().to_string(),
        size: taken.checkpoint_size,
        stdout_size: taken.stdout_size,
        stderr_size: taken.stderr_size,
        frozen_milliseconds: taken.frozen_milliseconds,
        cpu_features,
        taken_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_names_are_plain_and_unique() {
        let dir = Path::new("/data/checkpoints");
        let first = stream_path(dir, 12, "frame 0/../x");
        let second = stream_path(dir, 12, "frame 0/../x");
        assert_ne!(first, second);
        let name = stream_name(&first);
        assert!(name.starts_with("12-frame_0____x-"), "{name}");
        assert!(name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
        assert_eq!(first.parent(), Some(dir));
        assert_eq!(
            part_of(&first).extension().and_then(|e| e.to_str()),
            Some("part")
        );
    }
}
