//! Sort specifications.
//!
//! # Contracts
//!
//! - [`SortSpec::parse`] accepts `{path: 1 | -1}` (as int32, int64 or
//!   double); `{$meta: ...}` is `Unsupported`; any other value, an empty or
//!   `$`-prefixed path is `InvalidInput` naming the field. An empty sort is
//!   allowed and orders nothing.
//! - [`SortSpec::compare`] uses MongoDB's sort keys: the values along the
//!   path with array expansion, a missing field as null, an array by its
//!   smallest element ascending and its largest descending, and an empty
//!   array below null (MongoDB sorts it as `undefined`). Documents with equal
//!   keys compare `Equal`; [`SortSpec::sort`] is stable, so they keep their
//!   input order.

use std::cmp::Ordering;

use bson::{Bson, Document};

use crate::error::{Error, Result};

use super::compare::compare_bson;
use super::path::{check_path, values_along};

/// A parsed sort: fields with directions.
#[derive(Debug, Clone, PartialEq)]
pub struct SortSpec {
    /// `(path, ascending)` in priority order.
    pub keys: Vec<(String, bool)>,
}

impl SortSpec {
    /// Parses `{field: 1 | -1, ...}`.
    pub fn parse(sort: &Document) -> Result<SortSpec> {
        let mut keys = Vec::with_capacity(sort.len());
        for (path, dir) in sort {
            check_path(path)?;
            if path.starts_with('$') {
                return Err(
                    Error::invalid(format!("sort field `{path}` may not start with `$`"))
                        .with_field(path.as_str()),
                );
            }
            let ascending = match dir {
                Bson::Int32(1) | Bson::Int64(1) => true,
                Bson::Int32(-1) | Bson::Int64(-1) => false,
                Bson::Double(d) if *d == 1.0 => true,
                Bson::Double(d) if *d == -1.0 => false,
                Bson::Document(d) if d.contains_key("$meta") => {
                    return Err(Error::unsupported(format!(
                        "unsupported sort `$meta` for field `{path}`"
                    ))
                    .with_field(path.as_str()));
                }
                other => {
                    return Err(Error::invalid(format!(
                        "bad sort specification for field `{path}`: {other} (must be 1 or -1)"
                    ))
                    .with_field(path.as_str()));
                }
            };
            keys.push((path.clone(), ascending));
        }
        Ok(SortSpec { keys })
    }

    /// Compares two documents under this sort (MongoDB's order; an array
    /// field sorts by its smallest element ascending, largest descending).
    pub fn compare(&self, a: &Document, b: &Document) -> Ordering {
        self.compare_keys(&self.sort_key(a), &self.sort_key(b))
    }

    /// The sort key of a document: one value per sort field, already chosen
    /// for the field's direction. Precompute it when sorting many documents.
    pub fn sort_key(&self, doc: &Document) -> Vec<Bson> {
        self.keys
            .iter()
            .map(|(path, ascending)| field_key(doc, path, *ascending))
            .collect()
    }

    /// Compares two keys made by [`SortSpec::sort_key`].
    pub fn compare_keys(&self, a: &[Bson], b: &[Bson]) -> Ordering {
        for ((x, y), (_, ascending)) in a.iter().zip(b).zip(&self.keys) {
            let o = compare_bson(x, y);
            let o = if *ascending { o } else { o.reverse() };
            if o != Ordering::Equal {
                return o;
            }
        }
        Ordering::Equal
    }

    /// Sorts documents stably (ties keep their input order), computing each
    /// key once.
    pub fn sort(&self, docs: Vec<Document>) -> Vec<Document> {
        if self.keys.is_empty() {
            return docs;
        }
        let mut keyed: Vec<(Vec<Bson>, Document)> =
            docs.into_iter().map(|d| (self.sort_key(&d), d)).collect();
        keyed.sort_by(|(a, _), (b, _)| self.compare_keys(a, b));
        keyed.into_iter().map(|(_, d)| d).collect()
    }
}

fn field_key(doc: &Document, path: &str, ascending: bool) -> Bson {
    let mut best: Option<Bson> = None;
    let mut consider = |v: &Bson| {
        let better = match &best {
            None => true,
            Some(cur) => {
                let o = compare_bson(v, cur);
                if ascending {
                    o == Ordering::Less
                } else {
                    o == Ordering::Greater
                }
            }
        };
        if better {
            best = Some(v.clone());
        }
    };
    for candidate in values_along(doc, path) {
        match candidate {
            None => consider(&Bson::Null),
            Some(Bson::Array(a)) if a.is_empty() => consider(&Bson::Undefined),
            Some(Bson::Array(a)) => a.iter().for_each(&mut consider),
            Some(v) => consider(v),
        }
    }
    best.unwrap_or(Bson::Null)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engines::document::query::compare::tests::arb_bson;
    use crate::error::ErrorKind;
    use bson::doc;
    use proptest::prelude::*;

    fn ids(docs: &[Document]) -> Vec<i32> {
        docs.iter().map(|d| d.get_i32("_id").unwrap()).collect()
    }

    #[test]
    fn parse_accepts_directions_and_rejects_others() {
        let s = SortSpec::parse(&doc! {"a": 1, "b.c": -1, "d": 1.0, "e": -1i64}).unwrap();
        assert_eq!(
            s.keys,
            vec![
                ("a".into(), true),
                ("b.c".into(), false),
                ("d".into(), true),
                ("e".into(), false)
            ]
        );
        for bad in [
            doc! {"a": 2},
            doc! {"a": "asc"},
            doc! {"a": 0},
            doc! {"": 1},
            doc! {"$a": 1},
        ] {
            let e = SortSpec::parse(&bad).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidInput, "{bad}");
        }
        let e = SortSpec::parse(&doc! {"a": {"$meta": "textScore"}}).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unsupported);
        assert!(e.message().contains("$meta"));
        assert!(SortSpec::parse(&doc! {}).unwrap().keys.is_empty());
    }

    #[test]
    fn mixed_types_missing_and_arrays_sort_like_mongodb() {
        let docs = vec![
            doc! {"_id": 1, "a": "x"},
            doc! {"_id": 2, "a": 5},
            doc! {"_id": 3},
            doc! {"_id": 4, "a": null},
            doc! {"_id": 5, "a": [3, 10]},
            doc! {"_id": 6, "a": []},
            doc! {"_id": 7, "a": true},
            doc! {"_id": 8, "a": {"k": 1}},
        ];
        let asc = SortSpec::parse(&doc! {"a": 1}).unwrap().sort(docs.clone());
        // [] < missing = null (stable) < 3 (min of [3,10]) < 5 < "x" < {} < true
        assert_eq!(ids(&asc), vec![6, 3, 4, 5, 2, 1, 8, 7]);
        let desc = SortSpec::parse(&doc! {"a": -1}).unwrap().sort(docs);
        // true > {} > "x" > 10 (max of [3,10]) > 5 > null = missing > []
        assert_eq!(ids(&desc), vec![7, 8, 1, 5, 2, 3, 4, 6]);
    }

    #[test]
    fn compound_sort_and_paths_into_arrays() {
        let docs = vec![
            doc! {"_id": 1, "g": 1, "s": [{"v": 9}, {"v": 2}]},
            doc! {"_id": 2, "g": 0, "s": [{"v": 5}]},
            doc! {"_id": 3, "g": 1, "s": [{"v": 4}]},
        ];
        let s = SortSpec::parse(&doc! {"g": -1, "s.v": 1}).unwrap();
        assert_eq!(ids(&s.sort(docs.clone())), vec![1, 3, 2]);
        assert_eq!(s.compare(&docs[0], &docs[0]), Ordering::Equal);
    }

    proptest! {
        #[test]
        fn sort_equals_sorting_scalars_by_compare_bson(
            values in prop::collection::vec(arb_bson().prop_filter("scalar", |v| !matches!(v, Bson::Array(_))), 0..12),
            ascending in any::<bool>(),
        ) {
            let docs: Vec<Document> = values.iter().enumerate()
                .map(|(i, v)| doc! {"_id": i as i32, "f": v.clone()}).collect();
            let spec = SortSpec::parse(&doc! {"f": if ascending { 1 } else { -1 }}).unwrap();
            let sorted = spec.sort(docs.clone());
            let mut expected = docs;
            expected.sort_by(|a, b| {
                let o = compare_bson(a.get("f").unwrap(), b.get("f").unwrap());
                if ascending { o } else { o.reverse() }
            });
            prop_assert_eq!(sorted, expected);
        }

        #[test]
        fn array_sorts_by_min_ascending_and_max_descending(
            xs in prop::collection::vec(arb_bson().prop_filter("scalar", |v| !matches!(v, Bson::Array(_))), 1..5),
            y in arb_bson().prop_filter("scalar", |v| !matches!(v, Bson::Array(_))),
        ) {
            let a = doc! {"f": xs.clone()};
            let b = doc! {"f": y.clone()};
            let min = xs.iter().min_by(|p, q| compare_bson(p, q)).unwrap();
            let max = xs.iter().max_by(|p, q| compare_bson(p, q)).unwrap();
            let asc = SortSpec::parse(&doc! {"f": 1}).unwrap();
            prop_assert_eq!(asc.compare(&a, &b), compare_bson(min, &y));
            let desc = SortSpec::parse(&doc! {"f": -1}).unwrap();
            prop_assert_eq!(desc.compare(&a, &b), compare_bson(max, &y).reverse());
        }
    }
}
