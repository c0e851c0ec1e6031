//! Xgrid's "two-way-random" password authentication (xgrid-wire.md §3), both sides, as pure
//! state machines: the BEEP session feeds them the peer's `<blob>` text or payload bytes and
//! sends what they return. Both sides prove they know the password (HMAC-MD5 over fresh
//! random nonces); nothing is encrypted. The MSG/RPY payloads we write carry no MIME headers
//! (`\r\n` then the blob), like Xgrid's data messages; payloads with headers are accepted.

use std::fmt;

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::DecodePaddingMode;
use base64::Engine;
use hmac::{Hmac, Mac};
use md5::Md5;

use crate::mime;
use crate::xml::{XmlEvent, XmlReader};

type HmacMd5 = Hmac<Md5>;

/// Length of every nonce we draw (Rs, Rc, R2), as Apple's peers do.
pub const NONCE_LEN: usize = 16;

/// The blob both sides send to finish the exchange (step 5), written as Apple writes it.
pub const COMPLETE_BLOB: &str = "<blob status='complete'/>";

const CRLF: &[u8] = b"\r\n";

// Writers use canonical padded base64; readers also take unpadded text, which costs nothing.
const LENIENT_BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Why an authentication step failed; the listener sends [`AuthError::reply_code`] in its ERR.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("malformed two-way-random message: {0}")]
    Malformed(String),
    #[error("authentication failed: no password is configured for user {0:?}")]
    UnknownUser(String),
    #[error("authentication failed: user {0:?} gave a wrong password digest (its password differs from ours)")]
    WrongPassword(String),
    #[error("authentication was already attempted on this channel; start a new exchange")]
    SecondAttempt,
    #[error("the controller could not prove it knows the password: check the password configured there, or suspect an impostor")]
    ListenerUnverified,
    #[error("the peer sent a two-way-random message out of sequence: {0}")]
    OutOfSequence(&'static str),
    #[error("the system random number generator failed: {0}")]
    Random(getrandom::Error),
}

impl AuthError {
    /// The BEEP reply code for an ERR carrying this failure.
    pub fn reply_code(&self) -> u16 {
        match self {
            AuthError::Malformed(_) | AuthError::OutOfSequence(_) => 501,
            AuthError::UnknownUser(_)
            | AuthError::WrongPassword(_)
            | AuthError::ListenerUnverified => 535,
            AuthError::SecondAttempt => 550,
            AuthError::Random(_) => 451,
        }
    }

    /// The text for the ERR element: Apple's wording where known. An unknown user gets the
    /// same text as a wrong password, so a prober learns nothing about user names.
    pub fn reply_text(&self) -> &'static str {
        match self.reply_code() {
            535 => "Authentication failure",
            501 => "Syntax error in authentication message",
            550 => "Authentication already attempted",
            _ => "Local error in processing",
        }
    }
}

/// What the listener does after a MSG on the authentication channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenerStep {
    /// Answer the MSG with this RPY payload and wait for the next MSG.
    Reply(Vec<u8>),
    /// Answer with this RPY payload; the session is now authenticated as `user`.
    Authenticated { user: String, reply: Vec<u8> },
}

/// What the initiator does after an RPY on the authentication channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InitiatorStep {
    /// Send this MSG payload and wait for its RPY.
    Send(Vec<u8>),
    /// Both sides have proved the password; the session is authenticated.
    Authenticated,
}

type PasswordLookup = Box<dyn Fn(&str) -> Option<String> + Send + Sync>;

#[derive(Debug)]
enum ListenerState {
    AwaitingDigest,
    AwaitingComplete { user: String },
    Done,
}

/// The listener's side (the controller): challenges, checks the initiator's digest, proves
/// it knows the password too.
pub struct Listener {
    passwords: PasswordLookup,
    rs: [u8; NONCE_LEN],
    r2: [u8; NONCE_LEN],
    state: ListenerState,
}

impl fmt::Debug for Listener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Listener")
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl Listener {
    /// A listener with fresh random nonces; `passwords` maps a user name to its password
    /// (`None`: that user may not authenticate).
    pub fn new(
        passwords: impl Fn(&str) -> Option<String> + Send + Sync + 'static,
    ) -> Result<Listener, AuthError> {
        let mut rs = [0; NONCE_LEN];
        let mut r2 = [0; NONCE_LEN];
        getrandom::fill(&mut rs).map_err(AuthError::Random)?;
        getrandom::fill(&mut r2).map_err(AuthError::Random)?;
        Ok(Listener::with_nonces(passwords, rs, r2))
    }

    /// A listener with chosen nonces, for tests; CR and LF bytes in `r2` are replaced.
    pub fn with_nonces(
        passwords: impl Fn(&str) -> Option<String> + Send + Sync + 'static,
        rs: [u8; NONCE_LEN],
        r2: [u8; NONCE_LEN],
    ) -> Listener {
        Listener {
            passwords: Box::new(passwords),
            rs,
            r2: without_line_breaks(r2),
            state: ListenerState::AwaitingDigest,
        }
    }

    /// The step-2 `<blob>` for the piggyback of the `<profile>` reply to the channel start
    /// (whatever the initiator piggybacked on its start is ignored; Apple's is empty).
    pub fn challenge(&self) -> String {
        let mut content = STANDARD.encode(self.rs).into_bytes();
        content.extend_from_slice(CRLF);
        data_blob(&content)
    }

    /// Handle one MSG payload: the initiator's digest (step 3) or its completion (step 5).
    pub fn receive(&mut self, payload: &[u8]) -> Result<ListenerStep, AuthError> {
        // Whatever happens, this channel gets a single attempt: after a failure the state
        // stays Done, so a retry against the same challenge gets 550 rather than a new guess.
        match std::mem::replace(&mut self.state, ListenerState::Done) {
            ListenerState::AwaitingDigest => {
                let (user, reply) = self.check_digest(payload)?;
                self.state = ListenerState::AwaitingComplete { user };
                Ok(ListenerStep::Reply(reply))
            }
            ListenerState::AwaitingComplete { user } => {
                let blob = parse_blob(payload)?;
                if blob.status.as_deref() != Some("complete") {
                    return Err(AuthError::Malformed(
                        "expected <blob status='complete'/> to finish the exchange".into(),
                    ));
                }
                Ok(ListenerStep::Authenticated {
                    user,
                    reply: mime::bare_entity(COMPLETE_BLOB.as_bytes()),
                })
            }
            ListenerState::Done => Err(AuthError::SecondAttempt),
        }
    }

    fn check_digest(&self, payload: &[u8]) -> Result<(String, Vec<u8>), AuthError> {
        let content = parse_blob(payload)?.expect_data()?;
        let lines = split_lines(&content);
        let [user, rc, digest] = lines.as_slice() else {
            return Err(AuthError::Malformed(format!(
                "expected 3 CRLF-terminated lines (user, nonce, digest), found {}",
                lines.len()
            )));
        };
        let user = std::str::from_utf8(user)
            .ok()
            .filter(|u| !u.is_empty())
            .ok_or_else(|| AuthError::Malformed("the user name is empty or not UTF-8".into()))?;
        let rc = decode_base64(rc, "the initiator's nonce")?;
        let digest = decode_hex_digest(digest)?;
        let password =
            (self.passwords)(user).ok_or_else(|| AuthError::UnknownUser(user.to_string()))?;
        hmac_md5(&password, &[user.as_bytes(), &rc, &self.rs])
            .verify_slice(&digest)
            .map_err(|_| AuthError::WrongPassword(user.to_string()))?;

        let proof = hmac_md5(&password, &[user.as_bytes(), &rc, &self.rs, &self.r2]);
        let mut reply = self.r2.to_vec();
        reply.extend_from_slice(CRLF);
        reply.extend_from_slice(hex(&proof.finalize().into_bytes()).as_bytes());
        reply.extend_from_slice(CRLF);
        Ok((
            user.to_string(),
            mime::bare_entity(data_blob(&reply).as_bytes()),
        ))
    }
}

#[derive(Debug)]
enum InitiatorState {
    AwaitingChallenge,
    AwaitingProof { rs: Vec<u8> },
    AwaitingComplete,
    Done,
}

/// The initiator's side (a client or agent): answers the challenge, then checks that the
/// listener knows the password as well.
pub struct Initiator {
    user: String,
    password: String,
    rc: [u8; NONCE_LEN],
    state: InitiatorState,
}

impl fmt::Debug for Initiator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Initiator")
            .field("user", &self.user)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl Initiator {
    /// An initiator for `user` (`one-xgrid-client` or `one-xgrid-agent`) with a fresh nonce.
    pub fn new(user: &str, password: &str) -> Result<Initiator, AuthError> {
        let mut rc = [0; NONCE_LEN];
        getrandom::fill(&mut rc).map_err(AuthError::Random)?;
        Ok(Initiator::with_nonce(user, password, rc))
    }

    /// An initiator with a chosen nonce, for tests.
    pub fn with_nonce(user: &str, password: &str, rc: [u8; NONCE_LEN]) -> Initiator {
        Initiator {
            user: user.to_string(),
            password: password.to_string(),
            rc,
            state: InitiatorState::AwaitingChallenge,
        }
    }

    /// Take the listener's `<profile>` piggyback (step 2, entities already decoded) and
    /// return the step-3 MSG payload.
    pub fn answer_challenge(&mut self, piggyback: &str) -> Result<Vec<u8>, AuthError> {
        let InitiatorState::AwaitingChallenge =
            std::mem::replace(&mut self.state, InitiatorState::Done)
        else {
            return Err(AuthError::OutOfSequence("a second challenge"));
        };
        let content = parse_blob(piggyback.as_bytes())?.expect_data()?;
        let rs = match split_lines(&content).as_slice() {
            [rs] => decode_base64(rs, "the listener's nonce")?,
            _ => {
                return Err(AuthError::Malformed(
                    "the challenge must be one CRLF-terminated line".into(),
                ))
            }
        };
        let digest = hmac_md5(&self.password, &[self.user.as_bytes(), &self.rc, &rs]);
        let mut content = self.user.as_bytes().to_vec();
        content.extend_from_slice(CRLF);
        content.extend_from_slice(STANDARD.encode(self.rc).as_bytes());
        content.extend_from_slice(CRLF);
        content.extend_from_slice(hex(&digest.finalize().into_bytes()).as_bytes());
        content.extend_from_slice(CRLF);
        self.state = InitiatorState::AwaitingProof { rs };
        Ok(mime::bare_entity(data_blob(&content).as_bytes()))
    }

    /// Handle one RPY payload: the listener's proof (step 4) or its completion (step 5).
    pub fn receive_reply(&mut self, payload: &[u8]) -> Result<InitiatorStep, AuthError> {
        match std::mem::replace(&mut self.state, InitiatorState::Done) {
            InitiatorState::AwaitingChallenge => {
                Err(AuthError::OutOfSequence("a reply before the challenge"))
            }
            InitiatorState::AwaitingProof { rs } => {
                self.check_proof(payload, &rs)?;
                self.state = InitiatorState::AwaitingComplete;
                Ok(InitiatorStep::Send(mime::bare_entity(
                    COMPLETE_BLOB.as_bytes(),
                )))
            }
            InitiatorState::AwaitingComplete => match parse_blob(payload)?.status.as_deref() {
                Some("complete") => Ok(InitiatorStep::Authenticated),
                _ => Err(AuthError::Malformed(
                    "expected <blob status='complete'/> to finish the exchange".into(),
                )),
            },
            InitiatorState::Done => {
                Err(AuthError::OutOfSequence("a reply after the exchange ended"))
            }
        }
    }

    fn check_proof(&self, payload: &[u8], rs: &[u8]) -> Result<(), AuthError> {
        let content = parse_blob(payload)?.expect_data()?;
        // R2 is raw bytes and an Apple listener may put CR or LF in it, so split from the
        // end: the digest is the last line and R2 is everything before it.
        let body = content.strip_suffix(CRLF).unwrap_or(&content);
        let split = body
            .windows(CRLF.len())
            .rposition(|w| w == CRLF)
            .ok_or_else(|| AuthError::Malformed("expected R2 and a digest on two lines".into()))?;
        let (r2, digest) = (&body[..split], &body[split + CRLF.len()..]);
        let digest = decode_hex_digest(digest)?;
        hmac_md5(&self.password, &[self.user.as_bytes(), &self.rc, rs, r2])
            .verify_slice(&digest)
            .map_err(|_| AuthError::ListenerUnverified)
    }
}

/// Replace CR and LF bytes so R2 survives Apple's client, which splits the reply on CRLF.
/// Flipping the top bit costs a negligible bias in two of 256 values.
fn without_line_breaks(mut r2: [u8; NONCE_LEN]) -> [u8; NONCE_LEN] {
    for b in &mut r2 {
        if *b == b'\r' || *b == b'\n' {
            *b ^= 0x80;
        }
    }
    r2
}

struct Blob {
    status: Option<String>,
    data: Option<Vec<u8>>,
}

impl Blob {
    fn expect_data(self) -> Result<Vec<u8>, AuthError> {
        if let Some(status) = self
            .status
            .as_deref()
            .filter(|s| !matches!(*s, "none" | "continue"))
        {
            return Err(AuthError::Malformed(format!(
                "expected a blob with data, found one with status '{status}'"
            )));
        }
        self.data
            .ok_or_else(|| AuthError::Malformed("the blob holds no data".into()))
    }
}

fn data_blob(content: &[u8]) -> String {
    format!("<blob>{}</blob>", STANDARD.encode(content))
}

// Accepts MIME headers or none, either attribute quote style, whitespace around the element
// and inside its text, and base64 with or without padding.
fn parse_blob(payload: &[u8]) -> Result<Blob, AuthError> {
    let malformed = |m: String| AuthError::Malformed(m);
    let text = std::str::from_utf8(mime::entity_body(payload))
        .map_err(|_| malformed("the payload is not UTF-8 text".into()))?;
    let mut reader = XmlReader::new(text);
    let event = reader
        .next_significant()
        .map_err(|e| malformed(e.to_string()))?;
    let XmlEvent::Start {
        name: "blob",
        attributes,
        empty,
    } = event
    else {
        return Err(malformed("expected a <blob> element".into()));
    };
    let status = attributes
        .get("status")
        .map_err(|e| malformed(e.to_string()))?
        .map(|s| s.trim().to_string());
    let mut encoded = String::new();
    if !empty {
        loop {
            match reader.next().map_err(|e| malformed(e.to_string()))? {
                Some(XmlEvent::Text(t)) => encoded.push_str(&t),
                Some(XmlEvent::End { name: "blob" }) => break,
                Some(_) => return Err(malformed("unexpected markup inside <blob>".into())),
                None => return Err(malformed("<blob> is not closed".into())),
            }
        }
    }
    if !reader.at_end().map_err(|e| malformed(e.to_string()))? {
        return Err(malformed("unexpected content after </blob>".into()));
    }
    let encoded: String = encoded
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    let data = if encoded.is_empty() {
        None
    } else {
        Some(decode_base64(encoded.as_bytes(), "the blob")?)
    };
    Ok(Blob { status, data })
}

fn decode_base64(text: &[u8], what: &str) -> Result<Vec<u8>, AuthError> {
    match LENIENT_BASE64.decode(text.trim_ascii()) {
        Ok(bytes) if !bytes.is_empty() => Ok(bytes),
        Ok(_) => Err(AuthError::Malformed(format!("{what} is empty"))),
        Err(e) => Err(AuthError::Malformed(format!(
            "{what} is not valid base64: {e}"
        ))),
    }
}

// Splits CRLF-terminated lines; a missing CRLF after the last line is tolerated.
fn split_lines(content: &[u8]) -> Vec<&[u8]> {
    let body = content.strip_suffix(CRLF).unwrap_or(content);
    let mut lines = Vec::new();
    let mut rest = body;
    while let Some(i) = rest.windows(CRLF.len()).position(|w| w == CRLF) {
        lines.push(&rest[..i]);
        rest = &rest[i + CRLF.len()..];
    }
    lines.push(rest);
    lines
}

fn hmac_md5(password: &str, parts: &[&[u8]]) -> HmacMd5 {
    // HMAC takes keys of any length, so this constructor cannot fail.
    let mut mac = <HmacMd5 as Mac>::new_from_slice(password.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
    for part in parts {
        mac.update(part);
    }
    mac
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

fn decode_hex_digest(text: &[u8]) -> Result<[u8; 16], AuthError> {
    let bad = || AuthError::Malformed("the digest must be 32 hexadecimal digits".into());
    let text = text.trim_ascii();
    if text.len() != 32 {
        return Err(bad());
    }
    let mut out = [0u8; 16];
    for (byte, pair) in out.iter_mut().zip(text.chunks_exact(2)) {
        let digit = |c: u8| char::from(c).to_digit(16).ok_or_else(bad);
        *byte = (digit(pair[0])? << 4 | digit(pair[1])?) as u8;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const USER: &str = "one-xgrid-client";

    fn vector_nonces() -> ([u8; 16], [u8; 16], [u8; 16]) {
        let rs: [u8; 16] = std::array::from_fn(|i| i as u8);
        let rc: [u8; 16] = std::array::from_fn(|i| 0x10 + i as u8);
        (rs, rc, *b"ABCDEFGHIJKLMNOP")
    }

    fn secret_for_client(user: &str) -> Option<String> {
        (user == USER).then(|| "secret".to_string())
    }

    // Pulls the decoded content out of a `\r\n<blob>B64</blob>` payload without our parser.
    fn blob_content(payload: &[u8]) -> Vec<u8> {
        let text = std::str::from_utf8(payload).expect("utf-8");
        let inner = text
            .strip_prefix("\r\n<blob>")
            .and_then(|t| t.strip_suffix("</blob>"))
            .unwrap_or_else(|| panic!("not a bare data blob: {text:?}"));
        STANDARD.decode(inner).expect("base64")
    }

    #[test]
    fn wire_doc_test_vector() {
        let (rs, rc, r2) = vector_nonces();
        let mut listener = Listener::with_nonces(secret_for_client, rs, r2);
        let challenge = listener.challenge();
        assert_eq!(
            challenge,
            "<blob>QUFFQ0F3UUZCZ2NJQ1FvTERBME9Edz09DQo=</blob>"
        );

        let mut initiator = Initiator::with_nonce(USER, "secret", rc);
        let step3 = initiator
            .answer_challenge(&challenge)
            .expect("challenge accepted");
        assert_eq!(
            blob_content(&step3),
            b"one-xgrid-client\r\nEBESExQVFhcYGRobHB0eHw==\r\n1c6d3085abc413cdcc8e68f0f7e38098\r\n"
        );

        let ListenerStep::Reply(step4) = listener.receive(&step3).expect("digest accepted") else {
            panic!("expected a reply");
        };
        assert_eq!(
            blob_content(&step4),
            b"ABCDEFGHIJKLMNOP\r\n516b8de15dc3a00588bc554685609ab8\r\n"
        );

        assert_eq!(
            initiator.receive_reply(&step4),
            Ok(InitiatorStep::Send(
                b"\r\n<blob status='complete'/>".to_vec()
            ))
        );
    }

    // Runs the whole exchange and returns each side's last outcome.
    fn exchange(
        initiator_password: &str,
        listener_password: &str,
    ) -> (
        Result<InitiatorStep, AuthError>,
        Result<ListenerStep, AuthError>,
    ) {
        let listener_password = listener_password.to_string();
        let mut listener =
            Listener::new(move |u| (u == USER).then(|| listener_password.clone())).expect("random");
        let mut initiator = Initiator::new(USER, initiator_password).expect("random");
        let msg = initiator
            .answer_challenge(&listener.challenge())
            .expect("challenge");
        let reply = match listener.receive(&msg) {
            Ok(ListenerStep::Reply(r)) => r,
            other => return (Err(AuthError::OutOfSequence("listener stopped")), other),
        };
        let msg = match initiator.receive_reply(&reply) {
            Ok(InitiatorStep::Send(m)) => m,
            other => return (other, Err(AuthError::OutOfSequence("initiator stopped"))),
        };
        let listener_outcome = listener.receive(&msg);
        let initiator_outcome = match &listener_outcome {
            Ok(ListenerStep::Authenticated { reply, .. }) => initiator.receive_reply(reply),
            _ => Err(AuthError::OutOfSequence("listener refused")),
        };
        (initiator_outcome, listener_outcome)
    }

    #[test]
    fn right_password_authenticates_both_sides() {
        let (initiator, listener) = exchange("hunter2", "hunter2");
        assert_eq!(initiator, Ok(InitiatorStep::Authenticated));
        assert_eq!(
            listener,
            Ok(ListenerStep::Authenticated {
                user: USER.into(),
                reply: b"\r\n<blob status='complete'/>".to_vec()
            })
        );
    }

    #[test]
    fn wrong_initiator_password_gets_535() {
        let (_, listener) = exchange("wrong", "hunter2");
        let err = listener.expect_err("must fail");
        assert_eq!(err, AuthError::WrongPassword(USER.into()));
        assert_eq!(
            (err.reply_code(), err.reply_text()),
            (535, "Authentication failure")
        );
    }

    #[test]
    fn impostor_listener_is_detected() {
        // An impostor cannot check the digest, so it accepts it blindly and proves with a
        // password it guessed; only the initiator can notice.
        let outcome = exchange_with_impostor("secret", "not-the-password");
        assert_eq!(outcome, Err(AuthError::ListenerUnverified));
        assert_eq!(AuthError::ListenerUnverified.reply_code(), 535);
        // The same forged reply built with the right password passes, so the check is real.
        assert!(matches!(
            exchange_with_impostor("secret", "secret"),
            Ok(InitiatorStep::Send(_))
        ));
    }

    // Plays a listener by hand with the hmac crate, proving with `listener_password`.
    fn exchange_with_impostor(
        initiator_password: &str,
        listener_password: &str,
    ) -> Result<InitiatorStep, AuthError> {
        let mut initiator = Initiator::new(USER, initiator_password).expect("random");
        let rs = [7u8; 16];
        let piggyback = format!(
            "<blob>{}</blob>",
            STANDARD.encode(format!("{}\r\n", STANDARD.encode(rs)))
        );
        let msg = initiator.answer_challenge(&piggyback).expect("challenge");
        let content = blob_content(&msg);
        let lines: Vec<&[u8]> = content.split(|&b| b == b'\n').collect();
        let rc = STANDARD
            .decode(lines[1].strip_suffix(b"\r").expect("crlf"))
            .expect("rc");
        let r2 = b"0123456789abcdef";
        let proof = reference_hmac(listener_password, &[USER.as_bytes(), &rc, &rs, r2]);
        let reply = format!(
            "\r\n<blob>{}</blob>",
            STANDARD.encode(format!("0123456789abcdef\r\n{proof}\r\n"))
        );
        initiator.receive_reply(reply.as_bytes())
    }

    // HMAC-MD5 straight from the hmac crate, independent of this module's helpers.
    fn reference_hmac(password: &str, parts: &[&[u8]]) -> String {
        let mut mac = HmacMd5::new_from_slice(password.as_bytes()).expect("key");
        for part in parts {
            mac.update(part);
        }
        mac.finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    #[test]
    fn unknown_user_gets_535() {
        let (rs, rc, r2) = vector_nonces();
        let mut listener = Listener::with_nonces(secret_for_client, rs, r2);
        let mut initiator = Initiator::with_nonce("one-xgrid-agent", "secret", rc);
        let msg = initiator
            .answer_challenge(&listener.challenge())
            .expect("challenge");
        let err = listener.receive(&msg).expect_err("unknown user");
        assert_eq!(err, AuthError::UnknownUser("one-xgrid-agent".into()));
        assert_eq!(err.reply_code(), 535);
    }

    #[test]
    fn second_attempt_gets_550() {
        let (rs, rc, r2) = vector_nonces();
        let mut listener = Listener::with_nonces(secret_for_client, rs, r2);
        let mut initiator = Initiator::with_nonce(USER, "secret", rc);
        let msg = initiator
            .answer_challenge(&listener.challenge())
            .expect("challenge");
        assert!(matches!(listener.receive(&msg), Ok(ListenerStep::Reply(_))));
        let done = listener
            .receive(COMPLETE_BLOB.as_bytes())
            .expect("complete");
        assert!(matches!(done, ListenerStep::Authenticated { ref user, .. } if user == USER));
        let again = listener.receive(&msg).expect_err("second attempt");
        assert_eq!(
            (again.clone(), again.reply_code()),
            (AuthError::SecondAttempt, 550)
        );

        // A retry after a failure is a second attempt too, even with the right digest.
        let mut listener = Listener::with_nonces(secret_for_client, rs, r2);
        assert_eq!(
            listener.receive(b"junk").map_err(|e| e.reply_code()),
            Err(501)
        );
        assert_eq!(listener.receive(&msg).map_err(|e| e.reply_code()), Err(550));
    }

    #[test]
    fn garbage_gets_501() {
        let b64 = |s: &str| STANDARD.encode(s);
        let cases = [
            "not xml at all".to_string(),
            "<profile/>".into(),
            "<blob>".into(),
            "<blob>!!!notbase64</blob>".into(),
            "<blob></blob>".into(),
            "<blob status='complete'/>".into(),
            "<blob status='abort'>AAAA</blob>".into(),
            "<blob>AAAA</blob><blob/>".into(),
            format!("<blob>{}</blob>", b64("one-xgrid-client\r\nEBES\r\n")),
            format!(
                "<blob>{}</blob>",
                b64("one-xgrid-client\r\nEBES\r\nnothex\r\n")
            ),
            format!(
                "<blob>{}</blob>",
                b64("one-xgrid-client\r\n!!\r\n1c6d3085abc413cdcc8e68f0f7e38098\r\n")
            ),
            format!(
                "<blob>{}</blob>",
                b64("\r\nEBES\r\n1c6d3085abc413cdcc8e68f0f7e38098\r\n")
            ),
        ];
        for case in cases {
            let mut listener = Listener::with_nonces(secret_for_client, [0; 16], [1; 16]);
            let err = listener.receive(case.as_bytes()).expect_err(&case);
            assert!(matches!(err, AuthError::Malformed(_)), "{case}: {err:?}");
            assert_eq!(err.reply_code(), 501, "{case}");
        }
        let mut listener = Listener::with_nonces(secret_for_client, [0; 16], [1; 16]);
        assert_eq!(
            listener.receive(&[0xff, 0xfe]).map_err(|e| e.reply_code()),
            Err(501)
        );
    }

    #[test]
    fn payloads_with_mime_headers_and_other_spellings_are_accepted() {
        let (rs, rc, r2) = vector_nonces();
        let mut listener = Listener::with_nonces(secret_for_client, rs, r2);
        let mut initiator = Initiator::with_nonce(USER, "secret", rc);
        let challenge = format!(
            "Content-Type: application/beep+xml\r\n\r\n  {}\n",
            listener.challenge()
        );
        let msg = initiator.answer_challenge(&challenge).expect("challenge");
        let body = std::str::from_utf8(&msg).expect("utf-8").trim();
        let with_headers = format!("Content-Type: application/octet-stream\r\n\r\n\t{body}\r\n");
        let ListenerStep::Reply(reply) = listener.receive(with_headers.as_bytes()).expect("ok")
        else {
            panic!("expected a reply")
        };
        let reply = format!(
            "Content-Type: application/beep+xml\r\n\r\n{}",
            std::str::from_utf8(&reply).expect("utf-8").trim()
        );
        assert!(matches!(
            initiator.receive_reply(reply.as_bytes()),
            Ok(InitiatorStep::Send(_))
        ));
        let done = listener
            .receive(b"Content-Type: application/beep+xml\r\n\r\n<blob status=\"complete\" />\r\n")
            .expect("complete with double quotes");
        assert!(matches!(done, ListenerStep::Authenticated { .. }));
        assert_eq!(
            initiator.receive_reply(b"\n <blob status=\"complete\"></blob> "),
            Ok(InitiatorStep::Authenticated)
        );
    }

    #[test]
    fn initiator_accepts_r2_with_line_breaks_from_other_listeners() {
        let rc = [3u8; 16];
        let rs = [9u8; 16];
        let mut initiator = Initiator::with_nonce(USER, "pw", rc);
        let piggyback = format!(
            "<blob>{}</blob>",
            STANDARD.encode(format!("{}\r\n", STANDARD.encode(rs)))
        );
        initiator.answer_challenge(&piggyback).expect("challenge");
        let r2 = b"abc\r\ndef\rghi\njklm";
        let proof = reference_hmac("pw", &[USER.as_bytes(), &rc, &rs, r2]);
        let mut content = r2.to_vec();
        content.extend_from_slice(format!("\r\n{proof}\r\n").as_bytes());
        let reply = format!("\r\n<blob>{}</blob>", STANDARD.encode(content));
        assert!(matches!(
            initiator.receive_reply(reply.as_bytes()),
            Ok(InitiatorStep::Send(_))
        ));
    }

    #[test]
    fn initiator_rejects_out_of_sequence_messages() {
        let mut initiator = Initiator::with_nonce(USER, "pw", [0; 16]);
        assert!(matches!(
            initiator.receive_reply(COMPLETE_BLOB.as_bytes()),
            Err(AuthError::OutOfSequence(_))
        ));
    }

    proptest! {
        #[test]
        fn r2_never_holds_cr_or_lf(raw in proptest::array::uniform16(any::<u8>())) {
            let r2 = without_line_breaks(raw);
            prop_assert!(!r2.contains(&b'\r') && !r2.contains(&b'\n'));
            for (before, after) in raw.iter().zip(r2) {
                if *before != b'\r' && *before != b'\n' {
                    prop_assert_eq!(*before, after);
                }
            }
        }

        #[test]
        fn listener_r2_never_holds_cr_or_lf(raw in proptest::array::uniform16(any::<u8>())) {
            let mut listener = Listener::with_nonces(secret_for_client, [5; 16], raw);
            let mut initiator = Initiator::with_nonce(USER, "secret", [6; 16]);
            let msg = initiator.answer_challenge(&listener.challenge()).expect("challenge");
            let Ok(ListenerStep::Reply(reply)) = listener.receive(&msg) else {
                panic!("digest refused");
            };
            let content = blob_content(&reply);
            prop_assert!(!content[..16].contains(&b'\r') && !content[..16].contains(&b'\n'));
            prop_assert_eq!(&content[16..18], b"\r\n");
        }
    }
}
