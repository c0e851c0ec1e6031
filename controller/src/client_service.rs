//! The client profile (`…/controller/client`, xgrid-wire.md §4.1): answers every client
//! request from the store, and sends a subscribed channel the notifications it asked for
//! (filtered by its predicates) until the channel closes.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use tokio::sync::{broadcast, mpsc};
use xgrid_protocol::driver::ConnectionHandle;
use xgrid_protocol::envelope::{Envelope, MessageType};
use xgrid_protocol::jobspec::JobSpecification;
use xgrid_protocol::messages::{
    self, AgentGridRequest, ClientNotification, ClientRequest, ControllerEntry,
    ControllerListReply, ControllerReply, ErrorCode, GridAction, GridControlRequest, JobAction,
    JobControlRequest, Subscription, TaskOutputs, TaskStreams, MASTER_ROLE,
};
use xgrid_protocol::plist::{Date, Dictionary, Value};

use crate::dispatch;
use crate::notify::GridEvent;
use crate::predicate::Predicate;
use crate::shared::Shared;
use crate::store::{self, AgentId, AgentRecord, GridId, JobId, StoreError};

/// `controllerList`: this controller alone, as master.
pub fn controller_list(shared: &Shared) -> ControllerListReply {
    ControllerListReply {
        controllers: vec![ControllerEntry {
            hostname: shared.config.hostname.clone(),
            role: MASTER_ROLE.to_string(),
        }],
        controller_role: MASTER_ROLE.to_string(),
    }
}

/// What one client channel subscribed to.
#[derive(Debug, Default)]
struct Subscriptions {
    grid_list: Option<Predicate>,
    grid_attributes: HashSet<GridId>,
    grid_job_list: HashMap<GridId, Predicate>,
    grid_agent_list: HashSet<GridId>,
    agent_list: Option<Predicate>,
    agent_attributes: HashSet<AgentId>,
    job_attributes: HashSet<JobId>,
    job_results: HashSet<JobId>,
}

/// Serves one client channel: requests in the order they came, notifications in between.
pub async fn run_client_channel(
    shared: Arc<Shared>,
    conn: ConnectionHandle,
    channel: u32,
    mut inbox: mpsc::Receiver<Envelope>,
) {
    let mut subscriptions = Subscriptions::default();
    // Joined at the first subscription, so a channel without any keeps no backlog.
    let mut events: Option<broadcast::Receiver<GridEvent>> = None;
    loop {
        tokio::select! {
            envelope = inbox.recv() => {
                let Some(envelope) = envelope else { return };
                if envelope.message_type != MessageType::Request {
                    continue;
                }
                let reply = answer(&shared, &envelope, &mut subscriptions).await;
                if events.is_none() && subscriptions.any() {
                    events = Some(shared.hub.subscribe());
                }
                let reply = reply.to_envelope(&envelope.identifier);
                if conn.send_msg(channel, reply.to_beep_payload()).await.is_err() {
                    return;
                }
            }
            event = next_event(&mut events) => match event {
                Ok(event) => {
                    for notification in notifications(&shared, &mut subscriptions, event).await {
                        let payload = notification.to_envelope().to_beep_payload();
                        if conn.send_msg(channel, payload).await.is_err() {
                            return;
                        }
                    }
                }
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    shared.log(format!("a client fell behind and missed {missed} notification(s)"));
                }
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    }
}

async fn next_event(
    events: &mut Option<broadcast::Receiver<GridEvent>>,
) -> Result<GridEvent, broadcast::error::RecvError> {
    match events {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

impl Subscriptions {
    fn any(&self) -> bool {
        self.grid_list.is_some()
            || !self.grid_attributes.is_empty()
            || !self.grid_job_list.is_empty()
            || !self.grid_agent_list.is_empty()
            || self.agent_list.is_some()
            || !self.agent_attributes.is_empty()
            || !self.job_attributes.is_empty()
            || !self.job_results.is_empty()
    }
}

/// Why a request cannot be answered: the code for the client, and what to log (if anything).
struct Refusal {
    code: ErrorCode,
    log: Option<String>,
}

impl From<ErrorCode> for Refusal {
    fn from(code: ErrorCode) -> Self {
        Refusal { code, log: None }
    }
}

impl From<StoreError> for Refusal {
    fn from(e: StoreError) -> Self {
        let code = match &e {
            StoreError::NoSuchJob(_) | StoreError::NoSuchTask { .. } => {
                ErrorCode::InvalidJobIdentifier
            }
            StoreError::NoSuchGrid(_) => ErrorCode::InvalidGridIdentifier,
            StoreError::NoSuchAgent(_) => ErrorCode::InvalidAgentIdentifier,
            StoreError::EmptyGridName | StoreError::GridNameTaken(_) => ErrorCode::InvalidGridName,
            StoreError::CannotRemoveDefaultGrid(_) | StoreError::GridNotEmpty { .. } => {
                ErrorCode::InvalidControl
            }
            _ => ErrorCode::InvalidRequest,
        };
        Refusal {
            code,
            log: Some(e.to_string()),
        }
    }
}

type Answer = Result<ControllerReply, Refusal>;

async fn answer(
    shared: &Arc<Shared>,
    envelope: &Envelope,
    subs: &mut Subscriptions,
) -> ControllerReply {
    let outcome = match ClientRequest::from_envelope(envelope) {
        Ok(request) => serve(shared, request, subs).await,
        Err(e) => Err(Refusal {
            code: e.reply_code(),
            log: Some(e.to_string()),
        }),
    };
    outcome.unwrap_or_else(|refusal| {
        if let Some(why) = refusal.log {
            shared.log(format!(
                "refused the client request {:?} with {}: {why}",
                envelope.name, refusal.code
            ));
        }
        ControllerReply::Error {
            name: envelope.name.clone(),
            code: refusal.code,
        }
    })
}

async fn serve(shared: &Arc<Shared>, request: ClientRequest, subs: &mut Subscriptions) -> Answer {
    use ClientRequest as R;
    let store = &shared.store;
    match request {
        R::ControllerList(_) => Ok(ControllerReply::ControllerList(controller_list(shared))),
        R::ControllerRole => Ok(ControllerReply::ControllerRole(MASTER_ROLE.to_string())),
        R::GridList(q) => {
            let filter = predicate(&q.subscription)?;
            let mut ids = Vec::new();
            for grid in store.grids().await? {
                if filter.matches(&grid_attributes(shared, &grid).await?.to_dictionary()) {
                    ids.push(grid.id.to_string());
                }
            }
            if q.should_subscribe() {
                subs.grid_list = Some(filter);
            }
            Ok(ControllerReply::GridList(ids))
        }
        R::GridAttributes(q) => {
            let grid = resolve_grid(shared, &q.grid_identifier).await?;
            let record = find_grid(shared, grid).await?;
            if q.should_subscribe() {
                subs.grid_attributes.insert(grid);
            }
            Ok(ControllerReply::GridAttributes(
                grid_attributes(shared, &record).await?,
            ))
        }
        R::GridControl(r) => grid_control(shared, r).await,
        R::GridJobList(q) => {
            let grid = resolve_grid(shared, &q.grid_identifier).await?;
            let filter = predicate(&q.subscription)?;
            let mut ids = Vec::new();
            for job in store.job_ids(grid).await? {
                if filter == Predicate::always() || job_matches(shared, &filter, job).await {
                    ids.push(job.to_string());
                }
            }
            if q.should_subscribe() {
                subs.grid_job_list.insert(grid, filter);
            }
            Ok(ControllerReply::GridJobList(ids))
        }
        R::GridAgentList(q) => {
            let grid = resolve_grid(shared, &q.grid_identifier).await?;
            let ids = store
                .agents()
                .await?
                .iter()
                .filter(|a| a.grid == grid)
                .map(|a| a.id.to_string())
                .collect();
            if q.should_subscribe() {
                subs.grid_agent_list.insert(grid);
            }
            Ok(ControllerReply::GridAgentList(ids))
        }
        R::AgentList(q) => {
            let filter = predicate(&q.subscription)?;
            let ids = store
                .agents()
                .await?
                .iter()
                .filter(|a| filter.matches(&agent_attributes(a).to_dictionary()))
                .map(|a| a.id.to_string())
                .collect();
            if q.should_subscribe() {
                subs.agent_list = Some(filter);
            }
            Ok(ControllerReply::AgentList(ids))
        }
        R::AgentAttributes(q) => {
            let agent = resolve_agent(shared, &q.agent_identifier).await?;
            if q.should_subscribe() {
                subs.agent_attributes.insert(agent.id);
            }
            Ok(ControllerReply::AgentAttributes(agent_attributes(&agent)))
        }
        R::AgentAdd(r) | R::AgentAssign(r) => {
            move_agent(shared, &r, false).await?;
            Ok(ControllerReply::AgentAssign)
        }
        R::AgentRemove(r) => {
            move_agent(shared, &r, true).await?;
            Ok(ControllerReply::AgentRemove)
        }
        R::JobSubmission(s) => {
            let spec = JobSpecification::from_plist(&s.job_specification).map_err(|e| Refusal {
                code: ErrorCode::InvalidJobSpecification,
                log: Some(format!("the job specification is not valid: {e}")),
            })?;
            let grid_text = s
                .grid_identifier
                .clone()
                .or_else(|| spec.grid_identifier.clone())
                .unwrap_or_default();
            let grid = resolve_grid(shared, &grid_text).await?;
            let job = store.submit_job(&spec, grid).await?;
            shared.log(format!(
                "job {job} ({}) submitted to grid {grid} with {} task(s)",
                spec.name.as_deref().unwrap_or("unnamed"),
                spec.tasks.len()
            ));
            shared.publish(GridEvent::JobAdded { grid, job });
            shared.reschedule();
            Ok(ControllerReply::JobSubmission {
                job_identifier: job.to_string(),
            })
        }
        R::JobAttributes(q) => {
            let job = parse_job(&q.job_identifier)?;
            let attributes = job_attributes(shared, job).await?;
            if q.should_subscribe() {
                subs.job_attributes.insert(job);
            }
            Ok(ControllerReply::JobAttributes(attributes))
        }
        R::JobSpecification(q) => {
            let job = parse_job(&q.job_identifier)?;
            let spec = store.job_specification(job).await?;
            Ok(ControllerReply::JobSpecification(spec.to_plist()))
        }
        R::JobResults(q) => {
            let job = parse_job(&q.job_identifier)?;
            Ok(ControllerReply::JobResults(streams(
                store.job_results(job).await?,
            )))
        }
        R::JobLatestResults(q) => {
            let job = parse_job(&q.job_identifier)?;
            let results = streams(store.job_latest_results(job).await?);
            if q.should_subscribe() {
                subs.job_results.insert(job);
            }
            Ok(ControllerReply::JobLatestResults(results))
        }
        R::JobFinalResults(q) => {
            let job = parse_job(&q.job_identifier)?;
            let results = store
                .job_final_results(job)
                .await?
                .into_iter()
                .map(|(task, r)| {
                    let outputs = TaskOutputs {
                        output_files: r.output_files,
                        termination_status: r.termination_status,
                    };
                    (task, outputs)
                })
                .collect();
            Ok(ControllerReply::JobFinalResults(results))
        }
        R::JobLog(q) => {
            let job = parse_job(&q.job_identifier)?;
            // The entry shape is Apple's secret (§9): each line as {date, message}.
            let entries = store
                .job_log(job)
                .await?
                .into_iter()
                .map(|entry| {
                    let mut line = Dictionary::new();
                    line.insert("date".into(), Value::Date(entry.time));
                    line.insert("message".into(), Value::from(entry.text));
                    Value::Dictionary(line)
                })
                .collect();
            Ok(ControllerReply::JobLog(Value::Array(entries)))
        }
        R::JobControl(r) => job_control(shared, r).await,
        R::JobAddTask(_) => Err(Refusal {
            code: ErrorCode::InvalidRequest,
            log: Some("jobAddTask is not supported by this controller".into()),
        }),
        R::Unknown(name) => Err(Refusal {
            code: ErrorCode::InvalidRequest,
            log: Some(format!("{name:?} is not a request this controller knows")),
        }),
    }
}

/// The subscription's filter; none (or an empty one) lets everything through.
fn predicate(subscription: &Option<Subscription>) -> Result<Predicate, Refusal> {
    match subscription.as_ref().and_then(|s| s.predicate.as_deref()) {
        Some(text) if !text.trim().is_empty() => Predicate::parse(text).map_err(|e| Refusal {
            code: ErrorCode::InvalidRequest,
            log: Some(format!("the predicate {text:?} cannot be read: {e}")),
        }),
        _ => Ok(Predicate::always()),
    }
}

fn parse_job(text: &str) -> Result<JobId, Refusal> {
    text.trim()
        .parse()
        .map_err(|_| ErrorCode::InvalidJobIdentifier.into())
}

/// `""` is the default grid.
async fn resolve_grid(shared: &Shared, text: &str) -> Result<GridId, Refusal> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(shared.store.default_grid().await?);
    }
    let grid: GridId = text
        .parse()
        .map_err(|_| Refusal::from(ErrorCode::InvalidGridIdentifier))?;
    find_grid(shared, grid).await.map(|g| g.id)
}

async fn find_grid(shared: &Shared, grid: GridId) -> Result<store::Grid, Refusal> {
    shared
        .store
        .grids()
        .await?
        .into_iter()
        .find(|g| g.id == grid)
        .ok_or_else(|| ErrorCode::InvalidGridIdentifier.into())
}

/// An agent by identifier, or by name for clients that only know names.
async fn resolve_agent(shared: &Shared, text: &str) -> Result<AgentRecord, Refusal> {
    let text = text.trim();
    let agents = shared.store.agents().await?;
    let by_id = text.parse::<AgentId>().ok();
    agents
        .into_iter()
        .find(|a| Some(a.id) == by_id || a.name == text)
        .ok_or_else(|| ErrorCode::InvalidAgentIdentifier.into())
}

async fn grid_attributes(
    shared: &Shared,
    grid: &store::Grid,
) -> Result<messages::GridAttributes, StoreError> {
    let megahertz: u64 = shared
        .store
        .agents()
        .await?
        .iter()
        .filter(|a| a.grid == grid.id && a.state != store::AgentState::Offline)
        .map(|a| u64::from(a.maximum_cpu_power))
        .sum();
    Ok(messages::GridAttributes {
        name: grid.name.clone(),
        is_default: grid.is_default,
        grid_megahertz: megahertz as f64,
    })
}

fn agent_attributes(agent: &AgentRecord) -> messages::AgentAttributes {
    let address = agent
        .addresses
        .first()
        .or_else(|| agent.hostnames.first())
        .cloned()
        .unwrap_or_default();
    messages::AgentAttributes {
        name: agent.name.clone(),
        address,
        maximum_task_count: i64::from(agent.maximum_task_count),
        current_task_count: i64::from(agent.placed_task_count),
        maximum_cpu_power: f64::from(agent.maximum_cpu_power),
        current_cpu_power: f64::from(agent.current_cpu_power),
        agent_state: match agent.state {
            store::AgentState::Offline => messages::AgentState::Offline,
            store::AgentState::Available => messages::AgentState::Available,
            store::AgentState::Unavailable => messages::AgentState::Unavailable,
        },
    }
}

/// The speed one task gets on `agent` (as the scheduler ranks agents).
fn task_megahertz(agent: &AgentRecord) -> f64 {
    let megahertz = agent
        .core_megahertz
        .unwrap_or(agent.maximum_cpu_power / agent.maximum_task_count.max(1));
    f64::from(megahertz)
}

/// `jobAttributes`, with the controller's clock and the power the job's running tasks use.
pub async fn job_attributes(
    shared: &Shared,
    job: JobId,
) -> Result<messages::JobAttributes, StoreError> {
    let stored = shared.store.job_attributes(job).await?;
    let mut active_cpu_power = 0.0;
    if stored.status == store::JobStatus::Running {
        let running: Vec<AgentId> = shared
            .store
            .tasks(job)
            .await?
            .iter()
            .filter(|t| t.state == store::TaskState::Running)
            .filter_map(|t| t.agent)
            .collect();
        if !running.is_empty() {
            let agents: BTreeMap<AgentId, AgentRecord> = shared
                .store
                .agents()
                .await?
                .into_iter()
                .map(|a| (a.id, a))
                .collect();
            active_cpu_power = running
                .iter()
                .filter_map(|id| agents.get(id))
                .map(task_megahertz)
                .sum();
        }
    }
    Ok(messages::JobAttributes {
        name: stored.name.unwrap_or_default(),
        application_identifier: stored.application_identifier,
        job_status: messages::JobStatus::parse(stored.status.as_str())
            .unwrap_or(messages::JobStatus::Pending),
        error: stored.error,
        active_cpu_power,
        date_now: Date::now(),
        date_submitted: Some(stored.date_submitted),
        date_started: stored.date_started,
        date_stopped: stored.date_stopped,
        task_count: i64::try_from(stored.task_count).unwrap_or(i64::MAX),
        undone_task_count: i64::try_from(stored.undone_task_count).unwrap_or(i64::MAX),
        percent_done: stored.percent_done,
        suspended: stored.suspended,
    })
}

async fn job_matches(shared: &Shared, filter: &Predicate, job: JobId) -> bool {
    match job_attributes(shared, job).await {
        Ok(attributes) => filter.matches(&attributes.to_dictionary()),
        Err(_) => false,
    }
}

fn streams(results: BTreeMap<String, store::StreamResults>) -> BTreeMap<String, TaskStreams> {
    results
        .into_iter()
        .map(|(task, r)| {
            let streams = TaskStreams {
                read_data: r.stdout,
                err_data: r.stderr,
            };
            (task, streams)
        })
        .collect()
}

async fn job_control(shared: &Arc<Shared>, request: JobControlRequest) -> Answer {
    let job = parse_job(&request.job_identifier)?;
    let store = &shared.store;
    let attributes = store.job_attributes(job).await?;
    match request.control {
        JobAction::Cancel => {
            if !attributes.status.is_final() {
                let attached = store.cancel_unfinished_tasks(job).await?;
                dispatch::cancel_on_agents(shared, &attached);
                store
                    .set_job_status(job, store::JobStatus::Canceled)
                    .await?;
                shared.log(format!("job {job} canceled by a client"));
                shared.publish(GridEvent::JobChanged { job });
                shared.reschedule();
            }
        }
        JobAction::Remove => {
            let attached = store.delete_job(job).await?;
            dispatch::cancel_on_agents(shared, &attached);
            shared.log(format!("job {job} deleted by a client"));
            shared.publish(GridEvent::JobRemoved {
                grid: attributes.grid,
                job,
            });
            shared.reschedule();
        }
        JobAction::Suspend | JobAction::Resume => {
            let suspend = request.control == JobAction::Suspend;
            store.set_job_suspended(job, suspend).await?;
            let what = if suspend { "suspended" } else { "resumed" };
            shared.log(format!("job {job} {what} by a client"));
            shared.publish(GridEvent::JobChanged { job });
            shared.reschedule();
        }
        JobAction::Restart => {
            let attached = store.restart_job(job).await?;
            dispatch::cancel_on_agents(shared, &attached);
            shared.log(format!("job {job} restarted by a client"));
            shared.publish(GridEvent::JobChanged { job });
            shared.reschedule();
        }
    }
    Ok(ControllerReply::JobControl)
}

async fn grid_control(shared: &Arc<Shared>, request: GridControlRequest) -> Answer {
    let store = &shared.store;
    let name = |primary: &Option<String>, other: &Option<String>| {
        primary
            .clone()
            .or_else(|| other.clone())
            .ok_or(Refusal::from(ErrorCode::InvalidGridName))
    };
    match request.control {
        GridAction::Add => {
            let name = name(&request.grid_name, &request.new_grid_name)?;
            let grid = store.add_grid(&name).await?;
            shared.log(format!("grid {grid} ({name}) added"));
            shared.publish(GridEvent::GridAdded { grid });
        }
        GridAction::Remove => {
            let grid = resolve_grid(shared, &request.grid_identifier).await?;
            store.remove_grid(grid).await?;
            shared.log(format!("grid {grid} removed"));
            shared.publish(GridEvent::GridRemoved { grid });
        }
        GridAction::Rename => {
            let grid = resolve_grid(shared, &request.grid_identifier).await?;
            let new_name = name(&request.new_grid_name, &request.grid_name)?;
            store.rename_grid(grid, &new_name).await?;
            shared.log(format!("grid {grid} renamed {new_name}"));
            shared.publish(GridEvent::GridChanged { grid });
        }
        GridAction::MakeDefault => {
            let grid = resolve_grid(shared, &request.grid_identifier).await?;
            let previous = store.default_grid().await?;
            store.make_default_grid(grid).await?;
            shared.log(format!("grid {grid} is now the default grid"));
            shared.publish(GridEvent::GridChanged { grid: previous });
            shared.publish(GridEvent::GridChanged { grid });
        }
    }
    Ok(ControllerReply::GridControl)
}

/// `agentAdd`/`agentAssign` move the agent to the named grid; `agentRemove` takes it out of
/// that grid, back to the default grid.
async fn move_agent(
    shared: &Arc<Shared>,
    request: &AgentGridRequest,
    remove: bool,
) -> Result<(), Refusal> {
    let agent = resolve_agent(shared, &request.agent_identifier).await?;
    let grid = if remove {
        shared.store.default_grid().await?
    } else {
        resolve_grid(shared, &request.grid_identifier).await?
    };
    if agent.grid != grid {
        shared.store.assign_agent_to_grid(agent.id, grid).await?;
        shared.log(format!(
            "agent {} moved from grid {} to grid {grid}",
            agent.id, agent.grid
        ));
        shared.publish(GridEvent::AgentRemoved {
            grid: agent.grid,
            agent: agent.id,
        });
        shared.publish(GridEvent::AgentAdded {
            grid,
            agent: agent.id,
        });
        shared.reschedule();
    }
    Ok(())
}

/// The notifications `event` means for a channel with `subs`.
async fn notifications(
    shared: &Shared,
    subs: &mut Subscriptions,
    event: GridEvent,
) -> Vec<ClientNotification> {
    use ClientNotification as N;
    let mut out = Vec::new();
    match event {
        GridEvent::GridAdded { grid } => {
            if let Some(filter) = &subs.grid_list {
                if let Ok(record) = find_grid(shared, grid).await {
                    if let Ok(attributes) = grid_attributes(shared, &record).await {
                        if filter.matches(&attributes.to_dictionary()) {
                            out.push(N::GridListDidAddGrid {
                                grid_identifier: grid.to_string(),
                            });
                        }
                    }
                }
            }
        }
        GridEvent::GridRemoved { grid } => {
            if subs.grid_list.as_ref().is_some_and(may_match) {
                out.push(N::GridListDidRemoveGrid {
                    grid_identifier: grid.to_string(),
                });
            }
            subs.grid_attributes.remove(&grid);
        }
        GridEvent::GridChanged { grid } => {
            if subs.grid_attributes.contains(&grid) {
                if let Ok(record) = find_grid(shared, grid).await {
                    if let Ok(attributes) = grid_attributes(shared, &record).await {
                        out.push(N::GridAttributes {
                            grid_identifier: grid.to_string(),
                            attributes,
                        });
                    }
                }
            }
        }
        GridEvent::JobAdded { grid, job } => {
            if let Some(filter) = subs.grid_job_list.get(&grid) {
                if job_matches(shared, filter, job).await {
                    out.push(N::GridJobListDidAddJob {
                        grid_identifier: grid.to_string(),
                        job_identifier: job.to_string(),
                    });
                }
            }
        }
        GridEvent::JobRemoved { grid, job } => {
            if subs.grid_job_list.get(&grid).is_some_and(may_match) {
                out.push(N::GridJobListDidRemoveJob {
                    grid_identifier: grid.to_string(),
                    job_identifier: job.to_string(),
                });
            }
            subs.job_attributes.remove(&job);
            subs.job_results.remove(&job);
        }
        GridEvent::JobChanged { job } => {
            if subs.job_attributes.contains(&job) {
                if let Ok(attributes) = job_attributes(shared, job).await {
                    out.push(N::JobAttributes {
                        job_identifier: job.to_string(),
                        attributes,
                    });
                }
            }
        }
        GridEvent::JobOutput { job } => {
            if subs.job_results.contains(&job) || subs.job_attributes.contains(&job) {
                out.push(N::JobLatestResultsAvailable {
                    job_identifier: job.to_string(),
                });
            }
        }
        GridEvent::AgentAdded { grid, agent } => {
            if let Ok(record) = shared.store.agent(agent).await {
                if let Some(filter) = &subs.agent_list {
                    if filter.matches(&agent_attributes(&record).to_dictionary()) {
                        out.push(N::AgentListDidAddAgent {
                            agent_identifier: agent.to_string(),
                        });
                    }
                }
            }
            if subs.grid_agent_list.contains(&grid) {
                out.push(N::GridAgentListDidAddAgent {
                    grid_identifier: grid.to_string(),
                    agent_identifier: agent.to_string(),
                });
            }
        }
        GridEvent::AgentRemoved { grid, agent } => {
            if subs.grid_agent_list.contains(&grid) {
                out.push(N::GridAgentListDidRemoveAgent {
                    grid_identifier: grid.to_string(),
                    agent_identifier: agent.to_string(),
                });
            }
        }
        GridEvent::AgentChanged { agent } => {
            if subs.agent_attributes.contains(&agent) {
                if let Ok(record) = shared.store.agent(agent).await {
                    out.push(N::AgentAttributes {
                        agent_identifier: agent.to_string(),
                        attributes: agent_attributes(&record),
                    });
                }
            }
        }
    }
    out
}

/// Whether a filter could let anything through: `FALSE` subscribers hear nothing, not even
/// removals (whose attributes are gone and cannot be tested).
fn may_match(filter: &Predicate) -> bool {
    *filter != Predicate::Constant(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_identifiers_must_be_decimal() {
        assert_eq!(parse_job(" 42 ").ok(), Some(42));
        assert_eq!(
            parse_job("x").err().map(|r| r.code),
            Some(ErrorCode::InvalidJobIdentifier)
        );
        assert_eq!(
            parse_job("-1").err().map(|r| r.code),
            Some(ErrorCode::InvalidJobIdentifier)
        );
    }

    #[test]
    fn a_missing_or_blank_predicate_lets_everything_through() {
        let none = predicate(&None).ok();
        assert_eq!(none, Some(Predicate::always()));
        let blank = Some(Subscription {
            should_subscribe: true,
            predicate: Some("  ".into()),
        });
        assert_eq!(predicate(&blank).ok(), Some(Predicate::always()));
        let falsy = Some(Subscription {
            should_subscribe: true,
            predicate: Some("FALSE".into()),
        });
        let filter = predicate(&falsy).ok().expect("FALSE parses");
        assert!(!may_match(&filter));
        let broken = Some(Subscription {
            should_subscribe: true,
            predicate: Some("name ==".into()),
        });
        assert_eq!(
            predicate(&broken).err().map(|r| r.code),
            Some(ErrorCode::InvalidRequest)
        );
    }

    #[test]
    fn store_errors_become_the_matching_client_codes() {
        let code = |e: StoreError| Refusal::from(e).code;
        assert_eq!(
            code(StoreError::NoSuchJob(3)),
            ErrorCode::InvalidJobIdentifier
        );
        assert_eq!(
            code(StoreError::NoSuchGrid(3)),
            ErrorCode::InvalidGridIdentifier
        );
        assert_eq!(
            code(StoreError::NoSuchAgent(3)),
            ErrorCode::InvalidAgentIdentifier
        );
        assert_eq!(
            code(StoreError::GridNameTaken("x".into())),
            ErrorCode::InvalidGridName
        );
        assert_eq!(
            code(StoreError::CannotRemoveDefaultGrid(0)),
            ErrorCode::InvalidControl
        );
    }
}
