//! The attribute dictionaries clients see (xgrid-wire.md §4.1, §5.3), built from the store:
//! jobs, agents, grids and job log lines, for replies, notifications and predicates alike.

use std::collections::BTreeMap;

use xgrid_protocol::messages;
use xgrid_protocol::plist::{Date, Dictionary, Value};

use crate::predicate::Predicate;
use crate::shared::Shared;
use crate::store::{self, AgentId, AgentRecord, GridId, JobId, StoreError};

/// The grid with identifier `grid`, if there is one.
pub(crate) async fn grid_record(
    shared: &Shared,
    grid: GridId,
) -> Result<Option<store::Grid>, StoreError> {
    Ok(shared
        .store
        .grids()
        .await?
        .into_iter()
        .find(|g| g.id == grid))
}

/// `gridAttributes`: the grid's megahertz is that of its agents that are not Offline.
pub(crate) async fn grid_attributes(
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

/// `agentAttributes`; `currentTaskCount` counts the tasks the controller placed there.
pub(crate) fn agent_attributes(agent: &AgentRecord) -> messages::AgentAttributes {
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
pub(crate) async fn job_attributes(
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

/// Whether the job's attributes pass `filter` (a job that cannot be read does not).
pub(crate) async fn job_matches(shared: &Shared, filter: &Predicate, job: JobId) -> bool {
    match job_attributes(shared, job).await {
        Ok(attributes) => filter.matches(&attributes.to_dictionary()),
        Err(_) => false,
    }
}

/// One line of a job's log. The entry shape is Apple's secret (§9): `{date, message}`.
pub(crate) fn log_line(time: Date, text: String) -> Value {
    let mut line = Dictionary::new();
    line.insert("date".into(), Value::Date(time));
    line.insert("message".into(), Value::from(text));
    Value::Dictionary(line)
}
