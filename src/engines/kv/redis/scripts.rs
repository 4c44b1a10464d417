//! The commands Redis runs as one Lua script, and the scripts.
//!
//! # What holds
//!
//! - Each script is atomic because Redis runs a script without
//!   interleaving any other command.
//! - A script reads and checks everything it needs (the keys' types, the
//!   stored integers) before its first write, so a failing command changes
//!   nothing; the one write that can fail after another (`lock_acquire`'s
//!   `INCR`, after its `SET NX`) is undone before the error is answered.
//! - The reads that can fail go through `redis.pcall`, and their error is
//!   answered as it is: the same words as the command itself (and as the
//!   embedded store), without the "script: ..." Redis adds to an error
//!   raised by `redis.call`.
//! - Every key a script touches is one of its `KEYS`, prefixed with the
//!   store's `key_prefix` like every other key; fields, members, tokens and
//!   numbers are `ARGV`.
//! - Integers read from the store are judged as Redis's `string2ll` judges
//!   them (`is_int`), and event times are compared as decimal text
//!   (`int_less`), exactly for every 64-bit integer: Lua's numbers are
//!   doubles, exact only below 2^53. Rate-limit times are microseconds of
//!   Unix time plus at most 2^52 microseconds, which doubles hold exactly.
//! - Redis 7 replicates a script's effects, not the script, so the
//!   rate limiter may read `TIME` before it writes.

use bb8_redis::redis::{Cmd, Script, cmd};

/// Lua helpers shared by the scripts that read integers from the store.
macro_rules! int_helpers {
    () => {
        r#"
local function is_int(s)
  if s == '0' then return true end
  local digits = string.match(s, '^%-?([1-9]%d*)$')
  if not digits or #digits > 19 then return false end
  if #digits < 19 then return true end
  if string.sub(s, 1, 1) == '-' then return digits <= '9223372036854775808' end
  return digits <= '9223372036854775807'
end
local function int_less(a, b)
  local a_neg, b_neg = string.sub(a, 1, 1) == '-', string.sub(b, 1, 1) == '-'
  if a_neg ~= b_neg then return a_neg end
  if a_neg then a, b = string.sub(b, 2), string.sub(a, 2) end
  if #a ~= #b then return #a < #b end
  return a < b
end
local function failed(reply)
  return type(reply) == 'table' and reply.err ~= nil
end
"#
    };
}

/// The compare-and-delete of a lock release.
/// KEYS: lock. ARGV: expected value.
pub(super) const COMPARE_AND_DELETE: &str = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end";

/// A fenced lock: `SET NX PX` judges the expiry and the lock at once; the
/// counter's `INCR` comes second and, should it fail (not an integer,
/// overflow, another type), the lock just set is deleted again, which
/// restores the state before (`NX` proved it absent).
/// KEYS: lock, fence counter. ARGV: token, ttl in milliseconds.
/// Answers the fence number, or nil when the lock is held.
pub(super) const LOCK_ACQUIRE: &str = r#"
local set = redis.pcall('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2])
if type(set) == 'table' and set.err then return set end
if not set then return false end
local fence = redis.pcall('INCR', KEYS[2])
if type(fence) == 'table' and fence.err then
  redis.call('DEL', KEYS[1])
  return fence
end
return fence
"#;

/// `PEXPIRE` while the lock holds the token.
/// KEYS: lock. ARGV: token, ttl in milliseconds. Answers 1 or 0.
pub(super) const LOCK_EXTEND: &str = r#"
local held = redis.pcall('GET', KEYS[1])
if type(held) == 'table' and held.err then return held end
if held ~= ARGV[1] then return 0 end
return redis.pcall('PEXPIRE', KEYS[1], ARGV[2])
"#;

/// One GCRA decision, the embedded store's `gcra` step for step.
/// KEYS: the TAT. ARGV: emission interval (µs), limit, cost.
/// Answers {allowed (1/0), remaining, retry after (µs), reset after (µs)}.
pub(super) const RATE_LIMIT: &str = concat!(
    int_helpers!(),
    r#"
local stored = redis.pcall('GET', KEYS[1])
if failed(stored) then return stored end
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local interval, limit, cost = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local capacity = interval * limit
local tat = now
if stored then
  if not is_int(stored) then
    return redis.error_reply('ERR value is not an integer or out of range')
  end
  tat = math.max(tonumber(stored), now)
end
local new_tat = tat + cost * interval
local allowed = new_tat - now <= capacity
local retry = 0
if allowed then
  if cost > 0 then
    local ttl = math.ceil((new_tat - now) / 1000)
    redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', string.format('%d', ttl))
  end
  tat = new_tat
else
  retry = new_tat - capacity - now
end
local used = tat - now
local remaining = math.min(limit, math.max(0, math.floor((capacity - used) / interval)))
return {allowed and 1 or 0, remaining, retry, used}
"#
);

/// A best score and when it was first reached.
/// KEYS: sorted set, hash of times. ARGV: member, score, time.
/// Answers 1 when the score changed, else 0.
pub(super) const ZADD_BEST: &str = concat!(
    int_helpers!(),
    r#"
local function score_of(s)
  if s == 'inf' or s == '+inf' then return math.huge end
  if s == '-inf' then return -math.huge end
  return tonumber(s)
end
local stored_at = redis.pcall('HGET', KEYS[2], ARGV[1])
if failed(stored_at) then return stored_at end
local current = redis.pcall('ZSCORE', KEYS[1], ARGV[1])
if failed(current) then return current end
local score = score_of(ARGV[2])
if current then
  current = score_of(current)
  if score < current then return 0 end
  if score == current then
    if stored_at and not is_int(stored_at) then
      return redis.error_reply("ERR the time of member '" .. ARGV[1] .. "' is not an integer")
    end
    if not stored_at or int_less(ARGV[3], stored_at) then
      redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
    end
    return 0
  end
end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
return 1
"#
);

/// Hash fields written unless their stored event time is later.
/// KEYS: the hash. ARGV: the time prefix, then field, value, time for each
/// field. Answers one 1 (written) or 0 per field.
pub(super) const HSET_IF_NEWER: &str = concat!(
    int_helpers!(),
    r#"
local prefix = ARGV[1]
local n = (#ARGV - 1) / 3
for i = 1, n do
  local field = ARGV[3 * i - 1]
  local stored = redis.pcall('HGET', KEYS[1], prefix .. field)
  if failed(stored) then return stored end
  if stored and not is_int(stored) then
    return redis.error_reply("ERR the event time of field '" .. field .. "' is not an integer")
  end
end
local written = {}
for i = 1, n do
  local field, value, time = ARGV[3 * i - 1], ARGV[3 * i], ARGV[3 * i + 1]
  local stored = redis.call('HGET', KEYS[1], prefix .. field)
  if stored and int_less(time, stored) then
    written[i] = 0
  else
    redis.call('HSET', KEYS[1], field, value, prefix .. field, time)
    written[i] = 1
  end
end
return written
"#
);

/// The scripts, each one [`Command`](crate::engines::kv::Command)'s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Lua {
    CompareAndDelete,
    LockAcquire,
    LockExtend,
    RateLimit,
    ZAddBest,
    HSetIfNewer,
}

impl Lua {
    /// Every script, in the order of [`Scripts`].
    const ALL: [Lua; 6] = [
        Lua::CompareAndDelete,
        Lua::LockAcquire,
        Lua::LockExtend,
        Lua::RateLimit,
        Lua::ZAddBest,
        Lua::HSetIfNewer,
    ];

    /// The script's source.
    pub(super) fn source(self) -> &'static str {
        match self {
            Lua::CompareAndDelete => COMPARE_AND_DELETE,
            Lua::LockAcquire => LOCK_ACQUIRE,
            Lua::LockExtend => LOCK_EXTEND,
            Lua::RateLimit => RATE_LIMIT,
            Lua::ZAddBest => ZADD_BEST,
            Lua::HSetIfNewer => HSET_IF_NEWER,
        }
    }
}

/// Every script with its SHA1, for `EVALSHA`, computed once per store.
#[derive(Debug, Clone)]
pub(super) struct Scripts([Script; Lua::ALL.len()]);

impl Scripts {
    pub(super) fn new() -> Self {
        Scripts(Lua::ALL.map(|lua| Script::new(lua.source())))
    }

    pub(super) fn get(&self, lua: Lua) -> &Script {
        &self.0[lua as usize]
    }
}

/// One run of a script: which one, its (prefixed) keys and its arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ScriptCall {
    pub(super) lua: Lua,
    pub(super) keys: Vec<String>,
    pub(super) args: Vec<Vec<u8>>,
}

impl ScriptCall {
    pub(super) fn new(lua: Lua) -> Self {
        ScriptCall {
            lua,
            keys: Vec::new(),
            args: Vec::new(),
        }
    }

    pub(super) fn key(mut self, key: String) -> Self {
        self.keys.push(key);
        self
    }

    pub(super) fn arg(mut self, arg: impl AsRef<[u8]>) -> Self {
        self.args.push(arg.as_ref().to_vec());
        self
    }

    /// The script as one `EVAL`: what a pipeline sends (one reply, no
    /// `NOSCRIPT` round trip).
    pub(super) fn eval(&self) -> Cmd {
        let mut c = cmd("EVAL");
        c.arg(self.lua.source()).arg(self.keys.len());
        for key in &self.keys {
            c.arg(key);
        }
        for arg in &self.args {
            c.arg(arg.as_slice());
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_script_is_listed_once_in_order() {
        for (i, lua) in Lua::ALL.into_iter().enumerate() {
            assert_eq!(lua as usize, i, "{lua:?}");
        }
        let scripts = Scripts::new();
        assert_eq!(
            scripts.get(Lua::RateLimit).get_hash(),
            Script::new(RATE_LIMIT).get_hash()
        );
    }
}
