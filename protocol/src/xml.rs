//! A small XML pull tokenizer and escaper: enough XML for BEEP's channel-0 messages and for
//! XML property lists, with no external parser. It checks what those formats need (tag syntax,
//! attribute quoting, entities) and leaves element nesting to the caller, which knows the
//! grammar it expects.

use std::borrow::Cow;

/// What went wrong while reading XML, with the byte offset where it was noticed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed XML at byte {offset}: {message}")]
pub struct XmlError {
    pub offset: usize,
    pub message: String,
}

/// One piece of an XML document.
#[derive(Debug, Clone, PartialEq)]
pub enum XmlEvent<'a> {
    /// `<name attr='v'>` or, with `empty`, `<name/>`.
    Start {
        name: &'a str,
        attributes: Attributes<'a>,
        empty: bool,
    },
    /// `</name>`
    End { name: &'a str },
    /// Character data between tags, entities decoded (CDATA sections arrive as text too).
    Text(Cow<'a, str>),
}

/// The raw attribute text of a start tag, parsed on demand: most tags we read have none, so
/// nothing is allocated for them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attributes<'a> {
    raw: &'a str,
    offset: usize,
}

impl<'a> Attributes<'a> {
    /// Every `name='value'` pair in order.
    pub fn iter(&self) -> AttributeIter<'a> {
        AttributeIter {
            raw: self.raw,
            pos: 0,
            offset: self.offset,
        }
    }

    /// The value of attribute `name`, if present.
    pub fn get(&self, name: &str) -> Result<Option<Cow<'a, str>>, XmlError> {
        for pair in self.iter() {
            let (n, v) = pair?;
            if n == name {
                return Ok(Some(v));
            }
        }
        Ok(None)
    }

    pub fn is_empty(&self) -> bool {
        self.raw.trim().is_empty()
    }
}

/// Iterator over a tag's attributes; yields an error for a malformed pair.
#[derive(Debug)]
pub struct AttributeIter<'a> {
    raw: &'a str,
    pos: usize,
    offset: usize,
}

impl<'a> Iterator for AttributeIter<'a> {
    type Item = Result<(&'a str, Cow<'a, str>), XmlError>;

    fn next(&mut self) -> Option<Self::Item> {
        let bytes = self.raw.as_bytes();
        while self.pos < bytes.len() && is_space(bytes[self.pos]) {
            self.pos += 1;
        }
        if self.pos >= bytes.len() {
            return None;
        }
        let err = |pos: usize, message: &str| {
            Some(Err(XmlError {
                offset: self.offset + pos,
                message: message.to_string(),
            }))
        };
        let start = self.pos;
        while self.pos < bytes.len() && is_name_byte(bytes[self.pos]) {
            self.pos += 1;
        }
        if self.pos == start {
            self.pos = bytes.len();
            return err(start, "expected an attribute name");
        }
        let name = &self.raw[start..self.pos];
        while self.pos < bytes.len() && is_space(bytes[self.pos]) {
            self.pos += 1;
        }
        if bytes.get(self.pos) != Some(&b'=') {
            self.pos = bytes.len();
            return err(start, "attribute without '='");
        }
        self.pos += 1;
        while self.pos < bytes.len() && is_space(bytes[self.pos]) {
            self.pos += 1;
        }
        let quote = match bytes.get(self.pos) {
            Some(&q @ (b'\'' | b'"')) => q,
            _ => {
                self.pos = bytes.len();
                return err(start, "attribute value must be quoted");
            }
        };
        let value_start = self.pos + 1;
        let Some(len) = bytes[value_start..].iter().position(|&b| b == quote) else {
            self.pos = bytes.len();
            return err(start, "unterminated attribute value");
        };
        self.pos = value_start + len + 1;
        Some(
            unescape(
                &self.raw[value_start..value_start + len],
                self.offset + value_start,
            )
            .map(|v| (name, v)),
        )
    }
}

/// Pull reader over a complete document held in memory.
#[derive(Debug)]
pub struct XmlReader<'a> {
    input: &'a str,
    pos: usize,
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':') || b >= 0x80
}

impl<'a> XmlReader<'a> {
    pub fn new(input: &'a str) -> Self {
        XmlReader { input, pos: 0 }
    }

    /// Byte offset of the next unread character.
    pub fn position(&self) -> usize {
        self.pos
    }

    fn error(&self, offset: usize, message: impl Into<String>) -> XmlError {
        XmlError {
            offset,
            message: message.into(),
        }
    }

    fn skip_past(&mut self, from: usize, terminator: &str, what: &str) -> Result<(), XmlError> {
        match self.input[from..].find(terminator) {
            Some(i) => {
                self.pos = from + i + terminator.len();
                Ok(())
            }
            None => Err(self.error(from, format!("unterminated {what}"))),
        }
    }

    /// The next event, skipping the XML declaration, processing instructions, comments and
    /// the DOCTYPE. `Ok(None)` at the end of input.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<Option<XmlEvent<'a>>, XmlError> {
        loop {
            let rest = &self.input[self.pos..];
            if rest.is_empty() {
                return Ok(None);
            }
            let start = self.pos;
            if !rest.starts_with('<') {
                let len = rest.find('<').unwrap_or(rest.len());
                self.pos += len;
                return Ok(Some(XmlEvent::Text(unescape(&rest[..len], start)?)));
            }
            if rest.starts_with("<?") {
                self.skip_past(start, "?>", "processing instruction")?;
            } else if rest.starts_with("<!--") {
                self.skip_past(start + 4, "-->", "comment")?;
            } else if let Some(cdata) = rest.strip_prefix("<![CDATA[") {
                let Some(end) = cdata.find("]]>") else {
                    return Err(self.error(start, "unterminated CDATA section"));
                };
                self.pos = start + 9 + end + 3;
                return Ok(Some(XmlEvent::Text(Cow::Borrowed(&cdata[..end]))));
            } else if rest.starts_with("<!") {
                self.skip_doctype(start)?;
            } else if let Some(close) = rest.strip_prefix("</") {
                let Some(end) = close.find('>') else {
                    return Err(self.error(start, "unterminated end tag"));
                };
                let name = close[..end].trim_end_matches(|c: char| c.is_ascii_whitespace());
                if name.is_empty() || !name.bytes().all(is_name_byte) {
                    return Err(self.error(start, "bad end tag name"));
                }
                self.pos = start + 2 + end + 1;
                return Ok(Some(XmlEvent::End { name }));
            } else {
                return self.start_tag(start).map(Some);
            }
        }
    }

    fn skip_doctype(&mut self, start: usize) -> Result<(), XmlError> {
        // A DOCTYPE may hold an internal subset in brackets, which may contain '>'.
        let bytes = self.input.as_bytes();
        let mut i = start + 2;
        let mut depth = 0usize;
        while i < bytes.len() {
            match bytes[i] {
                b'[' => depth += 1,
                b']' => depth = depth.saturating_sub(1),
                b'>' if depth == 0 => {
                    self.pos = i + 1;
                    return Ok(());
                }
                _ => {}
            }
            i += 1;
        }
        Err(self.error(start, "unterminated declaration"))
    }

    fn start_tag(&mut self, start: usize) -> Result<XmlEvent<'a>, XmlError> {
        let bytes = self.input.as_bytes();
        let name_start = start + 1;
        let mut i = name_start;
        while i < bytes.len() && is_name_byte(bytes[i]) {
            i += 1;
        }
        if i == name_start {
            return Err(self.error(start, "expected a tag name after '<'"));
        }
        let name = &self.input[name_start..i];
        let attr_start = i;
        // Find the closing '>' outside quoted attribute values.
        let mut quote: Option<u8> = None;
        while i < bytes.len() {
            let b = bytes[i];
            match quote {
                Some(q) if b == q => quote = None,
                Some(_) => {}
                None if b == b'\'' || b == b'"' => quote = Some(b),
                None if b == b'>' => break,
                None if b == b'<' => return Err(self.error(i, "'<' inside a tag")),
                None => {}
            }
            i += 1;
        }
        if i >= bytes.len() {
            return Err(self.error(start, format!("unterminated <{name}> tag")));
        }
        let empty = i > attr_start && bytes[i - 1] == b'/';
        let attr_end = if empty { i - 1 } else { i };
        let raw = &self.input[attr_start..attr_end];
        if !raw.is_empty() && !is_space(raw.as_bytes()[0]) {
            return Err(self.error(attr_start, format!("bad character in <{name}> tag")));
        }
        self.pos = i + 1;
        let attributes = Attributes {
            raw,
            offset: attr_start,
        };
        for pair in attributes.iter() {
            pair?;
        }
        Ok(XmlEvent::Start {
            name,
            attributes,
            empty,
        })
    }

    /// Skip whitespace-only text and return the next event; error at end of input.
    pub fn next_significant(&mut self) -> Result<XmlEvent<'a>, XmlError> {
        loop {
            match self.next()? {
                Some(XmlEvent::Text(t)) if t.bytes().all(is_space) => continue,
                Some(event) => return Ok(event),
                None => return Err(self.error(self.pos, "unexpected end of document")),
            }
        }
    }

    /// True when only whitespace, comments and processing instructions remain.
    pub fn at_end(&mut self) -> Result<bool, XmlError> {
        loop {
            match self.next()? {
                Some(XmlEvent::Text(t)) if t.bytes().all(is_space) => continue,
                Some(_) => return Ok(false),
                None => return Ok(true),
            }
        }
    }
}

/// Decode the five predefined entities and numeric character references.
pub fn unescape(text: &str, offset: usize) -> Result<Cow<'_, str>, XmlError> {
    if !text.contains('&') {
        return Ok(Cow::Borrowed(text));
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let after = &rest[amp + 1..];
        let Some(semi) = after.find(';') else {
            return Err(XmlError {
                offset,
                message: "'&' without a closing ';'".into(),
            });
        };
        let entity = &after[..semi];
        let ch = match entity {
            "lt" => '<',
            "gt" => '>',
            "amp" => '&',
            "quot" => '"',
            "apos" => '\'',
            _ => {
                let code = if let Some(hex) = entity
                    .strip_prefix("#x")
                    .or_else(|| entity.strip_prefix("#X"))
                {
                    u32::from_str_radix(hex, 16).ok()
                } else if let Some(dec) = entity.strip_prefix('#') {
                    dec.parse().ok()
                } else {
                    None
                };
                code.and_then(char::from_u32).ok_or_else(|| XmlError {
                    offset,
                    message: format!("unknown entity &{entity};"),
                })?
            }
        };
        out.push(ch);
        rest = &after[semi + 1..];
    }
    out.push_str(rest);
    Ok(Cow::Owned(out))
}

/// Append `text` escaped for element content (`&`, `<`, `>`).
pub fn escape_text_into(text: &str, out: &mut String) {
    escape_into(text, out, false);
}

/// Append `text` escaped for a quoted attribute value (also both quote characters).
pub fn escape_attribute_into(text: &str, out: &mut String) {
    escape_into(text, out, true);
}

fn escape_into(text: &str, out: &mut String, attribute: bool) {
    let mut last = 0;
    for (i, b) in text.bytes().enumerate() {
        let rep = match b {
            b'&' => "&amp;",
            b'<' => "&lt;",
            b'>' => "&gt;",
            b'"' if attribute => "&quot;",
            b'\'' if attribute => "&apos;",
            _ => continue,
        };
        out.push_str(&text[last..i]);
        out.push_str(rep);
        last = i + 1;
    }
    out.push_str(&text[last..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(doc: &str) -> Result<Vec<XmlEvent<'_>>, XmlError> {
        let mut r = XmlReader::new(doc);
        let mut v = Vec::new();
        while let Some(e) = r.next()? {
            v.push(e);
        }
        Ok(v)
    }

    #[test]
    fn reads_tags_attributes_and_text() {
        let doc = "<?xml version='1.0'?><!DOCTYPE x [<!ENTITY a 'b'>]><!-- c --><start number='1'><profile uri=\"a&amp;b\"/>t&lt;x</start>";
        let ev = events(doc).expect("parses");
        assert_eq!(ev.len(), 4);
        let XmlEvent::Start {
            name,
            attributes,
            empty,
        } = &ev[0]
        else {
            panic!("{ev:?}")
        };
        assert_eq!((*name, *empty), ("start", false));
        assert_eq!(attributes.get("number").expect("ok").as_deref(), Some("1"));
        let XmlEvent::Start {
            attributes,
            empty: true,
            ..
        } = &ev[1]
        else {
            panic!("{ev:?}")
        };
        assert_eq!(attributes.get("uri").expect("ok").as_deref(), Some("a&b"));
        assert_eq!(ev[2], XmlEvent::Text(Cow::Owned("t<x".into())));
        assert_eq!(ev[3], XmlEvent::End { name: "start" });
    }

    #[test]
    fn cdata_and_numeric_entities() {
        let ev = events("<a><![CDATA[<raw>]]>&#65;&#x42;</a>").expect("parses");
        assert_eq!(ev[1], XmlEvent::Text(Cow::Borrowed("<raw>")));
        assert_eq!(ev[2], XmlEvent::Text(Cow::Owned("AB".into())));
    }

    #[test]
    fn malformed_inputs_are_errors() {
        for doc in [
            "<a",
            "<a b>",
            "<a b=c>",
            "<a b='c>",
            "<>",
            "</>",
            "<a>&bogus;</a>",
            "<!-- x",
            "<a>&amp</a>",
        ] {
            assert!(events(doc).is_err(), "{doc} should fail");
        }
    }

    #[test]
    fn escaping_round_trips() {
        let mut s = String::new();
        escape_attribute_into("a<b>&'\"", &mut s);
        assert_eq!(s, "a&lt;b&gt;&amp;&apos;&quot;");
        assert_eq!(unescape(&s, 0).expect("ok"), "a<b>&'\"");
    }
}
