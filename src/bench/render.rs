//! (to be written)
#![allow(
    missing_docs,
    missing_debug_implementations,
    dead_code,
    unused_variables
)]
use super::model::BenchRun;
use crate::error::Result;
pub fn table(run: &BenchRun) -> String {
    String::new()
}
pub fn markdown(run: &BenchRun) -> String {
    String::new()
}
pub fn chart_svg(run: &BenchRun) -> Result<String> {
    Ok(String::new())
}
pub struct CompareReport;
impl CompareReport {
    pub fn render(&self) -> String {
        String::new()
    }
    pub fn regressions(&self) -> usize {
        0
    }
}
pub fn compare(old: &BenchRun, new: &BenchRun, threshold: f64) -> CompareReport {
    CompareReport
}
