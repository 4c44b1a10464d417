//! Secondary indexes and the `_id` key order.
//!
//! # Contracts
//!
//! - Keys are ordered by the query layer's [`compare_bson`], so `1`, `1i64`
//!   and `1.0` are one key, as in MongoDB's unique indexes.
//! - A document's keys: for each indexed path the value there, `null` when
//!   missing; an array along the path indexes each element (multikey). At
//!   most one field of a compound key may hold an array ("cannot index
//!   parallel arrays"), as in MongoDB.
//! - Entries are kept in ascending key order whatever the declared
//!   direction: the direction only matters to a sort answered from the index,
//!   which the planner does not do.
//! - Every lookup returns a superset of the documents the filter can match;
//!   the caller still checks `Filter::matches` on each.

use std::cmp::Ordering;
use std::collections::BTreeSet;
use std::ops::Bound;

use bson::{Bson, Document};

use crate::engines::document::IndexSpec;
use crate::engines::document::query::compare::compare_bson;
use crate::engines::document::query::filter::FieldBounds;
use crate::error::{Error, Result};

/// A BSON value ordered as MongoDB orders it, for use as a map key.
#[derive(Debug, Clone)]
pub(crate) struct OrdBson(pub(crate) Bson);

impl PartialEq for OrdBson {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for OrdBson {}

impl PartialOrd for OrdBson {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for OrdBson {
    fn cmp(&self, other: &Self) -> Ordering {
        compare_bson(&self.0, &other.0)
    }
}

/// One entry of an index: a key (one value per indexed field) and the slot
/// of the document holding it.
#[derive(Debug, Clone)]
struct Entry {
    key: Vec<Bson>,
    slot: u64,
}

/// Compares two keys field by field in MongoDB's order.
pub(crate) fn compare_keys(a: &[Bson], b: &[Bson]) -> Ordering {
    for (x, y) in a.iter().zip(b) {
        match compare_bson(x, y) {
            Ordering::Equal => {}
            other => return other,
        }
    }
    a.len().cmp(&b.len())
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Entry {}

impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Entry {
    fn cmp(&self, other: &Self) -> Ordering {
        compare_keys(&self.key, &other.key).then(self.slot.cmp(&other.slot))
    }
}

/// The parsed key pattern of an index: paths with their directions.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct KeyPattern {
    fields: Vec<(String, bool)>,
}

impl KeyPattern {
    /// Parses `{field: 1 | -1, ...}`. Other index types (`"text"`,
    /// `"hashed"`, `"2dsphere"`) are outside the subset.
    pub(crate) fn parse(keys: &Document) -> Result<KeyPattern> {
        if keys.is_empty() {
            return Err(Error::invalid("index keys must name at least one field"));
        }
        let mut fields = Vec::with_capacity(keys.len());
        for (path, dir) in keys {
            if path.is_empty() || path.starts_with('$') {
                return Err(Error::invalid(format!("invalid index key path '{path}'"))
                    .with_field(path.clone()));
            }
            let ascending = match dir {
                Bson::Int32(1) | Bson::Int64(1) => true,
                Bson::Int32(-1) | Bson::Int64(-1) => false,
                Bson::Double(d) if *d == 1.0 => true,
                Bson::Double(d) if *d == -1.0 => false,
                Bson::String(kind) => {
                    return Err(Error::unsupported(format!(
                        "index type \"{kind}\" is not supported by the embedded document store"
                    ))
                    .with_field(path.clone()));
                }
                other => {
                    return Err(Error::invalid(format!(
                        "index key direction must be 1 or -1, got {other}"
                    ))
                    .with_field(path.clone()));
                }
            };
            fields.push((path.clone(), ascending));
        }
        Ok(KeyPattern { fields })
    }

    /// The indexed paths in order.
    pub(crate) fn paths(&self) -> impl Iterator<Item = &str> {
        self.fields.iter().map(|(p, _)| p.as_str())
    }

    /// The first indexed path, the one the planner can bound.
    pub(crate) fn first_path(&self) -> &str {
        self.fields.first().map(|(p, _)| p.as_str()).unwrap_or("")
    }

    /// Number of fields in a key.
    pub(crate) fn len(&self) -> usize {
        self.fields.len()
    }

    /// The keys `doc` has in an index of this pattern (one or more; several
    /// when an indexed field holds an array).
    pub(crate) fn keys(&self, doc: &Document) -> Result<Vec<Vec<Bson>>> {
        self.keys_of(doc).map(|k| k.keys)
    }

    /// The keys `doc` has, and whether an array was met on an indexed path.
    pub(crate) fn keys_of(&self, doc: &Document) -> Result<DocKeys> {
        let mut per_field = Vec::with_capacity(self.fields.len());
        let mut array_fields = Vec::new();
        for (path, _) in &self.fields {
            let mut values = Vec::new();
            let through_array = collect_path_values(doc, path, &mut values);
            if through_array {
                array_fields.push(path.as_str());
            }
            per_field.push(values);
        }
        if array_fields.len() > 1 {
            return Err(Error::invalid(format!(
                "cannot index parallel arrays [{}]",
                array_fields.join("] [")
            ))
            .with_field(array_fields.join(", ")));
        }
        // At most one field has several values, so the product is that
        // field's values with the others fixed.
        let mut keys: Vec<Vec<Bson>> = vec![Vec::with_capacity(self.fields.len())];
        for values in per_field {
            let mut next = Vec::with_capacity(keys.len() * values.len());
            for key in &keys {
                for value in &values {
                    // Exactly as long as the key: a key outlives the call in
                    // the index, and a pushed-to clone would reserve room
                    // for four values (about 300 bytes more per entry).
                    let mut k = Vec::with_capacity(self.fields.len());
                    k.extend(key.iter().cloned());
                    k.push(value.clone());
                    next.push(k);
                }
            }
            keys = next;
        }
        keys.sort_by(|a, b| compare_keys(a, b));
        keys.dedup_by(|a, b| compare_keys(a, b) == Ordering::Equal);
        Ok(DocKeys {
            keys,
            multikey: !array_fields.is_empty(),
        })
    }
}

/// A document's keys in one index.
#[derive(Debug, Clone)]
pub(crate) struct DocKeys {
    /// The keys, sorted and distinct.
    pub(crate) keys: Vec<Vec<Bson>>,
    /// An indexed path went through an array.
    pub(crate) multikey: bool,
}

/// Pushes the values at `path` in `doc` onto `out`, expanding arrays met on
/// the way (MongoDB's multikey rule); a missing value is `null`. Returns
/// whether an array was expanded.
fn collect_path_values(doc: &Document, path: &str, out: &mut Vec<Bson>) -> bool {
    let segments: Vec<&str> = path.split('.').collect();
    let mut through_array = false;
    collect_from_doc(doc, &segments, out, &mut through_array);
    if out.is_empty() {
        out.push(Bson::Null);
    }
    through_array
}

fn collect_from_doc(doc: &Document, segments: &[&str], out: &mut Vec<Bson>, arr: &mut bool) {
    let Some((head, rest)) = segments.split_first() else {
        return;
    };
    match doc.get(*head) {
        None => out.push(Bson::Null),
        Some(value) => collect_from_value(value, rest, out, arr),
    }
}

fn collect_from_value(value: &Bson, rest: &[&str], out: &mut Vec<Bson>, arr: &mut bool) {
    match (value, rest.split_first()) {
        (Bson::Array(items), None) => {
            *arr = true;
            if items.is_empty() {
                // MongoDB keys an empty array apart from null and from any
                // element; the array itself stands for that key here.
                out.push(Bson::Array(Vec::new()));
            }
            for item in items {
                out.push(item.clone());
            }
        }
        (other, None) => out.push(other.clone()),
        (Bson::Document(sub), Some(_)) => collect_from_doc(sub, rest, out, arr),
        (Bson::Array(items), Some((head, tail))) => {
            let position = head.parse::<usize>().ok();
            if let Some(position) = position {
                // `a.0` names an element by position.
                match items.get(position) {
                    Some(item) => collect_from_value(item, tail, out, arr),
                    None => out.push(Bson::Null),
                }
                // It may also name a field "0" of documents in the array:
                // their keys are added too (more candidates, never fewer).
                if !items.iter().any(|i| matches!(i, Bson::Document(_))) {
                    return;
                }
            }
            *arr = true;
            if items.is_empty() {
                out.push(Bson::Null);
            }
            for item in items {
                match item {
                    Bson::Document(sub) => collect_from_doc(sub, rest, out, arr),
                    // A scalar element has no such field: it counts as
                    // missing, so `{path: null}` can find the document.
                    _ if position.is_none() => out.push(Bson::Null),
                    _ => {}
                }
            }
        }
        (_, Some(_)) => out.push(Bson::Null),
    }
}

/// A secondary index of a collection.
#[derive(Debug, Clone)]
pub(crate) struct Index {
    spec: IndexSpec,
    pattern: KeyPattern,
    entries: BTreeSet<Entry>,
    /// Some document met an array on an indexed path (MongoDB's multikey
    /// flag; like MongoDB's, it is not cleared when that document goes).
    multikey: bool,
}

impl Index {
    /// An empty index for `spec`, whose name must already be set.
    pub(crate) fn new(spec: IndexSpec, pattern: KeyPattern) -> Index {
        Index {
            spec,
            pattern,
            entries: BTreeSet::new(),
            multikey: false,
        }
    }

    /// The index definition, with its name set.
    pub(crate) fn spec(&self) -> &IndexSpec {
        &self.spec
    }

    /// The index name.
    pub(crate) fn name(&self) -> &str {
        self.spec.name.as_deref().unwrap_or("")
    }

    /// The parsed key pattern.
    pub(crate) fn pattern(&self) -> &KeyPattern {
        &self.pattern
    }

    /// Whether some document holds an array on an indexed path.
    pub(crate) fn is_multikey(&self) -> bool {
        self.multikey
    }

    /// Adds the keys of the document in `slot`.
    pub(crate) fn insert(&mut self, slot: u64, keys: DocKeys) {
        self.multikey |= keys.multikey;
        for key in keys.keys {
            self.entries.insert(Entry { key, slot });
        }
    }

    /// Removes the keys of the document in `slot`.
    pub(crate) fn remove(&mut self, slot: u64, keys: DocKeys) {
        for key in keys.keys {
            self.entries.remove(&Entry { key, slot });
        }
    }

    /// A slot other than those `ignore` accepts that holds `key`, if any.
    pub(crate) fn holder(&self, key: &[Bson], ignore: impl Fn(u64) -> bool) -> Option<u64> {
        let lower = Entry {
            key: key.to_vec(),
            slot: 0,
        };
        let upper = Entry {
            key: key.to_vec(),
            slot: u64::MAX,
        };
        self.entries
            .range(lower..=upper)
            .map(|e| e.slot)
            .find(|slot| !ignore(*slot))
    }

    /// Slots whose first key field may satisfy `bounds`, sorted and without
    /// duplicates. `None` when the bounds cannot be answered from this index
    /// (an array bound: the index holds elements, not whole arrays).
    pub(crate) fn lookup(&self, bounds: &FieldBounds) -> Option<Vec<u64>> {
        let mut slots = Vec::new();
        match bounds {
            FieldBounds::In(values) => {
                if values.iter().any(|v| matches!(v, Bson::Array(_))) {
                    return None;
                }
                for value in values {
                    self.range_into(Some((value, true)), Some((value, true)), &mut slots);
                }
            }
            FieldBounds::Range { lower, upper } => {
                let ends = [lower, upper];
                if ends
                    .iter()
                    .any(|end| matches!(end, Some((Bson::Array(_), _))))
                {
                    return None;
                }
                let lower = lower.as_ref().map(|(v, inc)| (v, *inc));
                let upper = upper.as_ref().map(|(v, inc)| (v, *inc));
                self.range_into(lower, upper, &mut slots);
            }
        }
        slots.sort_unstable();
        slots.dedup();
        Some(slots)
    }

    /// Pushes the slots whose first key field lies between `lower` and
    /// `upper` (each `(value, inclusive)`; `None` is unbounded).
    fn range_into(
        &self,
        lower: Option<(&Bson, bool)>,
        upper: Option<(&Bson, bool)>,
        out: &mut Vec<u64>,
    ) {
        let width = self.pattern.len().saturating_sub(1);
        // Pad the bounding value with MinKey/MaxKey so a bound on the first
        // field covers every key that starts with that value.
        let padded = |value: &Bson, fill: Bson, slot: u64| {
            let mut key = Vec::with_capacity(width + 1);
            key.push(value.clone());
            key.extend(std::iter::repeat_n(fill, width));
            Entry { key, slot }
        };
        let start = match lower {
            None => Bound::Unbounded,
            Some((v, true)) => Bound::Included(padded(v, Bson::MinKey, 0)),
            Some((v, false)) => Bound::Excluded(padded(v, Bson::MaxKey, u64::MAX)),
        };
        let end = match upper {
            None => Bound::Unbounded,
            Some((v, true)) => Bound::Included(padded(v, Bson::MaxKey, u64::MAX)),
            Some((v, false)) => Bound::Excluded(padded(v, Bson::MinKey, 0)),
        };
        // BTreeSet::range panics on an inverted range ({$gt: 5, $lt: 3}):
        // such bounds select nothing.
        if let (Bound::Included(s) | Bound::Excluded(s), Bound::Included(e) | Bound::Excluded(e)) =
            (&start, &end)
        {
            match s.cmp(e) {
                Ordering::Greater => return,
                Ordering::Equal
                    if !(matches!(start, Bound::Included(_))
                        && matches!(end, Bound::Included(_))) =>
                {
                    return;
                }
                _ => {}
            }
        }
        out.extend(self.entries.range((start, end)).map(|e| e.slot));
    }

    /// The first key two different documents hold, with their slots: what
    /// makes a unique index impossible over the documents already stored.
    pub(crate) fn first_duplicate(&self) -> Option<(Vec<Bson>, u64, u64)> {
        let mut previous: Option<&Entry> = None;
        for entry in &self.entries {
            if let Some(prev) = previous
                && prev.slot != entry.slot
                && compare_keys(&prev.key, &entry.key) == Ordering::Equal
            {
                return Some((entry.key.clone(), prev.slot, entry.slot));
            }
            previous = Some(entry);
        }
        None
    }

    /// MongoDB's rendering of a duplicate key: `{ email: "a@x" }`.
    pub(crate) fn describe_key(&self, key: &[Bson]) -> String {
        let parts: Vec<String> = self
            .pattern
            .paths()
            .zip(key)
            .map(|(path, value)| format!("{path}: {value}"))
            .collect();
        format!("{{ {} }}", parts.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use bson::doc;

    use super::*;

    fn pattern(keys: Document) -> KeyPattern {
        KeyPattern::parse(&keys).unwrap()
    }

    #[test]
    fn missing_field_keys_as_null() {
        let keys = pattern(doc! {"a": 1}).keys(&doc! {"b": 1}).unwrap();
        assert_eq!(keys, vec![vec![Bson::Null]]);
    }

    #[test]
    fn array_field_keys_each_element() {
        let keys = pattern(doc! {"tags": 1})
            .keys(&doc! {"tags": ["x", "y"]})
            .unwrap();
        assert_eq!(keys.len(), 2);
        assert!(keys.contains(&vec![Bson::String("x".into())]));
        assert!(keys.contains(&vec![Bson::String("y".into())]));
    }

    #[test]
    fn dot_path_through_array_of_documents() {
        let keys = pattern(doc! {"a.b": 1})
            .keys(&doc! {"a": [{"b": 1}, {"c": 2}]})
            .unwrap();
        assert!(keys.contains(&vec![Bson::Int32(1)]));
        assert!(keys.contains(&vec![Bson::Null]));
    }

    #[test]
    fn compound_key_with_one_array_multiplies() {
        let keys = pattern(doc! {"a": 1, "b": -1})
            .keys(&doc! {"a": 1, "b": [2, 3]})
            .unwrap();
        assert_eq!(keys.len(), 2);
        assert!(keys.contains(&vec![Bson::Int32(1), Bson::Int32(2)]));
    }

    #[test]
    fn parallel_arrays_are_rejected() {
        let err = pattern(doc! {"a": 1, "b": 1})
            .keys(&doc! {"a": [1], "b": [2]})
            .unwrap_err();
        assert!(err.message().contains("parallel arrays"), "{err}");
    }

    #[test]
    fn non_numeric_directions_are_refused() {
        let err = KeyPattern::parse(&doc! {"a": "text"}).unwrap_err();
        assert_eq!(err.kind(), crate::error::ErrorKind::Unsupported);
        let err = KeyPattern::parse(&doc! {"a": 2}).unwrap_err();
        assert_eq!(err.kind(), crate::error::ErrorKind::InvalidInput);
        let err = KeyPattern::parse(&doc! {}).unwrap_err();
        assert_eq!(err.kind(), crate::error::ErrorKind::InvalidInput);
    }
}
