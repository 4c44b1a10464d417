//! Dot paths (`a.b.0.c`) into documents.
//!
//! # Contracts
//!
//! - [`get_path`] and [`set_path`]/[`remove_path`] follow a path literally:
//!   a numeric component indexes an array, nothing else expands arrays.
//! - [`set_path`] creates missing intermediate documents, pads an array with
//!   nulls up to a numeric component (as MongoDB's `$set` does, at most
//!   [`MAX_ARRAY_PADDING`] elements), and fails with `InvalidInput` naming
//!   the path when a non-document value stands in the way; on failure `doc`
//!   is left unchanged.
//! - [`remove_path`] has `$unset`'s semantics: removing an array element
//!   sets it to null so that the other elements keep their positions.
//! - [`values_along`] yields what a query sees along a path, with MongoDB's
//!   array expansion of intermediate arrays; `None` marks a branch where the
//!   path is missing.

use bson::{Bson, Document};

use crate::error::{Error, Result};

/// The most nulls [`set_path`] appends to reach an array index, MongoDB's
/// own limit (`can't backfill more than 1500000 elements`).
pub const MAX_ARRAY_PADDING: usize = 1_500_000;

/// The array index a path component names, when it is a plain decimal
/// number (`"01"` or `"+1"` are field names, as in MongoDB).
pub(crate) fn array_index(component: &str) -> Option<usize> {
    if component.is_empty()
        || !component.bytes().all(|b| b.is_ascii_digit())
        || (component.len() > 1 && component.starts_with('0'))
    {
        return None;
    }
    component.parse().ok()
}

/// The value at `path` without array expansion (`a.0` indexes an array).
pub fn get_path<'a>(doc: &'a Document, path: &str) -> Option<&'a Bson> {
    let mut parts = path.split('.');
    let first = parts.next()?;
    let mut current = doc.get(first)?;
    for part in parts {
        current = match current {
            Bson::Document(d) => d.get(part)?,
            Bson::Array(a) => a.get(array_index(part)?)?,
            _ => return None,
        };
    }
    Some(current)
}

/// Checks that `path` has no empty component.
pub(crate) fn check_path(path: &str) -> Result<()> {
    if path.is_empty() || path.split('.').any(str::is_empty) {
        return Err(
            Error::invalid(format!("invalid field path `{path}`: empty component"))
                .with_field(path),
        );
    }
    Ok(())
}

/// Sets the value at `path`, creating intermediate documents.
pub fn set_path(doc: &mut Document, path: &str, value: Bson) -> Result<()> {
    check_path(path)?;
    let parts: Vec<&str> = path.split('.').collect();
    // Check first so a failure leaves `doc` untouched.
    check_settable_doc(doc, &parts, path)?;
    set_in_doc(doc, &parts, value);
    Ok(())
}

fn blocked(path: &str, part: &str, value: &Bson) -> Error {
    Error::invalid(format!(
        "cannot create field `{part}` of path `{path}` in a value of type {}",
        type_name(value)
    ))
    .with_field(path)
}

fn check_settable_doc(doc: &Document, parts: &[&str], path: &str) -> Result<()> {
    match parts {
        [] | [_] => Ok(()),
        [first, rest @ ..] => match doc.get(*first) {
            None => Ok(()),
            Some(v) => check_settable(v, rest, path),
        },
    }
}

fn check_settable(value: &Bson, parts: &[&str], path: &str) -> Result<()> {
    let Some(part) = parts.first() else {
        return Ok(());
    };
    match value {
        Bson::Document(d) => check_settable_doc(d, parts, path),
        Bson::Array(a) => match array_index(part) {
            Some(i) if i < a.len() => match a.get(i) {
                Some(v) if parts.len() > 1 => check_settable(v, &parts[1..], path),
                _ => Ok(()),
            },
            Some(i) if i - a.len() <= MAX_ARRAY_PADDING => Ok(()),
            Some(_) => Err(Error::invalid(format!(
                "cannot pad array at `{path}` by more than {MAX_ARRAY_PADDING} elements"
            ))
            .with_field(path)),
            None => Err(blocked(path, part, value)),
        },
        other => Err(blocked(path, part, other)),
    }
}

/// Sets without checks; `check_settable_doc` has vouched for the path.
fn set_in_doc(doc: &mut Document, parts: &[&str], value: Bson) {
    match parts {
        [] => {}
        [last] => {
            doc.insert(*last, value);
        }
        [first, rest @ ..] => {
            if !doc.contains_key(*first) {
                doc.insert(*first, Document::new());
            }
            if let Some(child) = doc.get_mut(*first) {
                set_in_value(child, rest, value);
            }
        }
    }
}

fn set_in_value(target: &mut Bson, parts: &[&str], value: Bson) {
    match target {
        Bson::Document(d) => set_in_doc(d, parts, value),
        Bson::Array(a) => {
            let Some((first, rest)) = parts.split_first() else {
                return;
            };
            let Some(i) = array_index(first) else {
                return;
            };
            if a.len() <= i {
                a.resize(i + 1, Bson::Null);
            }
            if rest.is_empty() {
                a[i] = value;
            } else {
                // MongoDB replaces a null filler (or creates a document)
                // when the path continues below a padded slot.
                if matches!(a[i], Bson::Null) {
                    a[i] = Bson::Document(Document::new());
                }
                set_in_value(&mut a[i], rest, value);
            }
        }
        _ => {}
    }
}

/// Removes the value at `path`; returns what was there.
///
/// As with `$unset`, an array element is replaced by null rather than
/// removed, and a path through a non-container is a no-op.
pub fn remove_path(doc: &mut Document, path: &str) -> Option<Bson> {
    let parts: Vec<&str> = path.split('.').collect();
    remove_in_doc(doc, &parts)
}

fn remove_in_doc(doc: &mut Document, parts: &[&str]) -> Option<Bson> {
    match parts {
        [] => None,
        [last] => doc.remove(*last),
        [first, rest @ ..] => remove_in_value(doc.get_mut(*first)?, rest),
    }
}

fn remove_in_value(target: &mut Bson, parts: &[&str]) -> Option<Bson> {
    match target {
        Bson::Document(d) => remove_in_doc(d, parts),
        Bson::Array(a) => {
            let (first, rest) = parts.split_first()?;
            let slot = a.get_mut(array_index(first)?)?;
            if rest.is_empty() {
                Some(std::mem::replace(slot, Bson::Null))
            } else {
                remove_in_value(slot, rest)
            }
        }
        _ => None,
    }
}

/// Every value a query sees at `path`, with MongoDB's array expansion:
/// an array met before the end of the path is traversed element by element
/// (`a.b` over `a: [{b: 1}, {b: 2}]` yields `1` and `2`), and a numeric
/// component also indexes it (`a.0.b`). The value at the end of the path is
/// yielded as is, arrays included; callers that apply the array rule expand
/// it themselves. `None` marks a branch where the path is missing.
pub fn values_along<'a>(doc: &'a Document, path: &str) -> Vec<Option<&'a Bson>> {
    let parts: Vec<&str> = path.split('.').collect();
    let mut out = Vec::new();
    match parts.split_first() {
        Some((first, rest)) => walk(doc.get(*first), rest, &mut out),
        None => out.push(None),
    }
    out
}

fn walk<'a>(value: Option<&'a Bson>, parts: &[&str], out: &mut Vec<Option<&'a Bson>>) {
    let Some((part, rest)) = parts.split_first() else {
        out.push(value);
        return;
    };
    match value {
        Some(Bson::Document(d)) => walk(d.get(*part), rest, out),
        Some(Bson::Array(a)) => {
            let before = out.len();
            let indexed = array_index(part).and_then(|i| a.get(i));
            if let Some(element) = indexed {
                walk(Some(element), rest, out);
            }
            for element in a {
                // Only documents are searched; scalars in the array have no
                // fields. Nested arrays are not traversed implicitly. When
                // the component indexed an element, documents without a field
                // of that name are not a missing branch.
                if let Bson::Document(d) = element {
                    match d.get(*part) {
                        None if indexed.is_some() => {}
                        found => walk(found, rest, out),
                    }
                }
            }
            if out.len() == before {
                out.push(None);
            }
        }
        _ => out.push(None),
    }
}

/// BSON type numbers and the aliases `$type` accepts for them, as MongoDB
/// lists them (`-1` is MinKey, `127` MaxKey).
pub(crate) const BSON_TYPES: [(i32, &str); 21] = [
    (1, "double"),
    (2, "string"),
    (3, "object"),
    (4, "array"),
    (5, "binData"),
    (6, "undefined"),
    (7, "objectId"),
    (8, "bool"),
    (9, "date"),
    (10, "null"),
    (11, "regex"),
    (12, "dbPointer"),
    (13, "javascript"),
    (14, "symbol"),
    (15, "javascriptWithScope"),
    (16, "int"),
    (17, "timestamp"),
    (18, "long"),
    (19, "decimal"),
    (-1, "minKey"),
    (127, "maxKey"),
];

/// The BSON type number of a value (what `$type: 2` compares with).
pub(crate) fn type_code(value: &Bson) -> i32 {
    match value {
        Bson::Double(_) => 1,
        Bson::String(_) => 2,
        Bson::Document(_) => 3,
        Bson::Array(_) => 4,
        Bson::Binary(_) => 5,
        Bson::Undefined => 6,
        Bson::ObjectId(_) => 7,
        Bson::Boolean(_) => 8,
        Bson::DateTime(_) => 9,
        Bson::Null => 10,
        Bson::RegularExpression(_) => 11,
        Bson::DbPointer(_) => 12,
        Bson::JavaScriptCode(_) => 13,
        Bson::Symbol(_) => 14,
        Bson::JavaScriptCodeWithScope(_) => 15,
        Bson::Int32(_) => 16,
        Bson::Timestamp(_) => 17,
        Bson::Int64(_) => 18,
        Bson::Decimal128(_) => 19,
        Bson::MinKey => -1,
        Bson::MaxKey => 127,
    }
}

/// The name MongoDB's `$type` uses for a value's type, for messages.
pub(crate) fn type_name(value: &Bson) -> &'static str {
    match value {
        Bson::Double(_) => "double",
        Bson::String(_) => "string",
        Bson::Array(_) => "array",
        Bson::Document(_) => "object",
        Bson::Boolean(_) => "bool",
        Bson::Null => "null",
        Bson::RegularExpression(_) => "regex",
        Bson::JavaScriptCode(_) => "javascript",
        Bson::JavaScriptCodeWithScope(_) => "javascriptWithScope",
        Bson::Int32(_) => "int",
        Bson::Int64(_) => "long",
        Bson::Timestamp(_) => "timestamp",
        Bson::Binary(_) => "binData",
        Bson::ObjectId(_) => "objectId",
        Bson::DateTime(_) => "date",
        Bson::Symbol(_) => "symbol",
        Bson::Decimal128(_) => "decimal",
        Bson::Undefined => "undefined",
        Bson::MaxKey => "maxKey",
        Bson::MinKey => "minKey",
        Bson::DbPointer(_) => "dbPointer",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use bson::{bson, doc};

    #[test]
    fn get_path_follows_documents_and_indexes() {
        let d = doc! {"a": {"b": [10, {"c": "x"}]}};
        assert_eq!(get_path(&d, "a.b.0"), Some(&Bson::Int32(10)));
        assert_eq!(get_path(&d, "a.b.1.c"), Some(&Bson::String("x".into())));
        assert_eq!(get_path(&d, "a.b.2"), None);
        assert_eq!(get_path(&d, "a.b.c"), None);
        assert_eq!(get_path(&d, "a.x"), None);
        assert_eq!(get_path(&d, "a.b.0.z"), None);
    }

    #[test]
    fn set_path_creates_documents_and_pads_arrays() {
        let mut d = doc! {"a": {"x": 1}, "arr": [1]};
        set_path(&mut d, "a.y.z", Bson::Int32(2)).unwrap();
        set_path(&mut d, "arr.3", Bson::Int32(4)).unwrap();
        set_path(&mut d, "arr.0", Bson::Int32(0)).unwrap();
        set_path(&mut d, "n", Bson::Null).unwrap();
        assert_eq!(
            d,
            doc! {"a": {"x": 1, "y": {"z": 2}}, "arr": [0, null, null, 4], "n": null}
        );
    }

    #[test]
    fn set_path_into_array_element_document() {
        let mut d = doc! {"a": [{"b": 1}]};
        set_path(&mut d, "a.0.c", Bson::Int32(2)).unwrap();
        set_path(&mut d, "a.2.c", Bson::Int32(3)).unwrap();
        assert_eq!(d, doc! {"a": [{"b": 1, "c": 2}, null, {"c": 3}]});
    }

    #[test]
    fn set_path_blocked_by_scalar_names_path_and_changes_nothing() {
        let mut d = doc! {"a": 5};
        let e = set_path(&mut d, "a.b", Bson::Int32(1)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert_eq!(e.field(), Some("a.b"));
        assert!(e.message().contains("a.b"));
        assert_eq!(d, doc! {"a": 5});

        let mut d = doc! {"a": [1, 2]};
        let e = set_path(&mut d, "a.b", Bson::Int32(1)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert_eq!(d, doc! {"a": [1, 2]});

        let mut d = doc! {"a": [1]};
        let e = set_path(&mut d, "a.0.b", Bson::Int32(1)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert!(set_path(&mut d, "a..b", Bson::Null).is_err());
        assert!(set_path(&mut d, "a.9999999999", Bson::Null).is_err());
    }

    #[test]
    fn remove_path_removes_fields_and_nulls_array_elements() {
        let mut d = doc! {"a": {"b": 1, "c": 2}, "arr": [1, 2, 3]};
        assert_eq!(remove_path(&mut d, "a.b"), Some(Bson::Int32(1)));
        assert_eq!(remove_path(&mut d, "arr.1"), Some(Bson::Int32(2)));
        assert_eq!(remove_path(&mut d, "a.zz"), None);
        assert_eq!(remove_path(&mut d, "a.c.d"), None);
        assert_eq!(d, doc! {"a": {"c": 2}, "arr": [1, null, 3]});
    }

    #[test]
    fn values_along_expands_intermediate_arrays() {
        let d = doc! {"a": [{"b": 1}, {"b": [2, 3]}, {"c": 0}, 7]};
        let got: Vec<Option<Bson>> = values_along(&d, "a.b")
            .into_iter()
            .map(|v| v.cloned())
            .collect();
        assert_eq!(got, vec![Some(bson!(1)), Some(bson!([2, 3])), None]);

        let d = doc! {"a": [{"b": 1}, {"b": 2}]};
        let got: Vec<Option<Bson>> = values_along(&d, "a.1.b")
            .into_iter()
            .map(|v| v.cloned())
            .collect();
        assert_eq!(got, vec![Some(bson!(2))]);

        let d = doc! {"a": {"b": 5}};
        assert_eq!(values_along(&d, "a.b"), vec![Some(&Bson::Int32(5))]);
        assert_eq!(values_along(&d, "a.b.c"), vec![None]);
        assert_eq!(values_along(&d, "x"), vec![None]);
        let d = doc! {"a": []};
        assert_eq!(values_along(&d, "a.b"), vec![None]);
        assert_eq!(values_along(&d, "a"), vec![Some(&bson!([]))]);
    }

    #[test]
    fn type_codes_and_names_agree_with_the_alias_table() {
        let samples = [
            bson!(1.5),
            bson!("s"),
            bson!({"a": 1}),
            bson!([1]),
            Bson::Binary(bson::Binary {
                subtype: bson::spec::BinarySubtype::Generic,
                bytes: vec![1],
            }),
            Bson::Undefined,
            Bson::ObjectId(bson::oid::ObjectId::from_bytes([1; 12])),
            bson!(true),
            Bson::DateTime(bson::DateTime::from_millis(0)),
            Bson::Null,
            Bson::RegularExpression(bson::Regex {
                pattern: "x".try_into().unwrap(),
                options: "".try_into().unwrap(),
            }),
            Bson::JavaScriptCode("f()".into()),
            Bson::Symbol("sym".into()),
            Bson::Int32(1),
            Bson::Timestamp(bson::Timestamp {
                time: 1,
                increment: 1,
            }),
            Bson::Int64(1),
            Bson::Decimal128(bson::Decimal128::from_bytes([0; 16])),
            Bson::MinKey,
            Bson::MaxKey,
        ];
        for value in &samples {
            let code = type_code(value);
            let named = BSON_TYPES.iter().find(|(c, _)| *c == code).map(|(_, n)| *n);
            assert_eq!(named, Some(type_name(value)), "{value:?}");
        }
        // Every alias but dbPointer and javascriptWithScope (no sample) is
        // reached, and codes are unique.
        let mut codes: Vec<i32> = BSON_TYPES.iter().map(|(c, _)| *c).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), BSON_TYPES.len());
    }

    #[test]
    fn array_index_accepts_plain_decimals_only() {
        assert_eq!(array_index("0"), Some(0));
        assert_eq!(array_index("12"), Some(12));
        assert_eq!(array_index("01"), None);
        assert_eq!(array_index("-1"), None);
        assert_eq!(array_index("a"), None);
    }
}
