//! Choosing the documents a filter has to look at.
//!
//! # Contracts
//!
//! - The candidates are a superset of the matching documents: an index only
//!   narrows the search, and every candidate is checked with
//!   [`Filter::matches`].
//! - Results come in natural (insertion) order whichever path found them,
//!   so the answer does not depend on which indexes exist.
//! - `_id` equality uses the `_id` map; otherwise an index whose first field
//!   the filter bounds by equality is preferred over one bounded by a range
//!   (the one with fewest candidates among each kind); otherwise a scan.
//! - A multikey index (some document holds an array on its path) is bounded
//!   by one condition only, never by the intersection of several: under
//!   MongoDB's array rule `{s: {$gt: 6, $lt: 3}}` matches `s: [1, 10]`
//!   through two different elements, so intersected bounds would miss it.

use bson::{Bson, Document};

use crate::engines::document::embedded::collection::Collection;
use crate::engines::document::query::filter::{FieldBounds, Filter};
use crate::error::Result;

/// A parsed filter with the document it came from, which the planner reads
/// to bound multikey indexes by single conditions.
#[derive(Debug, Clone)]
pub(crate) struct Query {
    /// The parsed filter.
    pub(crate) filter: Filter,
    raw: Document,
}

impl Query {
    /// Parses a filter document.
    pub(crate) fn parse(raw: Document) -> Result<Query> {
        let filter = Filter::parse(&raw)?;
        Ok(Query { filter, raw })
    }

    /// Bounds on `path` implied by one condition of the filter's top-level
    /// conjunction (equality preferred), for a multikey index.
    fn single_condition_bounds(&self, path: &str) -> Option<FieldBounds> {
        let mut ranges = None;
        let mut conditions = Vec::new();
        single_conditions(&self.raw, path, &mut conditions);
        for condition in conditions {
            // The whole filter parsed, so its parts do; one that did not
            // would only cost the index, never correctness.
            let Some(bounds) = Filter::parse(&condition).ok().and_then(|f| f.bounds(path)) else {
                continue;
            };
            match bounds {
                FieldBounds::In(_) => return Some(bounds),
                FieldBounds::Range { .. } => {
                    ranges.get_or_insert(bounds);
                }
            }
        }
        ranges
    }
}

/// Collects the conditions on `path` of the conjunction `filter` (top level
/// and inside `$and`), one operator per filter document.
fn single_conditions(filter: &Document, path: &str, out: &mut Vec<Document>) {
    for (key, value) in filter {
        if key == "$and" {
            if let Bson::Array(items) = value {
                for item in items {
                    if let Bson::Document(sub) = item {
                        single_conditions(sub, path, out);
                    }
                }
            }
            continue;
        }
        if key != path {
            continue;
        }
        match value {
            Bson::Document(ops) if ops.keys().next().is_some_and(|k| k.starts_with('$')) => {
                for (op, arg) in ops {
                    if op == "$options" {
                        continue;
                    }
                    let mut single = Document::new();
                    single.insert(op.clone(), arg.clone());
                    if op == "$regex"
                        && let Some(options) = ops.get("$options")
                    {
                        single.insert("$options", options.clone());
                    }
                    let mut condition = Document::new();
                    condition.insert(path, single);
                    out.push(condition);
                }
            }
            other => {
                let mut condition = Document::new();
                condition.insert(path, other.clone());
                out.push(condition);
            }
        }
    }
}

/// Slots that may match `query`, sorted; `None` means every document.
pub(crate) fn candidates(collection: &Collection, query: &Query) -> Option<Vec<u64>> {
    let filter = &query.filter;
    if let Some(FieldBounds::In(values)) = filter.bounds("_id")
        && !values.iter().any(|v| matches!(v, Bson::Array(_)))
    {
        let mut slots: Vec<u64> = values
            .iter()
            .filter_map(|v| collection.slot_of_id(v))
            .collect();
        slots.sort_unstable();
        slots.dedup();
        return Some(slots);
    }
    let mut best_equality: Option<Vec<u64>> = None;
    let mut best_range: Option<Vec<u64>> = None;
    for index in collection.indexes() {
        let path = index.pattern().first_path();
        let bounds = if index.is_multikey() {
            query.single_condition_bounds(path)
        } else {
            filter.bounds(path)
        };
        let Some(bounds) = bounds else {
            continue;
        };
        let Some(slots) = index.lookup(&bounds) else {
            continue;
        };
        let best = match bounds {
            FieldBounds::In(_) => &mut best_equality,
            FieldBounds::Range { .. } => &mut best_range,
        };
        if best.as_ref().is_none_or(|b| slots.len() < b.len()) {
            *best = Some(slots);
        }
    }
    best_equality.or(best_range)
}

/// Whether the `_id` map or an index would narrow the documents `query`
/// looks at (without looking anything up).
pub(crate) fn narrows(collection: &Collection, query: &Query) -> bool {
    let filter = &query.filter;
    if matches!(filter.bounds("_id"), Some(FieldBounds::In(_))) {
        return true;
    }
    collection.indexes().iter().any(|index| {
        let path = index.pattern().first_path();
        let bounds = if index.is_multikey() {
            query.single_condition_bounds(path)
        } else {
            filter.bounds(path)
        };
        bounds.is_some()
    })
}

/// Documents matching `query` in natural order, at most `limit` of them.
pub(crate) fn matching<'c>(
    collection: &'c Collection,
    query: &Query,
    limit: Option<usize>,
) -> Vec<(u64, &'c Document)> {
    let filter = &query.filter;
    let limit = limit.unwrap_or(usize::MAX);
    let mut out = Vec::new();
    if limit == 0 {
        return out;
    }
    let mut consider = |slot: u64, doc: &'c Document| {
        if filter.matches(doc) {
            out.push((slot, doc));
        }
        out.len() < limit
    };
    match candidates(collection, query) {
        Some(slots) => {
            for slot in slots {
                if let Some(doc) = collection.get(slot)
                    && !consider(slot, doc)
                {
                    break;
                }
            }
        }
        None => {
            for (slot, doc) in collection.documents() {
                if !consider(slot, doc) {
                    break;
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use bson::{Bson, Document, doc};
    use proptest::prelude::*;

    use super::*;
    use crate::engines::document::IndexSpec;
    use crate::engines::document::embedded::collection::Database;
    use crate::engines::document::embedded::record::Change;

    fn value() -> impl Strategy<Value = Bson> {
        prop_oneof![
            (-3i32..4).prop_map(Bson::Int32),
            (-3i64..4).prop_map(|i| Bson::Double(i as f64 + 0.5)),
            "[a-c]{0,2}".prop_map(Bson::String),
            Just(Bson::Null),
            Just(Bson::Boolean(true)),
        ]
    }

    fn field() -> impl Strategy<Value = Option<Bson>> {
        prop_oneof![
            Just(None),
            value().prop_map(Some),
            prop::collection::vec(value(), 0..3).prop_map(|v| Some(Bson::Array(v))),
            value().prop_map(|v| Some(Bson::Document(doc! {"b": v}))),
            prop::collection::vec(value(), 0..3).prop_map(|v| {
                let docs = v.into_iter().map(|b| Bson::Document(doc! {"b": b}));
                Some(Bson::Array(docs.collect()))
            }),
        ]
    }

    fn filter() -> impl Strategy<Value = Document> {
        let path = prop_oneof![Just("a"), Just("a.b"), Just("a.0")];
        let condition = prop_oneof![
            value(),
            value().prop_map(|v| Bson::Document(doc! {"$gt": v})),
            value().prop_map(|v| Bson::Document(doc! {"$lte": v})),
            (value(), value()).prop_map(|(x, y)| Bson::Document(doc! {"$gte": x, "$lt": y})),
            prop::collection::vec(value(), 0..3).prop_map(|v| Bson::Document(doc! {"$in": v})),
        ];
        let single = (path, condition).prop_map(|(p, c)| doc! {p: c});
        prop_oneof![
            single.clone(),
            // Two conditions on the same path, met by different elements
            // of an array under MongoDB's rule.
            (single.clone(), single).prop_map(|(x, y)| doc! {"$and": [x, y]}),
        ]
    }

    fn collection(fields: &[Option<Bson>], indexed: bool) -> Database {
        let mut db = Database::default();
        if indexed {
            for keys in [doc! {"a": 1}, doc! {"a.b": -1}, doc! {"a.0": 1, "z": 1}] {
                let spec = IndexSpec::new(keys.clone()).named(IndexSpec::default_name(&keys));
                let change = Change::CreateIndex {
                    collection: "c".into(),
                    spec,
                };
                db.apply(change, &[]).unwrap();
            }
        }
        let documents: Vec<Document> = fields
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let mut d = doc! {"_id": i as i32};
                if let Some(v) = f {
                    d.insert("a", v.clone());
                }
                d
            })
            .collect();
        let sizes = vec![0; documents.len()];
        let change = Change::Insert {
            collection: "c".into(),
            documents,
        };
        db.apply(change, &sizes).unwrap();
        db
    }

    fn ids(db: &Database, filter: &Query) -> Vec<Bson> {
        let c = db.collection("c").unwrap();
        matching(c, filter, None)
            .into_iter()
            .map(|(_, d)| d.get("_id").cloned().unwrap())
            .collect()
    }

    proptest! {
        /// Answering from an index gives exactly what a scan gives.
        #[test]
        fn index_answers_equal_scans(
            fields in prop::collection::vec(field(), 0..12),
            filter_doc in filter(),
        ) {
            let filter = Query::parse(filter_doc).unwrap();
            let scanned = ids(&collection(&fields, false), &filter);
            let indexed = ids(&collection(&fields, true), &filter);
            prop_assert_eq!(scanned, indexed);
        }
    }

    #[test]
    fn multikey_index_is_bounded_by_one_condition() {
        // Found by `index_answers_equal_scans`: each condition is met by a
        // different element, so the intersected range (true..0.5, empty in
        // BSON order) would have missed the document.
        let fields = [Some(Bson::Array(vec![
            Bson::Document(doc! {"b": 0}),
            Bson::Document(doc! {"b": true}),
        ]))];
        let filter = Query::parse(doc! {"a.b": {"$gte": true, "$lt": 0.5}}).unwrap();
        assert_eq!(
            ids(&collection(&fields, true), &filter),
            vec![Bson::Int32(0)]
        );
        let filter = Query::parse(doc! {"$and": [{"a.b": 0}, {"a.b": true}]}).unwrap();
        assert_eq!(
            ids(&collection(&fields, true), &filter),
            vec![Bson::Int32(0)]
        );
    }

    #[test]
    fn id_equality_uses_the_id_map() {
        let db = collection(&[None, None, None], false);
        let c = db.collection("c").unwrap();
        let filter = Query::parse(doc! {"_id": {"$in": [2, 0, 7]}}).unwrap();
        assert_eq!(candidates(c, &filter), Some(vec![0, 2]));
    }

    #[test]
    fn equality_index_narrows_candidates_and_inverted_ranges_are_empty() {
        let fields: Vec<Option<Bson>> = (0..50).map(|i| Some(Bson::Int32(i % 10))).collect();
        let db = collection(&fields, true);
        let c = db.collection("c").unwrap();
        let filter = Query::parse(doc! {"a": 3}).unwrap();
        assert_eq!(candidates(c, &filter).map(|s| s.len()), Some(5));
        let filter = Query::parse(doc! {"a": {"$gt": 5, "$lt": 3}}).unwrap();
        assert_eq!(candidates(c, &filter), Some(vec![]));
        let filter = Query::parse(doc! {"a": {"$gt": 7}}).unwrap();
        assert_eq!(ids(&db, &filter).len(), 10);
    }
}
