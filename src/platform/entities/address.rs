//! `addresses`: where a customer lives, at most one per customer.

use sea_orm::entity::prelude::*;

/// One address.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "addresses")]
pub struct Model {
    /// Surrogate key.
    #[sea_orm(primary_key)]
    pub id: i32,
    /// The customer; unique.
    #[sea_orm(unique)]
    pub user_id: String,
    /// The city.
    pub city_id: i32,
}

/// An address belongs to a customer and lies in a city.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    /// The customer.
    #[sea_orm(
        belongs_to = "super::customer::Entity",
        from = "Column::UserId",
        to = "super::customer::Column::Id"
    )]
    Customer,
    /// The city.
    #[sea_orm(
        belongs_to = "super::city::Entity",
        from = "Column::CityId",
        to = "super::city::Column::Id"
    )]
    City,
}

impl Related<super::customer::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Customer.def()
    }
}

impl Related<super::city::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::City.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
