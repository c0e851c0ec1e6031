//! The Xgrid controller: it keeps jobs in SQLite, serves Apple's client and agent profiles,
//! and decides which agent runs which task (the scheduler) and which running task moves
//! where (the balancer).
//!
//! Start one with [`Controller::start`] and a [`Config`]; the `xgridcontrollerd` binary is
//! a thin command line around that.

pub mod agent_service;
pub mod apple_config;
pub mod art;
pub mod attributes;
pub mod balancer;
pub mod bonjour;
pub mod client_service;
pub mod config;
pub mod connection;
pub mod dispatch;
pub mod migration;
pub mod notify;
pub mod predicate;
pub mod scheduler;
pub mod scheduling;
pub mod server;
pub mod shared;
pub mod store;
pub mod subscriptions;
pub mod throttle;
pub mod web_view;
pub mod wording;

pub use config::Config;
pub use server::{Controller, StartError};
