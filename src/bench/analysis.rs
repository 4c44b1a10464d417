//! (to be written)
#![allow(missing_docs, dead_code, unused_variables)]
use super::model::BenchRun;
pub fn analysis_markdown(runs: &[BenchRun], source_files: &[String]) -> String {
    String::new()
}
pub fn explain(config: &crate::config::Config, run: Option<&BenchRun>) -> String {
    String::new()
}
