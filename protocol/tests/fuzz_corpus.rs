//! Replays every input of the cargo-fuzz corpora (`fuzz/corpus/<target>/`) through the same
//! harnesses the fuzz targets use, on the stable compiler, so CI catches a regression on any
//! input a fuzzer once found interesting.

use std::path::{Path, PathBuf};

fn corpus(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("corpus {} is missing: {e}", dir.display()))
        .map(|entry| entry.expect("readable corpus entry").path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "corpus {} is empty", dir.display());
    files
}

fn replay(target: &str, harness: fn(&[u8])) {
    for path in corpus(target) {
        let data = std::fs::read(&path).expect("readable corpus file");
        let outcome = std::panic::catch_unwind(|| harness(&data));
        assert!(
            outcome.is_ok(),
            "{target}: input {} broke the harness",
            path.display()
        );
    }
}

#[test]
fn old_style_plist_corpus() {
    replay("old_style_plist", xgrid_protocol::fuzzing::old_style_plist);
}

#[test]
fn frame_decoder_corpus() {
    replay("frame_decoder", xgrid_protocol::fuzzing::frame_decoder);
}

#[test]
fn channel0_xml_corpus() {
    replay("channel0_xml", xgrid_protocol::fuzzing::channel0_xml);
}
