//! Whole-grid tests: the real controller, agents and `xgrid` command as processes on
//! loopback (issue: the whole Xgrid job lifecycle).

use std::collections::BTreeMap;
use std::time::Duration;

use xgrid_grid_tests::{job_identifier, Grid};
use xgrid_protocol::peer::{self, Address, PeerError, PeerOptions, PeerRole};
use xgrid_protocol::plist::{Dictionary, Value};

fn status_is(wanted: &'static str) -> impl Fn(&Dictionary) -> bool {
    move |attributes| attributes.get("jobStatus").and_then(|v| v.as_str()) == Some(wanted)
}

fn stdout_text(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn job_run_prints_the_task_output() {
    let grid = Grid::start("echo", 1, 2);
    let out = grid.xgrid(&["-job", "run", "/bin/echo", "hello"]);
    assert!(
        out.status.success(),
        "xgrid failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout_text(&out), "hello\n");
}

/// 200 tasks in a binary tree of dependencies (task i waits for task (i-1)/2) over two agents.
/// Each task prints its start time, its result and its end time in nanoseconds.
#[test]
fn batch_of_200_dependent_tasks_runs_in_dependency_order() {
    let grid = Grid::start("batch200", 2, 4);
    let mut tasks = String::new();
    for i in 0..200u64 {
        let depends = if i == 0 {
            String::new()
        } else {
            format!(" dependsOnTasks = ({});", (i - 1) / 2)
        };
        tasks.push_str(&format!(
            "        {i} = {{ command = \"/bin/sh\"; arguments = (\"-c\", \"date +%s%N; expr {i} \\\\* {i}; date +%s%N\");{depends} }};\n"
        ));
    }
    let batch = format!(
        "(\n  {{\n    name = \"tree\";\n    taskSpecifications = {{\n{tasks}    }};\n  }}\n)\n"
    );
    std::fs::write(grid.dir.join("tree.plist"), batch).expect("write batch file");
    let job = job_identifier(&grid.xgrid(&["-job", "batch", "tree.plist"]));
    let waited = grid.xgrid(&["-job", "wait", "-id", &job]);
    assert!(
        waited.status.success(),
        "wait failed: {}",
        String::from_utf8_lossy(&waited.stderr)
    );
    assert_eq!(grid.job_status(&job), "Finished");

    let outputs = grid.task_stdout(&job);
    assert_eq!(outputs.len(), 200, "every task has its output");
    let mut times = BTreeMap::new();
    for (task, data) in &outputs {
        let i: u64 = task.parse().expect("numeric task id");
        let text = String::from_utf8_lossy(data);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "task {task} printed {text:?}");
        assert_eq!(
            lines[1],
            (i * i).to_string(),
            "task {task} computed the wrong result"
        );
        let start: u128 = lines[0].parse().expect("start time");
        let end: u128 = lines[2].parse().expect("end time");
        times.insert(i, (start, end));
    }
    for i in 1..200u64 {
        let parent = (i - 1) / 2;
        assert!(
            times[&i].0 >= times[&parent].1,
            "task {i} started before task {parent}, which it depends on, ended"
        );
    }
}

#[test]
fn stop_suspend_resume_delete_restart_and_output_files() {
    let grid = Grid::start("control", 1, 1);

    // stop: a running job is canceled, not deleted.
    let job = job_identifier(&grid.xgrid(&["-job", "submit", "/bin/sleep", "60"]));
    grid.wait_for_job(&job, 30, status_is("Running"));
    assert!(grid.xgrid(&["-job", "stop", "-id", &job]).status.success());
    grid.wait_for_job(&job, 30, status_is("Canceled"));

    // suspend: no new task starts; resume: the rest run.
    let mut specs = String::new();
    for i in 0..3 {
        specs.push_str(&format!(
            "{i} = {{ command = \"/bin/sleep\"; arguments = (\"0.5\"); }};"
        ));
    }
    std::fs::write(
        grid.dir.join("three.plist"),
        format!("({{ name = three; taskSpecifications = {{ {specs} }}; }})"),
    )
    .expect("write batch");
    let job = job_identifier(&grid.xgrid(&["-job", "batch", "three.plist"]));
    assert!(grid
        .xgrid(&["-job", "suspend", "-id", &job])
        .status
        .success());
    std::thread::sleep(Duration::from_secs(3));
    let attributes = grid.job_attributes(&job).expect("job exists");
    let undone = attributes
        .get("undoneTaskCount")
        .and_then(Value::to_i64)
        .expect("undoneTaskCount");
    assert!(
        undone >= 2,
        "a suspended job started new tasks: {attributes:?}"
    );
    assert_eq!(
        attributes.get("suspended").and_then(Value::to_bool),
        Some(true)
    );
    assert!(grid
        .xgrid(&["-job", "resume", "-id", &job])
        .status
        .success());
    grid.wait_for_job(&job, 30, status_is("Finished"));

    // output files, fetched with -out; restart runs the job again; delete removes it.
    let job = job_identifier(&grid.xgrid(&[
        "-job",
        "submit",
        "/bin/sh",
        "-c",
        "echo data > out.txt; echo ran",
    ]));
    grid.wait_for_job(&job, 30, status_is("Finished"));
    let fetched = grid.xgrid(&["-job", "results", "-id", &job, "-out", "outdir"]);
    assert!(
        fetched.status.success(),
        "{}",
        String::from_utf8_lossy(&fetched.stderr)
    );
    assert_eq!(stdout_text(&fetched), "ran\n");
    assert_eq!(
        std::fs::read_to_string(grid.dir.join("outdir/out.txt")).expect("output file"),
        "data\n"
    );
    assert!(grid
        .xgrid(&["-job", "restart", "-id", &job])
        .status
        .success());
    grid.wait_for_job(&job, 30, status_is("Finished"));
    assert_eq!(
        grid.task_stdout(&job).values().next().map(Vec::as_slice),
        Some(&b"ran\n"[..]),
        "one run's output"
    );
    assert!(grid
        .xgrid(&["-job", "delete", "-id", &job])
        .status
        .success());
    assert_eq!(
        grid.job_attributes(&job).err().as_deref(),
        Some("InvalidJobIdentifier")
    );
}

#[test]
fn controller_killed_mid_job_finishes_it_after_restart() {
    let mut grid = Grid::start("crash", 1, 2);
    let mut specs = String::new();
    for i in 0..20 {
        specs.push_str(&format!(
            "{i} = {{ command = \"/bin/sh\"; arguments = (\"-c\", \"sleep 0.3; echo {i}\"); }};"
        ));
    }
    std::fs::write(
        grid.dir.join("twenty.plist"),
        format!("({{ name = twenty; taskSpecifications = {{ {specs} }}; }})"),
    )
    .expect("write batch");
    let job = job_identifier(&grid.xgrid(&["-job", "batch", "twenty.plist"]));
    grid.wait_for_job(&job, 30, |a| {
        a.get("undoneTaskCount")
            .and_then(Value::to_i64)
            .is_some_and(|n| n <= 16)
    });
    grid.crash_and_restart_controller();
    grid.wait_for_job(&job, 60, status_is("Finished"));
    let outputs = grid.task_stdout(&job);
    assert_eq!(outputs.len(), 20);
    for (task, data) in outputs {
        assert_eq!(
            String::from_utf8_lossy(&data),
            format!("{task}\n"),
            "task {task}: result lost or duplicated"
        );
    }
}

#[test]
fn agent_killed_mid_task_its_task_runs_elsewhere() {
    let mut grid = Grid::start("agentkill", 1, 1);
    let job =
        job_identifier(&grid.xgrid(&["-job", "submit", "/bin/sh", "-c", "sleep 2; echo survived"]));
    grid.wait_for_job(&job, 30, status_is("Running"));
    grid.add_agent("agent1", 1);
    grid.wait_for_agents(2);
    grid.kill_agent("agent0");
    grid.wait_for_job(&job, 60, status_is("Finished"));
    assert_eq!(
        grid.task_stdout(&job).values().next().map(Vec::as_slice),
        Some(&b"survived\n"[..])
    );
}

#[test]
fn bad_input_is_refused_with_a_clear_message() {
    let grid = Grid::start("bad", 1, 1);

    std::fs::write(
        grid.dir.join("broken.plist"),
        "( { name = broken; taskSpecifications = { 0 = { command = ",
    )
    .expect("write");
    let out = grid.xgrid(&["-job", "batch", "broken.plist"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("broken.plist"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    assert_eq!(
        grid.job_attributes("999999").err().as_deref(),
        Some("InvalidJobIdentifier")
    );
    let out = grid.xgrid(&["-job", "attributes", "-id", "999999"]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("999999"));

    // An input file path that would leave the task directory.
    let mut file = Dictionary::new();
    file.insert("fileData".into(), Value::Data(b"evil".to_vec()));
    let mut input_files = Dictionary::new();
    input_files.insert("../escaped".into(), Value::Dictionary(file));
    let mut task = Dictionary::new();
    task.insert("command".into(), Value::from("/bin/true"));
    let mut tasks = Dictionary::new();
    tasks.insert("0".into(), Value::Dictionary(task));
    let mut spec = Dictionary::new();
    spec.insert("inputFiles".into(), Value::Dictionary(input_files));
    spec.insert("taskSpecifications".into(), Value::Dictionary(tasks));
    let mut payload = Dictionary::new();
    payload.insert("jobSpecification".into(), Value::Dictionary(spec));
    let reply = grid.request("jobSubmission", payload).expect("reply");
    assert_eq!(
        reply.get("error").and_then(|v| v.as_str()),
        Some("InvalidJobSpecification")
    );
    let escaped = walk(&grid.dir)
        .into_iter()
        .filter(|p| p.ends_with("escaped"))
        .collect::<Vec<_>>();
    assert!(
        escaped.is_empty(),
        "a file was written outside a task directory: {escaped:?}"
    );

    // A command that does not exist: the task fails, and so does the job, with a message.
    let out = grid.xgrid(&["-job", "run", "/no/such/command"]);
    assert!(!out.status.success());
    let job_list = grid
        .request("gridJobList", Dictionary::new())
        .expect("job list");
    let last = job_list
        .get("jobList")
        .and_then(|v| v.as_array())
        .and_then(|a| a.last())
        .and_then(|v| v.to_string_lenient());
    let attributes = grid
        .job_attributes(&last.expect("a job"))
        .expect("attributes");
    assert_eq!(
        attributes.get("jobStatus").and_then(|v| v.as_str()),
        Some("Failed")
    );
    let error = attributes
        .get("error")
        .and_then(|v| v.as_str())
        .unwrap_or_default();
    assert!(
        error.contains("/no/such/command"),
        "the job's error does not say why: {error:?}"
    );
}

#[test]
fn wrong_password_is_refused_with_535_and_no_channel() {
    let grid = Grid::start_with_password("password", 0, 1, Some("right"));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let outcome = runtime.block_on(async {
        let address = Address::parse(&grid.address).expect("address");
        peer::connect(
            &address,
            PeerOptions {
                role: PeerRole::Client,
                password: Some("wrong".into()),
            },
        )
        .await
        .map(|_| ())
    });
    assert!(
        matches!(outcome, Err(PeerError::WrongPassword)),
        "{outcome:?}"
    );
    let out = grid.xgrid(&["-job", "list"]);
    assert!(
        out.status.success(),
        "the right password works: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                found.extend(walk(&path));
            } else {
                found.push(path);
            }
        }
    }
    found
}
