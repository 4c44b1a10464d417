//! (to be written)

/// Options of a bench run.
#[derive(Debug, Clone, Default)]
pub struct Options {}

/// Runs the bench.
pub async fn run(_options: &Options) -> crate::error::Result<()> {
    Ok(())
}
