//! XML property lists: a tolerant reader over `crate::xml`'s tokenizer, and a writer that
//! produces exactly CFPropertyList's bytes, because one known peer drops any message whose
//! whitespace between tags is not tabs and `\n`.

use std::borrow::Cow;
use std::fmt::Write as _;

use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine as _;

use super::error::MAX_DEPTH;
use super::{write_real, Date, Dictionary, PlistError, Value};
use crate::xml::{XmlError, XmlEvent, XmlReader};

/// Everything before the root value, as Apple writes it (the DOCTYPE line ends with a bare `\n`).
pub(crate) const HEADER: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!DOCTYPE plist PUBLIC \"-//Apple//DTD PLIST 1.0//EN\" \"http://www.apple.com/DTDs/PropertyList-1.0.dtd\">\n<plist version=\"1.0\">\n";
pub(crate) const FOOTER: &str = "</plist>\n";

/// Peers pad base64 or not, and some leave stray bits in the last character; accept both.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

// ---------------------------------------------------------------------------------------
// Reading

/// Read an XML plist from `text`; `base` is added to error offsets (a stripped byte-order mark).
pub(crate) fn read(text: &str, base: usize) -> Result<Value, PlistError> {
    let mut reader = Reader {
        xml: XmlReader::new(text),
        base,
    };
    let (at, first) = reader.next_tag()?;
    let value = match first {
        XmlEvent::Start {
            name: "plist",
            empty: true,
            ..
        } => return Err(reader.error(at, "the <plist> element is empty: expected a value inside")),
        XmlEvent::Start {
            name: "plist",
            empty: false,
            ..
        } => {
            let (at, event) = reader.next_tag()?;
            let value = match event {
                XmlEvent::Start { name, empty, .. } => reader.element(at, name, empty, 1)?,
                _ => return Err(reader.unexpected(at, &event, "a value inside <plist>")),
            };
            let (at, event) = reader.next_tag()?;
            if !matches!(event, XmlEvent::End { name: "plist" }) {
                return Err(reader.unexpected(at, &event, "</plist> after the root value"));
            }
            value
        }
        // Some hand-written files leave out the <plist> wrapper; CFPropertyList reads them.
        XmlEvent::Start { name, empty, .. } => reader.element(at, name, empty, 1)?,
        _ => return Err(reader.unexpected(at, &first, "<plist>")),
    };
    let at = reader.xml.position();
    if !reader.xml.at_end().map_err(|e| reader.xml_error(e))? {
        return Err(reader.error(at, "unexpected content after the end of the property list"));
    }
    Ok(value)
}

struct Reader<'a> {
    xml: XmlReader<'a>,
    base: usize,
}

impl<'a> Reader<'a> {
    fn error(&self, offset: usize, message: impl Into<String>) -> PlistError {
        PlistError::Xml {
            offset: self.base + offset,
            message: message.into(),
        }
    }

    fn xml_error(&self, e: XmlError) -> PlistError {
        PlistError::Xml {
            offset: self.base + e.offset,
            message: e.message,
        }
    }

    fn unexpected(&self, offset: usize, found: &XmlEvent<'_>, expected: &str) -> PlistError {
        let found = match found {
            XmlEvent::Start {
                name, empty: true, ..
            } => format!("<{name}/>"),
            XmlEvent::Start { name, .. } => format!("<{name}>"),
            XmlEvent::End { name } => format!("</{name}>"),
            XmlEvent::Text(_) => "text".to_string(),
        };
        self.error(offset, format!("expected {expected}, found {found}"))
    }

    /// The next tag (or non-blank text) and the offset where it starts.
    fn next_tag(&mut self) -> Result<(usize, XmlEvent<'a>), PlistError> {
        loop {
            let at = self.xml.position();
            match self.xml.next().map_err(|e| self.xml_error(e))? {
                Some(XmlEvent::Text(t)) if t.bytes().all(|b| b.is_ascii_whitespace()) => {}
                Some(event) => return Ok((at, event)),
                None => return Err(self.error(at, "unexpected end of document")),
            }
        }
    }

    /// The value of the element whose start tag `<name>` began at `at`.
    fn element(
        &mut self,
        at: usize,
        name: &str,
        empty: bool,
        depth: usize,
    ) -> Result<Value, PlistError> {
        if depth > MAX_DEPTH {
            return Err(self.error(at, format!("nesting deeper than {MAX_DEPTH} levels")));
        }
        match name {
            "dict" => self.dict(empty, depth).map(Value::Dictionary),
            "array" => {
                let mut items = Vec::new();
                if !empty {
                    loop {
                        let (at, event) = self.next_tag()?;
                        match event {
                            XmlEvent::End { name: "array" } => break,
                            XmlEvent::Start { name, empty, .. } => {
                                items.push(self.element(at, name, empty, depth + 1)?)
                            }
                            _ => return Err(self.unexpected(at, &event, "a value or </array>")),
                        }
                    }
                }
                Ok(Value::Array(items))
            }
            "string" => Ok(Value::String(self.text(empty, name)?.into_owned())),
            "integer" => {
                let text = self.text(empty, name)?;
                parse_integer(&text).map(Value::Integer).ok_or_else(|| {
                    self.error(at, format!("`{}` is not a 64-bit integer", text.trim()))
                })
            }
            "real" => {
                let text = self.text(empty, name)?;
                text.trim()
                    .parse()
                    .map(Value::Real)
                    .map_err(|_| self.error(at, format!("`{}` is not a real number", text.trim())))
            }
            "true" | "false" => {
                if !empty {
                    let (end_at, event) = self.next_tag()?;
                    if !matches!(event, XmlEvent::End { name: n } if n == name) {
                        return Err(self.unexpected(end_at, &event, &format!("</{name}>")));
                    }
                }
                Ok(Value::Boolean(name == "true"))
            }
            "date" => {
                let text = self.text(empty, name)?;
                Date::parse_iso8601(&text).map(Value::Date).ok_or_else(|| {
                    let shown = text.trim();
                    self.error(
                        at,
                        format!("`{shown}` is not a date (expected YYYY-MM-DDTHH:MM:SSZ)"),
                    )
                })
            }
            "data" => {
                let text = self.text(empty, name)?;
                // Peers wrap base64 at 76 columns and indent it; only the alphabet counts.
                let compact: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
                BASE64
                    .decode(&compact)
                    .map(Value::Data)
                    .map_err(|e| self.error(at, format!("<data> is not valid base64: {e}")))
            }
            "key" => Err(self.error(at, "<key> outside a <dict>")),
            "plist" => Err(self.error(at, "<plist> nested inside a property list")),
            other => Err(self.error(at, format!("unknown element <{other}>"))),
        }
    }

    fn dict(&mut self, empty: bool, depth: usize) -> Result<Dictionary, PlistError> {
        let mut dict = Dictionary::new();
        if empty {
            return Ok(dict);
        }
        loop {
            let (at, event) = self.next_tag()?;
            let key = match event {
                XmlEvent::End { name: "dict" } => return Ok(dict),
                XmlEvent::Start {
                    name: "key", empty, ..
                } => self.text(empty, "key")?.into_owned(),
                _ => return Err(self.unexpected(at, &event, "<key> or </dict>")),
            };
            let (at, event) = self.next_tag()?;
            let value = match event {
                XmlEvent::Start { name, empty, .. } => self.element(at, name, empty, depth + 1)?,
                _ => return Err(self.unexpected(at, &event, &format!("the value of key `{key}`"))),
            };
            dict.insert(key, value);
        }
    }

    /// The character data of a text-only element up to its end tag `</name>`.
    fn text(&mut self, empty: bool, name: &str) -> Result<Cow<'a, str>, PlistError> {
        let mut text = Cow::Borrowed("");
        if empty {
            return Ok(text);
        }
        loop {
            let at = self.xml.position();
            match self.xml.next().map_err(|e| self.xml_error(e))? {
                // Entities, CDATA and comments split text into pieces; join them.
                Some(XmlEvent::Text(piece)) if text.is_empty() => text = piece,
                Some(XmlEvent::Text(piece)) => text.to_mut().push_str(&piece),
                Some(XmlEvent::End { name: n }) if n == name => return Ok(text),
                Some(event) => {
                    return Err(self.unexpected(at, &event, &format!("text or </{name}>")))
                }
                None => return Err(self.error(at, format!("unterminated <{name}>"))),
            }
        }
    }
}

/// Decimal with optional sign; also `0x` hexadecimal, which CFPropertyList accepts.
fn parse_integer(text: &str) -> Option<i64> {
    let t = text.trim();
    let (negative, digits) = match t.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    let magnitude: u64 = match digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))
    {
        Some(hex) => u64::from_str_radix(hex, 16).ok()?,
        None if digits.bytes().all(|b| b.is_ascii_digit()) => digits.parse().ok()?,
        None => return None,
    };
    if negative {
        0i64.checked_sub_unsigned(magnitude)
    } else {
        i64::try_from(magnitude).ok()
    }
}

// ---------------------------------------------------------------------------------------
// Writing

/// A whole document: header, the value at depth 0, footer.
pub(crate) fn write_document(value: &Value, out: &mut String) {
    out.push_str(HEADER);
    write_value(value, 0, out);
    out.push_str(FOOTER);
}

pub(crate) fn indent(depth: usize, out: &mut String) {
    for _ in 0..depth {
        out.push('\t');
    }
}

/// `<key>…</key>` on its own line at `depth`; the value follows at the same depth.
pub(crate) fn write_key(key: &str, depth: usize, out: &mut String) {
    indent(depth, out);
    out.push_str("<key>");
    crate::xml::escape_text_into(key, out);
    out.push_str("</key>\n");
}

/// One value starting on a fresh line at `depth` and ending with `\n`.
pub(crate) fn write_value(value: &Value, depth: usize, out: &mut String) {
    indent(depth, out);
    match value {
        Value::String(s) => {
            out.push_str("<string>");
            crate::xml::escape_text_into(s, out);
            out.push_str("</string>\n");
        }
        Value::Integer(i) => {
            let _ = writeln!(out, "<integer>{i}</integer>");
        }
        Value::Real(r) => {
            out.push_str("<real>");
            write_real(*r, out);
            out.push_str("</real>\n");
        }
        Value::Boolean(true) => out.push_str("<true/>\n"),
        Value::Boolean(false) => out.push_str("<false/>\n"),
        Value::Date(d) => {
            let c = d.to_civil();
            let _ = writeln!(
                out,
                "<date>{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z</date>",
                c.year, c.month, c.day, c.hour, c.minute, c.second
            );
        }
        Value::Data(bytes) => {
            out.push_str("<data>\n");
            write_base64_lines(bytes, depth, out);
            indent(depth, out);
            out.push_str("</data>\n");
        }
        Value::Array(items) if items.is_empty() => out.push_str("<array/>\n"),
        Value::Array(items) => {
            out.push_str("<array>\n");
            for item in items {
                write_value(item, depth + 1, out);
            }
            indent(depth, out);
            out.push_str("</array>\n");
        }
        Value::Dictionary(dict) if dict.is_empty() => out.push_str("<dict/>\n"),
        Value::Dictionary(dict) => {
            out.push_str("<dict>\n");
            for (key, item) in dict {
                write_key(key, depth + 1, out);
                write_value(item, depth + 1, out);
            }
            indent(depth, out);
            out.push_str("</dict>\n");
        }
    }
}

/// Base64 lines as CFPropertyList writes them: the tabs of the indentation count as eight
/// columns against a 76-column line, and the indentation stops growing after eight tabs.
fn write_base64_lines(bytes: &[u8], depth: usize, out: &mut String) {
    let tabs = depth.min(8);
    let chars_per_line = 76 - 8 * tabs;
    for line in bytes.chunks(chars_per_line / 4 * 3) {
        indent(tabs, out);
        BASE64_WRITE.encode_string(line, out);
        out.push('\n');
    }
}

const BASE64_WRITE: GeneralPurpose = base64::engine::general_purpose::STANDARD;

#[cfg(test)]
mod tests {
    use super::*;

    fn xml(value: &Value) -> String {
        let mut out = String::new();
        write_document(value, &mut out);
        out
    }

    fn dict(entries: &[(&str, Value)]) -> Value {
        Value::Dictionary(
            entries
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        )
    }

    #[test]
    fn writes_exactly_what_apple_writes() {
        let value = dict(&[
            ("name", Value::from("a <b> & c")),
            ("percentDone", Value::Real(100.0)),
            ("ratio", Value::Real(12.5)),
            ("count", Value::Integer(-3)),
            ("empty", Value::from("")),
            (
                "flags",
                Value::Array(vec![Value::Boolean(true), Value::Boolean(false)]),
            ),
            (
                "dateNow",
                Value::Date(Date::from_unix_seconds(1_169_742_239)),
            ),
            (
                "nested",
                dict(&[("inner", Value::Array(vec![])), ("none", dict(&[]))]),
            ),
            ("bytes", Value::Data(b"hello".to_vec())),
        ]);
        let expected = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>
<!DOCTYPE plist PUBLIC \"-//Apple//DTD PLIST 1.0//EN\" \"http://www.apple.com/DTDs/PropertyList-1.0.dtd\">
<plist version=\"1.0\">
<dict>
\t<key>bytes</key>
\t<data>
\taGVsbG8=
\t</data>
\t<key>count</key>
\t<integer>-3</integer>
\t<key>dateNow</key>
\t<date>2007-01-25T16:23:59Z</date>
\t<key>empty</key>
\t<string></string>
\t<key>flags</key>
\t<array>
\t\t<true/>
\t\t<false/>
\t</array>
\t<key>name</key>
\t<string>a &lt;b&gt; &amp; c</string>
\t<key>nested</key>
\t<dict>
\t\t<key>inner</key>
\t\t<array/>
\t\t<key>none</key>
\t\t<dict/>
\t</dict>
\t<key>percentDone</key>
\t<real>100</real>
\t<key>ratio</key>
\t<real>12.5</real>
</dict>
</plist>
";
        assert_eq!(xml(&value), expected);
        assert_eq!(read(expected, 0), Ok(value));
    }

    #[test]
    fn data_wraps_like_cfpropertylist() {
        // 60 bytes: 80 base64 characters. At depth 0 a line holds 76 characters (57 bytes);
        // at depth 1 the tab costs 8 columns, leaving 68 characters (51 bytes).
        let bytes: Vec<u8> = (0u8..60).collect();
        let top = xml(&Value::Data(bytes.clone()));
        let expected_top = "<data>\n\
            AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEyMzQ1Njc4\n\
            OTo7\n\
            </data>\n";
        assert!(top.ends_with(&format!("{expected_top}</plist>\n")), "{top}");
        let nested = xml(&Value::Array(vec![Value::Data(bytes)]));
        let expected_nested = "<array>\n\t<data>\n\
            \tAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEy\n\
            \tMzQ1Njc4OTo7\n\
            \t</data>\n</array>\n";
        assert!(
            nested.ends_with(&format!("{expected_nested}</plist>\n")),
            "{nested}"
        );
        // Empty data still gets its own closing line.
        assert!(xml(&Value::Data(vec![])).contains("<data>\n</data>\n"));
    }

    #[test]
    fn data_indentation_stops_at_eight_tabs() {
        let mut value = Value::Data(vec![0xff; 10]);
        for _ in 0..9 {
            value = Value::Array(vec![value]);
        }
        let text = xml(&value);
        // Depth 9: the closing tag has nine tabs, the base64 line eight, and a line holds
        // 76 - 64 = 12 characters (9 bytes).
        let expected = "\t\t\t\t\t\t\t\t\t<data>\n\t\t\t\t\t\t\t\t////////////\n\t\t\t\t\t\t\t\t/w==\n\t\t\t\t\t\t\t\t\t</data>\n";
        assert!(text.contains(expected), "{text}");
    }

    #[test]
    fn no_space_or_carriage_return_between_tags() {
        let value = dict(&[("a", dict(&[("b", Value::Array(vec![Value::Integer(1)]))]))]);
        let text = xml(&value);
        let body = &text[HEADER.len()..];
        for (i, window) in body.as_bytes().windows(2).enumerate() {
            assert!(
                !(window[0] == b'>' && window[1] == b' '),
                "space after a tag at {i}"
            );
        }
        assert!(!text.contains('\r'));
    }

    #[test]
    fn reads_apple_xml() {
        let text = xml(&dict(&[
            ("jobIdentifier", Value::from("27")),
            ("percentDone", Value::Real(12.5)),
            ("data", Value::Data(vec![1, 2, 3])),
        ]));
        let value = read(&text, 0).expect("reads");
        assert_eq!(
            value.as_dictionary().and_then(|d| d.get("jobIdentifier")),
            Some(&Value::from("27"))
        );
        assert_eq!(
            value.as_dictionary().and_then(|d| d.get("data")),
            Some(&Value::Data(vec![1, 2, 3]))
        );
    }

    #[test]
    fn reads_sloppy_xml_from_other_peers() {
        // Spaces and CRLF between tags, no DOCTYPE, wrapped base64, <string/>, entities,
        // CDATA, comments, integers in hex, a bare root without <plist>.
        let text = "<?xml version='1.0'?>\r\n<plist version = '1.0' >\r\n  <dict>\r\n    <key>a&amp;b</key> <string>x &lt; y&#33;</string>\r\n    <key>empty</key><string/>\r\n  <!-- note -->\r\n    <key>bin</key>\r\n    <data>\r\n      AAECAwQF\r\n      BgcI\r\n    </data>\r\n    <key>yes</key><true></true>\r\n    <key>no</key><false/>\r\n    <key>hex</key><integer> 0x1F </integer>\r\n    <key>neg</key><integer>-9223372036854775808</integer>\r\n    <key>r</key><real>1E3</real>\r\n    <key>cdata</key><string><![CDATA[<raw>]]> and more</string>\r\n    <key>d</key><date>2007-01-25T16:23:59Z</date>\r\n    <key>list</key><array> </array>\r\n    <key>k</key><dict></dict>\r\n  </dict>\r\n</plist>\r\n";
        let value = read(text, 0).expect("reads");
        let d = value.as_dictionary().expect("dict");
        assert_eq!(d.get("a&b"), Some(&Value::from("x < y!")));
        assert_eq!(d.get("empty"), Some(&Value::from("")));
        assert_eq!(
            d.get("bin"),
            Some(&Value::Data(vec![0, 1, 2, 3, 4, 5, 6, 7, 8]))
        );
        assert_eq!(d.get("yes"), Some(&Value::Boolean(true)));
        assert_eq!(d.get("no"), Some(&Value::Boolean(false)));
        assert_eq!(d.get("hex"), Some(&Value::Integer(31)));
        assert_eq!(d.get("neg"), Some(&Value::Integer(i64::MIN)));
        assert_eq!(d.get("r"), Some(&Value::Real(1000.0)));
        assert_eq!(d.get("cdata"), Some(&Value::from("<raw> and more")));
        assert_eq!(
            d.get("d"),
            Some(&Value::Date(Date::from_unix_seconds(1_169_742_239)))
        );
        assert_eq!(d.get("list"), Some(&Value::Array(vec![])));
        assert_eq!(d.get("k"), Some(&Value::Dictionary(Dictionary::new())));
        assert_eq!(
            read("<array><integer>1</integer></array>", 0),
            Ok(Value::Array(vec![Value::Integer(1)]))
        );
    }

    fn error_of(text: &str) -> String {
        match read(text, 0) {
            Ok(v) => panic!("{text:?} should fail, read {v:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn each_malformed_input_has_a_clear_error() {
        let cases = [
            (
                "<plist><dict><key>a</key></dict></plist>",
                "expected the value of key `a`, found </dict>",
            ),
            (
                "<plist><dict><string>a</string></dict></plist>",
                "expected <key> or </dict>, found <string>",
            ),
            (
                "<plist><integer>12x</integer></plist>",
                "`12x` is not a 64-bit integer",
            ),
            (
                "<plist><integer>9223372036854775808</integer></plist>",
                "is not a 64-bit integer",
            ),
            (
                "<plist><real>fast</real></plist>",
                "`fast` is not a real number",
            ),
            (
                "<plist><date>yesterday</date></plist>",
                "`yesterday` is not a date",
            ),
            (
                "<plist><data>!!!!</data></plist>",
                "<data> is not valid base64",
            ),
            (
                "<plist><string>a<b/></string></plist>",
                "expected text or </string>, found <b/>",
            ),
            (
                "<plist><string>abc</plist>",
                "expected text or </string>, found </plist>",
            ),
            ("<plist><string>abc", "unterminated <string>"),
            ("<plist><dict>", "unexpected end of document"),
            ("<plist><foo/></plist>", "unknown element <foo>"),
            ("<plist><key>a</key></plist>", "<key> outside a <dict>"),
            ("<plist/>", "the <plist> element is empty"),
            (
                "<plist><true/><true/></plist>",
                "expected </plist> after the root value, found <true/>",
            ),
            (
                "<plist><true/></plist><x/>",
                "unexpected content after the end",
            ),
            (
                "<plist><true>x</true></plist>",
                "expected </true>, found text",
            ),
            (
                "<plist><array>junk</array></plist>",
                "expected a value or </array>, found text",
            ),
            (
                "<plist><string>&bogus;</string></plist>",
                "unknown entity &bogus;",
            ),
            ("<plist><plist/></plist>", "<plist> nested inside"),
        ];
        for (text, message) in cases {
            let err = error_of(text);
            assert!(err.contains(message), "{text}: {err}");
            assert!(err.starts_with("XML property list, byte "), "{err}");
        }
        let deep = "<array>".repeat(MAX_DEPTH + 1);
        assert!(error_of(&deep).contains("nesting deeper than"));
    }

    #[test]
    fn error_offsets_point_at_the_bad_element() {
        let text = "<plist>\n<integer>oops</integer></plist>";
        assert_eq!(
            read(text, 3),
            Err(PlistError::Xml {
                offset: 11,
                message: "`oops` is not a 64-bit integer".into()
            })
        );
    }
}
