//! Old-style (NeXTSTEP/OpenStep) text property lists: the reader for hand-written batch
//! files, and a writer that reproduces Foundation's `description` layout, which the `xgrid`
//! tool prints and which scripts parse by column.
//!
//! Decisions the format leaves open:
//! - The format has no numbers, booleans or dates. The writer prints integers and reals
//!   bare, booleans as `1`/`0` (as an `NSNumber` describes itself) and dates quoted in
//!   Foundation's `2007-01-25 16:23:59 +0000` form; the reader returns every scalar as a
//!   string.
//! - Non-ASCII characters are written as `\UXXXX` escapes, as Foundation's description did
//!   when the `xgrid` tool was current, so the output stays ASCII; the reader takes both
//!   escapes and raw UTF-8.
//! - An octal escape `\ooo` is read as the Latin-1 character with that code, not through
//!   the NeXTSTEP encoding table.

use std::fmt::Write as _;

use super::error::MAX_DEPTH;
use super::{write_real, Dictionary, PlistError, Value};

// ---------------------------------------------------------------------------------------
// Reading

pub(crate) fn read(text: &str) -> Result<Value, PlistError> {
    let mut p = Parser {
        text,
        bytes: text.as_bytes(),
        pos: 0,
    };
    p.skip_blanks()?;
    if p.pos >= p.bytes.len() {
        return Err(PlistError::Empty);
    }
    let value = p.value(0)?;
    p.skip_blanks()?;
    if p.pos >= p.bytes.len() {
        return Ok(value);
    }
    // A "strings file": `key = value;` pairs with no braces around them.
    if let (Value::String(key), Some(b'=')) = (value, p.peek()) {
        p.pos += 1;
        let first = p.value(1)?;
        p.entry_end(&key, None)?;
        let mut dict = Dictionary::new();
        dict.insert(key, first);
        p.entries(&mut dict, None, 0)?;
        return Ok(Value::Dictionary(dict));
    }
    Err(p.error(format!(
        "expected the end of the input, found {}",
        p.found()
    )))
}

struct Parser<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
}

fn is_bare(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'$' | b'+' | b'/' | b':' | b'.' | b'-')
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn error_at(&self, at: usize, message: impl Into<String>) -> PlistError {
        let before = self.text.get(..at).unwrap_or(self.text);
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before[line_start..].chars().count() + 1;
        PlistError::OldStyle {
            line,
            column,
            message: message.into(),
        }
    }

    fn error(&self, message: impl Into<String>) -> PlistError {
        self.error_at(self.pos, message)
    }

    /// How the next character reads in an error message.
    fn found(&self) -> String {
        match self
            .text
            .get(self.pos..)
            .and_then(|rest| rest.chars().next())
        {
            Some(c) => format!("`{}`", c.escape_debug()),
            None => "the end of the input".to_string(),
        }
    }

    /// Skip whitespace and `//` and `/* */` comments.
    fn skip_blanks(&mut self) -> Result<(), PlistError> {
        loop {
            match (self.peek(), self.bytes.get(self.pos + 1)) {
                (Some(b), _) if b.is_ascii_whitespace() => self.pos += 1,
                (Some(b'/'), Some(b'/')) => {
                    let rest = &self.text[self.pos..];
                    self.pos += rest.find('\n').unwrap_or(rest.len());
                }
                (Some(b'/'), Some(b'*')) => match self.text[self.pos + 2..].find("*/") {
                    Some(i) => self.pos += 2 + i + 2,
                    None => return Err(self.error("unterminated /* comment")),
                },
                _ => return Ok(()),
            }
        }
    }

    fn value(&mut self, depth: usize) -> Result<Value, PlistError> {
        if depth > MAX_DEPTH {
            return Err(self.error(format!("nesting deeper than {MAX_DEPTH} levels")));
        }
        self.skip_blanks()?;
        match self.peek() {
            Some(b'{') => {
                let open = self.pos;
                self.pos += 1;
                let mut dict = Dictionary::new();
                self.entries(&mut dict, Some(open), depth)?;
                Ok(Value::Dictionary(dict))
            }
            Some(b'(') => self.array(depth),
            Some(b'<') => self.data(),
            Some(b'"' | b'\'') => self.quoted().map(Value::String),
            Some(b) if is_bare(b) => Ok(Value::String(self.bare().to_string())),
            _ => Err(self.error(format!("expected a value, found {}", self.found()))),
        }
    }

    /// Dictionary entries up to `}` (when `open` says where the `{` was) or the end of input.
    fn entries(
        &mut self,
        dict: &mut Dictionary,
        open: Option<usize>,
        depth: usize,
    ) -> Result<(), PlistError> {
        loop {
            self.skip_blanks()?;
            match (self.peek(), open) {
                (Some(b'}'), Some(_)) => {
                    self.pos += 1;
                    return Ok(());
                }
                (None, None) => return Ok(()),
                (None, Some(open)) => {
                    return Err(self.error_at(open, "unterminated dictionary: expected `}`"))
                }
                _ => {}
            }
            let key = match self.peek() {
                Some(b'"' | b'\'') => self.quoted()?,
                Some(b) if is_bare(b) => self.bare().to_string(),
                _ => {
                    let closer = if open.is_some() { " or `}`" } else { "" };
                    return Err(
                        self.error(format!("expected a key{closer}, found {}", self.found()))
                    );
                }
            };
            self.skip_blanks()?;
            if self.peek() != Some(b'=') {
                return Err(self.error(format!(
                    "expected `=` after key `{key}`, found {}",
                    self.found()
                )));
            }
            self.pos += 1;
            let value = self.value(depth + 1)?;
            self.entry_end(&key, open)?;
            dict.insert(key, value);
        }
    }

    /// The `;` after an entry; it may be left out before the closing `}`.
    fn entry_end(&mut self, key: &str, open: Option<usize>) -> Result<(), PlistError> {
        self.skip_blanks()?;
        match self.peek() {
            Some(b';') => {
                self.pos += 1;
                Ok(())
            }
            Some(b'}') if open.is_some() => Ok(()),
            None => match open {
                None => Ok(()),
                Some(open) => Err(self.error_at(open, "unterminated dictionary: expected `}`")),
            },
            _ => Err(self.error(format!(
                "expected `;` after the value of `{key}`, found {}",
                self.found()
            ))),
        }
    }

    fn array(&mut self, depth: usize) -> Result<Value, PlistError> {
        let open = self.pos;
        self.pos += 1;
        let mut items = Vec::new();
        loop {
            self.skip_blanks()?;
            match self.peek() {
                Some(b')') => {
                    self.pos += 1;
                    return Ok(Value::Array(items));
                }
                None => return Err(self.error_at(open, "unterminated array: expected `)`")),
                _ => {}
            }
            items.push(self.value(depth + 1)?);
            self.skip_blanks()?;
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b')') => {}
                None => return Err(self.error_at(open, "unterminated array: expected `)`")),
                _ => {
                    return Err(self.error(format!(
                        "expected `,` or `)` in array, found {}",
                        self.found()
                    )))
                }
            }
        }
    }

    fn data(&mut self) -> Result<Value, PlistError> {
        let open = self.pos;
        self.pos += 1;
        let mut bytes = Vec::new();
        let mut high: Option<u8> = None;
        loop {
            let Some(b) = self.peek() else {
                return Err(self.error_at(open, "unterminated data: expected `>`"));
            };
            if b == b'>' {
                break;
            }
            if !b.is_ascii_whitespace() {
                let Some(nibble) = char::from(b).to_digit(16) else {
                    return Err(self.error(format!(
                        "expected hex digits or `>` in data, found {}",
                        self.found()
                    )));
                };
                let nibble = nibble as u8;
                match high.take() {
                    Some(h) => bytes.push(h << 4 | nibble),
                    None => high = Some(nibble),
                }
            }
            self.pos += 1;
        }
        if high.is_some() {
            return Err(self.error("data has an odd number of hex digits"));
        }
        self.pos += 1;
        Ok(Value::Data(bytes))
    }

    fn bare(&mut self) -> &'a str {
        let start = self.pos;
        while self.peek().is_some_and(is_bare) {
            self.pos += 1;
        }
        &self.text[start..self.pos]
    }

    fn quoted(&mut self) -> Result<String, PlistError> {
        let open = self.pos;
        let quote = self.bytes[open];
        self.pos += 1;
        // Copy the runs between escapes whole rather than character by character.
        let mut out = String::new();
        let mut run_start = self.pos;
        loop {
            let Some(b) = self.peek() else {
                return Err(self.error_at(open, "unterminated quoted string"));
            };
            if b == quote {
                out.push_str(&self.text[run_start..self.pos]);
                self.pos += 1;
                return Ok(out);
            }
            if b != b'\\' {
                self.pos += 1;
                continue;
            }
            out.push_str(&self.text[run_start..self.pos]);
            self.pos += 1;
            self.escape(&mut out)?;
            run_start = self.pos;
        }
    }

    /// One escape sequence, just after its backslash.
    fn escape(&mut self, out: &mut String) -> Result<(), PlistError> {
        let Some(c) = self.text[self.pos..].chars().next() else {
            return Err(self.error("unterminated quoted string"));
        };
        self.pos += c.len_utf8();
        match c {
            'a' => out.push('\x07'),
            'b' => out.push('\x08'),
            'f' => out.push('\x0C'),
            'n' => out.push('\n'),
            'r' => out.push('\r'),
            't' => out.push('\t'),
            'v' => out.push('\x0B'),
            '0'..='7' => {
                let mut code = c as u32 - '0' as u32;
                for _ in 0..2 {
                    match self.peek() {
                        Some(d @ b'0'..=b'7') => {
                            code = code * 8 + u32::from(d - b'0');
                            self.pos += 1;
                        }
                        _ => break,
                    }
                }
                // At most 0o777, always a valid scalar value.
                out.push(char::from_u32(code).unwrap_or('\u{fffd}'));
            }
            'U' => {
                let unit = self.hex4()?;
                let c = if (0xD800..0xDC00).contains(&unit)
                    && self.text[self.pos..].starts_with("\\U")
                {
                    let save = self.pos;
                    self.pos += 2;
                    let low = self.hex4()?;
                    if (0xDC00..0xE000).contains(&low) {
                        char::from_u32(0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00))
                    } else {
                        self.pos = save;
                        None
                    }
                } else {
                    char::from_u32(unit)
                };
                // A lone surrogate cannot be held in a Rust string.
                out.push(c.unwrap_or('\u{fffd}'));
            }
            other => out.push(other),
        }
        Ok(())
    }

    /// One to four hex digits after `\U`.
    fn hex4(&mut self) -> Result<u32, PlistError> {
        let start = self.pos;
        let mut code = 0;
        while self.pos - start < 4 {
            match self.peek().and_then(|b| char::from(b).to_digit(16)) {
                Some(d) => {
                    code = code * 16 + d;
                    self.pos += 1;
                }
                None => break,
            }
        }
        if self.pos == start {
            return Err(self.error(format!(
                "expected hex digits after \\U, found {}",
                self.found()
            )));
        }
        Ok(code)
    }
}

// ---------------------------------------------------------------------------------------
// Writing

fn indent(level: usize, out: &mut String) {
    for _ in 0..level {
        out.push_str("    ");
    }
}

/// Foundation's layout: a container's description starts with its own indentation, even
/// after `key = ` or at the start of an array element; that is why a nested dictionary reads
/// `jobAttributes =     {`. Empty containers keep their line break: `{\n}`, nested `{\n    }`.
pub(crate) fn write(value: &Value, level: usize, out: &mut String) {
    match value {
        Value::Dictionary(dict) => {
            indent(level, out);
            out.push_str("{\n");
            for (key, item) in dict {
                indent(level + 1, out);
                write_string(key, out);
                out.push_str(" = ");
                write(item, level + 1, out);
                out.push_str(";\n");
            }
            indent(level, out);
            out.push('}');
        }
        Value::Array(items) => {
            indent(level, out);
            out.push_str("(\n");
            for (i, item) in items.iter().enumerate() {
                indent(level + 1, out);
                write(item, level + 1, out);
                out.push_str(if i + 1 < items.len() { ",\n" } else { "\n" });
            }
            indent(level, out);
            out.push(')');
        }
        scalar => write_scalar(scalar, out),
    }
}

/// Everything on one line: `{a = 1; b = (6, 2007); }`, empty containers `{}` and `()`.
pub(crate) fn write_compact(value: &Value, out: &mut String) {
    match value {
        Value::Dictionary(dict) if dict.is_empty() => out.push_str("{}"),
        Value::Dictionary(dict) => {
            out.push('{');
            for (key, item) in dict {
                write_string(key, out);
                out.push_str(" = ");
                write_compact(item, out);
                out.push_str("; ");
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('(');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_compact(item, out);
            }
            out.push(')');
        }
        scalar => write_scalar(scalar, out),
    }
}

fn write_scalar(value: &Value, out: &mut String) {
    match value {
        Value::String(s) => write_string(s, out),
        Value::Integer(i) => {
            let _ = write!(out, "{i}");
        }
        Value::Real(r) => write_real(*r, out),
        Value::Boolean(b) => out.push(if *b { '1' } else { '0' }),
        Value::Date(d) => {
            out.push('"');
            out.push_str(&d.to_description());
            out.push('"');
        }
        Value::Data(bytes) => {
            out.push('<');
            for (i, b) in bytes.iter().enumerate() {
                if i > 0 && i % 4 == 0 {
                    out.push(' ');
                }
                let _ = write!(out, "{b:02x}");
            }
            out.push('>');
        }
        Value::Array(_) | Value::Dictionary(_) => write_compact(value, out),
    }
}

/// Bare when made only of ASCII letters, digits and `_`; quoted and escaped otherwise.
fn write_string(s: &str, out: &mut String) {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        out.push_str(s);
        return;
    }
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\x07' => out.push_str("\\a"),
            '\x08' => out.push_str("\\b"),
            '\x0B' => out.push_str("\\v"),
            '\x0C' => out.push_str("\\f"),
            c if c.is_ascii_control() => {
                let _ = write!(out, "\\{:03o}", c as u32);
            }
            c if c.is_ascii() => out.push(c),
            c => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\U{unit:04x}");
                }
            }
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plist::Date;

    fn dict(entries: &[(&str, Value)]) -> Value {
        Value::Dictionary(
            entries
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        )
    }

    fn text(value: &Value) -> String {
        let mut out = String::new();
        write(value, 0, &mut out);
        out
    }

    #[test]
    fn writes_like_the_xgrid_tool() {
        assert_eq!(
            text(&dict(&[("jobIdentifier", Value::from("27"))])),
            "{\n    jobIdentifier = 27;\n}"
        );
        let attributes = dict(&[(
            "jobAttributes",
            dict(&[
                ("activeCPUPower", Value::from("0")),
                ("applicationIdentifier", Value::from("com.apple.xgrid.cli")),
                (
                    "dateNow",
                    Value::Date(Date::from_unix_seconds(1_169_742_239)),
                ),
                ("name", Value::from("/usr/bin/cal")),
                ("percentDone", Value::Real(100.0)),
            ]),
        )]);
        let expected = "{
    jobAttributes =     {
        activeCPUPower = 0;
        applicationIdentifier = \"com.apple.xgrid.cli\";
        dateNow = \"2007-01-25 16:23:59 +0000\";
        name = \"/usr/bin/cal\";
        percentDone = 100;
    };
}";
        assert_eq!(text(&attributes), expected);
        let list = dict(&[(
            "jobList",
            Value::Array(vec![Value::from("1"), Value::from("27")]),
        )]);
        assert_eq!(
            text(&list),
            "{\n    jobList =     (\n        1,\n        27\n    );\n}"
        );
    }

    fn job_specification() -> Value {
        dict(&[(
            "jobSpecification",
            dict(&[
                ("applicationIdentifier", Value::from("com.apple.xgrid.cli")),
                ("inputFiles", dict(&[])),
                ("name", Value::from("/usr/bin/cal")),
                ("submissionIdentifier", Value::from("abc")),
                (
                    "taskSpecifications",
                    dict(&[(
                        "0",
                        dict(&[
                            (
                                "arguments",
                                Value::Array(vec![Value::from("6"), Value::from("2007")]),
                            ),
                            ("command", Value::from("/usr/bin/cal")),
                        ]),
                    )]),
                ),
            ]),
        )])
    }

    #[test]
    fn writes_the_job_specification_example() {
        let expected = "{
    jobSpecification =     {
        applicationIdentifier = \"com.apple.xgrid.cli\";
        inputFiles =         {
        };
        name = \"/usr/bin/cal\";
        submissionIdentifier = abc;
        taskSpecifications =         {
            0 =             {
                arguments =                 (
                    6,
                    2007
                );
                command = \"/usr/bin/cal\";
            };
        };
    };
}";
        assert_eq!(text(&job_specification()), expected);
        let compact = "{jobSpecification = {applicationIdentifier = \"com.apple.xgrid.cli\"; inputFiles = {}; name = \"/usr/bin/cal\"; submissionIdentifier = abc; taskSpecifications = {0 = {arguments = (6, 2007); command = \"/usr/bin/cal\"; }; }; }; }";
        let mut out = String::new();
        write_compact(&job_specification(), &mut out);
        assert_eq!(out, compact);
        assert_eq!(read(compact), Ok(job_specification()));
        assert_eq!(read(expected), Ok(job_specification()));
    }

    #[test]
    fn writes_scalars_and_empty_containers_like_foundation() {
        assert_eq!(text(&dict(&[])), "{\n}");
        assert_eq!(text(&Value::Array(vec![])), "(\n)");
        assert_eq!(
            text(&Value::Array(vec![
                dict(&[("a", Value::Integer(1))]),
                Value::Array(vec![])
            ])),
            "(\n        {\n        a = 1;\n    },\n        (\n    )\n)"
        );
        let scalars = dict(&[
            ("bool", Value::Boolean(true)),
            ("no", Value::Boolean(false)),
            (
                "data",
                Value::Data(vec![0x0f, 0xbd, 0x77, 0x72, 0x1a, 0x2b, 0x3c, 0x4d, 0x55]),
            ),
            ("empty", Value::from("")),
            ("nodata", Value::Data(vec![])),
            (
                "escapes",
                Value::from("say \"hi\"\\\n\t\u{1}\u{e9}\u{1F600}"),
            ),
            ("neg", Value::Integer(-3)),
            ("ratio", Value::Real(12.5)),
            ("with space", Value::from("a b")),
        ]);
        let expected = "{
    bool = 1;
    data = <0fbd7772 1a2b3c4d 55>;
    empty = \"\";
    escapes = \"say \\\"hi\\\"\\\\\\n\\t\\001\\U00e9\\Ud83d\\Ude00\";
    neg = -3;
    no = 0;
    nodata = <>;
    ratio = 12.5;
    \"with space\" = \"a b\";
}";
        assert_eq!(text(&scalars), expected);
    }

    #[test]
    fn reads_a_hand_written_batch_file() {
        let batch = r#"// A batch file written by hand.
(
    {
        name = "cal job";   /* a quoted string
                               with a comment spanning lines */
        inputFiles = {
            "data/in.bin" = { fileData = <0001 02ff
                                          FE>; isExecutable = NO };
        };
        taskSpecifications = {
            0 = { command = /usr/bin/cal; arguments = (6, 2007, ); };
            1 = { command = '/bin/echo'; arguments = ("tab\there", "quote \" and \\", "\101\U00e9\Ud83d\Ude00", "a\
b") };
        };
        schedulerParameters = { dependsOnJobs = ( ); version = 1.0-beta_$+:x; }
    },
)
"#;
        let value = read(batch).expect("reads");
        let jobs = value.as_array().expect("array");
        assert_eq!(jobs.len(), 1);
        let job = jobs[0].as_dictionary().expect("dict");
        assert_eq!(job.get("name"), Some(&Value::from("cal job")));
        let file = &job["inputFiles"].as_dictionary().expect("dict")["data/in.bin"];
        assert_eq!(
            file.as_dictionary().expect("dict")["fileData"],
            Value::Data(vec![0, 1, 2, 0xff, 0xfe])
        );
        assert_eq!(
            file.as_dictionary().expect("dict")["isExecutable"],
            Value::from("NO")
        );
        let tasks = job["taskSpecifications"].as_dictionary().expect("dict");
        assert_eq!(
            tasks["0"],
            dict(&[
                ("command", Value::from("/usr/bin/cal")),
                (
                    "arguments",
                    Value::Array(vec![Value::from("6"), Value::from("2007")])
                ),
            ])
        );
        let echo = tasks["1"].as_dictionary().expect("dict");
        assert_eq!(echo["command"], Value::from("/bin/echo"));
        assert_eq!(
            echo["arguments"],
            Value::Array(vec![
                Value::from("tab\there"),
                Value::from("quote \" and \\"),
                Value::from("A\u{e9}\u{1F600}"),
                Value::from("a\nb"),
            ])
        );
        let scheduler = job["schedulerParameters"].as_dictionary().expect("dict");
        assert_eq!(scheduler["dependsOnJobs"], Value::Array(vec![]));
        assert_eq!(scheduler["version"], Value::from("1.0-beta_$+:x"));
    }

    #[test]
    fn reads_a_strings_file_and_scalars() {
        let strings = "/* header */ greeting = hello;\n\"two words\" = \"x y\"\n";
        assert_eq!(
            read(strings),
            Ok(dict(&[
                ("greeting", Value::from("hello")),
                ("two words", Value::from("x y"))
            ]))
        );
        assert_eq!(read("  abc  "), Ok(Value::from("abc")));
        assert_eq!(read("\"\""), Ok(Value::from("")));
        assert_eq!(
            read("\"\\a\\b\\f\\v\\r\\q\""),
            Ok(Value::from("\x07\x08\x0C\x0B\rq"))
        );
        assert_eq!(read("\"\\Ud800x\""), Ok(Value::from("\u{fffd}x")));
        assert_eq!(read("// only a comment"), Err(PlistError::Empty));
    }

    fn error_of(text: &str) -> PlistError {
        match read(text) {
            Ok(v) => panic!("{text:?} should fail, read {v:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn each_malformed_input_has_a_clear_error() {
        let cases = [
            ("{ a = 1", 1, 1, "unterminated dictionary: expected `}`"),
            ("{ a 1; }", 1, 5, "expected `=` after key `a`, found `1`"),
            (
                "{\n  a = 1\n  b = 2;\n}",
                3,
                3,
                "expected `;` after the value of `a`, found `b`",
            ),
            ("{ = 1; }", 1, 3, "expected a key or `}`, found `=`"),
            ("(1, 2", 1, 1, "unterminated array: expected `)`"),
            ("(1 2)", 1, 4, "expected `,` or `)` in array, found `2`"),
            ("(1, ;)", 1, 5, "expected a value, found `;`"),
            (
                "<0fz>",
                1,
                4,
                "expected hex digits or `>` in data, found `z`",
            ),
            ("<0f1>", 1, 5, "data has an odd number of hex digits"),
            ("<0f", 1, 1, "unterminated data: expected `>`"),
            ("\"abc", 1, 1, "unterminated quoted string"),
            (
                "\"\\Uxyz\"",
                1,
                4,
                "expected hex digits after \\U, found `x`",
            ),
            ("/* never closed", 1, 1, "unterminated /* comment"),
            ("{} {}", 1, 4, "expected the end of the input, found `{`"),
            (
                "a = b; c",
                1,
                9,
                "expected `=` after key `c`, found the end of the input",
            ),
            ("x = ;", 1, 5, "expected a value, found `;`"),
            ("{ a = \u{e9}; }", 1, 7, "expected a value, found `\u{e9}`"),
        ];
        for (text, line, column, message) in cases {
            assert_eq!(
                error_of(text),
                PlistError::OldStyle {
                    line,
                    column,
                    message: message.into()
                },
                "{text:?}"
            );
        }
        let shown = error_of("(1 2)").to_string();
        assert_eq!(
            shown,
            "old-style property list, line 1 column 4: expected `,` or `)` in array, found `2`"
        );
        let deep = "(".repeat(MAX_DEPTH + 2);
        assert!(error_of(&deep).to_string().contains("nesting deeper than"));
    }
}
