//! Harnesses shared by the cargo-fuzz targets in `fuzz/` and the stable test that replays
//! their corpora (`protocol/tests/fuzz_corpus.rs`). Each takes arbitrary bytes, must never
//! panic on them, and panics only when an invariant breaks (that is the fuzzer's finding).

use crate::plist;

/// The old-style (NeXTSTEP) plist reader: whatever it accepts, written back and read again,
/// is the same value.
pub fn old_style_plist(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(value) = plist::from_old_style(text) else {
        return;
    };
    let written = plist::to_old_style(&value);
    let again = plist::from_old_style(&written);
    assert_eq!(
        again.as_ref().ok(),
        Some(&value),
        "old-style plist did not survive a round trip:\n{written}"
    );
}

/// The BEEP frame decoder: the first byte picks where the stream is split in two; both halves
/// fed in turn give the same frames (or the same error) as the whole stream at once, and
/// every frame decoded re-encodes to bytes that decode to the same frame.
pub fn frame_decoder(data: &[u8]) {
    use crate::beep::frame::{parse_frame, FrameDecoder};
    let Some((&split, stream)) = data.split_first() else {
        return;
    };
    let drain = |chunks: &[&[u8]]| {
        let mut decoder = FrameDecoder::new(1 << 16);
        let mut frames = Vec::new();
        for chunk in chunks {
            decoder.push(chunk);
            loop {
                match decoder.next_frame() {
                    Ok(Some(frame)) => frames.push(frame),
                    Ok(None) => break,
                    Err(e) => return (frames, Some(e)),
                }
            }
        }
        (frames, None)
    };
    let at = usize::from(split).min(stream.len());
    let whole = drain(&[stream]);
    let (left, right) = stream.split_at(at);
    assert_eq!(
        whole,
        drain(&[left, right]),
        "splitting the stream at {at} changed the frames"
    );
    for frame in &whole.0 {
        let bytes = frame.to_bytes();
        let reparsed = parse_frame(&bytes, 1 << 16).ok().flatten().map(|(f, _)| f);
        assert_eq!(
            reparsed.as_ref(),
            Some(frame),
            "frame did not survive encode then decode"
        );
    }
}

/// Channel-0 XML: whatever parses, written back, parses to the same message.
pub fn channel0_xml(data: &[u8]) {
    use crate::beep::channel0;
    let Ok(message) = channel0::parse(data) else {
        return;
    };
    let again = channel0::parse(&message.to_payload());
    assert_eq!(
        again.as_ref().ok(),
        Some(&message),
        "channel-0 message did not survive a round trip"
    );
}
