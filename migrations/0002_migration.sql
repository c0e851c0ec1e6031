-- Checkpointed migration (docs/migration.md): what the balancer needs to know about agents
-- and tasks, the last checkpoint of each task kept at the controller, and the record of every
-- move.

-- xgridCPUFeatures from agentRegistration, comma-separated; NULL for Apple agents.
ALTER TABLE agents ADD COLUMN cpu_features TEXT;
-- xgridUnavailableReason from the last agentStatus (`owner`, `shutdown`); NULL otherwise.
ALTER TABLE agents ADD COLUMN unavailable_reason TEXT;

-- When the task last moved to another agent (load balancing waits a residency after it).
ALTER TABLE tasks ADD COLUMN last_moved_at REAL;
-- Set while the task exists only as a checkpoint at the controller, waiting for a slot: the
-- reason it left its agent (`agent lost`, `agent shutting down`). Such a task is stored as
-- Assigned with no agent, so the scheduler neither starts it afresh nor counts it finished.
ALTER TABLE tasks ADD COLUMN held_reason TEXT;
CREATE INDEX tasks_held ON tasks (job_id) WHERE held_reason IS NOT NULL;

-- The last checkpoint of a task, as a file under DATA_DIR/checkpoints. A newer one replaces
-- it; it goes with the task.
CREATE TABLE task_checkpoints (
    task_id              INTEGER PRIMARY KEY REFERENCES tasks (id) ON DELETE CASCADE,
    path                 TEXT    NOT NULL,
    size                 INTEGER NOT NULL,   -- octets of the stream
    stdout_size          INTEGER NOT NULL,   -- the task's output at the dump
    stderr_size          INTEGER NOT NULL,
    frozen_milliseconds  INTEGER NOT NULL,
    cpu_features         TEXT,               -- of the agent that took it, comma-separated
    taken_at             REAL    NOT NULL
);

-- Every move of a task: from an agent (NULL: from a checkpoint held by the controller) to an
-- agent (NULL: to the controller, an evacuation), why, when, and how it went.
CREATE TABLE migrations (
    id                   INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id               INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    task_name            TEXT    NOT NULL,
    from_agent           INTEGER REFERENCES agents (id) ON DELETE SET NULL,
    to_agent             INTEGER REFERENCES agents (id) ON DELETE SET NULL,
    reason               TEXT    NOT NULL,
    started              REAL    NOT NULL,
    frozen_milliseconds  INTEGER,
    octets               INTEGER NOT NULL DEFAULT 0,
    outcome              TEXT    NOT NULL
);
CREATE INDEX migrations_by_job ON migrations (job_id, id);
