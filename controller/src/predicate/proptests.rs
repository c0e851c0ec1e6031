//! Property tests: parsing never panics, and whatever parses displays back to itself;
//! generated predicates survive display then parse; numeric strings order like numbers.

use proptest::collection::vec;
use proptest::prelude::*;
use xgrid_protocol::plist::{Dictionary, Value};

use super::*;

/// Key names: identifiers, including ones that collide with keywords in any case, which
/// display must escape with `#`.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[a-zA-Z_][a-zA-Z0-9_]{0,8}",
        1 => prop::sample::select(vec![
            "in", "AND", "Or", "not", "yes", "NO", "nil", "null", "like", "TRUEPREDICATE",
            "matches", "Any", "self", "contains",
        ])
        .prop_map(str::to_string),
    ]
}

fn expression() -> impl Strategy<Value = Expression> {
    let leaf = prop_oneof![
        vec(key(), 1..4).prop_map(Expression::KeyPath),
        any::<String>().prop_map(Expression::String),
        any::<i64>().prop_map(Expression::Integer),
        any::<f64>()
            .prop_filter("literals are finite", |r| r.is_finite())
            .prop_map(Expression::Real),
        any::<bool>().prop_map(Expression::Boolean),
        Just(Expression::Nil),
    ];
    leaf.prop_recursive(3, 12, 4, |inner| {
        vec(inner, 0..4).prop_map(Expression::Aggregate)
    })
}

fn operator() -> impl Strategy<Value = Operator> {
    prop::sample::select(vec![
        Operator::Equal,
        Operator::NotEqual,
        Operator::Less,
        Operator::LessOrEqual,
        Operator::Greater,
        Operator::GreaterOrEqual,
        Operator::BeginsWith,
        Operator::EndsWith,
        Operator::Contains,
        Operator::Like,
        Operator::In,
    ])
}

fn predicate() -> impl Strategy<Value = Predicate> {
    let comparison = (
        expression(),
        operator(),
        any::<(bool, bool)>(),
        expression(),
    )
        .prop_map(|(left, operator, (c, d), right)| {
            Predicate::Comparison(Comparison {
                left,
                operator,
                options: StringOptions {
                    case_insensitive: c,
                    diacritic_insensitive: d,
                },
                right,
            })
        });
    let leaf = prop_oneof![
        1 => any::<bool>().prop_map(Predicate::Constant),
        4 => comparison,
    ];
    leaf.prop_recursive(5, 40, 4, |inner| {
        prop_oneof![
            inner.clone().prop_map(|p| Predicate::Not(Box::new(p))),
            vec(inner.clone(), 2..5).prop_map(Predicate::And),
            vec(inner, 2..5).prop_map(Predicate::Or),
        ]
    })
}

/// Text made of predicate pieces in any order, to reach the lexer's and parser's error paths.
fn token_soup() -> impl Strategy<Value = String> {
    let piece = prop::sample::select(vec![
        "a",
        "b.c",
        "#in",
        "name",
        " ",
        "==",
        "=",
        "!=",
        "<>",
        "<",
        "<=",
        ">",
        ">=",
        "=>",
        "&&",
        "||",
        "!",
        "AND",
        "or",
        "NOT",
        "(",
        ")",
        "{",
        "}",
        ",",
        "[c]",
        "[cd]",
        "[",
        "]",
        "BEGINSWITH",
        "endswith",
        "CONTAINS",
        "LIKE",
        "IN",
        "TRUEPREDICATE",
        "FALSEPREDICATE",
        "YES",
        "no",
        "nil",
        "\"x\"",
        "'y'",
        "\"",
        "'",
        "\\",
        "1",
        "-2",
        "3.5",
        "1e3",
        "-",
        ".",
        "#",
        "~",
        "$",
        "%",
        "é",
        "MATCHES",
        "ANY",
    ]);
    vec(piece, 0..24).prop_map(|pieces| pieces.concat())
}

/// Text shaped like a predicate, in the many spellings a client may use, and sometimes
/// damaged by one inserted or deleted character; most of it parses, so the round trip
/// through display is exercised on what real input looks like.
fn predicate_text() -> impl Strategy<Value = String> {
    let operand = prop::sample::select(vec![
        "a",
        "b.c",
        "#in",
        "name",
        "\"x\"",
        "'y\\'s'",
        "\"\\u00e9\\n\"",
        "1",
        "-2",
        "3.5",
        "-1e3",
        "YES",
        "no",
        "nil",
        "NULL",
        "{1, 'a'}",
        "{}",
        "{a, {2}}",
    ]);
    let operator = prop::sample::select(vec![
        "==",
        "=",
        "!=",
        "<>",
        "<",
        "<=",
        "=<",
        ">",
        ">=",
        "=>",
        "BEGINSWITH",
        "endswith",
        "Contains",
        "LIKE",
        "in",
        "==[c]",
        "LIKE[cd]",
        "IN[d]",
        "beginswith[C]",
    ]);
    let comparison = (operand.clone(), operator, operand)
        .prop_map(|(left, operator, right)| format!("{left} {operator} {right}"));
    let constant = prop::sample::select(vec!["TRUEPREDICATE", "falsepredicate", "YES", "FALSE"])
        .prop_map(str::to_string);
    let whole = prop_oneof![3 => comparison, 1 => constant].prop_recursive(4, 24, 2, |inner| {
        prop_oneof![
            inner.clone().prop_map(|p| format!("NOT {p}")),
            inner.clone().prop_map(|p| format!("!{p}")),
            inner.clone().prop_map(|p| format!("({p})")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("{a} AND {b}")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("{a}&&{b}")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("{a} or {b}")),
            (inner.clone(), inner).prop_map(|(a, b)| format!("{a} || {b}")),
        ]
    });
    let damage = (
        any::<prop::sample::Index>(),
        prop::sample::select(vec![
            None,
            Some('"'),
            Some('('),
            Some(')'),
            Some('='),
            Some('!'),
            Some(' '),
            Some('\\'),
        ]),
    );
    (whole, prop::option::weighted(0.3, damage)).prop_map(|(text, damage)| {
        let Some((at, insert)) = damage else {
            return text;
        };
        let mut chars: Vec<char> = text.chars().collect();
        let at = at.index(chars.len() + 1);
        match insert {
            Some(c) => chars.insert(at, c),
            None if at < chars.len() => {
                chars.remove(at);
            }
            None => {}
        }
        chars.into_iter().collect()
    })
}

fn attributes() -> Dictionary {
    let mut nested = Dictionary::new();
    nested.insert("c".into(), Value::String("2".into()));
    let mut attributes = Dictionary::new();
    attributes.insert("a".into(), Value::String("12".into()));
    attributes.insert("name".into(), Value::String("x".into()));
    attributes.insert("b".into(), Value::Dictionary(nested));
    attributes.insert(
        "in".into(),
        Value::Array(vec![Value::Integer(1), Value::Boolean(true)]),
    );
    attributes
}

/// Whatever parses must evaluate without panicking and display as text that parses back
/// to the same predicate.
fn check_text(text: &str) -> Result<(), TestCaseError> {
    if let Ok(predicate) = Predicate::parse(text) {
        predicate.matches(&attributes());
        let shown = predicate.to_string();
        prop_assert_eq!(
            Predicate::parse(&shown),
            Ok(predicate),
            "shown as {}",
            shown
        );
    }
    Ok(())
}

proptest! {
    #[test]
    fn arbitrary_text_never_panics(text in any::<String>()) {
        check_text(&text)?;
    }

    #[test]
    fn token_soup_never_panics(text in token_soup()) {
        check_text(&text)?;
    }

    #[test]
    fn predicate_text_never_panics_and_round_trips(text in predicate_text()) {
        check_text(&text)?;
    }

    #[test]
    fn display_then_parse_round_trips(predicate in predicate()) {
        let shown = predicate.to_string();
        prop_assert_eq!(Predicate::parse(&shown), Ok(predicate), "shown as {}", shown);
    }

    #[test]
    fn numeric_strings_order_as_numbers(attribute in any::<i64>(), literal in any::<i64>()) {
        let mut job = Dictionary::new();
        job.insert("taskCount".into(), Value::String(attribute.to_string()));
        for (operator, expected) in [
            ("==", attribute == literal),
            ("!=", attribute != literal),
            ("<", attribute < literal),
            ("<=", attribute <= literal),
            (">", attribute > literal),
            (">=", attribute >= literal),
        ] {
            let source = format!("taskCount {operator} {literal}");
            let predicate = Predicate::parse(&source);
            prop_assert_eq!(predicate.map(|p| p.matches(&job)), Ok(expected), "{}", source);
        }
    }
}
