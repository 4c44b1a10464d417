//! What a key-value store is asked and what it answers: [`Command`],
//! [`Reply`], the options of the commands that take some, and the shapes of
//! a paged scan.
//!
//! Each `Command` is one Redis command; its documentation names the Redis
//! form and the `Reply` variant it gets. Options are plain flags named
//! after Redis's (`NX`, `XX`, `GT`, ...), so that a combination Redis
//! refuses can be asked for and is refused the same way by every backend,
//! with Redis's words.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use bytes::Bytes;

use crate::error::{Error, Result};

/// When a `SET` writes.
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
    /// Expire after this long (`PX`; millisecond precision). Below one
    /// millisecond it is `PX 0`, which Redis refuses ("invalid expire
    /// time").
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

    /// Keep the current expiry (`KEEPTTL`).
    pub fn keep_ttl(mut self) -> Self {
        self.keep_ttl = true;
        self
    }
}

/// What `GETEX` does to the key's expiry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum GetExpiry {
    /// Nothing (`GETEX key`, the same as `GET`).
    #[default]
    Unchanged,
    /// Expire after this long (`PX`; `EX n` is `After(Duration::from_secs(n))`).
    /// Zero is refused ("invalid expire time"), as Redis refuses it.
    After(Duration),
    /// Remove the expiry (`PERSIST`).
    Persist,
}

/// Conditions of `PEXPIRE` (Redis 7). Each flag is Redis's; Redis refuses
/// `NX` with any other, and `GT` with `LT`, and so does every backend.
///
/// `GT` and `LT` compare the new deadline with the current one, a key
/// without an expiry counting as an infinite one: `GT` never applies to
/// it, `LT` always does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExpireOptions {
    /// `NX`: only when the key has no expiry.
    pub nx: bool,
    /// `XX`: only when the key has an expiry.
    pub xx: bool,
    /// `GT`: only when the new expiry is later than the current one.
    pub gt: bool,
    /// `LT`: only when the new expiry is earlier than the current one.
    pub lt: bool,
}

impl ExpireOptions {
    /// `NX` alone.
    pub fn nx() -> Self {
        ExpireOptions {
            nx: true,
            ..Default::default()
        }
    }

    /// `XX` alone.
    pub fn xx() -> Self {
        ExpireOptions {
            xx: true,
            ..Default::default()
        }
    }

    /// `GT` alone.
    pub fn gt() -> Self {
        ExpireOptions {
            gt: true,
            ..Default::default()
        }
    }

    /// `LT` alone.
    pub fn lt() -> Self {
        ExpireOptions {
            lt: true,
            ..Default::default()
        }
    }

    /// Redis's refusal of a combination of flags, checked before anything
    /// else (before the time and the key). Every backend answers it alike.
    pub fn check(&self) -> Result<()> {
        if self.nx && (self.xx || self.gt || self.lt) {
            return Err(Error::invalid(
                "ERR NX and XX, GT or LT options at the same time are not compatible",
            ));
        }
        if self.gt && self.lt {
            return Err(Error::invalid(
                "ERR GT and LT options at the same time are not compatible",
            ));
        }
        Ok(())
    }

    /// Whether any flag is set.
    pub fn any(&self) -> bool {
        self.nx || self.xx || self.gt || self.lt
    }
}

/// Flags of `ZADD` (Redis 7). Each flag is Redis's; Redis refuses `NX` with
/// `XX`, `GT`/`LT`/`NX` together, and `INCR` with more than one member, and
/// so does every backend, with Redis's words.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ZAddOptions {
    /// `NX`: only add new members, never update.
    pub nx: bool,
    /// `XX`: only update existing members, never add.
    pub xx: bool,
    /// `GT`: update only to a higher score (new members are still added).
    pub gt: bool,
    /// `LT`: update only to a lower score (new members are still added).
    pub lt: bool,
    /// `CH`: count changed members too, not only added ones.
    pub ch: bool,
    /// `INCR`: add the score to the member's (like `ZINCRBY`); the reply is
    /// the new score, or nil when a condition prevented it.
    pub incr: bool,
}

impl ZAddOptions {
    /// How many flags are set (each is one argument of the command).
    pub(crate) fn flag_count(&self) -> usize {
        [self.nx, self.xx, self.gt, self.lt, self.ch, self.incr]
            .iter()
            .filter(|f| **f)
            .count()
    }

    /// Redis's checks of the arguments of `ZADD` with `members` pairs, in
    /// Redis's order: the argument count, then the flag combinations (the
    /// scores and the key come later).
    pub fn check(&self, members: usize) -> Result<()> {
        if members == 0 {
            // `ZADD key` plus the flags: fewer than four arguments is an
            // arity error, more with no pair a syntax error.
            return Err(if 2 + self.flag_count() < 4 {
                Error::invalid("ERR wrong number of arguments for 'zadd' command")
            } else {
                Error::invalid("ERR syntax error")
            });
        }
        if self.nx && self.xx {
            return Err(Error::invalid(
                "ERR XX and NX options at the same time are not compatible",
            ));
        }
        // At most one of GT, LT and NX (Redis tests the three pairs).
        if (self.nx && (self.gt || self.lt)) || (self.gt && self.lt) {
            return Err(Error::invalid(
                "ERR GT, LT, and/or NX options at the same time are not compatible",
            ));
        }
        if self.incr && members > 1 {
            return Err(Error::invalid(
                "ERR INCR option supports a single increment-element pair",
            ));
        }
        Ok(())
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

/// One end of a score range (`ZRANGEBYSCORE`, `ZCOUNT`).
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

/// The type of the value at a key (`TYPE`, `SCAN ... TYPE`).
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

/// Where a paged scan stands: `0` starts a scan, and a page whose cursor is
/// `0` is the last. Anything else is a token to hand back unchanged to the
/// store that issued it.
///
/// Redis's cursors are Redis's own numbers. The embedded store's cursor is
/// `k` followed by the last key it examined, in lowercase hex: it scans in
/// key order and goes on after that key, so its cursor stays valid whatever
/// is added or removed meanwhile.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ScanCursor(String);

impl ScanCursor {
    /// The cursor that starts a scan (and that ends one).
    pub fn start() -> Self {
        ScanCursor("0".to_owned())
    }

    /// A cursor as a store handed it out (or as a caller kept it).
    pub fn new(token: impl Into<String>) -> Self {
        ScanCursor(token.into())
    }

    /// Whether this is `0`: the start, and, as a page's cursor, the end.
    pub fn is_start(&self) -> bool {
        self.0 == "0"
    }

    /// The token.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for ScanCursor {
    fn default() -> Self {
        ScanCursor::start()
    }
}

impl fmt::Display for ScanCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The arguments of one `SCAN` step besides the cursor.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScanOptions {
    /// `MATCH`: a Redis glob (see [`pattern`](super::pattern)); `None` for
    /// every key.
    pub pattern: Option<String>,
    /// `COUNT`: how much one step examines (Redis: about this many keys or
    /// hash buckets; embedded: exactly this many keys in order, before
    /// `MATCH` and `TYPE` filter them). `None` is Redis's default, 10. Zero
    /// is refused ("syntax error").
    pub count: Option<u64>,
    /// `TYPE`: only keys holding this type. [`KeyType::None`] selects
    /// nothing.
    pub key_type: Option<KeyType>,
}

impl ScanOptions {
    /// Keys matching `pattern`.
    pub fn matching(pattern: impl Into<String>) -> Self {
        ScanOptions {
            pattern: Some(pattern.into()),
            ..Default::default()
        }
    }

    /// With `COUNT count`.
    pub fn count(mut self, count: u64) -> Self {
        self.count = Some(count);
        self
    }

    /// With `TYPE key_type`.
    pub fn of_type(mut self, key_type: KeyType) -> Self {
        self.key_type = Some(key_type);
        self
    }

    /// The effective `COUNT`, refused as Redis refuses it: zero is a
    /// syntax error, beyond `i64::MAX` out of range.
    pub fn checked_count(&self) -> Result<u64> {
        match self.count {
            None => Ok(10),
            Some(0) => Err(Error::invalid("ERR syntax error")),
            Some(n) if n > i64::MAX as u64 => Err(Error::invalid(
                "ERR value is not an integer or out of range",
            )),
            Some(n) => Ok(n),
        }
    }
}

/// One step of a scan: the cursor to continue from (`0` when the scan is
/// complete) and the keys this step found, in no particular order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScanPage {
    /// Where to continue; `0` after the last step.
    pub cursor: ScanCursor,
    /// Keys found by this step (possibly none, also before the end).
    pub keys: Vec<String>,
}

impl ScanPage {
    /// Whether this was the last step.
    pub fn is_last(&self) -> bool {
        self.cursor.is_start()
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
    /// `SET key value [PX ms] [NX|XX] [KEEPTTL] GET` → `Reply::Value`: the
    /// value before the command (nil when there was none), whether or not
    /// `NX`/`XX` let it write. A key holding another type fails with
    /// WRONGTYPE and is left as it is.
    SetGet {
        key: String,
        value: Bytes,
        options: SetOptions,
    },
    /// `GETDEL key` → `Reply::Value` (the value deleted).
    GetDel { key: String },
    /// `GETEX key [PX ms | PERSIST]` → `Reply::Value`.
    GetEx { key: String, expiry: GetExpiry },
    /// `MGET keys...` → `Reply::Values`.
    MGet { keys: Vec<String> },
    /// `MSET k v ...` → `Reply::Ok`.
    MSet { pairs: Vec<(String, Bytes)> },
    /// `MSETNX k v ...` → `Reply::Bool`: all were written, because none of
    /// the keys existed (of any type), or none was.
    MSetNx { pairs: Vec<(String, Bytes)> },
    /// `APPEND key value` → `Reply::Int` (the new length).
    Append { key: String, value: Bytes },
    /// `STRLEN key` → `Reply::Int` (0 for a missing key).
    StrLen { key: String },
    /// `DEL keys...` → `Reply::Int` (deleted).
    Del { keys: Vec<String> },
    /// `EXISTS keys...` → `Reply::Int` (how many exist).
    Exists { keys: Vec<String> },
    /// `PEXPIRE key ms [NX|XX|GT|LT]` → `Reply::Bool` (the expiry was set,
    /// or the key deleted by an expiry of zero).
    Expire {
        key: String,
        ttl: Duration,
        options: ExpireOptions,
    },
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
    /// `HSETNX key field value` → `Reply::Bool` (the field was new and set).
    HSetNx {
        key: String,
        field: String,
        value: Bytes,
    },
    /// `HGET key field` → `Reply::Value`.
    HGet { key: String, field: String },
    /// `HMGET key fields...` → `Reply::Values`.
    HMGet { key: String, fields: Vec<String> },
    /// `HGETALL key` → `Reply::Hash`.
    HGetAll { key: String },
    /// `HKEYS key` → `Reply::Fields`, sorted bytewise.
    HKeys { key: String },
    /// `HVALS key` → `Reply::Blobs`, sorted bytewise (Redis's own order is
    /// its hash table's, so both backends sort).
    HVals { key: String },
    /// `HEXISTS key field` → `Reply::Bool`.
    HExists { key: String, field: String },
    /// `HSTRLEN key field` → `Reply::Int` (0 for a missing field or key).
    HStrLen { key: String, field: String },
    /// `HDEL key fields...` → `Reply::Int` (removed).
    HDel { key: String, fields: Vec<String> },
    /// `HINCRBY key field delta` → `Reply::Int` (new value).
    HIncrBy {
        key: String,
        field: String,
        delta: i64,
    },
    /// `HINCRBYFLOAT key field delta` → `Reply::Float` (new value).
    HIncrByFloat {
        key: String,
        field: String,
        delta: f64,
    },
    /// `HLEN key` → `Reply::Int`.
    HLen { key: String },
    /// `ZADD key [NX|XX] [GT|LT] [CH] [INCR] score member ...` →
    /// `Reply::Int` (members added, plus changed with `CH`); with `INCR`,
    /// `Reply::Score` (the new score, nil when a condition prevented it).
    ZAdd {
        key: String,
        members: Vec<(f64, String)>,
        options: ZAddOptions,
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
    /// `ZRANGE key min max BYSCORE [REV] [LIMIT offset count] WITHSCORES`
    /// → `Reply::Scored`, ascending, or descending with `rev` (then Redis
    /// takes the bounds as `max min`, as `ZREVRANGEBYSCORE` does; `min` and
    /// `max` here always mean the low and the high end).
    ZRangeByScore {
        key: String,
        min: ScoreBound,
        max: ScoreBound,
        rev: bool,
        limit: Option<(u64, u64)>,
    },
    /// `ZCOUNT key min max` → `Reply::Int`.
    ZCount {
        key: String,
        min: ScoreBound,
        max: ScoreBound,
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
    /// Take a fenced lock, in one atomic step: when `key` does not exist,
    /// `SET key token PX ttl` and `INCR fence_key` → `Reply::Fence` with the
    /// new fence number; when `key` exists (held by anyone, even by
    /// `token`, of any type) nothing changes → `Reply::Fence(None)`.
    ///
    /// The counter at `fence_key` is never given an expiry, so fence numbers
    /// only increase (from 1); a bad expiry (`SET`'s "invalid expire time")
    /// or a counter that is not an integer (`INCR`'s errors) fails and
    /// changes nothing. `fence_key` must differ from `key`. Release with
    /// [`CompareAndDelete`](Command::CompareAndDelete).
    LockAcquire {
        key: String,
        token: String,
        ttl: Duration,
        fence_key: String,
    },
    /// Extend a lock, atomically: `PEXPIRE key ttl` only if `key` holds
    /// exactly `token` → `Reply::Bool` (extended). As `PEXPIRE`, an expiry
    /// of zero deletes the key (answering `true`); a key of another type
    /// fails with WRONGTYPE.
    LockExtend {
        key: String,
        token: String,
        ttl: Duration,
    },
    /// One decision of a rate limiter (the generic cell rate algorithm),
    /// atomically → `Reply::RateLimit`.
    ///
    /// `limit` requests per `period`, all of which may come at once (the
    /// burst); each request costs `cost` of them. `key` holds the
    /// theoretical arrival time (integer microseconds of Unix time) and
    /// expires once the limiter is full again, so an idle key vanishes. A
    /// refused request consumes nothing; a `cost` of 0 only reports.
    /// Refused before anything is read (`InvalidInput`): a `limit` or
    /// `period` of 0, a period below one microsecond per request or above
    /// 2^52 microseconds, a `cost` above `limit` (it could never be
    /// allowed). The clock is the store's: Redis's `TIME`, the embedded
    /// store's system clock.
    RateLimit {
        key: String,
        limit: u32,
        period: Duration,
        cost: u32,
    },
    /// A best-score submission, in one atomic step → `Reply::Bool` (the
    /// score changed): when `member` is absent from the sorted set `key`
    /// or `score` is strictly above its score (`ZADD GT`), set the score
    /// and `HSET at_key member at`; when `score` equals it and `at` is
    /// earlier than the time stored at `at_key` (or none is), store `at`
    /// (the earliest reaching of a score wins ties); otherwise nothing.
    ///
    /// A NaN score is refused as `ZADD` refuses it, before the keys' types;
    /// either key holding another type fails with WRONGTYPE and changes
    /// nothing; a stored time that is not an integer, when it has to be
    /// compared, fails with `InvalidInput` and changes nothing. `at_key`
    /// must differ from `key`.
    ZAddBest {
        key: String,
        member: String,
        score: f64,
        at_key: String,
        at: i64,
    },
    /// Write hash fields unless older, in one atomic step for all of them
    /// → `Reply::Bools`, one per field in order (written).
    ///
    /// Each entry is `(field, value, event time)`. The event time of
    /// `field` is kept in the same hash at `{time_prefix}{field}`, as
    /// integer text; `field` and its time are written when the new time is
    /// at or after the stored one, or none is stored. Entries apply in
    /// order (a field named twice sees the first write). A stored time that
    /// is not an integer fails with `InvalidInput` naming the field, a key
    /// of another type with WRONGTYPE; either changes nothing. Refused
    /// before anything is read: no entries, an empty `time_prefix`, a field
    /// that starts with `time_prefix` (it could clobber a time).
    HSetIfNewer {
        key: String,
        fields: Vec<(String, Bytes, i64)>,
        time_prefix: String,
    },
    /// `PUBLISH channel message` → `Reply::Int` (subscribers reached).
    Publish { channel: String, message: Bytes },
}

impl Command {
    /// The Redis command name, for errors and logs.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Get { .. } => "get",
            Command::Set { .. } | Command::SetGet { .. } => "set",
            Command::GetDel { .. } => "getdel",
            Command::GetEx { .. } => "getex",
            Command::MGet { .. } => "mget",
            Command::MSet { .. } => "mset",
            Command::MSetNx { .. } => "msetnx",
            Command::Append { .. } => "append",
            Command::StrLen { .. } => "strlen",
            Command::Del { .. } => "del",
            Command::Exists { .. } => "exists",
            Command::Expire { .. } => "pexpire",
            Command::Ttl { .. } => "pttl",
            Command::Persist { .. } => "persist",
            Command::Type { .. } => "type",
            Command::IncrBy { .. } => "incrby",
            Command::IncrByFloat { .. } => "incrbyfloat",
            Command::HSet { .. } => "hset",
            Command::HSetNx { .. } => "hsetnx",
            Command::HGet { .. } => "hget",
            Command::HMGet { .. } => "hmget",
            Command::HGetAll { .. } => "hgetall",
            Command::HKeys { .. } => "hkeys",
            Command::HVals { .. } => "hvals",
            Command::HExists { .. } => "hexists",
            Command::HStrLen { .. } => "hstrlen",
            Command::HDel { .. } => "hdel",
            Command::HIncrBy { .. } => "hincrby",
            Command::HIncrByFloat { .. } => "hincrbyfloat",
            Command::HLen { .. } => "hlen",
            Command::ZAdd { .. } => "zadd",
            Command::ZIncrBy { .. } => "zincrby",
            Command::ZScore { .. } => "zscore",
            Command::ZRank { rev: false, .. } => "zrank",
            Command::ZRank { rev: true, .. } => "zrevrank",
            Command::ZRange { .. } | Command::ZRangeByScore { .. } => "zrange",
            Command::ZCount { .. } => "zcount",
            Command::ZRemRangeByScore { .. } => "zremrangebyscore",
            Command::ZRem { .. } => "zrem",
            Command::ZCard { .. } => "zcard",
            Command::CompareAndDelete { .. } => "compare_and_delete",
            Command::LockAcquire { .. } => "lock_acquire",
            Command::LockExtend { .. } => "lock_extend",
            Command::RateLimit { .. } => "rate_limit",
            Command::ZAddBest { .. } => "zadd_best",
            Command::HSetIfNewer { .. } => "hset_if_newer",
            Command::Publish { .. } => "publish",
        }
    }

    /// The checks of the arguments of the commands that are strata's own
    /// (not Redis's): every backend runs them first, so the same bad
    /// command is refused alike, before anything is read or sent. The
    /// other commands are judged as Redis judges them, by each backend.
    pub(crate) fn check(&self) -> Result<()> {
        match self {
            Command::LockAcquire { key, fence_key, .. } if key == fence_key => Err(Error::invalid(
                "lock_acquire: the fence key must differ from the lock key",
            )),
            Command::RateLimit {
                limit,
                period,
                cost,
                ..
            } => {
                rate_interval(*limit, *period)?;
                if cost > limit {
                    return Err(Error::invalid(format!(
                        "rate_limit: a cost of {cost} is above the limit of {limit}, so it could never be allowed"
                    )));
                }
                Ok(())
            }
            Command::ZAddBest { score, .. } if score.is_nan() => {
                Err(Error::invalid("ERR value is not a valid float"))
            }
            Command::ZAddBest { key, at_key, .. } if key == at_key => Err(Error::invalid(
                "zadd_best: the key of the times must differ from the sorted set's",
            )),
            Command::HSetIfNewer {
                fields,
                time_prefix,
                ..
            } => {
                if fields.is_empty() {
                    return Err(Error::invalid(
                        "ERR wrong number of arguments for 'hset_if_newer' command",
                    ));
                }
                if time_prefix.is_empty() {
                    return Err(Error::invalid(
                        "hset_if_newer: the time prefix must not be empty",
                    ));
                }
                if let Some((field, _, _)) = fields
                    .iter()
                    .find(|(f, _, _)| f.starts_with(time_prefix.as_str()))
                {
                    return Err(Error::invalid(format!(
                        "hset_if_newer: field '{field}' starts with the time prefix '{time_prefix}'"
                    ))
                    .with_field(field.clone()));
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

/// The longest rate-limit period, in microseconds: 2^52 (about 142 years),
/// so that a theoretical arrival time (Unix time plus at most one period)
/// stays an exact integer in a double, the only number type of Redis's Lua.
const MAX_RATE_PERIOD_MICROS: u64 = 1 << 52;

/// The emission interval of a rate limit of `limit` requests per `period`:
/// whole microseconds per request (rounded down, so that `limit` requests
/// always fit in the period). Refuses what could not be limited.
pub(crate) fn rate_interval(limit: u32, period: Duration) -> Result<u64> {
    if limit == 0 {
        return Err(Error::invalid(
            "rate_limit: a limit of 0 allows nothing; the limit must be at least 1",
        ));
    }
    if period.is_zero() {
        return Err(Error::invalid("rate_limit: the period must be above zero"));
    }
    let micros = u64::try_from(period.as_micros()).unwrap_or(u64::MAX);
    if micros > MAX_RATE_PERIOD_MICROS {
        return Err(Error::invalid(format!(
            "rate_limit: a period of {period:?} is out of range (at most 2^52 microseconds, about 142 years)"
        )));
    }
    let interval = micros / u64::from(limit);
    if interval == 0 {
        return Err(Error::invalid(format!(
            "rate_limit: a period of {period:?} for a limit of {limit} is below one microsecond per request"
        )));
    }
    Ok(interval)
}

/// A fence number as `lock_acquire` answers it: the counter after its
/// `INCR`, which starts at 1 unless something else wrote the counter.
pub(crate) fn fence_number(counter: i64) -> Result<u64> {
    u64::try_from(counter)
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| {
            Error::internal(format!(
                "the fence counter went to {counter}: something other than lock_acquire wrote it"
            ))
        })
}

/// The answer of a rate limiter ([`Command::RateLimit`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimitReply {
    /// Whether the request is allowed (and was counted).
    pub allowed: bool,
    /// How many requests of cost 1 would still be allowed right now, after
    /// this one.
    pub remaining: u32,
    /// How long until the same request would be allowed; zero when it was.
    pub retry_after: Duration,
    /// How long until the limiter is full again (`remaining` = `limit`).
    pub reset_after: Duration,
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
    /// Values, sorted bytewise (`HVALS`).
    Blobs(Vec<Bytes>),
    /// Names, sorted bytewise (`HKEYS`).
    Fields(Vec<String>),
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
    /// Yes/no outcomes, one per item asked, in order.
    Bools(Vec<bool>),
    /// A fence number, or nil when the lock was not taken.
    Fence(Option<u64>),
    /// A rate limiter's decision.
    RateLimit(RateLimitReply),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The ZADD refusals, in Redis's order; `kv_conformance`'s
    /// `zadd_flag_matrix_matches_redis` checks the same matrix against
    /// both backends.
    #[test]
    fn zadd_flag_combinations_are_refused_in_redis_order() {
        let z = |nx, xx, gt, lt, ch, incr| ZAddOptions {
            nx,
            xx,
            gt,
            lt,
            ch,
            incr,
        };
        let message = |options: ZAddOptions, members| {
            options.check(members).err().map(|e| e.message().to_owned())
        };
        let arity = Some("ERR wrong number of arguments for 'zadd' command".to_owned());
        let syntax = Some("ERR syntax error".to_owned());
        let nx_xx = Some("ERR XX and NX options at the same time are not compatible".to_owned());
        let gt_lt_nx =
            Some("ERR GT, LT, and/or NX options at the same time are not compatible".to_owned());
        let incr = Some("ERR INCR option supports a single increment-element pair".to_owned());
        assert_eq!(message(ZAddOptions::default(), 0), arity);
        assert_eq!(
            message(z(true, false, false, false, false, false), 0),
            arity
        );
        assert_eq!(
            message(z(true, true, false, false, false, false), 0),
            syntax
        );
        assert_eq!(
            message(z(false, false, true, false, true, false), 0),
            syntax
        );
        assert_eq!(message(z(true, true, false, false, false, false), 1), nx_xx);
        // NX+XX is named before GT+LT.
        assert_eq!(message(z(true, true, true, true, false, false), 1), nx_xx);
        assert_eq!(
            message(z(true, false, true, false, false, false), 1),
            gt_lt_nx
        );
        assert_eq!(
            message(z(true, false, false, true, false, false), 1),
            gt_lt_nx
        );
        assert_eq!(
            message(z(false, false, true, true, false, false), 1),
            gt_lt_nx
        );
        assert_eq!(
            message(z(false, false, true, true, false, true), 2),
            gt_lt_nx
        );
        assert_eq!(message(z(false, false, false, false, false, true), 2), incr);
        for allowed in [
            z(false, true, true, false, true, false),
            z(false, true, false, true, false, true),
            z(true, false, false, false, true, true),
            z(false, false, true, false, false, true),
            ZAddOptions::default(),
        ] {
            assert_eq!(message(allowed, 1), None, "{allowed:?}");
        }
    }

    #[test]
    fn expire_flag_combinations_are_refused_like_redis() {
        let e = |nx, xx, gt, lt| ExpireOptions { nx, xx, gt, lt };
        let nx_other =
            Some("ERR NX and XX, GT or LT options at the same time are not compatible".to_owned());
        let gt_lt = Some("ERR GT and LT options at the same time are not compatible".to_owned());
        let message = |o: ExpireOptions| o.check().err().map(|e| e.message().to_owned());
        assert_eq!(message(e(true, true, false, false)), nx_other);
        assert_eq!(message(e(true, false, true, false)), nx_other);
        assert_eq!(message(e(true, false, false, true)), nx_other);
        assert_eq!(message(e(true, true, true, true)), nx_other);
        assert_eq!(message(e(false, false, true, true)), gt_lt);
        assert_eq!(message(e(false, true, true, true)), gt_lt);
        for allowed in [
            e(false, true, true, false),
            e(false, true, false, true),
            e(true, false, false, false),
            ExpireOptions::default(),
        ] {
            assert_eq!(message(allowed), None, "{allowed:?}");
        }
    }

    #[test]
    fn scan_counts_are_checked_like_redis() {
        assert_eq!(ScanOptions::default().checked_count().unwrap(), 10);
        let zero = ScanOptions::default().count(0).checked_count().unwrap_err();
        assert_eq!(zero.message(), "ERR syntax error");
        assert!(
            ScanOptions::default()
                .count(u64::MAX)
                .checked_count()
                .is_err()
        );
        assert!(ScanCursor::start().is_start());
        assert!(!ScanCursor::new("k61").is_start());
    }
}
