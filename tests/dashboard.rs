//! The dashboard in a real headless Chromium, driven over chromedriver's W3C WebDriver HTTP
//! API with hand-written HTTP and JSON: the page loads, a job submitted with `xgrid` appears
//! and finishes without a reload, its Suspend and Resume buttons work, and the browser's
//! console stays free of errors. Skips, saying why, without `chromium` and `chromedriver`.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use xgrid_grid_tests::{job_identifier, scratch_dir, Grid};

/// How long any one wait on the browser may take.
const PATIENCE: Duration = Duration::from_secs(20);
/// The key W3C WebDriver names a found element by.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

fn on_path(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| names.iter().map(move |name| dir.join(name)))
        .find(|candidate| candidate.is_file())
}

/// `text` as a JSON string literal.
fn json_string(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The string value of the first `"key": "..."` in `json` (escapes other than `\"` and
/// `\\` are left as they are; the values read here need no more).
fn string_field(json: &str, key: &str) -> Option<String> {
    let at = json.find(&format!("\"{key}\""))? + key.len() + 2;
    let rest = json.get(at..)?.trim_start().strip_prefix(':')?.trim_start();
    let rest = rest.strip_prefix('"')?;
    let mut value = String::new();
    let mut chars = rest.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return Some(value),
            '\\' => value.push(chars.next()?),
            c => value.push(c),
        }
    }
    None
}

fn dechunk(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = body;
    loop {
        let Some(end) = rest.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size = std::str::from_utf8(&rest[..end])
            .ok()
            .and_then(|line| usize::from_str_radix(line.trim(), 16).ok())
            .unwrap_or(0);
        if size == 0 || rest.len() < end + 2 + size {
            return out;
        }
        out.extend_from_slice(&rest[end + 2..end + 2 + size]);
        rest = &rest[(end + 4 + size).min(rest.len())..];
    }
}

/// Whether `response` holds a whole HTTP response (by `Content-Length`, or the last chunk).
fn complete(response: &[u8]) -> bool {
    let Some(split) = response.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&response[..split]).to_ascii_lowercase();
    let body = response.len() - split - 4;
    let length = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length:"))
        .and_then(|n| n.trim().parse::<usize>().ok());
    match length {
        Some(length) => body >= length,
        None if head.contains("transfer-encoding: chunked") => response.ends_with(b"0\r\n\r\n"),
        None => false,
    }
}

/// `GET path` on the dashboard at `http://ADDR:PORT`; the response body.
fn http_get(base: &str, path: &str) -> String {
    let address = base.strip_prefix("http://").expect("an http:// address");
    let port = address
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("a port");
    http(port, "GET", path, None)
}

/// One HTTP/1.1 exchange (with chromedriver, or the dashboard on loopback); the body.
fn http(port: u16, method: &str, path: &str, body: Option<&str>) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to chromedriver");
    stream
        .set_read_timeout(Some(PATIENCE * 2))
        .expect("timeout");
    let body = body.unwrap_or("");
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream
        .write_all(request.as_bytes())
        .expect("send to chromedriver");
    // chromedriver may keep the connection open, so the body ends where its head says.
    let mut response = Vec::new();
    let mut buffer = [0u8; 16384];
    loop {
        let read = stream.read(&mut buffer).expect("read from chromedriver");
        response.extend_from_slice(&buffer[..read]);
        if read == 0 || complete(&response) {
            break;
        }
    }
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("an HTTP response");
    let head = String::from_utf8_lossy(&response[..split]).to_ascii_lowercase();
    let raw = &response[split + 4..];
    let body = if head.contains("transfer-encoding: chunked") {
        dechunk(raw)
    } else {
        raw.to_vec()
    };
    String::from_utf8_lossy(&body).into_owned()
}

/// A chromedriver with one headless Chromium session; both end when it is dropped.
struct Browser {
    driver: Child,
    port: u16,
    session: String,
    profile: PathBuf,
}

impl Browser {
    fn start(chromium: &Path, chromedriver: &Path) -> Browser {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let driver = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let profile = scratch_dir("chromium-profile");
        let mut browser = Browser {
            driver,
            port,
            session: String::new(),
            profile,
        };
        let deadline = Instant::now() + PATIENCE;
        while !TcpStream::connect(("127.0.0.1", port))
            .is_ok_and(|_| http(port, "GET", "/status", None).contains("\"ready\":true"))
        {
            assert!(Instant::now() < deadline, "chromedriver did not get ready");
            std::thread::sleep(Duration::from_millis(100));
        }
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ]
        .iter()
        .map(|a| json_string(a))
        .chain(std::iter::once(json_string(&format!(
            "--user-data-dir={}",
            browser.profile.display()
        ))))
        .collect::<Vec<_>>()
        .join(",");
        let capabilities = format!(
            "{{\"capabilities\":{{\"alwaysMatch\":{{\"browserName\":\"chrome\",\
             \"goog:loggingPrefs\":{{\"browser\":\"ALL\"}},\
             \"goog:chromeOptions\":{{\"binary\":{},\"args\":[{args}]}}}}}}}}",
            json_string(&chromium.display().to_string())
        );
        let reply = http(port, "POST", "/session", Some(&capabilities));
        browser.session = string_field(&reply, "sessionId")
            .unwrap_or_else(|| panic!("chromedriver opened no session: {reply}"));
        browser
    }

    fn command(&self, method: &str, what: &str, body: Option<&str>) -> String {
        let path = format!("/session/{}/{what}", self.session);
        let reply = http(self.port, method, &path, body);
        assert!(
            !reply.contains("\"error\""),
            "WebDriver {method} {what} failed: {reply}"
        );
        reply
    }

    fn open(&self, url: &str) {
        self.command(
            "POST",
            "url",
            Some(&format!("{{\"url\":{}}}", json_string(url))),
        );
    }

    /// Runs `script` in the page; its result as text (scripts here return strings).
    fn run(&self, script: &str) -> String {
        self.try_run(script)
            .unwrap_or_else(|reply| panic!("the script failed: {reply}"))
    }

    /// Like `run`, but a WebDriver error comes back (a page may be between loads).
    fn try_run(&self, script: &str) -> Result<String, String> {
        let body = format!("{{\"script\":{},\"args\":[]}}", json_string(script));
        let path = format!("/session/{}/execute/sync", self.session);
        let reply = http(self.port, "POST", &path, Some(&body));
        if reply.contains("\"error\"") {
            return Err(reply);
        }
        Ok(string_field(&reply, "value").unwrap_or_default())
    }

    /// Waits until `script` answers `wanted`; errors while a click's page load is under way
    /// count as not yet.
    fn wait_for(&self, script: &str, wanted: &str, what: &str) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let got = self.try_run(script);
            if got.as_deref() == Ok(wanted) {
                return;
            }
            assert!(Instant::now() < deadline, "{what}: still {got:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Clicks the element `css` finds. The live script rebuilds a row's buttons when its
    /// job changes, so a button found a moment ago may be gone: then it is found again.
    fn click(&self, css: &str) {
        let body = format!(
            "{{\"using\":\"css selector\",\"value\":{}}}",
            json_string(css)
        );
        let deadline = Instant::now() + PATIENCE;
        loop {
            let found = self.command("POST", "element", Some(&body));
            let element = string_field(&found, ELEMENT_KEY)
                .unwrap_or_else(|| panic!("no element {css}: {found}"));
            let path = format!("/session/{}/element/{element}/click", self.session);
            let reply = http(self.port, "POST", &path, Some("{}"));
            if !reply.contains("\"error\"") {
                return;
            }
            assert!(
                reply.contains("stale element") && Instant::now() < deadline,
                "clicking {css} failed: {reply}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The browser console's entries at level SEVERE since the last call.
    fn console_errors(&self) -> Vec<String> {
        let log = self.command("POST", "se/log", Some("{\"type\":\"browser\"}"));
        log.split("{\"level\"")
            .skip(1)
            .filter(|entry| entry.trim_start().starts_with(":\"SEVERE\""))
            .map(str::to_string)
            .collect()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let path = format!("/session/{}", self.session);
            let _ = std::panic::catch_unwind(|| http(self.port, "DELETE", &path, None));
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

#[test]
fn a_job_lives_on_the_dashboard_in_a_real_browser() {
    let (Some(chromium), Some(chromedriver)) = (
        on_path(&["chromium", "chromium-browser", "google-chrome"]),
        on_path(&["chromedriver"]),
    ) else {
        eprintln!("skipped: chromium and chromedriver are needed (scripts/setup installs them)");
        return;
    };
    let grid = Grid::start_with_dashboard("dashboard", 1, 2);
    let dashboard = grid
        .dashboard
        .clone()
        .expect("the controller serves its dashboard");
    let browser = Browser::start(&chromium, &chromedriver);

    browser.open(&format!("{dashboard}/jobs"));
    browser.wait_for(
        "return document.getElementById('jobs') || document.getElementById('no-jobs') ? 'loaded' : 'not yet';",
        "loaded",
        "the jobs page loads",
    );
    browser.wait_for(
        "return document.getElementById('live').textContent;",
        "live",
        "the page follows live events",
    );
    browser.run("window.xgridMark = 'kept'; return 'set';");

    // Long enough to still run after both clicks: a suspended job's running task goes on.
    let job = job_identifier(&grid.xgrid(&["-job", "submit", "/bin/sleep", "5"]));
    let row = format!("#job-{job}");
    browser.wait_for(
        &format!("return document.querySelector('{row}') ? 'shown' : 'absent';"),
        "shown",
        "the submitted job appears",
    );
    assert_eq!(
        browser.run("return window.xgridMark || 'reloaded';"),
        "kept",
        "the job must appear without a reload"
    );

    // A click posts a form and loads the list again: the mark tells the new page apart
    // from the old one, whose live script may already show the change.
    let after_click = |wanted_form: &str| {
        format!(
            "return window.xgridMark ? 'old page' : document.getElementById('live').textContent \
             + (document.querySelector(\"{row} form[action='/jobs/{job}/{wanted_form}'] button\") ? ' {wanted_form}' : ' none');"
        )
    };
    browser.run("window.xgridMark = 'before the click'; return 'set';");
    browser.click(&format!("{row} form[action='/jobs/{job}/suspend'] button"));
    browser.wait_for(
        &after_click("resume"),
        "live resume",
        "Suspend turns into Resume",
    );
    let attributes = grid.job_attributes(&job).expect("job attributes");
    let suspended = format!("{:?}", attributes.get("suspended"));
    assert!(
        suspended.contains("YES") || suspended.contains("true"),
        "the controller has the job suspended: {attributes:?}"
    );

    browser.run("window.xgridMark = 'before the click'; return 'set';");
    browser.click(&format!("{row} form[action='/jobs/{job}/resume'] button"));
    browser.wait_for(
        &after_click("suspend"),
        "live suspend",
        "Resume turns back into Suspend",
    );
    browser.run("window.xgridMark = 'kept'; return 'set';");
    browser.wait_for(
        &format!(
            "return document.querySelector(\"{row} [data-field='status']\").textContent.trim();"
        ),
        "Finished",
        "the job finishes on the page",
    );
    assert_eq!(
        browser.run("return window.xgridMark || 'reloaded';"),
        "kept",
        "the job must finish without a reload"
    );
    let metrics = http_get(&dashboard, "/metrics");
    let started_jobs = metrics
        .lines()
        .find_map(|line| line.strip_prefix("xgrid_dispatch_latency_seconds_count "))
        .and_then(|n| n.trim().parse::<u64>().ok());
    assert_eq!(
        started_jobs,
        Some(1),
        "one job started, so one dispatch latency: {metrics}"
    );
    let errors = browser.console_errors();
    assert!(errors.is_empty(), "the console has errors: {errors:?}");
}

#[test]
fn a_finished_jobs_page_shows_its_output_and_serves_its_files() {
    let grid = Grid::start_with_dashboard("dashboard-files", 1, 1);
    let dashboard = grid
        .dashboard
        .clone()
        .expect("the controller serves its dashboard");
    let job = job_identifier(&grid.xgrid(&[
        "-job",
        "submit",
        "/bin/sh",
        "-c",
        "echo data > out.txt; echo ran; echo grumble >&2",
    ]));
    grid.wait_for_job(&job, 30, |attributes| {
        attributes.get("jobStatus").and_then(|v| v.as_str()) == Some("Finished")
    });
    let page = http_get(&dashboard, &format!("/jobs/{job}"));
    assert!(page.contains("ran"), "stdout on the job page: {page}");
    assert!(page.contains("grumble"), "stderr on the job page: {page}");
    assert!(
        page.contains(&format!("/jobs/{job}/files/0/out.txt")),
        "a link to the output file: {page}"
    );
    assert_eq!(
        http_get(&dashboard, &format!("/jobs/{job}/files/0/out.txt")),
        "data\n"
    );
    let metrics = http_get(&dashboard, "/metrics");
    for line in [
        "xgrid_jobs{status=\"Finished\"} 1",
        "xgrid_agents{state=\"Available\"} 1",
        "xgrid_tasks_running 0",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in {metrics}");
    }
    let agents = http_get(&dashboard, "/agents");
    assert!(agents.contains("agent0"), "the agent is listed: {agents}");
    let missing = http_get(
        &dashboard,
        &format!("/jobs/{job}/files/0/..%2F..%2Fetc%2Fpasswd"),
    );
    assert!(
        !missing.contains("root:"),
        "no file outside the store: {missing}"
    );
}
