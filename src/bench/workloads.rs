//! What `strata bench` measures on each engine of a profile, and the data
//! it loads first (into the [`Sandbox`]).
//!
//! Per store, the same kinds of work, so stores compare:
//!
//! | id | request |
//! |---|---|
//! | `*.read` | one item by key (of [`ITEMS`]) |
//! | `*.write` | one item upserted by key |
//! | `*.batch_read` | 100 items by key, one request |
//! | `*.batch_write` | 100 items updated, one request |
//! | `relational.join` | orders of 100 users (`IN`) joined to them, grouped by country |
//! | `documents.aggregate` | the same as an aggregation pipeline (`$match`, `$group`, `$sort`) |
//! | `cache.l1` / `cache.l2` / `cache.miss` | a `TieredCache` lookup answered by L1, by L2, by the loader (a relational read) |
//! | `queue.roundtrip` | publish (persistent, confirmed) → consume → ack |
//! | `search.runs` | a page of run search over the seeded runs |
//!
//! Every answer is checked (the row, the document, the value is there);
//! a wrong answer is an error, never a fast success.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bson::{Bson, doc};
use bytes::Bytes;
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement, Value};

use super::Subject;
use super::harness::{Session, Workload, from_fn};
use super::model::Store;
use super::sandbox::Sandbox;
use crate::cache::{CacheSettings, Tier, TieredCache};
use crate::engines::document::{FindOptions, IndexSpec, UpdateOptions};
use crate::engines::queue::{ConsumeOptions, Message, QueueOptions};
use crate::engines::{DocumentStore, KvStore, KvStoreExt};
use crate::error::{Error, Result};

/// Items per store that reads and writes pick from.
pub const ITEMS: u64 = 10_000;
/// Users of the join and the aggregation.
pub const USERS: u64 = 10_000;
/// Orders, ten per user.
pub const ORDERS: u64 = 100_000;
/// Items per batch request.
pub const BATCH: u64 = 100;
/// Bytes of each item's payload.
const PAYLOAD: usize = 256;
/// Countries users are spread over.
const COUNTRIES: [&str; 8] = ["DE", "FR", "GB", "IT", "JP", "NL", "US", "BR"];
/// Keys the cache's L1 and L2 workloads cycle through.
const CACHE_KEYS: u64 = 1_000;

/// The queues a sandbox named `name` declares.
pub(crate) fn queues(name: &str) -> Vec<String> {
    vec![format!("{name}.roundtrip")]
}

fn payload(i: u64) -> String {
    let seed = format!("item-{i}-");
    seed.repeat(PAYLOAD / seed.len() + 1)[..PAYLOAD].to_owned()
}

fn wrong(what: impl Into<String>) -> Error {
    Error::internal(what.into())
}

fn subject(
    id: &str,
    title: &str,
    store: Store,
    engine: &str,
    items: u32,
    workload: Arc<dyn Workload>,
) -> Subject {
    Subject {
        id: id.to_owned(),
        title: title.to_owned(),
        store,
        engine: engine.to_owned(),
        items,
        workload,
    }
}

/// The 100 users whose orders request `seq` of the join and the
/// aggregation groups.
fn user_batch(seq: u64) -> impl Iterator<Item = u64> {
    let first = (seq * BATCH) % USERS;
    (0..BATCH).map(move |j| (first + j) % USERS)
}

/// The ids of the batch starting at request `seq`.
fn batch_ids(seq: u64) -> impl Iterator<Item = u64> {
    let first = (seq * BATCH) % ITEMS;
    (0..BATCH).map(move |j| (first + j) % ITEMS)
}

// --- key-value ----------------------------------------------------------------

fn item_key(i: u64) -> String {
    format!("bench:item:{i}")
}

fn write_key(i: u64) -> String {
    format!("bench:write:{i}")
}

async fn load_kv(kv: &Arc<dyn KvStore>) -> Result<()> {
    for chunk in (0..ITEMS).collect::<Vec<_>>().chunks(1_000) {
        let pairs = chunk
            .iter()
            .map(|i| (item_key(*i), Bytes::from(payload(*i))))
            .collect();
        kv.mset(pairs).await?;
    }
    Ok(())
}

fn kv_subjects(kv: &Arc<dyn KvStore>) -> Vec<Subject> {
    let engine = kv.kind();
    let read = {
        let kv = Arc::clone(kv);
        from_fn(move |seq| {
            let kv = Arc::clone(&kv);
            async move {
                let key = item_key(seq % ITEMS);
                match kv.get(&key).await? {
                    Some(v) if v.len() == PAYLOAD => Ok(()),
                    other => Err(wrong(format!("GET {key}: {other:?}"))),
                }
            }
        })
    };
    let write = {
        let kv = Arc::clone(kv);
        from_fn(move |seq| {
            let kv = Arc::clone(&kv);
            async move {
                kv.set(&write_key(seq % ITEMS), Bytes::from(payload(seq)))
                    .await
            }
        })
    };
    let batch_read = {
        let kv = Arc::clone(kv);
        from_fn(move |seq| {
            let kv = Arc::clone(&kv);
            async move {
                let keys: Vec<String> = batch_ids(seq).map(item_key).collect();
                let values = kv.mget(&keys).await?;
                let found = values.iter().filter(|v| v.is_some()).count();
                if found == keys.len() {
                    Ok(())
                } else {
                    Err(wrong(format!("MGET of {} keys found {found}", keys.len())))
                }
            }
        })
    };
    let batch_write = {
        let kv = Arc::clone(kv);
        from_fn(move |seq| {
            let kv = Arc::clone(&kv);
            async move {
                let value = Bytes::from(payload(seq));
                let pairs = batch_ids(seq)
                    .map(|i| (write_key(i), value.clone()))
                    .collect();
                kv.mset(pairs).await
            }
        })
    };
    vec![
        subject(
            "kv.read",
            "GET of one 256-byte value",
            Store::Kv,
            engine,
            1,
            read,
        ),
        subject(
            "kv.write",
            "SET of one 256-byte value",
            Store::Kv,
            engine,
            1,
            write,
        ),
        subject(
            "kv.batch_read",
            "MGET of 100 values",
            Store::Kv,
            engine,
            100,
            batch_read,
        ),
        subject(
            "kv.batch_write",
            "MSET of 100 values",
            Store::Kv,
            engine,
            100,
            batch_write,
        ),
    ]
}

// --- relational ----------------------------------------------------------------

/// `count` placeholders from `first` (1-based) in the backend's style.
fn placeholders(backend: DbBackend, first: usize, count: usize) -> String {
    (first..first + count)
        .map(|n| match backend {
            DbBackend::Postgres => format!("${n}"),
            _ => "?".to_owned(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn statement(db: &DatabaseConnection, sql: String, values: Vec<Value>) -> Statement {
    Statement::from_sql_and_values(db.get_database_backend(), sql, values)
}

fn db_err(e: sea_orm::DbErr) -> Error {
    crate::engines::relational::map_db_err(e)
}

/// Upserts `ids` as items with `score`, in one statement.
fn upsert_items(db: &DatabaseConnection, ids: &[u64], score: f64) -> Statement {
    let backend = db.get_database_backend();
    let mut values = Vec::with_capacity(ids.len() * 4);
    let rows: Vec<String> = ids
        .iter()
        .enumerate()
        .map(|(k, id)| {
            values.push(Value::from(*id as i64));
            values.push(Value::from(format!("item {id}")));
            values.push(Value::from(score));
            values.push(Value::from(payload(*id)));
            format!("({})", placeholders(backend, k * 4 + 1, 4))
        })
        .collect();
    statement(
        db,
        format!(
            "INSERT INTO bench_items (id, name, score, payload) VALUES {} \
             ON CONFLICT (id) DO UPDATE SET score = excluded.score, payload = excluded.payload",
            rows.join(", ")
        ),
        values,
    )
}

async fn load_relational(db: &DatabaseConnection) -> Result<()> {
    let ddl = [
        "CREATE TABLE bench_items (id BIGINT PRIMARY KEY, name TEXT NOT NULL, \
         score DOUBLE PRECISION NOT NULL, payload TEXT NOT NULL)",
        "CREATE TABLE bench_users (id BIGINT PRIMARY KEY, country TEXT NOT NULL)",
        "CREATE TABLE bench_orders (id BIGINT PRIMARY KEY, user_id BIGINT NOT NULL, \
         amount DOUBLE PRECISION NOT NULL)",
        "CREATE INDEX bench_orders_user ON bench_orders (user_id)",
    ];
    for sql in ddl {
        db.execute_unprepared(sql).await.map_err(db_err)?;
    }
    // Twice the items: the writes go to the second half.
    let ids: Vec<u64> = (0..2 * ITEMS).collect();
    for chunk in ids.chunks(200) {
        db.execute_raw(upsert_items(db, chunk, 0.5))
            .await
            .map_err(db_err)?;
    }
    let backend = db.get_database_backend();
    let users: Vec<u64> = (0..USERS).collect();
    for chunk in users.chunks(400) {
        let mut values = Vec::new();
        let rows: Vec<String> = chunk
            .iter()
            .enumerate()
            .map(|(k, id)| {
                values.push(Value::from(*id as i64));
                values.push(Value::from(COUNTRIES[(*id % 8) as usize]));
                format!("({})", placeholders(backend, k * 2 + 1, 2))
            })
            .collect();
        let sql = format!(
            "INSERT INTO bench_users (id, country) VALUES {}",
            rows.join(", ")
        );
        db.execute_raw(statement(db, sql, values))
            .await
            .map_err(db_err)?;
    }
    let orders: Vec<u64> = (0..ORDERS).collect();
    for chunk in orders.chunks(300) {
        let mut values = Vec::new();
        let rows: Vec<String> = chunk
            .iter()
            .enumerate()
            .map(|(k, id)| {
                values.push(Value::from(*id as i64));
                values.push(Value::from((*id % USERS) as i64));
                values.push(Value::from(order_amount(*id)));
                format!("({})", placeholders(backend, k * 3 + 1, 3))
            })
            .collect();
        let sql = format!(
            "INSERT INTO bench_orders (id, user_id, amount) VALUES {}",
            rows.join(", ")
        );
        db.execute_raw(statement(db, sql, values))
            .await
            .map_err(db_err)?;
    }
    crate::migration::refresh_statistics(db).await?;
    Ok(())
}

fn order_amount(id: u64) -> f64 {
    ((id * 37) % 1000) as f64 / 10.0 + 1.0
}

fn relational_subjects(db: &DatabaseConnection) -> Vec<Subject> {
    let engine = match db.get_database_backend() {
        DbBackend::Postgres => "postgres",
        DbBackend::Sqlite => "sqlite",
        _ => "sql",
    };
    let backend = db.get_database_backend();
    let read = {
        let db = db.clone();
        from_fn(move |seq| {
            let db = db.clone();
            async move {
                let sql = format!(
                    "SELECT name, score, payload FROM bench_items WHERE id = {}",
                    placeholders(backend, 1, 1)
                );
                let id = (seq % ITEMS) as i64;
                match db
                    .query_one_raw(statement(&db, sql, vec![Value::from(id)]))
                    .await
                    .map_err(db_err)?
                {
                    Some(_) => Ok(()),
                    None => Err(wrong(format!("no bench_items row {id}"))),
                }
            }
        })
    };
    let write = {
        let db = db.clone();
        from_fn(move |seq| {
            let db = db.clone();
            async move {
                let id = ITEMS + seq % ITEMS;
                db.execute_raw(upsert_items(&db, &[id], seq as f64))
                    .await
                    .map_err(db_err)?;
                Ok(())
            }
        })
    };
    let batch_read = {
        let db = db.clone();
        from_fn(move |seq| {
            let db = db.clone();
            async move {
                let ids: Vec<Value> = batch_ids(seq).map(|i| Value::from(i as i64)).collect();
                let sql = format!(
                    "SELECT id, name, score, payload FROM bench_items WHERE id IN ({})",
                    placeholders(backend, 1, ids.len())
                );
                let rows = db
                    .query_all_raw(statement(&db, sql, ids))
                    .await
                    .map_err(db_err)?;
                if rows.len() == BATCH as usize {
                    Ok(())
                } else {
                    Err(wrong(format!("{} of {BATCH} rows", rows.len())))
                }
            }
        })
    };
    let batch_write = {
        let db = db.clone();
        from_fn(move |seq| {
            let db = db.clone();
            async move {
                let ids: Vec<u64> = batch_ids(seq).map(|i| ITEMS + i).collect();
                db.execute_raw(upsert_items(&db, &ids, seq as f64))
                    .await
                    .map_err(db_err)?;
                Ok(())
            }
        })
    };
    let join = {
        let db = db.clone();
        from_fn(move |seq| {
            let db = db.clone();
            async move {
                let users: Vec<Value> = user_batch(seq).map(|u| Value::from(u as i64)).collect();
                let sql = format!(
                    "SELECT u.country, COUNT(*) AS orders, SUM(o.amount) AS revenue \
                     FROM bench_orders o JOIN bench_users u ON u.id = o.user_id \
                     WHERE o.user_id IN ({}) GROUP BY u.country ORDER BY revenue DESC",
                    placeholders(backend, 1, users.len())
                );
                let first = user_batch(seq).next().unwrap_or(0);
                let rows = db
                    .query_all_raw(statement(&db, sql, users))
                    .await
                    .map_err(db_err)?;
                if rows.is_empty() {
                    Err(wrong(format!(
                        "no groups for users {first}..{}",
                        first + 99
                    )))
                } else {
                    Ok(())
                }
            }
        })
    };
    vec![
        subject(
            "relational.read",
            "SELECT one row by primary key",
            Store::Relational,
            engine,
            1,
            read,
        ),
        subject(
            "relational.write",
            "INSERT ... ON CONFLICT DO UPDATE of one row",
            Store::Relational,
            engine,
            1,
            write,
        ),
        subject(
            "relational.batch_read",
            "SELECT 100 rows by primary key (IN)",
            Store::Relational,
            engine,
            100,
            batch_read,
        ),
        subject(
            "relational.batch_write",
            "upsert of 100 rows, one statement",
            Store::Relational,
            engine,
            100,
            batch_write,
        ),
        subject(
            "relational.join",
            "orders of 100 users (IN) JOIN users, GROUP BY country",
            Store::Relational,
            engine,
            1,
            join,
        ),
    ]
}

// --- documents ----------------------------------------------------------------

const ITEMS_COLLECTION: &str = "bench_items";
const ORDERS_COLLECTION: &str = "bench_orders";

fn item_document(id: u64, score: f64) -> bson::Document {
    doc! {
        "_id": id as i64,
        "name": format!("item {id}"),
        "score": score,
        "payload": payload(id),
        "tags": ["bench", COUNTRIES[(id % 8) as usize]],
    }
}

async fn load_documents(docs: &Arc<dyn DocumentStore>) -> Result<()> {
    let items: Vec<u64> = (0..2 * ITEMS).collect();
    for chunk in items.chunks(1_000) {
        docs.insert_many(
            ITEMS_COLLECTION,
            chunk.iter().map(|i| item_document(*i, 0.5)).collect(),
        )
        .await?;
    }
    let orders: Vec<u64> = (0..ORDERS).collect();
    for chunk in orders.chunks(1_000) {
        docs.insert_many(
            ORDERS_COLLECTION,
            chunk
                .iter()
                .map(|id| {
                    let user = id % USERS;
                    doc! {
                        "_id": *id as i64,
                        "user_id": user as i64,
                        "country": COUNTRIES[(user % 8) as usize],
                        "amount": order_amount(*id),
                    }
                })
                .collect(),
        )
        .await?;
    }
    docs.create_index(ORDERS_COLLECTION, IndexSpec::new(doc! {"user_id": 1}))
        .await?;
    Ok(())
}

fn documents_subjects(docs: &Arc<dyn DocumentStore>) -> Vec<Subject> {
    let engine = docs.kind();
    let read = {
        let docs = Arc::clone(docs);
        from_fn(move |seq| {
            let docs = Arc::clone(&docs);
            async move {
                let id = (seq % ITEMS) as i64;
                let found = docs
                    .find(
                        ITEMS_COLLECTION,
                        doc! {"_id": id},
                        FindOptions::default().limit(1),
                    )
                    .await?;
                if found.len() == 1 {
                    Ok(())
                } else {
                    Err(wrong(format!("no document {id} in {ITEMS_COLLECTION}")))
                }
            }
        })
    };
    let write = {
        let docs = Arc::clone(docs);
        from_fn(move |seq| {
            let docs = Arc::clone(&docs);
            async move {
                let id = ITEMS + seq % ITEMS;
                docs.replace_one(
                    ITEMS_COLLECTION,
                    doc! {"_id": id as i64},
                    item_document(id, seq as f64),
                    true,
                )
                .await?;
                Ok(())
            }
        })
    };
    let batch_read = {
        let docs = Arc::clone(docs);
        from_fn(move |seq| {
            let docs = Arc::clone(&docs);
            async move {
                let ids: Vec<Bson> = batch_ids(seq).map(|i| Bson::Int64(i as i64)).collect();
                let found = docs
                    .find(
                        ITEMS_COLLECTION,
                        doc! {"_id": {"$in": ids}},
                        FindOptions::default(),
                    )
                    .await?;
                if found.len() == BATCH as usize {
                    Ok(())
                } else {
                    Err(wrong(format!("{} of {BATCH} documents", found.len())))
                }
            }
        })
    };
    let batch_write = {
        let docs = Arc::clone(docs);
        from_fn(move |seq| {
            let docs = Arc::clone(&docs);
            async move {
                let ids: Vec<Bson> = batch_ids(seq)
                    .map(|i| Bson::Int64((ITEMS + i) as i64))
                    .collect();
                let done = docs
                    .update(
                        ITEMS_COLLECTION,
                        doc! {"_id": {"$in": ids}},
                        doc! {"$set": {"score": seq as f64}},
                        UpdateOptions {
                            multi: true,
                            upsert: false,
                        },
                    )
                    .await?;
                if done.matched == BATCH {
                    Ok(())
                } else {
                    Err(wrong(format!(
                        "{} of {BATCH} documents matched",
                        done.matched
                    )))
                }
            }
        })
    };
    let aggregate = {
        let docs = Arc::clone(docs);
        from_fn(move |seq| {
            let docs = Arc::clone(&docs);
            async move {
                let users: Vec<Bson> = user_batch(seq).map(|u| Bson::Int64(u as i64)).collect();
                let first = user_batch(seq).next().unwrap_or(0);
                let groups = docs
                    .aggregate(
                        ORDERS_COLLECTION,
                        vec![
                            doc! {"$match": {"user_id": {"$in": users}}},
                            doc! {"$group": {
                                "_id": "$country",
                                "orders": {"$sum": 1},
                                "revenue": {"$sum": "$amount"},
                            }},
                            doc! {"$sort": {"revenue": -1}},
                        ],
                    )
                    .await?;
                if groups.is_empty() {
                    Err(wrong(format!(
                        "no groups for users {first}..{}",
                        first + 99
                    )))
                } else {
                    Ok(())
                }
            }
        })
    };
    vec![
        subject(
            "documents.read",
            "find one document by _id",
            Store::Documents,
            engine,
            1,
            read,
        ),
        subject(
            "documents.write",
            "replace one document (upsert)",
            Store::Documents,
            engine,
            1,
            write,
        ),
        subject(
            "documents.batch_read",
            "find 100 documents by _id ($in)",
            Store::Documents,
            engine,
            100,
            batch_read,
        ),
        subject(
            "documents.batch_write",
            "update 100 documents ($in, $set), one request",
            Store::Documents,
            engine,
            100,
            batch_write,
        ),
        subject(
            "documents.aggregate",
            "$match orders of 100 users ($in), $group by country, $sort",
            Store::Documents,
            engine,
            1,
            aggregate,
        ),
    ]
}

// --- the three-tier cache --------------------------------------------------------

/// Which tier a cache workload expects to answer.
#[derive(Debug, Clone, Copy)]
enum Expect {
    L1,
    L2,
    Miss,
}

struct CacheWorkload {
    cache: TieredCache<String>,
    db: DatabaseConnection,
    expect: Expect,
    sessions: AtomicU64,
    /// Makes every miss's key new, across runs.
    misses: Arc<AtomicU64>,
    run: String,
}

struct CacheSession {
    cache: TieredCache<String>,
    db: DatabaseConnection,
    expect: Expect,
    /// Its own keys (L2 lookups): another session's read never refills
    /// them into L1 between this one's forget and read.
    first_key: u64,
    keys: u64,
    misses: Arc<AtomicU64>,
    run: String,
}

async fn load_item(db: DatabaseConnection, id: u64) -> Result<Option<String>> {
    let sql = format!(
        "SELECT payload FROM bench_items WHERE id = {}",
        placeholders(db.get_database_backend(), 1, 1)
    );
    let row = db
        .query_one_raw(statement(&db, sql, vec![Value::from(id as i64)]))
        .await
        .map_err(db_err)?;
    match row {
        Some(row) => Ok(Some(row.try_get_by_index::<String>(0).map_err(db_err)?)),
        None => Ok(None),
    }
}

#[async_trait]
impl Workload for CacheWorkload {
    async fn session(&self) -> Result<Box<dyn Session>> {
        let n = self.sessions.fetch_add(1, Ordering::Relaxed);
        let (first_key, keys) = match self.expect {
            // 64 sessions at most share the keys, 15 each.
            Expect::L2 => ((n % 64) * (CACHE_KEYS / 64), CACHE_KEYS / 64),
            _ => (0, CACHE_KEYS),
        };
        Ok(Box::new(CacheSession {
            cache: self.cache.clone(),
            db: self.db.clone(),
            expect: self.expect,
            first_key,
            keys,
            misses: Arc::clone(&self.misses),
            run: self.run.clone(),
        }))
    }
}

#[async_trait]
impl Session for CacheSession {
    async fn call(&mut self, seq: u64) -> Result<()> {
        let (key, id) = match self.expect {
            Expect::Miss => {
                let n = self.misses.fetch_add(1, Ordering::Relaxed);
                (format!("miss:{}:{n}", self.run), n % ITEMS)
            }
            _ => {
                let id = self.first_key + seq % self.keys;
                (format!("item:{id}"), id)
            }
        };
        if matches!(self.expect, Expect::L2) {
            self.cache.forget_local(&key);
        }
        let db = self.db.clone();
        let lookup = self
            .cache
            .get_or_load(&key, move || load_item(db, id))
            .await?;
        let expected = match self.expect {
            Expect::L1 => Tier::L1,
            Expect::L2 => Tier::L2,
            Expect::Miss => Tier::Loaded,
        };
        if lookup.value.is_none() || lookup.tier != expected {
            return Err(wrong(format!(
                "{key}: answered by {} ({}), expected {}",
                lookup.tier,
                if lookup.value.is_some() {
                    "a value"
                } else {
                    "nothing"
                },
                expected
            )));
        }
        Ok(())
    }
}

async fn cache_subjects(sandbox: &Sandbox) -> Result<Vec<Subject>> {
    // A slow L2 answer is measured, not skipped: the production bound on
    // an L2 read (`l2_timeout`) would turn an L2 hit under load into a
    // load from the relational engine.
    let settings = CacheSettings {
        ttl: std::time::Duration::from_secs(3600),
        l2_timeout: std::time::Duration::from_secs(5),
        soft_timeout: std::time::Duration::from_secs(5),
        hard_timeout: std::time::Duration::from_secs(9),
        jitter: 0.0,
        eager_refresh: 0.0,
        ..sandbox.platform.caches().defaults()
    };
    let cache: TieredCache<String> = sandbox.platform.caches().create("bench", settings)?;
    // Warm both tiers with the keys the L1 and L2 workloads read.
    for id in 0..CACHE_KEYS {
        let db = sandbox.engines.relational.clone();
        cache
            .get_or_load(&format!("item:{id}"), move || load_item(db, id))
            .await?;
    }
    let engine = format!("moka + {}", sandbox.engines.kv.kind());
    let make = |expect| -> Arc<dyn Workload> {
        Arc::new(CacheWorkload {
            cache: cache.clone(),
            db: sandbox.engines.relational.clone(),
            expect,
            sessions: AtomicU64::new(0),
            misses: Arc::new(AtomicU64::new(0)),
            run: sandbox.name.clone(),
        })
    };
    let loader = format!(
        "moka + {} + {}",
        sandbox.engines.kv.kind(),
        relational_kind(&sandbox.engines.relational)
    );
    Ok(vec![
        subject(
            "cache.l1",
            "TieredCache lookup answered by L1 (in process)",
            Store::Cache,
            &engine,
            1,
            make(Expect::L1),
        ),
        subject(
            "cache.l2",
            "TieredCache lookup answered by L2 (the key-value engine)",
            Store::Cache,
            &engine,
            1,
            make(Expect::L2),
        ),
        subject(
            "cache.miss",
            "TieredCache miss: L2 miss, relational read, both tiers filled",
            Store::Cache,
            &loader,
            1,
            make(Expect::Miss),
        ),
    ])
}

fn relational_kind(db: &DatabaseConnection) -> &'static str {
    match db.get_database_backend() {
        DbBackend::Postgres => "postgres",
        DbBackend::Sqlite => "sqlite",
        _ => "sql",
    }
}

// --- the queue ----------------------------------------------------------------------

/// Publishes and waits until the one consumer has taken and acknowledged
/// the message.
struct RoundTrip {
    broker: Arc<dyn crate::engines::Broker>,
    queue: String,
    next: AtomicU64,
    waiting: Arc<Mutex<HashMap<u64, tokio::sync::oneshot::Sender<()>>>>,
}

struct RoundTripSession(Arc<RoundTrip>);

/// Drops a waiter that never heard back (a timed-out request).
struct Waiter<'a> {
    waiting: &'a Mutex<HashMap<u64, tokio::sync::oneshot::Sender<()>>>,
    id: u64,
}

impl Drop for Waiter<'_> {
    fn drop(&mut self) {
        if let Ok(mut waiting) = self.waiting.lock() {
            waiting.remove(&self.id);
        }
    }
}

struct SharedRoundTrip(Arc<RoundTrip>);

#[async_trait]
impl Workload for SharedRoundTrip {
    async fn session(&self) -> Result<Box<dyn Session>> {
        Ok(Box::new(RoundTripSession(Arc::clone(&self.0))))
    }
}

#[async_trait]
impl Session for RoundTripSession {
    async fn call(&mut self, _seq: u64) -> Result<()> {
        let rt = &self.0;
        let id = rt.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = tokio::sync::oneshot::channel();
        rt.waiting
            .lock()
            .map_err(|_| wrong("the waiters' lock is poisoned"))?
            .insert(id, tx);
        let _waiter = Waiter {
            waiting: &rt.waiting,
            id,
        };
        let mut body = id.to_be_bytes().to_vec();
        body.resize(PAYLOAD, b'.');
        let published = rt
            .broker
            .publish("", &rt.queue, Message::new(body).persistent())
            .await?;
        if !published.routed {
            return Err(wrong(format!("the message was not routed to {}", rt.queue)));
        }
        rx.await
            .map_err(|_| wrong("the consumer stopped before the message came back"))
    }
}

async fn queue_subject(sandbox: &Sandbox) -> Result<Subject> {
    let broker = Arc::clone(&sandbox.engines.queue);
    let queue = queues(&sandbox.name)
        .into_iter()
        .next()
        .ok_or_else(|| wrong("no queue name"))?;
    broker
        .declare_queue(
            &queue,
            QueueOptions {
                durable: true,
                ..QueueOptions::default()
            },
        )
        .await?;
    let waiting: Arc<Mutex<HashMap<u64, tokio::sync::oneshot::Sender<()>>>> = Arc::default();
    let mut consumer = broker
        .consume(
            &queue,
            ConsumeOptions {
                prefetch: 256,
                consumer_tag: None,
            },
        )
        .await?;
    {
        let waiting = Arc::clone(&waiting);
        // Ends when the queue is deleted with the sandbox.
        tokio::spawn(async move {
            while let Some(Ok(delivery)) = consumer.next().await {
                let id = delivery
                    .message
                    .body
                    .get(..8)
                    .and_then(|b| <[u8; 8]>::try_from(b).ok())
                    .map(u64::from_be_bytes);
                if delivery.ack().await.is_err() {
                    continue;
                }
                if let Some(id) = id
                    && let Some(tx) = waiting.lock().ok().and_then(|mut w| w.remove(&id))
                {
                    let _ = tx.send(());
                }
            }
        });
    }
    let engine = broker.kind().to_owned();
    Ok(subject(
        "queue.roundtrip",
        "publish (persistent, confirmed) → consume → ack",
        Store::Queue,
        &engine,
        1,
        Arc::new(SharedRoundTrip(Arc::new(RoundTrip {
            broker,
            queue,
            next: AtomicU64::new(0),
            waiting,
        }))),
    ))
}

// --- run search --------------------------------------------------------------------

/// The searches cycled through: the API's page of 50, as `GET /v1/runs`
/// runs them.
const SEARCHES: [(&str, &str); 3] = [
    ("", ""),
    ("", "accuracy DESC"),
    ("framework IN ('pytorch') OR accuracy > 0.95", ""),
];

async fn search_subject(
    sandbox: &Sandbox,
    runs: u64,
    progress: &(dyn Fn(u64) + Send + Sync),
) -> Result<Subject> {
    sandbox.platform.seeder().scenario().await?;
    sandbox
        .platform
        .seeder()
        .synthetic(runs, crate::platform::seed::DEFAULT_SEED, progress)
        .await?;
    let platform = sandbox.platform.clone();
    let engine = relational_kind(&sandbox.engines.relational).to_owned();
    Ok(subject(
        "search.runs",
        &format!("a page of 50 runs of {runs}, filtered and ordered"),
        Store::Search,
        &engine,
        1,
        from_fn(move |seq| {
            let platform = platform.clone();
            async move {
                let (filter, order) = SEARCHES[(seq % SEARCHES.len() as u64) as usize];
                let page = platform
                    .registry()
                    .search_runs(filter, order, 50, None)
                    .await?;
                if page.runs.is_empty() {
                    Err(wrong(format!("no runs for {filter:?} by {order:?}")))
                } else {
                    Ok(())
                }
            }
        }),
    ))
}

/// Loads the data and builds the engine workloads of the sandbox that
/// `wants` (by store prefix: `kv`, `relational`, ...), in the order they
/// are measured. `runs` synthetic runs are seeded for run search;
/// `progress` hears how many so far.
pub(crate) async fn subjects(
    sandbox: &Sandbox,
    runs: u64,
    wants: &(dyn Fn(&str) -> bool + Send + Sync),
    progress: &(dyn Fn(u64) + Send + Sync),
) -> Result<Vec<Subject>> {
    let engines = &sandbox.engines;
    let any = |ids: &[&str]| ids.iter().any(|id| wants(id));
    let mut all = Vec::new();
    if any(&["kv.read", "kv.write", "kv.batch_read", "kv.batch_write"]) {
        load_kv(&engines.kv).await?;
        all.extend(kv_subjects(&engines.kv));
    }
    let cache = ["cache.l1", "cache.l2", "cache.miss"];
    if any(&[
        "relational.read",
        "relational.write",
        "relational.batch_read",
        "relational.batch_write",
        "relational.join",
    ]) || any(&cache)
    {
        load_relational(&engines.relational).await?;
        all.extend(relational_subjects(&engines.relational));
    }
    if any(&[
        "documents.read",
        "documents.write",
        "documents.batch_read",
        "documents.batch_write",
        "documents.aggregate",
    ]) {
        load_documents(&engines.documents).await?;
        all.extend(documents_subjects(&engines.documents));
    }
    if any(&cache) {
        all.extend(cache_subjects(sandbox).await?);
    }
    if wants("queue.roundtrip") {
        all.push(queue_subject(sandbox).await?);
    }
    if wants("search.runs") {
        all.push(search_subject(sandbox, runs, progress).await?);
    }
    Ok(all)
}
