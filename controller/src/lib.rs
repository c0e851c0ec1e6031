//! The Xgrid controller: it keeps jobs in SQLite, serves Apple's client and agent profiles,
//! and decides which agent runs which task (the scheduler) and which running task moves
//! where (the balancer).

pub mod predicate;
pub mod scheduler;
pub mod store;
