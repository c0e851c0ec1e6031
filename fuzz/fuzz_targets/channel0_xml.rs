//! Fuzz target: see `xgrid_protocol::fuzzing::channel0_xml`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| xgrid_protocol::fuzzing::channel0_xml(data));
