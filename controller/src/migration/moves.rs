//! Carrying out one decision: a move or evacuation (the five steps; both copies frozen until
//! the store says which one runs, see settle.rs), a restore of a held checkpoint, a
//! suspension or resumption, a periodic checkpoint; and the record each move leaves.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use xgrid_protocol::messages::{
    CheckpointDisposition, ControllerToAgentRequest, TaskAction, TaskControlRequest,
};
use xgrid_protocol::plist::Date;

use super::settle::{already_gone, settle_frozen};
use super::steps::{
    checkpoint, checkpoint_record, drain_output, keep_checkpoint, link, relay, release,
    remove_file, remove_stream, restore, send_file, stream_name, stream_path, task_ref_on,
};
use super::{lock, Failure, Flights, MigrationError, Step, HELD_RESTORE_TRIES};
use crate::balancer::MigrationReason;
use crate::dispatch;
use crate::notify::GridEvent;
use crate::shared::Shared;
use crate::store::{AgentId, JobId, MigrationRecord, MovedFrom};

/// What a finished move leaves for its record.
struct Moved {
    octets: u64,
    /// From the checkpoint request until the restored copy was let run at its destination
    /// (`None` when it went into a checkpoint the controller holds).
    frozen: Option<Duration>,
    /// Where the frozen time went: the source's dump, the stream through the controller
    /// (with the output the dump needs), the destination's restore and the move's record.
    phases: [Duration; 3],
}

/// Moves a task off `from`: to agent `to`, or, with `None`, into a checkpoint the controller
/// holds until a slot frees. Records the move or the failed attempt.
pub(super) async fn move_task(
    shared: &Arc<Shared>,
    flights: &Arc<Flights>,
    job: JobId,
    task: &str,
    from: AgentId,
    to: Option<AgentId>,
    reason: MigrationReason,
) {
    let started = Date::now();
    let clock = Instant::now();
    let result = try_move(shared, flights, job, task, from, to, reason, started).await;
    // Frozen: from the checkpoint request until the restored copy may run, when it moved.
    let frozen = result
        .as_ref()
        .ok()
        .and_then(|moved| moved.frozen)
        .unwrap_or_else(|| clock.elapsed());
    let frozen = u64::try_from(frozen.as_millis()).unwrap_or(u64::MAX);
    let (outcome, octets) = match &result {
        Ok(moved) => ("moved".to_string(), moved.octets),
        Err(failure) => {
            flights.back_off(&(job, task.to_string()), &failure.error);
            (failure.outcome(), 0)
        }
    };
    let text = match (&result, to) {
        (Ok(moved), Some(to)) => {
            let [dump, transfer, restore] = moved.phases.map(|phase| phase.as_millis());
            format!(
                "had task {task} moved from agent {from} to agent {to} ({reason}): frozen {frozen} ms, {octets} octets of checkpoint (dump {dump} ms, transfer {transfer} ms, restore {restore} ms)"
            )
        }
        (Ok(_), None) => format!(
            "had task {task} checkpointed off agent {from} ({reason}) to wait for a free slot: {octets} octets"
        ),
        (Err(_), _) => format!(
            "could not move task {task} off agent {from} ({reason}): {outcome}; it stays there"
        ),
    };
    record(
        shared,
        MigrationRecord {
            id: 0,
            job,
            task: task.to_string(),
            from: Some(from),
            to,
            reason: reason.as_str().to_string(),
            started,
            frozen_milliseconds: Some(frozen),
            octets,
            outcome,
        },
        &text,
    )
    .await;
}

#[allow(clippy::too_many_arguments)]
async fn try_move(
    shared: &Arc<Shared>,
    flights: &Arc<Flights>,
    job: JobId,
    task: &str,
    from: AgentId,
    to: Option<AgentId>,
    reason: MigrationReason,
    started: Date,
) -> Result<Moved, Failure> {
    let source = link(shared, from).map_err(|e| Step::Checkpoint.failed(e))?;
    let task_ref = task_ref_on(shared, job, task, from)
        .await
        .map_err(|e| Step::Checkpoint.failed(e))?;
    let frozen_from = Instant::now();
    let taken = checkpoint(&source, &task_ref, false)
        .await
        .map_err(|e| Step::Checkpoint.failed(e))?;
    let dumped = frozen_from.elapsed();
    let mut transferred = dumped;
    // From here the task is frozen on the source until `settle_copy` says what became of it.
    let path = stream_path(&shared.config.checkpoint_dir(), job, task);
    let identifier = stream_name(&path);
    let destination = match to {
        Some(to) => match link(shared, to) {
            Ok(link) => Some((to, link)),
            Err(e) => {
                settle_copy(
                    shared,
                    (job, task),
                    from,
                    &task_ref,
                    &taken.checkpoint_identifier,
                )
                .await;
                return Err(Step::Transfer.failed(e));
            }
        },
        None => None,
    };
    // Registered before the restore: until this move settles it, the destination's report
    // of the task frozen there is this move's to answer.
    let _restoring = destination
        .as_ref()
        .map(|(to, _)| flights.restore_started(*to, &identifier));
    let moved = async {
        drain_output(shared, &source, job, task, &task_ref, &taken)
            .await
            .map_err(|e| Step::Transfer.failed(e))?;
        let octets = relay(
            &source,
            &taken,
            destination.as_ref().map(|(_, link)| link.as_ref()),
            &path,
        )
        .await
        .map_err(|e| Step::Transfer.failed(e))?;
        // The restored task writes on from the dump's sizes: the store must end there too.
        shared
            .store
            .truncate_output(job, task, taken.stdout_size, taken.stderr_size)
            .await
            .map_err(|e| Step::Transfer.failed(e.into()))?;
        transferred = frozen_from.elapsed();
        let kept = checkpoint_record(shared, &path, &taken, from, started);
        Ok(match &destination {
            Some((_, link)) => {
                // The file goes to disk while the destination restores, off the frozen path.
                let (restored, record) = tokio::join!(restore(link, &identifier), kept);
                let new_ref = restored.map_err(|e| Step::Restore.failed(e))?;
                (octets, Some(new_ref), record)
            }
            None => (octets, None, kept.await),
        })
    }
    .await;
    let (octets, new_ref, record) = match moved {
        Ok(moved) => moved,
        Err(failure) => {
            settle_copy(
                shared,
                (job, task),
                from,
                &task_ref,
                &taken.checkpoint_identifier,
            )
            .await;
            if let Some((_, link)) = &destination {
                // Best effort: the destination drops what it got of the stream.
                let _ = release(link, &identifier, CheckpointDisposition::Discard).await;
            }
            remove_stream(shared, &path).await;
            return Err(failure);
        }
    };
    // The restored copy stays frozen until the move has landed in the store; what it says
    // meanwhile is kept, and followed (and so recorded) only once the move has landed.
    let restored = match (&destination, &new_ref) {
        (Some((to, link)), Some(new_ref)) => Some((*to, link, new_ref, link.watch_task(new_ref))),
        _ => None,
    };
    // The move lands only if the task is still on its source: the source may have been
    // lost meanwhile (and the task queued again or held), or the job stopped.
    let moved_from = MovedFrom::Agent {
        agent: from,
        task_ref: &task_ref,
    };
    let landed = match &restored {
        Some((to, _, new_ref, _)) => {
            let record = record
                .map_err(|e| {
                    shared.log(format!(
                        "job {job} task {task}: cannot keep the checkpoint it moved with: {e}"
                    ))
                })
                .ok();
            (shared.store)
                .record_move(job, task, moved_from, (*to, new_ref), record.as_ref())
                .await
                .map_err(|e| Step::Restore.failed(e.into()))
        }
        None => match record {
            Ok(record) => (shared.store)
                .hold_task(job, task, moved_from, reason.as_str(), &record)
                .await
                .map_err(|e| Step::Transfer.failed(e.into())),
            Err(e) => Err(Step::Transfer.failed(e)),
        },
    };
    let landed = match landed {
        Ok(replaced) => {
            source.unwatch_task(&task_ref);
            if let Some(old) = replaced {
                remove_file(shared, &old).await;
            }
            Ok(())
        }
        Err(failure) => {
            remove_stream(shared, &path).await;
            Err(failure)
        }
    };
    // The store says where the task runs now: the restored copy runs on (and is followed)
    // or goes, and so does the source's.
    if let Some((to, link, new_ref, events)) = restored {
        if landed.is_ok() {
            dispatch::follow_watched(shared, link, to, job, task, new_ref, events, None);
        }
        settle_copy(shared, (job, task), to, new_ref, &identifier).await;
    }
    let frozen = destination.is_some().then(|| frozen_from.elapsed());
    settle_copy(
        shared,
        (job, task),
        from,
        &task_ref,
        &taken.checkpoint_identifier,
    )
    .await;
    landed?;
    shared.publish(GridEvent::JobChanged { job });
    shared.reschedule();
    shared.rebalance();
    let phases = [
        dumped,
        transferred.saturating_sub(dumped),
        frozen.unwrap_or_default().saturating_sub(transferred),
    ];
    Ok(Moved {
        octets,
        frozen,
        phases,
    })
}

/// Tells `agent` what became of its frozen copy of the task (`task_ref`, under checkpoint
/// `identifier`: the source's, or the one restored at the destination), as the store says
/// ([`settle_frozen`]); an agent that cannot be told now keeps it frozen and reports it
/// again.
async fn settle_copy(
    shared: &Shared,
    (job, task): (JobId, &str),
    agent: AgentId,
    task_ref: &str,
    identifier: &str,
) {
    match settle_frozen(shared, agent, task_ref, identifier).await {
        Err(e) if !already_gone(&e) => shared.log(format!(
            "cannot tell agent {agent} what became of its frozen copy of job {job} task \
             {task} ({e}); it stays frozen until the agent reports it again"
        )),
        _ => {}
    }
}

/// Restores a task the controller holds as a checkpoint on agent `to`. A checkpoint the
/// destination refuses, or a lost file, sends the task back to run from the start; a
/// transport failure leaves it held for a later round.
pub(super) async fn restore_held(
    shared: &Arc<Shared>,
    flights: &Arc<Flights>,
    job: JobId,
    task: &str,
    to: AgentId,
    reason: MigrationReason,
) {
    let started = Date::now();
    let clock = Instant::now();
    let result = try_restore(shared, flights, job, task, to).await;
    let frozen = u64::try_from(clock.elapsed().as_millis()).unwrap_or(u64::MAX);
    let (outcome, octets, text) = match &result {
        Ok(octets) => (
            "moved".to_string(),
            *octets,
            format!("had task {task} restored on agent {to} from its checkpoint ({reason})"),
        ),
        Err(failure) => {
            let outcome = failure.outcome();
            let text = format!("could not restore task {task} on agent {to} ({reason}): {outcome}");
            (outcome, 0, text)
        }
    };
    record(
        shared,
        MigrationRecord {
            id: 0,
            job,
            task: task.to_string(),
            from: None,
            to: Some(to),
            reason: reason.as_str().to_string(),
            started,
            frozen_milliseconds: Some(frozen),
            octets,
            outcome,
        },
        &text,
    )
    .await;
    let key = (job, task.to_string());
    match result {
        Ok(_) => flights.held_restore_over(&key),
        Err(failure) if failure.error.checkpoint_refused() => {
            flights.held_restore_over(&key);
            requeue_held(shared, job, task, "its checkpoint could not be restored").await;
        }
        Err(failure) if flights.held_restore_failed(&key, &failure.error) => {
            let why = format!("{HELD_RESTORE_TRIES} tries to restore its checkpoint failed");
            requeue_held(shared, job, task, &why).await;
        }
        Err(failure) => flights.back_off(&key, &failure.error),
    }
}

async fn try_restore(
    shared: &Arc<Shared>,
    flights: &Arc<Flights>,
    job: JobId,
    task: &str,
    to: AgentId,
) -> Result<u64, Failure> {
    let destination = link(shared, to).map_err(|e| Step::Transfer.failed(e))?;
    let checkpoint = shared
        .store
        .task_checkpoint(job, task)
        .await
        .map_err(|e| Step::Transfer.failed(e.into()))?
        .ok_or_else(|| Step::Transfer.failed(MigrationError::NoCheckpoint))?;
    shared
        .store
        .truncate_output(job, task, checkpoint.stdout_size, checkpoint.stderr_size)
        .await
        .map_err(|e| Step::Transfer.failed(e.into()))?;
    let identifier = stream_name(&stream_path(&shared.config.checkpoint_dir(), job, task));
    let path = PathBuf::from(&checkpoint.path);
    let _restoring = flights.restore_started(to, &identifier);
    let sent = async {
        let octets = send_file(&destination, &path, &identifier)
            .await
            .map_err(|e| Step::Transfer.failed(e))?;
        let new_ref = restore(&destination, &identifier)
            .await
            .map_err(|e| Step::Restore.failed(e))?;
        Ok::<_, Failure>((octets, new_ref))
    }
    .await;
    let (octets, new_ref) = match sent {
        Ok(sent) => sent,
        Err(failure) => {
            let _ = release(&destination, &identifier, CheckpointDisposition::Discard).await;
            return Err(failure);
        }
    };
    // Frozen at the destination until the store says it runs there.
    let events = destination.watch_task(&new_ref);
    let placed = (to, new_ref.as_str());
    let landed = (shared.store)
        .record_move(job, task, MovedFrom::Held, placed, None)
        .await;
    if landed.is_ok() {
        dispatch::follow_watched(shared, &destination, to, job, task, &new_ref, events, None);
    }
    // Resumed once recorded; dropped if no longer held (its job stopped or was deleted).
    settle_copy(shared, (job, task), to, &new_ref, &identifier).await;
    landed.map_err(|e| Step::Restore.failed(e.into()))?;
    shared.publish(GridEvent::JobChanged { job });
    shared.reschedule();
    Ok(octets)
}

/// A held task that cannot be restored runs again from the start.
pub(super) async fn requeue_held(shared: &Shared, job: JobId, task: &str, why: &str) {
    match shared.store.requeue_held_task(job, task).await {
        Ok(path) => {
            if let Some(path) = path {
                remove_file(shared, &path).await;
            }
            shared
                .job_event(
                    job,
                    &format!("had task {task} queued to run again from the start: {why}"),
                )
                .await;
            shared.publish(GridEvent::JobChanged { job });
            shared.reschedule();
        }
        Err(e) => shared.log(format!("cannot queue job {job} task {task} again: {e}")),
    }
}

/// Suspends or resumes a task on its agent (`taskControl stop|start`).
pub(super) async fn control(
    shared: &Shared,
    job: JobId,
    task: &str,
    agent: AgentId,
    action: TaskAction,
) {
    let done = async {
        let link = link(shared, agent)?;
        let task_ref = task_ref_on(shared, job, task, agent).await?;
        link.request(ControllerToAgentRequest::TaskControl(TaskControlRequest {
            task_ref,
            control: action,
        }))
        .await?;
        // The agent's own report follows; recording it now keeps the next round from
        // asking again meanwhile.
        match action {
            TaskAction::Stop => shared.store.mark_stopped(job, task).await?,
            _ => shared.store.mark_running(job, task).await?,
        }
        Ok::<(), MigrationError>(())
    }
    .await;
    match (done, action) {
        (Ok(()), TaskAction::Stop) => {
            shared
                .job_event(
                    job,
                    &format!(
                        "had task {task} suspended on agent {agent}: its owner is back and no agent can take it"
                    ),
                )
                .await
        }
        (Ok(()), _) => {
            shared
                .job_event(
                    job,
                    &format!("had task {task} resumed on agent {agent}: the agent is free again"),
                )
                .await
        }
        (Err(e), _) => shared.log(format!(
            "cannot {action} job {job} task {task} on agent {agent}: {e}"
        )),
    }
    shared.publish(GridEvent::JobChanged { job });
}

/// A periodic checkpoint: the task runs on; its stream is kept for recovery.
pub(super) async fn periodic_checkpoint(
    shared: &Shared,
    flights: &Arc<Flights>,
    job: JobId,
    task: &str,
    agent: AgentId,
) {
    let key = (job, task.to_string());
    let taken_at = Date::now();
    lock(&flights.checkpoint_tried).insert(key.clone(), taken_at.0);
    let done = async {
        let source = link(shared, agent)?;
        let task_ref = task_ref_on(shared, job, task, agent).await?;
        let taken = checkpoint(&source, &task_ref, true).await?;
        let path = stream_path(&shared.config.checkpoint_dir(), job, task);
        let kept = async {
            drain_output(shared, &source, job, task, &task_ref, &taken).await?;
            relay(&source, &taken, None, &path).await?;
            keep_checkpoint(shared, job, task, &path, &taken, agent, taken_at).await
        }
        .await;
        if kept.is_err() {
            remove_stream(shared, &path).await;
        }
        // The images on the agent go either way; the task never stopped.
        if let Err(e) = release(
            &source,
            &taken.checkpoint_identifier,
            CheckpointDisposition::Discard,
        )
        .await
        {
            shared.log(format!(
                "agent {agent} did not discard a checkpoint of job {job} task {task}: {e}"
            ));
        }
        kept.map(|()| taken)
    }
    .await;
    match done {
        Ok(taken) => shared.log(format!(
            "job {job} task {task} checkpointed on agent {agent}: {} octets, frozen {} ms",
            taken.checkpoint_size, taken.frozen_milliseconds
        )),
        Err(e) => shared.log(format!(
            "cannot checkpoint job {job} task {task} on agent {agent}: {e}"
        )),
    }
}

/// Stores a migration, tells the dashboard, and writes `text` in the job's log.
async fn record(shared: &Shared, migration: MigrationRecord, text: &str) {
    match shared.store.record_migration(&migration).await {
        Ok(id) => shared.publish(GridEvent::MigrationRecorded {
            job: migration.job,
            migration: id,
        }),
        Err(e) => shared.log(format!(
            "cannot record a migration of job {} task {}: {e}",
            migration.job, migration.task
        )),
    }
    shared.job_event(migration.job, text).await;
}
