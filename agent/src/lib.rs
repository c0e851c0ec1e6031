//! The Linux Xgrid agent: registers with a controller, runs tasks so that they can be
//! checkpointed and restored elsewhere, and reports the machine's state.
//!
//! [`Agent::run`] is the whole daemon behind `xgridagentd`, usable from tests.

pub mod apple_config;
pub mod checkpoint;
pub mod config;
pub mod discovery;
pub mod executor;
pub mod migration;
pub mod owner;
pub mod probe;
pub mod session;
pub mod store;
pub mod tasks;

pub use config::AgentConfig;
pub use session::{Agent, AgentError};

/// One line of the agent's log, in plain words, on standard error: in one write, where
/// `eprintln!` makes one per piece (standard error is unbuffered), and without a panic when
/// nobody reads it any more.
pub(crate) fn log(message: impl std::fmt::Display) {
    use std::io::Write;
    let line = format!("xgridagentd: {message}\n");
    let _ = std::io::stderr().write_all(line.as_bytes());
}
