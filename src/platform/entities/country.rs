//! `countries`: the reference countries (see the customers migration).

use sea_orm::entity::prelude::*;

/// One country.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "countries")]
pub struct Model {
    /// Surrogate key.
    #[sea_orm(primary_key)]
    pub id: i32,
    /// ISO 3166-1 alpha-2 code, e.g. `DE`; unique.
    #[sea_orm(unique)]
    pub code: String,
    /// English name.
    pub name: String,
}

/// Cities reference their country.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    /// The country's cities.
    #[sea_orm(has_many = "super::city::Entity")]
    City,
}

impl Related<super::city::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::City.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
