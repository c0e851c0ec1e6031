//! What becomes of a copy of a task an agent holds frozen for a move (the source's, dumped;
//! the destination's, restored) once the move is over, or was cut short by a lost connection
//! or a controller restart: the store says where the task runs, and the agent is told to
//! `resume` its copy or `cancel` it accordingly. Agents keep such copies frozen until told,
//! and list them in each status until then, so a task never runs at both ends of a move and
//! is never lost to one.

use std::sync::Arc;

use xgrid_protocol::messages::{CheckpointDisposition, ErrorCode};

use super::steps::{link, release};
use super::{Flights, MigrationError};
use crate::agent_service::LinkError;
use crate::shared::Shared;
use crate::store::{AgentId, JobId};

/// Tells `agent`, which holds `task_ref` frozen under checkpoint `identifier`, what became
/// of the task: `resume` while the store places the task there under that taskRef (a
/// source's copy whose move failed or never finished; a destination's whose move landed),
/// `cancel` otherwise (it runs elsewhere, waits at the controller, or its job no longer
/// wants it). Over the agent's current connection: it may have reconnected since the move
/// began.
pub(super) async fn settle_frozen(
    shared: &Shared,
    agent: AgentId,
    task_ref: &str,
    identifier: &str,
) -> Result<CheckpointDisposition, MigrationError> {
    let disposition = match shared.store.task_by_ref(agent, task_ref).await? {
        Some(_) => CheckpointDisposition::Resume,
        None => CheckpointDisposition::Cancel,
    };
    let link = link(shared, agent)?;
    release(&link, identifier, disposition).await?;
    if disposition == CheckpointDisposition::Cancel {
        // The agent drops the task without a word; whoever followed it stops.
        link.unwatch_task(task_ref);
    }
    Ok(disposition)
}

/// Settles the frozen tasks agents reported that no move under way will settle. A task the
/// store places on its agent is claimed while it is settled, so no decision of the same
/// round checkpoints it again.
pub(super) async fn settle_reported(shared: &Arc<Shared>, flights: &Arc<Flights>) {
    for (agent, frozen) in shared.take_frozen() {
        for (identifier, task_ref) in frozen {
            if flights.is_restoring(agent, &identifier) {
                // Restored for a move under way, which settles it once recorded.
                continue;
            }
            let placed = match shared.store.task_by_ref(agent, &task_ref).await {
                Ok(placed) => placed,
                Err(e) => {
                    shared.log(format!(
                        "cannot look up task {task_ref} of agent {agent}, frozen there: {e}"
                    ));
                    continue;
                }
            };
            let flight = match &placed {
                Some((job, task)) => match flights.claim((*job, task.clone())) {
                    Some(flight) => Some(flight),
                    // Its move is under way and settles it at its end.
                    None => continue,
                },
                None => None,
            };
            let shared = Arc::clone(shared);
            // `settle_frozen` reads the store again as it answers: the agent may have been
            // lost, and the task queued again, since the read above.
            tokio::spawn(async move {
                let _flight = flight;
                let settled = settle_frozen(&shared, agent, &task_ref, &identifier).await;
                report(&shared, agent, &task_ref, placed, settled).await;
            });
        }
    }
}

async fn report(
    shared: &Shared,
    agent: AgentId,
    task_ref: &str,
    placed: Option<(JobId, String)>,
    settled: Result<CheckpointDisposition, MigrationError>,
) {
    match (settled, placed) {
        (Ok(CheckpointDisposition::Resume), Some((job, task))) => {
            shared
                .job_event(
                    job,
                    &format!(
                        "had task {task} resumed on agent {agent}, where a move cut short had \
                         left it frozen"
                    ),
                )
                .await
        }
        (Ok(_), _) => shared.log(format!(
            "agent {agent} dropped its task {task_ref}, frozen for a move: the task runs \
             elsewhere or is no longer wanted"
        )),
        // Settled already, by the move itself, after the agent's report.
        (Err(e), _) if already_gone(&e) => {}
        (Err(e), _) => shared.log(format!(
            "cannot settle task {task_ref} of agent {agent}, frozen for a move: {e}; it stays \
             frozen until the agent reports it again"
        )),
    }
}

/// Whether the agent refused a release because it no longer holds that checkpoint: the copy
/// was settled already, or ended another way (its job cancelled it).
pub(super) fn already_gone(error: &MigrationError) -> bool {
    matches!(
        error,
        MigrationError::Link(LinkError::Declined { refusal, .. })
            if refusal.code == ErrorCode::InvalidCheckpoint
    )
}
