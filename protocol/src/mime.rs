//! The MIME entity inside a BEEP payload (RFC 3080 §2.2.1.1): optional headers, a blank
//! line, then the body. Xgrid data messages carry no headers (the payload is `\r\n` + plist),
//! but Java peers add `Content-Type` and channel 0 traditionally does, so readers accept both.

/// The body of a BEEP payload: whatever follows the first empty line when the payload starts
/// with headers, the payload minus its leading CRLF when there are none, and the whole
/// payload when it starts straight with content (some peers leave out even the blank line).
pub fn entity_body(payload: &[u8]) -> &[u8] {
    if let Some(rest) = payload.strip_prefix(b"\r\n") {
        return rest;
    }
    if let Some(rest) = payload.strip_prefix(b"\n") {
        return rest;
    }
    if !payload.starts_with(b"bplist") && starts_with_header(payload) {
        if let Some(i) = find(payload, b"\r\n\r\n") {
            return &payload[i + 4..];
        }
        if let Some(i) = find(payload, b"\n\n") {
            return &payload[i + 2..];
        }
    }
    payload
}

/// A payload with no headers: `\r\n` then the body, as Xgrid writes its data messages.
pub fn bare_entity(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 2);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    out
}

/// A payload with one `Content-Type` header, as channel 0 messages are written.
pub fn typed_entity(content_type: &str, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + content_type.len() + 20);
    out.extend_from_slice(b"Content-Type: ");
    out.extend_from_slice(content_type.as_bytes());
    out.extend_from_slice(b"\r\n\r\n");
    out.extend_from_slice(body);
    out
}

// A header line is `Token: value`; plists and XML start with '<', '{', '(', 'b' of bplist…
// none of which is a token followed by ':' before any space or '<'.
fn starts_with_header(payload: &[u8]) -> bool {
    let line_end = payload
        .iter()
        .position(|&b| b == b'\n')
        .unwrap_or(payload.len());
    let line = &payload[..line_end];
    match line.iter().position(|&b| b == b':') {
        Some(colon) if colon > 0 => line[..colon]
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
        _ => false,
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_every_form_a_peer_sends() {
        assert_eq!(entity_body(b"\r\n<plist/>"), b"<plist/>");
        assert_eq!(
            entity_body(b"Content-Type: application/octet-stream\r\n\r\n<plist/>"),
            b"<plist/>"
        );
        assert_eq!(
            entity_body(b"Content-Type: a/b\r\nX-Other: 1\r\n\r\nbody"),
            b"body"
        );
        assert_eq!(entity_body(b"<greeting/>"), b"<greeting/>");
        assert_eq!(entity_body(b"bplist00\x01:"), b"bplist00\x01:");
        assert_eq!(entity_body(b""), b"");
    }

    #[test]
    fn writers_round_trip() {
        assert_eq!(entity_body(&bare_entity(b"x")), b"x");
        assert_eq!(
            entity_body(&typed_entity("application/beep+xml", b"<ok/>")),
            b"<ok/>"
        );
    }
}
