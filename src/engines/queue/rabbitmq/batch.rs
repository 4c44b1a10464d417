//! [`Broker::publish_batch`](super::Broker::publish_batch) on RabbitMQ: many
//! publisher confirms in flight on one channel.
//!
//! # What holds
//!
//! - A message whose exchange name, routing key or properties do not convert
//!   fails alone with `InvalidInput` and is not sent.
//! - Each named exchange of the batch is checked first with a passive
//!   declaration (one round trip per distinct exchange, on a plain channel of
//!   its own). Messages for an exchange that does not exist fail with
//!   `NotFound` without being sent, so they cannot close the publishing
//!   channel under the others: a batch mixing existing and missing exchanges
//!   answers as the embedded broker does.
//! - The rest is sent on one confirm channel taken from the pool (held alone,
//!   as for `publish`), every message with `mandatory` set and without
//!   waiting, and then every confirm is awaited at once. An ack is
//!   `Published`, a `basic.nack` that message's `Unavailable` error (it was
//!   not enqueued).
//! - `routed: false` comes from the `basic.return`s the broker sent during
//!   the batch. lapin hands a return to whichever confirm completes next, which
//!   with many confirms in flight (and RabbitMQ's `multiple` acks) need not be
//!   the returned message's own; so each return is matched to the message it
//!   carries back: same exchange, routing key and body, preferring equal
//!   properties. Identical messages are interchangeable, so only a topology
//!   change in the middle of a batch (a binding removed) can make which of
//!   two identical messages is reported unrouted arbitrary; how many is
//!   always right.
//! - When the channel closes during the batch (an exchange deleted after the
//!   check, or the connection lost), every message not yet confirmed fails:
//!   with `NotFound` if the broker named its exchange as missing, else with
//!   `Unavailable`, and it may or may not have been enqueued. Nothing is
//!   retried, since that could enqueue a message twice. The channel goes back
//!   to the pool only if it is still open.

use std::collections::BTreeMap;

use bytes::Bytes;
use lapin::options::{BasicPublishOptions, ExchangeDeclareOptions};
use lapin::types::{FieldTable as AmqpTable, ShortString};
use lapin::{BasicProperties, Confirmation, ExchangeKind as AmqpExchangeKind};

use super::connection::Mode;
use super::{RabbitBroker, convert, error};
use crate::engines::queue::{Outgoing, Published};
use crate::error::{Error, ErrorKind, Result};

const OP: &str = "publish_batch";

/// One message of the batch in the driver's form.
struct Prepared {
    /// Its index in the batch.
    index: usize,
    exchange: ShortString,
    routing_key: ShortString,
    body: Bytes,
    properties: BasicProperties,
}

impl RabbitBroker {
    /// The work of [`Broker::publish_batch`](super::Broker::publish_batch);
    /// see the module documentation.
    pub(super) async fn publish_many(&self, batch: Vec<Outgoing>) -> Vec<Result<Published>> {
        let mut results: Vec<Option<Result<Published>>> = Vec::new();
        results.resize_with(batch.len(), || None);
        let mut ready = Vec::with_capacity(batch.len());
        for (index, item) in batch.into_iter().enumerate() {
            match self.prepare(index, item) {
                Ok(prepared) => ready.push(prepared),
                Err(e) => results[index] = Some(Err(e)),
            }
        }

        let absent = self.check_exchanges(&ready).await;
        ready.retain(|p| match absent.get(p.exchange.as_str()) {
            Some(e) => {
                results[p.index] = Some(Err(self.copy(e)));
                false
            }
            None => true,
        });

        if !ready.is_empty() {
            self.send_and_confirm(&ready, &mut results).await;
        }
        results
            .into_iter()
            .map(|result| {
                result.unwrap_or_else(|| {
                    Err(
                        Error::internal("rabbitmq: a message of the batch got no outcome")
                            .with_operation(OP)
                            .with_target(self.connector.target()),
                    )
                })
            })
            .collect()
    }

    fn prepare(&self, index: usize, item: Outgoing) -> Result<Prepared> {
        let exchange = self.name(&item.exchange, "exchange", OP)?;
        let routing_key = self.name(&item.routing_key, "routing_key", OP)?;
        let properties = convert::to_basic_properties(&item.message.properties)
            .map_err(|e| e.with_operation(OP).with_target(self.connector.target()))?;
        Ok(Prepared {
            index,
            exchange,
            routing_key,
            body: item.message.body,
            properties,
        })
    }

    /// The named exchanges of `ready` that cannot be published to, each with
    /// its error (`NotFound` when it does not exist).
    async fn check_exchanges(&self, ready: &[Prepared]) -> BTreeMap<String, Error> {
        let mut names: Vec<&ShortString> = ready
            .iter()
            .map(|p| &p.exchange)
            .filter(|name| !name.as_str().is_empty())
            .collect();
        names.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        names.dedup_by(|a, b| a.as_str() == b.as_str());
        let passive = ExchangeDeclareOptions {
            passive: true,
            ..ExchangeDeclareOptions::default()
        };
        let mut absent = BTreeMap::new();
        for name in names {
            // A passive declaration ignores the kind; a missing exchange
            // closes this plain channel, which is then not pooled.
            let checked = self
                .on_channel(OP, |channel| {
                    let name = name.clone();
                    async move {
                        channel
                            .exchange_declare(
                                name,
                                AmqpExchangeKind::Direct,
                                passive,
                                AmqpTable::default(),
                            )
                            .await
                    }
                })
                .await;
            if let Err(e) = checked {
                absent.insert(name.as_str().to_owned(), e);
            }
        }
        absent
    }

    /// Sends `ready` on one confirm channel, then awaits every confirm, and
    /// fills their results.
    async fn send_and_confirm(
        &self,
        ready: &[Prepared],
        results: &mut [Option<Result<Published>>],
    ) {
        // Only taking the channel is retried: once a message is sent, a
        // retry could enqueue it twice.
        let taken = self
            .with_link(OP, |link| async move {
                let channel = link.take(Mode::Confirm).await?;
                Ok((link, channel))
            })
            .await;
        let (link, channel) = match taken {
            Ok(taken) => taken,
            Err(e) => {
                for p in ready {
                    results[p.index] = Some(Err(self.copy(&e)));
                }
                return;
            }
        };
        let options = BasicPublishOptions {
            mandatory: true,
            immediate: false,
        };
        // Each send waits only for lapin to take the frames, not for the
        // broker; the confirms are awaited together below.
        let mut sent = Vec::with_capacity(ready.len());
        for p in ready {
            sent.push(
                channel
                    .basic_publish(
                        p.exchange.clone(),
                        p.routing_key.clone(),
                        options,
                        &p.body,
                        p.properties.clone(),
                    )
                    .await,
            );
        }
        let outcomes = futures::future::join_all(sent.into_iter().map(|sent| async move {
            match sent {
                Ok(confirm) => confirm.await,
                Err(e) => Err(e),
            }
        }))
        .await;

        let mut returned = Vec::new();
        for (p, outcome) in ready.iter().zip(outcomes) {
            results[p.index] = Some(match outcome {
                Ok(Confirmation::Ack(back)) => {
                    returned.extend(back);
                    Ok(Published { routed: true })
                }
                Ok(Confirmation::Nack(back)) => {
                    returned.extend(back);
                    Err(Error::new(
                        ErrorKind::Unavailable,
                        "rabbitmq refused the message (basic.nack); it was not enqueued",
                    )
                    .with_operation(OP)
                    .with_target(self.connector.target()))
                }
                Ok(Confirmation::NotRequested) => Err(Error::internal(
                    "rabbitmq: the publishing channel was not in confirm mode",
                )
                .with_operation(OP)
                .with_target(self.connector.target())),
                Err(e) => Err(self.unconfirmed(p, e)),
            });
        }
        for back in returned {
            let delivery = &back.delivery;
            let same = |p: &&Prepared| {
                matches!(results[p.index], Some(Ok(Published { routed: true })))
                    && p.exchange.as_str() == delivery.exchange.as_str()
                    && p.routing_key.as_str() == delivery.routing_key.as_str()
                    && p.body[..] == delivery.data[..]
            };
            let chosen = ready
                .iter()
                .filter(same)
                .find(|p| p.properties == delivery.properties)
                .or_else(|| ready.iter().find(same))
                .map(|p| p.index);
            if let Some(index) = chosen {
                results[index] = Some(Ok(Published { routed: false }));
            }
        }
        // Dropped instead when the broker closed it.
        link.give_back(Mode::Confirm, channel);
    }

    /// The error of a message whose confirm never came: the channel or the
    /// connection closed first.
    fn unconfirmed(&self, p: &Prepared, e: lapin::Error) -> Error {
        let names_this_exchange = error::is_not_found(&e)
            && error::reply_text(&e).is_some_and(|text| {
                text.contains(&format!("no exchange '{}'", p.exchange.as_str()))
            });
        if names_this_exchange {
            return self.map(e, OP);
        }
        Error::new(
            ErrorKind::Unavailable,
            format!(
                "rabbitmq: the publishing channel closed before this message was confirmed \
                 ({e}); it may or may not have been enqueued"
            ),
        )
        .with_operation(OP)
        .with_target(self.connector.target())
        .with_source(e)
    }

    /// The same error again, for each message it applies to.
    fn copy(&self, e: &Error) -> Error {
        let mut copy = Error::new(e.kind(), e.message())
            .with_operation(OP)
            .with_target(self.connector.target());
        if let Some(field) = e.field() {
            copy = copy.with_field(field);
        }
        copy
    }
}
