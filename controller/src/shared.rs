//! The state every part of a running controller shares: the job store, the settings, the
//! event hub, the live connection of each registered agent, and the trigger that wakes the
//! scheduling loop.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use tokio::sync::Notify;

use crate::agent_service::AgentLink;
use crate::config::Config;
use crate::notify::{GridEvent, Hub};
use crate::store::{AgentId, JobId, Store};

/// Shared by the accept loop, every connection and the scheduling loop.
pub struct Shared {
    pub store: Store,
    pub config: Config,
    pub hub: Hub,
    /// Registered agents with a live channel, by identifier.
    agents: Mutex<HashMap<AgentId, Arc<AgentLink>>>,
    /// Agents that held tasks when the controller last stopped, with the moment their
    /// tasks are given up for lost unless they come back.
    recovering: Mutex<HashMap<AgentId, Instant>>,
    schedule: Notify,
    /// Wakes the balancing loop (an agent's availability changed).
    balance: Notify,
    /// Jobs this process has already marked Running, so each task start costs no write.
    started_jobs: Mutex<HashSet<JobId>>,
    /// Set when the controller shuts down: sessions closing then are no lost agents.
    stopping: AtomicBool,
    /// The tasks each agent last reported frozen for a move (checkpoint identifier →
    /// taskRef), for the next balancing round to settle.
    frozen_reports: Mutex<HashMap<AgentId, BTreeMap<String, String>>>,
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

// A poisoned lock only means another task panicked while holding it; the maps stay usable.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Shared {
    pub fn new(store: Store, config: Config) -> Shared {
        Shared {
            store,
            config,
            hub: Hub::new(),
            agents: Mutex::new(HashMap::new()),
            recovering: Mutex::new(HashMap::new()),
            schedule: Notify::new(),
            balance: Notify::new(),
            started_jobs: Mutex::new(HashSet::new()),
            stopping: AtomicBool::new(false),
            frozen_reports: Mutex::new(HashMap::new()),
        }
    }

    /// Writes one line about what happened to standard error (unless logging is off).
    pub fn log(&self, message: impl fmt::Display) {
        if self.config.log {
            // In one write: standard error is unbuffered, and `eprintln!` makes a system
            // call per piece of the line. A reader gone is no reason to panic.
            use std::io::Write;
            let line = format!("xgridcontrollerd: {message}\n");
            let _ = std::io::stderr().write_all(line.as_bytes());
        }
    }

    /// Logs what happened to `job` (`what` reads after "job N (name)") and adds it to the
    /// job's own log, which `jobLog` returns.
    pub async fn job_event(&self, job: JobId, what: &str) {
        match self.store.append_job_log(job, what).await {
            Ok(()) => self.job_logged(job, what).await,
            Err(e) => self.log(format!("cannot add to the log of job {job}: {e}")),
        }
    }

    /// Tells the controller's log and the job log's watchers of a line that a store write
    /// has already added to the job's log (with the change it tells of, in one transaction).
    pub async fn job_logged(&self, job: JobId, what: &str) {
        // The label costs a store read, wasted when nothing is logged.
        let label = if self.config.log {
            self.job_label(job).await
        } else {
            String::new()
        };
        self.job_logged_as(&label, job, what);
    }

    /// [`Shared::job_logged`] when the caller knows how the log names the job.
    pub fn job_logged_as(&self, label: &str, job: JobId, what: &str) {
        self.log(format_args!("{label} {what}"));
        self.publish(GridEvent::JobLogged {
            job,
            text: what.to_string(),
        });
    }

    /// How the log names a job: "job 12 (render)", or "job 12" when it has no name or
    /// cannot be read.
    pub async fn job_label(&self, job: JobId) -> String {
        let name = self
            .store
            .job_attributes(job)
            .await
            .ok()
            .and_then(|a| a.name);
        crate::wording::job_label(job, name.as_deref())
    }

    /// How the log names an agent: "agent mac-mini (10.0.0.5)" while it is connected, else
    /// its stored name and first address, else its number.
    pub async fn agent_label(&self, agent: AgentId) -> String {
        if let Some(link) = self.agent_link(agent) {
            return link.describe();
        }
        match self.store.agent(agent).await {
            Ok(record) => match record.addresses.first() {
                Some(address) => format!("agent {} ({address})", record.name),
                None => format!("agent {}", record.name),
            },
            Err(_) => format!("agent {agent}"),
        }
    }

    pub fn publish(&self, event: GridEvent) {
        self.hub.publish(event);
    }

    pub fn begin_stopping(&self) {
        self.stopping.store(true, Ordering::Release);
    }

    /// Whether the controller is shutting down.
    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    /// Asks for a scheduling round soon; several requests before it runs make one round.
    pub fn reschedule(&self) {
        self.schedule.notify_one();
    }

    pub(crate) async fn schedule_requested(&self) {
        self.schedule.notified().await;
    }

    /// Asks for a balancing round soon (see [`crate::migration`]).
    pub fn rebalance(&self) {
        self.balance.notify_one();
    }

    /// An agent listed the tasks it holds frozen for a move; a balancing round settles them.
    pub fn note_frozen(&self, agent: AgentId, frozen: BTreeMap<String, String>) {
        if frozen.is_empty() {
            lock(&self.frozen_reports).remove(&agent);
        } else {
            lock(&self.frozen_reports).insert(agent, frozen);
            self.rebalance();
        }
    }

    /// The frozen tasks reported since the last call.
    pub(crate) fn take_frozen(&self) -> HashMap<AgentId, BTreeMap<String, String>> {
        std::mem::take(&mut *lock(&self.frozen_reports))
    }

    pub(crate) async fn balance_requested(&self) {
        self.balance.notified().await;
    }

    /// The live link of a registered agent.
    pub fn agent_link(&self, agent: AgentId) -> Option<Arc<AgentLink>> {
        lock(&self.agents).get(&agent).cloned()
    }

    pub fn connected_agents(&self) -> Vec<AgentId> {
        lock(&self.agents).keys().copied().collect()
    }

    /// Makes `link` the agent's live link; returns the link it replaces, if any.
    pub fn attach_agent(&self, agent: AgentId, link: Arc<AgentLink>) -> Option<Arc<AgentLink>> {
        lock(&self.agents).insert(agent, link)
    }

    /// Forgets the agent's link if it is still `link` (a newer connection may have taken
    /// over); returns whether it was.
    pub fn detach_agent(&self, agent: AgentId, link: &Arc<AgentLink>) -> bool {
        let mut agents = lock(&self.agents);
        match agents.get(&agent) {
            Some(current) if Arc::ptr_eq(current, link) => {
                agents.remove(&agent);
                true
            }
            _ => false,
        }
    }

    /// Whether this is the first task start of `job` seen since it was (re)started.
    pub fn first_start_of(&self, job: JobId) -> bool {
        lock(&self.started_jobs).insert(job)
    }

    /// The job runs again from the beginning (or is gone): its next task start counts as
    /// its first.
    pub fn forget_start_of(&self, job: JobId) {
        lock(&self.started_jobs).remove(&job);
    }

    pub fn expect_recovery(&self, agent: AgentId, deadline: Instant) {
        lock(&self.recovering).insert(agent, deadline);
    }

    /// Whether the agent's tasks date from before the restart and still await its report;
    /// answering clears the mark.
    pub fn take_recovery(&self, agent: AgentId) -> bool {
        lock(&self.recovering).remove(&agent).is_some()
    }

    /// Agents whose grace period ended at `now` without their coming back; they are cleared.
    pub fn overdue_recoveries(&self, now: Instant) -> Vec<AgentId> {
        let connected = lock(&self.agents);
        let mut recovering = lock(&self.recovering);
        let overdue: Vec<AgentId> = recovering
            .iter()
            .filter(|(agent, deadline)| **deadline <= now && !connected.contains_key(agent))
            .map(|(agent, _)| *agent)
            .collect();
        for agent in &overdue {
            recovering.remove(agent);
        }
        overdue
    }
}
