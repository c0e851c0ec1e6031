//! Tasks: their life on agents (assigned, dispatched, running, stopped, finished, failed,
//! requeued), what an agent needs to run one, and their results (streamed output and final
//! output files).

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use sqlx::{Connection, QueryBuilder, Sqlite, SqliteConnection};

use super::job_files;
use super::jobs::job_exists;
use super::specification::input_files_of;
use super::{
    date, db_id, now, small_count, wire_id, AgentId, AttachedTask, FinalResults, JobId,
    OutputStream, Result, Store, StoreError, StreamResults, TaskLaunch, TaskRecord, TaskState,
};

use TaskState::{Assigned, Pending, Running, Stopped};

/// Placements written by one statement: 3 bound values each, well under SQLite's limit of
/// 32,766 bound values a statement.
const PLACEMENTS_PER_STATEMENT: usize = 500;

/// Which tasks on agents a query is about.
#[derive(Debug, Clone, Copy)]
pub(super) enum OnAgents {
    All,
    Job(i64),
    Agent(i64),
    Task(i64),
}

/// Tasks placed on an agent. It repeats the `tasks_on_agents` index's WHERE clause word for
/// word, which is what lets SQLite use that partial index.
pub(super) const ON_AGENTS: &str =
    "state IN ('Assigned', 'Running', 'Stopped') AND agent_id IS NOT NULL";

impl OnAgents {
    /// A condition on the `tasks` table (no alias), binding at most one value.
    fn condition(self) -> String {
        match self {
            OnAgents::All => ON_AGENTS.to_string(),
            OnAgents::Job(_) => format!("job_id = ? AND {ON_AGENTS}"),
            OnAgents::Agent(_) => format!("agent_id = ? AND {ON_AGENTS}"),
            OnAgents::Task(_) => format!("id = ? AND {ON_AGENTS}"),
        }
    }

    fn value(self) -> Option<i64> {
        match self {
            OnAgents::All => None,
            OnAgents::Job(v) | OnAgents::Agent(v) | OnAgents::Task(v) => Some(v),
        }
    }
}

/// The tasks placed on agents that `which` selects, in job and task order.
pub(super) async fn attached_tasks_where(
    conn: &mut SqliteConnection,
    which: OnAgents,
) -> Result<Vec<AttachedTask>> {
    let sql = format!(
        "SELECT job_id, name, agent_id, task_ref, state FROM tasks WHERE {}
         ORDER BY job_id, name",
        which.condition()
    );
    let mut query = sqlx::query_as(&sql);
    if let Some(value) = which.value() {
        query = query.bind(value);
    }
    let rows: Vec<(i64, String, i64, Option<String>, String)> = query.fetch_all(&mut *conn).await?;
    rows.into_iter()
        .map(|(job, task, agent, task_ref, state)| {
            Ok(AttachedTask {
                job: wire_id(job)?,
                task,
                agent: wire_id(agent)?,
                task_ref,
                state: TaskState::parse(&state)?,
            })
        })
        .collect()
}

/// Puts the selected tasks back to Pending, off their agents, with one more attempt counted
/// and the partial results of the lost run dropped. Returns the tasks requeued.
pub(super) async fn requeue_where(
    conn: &mut SqliteConnection,
    which: OnAgents,
) -> Result<Vec<AttachedTask>> {
    let requeued = attached_tasks_where(conn, which).await?;
    let condition = which.condition();
    // A checkpoint of the lost run would bring it back: it goes too (its file is swept).
    let statements = [
        format!("DELETE FROM task_checkpoints WHERE task_id IN (SELECT id FROM tasks WHERE {condition})"),
        format!("DELETE FROM task_output_chunks WHERE task_id IN (SELECT id FROM tasks WHERE {condition})"),
        format!("DELETE FROM task_output_files WHERE task_id IN (SELECT id FROM tasks WHERE {condition})"),
        format!(
            "UPDATE tasks SET state = 'Pending', agent_id = NULL, task_ref = NULL,
                 attempts = attempts + 1, termination_status = NULL, percent_done = NULL,
                 error = NULL, date_started = NULL, date_stopped = NULL
             WHERE {condition}"
        ),
    ];
    for sql in &statements {
        let mut query = sqlx::query(sql);
        if let Some(value) = which.value() {
            query = query.bind(value);
        }
        query.execute(&mut *conn).await?;
    }
    Ok(requeued)
}

/// A task placed on an agent (the states `task_in_state` allows for running, stopping and
/// finishing), as a condition on the `tasks` table.
const PLACED: &str = "state IN ('Assigned', 'Running', 'Stopped')";

/// Marks a placed task Running on `agent` as `task_ref` (its first start date kept); how
/// many rows changed (0: the task is no longer placed).
async fn set_running<'e>(
    executor: impl sqlx::Executor<'e, Database = sqlx::Sqlite>,
    job: JobId,
    task: &str,
    agent: AgentId,
    task_ref: &str,
) -> Result<u64> {
    let result = sqlx::query(&format!(
        "UPDATE tasks SET state = 'Running', agent_id = ?, task_ref = ?,
             date_started = coalesce(date_started, ?)
         WHERE job_id = ? AND name = ? AND {PLACED}"
    ))
    .bind(db_id(agent))
    .bind(task_ref)
    .bind(now())
    .bind(db_id(job))
    .bind(task)
    .execute(executor)
    .await?;
    Ok(result.rows_affected())
}

impl Store {
    /// After a one-statement update of a placed task: no row changed means the task is
    /// missing or not placed, and the error says which.
    async fn placed_task_updated(
        &self,
        rows: u64,
        job: JobId,
        task: &str,
        action: &'static str,
    ) -> Result<()> {
        if rows > 0 {
            return Ok(());
        }
        let mut conn = self.writer.lock().await;
        let (_, state) = task_row(&mut conn, job, task).await?;
        Err(StoreError::TaskStateConflict {
            job,
            task: task.to_string(),
            state,
            action,
        })
    }
}

/// The task's row identifier, after checking that its state is one of `allowed`.
pub(super) async fn task_in_state(
    conn: &mut SqliteConnection,
    job: JobId,
    task: &str,
    allowed: &[TaskState],
    action: &'static str,
) -> Result<i64> {
    let (id, state) = task_row(conn, job, task).await?;
    if allowed.contains(&state) {
        Ok(id)
    } else {
        Err(StoreError::TaskStateConflict {
            job,
            task: task.to_string(),
            state,
            action,
        })
    }
}

pub(super) async fn task_row(
    conn: &mut SqliteConnection,
    job: JobId,
    task: &str,
) -> Result<(i64, TaskState)> {
    let row: Option<(i64, String)> =
        sqlx::query_as("SELECT id, state FROM tasks WHERE job_id = ? AND name = ?")
            .bind(db_id(job))
            .bind(task)
            .fetch_optional(&mut *conn)
            .await?;
    match row {
        Some((id, state)) => Ok((id, TaskState::parse(&state)?)),
        None => {
            job_exists(conn, job).await?;
            Err(StoreError::NoSuchTask {
                job,
                task: task.to_string(),
            })
        }
    }
}

type TaskRow = (
    i64,
    String,
    String,
    Option<i64>,
    Option<String>,
    i64,
    Option<i64>,
    Option<f64>,
    Option<String>,
    Option<f64>,
    Option<f64>,
);

const TASK_COLUMNS: &str = "job_id, name, state, agent_id, task_ref, attempts, \
     termination_status, percent_done, error, date_started, date_stopped";

fn task_record(row: TaskRow) -> Result<TaskRecord> {
    let (job, id, state, agent, task_ref, attempts, status, percent, error, started, stopped) = row;
    Ok(TaskRecord {
        job: wire_id(job)?,
        id,
        state: TaskState::parse(&state)?,
        agent: agent.map(wire_id).transpose()?,
        task_ref,
        attempts: small_count(attempts),
        termination_status: status,
        percent_done: percent,
        error,
        date_started: date(started),
        date_stopped: date(stopped),
    })
}

impl Store {
    /// The state of every task of the job, in identifier order (byte order).
    pub async fn tasks(&self, job: JobId) -> Result<Vec<TaskRecord>> {
        let mut reader = self.readers.acquire().await;
        let mut tx = reader.begin().await?;
        job_exists(&mut tx, job).await?;
        let rows: Vec<TaskRow> = sqlx::query_as(&format!(
            "SELECT {TASK_COLUMNS} FROM tasks WHERE job_id = ? ORDER BY name"
        ))
        .bind(db_id(job))
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        rows.into_iter().map(task_record).collect()
    }

    /// How many of the job's tasks run on each agent now (what `activeCPUPower` adds up).
    /// It reads only the tasks placed on agents now (the `tasks_placed` index), not every
    /// task of the job nor every task an agent ever ran, so a client polling a large running
    /// job costs little.
    pub async fn running_tasks_by_agent(&self, job: JobId) -> Result<Vec<(AgentId, u32)>> {
        let rows: Vec<(i64, i64)> = sqlx::query_as(&format!(
            "SELECT agent_id, count(*) FROM tasks INDEXED BY tasks_placed
             WHERE {ON_AGENTS} AND state = 'Running' AND job_id = ?
             GROUP BY agent_id"
        ))
        .bind(db_id(job))
        .fetch_all(&mut *self.readers.acquire().await)
        .await?;
        rows.into_iter()
            .map(|(agent, count)| Ok((wire_id(agent)?, small_count(count))))
            .collect()
    }

    /// The state of one task.
    pub async fn task(&self, job: JobId, task: &str) -> Result<TaskRecord> {
        let mut conn = self.readers.acquire().await;
        let row: Option<TaskRow> = sqlx::query_as(&format!(
            "SELECT {TASK_COLUMNS} FROM tasks WHERE job_id = ? AND name = ?"
        ))
        .bind(db_id(job))
        .bind(task)
        .fetch_optional(&mut *conn)
        .await?;
        match row {
            Some(row) => task_record(row),
            None => {
                job_exists(&mut conn, job).await?;
                Err(StoreError::NoSuchTask {
                    job,
                    task: task.to_string(),
                })
            }
        }
    }

    /// What the `taskSubmission` to an agent carries for this task.
    pub async fn task_launch(&self, job: JobId, task: &str) -> Result<TaskLaunch> {
        // No transaction: a task's specification never changes once stored, and the
        // BEGIN and COMMIT would cost two more hops to SQLite's thread for every task.
        let mut conn = self.readers.acquire().await;
        // The task's row, arguments, environment and file map, and its job's submission
        // date and input file count (to check the cached job files against), in one
        // statement: this runs for every task submitted, and each statement costs a hop to
        // SQLite's thread. `kind` sorts them: 0 the task, 1 arguments, 2 environment,
        // 3 file map, 4 the job.
        type Part = (i64, i64, String, Option<String>, f64);
        let parts: Vec<Part> = sqlx::query_as(
            "WITH t AS (SELECT id, command, input_stream FROM tasks
                        WHERE job_id = ?1 AND name = ?2)
             SELECT 0, 0, command, input_stream, 0.0 FROM t
             UNION ALL SELECT 1, position, value, NULL, 0.0
                 FROM task_arguments JOIN t ON task_id = t.id
             UNION ALL SELECT 2, 0, name, value, 0.0
                 FROM task_environment JOIN t ON task_id = t.id
             UNION ALL SELECT 3, 0, name, file_key, 0.0
                 FROM task_input_map JOIN t ON task_id = t.id
             UNION ALL SELECT 4, (SELECT count(*) FROM job_input_files WHERE job_id = ?1),
                              '', NULL, date_submitted
                 FROM jobs WHERE id = ?1 AND EXISTS (SELECT 1 FROM t)
             ORDER BY 1, 2",
        )
        .bind(db_id(job))
        .bind(task)
        .fetch_all(&mut *conn)
        .await?;
        let mut task_row = None;
        let mut job_row = None;
        let mut arguments = Vec::new();
        let mut environment = Vec::new();
        let mut file_map = Vec::new();
        for (kind, number, first, second, date) in parts {
            match kind {
                0 => task_row = Some((first, second)),
                1 => arguments.push(first),
                2 => environment.push((first, second.unwrap_or_default())),
                3 => file_map.push((first, second.unwrap_or_default())),
                _ => job_row = Some((number, date)),
            }
        }
        let (Some((command, input_stream)), Some((file_count, submitted))) = (task_row, job_row)
        else {
            job_exists(&mut conn, job).await?;
            return Err(StoreError::NoSuchTask {
                job,
                task: task.to_string(),
            });
        };
        let stamp = job_files::stamp(submitted, file_count);
        let job_files = match self.job_files.get(job, stamp) {
            Some(files) => files,
            None => {
                let files = Arc::new(input_files_of(&mut conn, db_id(job)).await?);
                self.job_files.keep(job, stamp, Arc::clone(&files));
                files
            }
        };
        // Same rule as JobSpecification::task_input_files: every job file at its own path,
        // then the task's map entries, which win on a clash.
        let mut input_files = (*job_files).clone();
        for (name, key) in file_map {
            if let Some(file) = job_files.get(&key) {
                input_files.insert(name, file.clone());
            }
        }
        Ok(TaskLaunch {
            command,
            arguments,
            environment: environment.into_iter().collect(),
            input_stream,
            input_files,
        })
    }

    /// The task an agent knows as `task_ref`, while it is placed there.
    pub async fn task_by_ref(
        &self,
        agent: AgentId,
        task_ref: &str,
    ) -> Result<Option<(JobId, String)>> {
        let row: Option<(i64, String)> = sqlx::query_as(&format!(
            "SELECT job_id, name FROM tasks WHERE agent_id = ? AND task_ref = ? AND {ON_AGENTS}"
        ))
        .bind(db_id(agent))
        .bind(task_ref)
        .fetch_optional(&mut *self.readers.acquire().await)
        .await?;
        row.map(|(job, name)| Ok((wire_id(job)?, name))).transpose()
    }

    /// Places a Pending task on `agent` before the taskSubmission goes out, so that no other
    /// round places it again while the agent's answer is awaited.
    pub async fn mark_assigned(&self, job: JobId, task: &str, agent: AgentId) -> Result<()> {
        let mut writer = self.writer.lock().await;
        let mut tx = writer.begin().await?;
        let id = task_in_state(&mut tx, job, task, &[Pending], "assigned to an agent").await?;
        sqlx::query(
            "UPDATE tasks SET state = 'Assigned', agent_id = ?, task_ref = NULL WHERE id = ?",
        )
        .bind(db_id(agent))
        .bind(id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Places several Pending tasks at once: `(job, task, agent)` each. Returns, in order,
    /// whether each was placed (false: the task is gone or no longer Pending, e.g. its job
    /// was canceled since the round read it). One statement per [`PLACEMENTS_PER_STATEMENT`]
    /// placements, each atomic on its own, rather than a transaction of one UPDATE per task:
    /// this runs every scheduling round, and each statement, BEGIN and COMMIT included,
    /// costs a hop to SQLite's thread.
    pub async fn mark_assigned_many(
        &self,
        placements: &[(JobId, String, AgentId)],
    ) -> Result<Vec<bool>> {
        let mut placed_set: HashSet<(i64, String)> = HashSet::with_capacity(placements.len());
        for chunk in placements.chunks(PLACEMENTS_PER_STATEMENT) {
            let mut builder: QueryBuilder<'_, Sqlite> = QueryBuilder::new(
                "UPDATE tasks SET state = 'Assigned', agent_id = p.column3, task_ref = NULL
                 FROM (",
            );
            builder.push_values(chunk, |mut row, (job, task, agent)| {
                row.push_bind(db_id(*job))
                    .push_bind(task.as_str())
                    .push_bind(db_id(*agent));
            });
            builder.push(
                ") AS p
                 WHERE tasks.job_id = p.column1 AND tasks.name = p.column2
                   AND tasks.state = 'Pending'
                 RETURNING tasks.job_id, tasks.name",
            );
            let rows: Vec<(i64, String)> = builder
                .build_query_as()
                .fetch_all(&mut *self.writer.lock().await)
                .await?;
            placed_set.extend(rows);
        }
        Ok(placements
            .iter()
            .map(|(job, task, _)| placed_set.contains(&(db_id(*job), task.clone())))
            .collect())
    }

    /// Records the taskRef `agent` answered for the task (Pending or Assigned before).
    pub async fn mark_dispatched(
        &self,
        job: JobId,
        task: &str,
        agent: AgentId,
        task_ref: &str,
    ) -> Result<()> {
        let mut writer = self.writer.lock().await;
        let mut tx = writer.begin().await?;
        let id = task_in_state(
            &mut tx,
            job,
            task,
            &[Pending, Assigned],
            "dispatched to an agent",
        )
        .await?;
        sqlx::query("UPDATE tasks SET state = 'Assigned', agent_id = ?, task_ref = ? WHERE id = ?")
            .bind(db_id(agent))
            .bind(task_ref)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The agent reports the task running; the first time stamps its start date.
    pub async fn mark_running(&self, job: JobId, task: &str) -> Result<()> {
        let mut writer = self.writer.lock().await;
        let mut tx = writer.begin().await?;
        let id = task_in_state(
            &mut tx,
            job,
            task,
            &[Assigned, Running, Stopped],
            "marked running",
        )
        .await?;
        sqlx::query(
            "UPDATE tasks SET state = 'Running', date_started = coalesce(date_started, ?)
             WHERE id = ?",
        )
        .bind(now())
        .bind(id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The agent reports the task running: records the taskRef it answered and, the first
    /// time, the start date, in one write (a `mark_dispatched` plus `mark_running`).
    pub async fn mark_started(
        &self,
        job: JobId,
        task: &str,
        agent: AgentId,
        task_ref: &str,
    ) -> Result<()> {
        // One statement, no transaction: this runs for every task that starts.
        let started =
            set_running(&mut *self.writer.lock().await, job, task, agent, task_ref).await?;
        self.placed_task_updated(started, job, task, "marked running")
            .await
    }

    /// [`Store::mark_started`] for a job's first task to start, with the job's move to
    /// Running ([`Store::mark_job_running`]) and, when it did move, `log` added to its log,
    /// all in one transaction: one write on the path from a submission to a running job.
    /// Returns whether the job changed.
    pub async fn mark_first_started(
        &self,
        job: JobId,
        task: &str,
        agent: AgentId,
        task_ref: &str,
        log: &str,
    ) -> Result<bool> {
        let mut writer = self.writer.lock().await;
        let mut tx = writer.begin().await?;
        if set_running(&mut *tx, job, task, agent, task_ref).await? == 0 {
            // The one writer connection must be free to find out why.
            drop(tx);
            drop(writer);
            return self
                .placed_task_updated(0, job, task, "marked running")
                .await
                .map(|()| false);
        }
        let changed = super::jobs::set_job_running(&mut tx, db_id(job), log).await?;
        tx.commit().await?;
        Ok(changed)
    }

    /// The agent reports the task suspended (`taskControl stop`).
    pub async fn mark_stopped(&self, job: JobId, task: &str) -> Result<()> {
        let mut writer = self.writer.lock().await;
        let mut tx = writer.begin().await?;
        let id = task_in_state(
            &mut tx,
            job,
            task,
            &[Assigned, Running, Stopped],
            "marked stopped",
        )
        .await?;
        sqlx::query("UPDATE tasks SET state = 'Stopped' WHERE id = ?")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// A `statusUpdate` from the task: `percent_done` is clamped to 0–100; a value that is
    /// not a number is ignored.
    pub async fn set_task_progress(&self, job: JobId, task: &str, percent_done: f64) -> Result<()> {
        let mut writer = self.writer.lock().await;
        let mut tx = writer.begin().await?;
        let (id, _) = task_row(&mut tx, job, task).await?;
        if !percent_done.is_nan() {
            sqlx::query("UPDATE tasks SET percent_done = ? WHERE id = ?")
                .bind(percent_done.clamp(0.0, 100.0))
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The task ended and its final results were fetched: stores its termination status and
    /// output files (by path relative to the task directory).
    pub async fn mark_finished(
        &self,
        job: JobId,
        task: &str,
        termination_status: i64,
        output_files: &BTreeMap<String, Vec<u8>>,
    ) -> Result<()> {
        if output_files.is_empty() {
            // One statement, no transaction: most tasks leave no files.
            let result = sqlx::query(&format!(
                "UPDATE tasks SET state = 'Finished', task_ref = NULL, termination_status = ?,
                     percent_done = 100.0, date_stopped = ?
                 WHERE job_id = ? AND name = ? AND {PLACED}"
            ))
            .bind(termination_status)
            .bind(now())
            .bind(db_id(job))
            .bind(task)
            .execute(&mut *self.writer.lock().await)
            .await?;
            return self
                .placed_task_updated(result.rows_affected(), job, task, "marked finished")
                .await;
        }
        let mut writer = self.writer.lock().await;
        let mut tx = writer.begin().await?;
        let id = task_in_state(
            &mut tx,
            job,
            task,
            &[Assigned, Running, Stopped],
            "marked finished",
        )
        .await?;
        sqlx::query(
            "UPDATE tasks SET state = 'Finished', task_ref = NULL, termination_status = ?,
                 percent_done = 100.0, date_stopped = ?
             WHERE id = ?",
        )
        .bind(termination_status)
        .bind(now())
        .bind(id)
        .execute(&mut *tx)
        .await?;
        // One file per statement: output files can be large.
        for (path, data) in output_files {
            sqlx::query(
                "INSERT OR REPLACE INTO task_output_files (task_id, path, data) VALUES (?, ?, ?)",
            )
            .bind(id)
            .bind(path)
            .bind(data.as_slice())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The task failed (the agent said so, or it could not be run); `message` says why.
    pub async fn mark_failed(&self, job: JobId, task: &str, message: &str) -> Result<()> {
        let mut writer = self.writer.lock().await;
        let mut tx = writer.begin().await?;
        let id = task_in_state(
            &mut tx,
            job,
            task,
            &[Pending, Assigned, Running, Stopped],
            "marked failed",
        )
        .await?;
        sqlx::query(
            "UPDATE tasks SET state = 'Failed', task_ref = NULL, error = ?, date_stopped = ?
             WHERE id = ?",
        )
        .bind(message)
        .bind(now())
        .bind(id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Takes one task placed on an agent back to Pending (`retryTask`, or the agent no longer
    /// knows it), counting one more attempt and dropping the lost run's partial results.
    pub async fn requeue_task(&self, job: JobId, task: &str) -> Result<()> {
        let mut writer = self.writer.lock().await;
        let mut tx = writer.begin().await?;
        let id = task_in_state(
            &mut tx,
            job,
            task,
            &[Assigned, Running, Stopped],
            "requeued",
        )
        .await?;
        requeue_where(&mut tx, OnAgents::Task(id)).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Appends a piece of streamed output (`taskResults` data) to the task's stdout or stderr.
    pub async fn append_output(
        &self,
        job: JobId,
        task: &str,
        stream: OutputStream,
        data: &[u8],
    ) -> Result<()> {
        let mut writer = self.writer.lock().await;
        let mut tx = writer.begin().await?;
        let (id, _) = task_row(&mut tx, job, task).await?;
        if !data.is_empty() {
            sqlx::query(
                "INSERT INTO task_output_chunks (job_id, task_id, stream, data) VALUES (?, ?, ?, ?)",
            )
            .bind(db_id(job))
            .bind(id)
            .bind(stream.code())
            .bind(data)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The last non-blank line the task wrote on standard error, if any: where an agent
    /// says why a task failed. Reads only that task's newest stderr pieces.
    pub async fn last_stderr_line(&self, job: JobId, task: &str) -> Result<Option<String>> {
        let mut conn = self.readers.acquire().await;
        let pieces: Vec<Vec<u8>> = sqlx::query_scalar(
            "SELECT c.data FROM task_output_chunks c JOIN tasks t ON t.id = c.task_id \
             WHERE t.job_id = ? AND t.name = ? AND c.stream = ? ORDER BY c.id DESC LIMIT 4",
        )
        .bind(db_id(job))
        .bind(task)
        .bind(OutputStream::Stderr.code())
        .fetch_all(&mut *conn)
        .await?;
        let tail: Vec<u8> = pieces.into_iter().rev().flatten().collect();
        let text = String::from_utf8_lossy(&tail);
        Ok(text
            .lines()
            .rev()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .map(str::to_string))
    }

    /// `jobResults`: all streamed output of every task of the job, by task identifier.
    pub async fn job_results(&self, job: JobId) -> Result<BTreeMap<String, StreamResults>> {
        let mut reader = self.readers.acquire().await;
        let mut tx = reader.begin().await?;
        job_exists(&mut tx, job).await?;
        let names: Vec<String> = sqlx::query_scalar("SELECT name FROM tasks WHERE job_id = ?")
            .bind(db_id(job))
            .fetch_all(&mut *tx)
            .await?;
        let mut results: BTreeMap<String, StreamResults> = names
            .into_iter()
            .map(|name| (name, StreamResults::default()))
            .collect();
        collect_output(&mut tx, job, 0, &mut results).await?;
        tx.commit().await?;
        Ok(results)
    }

    /// `jobLatestResults`: the streamed output that arrived since the previous call for this
    /// job (one cursor per job, shared by all clients), only for tasks that have new output.
    pub async fn job_latest_results(&self, job: JobId) -> Result<BTreeMap<String, StreamResults>> {
        let mut writer = self.writer.lock().await;
        let mut tx = writer.begin().await?;
        let seen: Option<i64> =
            sqlx::query_scalar("SELECT latest_results_seen FROM jobs WHERE id = ?")
                .bind(db_id(job))
                .fetch_optional(&mut *tx)
                .await?;
        let seen = seen.ok_or(StoreError::NoSuchJob(job))?;
        let mut results = BTreeMap::new();
        let last = collect_output(&mut tx, job, seen, &mut results).await?;
        if last > seen {
            sqlx::query("UPDATE jobs SET latest_results_seen = ? WHERE id = ?")
                .bind(last)
                .bind(db_id(job))
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(results)
    }

    /// `jobFinalResults`: termination status and output files of every task that has them.
    pub async fn job_final_results(&self, job: JobId) -> Result<BTreeMap<String, FinalResults>> {
        let mut reader = self.readers.acquire().await;
        let mut tx = reader.begin().await?;
        job_exists(&mut tx, job).await?;
        let statuses: Vec<(String, i64)> = sqlx::query_as(
            "SELECT name, termination_status FROM tasks
             WHERE job_id = ? AND termination_status IS NOT NULL",
        )
        .bind(db_id(job))
        .fetch_all(&mut *tx)
        .await?;
        let mut results: BTreeMap<String, FinalResults> = statuses
            .into_iter()
            .map(|(name, status)| {
                let results = FinalResults {
                    termination_status: Some(status),
                    output_files: BTreeMap::new(),
                };
                (name, results)
            })
            .collect();
        let files: Vec<(String, String, Vec<u8>)> = sqlx::query_as(
            "SELECT t.name, f.path, f.data FROM task_output_files f
             JOIN tasks t ON t.id = f.task_id WHERE t.job_id = ?",
        )
        .bind(db_id(job))
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        for (name, path, data) in files {
            results
                .entry(name)
                .or_default()
                .output_files
                .insert(path, data);
        }
        Ok(results)
    }
}

/// Appends the job's output pieces stored after piece `after` to `results`, in arrival order;
/// returns the last piece's identifier (`after` when there was none).
async fn collect_output(
    conn: &mut SqliteConnection,
    job: JobId,
    after: i64,
    results: &mut BTreeMap<String, StreamResults>,
) -> Result<i64> {
    let pieces: Vec<(i64, String, i64, Vec<u8>)> = sqlx::query_as(
        "SELECT c.id, t.name, c.stream, c.data FROM task_output_chunks c
         JOIN tasks t ON t.id = c.task_id
         WHERE c.job_id = ? AND c.id > ? ORDER BY c.id",
    )
    .bind(db_id(job))
    .bind(after)
    .fetch_all(&mut *conn)
    .await?;
    let mut last = after;
    for (id, name, stream, data) in pieces {
        last = last.max(id);
        let entry = results.entry(name).or_default();
        let target = if stream == OutputStream::Stdout.code() {
            &mut entry.stdout
        } else {
            &mut entry.stderr
        };
        target.extend_from_slice(&data);
    }
    Ok(last)
}
