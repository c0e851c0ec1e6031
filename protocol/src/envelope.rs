//! The Xgrid message envelope (xgrid-wire.md §4): every Xgrid message is one BEEP MSG whose
//! body is a plist dictionary `{identifier, name, type, payload}`.

use crate::plist::xml::{indent, write_key, write_value, FOOTER, HEADER};
use crate::plist::{Dictionary, PlistError, Value};

/// Messages whose BEEP body is a binary plist rather than XML: the image chunks of the
/// checkpoint extension (docs/migration.md). In XML a megabyte of image is base64 written and
/// read twice per hop, which was most of a move's transfer time; a binary plist carries the
/// octets as they are. Only agents that announced the extension are sent these, and every
/// reader here takes any plist format.
pub const BINARY_BODIES: [&str; 2] = ["checkpointRead", "checkpointWrite"];

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

/// Why a message body could not be read as an Xgrid envelope.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EnvelopeError {
    #[error("message body is not a readable property list: {0}")]
    Plist(#[from] PlistError),
    #[error("message body is {found}, but an Xgrid message must be a dictionary")]
    NotADictionary { found: &'static str },
    #[error("message has no `type` key (expected request, reply or notification)")]
    MissingType,
    #[error("message type `{0}` is unknown (expected request, reply or notification)")]
    UnknownType(String),
    #[error("message `{key}` is {found}, but it must be {expected}")]
    BadField {
        key: &'static str,
        found: &'static str,
        expected: &'static str,
    },
}

impl Envelope {
    pub fn request(
        identifier: impl Into<String>,
        name: impl Into<String>,
        payload: Dictionary,
    ) -> Envelope {
        Envelope::new(MessageType::Request, identifier, name, payload)
    }

    pub fn reply(
        identifier: impl Into<String>,
        name: impl Into<String>,
        payload: Dictionary,
    ) -> Envelope {
        Envelope::new(MessageType::Reply, identifier, name, payload)
    }

    pub fn notification(
        identifier: impl Into<String>,
        name: impl Into<String>,
        payload: Dictionary,
    ) -> Envelope {
        Envelope::new(MessageType::Notification, identifier, name, payload)
    }

    fn new(
        message_type: MessageType,
        identifier: impl Into<String>,
        name: impl Into<String>,
        payload: Dictionary,
    ) -> Envelope {
        Envelope {
            identifier: identifier.into(),
            name: name.into(),
            message_type,
            payload,
        }
    }

    /// The message as Apple writes it: an XML plist of `{identifier, name, payload, type}`
    /// (keys in that sorted order, `payload` left out when empty).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = String::with_capacity(self.encoded_size_hint());
        self.write_xml(&mut out);
        out.into_bytes()
    }

    /// The BEEP payload: no MIME headers, `\r\n`, then the XML plist (the same bytes as
    /// `mime::bare_entity(&self.encode())`, built in one buffer), or for the messages of
    /// [`BINARY_BODIES`] a binary plist.
    pub fn to_beep_payload(&self) -> Vec<u8> {
        if BINARY_BODIES.contains(&self.name.as_str()) {
            let mut out = b"\r\n".to_vec();
            out.extend_from_slice(&crate::plist::to_binary(&self.to_value()));
            return out;
        }
        let mut out = String::with_capacity(2 + self.encoded_size_hint());
        out.push_str("\r\n");
        self.write_xml(&mut out);
        out.into_bytes()
    }

    /// The envelope as the dictionary the XML form writes (no `payload` when empty).
    fn to_value(&self) -> Value {
        let mut dict = Dictionary::new();
        dict.insert("identifier".into(), Value::String(self.identifier.clone()));
        dict.insert("name".into(), Value::String(self.name.clone()));
        if !self.payload.is_empty() {
            dict.insert("payload".into(), Value::Dictionary(self.payload.clone()));
        }
        dict.insert(
            "type".into(),
            Value::String(self.message_type.as_str().into()),
        );
        Value::Dictionary(dict)
    }

    fn encoded_size_hint(&self) -> usize {
        // The fixed text is about 300 bytes; an entry of a typical payload about 50.
        384 + 64 * self.payload.len()
    }

    fn write_xml(&self, out: &mut String) {
        out.push_str(HEADER);
        out.push_str("<dict>\n");
        write_key("identifier", 1, out);
        write_top_string(&self.identifier, out);
        write_key("name", 1, out);
        write_top_string(&self.name, out);
        if !self.payload.is_empty() {
            write_key("payload", 1, out);
            indent(1, out);
            out.push_str("<dict>\n");
            for (key, value) in &self.payload {
                write_key(key, 2, out);
                write_value(value, 2, out);
            }
            out.push_str("\t</dict>\n");
        }
        write_key("type", 1, out);
        indent(1, out);
        out.push_str("<string>");
        out.push_str(self.message_type.as_str());
        out.push_str("</string>\n");
        out.push_str("</dict>\n");
        out.push_str(FOOTER);
    }

    /// Read a message body in any plist format, leniently: a missing `identifier` or `name`
    /// is empty, an integer one is taken as its decimal text, `type` may be in any case,
    /// a missing `payload` is empty and unknown keys are ignored.
    pub fn decode(body: &[u8]) -> Result<Envelope, EnvelopeError> {
        let mut dict = match crate::plist::parse(body)? {
            Value::Dictionary(dict) => dict,
            other => {
                return Err(EnvelopeError::NotADictionary {
                    found: other.kind_name(),
                })
            }
        };
        let message_type = match dict.get("type") {
            None => return Err(EnvelopeError::MissingType),
            Some(Value::String(text)) => {
                MessageType::parse(text).ok_or_else(|| EnvelopeError::UnknownType(text.clone()))?
            }
            Some(other) => {
                return Err(EnvelopeError::BadField {
                    key: "type",
                    found: other.kind_name(),
                    expected: "a string",
                })
            }
        };
        let identifier = text_field(&mut dict, "identifier")?;
        let name = text_field(&mut dict, "name")?;
        let payload = match dict.remove("payload") {
            None => Dictionary::new(),
            Some(Value::Dictionary(payload)) => payload,
            Some(other) => {
                return Err(EnvelopeError::BadField {
                    key: "payload",
                    found: other.kind_name(),
                    expected: "a dictionary",
                })
            }
        };
        Ok(Envelope {
            identifier,
            name,
            message_type,
            payload,
        })
    }

    /// Read a BEEP payload: the MIME entity's body (headers or not), then `decode`.
    pub fn from_beep_payload(payload: &[u8]) -> Result<Envelope, EnvelopeError> {
        Envelope::decode(crate::mime::entity_body(payload))
    }
}

fn write_top_string(text: &str, out: &mut String) {
    indent(1, out);
    out.push_str("<string>");
    crate::xml::escape_text_into(text, out);
    out.push_str("</string>\n");
}

/// A string field that peers may send as a number, or leave out (then it is empty).
fn text_field(dict: &mut Dictionary, key: &'static str) -> Result<String, EnvelopeError> {
    match dict.remove(key) {
        None => Ok(String::new()),
        Some(Value::String(text)) => Ok(text),
        Some(other) => other.to_string_lenient().ok_or(EnvelopeError::BadField {
            key,
            found: other.kind_name(),
            expected: "a string",
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plist::Date;

    fn job_submission() -> Envelope {
        let mut spec = Dictionary::new();
        spec.insert("name".into(), Value::from("cal & co"));
        let mut payload = Dictionary::new();
        payload.insert("jobSpecification".into(), Value::Dictionary(spec));
        payload.insert("gridIdentifier".into(), Value::from("0"));
        Envelope::request("12", "jobSubmission", payload)
    }

    #[test]
    fn encodes_exactly_as_apple_does() {
        let expected = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>
<!DOCTYPE plist PUBLIC \"-//Apple//DTD PLIST 1.0//EN\" \"http://www.apple.com/DTDs/PropertyList-1.0.dtd\">
<plist version=\"1.0\">
<dict>
\t<key>identifier</key>
\t<string>12</string>
\t<key>name</key>
\t<string>jobSubmission</string>
\t<key>payload</key>
\t<dict>
\t\t<key>gridIdentifier</key>
\t\t<string>0</string>
\t\t<key>jobSpecification</key>
\t\t<dict>
\t\t\t<key>name</key>
\t\t\t<string>cal &amp; co</string>
\t\t</dict>
\t</dict>
\t<key>type</key>
\t<string>request</string>
</dict>
</plist>
";
        assert_eq!(
            String::from_utf8(job_submission().encode()).expect("utf-8"),
            expected
        );
    }

    #[test]
    fn empty_payload_is_left_out() {
        let keepalive = Envelope::request("", "", Dictionary::new());
        let expected = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>
<!DOCTYPE plist PUBLIC \"-//Apple//DTD PLIST 1.0//EN\" \"http://www.apple.com/DTDs/PropertyList-1.0.dtd\">
<plist version=\"1.0\">
<dict>
\t<key>identifier</key>
\t<string></string>
\t<key>name</key>
\t<string></string>
\t<key>type</key>
\t<string>request</string>
</dict>
</plist>
";
        assert_eq!(
            String::from_utf8(keepalive.encode()).expect("utf-8"),
            expected
        );
    }

    #[test]
    fn encoding_matches_the_generic_writer() {
        let envelope = job_submission();
        let mut dict = Dictionary::new();
        dict.insert("identifier".into(), Value::from("12"));
        dict.insert("name".into(), Value::from("jobSubmission"));
        dict.insert(
            "payload".into(),
            Value::Dictionary(envelope.payload.clone()),
        );
        dict.insert("type".into(), Value::from("request"));
        assert_eq!(
            envelope.encode(),
            crate::plist::to_xml(&Value::Dictionary(dict))
        );
        assert_eq!(
            envelope.to_beep_payload(),
            crate::mime::bare_entity(&envelope.encode())
        );
    }

    #[test]
    fn image_chunks_go_out_as_binary_plists_and_come_back_whole() {
        let octets: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
        let mut payload = Dictionary::new();
        payload.insert("checkpointData".into(), Value::Data(octets.clone()));
        payload.insert("offset".into(), Value::Integer(1 << 20));
        for name in BINARY_BODIES {
            let chunk = Envelope::reply("7", name, payload.clone());
            let wire = chunk.to_beep_payload();
            let body = crate::mime::entity_body(&wire);
            assert!(body.starts_with(b"bplist00"), "{name} is binary");
            // The octets themselves, not base64: the body is barely larger than the image.
            assert!(body.len() < octets.len() + 200, "{} octets", body.len());
            assert_eq!(Envelope::from_beep_payload(&wire), Ok(chunk));
        }
        // Apple's messages stay XML, whatever they carry.
        let submission = Envelope::request("1", "taskSubmission", payload);
        assert!(crate::mime::entity_body(&submission.to_beep_payload()).starts_with(b"<?xml"));
    }

    #[test]
    fn round_trips_through_every_format() {
        let mut payload = Dictionary::new();
        payload.insert(
            "dateNow".into(),
            Value::Date(Date::from_unix_seconds(1_169_742_239)),
        );
        payload.insert("percentDone".into(), Value::Real(12.5));
        let envelope = Envelope::notification("27", "jobAttributes", payload);
        assert_eq!(Envelope::decode(&envelope.encode()), Ok(envelope.clone()));
        assert_eq!(
            Envelope::from_beep_payload(&envelope.to_beep_payload()),
            Ok(envelope.clone())
        );
        let mut dict = Dictionary::new();
        dict.insert("identifier".into(), Value::from("27"));
        dict.insert("name".into(), Value::from("jobAttributes"));
        dict.insert("type".into(), Value::from("notification"));
        dict.insert(
            "payload".into(),
            Value::Dictionary(envelope.payload.clone()),
        );
        let binary = crate::plist::to_binary(&Value::Dictionary(dict));
        assert_eq!(Envelope::decode(&binary), Ok(envelope));
    }

    #[test]
    fn decodes_tolerantly() {
        let old_style = b"{ identifier = 7; type = Reply; payload = { jobIdentifier = 42; }; extra = ignored; }";
        let envelope = Envelope::decode(old_style).expect("decodes");
        assert_eq!(envelope.identifier, "7");
        assert_eq!(envelope.name, "");
        assert_eq!(envelope.message_type, MessageType::Reply);
        assert_eq!(
            envelope.payload.get("jobIdentifier"),
            Some(&Value::from("42"))
        );

        let xml = b"Content-Type: application/octet-stream\r\n\r\n<plist><dict><key>identifier</key><integer>5</integer><key>name</key><string>agentStatus</string><key>type</key><string>NOTIFICATION</string></dict></plist>";
        let envelope = Envelope::from_beep_payload(xml).expect("decodes");
        assert_eq!(envelope.identifier, "5");
        assert_eq!(envelope.name, "agentStatus");
        assert_eq!(envelope.message_type, MessageType::Notification);
        assert!(envelope.payload.is_empty());
    }

    #[test]
    fn each_malformed_envelope_has_a_clear_error() {
        let cases: [(&[u8], EnvelopeError, &str); 6] = [
            (
                b"(1, 2)",
                EnvelopeError::NotADictionary { found: "an array" },
                "message body is an array, but an Xgrid message must be a dictionary",
            ),
            (
                b"{ name = x; }",
                EnvelopeError::MissingType,
                "message has no `type` key (expected request, reply or notification)",
            ),
            (
                b"{ type = answer; }",
                EnvelopeError::UnknownType("answer".into()),
                "message type `answer` is unknown (expected request, reply or notification)",
            ),
            (
                b"{ type = reply; payload = (1); }",
                EnvelopeError::BadField {
                    key: "payload",
                    found: "an array",
                    expected: "a dictionary",
                },
                "message `payload` is an array, but it must be a dictionary",
            ),
            (
                b"{ type = reply; name = <00>; }",
                EnvelopeError::BadField {
                    key: "name",
                    found: "data",
                    expected: "a string",
                },
                "message `name` is data, but it must be a string",
            ),
            (
                b"{ type = {}; }",
                EnvelopeError::BadField {
                    key: "type",
                    found: "a dictionary",
                    expected: "a string",
                },
                "message `type` is a dictionary, but it must be a string",
            ),
        ];
        for (body, error, message) in cases {
            let got = Envelope::decode(body).expect_err("must fail");
            assert_eq!(got, error);
            assert_eq!(got.to_string(), message);
        }
        let not_plist = Envelope::decode(b"{ type = ").expect_err("must fail");
        assert!(
            matches!(not_plist, EnvelopeError::Plist(PlistError::OldStyle { .. })),
            "{not_plist:?}"
        );
        assert!(not_plist.to_string().starts_with("message body is not a readable property list: old-style property list, line 1 column 10"), "{not_plist}");
    }
}
