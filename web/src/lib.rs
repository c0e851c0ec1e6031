//! The controller's web dashboard: server-rendered pages over a read-only `GridView` of the
//! grid, live updates over server-sent events, a few job actions behind the client
//! password, and Prometheus metrics. The controller implements `GridView` and mounts
//! `router` on its `--web` address; this crate knows nothing of its database.
//!
//! Mounting: `serve(listener, view, shutdown)` runs the dashboard until `shutdown` and ends
//! open event streams then; `router(view)` gives the bare `axum::Router` to nest elsewhere.
//! Without a client password the dashboard answers only to an IP address or `localhost`
//! (DNS rebinding); with one, it asks for it and keeps a session cookie. `demo::DemoGrid`
//! is an in-memory grid for previews (`cargo run -p xgrid-web --example dashboard`).

mod auth;
pub mod demo;
mod html;
mod json;
mod metrics;
mod pages;
mod picture;
mod routes;
pub mod view;

pub use routes::{router, serve};
pub use view::{
    AgentView, GridEvent, GridSummary, GridView, JobDetail, JobPicture, JobSummary,
    LatencyHistogram, MetricsView, MigrationView, OutputFileView, PictureSize, PictureTile,
    SimpleJob, TaskCounts, TaskView, UsageSample, ViewError, ViewFuture,
};
