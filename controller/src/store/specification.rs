//! Job specifications: a validated specification stored in normalized tables in one
//! transaction (batched inserts, so large jobs go in fast), and read back whole.

use std::collections::BTreeMap;

use sqlx::query_builder::Separated;
use sqlx::{Connection, QueryBuilder, Sqlite, SqliteConnection};
use xgrid_protocol::jobspec::{
    ArtCondition, ArtSpecification, InputFile, JobSpecification, SchedulerParameters,
    TaskSpecification,
};

use super::{db_id, now, wire_id, GridId, JobId, Result, Store, StoreError};

/// Bound values per multi-row INSERT: well under SQLite's limit of 32766, and large enough that
/// a 10,000-task job takes a handful of statements per table.
const VARIABLES_PER_INSERT: usize = 8_000;

impl Store {
    /// Stores a validated job in grid `grid`, with all its tasks and input files, in one
    /// transaction; returns the new job identifier. Identifiers only grow: one is never
    /// handed out again, even after its job is deleted.
    pub async fn submit_job(&self, spec: &JobSpecification, grid: GridId) -> Result<JobId> {
        self.submit_logged_job(spec, grid, None).await
    }

    /// [`Store::submit_job`], with `log` as the first line of the job's log, written in the
    /// same transaction (one write on the way from submission to running, not two).
    pub async fn submit_logged_job(
        &self,
        spec: &JobSpecification,
        grid: GridId,
        log: Option<&str>,
    ) -> Result<JobId> {
        let mut writer = self.writer.lock().await;
        let mut tx = writer.begin().await?;
        let grid_exists: Option<i64> = sqlx::query_scalar("SELECT id FROM grids WHERE id = ?")
            .bind(db_id(grid))
            .fetch_optional(&mut *tx)
            .await?;
        if grid_exists.is_none() {
            return Err(StoreError::NoSuchGrid(grid));
        }
        let scheduler = &spec.scheduler;
        let minimum_task_count = scheduler
            .minimum_task_count
            .map(|n| i64::try_from(n).unwrap_or(i64::MAX));
        let job = sqlx::query(
            "INSERT INTO jobs (grid_id, name, application_identifier, submission_identifier,
                 notification_email, grid_identifier, tasks_must_start_simultaneously,
                 minimum_task_count, date_submitted)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(db_id(grid))
        .bind(&spec.name)
        .bind(&spec.application_identifier)
        .bind(&spec.submission_identifier)
        .bind(&spec.notification_email)
        .bind(&spec.grid_identifier)
        .bind(scheduler.tasks_must_start_simultaneously)
        .bind(minimum_task_count)
        .bind(now())
        .execute(&mut *tx)
        .await?
        .last_insert_rowid();
        insert_job_parts(&mut tx, job, spec).await?;
        insert_tasks(&mut tx, job, &spec.tasks).await?;
        if let Some(text) = log {
            super::jobs::insert_log_line(&mut *tx, job, text).await?;
        }
        tx.commit().await?;
        wire_id(job)
    }

    /// `jobAddTask`: adds validated tasks (names the job does not have yet) to the job, in
    /// one transaction.
    pub async fn add_tasks(
        &self,
        job: JobId,
        tasks: &BTreeMap<String, TaskSpecification>,
    ) -> Result<()> {
        let mut writer = self.writer.lock().await;
        let mut tx = writer.begin().await?;
        super::jobs::job_exists(&mut tx, job).await?;
        for name in tasks.keys() {
            let taken: Option<i64> =
                sqlx::query_scalar("SELECT id FROM tasks WHERE job_id = ? AND name = ?")
                    .bind(db_id(job))
                    .bind(name)
                    .fetch_optional(&mut *tx)
                    .await?;
            if taken.is_some() {
                return Err(StoreError::TaskNameTaken {
                    job,
                    task: name.clone(),
                });
            }
        }
        insert_tasks(&mut tx, db_id(job), tasks).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The job's specification as stored (prototypes already expanded), for the
    /// `jobSpecification` request: `to_plist` on the result gives the canonical dictionary.
    pub async fn job_specification(&self, job: JobId) -> Result<JobSpecification> {
        type JobRow = (
            Option<String>,
            Option<String>,
            Option<String>,
            Option<String>,
            Option<String>,
            bool,
            Option<i64>,
        );
        let mut reader = self.readers.acquire().await;
        let mut tx = reader.begin().await?;
        let row: Option<JobRow> = sqlx::query_as(
            "SELECT name, application_identifier, submission_identifier, notification_email,
                    grid_identifier, tasks_must_start_simultaneously, minimum_task_count
             FROM jobs WHERE id = ?",
        )
        .bind(db_id(job))
        .fetch_optional(&mut *tx)
        .await?;
        let Some((name, application, submission, email, grid_identifier, simultaneous, minimum)) =
            row
        else {
            return Err(StoreError::NoSuchJob(job));
        };
        let job = db_id(job);
        let depends_on_jobs: Vec<String> = sqlx::query_scalar(
            "SELECT depends_on FROM job_dependencies WHERE job_id = ? ORDER BY position",
        )
        .bind(job)
        .fetch_all(&mut *tx)
        .await?;
        let hints: Vec<(String, String)> = sqlx::query_as(
            "SELECT task_name, agent_name FROM job_scheduler_hints WHERE job_id = ?",
        )
        .bind(job)
        .fetch_all(&mut *tx)
        .await?;
        let input_files = input_files_of(&mut tx, job).await?;
        let (art_specifications, art_conditions) = arts_of(&mut tx, job).await?;
        let tasks = task_specifications_of(&mut tx, job).await?;
        tx.commit().await?;
        Ok(JobSpecification {
            name,
            application_identifier: application,
            submission_identifier: submission,
            notification_email: email,
            grid_identifier,
            scheduler: SchedulerParameters {
                depends_on_jobs,
                tasks_must_start_simultaneously: simultaneous,
                minimum_task_count: minimum.and_then(|n| u64::try_from(n).ok()),
            },
            scheduler_hints: hints.into_iter().collect(),
            input_files,
            art_specifications,
            art_conditions,
            tasks,
        })
    }
}

/// Inserts `rows` with as few multi-row INSERTs as the bound-value limit allows. `insert` is
/// the statement up to its VALUES keyword; `bind` binds one row's `columns` values. The
/// statements are not cached: each has its own size and would only crowd the cache.
async fn insert_batched<'a, R, F>(
    conn: &mut SqliteConnection,
    insert: &str,
    columns: usize,
    rows: &'a [R],
    mut bind: F,
) -> Result<()>
where
    F: for<'q> FnMut(&mut Separated<'q, 'a, Sqlite, &'static str>, &'a R),
{
    let per_statement = (VARIABLES_PER_INSERT / columns.max(1)).max(1);
    for chunk in rows.chunks(per_statement) {
        let mut builder: QueryBuilder<'a, Sqlite> = QueryBuilder::new(insert);
        builder.push_values(chunk, |mut values, row| bind(&mut values, row));
        builder
            .build()
            .persistent(false)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// The job-level rows of a specification: dependencies, hints, input files, ARTs.
async fn insert_job_parts(
    conn: &mut SqliteConnection,
    job: i64,
    spec: &JobSpecification,
) -> Result<()> {
    let dependencies: Vec<(i64, &str)> = spec
        .scheduler
        .depends_on_jobs
        .iter()
        .enumerate()
        .map(|(position, id)| (position_of(position), id.as_str()))
        .collect();
    insert_batched(
        conn,
        "INSERT INTO job_dependencies (job_id, position, depends_on) ",
        3,
        &dependencies,
        |values, (position, id)| {
            values.push_bind(job).push_bind(*position).push_bind(*id);
        },
    )
    .await?;
    let hints: Vec<(&String, &String)> = spec.scheduler_hints.iter().collect();
    insert_batched(
        conn,
        "INSERT INTO job_scheduler_hints (job_id, task_name, agent_name) ",
        3,
        &hints,
        |values, (task, agent)| {
            values
                .push_bind(job)
                .push_bind(task.as_str())
                .push_bind(agent.as_str());
        },
    )
    .await?;
    // One file per statement: files can be large, and their count is small.
    for (path, file) in &spec.input_files {
        sqlx::query(
            "INSERT INTO job_input_files (job_id, path, is_executable, data) VALUES (?, ?, ?, ?)",
        )
        .bind(job)
        .bind(path)
        .bind(file.is_executable)
        .bind(&*file.data)
        .execute(&mut *conn)
        .await?;
    }
    for (art, specification) in &spec.art_specifications {
        let condition = spec.art_conditions.get(art);
        sqlx::query(
            "INSERT INTO job_arts (job_id, art, is_executable, has_condition, art_min, art_max,
                 art_equal, data)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(job)
        .bind(art)
        .bind(specification.is_executable)
        .bind(condition.is_some())
        .bind(condition.and_then(|c| c.min))
        .bind(condition.and_then(|c| c.max))
        .bind(condition.and_then(|c| c.equal))
        .bind(&*specification.data)
        .execute(&mut *conn)
        .await?;
        for (position, argument) in specification.arguments.iter().enumerate() {
            sqlx::query(
                "INSERT INTO job_art_arguments (job_id, art, position, value) VALUES (?, ?, ?, ?)",
            )
            .bind(job)
            .bind(art)
            .bind(position_of(position))
            .bind(argument)
            .execute(&mut *conn)
            .await?;
        }
    }
    Ok(())
}

/// Inserts the tasks and their argument, environment, file map and dependency rows. Task row
/// identifiers are chosen here, past the largest in use, so the child rows can be batched
/// without reading identifiers back; the single writer makes that safe.
async fn insert_tasks(
    conn: &mut SqliteConnection,
    job: i64,
    tasks: &BTreeMap<String, TaskSpecification>,
) -> Result<()> {
    let last: i64 = sqlx::query_scalar("SELECT coalesce(max(id), 0) FROM tasks")
        .fetch_one(&mut *conn)
        .await?;
    let numbered: Vec<(i64, &String, &TaskSpecification)> = tasks
        .iter()
        .zip(1..)
        .map(|((name, task), offset)| (last + offset, name, task))
        .collect();
    insert_batched(
        conn,
        "INSERT INTO tasks (id, job_id, name, command, input_stream) ",
        5,
        &numbered,
        |values, (id, name, task)| {
            values
                .push_bind(*id)
                .push_bind(job)
                .push_bind(name.as_str())
                .push_bind(task.command.as_str())
                .push_bind(task.input_stream.as_deref());
        },
    )
    .await?;

    let mut arguments: Vec<(i64, i64, &str)> = Vec::new();
    let mut environment: Vec<(i64, &str, &str)> = Vec::new();
    let mut file_map: Vec<(i64, &str, &str)> = Vec::new();
    let mut dependencies: Vec<(i64, i64, &str)> = Vec::new();
    for (id, _, task) in &numbered {
        let id = *id;
        for (position, argument) in task.arguments.iter().enumerate() {
            arguments.push((id, position_of(position), argument));
        }
        for (name, value) in &task.environment {
            environment.push((id, name, value));
        }
        for (name, key) in &task.input_file_map {
            file_map.push((id, name, key));
        }
        for (position, dependency) in task.depends_on_tasks.iter().enumerate() {
            dependencies.push((id, position_of(position), dependency));
        }
    }
    insert_batched(
        conn,
        "INSERT INTO task_arguments (task_id, position, value) ",
        3,
        &arguments,
        |values, (id, position, argument)| {
            values
                .push_bind(*id)
                .push_bind(*position)
                .push_bind(*argument);
        },
    )
    .await?;
    insert_batched(
        conn,
        "INSERT INTO task_environment (task_id, name, value) ",
        3,
        &environment,
        |values, (id, name, value)| {
            values.push_bind(*id).push_bind(*name).push_bind(*value);
        },
    )
    .await?;
    insert_batched(
        conn,
        "INSERT INTO task_input_map (task_id, name, file_key) ",
        3,
        &file_map,
        |values, (id, name, key)| {
            values.push_bind(*id).push_bind(*name).push_bind(*key);
        },
    )
    .await?;
    insert_batched(
        conn,
        "INSERT INTO task_dependencies (task_id, position, depends_on) ",
        3,
        &dependencies,
        |values, (id, position, dependency)| {
            values
                .push_bind(*id)
                .push_bind(*position)
                .push_bind(*dependency);
        },
    )
    .await?;
    if !dependencies.is_empty() {
        // Scheduling rounds read every task of such a job (store/snapshot.rs).
        sqlx::query("UPDATE jobs SET has_task_dependencies = 1 WHERE id = ?")
            .bind(job)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

fn position_of(index: usize) -> i64 {
    i64::try_from(index).unwrap_or(i64::MAX)
}

pub(super) async fn input_files_of(
    conn: &mut SqliteConnection,
    job: i64,
) -> Result<BTreeMap<String, InputFile>> {
    let rows: Vec<(String, bool, Vec<u8>)> =
        sqlx::query_as("SELECT path, is_executable, data FROM job_input_files WHERE job_id = ?")
            .bind(job)
            .fetch_all(&mut *conn)
            .await?;
    Ok(rows
        .into_iter()
        .map(|(path, is_executable, data)| {
            (
                path,
                InputFile {
                    data: data.into(),
                    is_executable,
                },
            )
        })
        .collect())
}

type Arts = (
    BTreeMap<String, ArtSpecification>,
    BTreeMap<String, ArtCondition>,
);

async fn arts_of(conn: &mut SqliteConnection, job: i64) -> Result<Arts> {
    type ArtRow = (
        String,
        bool,
        bool,
        Option<f64>,
        Option<f64>,
        Option<f64>,
        Vec<u8>,
    );
    let rows: Vec<ArtRow> = sqlx::query_as(
        "SELECT art, is_executable, has_condition, art_min, art_max, art_equal, data
         FROM job_arts WHERE job_id = ?",
    )
    .bind(job)
    .fetch_all(&mut *conn)
    .await?;
    let arguments: Vec<(String, String)> = sqlx::query_as(
        "SELECT art, value FROM job_art_arguments WHERE job_id = ? ORDER BY art, position",
    )
    .bind(job)
    .fetch_all(&mut *conn)
    .await?;
    let mut specifications = BTreeMap::new();
    let mut conditions = BTreeMap::new();
    for (art, is_executable, has_condition, min, max, equal, data) in rows {
        if has_condition {
            conditions.insert(art.clone(), ArtCondition { min, max, equal });
        }
        specifications.insert(
            art,
            ArtSpecification {
                data: data.into(),
                is_executable,
                arguments: Vec::new(),
            },
        );
    }
    for (art, argument) in arguments {
        if let Some(specification) = specifications.get_mut(&art) {
            specification.arguments.push(argument);
        }
    }
    Ok((specifications, conditions))
}

/// Every task specification of a job, with one query per table.
async fn task_specifications_of(
    conn: &mut SqliteConnection,
    job: i64,
) -> Result<BTreeMap<String, TaskSpecification>> {
    let rows: Vec<(i64, String, String, Option<String>)> =
        sqlx::query_as("SELECT id, name, command, input_stream FROM tasks WHERE job_id = ?")
            .bind(job)
            .fetch_all(&mut *conn)
            .await?;
    let mut by_id: BTreeMap<i64, (String, TaskSpecification)> = rows
        .into_iter()
        .map(|(id, name, command, input_stream)| {
            let task = TaskSpecification {
                command,
                arguments: Vec::new(),
                environment: BTreeMap::new(),
                input_stream,
                input_file_map: BTreeMap::new(),
                depends_on_tasks: Vec::new(),
            };
            (id, (name, task))
        })
        .collect();
    let arguments: Vec<(i64, String)> = sqlx::query_as(
        "SELECT c.task_id, c.value FROM task_arguments c
         JOIN tasks t ON t.id = c.task_id WHERE t.job_id = ? ORDER BY c.task_id, c.position",
    )
    .bind(job)
    .fetch_all(&mut *conn)
    .await?;
    for (id, argument) in arguments {
        if let Some((_, task)) = by_id.get_mut(&id) {
            task.arguments.push(argument);
        }
    }
    let environment: Vec<(i64, String, String)> = sqlx::query_as(
        "SELECT c.task_id, c.name, c.value FROM task_environment c
         JOIN tasks t ON t.id = c.task_id WHERE t.job_id = ?",
    )
    .bind(job)
    .fetch_all(&mut *conn)
    .await?;
    for (id, name, value) in environment {
        if let Some((_, task)) = by_id.get_mut(&id) {
            task.environment.insert(name, value);
        }
    }
    let file_map: Vec<(i64, String, String)> = sqlx::query_as(
        "SELECT c.task_id, c.name, c.file_key FROM task_input_map c
         JOIN tasks t ON t.id = c.task_id WHERE t.job_id = ?",
    )
    .bind(job)
    .fetch_all(&mut *conn)
    .await?;
    for (id, name, key) in file_map {
        if let Some((_, task)) = by_id.get_mut(&id) {
            task.input_file_map.insert(name, key);
        }
    }
    let dependencies: Vec<(i64, String)> = sqlx::query_as(
        "SELECT c.task_id, c.depends_on FROM task_dependencies c
         JOIN tasks t ON t.id = c.task_id WHERE t.job_id = ? ORDER BY c.task_id, c.position",
    )
    .bind(job)
    .fetch_all(&mut *conn)
    .await?;
    for (id, dependency) in dependencies {
        if let Some((_, task)) = by_id.get_mut(&id) {
            task.depends_on_tasks.push(dependency);
        }
    }
    Ok(by_id.into_values().collect())
}
