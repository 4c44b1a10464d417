//! The layers around a [`DocumentStore`] (see [`super`] for their order).
//! Reads, index and collection management, replacements and deletes of
//! every match are repeated after a transient failure: repeating one leaves
//! the data as one run would, though a repetition after an answer was lost
//! reports fewer documents changed than were. Inserts, updates (an `$inc`
//! must not run twice) and single deletes are not repeated.

use std::sync::Arc;

use async_trait::async_trait;
use bson::{Bson, Document};

use super::Layers;
use crate::engines::document::{
    CollectionOptions, DocumentStore, FindOptions, IndexSpec, UpdateOptions, UpdateResult,
};
use crate::error::Result;

/// A document store behind the layers.
#[derive(Debug)]
pub struct LayeredDocuments {
    inner: Arc<dyn DocumentStore>,
    layers: Arc<Layers>,
}

/// Wraps `inner` in `layers`.
pub fn wrap(inner: Arc<dyn DocumentStore>, layers: Arc<Layers>) -> Arc<dyn DocumentStore> {
    Arc::new(LayeredDocuments { inner, layers })
}

#[async_trait]
impl DocumentStore for LayeredDocuments {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }

    fn target(&self) -> String {
        self.inner.target()
    }

    async fn ping(&self) -> Result<()> {
        self.layers.call("ping", true, || self.inner.ping()).await
    }

    async fn create_collection(&self, collection: &str, options: CollectionOptions) -> Result<()> {
        self.layers
            .call("create_collection", true, || {
                self.inner.create_collection(collection, options.clone())
            })
            .await
    }

    async fn list_collections(&self) -> Result<Vec<String>> {
        self.layers
            .call("list_collections", true, || self.inner.list_collections())
            .await
    }

    async fn drop_collection(&self, collection: &str) -> Result<()> {
        self.layers
            .call("drop_collection", true, || {
                self.inner.drop_collection(collection)
            })
            .await
    }

    async fn drop_database(&self) -> Result<()> {
        self.layers
            .call("drop_database", true, || self.inner.drop_database())
            .await
    }

    async fn insert_many(&self, collection: &str, documents: Vec<Document>) -> Result<Vec<Bson>> {
        let mut once = Some(documents);
        self.layers
            .call("insert_many", false, || {
                self.inner
                    .insert_many(collection, once.take().unwrap_or_default())
            })
            .await
    }

    async fn find(
        &self,
        collection: &str,
        filter: Document,
        options: FindOptions,
    ) -> Result<Vec<Document>> {
        self.layers
            .call("find", true, || {
                self.inner.find(collection, filter.clone(), options.clone())
            })
            .await
    }

    async fn count(&self, collection: &str, filter: Document) -> Result<u64> {
        self.layers
            .call("count", true, || {
                self.inner.count(collection, filter.clone())
            })
            .await
    }

    async fn update(
        &self,
        collection: &str,
        filter: Document,
        update: Document,
        options: UpdateOptions,
    ) -> Result<UpdateResult> {
        let mut once = Some((filter, update));
        self.layers
            .call("update", false, || {
                let (filter, update) = once.take().unwrap_or_default();
                self.inner.update(collection, filter, update, options)
            })
            .await
    }

    async fn replace_one(
        &self,
        collection: &str,
        filter: Document,
        replacement: Document,
        upsert: bool,
    ) -> Result<UpdateResult> {
        self.layers
            .call("replace_one", true, || {
                self.inner
                    .replace_one(collection, filter.clone(), replacement.clone(), upsert)
            })
            .await
    }

    async fn delete(&self, collection: &str, filter: Document, multi: bool) -> Result<u64> {
        // Deleting every match again deletes nothing more; deleting "the
        // first" match again could delete a second document.
        self.layers
            .call("delete", multi, || {
                self.inner.delete(collection, filter.clone(), multi)
            })
            .await
    }

    async fn aggregate(&self, collection: &str, pipeline: Vec<Document>) -> Result<Vec<Document>> {
        self.layers
            .call("aggregate", true, || {
                self.inner.aggregate(collection, pipeline.clone())
            })
            .await
    }

    async fn create_index(&self, collection: &str, index: IndexSpec) -> Result<String> {
        self.layers
            .call("create_index", true, || {
                self.inner.create_index(collection, index.clone())
            })
            .await
    }

    async fn list_indexes(&self, collection: &str) -> Result<Vec<IndexSpec>> {
        self.layers
            .call("list_indexes", true, || self.inner.list_indexes(collection))
            .await
    }

    async fn drop_index(&self, collection: &str, name: &str) -> Result<()> {
        self.layers
            .call("drop_index", true, || {
                self.inner.drop_index(collection, name)
            })
            .await
    }
}
