//! `cities`: the reference cities, one per lower-cased name.

use sea_orm::entity::prelude::*;

/// One city.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "cities")]
pub struct Model {
    /// Surrogate key.
    #[sea_orm(primary_key)]
    pub id: i32,
    /// The name as written, e.g. `Munich`.
    pub name: String,
    /// The name lower-cased by strata (`to_lowercase`); unique.
    #[sea_orm(unique)]
    pub name_key: String,
    /// The country.
    pub country_id: i32,
}

/// A city belongs to a country; addresses reference it.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    /// The city's country.
    #[sea_orm(
        belongs_to = "super::country::Entity",
        from = "Column::CountryId",
        to = "super::country::Column::Id"
    )]
    Country,
    /// Addresses in the city.
    #[sea_orm(has_many = "super::address::Entity")]
    Address,
}

impl Related<super::country::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Country.def()
    }
}

impl Related<super::address::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Address.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
