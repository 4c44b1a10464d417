//! [`KvStoreExt`]: the typed helpers (`get`, `set`, `zadd`, ...) every
//! [`KvStore`] has, built on its core methods only.
//!
//! Each helper builds one [`Command`], runs it through
//! [`KvStore::execute`] and unwraps the [`Reply`] the command documents; the
//! scan helpers loop over [`KvStore::scan`]. The trait has a blanket
//! implementation for every `KvStore` (also `dyn KvStore`), so no backend
//! can implement it differently: a layer that wraps a store (timeouts,
//! retries, metrics) sees every operation pass through the core methods.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use bytes::Bytes;

use super::{
    Command, ExpireOptions, GetExpiry, KeyType, KvStore, RateLimitReply, Reply, ScanCursor,
    ScanOptions, ScoreBound, SetOptions, Ttl, ZAddOptions,
};
use crate::error::{Error, Result};

/// How many keys one step of the scan helpers examines: large enough to
/// keep round trips few, small enough that no step blocks Redis (or the
/// embedded store's caller) noticeably.
pub const SCAN_PAGE: u64 = 1000;

fn unexpected(command: &'static str, reply: Reply) -> Error {
    Error::internal(format!("unexpected reply to {command}: {reply:?}")).with_operation(command)
}

/// Runs `$command` on `$store` and unwraps the reply matching `$pat`.
macro_rules! ask {
    ($store:expr, $command:expr, $name:literal, $pat:pat => $out:expr) => {{
        let command = $command;
        async move {
            match $store.execute(command).await? {
                $pat => Ok($out),
                other => Err(unexpected($name, other)),
            }
        }
    }};
}

/// A count Redis answers as an integer, which is never negative.
fn count(n: i64) -> u64 {
    n.max(0).unsigned_abs()
}

/// The typed helpers of every [`KvStore`]. Import it to call them:
/// `use strata::engines::kv::KvStoreExt;`.
///
/// Each method is the Redis command it is named after; the [`Command`]
/// variant it sends documents the exact reply, and the module documentation
/// of [`kv`](super) the contracts.
pub trait KvStoreExt: KvStore {
    /// `GET`.
    fn get(&self, key: &str) -> impl Future<Output = Result<Option<Bytes>>> + Send {
        ask!(self, Command::Get { key: key.into() }, "get", Reply::Value(v) => v)
    }

    /// `SET` with options; `false` when `NX`/`XX` prevented the write.
    fn set_with(
        &self,
        key: &str,
        value: Bytes,
        options: SetOptions,
    ) -> impl Future<Output = Result<bool>> + Send {
        let command = Command::Set {
            key: key.into(),
            value,
            options,
        };
        ask!(self, command, "set", Reply::Bool(b) => b)
    }

    /// Plain `SET`.
    fn set(&self, key: &str, value: Bytes) -> impl Future<Output = Result<()>> + Send {
        let command = Command::Set {
            key: key.into(),
            value,
            options: SetOptions::default(),
        };
        ask!(self, command, "set", Reply::Bool(_) => ())
    }

    /// `SET ... GET`: the value before, whether or not `NX`/`XX` let the
    /// write happen.
    fn set_get(
        &self,
        key: &str,
        value: Bytes,
        options: SetOptions,
    ) -> impl Future<Output = Result<Option<Bytes>>> + Send {
        let command = Command::SetGet {
            key: key.into(),
            value,
            options,
        };
        ask!(self, command, "set", Reply::Value(v) => v)
    }

    /// `GETDEL`.
    fn getdel(&self, key: &str) -> impl Future<Output = Result<Option<Bytes>>> + Send {
        ask!(self, Command::GetDel { key: key.into() }, "getdel", Reply::Value(v) => v)
    }

    /// `GETEX`: the value, changing the key's expiry as `expiry` says.
    fn getex(
        &self,
        key: &str,
        expiry: GetExpiry,
    ) -> impl Future<Output = Result<Option<Bytes>>> + Send {
        let command = Command::GetEx {
            key: key.into(),
            expiry,
        };
        ask!(self, command, "getex", Reply::Value(v) => v)
    }

    /// `MGET`.
    fn mget(&self, keys: &[String]) -> impl Future<Output = Result<Vec<Option<Bytes>>>> + Send {
        let command = Command::MGet {
            keys: keys.to_vec(),
        };
        ask!(self, command, "mget", Reply::Values(v) => v)
    }

    /// `MSET`.
    fn mset(&self, pairs: Vec<(String, Bytes)>) -> impl Future<Output = Result<()>> + Send {
        ask!(self, Command::MSet { pairs }, "mset", Reply::Ok => ())
    }

    /// `MSETNX`; `true` when every key was absent and all were written.
    fn msetnx(&self, pairs: Vec<(String, Bytes)>) -> impl Future<Output = Result<bool>> + Send {
        ask!(self, Command::MSetNx { pairs }, "msetnx", Reply::Bool(b) => b)
    }

    /// `APPEND`; the new length.
    fn append(&self, key: &str, value: Bytes) -> impl Future<Output = Result<u64>> + Send {
        let command = Command::Append {
            key: key.into(),
            value,
        };
        ask!(self, command, "append", Reply::Int(n) => count(n))
    }

    /// `STRLEN`.
    fn strlen(&self, key: &str) -> impl Future<Output = Result<u64>> + Send {
        ask!(self, Command::StrLen { key: key.into() }, "strlen", Reply::Int(n) => count(n))
    }

    /// `DEL`; how many keys were deleted.
    fn del(&self, keys: &[String]) -> impl Future<Output = Result<u64>> + Send {
        let command = Command::Del {
            keys: keys.to_vec(),
        };
        ask!(self, command, "del", Reply::Int(n) => count(n))
    }

    /// `EXISTS`; how many of the keys exist.
    fn exists(&self, keys: &[String]) -> impl Future<Output = Result<u64>> + Send {
        let command = Command::Exists {
            keys: keys.to_vec(),
        };
        ask!(self, command, "exists", Reply::Int(n) => count(n))
    }

    /// `PEXPIRE`; `false` when the key does not exist.
    fn expire(&self, key: &str, ttl: Duration) -> impl Future<Output = Result<bool>> + Send {
        self.expire_with(key, ttl, ExpireOptions::default())
    }

    /// `PEXPIRE` with `NX`/`XX`/`GT`/`LT`; `false` when the key does not
    /// exist or a condition prevented it.
    fn expire_with(
        &self,
        key: &str,
        ttl: Duration,
        options: ExpireOptions,
    ) -> impl Future<Output = Result<bool>> + Send {
        let command = Command::Expire {
            key: key.into(),
            ttl,
            options,
        };
        ask!(self, command, "pexpire", Reply::Bool(b) => b)
    }

    /// `PTTL`.
    fn ttl(&self, key: &str) -> impl Future<Output = Result<Ttl>> + Send {
        ask!(self, Command::Ttl { key: key.into() }, "pttl", Reply::Ttl(t) => t)
    }

    /// `PERSIST`; `true` when an expiry was removed.
    fn persist(&self, key: &str) -> impl Future<Output = Result<bool>> + Send {
        ask!(self, Command::Persist { key: key.into() }, "persist", Reply::Bool(b) => b)
    }

    /// `TYPE`.
    fn key_type(&self, key: &str) -> impl Future<Output = Result<KeyType>> + Send {
        ask!(self, Command::Type { key: key.into() }, "type", Reply::Type(t) => t)
    }

    /// `INCRBY`; the new value.
    fn incr_by(&self, key: &str, delta: i64) -> impl Future<Output = Result<i64>> + Send {
        let command = Command::IncrBy {
            key: key.into(),
            delta,
        };
        ask!(self, command, "incrby", Reply::Int(n) => n)
    }

    /// `INCR`; the new value.
    fn incr(&self, key: &str) -> impl Future<Output = Result<i64>> + Send {
        self.incr_by(key, 1)
    }

    /// `INCRBYFLOAT`; the new value.
    fn incr_by_float(&self, key: &str, delta: f64) -> impl Future<Output = Result<f64>> + Send {
        let command = Command::IncrByFloat {
            key: key.into(),
            delta,
        };
        ask!(self, command, "incrbyfloat", Reply::Float(f) => f)
    }

    /// `HSET` of many fields; how many were new.
    fn hset(
        &self,
        key: &str,
        fields: Vec<(String, Bytes)>,
    ) -> impl Future<Output = Result<u64>> + Send {
        let command = Command::HSet {
            key: key.into(),
            fields,
        };
        ask!(self, command, "hset", Reply::Int(n) => count(n))
    }

    /// `HSETNX`; `true` when the field was new and is now set.
    fn hsetnx(
        &self,
        key: &str,
        field: &str,
        value: Bytes,
    ) -> impl Future<Output = Result<bool>> + Send {
        let command = Command::HSetNx {
            key: key.into(),
            field: field.into(),
            value,
        };
        ask!(self, command, "hsetnx", Reply::Bool(b) => b)
    }

    /// `HGET`.
    fn hget(&self, key: &str, field: &str) -> impl Future<Output = Result<Option<Bytes>>> + Send {
        let command = Command::HGet {
            key: key.into(),
            field: field.into(),
        };
        ask!(self, command, "hget", Reply::Value(v) => v)
    }

    /// `HMGET`.
    fn hmget(
        &self,
        key: &str,
        fields: &[String],
    ) -> impl Future<Output = Result<Vec<Option<Bytes>>>> + Send {
        let command = Command::HMGet {
            key: key.into(),
            fields: fields.to_vec(),
        };
        ask!(self, command, "hmget", Reply::Values(v) => v)
    }

    /// `HGETALL`, sorted by field; empty for a missing key.
    fn hgetall(&self, key: &str) -> impl Future<Output = Result<BTreeMap<String, Bytes>>> + Send {
        ask!(self, Command::HGetAll { key: key.into() }, "hgetall", Reply::Hash(h) => h)
    }

    /// `HKEYS`, sorted bytewise.
    fn hkeys(&self, key: &str) -> impl Future<Output = Result<Vec<String>>> + Send {
        ask!(self, Command::HKeys { key: key.into() }, "hkeys", Reply::Fields(f) => f)
    }

    /// `HVALS`, sorted bytewise.
    fn hvals(&self, key: &str) -> impl Future<Output = Result<Vec<Bytes>>> + Send {
        ask!(self, Command::HVals { key: key.into() }, "hvals", Reply::Blobs(v) => v)
    }

    /// `HEXISTS`.
    fn hexists(&self, key: &str, field: &str) -> impl Future<Output = Result<bool>> + Send {
        let command = Command::HExists {
            key: key.into(),
            field: field.into(),
        };
        ask!(self, command, "hexists", Reply::Bool(b) => b)
    }

    /// `HSTRLEN`.
    fn hstrlen(&self, key: &str, field: &str) -> impl Future<Output = Result<u64>> + Send {
        let command = Command::HStrLen {
            key: key.into(),
            field: field.into(),
        };
        ask!(self, command, "hstrlen", Reply::Int(n) => count(n))
    }

    /// `HDEL`; how many fields were removed.
    fn hdel(&self, key: &str, fields: &[String]) -> impl Future<Output = Result<u64>> + Send {
        let command = Command::HDel {
            key: key.into(),
            fields: fields.to_vec(),
        };
        ask!(self, command, "hdel", Reply::Int(n) => count(n))
    }

    /// `HINCRBY`; the new value.
    fn hincr_by(
        &self,
        key: &str,
        field: &str,
        delta: i64,
    ) -> impl Future<Output = Result<i64>> + Send {
        let command = Command::HIncrBy {
            key: key.into(),
            field: field.into(),
            delta,
        };
        ask!(self, command, "hincrby", Reply::Int(n) => n)
    }

    /// `HINCRBYFLOAT`; the new value.
    fn hincr_by_float(
        &self,
        key: &str,
        field: &str,
        delta: f64,
    ) -> impl Future<Output = Result<f64>> + Send {
        let command = Command::HIncrByFloat {
            key: key.into(),
            field: field.into(),
            delta,
        };
        ask!(self, command, "hincrbyfloat", Reply::Float(f) => f)
    }

    /// `HLEN`.
    fn hlen(&self, key: &str) -> impl Future<Output = Result<u64>> + Send {
        ask!(self, Command::HLen { key: key.into() }, "hlen", Reply::Int(n) => count(n))
    }

    /// `ZADD`; how many members were new.
    fn zadd(
        &self,
        key: &str,
        members: Vec<(f64, String)>,
    ) -> impl Future<Output = Result<u64>> + Send {
        self.zadd_with(key, members, ZAddOptions::default())
    }

    /// `ZADD` with `NX`/`XX`/`GT`/`LT`/`CH`; how many members were added
    /// (and changed, with `CH`). `INCR` answers a score: use
    /// [`zadd_incr`](KvStoreExt::zadd_incr), or `execute` for the raw
    /// command; here it is refused before anything is sent.
    fn zadd_with(
        &self,
        key: &str,
        members: Vec<(f64, String)>,
        options: ZAddOptions,
    ) -> impl Future<Output = Result<u64>> + Send {
        let command = Command::ZAdd {
            key: key.into(),
            members,
            options,
        };
        async move {
            if options.incr {
                return Err(
                    Error::invalid("zadd_with: INCR answers a score, use zadd_incr")
                        .with_operation("zadd"),
                );
            }
            match self.execute(command).await? {
                Reply::Int(n) => Ok(count(n)),
                other => Err(unexpected("zadd", other)),
            }
        }
    }

    /// `ZADD ... INCR delta member` with the other flags of `options`: the
    /// new score, or `None` when `NX`/`XX`/`GT`/`LT` prevented the change.
    fn zadd_incr(
        &self,
        key: &str,
        delta: f64,
        member: &str,
        options: ZAddOptions,
    ) -> impl Future<Output = Result<Option<f64>>> + Send {
        let command = Command::ZAdd {
            key: key.into(),
            members: vec![(delta, member.into())],
            options: ZAddOptions {
                incr: true,
                ..options
            },
        };
        ask!(self, command, "zadd", Reply::Score(s) => s)
    }

    /// `ZINCRBY`; the new score.
    fn zincr_by(
        &self,
        key: &str,
        delta: f64,
        member: &str,
    ) -> impl Future<Output = Result<f64>> + Send {
        let command = Command::ZIncrBy {
            key: key.into(),
            delta,
            member: member.into(),
        };
        ask!(self, command, "zincrby", Reply::Float(f) => f)
    }

    /// `ZSCORE`.
    fn zscore(&self, key: &str, member: &str) -> impl Future<Output = Result<Option<f64>>> + Send {
        let command = Command::ZScore {
            key: key.into(),
            member: member.into(),
        };
        ask!(self, command, "zscore", Reply::Score(s) => s)
    }

    /// `ZRANK` (ascending, from 0).
    fn zrank(&self, key: &str, member: &str) -> impl Future<Output = Result<Option<u64>>> + Send {
        let command = Command::ZRank {
            key: key.into(),
            member: member.into(),
            rev: false,
        };
        ask!(self, command, "zrank", Reply::Rank(r) => r)
    }

    /// `ZREVRANK` (descending, from 0).
    fn zrevrank(
        &self,
        key: &str,
        member: &str,
    ) -> impl Future<Output = Result<Option<u64>>> + Send {
        let command = Command::ZRank {
            key: key.into(),
            member: member.into(),
            rev: true,
        };
        ask!(self, command, "zrevrank", Reply::Rank(r) => r)
    }

    /// `ZRANGE ... WITHSCORES`, ascending.
    fn zrange(
        &self,
        key: &str,
        start: i64,
        stop: i64,
    ) -> impl Future<Output = Result<Vec<(String, f64)>>> + Send {
        let command = Command::ZRange {
            key: key.into(),
            start,
            stop,
            rev: false,
        };
        ask!(self, command, "zrange", Reply::Scored(s) => s)
    }

    /// `ZRANGE ... REV WITHSCORES`, descending.
    fn zrevrange(
        &self,
        key: &str,
        start: i64,
        stop: i64,
    ) -> impl Future<Output = Result<Vec<(String, f64)>>> + Send {
        let command = Command::ZRange {
            key: key.into(),
            start,
            stop,
            rev: true,
        };
        ask!(self, command, "zrange", Reply::Scored(s) => s)
    }

    /// `ZRANGEBYSCORE ... WITHSCORES [LIMIT]`, ascending.
    fn zrangebyscore(
        &self,
        key: &str,
        min: ScoreBound,
        max: ScoreBound,
        limit: Option<(u64, u64)>,
    ) -> impl Future<Output = Result<Vec<(String, f64)>>> + Send {
        let command = Command::ZRangeByScore {
            key: key.into(),
            min,
            max,
            rev: false,
            limit,
        };
        ask!(self, command, "zrange", Reply::Scored(s) => s)
    }

    /// `ZREVRANGEBYSCORE key max min WITHSCORES [LIMIT]`, descending (sent
    /// as `ZRANGE ... BYSCORE REV`).
    fn zrevrangebyscore(
        &self,
        key: &str,
        max: ScoreBound,
        min: ScoreBound,
        limit: Option<(u64, u64)>,
    ) -> impl Future<Output = Result<Vec<(String, f64)>>> + Send {
        let command = Command::ZRangeByScore {
            key: key.into(),
            min,
            max,
            rev: true,
            limit,
        };
        ask!(self, command, "zrange", Reply::Scored(s) => s)
    }

    /// `ZCOUNT`.
    fn zcount(
        &self,
        key: &str,
        min: ScoreBound,
        max: ScoreBound,
    ) -> impl Future<Output = Result<u64>> + Send {
        let command = Command::ZCount {
            key: key.into(),
            min,
            max,
        };
        ask!(self, command, "zcount", Reply::Int(n) => count(n))
    }

    /// `ZREMRANGEBYSCORE`; how many were removed.
    fn zremrangebyscore(
        &self,
        key: &str,
        min: ScoreBound,
        max: ScoreBound,
    ) -> impl Future<Output = Result<u64>> + Send {
        let command = Command::ZRemRangeByScore {
            key: key.into(),
            min,
            max,
        };
        ask!(self, command, "zremrangebyscore", Reply::Int(n) => count(n))
    }

    /// `ZREM`; how many were removed.
    fn zrem(&self, key: &str, members: &[String]) -> impl Future<Output = Result<u64>> + Send {
        let command = Command::ZRem {
            key: key.into(),
            members: members.to_vec(),
        };
        ask!(self, command, "zrem", Reply::Int(n) => count(n))
    }

    /// `ZCARD`.
    fn zcard(&self, key: &str) -> impl Future<Output = Result<u64>> + Send {
        ask!(self, Command::ZCard { key: key.into() }, "zcard", Reply::Int(n) => count(n))
    }

    /// Deletes `key` only while it still holds `expected`; `true` if deleted.
    fn compare_and_delete(
        &self,
        key: &str,
        expected: Bytes,
    ) -> impl Future<Output = Result<bool>> + Send {
        let command = Command::CompareAndDelete {
            key: key.into(),
            expected,
        };
        ask!(self, command, "compare_and_delete", Reply::Bool(b) => b)
    }

    /// Takes the lock at `key` for `token` for `ttl` when nobody holds it,
    /// counting a fence at `fence_key` in the same atomic step: the new
    /// fence number (from 1, increasing with every lock taken), or `None`
    /// when the lock is held (also by `token`). Release with
    /// [`compare_and_delete`](KvStoreExt::compare_and_delete) of the token;
    /// extend with [`lock_extend`](KvStoreExt::lock_extend).
    fn lock_acquire(
        &self,
        key: &str,
        token: &str,
        ttl: Duration,
        fence_key: &str,
    ) -> impl Future<Output = Result<Option<u64>>> + Send {
        let command = Command::LockAcquire {
            key: key.into(),
            token: token.into(),
            ttl,
            fence_key: fence_key.into(),
        };
        ask!(self, command, "lock_acquire", Reply::Fence(f) => f)
    }

    /// Sets the lock at `key` to expire `ttl` from now while it still holds
    /// `token`; `true` if it did.
    fn lock_extend(
        &self,
        key: &str,
        token: &str,
        ttl: Duration,
    ) -> impl Future<Output = Result<bool>> + Send {
        let command = Command::LockExtend {
            key: key.into(),
            token: token.into(),
            ttl,
        };
        ask!(self, command, "lock_extend", Reply::Bool(b) => b)
    }

    /// One request of `cost` against at most `limit` per `period` (all of
    /// which may come at once), tracked at `key`: allowed or not, and what
    /// is left. See [`Command::RateLimit`].
    fn rate_limit(
        &self,
        key: &str,
        limit: u32,
        period: Duration,
        cost: u32,
    ) -> impl Future<Output = Result<RateLimitReply>> + Send {
        let command = Command::RateLimit {
            key: key.into(),
            limit,
            period,
            cost,
        };
        ask!(self, command, "rate_limit", Reply::RateLimit(r) => r)
    }

    /// Keeps `member`'s best `score` in the sorted set `key` and when it
    /// was first reached (`at`) in the hash `at_key`; `true` when the score
    /// changed. See [`Command::ZAddBest`].
    fn zadd_best(
        &self,
        key: &str,
        member: &str,
        score: f64,
        at_key: &str,
        at: i64,
    ) -> impl Future<Output = Result<bool>> + Send {
        let command = Command::ZAddBest {
            key: key.into(),
            member: member.into(),
            score,
            at_key: at_key.into(),
            at,
        };
        ask!(self, command, "zadd_best", Reply::Bool(b) => b)
    }

    /// Writes each `(field, value, event time)` of the hash `key` unless
    /// the time stored at `{time_prefix}{field}` is later; which were
    /// written, in order. See [`Command::HSetIfNewer`].
    fn hset_if_newer(
        &self,
        key: &str,
        fields: Vec<(String, Bytes, i64)>,
        time_prefix: &str,
    ) -> impl Future<Output = Result<Vec<bool>>> + Send {
        let command = Command::HSetIfNewer {
            key: key.into(),
            fields,
            time_prefix: time_prefix.into(),
        };
        ask!(self, command, "hset_if_newer", Reply::Bools(b) => b)
    }

    /// `PUBLISH`; how many subscribers received it.
    fn publish(&self, channel: &str, message: Bytes) -> impl Future<Output = Result<u64>> + Send {
        let command = Command::Publish {
            channel: channel.into(),
            message,
        };
        ask!(self, command, "publish", Reply::Int(n) => count(n))
    }

    /// Every key matching the Redis glob `pattern`, sorted, each once.
    ///
    /// Holds every matching key in memory at once: for small key spaces
    /// (an inspection command, a test's own keys). Walk
    /// [`scan`](KvStore::scan) page by page for large ones, as
    /// [`delete_pattern`](KvStoreExt::delete_pattern) does.
    fn scan_all(&self, pattern: &str) -> impl Future<Output = Result<Vec<String>>> + Send {
        self.scan_all_with(ScanOptions::matching(pattern))
    }

    /// Every key `options` selects (`MATCH`, `TYPE`; `COUNT` per step,
    /// [`SCAN_PAGE`] unless given), sorted, each once. In memory at once,
    /// like [`scan_all`](KvStoreExt::scan_all).
    fn scan_all_with(
        &self,
        mut options: ScanOptions,
    ) -> impl Future<Output = Result<Vec<String>>> + Send {
        options.count = Some(options.count.unwrap_or(SCAN_PAGE));
        async move {
            let mut keys = Vec::new();
            let mut cursor = ScanCursor::start();
            loop {
                let page = self.scan(&cursor, &options).await?;
                keys.extend(page.keys);
                if page.cursor.is_start() {
                    break;
                }
                cursor = page.cursor;
            }
            // A key may come back more than once (Redis, during a rehash).
            keys.sort_unstable();
            keys.dedup();
            Ok(keys)
        }
    }

    /// Deletes every key matching `pattern`, one scan step at a time (at
    /// most [`SCAN_PAGE`] keys in memory, one `DEL` per step); how many
    /// were deleted. A key present from start to end is deleted; one added
    /// meanwhile may or may not be.
    fn delete_pattern(&self, pattern: &str) -> impl Future<Output = Result<u64>> + Send {
        let options = ScanOptions::matching(pattern).count(SCAN_PAGE);
        async move {
            let mut deleted = 0;
            let mut cursor = ScanCursor::start();
            loop {
                let page = self.scan(&cursor, &options).await?;
                if !page.keys.is_empty() {
                    deleted += self.del(&page.keys).await?;
                }
                if page.cursor.is_start() {
                    return Ok(deleted);
                }
                cursor = page.cursor;
            }
        }
    }
}

impl<T: KvStore + ?Sized> KvStoreExt for T {}
