//! The dashboard mounted in a running controller: jobs submitted over the protocol and
//! through the dashboard's view show on its pages, names escaped, and its job buttons act
//! like the client's `jobControl`. Pages are fetched with a hand-written HTTP/1.1 GET.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use xgrid_controller::web_view::WebView;
use xgrid_protocol::messages::{JobAction, JobStatus};
use xgrid_web::{GridView, SimpleJob, ViewError};

use common::*;

/// `GET path` on the dashboard; the status code and the body.
async fn get(web: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(web)
        .await
        .expect("connect to the dashboard");
    let request = format!("GET {path} HTTP/1.1\r\nHost: {web}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .expect("send the request");
    let mut response = Vec::new();
    tokio::time::timeout(PATIENCE, stream.read_to_end(&mut response))
        .await
        .expect("the dashboard answers in time")
        .expect("read the response");
    let response = String::from_utf8_lossy(&response).into_owned();
    let (head, body) = response
        .split_once("\r\n\r\n")
        .expect("a response head and body");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .expect("a status code");
    (status, body.to_string())
}

fn web_config(dir: &TempDir) -> xgrid_controller::Config {
    let mut config = test_config(dir);
    config.web = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submitted_jobs_show_on_the_jobs_page_with_names_escaped() {
    let dir = TempDir::new("web-jobs");
    let controller = start(web_config(&dir)).await;
    let web = controller.web_addr().expect("the dashboard runs");
    assert_ne!(web.port(), 0, "the real port is reported");

    let mut client = Peer::client(controller.local_addr()).await;
    let hostile = "<script>alert(1)</script>";
    let reply = client
        .request(
            "jobSubmission",
            dict! {"jobSpecification" => echo_job(hostile, 1)},
        )
        .await;
    let hostile_job = text(&reply, "jobIdentifier");
    let view = WebView::new(Arc::clone(controller.shared()));
    let plain_job = view
        .submit_job(SimpleJob {
            name: "from the view".to_string(),
            command: "/bin/echo".to_string(),
            arguments: vec!["hi".to_string()],
            grid: None,
        })
        .await
        .expect("the view submits");

    let (status, page) = get(web, "/jobs").await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("from the view"), "{page}");
    assert!(
        page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{page}"
    );
    assert!(
        !page.contains(hostile),
        "the name must not reach the page raw"
    );
    // Newest first: the view's job was submitted second.
    let jobs = view.jobs().await.expect("jobs");
    let order: Vec<String> = jobs.iter().map(|j| j.id.to_string()).collect();
    assert_eq!(order, vec![plain_job.to_string(), hostile_job.clone()]);

    let (status, detail) = get(web, &format!("/jobs/{hostile_job}")).await;
    assert_eq!(status, 200, "{detail}");
    assert!(!detail.contains(hostile));
    let (status, _) = get(web, "/jobs/999999").await;
    assert_eq!(status, 404);
    controller.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_views_job_actions_are_the_clients() {
    let dir = TempDir::new("web-control");
    let controller = start(test_config(&dir)).await;
    assert_eq!(controller.web_addr(), None, "no dashboard unless asked");
    let view = WebView::new(Arc::clone(controller.shared()));
    let job = view
        .submit_job(SimpleJob {
            name: "held".to_string(),
            command: "/bin/sleep".to_string(),
            arguments: vec!["1".to_string()],
            grid: None,
        })
        .await
        .expect("submitted");

    view.control_job(job, JobAction::Suspend)
        .await
        .expect("suspended");
    let mut client = Peer::client(controller.local_addr()).await;
    let attributes = client
        .request("jobAttributes", dict! {"jobIdentifier" => job.to_string()})
        .await;
    assert_eq!(
        text(nested(&attributes, "jobAttributes"), "suspended"),
        "YES"
    );
    let detail = view.job(job).await.expect("read").expect("the job");
    assert!(detail.summary.suspended);

    view.control_job(job, JobAction::Cancel)
        .await
        .expect("canceled");
    let detail = view.job(job).await.expect("read").expect("the job");
    assert_eq!(detail.summary.status, JobStatus::Canceled);

    view.control_job(job, JobAction::Remove)
        .await
        .expect("removed");
    assert_eq!(view.job(job).await, Ok(None));
    assert!(matches!(
        view.control_job(job, JobAction::Resume).await,
        Err(ViewError::NotFound(_))
    ));
    assert_eq!(
        view.output_file(job, "0".to_string(), "../../etc/passwd".to_string())
            .await,
        Ok(None)
    );
    assert!(view
        .submit_job(SimpleJob {
            name: "blank".to_string(),
            command: " ".to_string(),
            arguments: Vec::new(),
            grid: None,
        })
        .await
        .is_err());
    controller.shutdown().await;
}
