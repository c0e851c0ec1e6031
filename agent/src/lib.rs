//! The Linux Xgrid agent: registers with a controller, runs tasks so that they can be
//! checkpointed and restored elsewhere, and reports the machine's state.

pub mod checkpoint;
pub mod executor;
pub mod probe;
