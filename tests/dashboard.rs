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

const POVRAY: &str = "/usr/bin/povray";

/// The picture on the job page once it shows `done` finished tiles, read back through a
/// canvas: RGBA bytes, row by row.
fn shown_picture(browser: &Browser, done: usize) -> Vec<u8> {
    let script = format!(
        "const img = document.getElementById('job-picture');\
         if (!img || !img.complete || img.naturalWidth === 0 \
             || img.getAttribute('data-done') !== '{done}') return 'not yet';\
         const canvas = document.createElement('canvas');\
         canvas.width = img.naturalWidth; canvas.height = img.naturalHeight;\
         const context = canvas.getContext('2d');\
         context.drawImage(img, 0, 0);\
         const data = context.getImageData(0, 0, canvas.width, canvas.height).data;\
         let hex = '';\
         for (const byte of data) hex += byte.toString(16).padStart(2, '0');\
         return hex;"
    );
    let deadline = Instant::now() + PATIENCE;
    let hex = loop {
        let got = browser.try_run(&script);
        match got {
            Ok(hex) if hex != "not yet" => break hex,
            _ => {
                assert!(
                    Instant::now() < deadline,
                    "the page never showed the picture of {done} tiles: {got:?}"
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    };
    (0..hex.len() / 2)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).expect("hex"))
        .collect()
}

/// How many tiles of `rects` the RGBA picture `shown` holds, each exactly as in `direct`
/// (RGB); every other tile must be wholly transparent.
fn tiles_shown(shown: &[u8], direct: &[u8], width: usize, rects: &[xgrid_image::Rect]) -> usize {
    assert_eq!(shown.len() / 4, direct.len() / 3, "picture sizes differ");
    let mut complete = 0;
    for rect in rects {
        let (mut opaque, mut clear) = (0, 0);
        for row in rect.top..rect.bottom {
            for column in rect.left..rect.right {
                let at = row * width + column;
                let pixel = &shown[at * 4..at * 4 + 4];
                if pixel[3] == 0 {
                    clear += 1;
                    continue;
                }
                assert_eq!(
                    (&pixel[..3], pixel[3]),
                    (&direct[at * 3..at * 3 + 3], 255),
                    "pixel at row {row}, column {column} differs from the direct render"
                );
                opaque += 1;
            }
        }
        assert!(
            opaque == 0 || clear == 0,
            "the tile {rect:?} is shown in part: {opaque} pixels drawn, {clear} not"
        );
        complete += usize::from(clear == 0);
    }
    complete
}

fn finished_tasks(grid: &Grid, job: &str) -> usize {
    let attributes = grid.job_attributes(job).expect("job attributes");
    let number = |key: &str| {
        attributes
            .get(key)
            .and_then(|v| v.as_str())
            .and_then(|n| n.parse::<usize>().ok())
            .unwrap_or_else(|| panic!("{key} in {attributes:?}"))
    };
    number("taskCount") - number("undoneTaskCount")
}

#[test]
fn a_render_fills_in_on_its_job_page_tile_by_tile() {
    let (Some(chromium), Some(chromedriver)) = (
        on_path(&["chromium", "chromium-browser", "google-chrome"]),
        on_path(&["chromedriver"]),
    ) else {
        eprintln!("skipped: chromium and chromedriver are needed (scripts/setup installs them)");
        return;
    };
    if !Path::new(POVRAY).exists() {
        eprintln!("skipped: {POVRAY} is needed (scripts/setup installs it)");
        return;
    }
    let scenes = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenes");
    let work = scratch_dir("dashboard-render-out");
    let (width, height, asked) = (160, 120, 12);
    let options = ["+W160", "+H120", "+A0.3"];

    // The picture as one POV-Ray process makes it.
    let direct = Command::new(POVRAY)
        .args(options)
        .args(["-D", "-V", "+FC"])
        .arg(format!("+O{}", work.join("direct.tga").display()))
        .arg("+Istill.pov")
        .current_dir(&scenes)
        .output()
        .expect("run povray");
    assert!(direct.status.success(), "direct render: {direct:?}");
    let direct = std::fs::read(work.join("direct.tga")).expect("the direct render");
    let direct = xgrid_image::targa::read_targa(&direct).expect("a Targa file");

    // One agent with one slot: tiles finish one at a time, and the grid stops rendering
    // when that agent is gone.
    let mut grid = Grid::start_with_dashboard("dashboard-render", 1, 1);
    let dashboard = grid.dashboard.clone().expect("the dashboard");
    let stderr = std::fs::File::create(work.join("stderr.txt")).expect("stderr file");
    let mut render = Command::new(xgrid_grid_tests::binary("xgrid-povray"))
        .arg("-h")
        .arg(&grid.address)
        .arg(scenes.join("still.pov"))
        .args(options)
        .args(["-tiles", &asked.to_string(), "-o", "grid.png"])
        .current_dir(&work)
        .env_remove("XGRID_CONTROLLER_HOSTNAME")
        .env_remove("XGRID_CONTROLLER_PASSWORD")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("start xgrid-povray");

    let deadline = Instant::now() + PATIENCE;
    let job = loop {
        let mut query = xgrid_protocol::plist::Dictionary::new();
        query.insert("gridIdentifier".into(), "".into());
        let listed = grid.request("gridJobList", query).ok().and_then(|reply| {
            reply
                .get("jobList")
                .and_then(|v| v.as_array())
                .and_then(|jobs| jobs.first().and_then(|j| j.as_str()).map(str::to_string))
        });
        if let Some(job) = listed {
            break job;
        }
        assert!(Instant::now() < deadline, "xgrid-povray submitted no job");
        std::thread::sleep(Duration::from_millis(50));
    };
    let browser = Browser::start(&chromium, &chromedriver);
    browser.open(&format!("{dashboard}/jobs/{job}"));
    browser.wait_for(
        "return document.getElementById('live').textContent;",
        "live",
        "the job page follows live events",
    );
    browser.run("window.xgridMark = 'kept'; return 'set';");

    // Once a tile is done the only agent goes: the render stands still part way.
    let deadline = Instant::now() + Duration::from_secs(60);
    while finished_tasks(&grid, &job) == 0 {
        assert!(Instant::now() < deadline, "no tile finished within 60 s");
        std::thread::sleep(Duration::from_millis(20));
    }
    grid.kill_agent("agent0");
    std::thread::sleep(Duration::from_secs(1));
    let done = finished_tasks(&grid, &job);

    // The tiles the tool cut, to tell a whole tile on the page from part of one.
    let render_options = xgrid_cli::povray::options::RenderOptions {
        width,
        height,
        block_size: 32,
        alpha: false,
        frames: None,
    };
    let rects: Vec<xgrid_image::Rect> =
        xgrid_cli::povray::plan::pieces(&render_options, Some(asked))
            .into_iter()
            .filter_map(|piece| match piece {
                xgrid_cli::povray::plan::Piece::Tile(rect) => Some(rect),
                xgrid_cli::povray::plan::Piece::Frame(_) => None,
            })
            .collect();
    let tiles = rects.len();
    assert!(done < tiles, "every tile finished before the agent went");
    let partial = shown_picture(&browser, done);
    assert_eq!(
        tiles_shown(&partial, &direct.pixels, width, &rects),
        done,
        "the page shows the finished tiles and only them"
    );

    // Another agent finishes the job; the page ends with the whole picture.
    grid.add_agent("agent1", 1);
    let status = render.wait().expect("xgrid-povray ends");
    assert!(
        status.success(),
        "xgrid-povray failed: {}",
        std::fs::read_to_string(work.join("stderr.txt")).unwrap_or_default()
    );
    let whole = shown_picture(&browser, tiles);
    assert_eq!(tiles_shown(&whole, &direct.pixels, width, &rects), tiles);
    assert_eq!(
        browser.run("return window.xgridMark || 'reloaded';"),
        "kept",
        "the picture must fill in without a reload"
    );
    let errors = browser.console_errors();
    assert!(errors.is_empty(), "the console has errors: {errors:?}");
    let _ = std::fs::remove_dir_all(&work);
}
