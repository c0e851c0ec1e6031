//! Xgrid's wire protocol, with no sockets and no database: BEEP framing and sessions
//! (RFC 3080/3081), the two-way-random password profile, property lists, the Xgrid message
//! envelope and typed messages, and the job specification model. A tokio driver that runs a
//! session over TCP sits behind the `tokio` feature.

pub mod auth;
pub mod beep;
pub mod envelope;
#[doc(hidden)]
pub mod fuzzing;
pub mod jobspec;
pub mod messages;
pub mod mime;
pub mod password;
pub mod plist;
pub mod preferences;
pub mod profile;
pub mod xml;

#[cfg(feature = "tokio")]
pub mod allocator;
#[cfg(feature = "tokio")]
pub mod driver;
#[cfg(feature = "tokio")]
pub mod peer;
