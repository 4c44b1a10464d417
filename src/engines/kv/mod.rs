//! The key-value engine: a Redis-shaped store of strings, hashes and sorted
//! sets with expiry, pipelines, paged scans and publish/subscribe.
//!
//! # Layout
//!
//! - this module: [`KvStore`], the small core a backend implements, and the
//!   contracts every backend keeps;
//! - `command`: [`Command`] and [`Reply`], the options of the commands that
//!   take some, and the shapes of a paged scan;
//! - `ext`: [`KvStoreExt`], the typed helpers (`get`, `set`, `zadd`,
//!   `delete_pattern`, ...) every store has, built on the core alone;
//! - `subscription`: the bounded buffer behind a [`Subscription`];
//! - `pattern`: Redis's glob matching, for the embedded `SCAN MATCH`;
//! - [`embedded`] and [`redis`]: the two backends.
//!
//! Every operation is a [`Command`] answered by a [`Reply`]: a backend
//! implements [`KvStore::execute`] and [`KvStore::pipeline`] (plus `scan`,
//! `subscribe`, `info`, `ping`), and everything typed is provided on top
//! by [`KvStoreExt`], which no backend can override. A layer that wraps an
//! `Arc<dyn KvStore>` (timeouts, retries, metrics, a circuit breaker)
//! therefore sees every operation through the core methods.
//!
//! # Contracts every implementation keeps
//!
//! Redis 7 is the reference: an answer, an error's kind and an error's
//! message (`ERR ...`, `WRONGTYPE ...`) are Redis's. The differences that
//! remain are listed, each with its test, in `docs/engines.md`.
//!
//! - `get` of a missing or expired key is `Ok(None)`; `del` of a missing key
//!   counts zero and succeeds.
//! - An operation of one type against a key holding another (a hash command
//!   on a string) fails with
//!   [`ErrorKind::WrongType`](crate::error::ErrorKind::WrongType) and changes
//!   nothing. Reading commands of the wrong type fail the same way, except
//!   `mget`, which answers nil for a key that is not a string (as Redis
//!   does); `SET ... GET` on a non-string fails with `WrongType` and does
//!   not write; `compare_and_delete`, `lock_extend` and `rate_limit` on a
//!   non-string fail with `WrongType`, and so do `zadd_best` and
//!   `hset_if_newer` on a key that is not a sorted set (a hash for the
//!   times). `lock_acquire` answers `None` for a lock key of any type.
//! - Arguments Redis refuses are refused with `InvalidInput` and Redis's
//!   message, before anything changes, and in Redis's order of checks (an
//!   incompatible flag combination before a bad score, a bad score before
//!   the key's type): `ZADD` `NX`+`XX`, `GT`/`LT`/`NX` together, `INCR` with
//!   several members; `PEXPIRE` `NX` with another flag, `GT`+`LT`; a `SCAN`
//!   `COUNT` of 0; a NaN score; a cursor the store cannot read.
//! - `incr_by` on a value that is not a base-10 64-bit integer, or that would
//!   overflow, fails with `InvalidInput` and changes nothing; a missing key
//!   counts as 0. The float increments refuse a NaN or infinite result.
//! - Expiry: `set` without `keep_ttl` clears any expiry, `INCRBY`,
//!   `APPEND` and collection writes keep it. `PEXPIRE` of a missing key
//!   answers `false`; an expiry of zero deletes the key at once (answering
//!   `true`) where `PEXPIRE` would have applied it, while `SET PX 0` and
//!   `GETEX PX 0` are refused ("invalid expire time"), as in Redis; a
//!   deadline beyond `i64::MAX` milliseconds of Unix time is refused too.
//!   `GT`/`LT` compare deadlines, a key without expiry counting as an
//!   infinite one. An expired key is gone for every command.
//! - A hash or sorted set whose last field or member is removed is deleted.
//! - `zrange` indexes are inclusive and may be negative (from the end), as
//!   Redis's; members with equal scores order by member, bytewise.
//!   `HGETALL`, `HKEYS` and `HVALS` answer sorted bytewise (Redis's own
//!   order is its hash table's).
//! - `MSETNX` writes all its keys or none, none when any of them exists
//!   (of any type).
//! - `pipeline` answers each command in order, in one round trip; a failing
//!   command gets its own `Err` and does not stop the others.
//! - `compare_and_delete` deletes the key only if it holds exactly the given
//!   value, atomically.
//! - The atomic commands below are strata's own, each ONE atomic step on
//!   every backend (a Lua script on Redis; one critical section under the
//!   write locks of all their keys in the embedded store): no other
//!   command's write interleaves with them. Their own argument checks
//!   (`Command::check`) come first and are alike everywhere; a failure
//!   after them (a key of another type, a stored number that is not an
//!   integer) changes nothing.
//!   - `lock_acquire` takes a lock that nobody holds (`SET NX PX`) and
//!     counts a fence number at a second key (`INCR`) together; a lock
//!     held, even by the same token, answers `None` and changes nothing.
//!     The fence counter never expires and only increases, so fence
//!     numbers order the holders. `lock_extend` is `PEXPIRE` while the
//!     lock holds the token; release is `compare_and_delete`.
//!   - `rate_limit` is the generic cell rate algorithm: `limit` requests
//!     per `period`, all of which may come at once, then one per
//!     `period / limit`. The key holds the theoretical arrival time and
//!     expires when the limiter is full again. A refused request consumes
//!     nothing; cost 0 only reports. The clock is the store's (Redis's
//!     `TIME`, the embedded store's system clock). A limit or period of
//!     0, a period below one microsecond per request, a cost above the
//!     limit are `InvalidInput`.
//!   - `zadd_best` writes a member's score only when it is new or
//!     strictly higher (`ZADD GT`) and then records when (`at`) in a hash;
//!     an equal score keeps the earliest `at`.
//!   - `hset_if_newer` writes each field with its event time (kept in the
//!     hash at `time_prefix + field`) unless the stored time is later; an
//!     equal time writes, so a repeat is harmless.
//! - `scan` is Redis's `SCAN`: a page per call, cursor `0` to start and as
//!   the last page's cursor; a key present from the first call to the last
//!   is returned at least once; a key added or removed meanwhile may or may
//!   not be; `MATCH` and `TYPE` filter. Pages may be empty before the end.
//! - `subscribe` returns once the subscription is active: a message published
//!   after it returns is delivered. A subscription buffers a bounded number
//!   of messages; a reader that falls behind loses the oldest and is told
//!   how many (`Lagged`), and a subscription the backend lost ends with an
//!   error (see [`Subscription::next`]). Memory never grows with a slow
//!   reader.
//! - Keys live in the store's namespace: an implementation may prefix them
//!   (the Redis adapter's `key_prefix`), but callers never see the prefix.

use async_trait::async_trait;

use crate::error::Result;

mod command;
pub mod embedded;
mod ext;
pub mod pattern;
pub mod redis;
mod subscription;

pub use command::{
    Command, ExpireOptions, GetExpiry, KeyType, KvInfo, RateLimitReply, Reply, ScanCursor,
    ScanOptions, ScanPage, ScoreBound, SetCondition, SetOptions, Ttl, ZAddOptions,
};
pub use ext::{KvStoreExt, SCAN_PAGE};
pub use subscription::{
    DEFAULT_SUBSCRIPTION_CAPACITY, PubSubMessage, Subscription, SubscriptionEvent, SubscriptionFeed,
};

/// A Redis-shaped key-value store: the core a backend implements.
///
/// Implementations: [`embedded::EmbeddedKv`] (in-process, moka-backed,
/// memory-bounded, LRU) and [`redis::RedisKv`]. Callers use the typed
/// helpers of [`KvStoreExt`], which every `KvStore` has and none can
/// override; the module documentation lists the contracts of the commands,
/// and `tests/kv_conformance.rs` checks them against every implementation.
///
/// A store that wraps another (a timeout, retry or metrics layer) implements
/// these methods by forwarding them; it then sees every operation.
#[async_trait]
pub trait KvStore: Send + Sync + std::fmt::Debug {
    /// The implementation: `"embedded"` or `"redis"`.
    fn kind(&self) -> &'static str;

    /// Where it stores, for humans. MUST NOT show a secret.
    fn target(&self) -> String;

    /// Its connection pool's use; `None` for an engine without one.
    fn pool_use(&self) -> Option<crate::engines::PoolUse> {
        None
    }

    /// Checks that the store answers.
    ///
    /// MUST fail with `Unavailable` (or `AuthenticationFailed`, `Timeout`)
    /// when a command would fail for the same reason.
    async fn ping(&self) -> Result<()>;

    /// Runs one command.
    ///
    /// MUST answer with the [`Reply`] variant the [`Command`] variant
    /// documents (anything else is a bug the helpers report as `Internal`),
    /// keep every contract of the module documentation, and refuse a
    /// command it cannot run with `Unsupported` naming it, never ignoring
    /// an option. An error carries the command's name as its operation.
    async fn execute(&self, command: Command) -> Result<Reply>;

    /// Runs commands in order, in one round trip where there is a trip.
    ///
    /// MUST answer one result per command, in order, each exactly what
    /// [`execute`](KvStore::execute) would have answered at that point: a
    /// failing command gets its own `Err` and the others still run. The
    /// outer `Err` is for the pipeline as a whole (the connection failed).
    /// Not a transaction: other clients' commands may interleave.
    async fn pipeline(&self, commands: Vec<Command>) -> Result<Vec<Result<Reply>>>;

    /// One step of Redis's `SCAN cursor [MATCH pattern] [COUNT n] [TYPE t]`:
    /// the keys this step found and the cursor to continue from.
    ///
    /// MUST hold:
    /// - `cursor` `0` starts a scan; the last page's cursor is `0`.
    /// - A key that exists from the first step to the last is returned at
    ///   least once (possibly more than once); a key added or removed
    ///   meanwhile may or may not be.
    /// - Only keys matching the glob `pattern` (`*`, `?`, `[a-z]`, `[^x]`,
    ///   `\` escapes, byte-wise) and of type `key_type` are returned;
    ///   expired keys never are.
    /// - A step does a bounded amount of work (about `count` keys examined),
    ///   so a step may return no key before the end, and never blocks the
    ///   server or the store for long (no `KEYS`).
    /// - A cursor the store cannot read, or a `count` of 0, is
    ///   `InvalidInput` with Redis's message.
    ///
    /// [`KvStoreExt::scan_all`] collects every step;
    /// [`KvStoreExt::delete_pattern`] deletes step by step.
    async fn scan(&self, cursor: &ScanCursor, options: &ScanOptions) -> Result<ScanPage>;

    /// Subscribes one [`Subscription`] to `channels` (at least one, else
    /// `InvalidInput`).
    ///
    /// MUST return only once the subscription is active, so a message
    /// published afterwards is delivered; MUST buffer at most the store's
    /// configured capacity of messages, reporting drops as
    /// [`SubscriptionEvent::Lagged`]; MUST end the subscription with an
    /// error when the backend loses it (a dropped connection), so the
    /// caller can resubscribe. Dropping the subscription unsubscribes.
    async fn subscribe(&self, channels: &[String]) -> Result<Subscription>;

    /// Key count and memory use.
    async fn info(&self) -> Result<KvInfo>;
}
