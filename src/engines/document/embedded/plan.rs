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

use bson::{Bson, Document};

use crate::engines::document::embedded::collection::Collection;
use crate::engines::document::query::filter::{FieldBounds, Filter};

/// Slots that may match `filter`, sorted; `None` means every document.
pub(crate) fn candidates(collection: &Collection, filter: &Filter) -> Option<Vec<u64>> {
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
        let Some(bounds) = filter.bounds(index.pattern().first_path()) else {
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

/// Documents matching `filter` in natural order, at most `limit` of them.
pub(crate) fn matching<'c>(
    collection: &'c Collection,
    filter: &Filter,
    limit: Option<usize>,
) -> Vec<(u64, &'c Document)> {
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
    match candidates(collection, filter) {
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
