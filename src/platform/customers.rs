//! Customers on the relational engine: users with their address in a
//! reference city, and their orders; the set queries the analytics read.
//!
//! What MUST hold, on SQLite and PostgreSQL alike:
//!
//! - Input is checked before any statement runs: an id that is not 1 to 64
//!   of `A-Z a-z 0-9 . _ -`, a malformed email, an empty name or source, a
//!   city strata does not know, a negative or non-finite amount are
//!   [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput) naming
//!   the field.
//! - [`Customers::create_user`] writes the user and the address in one
//!   transaction: both or neither. Creating the same id again with the
//!   same data is [`Created::AlreadyExists`]; with other data, or with an
//!   email another id holds, it is [`ErrorKind::Conflict`](crate::ErrorKind::Conflict).
//! - [`Customers::record_order`] is idempotent on the order id (insert or
//!   ignore): the same id recorded twice, also at once, is one row.
//! - Reads over many customers are set queries: a fixed number of
//!   statements whatever the number of customers.
//! - Timestamps are truncated to microseconds before they are written (see
//!   [`crate::platform::now`]); sums of amounts are `f64` on both backends,
//!   added in an order the database chooses, so they may differ in the
//!   last bits between backends (round them before comparing).

use std::sync::LazyLock;

use chrono::{DateTime, SubsecRound, Utc};
use regex::Regex;
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, DbBackend, EntityTrait, QueryFilter,
    QueryResult, Set, Statement, TransactionTrait, Value,
};
use serde::{Deserialize, Serialize};

use crate::engines::relational::{begin_write, map_db_err};
use crate::error::{Error, ErrorKind, Result};
use crate::platform::entities::{address, customer, order};

/// Rows per statement in the batch writes.
const BATCH_ROWS: usize = 500;

static USER_ID: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^[A-Za-z0-9._-]{1,64}$").unwrap_or_else(|e| panic!("user id pattern: {e}"))
});

fn db_err(operation: &'static str) -> impl FnOnce(sea_orm::DbErr) -> Error {
    move |e| map_db_err(e).with_operation(operation)
}

/// A statement written with PostgreSQL's `$1` placeholders, which SQLite
/// reads as its numbered `?1` ones.
fn statement(backend: DbBackend, sql: &str, values: Vec<Value>) -> Statement {
    let sql = match backend {
        DbBackend::Postgres => sql.to_owned(),
        _ => sql.replace('$', "?"),
    };
    Statement::from_sql_and_values(backend, sql, values)
}

/// A city strata knows, with its country.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CityInfo {
    /// The city's name as written, e.g. `Munich`.
    pub city: String,
    /// The country's ISO code, e.g. `DE`.
    pub country_code: String,
    /// The country's name.
    pub country: String,
}

/// A customer to create.
#[derive(Debug, Clone, PartialEq)]
pub struct NewUser {
    /// Chosen by the caller: 1 to 64 of `A-Z a-z 0-9 . _ -`.
    pub id: String,
    /// Stored lower-cased; unique.
    pub email: String,
    /// Display name, not blank.
    pub name: String,
    /// A reference city, any case ([`Customers::resolve_city`]).
    pub city: String,
    /// Where the customer came from, e.g. `organic`.
    pub source: String,
    /// When the customer signed up.
    pub signed_up_at: DateTime<Utc>,
}

/// What [`Customers::create_user`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Created {
    /// The user and the address were written.
    Created,
    /// The same user was there already; nothing was written.
    AlreadyExists,
}

/// A customer with where they live and what they bought.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    /// The customer's id.
    pub id: String,
    /// Email, lower-cased.
    pub email: String,
    /// Display name.
    pub name: String,
    /// Where the customer came from.
    pub source: String,
    /// When the customer signed up.
    pub signed_up_at: DateTime<Utc>,
    /// Where the customer lives.
    pub city: CityInfo,
    /// Orders recorded.
    pub orders: i64,
    /// Their amounts' sum.
    pub revenue: f64,
    /// The latest one's time.
    pub last_order_at: Option<DateTime<Utc>>,
}

/// A purchase to record.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Order {
    /// The purchase event's id: recording it again changes nothing.
    pub id: String,
    /// The customer, who must exist.
    pub user_id: String,
    /// The product bought.
    pub product_id: String,
    /// The product's category.
    pub category: String,
    /// What was paid: finite and not negative.
    pub amount: f64,
    /// When.
    pub ordered_at: DateTime<Utc>,
}

/// Revenue of the customers of one country.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CountryRevenue {
    /// ISO code.
    pub country_code: String,
    /// Name.
    pub country: String,
    /// Customers with at least one order.
    pub customers: i64,
    /// Orders.
    pub orders: i64,
    /// Sum of their amounts.
    pub revenue: f64,
}

/// One customer's orders up to an instant: the inputs of recency,
/// frequency and monetary value.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CustomerHistory {
    /// The customer.
    pub user_id: String,
    /// When they signed up.
    pub signed_up_at: DateTime<Utc>,
    /// Orders up to the instant.
    pub orders: i64,
    /// Their amounts' sum.
    pub revenue: f64,
    /// The latest one's time.
    pub last_order_at: Option<DateTime<Utc>>,
}

/// One order as the recommendations read it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Purchase {
    /// The customer.
    pub user_id: String,
    /// The order's id.
    pub order_id: String,
    /// The product.
    pub product_id: String,
    /// Its category.
    pub category: String,
    /// When.
    pub ordered_at: DateTime<Utc>,
}

/// Customers, their addresses and orders. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Customers {
    db: DatabaseConnection,
}

fn invalid(field: &'static str, message: String) -> Error {
    Error::invalid(message).with_field(field)
}

fn check_text(field: &'static str, value: &str, max: usize) -> Result<()> {
    if value.trim().is_empty() {
        return Err(invalid(field, format!("`{field}` must not be blank")));
    }
    if value.chars().count() > max {
        return Err(invalid(
            field,
            format!("`{field}` must be at most {max} characters"),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(invalid(
            field,
            format!("`{field}` must not hold control characters"),
        ));
    }
    Ok(())
}

fn check_user_id(field: &'static str, id: &str) -> Result<()> {
    if USER_ID.is_match(id) {
        Ok(())
    } else {
        Err(invalid(
            field,
            format!("`{field}` must be 1 to 64 of A-Z a-z 0-9 . _ -, got {id:?}"),
        ))
    }
}

/// The email lower-cased, or InvalidInput: one `@` with text on each side,
/// a dot in the domain, no spaces, at most 254 characters.
fn normalize_email(email: &str) -> Result<String> {
    let email = email.trim().to_lowercase();
    let bad = || {
        invalid(
            "email",
            format!("`email` is not an email address: {email:?}"),
        )
    };
    if email.len() > 254 || email.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad());
    }
    let Some((local, domain)) = email.split_once('@') else {
        return Err(bad());
    };
    if local.is_empty()
        || domain.contains('@')
        || !domain.contains('.')
        || domain.starts_with('.')
        || domain.ends_with('.')
    {
        return Err(bad());
    }
    Ok(email)
}

fn check_order(order: &Order) -> Result<()> {
    check_user_id("id", &order.id)?;
    check_user_id("user_id", &order.user_id)?;
    check_text("product_id", &order.product_id, 64)?;
    check_text("category", &order.category, 64)?;
    if !order.amount.is_finite() || order.amount < 0.0 {
        return Err(invalid(
            "amount",
            format!(
                "`amount` must be finite and not negative, got {}",
                order.amount
            ),
        ));
    }
    Ok(())
}

fn order_row(order: &Order) -> order::ActiveModel {
    order::ActiveModel {
        id: Set(order.id.clone()),
        user_id: Set(order.user_id.clone()),
        product_id: Set(order.product_id.clone()),
        category: Set(order.category.clone()),
        amount: Set(order.amount),
        ordered_at: Set(order.ordered_at.trunc_subsecs(6)),
    }
}

/// A user checked and normalized, with the city resolved to its id.
struct CheckedUser {
    row: customer::Model,
    city_id: i32,
}

fn get<T: sea_orm::TryGetable>(row: &QueryResult, column: &str) -> Result<T> {
    row.try_get("", column)
        .map_err(|e| map_db_err(e).with_operation("customers"))
}

impl Customers {
    /// The service over the relational engine.
    pub fn new(db: DatabaseConnection) -> Customers {
        Customers { db }
    }

    fn backend(&self) -> DbBackend {
        self.db.get_database_backend()
    }

    async fn city_row(&self, name: &str) -> Result<Option<(i32, CityInfo)>> {
        let row = self
            .db
            .query_one_raw(statement(
                self.backend(),
                "SELECT ci.id AS city_id, ci.name AS city, co.code AS country_code, \
                        co.name AS country \
                 FROM cities ci JOIN countries co ON co.id = ci.country_id \
                 WHERE ci.name_key = $1",
                vec![name.trim().to_lowercase().into()],
            ))
            .await
            .map_err(db_err("resolve_city"))?;
        row.map(|row| {
            Ok((
                get(&row, "city_id")?,
                CityInfo {
                    city: get(&row, "city")?,
                    country_code: get(&row, "country_code")?,
                    country: get(&row, "country")?,
                },
            ))
        })
        .transpose()
    }

    /// The reference city called `name`, in any case, with its country;
    /// `None` when strata knows no such city.
    pub async fn resolve_city(&self, name: &str) -> Result<Option<CityInfo>> {
        Ok(self.city_row(name).await?.map(|(_, info)| info))
    }

    async fn check_user(&self, user: &NewUser) -> Result<CheckedUser> {
        check_user_id("id", &user.id)?;
        let email = normalize_email(&user.email)?;
        check_text("name", &user.name, 200)?;
        check_text("source", &user.source, 64)?;
        check_text("city", &user.city, 100)?;
        let Some((city_id, _)) = self.city_row(&user.city).await? else {
            return Err(invalid(
                "city",
                format!("`city` is not a city strata knows: {:?}", user.city),
            ));
        };
        Ok(CheckedUser {
            row: customer::Model {
                id: user.id.clone(),
                email,
                name: user.name.trim().to_owned(),
                signed_up_at: user.signed_up_at.trunc_subsecs(6),
                source: user.source.trim().to_owned(),
            },
            city_id,
        })
    }

    /// What is stored for `id`, user and address city, or `None`.
    async fn stored_user(&self, id: &str) -> Result<Option<(customer::Model, Option<i32>)>> {
        let Some(user) = customer::Entity::find_by_id(id.to_owned())
            .one(&self.db)
            .await
            .map_err(db_err("create_user"))?
        else {
            return Ok(None);
        };
        let city = address::Entity::find()
            .filter(address::Column::UserId.eq(id))
            .one(&self.db)
            .await
            .map_err(db_err("create_user"))?
            .map(|a| a.city_id);
        Ok(Some((user, city)))
    }

    /// Why a create of `checked` found a row in its way: the same user
    /// (idempotent), the id holding other data, or the email another id's.
    async fn explain_conflict(&self, checked: &CheckedUser) -> Result<Created> {
        if let Some((stored, city)) = self.stored_user(&checked.row.id).await? {
            if stored == checked.row && city == Some(checked.city_id) {
                return Ok(Created::AlreadyExists);
            }
            return Err(Error::conflict(format!(
                "user {:?} exists with other data",
                checked.row.id
            ))
            .with_field("id"));
        }
        Err(Error::conflict(format!(
            "email {:?} belongs to another user",
            checked.row.email
        ))
        .with_field("email"))
    }

    /// Creates a user and their address in one transaction.
    ///
    /// The same id created again with the same data (email compared
    /// lower-cased, timestamps to the microsecond) is
    /// [`Created::AlreadyExists`]; with other data it is Conflict on `id`,
    /// and an email that another id holds is Conflict on `email`. Bad input
    /// (including an unknown city) is InvalidInput naming the field.
    pub async fn create_user(&self, user: NewUser) -> Result<Created> {
        let checked = self.check_user(&user).await?;
        if self.stored_user(&checked.row.id).await?.is_some() {
            return self.explain_conflict(&checked).await;
        }
        let txn = begin_write(&self.db).await.map_err(db_err("create_user"))?;
        let row: customer::ActiveModel = checked.row.clone().into();
        let written = match customer::Entity::insert(row)
            .exec_without_returning(&txn)
            .await
        {
            Ok(_) => address::Entity::insert(address::ActiveModel {
                user_id: Set(checked.row.id.clone()),
                city_id: Set(checked.city_id),
                ..Default::default()
            })
            .exec_without_returning(&txn)
            .await
            .map(|_| ()),
            Err(e) => Err(e),
        };
        match written {
            Ok(()) => {
                txn.commit().await.map_err(db_err("create_user"))?;
                Ok(Created::Created)
            }
            Err(e) => {
                let error = map_db_err(e).with_operation("create_user");
                // Dropping the transaction rolls it back.
                drop(txn);
                if error.kind() == ErrorKind::Conflict {
                    self.explain_conflict(&checked).await
                } else {
                    Err(error)
                }
            }
        }
    }

    /// Creates the users that do not exist yet (insert or ignore, by id and
    /// by email), with their addresses, in batches that each commit whole;
    /// returns how many were added. For bulk loads (seeding); every user
    /// is checked as by [`Customers::create_user`] first.
    pub async fn import_users(&self, users: &[NewUser]) -> Result<u64> {
        let mut checked = Vec::with_capacity(users.len());
        let mut cities = std::collections::BTreeMap::new();
        for user in users {
            let key = user.city.trim().to_lowercase();
            if !cities.contains_key(&key) {
                let id = self.city_row(&key).await?.map(|(id, _)| id);
                cities.insert(key.clone(), id);
            }
            let Some(Some(city_id)) = cities.get(&key).copied() else {
                return Err(invalid(
                    "city",
                    format!("`city` is not a city strata knows: {:?}", user.city),
                ));
            };
            check_user_id("id", &user.id)?;
            check_text("name", &user.name, 200)?;
            check_text("source", &user.source, 64)?;
            checked.push(CheckedUser {
                row: customer::Model {
                    id: user.id.clone(),
                    email: normalize_email(&user.email)?,
                    name: user.name.trim().to_owned(),
                    signed_up_at: user.signed_up_at.trunc_subsecs(6),
                    source: user.source.trim().to_owned(),
                },
                city_id,
            });
        }
        let mut added = 0;
        for chunk in checked.chunks(BATCH_ROWS) {
            let txn = begin_write(&self.db)
                .await
                .map_err(db_err("import_users"))?;
            added += customer::Entity::insert_many(
                chunk
                    .iter()
                    .map(|c| customer::ActiveModel::from(c.row.clone())),
            )
            .on_conflict(OnConflict::new().do_nothing().to_owned())
            .exec_without_returning(&txn)
            .await
            .map_err(db_err("import_users"))?;
            // Addresses of the users that exist (now or before), unless
            // they have one.
            address::Entity::insert_many(chunk.iter().map(|c| address::ActiveModel {
                user_id: Set(c.row.id.clone()),
                city_id: Set(c.city_id),
                ..Default::default()
            }))
            .on_conflict(OnConflict::new().do_nothing().to_owned())
            .exec_without_returning(&txn)
            .await
            .map_err(db_err("import_users"))?;
            txn.commit().await.map_err(db_err("import_users"))?;
        }
        Ok(added)
    }

    /// The user with their city and country and their order totals, in one
    /// statement; `None` when there is no such user.
    pub async fn profile(&self, user_id: &str) -> Result<Option<Profile>> {
        let row = self
            .db
            .query_one_raw(statement(
                self.backend(),
                "SELECT u.id, u.email, u.name, u.source, u.signed_up_at, \
                        ci.name AS city, co.code AS country_code, co.name AS country, \
                        CAST(COUNT(o.id) AS BIGINT) AS orders, \
                        CAST(COALESCE(SUM(o.amount), 0) AS DOUBLE PRECISION) AS revenue, \
                        MAX(o.ordered_at) AS last_order_at \
                 FROM users u \
                 JOIN addresses a ON a.user_id = u.id \
                 JOIN cities ci ON ci.id = a.city_id \
                 JOIN countries co ON co.id = ci.country_id \
                 LEFT JOIN orders o ON o.user_id = u.id \
                 WHERE u.id = $1 \
                 GROUP BY u.id, u.email, u.name, u.source, u.signed_up_at, \
                          ci.name, co.code, co.name",
                vec![user_id.into()],
            ))
            .await
            .map_err(db_err("profile"))?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(Profile {
            id: get(&row, "id")?,
            email: get(&row, "email")?,
            name: get(&row, "name")?,
            source: get(&row, "source")?,
            signed_up_at: get(&row, "signed_up_at")?,
            city: CityInfo {
                city: get(&row, "city")?,
                country_code: get(&row, "country_code")?,
                country: get(&row, "country")?,
            },
            orders: get(&row, "orders")?,
            revenue: get(&row, "revenue")?,
            last_order_at: get(&row, "last_order_at")?,
        }))
    }

    /// Records an order unless one with its id exists (insert or ignore);
    /// `true` when this call wrote it. A user that does not exist is
    /// Conflict.
    pub async fn record_order(&self, order: Order) -> Result<bool> {
        check_order(&order)?;
        let added = order::Entity::insert(order_row(&order))
            .on_conflict(
                OnConflict::column(order::Column::Id)
                    .do_nothing()
                    .to_owned(),
            )
            .exec_without_returning(&self.db)
            .await
            .map_err(db_err("record_order"))?;
        Ok(added > 0)
    }

    /// [`Customers::record_order`] for many orders, in multi-row statements
    /// of a transaction per batch; returns how many were added.
    pub async fn record_orders(&self, orders: &[Order]) -> Result<u64> {
        for order in orders {
            check_order(order)?;
        }
        let mut added = 0;
        for chunk in orders.chunks(BATCH_ROWS) {
            let txn = self.db.begin().await.map_err(db_err("record_orders"))?;
            added += order::Entity::insert_many(chunk.iter().map(order_row))
                .on_conflict(
                    OnConflict::column(order::Column::Id)
                        .do_nothing()
                        .to_owned(),
                )
                .exec_without_returning(&txn)
                .await
                .map_err(db_err("record_orders"))?;
            txn.commit().await.map_err(db_err("record_orders"))?;
        }
        Ok(added)
    }

    /// Customers, orders and revenue by the customer's country, in one
    /// statement (orders joined to users, addresses, cities, countries,
    /// grouped by country), by country code.
    pub async fn revenue_by_country(&self) -> Result<Vec<CountryRevenue>> {
        let rows = self
            .db
            .query_all_raw(statement(
                self.backend(),
                "SELECT co.code AS country_code, co.name AS country, \
                        CAST(COUNT(DISTINCT o.user_id) AS BIGINT) AS customers, \
                        CAST(COUNT(o.id) AS BIGINT) AS orders, \
                        CAST(SUM(o.amount) AS DOUBLE PRECISION) AS revenue \
                 FROM orders o \
                 JOIN addresses a ON a.user_id = o.user_id \
                 JOIN cities ci ON ci.id = a.city_id \
                 JOIN countries co ON co.id = ci.country_id \
                 GROUP BY co.code, co.name \
                 ORDER BY co.code",
                vec![],
            ))
            .await
            .map_err(db_err("revenue_by_country"))?;
        rows.iter()
            .map(|row| {
                Ok(CountryRevenue {
                    country_code: get(row, "country_code")?,
                    country: get(row, "country")?,
                    customers: get(row, "customers")?,
                    orders: get(row, "orders")?,
                    revenue: get(row, "revenue")?,
                })
            })
            .collect()
    }

    /// Every user who signed up by `as_of`, with the count, sum and latest
    /// time of their orders up to `as_of` (inclusive), in one statement, by
    /// user id.
    pub async fn customer_history(&self, as_of: DateTime<Utc>) -> Result<Vec<CustomerHistory>> {
        let as_of = as_of.trunc_subsecs(6);
        let rows = self
            .db
            .query_all_raw(statement(
                self.backend(),
                "SELECT u.id AS user_id, u.signed_up_at, \
                        CAST(COUNT(o.id) AS BIGINT) AS orders, \
                        CAST(COALESCE(SUM(o.amount), 0) AS DOUBLE PRECISION) AS revenue, \
                        MAX(o.ordered_at) AS last_order_at \
                 FROM users u \
                 LEFT JOIN orders o ON o.user_id = u.id AND o.ordered_at <= $1 \
                 WHERE u.signed_up_at <= $1 \
                 GROUP BY u.id, u.signed_up_at \
                 ORDER BY u.id",
                vec![as_of.into()],
            ))
            .await
            .map_err(db_err("customer_history"))?;
        rows.iter()
            .map(|row| {
                Ok(CustomerHistory {
                    user_id: get(row, "user_id")?,
                    signed_up_at: get(row, "signed_up_at")?,
                    orders: get(row, "orders")?,
                    revenue: get(row, "revenue")?,
                    last_order_at: get(row, "last_order_at")?,
                })
            })
            .collect()
    }

    /// [`Customers::customer_history`] of one user, or `None`.
    pub async fn user_history(
        &self,
        user_id: &str,
        as_of: DateTime<Utc>,
    ) -> Result<Option<CustomerHistory>> {
        let row = self
            .db
            .query_one_raw(statement(
                self.backend(),
                "SELECT u.id AS user_id, u.signed_up_at, \
                        CAST(COUNT(o.id) AS BIGINT) AS orders, \
                        CAST(COALESCE(SUM(o.amount), 0) AS DOUBLE PRECISION) AS revenue, \
                        MAX(o.ordered_at) AS last_order_at \
                 FROM users u \
                 LEFT JOIN orders o ON o.user_id = u.id AND o.ordered_at <= $2 \
                 WHERE u.id = $1 \
                 GROUP BY u.id, u.signed_up_at",
                vec![user_id.into(), as_of.trunc_subsecs(6).into()],
            ))
            .await
            .map_err(db_err("user_history"))?;
        row.map(|row| {
            Ok(CustomerHistory {
                user_id: get(&row, "user_id")?,
                signed_up_at: get(&row, "signed_up_at")?,
                orders: get(&row, "orders")?,
                revenue: get(&row, "revenue")?,
                last_order_at: get(&row, "last_order_at")?,
            })
        })
        .transpose()
    }

    /// Every order up to `as_of` (inclusive), by user, time and id, in one
    /// statement; `user_id` narrows it to one user.
    pub async fn purchases(
        &self,
        as_of: DateTime<Utc>,
        user_id: Option<&str>,
    ) -> Result<Vec<Purchase>> {
        let mut sql = String::from(
            "SELECT user_id, id AS order_id, product_id, category, ordered_at \
             FROM orders WHERE ordered_at <= $1",
        );
        let mut values: Vec<Value> = vec![as_of.trunc_subsecs(6).into()];
        if let Some(user_id) = user_id {
            sql.push_str(" AND user_id = $2");
            values.push(user_id.into());
        }
        sql.push_str(" ORDER BY user_id, ordered_at, id");
        let rows = self
            .db
            .query_all_raw(statement(self.backend(), &sql, values))
            .await
            .map_err(db_err("purchases"))?;
        rows.iter()
            .map(|row| {
                Ok(Purchase {
                    user_id: get(row, "user_id")?,
                    order_id: get(row, "order_id")?,
                    product_id: get(row, "product_id")?,
                    category: get(row, "category")?,
                    ordered_at: get(row, "ordered_at")?,
                })
            })
            .collect()
    }

    /// The time of the latest order, `None` when there is none.
    pub async fn latest_order_at(&self) -> Result<Option<DateTime<Utc>>> {
        let row = self
            .db
            .query_one_raw(statement(
                self.backend(),
                "SELECT MAX(ordered_at) AS latest FROM orders",
                vec![],
            ))
            .await
            .map_err(db_err("latest_order_at"))?;
        match row {
            Some(row) => get(&row, "latest"),
            None => Ok(None),
        }
    }

    /// How many users and orders there are.
    pub async fn counts(&self) -> Result<(i64, i64)> {
        let row = self
            .db
            .query_one_raw(statement(
                self.backend(),
                "SELECT (SELECT CAST(COUNT(*) AS BIGINT) FROM users) AS users, \
                        (SELECT CAST(COUNT(*) AS BIGINT) FROM orders) AS orders",
                vec![],
            ))
            .await
            .map_err(db_err("counts"))?
            .ok_or_else(|| Error::internal("a count returned no row"))?;
        Ok((get(&row, "users")?, get(&row, "orders")?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_lower_cased_and_checked() {
        assert_eq!(
            normalize_email(" Ada@Example.COM ").unwrap(),
            "ada@example.com"
        );
        for bad in [
            "",
            "ada",
            "@example.com",
            "ada@",
            "ada@example",
            "a b@x.io",
            "a@b@c.io",
        ] {
            let e = normalize_email(bad).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidInput, "{bad}");
            assert_eq!(e.field(), Some("email"));
        }
    }
}
