//! Every way an `xgrid` command can fail, the message printed for it (`xgrid: <message>`)
//! and the exit status it ends with.
//!
//! Exit statuses follow BSD's sysexits where one fits, so they rarely collide with a task's
//! own status, which `-job run` passes on:
//! - 0: success;
//! - 1: the controller refused the request (`{error = CODE}`), or the job failed or was
//!   canceled (`-job run`, `-job wait`);
//! - 64 (EX_USAGE): bad command line, or no controller given;
//! - 65 (EX_DATAERR): a batch file or job specification is malformed;
//! - 66 (EX_NOINPUT): a local input file or directory cannot be read;
//! - 69 (EX_UNAVAILABLE): the controller cannot be found or reached, or the connection was
//!   lost;
//! - 71 (EX_OSERR): the system refused something basic (the current directory, a runtime);
//! - 73 (EX_CANTCREAT): an output file cannot be written, or its path would leave `-out`;
//! - 76 (EX_PROTOCOL): the controller sent something this program cannot read;
//! - 77 (EX_NOPERM): authentication failed (password missing or wrong, Kerberos asked for).

use std::io;
use std::path::{Path, PathBuf};

use xgrid_protocol::messages::ErrorCode;
use xgrid_protocol::peer::PeerError;

use crate::args::UsageError;

pub const EXIT_REFUSED: u8 = 1;
pub const EXIT_USAGE: u8 = 64;
pub const EXIT_DATA: u8 = 65;
pub const EXIT_NO_INPUT: u8 = 66;
pub const EXIT_UNAVAILABLE: u8 = 69;
pub const EXIT_SYSTEM: u8 = 71;
pub const EXIT_CANT_CREATE: u8 = 73;
pub const EXIT_PROTOCOL: u8 = 76;
pub const EXIT_NO_PERMISSION: u8 = 77;

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0} (see xgrid -help)")]
    Usage(#[from] UsageError),
    #[error("no controller given: use -h HOST or set XGRID_CONTROLLER_HOSTNAME")]
    NoController,
    #[error("cannot find the controller {name:?}: it is not a host that resolves ({as_host}), and {bonjour}")]
    ControllerNotFound {
        name: String,
        /// Why the name does not work as `HOST[:PORT]`.
        as_host: String,
        /// Why Bonjour did not find a service of that name.
        bonjour: String,
    },
    #[error("Kerberos is not supported: use -auth Password with -p PASSWORD (or XGRID_CONTROLLER_PASSWORD)")]
    KerberosUnsupported,
    #[error("{}", peer_message(.0))]
    Peer(#[from] PeerError),
    #[error("{}", refusal_message(.code, .request, .subject.as_deref()))]
    Refused {
        request: String,
        code: ErrorCode,
        /// What the request was about: "job 12", "grid 3".
        subject: Option<String>,
    },
    #[error("the controller's reply to {request} cannot be read: {reason}")]
    BadReply { request: String, reason: String },
    #[error("cannot read {}: {source}", .path.display())]
    ReadInput { path: PathBuf, source: io::Error },
    #[error("{0}")]
    BadInput(String),
    #[error("{location}: {message}")]
    BadBatch { location: String, message: String },
    #[error("cannot write {}: {source}", .path.display())]
    WriteOutput { path: PathBuf, source: io::Error },
    #[error("refusing to write output file {path:?}: {reason}")]
    UnsafeOutputPath { path: String, reason: &'static str },
    #[error("job {job} failed{}", .error.as_deref().map(|e| format!(": {e}")).unwrap_or_default())]
    JobFailed { job: String, error: Option<String> },
    #[error("job {job} was canceled")]
    JobCanceled { job: String },
    #[error("job {job} has no task {task}")]
    NoSuchTask { job: String, task: String },
    #[error("cannot {what}: {source}")]
    System {
        what: &'static str,
        source: io::Error,
    },
}

impl CliError {
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_) | CliError::NoController => EXIT_USAGE,
            CliError::ControllerNotFound { .. } => EXIT_UNAVAILABLE,
            CliError::KerberosUnsupported => EXIT_NO_PERMISSION,
            CliError::Peer(e) => match e {
                PeerError::BadAddress { .. } => EXIT_USAGE,
                PeerError::PasswordRequired
                | PeerError::PasswordAuthNotOffered
                | PeerError::WrongPassword
                | PeerError::AuthRefused { .. }
                | PeerError::Auth(_) => EXIT_NO_PERMISSION,
                PeerError::ProfileRefused {
                    code: 530 | 534 | 535 | 537,
                    ..
                } => EXIT_NO_PERMISSION,
                PeerError::BadReply { .. } | PeerError::Protocol { .. } => EXIT_PROTOCOL,
                _ => EXIT_UNAVAILABLE,
            },
            CliError::Refused { .. }
            | CliError::JobFailed { .. }
            | CliError::JobCanceled { .. }
            | CliError::NoSuchTask { .. } => EXIT_REFUSED,
            CliError::BadReply { .. } => EXIT_PROTOCOL,
            CliError::ReadInput { .. } => EXIT_NO_INPUT,
            CliError::BadInput(_) | CliError::BadBatch { .. } => EXIT_DATA,
            CliError::WriteOutput { .. } | CliError::UnsafeOutputPath { .. } => EXIT_CANT_CREATE,
            CliError::System { .. } => EXIT_SYSTEM,
        }
    }

    pub fn read(path: &Path, source: io::Error) -> CliError {
        CliError::ReadInput {
            path: path.to_path_buf(),
            source,
        }
    }

    pub fn write(path: &Path, source: io::Error) -> CliError {
        CliError::WriteOutput {
            path: path.to_path_buf(),
            source,
        }
    }
}

fn peer_message(e: &PeerError) -> String {
    match e {
        PeerError::PasswordRequired => {
            format!("{e}: give it with -p PASSWORD or XGRID_CONTROLLER_PASSWORD")
        }
        _ => e.to_string(),
    }
}

/// A sentence for an `{error = CODE}` reply, naming what the request was about.
fn refusal_message(code: &ErrorCode, request: &str, subject: Option<&str>) -> String {
    let subject = subject.unwrap_or("the request's subject");
    match code {
        ErrorCode::InvalidJobIdentifier => {
            format!("{subject} does not exist on the controller (InvalidJobIdentifier)")
        }
        ErrorCode::InvalidGridIdentifier => {
            format!("{subject} does not exist on the controller (InvalidGridIdentifier)")
        }
        ErrorCode::JobCannotBeRestarted => {
            format!("{subject} cannot be restarted (JobCannotBeRestarted)")
        }
        ErrorCode::InvalidControl => {
            format!("{subject} does not allow that action in its present state (InvalidControl)")
        }
        ErrorCode::InvalidJobSpecification => {
            "the controller refused the job specification (InvalidJobSpecification)".to_string()
        }
        ErrorCode::InvalidTaskSpecification => {
            "the controller refused a task specification (InvalidTaskSpecification)".to_string()
        }
        ErrorCode::AccessDenied => {
            format!("the controller denied access to {subject} (AccessDenied)")
        }
        ErrorCode::InvalidRequest => {
            format!("the controller does not accept the {request} request (InvalidRequest)")
        }
        other => format!("the controller answered {request} with the error {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_what_the_request_was_about() {
        let e = CliError::Refused {
            request: "jobAttributes".into(),
            code: ErrorCode::InvalidJobIdentifier,
            subject: Some("job 999".into()),
        };
        assert_eq!(
            e.to_string(),
            "job 999 does not exist on the controller (InvalidJobIdentifier)"
        );
        assert_eq!(e.exit_code(), 1);
        let e = CliError::Refused {
            request: "frob".into(),
            code: ErrorCode::Other("Weird".into()),
            subject: None,
        };
        assert_eq!(
            e.to_string(),
            "the controller answered frob with the error Weird"
        );
    }

    #[test]
    fn exit_codes_by_kind() {
        assert_eq!(CliError::NoController.exit_code(), 64);
        assert_eq!(CliError::KerberosUnsupported.exit_code(), 77);
        assert_eq!(CliError::Peer(PeerError::WrongPassword).exit_code(), 77);
        assert_eq!(
            CliError::Peer(PeerError::Connect {
                address: "h:1".into(),
                reason: "refused".into()
            })
            .exit_code(),
            69
        );
        assert_eq!(
            CliError::Peer(PeerError::PasswordRequired).to_string(),
            "the controller requires a password: give it with -p PASSWORD or XGRID_CONTROLLER_PASSWORD"
        );
        assert_eq!(
            CliError::JobFailed {
                job: "3".into(),
                error: Some("agent lost".into())
            }
            .to_string(),
            "job 3 failed: agent lost"
        );
    }
}
