//! Update operators.
//!
//! # Contracts
//!
//! - [`Update::parse`] accepts `$set $unset $inc $push $addToSet` only
//!   (`$push`/`$addToSet` with an optional `{$each: [...]}`). An empty
//!   update, a field that is not an operator, an operator whose argument is
//!   not a document, a non-numeric `$inc`, or two operations on the same or
//!   overlapping paths (`a` and `a.b`) are `InvalidInput`; any other
//!   operator, positional paths (`a.$`, `a.$[]`) and `$push` modifiers other
//!   than `$each` are `Unsupported`, named.
//! - [`Update::apply`] works on a copy: on error the document is untouched.
//!   It reports a change only when some value actually differs (setting a
//!   field to the value it holds is not a change; a different numeric type
//!   is).
//! - Operations run in path order (lexicographic, numeric components
//!   numerically), so new fields are appended in that order, as MongoDB 5+
//!   does.
//! - `$inc` keeps MongoDB's types: int32 + int32 stays int32 unless it
//!   overflows (then int64), int64 overflow becomes double, a double operand
//!   gives a double; a missing field is set to the increment.
//! - An update that would change or remove an existing `_id` fails with
//!   `InvalidInput`; a document without `_id` (an upsert seed) may get one.

use std::cmp::Ordering;

use bson::{Bson, Document};

use crate::error::{Error, Result};

use super::arith::{Number, add};
use super::compare::bson_equal;
use super::path::{array_index, check_path, get_path, remove_path, set_path, type_name};

/// A parsed, validated update document.
#[derive(Debug, Clone, PartialEq)]
pub struct Update {
    /// In path order.
    ops: Vec<Op>,
}

#[derive(Debug, Clone, PartialEq)]
struct Op {
    path: String,
    kind: OpKind,
}

#[derive(Debug, Clone, PartialEq)]
enum OpKind {
    Set(Bson),
    Unset,
    Inc(Bson),
    Push(Vec<Bson>),
    AddToSet(Vec<Bson>),
}

impl Update {
    /// Parses an update of operators only; a document without operators, an
    /// unknown operator, or two operators on the same path is an error.
    pub fn parse(update: &Document) -> Result<Update> {
        if update.is_empty() {
            return Err(Error::invalid(
                "update document is empty: it requires atomic operators",
            ));
        }
        let mut ops = Vec::new();
        for (operator, args) in update {
            if !operator.starts_with('$') {
                return Err(Error::invalid(format!(
                    "update document requires atomic operators, found field `{operator}`"
                ))
                .with_field(operator.as_str()));
            }
            let known = matches!(
                operator.as_str(),
                "$set" | "$unset" | "$inc" | "$push" | "$addToSet"
            );
            if !known {
                return Err(Error::unsupported(format!(
                    "unsupported update operator `{operator}`"
                )));
            }
            let Bson::Document(fields) = args else {
                return Err(Error::invalid(format!(
                    "modifiers operate on fields but {operator} got a value of type {}",
                    type_name(args)
                )));
            };
            for (path, value) in fields {
                check_update_path(path)?;
                let kind = match operator.as_str() {
                    "$set" => OpKind::Set(value.clone()),
                    "$unset" => OpKind::Unset,
                    "$inc" => {
                        if Number::of(value, "$inc")?.is_none() {
                            return Err(Error::invalid(format!(
                                "Cannot increment with non-numeric argument: {{{path}: {value}}}"
                            ))
                            .with_field(path.as_str()));
                        }
                        OpKind::Inc(value.clone())
                    }
                    "$push" => OpKind::Push(each_values(operator, path, value)?),
                    _ => OpKind::AddToSet(each_values(operator, path, value)?),
                };
                ops.push(Op {
                    path: path.clone(),
                    kind,
                });
            }
        }
        check_conflicts(&ops)?;
        ops.sort_by(|a, b| compare_paths(&a.path, &b.path));
        Ok(Update { ops })
    }

    /// Applies the update; returns whether the document changed. Fails
    /// without changing `doc` when an operator meets the wrong type (`$inc`
    /// of a string) or the update would change `_id`.
    pub fn apply(&self, doc: &mut Document) -> Result<bool> {
        let mut work = doc.clone();
        let mut changed = false;
        for op in &self.ops {
            let before = get_path(&work, &op.path).cloned();
            apply_op(&mut work, op, before.as_ref(), doc)?;
            changed |= before.as_ref() != get_path(&work, &op.path);
        }
        if let Some(id) = doc.get("_id")
            && work.get("_id") != Some(id)
        {
            return Err(Error::invalid(
                "Performing an update on the path '_id' would modify the immutable field '_id'",
            )
            .with_field("_id"));
        }
        if changed {
            *doc = work;
        }
        Ok(changed)
    }
}

fn check_update_path(path: &str) -> Result<()> {
    check_path(path)?;
    for part in path.split('.') {
        if part == "$" || part.starts_with("$[") {
            return Err(Error::unsupported(format!(
                "unsupported positional update operator `{part}` in `{path}`"
            ))
            .with_field(path));
        }
        if part.starts_with('$') {
            return Err(Error::invalid(format!(
                "the update path `{path}` contains a field name starting with `$`"
            ))
            .with_field(path));
        }
    }
    Ok(())
}

/// The values a `$push`/`$addToSet` adds: one value, or `{$each: [...]}`.
fn each_values(operator: &str, path: &str, value: &Bson) -> Result<Vec<Bson>> {
    let Bson::Document(d) = value else {
        return Ok(vec![value.clone()]);
    };
    if !d.contains_key("$each") {
        return Ok(vec![value.clone()]);
    }
    let mut values = None;
    for (key, arg) in d {
        match key.as_str() {
            "$each" => {
                let Bson::Array(items) = arg else {
                    return Err(Error::invalid(format!(
                        "the argument to $each in {operator} must be an array but it was of type {}",
                        type_name(arg)
                    ))
                    .with_field(path));
                };
                values = Some(items.clone());
            }
            "$slice" | "$sort" | "$position" if operator == "$push" => {
                return Err(
                    Error::unsupported(format!("unsupported $push modifier `{key}`"))
                        .with_field(path),
                );
            }
            other => {
                return Err(Error::invalid(format!(
                    "unrecognized clause in {operator}: `{other}`"
                ))
                .with_field(path));
            }
        }
    }
    Ok(values.unwrap_or_default())
}

fn is_prefix(short: &str, long: &str) -> bool {
    long.len() > short.len()
        && long.starts_with(short)
        && long.as_bytes().get(short.len()) == Some(&b'.')
}

fn check_conflicts(ops: &[Op]) -> Result<()> {
    for (i, a) in ops.iter().enumerate() {
        for b in &ops[i + 1..] {
            let (short, long) = if a.path.len() <= b.path.len() {
                (&a.path, &b.path)
            } else {
                (&b.path, &a.path)
            };
            if short == long || is_prefix(short, long) {
                return Err(Error::invalid(format!(
                    "Updating the path '{long}' would create a conflict at '{short}'"
                ))
                .with_field(short.as_str()));
            }
        }
    }
    Ok(())
}

/// Path order: component by component, numeric components numerically.
fn compare_paths(a: &str, b: &str) -> Ordering {
    let mut x = a.split('.');
    let mut y = b.split('.');
    loop {
        match (x.next(), y.next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(p), Some(q)) => {
                let o = match (array_index(p), array_index(q)) {
                    (Some(i), Some(j)) => i.cmp(&j),
                    _ => p.cmp(q),
                };
                if o != Ordering::Equal {
                    return o;
                }
            }
        }
    }
}

/// A short description of the document for messages, as MongoDB gives.
fn describe(original: &Document) -> String {
    match original.get("_id") {
        Some(id) => format!("{{_id: {id}}}"),
        None => "the document".to_string(),
    }
}

fn apply_op(
    work: &mut Document,
    op: &Op,
    current: Option<&Bson>,
    original: &Document,
) -> Result<()> {
    let path = op.path.as_str();
    match &op.kind {
        OpKind::Set(value) => set_path(work, path, value.clone()),
        OpKind::Unset => {
            remove_path(work, path);
            Ok(())
        }
        OpKind::Inc(by) => {
            let Some(current) = current else {
                return set_path(work, path, by.clone());
            };
            let (Some(have), Some(inc)) = (Number::of(current, "$inc")?, Number::of(by, "$inc")?)
            else {
                return Err(Error::invalid(format!(
                    "Cannot apply $inc to a value of non-numeric type. {} has the field '{path}' of non-numeric type {}",
                    describe(original),
                    type_name(current)
                ))
                .with_field(path));
            };
            set_path(work, path, add(have, inc).to_bson())
        }
        OpKind::Push(values) | OpKind::AddToSet(values) => {
            let dedupe = matches!(op.kind, OpKind::AddToSet(_));
            let mut array = match current {
                None => Vec::new(),
                Some(Bson::Array(a)) => a.clone(),
                Some(other) => {
                    let name = if dedupe { "$addToSet" } else { "$push" };
                    return Err(Error::invalid(format!(
                        "{name}: the field '{path}' must be an array but is of type {} in document {}",
                        type_name(other),
                        describe(original)
                    ))
                    .with_field(path));
                }
            };
            for value in values {
                if !dedupe || !array.iter().any(|e| bson_equal(e, value)) {
                    array.push(value.clone());
                }
            }
            set_path(work, path, Bson::Array(array))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use bson::doc;

    fn apply(update: Document, mut d: Document) -> (bool, Document) {
        let changed = Update::parse(&update).unwrap().apply(&mut d).unwrap();
        (changed, d)
    }

    fn apply_err(update: Document, d: Document) -> Error {
        let mut copy = d.clone();
        let e = Update::parse(&update)
            .unwrap()
            .apply(&mut copy)
            .unwrap_err();
        assert_eq!(copy, d, "a failed update must leave the document unchanged");
        e
    }

    #[test]
    fn set_and_unset() {
        let (c, d) = apply(doc! {"$set": {"a": 2, "n.x": 1}}, doc! {"_id": 1, "a": 1});
        assert!(c);
        assert_eq!(d, doc! {"_id": 1, "a": 2, "n": {"x": 1}});
        let (c, d) = apply(doc! {"$set": {"a": 1}}, doc! {"_id": 1, "a": 1});
        assert!(!c, "same value is no change");
        assert_eq!(d, doc! {"_id": 1, "a": 1});
        let (c, _) = apply(doc! {"$set": {"a": 1.0}}, doc! {"a": 1});
        assert!(c, "a different numeric type is a change");
        let (c, d) = apply(
            doc! {"$unset": {"a": "", "zz": 1}},
            doc! {"_id": 1, "a": 1, "b": 2},
        );
        assert!(c);
        assert_eq!(d, doc! {"_id": 1, "b": 2});
        let (c, _) = apply(doc! {"$unset": {"zz": 1}}, doc! {"a": 1});
        assert!(!c);
        let (_, d) = apply(doc! {"$unset": {"a.1": 1}}, doc! {"a": [1, 2, 3]});
        assert_eq!(d, doc! {"a": [1, null, 3]});
    }

    #[test]
    fn new_fields_are_added_in_path_order() {
        let (_, d) = apply(
            doc! {"$set": {"z": 1, "b": 1}, "$inc": {"a": 1}},
            doc! {"_id": 0},
        );
        assert_eq!(d, doc! {"_id": 0, "a": 1, "b": 1, "z": 1});
    }

    #[test]
    fn inc_keeps_mongodb_numeric_types() {
        let (_, d) = apply(doc! {"$inc": {"a": 1}}, doc! {"a": 1});
        assert_eq!(d.get("a"), Some(&Bson::Int32(2)));
        let (_, d) = apply(doc! {"$inc": {"a": 1}}, doc! {"a": i32::MAX});
        assert_eq!(d.get("a"), Some(&Bson::Int64(i64::from(i32::MAX) + 1)));
        let (_, d) = apply(doc! {"$inc": {"a": 1i64}}, doc! {"a": 1});
        assert_eq!(d.get("a"), Some(&Bson::Int64(2)));
        let (_, d) = apply(doc! {"$inc": {"a": 0.5}}, doc! {"a": 1});
        assert_eq!(d.get("a"), Some(&Bson::Double(1.5)));
        let (_, d) = apply(doc! {"$inc": {"a": 1}}, doc! {"a": 1.5});
        assert_eq!(d.get("a"), Some(&Bson::Double(2.5)));
        let (_, d) = apply(doc! {"$inc": {"a": 1}}, doc! {"a": i64::MAX});
        assert_eq!(d.get("a"), Some(&Bson::Double(i64::MAX as f64 + 1.0)));
        let (c, d) = apply(doc! {"$inc": {"m.n": 5i64}}, doc! {});
        assert!(c);
        assert_eq!(d, doc! {"m": {"n": 5i64}});
        let (c, _) = apply(doc! {"$inc": {"a": 0}}, doc! {"a": 3});
        assert!(!c);
    }

    #[test]
    fn inc_of_non_numeric_fails_naming_the_field() {
        for value in [Bson::String("x".into()), Bson::Null, Bson::Array(vec![])] {
            let e = apply_err(
                doc! {"$inc": {"a": 1}, "$set": {"b": 1}},
                doc! {"_id": 7, "a": value},
            );
            assert_eq!(e.kind(), ErrorKind::InvalidInput);
            assert!(
                e.message()
                    .starts_with("Cannot apply $inc to a value of non-numeric type")
            );
            assert!(e.message().contains("'a'"));
            assert_eq!(e.field(), Some("a"));
        }
        let e = Update::parse(&doc! {"$inc": {"a": "1"}}).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert_eq!(e.field(), Some("a"));
    }

    #[test]
    fn push_and_add_to_set() {
        let (_, d) = apply(doc! {"$push": {"a": 3}}, doc! {"a": [1, 2]});
        assert_eq!(d, doc! {"a": [1, 2, 3]});
        let (_, d) = apply(doc! {"$push": {"a": {"$each": [3, 4]}}}, doc! {});
        assert_eq!(d, doc! {"a": [3, 4]});
        let (c, d) = apply(doc! {"$push": {"a": {"$each": []}}}, doc! {});
        assert!(c);
        assert_eq!(d, doc! {"a": []});
        let (_, d) = apply(doc! {"$push": {"a": [1]}}, doc! {"a": []});
        assert_eq!(d, doc! {"a": [[1]]});
        let (_, d) = apply(doc! {"$push": {"a": {"x": 1}}}, doc! {"a": []});
        assert_eq!(d, doc! {"a": [{"x": 1}]});
        let (c, d) = apply(doc! {"$addToSet": {"a": 1.0}}, doc! {"a": [1, 2]});
        assert!(!c);
        assert_eq!(d, doc! {"a": [1, 2]});
        let (c, d) = apply(
            doc! {"$addToSet": {"a": {"$each": [2, 3, 3]}}},
            doc! {"a": [1, 2]},
        );
        assert!(c);
        assert_eq!(d, doc! {"a": [1, 2, 3]});
        let (_, d) = apply(doc! {"$addToSet": {"t": "x"}}, doc! {});
        assert_eq!(d, doc! {"t": ["x"]});
        for op in ["$push", "$addToSet"] {
            let e = apply_err(doc! {op: {"a": 1}}, doc! {"a": 5});
            assert_eq!(e.kind(), ErrorKind::InvalidInput);
            assert_eq!(e.field(), Some("a"));
        }
    }

    #[test]
    fn parse_rejects_what_mongodb_rejects() {
        let kind = |u: Document| Update::parse(&u).unwrap_err().kind();
        assert_eq!(kind(doc! {}), ErrorKind::InvalidInput);
        let e = Update::parse(&doc! {"a": 1}).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert!(
            e.message()
                .contains("update document requires atomic operators")
        );
        assert_eq!(
            kind(doc! {"$set": {"a": 1}, "b": 2}),
            ErrorKind::InvalidInput
        );
        assert_eq!(kind(doc! {"$set": 1}), ErrorKind::InvalidInput);
        assert_eq!(
            kind(doc! {"$set": {"a": 1}, "$inc": {"a": 1}}),
            ErrorKind::InvalidInput
        );
        assert_eq!(
            kind(doc! {"$set": {"a": 1, "a.b": 1}}),
            ErrorKind::InvalidInput
        );
        assert_eq!(
            kind(doc! {"$set": {"a.b": 1}, "$unset": {"a": 1}}),
            ErrorKind::InvalidInput
        );
        assert!(Update::parse(&doc! {"$set": {"a": 1, "ab": 1}}).is_ok());
        assert_eq!(kind(doc! {"$set": {"a..b": 1}}), ErrorKind::InvalidInput);
        assert_eq!(
            kind(doc! {"$push": {"a": {"$each": 1}}}),
            ErrorKind::InvalidInput
        );
        for op in [
            "$rename",
            "$pull",
            "$min",
            "$max",
            "$currentDate",
            "$mul",
            "$setOnInsert",
            "$bogus",
        ] {
            let e = Update::parse(&doc! {op: {"a": 1}}).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Unsupported);
            assert!(e.message().contains(&format!("`{op}`")), "{}", e.message());
        }
        let e = Update::parse(&doc! {"$set": {"a.$": 1}}).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unsupported);
        let e = Update::parse(&doc! {"$set": {"a.$[].b": 1}}).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unsupported);
        let e = Update::parse(&doc! {"$push": {"a": {"$each": [1], "$slice": 2}}}).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unsupported);
        assert!(e.message().contains("$slice"));
    }

    #[test]
    fn id_cannot_change() {
        for u in [
            doc! {"$set": {"_id": 2}},
            doc! {"$unset": {"_id": 1}},
            doc! {"$inc": {"_id": 1}},
            doc! {"$set": {"_id.x": 1}},
        ] {
            let e = apply_err(u, doc! {"_id": {"y": 1}, "a": 1});
            assert_eq!(e.kind(), ErrorKind::InvalidInput);
            assert_eq!(e.field(), Some("_id"));
        }
        let (c, _) = apply(doc! {"$set": {"_id": 1, "a": 2}}, doc! {"_id": 1, "a": 1});
        assert!(c);
        let (_, d) = apply(doc! {"$set": {"_id": 5}}, doc! {"a": 1});
        assert_eq!(d.get("_id"), Some(&Bson::Int32(5)));
    }

    #[test]
    fn blocked_paths_fail_and_leave_document() {
        let e = apply_err(doc! {"$set": {"a.b": 1, "c": 1}}, doc! {"a": 5});
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert_eq!(e.field(), Some("a.b"));
    }
}
