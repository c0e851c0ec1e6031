//! The router: which URL does what, the login gate in front of it, and the translation of
//! `GridView` answers into HTTP responses.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Extension, Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::watch;

use crate::auth::{self, Access, Sessions};
use crate::pages::{self, Chrome, Tab};
use crate::view::{GridView, JobAction, JobId, SimpleJob, ViewError};
use crate::{json, metrics, picture};

const CSS: &str = include_str!("../static/app.css");
const JS: &str = include_str!("../static/app.js");

/// After a wrong password the next attempt waits this long: logins are taken one at a
/// time, so guessing runs at about one password a second whatever the number of connections.
const WRONG_PASSWORD_DELAY: Duration = Duration::from_secs(1);

#[derive(Clone)]
struct App {
    view: Arc<dyn GridView>,
    sessions: Arc<Sessions>,
    login_turn: Arc<tokio::sync::Mutex<()>>,
    /// Turns true when the server shuts down, ending the event streams (which would
    /// otherwise keep a graceful shutdown waiting for ever). A router that is never told to
    /// stop has its sender dropped: the streams then run on.
    stopping: watch::Receiver<bool>,
}

/// The dashboard, ready to be served or nested by the controller.
pub fn router(view: Arc<dyn GridView>) -> Router {
    let (_, stopping) = watch::channel(false);
    build(view, stopping)
}

/// Serve the dashboard on `listener` until `shutdown` completes; open event streams are
/// ended then, so the server finishes promptly.
pub async fn serve(
    listener: tokio::net::TcpListener,
    view: Arc<dyn GridView>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (stop, stopping) = watch::channel(false);
    axum::serve(listener, build(view, stopping))
        .with_graceful_shutdown(async move {
            shutdown.await;
            stop.send_replace(true);
        })
        .await
}

fn build(view: Arc<dyn GridView>, stopping: watch::Receiver<bool>) -> Router {
    let app = App {
        view,
        sessions: Arc::new(Sessions::new()),
        login_turn: Arc::new(tokio::sync::Mutex::new(())),
        stopping,
    };
    Router::new()
        .route("/", get(overview))
        .route("/agents", get(agents))
        .route("/jobs", get(jobs).post(submit))
        .route("/jobs/{id}", get(job))
        .route("/jobs/{id}/image.png", get(job_image))
        .route("/jobs/{id}/{action}", post(control))
        .route("/jobs/{id}/files/{task}/{*path}", get(output_file))
        .route("/migrations", get(migrations))
        .route("/events", get(events))
        .route("/metrics", get(metrics_text))
        .route("/logout", post(logout))
        .route_layer(middleware::from_fn_with_state(app.clone(), gate))
        .route("/login", get(login_form).post(login))
        .route(
            "/static/app.css",
            get(|| async { asset(CSS, "text/css; charset=utf-8") }),
        )
        .route(
            "/static/app.js",
            get(|| async { asset(JS, "text/javascript; charset=utf-8") }),
        )
        .fallback(not_found)
        .layer(middleware::from_fn(security_headers))
        .with_state(app)
}

/// Lets a request through when it may read the grid (recording its form token), sends a
/// browser to the login form otherwise.
async fn gate(State(app): State<App>, mut request: Request, next: Next) -> Response {
    let password = app.view.client_password();
    if password.is_none() && !auth::host_is_literal(request.headers()) {
        return (
            StatusCode::MISDIRECTED_REQUEST,
            "refused: without a client password the dashboard answers only to an IP address \
             or localhost (set a password to reach it by a host name)\n",
        )
            .into_response();
    }
    match app.sessions.check(request.headers(), password.as_deref()) {
        Some(access) => {
            request.extensions_mut().insert(access);
            next.run(request).await
        }
        None => {
            let path = request.uri().path();
            if request.method() == Method::GET && path != "/events" && path != "/metrics" {
                Redirect::to("/login").into_response()
            } else {
                (
                    StatusCode::UNAUTHORIZED,
                    "log in first: this grid has a client password\n",
                )
                    .into_response()
            }
        }
    }
}

/// Headers that keep the pages from being framed, sniffed or given inline scripts.
async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
             img-src 'self' data:; frame-ancestors 'none'; form-action 'self'",
        ),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    response
}

fn asset(text: &'static str, content_type: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        text,
    )
        .into_response()
}

fn chrome(access: &Access) -> Chrome<'_> {
    Chrome {
        csrf: &access.csrf,
        logged_in: access.session.is_some(),
    }
}

fn page(status: StatusCode, title: &str, tab: Tab, access: &Access, body: &str) -> Response {
    let html = pages::layout(title, tab, &chrome(access), body);
    (status, Html(html)).into_response()
}

/// A failed `GridView` call as a page with the matching status.
fn failure(access: &Access, error: &ViewError) -> Response {
    let (status, title) = match error {
        ViewError::NotFound(_) => (StatusCode::NOT_FOUND, "Not found"),
        ViewError::Refused(_) => (StatusCode::CONFLICT, "Refused"),
        ViewError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "Unavailable"),
    };
    page(
        status,
        title,
        Tab::None,
        access,
        &pages::problem(title, &error.to_string()),
    )
}

async fn not_found(uri: Uri) -> Response {
    let body = pages::problem("Not found", &format!("Nothing lives at {}.", uri.path()));
    (
        StatusCode::NOT_FOUND,
        Html(pages::layout(
            "Not found",
            Tab::None,
            &Chrome {
                csrf: "",
                logged_in: false,
            },
            &body,
        )),
    )
        .into_response()
}

/// One field of a query string or form body.
fn field(encoded: &[u8], name: &str) -> Option<String> {
    form_urlencoded::parse(encoded)
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

fn error_notice(uri: &Uri) -> Option<String> {
    uri.query().and_then(|q| field(q.as_bytes(), "error"))
}

async fn overview(State(app): State<App>, Extension(access): Extension<Access>) -> Response {
    let view = &app.view;
    let answers = (
        view.grids().await,
        view.agents().await,
        view.jobs().await,
        view.usage().await,
    );
    match answers {
        (Ok(grids), Ok(agents), Ok(jobs), Ok(usage)) => {
            let body = pages::overview(&grids, &agents, &jobs, &usage);
            page(StatusCode::OK, "Overview", Tab::Overview, &access, &body)
        }
        (Err(e), ..) | (_, Err(e), ..) | (_, _, Err(e), _) | (.., Err(e)) => failure(&access, &e),
    }
}

async fn agents(State(app): State<App>, Extension(access): Extension<Access>) -> Response {
    match app.view.agents().await {
        Ok(list) => page(
            StatusCode::OK,
            "Agents",
            Tab::Agents,
            &access,
            &pages::agents(&list),
        ),
        Err(e) => failure(&access, &e),
    }
}

async fn jobs(State(app): State<App>, Extension(access): Extension<Access>, uri: Uri) -> Response {
    match (app.view.jobs().await, app.view.grids().await) {
        (Ok(list), Ok(grids)) => {
            let mut body = String::new();
            pages::notice(&mut body, error_notice(&uri).as_deref());
            body.push_str(&pages::jobs(&list, &grids, &access.csrf));
            page(StatusCode::OK, "Jobs", Tab::Jobs, &access, &body)
        }
        (Err(e), _) | (_, Err(e)) => failure(&access, &e),
    }
}

async fn job(
    State(app): State<App>,
    Extension(access): Extension<Access>,
    Path(id): Path<JobId>,
    uri: Uri,
) -> Response {
    match app.view.job(id).await {
        Ok(Some(detail)) => {
            let mut body = String::new();
            pages::notice(&mut body, error_notice(&uri).as_deref());
            body.push_str(&pages::job(&detail, &access.csrf));
            page(
                StatusCode::OK,
                &detail.summary.name,
                Tab::Jobs,
                &access,
                &body,
            )
        }
        Ok(None) => failure(
            &access,
            &ViewError::NotFound(format!("there is no job {id}")),
        ),
        Err(e) => failure(&access, &e),
    }
}

async fn migrations(State(app): State<App>, Extension(access): Extension<Access>) -> Response {
    match app.view.migrations().await {
        Ok(list) => page(
            StatusCode::OK,
            "Migrations",
            Tab::Migrations,
            &access,
            &pages::migrations(&list),
        ),
        Err(e) => failure(&access, &e),
    }
}

/// Back to `to` with the reason shown above the page.
fn back_with_error(to: &str, error: &str) -> Response {
    let query: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("error", error)
        .finish();
    Redirect::to(&format!("{to}?{query}")).into_response()
}

fn forbidden() -> Response {
    (
        StatusCode::FORBIDDEN,
        "refused: the form did not come from this dashboard (reload the page and try again)\n",
    )
        .into_response()
}

async fn control(
    State(app): State<App>,
    Extension(access): Extension<Access>,
    Path((id, action)): Path<(JobId, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !access.may_act(&headers, &field(&body, "csrf").unwrap_or_default()) {
        return forbidden();
    }
    let Some(action) = JobAction::parse(&action) else {
        return (StatusCode::NOT_FOUND, format!("no job action {action:?}\n")).into_response();
    };
    let back = if field(&body, "back").as_deref() == Some("job") && action != JobAction::Remove {
        format!("/jobs/{id}")
    } else {
        "/jobs".to_owned()
    };
    match app.view.control_job(id, action).await {
        Ok(()) => Redirect::to(&back).into_response(),
        Err(e) => back_with_error(&back, &e.to_string()),
    }
}

/// The job a submission form describes; arguments are one per line.
fn simple_job(body: &[u8]) -> Result<SimpleJob, String> {
    let command = field(body, "command").unwrap_or_default().trim().to_owned();
    if command.is_empty() {
        return Err("a job needs a command".to_owned());
    }
    let arguments = field(body, "arguments")
        .unwrap_or_default()
        .lines()
        .map(|line| line.trim_end_matches('\r').to_owned())
        .filter(|line| !line.is_empty())
        .collect();
    let name = field(body, "name").unwrap_or_default().trim().to_owned();
    let name = if name.is_empty() {
        command.rsplit('/').next().unwrap_or(&command).to_owned()
    } else {
        name
    };
    Ok(SimpleJob {
        name,
        command,
        arguments,
        grid: field(body, "grid").and_then(|g| g.trim().parse().ok()),
    })
}

async fn submit(
    State(app): State<App>,
    Extension(access): Extension<Access>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !access.may_act(&headers, &field(&body, "csrf").unwrap_or_default()) {
        return forbidden();
    }
    let job = match simple_job(&body) {
        Ok(job) => job,
        Err(e) => return back_with_error("/jobs", &e),
    };
    match app.view.submit_job(job).await {
        Ok(id) => Redirect::to(&format!("/jobs/{id}")).into_response(),
        Err(e) => back_with_error("/jobs", &e.to_string()),
    }
}

/// A file name safe inside a quoted `Content-Disposition` parameter.
fn download_name(path: &str) -> String {
    let last = path.rsplit('/').next().unwrap_or(path);
    let name: String = last
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if name.is_empty() {
        "output".to_owned()
    } else {
        name
    }
}

async fn output_file(
    State(app): State<App>,
    Extension(access): Extension<Access>,
    Path((id, task, path)): Path<(JobId, String, String)>,
) -> Response {
    match app.view.output_file(id, task.clone(), path.clone()).await {
        Ok(Some(bytes)) => (
            [
                (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
                (
                    header::CONTENT_DISPOSITION,
                    format!("attachment; filename=\"{}\"", download_name(&path)),
                ),
            ],
            bytes,
        )
            .into_response(),
        Ok(None) => failure(
            &access,
            &ViewError::NotFound(format!("task {task} of job {id} has no file {path}")),
        ),
        Err(e) => failure(&access, &e),
    }
}

/// The picture of a job rendered tile by tile, finished tiles only; never cached, since it
/// changes as tiles finish.
async fn job_image(
    State(app): State<App>,
    Extension(access): Extension<Access>,
    Path(id): Path<JobId>,
) -> Response {
    match app.view.job_picture(id).await {
        // Off the async threads: a big picture takes a while to encode, and the controller
        // serves its agents from one thread.
        Ok(Some(found)) => match tokio::task::spawn_blocking(move || picture::render(&found))
            .await
            .unwrap_or_else(|e| Err(format!("the picture could not be put together: {e}")))
        {
            Ok(png) => (
                [
                    (header::CONTENT_TYPE, "image/png"),
                    (header::CACHE_CONTROL, "no-store"),
                ],
                png,
            )
                .into_response(),
            Err(why) => failure(&access, &ViewError::Refused(why)),
        },
        Ok(None) => failure(
            &access,
            &ViewError::NotFound(format!("job {id} renders no picture in tiles")),
        ),
        Err(e) => failure(&access, &e),
    }
}

async fn events(State(app): State<App>) -> Response {
    let state = (app.view.events(), app.stopping.clone());
    let stream = futures_util::stream::unfold(state, |(mut receiver, mut stopping)| async move {
        let next = tokio::select! {
            next = receiver.recv() => next,
            // An error means no one can ever stop this router: the branch is then disabled.
            Ok(_) = stopping.wait_for(|stop| *stop) => return None,
        };
        let sse = match next {
            Ok(event) => {
                let (name, data) = json::event(&event);
                Event::default().event(name).data(data)
            }
            // The page missed changes: it reloads rather than show stale rows.
            Err(RecvError::Lagged(_)) => Event::default().event("lagged").data("{}"),
            Err(RecvError::Closed) => return None,
        };
        Some((Ok::<_, Infallible>(sse), (receiver, stopping)))
    });
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

async fn metrics_text(State(app): State<App>) -> Response {
    match app.view.metrics().await {
        Ok(m) => (
            [(header::CONTENT_TYPE, metrics::CONTENT_TYPE)],
            metrics::render(&m),
        )
            .into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")).into_response(),
    }
}

fn login_page(status: StatusCode, wrong: bool) -> Response {
    let chrome = Chrome {
        csrf: "",
        logged_in: false,
    };
    let html = pages::layout("Log in", Tab::None, &chrome, &pages::login(wrong));
    (status, Html(html)).into_response()
}

async fn login_form(State(app): State<App>) -> Response {
    if app.view.client_password().is_none() {
        return Redirect::to("/").into_response();
    }
    login_page(StatusCode::OK, false)
}

async fn login(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(password) = app.view.client_password() else {
        return Redirect::to("/").into_response();
    };
    if !auth::same_origin(&headers) {
        return forbidden();
    }
    let given = field(&body, "password").unwrap_or_default();
    let _turn = app.login_turn.lock().await;
    if !auth::same_secret(given.as_bytes(), password.as_bytes()) {
        tokio::time::sleep(WRONG_PASSWORD_DELAY).await;
        return login_page(StatusCode::UNAUTHORIZED, true);
    }
    match app.sessions.open() {
        Ok(id) => (
            [(header::SET_COOKIE, auth::session_cookie(&id))],
            Redirect::to("/"),
        )
            .into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")).into_response(),
    }
}

async fn logout(
    State(app): State<App>,
    Extension(access): Extension<Access>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !access.may_act(&headers, &field(&body, "csrf").unwrap_or_default()) {
        return forbidden();
    }
    if let Some(id) = &access.session {
        app.sessions.close(id);
    }
    (
        [(header::SET_COOKIE, auth::expired_cookie())],
        Redirect::to("/login"),
    )
        .into_response()
}

#[cfg(test)]
mod tests;
