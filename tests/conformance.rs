//! Conformance against Apple's behaviour: plays byte-level transcripts of Apple client and
//! agent sessions (tests/transcripts/*.txt) against the real `xgridcontrollerd` over raw TCP.
//!
//! Nothing here uses the project's protocol crate: the bytes sent are written by hand in the
//! transcripts, and what comes back is read by the small frame and plist readers below, so a
//! misunderstanding shared by the controller and the protocol crate cannot hide.
//!
//! Transcript language (one step per line; `#` starts a comment line):
//! - `controller [client-password=PW] [agent-password=PW]`: first line; how to start the
//!   controller (on a free loopback port, with a fresh data directory).
//! - `set VAR = VALUE`: a variable for `{VAR}` placeholders.
//! - `send TYPE CH MSGNO MORE SEQNO SIZE`, then payload lines, then `end`: one frame. Payload
//!   lines lose their indentation and line end; `\r`, `\n`, `\t`, `\\` are escapes. `{size}`,
//!   `{seq}` (our next seqno on the channel), `{ackno}` and `{VAR}` are filled in (`\{` is a
//!   literal brace); so are `{twr-answer}` / `{twr-wrong-answer}` (step 3 of two-way-random
//!   from `user`, `password`, `rc` and the captured `rs`; the wrong one uses a wrong password).
//! - `send SEQ CH {ackno} WINDOW`: a SEQ frame (no payload).
//! - `window CH N`: grant the controller N octets on channel CH from now on (sends a SEQ).
//! - `expect TYPE CH MSGNO` (MSGNO may be `*`), then indented checks: the next whole message.
//! - `await TYPE CH MSGNO`, then checks: like `expect`, passing over messages on the channel
//!   that fail the checks (notifications whose number the controller decides).
//! - `unordered` … `end`: several `expect`s whose messages may come in any order.
//! - `quiet MS`: no message may arrive within MS milliseconds.
//! - `reconnect`: a new TCP connection to the same controller (variables are kept).
//!
//! Checks: `empty` (no body: no octets, or only `\r\n`), `has TEXT`, `starts TEXT`,
//! `attr NAME = VALUE`, `profiles URI[?]…` (the `uri` attributes in order; `?` marks one that
//! may be absent), `blob-rs` (step 2 of two-way-random: captures `rs`), `twr-verify` (step 4:
//! checks the controller's digest),
//! `plist PATH = VALUE`, `plist PATH != VALUE`, `plist PATH exists|absent|nonempty`,
//! `plist PATH is KIND`, `plist PATH bytes TEXT` (a `<data>` holding TEXT), `capture VAR PATH`.
//! PATH is dotted from the envelope dictionary (`payload.controllerList.0.role`).
//!
//! Checked on every frame without being asked: header syntax, `END\r\n` trailer, payload size,
//! the controller's seqno continuity, its SEQs acknowledging no more than we sent, and that it
//! never sends past the window we granted.
//! Checked on every Xgrid message from the controller: no MIME headers (`\r\n` then the plist),
//! only tabs and `\n` between XML tags, the DOCTYPE line ends with a bare `\n`. Every MSG the
//! controller sends on an Xgrid channel is answered at once with an empty RPY, as Apple peers do.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use hmac::{Hmac, Mac};
use md5::Md5;

use xgrid_grid_tests::{binary, scratch_dir};

// ---------------------------------------------------------------------------------------------
// Frames

/// One BEEP frame as it came off the wire.
#[derive(Debug, Clone)]
struct Frame {
    kind: String,
    channel: u32,
    msgno: u32,
    more: bool,
    payload: Vec<u8>,
}

/// One whole message (frames joined until `more = .`).
#[derive(Debug, Clone)]
struct Message {
    kind: String,
    channel: u32,
    msgno: u32,
    payload: Vec<u8>,
}

/// A parsed Xgrid plist value; scalars keep their element name and text.
#[derive(Debug, Clone)]
enum PValue {
    Dict(Vec<(String, PValue)>),
    Array(Vec<PValue>),
    Scalar(&'static str, String),
}

// ---------------------------------------------------------------------------------------------
// The plist reader: only XML plists, only what the controller may send.

struct PlistReader<'a> {
    text: &'a str,
    pos: usize,
}

const LEAVES: [&str; 6] = ["string", "key", "integer", "real", "date", "data"];

impl<'a> PlistReader<'a> {
    /// Whitespace between tags: only tabs and `\n` (a space or `\r` breaks a known peer).
    fn skip_whitespace(&mut self) -> Result<(), String> {
        let rest = &self.text[self.pos..];
        let len = rest.len() - rest.trim_start().len();
        if let Some(bad) = rest[..len].chars().find(|c| *c != '\t' && *c != '\n') {
            return Err(format!(
                "{bad:?} between XML tags at offset {} (only tabs and \\n are allowed)",
                self.pos
            ));
        }
        self.pos += len;
        Ok(())
    }

    fn tag(&mut self) -> Result<String, String> {
        self.skip_whitespace()?;
        let rest = &self.text[self.pos..];
        if !rest.starts_with('<') {
            return Err(format!(
                "expected a tag at offset {}: {:.40?}",
                self.pos, rest
            ));
        }
        let end = rest.find('>').ok_or("unterminated tag")?;
        self.pos += end + 1;
        Ok(rest[1..end].to_string())
    }

    fn document(text: &'a str) -> Result<PValue, String> {
        let mut reader = PlistReader { text, pos: 0 };
        let declaration = reader.tag()?;
        if !declaration.starts_with("?xml") {
            return Err(format!("no XML declaration: <{declaration}>"));
        }
        let doctype_at = reader.pos;
        let doctype = reader.tag()?;
        if !doctype.starts_with("!DOCTYPE") {
            return Err(format!("no DOCTYPE: <{doctype}>"));
        }
        let after = &text[reader.pos..];
        if !after.starts_with('\n') {
            return Err(format!(
                "the DOCTYPE line (offset {doctype_at}) must end with a bare \\n, found {:.4?}",
                after
            ));
        }
        let plist = reader.tag()?;
        if !plist.starts_with("plist") {
            return Err(format!("expected <plist>, found <{plist}>"));
        }
        let open = reader.tag()?;
        let value = reader.value(&open)?;
        let close = reader.tag()?;
        if close != "/plist" {
            return Err(format!("expected </plist>, found <{close}>"));
        }
        reader.skip_whitespace()?;
        Ok(value)
    }

    fn value(&mut self, open: &str) -> Result<PValue, String> {
        match open {
            "dict/" => Ok(PValue::Dict(Vec::new())),
            "array/" => Ok(PValue::Array(Vec::new())),
            "true/" => Ok(PValue::Scalar("true", String::new())),
            "false/" => Ok(PValue::Scalar("false", String::new())),
            "string/" => Ok(PValue::Scalar("string", String::new())),
            "dict" => {
                let mut entries = Vec::new();
                loop {
                    let tag = self.tag()?;
                    if tag == "/dict" {
                        return Ok(PValue::Dict(entries));
                    }
                    let PValue::Scalar("key", key) = self.value(&tag)? else {
                        return Err(format!("expected <key> in a dict, found <{tag}>"));
                    };
                    let open = self.tag()?;
                    entries.push((key, self.value(&open)?));
                }
            }
            "array" => {
                let mut items = Vec::new();
                loop {
                    let tag = self.tag()?;
                    if tag == "/array" {
                        return Ok(PValue::Array(items));
                    }
                    items.push(self.value(&tag)?);
                }
            }
            leaf => {
                let kind = LEAVES
                    .iter()
                    .find(|k| **k == leaf)
                    .ok_or_else(|| format!("unknown plist element <{leaf}>"))?;
                let rest = &self.text[self.pos..];
                let close = format!("</{kind}>");
                let end = rest.find(&close).ok_or(format!("no {close}"))?;
                self.pos += end + close.len();
                Ok(PValue::Scalar(kind, unescape_xml(&rest[..end])))
            }
        }
    }
}

fn unescape_xml(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let Some(semi) = rest[amp..].find(';') else {
            out.push_str(&rest[amp..]);
            return out;
        };
        let entity = &rest[amp + 1..amp + semi];
        let decoded = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ => entity
                .strip_prefix("#x")
                .and_then(|h| u32::from_str_radix(h, 16).ok())
                .or_else(|| entity.strip_prefix('#').and_then(|d| d.parse().ok()))
                .and_then(char::from_u32),
        };
        match decoded {
            Some(c) => out.push(c),
            None => out.push_str(&rest[amp..=amp + semi]),
        }
        rest = &rest[amp + semi + 1..];
    }
    out.push_str(rest);
    out
}

fn lookup<'v>(value: &'v PValue, path: &str) -> Option<&'v PValue> {
    path.split('.').try_fold(value, |v, segment| match v {
        PValue::Dict(entries) => entries.iter().find(|(k, _)| k == segment).map(|(_, v)| v),
        PValue::Array(items) => segment.parse::<usize>().ok().and_then(|i| items.get(i)),
        PValue::Scalar(..) => None,
    })
}

fn render(value: &PValue) -> String {
    match value {
        PValue::Dict(entries) if entries.is_empty() => "{}".into(),
        PValue::Array(items) if items.is_empty() => "()".into(),
        PValue::Scalar(_, text) => text.clone(),
        other => format!("{other:?}"),
    }
}

fn kind_of(value: &PValue) -> &'static str {
    match value {
        PValue::Dict(_) => "dict",
        PValue::Array(_) => "array",
        PValue::Scalar(kind, _) => kind,
    }
}

// ---------------------------------------------------------------------------------------------
// Transcripts

#[derive(Debug)]
enum Step {
    Set(String, String),
    Send {
        header: String,
        payload: Option<String>,
    },
    Window(u32, u64),
    Expect(Expectation),
    Unordered(Vec<Expectation>),
    Quiet(u64),
    Reconnect,
}

#[derive(Debug)]
struct Expectation {
    line: usize,
    /// `await`: messages on the channel that do not match are passed over.
    await_match: bool,
    kind: String,
    channel: u32,
    msgno: Option<u32>,
    checks: Vec<String>,
}

#[derive(Debug)]
struct Transcript {
    /// `--client-password` / `--agent-password` and their values.
    controller_args: Vec<String>,
    steps: Vec<Step>,
}

fn transcript_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("transcripts")
        .join(name)
}

fn parse_transcript(text: &str) -> Transcript {
    let lines: Vec<(usize, &str)> = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l))
        .filter(|(_, l)| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .collect();
    let mut i = 0;
    let mut transcript = Transcript {
        controller_args: Vec::new(),
        steps: Vec::new(),
    };
    let mut unordered: Option<Vec<Expectation>> = None;
    while i < lines.len() {
        let (number, line) = lines[i];
        i += 1;
        let words: Vec<&str> = line.split_whitespace().collect();
        match words[0] {
            "controller" => {
                for option in &words[1..] {
                    match option.split_once('=') {
                        Some((flag @ ("client-password" | "agent-password"), pw)) => {
                            transcript.controller_args.push(format!("--{flag}"));
                            transcript.controller_args.push(pw.to_string());
                        }
                        _ => panic!("line {number}: unknown controller option {option}"),
                    }
                }
            }
            "set" => {
                let (name, value) = line["set".len()..]
                    .split_once('=')
                    .unwrap_or_else(|| panic!("line {number}: set VAR = VALUE"));
                transcript
                    .steps
                    .push(Step::Set(name.trim().into(), value.trim().into()));
            }
            "send" => {
                let header = line.trim()["send".len()..].trim().to_string();
                let payload = if words[1] == "SEQ" {
                    None
                } else {
                    let mut payload = String::new();
                    while lines[i].1.trim() != "end" {
                        payload.push_str(lines[i].1.trim());
                        i += 1;
                    }
                    i += 1;
                    Some(payload)
                };
                transcript.steps.push(Step::Send { header, payload });
            }
            "window" => transcript.steps.push(Step::Window(
                words[1].parse().expect("channel"),
                words[2].parse().expect("window"),
            )),
            "quiet" => transcript
                .steps
                .push(Step::Quiet(words[1].parse().expect("milliseconds"))),
            "reconnect" => transcript.steps.push(Step::Reconnect),
            "unordered" => unordered = Some(Vec::new()),
            "end" => {
                let group = unordered.take().expect("`end` without `unordered`");
                transcript.steps.push(Step::Unordered(group));
            }
            "expect" | "await" => {
                let mut checks = Vec::new();
                while i < lines.len() && lines[i].1.starts_with("    ") && {
                    let w = lines[i].1.trim_start();
                    !w.starts_with("expect ") && !w.starts_with("await ") && w != "end"
                } {
                    checks.push(lines[i].1.trim().to_string());
                    i += 1;
                }
                let expectation = Expectation {
                    line: number,
                    await_match: words[0] == "await",
                    kind: words[1].to_string(),
                    channel: words[2].parse().expect("channel"),
                    msgno: (words[3] != "*").then(|| words[3].parse().expect("msgno")),
                    checks,
                };
                match &mut unordered {
                    Some(group) => group.push(expectation),
                    None => transcript.steps.push(Step::Expect(expectation)),
                }
            }
            other => panic!("line {number}: unknown step {other}"),
        }
    }
    transcript
}

/// `\r`, `\n`, `\t`, `\\` in transcript text.
fn unescape(text: &str) -> String {
    let mut out = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('r') => out.push('\r'),
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}

fn escape_for_log(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let escaped = text
        .replace('\r', "\\r")
        .replace('\n', "\\n")
        .replace('\t', "\\t");
    if escaped.chars().count() > 1200 {
        format!("{}…", escaped.chars().take(1200).collect::<String>())
    } else {
        escaped
    }
}

// ---------------------------------------------------------------------------------------------
// Two-way-random (§3), computed here from the algorithm.

fn hmac_md5(key: &str, parts: &[&[u8]]) -> String {
    let mut mac = <Hmac<Md5> as Mac>::new_from_slice(key.as_bytes()).expect("any key length");
    for part in parts {
        mac.update(part);
    }
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

// ---------------------------------------------------------------------------------------------
// The player

struct Player {
    controller: Child,
    address: String,
    stream: TcpStream,
    buffer: Vec<u8>,
    /// Octets received per channel (the next seqno we expect from the controller).
    received: HashMap<u32, u64>,
    /// The highest seqno+size the controller may reach per channel (ackno + window).
    limit: HashMap<u32, u64>,
    /// The window we keep granting per channel.
    window: HashMap<u32, u64>,
    /// Our next seqno per channel.
    sent: HashMap<u32, u64>,
    partial: HashMap<(u32, u32), Message>,
    inbox: Vec<Message>,
    vars: HashMap<String, String>,
    log: Vec<String>,
    name: String,
    /// The profile we asked for on each channel we started (Xgrid channels carry plists).
    profiles: HashMap<u32, String>,
}

impl Drop for Player {
    fn drop(&mut self) {
        let _ = self.controller.kill();
        let _ = self.controller.wait();
    }
}

const INITIAL_WINDOW: u64 = 4096;

impl Player {
    fn connect(address: &str) -> TcpStream {
        let stream = TcpStream::connect(address).expect("connect to the controller");
        stream
            .set_read_timeout(Some(Duration::from_millis(50)))
            .expect("read timeout");
        stream
    }

    fn reset_connection(&mut self) {
        self.stream = Player::connect(&self.address);
        self.buffer.clear();
        self.received.clear();
        self.limit.clear();
        self.window.clear();
        self.sent.clear();
        self.partial.clear();
        self.inbox.clear();
        self.profiles.clear();
        self.log.push("--- reconnect ---".into());
    }

    fn fail(&self, why: impl std::fmt::Display) -> ! {
        panic!(
            "{}: {why}\n--- session so far ---\n{}",
            self.name,
            self.log.join("\n")
        )
    }

    fn write(&mut self, bytes: &[u8]) {
        self.log.push(format!("> {}", escape_for_log(bytes)));
        if let Err(e) = self.stream.write_all(bytes) {
            self.fail(format!("write failed: {e}"));
        }
    }

    fn substitute(&self, text: &str, channel: Option<u32>, size: usize) -> String {
        let mut out = String::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            out.push_str(&rest[..open]);
            // `\{` is a literal brace (unescaped later), e.g. in an old-style plist.
            if rest[..open].ends_with('\\') {
                out.push('{');
                rest = &rest[open + 1..];
                continue;
            }
            let close = rest[open..]
                .find('}')
                .unwrap_or_else(|| self.fail(format!("unclosed placeholder in {text}")));
            let name = &rest[open + 1..open + close];
            let channel = channel.unwrap_or(0);
            let value = match name {
                "size" => size.to_string(),
                "seq" => self.sent.get(&channel).copied().unwrap_or(0).to_string(),
                "ackno" => self
                    .received
                    .get(&channel)
                    .copied()
                    .unwrap_or(0)
                    .to_string(),
                "twr-answer" => self.twr_answer(false),
                "twr-wrong-answer" => self.twr_answer(true),
                var => self
                    .vars
                    .get(var)
                    .cloned()
                    .unwrap_or_else(|| self.fail(format!("no value for {{{var}}}"))),
            };
            out.push_str(&value);
            rest = &rest[open + close + 1..];
        }
        out.push_str(rest);
        out
    }

    /// Step 3 blob: b64(user CRLF b64(Rc) CRLF hex(HMAC(pw, user‖Rc‖Rs)) CRLF).
    fn twr_answer(&self, wrong: bool) -> String {
        let var = |n: &str| {
            self.vars
                .get(n)
                .cloned()
                .unwrap_or_else(|| self.fail(format!("two-way-random needs {{{n}}}")))
        };
        let user = var("user");
        let password = if wrong {
            format!("{}-wrong", var("password"))
        } else {
            var("password")
        };
        let rs = B64.decode(var("rs")).expect("rs is base64");
        let rc = B64.decode(var("rc")).expect("rc is base64");
        let digest = hmac_md5(&password, &[user.as_bytes(), &rc, &rs]);
        B64.encode(format!("{user}\r\n{}\r\n{digest}\r\n", B64.encode(&rc)))
    }

    fn send(&mut self, header: &str, payload: Option<&str>) {
        let channel: u32 = header
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| self.fail(format!("bad header {header}")));
        match payload {
            None => {
                let line = self.substitute(header, Some(channel), 0);
                let words: Vec<u64> = line
                    .split_whitespace()
                    .skip(2)
                    .map(|w| w.parse().expect("SEQ numbers"))
                    .collect();
                self.limit.insert(channel, words[0] + words[1]);
                self.write(format!("{line}\r\n").as_bytes());
            }
            Some(payload) => {
                let body = unescape(&self.substitute(payload, Some(channel), 0));
                let line = self.substitute(header, Some(channel), body.len());
                *self.sent.entry(channel).or_insert(0) += body.len() as u64;
                if channel == 0 && body.contains("<start") {
                    let number = attribute(&body, "number").and_then(|n| n.parse().ok());
                    if let (Some(number), Some(uri)) = (number, attribute(&body, "uri")) {
                        self.profiles.insert(number, uri);
                    }
                }
                self.write(format!("{line}\r\n{body}END\r\n").as_bytes());
            }
        }
    }

    /// Read more bytes; false when nothing came within the read timeout.
    fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 8192];
        match self.stream.read(&mut chunk) {
            Ok(0) => self.fail("the controller closed the connection"),
            Ok(n) => {
                self.buffer.extend_from_slice(&chunk[..n]);
                true
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => false,
            Err(e) => self.fail(format!("read failed: {e}")),
        }
    }

    /// Take one whole frame off the buffer, checking it; None when more bytes are needed.
    fn take_frame(&mut self) -> Option<Frame> {
        let lf = self.buffer.iter().position(|b| *b == b'\n')?;
        let header = String::from_utf8_lossy(&self.buffer[..lf]).to_string();
        let Some(header) = header.strip_suffix('\r') else {
            self.fail(format!("frame header not ended by CRLF: {header:?}"))
        };
        let words: Vec<&str> = header.split(' ').collect();
        let number = |i: usize| -> u64 {
            words
                .get(i)
                .and_then(|w| w.parse().ok())
                .unwrap_or_else(|| self.fail(format!("bad field {i} in header {header:?}")))
        };
        if words[0] == "SEQ" {
            if words.len() != 4 {
                self.fail(format!("bad SEQ header {header:?}"));
            }
            let (channel, ackno, window) = (number(1), number(2), number(3));
            let sent = self.sent.get(&(channel as u32)).copied().unwrap_or(0);
            if ackno > sent {
                self.fail(format!(
                    "SEQ acknowledges octet {ackno} on channel {channel}, but we sent only {sent}"
                ));
            }
            self.log
                .push(format!("< SEQ {channel} {ackno} {window} (window credit)"));
            self.buffer.drain(..=lf);
            return Some(Frame {
                kind: "SEQ".into(),
                channel: channel as u32,
                msgno: 0,
                more: false,
                payload: Vec::new(),
            });
        }
        if !["MSG", "RPY", "ERR", "ANS", "NUL"].contains(&words[0]) {
            self.fail(format!("unknown frame type in {header:?}"));
        }
        let expected_len = if words[0] == "ANS" { 7 } else { 6 };
        if words.len() != expected_len {
            self.fail(format!("wrong number of fields in {header:?}"));
        }
        let more = match words[3] {
            "." => false,
            "*" => true,
            _ => self.fail(format!("bad continuation indicator in {header:?}")),
        };
        let (channel, msgno, seqno, size) = (number(1) as u32, number(2), number(4), number(5));
        let total = lf + 1 + size as usize + 5;
        if self.buffer.len() < total {
            return None;
        }
        let frame_bytes: Vec<u8> = self.buffer.drain(..total).collect();
        self.log.push(format!("< {}", escape_for_log(&frame_bytes)));
        if &frame_bytes[total - 5..] != b"END\r\n" {
            self.fail(format!(
                "frame {header:?} not followed by END\\r\\n after {size} octets"
            ));
        }
        let received = self.received.entry(channel).or_insert(0);
        if seqno != *received {
            let expected = *received;
            self.fail(format!(
                "seqno {seqno} on channel {channel}, expected {expected}"
            ));
        }
        *received += size;
        let now = *received;
        let limit = *self.limit.get(&channel).unwrap_or(&INITIAL_WINDOW);
        if now > limit {
            self.fail(format!(
                "the controller sent past our window on channel {channel}: up to octet {now}, granted {limit}"
            ));
        }
        // Keep the window open the way Apple peers do: grant more once half is used.
        let window = *self.window.get(&channel).unwrap_or(&INITIAL_WINDOW);
        if limit - now < window / 2 + 1 {
            self.limit.insert(channel, now + window);
            self.write(format!("SEQ {channel} {now} {window}\r\n").as_bytes());
        }
        Some(Frame {
            kind: words[0].into(),
            channel,
            msgno: msgno as u32,
            more,
            payload: frame_bytes[lf + 1..lf + 1 + size as usize].to_vec(),
        })
    }

    fn pump_frames(&mut self) {
        while let Some(frame) = self.take_frame() {
            if frame.kind == "SEQ" {
                continue;
            }
            let key = (frame.channel, frame.msgno);
            let message = self.partial.entry(key).or_insert_with(|| Message {
                kind: frame.kind.clone(),
                channel: frame.channel,
                msgno: frame.msgno,
                payload: Vec::new(),
            });
            message.payload.extend_from_slice(&frame.payload);
            if !frame.more {
                let message = self.partial.remove(&key).expect("just inserted");
                if message.kind == "MSG" && message.channel != 0 {
                    // Apple peers answer every Xgrid MSG at once with an empty RPY.
                    let seq = self.sent.get(&message.channel).copied().unwrap_or(0);
                    let rpy = format!(
                        "RPY {} {} . {seq} 0\r\nEND\r\n",
                        message.channel, message.msgno
                    );
                    self.write(rpy.as_bytes());
                }
                self.inbox.push(message);
            }
        }
    }

    /// The next whole message on one of `channels` (any channel when empty). BEEP orders
    /// messages only within a channel, so messages on other channels wait in the inbox.
    fn next_message(&mut self, channels: &[u32], timeout: Duration) -> Option<Message> {
        let deadline = Instant::now() + timeout;
        loop {
            self.pump_frames();
            let wanted = |m: &Message| channels.is_empty() || channels.contains(&m.channel);
            if let Some(at) = self.inbox.iter().position(wanted) {
                return Some(self.inbox.remove(at));
            }
            if Instant::now() >= deadline {
                return None;
            }
            self.fill();
        }
    }

    /// The plist of an Xgrid message from the controller, with the automatic checks.
    fn plist_of(message: &Message) -> Result<PValue, String> {
        let text = String::from_utf8(message.payload.clone())
            .map_err(|_| "the plist is not UTF-8".to_string())?;
        let Some(plist) = text.strip_prefix("\r\n") else {
            return Err(format!(
                "an Xgrid payload must be \\r\\n then the plist, with no MIME headers: {:.60?}",
                text
            ));
        };
        PlistReader::document(plist)
    }

    fn check(
        &self,
        message: &Message,
        expectation: &Expectation,
        captures: &mut Vec<(String, String)>,
    ) -> Result<(), String> {
        if message.kind != expectation.kind
            || message.channel != expectation.channel
            || expectation.msgno.is_some_and(|m| m != message.msgno)
        {
            return Err(format!(
                "got {} {} {}",
                message.kind, message.channel, message.msgno
            ));
        }
        let text = String::from_utf8_lossy(&message.payload).to_string();
        // An empty MIME entity: no octets at all, or only the blank line that ends no headers.
        let body_empty = message.payload.is_empty() || message.payload == b"\r\n";
        let xgrid_channel = self
            .profiles
            .get(&message.channel)
            .is_some_and(|uri| uri.contains("/xgrid/controller/"));
        let plist = if xgrid_channel && message.kind != "ERR" && !body_empty {
            Some(Player::plist_of(message)?)
        } else {
            None
        };
        for check in &expectation.checks {
            let check = self.substitute(check, None, 0);
            let (word, rest) = check.split_once(' ').unwrap_or((&check, ""));
            match word {
                "empty" if !body_empty => {
                    return Err(format!(
                        "payload not empty: {}",
                        escape_for_log(&message.payload)
                    ))
                }
                "empty" => {}
                "has" if !text.contains(&unescape(rest)) => {
                    return Err(format!("payload lacks {rest}"))
                }
                "starts" if !text.starts_with(&unescape(rest)) => {
                    return Err(format!("payload does not start with {rest}"))
                }
                "has" | "starts" => {}
                "attr" => {
                    let (name, value) = rest.split_once(" = ").ok_or("attr NAME = VALUE")?;
                    let found = attribute(&text, name);
                    if found.as_deref() != Some(value) {
                        return Err(format!("attribute {name} is {found:?}, expected {value}"));
                    }
                }
                "profiles" => {
                    let uris = attribute_values(&text, "uri");
                    let mut present = uris.iter().peekable();
                    for wanted in rest.split_whitespace() {
                        let (uri, optional) = match wanted.strip_suffix('?') {
                            Some(uri) => (uri, true),
                            None => (wanted, false),
                        };
                        if present.peek().is_some_and(|u| *u == uri) {
                            present.next();
                        } else if !optional {
                            return Err(format!(
                                "profiles {uris:?}: {uri} missing or out of Apple's order"
                            ));
                        }
                    }
                    if let Some(extra) = present.next() {
                        return Err(format!("profiles {uris:?}: unexpected {extra}"));
                    }
                }
                "blob-rs" => {
                    let content = blob(&text)?;
                    let (rs, tail) = content
                        .split_once("\r\n")
                        .ok_or("step 2 blob is not b64(Rs) CRLF")?;
                    let raw = B64.decode(rs).map_err(|e| format!("Rs not base64: {e}"))?;
                    if raw.len() != 16 || !tail.is_empty() {
                        return Err(format!("Rs must be 16 octets then CRLF: {content:?}"));
                    }
                    captures.push(("rs".into(), rs.into()));
                }
                "twr-verify" => {
                    let content = blob(&text)?;
                    let bytes = B64
                        .decode(attribute_free_blob(&text)?)
                        .map_err(|e| e.to_string())?;
                    let end = bytes.len().checked_sub(34).ok_or("step 4 blob too short")?;
                    let (r2, tail) = bytes.split_at(end);
                    let r2 = r2.strip_suffix(b"\r\n").ok_or("no CRLF after R2")?;
                    if r2.len() != 16 || r2.contains(&b'\r') || r2.contains(&b'\n') {
                        return Err(format!(
                            "R2 must be 16 raw octets without CR/LF: {content:?}"
                        ));
                    }
                    let var = |n: &str| self.vars.get(n).cloned().unwrap_or_default();
                    let rs = B64.decode(var("rs")).map_err(|e| e.to_string())?;
                    let rc = B64.decode(var("rc")).map_err(|e| e.to_string())?;
                    let digest =
                        hmac_md5(&var("password"), &[var("user").as_bytes(), &rc, &rs, r2]);
                    if tail != format!("{digest}\r\n").as_bytes() {
                        return Err(format!(
                            "second digest {:?}, expected {digest}",
                            String::from_utf8_lossy(tail)
                        ));
                    }
                }
                "plist" | "capture" => {
                    let plist = plist.as_ref().ok_or("no plist in this message")?;
                    if word == "capture" {
                        let (var, path) = rest.split_once(' ').ok_or("capture VAR PATH")?;
                        let value = lookup(plist, path).ok_or(format!("no {path} to capture"))?;
                        captures.push((var.into(), render(value)));
                        continue;
                    }
                    let (path, op) = rest.split_once(' ').ok_or("plist PATH OP …")?;
                    let found = lookup(plist, path);
                    let (op, operand) = op.split_once(' ').unwrap_or((op, ""));
                    let ok = match (op, found) {
                        ("exists", found) => found.is_some(),
                        ("absent", found) => found.is_none(),
                        ("nonempty", Some(v)) => !render(v).is_empty() && render(v) != "{}",
                        ("=", Some(v)) => render(v) == operand,
                        ("!=", Some(v)) => render(v) != operand,
                        ("!=", None) => true,
                        ("is", Some(v)) => kind_of(v) == operand,
                        ("bytes", Some(PValue::Scalar("data", text))) => {
                            let packed: String =
                                text.chars().filter(|c| !c.is_whitespace()).collect();
                            B64.decode(packed).ok() == Some(unescape(operand).into_bytes())
                        }
                        _ => false,
                    };
                    if !ok {
                        return Err(format!(
                            "plist {path} {op} {operand}: found {:?}",
                            found.map(render)
                        ));
                    }
                }
                other => return Err(format!("unknown check {other}")),
            }
        }
        Ok(())
    }

    fn expect(&mut self, expectation: &Expectation) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let Some(message) = self.next_message(&[expectation.channel], left) else {
                self.fail(format!(
                    "line {}: nothing (matching) came within 10 s (expected {} {} {:?})",
                    expectation.line, expectation.kind, expectation.channel, expectation.msgno
                ))
            };
            let mut captures = Vec::new();
            match self.check(&message, expectation, &mut captures) {
                Ok(()) => {
                    self.vars.extend(captures);
                    return;
                }
                Err(why) if expectation.await_match => {
                    let line = expectation.line;
                    self.log
                        .push(format!("  (line {line} passes over a message: {why})"));
                }
                Err(why) => self.fail(format!("line {}: {why}", expectation.line)),
            }
        }
    }

    fn expect_unordered(&mut self, group: &[Expectation]) {
        let mut matched = vec![false; group.len()];
        while matched.iter().any(|m| !m) {
            let channels: Vec<u32> = group.iter().map(|e| e.channel).collect();
            let Some(message) = self.next_message(&channels, Duration::from_secs(10)) else {
                self.fail(format!(
                    "line {}: unordered group incomplete after 10 s",
                    group[0].line
                ))
            };
            let mut reasons = Vec::new();
            let mut hit = None;
            for (i, e) in group.iter().enumerate().filter(|(i, _)| !matched[*i]) {
                let mut captures = Vec::new();
                match self.check(&message, e, &mut captures) {
                    Ok(()) => {
                        hit = Some((i, captures));
                        break;
                    }
                    Err(why) => reasons.push(format!("line {}: {why}", e.line)),
                }
            }
            match hit {
                Some((i, captures)) => {
                    matched[i] = true;
                    self.vars.extend(captures);
                }
                None => self.fail(format!(
                    "a message matched nothing in the unordered group: {}",
                    reasons.join("; ")
                )),
            }
        }
    }

    fn play(name: &str) {
        let text = std::fs::read_to_string(transcript_path(name)).expect("read transcript");
        let transcript = parse_transcript(&text);
        let dir = scratch_dir(&format!("conform-{}", name.trim_end_matches(".txt")));
        let (controller, address) = spawn_controller(&dir, &transcript.controller_args);
        let stream = Player::connect(&address);
        let mut player = Player {
            controller,
            address,
            stream,
            buffer: Vec::new(),
            received: HashMap::new(),
            limit: HashMap::new(),
            window: HashMap::new(),
            sent: HashMap::new(),
            partial: HashMap::new(),
            inbox: Vec::new(),
            vars: HashMap::new(),
            log: Vec::new(),
            name: name.to_string(),
            profiles: HashMap::new(),
        };
        // Rc, the client's random for two-way-random; fixed, as the test vector in the doc.
        player
            .vars
            .insert("rc".into(), B64.encode((0x10u8..0x20).collect::<Vec<u8>>()));
        for step in &transcript.steps {
            match step {
                Step::Set(name, value) => {
                    player.vars.insert(name.clone(), value.clone());
                }
                Step::Send { header, payload } => player.send(header, payload.as_deref()),
                Step::Window(channel, window) => {
                    player.window.insert(*channel, *window);
                    let ackno = player.received.get(channel).copied().unwrap_or(0);
                    player.send(&format!("SEQ {channel} {ackno} {window}"), None);
                }
                Step::Expect(expectation) => player.expect(expectation),
                Step::Unordered(group) => player.expect_unordered(group),
                Step::Quiet(ms) => {
                    if let Some(message) = player.next_message(&[], Duration::from_millis(*ms)) {
                        player.fail(format!(
                            "expected silence, got {} {} {}",
                            message.kind, message.channel, message.msgno
                        ));
                    }
                }
                Step::Reconnect => player.reset_connection(),
            }
        }
        // `XGRID_CONFORMANCE_LOG=1` prints what was exchanged even when every check passed.
        if std::env::var_os("XGRID_CONFORMANCE_LOG").is_some() {
            println!("--- {name} ---\n{}", player.log.join("\n"));
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// Start `xgridcontrollerd` on a free loopback port with `args`; its address once it listens.
fn spawn_controller(dir: &Path, args: &[String]) -> (Child, String) {
    let mut child = Command::new(binary("xgridcontrollerd"))
        // Controllers here run side by side: none may hold the dashboard's fixed port.
        .args(["--listen", "127.0.0.1:0", "--no-web", "--data-dir"])
        .arg(dir.join("controller"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start xgridcontrollerd");
    let stdout = child.stdout.take().expect("controller stdout");
    let mut lines = BufReader::new(stdout).lines();
    let address = loop {
        match lines.next() {
            Some(Ok(line)) => {
                if let Some(address) = line.split("listening on ").nth(1) {
                    break address.trim().to_string();
                }
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("xgridcontrollerd exited before saying where it listens");
            }
        }
    };
    // Keep draining its stdout so the controller never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (child, address)
}

/// Every value of attribute `name` in channel-0 XML, either quote style.
fn attribute_values(text: &str, name: &str) -> Vec<String> {
    let mut values = Vec::new();
    let pattern = format!("{name}=");
    let mut rest = text;
    while let Some(at) = rest.find(&pattern) {
        let after = &rest[at + pattern.len()..];
        let Some(quote) = after.chars().next().filter(|q| *q == '\'' || *q == '"') else {
            rest = after;
            continue;
        };
        let value = &after[1..];
        let end = value.find(quote).unwrap_or(value.len());
        values.push(value[..end].to_string());
        rest = &value[end..];
    }
    values
}

fn attribute(text: &str, name: &str) -> Option<String> {
    attribute_values(text, name).into_iter().next()
}

/// The base64 text inside `<blob>…</blob>`.
fn attribute_free_blob(text: &str) -> Result<String, String> {
    let start = text.find("<blob>").ok_or("no <blob> element")? + "<blob>".len();
    let end = text[start..].find("</blob>").ok_or("no </blob>")?;
    Ok(text[start..start + end].trim().to_string())
}

/// The decoded content of `<blob>` (text).
fn blob(text: &str) -> Result<String, String> {
    let bytes = B64
        .decode(attribute_free_blob(text)?)
        .map_err(|e| format!("blob not base64: {e}"))?;
    Ok(String::from_utf8_lossy(&bytes).to_string())
}

// ---------------------------------------------------------------------------------------------
// The suite: one test per transcript.

#[test]
fn client_session_opening() {
    Player::play("client-opening.txt");
}

#[test]
fn client_password_two_way_random() {
    Player::play("client-password.txt");
}

#[test]
fn agent_session_and_reconnect() {
    Player::play("agent-session.txt");
}

#[test]
fn client_jobs_notifications_and_abrupt_close() {
    Player::play("client-jobs.txt");
}

#[test]
fn grids_and_agent_assignment() {
    Player::play("grids.txt");
}

#[test]
fn flow_control_small_window_and_eager_seq() {
    Player::play("window.txt");
}

// ---------------------------------------------------------------------------------------------
// The suite's own readers, so that a passing transcript means something.

#[test]
fn plist_reader_enforces_apple_whitespace() {
    let good = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!DOCTYPE plist PUBLIC \"-//Apple//DTD PLIST 1.0//EN\" \"x\">\n<plist version=\"1.0\">\n<dict>\n\t<key>a &amp; b</key>\n\t<string> kept </string>\n</dict>\n</plist>\n";
    let value = PlistReader::document(good).expect("a well-formed Apple plist");
    assert_eq!(
        lookup(&value, "a & b").map(render).as_deref(),
        Some(" kept ")
    );

    let space = good.replace("\t<key>", "  <key>");
    let error = PlistReader::document(&space).expect_err("spaces between tags");
    assert!(error.contains("' '"), "{error}");
    let carriage_return = good.replace("</dict>\n</plist>", "</dict>\r\n</plist>");
    assert!(PlistReader::document(&carriage_return).is_err());
    let doctype_crlf = good.replace("\"x\">\n", "\"x\">\r\n");
    let error = PlistReader::document(&doctype_crlf).expect_err("DOCTYPE ended by CRLF");
    assert!(error.contains("DOCTYPE"), "{error}");
}

#[test]
fn two_way_random_matches_the_documented_vector() {
    // xgrid-wire.md §3: user one-xgrid-client, password secret, Rs = 0x00..0x0f, Rc = 0x10..0x1f.
    let rs: Vec<u8> = (0u8..16).collect();
    let rc: Vec<u8> = (16u8..32).collect();
    assert_eq!(
        B64.encode(format!("{}\r\n", B64.encode(&rs))),
        "QUFFQ0F3UUZCZ2NJQ1FvTERBME9Edz09DQo="
    );
    assert_eq!(
        hmac_md5("secret", &[b"one-xgrid-client", &rc, &rs]),
        "1c6d3085abc413cdcc8e68f0f7e38098"
    );
    assert_eq!(
        hmac_md5(
            "secret",
            &[b"one-xgrid-client", &rc, &rs, b"ABCDEFGHIJKLMNOP"]
        ),
        "516b8de15dc3a00588bc554685609ab8"
    );
}

#[test]
fn transcript_payload_escapes() {
    assert_eq!(unescape(r"a\r\n\tb\\c"), "a\r\n\tb\\c");
    let transcript = parse_transcript(
        "controller client-password=pw\nsend MSG 1 1 . {seq} {size}\n    \\r\\n\n    <x/>\nend\nexpect RPY 1 1\n    empty\n",
    );
    assert_eq!(transcript.controller_args, ["--client-password", "pw"]);
    assert!(matches!(
        &transcript.steps[0],
        Step::Send { payload: Some(p), .. } if p == "\\r\\n<x/>"
    ));
    assert!(matches!(&transcript.steps[1], Step::Expect(e) if e.checks == ["empty"]));
}

#[test]
fn agent_password_two_way_random() {
    Player::play("agent-password.txt");
}

#[test]
fn agent_runs_a_task() {
    Player::play("agent-task.txt");
}
