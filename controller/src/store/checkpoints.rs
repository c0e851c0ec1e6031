//! Checkpoints and migrations: the last checkpoint of each task kept at the controller, tasks
//! held as a checkpoint while they wait for a slot, moves of tasks between agents, the
//! record of every migration, and the read a balancing round starts from.

use std::collections::HashMap;

use sqlx::{Connection, SqliteConnection};

use super::tasks::{task_row, ON_AGENTS};
use super::{
    date, db_id, now, small_count, wire_id, AgentExtensions, AgentId, AttachedTask, BalancingTask,
    CheckpointRecord, GridId, JobId, MigrationRecord, MovedFrom, OutputStream, Result, Store,
    StoreError, TaskState,
};

use TaskState::Assigned;

/// The held reason of the tasks of a lost agent (a migration reason of docs/migration.md).
pub const AGENT_LOST: &str = "agent lost";

/// Tasks held as a checkpoint at the controller: Assigned to no agent, with a reason.
const HELD: &str = "state = 'Assigned' AND agent_id IS NULL AND held_reason IS NOT NULL";

/// The tasks a balancing round looks at: those on agents (through the `tasks_on_agents`
/// index, whose WHERE clause [`ON_AGENTS`] repeats) and those held (through `tasks_held`).
/// No ORDER BY: sorting here would walk the whole table in order; the rows are sorted after
/// reading.
pub(super) const BALANCING_ROWS: &str =
    "SELECT t.job_id, t.name, j.grid_id, t.agent_id, t.state, t.held_reason, j.suspended,
            t.date_started, t.last_moved_at
     FROM tasks t JOIN jobs j ON j.id = t.job_id
     WHERE t.state IN ('Assigned', 'Running', 'Stopped') AND t.agent_id IS NOT NULL
     UNION ALL
     SELECT t.job_id, t.name, j.grid_id, t.agent_id, t.state, t.held_reason, j.suspended,
            t.date_started, t.last_moved_at
     FROM tasks t JOIN jobs j ON j.id = t.job_id
     WHERE t.held_reason IS NOT NULL AND t.state = 'Assigned' AND t.agent_id IS NULL";

/// Features are stored as one comma-separated text.
pub(super) fn split_features(text: Option<String>) -> Vec<String> {
    text.map(|t| {
        t.split(',')
            .filter(|f| !f.is_empty())
            .map(str::to_string)
            .collect()
    })
    .unwrap_or_default()
}

fn join_features(features: &[String]) -> String {
    features.join(",")
}

fn octets(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

fn db_octets(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

type CheckpointRow = (String, i64, i64, i64, i64, Option<String>, f64);
/// A [`CheckpointRow`] behind its task's job and name.
type TaskCheckpointRow = (i64, String, String, i64, i64, i64, i64, Option<String>, f64);

fn checkpoint_record(row: CheckpointRow) -> CheckpointRecord {
    let (path, size, stdout_size, stderr_size, frozen, features, taken_at) = row;
    CheckpointRecord {
        path,
        size: octets(size),
        stdout_size: octets(stdout_size),
        stderr_size: octets(stderr_size),
        frozen_milliseconds: octets(frozen),
        cpu_features: split_features(features),
        taken_at: xgrid_protocol::plist::Date(taken_at),
    }
}

/// Cuts one output stream of task row `task` to its first `keep` octets.
async fn truncate_stream(
    conn: &mut SqliteConnection,
    task: i64,
    stream: OutputStream,
    keep: u64,
) -> Result<()> {
    let pieces: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT id, length(data) FROM task_output_chunks WHERE task_id = ? AND stream = ?
         ORDER BY id",
    )
    .bind(task)
    .bind(stream.code())
    .fetch_all(&mut *conn)
    .await?;
    let mut before = 0u64;
    for (id, length) in pieces {
        let length = octets(length);
        if before + length <= keep {
            before += length;
            continue;
        }
        // The chunk that crosses the mark keeps its head; every chunk after it goes.
        let first_gone = if before < keep {
            // SQLite counts a blob's substr in octets, from 1.
            sqlx::query("UPDATE task_output_chunks SET data = substr(data, 1, ?) WHERE id = ?")
                .bind(db_octets(keep - before))
                .bind(id)
                .execute(&mut *conn)
                .await?;
            id + 1
        } else {
            id
        };
        sqlx::query("DELETE FROM task_output_chunks WHERE task_id = ? AND stream = ? AND id >= ?")
            .bind(task)
            .bind(stream.code())
            .bind(first_gone)
            .execute(&mut *conn)
            .await?;
        break;
    }
    Ok(())
}

/// Cuts task row `task`'s stored output to what it was at its checkpoint, and returns that
/// checkpoint; `None` when the task has none.
async fn truncate_to_checkpoint(
    conn: &mut SqliteConnection,
    task: i64,
) -> Result<Option<CheckpointRecord>> {
    let row: Option<CheckpointRow> = sqlx::query_as(
        "SELECT path, size, stdout_size, stderr_size, frozen_milliseconds, cpu_features, taken_at
         FROM task_checkpoints WHERE task_id = ?",
    )
    .bind(task)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(checkpoint) = row.map(checkpoint_record) else {
        return Ok(None);
    };
    truncate_stream(conn, task, OutputStream::Stdout, checkpoint.stdout_size).await?;
    truncate_stream(conn, task, OutputStream::Stderr, checkpoint.stderr_size).await?;
    Ok(Some(checkpoint))
}

/// Keeps `checkpoint` as task row `task`'s last one; returns the file of the one it
/// replaces.
async fn keep_checkpoint(
    conn: &mut SqliteConnection,
    task: i64,
    checkpoint: &CheckpointRecord,
) -> Result<Option<String>> {
    let old: Option<String> =
        sqlx::query_scalar("SELECT path FROM task_checkpoints WHERE task_id = ?")
            .bind(task)
            .fetch_optional(&mut *conn)
            .await?;
    sqlx::query(
        "INSERT OR REPLACE INTO task_checkpoints (task_id, path, size, stdout_size,
             stderr_size, frozen_milliseconds, cpu_features, taken_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(task)
    .bind(&checkpoint.path)
    .bind(db_octets(checkpoint.size))
    .bind(db_octets(checkpoint.stdout_size))
    .bind(db_octets(checkpoint.stderr_size))
    .bind(db_octets(checkpoint.frozen_milliseconds))
    .bind(join_features(&checkpoint.cpu_features))
    .bind(checkpoint.taken_at.0)
    .execute(&mut *conn)
    .await?;
    Ok(old.filter(|old| *old != checkpoint.path))
}

/// Task `task` of `job`'s row, if the task is still where its move began
/// ([`StoreError::TaskMovedMeanwhile`] otherwise).
async fn task_still_at(
    conn: &mut SqliteConnection,
    job: JobId,
    task: &str,
    from: MovedFrom<'_>,
) -> Result<i64> {
    let (id, state) = task_row(conn, job, task).await?;
    let (agent, task_ref, held): (Option<i64>, Option<String>, Option<String>) =
        sqlx::query_as("SELECT agent_id, task_ref, held_reason FROM tasks WHERE id = ?")
            .bind(id)
            .fetch_one(&mut *conn)
            .await?;
    let there = match from {
        MovedFrom::Agent {
            agent: from,
            task_ref: from_ref,
        } => {
            state.is_on_agent()
                && agent == Some(db_id(from))
                && task_ref.as_deref() == Some(from_ref)
        }
        MovedFrom::Held => state == Assigned && agent.is_none() && held.is_some(),
    };
    if there {
        Ok(id)
    } else {
        Err(StoreError::TaskMovedMeanwhile {
            job,
            task: task.to_string(),
            state,
        })
    }
}

impl Store {
    /// Keeps `checkpoint` as the task's last one; returns the file of the one it replaces,
    /// for the caller to remove.
    pub async fn record_checkpoint(
        &self,
        job: JobId,
        task: &str,
        checkpoint: &CheckpointRecord,
    ) -> Result<Option<String>> {
        let mut writer = self.writer.lock().await;
        let mut tx = writer.begin().await?;
        let (id, _) = task_row(&mut tx, job, task).await?;
        let replaced = keep_checkpoint(&mut tx, id, checkpoint).await?;
        tx.commit().await?;
        Ok(replaced)
    }

    /// The task's last checkpoint, if one is kept.
    pub async fn task_checkpoint(
        &self,
        job: JobId,
        task: &str,
    ) -> Result<Option<CheckpointRecord>> {
        let mut conn = self.readers.acquire().await;
        let (id, _) = task_row(&mut conn, job, task).await?;
        let row: Option<CheckpointRow> = sqlx::query_as(
            "SELECT path, size, stdout_size, stderr_size, frozen_milliseconds, cpu_features,
                    taken_at
             FROM task_checkpoints WHERE task_id = ?",
        )
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
        Ok(row.map(checkpoint_record))
    }

    /// Forgets the task's checkpoint; returns its file, for the caller to remove.
    pub async fn drop_checkpoint(&self, job: JobId, task: &str) -> Result<Option<String>> {
        let mut writer = self.writer.lock().await;
        let mut tx = writer.begin().await?;
        let (id, _) = task_row(&mut tx, job, task).await?;
        let path: Option<String> =
            sqlx::query_scalar("DELETE FROM task_checkpoints WHERE task_id = ? RETURNING path")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
        tx.commit().await?;
        Ok(path)
    }

    /// Every checkpoint file the store refers to: any other file in the checkpoint directory
    /// is left over (its task or job was deleted) and may go.
    pub async fn checkpoint_paths(&self) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar("SELECT path FROM task_checkpoints")
            .fetch_all(&mut *self.readers.acquire().await)
            .await?)
    }

    /// Octets of standard output and standard error stored for the task.
    pub async fn output_sizes(&self, job: JobId, task: &str) -> Result<(u64, u64)> {
        let mut conn = self.readers.acquire().await;
        let (id, _) = task_row(&mut conn, job, task).await?;
        let sizes: Vec<(i64, i64)> = sqlx::query_as(
            "SELECT stream, coalesce(sum(length(data)), 0) FROM task_output_chunks
             WHERE task_id = ? GROUP BY stream",
        )
        .bind(id)
        .fetch_all(&mut *conn)
        .await?;
        let of = |stream: OutputStream| {
            sizes
                .iter()
                .find(|(code, _)| *code == stream.code())
                .map_or(0, |(_, n)| octets(*n))
        };
        Ok((of(OutputStream::Stdout), of(OutputStream::Stderr)))
    }

    /// Cuts the task's stored output to its first `stdout` and `stderr` octets: what it was
    /// when the checkpoint a restore starts from was taken.
    pub async fn truncate_output(
        &self,
        job: JobId,
        task: &str,
        stdout: u64,
        stderr: u64,
    ) -> Result<()> {
        let mut writer = self.writer.lock().await;
        let mut tx = writer.begin().await?;
        let (id, _) = task_row(&mut tx, job, task).await?;
        truncate_stream(&mut tx, id, OutputStream::Stdout, stdout).await?;
        truncate_stream(&mut tx, id, OutputStream::Stderr, stderr).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The task, restored on `agent` as `task_ref`, now runs there: it is Running, no longer
    /// held, stamped as moved now, and `checkpoint` (the one it moved with) is its last. Only
    /// while the task is still where the move began ([`StoreError::TaskMovedMeanwhile`]
    /// otherwise, and nothing changes). Returns the file of the checkpoint replaced.
    pub async fn record_move(
        &self,
        job: JobId,
        task: &str,
        from: MovedFrom<'_>,
        (agent, task_ref): (AgentId, &str),
        checkpoint: Option<&CheckpointRecord>,
    ) -> Result<Option<String>> {
        let mut writer = self.writer.lock().await;
        let mut tx = writer.begin().await?;
        let id = task_still_at(&mut tx, job, task, from).await?;
        let replaced = match checkpoint {
            Some(checkpoint) => keep_checkpoint(&mut tx, id, checkpoint).await?,
            None => None,
        };
        sqlx::query(
            "UPDATE tasks SET state = 'Running', agent_id = ?, task_ref = ?, last_moved_at = ?,
                 held_reason = NULL, date_started = coalesce(date_started, ?)
             WHERE id = ?",
        )
        .bind(db_id(agent))
        .bind(task_ref)
        .bind(now())
        .bind(now())
        .bind(id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(replaced)
    }

    /// The task left its agent as `checkpoint` (evacuated): it is held at the controller
    /// until a slot frees, its stored output cut to the checkpoint's sizes. Only while the
    /// task is still where the move began ([`StoreError::TaskMovedMeanwhile`] otherwise).
    /// Returns the file of the checkpoint replaced.
    pub async fn hold_task(
        &self,
        job: JobId,
        task: &str,
        from: MovedFrom<'_>,
        reason: &str,
        checkpoint: &CheckpointRecord,
    ) -> Result<Option<String>> {
        let mut writer = self.writer.lock().await;
        let mut tx = writer.begin().await?;
        let id = task_still_at(&mut tx, job, task, from).await?;
        let replaced = keep_checkpoint(&mut tx, id, checkpoint).await?;
        truncate_to_checkpoint(&mut tx, id).await?;
        hold(&mut tx, id, reason).await?;
        tx.commit().await?;
        Ok(replaced)
    }

    /// Forgets the checkpoints of tasks no longer on an agent or held (they ended, or run
    /// again from the start); returns their files, for the caller to remove.
    pub async fn prune_checkpoints(&self) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar(
            "DELETE FROM task_checkpoints WHERE task_id IN
                 (SELECT id FROM tasks WHERE state NOT IN ('Assigned', 'Running', 'Stopped'))
             RETURNING path",
        )
        .fetch_all(&mut *self.writer.lock().await)
        .await?)
    }

    /// A held task that cannot be restored (its checkpoint is lost or refused everywhere)
    /// goes back to Pending to run again from the start, as in Xgrid; its checkpoint is
    /// forgotten (the returned file is the caller's to remove).
    pub async fn requeue_held_task(&self, job: JobId, task: &str) -> Result<Option<String>> {
        let mut writer = self.writer.lock().await;
        let mut tx = writer.begin().await?;
        let (id, _) = task_row(&mut tx, job, task).await?;
        let rows = sqlx::query(&format!(
            "UPDATE tasks SET state = 'Pending', held_reason = NULL, attempts = attempts + 1,
                 percent_done = NULL, date_started = NULL
             WHERE id = ? AND {HELD}"
        ))
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if rows == 0 {
            return Err(StoreError::TaskStateConflict {
                job,
                task: task.to_string(),
                state: task_row(&mut tx, job, task).await?.1,
                action: "requeued as a held task",
            });
        }
        for sql in [
            "DELETE FROM task_output_chunks WHERE task_id = ?",
            "DELETE FROM task_output_files WHERE task_id = ?",
        ] {
            sqlx::query(sql).bind(id).execute(&mut *tx).await?;
        }
        let path: Option<String> =
            sqlx::query_scalar("DELETE FROM task_checkpoints WHERE task_id = ? RETURNING path")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
        tx.commit().await?;
        Ok(path)
    }

    /// Records one migration (or attempt); returns its identifier.
    pub async fn record_migration(&self, migration: &MigrationRecord) -> Result<u64> {
        let id = sqlx::query(
            "INSERT INTO migrations (job_id, task_name, from_agent, to_agent, reason, started,
                 frozen_milliseconds, octets, outcome)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(db_id(migration.job))
        .bind(&migration.task)
        .bind(migration.from.map(db_id))
        .bind(migration.to.map(db_id))
        .bind(&migration.reason)
        .bind(migration.started.0)
        .bind(migration.frozen_milliseconds.map(db_octets))
        .bind(db_octets(migration.octets))
        .bind(&migration.outcome)
        .execute(&mut *self.writer.lock().await)
        .await?
        .last_insert_rowid();
        wire_id(id)
    }

    /// The newest `limit` migrations, newest first.
    pub async fn migrations(&self, limit: u32) -> Result<Vec<MigrationRecord>> {
        self.migrations_where("1", None, limit).await
    }

    /// One migration, by identifier.
    pub async fn migration(&self, id: u64) -> Result<Option<MigrationRecord>> {
        Ok(self
            .migrations_where("id = ?2", Some(db_id(id)), 1)
            .await?
            .pop())
    }

    /// The job's migrations, oldest first.
    pub async fn job_migrations(&self, job: JobId) -> Result<Vec<MigrationRecord>> {
        let mut list = self
            .migrations_where("job_id = ?2", Some(db_id(job)), u32::MAX)
            .await?;
        list.reverse();
        Ok(list)
    }

    /// How many tasks moved (attempts that failed not counted).
    pub async fn migration_count(&self) -> Result<u64> {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM migrations WHERE outcome = 'moved'")
            .fetch_one(&mut *self.readers.acquire().await)
            .await?;
        Ok(octets(n))
    }

    async fn migrations_where(
        &self,
        condition: &str,
        value: Option<i64>,
        limit: u32,
    ) -> Result<Vec<MigrationRecord>> {
        type Row = (
            i64,
            i64,
            String,
            Option<i64>,
            Option<i64>,
            String,
            f64,
            Option<i64>,
            i64,
            String,
        );
        let sql = format!(
            "SELECT id, job_id, task_name, from_agent, to_agent, reason, started,
                    frozen_milliseconds, octets, outcome
             FROM migrations WHERE {condition} ORDER BY id DESC LIMIT ?1"
        );
        let mut query = sqlx::query_as::<_, Row>(&sql).bind(i64::from(limit));
        if let Some(value) = value {
            query = query.bind(value);
        }
        let rows = query.fetch_all(&mut *self.readers.acquire().await).await?;
        rows.into_iter()
            .map(
                |(id, job, task, from, to, reason, started, frozen, moved, outcome)| {
                    Ok(MigrationRecord {
                        id: wire_id(id)?,
                        job: wire_id(job)?,
                        task,
                        from: from.map(wire_id).transpose()?,
                        to: to.map(wire_id).transpose()?,
                        reason,
                        started: xgrid_protocol::plist::Date(started),
                        frozen_milliseconds: frozen.map(octets),
                        octets: octets(moved),
                        outcome,
                    })
                },
            )
            .collect()
    }

    /// `xgridUnavailableReason` from the agent's last status (`None` clears it). Returns
    /// whether it changed; an unchanged reason costs a read, no write.
    pub async fn set_agent_unavailable_reason(
        &self,
        agent: AgentId,
        reason: Option<&str>,
    ) -> Result<bool> {
        let stored: Option<Option<String>> =
            sqlx::query_scalar("SELECT unavailable_reason FROM agents WHERE id = ?")
                .bind(db_id(agent))
                .fetch_optional(&mut *self.readers.acquire().await)
                .await?;
        if stored.is_none_or(|stored| stored.as_deref() == reason) {
            return Ok(false);
        }
        sqlx::query(
            "UPDATE agents SET unavailable_reason = ?1 WHERE id = ?2
                 AND unavailable_reason IS NOT ?1",
        )
        .bind(reason)
        .bind(db_id(agent))
        .execute(&mut *self.writer.lock().await)
        .await?;
        Ok(true)
    }

    /// Every agent's CPU features and unavailable reason, by identifier.
    pub async fn agent_extensions(&self) -> Result<Vec<AgentExtensions>> {
        let rows: Vec<(i64, Option<String>, Option<String>)> =
            sqlx::query_as("SELECT id, cpu_features, unavailable_reason FROM agents ORDER BY id")
                .fetch_all(&mut *self.readers.acquire().await)
                .await?;
        rows.into_iter()
            .map(|(agent, features, reason)| {
                Ok(AgentExtensions {
                    agent: wire_id(agent)?,
                    cpu_features: split_features(features),
                    unavailable_reason: reason,
                })
            })
            .collect()
    }

    /// What a balancing round reads: every task on an agent or held, with its checkpoint.
    pub async fn balancing_records(&self) -> Result<Vec<BalancingTask>> {
        type Row = (
            i64,
            String,
            i64,
            Option<i64>,
            String,
            Option<String>,
            i64,
            Option<f64>,
            Option<f64>,
        );
        let mut reader = self.readers.acquire().await;
        let mut tx = reader.begin().await?;
        let mut rows: Vec<Row> = sqlx::query_as(BALANCING_ROWS).fetch_all(&mut *tx).await?;
        rows.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        let checkpoints: Vec<TaskCheckpointRow> = sqlx::query_as(
            "SELECT t.job_id, t.name, c.path, c.size, c.stdout_size, c.stderr_size,
                    c.frozen_milliseconds, c.cpu_features, c.taken_at
             FROM task_checkpoints c JOIN tasks t ON t.id = c.task_id",
        )
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;

        let mut by_task: HashMap<(i64, String), CheckpointRecord> = HashMap::new();
        for (job, task, path, size, out, err, frozen, features, taken) in checkpoints {
            by_task.insert(
                (job, task),
                checkpoint_record((path, size, out, err, frozen, features, taken)),
            );
        }
        let mut tasks = Vec::with_capacity(rows.len());
        for (job, task, grid, agent, state, held, suspended, started, moved) in rows {
            let checkpoint = by_task.remove(&(job, task.clone()));
            tasks.push(BalancingTask {
                job: wire_id(job)?,
                grid: wire_id(grid)?,
                agent: agent.map(wire_id).transpose()?,
                state: TaskState::parse(&state)?,
                held_reason: held,
                job_suspended: suspended != 0,
                date_started: date(started),
                last_moved_at: date(moved),
                checkpoint,
                task,
            });
        }
        Ok(tasks)
    }

    /// How long each of `jobs`' finished tasks took on average, in seconds, for the jobs
    /// that have some. Reads every task of those jobs: only worth asking when a task could
    /// move for speed.
    pub async fn job_durations(&self, jobs: &[JobId]) -> Result<HashMap<JobId, f64>> {
        let mut conn = self.readers.acquire().await;
        let mut durations = HashMap::new();
        for &job in jobs {
            let average: Option<f64> = sqlx::query_scalar(
                "SELECT avg(date_stopped - date_started) FROM tasks
                 WHERE job_id = ? AND state = 'Finished'
                   AND date_started IS NOT NULL AND date_stopped IS NOT NULL",
            )
            .bind(db_id(job))
            .fetch_one(&mut *conn)
            .await?;
            if let Some(average) = average {
                durations.insert(job, average);
            }
        }
        Ok(durations)
    }

    /// Per grid, the Pending tasks of open, unsuspended jobs, counted up to `cap` (the
    /// balancer never needs more than the free slots).
    pub async fn waiting_tasks(&self, cap: u32) -> Result<Vec<(GridId, u32)>> {
        let mut conn = self.readers.acquire().await;
        let grids: Vec<i64> = sqlx::query_scalar("SELECT id FROM grids ORDER BY id")
            .fetch_all(&mut *conn)
            .await?;
        let mut waiting = Vec::new();
        for grid in grids {
            let count: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM (
                     SELECT 1 FROM jobs j JOIN tasks t ON t.job_id = j.id
                     WHERE j.grid_id = ? AND j.suspended = 0
                       AND j.status IN ('Pending', 'Prepared', 'Running')
                       AND t.state = 'Pending'
                     LIMIT ?)",
            )
            .bind(grid)
            .bind(i64::from(cap))
            .fetch_one(&mut *conn)
            .await?;
            if count > 0 {
                waiting.push((wire_id(grid)?, small_count(count)));
            }
        }
        Ok(waiting)
    }
}

/// The agent is lost: each of its tasks with a kept checkpoint is held at the controller (to
/// be restored elsewhere from it), with its output cut to the checkpoint's sizes. Returns
/// the tasks held.
pub(super) async fn hold_agent_tasks(
    conn: &mut SqliteConnection,
    agent: AgentId,
    reason: &str,
) -> Result<Vec<AttachedTask>> {
    let rows: Vec<(i64, i64, String, Option<String>, String)> = sqlx::query_as(&format!(
        "SELECT t.id, t.job_id, t.name, t.task_ref, t.state FROM tasks t
         JOIN task_checkpoints c ON c.task_id = t.id
         WHERE t.agent_id = ? AND t.{ON_AGENTS}
         ORDER BY t.job_id, t.name"
    ))
    .bind(db_id(agent))
    .fetch_all(&mut *conn)
    .await?;
    let mut held = Vec::with_capacity(rows.len());
    for (id, job, task, task_ref, state) in rows {
        truncate_to_checkpoint(conn, id).await?;
        hold(conn, id, reason).await?;
        held.push(AttachedTask {
            job: wire_id(job)?,
            task,
            agent,
            task_ref,
            state: TaskState::parse(&state)?,
        });
    }
    Ok(held)
}

async fn hold(conn: &mut SqliteConnection, task: i64, reason: &str) -> Result<()> {
    sqlx::query(
        "UPDATE tasks SET state = 'Assigned', agent_id = NULL, task_ref = NULL, held_reason = ?
         WHERE id = ?",
    )
    .bind(reason)
    .bind(task)
    .execute(&mut *conn)
    .await?;
    Ok(())
}
