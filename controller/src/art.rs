//! Agent-ranking tools (xgrid-wire.md §5.1): an ART run is a short task the controller sends
//! to a candidate agent. The executable travels as the task's only input file; the number it
//! prints on standard output is its score, and the job's condition on that score decides
//! whether the agent may run the job's tasks. How Apple reads the score is not documented:
//! the first number on the output is taken, and an ART that prints none, fails or cannot be
//! run leaves the agent unqualified.

use std::collections::BTreeMap;
use std::sync::Arc;

use xgrid_protocol::jobspec::{ArtCondition, ArtSpecification};
use xgrid_protocol::messages::{
    self, AgentReply, ControllerToAgentRequest, TaskAction, TaskControlRequest, TaskRefRequest,
    TaskState, TaskSubmission,
};

use crate::agent_service::{AgentLink, LinkError, TaskEvent};
use crate::shared::Shared;
use crate::store::{AgentId, ArtVerdict, JobId};

/// Runs ART `art` of `job` on `agent` (already recorded as Measuring) and records the verdict.
pub async fn run_art(
    shared: Arc<Shared>,
    link: Arc<AgentLink>,
    agent: AgentId,
    job: JobId,
    art: String,
) {
    let outcome = measure(&shared, &link, job, &art).await;
    let (verdict, score) = match outcome {
        Ok(Some(score)) => {
            let verdict = match condition_of(&shared, job, &art).await {
                Some(condition) if condition.accepts(score) => ArtVerdict::Qualified,
                Some(_) => ArtVerdict::Unqualified,
                // A condition-less ART qualifies every agent it runs on.
                None => ArtVerdict::Qualified,
            };
            (verdict, Some(score))
        }
        Ok(None) => (ArtVerdict::Unqualified, None),
        // The agent is gone: losing it drops the Measuring mark, so the ART runs again
        // elsewhere.
        Err(LinkError::Closed) => return,
        Err(e) => {
            shared.log(format!(
                "ART {art} of job {job} could not run on agent {agent}: {e}"
            ));
            (ArtVerdict::Unqualified, None)
        }
    };
    shared.log(format!(
        "ART {art} of job {job} on agent {agent}: score {}, {}",
        score.map_or("none".to_string(), |s| s.to_string()),
        match verdict {
            ArtVerdict::Qualified => "qualified",
            _ => "not qualified",
        }
    ));
    if let Err(e) = shared
        .store
        .set_art_result(job, agent, &art, verdict, score)
        .await
    {
        shared.log(format!("cannot record the ART result of job {job}: {e}"));
    }
    shared.reschedule();
}

async fn condition_of(shared: &Shared, job: JobId, art: &str) -> Option<ArtCondition> {
    let spec = shared.store.job_specification(job).await.ok()?;
    spec.art_conditions.get(art).copied()
}

/// Runs the ART and returns its score, or `None` when it printed no number or failed.
async fn measure(
    shared: &Shared,
    link: &Arc<AgentLink>,
    job: JobId,
    art: &str,
) -> Result<Option<f64>, LinkError> {
    let spec = match shared.store.job_specification(job).await {
        Ok(spec) => spec,
        Err(_) => return Ok(None),
    };
    let Some(tool) = spec.art_specifications.get(art) else {
        return Ok(None);
    };
    let submission = ControllerToAgentRequest::TaskSubmission(submission(art, tool));
    let task_ref = match link.request(submission).await? {
        AgentReply::TaskSubmission { task_ref } => task_ref,
        _ => return Ok(None),
    };
    let mut events = link.watch_task(&task_ref);
    let start = ControllerToAgentRequest::TaskControl(TaskControlRequest {
        task_ref: task_ref.clone(),
        control: TaskAction::Start,
    });
    let result = async {
        link.request(start).await?;
        let mut output = Vec::new();
        while let Some(event) = events.recv().await {
            let TaskEvent::Status(status) = event else {
                continue;
            };
            match status.task_state {
                TaskState::Terminated => {
                    output.extend(fetch_stdout(link, &task_ref).await?);
                    // The agent keeps a finished task until its final results are taken.
                    let last = TaskRefRequest {
                        task_ref: task_ref.clone(),
                    };
                    let _ = link
                        .request(ControllerToAgentRequest::TaskFinalResults(last))
                        .await;
                    return Ok(score(&output));
                }
                TaskState::Failed => return Ok(None),
                _ if status.data_available => {
                    output.extend(fetch_stdout(link, &task_ref).await?);
                }
                _ => {}
            }
        }
        Err(LinkError::Closed)
    }
    .await;
    link.unwatch_task(&task_ref);
    result
}

async fn fetch_stdout(link: &AgentLink, task_ref: &str) -> Result<Vec<u8>, LinkError> {
    let request = ControllerToAgentRequest::TaskResults(TaskRefRequest {
        task_ref: task_ref.to_string(),
    });
    match link.request(request).await? {
        AgentReply::TaskResults(reply) => Ok(reply.streams.read_data),
        _ => Ok(Vec::new()),
    }
}

/// The ART runs as `./<art>` from its own file in the task's directory.
fn submission(art: &str, tool: &ArtSpecification) -> TaskSubmission {
    let file = messages::InputFile {
        file_data: tool.data.to_vec(),
        // The file is there to be run, whatever the specification said.
        is_executable: true,
    };
    TaskSubmission {
        command: format!("./{art}"),
        arguments: tool.arguments.clone(),
        environment: BTreeMap::new(),
        input_stream: None,
        input_files: BTreeMap::from([(art.to_string(), file)]),
    }
}

/// The first number in the ART's output.
fn score(output: &[u8]) -> Option<f64> {
    String::from_utf8_lossy(output)
        .split(|c: char| c.is_whitespace() || c == ',' || c == ';')
        .find_map(|word| word.parse::<f64>().ok().filter(|n| n.is_finite()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_score_is_the_first_number_printed() {
        assert_eq!(score(b"42\n"), Some(42.0));
        assert_eq!(score(b"  speed: 3.5 GHz, 7 cores\n"), Some(3.5));
        assert_eq!(score(b"-1e3"), Some(-1000.0));
        assert_eq!(score(b"no number here"), None);
        assert_eq!(score(b"inf NaN"), None);
        assert_eq!(score(b""), None);
    }

    #[test]
    fn the_art_travels_as_its_own_executable_file() {
        let tool = ArtSpecification {
            data: Arc::from(&b"#!/bin/sh\necho 5\n"[..]),
            is_executable: false,
            arguments: vec!["-q".into()],
        };
        let submission = submission("rank", &tool);
        assert_eq!(submission.command, "./rank");
        assert_eq!(submission.arguments, ["-q"]);
        let file = submission.input_files.get("rank").expect("the ART file");
        assert!(file.is_executable);
        assert_eq!(file.file_data, b"#!/bin/sh\necho 5\n");
    }
}
