//! What each client channel subscribed to (`shouldSubscribe = YES`, with its predicates),
//! and which notifications a grid event means for such a channel.

use std::collections::{HashMap, HashSet};

use xgrid_protocol::messages::ClientNotification;
use xgrid_protocol::plist::{Date, Value};

use crate::attributes::{
    agent_attributes, grid_attributes, grid_record, job_attributes, job_matches, log_line,
};
use crate::notify::GridEvent;
use crate::predicate::Predicate;
use crate::shared::Shared;
use crate::store::{AgentId, GridId, JobId};

/// What one client channel subscribed to.
#[derive(Debug, Default)]
pub(crate) struct Subscriptions {
    pub(crate) grid_list: Option<Predicate>,
    pub(crate) grid_attributes: HashSet<GridId>,
    pub(crate) grid_job_list: HashMap<GridId, Predicate>,
    pub(crate) grid_agent_list: HashSet<GridId>,
    pub(crate) agent_list: Option<Predicate>,
    pub(crate) agent_attributes: HashSet<AgentId>,
    pub(crate) job_attributes: HashSet<JobId>,
    pub(crate) job_results: HashSet<JobId>,
    pub(crate) job_log: HashSet<JobId>,
}

impl Subscriptions {
    /// Whether the channel subscribed to anything at all.
    pub(crate) fn any(&self) -> bool {
        self.grid_list.is_some()
            || !self.grid_attributes.is_empty()
            || !self.grid_job_list.is_empty()
            || !self.grid_agent_list.is_empty()
            || self.agent_list.is_some()
            || !self.agent_attributes.is_empty()
            || !self.job_attributes.is_empty()
            || !self.job_results.is_empty()
            || !self.job_log.is_empty()
    }
}

/// The notifications `event` means for a channel with `subs`.
pub(crate) async fn notifications(
    shared: &Shared,
    subs: &mut Subscriptions,
    event: GridEvent,
) -> Vec<ClientNotification> {
    use ClientNotification as N;
    let mut out = Vec::new();
    match event {
        GridEvent::GridAdded { grid } => {
            if let Some(filter) = &subs.grid_list {
                if let Ok(Some(record)) = grid_record(shared, grid).await {
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
                if let Ok(Some(record)) = grid_record(shared, grid).await {
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
            subs.job_log.remove(&job);
        }
        GridEvent::JobLogged { job, text } => {
            if subs.job_log.contains(&job) {
                out.push(N::JobLog {
                    job_identifier: job.to_string(),
                    log: Value::Array(vec![log_line(Date::now(), text)]),
                });
            }
        }
        GridEvent::JobChanged { job } | GridEvent::JobStatusChanged { job } => {
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
            grid_power_changed(shared, subs, grid, &mut out).await;
        }
        GridEvent::AgentRemoved { grid, agent } => {
            if subs.grid_agent_list.contains(&grid) {
                out.push(N::GridAgentListDidRemoveAgent {
                    grid_identifier: grid.to_string(),
                    agent_identifier: agent.to_string(),
                });
            }
            grid_power_changed(shared, subs, grid, &mut out).await;
        }
        // Apple's clients have no notification for a moved task.
        GridEvent::MigrationRecorded { .. } => {}
        GridEvent::AgentChanged { agent } => {
            let watched = subs.agent_attributes.contains(&agent);
            if watched || !subs.grid_attributes.is_empty() {
                if let Ok(record) = shared.store.agent(agent).await {
                    if watched {
                        out.push(N::AgentAttributes {
                            agent_identifier: agent.to_string(),
                            attributes: agent_attributes(&record),
                        });
                    }
                    // Coming, going or changing state changes the grid's megahertz.
                    grid_power_changed(shared, subs, record.grid, &mut out).await;
                }
            }
        }
    }
    out
}

/// A `gridAttributes` notification for `grid`, if the channel watches it.
async fn grid_power_changed(
    shared: &Shared,
    subs: &Subscriptions,
    grid: GridId,
    out: &mut Vec<ClientNotification>,
) {
    if !subs.grid_attributes.contains(&grid) {
        return;
    }
    if let Ok(Some(record)) = grid_record(shared, grid).await {
        if let Ok(attributes) = grid_attributes(shared, &record).await {
            out.push(ClientNotification::GridAttributes {
                grid_identifier: grid.to_string(),
                attributes,
            });
        }
    }
}

/// Whether a filter could let anything through: `FALSE` subscribers hear nothing, not even
/// removals (whose attributes are gone and cannot be tested).
pub(crate) fn may_match(filter: &Predicate) -> bool {
    *filter != Predicate::Constant(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_false_filter_hears_no_removals() {
        assert!(!may_match(&Predicate::Constant(false)));
        assert!(may_match(&Predicate::always()));
        let filter = Predicate::parse("name == 'x'").expect("parses");
        assert!(may_match(&filter));
    }

    #[test]
    fn a_fresh_channel_subscribed_to_nothing() {
        let mut subs = Subscriptions::default();
        assert!(!subs.any());
        subs.job_log.insert(3);
        assert!(subs.any());
    }
}
