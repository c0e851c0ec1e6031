//! BEEP frames (RFC 3080 §2.2, RFC 3081 §3.1.4): the six frame types, an encoder, and an
//! incremental decoder that yields whole frames from a byte stream however it is chunked.
//!
//! The decoder never touches payload bytes one by one: it finds the header line, parses its
//! numbers, then slices the payload by its declared size and checks the trailer. A whole frame
//! must be buffered before it is parsed, so any split of the stream gives the same frames.

use super::BeepError;

/// Largest value of channel, msgno, ansno, size and window (RFC 3080 §2.2.1.1).
pub const MAX_I31: u32 = 2_147_483_647;

/// Longest header line we wait for before declaring it malformed. The longest legal header,
/// `ANS` with five ten-digit numbers, is 3 + 5×11 + 2 + 2 = 62 octets.
pub const MAX_HEADER_LEN: usize = 64;

const TRAILER: &[u8] = b"END\r\n";

/// The kind of a data frame. `Ans` carries its answer number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FrameKind {
    Msg,
    Rpy,
    Err,
    Ans { ansno: u32 },
    Nul,
}

impl FrameKind {
    fn keyword(self) -> &'static [u8; 3] {
        match self {
            FrameKind::Msg => b"MSG",
            FrameKind::Rpy => b"RPY",
            FrameKind::Err => b"ERR",
            FrameKind::Ans { .. } => b"ANS",
            FrameKind::Nul => b"NUL",
        }
    }
}

/// A MSG, RPY, ERR, ANS or NUL frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataFrame {
    pub kind: FrameKind,
    pub channel: u32,
    pub msgno: u32,
    /// `*`: more frames of this message follow; `.`: this is the last one.
    pub more: bool,
    pub seqno: u32,
    pub payload: Vec<u8>,
}

/// One frame on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Data(DataFrame),
    /// RFC 3081 flow control: the sender of this frame accepts octets of `channel` up to
    /// `ackno + window`.
    Seq {
        channel: u32,
        ackno: u32,
        window: u32,
    },
}

impl Frame {
    /// Append the frame's bytes to `out`. Numbers are written as given: the caller keeps
    /// them in range (channel, msgno, ansno, window ≤ 2^31−1, payload < 2^31 octets).
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Frame::Data(f) => {
                encode_data(f.kind, f.channel, f.msgno, f.more, f.seqno, &f.payload, out)
            }
            Frame::Seq {
                channel,
                ackno,
                window,
            } => encode_seq(*channel, *ackno, *window, out),
        }
    }

    /// The frame's bytes in a fresh vector.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut out);
        out
    }
}

/// Append one data frame to `out` without building a [`DataFrame`] first.
pub fn encode_data(
    kind: FrameKind,
    channel: u32,
    msgno: u32,
    more: bool,
    seqno: u32,
    payload: &[u8],
    out: &mut Vec<u8>,
) {
    out.reserve(MAX_HEADER_LEN + payload.len() + TRAILER.len());
    out.extend_from_slice(kind.keyword());
    push_number(out, channel);
    push_number(out, msgno);
    out.extend_from_slice(if more { b" *" } else { b" ." });
    push_number(out, seqno);
    push_number(out, u32::try_from(payload.len()).unwrap_or(u32::MAX));
    if let FrameKind::Ans { ansno } = kind {
        push_number(out, ansno);
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(payload);
    out.extend_from_slice(TRAILER);
}

/// Append one SEQ frame to `out`.
pub fn encode_seq(channel: u32, ackno: u32, window: u32, out: &mut Vec<u8>) {
    out.extend_from_slice(b"SEQ");
    push_number(out, channel);
    push_number(out, ackno);
    push_number(out, window);
    out.extend_from_slice(b"\r\n");
}

// A space then the decimal digits, without going through `fmt`.
fn push_number(out: &mut Vec<u8>, mut n: u32) {
    let mut digits = [0u8; 10];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.push(b' ');
    out.extend_from_slice(&digits[i..]);
}

/// Incremental frame decoder: [`push`](Self::push) any chunk of the stream, then call
/// [`next_frame`](Self::next_frame) until it returns `Ok(None)`.
///
/// After an error the decoder stays failed: the stream has lost its framing and nothing
/// after the error can be trusted.
#[derive(Debug)]
pub struct FrameDecoder {
    buf: Vec<u8>,
    // Start of the first unparsed octet; the buffer is compacted lazily so that draining
    // many small frames from one big chunk does not move memory each time.
    start: usize,
    max_frame_size: u32,
    failed: Option<BeepError>,
}

impl Default for FrameDecoder {
    fn default() -> Self {
        FrameDecoder::new(MAX_I31)
    }
}

impl FrameDecoder {
    /// A decoder that refuses frames with more than `max_frame_size` payload octets as soon
    /// as their header arrives, so it never buffers more than one such frame.
    pub fn new(max_frame_size: u32) -> Self {
        FrameDecoder {
            buf: Vec::new(),
            start: 0,
            max_frame_size,
            failed: None,
        }
    }

    /// Append received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.start > 0 && self.start * 2 >= self.buf.len() {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// Octets received but not yet returned as frames.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    /// The next whole frame, `Ok(None)` if more bytes are needed, or the framing error.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, BeepError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let input = self.buf.get(self.start..).unwrap_or_default();
        match parse_frame(input, self.max_frame_size) {
            Ok(Some((frame, used))) => {
                self.start += used;
                if self.start == self.buf.len() {
                    self.buf.clear();
                    self.start = 0;
                }
                Ok(Some(frame))
            }
            Ok(None) => Ok(None),
            Err(e) => {
                self.failed = Some(e.clone());
                Err(e)
            }
        }
    }
}

/// Parse one frame from the front of `input`: the frame and the octets it used, `Ok(None)`
/// when `input` holds only part of a frame, or the framing error. Never panics.
pub fn parse_frame(input: &[u8], max_frame_size: u32) -> Result<Option<(Frame, usize)>, BeepError> {
    // Checked first and on its own so that garbage is reported as soon as four octets are
    // in, with the same error however the stream was split.
    check_keyword_prefix(input)?;
    let window = input.get(..MAX_HEADER_LEN).unwrap_or(input);
    let Some(lf) = window.iter().position(|&b| b == b'\n') else {
        if input.len() >= MAX_HEADER_LEN {
            return Err(BeepError::HeaderTooLong {
                limit: MAX_HEADER_LEN,
            });
        }
        return Ok(None);
    };
    let line = match window.get(..lf).and_then(|l| l.strip_suffix(b"\r")) {
        Some(line) => line,
        None => return Err(bad("header line must end with CRLF")),
    };
    let header_len = lf + 1;
    let header = parse_header(line)?;
    let (kind, channel, msgno, more, seqno, size) = match header {
        Header::Seq {
            channel,
            ackno,
            window,
        } => {
            return Ok(Some((
                Frame::Seq {
                    channel,
                    ackno,
                    window,
                },
                header_len,
            )));
        }
        Header::Data {
            kind,
            channel,
            msgno,
            more,
            seqno,
            size,
        } => (kind, channel, msgno, more, seqno, size),
    };
    if size > max_frame_size {
        return Err(BeepError::FrameTooLarge {
            size,
            limit: max_frame_size,
        });
    }
    let payload_end = header_len + size as usize;
    let frame_end = payload_end + TRAILER.len();
    let Some(rest) = input.get(payload_end..) else {
        return Ok(None);
    };
    let available = rest.len().min(TRAILER.len());
    if rest.get(..available) != TRAILER.get(..available) {
        return Err(BeepError::MissingTrailer);
    }
    if available < TRAILER.len() {
        return Ok(None);
    }
    let payload = input
        .get(header_len..payload_end)
        .unwrap_or_default()
        .to_vec();
    Ok(Some((
        Frame::Data(DataFrame {
            kind,
            channel,
            msgno,
            more,
            seqno,
            payload,
        }),
        frame_end,
    )))
}

enum Header {
    Data {
        kind: FrameKind,
        channel: u32,
        msgno: u32,
        more: bool,
        seqno: u32,
        size: u32,
    },
    Seq {
        channel: u32,
        ackno: u32,
        window: u32,
    },
}

fn bad(reason: &str) -> BeepError {
    BeepError::BadHeader {
        reason: reason.to_string(),
    }
}

const KEYWORDS: [&[u8; 3]; 6] = [b"MSG", b"RPY", b"ERR", b"ANS", b"NUL", b"SEQ"];

// Whether the first (up to) four octets can begin `KKK `, judged only on what is there.
fn check_keyword_prefix(input: &[u8]) -> Result<(), BeepError> {
    let n = input.len().min(3);
    let head = input.get(..n).unwrap_or_default();
    if !KEYWORDS.iter().any(|k| k.get(..n) == Some(head)) {
        return Err(bad("unknown frame type"));
    }
    match input.get(3) {
        None | Some(b' ') => Ok(()),
        Some(_) => Err(bad("missing channel")),
    }
}

fn parse_header(line: &[u8]) -> Result<Header, BeepError> {
    let (keyword, rest) = line
        .split_at_checked(3)
        .ok_or_else(|| bad("unknown frame type"))?;
    let mut fields = Fields { rest };
    if keyword == b"SEQ" {
        let channel = fields.number("channel", MAX_I31)?;
        let ackno = fields.number("ackno", u32::MAX)?;
        let window = fields.number("window", MAX_I31)?;
        fields.end()?;
        return Ok(Header::Seq {
            channel,
            ackno,
            window,
        });
    }
    let kind = match keyword {
        b"MSG" => FrameKind::Msg,
        b"RPY" => FrameKind::Rpy,
        b"ERR" => FrameKind::Err,
        b"ANS" => FrameKind::Ans { ansno: 0 },
        b"NUL" => FrameKind::Nul,
        _ => return Err(bad("unknown frame type")),
    };
    let channel = fields.number("channel", MAX_I31)?;
    let msgno = fields.number("msgno", MAX_I31)?;
    let more = match fields.field("more")? {
        b"." => false,
        b"*" => true,
        _ => return Err(bad("continuation indicator must be '.' or '*'")),
    };
    let seqno = fields.number("seqno", u32::MAX)?;
    let size = fields.number("size", MAX_I31)?;
    let kind = match kind {
        FrameKind::Ans { .. } => FrameKind::Ans {
            ansno: fields.number("ansno", MAX_I31)?,
        },
        other => other,
    };
    fields.end()?;
    Ok(Header::Data {
        kind,
        channel,
        msgno,
        more,
        seqno,
        size,
    })
}

// The space-separated fields after the keyword.
struct Fields<'a> {
    rest: &'a [u8],
}

impl<'a> Fields<'a> {
    fn field(&mut self, name: &str) -> Result<&'a [u8], BeepError> {
        let Some(after_space) = self.rest.strip_prefix(b" ") else {
            return Err(BeepError::BadHeader {
                reason: format!("missing {name}"),
            });
        };
        let len = after_space
            .iter()
            .position(|&b| b == b' ')
            .unwrap_or(after_space.len());
        let (value, rest) = after_space.split_at(len);
        self.rest = rest;
        Ok(value)
    }

    fn number(&mut self, name: &str, max: u32) -> Result<u32, BeepError> {
        let digits = self.field(name)?;
        if digits.is_empty() || digits.len() > 10 || !digits.iter().all(u8::is_ascii_digit) {
            return Err(BeepError::BadHeader {
                reason: format!("{name} is not a decimal number"),
            });
        }
        let value = digits
            .iter()
            .fold(0u64, |n, &d| n * 10 + u64::from(d - b'0'));
        match u32::try_from(value) {
            Ok(v) if v <= max => Ok(v),
            _ => Err(BeepError::BadHeader {
                reason: format!("{name} {value} is larger than {max}"),
            }),
        }
    }

    fn end(&self) -> Result<(), BeepError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(bad("extra fields after the last one"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn decode_all(stream: &[u8], chunks: &[usize]) -> (Vec<Frame>, Option<BeepError>) {
        let mut d = FrameDecoder::default();
        let mut frames = Vec::new();
        let mut pos = 0;
        let mut cuts: Vec<usize> = chunks.iter().map(|c| c % (stream.len() + 1)).collect();
        cuts.sort_unstable();
        cuts.push(stream.len());
        for cut in cuts {
            d.push(&stream[pos..cut]);
            pos = cut;
            loop {
                match d.next_frame() {
                    Ok(Some(f)) => frames.push(f),
                    Ok(None) => break,
                    Err(e) => return (frames, Some(e)),
                }
            }
        }
        (frames, None)
    }

    #[test]
    fn decodes_rfc_example_frames() {
        let stream =
            b"MSG 0 1 . 52 5\r\nhelloEND\r\nSEQ 0 57 4096\r\nANS 1 2 * 4294967295 0 7\r\nEND\r\n";
        let (frames, err) = decode_all(stream, &[]);
        assert_eq!(err, None);
        assert_eq!(
            frames,
            vec![
                Frame::Data(DataFrame {
                    kind: FrameKind::Msg,
                    channel: 0,
                    msgno: 1,
                    more: false,
                    seqno: 52,
                    payload: b"hello".to_vec()
                }),
                Frame::Seq {
                    channel: 0,
                    ackno: 57,
                    window: 4096
                },
                Frame::Data(DataFrame {
                    kind: FrameKind::Ans { ansno: 7 },
                    channel: 1,
                    msgno: 2,
                    more: true,
                    seqno: u32::MAX,
                    payload: vec![]
                }),
            ]
        );
    }

    #[test]
    fn encodes_exact_bytes() {
        let f = Frame::Data(DataFrame {
            kind: FrameKind::Rpy,
            channel: 3,
            msgno: 0,
            more: false,
            seqno: 10,
            payload: b"\r\nx".to_vec(),
        });
        assert_eq!(f.to_bytes(), b"RPY 3 0 . 10 3\r\n\r\nxEND\r\n");
        assert_eq!(
            Frame::Seq {
                channel: 1,
                ackno: 0,
                window: 8192
            }
            .to_bytes(),
            b"SEQ 1 0 8192\r\n"
        );
    }

    fn first_error(stream: &[u8]) -> Option<BeepError> {
        decode_all(stream, &[]).1
    }

    #[test]
    fn bad_headers_are_rejected() {
        let cases: &[&[u8]] = &[
            b"FOO 0 0 . 0 0\r\nEND\r\n",
            b"MSG 0 0 . 0\r\n",
            b"MSG 0 0 + 0 0\r\nEND\r\n",
            b"MSG  0 0 . 0 0\r\nEND\r\n",
            b"MSG 0 0 . 0 0 9\r\nEND\r\n",
            b"MSG 2147483648 0 . 0 0\r\nEND\r\n",
            b"MSG 0 0 . 4294967296 0\r\nEND\r\n",
            b"ANS 0 0 . 0 0\r\nEND\r\n",
            b"SEQ 0 0 2147483648\r\n",
            b"MSG 0 -1 . 0 0\r\nEND\r\n",
            b"MSG 0 0 . 0 0\nEND\r\n",
        ];
        for case in cases {
            assert!(
                matches!(first_error(case), Some(BeepError::BadHeader { .. })),
                "{:?} gave {:?}",
                String::from_utf8_lossy(case),
                first_error(case)
            );
        }
        let long = [b'M', b'S', b'G', b' ']
            .iter()
            .copied()
            .chain(std::iter::repeat_n(b'1', 80))
            .collect::<Vec<_>>();
        assert_eq!(
            first_error(&long),
            Some(BeepError::HeaderTooLong {
                limit: MAX_HEADER_LEN
            })
        );
    }

    #[test]
    fn wrong_size_or_missing_trailer_is_rejected() {
        // Declared size 3 but 5 octets of payload: the trailer check lands inside the payload.
        assert_eq!(
            first_error(b"MSG 0 0 . 0 3\r\nhelloEND\r\n"),
            Some(BeepError::MissingTrailer)
        );
        assert_eq!(
            first_error(b"MSG 0 0 . 0 5\r\nhelloEND\n"),
            Some(BeepError::MissingTrailer)
        );
        assert_eq!(
            first_error(b"MSG 0 0 . 0 5\r\nhelloXXXXX"),
            Some(BeepError::MissingTrailer)
        );
        // A truncated stream is not an error, just incomplete.
        assert_eq!(decode_all(b"MSG 0 0 . 0 5\r\nhelloEN", &[]), (vec![], None));
    }

    #[test]
    fn oversize_frame_is_rejected_at_the_header() {
        let mut d = FrameDecoder::new(100);
        d.push(b"MSG 1 0 . 0 101\r\n");
        assert_eq!(
            d.next_frame(),
            Err(BeepError::FrameTooLarge {
                size: 101,
                limit: 100
            })
        );
        // The decoder stays failed.
        d.push(b"SEQ 0 0 4096\r\n");
        assert!(d.next_frame().is_err());
    }

    fn arb_frame() -> impl Strategy<Value = Frame> {
        let kind = prop_oneof![
            Just(FrameKind::Msg),
            Just(FrameKind::Rpy),
            Just(FrameKind::Err),
            (0..=MAX_I31).prop_map(|ansno| FrameKind::Ans { ansno }),
            Just(FrameKind::Nul),
        ];
        let data = (
            kind,
            0..=MAX_I31,
            0..=MAX_I31,
            any::<bool>(),
            any::<u32>(),
            proptest::collection::vec(any::<u8>(), 0..300),
        )
            .prop_map(|(kind, channel, msgno, more, seqno, payload)| {
                Frame::Data(DataFrame {
                    kind,
                    channel,
                    msgno,
                    more,
                    seqno,
                    payload,
                })
            });
        let seq = (0..=MAX_I31, any::<u32>(), 0..=MAX_I31).prop_map(|(channel, ackno, window)| {
            Frame::Seq {
                channel,
                ackno,
                window,
            }
        });
        prop_oneof![3 => data, 1 => seq]
    }

    proptest! {
        #[test]
        fn encode_then_decode_is_identity_under_any_split(
            frames in proptest::collection::vec(arb_frame(), 0..8),
            cuts in proptest::collection::vec(any::<usize>(), 0..10),
        ) {
            let mut stream = Vec::new();
            for f in &frames {
                f.encode(&mut stream);
            }
            let (decoded, err) = decode_all(&stream, &cuts);
            prop_assert_eq!(err, None);
            prop_assert_eq!(decoded, frames);
        }

        #[test]
        fn arbitrary_bytes_never_panic_and_split_does_not_matter(
            bytes in proptest::collection::vec(any::<u8>(), 0..200),
            prefix in proptest::collection::vec(arb_frame(), 0..2),
            cuts in proptest::collection::vec(any::<usize>(), 0..6),
        ) {
            let mut stream = Vec::new();
            for f in &prefix {
                f.encode(&mut stream);
            }
            stream.extend_from_slice(&bytes);
            let whole = decode_all(&stream, &[]);
            let split = decode_all(&stream, &cuts);
            prop_assert_eq!(whole, split);
        }
    }
}
