//! `sagas`: the durable log of operations that span engines (see
//! [`crate::platform::sagas`] and the `m20261201_000010_sagas` migration).

use sea_orm::entity::prelude::*;

/// One saga, as stored.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "sagas")]
pub struct Model {
    /// Its id (a UUID).
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    /// What it does: `register_run`, `unregister_run`, ...
    pub kind: String,
    /// What it is about: the `model_id`.
    pub subject: String,
    /// The subject while the saga is open, NULL once it ended (unique).
    pub active_subject: Option<String>,
    /// The request, as JSON: all a process needs to drive it.
    pub request: String,
    /// SHA-256 of the client's request, hex: an identical retry matches it.
    pub request_hash: String,
    /// `running`, `compensating`, `completed` or `compensated`.
    pub state: String,
    /// The steps done and undone so far, as JSON.
    pub steps: String,
    /// What it produced once completed, as JSON.
    pub result: Option<String>,
    /// The last error, when a step or compensation failed.
    pub error: Option<String>,
    /// How many times a process took it over after its driver was gone.
    pub attempts: i32,
    /// The process driving it now.
    pub owner: Option<String>,
    /// Until when `owner` holds it (UTC).
    pub lease_until: Option<DateTimeUtc>,
    /// When it began (UTC).
    pub created_at: DateTimeUtc,
    /// When it last changed (UTC).
    pub updated_at: DateTimeUtc,
}

/// Sagas relate to nothing: they name their subjects by value, since the
/// rows they create and remove come and go.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
