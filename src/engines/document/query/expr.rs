//! Aggregation expressions.
//!
//! # Contracts
//!
//! - [`Expr::parse`] accepts field paths (`"$a.b"`, with `$$ROOT` and
//!   `$$CURRENT`, optionally followed by a path), `$$REMOVE`, literals,
//!   arrays and documents of expressions, and the operators `$literal $add
//!   $subtract $multiply $divide $mod $round $abs $concat $toString $toLower
//!   $toUpper $dateToString $ifNull $cond $eq $ne $gt $gte $lt $lte $and $or
//!   $not $in $size $arrayElemAt $max $min $sum $avg`. Any other operator or
//!   variable is `Unsupported`, named; a wrong number of arguments or a
//!   document mixing an operator with other keys is `InvalidInput`.
//! - `$$REMOVE` (and any path below it) evaluates to missing: the field it
//!   is assigned to is left out or removed.
//! - Field paths follow MongoDB's aggregation rules: a path through an array
//!   of documents yields the array of the values found (`$a.b` over
//!   `a: [{b: 1}, {b: 2}]` is `[1, 2]`); numeric components are field names,
//!   not indexes. A missing value evaluates to `None` and is left out of
//!   documents built by expressions.
//! - Null or missing operands make arithmetic, `$concat`, `$round`, `$abs`,
//!   `$arrayElemAt` and `$toString` return null; `$toLower`/`$toUpper` return
//!   `""`. Comparisons use [`compare_bson`] across types, with missing below
//!   null (so `{$eq: ["$missing", null]}` is false, as in MongoDB).
//! - `$in: [e, array]` is true when `e` equals an element (missing equals
//!   nothing but undefined, as in `$eq`); a second argument that is not an
//!   array, missing included, is `InvalidInput`. `$size` of a non-array is
//!   `InvalidInput`; `$arrayElemAt` counts negative indexes from the end and
//!   is missing out of range; `$ifNull` takes two or more arguments and
//!   returns the first that is not null or missing, else the last as it is;
//!   `$cond` takes `[if, then, else]` or `{if, then, else}`.
//! - `$dateToString: {date, format, timezone, onNull}` follows MongoDB's
//!   order of checks: a non-string `format` or an unknown specifier fails
//!   first, then a bad `timezone`; a null or missing date gives `onNull`
//!   (null when absent); a null zone or format gives null; then the date
//!   must be a date, a timestamp or an ObjectId. Without `format` it is
//!   `%Y-%m-%dT%H:%M:%S.%LZ` in UTC and `%Y-%m-%dT%H:%M:%S.%L` in another
//!   zone (MongoDB 7.1+). Zones are `UTC` and `±HH`, `±HHMM`, `±HH:MM`
//!   offsets; a named zone is `Unsupported` (see `date`). Constant formats
//!   and zones are checked when the expression is parsed.
//! - Numeric results keep MongoDB's types (see `arith`); `$divide` and
//!   `$avg` give doubles; decimal128 arithmetic is `Unsupported`. Division or
//!   modulo by zero and operands of the wrong type are `InvalidInput` at
//!   evaluation time.

use std::cmp::Ordering;

use bson::{Bson, Document};

use crate::error::{Error, Result};

use super::arith::{Number, Sum, add, modulo, multiply, not_numeric, subtract};
use super::compare::compare_bson;
use super::date;
use super::path::type_name;

/// A parsed expression: a `"$path"`, a literal, or an operator.
#[derive(Debug, Clone, PartialEq)]
pub struct Expr {
    node: Node,
}

#[derive(Debug, Clone, PartialEq)]
enum Node {
    Literal(Bson),
    /// A path from the current document; empty for `$$ROOT` itself.
    Path(Vec<String>),
    Object(Vec<(String, Node)>),
    Array(Vec<Node>),
    Op(Op, Vec<Node>),
    /// `$$REMOVE` (and any path below it): always missing.
    Remove,
    DateToString(Box<DateToString>),
}

/// `$dateToString`'s arguments, each an expression.
#[derive(Debug, Clone, PartialEq)]
struct DateToString {
    date: Node,
    format: Option<Node>,
    timezone: Option<Node>,
    on_null: Option<Node>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Op {
    Add,
    Subtract,
    Multiply,
    Divide,
    Mod,
    Round,
    Abs,
    Concat,
    ToString,
    ToLower,
    ToUpper,
    IfNull,
    Cond,
    Eq,
    Ne,
    Gt,
    Gte,
    Lt,
    Lte,
    And,
    Or,
    Not,
    Size,
    ArrayElemAt,
    In,
    Max,
    Min,
    Sum,
    Avg,
}

impl Op {
    fn from_name(name: &str) -> Option<Op> {
        Some(match name {
            "$add" => Op::Add,
            "$subtract" => Op::Subtract,
            "$multiply" => Op::Multiply,
            "$divide" => Op::Divide,
            "$mod" => Op::Mod,
            "$round" => Op::Round,
            "$abs" => Op::Abs,
            "$concat" => Op::Concat,
            "$toString" => Op::ToString,
            "$toLower" => Op::ToLower,
            "$toUpper" => Op::ToUpper,
            "$ifNull" => Op::IfNull,
            "$cond" => Op::Cond,
            "$eq" => Op::Eq,
            "$ne" => Op::Ne,
            "$gt" => Op::Gt,
            "$gte" => Op::Gte,
            "$lt" => Op::Lt,
            "$lte" => Op::Lte,
            "$and" => Op::And,
            "$or" => Op::Or,
            "$not" => Op::Not,
            "$size" => Op::Size,
            "$arrayElemAt" => Op::ArrayElemAt,
            "$in" => Op::In,
            "$max" => Op::Max,
            "$min" => Op::Min,
            "$sum" => Op::Sum,
            "$avg" => Op::Avg,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Op::Add => "$add",
            Op::Subtract => "$subtract",
            Op::Multiply => "$multiply",
            Op::Divide => "$divide",
            Op::Mod => "$mod",
            Op::Round => "$round",
            Op::Abs => "$abs",
            Op::Concat => "$concat",
            Op::ToString => "$toString",
            Op::ToLower => "$toLower",
            Op::ToUpper => "$toUpper",
            Op::IfNull => "$ifNull",
            Op::Cond => "$cond",
            Op::Eq => "$eq",
            Op::Ne => "$ne",
            Op::Gt => "$gt",
            Op::Gte => "$gte",
            Op::Lt => "$lt",
            Op::Lte => "$lte",
            Op::And => "$and",
            Op::Or => "$or",
            Op::Not => "$not",
            Op::Size => "$size",
            Op::ArrayElemAt => "$arrayElemAt",
            Op::In => "$in",
            Op::Max => "$max",
            Op::Min => "$min",
            Op::Sum => "$sum",
            Op::Avg => "$avg",
        }
    }

    /// Allowed argument counts, `(min, max)`.
    fn arity(self) -> (usize, usize) {
        match self {
            Op::Subtract | Op::Divide | Op::Mod | Op::ArrayElemAt | Op::In => (2, 2),
            Op::Eq | Op::Ne | Op::Gt | Op::Gte | Op::Lt | Op::Lte => (2, 2),
            Op::Round => (1, 2),
            Op::Abs | Op::ToString | Op::ToLower | Op::ToUpper | Op::Not | Op::Size => (1, 1),
            Op::IfNull => (2, usize::MAX),
            Op::Cond => (3, 3),
            Op::Add | Op::Multiply | Op::Concat | Op::And | Op::Or => (0, usize::MAX),
            Op::Max | Op::Min | Op::Sum | Op::Avg => (1, usize::MAX),
        }
    }
}

impl Expr {
    /// Parses an expression.
    pub fn parse(expr: &Bson) -> Result<Expr> {
        Ok(Expr {
            node: parse_node(expr)?,
        })
    }

    /// An expression that evaluates to `value` as is.
    pub fn literal(value: Bson) -> Expr {
        Expr {
            node: Node::Literal(value),
        }
    }

    /// Evaluates against `doc`; `None` is a missing value.
    pub fn eval(&self, doc: &Document) -> Result<Option<Bson>> {
        eval(&self.node, doc)
    }
}

/// Parses `"$a.b"` or `"$$ROOT.a"` into path components.
fn parse_field_path(text: &str) -> Result<Node> {
    // The variable, if any, and the path after it (`None`: no path at all).
    let (variable, body) = match text.strip_prefix("$$") {
        Some(var) => {
            let (name, rest) = match var.split_once('.') {
                Some((name, rest)) => (name, Some(rest)),
                None => (var, None),
            };
            if !matches!(name, "ROOT" | "CURRENT" | "REMOVE") {
                return Err(Error::unsupported(format!(
                    "unsupported aggregation variable `$${name}`"
                )));
            }
            (Some(name), rest)
        }
        None => (None, Some(&text[1..])),
    };
    let parts: Vec<String> = body
        .map(|b| b.split('.').map(str::to_string).collect())
        .unwrap_or_default();
    if parts.iter().any(|p| p.is_empty() || p.starts_with('$')) {
        return Err(Error::invalid(format!("invalid field path `{text}`")));
    }
    Ok(if variable == Some("REMOVE") {
        Node::Remove
    } else {
        Node::Path(parts)
    })
}

fn parse_node(expr: &Bson) -> Result<Node> {
    match expr {
        Bson::String(s) if s.starts_with('$') => parse_field_path(s),
        Bson::Array(items) => Ok(Node::Array(
            items.iter().map(parse_node).collect::<Result<_>>()?,
        )),
        Bson::Document(d) => {
            let Some(first) = d.keys().next() else {
                return Ok(Node::Object(Vec::new()));
            };
            if first.starts_with('$') {
                if d.len() != 1 {
                    return Err(Error::invalid(format!(
                        "an expression object must contain exactly one field, the operator; found `{first}` with {} others",
                        d.len() - 1
                    )));
                }
                let arg = d.get(first).unwrap_or(&Bson::Null);
                return parse_operator(first, arg);
            }
            let mut fields = Vec::with_capacity(d.len());
            for (k, v) in d {
                if k.starts_with('$') || k.contains('.') || k.is_empty() {
                    return Err(Error::invalid(format!(
                        "invalid field name `{k}` in an expression object"
                    )));
                }
                fields.push((k.clone(), parse_node(v)?));
            }
            Ok(Node::Object(fields))
        }
        other => Ok(Node::Literal(other.clone())),
    }
}

fn parse_operator(name: &str, arg: &Bson) -> Result<Node> {
    if name == "$literal" {
        return Ok(Node::Literal(arg.clone()));
    }
    if name == "$dateToString" {
        return parse_date_to_string(arg);
    }
    let Some(op) = Op::from_name(name) else {
        return Err(Error::unsupported(format!(
            "unsupported expression operator `{name}`"
        )));
    };
    if op == Op::Cond
        && let Bson::Document(d) = arg
    {
        let mut parts = [None, None, None];
        for (k, v) in d {
            let slot = match k.as_str() {
                "if" => 0,
                "then" => 1,
                "else" => 2,
                other => {
                    return Err(Error::invalid(format!(
                        "unrecognized parameter to $cond: `{other}`"
                    )));
                }
            };
            parts[slot] = Some(parse_node(v)?);
        }
        let [Some(i), Some(t), Some(e)] = parts else {
            return Err(Error::invalid("$cond needs `if`, `then` and `else`"));
        };
        return Ok(Node::Op(op, vec![i, t, e]));
    }
    let args: Vec<Node> = match arg {
        Bson::Array(items) => items.iter().map(parse_node).collect::<Result<_>>()?,
        single => vec![parse_node(single)?],
    };
    let (min, max) = op.arity();
    if args.len() < min || args.len() > max {
        let expected = if min == max {
            format!("exactly {min}")
        } else if max == usize::MAX {
            format!("at least {min}")
        } else {
            format!("{min} to {max}")
        };
        return Err(Error::invalid(format!(
            "Expression {} takes {expected} arguments. {} were passed in.",
            op.name(),
            args.len()
        )));
    }
    Ok(Node::Op(op, args))
}

fn parse_date_to_string(arg: &Bson) -> Result<Node> {
    let Bson::Document(spec) = arg else {
        return Err(Error::invalid(
            "$dateToString only supports an object as its argument",
        ));
    };
    let (mut date, mut format, mut timezone, mut on_null) = (None, None, None, None);
    for (key, value) in spec {
        let slot = match key.as_str() {
            "date" => &mut date,
            "format" => &mut format,
            "timezone" => &mut timezone,
            "onNull" => &mut on_null,
            other => {
                return Err(Error::invalid(format!(
                    "Unrecognized argument to $dateToString: {other}"
                )));
            }
        };
        *slot = Some(parse_node(value)?);
    }
    let date = date.ok_or_else(|| Error::invalid("Missing 'date' parameter to $dateToString"))?;
    // Constant arguments are checked now, as MongoDB does when it folds
    // constants, so a bad one fails before any document is read.
    if let Some(Node::Literal(f)) = &format {
        check_date_format(Some(f.clone()))?;
    }
    if let Some(Node::Literal(tz)) = &timezone {
        zone_of(Some(tz.clone()))?;
    }
    Ok(Node::DateToString(Box::new(DateToString {
        date,
        format,
        timezone,
        on_null,
    })))
}

/// A `format` value: `None` when nullish, else a checked format string.
fn check_date_format(value: Option<Bson>) -> Result<Option<String>> {
    match value {
        None | Some(Bson::Null) | Some(Bson::Undefined) => Ok(None),
        Some(Bson::String(f)) => {
            date::check_format(&f)?;
            Ok(Some(f))
        }
        Some(other) => Err(Error::invalid(format!(
            "$dateToString requires that 'format' be a string, found: {} with value {other}",
            type_name(&other)
        ))),
    }
}

/// A `timezone` value: `None` when nullish, else seconds east of UTC.
fn zone_of(value: Option<Bson>) -> Result<Option<i64>> {
    match value {
        None | Some(Bson::Null) | Some(Bson::Undefined) => Ok(None),
        Some(Bson::String(name)) => date::parse_zone(&name).map(Some),
        Some(other) => Err(Error::invalid(format!(
            "$dateToString: timezone must evaluate to a string, found {}",
            type_name(&other)
        ))),
    }
}

/// `$dateToString` in MongoDB's order: the format is checked first, then
/// the zone; a nullish date gives `onNull` (null when absent); a nullish
/// zone or format gives null; then the date must be a date, a timestamp or
/// an ObjectId.
fn eval_date_to_string(spec: &DateToString, doc: &Document) -> Result<Option<Bson>> {
    let date = eval(&spec.date, doc)?;
    let format = match &spec.format {
        None => None,
        Some(f) => Some(check_date_format(eval(f, doc)?)?),
    };
    let zone = match &spec.timezone {
        None => Some(0),
        Some(tz) => zone_of(eval(tz, doc)?)?,
    };
    if nullish(&date) {
        return match &spec.on_null {
            Some(on_null) => eval(on_null, doc),
            None => Ok(Some(Bson::Null)),
        };
    }
    let Some(offset) = zone else {
        return Ok(Some(Bson::Null));
    };
    let format = match format {
        Some(Some(f)) => f,
        Some(None) => return Ok(Some(Bson::Null)),
        None if spec.timezone.is_some() && offset != 0 => date::ISO_FORMAT_LOCAL.to_string(),
        None => date::ISO_FORMAT_UTC.to_string(),
    };
    let millis = match &date {
        Some(Bson::DateTime(d)) => d.timestamp_millis(),
        Some(Bson::Timestamp(t)) => i64::from(t.time) * 1000,
        Some(Bson::ObjectId(id)) => id.timestamp().timestamp_millis(),
        other => {
            return Err(Error::invalid(format!(
                "$dateToString: can't convert from BSON type {} to Date",
                other.as_ref().map_or("missing", type_name)
            )));
        }
    };
    Ok(Some(Bson::String(date::format(millis, &format, offset)?)))
}

/// Follows a path through a value with aggregation's array rule.
fn navigate(value: &Bson, part: &str) -> Option<Bson> {
    match value {
        Bson::Document(d) => d.get(part).cloned(),
        Bson::Array(items) => Some(Bson::Array(
            items
                .iter()
                .filter_map(|e| match e {
                    Bson::Document(_) | Bson::Array(_) => navigate(e, part),
                    _ => None,
                })
                .collect(),
        )),
        _ => None,
    }
}

fn eval_path(doc: &Document, parts: &[String]) -> Option<Bson> {
    let Some((first, rest)) = parts.split_first() else {
        return Some(Bson::Document(doc.clone()));
    };
    let mut current = doc.get(first)?.clone();
    for part in rest {
        current = navigate(&current, part)?;
    }
    Some(current)
}

fn nullish(v: &Option<Bson>) -> bool {
    matches!(v, None | Some(Bson::Null) | Some(Bson::Undefined))
}

/// MongoDB's truthiness: false, null, missing, undefined and zero are false.
pub(crate) fn truthy(v: &Option<Bson>) -> bool {
    match v {
        None | Some(Bson::Null) | Some(Bson::Undefined) | Some(Bson::Boolean(false)) => false,
        Some(Bson::Int32(0)) | Some(Bson::Int64(0)) => false,
        Some(Bson::Double(d)) => *d != 0.0,
        Some(Bson::Decimal128(d)) => super::compare::decimal_to_f64(d) != 0.0,
        _ => true,
    }
}

fn number(op: Op, v: &Bson) -> Result<Number> {
    Number::of(v, op.name())?.ok_or_else(|| not_numeric(op.name(), v))
}

fn eval(node: &Node, doc: &Document) -> Result<Option<Bson>> {
    match node {
        Node::Literal(v) => Ok(Some(v.clone())),
        Node::Path(parts) => Ok(eval_path(doc, parts)),
        Node::Array(items) => {
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                // A missing value inside an array literal becomes null.
                out.push(eval(item, doc)?.unwrap_or(Bson::Null));
            }
            Ok(Some(Bson::Array(out)))
        }
        Node::Object(fields) => {
            let mut out = Document::new();
            for (k, v) in fields {
                if let Some(value) = eval(v, doc)? {
                    out.insert(k.clone(), value);
                }
            }
            Ok(Some(Bson::Document(out)))
        }
        Node::Op(op, args) => eval_op(*op, args, doc),
        Node::Remove => Ok(None),
        Node::DateToString(spec) => eval_date_to_string(spec, doc),
    }
}

fn eval_args(args: &[Node], doc: &Document) -> Result<Vec<Option<Bson>>> {
    args.iter().map(|a| eval(a, doc)).collect()
}

fn eval_op(op: Op, args: &[Node], doc: &Document) -> Result<Option<Bson>> {
    match op {
        Op::Cond => {
            let [i, t, e] = args else {
                return Err(Error::internal("$cond parsed without three parts"));
            };
            return if truthy(&eval(i, doc)?) {
                eval(t, doc)
            } else {
                eval(e, doc)
            };
        }
        Op::IfNull => {
            let mut last = None;
            for a in args {
                last = eval(a, doc)?;
                if !nullish(&last) {
                    return Ok(last);
                }
            }
            return Ok(last);
        }
        Op::And => {
            for a in args {
                if !truthy(&eval(a, doc)?) {
                    return Ok(Some(Bson::Boolean(false)));
                }
            }
            return Ok(Some(Bson::Boolean(true)));
        }
        Op::Or => {
            for a in args {
                if truthy(&eval(a, doc)?) {
                    return Ok(Some(Bson::Boolean(true)));
                }
            }
            return Ok(Some(Bson::Boolean(false)));
        }
        _ => {}
    }
    let values = eval_args(args, doc)?;
    let first = values.first().cloned().flatten();
    let second = values.get(1).cloned().flatten();
    Ok(match op {
        Op::Add => {
            if values.iter().any(nullish) {
                return Ok(Some(Bson::Null));
            }
            let mut total = Number::Int32(0);
            let mut date: Option<i64> = None;
            for v in values.iter().flatten() {
                match v {
                    Bson::DateTime(d) => {
                        if date.is_some() {
                            return Err(Error::invalid(
                                "only one date allowed in an $add expression",
                            ));
                        }
                        date = Some(d.timestamp_millis());
                    }
                    other => {
                        total = add(total, number(op, other).map_err(|_| add_type_error(other))?)
                    }
                }
            }
            match date {
                Some(ms) => Some(Bson::DateTime(bson::DateTime::from_millis(
                    ms.saturating_add(total.as_f64().round() as i64),
                ))),
                None => Some(total.to_bson()),
            }
        }
        Op::Multiply => {
            if values.iter().any(nullish) {
                return Ok(Some(Bson::Null));
            }
            let mut total = Number::Int32(1);
            for v in values.iter().flatten() {
                total = multiply(total, number(op, v)?);
            }
            Some(total.to_bson())
        }
        Op::Subtract => match (&first, &second) {
            _ if values.iter().any(nullish) => Some(Bson::Null),
            (Some(Bson::DateTime(a)), Some(Bson::DateTime(b))) => Some(Bson::Int64(
                a.timestamp_millis().saturating_sub(b.timestamp_millis()),
            )),
            (Some(Bson::DateTime(a)), Some(n)) => {
                let n = number(op, n)?;
                Some(Bson::DateTime(bson::DateTime::from_millis(
                    a.timestamp_millis()
                        .saturating_sub(n.as_f64().round() as i64),
                )))
            }
            (Some(a), Some(b)) => Some(subtract(number(op, a)?, number(op, b)?).to_bson()),
            _ => Some(Bson::Null),
        },
        Op::Divide | Op::Mod => match (&first, &second) {
            (Some(a), Some(b)) if !nullish(&first) && !nullish(&second) => {
                let (a, b) = (number(op, a)?, number(op, b)?);
                if b.is_zero() {
                    return Err(Error::invalid(format!("can't {} by zero", op.name())));
                }
                if op == Op::Divide {
                    Some(Bson::Double(a.as_f64() / b.as_f64()))
                } else {
                    Some(modulo(a, b).to_bson())
                }
            }
            _ => Some(Bson::Null),
        },
        Op::Round => {
            if nullish(&values.first().cloned().flatten()) {
                return Ok(Some(Bson::Null));
            }
            let place = match &second {
                None | Some(Bson::Null) => 0,
                Some(p) => integral(p)
                    .filter(|p| (-20..=100).contains(p))
                    .ok_or_else(|| {
                        Error::invalid("$round's place must be an integer between -20 and 100")
                    })?,
            };
            let n = number(op, first.as_ref().unwrap_or(&Bson::Null))?;
            Some(round(n, place).to_bson())
        }
        Op::Abs => match &first {
            _ if nullish(&first) => Some(Bson::Null),
            Some(v) => Some(match number(op, v)? {
                Number::Int32(i) => i
                    .checked_abs()
                    .map_or(Bson::Int64(i64::from(i).abs()), Bson::Int32),
                Number::Int64(i) => Bson::Int64(
                    i.checked_abs()
                        .ok_or_else(|| Error::invalid("can't take $abs of the smallest long"))?,
                ),
                Number::Double(d) => Bson::Double(d.abs()),
            }),
            None => Some(Bson::Null),
        },
        Op::Concat => {
            if values.iter().any(nullish) {
                return Ok(Some(Bson::Null));
            }
            let mut out = String::new();
            for v in values.iter().flatten() {
                match v {
                    Bson::String(s) => out.push_str(s),
                    other => {
                        return Err(Error::invalid(format!(
                            "$concat only supports strings, not {}",
                            type_name(other)
                        )));
                    }
                }
            }
            Some(Bson::String(out))
        }
        Op::ToString => match &first {
            _ if nullish(&first) => Some(Bson::Null),
            Some(v) => Some(Bson::String(to_string(op, v)?)),
            None => Some(Bson::Null),
        },
        Op::ToLower | Op::ToUpper => {
            let text = match &first {
                _ if nullish(&first) => String::new(),
                Some(v) => to_string(op, v)?,
                None => String::new(),
            };
            // MongoDB maps ASCII letters only.
            Some(Bson::String(if op == Op::ToLower {
                text.to_ascii_lowercase()
            } else {
                text.to_ascii_uppercase()
            }))
        }
        Op::Eq | Op::Ne | Op::Gt | Op::Gte | Op::Lt | Op::Lte => {
            let a = first.unwrap_or(Bson::Undefined);
            let b = second.unwrap_or(Bson::Undefined);
            let o = compare_bson(&a, &b);
            Some(Bson::Boolean(match op {
                Op::Eq => o == Ordering::Equal,
                Op::Ne => o != Ordering::Equal,
                Op::Gt => o == Ordering::Greater,
                Op::Gte => o != Ordering::Less,
                Op::Lt => o == Ordering::Less,
                _ => o != Ordering::Greater,
            }))
        }
        Op::Not => Some(Bson::Boolean(!truthy(&first))),
        Op::Size => match &first {
            Some(Bson::Array(a)) => Some(Bson::Int32(i32::try_from(a.len()).unwrap_or(i32::MAX))),
            other => {
                return Err(Error::invalid(format!(
                    "The argument to $size must be an array. Type of argument: {}",
                    other.as_ref().map_or("missing", type_name)
                )));
            }
        },
        Op::ArrayElemAt => {
            if nullish(&first) || nullish(&second) {
                return Ok(Some(Bson::Null));
            }
            let Some(Bson::Array(items)) = &first else {
                return Err(Error::invalid(format!(
                    "$arrayElemAt's first argument must be an array, but is {}",
                    first.as_ref().map_or("missing", type_name)
                )));
            };
            let index = second.as_ref().and_then(integral).ok_or_else(|| {
                Error::invalid("$arrayElemAt's second argument must be an integer")
            })?;
            let len = i64::try_from(items.len()).unwrap_or(i64::MAX);
            let at = if index < 0 { len + index } else { index };
            usize::try_from(at).ok().and_then(|i| items.get(i)).cloned()
        }
        Op::In => {
            let Some(Bson::Array(items)) = &second else {
                return Err(Error::invalid(format!(
                    "$in requires an array as a second argument, found: {}",
                    second.as_ref().map_or("missing", type_name)
                )));
            };
            // Missing compares as undefined, as in the other comparisons.
            let needle = first.unwrap_or(Bson::Undefined);
            Some(Bson::Boolean(
                items
                    .iter()
                    .any(|v| compare_bson(&needle, v) == Ordering::Equal),
            ))
        }
        Op::Max | Op::Min => {
            let pool = operand_pool(values);
            let mut best: Option<Bson> = None;
            for v in pool
                .into_iter()
                .filter(|v| !matches!(v, Bson::Null | Bson::Undefined))
            {
                let better = best.as_ref().is_none_or(|b| {
                    let o = compare_bson(&v, b);
                    if op == Op::Max {
                        o == Ordering::Greater
                    } else {
                        o == Ordering::Less
                    }
                });
                if better {
                    best = Some(v);
                }
            }
            Some(best.unwrap_or(Bson::Null))
        }
        Op::Sum | Op::Avg => {
            let mut sum = Sum::default();
            for v in operand_pool(values) {
                sum.push(&v, op.name())?;
            }
            Some(if op == Op::Sum {
                sum.total()
            } else {
                sum.average()
            })
        }
        Op::Cond | Op::IfNull | Op::And | Op::Or => return Err(Error::internal("handled above")),
    })
}

fn add_type_error(v: &Bson) -> Error {
    Error::invalid(format!(
        "$add only supports numeric or date types, not {}",
        type_name(v)
    ))
}

/// The values `$max/$min/$sum/$avg` work on: the elements of a single
/// array operand, else the operands themselves (missing ones dropped).
fn operand_pool(values: Vec<Option<Bson>>) -> Vec<Bson> {
    if values.len() == 1
        && let Some(Some(Bson::Array(items))) = values.first()
    {
        return items.clone();
    }
    values.into_iter().flatten().collect()
}

/// A whole number from any numeric type.
fn integral(v: &Bson) -> Option<i64> {
    match v {
        Bson::Int32(i) => Some(i64::from(*i)),
        Bson::Int64(i) => Some(*i),
        Bson::Double(d) if d.fract() == 0.0 && d.abs() < 9.2e18 => Some(*d as i64),
        _ => None,
    }
}

/// Rounds half to even at `place` decimal places, keeping the type.
fn round(n: Number, place: i64) -> Number {
    match n {
        Number::Double(d) => {
            if !d.is_finite() {
                return n;
            }
            let rounded = if place >= 0 {
                let f = 10f64.powi(place as i32);
                let scaled = d * f;
                if scaled.is_finite() {
                    scaled.round_ties_even() / f
                } else {
                    d
                }
            } else {
                let f = 10f64.powi((-place) as i32);
                (d / f).round_ties_even() * f
            };
            Number::Double(rounded)
        }
        Number::Int32(_) | Number::Int64(_) if place >= 0 => n,
        Number::Int32(i) => match round_int(i64::from(i), place) {
            Some(r) => i32::try_from(r).map_or(Number::Int64(r), Number::Int32),
            None => Number::Double(f64::from(i)),
        },
        Number::Int64(i) => round_int(i, place).map_or(Number::Double(i as f64), Number::Int64),
    }
}

fn round_int(i: i64, place: i64) -> Option<i64> {
    let f = 10i128.checked_pow(u32::try_from(-place).ok()?)?;
    let x = i128::from(i);
    let q = x.div_euclid(f);
    let r = x.rem_euclid(f);
    let q = match (2 * r).cmp(&f) {
        Ordering::Less => q,
        Ordering::Greater => q + 1,
        Ordering::Equal => q + (q & 1),
    };
    i64::try_from(q * f).ok()
}

/// `$toString`'s rendering of a value.
fn to_string(op: Op, v: &Bson) -> Result<String> {
    Ok(match v {
        Bson::String(s) | Bson::Symbol(s) => s.clone(),
        Bson::Int32(i) => i.to_string(),
        Bson::Int64(i) => i.to_string(),
        Bson::Double(d) => format_double(*d),
        Bson::Decimal128(d) => d.to_string(),
        Bson::Boolean(b) if op == Op::ToString => b.to_string(),
        Bson::ObjectId(id) if op == Op::ToString => id.to_hex(),
        Bson::DateTime(d) => format_date(d.timestamp_millis()),
        other => {
            return Err(Error::invalid(format!(
                "{} can't convert from BSON type {} to string",
                op.name(),
                type_name(other)
            )));
        }
    })
}

/// Doubles as the server prints them: `1`, `2.5`, `1e+20`, `Infinity`.
fn format_double(d: f64) -> String {
    if d.is_nan() {
        return "NaN".to_string();
    }
    if d.is_infinite() {
        return if d > 0.0 { "Infinity" } else { "-Infinity" }.to_string();
    }
    let a = d.abs();
    if a != 0.0 && !(1e-4..1e16).contains(&a) {
        let s = format!("{d:e}");
        return match s.split_once('e') {
            Some((m, e)) if !e.starts_with('-') => format!("{m}e+{e}"),
            _ => s,
        };
    }
    format!("{d}")
}

/// ISO-8601 with milliseconds in UTC, MongoDB's date string.
fn format_date(ms: i64) -> String {
    let days = ms.div_euclid(86_400_000);
    let rem = ms.rem_euclid(86_400_000);
    // Civil date from days since the epoch (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3_600_000,
        rem / 60_000 % 60,
        rem / 1000 % 60,
        rem % 1000
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use bson::{bson, doc};

    fn ev(expr: Bson, d: &Document) -> Option<Bson> {
        Expr::parse(&expr).unwrap().eval(d).unwrap()
    }

    fn ev_err(expr: Bson, d: &Document) -> Error {
        Expr::parse(&expr).unwrap().eval(d).unwrap_err()
    }

    fn sample() -> Document {
        doc! {"a": 5, "b": 2.5, "s": "Hi", "n": null, "arr": [3, 1, 2], "docs": [{"x": 1}, {"y": 0}, {"x": [2, 3]}], "o": {"p": {"q": 7}}}
    }

    #[test]
    fn paths_literals_objects_and_arrays() {
        let d = sample();
        assert_eq!(ev(bson!("$a"), &d), Some(bson!(5)));
        assert_eq!(ev(bson!("$o.p.q"), &d), Some(bson!(7)));
        assert_eq!(ev(bson!("$zz"), &d), None);
        assert_eq!(ev(bson!("$docs.x"), &d), Some(bson!([1, [2, 3]])));
        assert_eq!(
            ev(bson!("$arr.0"), &d),
            Some(bson!([])),
            "numeric components are field names"
        );
        assert_eq!(ev(bson!("$$ROOT"), &d), Some(Bson::Document(d.clone())));
        assert_eq!(ev(bson!("$$CURRENT.a"), &d), Some(bson!(5)));
        assert_eq!(ev(bson!("plain"), &d), Some(bson!("plain")));
        assert_eq!(ev(bson!({"$literal": "$a"}), &d), Some(bson!("$a")));
        assert_eq!(
            ev(bson!({"k": "$a", "m": "$zz", "l": [1, "$zz"]}), &d),
            Some(bson!({"k": 5, "l": [1, null]}))
        );
    }

    #[test]
    fn arithmetic_keeps_types_and_propagates_null() {
        let d = sample();
        assert_eq!(ev(bson!({"$add": ["$a", 1]}), &d), Some(Bson::Int32(6)));
        assert_eq!(
            ev(bson!({"$add": ["$a", "$b"]}), &d),
            Some(Bson::Double(7.5))
        );
        assert_eq!(
            ev(bson!({"$add": ["$a", Bson::Int64(1)]}), &d),
            Some(Bson::Int64(6))
        );
        assert_eq!(ev(bson!({"$add": ["$a", null]}), &d), Some(Bson::Null));
        assert_eq!(ev(bson!({"$add": ["$a", "$zz"]}), &d), Some(Bson::Null));
        assert_eq!(
            ev(bson!({"$add": [i32::MAX, 1]}), &d),
            Some(Bson::Int64(i64::from(i32::MAX) + 1))
        );
        assert_eq!(
            ev(bson!({"$subtract": ["$a", 7]}), &d),
            Some(Bson::Int32(-2))
        );
        assert_eq!(
            ev(bson!({"$multiply": ["$a", 2, 2]}), &d),
            Some(Bson::Int32(20))
        );
        assert_eq!(
            ev(bson!({"$divide": ["$a", 2]}), &d),
            Some(Bson::Double(2.5))
        );
        assert_eq!(ev(bson!({"$mod": ["$a", 3]}), &d), Some(Bson::Int32(2)));
        assert_eq!(ev(bson!({"$mod": [-7.5, 2]}), &d), Some(Bson::Double(-1.5)));
        assert_eq!(ev(bson!({"$abs": -3}), &d), Some(Bson::Int32(3)));
        assert_eq!(
            ev(bson!({"$abs": i32::MIN}), &d),
            Some(Bson::Int64(-i64::from(i32::MIN)))
        );
        assert_eq!(ev(bson!({"$abs": null}), &d), Some(Bson::Null));
        let date = bson::DateTime::from_millis(1000);
        assert_eq!(
            ev(bson!({"$add": [date, 500]}), &d),
            Some(Bson::DateTime(bson::DateTime::from_millis(1500)))
        );
        assert_eq!(
            ev(bson!({"$subtract": [date, date]}), &d),
            Some(Bson::Int64(0))
        );
        for zero in [bson!({"$divide": [1, 0]}), bson!({"$mod": [1, 0.0]})] {
            assert_eq!(ev_err(zero, &d).kind(), ErrorKind::InvalidInput);
        }
        assert_eq!(
            ev_err(bson!({"$add": ["$s", 1]}), &d).kind(),
            ErrorKind::InvalidInput
        );
        assert_eq!(
            ev_err(bson!({"$multiply": ["$s", 1]}), &d).kind(),
            ErrorKind::InvalidInput
        );
    }

    #[test]
    fn round_is_half_to_even_and_keeps_type() {
        let d = doc! {};
        assert_eq!(ev(bson!({"$round": [2.5]}), &d), Some(Bson::Double(2.0)));
        assert_eq!(ev(bson!({"$round": [3.5, 0]}), &d), Some(Bson::Double(4.0)));
        assert_eq!(
            ev(bson!({"$round": [1.2345, 2]}), &d),
            Some(Bson::Double(1.23))
        );
        assert_eq!(
            ev(bson!({"$round": [1250, -2]}), &d),
            Some(Bson::Int32(1200))
        );
        assert_eq!(
            ev(bson!({"$round": [1350, -2]}), &d),
            Some(Bson::Int32(1400))
        );
        assert_eq!(
            ev(bson!({"$round": [Bson::Int64(7), 1]}), &d),
            Some(Bson::Int64(7))
        );
        assert_eq!(ev(bson!({"$round": [null, 1]}), &d), Some(Bson::Null));
        assert_eq!(
            ev_err(bson!({"$round": [1, 101]}), &d).kind(),
            ErrorKind::InvalidInput
        );
    }

    #[test]
    fn strings() {
        let d = sample();
        assert_eq!(
            ev(bson!({"$concat": ["$s", "-", "x"]}), &d),
            Some(bson!("Hi-x"))
        );
        assert_eq!(ev(bson!({"$concat": ["$s", "$zz"]}), &d), Some(Bson::Null));
        assert_eq!(
            ev_err(bson!({"$concat": ["$s", 1]}), &d).kind(),
            ErrorKind::InvalidInput
        );
        assert_eq!(ev(bson!({"$toLower": "$s"}), &d), Some(bson!("hi")));
        assert_eq!(ev(bson!({"$toUpper": ["$s"]}), &d), Some(bson!("HI")));
        assert_eq!(ev(bson!({"$toUpper": "$zz"}), &d), Some(bson!("")));
        assert_eq!(ev(bson!({"$toString": "$a"}), &d), Some(bson!("5")));
        assert_eq!(ev(bson!({"$toString": 1.0}), &d), Some(bson!("1")));
        assert_eq!(ev(bson!({"$toString": 2.5}), &d), Some(bson!("2.5")));
        assert_eq!(ev(bson!({"$toString": 1e20}), &d), Some(bson!("1e+20")));
        assert_eq!(ev(bson!({"$toString": true}), &d), Some(bson!("true")));
        assert_eq!(ev(bson!({"$toString": "$zz"}), &d), Some(Bson::Null));
        let date = bson::DateTime::from_millis(1_609_459_200_123);
        assert_eq!(
            ev(bson!({"$toString": date}), &d),
            Some(bson!("2021-01-01T00:00:00.123Z"))
        );
        assert_eq!(format_date(-1), "1969-12-31T23:59:59.999Z");
        assert_eq!(
            ev_err(bson!({"$toString": [[1]]}), &d).kind(),
            ErrorKind::InvalidInput
        );
    }

    #[test]
    fn conditionals_comparisons_and_logic() {
        let d = sample();
        assert_eq!(
            ev(bson!({"$ifNull": ["$zz", "$n", "dflt"]}), &d),
            Some(bson!("dflt"))
        );
        assert_eq!(ev(bson!({"$ifNull": ["$a", 0]}), &d), Some(bson!(5)));
        assert_eq!(
            ev(bson!({"$cond": [{"$gt": ["$a", 3]}, "big", "small"]}), &d),
            Some(bson!("big"))
        );
        assert_eq!(
            ev(bson!({"$cond": {"if": "$n", "then": 1, "else": 2}}), &d),
            Some(bson!(2))
        );
        assert_eq!(ev(bson!({"$eq": ["$a", 5.0]}), &d), Some(bson!(true)));
        assert_eq!(ev(bson!({"$eq": ["$zz", null]}), &d), Some(bson!(false)));
        assert_eq!(
            ev(bson!({"$gt": ["$s", 100]}), &d),
            Some(bson!(true)),
            "strings above numbers"
        );
        assert_eq!(ev(bson!({"$lte": ["$a", 5]}), &d), Some(bson!(true)));
        assert_eq!(ev(bson!({"$ne": ["$a", 5]}), &d), Some(bson!(false)));
        assert_eq!(ev(bson!({"$and": [1, "$s", true]}), &d), Some(bson!(true)));
        assert_eq!(ev(bson!({"$and": [1, 0]}), &d), Some(bson!(false)));
        assert_eq!(
            ev(bson!({"$or": ["$zz", "$n", 0.0]}), &d),
            Some(bson!(false))
        );
        assert_eq!(ev(bson!({"$or": ["$zz", []]}), &d), Some(bson!(true)));
        assert_eq!(ev(bson!({"$not": ["$n"]}), &d), Some(bson!(true)));
    }

    #[test]
    fn arrays_and_array_forms_of_accumulators() {
        let d = sample();
        assert_eq!(ev(bson!({"$size": "$arr"}), &d), Some(bson!(3)));
        assert_eq!(
            ev_err(bson!({"$size": "$zz"}), &d).kind(),
            ErrorKind::InvalidInput
        );
        assert_eq!(ev(bson!({"$arrayElemAt": ["$arr", 0]}), &d), Some(bson!(3)));
        assert_eq!(
            ev(bson!({"$arrayElemAt": ["$arr", -1]}), &d),
            Some(bson!(2))
        );
        assert_eq!(ev(bson!({"$arrayElemAt": ["$arr", 5]}), &d), None);
        assert_eq!(
            ev(bson!({"$arrayElemAt": ["$zz", 0]}), &d),
            Some(Bson::Null)
        );
        assert_eq!(
            ev_err(bson!({"$arrayElemAt": ["$a", 0]}), &d).kind(),
            ErrorKind::InvalidInput
        );
        assert_eq!(ev(bson!({"$max": "$arr"}), &d), Some(bson!(3)));
        assert_eq!(
            ev(bson!({"$min": ["$a", "$b", null]}), &d),
            Some(bson!(2.5))
        );
        assert_eq!(ev(bson!({"$max": ["$zz", null]}), &d), Some(Bson::Null));
        assert_eq!(ev(bson!({"$sum": "$arr"}), &d), Some(Bson::Int32(6)));
        assert_eq!(
            ev(bson!({"$sum": ["$a", "$s", "$b"]}), &d),
            Some(Bson::Double(7.5))
        );
        assert_eq!(ev(bson!({"$sum": "$s"}), &d), Some(Bson::Int32(0)));
        assert_eq!(ev(bson!({"$avg": "$arr"}), &d), Some(Bson::Double(2.0)));
        assert_eq!(ev(bson!({"$avg": "$s"}), &d), Some(Bson::Null));
    }

    #[test]
    fn remove_is_missing_everywhere() {
        let d = sample();
        assert_eq!(ev(bson!("$$REMOVE"), &d), None);
        assert_eq!(ev(bson!("$$REMOVE.a"), &d), None);
        assert_eq!(
            ev(bson!({"$cond": [{"$gt": ["$a", 3]}, "$$REMOVE", "$a"]}), &d),
            None
        );
        assert_eq!(
            ev(bson!({"$ifNull": ["$zz", "$$REMOVE"]}), &d),
            None,
            "the replacement itself may be missing"
        );
        assert_eq!(
            ev(bson!({"k": "$$REMOVE", "j": 1}), &d),
            Some(bson!({"j": 1}))
        );
        assert_eq!(ev(bson!(["$$REMOVE", 1]), &d), Some(bson!([null, 1])));
    }

    #[test]
    fn in_expression_needs_an_array() {
        let d = sample();
        assert_eq!(ev(bson!({"$in": ["$a", [1, 5.0]]}), &d), Some(bson!(true)));
        assert_eq!(ev(bson!({"$in": [2, "$arr"]}), &d), Some(bson!(true)));
        assert_eq!(ev(bson!({"$in": ["$s", []]}), &d), Some(bson!(false)));
        assert_eq!(ev(bson!({"$in": [[1], [[1], 2]]}), &d), Some(bson!(true)));
        // Missing is not null (as with $eq).
        assert_eq!(ev(bson!({"$in": ["$zz", [null]]}), &d), Some(bson!(false)));
        assert_eq!(ev(bson!({"$in": ["$n", [null]]}), &d), Some(bson!(true)));
        for second in [bson!("$zz"), bson!(5), bson!("$n"), bson!({"x": 1})] {
            let e = ev_err(bson!({"$in": [1, second.clone()]}), &d);
            assert_eq!(e.kind(), ErrorKind::InvalidInput, "{second}");
            assert!(
                e.message().contains("$in requires an array"),
                "{}",
                e.message()
            );
        }
    }

    #[test]
    fn date_to_string_follows_mongodb_order_of_checks() {
        let t = bson::DateTime::from_millis(1_609_646_706_789); // 2021-01-03T04:05:06.789Z
        let d = doc! {"d": t, "n": null, "tz": "+05:30", "f": "%H:%M",
        "ts": Bson::Timestamp(bson::Timestamp { time: 1_609_459_200, increment: 1 }),
        "oid": bson::oid::ObjectId::parse_str("5f1a2b3c4d5e6f7a8b9c0d1e").unwrap()};
        let s = |spec: Bson| ev(bson!({"$dateToString": spec}), &d);
        assert_eq!(
            s(bson!({"date": "$d"})),
            Some(bson!("2021-01-03T04:05:06.789Z"))
        );
        assert_eq!(
            s(bson!({"date": "$d", "timezone": "UTC"})),
            Some(bson!("2021-01-03T04:05:06.789Z"))
        );
        assert_eq!(
            s(bson!({"date": "$d", "timezone": "+00:00"})),
            Some(bson!("2021-01-03T04:05:06.789Z")),
            "a zero offset is UTC"
        );
        // Another zone drops the `Z` of the default format (MongoDB 7.1+).
        assert_eq!(
            s(bson!({"date": "$d", "timezone": "$tz"})),
            Some(bson!("2021-01-03T09:35:06.789"))
        );
        assert_eq!(
            s(bson!({"date": "$d", "timezone": "-0330", "format": "$f"})),
            Some(bson!("00:35"))
        );
        assert_eq!(
            s(bson!({"date": "$ts", "format": "%Y-%m-%d %H:%M:%S.%L"})),
            Some(bson!("2021-01-01 00:00:00.000"))
        );
        assert_eq!(
            s(bson!({"date": "$oid"})),
            Some(bson!("2020-07-24T00:28:44.000Z"))
        );
        // Nullish date: onNull (which may itself be missing), else null.
        assert_eq!(s(bson!({"date": "$zz"})), Some(Bson::Null));
        assert_eq!(
            s(bson!({"date": "$n", "onNull": "none"})),
            Some(bson!("none"))
        );
        assert_eq!(s(bson!({"date": "$zz", "onNull": "$zz"})), None);
        // Nullish format or zone: null, whatever onNull says.
        assert_eq!(
            s(bson!({"date": "$d", "format": "$n", "onNull": 1})),
            Some(Bson::Null)
        );
        assert_eq!(
            s(bson!({"date": "$d", "timezone": "$zz"})),
            Some(Bson::Null)
        );
        // A bad format or zone fails even when the date is null...
        for spec in [
            bson!({"date": "$n", "format": {"$concat": ["%", "n"]}}),
            bson!({"date": "$n", "format": {"$add": [2, 3]}}),
            bson!({"date": "$n", "timezone": {"$toLower": "+5"}}),
            bson!({"date": "$n", "timezone": {"$add": [1, 2]}}),
        ] {
            let e = ev_err(bson!({"$dateToString": spec.clone()}), &d);
            assert_eq!(e.kind(), ErrorKind::InvalidInput, "{spec}");
            assert!(e.message().contains("$dateToString"), "{}", e.message());
        }
        // ...and a date of another type fails once the rest is fine.
        let e = ev_err(bson!({"$dateToString": {"date": "$tz"}}), &d);
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert!(e.message().contains("string to Date"), "{}", e.message());
        let e = ev_err(
            bson!({"$dateToString": {"date": "$d", "timezone": {"$concat": ["Europe/", "Paris"]}}}),
            &d,
        );
        assert_eq!(e.kind(), ErrorKind::Unsupported);
    }

    #[test]
    fn parse_errors_name_operators() {
        for (expr, name) in [
            (bson!({"$dateFromString": {}}), "$dateFromString"),
            (
                bson!({"$dateToString": {"date": "$d", "timezone": "Europe/London"}}),
                "Europe/London",
            ),
            (bson!({"$add": [1, {"$filter": {}}]}), "$filter"),
            (bson!({"k": {"$regexMatch": {}}}), "$regexMatch"),
            (bson!("$$NOW"), "$$NOW"),
        ] {
            let e = Expr::parse(&expr).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Unsupported, "{expr}");
            assert!(
                e.message().contains(&format!("`{name}`")),
                "{}",
                e.message()
            );
        }
        for bad in [
            bson!({"$subtract": [1]}),
            bson!({"$size": [1, 2]}),
            bson!({"$add": [1], "x": 1}),
            bson!({"$cond": {"if": true, "then": 1}}),
            bson!({"$cond": {"if": true, "then": 1, "else": 2, "other": 3}}),
            bson!({"$in": ["$a"]}),
            bson!({"$in": ["$a", [1], [2]]}),
            bson!({"$dateToString": {}}),
            bson!({"$dateToString": "$d"}),
            bson!({"$dateToString": {"date": "$d", "bogus": 1}}),
            bson!({"$dateToString": {"date": "$d", "format": "%n"}}),
            bson!({"$dateToString": {"date": "$d", "format": "%"}}),
            bson!({"$dateToString": {"date": "$d", "format": 5}}),
            bson!({"$dateToString": {"date": "$d", "timezone": 5}}),
            bson!({"$dateToString": {"date": "$d", "timezone": "+5"}}),
            bson!("$"),
            bson!("$a..b"),
            bson!("$$REMOVE.a..b"),
            bson!("$$ROOT."),
            bson!({"a.b": 1}),
        ] {
            assert_eq!(
                Expr::parse(&bad).unwrap_err().kind(),
                ErrorKind::InvalidInput,
                "{bad}"
            );
        }
    }
}
