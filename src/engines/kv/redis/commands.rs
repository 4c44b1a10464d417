//! The mapping between [`Command`]/[`Reply`] and Redis's wire commands and
//! replies.
//!
//! [`encode`] turns a command into the one Redis command that implements it,
//! with the key prefix applied; [`decode`] turns the reply into the `Reply`
//! variant the command documents. Both are used alike by single commands and
//! by pipelines, so a command answers the same either way.
//!
//! Replies are accepted in RESP2 and RESP3 shapes (a score is a bulk string
//! in RESP2 and a double in RESP3; `HGETALL` is a flat array or a map;
//! `WITHSCORES` is flat or nested), so the adapter does not depend on the
//! protocol the URL asks for.

use std::collections::BTreeMap;

use bb8_redis::redis::{Cmd, Value, cmd};
use bytes::Bytes;

use super::errors;
use super::scripts::{Lua, ScriptCall};
use crate::engines::kv::command::{fence_number, rate_interval};
use crate::engines::kv::{
    Command, ExpireOptions, GetExpiry, KeyType, RateLimitReply, Reply, ScanCursor, ScanOptions,
    ScoreBound, SetCondition, SetOptions, Ttl, ZAddOptions,
};
use crate::error::{Error, Result};

/// How a command is sent.
#[derive(Debug)]
pub(super) enum Encoded {
    /// One Redis command.
    Plain(Cmd),
    /// A Lua script (see `scripts`): `EVALSHA` when sent alone, `EVAL` in
    /// a pipeline.
    Script(ScriptCall),
}

/// The one Redis command for `command`, every key prefixed with `prefix`:
/// a script becomes its `EVAL`, which is what a pipeline needs (one reply,
/// no `NOSCRIPT` round trip).
pub(super) fn encode(prefix: &str, command: &Command) -> Result<Cmd> {
    Ok(match encode_call(prefix, command)? {
        Encoded::Plain(c) => c,
        Encoded::Script(call) => call.eval(),
    })
}

/// How to send `command`, every key prefixed with `prefix`: one Redis
/// command, or a script that a single command runs by `EVALSHA` through
/// [`redis::Script`](bb8_redis::redis::Script) (loading it on `NOSCRIPT`).
/// strata's own checks ([`Command::check`]) come first.
pub(super) fn encode_call(prefix: &str, command: &Command) -> Result<Encoded> {
    command.check()?;
    let key = |k: &str| format!("{prefix}{k}");
    let script = |call: ScriptCall| Ok(Encoded::Script(call));
    let c = match command {
        Command::Get { key: k } => cmd("GET").arg(key(k)).to_owned(),
        Command::Set {
            key: k,
            value,
            options,
        } => {
            let mut c = cmd("SET");
            c.arg(key(k)).arg(value.as_ref());
            set_options(&mut c, options, "set")?;
            c
        }
        Command::SetGet {
            key: k,
            value,
            options,
        } => {
            let mut c = cmd("SET");
            c.arg(key(k)).arg(value.as_ref());
            set_options(&mut c, options, "set")?;
            c.arg("GET");
            c
        }
        Command::GetDel { key: k } => cmd("GETDEL").arg(key(k)).to_owned(),
        Command::GetEx { key: k, expiry } => {
            let mut c = cmd("GETEX");
            c.arg(key(k));
            match expiry {
                GetExpiry::Unchanged => {}
                GetExpiry::After(ttl) => {
                    c.arg("PX").arg(millis(*ttl, "getex")?);
                }
                GetExpiry::Persist => {
                    c.arg("PERSIST");
                }
            }
            c
        }
        Command::MGet { keys } => {
            let mut c = cmd("MGET");
            for k in keys {
                c.arg(key(k));
            }
            c
        }
        Command::MSet { pairs } => {
            let mut c = cmd("MSET");
            for (k, v) in pairs {
                c.arg(key(k)).arg(v.as_ref());
            }
            c
        }
        Command::MSetNx { pairs } => {
            let mut c = cmd("MSETNX");
            for (k, v) in pairs {
                c.arg(key(k)).arg(v.as_ref());
            }
            c
        }
        Command::Append { key: k, value } => {
            cmd("APPEND").arg(key(k)).arg(value.as_ref()).to_owned()
        }
        Command::StrLen { key: k } => cmd("STRLEN").arg(key(k)).to_owned(),
        Command::Del { keys } => {
            let mut c = cmd("DEL");
            for k in keys {
                c.arg(key(k));
            }
            c
        }
        Command::Exists { keys } => {
            let mut c = cmd("EXISTS");
            for k in keys {
                c.arg(key(k));
            }
            c
        }
        Command::Expire {
            key: k,
            ttl,
            options,
        } => {
            let mut c = cmd("PEXPIRE");
            c.arg(key(k)).arg(millis(*ttl, "pexpire")?);
            expire_flags(&mut c, options);
            c
        }
        Command::Ttl { key: k } => cmd("PTTL").arg(key(k)).to_owned(),
        Command::Persist { key: k } => cmd("PERSIST").arg(key(k)).to_owned(),
        Command::Type { key: k } => cmd("TYPE").arg(key(k)).to_owned(),
        Command::IncrBy { key: k, delta } => cmd("INCRBY").arg(key(k)).arg(*delta).to_owned(),
        Command::IncrByFloat { key: k, delta } => cmd("INCRBYFLOAT")
            .arg(key(k))
            .arg(float_arg(*delta))
            .to_owned(),
        Command::HSet { key: k, fields } => {
            let mut c = cmd("HSET");
            c.arg(key(k));
            for (f, v) in fields {
                c.arg(f).arg(v.as_ref());
            }
            c
        }
        Command::HSetNx {
            key: k,
            field,
            value,
        } => cmd("HSETNX")
            .arg(key(k))
            .arg(field)
            .arg(value.as_ref())
            .to_owned(),
        Command::HGet { key: k, field } => cmd("HGET").arg(key(k)).arg(field).to_owned(),
        Command::HKeys { key: k } => cmd("HKEYS").arg(key(k)).to_owned(),
        Command::HVals { key: k } => cmd("HVALS").arg(key(k)).to_owned(),
        Command::HExists { key: k, field } => cmd("HEXISTS").arg(key(k)).arg(field).to_owned(),
        Command::HStrLen { key: k, field } => cmd("HSTRLEN").arg(key(k)).arg(field).to_owned(),
        Command::HIncrByFloat {
            key: k,
            field,
            delta,
        } => cmd("HINCRBYFLOAT")
            .arg(key(k))
            .arg(field)
            .arg(float_arg(*delta))
            .to_owned(),
        Command::HMGet { key: k, fields } => cmd("HMGET").arg(key(k)).arg(fields).to_owned(),
        Command::HGetAll { key: k } => cmd("HGETALL").arg(key(k)).to_owned(),
        Command::HDel { key: k, fields } => cmd("HDEL").arg(key(k)).arg(fields).to_owned(),
        Command::HIncrBy {
            key: k,
            field,
            delta,
        } => cmd("HINCRBY").arg(key(k)).arg(field).arg(*delta).to_owned(),
        Command::HLen { key: k } => cmd("HLEN").arg(key(k)).to_owned(),
        Command::ZAdd {
            key: k,
            members,
            options,
        } => {
            let mut c = cmd("ZADD");
            c.arg(key(k));
            zadd_flags(&mut c, options);
            for (score, member) in members {
                c.arg(float_arg(*score)).arg(member);
            }
            c
        }
        Command::ZIncrBy {
            key: k,
            delta,
            member,
        } => cmd("ZINCRBY")
            .arg(key(k))
            .arg(float_arg(*delta))
            .arg(member)
            .to_owned(),
        Command::ZScore { key: k, member } => cmd("ZSCORE").arg(key(k)).arg(member).to_owned(),
        Command::ZRank {
            key: k,
            member,
            rev,
        } => cmd(if *rev { "ZREVRANK" } else { "ZRANK" })
            .arg(key(k))
            .arg(member)
            .to_owned(),
        // ZREVRANGE rather than `ZRANGE ... REV`: the same answer on every
        // Redis version, `REV` needs 6.2.
        Command::ZRange {
            key: k,
            start,
            stop,
            rev,
        } => cmd(if *rev { "ZREVRANGE" } else { "ZRANGE" })
            .arg(key(k))
            .arg(*start)
            .arg(*stop)
            .arg("WITHSCORES")
            .to_owned(),
        // `ZRANGE ... BYSCORE [REV]` (6.2) covers ZRANGEBYSCORE and
        // ZREVRANGEBYSCORE; with REV, Redis reads the bounds high end first.
        Command::ZRangeByScore {
            key: k,
            min,
            max,
            rev,
            limit,
        } => {
            let mut c = cmd("ZRANGE");
            c.arg(key(k));
            if *rev {
                c.arg(bound_arg(*max)).arg(bound_arg(*min));
            } else {
                c.arg(bound_arg(*min)).arg(bound_arg(*max));
            }
            c.arg("BYSCORE");
            if *rev {
                c.arg("REV");
            }
            if let Some((offset, count)) = limit {
                c.arg("LIMIT").arg(*offset).arg(*count);
            }
            c.arg("WITHSCORES");
            c
        }
        Command::ZCount { key: k, min, max } => cmd("ZCOUNT")
            .arg(key(k))
            .arg(bound_arg(*min))
            .arg(bound_arg(*max))
            .to_owned(),
        Command::ZRemRangeByScore { key: k, min, max } => cmd("ZREMRANGEBYSCORE")
            .arg(key(k))
            .arg(bound_arg(*min))
            .arg(bound_arg(*max))
            .to_owned(),
        Command::ZRem { key: k, members } => cmd("ZREM").arg(key(k)).arg(members).to_owned(),
        Command::ZCard { key: k } => cmd("ZCARD").arg(key(k)).to_owned(),
        Command::CompareAndDelete { key: k, expected } => {
            return script(
                ScriptCall::new(Lua::CompareAndDelete)
                    .key(key(k))
                    .arg(expected),
            );
        }
        Command::LockAcquire {
            key: k,
            token,
            ttl,
            fence_key,
        } => {
            return script(
                ScriptCall::new(Lua::LockAcquire)
                    .key(key(k))
                    .key(key(fence_key))
                    .arg(token)
                    .arg(millis(*ttl, "set")?.to_string()),
            );
        }
        Command::LockExtend { key: k, token, ttl } => {
            return script(
                ScriptCall::new(Lua::LockExtend)
                    .key(key(k))
                    .arg(token)
                    .arg(millis(*ttl, "pexpire")?.to_string()),
            );
        }
        Command::RateLimit {
            key: k,
            limit,
            period,
            cost,
        } => {
            return script(
                ScriptCall::new(Lua::RateLimit)
                    .key(key(k))
                    .arg(rate_interval(*limit, *period)?.to_string())
                    .arg(limit.to_string())
                    .arg(cost.to_string()),
            );
        }
        Command::ZAddBest {
            key: k,
            member,
            score,
            at_key,
            at,
        } => {
            return script(
                ScriptCall::new(Lua::ZAddBest)
                    .key(key(k))
                    .key(key(at_key))
                    .arg(member)
                    .arg(float_arg(*score))
                    .arg(at.to_string()),
            );
        }
        Command::HSetIfNewer {
            key: k,
            fields,
            time_prefix,
        } => {
            let mut call = ScriptCall::new(Lua::HSetIfNewer)
                .key(key(k))
                .arg(time_prefix);
            for (field, value, time) in fields {
                call = call.arg(field).arg(value).arg(time.to_string());
            }
            return script(call);
        }
        Command::Publish { channel, message } => cmd("PUBLISH")
            .arg(key(channel))
            .arg(message.as_ref())
            .to_owned(),
    };
    Ok(Encoded::Plain(c))
}

/// A duration as whole milliseconds, as `PX`/`PEXPIRE` take it. Below one
/// millisecond it is 0, which Redis itself judges (`SET` refuses it,
/// `PEXPIRE` deletes the key), so both engines agree. Beyond `i64::MAX`
/// Redis could not be told; it would refuse any such deadline, and so
/// does this, with its words.
fn millis(ttl: std::time::Duration, command: &'static str) -> Result<i64> {
    i64::try_from(ttl.as_millis()).map_err(|_| {
        Error::invalid(format!("ERR invalid expire time in '{command}' command"))
            .with_operation(command)
    })
}

/// `PX`, `KEEPTTL`, `NX`/`XX` of a `SET`.
fn set_options(c: &mut Cmd, options: &SetOptions, command: &'static str) -> Result<()> {
    if let Some(ttl) = options.expiry {
        c.arg("PX").arg(millis(ttl, command)?);
    } else if options.keep_ttl {
        c.arg("KEEPTTL");
    }
    match options.condition {
        SetCondition::Always => {}
        SetCondition::IfAbsent => {
            c.arg("NX");
        }
        SetCondition::IfPresent => {
            c.arg("XX");
        }
    }
    Ok(())
}

/// Every flag set, as given: Redis judges the combination.
fn expire_flags(c: &mut Cmd, options: &ExpireOptions) {
    for (set, flag) in [
        (options.nx, "NX"),
        (options.xx, "XX"),
        (options.gt, "GT"),
        (options.lt, "LT"),
    ] {
        if set {
            c.arg(flag);
        }
    }
}

/// Every flag set, as given: Redis judges the combination.
fn zadd_flags(c: &mut Cmd, options: &ZAddOptions) {
    for (set, flag) in [
        (options.nx, "NX"),
        (options.xx, "XX"),
        (options.gt, "GT"),
        (options.lt, "LT"),
        (options.ch, "CH"),
        (options.incr, "INCR"),
    ] {
        if set {
            c.arg(flag);
        }
    }
}

/// A float as Redis reads it: `inf`/`-inf` spelled out, `nan` passed on for
/// Redis to refuse, anything else in Rust's shortest exact decimal form.
fn float_arg(value: f64) -> String {
    if value.is_infinite() {
        if value > 0.0 { "+inf" } else { "-inf" }.to_owned()
    } else {
        format!("{value}")
    }
}

fn bound_arg(bound: ScoreBound) -> String {
    match bound {
        ScoreBound::Inclusive(s) => float_arg(s),
        ScoreBound::Exclusive(s) => format!("({}", float_arg(s)),
        other => other.to_redis_arg(),
    }
}

/// The `Reply` to `command` from Redis's answer `value`. An error reply
/// becomes the mapped error.
pub(super) fn decode(command: &Command, value: Value) -> Result<Reply> {
    let name = command.name();
    if let Value::ServerError(e) = &value {
        return Err(errors::from_server_error(e));
    }
    let reply = match command {
        Command::Get { .. }
        | Command::HGet { .. }
        | Command::SetGet { .. }
        | Command::GetDel { .. }
        | Command::GetEx { .. } => Reply::Value(optional_bytes(value, name)?),
        Command::Set { .. } => match value {
            Value::Okay => Reply::Bool(true),
            Value::SimpleString(s) if s == "OK" => Reply::Bool(true),
            Value::Nil => Reply::Bool(false),
            other => return Err(unexpected(&other, name)),
        },
        Command::MGet { .. } | Command::HMGet { .. } => {
            let items = array(value, name)?;
            Reply::Values(
                items
                    .into_iter()
                    .map(|v| optional_bytes(v, name))
                    .collect::<Result<_>>()?,
            )
        }
        Command::MSet { .. } => match value {
            Value::Okay => Reply::Ok,
            Value::SimpleString(s) if s == "OK" => Reply::Ok,
            other => return Err(unexpected(&other, name)),
        },
        Command::Del { .. }
        | Command::Exists { .. }
        | Command::IncrBy { .. }
        | Command::HSet { .. }
        | Command::HDel { .. }
        | Command::HIncrBy { .. }
        | Command::HLen { .. }
        | Command::ZRemRangeByScore { .. }
        | Command::ZRem { .. }
        | Command::ZCard { .. }
        | Command::ZCount { .. }
        | Command::Append { .. }
        | Command::StrLen { .. }
        | Command::HStrLen { .. }
        | Command::Publish { .. } => Reply::Int(integer(value, name)?),
        Command::ZAdd { options, .. } if options.incr => Reply::Score(match value {
            Value::Nil => None,
            other => Some(float(other, name)?),
        }),
        Command::ZAdd { .. } => Reply::Int(integer(value, name)?),
        Command::LockAcquire { .. } => Reply::Fence(match value {
            Value::Nil | Value::Boolean(false) => None,
            other => Some(fence_number(integer(other, name)?).map_err(|e| e.with_operation(name))?),
        }),
        Command::RateLimit { .. } => Reply::RateLimit(rate_limit_reply(value, name)?),
        Command::HSetIfNewer { .. } => Reply::Bools(
            array(value, name)?
                .into_iter()
                .map(|v| Ok(integer(v, name)? != 0))
                .collect::<Result<_>>()?,
        ),
        Command::Expire { .. }
        | Command::Persist { .. }
        | Command::CompareAndDelete { .. }
        | Command::LockExtend { .. }
        | Command::ZAddBest { .. }
        | Command::MSetNx { .. }
        | Command::HSetNx { .. }
        | Command::HExists { .. } => Reply::Bool(integer(value, name)? != 0),
        Command::HKeys { .. } => {
            let mut fields = array(value, name)?
                .into_iter()
                .map(|v| text(v, name))
                .collect::<Result<Vec<_>>>()?;
            fields.sort_unstable();
            Reply::Fields(fields)
        }
        Command::HVals { .. } => {
            let mut values = array(value, name)?
                .into_iter()
                .map(|v| bytes(v, name))
                .collect::<Result<Vec<_>>>()?;
            values.sort_unstable();
            Reply::Blobs(values)
        }
        Command::Ttl { .. } => Reply::Ttl(match integer(value, name)? {
            -2 => Ttl::Missing,
            -1 => Ttl::Persistent,
            ms if ms >= 0 => Ttl::Expires(std::time::Duration::from_millis(ms.unsigned_abs())),
            other => {
                return Err(Error::internal(format!("PTTL answered {other}")).with_operation(name));
            }
        }),
        Command::Type { .. } => {
            let text = match value {
                Value::SimpleString(s) => s,
                Value::Okay => "OK".to_owned(),
                other => return Err(unexpected(&other, name)),
            };
            Reply::Type(match text.as_str() {
                "none" => KeyType::None,
                "string" => KeyType::String,
                "hash" => KeyType::Hash,
                "zset" => KeyType::ZSet,
                other => {
                    return Err(Error::unsupported(format!(
                        "the key holds a Redis {other}, a type strata does not use"
                    ))
                    .with_operation(name));
                }
            })
        }
        Command::IncrByFloat { .. } | Command::HIncrByFloat { .. } | Command::ZIncrBy { .. } => {
            Reply::Float(float(value, name)?)
        }
        Command::ZScore { .. } => Reply::Score(match value {
            Value::Nil => None,
            other => Some(float(other, name)?),
        }),
        Command::ZRank { .. } => Reply::Rank(match value {
            Value::Nil => None,
            other => {
                let rank = integer(other, name)?;
                Some(u64::try_from(rank).map_err(|_| {
                    Error::internal(format!("negative rank {rank}")).with_operation(name)
                })?)
            }
        }),
        Command::ZRange { .. } | Command::ZRangeByScore { .. } => {
            Reply::Scored(scored(value, name)?)
        }
        Command::HGetAll { .. } => Reply::Hash(hash(value, name)?),
    };
    Ok(reply)
}

/// The rate limiter's `{allowed, remaining, retry after µs, reset after
/// µs}`.
fn rate_limit_reply(value: Value, name: &'static str) -> Result<RateLimitReply> {
    let numbers = array(value, name)?
        .into_iter()
        .map(|v| integer(v, name))
        .collect::<Result<Vec<i64>>>()?;
    let [allowed, remaining, retry, reset] = numbers[..] else {
        return Err(Error::internal(format!(
            "the rate limiter answered {} numbers, not 4",
            numbers.len()
        ))
        .with_operation(name));
    };
    let micros = |n: i64| std::time::Duration::from_micros(n.max(0).unsigned_abs());
    Ok(RateLimitReply {
        allowed: allowed != 0,
        remaining: u32::try_from(remaining.max(0)).unwrap_or(u32::MAX),
        retry_after: micros(retry),
        reset_after: micros(reset),
    })
}

fn unexpected(value: &Value, name: &'static str) -> Error {
    Error::internal(format!("unexpected reply from Redis: {value:?}")).with_operation(name)
}

fn integer(value: Value, name: &'static str) -> Result<i64> {
    match value {
        Value::Int(n) => Ok(n),
        other => Err(unexpected(&other, name)),
    }
}

fn optional_bytes(value: Value, name: &'static str) -> Result<Option<Bytes>> {
    match value {
        Value::Nil => Ok(None),
        other => bytes(other, name).map(Some),
    }
}

fn bytes(value: Value, name: &'static str) -> Result<Bytes> {
    match value {
        Value::BulkString(b) => Ok(Bytes::from(b)),
        Value::SimpleString(s) => Ok(Bytes::from(s)),
        Value::VerbatimString { text, .. } => Ok(Bytes::from(text)),
        other => Err(unexpected(&other, name)),
    }
}

fn text(value: Value, name: &'static str) -> Result<String> {
    let raw = bytes(value, name)?;
    String::from_utf8(raw.to_vec()).map_err(|_| {
        Error::invalid(format!(
            "Redis holds a name that is not UTF-8: {}",
            String::from_utf8_lossy(&raw)
        ))
        .with_operation(name)
    })
}

/// A float reply. Redis computes `INCRBYFLOAT` in `long double` and only
/// refuses NaN and infinity of that type, so it can store and answer a
/// finite value beyond `f64::MAX` (`f64::MAX + f64::MAX` on x86-64); such a
/// value parses, as Rust parses any decimal too large for `f64`, to ±inf.
fn float(value: Value, name: &'static str) -> Result<f64> {
    match value {
        Value::Double(d) => Ok(d),
        Value::Int(n) => Ok(n as f64),
        other => {
            let raw = bytes(other, name)?;
            std::str::from_utf8(&raw)
                .ok()
                .and_then(|s| s.parse::<f64>().ok())
                .ok_or_else(|| {
                    Error::internal(format!(
                        "Redis answered a score that is not a number: {}",
                        String::from_utf8_lossy(&raw)
                    ))
                    .with_operation(name)
                })
        }
    }
}

fn array(value: Value, name: &'static str) -> Result<Vec<Value>> {
    match value {
        Value::Array(items) | Value::Set(items) => Ok(items),
        other => Err(unexpected(&other, name)),
    }
}

/// Field/value or member/score pairs: a RESP2 flat array, a RESP3 map, or
/// a RESP3 array of two-element arrays.
fn pairs(value: Value, name: &'static str) -> Result<Vec<(Value, Value)>> {
    match value {
        Value::Map(pairs) => Ok(pairs),
        Value::Array(items) if items.iter().all(|i| matches!(i, Value::Array(_))) => items
            .into_iter()
            .map(|item| match array(item, name)?.as_mut_slice() {
                [a, b] => Ok((std::mem::take(a), std::mem::take(b))),
                other => Err(
                    Error::internal(format!("expected a pair from Redis, got {other:?}"))
                        .with_operation(name),
                ),
            })
            .collect(),
        Value::Array(items) => {
            if items.len() % 2 != 0 {
                return Err(Error::internal(format!(
                    "Redis answered an odd number ({}) of pair items",
                    items.len()
                ))
                .with_operation(name));
            }
            let mut out = Vec::with_capacity(items.len() / 2);
            let mut iter = items.into_iter();
            while let (Some(a), Some(b)) = (iter.next(), iter.next()) {
                out.push((a, b));
            }
            Ok(out)
        }
        other => Err(unexpected(&other, name)),
    }
}

fn scored(value: Value, name: &'static str) -> Result<Vec<(String, f64)>> {
    pairs(value, name)?
        .into_iter()
        .map(|(member, score)| Ok((text(member, name)?, float(score, name)?)))
        .collect()
}

fn hash(value: Value, name: &'static str) -> Result<BTreeMap<String, Bytes>> {
    pairs(value, name)?
        .into_iter()
        .map(|(field, v)| Ok((text(field, name)?, bytes(v, name)?)))
        .collect()
}

/// The value of `field` in an `INFO` section (`used_memory:1234`).
pub(super) fn info_field(info: &str, field: &str) -> Option<u64> {
    info.lines().find_map(|line| {
        let (name, value) = line.trim_end().split_once(':')?;
        (name == field).then(|| value.parse().ok()).flatten()
    })
}

/// The text of an `INFO` reply.
pub(super) fn info_text(value: Value) -> Result<String> {
    text(value, "info")
}

/// The position in Redis's keyspace a cursor stands for: Redis's own
/// decimal number. Anything else is refused as Redis refuses it (Redis would
/// also read a sign or surrounding text in ways no cursor it hands out has).
pub(super) fn scan_cursor(cursor: &ScanCursor) -> Result<u64> {
    let token = cursor.as_str();
    if token.is_empty() || !token.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Error::invalid("ERR invalid cursor"));
    }
    token
        .parse()
        .map_err(|_| Error::invalid("ERR invalid cursor"))
}

/// One `SCAN` step under the key prefix.
pub(super) fn scan_step(prefix: &str, cursor: u64, options: &ScanOptions) -> Cmd {
    let mut c = cmd("SCAN");
    c.arg(cursor).arg("MATCH").arg(prefixed_pattern(
        prefix,
        options.pattern.as_deref().unwrap_or("*"),
    ));
    if let Some(count) = options.count {
        c.arg("COUNT").arg(count);
    }
    if let Some(key_type) = options.key_type {
        c.arg("TYPE").arg(key_type.as_str());
    }
    c
}

/// A key from `SCAN` without the prefix.
pub(super) fn unprefixed_key(prefix: &str, raw: Vec<u8>) -> Result<String> {
    let key = String::from_utf8(raw).map_err(|e| {
        Error::invalid(format!(
            "a key under the prefix is not UTF-8: {}",
            String::from_utf8_lossy(e.as_bytes())
        ))
    })?;
    match key.strip_prefix(prefix) {
        Some(name) => Ok(name.to_owned()),
        None => Err(Error::internal(format!(
            "SCAN answered {key}, outside the prefix {prefix}"
        ))),
    }
}

/// `pattern` with the glob metacharacters of `literal` escaped before it, so
/// that `SCAN MATCH` reads the key prefix literally.
pub(super) fn prefixed_pattern(literal: &str, pattern: &str) -> String {
    let mut out = String::with_capacity(literal.len() + pattern.len());
    for c in literal.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push_str(pattern);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn args(c: &Cmd) -> Vec<String> {
        c.args_iter()
            .map(|a| match a {
                bb8_redis::redis::Arg::Simple(b) => String::from_utf8_lossy(b).into_owned(),
                _ => "<not a plain argument>".into(),
            })
            .collect()
    }

    #[test]
    fn set_options_become_px_nx_xx_keepttl() {
        let set = |options| Command::Set {
            key: "k".into(),
            value: Bytes::from_static(b"v"),
            options,
        };
        let c = encode(
            "p:",
            &set(SetOptions::ttl(Duration::from_millis(1500)).if_absent()),
        )
        .unwrap();
        assert_eq!(args(&c), ["SET", "p:k", "v", "PX", "1500", "NX"]);
        let keep = SetOptions {
            keep_ttl: true,
            ..Default::default()
        }
        .if_present();
        let c = encode("p:", &set(keep)).unwrap();
        assert_eq!(args(&c), ["SET", "p:k", "v", "KEEPTTL", "XX"]);
    }

    #[test]
    fn flags_are_sent_as_given() {
        let zadd = Command::ZAdd {
            key: "z".into(),
            members: vec![(1.0, "m".into())],
            options: ZAddOptions {
                nx: true,
                xx: true,
                ch: true,
                incr: true,
                ..Default::default()
            },
        };
        assert_eq!(
            args(&encode("p:", &zadd).unwrap()),
            ["ZADD", "p:z", "NX", "XX", "CH", "INCR", "1", "m"]
        );
        let expire = Command::Expire {
            key: "k".into(),
            ttl: Duration::from_secs(2),
            options: ExpireOptions {
                xx: true,
                gt: true,
                ..Default::default()
            },
        };
        assert_eq!(
            args(&encode("", &expire).unwrap()),
            ["PEXPIRE", "k", "2000", "XX", "GT"]
        );
        let getex = Command::GetEx {
            key: "k".into(),
            expiry: GetExpiry::Persist,
        };
        assert_eq!(
            args(&encode("", &getex).unwrap()),
            ["GETEX", "k", "PERSIST"]
        );
        let set_get = Command::SetGet {
            key: "k".into(),
            value: Bytes::from_static(b"v"),
            options: SetOptions::default().if_absent(),
        };
        assert_eq!(
            args(&encode("", &set_get).unwrap()),
            ["SET", "k", "v", "NX", "GET"]
        );
        let too_far = Command::Expire {
            key: "k".into(),
            ttl: Duration::MAX,
            options: ExpireOptions::default(),
        };
        let err = encode("", &too_far).unwrap_err();
        assert_eq!(
            err.message(),
            "ERR invalid expire time in 'pexpire' command"
        );
    }

    #[test]
    fn zadd_incr_and_hash_lists_decode() {
        let incr = Command::ZAdd {
            key: "z".into(),
            members: vec![(1.0, "m".into())],
            options: ZAddOptions {
                incr: true,
                ..Default::default()
            },
        };
        assert_eq!(decode(&incr, Value::Nil).unwrap(), Reply::Score(None));
        assert_eq!(
            decode(&incr, Value::BulkString(b"2.5".to_vec())).unwrap(),
            Reply::Score(Some(2.5))
        );
        let vals = Command::HVals { key: "h".into() };
        let reply = Value::Array(vec![
            Value::BulkString(b"b".to_vec()),
            Value::BulkString(b"a".to_vec()),
        ]);
        assert_eq!(
            decode(&vals, reply).unwrap(),
            Reply::Blobs(vec![Bytes::from("a"), Bytes::from("b")])
        );
    }

    #[test]
    fn every_key_of_a_script_is_prefixed() {
        let ms = Duration::from_millis;
        let cases = [
            (
                Command::CompareAndDelete {
                    key: "l".into(),
                    expected: Bytes::from_static(b"t"),
                },
                Lua::CompareAndDelete,
                vec!["p:l"],
                vec!["t"],
            ),
            (
                Command::LockAcquire {
                    key: "l".into(),
                    token: "t".into(),
                    ttl: ms(1500),
                    fence_key: "f".into(),
                },
                Lua::LockAcquire,
                vec!["p:l", "p:f"],
                vec!["t", "1500"],
            ),
            (
                Command::LockExtend {
                    key: "l".into(),
                    token: "t".into(),
                    ttl: ms(250),
                },
                Lua::LockExtend,
                vec!["p:l"],
                vec!["t", "250"],
            ),
            (
                Command::RateLimit {
                    key: "r".into(),
                    limit: 4,
                    period: ms(1000),
                    cost: 2,
                },
                Lua::RateLimit,
                vec!["p:r"],
                vec!["250000", "4", "2"],
            ),
            (
                Command::ZAddBest {
                    key: "z".into(),
                    member: "m".into(),
                    score: f64::INFINITY,
                    at_key: "a".into(),
                    at: -7,
                },
                Lua::ZAddBest,
                vec!["p:z", "p:a"],
                vec!["m", "+inf", "-7"],
            ),
            (
                Command::HSetIfNewer {
                    key: "h".into(),
                    fields: vec![
                        ("f".into(), Bytes::from_static(b"v"), 5),
                        ("g".into(), Bytes::from_static(b"w"), 6),
                    ],
                    time_prefix: "t:".into(),
                },
                Lua::HSetIfNewer,
                vec!["p:h"],
                vec!["t:", "f", "v", "5", "g", "w", "6"],
            ),
        ];
        for (command, lua, keys, argv) in cases {
            let Encoded::Script(call) = encode_call("p:", &command).unwrap() else {
                panic!("{command:?} is not a script");
            };
            assert_eq!(call.lua, lua);
            assert_eq!(call.keys, keys, "{command:?}");
            let argv: Vec<Vec<u8>> = argv.iter().map(|a| a.as_bytes().to_vec()).collect();
            assert_eq!(call.args, argv, "{command:?}");
            // In a pipeline: EVAL source numkeys keys... args...
            let eval = args(&encode("p:", &command).unwrap());
            assert_eq!(eval[0], "EVAL");
            assert_eq!(eval[1], lua.source());
            assert_eq!(eval[2], keys.len().to_string());
            assert_eq!(eval[3..3 + keys.len()], keys[..], "{command:?}");
        }
    }

    #[test]
    fn script_replies_decode() {
        let lock = Command::LockAcquire {
            key: "l".into(),
            token: "t".into(),
            ttl: Duration::from_secs(1),
            fence_key: "f".into(),
        };
        assert_eq!(decode(&lock, Value::Nil).unwrap(), Reply::Fence(None));
        assert_eq!(
            decode(&lock, Value::Boolean(false)).unwrap(),
            Reply::Fence(None)
        );
        assert_eq!(decode(&lock, Value::Int(3)).unwrap(), Reply::Fence(Some(3)));
        let err = decode(&lock, Value::Int(0)).unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Internal, "{err}");

        let rate = Command::RateLimit {
            key: "r".into(),
            limit: 5,
            period: Duration::from_secs(10),
            cost: 1,
        };
        let reply = Value::Array(vec![
            Value::Int(0),
            Value::Int(0),
            Value::Int(1_500_000),
            Value::Int(10_000_000),
        ]);
        assert_eq!(
            decode(&rate, reply).unwrap(),
            Reply::RateLimit(RateLimitReply {
                allowed: false,
                remaining: 0,
                retry_after: Duration::from_millis(1500),
                reset_after: Duration::from_secs(10),
            })
        );
        assert!(decode(&rate, Value::Array(vec![Value::Int(1)])).is_err());

        let hset = Command::HSetIfNewer {
            key: "h".into(),
            fields: vec![],
            time_prefix: "t:".into(),
        };
        let reply = Value::Array(vec![Value::Int(1), Value::Int(0)]);
        assert_eq!(
            decode(&hset, reply).unwrap(),
            Reply::Bools(vec![true, false])
        );
    }

    #[test]
    fn score_bounds_and_limits() {
        let c = encode(
            "",
            &Command::ZRangeByScore {
                key: "z".into(),
                min: ScoreBound::Exclusive(1.5),
                max: ScoreBound::PosInfinity,
                rev: false,
                limit: Some((2, 3)),
            },
        )
        .unwrap();
        assert_eq!(
            args(&c),
            [
                "ZRANGE",
                "z",
                "(1.5",
                "+inf",
                "BYSCORE",
                "LIMIT",
                "2",
                "3",
                "WITHSCORES"
            ]
        );
        let c = encode(
            "",
            &Command::ZRangeByScore {
                key: "z".into(),
                min: ScoreBound::NegInfinity,
                max: ScoreBound::Inclusive(4.0),
                rev: true,
                limit: None,
            },
        )
        .unwrap();
        assert_eq!(
            args(&c),
            ["ZRANGE", "z", "4", "-inf", "BYSCORE", "REV", "WITHSCORES"]
        );
        assert_eq!(float_arg(f64::NEG_INFINITY), "-inf");
        assert_eq!(float_arg(1e21), "1000000000000000000000");
    }

    #[test]
    fn replies_in_both_protocols() {
        let z = Command::ZRange {
            key: "z".into(),
            start: 0,
            stop: -1,
            rev: false,
        };
        let resp2 = Value::Array(vec![
            Value::BulkString(b"a".to_vec()),
            Value::BulkString(b"1.5".to_vec()),
            Value::BulkString(b"b".to_vec()),
            Value::BulkString(b"inf".to_vec()),
        ]);
        let resp3 = Value::Array(vec![
            Value::Array(vec![Value::BulkString(b"a".to_vec()), Value::Double(1.5)]),
            Value::Array(vec![
                Value::BulkString(b"b".to_vec()),
                Value::Double(f64::INFINITY),
            ]),
        ]);
        let want = Reply::Scored(vec![("a".into(), 1.5), ("b".into(), f64::INFINITY)]);
        assert_eq!(decode(&z, resp2).unwrap(), want);
        assert_eq!(decode(&z, resp3).unwrap(), want);

        let h = Command::HGetAll { key: "h".into() };
        let map = Value::Map(vec![
            (
                Value::BulkString(b"z".to_vec()),
                Value::BulkString(b"1".to_vec()),
            ),
            (
                Value::BulkString(b"a".to_vec()),
                Value::BulkString(b"2".to_vec()),
            ),
        ]);
        let Reply::Hash(fields) = decode(&h, map).unwrap() else {
            panic!("not a hash")
        };
        assert_eq!(fields.keys().collect::<Vec<_>>(), ["a", "z"]);
    }

    #[test]
    fn ttl_reply() {
        let t = Command::Ttl { key: "k".into() };
        assert_eq!(
            decode(&t, Value::Int(-2)).unwrap(),
            Reply::Ttl(Ttl::Missing)
        );
        assert_eq!(
            decode(&t, Value::Int(-1)).unwrap(),
            Reply::Ttl(Ttl::Persistent)
        );
        assert_eq!(
            decode(&t, Value::Int(250)).unwrap(),
            Reply::Ttl(Ttl::Expires(Duration::from_millis(250)))
        );
    }

    #[test]
    fn scan_steps_and_cursors() {
        let options = ScanOptions::matching("user:*")
            .count(50)
            .of_type(KeyType::Hash);
        assert_eq!(
            args(&scan_step("p:", 17, &options)),
            [
                "SCAN", "17", "MATCH", "p:user:*", "COUNT", "50", "TYPE", "hash"
            ]
        );
        assert_eq!(
            args(&scan_step("p:", 0, &ScanOptions::default())),
            ["SCAN", "0", "MATCH", "p:*"]
        );
        assert_eq!(scan_cursor(&ScanCursor::start()).unwrap(), 0);
        assert_eq!(scan_cursor(&ScanCursor::new("123")).unwrap(), 123);
        for bad in ["", "-1", "+1", "k61", "1 ", "18446744073709551616"] {
            let err = scan_cursor(&ScanCursor::new(bad)).unwrap_err();
            assert_eq!(err.message(), "ERR invalid cursor", "{bad:?}");
        }
        assert_eq!(unprefixed_key("p:", b"p:k".to_vec()).unwrap(), "k");
        assert!(unprefixed_key("p:", b"q:k".to_vec()).is_err());
    }

    #[test]
    fn prefix_metacharacters_are_escaped() {
        assert_eq!(prefixed_pattern("a*b[1]:", "x?"), r"a\*b\[1\]:x?");
        assert_eq!(prefixed_pattern(r"c\d:", "*"), r"c\\d:*");
    }

    #[test]
    fn info_fields() {
        let info = "# Memory\r\nused_memory:1024\r\nused_memory_human:1K\r\nmaxmemory:0\r\n";
        assert_eq!(info_field(info, "used_memory"), Some(1024));
        assert_eq!(info_field(info, "maxmemory"), Some(0));
        assert_eq!(info_field(info, "evicted_keys"), None);
    }
}
