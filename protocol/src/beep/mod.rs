//! BEEP (RFC 3080) over TCP (RFC 3081), as Xgrid uses it (xgrid-wire.md §1, §2, §8):
//! frames and their codec, channel-0 management messages, and a session state machine with no
//! sockets and no clock. The tokio driver in `crate::driver` runs a session over a socket.

pub mod channel0;
mod error;
pub mod frame;
pub mod session;

pub use channel0::{Channel0Message, ProfileOffer};
pub use error::BeepError;
pub use frame::{DataFrame, Frame, FrameDecoder, FrameKind};
pub use session::{Config, Event, Role, Session, INITIAL_WINDOW};
