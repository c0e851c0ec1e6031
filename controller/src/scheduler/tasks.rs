//! One job's tasks seen as a dependency graph: which tasks may start now, and whether
//! something about them (a failure, a cycle, an impossible gang) settles the job.

use std::cmp::Ordering;
use std::collections::HashMap;

use super::graph::{cycles, rotate_to_least};
use super::natural::natural_cmp;
use super::plan::FailureReason;
use super::snapshot::{Job, Task, TaskState};

/// What a job's tasks allow this round.
#[derive(Debug, PartialEq)]
pub(super) enum Outlook {
    /// The job can never succeed.
    Fails(FailureReason),
    /// Every task finished.
    AllFinished,
    /// The job goes on.
    Open {
        /// Indices into `job.tasks` of the pending tasks whose dependencies all finished.
        ready: Vec<usize>,
        /// For a gang that has not started yet: how many tasks must start together.
        gang_minimum: Option<usize>,
    },
}

/// Looks at every task of `job` once (plus its dependencies), so the cost is linear in the
/// job's size.
pub(super) fn outlook(job: &Job) -> Outlook {
    if let Some(reason) = first_broken_task(&job.tasks) {
        return Outlook::Fails(reason);
    }
    if !job.tasks.is_empty()
        && job
            .tasks
            .iter()
            .all(|task| task.state == TaskState::Finished)
    {
        return Outlook::AllFinished;
    }
    let dependencies = match resolve_dependencies(&job.tasks) {
        Ok(dependencies) => dependencies,
        Err(reason) => return Outlook::Fails(reason),
    };
    if let Some(reason) = pending_cycle(&job.tasks, &dependencies) {
        return Outlook::Fails(reason);
    }
    let started = job
        .tasks
        .iter()
        .any(|task| task.state != TaskState::Pending);
    let gang_minimum = if job.tasks_must_start_simultaneously && !started {
        let minimum = job
            .minimum_task_count
            .filter(|&count| count > 0)
            .map_or(job.tasks.len(), |count| count as usize);
        if minimum > job.tasks.len() {
            return Outlook::Fails(FailureReason::GangLargerThanJob {
                minimum,
                tasks: job.tasks.len(),
            });
        }
        // Nothing has run yet, so only tasks without dependencies can be in the first start.
        let startable = dependencies.iter().filter(|on| on.is_empty()).count();
        if minimum > startable {
            return Outlook::Fails(FailureReason::GangBlockedByDependencies { minimum, startable });
        }
        Some(minimum)
    } else {
        None
    };
    let ready = job
        .tasks
        .iter()
        .zip(&dependencies)
        .enumerate()
        .filter(|(_, (task, on))| {
            task.state == TaskState::Pending
                && on.iter().all(|&dependency| {
                    job.tasks
                        .get(dependency)
                        .is_some_and(|done| done.state == TaskState::Finished)
                })
        })
        .map(|(index, _)| index)
        .collect();
    Outlook::Open {
        ready,
        gang_minimum,
    }
}

/// Orders task indices by their identifiers, naturally; the index settles duplicates.
pub(super) fn task_order(tasks: &[Task], a: usize, b: usize) -> Ordering {
    match (tasks.get(a), tasks.get(b)) {
        (Some(left), Some(right)) => natural_cmp(&left.id, &right.id).then(a.cmp(&b)),
        _ => a.cmp(&b),
    }
}

/// The first failed or canceled task in task order, as the reason the job fails.
fn first_broken_task(tasks: &[Task]) -> Option<FailureReason> {
    let broken = tasks
        .iter()
        .filter(|task| matches!(task.state, TaskState::Failed | TaskState::Canceled))
        .min_by(|a, b| natural_cmp(&a.id, &b.id))?;
    let task = broken.id.clone();
    Some(if broken.state == TaskState::Failed {
        FailureReason::TaskFailed { task }
    } else {
        FailureReason::TaskCanceled { task }
    })
}

/// Turns the `dependsOnTasks` entries of pending tasks into the indices of the tasks they
/// name. A task that already left Pending waits on nothing any more, so its entries are not
/// looked at, and jobs whose pending tasks have no dependencies (the usual case) cost no
/// lookup table.
fn resolve_dependencies(tasks: &[Task]) -> Result<Vec<Vec<usize>>, FailureReason> {
    let waits = |task: &Task| task.state == TaskState::Pending && !task.depends_on_tasks.is_empty();
    if !tasks.iter().any(waits) {
        return Ok(vec![Vec::new(); tasks.len()]);
    }
    let mut index_of: HashMap<&str, usize> = HashMap::with_capacity(tasks.len());
    for (index, task) in tasks.iter().enumerate() {
        index_of.entry(task.id.as_str()).or_insert(index);
    }
    tasks
        .iter()
        .map(|task| {
            if !waits(task) {
                return Ok(Vec::new());
            }
            task.depends_on_tasks
                .iter()
                .map(|name| {
                    index_of.get(name.as_str()).copied().ok_or_else(|| {
                        FailureReason::UnknownTaskDependency {
                            task: task.id.clone(),
                            missing: name.clone(),
                        }
                    })
                })
                .collect()
        })
        .collect()
}

/// A cycle among pending tasks: they wait on each other and none can ever start. Tasks that
/// already left Pending cannot be on such a cycle, whatever they depend on.
fn pending_cycle(tasks: &[Task], dependencies: &[Vec<usize>]) -> Option<FailureReason> {
    let pending = |index: usize| {
        tasks
            .get(index)
            .is_some_and(|task| task.state == TaskState::Pending)
    };
    let mut cycle = cycles(dependencies, pending, true).pop()?;
    rotate_to_least(&mut cycle, |&a, &b| task_order(tasks, a, b).is_lt());
    Some(FailureReason::TaskCycle {
        tasks: cycle
            .iter()
            .filter_map(|&index| tasks.get(index).map(|task| task.id.clone()))
            .collect(),
    })
}
