//! Property lists in the three formats Xgrid peers use: XML (what Apple writes on the wire),
//! binary (`bplist00`, which Apple's parsers accept) and old-style NeXTSTEP text (what the
//! `xgrid` tool prints and what hand-written batch files use).

mod binary;
mod error;
mod old_style;
mod value;
pub(crate) mod xml;

use std::fmt::Write as _;

pub use error::PlistError;
pub use value::{CivilTime, Date, Dictionary, Value, APPLE_EPOCH_UNIX_SECONDS};

/// Read a property list in any of the three formats: binary when it starts with `bplist`,
/// XML when its first non-blank character opens a tag, old-style otherwise. Text may be
/// UTF-8 (with or without a byte-order mark) or UTF-16 with a byte-order mark.
pub fn parse(bytes: &[u8]) -> Result<Value, PlistError> {
    if bytes.starts_with(b"bplist") {
        return binary::read(bytes);
    }
    let (text, base) = decode_text(bytes)?;
    if looks_like_xml(&text) {
        xml::read(&text, base)
    } else {
        old_style::read(&text)
    }
}

/// Read an XML property list (UTF-8, or UTF-16 with a byte-order mark).
pub fn from_xml(bytes: &[u8]) -> Result<Value, PlistError> {
    let (text, base) = decode_text(bytes)?;
    xml::read(&text, base)
}

/// Read a binary (`bplist00`) property list.
pub fn from_binary(bytes: &[u8]) -> Result<Value, PlistError> {
    binary::read(bytes)
}

/// Read an old-style (NeXTSTEP/OpenStep) text property list. It has no numbers, booleans or
/// dates: every scalar comes back as a string, for the lenient `Value::to_*` readers.
pub fn from_old_style(text: &str) -> Result<Value, PlistError> {
    old_style::read(text.strip_prefix('\u{feff}').unwrap_or(text))
}

/// Apple's XML form, byte for byte as CFPropertyList writes it (tab indentation, `\n`
/// line ends, sorted keys).
pub fn to_xml(value: &Value) -> Vec<u8> {
    let mut out = String::with_capacity(256);
    xml::write_document(value, &mut out);
    out.into_bytes()
}

/// The binary `bplist00` form.
pub fn to_binary(value: &Value) -> Vec<u8> {
    binary::write(value)
}

/// Foundation's `description` form as the `xgrid` tool prints it: one entry per line,
/// four-space indentation.
pub fn to_old_style(value: &Value) -> String {
    let mut out = String::with_capacity(128);
    old_style::write(value, 0, &mut out);
    out
}

/// The old-style form on a single line: `{a = 1; b = (6, 2007); }`.
pub fn to_old_style_compact(value: &Value) -> String {
    let mut out = String::with_capacity(64);
    old_style::write_compact(value, &mut out);
    out
}

/// The text of a byte stream and the byte offset at which it starts in the input (so error
/// offsets point into what the caller passed).
fn decode_text(bytes: &[u8]) -> Result<(std::borrow::Cow<'_, str>, usize), PlistError> {
    use std::borrow::Cow;
    if let Some(rest) = bytes.strip_prefix(b"\xEF\xBB\xBF") {
        return utf8(rest, 3).map(|t| (Cow::Borrowed(t), 3));
    }
    let utf16 = |rest: &[u8], big: bool| {
        // An odd trailing byte cannot be part of any character.
        if rest.len() % 2 != 0 {
            return Err(PlistError::Encoding {
                encoding: "UTF-16",
                offset: rest.len() + 1,
            });
        }
        let units = rest.chunks_exact(2).map(|p| {
            let pair = [p[0], p[1]];
            if big {
                u16::from_be_bytes(pair)
            } else {
                u16::from_le_bytes(pair)
            }
        });
        let mut text = String::with_capacity(rest.len() / 2);
        for (i, c) in char::decode_utf16(units).enumerate() {
            match c {
                Ok(c) => text.push(c),
                Err(_) => {
                    return Err(PlistError::Encoding {
                        encoding: "UTF-16",
                        offset: 2 + 2 * i,
                    })
                }
            }
        }
        Ok((Cow::Owned(text), 0))
    };
    if let Some(rest) = bytes.strip_prefix(b"\xFE\xFF") {
        return utf16(rest, true);
    }
    if let Some(rest) = bytes.strip_prefix(b"\xFF\xFE") {
        return utf16(rest, false);
    }
    utf8(bytes, 0).map(|t| (Cow::Borrowed(t), 0))
}

fn utf8(bytes: &[u8], base: usize) -> Result<&str, PlistError> {
    std::str::from_utf8(bytes).map_err(|e| PlistError::Encoding {
        encoding: "UTF-8",
        offset: base + e.valid_up_to(),
    })
}

/// XML starts with a tag. Old-style data (`<0fbd7772 55>`) also starts with `<`, so a first
/// "tag" holding only hex digits and blanks is taken as old-style data instead.
fn looks_like_xml(text: &str) -> bool {
    let Some(rest) = text.trim_start().strip_prefix('<') else {
        return false;
    };
    let inside = rest.split('>').next().unwrap_or(rest);
    !inside
        .bytes()
        .all(|b| b.is_ascii_hexdigit() || b.is_ascii_whitespace())
}

/// A real as the shortest text that reads back to the same number, without a fraction when
/// it is whole (`100`, `12.5`), in exponent form only when very large or small. Infinities
/// and NaN use CFPropertyList's spellings, which Rust's parser also reads.
pub(crate) fn write_real(r: f64, out: &mut String) {
    if r.is_nan() {
        out.push_str("nan");
    } else if r.is_infinite() {
        out.push_str(if r > 0.0 { "+infinity" } else { "-infinity" });
    } else {
        let magnitude = r.abs();
        // `write!` into a String cannot fail.
        let _ = if magnitude == 0.0 || (1e-5..1e16).contains(&magnitude) {
            write!(out, "{r}")
        } else {
            write!(out, "{r:e}")
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn real(r: f64) -> String {
        let mut s = String::new();
        write_real(r, &mut s);
        s
    }

    #[test]
    fn reals_are_shortest_and_whole_numbers_have_no_fraction() {
        assert_eq!(real(100.0), "100");
        assert_eq!(real(12.5), "12.5");
        assert_eq!(real(0.1), "0.1");
        assert_eq!(real(-3.0), "-3");
        assert_eq!(real(1e300), "1e300");
        assert_eq!(real(2.5e-7), "2.5e-7");
        assert_eq!(real(f64::INFINITY), "+infinity");
        assert_eq!(real(f64::NEG_INFINITY), "-infinity");
        assert_eq!(real(f64::NAN), "nan");
        for r in [
            0.1,
            1.0 / 3.0,
            1e300,
            2.5e-7,
            -1e-320,
            f64::MAX,
            f64::INFINITY,
        ] {
            assert_eq!(real(r).parse::<f64>(), Ok(r), "{r}");
        }
    }

    #[test]
    fn detects_each_format() {
        let dict = "<?xml version=\"1.0\"?><plist><dict/></plist>";
        assert_eq!(
            parse(dict.as_bytes()),
            Ok(Value::Dictionary(Dictionary::new()))
        );
        assert_eq!(
            parse(b"  <dict/>"),
            Ok(Value::Dictionary(Dictionary::new()))
        );
        assert_eq!(parse(b"{}"), Ok(Value::Dictionary(Dictionary::new())));
        assert_eq!(
            parse(b" <0fbd 77>"),
            Ok(Value::Data(vec![0x0f, 0xbd, 0x77]))
        );
        assert_eq!(parse(b"<>"), Ok(Value::Data(vec![])));
        let binary = to_binary(&Value::from("x"));
        assert_eq!(parse(&binary), Ok(Value::from("x")));
    }

    #[test]
    fn byte_order_marks_and_utf16() {
        assert_eq!(
            parse(b"\xEF\xBB\xBF<string>a</string>"),
            Ok(Value::from("a"))
        );
        let utf16: Vec<u8> = "\u{feff}{k = \"\u{e9}\";}"
            .encode_utf16()
            .flat_map(|u| u.to_be_bytes())
            .collect();
        let mut expected = Dictionary::new();
        expected.insert("k".into(), Value::from("\u{e9}"));
        assert_eq!(parse(&utf16), Ok(Value::Dictionary(expected.clone())));
        let le: Vec<u8> = "\u{feff}{k = \"\u{e9}\";}"
            .encode_utf16()
            .flat_map(|u| u.to_le_bytes())
            .collect();
        assert_eq!(parse(&le), Ok(Value::Dictionary(expected)));
    }

    #[test]
    fn bad_encodings_say_where() {
        assert_eq!(
            parse(b"<string>\xff</string>"),
            Err(PlistError::Encoding {
                encoding: "UTF-8",
                offset: 8
            })
        );
        let err = parse(b"\xFE\xFF\x00").expect_err("odd UTF-16");
        assert!(err.to_string().contains("not valid UTF-16"), "{err}");
        let lone_surrogate = parse(b"\xFE\xFF\xD8\x00\x00a").expect_err("lone surrogate");
        assert_eq!(
            lone_surrogate,
            PlistError::Encoding {
                encoding: "UTF-16",
                offset: 2
            }
        );
    }

    #[test]
    fn empty_input_is_an_error() {
        assert_eq!(parse(b""), Err(PlistError::Empty));
        assert_eq!(parse(b"  \n // nothing\n"), Err(PlistError::Empty));
    }
}
