//! The job specification model (xgrid-wire.md §5.1, §5.2): a validated, fully expanded job
//! built from the plist dictionary a client submits, the canonical plist written back, and
//! the shapes a batch file may take.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::plist::{Dictionary, Value};

/// Why a job specification was refused; each message names the task or file at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobSpecError {
    #[error("the job specification has no tasks: taskSpecifications is missing or empty")]
    NoTasks,
    #[error("task {0:?} has no command")]
    MissingCommand(String),
    #[error(
        "task {task:?} uses task prototype {prototype:?}, which taskPrototypes does not define"
    )]
    UnknownPrototype { task: String, prototype: String },
    #[error("task {task:?} depends on task {dependency:?}, which the job does not have")]
    UnknownDependency { task: String, dependency: String },
    #[error("tasks wait for each other in a cycle: {} (each waits for the next)", .0.join(" -> "))]
    DependencyCycle(Vec<String>),
    #[error(
        "task {task:?} maps {name:?} to input file {key:?}, which inputFiles does not contain"
    )]
    UnknownInputFile {
        task: String,
        name: String,
        key: String,
    },
    #[error("{context} {path:?} is not a safe path inside the task directory: {reason}")]
    UnsafePath {
        context: String,
        path: String,
        reason: &'static str,
    },
    #[error("artConditions names ART {0:?}, which artSpecifications does not define")]
    UnknownArt(String),
    #[error("{location}: expected {expected}, found {found}")]
    WrongType {
        location: String,
        expected: &'static str,
        found: &'static str,
    },
    #[error("{location}: {value:?} is not {expected}")]
    BadValue {
        location: String,
        value: String,
        expected: &'static str,
    },
    #[error("{0} is missing")]
    MissingKey(String),
    #[error("the batch file holds no job specifications")]
    EmptyBatch,
}

type Result<T> = std::result::Result<T, JobSpecError>;

/// A validated job: prototypes expanded, input files resolved per task, dependencies checked.
#[derive(Debug, Clone, PartialEq)]
pub struct JobSpecification {
    pub name: Option<String>,
    pub application_identifier: Option<String>,
    pub submission_identifier: Option<String>,
    pub notification_email: Option<String>,
    pub grid_identifier: Option<String>,
    pub scheduler: SchedulerParameters,
    /// Task identifier → name of the agent the task should preferably run on.
    pub scheduler_hints: BTreeMap<String, String>,
    /// The job's files, by path relative to the task directory.
    pub input_files: BTreeMap<String, InputFile>,
    /// ART identifier (also the executable's file name) → the ART to run on candidate agents.
    pub art_specifications: BTreeMap<String, ArtSpecification>,
    /// ART identifier → the score an agent's ART must print to get the job's tasks.
    pub art_conditions: BTreeMap<String, ArtCondition>,
    /// Task identifier → task.
    pub tasks: BTreeMap<String, TaskSpecification>,
}

/// The job's `schedulerParameters`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SchedulerParameters {
    /// Jobs (by identifier) that must finish before this one starts.
    pub depends_on_jobs: Vec<String>,
    pub tasks_must_start_simultaneously: bool,
    pub minimum_task_count: Option<u64>,
}

/// One file given to tasks. The bytes are shared, so every task can hold the job's files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputFile {
    pub data: Arc<[u8]>,
    pub is_executable: bool,
}

/// An agent-ranking tool (ART): an executable run on candidate agents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtSpecification {
    pub data: Arc<[u8]>,
    pub is_executable: bool,
    pub arguments: Vec<String>,
}

/// Bounds an ART's printed score must meet; absent bounds always hold.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ArtCondition {
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub equal: Option<f64>,
}

impl ArtCondition {
    /// Whether an agent whose ART printed `score` qualifies.
    pub fn accepts(&self, score: f64) -> bool {
        self.min.is_none_or(|m| score >= m)
            && self.max.is_none_or(|m| score <= m)
            && self.equal.is_none_or(|e| score == e)
    }
}

/// One task, after its prototype (if any) was merged in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskSpecification {
    pub command: String,
    pub arguments: Vec<String>,
    pub environment: BTreeMap<String, String>,
    /// Passed through as given (Apple's tools name an input file whose bytes feed stdin).
    pub input_stream: Option<String>,
    /// Name in the task directory → key in the job's `inputFiles` (checked to exist); see
    /// [`JobSpecification::task_input_files`] for what the task actually receives.
    pub input_file_map: BTreeMap<String, String>,
    pub depends_on_tasks: Vec<String>,
}

impl JobSpecification {
    /// Build and validate from a submitted `jobSpecification` dictionary (numbers may be
    /// strings, booleans `YES`/`NO`/`true`/`false`; unknown keys are ignored).
    pub fn from_plist(job: &Dictionary) -> Result<JobSpecification> {
        let input_files = read_input_files(job)?;
        let (art_specifications, art_conditions) = read_arts(job)?;
        let tasks = read_tasks(job, &input_files)?;
        let spec = JobSpecification {
            name: optional(job, "name", string, "job key")?,
            application_identifier: optional(job, "applicationIdentifier", string, "job key")?,
            submission_identifier: optional(job, "submissionIdentifier", string, "job key")?,
            notification_email: optional(job, "notificationEmail", string, "job key")?,
            grid_identifier: optional(job, "gridIdentifier", string, "job key")?,
            scheduler: read_scheduler_parameters(job)?,
            scheduler_hints: optional(job, "schedulerHints", string_map, "job key")?
                .unwrap_or_default(),
            input_files,
            art_specifications,
            art_conditions,
            tasks,
        };
        spec.task_order()?;
        Ok(spec)
    }

    /// The canonical dictionary, as `xgrid -job specification` prints it: prototypes
    /// expanded, empty optional keys left out (an empty `arguments` crashes a known agent).
    pub fn to_plist(&self) -> Dictionary {
        let mut job = Dictionary::new();
        let mut put_text = |key: &str, value: &Option<String>| {
            if let Some(v) = value {
                job.insert(key.into(), Value::from(v.as_str()));
            }
        };
        put_text("name", &self.name);
        put_text("applicationIdentifier", &self.application_identifier);
        put_text("submissionIdentifier", &self.submission_identifier);
        put_text("notificationEmail", &self.notification_email);
        put_text("gridIdentifier", &self.grid_identifier);

        let files = self.input_files.iter().map(|(path, f)| {
            let mut entry = Dictionary::new();
            entry.insert("fileData".into(), Value::Data(f.data.to_vec()));
            entry.insert("isExecutable".into(), yes_no(f.is_executable));
            (path.clone(), Value::Dictionary(entry))
        });
        job.insert("inputFiles".into(), Value::Dictionary(files.collect()));

        let scheduler = self.scheduler.to_plist();
        if !scheduler.is_empty() {
            job.insert("schedulerParameters".into(), Value::Dictionary(scheduler));
        }
        if !self.scheduler_hints.is_empty() {
            job.insert(
                "schedulerHints".into(),
                string_map_value(&self.scheduler_hints),
            );
        }
        if !self.art_specifications.is_empty() {
            let arts = self.art_specifications.iter().map(|(id, art)| {
                let mut entry = Dictionary::new();
                entry.insert("artData".into(), Value::Data(art.data.to_vec()));
                entry.insert("isExecutable".into(), yes_no(art.is_executable));
                if !art.arguments.is_empty() {
                    entry.insert("artArguments".into(), string_array(&art.arguments));
                }
                (id.clone(), Value::Dictionary(entry))
            });
            job.insert(
                "artSpecifications".into(),
                Value::Dictionary(arts.collect()),
            );
        }
        if !self.art_conditions.is_empty() {
            let conditions = self.art_conditions.iter().map(|(id, c)| {
                let mut entry = Dictionary::new();
                for (key, bound) in [("artMin", c.min), ("artMax", c.max), ("artEqual", c.equal)] {
                    if let Some(b) = bound {
                        // Numbers travel as strings; Rust's float Display round-trips exactly.
                        entry.insert(key.into(), Value::String(b.to_string()));
                    }
                }
                (id.clone(), Value::Dictionary(entry))
            });
            job.insert(
                "artConditions".into(),
                Value::Dictionary(conditions.collect()),
            );
        }
        let tasks = self
            .tasks
            .iter()
            .map(|(id, t)| (id.clone(), Value::Dictionary(t.to_plist())));
        job.insert(
            "taskSpecifications".into(),
            Value::Dictionary(tasks.collect()),
        );
        job
    }

    /// Every file task `task` receives, by path in its directory: all of the job's
    /// `inputFiles` at their own paths, then its `inputFileMap` entries, which win on a clash.
    /// Resolved on demand so a job of many tasks and files holds each file once.
    pub fn task_input_files(&self, task: &str) -> BTreeMap<&str, &InputFile> {
        let mut files: BTreeMap<&str, &InputFile> = self
            .input_files
            .iter()
            .map(|(path, f)| (path.as_str(), f))
            .collect();
        let mapped = self
            .tasks
            .get(task)
            .map(|t| &t.input_file_map)
            .into_iter()
            .flatten();
        for (name, key) in mapped {
            if let Some(f) = self.input_files.get(key) {
                files.insert(name, f);
            }
        }
        files
    }

    /// Task identifiers, each after every task it depends on; among tasks that are ready
    /// together, numeric identifiers come first in numeric order, then the rest by name.
    pub fn task_order(&self) -> Result<Vec<&str>> {
        let mut waiting_on: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        let mut dependents: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (id, task) in &self.tasks {
            let mut deps = BTreeSet::new();
            for dep in &task.depends_on_tasks {
                let Some((dep, _)) = self.tasks.get_key_value(dep) else {
                    return Err(JobSpecError::UnknownDependency {
                        task: id.clone(),
                        dependency: dep.clone(),
                    });
                };
                if deps.insert(dep.as_str()) {
                    dependents.entry(dep.as_str()).or_default().push(id);
                }
            }
            waiting_on.insert(id, deps);
        }
        let mut ready: BTreeSet<(TaskRank, &str)> = waiting_on
            .iter()
            .filter(|(_, deps)| deps.is_empty())
            .map(|(id, _)| (TaskRank::of(id), *id))
            .collect();
        let mut order = Vec::with_capacity(self.tasks.len());
        while let Some((_, id)) = ready.pop_first() {
            waiting_on.remove(id);
            order.push(id);
            for dependent in dependents.get(id).into_iter().flatten() {
                if let Some(deps) = waiting_on.get_mut(dependent) {
                    deps.remove(id);
                    if deps.is_empty() {
                        ready.insert((TaskRank::of(dependent), dependent));
                    }
                }
            }
        }
        if waiting_on.is_empty() {
            Ok(order)
        } else {
            Err(JobSpecError::DependencyCycle(find_cycle(&waiting_on)))
        }
    }
}

/// Job specifications in a batch file (xgrid-wire.md §5.2): an array of them, Apple's
/// `{jobSpecification = {…}}` wrapper, or one bare specification. Returned as submitted, so
/// nothing is lost on the way to the controller; validate each with `from_plist`.
pub fn parse_batch(value: &Value) -> Result<Vec<Dictionary>> {
    let mut jobs = Vec::new();
    collect_batch(value, "the batch file", &mut jobs)?;
    if jobs.is_empty() {
        return Err(JobSpecError::EmptyBatch);
    }
    Ok(jobs)
}

fn collect_batch(value: &Value, at: &str, jobs: &mut Vec<Dictionary>) -> Result<()> {
    match value {
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                collect_batch(item, &format!("{at}, item {i}"), jobs)?;
            }
            Ok(())
        }
        Value::Dictionary(d) => match d.get("jobSpecification") {
            Some(inner) => collect_batch(inner, &format!("{at}, jobSpecification"), jobs),
            None => {
                jobs.push(d.clone());
                Ok(())
            }
        },
        other => Err(wrong_type(
            at,
            "a job specification dictionary or an array",
            other,
        )),
    }
}

impl SchedulerParameters {
    fn to_plist(&self) -> Dictionary {
        let mut d = Dictionary::new();
        if !self.depends_on_jobs.is_empty() {
            d.insert("dependsOnJobs".into(), string_array(&self.depends_on_jobs));
        }
        if self.tasks_must_start_simultaneously {
            d.insert("tasksMustStartSimultaneously".into(), yes_no(true));
        }
        if let Some(n) = self.minimum_task_count {
            d.insert("minimumTaskCount".into(), Value::String(n.to_string()));
        }
        d
    }
}

impl TaskSpecification {
    fn to_plist(&self) -> Dictionary {
        let mut d = Dictionary::new();
        d.insert("command".into(), Value::from(self.command.as_str()));
        if !self.arguments.is_empty() {
            d.insert("arguments".into(), string_array(&self.arguments));
        }
        if !self.environment.is_empty() {
            d.insert("environment".into(), string_map_value(&self.environment));
        }
        if let Some(stream) = &self.input_stream {
            d.insert("inputStream".into(), Value::from(stream.as_str()));
        }
        if !self.input_file_map.is_empty() {
            d.insert(
                "inputFileMap".into(),
                string_map_value(&self.input_file_map),
            );
        }
        if !self.depends_on_tasks.is_empty() {
            d.insert(
                "dependsOnTasks".into(),
                string_array(&self.depends_on_tasks),
            );
        }
        d
    }
}

// Numeric task identifiers ("2" before "10") first, then the others by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum TaskRank {
    Number(u128),
    Name,
}

impl TaskRank {
    fn of(id: &str) -> TaskRank {
        id.parse().map_or(TaskRank::Name, TaskRank::Number)
    }
}

// Every task left after a topological sort waits on at least one other leftover task, so
// following those edges from any of them must come back round; the loop is the cycle.
fn find_cycle(waiting_on: &BTreeMap<&str, BTreeSet<&str>>) -> Vec<String> {
    let Some(start) = waiting_on.keys().min_by_key(|id| (TaskRank::of(id), **id)) else {
        return Vec::new();
    };
    let mut path: Vec<&str> = vec![start];
    let mut current = *start;
    loop {
        let next = waiting_on
            .get(current)
            .and_then(|deps| deps.iter().min_by_key(|id| (TaskRank::of(id), **id)));
        let Some(&next) = next else {
            return path.iter().map(|s| s.to_string()).collect();
        };
        if let Some(first) = path.iter().position(|&seen| seen == next) {
            let mut cycle: Vec<String> = path[first..].iter().map(|s| s.to_string()).collect();
            cycle.push(next.to_string());
            return cycle;
        }
        path.push(next);
        current = next;
    }
}

fn read_scheduler_parameters(job: &Dictionary) -> Result<SchedulerParameters> {
    let Some(params) = optional(job, "schedulerParameters", dictionary, "job key")? else {
        return Ok(SchedulerParameters::default());
    };
    let at = "schedulerParameters key";
    Ok(SchedulerParameters {
        depends_on_jobs: optional(params, "dependsOnJobs", string_list, at)?.unwrap_or_default(),
        tasks_must_start_simultaneously: optional(
            params,
            "tasksMustStartSimultaneously",
            boolean,
            at,
        )?
        .unwrap_or(false),
        minimum_task_count: optional(params, "minimumTaskCount", count, at)?,
    })
}

fn read_input_files(job: &Dictionary) -> Result<BTreeMap<String, InputFile>> {
    let mut files = BTreeMap::new();
    let Some(entries) = optional(job, "inputFiles", dictionary, "job key")? else {
        return Ok(files);
    };
    for (path, entry) in entries {
        check_task_path(path, "inputFiles entry")?;
        let at = format!("input file {path:?} key");
        let entry = dictionary(entry, &format!("input file {path:?}"))?;
        let data = optional(entry, "fileData", file_data, &at)?
            .ok_or_else(|| JobSpecError::MissingKey(format!("{at} \"fileData\"")))?;
        let is_executable = optional(entry, "isExecutable", boolean, &at)?.unwrap_or(false);
        files.insert(
            path.clone(),
            InputFile {
                data,
                is_executable,
            },
        );
    }
    Ok(files)
}

type Arts = (
    BTreeMap<String, ArtSpecification>,
    BTreeMap<String, ArtCondition>,
);

fn read_arts(job: &Dictionary) -> Result<Arts> {
    let mut arts = BTreeMap::new();
    for (id, entry) in optional(job, "artSpecifications", dictionary, "job key")?
        .into_iter()
        .flatten()
    {
        // The controller writes the ART under its identifier before running it.
        check_task_path(id, "artSpecifications entry")?;
        let at = format!("ART {id:?} key");
        let entry = dictionary(entry, &format!("ART {id:?}"))?;
        let data = optional(entry, "artData", file_data, &at)?
            .ok_or_else(|| JobSpecError::MissingKey(format!("{at} \"artData\"")))?;
        arts.insert(
            id.clone(),
            ArtSpecification {
                data,
                is_executable: optional(entry, "isExecutable", boolean, &at)?.unwrap_or(false),
                arguments: optional(entry, "artArguments", string_list, &at)?.unwrap_or_default(),
            },
        );
    }
    let mut conditions = BTreeMap::new();
    for (id, entry) in optional(job, "artConditions", dictionary, "job key")?
        .into_iter()
        .flatten()
    {
        if !arts.contains_key(id) {
            return Err(JobSpecError::UnknownArt(id.clone()));
        }
        let at = format!("ART condition {id:?} key");
        let entry = dictionary(entry, &format!("ART condition {id:?}"))?;
        conditions.insert(
            id.clone(),
            ArtCondition {
                min: optional(entry, "artMin", number, &at)?,
                max: optional(entry, "artMax", number, &at)?,
                equal: optional(entry, "artEqual", number, &at)?,
            },
        );
    }
    Ok((arts, conditions))
}

fn read_tasks(
    job: &Dictionary,
    job_files: &BTreeMap<String, InputFile>,
) -> Result<BTreeMap<String, TaskSpecification>> {
    let mut prototypes: BTreeMap<&str, &Dictionary> = BTreeMap::new();
    for (id, proto) in optional(job, "taskPrototypes", dictionary, "job key")?
        .into_iter()
        .flatten()
    {
        prototypes.insert(id, dictionary(proto, &format!("task prototype {id:?}"))?);
    }
    // Apple writes a dictionary keyed by task identifier; an array (identifiers "0", "1", …)
    // costs nothing to accept.
    let submitted: Vec<(String, &Value)> = match job.get("taskSpecifications") {
        None => Vec::new(),
        Some(Value::Dictionary(d)) => d.iter().map(|(k, v)| (k.clone(), v)).collect(),
        Some(Value::Array(a)) => a
            .iter()
            .enumerate()
            .map(|(i, v)| (i.to_string(), v))
            .collect(),
        Some(other) => {
            return Err(wrong_type(
                "job key \"taskSpecifications\"",
                "a dictionary",
                other,
            ))
        }
    };
    if submitted.is_empty() {
        return Err(JobSpecError::NoTasks);
    }
    let mut tasks = BTreeMap::new();
    for (id, value) in submitted {
        let own = dictionary(value, &format!("task {id:?}"))?;
        let merged;
        let keys = match own.get("taskPrototypeIdentifier") {
            None => own,
            Some(proto_id) => {
                let proto_id = string(
                    proto_id,
                    &format!("task {id:?} key \"taskPrototypeIdentifier\""),
                )?;
                // A shallow merge: a key the task gives replaces the prototype's whole value.
                // Prototypes do not chain.
                let Some(proto) = prototypes.get(proto_id.as_str()) else {
                    return Err(JobSpecError::UnknownPrototype {
                        task: id,
                        prototype: proto_id,
                    });
                };
                merged = proto
                    .iter()
                    .chain(own)
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                &merged
            }
        };
        let task = read_task(&id, keys, job_files)?;
        tasks.insert(id, task);
    }
    Ok(tasks)
}

fn read_task(
    id: &str,
    task: &Dictionary,
    job_files: &BTreeMap<String, InputFile>,
) -> Result<TaskSpecification> {
    let at = format!("task {id:?} key");
    let command = optional(task, "command", string, &at)?
        .filter(|c| !c.is_empty())
        .ok_or_else(|| JobSpecError::MissingCommand(id.to_string()))?;
    let input_file_map = optional(task, "inputFileMap", string_map, &at)?.unwrap_or_default();
    for (name, key) in &input_file_map {
        check_task_path(name, &format!("task {id:?} inputFileMap name"))?;
        if !job_files.contains_key(key) {
            return Err(JobSpecError::UnknownInputFile {
                task: id.to_string(),
                name: name.clone(),
                key: key.clone(),
            });
        }
    }
    Ok(TaskSpecification {
        command,
        arguments: optional(task, "arguments", string_list, &at)?.unwrap_or_default(),
        environment: optional(task, "environment", string_map, &at)?.unwrap_or_default(),
        input_stream: optional(task, "inputStream", string, &at)?,
        input_file_map,
        depends_on_tasks: optional(task, "dependsOnTasks", string_list, &at)?.unwrap_or_default(),
    })
}

// Files land in the task's directory on an agent, so a path must stay inside it: relative,
// and made only of ordinary names. `.` is refused too: a canonical path is simpler to trust
// than one that needs cleaning up.
fn check_task_path(path: &str, context: &str) -> Result<()> {
    let reason = if path.is_empty() {
        Some("it is empty")
    } else if path.contains('\0') {
        Some("it contains a NUL character")
    } else if path.starts_with('/') {
        Some("it is absolute")
    } else {
        path.split('/').find_map(|component| match component {
            "" => Some("it has an empty component (a doubled or trailing '/')"),
            ".." => Some("it has a '..' component"),
            "." => Some("it has a '.' component"),
            _ => None,
        })
    };
    match reason {
        None => Ok(()),
        Some(reason) => Err(JobSpecError::UnsafePath {
            context: context.to_string(),
            path: path.to_string(),
            reason,
        }),
    }
}

// Reads `key` from `dict` with `read` when present; `at` prefixes the key in error messages.
fn optional<'a, T>(
    dict: &'a Dictionary,
    key: &str,
    read: impl FnOnce(&'a Value, &str) -> Result<T>,
    at: &str,
) -> Result<Option<T>> {
    dict.get(key)
        .map(|v| read(v, &format!("{at} {key:?}")))
        .transpose()
}

fn wrong_type(location: &str, expected: &'static str, found: &Value) -> JobSpecError {
    JobSpecError::WrongType {
        location: location.to_string(),
        expected,
        found: found.kind_name(),
    }
}

fn dictionary<'a>(value: &'a Value, at: &str) -> Result<&'a Dictionary> {
    value
        .as_dictionary()
        .ok_or_else(|| wrong_type(at, "a dictionary", value))
}

fn string(value: &Value, at: &str) -> Result<String> {
    value
        .to_string_lenient()
        .ok_or_else(|| wrong_type(at, "a string", value))
}

fn string_list(value: &Value, at: &str) -> Result<Vec<String>> {
    let items = value
        .as_array()
        .ok_or_else(|| wrong_type(at, "an array", value))?;
    items
        .iter()
        .enumerate()
        .map(|(i, v)| string(v, &format!("{at} item {i}")))
        .collect()
}

fn string_map(value: &Value, at: &str) -> Result<BTreeMap<String, String>> {
    dictionary(value, at)?
        .iter()
        .map(|(k, v)| Ok((k.clone(), string(v, &format!("{at} entry {k:?}"))?)))
        .collect()
}

fn boolean(value: &Value, at: &str) -> Result<bool> {
    value
        .to_bool()
        .ok_or_else(|| bad_value(at, value, "YES or NO"))
}

fn number(value: &Value, at: &str) -> Result<f64> {
    value
        .to_f64()
        .filter(|n| n.is_finite())
        .ok_or_else(|| bad_value(at, value, "a number"))
}

fn count(value: &Value, at: &str) -> Result<u64> {
    value
        .to_i64()
        .and_then(|n| u64::try_from(n).ok())
        .ok_or_else(|| bad_value(at, value, "a whole number of at least 0"))
}

// File contents come as <data>; a hand-written batch file may give text instead.
fn file_data(value: &Value, at: &str) -> Result<Arc<[u8]>> {
    match value {
        Value::Data(d) => Ok(d.as_slice().into()),
        Value::String(s) => Ok(s.as_bytes().into()),
        other => Err(wrong_type(at, "data", other)),
    }
}

fn bad_value(at: &str, value: &Value, expected: &'static str) -> JobSpecError {
    let shown = value
        .to_string_lenient()
        .unwrap_or_else(|| value.kind_name().to_string());
    JobSpecError::BadValue {
        location: at.to_string(),
        value: shown,
        expected,
    }
}

fn yes_no(b: bool) -> Value {
    Value::from(if b { "YES" } else { "NO" })
}

fn string_array(items: &[String]) -> Value {
    Value::Array(items.iter().map(|s| Value::from(s.as_str())).collect())
}

fn string_map_value(map: &BTreeMap<String, String>) -> Value {
    Value::Dictionary(
        map.iter()
            .map(|(k, v)| (k.clone(), Value::from(v.as_str())))
            .collect(),
    )
}

#[cfg(test)]
mod tests;
