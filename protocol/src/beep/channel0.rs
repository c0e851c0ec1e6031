//! Channel-0 management messages in `application/beep+xml` (RFC 3080 §2.3): greeting,
//! start, profile, close, ok and error. [`parse`] reads one from a payload (with or without
//! MIME headers); [`Channel0Message::to_payload`] writes one with a `Content-Type` header.

use super::BeepError;
use crate::mime;
use crate::xml::{escape_attribute_into, escape_text_into, Attributes, XmlEvent, XmlReader};

/// The MIME type of every channel-0 message.
pub const CONTENT_TYPE: &str = "application/beep+xml";

/// One profile named in a `<start>` or in a positive reply to it, with its optional
/// piggyback (the element's content: text, CDATA, or raw nested XML kept verbatim).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileOffer {
    pub uri: String,
    /// `None` for `<profile uri='…'/>`; `Some("")` for an element with empty content.
    pub piggyback: Option<String>,
}

impl ProfileOffer {
    pub fn new(uri: impl Into<String>) -> Self {
        ProfileOffer {
            uri: uri.into(),
            piggyback: None,
        }
    }

    pub fn with_piggyback(uri: impl Into<String>, piggyback: impl Into<String>) -> Self {
        ProfileOffer {
            uri: uri.into(),
            piggyback: Some(piggyback.into()),
        }
    }
}

/// A channel-0 message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Channel0Message {
    /// `<greeting>` with the profiles the sender offers.
    Greeting { profiles: Vec<String> },
    /// `<start number='N'>` asking for one of `profiles` on channel `number`.
    Start {
        number: u32,
        profiles: Vec<ProfileOffer>,
    },
    /// `<profile>`: the positive reply to a start.
    Profile(ProfileOffer),
    /// `<close number='N' code='C'/>`; number 0 closes the whole session.
    Close { number: u32, code: u16 },
    /// `<ok/>`: the positive reply to a close.
    Ok,
    /// `<error code='C'>text</error>`: the negative reply to a start or close, or a refused
    /// session in place of a greeting.
    Error { code: u16, text: String },
}

impl Channel0Message {
    /// The XML document alone.
    pub fn to_xml(&self) -> String {
        let mut out = String::new();
        match self {
            Channel0Message::Greeting { profiles } if profiles.is_empty() => {
                out.push_str("<greeting/>")
            }
            Channel0Message::Greeting { profiles } => {
                out.push_str("<greeting>");
                for uri in profiles {
                    write_profile(&ProfileOffer::new(uri.as_str()), &mut out);
                }
                out.push_str("</greeting>");
            }
            Channel0Message::Start { number, profiles } => {
                out.push_str(&format!("<start number='{number}'>"));
                for p in profiles {
                    write_profile(p, &mut out);
                }
                out.push_str("</start>");
            }
            Channel0Message::Profile(p) => write_profile(p, &mut out),
            Channel0Message::Close { number, code } => {
                out.push_str(&format!("<close number='{number}' code='{code}'/>"));
            }
            Channel0Message::Ok => out.push_str("<ok/>"),
            Channel0Message::Error { code, text } => {
                out.push_str(&format!("<error code='{code}'>"));
                escape_text_into(text, &mut out);
                out.push_str("</error>");
            }
        }
        out
    }

    /// The BEEP payload: a `Content-Type: application/beep+xml` header, a blank line, the XML.
    pub fn to_payload(&self) -> Vec<u8> {
        mime::typed_entity(CONTENT_TYPE, self.to_xml().as_bytes())
    }
}

// Piggybacks are written as CDATA, as beepcore-based peers do, unless the text itself holds
// the CDATA terminator; then it is escaped as ordinary text. An empty piggyback is an element
// with no content, `<profile uri='…'></profile>`, which reads back as `Some("")`.
fn write_profile(p: &ProfileOffer, out: &mut String) {
    out.push_str("<profile uri='");
    escape_attribute_into(&p.uri, out);
    match &p.piggyback {
        None => out.push_str("'/>"),
        Some(text) => {
            out.push_str("'>");
            if text.contains("]]>") {
                escape_text_into(text, out);
            } else if !text.is_empty() {
                out.push_str("<![CDATA[");
                out.push_str(text);
                out.push_str("]]>");
            }
            out.push_str("</profile>");
        }
    }
}

fn bad(reason: impl Into<String>) -> BeepError {
    BeepError::BadChannelZeroMessage {
        reason: reason.into(),
    }
}

/// Read a channel-0 message from a BEEP payload, with or without MIME headers. Never panics.
pub fn parse(payload: &[u8]) -> Result<Channel0Message, BeepError> {
    let body = mime::entity_body(payload);
    let text = std::str::from_utf8(body).map_err(|_| bad("not UTF-8"))?;
    let mut reader = XmlReader::new(text);
    let event = reader.next_significant().map_err(|e| bad(e.to_string()))?;
    let XmlEvent::Start {
        name,
        attributes,
        empty,
    } = event
    else {
        return Err(bad("expected an element"));
    };
    let message = match name {
        "greeting" => {
            let mut profiles = Vec::new();
            if !empty {
                while let Some(p) = read_child_profile(&mut reader, text, "greeting")? {
                    profiles.push(p.uri);
                }
            }
            Channel0Message::Greeting { profiles }
        }
        "start" => {
            let number = number_attribute(&attributes, "number")?;
            let mut profiles = Vec::new();
            if !empty {
                while let Some(p) = read_child_profile(&mut reader, text, "start")? {
                    profiles.push(p);
                }
            }
            if profiles.is_empty() {
                return Err(bad("<start> names no profile"));
            }
            Channel0Message::Start { number, profiles }
        }
        "profile" => Channel0Message::Profile(read_profile(&mut reader, text, &attributes, empty)?),
        "close" => {
            let number = number_attribute(&attributes, "number")?;
            // RFC 3080 makes `code` mandatory; a peer that leaves it out means a plain close.
            let code = match attribute(&attributes, "code")? {
                Some(_) => code_attribute(&attributes)?,
                None => 200,
            };
            if !empty {
                skip_to_end(&mut reader, "close")?;
            }
            Channel0Message::Close { number, code }
        }
        "ok" => {
            if !empty {
                skip_to_end(&mut reader, "ok")?;
            }
            Channel0Message::Ok
        }
        "error" => {
            let code = code_attribute(&attributes)?;
            let text = if empty {
                String::new()
            } else {
                read_text(&mut reader, "error")?
            };
            Channel0Message::Error {
                code,
                text: text.trim().to_string(),
            }
        }
        other => return Err(bad(format!("unknown element <{other}>"))),
    };
    if !reader.at_end().map_err(|e| bad(e.to_string()))? {
        return Err(bad("content after the top-level element"));
    }
    Ok(message)
}

fn attribute(attributes: &Attributes<'_>, name: &str) -> Result<Option<String>, BeepError> {
    attributes
        .get(name)
        .map(|v| v.map(|v| v.into_owned()))
        .map_err(|e| bad(e.to_string()))
}

fn number_attribute(attributes: &Attributes<'_>, name: &str) -> Result<u32, BeepError> {
    let value =
        attribute(attributes, name)?.ok_or_else(|| bad(format!("missing {name} attribute")))?;
    value
        .trim()
        .parse::<u32>()
        .ok()
        .filter(|n| *n <= super::frame::MAX_I31)
        .ok_or_else(|| bad(format!("{name}='{value}' is not a channel number")))
}

fn code_attribute(attributes: &Attributes<'_>) -> Result<u16, BeepError> {
    let value = attribute(attributes, "code")?.ok_or_else(|| bad("missing code attribute"))?;
    value
        .trim()
        .parse::<u16>()
        .ok()
        .filter(|c| (100..1000).contains(c))
        .ok_or_else(|| bad(format!("code='{value}' is not a three-digit reply code")))
}

// Next `<profile>` child of `parent`, or `None` at `</parent>`. Other children are skipped,
// so future extensions of the grammar do not break us.
fn read_child_profile(
    reader: &mut XmlReader<'_>,
    text: &str,
    parent: &str,
) -> Result<Option<ProfileOffer>, BeepError> {
    loop {
        match reader.next_significant().map_err(|e| bad(e.to_string()))? {
            XmlEvent::End { name } if name == parent => return Ok(None),
            XmlEvent::End { name } => {
                return Err(bad(format!("unexpected </{name}> in <{parent}>")))
            }
            XmlEvent::Start {
                name: "profile",
                attributes,
                empty,
            } => {
                return read_profile(reader, text, &attributes, empty).map(Some);
            }
            XmlEvent::Start { name, empty, .. } => {
                if !empty {
                    skip_to_end(reader, name)?;
                }
            }
            XmlEvent::Text(_) => return Err(bad(format!("text inside <{parent}>"))),
        }
    }
}

// The rest of a `<profile>` element whose start tag was just read.
fn read_profile(
    reader: &mut XmlReader<'_>,
    text: &str,
    attributes: &Attributes<'_>,
    empty: bool,
) -> Result<ProfileOffer, BeepError> {
    let uri = attribute(attributes, "uri")?.ok_or_else(|| bad("<profile> without uri"))?;
    if empty {
        return Ok(ProfileOffer {
            uri,
            piggyback: None,
        });
    }
    // Content may be escaped text, CDATA, or (from lax peers) raw XML such as `<blob>…</blob>`.
    // Text and CDATA are decoded; if any element appears, the content is kept verbatim.
    let content_start = reader.position();
    let mut decoded = String::new();
    let mut saw_element = false;
    let mut depth = 0usize;
    loop {
        let before = reader.position();
        match reader.next().map_err(|e| bad(e.to_string()))? {
            None => return Err(bad("unterminated <profile>")),
            Some(XmlEvent::Text(t)) => decoded.push_str(&t),
            Some(XmlEvent::Start { empty, .. }) => {
                saw_element = true;
                if !empty {
                    depth += 1;
                }
            }
            Some(XmlEvent::End { name }) if depth == 0 => {
                if name != "profile" {
                    return Err(bad(format!("unexpected </{name}> in <profile>")));
                }
                let piggyback = if saw_element {
                    text.get(content_start..before)
                        .unwrap_or_default()
                        .to_string()
                } else {
                    decoded
                };
                return Ok(ProfileOffer {
                    uri,
                    piggyback: Some(piggyback),
                });
            }
            Some(XmlEvent::End { .. }) => depth -= 1,
        }
    }
}

// Text content up to `</name>`, nested elements not allowed.
fn read_text(reader: &mut XmlReader<'_>, name: &str) -> Result<String, BeepError> {
    let mut out = String::new();
    loop {
        match reader.next().map_err(|e| bad(e.to_string()))? {
            Some(XmlEvent::Text(t)) => out.push_str(&t),
            Some(XmlEvent::End { name: end }) if end == name => return Ok(out),
            Some(_) => return Err(bad(format!("unexpected markup inside <{name}>"))),
            None => return Err(bad(format!("unterminated <{name}>"))),
        }
    }
}

fn skip_to_end(reader: &mut XmlReader<'_>, name: &str) -> Result<(), BeepError> {
    let mut depth = 0usize;
    loop {
        match reader.next().map_err(|e| bad(e.to_string()))? {
            None => return Err(bad(format!("unterminated <{name}>"))),
            Some(XmlEvent::Start { empty: false, .. }) => depth += 1,
            Some(XmlEvent::End { .. }) if depth == 0 => return Ok(()),
            Some(XmlEvent::End { .. }) => depth -= 1,
            Some(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_rfc_style_messages_with_and_without_headers() {
        let greeting = b"Content-Type: application/beep+xml\r\n\r\n<greeting>\r\n   <profile uri='http://a/1' />\r\n   <profile uri=\"http://a/2\"/>\r\n</greeting>\r\n";
        assert_eq!(
            parse(greeting),
            Ok(Channel0Message::Greeting {
                profiles: vec!["http://a/1".into(), "http://a/2".into()]
            })
        );
        assert_eq!(
            parse(b"<greeting/>"),
            Ok(Channel0Message::Greeting { profiles: vec![] })
        );
        assert_eq!(parse(b"\r\n<ok />"), Ok(Channel0Message::Ok));
        assert_eq!(
            parse(b"<close number='1' code='200' />"),
            Ok(Channel0Message::Close {
                number: 1,
                code: 200
            })
        );
        assert_eq!(
            parse(b"<error code='530' xml:lang='en'>Authentication required</error>"),
            Ok(Channel0Message::Error {
                code: 530,
                text: "Authentication required".into()
            })
        );
    }

    #[test]
    fn piggybacks_in_cdata_text_or_raw_xml() {
        let start = b"<start number='1'><profile uri='u1'><![CDATA[<blob>abc</blob>]]></profile><profile uri='u2'>&lt;blob/&gt;</profile><profile uri='u3'><blob>x</blob></profile><profile uri='u4'/></start>";
        let Ok(Channel0Message::Start { number, profiles }) = parse(start) else {
            panic!("{:?}", parse(start))
        };
        assert_eq!(number, 1);
        assert_eq!(
            profiles,
            vec![
                ProfileOffer::with_piggyback("u1", "<blob>abc</blob>"),
                ProfileOffer::with_piggyback("u2", "<blob/>"),
                ProfileOffer::with_piggyback("u3", "<blob>x</blob>"),
                ProfileOffer::new("u4"),
            ]
        );
    }

    #[test]
    fn writes_what_it_reads() {
        let messages = [
            Channel0Message::Greeting {
                profiles: vec!["http://www.apple.com/beep/xgrid/controller/client".into()],
            },
            Channel0Message::Greeting { profiles: vec![] },
            Channel0Message::Start {
                number: 7,
                profiles: vec![
                    ProfileOffer::with_piggyback("a'b", "]]> & <x>"),
                    ProfileOffer::with_piggyback("c", ""),
                ],
            },
            Channel0Message::Profile(ProfileOffer::with_piggyback(
                "u",
                "<blob status='complete'/>",
            )),
            Channel0Message::Close {
                number: 0,
                code: 200,
            },
            Channel0Message::Ok,
            Channel0Message::Error {
                code: 550,
                text: "no <such> profile & more".into(),
            },
        ];
        for m in messages {
            let payload = m.to_payload();
            assert!(payload.starts_with(b"Content-Type: application/beep+xml\r\n\r\n"));
            assert_eq!(parse(&payload), Ok(m));
        }
        assert_eq!(
            Channel0Message::Start {
                number: 1,
                profiles: vec![ProfileOffer::with_piggyback("u", "x")]
            }
            .to_xml(),
            "<start number='1'><profile uri='u'><![CDATA[x]]></profile></start>"
        );
    }

    #[test]
    fn malformed_messages_are_errors() {
        let cases: &[&[u8]] = &[
            b"",
            b"<bogus/>",
            b"<start number='1'></start>",
            b"<start number='x'><profile uri='a'/></start>",
            b"<start><profile uri='a'/></start>",
            b"<close number='-1' code='200'/>",
            b"<error code='20'>x</error>",
            b"<error>x</error>",
            b"<ok/><ok/>",
            b"<greeting><profile/></greeting>",
            b"<profile uri='a'>",
            b"\xff<ok/>",
        ];
        for case in cases {
            assert!(
                matches!(parse(case), Err(BeepError::BadChannelZeroMessage { .. })),
                "{:?} gave {:?}",
                String::from_utf8_lossy(case),
                parse(case)
            );
        }
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = parse(&bytes);
        }

        #[test]
        fn xml_like_garbage_never_panics(s in "[<>/a-z '\"=!\\[\\]CDATA&;#0-9-]{0,120}") {
            let _ = parse(s.as_bytes());
            let _ = parse(format!("<start number='1'><profile uri='u'>{s}</profile></start>").as_bytes());
        }

        #[test]
        fn piggyback_round_trips(p in "\\PC{0,60}", uri in "[ -~]{1,30}") {
            let m = Channel0Message::Profile(ProfileOffer::with_piggyback(uri, p));
            prop_assert_eq!(parse(&m.to_payload()), Ok(m));
        }
    }
}
