//! Task-control blocks: a task talks to the grid by printing a property list between
//! `<xgrid>` and `</xgrid>` on standard output (xgrid-wire.md §4.2 `taskControl`). This
//! filter takes stdout as it arrives, in pieces of any size, and separates those blocks from
//! the ordinary output.
//!
//! Decisions: blocks are removed from the stdout data given to the controller (Apple's agent
//! is believed to strip them), and so is one line feed right after `</xgrid>`, so a task that
//! prints one control block per line leaves no blank lines behind. Text that opens a block
//! but never closes it (or grows past [`MAX_BLOCK`]) was not a control block: it is given
//! back as ordinary output.

use xgrid_protocol::plist::{self, Value};

const OPEN: &[u8] = b"<xgrid>";
const CLOSE: &[u8] = b"</xgrid>";

/// A control block longer than this is taken for ordinary output, so a task that prints
/// `<xgrid>` and then megabytes of data cannot make the agent buffer it all.
pub const MAX_BLOCK: usize = 1 << 20;

/// A control block whose contents are not a property list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MalformedControl {
    /// The text between the tags (invalid UTF-8 replaced).
    pub text: String,
    /// Why it could not be read as a property list.
    pub error: String,
}

/// What one piece of stdout turned into.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct Filtered {
    pub data: Vec<u8>,
    pub controls: Vec<Value>,
    pub malformed: Vec<MalformedControl>,
}

/// The state carried between pieces of stdout.
#[derive(Debug, Default)]
pub(crate) struct ControlFilter {
    /// Outside a block: a tail that may be the start of `<xgrid>`. Inside: the block so far.
    held: Vec<u8>,
    in_block: bool,
    /// A block just closed; a line feed that follows it belongs to it.
    eat_newline: bool,
}

impl ControlFilter {
    pub fn feed(&mut self, chunk: &[u8], out: &mut Filtered) {
        let mut buf = std::mem::take(&mut self.held);
        buf.extend_from_slice(chunk);
        let mut rest: &[u8] = &buf;
        loop {
            if self.eat_newline && !rest.is_empty() {
                self.eat_newline = false;
                if let Some(after) = rest.strip_prefix(b"\n") {
                    rest = after;
                }
            }
            if self.in_block {
                match find(rest, CLOSE) {
                    Some(end) => {
                        let (block, after) = rest.split_at(end);
                        take_block(block, out);
                        rest = after.get(CLOSE.len()..).unwrap_or_default();
                        self.in_block = false;
                        self.eat_newline = true;
                    }
                    None if rest.len() > MAX_BLOCK => {
                        out.data.extend_from_slice(OPEN);
                        out.data.extend_from_slice(rest);
                        self.in_block = false;
                        return;
                    }
                    None => {
                        self.held = rest.to_vec();
                        return;
                    }
                }
            } else {
                match find(rest, OPEN) {
                    Some(start) => {
                        let (before, after) = rest.split_at(start);
                        out.data.extend_from_slice(before);
                        rest = after.get(OPEN.len()..).unwrap_or_default();
                        self.in_block = true;
                    }
                    None => {
                        let keep = partial_open_len(rest);
                        let (data, tail) = rest.split_at(rest.len() - keep);
                        out.data.extend_from_slice(data);
                        self.held = tail.to_vec();
                        return;
                    }
                }
            }
        }
    }

    /// The stream has ended: whatever was held back is ordinary output after all.
    pub fn finish(&mut self, out: &mut Filtered) {
        if self.in_block {
            out.data.extend_from_slice(OPEN);
        }
        out.data.append(&mut self.held);
        self.in_block = false;
        self.eat_newline = false;
    }
}

fn take_block(block: &[u8], out: &mut Filtered) {
    match plist::parse(block) {
        Ok(value) => out.controls.push(value),
        Err(error) => out.malformed.push(MalformedControl {
            text: String::from_utf8_lossy(block).into_owned(),
            error: error.to_string(),
        }),
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// How many bytes at the end of `data` could be the beginning of `<xgrid>`.
fn partial_open_len(data: &[u8]) -> usize {
    (1..OPEN.len())
        .rev()
        .find(|&k| OPEN.get(..k).is_some_and(|prefix| data.ends_with(prefix)))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use xgrid_protocol::plist::Dictionary;

    fn run(pieces: &[&[u8]]) -> Filtered {
        let mut filter = ControlFilter::default();
        let mut out = Filtered::default();
        for piece in pieces {
            filter.feed(piece, &mut out);
        }
        filter.finish(&mut out);
        out
    }

    fn status_update(percent: f64) -> Value {
        let mut d = Dictionary::new();
        d.insert("control".into(), Value::String("statusUpdate".into()));
        d.insert("percentDone".into(), Value::String(format!("{percent}")));
        Value::Dictionary(d)
    }

    const SAMPLE: &[u8] = b"before\n<xgrid>{control = statusUpdate; percentDone = 40; }</xgrid>\n\
middle <xgrid>{control = statusUpdate; percentDone = 80; }</xgrid>after\n";

    #[test]
    fn blocks_are_extracted_and_stripped() {
        let out = run(&[SAMPLE]);
        assert_eq!(out.data, b"before\nmiddle after\n");
        assert_eq!(out.controls, vec![status_update(40.0), status_update(80.0)]);
        assert!(out.malformed.is_empty());
    }

    #[test]
    fn any_two_or_three_way_split_gives_the_same_result() {
        let whole = run(&[SAMPLE]);
        for i in 0..=SAMPLE.len() {
            let (a, b) = SAMPLE.split_at(i);
            assert_eq!(run(&[a, b]), whole, "split at {i}");
            for j in i..=SAMPLE.len() {
                let (b, c) = SAMPLE.split_at(j);
                let a = &SAMPLE[..i];
                let b = &b[i..];
                assert_eq!(run(&[a, b, c]), whole, "split at {i} and {j}");
            }
        }
    }

    #[test]
    fn text_that_only_looks_like_a_tag_start_is_kept() {
        let out = run(&[b"a <xg", b"rit> b <", b"", b"x"]);
        assert_eq!(out.data, b"a <xgrit> b <x");
        assert!(out.controls.is_empty());
        // The held-back tail comes out when the stream ends.
        assert_eq!(run(&[b"tail <xgri"]).data, b"tail <xgri");
    }

    #[test]
    fn unterminated_block_is_ordinary_output() {
        let out = run(&[b"x <xgrid>{control = ", b"statusUpdate;"]);
        assert_eq!(out.data, b"x <xgrid>{control = statusUpdate;");
        assert!(out.controls.is_empty());
    }

    #[test]
    fn oversized_block_is_given_back() {
        let mut big = b"<xgrid>".to_vec();
        big.extend(std::iter::repeat_n(b'a', MAX_BLOCK + 1));
        let mut filter = ControlFilter::default();
        let mut out = Filtered::default();
        filter.feed(&big, &mut out);
        assert_eq!(out.data, big);
        filter.feed(b"</xgrid>", &mut out);
        assert!(out.controls.is_empty());
    }

    #[test]
    fn malformed_block_is_reported_and_stripped() {
        let out = run(&[b"1<xgrid>{control = ;</xgrid>2"]);
        assert_eq!(out.data, b"12");
        assert!(out.controls.is_empty());
        assert_eq!(out.malformed.len(), 1);
        assert_eq!(out.malformed[0].text, "{control = ;");
        assert!(!out.malformed[0].error.is_empty());
    }

    #[test]
    fn xml_block() {
        let xml = b"<xgrid><?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<plist version=\"1.0\"><dict>\
<key>control</key><string>statusUpdate</string><key>percentDone</key><real>25</real></dict></plist></xgrid>";
        let out = run(&[xml]);
        assert!(out.data.is_empty());
        let mut d = Dictionary::new();
        d.insert("control".into(), Value::String("statusUpdate".into()));
        d.insert("percentDone".into(), Value::Real(25.0));
        assert_eq!(out.controls, vec![Value::Dictionary(d)]);
    }

    #[test]
    fn only_one_line_feed_after_a_block_is_eaten() {
        assert_eq!(run(&[b"<xgrid>a</xgrid>", b"\n\nz"]).data, b"\nz");
        assert_eq!(run(&[b"<xgrid>a</xgrid>x\n"]).data, b"x\n");
    }
}
