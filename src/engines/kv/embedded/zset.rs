//! Sorted-set commands: `ZADD` (with `NX XX GT LT CH INCR`), `ZINCRBY`,
//! `ZSCORE`, `ZRANK`/`ZREVRANK`, `ZRANGE` by index and by score (with `REV`
//! and `LIMIT`), `ZCOUNT`, `ZREMRANGEBYSCORE`, `ZREM`, `ZCARD`, and
//! `zadd_best` (a best score and, in a hash, when it was reached).
//!
//! # What MUST hold
//!
//! - Order is by score, then by member bytewise (Redis's order). `-0` is
//!   stored as `0`, so the two tie like Redis's `<` comparison makes them.
//! - A NaN score is rejected before anything changes ("not a valid float");
//!   `±inf` scores are allowed, as in Redis, and a `ZINCRBY` (or `ZADD
//!   INCR`) that would produce NaN (`inf + -inf`) fails and changes nothing.
//! - `ZADD` checks in Redis's order: the argument count and flag
//!   combinations ([`ZAddOptions::check`]), then the scores, then the key's
//!   type. Per member, as Redis's `zsetAdd`: an existing member is left
//!   alone under `NX`; otherwise its new score (with `INCR`, old + given)
//!   is applied unless `GT` and it is not higher, or `LT` and it is not
//!   lower; an equal score changes nothing. A new member is added unless
//!   `XX` (`GT`/`LT` do not stop it). `XX` on a missing key creates
//!   nothing.
//! - Writes mutate the set in place under its mutex and re-insert the entry
//!   so moka re-weighs it; the whole set is never cloned. A set whose last
//!   member is removed is deleted; its expiry survives other writes.
//! - `zadd_best` holds the write locks of the sorted set and of the hash of
//!   times (like `MSETNX`), checks both keys' types and the stored time it
//!   must compare before writing either, so a failure changes nothing; a
//!   concurrent reader may see the score written before its time.
//! - Costs: member lookups are O(1), inserts and removals O(log n); ranks
//!   and index ranges walk the ordered set, O(rank) and O(start + count)
//!   (Redis's skip list does O(log n)), which is fine for the leaderboard
//!   sizes strata keeps in process.

use std::collections::{BTreeSet, HashMap};
use std::ops::Bound;
use std::sync::{Arc, Mutex};

use super::EmbeddedKv;
use super::entry::{Collection, Value};
use super::hash::HashValue;
use super::strings::{format_int, parse_redis_int};
use crate::engines::kv::{Reply, ScoreBound, ZAddOptions};
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

/// What `ZADD` did to one member, with the member's score after it.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Applied {
    /// A new member.
    Added(f64),
    /// An existing member got another score.
    Updated(f64),
    /// An existing member already had that score.
    Unchanged(f64),
    /// `NX`, `XX`, `GT` or `LT` left it alone.
    Refused,
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

    /// `member`'s score.
    pub(super) fn score(&self, member: &str) -> Option<f64> {
        self.scores.get(member).copied()
    }

    /// Sets `member`'s score; `true` when the member is new.
    pub(super) fn insert(&mut self, member: &str, score: f64) -> bool {
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

    /// One member of a `ZADD`, as Redis's `zsetAdd` applies it; a NaN
    /// result (`INCR` of `inf` by `-inf`) is refused before any change.
    fn apply(&mut self, member: &str, score: f64, options: ZAddOptions) -> Result<Applied> {
        let Some(current) = self.scores.get(member).copied() else {
            if options.xx {
                return Ok(Applied::Refused);
            }
            self.insert(member, score);
            return Ok(Applied::Added(normalise(score)));
        };
        if options.nx {
            return Ok(Applied::Refused);
        }
        let new = if options.incr { current + score } else { score };
        if new.is_nan() {
            return Err(Error::invalid("ERR resulting score is not a number (NaN)"));
        }
        if (options.gt && new <= current) || (options.lt && new >= current) {
            return Ok(Applied::Refused);
        }
        if new == current {
            return Ok(Applied::Unchanged(current));
        }
        self.insert(member, new);
        Ok(Applied::Updated(normalise(new)))
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

    /// Members with `min <= score <= max` (per the bounds), descending:
    /// the walk starts at the first member at or below `max`.
    fn range_by_score_rev<'a>(
        &'a self,
        min: ScoreBound,
        max: ScoreBound,
    ) -> impl Iterator<Item = &'a Ranked> + 'a {
        // Every member scored below the next float up from `max` (ties of
        // `max` are all below it, whatever their name).
        let above = match max {
            ScoreBound::PosInfinity => None,
            ScoreBound::NegInfinity => Some(f64::NEG_INFINITY.next_up()),
            ScoreBound::Inclusive(s) | ScoreBound::Exclusive(s) => {
                let s = normalise(s);
                (s < f64::INFINITY).then(|| s.next_up())
            }
        };
        let upper = match above {
            None => Bound::Unbounded,
            Some(score) => Bound::Excluded(Ranked {
                score: Score(normalise(score)),
                member: Arc::from(""),
            }),
        };
        self.order
            .range((Bound::Unbounded, upper))
            .rev()
            .skip_while(move |r| !max.admits_from_above(r.score.0))
            .take_while(move |r| min.admits_from_below(r.score.0))
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

    pub(super) fn zadd(
        &self,
        key: &str,
        members: &[(f64, String)],
        options: ZAddOptions,
    ) -> Result<Reply> {
        options.check(members.len())?;
        if members.iter().any(|(score, _)| score.is_nan()) {
            return Err(not_a_float());
        }
        self.write_zset(key, |zset| {
            let (mut added, mut changed, mut last) = (0, 0, None);
            for (score, member) in members {
                match zset.apply(member, *score, options)? {
                    Applied::Added(s) => {
                        added += 1;
                        last = Some(s);
                    }
                    Applied::Updated(s) => {
                        changed += 1;
                        last = Some(s);
                    }
                    Applied::Unchanged(s) => last = Some(s),
                    Applied::Refused => last = None,
                }
            }
            Ok(if options.incr {
                Reply::Score(last)
            } else if options.ch {
                Reply::Int(added + changed)
            } else {
                Reply::Int(added)
            })
        })
    }

    /// `zadd_best`, under the write locks of both keys: both types are
    /// checked (the times' hash first, as the Redis script does) before
    /// anything is written.
    pub(super) fn zadd_best(
        &self,
        key: &str,
        member: &str,
        score: f64,
        at_key: &str,
        at: i64,
    ) -> Result<Reply> {
        let _guards = self.write_locks([key, at_key].into_iter());
        let stored_at = self.read_collection(at_key, |h: Option<&HashValue>| {
            h.and_then(|h| h.get(member).cloned())
        })?;
        let current = self.read_zset(key, |z| z.and_then(|z| z.score(member)))?;
        let record_time = |at_key: &str| {
            self.write_collection_locked(at_key, |h: &mut HashValue| {
                h.insert(member.to_owned(), format_int(at));
                Ok(())
            })
        };
        match current {
            Some(current) if score < current => Ok(Reply::Bool(false)),
            // -0 and 0 tie, as in ZADD.
            Some(current) if score == current => {
                let earlier = match stored_at {
                    None => true,
                    Some(stored) => {
                        at < parse_redis_int(&stored).ok_or_else(|| {
                            Error::invalid(format!(
                                "ERR the time of member '{member}' is not an integer"
                            ))
                        })?
                    }
                };
                if earlier {
                    record_time(at_key)?;
                }
                Ok(Reply::Bool(false))
            }
            _ => {
                self.write_collection_locked(key, |z: &mut ZSetValue| {
                    z.insert(member, score);
                    Ok(())
                })?;
                record_time(at_key)?;
                Ok(Reply::Bool(true))
            }
        }
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
        rev: bool,
        limit: Option<(u64, u64)>,
    ) -> Result<Reply> {
        check_bounds(min, max)?;
        let (offset, count) = limit.unwrap_or((0, u64::MAX));
        let offset = usize::try_from(offset).unwrap_or(usize::MAX);
        let count = usize::try_from(count).unwrap_or(usize::MAX);
        let pair = |r: &Ranked| (r.member.to_string(), r.score.0);
        self.read_zset(key, |zset| {
            let scored = zset.map_or_else(Vec::new, |z| {
                if rev {
                    let range = z.range_by_score_rev(min, max);
                    range.skip(offset).take(count).map(pair).collect()
                } else {
                    let range = z.range_by_score(min, max);
                    range.skip(offset).take(count).map(pair).collect()
                }
            });
            Reply::Scored(scored)
        })
    }

    pub(super) fn zcount(&self, key: &str, min: ScoreBound, max: ScoreBound) -> Result<Reply> {
        check_bounds(min, max)?;
        self.read_zset(key, |zset| {
            Reply::Int(zset.map_or(0, |z| z.range_by_score(min, max).count()) as i64)
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

    /// One member of ZADD under each flag, as Redis's `zsetAdd`; the
    /// conformance suite's `zadd_condition_matrix_matches_redis` checks
    /// whole commands against both backends.
    #[test]
    fn zadd_applies_each_member_as_redis_does() {
        let flags = |s: &str| {
            let mut o = ZAddOptions::default();
            for f in s.split_whitespace() {
                match f {
                    "nx" => o.nx = true,
                    "xx" => o.xx = true,
                    "gt" => o.gt = true,
                    "lt" => o.lt = true,
                    "incr" => o.incr = true,
                    _ => unreachable!("{f}"),
                }
            }
            o
        };
        use Applied::*;
        // (flags, member, score, outcome) on a set holding `a` at 5.
        let cases = [
            ("", "a", 7.0, Updated(7.0)),
            ("", "a", 5.0, Unchanged(5.0)),
            ("", "b", 1.0, Added(1.0)),
            ("nx", "a", 7.0, Refused),
            ("nx", "b", 1.0, Added(1.0)),
            ("xx", "a", 7.0, Updated(7.0)),
            ("xx", "b", 1.0, Refused),
            ("gt", "a", 7.0, Updated(7.0)),
            ("gt", "a", 5.0, Refused),
            ("gt", "a", 3.0, Refused),
            ("gt", "b", 1.0, Added(1.0)),
            ("lt", "a", 3.0, Updated(3.0)),
            ("lt", "a", 5.0, Refused),
            ("lt", "b", 9.0, Added(9.0)),
            ("incr", "a", 2.0, Updated(7.0)),
            ("incr", "a", 0.0, Unchanged(5.0)),
            ("incr", "b", 2.0, Added(2.0)),
            ("incr gt", "a", -1.0, Refused),
            ("incr lt", "a", -1.0, Updated(4.0)),
            ("incr xx", "b", 2.0, Refused),
            ("", "a", -0.0, Updated(0.0)),
        ];
        for (f, member, score, want) in cases {
            let mut z = ZSetValue::default();
            z.insert("a", 5.0);
            let got = z.apply(member, score, flags(f)).unwrap();
            assert_eq!(got, want, "ZADD {f} {score} {member}");
            let stored = z.scores.get(member).copied();
            match want {
                Added(s) | Updated(s) | Unchanged(s) => assert_eq!(stored, Some(s)),
                Refused => assert_eq!(stored, (member == "a").then_some(5.0)),
            }
            assert_eq!(z.order.len(), z.scores.len());
        }
        let mut z = ZSetValue::default();
        z.insert("top", f64::INFINITY);
        let err = z
            .apply("top", f64::NEG_INFINITY, flags("incr"))
            .unwrap_err();
        assert_eq!(err.message(), "ERR resulting score is not a number (NaN)");
        assert_eq!(z.scores.get("top"), Some(&f64::INFINITY));
    }

    #[test]
    fn reverse_score_ranges_start_at_the_top_bound() {
        let mut z = ZSetValue::default();
        for (m, s) in [("a", 1.0), ("b", 2.0), ("c", 2.0), ("d", 3.0)] {
            z.insert(m, s);
        }
        z.insert("top", f64::INFINITY);
        z.insert("bottom", f64::NEG_INFINITY);
        let names = |it: Vec<&Ranked>| it.iter().map(|r| r.member.to_string()).collect::<Vec<_>>();
        use ScoreBound::*;
        let rev = |min, max| names(z.range_by_score_rev(min, max).collect());
        assert_eq!(rev(Inclusive(2.0), Inclusive(2.0)), ["c", "b"]);
        assert_eq!(rev(Exclusive(1.0), Exclusive(3.0)), ["c", "b"]);
        assert_eq!(rev(NegInfinity, PosInfinity).len(), 6);
        assert_eq!(rev(PosInfinity, PosInfinity), ["top"]);
        assert_eq!(rev(NegInfinity, NegInfinity), ["bottom"]);
        assert_eq!(
            rev(Inclusive(f64::INFINITY), Inclusive(f64::INFINITY)),
            ["top"]
        );
        assert!(rev(Inclusive(3.0), Inclusive(2.0)).is_empty());
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
