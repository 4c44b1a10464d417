//! A hand-written lexer and recursive-descent parser for filters and
//! `order_by` lists.
//!
//! Every error is [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput)
//! with a message of the form `filter: at column N: expected X, found Y`,
//! where N is the 1-based position in characters. The parser never panics,
//! whatever the input (a property test feeds it arbitrary text), and nests
//! at most [`MAX_DEPTH`] levels so hostile input cannot exhaust the stack.

use chrono::{DateTime, SubsecRound, Utc};

use super::ast::{CmpOp, Direction, Expr, Field, FieldType, Filter, Literal, SortKey};
use crate::error::{Error, Result};
use crate::platform::entities::RunStatus;

/// Deepest nesting of parentheses and `NOT`s a filter may use.
pub const MAX_DEPTH: usize = 64;

/// Longest filter or `order_by` text accepted, in characters.
pub const MAX_LEN: usize = 16 * 1024;

/// What a filter or `order_by` text may hold: any characters but the
/// control characters other than tab, line feed and carriage return.
pub const QUERY_TEXT_PATTERN: &str = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]*$";

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Num(f64),
    LParen,
    RParen,
    Comma,
    Op(CmpOp),
    Eof,
}

#[derive(Debug, Clone)]
struct Token {
    tok: Tok,
    /// 1-based column, in characters.
    column: usize,
}

fn describe(tok: &Tok) -> String {
    match tok {
        Tok::Ident(s) => match keyword(s) {
            Some(k) => format!("keyword {k}"),
            None => format!("`{s}`"),
        },
        Tok::Str(s) => {
            let short: String = s.chars().take(20).collect();
            let more = if s.chars().count() > 20 { "..." } else { "" };
            format!("string '{short}{more}'")
        }
        Tok::Num(n) => format!("number {n}"),
        Tok::LParen => "`(`".into(),
        Tok::RParen => "`)`".into(),
        Tok::Comma => "`,`".into(),
        Tok::Op(op) => format!("`{}`", op.as_str()),
        Tok::Eof => "end of input".into(),
    }
}

const KEYWORDS: [&str; 9] = [
    "AND", "OR", "NOT", "IN", "LIKE", "IS", "NULL", "ASC", "DESC",
];

fn keyword(s: &str) -> Option<&'static str> {
    KEYWORDS.into_iter().find(|k| k.eq_ignore_ascii_case(s))
}

fn error(what: &str, column: usize, message: impl std::fmt::Display) -> Error {
    Error::invalid(format!("{what}: at column {column}: {message}")).with_field(what)
}

fn lex(what: &str, input: &str) -> Result<Vec<Token>> {
    let chars: Vec<char> = input.chars().collect();
    if chars.len() > MAX_LEN {
        return Err(error(
            what,
            1,
            format!(
                "longer than {MAX_LEN} characters ({} characters)",
                chars.len()
            ),
        ));
    }
    // Whitespace may be any; other control characters belong in no
    // query (and PostgreSQL cannot compare text holding U+0000).
    if let Some(at) = chars
        .iter()
        .position(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
    {
        return Err(error(
            what,
            at + 1,
            format!(
                "control character U+{:04X}: only tab, line feed and carriage return may appear",
                u32::from(chars[at])
            ),
        ));
    }
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let column = i + 1;
        let start = i;
        let tok = match c {
            c if c.is_whitespace() => {
                i += 1;
                continue;
            }
            '(' => {
                i += 1;
                Tok::LParen
            }
            ')' => {
                i += 1;
                Tok::RParen
            }
            ',' => {
                i += 1;
                Tok::Comma
            }
            '=' => {
                i += 1;
                Tok::Op(CmpOp::Eq)
            }
            '!' => {
                if chars.get(i + 1) == Some(&'=') {
                    i += 2;
                    Tok::Op(CmpOp::Ne)
                } else {
                    return Err(error(what, column, "expected `!=`, found `!`"));
                }
            }
            '<' => match chars.get(i + 1) {
                Some('=') => {
                    i += 2;
                    Tok::Op(CmpOp::Le)
                }
                Some('>') => {
                    i += 2;
                    Tok::Op(CmpOp::Ne)
                }
                _ => {
                    i += 1;
                    Tok::Op(CmpOp::Lt)
                }
            },
            '>' => {
                if chars.get(i + 1) == Some(&'=') {
                    i += 2;
                    Tok::Op(CmpOp::Ge)
                } else {
                    i += 1;
                    Tok::Op(CmpOp::Gt)
                }
            }
            '\'' => {
                let mut value = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        None => {
                            return Err(error(
                                what,
                                column,
                                "unterminated string: expected a closing `'`",
                            ));
                        }
                        Some('\'') if chars.get(i + 1) == Some(&'\'') => {
                            value.push('\'');
                            i += 2;
                        }
                        Some('\'') => {
                            i += 1;
                            break;
                        }
                        Some(&c) => {
                            value.push(c);
                            i += 1;
                        }
                    }
                }
                Tok::Str(value)
            }
            c if c.is_ascii_digit()
                || (c == '-' && chars.get(i + 1).is_some_and(char::is_ascii_digit)) =>
            {
                i += 1;
                let digits = |i: &mut usize| {
                    let from = *i;
                    while chars.get(*i).is_some_and(char::is_ascii_digit) {
                        *i += 1;
                    }
                    *i > from
                };
                digits(&mut i);
                if chars.get(i) == Some(&'.') {
                    i += 1;
                    if !digits(&mut i) {
                        return Err(error(what, i + 1, "expected a digit after `.`"));
                    }
                }
                if matches!(chars.get(i), Some('e' | 'E')) {
                    i += 1;
                    if matches!(chars.get(i), Some('+' | '-')) {
                        i += 1;
                    }
                    if !digits(&mut i) {
                        return Err(error(what, i + 1, "expected a digit in the exponent"));
                    }
                }
                let text: String = chars[start..i].iter().collect();
                match text.parse::<f64>() {
                    Ok(n) if n.is_finite() => Tok::Num(n),
                    _ => {
                        return Err(error(
                            what,
                            column,
                            format!("number {text} is out of range"),
                        ));
                    }
                }
            }
            c if c.is_ascii_alphabetic() || c == '_' => {
                while chars
                    .get(i)
                    .is_some_and(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
                {
                    i += 1;
                }
                Tok::Ident(chars[start..i].iter().collect())
            }
            other => {
                return Err(error(
                    what,
                    column,
                    format!("unexpected character `{other}`"),
                ));
            }
        };
        tokens.push(Token { tok, column });
    }
    tokens.push(Token {
        tok: Tok::Eof,
        column: chars.len() + 1,
    });
    Ok(tokens)
}

struct Parser {
    what: &'static str,
    tokens: Vec<Token>,
    pos: usize,
    depth: usize,
}

impl Parser {
    fn new(what: &'static str, input: &str) -> Result<Parser> {
        Ok(Parser {
            what,
            tokens: lex(what, input)?,
            pos: 0,
            depth: 0,
        })
    }

    fn peek(&self) -> &Token {
        // The token list always ends with Eof, and `advance` never moves
        // past it.
        &self.tokens[self.pos.min(self.tokens.len() - 1)]
    }

    fn advance(&mut self) -> Token {
        let token = self.peek().clone();
        if token.tok != Tok::Eof {
            self.pos += 1;
        }
        token
    }

    fn at_keyword(&self, k: &str) -> bool {
        matches!(&self.peek().tok, Tok::Ident(s) if s.eq_ignore_ascii_case(k))
    }

    fn eat_keyword(&mut self, k: &str) -> bool {
        let at = self.at_keyword(k);
        if at {
            self.advance();
        }
        at
    }

    fn expected(&self, expected: impl std::fmt::Display) -> Error {
        let token = self.peek();
        error(
            self.what,
            token.column,
            format!("expected {expected}, found {}", describe(&token.tok)),
        )
    }

    fn enter(&mut self) -> Result<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(error(
                self.what,
                self.peek().column,
                format!("nested deeper than {MAX_DEPTH} levels"),
            ));
        }
        Ok(())
    }

    fn filter(&mut self) -> Result<Filter> {
        if self.peek().tok == Tok::Eof {
            return Ok(Filter(None));
        }
        let expr = self.or_expr()?;
        if self.peek().tok != Tok::Eof {
            return Err(self.expected("`AND`, `OR` or end of input"));
        }
        Ok(Filter(Some(expr)))
    }

    fn or_expr(&mut self) -> Result<Expr> {
        let mut operands = vec![self.and_expr()?];
        while self.eat_keyword("OR") {
            operands.push(self.and_expr()?);
        }
        Ok(if operands.len() == 1 {
            operands.remove(0)
        } else {
            Expr::Or(operands)
        })
    }

    fn and_expr(&mut self) -> Result<Expr> {
        let mut operands = vec![self.unary()?];
        while self.eat_keyword("AND") {
            operands.push(self.unary()?);
        }
        Ok(if operands.len() == 1 {
            operands.remove(0)
        } else {
            Expr::And(operands)
        })
    }

    fn unary(&mut self) -> Result<Expr> {
        if self.eat_keyword("NOT") {
            self.enter()?;
            let operand = self.unary()?;
            self.depth -= 1;
            return Ok(Expr::Not(Box::new(operand)));
        }
        if self.peek().tok == Tok::LParen {
            self.advance();
            self.enter()?;
            let inner = self.or_expr()?;
            self.depth -= 1;
            if self.peek().tok != Tok::RParen {
                return Err(self.expected("`AND`, `OR` or `)`"));
            }
            self.advance();
            return Ok(inner);
        }
        self.predicate()
    }

    fn field(&mut self, expected: &str) -> Result<(Field, usize)> {
        let token = self.peek().clone();
        match &token.tok {
            Tok::Ident(name) if keyword(name).is_none() => {
                self.advance();
                match Field::from_name(name) {
                    Some(field) => Ok((field, token.column)),
                    None if name.starts_with("tags.") => Err(error(
                        self.what,
                        token.column,
                        format!(
                            "`{name}` is not a valid tag: a tag key is 1 to 255 ASCII letters, digits, `_`, `-` or `.`"
                        ),
                    )),
                    None => Err(error(
                        self.what,
                        token.column,
                        format!(
                            "unknown field `{name}`; known fields: {}",
                            Field::known_names()
                        ),
                    )),
                }
            }
            _ => Err(self.expected(expected)),
        }
    }

    fn predicate(&mut self) -> Result<Expr> {
        let (field, _) = self.field("a field name, `NOT` or `(`")?;
        let token = self.peek().clone();
        match &token.tok {
            Tok::Op(op) => {
                let op = *op;
                self.advance();
                let value = self.value(&field, &format!("a value after `{}`", op.as_str()))?;
                if field == Field::Status && matches!(op, CmpOp::Eq | CmpOp::Ne) {
                    self.check_status(&value, token.column)?;
                }
                Ok(Expr::Compare { field, op, value })
            }
            Tok::Ident(s) if s.eq_ignore_ascii_case("IS") => {
                self.advance();
                let negated = self.eat_keyword("NOT");
                if !self.eat_keyword("NULL") {
                    return Err(self.expected(if negated {
                        "`NULL`"
                    } else {
                        "`NULL` or `NOT NULL`"
                    }));
                }
                Ok(Expr::IsNull { field, negated })
            }
            Tok::Ident(s)
                if s.eq_ignore_ascii_case("NOT")
                    || s.eq_ignore_ascii_case("IN")
                    || s.eq_ignore_ascii_case("LIKE") =>
            {
                let negated = self.eat_keyword("NOT");
                if self.eat_keyword("IN") {
                    self.in_list(field, negated)
                } else if self.at_keyword("LIKE") {
                    let like = self.advance();
                    self.like(field, negated, like.column)
                } else {
                    Err(self.expected("`IN` or `LIKE` after `NOT`"))
                }
            }
            _ => Err(self.expected(format!(
                "an operator after `{field}` (`=`, `!=`, `<`, `<=`, `>`, `>=`, `IN`, `LIKE`, `IS`)"
            ))),
        }
    }

    fn in_list(&mut self, field: Field, negated: bool) -> Result<Expr> {
        if self.peek().tok != Tok::LParen {
            return Err(self.expected("`(` after `IN`"));
        }
        self.advance();
        let mut values = Vec::new();
        loop {
            let column = self.peek().column;
            let value = self.value(&field, "a value in the `IN` list")?;
            if field == Field::Status {
                self.check_status(&value, column)?;
            }
            values.push(value);
            match self.peek().tok {
                Tok::Comma => {
                    self.advance();
                }
                Tok::RParen => {
                    self.advance();
                    return Ok(Expr::In {
                        field,
                        values,
                        negated,
                    });
                }
                _ => return Err(self.expected("`,` or `)` in the `IN` list")),
            }
        }
    }

    fn like(&mut self, field: Field, negated: bool, column: usize) -> Result<Expr> {
        if field.field_type() != FieldType::Text {
            return Err(error(
                self.what,
                column,
                format!("`LIKE` applies to text fields, and `{field}` is not one"),
            ));
        }
        let token = self.peek().clone();
        let Tok::Str(pattern) = &token.tok else {
            return Err(self.expected("a string pattern after `LIKE`"));
        };
        self.advance();
        // A trailing escape has nothing to escape; PostgreSQL rejects it.
        let trailing = pattern.chars().rev().take_while(|c| *c == '\\').count();
        if trailing % 2 == 1 {
            return Err(error(
                self.what,
                token.column,
                "a `LIKE` pattern must not end with a lone `\\`",
            ));
        }
        Ok(Expr::Like {
            field,
            pattern: pattern.clone(),
            negated,
        })
    }

    fn check_status(&self, value: &Literal, column: usize) -> Result<()> {
        if let Literal::Text(s) = value
            && s.parse::<RunStatus>().is_err()
        {
            return Err(error(
                self.what,
                column,
                format!("unknown status '{s}'; expected 'running', 'completed' or 'failed'"),
            ));
        }
        Ok(())
    }

    /// A literal, checked and converted to `field`'s type.
    fn value(&mut self, field: &Field, expected: &str) -> Result<Literal> {
        let token = self.peek().clone();
        let mismatch = |wanted: &str| {
            error(
                self.what,
                token.column,
                format!(
                    "`{field}` holds {wanted}; expected {wanted}, found {}",
                    describe(&token.tok)
                ),
            )
        };
        let literal = match (&token.tok, field.field_type()) {
            (Tok::Str(s), FieldType::Text) => Literal::Text(s.clone()),
            (Tok::Num(n), FieldType::Number | FieldType::Integer) => Literal::Number(*n),
            (Tok::Str(s), FieldType::Timestamp) => match DateTime::parse_from_rfc3339(s) {
                Ok(t) => Literal::Timestamp(t.with_timezone(&Utc).trunc_subsecs(6)),
                Err(e) => {
                    return Err(error(
                        self.what,
                        token.column,
                        format!(
                            "`{field}` holds timestamps; expected RFC 3339 like '2026-11-22T10:00:00Z', found '{s}' ({e})"
                        ),
                    ));
                }
            },
            (Tok::Num(_), FieldType::Text) => return Err(mismatch("text")),
            (Tok::Str(_), FieldType::Number | FieldType::Integer) => {
                return Err(mismatch("numbers"));
            }
            (Tok::Num(_), FieldType::Timestamp) => return Err(mismatch("timestamps")),
            _ => return Err(self.expected(expected)),
        };
        self.advance();
        Ok(literal)
    }

    fn order_by(&mut self) -> Result<Vec<SortKey>> {
        let mut keys: Vec<SortKey> = Vec::new();
        if self.peek().tok == Tok::Eof {
            return Ok(keys);
        }
        loop {
            let (field, column) = self.field("a field name")?;
            if let Field::Tag(_) = field {
                return Err(error(
                    self.what,
                    column,
                    format!("cannot sort by tag `{field}`; sort by a run field"),
                ));
            }
            if keys.iter().any(|k| k.field == field) {
                return Err(error(self.what, column, format!("`{field}` appears twice")));
            }
            let direction = if self.eat_keyword("DESC") {
                Direction::Desc
            } else {
                self.eat_keyword("ASC");
                Direction::Asc
            };
            keys.push(SortKey { field, direction });
            match self.peek().tok {
                Tok::Comma => {
                    self.advance();
                }
                Tok::Eof => return Ok(keys),
                _ => return Err(self.expected("`ASC`, `DESC`, `,` or end of input")),
            }
        }
    }
}

/// Parses filter text. See the module docs of
/// [`search`](crate::platform::search) for the grammar.
pub fn parse_filter(input: &str) -> Result<Filter> {
    Parser::new("filter", input)?.filter()
}

/// Parses an `order_by` list such as `accuracy DESC, started_at`: run
/// fields (not tags), each at most once, `ASC` by default.
pub fn parse_order_by(input: &str) -> Result<Vec<SortKey>> {
    Parser::new("order_by", input)?.order_by()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(input: &str) -> String {
        parse_filter(input).unwrap_err().message().to_owned()
    }

    #[test]
    fn precedence_is_not_then_and_then_or() {
        let f = parse_filter("a_is_not_a_field = 1").unwrap_err();
        assert!(f.message().contains("unknown field `a_is_not_a_field`"));
        let parsed = parse_filter("status = 'running' or not accuracy > 0.5 and loss < 1")
            .unwrap()
            .0
            .unwrap();
        let Expr::Or(ops) = parsed else {
            panic!("OR at the top: {parsed:?}")
        };
        assert!(matches!(&ops[1], Expr::And(and) if matches!(and[0], Expr::Not(_))));
    }

    #[test]
    fn errors_name_column_and_expectation() {
        assert_eq!(
            err("accuracy >= "),
            "filter: at column 13: expected a value after `>=`, found end of input"
        );
        assert_eq!(
            err("framework = 'x' AND"),
            "filter: at column 20: expected a field name, `NOT` or `(`, found end of input"
        );
        assert_eq!(
            err("(framework = 'x'"),
            "filter: at column 17: expected `AND`, `OR` or `)`, found end of input"
        );
        assert!(
            err("accuracy > 'x'").starts_with("filter: at column 12: `accuracy` holds numbers")
        );
        assert!(err("model_id = 'it''s").starts_with("filter: at column 12: unterminated string"));
        assert!(err("model_id LIKE 'a\\'").contains("lone `\\`"));
        assert!(err("status = 'done'").contains("unknown status 'done'"));
        assert!(err("accuracy LIKE 'x'").contains("`LIKE` applies to text fields"));
        assert!(err("started_at > 'yesterday'").contains("RFC 3339"));
    }

    #[test]
    fn deep_nesting_is_refused_not_overflowed() {
        let deep = format!("{}accuracy > 1{}", "(".repeat(5_000), ")".repeat(5_000));
        assert!(err(&deep).contains("nested deeper"));
        let nots = format!("{}accuracy > 1", "NOT ".repeat(3_000));
        assert!(err(&nots).contains("nested deeper"));
    }

    #[test]
    fn order_by_lists() {
        let keys = parse_order_by("accuracy desc, started_at").unwrap();
        assert_eq!(keys.len(), 2);
        assert_eq!(keys[0].direction, Direction::Desc);
        assert_eq!(keys[1].direction, Direction::Asc);
        assert!(parse_order_by("tags.x").is_err());
        assert!(parse_order_by("accuracy, accuracy").is_err());
        assert!(parse_order_by("accuracy sideways").is_err());
        assert!(parse_order_by("").unwrap().is_empty());
    }
}
