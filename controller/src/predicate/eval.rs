//! Evaluates a predicate against an attribute dictionary; the rules are documented on
//! [`Predicate::matches`](super::Predicate::matches).

use std::borrow::Cow;
use std::cmp::Ordering;

use xgrid_protocol::plist::{Date, Dictionary, Value};

use super::{Comparison, Expression, Operator, Predicate, StringOptions};

pub(super) fn matches(predicate: &Predicate, attributes: &Dictionary) -> bool {
    match predicate {
        Predicate::Constant(value) => *value,
        Predicate::Not(inner) => !matches(inner, attributes),
        Predicate::And(operands) => operands.iter().all(|p| matches(p, attributes)),
        Predicate::Or(operands) => operands.iter().any(|p| matches(p, attributes)),
        Predicate::Comparison(comparison) => compare(comparison, attributes),
    }
}

/// One side of a comparison once key paths are looked up.
#[derive(Debug)]
enum Operand<'a> {
    Nil,
    Text(&'a str),
    Integer(i64),
    Real(f64),
    Boolean(bool),
    Date(Date),
    Data(&'a [u8]),
    List(Vec<Operand<'a>>),
    Dictionary(&'a Dictionary),
}

fn operand<'a>(expression: &'a Expression, attributes: &'a Dictionary) -> Operand<'a> {
    match expression {
        Expression::KeyPath(components) => {
            lookup(components, attributes).map_or(Operand::Nil, from_value)
        }
        Expression::String(text) => Operand::Text(text),
        Expression::Integer(number) => Operand::Integer(*number),
        Expression::Real(number) => Operand::Real(*number),
        Expression::Boolean(value) => Operand::Boolean(*value),
        Expression::Nil => Operand::Nil,
        Expression::Aggregate(items) => {
            Operand::List(items.iter().map(|item| operand(item, attributes)).collect())
        }
    }
}

fn lookup<'a>(components: &[String], attributes: &'a Dictionary) -> Option<&'a Value> {
    let (first, rest) = components.split_first()?;
    let mut value = attributes.get(first)?;
    for component in rest {
        value = value.as_dictionary()?.get(component)?;
    }
    Some(value)
}

fn from_value(value: &Value) -> Operand<'_> {
    match value {
        Value::String(text) => Operand::Text(text),
        Value::Integer(number) => Operand::Integer(*number),
        Value::Real(number) => Operand::Real(*number),
        Value::Boolean(flag) => Operand::Boolean(*flag),
        Value::Date(date) => Operand::Date(*date),
        Value::Data(bytes) => Operand::Data(bytes),
        Value::Array(items) => Operand::List(items.iter().map(from_value).collect()),
        Value::Dictionary(dictionary) => Operand::Dictionary(dictionary),
    }
}

fn compare(comparison: &Comparison, attributes: &Dictionary) -> bool {
    let left = operand(&comparison.left, attributes);
    let right = operand(&comparison.right, attributes);
    let options = comparison.options;
    let ordering = || order(&left, &right, options);
    let strings = || texts(&left, &right, options);
    match comparison.operator {
        Operator::Equal => equal(&left, &right, options),
        Operator::NotEqual => !equal(&left, &right, options),
        Operator::Less => ordering() == Some(Ordering::Less),
        Operator::LessOrEqual => matches!(ordering(), Some(Ordering::Less | Ordering::Equal)),
        Operator::Greater => ordering() == Some(Ordering::Greater),
        Operator::GreaterOrEqual => matches!(ordering(), Some(Ordering::Greater | Ordering::Equal)),
        Operator::BeginsWith => strings().is_some_and(|(text, start)| text.starts_with(&*start)),
        Operator::EndsWith => strings().is_some_and(|(text, end)| text.ends_with(&*end)),
        Operator::Like => strings().is_some_and(|(text, pattern)| like(&text, &pattern)),
        Operator::Contains => match &left {
            Operand::List(items) => items.iter().any(|item| equal(item, &right, options)),
            _ => strings().is_some_and(|(text, part)| text.contains(&*part)),
        },
        Operator::In => match &right {
            Operand::List(items) => items.iter().any(|item| equal(&left, item, options)),
            _ => strings().is_some_and(|(part, text)| text.contains(&*part)),
        },
    }
}

fn equal(left: &Operand, right: &Operand, options: StringOptions) -> bool {
    match (left, right) {
        (Operand::Nil, Operand::Nil) => true,
        (Operand::List(a), Operand::List(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| equal(x, y, options))
        }
        (Operand::Dictionary(a), Operand::Dictionary(b)) => a == b,
        (Operand::Data(a), Operand::Data(b)) => a == b,
        _ => order(left, right, options) == Some(Ordering::Equal),
    }
}

/// `None` when the two cannot be ordered: nil, or kinds that do not compare.
fn order(left: &Operand, right: &Operand, options: StringOptions) -> Option<Ordering> {
    match (left, right) {
        (Operand::Nil, _) | (_, Operand::Nil) => None,
        (Operand::Text(a), Operand::Text(b)) => Some(fold(a, options).cmp(&fold(b, options))),
        (Operand::Boolean(_), _) | (_, Operand::Boolean(_)) => {
            Some(truth(left)?.cmp(&truth(right)?))
        }
        (Operand::Date(_), _) | (_, Operand::Date(_)) => moment(left)?.partial_cmp(&moment(right)?),
        (Operand::Integer(_) | Operand::Real(_), _)
        | (_, Operand::Integer(_) | Operand::Real(_)) => match (number(left)?, number(right)?) {
            (Number::Integer(a), Number::Integer(b)) => Some(a.cmp(&b)),
            (a, b) => a.real().partial_cmp(&b.real()),
        },
        _ => None,
    }
}

/// Both sides as strings folded by the options, for the string-only operators.
fn texts<'a>(
    left: &Operand<'a>,
    right: &Operand<'a>,
    options: StringOptions,
) -> Option<(Cow<'a, str>, Cow<'a, str>)> {
    match (left, right) {
        (Operand::Text(a), Operand::Text(b)) => Some((fold(a, options), fold(b, options))),
        _ => None,
    }
}

#[derive(Debug, Clone, Copy)]
enum Number {
    Integer(i64),
    Real(f64),
}

impl Number {
    fn real(self) -> f64 {
        match self {
            Number::Integer(number) => number as f64,
            Number::Real(number) => number,
        }
    }
}

fn number(operand: &Operand) -> Option<Number> {
    match operand {
        Operand::Integer(number) => Some(Number::Integer(*number)),
        Operand::Real(number) => Some(Number::Real(*number)),
        Operand::Text(text) => numeric_text(text),
        _ => None,
    }
}

/// A string holding a decimal number, as Xgrid sends counts and speeds. Rust's float parser
/// also takes `inf` and `NaN`, which are words here, not numbers.
fn numeric_text(text: &str) -> Option<Number> {
    let text = text.trim();
    if let Ok(number) = text.parse::<i64>() {
        return Some(Number::Integer(number));
    }
    let decimal = text.contains(|c: char| c.is_ascii_digit())
        && text
            .chars()
            .all(|c| c.is_ascii_digit() || "+-.eE".contains(c));
    if !decimal {
        return None;
    }
    text.parse::<f64>()
        .ok()
        .filter(|number| number.is_finite())
        .map(Number::Real)
}

fn truth(operand: &Operand) -> Option<bool> {
    match operand {
        Operand::Boolean(flag) => Some(*flag),
        Operand::Text(text) => {
            let text = text.trim();
            if ["YES", "TRUE"]
                .iter()
                .any(|word| word.eq_ignore_ascii_case(text))
            {
                Some(true)
            } else if ["NO", "FALSE"]
                .iter()
                .any(|word| word.eq_ignore_ascii_case(text))
            {
                Some(false)
            } else {
                numeric_text(text).map(|number| number.real() != 0.0)
            }
        }
        _ => number(operand).map(|number| number.real() != 0.0),
    }
}

fn moment(operand: &Operand) -> Option<f64> {
    match operand {
        Operand::Date(date) => Some(date.0),
        Operand::Text(text) => Date::parse_iso8601(text.trim()).map(|date| date.0),
        _ => None,
    }
}

/// Applies `[c]` and `[d]`: diacritics are removed first, so that `É` lowercases the same
/// way as `E`.
fn fold(text: &str, options: StringOptions) -> Cow<'_, str> {
    if !options.case_insensitive && !options.diacritic_insensitive {
        return Cow::Borrowed(text);
    }
    let mut folded = String::with_capacity(text.len());
    for c in text.chars() {
        let c = if options.diacritic_insensitive {
            match without_diacritic(c) {
                Some(base) => base,
                None => continue,
            }
        } else {
            c
        };
        if options.case_insensitive {
            folded.extend(c.to_lowercase());
        } else {
            folded.push(c);
        }
    }
    Cow::Owned(folded)
}

/// Base letters of U+00C0..=U+017F whose canonical decomposition is an ASCII letter plus
/// combining accents (derived from the Unicode data); `-` where a character has none.
const LATIN_BASE_LETTERS: &[u8; 192] = b"\
    AAAAAA-CEEEEIIII-NOOOOO--UUUUY--aaaaaa-ceeeeiiii-nooooo--uuuuy-y\
    AaAaAaCcCcCcCcDd--EeEeEeEeEeGgGgGgGgHh--IiIiIiIiI---JjKk-LlLlLl-\
    ---NnNnNn---OoOoOo--RrRrRrSsSsSsSsTtTt--UuUuUuUuUuUuWwYyYZzZzZz-";

/// `None` for a combining accent (to be dropped), else the character with its accents
/// removed when the table knows it.
fn without_diacritic(c: char) -> Option<char> {
    let code = u32::from(c);
    if (0x0300..=0x036F).contains(&code) {
        return None;
    }
    let base = code
        .checked_sub(0xC0)
        .and_then(|index| LATIN_BASE_LETTERS.get(usize::try_from(index).ok()?));
    match base {
        Some(&letter) if letter != b'-' => Some(char::from(letter)),
        _ => Some(c),
    }
}

/// One element of a `LIKE` pattern.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Glob {
    AnyRun,
    AnyOne,
    Exactly(char),
}

/// `LIKE`: `*` matches any run of characters (also none), `?` exactly one, and `\` makes
/// the next character literal. Backtracks only to the last `*`, so the cost stays
/// proportional to text length times pattern length.
fn like(text: &str, pattern: &str) -> bool {
    let mut globs = Vec::new();
    let mut pattern_chars = pattern.chars();
    while let Some(c) = pattern_chars.next() {
        globs.push(match c {
            '*' => Glob::AnyRun,
            '?' => Glob::AnyOne,
            '\\' => Glob::Exactly(pattern_chars.next().unwrap_or('\\')),
            c => Glob::Exactly(c),
        });
    }
    let text: Vec<char> = text.chars().collect();
    let (mut g, mut t) = (0, 0);
    // Where to resume after the last `*`: the glob after it, and the text it starts at.
    let mut resume: Option<(usize, usize)> = None;
    loop {
        match globs.get(g) {
            Some(Glob::AnyRun) => {
                resume = Some((g + 1, t));
                g += 1;
                continue;
            }
            Some(Glob::AnyOne) if t < text.len() => {
                g += 1;
                t += 1;
                continue;
            }
            Some(Glob::Exactly(c)) if text.get(t) == Some(c) => {
                g += 1;
                t += 1;
                continue;
            }
            None if t == text.len() => return true,
            _ => {}
        }
        match resume {
            Some((after_star, start)) if start < text.len() => {
                resume = Some((after_star, start + 1));
                g = after_star;
                t = start + 1;
            }
            _ => return false,
        }
    }
}
