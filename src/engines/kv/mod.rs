//! The key-value engine: a Redis-shaped store of strings, hashes and sorted
//! sets with expiry, pipelines and publish/subscribe.
//!
//! Every operation is a [`Command`] answered by a [`Reply`]; a backend
//! implements [`KvStore::execute`] and [`KvStore::pipeline`], and the typed
//! methods (`get`, `set`, `zadd`, ...) are provided on top of them. This keeps
//! the Redis adapter a thin mapping from `Command` to a Redis command and
//! lets a pipeline carry any mix of operations.
//!
//! # Contracts every implementation keeps
//!
//! - `get` of a missing or expired key is `Ok(None)`; `del` of a missing key
//!   counts zero and succeeds.
//! - An operation of one type against a key holding another (a hash command
//!   on a string) fails with
//!   [`ErrorKind::WrongType`](crate::error::ErrorKind::WrongType) and changes
//!   nothing. Reading commands of the wrong type fail the same way, except
//!   `mget`, which answers nil for a key that is not a string (as Redis
//!   does); `compare_and_delete` on a non-string fails with `WrongType`.
//! - `incr_by` on a value that is not a base-10 64-bit integer, or that would
//!   overflow, fails with `InvalidInput` and changes nothing; a missing key
//!   counts as 0.
//! - `set` without `keep_ttl` clears any expiry; `expire` on a missing key
//!   answers `false`. An expired key is gone for every command.
//! - A hash or sorted set whose last field or member is removed is deleted.
//! - `zrange` indexes are inclusive and may be negative (from the end), as
//!   Redis's; members with equal scores order by member, bytewise.
//! - `pipeline` answers each command in order, in one round trip; a failing
//!   command gets its own `Err` and does not stop the others.
//! - `compare_and_delete` deletes the key only if it holds exactly the given
//!   value, atomically.
//! - `subscribe` returns once the subscription is active: a message published
//!   after it returns is delivered.
//! - Keys live in the store's namespace: an implementation may prefix them
//!   (the Redis adapter's `key_prefix`), but callers never see the prefix.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use crate::error::{Error, Result};

pub mod embedded;
pub mod pattern;
pub mod redis;

/// When a `set` writes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SetCondition {
    /// Always (plain `SET`).
    #[default]
    Always,
    /// Only when the key does not exist (`NX`).
    IfAbsent,
    /// Only when the key exists (`XX`).
    IfPresent,
}

/// Options of `SET`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SetOptions {
    /// Expire after this long (`EX`/`PX`; millisecond precision).
    pub expiry: Option<Duration>,
    /// `NX` / `XX`.
    pub condition: SetCondition,
    /// Keep the key's current expiry (`KEEPTTL`). Ignored when `expiry` is
    /// set.
    pub keep_ttl: bool,
}

impl SetOptions {
    /// Expire after `ttl`.
    pub fn ttl(ttl: Duration) -> Self {
        SetOptions {
            expiry: Some(ttl),
            ..Default::default()
        }
    }

    /// Write only if absent (`NX`).
    pub fn if_absent(mut self) -> Self {
        self.condition = SetCondition::IfAbsent;
        self
    }

    /// Write only if present (`XX`).
    pub fn if_present(mut self) -> Self {
        self.condition = SetCondition::IfPresent;
        self
    }
}

/// Remaining time to live of a key (`PTTL`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ttl {
    /// The key does not exist (`-2`).
    Missing,
    /// The key exists without an expiry (`-1`).
    Persistent,
    /// The key expires after this long.
    Expires(Duration),
}

/// One end of a score range (`ZRANGEBYSCORE`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ScoreBound {
    /// `-inf`.
    NegInfinity,
    /// `+inf`.
    PosInfinity,
    /// The score itself is in range.
    Inclusive(f64),
    /// The score itself is out of range (`(score`).
    Exclusive(f64),
}

impl ScoreBound {
    /// Redis's syntax for the bound: `-inf`, `+inf`, `1.5`, `(1.5`.
    pub fn to_redis_arg(self) -> String {
        match self {
            ScoreBound::NegInfinity => "-inf".into(),
            ScoreBound::PosInfinity => "+inf".into(),
            ScoreBound::Inclusive(s) => format!("{s}"),
            ScoreBound::Exclusive(s) => format!("({s}"),
        }
    }

    /// Whether `score` is at or above this bound taken as a minimum.
    ///
    /// `-inf` and `+inf` are inclusive, as in Redis: `+inf` as a minimum
    /// admits a score of `+inf`, `-inf` as a maximum admits `-inf`.
    pub fn admits_from_below(self, score: f64) -> bool {
        match self {
            ScoreBound::NegInfinity => true,
            ScoreBound::PosInfinity => score >= f64::INFINITY,
            ScoreBound::Inclusive(b) => score >= b,
            ScoreBound::Exclusive(b) => score > b,
        }
    }

    /// Whether `score` is at or below this bound taken as a maximum.
    pub fn admits_from_above(self, score: f64) -> bool {
        match self {
            ScoreBound::NegInfinity => score <= f64::NEG_INFINITY,
            ScoreBound::PosInfinity => true,
            ScoreBound::Inclusive(b) => score <= b,
            ScoreBound::Exclusive(b) => score < b,
        }
    }
}

/// The type of the value at a key (`TYPE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    /// No such key.
    None,
    /// A string (bytes).
    String,
    /// A hash.
    Hash,
    /// A sorted set.
    ZSet,
}

impl KeyType {
    /// Redis's name for the type.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyType::None => "none",
            KeyType::String => "string",
            KeyType::Hash => "hash",
            KeyType::ZSet => "zset",
        }
    }
}

/// A key-value command. Each variant is one Redis command.
// The fields are the command's arguments, named as Redis's documentation
// names them; a doc line on each would repeat the variant's.
#[allow(missing_docs)]
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Command {
    /// `GET key` → `Reply::Value`.
    Get { key: String },
    /// `SET key value [PX ms] [NX|XX] [KEEPTTL]` → `Reply::Bool` (written).
    Set {
        key: String,
        value: Bytes,
        options: SetOptions,
    },
    /// `MGET keys...` → `Reply::Values`.
    MGet { keys: Vec<String> },
    /// `MSET k v ...` → `Reply::Ok`.
    MSet { pairs: Vec<(String, Bytes)> },
    /// `DEL keys...` → `Reply::Int` (deleted).
    Del { keys: Vec<String> },
    /// `EXISTS keys...` → `Reply::Int` (how many exist).
    Exists { keys: Vec<String> },
    /// `PEXPIRE key ms` → `Reply::Bool` (the key exists).
    Expire { key: String, ttl: Duration },
    /// `PTTL key` → `Reply::Ttl`.
    Ttl { key: String },
    /// `PERSIST key` → `Reply::Bool` (an expiry was removed).
    Persist { key: String },
    /// `TYPE key` → `Reply::Type`.
    Type { key: String },
    /// `INCRBY key delta` → `Reply::Int` (new value).
    IncrBy { key: String, delta: i64 },
    /// `INCRBYFLOAT key delta` → `Reply::Float` (new value).
    IncrByFloat { key: String, delta: f64 },
    /// `HSET key f v ...` → `Reply::Int` (fields added).
    HSet {
        key: String,
        fields: Vec<(String, Bytes)>,
    },
    /// `HGET key field` → `Reply::Value`.
    HGet { key: String, field: String },
    /// `HMGET key fields...` → `Reply::Values`.
    HMGet { key: String, fields: Vec<String> },
    /// `HGETALL key` → `Reply::Hash`.
    HGetAll { key: String },
    /// `HDEL key fields...` → `Reply::Int` (removed).
    HDel { key: String, fields: Vec<String> },
    /// `HINCRBY key field delta` → `Reply::Int` (new value).
    HIncrBy {
        key: String,
        field: String,
        delta: i64,
    },
    /// `HLEN key` → `Reply::Int`.
    HLen { key: String },
    /// `ZADD key score member ...` → `Reply::Int` (members added).
    ZAdd {
        key: String,
        members: Vec<(f64, String)>,
    },
    /// `ZINCRBY key delta member` → `Reply::Float` (new score).
    ZIncrBy {
        key: String,
        delta: f64,
        member: String,
    },
    /// `ZSCORE key member` → `Reply::Score`.
    ZScore { key: String, member: String },
    /// `ZRANK` / `ZREVRANK key member` → `Reply::Rank`.
    ZRank {
        key: String,
        member: String,
        rev: bool,
    },
    /// `ZRANGE key start stop [REV] WITHSCORES` → `Reply::Scored`.
    ZRange {
        key: String,
        start: i64,
        stop: i64,
        rev: bool,
    },
    /// `ZRANGEBYSCORE key min max WITHSCORES [LIMIT offset count]` →
    /// `Reply::Scored`, ascending.
    ZRangeByScore {
        key: String,
        min: ScoreBound,
        max: ScoreBound,
        limit: Option<(u64, u64)>,
    },
    /// `ZREMRANGEBYSCORE key min max` → `Reply::Int` (removed).
    ZRemRangeByScore {
        key: String,
        min: ScoreBound,
        max: ScoreBound,
    },
    /// `ZREM key members...` → `Reply::Int` (removed).
    ZRem { key: String, members: Vec<String> },
    /// `ZCARD key` → `Reply::Int`.
    ZCard { key: String },
    /// Delete `key` only if its value equals `expected` (a lock release):
    /// → `Reply::Bool` (deleted). Atomic.
    CompareAndDelete { key: String, expected: Bytes },
    /// `PUBLISH channel message` → `Reply::Int` (subscribers reached).
    Publish { channel: String, message: Bytes },
}

impl Command {
    /// The Redis command name, for errors and logs.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Get { .. } => "get",
            Command::Set { .. } => "set",
            Command::MGet { .. } => "mget",
            Command::MSet { .. } => "mset",
            Command::Del { .. } => "del",
            Command::Exists { .. } => "exists",
            Command::Expire { .. } => "pexpire",
            Command::Ttl { .. } => "pttl",
            Command::Persist { .. } => "persist",
            Command::Type { .. } => "type",
            Command::IncrBy { .. } => "incrby",
            Command::IncrByFloat { .. } => "incrbyfloat",
            Command::HSet { .. } => "hset",
            Command::HGet { .. } => "hget",
            Command::HMGet { .. } => "hmget",
            Command::HGetAll { .. } => "hgetall",
            Command::HDel { .. } => "hdel",
            Command::HIncrBy { .. } => "hincrby",
            Command::HLen { .. } => "hlen",
            Command::ZAdd { .. } => "zadd",
            Command::ZIncrBy { .. } => "zincrby",
            Command::ZScore { .. } => "zscore",
            Command::ZRank { rev: false, .. } => "zrank",
            Command::ZRank { rev: true, .. } => "zrevrank",
            Command::ZRange { .. } => "zrange",
            Command::ZRangeByScore { .. } => "zrangebyscore",
            Command::ZRemRangeByScore { .. } => "zremrangebyscore",
            Command::ZRem { .. } => "zrem",
            Command::ZCard { .. } => "zcard",
            Command::CompareAndDelete { .. } => "compare_and_delete",
            Command::Publish { .. } => "publish",
        }
    }
}

/// The answer to a [`Command`]; which variant each command gets is written on
/// the command.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Reply {
    /// `OK`.
    Ok,
    /// Yes/no outcome.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// A value or nil.
    Value(Option<Bytes>),
    /// Values or nils, in the order asked.
    Values(Vec<Option<Bytes>>),
    /// A whole hash, sorted by field.
    Hash(BTreeMap<String, Bytes>),
    /// A score or nil.
    Score(Option<f64>),
    /// A rank or nil.
    Rank(Option<u64>),
    /// Members with their scores, in range order.
    Scored(Vec<(String, f64)>),
    /// A time to live.
    Ttl(Ttl),
    /// A key's type.
    Type(KeyType),
}

/// Memory and key counts of a store.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KvInfo {
    /// Keys held (Redis: `DBSIZE` of the database).
    pub keys: u64,
    /// Bytes used (Redis: `used_memory`; embedded: the weighed estimate).
    pub used_memory: u64,
    /// Memory limit in bytes, 0 for none.
    pub max_memory: u64,
    /// Keys evicted to stay within the memory limit since start.
    pub evictions: u64,
}

/// A message received on a subscribed channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PubSubMessage {
    /// The channel it was published on.
    pub channel: String,
    /// The payload.
    pub payload: Bytes,
}

/// An active subscription. Dropping it unsubscribes.
#[derive(Debug)]
pub struct Subscription {
    receiver: tokio::sync::mpsc::UnboundedReceiver<PubSubMessage>,
    _guard: Option<Box<dyn std::any::Any + Send + Sync>>,
}

impl Subscription {
    /// Wraps a receiver fed by the backend. `guard` is dropped with the
    /// subscription and lets the backend unsubscribe.
    pub fn new(
        receiver: tokio::sync::mpsc::UnboundedReceiver<PubSubMessage>,
        guard: Option<Box<dyn std::any::Any + Send + Sync>>,
    ) -> Self {
        Subscription {
            receiver,
            _guard: guard,
        }
    }

    /// The next message, or `None` once the backend has closed the
    /// subscription (connection lost for good, store dropped).
    pub async fn next(&mut self) -> Option<PubSubMessage> {
        self.receiver.recv().await
    }
}

fn unexpected(command: &'static str, reply: Reply) -> Error {
    Error::internal(format!("unexpected reply to {command}: {reply:?}")).with_operation(command)
}

macro_rules! expect_reply {
    ($reply:expr, $name:literal, $pat:pat => $out:expr) => {
        match $reply {
            $pat => Ok($out),
            other => Err(unexpected($name, other)),
        }
    };
}

/// A Redis-shaped key-value store.
///
/// Implementations: [`embedded::EmbeddedKv`] (in-process, moka-backed,
/// memory-bounded, LRU) and the Redis adapter. The module documentation
/// lists the contracts; `tests/kv_conformance.rs` checks them against every
/// implementation.
#[async_trait]
pub trait KvStore: Send + Sync + std::fmt::Debug {
    /// The implementation: `"embedded"` or `"redis"`.
    fn kind(&self) -> &'static str;

    /// Where it stores, for humans, with secrets redacted.
    fn target(&self) -> String;

    /// Checks that the store answers.
    async fn ping(&self) -> Result<()>;

    /// Runs one command.
    async fn execute(&self, command: Command) -> Result<Reply>;

    /// Runs commands in order in one round trip; one result per command.
    async fn pipeline(&self, commands: Vec<Command>) -> Result<Vec<Result<Reply>>>;

    /// Every key matching a Redis glob `pattern` (`*`, `?`, `[a-z]`, `[^x]`,
    /// `\` escapes), sorted. Implementations iterate (`SCAN`), never block
    /// the server with `KEYS`.
    async fn scan(&self, pattern: &str) -> Result<Vec<String>>;

    /// Subscribes to channels; see the module contracts.
    async fn subscribe(&self, channels: &[String]) -> Result<Subscription>;

    /// Key count and memory use.
    async fn info(&self) -> Result<KvInfo>;

    /// Deletes every key matching `pattern`; returns how many were deleted.
    async fn delete_pattern(&self, pattern: &str) -> Result<u64> {
        let keys = self.scan(pattern).await?;
        let mut deleted = 0;
        for chunk in keys.chunks(500) {
            deleted += self.del(chunk).await?;
        }
        Ok(deleted)
    }

    /// `GET`.
    async fn get(&self, key: &str) -> Result<Option<Bytes>> {
        let reply = self.execute(Command::Get { key: key.into() }).await?;
        expect_reply!(reply, "get", Reply::Value(v) => v)
    }

    /// `SET` with options; `false` when `NX`/`XX` prevented the write.
    async fn set_with(&self, key: &str, value: Bytes, options: SetOptions) -> Result<bool> {
        let command = Command::Set {
            key: key.into(),
            value,
            options,
        };
        let reply = self.execute(command).await?;
        expect_reply!(reply, "set", Reply::Bool(b) => b)
    }

    /// Plain `SET`.
    async fn set(&self, key: &str, value: Bytes) -> Result<()> {
        self.set_with(key, value, SetOptions::default()).await?;
        Ok(())
    }

    /// `MGET`.
    async fn mget(&self, keys: &[String]) -> Result<Vec<Option<Bytes>>> {
        let reply = self
            .execute(Command::MGet {
                keys: keys.to_vec(),
            })
            .await?;
        expect_reply!(reply, "mget", Reply::Values(v) => v)
    }

    /// `MSET`.
    async fn mset(&self, pairs: Vec<(String, Bytes)>) -> Result<()> {
        let reply = self.execute(Command::MSet { pairs }).await?;
        expect_reply!(reply, "mset", Reply::Ok => ())
    }

    /// `DEL`; how many keys were deleted.
    async fn del(&self, keys: &[String]) -> Result<u64> {
        let reply = self
            .execute(Command::Del {
                keys: keys.to_vec(),
            })
            .await?;
        expect_reply!(reply, "del", Reply::Int(n) => n as u64)
    }

    /// `EXISTS`; how many of the keys exist.
    async fn exists(&self, keys: &[String]) -> Result<u64> {
        let reply = self
            .execute(Command::Exists {
                keys: keys.to_vec(),
            })
            .await?;
        expect_reply!(reply, "exists", Reply::Int(n) => n as u64)
    }

    /// `PEXPIRE`; `false` when the key does not exist.
    async fn expire(&self, key: &str, ttl: Duration) -> Result<bool> {
        let reply = self
            .execute(Command::Expire {
                key: key.into(),
                ttl,
            })
            .await?;
        expect_reply!(reply, "pexpire", Reply::Bool(b) => b)
    }

    /// `PTTL`.
    async fn ttl(&self, key: &str) -> Result<Ttl> {
        let reply = self.execute(Command::Ttl { key: key.into() }).await?;
        expect_reply!(reply, "pttl", Reply::Ttl(t) => t)
    }

    /// `PERSIST`; `true` when an expiry was removed.
    async fn persist(&self, key: &str) -> Result<bool> {
        let reply = self.execute(Command::Persist { key: key.into() }).await?;
        expect_reply!(reply, "persist", Reply::Bool(b) => b)
    }

    /// `TYPE`.
    async fn key_type(&self, key: &str) -> Result<KeyType> {
        let reply = self.execute(Command::Type { key: key.into() }).await?;
        expect_reply!(reply, "type", Reply::Type(t) => t)
    }

    /// `INCRBY`; the new value.
    async fn incr_by(&self, key: &str, delta: i64) -> Result<i64> {
        let reply = self
            .execute(Command::IncrBy {
                key: key.into(),
                delta,
            })
            .await?;
        expect_reply!(reply, "incrby", Reply::Int(n) => n)
    }

    /// `INCR`; the new value.
    async fn incr(&self, key: &str) -> Result<i64> {
        self.incr_by(key, 1).await
    }

    /// `INCRBYFLOAT`; the new value.
    async fn incr_by_float(&self, key: &str, delta: f64) -> Result<f64> {
        let reply = self
            .execute(Command::IncrByFloat {
                key: key.into(),
                delta,
            })
            .await?;
        expect_reply!(reply, "incrbyfloat", Reply::Float(f) => f)
    }

    /// `HSET` of many fields; how many were new.
    async fn hset(&self, key: &str, fields: Vec<(String, Bytes)>) -> Result<u64> {
        let reply = self
            .execute(Command::HSet {
                key: key.into(),
                fields,
            })
            .await?;
        expect_reply!(reply, "hset", Reply::Int(n) => n as u64)
    }

    /// `HGET`.
    async fn hget(&self, key: &str, field: &str) -> Result<Option<Bytes>> {
        let reply = self
            .execute(Command::HGet {
                key: key.into(),
                field: field.into(),
            })
            .await?;
        expect_reply!(reply, "hget", Reply::Value(v) => v)
    }

    /// `HMGET`.
    async fn hmget(&self, key: &str, fields: &[String]) -> Result<Vec<Option<Bytes>>> {
        let reply = self
            .execute(Command::HMGet {
                key: key.into(),
                fields: fields.to_vec(),
            })
            .await?;
        expect_reply!(reply, "hmget", Reply::Values(v) => v)
    }

    /// `HGETALL`, sorted by field; empty for a missing key.
    async fn hgetall(&self, key: &str) -> Result<BTreeMap<String, Bytes>> {
        let reply = self.execute(Command::HGetAll { key: key.into() }).await?;
        expect_reply!(reply, "hgetall", Reply::Hash(h) => h)
    }

    /// `HDEL`; how many fields were removed.
    async fn hdel(&self, key: &str, fields: &[String]) -> Result<u64> {
        let reply = self
            .execute(Command::HDel {
                key: key.into(),
                fields: fields.to_vec(),
            })
            .await?;
        expect_reply!(reply, "hdel", Reply::Int(n) => n as u64)
    }

    /// `HINCRBY`; the new value.
    async fn hincr_by(&self, key: &str, field: &str, delta: i64) -> Result<i64> {
        let reply = self
            .execute(Command::HIncrBy {
                key: key.into(),
                field: field.into(),
                delta,
            })
            .await?;
        expect_reply!(reply, "hincrby", Reply::Int(n) => n)
    }

    /// `HLEN`.
    async fn hlen(&self, key: &str) -> Result<u64> {
        let reply = self.execute(Command::HLen { key: key.into() }).await?;
        expect_reply!(reply, "hlen", Reply::Int(n) => n as u64)
    }

    /// `ZADD`; how many members were new.
    async fn zadd(&self, key: &str, members: Vec<(f64, String)>) -> Result<u64> {
        let reply = self
            .execute(Command::ZAdd {
                key: key.into(),
                members,
            })
            .await?;
        expect_reply!(reply, "zadd", Reply::Int(n) => n as u64)
    }

    /// `ZINCRBY`; the new score.
    async fn zincr_by(&self, key: &str, delta: f64, member: &str) -> Result<f64> {
        let reply = self
            .execute(Command::ZIncrBy {
                key: key.into(),
                delta,
                member: member.into(),
            })
            .await?;
        expect_reply!(reply, "zincrby", Reply::Float(f) => f)
    }

    /// `ZSCORE`.
    async fn zscore(&self, key: &str, member: &str) -> Result<Option<f64>> {
        let reply = self
            .execute(Command::ZScore {
                key: key.into(),
                member: member.into(),
            })
            .await?;
        expect_reply!(reply, "zscore", Reply::Score(s) => s)
    }

    /// `ZRANK` (ascending, from 0).
    async fn zrank(&self, key: &str, member: &str) -> Result<Option<u64>> {
        let command = Command::ZRank {
            key: key.into(),
            member: member.into(),
            rev: false,
        };
        let reply = self.execute(command).await?;
        expect_reply!(reply, "zrank", Reply::Rank(r) => r)
    }

    /// `ZREVRANK` (descending, from 0).
    async fn zrevrank(&self, key: &str, member: &str) -> Result<Option<u64>> {
        let command = Command::ZRank {
            key: key.into(),
            member: member.into(),
            rev: true,
        };
        let reply = self.execute(command).await?;
        expect_reply!(reply, "zrevrank", Reply::Rank(r) => r)
    }

    /// `ZRANGE ... WITHSCORES`, ascending.
    async fn zrange(&self, key: &str, start: i64, stop: i64) -> Result<Vec<(String, f64)>> {
        let command = Command::ZRange {
            key: key.into(),
            start,
            stop,
            rev: false,
        };
        let reply = self.execute(command).await?;
        expect_reply!(reply, "zrange", Reply::Scored(s) => s)
    }

    /// `ZREVRANGE ... WITHSCORES`, descending.
    async fn zrevrange(&self, key: &str, start: i64, stop: i64) -> Result<Vec<(String, f64)>> {
        let command = Command::ZRange {
            key: key.into(),
            start,
            stop,
            rev: true,
        };
        let reply = self.execute(command).await?;
        expect_reply!(reply, "zrange", Reply::Scored(s) => s)
    }

    /// `ZRANGEBYSCORE ... WITHSCORES [LIMIT]`.
    async fn zrangebyscore(
        &self,
        key: &str,
        min: ScoreBound,
        max: ScoreBound,
        limit: Option<(u64, u64)>,
    ) -> Result<Vec<(String, f64)>> {
        let command = Command::ZRangeByScore {
            key: key.into(),
            min,
            max,
            limit,
        };
        let reply = self.execute(command).await?;
        expect_reply!(reply, "zrangebyscore", Reply::Scored(s) => s)
    }

    /// `ZREMRANGEBYSCORE`; how many were removed.
    async fn zremrangebyscore(&self, key: &str, min: ScoreBound, max: ScoreBound) -> Result<u64> {
        let command = Command::ZRemRangeByScore {
            key: key.into(),
            min,
            max,
        };
        let reply = self.execute(command).await?;
        expect_reply!(reply, "zremrangebyscore", Reply::Int(n) => n as u64)
    }

    /// `ZREM`; how many were removed.
    async fn zrem(&self, key: &str, members: &[String]) -> Result<u64> {
        let command = Command::ZRem {
            key: key.into(),
            members: members.to_vec(),
        };
        let reply = self.execute(command).await?;
        expect_reply!(reply, "zrem", Reply::Int(n) => n as u64)
    }

    /// `ZCARD`.
    async fn zcard(&self, key: &str) -> Result<u64> {
        let reply = self.execute(Command::ZCard { key: key.into() }).await?;
        expect_reply!(reply, "zcard", Reply::Int(n) => n as u64)
    }

    /// Deletes `key` only while it still holds `expected`; `true` if deleted.
    async fn compare_and_delete(&self, key: &str, expected: Bytes) -> Result<bool> {
        let command = Command::CompareAndDelete {
            key: key.into(),
            expected,
        };
        let reply = self.execute(command).await?;
        expect_reply!(reply, "compare_and_delete", Reply::Bool(b) => b)
    }

    /// `PUBLISH`; how many subscribers received it.
    async fn publish(&self, channel: &str, message: Bytes) -> Result<u64> {
        let command = Command::Publish {
            channel: channel.into(),
            message,
        };
        let reply = self.execute(command).await?;
        expect_reply!(reply, "publish", Reply::Int(n) => n as u64)
    }
}
