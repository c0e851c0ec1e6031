//! The controller's event hub: services announce what changed on the grid (a job added, a
//! job's attributes changed, an agent came or went…), and every client channel with
//! subscriptions turns the events it cares about into notifications.

use tokio::sync::broadcast;

use crate::store::{AgentId, GridId, JobId};

/// How many events a slow subscriber may fall behind before it misses some; a client that
/// misses events only misses notifications, never replies.
const BACKLOG: usize = 4096;

/// Something that changed on the grid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GridEvent {
    GridAdded {
        grid: GridId,
    },
    GridRemoved {
        grid: GridId,
    },
    /// Name, default flag or megahertz of the grid changed.
    GridChanged {
        grid: GridId,
    },
    JobAdded {
        grid: GridId,
        job: JobId,
    },
    JobRemoved {
        grid: GridId,
        job: JobId,
    },
    /// The job's task counts or progress changed. Watchers may hear of a burst of these
    /// as one ([`crate::throttle`]).
    JobChanged {
        job: JobId,
    },
    /// The job's status or suspension changed (or it was restarted): told at once.
    JobStatusChanged {
        job: JobId,
    },
    /// New streamed output of the job's tasks was stored.
    JobOutput {
        job: JobId,
    },
    /// A line was added to the job's log.
    JobLogged {
        job: JobId,
        text: String,
    },
    /// An agent registered for the first time.
    AgentAdded {
        grid: GridId,
        agent: AgentId,
    },
    /// An agent left a grid (moved to another one).
    AgentRemoved {
        grid: GridId,
        agent: AgentId,
    },
    /// An agent's state, load or grid changed.
    AgentChanged {
        agent: AgentId,
    },
    /// A task moved (or an attempt failed): `migration` identifies the stored record.
    MigrationRecorded {
        job: JobId,
        migration: u64,
    },
}

/// A broadcast of [`GridEvent`]s. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Hub {
    sender: broadcast::Sender<GridEvent>,
}

impl Default for Hub {
    fn default() -> Self {
        Hub::new()
    }
}

impl Hub {
    pub fn new() -> Hub {
        let (sender, _) = broadcast::channel(BACKLOG);
        Hub { sender }
    }

    /// Announces `event`; nobody listening is fine.
    pub fn publish(&self, event: GridEvent) {
        let _ = self.sender.send(event);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<GridEvent> {
        self.sender.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn subscribers_see_events_published_after_they_joined() {
        let hub = Hub::new();
        hub.publish(GridEvent::JobChanged { job: 1 });
        let mut rx = hub.subscribe();
        hub.publish(GridEvent::JobAdded { grid: 0, job: 2 });
        assert_eq!(
            rx.recv().await.ok(),
            Some(GridEvent::JobAdded { grid: 0, job: 2 })
        );
        assert!(rx.try_recv().is_err());
    }
}
