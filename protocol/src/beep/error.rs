//! Everything that can go wrong at the BEEP layer: a peer breaking a rule of RFC 3080/3081
//! (fatal: the session ends), or the application asking for something the session cannot do
//! (the command fails and the session goes on).

/// A BEEP error. Each variant names the rule that was broken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BeepError {
    // ---- framing (frame.rs) ----
    #[error("malformed frame header: {reason}")]
    BadHeader { reason: String },
    #[error("frame header longer than {limit} octets without a line end")]
    HeaderTooLong { limit: usize },
    #[error("frame payload is not followed by \"END\\r\\n\" (the size field does not match the payload)")]
    MissingTrailer,
    #[error("frame of {size} octets is larger than the {limit}-octet limit")]
    FrameTooLarge { size: u32, limit: u32 },

    // ---- sequencing and flow control (RFC 3081) ----
    #[error("frame on channel {channel} has seqno {got}, expected {expected}")]
    UnexpectedSeqno {
        channel: u32,
        expected: u32,
        got: u32,
    },
    #[error("frame on channel {channel} goes {excess} octets past the window we granted")]
    WindowOverrun { channel: u32, excess: u32 },
    #[error(
        "SEQ on channel {channel} acknowledges up to {ackno}, but only {sent} octets were sent"
    )]
    BadAck { channel: u32, ackno: u32, sent: u32 },

    // ---- messages and replies (RFC 3080 §2.2, §2.6) ----
    #[error("MSG {msgno} on channel {channel} reuses a message number still awaiting our reply")]
    MsgnoInUse { channel: u32, msgno: u32 },
    #[error(
        "frame on channel {channel} does not continue the unfinished message before it: {reason}"
    )]
    BadContinuation { channel: u32, reason: String },
    #[error("reply to msgno {msgno} on channel {channel}, but we sent no such message")]
    UnexpectedReply { channel: u32, msgno: u32 },
    #[error(
        "reply to msgno {got} on channel {channel} arrived before the reply to msgno {expected}"
    )]
    ReplyOutOfOrder {
        channel: u32,
        expected: u32,
        got: u32,
    },
    #[error("bad reply to msgno {msgno} on channel {channel}: {reason}")]
    BadReply {
        channel: u32,
        msgno: u32,
        reason: String,
    },
    #[error("reassembled message on channel {channel} exceeds the {limit}-octet limit")]
    MessageTooLarge { channel: u32, limit: usize },

    // ---- channels and channel 0 (RFC 3080 §2.3) ----
    #[error("frame on channel {channel}, which is not open")]
    UnknownChannel { channel: u32 },
    #[error(
        "peer asked to start channel {channel}, which has the wrong parity for its role (or is 0)"
    )]
    WrongChannelParity { channel: u32 },
    #[error("peer asked to start channel {channel}, which is already in use")]
    ChannelInUse { channel: u32 },
    #[error(
        "peer asked to start channel {channel} with no profile we offer (asked for: {requested:?})"
    )]
    NoProfileOffered {
        channel: u32,
        requested: Vec<String>,
    },
    #[error("bad channel-0 message: {reason}")]
    BadChannelZeroMessage { reason: String },
    #[error("peer sent {what} before its greeting")]
    MissingGreeting { what: String },
    #[error("peer refused the session: {code} {text}")]
    GreetingRefused { code: u16, text: String },

    // ---- the end of the session ----
    #[error("the connection ended before the session was closed")]
    ConnectionLost,
    #[error("transport error: {message}")]
    Transport { message: String },
    #[error("the session is closed")]
    SessionClosed,

    // ---- application misuse (the command fails, the session goes on) ----
    #[error("channel {channel} is not open")]
    NoSuchChannel { channel: u32 },
    #[error("there is no message {msgno} on channel {channel} awaiting a reply")]
    NoSuchMessage { channel: u32, msgno: u32 },
    #[error("there is no pending start request for channel {channel}")]
    NoPendingStart { channel: u32 },
    #[error("profile {uri} was not among those the peer asked for")]
    ProfileNotRequested { uri: String },
    #[error("a start request must name at least one profile")]
    NoProfiles,
    #[error("channel {channel} is being closed")]
    ChannelClosing { channel: u32 },
    #[error("reply code {code} is not a three-digit BEEP code")]
    BadReplyCode { code: u16 },
    #[error("all channel numbers are used up")]
    ChannelsExhausted,
}
