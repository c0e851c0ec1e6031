//! The checkpoint extension of the agent profile (docs/migration.md): the controller's
//! requests that freeze, copy, restore and release a task on an agent that announced
//! `checkpoint`, and that agent's replies. Apple's agents never see these names, so they
//! live in their own enums beside [`ControllerToAgentRequest`](super::ControllerToAgentRequest)
//! and [`AgentReply`](super::AgentReply): a reader tries [`MigrationRequest::from_envelope`]
//! first and falls back to Apple's messages when it answers `None`.

use super::fields::{Fields, Payload};
use super::states::CheckpointDisposition;
use super::{envelope, ErrorCode, MessageError};
use crate::envelope::{Envelope, MessageType};
use crate::plist::Dictionary;

type Result<T> = std::result::Result<T, MessageError>;

/// The `agentRegistration` key listing the agent's CPU flags (as in `/proc/cpuinfo`): a task
/// checkpointed on one agent is restored only on an agent whose flags include all of them.
pub const CPU_FEATURES_KEY: &str = "xgridCPUFeatures";

/// The `agentStatus` key saying why a checkpointing agent is `Unavailable`.
pub const UNAVAILABLE_REASON_KEY: &str = "xgridUnavailableReason";

/// The `agentStatus` key listing the tasks a checkpointing agent holds frozen for a move:
/// a dictionary from each checkpoint identifier to its task's taskRef. A task stays frozen
/// until the controller releases its checkpoint, across a lost connection too, so that the
/// controller, which alone knows whether the task now runs elsewhere, decides.
pub const FROZEN_CHECKPOINTS_KEY: &str = "xgridFrozenCheckpoints";

/// The capability (under `xgridLinuxCapabilities`) that allows every message of this module.
pub const CHECKPOINT_CAPABILITY: &str = "checkpoint";

/// The size of the chunks the controller reads a checkpoint stream in.
pub const CHECKPOINT_CHUNK: u64 = 1 << 20;

/// `taskCheckpoint`: dump a running task.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TaskCheckpointRequest {
    pub task_ref: String,
    /// `YES`: the task goes on after the dump (periodic checkpoint). `NO`: it stays frozen
    /// until `checkpointRelease` (migration, evacuation).
    pub leave_running: bool,
}

/// `checkpointRead`: the next chunk of a checkpoint stream, read in order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CheckpointReadRequest {
    pub checkpoint_identifier: String,
    pub offset: u64,
    pub length: u64,
}

/// `checkpointWrite`: one chunk of a stream to the destination agent, in order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CheckpointWriteRequest {
    /// Chosen by the controller.
    pub checkpoint_identifier: String,
    pub offset: u64,
    pub checkpoint_data: Vec<u8>,
    pub end_of_checkpoint: bool,
}

/// `taskRestore`: run a fully written stream as a task of this agent.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TaskRestoreRequest {
    pub checkpoint_identifier: String,
    /// `YES`: the restored task stays frozen until `checkpointRelease` of this identifier
    /// (`resume` once the controller has recorded the move, `cancel` if the move may not
    /// land), so that a controller lost in between never leaves it running at both ends.
    pub leave_stopped: bool,
}

/// `checkpointRelease`: what the source agent does with a checkpoint it took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointReleaseRequest {
    pub checkpoint_identifier: String,
    pub disposition: CheckpointDisposition,
}

/// A request of the checkpoint extension, from the controller to a checkpointing agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MigrationRequest {
    TaskCheckpoint(TaskCheckpointRequest),
    CheckpointRead(CheckpointReadRequest),
    CheckpointWrite(CheckpointWriteRequest),
    TaskRestore(TaskRestoreRequest),
    CheckpointRelease(CheckpointReleaseRequest),
}

impl MigrationRequest {
    /// The names this module reads, in the order of a migration.
    pub const NAMES: [&'static str; 5] = [
        "taskCheckpoint",
        "checkpointRead",
        "checkpointWrite",
        "taskRestore",
        "checkpointRelease",
    ];

    /// `Ok(None)` when the envelope's name is not one of [`Self::NAMES`] (an Apple request).
    pub fn from_envelope(envelope: &Envelope) -> Result<Option<MigrationRequest>> {
        use MigrationRequest as R;
        let f = &Fields::new(&envelope.name, &envelope.payload);
        let identifier = || f.required_string("checkpointIdentifier");
        Ok(Some(match envelope.name.as_str() {
            "taskCheckpoint" => R::TaskCheckpoint(TaskCheckpointRequest {
                task_ref: f.required_string("taskRef")?,
                leave_running: f.flag("leaveRunning")?,
            }),
            "checkpointRead" => R::CheckpointRead(CheckpointReadRequest {
                checkpoint_identifier: identifier()?,
                offset: f.size("offset")?,
                length: f.size("length")?,
            }),
            "checkpointWrite" => R::CheckpointWrite(CheckpointWriteRequest {
                checkpoint_identifier: identifier()?,
                offset: f.size("offset")?,
                checkpoint_data: f.data("checkpointData")?,
                end_of_checkpoint: f.flag("endOfCheckpoint")?,
            }),
            "taskRestore" => R::TaskRestore(TaskRestoreRequest {
                checkpoint_identifier: identifier()?,
                leave_stopped: f.flag("leaveStopped")?,
            }),
            "checkpointRelease" => R::CheckpointRelease(CheckpointReleaseRequest {
                checkpoint_identifier: identifier()?,
                disposition: f.required_enumeration("disposition")?,
            }),
            _ => return Ok(None),
        }))
    }

    pub fn name(&self) -> &'static str {
        use MigrationRequest as R;
        match self {
            R::TaskCheckpoint(_) => "taskCheckpoint",
            R::CheckpointRead(_) => "checkpointRead",
            R::CheckpointWrite(_) => "checkpointWrite",
            R::TaskRestore(_) => "taskRestore",
            R::CheckpointRelease(_) => "checkpointRelease",
        }
    }

    pub fn to_payload(&self) -> Dictionary {
        use MigrationRequest as R;
        let p = Payload::new();
        match self {
            R::TaskCheckpoint(r) => p
                .string("taskRef", &r.task_ref)
                .yes_no("leaveRunning", r.leave_running),
            R::CheckpointRead(r) => p
                .string("checkpointIdentifier", &r.checkpoint_identifier)
                .size("offset", r.offset)
                .size("length", r.length),
            R::CheckpointWrite(r) => p
                .string("checkpointIdentifier", &r.checkpoint_identifier)
                .size("offset", r.offset)
                .data("checkpointData", &r.checkpoint_data)
                .yes_no("endOfCheckpoint", r.end_of_checkpoint),
            R::TaskRestore(r) => p
                .string("checkpointIdentifier", &r.checkpoint_identifier)
                .yes_no("leaveStopped", r.leave_stopped),
            R::CheckpointRelease(r) => p
                .string("checkpointIdentifier", &r.checkpoint_identifier)
                .string("disposition", r.disposition.as_str()),
        }
        .finish()
    }

    pub fn to_envelope(&self, identifier: &str) -> Envelope {
        envelope(
            identifier,
            self.name(),
            MessageType::Request,
            self.to_payload(),
        )
    }
}

/// The reply to `taskCheckpoint`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TaskCheckpointReply {
    pub checkpoint_identifier: String,
    /// Octets of the whole stream.
    pub checkpoint_size: u64,
    /// Sizes of the task's stdout and stderr files at the dump: the controller holds exactly
    /// this much output before it moves the task, and truncates to it before a restore.
    pub stdout_size: u64,
    pub stderr_size: u64,
    pub frozen_milliseconds: u64,
}

/// The reply to `checkpointRead`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CheckpointReadReply {
    /// At most the requested length, from the requested offset.
    pub checkpoint_data: Vec<u8>,
    pub end_of_checkpoint: bool,
}

/// An error reply of the extension: `{error = CODE; reason = "words"}`, CODE one of
/// `InvalidTaskRef`, `InvalidCheckpoint`, `CheckpointFailed`, `RestoreFailed`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationRefusal {
    pub code: ErrorCode,
    /// Words for the job log (e.g. CRIU's own message); may be empty.
    pub reason: String,
}

impl MigrationRefusal {
    pub fn new(code: ErrorCode, reason: impl Into<String>) -> MigrationRefusal {
        MigrationRefusal {
            code,
            reason: reason.into(),
        }
    }

    /// `None` when the payload is not an error reply.
    pub fn from_payload(payload: &Dictionary) -> Option<MigrationRefusal> {
        let code = ErrorCode::from_payload(payload)?;
        let reason = payload
            .get("reason")
            .and_then(|r| r.to_string_lenient())
            .unwrap_or_default();
        Some(MigrationRefusal { code, reason })
    }

    pub fn to_payload(&self) -> Dictionary {
        let mut payload = self.code.to_payload();
        if !self.reason.is_empty() {
            payload.insert("reason".into(), self.reason.as_str().into());
        }
        payload
    }
}

impl std::fmt::Display for MigrationRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.reason.is_empty() {
            write!(f, "{}", self.code)
        } else {
            write!(f, "{}: {}", self.code, self.reason)
        }
    }
}

/// A checkpointing agent's reply to a [`MigrationRequest`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MigrationReply {
    TaskCheckpoint(TaskCheckpointReply),
    CheckpointRead(CheckpointReadReply),
    CheckpointWrite,
    /// The restored task's new taskRef on this agent.
    TaskRestore {
        task_ref: String,
    },
    CheckpointRelease,
    Error {
        name: String,
        refusal: MigrationRefusal,
    },
}

impl MigrationReply {
    /// Reads the reply by its name; an `{error}` payload is [`MigrationReply::Error`] whatever
    /// the name.
    pub fn from_envelope(envelope: &Envelope) -> Result<MigrationReply> {
        let name = envelope.name.as_str();
        if let Some(refusal) = MigrationRefusal::from_payload(&envelope.payload) {
            return Ok(MigrationReply::Error {
                name: name.to_string(),
                refusal,
            });
        }
        let f = &Fields::new(name, &envelope.payload);
        Ok(match name {
            "taskCheckpoint" => MigrationReply::TaskCheckpoint(TaskCheckpointReply {
                checkpoint_identifier: f.required_string("checkpointIdentifier")?,
                checkpoint_size: f.size("checkpointSize")?,
                stdout_size: f.size("stdoutSize")?,
                stderr_size: f.size("stderrSize")?,
                frozen_milliseconds: f.size("frozenMilliseconds")?,
            }),
            "checkpointRead" => MigrationReply::CheckpointRead(CheckpointReadReply {
                checkpoint_data: f.data("checkpointData")?,
                end_of_checkpoint: f.flag("endOfCheckpoint")?,
            }),
            "checkpointWrite" => MigrationReply::CheckpointWrite,
            "taskRestore" => MigrationReply::TaskRestore {
                task_ref: f.required_string("taskRef")?,
            },
            "checkpointRelease" => MigrationReply::CheckpointRelease,
            other => {
                return Err(MessageError::UnknownMessage {
                    name: other.to_string(),
                    expected: "reply to a checkpoint request",
                })
            }
        })
    }

    pub fn name(&self) -> &str {
        match self {
            MigrationReply::TaskCheckpoint(_) => "taskCheckpoint",
            MigrationReply::CheckpointRead(_) => "checkpointRead",
            MigrationReply::CheckpointWrite => "checkpointWrite",
            MigrationReply::TaskRestore { .. } => "taskRestore",
            MigrationReply::CheckpointRelease => "checkpointRelease",
            MigrationReply::Error { name, .. } => name,
        }
    }

    pub fn to_payload(&self) -> Dictionary {
        let p = Payload::new();
        match self {
            MigrationReply::TaskCheckpoint(r) => p
                .string("checkpointIdentifier", &r.checkpoint_identifier)
                .size("checkpointSize", r.checkpoint_size)
                .size("stdoutSize", r.stdout_size)
                .size("stderrSize", r.stderr_size)
                .size("frozenMilliseconds", r.frozen_milliseconds),
            MigrationReply::CheckpointRead(r) => p
                .data("checkpointData", &r.checkpoint_data)
                .yes_no("endOfCheckpoint", r.end_of_checkpoint),
            MigrationReply::TaskRestore { task_ref } => p.string("taskRef", task_ref),
            MigrationReply::CheckpointWrite | MigrationReply::CheckpointRelease => p,
            MigrationReply::Error { refusal, .. } => return refusal.to_payload(),
        }
        .finish()
    }

    pub fn to_envelope(&self, identifier: &str) -> Envelope {
        envelope(
            identifier,
            self.name(),
            MessageType::Reply,
            self.to_payload(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::super::dict;
    use super::super::{AgentState, AgentStatus, UnavailableReason};
    use super::*;
    use crate::plist::Value;
    use proptest::prelude::*;

    fn request(name: &str, payload: Dictionary) -> Result<Option<MigrationRequest>> {
        MigrationRequest::from_envelope(&envelope("4", name, MessageType::Request, payload))
    }

    fn reply(name: &str, payload: Dictionary) -> MigrationReply {
        MigrationReply::from_envelope(&envelope("4", name, MessageType::Reply, payload))
            .expect("parses")
    }

    #[test]
    fn requests_read_the_documented_keys() {
        let checkpoint = request(
            "taskCheckpoint",
            dict! {"taskRef" => "12", "leaveRunning" => "NO"},
        );
        assert_eq!(
            checkpoint,
            Ok(Some(MigrationRequest::TaskCheckpoint(
                TaskCheckpointRequest {
                    task_ref: "12".into(),
                    leave_running: false
                }
            )))
        );
        let read = request(
            "checkpointRead",
            dict! {"checkpointIdentifier" => "c1", "offset" => Value::Integer(1048576), "length" => "1048576"},
        );
        assert_eq!(
            read,
            Ok(Some(MigrationRequest::CheckpointRead(
                CheckpointReadRequest {
                    checkpoint_identifier: "c1".into(),
                    offset: 1 << 20,
                    length: 1 << 20
                }
            )))
        );
        let write = request(
            "checkpointWrite",
            dict! {"checkpointIdentifier" => "t7", "offset" => "0",
            "checkpointData" => Value::Data(vec![1, 2, 3]), "endOfCheckpoint" => "YES"},
        );
        assert_eq!(
            write,
            Ok(Some(MigrationRequest::CheckpointWrite(
                CheckpointWriteRequest {
                    checkpoint_identifier: "t7".into(),
                    offset: 0,
                    checkpoint_data: vec![1, 2, 3],
                    end_of_checkpoint: true
                }
            )))
        );
        let release = request(
            "checkpointRelease",
            dict! {"checkpointIdentifier" => "c1", "disposition" => "Cancel"},
        );
        assert_eq!(
            release,
            Ok(Some(MigrationRequest::CheckpointRelease(
                CheckpointReleaseRequest {
                    checkpoint_identifier: "c1".into(),
                    disposition: CheckpointDisposition::Cancel
                }
            )))
        );
    }

    #[test]
    fn apple_requests_are_left_to_the_caller() {
        assert_eq!(
            request("taskSubmission", dict! {"command" => "/bin/true"}),
            Ok(None)
        );
        assert_eq!(request("", dict! {}), Ok(None));
    }

    #[test]
    fn malformed_requests_name_the_field() {
        let err = request("taskRestore", dict! {}).expect_err("refused");
        assert_eq!(err.field(), Some("checkpointIdentifier"));
        let err = request(
            "checkpointRead",
            dict! {"checkpointIdentifier" => "c", "offset" => "-5", "length" => "10"},
        )
        .expect_err("refused");
        assert_eq!(err.field(), Some("offset"));
        let err = request(
            "checkpointRelease",
            dict! {"checkpointIdentifier" => "c", "disposition" => "keep"},
        )
        .expect_err("refused");
        assert_eq!(err.field(), Some("disposition"));
    }

    #[test]
    fn replies_read_the_documented_keys() {
        let r = reply(
            "taskCheckpoint",
            dict! {"checkpointIdentifier" => "c1", "checkpointSize" => "7400000",
            "stdoutSize" => Value::Integer(120), "stderrSize" => "0", "frozenMilliseconds" => "155"},
        );
        assert_eq!(
            r,
            MigrationReply::TaskCheckpoint(TaskCheckpointReply {
                checkpoint_identifier: "c1".into(),
                checkpoint_size: 7_400_000,
                stdout_size: 120,
                stderr_size: 0,
                frozen_milliseconds: 155
            })
        );
        assert_eq!(
            reply("taskRestore", dict! {"taskRef" => Value::Integer(31)}),
            MigrationReply::TaskRestore {
                task_ref: "31".into()
            }
        );
        assert_eq!(
            reply("checkpointWrite", dict! {}),
            MigrationReply::CheckpointWrite
        );
        assert_eq!(
            reply("checkpointRelease", dict! {}),
            MigrationReply::CheckpointRelease
        );
    }

    #[test]
    fn error_replies_carry_code_and_reason() {
        let payload = dict! {"error" => "RestoreFailed", "reason" => "criu: bad size of stdout"};
        let r = reply("taskRestore", payload.clone());
        let MigrationReply::Error { name, refusal } = &r else {
            panic!("not an error: {r:?}")
        };
        assert_eq!(name, "taskRestore");
        assert_eq!(refusal.code, ErrorCode::RestoreFailed);
        assert_eq!(refusal.reason, "criu: bad size of stdout");
        assert_eq!(
            refusal.to_string(),
            "RestoreFailed: criu: bad size of stdout"
        );
        assert_eq!(r.to_payload(), payload);
        for (text, code) in [
            ("InvalidTaskRef", ErrorCode::InvalidTaskRef),
            ("InvalidCheckpoint", ErrorCode::InvalidCheckpoint),
            ("CheckpointFailed", ErrorCode::CheckpointFailed),
        ] {
            let r = reply("taskCheckpoint", dict! {"error" => text});
            assert_eq!(
                r,
                MigrationReply::Error {
                    name: "taskCheckpoint".into(),
                    refusal: MigrationRefusal::new(code, "")
                }
            );
            assert_eq!(r.to_payload(), dict! {"error" => text});
        }
    }

    #[test]
    fn unavailable_reason_travels_in_agent_status() {
        let mut payload = dict! {
            "agentCookie" => "c", "agentName" => "linux1", "agentStatus" => "Unavailable",
            "currentCPUPower" => "0", "currentTaskCount" => "1",
            "taskRefArray" => vec![Value::from("3")],
        };
        payload.insert(UNAVAILABLE_REASON_KEY.into(), "shutdown".into());
        let note = super::super::AgentNotification::from_envelope(&envelope(
            "",
            "agentStatus",
            MessageType::Notification,
            payload.clone(),
        ))
        .expect("parses");
        let super::super::AgentNotification::AgentStatus(status) = &note else {
            panic!("wrong variant")
        };
        assert_eq!(status.agent_status, AgentState::Unavailable);
        assert_eq!(status.unavailable_reason, Some(UnavailableReason::Shutdown));
        assert_eq!(note.to_payload(), payload);

        // A reason this side does not know is dropped, not fatal: the controller then treats
        // the agent as an Apple one whose owner came back.
        payload.insert(UNAVAILABLE_REASON_KEY.into(), "maintenance".into());
        let note = super::super::AgentNotification::from_envelope(&envelope(
            "",
            "agentStatus",
            MessageType::Notification,
            payload,
        ))
        .expect("parses");
        let super::super::AgentNotification::AgentStatus(AgentStatus {
            unavailable_reason, ..
        }) = note
        else {
            panic!("wrong variant")
        };
        assert_eq!(unavailable_reason, None);
    }

    #[test]
    fn frozen_checkpoints_travel_in_agent_status_and_are_left_out_when_none() {
        let mut payload = dict! {
            "agentCookie" => "c", "agentName" => "linux1", "agentStatus" => "Available",
            "currentCPUPower" => "0", "currentTaskCount" => "1",
            "taskRefArray" => vec![Value::from("3")],
        };
        let read =
            |payload: &Dictionary| match super::super::AgentNotification::from_envelope(&envelope(
                "",
                "agentStatus",
                MessageType::Notification,
                payload.clone(),
            ))
            .expect("parses")
            {
                super::super::AgentNotification::AgentStatus(status) => status,
                other => panic!("wrong variant {other:?}"),
            };
        let status = read(&payload);
        assert!(
            status.frozen_checkpoints.is_empty(),
            "Apple agents send none"
        );
        assert_eq!(status.to_payload().get(FROZEN_CHECKPOINTS_KEY), None);

        payload.insert(
            FROZEN_CHECKPOINTS_KEY.into(),
            Value::Dictionary(dict! {"3-1" => "3"}),
        );
        let status = read(&payload);
        assert_eq!(
            status.frozen_checkpoints.into_iter().collect::<Vec<_>>(),
            [("3-1".to_string(), "3".to_string())]
        );
        // Not a dictionary of strings: the status cannot be read, rather than a frozen task
        // being overlooked.
        payload.insert(FROZEN_CHECKPOINTS_KEY.into(), Value::from("3-1"));
        assert!(super::super::AgentNotification::from_envelope(&envelope(
            "",
            "agentStatus",
            MessageType::Notification,
            payload,
        ))
        .is_err());
    }

    fn text() -> impl Strategy<Value = String> {
        "[ -~]{0,12}"
    }

    fn any_request() -> impl Strategy<Value = MigrationRequest> {
        prop_oneof![
            (text(), any::<bool>()).prop_map(|(task_ref, leave_running)| {
                MigrationRequest::TaskCheckpoint(TaskCheckpointRequest {
                    task_ref,
                    leave_running,
                })
            }),
            (text(), any::<u64>(), any::<u64>()).prop_map(|(id, offset, length)| {
                MigrationRequest::CheckpointRead(CheckpointReadRequest {
                    checkpoint_identifier: id,
                    offset: offset >> 1,
                    length: length >> 1,
                })
            }),
            (
                text(),
                any::<u32>(),
                proptest::collection::vec(any::<u8>(), 0..64),
                any::<bool>()
            )
                .prop_map(|(id, offset, data, end)| {
                    MigrationRequest::CheckpointWrite(CheckpointWriteRequest {
                        checkpoint_identifier: id,
                        offset: u64::from(offset),
                        checkpoint_data: data,
                        end_of_checkpoint: end,
                    })
                }),
            (text(), any::<bool>()).prop_map(|(id, leave_stopped)| {
                MigrationRequest::TaskRestore(TaskRestoreRequest {
                    checkpoint_identifier: id,
                    leave_stopped,
                })
            }),
            (text(), proptest::sample::select(CheckpointDisposition::ALL)).prop_map(
                |(id, disposition)| {
                    MigrationRequest::CheckpointRelease(CheckpointReleaseRequest {
                        checkpoint_identifier: id,
                        disposition,
                    })
                }
            ),
        ]
    }

    fn any_reply() -> impl Strategy<Value = MigrationReply> {
        prop_oneof![
            (
                text(),
                any::<u32>(),
                any::<u32>(),
                any::<u32>(),
                any::<u32>()
            )
                .prop_map(|(id, size, out, err, frozen)| {
                    MigrationReply::TaskCheckpoint(TaskCheckpointReply {
                        checkpoint_identifier: id,
                        checkpoint_size: u64::from(size),
                        stdout_size: u64::from(out),
                        stderr_size: u64::from(err),
                        frozen_milliseconds: u64::from(frozen),
                    })
                }),
            (proptest::collection::vec(any::<u8>(), 0..64), any::<bool>()).prop_map(
                |(data, end)| MigrationReply::CheckpointRead(CheckpointReadReply {
                    checkpoint_data: data,
                    end_of_checkpoint: end,
                })
            ),
            Just(MigrationReply::CheckpointWrite),
            text().prop_map(|task_ref| MigrationReply::TaskRestore { task_ref }),
            Just(MigrationReply::CheckpointRelease),
            (
                proptest::sample::select(MigrationRequest::NAMES.to_vec()),
                proptest::sample::select(vec![
                    ErrorCode::InvalidTaskRef,
                    ErrorCode::InvalidCheckpoint,
                    ErrorCode::CheckpointFailed,
                    ErrorCode::RestoreFailed
                ]),
                text()
            )
                .prop_map(|(name, code, reason)| MigrationReply::Error {
                    name: name.to_string(),
                    refusal: MigrationRefusal::new(code, reason),
                }),
        ]
    }

    proptest! {
        #[test]
        fn requests_round_trip(r in any_request()) {
            let envelope = r.to_envelope("9");
            prop_assert_eq!(envelope.name.as_str(), r.name());
            prop_assert_eq!(MigrationRequest::from_envelope(&envelope), Ok(Some(r)));
        }

        #[test]
        fn replies_round_trip(r in any_reply()) {
            let envelope = r.to_envelope("9");
            prop_assert_eq!(MigrationReply::from_envelope(&envelope), Ok(r));
        }
    }
}
