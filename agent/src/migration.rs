//! The agent's half of moving running tasks (docs/migration.md): the checkpoints it made
//! and whose streams it hands out chunk by chunk, the streams it receives chunk by chunk,
//! and the restores. It knows nothing of the wire: the session turns requests into calls
//! here and results into replies.
//!
//! A task checkpointed for a move stays frozen until the controller says how the move
//! ended (`checkpointRelease`): `cancel` when it runs elsewhere, `resume` when it does not.
//! It stays frozen when the controller goes away too ([`Migrations::connection_lost`]): the
//! move may have ended with the task running at its destination, which only the controller
//! knows, so thawing it here could run it twice. The agent lists its frozen tasks in every
//! status ([`Migrations::frozen`]) until the controller, back, releases them. A task restored
//! here for a move may likewise be held frozen (`leaveStopped`) until the controller has
//! recorded the move, so that whichever end the controller loses, one copy runs.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use xgrid_protocol::messages::{CheckpointDisposition as Disposition, ErrorCode};

use crate::checkpoint::{
    self, Checkpoint, CheckpointError, Checkpointer, PackError, PackReader, RestoredTask, Unpacked,
    Unpacker,
};

/// The largest chunk handed out by one `checkpointRead`, whatever the controller asks for.
pub const MAX_CHUNK: u64 = 4 << 20;

/// Why a checkpoint, a transfer or a restore did not happen. [`MigrationError::code`] is
/// the error code of the reply.
#[derive(Debug, thiserror::Error)]
pub enum MigrationError {
    #[error("no checkpoint {0:?} here")]
    UnknownCheckpoint(String),
    #[error("checkpoint {id:?} is at octet {expected}, not {asked}: chunks go in order")]
    OutOfOrder {
        id: String,
        expected: u64,
        asked: u64,
    },
    #[error("checkpoint {0:?} already exists")]
    DuplicateCheckpoint(String),
    #[error("the stream of checkpoint {0:?} has not been written to its end")]
    Incomplete(String),
    #[error("checkpoint {0:?} is being received, not sent")]
    NotOutgoing(String),
    #[error("could not checkpoint the task: {0}")]
    Checkpoint(#[source] CheckpointError),
    #[error("could not restore the task: {0}")]
    Restore(#[source] CheckpointError),
    #[error("the checkpoint stream is damaged: {0}")]
    Stream(#[from] PackError),
    #[error("could not read the checkpoint stream: {0}")]
    Read(#[source] std::io::Error),
}

impl MigrationError {
    /// The `error` code of docs/migration.md.
    pub fn code(&self) -> ErrorCode {
        match self {
            MigrationError::Checkpoint(_) => ErrorCode::CheckpointFailed,
            MigrationError::Restore(_) => ErrorCode::RestoreFailed,
            _ => ErrorCode::InvalidCheckpoint,
        }
    }
}

/// A checkpoint just made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Made {
    pub id: String,
    /// Octets of the stream.
    pub size: u64,
    /// The task's stdout and stderr files at the dump.
    pub stdout_size: u64,
    pub stderr_size: u64,
    /// How long `criu dump` kept the task frozen.
    pub frozen: Duration,
}

/// What the session must do after a release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Released {
    /// The task runs elsewhere now, or must not run here: drop it from the task table
    /// without a word (`why` is for the log).
    Withdraw { task_ref: String, why: &'static str },
    /// Nothing more to do (the task runs on here, or only images went).
    Done,
}

/// The task files a checkpoint needs from the task table.
#[derive(Debug, Clone)]
pub struct TaskFiles<'a> {
    pub task_ref: &'a str,
    /// The namespace init: the root of the tree CRIU dumps.
    pub leader_pid: i32,
    pub task_dir: &'a Path,
    pub stdout: &'a Path,
    pub stderr: &'a Path,
}

#[derive(Debug)]
struct Outgoing {
    task_ref: String,
    checkpoint: Checkpoint,
    stream: PackReader,
    /// The stream's length, known before the first read.
    size: u64,
    /// Whether the task is held frozen for a move.
    frozen: bool,
}

/// A task restored here with `leaveStopped`, frozen until the controller has recorded its
/// move.
#[derive(Debug)]
struct Restored {
    task_ref: String,
    leader_pid: i32,
}

#[derive(Debug)]
enum Incoming {
    Receiving { unpacker: Unpacker, offset: u64 },
    Complete(Unpacked),
}

/// Every checkpoint this agent is sending or receiving.
#[derive(Debug)]
pub struct Migrations {
    checkpointer: Checkpointer,
    /// `DATA/checkpoints`: `out-N/` for checkpoints made here, `in-N/` for images received.
    root: PathBuf,
    outgoing: HashMap<String, Outgoing>,
    incoming: HashMap<String, Incoming>,
    /// Tasks restored here and held frozen, by the identifier of the stream they came in.
    restored: HashMap<String, Restored>,
    next: u64,
}

impl Migrations {
    /// Checkpoints under `root`, which is emptied: checkpoints of an earlier run belong to
    /// tasks that are gone.
    pub fn new(checkpointer: Checkpointer, root: &Path) -> Migrations {
        let _ = std::fs::remove_dir_all(root);
        Migrations {
            checkpointer,
            root: root.to_path_buf(),
            outgoing: HashMap::new(),
            incoming: HashMap::new(),
            restored: HashMap::new(),
            next: 1,
        }
    }

    pub fn checkpointer(&self) -> &Checkpointer {
        &self.checkpointer
    }

    /// Whether `task_ref` is frozen for a move (it must not be checkpointed again).
    pub fn is_frozen(&self, task_ref: &str) -> bool {
        let dumped = self
            .outgoing
            .values()
            .any(|o| o.frozen && o.task_ref == task_ref);
        dumped || self.restored.values().any(|r| r.task_ref == task_ref)
    }

    /// The tasks held frozen for a move, dumped here or restored here, by checkpoint
    /// identifier (`xgridFrozenCheckpoints`).
    pub fn frozen(&self) -> BTreeMap<String, String> {
        let dumped = self.outgoing.iter().filter(|(_, o)| o.frozen);
        let dumped = dumped.map(|(id, o)| (id.clone(), o.task_ref.clone()));
        let restored = self.restored.iter();
        let restored = restored.map(|(id, r)| (id.clone(), r.task_ref.clone()));
        dumped.chain(restored).collect()
    }

    /// The task restored from stream `id` (with `leaveStopped`) became `task_ref` here, its
    /// namespace init `leader_pid`: it stays frozen until [`Migrations::release`] of `id`.
    pub fn hold_restored(&mut self, id: &str, task_ref: &str, leader_pid: i32) {
        let restored = Restored {
            task_ref: task_ref.to_string(),
            leader_pid,
        };
        self.restored.insert(id.to_string(), restored);
    }

    /// `taskCheckpoint`: dump the task. With `leave_running` it runs on at once; otherwise
    /// it stays frozen until [`Migrations::release`].
    pub async fn checkpoint(
        &mut self,
        task: TaskFiles<'_>,
        leave_running: bool,
    ) -> Result<Made, MigrationError> {
        let id = format!("{}-{}", task.task_ref, self.next);
        let dir = self.root.join(format!("out-{}", self.next));
        self.next += 1;
        // Pre-copy where the kernel tracks dirty memory: one round copies the memory while
        // the task runs, so the final dump (the frozen part) writes only what changed.
        let pre_copy = self
            .checkpointer
            .capabilities()
            .is_some_and(|criu| criu.pre_copy);
        if pre_copy && !leave_running {
            if let Err(e) = self.checkpointer.pre_dump(task.leader_pid, &dir).await {
                // The final dump alone still works; it only freezes the task longer.
                crate::log(format!(
                    "task {}: pre-copy failed ({e}); dumping directly",
                    task.task_ref
                ));
            }
        }
        // The task stays stopped through the dump and while its sizes are read, so the
        // sizes are the dump's.
        let checkpoint = self
            .checkpointer
            .dump(task.leader_pid, task.task_dir, &dir, true)
            .await
            .map_err(MigrationError::Checkpoint)?;
        let size_of = |path: &Path| std::fs::metadata(path).map_or(0, |m| m.len());
        let (stdout_size, stderr_size) = (size_of(task.stdout), size_of(task.stderr));
        let stream = match checkpoint.pack() {
            Ok(stream) => stream,
            Err(e) => {
                let _ = checkpoint.resume();
                let _ = std::fs::remove_dir_all(&dir);
                return Err(MigrationError::Checkpoint(e));
            }
        };
        if leave_running {
            checkpoint.resume().map_err(MigrationError::Checkpoint)?;
        }
        let made = Made {
            id: id.clone(),
            size: stream.total_len(),
            stdout_size,
            stderr_size,
            frozen: checkpoint.dump_time(),
        };
        self.outgoing.insert(
            id,
            Outgoing {
                task_ref: task.task_ref.to_string(),
                checkpoint,
                stream,
                size: made.size,
                frozen: !leave_running,
            },
        );
        Ok(made)
    }

    /// `checkpointRead`: the next chunk of a checkpoint's stream, and whether it is the last.
    pub fn read(
        &mut self,
        id: &str,
        offset: u64,
        length: u64,
    ) -> Result<(Vec<u8>, bool), MigrationError> {
        let outgoing = self.outgoing.get_mut(id).ok_or_else(|| self::unknown(id))?;
        let at = outgoing.stream.bytes_written();
        if offset != at {
            return Err(MigrationError::OutOfOrder {
                id: id.to_string(),
                expected: at,
                asked: offset,
            });
        }
        let want = length.clamp(1, MAX_CHUNK);
        let mut chunk = Vec::with_capacity(usize::try_from(want).unwrap_or(0));
        (&mut outgoing.stream)
            .take(want)
            .read_to_end(&mut chunk)
            .map_err(MigrationError::Read)?;
        let end = outgoing.stream.bytes_written() >= outgoing.size;
        Ok((chunk, end))
    }

    /// `checkpointWrite`: the next chunk of a stream sent here; `end` on the last one.
    pub fn write(
        &mut self,
        id: &str,
        offset: u64,
        data: &[u8],
        end: bool,
    ) -> Result<(), MigrationError> {
        if offset == 0 && !self.incoming.contains_key(id) {
            let dir = self.root.join(format!("in-{}", self.next));
            self.next += 1;
            if let Err(e) = std::fs::create_dir_all(&self.root) {
                return Err(MigrationError::Restore(CheckpointError::Io {
                    action: "create",
                    path: self.root.clone(),
                    source: e,
                }));
            }
            self.incoming.insert(
                id.to_string(),
                Incoming::Receiving {
                    unpacker: Unpacker::new(&dir),
                    offset: 0,
                },
            );
        }
        let Some(entry) = self.incoming.remove(id) else {
            return Err(unknown(id));
        };
        let Incoming::Receiving {
            mut unpacker,
            offset: at,
        } = entry
        else {
            self.incoming.insert(id.to_string(), entry);
            return Err(MigrationError::DuplicateCheckpoint(id.to_string()));
        };
        if offset != at {
            self.incoming.insert(
                id.to_string(),
                Incoming::Receiving {
                    unpacker,
                    offset: at,
                },
            );
            return Err(MigrationError::OutOfOrder {
                id: id.to_string(),
                expected: at,
                asked: offset,
            });
        }
        // A damaged stream is dropped whole: the controller starts the move again or
        // gives up on it.
        if let Err(e) = unpacker.feed(data) {
            unpacker.discard();
            return Err(e.into());
        }
        let offset = at + data.len() as u64;
        let next = if end {
            Incoming::Complete(unpacker.finish()?)
        } else {
            Incoming::Receiving { unpacker, offset }
        };
        self.incoming.insert(id.to_string(), next);
        Ok(())
    }

    /// `taskRestore`: bring the task of a fully written stream back to life here, with the
    /// sizes its stdout and stderr files had at the dump (read before it runs again, since
    /// it may write at once). On failure nothing of it is left (neither processes nor files).
    /// With `frozen` every process of the task stays stopped; [`Migrations::hold_restored`]
    /// then keeps it so until the controller releases it.
    pub async fn restore(
        &mut self,
        id: &str,
        frozen: bool,
    ) -> Result<(RestoredTask, Unpacked, (u64, u64)), MigrationError> {
        let unpacked = match self.incoming.remove(id) {
            Some(Incoming::Complete(unpacked)) => unpacked,
            Some(receiving @ Incoming::Receiving { .. }) => {
                self.incoming.insert(id.to_string(), receiving);
                return Err(MigrationError::Incomplete(id.to_string()));
            }
            None => return Err(unknown(id)),
        };
        let checkpoint_dir = unpacked.images_dir.clone();
        let size_of =
            |name: &str| std::fs::metadata(unpacked.task_dir.join(name)).map_or(0, |m| m.len());
        let sizes = (size_of("stdout"), size_of("stderr"));
        let restored = match frozen {
            true => self.checkpointer.restore_frozen(&checkpoint_dir).await,
            false => self.checkpointer.restore(&checkpoint_dir).await,
        };
        match restored {
            Ok(task) => {
                // The restored processes need nothing more from their images.
                let _ = std::fs::remove_dir_all(&checkpoint_dir);
                Ok((task, unpacked, sizes))
            }
            Err(e) => {
                unpacked.discard();
                Err(MigrationError::Restore(e))
            }
        }
    }

    /// `checkpointRelease`.
    pub fn release(
        &mut self,
        id: &str,
        disposition: Disposition,
    ) -> Result<Released, MigrationError> {
        if let Some(restored) = self.restored.remove(id) {
            // A task restored here whose move the controller has settled.
            return match disposition {
                Disposition::Resume => {
                    checkpoint::thaw(restored.leader_pid).map_err(MigrationError::Restore)?;
                    Ok(Released::Done)
                }
                Disposition::Cancel | Disposition::Discard => {
                    checkpoint::kill_tree(restored.leader_pid).map_err(MigrationError::Restore)?;
                    Ok(Released::Withdraw {
                        task_ref: restored.task_ref,
                        why: "dropped: its move was not recorded",
                    })
                }
            };
        }
        if let Some(incoming) = self.incoming.remove(id) {
            // A stream sent here for a move that was abandoned.
            match incoming {
                Incoming::Receiving { unpacker, .. } => unpacker.discard(),
                Incoming::Complete(unpacked) => unpacked.discard(),
            }
            return Ok(Released::Done);
        }
        let outgoing = self.outgoing.remove(id).ok_or_else(|| unknown(id))?;
        let _ = std::fs::remove_dir_all(outgoing.checkpoint.dir());
        match disposition {
            Disposition::Cancel => {
                if outgoing.frozen {
                    outgoing
                        .checkpoint
                        .kill()
                        .map_err(MigrationError::Checkpoint)?;
                    return Ok(Released::Withdraw {
                        task_ref: outgoing.task_ref,
                        why: "moved to another agent",
                    });
                }
                Ok(Released::Done)
            }
            Disposition::Resume | Disposition::Discard => {
                if outgoing.frozen {
                    outgoing
                        .checkpoint
                        .resume()
                        .map_err(MigrationError::Checkpoint)?;
                }
                Ok(Released::Done)
            }
        }
    }

    /// Forget a task's checkpoints (it ended or was cancelled): a task frozen for a move,
    /// dumped or restored here, is ended.
    pub fn forget_task(&mut self, task_ref: &str) {
        let ids: Vec<String> = self
            .outgoing
            .iter()
            .filter(|(_, o)| o.task_ref == task_ref)
            .map(|(id, _)| id.clone())
            .collect();
        for id in ids {
            if let Some(outgoing) = self.outgoing.remove(&id) {
                if outgoing.frozen {
                    let _ = outgoing.checkpoint.kill();
                }
                let _ = std::fs::remove_dir_all(outgoing.checkpoint.dir());
            }
        }
        self.restored.retain(|_, r| {
            if r.task_ref != task_ref {
                return true;
            }
            let _ = checkpoint::kill_tree(r.leader_pid);
            false
        });
    }

    /// The controller is gone: streams half sent or received are dropped (the controller
    /// starts a move afresh), but frozen tasks, dumped or restored here, stay frozen, kept
    /// for the controller to release when it is back. Returns how many tasks stay frozen.
    pub fn connection_lost(&mut self) -> usize {
        self.outgoing.retain(|_, outgoing| {
            if !outgoing.frozen {
                let _ = std::fs::remove_dir_all(outgoing.checkpoint.dir());
            }
            outgoing.frozen
        });
        for (_, incoming) in self.incoming.drain() {
            match incoming {
                Incoming::Receiving { unpacker, .. } => unpacker.discard(),
                Incoming::Complete(unpacked) => unpacked.discard(),
            }
        }
        self.outgoing.len() + self.restored.len()
    }
}

fn unknown(id: &str) -> MigrationError {
    MigrationError::UnknownCheckpoint(id.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_follow_the_design() {
        let criu = || CheckpointError::Unavailable("no criu".into());
        assert_eq!(
            MigrationError::Checkpoint(criu()).code(),
            ErrorCode::CheckpointFailed
        );
        assert_eq!(
            MigrationError::Restore(criu()).code(),
            ErrorCode::RestoreFailed
        );
        assert_eq!(unknown("x").code(), ErrorCode::InvalidCheckpoint);
    }

    #[test]
    fn unknown_and_out_of_order_streams_are_refused() {
        let root = std::env::temp_dir().join(format!("xgrid-mig-{}", std::process::id()));
        let mut migrations = Migrations::new(Checkpointer::unavailable("test"), &root);
        assert!(matches!(
            migrations.read("nope", 0, 10),
            Err(MigrationError::UnknownCheckpoint(_))
        ));
        // A stream must start at 0...
        assert!(matches!(
            migrations.write("m1", 5, b"abc", false),
            Err(MigrationError::UnknownCheckpoint(_))
        ));
        // ...and go on where it stopped.
        migrations
            .write("m1", 0, b"XGRID", false)
            .expect("first chunk");
        assert!(matches!(
            migrations.write("m1", 3, b"CKPT1", false),
            Err(MigrationError::OutOfOrder { expected: 5, .. })
        ));
        // Not complete: no restore.
        assert!(matches!(
            block_on(migrations.restore("m1", false)),
            Err(MigrationError::Incomplete(_))
        ));
        // A damaged stream is dropped.
        assert!(migrations
            .write("m2", 0, b"NOT A CHECKPOINT", false)
            .is_err());
        assert!(matches!(
            migrations.write("m2", 16, b"more", false),
            Err(MigrationError::UnknownCheckpoint(_))
        ));
        assert_eq!(
            migrations.release("m1", Disposition::Discard).ok(),
            Some(Released::Done)
        );
        let _ = std::fs::remove_dir_all(&root);
    }

    fn block_on<F: std::future::Future>(future: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
            .block_on(future)
    }
}
