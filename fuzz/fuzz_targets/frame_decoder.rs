//! Fuzz target: see `xgrid_protocol::fuzzing::frame_decoder`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| xgrid_protocol::fuzzing::frame_decoder(data));
