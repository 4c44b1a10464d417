//! (to be written)
#![allow(missing_docs, dead_code, unused_variables)]
use super::model::{Comparison, ToolVersion};
use crate::error::{Error, Result};
use std::sync::Arc;
use std::time::Duration;
pub fn tool_versions() -> Vec<ToolVersion> {
    Vec::new()
}
pub async fn redis_get(
    kv: Arc<dyn crate::engines::KvStore>,
    redis: &crate::config::RedisConfig,
    clients: usize,
    rounds: usize,
    phase: Duration,
) -> Result<Comparison> {
    Err(Error::internal("x"))
}
pub async fn pgbench_select(
    db: &sea_orm::DatabaseConnection,
    url: &str,
    password: Option<&str>,
    clients: usize,
    rounds: usize,
    phase: Duration,
) -> Result<Comparison> {
    Err(Error::internal("x"))
}
