//! Building job specifications from local files, as Apple's `xgrid` does (xgrid-wire.md §5.1,
//! §6): one task from a command line (`-job submit`, `-job run`), or the jobs of a batch file.
//!
//! Decisions where Apple's behaviour is not known:
//! - A relative command that exists here is sent as an input file (executable) at its
//!   relative path and run as `./path` from the task directory, so an agent that searches
//!   PATH for slash-less names still runs the copy. A slash-less name that does not exist
//!   here (`cal`) is sent as it is, for the agent's PATH. A relative path that climbs out of
//!   the current directory (`../bin/x`) is sent under its file name alone.
//! - `-in DIR` sends every regular file under DIR (symbolic links to files are followed;
//!   links to directories, sockets and the like are skipped), relative to DIR, whether DIR
//!   is relative or absolute: the job specification has no key for a working directory that
//!   already exists on the agents.
//! - `-si FILE` is sent as the input file `__stdin`, named by the task's `inputStream`, the
//!   convention agents understand (xgrid-wire.md §4.2).
//! - The job is named after the command as typed and carries `submissionIdentifier = abc`,
//!   as in the specifications Apple's tool prints.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Component, Path};

use xgrid_protocol::jobspec::{parse_batch, JobSpecification};
use xgrid_protocol::messages::JobSubmission;
use xgrid_protocol::plist::{self, Dictionary, PlistError, Value};

use crate::args::SubmitArgs;
use crate::error::CliError;

/// The `applicationIdentifier` of jobs the command-line tool submits.
pub const APPLICATION_IDENTIFIER: &str = "com.apple.xgrid.cli";
/// The `submissionIdentifier` Apple's tool puts in its jobs.
pub const SUBMISSION_IDENTIFIER: &str = "abc";
/// The input file key that feeds a task's standard input.
pub const STDIN_KEY: &str = "__stdin";
/// The identifier of the single task of a command-line job.
pub const TASK_IDENTIFIER: &str = "0";

/// A local file to send to the agents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalFile {
    pub data: Vec<u8>,
    pub is_executable: bool,
}

impl LocalFile {
    pub fn read(path: &Path) -> Result<LocalFile, CliError> {
        let data = fs::read(path).map_err(|e| CliError::read(path, e))?;
        let metadata = fs::metadata(path).map_err(|e| CliError::read(path, e))?;
        Ok(LocalFile {
            data,
            is_executable: is_executable(&metadata),
        })
    }

    /// The `inputFiles` entry: `{fileData = <…>; isExecutable = YES|NO;}`.
    pub fn to_input_file(&self) -> Value {
        let mut entry = Dictionary::new();
        entry.insert("fileData".into(), Value::Data(self.data.clone()));
        entry.insert("isExecutable".into(), yes_no(self.is_executable));
        Value::Dictionary(entry)
    }
}

#[cfg(unix)]
fn is_executable(metadata: &fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt;
    metadata.permissions().mode() & 0o111 != 0
}

#[cfg(not(unix))]
fn is_executable(_metadata: &fs::Metadata) -> bool {
    false
}

fn yes_no(flag: bool) -> Value {
    Value::from(if flag { "YES" } else { "NO" })
}

/// The `jobSubmission` request for a command-line job; relative paths are taken from `cwd`.
pub fn job_submission(args: &SubmitArgs, cwd: &Path) -> Result<JobSubmission, CliError> {
    Ok(JobSubmission {
        job_specification: job_specification(args, cwd)?,
        grid_identifier: args.grid.clone(),
    })
}

/// The job specification for one command with the `-job submit` options.
pub fn job_specification(args: &SubmitArgs, cwd: &Path) -> Result<Dictionary, CliError> {
    let mut input_files = Dictionary::new();
    if let Some(dir) = &args.input_dir {
        for (key, file) in directory_files(&cwd.join(dir))? {
            input_files.insert(key, file.to_input_file());
        }
    }
    let (command, copied) = task_command(&args.command, cwd)?;
    if let Some((key, file)) = copied {
        input_files.insert(key, file.to_input_file());
    }

    let mut task = Dictionary::new();
    task.insert("command".into(), Value::from(command));
    // An empty `arguments` array crashes a known agent (xgrid-wire.md §8): leave it out.
    if !args.arguments.is_empty() {
        let arguments = args.arguments.iter().map(|a| Value::from(a.as_str()));
        task.insert("arguments".into(), Value::Array(arguments.collect()));
    }
    if let Some(stdin) = &args.stdin {
        let mut file = LocalFile::read(&cwd.join(stdin))?;
        file.is_executable = false;
        input_files.insert(STDIN_KEY.into(), file.to_input_file());
        task.insert("inputStream".into(), Value::from(STDIN_KEY));
    }

    let mut job = Dictionary::new();
    job.insert(
        "applicationIdentifier".into(),
        Value::from(APPLICATION_IDENTIFIER),
    );
    job.insert("inputFiles".into(), Value::Dictionary(input_files));
    job.insert("name".into(), Value::from(args.command.as_str()));
    job.insert(
        "submissionIdentifier".into(),
        Value::from(SUBMISSION_IDENTIFIER),
    );
    job.insert(
        "taskSpecifications".into(),
        Value::Dictionary(Dictionary::from([(
            TASK_IDENTIFIER.to_string(),
            Value::Dictionary(task),
        )])),
    );
    if let Some(email) = &args.email {
        job.insert("notificationEmail".into(), Value::from(email.as_str()));
    }
    if !args.depends_on_jobs.is_empty() {
        let ids = args
            .depends_on_jobs
            .iter()
            .map(|id| Value::from(id.as_str()));
        let parameters =
            Dictionary::from([("dependsOnJobs".to_string(), Value::Array(ids.collect()))]);
        job.insert("schedulerParameters".into(), Value::Dictionary(parameters));
    }
    if let Some(art) = &args.art {
        let tool = LocalFile::read(&cwd.join(&art.path))?;
        let mut spec = Dictionary::new();
        spec.insert("artData".into(), Value::Data(tool.data));
        spec.insert("isExecutable".into(), yes_no(true));
        job.insert(
            "artSpecifications".into(),
            Value::Dictionary(Dictionary::from([(
                art.identifier.clone(),
                Value::Dictionary(spec),
            )])),
        );
        let mut condition = Dictionary::new();
        for (key, bound) in [
            ("artEqual", &art.equal),
            ("artMin", &art.min),
            ("artMax", &art.max),
        ] {
            if let Some(v) = bound {
                condition.insert(key.into(), Value::from(v.as_str()));
            }
        }
        if !condition.is_empty() {
            job.insert(
                "artConditions".into(),
                Value::Dictionary(Dictionary::from([(
                    art.identifier.clone(),
                    Value::Dictionary(condition),
                )])),
            );
        }
    }
    Ok(job)
}

/// The command to put in the task, and the local file to send with it, if any.
type TaskCommand = (String, Option<(String, LocalFile)>);

fn task_command(command: &str, cwd: &Path) -> Result<TaskCommand, CliError> {
    let path = Path::new(command);
    if path.is_absolute() {
        return Ok((command.to_string(), None));
    }
    let local = cwd.join(path);
    match fs::metadata(&local) {
        Ok(m) if m.is_dir() => Err(CliError::BadInput(format!(
            "the command {command} is a directory"
        ))),
        Ok(_) => {
            let mut file = LocalFile::read(&local)?;
            file.is_executable = true;
            let key = relative_key(path);
            let run = if key.contains('/') {
                key.clone()
            } else {
                format!("./{key}")
            };
            Ok((run, Some((key, file))))
        }
        Err(_) if !command.contains('/') => Ok((command.to_string(), None)),
        Err(e) => Err(CliError::read(&local, e)),
    }
}

/// `path` without `.` components and with `..` resolved; its file name alone when it
/// would climb out of the directory it is relative to.
fn relative_key(path: &Path) -> String {
    let mut parts: Vec<String> = Vec::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => parts.push(part.to_string_lossy().into_owned()),
            // The guard's pop is the `..` step itself; nothing left to pop means climbing out.
            Component::ParentDir if parts.pop().is_none() => {
                return path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
            }
            _ => {}
        }
    }
    parts.join("/")
}

/// Every file under `dir`, by its `/`-separated path relative to `dir`, sorted.
pub fn directory_files(dir: &Path) -> Result<BTreeMap<String, LocalFile>, CliError> {
    let metadata = fs::metadata(dir).map_err(|e| CliError::read(dir, e))?;
    if !metadata.is_dir() {
        return Err(CliError::BadInput(format!(
            "{} is not a directory",
            dir.display()
        )));
    }
    let mut files = BTreeMap::new();
    collect_files(dir, "", &mut files)?;
    Ok(files)
}

fn collect_files(
    dir: &Path,
    prefix: &str,
    files: &mut BTreeMap<String, LocalFile>,
) -> Result<(), CliError> {
    let entries = fs::read_dir(dir).map_err(|e| CliError::read(dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| CliError::read(dir, e))?;
        let path = entry.path();
        let name = entry.file_name().into_string().map_err(|_| {
            CliError::BadInput(format!(
                "{}: the file name is not UTF-8, so it cannot travel in a job",
                path.display()
            ))
        })?;
        let key = format!("{prefix}{name}");
        let kind = entry.file_type().map_err(|e| CliError::read(&path, e))?;
        if kind.is_dir() {
            collect_files(&path, &format!("{key}/"), files)?;
        } else if kind.is_file() || (kind.is_symlink() && path.is_file()) {
            files.insert(key, LocalFile::read(&path)?);
        }
    }
    Ok(())
}

/// The job specifications of a batch file (xgrid-wire.md §5.2), each checked; errors name the
/// file and, for syntax errors, the line and column.
pub fn read_batch_file(path: &Path) -> Result<Vec<Dictionary>, CliError> {
    let bytes = fs::read(path).map_err(|e| CliError::read(path, e))?;
    let shown = path.display().to_string();
    let value = plist::parse(&bytes).map_err(|e| batch_syntax_error(&shown, &bytes, e))?;
    let jobs = parse_batch(&value).map_err(|e| CliError::BadBatch {
        location: shown.clone(),
        message: e.to_string(),
    })?;
    for (i, job) in jobs.iter().enumerate() {
        JobSpecification::from_plist(job).map_err(|e| CliError::BadBatch {
            location: format!("{shown}, job {}", i + 1),
            message: e.to_string(),
        })?;
    }
    Ok(jobs)
}

fn batch_syntax_error(file: &str, bytes: &[u8], error: PlistError) -> CliError {
    let (location, message) = match error {
        PlistError::OldStyle {
            line,
            column,
            message,
        } => (
            format!("{file}:{line}:{column}"),
            format!("old-style property list: {message}"),
        ),
        PlistError::Xml { offset, message } => {
            let (line, column) = line_and_column(bytes, offset);
            (
                format!("{file}:{line}:{column}"),
                format!("XML property list: {message}"),
            )
        }
        other => (file.to_string(), other.to_string()),
    };
    CliError::BadBatch { location, message }
}

/// 1-based line and column (in characters) of a byte offset.
fn line_and_column(bytes: &[u8], offset: usize) -> (usize, usize) {
    let before = bytes.get(..offset).unwrap_or(bytes);
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let line_start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    let column = String::from_utf8_lossy(before.get(line_start..).unwrap_or_default())
        .chars()
        .count()
        + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::ArtArgs;
    use crate::test_support::TempDir;

    fn submit(command: &str, arguments: &[&str]) -> SubmitArgs {
        SubmitArgs {
            command: command.into(),
            arguments: arguments.iter().map(|a| a.to_string()).collect(),
            ..SubmitArgs::default()
        }
    }

    fn dict(value: Option<&Value>) -> &Dictionary {
        value.and_then(Value::as_dictionary).expect("a dictionary")
    }

    fn task(job: &Dictionary) -> &Dictionary {
        dict(dict(job.get("taskSpecifications")).get("0"))
    }

    fn file_entry(data: &[u8], executable: bool) -> Value {
        LocalFile {
            data: data.to_vec(),
            is_executable: executable,
        }
        .to_input_file()
    }

    #[test]
    fn absolute_command_matches_apples_printed_specification() {
        let dir = TempDir::new();
        let job =
            job_specification(&submit("/usr/bin/cal", &["6", "2007"]), dir.path()).expect("spec");
        // The specification Apple's guide shows for `xgrid -job submit /usr/bin/cal 6 2007`.
        let expected = "{applicationIdentifier = \"com.apple.xgrid.cli\"; inputFiles = {}; \
                        name = \"/usr/bin/cal\"; submissionIdentifier = abc; taskSpecifications = \
                        {0 = {arguments = (6, 2007); command = \"/usr/bin/cal\"; }; }; }";
        assert_eq!(
            plist::to_old_style_compact(&Value::Dictionary(job.clone())),
            expected
        );
        JobSpecification::from_plist(&job).expect("the controller's validator accepts it");
    }

    #[test]
    fn no_arguments_means_no_arguments_key() {
        let dir = TempDir::new();
        let job = job_specification(&submit("/bin/date", &[]), dir.path()).expect("spec");
        assert!(!task(&job).contains_key("arguments"));
    }

    #[test]
    fn a_relative_command_that_exists_is_copied_and_run_from_the_task_directory() {
        let dir = TempDir::new();
        dir.write("script.sh", b"#!/bin/sh\necho hi\n", false);
        dir.write("bin/tool", b"tool", true);
        let job = job_specification(&submit("script.sh", &["a"]), dir.path()).expect("spec");
        assert_eq!(task(&job).get("command"), Some(&Value::from("./script.sh")));
        assert_eq!(job.get("name"), Some(&Value::from("script.sh")));
        assert_eq!(
            dict(job.get("inputFiles")).get("script.sh"),
            Some(&file_entry(b"#!/bin/sh\necho hi\n", true)),
            "copied and marked executable even though the local file is not"
        );

        let job = job_specification(&submit("./bin/../bin/tool", &[]), dir.path()).expect("spec");
        assert_eq!(task(&job).get("command"), Some(&Value::from("bin/tool")));
        assert!(dict(job.get("inputFiles")).contains_key("bin/tool"));

        // A bare name with no local file is left to the agent's PATH; a missing path is an error.
        let job = job_specification(&submit("cal", &[]), dir.path()).expect("spec");
        assert_eq!(task(&job).get("command"), Some(&Value::from("cal")));
        assert_eq!(dict(job.get("inputFiles")), &Dictionary::new());
        let err = job_specification(&submit("bin/missing", &[]), dir.path()).expect_err("missing");
        assert_eq!(err.exit_code(), 66);
    }

    #[test]
    fn relative_keys_stay_inside() {
        assert_eq!(relative_key(Path::new("./a/./b")), "a/b");
        assert_eq!(relative_key(Path::new("a/../b")), "b");
        assert_eq!(relative_key(Path::new("../x/tool")), "tool");
    }

    #[test]
    fn input_directory_stdin_dependencies_email_and_art() {
        let dir = TempDir::new();
        dir.write("in/data.txt", b"numbers", false);
        dir.write("in/sub/run.sh", b"#!/bin/sh", true);
        dir.write("stdin.txt", b"feed me", true);
        dir.write("rank", b"#!/bin/sh\necho 5", true);
        let args = SubmitArgs {
            grid: Some("3".into()),
            stdin: Some("stdin.txt".into()),
            input_dir: Some("in".into()),
            email: Some("me@example.org".into()),
            depends_on_jobs: vec!["7".into(), "9".into()],
            art: Some(ArtArgs {
                path: "rank".into(),
                identifier: "speed".into(),
                equal: None,
                min: Some("2.5".into()),
                max: Some("10".into()),
            }),
            ..submit("/bin/sh", &["sub/run.sh"])
        };
        let submission = job_submission(&args, dir.path()).expect("submission");
        assert_eq!(submission.grid_identifier.as_deref(), Some("3"));
        let job = &submission.job_specification;
        let files = dict(job.get("inputFiles"));
        assert_eq!(
            files.keys().collect::<Vec<_>>(),
            ["__stdin", "data.txt", "sub/run.sh"]
        );
        assert_eq!(files.get("data.txt"), Some(&file_entry(b"numbers", false)));
        assert_eq!(
            files.get("sub/run.sh"),
            Some(&file_entry(b"#!/bin/sh", true))
        );
        assert_eq!(files.get("__stdin"), Some(&file_entry(b"feed me", false)));
        assert_eq!(task(job).get("inputStream"), Some(&Value::from("__stdin")));
        assert_eq!(
            job.get("notificationEmail"),
            Some(&Value::from("me@example.org"))
        );
        assert_eq!(
            dict(job.get("schedulerParameters")).get("dependsOnJobs"),
            Some(&Value::Array(vec![Value::from("7"), Value::from("9")]))
        );
        let art = dict(dict(job.get("artSpecifications")).get("speed"));
        assert_eq!(
            art.get("artData"),
            Some(&Value::Data(b"#!/bin/sh\necho 5".to_vec()))
        );
        assert_eq!(art.get("isExecutable"), Some(&Value::from("YES")));
        let condition = dict(dict(job.get("artConditions")).get("speed"));
        assert_eq!(condition.get("artMin"), Some(&Value::from("2.5")));
        assert_eq!(condition.get("artMax"), Some(&Value::from("10")));
        assert!(!condition.contains_key("artEqual"));

        let checked = JobSpecification::from_plist(job).expect("valid");
        assert_eq!(checked.scheduler.depends_on_jobs, ["7", "9"]);
        assert_eq!(checked.art_conditions["speed"].min, Some(2.5));
    }

    #[test]
    fn missing_inputs_are_read_errors() {
        let dir = TempDir::new();
        let mut args = submit("/bin/cat", &[]);
        args.stdin = Some("nope.txt".into());
        let err = job_specification(&args, dir.path()).expect_err("no stdin file");
        assert!(err.to_string().starts_with("cannot read "), "{err}");
        assert!(err.to_string().contains("nope.txt"), "{err}");
        let mut args = submit("/bin/cat", &[]);
        args.input_dir = Some("nodir".into());
        assert_eq!(
            job_specification(&args, dir.path())
                .expect_err("no dir")
                .exit_code(),
            66
        );
    }

    #[test]
    fn batch_files_in_every_format_and_their_errors() {
        let dir = TempDir::new();
        let old_style = "{ jobSpecification = { name = x; taskSpecifications = \
                         { 0 = { command = \"/bin/echo\"; }; }; }; }";
        dir.write("one.plist", old_style.as_bytes(), false);
        let jobs = read_batch_file(&dir.path().join("one.plist")).expect("old-style");
        assert_eq!(jobs.len(), 1);
        assert_eq!(jobs[0].get("name"), Some(&Value::from("x")));

        let array = Value::Array(vec![
            Value::Dictionary(jobs[0].clone()),
            Value::Dictionary(jobs[0].clone()),
        ]);
        dir.write("two.xml", &plist::to_xml(&array), false);
        dir.write("two.bin", &plist::to_binary(&array), false);
        assert_eq!(
            read_batch_file(&dir.path().join("two.xml"))
                .expect("xml")
                .len(),
            2
        );
        assert_eq!(
            read_batch_file(&dir.path().join("two.bin"))
                .expect("binary")
                .len(),
            2
        );

        dir.write(
            "bad.plist",
            b"{\n  jobSpecification = {\n    name = ;\n  };\n}\n",
            false,
        );
        let err = read_batch_file(&dir.path().join("bad.plist")).expect_err("syntax");
        let text = err.to_string();
        assert!(
            text.contains("bad.plist:3:12: old-style property list"),
            "{text}"
        );
        assert_eq!(err.exit_code(), 65);

        dir.write(
            "bad.xml",
            b"<plist>\n<dict>\n<key>a</key>\n</plist>\n",
            false,
        );
        let err = read_batch_file(&dir.path().join("bad.xml")).expect_err("xml syntax");
        assert!(err.to_string().contains("bad.xml:"), "{err}");
        assert!(err.to_string().contains("XML property list"), "{err}");

        dir.write("notask.plist", b"({name = y;})", false);
        let err = read_batch_file(&dir.path().join("notask.plist")).expect_err("no tasks");
        assert!(err.to_string().contains("notask.plist, job 1: "), "{err}");
    }

    #[test]
    fn line_and_column_count_characters() {
        assert_eq!(line_and_column(b"ab\ncd", 4), (2, 2));
        assert_eq!(line_and_column("\u{e9}x".as_bytes(), 2), (1, 2));
        assert_eq!(line_and_column(b"a", 99), (1, 2));
    }
}
