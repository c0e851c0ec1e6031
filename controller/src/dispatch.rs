//! Drives one task on one agent (xgrid-wire.md §4.2): `taskSubmission`, the taskRef,
//! `taskControl start`, then the agent's `taskStatus` notifications until the task ends,
//! fetching its output on the way and its final results at the end. Each task placed on an
//! agent has its own driver, so a slow fetch for one task never holds up another.

use std::collections::VecDeque;
use std::sync::Arc;

use tokio::sync::mpsc;
use xgrid_protocol::messages::{
    self, AgentReply, ControllerToAgentRequest, ErrorCode, TaskAction, TaskControlNotice,
    TaskControlRequest, TaskErrorKind, TaskRefRequest, TaskState, TaskStatus, TaskSubmission,
};

use crate::agent_service::{AgentLink, LinkError, TaskEvent};
use crate::notify::GridEvent;
use crate::shared::Shared;
use crate::store::{AgentId, AgentLoad, AgentState, AttachedTask, JobId, OutputStream, TaskLaunch};

/// The job log's line for a job whose first task runs.
const IS_RUNNING: &str = "is running";

/// Submits a task the applier has just marked Assigned to `agent`, starts it and follows it
/// to its end.
pub async fn launch_task(
    shared: Arc<Shared>,
    link: Arc<AgentLink>,
    agent: AgentId,
    job: JobId,
    task: String,
) {
    let launch = match shared.store.task_launch(job, &task).await {
        Ok(launch) => launch,
        Err(e) => {
            shared.log(format!(
                "cannot read job {job} task {task} to submit it: {e}"
            ));
            requeue(&shared, job, &task).await;
            return;
        }
    };
    let request = ControllerToAgentRequest::TaskSubmission(submission(launch));
    let task_ref = match link.request(request).await {
        Ok(AgentReply::TaskSubmission { task_ref }) => task_ref,
        // The agent is gone: losing it queues its tasks again.
        Err(LinkError::Closed) => return,
        Ok(other) => {
            shared.log(format!(
                "{} answered the submission of job {job} task {task} with {}; the task will run again",
                link.describe(),
                other.name()
            ));
            requeue(&shared, job, &task).await;
            return;
        }
        Err(e) => {
            shared.log(format!(
                "{} did not take job {job} task {task} ({e}); the task will run again",
                link.describe()
            ));
            if let LinkError::Refused {
                code: ErrorCode::TooManyTasks | ErrorCode::AgentUnavailable,
                ..
            } = e
            {
                rest_agent(&shared, agent).await;
            }
            requeue(&shared, job, &task).await;
            return;
        }
    };
    // Follow before starting, so no notification of the started task finds nobody. The
    // taskRef reaches the store with the first Running report (one write, not two). Until
    // then the task is Assigned to the agent, which is all a lost agent needs; a cancel
    // meanwhile cannot name the taskRef, so the Running report that finds the task no
    // longer placed cancels it on the agent.
    let events = link.watch_task(&task_ref);
    let start = ControllerToAgentRequest::TaskControl(TaskControlRequest {
        task_ref: task_ref.clone(),
        control: TaskAction::Start,
    });
    match link.request(start).await {
        Ok(_) => {}
        Err(LinkError::Closed) => return,
        Err(e) => {
            shared.log(format!(
                "{} would not start job {job} task {task} ({e}); the task will run again",
                link.describe()
            ));
            link.unwatch_task(&task_ref);
            requeue(&shared, job, &task).await;
            return;
        }
    }
    follow(shared, link, agent, job, task, task_ref, events, None).await;
}

/// Follows a task already running on the agent (after a restart or a reconnect), starting
/// with `first` if a notification about it has just arrived.
pub fn follow_again(
    shared: &Arc<Shared>,
    link: &Arc<AgentLink>,
    agent: AgentId,
    job: JobId,
    task: &str,
    task_ref: &str,
    first: Option<TaskEvent>,
) {
    let events = link.watch_task(task_ref);
    follow_watched(shared, link, agent, job, task, task_ref, events, first);
}

/// [`follow_again`] with the notifications heard since `link.watch_task(task_ref)` gave
/// `events`: a moved task is watched from its restore, but followed (and so recorded as
/// running there) only once its move has landed in the store.
#[allow(clippy::too_many_arguments)]
pub fn follow_watched(
    shared: &Arc<Shared>,
    link: &Arc<AgentLink>,
    agent: AgentId,
    job: JobId,
    task: &str,
    task_ref: &str,
    events: mpsc::UnboundedReceiver<TaskEvent>,
    first: Option<TaskEvent>,
) {
    tokio::spawn(follow(
        Arc::clone(shared),
        Arc::clone(link),
        agent,
        job,
        task.to_string(),
        task_ref.to_string(),
        events,
        first,
    ));
}

/// Cancels on their agents the tasks the store has just taken off them (job canceled,
/// deleted, restarted or failed); their drivers stop following them.
pub fn cancel_on_agents(shared: &Shared, tasks: &[AttachedTask]) {
    for task in tasks {
        let (Some(task_ref), Some(link)) =
            (task.task_ref.as_deref(), shared.agent_link(task.agent))
        else {
            continue;
        };
        link.unwatch_task(task_ref);
        cancel_request(&link, task_ref);
    }
}

fn cancel_request(link: &Arc<AgentLink>, task_ref: &str) {
    link.request_detached(ControllerToAgentRequest::TaskControl(TaskControlRequest {
        task_ref: task_ref.to_string(),
        control: TaskAction::Cancel,
    }));
}

fn submission(launch: TaskLaunch) -> TaskSubmission {
    TaskSubmission {
        command: launch.command,
        arguments: launch.arguments,
        environment: launch.environment,
        input_stream: launch.input_stream,
        input_files: launch
            .input_files
            .into_iter()
            .map(|(path, file)| {
                let file = messages::InputFile {
                    file_data: file.data.to_vec(),
                    is_executable: file.is_executable,
                };
                (path, file)
            })
            .collect(),
    }
}

/// An agent that refused work as full or unavailable gets none until its next status
/// report says it is Available again; otherwise each round would offer it the same task.
async fn rest_agent(shared: &Shared, agent: AgentId) {
    let Ok(record) = shared.store.agent(agent).await else {
        return;
    };
    let load = AgentLoad {
        state: AgentState::Unavailable,
        current_cpu_power: record.current_cpu_power,
        current_task_count: record.reported_task_count,
    };
    if shared.store.update_agent_load(agent, load).await.is_ok() {
        shared.log(format!(
            "{} refused work; it gets none until it reports itself available",
            shared.agent_label(agent).await
        ));
        shared.publish(GridEvent::AgentChanged { agent });
    }
}

async fn requeue(shared: &Shared, job: JobId, task: &str) {
    if let Err(e) = shared.store.requeue_task(job, task).await {
        shared.log(format!("cannot queue job {job} task {task} again: {e}"));
    }
    shared.publish(GridEvent::JobChanged { job });
    shared.reschedule();
}

/// What became of a task after one notification.
enum Next {
    Continue,
    Done,
}

#[allow(clippy::too_many_arguments)]
async fn follow(
    shared: Arc<Shared>,
    link: Arc<AgentLink>,
    agent: AgentId,
    job: JobId,
    task: String,
    task_ref: String,
    mut events: mpsc::UnboundedReceiver<TaskEvent>,
    first: Option<TaskEvent>,
) {
    let on = TaskOn {
        shared: &shared,
        link: &link,
        agent,
        job,
        task: &task,
        task_ref: &task_ref,
    };
    let mut running = false;
    let mut queued: VecDeque<TaskEvent> = first.into_iter().collect();
    loop {
        let event = match queued.pop_front() {
            Some(event) => event,
            // The receiver ends when the task is canceled or the agent is lost; whoever
            // did that has already settled the task in the store.
            None => match events.recv().await {
                Some(event) => event,
                None => return,
            },
        };
        // What the agent already said next lets a task that ended at once skip the
        // Running write.
        while let Ok(next) = events.try_recv() {
            queued.push_back(next);
        }
        let next = match event {
            TaskEvent::Status(status) => {
                let ends_next = queued.iter().any(|e| {
                    matches!(e, TaskEvent::Status(s)
                        if matches!(s.task_state, TaskState::Terminated | TaskState::Failed))
                });
                on.status(status, &mut running, ends_next).await
            }
            TaskEvent::Control(notice) => on.control(notice).await,
        };
        if let Next::Done = next {
            break;
        }
    }
    link.unwatch_task(&task_ref);
}

/// One task on one agent, as its driver sees it.
struct TaskOn<'a> {
    shared: &'a Shared,
    link: &'a Arc<AgentLink>,
    agent: AgentId,
    job: JobId,
    task: &'a str,
    task_ref: &'a str,
}

impl TaskOn<'_> {
    /// `ends_next`: the agent has already reported the task's end, queued behind this.
    async fn status(&self, status: TaskStatus, running: &mut bool, ends_next: bool) -> Next {
        let (shared, job, task) = (self.shared, self.job, self.task);
        if status.data_available && status.task_state != TaskState::Terminated {
            self.fetch_output().await;
        }
        match status.task_state {
            TaskState::Pending => Next::Continue,
            TaskState::Running => {
                if *running {
                    return Next::Continue;
                }
                *running = true;
                // The task with (or before) its job: whoever sees the job Running finds the
                // task's taskRef stored too (what a restart needs to pick the task up).
                let first = shared.first_start_of(job);
                let job_started = if ends_next {
                    if first {
                        shared.store.mark_job_running(job, IS_RUNNING).await
                    } else {
                        Ok(false)
                    }
                } else {
                    let (store, agent, task_ref) = (&shared.store, self.agent, self.task_ref);
                    let started = if first {
                        store
                            .mark_first_started(job, task, agent, task_ref, IS_RUNNING)
                            .await
                    } else {
                        store
                            .mark_started(job, task, agent, task_ref)
                            .await
                            .map(|()| false)
                    };
                    if let Err(e) = started {
                        if first {
                            shared.forget_start_of(job);
                        }
                        // Canceled, deleted or restarted before the agent got going.
                        shared.log(format!(
                            "job {job} task {task} is no longer wanted ({e}); canceling it on {}",
                            self.link.describe()
                        ));
                        cancel_request(self.link, self.task_ref);
                        return Next::Done;
                    }
                    started
                };
                // Watchers hear of the change before its log line (written with it) is told.
                shared.publish(if matches!(job_started, Ok(true)) {
                    GridEvent::JobStatusChanged { job }
                } else {
                    GridEvent::JobChanged { job }
                });
                match job_started {
                    Ok(true) => shared.job_logged(job, IS_RUNNING).await,
                    Ok(false) => {}
                    Err(e) => shared.log(format!("cannot mark job {job} running: {e}")),
                }
                Next::Continue
            }
            TaskState::Stopped => {
                if let Err(e) = shared.store.mark_stopped(job, task).await {
                    shared.log(format!("cannot mark job {job} task {task} suspended: {e}"));
                }
                *running = false;
                shared.publish(GridEvent::JobChanged { job });
                Next::Continue
            }
            TaskState::Terminated => {
                self.finish(&status).await;
                Next::Done
            }
            TaskState::Failed => {
                // Output written before the failure still belongs to the job; its last line
                // of standard error is the agent's reason, which the job's error repeats.
                self.fetch_output().await;
                let reason = self.shared.store.last_stderr_line(self.job, task).await;
                let message = match reason.ok().flatten() {
                    Some(reason) => format!("{reason} (on agent {})", self.agent),
                    None => format!("agent {} reported that task {task} failed", self.agent),
                };
                self.fail(&message).await;
                Next::Done
            }
        }
    }

    async fn control(&self, notice: TaskControlNotice) -> Next {
        let (shared, job, task) = (self.shared, self.job, self.task);
        match notice {
            TaskControlNotice::StatusUpdate { percent_done } => {
                if let Err(e) = shared
                    .store
                    .set_task_progress(job, task, percent_done)
                    .await
                {
                    shared.log(format!(
                        "cannot record the progress of job {job} task {task}: {e}"
                    ));
                }
                shared.publish(GridEvent::JobChanged { job });
                Next::Continue
            }
            TaskControlNotice::CreateTask(_) => {
                shared.log(format!(
                    "job {job} task {task} asked to create a task; this controller does not support that"
                ));
                Next::Continue
            }
            TaskControlNotice::TaskError { kind, .. } => {
                cancel_request(self.link, self.task_ref);
                if kind == TaskErrorKind::FailJob {
                    self.fail(&format!(
                        "task {task} reported an error and asked to fail the job"
                    ))
                    .await;
                } else {
                    let what = format!(
                        "had task {task} report {kind} on {}; the task will run again",
                        self.link.describe()
                    );
                    shared.job_event(job, &what).await;
                    requeue(shared, job, task).await;
                }
                Next::Done
            }
        }
    }

    /// Asks the agent for the output since the last fetch and stores it.
    /// Fetch and store the output the agent has gathered since the last fetch.
    async fn fetch_output(&self) {
        let (shared, job, task) = (self.shared, self.job, self.task);
        let request = ControllerToAgentRequest::TaskResults(TaskRefRequest {
            task_ref: self.task_ref.to_string(),
        });
        let streams = match self.link.request(request).await {
            Ok(AgentReply::TaskResults(reply)) => reply.streams,
            Ok(_) | Err(LinkError::Closed) => return,
            Err(e) => {
                shared.log(format!(
                    "cannot fetch the output of job {job} task {task}: {e}"
                ));
                return;
            }
        };
        if streams.read_data.is_empty() && streams.err_data.is_empty() {
            return;
        }
        for (stream, data) in [
            (OutputStream::Stdout, &streams.read_data),
            (OutputStream::Stderr, &streams.err_data),
        ] {
            if let Err(e) = shared.store.append_output(job, task, stream, data).await {
                shared.log(format!(
                    "cannot store the output of job {job} task {task}: {e}"
                ));
            }
        }
        shared.publish(GridEvent::JobOutput { job });
    }

    async fn finish(&self, reported: &TaskStatus) {
        let (shared, job, task) = (self.shared, self.job, self.task);
        // The last output may come with the end, flagged or not, except from agents that
        // promise the flag: for a task that wrote nothing since the last fetch, two messages
        // fewer.
        if reported.data_available || !self.link.flags_output_at_end() {
            self.fetch_output().await;
        }
        let reported_status = reported.termination_status;
        let request = ControllerToAgentRequest::TaskFinalResults(TaskRefRequest {
            task_ref: self.task_ref.to_string(),
        });
        let outputs = match self.link.request(request).await {
            Ok(AgentReply::TaskFinalResults(reply)) => reply.outputs,
            Err(LinkError::Closed) => return,
            Ok(_) | Err(_) => {
                shared.log(format!(
                    "{} gave no final results for job {job} task {task}; keeping its exit status only",
                    self.link.describe()
                ));
                messages::TaskOutputs::default()
            }
        };
        let status = outputs.termination_status.or(reported_status).unwrap_or(0);
        match shared
            .store
            .mark_finished(job, task, status, &outputs.output_files)
            .await
        {
            Ok(()) => {}
            Err(e) => shared.log(format!(
                "cannot record the end of job {job} task {task}: {e}"
            )),
        }
        shared.publish(GridEvent::JobChanged { job });
        shared.reschedule();
        // The freed slot may be worth a task running on a slower agent, notably at a job's
        // tail: waiting for the balancer's tick would leave it idle for seconds.
        shared.rebalance();
    }

    async fn fail(&self, message: &str) {
        let (shared, job, task) = (self.shared, self.job, self.task);
        shared
            .job_event(job, &format!("had a task fail: {message}"))
            .await;
        if let Err(e) = shared.store.mark_failed(job, task, message).await {
            shared.log(format!(
                "cannot record the failure of job {job} task {task}: {e}"
            ));
        }
        shared.publish(GridEvent::JobChanged { job });
        shared.reschedule();
    }
}
