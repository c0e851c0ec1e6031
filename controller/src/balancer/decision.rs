//! The balancer's output: what to do with which task. The controller's migration module
//! carries each decision out over the agents' connections.

use std::fmt;

use super::snapshot::{AgentId, JobId};

/// One thing to do with one task. A plan names each task at most once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Checkpoint the task on `from`, restore it on `to`, then cancel it on `from`.
    Migrate {
        job: JobId,
        task: String,
        from: AgentId,
        to: AgentId,
        reason: MigrationReason,
    },
    /// Restore a checkpoint held by the controller on `to`.
    Restore {
        job: JobId,
        task: String,
        to: AgentId,
        reason: MigrationReason,
    },
    /// Checkpoint the task to the controller and cancel it on `from`, which is leaving and
    /// has no destination to offer yet; a later round restores it.
    Evacuate {
        job: JobId,
        task: String,
        from: AgentId,
    },
    /// `taskControl stop` (Apple's `SuspendWhenNotIdle`): the owner is back and the task
    /// cannot move.
    Suspend {
        job: JobId,
        task: String,
        agent: AgentId,
    },
    /// `taskControl start` for a task the balancer suspended: its agent is free again.
    Resume {
        job: JobId,
        task: String,
        agent: AgentId,
    },
    /// A periodic checkpoint (the task runs on) kept at the controller for recovery.
    Checkpoint {
        job: JobId,
        task: String,
        agent: AgentId,
    },
}

impl Decision {
    /// The (job, task) the decision is about.
    pub fn task(&self) -> (JobId, &str) {
        match self {
            Decision::Migrate { job, task, .. }
            | Decision::Restore { job, task, .. }
            | Decision::Evacuate { job, task, .. }
            | Decision::Suspend { job, task, .. }
            | Decision::Resume { job, task, .. }
            | Decision::Checkpoint { job, task, .. } => (*job, task),
        }
    }

    /// The agent that gets a task from this decision, if any.
    pub fn destination(&self) -> Option<AgentId> {
        match self {
            Decision::Migrate { to, .. } | Decision::Restore { to, .. } => Some(*to),
            _ => None,
        }
    }
}

/// Why a task moved, as the `migrations` table and the job log write it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MigrationReason {
    OwnerReturned,
    ShuttingDown,
    LoadBalancing,
    AgentLost,
}

impl MigrationReason {
    pub const ALL: [MigrationReason; 4] = [
        MigrationReason::OwnerReturned,
        MigrationReason::ShuttingDown,
        MigrationReason::LoadBalancing,
        MigrationReason::AgentLost,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            MigrationReason::OwnerReturned => "owner returned",
            MigrationReason::ShuttingDown => "agent shutting down",
            MigrationReason::LoadBalancing => "load balancing",
            MigrationReason::AgentLost => "agent lost",
        }
    }

    pub fn parse(text: &str) -> Option<MigrationReason> {
        Self::ALL.into_iter().find(|reason| reason.as_str() == text)
    }
}

impl fmt::Display for MigrationReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
