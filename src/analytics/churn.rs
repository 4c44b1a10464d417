//! Churn: a logistic regression on recency, frequency and monetary value,
//! its rank-based evaluation (AUC), and the deterministic train/test split.
//!
//! - Features ([`Rfm`]): days since the last order (since sign-up when
//!   there is none), orders per 30 days since sign-up, average order value; each
//!   through `ln(1 + x)`
//!   (they are skewed), then standardized with the training set's mean
//!   and standard deviation.
//! - Fit ([`fit_logistic`]): Newton's method (iteratively reweighted least
//!   squares) on the log-likelihood with a small L2 penalty on the
//!   weights (not the intercept), so that separable data still gives
//!   finite weights. Deterministic: no random start, no shuffling.
//! - [`auc`]: the probability that a random positive scores above a random
//!   negative, from ranks (Mann-Whitney U), ties counted as one half.

// Matrix and vector code reads best with the indices of its formulas.
#![allow(clippy::needless_range_loop)]

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::platform::customers::CustomerHistory;

/// Names of the features, in the order of the weights after the
/// intercept.
pub const FEATURES: [&str; 3] = ["recency_days", "frequency", "monetary"];

/// L2 penalty of [`ChurnModel::fit`].
const L2: f64 = 1e-2;

/// Seconds in a day.
const DAY: f64 = 86_400.0;

/// Shortest tenure the purchase rate is computed over, in days.
pub const MIN_TENURE_DAYS: f64 = 30.0;

/// Recency, frequency and monetary value of one customer at an instant.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Rfm {
    /// Days since the last order, or since sign-up when there is none.
    pub recency_days: f64,
    /// Orders per 30 days since sign-up (a tenure of at least
    /// [`MIN_TENURE_DAYS`]): a rate, so that a customer who joined last
    /// month compares with one who joined last year.
    pub frequency: f64,
    /// Average order value (0 without orders), rounded to cents (so that
    /// the last bits of a database's sum do not reach the model). The
    /// average rather than the total: the total is mostly frequency times
    /// tenure again, and two collinear features make unstable weights.
    pub monetary: f64,
}

impl Rfm {
    /// The features of `history` as of `as_of`.
    pub fn of(history: &CustomerHistory, as_of: DateTime<Utc>) -> Rfm {
        let last = history.last_order_at.unwrap_or(history.signed_up_at);
        let tenure_days = days_between(history.signed_up_at, as_of).max(MIN_TENURE_DAYS);
        Rfm {
            recency_days: days_between(last, as_of).max(0.0),
            frequency: history.orders as f64 * 30.0 / tenure_days,
            monetary: if history.orders > 0 {
                cents(history.revenue / history.orders as f64)
            } else {
                0.0
            },
        }
    }

    fn transformed(&self) -> [f64; 3] {
        [
            self.recency_days.max(0.0).ln_1p(),
            self.frequency.max(0.0).ln_1p(),
            self.monetary.max(0.0).ln_1p(),
        ]
    }
}

/// `value` rounded to cents.
pub fn cents(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

/// Days from `from` to `to` (negative when `to` is earlier).
pub fn days_between(from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    (to - from).num_seconds() as f64 / DAY
}

/// A fitted churn model: standardization and weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChurnModel {
    /// The features, in weight order ([`FEATURES`]).
    pub features: Vec<String>,
    /// Training means of the transformed features.
    pub means: Vec<f64>,
    /// Training standard deviations (1 where a feature is constant).
    pub scales: Vec<f64>,
    /// Intercept, then one weight per feature.
    pub weights: Vec<f64>,
}

impl ChurnModel {
    /// Fits the model to `rows` labelled `churned`.
    /// An empty training set gives a model that answers 0.5.
    pub fn fit(rows: &[Rfm], churned: &[bool]) -> ChurnModel {
        let raw: Vec<[f64; 3]> = rows.iter().map(Rfm::transformed).collect();
        let n = raw.len().max(1) as f64;
        let mut means = vec![0.0; 3];
        let mut scales = vec![1.0; 3];
        for j in 0..3 {
            means[j] = raw.iter().map(|r| r[j]).sum::<f64>() / n;
            let var = raw.iter().map(|r| (r[j] - means[j]).powi(2)).sum::<f64>() / n;
            if var > 1e-12 {
                scales[j] = var.sqrt();
            }
        }
        let x: Vec<Vec<f64>> = raw
            .iter()
            .map(|r| (0..3).map(|j| (r[j] - means[j]) / scales[j]).collect())
            .collect();
        let weights = if x.is_empty() {
            vec![0.0; 4]
        } else {
            fit_logistic(&x, churned, L2)
        };
        ChurnModel {
            features: FEATURES.iter().map(|f| (*f).to_owned()).collect(),
            means,
            scales,
            weights,
        }
    }

    /// The probability that the customer churns.
    pub fn probability(&self, rfm: &Rfm) -> f64 {
        let t = rfm.transformed();
        let mut z = self.weights.first().copied().unwrap_or(0.0);
        for j in 0..3 {
            let (Some(m), Some(s), Some(w)) = (
                self.means.get(j),
                self.scales.get(j),
                self.weights.get(j + 1),
            ) else {
                continue;
            };
            z += w * (t[j] - m) / s;
        }
        sigmoid(z)
    }
}

fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

/// Logistic regression by Newton's method: the intercept first, then one
/// weight per column of `x`. `l2` penalizes the weights, not the
/// intercept. Stops when no weight moves by more than 1e-10, or after 100
/// steps.
pub fn fit_logistic(x: &[Vec<f64>], y: &[bool], l2: f64) -> Vec<f64> {
    let d = x.first().map_or(0, Vec::len) + 1;
    let mut w = vec![0.0; d];
    let row = |i: usize| std::iter::once(1.0).chain(x[i].iter().copied());
    for _ in 0..100 {
        let mut gradient = vec![0.0; d];
        let mut hessian = vec![vec![0.0; d]; d];
        for (i, &label) in y.iter().enumerate().take(x.len()) {
            let z: f64 = row(i).zip(&w).map(|(a, b)| a * b).sum();
            let p = sigmoid(z);
            let r = if label { 1.0 } else { 0.0 } - p;
            let weight = p * (1.0 - p);
            let xi: Vec<f64> = row(i).collect();
            for a in 0..d {
                gradient[a] += xi[a] * r;
                for b in 0..d {
                    hessian[a][b] += weight * xi[a] * xi[b];
                }
            }
        }
        for a in 1..d {
            gradient[a] -= l2 * w[a];
            hessian[a][a] += l2;
        }
        // A tiny ridge on the intercept too keeps the system solvable
        // when every label is the same.
        hessian[0][0] += 1e-9;
        let Some(step) = solve(hessian, gradient) else {
            break;
        };
        let mut moved: f64 = 0.0;
        for (wa, sa) in w.iter_mut().zip(&step) {
            *wa += sa;
            moved = moved.max(sa.abs());
        }
        if moved < 1e-10 {
            break;
        }
    }
    w
}

/// Solves `a · s = b` by Gaussian elimination with partial pivoting;
/// `None` when `a` is singular.
fn solve(mut a: Vec<Vec<f64>>, mut b: Vec<f64>) -> Option<Vec<f64>> {
    let n = b.len();
    for col in 0..n {
        let pivot = (col..n).max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs()))?;
        if a[pivot][col].abs() < 1e-300 {
            return None;
        }
        a.swap(col, pivot);
        b.swap(col, pivot);
        for r in col + 1..n {
            let f = a[r][col] / a[col][col];
            for c in col..n {
                a[r][c] -= f * a[col][c];
            }
            b[r] -= f * b[col];
        }
    }
    let mut s = vec![0.0; n];
    for r in (0..n).rev() {
        let tail: f64 = (r + 1..n).map(|c| a[r][c] * s[c]).sum();
        s[r] = (b[r] - tail) / a[r][r];
    }
    s.iter().all(|v| v.is_finite()).then_some(s)
}

/// The area under the ROC curve of `scores` (higher = more likely
/// positive) against `labels`, from average ranks (Mann-Whitney U): tied
/// scores count one half. `None` without a positive or a negative.
pub fn auc(scores: &[f64], labels: &[bool]) -> Option<f64> {
    let n = scores.len().min(labels.len());
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let positives = labels[..n].iter().filter(|&&l| l).count();
    let negatives = n - positives;
    if positives == 0 || negatives == 0 {
        return None;
    }
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < n {
        let mut j = i;
        while j + 1 < n && scores[order[j + 1]] == scores[order[i]] {
            j += 1;
        }
        // Ranks i+1 ..= j+1 share their mean.
        let rank = (i + j + 2) as f64 / 2.0;
        rank_sum += rank * order[i..=j].iter().filter(|&&k| labels[k]).count() as f64;
        i = j + 1;
    }
    let p = positives as f64;
    Some((rank_sum - p * (p + 1.0) / 2.0) / (p * negatives as f64))
}

/// FNV-1a of `text`: a hash that is the same on every machine and run.
pub fn stable_hash(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Whether `user_id` belongs to the held-out part: `percent` of ids, by
/// [`stable_hash`].
pub fn held_out(user_id: &str, percent: u32) -> bool {
    stable_hash(user_id) % 100 < u64::from(percent)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn auc_of_perfect_reversed_and_tied_rankings() {
        let labels = [false, false, true, true];
        assert_eq!(auc(&[0.1, 0.2, 0.8, 0.9], &labels), Some(1.0));
        assert_eq!(auc(&[0.9, 0.8, 0.2, 0.1], &labels), Some(0.0));
        assert_eq!(auc(&[0.5; 4], &labels), Some(0.5));
        // One tie between a positive and a negative: half a pair.
        assert_eq!(auc(&[0.1, 0.5, 0.5, 0.9], &labels), Some(0.875));
        assert_eq!(auc(&[0.1, 0.2], &[true, true]), None);
    }

    #[test]
    fn separable_data_is_ranked_perfectly_with_finite_weights() {
        let x: Vec<Vec<f64>> = (0..40).map(|i| vec![f64::from(i) - 20.0]).collect();
        let y: Vec<bool> = (0..40).map(|i| i >= 20).collect();
        let w = fit_logistic(&x, &y, 1e-2);
        assert!(w.iter().all(|v| v.is_finite()), "{w:?}");
        assert!(w[1] > 0.0);
        let scores: Vec<f64> = x.iter().map(|r| w[0] + w[1] * r[0]).collect();
        assert_eq!(auc(&scores, &y), Some(1.0));
    }

    #[test]
    fn known_coefficients_are_recovered() {
        // Labels drawn exactly at the model's rate on a grid: the fit finds
        // intercept -1 and slope 2 back (up to the penalty and the grid).
        let mut x = Vec::new();
        let mut y = Vec::new();
        for step in -20..=20 {
            let v = f64::from(step) / 10.0;
            let p = sigmoid(-1.0 + 2.0 * v);
            let ones = (p * 1000.0).round() as usize;
            for k in 0..1000 {
                x.push(vec![v]);
                y.push(k < ones);
            }
        }
        let w = fit_logistic(&x, &y, 1e-6);
        assert!((w[0] + 1.0).abs() < 0.02, "{w:?}");
        assert!((w[1] - 2.0).abs() < 0.02, "{w:?}");
    }

    #[test]
    fn churn_model_answers_one_half_without_data() {
        let model = ChurnModel::fit(&[], &[]);
        let rfm = Rfm {
            recency_days: 3.0,
            frequency: 2.0,
            monetary: 10.0,
        };
        assert_eq!(model.probability(&rfm), 0.5);
    }

    proptest! {
        #[test]
        fn auc_is_invariant_under_monotone_transforms(
            points in proptest::collection::vec((-1000i32..1000, any::<bool>()), 2..60)
        ) {
            let scores: Vec<f64> = points.iter().map(|(s, _)| f64::from(*s) / 10.0).collect();
            let labels: Vec<bool> = points.iter().map(|(_, l)| *l).collect();
            let base = auc(&scores, &labels);
            let moved: Vec<f64> = scores.iter().map(|s| (s / 50.0).exp() * 3.0 + 7.0).collect();
            prop_assert_eq!(auc(&moved, &labels), base);
            if let Some(a) = base {
                prop_assert!((0.0..=1.0).contains(&a));
                // Reversing the scores mirrors the AUC.
                let reversed: Vec<f64> = scores.iter().map(|s| -s).collect();
                let r = auc(&reversed, &labels).unwrap();
                prop_assert!((a + r - 1.0).abs() < 1e-12);
            }
        }

        #[test]
        fn held_out_is_a_function_of_the_id(id in "[a-z0-9-]{1,20}", percent in 1u32..100) {
            prop_assert_eq!(held_out(&id, percent), held_out(&id, percent));
            prop_assert_eq!(held_out(&id, 100), true);
        }
    }
}
