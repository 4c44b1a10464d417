//! The HTTP API's bearer tokens: created, listed, revoked and verified
//! ([`Tokens`]), stored in the relational engine (`api_tokens`).
//!
//! # What holds
//!
//! - A token is `strata_` and 64 hex digits: 256 bits from the thread's
//!   CSPRNG (ChaCha, seeded from the operating system). It is returned once,
//!   by [`Tokens::create`], and never stored: the table holds its SHA-256
//!   (hex). A high-entropy secret needs no slow, salted hash: nothing about
//!   it can be guessed from its digest.
//! - Scopes are ordered, `admin` ⊇ `write` ⊇ `read` ([`Scope::allows`]).
//! - Verification is cached in memory for [`CACHE_TTL`] (5 s), keyed by the
//!   digest (never the token), valid and unknown tokens alike, and so is
//!   whether any valid token exists: a request costs an SQL round trip at
//!   most once per token per period. So a token revoked by another process
//!   is refused at most [`CACHE_TTL`] later; one revoked or created
//!   through this [`Tokens`] takes effect at once (its caches are cleared).
//! - `last_used_at` is written when a verification misses the cache, so it
//!   is accurate to [`CACHE_TTL`] per process.

use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ActiveValue::NotSet, ColumnTrait, DatabaseConnection, EntityTrait,
    PaginatorTrait, QueryFilter, QueryOrder, Set,
};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::config::Config;
use crate::error::{Error, ErrorKind, Result};
use crate::platform::entities::api_token;
use crate::platform::now;
use crate::platform::registry::db_err;

/// How long a verification (and whether any token exists) is cached: the
/// bound on how late a revocation made by another process takes effect.
pub const CACHE_TTL: Duration = Duration::from_secs(5);

/// What every token starts with (so that a leaked one is recognisable).
pub const TOKEN_PREFIX: &str = "strata_";

/// The longest name a token may have.
pub const NAME_MAX: usize = 100;

/// Distinct digests whose verification is cached at once.
const CACHE_CAPACITY: u64 = 10_000;

/// What a token may do. Ordered: each scope allows what the ones below it
/// allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Reads (GET, HEAD, and the POSTs that only read: batch features,
    /// predictions).
    Read,
    /// Reads and writes.
    Write,
    /// Everything, including replaying and purging dead letters.
    Admin,
}

impl Scope {
    /// Its name: `read`, `write` or `admin`.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Write => "write",
            Scope::Admin => "admin",
        }
    }

    /// Whether a token of this scope may do what `needed` allows.
    pub fn allows(self, needed: Scope) -> bool {
        self >= needed
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Scope {
    type Err = Error;

    fn from_str(s: &str) -> Result<Scope> {
        match s {
            "read" => Ok(Scope::Read),
            "write" => Ok(Scope::Write),
            "admin" => Ok(Scope::Admin),
            other => Err(Error::invalid(format!(
                "unknown scope `{other}` (expected read, write or admin)"
            ))
            .with_field("scope")),
        }
    }
}

/// Who a verified token is: its id and scope (never the token).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Principal {
    /// The token's id.
    pub id: i64,
    /// What it may do.
    pub scope: Scope,
}

/// A token as listed: everything but the token and its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TokenInfo {
    /// Its id.
    pub id: i64,
    /// Its name, when given.
    pub name: Option<String>,
    /// What it may do.
    pub scope: Scope,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it was revoked; `None` while valid.
    pub revoked_at: Option<DateTime<Utc>>,
    /// When a server last verified it (to [`CACHE_TTL`]).
    pub last_used_at: Option<DateTime<Utc>>,
}

impl TokenInfo {
    fn from_row(row: api_token::Model) -> Result<TokenInfo> {
        Ok(TokenInfo {
            id: row.id,
            scope: row.scope.parse().map_err(|_| {
                Error::internal(format!("api token {}: unknown scope in the table", row.id))
            })?,
            name: row.name,
            created_at: row.created_at,
            revoked_at: row.revoked_at,
            last_used_at: row.last_used_at,
        })
    }
}

/// A token just created: the token itself, shown this once, and its row.
pub struct NewToken {
    /// The bearer token. Not kept anywhere by strata.
    pub token: String,
    /// Its row.
    pub info: TokenInfo,
}

/// The token is left out: it must never reach a log.
impl fmt::Debug for NewToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewToken")
            .field("token", &"<redacted>")
            .field("info", &self.info)
            .finish()
    }
}

/// The token service. Cheap to clone; clones share their caches.
#[derive(Clone)]
pub struct Tokens {
    db: DatabaseConnection,
    verified: moka::sync::Cache<[u8; 32], Option<Principal>>,
    any: Arc<Mutex<Option<(Instant, bool)>>>,
}

impl fmt::Debug for Tokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tokens")
            .field("cached", &self.verified.entry_count())
            .finish_non_exhaustive()
    }
}

impl Tokens {
    /// The service over `db` (migrated).
    pub fn new(db: DatabaseConnection) -> Tokens {
        Tokens {
            db,
            verified: moka::sync::Cache::builder()
                .max_capacity(CACHE_CAPACITY)
                .time_to_live(CACHE_TTL)
                .build(),
            any: Arc::new(Mutex::new(None)),
        }
    }

    /// The service on the configured relational engine alone (migrated
    /// first): what `strata token` needs, without opening the other
    /// engines, so that it runs beside a `strata serve` holding them.
    pub async fn open(config: &Config) -> Result<Tokens> {
        let db = crate::engines::open_relational(config).await?;
        crate::migration::migrate(&db).await?;
        Ok(Tokens::new(db))
    }

    /// Creates a token of `scope`, named `name`; the answer holds the
    /// token, which cannot be had again.
    pub async fn create(&self, scope: Scope, name: Option<&str>) -> Result<NewToken> {
        if let Some(name) = name {
            check_name(name)?;
        }
        let token = format!("{TOKEN_PREFIX}{}", hex(&rand::random::<[u8; 32]>()));
        let row = api_token::ActiveModel {
            id: NotSet,
            name: Set(name.map(str::to_owned)),
            scope: Set(scope.as_str().to_owned()),
            hash: Set(hex(&digest(&token))),
            created_at: Set(now()),
            revoked_at: Set(None),
            last_used_at: Set(None),
        }
        .insert(&self.db)
        .await
        .map_err(db_err("create_token"))?;
        self.forget();
        Ok(NewToken {
            token,
            info: TokenInfo::from_row(row)?,
        })
    }

    /// Every token, valid and revoked, oldest first.
    pub async fn list(&self) -> Result<Vec<TokenInfo>> {
        api_token::Entity::find()
            .order_by_asc(api_token::Column::Id)
            .all(&self.db)
            .await
            .map_err(db_err("list_tokens"))?
            .into_iter()
            .map(TokenInfo::from_row)
            .collect()
    }

    /// Revokes token `id`; revoking a revoked token changes nothing. The
    /// answer is the token's row, and whether this call revoked it.
    pub async fn revoke(&self, id: i64) -> Result<(TokenInfo, bool)> {
        let Some(row) = api_token::Entity::find_by_id(id)
            .one(&self.db)
            .await
            .map_err(db_err("revoke_token"))?
        else {
            return Err(Error::not_found(format!("no API token {id}")).with_field("id"));
        };
        if row.revoked_at.is_some() {
            return Ok((TokenInfo::from_row(row)?, false));
        }
        let mut active: api_token::ActiveModel = row.into();
        active.revoked_at = Set(Some(now()));
        let row = active
            .update(&self.db)
            .await
            .map_err(db_err("revoke_token"))?;
        self.forget();
        Ok((TokenInfo::from_row(row)?, true))
    }

    /// Whether any token is valid (not revoked), cached for [`CACHE_TTL`].
    pub async fn any_active(&self) -> Result<bool> {
        if let Some((at, any)) = *self.any.lock().unwrap_or_else(|e| e.into_inner())
            && at.elapsed() < CACHE_TTL
        {
            return Ok(any);
        }
        let count = api_token::Entity::find()
            .filter(api_token::Column::RevokedAt.is_null())
            .count(&self.db)
            .await
            .map_err(db_err("count_tokens"))?;
        let any = count > 0;
        *self.any.lock().unwrap_or_else(|e| e.into_inner()) = Some((Instant::now(), any));
        Ok(any)
    }

    /// Who `token` is, when it is a valid token; `None` for anything else
    /// (unknown, revoked, malformed). Cached for [`CACHE_TTL`].
    pub async fn verify(&self, token: &str) -> Result<Option<Principal>> {
        if !is_well_formed(token) {
            return Ok(None);
        }
        let key = digest(token);
        if let Some(known) = self.verified.get(&key) {
            return Ok(known);
        }
        let row = api_token::Entity::find()
            .filter(api_token::Column::Hash.eq(hex(&key)))
            .filter(api_token::Column::RevokedAt.is_null())
            .one(&self.db)
            .await
            .map_err(db_err("verify_token"))?;
        let principal = match row {
            Some(row) => {
                let principal = Principal {
                    id: row.id,
                    scope: row.scope.parse().map_err(|_| {
                        Error::internal(format!("api token {}: unknown scope in the table", row.id))
                    })?,
                };
                let mut active: api_token::ActiveModel = row.into();
                active.last_used_at = Set(Some(now()));
                if let Err(e) = active.update(&self.db).await {
                    // The request goes on: only the bookkeeping is late.
                    tracing::warn!(
                        token_id = principal.id,
                        "cannot record the API token's last use: {}",
                        crate::engines::relational::map_db_err(e)
                    );
                }
                Some(principal)
            }
            None => None,
        };
        self.verified.insert(key, principal);
        Ok(principal)
    }

    /// Clears the caches: a change made here is seen at once.
    fn forget(&self) {
        self.verified.invalidate_all();
        *self.any.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

/// A name: 1 to [`NAME_MAX`] characters, none of them a control character.
fn check_name(name: &str) -> Result<()> {
    let length = name.chars().count();
    if length == 0 || length > NAME_MAX || name.chars().any(char::is_control) {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!(
                "a token name has 1 to {NAME_MAX} characters, none of them a control character"
            ),
        )
        .with_field("name"));
    }
    Ok(())
}

/// Whether `token` has the shape of a token: the prefix and 64 hex digits.
fn is_well_formed(token: &str) -> bool {
    token
        .strip_prefix(TOKEN_PREFIX)
        .is_some_and(|rest| rest.len() == 64 && rest.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_are_ordered() {
        assert!(Scope::Admin.allows(Scope::Write));
        assert!(Scope::Admin.allows(Scope::Read));
        assert!(Scope::Write.allows(Scope::Read));
        assert!(!Scope::Write.allows(Scope::Admin));
        assert!(!Scope::Read.allows(Scope::Write));
        for s in [Scope::Read, Scope::Write, Scope::Admin] {
            assert_eq!(s.as_str().parse::<Scope>().ok(), Some(s));
        }
        assert!("root".parse::<Scope>().is_err());
    }

    #[test]
    fn only_the_token_shape_is_well_formed() {
        let good = format!("{TOKEN_PREFIX}{}", "a1".repeat(32));
        assert!(is_well_formed(&good));
        assert!(!is_well_formed(&good[1..]));
        assert!(!is_well_formed(&format!("{good}0")));
        assert!(!is_well_formed(&format!(
            "{TOKEN_PREFIX}{}",
            "zz".repeat(32)
        )));
        assert_eq!(hex(&[0, 15, 255]), "000fff");
    }
}
