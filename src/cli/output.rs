//! Printing: tables for people, JSON for programs.

use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{ContentArrangement, Table};

use crate::error::{Error, Result};

/// A table with a header row, laid out for the terminal.
pub(crate) fn table(header: &[&str]) -> Table {
    let mut table = Table::new();
    table
        .load_preset(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(header.iter().copied());
    table
}

/// Prints a JSON value, pretty.
pub(crate) fn print_json(value: &serde_json::Value) -> Result<()> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| Error::internal(format!("cannot render JSON: {e}")))?;
    println!("{text}");
    Ok(())
}

/// A progress bar counting runs, on standard error, and hidden unless
/// `wanted` and standard error is a terminal, so logs and pipes get no
/// control characters.
pub(crate) fn progress_bar(total: u64, wanted: bool) -> indicatif::ProgressBar {
    progress_bar_of(total, wanted, "runs")
}

/// [`progress_bar`] counting `unit`s (e.g. `events`).
pub(crate) fn progress_bar_of(total: u64, wanted: bool, unit: &str) -> indicatif::ProgressBar {
    if !(wanted && std::io::IsTerminal::is_terminal(&std::io::stderr())) {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(total);
    // The template is a constant; should it ever fail to parse, the default
    // style is still a usable bar.
    if let Ok(style) = indicatif::ProgressStyle::with_template(&format!(
        "{{bar:30}} {{pos}}/{{len}} {unit}, {{elapsed}}"
    )) {
        bar.set_style(style);
    }
    bar
}
