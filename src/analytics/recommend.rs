//! Recommendations from co-purchases.
//!
//! - [`co_purchases`]: for each pair of distinct products bought by the
//!   same customer, one count per customer (a basket is the set of a
//!   customer's products); each product keeps its top `n` partners, by
//!   count then product id. The full counts are symmetric.
//! - [`recommend`]: a customer's candidates are scored by the sum of their
//!   co-purchase counts with each product the customer bought; bought
//!   products are left out; the best `k` by score then id, topped up from
//!   a fallback list (the customer's segment's popular products).
//! - [`popular`]: products by the number of customers who bought them.
//! - Evaluation: precision@k, the share of the `k` recommendations that
//!   the customer bought next (held out).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// A partner product and how many customers bought both.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CoPurchase {
    /// The partner product.
    pub product_id: String,
    /// Customers who bought both.
    pub count: i64,
}

/// Full pair counts: `counts[a][b]` customers bought both `a` and `b`.
pub fn pair_counts(
    baskets: &BTreeMap<String, BTreeSet<String>>,
) -> BTreeMap<String, BTreeMap<String, i64>> {
    let mut counts: BTreeMap<String, BTreeMap<String, i64>> = BTreeMap::new();
    for basket in baskets.values() {
        for a in basket {
            let row = counts.entry(a.clone()).or_default();
            for b in basket {
                if a != b {
                    *row.entry(b.clone()).or_default() += 1;
                }
            }
        }
    }
    counts
}

/// Each product's top `n` co-purchased products, by count then id.
pub fn co_purchases(
    baskets: &BTreeMap<String, BTreeSet<String>>,
    n: usize,
) -> BTreeMap<String, Vec<CoPurchase>> {
    pair_counts(baskets)
        .into_iter()
        .map(|(product, row)| {
            let mut partners: Vec<CoPurchase> = row
                .into_iter()
                .map(|(product_id, count)| CoPurchase { product_id, count })
                .collect();
            partners.sort_by(|a, b| {
                b.count
                    .cmp(&a.count)
                    .then_with(|| a.product_id.cmp(&b.product_id))
            });
            partners.truncate(n);
            (product, partners)
        })
        .collect()
}

/// Products by how many baskets hold them, then id; the first `n`.
pub fn popular<'a>(
    baskets: impl IntoIterator<Item = &'a BTreeSet<String>>,
    n: usize,
) -> Vec<String> {
    let mut counts: BTreeMap<&str, i64> = BTreeMap::new();
    for basket in baskets {
        for product in basket {
            *counts.entry(product).or_default() += 1;
        }
    }
    let mut ranked: Vec<(&str, i64)> = counts.into_iter().collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
    ranked
        .into_iter()
        .take(n)
        .map(|(p, _)| p.to_owned())
        .collect()
}

/// Up to `k` products for a customer who bought `bought` (see the module
/// docs).
pub fn recommend(
    co: &BTreeMap<String, Vec<CoPurchase>>,
    bought: &BTreeSet<String>,
    fallback: &[String],
    k: usize,
) -> Vec<String> {
    let mut scores: BTreeMap<&str, i64> = BTreeMap::new();
    for product in bought {
        for partner in co.get(product).map(Vec::as_slice).unwrap_or_default() {
            if !bought.contains(&partner.product_id) {
                *scores.entry(&partner.product_id).or_default() += partner.count;
            }
        }
    }
    let mut ranked: Vec<(&str, i64)> = scores.into_iter().collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
    let mut picked: Vec<String> = ranked
        .into_iter()
        .take(k)
        .map(|(p, _)| p.to_owned())
        .collect();
    for product in fallback {
        if picked.len() >= k {
            break;
        }
        if !bought.contains(product) && !picked.contains(product) {
            picked.push(product.clone());
        }
    }
    picked
}

/// Share of the first `k` recommendations found in `held_out`, over `k`.
pub fn precision_at(k: usize, recommendations: &[String], held_out: &BTreeSet<String>) -> f64 {
    if k == 0 {
        return 0.0;
    }
    let hits = recommendations
        .iter()
        .take(k)
        .filter(|p| held_out.contains(*p))
        .count();
    hits as f64 / k as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn baskets(list: &[(&str, &[&str])]) -> BTreeMap<String, BTreeSet<String>> {
        list.iter()
            .map(|(u, ps)| (u.to_string(), ps.iter().map(|p| p.to_string()).collect()))
            .collect()
    }

    #[test]
    fn partners_rank_by_count_then_id_and_bought_items_are_left_out() {
        let b = baskets(&[
            ("u1", &["a", "b", "c"]),
            ("u2", &["a", "b"]),
            ("u3", &["a", "d"]),
        ]);
        let co = co_purchases(&b, 10);
        let a: Vec<(&str, i64)> = co["a"]
            .iter()
            .map(|c| (c.product_id.as_str(), c.count))
            .collect();
        assert_eq!(a, vec![("b", 2), ("c", 1), ("d", 1)]);
        let bought: BTreeSet<String> = ["a".to_string(), "c".to_string()].into();
        let fallback = vec!["a".to_string(), "z".to_string()];
        assert_eq!(recommend(&co, &bought, &fallback, 3), vec!["b", "d", "z"]);
        assert_eq!(popular(b.values(), 2), vec!["a", "b"]);
        let held: BTreeSet<String> = ["d".to_string()].into();
        assert_eq!(precision_at(2, &["b".into(), "d".into()], &held), 0.5);
    }

    proptest! {
        #[test]
        fn pair_counts_are_symmetric(
            raw in proptest::collection::vec(proptest::collection::btree_set(0u8..12, 0..6), 0..20)
        ) {
            let baskets: BTreeMap<String, BTreeSet<String>> = raw
                .iter()
                .enumerate()
                .map(|(i, set)| (format!("u{i}"), set.iter().map(|p| format!("p{p}")).collect()))
                .collect();
            let counts = pair_counts(&baskets);
            for (a, row) in &counts {
                prop_assert!(!row.contains_key(a));
                for (b, n) in row {
                    prop_assert_eq!(counts.get(b).and_then(|r| r.get(a)), Some(n));
                }
            }
        }
    }
}
