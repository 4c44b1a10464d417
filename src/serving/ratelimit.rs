//! Rate limits per client and route group, held in the key-value engine so
//! that they hold across every instance sharing it.
//!
//! Each check is one atomic GCRA step (generic cell rate algorithm: a
//! Lua script on Redis, one critical section in the embedded store): a
//! group allows `requests` per `per`, as a burst of at most `requests`,
//! and a refused request consumes nothing.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::engines::KvStore;
use crate::engines::kv::{KvStoreExt, RateLimitReply};
use crate::error::{Error, ErrorKind, Result};

/// One group's limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limit {
    /// Requests allowed per `per` (also the largest burst).
    #[serde(deserialize_with = "crate::config::lenient::u32")]
    pub requests: u32,
    /// The period.
    #[serde(with = "humantime_serde")]
    pub per: Duration,
}

/// `[serving.rate_limits]`: a limit per route group, none when absent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitsConfig {
    /// `GET` routes but predictions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read: Option<Limit>,
    /// Routes that write (`POST`, `PUT`, `PATCH`, `DELETE`) but predictions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub write: Option<Limit>,
    /// `POST /v1/models/{id}/predict`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub predict: Option<Limit>,
}

impl RateLimitsConfig {
    /// Refuses a limit of zero requests or a zero period, naming it.
    pub fn check(&self) -> Result<()> {
        for (group, limit) in [
            ("read", self.read),
            ("write", self.write),
            ("predict", self.predict),
        ] {
            if let Some(limit) = limit
                && (limit.requests == 0 || limit.per.is_zero())
            {
                return Err(Error::new(
                    ErrorKind::Config,
                    format!("serving.rate_limits.{group}: requests and per must be more than zero"),
                ));
            }
        }
        Ok(())
    }

    /// Whether any group is limited.
    pub fn any(&self) -> bool {
        self.read.is_some() || self.write.is_some() || self.predict.is_some()
    }
}

/// A route group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group {
    /// Reads.
    Read,
    /// Writes.
    Write,
    /// Predictions.
    Predict,
}

impl Group {
    /// `read`, `write` or `predict`.
    pub fn as_str(self) -> &'static str {
        match self {
            Group::Read => "read",
            Group::Write => "write",
            Group::Predict => "predict",
        }
    }
}

/// What a check decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// The group's limit.
    pub limit: Limit,
    /// The engine's answer.
    pub reply: RateLimitReply,
}

/// The rate limiter. Cheap to clone.
#[derive(Debug, Clone)]
pub struct RateLimiter {
    kv: Arc<dyn KvStore>,
    config: RateLimitsConfig,
}

/// A client's identity in keys: a hash of its API token, or its address.
pub fn client_key(token: Option<&str>, address: Option<std::net::IpAddr>) -> String {
    match (token, address) {
        (Some(token), _) => {
            let digest = Sha256::digest(token.as_bytes());
            let hex: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
            format!("t:{hex}")
        }
        (None, Some(address)) => format!("a:{address}"),
        (None, None) => "unknown".to_owned(),
    }
}

impl RateLimiter {
    pub(crate) fn new(kv: Arc<dyn KvStore>, config: RateLimitsConfig) -> Result<RateLimiter> {
        config.check()?;
        Ok(RateLimiter { kv, config })
    }

    /// The limits in force.
    pub fn config(&self) -> &RateLimitsConfig {
        &self.config
    }

    /// The limit of `group`, if any.
    pub fn limit(&self, group: Group) -> Option<Limit> {
        match group {
            Group::Read => self.config.read,
            Group::Write => self.config.write,
            Group::Predict => self.config.predict,
        }
    }

    /// Counts one request of `client` in `group`; `None` when the group is
    /// not limited. An error of the key-value engine is returned: the
    /// caller decides to fail open.
    pub async fn check(&self, group: Group, client: &str) -> Result<Option<Decision>> {
        let Some(limit) = self.limit(group) else {
            return Ok(None);
        };
        let key = format!("ratelimit:{}:{client}", group.as_str());
        let reply = self
            .kv
            .rate_limit(&key, limit.requests, limit.per, 1)
            .await?;
        Ok(Some(Decision { limit, reply }))
    }
}
