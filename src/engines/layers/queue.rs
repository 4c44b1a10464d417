//! The layers around a [`Broker`] (see [`super`] for their order).
//! Declarations, deletions, bindings and queue inspection are repeated
//! after a transient failure; a publish, a purge, a consume and a get are
//! not (each would act twice).

use std::sync::Arc;

use async_trait::async_trait;

use super::Layers;
use crate::engines::queue::{
    Broker, ConsumeOptions, Consumer, Delivery, ExchangeKind, ExchangeOptions, FieldTable, Message,
    Outgoing, Published, QueueInfo, QueueOptions,
};
use crate::error::Result;

/// A broker behind the layers.
#[derive(Debug)]
pub struct LayeredBroker {
    inner: Arc<dyn Broker>,
    layers: Arc<Layers>,
}

/// Wraps `inner` in `layers`.
pub fn wrap(inner: Arc<dyn Broker>, layers: Arc<Layers>) -> Arc<dyn Broker> {
    Arc::new(LayeredBroker { inner, layers })
}

#[async_trait]
impl Broker for LayeredBroker {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }

    fn target(&self) -> String {
        self.inner.target()
    }

    async fn ping(&self) -> Result<()> {
        self.layers.call("ping", true, || self.inner.ping()).await
    }

    async fn declare_exchange(
        &self,
        name: &str,
        kind: ExchangeKind,
        options: ExchangeOptions,
    ) -> Result<()> {
        self.layers
            .call("declare_exchange", true, || {
                self.inner.declare_exchange(name, kind, options)
            })
            .await
    }

    async fn delete_exchange(&self, name: &str) -> Result<()> {
        self.layers
            .call("delete_exchange", true, || self.inner.delete_exchange(name))
            .await
    }

    async fn declare_queue(&self, name: &str, options: QueueOptions) -> Result<QueueInfo> {
        self.layers
            .call("declare_queue", true, || {
                self.inner.declare_queue(name, options.clone())
            })
            .await
    }

    async fn delete_queue(&self, name: &str) -> Result<()> {
        self.layers
            .call("delete_queue", true, || self.inner.delete_queue(name))
            .await
    }

    async fn purge_queue(&self, name: &str) -> Result<u64> {
        self.layers
            .call("purge_queue", false, || self.inner.purge_queue(name))
            .await
    }

    async fn queue_info(&self, name: &str) -> Result<QueueInfo> {
        self.layers
            .call("queue_info", true, || self.inner.queue_info(name))
            .await
    }

    async fn bind_queue(
        &self,
        queue: &str,
        exchange: &str,
        routing_key: &str,
        arguments: FieldTable,
    ) -> Result<()> {
        self.layers
            .call("bind_queue", true, || {
                self.inner
                    .bind_queue(queue, exchange, routing_key, arguments.clone())
            })
            .await
    }

    async fn unbind_queue(
        &self,
        queue: &str,
        exchange: &str,
        routing_key: &str,
        arguments: FieldTable,
    ) -> Result<()> {
        self.layers
            .call("unbind_queue", true, || {
                self.inner
                    .unbind_queue(queue, exchange, routing_key, arguments.clone())
            })
            .await
    }

    async fn publish(
        &self,
        exchange: &str,
        routing_key: &str,
        message: Message,
    ) -> Result<Published> {
        let mut once = Some(message);
        self.layers
            .call("publish", false, || {
                self.inner.publish(
                    exchange,
                    routing_key,
                    once.take().unwrap_or_else(|| Message::new(Vec::new())),
                )
            })
            .await
    }

    async fn publish_batch(&self, batch: Vec<Outgoing>) -> Vec<Result<Published>> {
        // Not retried as a whole (a retry could enqueue some twice); a
        // failure is the failing message's own.
        self.inner.publish_batch(batch).await
    }

    async fn consume(&self, queue: &str, options: ConsumeOptions) -> Result<Consumer> {
        self.layers
            .call("consume", false, || {
                self.inner.consume(queue, options.clone())
            })
            .await
    }

    async fn get(&self, queue: &str) -> Result<Option<Delivery>> {
        self.layers
            .call("get", false, || self.inner.get(queue))
            .await
    }
}
