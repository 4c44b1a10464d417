//! Run search: a small filter language over run fields and tags, an
//! `order_by`, and page tokens for keyset pagination.
//!
//! ```text
//! framework IN ('pytorch', 'xgboost') AND (accuracy > 0.95 OR tags.team = 'risk')
//! ```
//!
//! The text is lexed and parsed by hand into an [`Expr`] tree, checked
//! against the fields' types, and compiled to a sea-orm condition whose
//! values are all bound parameters: no SQL is ever built from input.
//!
//! # Grammar (EBNF)
//!
//! ```text
//! filter     = [ or_expr ] ;                    (* empty: every run *)
//! or_expr    = and_expr { "OR" and_expr } ;
//! and_expr   = unary { "AND" unary } ;
//! unary      = "NOT" unary | "(" or_expr ")" | predicate ;
//! predicate  = field ( cmp_op value
//!                    | [ "NOT" ] "IN" "(" value { "," value } ")"
//!                    | [ "NOT" ] "LIKE" string
//!                    | "IS" [ "NOT" ] "NULL" ) ;
//! cmp_op     = "=" | "!=" | "<>" | "<" | "<=" | ">" | ">=" ;
//! field      = "model_id" | "model_name" | "framework" | "status"
//!            | "accuracy" | "loss" | "training_time_seconds"
//!            | "started_at" | "completed_at" | "dataset" | "tags." tag_key ;
//! tag_key    = ( letter | digit | "_" | "-" | "." ) { letter | digit | "_" | "-" | "." } ;
//! value      = string | number ;
//! string     = "'" { any character but "'" | "''" } "'" ;
//! number     = [ "-" ] digit { digit } [ "." digit { digit } ]
//!              [ ( "e" | "E" ) [ "+" | "-" ] digit { digit } ] ;
//!
//! order_by   = [ sort_key { "," sort_key } ] ;  (* empty: started_at DESC *)
//! sort_key   = field [ "ASC" | "DESC" ] ;       (* not a tag; each field once *)
//! ```
//!
//! Keywords are case-insensitive; field names and tag keys are not. `NOT`
//! binds tighter than `AND`, which binds tighter than `OR`.
//!
//! # Contracts (identical on SQLite and PostgreSQL)
//!
//! - Types: text fields (`model_id`, `model_name`, `framework`, `status`,
//!   `dataset`, `tags.*`) take strings and compare byte-wise (so `'B' <
//!   'a'`); `accuracy`, `loss`, `training_time_seconds` take numbers;
//!   `started_at`, `completed_at` take RFC 3339 strings. Anything else,
//!   `LIKE` on a non-text field, or an unknown status in `status =`/`IN` is
//!   invalid input naming the column.
//! - Three-valued logic, as SQL: see [`Expr`]. A tag predicate is false for
//!   a run without the tag; `tags.k IS NULL` finds those runs.
//! - `LIKE` is case-sensitive: `%` any run of characters, `_` one character,
//!   `\` escapes the next one.
//! - Order: the `order_by` keys, then the run id in the direction of the last
//!   key, so the order is total. A missing value sorts as the smallest: first
//!   ascending, last descending.
//! - Pages: at most `page_size` (1 to [`MAX_PAGE_SIZE`]) runs, and a
//!   `next_page_token` when more follow. The token holds the last run's sort
//!   values and id; the next page is the runs strictly after it, so paging
//!   neither repeats nor skips runs, even when runs are added meanwhile. A
//!   token is only valid with the filter and order it came from; any other
//!   token is invalid input.
//! - Errors: every malformed input is
//!   [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput) with the
//!   field (`filter`, `order_by`, `page_size`, `page_token`) set, and for
//!   text a message like `filter: at column 14: expected a value after
//!   `=`, found end of input`.
//!
//! # How a page is read
//!
//! [`plan_page`] compiles a search into the statements [`search_runs`]
//! runs (tests explain them). With one sort key, or `model_id` first, the
//! page is read off an index in order and the read stops after the page:
//! every orderable field has an index that serves it with the id as
//! tie-breaker, both ways (the `run_order_indexes` migration), and a page
//! after a token adds a range on the first key so that the read starts at
//! the token rather than at the top. What it takes to keep each backend's
//! planner on that path, and the orders where it cannot be (by `dataset`
//! on PostgreSQL; several keys on SQLite), are in [`PagePlan`],
//! `plan_page` and `docs/engines.md`.

use std::collections::BTreeMap;

use sea_orm::sea_query::{
    Condition, Expr as SqlExpr, ExprTrait, NullOrdering, Order, SelectStatement, SimpleExpr,
};
use sea_orm::{
    ConnectionTrait, DbBackend, EntityTrait, FromQueryResult, LoaderTrait, QueryTrait, Statement,
    Value,
};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::platform::entities::{dataset, run_tag, training_run};
use crate::platform::records::Run;
use crate::platform::registry::db_err;

mod ast;
mod compile;
mod parser;
mod token;

pub use ast::{CmpOp, Direction, Expr, Field, FieldType, Filter, Literal, SortKey};
pub use parser::{MAX_DEPTH, MAX_LEN, QUERY_TEXT_PATTERN, parse_filter, parse_order_by};
use token::{PageToken, SortValue};

/// The largest page [`search_runs`] serves.
pub const MAX_PAGE_SIZE: u64 = 1000;

/// A run found by a search.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunHit {
    /// The run.
    pub run: Run,
    /// The name of its dataset.
    pub dataset: String,
    /// Its tags, by key.
    pub tags: BTreeMap<String, String>,
}

/// One page of search results.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunPage {
    /// The runs, in the requested order.
    pub runs: Vec<RunHit>,
    /// Pass this back as `page_token` (with the same filter and order) for
    /// the next page; `None` on the last page.
    pub next_page_token: Option<String>,
}

impl Field {
    /// Whether the field can be missing on a run (so `NULL` in SQL).
    fn nullable(&self) -> bool {
        matches!(
            self,
            Field::Accuracy
                | Field::Loss
                | Field::TrainingTimeSeconds
                | Field::CompletedAt
                | Field::Tag(_)
        )
    }

    /// This field's value on a row, as stored in a page token.
    fn sort_value(&self, run: &training_run::Model, dataset: &str) -> SortValue {
        let text = |s: &str| SortValue::Text(s.to_owned());
        match self {
            Field::ModelId => text(&run.model_id),
            Field::ModelName => text(&run.model_name),
            Field::Framework => text(&run.framework),
            Field::Status => text(run.status.as_str()),
            Field::Dataset => text(dataset),
            Field::Accuracy => run.accuracy.map_or(SortValue::Null, SortValue::Float),
            Field::Loss => run.loss.map_or(SortValue::Null, SortValue::Float),
            Field::TrainingTimeSeconds => run
                .training_time_seconds
                .map_or(SortValue::Null, SortValue::Int),
            Field::StartedAt => SortValue::Timestamp(run.started_at),
            Field::CompletedAt => run
                .completed_at
                .map_or(SortValue::Null, SortValue::Timestamp),
            Field::Tag(_) => SortValue::Null,
        }
    }
}

/// The bound value of a token's sort value, if it has the field's type.
fn sort_sql_value(field: &Field, value: &SortValue) -> Option<Option<Value>> {
    match (field.field_type(), value) {
        (_, SortValue::Null) if field.nullable() => Some(None),
        (FieldType::Text, SortValue::Text(s)) => Some(Some(Value::from(s.clone()))),
        (FieldType::Number, SortValue::Float(f)) => Some(Some(Value::from(*f))),
        (FieldType::Integer, SortValue::Int(i)) => Some(Some(Value::from(*i))),
        (FieldType::Timestamp, SortValue::Timestamp(t)) => Some(Some(Value::from(*t))),
        _ => None,
    }
}

fn fingerprint(filter: &Filter, order: &[SortKey]) -> u32 {
    let order: Vec<String> = order.iter().map(ToString::to_string).collect();
    crc32fast::hash(format!("{filter}\n{}", order.join(", ")).as_bytes())
}

/// The bound values of a token's sort values, checked against `order`.
fn token_values(order: &[SortKey], token: &PageToken) -> Result<Vec<Option<Value>>> {
    let bad = || {
        Error::invalid("page_token: invalid page token (made for another order_by)")
            .with_field("page_token")
    };
    if token.values.len() != order.len() {
        return Err(bad());
    }
    order
        .iter()
        .zip(&token.values)
        .map(|(key, value)| sort_sql_value(&key.field, value).ok_or_else(bad))
        .collect()
}

/// The keyset condition "strictly after the token's row" in `order`
/// (with the id as the last key, in the last key's direction).
fn after(order: &[SortKey], values: &[Option<Value>], token_id: i64) -> Condition {
    let id_direction = order.last().map_or(Direction::Asc, |k| k.direction);
    let id_col = SqlExpr::col((training_run::Entity, training_run::Column::Id));
    let mut any = Condition::any();
    let mut equal_so_far = Condition::all();
    for (key, value) in order.iter().zip(values) {
        let col = compile::column(&key.field);
        let beyond = match (key.direction, value) {
            (Direction::Asc, None) => Some(col.clone().is_not_null()),
            (Direction::Asc, Some(v)) => Some(col.clone().gt(v.clone())),
            (Direction::Desc, None) => None,
            (Direction::Desc, Some(v)) if key.field.nullable() => {
                Some(col.clone().lt(v.clone()).or(col.clone().is_null()))
            }
            (Direction::Desc, Some(v)) => Some(col.clone().lt(v.clone())),
        };
        if let Some(beyond) = beyond {
            any = any.add(equal_so_far.clone().add(beyond));
        }
        equal_so_far = equal_so_far.add(match value {
            None => col.is_null(),
            Some(v) => col.eq(v.clone()),
        });
    }
    let id_beyond = match id_direction {
        Direction::Asc => id_col.gt(token_id),
        Direction::Desc => id_col.lt(token_id),
    };
    any.add(equal_so_far.add(id_beyond))
}

/// The index ranges of the first sort key that hold the rows after the
/// token's, in reading order. [`after`] alone is exact but an `OR` that no
/// planner reads as a range, so a page deep in the results would scan
/// every row before it; each range added to it lets the planner start the
/// index scan at the token. The rows after a value of a nullable key,
/// descending, are the smaller values and then the missing ones, two
/// ranges that no single comparison spans, hence a list.
fn first_key_ranges(order: &[SortKey], values: &[Option<Value>]) -> Vec<SimpleExpr> {
    let (Some(key), Some(value)) = (order.first(), values.first()) else {
        return Vec::new();
    };
    let col = compile::column(&key.field);
    match (key.direction, value) {
        (Direction::Asc, Some(v)) => vec![col.gte(v.clone())],
        (Direction::Asc, None) => vec![col.clone().is_null(), col.is_not_null()],
        (Direction::Desc, Some(v)) if key.field.nullable() => {
            vec![col.clone().lte(v.clone()), col.is_null()]
        }
        (Direction::Desc, Some(v)) => vec![col.lte(v.clone())],
        (Direction::Desc, None) => vec![col.is_null()],
    }
}

/// The column alias of the run's dataset name in a page's rows.
const DATASET_NAME: &str = "dataset_name";

/// A search compiled for one backend: the statements that read one page,
/// as [`search_runs`] runs them (and as tests and benchmarks inspect them).
#[derive(Debug, Clone)]
pub struct PagePlan {
    backend: DbBackend,
    order: Vec<SortKey>,
    fingerprint: u32,
    page_size: u64,
    selects: Vec<SelectStatement>,
}

impl PagePlan {
    /// The page's SELECTs (each run with its dataset's name), with bound values,
    /// in the order they are run. The page is their rows in turn; each
    /// after the first runs only while the page is not full. There are two
    /// only after a token of a nullable first sort key (see
    /// [`first_key_ranges`]).
    ///
    /// The LIMIT (one row more than the page, which tells whether another
    /// page follows) is written into the SQL, not bound: SQLite's planner
    /// weighs a LIMIT only when it is a literal, and with a bound one plans
    /// as if every match were read, which makes sorting them look cheaper
    /// than reading an index in order. (PostgreSQL's generic plans assume
    /// a bound LIMIT reads a tenth of the rows.)
    pub fn statements(&self) -> Vec<Statement> {
        self.selects
            .iter()
            .map(|select| {
                let mut stmt = self.backend.build(select);
                stmt.sql.push_str(&format!(" LIMIT {}", self.page_size + 1));
                stmt
            })
            .collect()
    }
}

/// Compiles a search for `backend`; see [`search_runs`].
pub fn plan_page(
    backend: DbBackend,
    filter: &str,
    order_by: &str,
    page_size: u64,
    page_token: Option<&str>,
) -> Result<PagePlan> {
    if page_size == 0 || page_size > MAX_PAGE_SIZE {
        return Err(Error::invalid(format!(
            "page_size must be between 1 and {MAX_PAGE_SIZE}, got {page_size}"
        ))
        .with_field("page_size"));
    }
    let filter = parse_filter(filter)?;
    let mut order = parse_order_by(order_by)?;
    if order.is_empty() {
        order.push(SortKey {
            field: Field::StartedAt,
            direction: Direction::Desc,
        });
    }
    let fingerprint = fingerprint(&filter, &order);

    // Each run with its dataset: an inner join, since every run has its
    // dataset (a restricted foreign key). On SQLite the join order is fixed
    // with `CROSS JOIN`, SQLite's documented way to do so, since its
    // planner does not price the early stop of a LIMIT: left free, it would
    // rather read every match and sort than read an index in order and
    // stop after a page. Runs come first, by the index of the order's first
    // key, and each finds its dataset by primary key; ordering by dataset,
    // the dataset names' index comes first and each dataset's runs follow
    // by id (`idx_training_runs_dataset` ends with the rowid), which serves
    // the order too. PostgreSQL prices a LIMIT and chooses for itself.
    //
    // The run's columns, and of its dataset only the name: decoding each
    // column costs time on every row.
    let mut select = training_run::Entity::find().into_query();
    select.expr_as(
        SqlExpr::col((dataset::Entity, dataset::Column::Name)),
        DATASET_NAME,
    );
    match backend {
        DbBackend::Sqlite => {
            if order.first().is_some_and(|k| k.field == Field::Dataset) {
                select
                    .from_clear()
                    .from(dataset::Entity)
                    .cross_join(training_run::Entity);
            } else {
                select.cross_join(dataset::Entity);
            }
            select.and_where(
                SqlExpr::col((training_run::Entity, training_run::Column::DatasetId))
                    .equals((dataset::Entity, dataset::Column::Id)),
            );
        }
        _ => {
            select.inner_join(
                dataset::Entity,
                SqlExpr::col((training_run::Entity, training_run::Column::DatasetId))
                    .equals((dataset::Entity, dataset::Column::Id)),
            );
        }
    }
    if let Some(expr) = &filter.0 {
        select.cond_where(compile::compile(backend, expr));
    }
    for key in &order {
        let dir = match key.direction {
            Direction::Asc => Order::Asc,
            Direction::Desc => Order::Desc,
        };
        let col = compile::column(&key.field);
        // Missing values are the smallest. That is SQLite's native order;
        // PostgreSQL's is the reverse, so it is told (and its indexes say
        // NULLS FIRST to match). Saying it to SQLite too would keep it from
        // reading the order off an index.
        if backend == DbBackend::Postgres && key.field.nullable() {
            let nulls = match key.direction {
                Direction::Asc => NullOrdering::First,
                Direction::Desc => NullOrdering::Last,
            };
            select.order_by_expr_with_nulls(col, dir, nulls);
        } else {
            select.order_by_expr(col, dir);
        }
        // A unique key orders the runs totally: what follows it could only
        // keep an index on it from serving (PostgreSQL would sort).
        if key.field == Field::ModelId {
            break;
        }
    }
    if !order.iter().any(|k| k.field == Field::ModelId) {
        let id_order = match order.last().map(|k| k.direction) {
            Some(Direction::Desc) => Order::Desc,
            _ => Order::Asc,
        };
        select.order_by((training_run::Entity, training_run::Column::Id), id_order);
    }
    let selects = match page_token.filter(|t| !t.is_empty()) {
        None => vec![select],
        Some(text) => {
            let token = PageToken::decode(text)?;
            if token.fingerprint != fingerprint {
                return Err(Error::invalid(
                    "page_token: invalid page token (made for another filter or order_by)",
                )
                .with_field("page_token"));
            }
            let values = token_values(&order, &token)?;
            select.cond_where(after(&order, &values, token.id));
            first_key_ranges(&order, &values)
                .into_iter()
                .map(|range| select.clone().and_where(range).to_owned())
                .collect()
        }
    };
    Ok(PagePlan {
        backend,
        order,
        fingerprint,
        page_size,
        selects,
    })
}

/// Searches runs: see the module docs for the language and the contracts.
/// An empty `order_by` means `started_at DESC`; an empty `page_token` is the
/// same as none (the first page).
pub async fn search_runs(
    db: &impl ConnectionTrait,
    filter: &str,
    order_by: &str,
    page_size: u64,
    page_token: Option<&str>,
) -> Result<RunPage> {
    let plan = plan_page(
        db.get_database_backend(),
        filter,
        order_by,
        page_size,
        page_token,
    )?;
    let mut rows = Vec::new();
    for stmt in plan.statements() {
        if rows.len() as u64 > page_size {
            break;
        }
        rows.extend(
            db.query_all_raw(stmt)
                .await
                .map_err(db_err("search_runs"))?,
        );
    }
    let more = rows.len() as u64 > page_size;
    rows.truncate(page_size as usize);

    let mut runs = Vec::with_capacity(rows.len());
    let mut datasets = Vec::with_capacity(rows.len());
    for row in rows {
        let run = training_run::Model::from_query_result(&row, "");
        runs.push(run.map_err(db_err("search_runs"))?);
        let dataset = row.try_get::<String>("", DATASET_NAME);
        datasets.push(dataset.map_err(db_err("search_runs"))?);
    }
    let next_page_token = match (more, runs.last(), datasets.last()) {
        (true, Some(run), Some(dataset)) => Some(
            PageToken {
                fingerprint: plan.fingerprint,
                values: plan
                    .order
                    .iter()
                    .map(|k| k.field.sort_value(run, dataset))
                    .collect(),
                id: run.id,
            }
            .encode(),
        ),
        _ => None,
    };
    let tags = runs
        .load_many(run_tag::Entity, db)
        .await
        .map_err(db_err("search_runs"))?;
    Ok(RunPage {
        runs: runs
            .into_iter()
            .zip(datasets)
            .zip(tags)
            .map(|((run, dataset), tags)| RunHit {
                run: run.into(),
                dataset,
                tags: tags.into_iter().map(|t| (t.key, t.value)).collect(),
            })
            .collect(),
        next_page_token,
    })
}
