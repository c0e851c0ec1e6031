//! Tests against real SQLite files in a fresh temporary directory per test.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use xgrid_protocol::jobspec::JobSpecification;
use xgrid_protocol::plist::{Dictionary, Value};

use super::*;

/// A directory of its own for one test, removed when the test ends.
struct TempDir(PathBuf);

impl TempDir {
    fn new(test: &str) -> TempDir {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "xgrid-store-{}-{}-{}",
            std::process::id(),
            test,
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the test directory");
        TempDir(dir)
    }

    fn database(&self) -> PathBuf {
        self.0.join("controller.sqlite")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

macro_rules! dict {
    ($($key:expr => $value:expr),* $(,)?) => {{
        #[allow(unused_mut)]
        let mut d = Dictionary::new();
        $(d.insert($key.to_string(), Value::from($value));)*
        d
    }};
}

fn array(items: &[&str]) -> Value {
    Value::Array(items.iter().map(|s| Value::from(*s)).collect())
}

fn file(bytes: &[u8], executable: &str) -> Dictionary {
    dict! { "fileData" => Value::Data(bytes.to_vec()), "isExecutable" => executable }
}

/// A job using every part of a specification the store keeps.
fn rich_spec() -> JobSpecification {
    let job = dict! {
        "name" => "render",
        "applicationIdentifier" => "com.apple.xgrid.cli",
        "submissionIdentifier" => "sub-1",
        "notificationEmail" => "someone@example.org",
        "gridIdentifier" => "0",
        "schedulerParameters" => dict! {
            "dependsOnJobs" => array(&["7", "x"]),
            "tasksMustStartSimultaneously" => "YES",
            "minimumTaskCount" => "2",
        },
        "schedulerHints" => dict! { "0" => "fast-mac" },
        "inputFiles" => dict! {
            "bin/render" => file(b"#!/bin/sh\necho render\n", "YES"),
            "scene.pov" => file(b"\x00\x01scene\xff", "NO"),
        },
        "artSpecifications" => dict! {
            "speed.sh" => dict! {
                "artData" => Value::Data(b"#!/bin/sh\necho 5\n".to_vec()),
                "isExecutable" => "YES",
                "artArguments" => array(&["-q", "fast"]),
            },
            "plain" => dict! { "artData" => Value::Data(b"x".to_vec()) },
        },
        "artConditions" => dict! { "speed.sh" => dict! { "artMin" => "2.5", "artMax" => "10" } },
        "taskPrototypes" => dict! {
            "frame" => dict! {
                "command" => "bin/render",
                "environment" => dict! { "THREADS" => "2", "MODE" => "final" },
            },
        },
        "taskSpecifications" => dict! {
            "0" => dict! {
                "taskPrototypeIdentifier" => "frame",
                "arguments" => array(&["--frame", "0", "--frame"]),
                "inputFileMap" => dict! { "input.pov" => "scene.pov", "bin/render" => "scene.pov" },
            },
            "1" => dict! {
                "taskPrototypeIdentifier" => "frame",
                "arguments" => array(&["--frame", "1"]),
                "dependsOnTasks" => array(&["0"]),
                "inputStream" => "scene.pov",
            },
            "10" => dict! { "command" => "/bin/echo", "dependsOnTasks" => array(&["1", "0"]) },
        },
    };
    JobSpecification::from_plist(&job).expect("a valid specification")
}

/// `count` independent tasks, each with a few arguments and an environment variable.
fn wide_spec(count: usize) -> JobSpecification {
    let tasks: Dictionary = (0..count)
        .map(|i| {
            let n = i.to_string();
            let task = dict! {
                "command" => "/usr/bin/env",
                "arguments" => array(&["-i", "N", &n]),
                "environment" => dict! { "TASK" => n.as_str() },
            };
            (n, Value::from(task))
        })
        .collect();
    let job = dict! { "name" => "wide", "taskSpecifications" => tasks };
    JobSpecification::from_plist(&job).expect("a valid specification")
}

async fn open(dir: &TempDir) -> Store {
    Store::open(dir.database()).await.expect("open the store")
}

async fn count_rows(store: &Store, table: &str) -> i64 {
    sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
        .fetch_one(&mut *store.readers.acquire().await)
        .await
        .expect("count rows")
}

/// Rows per table, for every table of the schema except SQLite's and sqlx's bookkeeping.
async fn all_row_counts(store: &Store) -> BTreeMap<String, i64> {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table'
         AND name NOT LIKE 'sqlite_%' AND name NOT LIKE '_sqlx%'",
    )
    .fetch_all(&mut *store.readers.acquire().await)
    .await
    .expect("list tables");
    let mut counts = BTreeMap::new();
    for table in tables {
        let n = count_rows(store, &table).await;
        counts.insert(table, n);
    }
    counts
}

fn agent_named(name: &str) -> AgentRegistration {
    AgentRegistration {
        cookie: None,
        name: name.to_string(),
        hostnames: vec![format!("{name}.local")],
        addresses: vec!["192.0.2.7".into(), "fe80::1".into()],
        maximum_task_count: 2,
        maximum_cpu_power: 4000,
        core_megahertz: Some(2000),
        custom: None,
        extensions: Some("migration".into()),
        cpu_features: None,
    }
}

#[tokio::test]
async fn migrations_apply_on_a_fresh_file() {
    let dir = TempDir::new("fresh");
    let store = open(&dir).await;
    assert!(dir.database().exists());
    let applied: Vec<(i64, bool)> =
        sqlx::query_as("SELECT version, success FROM _sqlx_migrations ORDER BY version")
            .fetch_all(&mut *store.readers.acquire().await)
            .await
            .expect("read the migration table");
    // Every file in migrations/ (named `<version>_<what>.sql`), each applied once.
    let mut expected: Vec<(i64, bool)> =
        std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../migrations"))
            .expect("the migrations directory")
            .filter_map(|entry| {
                let name = entry.ok()?.file_name().into_string().ok()?;
                Some((name.split_once('_')?.0.parse().ok()?, true))
            })
            .collect();
    expected.sort();
    assert!(expected.len() >= 2, "{expected:?}");
    assert_eq!(applied, expected);
    let journal: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&mut *store.writer.lock().await)
        .await
        .expect("read the journal mode");
    assert_eq!(journal, "wal");
    let grids = store.grids().await.expect("list grids");
    assert_eq!(
        grids,
        vec![Grid {
            id: 0,
            name: "Xgrid".into(),
            is_default: true
        }]
    );
    assert_eq!(store.default_grid().await.expect("default grid"), 0);
    for table in ["jobs", "tasks", "agents", "task_output_chunks", "job_log"] {
        assert_eq!(count_rows(&store, table).await, 0, "{table}");
    }
    // Opening again applies nothing twice.
    drop(store);
    let store = open(&dir).await;
    assert_eq!(store.grids().await.expect("list grids").len(), 1);
}

#[tokio::test]
async fn launches_after_a_deleted_job_get_the_new_jobs_input_files() {
    // Launches keep the last job's files between tasks; the next job's launches must not
    // receive them (whether or not it is given the deleted job's number).
    let dir = TempDir::new("job-files");
    let store = open(&dir).await;
    let first = store.submit_job(&rich_spec(), 0).await.expect("submit");
    let launch = store.task_launch(first, "10").await.expect("launch");
    assert_eq!(
        launch.input_files["scene.pov"].data.as_ref(),
        b"\x00\x01scene\xff"
    );
    store.delete_job(first).await.expect("delete");
    let one_file = dict! {
        "name" => "again",
        "inputFiles" => dict! { "scene.pov" => file(b"another scene", "NO") },
        "taskSpecifications" => dict! { "10" => dict! { "command" => "/bin/cat" } },
    };
    let spec = JobSpecification::from_plist(&one_file).expect("a valid specification");
    let second = store.submit_job(&spec, 0).await.expect("submit");
    let launch = store.task_launch(second, "10").await.expect("launch");
    assert_eq!(launch.command, "/bin/cat");
    assert_eq!(launch.input_files.len(), 1);
    assert_eq!(
        launch.input_files["scene.pov"].data.as_ref(),
        b"another scene"
    );
    // A job without a task of that name is told apart from a missing job.
    assert!(matches!(
        store.task_launch(second, "0").await,
        Err(StoreError::NoSuchTask { .. })
    ));
    assert!(matches!(
        store.task_launch(second + 1, "10").await,
        Err(StoreError::NoSuchJob(_))
    ));
}

#[tokio::test]
async fn a_submitted_job_reads_back_whole() {
    let dir = TempDir::new("submit");
    let store = open(&dir).await;
    let spec = rich_spec();
    let job = store.submit_job(&spec, 0).await.expect("submit");
    assert_eq!(store.job_specification(job).await.expect("read back"), spec);

    let attributes = store.job_attributes(job).await.expect("attributes");
    assert_eq!(attributes.id, job);
    assert_eq!(attributes.grid, 0);
    assert_eq!(attributes.name.as_deref(), Some("render"));
    assert_eq!(
        attributes.application_identifier.as_deref(),
        Some("com.apple.xgrid.cli")
    );
    assert_eq!(attributes.status, JobStatus::Pending);
    assert!(!attributes.suspended);
    assert_eq!(
        (attributes.task_count, attributes.undone_task_count),
        (3, 3)
    );
    assert_eq!(attributes.percent_done, 0.0);
    assert!(attributes.date_started.is_none() && attributes.date_stopped.is_none());

    let tasks = store.tasks(job).await.expect("tasks");
    let names: Vec<&str> = tasks.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(names, ["0", "1", "10"]);
    assert!(tasks
        .iter()
        .all(|t| t.state == TaskState::Pending && t.agent.is_none() && t.attempts == 0));

    // Task 0 gets every job file, with its inputFileMap entries winning on a clash.
    let launch = store.task_launch(job, "0").await.expect("launch");
    let expected = spec.task_input_files("0");
    assert_eq!(launch.command, "bin/render");
    assert_eq!(launch.arguments, ["--frame", "0", "--frame"]);
    assert_eq!(
        launch.environment.get("THREADS").map(String::as_str),
        Some("2")
    );
    assert_eq!(launch.input_files.len(), expected.len());
    for (path, file) in expected {
        assert_eq!(launch.input_files.get(path), Some(file), "{path}");
    }
    assert_eq!(
        launch.input_files["bin/render"].data.as_ref(),
        b"\x00\x01scene\xff"
    );
    let launch = store.task_launch(job, "1").await.expect("launch");
    assert_eq!(launch.input_stream.as_deref(), Some("scene.pov"));

    assert!(matches!(
        store.task_launch(job, "nope").await,
        Err(StoreError::NoSuchTask { .. })
    ));
    assert!(matches!(
        store.submit_job(&spec, 42).await,
        Err(StoreError::NoSuchGrid(42))
    ));
    assert!(matches!(
        store.job_attributes(job + 1).await,
        Err(StoreError::NoSuchJob(_))
    ));
}

#[tokio::test]
async fn job_identifiers_are_never_reused() {
    let dir = TempDir::new("ids");
    let store = open(&dir).await;
    let spec = wide_spec(2);
    let first = store.submit_job(&spec, 0).await.expect("submit");
    let second = store.submit_job(&spec, 0).await.expect("submit");
    assert!(second > first);
    store.delete_job(second).await.expect("delete");
    let third = store.submit_job(&spec, 0).await.expect("submit");
    assert!(third > second, "{third} must be above the deleted {second}");
    store.delete_job(third).await.expect("delete");
    drop(store);

    let store = open(&dir).await;
    let fourth = store.submit_job(&spec, 0).await.expect("submit");
    assert!(fourth > third, "{fourth} must be above the deleted {third}");
    assert_eq!(store.job_ids(0).await.expect("list"), vec![first, fourth]);
}

#[tokio::test]
async fn deleting_a_job_removes_all_its_rows() {
    let dir = TempDir::new("delete");
    let store = open(&dir).await;
    let (agent, _) = store
        .register_agent(&agent_named("a"))
        .await
        .expect("register");
    let kept = store.submit_job(&wide_spec(3), 0).await.expect("submit");
    let before = all_row_counts(&store).await;

    let job = store.submit_job(&rich_spec(), 0).await.expect("submit");
    store
        .mark_dispatched(job, "0", agent, "1")
        .await
        .expect("dispatch");
    store.mark_running(job, "0").await.expect("running");
    store
        .append_output(job, "0", OutputStream::Stdout, b"out")
        .await
        .expect("append");
    let files = BTreeMap::from([("result.png".to_string(), b"png".to_vec())]);
    store
        .mark_finished(job, "0", 0, &files)
        .await
        .expect("finish");
    store
        .mark_dispatched(job, "1", agent, "2")
        .await
        .expect("dispatch");
    store.append_job_log(job, "started").await.expect("log");
    store
        .set_art_result(job, agent, "speed.sh", ArtVerdict::Qualified, Some(5.0))
        .await
        .expect("art result");
    let during = all_row_counts(&store).await;
    for table in [
        "tasks",
        "task_arguments",
        "task_environment",
        "task_input_map",
        "task_dependencies",
        "task_output_chunks",
        "task_output_files",
        "job_input_files",
        "job_arts",
        "job_art_arguments",
        "job_dependencies",
        "job_scheduler_hints",
        "art_results",
        "job_log",
    ] {
        assert!(during[table] > before[table], "{table} got no rows");
    }

    let attached = store.delete_job(job).await.expect("delete");
    assert_eq!(
        attached,
        vec![AttachedTask {
            job,
            task: "1".into(),
            agent,
            task_ref: Some("2".into()),
            state: TaskState::Assigned,
        }]
    );
    assert_eq!(all_row_counts(&store).await, before);
    assert!(matches!(
        store.job_attributes(job).await,
        Err(StoreError::NoSuchJob(_))
    ));
    assert_eq!(store.job_ids(0).await.expect("list"), vec![kept]);
    assert!(matches!(
        store.delete_job(job).await,
        Err(StoreError::NoSuchJob(_))
    ));
}

#[tokio::test]
async fn restart_puts_every_task_back_to_pending() {
    let dir = TempDir::new("restart");
    let store = open(&dir).await;
    let (agent, _) = store
        .register_agent(&agent_named("a"))
        .await
        .expect("register");
    let job = store.submit_job(&rich_spec(), 0).await.expect("submit");
    store
        .set_job_status(job, JobStatus::Running)
        .await
        .expect("status");
    store
        .mark_dispatched(job, "0", agent, "1")
        .await
        .expect("dispatch");
    store.mark_running(job, "0").await.expect("running");
    store
        .append_output(job, "0", OutputStream::Stderr, b"warning")
        .await
        .expect("append");
    let files = BTreeMap::from([("out.txt".to_string(), b"done".to_vec())]);
    store
        .mark_finished(job, "0", 3, &files)
        .await
        .expect("finish");
    store
        .mark_dispatched(job, "1", agent, "2")
        .await
        .expect("dispatch");
    store.mark_running(job, "1").await.expect("running");
    store
        .mark_failed(job, "10", "no such command")
        .await
        .expect("fail");
    store
        .set_job_status(job, JobStatus::Failed)
        .await
        .expect("status");
    store
        .set_job_error(job, Some("task 10 failed"))
        .await
        .expect("error");
    store.set_job_suspended(job, true).await.expect("suspend");
    store.job_latest_results(job).await.expect("latest");

    let attached = store.restart_job(job).await.expect("restart");
    let attached: Vec<&str> = attached.iter().map(|t| t.task.as_str()).collect();
    assert_eq!(attached, ["1"]);

    for task in store.tasks(job).await.expect("tasks") {
        assert_eq!(task.state, TaskState::Pending, "{}", task.id);
        assert_eq!(
            (
                task.agent,
                task.task_ref.as_deref(),
                task.termination_status,
                task.error.as_deref()
            ),
            (None, None, None, None),
            "{}",
            task.id
        );
        assert!(task.date_started.is_none() && task.date_stopped.is_none());
    }
    let attributes = store.job_attributes(job).await.expect("attributes");
    assert_eq!(attributes.status, JobStatus::Pending);
    assert_eq!(attributes.undone_task_count, 3);
    assert_eq!(attributes.error, None);
    assert!(!attributes.suspended);
    assert!(attributes.date_started.is_none() && attributes.date_stopped.is_none());
    assert!(store
        .job_results(job)
        .await
        .expect("results")
        .values()
        .all(|r| r.stdout.is_empty() && r.stderr.is_empty()));
    assert!(store
        .job_final_results(job)
        .await
        .expect("final")
        .is_empty());
    assert!(store
        .agent_tasks(agent)
        .await
        .expect("agent tasks")
        .is_empty());
    // The specification itself is untouched.
    assert_eq!(
        store.job_specification(job).await.expect("spec"),
        rich_spec()
    );
    // New output after the restart is seen by jobLatestResults again.
    store
        .append_output(job, "0", OutputStream::Stdout, b"again")
        .await
        .expect("append");
    let latest = store.job_latest_results(job).await.expect("latest");
    assert_eq!(latest["0"].stdout, b"again");
}

#[tokio::test]
async fn tasks_move_through_their_lifecycle() {
    let dir = TempDir::new("lifecycle");
    let store = open(&dir).await;
    let (agent, _) = store
        .register_agent(&agent_named("a"))
        .await
        .expect("register");
    let job = store.submit_job(&wide_spec(2), 0).await.expect("submit");

    let conflict = store.mark_running(job, "0").await;
    assert!(
        matches!(
            conflict,
            Err(StoreError::TaskStateConflict {
                state: TaskState::Pending,
                ..
            })
        ),
        "{conflict:?}"
    );

    store.mark_assigned(job, "0", agent).await.expect("assign");
    let task = store.task(job, "0").await.expect("task");
    assert_eq!(
        (task.state, task.agent, task.task_ref.as_deref()),
        (TaskState::Assigned, Some(agent), None)
    );
    assert!(store.mark_assigned(job, "0", agent).await.is_err());
    store
        .mark_dispatched(job, "0", agent, "17")
        .await
        .expect("dispatch");
    assert_eq!(
        store.task_by_ref(agent, "17").await.expect("by ref"),
        Some((job, "0".to_string()))
    );
    assert_eq!(store.task_by_ref(agent, "18").await.expect("by ref"), None);

    assert!(store
        .running_tasks_by_agent(job)
        .await
        .expect("running")
        .is_empty());
    store.mark_running(job, "0").await.expect("running");
    let started = store.task(job, "0").await.expect("task").date_started;
    assert!(started.is_some());
    assert_eq!(
        store.running_tasks_by_agent(job).await.expect("running"),
        [(agent, 1)]
    );
    store.mark_stopped(job, "0").await.expect("stopped");
    assert_eq!(
        store.task(job, "0").await.expect("task").state,
        TaskState::Stopped
    );
    assert!(store
        .running_tasks_by_agent(job)
        .await
        .expect("running")
        .is_empty());
    store.mark_running(job, "0").await.expect("running again");
    let task = store.task(job, "0").await.expect("task");
    assert_eq!(
        (task.state, task.date_started),
        (TaskState::Running, started)
    );

    store
        .set_task_progress(job, "0", 40.0)
        .await
        .expect("progress");
    let attributes = store.job_attributes(job).await.expect("attributes");
    assert_eq!(attributes.percent_done, 20.0);
    store
        .set_task_progress(job, "0", 250.0)
        .await
        .expect("progress");
    assert_eq!(
        store.task(job, "0").await.expect("task").percent_done,
        Some(100.0)
    );

    store
        .mark_finished(job, "0", 0, &BTreeMap::new())
        .await
        .expect("finish");
    let task = store.task(job, "0").await.expect("task");
    assert_eq!(task.state, TaskState::Finished);
    assert_eq!(task.termination_status, Some(0));
    assert_eq!(task.task_ref, None);
    assert!(task.date_stopped.is_some());
    assert_eq!(store.task_by_ref(agent, "17").await.expect("by ref"), None);
    assert!(store
        .mark_finished(job, "0", 0, &BTreeMap::new())
        .await
        .is_err());
    assert!(store.mark_failed(job, "0", "late").await.is_err());

    store
        .mark_failed(job, "1", "agent unavailable")
        .await
        .expect("fail");
    let task = store.task(job, "1").await.expect("task");
    assert_eq!(
        (task.state, task.error.as_deref()),
        (TaskState::Failed, Some("agent unavailable"))
    );
    let attributes = store.job_attributes(job).await.expect("attributes");
    assert_eq!(
        (attributes.task_count, attributes.undone_task_count),
        (2, 0)
    );
    assert_eq!(attributes.percent_done, 50.0);

    assert!(matches!(
        store.mark_running(job, "9").await,
        Err(StoreError::NoSuchTask { .. })
    ));
    assert!(matches!(
        store.mark_running(job + 5, "0").await,
        Err(StoreError::NoSuchJob(_))
    ));
}

#[tokio::test]
async fn job_status_stamps_dates_and_cancel_stops_open_tasks() {
    let dir = TempDir::new("status");
    let store = open(&dir).await;
    let (agent, _) = store
        .register_agent(&agent_named("a"))
        .await
        .expect("register");
    let job = store.submit_job(&wide_spec(3), 0).await.expect("submit");
    store
        .set_job_status(job, JobStatus::Running)
        .await
        .expect("status");
    let attributes = store.job_attributes(job).await.expect("attributes");
    assert_eq!(attributes.status, JobStatus::Running);
    assert!(attributes.date_started.is_some() && attributes.date_stopped.is_none());

    store
        .mark_dispatched(job, "0", agent, "5")
        .await
        .expect("dispatch");
    store
        .mark_finished(job, "1", 0, &BTreeMap::new())
        .await
        .expect_err("1 never ran");
    store
        .mark_dispatched(job, "1", agent, "6")
        .await
        .expect("dispatch");
    store
        .mark_finished(job, "1", 0, &BTreeMap::new())
        .await
        .expect("finish");
    let attached = store.cancel_unfinished_tasks(job).await.expect("cancel");
    assert_eq!(attached.len(), 1);
    assert_eq!(attached[0].task_ref.as_deref(), Some("5"));
    let states: Vec<TaskState> = store
        .tasks(job)
        .await
        .expect("tasks")
        .iter()
        .map(|t| t.state)
        .collect();
    assert_eq!(
        states,
        [
            TaskState::Canceled,
            TaskState::Finished,
            TaskState::Canceled
        ]
    );
    store
        .set_job_status(job, JobStatus::Canceled)
        .await
        .expect("status");
    let attributes = store.job_attributes(job).await.expect("attributes");
    assert!(attributes.date_stopped.is_some());
    assert_eq!(attributes.undone_task_count, 0);
    assert!(matches!(
        store.set_job_status(job + 1, JobStatus::Running).await,
        Err(StoreError::NoSuchJob(_))
    ));
}

#[tokio::test]
async fn streamed_output_appended_in_pieces_reads_back_whole() {
    let dir = TempDir::new("stdout");
    let store = open(&dir).await;
    let job = store.submit_job(&wide_spec(3), 0).await.expect("submit");
    let pieces: [(&str, OutputStream, &[u8]); 6] = [
        ("0", OutputStream::Stdout, b"hello "),
        ("1", OutputStream::Stdout, b"other task"),
        ("0", OutputStream::Stderr, b"warn\0ing"),
        ("0", OutputStream::Stdout, b"wor"),
        ("0", OutputStream::Stdout, b""),
        ("0", OutputStream::Stdout, b"ld\n"),
    ];
    for (task, stream, data) in pieces {
        store
            .append_output(job, task, stream, data)
            .await
            .expect("append");
    }
    let results = store.job_results(job).await.expect("results");
    assert_eq!(results.len(), 3);
    assert_eq!(results["0"].stdout, b"hello world\n");
    assert_eq!(results["0"].stderr, b"warn\0ing");
    assert_eq!(results["1"].stdout, b"other task");
    assert_eq!(results["2"], StreamResults::default());

    // jobLatestResults hands out each piece once.
    let latest = store.job_latest_results(job).await.expect("latest");
    assert_eq!(latest["0"].stdout, b"hello world\n");
    assert_eq!(latest.len(), 2);
    assert!(store
        .job_latest_results(job)
        .await
        .expect("latest")
        .is_empty());
    store
        .append_output(job, "2", OutputStream::Stdout, b"late")
        .await
        .expect("append");
    let latest = store.job_latest_results(job).await.expect("latest");
    assert_eq!(latest.keys().collect::<Vec<_>>(), ["2"]);
    assert_eq!(latest["2"].stdout, b"late");
    // jobResults still has everything.
    assert_eq!(
        store.job_results(job).await.expect("results")["0"].stdout,
        b"hello world\n"
    );
    assert!(matches!(
        store
            .append_output(job, "7", OutputStream::Stdout, b"x")
            .await,
        Err(StoreError::NoSuchTask { .. })
    ));
}

#[tokio::test]
async fn output_files_round_trip() {
    let dir = TempDir::new("outputs");
    let store = open(&dir).await;
    let (agent, _) = store
        .register_agent(&agent_named("a"))
        .await
        .expect("register");
    let job = store.submit_job(&wide_spec(3), 0).await.expect("submit");
    let binary: Vec<u8> = (0..=255u8).cycle().take(100_000).collect();
    let files = BTreeMap::from([
        ("frames/0001.png".to_string(), binary.clone()),
        ("empty".to_string(), Vec::new()),
        ("log.txt".to_string(), b"line\n".to_vec()),
    ]);
    store
        .mark_dispatched(job, "0", agent, "1")
        .await
        .expect("dispatch");
    store
        .mark_finished(job, "0", 0, &files)
        .await
        .expect("finish");
    store
        .mark_dispatched(job, "1", agent, "2")
        .await
        .expect("dispatch");
    store
        .mark_finished(job, "1", 139, &BTreeMap::new())
        .await
        .expect("finish");

    let results = store.job_final_results(job).await.expect("final results");
    assert_eq!(results.keys().collect::<Vec<_>>(), ["0", "1"]);
    assert_eq!(results["0"].termination_status, Some(0));
    assert_eq!(results["0"].output_files, files);
    assert_eq!(results["0"].output_files["frames/0001.png"], binary);
    assert_eq!(results["1"].termination_status, Some(139));
    assert!(results["1"].output_files.is_empty());
}

#[tokio::test]
async fn agents_register_with_cookies() {
    let dir = TempDir::new("agents");
    let store = open(&dir).await;
    let (first, cookie) = store
        .register_agent(&agent_named("mac-mini"))
        .await
        .expect("register");
    assert_eq!(cookie.len(), 32);
    assert!(cookie.chars().all(|c| c.is_ascii_hexdigit()));
    let (second, other_cookie) = store
        .register_agent(&agent_named("imac"))
        .await
        .expect("register");
    assert_ne!(first, second);
    assert_ne!(cookie, other_cookie);

    // Coming back with its cookie, the agent keeps its identifier; what it says is updated.
    let mut again = agent_named("mac-mini-renamed");
    again.cookie = Some(cookie.clone());
    again.addresses = vec!["198.51.100.1".into()];
    again.maximum_task_count = 8;
    store.set_agent_offline(first).await.expect("offline");
    let (id, returned) = store.register_agent(&again).await.expect("register again");
    assert_eq!((id, returned.as_str()), (first, cookie.as_str()));
    let record = store.agent(first).await.expect("agent");
    assert_eq!(record.name, "mac-mini-renamed");
    assert_eq!(record.addresses, ["198.51.100.1"]);
    assert_eq!(record.hostnames, ["mac-mini-renamed.local"]);
    assert_eq!(record.maximum_task_count, 8);
    assert_eq!(record.state, AgentState::Available);
    assert_eq!(record.grid, 0);
    assert_eq!(store.agents().await.expect("agents").len(), 2);
    assert_eq!(
        store.agent_by_cookie(&cookie).await.expect("by cookie"),
        Some(first)
    );

    let mut forged = agent_named("intruder");
    forged.cookie = Some("0123456789abcdef0123456789abcdef".into());
    let refused = store.register_agent(&forged).await;
    assert!(
        matches!(refused, Err(StoreError::InvalidCookie)),
        "{refused:?}"
    );
    assert_eq!(
        refused.err().map(|e| e.to_string()).as_deref(),
        Some("invalid cookie")
    );
    assert_eq!(store.agents().await.expect("agents").len(), 2);
    // An empty cookie is a first registration.
    let mut fresh = agent_named("new");
    fresh.cookie = Some(String::new());
    let (third, _) = store.register_agent(&fresh).await.expect("register");
    assert!(third > second);

    store
        .update_agent_load(
            second,
            AgentLoad {
                state: AgentState::Unavailable,
                current_cpu_power: 1200,
                current_task_count: 1,
            },
        )
        .await
        .expect("load");
    let record = store.agent(second).await.expect("agent");
    assert_eq!(
        (
            record.state,
            record.current_cpu_power,
            record.reported_task_count
        ),
        (AgentState::Unavailable, 1200, 1)
    );
    assert!(matches!(
        store.agent(99).await,
        Err(StoreError::NoSuchAgent(99))
    ));
}

#[tokio::test]
async fn tasks_stay_attached_to_their_agent_across_a_crash() {
    let dir = TempDir::new("recovery");
    let (agent, cookie, job) = {
        let store = open(&dir).await;
        let (agent, cookie) = store
            .register_agent(&agent_named("a"))
            .await
            .expect("register");
        let job = store.submit_job(&wide_spec(4), 0).await.expect("submit");
        store
            .mark_dispatched(job, "0", agent, "t0")
            .await
            .expect("dispatch");
        store.mark_running(job, "0").await.expect("running");
        store
            .mark_dispatched(job, "1", agent, "t1")
            .await
            .expect("dispatch");
        store.mark_assigned(job, "2", agent).await.expect("assign");
        // Dropped with no shutdown of any kind, as a crash would leave it.
        drop(store);
        (agent, cookie, job)
    };

    let store = open(&dir).await;
    let expected = vec![
        AttachedTask {
            job,
            task: "0".into(),
            agent,
            task_ref: Some("t0".into()),
            state: TaskState::Running,
        },
        AttachedTask {
            job,
            task: "1".into(),
            agent,
            task_ref: Some("t1".into()),
            state: TaskState::Assigned,
        },
        AttachedTask {
            job,
            task: "2".into(),
            agent,
            task_ref: None,
            state: TaskState::Assigned,
        },
    ];
    assert_eq!(store.attached_tasks().await.expect("attached"), expected);
    assert_eq!(
        store.agent_tasks(agent).await.expect("agent tasks"),
        expected
    );
    let record = store.agent(agent).await.expect("agent");
    assert_eq!(record.state, AgentState::Offline);
    assert_eq!(record.placed_task_count, 3);

    // The agent comes back with its cookie: same agent, same tasks.
    let mut again = agent_named("a");
    again.cookie = Some(cookie);
    let (id, _) = store.register_agent(&again).await.expect("register again");
    assert_eq!(id, agent);
    assert_eq!(
        store.task_by_ref(agent, "t1").await.expect("by ref"),
        Some((job, "1".to_string()))
    );

    // Given up for lost, its tasks go back to Pending with an attempt counted.
    store
        .append_output(job, "0", OutputStream::Stdout, b"partial")
        .await
        .expect("append");
    let requeued = store.requeue_agent_tasks(agent).await.expect("requeue");
    assert_eq!(requeued, expected);
    assert!(store.attached_tasks().await.expect("attached").is_empty());
    for task in store.tasks(job).await.expect("tasks") {
        let expected_attempts = u32::from(task.id != "3");
        assert_eq!(task.state, TaskState::Pending, "{}", task.id);
        assert_eq!(task.attempts, expected_attempts, "{}", task.id);
        assert_eq!(task.agent, None);
    }
    assert!(store.job_results(job).await.expect("results")["0"]
        .stdout
        .is_empty());
    assert_eq!(
        store.agent(agent).await.expect("agent").placed_task_count,
        0
    );

    // A single task can be requeued too.
    store
        .mark_dispatched(job, "3", agent, "t3")
        .await
        .expect("dispatch");
    store.requeue_task(job, "3").await.expect("requeue one");
    assert_eq!(store.task(job, "3").await.expect("task").attempts, 1);
    assert!(store.requeue_task(job, "3").await.is_err());
}

#[tokio::test]
async fn a_committed_submission_survives_reopening() {
    let dir = TempDir::new("durable");
    let spec = rich_spec();
    let job = {
        let store = open(&dir).await;
        let job = store.submit_job(&spec, 0).await.expect("submit");
        store.append_job_log(job, "submitted").await.expect("log");
        job
    };
    let store = open(&dir).await;
    assert_eq!(store.job_specification(job).await.expect("spec"), spec);
    assert_eq!(store.job_ids(0).await.expect("list"), vec![job]);
    assert_eq!(
        store
            .job_attributes(job)
            .await
            .expect("attributes")
            .task_count,
        3
    );
    let log = store.job_log(job).await.expect("log");
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].text, "submitted");
}

#[tokio::test]
async fn job_log_keeps_lines_in_order() {
    let dir = TempDir::new("log");
    let store = open(&dir).await;
    let job = store.submit_job(&wide_spec(1), 0).await.expect("submit");
    for line in ["first", "second", "third"] {
        store.append_job_log(job, line).await.expect("log");
    }
    let log = store.job_log(job).await.expect("log");
    let lines: Vec<&str> = log.iter().map(|e| e.text.as_str()).collect();
    assert_eq!(lines, ["first", "second", "third"]);
    assert!(log.windows(2).all(|w| w[0].time <= w[1].time));
    assert!(matches!(
        store.append_job_log(job + 1, "x").await,
        Err(StoreError::NoSuchJob(_))
    ));
}

#[tokio::test]
async fn grids_can_be_added_renamed_and_removed() {
    let dir = TempDir::new("grids");
    let store = open(&dir).await;
    let render = store.add_grid("Render").await.expect("add");
    assert_eq!(render, 1);
    assert!(matches!(
        store.add_grid("Render").await,
        Err(StoreError::GridNameTaken(_))
    ));
    assert!(matches!(
        store.add_grid("  ").await,
        Err(StoreError::EmptyGridName)
    ));
    store.rename_grid(render, "Farm").await.expect("rename");
    assert!(matches!(
        store.rename_grid(render, "Xgrid").await,
        Err(StoreError::GridNameTaken(_))
    ));
    store
        .rename_grid(render, "Farm")
        .await
        .expect("same name again");

    store.make_default_grid(render).await.expect("make default");
    assert_eq!(store.default_grid().await.expect("default"), render);
    let defaults: Vec<GridId> = store
        .grids()
        .await
        .expect("grids")
        .iter()
        .filter(|g| g.is_default)
        .map(|g| g.id)
        .collect();
    assert_eq!(defaults, [render]);
    assert!(matches!(
        store.remove_grid(render).await,
        Err(StoreError::CannotRemoveDefaultGrid(_))
    ));

    // New agents join the default grid; removing a grid sends its agents there.
    let (agent, _) = store
        .register_agent(&agent_named("a"))
        .await
        .expect("register");
    assert_eq!(store.agent(agent).await.expect("agent").grid, render);
    store.make_default_grid(0).await.expect("make default");
    let job = store
        .submit_job(&wide_spec(1), render)
        .await
        .expect("submit");
    assert!(matches!(
        store.remove_grid(render).await,
        Err(StoreError::GridNotEmpty { jobs: 1, .. })
    ));
    store.delete_job(job).await.expect("delete");
    store.remove_grid(render).await.expect("remove");
    assert_eq!(store.agent(agent).await.expect("agent").grid, 0);
    assert_eq!(store.grids().await.expect("grids").len(), 1);
    assert!(matches!(
        store.assign_agent_to_grid(agent, render).await,
        Err(StoreError::NoSuchGrid(_))
    ));
    let other = store.add_grid("Other").await.expect("add");
    assert!(other > render, "grid identifiers are not reused either");
    store
        .assign_agent_to_grid(agent, other)
        .await
        .expect("assign");
    assert_eq!(store.agent(agent).await.expect("agent").grid, other);
}

#[tokio::test]
async fn the_snapshot_holds_open_jobs_only() {
    let dir = TempDir::new("snapshot");
    let store = open(&dir).await;
    let (agent, _) = store
        .register_agent(&agent_named("a"))
        .await
        .expect("register");
    let finished = store
        .submit_job(&wide_spec(3_000), 0)
        .await
        .expect("submit");
    store
        .set_job_status(finished, JobStatus::Finished)
        .await
        .expect("status");
    let job = store.submit_job(&rich_spec(), 0).await.expect("submit");
    store
        .mark_dispatched(job, "0", agent, "1")
        .await
        .expect("dispatch");
    store
        .set_art_result(job, agent, "speed.sh", ArtVerdict::Measuring, None)
        .await
        .expect("art");
    let suspended = store.submit_job(&wide_spec(2), 0).await.expect("submit");
    store
        .set_job_suspended(suspended, true)
        .await
        .expect("suspend");

    let snapshot = store.scheduling_snapshot().await.expect("snapshot");
    let ids: Vec<JobId> = snapshot.jobs.iter().map(|j| j.id).collect();
    assert_eq!(ids, [job, suspended]);
    assert!(snapshot.jobs[1].suspended);

    let open_job = &snapshot.jobs[0];
    assert_eq!(open_job.status, JobStatus::Pending);
    assert!(open_job.tasks_must_start_simultaneously);
    assert_eq!(open_job.minimum_task_count, Some(2));
    assert_eq!(
        open_job.depends_on_jobs,
        [
            JobDependency {
                job: "7".into(),
                status: None
            },
            JobDependency {
                job: "x".into(),
                status: None
            },
        ]
    );
    assert_eq!(open_job.art_conditions.len(), 1);
    assert_eq!(open_job.art_conditions["speed.sh"].min, Some(2.5));
    type TaskView<'a> = (
        &'a str,
        TaskState,
        Vec<&'a str>,
        Option<&'a str>,
        Option<AgentId>,
    );
    let tasks: Vec<TaskView> = open_job
        .tasks
        .iter()
        .map(|t| {
            (
                t.id.as_str(),
                t.state,
                t.depends_on_tasks.iter().map(String::as_str).collect(),
                t.scheduler_hint.as_deref(),
                t.agent,
            )
        })
        .collect();
    assert_eq!(
        tasks,
        [
            (
                "0",
                TaskState::Assigned,
                vec![],
                Some("fast-mac"),
                Some(agent)
            ),
            ("1", TaskState::Pending, vec!["0"], None, None),
            ("10", TaskState::Pending, vec!["1", "0"], None, None),
        ]
    );
    assert_eq!(
        snapshot.art_results,
        [ArtResultRecord {
            job,
            agent,
            art: "speed.sh".into(),
            verdict: ArtVerdict::Measuring,
            score: None,
        }]
    );
    assert_eq!(snapshot.agents.len(), 1);
    // One task and one ART run are placed on the agent.
    assert_eq!(snapshot.agents[0].placed_task_count, 2);

    // A job depending on the finished job sees its status.
    let mut dependent = wide_spec(1);
    dependent.scheduler.depends_on_jobs = vec![finished.to_string()];
    let dependent = store.submit_job(&dependent, 0).await.expect("submit");
    let snapshot = store.scheduling_snapshot().await.expect("snapshot");
    let entry = snapshot
        .jobs
        .iter()
        .find(|j| j.id == dependent)
        .expect("the dependent job is open");
    assert_eq!(
        entry.depends_on_jobs,
        [JobDependency {
            job: finished.to_string(),
            status: Some(JobStatus::Finished)
        }]
    );
}

/// The snapshot's queries reach tasks through the jobs that are open, never by reading the
/// whole tasks table (which holds every finished job's tasks too), whether or not the planner
/// has statistics. The plans are asked of the writer, the connection that runs ANALYZE: a
/// reader opened before it would keep planning without them.
#[tokio::test]
async fn snapshot_queries_do_not_scan_all_tasks() {
    let dir = TempDir::new("plans");
    let store = open(&dir).await;
    store.submit_job(&wide_spec(10), 0).await.expect("submit");
    let queries = [
        snapshot::TASK_ROWS.to_string(),
        snapshot::COMPACT_TASK_ROWS.to_string(),
        snapshot::TASK_DEPENDENCY_ROWS.to_string(),
        format!(
            "SELECT agent_id, count(*) FROM tasks WHERE {} GROUP BY agent_id",
            tasks::ON_AGENTS
        ),
    ];
    for statistics in [false, true] {
        if statistics {
            sqlx::query("ANALYZE")
                .execute(&mut *store.writer.lock().await)
                .await
                .expect("analyze");
        }
        for sql in &queries {
            let plan: Vec<(i64, i64, i64, String)> =
                sqlx::query_as(&format!("EXPLAIN QUERY PLAN {sql}"))
                    .fetch_all(&mut *store.writer.lock().await)
                    .await
                    .expect("explain");
            assert!(
                plan.iter()
                    .any(|(_, _, _, step)| step.starts_with("SEARCH t")),
                "tasks are not reached through an index (statistics: {statistics}) in {plan:?}"
            );
            for (_, _, _, step) in &plan {
                assert!(
                    !(step.starts_with("SCAN t")
                        || step.starts_with("SCAN tasks")
                        || step.starts_with("SCAN d")),
                    "full scan in {step:?} (statistics: {statistics}) for {sql} in {plan:?}"
                );
            }
        }
    }
}

#[tokio::test]
async fn a_job_becomes_running_once_and_only_while_open() {
    let dir = TempDir::new("job-running");
    let store = open(&dir).await;
    let job = store.submit_job(&wide_spec(1), 0).await.expect("submit");
    assert!(store
        .mark_job_running(job, "is running")
        .await
        .expect("first start"));
    let attributes = store.job_attributes(job).await.expect("attributes");
    assert_eq!(attributes.status, JobStatus::Running);
    let started = attributes.date_started.expect("dateStarted stamped");
    assert!(!store
        .mark_job_running(job, "is running")
        .await
        .expect("second start"));
    store
        .set_job_status(job, JobStatus::Canceled)
        .await
        .expect("cancel");
    assert!(!store
        .mark_job_running(job, "is running")
        .await
        .expect("after cancel"));
    let attributes = store.job_attributes(job).await.expect("attributes");
    assert_eq!(attributes.status, JobStatus::Canceled);
    assert_eq!(attributes.date_started, Some(started));
    // Only the move to Running was logged.
    let log = store.job_log(job).await.expect("log");
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].text, "is running");
}

/// Task names per job in a snapshot.
fn task_names(snapshot: &SchedulingSnapshot) -> Vec<(JobId, Vec<String>)> {
    snapshot
        .jobs
        .iter()
        .map(|j| (j.id, j.tasks.iter().map(|t| t.id.clone()).collect()))
        .collect()
}

#[tokio::test]
async fn the_compact_snapshot_keeps_one_finished_task_where_the_rest_cannot_matter() {
    let dir = TempDir::new("compact");
    let store = open(&dir).await;
    let (agent, _) = store
        .register_agent(&agent_named("a"))
        .await
        .expect("register");
    let wide = store.submit_job(&wide_spec(4), 0).await.expect("submit");
    let chained = dict! {
        "taskSpecifications" => dict! {
            "a" => dict! {"command" => "/bin/true"},
            "b" => dict! {"command" => "/bin/true", "dependsOnTasks" => array(&["a"])},
            "c" => dict! {"command" => "/bin/true"},
        },
    };
    let chained = JobSpecification::from_plist(&chained).expect("valid");
    let chained = store.submit_job(&chained, 0).await.expect("submit");
    for (job, task) in [
        (wide, "0"),
        (wide, "1"),
        (wide, "2"),
        (chained, "a"),
        (chained, "c"),
    ] {
        store
            .mark_dispatched(job, task, agent, &format!("{job}-{task}"))
            .await
            .expect("dispatch");
        store
            .mark_finished(job, task, 0, &BTreeMap::new())
            .await
            .expect("finish");
    }
    let full = store.scheduling_snapshot().await.expect("snapshot");
    let compact = store.scheduling_snapshot_compact().await.expect("compact");
    assert_eq!(
        task_names(&full),
        [
            (wide, vec!["0".into(), "1".into(), "2".into(), "3".into()]),
            (chained, vec!["a".into(), "b".into(), "c".into()])
        ]
    );
    assert_eq!(
        task_names(&compact),
        [
            (wide, vec!["0".into(), "3".into()]),
            (chained, vec!["a".into(), "b".into(), "c".into()])
        ]
    );
    assert_eq!(compact.agents, full.agents);
}

#[tokio::test]
async fn many_tasks_are_placed_at_once_but_only_while_pending() {
    let dir = TempDir::new("assign-many");
    let store = open(&dir).await;
    let (agent, _) = store
        .register_agent(&agent_named("a"))
        .await
        .expect("register");
    let job = store.submit_job(&wide_spec(3), 0).await.expect("submit");
    store
        .mark_dispatched(job, "1", agent, "r1")
        .await
        .expect("dispatch");
    let placed = store
        .mark_assigned_many(&[
            (job, "0".into(), agent),
            (job, "1".into(), agent),
            (job, "9".into(), agent),
            (job, "2".into(), agent),
        ])
        .await
        .expect("assign");
    assert_eq!(placed, [true, false, false, true]);
    let tasks = store.tasks(job).await.expect("tasks");
    let states: Vec<_> = tasks
        .iter()
        .map(|t| (t.state, t.agent, t.task_ref.clone()))
        .collect();
    assert_eq!(
        states,
        [
            (TaskState::Assigned, Some(agent), None),
            (TaskState::Assigned, Some(agent), Some("r1".into())),
            (TaskState::Assigned, Some(agent), None)
        ]
    );
}

#[tokio::test]
async fn placements_beyond_one_statement_each_go_to_their_own_agent() {
    let dir = TempDir::new("assign-chunks");
    let store = open(&dir).await;
    let (a, _) = store
        .register_agent(&agent_named("a"))
        .await
        .expect("register");
    let (b, _) = store
        .register_agent(&agent_named("b"))
        .await
        .expect("register");
    let count = 1201;
    let job = store
        .submit_job(&wide_spec(count), 0)
        .await
        .expect("submit");
    let placements: Vec<(JobId, String, AgentId)> = (0..count)
        .map(|i| (job, i.to_string(), if i % 2 == 0 { a } else { b }))
        .collect();
    let placed = store.mark_assigned_many(&placements).await.expect("assign");
    assert!(placed.iter().all(|&p| p), "every task was Pending");
    let tasks = store.tasks(job).await.expect("tasks");
    assert_eq!(tasks.len(), count);
    for task in tasks {
        let i: usize = task.id.parse().expect("number");
        let agent = if i % 2 == 0 { a } else { b };
        assert_eq!(
            (task.state, task.agent),
            (TaskState::Assigned, Some(agent)),
            "task {i}"
        );
    }
    // Placed already: a second attempt places none.
    let again = store.mark_assigned_many(&placements).await.expect("assign");
    assert!(again.iter().all(|&p| !p));
}

#[tokio::test]
async fn the_compact_snapshot_reads_only_as_many_pending_tasks_as_there_are_slots() {
    let dir = TempDir::new("compact-pending");
    let store = open(&dir).await;
    let job = store.submit_job(&wide_spec(12), 0).await.expect("submit");
    // No agent online: still one pending task, so the job never looks finished.
    let (agent, _) = store
        .register_agent(&agent_named("a"))
        .await
        .expect("register");
    store
        .mark_dispatched(job, "0", agent, "r0")
        .await
        .expect("dispatch");
    store
        .mark_finished(job, "0", 0, &BTreeMap::new())
        .await
        .expect("finish");
    store.set_agent_offline(agent).await.expect("offline");
    let compact = store.scheduling_snapshot_compact().await.expect("compact");
    assert_eq!(task_names(&compact), [(job, vec!["0".into(), "1".into()])]);
    let plan = crate::scheduler::schedule(&crate::scheduling::to_scheduler(
        &compact,
        &Default::default(),
    ));
    assert!(plan.decisions.is_empty(), "{plan:?}");

    // Two slots online: the two pending tasks that come first in natural order.
    store
        .register_agent(&AgentRegistration {
            cookie: Some(store.agent(agent).await.expect("agent").cookie),
            ..agent_named("a")
        })
        .await
        .expect("back");
    let compact = store.scheduling_snapshot_compact().await.expect("compact");
    assert_eq!(
        task_names(&compact),
        [(job, vec!["0".into(), "1".into(), "2".into()])]
    );
    let full = store.scheduling_snapshot().await.expect("full");
    assert_eq!(full.jobs[0].tasks.len(), 12);
}

#[tokio::test]
async fn a_started_task_is_running_with_its_task_ref_in_one_step() {
    let dir = TempDir::new("started");
    let store = open(&dir).await;
    let (agent, _) = store
        .register_agent(&agent_named("a"))
        .await
        .expect("register");
    let job = store.submit_job(&wide_spec(2), 0).await.expect("submit");
    store
        .mark_started(job, "0", agent, "r0")
        .await
        .expect_err("a pending task was never placed");
    store.mark_assigned(job, "0", agent).await.expect("assign");
    store
        .mark_started(job, "0", agent, "r0")
        .await
        .expect("start");
    let task = store.task(job, "0").await.expect("task");
    assert_eq!(task.state, TaskState::Running);
    assert_eq!(task.task_ref.as_deref(), Some("r0"));
    assert!(task.date_started.is_some());
    assert_eq!(
        store.task_by_ref(agent, "r0").await.expect("by ref"),
        Some((job, "0".to_string()))
    );
}

#[tokio::test]
async fn tasks_added_to_a_job_join_its_own() {
    let dir = TempDir::new("add-tasks");
    let store = open(&dir).await;
    let job = store.submit_job(&wide_spec(2), 0).await.expect("submit");
    let more = wide_spec(4).tasks;
    let clash = store.add_tasks(job, &more).await;
    assert!(
        matches!(clash, Err(StoreError::TaskNameTaken { .. })),
        "{clash:?}"
    );
    let new: BTreeMap<_, _> = more
        .into_iter()
        .filter(|(name, _)| name.as_str() >= "2")
        .collect();
    store.add_tasks(job, &new).await.expect("add");
    let names: Vec<String> = store
        .tasks(job)
        .await
        .expect("tasks")
        .into_iter()
        .map(|t| t.id)
        .collect();
    assert_eq!(names, ["0", "1", "2", "3"]);
    let launch = store.task_launch(job, "3").await.expect("launch");
    assert_eq!(launch.arguments, ["-i", "N", "3"]);
    assert!(matches!(
        store.add_tasks(job + 1, &new).await,
        Err(StoreError::NoSuchJob(_))
    ));
}

fn checkpoint_at(path: &str, stdout_size: u64, stderr_size: u64) -> CheckpointRecord {
    CheckpointRecord {
        path: path.to_string(),
        size: 7_400_000,
        stdout_size,
        stderr_size,
        frozen_milliseconds: 155,
        cpu_features: vec!["sse2".into(), "avx".into()],
        taken_at: xgrid_protocol::plist::Date(800_000_000.0),
    }
}

/// A store with a checkpointing agent and a job of `tasks` tasks, the first `running` of them
/// running on that agent as `t0`, `t1`…
async fn running_job(dir: &TempDir, tasks: usize, running: usize) -> (Store, AgentId, JobId) {
    let store = open(dir).await;
    let (agent, _) = store
        .register_agent(&AgentRegistration {
            extensions: Some("pid-namespace,checkpoint".into()),
            cpu_features: Some("sse2,avx".into()),
            ..agent_named("linux")
        })
        .await
        .expect("register");
    let job = store
        .submit_job(&wide_spec(tasks), 0)
        .await
        .expect("submit");
    for i in 0..running {
        let task = i.to_string();
        store
            .mark_assigned(job, &task, agent)
            .await
            .expect("assign");
        store
            .mark_started(job, &task, agent, &format!("t{i}"))
            .await
            .expect("start");
    }
    (store, agent, job)
}

#[tokio::test]
async fn checkpoints_are_kept_replaced_and_dropped() {
    let dir = TempDir::new("checkpoints");
    let (store, _, job) = running_job(&dir, 2, 1).await;
    assert_eq!(store.task_checkpoint(job, "0").await.expect("read"), None);
    let first = checkpoint_at("/data/checkpoints/1-0.a", 10, 2);
    assert_eq!(
        store
            .record_checkpoint(job, "0", &first)
            .await
            .expect("keep"),
        None
    );
    assert_eq!(
        store.task_checkpoint(job, "0").await.expect("read"),
        Some(first.clone())
    );
    let second = checkpoint_at("/data/checkpoints/1-0.b", 20, 4);
    assert_eq!(
        store
            .record_checkpoint(job, "0", &second)
            .await
            .expect("replace"),
        Some(first.path.clone())
    );
    assert_eq!(
        store.checkpoint_paths().await.expect("paths"),
        [second.path.as_str()]
    );
    assert_eq!(
        store.drop_checkpoint(job, "0").await.expect("drop"),
        Some(second.path)
    );
    assert_eq!(store.drop_checkpoint(job, "0").await.expect("drop"), None);
    assert!(store
        .record_checkpoint(job, "9", &first)
        .await
        .is_err_and(|e| matches!(e, StoreError::NoSuchTask { .. })));
}

#[tokio::test]
async fn output_is_cut_to_the_sizes_of_a_checkpoint() {
    let dir = TempDir::new("truncate");
    let (store, _, job) = running_job(&dir, 1, 1).await;
    for (stream, piece) in [
        (OutputStream::Stdout, &b"hello "[..]),
        (OutputStream::Stderr, b"warn"),
        (OutputStream::Stdout, b"world"),
        (OutputStream::Stdout, b"!!"),
        (OutputStream::Stderr, b"ing"),
    ] {
        store
            .append_output(job, "0", stream, piece)
            .await
            .expect("append");
    }
    assert_eq!(store.output_sizes(job, "0").await.expect("sizes"), (13, 7));
    // Inside the second stdout piece, and exactly at the end of the first stderr one.
    store.truncate_output(job, "0", 8, 4).await.expect("cut");
    let results = store.job_results(job).await.expect("results");
    assert_eq!(results["0"].stdout, b"hello wo");
    assert_eq!(results["0"].stderr, b"warn");
    assert_eq!(store.output_sizes(job, "0").await.expect("sizes"), (8, 4));
    // Cutting to more than there is keeps everything.
    store
        .truncate_output(job, "0", 100, 100)
        .await
        .expect("cut");
    assert_eq!(store.output_sizes(job, "0").await.expect("sizes"), (8, 4));
    store.truncate_output(job, "0", 0, 0).await.expect("cut");
    assert_eq!(store.output_sizes(job, "0").await.expect("sizes"), (0, 0));
}

#[tokio::test]
async fn a_lost_agents_checkpointed_tasks_are_held_then_restored_elsewhere() {
    let dir = TempDir::new("held");
    let (store, agent, job) = running_job(&dir, 3, 2).await;
    store
        .append_output(job, "0", OutputStream::Stdout, b"abcdef")
        .await
        .expect("append");
    store
        .record_checkpoint(job, "0", &checkpoint_at("/cp/0", 3, 0))
        .await
        .expect("keep");

    // Losing the agent holds task 0, which has a checkpoint, and requeues task 1.
    let requeued = store.requeue_agent_tasks(agent).await.expect("requeue");
    assert_eq!(
        requeued.iter().map(|t| t.task.as_str()).collect::<Vec<_>>(),
        ["1"]
    );
    assert_eq!(
        store.job_results(job).await.expect("results")["0"].stdout,
        b"abc"
    );
    let task = store.task(job, "0").await.expect("task");
    assert_eq!((task.state, task.agent), (TaskState::Assigned, None));
    assert_eq!(
        store.agent(agent).await.expect("agent").placed_task_count,
        0
    );

    // The balancer sees it held, with its checkpoint; the scheduler does not start it.
    let records = store.balancing_records().await.expect("records");
    let held: Vec<_> = records.iter().filter(|t| t.agent.is_none()).collect();
    assert_eq!(held.len(), 1);
    assert_eq!(held[0].task, "0");
    assert_eq!(held[0].held_reason.as_deref(), Some("agent lost"));
    assert_eq!(
        held[0].checkpoint.as_ref().map(|c| c.path.as_str()),
        Some("/cp/0")
    );
    // Tasks 1 (requeued) and 2 wait.
    assert_eq!(store.waiting_tasks(10).await.expect("waiting"), [(0, 2)]);
    assert_eq!(store.waiting_tasks(1).await.expect("waiting"), [(0, 1)]);

    // Restored on another agent under a new taskRef.
    let (other, _) = store
        .register_agent(&agent_named("other"))
        .await
        .expect("register");
    store
        .record_move(job, "0", MovedFrom::Held, (other, "r9"), None)
        .await
        .expect("moved");
    let task = store.task(job, "0").await.expect("task");
    assert_eq!(
        (task.state, task.agent, task.task_ref.as_deref()),
        (TaskState::Running, Some(other), Some("r9"))
    );
    assert_eq!(
        store.task_by_ref(other, "r9").await.expect("by ref"),
        Some((job, "0".to_string()))
    );
    let records = store.balancing_records().await.expect("records");
    let moved = records
        .iter()
        .find(|t| t.task == "0")
        .expect("still placed");
    assert!(moved.last_moved_at.is_some() && moved.held_reason.is_none());
}

#[tokio::test]
async fn a_held_task_that_cannot_be_restored_runs_again_from_the_start() {
    let dir = TempDir::new("unheld");
    let (store, agent, job) = running_job(&dir, 1, 1).await;
    store
        .append_output(job, "0", OutputStream::Stdout, b"abcdef")
        .await
        .expect("append");
    let from = |task_ref| MovedFrom::Agent { agent, task_ref };
    let evacuated = checkpoint_at("/cp/0", 2, 0);
    // Held only from where the evacuation began.
    assert!(matches!(
        store
            .hold_task(job, "0", from("t9"), "agent shutting down", &evacuated)
            .await,
        Err(StoreError::TaskMovedMeanwhile { .. })
    ));
    assert_eq!(store.task_checkpoint(job, "0").await.expect("read"), None);
    store
        .hold_task(job, "0", from("t0"), "agent shutting down", &evacuated)
        .await
        .expect("hold");
    assert_eq!(
        store.job_results(job).await.expect("results")["0"].stdout,
        b"ab"
    );
    assert_eq!(
        store.requeue_held_task(job, "0").await.expect("requeue"),
        Some("/cp/0".to_string())
    );
    let task = store.task(job, "0").await.expect("task");
    assert_eq!((task.state, task.attempts), (TaskState::Pending, 1));
    assert_eq!(store.task_checkpoint(job, "0").await.expect("read"), None);
    assert!(store.job_results(job).await.expect("results")["0"]
        .stdout
        .is_empty());
    // Only a held task goes back this way.
    assert!(store.requeue_held_task(job, "0").await.is_err());
}

#[tokio::test]
async fn a_move_lands_only_if_the_task_is_still_where_it_began() {
    let dir = TempDir::new("lands");
    let (store, agent, job) = running_job(&dir, 2, 2).await;
    let (other, _) = store
        .register_agent(&agent_named("other"))
        .await
        .expect("register");
    let from = |task_ref| MovedFrom::Agent { agent, task_ref };
    let moved_with = checkpoint_at("/cp/moved", 4, 0);
    let refused = |result: Result<Option<String>>| {
        matches!(result, Err(StoreError::TaskMovedMeanwhile { .. }))
    };

    // Another run of the task on the same agent, or a task that is not held.
    assert!(refused(
        store
            .record_move(job, "0", from("t1"), (other, "r1"), Some(&moved_with))
            .await
    ));
    assert!(refused(
        store
            .record_move(job, "0", MovedFrom::Held, (other, "r1"), None)
            .await
    ));
    // The source was lost meanwhile: task 1 went back to the queue, and then to another
    // agent. A move landing now would leave it running twice.
    store.requeue_task(job, "1").await.expect("requeue");
    assert!(refused(
        store
            .record_move(job, "1", from("t1"), (other, "r1"), Some(&moved_with))
            .await
    ));
    store.mark_assigned(job, "1", other).await.expect("assign");
    store
        .mark_started(job, "1", other, "fresh")
        .await
        .expect("start");
    assert!(refused(
        store
            .record_move(job, "1", from("t1"), (other, "r1"), Some(&moved_with))
            .await
    ));
    let task = store.task(job, "1").await.expect("task");
    assert_eq!(
        (task.agent, task.task_ref.as_deref()),
        (Some(other), Some("fresh")),
        "a refused move changes nothing"
    );
    assert_eq!(store.task_checkpoint(job, "1").await.expect("read"), None);

    // From where it began, it lands with the checkpoint it moved with, replacing the older.
    store
        .record_checkpoint(job, "0", &checkpoint_at("/cp/older", 1, 0))
        .await
        .expect("keep");
    assert_eq!(
        store
            .record_move(job, "0", from("t0"), (other, "r0"), Some(&moved_with))
            .await
            .expect("lands"),
        Some("/cp/older".to_string())
    );
    let task = store.task(job, "0").await.expect("task");
    assert_eq!(
        (task.state, task.agent, task.task_ref.as_deref()),
        (TaskState::Running, Some(other), Some("r0"))
    );
    assert_eq!(
        store.task_checkpoint(job, "0").await.expect("read"),
        Some(moved_with)
    );
    // A second landing of the same move is refused: the task has left `t0`.
    assert!(refused(
        store
            .record_move(job, "0", from("t0"), (other, "r0"), None)
            .await
    ));
}

#[tokio::test]
async fn checkpoints_of_runs_that_ended_or_start_over_are_pruned() {
    let dir = TempDir::new("prune");
    let (store, _, job) = running_job(&dir, 3, 3).await;
    for task in ["0", "1", "2"] {
        store
            .record_checkpoint(job, task, &checkpoint_at(&format!("/cp/{task}"), 0, 0))
            .await
            .expect("keep");
    }
    // Requeued: its checkpoint would bring back the lost run, so it goes at once.
    store.requeue_task(job, "1").await.expect("requeue");
    assert_eq!(store.task_checkpoint(job, "1").await.expect("read"), None);
    store
        .mark_finished(job, "2", 0, &BTreeMap::new())
        .await
        .expect("finish");
    assert_eq!(store.prune_checkpoints().await.expect("prune"), ["/cp/2"]);
    assert_eq!(store.checkpoint_paths().await.expect("paths"), ["/cp/0"]);
    store.restart_job(job).await.expect("restart");
    assert!(store.checkpoint_paths().await.expect("paths").is_empty());
}

#[tokio::test]
async fn migrations_are_recorded_and_listed() {
    let dir = TempDir::new("moves");
    let (store, agent, job) = running_job(&dir, 2, 2).await;
    let record = |task: &str, outcome: &str, to: Option<AgentId>| MigrationRecord {
        id: 0,
        job,
        task: task.to_string(),
        from: Some(agent),
        to,
        reason: "owner returned".into(),
        started: xgrid_protocol::plist::Date(1000.0),
        frozen_milliseconds: Some(180),
        octets: 7_400_000,
        outcome: outcome.to_string(),
    };
    let first = store
        .record_migration(&record("0", "restore failed: criu", Some(agent)))
        .await
        .expect("record");
    let second = store
        .record_migration(&record("1", "moved", None))
        .await
        .expect("record");
    assert!(second > first);
    let newest = store.migrations(10).await.expect("list");
    assert_eq!(
        newest.iter().map(|m| m.id).collect::<Vec<_>>(),
        [second, first]
    );
    assert_eq!(
        newest[0],
        MigrationRecord {
            id: second,
            ..record("1", "moved", None)
        }
    );
    assert_eq!(store.migrations(1).await.expect("list").len(), 1);
    assert_eq!(
        store
            .migration(first)
            .await
            .expect("one")
            .map(|m| m.outcome),
        Some("restore failed: criu".to_string())
    );
    assert_eq!(
        store
            .job_migrations(job)
            .await
            .expect("job")
            .iter()
            .map(|m| m.id)
            .collect::<Vec<_>>(),
        [first, second]
    );
    assert_eq!(store.migration_count().await.expect("count"), 1);
    // They go with their job.
    store.delete_job(job).await.expect("delete");
    assert!(store.migrations(10).await.expect("list").is_empty());
}

#[tokio::test]
async fn agents_keep_their_cpu_features_and_unavailable_reason() {
    let dir = TempDir::new("extensions");
    let (store, linux, _) = running_job(&dir, 1, 0).await;
    let (apple, _) = store
        .register_agent(&agent_named("mac"))
        .await
        .expect("register");
    assert!(store.agent(linux).await.expect("agent").can_checkpoint());
    assert!(!store.agent(apple).await.expect("agent").can_checkpoint());
    assert!(store
        .set_agent_unavailable_reason(linux, Some("shutdown"))
        .await
        .expect("reason"));
    assert!(!store
        .set_agent_unavailable_reason(linux, Some("shutdown"))
        .await
        .expect("same reason"));
    let extensions = store.agent_extensions().await.expect("extensions");
    assert_eq!(
        extensions,
        [
            AgentExtensions {
                agent: linux,
                cpu_features: vec!["sse2".into(), "avx".into()],
                unavailable_reason: Some("shutdown".into()),
            },
            AgentExtensions {
                agent: apple,
                cpu_features: Vec::new(),
                unavailable_reason: None,
            },
        ]
    );
    store
        .set_agent_unavailable_reason(linux, None)
        .await
        .expect("clear");
    assert_eq!(
        store.agent_extensions().await.expect("extensions")[0].unavailable_reason,
        None
    );
}

#[tokio::test]
async fn balancing_records_carry_what_the_balancer_weighs() {
    let dir = TempDir::new("balancing");
    let (store, agent, job) = running_job(&dir, 4, 3).await;
    store
        .mark_finished(job, "2", 0, &BTreeMap::new())
        .await
        .expect("finish");
    store.mark_stopped(job, "1").await.expect("stop");
    store.set_job_suspended(job, true).await.expect("suspend");
    let records = store.balancing_records().await.expect("records");
    let tasks: Vec<_> = records
        .iter()
        .map(|t| (t.task.as_str(), t.agent, t.state, t.job_suspended))
        .collect();
    assert_eq!(
        tasks,
        [
            ("0", Some(agent), TaskState::Running, true),
            ("1", Some(agent), TaskState::Stopped, true),
        ]
    );
    assert!(records
        .iter()
        .all(|t| t.date_started.is_some() && t.grid == 0));
    let durations = store
        .job_durations(&[job, job + 1])
        .await
        .expect("durations");
    assert_eq!(durations.keys().copied().collect::<Vec<_>>(), [job]);
    assert!(durations[&job] >= 0.0);
    // Task 3 waits, but its job is suspended: nothing waits for a slot.
    assert!(store.waiting_tasks(10).await.expect("waiting").is_empty());
    store.set_job_suspended(job, false).await.expect("resume");
    assert_eq!(store.waiting_tasks(10).await.expect("waiting"), [(0, 1)]);
}

/// Asked of the writer, with and without statistics, for the reason told at
/// `snapshot_queries_do_not_scan_all_tasks`.
#[tokio::test]
async fn the_balancing_read_does_not_scan_all_tasks() {
    let dir = TempDir::new("balancing-plan");
    let store = open(&dir).await;
    store.submit_job(&wide_spec(10), 0).await.expect("submit");
    for statistics in [false, true] {
        if statistics {
            sqlx::query("ANALYZE")
                .execute(&mut *store.writer.lock().await)
                .await
                .expect("analyze");
        }
        let plan: Vec<(i64, i64, i64, String)> = sqlx::query_as(&format!(
            "EXPLAIN QUERY PLAN {}",
            checkpoints::BALANCING_ROWS
        ))
        .fetch_all(&mut *store.writer.lock().await)
        .await
        .expect("explain");
        let scans: Vec<&String> = plan
            .iter()
            .map(|(_, _, _, step)| step)
            // Walking the partial index of held tasks reads only held tasks.
            .filter(|step| step.starts_with("SCAN t") && *step != "SCAN t USING INDEX tasks_held")
            .collect();
        assert!(
            scans.is_empty(),
            "full scans {scans:?} (statistics: {statistics}) in {plan:?}"
        );
    }
}

#[tokio::test]
async fn the_first_start_marks_the_task_and_its_job_together() {
    let dir = TempDir::new("first-start");
    let store = open(&dir).await;
    let (agent, _) = store
        .register_agent(&agent_named("a"))
        .await
        .expect("register");
    let job = store.submit_job(&wide_spec(2), 0).await.expect("submit");
    // A task that is not placed cannot start, and its job stays as it was.
    assert!(store
        .mark_first_started(job, "0", agent, "5", "is running")
        .await
        .is_err());
    let attributes = store.job_attributes(job).await.expect("attributes");
    assert_eq!(attributes.status, JobStatus::Pending);

    store.mark_assigned(job, "0", agent).await.expect("assign");
    assert!(store
        .mark_first_started(job, "0", agent, "5", "is running")
        .await
        .expect("started"));
    let task = store.task(job, "0").await.expect("task");
    assert_eq!(
        (task.state, task.task_ref.as_deref()),
        (TaskState::Running, Some("5"))
    );
    let attributes = store.job_attributes(job).await.expect("attributes");
    assert_eq!(attributes.status, JobStatus::Running);
    assert!(attributes.date_started.is_some());

    store.mark_assigned(job, "1", agent).await.expect("assign");
    assert!(
        !store
            .mark_first_started(job, "1", agent, "6", "is running")
            .await
            .expect("started"),
        "the job was running already"
    );
    assert_eq!(
        store.task(job, "1").await.expect("task").state,
        TaskState::Running
    );
    // The line went into the log with the job's move, once.
    let log: Vec<String> = store
        .job_log(job)
        .await
        .expect("log")
        .into_iter()
        .map(|entry| entry.text)
        .collect();
    assert_eq!(log, ["is running"]);
}

#[tokio::test]
async fn a_job_can_be_submitted_with_its_first_log_line() {
    let dir = TempDir::new("submit-logged");
    let store = open(&dir).await;
    let job = store
        .submit_logged_job(&wide_spec(2), 0, Some("submitted"))
        .await
        .expect("submit");
    let log = store.job_log(job).await.expect("log");
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].text, "submitted");
    // A grid that does not exist still refuses the job.
    assert!(matches!(
        store
            .submit_logged_job(&wide_spec(1), 7, Some("submitted"))
            .await,
        Err(StoreError::NoSuchGrid(7))
    ));
    let plain = store.submit_job(&wide_spec(1), 0).await.expect("submit");
    assert!(store.job_log(plain).await.expect("log").is_empty());
}

#[tokio::test]
async fn a_write_dropped_before_its_commit_leaves_nothing_and_the_writer_goes_on() {
    let dir = TempDir::new("dropped-write");
    let store = open(&dir).await;
    {
        let mut writer = store.writer.lock().await;
        let mut tx = sqlx::Connection::begin(&mut *writer).await.expect("begin");
        sqlx::query("INSERT INTO grids (name, is_default) VALUES ('ghost', 0)")
            .execute(&mut *tx)
            .await
            .expect("insert");
        // Dropped here uncommitted, as when a caller's future is dropped mid-way.
    }
    store.add_grid("render farm").await.expect("the next write");
    let names: Vec<String> = store
        .grids()
        .await
        .expect("grids")
        .into_iter()
        .map(|g| g.name)
        .collect();
    assert!(!names.iter().any(|n| n == "ghost"), "{names:?}");
    assert!(names.iter().any(|n| n == "render farm"), "{names:?}");
}

#[tokio::test]
async fn a_reader_waits_while_every_connection_is_lent_and_gets_the_first_returned() {
    let dir = TempDir::new("readers");
    let store = open(&dir).await;
    let mut lent = Vec::new();
    for _ in 0..READERS {
        lent.push(store.readers.acquire().await);
    }
    let waiting = tokio::time::timeout(
        std::time::Duration::from_millis(50),
        store.readers.acquire(),
    )
    .await;
    assert!(waiting.is_err(), "a fifth reader got a connection");
    lent.pop();
    let mut reader =
        tokio::time::timeout(std::time::Duration::from_secs(5), store.readers.acquire())
            .await
            .expect("the returned connection");
    let one: i64 = sqlx::query_scalar("SELECT 1")
        .fetch_one(&mut *reader)
        .await
        .expect("read");
    assert_eq!(one, 1);
}
