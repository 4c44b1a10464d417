//! The layers around a [`KvStore`] (see [`super`] for their order).
//!
//! Reads are repeated after a transient failure, and so are the writes
//! whose repetition changes neither the data nor the answer (a plain `SET`,
//! `MSET`, `lock_extend`, `hset_if_newer`, a `rate_limit` of cost 0); a
//! pipeline is repeated only when every command in it is. Counters,
//! conditional writes, deletes (whose answer counts what was deleted), hash
//! and sorted-set writes, `lock_acquire`, `rate_limit`, `zadd_best` and
//! publishes are not: a write that reached the store before its connection
//! failed would be applied twice, or answered differently.

use std::sync::Arc;

use async_trait::async_trait;

use super::Layers;
use crate::engines::kv::{
    Command, KvInfo, KvStore, Reply, ScanCursor, ScanOptions, ScanPage, SetCondition, Subscription,
};
use crate::error::{Error, ErrorKind, Result};

/// A key-value store behind the layers.
#[derive(Debug)]
pub struct LayeredKv {
    inner: Arc<dyn KvStore>,
    layers: Arc<Layers>,
}

/// Wraps `inner` in `layers`.
pub fn wrap(inner: Arc<dyn KvStore>, layers: Arc<Layers>) -> Arc<dyn KvStore> {
    Arc::new(LayeredKv { inner, layers })
}

/// Whether running `command` twice leaves the store and the answer as
/// running it once would.
pub fn repeatable(command: &Command) -> bool {
    match command {
        Command::Get { .. }
        | Command::MGet { .. }
        | Command::StrLen { .. }
        | Command::Exists { .. }
        | Command::Ttl { .. }
        | Command::Type { .. }
        | Command::HGet { .. }
        | Command::HMGet { .. }
        | Command::HGetAll { .. }
        | Command::HKeys { .. }
        | Command::HVals { .. }
        | Command::HExists { .. }
        | Command::HStrLen { .. }
        | Command::HLen { .. }
        | Command::ZScore { .. }
        | Command::ZRank { .. }
        | Command::ZRange { .. }
        | Command::ZRangeByScore { .. }
        | Command::ZCount { .. }
        | Command::ZCard { .. }
        | Command::MSet { .. } => true,
        Command::Set { options, .. } => options.condition == SetCondition::Always,
        // Still held: extended again, from the repeat (what was asked: the
        // ttl counts from when it applies), and `true` again; not held:
        // `false` both times. An expiry of zero deletes the lock, though,
        // and its repeat answers `false`.
        Command::LockExtend { ttl, .. } => ttl.as_millis() > 0,
        // A field written at time t is written again (t >= t), with the
        // same value and answer; one refused is refused again. Not so for
        // a field named twice: a first entry older than the second is
        // written by the first run and refused by the repeat.
        Command::HSetIfNewer { fields, .. } => {
            let mut names = std::collections::HashSet::with_capacity(fields.len());
            fields
                .iter()
                .all(|(field, _, _)| names.insert(field.as_str()))
        }
        // Cost 0 only reports; any other cost counts once per run.
        Command::RateLimit { cost, .. } => *cost == 0,
        // A repeat after a taken lock finds it held (nil, and a lost
        // fence number to the caller); a repeated best score finds itself
        // equal (`false` where it was `true`).
        Command::LockAcquire { .. } | Command::ZAddBest { .. } => false,
        _ => false,
    }
}

#[async_trait]
impl KvStore for LayeredKv {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }

    fn target(&self) -> String {
        self.inner.target()
    }

    fn pool_use(&self) -> Option<crate::engines::PoolUse> {
        self.inner.pool_use()
    }

    async fn ping(&self) -> Result<()> {
        self.layers.call("ping", true, || self.inner.ping()).await
    }

    async fn execute(&self, command: Command) -> Result<Reply> {
        let name = command.name();
        if repeatable(&command) {
            self.layers
                .call(name, true, || self.inner.execute(command.clone()))
                .await
        } else {
            let mut once = Some(command);
            self.layers
                .call(name, false, || {
                    let command = once.take();
                    async move {
                        match command {
                            Some(command) => self.inner.execute(command).await,
                            None => Err(Error::new(
                                ErrorKind::Internal,
                                format!("{name} is not repeatable but was attempted twice"),
                            )),
                        }
                    }
                })
                .await
        }
    }

    async fn pipeline(&self, commands: Vec<Command>) -> Result<Vec<Result<Reply>>> {
        let all_repeatable = commands.iter().all(repeatable);
        if all_repeatable {
            self.layers
                .call("pipeline", true, || self.inner.pipeline(commands.clone()))
                .await
        } else {
            let mut once = Some(commands);
            self.layers
                .call("pipeline", false, || {
                    self.inner.pipeline(once.take().unwrap_or_default())
                })
                .await
        }
    }

    async fn scan(&self, cursor: &ScanCursor, options: &ScanOptions) -> Result<ScanPage> {
        self.layers
            .call("scan", true, || self.inner.scan(cursor, options))
            .await
    }

    async fn subscribe(&self, channels: &[String]) -> Result<Subscription> {
        self.layers
            .call("subscribe", true, || self.inner.subscribe(channels))
            .await
    }

    async fn info(&self) -> Result<KvInfo> {
        self.layers.call("info", true, || self.inner.info()).await
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::engines::kv::SetOptions;

    #[test]
    fn only_commands_safe_to_repeat_are_repeatable() {
        let set = |options| Command::Set {
            key: "k".into(),
            value: Bytes::from_static(b"v"),
            options,
        };
        assert!(repeatable(&Command::Get { key: "k".into() }));
        assert!(repeatable(&set(SetOptions::default())));
        assert!(!repeatable(&set(SetOptions::default().if_absent())));
        assert!(!repeatable(&Command::IncrBy {
            key: "k".into(),
            delta: 1
        }));
        assert!(!repeatable(&Command::Del {
            keys: vec!["k".into()]
        }));
        assert!(!repeatable(&Command::Publish {
            channel: "c".into(),
            message: Bytes::new()
        }));
    }

    #[test]
    fn atomic_commands_are_repeatable_only_when_idempotent() {
        let ttl = std::time::Duration::from_secs(1);
        let rate = |cost| Command::RateLimit {
            key: "r".into(),
            limit: 10,
            period: ttl,
            cost,
        };
        assert!(!repeatable(&Command::LockAcquire {
            key: "l".into(),
            token: "t".into(),
            ttl,
            fence_key: "f".into(),
        }));
        let extend = |ttl| Command::LockExtend {
            key: "l".into(),
            token: "t".into(),
            ttl,
        };
        assert!(repeatable(&extend(ttl)));
        assert!(!repeatable(&extend(std::time::Duration::from_micros(999))));
        assert!(!repeatable(&rate(1)));
        assert!(repeatable(&rate(0)));
        assert!(!repeatable(&Command::ZAddBest {
            key: "z".into(),
            member: "m".into(),
            score: 1.0,
            at_key: "a".into(),
            at: 1,
        }));
        let hset = |fields: &[&str]| Command::HSetIfNewer {
            key: "h".into(),
            fields: fields
                .iter()
                .enumerate()
                .map(|(i, f)| (f.to_string(), Bytes::from_static(b"v"), i as i64))
                .collect(),
            time_prefix: "t:".into(),
        };
        assert!(repeatable(&hset(&["a", "b"])));
        assert!(!repeatable(&hset(&["a", "b", "a"])));
        assert!(!repeatable(&Command::CompareAndDelete {
            key: "l".into(),
            expected: Bytes::from_static(b"t"),
        }));
    }
}
