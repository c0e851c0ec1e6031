//! What the agent and its zygote say to each other over their socket pair: frames of a
//! little-endian `u32` length and a body. Requests go one way (start a task), reports the
//! other (started, could not start, ended). Strings are bytes, as Linux paths, arguments
//! and environment entries are; none of them can hold a NUL, so NUL ends each.

use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::PathBuf;

use crate::executor::identity::RunAs;

/// The largest frame either side accepts: well above Linux's own limit on a command line
/// and environment together (`ARG_MAX`, 2 MiB here), so no task the kernel could start is
/// refused for its size.
pub const MAX_FRAME: usize = 16 << 20;

/// Start one task: the request the agent sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Start {
    /// The agent's number for the request, echoed in the reply.
    pub id: u64,
    pub user: Option<RunAs>,
    pub nice: u8,
    pub work_dir: PathBuf,
    pub stdin: PathBuf,
    pub stdout: PathBuf,
    pub stderr: PathBuf,
    pub program: OsString,
    pub arguments: Vec<OsString>,
    /// `NAME=value` entries: the command's whole environment.
    pub environment: Vec<OsString>,
}

/// What the zygote tells the agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Report {
    /// Request `id` now runs as the init `pid` (the agent's numbering) of the PID namespace
    /// named `namespace` (as `/proc/PID/ns/pid` reads, empty if it could not be read).
    Started {
        id: u64,
        pid: i32,
        namespace: String,
    },
    /// Request `id` could not be started; the message says why.
    Refused { id: u64, message: String },
    /// The init `pid` ended with this wait status (as `waitpid` gives it).
    Ended { pid: i32, status: i32 },
}

const START: u8 = b'S';
const STARTED: u8 = b'R';
const REFUSED: u8 = b'F';
const ENDED: u8 = b'X';

/// Appends one frame holding `body` to `out`.
fn frame(out: &mut Vec<u8>, body: impl FnOnce(&mut Vec<u8>)) {
    let at = out.len();
    out.extend_from_slice(&[0; 4]);
    body(out);
    let len = u32::try_from(out.len() - at - 4).unwrap_or(u32::MAX);
    out[at..at + 4].copy_from_slice(&len.to_le_bytes());
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(bytes);
    out.push(0);
}

fn put_u32(out: &mut Vec<u8>, n: usize) {
    out.extend_from_slice(&u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes());
}

impl Start {
    /// The whole frame, length included.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        frame(&mut out, |b| {
            b.push(START);
            b.extend_from_slice(&self.id.to_le_bytes());
            b.push(self.nice);
            match self.user {
                Some(user) => {
                    b.push(1);
                    b.extend_from_slice(&user.uid.to_le_bytes());
                    b.extend_from_slice(&user.gid.to_le_bytes());
                }
                None => b.push(0),
            }
            for path in [&self.work_dir, &self.stdin, &self.stdout, &self.stderr] {
                put_bytes(b, path.as_os_str().as_bytes());
            }
            put_bytes(b, self.program.as_bytes());
            put_u32(b, self.arguments.len());
            for argument in &self.arguments {
                put_bytes(b, argument.as_bytes());
            }
            put_u32(b, self.environment.len());
            for entry in &self.environment {
                put_bytes(b, entry.as_bytes());
            }
        });
        out
    }

    /// Reads a frame's body (without its length); `None` if it is not a whole request.
    pub fn decode(body: &[u8]) -> Option<Start> {
        let mut r = Reader(body);
        if r.byte()? != START {
            return None;
        }
        let id = r.u64()?;
        let nice = r.byte()?;
        let user = match r.byte()? {
            0 => None,
            1 => Some(RunAs {
                uid: r.u32()?,
                gid: r.u32()?,
            }),
            _ => return None,
        };
        let mut path = || Some(PathBuf::from(r.os_string()?));
        let (work_dir, stdin, stdout, stderr) = (path()?, path()?, path()?, path()?);
        let program = r.os_string()?;
        let arguments = r.list()?;
        let environment = r.list()?;
        r.0.is_empty().then_some(Start {
            id,
            user,
            nice,
            work_dir,
            stdin,
            stdout,
            stderr,
            program,
            arguments,
            environment,
        })
    }
}

impl Report {
    /// The whole frame, length included.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        frame(&mut out, |b| match self {
            Report::Started { id, pid, namespace } => {
                b.push(STARTED);
                b.extend_from_slice(&id.to_le_bytes());
                b.extend_from_slice(&pid.to_le_bytes());
                put_bytes(b, namespace.as_bytes());
            }
            Report::Refused { id, message } => {
                b.push(REFUSED);
                b.extend_from_slice(&id.to_le_bytes());
                // A message cannot end early at a NUL it happens to hold.
                put_bytes(b, message.replace('\0', " ").as_bytes());
            }
            Report::Ended { pid, status } => {
                b.push(ENDED);
                b.extend_from_slice(&pid.to_le_bytes());
                b.extend_from_slice(&status.to_le_bytes());
            }
        });
        out
    }

    /// Reads a frame's body (without its length); `None` if it is not a whole report.
    pub fn decode(body: &[u8]) -> Option<Report> {
        let mut r = Reader(body);
        let report = match r.byte()? {
            STARTED => Report::Started {
                id: r.u64()?,
                pid: r.i32()?,
                namespace: r.string()?,
            },
            REFUSED => Report::Refused {
                id: r.u64()?,
                message: r.string()?,
            },
            ENDED => Report::Ended {
                pid: r.i32()?,
                status: r.i32()?,
            },
            _ => return None,
        };
        r.0.is_empty().then_some(report)
    }
}

/// The length at the head of a frame, if it is one either side accepts.
pub fn frame_length(head: [u8; 4]) -> Option<usize> {
    let len = usize::try_from(u32::from_le_bytes(head)).ok()?;
    (len <= MAX_FRAME).then_some(len)
}

/// Takes fields off the front of a body.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.0.split_first_chunk::<N>()?;
        self.0 = rest;
        Some(*head)
    }

    fn byte(&mut self) -> Option<u8> {
        self.take::<1>().map(|[b]| b)
    }

    fn u32(&mut self) -> Option<u32> {
        self.take().map(u32::from_le_bytes)
    }

    fn i32(&mut self) -> Option<i32> {
        self.take().map(i32::from_le_bytes)
    }

    fn u64(&mut self) -> Option<u64> {
        self.take().map(u64::from_le_bytes)
    }

    fn os_string(&mut self) -> Option<OsString> {
        let end = self.0.iter().position(|&b| b == 0)?;
        let bytes = self.0[..end].to_vec();
        self.0 = &self.0[end + 1..];
        Some(OsString::from_vec(bytes))
    }

    fn string(&mut self) -> Option<String> {
        self.os_string()?.into_string().ok()
    }

    fn list(&mut self) -> Option<Vec<OsString>> {
        let count = self.u32()?;
        // Each entry takes at least its NUL, so a count larger than what is left is a lie.
        if usize::try_from(count).ok()? > self.0.len() {
            return None;
        }
        (0..count).map(|_| self.os_string()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(frame: &[u8]) -> &[u8] {
        let (head, body) = frame.split_first_chunk::<4>().expect("head");
        assert_eq!(frame_length(*head), Some(body.len()));
        body
    }

    fn start() -> Start {
        Start {
            id: 7,
            user: Some(RunAs {
                uid: 65534,
                gid: 65533,
            }),
            nice: 10,
            work_dir: "/data/tasks/7/work".into(),
            stdin: "/dev/null".into(),
            stdout: "/data/tasks/7/stdout".into(),
            stderr: "/data/tasks/7/stderr".into(),
            program: "/bin/sh".into(),
            arguments: vec!["-c".into(), "echo 'two words' é".into(), "".into()],
            environment: vec!["PATH=/bin".into(), "EMPTY=".into()],
        }
    }

    #[test]
    fn a_start_request_reads_back_as_it_was_written() {
        let request = start();
        assert_eq!(Start::decode(body(&request.encode())), Some(request));
        let plain = Start {
            user: None,
            nice: 0,
            arguments: Vec::new(),
            environment: Vec::new(),
            ..start()
        };
        assert_eq!(Start::decode(body(&plain.encode())), Some(plain));
    }

    #[test]
    fn reports_read_back_as_they_were_written() {
        for report in [
            Report::Started {
                id: u64::MAX,
                pid: 4321,
                namespace: "pid:[4026532198]".into(),
            },
            Report::Refused {
                id: 3,
                message: "could not fork: Resource temporarily unavailable".into(),
            },
            Report::Ended {
                pid: 4321,
                status: 9,
            },
        ] {
            assert_eq!(Report::decode(body(&report.encode())), Some(report));
        }
        let refused = Report::Refused {
            id: 1,
            message: "a\0b".into(),
        };
        assert_eq!(
            Report::decode(body(&refused.encode())),
            Some(Report::Refused {
                id: 1,
                message: "a b".into()
            })
        );
    }

    #[test]
    fn damaged_frames_are_refused() {
        let frame = start().encode();
        let whole = body(&frame);
        for cut in 0..whole.len() {
            assert_eq!(Start::decode(&whole[..cut]), None, "cut at {cut}");
        }
        let mut longer = whole.to_vec();
        longer.push(0);
        assert_eq!(Start::decode(&longer), None, "trailing bytes");
        assert_eq!(Report::decode(whole), None, "a request is no report");
        assert_eq!(Start::decode(b"S"), None);
        // A list claiming more entries than bytes left.
        let mut lying = whole.to_vec();
        let env_bytes = "PATH=/bin\0EMPTY=\0".len();
        let env_count_at = lying.len() - env_bytes - 4;
        lying[env_count_at..env_count_at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(Start::decode(&lying), None);
        assert_eq!(frame_length((MAX_FRAME as u32 + 1).to_le_bytes()), None);
    }
}
