//! Between strata's document types and the driver's, and the client-side
//! checks that keep MongoDB to strata's subset.
//!
//! # Contracts
//!
//! - [`check_find`], [`check_index_keys`] and [`check_replacement`] fail the
//!   way the embedded engine fails (same [`ErrorKind`](crate::error::ErrorKind)
//!   for the same input), before anything is sent.
//! - Conversions are lossless for everything strata's types carry: an
//!   [`IndexSpec`] round-trips through an [`IndexModel`] (name always set,
//!   so MongoDB and strata agree on default names).

use ::mongodb::IndexModel;
use ::mongodb::options::{FindOptions as DriverFindOptions, IndexOptions};
use bson::oid::ObjectId;
use bson::{Bson, Document, doc};

use crate::engines::document::query::projection::Projection;
use crate::engines::document::query::sort::SortSpec;
use crate::engines::document::{FindOptions, IndexSpec, UpdateResult};
use crate::error::{Error, Result};

/// The name of the index MongoDB keeps on `_id`.
pub(super) const ID_INDEX: &str = "_id_";

/// Puts `_id` first, adding an ObjectId when absent, so the `_id`s an
/// insert returns are known before the server answers.
pub(super) fn with_id_first(mut doc: Document) -> Document {
    let id = doc
        .remove("_id")
        .unwrap_or_else(|| Bson::ObjectId(ObjectId::new()));
    let mut out = Document::new();
    out.insert("_id", id);
    out.extend(doc);
    out
}

/// Checks the sort and projection of a find with strata's parsers.
pub(super) fn check_find(options: &FindOptions) -> Result<()> {
    if let Some(sort) = &options.sort {
        SortSpec::parse(sort)?;
    }
    if let Some(projection) = &options.projection {
        Projection::parse(projection)?;
    }
    Ok(())
}

/// The driver's find options. A limit of 0 is no limit in both; a limit
/// beyond `i64::MAX` is no limit either (MongoDB reads a negative limit as
/// "one batch", so it must never wrap).
pub(super) fn find_options(options: FindOptions) -> DriverFindOptions {
    let mut out = DriverFindOptions::default();
    out.sort = options.sort;
    out.skip = options.skip.filter(|s| *s > 0);
    out.limit = options
        .limit
        .filter(|l| *l > 0)
        .and_then(|l| i64::try_from(l).ok());
    out.projection = options.projection;
    out
}

/// Checks index keys as the embedded engine does: ascending (1) and
/// descending (-1) fields only; other index types are outside the subset.
pub(super) fn check_index_keys(keys: &Document) -> Result<()> {
    if keys.is_empty() {
        return Err(Error::invalid("index keys must name at least one field"));
    }
    for (path, dir) in keys {
        if path.is_empty() || path.starts_with('$') {
            return Err(
                Error::invalid(format!("invalid index key path '{path}'")).with_field(path.clone())
            );
        }
        match dir {
            Bson::Int32(1 | -1) | Bson::Int64(1 | -1) => {}
            Bson::Double(d) if *d == 1.0 || *d == -1.0 => {}
            Bson::String(kind) => {
                return Err(Error::unsupported(format!(
                    "index type \"{kind}\" is outside strata's document subset"
                ))
                .with_field(path.clone()));
            }
            other => {
                return Err(Error::invalid(format!(
                    "index key direction must be 1 or -1, got {other}"
                ))
                .with_field(path.clone()));
            }
        }
    }
    Ok(())
}

/// Whether two key patterns are the same fields in the same order and
/// directions, whatever the numeric type of the directions (`1` == `1.0`).
pub(super) fn same_keys(a: &Document, b: &Document) -> bool {
    fn dir(v: &Bson) -> Option<i64> {
        match v {
            Bson::Int32(i) => Some(i64::from(*i)),
            Bson::Int64(i) => Some(*i),
            Bson::Double(d) if *d == 1.0 => Some(1),
            Bson::Double(d) if *d == -1.0 => Some(-1),
            _ => None,
        }
    }
    a.len() == b.len()
        && a.iter().zip(b.iter()).all(|((ka, va), (kb, vb))| {
            ka == kb && (va == vb || (dir(va).is_some() && dir(va) == dir(vb)))
        })
}

/// The driver's model of `spec`, always named.
pub(super) fn index_model(spec: &IndexSpec) -> IndexModel {
    let mut options = IndexOptions::builder().name(spec.effective_name()).build();
    if spec.unique {
        options.unique = Some(true);
    }
    // Sent as `expireAfterSeconds` (whole seconds, checked by `check_ttl`).
    options.expire_after = spec.expire_after;
    IndexModel::builder()
        .keys(spec.keys.clone())
        .options(options)
        .build()
}

/// strata's view of an index MongoDB lists.
pub(super) fn index_spec(model: IndexModel) -> IndexSpec {
    let (name, unique, expire_after) = match &model.options {
        Some(o) => (o.name.clone(), o.unique.unwrap_or(false), o.expire_after),
        None => (None, false, None),
    };
    IndexSpec {
        keys: model.keys,
        name,
        unique,
        expire_after,
    }
}

/// A replacement holds fields, not update operators.
pub(super) fn check_replacement(replacement: &Document) -> Result<()> {
    match replacement.keys().find(|k| k.starts_with('$')) {
        Some(op) => Err(Error::invalid(format!(
            "a replacement document must not contain update operators, found `{op}`"
        ))
        .with_field(op.as_str())),
        None => Ok(()),
    }
}

/// Range operators whose bounds a server must not intersect on a multikey
/// index.
const RANGE_OPERATORS: [&str; 4] = ["$gt", "$gte", "$lt", "$lte"];

/// The filter to send: a field condition with two or more range operators
/// (`{s: {$gt: 6, $lt: 3}}`) becomes an `$and` of one condition per range
/// operator (`{$and: [{s: {$gt: 6}}, {s: {$lt: 3}}]}`), at the top level and
/// inside `$and`/`$or`/`$nor`, never inside `$elemMatch` or `$not`.
///
/// The two forms mean the same in MongoDB: both are the conjunction of the
/// comparisons, and on an array each comparison may be met by a different
/// element (MongoDB's planner parses them into the same expression tree).
/// SecantusDB intersects the bounds of the first form on a multikey index
/// and misses such documents; it answers the second form right.
pub(super) fn filter_to_send(filter: Document) -> Document {
    let mut out = Document::new();
    let mut split: Vec<Bson> = Vec::new();
    for (key, value) in filter {
        match (key.as_str(), value) {
            ("$and" | "$or" | "$nor", Bson::Array(items)) => {
                let items = items
                    .into_iter()
                    .map(|item| match item {
                        Bson::Document(d) => Bson::Document(filter_to_send(d)),
                        other => other,
                    })
                    .collect();
                out.insert(key, Bson::Array(items));
            }
            (field, Bson::Document(cond)) if !field.starts_with('$') && ranges_in(&cond) > 1 => {
                let mut rest = Document::new();
                for (op, arg) in cond {
                    if RANGE_OPERATORS.contains(&op.as_str()) {
                        split.push(Bson::Document(doc! {field: {op: arg}}));
                    } else {
                        rest.insert(op, arg);
                    }
                }
                if !rest.is_empty() {
                    split.push(Bson::Document(doc! {field: rest}));
                }
            }
            (_, value) => {
                out.insert(key, value);
            }
        }
    }
    if !split.is_empty() {
        match out.get_mut("$and") {
            Some(Bson::Array(existing)) => existing.extend(split),
            _ => {
                out.insert("$and", Bson::Array(split));
            }
        }
    }
    out
}

fn ranges_in(condition: &Document) -> usize {
    condition
        .keys()
        .filter(|k| RANGE_OPERATORS.contains(&k.as_str()))
        .count()
}

/// The pipeline to send: `$match` filters as in [`filter_to_send`]; each
/// `{$count: "n"}` becomes MongoDB's documented
/// equivalent, `{$group: {_id: null, n: {$sum: 1}}}, {$project: {_id: 0}}`.
/// Same answer on MongoDB; on servers whose `$count` emits `{n: 0}` for no
/// input (SecantusDB), it restores MongoDB's answer: no document at all.
/// The sub-pipelines of `$facet` are rewritten the same way.
pub(super) fn pipeline_to_send(pipeline: Vec<Document>) -> Vec<Document> {
    let mut out = Vec::with_capacity(pipeline.len());
    for mut stage in pipeline {
        if stage.len() == 1
            && let Some(Bson::Document(m)) = stage.get_mut("$match")
        {
            *m = filter_to_send(std::mem::take(m));
        }
        if stage.len() == 1
            && let Some(Bson::Document(facets)) = stage.get_mut("$facet")
        {
            for (_, sub) in facets.iter_mut() {
                if let Bson::Array(stages) = sub {
                    let docs: Option<Vec<Document>> =
                        stages.iter().map(|s| s.as_document().cloned()).collect();
                    // The pipeline was parsed before it got here, so every
                    // sub-stage is a document; anything else is sent as is.
                    if let Some(docs) = docs {
                        *stages = pipeline_to_send(docs)
                            .into_iter()
                            .map(Bson::Document)
                            .collect();
                    }
                }
            }
        }
        match (stage.len(), stage.get("$count")) {
            (1, Some(Bson::String(field))) => {
                let field = field.clone();
                out.push(doc! {"$group": {"_id": Bson::Null, field: {"$sum": 1}}});
                out.push(doc! {"$project": {"_id": 0}});
            }
            _ => out.push(stage),
        }
    }
    out
}

/// strata's update result.
pub(super) fn update_result(r: ::mongodb::results::UpdateResult) -> UpdateResult {
    UpdateResult {
        matched: r.matched_count,
        modified: r.modified_count,
        upserted_id: r.upserted_id,
    }
}

#[cfg(test)]
mod tests {
    use bson::doc;

    use super::*;
    use crate::error::ErrorKind;

    #[test]
    fn id_goes_first_and_is_added_when_absent() {
        let given = with_id_first(doc! {"a": 1, "_id": 7});
        assert_eq!(given, doc! {"_id": 7, "a": 1});
        assert_eq!(given.keys().next().map(String::as_str), Some("_id"));
        let added = with_id_first(doc! {"a": 1});
        assert!(matches!(added.get("_id"), Some(Bson::ObjectId(_))));
        assert_eq!(added.keys().next().map(String::as_str), Some("_id"));
    }

    #[test]
    fn limits_never_wrap_negative() {
        let huge = find_options(FindOptions::default().limit(u64::MAX));
        assert_eq!(huge.limit, None);
        let zero = find_options(FindOptions::default().limit(0));
        assert_eq!(zero.limit, None);
        let five = find_options(FindOptions::default().limit(5).skip(2));
        assert_eq!((five.limit, five.skip), (Some(5), Some(2)));
    }

    #[test]
    fn index_keys_outside_the_subset() {
        assert!(check_index_keys(&doc! {"a": 1, "b": -1i64, "c": 1.0}).is_ok());
        let text = check_index_keys(&doc! {"body": "text"}).unwrap_err();
        assert_eq!(text.kind(), ErrorKind::Unsupported);
        assert!(text.to_string().contains("text"), "{text}");
        assert_eq!(
            check_index_keys(&doc! {"a": 2}).unwrap_err().kind(),
            ErrorKind::InvalidInput
        );
        assert_eq!(
            check_index_keys(&doc! {}).unwrap_err().kind(),
            ErrorKind::InvalidInput
        );
    }

    #[test]
    fn index_spec_round_trips_with_its_name() {
        let spec = IndexSpec::new(doc! {"a": 1, "b": -1}).unique();
        let back = index_spec(index_model(&spec));
        assert_eq!(back.keys, spec.keys);
        assert_eq!(back.name.as_deref(), Some("a_1_b_-1"));
        assert!(back.unique);
        assert!(same_keys(&doc! {"a": 1}, &doc! {"a": 1.0}));
        assert!(!same_keys(&doc! {"a": 1, "b": 1}, &doc! {"b": 1, "a": 1}));
        assert!(!same_keys(&doc! {"a": 1}, &doc! {"a": -1}));
    }

    #[test]
    fn count_stages_become_group_and_project() {
        let sent = pipeline_to_send(vec![doc! {"$match": {"a": 1}}, doc! {"$count": "n"}]);
        assert_eq!(
            sent,
            vec![
                doc! {"$match": {"a": 1}},
                doc! {"$group": {"_id": null, "n": {"$sum": 1}}},
                doc! {"$project": {"_id": 0}},
            ]
        );
        let other = vec![doc! {"$limit": 2}];
        assert_eq!(pipeline_to_send(other.clone()), other);
        let faceted = pipeline_to_send(vec![doc! {"$facet": {
            "n": [{"$match": {"s": {"$gt": 1, "$lt": 5}}}, {"$count": "n"}],
            "all": [{"$limit": 2}],
        }}]);
        assert_eq!(
            faceted,
            vec![doc! {"$facet": {
                "n": [
                    {"$match": {"$and": [{"s": {"$gt": 1}}, {"s": {"$lt": 5}}]}},
                    {"$group": {"_id": null, "n": {"$sum": 1}}},
                    {"$project": {"_id": 0}},
                ],
                "all": [{"$limit": 2}],
            }}]
        );
    }

    #[test]
    fn two_sided_ranges_are_sent_as_and() {
        let sent = filter_to_send(doc! {"a": 1, "s": {"$gt": 6, "$lt": 3, "$ne": 5}});
        assert_eq!(
            sent,
            doc! {"a": 1, "$and": [{"s": {"$gt": 6}}, {"s": {"$lt": 3}}, {"s": {"$ne": 5}}]}
        );
        let nested = filter_to_send(doc! {
            "$and": [{"x": 1}],
            "$or": [{"s": {"$gte": 1, "$lte": 2}}],
            "t": {"$gte": 0, "$lt": 9},
        });
        assert_eq!(
            nested,
            doc! {
                "$and": [{"x": 1}, {"t": {"$gte": 0}}, {"t": {"$lt": 9}}],
                "$or": [{"$and": [{"s": {"$gte": 1}}, {"s": {"$lte": 2}}]}],
            }
        );
        // Same element required: $elemMatch is sent as it is; so is $not.
        let kept = doc! {
            "s": {"$elemMatch": {"$gt": 6, "$lt": 3}},
            "u": {"$not": {"$gt": 1, "$lt": 3}},
            "v": {"$gt": 1},
        };
        assert_eq!(filter_to_send(kept.clone()), kept);
        let staged = pipeline_to_send(vec![doc! {"$match": {"s": {"$gt": 1, "$lt": 2}}}]);
        assert_eq!(
            staged,
            vec![doc! {"$match": {"$and": [{"s": {"$gt": 1}}, {"s": {"$lt": 2}}]}}]
        );
    }

    #[test]
    fn replacements_hold_no_operators() {
        assert!(check_replacement(&doc! {"a": 1}).is_ok());
        let e = check_replacement(&doc! {"$set": {"a": 1}}).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert_eq!(e.field(), Some("$set"));
    }
}
