//! `orders`: purchases, keyed by the purchase event's id so that
//! recording one twice keeps one row.

use sea_orm::entity::prelude::*;

/// One order.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "orders")]
pub struct Model {
    /// The purchase event's id.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    /// The customer.
    pub user_id: String,
    /// The product bought.
    pub product_id: String,
    /// The product's category.
    pub category: String,
    /// What was paid.
    pub amount: f64,
    /// When (UTC, microseconds).
    pub ordered_at: DateTimeUtc,
}

/// An order belongs to a customer.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    /// The customer.
    #[sea_orm(
        belongs_to = "super::customer::Entity",
        from = "Column::UserId",
        to = "super::customer::Column::Id"
    )]
    Customer,
}

impl Related<super::customer::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Customer.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
