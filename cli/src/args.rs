//! The command line of Apple's `xgrid` tool (xgrid-wire.md §6), read into a typed
//! [`Invocation`]. Apple's options are single-dash words (`-job run`, `-id 4`, `-h host`),
//! so the parser is written by hand: options first, then, for `-job submit` and `-job run`,
//! the command and its arguments taken verbatim (they may start with `-`).

use std::path::PathBuf;

use xgrid_manual::{Entry, Manual, Section};
use xgrid_protocol::messages::JobAction;

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Parsed {
    Help,
    Version,
    Invocation(Box<Invocation>),
}

/// A command to run against a controller.
#[derive(Debug, Clone, PartialEq)]
pub struct Invocation {
    pub connection: ConnectionArgs,
    pub format: Format,
    pub command: Command,
}

/// The global options that say how to reach the controller. Environment defaults are
/// applied later (`client::ConnectionSettings::resolve`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnectionArgs {
    pub hostname: Option<String>,
    pub password: Option<String>,
    pub auth: Option<AuthMethod>,
}

/// `-auth`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    Password,
    Kerberos,
    None,
}

/// `-f`: how reply payloads are printed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Format {
    /// Foundation's description format, four-space indentation (Apple's default).
    #[default]
    OldStyle,
    /// An XML property list.
    Xml,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    JobSubmit(SubmitArgs),
    JobRun {
        submit: SubmitArgs,
        outputs: OutputArgs,
    },
    JobBatch {
        grid: Option<String>,
        file: PathBuf,
    },
    JobResults {
        job: String,
        task: Option<String>,
        outputs: OutputArgs,
    },
    /// stop, suspend, resume, delete, restart (stop → `cancel`, delete → `remove`).
    JobControl {
        job: String,
        action: JobAction,
    },
    JobAttributes {
        job: String,
    },
    JobSpecification {
        job: String,
    },
    JobLog {
        job: String,
    },
    JobWait {
        job: String,
    },
    JobList {
        grid: Option<String>,
    },
    GridList,
    GridAttributes {
        grid: String,
    },
}

/// Options that build a job from one command (`-job submit`, `-job run`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SubmitArgs {
    pub grid: Option<String>,
    /// `-si`: a local file fed to the task's standard input.
    pub stdin: Option<PathBuf>,
    /// `-in`: a local directory whose files become the task's working directory.
    pub input_dir: Option<PathBuf>,
    pub email: Option<String>,
    /// `-dids`: jobs that must finish first.
    pub depends_on_jobs: Vec<String>,
    pub art: Option<ArtArgs>,
    pub command: String,
    pub arguments: Vec<String>,
}

/// `-art path -artid id [-artequal v] [-artmin v] [-artmax v]`; the values were checked to
/// be numbers and are kept as typed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ArtArgs {
    pub path: PathBuf,
    pub identifier: String,
    pub equal: Option<String>,
    pub min: Option<String>,
    pub max: Option<String>,
}

/// Where results go (`-so`, `-se`, `-out`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutputArgs {
    pub stdout: Option<PathBuf>,
    pub stderr: Option<PathBuf>,
    pub out_dir: Option<PathBuf>,
}

/// A command line that cannot be understood; the message says what to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UsageError {
    #[error("unknown option {0}")]
    UnknownOption(String),
    #[error("{0} needs a value")]
    MissingValue(String),
    #[error("{0} was given more than once")]
    Repeated(String),
    #[error("nothing to do: give -job ACTION or -grid ACTION")]
    NoCommand,
    #[error("give either -job or -grid, not both")]
    JobAndGrid,
    #[error("unknown -job action {0:?}; expected run, submit, batch, results, stop, suspend, resume, delete, restart, attributes, specification, log, wait or list")]
    UnknownJobAction(String),
    #[error("unknown -grid action {0:?}; expected list or attributes")]
    UnknownGridAction(String),
    #[error("{option} is not an option of {action}")]
    NotForAction { option: String, action: String },
    #[error("{action} needs {option}")]
    MissingOption {
        action: String,
        option: &'static str,
    },
    #[error("{0} needs the command to run")]
    MissingCommand(String),
    #[error("-job batch needs the batch file")]
    MissingBatchFile,
    #[error("unexpected argument {0:?}")]
    Unexpected(String),
    #[error("-format must be xml or old-style, not {0:?}")]
    BadFormat(String),
    #[error("-auth must be Password, Kerberos or None, not {0:?}")]
    BadAuth(String),
    #[error("{option} takes a number, not {value:?}")]
    NotANumber { option: &'static str, value: String },
    #[error("-dids takes job identifiers separated by commas, not {0:?}")]
    BadJobList(String),
    #[error("{0} needs -art")]
    NeedsArt(&'static str),
    #[error("-art and -artid must be given together")]
    ArtWithoutIdentifier,
    #[error("an argument is not valid UTF-8: {0:?}")]
    NotUtf8(String),
}

/// Every option that takes a value, by canonical name, with the spellings accepted.
const VALUE_OPTIONS: &[(&str, &[&str])] = &[
    ("-h", &["-h", "-hostname"]),
    ("-p", &["-p", "-password"]),
    ("-auth", &["-auth"]),
    ("-f", &["-f", "-format"]),
    ("-job", &["-job"]),
    ("-grid", &["-grid"]),
    ("-id", &["-id"]),
    ("-gid", &["-gid"]),
    ("-tid", &["-tid"]),
    ("-si", &["-si"]),
    ("-in", &["-in"]),
    ("-so", &["-so"]),
    ("-se", &["-se"]),
    ("-out", &["-out"]),
    ("-email", &["-email"]),
    ("-dids", &["-dids"]),
    ("-art", &["-art"]),
    ("-artid", &["-artid"]),
    ("-artequal", &["-artequal"]),
    ("-artmin", &["-artmin"]),
    ("-artmax", &["-artmax"]),
];

const GLOBAL: &[&str] = &["-h", "-p", "-auth", "-f", "-job", "-grid"];
const ART: &[&str] = &["-art", "-artid", "-artequal", "-artmin", "-artmax"];

fn canonical(word: &str) -> Option<&'static str> {
    VALUE_OPTIONS
        .iter()
        .find(|(_, spellings)| spellings.contains(&word))
        .map(|(name, _)| *name)
}

/// The options given, by canonical name.
#[derive(Default)]
struct Options {
    values: Vec<(&'static str, String)>,
}

impl Options {
    fn get(&self, name: &str) -> Option<&str> {
        self.values
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    fn take(&self, name: &str) -> Option<String> {
        self.get(name).map(str::to_string)
    }

    fn path(&self, name: &str) -> Option<PathBuf> {
        self.get(name).map(PathBuf::from)
    }
}

/// Read the arguments after the program name.
pub fn parse(words: &[String]) -> Result<Parsed, UsageError> {
    if words.is_empty() || words == ["-h"] {
        return Ok(Parsed::Help);
    }
    let mut options = Options::default();
    let mut positional: Vec<String> = Vec::new();
    let mut i = 0;
    while let Some(word) = words.get(i) {
        i += 1;
        // Once a job's command has started, everything else belongs to it.
        let command_started = !positional.is_empty() && takes_command(&options);
        if command_started {
            positional.push(word.clone());
            continue;
        }
        match word.as_str() {
            "-help" | "--help" => return Ok(Parsed::Help),
            "-version" | "--version" => return Ok(Parsed::Version),
            _ => {}
        }
        if let Some(name) = canonical(word) {
            let value = words
                .get(i)
                .ok_or_else(|| UsageError::MissingValue(word.clone()))?;
            i += 1;
            if options.get(name).is_some() {
                return Err(UsageError::Repeated(word.clone()));
            }
            options.values.push((name, value.clone()));
        } else if word.starts_with('-') && word.len() > 1 {
            return Err(UsageError::UnknownOption(word.clone()));
        } else {
            positional.push(word.clone());
        }
    }

    let format = match options.get("-f") {
        None => Format::OldStyle,
        Some(f) if f.eq_ignore_ascii_case("xml") => Format::Xml,
        Some(f) if f.eq_ignore_ascii_case("old-style") => Format::OldStyle,
        Some(f) => return Err(UsageError::BadFormat(f.to_string())),
    };
    let auth = match options.get("-auth") {
        None => None,
        Some(a) if a.eq_ignore_ascii_case("password") => Some(AuthMethod::Password),
        Some(a) if a.eq_ignore_ascii_case("kerberos") => Some(AuthMethod::Kerberos),
        Some(a) if a.eq_ignore_ascii_case("none") => Some(AuthMethod::None),
        Some(a) => return Err(UsageError::BadAuth(a.to_string())),
    };
    let connection = ConnectionArgs {
        hostname: options.take("-h"),
        password: options.take("-p"),
        auth,
    };
    let command = command(&options, positional)?;
    Ok(Parsed::Invocation(Box::new(Invocation {
        connection,
        format,
        command,
    })))
}

/// Whether the action takes a command line after its options.
fn takes_command(options: &Options) -> bool {
    matches!(options.get("-job"), Some("submit" | "run"))
}

fn command(options: &Options, positional: Vec<String>) -> Result<Command, UsageError> {
    let (action, allowed): (String, &[&str]) = match (options.get("-job"), options.get("-grid")) {
        (Some(_), Some(_)) => return Err(UsageError::JobAndGrid),
        (None, None) => {
            return match positional.first() {
                Some(word) => Err(UsageError::Unexpected(word.clone())),
                None => Err(UsageError::NoCommand),
            }
        }
        (Some(job), None) => (
            format!("-job {job}"),
            match job {
                "submit" => &[
                    "-gid",
                    "-si",
                    "-in",
                    "-dids",
                    "-email",
                    "-art",
                    "-artid",
                    "-artequal",
                    "-artmin",
                    "-artmax",
                ],
                "run" => &[
                    "-gid",
                    "-si",
                    "-in",
                    "-so",
                    "-se",
                    "-out",
                    "-email",
                    "-art",
                    "-artid",
                    "-artequal",
                    "-artmin",
                    "-artmax",
                ],
                "batch" | "list" => &["-gid"],
                "results" => &["-id", "-so", "-se", "-out", "-tid"],
                "stop" | "suspend" | "resume" | "delete" | "restart" | "attributes"
                | "specification" | "log" | "wait" => &["-id"],
                other => return Err(UsageError::UnknownJobAction(other.to_string())),
            },
        ),
        (None, Some(grid)) => (
            format!("-grid {grid}"),
            match grid {
                "list" => &[],
                "attributes" => &["-gid"],
                other => return Err(UsageError::UnknownGridAction(other.to_string())),
            },
        ),
    };
    for (name, _) in &options.values {
        if !GLOBAL.contains(name) && !allowed.contains(name) {
            return Err(UsageError::NotForAction {
                option: name.to_string(),
                action,
            });
        }
    }
    let required = |option: &'static str| {
        options.take(option).ok_or(UsageError::MissingOption {
            action: action.clone(),
            option,
        })
    };
    let no_positional = |positional: &[String]| match positional.first() {
        Some(word) => Err(UsageError::Unexpected(word.clone())),
        None => Ok(()),
    };
    let outputs = OutputArgs {
        stdout: options.path("-so"),
        stderr: options.path("-se"),
        out_dir: options.path("-out"),
    };

    let command = match action.as_str() {
        "-job submit" => Command::JobSubmit(submit_args(options, positional, &action)?),
        "-job run" => Command::JobRun {
            submit: submit_args(options, positional, &action)?,
            outputs,
        },
        "-job batch" => {
            let mut files = positional.into_iter();
            let file = files.next().ok_or(UsageError::MissingBatchFile)?;
            if let Some(extra) = files.next() {
                return Err(UsageError::Unexpected(extra));
            }
            Command::JobBatch {
                grid: options.take("-gid"),
                file: PathBuf::from(file),
            }
        }
        "-job list" => {
            no_positional(&positional)?;
            Command::JobList {
                grid: options.take("-gid"),
            }
        }
        "-grid list" => {
            no_positional(&positional)?;
            Command::GridList
        }
        "-grid attributes" => {
            no_positional(&positional)?;
            Command::GridAttributes {
                grid: required("-gid")?,
            }
        }
        _ => {
            no_positional(&positional)?;
            let job = required("-id")?;
            match options.get("-job").unwrap_or_default() {
                "results" => Command::JobResults {
                    job,
                    task: options.take("-tid"),
                    outputs,
                },
                "stop" => control(job, JobAction::Cancel),
                "delete" => control(job, JobAction::Remove),
                "suspend" => control(job, JobAction::Suspend),
                "resume" => control(job, JobAction::Resume),
                "restart" => control(job, JobAction::Restart),
                "attributes" => Command::JobAttributes { job },
                "specification" => Command::JobSpecification { job },
                "log" => Command::JobLog { job },
                _ => Command::JobWait { job },
            }
        }
    };
    Ok(command)
}

fn control(job: String, action: JobAction) -> Command {
    Command::JobControl { job, action }
}

fn submit_args(
    options: &Options,
    positional: Vec<String>,
    action: &str,
) -> Result<SubmitArgs, UsageError> {
    let mut words = positional.into_iter();
    let command = words
        .next()
        .ok_or_else(|| UsageError::MissingCommand(action.to_string()))?;
    let depends_on_jobs = match options.get("-dids") {
        None => Vec::new(),
        Some(list) => {
            let ids: Vec<String> = list.split(',').map(|id| id.trim().to_string()).collect();
            if ids
                .iter()
                .any(|id| id.is_empty() || id.contains(char::is_whitespace))
            {
                return Err(UsageError::BadJobList(list.to_string()));
            }
            ids
        }
    };
    Ok(SubmitArgs {
        grid: options.take("-gid"),
        stdin: options.path("-si"),
        input_dir: options.path("-in"),
        email: options.take("-email"),
        depends_on_jobs,
        art: art_args(options)?,
        command,
        arguments: words.collect(),
    })
}

fn art_args(options: &Options) -> Result<Option<ArtArgs>, UsageError> {
    let number = |option: &'static str| -> Result<Option<String>, UsageError> {
        match options.get(option) {
            None => Ok(None),
            Some(v) => match v.trim().parse::<f64>() {
                Ok(n) if n.is_finite() => Ok(Some(v.trim().to_string())),
                _ => Err(UsageError::NotANumber {
                    option,
                    value: v.to_string(),
                }),
            },
        }
    };
    let equal = number("-artequal")?;
    let min = number("-artmin")?;
    let max = number("-artmax")?;
    match (options.path("-art"), options.take("-artid")) {
        (Some(path), Some(identifier)) => Ok(Some(ArtArgs {
            path,
            identifier,
            equal,
            min,
            max,
        })),
        (None, None) => {
            for option in ART {
                if options.get(option).is_some() {
                    return Err(UsageError::NeedsArt(option));
                }
            }
            Ok(None)
        }
        _ => Err(UsageError::ArtWithoutIdentifier),
    }
}

/// The single source of `-help` and of `man/xgrid.1`, including the exit codes.
pub const MANUAL: Manual = Manual {
    name: "xgrid",
    section: "1",
    summary: "submit and control jobs on an Xgrid controller",
    synopsis: &[
        "xgrid [-h[ostname] host[:port]] [-auth {Password|Kerberos|None}] [-p[assword] password]",
        "      [-f[ormat] {xml|old-style}] COMMAND",
        "",
        "xgrid -job run    [-gid grid] [-si stdin] [-in indir] [-so stdout] [-se stderr] [-out outdir]",
        "                  [-email addr] [-art path -artid id] [-artequal v] [-artmin v] [-artmax v]",
        "                  cmd [arg ...]",
        "xgrid -job submit [-gid grid] [-si stdin] [-in indir] [-dids id[,id]*] [-email addr]",
        "                  [-art path -artid id] [-artequal v] [-artmin v] [-artmax v] cmd [arg ...]",
        "xgrid -job batch  [-gid grid] batch-file",
        "xgrid -job results -id id [-so stdout] [-se stderr] [-out outdir] [-tid task]",
        "xgrid -job {stop|suspend|resume|delete|restart} -id id",
        "xgrid -job {attributes|specification|log|wait} -id id",
        "xgrid -job list [-gid grid]",
        "xgrid -grid list",
        "xgrid -grid attributes -gid grid",
        "xgrid -help | -version",
    ],
    description: &[
        "Apple's Xgrid command-line client, for Linux: submits jobs to an Xgrid controller \
         (ours or Apple's), waits for them, fetches their results and controls them, with \
         Apple's options and output.",
    ],
    sections: &[
        Section {
            title: "options",
            entries: &[
                Entry {
                    term: "-h, -hostname HOST[:PORT]",
                    text: "controller to use (port 4111 unless given), or the Bonjour service name it advertises (looked for for 3 s when HOST is no host name that resolves); default: $XGRID_CONTROLLER_HOSTNAME",
                },
                Entry {
                    term: "-p, -password PASSWORD",
                    text: "client password, sent only if the controller asks for one; default: $XGRID_CONTROLLER_PASSWORD",
                },
                Entry {
                    term: "-auth METHOD",
                    text: "Password (default), None (never send a password); Kerberos is not supported",
                },
                Entry {
                    term: "-f, -format FORMAT",
                    text: "old-style (default: Apple's four-space plist) or xml",
                },
                Entry {
                    term: "-job ACTION",
                    text: "the job command: run, submit, batch, results, stop, suspend, resume, delete, restart, attributes, specification, log, wait or list",
                },
                Entry {
                    term: "-grid ACTION",
                    text: "the grid command: list or attributes",
                },
                Entry {
                    term: "-id JOB",
                    text: "job identifier",
                },
                Entry {
                    term: "-gid GRID",
                    text: "grid identifier (default grid when left out)",
                },
                Entry {
                    term: "-tid TASK",
                    text: "only this task's results",
                },
                Entry {
                    term: "-si FILE",
                    text: "local file fed to the task's standard input",
                },
                Entry {
                    term: "-in DIR",
                    text: "local directory copied to the agents as the task's working directory (every file, executable bits kept)",
                },
                Entry {
                    term: "-so FILE, -se FILE",
                    text: "write standard output / error to FILE instead of the terminal",
                },
                Entry {
                    term: "-out DIR",
                    text: "write the tasks' output files under DIR (without -out, output files stay on the controller); a job of several tasks gets one subdirectory per task",
                },
                Entry {
                    term: "-email ADDR",
                    text: "notification e-mail address for the job",
                },
                Entry {
                    term: "-dids ID,ID",
                    text: "jobs that must finish before this one starts",
                },
                Entry {
                    term: "-art PATH -artid ID",
                    text: "agent ranking tool (a local executable) and its identifier;",
                },
                Entry {
                    term: "-artequal/-artmin/-artmax V",
                    text: "the score an agent's tool must print",
                },
                Entry {
                    term: "cmd",
                    text: "an absolute path is run as it is on the agents; a relative path that exists here is copied to the agents and run from the task's directory; a bare name that does not exist here is left to the agent's PATH",
                },
                Entry {
                    term: "-help, --help",
                    text: "print this help",
                },
                Entry {
                    term: "-version, --version",
                    text: "print the version",
                },
            ],
            notes: &[],
        },
        Section {
            title: "output",
            entries: &[],
            notes: &["Replies are printed as property lists; -job submit prints the job \
                      identifier, -job run prints the task's output as it arrives and exits \
                      with its exit status, -job wait shows progress on a terminal and prints \
                      the final job attributes."],
        },
        Section {
            title: "exit status",
            entries: &[
                Entry {
                    term: "0",
                    text: "success",
                },
                Entry {
                    term: "1",
                    text: "the controller refused the request (e.g. no such job), or the job failed or was canceled (-job run, -job wait); -job run otherwise exits with the task's own status",
                },
                Entry {
                    term: "64",
                    text: "bad command line, or no controller given",
                },
                Entry {
                    term: "65",
                    text: "a batch file or job specification is malformed",
                },
                Entry {
                    term: "66",
                    text: "a local input file or directory cannot be read",
                },
                Entry {
                    term: "69",
                    text: "the controller cannot be reached, or the connection was lost",
                },
                Entry {
                    term: "71",
                    text: "the system refused something basic (the current directory, an async runtime)",
                },
                Entry {
                    term: "73",
                    text: "an output file cannot be written, or its path would leave the -out directory",
                },
                Entry {
                    term: "76",
                    text: "the controller sent something this program cannot read",
                },
                Entry {
                    term: "77",
                    text: "authentication failed: password missing or wrong, or Kerberos asked for",
                },
            ],
            notes: &[],
        },
        Section {
            title: "environment",
            entries: &[
                Entry {
                    term: "XGRID_CONTROLLER_HOSTNAME",
                    text: "the controller when -h is not given",
                },
                Entry {
                    term: "XGRID_CONTROLLER_PASSWORD",
                    text: "the client password when -p is not given",
                },
            ],
            notes: &[],
        },
    ],
    see_also: &["xgridcontrollerd(8)", "xgridagentd(8)"],
};

#[cfg(test)]
mod tests {
    use super::*;

    fn words(line: &str) -> Vec<String> {
        line.split_whitespace().map(str::to_string).collect()
    }

    fn invocation(line: &str) -> Invocation {
        match parse(&words(line)) {
            Ok(Parsed::Invocation(i)) => *i,
            other => panic!("{line}: {other:?}"),
        }
    }

    fn command(line: &str) -> Command {
        invocation(line).command
    }

    fn error(line: &str) -> UsageError {
        match parse(&words(line)) {
            Err(e) => e,
            other => panic!("{line}: expected an error, got {other:?}"),
        }
    }

    #[test]
    fn help_and_version() {
        for line in [
            "",
            "-h",
            "-help",
            "--help",
            "-job list -help",
            "-h host --help",
        ] {
            assert_eq!(parse(&words(line)), Ok(Parsed::Help), "{line:?}");
        }
        assert_eq!(parse(&words("-version")), Ok(Parsed::Version));
        assert_eq!(parse(&words("--version")), Ok(Parsed::Version));
    }

    #[test]
    fn global_options_in_both_spellings() {
        let i = invocation("-h ctl:4200 -p pw -auth kerberos -f xml -grid list");
        assert_eq!(
            i.connection,
            ConnectionArgs {
                hostname: Some("ctl:4200".into()),
                password: Some("pw".into()),
                auth: Some(AuthMethod::Kerberos),
            }
        );
        assert_eq!(i.format, Format::Xml);
        let long = invocation("-hostname ctl -password pw -auth None -format old-style -grid list");
        assert_eq!(long.connection.hostname.as_deref(), Some("ctl"));
        assert_eq!(long.connection.password.as_deref(), Some("pw"));
        assert_eq!(long.connection.auth, Some(AuthMethod::None));
        assert_eq!(long.format, Format::OldStyle);
        let defaults = invocation("-grid list");
        assert_eq!(defaults.connection, ConnectionArgs::default());
        assert_eq!(defaults.format, Format::OldStyle);
        assert_eq!(
            invocation("-auth Password -grid list").connection.auth,
            Some(AuthMethod::Password)
        );
    }

    #[test]
    fn submit_with_every_option() {
        let c = command(
            "-job submit -gid 2 -si in.txt -in data -dids 3,4 -email a@b.c -art rank.sh \
             -artid speed -artequal 1 -artmin 0.5 -artmax 7 ./prog -x --y z",
        );
        assert_eq!(
            c,
            Command::JobSubmit(SubmitArgs {
                grid: Some("2".into()),
                stdin: Some("in.txt".into()),
                input_dir: Some("data".into()),
                email: Some("a@b.c".into()),
                depends_on_jobs: vec!["3".into(), "4".into()],
                art: Some(ArtArgs {
                    path: "rank.sh".into(),
                    identifier: "speed".into(),
                    equal: Some("1".into()),
                    min: Some("0.5".into()),
                    max: Some("7".into()),
                }),
                command: "./prog".into(),
                arguments: vec!["-x".into(), "--y".into(), "z".into()],
            })
        );
    }

    #[test]
    fn the_command_keeps_words_that_look_like_options() {
        let Command::JobSubmit(s) = command("-job submit /bin/ls -id -job -h") else {
            panic!()
        };
        assert_eq!(s.command, "/bin/ls");
        assert_eq!(s.arguments, words("-id -job -h"));
    }

    #[test]
    fn run_with_its_output_options() {
        let c = command("-job run -so o.txt -se e.txt -out outdir -gid 0 /usr/bin/cal 6 2007");
        assert_eq!(
            c,
            Command::JobRun {
                submit: SubmitArgs {
                    grid: Some("0".into()),
                    command: "/usr/bin/cal".into(),
                    arguments: vec!["6".into(), "2007".into()],
                    ..SubmitArgs::default()
                },
                outputs: OutputArgs {
                    stdout: Some("o.txt".into()),
                    stderr: Some("e.txt".into()),
                    out_dir: Some("outdir".into()),
                },
            }
        );
    }

    #[test]
    fn job_actions() {
        let job = || "12".to_string();
        let table = [
            ("-job stop -id 12", control(job(), JobAction::Cancel)),
            ("-job delete -id 12", control(job(), JobAction::Remove)),
            ("-job suspend -id 12", control(job(), JobAction::Suspend)),
            ("-job resume -id 12", control(job(), JobAction::Resume)),
            ("-job restart -id 12", control(job(), JobAction::Restart)),
            (
                "-job attributes -id 12",
                Command::JobAttributes { job: job() },
            ),
            (
                "-job specification -id 12",
                Command::JobSpecification { job: job() },
            ),
            ("-job log -id 12", Command::JobLog { job: job() }),
            ("-job wait -id 12", Command::JobWait { job: job() }),
            ("-id 12 -job wait", Command::JobWait { job: job() }),
            ("-job list", Command::JobList { grid: None }),
            (
                "-job list -gid 3",
                Command::JobList {
                    grid: Some("3".into()),
                },
            ),
            ("-grid list", Command::GridList),
            (
                "-grid attributes -gid 0",
                Command::GridAttributes { grid: "0".into() },
            ),
            (
                "-job batch -gid 1 jobs.plist",
                Command::JobBatch {
                    grid: Some("1".into()),
                    file: "jobs.plist".into(),
                },
            ),
            (
                "-job results -id 12 -so o -se e -out d -tid 3",
                Command::JobResults {
                    job: job(),
                    task: Some("3".into()),
                    outputs: OutputArgs {
                        stdout: Some("o".into()),
                        stderr: Some("e".into()),
                        out_dir: Some("d".into()),
                    },
                },
            ),
        ];
        for (line, expected) in table {
            assert_eq!(command(line), expected, "{line}");
        }
    }

    #[test]
    fn usage_errors() {
        let table = [
            ("-job", UsageError::MissingValue("-job".into())),
            ("-job list -gid", UsageError::MissingValue("-gid".into())),
            ("-jobs list", UsageError::UnknownOption("-jobs".into())),
            ("-h host", UsageError::NoCommand),
            ("-h host list", UsageError::Unexpected("list".into())),
            ("-job list -grid list", UsageError::JobAndGrid),
            (
                "-job frobnicate",
                UsageError::UnknownJobAction("frobnicate".into()),
            ),
            (
                "-grid frobnicate",
                UsageError::UnknownGridAction("frobnicate".into()),
            ),
            (
                "-job attributes",
                UsageError::MissingOption {
                    action: "-job attributes".into(),
                    option: "-id",
                },
            ),
            (
                "-grid attributes",
                UsageError::MissingOption {
                    action: "-grid attributes".into(),
                    option: "-gid",
                },
            ),
            (
                "-job attributes -id 1 -so x",
                UsageError::NotForAction {
                    option: "-so".into(),
                    action: "-job attributes".into(),
                },
            ),
            (
                "-job submit -out d /bin/true",
                UsageError::NotForAction {
                    option: "-out".into(),
                    action: "-job submit".into(),
                },
            ),
            (
                "-job run -dids 1 /bin/true",
                UsageError::NotForAction {
                    option: "-dids".into(),
                    action: "-job run".into(),
                },
            ),
            (
                "-job submit",
                UsageError::MissingCommand("-job submit".into()),
            ),
            (
                "-job run -gid 1",
                UsageError::MissingCommand("-job run".into()),
            ),
            ("-job batch", UsageError::MissingBatchFile),
            ("-job batch a b", UsageError::Unexpected("b".into())),
            ("-job list extra", UsageError::Unexpected("extra".into())),
            ("-job wait -id 1 -id 2", UsageError::Repeated("-id".into())),
            (
                "-h a -hostname b -grid list",
                UsageError::Repeated("-hostname".into()),
            ),
            ("-f json -grid list", UsageError::BadFormat("json".into())),
            (
                "-auth magic -grid list",
                UsageError::BadAuth("magic".into()),
            ),
            (
                "-job submit -art a -artid b -artmin lots /bin/true",
                UsageError::NotANumber {
                    option: "-artmin",
                    value: "lots".into(),
                },
            ),
            (
                "-job submit -artmin 1 /bin/true",
                UsageError::NeedsArt("-artmin"),
            ),
            (
                "-job submit -art a /bin/true",
                UsageError::ArtWithoutIdentifier,
            ),
            (
                "-job submit -artid a /bin/true",
                UsageError::ArtWithoutIdentifier,
            ),
            (
                "-job submit -dids 1,,2 /bin/true",
                UsageError::BadJobList("1,,2".into()),
            ),
        ];
        for (line, expected) in table {
            assert_eq!(error(line), expected, "{line}");
        }
    }

    #[test]
    fn error_messages_read_well() {
        assert_eq!(
            error("-job attributes -id 1 -so x").to_string(),
            "-so is not an option of -job attributes"
        );
        assert_eq!(error("-job wait").to_string(), "-job wait needs -id");
        assert_eq!(error("-bogus").to_string(), "unknown option -bogus");
    }

    #[test]
    fn help_lists_every_option_the_parser_knows() {
        let help = MANUAL.help();
        let documented = MANUAL.option_names();
        for (_, spellings) in VALUE_OPTIONS {
            for spelling in *spellings {
                assert!(
                    documented.contains(spelling),
                    "{spelling} is missing from the help"
                );
            }
        }
        // And the other way round: every option the help names is one the parser takes.
        for name in &documented {
            let known = canonical(name).is_some()
                || matches!(parse(&words(name)), Ok(Parsed::Help | Parsed::Version));
            assert!(known, "{name} is in the help but the parser refuses it");
            assert!(help.contains(name));
        }
        for code in ["0 ", "1 ", "64", "65", "66", "69", "71", "73", "76", "77"] {
            assert!(help.contains(&format!("\n  {code}")), "exit code {code}");
        }
    }

    #[test]
    fn the_committed_man_page_is_what_the_help_source_renders() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../man/xgrid.1");
        if let Err(e) = xgrid_manual::check_committed(&MANUAL, &path) {
            panic!("{e}");
        }
    }
}
