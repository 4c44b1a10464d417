//! Lifetime value:
//!
//! ```text
//! LTV = average order value × purchase frequency × expected lifetime
//!     = (revenue / orders) × (orders / tenure in years) × lifetime_years
//! ```
//!
//! where the tenure runs from sign-up to the analytics' `as_of` instant
//! (at least 30 days, so that a customer who signed up yesterday and
//! bought once is not projected at 365 orders a year) and
//! `lifetime_years` is `analytics.lifetime_years`. A customer without
//! orders is worth 0.

/// Shortest tenure the frequency is computed over, in days.
pub const MIN_TENURE_DAYS: f64 = 30.0;

/// Days in a year.
const YEAR_DAYS: f64 = 365.25;

/// The lifetime value (see the module docs).
pub fn lifetime_value(revenue: f64, orders: i64, tenure_days: f64, lifetime_years: f64) -> f64 {
    if orders <= 0 {
        return 0.0;
    }
    let average_order = revenue / orders as f64;
    let tenure_years = tenure_days.max(MIN_TENURE_DAYS) / YEAR_DAYS;
    let per_year = orders as f64 / tenure_years;
    average_order * per_year * lifetime_years
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_formula() {
        // 4 orders of 25 over half a year: 8 orders a year, 200 a year, 600
        // over 3 years.
        let v = lifetime_value(100.0, 4, YEAR_DAYS / 2.0, 3.0);
        assert!((v - 600.0).abs() < 1e-9, "{v}");
        assert_eq!(lifetime_value(0.0, 0, 100.0, 3.0), 0.0);
        // A one-day tenure counts as 30 days.
        assert_eq!(
            lifetime_value(10.0, 1, 1.0, 1.0),
            lifetime_value(10.0, 1, MIN_TENURE_DAYS, 1.0)
        );
    }

    proptest! {
        #[test]
        fn scales_with_revenue_and_lifetime(
            revenue in 0.0f64..1e6, orders in 1i64..1000, tenure in 1.0f64..2000.0, years in 0.1f64..10.0
        ) {
            let v = lifetime_value(revenue, orders, tenure, years);
            prop_assert!(v >= 0.0);
            let doubled = lifetime_value(revenue * 2.0, orders, tenure, years * 2.0);
            prop_assert!((doubled - 4.0 * v).abs() <= 1e-9 * (1.0 + v.abs()));
        }
    }
}
