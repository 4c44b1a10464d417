//! `api_tokens`: the bearer tokens of the HTTP API, by the SHA-256 of each
//! (see `platform::tokens`).

use sea_orm::entity::prelude::*;

/// One token, as stored: never the token itself.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "api_tokens")]
pub struct Model {
    /// Its id (assigned at insert), what `strata token revoke` takes.
    #[sea_orm(primary_key)]
    pub id: i64,
    /// A name for people, when given.
    pub name: Option<String>,
    /// `read`, `write` or `admin`.
    pub scope: String,
    /// SHA-256 of the token, hex (unique).
    pub hash: String,
    /// When it was created (UTC).
    pub created_at: DateTimeUtc,
    /// When it was revoked; `None` while it is valid.
    pub revoked_at: Option<DateTimeUtc>,
    /// When a server last verified it (at most once per cache period).
    pub last_used_at: Option<DateTimeUtc>,
}

/// No relations.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
