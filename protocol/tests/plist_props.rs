//! Property tests for the plist codecs and the message envelope: what a writer produces its
//! reader gives back, and no input, however hostile, makes a reader panic.

use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use xgrid_protocol::envelope::{Envelope, MessageType};
use xgrid_protocol::plist::{self, Date, Dictionary, Value};

fn text() -> impl Strategy<Value = String> {
    vec(any::<char>(), 0..12).prop_map(String::from_iter)
}

/// Reals every format can carry exactly (NaN never compares equal, so it is tested apart).
fn real() -> impl Strategy<Value = f64> {
    use proptest::num::f64::{INFINITE, NEGATIVE, NORMAL, POSITIVE, SUBNORMAL, ZERO};
    POSITIVE | NEGATIVE | NORMAL | SUBNORMAL | ZERO | INFINITE
}

/// Which dates a format carries: XML and old-style keep whole seconds only.
#[derive(Clone, Copy)]
enum Dates {
    WholeSeconds,
    Any,
}

fn scalar(dates: Dates) -> BoxedStrategy<Value> {
    let date = match dates {
        Dates::WholeSeconds => (-4_000_000_000i64..4_000_000_000)
            .prop_map(|s| Date(s as f64))
            .boxed(),
        Dates::Any => real()
            .prop_filter("finite", |r| r.is_finite())
            .prop_map(Date)
            .boxed(),
    };
    prop_oneof![
        text().prop_map(Value::String),
        any::<i64>().prop_map(Value::Integer),
        real().prop_map(Value::Real),
        any::<bool>().prop_map(Value::Boolean),
        date.prop_map(Value::Date),
        vec(any::<u8>(), 0..120).prop_map(Value::Data),
    ]
    .boxed()
}

fn tree(leaf: BoxedStrategy<Value>) -> impl Strategy<Value = Value> {
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..6).prop_map(Value::Array),
            btree_map(text(), inner, 0..6).prop_map(Value::Dictionary),
        ]
    })
}

/// What old-style text can carry: strings, data, arrays and dictionaries.
fn old_style_value() -> impl Strategy<Value = Value> {
    tree(
        prop_oneof![
            text().prop_map(Value::String),
            vec(any::<u8>(), 0..40).prop_map(Value::Data)
        ]
        .boxed(),
    )
}

fn payload() -> impl Strategy<Value = Dictionary> {
    btree_map(text(), tree(scalar(Dates::WholeSeconds)), 0..6)
}

fn message_type() -> impl Strategy<Value = MessageType> {
    prop_oneof![
        Just(MessageType::Request),
        Just(MessageType::Reply),
        Just(MessageType::Notification)
    ]
}

/// Bytes of `base` with a few of them overwritten, to reach deep into a reader's checks.
fn mutate(mut base: Vec<u8>, edits: &[(usize, u8)]) -> Vec<u8> {
    if !base.is_empty() {
        for &(at, byte) in edits {
            let len = base.len();
            base[at % len] = byte;
        }
    }
    base
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn xml_round_trips(value in tree(scalar(Dates::WholeSeconds))) {
        let bytes = plist::to_xml(&value);
        prop_assert_eq!(plist::from_xml(&bytes), Ok(value.clone()));
        prop_assert_eq!(plist::parse(&bytes), Ok(value));
    }

    #[test]
    fn binary_round_trips(value in tree(scalar(Dates::Any))) {
        let bytes = plist::to_binary(&value);
        prop_assert_eq!(plist::from_binary(&bytes), Ok(value.clone()));
        prop_assert_eq!(plist::parse(&bytes), Ok(value));
    }

    #[test]
    fn old_style_round_trips(value in old_style_value()) {
        let text = plist::to_old_style(&value);
        prop_assert!(text.is_ascii());
        prop_assert_eq!(plist::from_old_style(&text), Ok(value.clone()));
        prop_assert_eq!(plist::parse(text.as_bytes()), Ok(value.clone()));
        let compact = plist::to_old_style_compact(&value);
        prop_assert!(!compact.contains('\n'));
        prop_assert_eq!(plist::from_old_style(&compact), Ok(value));
    }

    #[test]
    fn envelopes_round_trip(
        identifier in text(),
        name in text(),
        message_type in message_type(),
        payload in payload(),
    ) {
        let envelope = Envelope { identifier, name, message_type, payload };
        prop_assert_eq!(Envelope::decode(&envelope.encode()), Ok(envelope.clone()));
        prop_assert_eq!(Envelope::from_beep_payload(&envelope.to_beep_payload()), Ok(envelope));
    }

    #[test]
    fn readers_never_panic_on_arbitrary_bytes(bytes in vec(any::<u8>(), 0..300)) {
        let _ = plist::parse(&bytes);
        let _ = plist::from_xml(&bytes);
        let _ = plist::from_binary(&bytes);
        let _ = plist::from_old_style(&String::from_utf8_lossy(&bytes));
        let mut bplist = b"bplist00".to_vec();
        bplist.extend_from_slice(&bytes);
        let _ = plist::parse(&bplist);
        let _ = Envelope::decode(&bytes);
    }

    #[test]
    fn readers_never_panic_on_damaged_plists(
        value in tree(scalar(Dates::Any)),
        edits in vec((any::<usize>(), any::<u8>()), 1..6),
    ) {
        let _ = plist::parse(&mutate(plist::to_binary(&value), &edits));
        let _ = plist::parse(&mutate(plist::to_xml(&value), &edits));
        let _ = plist::parse(&mutate(plist::to_old_style(&value).into_bytes(), &edits));
        let _ = plist::parse(&mutate(plist::to_old_style_compact(&value).into_bytes(), &edits));
    }

    #[test]
    fn damaged_old_style_and_xml_text_never_panics(
        value in old_style_value(),
        cut in any::<usize>(),
        insert in prop_oneof![Just("{"), Just("("), Just("\""), Just("<"), Just("/*"), Just("\\U"), Just("&#"), Just("<![CDATA["), Just("\\")],
    ) {
        for text in [plist::to_old_style(&value), String::from_utf8_lossy(&plist::to_xml(&value)).into_owned()] {
            let mut at = cut % (text.len() + 1);
            while !text.is_char_boundary(at) {
                at -= 1;
            }
            let _ = plist::parse(&text.as_bytes()[..at]);
            let spliced = format!("{}{insert}{}", &text[..at], &text[at..]);
            let _ = plist::parse(spliced.as_bytes());
        }
    }
}

#[test]
fn nan_survives_every_numeric_format() {
    let nan = Value::Real(f64::NAN);
    for bytes in [plist::to_xml(&nan), plist::to_binary(&nan)] {
        match plist::parse(&bytes) {
            Ok(Value::Real(r)) => assert!(r.is_nan()),
            other => panic!("{other:?}"),
        }
    }
}
