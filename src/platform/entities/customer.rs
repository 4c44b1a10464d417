//! `users`: the platform's customers, keyed by a caller-chosen id.

use sea_orm::entity::prelude::*;

/// One customer.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "users")]
pub struct Model {
    /// Chosen by the caller, e.g. `u-000123` or a UUID.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    /// Lower-cased; unique.
    #[sea_orm(unique)]
    pub email: String,
    /// Display name.
    pub name: String,
    /// When the customer signed up (UTC, microseconds).
    pub signed_up_at: DateTimeUtc,
    /// Where the customer came from, e.g. `organic`, `ads`.
    pub source: String,
}

/// A customer has one address and many orders.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    /// The customer's address.
    #[sea_orm(has_one = "super::address::Entity")]
    Address,
    /// The customer's orders.
    #[sea_orm(has_many = "super::order::Entity")]
    Order,
}

impl Related<super::address::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Address.def()
    }
}

impl Related<super::order::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Order.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
