//! The customer schema behind the analytics: `countries`, `cities` (with a
//! fixed reference list, so a fresh strata resolves cities without
//! seeding), `users`, their `addresses` and their `orders`.
//!
//! What MUST hold, on both backends:
//!
//! - `cities.name_key` is the city's name lower-cased by strata (Rust's
//!   Unicode `to_lowercase`, not the database's `lower`, which differs
//!   between SQLite and PostgreSQL) and is unique: one city per name.
//! - `users.id` and `orders.id` are chosen by the caller (`u-000123`, a
//!   purchase event id), so recording the same order twice finds its row.
//! - `users.email` is unique (strata stores it lower-cased); a user has at
//!   most one address (`addresses.user_id` is unique).
//! - `orders.amount` is a double on both backends (SQLite `REAL`,
//!   PostgreSQL `double precision`), so an `f64` reads back bit for bit.
//! - Text keys compare byte-wise (`COLLATE "C"` on PostgreSQL), as on
//!   SQLite.

use sea_orm::DbBackend;
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum Countries {
    Table,
    Id,
    Code,
    Name,
}

#[derive(DeriveIden)]
enum Cities {
    Table,
    Id,
    Name,
    NameKey,
    CountryId,
}

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
    Email,
    Name,
    SignedUpAt,
    Source,
}

#[derive(DeriveIden)]
enum Addresses {
    Table,
    Id,
    UserId,
    CityId,
}

#[derive(DeriveIden)]
enum Orders {
    Table,
    Id,
    UserId,
    ProductId,
    Category,
    Amount,
    OrderedAt,
}

/// The reference countries: `(code, name)`.
const COUNTRIES: &[(&str, &str)] = &[
    ("US", "United States"),
    ("GB", "United Kingdom"),
    ("DE", "Germany"),
    ("FR", "France"),
    ("ES", "Spain"),
    ("IT", "Italy"),
    ("NL", "Netherlands"),
    ("JP", "Japan"),
    ("BR", "Brazil"),
    ("CA", "Canada"),
];

/// The reference cities: `(name, country code)`.
pub(crate) const CITIES: &[(&str, &str)] = &[
    ("New York", "US"),
    ("San Francisco", "US"),
    ("Chicago", "US"),
    ("Austin", "US"),
    ("London", "GB"),
    ("Manchester", "GB"),
    ("Edinburgh", "GB"),
    ("Berlin", "DE"),
    ("Munich", "DE"),
    ("Hamburg", "DE"),
    ("Paris", "FR"),
    ("Lyon", "FR"),
    ("Madrid", "ES"),
    ("Barcelona", "ES"),
    ("Rome", "IT"),
    ("Milan", "IT"),
    ("Amsterdam", "NL"),
    ("Rotterdam", "NL"),
    ("Tokyo", "JP"),
    ("Osaka", "JP"),
    ("Sao Paulo", "BR"),
    ("Rio de Janeiro", "BR"),
    ("Toronto", "CA"),
    ("Vancouver", "CA"),
    ("Montreal", "CA"),
];

fn text<T: IntoIden>(backend: DbBackend, name: T, len: u32) -> ColumnDef {
    let mut def = ColumnDef::new(name).string_len(len).to_owned();
    if backend == DbBackend::Postgres {
        def.extra("COLLATE \"C\"");
    }
    def
}

fn id(name: impl IntoIden) -> ColumnDef {
    ColumnDef::new(name)
        .integer()
        .not_null()
        .auto_increment()
        .primary_key()
        .to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let b = manager.get_database_backend();
        manager
            .create_table(
                Table::create()
                    .table(Countries::Table)
                    .if_not_exists()
                    .col(id(Countries::Id))
                    .col(text(b, Countries::Code, 2).not_null().unique_key())
                    .col(text(b, Countries::Name, 100).not_null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Cities::Table)
                    .if_not_exists()
                    .col(id(Cities::Id))
                    .col(text(b, Cities::Name, 100).not_null())
                    .col(text(b, Cities::NameKey, 100).not_null().unique_key())
                    .col(ColumnDef::new(Cities::CountryId).integer().not_null())
                    .foreign_key(
                        ForeignKey::create()
                            .from(Cities::Table, Cities::CountryId)
                            .to(Countries::Table, Countries::Id),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Users::Table)
                    .if_not_exists()
                    .col(text(b, Users::Id, 64).not_null().primary_key())
                    .col(text(b, Users::Email, 254).not_null().unique_key())
                    .col(text(b, Users::Name, 200).not_null())
                    .col(
                        ColumnDef::new(Users::SignedUpAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(text(b, Users::Source, 64).not_null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Addresses::Table)
                    .if_not_exists()
                    .col(id(Addresses::Id))
                    .col(text(b, Addresses::UserId, 64).not_null().unique_key())
                    .col(ColumnDef::new(Addresses::CityId).integer().not_null())
                    .foreign_key(
                        ForeignKey::create()
                            .from(Addresses::Table, Addresses::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(Addresses::Table, Addresses::CityId)
                            .to(Cities::Table, Cities::Id),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Orders::Table)
                    .if_not_exists()
                    .col(text(b, Orders::Id, 64).not_null().primary_key())
                    .col(text(b, Orders::UserId, 64).not_null())
                    .col(text(b, Orders::ProductId, 64).not_null())
                    .col(text(b, Orders::Category, 64).not_null())
                    .col(ColumnDef::new(Orders::Amount).double().not_null())
                    .col(
                        ColumnDef::new(Orders::OrderedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(Orders::Table, Orders::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_orders_user_ordered_at")
                    .table(Orders::Table)
                    .col(Orders::UserId)
                    .col(Orders::OrderedAt)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_orders_ordered_at")
                    .table(Orders::Table)
                    .col(Orders::OrderedAt)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_addresses_city")
                    .table(Addresses::Table)
                    .col(Addresses::CityId)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;

        // Reference data: countries, then cities by their country's code.
        let mut countries = Query::insert()
            .into_table(Countries::Table)
            .columns([Countries::Code, Countries::Name])
            .to_owned();
        for (code, name) in COUNTRIES {
            countries.values_panic([(*code).into(), (*name).into()]);
        }
        manager.exec_stmt(countries).await?;
        // The names are constants without quotes: plain SQL is safe here,
        // and `INSERT ... SELECT` reads the same on both backends.
        let db = manager.get_connection();
        for (name, code) in CITIES {
            db.execute_unprepared(&format!(
                "INSERT INTO cities (name, name_key, country_id) \
                 SELECT '{name}', '{}', id FROM countries WHERE code = '{code}'",
                name.to_lowercase()
            ))
            .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            Orders::Table.into_iden(),
            Addresses::Table.into_iden(),
            Users::Table.into_iden(),
            Cities::Table.into_iden(),
            Countries::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).if_exists().to_owned())
                .await?;
        }
        Ok(())
    }
}
