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
