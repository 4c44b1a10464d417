//! The worker loop: consumes every registered queue, runs each message's
//! handler, and settles the message by the handler's [`Outcome`].
//!
//! For each delivery, in order:
//!
//! 1. A redelivery (the broker gave it out before without an answer: its
//!    handler panicked, or a worker died holding it) counts against
//!    `max_deliveries` in the key-value engine; past it, the message is
//!    dead-lettered as `poison` without running its handler again.
//! 2. A message id processed within `dedupe_window` is acknowledged and
//!    skipped.
//! 3. The handler runs in its own task, bounded by `handler_timeout`.
//! 4. `Done`: the id is remembered, then the message acknowledged.
//!    `Retry`: unless that was the last attempt, a copy with the attempt
//!    count and history goes to a delay queue of the broker (see
//!    [`super::topology`]) and the original is acknowledged.
//!    `Abort`, or a retry after the last attempt: a copy with the error, its
//!    class, the attempt count and the history goes to the dead-letter
//!    exchange, and the original is acknowledged. Each copy is confirmed by
//!    the broker before the original is acknowledged, so a crash in
//!    between delivers the original again rather than losing it.
//!
//! A second loop per queue moves the dead letters into the document
//! engine ([`super::dead_letters`]).
//!
//! Stopping (the shutdown token) stops taking deliveries, lets the handlers
//! running finish and settle their messages (for at most
//! `shutdown_grace`), then returns; what the worker had taken but not
//! started goes back to the queue.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::engines::KvStoreExt;
use crate::engines::queue::{ConsumeOptions, Delivery, FieldValue, Outgoing};
use crate::error::{Error, ErrorKind, Result};
use crate::retry::RetryPolicy;

use super::Pipelines;
use super::config::PipelinesConfig;
use super::envelope::{self, Attempt, Task};
use super::topology::QueueSpec;

/// What a handler made of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Done: acknowledge it.
    Done,
    /// Failed, may succeed later: retry after `after`, or after the
    /// queue's backoff when `None`, but not before `not_before`.
    Retry {
        /// The wait before the next attempt (capped at the policy's
        /// `max_delay`).
        after: Option<Duration>,
        /// The least wait before the next attempt, whatever the backoff
        /// says: an engine's circuit that stays open this long (capped at
        /// the policy's `max_delay`). Attempts spent against an open
        /// circuit would only run the message out of attempts.
        not_before: Option<Duration>,
        /// What went wrong.
        error: String,
    },
    /// Failed for good: dead-letter it now, never retry.
    Abort {
        /// The class of the error (`invalid`, `aborted`, ...).
        class: String,
        /// What went wrong.
        error: String,
    },
}

impl Outcome {
    /// Retry after the queue's backoff.
    pub fn retry(error: impl std::fmt::Display) -> Self {
        Outcome::Retry {
            after: None,
            not_before: None,
            error: error.to_string(),
        }
    }

    /// Retry after `after`.
    pub fn retry_after(after: Duration, error: impl std::fmt::Display) -> Self {
        Outcome::Retry {
            after: Some(after),
            not_before: None,
            error: error.to_string(),
        }
    }

    /// Never retry: the message's data is wrong.
    pub fn invalid(error: impl std::fmt::Display) -> Self {
        Outcome::Abort {
            class: "invalid".into(),
            error: error.to_string(),
        }
    }

    /// Never retry.
    pub fn abort(error: impl std::fmt::Display) -> Self {
        Outcome::Abort {
            class: "aborted".into(),
            error: error.to_string(),
        }
    }

    /// The outcome of a handler's result: invalid input aborts, anything
    /// else that failed is retried, not before the error's own
    /// `retry_after` (an open circuit's cooldown).
    pub fn of(result: Result<()>) -> Self {
        match result {
            Ok(()) => Outcome::Done,
            Err(e) if e.kind() == ErrorKind::InvalidInput => Outcome::invalid(e),
            Err(e) => Outcome::Retry {
                after: None,
                not_before: e.retry_after(),
                error: e.to_string(),
            },
        }
    }
}

/// A queue's handler.
#[async_trait]
pub trait Handler: Send + Sync + 'static {
    /// Handles one message.
    async fn handle(&self, task: Task) -> Outcome;
}

/// A handler from an async closure.
pub struct HandlerFn<F>(pub F);

impl<F> std::fmt::Debug for HandlerFn<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HandlerFn")
    }
}

#[async_trait]
impl<F, Fut> Handler for HandlerFn<F>
where
    F: Fn(Task) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Outcome> + Send + 'static,
{
    async fn handle(&self, task: Task) -> Outcome {
        (self.0)(task).await
    }
}

/// What a worker has done so far; tests and metrics read it.
#[derive(Debug, Default)]
pub struct WorkerStats {
    /// Handlers that answered `Done`.
    pub done: AtomicU64,
    /// Messages sent back for another attempt.
    pub retried: AtomicU64,
    /// Messages dead-lettered (aborted, exhausted or poison).
    pub dead: AtomicU64,
    /// Of those, poison.
    pub poison: AtomicU64,
    /// Duplicates acknowledged and skipped.
    pub duplicates: AtomicU64,
    /// Handlers that panicked (their message is delivered again).
    pub panics: AtomicU64,
    /// Dead letters moved into the document engine.
    pub recorded: AtomicU64,
    changed: Notify,
}

impl WorkerStats {
    fn bump(&self, counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
        self.changed.notify_waiters();
    }

    /// Reads a counter.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// Waits until `ready` holds of the counters (checked after each
    /// change), or `limit` passes; returns whether it held.
    pub async fn wait_until(&self, limit: Duration, ready: impl Fn(&WorkerStats) -> bool) -> bool {
        tokio::time::timeout(limit, async {
            loop {
                let changed = self.changed.notified();
                if ready(self) {
                    return;
                }
                changed.await;
            }
        })
        .await
        .is_ok()
    }
}

/// Consumes queues and runs their handlers.
pub struct Worker {
    pipelines: Pipelines,
    routes: Vec<(QueueSpec, Arc<dyn Handler>)>,
    concurrency: u16,
    stats: Arc<WorkerStats>,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field(
                "queues",
                &self.routes.iter().map(|(s, _)| &s.name).collect::<Vec<_>>(),
            )
            .field("concurrency", &self.concurrency)
            .finish()
    }
}

impl Worker {
    /// A worker with no queues yet, handling `pipelines.concurrency`
    /// messages at once per queue.
    pub fn new(pipelines: &Pipelines) -> Self {
        Worker {
            concurrency: pipelines.config().concurrency,
            pipelines: pipelines.clone(),
            routes: Vec::new(),
            stats: Arc::new(WorkerStats::default()),
        }
    }

    /// Registers `handler` for the queue `spec`.
    pub fn handle(mut self, spec: QueueSpec, handler: impl Handler) -> Self {
        self.routes.push((spec, Arc::new(handler)));
        self
    }

    /// Registers a shared handler.
    pub fn handle_shared(mut self, spec: QueueSpec, handler: Arc<dyn Handler>) -> Self {
        self.routes.push((spec, handler));
        self
    }

    /// Sets the messages handled at once per queue (at least 1).
    pub fn concurrency(mut self, concurrency: u16) -> Self {
        self.concurrency = concurrency.max(1);
        self
    }

    /// Counts into `stats` (shared with other workers of the process).
    pub fn with_stats(mut self, stats: Arc<WorkerStats>) -> Self {
        self.stats = stats;
        self
    }

    /// The queues registered.
    pub fn queues(&self) -> Vec<String> {
        self.routes.iter().map(|(s, _)| s.name.clone()).collect()
    }

    /// The counters.
    pub fn stats(&self) -> Arc<WorkerStats> {
        Arc::clone(&self.stats)
    }

    /// Declares every queue; [`Worker::run`] does it too, but a caller
    /// that publishes before the worker runs declares first.
    pub async fn declare(&self) -> Result<()> {
        for (spec, _) in &self.routes {
            self.pipelines.declare(spec).await?;
        }
        Ok(())
    }

    /// Runs until `shutdown` is cancelled, then drains and returns.
    pub async fn run(self, shutdown: CancellationToken) -> Result<()> {
        self.declare().await?;
        let mut loops = JoinSet::new();
        for (spec, handler) in self.routes {
            let ctx = Arc::new(Context {
                pipelines: self.pipelines.clone(),
                queue: spec.name.clone(),
                policy: self.pipelines.config().retry_for(&spec.name),
                handler,
                stats: Arc::clone(&self.stats),
            });
            loops.spawn(consume_loop(
                Arc::clone(&ctx),
                self.concurrency,
                shutdown.clone(),
            ));
            loops.spawn(record_loop(ctx, shutdown.clone()));
        }
        let expiry = {
            let dead_letters = self.pipelines.dead_letters().clone();
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                let mut every = tokio::time::interval(Duration::from_secs(3600));
                loop {
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        _ = every.tick() => {}
                    }
                    match dead_letters.expire().await {
                        Ok(0) => {}
                        Ok(n) => {
                            tracing::info!(count = n, "deleted dead letters past their retention")
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "could not delete expired dead letters")
                        }
                    }
                }
            })
        };
        while let Some(ended) = loops.join_next().await {
            if let Err(e) = ended
                && e.is_panic()
            {
                tracing::error!(error = %e, "a worker loop panicked");
            }
        }
        expiry.abort();
        Ok(())
    }
}

struct Context {
    pipelines: Pipelines,
    queue: String,
    policy: RetryPolicy,
    handler: Arc<dyn Handler>,
    stats: Arc<WorkerStats>,
}

impl Context {
    /// Bumps `counter` of the worker's stats, and the process's metric of
    /// messages settled with `outcome`.
    fn count(&self, counter: &AtomicU64, outcome: &'static str) {
        self.stats.bump(counter);
        crate::metrics::global().message(&self.queue, outcome);
    }

    fn config(&self) -> &PipelinesConfig {
        self.pipelines.config()
    }

    fn key(&self, kind: &str, id: &str) -> String {
        format!("{}:{kind}:{}:{id}", self.config().prefix, self.queue)
    }
}

/// The pause before consuming again after the broker went away.
fn reconnect_pause(failures: u32) -> Duration {
    RetryPolicy::default()
        .with_delays(Duration::from_millis(100), Duration::from_secs(5))
        .delay(failures.max(1))
}

async fn consume_loop(ctx: Arc<Context>, concurrency: u16, shutdown: CancellationToken) {
    let queue = ctx.pipelines.topology().queue(&ctx.queue);
    let broker = ctx.pipelines.broker();
    let mut failures = 0u32;
    while !shutdown.is_cancelled() {
        let options = ConsumeOptions {
            prefetch: concurrency,
            consumer_tag: None,
        };
        let mut consumer = match broker.consume(&queue, options).await {
            Ok(consumer) => consumer,
            Err(e) => {
                failures += 1;
                tracing::warn!(queue = %queue, error = %e, "cannot consume; trying again");
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(reconnect_pause(failures)) => continue,
                }
            }
        };
        let mut running = JoinSet::new();
        loop {
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                Some(_) = running.join_next(), if !running.is_empty() => {}
                next = consumer.next() => match next {
                    Some(Ok(delivery)) => {
                        failures = 0;
                        running.spawn(process(Arc::clone(&ctx), delivery));
                    }
                    Some(Err(e)) => {
                        tracing::warn!(queue = %queue, error = %e, "the consumer broke; consuming again");
                        break;
                    }
                    None => break,
                },
            }
        }
        // The handlers running finish and settle their messages.
        let grace = ctx.config().shutdown_grace;
        if tokio::time::timeout(grace, async {
            while running.join_next().await.is_some() {}
        })
        .await
        .is_err()
        {
            tracing::warn!(queue = %queue, "handlers still running after the grace period; their messages will be delivered again");
        }
        drop(consumer);
        if !shutdown.is_cancelled() {
            failures += 1;
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(reconnect_pause(failures)) => {}
            }
        }
    }
}

/// Handles one delivery inside its span (`message`, with the queue, the
/// message id and the request id it carries, or the message id when it
/// carries none; in exported traces, the child of the span that published
/// it, from its `traceparent` header), recording the consumer lag and the handler's time.
async fn process(ctx: Arc<Context>, delivery: Delivery) {
    let id = envelope::message_id(&delivery);
    let request_id = envelope::header_str(&delivery.message, crate::trace::HEADER)
        .filter(|r| crate::trace::is_valid(r))
        .unwrap_or(&id)
        .to_owned();
    if let Some(published) = envelope::header_int(&delivery.message, crate::trace::PUBLISHED_AT) {
        let lag = chrono::Utc::now()
            .timestamp_millis()
            .saturating_sub(published);
        crate::metrics::global().consumer_lag(
            &ctx.queue,
            Duration::from_millis(u64::try_from(lag).unwrap_or(0)),
        );
    }
    let span = tracing::info_span!("message", queue = %ctx.queue, message_id = %id, request_id = %request_id);
    crate::telemetry::adopt_parent(
        &span,
        envelope::header_str(&delivery.message, crate::telemetry::TRACEPARENT),
        None,
    );
    let started = std::time::Instant::now();
    crate::trace::scope(request_id, handle_delivery(ctx, delivery, id))
        .instrument(span.clone())
        .await;
    span.in_scope(|| {
        tracing::info!(
            elapsed_ms = started.elapsed().as_secs_f64() * 1000.0,
            "message settled"
        );
    });
}

async fn handle_delivery(ctx: Arc<Context>, delivery: Delivery, id: String) {
    let config = ctx.config();
    let kv = ctx.pipelines.kv();
    let attempt = envelope::header_int(&delivery.message, envelope::ATTEMPT)
        .and_then(|a| u32::try_from(a).ok())
        .unwrap_or(1)
        .max(1);
    if delivery.redelivered {
        let key = ctx.key("deliveries", &id);
        match kv.incr(&key).await {
            Ok(count) => {
                if count == 1 {
                    let _ = kv
                        .expire(&key, config.dedupe_window.max(Duration::from_secs(3600)))
                        .await;
                }
                // The count is of redeliveries; the first delivery is one more.
                let deliveries = u64::try_from(count).unwrap_or(0) + 1;
                if deliveries > u64::from(config.max_deliveries) {
                    let error = format!(
                        "delivered {deliveries} times without an answer from its handler (it panicked, or the worker died holding it)"
                    );
                    ctx.count(&ctx.stats.poison, "poison");
                    dead_letter(&ctx, &delivery, attempt, "poison", &error).await;
                    return;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot count the deliveries of a redelivered message")
            }
        }
    }
    if !config.dedupe_window.is_zero() {
        match kv.exists(&[ctx.key("done", &id)]).await {
            Ok(n) if n > 0 => {
                ctx.count(&ctx.stats.duplicates, "duplicate");
                settle(delivery.ack().await, &id);
                return;
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "cannot check whether the message was processed; handling it")
            }
        }
    }
    let payload = match envelope::payload_of(&delivery.message) {
        Ok(payload) => payload,
        Err(e) => {
            dead_letter(&ctx, &delivery, attempt, "invalid", e.message()).await;
            return;
        }
    };
    let (_, routing_key) = envelope::route_of(&delivery);
    let task = Task {
        id: id.clone(),
        queue: ctx.queue.clone(),
        routing_key,
        payload,
        attempt,
        history: envelope::history_of(&delivery.message),
        message: delivery.message.clone(),
    };
    let handler = Arc::clone(&ctx.handler);
    let request_id = crate::trace::current().unwrap_or_else(|| id.clone());
    let started = std::time::Instant::now();
    let mut running = tokio::spawn(
        crate::trace::scope(request_id, async move { handler.handle(task).await })
            .in_current_span(),
    );
    let outcome = match tokio::time::timeout(config.handler_timeout, &mut running).await {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(e)) => {
            // A handler that panicked is like a worker that died holding the
            // message: it is delivered again, and counts toward poison.
            ctx.count(&ctx.stats.panics, "panicked");
            tracing::error!(queue = %ctx.queue, id = %id, error = %e, "the handler panicked; the message will be delivered again");
            settle(delivery.nack(true).await, &id);
            return;
        }
        Err(_) => {
            running.abort();
            Outcome::retry(format!(
                "the handler did not finish within {:?}",
                config.handler_timeout
            ))
        }
    };
    crate::metrics::global().handler_time(&ctx.queue, started.elapsed());
    // A test stops a real worker here: the handler's effects are done, the
    // message is not settled.
    if let Err(e) = crate::failpoint::check(&format!("pipelines.{}.after_handler", ctx.queue)).await
    {
        tracing::warn!(error = %e, "the message goes back to its queue");
        settle(delivery.nack(true).await, &id);
        return;
    }
    match outcome {
        Outcome::Done => {
            if !config.dedupe_window.is_zero()
                && let Err(e) = kv
                    .set_with(
                        &ctx.key("done", &id),
                        Bytes::from_static(b"1"),
                        crate::engines::kv::SetOptions::ttl(config.dedupe_window),
                    )
                    .await
            {
                tracing::warn!(error = %e, "cannot remember the message as processed; a duplicate of it would be handled again");
            }
            ctx.count(&ctx.stats.done, "done");
            settle(delivery.ack().await, &id);
        }
        Outcome::Retry {
            after,
            not_before,
            error,
        } => {
            if attempt >= ctx.policy.max_attempts {
                let error = format!("{error} (attempt {attempt} of {})", ctx.policy.max_attempts);
                dead_letter(&ctx, &delivery, attempt, "exhausted", &error).await;
            } else {
                let delay = after
                    .unwrap_or_else(|| ctx.policy.delay(attempt))
                    .max(not_before.unwrap_or_default());
                retry(&ctx, &delivery, attempt, delay, &error).await;
            }
        }
        Outcome::Abort { class, error } => {
            dead_letter(&ctx, &delivery, attempt, &class, &error).await
        }
    }
}

fn settle(result: Result<()>, id: &str) {
    if let Err(e) = result {
        // The broker delivers it again; the idempotency check absorbs it.
        tracing::warn!(id = %id, error = %e, "could not settle a message; it will be delivered again");
    }
}

/// The copy of `delivery` that carries its route and history onward.
fn onward(delivery: &Delivery, attempt: u32, entry: Attempt) -> crate::engines::queue::Message {
    let mut message = delivery.message.clone();
    let (exchange, key) = envelope::route_of(delivery);
    let headers = &mut message.properties.headers;
    headers.insert(envelope::EXCHANGE.into(), FieldValue::String(exchange));
    headers.insert(envelope::ROUTING_KEY.into(), FieldValue::String(key));
    headers.insert(
        envelope::ATTEMPT.into(),
        FieldValue::Int(i64::from(attempt)),
    );
    // The broker's own death records of the delay queues are noise here.
    for name in [
        "x-death",
        "x-first-death-reason",
        "x-first-death-queue",
        "x-first-death-exchange",
    ] {
        headers.remove(name);
    }
    let mut history = envelope::history_of(&delivery.message);
    history.push(entry);
    envelope::set_history(&mut message, &history);
    message.properties.expiration = None;
    message.properties.persistent = true;
    if message.properties.message_id.is_none() {
        message.properties.message_id = Some(envelope::message_id(delivery));
    }
    message
}

async fn retry(ctx: &Context, delivery: &Delivery, attempt: u32, delay: Duration, error: &str) {
    let delay = delay.min(ctx.policy.max_delay);
    let tiers = PipelinesConfig::tiers(&ctx.policy);
    let tier = PipelinesConfig::tier_of(delay, tiers);
    let entry = Attempt {
        attempt,
        at: crate::platform::now(),
        outcome: "retry".into(),
        error: error.to_owned(),
        delay_ms: Some(envelope::millis(delay)),
    };
    let mut message = onward(delivery, attempt + 1, entry);
    // An expiration of 0 would drop it at once on some brokers' reading;
    // 1 ms is the least wait.
    message.properties.expiration = Some(delay.max(Duration::from_millis(1)));
    let target = ctx.pipelines.topology().delay(&ctx.queue, tier);
    let id = envelope::message_id(delivery);
    match ctx
        .pipelines
        .publisher()
        .publish(Outgoing::new("", target.clone(), message))
        .await
    {
        Ok(published) if published.routed => {
            ctx.count(&ctx.stats.retried, "retried");
            settle(delivery.ack().await, &id);
        }
        Ok(_) => {
            tracing::error!(queue = %target, "the delay queue is missing; the message goes back to its queue");
            settle(delivery.nack(true).await, &id);
        }
        Err(e) => {
            tracing::warn!(error = %e, "could not schedule a retry; the message goes back to its queue");
            settle(delivery.nack(true).await, &id);
        }
    }
}

async fn dead_letter(ctx: &Context, delivery: &Delivery, attempt: u32, class: &str, error: &str) {
    let entry = Attempt {
        attempt,
        at: crate::platform::now(),
        outcome: class.to_owned(),
        error: error.to_owned(),
        delay_ms: None,
    };
    let mut message = onward(delivery, attempt, entry);
    let headers = &mut message.properties.headers;
    headers.insert(envelope::ERROR.into(), FieldValue::String(error.to_owned()));
    headers.insert(
        envelope::ERROR_CLASS.into(),
        FieldValue::String(class.to_owned()),
    );
    headers.insert(
        envelope::QUEUE.into(),
        FieldValue::String(ctx.queue.clone()),
    );
    headers.insert(
        envelope::DEAD_ID.into(),
        FieldValue::String(uuid::Uuid::now_v7().to_string()),
    );
    let id = envelope::message_id(delivery);
    let topology = ctx.pipelines.topology();
    tracing::warn!(queue = %ctx.queue, id = %id, class, error, "dead-lettered");
    match ctx
        .pipelines
        .publisher()
        .publish(Outgoing::new(topology.dead(), ctx.queue.clone(), message))
        .await
    {
        Ok(published) if published.routed => {
            ctx.count(&ctx.stats.dead, "dead_lettered");
            settle(delivery.ack().await, &id);
        }
        Ok(_) => {
            tracing::error!(queue = %ctx.queue, "the dead-letter queue is missing; the message goes back to its queue");
            settle(delivery.nack(true).await, &id);
        }
        Err(e) => {
            tracing::warn!(error = %e, "could not dead-letter; the message goes back to its queue");
            settle(delivery.nack(true).await, &id);
        }
    }
}

async fn record_loop(ctx: Arc<Context>, shutdown: CancellationToken) {
    let queue = ctx.pipelines.topology().dead_queue(&ctx.queue);
    let broker = ctx.pipelines.broker();
    let mut failures = 0u32;
    while !shutdown.is_cancelled() {
        let options = ConsumeOptions {
            prefetch: 32,
            consumer_tag: None,
        };
        let mut consumer = match broker.consume(&queue, options).await {
            Ok(consumer) => consumer,
            Err(e) => {
                failures += 1;
                tracing::warn!(queue = %queue, error = %e, "cannot consume dead letters; trying again");
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(reconnect_pause(failures)) => continue,
                }
            }
        };
        loop {
            let next = tokio::select! {
                () = shutdown.cancelled() => break,
                next = consumer.next() => next,
            };
            let delivery = match next {
                Some(Ok(delivery)) => delivery,
                Some(Err(e)) => {
                    tracing::warn!(queue = %queue, error = %e, "the dead-letter consumer broke");
                    break;
                }
                None => break,
            };
            match ctx
                .pipelines
                .dead_letters()
                .record(&ctx.queue, &delivery)
                .await
            {
                Ok(_) => {
                    failures = 0;
                    ctx.stats.bump(&ctx.stats.recorded);
                    settle(delivery.ack().await, "dead letter");
                }
                Err(e) => {
                    failures += 1;
                    tracing::warn!(error = %e, "cannot store a dead letter; it stays in its queue");
                    settle(delivery.nack(true).await, "dead letter");
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = tokio::time::sleep(reconnect_pause(failures)) => {}
                    }
                }
            }
        }
        drop(consumer);
        if !shutdown.is_cancelled() {
            failures += 1;
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(reconnect_pause(failures)) => {}
            }
        }
    }
}

/// An error for a message that names its queue and id.
pub fn task_error(task: &Task, message: impl std::fmt::Display) -> Error {
    Error::invalid(format!(
        "message {} on `{}`: {message}",
        task.id, task.queue
    ))
}
