//! Bonjour discovery between real processes (issue 5): the controller advertises
//! `_xgrid._tcp`, agents started without `--controller` find it, follow it when it restarts
//! elsewhere, and `xgrid -h SERVICE-NAME` reaches it.
//!
//! Multicast must never leave the machine, so every test builds its own pair of network
//! namespaces joined by a veth link (`ip netns`, root only) and runs the controller in one
//! and the agent and `xgrid` in the other; both are deleted when the test ends, whatever
//! its outcome. Without root or `ip`, the tests say why they skip.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use xgrid_grid_tests::{binary, scratch_dir};

/// The controller side's addresses (TEST-NET-1: documentation only, and here on a link
/// that exists only between the test's own namespaces).
const CONTROLLER_IP: &str = "192.0.2.1";
/// Where a restarted controller moves to, on the same link.
const MOVED_IP: &str = "192.0.2.3";
const AGENT_IP: &str = "192.0.2.2";

/// Two network namespaces joined by a veth pair, deleted on drop.
struct Link {
    controller_ns: String,
    agent_ns: String,
    controller_veth: String,
}

impl Link {
    /// The namespaces for one test; `Err` says why they cannot be made here.
    fn create() -> Result<Link, String> {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let id = format!("{}-{n}", std::process::id());
        // Interface names are at most 15 bytes: the process id and counter keep them apart
        // from any other test run's.
        let short = format!("{}{n}", std::process::id() % 100_000);
        let link = Link {
            controller_ns: format!("xgrid-bonjour-{id}-c"),
            agent_ns: format!("xgrid-bonjour-{id}-a"),
            controller_veth: format!("xbj{short}c"),
        };
        let agent_veth = format!("xbj{short}a");
        ip(&["netns", "add", &link.controller_ns])?;
        ip(&["netns", "add", &link.agent_ns])?;
        // From here on, dropping `link` deletes what was made.
        let steps: Vec<Vec<&str>> = vec![
            vec![
                "link",
                "add",
                &link.controller_veth,
                "netns",
                &link.controller_ns,
                "type",
                "veth",
                "peer",
                "name",
                &agent_veth,
                "netns",
                &link.agent_ns,
            ],
            vec!["-n", &link.controller_ns, "link", "set", "lo", "up"],
            vec!["-n", &link.agent_ns, "link", "set", "lo", "up"],
        ];
        for step in steps {
            ip(&step)?;
        }
        let controller_cidr = format!("{CONTROLLER_IP}/24");
        let agent_cidr = format!("{AGENT_IP}/24");
        for (ns, veth, cidr) in [
            (&link.controller_ns, &link.controller_veth, &controller_cidr),
            (&link.agent_ns, &agent_veth, &agent_cidr),
        ] {
            ip(&["-n", ns, "addr", "add", cidr, "dev", veth])?;
            ip(&["-n", ns, "link", "set", veth, "up"])?;
        }
        Ok(link)
    }

    /// Give the controller's side one more address (where a moved controller listens).
    fn add_controller_address(&self, address: &str) {
        let cidr = format!("{address}/24");
        ip(&[
            "-n",
            &self.controller_ns,
            "addr",
            "add",
            &cidr,
            "dev",
            &self.controller_veth,
        ])
        .expect("add an address");
    }

    /// `program` run inside namespace `ns`.
    fn command(ns: &str, program: &Path) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", ns]).arg(program);
        command
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        // Deleting a namespace deletes the veth end inside it, and with it the pair.
        for ns in [&self.controller_ns, &self.agent_ns] {
            if let Err(e) = ip(&["netns", "delete", ns]) {
                eprintln!("could not delete network namespace {ns}: {e}");
            }
        }
    }
}

/// Run `ip ARGS`; `Err` with its complaint when it fails.
fn ip(args: &[&str]) -> Result<(), String> {
    let output = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run `ip`: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

/// The namespaces, or `None` after saying why this machine cannot have them. CI runs as
/// root with `ip` (scripts/setup installs iproute2), so there these tests run.
fn link_or_skip() -> Option<Link> {
    match Link::create() {
        Ok(link) => Some(link),
        Err(why) => {
            eprintln!("skipped: network namespaces are needed (root and `ip`): {why}");
            None
        }
    }
}

/// A process started inside a namespace, killed (by PID) on drop.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Start `xgridcontrollerd` in the controller's namespace; the process and the address
/// it says it listens on.
fn start_controller(link: &Link, dir: &Path, listen_ip: &str, flags: &[&str]) -> (Process, String) {
    let listen = if listen_ip.contains(':') {
        format!("[{listen_ip}]:0")
    } else {
        format!("{listen_ip}:0")
    };
    let mut child = Link::command(&link.controller_ns, &binary("xgridcontrollerd"))
        .args(["--listen", &listen, "--no-web"])
        .arg("--data-dir")
        .arg(dir.join("controller"))
        .args(flags)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start xgridcontrollerd");
    let stdout = child.stdout.take().expect("controller stdout");
    let process = Process(child);
    let mut lines = BufReader::new(stdout).lines();
    let address = loop {
        match lines.next() {
            Some(Ok(line)) => {
                if let Some(address) = line.strip_prefix("listening on ") {
                    break address.trim().to_string();
                }
            }
            _ => panic!("xgridcontrollerd exited before saying where it listens"),
        }
    };
    std::thread::spawn(move || for _ in lines {});
    (process, address)
}

/// Start `xgridagentd` in the agent's namespace with `flags` (no `--controller` unless
/// given); its log goes to the returned file.
fn start_agent(link: &Link, dir: &Path, flags: &[&str]) -> (Process, PathBuf) {
    let log = dir.join("agent.log");
    let log_file = std::fs::File::create(&log).expect("agent log");
    let child = Link::command(&link.agent_ns, &binary("xgridagentd"))
        .args(["--name", "bonjour-agent", "--slots", "2"])
        .arg("--data-dir")
        .arg(dir.join("agent"))
        .args(flags)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log_file)
        .spawn()
        .expect("start xgridagentd");
    (Process(child), log)
}

/// Wait (up to `seconds`) until the agent's log has a line containing `wanted`.
fn wait_for_log(log: &Path, wanted: &str, seconds: u64) {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.contains(wanted) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the agent did not log {wanted:?} within {seconds} s; its log:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Run `xgrid ARGS` in the agent's namespace.
fn xgrid(link: &Link, dir: &Path, args: &[&str]) -> Output {
    Link::command(&link.agent_ns, &binary("xgrid"))
        .args(args)
        .current_dir(dir)
        .env_remove("XGRID_CONTROLLER_HOSTNAME")
        .env_remove("XGRID_CONTROLLER_PASSWORD")
        .stdin(Stdio::null())
        .output()
        .expect("run xgrid")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `xgrid -h NAME -job run /bin/echo WORD` prints WORD: the job went through the controller
/// found by name to the agent that found the controller by itself.
fn run_echo(link: &Link, dir: &Path, service: &str, word: &str) {
    let out = xgrid(
        link,
        dir,
        &["-h", service, "-job", "run", "/bin/echo", word],
    );
    assert!(
        out.status.success(),
        "xgrid -h {service:?} -job run failed: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert_eq!(text(&out.stdout), format!("{word}\n"));
}

fn service_name(label: &str) -> String {
    format!("xgrid test {} {label}", std::process::id())
}

#[test]
fn an_agent_finds_the_controller_by_itself_and_follows_it_when_it_moves() {
    let Some(link) = link_or_skip() else { return };
    let dir = scratch_dir("bonjour-find");
    let service = service_name("find");
    let (controller, first) =
        start_controller(&link, &dir, CONTROLLER_IP, &["--service-name", &service]);
    let (_agent, log) = start_agent(&link, &dir, &[]);
    wait_for_log(&log, &format!("registered with {service:?} at {first}"), 30);
    run_echo(&link, &dir, &service, "found");

    // The controller dies without a goodbye and comes back on another address and port.
    drop(controller);
    link.add_controller_address(MOVED_IP);
    let (_controller, moved) =
        start_controller(&link, &dir, MOVED_IP, &["--service-name", &service]);
    assert_ne!(moved, first);
    wait_for_log(&log, &format!("registered with {service:?} at {moved}"), 30);
    run_echo(&link, &dir, &service, "followed");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Also: controller "two" listens on `[::]`, so it advertises its IPv6 link-local address
/// beside the IPv4 one, and the agent and `xgrid` must still connect over IPv4.
#[test]
fn an_agent_given_a_service_name_serves_that_controller_only() {
    let Some(link) = link_or_skip() else { return };
    let dir = scratch_dir("bonjour-named");
    let one = service_name("one");
    let two = service_name("two");
    let (_one, _) = start_controller(
        &link,
        &dir.join("one"),
        CONTROLLER_IP,
        &["--service-name", &one],
    );
    let (_two, two_address) =
        start_controller(&link, &dir.join("two"), "::", &["--service-name", &two]);
    let two_port = two_address.rsplit(':').next().expect("a port");
    let (_agent, log) = start_agent(&link, &dir, &["--controller-service", &two]);
    wait_for_log(
        &log,
        &format!("registered with {two:?} at {CONTROLLER_IP}:{two_port}"),
        30,
    );
    run_echo(&link, &dir, &two, "named");
    let registrations = std::fs::read_to_string(&log)
        .unwrap_or_default()
        .matches("registered with")
        .count();
    assert_eq!(registrations, 1, "the agent registered with {two:?} only");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_controller_that_does_not_advertise_is_not_found() {
    let Some(link) = link_or_skip() else { return };
    let dir = scratch_dir("bonjour-off");
    let service = service_name("off");
    let (_controller, address) = start_controller(
        &link,
        &dir,
        CONTROLLER_IP,
        &["--service-name", &service, "--no-advertise"],
    );
    let (_agent, log) = start_agent(&link, &dir, &[]);

    // By name, `xgrid` finds nothing and says so...
    let out = xgrid(&link, &dir, &["-h", &service, "-job", "list"]);
    assert_eq!(out.status.code(), Some(69), "{}", text(&out.stderr));
    let complaint = text(&out.stderr);
    assert!(
        complaint.contains(&format!("cannot find the controller {service:?}"))
            && complaint.contains("Bonjour found no controller advertised as"),
        "{complaint}"
    );
    // ...while by address the controller is there, and a job waits with no agent for it.
    let out = xgrid(
        &link,
        &dir,
        &["-h", &address, "-job", "submit", "/bin/echo"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let job = text(&out.stdout)
        .split("jobIdentifier = ")
        .nth(1)
        .map(|rest| {
            rest.chars()
                .take_while(char::is_ascii_digit)
                .collect::<String>()
        })
        .expect("a job identifier");
    // The agent browses all this time; a controller it found would be registered with
    // well within this (it takes under a second when advertised).
    std::thread::sleep(Duration::from_secs(4));
    let out = xgrid(
        &link,
        &dir,
        &["-h", &address, "-job", "attributes", "-id", &job],
    );
    let attributes = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        !attributes.contains("jobStatus = Finished") && !attributes.contains("jobStatus = Running"),
        "no agent should have run the job: {attributes}"
    );
    let agent_log = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        !agent_log.contains("registered with"),
        "the agent found a controller that does not advertise: {agent_log}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
