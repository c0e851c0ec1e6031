//! Recursive-descent parser from tokens to a [`Predicate`]:
//!
//! ```text
//! predicate  = and { (OR | "||") and }
//! and        = unary { (AND | "&&") unary }
//! unary      = (NOT | "!") unary | primary
//! primary    = "(" predicate ")" | TRUEPREDICATE | FALSEPREDICATE
//!            | expression [ operator [ "[" options "]" ] expression ]
//! expression = keypath | string | number | TRUE | YES | FALSE | NO | NIL | NULL
//!            | "{" [ expression { "," expression } ] "}"
//! keypath    = word { "." word }
//! ```
//!
//! An expression with no operator after it is a predicate only when it is a boolean
//! constant (`TRUE`, `NO` …), which is how NSPredicate reads a lone `FALSE`.

use super::lexer::{column, keyword, Keyword, Lexer, Spanned, Symbol, Token};
use super::{
    Comparison, Expression, Operator, Predicate, PredicateError, StringOptions, MAX_NESTING,
};

pub(super) fn parse(text: &str) -> Result<Predicate, PredicateError> {
    if text.trim().is_empty() {
        return Err(PredicateError::Empty);
    }
    let mut parser = Parser {
        input: text,
        lexer: Lexer::new(text),
        peeked: None,
        last_end: 0,
        depth: 0,
    };
    let predicate = parser.or()?;
    let next = parser.peek()?;
    if next.token != Token::End {
        return Err(expected(
            text,
            next,
            "AND, OR or the end of the predicate".into(),
        ));
    }
    Ok(predicate)
}

struct Parser<'a> {
    input: &'a str,
    lexer: Lexer<'a>,
    peeked: Option<Spanned>,
    /// Where the last consumed token ended, to quote a whole operand in messages.
    last_end: usize,
    /// Open parentheses, `NOT`s and aggregates around the current position.
    depth: usize,
}

impl Parser<'_> {
    fn peek(&mut self) -> Result<&Spanned, PredicateError> {
        let next = match self.peeked.take() {
            Some(next) => next,
            None => self.lexer.next_token()?,
        };
        Ok(self.peeked.insert(next))
    }

    fn advance(&mut self) -> Result<Spanned, PredicateError> {
        let next = match self.peeked.take() {
            Some(next) => next,
            None => self.lexer.next_token()?,
        };
        self.last_end = next.end;
        Ok(next)
    }

    /// Whether the next token is the given operator in either spelling (`&&` or `AND`).
    fn at(&mut self, symbol: Symbol, word: Keyword) -> Result<bool, PredicateError> {
        let token = &self.peek()?.token;
        Ok(*token == Token::Symbol(symbol) || is_keyword(token, word))
    }

    /// Runs `inner` one nesting level deeper, refusing to go past [`MAX_NESTING`].
    fn nested<T>(
        &mut self,
        opener: &Spanned,
        inner: impl FnOnce(&mut Self) -> Result<T, PredicateError>,
    ) -> Result<T, PredicateError> {
        if self.depth >= MAX_NESTING {
            return Err(PredicateError::TooDeep {
                column: column(self.input, opener.start),
            });
        }
        self.depth += 1;
        let result = inner(self);
        self.depth -= 1;
        result
    }

    fn or(&mut self) -> Result<Predicate, PredicateError> {
        let first = self.and()?;
        if !self.at(Symbol::Or, Keyword::Or)? {
            return Ok(first);
        }
        let mut operands = vec![first];
        while self.at(Symbol::Or, Keyword::Or)? {
            self.advance()?;
            operands.push(self.and()?);
        }
        Ok(Predicate::Or(operands))
    }

    fn and(&mut self) -> Result<Predicate, PredicateError> {
        let first = self.unary()?;
        if !self.at(Symbol::And, Keyword::And)? {
            return Ok(first);
        }
        let mut operands = vec![first];
        while self.at(Symbol::And, Keyword::And)? {
            self.advance()?;
            operands.push(self.unary()?);
        }
        Ok(Predicate::And(operands))
    }

    fn unary(&mut self) -> Result<Predicate, PredicateError> {
        if !self.at(Symbol::Not, Keyword::Not)? {
            return self.primary();
        }
        let not = self.advance()?;
        let inner = self.nested(&not, Self::unary)?;
        Ok(Predicate::Not(Box::new(inner)))
    }

    fn primary(&mut self) -> Result<Predicate, PredicateError> {
        let input = self.input;
        let next = self.peek()?;
        if next.token == Token::LeftParen {
            let open = self.advance()?;
            let inner = self.nested(&open, Self::or)?;
            let close = self.advance()?;
            if close.token != Token::RightParen {
                let wanted = format!(
                    "`)` to close the `(` at column {}",
                    column(input, open.start)
                );
                return Err(expected(input, &close, wanted));
            }
            return Ok(inner);
        }
        for (word, value) in [
            (Keyword::TruePredicate, true),
            (Keyword::FalsePredicate, false),
        ] {
            if is_keyword(&next.token, word) {
                self.advance()?;
                return Ok(Predicate::Constant(value));
            }
        }

        let left_start = next.start;
        let left = self.expression("a comparison, TRUEPREDICATE, FALSEPREDICATE, NOT or `(`")?;
        let left_text = quote(self.input.get(left_start..self.last_end).unwrap_or(""));
        let next = self.peek()?;
        let Some(operator) = comparison_operator(&next.token) else {
            if let Expression::Boolean(value) = left {
                return Ok(Predicate::Constant(value));
            }
            return Err(not_an_operator(input, next, &left_text));
        };
        self.advance()?;
        let options = self.options()?;
        let right = self.expression("a key path or value to compare with")?;
        Ok(Predicate::Comparison(Comparison {
            left,
            operator,
            options,
            right,
        }))
    }

    /// The optional `[c]`, `[d]` or `[cd]` after an operator.
    fn options(&mut self) -> Result<StringOptions, PredicateError> {
        let mut options = StringOptions::default();
        if self.peek()?.token != Token::LeftBracket {
            return Ok(options);
        }
        self.advance()?;
        let letters = self.advance()?;
        let Token::Word {
            text,
            escaped: false,
        } = &letters.token
        else {
            return Err(expected(
                self.input,
                &letters,
                "c, d or cd between `[` and `]`".into(),
            ));
        };
        for letter in text.chars() {
            match letter.to_ascii_lowercase() {
                'c' => options.case_insensitive = true,
                'd' => options.diacritic_insensitive = true,
                _ => {
                    return Err(PredicateError::UnknownOption {
                        column: column(self.input, letters.start),
                        option: text.clone(),
                    })
                }
            }
        }
        let close = self.advance()?;
        if close.token != Token::RightBracket {
            return Err(expected(self.input, &close, "`]` after the options".into()));
        }
        Ok(options)
    }

    fn expression(&mut self, wanted: &str) -> Result<Expression, PredicateError> {
        let next = self.advance()?;
        let token = match next.token {
            Token::String(text) => return Ok(Expression::String(text)),
            Token::Integer(number) => return Ok(Expression::Integer(number)),
            Token::Real(number) => return Ok(Expression::Real(number)),
            Token::LeftBrace => {
                let opener = Spanned {
                    token: Token::LeftBrace,
                    ..next
                };
                return self.nested(&opener, Self::aggregate);
            }
            Token::Word { text, escaped } => match keyword(&text).filter(|_| !escaped) {
                None => return self.key_path(text),
                Some(Keyword::True) => return Ok(Expression::Boolean(true)),
                Some(Keyword::False) => return Ok(Expression::Boolean(false)),
                Some(Keyword::Nil) => return Ok(Expression::Nil),
                Some(Keyword::Unsupported(feature)) => {
                    return Err(unsupported(self.input, next.start, feature))
                }
                Some(_) => Token::Word { text, escaped },
            },
            Token::Unknown(text) if text == "$" => {
                return Err(unsupported(self.input, next.start, "a $variable"))
            }
            Token::Unknown(text) if text.starts_with('%') => {
                return Err(unsupported(self.input, next.start, "a % format specifier"))
            }
            other => other,
        };
        let next = Spanned { token, ..next };
        Err(expected(self.input, &next, wanted.into()))
    }

    fn key_path(&mut self, first: String) -> Result<Expression, PredicateError> {
        let mut components = vec![first];
        while self.peek()?.token == Token::Dot {
            self.advance()?;
            let next = self.advance()?;
            match next.token {
                Token::Word { text, escaped } if escaped || keyword(&text).is_none() => {
                    components.push(text);
                }
                _ => {
                    let wanted = "a key name after `.` (write #name for a key that is a keyword)";
                    return Err(expected(self.input, &next, wanted.into()));
                }
            }
        }
        Ok(Expression::KeyPath(components))
    }

    /// The rest of `{a, b, …}` once the `{` is read.
    fn aggregate(&mut self) -> Result<Expression, PredicateError> {
        let mut items = Vec::new();
        if self.peek()?.token == Token::RightBrace {
            self.advance()?;
            return Ok(Expression::Aggregate(items));
        }
        loop {
            items.push(self.expression("a value in the `{…}` list")?);
            let next = self.advance()?;
            match next.token {
                Token::Comma => {}
                Token::RightBrace => return Ok(Expression::Aggregate(items)),
                _ => return Err(expected(self.input, &next, "`,` or `}` in the list".into())),
            }
        }
    }
}

fn is_keyword(token: &Token, wanted: Keyword) -> bool {
    matches!(token, Token::Word { text, escaped: false } if keyword(text) == Some(wanted))
}

fn comparison_operator(token: &Token) -> Option<Operator> {
    match token {
        Token::Symbol(Symbol::Equal) => Some(Operator::Equal),
        Token::Symbol(Symbol::NotEqual) => Some(Operator::NotEqual),
        Token::Symbol(Symbol::Less) => Some(Operator::Less),
        Token::Symbol(Symbol::LessOrEqual) => Some(Operator::LessOrEqual),
        Token::Symbol(Symbol::Greater) => Some(Operator::Greater),
        Token::Symbol(Symbol::GreaterOrEqual) => Some(Operator::GreaterOrEqual),
        Token::Word {
            text,
            escaped: false,
        } => match keyword(text)? {
            Keyword::In => Some(Operator::In),
            Keyword::BeginsWith => Some(Operator::BeginsWith),
            Keyword::EndsWith => Some(Operator::EndsWith),
            Keyword::Contains => Some(Operator::Contains),
            Keyword::Like => Some(Operator::Like),
            _ => None,
        },
        _ => None,
    }
}

/// The error for what follows an operand when it is not a comparison operator.
fn not_an_operator(input: &str, next: &Spanned, left: &str) -> PredicateError {
    let at = column(input, next.start);
    match &next.token {
        Token::Word { text, escaped } => match keyword(text).filter(|_| !escaped) {
            Some(Keyword::Unsupported(feature)) => unsupported(input, next.start, feature),
            None => PredicateError::UnknownOperator {
                column: at,
                found: describe(input, next),
            },
            Some(_) => expected(input, next, format!("an operator such as == after {left}")),
        },
        Token::Unknown(_) => PredicateError::UnknownOperator {
            column: at,
            found: describe(input, next),
        },
        _ => expected(input, next, format!("an operator such as == after {left}")),
    }
}

fn expected(input: &str, found: &Spanned, wanted: String) -> PredicateError {
    PredicateError::Expected {
        column: column(input, found.start),
        expected: wanted,
        found: describe(input, found),
    }
}

fn unsupported(input: &str, start: usize, feature: &str) -> PredicateError {
    PredicateError::Unsupported {
        column: column(input, start),
        feature: feature.to_string(),
    }
}

/// How a token appeared in the input, for "found …" in messages.
fn describe(input: &str, token: &Spanned) -> String {
    if token.token == Token::End {
        return "the end of the predicate".into();
    }
    quote(input.get(token.start..token.end).unwrap_or(""))
}

/// Source text in backticks, shortened so that a long literal does not swamp the message.
fn quote(text: &str) -> String {
    const LIMIT: usize = 30;
    match text.char_indices().nth(LIMIT) {
        Some((cut, _)) => format!("`{}…`", text.get(..cut).unwrap_or(text)),
        None => format!("`{text}`"),
    }
}
