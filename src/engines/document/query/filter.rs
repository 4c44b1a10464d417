//! Query filters.
//!
//! # Contracts
//!
//! - [`Filter::parse`] checks the whole filter before anything runs: an
//!   operator outside the subset (`$where`, `$expr`, `$text`, `$bitsAllSet`,
//!   geo operators, ...) is `Unsupported` naming it, at any depth; a
//!   malformed operator (`$in` of a non-array, an empty `$and`, a fractional
//!   `$size`, a bad regex flag, `$mod` without two numbers) is
//!   `InvalidInput` naming it.
//! - Matching follows MongoDB: dot paths traverse arrays of documents; a
//!   field holding an array matches a value condition when the array itself
//!   or any of its elements does, and `$ne`/`$nin`/`$not` are the exact
//!   negations of the positive conditions; `$size` and `$elemMatch` look at
//!   arrays only. Equality to `null` also matches a missing field, and
//!   `$exists` tells the two apart.
//! - Range operators (`$gt $gte $lt $lte`) only match values of the operand's
//!   type bracket ([`type_bracket`]): `{a: {$gt: 5}}` never matches a string.
//!   MinKey and MaxKey operands compare across brackets.
//! - `$regex` compiles with the `regex` crate; a PCRE feature it lacks
//!   (look-around, back-references) is `Unsupported`. Flags `i m s x` are
//!   honoured, `u` is accepted (matching is Unicode-aware anyway).
//! - `$all: [v, ...]` is the conjunction of `{field: v}` (a regex element
//!   matches as a regex), or of `$elemMatch`es when its first element is
//!   one (then all must be); an empty `$all` matches nothing; any other
//!   operator object inside is `InvalidInput` ("no $ expressions in $all").
//! - `$type` takes an alias (`"string"`, `"number"` for any numeric type,
//!   ...), a BSON type number, or a non-empty array of them; it follows the
//!   array rule, so `"array"` matches an array field itself and any type
//!   matches through array elements. `0`, unknown numbers and aliases
//!   (`"missing"` too) are `InvalidInput`; a decimal128 type number is
//!   `Unsupported`.
//! - `$mod: [divisor, remainder]` truncates both toward zero to 64-bit
//!   integers; a zero divisor, NaN, infinities, out-of-range values, a
//!   non-number or another count of elements are `InvalidInput`, a
//!   decimal128 operand `Unsupported`. It matches numbers only: doubles
//!   (and decimals, through `f64`) truncated, never NaN, infinities or
//!   values beyond 64 bits; the remainder takes the dividend's sign.
//! - `$comment` at the top level is accepted and ignored, as MongoDB does.

use std::cmp::Ordering;

use bson::{Bson, Document};
use regex::Regex;

use crate::error::{Error, Result};

use super::compare::{bson_equal, compare_bson, type_bracket};
use super::path::{BSON_TYPES, type_code, values_along};

/// What a filter says about one field, for the index planner.
// Boxing the range ends would change the public shape the store is written
// against; bounds are computed once per query, so the size does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum FieldBounds {
    /// The field equals one of these values (`{f: v}`, `$eq`, `$in`).
    In(Vec<Bson>),
    /// The field lies in a range; each end is `(value, inclusive)`.
    Range {
        /// Lower end.
        lower: Option<(Bson, bool)>,
        /// Upper end.
        upper: Option<(Bson, bool)>,
    },
}

/// A parsed, validated filter.
#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    root: Node,
}

/// A compiled regular expression that remembers its source, so filters can
/// be compared and printed.
#[derive(Debug, Clone)]
pub(crate) struct CompiledRegex {
    pattern: String,
    options: String,
    re: Regex,
}

impl PartialEq for CompiledRegex {
    fn eq(&self, other: &Self) -> bool {
        self.pattern == other.pattern && self.options == other.options
    }
}

impl CompiledRegex {
    /// Compiles `pattern` with MongoDB's `options` letters.
    pub(crate) fn new(pattern: &str, options: &str, operator: &str) -> Result<CompiledRegex> {
        let mut flags = String::new();
        for c in options.chars() {
            match c {
                'i' | 'm' | 's' | 'x' => {
                    if !flags.contains(c) {
                        flags.push(c);
                    }
                }
                // Rust's regex is Unicode-aware by default.
                'u' => {}
                other => {
                    return Err(Error::invalid(format!(
                        "invalid flag `{other}` in {operator} options `{options}`"
                    )));
                }
            }
        }
        let full = if flags.is_empty() {
            pattern.to_string()
        } else {
            format!("(?{flags}){pattern}")
        };
        let re = regex::RegexBuilder::new(&full)
            .size_limit(1 << 22)
            .build()
            .map_err(|e| {
                let text = e.to_string();
                let err = if text.contains("not supported") {
                    Error::unsupported(format!(
                        "{operator} pattern `{pattern}` uses a feature the embedded engine lacks: {text}"
                    ))
                } else {
                    Error::invalid(format!("invalid {operator} pattern `{pattern}`: {text}"))
                };
                err.with_source(e)
            })?;
        Ok(CompiledRegex {
            pattern: pattern.to_string(),
            options: options.to_string(),
            re,
        })
    }

    /// Whether a value matches: strings and symbols by search, a stored
    /// regex when it is the very same regex.
    pub(crate) fn matches(&self, value: &Bson) -> bool {
        match value {
            Bson::String(s) | Bson::Symbol(s) => self.re.is_match(s),
            Bson::RegularExpression(r) => {
                r.pattern.as_str() == self.pattern && r.options.as_str() == self.options
            }
            _ => false,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Node {
    And(Vec<Node>),
    Or(Vec<Node>),
    Nor(Vec<Node>),
    Field(String, Pred),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum CmpOp {
    Gt,
    Gte,
    Lt,
    Lte,
}

#[derive(Debug, Clone, PartialEq)]
enum InItem {
    Value(Bson),
    Regex(CompiledRegex),
}

#[derive(Debug, Clone, PartialEq)]
enum Pred {
    Eq(Bson),
    Cmp(CmpOp, Bson),
    In(Vec<InItem>),
    Regex(CompiledRegex),
    Exists(bool),
    Size(usize),
    Type(TypeSet),
    Mod {
        divisor: i64,
        remainder: i64,
    },
    ElemMatchValue(Vec<Pred>),
    ElemMatchDoc(Box<Node>),
    /// Every predicate holds, each with its own array semantics (the body
    /// of `$not: {...}`).
    All(Vec<Pred>),
    Not(Box<Pred>),
}

/// The types a `$type` condition accepts.
#[derive(Debug, Clone, PartialEq)]
struct TypeSet {
    /// `"number"`: any numeric type.
    all_numbers: bool,
    /// BSON type numbers ([`type_code`]).
    codes: Vec<i32>,
}

impl TypeSet {
    fn contains(&self, value: &Bson) -> bool {
        let code = type_code(value);
        self.codes.contains(&code) || (self.all_numbers && matches!(code, 1 | 16 | 18 | 19))
    }
}

/// Operators that MongoDB has and this engine does not; named so the error
/// reads as "unsupported" rather than "unknown". Any other `$` name is
/// reported the same way.
fn unsupported_operator(name: &str) -> Error {
    Error::unsupported(format!("unsupported query operator `{name}`"))
}

impl Filter {
    /// Parses a filter document; `Unsupported` names an unknown operator,
    /// `InvalidInput` a malformed one.
    pub fn parse(filter: &Document) -> Result<Filter> {
        Ok(Filter {
            root: parse_document(filter)?,
        })
    }

    /// A filter matching documents whose `path` equals any of `values`, with
    /// the array rule (the equality `$lookup` uses).
    pub fn field_in(path: &str, values: Vec<Bson>) -> Filter {
        Filter {
            root: Node::Field(
                path.to_string(),
                Pred::In(values.into_iter().map(InItem::Value).collect()),
            ),
        }
    }

    /// Whether `doc` matches.
    pub fn matches(&self, doc: &Document) -> bool {
        self.root.matches(doc)
    }

    /// Top-level equality conditions (`{a: 1, b: {$eq: 2}}`, inside `$and`
    /// too), which seed the document an upsert inserts.
    ///
    /// In filter order. A one-element `$in` counts as equality, as MongoDB
    /// treats it; regex conditions do not. When a path appears twice, both
    /// entries are returned and the caller decides (MongoDB refuses such an
    /// upsert).
    pub fn equality_fields(&self) -> Vec<(String, Bson)> {
        let mut out = Vec::new();
        for (path, pred) in self.top_level_conditions() {
            match pred {
                Pred::Eq(v) => out.push((path.to_string(), v.clone())),
                Pred::In(items) if items.len() == 1 => {
                    if let Some(InItem::Value(v)) = items.first() {
                        out.push((path.to_string(), v.clone()));
                    }
                }
                _ => {}
            }
        }
        out
    }

    /// Bounds that every matching document's `field` must satisfy, when the
    /// filter implies any (top level or inside `$and`). The store uses them
    /// to answer from an index; it still checks `matches` on each candidate.
    ///
    /// Conditions on the field are combined: `$in` lists intersected, range
    /// ends tightened, `$in` values outside the range dropped. A range never
    /// leaves its end's type bracket (`$gt: 5` matches numbers only), which
    /// the store may rely on. Equality to an array, regexes and anything
    /// else it cannot express give `None`.
    ///
    /// # Arrays
    ///
    /// Combining assumes the field holds one value per document. Under
    /// MongoDB's array rule, `{a: {$gt: 5, $lt: 10}}` matches `a: [1, 20]`
    /// (each condition is met by some element), although no element lies in
    /// `(5, 10)`. A store that indexes array fields element by element must
    /// use [`Filter::element_bounds`] for them.
    pub fn bounds(&self, field: &str) -> Option<FieldBounds> {
        let conditions = self.conditions_on(field);
        let mut in_set: Option<Vec<Bson>> = None;
        let mut lower: Option<(Bson, bool)> = None;
        let mut upper: Option<(Bson, bool)> = None;
        for pred in conditions {
            match pred {
                Pred::Eq(_) | Pred::In(_) => {
                    let values = in_values(pred)?;
                    in_set = Some(match in_set {
                        None => values,
                        Some(prev) => prev
                            .into_iter()
                            .filter(|p| values.iter().any(|v| bson_equal(p, v)))
                            .collect(),
                    });
                }
                Pred::Cmp(op, v) => {
                    let inclusive = matches!(op, CmpOp::Gte | CmpOp::Lte);
                    let is_lower = matches!(op, CmpOp::Gt | CmpOp::Gte);
                    let slot = if is_lower { &mut lower } else { &mut upper };
                    match slot {
                        None => *slot = Some((v.clone(), inclusive)),
                        Some((cur, cur_inc)) => {
                            if type_bracket(cur) != type_bracket(v) {
                                // Two brackets: nothing matches, but say so
                                // only through `matches`.
                                return None;
                            }
                            let o = compare_bson(v, cur);
                            let tighter = if is_lower {
                                o == Ordering::Greater || (o == Ordering::Equal && !inclusive)
                            } else {
                                o == Ordering::Less || (o == Ordering::Equal && !inclusive)
                            };
                            if tighter {
                                *cur = v.clone();
                                *cur_inc = inclusive;
                            }
                        }
                    }
                }
                _ => {}
            }
        }
        if let Some(values) = in_set {
            let kept = values
                .into_iter()
                .filter(|v| {
                    lower
                        .as_ref()
                        .is_none_or(|(l, inc)| in_range_end(v, l, *inc, Ordering::Greater))
                        && upper
                            .as_ref()
                            .is_none_or(|(u, inc)| in_range_end(v, u, *inc, Ordering::Less))
                })
                .collect();
            return Some(FieldBounds::In(kept));
        }
        if lower.is_some() || upper.is_some() {
            return Some(FieldBounds::Range { lower, upper });
        }
        None
    }

    /// Bounds implied by ONE condition on `field` (its `$in`/equality if any,
    /// else its first range operator), never combined with another, so they
    /// hold for some element of an array field under MongoDB's array rule.
    /// For stores that index arrays element by element.
    pub fn element_bounds(&self, field: &str) -> Option<FieldBounds> {
        let conditions = self.conditions_on(field);
        if let Some(values) = conditions.iter().find_map(|p| in_values(p)) {
            return Some(FieldBounds::In(values));
        }
        conditions.iter().find_map(|pred| match pred {
            Pred::Cmp(op, v) => {
                let end = Some((v.clone(), matches!(op, CmpOp::Gte | CmpOp::Lte)));
                Some(match op {
                    CmpOp::Gt | CmpOp::Gte => FieldBounds::Range {
                        lower: end,
                        upper: None,
                    },
                    CmpOp::Lt | CmpOp::Lte => FieldBounds::Range {
                        lower: None,
                        upper: end,
                    },
                })
            }
            _ => None,
        })
    }

    fn conditions_on(&self, field: &str) -> Vec<&Pred> {
        self.top_level_conditions()
            .into_iter()
            .filter(|(p, _)| *p == field)
            .map(|(_, pred)| pred)
            .collect()
    }

    /// Field conditions that every match must satisfy: the top level and the
    /// inside of top-level `$and`s, recursively.
    fn top_level_conditions(&self) -> Vec<(&str, &Pred)> {
        fn collect<'a>(node: &'a Node, out: &mut Vec<(&'a str, &'a Pred)>) {
            match node {
                Node::And(children) => children.iter().for_each(|c| collect(c, out)),
                Node::Field(path, pred) => out.push((path.as_str(), pred)),
                Node::Or(_) | Node::Nor(_) => {}
            }
        }
        let mut out = Vec::new();
        collect(&self.root, &mut out);
        out
    }
}

/// The values of an equality or `$in` usable as index keys; `None` when one
/// of them is a regex or an array (whose index entries differ from the value).
fn in_values(pred: &Pred) -> Option<Vec<Bson>> {
    let usable = |v: &Bson| !matches!(v, Bson::Array(_) | Bson::RegularExpression(_));
    match pred {
        Pred::Eq(v) if usable(v) => Some(vec![v.clone()]),
        Pred::In(items) => items
            .iter()
            .map(|i| match i {
                InItem::Value(v) if usable(v) => Some(v.clone()),
                _ => None,
            })
            .collect(),
        _ => None,
    }
}

/// Whether `v` lies on the right side of a range end (`want` is `Greater`
/// for a lower end), within the end's type bracket.
fn in_range_end(v: &Bson, end: &Bson, inclusive: bool, want: Ordering) -> bool {
    if type_bracket(v) != type_bracket(end) && !matches!(end, Bson::MinKey | Bson::MaxKey) {
        return false;
    }
    let o = compare_bson(v, end);
    o == want || (inclusive && o == Ordering::Equal)
}

fn parse_document(filter: &Document) -> Result<Node> {
    let mut children = Vec::with_capacity(filter.len());
    for (key, value) in filter {
        if let Some(op) = key.strip_prefix('$') {
            match op {
                "and" | "or" | "nor" => {
                    let list = logical_list(key, value)?;
                    children.push(match op {
                        "and" => Node::And(list),
                        "or" => Node::Or(list),
                        _ => Node::Nor(list),
                    });
                }
                "comment" => {}
                _ => return Err(unsupported_operator(key)),
            }
        } else {
            parse_field(key, value, &mut children)?;
        }
    }
    Ok(Node::And(children))
}

fn logical_list(op: &str, value: &Bson) -> Result<Vec<Node>> {
    let Bson::Array(items) = value else {
        return Err(Error::invalid(format!("{op} must be an array")).with_field(op));
    };
    if items.is_empty() {
        return Err(Error::invalid(format!("{op} must be a nonempty array")).with_field(op));
    }
    items
        .iter()
        .map(|item| match item {
            Bson::Document(d) => parse_document(d),
            _ => Err(
                Error::invalid(format!("{op} argument's entries must be objects")).with_field(op),
            ),
        })
        .collect()
}

/// Whether a value is an operator document (`{$gt: 1}`) rather than a
/// literal: MongoDB decides on the first key.
fn is_operator_doc(d: &Document) -> bool {
    d.keys().next().is_some_and(|k| k.starts_with('$'))
}

fn parse_field(path: &str, value: &Bson, out: &mut Vec<Node>) -> Result<()> {
    match value {
        Bson::Document(d) if is_operator_doc(d) => {
            for pred in parse_operators(path, d)? {
                out.push(Node::Field(path.to_string(), pred));
            }
        }
        Bson::RegularExpression(r) => {
            let re = CompiledRegex::new(r.pattern.as_str(), r.options.as_str(), "$regex")
                .map_err(|e| e.with_field(path))?;
            out.push(Node::Field(path.to_string(), Pred::Regex(re)));
        }
        other => out.push(Node::Field(path.to_string(), Pred::Eq(other.clone()))),
    }
    Ok(())
}

fn parse_operators(path: &str, ops: &Document) -> Result<Vec<Pred>> {
    let mut preds = Vec::with_capacity(ops.len());
    let mut regex: Option<&Bson> = None;
    let mut options: Option<&Bson> = None;
    for (op, value) in ops {
        let pred = match op.as_str() {
            "$eq" => Pred::Eq(value.clone()),
            "$ne" => {
                if matches!(value, Bson::RegularExpression(_)) {
                    return Err(Error::invalid("$ne cannot take a regex").with_field(path));
                }
                Pred::Not(Box::new(Pred::Eq(value.clone())))
            }
            "$gt" => Pred::Cmp(CmpOp::Gt, value.clone()),
            "$gte" => Pred::Cmp(CmpOp::Gte, value.clone()),
            "$lt" => Pred::Cmp(CmpOp::Lt, value.clone()),
            "$lte" => Pred::Cmp(CmpOp::Lte, value.clone()),
            "$in" => Pred::In(parse_in_list(op, path, value)?),
            "$nin" => Pred::Not(Box::new(Pred::In(parse_in_list(op, path, value)?))),
            "$exists" => Pred::Exists(match value {
                Bson::Boolean(b) => *b,
                Bson::Null | Bson::Undefined => false,
                Bson::Int32(i) => *i != 0,
                Bson::Int64(i) => *i != 0,
                Bson::Double(d) => *d != 0.0,
                _ => true,
            }),
            "$size" => Pred::Size(parse_size(value).ok_or_else(|| {
                Error::invalid(format!(
                    "$size needs a non-negative whole number, got {value}"
                ))
                .with_field(path)
            })?),
            "$elemMatch" => parse_elem_match(path, value)?,
            "$all" => parse_all(path, value)?,
            "$type" => Pred::Type(parse_type_set(value).map_err(|e| e.with_field(path))?),
            "$mod" => parse_mod(value).map_err(|e| e.with_field(path))?,
            "$not" => match value {
                Bson::RegularExpression(r) => Pred::Not(Box::new(Pred::Regex(
                    CompiledRegex::new(r.pattern.as_str(), r.options.as_str(), "$not")
                        .map_err(|e| e.with_field(path))?,
                ))),
                Bson::Document(sub) if sub.is_empty() => {
                    return Err(Error::invalid("$not cannot be empty").with_field(path));
                }
                Bson::Document(sub) if is_operator_doc(sub) => {
                    Pred::Not(Box::new(Pred::All(parse_operators(path, sub)?)))
                }
                _ => {
                    return Err(
                        Error::invalid("$not needs a regex or a document of operators")
                            .with_field(path),
                    );
                }
            },
            "$regex" => {
                regex = Some(value);
                continue;
            }
            "$options" => {
                options = Some(value);
                continue;
            }
            other if other.starts_with('$') => return Err(unsupported_operator(other)),
            other => {
                return Err(Error::invalid(format!(
                    "unknown operator `{other}`: an operator document cannot mix operators and fields"
                ))
                .with_field(path));
            }
        };
        preds.push(pred);
    }
    match (regex, options) {
        (None, None) => {}
        (None, Some(_)) => {
            return Err(Error::invalid("$options needs a $regex").with_field(path));
        }
        (Some(re), opts) => {
            let opts = match opts {
                None => None,
                Some(Bson::String(s)) => Some(s.as_str()),
                Some(_) => {
                    return Err(Error::invalid("$options has to be a string").with_field(path));
                }
            };
            let compiled = match re {
                Bson::String(p) => CompiledRegex::new(p, opts.unwrap_or(""), "$regex"),
                Bson::RegularExpression(r) => {
                    if opts.is_some() && !r.options.as_str().is_empty() {
                        return Err(Error::invalid("options set in both $regex and $options")
                            .with_field(path));
                    }
                    CompiledRegex::new(
                        r.pattern.as_str(),
                        opts.unwrap_or(r.options.as_str()),
                        "$regex",
                    )
                }
                _ => {
                    return Err(
                        Error::invalid("$regex has to be a string or a regex").with_field(path)
                    );
                }
            }
            .map_err(|e| e.with_field(path))?;
            preds.push(Pred::Regex(compiled));
        }
    }
    Ok(preds)
}

fn parse_elem_match(path: &str, value: &Bson) -> Result<Pred> {
    let Bson::Document(sub) = value else {
        return Err(Error::invalid("$elemMatch needs an object").with_field(path));
    };
    Ok(if is_value_elem_match(sub) {
        Pred::ElemMatchValue(parse_operators(path, sub)?)
    } else {
        Pred::ElemMatchDoc(Box::new(parse_document(sub)?))
    })
}

/// `$all: [v, ...]` is the conjunction of `{path: v}` (regexes as regexes),
/// or of `$elemMatch`es when its first element is one; an empty `$all`
/// matches nothing (MongoDB's reading).
fn parse_all(path: &str, value: &Bson) -> Result<Pred> {
    let Bson::Array(items) = value else {
        return Err(Error::invalid("$all needs an array").with_field(path));
    };
    let is_elem_match = |item: &Bson| matches!(item, Bson::Document(d) if d.keys().next().map(String::as_str) == Some("$elemMatch"));
    if items.is_empty() {
        return Ok(Pred::In(Vec::new()));
    }
    let elem_matches = items.first().is_some_and(is_elem_match);
    let mut preds = Vec::with_capacity(items.len());
    for item in items {
        let pred = match item {
            _ if elem_matches => match item {
                Bson::Document(d) if is_elem_match(item) && d.len() == 1 => {
                    parse_elem_match(path, d.get("$elemMatch").unwrap_or(&Bson::Null))?
                }
                _ => {
                    return Err(
                        Error::invalid("$all/$elemMatch has to be consistent: every element of this $all must be an {$elemMatch: ...}")
                            .with_field(path),
                    );
                }
            },
            Bson::RegularExpression(r) => Pred::Regex(
                CompiledRegex::new(r.pattern.as_str(), r.options.as_str(), "$all")
                    .map_err(|e| e.with_field(path))?,
            ),
            Bson::Document(d) if is_operator_doc(d) => {
                return Err(Error::invalid(format!(
                    "no $ expressions in $all: found `{}` (only $elemMatch, in every element)",
                    d.keys().next().map(String::as_str).unwrap_or("$")
                ))
                .with_field(path));
            }
            other => Pred::Eq(other.clone()),
        };
        preds.push(pred);
    }
    Ok(Pred::All(preds))
}

/// `$type`'s argument: a type alias, a BSON type number, or an array of
/// them, as MongoDB's `parseMatcherTypeSet` reads it.
fn parse_type_set(value: &Bson) -> Result<TypeSet> {
    let mut set = TypeSet {
        all_numbers: false,
        codes: Vec::new(),
    };
    match value {
        Bson::Array(items) => {
            for item in items {
                add_type(&mut set, item)?;
            }
            if items.is_empty() {
                return Err(Error::invalid("$type must match at least one type"));
            }
        }
        single => add_type(&mut set, single)?,
    }
    Ok(set)
}

fn add_type(set: &mut TypeSet, item: &Bson) -> Result<()> {
    let code = match item {
        Bson::String(alias) if alias == "number" => {
            set.all_numbers = true;
            return Ok(());
        }
        Bson::String(alias) if alias == "missing" => {
            return Err(Error::invalid(
                "$type: 'missing' is not a legal type name. To query for non-existence of a field, use {$exists:false}.",
            ));
        }
        Bson::String(alias) => BSON_TYPES
            .iter()
            .find(|(_, name)| name == alias)
            .map(|(code, _)| *code)
            .ok_or_else(|| Error::invalid(format!("$type: unknown type name alias: {alias}")))?,
        Bson::Int32(_) | Bson::Int64(_) | Bson::Double(_) => {
            let code = match item {
                Bson::Int32(i) => Some(i64::from(*i)),
                Bson::Int64(i) => Some(*i),
                Bson::Double(d) if d.fract() == 0.0 && d.abs() < 1e18 => Some(*d as i64),
                _ => None,
            };
            match code {
                Some(0) => {
                    return Err(Error::invalid(format!(
                        "$type: invalid numerical type code: {item}. Instead use {{$exists:false}}."
                    )));
                }
                Some(c) => BSON_TYPES
                    .iter()
                    .map(|(code, _)| *code)
                    .find(|code| i64::from(*code) == c)
                    .ok_or_else(|| {
                        Error::invalid(format!("$type: invalid numerical type code: {item}"))
                    })?,
                None => {
                    return Err(Error::invalid(format!(
                        "$type: invalid numerical type code: {item}"
                    )));
                }
            }
        }
        Bson::Decimal128(_) => {
            return Err(Error::unsupported(
                "$type with a decimal128 type number is not supported by the embedded engine",
            ));
        }
        _ => {
            return Err(Error::invalid(
                "$type: type must be represented as a number or a string",
            ));
        }
    };
    if !set.codes.contains(&code) {
        set.codes.push(code);
    }
    Ok(())
}

/// `$mod: [divisor, remainder]`, both truncated toward zero to 64-bit
/// integers as MongoDB does; a decimal128 operand is `Unsupported` (it would
/// go through `f64`).
fn parse_mod(value: &Bson) -> Result<Pred> {
    let Bson::Array(items) = value else {
        return Err(Error::invalid(
            "malformed $mod: needs to be an array [divisor, remainder]",
        ));
    };
    let (divisor, remainder) = match items.as_slice() {
        [] | [_] => return Err(Error::invalid("malformed $mod: not enough elements")),
        [d, r] => (d, r),
        _ => return Err(Error::invalid("malformed $mod: too many elements")),
    };
    let operand = |v: &Bson, what: &str| -> Result<i64> {
        match v {
            Bson::Int32(i) => Ok(i64::from(*i)),
            Bson::Int64(i) => Ok(*i),
            Bson::Double(d) => truncate_to_i64(*d).ok_or_else(|| {
                Error::invalid(format!(
                    "malformed $mod: {what} value {d} is invalid: not representable as a 64-bit integer"
                ))
            }),
            Bson::Decimal128(_) => Err(Error::unsupported(format!(
                "$mod with a decimal128 {what} is not supported by the embedded engine"
            ))),
            _ => Err(Error::invalid(format!("malformed $mod: {what} not a number"))),
        }
    };
    let divisor = operand(divisor, "divisor")?;
    let remainder = operand(remainder, "remainder")?;
    if divisor == 0 {
        return Err(Error::invalid("$mod: divisor cannot be 0"));
    }
    Ok(Pred::Mod { divisor, remainder })
}

/// `d` truncated toward zero, when it is finite and fits an `i64`.
fn truncate_to_i64(d: f64) -> Option<i64> {
    let t = d.trunc();
    // 2^63 is exactly representable; every double below it in magnitude
    // fits. NaN and infinities are outside the range.
    (-9_223_372_036_854_775_808.0..9_223_372_036_854_775_808.0)
        .contains(&t)
        .then_some(t as i64)
}

/// Whether a document value satisfies `$mod`: numbers only, doubles (and
/// decimals, through `f64`) truncated toward zero; NaN, infinities and
/// values beyond 64 bits never match. The remainder takes the dividend's
/// sign (C's `%`), and `i64::MIN % -1` is 0.
fn mod_matches(divisor: i64, remainder: i64, value: &Bson) -> bool {
    let dividend = match value {
        Bson::Int32(i) => Some(i64::from(*i)),
        Bson::Int64(i) => Some(*i),
        Bson::Double(d) => truncate_to_i64(*d),
        Bson::Decimal128(d) => truncate_to_i64(super::compare::decimal_to_f64(d)),
        _ => None,
    };
    dividend.is_some_and(|n| n.wrapping_rem(divisor) == remainder)
}

/// `$elemMatch: {$gt: 1}` tests elements as values; `$elemMatch: {b: 1}`
/// (or one with `$and`/`$or`/`$nor`) tests them as documents.
fn is_value_elem_match(sub: &Document) -> bool {
    !sub.is_empty()
        && sub
            .keys()
            .all(|k| k.starts_with('$') && !matches!(k.as_str(), "$and" | "$or" | "$nor"))
}

fn parse_in_list(op: &str, path: &str, value: &Bson) -> Result<Vec<InItem>> {
    let Bson::Array(items) = value else {
        return Err(Error::invalid(format!("{op} needs an array")).with_field(path));
    };
    items
        .iter()
        .map(|item| match item {
            Bson::RegularExpression(r) => Ok(InItem::Regex(
                CompiledRegex::new(r.pattern.as_str(), r.options.as_str(), op)
                    .map_err(|e| e.with_field(path))?,
            )),
            Bson::Document(d) if is_operator_doc(d) => Err(Error::invalid(format!(
                "cannot nest an operator (`{}`) under {op}",
                d.keys().next().map(String::as_str).unwrap_or("$")
            ))
            .with_field(path)),
            other => Ok(InItem::Value(other.clone())),
        })
        .collect()
}

fn parse_size(value: &Bson) -> Option<usize> {
    match value {
        Bson::Int32(i) => usize::try_from(*i).ok(),
        Bson::Int64(i) => usize::try_from(*i).ok(),
        Bson::Double(d) if d.fract() == 0.0 && *d >= 0.0 && *d <= 4_294_967_295.0 => {
            Some(*d as usize)
        }
        _ => None,
    }
}

impl Node {
    fn matches(&self, doc: &Document) -> bool {
        match self {
            Node::And(children) => children.iter().all(|c| c.matches(doc)),
            Node::Or(children) => children.iter().any(|c| c.matches(doc)),
            Node::Nor(children) => !children.iter().any(|c| c.matches(doc)),
            Node::Field(path, pred) => pred.matches(&values_along(doc, path), true),
        }
    }
}

impl Pred {
    /// Whether the predicate holds for the values found along a path.
    /// `expand` applies the array rule to arrays at the end of the path.
    fn matches(&self, candidates: &[Option<&Bson>], expand: bool) -> bool {
        match self {
            Pred::Not(p) => !p.matches(candidates, expand),
            Pred::All(ps) => ps.iter().all(|p| p.matches(candidates, expand)),
            Pred::Exists(want) => candidates.iter().any(Option::is_some) == *want,
            Pred::Size(n) => candidates
                .iter()
                .any(|c| matches!(c, Some(Bson::Array(a)) if a.len() == *n)),
            Pred::ElemMatchValue(ps) => candidates.iter().any(|c| match c {
                Some(Bson::Array(a)) => a
                    .iter()
                    .any(|e| ps.iter().all(|p| p.matches(&[Some(e)], false))),
                _ => false,
            }),
            Pred::ElemMatchDoc(node) => candidates.iter().any(|c| match c {
                Some(Bson::Array(a)) => a
                    .iter()
                    .any(|e| matches!(e, Bson::Document(d) if node.matches(d))),
                _ => false,
            }),
            leaf => candidates.iter().any(|c| match c {
                Some(Bson::Array(a)) if expand => {
                    leaf.matches_value(*c) || a.iter().any(|e| leaf.matches_value(Some(e)))
                }
                _ => leaf.matches_value(*c),
            }),
        }
    }

    /// A value condition against one value (`None` = missing).
    fn matches_value(&self, value: Option<&Bson>) -> bool {
        match self {
            Pred::Eq(x) => eq_matches(x, value),
            Pred::Cmp(op, x) => cmp_matches(*op, x, value),
            Pred::In(items) => items.iter().any(|item| match item {
                InItem::Value(x) => eq_matches(x, value),
                InItem::Regex(r) => value.is_some_and(|v| r.matches(v)),
            }),
            Pred::Regex(r) => value.is_some_and(|v| r.matches(v)),
            Pred::Type(set) => value.is_some_and(|v| set.contains(v)),
            Pred::Mod { divisor, remainder } => {
                value.is_some_and(|v| mod_matches(*divisor, *remainder, v))
            }
            other => other.matches(&[value], false),
        }
    }
}

fn eq_matches(operand: &Bson, value: Option<&Bson>) -> bool {
    match (operand, value) {
        (Bson::Null, None | Some(Bson::Null) | Some(Bson::Undefined)) => true,
        (_, None) => false,
        (x, Some(v)) => bson_equal(x, v),
    }
}

fn cmp_matches(op: CmpOp, operand: &Bson, value: Option<&Bson>) -> bool {
    // A missing field compares as null, which only a null operand's bracket
    // admits (`$gte: null` matches missing, `$gt: null` nothing).
    let value = value.unwrap_or(&Bson::Null);
    let cross = matches!(operand, Bson::MinKey | Bson::MaxKey);
    if !cross && type_bracket(value) != type_bracket(operand) {
        return false;
    }
    let o = compare_bson(value, operand);
    match op {
        CmpOp::Gt => o == Ordering::Greater,
        CmpOp::Gte => o != Ordering::Less,
        CmpOp::Lt => o == Ordering::Less,
        CmpOp::Lte => o != Ordering::Greater,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engines::document::query::compare::tests::arb_bson;
    use crate::error::ErrorKind;
    use bson::{Regex as BsonRegex, bson, doc};
    use proptest::prelude::*;

    fn m(filter: Document, d: Document) -> bool {
        Filter::parse(&filter).unwrap().matches(&d)
    }

    fn err(filter: Document) -> Error {
        Filter::parse(&filter).unwrap_err()
    }

    #[test]
    fn implicit_equality_and_dot_paths() {
        assert!(m(doc! {"a": 1}, doc! {"a": 1.0}));
        assert!(!m(doc! {"a": 1}, doc! {"a": "1"}));
        assert!(m(doc! {"a.b": "x"}, doc! {"a": {"b": "x"}}));
        assert!(m(
            doc! {"a": {"b": 1, "c": 2}},
            doc! {"a": {"b": 1, "c": 2}}
        ));
        // Whole-document equality is order-sensitive, as in MongoDB.
        assert!(!m(
            doc! {"a": {"b": 1, "c": 2}},
            doc! {"a": {"c": 2, "b": 1}}
        ));
        assert!(m(doc! {}, doc! {"x": 1}));
        assert!(m(doc! {"a": 1, "b": 2}, doc! {"a": 1, "b": 2}));
        assert!(!m(doc! {"a": 1, "b": 2}, doc! {"a": 1, "b": 3}));
    }

    #[test]
    fn array_rule_matches_array_or_any_element() {
        let d = doc! {"tags": ["a", "b"], "n": [1, [2, 3]]};
        assert!(m(doc! {"tags": "b"}, d.clone()));
        assert!(m(doc! {"tags": ["a", "b"]}, d.clone()));
        assert!(!m(doc! {"tags": ["b", "a"]}, d.clone()));
        assert!(m(doc! {"n": [2, 3]}, d.clone()));
        // Only one level of expansion at the leaf.
        assert!(!m(doc! {"n": 2}, d.clone()));
        assert!(m(doc! {"n": {"$gt": 0, "$lt": 2}}, d.clone()));
        assert!(!m(doc! {"tags": {"$ne": "a"}}, d.clone()));
        assert!(m(doc! {"tags": {"$ne": "z"}}, d.clone()));
        assert!(!m(doc! {"tags": {"$nin": ["z", "b"]}}, d.clone()));
        assert!(m(doc! {"tags": {"$nin": ["z"]}}, d));
        let d = doc! {"items": [{"sku": "x", "q": 1}, {"sku": "y", "q": 5}]};
        assert!(m(doc! {"items.sku": "y"}, d.clone()));
        assert!(m(doc! {"items.q": {"$gt": 4}}, d.clone()));
        assert!(m(doc! {"items.0.sku": "x"}, d.clone()));
        assert!(!m(doc! {"items.1.sku": "x"}, d.clone()));
        // Conditions on different elements combine without $elemMatch...
        assert!(m(doc! {"items.sku": "x", "items.q": 5}, d.clone()));
        // ...and not with it.
        assert!(!m(
            doc! {"items": {"$elemMatch": {"sku": "x", "q": 5}}},
            d.clone()
        ));
        assert!(m(
            doc! {"items": {"$elemMatch": {"sku": "y", "q": {"$gte": 5}}}},
            d
        ));
    }

    #[test]
    fn comparisons_respect_type_brackets() {
        assert!(!m(doc! {"a": {"$gt": 5}}, doc! {"a": "zzz"}));
        assert!(!m(doc! {"a": {"$lt": "a"}}, doc! {"a": 1}));
        assert!(m(doc! {"a": {"$gt": 5}}, doc! {"a": 5.5}));
        assert!(m(doc! {"a": {"$gte": 5, "$lte": 5}}, doc! {"a": 5i64}));
        assert!(m(doc! {"a": {"$lt": "b"}}, doc! {"a": "a"}));
        assert!(!m(doc! {"a": {"$lt": 5}}, doc! {}));
        assert!(!m(doc! {"a": {"$lt": 5}}, doc! {"a": null}));
        assert!(m(doc! {"a": {"$gte": null}}, doc! {}));
        assert!(!m(doc! {"a": {"$gt": null}}, doc! {"a": null}));
        assert!(m(doc! {"a": {"$gt": Bson::MinKey}}, doc! {"a": "x"}));
        assert!(m(doc! {"a": {"$lt": Bson::MaxKey}}, doc! {"a": true}));
    }

    #[test]
    fn null_matches_missing_and_exists_tells_them_apart() {
        assert!(m(doc! {"a": null}, doc! {}));
        assert!(m(doc! {"a": null}, doc! {"a": null}));
        assert!(!m(doc! {"a": null}, doc! {"a": 0}));
        assert!(m(doc! {"a": {"$exists": false}}, doc! {}));
        assert!(!m(doc! {"a": {"$exists": false}}, doc! {"a": null}));
        assert!(m(doc! {"a": {"$exists": true}}, doc! {"a": null}));
        assert!(m(doc! {"a": {"$ne": null}}, doc! {"a": 1}));
        assert!(!m(doc! {"a": {"$ne": null}}, doc! {}));
        assert!(m(doc! {"a": {"$in": [null, 5]}}, doc! {}));
        assert!(m(doc! {"a.b": null}, doc! {"a": [{"b": 1}, {"c": 1}]}));
        assert!(m(doc! {"a.b": {"$exists": true}}, doc! {"a": [{"b": 1}]}));
        assert!(!m(doc! {"a.b": {"$exists": true}}, doc! {"a": [1, 2]}));
    }

    #[test]
    fn in_nin_and_logical_operators() {
        assert!(m(doc! {"a": {"$in": [1, "x"]}}, doc! {"a": "x"}));
        assert!(!m(doc! {"a": {"$in": []}}, doc! {"a": 1}));
        assert!(m(doc! {"a": {"$nin": []}}, doc! {"a": 1}));
        assert!(m(
            doc! {"a": {"$in": [BsonRegex { pattern: "^x".try_into().unwrap(), options: "".try_into().unwrap() }]}},
            doc! {"a": "xyz"}
        ));
        let d = doc! {"a": 1, "b": 2};
        assert!(m(doc! {"$or": [{"a": 2}, {"b": 2}]}, d.clone()));
        assert!(!m(doc! {"$or": [{"a": 2}, {"b": 3}]}, d.clone()));
        assert!(m(doc! {"$and": [{"a": 1}, {"b": 2}]}, d.clone()));
        assert!(!m(doc! {"$nor": [{"a": 2}, {"b": 2}]}, d.clone()));
        assert!(m(doc! {"$nor": [{"a": 2}, {"b": 3}]}, d.clone()));
        assert!(m(doc! {"a": {"$not": {"$gt": 5}}}, d.clone()));
        assert!(m(doc! {"z": {"$not": {"$gt": 5}}}, d.clone()));
        assert!(!m(doc! {"a": {"$not": {"$gte": 0, "$lte": 3}}}, d.clone()));
        assert!(m(doc! {"$comment": "why", "a": 1}, d));
    }

    #[test]
    fn size_and_elem_match() {
        let d = doc! {"a": [1, 5, 9], "s": "str"};
        assert!(m(doc! {"a": {"$size": 3}}, d.clone()));
        assert!(m(doc! {"a": {"$size": 3.0}}, d.clone()));
        assert!(!m(doc! {"a": {"$size": 2}}, d.clone()));
        assert!(!m(doc! {"s": {"$size": 3}}, d.clone()));
        assert!(m(
            doc! {"a": {"$elemMatch": {"$gt": 4, "$lt": 6}}},
            d.clone()
        ));
        assert!(!m(
            doc! {"a": {"$elemMatch": {"$gt": 6, "$lt": 9}}},
            d.clone()
        ));
        assert!(!m(doc! {"s": {"$elemMatch": {"$gt": "a"}}}, d));
        let d = doc! {"a": [{"b": 1}, {"b": 2, "c": 3}]};
        assert!(m(
            doc! {"a": {"$elemMatch": {"$or": [{"b": 9}, {"c": 3}]}}},
            d
        ));
    }

    #[test]
    fn all_is_a_conjunction_of_equalities_or_elem_matches() {
        let docs = [
            doc! {"a": [1, 2, 3]},
            doc! {"a": [1]},
            doc! {"a": 1},
            doc! {"a": [[1, 2], 3]},
            doc! {},
            doc! {"a": null},
            doc! {"a": ["xa", "yb"]},
            doc! {"a": [{"b": 1, "c": 2}, {"b": 2, "c": 1}]},
        ];
        let matching = |f: Document| -> Vec<usize> {
            let f = Filter::parse(&f).unwrap();
            (0..docs.len()).filter(|i| f.matches(&docs[*i])).collect()
        };
        assert_eq!(matching(doc! {"a": {"$all": [1, 2]}}), vec![0]);
        assert_eq!(matching(doc! {"a": {"$all": [1]}}), vec![0, 1, 2]);
        assert_eq!(matching(doc! {"a": {"$all": []}}), Vec::<usize>::new());
        assert_eq!(matching(doc! {"a": {"$all": [[1, 2]]}}), vec![3]);
        assert_eq!(matching(doc! {"a": {"$all": [null]}}), vec![4, 5]);
        let re = BsonRegex {
            pattern: "^x".try_into().unwrap(),
            options: "".try_into().unwrap(),
        };
        assert_eq!(matching(doc! {"a": {"$all": [re, "yb"]}}), vec![6]);
        assert_eq!(
            matching(doc! {"a": {"$all": [{"$elemMatch": {"b": 1, "c": 2}}]}}),
            vec![7]
        );
        assert_eq!(
            matching(doc! {"a": {"$all": [{"$elemMatch": {"b": 1, "c": 1}}]}}),
            Vec::<usize>::new()
        );
        assert_eq!(
            matching(doc! {"a": {"$all": [{"$elemMatch": {"b": 1}}, {"$elemMatch": {"c": 1}}]}}),
            vec![7]
        );
        assert_eq!(
            matching(doc! {"a": {"$all": [{"$elemMatch": {"$gt": 2}}]}}),
            vec![0, 3]
        );
        assert_eq!(
            matching(doc! {"a": {"$not": {"$all": [1, 2]}}}),
            vec![1, 2, 3, 4, 5, 6, 7]
        );
        assert_eq!(
            matching(doc! {"a": {"$not": {"$all": []}}}),
            (0..docs.len()).collect::<Vec<_>>()
        );
    }

    #[test]
    fn type_by_alias_number_and_list_with_array_rule() {
        let docs = [
            doc! {"a": "x"},
            doc! {"a": 1.5},
            doc! {"a": 1},
            doc! {"a": Bson::Int64(2)},
            doc! {"a": [1, "y"]},
            doc! {"a": {"b": 1}},
            doc! {"a": null},
            doc! {},
            doc! {"a": true},
            doc! {"a": bson::DateTime::from_millis(0)},
            doc! {"a": []},
            doc! {"a": [[1]]},
            doc! {"a": [{"b": 1}]},
        ];
        let matching = |t: Bson| -> Vec<usize> {
            let f = Filter::parse(&doc! {"a": {"$type": t}}).unwrap();
            (0..docs.len()).filter(|i| f.matches(&docs[*i])).collect()
        };
        assert_eq!(matching(bson!("string")), vec![0, 4]);
        assert_eq!(matching(bson!(2)), vec![0, 4]);
        assert_eq!(matching(bson!(2.0)), vec![0, 4]);
        assert_eq!(matching(bson!("double")), vec![1]);
        assert_eq!(matching(bson!("int")), vec![2, 4]);
        assert_eq!(matching(Bson::Int64(18)), vec![3]);
        assert_eq!(matching(bson!("number")), vec![1, 2, 3, 4]);
        // An array matches "array" itself, and through arrays it holds.
        assert_eq!(matching(bson!("array")), vec![4, 10, 11, 12]);
        assert_eq!(matching(bson!(4)), vec![4, 10, 11, 12]);
        assert_eq!(matching(bson!("object")), vec![5, 12]);
        assert_eq!(matching(bson!("null")), vec![6]);
        assert_eq!(matching(bson!("bool")), vec![8]);
        assert_eq!(matching(bson!("date")), vec![9]);
        assert_eq!(matching(bson!(["string", 16])), vec![0, 2, 4]);
        assert_eq!(matching(bson!(-1)), Vec::<usize>::new());
        let f = Filter::parse(&doc! {"a": {"$not": {"$type": "number"}}}).unwrap();
        assert!(f.matches(&doc! {}));
        assert!(!f.matches(&doc! {"a": [1, "x"]}));
        let f = Filter::parse(&doc! {"a.b": {"$type": "int"}}).unwrap();
        assert!(f.matches(&doc! {"a": [{"b": "x"}, {"b": 1}]}));
        assert!(!f.matches(&doc! {"a": [{"c": 1}]}));
    }

    #[test]
    fn mod_truncates_and_keeps_the_dividends_sign() {
        let docs = [
            doc! {"a": 5},
            doc! {"a": -5},
            doc! {"a": 5.9},
            doc! {"a": -5.9},
            doc! {"a": Bson::Int64(10)},
            doc! {"a": [3, 4]},
            doc! {"a": "5"},
            doc! {"a": f64::NAN},
            doc! {"a": f64::INFINITY},
            doc! {},
            doc! {"a": 1e30},
            doc! {"a": Bson::Int64(i64::MIN)},
        ];
        let matching = |args: Bson| -> Vec<usize> {
            let f = Filter::parse(&doc! {"a": {"$mod": args}}).unwrap();
            (0..docs.len()).filter(|i| f.matches(&docs[*i])).collect()
        };
        assert_eq!(matching(bson!([4, 1])), vec![0, 2]);
        assert_eq!(matching(bson!([4, -1])), vec![1, 3]);
        assert_eq!(matching(bson!([-4, 1])), vec![0, 2]);
        assert_eq!(matching(bson!([2, 0])), vec![4, 5, 11]);
        // Fractional operands are truncated: [2.9, 1.9] is [2, 1].
        assert_eq!(matching(bson!([2.9, 1.9])), vec![0, 2, 5]);
        assert_eq!(matching(bson!([-1, 0])), vec![0, 1, 2, 3, 4, 5, 11]);
        // A decimal128 dividend goes through f64, then truncates.
        let decimal: bson::Decimal128 = "7.5".parse().unwrap();
        let f = Filter::parse(&doc! {"a": {"$mod": [4, 3]}}).unwrap();
        assert!(f.matches(&doc! {"a": decimal}));
        let f = Filter::parse(&doc! {"a": {"$not": {"$mod": [2, 1]}}}).unwrap();
        assert!(f.matches(&doc! {}));
        assert!(f.matches(&doc! {"a": "x"}));
        assert!(!f.matches(&doc! {"a": 3}));
    }

    #[test]
    fn regex_operator_options_and_implicit_regex() {
        let d = doc! {"name": "Resnet-50\nv2", "tags": ["Vision", "cnn"]};
        assert!(m(
            doc! {"name": {"$regex": "^resnet", "$options": "i"}},
            d.clone()
        ));
        assert!(!m(doc! {"name": {"$regex": "^resnet"}}, d.clone()));
        assert!(m(
            doc! {"name": {"$regex": "^v2", "$options": "m"}},
            d.clone()
        ));
        assert!(!m(doc! {"name": {"$regex": "^v2"}}, d.clone()));
        assert!(m(
            doc! {"name": {"$regex": "50.v2", "$options": "s"}},
            d.clone()
        ));
        assert!(m(
            doc! {"name": {"$regex": "res net # comment", "$options": "xi"}},
            d.clone()
        ));
        let re = BsonRegex {
            pattern: "^vis".try_into().unwrap(),
            options: "i".try_into().unwrap(),
        };
        assert!(m(doc! {"tags": re.clone()}, d.clone()));
        assert!(m(doc! {"tags": {"$regex": re.clone()}}, d.clone()));
        assert!(m(doc! {"tags": {"$not": re}}, doc! {"tags": ["x"]}));
        assert!(!m(doc! {"n": {"$regex": "1"}}, doc! {"n": 1}));
        assert!(m(doc! {"name": {"$not": {"$regex": "^x"}}}, d));
    }

    #[test]
    fn unsupported_operators_are_named_at_any_depth() {
        for (f, name) in [
            (doc! {"$where": "1"}, "$where"),
            (doc! {"$text": {"$search": "x"}}, "$text"),
            (doc! {"$expr": {"$eq": [1, 1]}}, "$expr"),
            (doc! {"$jsonSchema": {}}, "$jsonSchema"),
            (doc! {"a": {"$where": "1"}}, "$where"),
            (doc! {"a": {"$bitsAnySet": 1}}, "$bitsAnySet"),
            (doc! {"a": {"$geoWithin": {}}}, "$geoWithin"),
            (doc! {"$or": [{"a": {"$bitsAllClear": 1}}]}, "$bitsAllClear"),
            (doc! {"a": {"$not": {"$bitsAnyClear": 2}}}, "$bitsAnyClear"),
            (
                doc! {"a": {"$all": [{"$elemMatch": {"b": {"$near": 1}}}]}},
                "$near",
            ),
            (
                doc! {"a": {"$type": Bson::Decimal128(bson::Decimal128::from_bytes([0; 16]))}},
                "decimal128",
            ),
            (
                doc! {"a": {"$mod": [Bson::Decimal128(bson::Decimal128::from_bytes([0; 16])), 1]}},
                "decimal128",
            ),
            (doc! {"a": {"$elemMatch": {"b": {"$near": 1}}}}, "$near"),
            (doc! {"a": {"$gt": 1, "$bitsAllSet": 1}}, "$bitsAllSet"),
        ] {
            let e = err(f.clone());
            assert_eq!(e.kind(), ErrorKind::Unsupported, "{f}");
            assert!(
                e.message().contains(&format!("`{name}`")) || e.message().contains(name),
                "{f}: {}",
                e.message()
            );
        }
        let e = err(doc! {"a": {"$where": "1"}});
        assert_eq!(e.message(), "unsupported query operator `$where`");
    }

    #[test]
    fn malformed_operators_are_invalid_input_naming_them() {
        for (f, name) in [
            (doc! {"a": {"$in": 1}}, "$in"),
            (doc! {"a": {"$nin": "x"}}, "$nin"),
            (doc! {"$and": []}, "$and"),
            (doc! {"$or": {"a": 1}}, "$or"),
            (doc! {"$nor": [1]}, "$nor"),
            (doc! {"a": {"$size": 1.5}}, "$size"),
            (doc! {"a": {"$size": -1}}, "$size"),
            (doc! {"a": {"$size": "2"}}, "$size"),
            (doc! {"a": {"$elemMatch": 1}}, "$elemMatch"),
            (doc! {"a": {"$not": 1}}, "$not"),
            (doc! {"a": {"$not": {}}}, "$not"),
            (doc! {"a": {"$options": "i"}}, "$options"),
            (doc! {"a": {"$regex": 1}}, "$regex"),
            (doc! {"a": {"$regex": "(", "$options": ""}}, "$regex"),
            (doc! {"a": {"$regex": "x", "$options": "q"}}, "$regex"),
            (doc! {"a": {"$in": [{"$gt": 1}]}}, "$in"),
            (doc! {"a": {"$all": 1}}, "$all"),
            (doc! {"a": {"$all": [{"$gt": 1}]}}, "$all"),
            (doc! {"a": {"$all": [{"$elemMatch": {"b": 1}}, 5]}}, "$all"),
            (doc! {"a": {"$all": [1, {"$elemMatch": {"b": 1}}]}}, "$all"),
            (doc! {"a": {"$type": "strnig"}}, "$type"),
            (doc! {"a": {"$type": "missing"}}, "$type"),
            (doc! {"a": {"$type": []}}, "$type"),
            (doc! {"a": {"$type": 0}}, "$type"),
            (doc! {"a": {"$type": 20}}, "$type"),
            (doc! {"a": {"$type": 2.5}}, "$type"),
            (doc! {"a": {"$type": true}}, "$type"),
            (doc! {"a": {"$type": ["string", "nope"]}}, "$type"),
            (doc! {"a": {"$mod": 2}}, "$mod"),
            (doc! {"a": {"$mod": []}}, "$mod"),
            (doc! {"a": {"$mod": [2]}}, "$mod"),
            (doc! {"a": {"$mod": [2, 0, 1]}}, "$mod"),
            (doc! {"a": {"$mod": ["2", 0]}}, "$mod"),
            (doc! {"a": {"$mod": [2, "0"]}}, "$mod"),
            (doc! {"a": {"$mod": [2, null]}}, "$mod"),
            (doc! {"a": {"$mod": [0, 0]}}, "$mod"),
            (doc! {"a": {"$mod": [0.5, 0]}}, "$mod"),
            (doc! {"a": {"$mod": [f64::NAN, 0]}}, "$mod"),
            (doc! {"a": {"$mod": [1e30, 0]}}, "$mod"),
            (doc! {"a": {"$mod": [2, f64::INFINITY]}}, "$mod"),
            (
                doc! {"a": {"$ne": BsonRegex { pattern: "x".try_into().unwrap(), options: "".try_into().unwrap() }}},
                "$ne",
            ),
        ] {
            let e = err(f.clone());
            assert_eq!(e.kind(), ErrorKind::InvalidInput, "{f}");
            assert!(e.message().contains(name), "{f}: {}", e.message());
        }
        assert_eq!(
            err(doc! {"a": {"$gt": 1, "b": 1}}).kind(),
            ErrorKind::InvalidInput
        );
        // Look-around parses in PCRE but not here: unsupported, not invalid.
        assert_eq!(
            err(doc! {"a": {"$regex": "a(?=b)"}}).kind(),
            ErrorKind::Unsupported
        );
    }

    #[test]
    fn equality_fields_come_from_top_level_and_and() {
        let f = Filter::parse(&doc! {
            "a": 1, "b": {"$eq": "x"}, "c": {"$gt": 1}, "d": {"$in": [7]},
            "$and": [{"e": null}, {"$or": [{"f": 1}]}], "g": {"$regex": "x"}
        })
        .unwrap();
        assert_eq!(
            f.equality_fields(),
            vec![
                ("a".to_string(), bson!(1)),
                ("b".to_string(), bson!("x")),
                ("d".to_string(), bson!(7)),
                ("e".to_string(), Bson::Null),
            ]
        );
    }

    #[test]
    fn bounds_combine_conditions() {
        let f = |d: Document| Filter::parse(&d).unwrap();
        assert_eq!(
            f(doc! {"a": 1}).bounds("a"),
            Some(FieldBounds::In(vec![bson!(1)]))
        );
        assert_eq!(f(doc! {"a": 1}).bounds("b"), None);
        assert_eq!(
            f(doc! {"a": {"$in": [1, 2, 3]}, "$and": [{"a": {"$in": [2, 3, 4]}}, {"a": {"$lt": 3}}]}).bounds("a"),
            Some(FieldBounds::In(vec![bson!(2)]))
        );
        assert_eq!(
            f(doc! {"a": {"$gt": 1, "$gte": 2, "$lt": 9}, "$and": [{"a": {"$lte": 5}}]})
                .bounds("a"),
            Some(FieldBounds::Range {
                lower: Some((bson!(2), true)),
                upper: Some((bson!(5), true))
            })
        );
        assert_eq!(
            f(doc! {"a": {"$gte": 2, "$gt": 2}}).bounds("a"),
            Some(FieldBounds::Range {
                lower: Some((bson!(2), false)),
                upper: None
            })
        );
        assert_eq!(f(doc! {"$or": [{"a": 1}]}).bounds("a"), None);
        assert_eq!(f(doc! {"a": [1, 2]}).bounds("a"), None);
        assert_eq!(f(doc! {"a": {"$regex": "x"}}).bounds("a"), None);
        let re = BsonRegex {
            pattern: "x".try_into().unwrap(),
            options: "".try_into().unwrap(),
        };
        assert_eq!(f(doc! {"a": {"$in": [1, re]}}).bounds("a"), None);
        assert_eq!(f(doc! {"a": {"$ne": 1}}).bounds("a"), None);
        assert_eq!(
            f(doc! {"a": {"$gt": 5, "$lt": 10}}).element_bounds("a"),
            Some(FieldBounds::Range {
                lower: Some((bson!(5), false)),
                upper: None
            })
        );
    }

    #[test]
    fn lookup_helper_matches_in_with_array_rule() {
        let f = Filter::field_in("k", vec![bson!(1), Bson::Null]);
        assert!(f.matches(&doc! {"k": [0, 1]}));
        assert!(f.matches(&doc! {}));
        assert!(!f.matches(&doc! {"k": 2}));
    }

    fn scalar() -> impl Strategy<Value = Bson> {
        arb_bson().prop_filter("scalar", |v| !matches!(v, Bson::Array(_)))
    }

    proptest! {
        #[test]
        fn not_is_the_complement(op in prop::sample::select(vec!["$eq", "$gt", "$gte", "$lt", "$lte"]),
                                 v in scalar(), x in arb_bson(), present in any::<bool>()) {
            let d = if present { doc! {"a": x} } else { doc! {} };
            let pos = m(doc! {"a": {op: v.clone()}}, d.clone());
            let neg = m(doc! {"a": {"$not": {op: v.clone()}}}, d.clone());
            prop_assert_eq!(pos, !neg);
            let ne = m(doc! {"a": {"$ne": v.clone()}}, d.clone());
            prop_assert_eq!(ne, !m(doc! {"a": {"$eq": v}}, d));
        }

        #[test]
        fn type_by_name_and_number_agree(x in arb_bson()) {
            let d = doc! {"a": x.clone()};
            let code = type_code(&x);
            let name = BSON_TYPES.iter().find(|(c, _)| *c == code).map(|(_, n)| *n).unwrap();
            let by_name = m(doc! {"a": {"$type": name}}, d.clone());
            prop_assert_eq!(by_name, m(doc! {"a": {"$type": code}}, d.clone()));
            prop_assert_eq!(by_name, m(doc! {"a": {"$type": f64::from(code)}}, d.clone()));
            // A value is always of its own type.
            prop_assert!(by_name, "not of its own type");
            let numeric = matches!(x, Bson::Int32(_) | Bson::Int64(_) | Bson::Double(_));
            let has_number = numeric
                || matches!(&x, Bson::Array(items) if items.iter().any(|e| matches!(e, Bson::Int32(_) | Bson::Int64(_) | Bson::Double(_))));
            prop_assert_eq!(m(doc! {"a": {"$type": "number"}}, d), has_number);
        }

        #[test]
        fn mod_agrees_with_wide_arithmetic(n in any::<i64>(),
                                           divisor in any::<i64>().prop_filter("non-zero", |d| *d != 0),
                                           r in -3i64..3, f in -1e12f64..1e12) {
            let exact = (i128::from(n) % i128::from(divisor)) as i64;
            let exact_matches = m(doc! {"a": {"$mod": [divisor, exact]}}, doc! {"a": n});
            prop_assert!(exact_matches);
            let expected = i128::from(n) % i128::from(divisor) == i128::from(r);
            prop_assert_eq!(m(doc! {"a": {"$mod": [divisor, r]}}, doc! {"a": n}), expected);
            // Doubles (in the document and as operands) truncate toward zero.
            let t = f.trunc() as i64;
            prop_assert_eq!(m(doc! {"a": {"$mod": [7, r]}}, doc! {"a": f}), t % 7 == r);
            let fractional = r as f64 + 0.5 * (r.signum() as f64);
            prop_assert_eq!(m(doc! {"a": {"$mod": [7.9, fractional]}}, doc! {"a": f}), t % 7 == r);
        }

        #[test]
        fn in_of_one_is_eq(v in scalar(), x in arb_bson()) {
            let d = doc! {"a": x};
            prop_assert_eq!(m(doc! {"a": {"$in": [v.clone()]}}, d.clone()), m(doc! {"a": {"$eq": v.clone()}}, d.clone()));
            prop_assert_eq!(m(doc! {"a": {"$nin": [v.clone()]}}, d.clone()), !m(doc! {"a": {"$eq": v}}, d));
        }

        #[test]
        fn scalar_comparison_follows_order_within_bracket(v in scalar(), x in scalar()) {
            let d = doc! {"a": x.clone()};
            let same = type_bracket(&v) == type_bracket(&x) || matches!(v, Bson::MinKey | Bson::MaxKey);
            let o = compare_bson(&x, &v);
            prop_assert_eq!(m(doc! {"a": {"$gt": v.clone()}}, d.clone()), same && o == Ordering::Greater);
            prop_assert_eq!(m(doc! {"a": {"$lte": v.clone()}}, d.clone()), same && o != Ordering::Greater);
            prop_assert_eq!(m(doc! {"a": v.clone()}, d), o == Ordering::Equal || (v == Bson::Null && x == Bson::Null));
        }

        #[test]
        fn array_matches_when_an_element_matches(v in scalar(), xs in prop::collection::vec(scalar(), 0..4)) {
            let d = doc! {"a": xs.clone()};
            let any = xs.iter().any(|x| bson_equal(x, &v));
            prop_assert_eq!(m(doc! {"a": v.clone()}, d.clone()), any);
            let any_gt = xs.iter().any(|x| type_bracket(x) == type_bracket(&v) && compare_bson(x, &v) == Ordering::Greater)
                || (matches!(v, Bson::MinKey) && !xs.is_empty());
            // An array is itself in the array bracket, so it only meets a
            // range operator through its elements (or MinKey/MaxKey).
            let whole = matches!(v, Bson::MinKey) ;
            prop_assert_eq!(m(doc! {"a": {"$gt": v.clone()}}, d), any_gt || whole);
        }
    }
}
