//! The MongoDB adapter of [`DocumentStore`], through the official `mongodb`
//! driver.
//!
//! [`MongoDocumentStore`] is one database on a MongoDB deployment. Filters,
//! updates, sorts, projections, pipelines and validators are first checked
//! with strata's [query layer](crate::engines::document::query), then sent to
//! MongoDB unchanged: MongoDB evaluates them, strata only makes sure they stay
//! inside the subset the embedded engine also keeps.
//!
//! # Contracts
//!
//! - Parity before power: an operator MongoDB would run but strata's subset
//!   lacks (`$where`, `$setOnInsert`, `$graphLookup`, a text index) fails with
//!   `Unsupported` naming it, before any request is sent, exactly as on the
//!   embedded engine.
//! - [`MongoDocumentStore::connect`] pings the server, so bad credentials fail
//!   at once with `AuthenticationFailed` and an unreachable server with
//!   `Unavailable`; it never waits longer than `connect_timeout +
//!   server_selection_timeout` (then `Timeout`).
//! - The password is applied to the driver's credential, never written into
//!   a URL string, and is redacted from [`target`](DocumentStore::target),
//!   `Debug` and every error message.
//! - `insert_many` adds ObjectId `_id`s client-side (first field) so the
//!   returned ids are known; it is ordered, as the trait requires.
//! - Where the server would accept something strata's contract refuses, the
//!   adapter enforces the contract client-side: an index whose keys exist
//!   under another name or definition is a `Conflict`; `_id_` cannot be
//!   dropped (`InvalidInput`); dropping an absent index or collection
//!   succeeds.
//! - Documents go to the server as given, with two rewrites into forms
//!   that mean the same in MongoDB and that every server answers as MongoDB
//!   does: a field condition with two range operators becomes an `$and` of
//!   one condition each (SecantusDB intersects such bounds on multikey
//!   indexes), and `$count` becomes its documented `$group` + `$project`
//!   (so that no input yields no document), inside `$facet` too. See
//!   `conversions`.
//! - A document that fails the collection's validator is `InvalidInput`
//!   naming the failing field, read from the server's `errInfo`
//!   (`details.schemaRulesNotSatisfied`, MongoDB 5.0+). When the server sends
//!   no details, the adapter fetches the collection's validator
//!   (`listCollections`) and runs strata's own [`Validator`] on the document
//!   that failed (for an update: the stored document with the update applied
//!   client-side) to name the field. Only failures pay for this.
//!
//! # Layout
//!
//! - `errors`: driver and server errors to strata's kinds.
//! - `conversions`: options, index models, results and client-side checks.

mod conversions;
mod errors;

use std::fmt;
use std::time::Duration;

use ::mongodb::options::{ClientOptions, Credential};
use ::mongodb::{Client, Collection, Database};
use async_trait::async_trait;
use bson::{Bson, Document, doc};
use futures::TryStreamExt;

use crate::config::{MongoConfig, redact_url};
use crate::engines::document::query::aggregate::Pipeline;
use crate::engines::document::query::filter::Filter;
use crate::engines::document::query::schema::Validator;
use crate::engines::document::query::update::Update;
use crate::engines::document::{
    CollectionOptions, DocumentStore, FindOptions, IndexSpec, UpdateOptions, UpdateResult,
};
use crate::error::{Error, ErrorKind, Result};

use conversions::ID_INDEX;

/// A [`DocumentStore`] on one MongoDB database. Cheap to clone: clones share
/// the driver's connection pool.
#[derive(Clone)]
pub struct MongoDocumentStore {
    client: Client,
    db: Database,
    /// The configured URL with any password redacted.
    redacted_url: String,
    /// The password, kept only to scrub it from error messages.
    secret: Option<String>,
}

impl fmt::Debug for MongoDocumentStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MongoDocumentStore")
            .field("url", &self.redacted_url)
            .field("database", &self.db.name())
            .field("password", &self.secret.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// The document that failed a validator, for naming the failing field when
/// the server did not.
enum Candidate<'a> {
    /// The documents of an `insert_many`, as sent.
    Inserted(&'a [Document]),
    /// A replacement (without `_id` when the caller gave none).
    Replacement(&'a Document),
    /// An update of the documents matching a filter.
    Updated {
        filter: &'a Document,
        update: &'a Update,
    },
}

impl MongoDocumentStore {
    /// Connects to `config.url`, applies `config.password` and the pool and
    /// timeout settings, and pings the database.
    ///
    /// Fails with `AuthenticationFailed` when the server refuses the
    /// credentials, `Unavailable` when no server answers within
    /// `server_selection_timeout`, and `Config` for a malformed URL or an
    /// empty database name.
    pub async fn connect(config: &MongoConfig) -> Result<Self> {
        let redacted_url = redact_url(&config.url);
        let target = format!("{redacted_url} (database {})", config.database);
        let op = |e: Error| e.with_operation("connect").with_target(target.clone());
        if config.database.is_empty() {
            return Err(op(Error::new(
                ErrorKind::Config,
                "documents.database must name a database",
            )));
        }
        // The driver bounds each step by these settings; the outer bound also
        // covers the DNS lookups of a mongodb+srv URL.
        let budget = config
            .connect_timeout
            .saturating_add(config.server_selection_timeout)
            .saturating_add(Duration::from_secs(1));
        match tokio::time::timeout(budget, Self::open(config, redacted_url.clone())).await {
            Ok(result) => result.map_err(op),
            Err(_) => Err(op(Error::new(
                ErrorKind::Timeout,
                format!("MongoDB did not answer within {budget:?}"),
            ))),
        }
    }

    async fn open(config: &MongoConfig, redacted_url: String) -> Result<Self> {
        let url_secret = url::Url::parse(&config.url)
            .ok()
            .and_then(|u| u.password().map(str::to_owned));
        let mut options = ClientOptions::parse(&config.url).await.map_err(|e| {
            let cause = errors::from_driver(&e, url_secret.as_deref());
            Error::new(
                ErrorKind::Config,
                format!(
                    "documents.url `{redacted_url}` is not usable: {}",
                    cause.message()
                ),
            )
        })?;
        if let Some(password) = &config.password {
            // On the credential rather than in the URL: seed lists of
            // several hosts (`h1:27017,h2:27017`) are not URLs `url` parses,
            // and the secret never lands in a string that could be logged.
            let credential = options.credential.get_or_insert_with(Credential::default);
            if credential.username.is_none() {
                return Err(Error::new(
                    ErrorKind::Config,
                    format!(
                        "documents.password is set but documents.url `{redacted_url}` names no user"
                    ),
                ));
            }
            credential.password = Some(password.expose().to_owned());
        }
        let secret = options
            .credential
            .as_ref()
            .and_then(|c| c.password.clone())
            .or(url_secret);
        options.max_pool_size = Some(config.max_pool_size);
        options.min_pool_size = Some(config.min_pool_size);
        options.connect_timeout = Some(config.connect_timeout);
        options.server_selection_timeout = Some(config.server_selection_timeout);
        options.app_name.get_or_insert_with(|| "strata".to_owned());
        let client = Client::with_options(options)
            .map_err(|e| errors::from_driver(&e, secret.as_deref()))?;
        let store = MongoDocumentStore {
            db: client.database(&config.database),
            client,
            redacted_url,
            secret,
        };
        store.ping().await?;
        Ok(store)
    }

    /// Another database on the same client and connection pool (tests use
    /// one fresh database each).
    pub fn with_database(&self, name: &str) -> Self {
        MongoDocumentStore {
            client: self.client.clone(),
            db: self.client.database(name),
            redacted_url: self.redacted_url.clone(),
            secret: self.secret.clone(),
        }
    }

    /// The database's name.
    pub fn database_name(&self) -> &str {
        self.db.name()
    }

    fn coll(&self, name: &str) -> Collection<Document> {
        self.db.collection(name)
    }

    fn target_of(&self, collection: &str) -> String {
        format!(
            "{} (collection {}.{collection})",
            self.redacted_url,
            self.db.name()
        )
    }

    fn map(&self, e: &::mongodb::error::Error) -> Error {
        errors::from_driver(e, self.secret.as_deref())
    }

    /// Maps a failed write, naming the field a validation failure is about
    /// when the server did not.
    async fn write_error(
        &self,
        e: &::mongodb::error::Error,
        collection: &str,
        candidate: Candidate<'_>,
    ) -> Error {
        let mapped = self.map(e);
        let Some(failure) = errors::server_failure(e) else {
            return mapped;
        };
        if failure.code != 121 || mapped.field().is_some() {
            return mapped;
        }
        match self
            .validator_failure(collection, &failure, candidate)
            .await
        {
            Some(found) => found,
            None => mapped,
        }
    }

    /// strata's own validator run on the document that failed, for servers
    /// that send no validation details. `None` when it cannot tell.
    async fn validator_failure(
        &self,
        collection: &str,
        failure: &errors::ServerFailure,
        candidate: Candidate<'_>,
    ) -> Option<Error> {
        let mut specs = self
            .db
            .list_collections()
            .filter(doc! {"name": collection})
            .await
            .ok()?;
        let spec = specs.try_next().await.ok()??;
        let validator = Validator::parse(spec.options.validator.as_ref()?).ok()?;
        let document = match candidate {
            Candidate::Inserted(docs) => docs.get(failure.index.unwrap_or(0))?.clone(),
            Candidate::Replacement(doc) => doc.clone(),
            Candidate::Updated { filter, update } => {
                let by_id = failure
                    .details
                    .as_ref()
                    .and_then(|d| d.get("failingDocumentId"))
                    .map(|id| doc! {"_id": id.clone()});
                let query = by_id.unwrap_or_else(|| filter.clone());
                let mut stored = self.coll(collection).find_one(query).await.ok()??;
                update.apply(&mut stored).ok()?;
                stored
            }
        };
        validator.validate(&document).err()
    }

    /// The validator a collection has, if any.
    async fn existing_validator(&self, collection: &str) -> Result<Option<Document>> {
        let mut specs = self
            .db
            .list_collections()
            .filter(doc! {"name": collection})
            .await
            .map_err(|e| self.map(&e))?;
        let spec = specs.try_next().await.map_err(|e| self.map(&e))?;
        Ok(spec.and_then(|s| s.options.validator))
    }
}

fn is_code(e: &::mongodb::error::Error, codes: &[i32]) -> bool {
    errors::server_failure(e).is_some_and(|f| codes.contains(&f.code))
}

#[async_trait]
impl DocumentStore for MongoDocumentStore {
    fn kind(&self) -> &'static str {
        "mongodb"
    }

    fn target(&self) -> String {
        format!("{} (database {})", self.redacted_url, self.db.name())
    }

    async fn ping(&self) -> Result<()> {
        self.db
            .run_command(doc! {"ping": 1})
            .await
            .map(|_| ())
            .map_err(|e| {
                self.map(&e)
                    .with_operation("ping")
                    .with_target(self.target())
            })
    }

    async fn create_collection(&self, collection: &str, options: CollectionOptions) -> Result<()> {
        let op = |e: Error| {
            e.with_operation("create_collection")
                .with_target(self.target_of(collection))
        };
        if let Some(v) = &options.validator {
            Validator::parse(v).map_err(op)?;
        }
        let mut create = self.db.create_collection(collection);
        if let Some(v) = &options.validator {
            create = create.validator(v.clone());
        }
        match create.await {
            Ok(()) => Ok(()),
            // NamespaceExists: MongoDB's `create` then `collMod`. Without a
            // validator there is nothing to set (as on the embedded engine).
            Err(e) if is_code(&e, &[48]) => match options.validator {
                None => Ok(()),
                Some(v) => {
                    if self.existing_validator(collection).await.map_err(op)? == Some(v.clone()) {
                        return Ok(());
                    }
                    self.db
                        .run_command(doc! {"collMod": collection, "validator": v})
                        .await
                        .map(|_| ())
                        .map_err(|e| op(self.map(&e)))
                }
            },
            Err(e) => Err(op(self.map(&e))),
        }
    }

    async fn list_collections(&self) -> Result<Vec<String>> {
        let mut names = self.db.list_collection_names().await.map_err(|e| {
            self.map(&e)
                .with_operation("list_collections")
                .with_target(self.target())
        })?;
        // strata never creates `system.*` collections (the embedded engine
        // refuses the names); MongoDB may keep some of its own there.
        names.retain(|n| !n.starts_with("system."));
        names.sort();
        Ok(names)
    }

    async fn drop_collection(&self, collection: &str) -> Result<()> {
        match self.coll(collection).drop().await {
            Ok(()) => Ok(()),
            // NamespaceNotFound: absent is fine.
            Err(e) if is_code(&e, &[26]) => Ok(()),
            Err(e) => Err(self
                .map(&e)
                .with_operation("drop_collection")
                .with_target(self.target_of(collection))),
        }
    }

    async fn drop_database(&self) -> Result<()> {
        self.db.drop().await.map_err(|e| {
            self.map(&e)
                .with_operation("drop_database")
                .with_target(self.target())
        })
    }

    async fn insert_many(&self, collection: &str, documents: Vec<Document>) -> Result<Vec<Bson>> {
        if documents.is_empty() {
            return Ok(Vec::new());
        }
        let docs: Vec<Document> = documents
            .into_iter()
            .map(conversions::with_id_first)
            .collect();
        let ids: Vec<Bson> = docs
            .iter()
            .map(|d| d.get("_id").cloned().unwrap_or(Bson::Null))
            .collect();
        match self.coll(collection).insert_many(&docs).ordered(true).await {
            Ok(_) => Ok(ids),
            Err(e) => Err(self
                .write_error(&e, collection, Candidate::Inserted(&docs))
                .await
                .with_operation("insert_many")
                .with_target(self.target_of(collection))),
        }
    }

    async fn find(
        &self,
        collection: &str,
        filter: Document,
        options: FindOptions,
    ) -> Result<Vec<Document>> {
        let op = |e: Error| {
            e.with_operation("find")
                .with_target(self.target_of(collection))
        };
        Filter::parse(&filter).map_err(op)?;
        conversions::check_find(&options).map_err(op)?;
        let cursor = self
            .coll(collection)
            .find(conversions::filter_to_send(filter))
            .with_options(conversions::find_options(options))
            .await
            .map_err(|e| op(self.map(&e)))?;
        cursor.try_collect().await.map_err(|e| op(self.map(&e)))
    }

    async fn count(&self, collection: &str, filter: Document) -> Result<u64> {
        let op = |e: Error| {
            e.with_operation("count")
                .with_target(self.target_of(collection))
        };
        Filter::parse(&filter).map_err(op)?;
        self.coll(collection)
            .count_documents(conversions::filter_to_send(filter))
            .await
            .map_err(|e| op(self.map(&e)))
    }

    async fn update(
        &self,
        collection: &str,
        filter: Document,
        update: Document,
        options: UpdateOptions,
    ) -> Result<UpdateResult> {
        let name = if options.multi {
            "update_many"
        } else {
            "update_one"
        };
        let op = |e: Error| {
            e.with_operation(name)
                .with_target(self.target_of(collection))
        };
        Filter::parse(&filter).map_err(op)?;
        let parsed = Update::parse(&update).map_err(op)?;
        let coll = self.coll(collection);
        let sent = conversions::filter_to_send(filter.clone());
        let action = if options.multi {
            coll.update_many(sent, update)
        } else {
            coll.update_one(sent, update)
        };
        match action.upsert(options.upsert).await {
            Ok(r) => Ok(conversions::update_result(r)),
            Err(e) => {
                let candidate = Candidate::Updated {
                    filter: &filter,
                    update: &parsed,
                };
                Err(op(self.write_error(&e, collection, candidate).await))
            }
        }
    }

    async fn replace_one(
        &self,
        collection: &str,
        filter: Document,
        replacement: Document,
        upsert: bool,
    ) -> Result<UpdateResult> {
        let op = |e: Error| {
            e.with_operation("replace_one")
                .with_target(self.target_of(collection))
        };
        Filter::parse(&filter).map_err(op)?;
        conversions::check_replacement(&replacement).map_err(op)?;
        match self
            .coll(collection)
            .replace_one(conversions::filter_to_send(filter), &replacement)
            .upsert(upsert)
            .await
        {
            Ok(r) => Ok(conversions::update_result(r)),
            Err(e) => {
                let candidate = Candidate::Replacement(&replacement);
                Err(op(self.write_error(&e, collection, candidate).await))
            }
        }
    }

    async fn delete(&self, collection: &str, filter: Document, multi: bool) -> Result<u64> {
        let name = if multi { "delete_many" } else { "delete_one" };
        let op = |e: Error| {
            e.with_operation(name)
                .with_target(self.target_of(collection))
        };
        Filter::parse(&filter).map_err(op)?;
        let coll = self.coll(collection);
        let sent = conversions::filter_to_send(filter);
        let action = if multi {
            coll.delete_many(sent)
        } else {
            coll.delete_one(sent)
        };
        action
            .await
            .map(|r| r.deleted_count)
            .map_err(|e| op(self.map(&e)))
    }

    async fn aggregate(&self, collection: &str, pipeline: Vec<Document>) -> Result<Vec<Document>> {
        let op = |e: Error| {
            e.with_operation("aggregate")
                .with_target(self.target_of(collection))
        };
        Pipeline::parse(&pipeline).map_err(op)?;
        let cursor = self
            .coll(collection)
            .aggregate(conversions::pipeline_to_send(pipeline))
            .await
            .map_err(|e| op(self.map(&e)))?;
        cursor.try_collect().await.map_err(|e| op(self.map(&e)))
    }

    async fn create_index(&self, collection: &str, index: IndexSpec) -> Result<String> {
        let op = |e: Error| {
            e.with_operation("create_index")
                .with_target(self.target_of(collection))
        };
        conversions::check_index_keys(&index.keys).map_err(op)?;
        // MongoDB refuses these too, but with codes that also mean other
        // things; checked here so both stores give the same kind.
        index.check_ttl().map_err(op)?;
        let name = index.effective_name();
        let id_keys = conversions::same_keys(&index.keys, &doc! {"_id": 1});
        if id_keys {
            // The `_id` index always exists, is unique by nature and takes
            // no `unique` option (MongoDB refuses one).
            if index.unique {
                return Err(op(Error::invalid(
                    "the field 'unique' is not valid for an _id index specification",
                )));
            }
            if index.name.is_none() || name == ID_INDEX {
                return Ok(ID_INDEX.to_owned());
            }
        }
        // The contract's conflicts, checked here because servers differ on
        // the same keys under another name or another `unique`.
        for existing in self.list_indexes(collection).await.map_err(op)? {
            let existing_name = existing.effective_name();
            let same_keys = conversions::same_keys(&existing.keys, &index.keys);
            if existing_name == name
                && same_keys
                && existing.unique == index.unique
                && existing.expire_after == index.expire_after
            {
                return Ok(name);
            }
            if existing_name == name {
                return Err(op(Error::conflict(format!(
                    "an index named {name} already exists on collection {collection} with a different definition"
                ))));
            }
            if same_keys {
                return Err(op(Error::conflict(format!(
                    "an index with keys {} already exists on collection {collection} as {existing_name}",
                    index.keys
                ))));
            }
        }
        self.coll(collection)
            .create_index(conversions::index_model(&index))
            .await
            .map(|r| r.index_name)
            .map_err(|e| op(self.map(&e)))
    }

    async fn list_indexes(&self, collection: &str) -> Result<Vec<IndexSpec>> {
        let op = |e: Error| {
            e.with_operation("list_indexes")
                .with_target(self.target_of(collection))
        };
        let cursor = match self.coll(collection).list_indexes().await {
            Ok(cursor) => cursor,
            // NamespaceNotFound: a collection that does not exist has none.
            Err(e) if is_code(&e, &[26]) => return Ok(Vec::new()),
            Err(e) => return Err(op(self.map(&e))),
        };
        let models: Vec<::mongodb::IndexModel> =
            cursor.try_collect().await.map_err(|e| op(self.map(&e)))?;
        let mut specs: Vec<IndexSpec> = models.into_iter().map(conversions::index_spec).collect();
        // `_id_` first, the rest in the server's (creation) order.
        specs.sort_by_key(|s| s.name.as_deref() != Some(ID_INDEX));
        Ok(specs)
    }

    async fn drop_index(&self, collection: &str, name: &str) -> Result<()> {
        if name == ID_INDEX {
            return Err(Error::invalid("the _id_ index cannot be dropped")
                .with_operation("drop_index")
                .with_target(self.target_of(collection)));
        }
        match self.coll(collection).drop_index(name).await {
            Ok(()) => Ok(()),
            // NamespaceNotFound, IndexNotFound: absent is fine.
            Err(e) if is_code(&e, &[26, 27]) => Ok(()),
            Err(e) => Err(self
                .map(&e)
                .with_operation("drop_index")
                .with_target(self.target_of(collection))),
        }
    }
}
