//! The leaderboard: each model's best accuracy in a sorted set of the
//! key-value engine, kept by one atomic `zadd_best` per completed run (a
//! model keeps its best score; an equal score keeps the earlier time).
//! Ties rank by who reached the score first.
//!
//! The key-value engine may lose it (the embedded one is memory only; a
//! Redis without persistence): [`Leaderboard::rebuild`] puts it back from
//! the completed runs of the relational engine, which `strata serve` does
//! at start when it is empty.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::engines::KvStore;
use crate::engines::kv::{Command, KvStoreExt, Reply, ScoreBound};
use crate::error::{Error, Result};

/// The sorted set of best accuracies by model id.
pub const LEADERBOARD_KEY: &str = "leaderboard:accuracy";

/// The hash of when each model reached its best accuracy (Unix ms).
pub const REACHED_KEY: &str = "leaderboard:accuracy:at";

/// The most entries one answer lists.
pub const MAX_TOP: u64 = 1000;

/// One place on the leaderboard.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Standing {
    /// 1 for the best.
    pub rank: u64,
    /// The model.
    pub model_id: String,
    /// Its best accuracy.
    pub score: f64,
    /// When it first reached it.
    pub reached_at: Option<DateTime<Utc>>,
}

/// The leaderboard. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Leaderboard {
    kv: Arc<dyn KvStore>,
}

impl Leaderboard {
    pub(crate) fn new(kv: Arc<dyn KvStore>) -> Leaderboard {
        Leaderboard { kv }
    }

    /// Records that `model_id` reached `score` at `at`; whether its best
    /// score changed.
    pub async fn submit(&self, model_id: &str, score: f64, at: DateTime<Utc>) -> Result<bool> {
        if !score.is_finite() {
            return Err(
                Error::invalid("a leaderboard score must be a finite number")
                    .with_field("accuracy"),
            );
        }
        self.kv
            .zadd_best(
                LEADERBOARD_KEY,
                model_id,
                score,
                REACHED_KEY,
                at.timestamp_millis(),
            )
            .await
    }

    /// Submits every `(model_id, score, at)` (a rebuild), in one pipeline.
    pub async fn submit_all(&self, entries: &[(String, f64, DateTime<Utc>)]) -> Result<u64> {
        if entries.is_empty() {
            return Ok(0);
        }
        let commands = entries
            .iter()
            .filter(|(_, score, _)| score.is_finite())
            .map(|(model_id, score, at)| Command::ZAddBest {
                key: LEADERBOARD_KEY.into(),
                member: model_id.clone(),
                score: *score,
                at_key: REACHED_KEY.into(),
                at: at.timestamp_millis(),
            })
            .collect();
        let mut changed = 0;
        for reply in self.kv.pipeline(commands).await? {
            if matches!(reply?, Reply::Bool(true)) {
                changed += 1;
            }
        }
        Ok(changed)
    }

    /// Takes `model_id` off the leaderboard (it was removed); whether it
    /// was on it.
    pub async fn remove(&self, model_id: &str) -> Result<bool> {
        let removed = self
            .kv
            .zrem(LEADERBOARD_KEY, &[model_id.to_owned()])
            .await?;
        self.kv.hdel(REACHED_KEY, &[model_id.to_owned()]).await?;
        Ok(removed > 0)
    }

    /// How many models it ranks.
    pub async fn len(&self) -> Result<u64> {
        self.kv.zcard(LEADERBOARD_KEY).await
    }

    /// Whether it ranks no model.
    pub async fn is_empty(&self) -> Result<bool> {
        Ok(self.len().await? == 0)
    }

    /// The best `n` (1 to [`MAX_TOP`]), best first; ties by who reached
    /// the score first.
    pub async fn top(&self, n: u64) -> Result<Vec<Standing>> {
        check_n("top", n)?;
        let ranked = self.ranked_prefix(n).await?;
        Ok(ranked.into_iter().take(n as usize).collect())
    }

    /// The standing of `model_id` and up to `around` models on each side;
    /// NotFound when it is not ranked.
    pub async fn around(&self, model_id: &str, around: u64) -> Result<(Standing, Vec<Standing>)> {
        if around > MAX_TOP / 2 {
            return Err(
                Error::invalid(format!("around is at most {}", MAX_TOP / 2)).with_field("around")
            );
        }
        let score = self
            .kv
            .zscore(LEADERBOARD_KEY, model_id)
            .await?
            .ok_or_else(|| {
                Error::not_found(format!("model `{model_id}` is not on the leaderboard"))
                    .with_field("model_id")
            })?;
        // Everyone strictly better, then the tied in order of arrival.
        let better = self
            .kv
            .zcount(
                LEADERBOARD_KEY,
                ScoreBound::Exclusive(score),
                ScoreBound::PosInfinity,
            )
            .await?;
        let tied = self.tied(score).await?;
        let position = tied.iter().position(|(m, _)| m == model_id).unwrap_or(0) as u64;
        let rank = better + position + 1;
        let prefix = self.ranked_prefix(rank + around).await?;
        let start = rank.saturating_sub(around + 1) as usize;
        let end = ((rank + around) as usize).min(prefix.len());
        let window: Vec<Standing> = prefix
            .get(start..end)
            .map(<[Standing]>::to_vec)
            .unwrap_or_default();
        let me = window
            .iter()
            .find(|s| s.model_id == model_id)
            .cloned()
            .ok_or_else(|| Error::internal("a ranked model vanished from its own window"))?;
        Ok((me, window))
    }

    /// The first `n` standings at least (more when the n-th is tied), in
    /// order.
    async fn ranked_prefix(&self, n: u64) -> Result<Vec<Standing>> {
        let stop = i64::try_from(n).unwrap_or(i64::MAX).saturating_sub(1);
        let head = self.kv.zrevrange(LEADERBOARD_KEY, 0, stop).await?;
        let Some((_, last)) = head.last().cloned() else {
            return Ok(Vec::new());
        };
        // Members tied with the last one may lie beyond it in the set's own
        // order (by member): fetch them all so time decides.
        let mut members: Vec<(String, f64)> =
            head.into_iter().filter(|(_, s)| *s != last).collect();
        members.extend(self.tied(last).await?);
        let times = self.reached(&members).await?;
        members.sort_by(|(a, sa), (b, sb)| {
            sb.total_cmp(sa)
                .then_with(|| times.get(a).cmp(&times.get(b)))
                .then_with(|| a.cmp(b))
        });
        Ok(members
            .into_iter()
            .enumerate()
            .map(|(i, (model_id, score))| Standing {
                rank: i as u64 + 1,
                reached_at: times
                    .get(&model_id)
                    .and_then(|t| DateTime::from_timestamp_millis(*t)),
                model_id,
                score,
            })
            .collect())
    }

    /// Every member with exactly `score`, earliest first.
    async fn tied(&self, score: f64) -> Result<Vec<(String, f64)>> {
        let members = self
            .kv
            .zrangebyscore(
                LEADERBOARD_KEY,
                ScoreBound::Inclusive(score),
                ScoreBound::Inclusive(score),
                None,
            )
            .await?;
        let times = self.reached(&members).await?;
        let mut members = members;
        members.sort_by(|(a, _), (b, _)| times.get(a).cmp(&times.get(b)).then_with(|| a.cmp(b)));
        Ok(members)
    }

    async fn reached(&self, members: &[(String, f64)]) -> Result<HashMap<String, i64>> {
        if members.is_empty() {
            return Ok(HashMap::new());
        }
        let fields: Vec<String> = members.iter().map(|(m, _)| m.clone()).collect();
        let times = self.kv.hmget(REACHED_KEY, &fields).await?;
        Ok(fields
            .into_iter()
            .zip(times)
            .filter_map(|(m, t)| Some((m, std::str::from_utf8(&t?).ok()?.parse().ok()?)))
            .collect())
    }
}

fn check_n(field: &'static str, n: u64) -> Result<()> {
    if n == 0 || n > MAX_TOP {
        return Err(
            Error::invalid(format!("{field} is 1 to {MAX_TOP}, not {n}")).with_field(field),
        );
    }
    Ok(())
}
