//! Wire benchmark (issue: protocol): prints figures, asserts nothing about time.
//!
//! - BEEP frame decoding throughput, in MB/s, for 4 KiB MSG frames fed in 64 KiB chunks as a
//!   socket would deliver them (target ≥ 1 GB/s on one core);
//! - Xgrid envelope decode + encode per second for a typical `jobAttributes` reply
//!   (target ≥ 100,000/s on one core).
//!
//! Run with `cargo bench -p xgrid-protocol --bench wire`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use xgrid_protocol::beep::frame::{encode_data, FrameDecoder, FrameKind};
use xgrid_protocol::beep::Frame;
use xgrid_protocol::envelope::Envelope;
use xgrid_protocol::plist::{Date, Dictionary, Value};

const FRAME_PAYLOAD: usize = 4096;
const CHUNK: usize = 64 * 1024;
const ROUNDS: usize = 7;

fn main() {
    println!("xgrid-protocol wire benchmark ({ROUNDS} rounds each, median and best shown)");
    frames();
    envelopes();
}

/// Median and best of `ROUNDS` measurements of `per_second`.
fn report(label: &str, unit: &str, target: f64, mut samples: Vec<f64>) {
    samples.sort_by(f64::total_cmp);
    let median = samples[samples.len() / 2];
    let best = samples[samples.len() - 1];
    let verdict = if median >= target { "meets" } else { "BELOW" };
    println!("{label}: median {median:.0} {unit}, best {best:.0} {unit} ({verdict} target {target:.0} {unit})");
}

fn frames() {
    let payload = vec![b'x'; FRAME_PAYLOAD];
    let count = 16 * 1024; // 64 MiB of payload per round
    let mut stream = Vec::with_capacity(count * (FRAME_PAYLOAD + 40));
    let mut seqno = 0u32;
    for msgno in 0..count as u32 {
        encode_data(
            FrameKind::Msg,
            1,
            msgno,
            false,
            seqno,
            &payload,
            &mut stream,
        );
        seqno = seqno.wrapping_add(FRAME_PAYLOAD as u32);
    }
    let mut samples = Vec::new();
    for _ in 0..ROUNDS {
        let mut decoder = FrameDecoder::default();
        let mut decoded = 0usize;
        let start = Instant::now();
        for chunk in stream.chunks(CHUNK) {
            decoder.push(chunk);
            while let Some(frame) = decoder
                .next_frame()
                .expect("benchmark stream is well formed")
            {
                if let Frame::Data(f) = black_box(frame) {
                    decoded += f.payload.len();
                }
            }
        }
        let elapsed = start.elapsed();
        assert_eq!(decoded, count * FRAME_PAYLOAD, "every frame decoded");
        samples.push(stream.len() as f64 / elapsed.as_secs_f64() / 1e6);
    }
    println!(
        "frames: {count} MSG frames of {FRAME_PAYLOAD} octets ({:.1} MB per round) in {CHUNK}-octet reads",
        stream.len() as f64 / 1e6
    );
    report("frame decoding", "MB/s", 1000.0, samples);
}

/// A `jobAttributes` reply as our controller sends it: numbers as strings, dates, a real.
fn job_attributes_reply() -> Envelope {
    let now = Date::from_unix_seconds(1_795_000_000);
    let mut attributes = Dictionary::new();
    for (key, value) in [
        ("activeCPUPower", Value::from("0")),
        ("applicationIdentifier", Value::from("com.apple.xgrid.cli")),
        ("dateNow", Value::Date(now)),
        ("dateStarted", Value::Date(Date(now.0 - 40.0))),
        ("dateStopped", Value::Date(Date(now.0 - 2.0))),
        ("dateSubmitted", Value::Date(Date(now.0 - 41.0))),
        ("jobStatus", Value::from("Finished")),
        ("name", Value::from("/usr/bin/cal")),
        ("percentDone", Value::Real(100.0)),
        ("taskCount", Value::from("1")),
        ("undoneTaskCount", Value::from("0")),
    ] {
        attributes.insert(key.to_string(), value);
    }
    let mut payload = Dictionary::new();
    payload.insert("jobAttributes".to_string(), Value::Dictionary(attributes));
    Envelope::reply("17", "jobAttributes", payload)
}

fn envelopes() {
    let bytes = job_attributes_reply().encode();
    let batch = 20_000;
    let mut samples = Vec::new();
    for _ in 0..ROUNDS {
        let start = Instant::now();
        let mut total = 0usize;
        for _ in 0..batch {
            let envelope = Envelope::decode(black_box(&bytes)).expect("benchmark envelope decodes");
            total += black_box(envelope.encode()).len();
        }
        let elapsed: Duration = start.elapsed();
        assert_eq!(
            total,
            batch * bytes.len(),
            "re-encoding gives the same size"
        );
        samples.push(batch as f64 / elapsed.as_secs_f64());
    }
    println!(
        "envelopes: a jobAttributes reply of {} octets, decoded then encoded",
        bytes.len()
    );
    report("envelope decode+encode", "per second", 100_000.0, samples);
}
