//! The closing table: which data lives in which engine, and why
//! (`platform::routes`, shared with `strata explain`).

use super::Out;
use crate::cli::output;
use crate::error::Result;
use crate::platform::routes;

pub(super) fn section(out: &mut Out<'_>) -> Result<()> {
    out.line("")?;
    out.line("Where the data lives")?;
    out.line("====================")?;
    let mut table = output::table(&["data", "engine", "why"]);
    for route in routes::demo_routes() {
        table.add_row(vec![route.data, route.engine.as_str(), route.why]);
    }
    out.table(table)
}
