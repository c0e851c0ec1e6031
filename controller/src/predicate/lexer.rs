//! Splits a predicate string into tokens (words, literals, operator symbols), each with the
//! byte span it came from so that errors can point at it.

use super::PredicateError;

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Token {
    /// A key name or a keyword. `escaped` when written with a leading `#`, which makes a
    /// keyword an ordinary key name.
    Word {
        text: String,
        escaped: bool,
    },
    String(String),
    Integer(i64),
    Real(f64),
    Symbol(Symbol),
    /// Operator characters that form no operator (`~=`, `===`), or a stray character; the
    /// parser decides what to call it from where it stands.
    Unknown(String),
    LeftParen,
    RightParen,
    LeftBrace,
    RightBrace,
    LeftBracket,
    RightBracket,
    Comma,
    Dot,
    End,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Symbol {
    Equal,
    NotEqual,
    Less,
    LessOrEqual,
    Greater,
    GreaterOrEqual,
    And,
    Or,
    Not,
}

#[derive(Debug, Clone, PartialEq)]
pub(super) struct Spanned {
    pub token: Token,
    /// Byte offsets into the predicate string.
    pub start: usize,
    pub end: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Keyword {
    And,
    Or,
    Not,
    In,
    BeginsWith,
    EndsWith,
    Contains,
    Like,
    TruePredicate,
    FalsePredicate,
    True,
    False,
    Nil,
    /// NSPredicate reserves the word; this controller does not evaluate what it means.
    Unsupported(&'static str),
}

/// Every word NSPredicate reserves that can appear here, matched without regard to case.
const KEYWORDS: &[(&str, Keyword)] = &[
    ("AND", Keyword::And),
    ("OR", Keyword::Or),
    ("NOT", Keyword::Not),
    ("IN", Keyword::In),
    ("BEGINSWITH", Keyword::BeginsWith),
    ("ENDSWITH", Keyword::EndsWith),
    ("CONTAINS", Keyword::Contains),
    ("LIKE", Keyword::Like),
    ("TRUEPREDICATE", Keyword::TruePredicate),
    ("FALSEPREDICATE", Keyword::FalsePredicate),
    ("TRUE", Keyword::True),
    ("YES", Keyword::True),
    ("FALSE", Keyword::False),
    ("NO", Keyword::False),
    ("NIL", Keyword::Nil),
    ("NULL", Keyword::Nil),
    (
        "MATCHES",
        Keyword::Unsupported("MATCHES (regular expressions)"),
    ),
    ("BETWEEN", Keyword::Unsupported("BETWEEN")),
    ("ANY", Keyword::Unsupported("ANY (collection quantifiers)")),
    (
        "SOME",
        Keyword::Unsupported("SOME (collection quantifiers)"),
    ),
    ("ALL", Keyword::Unsupported("ALL (collection quantifiers)")),
    (
        "NONE",
        Keyword::Unsupported("NONE (collection quantifiers)"),
    ),
    ("SELF", Keyword::Unsupported("SELF")),
    ("SUBQUERY", Keyword::Unsupported("SUBQUERY")),
    ("FUNCTION", Keyword::Unsupported("FUNCTION")),
    ("CAST", Keyword::Unsupported("CAST")),
];

pub(super) fn keyword(word: &str) -> Option<Keyword> {
    KEYWORDS
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(word))
        .map(|&(_, keyword)| keyword)
}

/// Whether a key name must be written `#name` to be read as a key.
pub(super) fn is_reserved(word: &str) -> bool {
    keyword(word).is_some()
}

/// The 1-based character column of a byte offset.
pub(super) fn column(input: &str, byte: usize) -> usize {
    input.get(..byte).map_or(0, |before| before.chars().count()) + 1
}

fn is_word_start(c: char) -> bool {
    c.is_alphabetic() || c == '_'
}

fn is_word_part(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Characters that make up operators, known or not.
fn is_symbol_char(c: char) -> bool {
    matches!(
        c,
        '=' | '<' | '>' | '!' | '&' | '|' | '~' | '^' | '%' | '*' | '+' | '/' | '-'
    )
}

/// Operators, longest first so that `<=` is not read as `<` then `=`.
const SYMBOLS: &[(&str, Symbol)] = &[
    ("==", Symbol::Equal),
    ("=<", Symbol::LessOrEqual),
    ("=>", Symbol::GreaterOrEqual),
    ("<=", Symbol::LessOrEqual),
    (">=", Symbol::GreaterOrEqual),
    ("!=", Symbol::NotEqual),
    ("<>", Symbol::NotEqual),
    ("&&", Symbol::And),
    ("||", Symbol::Or),
    ("=", Symbol::Equal),
    ("<", Symbol::Less),
    (">", Symbol::Greater),
    ("!", Symbol::Not),
];

pub(super) struct Lexer<'a> {
    input: &'a str,
    position: usize,
}

impl<'a> Lexer<'a> {
    pub(super) fn new(input: &'a str) -> Lexer<'a> {
        Lexer { input, position: 0 }
    }

    fn rest(&self) -> &'a str {
        self.input.get(self.position..).unwrap_or("")
    }

    pub(super) fn next_token(&mut self) -> Result<Spanned, PredicateError> {
        let rest = self.rest().trim_start();
        self.position = self.input.len() - rest.len();
        let start = self.position;
        let mut chars = rest.chars();
        let Some(first) = chars.next() else {
            return Ok(Spanned {
                token: Token::End,
                start,
                end: start,
            });
        };
        let second = chars.next();
        let token = match first {
            '(' | ')' | '{' | '}' | '[' | ']' | ',' | '.' => {
                self.position += 1;
                match first {
                    '(' => Token::LeftParen,
                    ')' => Token::RightParen,
                    '{' => Token::LeftBrace,
                    '}' => Token::RightBrace,
                    '[' => Token::LeftBracket,
                    ']' => Token::RightBracket,
                    ',' => Token::Comma,
                    _ => Token::Dot,
                }
            }
            '"' | '\'' => self.string(first)?,
            '-' if second.is_some_and(|c| c.is_ascii_digit()) => self.number()?,
            c if c.is_ascii_digit() => self.number()?,
            '#' if second.is_some_and(is_word_start) => {
                self.position += 1;
                self.word(true)
            }
            c if is_word_start(c) => self.word(false),
            c if is_symbol_char(c) => self.symbol(),
            c => {
                self.position += c.len_utf8();
                Token::Unknown(c.to_string())
            }
        };
        Ok(Spanned {
            token,
            start,
            end: self.position,
        })
    }

    fn word(&mut self, escaped: bool) -> Token {
        let rest = self.rest();
        let length = rest.find(|c| !is_word_part(c)).unwrap_or(rest.len());
        self.position += length;
        Token::Word {
            text: rest.get(..length).unwrap_or("").to_string(),
            escaped,
        }
    }

    /// `-?digits(.digits)?([eE][+-]?digits)?`; an integer that does not fit in 64 bits is
    /// kept as a real rather than refused.
    fn number(&mut self) -> Result<Token, PredicateError> {
        let start = self.position;
        let bytes = self.rest().as_bytes();
        let digits_from = |index: usize| {
            index
                + bytes.get(index..).map_or(0, |tail| {
                    tail.iter().take_while(|b| b.is_ascii_digit()).count()
                })
        };
        let sign = usize::from(bytes.first() == Some(&b'-'));
        let mut end = digits_from(sign);
        let mut real = false;
        if bytes.get(end) == Some(&b'.') && bytes.get(end + 1).is_some_and(u8::is_ascii_digit) {
            end = digits_from(end + 1);
            real = true;
        }
        if matches!(bytes.get(end), Some(b'e' | b'E')) {
            let digits_at = end + 1 + usize::from(matches!(bytes.get(end + 1), Some(b'+' | b'-')));
            if bytes.get(digits_at).is_some_and(u8::is_ascii_digit) {
                end = digits_from(digits_at);
                real = true;
            }
        }
        self.position += end;
        let text = self.input.get(start..self.position).unwrap_or("");
        if !real {
            if let Ok(integer) = text.parse::<i64>() {
                return Ok(Token::Integer(integer));
            }
        }
        match text.parse::<f64>() {
            Ok(number) if number.is_finite() => Ok(Token::Real(number)),
            _ => Err(PredicateError::BadNumber {
                column: column(self.input, start),
                text: text.to_string(),
            }),
        }
    }

    fn string(&mut self, quote: char) -> Result<Token, PredicateError> {
        let start = self.position;
        let mut text = String::new();
        let mut chars = self.rest().char_indices().skip(1);
        while let Some((offset, c)) = chars.next() {
            if c == quote {
                self.position += offset + c.len_utf8();
                return Ok(Token::String(text));
            }
            if c != '\\' {
                text.push(c);
                continue;
            }
            let bad_escape = |escape: String| PredicateError::BadEscape {
                column: column(self.input, start + offset),
                escape,
            };
            let Some((_, escaped)) = chars.next() else {
                break;
            };
            match escaped {
                'n' => text.push('\n'),
                'r' => text.push('\r'),
                't' => text.push('\t'),
                '\\' | '"' | '\'' => text.push(escaped),
                'u' => {
                    let hex: String = chars.by_ref().take(4).map(|(_, c)| c).collect();
                    let decoded = (hex.len() == 4 && hex.chars().all(|c| c.is_ascii_hexdigit()))
                        .then(|| u32::from_str_radix(&hex, 16).ok())
                        .flatten()
                        .and_then(char::from_u32);
                    match decoded {
                        Some(c) => text.push(c),
                        None => return Err(bad_escape(format!("\\u{hex}"))),
                    }
                }
                other => return Err(bad_escape(format!("\\{other}"))),
            }
        }
        Err(PredicateError::UnterminatedString {
            column: column(self.input, start),
            quote,
        })
    }

    /// A known operator, or the whole run of operator characters when it is none (so
    /// `===` is reported as one unknown operator rather than `==` followed by `=`).
    fn symbol(&mut self) -> Token {
        let rest = self.rest();
        let run_end = |from: usize| {
            let mut end = from;
            let mut chars = rest.get(from..).unwrap_or("").chars().peekable();
            while let Some(c) = chars.next() {
                // A minus before a digit starts a negative number: `a==-1`.
                let starts_number = c == '-' && chars.peek().is_some_and(char::is_ascii_digit);
                if !is_symbol_char(c) || starts_number {
                    break;
                }
                end += c.len_utf8();
            }
            end
        };
        let known = SYMBOLS.iter().find(|(text, _)| rest.starts_with(text));
        let (length, token) = match known {
            // `!` may directly follow an operator (`a && !b`), so it does not lengthen
            // the run; any other operator character does.
            Some(&(text, symbol)) => {
                let continues = rest
                    .get(text.len()..)
                    .and_then(|after| after.chars().next())
                    .is_some_and(|c| c != '!' && run_end(text.len()) > text.len());
                if continues {
                    let end = run_end(0);
                    (
                        end,
                        Token::Unknown(rest.get(..end).unwrap_or("").to_string()),
                    )
                } else {
                    (text.len(), Token::Symbol(symbol))
                }
            }
            None => {
                let end = run_end(0).max(1);
                (
                    end,
                    Token::Unknown(rest.get(..end).unwrap_or("").to_string()),
                )
            }
        };
        self.position += length;
        token
    }
}
