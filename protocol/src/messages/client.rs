//! Messages of the client profile (`…/controller/client`, xgrid-wire.md §4.1): the client's
//! requests, the controller's replies and the notifications of subscriptions.

use std::collections::BTreeMap;

use super::attributes::{AgentAttributes, GridAttributes, JobAttributes};
use super::fields::{Fields, Payload};
use super::results::{TaskOutputs, TaskStreams};
use super::states::{GridAction, JobAction};
use super::{envelope, ErrorCode, MessageError};
use crate::envelope::{Envelope, MessageType};
use crate::plist::{Dictionary, Value};

type Result<T> = std::result::Result<T, MessageError>;

/// The role a controller must claim in `controllerList` replies, or clients give up.
pub const MASTER_ROLE: &str = "MASTER";

/// `shouldSubscribe` and the optional NSPredicate-format `predicate` of a request. The
/// predicate is kept as text; evaluating it is the controller's business.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Subscription {
    pub should_subscribe: bool,
    pub predicate: Option<String>,
}

impl Subscription {
    /// `None` when the request carries neither key (Apple's clients sometimes send nothing).
    fn read(f: &Fields) -> Result<Option<Subscription>> {
        if !f.has("shouldSubscribe") && !f.has("predicate") {
            return Ok(None);
        }
        Ok(Some(Subscription {
            should_subscribe: f.flag("shouldSubscribe")?,
            predicate: f.opt_string("predicate")?,
        }))
    }

    fn write(subscription: &Option<Subscription>, p: Payload) -> Payload {
        match subscription {
            None => p,
            Some(s) => p
                .yes_no("shouldSubscribe", s.should_subscribe)
                .opt_string("predicate", s.predicate.as_deref()),
        }
    }
}

fn subscribes(subscription: &Option<Subscription>) -> bool {
    subscription.as_ref().is_some_and(|s| s.should_subscribe)
}

/// `controllerList`, `gridList`, `agentList`: only a subscription.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ListQuery {
    pub subscription: Option<Subscription>,
}

impl ListQuery {
    pub fn should_subscribe(&self) -> bool {
        subscribes(&self.subscription)
    }

    pub(crate) fn read(f: &Fields) -> Result<ListQuery> {
        Ok(ListQuery {
            subscription: Subscription::read(f)?,
        })
    }

    pub fn to_payload(&self) -> Dictionary {
        Subscription::write(&self.subscription, Payload::new()).finish()
    }
}

/// `gridAttributes`, `gridJobList`, `gridAgentList`. An empty grid identifier means the
/// default grid.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GridQuery {
    pub grid_identifier: String,
    pub subscription: Option<Subscription>,
}

impl GridQuery {
    pub fn should_subscribe(&self) -> bool {
        subscribes(&self.subscription)
    }

    fn read(f: &Fields) -> Result<GridQuery> {
        Ok(GridQuery {
            grid_identifier: f.string("gridIdentifier")?,
            subscription: Subscription::read(f)?,
        })
    }

    pub fn to_payload(&self) -> Dictionary {
        let p = Payload::new().string("gridIdentifier", &self.grid_identifier);
        Subscription::write(&self.subscription, p).finish()
    }
}

/// `agentAttributes`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AgentQuery {
    pub agent_identifier: String,
    pub subscription: Option<Subscription>,
}

impl AgentQuery {
    pub fn should_subscribe(&self) -> bool {
        subscribes(&self.subscription)
    }

    fn read(f: &Fields) -> Result<AgentQuery> {
        Ok(AgentQuery {
            agent_identifier: f.required_string("agentIdentifier")?,
            subscription: Subscription::read(f)?,
        })
    }

    pub fn to_payload(&self) -> Dictionary {
        let p = Payload::new().string("agentIdentifier", &self.agent_identifier);
        Subscription::write(&self.subscription, p).finish()
    }
}

/// Every request about one job that carries nothing else: `jobAttributes`, `jobLog` (these
/// two subscribe), `jobSpecification`, `jobResults`, `jobLatestResults`, `jobFinalResults`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct JobQuery {
    pub job_identifier: String,
    pub subscription: Option<Subscription>,
}

impl JobQuery {
    pub fn should_subscribe(&self) -> bool {
        subscribes(&self.subscription)
    }

    fn read(f: &Fields) -> Result<JobQuery> {
        Ok(JobQuery {
            job_identifier: f.required_string("jobIdentifier")?,
            subscription: Subscription::read(f)?,
        })
    }

    pub fn to_payload(&self) -> Dictionary {
        let p = Payload::new().string("jobIdentifier", &self.job_identifier);
        Subscription::write(&self.subscription, p).finish()
    }
}

/// `gridControl`: add, remove, rename a grid or make it the default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GridControlRequest {
    pub grid_identifier: String,
    pub control: GridAction,
    pub grid_name: Option<String>,
    pub new_grid_name: Option<String>,
}

impl GridControlRequest {
    fn read(f: &Fields) -> Result<GridControlRequest> {
        Ok(GridControlRequest {
            grid_identifier: f.string("gridIdentifier")?,
            control: f.required_enumeration("control")?,
            grid_name: f.opt_string("gridName")?,
            new_grid_name: f.opt_string("newGridName")?,
        })
    }

    pub fn to_payload(&self) -> Dictionary {
        Payload::new()
            .string("gridIdentifier", &self.grid_identifier)
            .string("control", self.control.as_str())
            .opt_string("gridName", self.grid_name.as_deref())
            .opt_string("newGridName", self.new_grid_name.as_deref())
            .finish()
    }
}

/// `agentAdd`, `agentAssign`, `agentRemove`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AgentGridRequest {
    pub agent_identifier: String,
    pub grid_identifier: String,
}

impl AgentGridRequest {
    fn read(f: &Fields) -> Result<AgentGridRequest> {
        Ok(AgentGridRequest {
            agent_identifier: f.required_string("agentIdentifier")?,
            grid_identifier: f.string("gridIdentifier")?,
        })
    }

    pub fn to_payload(&self) -> Dictionary {
        Payload::new()
            .string("agentIdentifier", &self.agent_identifier)
            .string("gridIdentifier", &self.grid_identifier)
            .finish()
    }
}

/// `jobSubmission`. The specification stays a raw dictionary: `crate::jobspec` validates it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct JobSubmission {
    pub job_specification: Dictionary,
    pub grid_identifier: Option<String>,
}

impl JobSubmission {
    fn read(f: &Fields) -> Result<JobSubmission> {
        Ok(JobSubmission {
            job_specification: f.required_dictionary("jobSpecification")?.clone(),
            grid_identifier: f.opt_string("gridIdentifier")?,
        })
    }

    pub fn to_payload(&self) -> Dictionary {
        Payload::new()
            .dictionary("jobSpecification", self.job_specification.clone())
            .opt_string("gridIdentifier", self.grid_identifier.as_deref())
            .finish()
    }
}

/// `jobControl`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobControlRequest {
    pub job_identifier: String,
    pub control: JobAction,
}

impl JobControlRequest {
    fn read(f: &Fields) -> Result<JobControlRequest> {
        Ok(JobControlRequest {
            job_identifier: f.required_string("jobIdentifier")?,
            control: f.required_enumeration("control")?,
        })
    }

    pub fn to_payload(&self) -> Dictionary {
        Payload::new()
            .string("jobIdentifier", &self.job_identifier)
            .string("control", self.control.as_str())
            .finish()
    }
}

/// `jobAddTask`: task specifications (raw, as in a job specification) to add to a job.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct JobAddTask {
    pub job_identifier: String,
    pub task_specifications: Dictionary,
}

impl JobAddTask {
    fn read(f: &Fields) -> Result<JobAddTask> {
        Ok(JobAddTask {
            job_identifier: f.required_string("jobIdentifier")?,
            task_specifications: f.required_dictionary("taskSpecifications")?.clone(),
        })
    }

    pub fn to_payload(&self) -> Dictionary {
        Payload::new()
            .string("jobIdentifier", &self.job_identifier)
            .dictionary("taskSpecifications", self.task_specifications.clone())
            .finish()
    }
}

/// A request from a client.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientRequest {
    ControllerList(ListQuery),
    ControllerRole,
    GridList(ListQuery),
    GridAttributes(GridQuery),
    GridControl(GridControlRequest),
    GridJobList(GridQuery),
    GridAgentList(GridQuery),
    AgentList(ListQuery),
    AgentAttributes(AgentQuery),
    AgentAdd(AgentGridRequest),
    AgentAssign(AgentGridRequest),
    AgentRemove(AgentGridRequest),
    JobSubmission(JobSubmission),
    JobAttributes(JobQuery),
    JobSpecification(JobQuery),
    JobResults(JobQuery),
    JobLatestResults(JobQuery),
    JobFinalResults(JobQuery),
    JobLog(JobQuery),
    JobControl(JobControlRequest),
    JobAddTask(JobAddTask),
    /// A name this implementation does not serve; the controller answers
    /// `{error = InvalidRequest}`.
    Unknown(String),
}

impl ClientRequest {
    pub fn from_envelope(envelope: &Envelope) -> Result<ClientRequest> {
        ClientRequest::from_payload(&envelope.name, &envelope.payload)
    }

    pub fn from_payload(name: &str, payload: &Dictionary) -> Result<ClientRequest> {
        use ClientRequest as R;
        let f = &Fields::new(name, payload);
        Ok(match name {
            "controllerList" => R::ControllerList(ListQuery::read(f)?),
            "controllerRole" => R::ControllerRole,
            "gridList" => R::GridList(ListQuery::read(f)?),
            "gridAttributes" => R::GridAttributes(GridQuery::read(f)?),
            "gridControl" => R::GridControl(GridControlRequest::read(f)?),
            "gridJobList" => R::GridJobList(GridQuery::read(f)?),
            "gridAgentList" => R::GridAgentList(GridQuery::read(f)?),
            "agentList" => R::AgentList(ListQuery::read(f)?),
            "agentAttributes" => R::AgentAttributes(AgentQuery::read(f)?),
            "agentAdd" => R::AgentAdd(AgentGridRequest::read(f)?),
            "agentAssign" => R::AgentAssign(AgentGridRequest::read(f)?),
            "agentRemove" => R::AgentRemove(AgentGridRequest::read(f)?),
            "jobSubmission" => R::JobSubmission(JobSubmission::read(f)?),
            "jobAttributes" => R::JobAttributes(JobQuery::read(f)?),
            "jobSpecification" => R::JobSpecification(JobQuery::read(f)?),
            "jobResults" => R::JobResults(JobQuery::read(f)?),
            "jobLatestResults" => R::JobLatestResults(JobQuery::read(f)?),
            "jobFinalResults" => R::JobFinalResults(JobQuery::read(f)?),
            "jobLog" => R::JobLog(JobQuery::read(f)?),
            "jobControl" => R::JobControl(JobControlRequest::read(f)?),
            "jobAddTask" => R::JobAddTask(JobAddTask::read(f)?),
            other => R::Unknown(other.to_string()),
        })
    }

    pub fn name(&self) -> &str {
        use ClientRequest as R;
        match self {
            R::ControllerList(_) => "controllerList",
            R::ControllerRole => "controllerRole",
            R::GridList(_) => "gridList",
            R::GridAttributes(_) => "gridAttributes",
            R::GridControl(_) => "gridControl",
            R::GridJobList(_) => "gridJobList",
            R::GridAgentList(_) => "gridAgentList",
            R::AgentList(_) => "agentList",
            R::AgentAttributes(_) => "agentAttributes",
            R::AgentAdd(_) => "agentAdd",
            R::AgentAssign(_) => "agentAssign",
            R::AgentRemove(_) => "agentRemove",
            R::JobSubmission(_) => "jobSubmission",
            R::JobAttributes(_) => "jobAttributes",
            R::JobSpecification(_) => "jobSpecification",
            R::JobResults(_) => "jobResults",
            R::JobLatestResults(_) => "jobLatestResults",
            R::JobFinalResults(_) => "jobFinalResults",
            R::JobLog(_) => "jobLog",
            R::JobControl(_) => "jobControl",
            R::JobAddTask(_) => "jobAddTask",
            R::Unknown(name) => name,
        }
    }

    pub fn to_payload(&self) -> Dictionary {
        use ClientRequest as R;
        match self {
            R::ControllerList(q) | R::GridList(q) | R::AgentList(q) => q.to_payload(),
            R::GridAttributes(q) | R::GridJobList(q) | R::GridAgentList(q) => q.to_payload(),
            R::GridControl(r) => r.to_payload(),
            R::AgentAttributes(q) => q.to_payload(),
            R::AgentAdd(r) | R::AgentAssign(r) | R::AgentRemove(r) => r.to_payload(),
            R::JobSubmission(r) => r.to_payload(),
            R::JobAttributes(q)
            | R::JobSpecification(q)
            | R::JobResults(q)
            | R::JobLatestResults(q)
            | R::JobFinalResults(q)
            | R::JobLog(q) => q.to_payload(),
            R::JobControl(r) => r.to_payload(),
            R::JobAddTask(r) => r.to_payload(),
            R::ControllerRole | R::Unknown(_) => Dictionary::new(),
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

/// One controller in a `controllerList` reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControllerEntry {
    pub hostname: String,
    pub role: String,
}

/// `{controllerList = ({hostname, role}…), controllerRole}`: the reply to `controllerList`
/// and the payload of its notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControllerListReply {
    pub controllers: Vec<ControllerEntry>,
    /// Must be [`MASTER_ROLE`] for clients and agents to carry on.
    pub controller_role: String,
}

impl ControllerListReply {
    pub(crate) fn read(f: &Fields) -> Result<ControllerListReply> {
        Ok(ControllerListReply {
            controllers: f.records("controllerList", |c| {
                Ok(ControllerEntry {
                    hostname: c.string("hostname")?,
                    role: c.string("role")?,
                })
            })?,
            controller_role: f.string("controllerRole")?,
        })
    }

    pub fn to_payload(&self) -> Dictionary {
        let list = self
            .controllers
            .iter()
            .map(|c| {
                Value::Dictionary(
                    Payload::new()
                        .string("hostname", &c.hostname)
                        .string("role", &c.role)
                        .finish(),
                )
            })
            .collect::<Vec<_>>();
        Payload::new()
            .value("controllerList", list)
            .string("controllerRole", &self.controller_role)
            .finish()
    }
}

/// The controller's reply to a client request; the envelope's name echoes the request's.
#[derive(Debug, Clone, PartialEq)]
pub enum ControllerReply {
    ControllerList(ControllerListReply),
    ControllerRole(String),
    /// Grid identifiers.
    GridList(Vec<String>),
    GridAttributes(GridAttributes),
    GridControl,
    /// Job identifiers of the grid.
    GridJobList(Vec<String>),
    /// Agent names of the grid.
    GridAgentList(Vec<String>),
    AgentList(Vec<String>),
    AgentAttributes(AgentAttributes),
    AgentAdd,
    AgentAssign,
    AgentRemove,
    JobSubmission {
        job_identifier: String,
    },
    JobAttributes(JobAttributes),
    JobSpecification(Dictionary),
    /// Standard output and error by task identifier.
    JobResults(BTreeMap<String, TaskStreams>),
    /// Like `JobResults`, only what is new since the previous request.
    JobLatestResults(BTreeMap<String, TaskStreams>),
    /// Output files and exit status by task identifier.
    JobFinalResults(BTreeMap<String, TaskOutputs>),
    /// The log's shape is not known (xgrid-wire.md §9), so it is passed through untouched.
    JobLog(Value),
    JobControl,
    JobAddTask,
    /// `{error = CODE}` in answer to the request `name`.
    Error {
        name: String,
        code: ErrorCode,
    },
}

impl ControllerReply {
    pub fn from_envelope(envelope: &Envelope) -> Result<ControllerReply> {
        ControllerReply::from_payload(&envelope.name, &envelope.payload)
    }

    pub fn from_payload(name: &str, payload: &Dictionary) -> Result<ControllerReply> {
        use ControllerReply as R;
        if let Some(code) = ErrorCode::from_payload(payload) {
            return Ok(R::Error {
                name: name.to_string(),
                code,
            });
        }
        let f = &Fields::new(name, payload);
        Ok(match name {
            "controllerList" => R::ControllerList(ControllerListReply::read(f)?),
            "controllerRole" => R::ControllerRole(f.string("controllerRole")?),
            "gridList" => R::GridList(f.strings("gridList")?),
            "gridAttributes" => {
                R::GridAttributes(GridAttributes::read(&f.required_nested("gridAttributes")?)?)
            }
            "gridControl" => R::GridControl,
            "gridJobList" => R::GridJobList(f.strings("jobList")?),
            "gridAgentList" => R::GridAgentList(f.strings("agentList")?),
            "agentList" => R::AgentList(f.strings("agentList")?),
            "agentAttributes" => R::AgentAttributes(AgentAttributes::read(
                &f.required_nested("agentAttributes")?,
            )?),
            "agentAdd" => R::AgentAdd,
            "agentAssign" => R::AgentAssign,
            "agentRemove" => R::AgentRemove,
            "jobSubmission" => R::JobSubmission {
                job_identifier: f.required_string("jobIdentifier")?,
            },
            "jobAttributes" => {
                R::JobAttributes(JobAttributes::read(&f.required_nested("jobAttributes")?)?)
            }
            "jobSpecification" => {
                R::JobSpecification(f.required_dictionary("jobSpecification")?.clone())
            }
            "jobResults" => R::JobResults(f.entries("taskResults", TaskStreams::read)?),
            "jobLatestResults" => R::JobLatestResults(f.entries("taskResults", TaskStreams::read)?),
            "jobFinalResults" => R::JobFinalResults(f.entries("taskResults", TaskOutputs::read)?),
            "jobLog" => R::JobLog(f.get("jobLog").cloned().unwrap_or(Value::Array(Vec::new()))),
            "jobControl" => R::JobControl,
            "jobAddTask" => R::JobAddTask,
            other => {
                return Err(MessageError::UnknownMessage {
                    name: other.to_string(),
                    expected: "reply to a client request",
                })
            }
        })
    }

    pub fn name(&self) -> &str {
        use ControllerReply as R;
        match self {
            R::ControllerList(_) => "controllerList",
            R::ControllerRole(_) => "controllerRole",
            R::GridList(_) => "gridList",
            R::GridAttributes(_) => "gridAttributes",
            R::GridControl => "gridControl",
            R::GridJobList(_) => "gridJobList",
            R::GridAgentList(_) => "gridAgentList",
            R::AgentList(_) => "agentList",
            R::AgentAttributes(_) => "agentAttributes",
            R::AgentAdd => "agentAdd",
            R::AgentAssign => "agentAssign",
            R::AgentRemove => "agentRemove",
            R::JobSubmission { .. } => "jobSubmission",
            R::JobAttributes(_) => "jobAttributes",
            R::JobSpecification(_) => "jobSpecification",
            R::JobResults(_) => "jobResults",
            R::JobLatestResults(_) => "jobLatestResults",
            R::JobFinalResults(_) => "jobFinalResults",
            R::JobLog(_) => "jobLog",
            R::JobControl => "jobControl",
            R::JobAddTask => "jobAddTask",
            R::Error { name, .. } => name,
        }
    }

    pub fn to_payload(&self) -> Dictionary {
        use ControllerReply as R;
        let p = Payload::new();
        match self {
            R::ControllerList(list) => return list.to_payload(),
            R::ControllerRole(role) => p.string("controllerRole", role),
            R::GridList(ids) => p.strings("gridList", ids),
            R::GridAttributes(a) => p.dictionary("gridAttributes", a.to_dictionary()),
            R::GridJobList(ids) => p.strings("jobList", ids),
            R::GridAgentList(names) | R::AgentList(names) => p.strings("agentList", names),
            R::AgentAttributes(a) => p.dictionary("agentAttributes", a.to_dictionary()),
            R::JobSubmission { job_identifier } => p.string("jobIdentifier", job_identifier),
            R::JobAttributes(a) => p.dictionary("jobAttributes", a.to_dictionary()),
            R::JobSpecification(spec) => p.dictionary("jobSpecification", spec.clone()),
            R::JobResults(tasks) | R::JobLatestResults(tasks) => {
                p.dictionary("taskResults", by_task(tasks, TaskStreams::write))
            }
            R::JobFinalResults(tasks) => {
                p.dictionary("taskResults", by_task(tasks, TaskOutputs::write))
            }
            R::JobLog(log) => p.value("jobLog", log.clone()),
            R::Error { code, .. } => return code.to_payload(),
            R::GridControl
            | R::AgentAdd
            | R::AgentAssign
            | R::AgentRemove
            | R::JobControl
            | R::JobAddTask => p,
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

fn by_task<T>(tasks: &BTreeMap<String, T>, write: impl Fn(&T) -> Dictionary) -> Dictionary {
    tasks
        .iter()
        .map(|(task, r)| (task.clone(), Value::Dictionary(write(r))))
        .collect()
}

/// A notification the controller sends to a subscribed client. The envelope identifier names
/// the resource the notification is about: empty for the controller's own lists, the grid
/// for a grid's job and agent lists, else the grid, agent or job itself.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientNotification {
    ControllerList(ControllerListReply),
    GridListDidAddGrid {
        grid_identifier: String,
    },
    GridListDidRemoveGrid {
        grid_identifier: String,
    },
    GridAttributes {
        grid_identifier: String,
        attributes: GridAttributes,
    },
    GridJobListDidAddJob {
        grid_identifier: String,
        job_identifier: String,
    },
    GridJobListDidRemoveJob {
        grid_identifier: String,
        job_identifier: String,
    },
    GridAgentListDidAddAgent {
        grid_identifier: String,
        agent_identifier: String,
    },
    GridAgentListDidRemoveAgent {
        grid_identifier: String,
        agent_identifier: String,
    },
    AgentListDidAddAgent {
        agent_identifier: String,
    },
    AgentListDidRemoveAgent {
        agent_identifier: String,
    },
    AgentAttributes {
        agent_identifier: String,
        attributes: AgentAttributes,
    },
    JobAttributes {
        job_identifier: String,
        attributes: JobAttributes,
    },
    /// New output can be fetched with `jobLatestResults`.
    JobLatestResultsAvailable {
        job_identifier: String,
    },
    JobLog {
        job_identifier: String,
        log: Value,
    },
}

impl ClientNotification {
    /// Reads the resource identifier from the envelope; a peer that leaves the envelope
    /// identifier empty may name the resource in the payload instead, so that is tried next.
    pub fn from_envelope(envelope: &Envelope) -> Result<ClientNotification> {
        use ClientNotification as N;
        let name = envelope.name.as_str();
        let f = &Fields::new(name, &envelope.payload);
        let about = |key: &str| -> Result<String> {
            if envelope.identifier.is_empty() {
                f.string(key)
            } else {
                Ok(envelope.identifier.clone())
            }
        };
        Ok(match name {
            "controllerList" => N::ControllerList(ControllerListReply::read(f)?),
            "gridListDidAddGrid" => N::GridListDidAddGrid {
                grid_identifier: f.required_string("gridIdentifier")?,
            },
            "gridListDidRemoveGrid" => N::GridListDidRemoveGrid {
                grid_identifier: f.required_string("gridIdentifier")?,
            },
            "gridAttributes" => N::GridAttributes {
                grid_identifier: about("gridIdentifier")?,
                attributes: GridAttributes::read(&f.required_nested("gridAttributes")?)?,
            },
            "gridJobListDidAddJob" => N::GridJobListDidAddJob {
                grid_identifier: about("gridIdentifier")?,
                job_identifier: f.required_string("jobIdentifier")?,
            },
            "gridJobListDidRemoveJob" => N::GridJobListDidRemoveJob {
                grid_identifier: about("gridIdentifier")?,
                job_identifier: f.required_string("jobIdentifier")?,
            },
            "gridAgentListDidAddAgent" => N::GridAgentListDidAddAgent {
                grid_identifier: about("gridIdentifier")?,
                agent_identifier: f.required_string("agentIdentifier")?,
            },
            "gridAgentListDidRemoveAgent" => N::GridAgentListDidRemoveAgent {
                grid_identifier: about("gridIdentifier")?,
                agent_identifier: f.required_string("agentIdentifier")?,
            },
            "agentListDidAddAgent" => N::AgentListDidAddAgent {
                agent_identifier: f.required_string("agentIdentifier")?,
            },
            "agentListDidRemoveAgent" => N::AgentListDidRemoveAgent {
                agent_identifier: f.required_string("agentIdentifier")?,
            },
            "agentAttributes" => N::AgentAttributes {
                agent_identifier: about("agentIdentifier")?,
                attributes: AgentAttributes::read(&f.required_nested("agentAttributes")?)?,
            },
            "jobAttributes" => N::JobAttributes {
                job_identifier: about("jobIdentifier")?,
                attributes: JobAttributes::read(&f.required_nested("jobAttributes")?)?,
            },
            "jobLatestResultsAvailable" => N::JobLatestResultsAvailable {
                job_identifier: about("jobIdentifier")?,
            },
            "jobLog" => N::JobLog {
                job_identifier: about("jobIdentifier")?,
                log: f.get("jobLog").cloned().unwrap_or(Value::Array(Vec::new())),
            },
            other => {
                return Err(MessageError::UnknownMessage {
                    name: other.to_string(),
                    expected: "notification to a client",
                })
            }
        })
    }

    pub fn name(&self) -> &'static str {
        use ClientNotification as N;
        match self {
            N::ControllerList(_) => "controllerList",
            N::GridListDidAddGrid { .. } => "gridListDidAddGrid",
            N::GridListDidRemoveGrid { .. } => "gridListDidRemoveGrid",
            N::GridAttributes { .. } => "gridAttributes",
            N::GridJobListDidAddJob { .. } => "gridJobListDidAddJob",
            N::GridJobListDidRemoveJob { .. } => "gridJobListDidRemoveJob",
            N::GridAgentListDidAddAgent { .. } => "gridAgentListDidAddAgent",
            N::GridAgentListDidRemoveAgent { .. } => "gridAgentListDidRemoveAgent",
            N::AgentListDidAddAgent { .. } => "agentListDidAddAgent",
            N::AgentListDidRemoveAgent { .. } => "agentListDidRemoveAgent",
            N::AgentAttributes { .. } => "agentAttributes",
            N::JobAttributes { .. } => "jobAttributes",
            N::JobLatestResultsAvailable { .. } => "jobLatestResultsAvailable",
            N::JobLog { .. } => "jobLog",
        }
    }

    /// The envelope identifier: the resource the notification is about.
    pub fn identifier(&self) -> &str {
        use ClientNotification as N;
        match self {
            N::ControllerList(_)
            | N::GridListDidAddGrid { .. }
            | N::GridListDidRemoveGrid { .. }
            | N::AgentListDidAddAgent { .. }
            | N::AgentListDidRemoveAgent { .. } => "",
            N::GridAttributes {
                grid_identifier, ..
            }
            | N::GridJobListDidAddJob {
                grid_identifier, ..
            }
            | N::GridJobListDidRemoveJob {
                grid_identifier, ..
            }
            | N::GridAgentListDidAddAgent {
                grid_identifier, ..
            }
            | N::GridAgentListDidRemoveAgent {
                grid_identifier, ..
            } => grid_identifier,
            N::AgentAttributes {
                agent_identifier, ..
            } => agent_identifier,
            N::JobAttributes { job_identifier, .. }
            | N::JobLatestResultsAvailable { job_identifier }
            | N::JobLog { job_identifier, .. } => job_identifier,
        }
    }

    pub fn to_payload(&self) -> Dictionary {
        use ClientNotification as N;
        let p = Payload::new();
        match self {
            N::ControllerList(list) => return list.to_payload(),
            N::GridListDidAddGrid { grid_identifier }
            | N::GridListDidRemoveGrid { grid_identifier } => {
                p.string("gridIdentifier", grid_identifier)
            }
            N::GridAttributes { attributes, .. } => {
                p.dictionary("gridAttributes", attributes.to_dictionary())
            }
            N::GridJobListDidAddJob { job_identifier, .. }
            | N::GridJobListDidRemoveJob { job_identifier, .. } => {
                p.string("jobIdentifier", job_identifier)
            }
            N::GridAgentListDidAddAgent {
                agent_identifier, ..
            }
            | N::GridAgentListDidRemoveAgent {
                agent_identifier, ..
            }
            | N::AgentListDidAddAgent { agent_identifier }
            | N::AgentListDidRemoveAgent { agent_identifier } => {
                p.string("agentIdentifier", agent_identifier)
            }
            N::AgentAttributes { attributes, .. } => {
                p.dictionary("agentAttributes", attributes.to_dictionary())
            }
            N::JobAttributes { attributes, .. } => {
                p.dictionary("jobAttributes", attributes.to_dictionary())
            }
            N::JobLatestResultsAvailable { .. } => p,
            N::JobLog { log, .. } => p.value("jobLog", log.clone()),
        }
        .finish()
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

#[cfg(test)]
mod tests {
    use super::super::dict;
    use super::*;
    use crate::messages::{AgentState, JobStatus};
    use crate::plist::Date;

    /// The payload as Apple sends it and as a lenient peer might must read the same, and
    /// writing what was read must give back Apple's payload exactly.
    fn check_request(name: &str, apple: Dictionary, lenient: Dictionary) -> ClientRequest {
        let from_apple = ClientRequest::from_payload(name, &apple).expect("Apple's payload parses");
        let from_lenient =
            ClientRequest::from_payload(name, &lenient).expect("lenient payload parses");
        assert_eq!(from_apple, from_lenient, "{name}");
        assert_eq!(from_apple.name(), name);
        assert_eq!(from_apple.to_payload(), apple, "{name} written back");
        from_apple
    }

    fn check_reply(name: &str, apple: Dictionary, lenient: Dictionary) -> ControllerReply {
        let from_apple =
            ControllerReply::from_payload(name, &apple).expect("Apple's payload parses");
        let from_lenient =
            ControllerReply::from_payload(name, &lenient).expect("lenient payload parses");
        assert_eq!(from_apple, from_lenient, "{name}");
        assert_eq!(from_apple.name(), name);
        assert_eq!(from_apple.to_payload(), apple, "{name} written back");
        from_apple
    }

    fn note(identifier: &str, name: &str, payload: Dictionary) -> Envelope {
        envelope(identifier, name, MessageType::Notification, payload)
    }

    fn check_notification(apple: Envelope, lenient: Envelope) -> ClientNotification {
        let from_apple =
            ClientNotification::from_envelope(&apple).expect("Apple's envelope parses");
        let from_lenient =
            ClientNotification::from_envelope(&lenient).expect("lenient envelope parses");
        assert_eq!(from_apple, from_lenient, "{}", apple.name);
        assert_eq!(
            from_apple.to_envelope(),
            apple,
            "{} written back",
            apple.name
        );
        from_apple
    }

    fn job(identifier: &str, subscribe: Option<bool>) -> JobQuery {
        JobQuery {
            job_identifier: identifier.into(),
            subscription: subscribe.map(|s| Subscription {
                should_subscribe: s,
                predicate: None,
            }),
        }
    }

    #[test]
    fn list_requests_with_and_without_subscription() {
        let r = check_request("controllerList", dict! {}, dict! {"unrelated" => "x"});
        assert_eq!(
            r,
            ClientRequest::ControllerList(ListQuery { subscription: None })
        );
        let r = check_request(
            "controllerList",
            dict! {"shouldSubscribe" => "YES"},
            dict! {"shouldSubscribe" => Value::Boolean(true)},
        );
        assert!(matches!(r, ClientRequest::ControllerList(q) if q.should_subscribe()));
        let r = check_request(
            "gridList",
            dict! {"shouldSubscribe" => "YES", "predicate" => "FALSE"},
            dict! {"shouldSubscribe" => "true", "predicate" => "FALSE"},
        );
        let want = Subscription {
            should_subscribe: true,
            predicate: Some("FALSE".into()),
        };
        assert_eq!(
            r,
            ClientRequest::GridList(ListQuery {
                subscription: Some(want)
            })
        );
        check_request(
            "agentList",
            dict! {"shouldSubscribe" => "NO"},
            dict! {"shouldSubscribe" => "0"},
        );
        assert_eq!(
            ClientRequest::from_payload("controllerRole", &dict! {}).expect("parses"),
            ClientRequest::ControllerRole
        );
    }

    #[test]
    fn grid_requests() {
        let r = check_request(
            "gridJobList",
            dict! {"gridIdentifier" => "", "shouldSubscribe" => "YES",
            "predicate" => "applicationIdentifier == \"com.apple.xgrid.cli\""},
            dict! {"shouldSubscribe" => Value::Integer(1),
            "predicate" => "applicationIdentifier == \"com.apple.xgrid.cli\""},
        );
        assert!(
            matches!(&r, ClientRequest::GridJobList(q) if q.grid_identifier.is_empty() && q.should_subscribe())
        );
        check_request(
            "gridAttributes",
            dict! {"gridIdentifier" => "0", "shouldSubscribe" => "NO"},
            dict! {"gridIdentifier" => Value::Integer(0), "shouldSubscribe" => Value::Boolean(false)},
        );
        check_request(
            "gridAgentList",
            dict! {"gridIdentifier" => "3", "shouldSubscribe" => "YES"},
            dict! {"gridIdentifier" => Value::Integer(3), "shouldSubscribe" => "yes"},
        );
        let r = check_request(
            "gridControl",
            dict! {"gridIdentifier" => "2", "control" => "rename", "gridName" => "Old", "newGridName" => "New"},
            dict! {"gridIdentifier" => Value::Integer(2), "control" => "RENAME", "gridName" => "Old", "newGridName" => "New"},
        );
        assert!(matches!(
            r,
            ClientRequest::GridControl(GridControlRequest {
                control: GridAction::Rename,
                ..
            })
        ));
        check_request(
            "gridControl",
            dict! {"gridIdentifier" => "", "control" => "add", "gridName" => "Render"},
            dict! {"control" => "Add", "gridName" => "Render"},
        );
    }

    #[test]
    fn agent_requests() {
        let r = check_request(
            "agentAttributes",
            dict! {"agentIdentifier" => "7", "shouldSubscribe" => "YES"},
            dict! {"agentIdentifier" => Value::Integer(7), "shouldSubscribe" => "TRUE"},
        );
        assert!(matches!(r, ClientRequest::AgentAttributes(q) if q.agent_identifier == "7"));
        for name in ["agentAdd", "agentAssign", "agentRemove"] {
            let r = check_request(
                name,
                dict! {"agentIdentifier" => "7", "gridIdentifier" => "0"},
                dict! {"agentIdentifier" => Value::Integer(7), "gridIdentifier" => Value::Integer(0)},
            );
            assert_eq!(
                r.to_payload().get("agentIdentifier"),
                Some(&Value::from("7"))
            );
        }
    }

    #[test]
    fn job_requests() {
        let spec = dict! {"name" => "cal", "taskSpecifications" => dict! {"0" => dict! {"command" => "/usr/bin/cal"}}};
        let r = check_request(
            "jobSubmission",
            dict! {"jobSpecification" => spec.clone(), "gridIdentifier" => "0"},
            dict! {"jobSpecification" => spec.clone(), "gridIdentifier" => Value::Integer(0)},
        );
        assert_eq!(
            r,
            ClientRequest::JobSubmission(JobSubmission {
                job_specification: spec.clone(),
                grid_identifier: Some("0".into())
            })
        );
        check_request(
            "jobSubmission",
            dict! {"jobSpecification" => spec.clone()},
            dict! {"jobSpecification" => spec.clone()},
        );

        let r = check_request(
            "jobAttributes",
            dict! {"jobIdentifier" => "12", "shouldSubscribe" => "YES"},
            dict! {"jobIdentifier" => Value::Integer(12), "shouldSubscribe" => Value::Boolean(true)},
        );
        assert_eq!(r, ClientRequest::JobAttributes(job("12", Some(true))));
        check_request(
            "jobLog",
            dict! {"jobIdentifier" => "12", "shouldSubscribe" => "NO"},
            dict! {"jobIdentifier" => Value::Real(12.0), "shouldSubscribe" => "false"},
        );
        for name in [
            "jobSpecification",
            "jobResults",
            "jobLatestResults",
            "jobFinalResults",
        ] {
            let r = check_request(
                name,
                dict! {"jobIdentifier" => "12"},
                dict! {"jobIdentifier" => Value::Integer(12)},
            );
            assert_eq!(r.to_payload(), dict! {"jobIdentifier" => "12"});
        }
        // Peers may send empty identifiers; they are read, not refused.
        let r = check_request(
            "jobResults",
            dict! {"jobIdentifier" => ""},
            dict! {"jobIdentifier" => ""},
        );
        assert_eq!(r, ClientRequest::JobResults(job("", None)));

        for action in JobAction::ALL {
            let r = check_request(
                "jobControl",
                dict! {"jobIdentifier" => "12", "control" => action.as_str()},
                dict! {"jobIdentifier" => Value::Integer(12), "control" => action.as_str().to_uppercase()},
            );
            assert_eq!(
                r,
                ClientRequest::JobControl(JobControlRequest {
                    job_identifier: "12".into(),
                    control: *action
                })
            );
        }
        let tasks = dict! {"5" => dict! {"command" => "/bin/echo"}};
        check_request(
            "jobAddTask",
            dict! {"jobIdentifier" => "12", "taskSpecifications" => tasks.clone()},
            dict! {"jobIdentifier" => Value::Integer(12), "taskSpecifications" => tasks},
        );
    }

    #[test]
    fn every_request_survives_its_envelope() {
        let sub = Some(Subscription {
            should_subscribe: true,
            predicate: Some("TRUE".into()),
        });
        let grid = GridQuery {
            grid_identifier: "1".into(),
            subscription: sub.clone(),
        };
        let agent_grid = AgentGridRequest {
            agent_identifier: "a".into(),
            grid_identifier: "1".into(),
        };
        let all = vec![
            ClientRequest::ControllerList(ListQuery::default()),
            ClientRequest::ControllerRole,
            ClientRequest::GridList(ListQuery {
                subscription: sub.clone(),
            }),
            ClientRequest::GridAttributes(grid.clone()),
            ClientRequest::GridControl(GridControlRequest {
                grid_identifier: "1".into(),
                control: GridAction::MakeDefault,
                grid_name: None,
                new_grid_name: None,
            }),
            ClientRequest::GridJobList(grid.clone()),
            ClientRequest::GridAgentList(grid),
            ClientRequest::AgentList(ListQuery {
                subscription: sub.clone(),
            }),
            ClientRequest::AgentAttributes(AgentQuery {
                agent_identifier: "a".into(),
                subscription: sub,
            }),
            ClientRequest::AgentAdd(agent_grid.clone()),
            ClientRequest::AgentAssign(agent_grid.clone()),
            ClientRequest::AgentRemove(agent_grid),
            ClientRequest::JobSubmission(JobSubmission::default()),
            ClientRequest::JobAttributes(job("1", Some(false))),
            ClientRequest::JobSpecification(job("1", None)),
            ClientRequest::JobResults(job("1", None)),
            ClientRequest::JobLatestResults(job("1", None)),
            ClientRequest::JobFinalResults(job("1", None)),
            ClientRequest::JobLog(job("1", Some(true))),
            ClientRequest::JobControl(JobControlRequest {
                job_identifier: "1".into(),
                control: JobAction::Restart,
            }),
            ClientRequest::JobAddTask(JobAddTask {
                job_identifier: "1".into(),
                task_specifications: dict! {},
            }),
        ];
        for request in all {
            let envelope = request.to_envelope("9");
            assert_eq!(envelope.identifier, "9");
            assert_eq!(envelope.message_type, MessageType::Request);
            let back = ClientRequest::from_envelope(&envelope).expect("parses");
            assert!(
                !matches!(back, ClientRequest::Unknown(_)),
                "{} not recognised",
                envelope.name
            );
            assert_eq!(back, request);
        }
    }

    #[test]
    fn unknown_request_names_are_kept_for_an_invalid_request_reply() {
        let envelope = envelope(
            "3",
            "jobTeleport",
            MessageType::Request,
            dict! {"jobIdentifier" => "1"},
        );
        let request = ClientRequest::from_envelope(&envelope).expect("parses");
        assert_eq!(request, ClientRequest::Unknown("jobTeleport".into()));
        let reply = super::super::error_reply(
            &envelope.identifier,
            request.name(),
            &ErrorCode::InvalidRequest,
        );
        assert_eq!(reply.name, "jobTeleport");
        assert_eq!(reply.payload, dict! {"error" => "InvalidRequest"});
    }

    #[test]
    fn malformed_requests_name_message_and_field() {
        let err = ClientRequest::from_payload(
            "jobControl",
            &dict! {"jobIdentifier" => "1", "control" => "explode"},
        )
        .expect_err("refused");
        assert_eq!(err.field(), Some("control"));
        assert_eq!(err.reply_code(), ErrorCode::InvalidControl);
        let text = err.to_string();
        assert!(
            text.contains("jobControl") && text.contains("explode") && text.contains("`restart`"),
            "{text}"
        );

        let err = ClientRequest::from_payload("jobAttributes", &dict! {"shouldSubscribe" => "YES"})
            .expect_err("refused");
        assert_eq!(
            err,
            MessageError::MissingField {
                message: "jobAttributes".into(),
                field: "jobIdentifier".into()
            }
        );
        assert_eq!(err.reply_code(), ErrorCode::InvalidJobIdentifier);

        let err =
            ClientRequest::from_payload("jobSubmission", &dict! {"jobSpecification" => "cal"})
                .expect_err("refused");
        assert_eq!(
            err,
            MessageError::WrongKind {
                message: "jobSubmission".into(),
                field: "jobSpecification".into(),
                expected: "a dictionary",
                found: "a string",
            }
        );
        assert_eq!(err.reply_code(), ErrorCode::InvalidJobSpecification);

        let err =
            ClientRequest::from_payload("gridList", &dict! {"shouldSubscribe" => "sometimes"})
                .expect_err("refused");
        assert_eq!(err.field(), Some("shouldSubscribe"));
    }

    fn sample_job_attributes() -> JobAttributes {
        JobAttributes {
            name: "cal".into(),
            application_identifier: None,
            job_status: JobStatus::Finished,
            error: None,
            active_cpu_power: 0.0,
            date_now: Date(1000.0),
            date_submitted: Some(Date(900.0)),
            date_started: None,
            date_stopped: None,
            task_count: 1,
            undone_task_count: 0,
            percent_done: 100.0,
            suspended: false,
        }
    }

    #[test]
    fn controller_and_grid_replies() {
        let apple = dict! {
            "controllerList" => vec![Value::from(dict! {"hostname" => "xserve.local", "role" => "MASTER"})],
            "controllerRole" => "MASTER",
        };
        let r = check_reply("controllerList", apple.clone(), apple);
        let ControllerReply::ControllerList(list) = r else {
            panic!("wrong variant")
        };
        assert_eq!(list.controller_role, MASTER_ROLE);
        assert_eq!(
            list.controllers,
            vec![ControllerEntry {
                hostname: "xserve.local".into(),
                role: "MASTER".into()
            }]
        );
        check_reply(
            "controllerRole",
            dict! {"controllerRole" => "MASTER"},
            dict! {"controllerRole" => "MASTER", "x" => "y"},
        );

        let r = check_reply(
            "gridList",
            dict! {"gridList" => vec![Value::from("0"), Value::from("1")]},
            dict! {"gridList" => vec![Value::Integer(0), Value::Integer(1)]},
        );
        assert_eq!(r, ControllerReply::GridList(vec!["0".into(), "1".into()]));
        check_reply(
            "gridList",
            dict! {"gridList" => vec![Value::from("0")]},
            dict! {"gridList" => "0"},
        );
        check_reply(
            "gridAttributes",
            dict! {"gridAttributes" => dict! {"name" => "Xgrid", "isDefault" => "YES", "gridMegahertz" => "0"}},
            dict! {"gridAttributes" => dict! {"name" => "Xgrid", "isDefault" => Value::Boolean(true)}},
        );
        check_reply(
            "gridJobList",
            dict! {"jobList" => vec![Value::from("12")]},
            dict! {"jobList" => vec![Value::Integer(12)]},
        );
        check_reply(
            "gridAgentList",
            dict! {"agentList" => Vec::<Value>::new()},
            dict! {},
        );
        check_reply(
            "agentList",
            dict! {"agentList" => vec![Value::from("mac1")]},
            dict! {"agentList" => "mac1"},
        );
        for name in [
            "gridControl",
            "agentAdd",
            "agentAssign",
            "agentRemove",
            "jobControl",
            "jobAddTask",
        ] {
            let r = check_reply(name, dict! {}, dict! {"ignored" => "extra"});
            assert_eq!(r.to_envelope("4").payload, dict! {});
        }
    }

    #[test]
    fn agent_and_job_replies() {
        let r = check_reply(
            "agentAttributes",
            dict! {"agentAttributes" => dict! {
                "name" => "mac1", "address" => "10.0.0.2", "maximumTaskCount" => "2", "currentTaskCount" => "0",
                "maximumCPUPower" => "4000", "currentCPUPower" => "0", "agentState" => "Offline",
            }},
            dict! {"agentAttributes" => dict! {
                "name" => "mac1", "address" => "10.0.0.2", "maximumTaskCount" => Value::Integer(2),
                "maximumCPUPower" => Value::Real(4000.0), "agentState" => "offline",
            }},
        );
        assert!(
            matches!(r, ControllerReply::AgentAttributes(a) if a.agent_state == AgentState::Offline)
        );

        let r = check_reply(
            "jobSubmission",
            dict! {"jobIdentifier" => "42"},
            dict! {"jobIdentifier" => Value::Integer(42)},
        );
        assert_eq!(
            r,
            ControllerReply::JobSubmission {
                job_identifier: "42".into()
            }
        );

        let apple = dict! {"jobAttributes" => sample_job_attributes().to_dictionary()};
        let lenient = dict! {"jobAttributes" => dict! {
            "name" => "cal", "jobStatus" => "FINISHED", "dateNow" => Value::Integer(1000),
            "dateSubmitted" => Value::Date(Date(900.0)), "taskCount" => Value::Integer(1),
            "percentDone" => Value::Integer(100), "suspended" => "NO",
        }};
        assert_eq!(
            check_reply("jobAttributes", apple, lenient),
            ControllerReply::JobAttributes(sample_job_attributes())
        );

        let spec = dict! {"name" => "cal"};
        check_reply(
            "jobSpecification",
            dict! {"jobSpecification" => spec.clone()},
            dict! {"jobSpecification" => spec},
        );

        let streams = dict! {"taskResults" => dict! {"0" => dict! {
            "readData" => Value::Data(b"hello\n".to_vec()), "errData" => Value::Data(Vec::new()),
        }}};
        let lenient = dict! {"taskResults" => dict! {"0" => dict! {"readData" => "hello\n"}}};
        let r = check_reply("jobResults", streams.clone(), lenient.clone());
        let ControllerReply::JobResults(tasks) = r else {
            panic!("wrong variant")
        };
        assert_eq!(
            tasks.get("0").map(|t| t.read_data.as_slice()),
            Some(&b"hello\n"[..])
        );
        check_reply("jobLatestResults", streams, lenient);

        let apple = dict! {"taskResults" => dict! {"0" => dict! {
            "outputFiles" => dict! {"out/a.txt" => dict! {"fileData" => Value::Data(b"A".to_vec())}},
            "terminationStatus" => "0",
        }}};
        let lenient = dict! {"taskResults" => dict! {"0" => dict! {
            "outputFiles" => dict! {"out/a.txt" => dict! {"fileData" => Value::Data(b"A".to_vec())}},
            "terminationStatus" => Value::Integer(0),
        }}};
        let r = check_reply("jobFinalResults", apple, lenient);
        let ControllerReply::JobFinalResults(tasks) = r else {
            panic!("wrong variant")
        };
        assert_eq!(tasks.get("0").and_then(|t| t.termination_status), Some(0));

        let log = dict! {"jobLog" => vec![Value::from("submitted")]};
        check_reply("jobLog", log.clone(), log);
    }

    #[test]
    fn error_replies_are_recognised_for_any_request() {
        let reply = envelope(
            "5",
            "jobControl",
            MessageType::Reply,
            dict! {"error" => "JobCannotBeRestarted"},
        );
        let r = ControllerReply::from_envelope(&reply).expect("parses");
        assert_eq!(
            r,
            ControllerReply::Error {
                name: "jobControl".into(),
                code: ErrorCode::JobCannotBeRestarted
            }
        );
        assert_eq!(r.to_envelope("5"), reply);
        let err = ControllerReply::from_payload("jobTeleport", &dict! {}).expect_err("refused");
        assert!(matches!(err, MessageError::UnknownMessage { name, .. } if name == "jobTeleport"));
    }

    #[test]
    fn list_and_attribute_notifications() {
        let list = dict! {
            "controllerList" => vec![Value::from(dict! {"hostname" => "h", "role" => "MASTER"})],
            "controllerRole" => "MASTER",
        };
        check_notification(
            note("", "controllerList", list.clone()),
            note("", "controllerList", list),
        );
        for name in ["gridListDidAddGrid", "gridListDidRemoveGrid"] {
            let n = check_notification(
                note("", name, dict! {"gridIdentifier" => "2"}),
                note("", name, dict! {"gridIdentifier" => Value::Integer(2)}),
            );
            assert_eq!(n.name(), name);
        }
        for name in ["gridJobListDidAddJob", "gridJobListDidRemoveJob"] {
            let n = check_notification(
                note("0", name, dict! {"jobIdentifier" => "12"}),
                note(
                    "",
                    name,
                    dict! {"gridIdentifier" => "0", "jobIdentifier" => Value::Integer(12)},
                ),
            );
            assert_eq!(n.identifier(), "0");
        }
        for name in ["gridAgentListDidAddAgent", "gridAgentListDidRemoveAgent"] {
            check_notification(
                note("0", name, dict! {"agentIdentifier" => "mac1"}),
                note(
                    "0",
                    name,
                    dict! {"agentIdentifier" => "mac1", "extra" => "x"},
                ),
            );
        }
        for name in ["agentListDidAddAgent", "agentListDidRemoveAgent"] {
            check_notification(
                note("", name, dict! {"agentIdentifier" => "3"}),
                note("", name, dict! {"agentIdentifier" => Value::Integer(3)}),
            );
        }
        let grid = dict! {"name" => "Xgrid", "isDefault" => "NO", "gridMegahertz" => "1500.5"};
        let n = check_notification(
            note("1", "gridAttributes", dict! {"gridAttributes" => grid}),
            note(
                "",
                "gridAttributes",
                dict! {"gridIdentifier" => "1", "gridAttributes" => dict! {
                    "name" => "Xgrid", "gridMegahertz" => Value::Real(1500.5),
                }},
            ),
        );
        assert!(
            matches!(n, ClientNotification::GridAttributes { attributes, .. } if attributes.grid_megahertz == 1500.5)
        );
        let agent = dict! {
            "name" => "mac1", "address" => "a", "maximumTaskCount" => "1", "currentTaskCount" => "1",
            "maximumCPUPower" => "2000", "currentCPUPower" => "2000", "agentState" => "Available",
        };
        check_notification(
            note(
                "mac1",
                "agentAttributes",
                dict! {"agentAttributes" => agent.clone()},
            ),
            note(
                "",
                "agentAttributes",
                dict! {"agentIdentifier" => "mac1", "agentAttributes" => agent},
            ),
        );
    }

    #[test]
    fn job_notifications_name_the_job_in_the_identifier() {
        let attributes = sample_job_attributes().to_dictionary();
        let n = check_notification(
            note(
                "12",
                "jobAttributes",
                dict! {"jobAttributes" => attributes.clone()},
            ),
            note(
                "",
                "jobAttributes",
                dict! {"jobIdentifier" => Value::Integer(12), "jobAttributes" => attributes},
            ),
        );
        assert_eq!(
            n,
            ClientNotification::JobAttributes {
                job_identifier: "12".into(),
                attributes: sample_job_attributes()
            }
        );
        check_notification(
            note("12", "jobLatestResultsAvailable", dict! {}),
            note(
                "",
                "jobLatestResultsAvailable",
                dict! {"jobIdentifier" => "12"},
            ),
        );
        let log = dict! {"jobLog" => vec![Value::from("started")]};
        check_notification(note("12", "jobLog", log.clone()), note("12", "jobLog", log));
        let err = ClientNotification::from_envelope(&note("", "gridExploded", dict! {}))
            .expect_err("refused");
        assert!(matches!(err, MessageError::UnknownMessage { .. }));
        let err = ClientNotification::from_envelope(&note("1", "jobAttributes", dict! {}))
            .expect_err("refused");
        assert_eq!(err.field(), Some("jobAttributes"));
    }
}
