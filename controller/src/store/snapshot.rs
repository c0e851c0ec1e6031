//! The read a scheduling round starts from: agents, ART results and the open jobs with their
//! tasks, in one read transaction with one query per table. Jobs that ended are left out
//! with all their tasks, so the cost follows the work still open, not the history stored;
//! the compact read used by the scheduling loop also leaves out the tasks of open jobs that
//! cannot change a decision, so its cost follows the slots, not the size of the jobs.

use std::collections::{BTreeMap, HashMap};

use sqlx::Connection;

use xgrid_protocol::jobspec::ArtCondition;

use super::agents::load_agents;
use super::{
    wire_id, ArtResultRecord, ArtVerdict, JobDependency, JobStatus, Result, SchedulingSnapshot,
    SnapshotJob, SnapshotTask, Store, TaskState,
};

/// Jobs (as `j`) that may still get tasks started; the `jobs_by_status` index finds them.
macro_rules! open_jobs {
    () => {
        "j.status IN ('Pending', 'Prepared', 'Running')"
    };
}

// The last three columns say whether the job has job dependencies, ARTs (or ART results)
// and task dependencies: the queries for those are skipped when no open job has any, which
// is the common case and makes a round four queries shorter.
const JOB_ROWS: &str = concat!(
    "SELECT j.id, j.grid_id, j.status, j.suspended, j.tasks_must_start_simultaneously,
            j.minimum_task_count,
            EXISTS (SELECT 1 FROM job_dependencies d WHERE d.job_id = j.id),
            EXISTS (SELECT 1 FROM job_arts a WHERE a.job_id = j.id)
                OR EXISTS (SELECT 1 FROM art_results r WHERE r.job_id = j.id),
            j.has_task_dependencies
     FROM jobs j WHERE ",
    open_jobs!(),
    " ORDER BY j.id"
);

// A dependency names a job by its decimal identifier; anything else names no job.
const JOB_DEPENDENCY_ROWS: &str = concat!(
    "SELECT d.job_id, d.depends_on, other.status
     FROM jobs j
     JOIN job_dependencies d ON d.job_id = j.id
     LEFT JOIN jobs other ON other.id = CAST(d.depends_on AS INTEGER)
                         AND CAST(other.id AS TEXT) = d.depends_on
     WHERE ",
    open_jobs!(),
    " ORDER BY d.job_id, d.position"
);

const ART_CONDITION_ROWS: &str = concat!(
    "SELECT a.job_id, a.art, a.art_min, a.art_max, a.art_equal
     FROM jobs j JOIN job_arts a ON a.job_id = j.id
     WHERE a.has_condition = 1 AND ",
    open_jobs!()
);

const ART_RESULT_ROWS: &str = concat!(
    "SELECT r.job_id, r.agent_id, r.art, r.verdict, r.score
     FROM jobs j JOIN art_results r ON r.job_id = j.id
     WHERE ",
    open_jobs!(),
    " ORDER BY r.job_id, r.agent_id, r.art"
);

// CROSS JOIN fixes the join order here and below: with statistics from a small grid (a few
// tasks, no task dependencies yet) the planner would otherwise walk every stored task first.
pub(super) const TASK_ROWS: &str = concat!(
    "SELECT t.job_id, t.name, t.state, t.agent_id, h.agent_name
     FROM jobs j
     CROSS JOIN tasks t ON t.job_id = j.id
     LEFT JOIN job_scheduler_hints h ON h.job_id = t.job_id AND h.task_name = t.name
     WHERE ",
    open_jobs!(),
    " ORDER BY t.job_id, t.name"
);

// Only jobs with task dependencies have rows to find (`has_task_dependencies`, set when
// such tasks are stored), so the others' tasks are not walked.
pub(super) const TASK_DEPENDENCY_ROWS: &str = concat!(
    "SELECT t.job_id, t.name, d.depends_on
     FROM jobs j
     CROSS JOIN tasks t ON t.job_id = j.id
     CROSS JOIN task_dependencies d ON d.task_id = t.id
     WHERE j.has_task_dependencies AND ",
    open_jobs!(),
    " ORDER BY t.job_id, t.name, d.position"
);

/// Like [`TASK_ROWS`], but a job whose tasks have no `dependsOnTasks` and need not start
/// together keeps only its first Finished task, and only its first `?1` Pending tasks (in
/// natural order for numeric task names: shorter names first, then by bytes): the others
/// decide nothing a round decides (which tasks are ready, whether the job failed or
/// finished, whether it started, which tasks fill the free slots), and leaving them out
/// keeps rounds cheap while a large job drains.
///
/// Every part is found through an index (migration 0003), so a round costs the same for a
/// job of ten tasks and one of a hundred thousand: the tasks in other states through
/// `tasks_unsettled`, the first Finished one through `tasks_finished`, and the first Pending
/// ones by stepping `?1` times along `tasks_pending` (`first_pending`, a recursive walk:
/// SQLite has no LATERAL join). The indexes are named outright, and the join order fixed
/// with CROSS JOIN, so the planner cannot fall back to walking the job's tasks; no ORDER BY:
/// the rows are sorted after reading.
pub(super) const COMPACT_TASK_ROWS: &str = concat!(
    "WITH RECURSIVE open AS MATERIALIZED (
         SELECT j.id, j.tasks_must_start_simultaneously OR j.has_task_dependencies AS keep_all
         FROM jobs j WHERE ",
    open_jobs!(),
    "),
     first_pending (job_id, name, place) AS (
         SELECT open.id,
                (SELECT p.name FROM tasks p INDEXED BY tasks_pending
                 WHERE p.state = 'Pending' AND p.job_id = open.id
                 ORDER BY length(p.name), p.name LIMIT 1),
                1
         FROM open WHERE NOT open.keep_all
         UNION ALL
         SELECT f.job_id,
                (SELECT p.name FROM tasks p INDEXED BY tasks_pending
                 WHERE p.state = 'Pending' AND p.job_id = f.job_id
                   AND length(p.name) >= length(f.name)
                   AND (length(p.name), p.name) > (length(f.name), f.name)
                 ORDER BY length(p.name), p.name LIMIT 1),
                f.place + 1
         FROM first_pending f WHERE f.name IS NOT NULL AND f.place < ?1),
     chosen (id) AS (
         SELECT t.id FROM open
         CROSS JOIN tasks t INDEXED BY sqlite_autoindex_tasks_1 ON t.job_id = open.id
         WHERE open.keep_all
         UNION ALL
         SELECT t.id FROM open
         CROSS JOIN tasks t INDEXED BY tasks_unsettled
             ON t.job_id = open.id AND t.state NOT IN ('Pending', 'Finished')
         WHERE NOT open.keep_all
         UNION ALL
         SELECT (SELECT f.id FROM tasks f INDEXED BY tasks_finished
                 WHERE f.state = 'Finished' AND f.job_id = open.id ORDER BY f.id LIMIT 1)
         FROM open WHERE NOT open.keep_all
         UNION ALL
         SELECT t.id FROM first_pending f
         CROSS JOIN tasks t INDEXED BY sqlite_autoindex_tasks_1
             ON t.job_id = f.job_id AND t.name = f.name)
     SELECT t.job_id, t.name, t.state, t.agent_id, h.agent_name
     FROM chosen
     CROSS JOIN tasks t ON t.id = chosen.id
     LEFT JOIN job_scheduler_hints h ON h.job_id = t.job_id AND h.task_name = t.name"
);

impl Store {
    /// Everything a scheduling round reads (see [`SchedulingSnapshot`]).
    pub async fn scheduling_snapshot(&self) -> Result<SchedulingSnapshot> {
        self.load_snapshot(false).await
    }

    /// A snapshot for the scheduler that leaves out the tasks its decisions cannot depend
    /// on (see [`COMPACT_TASK_ROWS`]): of a job without task dependencies or a gang, the
    /// Finished tasks but one, and the Pending tasks beyond as many as all agents that are
    /// not Offline have slots (at least one, so a job with work left never looks finished). Numeric task names keep their natural order; of other names
    /// the Pending ones kept are the shortest, which may differ from natural order.
    pub async fn scheduling_snapshot_compact(&self) -> Result<SchedulingSnapshot> {
        self.load_snapshot(true).await
    }

    async fn load_snapshot(&self, compact: bool) -> Result<SchedulingSnapshot> {
        let mut reader = self.readers.acquire().await;
        let mut tx = reader.begin().await?;
        // The scheduler needs no hostnames or addresses: one query fewer per round.
        let agents = load_agents(&mut tx, None, false).await?;
        // At least one: a job must never look as if it had only finished tasks.
        let slots: i64 = agents
            .iter()
            .filter(|a| a.state != super::AgentState::Offline)
            .map(|a| i64::from(a.maximum_task_count))
            .sum::<i64>()
            .max(1);

        type JobRow = (i64, i64, String, bool, bool, Option<i64>, bool, bool, bool);
        type ConditionRow = (i64, String, Option<f64>, Option<f64>, Option<f64>);
        type ArtRow = (i64, i64, String, String, Option<f64>);
        type TaskRow = (i64, String, String, Option<i64>, Option<String>);
        let job_rows: Vec<JobRow> = sqlx::query_as(JOB_ROWS).fetch_all(&mut *tx).await?;
        let any = |flag: fn(&JobRow) -> bool| job_rows.iter().any(flag);

        let dependencies: Vec<(i64, String, Option<String>)> = if any(|j| j.6) {
            sqlx::query_as(JOB_DEPENDENCY_ROWS)
                .fetch_all(&mut *tx)
                .await?
        } else {
            Vec::new()
        };

        let (conditions, art_rows): (Vec<ConditionRow>, Vec<ArtRow>) = if any(|j| j.7) {
            (
                sqlx::query_as(ART_CONDITION_ROWS)
                    .fetch_all(&mut *tx)
                    .await?,
                sqlx::query_as(ART_RESULT_ROWS).fetch_all(&mut *tx).await?,
            )
        } else {
            (Vec::new(), Vec::new())
        };

        let mut task_rows: Vec<TaskRow> = if compact {
            sqlx::query_as(COMPACT_TASK_ROWS)
                .bind(slots)
                .fetch_all(&mut *tx)
                .await?
        } else {
            sqlx::query_as(TASK_ROWS).fetch_all(&mut *tx).await?
        };

        let task_dependencies: Vec<(i64, String, String)> = if any(|j| j.8) {
            sqlx::query_as(TASK_DEPENDENCY_ROWS)
                .fetch_all(&mut *tx)
                .await?
        } else {
            Vec::new()
        };
        tx.commit().await?;

        let mut jobs = Vec::with_capacity(job_rows.len());
        let mut job_index: HashMap<i64, usize> = HashMap::with_capacity(job_rows.len());
        for (id, grid, status, suspended, simultaneous, minimum, ..) in job_rows {
            job_index.insert(id, jobs.len());
            jobs.push(SnapshotJob {
                id: wire_id(id)?,
                grid: wire_id(grid)?,
                status: JobStatus::parse(&status)?,
                suspended,
                depends_on_jobs: Vec::new(),
                tasks_must_start_simultaneously: simultaneous,
                minimum_task_count: minimum.and_then(|n| u64::try_from(n).ok()),
                art_conditions: BTreeMap::new(),
                tasks: Vec::new(),
            });
        }

        for (job, depends_on, status) in dependencies {
            if let Some(job) = job_mut(&mut jobs, &job_index, job) {
                let status = status.as_deref().map(JobStatus::parse).transpose()?;
                job.depends_on_jobs.push(JobDependency {
                    job: depends_on,
                    status,
                });
            }
        }
        for (job, art, min, max, equal) in conditions {
            if let Some(job) = job_mut(&mut jobs, &job_index, job) {
                job.art_conditions
                    .insert(art, ArtCondition { min, max, equal });
            }
        }

        // Each dependency row finds its task through (job, task name), so matching stays
        // linear in the rows read.
        let by_job_and_name = |a: &TaskRow, b: &TaskRow| (a.0, &a.1).cmp(&(b.0, &b.1));
        if !task_rows.is_sorted_by(|a, b| by_job_and_name(a, b).is_le()) {
            task_rows.sort_by(by_job_and_name);
        }
        let mut task_index: HashMap<(i64, String), usize> = HashMap::new();
        for (job_id, name, state, agent, hint) in task_rows {
            if let Some(job) = job_mut(&mut jobs, &job_index, job_id) {
                task_index.insert((job_id, name.clone()), job.tasks.len());
                job.tasks.push(SnapshotTask {
                    id: name,
                    state: TaskState::parse(&state)?,
                    depends_on_tasks: Vec::new(),
                    scheduler_hint: hint,
                    agent: agent.map(wire_id).transpose()?,
                });
            }
        }
        for (job_id, name, depends_on) in task_dependencies {
            let position = task_index.get(&(job_id, name)).copied();
            let task = position.and_then(|p| {
                job_mut(&mut jobs, &job_index, job_id).and_then(|job| job.tasks.get_mut(p))
            });
            if let Some(task) = task {
                task.depends_on_tasks.push(depends_on);
            }
        }

        let art_results = art_rows
            .into_iter()
            .map(|(job, agent, art, verdict, score)| {
                Ok(ArtResultRecord {
                    job: wire_id(job)?,
                    agent: wire_id(agent)?,
                    art,
                    verdict: ArtVerdict::parse(&verdict)?,
                    score,
                })
            })
            .collect::<Result<Vec<_>>>()?;

        Ok(SchedulingSnapshot {
            agents,
            art_results,
            jobs,
        })
    }
}

fn job_mut<'a>(
    jobs: &'a mut [SnapshotJob],
    index: &HashMap<i64, usize>,
    id: i64,
) -> Option<&'a mut SnapshotJob> {
    index.get(&id).and_then(|&i| jobs.get_mut(i))
}
