//! What only the MongoDB adapter has: connecting (credentials, unreachable
//! servers, redaction), the server's validation details, and every known
//! difference between the server the full profile runs (SecantusDB, a
//! MongoDB-compatible server) and MongoDB 7, the reference.
//!
//! Each `secantusdb_differs_from_mongodb_on_*` case asserts what the server
//! actually does through the raw driver (so it fails, and the note can go,
//! the day the server matches MongoDB), says what MongoDB does, and checks
//! that the adapter still gives MongoDB's answer where it can.
//!
//! The contracts shared with the embedded engine are checked by
//! `tests/document_conformance.rs` (`cargo test --test document_conformance
//! mongodb::`).

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bson::{Bson, DateTime, Document, doc};
use futures::{FutureExt, TryStreamExt};
use strata::config::{DocumentsConfig, MongoConfig, Secret};
use strata::engines::document::mongodb::MongoDocumentStore;
use strata::engines::document::{
    CollectionOptions, DocumentStore, DocumentStoreExt, FindOptions, IndexSpec,
};
use strata::error::ErrorKind;

mod common;

/// The full profile's MongoDB settings, or `None` when real services are off.
fn mongo_config() -> Option<MongoConfig> {
    let config = common::full_profile("document_mongodb")?;
    match config.documents {
        DocumentsConfig::Mongodb(m) => Some(m),
        other => panic!("config/full.toml: documents must be mongodb, got {other:?}"),
    }
}

/// A fresh database on the adapter.
struct FreshDatabase {
    store: MongoDocumentStore,
}

impl FreshDatabase {
    /// The same database through the bare driver, to see what the server
    /// itself answers.
    async fn raw(&self, config: &MongoConfig) -> mongodb::Database {
        let mut options = mongodb::options::ClientOptions::parse(&config.url)
            .await
            .expect("parse url");
        if let (Some(c), Some(p)) = (options.credential.as_mut(), &config.password) {
            c.password = Some(p.expose().to_owned());
        }
        options.server_selection_timeout = Some(config.server_selection_timeout);
        mongodb::Client::with_options(options)
            .expect("client")
            .database(self.store.database_name())
    }
}

/// Runs `case` on a fresh database of the full profile's MongoDB and drops
/// the database afterwards, whether the case passed or panicked. Skips
/// (returns) when real services are off.
async fn with_fresh_database<C, F>(case: C)
where
    C: FnOnce(FreshDatabase, MongoConfig) -> F,
    F: Future<Output = ()>,
{
    let Some(config) = mongo_config() else { return };
    let store = MongoDocumentStore::connect(&config)
        .await
        .unwrap_or_else(|e| panic!("connect (is scripts/services.sh up?): {e}"))
        .with_database(&common::unique_name("t"));
    let db = FreshDatabase {
        store: store.clone(),
    };
    let outcome = AssertUnwindSafe(case(db, config)).catch_unwind().await;
    let dropped = store.drop_database().await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
    dropped.expect("drop the test database");
}

/// The code of a server error (panics on any other error).
fn server_code(e: &mongodb::error::Error) -> i32 {
    match *e.kind {
        mongodb::error::ErrorKind::Command(ref c) => c.code,
        _ => panic!("expected a server error, got {e}"),
    }
}

/// What the server itself answers to a pipeline, or its error code.
async fn server_aggregate(
    raw: &mongodb::Database,
    coll: &str,
    pipeline: Vec<Document>,
) -> Result<Vec<Document>, i32> {
    let cursor = raw
        .collection::<Document>(coll)
        .aggregate(pipeline)
        .await
        .map_err(|e| server_code(&e))?;
    cursor.try_collect().await.map_err(|e| server_code(&e))
}

/// The `_id`s the server itself finds for `filter`, in `_id` order, or its
/// error code.
async fn server_ids(
    raw: &mongodb::Database,
    coll: &str,
    filter: Document,
) -> Result<Vec<Bson>, i32> {
    let found: Vec<Document> = raw
        .collection::<Document>(coll)
        .find(filter)
        .sort(doc! {"_id": 1})
        .await
        .map_err(|e| server_code(&e))?
        .try_collect()
        .await
        .map_err(|e| server_code(&e))?;
    Ok(found
        .iter()
        .map(|d| d.get("_id").cloned().unwrap())
        .collect())
}

fn int_ids(ids: &[i32]) -> Vec<Bson> {
    ids.iter().map(|i| Bson::Int32(*i)).collect()
}

/// A port on loopback where nothing listens.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

// ---------------------------------------------------------------- connect

#[tokio::test]
async fn unreachable_port_is_unavailable_within_the_timeouts() {
    let config = MongoConfig {
        url: format!(
            "mongodb://strata@127.0.0.1:{}/?authSource=admin",
            closed_port()
        ),
        password: Some(Secret::new("not-this-one")),
        connect_timeout: Duration::from_millis(300),
        server_selection_timeout: Duration::from_millis(700),
        ..MongoConfig::default()
    };
    let started = Instant::now();
    let err = MongoDocumentStore::connect(&config).await.unwrap_err();
    let elapsed = started.elapsed();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(err.is_retryable());
    assert!(
        elapsed < Duration::from_secs(3),
        "took {elapsed:?}, beyond the configured timeouts"
    );
    assert_eq!(err.operations().last(), Some(&"connect"), "{err}");
    assert!(!err.to_string().contains("not-this-one"), "{err}");
}

#[tokio::test]
async fn mongodb_srv_url_without_resolvable_host_fails_cleanly() {
    // SRV lookups are compiled in (the driver's `dns-resolver` feature); a
    // name that does not resolve must fail within the budget, not hang.
    let config = MongoConfig {
        url: "mongodb+srv://strata@cluster.invalid/".into(),
        connect_timeout: Duration::from_millis(300),
        server_selection_timeout: Duration::from_millis(700),
        ..MongoConfig::default()
    };
    let started = Instant::now();
    let err = MongoDocumentStore::connect(&config).await.unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::Config | ErrorKind::Timeout),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(4));
}

#[tokio::test]
async fn password_without_user_is_a_config_error() {
    let config = MongoConfig {
        url: "mongodb://127.0.0.1:1/".into(),
        password: Some(Secret::new("s3cret-value")),
        ..MongoConfig::default()
    };
    let err = MongoDocumentStore::connect(&config).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    assert!(!err.to_string().contains("s3cret-value"), "{err}");
}

#[tokio::test]
async fn wrong_password_is_authentication_failed_and_redacted() {
    let Some(mut config) = mongo_config() else {
        return;
    };
    config.password = Some(Secret::new("wrong-password-4711"));
    let err = MongoDocumentStore::connect(&config).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AuthenticationFailed, "{err}");
    assert!(!err.is_retryable());
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains("wrong-password-4711"), "{shown}");
    assert!(
        err.to_string().contains("127.0.0.1:57017"),
        "names the target: {err}"
    );

    // The same with the password written into the URL itself.
    config.password = None;
    config.url = config
        .url
        .replace("mongodb://strata@", "mongodb://strata:wrong-password-4711@");
    let err = MongoDocumentStore::connect(&config).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AuthenticationFailed, "{err}");
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains("wrong-password-4711"), "{shown}");
}

#[tokio::test]
async fn kind_target_and_debug_show_no_password() {
    let Some(config) = mongo_config() else { return };
    let password = config
        .password
        .as_ref()
        .expect("full profile password")
        .expose()
        .to_owned();
    // No database is written here: nothing to drop.
    let store: Arc<dyn DocumentStore> =
        Arc::new(MongoDocumentStore::connect(&config).await.unwrap());
    assert_eq!(store.kind(), "mongodb");
    let target = store.target();
    assert!(target.contains("127.0.0.1:57017"), "{target}");
    assert!(target.contains(&config.database), "{target}");
    assert!(!target.contains(&password), "{target}");
    let debug = format!("{store:?}");
    assert!(!debug.contains(&password), "{debug}");
    assert!(debug.contains("<redacted>"), "{debug}");
    store.ping().await.unwrap();
}

#[tokio::test]
async fn open_documents_builds_the_adapter_from_configuration() {
    let Some(config) = common::full_profile("document_mongodb") else {
        return;
    };
    let store = strata::engines::open_documents(&config).await.unwrap();
    assert_eq!(store.kind(), "mongodb");
    store.ping().await.unwrap();
}

// ------------------------------------------------------------- validation

#[tokio::test]
async fn validation_failure_names_nested_field_from_server_details() {
    with_fresh_database(|db, _config| async move {
        let validator = doc! {"$jsonSchema": {
            "bsonType": "object",
            "required": ["run"],
            "properties": {"run": {"bsonType": "object", "required": ["id"],
                "properties": {"id": {"bsonType": "string"},
                    "tags": {"bsonType": "array", "items": {"bsonType": "string"}}}}},
        }};
        let options = CollectionOptions {
            validator: Some(validator),
        };
        db.store.create_collection("runs", options).await.unwrap();
        let cases: [(Document, &str); 3] = [
            (doc! {"run": {"id": 7}}, "run.id"),
            (doc! {"run": {}}, "run.id"),
            (
                doc! {"run": {"id": "r1", "tags": ["a", "b", 3]}},
                "run.tags.2",
            ),
        ];
        for (document, field) in cases {
            let err = db
                .store
                .insert_one("runs", document.clone())
                .await
                .unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
            assert_eq!(err.field(), Some(field), "{document}: {err}");
            assert!(
                err.message().starts_with("Document failed validation"),
                "{err}"
            );
        }
        assert_eq!(db.store.count("runs", doc! {}).await.unwrap(), 0);
    })
    .await;
}

#[tokio::test]
async fn create_collection_changes_the_validator_of_an_existing_one() {
    with_fresh_database(|db, _config| async move {
        db.store.insert_one("c", doc! {"a": 1}).await.unwrap();
        let requires_b = CollectionOptions {
            validator: Some(doc! {"$jsonSchema": {"required": ["b"]}}),
        };
        db.store
            .create_collection("c", requires_b.clone())
            .await
            .unwrap();
        db.store.create_collection("c", requires_b).await.unwrap();
        let err = db.store.insert_one("c", doc! {"a": 2}).await.unwrap_err();
        assert_eq!(err.field(), Some("b"), "{err}");
        db.store.insert_one("c", doc! {"b": 2}).await.unwrap();
    })
    .await;
}

// --------------------------------------------- SecantusDB versus MongoDB

#[tokio::test]
async fn secantusdb_differs_from_mongodb_on_count_of_no_documents() {
    with_fresh_database(|db, config| async move {
        db.store
            .insert_many("c", vec![doc! {"q": 1}, doc! {"q": 2}])
            .await
            .unwrap();
        let pipeline = vec![doc! {"$match": {"q": 99}}, doc! {"$count": "n"}];
        // SecantusDB: `$count` over no input emits `{n: 0}`. MongoDB emits no
        // document at all: `$count` is `$group: {_id: null, n: {$sum: 1}}` +
        // `$project`, and `$group` with no input has no group (MongoDB manual,
        // "$count (aggregation stage)", "Behavior").
        let raw = db.raw(&config).await;
        let server: Vec<Document> = raw
            .collection::<Document>("c")
            .aggregate(pipeline.clone())
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        assert_eq!(server, vec![doc! {"n": 0}]);
        // The adapter sends `$count` as that `$group` + `$project`, so it gives
        // MongoDB's answer on both.
        assert!(db.store.aggregate("c", pipeline).await.unwrap().is_empty());
        let some = db
            .store
            .aggregate("c", vec![doc! {"$count": "n"}])
            .await
            .unwrap();
        assert_eq!(some, vec![doc! {"n": 2}]);
    })
    .await;
}

#[tokio::test]
async fn secantusdb_differs_from_mongodb_on_where() {
    with_fresh_database(|db, config| async move {
        db.store.insert_one("c", doc! {"a": 2}).await.unwrap();
        // SecantusDB has no JavaScript engine: `$where` fails with code 6108304
        // ("no globalScriptEngine in $where parsing"). MongoDB runs the
        // JavaScript (unless started with scripting disabled) and would return
        // the document.
        let raw = db.raw(&config).await;
        let server = raw
            .collection::<Document>("c")
            .find(doc! {"$where": "this.a > 1"})
            .await;
        let code = match server {
            Ok(_) => None,
            Err(e) => match *e.kind {
                mongodb::error::ErrorKind::Command(ref c) => Some(c.code),
                _ => None,
            },
        };
        assert_eq!(code, Some(6108304));
        // Outside strata's subset either way: the adapter refuses it before
        // sending, as the embedded engine does.
        let err = db
            .store
            .find("c", doc! {"$where": "this.a > 1"}, FindOptions::default())
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unsupported);
        assert!(err.to_string().contains("$where"), "{err}");
    })
    .await;
}

#[tokio::test]
async fn secantusdb_differs_from_mongodb_on_two_sided_ranges_over_multikey_indexes() {
    with_fresh_database(|db, config| async move {
        let docs = vec![
            doc! {"_id": 1, "s": [1, 10]},
            doc! {"_id": 2, "s": [4, 5]},
            doc! {"_id": 3, "s": 7},
        ];
        db.store.insert_many("c", docs).await.unwrap();
        db.store
            .create_index("c", IndexSpec::new(doc! {"s": 1}))
            .await
            .unwrap();
        let filter = doc! {"s": {"$gt": 6, "$lt": 3}};
        // SecantusDB intersects the two bounds on the multikey index `s_1`
        // and finds nothing. MongoDB does not intersect bounds of a multikey
        // index outside `$elemMatch` (MongoDB manual, "Multikey Index
        // Bounds"), so it returns `_id` 1: 10 > 6 and 1 < 3, each met by
        // another element, as without an index.
        let raw = db.raw(&config).await;
        let server: Vec<Document> = raw
            .collection::<Document>("c")
            .find(filter.clone())
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        assert_eq!(server, Vec::<Document>::new());
        // The adapter sends it as `$and` of one condition per operator (the
        // same query in MongoDB), which SecantusDB answers right.
        let found = db
            .store
            .find("c", filter.clone(), FindOptions::default())
            .await
            .unwrap();
        assert_eq!(found, vec![doc! {"_id": 1, "s": [1, 10]}]);
        assert_eq!(db.store.count("c", filter.clone()).await.unwrap(), 1);
        let matched = db
            .store
            .aggregate("c", vec![doc! {"$match": filter.clone()}])
            .await
            .unwrap();
        assert_eq!(matched.len(), 1);
        assert_eq!(db.store.delete_many("c", filter).await.unwrap(), 1);
    })
    .await;
}

#[tokio::test]
async fn secantusdb_differs_from_mongodb_on_lookup_keys() {
    with_fresh_database(|db, config| async move {
        let raw = db.raw(&config).await;
        let foreign = vec![
            doc! {"_id": 0, "a": [[1, 2], 3]},
            doc! {"_id": 1, "a": [[1, 2]]},
            doc! {"_id": 2, "a": [1, 2]},
        ];
        db.store.insert_many("foreign", foreign).await.unwrap();
        db.store
            .insert_one("local", doc! {"_id": 0, "b": [[1, 2], 42]})
            .await
            .unwrap();
        let lookup = vec![
            doc! {"$lookup": {"from": "foreign", "localField": "b",
            "foreignField": "a", "as": "m"}},
            doc! {"$project": {"m._id": 1}},
        ];
        // SecantusDB joins the local key `[1, 2]` (an array inside the local
        // array) only to foreign arrays holding it. MongoDB matches the key
        // as `{a: {$in: [[1, 2], 42]}}` does, so `_id` 2, whose whole array
        // equals it, joins too (jstests `lookup_equijoin_semantics_lib.js`,
        // "Nested array in local and top-level field in foreign").
        let server = server_aggregate(&raw, "local", lookup.clone()).await;
        assert_eq!(
            server,
            Ok(vec![doc! {"_id": 0, "m": [{"_id": 0}, {"_id": 1}]}])
        );
        // The adapter passes `$lookup` through: on SecantusDB it gives the
        // server's answer; the embedded engine gives MongoDB's
        // (`query::aggregate` unit tests).
        assert_eq!(
            db.store.aggregate("local", lookup).await.map_err(|_| 0),
            server
        );

        // SecantusDB joins a local path through an array of documents to a
        // null foreign field although the path has values (1; 2 and 3).
        // MongoDB collects only the values found (`visitAllValuesAtPath`)
        // and joins null only when there are none ("Missing in local path and
        // top-level null in foreign").
        db.store.drop_collection("local").await.unwrap();
        db.store.drop_collection("foreign").await.unwrap();
        db.store
            .insert_one("foreign", doc! {"_id": 0, "b": null})
            .await
            .unwrap();
        let locals = vec![
            doc! {"_id": 3, "a": [{"no_x": 2}, {"x": 1}]},
            doc! {"_id": 21, "a": [{"x": 2}, {"x": 3}]},
        ];
        db.store.insert_many("local", locals).await.unwrap();
        let lookup = vec![
            doc! {"$lookup": {"from": "foreign", "localField": "a.x",
            "foreignField": "b", "as": "m"}},
            doc! {"$project": {"m._id": 1}},
            doc! {"$sort": {"_id": 1}},
        ];
        let server = server_aggregate(&raw, "local", lookup).await;
        assert_eq!(
            server,
            Ok(vec![
                doc! {"_id": 3, "m": [{"_id": 0}]},
                doc! {"_id": 21, "m": [{"_id": 0}]},
            ])
        );
    })
    .await;
}

#[tokio::test]
async fn secantusdb_differs_from_mongodb_on_all_of_null_and_of_an_array() {
    with_fresh_database(|db, config| async move {
        let raw = db.raw(&config).await;
        let docs = vec![
            doc! {"_id": 1},
            doc! {"_id": 2, "a": null},
            doc! {"_id": 3, "a": [1, 2]},
            doc! {"_id": 4, "a": [[1, 2], 3]},
        ];
        db.store.insert_many("c", docs).await.unwrap();
        // `$all: [v, ...]` is `$and: [{a: v}, ...]` (MongoDB manual, "$all",
        // "Equivalent to $and Operation"): `{a: null}` matches a missing
        // field, and `{a: [1, 2]}` an array equal to `[1, 2]` as well as one
        // holding it ("Nested Array"). SecantusDB finds neither.
        let server = server_ids(&raw, "c", doc! {"a": {"$all": [null]}}).await;
        assert_eq!(server, Ok(int_ids(&[2])));
        let server = server_ids(&raw, "c", doc! {"a": {"$all": [[1, 2]]}}).await;
        assert_eq!(server, Ok(int_ids(&[4])));
        // The equivalent filters it answers as MongoDB does.
        let found = db
            .store
            .find("c", doc! {"a": null}, FindOptions::sorted(doc! {"_id": 1}))
            .await
            .unwrap();
        assert_eq!(found.len(), 2);
        let found = db
            .store
            .find(
                "c",
                doc! {"a": [1, 2]},
                FindOptions::sorted(doc! {"_id": 1}),
            )
            .await
            .unwrap();
        assert_eq!(found.len(), 2);
    })
    .await;
}

#[tokio::test]
async fn secantusdb_differs_from_mongodb_on_mod_operands() {
    with_fresh_database(|db, config| async move {
        let raw = db.raw(&config).await;
        let docs = vec![
            doc! {"_id": 1, "a": 5},
            doc! {"_id": 2, "a": 1e30},
            doc! {"_id": 3, "a": 6},
        ];
        db.store.insert_many("c", docs).await.unwrap();
        // MongoDB truncates both operands toward zero ([2.9, 1.9] is [2, 1])
        // and never matches a dividend beyond 64-bit integers (MongoDB
        // manual, "$mod", "Floating Point Arguments"; `ModMatchExpression`).
        // SecantusDB divides the doubles as they are, and 1e30 % 2 == 0.
        let fractional = doc! {"a": {"$mod": [2.9, 1.9]}};
        assert_eq!(server_ids(&raw, "c", fractional).await, Ok(vec![]));
        let even = doc! {"a": {"$mod": [2, 0]}};
        assert_eq!(server_ids(&raw, "c", even).await, Ok(int_ids(&[2, 3])));
        // MongoDB refuses three elements and a non-numeric remainder
        // ("malformed mod, too many elements" / "remainder not a number");
        // SecantusDB runs them. The adapter refuses them before sending.
        for bad in [
            doc! {"a": {"$mod": [2, 1, 0]}},
            doc! {"a": {"$mod": [2, "1"]}},
        ] {
            assert!(server_ids(&raw, "c", bad.clone()).await.is_ok(), "{bad}");
            let err = db
                .store
                .find("c", bad.clone(), FindOptions::default())
                .await
                .unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidInput, "{bad}: {err}");
            assert!(err.to_string().contains("$mod"), "{err}");
        }
    })
    .await;
}

#[tokio::test]
async fn secantusdb_differs_from_mongodb_on_computed_fields_at_dotted_paths() {
    with_fresh_database(|db, config| async move {
        let raw = db.raw(&config).await;
        db.store
            .insert_one(
                "c",
                doc! {"_id": 3, "a": {"b": 98, "c": 99}, "arr": [{"k": 1, "z": 1}, {"k": 2}]},
            )
            .await
            .unwrap();
        // MongoDB keeps the parent of a removed dotted field:
        // `{"a.b": "$$REMOVE"}` projects `{a: {}}` (jstests
        // `remove_system_variable.js`). SecantusDB drops `a`.
        let project = vec![doc! {"$project": {"_id": 0, "a.b": "$$REMOVE"}}];
        assert_eq!(
            server_aggregate(&raw, "c", project).await,
            Ok(vec![doc! {}])
        );
        // Any path below `$$REMOVE` is missing in MongoDB (same test); in
        // SecantusDB it is null.
        let below = vec![
            doc! {"$set": {"x": "$$REMOVE.a"}},
            doc! {"$project": {"x": 1}},
        ];
        assert_eq!(
            server_aggregate(&raw, "c", below).await,
            Ok(vec![doc! {"_id": 3, "x": null}])
        );
        // A dotted `$set` through an array sets the field in each element
        // in MongoDB (manual, "$addFields": "To add a field or fields to
        // embedded documents (including documents in arrays) use the dot
        // notation"); SecantusDB leaves the array alone.
        let through = vec![doc! {"$set": {"arr.z": 7}}, doc! {"$project": {"arr": 1}}];
        assert_eq!(
            server_aggregate(&raw, "c", through).await,
            Ok(vec![doc! {"_id": 3, "arr": [{"k": 1, "z": 1}, {"k": 2}]}])
        );
    })
    .await;
}

#[tokio::test]
async fn secantusdb_differs_from_mongodb_on_date_to_string_arguments() {
    with_fresh_database(|db, config| async move {
        let raw = db.raw(&config).await;
        // 2021-01-03T04:05:06.789Z
        let date = DateTime::from_millis(1_609_646_706_789);
        db.store
            .insert_one("c", doc! {"_id": 1, "d": date, "n": null})
            .await
            .unwrap();
        let render =
            |spec: Document| vec![doc! {"$project": {"_id": 0, "x": {"$dateToString": spec}}}];
        // MongoDB: `onNull` is what a null or missing date gives (manual,
        // "$dateToString"); SecantusDB ignores it and gives null.
        let on_null = render(doc! {"date": "$missing", "onNull": "none"});
        assert_eq!(
            server_aggregate(&raw, "c", on_null).await,
            Ok(vec![doc! {"x": null}])
        );
        // MongoDB: `format` is an expression (null when it is null);
        // SecantusDB takes the text as is.
        let format = render(doc! {"date": "$d", "format": "$n"});
        assert_eq!(
            server_aggregate(&raw, "c", format).await,
            Ok(vec![doc! {"x": "$n"}])
        );
        // MongoDB accepts the offsets ±HH, ±HHMM and ±HH:MM
        // (`TimeZoneDatabase::parseUtcOffset`); SecantusDB refuses ±HH with
        // 40485, "unrecognized time zone identifier".
        let hours = render(doc! {"date": "$d", "timezone": "+03", "format": "%H"});
        assert_eq!(server_aggregate(&raw, "c", hours).await, Err(40485));
        // MongoDB 7.1+ drops the `Z` of the default format in a zone other
        // than UTC (manual, "$dateToString", `format`; DRIVERS-2620);
        // SecantusDB keeps it, as MongoDB 7.0 did.
        let default = render(doc! {"date": "$d", "timezone": "+05:30"});
        assert_eq!(
            server_aggregate(&raw, "c", default).await,
            Ok(vec![doc! {"x": "2021-01-03T09:35:06.789Z"}])
        );
    })
    .await;
}

#[tokio::test]
async fn secantusdb_differs_from_mongodb_on_expression_paths_and_in() {
    with_fresh_database(|db, config| async move {
        let raw = db.raw(&config).await;
        db.store
            .insert_one(
                "c",
                doc! {"_id": 1, "info": [{"label": "A"}, {"label": "B"}]},
            )
            .await
            .unwrap();
        // MongoDB: a field path through an array of documents is the array
        // of the values found, `["A", "B"]` (manual, "Expressions", "Field
        // Paths"); SecantusDB finds nothing. And `$in` compares missing with
        // null as unequal, as `$eq` does; SecantusDB says `true`.
        let pipeline = vec![doc! {"$project": {"_id": 0, "x": "$info.label",
        "y": {"$in": ["$missing", [null]]}}}];
        assert_eq!(
            server_aggregate(&raw, "c", pipeline).await,
            Ok(vec![doc! {"y": true}])
        );
    })
    .await;
}

#[tokio::test]
async fn secantusdb_differs_from_mongodb_on_facet() {
    with_fresh_database(|db, config| async move {
        let raw = db.raw(&config).await;
        db.store.insert_one("c", doc! {"_id": 1}).await.unwrap();
        // `$count` inside `$facet` over no input: SecantusDB emits `{n: 0}`
        // as it does outside (`secantusdb_differs_from_mongodb_on_count_of_
        // no_documents`); MongoDB emits nothing. The adapter rewrites
        // `$count` inside `$facet` too.
        let count = vec![
            doc! {"$match": {"_id": 99}},
            doc! {"$facet": {"n": [{"$count": "n"}]}},
        ];
        assert_eq!(
            server_aggregate(&raw, "c", count.clone()).await,
            Ok(vec![doc! {"n": [{"n": 0}]}])
        );
        assert_eq!(
            db.store.aggregate("c", count).await.unwrap(),
            vec![doc! {"n": []}]
        );
        // MongoDB refuses an empty sub-pipeline ("sub-pipeline in $facet
        // stage cannot be empty") and an output name with a `.` or a leading
        // `$` (`FieldPath::uassertValidFieldName`); SecantusDB runs them. The
        // adapter refuses them before sending.
        for bad in [
            doc! {"$facet": {"a": []}},
            doc! {"$facet": {"a.b": [{"$limit": 1}]}},
            doc! {"$facet": {"$a": [{"$limit": 1}]}},
        ] {
            assert!(
                server_aggregate(&raw, "c", vec![bad.clone()]).await.is_ok(),
                "{bad}"
            );
            let err = db
                .store
                .aggregate("c", vec![bad.clone()])
                .await
                .unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidInput, "{bad}: {err}");
        }
    })
    .await;
}
