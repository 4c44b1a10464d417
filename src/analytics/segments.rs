//! Segments: each customer is exactly one of `DORMANT`, `AT_RISK`, `VIP`,
//! `ACTIVE`, tested in that order (the first that applies wins):
//!
//! 1. `DORMANT`: no order for `analytics.dormant_after` (since sign-up when
//!    there is none). A fact about the past, so it comes first: there is
//!    no risk left to act on.
//! 2. `AT_RISK`: the churn model's probability is above
//!    `analytics.at_risk_probability`. A valuable customer at risk is at
//!    risk first: that is what someone should act on.
//! 3. `VIP`: a lifetime value among the top `analytics.vip_fraction` of
//!    customers, or at least `analytics.vip_ltv` (the cutoff is fixed when
//!    the model is trained and stored in it).
//! 4. `ACTIVE`: everyone else.

use serde::{Deserialize, Serialize};

/// A customer segment.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Segment {
    /// No order for `dormant_after`.
    Dormant,
    /// Likely to churn.
    AtRisk,
    /// Among the most valuable.
    Vip,
    /// Everyone else.
    Active,
}

impl Segment {
    /// Every segment, in precedence order.
    pub const ALL: [Segment; 4] = [
        Segment::Dormant,
        Segment::AtRisk,
        Segment::Vip,
        Segment::Active,
    ];

    /// The name, e.g. `AT_RISK`.
    pub fn as_str(self) -> &'static str {
        match self {
            Segment::Dormant => "DORMANT",
            Segment::AtRisk => "AT_RISK",
            Segment::Vip => "VIP",
            Segment::Active => "ACTIVE",
        }
    }
}

impl std::fmt::Display for Segment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The thresholds a model was trained with.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Thresholds {
    /// Days without an order after which a customer is dormant.
    pub dormant_after_days: f64,
    /// Churn probability above which a customer is at risk.
    pub at_risk_probability: f64,
    /// Lifetime value at or above which a customer is a VIP.
    pub vip_ltv_cutoff: f64,
    /// Expected lifetime in years (the lifetime value's third factor).
    pub lifetime_years: f64,
}

/// The segment of a customer (see the module docs for the order).
pub fn classify(
    days_inactive: f64,
    churn_probability: f64,
    ltv: f64,
    thresholds: &Thresholds,
) -> Segment {
    if days_inactive >= thresholds.dormant_after_days {
        Segment::Dormant
    } else if churn_probability > thresholds.at_risk_probability {
        Segment::AtRisk
    } else if ltv > 0.0 && ltv >= thresholds.vip_ltv_cutoff {
        Segment::Vip
    } else {
        Segment::Active
    }
}

/// The VIP cutoff: the lowest lifetime value among the top `fraction` of
/// `ltvs` (at least one customer when `fraction` is above 0), or
/// `absolute` when that is lower. Infinite when no customer qualifies.
pub fn vip_cutoff(ltvs: &[f64], fraction: f64, absolute: f64) -> f64 {
    let mut sorted: Vec<f64> = ltvs.iter().copied().filter(|v| *v > 0.0).collect();
    sorted.sort_by(|a, b| b.total_cmp(a));
    let top = (ltvs.len() as f64 * fraction).ceil() as usize;
    let relative = if top == 0 || sorted.is_empty() {
        f64::INFINITY
    } else {
        sorted[top.min(sorted.len()) - 1]
    };
    relative.min(absolute)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Thresholds = Thresholds {
        dormant_after_days: 90.0,
        at_risk_probability: 0.6,
        vip_ltv_cutoff: 1000.0,
        lifetime_years: 3.0,
    };

    #[test]
    fn precedence() {
        assert_eq!(classify(120.0, 0.9, 5000.0, &T), Segment::Dormant);
        assert_eq!(classify(10.0, 0.9, 5000.0, &T), Segment::AtRisk);
        assert_eq!(classify(10.0, 0.1, 5000.0, &T), Segment::Vip);
        assert_eq!(classify(10.0, 0.1, 10.0, &T), Segment::Active);
    }

    #[test]
    fn the_cutoff_keeps_the_top_fraction() {
        let ltvs: Vec<f64> = (1..=20).map(f64::from).collect();
        assert_eq!(vip_cutoff(&ltvs, 0.1, f64::INFINITY), 19.0);
        assert_eq!(vip_cutoff(&ltvs, 0.1, 5.0), 5.0);
        assert_eq!(vip_cutoff(&[0.0, 0.0], 0.5, f64::INFINITY), f64::INFINITY);
    }
}
