//! Subscription filters: the NSPredicate-format strings that clients put in the `predicate` of
//! `gridList`, `gridJobList` and `agentList` requests (`applicationIdentifier ==
//! "com.apple.xgrid.cli"`, `FALSE`), parsed once and then matched against the attribute
//! dictionary of each job, grid or agent.
//!
//! The subset understood:
//! - `TRUEPREDICATE`, `FALSEPREDICATE`, and `TRUE`/`YES`, `FALSE`/`NO` standing alone;
//! - `NOT`/`!` binds tightest, then `AND`/`&&`, then `OR`/`||`; parentheses group;
//! - comparisons `==`/`=`, `!=`/`<>`, `<`, `<=`/`=<`, `>`, `>=`/`=>`, `BEGINSWITH`,
//!   `ENDSWITH`, `CONTAINS`, `LIKE` (`*` any run, `?` one character, `\` escapes) and `IN`,
//!   each optionally followed by `[c]`, `[d]` or `[cd]`;
//! - operands: key paths (`name`, `a.b` into nested dictionaries, `#name` for a key that is
//!   also a keyword), strings in `"…"` or `'…'` with `\\ \" \' \n \r \t \uXXXX` escapes,
//!   integers and reals (optionally negative, with an exponent), `TRUE`/`YES`,
//!   `FALSE`/`NO`, `nil`/`NULL`, and aggregates `{a, b}`.
//!
//! Keywords are case-insensitive. Not supported: `MATCHES` (no regular expressions),
//! `BETWEEN`, `ANY`/`ALL`/`NONE`/`SOME`, `SELF`, functions, `$variables`, format specifiers,
//! and key path components that are not identifiers (`tasks.0`); each is reported as an
//! error rather than silently read some other way.
//!
//! How values compare (see [`Predicate::matches`]) follows NSPredicate where Xgrid needs it
//! and stays total elsewhere: a predicate never fails to evaluate, it is only true or false.

mod eval;
mod lexer;
mod parser;

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

use std::fmt;
use std::str::FromStr;

use xgrid_protocol::plist::Dictionary;

/// A parsed subscription filter.
///
/// `And` and `Or` made by the parser hold at least two operands; a chain such as
/// `a AND b AND c` is one node, and parentheses make a nested one.
#[derive(Debug, Clone, PartialEq)]
pub enum Predicate {
    /// `TRUEPREDICATE` (also a lone `TRUE`/`YES`) or `FALSEPREDICATE` (`FALSE`/`NO`).
    Constant(bool),
    Not(Box<Predicate>),
    /// True when every operand is; an empty list is true.
    And(Vec<Predicate>),
    /// True when some operand is; an empty list is false.
    Or(Vec<Predicate>),
    Comparison(Comparison),
}

/// `left operator[options] right`, e.g. `name BEGINSWITH[c] "render"`.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    pub left: Expression,
    pub operator: Operator,
    pub options: StringOptions,
    pub right: Expression,
}

/// The comparison operators, in their canonical spelling when displayed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operator {
    /// `==` (also `=`)
    Equal,
    /// `!=` (also `<>`)
    NotEqual,
    /// `<`
    Less,
    /// `<=` (also `=<`)
    LessOrEqual,
    /// `>`
    Greater,
    /// `>=` (also `=>`)
    GreaterOrEqual,
    BeginsWith,
    EndsWith,
    /// Substring of a string, or element of an array on the left.
    Contains,
    /// Wildcard match: `*` any run of characters, `?` exactly one.
    Like,
    /// Element of an aggregate or array on the right, or substring of a string on the right.
    In,
}

/// The `[c]`/`[d]`/`[cd]` options of a comparison; they only change how strings compare.
///
/// Diacritic folding covers what a server needs for Latin-script names: the accented
/// letters of Latin-1 and Latin Extended-A (U+00C0–U+017F) whose canonical decomposition is
/// an ASCII letter plus accents fold to that letter (`é` → `e`, `Ž` → `Z`), and combining
/// accents (U+0300–U+036F) are dropped. Letters that do not decompose (`ø`, `ł`, `đ`, `ß`)
/// and other scripts are left alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StringOptions {
    /// `[c]`: letters compare regardless of case (Unicode lowercase).
    pub case_insensitive: bool,
    /// `[d]`: accented Latin letters compare as their base letter.
    pub diacritic_insensitive: bool,
}

/// One side of a comparison, or an element of an aggregate.
#[derive(Debug, Clone, PartialEq)]
pub enum Expression {
    /// A key path: the first component is a key of the attribute dictionary, each further
    /// one a key of the dictionary found so far. Display writes each component bare (with
    /// `#` before keywords), so components must be identifiers to read back.
    KeyPath(Vec<String>),
    String(String),
    Integer(i64),
    /// Always finite when parsed.
    Real(f64),
    /// `TRUE`/`YES` or `FALSE`/`NO`.
    Boolean(bool),
    /// `nil` (also `NULL`): what a missing key reads as.
    Nil,
    /// `{a, b, …}`
    Aggregate(Vec<Expression>),
}

/// Why a predicate string could not be read. Every variant but `Empty` carries the
/// 1-based column (in characters) where the problem was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PredicateError {
    /// Nothing but white space was given.
    Empty,
    /// A string literal has no closing quote.
    UnterminatedString { column: usize, quote: char },
    /// A backslash in a string literal is followed by something that is not an escape.
    BadEscape { column: usize, escape: String },
    /// A number literal is too large to hold.
    BadNumber { column: usize, text: String },
    /// The text at `column` cannot continue the predicate there.
    Expected {
        column: usize,
        expected: String,
        found: String,
    },
    /// Something stands where a comparison operator should be.
    UnknownOperator { column: usize, found: String },
    /// A `[…]` option other than `c`, `d` or `cd`.
    UnknownOption { column: usize, option: String },
    /// Valid NSPredicate syntax that this controller does not evaluate.
    Unsupported { column: usize, feature: String },
    /// Parentheses, `NOT`s or aggregates nest deeper than [`MAX_NESTING`].
    TooDeep { column: usize },
}

/// How deep parentheses, `NOT`s and aggregates may nest; it bounds the recursion that
/// parsing, matching and displaying do on a predicate a client sent.
pub const MAX_NESTING: usize = 64;

impl Predicate {
    /// Reads an NSPredicate-format string.
    pub fn parse(text: &str) -> Result<Predicate, PredicateError> {
        parser::parse(text)
    }

    /// `TRUEPREDICATE`: the filter of a subscription that gave none.
    pub fn always() -> Predicate {
        Predicate::Constant(true)
    }

    /// Whether a job's, grid's or agent's attribute dictionary passes this filter.
    ///
    /// - A key path that leads nowhere reads as nil. Nil equals only nil, so `key == nil`
    ///   and `key != nil` test presence; `!=` is always the negation of `==`, so a missing
    ///   key is `!=` to any value. Every other operator is false when a side is nil.
    /// - When one side is a number (integer, real) and the other a number or a string
    ///   holding a decimal number, they compare as numbers: `taskCount > 5` works on the
    ///   `"12"` that Xgrid sends. Two strings compare as strings, by code point after the
    ///   `[c]`/`[d]` folding, even if both hold digits.
    /// - When one side is a boolean, the other is read as one (`YES`/`NO`, `true`/`false`,
    ///   any case, or a number: zero is false), so `suspended == YES` matches the string
    ///   `"YES"`; `NO` orders before `YES`.
    /// - Dates compare with dates and with ISO 8601 strings (`"2024-05-01T12:00:00Z"`).
    /// - Arrays and dictionaries are equal when their elements are; they have no order.
    /// - Values of kinds that do not compare are unequal and unordered.
    /// - `BEGINSWITH`, `ENDSWITH`, `LIKE` need strings on both sides; `CONTAINS` also takes
    ///   an array on the left, `IN` an aggregate or array (or a string) on the right.
    pub fn matches(&self, attributes: &Dictionary) -> bool {
        eval::matches(self, attributes)
    }
}

impl FromStr for Predicate {
    type Err = PredicateError;

    fn from_str(text: &str) -> Result<Predicate, PredicateError> {
        Predicate::parse(text)
    }
}

impl PredicateError {
    /// The 1-based column (in characters) of the problem; 1 for an empty predicate.
    pub fn column(&self) -> usize {
        match self {
            PredicateError::Empty => 1,
            PredicateError::UnterminatedString { column, .. }
            | PredicateError::BadEscape { column, .. }
            | PredicateError::BadNumber { column, .. }
            | PredicateError::Expected { column, .. }
            | PredicateError::UnknownOperator { column, .. }
            | PredicateError::UnknownOption { column, .. }
            | PredicateError::Unsupported { column, .. }
            | PredicateError::TooDeep { column } => *column,
        }
    }
}

impl fmt::Display for PredicateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PredicateError::Empty => f.write_str(
                "the predicate is empty: write TRUEPREDICATE to match everything or \
                 FALSEPREDICATE to match nothing",
            ),
            PredicateError::UnterminatedString { column, quote } => write!(
                f,
                "at column {column}: the string opened here has no closing {quote}"
            ),
            PredicateError::BadEscape { column, escape } => write!(
                f,
                "at column {column}: unknown escape `{escape}` in a string; the escapes are \
                 \\\\ \\\" \\' \\n \\r \\t and \\uXXXX"
            ),
            PredicateError::BadNumber { column, text } => {
                write!(f, "at column {column}: the number {text} is too large")
            }
            PredicateError::Expected {
                column,
                expected,
                found,
            } => write!(f, "at column {column}: expected {expected}, found {found}"),
            PredicateError::UnknownOperator { column, found } => write!(
                f,
                "at column {column}: unknown operator {found}; the operators are ==, !=, <, \
                 <=, >, >=, BEGINSWITH, ENDSWITH, CONTAINS, LIKE and IN"
            ),
            PredicateError::UnknownOption { column, option } => write!(
                f,
                "at column {column}: unknown option [{option}]; the options are [c] (ignore \
                 case), [d] (ignore accents) and [cd]"
            ),
            PredicateError::Unsupported { column, feature } => {
                write!(f, "at column {column}: {feature} is not supported here")
            }
            PredicateError::TooDeep { column } => write!(
                f,
                "at column {column}: parentheses, NOTs and {{…}} nest more than \
                 {MAX_NESTING} deep"
            ),
        }
    }
}

impl std::error::Error for PredicateError {}

/// Binding strength when displaying, weakest first; an operand weaker than its place
/// needs parentheses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Strength {
    Any,
    Or,
    And,
    Not,
    Atom,
}

impl Predicate {
    fn strength(&self) -> Strength {
        match self {
            Predicate::Or(items) if items.len() > 1 => Strength::Or,
            Predicate::And(items) if items.len() > 1 => Strength::And,
            Predicate::Not(_) => Strength::Not,
            _ => Strength::Atom,
        }
    }

    /// Writes `self` where only something at least as strong as `place` may stand bare.
    fn write_at(&self, f: &mut fmt::Formatter<'_>, place: Strength) -> fmt::Result {
        if self.strength() < place {
            f.write_str("(")?;
            self.write_at(f, Strength::Any)?;
            return f.write_str(")");
        }
        match self {
            Predicate::Constant(true) => f.write_str("TRUEPREDICATE"),
            Predicate::Constant(false) => f.write_str("FALSEPREDICATE"),
            Predicate::Not(inner) => {
                f.write_str("NOT ")?;
                inner.write_at(f, Strength::Not)
            }
            Predicate::And(items) => write_chain(f, items, " AND ", true, Strength::Not, place),
            Predicate::Or(items) => write_chain(f, items, " OR ", false, Strength::And, place),
            Predicate::Comparison(comparison) => write!(f, "{comparison}"),
        }
    }
}

/// Writes the operands of `AND`/`OR`; a degenerate chain of zero or one operand (which the
/// parser never makes) is written as its meaning.
fn write_chain(
    f: &mut fmt::Formatter<'_>,
    items: &[Predicate],
    separator: &str,
    empty: bool,
    operand_place: Strength,
    place: Strength,
) -> fmt::Result {
    match items {
        [] => Predicate::Constant(empty).write_at(f, place),
        [only] => only.write_at(f, place),
        _ => {
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    f.write_str(separator)?;
                }
                item.write_at(f, operand_place)?;
            }
            Ok(())
        }
    }
}

/// Canonical NSPredicate syntax: keywords in capitals, `==`/`!=`, strings in double quotes.
/// Parsing the output gives back an equal predicate.
impl fmt::Display for Predicate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write_at(f, Strength::Any)
    }
}

impl fmt::Display for Comparison {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}{} {}",
            self.left, self.operator, self.options, self.right
        )
    }
}

impl fmt::Display for Operator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Operator::Equal => "==",
            Operator::NotEqual => "!=",
            Operator::Less => "<",
            Operator::LessOrEqual => "<=",
            Operator::Greater => ">",
            Operator::GreaterOrEqual => ">=",
            Operator::BeginsWith => "BEGINSWITH",
            Operator::EndsWith => "ENDSWITH",
            Operator::Contains => "CONTAINS",
            Operator::Like => "LIKE",
            Operator::In => "IN",
        })
    }
}

/// Empty when no option is set, else `[c]`, `[d]` or `[cd]`.
impl fmt::Display for StringOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.case_insensitive, self.diacritic_insensitive) {
            (false, false) => Ok(()),
            (true, false) => f.write_str("[c]"),
            (false, true) => f.write_str("[d]"),
            (true, true) => f.write_str("[cd]"),
        }
    }
}

impl fmt::Display for Expression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expression::KeyPath(components) => {
                for (index, component) in components.iter().enumerate() {
                    if index > 0 {
                        f.write_str(".")?;
                    }
                    if lexer::is_reserved(component) {
                        f.write_str("#")?;
                    }
                    f.write_str(component)?;
                }
                Ok(())
            }
            Expression::String(text) => write_quoted(f, text),
            Expression::Integer(number) => write!(f, "{number}"),
            // Debug keeps a `.0` or an exponent, so the number reads back as a real, and
            // it is the shortest text that reads back to the same bits.
            Expression::Real(number) => write!(f, "{number:?}"),
            Expression::Boolean(true) => f.write_str("YES"),
            Expression::Boolean(false) => f.write_str("NO"),
            Expression::Nil => f.write_str("nil"),
            Expression::Aggregate(items) => {
                f.write_str("{")?;
                for (index, item) in items.iter().enumerate() {
                    if index > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{item}")?;
                }
                f.write_str("}")
            }
        }
    }
}

fn write_quoted(f: &mut fmt::Formatter<'_>, text: &str) -> fmt::Result {
    f.write_str("\"")?;
    for c in text.chars() {
        match c {
            '"' => f.write_str("\\\"")?,
            '\\' => f.write_str("\\\\")?,
            '\n' => f.write_str("\\n")?,
            '\r' => f.write_str("\\r")?,
            '\t' => f.write_str("\\t")?,
            // Control characters are all in the BMP, so four digits are enough.
            c if c.is_control() => write!(f, "\\u{:04X}", u32::from(c))?,
            c => write!(f, "{c}")?,
        }
    }
    f.write_str("\"")
}
