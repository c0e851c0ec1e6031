//! Fuzz the old-style plist reader (hand-written batch files reach it).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| xgrid_protocol::fuzzing::old_style_plist(data));
