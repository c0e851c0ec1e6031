//! The client profile (`…/controller/client`, xgrid-wire.md §4.1): answers every client
//! request from the store, and sends a subscribed channel the notifications it asked for
//! (see [`crate::subscriptions`]) until the channel closes.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{broadcast, mpsc};
use xgrid_protocol::driver::ConnectionHandle;
use xgrid_protocol::envelope::{Envelope, MessageType};
use xgrid_protocol::jobspec::JobSpecification;
use xgrid_protocol::messages::{
    AgentGridRequest, ClientRequest, ControllerEntry, ControllerListReply, ControllerReply,
    ErrorCode, GridAction, GridControlRequest, JobAction, JobAddTask, JobControlRequest,
    Subscription, TaskOutputs, TaskStreams, MASTER_ROLE,
};
use xgrid_protocol::plist::{Dictionary, Value};

use crate::attributes::{
    agent_attributes, grid_attributes, grid_record, job_attributes, job_matches, log_line,
};
use crate::dispatch;
use crate::notify::GridEvent;
use crate::predicate::Predicate;
use crate::shared::Shared;
use crate::store::{self, AgentId, AgentRecord, GridId, JobId, StoreError};
use crate::subscriptions::{notifications, Subscriptions};
use crate::throttle::{self, Throttle};

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
    let mut job_changes = Throttle::new(shared.config.job_change_spacing);
    loop {
        let events_now: Vec<GridEvent> = tokio::select! {
            envelope = inbox.recv() => {
                let Some(envelope) = envelope else { return };
                if envelope.message_type != MessageType::Request {
                    continue;
                }
                let reply = answer(&shared, &envelope, &mut subscriptions).await;
                if events.is_none() && subscriptions.any() {
                    events = Some(shared.hub.subscribe());
                }
                let mut reply = reply.to_envelope(&envelope.identifier);
                // A reply always carries its request's name, whatever served it.
                reply.name = envelope.name;
                if conn.send_msg(channel, reply.to_beep_payload()).await.is_err() {
                    return;
                }
                continue;
            }
            () = throttle::until(job_changes.next_due()) => {
                let due = job_changes.take_due(Instant::now());
                due.into_iter().map(|job| GridEvent::JobChanged { job }).collect()
            }
            event = next_event(&mut events) => match event {
                Ok(event) => {
                    if !job_changes.admit(&event, Instant::now()) {
                        continue;
                    }
                    vec![event]
                }
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    shared.log(format!("a client fell behind and missed {missed} notification(s)"));
                    continue;
                }
                Err(broadcast::error::RecvError::Closed) => return,
            }
        };
        for event in events_now {
            for notification in notifications(&shared, &mut subscriptions, event).await {
                let payload = notification.to_envelope().to_beep_payload();
                if conn.send_msg(channel, payload).await.is_err() {
                    return;
                }
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

/// Why a request cannot be answered: the code for the client, and what to log (if anything).
#[derive(Debug)]
pub(crate) struct Refusal {
    pub(crate) code: ErrorCode,
    pub(crate) log: Option<String>,
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
            StoreError::TaskNameTaken { .. } => ErrorCode::InvalidTaskSpecification,
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
        R::AgentAdd(r) => {
            move_agent(shared, &r, false).await?;
            Ok(ControllerReply::AgentAdd)
        }
        R::AgentAssign(r) => {
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
            let job = submit_job(shared, &spec, s.grid_identifier.as_deref()).await?;
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
            let entries = store
                .job_log(job)
                .await?
                .into_iter()
                .map(|entry| log_line(entry.time, entry.text))
                .collect();
            if q.should_subscribe() {
                subs.job_log.insert(job);
            }
            Ok(ControllerReply::JobLog(Value::Array(entries)))
        }
        R::JobControl(r) => job_control(shared, r).await,
        R::JobAddTask(r) => add_tasks(shared, r).await,
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
    grid_record(shared, grid)
        .await?
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

/// `jobSubmission` once the specification is read: stores the job in the grid the request
/// (else the specification, else the default) names and wakes the scheduler. The dashboard
/// submits through here too.
pub(crate) async fn submit_job(
    shared: &Arc<Shared>,
    spec: &JobSpecification,
    grid: Option<&str>,
) -> Result<JobId, Refusal> {
    let grid_text = grid.or(spec.grid_identifier.as_deref()).unwrap_or_default();
    let grid = resolve_grid(shared, grid_text).await?;
    let what = format!(
        "submitted to grid {grid}: {}",
        crate::wording::count(spec.tasks.len() as u64, "task")
    );
    // The job and the first line of its log in one write: a second write would hold up the
    // scheduling round's, which places the job's tasks.
    let job = shared
        .store
        .submit_logged_job(spec, grid, Some(&what))
        .await?;
    shared.publish(GridEvent::JobAdded { grid, job });
    shared.reschedule();
    let label = crate::wording::job_label(job, spec.name.as_deref());
    shared.job_logged_as(&label, job, &what);
    Ok(job)
}

async fn job_control(shared: &Arc<Shared>, request: JobControlRequest) -> Answer {
    let job = parse_job(&request.job_identifier)?;
    control_job(shared, job, request.control).await?;
    Ok(ControllerReply::JobControl)
}

/// `jobControl` on a known job identifier; the dashboard's job buttons come through here too.
pub(crate) async fn control_job(
    shared: &Arc<Shared>,
    job: JobId,
    action: JobAction,
) -> Result<(), Refusal> {
    let store = &shared.store;
    let attributes = store.job_attributes(job).await?;
    match action {
        JobAction::Cancel => {
            if !attributes.status.is_final() {
                let attached = store.cancel_unfinished_tasks(job).await?;
                dispatch::cancel_on_agents(shared, &attached);
                store
                    .set_job_status(job, store::JobStatus::Canceled)
                    .await?;
                shared.job_event(job, "canceled by a client").await;
                shared.publish(GridEvent::JobStatusChanged { job });
                shared.reschedule();
            }
        }
        JobAction::Remove => {
            let attached = store.delete_job(job).await?;
            shared.forget_start_of(job);
            dispatch::cancel_on_agents(shared, &attached);
            shared.log(format!("job {job} deleted by a client"));
            shared.publish(GridEvent::JobRemoved {
                grid: attributes.grid,
                job,
            });
            shared.reschedule();
        }
        JobAction::Suspend | JobAction::Resume => {
            let suspend = action == JobAction::Suspend;
            store.set_job_suspended(job, suspend).await?;
            let what = if suspend { "suspended" } else { "resumed" };
            shared.job_event(job, &format!("{what} by a client")).await;
            shared.publish(GridEvent::JobStatusChanged { job });
            shared.reschedule();
        }
        JobAction::Restart => {
            let attached = store.restart_job(job).await?;
            shared.forget_start_of(job);
            dispatch::cancel_on_agents(shared, &attached);
            shared.job_event(job, "restarted by a client").await;
            shared.publish(GridEvent::JobStatusChanged { job });
            shared.reschedule();
        }
    }
    Ok(())
}

/// `jobAddTask`: the new tasks are validated together with the job's own (so their input
/// files and dependencies must make sense within the job), then stored. The job's task
/// prototypes were expanded at submission and are not kept, so new tasks cannot use them.
async fn add_tasks(shared: &Arc<Shared>, request: JobAddTask) -> Answer {
    let job = parse_job(&request.job_identifier)?;
    let store = &shared.store;
    let invalid = |why: String| Refusal {
        code: ErrorCode::InvalidTaskSpecification,
        log: Some(why),
    };
    if store.job_attributes(job).await?.status.is_final() {
        return Err(invalid(format!(
            "job {job} is over; no tasks can be added to it"
        )));
    }
    let mut plist = store.job_specification(job).await?.to_plist();
    let mut tasks = match plist.remove("taskSpecifications") {
        Some(Value::Dictionary(tasks)) => tasks,
        _ => Dictionary::new(),
    };
    for (name, task) in &request.task_specifications {
        if tasks.insert(name.clone(), task.clone()).is_some() {
            return Err(invalid(format!("job {job} already has a task {name:?}")));
        }
    }
    plist.insert("taskSpecifications".into(), Value::Dictionary(tasks));
    let merged = JobSpecification::from_plist(&plist)
        .map_err(|e| invalid(format!("the added tasks are not valid: {e}")))?;
    let new: BTreeMap<_, _> = merged
        .tasks
        .into_iter()
        .filter(|(name, _)| request.task_specifications.contains_key(name))
        .collect();
    store.add_tasks(job, &new).await?;
    shared
        .job_event(job, &format!("had {} task(s) added", new.len()))
        .await;
    shared.publish(GridEvent::JobChanged { job });
    shared.reschedule();
    Ok(ControllerReply::JobAddTask)
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
        let filter = predicate(&falsy).expect("FALSE parses");
        assert_eq!(filter, Predicate::Constant(false));
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
