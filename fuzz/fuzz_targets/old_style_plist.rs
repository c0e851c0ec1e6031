//! Fuzz target: see `xgrid_protocol::fuzzing::old_style_plist`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| xgrid_protocol::fuzzing::old_style_plist(data));
