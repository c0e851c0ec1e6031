//! The Xgrid message envelope (xgrid-wire.md §4): every Xgrid message is one BEEP MSG whose
//! body is a plist dictionary `{identifier, name, type, payload}`.

use crate::plist::Dictionary;

/// Whether a message asks, answers or announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageType {
    Request,
    Reply,
    Notification,
}

impl MessageType {
    pub fn as_str(self) -> &'static str {
        match self {
            MessageType::Request => "request",
            MessageType::Reply => "reply",
            MessageType::Notification => "notification",
        }
    }

    /// Lenient: any case is accepted.
    pub fn parse(text: &str) -> Option<MessageType> {
        match text.trim().to_ascii_lowercase().as_str() {
            "request" => Some(MessageType::Request),
            "reply" => Some(MessageType::Reply),
            "notification" => Some(MessageType::Notification),
            _ => None,
        }
    }
}

/// One Xgrid message.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    /// Correlation id for request/reply (may be empty, may be reused); for a notification,
    /// the id of the resource it is about.
    pub identifier: String,
    /// The message name (`jobSubmission`, `taskStatus`, … ; empty for the agent keepalive).
    pub name: String,
    pub message_type: MessageType,
    /// Absent on the wire when empty.
    pub payload: Dictionary,
}
