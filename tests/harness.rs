//! Whole-grid test harness: starts the real `xgridcontrollerd` and `xgridagentd` binaries as
//! processes on loopback, each with its own data directory, runs the real `xgrid` command
//! against them, and ends every process it started (by PID) when the grid is dropped.
//!
//! The binaries are taken from the cargo target directory that holds this test; the test
//! script builds them first (`cargo build --workspace --bins`).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use xgrid_protocol::peer::{self, Address, PeerOptions, PeerRole};
use xgrid_protocol::plist::{Dictionary, Value};

/// Where cargo put the workspace's binaries (`target/debug` beside `target/debug/deps`).
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target directory");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace --bins` first",
        path.display()
    );
    path
}

/// A fresh, empty directory for one test.
pub fn scratch_dir(label: &str) -> PathBuf {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!("xgrid-grid-{}-{label}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch directory");
    dir
}

/// A running grid: one controller and some agents.
#[derive(Debug)]
pub struct Grid {
    pub dir: PathBuf,
    pub address: String,
    /// `http://ADDR:PORT` of the controller's dashboard, when it was started with one.
    pub dashboard: Option<String>,
    client_password: Option<String>,
    /// More `xgridcontrollerd` arguments, kept for restarts.
    controller_args: Vec<String>,
    controller: Child,
    agents: Vec<(String, Child)>,
}

impl Grid {
    /// A controller and `agents` agents with `slots` slots each, every agent registered.
    pub fn start(label: &str, agents: usize, slots: usize) -> Grid {
        Grid::start_with_password(label, agents, slots, None)
    }

    /// Like [`Grid::start`], with a client password on the controller.
    pub fn start_with_password(
        label: &str,
        agents: usize,
        slots: usize,
        client_password: Option<&str>,
    ) -> Grid {
        Grid::launch(label, agents, slots, client_password, false)
    }

    /// Like [`Grid::start`], with the controller's web dashboard on a free loopback port
    /// (see [`Grid::dashboard`]).
    pub fn start_with_dashboard(label: &str, agents: usize, slots: usize) -> Grid {
        Grid::launch(label, agents, slots, None, true)
    }

    fn launch(
        label: &str,
        agents: usize,
        slots: usize,
        client_password: Option<&str>,
        web: bool,
    ) -> Grid {
        let dir = scratch_dir(label);
        let client_password = client_password.map(str::to_string);
        let (controller, address, dashboard) = start_controller_with(
            &dir.join("controller"),
            "127.0.0.1:0",
            client_password.as_deref(),
            web,
            &[],
        );
        let mut grid = Grid {
            dir,
            address,
            dashboard,
            client_password,
            controller_args: Vec::new(),
            controller,
            agents: Vec::new(),
        };
        for i in 0..agents {
            grid.add_agent(&format!("agent{i}"), slots);
        }
        grid.wait_for_agents(agents);
        grid
    }

    /// A controller started with `controller_args` and no agent yet: a grid whose agents
    /// move tasks ([`Grid::add_moving_agent`]).
    pub fn start_moving(label: &str, controller_args: &[&str]) -> Grid {
        let dir = scratch_dir(label);
        std::fs::create_dir_all(dir.join("tasks")).expect("shared tasks path");
        let (controller, address, dashboard) = start_controller_with(
            &dir.join("controller"),
            "127.0.0.1:0",
            None,
            false,
            controller_args,
        );
        Grid {
            dir,
            address,
            dashboard,
            client_password: None,
            controller_args: controller_args.iter().map(|a| a.to_string()).collect(),
            controller,
            agents: Vec::new(),
        }
    }

    /// Start an agent that can move tasks: tasks run as root (CRIU cannot dump another
    /// user's processes without CAP_SYS_RESOURCE, which test machines may lack) under the
    /// grid's shared tasks path, which the agent sees in a mount namespace of its own with
    /// a private directory bound over it: two agents on one machine then restore a task at
    /// the path it had, as two machines would. `extra` goes to `xgridagentd` as it is.
    pub fn add_moving_agent(&mut self, name: &str, slots: usize, extra: &[&str]) {
        self.add_moving_agent_after(name, slots, extra, "");
    }

    /// [`Grid::add_moving_agent`], running the shell line `before` in the agent's process
    /// first (e.g. moving itself into a cgroup that holds it to a quarter of a core).
    pub fn add_moving_agent_after(
        &mut self,
        name: &str,
        slots: usize,
        extra: &[&str],
        before: &str,
    ) {
        let own = self.dir.join(format!("{name}-tasks"));
        std::fs::create_dir_all(&own).expect("agent tasks directory");
        let shared = self.dir.join("tasks");
        let script = format!(
            "{before}\nmount --bind '{}' '{}' || exit 97\nexec \"$@\"\n",
            own.display(),
            shared.display()
        );
        let child = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "--", "/bin/sh", "-c"])
            .arg(script)
            .arg("sh")
            .arg(binary("xgridagentd"))
            .args(["--controller", &self.address, "--name", name])
            .args(["--slots", &slots.to_string(), "--task-user", "root"])
            .arg("--tasks-dir")
            .arg(&shared)
            .arg("--data-dir")
            .arg(self.dir.join(name))
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start xgridagentd in a mount namespace");
        self.agents.push((name.to_string(), child));
    }

    /// Send `signal` (e.g. `SIGTERM`) to agent `name`.
    pub fn signal_agent(&self, name: &str, signal: nix::sys::signal::Signal) {
        let (_, child) = self
            .agents
            .iter()
            .find(|(n, _)| n == name)
            .expect("no such agent");
        let pid = i32::try_from(child.id()).expect("pid");
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal).expect("signal the agent");
    }

    /// Wait (up to `limit`) for agent `name` to exit; its exit code.
    pub fn wait_for_agent_exit(&mut self, name: &str, limit: Duration) -> Option<i32> {
        let (_, child) = self
            .agents
            .iter_mut()
            .find(|(n, _)| n == name)
            .expect("no such agent");
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// Kill the controller with SIGKILL and start it again on the same address and data.
    pub fn crash_and_restart_controller(&mut self) {
        let _ = self.controller.kill();
        let _ = self.controller.wait();
        let args: Vec<&str> = self.controller_args.iter().map(String::as_str).collect();
        let (controller, address, dashboard) = start_controller_with(
            &self.dir.join("controller"),
            &self.address,
            self.client_password.as_deref(),
            self.dashboard.is_some(),
            &args,
        );
        self.dashboard = dashboard;
        assert_eq!(
            address, self.address,
            "the controller came back on the same address"
        );
        self.controller = controller;
    }

    /// The controller's process id (for reading its memory use).
    pub fn controller_pid(&self) -> u32 {
        self.controller.id()
    }

    /// The process ids of the agents, in the order they were started.
    pub fn agent_pids(&self) -> Vec<u32> {
        self.agents.iter().map(|(_, child)| child.id()).collect()
    }

    /// Kill agent `name` with SIGKILL.
    pub fn kill_agent(&mut self, name: &str) {
        let (_, child) = self
            .agents
            .iter_mut()
            .find(|(n, _)| n == name)
            .expect("no such agent");
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Start one more agent process.
    pub fn add_agent(&mut self, name: &str, slots: usize) {
        let child = Command::new(binary("xgridagentd"))
            .args([
                "--controller",
                &self.address,
                "--name",
                name,
                "--slots",
                &slots.to_string(),
            ])
            .arg("--data-dir")
            .arg(self.dir.join(name))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start xgridagentd");
        self.agents.push((name.to_string(), child));
    }

    /// Wait (up to 30 s) until the controller lists `count` agents.
    pub fn wait_for_agents(&self, count: usize) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let listed = self
                .request("agentList", Dictionary::new())
                .ok()
                .and_then(|reply| {
                    reply
                        .get("agentList")
                        .and_then(|v| v.as_array())
                        .map(<[_]>::len)
                });
            if listed == Some(count) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "only {listed:?} of {count} agents registered within 30 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// One client request through the protocol crate; the reply's payload.
    pub fn request(&self, name: &str, payload: Dictionary) -> Result<Dictionary, String> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let address = Address::parse(&self.address).map_err(|e| e.to_string())?;
            let options = PeerOptions {
                role: PeerRole::Client,
                password: self.client_password.clone(),
            };
            let (client, _incoming) = peer::connect(&address, options)
                .await
                .map_err(|e| e.to_string())?;
            let reply = client
                .request(name, payload)
                .await
                .map_err(|e| e.to_string())?;
            let _ = client.close().await;
            Ok(reply.payload)
        })
    }

    /// The job's attributes dictionary (`jobAttributes` reply), or the error reply's code.
    pub fn job_attributes(&self, job: &str) -> Result<Dictionary, String> {
        let reply = self.request("jobAttributes", job_payload(job))?;
        if let Some(code) = reply.get("error").and_then(|v| v.as_str()) {
            return Err(code.to_string());
        }
        reply
            .get("jobAttributes")
            .and_then(|v| v.as_dictionary())
            .cloned()
            .ok_or_else(|| format!("jobAttributes reply without attributes: {reply:?}"))
    }

    /// The job's status string (`Running`, `Finished`, …).
    pub fn job_status(&self, job: &str) -> String {
        let attributes = self.job_attributes(job).expect("job exists");
        attributes
            .get("jobStatus")
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_string()
    }

    /// Poll the job's attributes until `done` says so; panics after `seconds`.
    pub fn wait_for_job(
        &self,
        job: &str,
        seconds: u64,
        done: impl Fn(&Dictionary) -> bool,
    ) -> Dictionary {
        let deadline = Instant::now() + Duration::from_secs(seconds);
        loop {
            let attributes = self.job_attributes(job).expect("job exists");
            if done(&attributes) {
                return attributes;
            }
            assert!(
                Instant::now() < deadline,
                "job {job} did not get there within {seconds} s: {attributes:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Each task's standard output (`jobResults`).
    pub fn task_stdout(&self, job: &str) -> BTreeMap<String, Vec<u8>> {
        let reply = self
            .request("jobResults", job_payload(job))
            .expect("jobResults");
        let results = reply
            .get("taskResults")
            .and_then(|v| v.as_dictionary())
            .cloned()
            .unwrap_or_default();
        results
            .into_iter()
            .map(|(task, streams)| {
                let data = streams
                    .as_dictionary()
                    .and_then(|d| d.get("readData"))
                    .and_then(|v| v.as_data())
                    .map(<[u8]>::to_vec)
                    .unwrap_or_default();
                (task, data)
            })
            .collect()
    }

    /// Run the real `xgrid` command against this grid.
    pub fn xgrid(&self, args: &[&str]) -> Output {
        let mut command = Command::new(binary("xgrid"));
        command.arg("-h").arg(&self.address);
        if let Some(password) = &self.client_password {
            command.arg("-p").arg(password);
        }
        command
            .args(args)
            .current_dir(&self.dir)
            .env_remove("XGRID_CONTROLLER_HOSTNAME")
            .env_remove("XGRID_CONTROLLER_PASSWORD")
            .stdin(Stdio::null())
            .output()
            .expect("run xgrid")
    }
}

/// `{jobIdentifier = job}`.
pub fn job_payload(job: &str) -> Dictionary {
    let mut payload = Dictionary::new();
    payload.insert("jobIdentifier".into(), Value::from(job));
    payload
}

/// The job identifier in `xgrid -job submit`/`-job batch` output (`jobIdentifier = 27;`).
pub fn job_identifier(output: &Output) -> String {
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "xgrid failed: {}{}",
        text,
        String::from_utf8_lossy(&output.stderr)
    );
    text.split("jobIdentifier = ")
        .nth(1)
        .map(|rest| rest.chars().take_while(char::is_ascii_digit).collect())
        .filter(|id: &String| !id.is_empty())
        .unwrap_or_else(|| panic!("no job identifier in {text:?}"))
}

/// Start `xgridcontrollerd` listening on `listen`; its address once it listens, and with
/// `web` its dashboard's `http://ADDR:PORT` on a free loopback port.
pub fn start_controller(
    data_dir: &Path,
    listen: &str,
    client_password: Option<&str>,
    web: bool,
) -> (Child, String, Option<String>) {
    start_controller_with(data_dir, listen, client_password, web, &[])
}

/// [`start_controller`] with more arguments.
pub fn start_controller_with(
    data_dir: &Path,
    listen: &str,
    client_password: Option<&str>,
    web: bool,
    extra: &[&str],
) -> (Child, String, Option<String>) {
    let mut command = Command::new(binary("xgridcontrollerd"));
    command.args(["--listen", listen]).args(extra);
    // Grids of these tests run side by side: none may hold the dashboard's fixed port.
    if web {
        command.args(["--web", "127.0.0.1:0"]);
    } else {
        command.arg("--no-web");
    }
    command.arg("--data-dir").arg(data_dir);
    if let Some(password) = client_password {
        command.args(["--client-password", password]);
    }
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start xgridcontrollerd");
    let stdout = child.stdout.take().expect("controller stdout");
    let mut lines = BufReader::new(stdout).lines();
    let address = loop {
        match lines.next() {
            Some(Ok(line)) => {
                if let Some(address) = line.split("listening on ").nth(1) {
                    break address.trim().to_string();
                }
            }
            _ => {
                let _ = child.kill();
                panic!("xgridcontrollerd exited before saying where it listens");
            }
        }
    };
    let dashboard = if web {
        match lines.next() {
            Some(Ok(line)) if line.starts_with("dashboard on http://") => line
                .strip_prefix("dashboard on ")
                .map(|url| url.trim().to_string()),
            other => {
                let _ = child.kill();
                panic!("xgridcontrollerd did not say where its dashboard is: {other:?}");
            }
        }
    } else {
        None
    };
    // Keep draining its stdout so the controller never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (child, address, dashboard)
}

impl Drop for Grid {
    fn drop(&mut self) {
        for child in self
            .agents
            .iter_mut()
            .map(|(_, c)| c)
            .chain(std::iter::once(&mut self.controller))
        {
            let _ = child.kill();
            let _ = child.wait();
        }
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
