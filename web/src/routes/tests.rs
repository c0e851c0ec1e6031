//! One test or more per route, through the whole router, against the in-memory demo grid.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderMap, Request, StatusCode};
use axum::Router;
use futures_util::StreamExt;
use tower::ServiceExt;

use crate::demo::{DemoGrid, DemoState};
use crate::view::{Date, GridEvent, JobAction, JobStatus};

fn setup(password: Option<&str>) -> (Arc<DemoGrid>, Router) {
    let state =
        DemoGrid::sample_state(Date::parse_iso8601("2026-11-23T23:00:00Z").unwrap_or(Date(0.0)));
    let grid = Arc::new(DemoGrid::new(state, password.map(str::to_owned)));
    let router = super::router(grid.clone());
    (grid, router)
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Answer {
    fn location(&self) -> &str {
        self.headers
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

async fn send(router: &Router, request: Request<Body>) -> Answer {
    let response = router
        .clone()
        .oneshot(request)
        .await
        .expect("infallible router");
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .expect("body");
    Answer {
        status,
        headers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

async fn get(router: &Router, path: &str, cookie: Option<&str>) -> Answer {
    let mut request = Request::get(path);
    if let Some(c) = cookie {
        request = request.header(header::COOKIE, c);
    }
    send(router, request.body(Body::empty()).expect("request")).await
}

async fn post(router: &Router, path: &str, form: &str, cookie: Option<&str>) -> Answer {
    let mut request =
        Request::post(path).header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    if let Some(c) = cookie {
        request = request.header(header::COOKIE, c);
    }
    send(
        router,
        request.body(Body::from(form.to_owned())).expect("request"),
    )
    .await
}

/// The form token a page embeds for its reader.
fn csrf_of(page: &str) -> String {
    let marker = "<meta name=\"csrf\" content=\"";
    page.split_once(marker)
        .and_then(|(_, rest)| rest.split_once('"'))
        .map(|(token, _)| token.to_owned())
        .unwrap_or_default()
}

fn actions(grid: &DemoGrid) -> Vec<(u64, JobAction)> {
    grid.state
        .lock()
        .map(|s| s.actions.clone())
        .unwrap_or_default()
}

#[tokio::test]
async fn overview_shows_grids_tiles_and_the_cpu_chart() {
    let (_, router) = setup(None);
    let page = get(&router, "/", None).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.headers[header::CONTENT_TYPE]
        .to_str()
        .unwrap_or("")
        .starts_with("text/html"));
    assert!(page.body.contains("Render farm"));
    assert!(page.body.contains("id=\"usage-chart\""));
    assert!(page
        .body
        .contains("2 / 4</div><div class=\"label\">agents available"));
    assert!(page.headers.contains_key(header::CONTENT_SECURITY_POLICY));
}

#[tokio::test]
async fn agents_page_lists_every_agent_with_its_facts() {
    let (_, router) = setup(None);
    let page = get(&router, "/agents", None).await;
    assert_eq!(page.status, StatusCode::OK);
    for name in ["mac-mini-studio", "linux-rack-3", "old-imac", "laptop-anna"] {
        assert!(page.body.contains(name), "{name} missing");
    }
    assert!(page.body.contains("<tr id=\"agent-2\">"));
    assert!(page.body.contains("data-field=\"mhz\">3400<"));
    assert!(page.body.contains("class=\"spark\""));
    assert!(page.body.contains("badge unavailable"));
}

#[tokio::test]
async fn jobs_page_lists_jobs_and_the_submit_form() {
    let (_, router) = setup(None);
    let page = get(&router, "/jobs", None).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("Protein fold batch"));
    assert!(page.body.contains("Running (suspended)"));
    assert!(page.body.contains("action=\"/jobs\""));
    assert!(page.body.contains("action=\"/jobs/13/resume\""));
    assert!(page
        .body
        .contains("<option value=\"1\">Render farm</option>"));
    assert!(!csrf_of(&page.body).is_empty());
}

#[tokio::test]
async fn job_page_shows_tasks_output_and_files() {
    let (_, router) = setup(None);
    let page = get(&router, "/jobs/12", None).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("frame 1 done in 41.2 s"));
    assert!(page.body.contains("<div id=\"job-parts\">"));
    assert!(page.body.contains("mac-mini-studio"));
    assert!(page
        .body
        .contains("href=\"/jobs/12/files/0/frames/frame-0001.png\""));
    let failed = get(&router, "/jobs/10", None).await;
    assert!(failed.body.contains("cannot open seed file"));
    assert_eq!(
        get(&router, "/jobs/999", None).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        get(&router, "/jobs/notanumber", None).await.status,
        StatusCode::BAD_REQUEST
    );
}

/// An uncompressed Targa file (type 2, 24 bits, rows bottom-up as POV-Ray's default) of a
/// `width`x`height` picture whose pixel at (row, column) is `colour(row, column)` as RGB.
fn targa(width: u16, height: u16, colour: impl Fn(usize, usize) -> [u8; 3]) -> Vec<u8> {
    let mut file = vec![0u8; 18];
    file[2] = 2;
    file[12..14].copy_from_slice(&width.to_le_bytes());
    file[14..16].copy_from_slice(&height.to_le_bytes());
    file[16] = 24;
    for row in (0..usize::from(height)).rev() {
        for column in 0..usize::from(width) {
            let [r, g, b] = colour(row, column);
            file.extend_from_slice(&[b, g, r]);
        }
    }
    file
}

#[tokio::test]
async fn a_render_shows_its_finished_tiles_and_leaves_the_rest_clear() {
    use crate::view::{JobPicture, PictureSize, PictureTile, Rect};
    use xgrid_image::{png, Image};

    let (grid, router) = setup(None);
    let size = PictureSize {
        width: 4,
        height: 3,
    };
    let left = Rect {
        top: 0,
        left: 0,
        bottom: 3,
        right: 2,
    };
    let bottom_right = Rect {
        top: 2,
        left: 2,
        bottom: 3,
        right: 4,
    };
    // Each tile's file is the whole picture, painted everywhere: only its own rectangle
    // may show.
    let left_colour = |row: usize, column: usize| [10 + row as u8, 20 + column as u8, 30];
    let bottom_colour = |row: usize, column: usize| [200, row as u8, column as u8];
    {
        let mut state = grid.state.lock().expect("demo state");
        if let Some(job) = state.jobs.iter_mut().find(|j| j.summary.id == 12) {
            job.picture = Some(size);
        }
        state.pictures.push((
            12,
            JobPicture {
                size,
                tiles: vec![
                    PictureTile {
                        rect: left,
                        targa: targa(4, 3, left_colour),
                    },
                    PictureTile {
                        rect: bottom_right,
                        targa: targa(4, 3, bottom_colour),
                    },
                    // A tile whose file is damaged counts as not finished.
                    PictureTile {
                        rect: Rect {
                            top: 0,
                            left: 2,
                            bottom: 2,
                            right: 4,
                        },
                        targa: b"not a targa file at all".to_vec(),
                    },
                ],
            },
        ));
        let huge = PictureSize {
            width: 100_000,
            height: 100_000,
        };
        state.pictures.push((
            10,
            JobPicture {
                size: huge,
                tiles: Vec::new(),
            },
        ));
    }
    let page = get(&router, "/jobs/12", None).await;
    assert!(
        page.body.contains(
            "<img id=\"job-picture\" src=\"/jobs/12/image.png?done=30\" width=\"4\" height=\"3\""
        ),
        "{}",
        page.body
    );

    let response = router
        .clone()
        .oneshot(
            Request::get("/jobs/12/image.png?done=2")
                .body(Body::empty())
                .expect("request"),
        )
        .await
        .expect("infallible router");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[header::CONTENT_TYPE], "image/png");
    assert_eq!(response.headers()[header::CACHE_CONTROL], "no-store");
    let body = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .expect("body");
    // The picture expected, pixel by pixel: RGBA, unfinished pixels fully transparent.
    let mut expected = Image::blank(4, 3, 4);
    for row in 0..3 {
        for column in 0..4 {
            let colour = if column < 2 {
                Some(left_colour(row, column))
            } else if row == 2 {
                Some(bottom_colour(row, column))
            } else {
                None
            };
            if let Some([r, g, b]) = colour {
                let at = (row * 4 + column) * 4;
                expected.pixels[at..at + 4].copy_from_slice(&[r, g, b, 255]);
            }
        }
    }
    assert_eq!(body.as_ref(), png::encode(&expected).as_slice());

    // Jobs that render no picture in tiles, and jobs that do not exist, have none.
    assert!(!get(&router, "/jobs/11", None)
        .await
        .body
        .contains("job-picture"));
    assert_eq!(
        get(&router, "/jobs/11/image.png", None).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        get(&router, "/jobs/999/image.png", None).await.status,
        StatusCode::NOT_FOUND
    );
    // A picture too large to put together in memory is refused, not attempted.
    let huge = get(&router, "/jobs/10/image.png", None).await;
    assert_eq!(huge.status, StatusCode::CONFLICT);
    assert!(huge.body.contains("too large to show"), "{}", huge.body);
}

#[tokio::test]
async fn output_files_download_as_attachments() {
    let (_, router) = setup(None);
    let file = get(&router, "/jobs/12/files/0/frames/frame-0001.png", None).await;
    assert_eq!(file.status, StatusCode::OK);
    assert_eq!(file.body, String::from_utf8_lossy(b"\x89PNG demo"));
    assert_eq!(
        file.headers[header::CONTENT_DISPOSITION],
        "attachment; filename=\"frame-0001.png\""
    );
    let missing = get(&router, "/jobs/12/files/0/nope.txt", None).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn migrations_page_shows_each_move() {
    let (_, router) = setup(None);
    let page = get(&router, "/migrations", None).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("owner returned"));
    assert!(page.body.contains("laptop-anna"));
    assert!(page.body.contains("1.8 s"));
}

#[tokio::test]
async fn user_strings_are_escaped_everywhere() {
    let (grid, router) = setup(None);
    let evil = "<script>alert(1)</script>";
    if let Ok(mut state) = grid.state.lock() {
        for job in &mut state.jobs {
            job.summary.name = evil.to_owned();
            for task in &mut job.tasks {
                task.stdout = evil.to_owned();
                task.name = "\"><img src=x onerror=alert(2)>".to_owned();
            }
        }
    }
    for path in ["/jobs", "/jobs/12"] {
        let page = get(&router, path, None).await;
        assert!(
            page.body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{path}"
        );
        assert!(
            !page.body.contains("<script>alert"),
            "{path} has a raw script"
        );
        assert!(!page.body.contains("<img src=x"), "{path} has a raw image");
    }
    let refused = get(&router, "/jobs?error=%3Cb%3Eboom%3C%2Fb%3E", None).await;
    assert!(refused.body.contains("&lt;b&gt;boom&lt;/b&gt;"));
    assert!(!refused.body.contains("<b>boom"));
}

#[tokio::test]
async fn static_files_are_served_with_their_types() {
    let (_, router) = setup(None);
    let css = get(&router, "/static/app.css", None).await;
    assert_eq!(css.headers[header::CONTENT_TYPE], "text/css; charset=utf-8");
    assert!(css.body.contains(".badge"));
    let js = get(&router, "/static/app.js", None).await;
    assert_eq!(
        js.headers[header::CONTENT_TYPE],
        "text/javascript; charset=utf-8"
    );
    assert!(js.body.contains("EventSource"));
    assert!(
        !js.body.contains("innerHTML"),
        "data must go in through textContent"
    );
    assert_eq!(
        get(&router, "/nowhere", None).await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn metrics_are_in_the_text_exposition_format() {
    let (_, router) = setup(None);
    let m = get(&router, "/metrics", None).await;
    assert_eq!(m.status, StatusCode::OK);
    assert_eq!(
        m.headers[header::CONTENT_TYPE],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    assert!(m
        .body
        .lines()
        .any(|l| l == "xgrid_jobs{status=\"Running\"} 2"));
    assert!(m
        .body
        .lines()
        .any(|l| l == "xgrid_agents{state=\"Offline\"} 1"));
    assert!(m.body.lines().any(|l| l == "xgrid_tasks_running 6"));
    assert!(m.body.lines().any(|l| l == "xgrid_migrations_total 1"));
}

#[tokio::test]
async fn events_stream_grid_changes() {
    let (grid, router) = setup(None);
    let response = router
        .oneshot(
            Request::get("/events")
                .body(Body::empty())
                .expect("request"),
        )
        .await
        .expect("infallible router");
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "text/event-stream"
    );
    // The subscription exists once the handler answered, so this event reaches it.
    grid.publish(GridEvent::JobRemoved(12));
    let mut stream = response.into_body().into_data_stream();
    let first = tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .expect("an event within five seconds")
        .expect("a frame")
        .expect("no body error");
    let text = String::from_utf8_lossy(&first);
    assert!(text.contains("event: job-removed\n"), "{text}");
    assert!(text.contains("data: {\"id\":12}\n"), "{text}");
}

#[tokio::test]
async fn actions_need_the_form_token_and_a_same_origin_page() {
    let (grid, router) = setup(None);
    let token = csrf_of(&get(&router, "/jobs", None).await.body);

    let forged = post(&router, "/jobs/12/suspend", "csrf=wrong", None).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    let bare = post(&router, "/jobs/12/suspend", "", None).await;
    assert_eq!(bare.status, StatusCode::FORBIDDEN);
    let cross_site = Request::post("/jobs/12/suspend")
        .header(header::ORIGIN, "http://evil.example")
        .header(header::HOST, "127.0.0.1:8080")
        .body(Body::from(format!("csrf={token}")))
        .expect("request");
    assert_eq!(
        send(&router, cross_site).await.status,
        StatusCode::FORBIDDEN
    );
    assert!(
        actions(&grid).is_empty(),
        "no refused action reached the grid"
    );

    let done = post(&router, "/jobs/12/suspend", &format!("csrf={token}"), None).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER);
    assert_eq!(done.location(), "/jobs");
    let back = post(
        &router,
        "/jobs/12/resume",
        &format!("csrf={token}&back=job"),
        None,
    )
    .await;
    assert_eq!(back.location(), "/jobs/12");
    let removed = post(
        &router,
        "/jobs/11/remove",
        &format!("csrf={token}&back=job"),
        None,
    )
    .await;
    assert_eq!(removed.location(), "/jobs");
    assert_eq!(
        actions(&grid),
        vec![
            (12, JobAction::Suspend),
            (12, JobAction::Resume),
            (11, JobAction::Remove)
        ]
    );
    assert_eq!(
        get(&router, "/jobs/11", None).await.status,
        StatusCode::NOT_FOUND
    );

    let unknown = post(&router, "/jobs/12/explode", &format!("csrf={token}"), None).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    let missing = post(&router, "/jobs/999/cancel", &format!("csrf={token}"), None).await;
    assert_eq!(missing.status, StatusCode::SEE_OTHER);
    assert!(
        missing.location().starts_with("/jobs?error=not+found"),
        "{}",
        missing.location()
    );
}

#[tokio::test]
async fn submitting_a_simple_job_creates_it() {
    let (grid, router) = setup(None);
    let token = csrf_of(&get(&router, "/jobs", None).await.body);
    let form =
        format!("csrf={token}&name=&command=%2Fusr%2Fbin%2Fcal&arguments=11%0D%0A2026%0D%0A");
    let done = post(&router, "/jobs", &form, None).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER);
    assert_eq!(done.location(), "/jobs/15");
    let state = grid
        .state
        .lock()
        .map(|s| s.clone())
        .unwrap_or_else(|_| DemoState::default());
    let job = state
        .jobs
        .iter()
        .find(|j| j.summary.id == 15)
        .expect("the new job");
    assert_eq!(job.summary.name, "cal");
    assert_eq!(job.summary.status, JobStatus::Pending);

    let empty = post(&router, "/jobs", &format!("csrf={token}&command=+"), None).await;
    assert_eq!(empty.status, StatusCode::SEE_OTHER);
    assert!(empty.location().starts_with("/jobs?error="));
}

#[test]
fn submitted_arguments_are_one_per_line() {
    let job =
        super::simple_job(b"command=echo&arguments=a+b%0D%0A%0D%0Ac&name=Greet").expect("job");
    assert_eq!(job.arguments, vec!["a b", "c"]);
    assert_eq!(job.name, "Greet");
    assert_eq!(job.grid, None);
    let on_grid = super::simple_job(b"command=echo&grid=1").expect("job");
    assert_eq!(on_grid.grid, Some(1));
    assert!(super::simple_job(b"arguments=x").is_err());
}

#[tokio::test]
async fn with_a_password_the_dashboard_asks_for_it() {
    let (grid, router) = setup(Some("s3cret"));

    // Anonymous: pages go to the login form, streams and actions are refused.
    let page = get(&router, "/jobs", None).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(page.location(), "/login");
    assert_eq!(
        get(&router, "/events", None).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        get(&router, "/metrics", None).await.status,
        StatusCode::UNAUTHORIZED
    );
    let action = post(&router, "/jobs/12/cancel", "csrf=", None).await;
    assert_eq!(action.status, StatusCode::UNAUTHORIZED);
    assert_eq!(get(&router, "/login", None).await.status, StatusCode::OK);
    assert_eq!(
        get(&router, "/static/app.css", None).await.status,
        StatusCode::OK
    );

    // Prometheus may read with the password as a bearer token.
    let scrape = Request::get("/metrics")
        .header(header::AUTHORIZATION, "Bearer s3cret")
        .body(Body::empty())
        .expect("request");
    assert_eq!(send(&router, scrape).await.status, StatusCode::OK);

    let started = std::time::Instant::now();
    let wrong = post(&router, "/login", "password=guess", None).await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(
        started.elapsed() >= super::WRONG_PASSWORD_DELAY,
        "a wrong guess is slowed down"
    );
    assert!(wrong.body.contains("Wrong password"));
    assert!(!wrong.headers.contains_key(header::SET_COOKIE));

    let right = post(&router, "/login", "password=s3cret", None).await;
    assert_eq!(right.status, StatusCode::SEE_OTHER);
    let set_cookie = right.headers[header::SET_COOKIE]
        .to_str()
        .unwrap_or("")
        .to_owned();
    assert!(set_cookie.starts_with("xgrid_session="));
    assert!(set_cookie.contains("HttpOnly"));
    assert!(set_cookie.contains("SameSite=Strict"));
    let cookie = set_cookie.split(';').next().unwrap_or("").to_owned();

    let page = get(&router, "/jobs", Some(&cookie)).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("Log out"));
    let token = csrf_of(&page.body);
    assert!(!token.is_empty());

    // The cookie alone is not enough to act: the page's token must come with it.
    let no_token = post(&router, "/jobs/12/cancel", "", Some(&cookie)).await;
    assert_eq!(no_token.status, StatusCode::FORBIDDEN);
    assert!(actions(&grid).is_empty());
    let done = post(
        &router,
        "/jobs/12/cancel",
        &format!("csrf={token}"),
        Some(&cookie),
    )
    .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER);
    assert_eq!(actions(&grid), vec![(12, JobAction::Cancel)]);

    // Another session's token does not work with this cookie.
    let other = post(&router, "/login", "password=s3cret", None).await;
    let other_cookie = other.headers[header::SET_COOKIE]
        .to_str()
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .to_owned();
    let other_token = csrf_of(&get(&router, "/jobs", Some(&other_cookie)).await.body);
    assert_ne!(other_token, token);
    let crossed = post(
        &router,
        "/jobs/12/cancel",
        &format!("csrf={other_token}"),
        Some(&cookie),
    )
    .await;
    assert_eq!(crossed.status, StatusCode::FORBIDDEN);

    let out = post(&router, "/logout", &format!("csrf={token}"), Some(&cookie)).await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert_eq!(
        get(&router, "/jobs", Some(&cookie)).await.status,
        StatusCode::SEE_OTHER
    );
}

#[tokio::test]
async fn without_a_password_host_names_are_refused() {
    let (_, router) = setup(None);
    let rebound = Request::get("/jobs")
        .header(header::HOST, "attacker.example:8080")
        .body(Body::empty())
        .expect("request");
    assert_eq!(
        send(&router, rebound).await.status,
        StatusCode::MISDIRECTED_REQUEST
    );
    let local = Request::get("/jobs")
        .header(header::HOST, "127.0.0.1:8080")
        .body(Body::empty())
        .expect("request");
    assert_eq!(send(&router, local).await.status, StatusCode::OK);
    let (_, guarded) = setup(Some("pw"));
    let named = Request::get("/login")
        .header(header::HOST, "grid.example:8080")
        .body(Body::empty())
        .expect("request");
    assert_eq!(send(&guarded, named).await.status, StatusCode::OK);
}

#[tokio::test]
async fn without_a_password_there_is_no_login() {
    let (_, router) = setup(None);
    let login = get(&router, "/login", None).await;
    assert_eq!(login.status, StatusCode::SEE_OTHER);
    assert_eq!(login.location(), "/");
    assert!(!get(&router, "/", None).await.body.contains("Log out"));
}

#[tokio::test]
async fn serve_stops_promptly_even_with_a_dashboard_open() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let grid = Arc::new(DemoGrid::new(DemoState::default(), None));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(super::serve(listener, grid.clone(), async {
        let _ = stopped.await;
    }));

    let mut browser = tokio::net::TcpStream::connect(address)
        .await
        .expect("connect");
    browser
        .write_all(b"GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .expect("request");
    let mut head = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), browser.read(&mut head))
        .await
        .expect("headers in time")
        .expect("read");
    let head = String::from_utf8_lossy(head.get(..n).unwrap_or_default()).into_owned();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("text/event-stream"), "{head}");

    let _ = stop.send(());
    let finished = tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("the server stops within five seconds");
    assert!(matches!(finished, Ok(Ok(()))));
}
