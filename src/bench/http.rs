//! (to be written)
#![allow(
    missing_docs,
    missing_debug_implementations,
    dead_code,
    unused_variables
)]
use crate::error::{Error, Result};
pub struct Server {
    address: String,
}
pub struct Fixture;
impl Server {
    pub async fn start(
        exe: &std::path::Path,
        args: &[std::ffi::OsString],
        envs: &[(String, String)],
    ) -> Result<Server> {
        Err(Error::internal("x"))
    }
    pub fn address(&self) -> &str {
        &self.address
    }
    pub async fn stop(self) -> Option<String> {
        None
    }
}
pub async fn prepare(address: &str, entities: usize) -> Result<Fixture> {
    Err(Error::internal("x"))
}
pub fn subjects(address: &str, fixture: &Fixture) -> Vec<crate::bench::Subject> {
    Vec::new()
}
