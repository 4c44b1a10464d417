//! Section 7: run search, the filter language compiled to SQL conditions.

use super::{Out, f4};
use crate::cli::output;
use crate::error::{Error, Result};
use crate::platform::Platform;

pub(super) async fn section(platform: &Platform, out: &mut Out<'_>) -> Result<()> {
    let started = out.section(
        7,
        "Run search: a filter language compiled to SQL conditions",
        "Parsed into an AST and compiled to bound parameters (never string-built SQL); \
         the same answers on SQLite and PostgreSQL. GET /v1/runs?filter=... serves it.",
    )?;
    for (filter, order_by) in [
        (
            "framework IN ('pytorch') OR accuracy > 0.95",
            "accuracy DESC, model_id",
        ),
        (
            "dataset = 'fraud-train-v1' AND NOT status = 'failed'",
            "model_id",
        ),
        (
            "tags.team = 'risk' AND model_name LIKE 'fraud%'",
            "started_at",
        ),
    ] {
        out.step(&format!("filter: {filter}   order_by: {order_by}"))?;
        let page = platform
            .registry()
            .search_runs(filter, order_by, 10, None)
            .await?;
        let mut table = output::table(&[
            "model_id",
            "framework",
            "status",
            "accuracy",
            "dataset",
            "tags",
        ]);
        for hit in page.runs {
            table.add_row(vec![
                hit.run.model_id,
                hit.run.framework,
                hit.run.status.to_string(),
                f4(hit.run.accuracy),
                hit.dataset,
                hit.tags
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(" "),
            ]);
        }
        out.table(table)?;
        if page.next_page_token.is_some() {
            out.line("more runs follow: pass next_page_token as page_token")?;
        }
    }
    out.step("A malformed filter is refused, naming the position")?;
    let bad = "accuracy > AND framework = 'jax'";
    match platform.registry().search_runs(bad, "", 10, None).await {
        Ok(_) => {
            return Err(Error::internal(format!(
                "the malformed filter `{bad}` was accepted"
            )));
        }
        Err(e) => out.line(format!("filter: {bad}\nerror: {} ({})", e, e.kind()))?,
    }
    out.took(started)
}
