//! The attribute dictionaries a controller reports to clients: job attributes (§5.3), agent
//! attributes and grid attributes, each in a reply and in the matching notification.

use super::fields::{Fields, Payload};
use super::states::{AgentState, JobStatus};
use super::MessageError;
use crate::plist::{Date, Dictionary};

/// A job as clients see it (xgrid-wire.md §5.3).
#[derive(Debug, Clone, PartialEq)]
pub struct JobAttributes {
    pub name: String,
    pub application_identifier: Option<String>,
    pub job_status: JobStatus,
    /// Why the job failed; written only when present.
    pub error: Option<String>,
    /// Megahertz the job's running tasks use now.
    pub active_cpu_power: f64,
    /// The controller's clock when the attributes were taken. Clients shift the other dates
    /// by it, so it is always written and required on reading.
    pub date_now: Date,
    pub date_submitted: Option<Date>,
    pub date_started: Option<Date>,
    pub date_stopped: Option<Date>,
    pub task_count: i64,
    pub undone_task_count: i64,
    pub percent_done: f64,
    /// Written as `suspended = YES` only when true.
    pub suspended: bool,
}

impl JobAttributes {
    pub fn from_dictionary(dict: &Dictionary) -> Result<JobAttributes, MessageError> {
        JobAttributes::read(&Fields::new("jobAttributes", dict))
    }

    pub(crate) fn read(f: &Fields) -> Result<JobAttributes, MessageError> {
        Ok(JobAttributes {
            name: f.string("name")?,
            application_identifier: f.opt_string("applicationIdentifier")?,
            job_status: f.required_enumeration("jobStatus")?,
            error: f.opt_string("error")?,
            active_cpu_power: f.real("activeCPUPower")?,
            date_now: f.required_date("dateNow")?,
            date_submitted: f.opt_date("dateSubmitted")?,
            date_started: f.opt_date("dateStarted")?,
            date_stopped: f.opt_date("dateStopped")?,
            task_count: f.integer("taskCount")?,
            undone_task_count: f.integer("undoneTaskCount")?,
            percent_done: f.real("percentDone")?,
            suspended: f.flag("suspended")?,
        })
    }

    pub fn to_dictionary(&self) -> Dictionary {
        Payload::new()
            .string("name", &self.name)
            .opt_string(
                "applicationIdentifier",
                self.application_identifier.as_deref(),
            )
            .string("jobStatus", self.job_status.as_str())
            .opt_string("error", self.error.as_deref())
            .number("activeCPUPower", self.active_cpu_power)
            .opt_date("dateNow", Some(self.date_now))
            .opt_date("dateSubmitted", self.date_submitted)
            .opt_date("dateStarted", self.date_started)
            .opt_date("dateStopped", self.date_stopped)
            .integer("taskCount", self.task_count)
            .integer("undoneTaskCount", self.undone_task_count)
            .real("percentDone", self.percent_done)
            .when(self.suspended, |p| p.yes_no("suspended", true))
            .finish()
    }
}

/// An agent as clients see it.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentAttributes {
    pub name: String,
    pub address: String,
    pub maximum_task_count: i64,
    pub current_task_count: i64,
    pub maximum_cpu_power: f64,
    pub current_cpu_power: f64,
    pub agent_state: AgentState,
}

impl AgentAttributes {
    pub fn from_dictionary(dict: &Dictionary) -> Result<AgentAttributes, MessageError> {
        AgentAttributes::read(&Fields::new("agentAttributes", dict))
    }

    pub(crate) fn read(f: &Fields) -> Result<AgentAttributes, MessageError> {
        Ok(AgentAttributes {
            name: f.string("name")?,
            address: f.string("address")?,
            maximum_task_count: f.integer("maximumTaskCount")?,
            current_task_count: f.integer("currentTaskCount")?,
            maximum_cpu_power: f.real("maximumCPUPower")?,
            current_cpu_power: f.real("currentCPUPower")?,
            agent_state: f.required_enumeration("agentState")?,
        })
    }

    pub fn to_dictionary(&self) -> Dictionary {
        Payload::new()
            .string("name", &self.name)
            .string("address", &self.address)
            .integer("maximumTaskCount", self.maximum_task_count)
            .integer("currentTaskCount", self.current_task_count)
            .number("maximumCPUPower", self.maximum_cpu_power)
            .number("currentCPUPower", self.current_cpu_power)
            .string("agentState", self.agent_state.as_str())
            .finish()
    }
}

/// A grid as clients see it.
#[derive(Debug, Clone, PartialEq)]
pub struct GridAttributes {
    pub name: String,
    pub is_default: bool,
    /// Total megahertz of the grid's agents.
    pub grid_megahertz: f64,
}

impl GridAttributes {
    pub fn from_dictionary(dict: &Dictionary) -> Result<GridAttributes, MessageError> {
        GridAttributes::read(&Fields::new("gridAttributes", dict))
    }

    pub(crate) fn read(f: &Fields) -> Result<GridAttributes, MessageError> {
        Ok(GridAttributes {
            name: f.string("name")?,
            is_default: f.flag("isDefault")?,
            grid_megahertz: f.real("gridMegahertz")?,
        })
    }

    pub fn to_dictionary(&self) -> Dictionary {
        Payload::new()
            .string("name", &self.name)
            .yes_no("isDefault", self.is_default)
            .number("gridMegahertz", self.grid_megahertz)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::super::dict;
    use super::*;
    use crate::plist::Value;
    use proptest::prelude::*;

    fn sample_job() -> JobAttributes {
        JobAttributes {
            name: "cal".into(),
            application_identifier: Some("com.apple.xgrid.cli".into()),
            job_status: JobStatus::Running,
            error: None,
            active_cpu_power: 2000.0,
            date_now: Date(200_000_000.0),
            date_submitted: Some(Date(199_999_000.0)),
            date_started: Some(Date(199_999_100.0)),
            date_stopped: None,
            task_count: 4,
            undone_task_count: 3,
            percent_done: 25.0,
            suspended: false,
        }
    }

    #[test]
    fn job_attributes_written_as_apple_does() {
        let out = sample_job().to_dictionary();
        assert_eq!(
            out,
            dict! {
                "name" => "cal",
                "applicationIdentifier" => "com.apple.xgrid.cli",
                "jobStatus" => "Running",
                "activeCPUPower" => "2000",
                "dateNow" => Value::Date(Date(200_000_000.0)),
                "dateSubmitted" => Value::Date(Date(199_999_000.0)),
                "dateStarted" => Value::Date(Date(199_999_100.0)),
                "taskCount" => "4",
                "undoneTaskCount" => "3",
                "percentDone" => Value::Real(25.0),
            }
        );
    }

    #[test]
    fn suspended_and_error_appear_only_when_set() {
        let job = JobAttributes {
            suspended: true,
            error: Some("InvalidTaskSpecification".into()),
            job_status: JobStatus::Failed,
            ..sample_job()
        };
        let out = job.to_dictionary();
        assert_eq!(out.get("suspended"), Some(&Value::from("YES")));
        assert_eq!(
            out.get("error"),
            Some(&Value::from("InvalidTaskSpecification"))
        );
        assert_eq!(out.get("jobStatus"), Some(&Value::from("Failed")));
    }

    #[test]
    fn job_attributes_read_leniently() {
        let lenient = dict! {
            "name" => "cal",
            "applicationIdentifier" => "com.apple.xgrid.cli",
            "jobStatus" => "running",
            "activeCPUPower" => Value::Integer(2000),
            "dateNow" => "2007-05-04T19:33:20Z",
            "dateSubmitted" => Value::Real(199_999_000.0),
            "dateStarted" => Value::Date(Date(199_999_100.0)),
            "taskCount" => Value::Integer(4),
            "undoneTaskCount" => "3",
            "percentDone" => "25",
            "suspended" => "false",
            "somethingNew" => "ignored",
        };
        assert_eq!(
            JobAttributes::from_dictionary(&lenient).expect("parses"),
            sample_job()
        );
        let apple = sample_job().to_dictionary();
        assert_eq!(
            JobAttributes::from_dictionary(&apple).expect("parses"),
            sample_job()
        );
    }

    #[test]
    fn job_attributes_need_status_and_clock() {
        let mut d = sample_job().to_dictionary();
        d.remove("dateNow");
        let err = JobAttributes::from_dictionary(&d).expect_err("refused");
        assert_eq!(err.field(), Some("dateNow"));
        let mut d = sample_job().to_dictionary();
        d.insert("jobStatus".into(), Value::from("Exploded"));
        assert_eq!(
            JobAttributes::from_dictionary(&d)
                .expect_err("refused")
                .field(),
            Some("jobStatus")
        );
    }

    #[test]
    fn agent_attributes_apple_and_lenient_agree() {
        let apple = dict! {
            "name" => "mac1", "address" => "10.0.0.5", "maximumTaskCount" => "2",
            "currentTaskCount" => "1", "maximumCPUPower" => "4000", "currentCPUPower" => "2000",
            "agentState" => "Available",
        };
        let lenient = dict! {
            "name" => "mac1", "address" => "10.0.0.5", "maximumTaskCount" => Value::Integer(2),
            "currentTaskCount" => Value::Real(1.0), "maximumCPUPower" => "4000.000000",
            "currentCPUPower" => Value::Integer(2000), "agentState" => "AVAILABLE",
        };
        let a = AgentAttributes::from_dictionary(&apple).expect("parses");
        assert_eq!(
            a,
            AgentAttributes::from_dictionary(&lenient).expect("parses")
        );
        assert_eq!(a.maximum_task_count, 2);
        assert_eq!(a.agent_state, AgentState::Available);
        assert_eq!(a.to_dictionary(), apple);
    }

    #[test]
    fn grid_attributes_apple_and_lenient_agree() {
        let apple = dict! {"name" => "Xgrid", "isDefault" => "YES", "gridMegahertz" => "8000"};
        let lenient = dict! {"name" => "Xgrid", "isDefault" => Value::Boolean(true), "gridMegahertz" => Value::Integer(8000)};
        let g = GridAttributes::from_dictionary(&apple).expect("parses");
        assert_eq!(
            g,
            GridAttributes {
                name: "Xgrid".into(),
                is_default: true,
                grid_megahertz: 8000.0
            }
        );
        assert_eq!(
            GridAttributes::from_dictionary(&lenient).expect("parses"),
            g
        );
        assert_eq!(g.to_dictionary(), apple);
    }

    fn any_date() -> impl Strategy<Value = Date> {
        (-1_000_000_000i64..2_000_000_000).prop_map(|s| Date(s as f64))
    }

    prop_compose! {
        fn any_job()(
            name in ".*",
            application_identifier in proptest::option::of("[a-z.]{1,20}"),
            status in proptest::sample::select(JobStatus::ALL),
            error in proptest::option::of("[A-Za-z ]{0,20}"),
            active_cpu_power in 0.0..1e6f64,
            date_now in any_date(),
            dates in (proptest::option::of(any_date()), proptest::option::of(any_date()), proptest::option::of(any_date())),
            task_count in 0i64..1_000_000,
            undone_task_count in 0i64..1_000_000,
            percent_done in 0.0..100.0f64,
            suspended in any::<bool>(),
        ) -> JobAttributes {
            JobAttributes {
                name, application_identifier, job_status: status, error, active_cpu_power,
                date_now, date_submitted: dates.0, date_started: dates.1, date_stopped: dates.2,
                task_count, undone_task_count, percent_done, suspended,
            }
        }
    }

    proptest! {
        #[test]
        fn job_attributes_round_trip(job in any_job()) {
            prop_assert_eq!(JobAttributes::from_dictionary(&job.to_dictionary()).expect("parses"), job);
        }
    }
}
