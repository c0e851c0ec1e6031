//! What `xgrid` writes: reply payloads as property lists (Apple's four-space old-style form
//! or XML), task output streams to the terminal or to `-so`/`-se` files, and output files
//! under `-out`, never outside it.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use xgrid_protocol::messages::{TaskOutputs, TaskStreams};
use xgrid_protocol::plist::{self, Dictionary, Value};

use crate::args::Format;
use crate::error::CliError;

/// A reply payload as the `xgrid` tool prints it, with its final line end.
pub fn format_payload(payload: &Dictionary, format: Format) -> Vec<u8> {
    let value = Value::Dictionary(payload.clone());
    match format {
        Format::OldStyle => {
            let mut text = plist::to_old_style(&value);
            text.push('\n');
            text.into_bytes()
        }
        Format::Xml => plist::to_xml(&value),
    }
}

/// Print a reply payload on standard output.
pub fn print_payload(payload: &Dictionary, format: Format) -> Result<(), CliError> {
    StreamSink::Stdout.write(&format_payload(payload, format))
}

/// Where one output stream of the tasks goes.
#[derive(Debug)]
pub enum StreamSink {
    Stdout,
    Stderr,
    File { path: PathBuf, file: fs::File },
}

impl StreamSink {
    /// The file at `path` (created or truncated now, so a bad path fails before any work),
    /// or `default`.
    pub fn open(path: Option<&Path>, default: StreamSink) -> Result<StreamSink, CliError> {
        match path {
            None => Ok(default),
            Some(path) => {
                let file = fs::File::create(path).map_err(|e| CliError::write(path, e))?;
                Ok(StreamSink::File {
                    path: path.to_path_buf(),
                    file,
                })
            }
        }
    }

    /// Write and flush, so output shows as it arrives. A closed pipe on standard output or
    /// error (`xgrid … | head`) is not an error.
    pub fn write(&mut self, bytes: &[u8]) -> Result<(), CliError> {
        let is_file = self.is_file();
        let (result, path) = match self {
            StreamSink::Stdout => {
                let mut out = io::stdout().lock();
                (
                    out.write_all(bytes).and_then(|()| out.flush()),
                    Path::new("standard output"),
                )
            }
            StreamSink::Stderr => {
                let mut err = io::stderr().lock();
                (
                    err.write_all(bytes).and_then(|()| err.flush()),
                    Path::new("standard error"),
                )
            }
            StreamSink::File { path, file } => (file.write_all(bytes), path.as_path()),
        };
        match result {
            Err(e) if e.kind() != io::ErrorKind::BrokenPipe || is_file => {
                Err(CliError::write(path, e))
            }
            _ => Ok(()),
        }
    }

    fn is_file(&self) -> bool {
        matches!(self, StreamSink::File { .. })
    }
}

/// Standard output and error of the tasks.
#[derive(Debug)]
pub struct StreamSinks {
    pub stdout: StreamSink,
    pub stderr: StreamSink,
}

impl StreamSinks {
    pub fn open(stdout: Option<&Path>, stderr: Option<&Path>) -> Result<StreamSinks, CliError> {
        Ok(StreamSinks {
            stdout: StreamSink::open(stdout, StreamSink::Stdout)?,
            stderr: StreamSink::open(stderr, StreamSink::Stderr)?,
        })
    }

    /// Write each task's streams, tasks in [`task_order`].
    pub fn write_streams(&mut self, tasks: &BTreeMap<String, TaskStreams>) -> Result<(), CliError> {
        for task in task_order(tasks.keys()) {
            if let Some(streams) = tasks.get(task) {
                if !streams.read_data.is_empty() {
                    self.stdout.write(&streams.read_data)?;
                }
                if !streams.err_data.is_empty() {
                    self.stderr.write(&streams.err_data)?;
                }
            }
        }
        Ok(())
    }
}

/// Task identifiers with numeric ones first in numeric order ("2" before "10"), then the
/// others by name.
pub fn task_order<'a>(tasks: impl Iterator<Item = &'a String>) -> Vec<&'a String> {
    let mut tasks: Vec<&String> = tasks.collect();
    tasks.sort_by_key(|t| (t.parse::<u128>().map_err(|_| ()), t.as_str()));
    tasks
}

/// Where an output file named `relative` by a task goes under `dir`, or why it may not be
/// written: only plain relative paths that stay inside `dir` are allowed.
pub fn output_path(dir: &Path, relative: &str) -> Result<PathBuf, CliError> {
    let refuse = |reason| CliError::UnsafeOutputPath {
        path: relative.to_string(),
        reason,
    };
    if relative.starts_with('/') {
        return Err(refuse("it is an absolute path"));
    }
    if relative.contains('\0') {
        return Err(refuse("it contains a NUL character"));
    }
    let mut path = dir.to_path_buf();
    let mut parts = 0;
    for part in relative.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err(refuse("it climbs out of the output directory")),
            _ => {
                path.push(part);
                parts += 1;
            }
        }
    }
    if parts == 0 {
        return Err(refuse("it names no file"));
    }
    Ok(path)
}

/// Write one output file under `dir`, creating directories on the way. A symbolic link on
/// the way (placed there by anyone) could lead outside `dir`, so it is refused.
pub fn write_output_file(dir: &Path, relative: &str, data: &[u8]) -> Result<PathBuf, CliError> {
    let target = output_path(dir, relative)?;
    let refuse = |reason| CliError::UnsafeOutputPath {
        path: relative.to_string(),
        reason,
    };
    fs::create_dir_all(dir).map_err(|e| CliError::write(dir, e))?;
    let inside = target.strip_prefix(dir).unwrap_or(&target).to_path_buf();
    let mut current = dir.to_path_buf();
    let components: Vec<_> = inside.components().collect();
    let (last, parents) = match components.split_last() {
        Some(split) => split,
        None => return Err(refuse("it names no file")),
    };
    for component in parents {
        current.push(component);
        match fs::symlink_metadata(&current) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(refuse("a directory on its path is a symbolic link"))
            }
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(CliError::write(
                    &current,
                    io::Error::other("a file is in the way of a directory"),
                ))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::create_dir(&current).map_err(|e| CliError::write(&current, e))?;
            }
            Err(e) => return Err(CliError::write(&current, e)),
        }
    }
    current.push(last);
    if let Ok(m) = fs::symlink_metadata(&current) {
        if m.file_type().is_symlink() {
            return Err(refuse("it is a symbolic link"));
        }
    }
    fs::write(&current, data).map_err(|e| CliError::write(&current, e))?;
    Ok(current)
}

/// Write the output files of finished tasks under `dir`: directly when there is one task,
/// in a subdirectory per task identifier otherwise, so tasks do not overwrite each other.
pub fn write_task_files(
    dir: &Path,
    tasks: &BTreeMap<String, TaskOutputs>,
) -> Result<Vec<PathBuf>, CliError> {
    let mut written = Vec::new();
    let per_task = tasks.len() > 1;
    for task in task_order(tasks.keys()) {
        let Some(outputs) = tasks.get(task) else {
            continue;
        };
        let base = if per_task {
            output_path(dir, task)?
        } else {
            dir.to_path_buf()
        };
        for (relative, data) in &outputs.output_files {
            written.push(write_output_file(&base, relative, data)?);
        }
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::TempDir;
    use xgrid_protocol::plist::Date;

    fn dict(entries: Vec<(&str, Value)>) -> Dictionary {
        entries
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect()
    }

    #[test]
    fn submit_reply_as_apple_prints_it() {
        let reply = dict(vec![("jobIdentifier", Value::from("27"))]);
        assert_eq!(
            format_payload(&reply, Format::OldStyle),
            b"{\n    jobIdentifier = 27;\n}\n"
        );
    }

    #[test]
    fn attributes_and_lists_as_apple_prints_them() {
        let attributes = dict(vec![(
            "jobAttributes",
            Value::Dictionary(dict(vec![
                ("activeCPUPower", Value::from("0")),
                ("applicationIdentifier", Value::from("com.apple.xgrid.cli")),
                (
                    "dateNow",
                    Value::Date(Date::from_unix_seconds(1_169_742_239)),
                ),
                ("jobStatus", Value::from("Finished")),
                ("name", Value::from("/usr/bin/cal")),
                ("percentDone", Value::Real(100.0)),
                ("taskCount", Value::from("1")),
                ("undoneTaskCount", Value::from("0")),
            ])),
        )]);
        // Foundation indents a nested container's opening brace by its own level, which is
        // why the first line reads `jobAttributes =     {`; scripts rely on that layout.
        let expected = "{
    jobAttributes =     {
        activeCPUPower = 0;
        applicationIdentifier = \"com.apple.xgrid.cli\";
        dateNow = \"2007-01-25 16:23:59 +0000\";
        jobStatus = Finished;
        name = \"/usr/bin/cal\";
        percentDone = 100;
        taskCount = 1;
        undoneTaskCount = 0;
    };
}
";
        assert_eq!(
            String::from_utf8(format_payload(&attributes, Format::OldStyle)).expect("utf8"),
            expected
        );
        let list = dict(vec![(
            "jobList",
            Value::Array(vec![Value::from("1"), Value::from("27")]),
        )]);
        assert_eq!(
            String::from_utf8(format_payload(&list, Format::OldStyle)).expect("utf8"),
            "{\n    jobList =     (\n        1,\n        27\n    );\n}\n"
        );
        assert_eq!(
            format_payload(&Dictionary::new(), Format::OldStyle),
            b"{\n}\n"
        );
    }

    #[test]
    fn xml_format_is_apples_xml_plist() {
        let reply = dict(vec![("jobIdentifier", Value::from("27"))]);
        let xml = String::from_utf8(format_payload(&reply, Format::Xml)).expect("utf8");
        assert!(
            xml.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"),
            "{xml}"
        );
        assert!(
            xml.contains("<dict>\n\t<key>jobIdentifier</key>\n\t<string>27</string>\n</dict>\n"),
            "{xml}"
        );
        assert!(xml.ends_with("</plist>\n"), "{xml}");
    }

    #[test]
    fn output_paths_stay_inside_the_directory() {
        let dir = Path::new("/tmp/out");
        assert_eq!(
            output_path(dir, "a/b.txt").expect("plain"),
            Path::new("/tmp/out/a/b.txt")
        );
        assert_eq!(
            output_path(dir, "./a//b.txt").expect("dots"),
            Path::new("/tmp/out/a/b.txt")
        );
        for bad in ["/etc/passwd", "../x", "a/../../x", "a/..", "", ".", "a\0b"] {
            let err = output_path(dir, bad).expect_err(bad);
            assert_eq!(err.exit_code(), 73, "{bad}");
            assert!(
                err.to_string().starts_with("refusing to write output file"),
                "{bad}"
            );
        }
    }

    #[test]
    fn writing_refuses_symbolic_links_on_the_way() {
        let scratch = TempDir::new();
        let out = scratch.path().join("out");
        let written = write_output_file(&out, "deep/er/file.txt", b"data").expect("write");
        assert_eq!(fs::read(&written).expect("read back"), b"data");
        assert_eq!(written, out.join("deep/er/file.txt"));

        #[cfg(unix)]
        {
            let elsewhere = scratch.path().join("elsewhere");
            fs::create_dir_all(&elsewhere).expect("mkdir");
            std::os::unix::fs::symlink(&elsewhere, out.join("link")).expect("symlink");
            let err = write_output_file(&out, "link/x.txt", b"no").expect_err("link dir");
            assert_eq!(err.exit_code(), 73);
            assert!(!elsewhere.join("x.txt").exists());
            std::os::unix::fs::symlink(elsewhere.join("target"), out.join("file-link"))
                .expect("symlink");
            write_output_file(&out, "file-link", b"no").expect_err("link file");
            assert!(!elsewhere.join("target").exists());
        }
    }

    #[test]
    fn several_tasks_get_a_directory_each() {
        let scratch = TempDir::new();
        let outputs = |data: &[u8]| TaskOutputs {
            output_files: BTreeMap::from([("r.txt".to_string(), data.to_vec())]),
            termination_status: Some(0),
        };
        let one = BTreeMap::from([("0".to_string(), outputs(b"zero"))]);
        write_task_files(scratch.path(), &one).expect("one task");
        assert_eq!(fs::read(scratch.path().join("r.txt")).expect("r"), b"zero");
        let two = BTreeMap::from([
            ("10".to_string(), outputs(b"ten")),
            ("2".to_string(), outputs(b"two")),
        ]);
        let written = write_task_files(scratch.path(), &two).expect("two tasks");
        assert_eq!(
            written,
            [
                scratch.path().join("2/r.txt"),
                scratch.path().join("10/r.txt")
            ]
        );
        let hostile = BTreeMap::from([
            ("..".to_string(), outputs(b"x")),
            ("1".to_string(), outputs(b"y")),
        ]);
        write_task_files(scratch.path(), &hostile).expect_err("task named ..");
    }

    #[test]
    fn tasks_in_numeric_order() {
        let names: Vec<String> = ["b", "10", "2", "a", "1"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let order: Vec<&str> = task_order(names.iter())
            .into_iter()
            .map(String::as_str)
            .collect();
        assert_eq!(order, ["1", "2", "10", "a", "b"]);
    }
}
