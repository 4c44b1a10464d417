//! Sorted-set commands: `ZADD`, `ZINCRBY`, `ZSCORE`, `ZRANK`/`ZREVRANK`,
//! `ZRANGE`, `ZRANGEBYSCORE`, `ZREMRANGEBYSCORE`, `ZREM`, `ZCARD`.
//!
//! # What MUST hold
//!
//! - Order is by score, then by member bytewise (Redis's order). `-0` is
//!   stored as `0`, so the two tie like Redis's `<` comparison makes them.
//! - A NaN score is rejected before anything changes ("not a valid float");
//!   `±inf` scores are allowed, as in Redis, and a `ZINCRBY` that would
//!   produce NaN (`inf + -inf`) fails and changes nothing.
//! - Writes mutate the set in place under its mutex and re-insert the entry
//!   so moka re-weighs it; the whole set is never cloned. A set whose last
//!   member is removed is deleted; its expiry survives other writes.
//! - Costs: member lookups are O(1), inserts and removals O(log n); ranks
//!   and index ranges walk the ordered set, O(rank) and O(start + count)
//!   (Redis's skip list does O(log n)), which is fine for the leaderboard
//!   sizes strata keeps in process.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use super::EmbeddedKv;
use super::entry::{Collection, Value};
use crate::engines::kv::{Reply, ScoreBound};
use crate::error::{Error, Result};

/// Estimated cost of one member beyond its bytes: a hash-map slot, a
/// B-tree slot, the shared `Arc<str>` header and two scores.
const MEMBER_OVERHEAD: u64 = 96;

/// A score that is never NaN, ordered totally.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Score(f64);

impl Eq for Score {}

impl PartialOrd for Score {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Score {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        // NaN never gets in and -0 is normalised away, so this is the
        // numeric order.
        self.0.total_cmp(&other.0)
    }
}

/// A member in range order: by score, then by member bytes (`str`'s order
/// is bytewise).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Ranked {
    score: Score,
    member: Arc<str>,
}

/// The members of a sorted set, by name and in order. The name is shared
/// between both indexes.
#[derive(Debug, Default)]
pub(crate) struct ZSetValue {
    scores: HashMap<Arc<str>, f64>,
    order: BTreeSet<Ranked>,
    bytes: u64,
}

/// `-0` becomes `0` (adding `+0` does that and changes nothing else).
fn normalise(score: f64) -> f64 {
    score + 0.0
}

fn not_a_float() -> Error {
    Error::invalid("ERR value is not a valid float")
}

impl ZSetValue {
    fn len(&self) -> usize {
        self.scores.len()
    }

    /// Sets `member`'s score; `true` when the member is new.
    fn insert(&mut self, member: &str, score: f64) -> bool {
        let score = normalise(score);
        if let Some((name, old)) = self.scores.get_key_value(member) {
            let (name, old) = (Arc::clone(name), *old);
            if old != score {
                self.order.remove(&Ranked {
                    score: Score(old),
                    member: Arc::clone(&name),
                });
                self.order.insert(Ranked {
                    score: Score(score),
                    member: Arc::clone(&name),
                });
                self.scores.insert(name, score);
            }
            return false;
        }
        let name: Arc<str> = Arc::from(member);
        self.bytes += member.len() as u64 + MEMBER_OVERHEAD;
        self.order.insert(Ranked {
            score: Score(score),
            member: Arc::clone(&name),
        });
        self.scores.insert(name, score);
        true
    }

    fn remove(&mut self, member: &str) -> bool {
        let Some((name, score)) = self.scores.remove_entry(member) else {
            return false;
        };
        self.order.remove(&Ranked {
            score: Score(score),
            member: name,
        });
        self.bytes -= member.len() as u64 + MEMBER_OVERHEAD;
        true
    }

    /// Ascending rank of `member`.
    fn rank(&self, member: &str) -> Option<u64> {
        let (name, score) = self.scores.get_key_value(member)?;
        let probe = Ranked {
            score: Score(*score),
            member: Arc::clone(name),
        };
        Some(self.order.range(..probe).count() as u64)
    }

    /// Members from index `start` to `stop` inclusive, Redis-normalised
    /// (negative counts from the end, clamped to the set).
    fn range_by_index(&self, start: i64, stop: i64, rev: bool) -> Vec<(String, f64)> {
        let len = self.len() as i64;
        let start = if start < 0 { start + len } else { start }.max(0);
        let stop = if stop < 0 { stop + len } else { stop };
        if start > stop || start >= len {
            return Vec::new();
        }
        let stop = stop.min(len - 1);
        // Both fit in usize: 0 <= start <= stop < len.
        let (skip, take) = (start as usize, (stop - start + 1) as usize);
        let pair = |r: &Ranked| (r.member.to_string(), r.score.0);
        if rev {
            self.order
                .iter()
                .rev()
                .skip(skip)
                .take(take)
                .map(pair)
                .collect()
        } else {
            self.order.iter().skip(skip).take(take).map(pair).collect()
        }
    }

    /// Members with `min <= score <= max` (per the bounds), ascending.
    fn range_by_score<'a>(
        &'a self,
        min: ScoreBound,
        max: ScoreBound,
    ) -> impl Iterator<Item = &'a Ranked> + 'a {
        let from = match min {
            ScoreBound::NegInfinity => f64::NEG_INFINITY,
            ScoreBound::PosInfinity => f64::INFINITY,
            ScoreBound::Inclusive(s) | ScoreBound::Exclusive(s) => normalise(s),
        };
        let probe = Ranked {
            score: Score(from),
            member: Arc::from(""),
        };
        self.order
            .range(probe..)
            .skip_while(move |r| !min.admits_from_below(r.score.0))
            .take_while(move |r| max.admits_from_above(r.score.0))
    }
}

/// Redis rejects a NaN bound ("min or max is not a float").
fn check_bounds(min: ScoreBound, max: ScoreBound) -> Result<()> {
    for bound in [min, max] {
        if let ScoreBound::Inclusive(s) | ScoreBound::Exclusive(s) = bound
            && s.is_nan()
        {
            return Err(Error::invalid("ERR min or max is not a float"));
        }
    }
    Ok(())
}

impl Collection for ZSetValue {
    fn of(value: &Value) -> Option<&Mutex<Self>> {
        match value {
            Value::ZSet(zset) => Some(zset),
            _ => None,
        }
    }

    fn wrap(value: Mutex<Self>) -> Value {
        Value::ZSet(value)
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn bytes(&self) -> u64 {
        self.bytes
    }
}

impl EmbeddedKv {
    /// Runs `f` on the sorted set at `key` (`None` when missing), failing
    /// with WRONGTYPE on another type.
    fn read_zset<T>(&self, key: &str, f: impl FnOnce(Option<&ZSetValue>) -> T) -> Result<T> {
        self.read_collection(key, f)
    }

    /// Applies `f` to the sorted set at `key`, creating it when missing (see
    /// `write_collection`). `f` must validate before mutating.
    fn write_zset<T>(&self, key: &str, f: impl FnOnce(&mut ZSetValue) -> Result<T>) -> Result<T> {
        self.write_collection(key, f)
    }

    pub(super) fn zadd(&self, key: &str, members: &[(f64, String)]) -> Result<Reply> {
        if members.is_empty() {
            return Err(super::wrong_arity("zadd"));
        }
        if members.iter().any(|(score, _)| score.is_nan()) {
            return Err(not_a_float());
        }
        self.write_zset(key, |zset| {
            let added = members
                .iter()
                .filter(|(score, member)| zset.insert(member, *score))
                .count();
            Ok(Reply::Int(added as i64))
        })
    }

    pub(super) fn zincr_by(&self, key: &str, delta: f64, member: &str) -> Result<Reply> {
        if delta.is_nan() {
            return Err(not_a_float());
        }
        self.write_zset(key, |zset| {
            let score = zset.scores.get(member).copied().unwrap_or(0.0) + delta;
            if score.is_nan() {
                return Err(Error::invalid("ERR resulting score is not a number (NaN)"));
            }
            zset.insert(member, score);
            Ok(Reply::Float(normalise(score)))
        })
    }

    pub(super) fn zscore(&self, key: &str, member: &str) -> Result<Reply> {
        self.read_zset(key, |zset| {
            Reply::Score(zset.and_then(|z| z.scores.get(member).copied()))
        })
    }

    pub(super) fn zrank(&self, key: &str, member: &str, rev: bool) -> Result<Reply> {
        self.read_zset(key, |zset| {
            let rank = zset.and_then(|z| {
                let rank = z.rank(member)?;
                Some(if rev { z.len() as u64 - 1 - rank } else { rank })
            });
            Reply::Rank(rank)
        })
    }

    pub(super) fn zrange(&self, key: &str, start: i64, stop: i64, rev: bool) -> Result<Reply> {
        self.read_zset(key, |zset| {
            Reply::Scored(zset.map_or_else(Vec::new, |z| z.range_by_index(start, stop, rev)))
        })
    }

    pub(super) fn zrange_by_score(
        &self,
        key: &str,
        min: ScoreBound,
        max: ScoreBound,
        limit: Option<(u64, u64)>,
    ) -> Result<Reply> {
        check_bounds(min, max)?;
        let (offset, count) = limit.unwrap_or((0, u64::MAX));
        let offset = usize::try_from(offset).unwrap_or(usize::MAX);
        let count = usize::try_from(count).unwrap_or(usize::MAX);
        self.read_zset(key, |zset| {
            let scored = zset.map_or_else(Vec::new, |z| {
                z.range_by_score(min, max)
                    .skip(offset)
                    .take(count)
                    .map(|r| (r.member.to_string(), r.score.0))
                    .collect()
            });
            Reply::Scored(scored)
        })
    }

    pub(super) fn zrem_range_by_score(
        &self,
        key: &str,
        min: ScoreBound,
        max: ScoreBound,
    ) -> Result<Reply> {
        check_bounds(min, max)?;
        self.write_zset(key, |zset| {
            let doomed: Vec<Arc<str>> = zset
                .range_by_score(min, max)
                .map(|r| Arc::clone(&r.member))
                .collect();
            for member in &doomed {
                zset.remove(member);
            }
            Ok(Reply::Int(doomed.len() as i64))
        })
    }

    pub(super) fn zrem(&self, key: &str, members: &[String]) -> Result<Reply> {
        if members.is_empty() {
            return Err(super::wrong_arity("zrem"));
        }
        self.write_zset(key, |zset| {
            let removed = members.iter().filter(|m| zset.remove(m)).count();
            Ok(Reply::Int(removed as i64))
        })
    }

    pub(super) fn zcard(&self, key: &str) -> Result<Reply> {
        self.read_zset(
            key,
            |zset| Reply::Int(zset.map_or(0, ZSetValue::len) as i64),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_follow_inserts_and_removals() {
        let mut z = ZSetValue::default();
        assert!(z.insert("alice", 1.0));
        assert!(!z.insert("alice", 2.0));
        assert!(z.insert("bob", 2.0));
        assert_eq!(z.bytes(), 5 + 3 + 2 * MEMBER_OVERHEAD);
        assert!(z.remove("alice"));
        assert!(!z.remove("alice"));
        assert_eq!(z.bytes(), 3 + MEMBER_OVERHEAD);
        assert_eq!(z.order.len(), 1);
    }

    #[test]
    fn negative_zero_ties_with_zero() {
        let mut z = ZSetValue::default();
        z.insert("b", 0.0);
        z.insert("a", -0.0);
        let names: Vec<String> = z
            .range_by_index(0, -1, false)
            .into_iter()
            .map(|p| p.0)
            .collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(z.scores.get("a").map(|s| s.is_sign_negative()), Some(false));
    }

    #[test]
    fn infinite_bounds_admit_infinite_scores() {
        let mut z = ZSetValue::default();
        z.insert("top", f64::INFINITY);
        z.insert("mid", 1.0);
        z.insert("bottom", f64::NEG_INFINITY);
        let top: Vec<&str> = z
            .range_by_score(ScoreBound::PosInfinity, ScoreBound::PosInfinity)
            .map(|r| &*r.member)
            .collect();
        assert_eq!(top, ["top"]);
        let all = z
            .range_by_score(ScoreBound::NegInfinity, ScoreBound::PosInfinity)
            .count();
        assert_eq!(all, 3);
    }
}
