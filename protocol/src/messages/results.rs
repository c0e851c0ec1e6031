//! What a task leaves behind, in the shape shared by the agent's `taskResults` /
//! `taskFinalResults` replies and the controller's `jobResults` / `jobFinalResults` replies.

use std::collections::BTreeMap;

use super::fields::{Fields, Payload};
use super::MessageError;
use crate::plist::{Dictionary, Value};

/// Standard output and error of one task: `{readData, errData}`. An agent sends only what
/// arrived since the previous request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TaskStreams {
    pub read_data: Vec<u8>,
    pub err_data: Vec<u8>,
}

impl TaskStreams {
    pub(crate) fn read(f: &Fields) -> Result<TaskStreams, MessageError> {
        Ok(TaskStreams {
            read_data: f.data("readData")?,
            err_data: f.data("errData")?,
        })
    }

    pub(crate) fn write(&self) -> Dictionary {
        Payload::new()
            .data("readData", &self.read_data)
            .data("errData", &self.err_data)
            .finish()
    }
}

/// The files a finished task produced and its exit status:
/// `{outputFiles = {"rel/path" = {fileData}}, terminationStatus = "0"}`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TaskOutputs {
    /// File contents by path relative to the task's working directory.
    pub output_files: BTreeMap<String, Vec<u8>>,
    /// `None` when the peer sent none (or an empty string).
    pub termination_status: Option<i64>,
}

impl TaskOutputs {
    pub(crate) fn read(f: &Fields) -> Result<TaskOutputs, MessageError> {
        Ok(TaskOutputs {
            output_files: f.entries("outputFiles", |file| file.data("fileData"))?,
            termination_status: f.opt_integer("terminationStatus")?,
        })
    }

    pub(crate) fn write(&self) -> Dictionary {
        let files = self
            .output_files
            .iter()
            .map(|(path, bytes)| {
                (
                    path.clone(),
                    Value::Dictionary(Payload::new().data("fileData", bytes).finish()),
                )
            })
            .collect::<Dictionary>();
        Payload::new()
            .dictionary("outputFiles", files)
            .opt_integer("terminationStatus", self.termination_status)
            .finish()
    }
}
