//! `strata analytics`: the customer analytics report, and training the
//! model the pipelines score with.

use std::process::ExitCode;

use clap::Subcommand;
use serde_json::json;

use super::output;
use crate::analytics::Analytics;
use crate::config::Config;
use crate::error::Result;
use crate::platform::Platform;

/// Subcommands of `strata analytics`.
#[derive(Debug, Subcommand)]
pub(crate) enum AnalyticsCommand {
    /// Trains every model from the stored orders (as of the latest order,
    /// so the same data gives the same report), stores the model as the
    /// document `analytics_models/current`, and prints the report:
    /// segments, revenue by segment and by country, churn AUC beside
    /// recency alone, precision@10 beside popularity. It always retrains.
    /// Fails (exit 1, not found) when there is no order yet: seed with
    /// `strata seed --users N --events M`.
    Report,
    /// Trains and stores the model, like `report`, and prints a summary.
    Train,
}

pub(crate) async fn run(
    config: &Config,
    command: AnalyticsCommand,
    json: bool,
) -> Result<ExitCode> {
    let platform = Platform::open(config).await?;
    let analytics = Analytics::new(&platform, config.analytics);
    let trained = analytics.train().await?;
    let report = &trained.report;
    match (command, json) {
        (AnalyticsCommand::Report, true) => output::print_json(
            &serde_json::to_value(report)
                .map_err(|e| crate::error::Error::internal(format!("cannot render JSON: {e}")))?,
        )?,
        (AnalyticsCommand::Report, false) => print!("{}", report.render()),
        (AnalyticsCommand::Train, true) => output::print_json(&json!({
            "as_of": trained.model.as_of,
            "trained_at": trained.model.trained_at,
            "users": report.users,
            "orders": report.orders,
            "churn_auc": report.churn.auc,
            "recency_auc": report.churn.recency_auc,
            "precision_at_10": report.recommendations.precision,
            "popularity_precision_at_10": report.recommendations.popularity_precision,
        }))?,
        (AnalyticsCommand::Train, false) => println!(
            "model stored (analytics_models/current), as of {}: {} users, {} orders; \
             churn AUC {} (recency alone {}); precision@10 {:.3} (popularity {:.3})",
            trained.model.as_of.to_rfc3339(),
            report.users,
            report.orders,
            report.churn.auc.map_or("n/a".into(), |a| format!("{a:.3}")),
            report
                .churn
                .recency_auc
                .map_or("n/a".into(), |a| format!("{a:.3}")),
            report.recommendations.precision,
            report.recommendations.popularity_precision,
        ),
    }
    Ok(ExitCode::SUCCESS)
}
