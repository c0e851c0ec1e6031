-- What lets a scheduling round read only the tasks its decisions can depend on (see
-- COMPACT_TASK_ROWS in controller/src/store/snapshot.rs), however many tasks the open jobs
-- hold: the first Pending tasks in natural order, the first Finished one, and the tasks in
-- any other state, each found through an index rather than a walk over the job's tasks.
ALTER TABLE jobs ADD COLUMN has_task_dependencies INTEGER NOT NULL DEFAULT 0;
UPDATE jobs SET has_task_dependencies = 1
    WHERE EXISTS (SELECT 1 FROM tasks o JOIN task_dependencies d ON d.task_id = o.id
                  WHERE o.job_id = jobs.id);
CREATE INDEX tasks_pending ON tasks (job_id, length(name), name) WHERE state = 'Pending';
CREATE INDEX tasks_finished ON tasks (job_id) WHERE state = 'Finished';
CREATE INDEX tasks_unsettled ON tasks (job_id) WHERE state NOT IN ('Pending', 'Finished');
