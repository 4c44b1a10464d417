//! The analytics report: what the data holds and how well each model does
//! against its baseline, as a table for people and as JSON.

use chrono::{DateTime, Utc};
use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{ContentArrangement, Table};
use serde::{Deserialize, Serialize};

use super::segments::Segment;
use crate::platform::customers::CountryRevenue;

/// Customers and revenue of one segment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SegmentLine {
    /// The segment.
    pub segment: Segment,
    /// Customers in it.
    pub users: i64,
    /// Their revenue up to `as_of`.
    pub revenue: f64,
}

/// How the churn model ranks held-out customers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ChurnEvaluation {
    /// The instant the features are computed at: `as_of - churn_window`.
    pub cutoff: DateTime<Utc>,
    /// The label window after the cutoff, in days.
    pub window_days: f64,
    /// Customers trained on.
    pub train_users: i64,
    /// Held-out customers evaluated on.
    pub test_users: i64,
    /// Share of held-out customers who churned.
    pub test_churn_rate: f64,
    /// AUC of the model on the held-out customers (`None` without both
    /// churned and retained ones).
    pub auc: Option<f64>,
    /// AUC of recency alone (days since the last order) on the same
    /// customers.
    pub recency_auc: Option<f64>,
    /// The model's intercept then weights, on standardized features.
    pub weights: Vec<f64>,
}

/// How the recommendations find held-out purchases.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RecommendationEvaluation {
    /// Recommendations per customer.
    pub k: i64,
    /// Customers evaluated: those whose last purchase was a product they
    /// had not bought before.
    pub users: i64,
    /// Mean precision@k of co-purchase recommendations.
    pub precision: f64,
    /// Mean precision@k of the most popular products (bought ones left
    /// out), the baseline.
    pub popularity_precision: f64,
}

/// The analytics report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AnalyticsReport {
    /// The instant the analytics describe: the latest order's time.
    pub as_of: DateTime<Utc>,
    /// Customers who signed up by `as_of`.
    pub users: i64,
    /// Orders up to `as_of`.
    pub orders: i64,
    /// Revenue of those orders.
    pub revenue: f64,
    /// Customers per segment, in precedence order (every segment, also
    /// empty ones).
    pub segments: Vec<SegmentLine>,
    /// Revenue by country, by country code.
    pub countries: Vec<CountryRevenue>,
    /// The churn model against recency alone.
    pub churn: ChurnEvaluation,
    /// Co-purchases against popularity.
    pub recommendations: RecommendationEvaluation,
}

fn table(header: &[&str]) -> Table {
    let mut table = Table::new();
    // No terminal-dependent layout: the same text everywhere.
    table
        .load_preset(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header(header.iter().copied());
    table
}

fn opt(value: Option<f64>) -> String {
    value.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.3}"))
}

impl AnalyticsReport {
    /// The report as tables for people: money to cents, rates and scores
    /// to 3 decimals.
    pub fn render(&self) -> String {
        let mut out = format!(
            "as of {}: {} users, {} orders, revenue {:.2}\n",
            self.as_of
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            self.users,
            self.orders,
            self.revenue
        );
        let mut segments = table(&["segment", "users", "revenue"]);
        for line in &self.segments {
            segments.add_row(vec![
                line.segment.to_string(),
                line.users.to_string(),
                format!("{:.2}", line.revenue),
            ]);
        }
        out.push_str(&format!("{segments}\n"));
        let mut countries = table(&["country", "customers", "orders", "revenue"]);
        for c in &self.countries {
            countries.add_row(vec![
                format!("{} {}", c.country_code, c.country),
                c.customers.to_string(),
                c.orders.to_string(),
                format!("{:.2}", c.revenue),
            ]);
        }
        out.push_str(&format!("{countries}\n"));
        let churn = &self.churn;
        let mut models = table(&["model", "metric", "value", "baseline", "baseline value"]);
        models.add_row(vec![
            "churn (logistic RFM)".to_owned(),
            "AUC".to_owned(),
            opt(churn.auc),
            "recency only".to_owned(),
            opt(churn.recency_auc),
        ]);
        let recs = &self.recommendations;
        models.add_row(vec![
            "recommendations (co-purchase)".to_owned(),
            format!("precision@{}", recs.k),
            format!("{:.3}", recs.precision),
            "popularity".to_owned(),
            format!("{:.3}", recs.popularity_precision),
        ]);
        out.push_str(&format!("{models}\n"));
        out.push_str(&format!(
            "churn: cutoff {}, window {:.0} days, {} users trained, {} held out (churn rate {:.3})\n\
             recommendations: {} users evaluated on their last purchase\n",
            churn
                .cutoff
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            churn.window_days,
            churn.train_users,
            churn.test_users,
            churn.test_churn_rate,
            recs.users,
        ));
        out
    }

    /// The report with every float rounded to `decimals` places, for
    /// comparisons across backends (whose sums may differ in the last
    /// bits).
    pub fn rounded(&self, decimals: i32) -> AnalyticsReport {
        let f = 10f64.powi(decimals);
        let r = |v: f64| (v * f).round() / f;
        let mut out = self.clone();
        out.revenue = r(out.revenue);
        for s in &mut out.segments {
            s.revenue = r(s.revenue);
        }
        for c in &mut out.countries {
            c.revenue = r(c.revenue);
        }
        out.churn.test_churn_rate = r(out.churn.test_churn_rate);
        out.churn.auc = out.churn.auc.map(r);
        out.churn.recency_auc = out.churn.recency_auc.map(r);
        out.churn.weights = out.churn.weights.iter().map(|w| r(*w)).collect();
        out.recommendations.precision = r(out.recommendations.precision);
        out.recommendations.popularity_precision = r(out.recommendations.popularity_precision);
        out
    }
}
