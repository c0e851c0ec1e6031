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
        let running = shared.store.running_tasks_by_agent(job).await?;
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
                .filter_map(|(id, count)| Some(task_megahertz(agents.get(id)?) * f64::from(*count)))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(addresses: &[&str], hostnames: &[&str], core: Option<u32>) -> AgentRecord {
        AgentRecord {
            id: 4,
            name: "mac".into(),
            cookie: String::new(),
            grid: 0,
            state: store::AgentState::Unavailable,
            hostnames: hostnames.iter().map(|s| s.to_string()).collect(),
            addresses: addresses.iter().map(|s| s.to_string()).collect(),
            maximum_task_count: 4,
            maximum_cpu_power: 8000,
            core_megahertz: core,
            current_cpu_power: 1500,
            reported_task_count: 1,
            placed_task_count: 3,
            custom: None,
            extensions: None,
            last_seen: None,
        }
    }

    #[test]
    fn agent_attributes_name_an_address_and_the_placed_tasks() {
        let attributes = agent_attributes(&agent(&["10.0.0.2"], &["mac.local"], None));
        assert_eq!(attributes.address, "10.0.0.2");
        assert_eq!(attributes.current_task_count, 3);
        assert_eq!(attributes.maximum_cpu_power, 8000.0);
        assert_eq!(attributes.agent_state, messages::AgentState::Unavailable);
        let by_name = agent_attributes(&agent(&[], &["mac.local"], None));
        assert_eq!(by_name.address, "mac.local");
        assert_eq!(agent_attributes(&agent(&[], &[], None)).address, "");
    }

    #[test]
    fn a_task_gets_a_core_or_a_share_of_the_agent() {
        assert_eq!(task_megahertz(&agent(&[], &[], None)), 2000.0);
        assert_eq!(task_megahertz(&agent(&[], &[], Some(2600))), 2600.0);
    }

    #[test]
    fn a_log_line_is_a_dated_message() {
        let line = log_line(Date(10.0), "finished".into());
        let line = line.as_dictionary().expect("a dictionary");
        assert_eq!(line.get("date"), Some(&Value::Date(Date(10.0))));
        assert_eq!(line.get("message"), Some(&Value::from("finished")));
    }
}
