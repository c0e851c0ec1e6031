//! A grid configured only by Apple's files: the controller and the agent are started with
//! `--apple-config` pointing at Apple's plists and Apple's obfuscated password files beside
//! them (plus the loopback address and data directories a test needs), and the real `xgrid`
//! command must get in with the right client password and be turned away with a wrong one.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use xgrid_grid_tests::{binary, scratch_dir};
use xgrid_protocol::password::write_password_file;
use xgrid_protocol::peer::{self, Address, PeerOptions, PeerRole};
use xgrid_protocol::plist::{self, Dictionary, Value};

/// Processes this test started, killed (by PID, through `Child`) when it ends.
struct Started(Vec<Child>);

impl Drop for Started {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn dictionary(entries: &[(&str, Value)]) -> Value {
    Value::Dictionary(
        entries
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
    )
}

/// Run the real `xgrid` against `address` with `password` (if any); status, stdout, stderr.
fn xgrid(address: &str, password: Option<&str>, args: &[&str]) -> (i32, String, String) {
    let mut command = Command::new(binary("xgrid"));
    command.args(["-h", address]);
    if let Some(password) = password {
        command.args(["-p", password]);
    }
    let output = command
        .args(args)
        .env_remove("XGRID_CONTROLLER_HOSTNAME")
        .env_remove("XGRID_CONTROLLER_PASSWORD")
        .stdin(Stdio::null())
        .output()
        .expect("run xgrid");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// One client request with the client password; the reply payload.
fn request(address: &str, password: &str, name: &str, payload: Dictionary) -> Dictionary {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let address = Address::parse(address).expect("address");
        let options = PeerOptions {
            role: PeerRole::Client,
            password: Some(password.to_string()),
        };
        let (client, _incoming) = peer::connect(&address, options).await.expect("connect");
        let reply = client.request(name, payload).await.expect("request");
        let _ = client.close().await;
        reply.payload
    })
}

/// Start the controller from `plist`; its address and everything it writes to stderr.
fn start_controller(
    plist: &Path,
    data_dir: &Path,
    started: &mut Started,
) -> (String, Arc<Mutex<String>>) {
    let mut child = Command::new(binary("xgridcontrollerd"))
        .arg("--apple-config")
        .arg(plist)
        .args(["--listen", "127.0.0.1:0", "--no-web", "--data-dir"])
        .arg(data_dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start xgridcontrollerd");
    let stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    started.0.push(child);
    let log = Arc::new(Mutex::new(String::new()));
    let sink = Arc::clone(&log);
    std::thread::spawn(move || {
        let mut buffer = [0u8; 4096];
        while let Ok(n) = stderr.read(&mut buffer) {
            if n == 0 {
                break;
            }
            if let Ok(mut log) = sink.lock() {
                log.push_str(&String::from_utf8_lossy(&buffer[..n]));
            }
        }
    });
    let mut lines = BufReader::new(stdout).lines();
    let address = loop {
        match lines.next() {
            Some(Ok(line)) => {
                if let Some(address) = line.strip_prefix("listening on ") {
                    break address.trim().to_string();
                }
            }
            _ => panic!(
                "xgridcontrollerd exited before listening: {}",
                log.lock().map(|l| l.clone()).unwrap_or_default()
            ),
        }
    };
    std::thread::spawn(move || for _ in lines {});
    (address, log)
}

#[test]
fn a_grid_set_up_from_apples_plists_and_password_files() {
    let dir = scratch_dir("apple");
    let etc = dir.join("etc");
    // The controller's plist in binary form, as Mac OS X writes preferences.
    let controller_plist = etc.join("com.apple.xgrid.controller.plist");
    std::fs::create_dir_all(&etc).expect("etc");
    std::fs::write(
        &controller_plist,
        plist::to_binary(&dictionary(&[
            ("Enabled", Value::Boolean(true)),
            ("ClientAuthentication", "Password".into()),
            ("AgentAuthentication", "Password".into()),
            ("ControllerHostname", "xserve.example.com".into()),
            ("AdvertiseNetService", Value::Boolean(false)),
            ("SomethingFromALaterRelease", Value::Integer(1)),
        ])),
    )
    .expect("controller plist");
    write_password_file(&etc.join("controller/client-password"), "client-pw").expect("pw");
    write_password_file(&etc.join("controller/agent-password"), "agent-pw").expect("pw");

    let mut started = Started(Vec::new());
    let (address, log) = start_controller(&controller_plist, &dir.join("data"), &mut started);

    // The agent's plist in XML form, with its password file beside it.
    let agent_etc = dir.join("agent-etc");
    let agent_plist = agent_etc.join("com.apple.xgrid.agent.plist");
    std::fs::create_dir_all(&agent_etc).expect("agent etc");
    std::fs::write(
        &agent_plist,
        plist::to_xml(&dictionary(&[
            ("ControllerName", address.as_str().into()),
            ("ControllerAuthentication", "Password".into()),
            ("BindToFirstAvailable", Value::Boolean(false)),
            ("AgentName", "apple-agent".into()),
            ("MaximumTaskCount", Value::Integer(2)),
        ])),
    )
    .expect("agent plist");
    write_password_file(&agent_etc.join("agent/controller-password"), "agent-pw").expect("pw");
    let agent = Command::new(binary("xgridagentd"))
        .arg("--apple-config")
        .arg(&agent_plist)
        .arg("--data-dir")
        .arg(dir.join("agent-data"))
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start xgridagentd");
    started.0.push(agent);

    // The agent got in with the password from its file, under its plist's name and count.
    let deadline = Instant::now() + Duration::from_secs(30);
    let attributes = loop {
        let agents = request(&address, "client-pw", "agentList", Dictionary::new());
        let first = agents
            .get("agentList")
            .and_then(Value::as_array)
            .and_then(|list| list.first())
            .and_then(Value::to_string_lenient);
        if let Some(agent) = first {
            let mut payload = Dictionary::new();
            payload.insert("agentIdentifier".into(), Value::from(agent));
            let reply = request(&address, "client-pw", "agentAttributes", payload);
            if let Some(Value::Dictionary(attributes)) = reply.get("agentAttributes") {
                break attributes.clone();
            }
        }
        assert!(Instant::now() < deadline, "the agent did not register");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(
        attributes.get("name").and_then(Value::as_str),
        Some("apple-agent")
    );
    assert_eq!(
        attributes.get("maximumTaskCount").and_then(Value::to_i64),
        Some(2)
    );

    // The right client password runs a job; a wrong or missing one is refused (exit 77).
    let (status, stdout, stderr) = xgrid(
        &address,
        Some("client-pw"),
        &["-job", "run", "/bin/echo", "configured by Apple's files"],
    );
    assert_eq!(status, 0, "{stdout}{stderr}");
    assert_eq!(stdout, "configured by Apple's files\n");
    let (status, _, stderr) = xgrid(&address, Some("wrong"), &["-grid", "list"]);
    assert_eq!(status, 77, "{stderr}");
    let (status, _, stderr) = xgrid(&address, None, &["-grid", "list"]);
    assert_eq!(status, 77, "{stderr}");

    // The host name came from the plist, and the unknown key was reported once.
    let controllers = request(&address, "client-pw", "controllerList", Dictionary::new());
    let listed = plist::to_old_style(&Value::Dictionary(controllers));
    assert!(listed.contains("xserve.example.com"), "{listed}");
    // The log tells what happened to the agent and the job in words.
    let agent = started.0.pop().expect("the agent");
    drop(Started(vec![agent]));
    let deadline = Instant::now() + Duration::from_secs(10);
    let log = loop {
        let text = log.lock().map(|l| l.clone()).unwrap_or_default();
        if text.contains("went offline") || Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(
        log.matches("SomethingFromALaterRelease").count(),
        1,
        "{log}"
    );
    for words in [
        "agent apple-agent (127.0.0.1) registered as agent number 1: 2 task slots, ",
        " submitted to grid 0: 1 task\n",
        " finished: 1 task, took ",
        "agent apple-agent (127.0.0.1) went offline: it had no tasks\n",
    ] {
        assert!(log.contains(words), "{words:?} is not in the log:\n{log}");
    }
    drop(started);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_malformed_apple_plist_stops_the_controller_with_its_name() {
    let dir = scratch_dir("apple-malformed");
    let plist = dir.join("com.apple.xgrid.controller.plist");
    std::fs::write(&plist, "{ ClientAuthentication = Password; ").expect("write");
    let output = Command::new(binary("xgridcontrollerd"))
        .arg("--apple-config")
        .arg(&plist)
        .args(["--listen", "127.0.0.1:0", "--no-web", "--data-dir"])
        .arg(dir.join("data"))
        .output()
        .expect("run xgridcontrollerd");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(&plist.display().to_string()), "{stderr}");
    assert!(!dir.join("data").exists(), "nothing may start");
    let _ = std::fs::remove_dir_all(&dir);
}
