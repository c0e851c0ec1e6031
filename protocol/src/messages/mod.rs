//! Typed Xgrid messages (xgrid-wire.md §4, §5.3, §5.4): one struct per payload with a lenient
//! reader (`from_payload`) and an exact writer (`to_payload`), and enums that dispatch an
//! [`Envelope`] by its name.
//!
//! The envelope's `type` picks the enum: on the client channel a controller reads requests as
//! [`ClientRequest`] and answers with [`ControllerReply`] and [`ClientNotification`]; on the
//! agent channel it reads [`AgentRequest`], [`AgentNotification`] and [`AgentReply`] and sends
//! [`ControllerToAgentRequest`] and [`ControllerToAgentReply`]. Several names exist in more
//! than one direction (`agentStatus`, `taskControl`, `jobAttributes`), so the `from_envelope`
//! functions trust the caller's choice of enum and do not look at the type again.

mod agent;
mod attributes;
mod client;
mod fields;
mod migration;
mod results;
mod states;

pub use agent::{
    AgentNotification, AgentRegistration, AgentReply, AgentRequest, AgentStatus,
    AgentStatusRequest, ControllerToAgentReply, ControllerToAgentRequest, InputFile,
    TaskControlNotice, TaskControlRequest, TaskFinalResultsReply, TaskRefRequest, TaskResultsReply,
    TaskStatus, TaskSubmission, END_OUTPUT_FLAGGED_CAPABILITY, LINUX_CAPABILITIES_KEY,
};
pub use attributes::{AgentAttributes, GridAttributes, JobAttributes};
pub use client::{
    AgentGridRequest, AgentQuery, ClientNotification, ClientRequest, ControllerEntry,
    ControllerListReply, ControllerReply, GridControlRequest, GridQuery, JobAddTask,
    JobControlRequest, JobQuery, JobSubmission, ListQuery, Subscription, MASTER_ROLE,
};
pub use migration::{
    CheckpointReadReply, CheckpointReadRequest, CheckpointReleaseRequest, CheckpointWriteRequest,
    MigrationRefusal, MigrationReply, MigrationRequest, TaskCheckpointReply, TaskCheckpointRequest,
    TaskRestoreRequest, CHECKPOINT_CAPABILITY, CHECKPOINT_CHUNK, CPU_FEATURES_KEY,
    FROZEN_CHECKPOINTS_KEY, UNAVAILABLE_REASON_KEY,
};
pub use results::{TaskOutputs, TaskStreams};
pub use states::{
    AgentState, CheckpointDisposition, GridAction, GridStatus, JobAction, JobStatus, TaskAction,
    TaskErrorKind, TaskState, UnavailableReason, WireEnum,
};

use crate::envelope::{Envelope, MessageType};
use crate::plist::{Dictionary, Value};

/// Why a payload could not be read as the message its name announces.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    #[error("the `{message}` message lacks its required field `{field}`")]
    MissingField { message: String, field: String },
    #[error("in the `{message}` message, field `{field}` should be {expected} but is {found}")]
    WrongKind {
        message: String,
        field: String,
        expected: &'static str,
        found: &'static str,
    },
    #[error(
        "in the `{message}` message, field `{field}` holds `{value}`, which is not {expected}"
    )]
    BadValue {
        message: String,
        field: String,
        value: String,
        expected: &'static str,
    },
    #[error("`{name}` is not a {expected} this implementation knows")]
    UnknownMessage {
        name: String,
        expected: &'static str,
    },
}

impl MessageError {
    /// The field the error is about (a dotted path for nested fields), if any.
    pub fn field(&self) -> Option<&str> {
        match self {
            MessageError::MissingField { field, .. }
            | MessageError::WrongKind { field, .. }
            | MessageError::BadValue { field, .. } => Some(field),
            MessageError::UnknownMessage { .. } => None,
        }
    }

    /// The error code a controller answers a malformed client request with, chosen from the
    /// field at fault so clients see the same codes Apple's controller gives.
    pub fn reply_code(&self) -> ErrorCode {
        let top = self
            .field()
            .map(|f| f.split(['.', '[']).next().unwrap_or(f));
        match top {
            Some("control") => ErrorCode::InvalidControl,
            Some("jobSpecification") => ErrorCode::InvalidJobSpecification,
            Some("taskSpecifications") => ErrorCode::InvalidTaskSpecification,
            Some("jobIdentifier") => ErrorCode::InvalidJobIdentifier,
            Some("gridIdentifier") => ErrorCode::InvalidGridIdentifier,
            Some("agentIdentifier") => ErrorCode::InvalidAgentIdentifier,
            _ => ErrorCode::InvalidRequest,
        }
    }
}

/// The codes of an error reply `{error = CODE}`: the controller's, then the agent's (whose
/// codes are lower-case phrases), then anything else a peer may send.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    AccessDenied,
    InvalidRequest,
    InvalidGridIdentifier,
    InvalidGridName,
    InvalidControl,
    InvalidAgentIdentifier,
    InvalidJobIdentifier,
    JobCannotBeRestarted,
    InvalidTaskSpecification,
    PromotionFailed,
    InvalidType,
    InvalidJobSpecification,
    /// Agent: `InvalidTaskRef`.
    InvalidTaskRef,
    /// Agent: `too many tasks`.
    TooManyTasks,
    /// Agent: `agent unavailable`.
    AgentUnavailable,
    /// Controller to agent: `invalid cookie` (the agent then registers afresh).
    InvalidCookie,
    /// Checkpoint extension: an unknown checkpoint, or a chunk out of order.
    InvalidCheckpoint,
    /// Checkpoint extension: CRIU could not dump the task (it runs on).
    CheckpointFailed,
    /// Checkpoint extension: CRIU could not restore the stream (nothing is left running).
    RestoreFailed,
    /// A code outside the lists above, kept as sent.
    Other(String),
}

impl ErrorCode {
    const KNOWN: [ErrorCode; 19] = [
        ErrorCode::AccessDenied,
        ErrorCode::InvalidRequest,
        ErrorCode::InvalidGridIdentifier,
        ErrorCode::InvalidGridName,
        ErrorCode::InvalidControl,
        ErrorCode::InvalidAgentIdentifier,
        ErrorCode::InvalidJobIdentifier,
        ErrorCode::JobCannotBeRestarted,
        ErrorCode::InvalidTaskSpecification,
        ErrorCode::PromotionFailed,
        ErrorCode::InvalidType,
        ErrorCode::InvalidJobSpecification,
        ErrorCode::InvalidTaskRef,
        ErrorCode::TooManyTasks,
        ErrorCode::AgentUnavailable,
        ErrorCode::InvalidCookie,
        ErrorCode::InvalidCheckpoint,
        ErrorCode::CheckpointFailed,
        ErrorCode::RestoreFailed,
    ];

    /// The exact wire string.
    pub fn as_str(&self) -> &str {
        match self {
            ErrorCode::AccessDenied => "AccessDenied",
            ErrorCode::InvalidRequest => "InvalidRequest",
            ErrorCode::InvalidGridIdentifier => "InvalidGridIdentifier",
            ErrorCode::InvalidGridName => "InvalidGridName",
            ErrorCode::InvalidControl => "InvalidControl",
            ErrorCode::InvalidAgentIdentifier => "InvalidAgentIdentifier",
            ErrorCode::InvalidJobIdentifier => "InvalidJobIdentifier",
            ErrorCode::JobCannotBeRestarted => "JobCannotBeRestarted",
            ErrorCode::InvalidTaskSpecification => "InvalidTaskSpecification",
            ErrorCode::PromotionFailed => "PromotionFailed",
            ErrorCode::InvalidType => "InvalidType",
            ErrorCode::InvalidJobSpecification => "InvalidJobSpecification",
            ErrorCode::InvalidTaskRef => "InvalidTaskRef",
            ErrorCode::TooManyTasks => "too many tasks",
            ErrorCode::AgentUnavailable => "agent unavailable",
            ErrorCode::InvalidCookie => "invalid cookie",
            ErrorCode::InvalidCheckpoint => "InvalidCheckpoint",
            ErrorCode::CheckpointFailed => "CheckpointFailed",
            ErrorCode::RestoreFailed => "RestoreFailed",
            ErrorCode::Other(code) => code,
        }
    }

    /// Lenient: any case and surrounding blanks; unknown codes are kept as [`ErrorCode::Other`].
    pub fn parse(text: &str) -> ErrorCode {
        let text = text.trim();
        Self::KNOWN
            .iter()
            .find(|code| code.as_str().eq_ignore_ascii_case(text))
            .cloned()
            .unwrap_or_else(|| ErrorCode::Other(text.to_string()))
    }

    /// The code of an error reply, or `None` when the payload is not one.
    pub fn from_payload(payload: &Dictionary) -> Option<ErrorCode> {
        payload
            .get("error")?
            .to_string_lenient()
            .map(|code| ErrorCode::parse(&code))
    }

    /// `{error = CODE}`.
    pub fn to_payload(&self) -> Dictionary {
        Dictionary::from([("error".to_string(), Value::from(self.as_str()))])
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error reply to the request `name` sent with `identifier` (both echoed back).
pub fn error_reply(identifier: &str, name: &str, code: &ErrorCode) -> Envelope {
    envelope(identifier, name, MessageType::Reply, code.to_payload())
}

fn envelope(
    identifier: &str,
    name: &str,
    message_type: MessageType,
    payload: Dictionary,
) -> Envelope {
    Envelope {
        identifier: identifier.to_string(),
        name: name.to_string(),
        message_type,
        payload,
    }
}

/// Builds a [`Dictionary`] in tests: `dict! { "key" => value, ... }`.
#[cfg(test)]
macro_rules! dict {
    ($($key:expr => $value:expr),* $(,)?) => {{
        #[allow(unused_mut)]
        let mut d = $crate::plist::Dictionary::new();
        $(d.insert($key.to_string(), $crate::plist::Value::from($value));)*
        d
    }};
}
#[cfg(test)]
pub(crate) use dict;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_keep_their_exact_wire_strings() {
        assert_eq!(ErrorCode::TooManyTasks.as_str(), "too many tasks");
        assert_eq!(
            ErrorCode::InvalidCookie.to_payload(),
            dict! {"error" => "invalid cookie"}
        );
        for code in ErrorCode::KNOWN {
            assert_eq!(ErrorCode::parse(code.as_str()), code);
        }
    }

    #[test]
    fn error_codes_parse_leniently() {
        assert_eq!(
            ErrorCode::parse(" invalidrequest "),
            ErrorCode::InvalidRequest
        );
        assert_eq!(
            ErrorCode::parse("Agent Unavailable"),
            ErrorCode::AgentUnavailable
        );
        assert_eq!(
            ErrorCode::parse("NoSuchThing"),
            ErrorCode::Other("NoSuchThing".into())
        );
    }

    #[test]
    fn recognises_error_replies() {
        let reply = dict! {"error" => "InvalidJobIdentifier"};
        assert_eq!(
            ErrorCode::from_payload(&reply),
            Some(ErrorCode::InvalidJobIdentifier)
        );
        assert_eq!(
            ErrorCode::from_payload(&dict! {"jobIdentifier" => "4"}),
            None
        );
        let envelope = error_reply("7", "bogus", &ErrorCode::InvalidRequest);
        assert_eq!(envelope.identifier, "7");
        assert_eq!(envelope.name, "bogus");
        assert_eq!(envelope.message_type, MessageType::Reply);
        assert_eq!(envelope.payload, dict! {"error" => "InvalidRequest"});
    }

    #[test]
    fn reply_code_follows_the_faulty_field() {
        let err = |field: &str| MessageError::MissingField {
            message: "x".into(),
            field: field.into(),
        };
        assert_eq!(err("control").reply_code(), ErrorCode::InvalidControl);
        assert_eq!(
            err("jobSpecification").reply_code(),
            ErrorCode::InvalidJobSpecification
        );
        assert_eq!(
            err("taskSpecifications.0").reply_code(),
            ErrorCode::InvalidTaskSpecification
        );
        assert_eq!(
            err("jobIdentifier").reply_code(),
            ErrorCode::InvalidJobIdentifier
        );
        assert_eq!(err("predicate").reply_code(), ErrorCode::InvalidRequest);
    }
}
