//! Aggregation pipelines.

use bson::Document;

use crate::error::{Error, Result};

/// A parsed, validated pipeline.
#[derive(Debug, Clone, PartialEq)]
pub struct Pipeline {
    _private: (),
}

impl Pipeline {
    /// Parses the stages; `Unsupported` names an unknown stage, accumulator
    /// or expression operator.
    pub fn parse(stages: &[Document]) -> Result<Pipeline> {
        let _ = stages;
        Err(Error::unsupported("aggregation"))
    }

    /// Collections that `$lookup` stages read, so the store can load them.
    pub fn foreign_collections(&self) -> Vec<String> {
        Vec::new()
    }

    /// Runs the pipeline over `input`. `collection` returns the documents of
    /// a collection named by `$lookup` (empty when it does not exist).
    pub fn run(
        &self,
        input: Vec<Document>,
        collection: &mut dyn FnMut(&str) -> Result<Vec<Document>>,
    ) -> Result<Vec<Document>> {
        let _ = (input, collection);
        Err(Error::unsupported("aggregation"))
    }
}
