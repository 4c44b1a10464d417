//! `outbox`: events waiting for the relay, and those it sent, until their
//! retention runs out (see `platform::outbox`).

use sea_orm::entity::prelude::*;

/// One event.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "outbox")]
pub struct Model {
    /// The event's sequence (assigned at insert).
    #[sea_orm(primary_key)]
    pub id: i64,
    /// Its routing key, e.g. `run.completed`.
    pub topic: String,
    /// The `model_id` it is about.
    pub aggregate: String,
    /// The event's `data`, as JSON text.
    #[sea_orm(column_type = "Text")]
    pub payload: String,
    /// When the change it describes was committed (its transaction's time).
    pub created_at: DateTimeUtc,
    /// When the broker confirmed it; `None` while unsent.
    pub sent_at: Option<DateTimeUtc>,
    /// The relay holding it, while claimed.
    pub claimed_by: Option<String>,
    /// Until when that relay holds it; another relay may take it after.
    pub claimed_until: Option<DateTimeUtc>,
    /// Failed publications so far.
    pub attempts: i32,
    /// The last publication's error.
    #[sea_orm(column_type = "Text", nullable)]
    pub last_error: Option<String>,
}

/// No relations.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
