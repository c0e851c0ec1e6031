//! Jobs after submission: attributes, listing, status changes, cancel, restart, deletion,
//! and the job log.

use sqlx::{Connection, SqliteConnection};
use xgrid_protocol::plist::Date;

use super::tasks::{attached_tasks_where, OnAgents};
use super::{
    date, db_id, now, wire_id, AttachedTask, GridId, JobAttributes, JobId, JobStatus, LogEntry,
    Result, Store, StoreError,
};

impl Store {
    /// What `jobAttributes` needs, task counts included.
    pub async fn job_attributes(&self, job: JobId) -> Result<JobAttributes> {
        type JobRow = (
            i64,
            Option<String>,
            Option<String>,
            String,
            bool,
            Option<String>,
            f64,
            Option<f64>,
            Option<f64>,
        );
        let mut reader = self.readers.acquire().await;
        let mut tx = reader.begin().await?;
        let row: Option<JobRow> = sqlx::query_as(
            "SELECT grid_id, name, application_identifier, status, suspended, error,
                    date_submitted, date_started, date_stopped
             FROM jobs WHERE id = ?",
        )
        .bind(db_id(job))
        .fetch_optional(&mut *tx)
        .await?;
        let Some((
            grid,
            name,
            application_identifier,
            status,
            suspended,
            error,
            submitted,
            started,
            stopped,
        )) = row
        else {
            return Err(StoreError::NoSuchJob(job));
        };
        let (task_count, undone, percent_sum): (i64, i64, f64) = sqlx::query_as(
            "SELECT count(*),
                    coalesce(sum(state NOT IN ('Finished', 'Failed', 'Canceled')), 0),
                    coalesce(sum(CASE state WHEN 'Finished' THEN 100.0
                                            ELSE coalesce(percent_done, 0.0) END), 0.0)
             FROM tasks WHERE job_id = ?",
        )
        .bind(db_id(job))
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        let percent_done = if task_count > 0 {
            (percent_sum / task_count as f64).clamp(0.0, 100.0)
        } else {
            0.0
        };
        Ok(JobAttributes {
            id: job,
            grid: wire_id(grid)?,
            name,
            application_identifier,
            status: JobStatus::parse(&status)?,
            suspended,
            error,
            date_submitted: Date(submitted),
            date_started: date(started),
            date_stopped: date(stopped),
            task_count: task_count.unsigned_abs(),
            undone_task_count: undone.unsigned_abs(),
            percent_done,
        })
    }

    /// The jobs of grid `grid`, oldest first.
    pub async fn job_ids(&self, grid: GridId) -> Result<Vec<JobId>> {
        let mut reader = self.readers.acquire().await;
        let mut tx = reader.begin().await?;
        let exists: Option<i64> = sqlx::query_scalar("SELECT id FROM grids WHERE id = ?")
            .bind(db_id(grid))
            .fetch_optional(&mut *tx)
            .await?;
        if exists.is_none() {
            return Err(StoreError::NoSuchGrid(grid));
        }
        let ids: Vec<i64> = sqlx::query_scalar("SELECT id FROM jobs WHERE grid_id = ? ORDER BY id")
            .bind(db_id(grid))
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        ids.into_iter().map(wire_id).collect()
    }

    /// Sets the job's status. The first move to Running stamps `dateStarted`; a move to a
    /// final status stamps `dateStopped`.
    pub async fn set_job_status(&self, job: JobId, status: JobStatus) -> Result<()> {
        let result = sqlx::query(
            "UPDATE jobs SET status = ?1,
                 date_started = CASE WHEN ?1 = 'Running' THEN coalesce(date_started, ?2)
                                     ELSE date_started END,
                 date_stopped = CASE WHEN ?3 THEN coalesce(date_stopped, ?2)
                                     ELSE date_stopped END
             WHERE id = ?4",
        )
        .bind(status.as_str())
        .bind(now())
        .bind(status.is_final())
        .bind(db_id(job))
        .execute(&mut *self.writer.lock().await)
        .await?;
        found(result.rows_affected(), job)
    }

    /// A task of the job started: a Pending or Prepared job becomes Running, stamping
    /// `dateStarted`, and `log` is added to its log in the same transaction. Returns whether
    /// the job changed (false when already running or over; then nothing is logged).
    pub async fn mark_job_running(&self, job: JobId, log: &str) -> Result<bool> {
        let mut writer = self.writer.lock().await;
        let mut tx = writer.begin().await?;
        let changed = set_job_running(&mut tx, db_id(job), log).await?;
        tx.commit().await?;
        Ok(changed)
    }

    /// `jobControl suspend` / `resume`: a suspended job gets no new tasks started.
    pub async fn set_job_suspended(&self, job: JobId, suspended: bool) -> Result<()> {
        let result = sqlx::query("UPDATE jobs SET suspended = ? WHERE id = ?")
            .bind(suspended)
            .bind(db_id(job))
            .execute(&mut *self.writer.lock().await)
            .await?;
        found(result.rows_affected(), job)
    }

    /// The job's `error` attribute; `None` clears it.
    pub async fn set_job_error(&self, job: JobId, error: Option<&str>) -> Result<()> {
        let result = sqlx::query("UPDATE jobs SET error = ? WHERE id = ?")
            .bind(error)
            .bind(db_id(job))
            .execute(&mut *self.writer.lock().await)
            .await?;
        found(result.rows_affected(), job)
    }

    /// Marks every task of the job that has not ended Canceled. Returns the tasks that were
    /// placed on agents, which the controller must cancel there.
    pub async fn cancel_unfinished_tasks(&self, job: JobId) -> Result<Vec<AttachedTask>> {
        let mut writer = self.writer.lock().await;
        let mut tx = writer.begin().await?;
        job_exists(&mut tx, job).await?;
        let attached = attached_tasks_where(&mut tx, OnAgents::Job(db_id(job))).await?;
        sqlx::query(
            "UPDATE tasks SET state = 'Canceled', task_ref = NULL,
                 date_stopped = coalesce(date_stopped, ?)
             WHERE job_id = ? AND state NOT IN ('Finished', 'Failed', 'Canceled')",
        )
        .bind(now())
        .bind(db_id(job))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(attached)
    }

    /// Deletes the job and everything stored for it. Returns the tasks that were placed on
    /// agents, which the controller must cancel there.
    pub async fn delete_job(&self, job: JobId) -> Result<Vec<AttachedTask>> {
        // Frees the memory. A launch racing the delete may keep them again, but a later job
        // given the same number has another submission date, so never receives them.
        self.job_files.forget(job);
        let mut writer = self.writer.lock().await;
        let mut tx = writer.begin().await?;
        job_exists(&mut tx, job).await?;
        let attached = attached_tasks_where(&mut tx, OnAgents::Job(db_id(job))).await?;
        // Tasks, their children and the job's other rows go by ON DELETE CASCADE.
        sqlx::query("DELETE FROM jobs WHERE id = ?")
            .bind(db_id(job))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(attached)
    }

    /// Runs the job again from the beginning: every task back to Pending with its results
    /// and attempt count cleared, the job Pending, not suspended, with no error or start and
    /// stop dates. Returns the tasks that were placed on agents, which the controller must
    /// cancel there.
    pub async fn restart_job(&self, job: JobId) -> Result<Vec<AttachedTask>> {
        let mut writer = self.writer.lock().await;
        let mut tx = writer.begin().await?;
        job_exists(&mut tx, job).await?;
        let attached = attached_tasks_where(&mut tx, OnAgents::Job(db_id(job))).await?;
        sqlx::query("DELETE FROM task_output_chunks WHERE job_id = ?")
            .bind(db_id(job))
            .execute(&mut *tx)
            .await?;
        for table in ["task_output_files", "task_checkpoints"] {
            sqlx::query(&format!(
                "DELETE FROM {table} WHERE task_id IN (SELECT id FROM tasks WHERE job_id = ?)"
            ))
            .bind(db_id(job))
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query(
            "UPDATE tasks SET state = 'Pending', agent_id = NULL, task_ref = NULL, attempts = 0,
                 termination_status = NULL, percent_done = NULL, error = NULL,
                 date_started = NULL, date_stopped = NULL, held_reason = NULL,
                 last_moved_at = NULL
             WHERE job_id = ?",
        )
        .bind(db_id(job))
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE jobs SET status = 'Pending', suspended = 0, error = NULL,
                 date_started = NULL, date_stopped = NULL, latest_results_seen = 0
             WHERE id = ?",
        )
        .bind(db_id(job))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(attached)
    }

    /// Adds a line to the job's log, stamped with the current time.
    pub async fn append_job_log(&self, job: JobId, text: &str) -> Result<()> {
        let mut writer = self.writer.lock().await;
        let mut tx = writer.begin().await?;
        job_exists(&mut tx, job).await?;
        insert_log_line(&mut *tx, db_id(job), text).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The job's log, oldest line first.
    pub async fn job_log(&self, job: JobId) -> Result<Vec<LogEntry>> {
        let mut reader = self.readers.acquire().await;
        let mut tx = reader.begin().await?;
        job_exists(&mut tx, job).await?;
        let rows: Vec<(f64, String)> =
            sqlx::query_as("SELECT time, text FROM job_log WHERE job_id = ? ORDER BY id")
                .bind(db_id(job))
                .fetch_all(&mut *tx)
                .await?;
        tx.commit().await?;
        Ok(rows
            .into_iter()
            .map(|(time, text)| LogEntry {
                time: Date(time),
                text,
            })
            .collect())
    }
}

/// [`Store::mark_job_running`] on a connection (in the caller's transaction), for the job
/// with row id `job`.
pub(super) async fn set_job_running(
    conn: &mut SqliteConnection,
    job: i64,
    log: &str,
) -> Result<bool> {
    let changed = sqlx::query(
        "UPDATE jobs SET status = 'Running', date_started = coalesce(date_started, ?)
         WHERE id = ? AND status IN ('Pending', 'Prepared')",
    )
    .bind(now())
    .bind(job)
    .execute(&mut *conn)
    .await?
    .rows_affected()
        > 0;
    if changed {
        insert_log_line(&mut *conn, job, log).await?;
    }
    Ok(changed)
}

/// Adds a line, dated now, to the log of the job with row id `job`.
pub(super) async fn insert_log_line<'e>(
    executor: impl sqlx::Executor<'e, Database = sqlx::Sqlite>,
    job: i64,
    text: &str,
) -> Result<()> {
    sqlx::query("INSERT INTO job_log (job_id, time, text) VALUES (?, ?, ?)")
        .bind(job)
        .bind(now())
        .bind(text)
        .execute(executor)
        .await?;
    Ok(())
}

fn found(rows_affected: u64, job: JobId) -> Result<()> {
    if rows_affected == 0 {
        Err(StoreError::NoSuchJob(job))
    } else {
        Ok(())
    }
}

pub(super) async fn job_exists(conn: &mut SqliteConnection, job: JobId) -> Result<()> {
    let exists: Option<i64> = sqlx::query_scalar("SELECT id FROM jobs WHERE id = ?")
        .bind(db_id(job))
        .fetch_optional(&mut *conn)
        .await?;
    match exists {
        Some(_) => Ok(()),
        None => Err(StoreError::NoSuchJob(job)),
    }
}
