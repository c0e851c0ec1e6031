-- The controller's job store: grids, jobs with their specification in normalized form,
-- tasks with their results, agents, ART results and the job log.
--
-- Identifiers the wire shows (grid, job, agent) use AUTOINCREMENT so that SQLite never hands
-- out a number again after the row holding the largest one is deleted. Dates are REAL seconds
-- since 2001-01-01 UTC (Apple's reference date, as plists carry them). Blobs (input files,
-- output files, streamed output) live in tables of their own so that listing jobs or tasks
-- never reads them.

CREATE TABLE grids (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    name        TEXT    NOT NULL UNIQUE,
    is_default  INTEGER NOT NULL DEFAULT 0 CHECK (is_default IN (0, 1))
);
-- At most one default grid.
CREATE UNIQUE INDEX grids_default ON grids (is_default) WHERE is_default = 1;
INSERT INTO grids (id, name, is_default) VALUES (0, 'Xgrid', 1);

CREATE TABLE agents (
    id                   INTEGER PRIMARY KEY AUTOINCREMENT,
    name                 TEXT    NOT NULL,
    cookie               TEXT    NOT NULL UNIQUE,
    grid_id              INTEGER NOT NULL REFERENCES grids (id),
    state                TEXT    NOT NULL DEFAULT 'Offline',
    maximum_task_count   INTEGER NOT NULL,
    maximum_cpu_power    INTEGER NOT NULL,  -- MHz, all processors together
    core_megahertz       INTEGER,           -- one processor, when the agent says
    current_cpu_power    INTEGER NOT NULL DEFAULT 0,
    reported_task_count  INTEGER NOT NULL DEFAULT 0,
    custom               TEXT,              -- agentCustom, as text
    extensions           TEXT,              -- this project's extension capabilities, as text
    last_seen            REAL
);
CREATE INDEX agents_by_grid ON agents (grid_id);

-- hostnames and addresses from agentRegistration, in the order the agent gave them.
CREATE TABLE agent_addresses (
    agent_id  INTEGER NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    kind      TEXT    NOT NULL CHECK (kind IN ('hostname', 'address')),
    position  INTEGER NOT NULL,
    value     TEXT    NOT NULL,
    PRIMARY KEY (agent_id, kind, position)
) WITHOUT ROWID;

CREATE TABLE jobs (
    id                               INTEGER PRIMARY KEY AUTOINCREMENT,
    grid_id                          INTEGER NOT NULL REFERENCES grids (id),
    name                             TEXT,
    application_identifier           TEXT,
    submission_identifier            TEXT,
    notification_email               TEXT,
    grid_identifier                  TEXT,    -- gridIdentifier as written in the specification
    tasks_must_start_simultaneously  INTEGER NOT NULL DEFAULT 0,
    minimum_task_count               INTEGER,
    status                           TEXT    NOT NULL DEFAULT 'Pending',
    suspended                        INTEGER NOT NULL DEFAULT 0,
    error                            TEXT,
    date_submitted                   REAL    NOT NULL,
    date_started                     REAL,
    date_stopped                     REAL,
    -- Largest task_output_chunks.id a jobLatestResults reply has already carried.
    latest_results_seen              INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX jobs_by_grid ON jobs (grid_id);
CREATE INDEX jobs_by_status ON jobs (status);

-- schedulerParameters.dependsOnJobs, as written (an identifier may name no job).
CREATE TABLE job_dependencies (
    job_id      INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    position    INTEGER NOT NULL,
    depends_on  TEXT    NOT NULL,
    PRIMARY KEY (job_id, position)
) WITHOUT ROWID;

-- schedulerHints: task identifier → agent name (a hint may name no task).
CREATE TABLE job_scheduler_hints (
    job_id      INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    task_name   TEXT    NOT NULL,
    agent_name  TEXT    NOT NULL,
    PRIMARY KEY (job_id, task_name)
) WITHOUT ROWID;

-- inputFiles, once per job; tasks refer to them by path.
CREATE TABLE job_input_files (
    job_id         INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    path           TEXT    NOT NULL,
    is_executable  INTEGER NOT NULL,
    data           BLOB    NOT NULL,
    PRIMARY KEY (job_id, path)
);

-- artSpecifications with their artConditions (has_condition = 0: no condition given).
CREATE TABLE job_arts (
    job_id         INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    art            TEXT    NOT NULL,
    is_executable  INTEGER NOT NULL,
    has_condition  INTEGER NOT NULL,
    art_min        REAL,
    art_max        REAL,
    art_equal      REAL,
    data           BLOB    NOT NULL,
    PRIMARY KEY (job_id, art)
);

CREATE TABLE job_art_arguments (
    job_id    INTEGER NOT NULL,
    art       TEXT    NOT NULL,
    position  INTEGER NOT NULL,
    value     TEXT    NOT NULL,
    PRIMARY KEY (job_id, art, position),
    FOREIGN KEY (job_id, art) REFERENCES job_arts (job_id, art) ON DELETE CASCADE
) WITHOUT ROWID;

-- What each agent's run of each ART of a job found.
CREATE TABLE art_results (
    job_id    INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    agent_id  INTEGER NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    art       TEXT    NOT NULL,
    verdict   TEXT    NOT NULL,
    score     REAL,
    PRIMARY KEY (job_id, agent_id, art)
) WITHOUT ROWID;
CREATE INDEX art_results_by_agent ON art_results (agent_id);

CREATE TABLE job_log (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id  INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    time    REAL    NOT NULL,
    text    TEXT    NOT NULL
);
CREATE INDEX job_log_by_job ON job_log (job_id, id);

-- One row per task; `name` is the task identifier within its job.
CREATE TABLE tasks (
    id                  INTEGER PRIMARY KEY,
    job_id              INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    name                TEXT    NOT NULL,
    command             TEXT    NOT NULL,
    input_stream        TEXT,
    state               TEXT    NOT NULL DEFAULT 'Pending',
    -- While assigned: the agent and the taskRef it answered (NULL until it answered).
    -- agent_id is kept after the task ends, as where it last ran.
    agent_id            INTEGER REFERENCES agents (id) ON DELETE SET NULL,
    task_ref            TEXT,
    attempts            INTEGER NOT NULL DEFAULT 0,
    termination_status  INTEGER,
    percent_done        REAL,
    error               TEXT,
    date_started        REAL,
    date_stopped        REAL,
    UNIQUE (job_id, name)
);
-- Tasks placed on agents; the WHERE clause is repeated verbatim by the queries that use it.
CREATE INDEX tasks_on_agents ON tasks (agent_id, task_ref)
    WHERE state IN ('Assigned', 'Running', 'Stopped');

CREATE TABLE task_arguments (
    task_id   INTEGER NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    position  INTEGER NOT NULL,
    value     TEXT    NOT NULL,
    PRIMARY KEY (task_id, position)
) WITHOUT ROWID;

CREATE TABLE task_environment (
    task_id  INTEGER NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    name     TEXT    NOT NULL,
    value    TEXT    NOT NULL,
    PRIMARY KEY (task_id, name)
) WITHOUT ROWID;

-- inputFileMap: name in the task directory → path in job_input_files.
CREATE TABLE task_input_map (
    task_id   INTEGER NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    name      TEXT    NOT NULL,
    file_key  TEXT    NOT NULL,
    PRIMARY KEY (task_id, name)
) WITHOUT ROWID;

-- dependsOnTasks, as written.
CREATE TABLE task_dependencies (
    task_id     INTEGER NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    position    INTEGER NOT NULL,
    depends_on  TEXT    NOT NULL,
    PRIMARY KEY (task_id, position)
) WITHOUT ROWID;

CREATE TABLE task_output_files (
    task_id  INTEGER NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    path     TEXT    NOT NULL,
    data     BLOB    NOT NULL,
    PRIMARY KEY (task_id, path)
);

-- Standard output (stream 1) and error (stream 2) as they arrive, one row per piece; the
-- AUTOINCREMENT id orders the pieces and marks what jobLatestResults has delivered.
CREATE TABLE task_output_chunks (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id   INTEGER NOT NULL,
    task_id  INTEGER NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    stream   INTEGER NOT NULL CHECK (stream IN (1, 2)),
    data     BLOB    NOT NULL
);
CREATE INDEX task_output_chunks_by_task ON task_output_chunks (task_id);
CREATE INDEX task_output_chunks_by_job ON task_output_chunks (job_id, id);
