//! Messages of the agent profile (`…/controller/agent`, xgrid-wire.md §4.2): the agent's
//! registration, status and task notifications, the controller's task requests, and the
//! replies both ways.

use std::collections::BTreeMap;

use super::client::{ControllerListReply, ListQuery};
use super::fields::{Fields, Payload};
use super::migration::{CPU_FEATURES_KEY, FROZEN_CHECKPOINTS_KEY, UNAVAILABLE_REASON_KEY};
use super::results::{TaskOutputs, TaskStreams};
use super::states::{AgentState, TaskAction, TaskErrorKind, TaskState, UnavailableReason};
use super::{envelope, ErrorCode, MessageError};
use crate::envelope::{Envelope, MessageType};
use crate::plist::{Dictionary, Value};

type Result<T> = std::result::Result<T, MessageError>;

/// The `agentRegistration` key by which this project's Linux agent announces what it can do
/// beyond Apple's protocol (checkpointing, load reports…). Apple's controller ignores it; a
/// controller must send extension messages only to agents that announced them.
pub const LINUX_CAPABILITIES_KEY: &str = "xgridLinuxCapabilities";

/// The capability (under [`LINUX_CAPABILITIES_KEY`]) of an agent whose `taskStatus` of a
/// task's end says `dataAvailable = NO` only when it holds no output the controller has not
/// fetched: the controller then asks for no `taskResults` before `taskFinalResults`. Apple's
/// agents do not promise that, so their ended tasks are always asked for output.
pub const END_OUTPUT_FLAGGED_CAPABILITY: &str = "end-output-flagged";

/// `agentRegistration` (agent → controller request), also the agent's reply to `agentInfo`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AgentRegistration {
    /// Empty the first time; afterwards the cookie the controller handed out, so a
    /// reconnecting agent is matched to its earlier tasks.
    pub agent_cookie: String,
    pub agent_name: String,
    pub hostnames: Vec<String>,
    pub addresses: Vec<String>,
    /// Total megahertz of all processors.
    pub maximum_cpu_power: f64,
    pub maximum_task_count: i64,
    /// The owner's free-form `AgentCustom` setting, passed through.
    pub agent_custom: Option<Value>,
    /// Extensions announced under [`LINUX_CAPABILITIES_KEY`]; `None` for Apple agents.
    pub linux_capabilities: Option<Vec<String>>,
    /// The CPU flags announced under [`CPU_FEATURES_KEY`]; `None` for Apple agents.
    pub cpu_features: Option<Vec<String>>,
}

impl AgentRegistration {
    /// Whether the agent announced `capability` under [`LINUX_CAPABILITIES_KEY`] (Apple's
    /// agents announce none).
    pub fn announces(&self, capability: &str) -> bool {
        self.linux_capabilities
            .iter()
            .flatten()
            .any(|c| c == capability)
    }

    fn read(f: &Fields) -> Result<AgentRegistration> {
        Ok(AgentRegistration {
            agent_cookie: f.string("agentCookie")?,
            agent_name: f.string("agentName")?,
            hostnames: f.strings("hostnames")?,
            addresses: f.strings("addresses")?,
            maximum_cpu_power: f.real("maximumCPUPower")?,
            maximum_task_count: f.integer("maximumTaskCount")?,
            agent_custom: f.get("agentCustom").cloned(),
            linux_capabilities: if f.has(LINUX_CAPABILITIES_KEY) {
                Some(f.strings(LINUX_CAPABILITIES_KEY)?)
            } else {
                None
            },
            cpu_features: if f.has(CPU_FEATURES_KEY) {
                Some(f.strings(CPU_FEATURES_KEY)?)
            } else {
                None
            },
        })
    }

    pub fn to_payload(&self) -> Dictionary {
        let mut p = Payload::new()
            .string("agentCookie", &self.agent_cookie)
            .string("agentName", &self.agent_name)
            .strings("hostnames", &self.hostnames)
            .strings("addresses", &self.addresses)
            .number("maximumCPUPower", self.maximum_cpu_power)
            .integer("maximumTaskCount", self.maximum_task_count);
        if let Some(custom) = &self.agent_custom {
            p = p.value("agentCustom", custom.clone());
        }
        if let Some(capabilities) = &self.linux_capabilities {
            p = p.strings(LINUX_CAPABILITIES_KEY, capabilities);
        }
        if let Some(features) = &self.cpu_features {
            p = p.strings(CPU_FEATURES_KEY, features);
        }
        p.finish()
    }
}

/// An agent's state: the `agentStatus` notification, and its reply to the controller's
/// `agentStatus` request.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentStatus {
    pub agent_cookie: String,
    pub agent_name: String,
    /// Available, or Unavailable while the machine's owner is using it.
    pub agent_status: AgentState,
    pub current_cpu_power: f64,
    pub current_task_count: i64,
    pub task_ref_array: Vec<String>,
    /// Why a checkpointing agent is Unavailable ([`UNAVAILABLE_REASON_KEY`]); `None` from
    /// Apple agents, and for a reason this side does not know.
    pub unavailable_reason: Option<UnavailableReason>,
    /// The tasks a checkpointing agent holds frozen for a move, by checkpoint identifier
    /// ([`FROZEN_CHECKPOINTS_KEY`]); empty from Apple agents, and left out when empty.
    pub frozen_checkpoints: BTreeMap<String, String>,
}

impl AgentStatus {
    fn read(f: &Fields) -> Result<AgentStatus> {
        Ok(AgentStatus {
            agent_cookie: f.string("agentCookie")?,
            agent_name: f.string("agentName")?,
            agent_status: f.required_enumeration("agentStatus")?,
            current_cpu_power: f.real("currentCPUPower")?,
            current_task_count: f.integer("currentTaskCount")?,
            task_ref_array: f.strings("taskRefArray")?,
            // Lenient: an unknown reason must not cost the whole status.
            unavailable_reason: f
                .opt_string(UNAVAILABLE_REASON_KEY)?
                .and_then(|reason| UnavailableReason::parse(&reason)),
            frozen_checkpoints: f.string_map(FROZEN_CHECKPOINTS_KEY)?,
        })
    }

    pub fn to_payload(&self) -> Dictionary {
        let reason = self.unavailable_reason.map(UnavailableReason::as_str);
        Payload::new()
            .string("agentCookie", &self.agent_cookie)
            .string("agentName", &self.agent_name)
            .string("agentStatus", self.agent_status.as_str())
            .number("currentCPUPower", self.current_cpu_power)
            .integer("currentTaskCount", self.current_task_count)
            .strings("taskRefArray", &self.task_ref_array)
            .opt_string(UNAVAILABLE_REASON_KEY, reason)
            .when(!self.frozen_checkpoints.is_empty(), |p| {
                p.dictionary(
                    FROZEN_CHECKPOINTS_KEY,
                    self.frozen_checkpoints
                        .iter()
                        .map(|(id, task_ref)| (id.clone(), Value::from(task_ref.as_str())))
                        .collect(),
                )
            })
            .finish()
    }
}

/// The `taskStatus` notification's payload.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskStatus {
    pub task_state: TaskState,
    pub task_megahertz: f64,
    /// `None` while the task runs (written as `""`, as Apple's agent does).
    pub termination_status: Option<i64>,
    /// New output is waiting: the controller should ask for `taskResults`.
    pub data_available: bool,
}

impl TaskStatus {
    fn read(f: &Fields) -> Result<TaskStatus> {
        Ok(TaskStatus {
            task_state: f.required_enumeration("taskState")?,
            task_megahertz: f.real("taskMegahertz")?,
            termination_status: f.opt_integer("terminationStatus")?,
            data_available: f.flag("dataAvailable")?,
        })
    }

    pub fn to_payload(&self) -> Dictionary {
        let status = self
            .termination_status
            .map(|s| s.to_string())
            .unwrap_or_default();
        Payload::new()
            .string("taskState", self.task_state.as_str())
            .number("taskMegahertz", self.task_megahertz)
            .string("terminationStatus", &status)
            .yes_no("dataAvailable", self.data_available)
            .finish()
    }
}

/// What a task said between `<xgrid>` and `</xgrid>` on its standard output, relayed by the
/// agent as a `taskControl` notification.
#[derive(Debug, Clone, PartialEq)]
pub enum TaskControlNotice {
    /// `{control = statusUpdate, percentDone}`.
    StatusUpdate { percent_done: f64 },
    /// `{control = createTask, …}`: the other keys describe the task to add and are kept
    /// as sent.
    CreateTask(Dictionary),
    /// `{control = taskError, taskError = KIND, retryDelay?}`.
    TaskError {
        kind: TaskErrorKind,
        retry_delay: Option<f64>,
    },
}

impl TaskControlNotice {
    // Only the overall shape is known, so reading accepts the kind under `taskError` or
    // `error`, or as the `control` value itself; writing uses `taskError`.
    fn read(f: &Fields) -> Result<TaskControlNotice> {
        let control = f.required_string("control")?;
        if control.eq_ignore_ascii_case("statusUpdate") {
            return Ok(TaskControlNotice::StatusUpdate {
                percent_done: f.real("percentDone")?,
            });
        }
        if control.eq_ignore_ascii_case("createTask") {
            let mut rest = f.dictionary().clone();
            rest.remove("control");
            return Ok(TaskControlNotice::CreateTask(rest));
        }
        let retry_delay = f.opt_real("retryDelay")?;
        let kind = match TaskErrorKind::parse(&control) {
            Some(kind) => kind,
            None if control.eq_ignore_ascii_case("taskError") => {
                let key = if f.has("taskError") {
                    "taskError"
                } else {
                    "error"
                };
                f.required_enumeration(key)?
            }
            None => {
                return Err(MessageError::BadValue {
                    message: "taskControl".into(),
                    field: "control".into(),
                    value: control,
                    expected: "one of `statusUpdate` `createTask` `taskError`",
                })
            }
        };
        Ok(TaskControlNotice::TaskError { kind, retry_delay })
    }

    pub fn to_payload(&self) -> Dictionary {
        let p = Payload::new();
        match self {
            TaskControlNotice::StatusUpdate { percent_done } => p
                .string("control", "statusUpdate")
                .real("percentDone", *percent_done)
                .finish(),
            TaskControlNotice::CreateTask(rest) => {
                let mut out = rest.clone();
                out.insert("control".into(), Value::from("createTask"));
                out
            }
            TaskControlNotice::TaskError { kind, retry_delay } => {
                let p = p
                    .string("control", "taskError")
                    .string("taskError", kind.as_str());
                match retry_delay {
                    Some(delay) => p.number("retryDelay", *delay),
                    None => p,
                }
                .finish()
            }
        }
    }
}

/// A request from an agent to the controller.
#[derive(Debug, Clone, PartialEq)]
pub enum AgentRequest {
    ControllerList(ListQuery),
    AgentRegistration(AgentRegistration),
    /// The periodic request with an empty name; the controller answers
    /// `{error = InvalidRequest}`, which the agent expects.
    Keepalive,
    Unknown(String),
}

impl AgentRequest {
    pub fn from_envelope(envelope: &Envelope) -> Result<AgentRequest> {
        let f = &Fields::new(&envelope.name, &envelope.payload);
        Ok(match envelope.name.as_str() {
            "controllerList" => AgentRequest::ControllerList(ListQuery::read(f)?),
            "agentRegistration" => AgentRequest::AgentRegistration(AgentRegistration::read(f)?),
            "" => AgentRequest::Keepalive,
            other => AgentRequest::Unknown(other.to_string()),
        })
    }

    pub fn name(&self) -> &str {
        match self {
            AgentRequest::ControllerList(_) => "controllerList",
            AgentRequest::AgentRegistration(_) => "agentRegistration",
            AgentRequest::Keepalive => "",
            AgentRequest::Unknown(name) => name,
        }
    }

    pub fn to_payload(&self) -> Dictionary {
        match self {
            AgentRequest::ControllerList(q) => q.to_payload(),
            AgentRequest::AgentRegistration(r) => r.to_payload(),
            AgentRequest::Keepalive | AgentRequest::Unknown(_) => Dictionary::new(),
        }
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

/// The controller's reply to an [`AgentRequest`].
#[derive(Debug, Clone, PartialEq)]
pub enum ControllerToAgentReply {
    ControllerList(ControllerListReply),
    AgentRegistration {
        agent_cookie: String,
    },
    /// `{error = CODE}`: `invalid cookie` to a registration, `InvalidRequest` to a keepalive.
    Error {
        name: String,
        code: ErrorCode,
    },
}

impl ControllerToAgentReply {
    pub fn from_envelope(envelope: &Envelope) -> Result<ControllerToAgentReply> {
        let name = envelope.name.as_str();
        if let Some(code) = ErrorCode::from_payload(&envelope.payload) {
            return Ok(ControllerToAgentReply::Error {
                name: name.to_string(),
                code,
            });
        }
        let f = &Fields::new(name, &envelope.payload);
        match name {
            "controllerList" => Ok(ControllerToAgentReply::ControllerList(
                ControllerListReply::read(f)?,
            )),
            "agentRegistration" => Ok(ControllerToAgentReply::AgentRegistration {
                agent_cookie: f.required_string("agentCookie")?,
            }),
            other => Err(MessageError::UnknownMessage {
                name: other.to_string(),
                expected: "reply to an agent request",
            }),
        }
    }

    pub fn name(&self) -> &str {
        match self {
            ControllerToAgentReply::ControllerList(_) => "controllerList",
            ControllerToAgentReply::AgentRegistration { .. } => "agentRegistration",
            ControllerToAgentReply::Error { name, .. } => name,
        }
    }

    pub fn to_payload(&self) -> Dictionary {
        match self {
            ControllerToAgentReply::ControllerList(list) => list.to_payload(),
            ControllerToAgentReply::AgentRegistration { agent_cookie } => {
                Payload::new().string("agentCookie", agent_cookie).finish()
            }
            ControllerToAgentReply::Error { code, .. } => code.to_payload(),
        }
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

/// A notification from an agent.
#[derive(Debug, Clone, PartialEq)]
pub enum AgentNotification {
    /// Sent with an empty identifier.
    AgentStatus(AgentStatus),
    /// Sent with the taskRef as identifier.
    TaskStatus {
        task_ref: String,
        status: TaskStatus,
    },
    /// Sent with the taskRef as identifier.
    TaskControl {
        task_ref: String,
        notice: TaskControlNotice,
    },
}

impl AgentNotification {
    /// The taskRef comes from the envelope identifier, or from a `taskRef` key when a peer
    /// leaves the identifier empty.
    pub fn from_envelope(envelope: &Envelope) -> Result<AgentNotification> {
        let name = envelope.name.as_str();
        let f = &Fields::new(name, &envelope.payload);
        let task_ref = || -> Result<String> {
            if envelope.identifier.is_empty() {
                f.string("taskRef")
            } else {
                Ok(envelope.identifier.clone())
            }
        };
        Ok(match name {
            "agentStatus" => AgentNotification::AgentStatus(AgentStatus::read(f)?),
            "taskStatus" => AgentNotification::TaskStatus {
                task_ref: task_ref()?,
                status: TaskStatus::read(f)?,
            },
            "taskControl" => AgentNotification::TaskControl {
                task_ref: task_ref()?,
                notice: TaskControlNotice::read(f)?,
            },
            other => {
                return Err(MessageError::UnknownMessage {
                    name: other.to_string(),
                    expected: "notification from an agent",
                })
            }
        })
    }

    pub fn name(&self) -> &'static str {
        match self {
            AgentNotification::AgentStatus(_) => "agentStatus",
            AgentNotification::TaskStatus { .. } => "taskStatus",
            AgentNotification::TaskControl { .. } => "taskControl",
        }
    }

    pub fn identifier(&self) -> &str {
        match self {
            AgentNotification::AgentStatus(_) => "",
            AgentNotification::TaskStatus { task_ref, .. }
            | AgentNotification::TaskControl { task_ref, .. } => task_ref,
        }
    }

    pub fn to_payload(&self) -> Dictionary {
        match self {
            AgentNotification::AgentStatus(status) => status.to_payload(),
            AgentNotification::TaskStatus { status, .. } => status.to_payload(),
            AgentNotification::TaskControl { notice, .. } => notice.to_payload(),
        }
    }

    pub fn to_envelope(&self) -> Envelope {
        envelope(
            self.identifier(),
            self.name(),
            MessageType::Notification,
            self.to_payload(),
        )
    }
}

/// `agentStatus` request: the controller passes the grid's total megahertz.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AgentStatusRequest {
    pub grid_megahertz: Option<f64>,
}

/// One file placed in the task's working directory before it starts.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct InputFile {
    pub file_data: Vec<u8>,
    pub is_executable: bool,
}

/// `taskSubmission`: everything an agent needs to run one task.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TaskSubmission {
    pub command: String,
    /// Left out of the payload when empty: an empty `arguments` array crashes a known agent.
    pub arguments: Vec<String>,
    pub environment: BTreeMap<String, String>,
    /// The `inputFiles` key whose contents feed standard input (e.g. `__stdin`).
    pub input_stream: Option<String>,
    /// By path relative to the working directory. Always written, even empty: a known agent
    /// fails when the key is missing.
    pub input_files: BTreeMap<String, InputFile>,
}

impl TaskSubmission {
    fn read(f: &Fields) -> Result<TaskSubmission> {
        Ok(TaskSubmission {
            command: f.required_string("command")?,
            arguments: f.strings("arguments")?,
            environment: f.string_map("environment")?,
            input_stream: f.opt_string("inputStream")?,
            input_files: f.entries("inputFiles", |file| {
                Ok(InputFile {
                    file_data: file.data("fileData")?,
                    is_executable: file.flag("isExecutable")?,
                })
            })?,
        })
    }

    pub fn to_payload(&self) -> Dictionary {
        let environment = self
            .environment
            .iter()
            .map(|(k, v)| (k.clone(), Value::from(v.as_str())))
            .collect::<Dictionary>();
        let input_files = self
            .input_files
            .iter()
            .map(|(path, file)| {
                let entry = Payload::new()
                    .data("fileData", &file.file_data)
                    .yes_no("isExecutable", file.is_executable)
                    .finish();
                (path.clone(), Value::Dictionary(entry))
            })
            .collect::<Dictionary>();
        Payload::new()
            .string("command", &self.command)
            .when(!self.arguments.is_empty(), |p| {
                p.strings("arguments", &self.arguments)
            })
            .when(!environment.is_empty(), |p| {
                p.dictionary("environment", environment)
            })
            .opt_string("inputStream", self.input_stream.as_deref())
            .dictionary("inputFiles", input_files)
            .finish()
    }
}

/// `taskControl` request: start, stop (suspend) or cancel a task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskControlRequest {
    pub task_ref: String,
    pub control: TaskAction,
}

/// `taskResults` and `taskFinalResults` requests.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TaskRefRequest {
    pub task_ref: String,
}

/// A request from the controller to an agent.
#[derive(Debug, Clone, PartialEq)]
pub enum ControllerToAgentRequest {
    AgentStatus(AgentStatusRequest),
    AgentInfo,
    TaskSubmission(TaskSubmission),
    TaskControl(TaskControlRequest),
    TaskResults(TaskRefRequest),
    TaskFinalResults(TaskRefRequest),
    Unknown(String),
}

impl ControllerToAgentRequest {
    pub fn from_envelope(envelope: &Envelope) -> Result<ControllerToAgentRequest> {
        use ControllerToAgentRequest as R;
        let f = &Fields::new(&envelope.name, &envelope.payload);
        let task_ref = || f.required_string("taskRef");
        Ok(match envelope.name.as_str() {
            "agentStatus" => R::AgentStatus(AgentStatusRequest {
                grid_megahertz: f.opt_real("gridMegahertz")?,
            }),
            "agentInfo" => R::AgentInfo,
            "taskSubmission" => R::TaskSubmission(TaskSubmission::read(f)?),
            "taskControl" => R::TaskControl(TaskControlRequest {
                task_ref: task_ref()?,
                control: f.required_enumeration("control")?,
            }),
            "taskResults" => R::TaskResults(TaskRefRequest {
                task_ref: task_ref()?,
            }),
            "taskFinalResults" => R::TaskFinalResults(TaskRefRequest {
                task_ref: task_ref()?,
            }),
            other => R::Unknown(other.to_string()),
        })
    }

    pub fn name(&self) -> &str {
        use ControllerToAgentRequest as R;
        match self {
            R::AgentStatus(_) => "agentStatus",
            R::AgentInfo => "agentInfo",
            R::TaskSubmission(_) => "taskSubmission",
            R::TaskControl(_) => "taskControl",
            R::TaskResults(_) => "taskResults",
            R::TaskFinalResults(_) => "taskFinalResults",
            R::Unknown(name) => name,
        }
    }

    pub fn to_payload(&self) -> Dictionary {
        use ControllerToAgentRequest as R;
        let p = Payload::new();
        match self {
            R::AgentStatus(AgentStatusRequest {
                grid_megahertz: Some(mhz),
            }) => p.number("gridMegahertz", *mhz),
            R::AgentStatus(_) | R::AgentInfo | R::Unknown(_) => p,
            R::TaskSubmission(submission) => return submission.to_payload(),
            R::TaskControl(c) => p
                .string("taskRef", &c.task_ref)
                .string("control", c.control.as_str()),
            R::TaskResults(r) | R::TaskFinalResults(r) => p.string("taskRef", &r.task_ref),
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

/// `taskResults` reply: output since the previous request (the agent then clears its buffer).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TaskResultsReply {
    pub agent_name: String,
    pub task_ref: String,
    pub streams: TaskStreams,
}

/// `taskFinalResults` reply: the finished task's files and exit status.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TaskFinalResultsReply {
    pub agent_name: String,
    pub task_ref: String,
    pub outputs: TaskOutputs,
}

/// An agent's reply to a [`ControllerToAgentRequest`].
#[derive(Debug, Clone, PartialEq)]
pub enum AgentReply {
    AgentStatus(AgentStatus),
    AgentInfo(AgentRegistration),
    TaskSubmission {
        task_ref: String,
    },
    TaskControl,
    TaskResults(TaskResultsReply),
    TaskFinalResults(TaskFinalResultsReply),
    /// `{error = CODE}`, e.g. `InvalidTaskRef`, `too many tasks`, `agent unavailable`.
    Error {
        name: String,
        code: ErrorCode,
    },
}

impl AgentReply {
    pub fn from_envelope(envelope: &Envelope) -> Result<AgentReply> {
        let name = envelope.name.as_str();
        if let Some(code) = ErrorCode::from_payload(&envelope.payload) {
            return Ok(AgentReply::Error {
                name: name.to_string(),
                code,
            });
        }
        let f = &Fields::new(name, &envelope.payload);
        Ok(match name {
            "agentStatus" => AgentReply::AgentStatus(AgentStatus::read(f)?),
            "agentInfo" => AgentReply::AgentInfo(AgentRegistration::read(f)?),
            "taskSubmission" => AgentReply::TaskSubmission {
                task_ref: f.required_string("taskRef")?,
            },
            "taskControl" => AgentReply::TaskControl,
            "taskResults" => AgentReply::TaskResults(TaskResultsReply {
                agent_name: f.string("agentName")?,
                task_ref: f.required_string("taskRef")?,
                streams: match f.opt_nested("taskResults")? {
                    Some(results) => TaskStreams::read(&results)?,
                    None => TaskStreams::default(),
                },
            }),
            "taskFinalResults" => AgentReply::TaskFinalResults(TaskFinalResultsReply {
                agent_name: f.string("agentName")?,
                task_ref: f.required_string("taskRef")?,
                outputs: TaskOutputs::read(&f.required_nested("taskResults")?)?,
            }),
            other => {
                return Err(MessageError::UnknownMessage {
                    name: other.to_string(),
                    expected: "reply from an agent",
                })
            }
        })
    }

    pub fn name(&self) -> &str {
        match self {
            AgentReply::AgentStatus(_) => "agentStatus",
            AgentReply::AgentInfo(_) => "agentInfo",
            AgentReply::TaskSubmission { .. } => "taskSubmission",
            AgentReply::TaskControl => "taskControl",
            AgentReply::TaskResults(_) => "taskResults",
            AgentReply::TaskFinalResults(_) => "taskFinalResults",
            AgentReply::Error { name, .. } => name,
        }
    }

    pub fn to_payload(&self) -> Dictionary {
        let p = Payload::new();
        match self {
            AgentReply::AgentStatus(status) => status.to_payload(),
            AgentReply::AgentInfo(registration) => registration.to_payload(),
            AgentReply::TaskSubmission { task_ref } => p.string("taskRef", task_ref).finish(),
            AgentReply::TaskControl => p.finish(),
            AgentReply::TaskResults(r) => p
                .string("agentName", &r.agent_name)
                .string("taskRef", &r.task_ref)
                .dictionary("taskResults", r.streams.write())
                .finish(),
            AgentReply::TaskFinalResults(r) => p
                .string("agentName", &r.agent_name)
                .string("taskRef", &r.task_ref)
                .dictionary("taskResults", r.outputs.write())
                .finish(),
            AgentReply::Error { code, .. } => code.to_payload(),
        }
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
    use super::*;
    use proptest::prelude::*;

    fn message(
        identifier: &str,
        name: &str,
        message_type: MessageType,
        payload: Dictionary,
    ) -> Envelope {
        envelope(identifier, name, message_type, payload)
    }

    fn apple_registration() -> Dictionary {
        dict! {
            "agentCookie" => "",
            "agentName" => "mac1",
            "hostnames" => vec![Value::from("mac1.local")],
            "addresses" => vec![Value::from("10.0.0.2")],
            "maximumCPUPower" => "4000",
            "maximumTaskCount" => "2",
        }
    }

    #[test]
    fn registration_apple_and_lenient_agree() {
        let lenient = dict! {
            "agentName" => "mac1",
            "hostnames" => "mac1.local",
            "addresses" => vec![Value::from("10.0.0.2")],
            "maximumCPUPower" => Value::Real(4000.0),
            "maximumTaskCount" => Value::Integer(2),
            "someFutureKey" => "ignored",
        };
        let read = |payload: Dictionary| {
            AgentRequest::from_envelope(&message(
                "1",
                "agentRegistration",
                MessageType::Request,
                payload,
            ))
            .expect("parses")
        };
        let from_apple = read(apple_registration());
        assert_eq!(from_apple, read(lenient));
        let AgentRequest::AgentRegistration(r) = &from_apple else {
            panic!("wrong variant")
        };
        assert_eq!(
            (
                r.agent_name.as_str(),
                r.maximum_task_count,
                r.maximum_cpu_power
            ),
            ("mac1", 2, 4000.0)
        );
        assert_eq!(r.linux_capabilities, None);
        assert_eq!(from_apple.to_payload(), apple_registration());
    }

    #[test]
    fn capabilities_travel_only_when_announced() {
        let mut with = apple_registration();
        with.insert(
            LINUX_CAPABILITIES_KEY.into(),
            Value::from(vec![Value::from("checkpoint")]),
        );
        let request = AgentRequest::from_envelope(&message(
            "1",
            "agentRegistration",
            MessageType::Request,
            with.clone(),
        ))
        .expect("parses");
        let AgentRequest::AgentRegistration(r) = &request else {
            panic!("wrong variant")
        };
        assert_eq!(r.linux_capabilities, Some(vec!["checkpoint".to_string()]));
        assert_eq!(r.cpu_features, None);
        assert_eq!(request.to_payload(), with);
        let apple = AgentRegistration {
            linux_capabilities: None,
            ..r.clone()
        };
        assert!(!apple.to_payload().contains_key(LINUX_CAPABILITIES_KEY));
    }

    #[test]
    fn keepalive_controller_list_and_unknown_requests() {
        let keepalive = message("", "", MessageType::Request, dict! {});
        assert_eq!(
            AgentRequest::from_envelope(&keepalive).expect("parses"),
            AgentRequest::Keepalive
        );
        assert_eq!(AgentRequest::Keepalive.to_envelope(""), keepalive);
        let list = message("2", "controllerList", MessageType::Request, dict! {});
        let request = AgentRequest::from_envelope(&list).expect("parses");
        assert_eq!(request, AgentRequest::ControllerList(ListQuery::default()));
        assert_eq!(request.to_envelope("2"), list);
        let odd = message("3", "agentMigrate", MessageType::Request, dict! {});
        assert_eq!(
            AgentRequest::from_envelope(&odd).expect("parses"),
            AgentRequest::Unknown("agentMigrate".into())
        );
    }

    #[test]
    fn controller_replies_to_the_agent() {
        let ok = message(
            "1",
            "agentRegistration",
            MessageType::Reply,
            dict! {"agentCookie" => "c00k1e"},
        );
        let reply = ControllerToAgentReply::from_envelope(&ok).expect("parses");
        assert_eq!(
            reply,
            ControllerToAgentReply::AgentRegistration {
                agent_cookie: "c00k1e".into()
            }
        );
        assert_eq!(reply.to_envelope("1"), ok);
        let lenient = message(
            "1",
            "agentRegistration",
            MessageType::Reply,
            dict! {"agentCookie" => Value::Integer(7)},
        );
        assert_eq!(
            ControllerToAgentReply::from_envelope(&lenient).expect("parses"),
            ControllerToAgentReply::AgentRegistration {
                agent_cookie: "7".into()
            }
        );
        let refused = message(
            "1",
            "agentRegistration",
            MessageType::Reply,
            dict! {"error" => "invalid cookie"},
        );
        let reply = ControllerToAgentReply::from_envelope(&refused).expect("parses");
        assert_eq!(
            reply,
            ControllerToAgentReply::Error {
                name: "agentRegistration".into(),
                code: ErrorCode::InvalidCookie
            }
        );
        assert_eq!(reply.to_envelope("1"), refused);
        let to_keepalive = super::super::error_reply("", "", &ErrorCode::InvalidRequest);
        assert!(matches!(
            ControllerToAgentReply::from_envelope(&to_keepalive).expect("parses"),
            ControllerToAgentReply::Error {
                code: ErrorCode::InvalidRequest,
                ..
            }
        ));
        let list = dict! {"controllerList" => Vec::<Value>::new(), "controllerRole" => "MASTER"};
        let reply = ControllerToAgentReply::from_envelope(&message(
            "0",
            "controllerList",
            MessageType::Reply,
            list.clone(),
        ))
        .expect("parses");
        assert_eq!(reply.to_payload(), list);
    }

    fn read_notification(identifier: &str, name: &str, payload: Dictionary) -> AgentNotification {
        AgentNotification::from_envelope(&message(
            identifier,
            name,
            MessageType::Notification,
            payload,
        ))
        .expect("parses")
    }

    #[test]
    fn agent_status_apple_and_lenient_agree() {
        let apple = dict! {
            "agentCookie" => "c", "agentName" => "mac1", "agentStatus" => "Available",
            "currentCPUPower" => "2000", "currentTaskCount" => "1",
            "taskRefArray" => vec![Value::from("5")],
        };
        // Java agents write `2000.000000` and numbers as integers would be as reasonable.
        let lenient = dict! {
            "agentCookie" => "c", "agentName" => "mac1", "agentStatus" => "available",
            "currentCPUPower" => "2000.000000", "currentTaskCount" => Value::Integer(1),
            "taskRefArray" => vec![Value::Integer(5)],
        };
        let n = read_notification("", "agentStatus", apple.clone());
        assert_eq!(n, read_notification("", "agentStatus", lenient));
        let AgentNotification::AgentStatus(status) = &n else {
            panic!("wrong variant")
        };
        assert_eq!(status.agent_status, AgentState::Available);
        assert_eq!(
            n.to_envelope(),
            message("", "agentStatus", MessageType::Notification, apple)
        );
        let err = AgentNotification::from_envelope(&message(
            "",
            "agentStatus",
            MessageType::Notification,
            dict! {},
        ))
        .expect_err("refused");
        assert_eq!(
            err,
            MessageError::MissingField {
                message: "agentStatus".into(),
                field: "agentStatus".into()
            }
        );
    }

    #[test]
    fn task_status_apple_and_lenient_agree() {
        let running = dict! {"taskState" => "Running", "taskMegahertz" => "2000", "terminationStatus" => "", "dataAvailable" => "NO"};
        let lenient = dict! {"taskState" => "running", "taskMegahertz" => Value::Integer(2000), "dataAvailable" => Value::Boolean(false)};
        let n = read_notification("5", "taskStatus", running.clone());
        assert_eq!(n, read_notification("5", "taskStatus", lenient));
        let AgentNotification::TaskStatus { task_ref, status } = &n else {
            panic!("wrong variant")
        };
        assert_eq!((task_ref.as_str(), status.termination_status), ("5", None));
        assert_eq!(
            n.to_envelope(),
            message("5", "taskStatus", MessageType::Notification, running)
        );

        let done = dict! {"taskState" => "Terminated", "taskMegahertz" => "0", "terminationStatus" => "3", "dataAvailable" => "YES"};
        let lenient = dict! {"taskRef" => "5", "taskState" => "TERMINATED", "terminationStatus" => Value::Integer(3), "dataAvailable" => "1"};
        let n = read_notification("5", "taskStatus", done.clone());
        assert_eq!(n, read_notification("", "taskStatus", lenient));
        assert_eq!(n.to_payload(), done);
    }

    #[test]
    fn task_control_notices() {
        let update = dict! {"control" => "statusUpdate", "percentDone" => Value::Real(42.5)};
        let n = read_notification("5", "taskControl", update.clone());
        assert_eq!(
            n,
            read_notification(
                "5",
                "taskControl",
                dict! {"control" => "statusupdate", "percentDone" => "42.5"}
            )
        );
        assert_eq!(
            n,
            AgentNotification::TaskControl {
                task_ref: "5".into(),
                notice: TaskControlNotice::StatusUpdate { percent_done: 42.5 }
            }
        );
        assert_eq!(n.to_payload(), update);

        let retry =
            dict! {"control" => "taskError", "taskError" => "retryTask", "retryDelay" => "30"};
        let n = read_notification("5", "taskControl", retry.clone());
        for lenient in [
            dict! {"control" => "retryTask", "retryDelay" => Value::Integer(30)},
            dict! {"control" => "taskError", "error" => "RETRYTASK", "retryDelay" => Value::Real(30.0)},
        ] {
            assert_eq!(read_notification("5", "taskControl", lenient), n);
        }
        let AgentNotification::TaskControl { notice, .. } = &n else {
            panic!("wrong variant")
        };
        assert_eq!(
            notice,
            &TaskControlNotice::TaskError {
                kind: TaskErrorKind::RetryTask,
                retry_delay: Some(30.0)
            }
        );
        assert_eq!(n.to_payload(), retry);
        let fail = read_notification(
            "5",
            "taskControl",
            dict! {"control" => "taskError", "taskError" => "failJob"},
        );
        assert_eq!(
            fail.to_payload(),
            dict! {"control" => "taskError", "taskError" => "failJob"}
        );

        let create = dict! {"control" => "createTask", "command" => "/bin/echo", "arguments" => vec![Value::from("hi")]};
        let n = read_notification("5", "taskControl", create.clone());
        let AgentNotification::TaskControl {
            notice: TaskControlNotice::CreateTask(rest),
            ..
        } = &n
        else {
            panic!("wrong variant")
        };
        assert!(!rest.contains_key("control") && rest.contains_key("command"));
        assert_eq!(n.to_payload(), create);

        let err = AgentNotification::from_envelope(&message(
            "5",
            "taskControl",
            MessageType::Notification,
            dict! {"control" => "dance"},
        ))
        .expect_err("refused");
        assert_eq!(err.field(), Some("control"));
        let err = AgentNotification::from_envelope(&message(
            "",
            "agentDance",
            MessageType::Notification,
            dict! {},
        ))
        .expect_err("refused");
        assert!(matches!(err, MessageError::UnknownMessage { .. }));
    }

    fn read_request(name: &str, payload: Dictionary) -> ControllerToAgentRequest {
        ControllerToAgentRequest::from_envelope(&message("8", name, MessageType::Request, payload))
            .expect("parses")
    }

    #[test]
    fn task_submission_apple_and_lenient_agree() {
        let apple = dict! {
            "command" => "/usr/bin/cal",
            "arguments" => vec![Value::from("6"), Value::from("2007")],
            "environment" => dict! {"LANG" => "C"},
            "inputStream" => "__stdin",
            "inputFiles" => dict! {
                "__stdin" => dict! {"fileData" => Value::Data(b"in".to_vec()), "isExecutable" => "NO"},
                "bin/tool" => dict! {"fileData" => Value::Data(b"#!".to_vec()), "isExecutable" => "YES"},
            },
        };
        let lenient = dict! {
            "command" => "/usr/bin/cal",
            "arguments" => vec![Value::Integer(6), Value::Integer(2007)],
            "environment" => dict! {"LANG" => "C"},
            "inputStream" => "__stdin",
            "inputFiles" => dict! {
                "__stdin" => dict! {"fileData" => Value::Data(b"in".to_vec())},
                "bin/tool" => dict! {"fileData" => Value::Data(b"#!".to_vec()), "isExecutable" => Value::Boolean(true)},
            },
        };
        let r = read_request("taskSubmission", apple.clone());
        assert_eq!(r, read_request("taskSubmission", lenient));
        let ControllerToAgentRequest::TaskSubmission(s) = &r else {
            panic!("wrong variant")
        };
        assert_eq!(s.arguments, vec!["6", "2007"]);
        assert!(s
            .input_files
            .get("bin/tool")
            .is_some_and(|f| f.is_executable));
        assert_eq!(r.to_payload(), apple);
    }

    #[test]
    fn task_submission_leaves_out_empty_arguments_but_keeps_input_files() {
        let bare = TaskSubmission {
            command: "/bin/date".into(),
            ..TaskSubmission::default()
        };
        let out = bare.to_payload();
        assert_eq!(
            out,
            dict! {"command" => "/bin/date", "inputFiles" => dict! {}}
        );
        assert_eq!(
            read_request("taskSubmission", dict! {"command" => "/bin/date"}),
            ControllerToAgentRequest::TaskSubmission(bare)
        );
        let err = ControllerToAgentRequest::from_envelope(&message(
            "8",
            "taskSubmission",
            MessageType::Request,
            dict! {},
        ))
        .expect_err("refused");
        assert_eq!(err.field(), Some("command"));
    }

    #[test]
    fn other_controller_requests() {
        for action in TaskAction::ALL {
            let apple = dict! {"taskRef" => "5", "control" => action.as_str()};
            let r = read_request("taskControl", apple.clone());
            assert_eq!(
                r,
                read_request(
                    "taskControl",
                    dict! {"taskRef" => Value::Integer(5), "control" => action.as_str().to_uppercase()}
                )
            );
            assert_eq!(
                r,
                ControllerToAgentRequest::TaskControl(TaskControlRequest {
                    task_ref: "5".into(),
                    control: *action
                })
            );
            assert_eq!(r.to_payload(), apple);
        }
        for name in ["taskResults", "taskFinalResults"] {
            let r = read_request(name, dict! {"taskRef" => "5"});
            assert_eq!(
                r,
                read_request(name, dict! {"taskRef" => Value::Integer(5)})
            );
            assert_eq!(
                r.to_envelope("8"),
                message("8", name, MessageType::Request, dict! {"taskRef" => "5"})
            );
        }
        let r = read_request("agentStatus", dict! {"gridMegahertz" => "8000"});
        assert_eq!(
            r,
            read_request(
                "agentStatus",
                dict! {"gridMegahertz" => Value::Integer(8000)}
            )
        );
        assert_eq!(
            r,
            ControllerToAgentRequest::AgentStatus(AgentStatusRequest {
                grid_megahertz: Some(8000.0)
            })
        );
        assert_eq!(r.to_payload(), dict! {"gridMegahertz" => "8000"});
        assert_eq!(
            read_request("agentInfo", dict! {}),
            ControllerToAgentRequest::AgentInfo
        );
        assert_eq!(
            read_request("agentMigrate", dict! {}),
            ControllerToAgentRequest::Unknown("agentMigrate".into())
        );
        let err = ControllerToAgentRequest::from_envelope(&message(
            "8",
            "taskControl",
            MessageType::Request,
            dict! {"taskRef" => "5", "control" => "pause"},
        ))
        .expect_err("refused");
        assert_eq!(err.field(), Some("control"));
    }

    fn read_reply(name: &str, payload: Dictionary) -> AgentReply {
        AgentReply::from_envelope(&message("8", name, MessageType::Reply, payload)).expect("parses")
    }

    #[test]
    fn agent_replies_apple_and_lenient_agree() {
        let r = read_reply("taskSubmission", dict! {"taskRef" => "5"});
        assert_eq!(
            r,
            read_reply("taskSubmission", dict! {"taskRef" => Value::Integer(5)})
        );
        assert_eq!(
            r,
            AgentReply::TaskSubmission {
                task_ref: "5".into()
            }
        );
        assert_eq!(
            r.to_envelope("8"),
            message(
                "8",
                "taskSubmission",
                MessageType::Reply,
                dict! {"taskRef" => "5"}
            )
        );
        assert_eq!(read_reply("taskControl", dict! {}), AgentReply::TaskControl);

        let apple = dict! {
            "agentName" => "mac1", "taskRef" => "5",
            "taskResults" => dict! {"readData" => Value::Data(b"out".to_vec()), "errData" => Value::Data(Vec::new())},
        };
        let lenient = dict! {"agentName" => "mac1", "taskRef" => Value::Integer(5), "taskResults" => dict! {"readData" => "out"}};
        let r = read_reply("taskResults", apple.clone());
        assert_eq!(r, read_reply("taskResults", lenient));
        assert_eq!(r.to_payload(), apple);

        let apple = dict! {
            "agentName" => "mac1", "taskRef" => "5",
            "taskResults" => dict! {
                "outputFiles" => dict! {"result.txt" => dict! {"fileData" => Value::Data(b"42".to_vec())}},
                "terminationStatus" => "0",
            },
        };
        let lenient = dict! {
            "agentName" => "mac1", "taskRef" => Value::Integer(5),
            "taskResults" => dict! {
                "outputFiles" => dict! {"result.txt" => dict! {"fileData" => Value::Data(b"42".to_vec())}},
                "terminationStatus" => Value::Integer(0),
            },
        };
        let r = read_reply("taskFinalResults", apple.clone());
        assert_eq!(r, read_reply("taskFinalResults", lenient));
        let AgentReply::TaskFinalResults(f) = &r else {
            panic!("wrong variant")
        };
        assert_eq!(f.outputs.termination_status, Some(0));
        assert_eq!(r.to_payload(), apple);

        let info = read_reply("agentInfo", apple_registration());
        assert_eq!(info.to_payload(), apple_registration());
        let status = dict! {
            "agentCookie" => "c", "agentName" => "mac1", "agentStatus" => "Unavailable",
            "currentCPUPower" => "0", "currentTaskCount" => "0", "taskRefArray" => Vec::<Value>::new(),
        };
        let r = read_reply("agentStatus", status.clone());
        assert!(
            matches!(&r, AgentReply::AgentStatus(s) if s.agent_status == AgentState::Unavailable)
        );
        assert_eq!(r.to_payload(), status);
    }

    #[test]
    fn agent_error_replies() {
        for (text, code) in [
            ("InvalidTaskRef", ErrorCode::InvalidTaskRef),
            ("too many tasks", ErrorCode::TooManyTasks),
            ("agent unavailable", ErrorCode::AgentUnavailable),
        ] {
            let r = read_reply("taskSubmission", dict! {"error" => text});
            assert_eq!(
                r,
                AgentReply::Error {
                    name: "taskSubmission".into(),
                    code
                }
            );
            assert_eq!(r.to_payload(), dict! {"error" => text});
        }
        let err =
            AgentReply::from_envelope(&message("8", "taskDance", MessageType::Reply, dict! {}))
                .expect_err("refused");
        assert!(matches!(err, MessageError::UnknownMessage { .. }));
    }

    fn text() -> impl Strategy<Value = String> {
        "[ -~]{0,12}"
    }

    prop_compose! {
        fn any_registration()(
            agent_cookie in text(), agent_name in text(),
            hostnames in proptest::collection::vec(text(), 0..3),
            addresses in proptest::collection::vec(text(), 0..3),
            maximum_cpu_power in 0.0..1e6f64, maximum_task_count in 0i64..512,
            agent_custom in proptest::option::of(text().prop_map(Value::from)),
            linux_capabilities in proptest::option::of(proptest::collection::vec(text(), 0..3)),
            cpu_features in proptest::option::of(proptest::collection::vec(text(), 0..3)),
        ) -> AgentRegistration {
            AgentRegistration {
                agent_cookie, agent_name, hostnames, addresses, maximum_cpu_power,
                maximum_task_count, agent_custom, linux_capabilities, cpu_features,
            }
        }
    }

    prop_compose! {
        fn any_submission()(
            command in text(),
            arguments in proptest::collection::vec(text(), 0..4),
            environment in proptest::collection::btree_map(text(), text(), 0..3),
            input_stream in proptest::option::of(text()),
            input_files in proptest::collection::btree_map(
                text(),
                (proptest::collection::vec(any::<u8>(), 0..16), any::<bool>())
                    .prop_map(|(file_data, is_executable)| InputFile { file_data, is_executable }),
                0..3,
            ),
        ) -> TaskSubmission {
            TaskSubmission { command, arguments, environment, input_stream, input_files }
        }
    }

    prop_compose! {
        fn any_status()(
            agent_cookie in text(), agent_name in text(),
            agent_status in proptest::sample::select(AgentState::ALL),
            current_cpu_power in 0.0..1e6f64, current_task_count in 0i64..64,
            task_ref_array in proptest::collection::vec(text(), 0..4),
            unavailable_reason in proptest::option::of(proptest::sample::select(UnavailableReason::ALL)),
            frozen_checkpoints in proptest::collection::btree_map(text(), text(), 0..3),
        ) -> AgentStatus {
            AgentStatus { agent_cookie, agent_name, agent_status, current_cpu_power, current_task_count, task_ref_array, unavailable_reason, frozen_checkpoints }
        }
    }

    prop_compose! {
        fn any_task_status()(
            task_state in proptest::sample::select(TaskState::ALL),
            task_megahertz in 0.0..1e5f64,
            termination_status in proptest::option::of(-255i64..256),
            data_available in any::<bool>(),
        ) -> TaskStatus {
            TaskStatus { task_state, task_megahertz, termination_status, data_available }
        }
    }

    proptest! {
        #[test]
        fn registration_round_trips(r in any_registration()) {
            let request = AgentRequest::AgentRegistration(r);
            prop_assert_eq!(AgentRequest::from_envelope(&request.to_envelope("1")).expect("parses"), request);
        }

        #[test]
        fn submission_round_trips(s in any_submission()) {
            let request = ControllerToAgentRequest::TaskSubmission(s);
            let envelope = request.to_envelope("1");
            prop_assert!(envelope.payload.get("arguments").is_none_or(|a| a.as_array().is_some_and(|a| !a.is_empty())));
            prop_assert_eq!(ControllerToAgentRequest::from_envelope(&envelope).expect("parses"), request);
        }

        #[test]
        fn agent_status_round_trips(s in any_status()) {
            let note = AgentNotification::AgentStatus(s);
            prop_assert_eq!(AgentNotification::from_envelope(&note.to_envelope()).expect("parses"), note);
        }

        #[test]
        fn task_status_round_trips(task_ref in "[0-9]{1,6}", status in any_task_status()) {
            let note = AgentNotification::TaskStatus { task_ref, status };
            prop_assert_eq!(AgentNotification::from_envelope(&note.to_envelope()).expect("parses"), note);
        }
    }
}
