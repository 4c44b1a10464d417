//! Durable sagas: operations that span engines and always finish.
//!
//! Registering a model writes a SQL row, a config document and a KV
//! counter; no transaction covers all three. Each such operation is a saga,
//! recorded in the relational engine's `sagas` table **before** its first
//! step, with its request, its steps done and undone, and its state. It is
//! driven by a task of its own, not by the request that started it: a
//! request cut off by its timeout, or a client that hangs up, leaves the
//! saga running to its end. A process killed mid-saga leaves its row open;
//! any strata process sharing the relational engine finishes or
//! compensates it once the row's lease runs out ([`Sagas::recover`], run at
//! start-up and periodically by [`Sagas::spawn_sweeper`]).
//!
//! # What MUST hold
//!
//! - Every step and every compensation is idempotent and exact: doing it
//!   twice is doing it once, and undoing touches only what this saga
//!   wrote (the config document by the `_id` the saga chose before writing
//!   it, the counter field named by the saga's id, the run row by the id
//!   recorded with it). So a step that may or may not have happened before
//!   a crash is simply done, or undone, again.
//! - A step on the relational engine records itself done in the same SQL
//!   transaction as its write: it happened exactly when its record says so.
//! - Steps run in order, one at a time, so only the first step not recorded
//!   done can be half applied; compensation undoes it and every step before
//!   it, in reverse.
//! - At most one open saga touches a subject (a `model_id`): its row holds
//!   the subject in a unique column while open. A second operation on the
//!   same subject meanwhile is a conflict naming the open saga, except an
//!   identical retry of the same request, which is answered with the open
//!   saga (or, once completed, its result).
//! - A driver (one task of one process) drives a saga only while it holds
//!   the row's lease. Each drive, the first and every take-over, writes an
//!   `owner` of its own (the process and a token of the drive), and every
//!   write of the row is guarded by it: a driver that lost its lease (it
//!   stalled longer than `sagas.lease`) stops at its next step, even when
//!   the take-over was by its own process's sweep.
//!   Steps are bounded well below the lease by the engines' timeouts and
//!   the step retry policy.
//! - States: `running` → `completed`, or `running` → `compensating` →
//!   `compensated`. A compensation that fails stays `compensating` and is
//!   retried until done; it is never forgotten. A saga kind that cannot be
//!   undone (removing a model) only rolls forward, retrying until done.
//!
//! # Layout
//!
//! - this module: [`Sagas`] (start, wait, look up, recover), the record of
//!   a saga and its executor.
//! - [`register`]: registering a model (run row, config document,
//!   registration counter).
//! - [`unregister`]: removing a model from every engine.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, Set,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::time::Instant;
use tokio_util::task::TaskTracker;

use crate::config::SagasConfig;
use crate::engines::document::DocumentStore;
use crate::engines::kv::KvStore;
use crate::engines::layers::Layers;
use crate::error::{Error, ErrorKind, Result};
use crate::failpoint;
use crate::platform::entities::saga;
use crate::platform::now;
use crate::platform::registry::db_err;
use crate::platform::rows::RowCaches;
use crate::retry::RetryPolicy;

pub mod register;
pub mod unregister;

pub use register::{RegisterRun, Registered};

/// Where a saga is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SagaState {
    /// Its steps are being done.
    Running,
    /// A step failed; the steps done are being undone.
    Compensating,
    /// Every step is done.
    Completed,
    /// Every step done was undone: nothing of it is left in any engine.
    Compensated,
}

impl SagaState {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            SagaState::Running => "running",
            SagaState::Compensating => "compensating",
            SagaState::Completed => "completed",
            SagaState::Compensated => "compensated",
        }
    }

    /// Whether the saga has ended.
    pub fn is_final(self) -> bool {
        matches!(self, SagaState::Completed | SagaState::Compensated)
    }

    fn parse(s: &str) -> Result<SagaState> {
        [
            SagaState::Running,
            SagaState::Compensating,
            SagaState::Completed,
            SagaState::Compensated,
        ]
        .into_iter()
        .find(|state| state.as_str() == s)
        .ok_or_else(|| Error::internal(format!("a saga in the unknown state `{s}`")))
    }
}

impl fmt::Display for SagaState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What became of one step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StepState {
    /// Done.
    Done,
    /// Done, then undone.
    Compensated,
}

/// One step of a saga's record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    /// The step's name (`sql_run`, `config_document`, ...).
    pub step: String,
    /// Done or undone.
    pub state: StepState,
    /// What the step produced (a row id, a count), for the steps after it
    /// and for its compensation.
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub output: serde_json::Value,
    /// When it was last done or undone (UTC).
    pub at: DateTime<Utc>,
}

/// A saga as its record shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Saga {
    /// Its id.
    pub id: String,
    /// What it does: `register_run`, `unregister_run`.
    pub kind: String,
    /// What it is about: the `model_id`.
    pub subject: String,
    /// Where it is.
    pub state: SagaState,
    /// Its steps done and undone, in the order they happened.
    pub steps: Vec<StepRecord>,
    /// What it produced, once completed.
    pub result: Option<serde_json::Value>,
    /// The error that ended it, or the last one it met while open.
    pub error: Option<String>,
    /// How many times another driver took it over.
    pub attempts: i32,
    /// When it began (UTC).
    pub created_at: DateTime<Utc>,
    /// When it last changed (UTC).
    pub updated_at: DateTime<Utc>,
}

impl Saga {
    fn from_row(row: &saga::Model) -> Result<Saga> {
        let steps = serde_json::from_str(&row.steps).map_err(|e| {
            Error::internal(format!("saga {}: unreadable steps: {e}", row.id))
                .with_operation("saga")
        })?;
        let result = row
            .result
            .as_deref()
            .map(serde_json::from_str)
            .transpose()
            .map_err(|e| {
                Error::internal(format!("saga {}: unreadable result: {e}", row.id))
                    .with_operation("saga")
            })?;
        Ok(Saga {
            id: row.id.clone(),
            kind: row.kind.clone(),
            subject: row.subject.clone(),
            state: SagaState::parse(&row.state)?,
            steps,
            result,
            error: row.error.clone(),
            attempts: row.attempts,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

/// The answer of an operation run as a saga: its result once it has ended
/// within the wait allowed, or the saga still under way.
#[derive(Debug, Clone, PartialEq)]
pub enum SagaOutcome<T> {
    /// Completed, with its result.
    Done(T),
    /// Still running or compensating, driven in the background; look it
    /// up by its id.
    Pending(Box<Saga>),
}

/// A point where a fault can be injected: before a step is done or undone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FaultPoint {
    /// The saga's kind.
    pub kind: &'static str,
    /// The step.
    pub step: &'static str,
    /// Whether the step is being done or undone.
    pub phase: Phase,
}

/// Doing or undoing a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Phase {
    /// Doing it.
    Apply,
    /// Undoing it.
    Compensate,
}

impl Phase {
    fn as_str(self) -> &'static str {
        match self {
            Phase::Apply => "apply",
            Phase::Compensate => "compensate",
        }
    }
}

/// Called before every step and compensation; an `Err` makes it fail as
/// the engine would. Tests and the demo inject failures with it.
pub type Faults = Arc<dyn Fn(FaultPoint) -> Result<()> + Send + Sync>;

/// The operations that span engines, run as durable sagas. Cheap to clone.
#[derive(Clone)]
pub struct Sagas {
    inner: Arc<Inner>,
}

#[derive(Clone)]
struct Inner {
    db: DatabaseConnection,
    /// The relational engine's breaker: a saga does not begin while it is
    /// open.
    relational: Arc<Layers>,
    docs: Arc<dyn DocumentStore>,
    kv: Arc<dyn KvStore>,
    settings: SagasConfig,
    /// This process; a drive writes it with a token of its own into
    /// `owner` ([`Sagas::driver`]).
    owner: String,
    faults: Option<Faults>,
    tasks: TaskTracker,
    /// What a saga's end invalidates.
    rows: RowCaches,
    /// Told when a completion committed an event.
    outbox: crate::platform::outbox::Outbox,
}

impl fmt::Debug for Sagas {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sagas")
            .field("owner", &self.inner.owner)
            .field("settings", &self.inner.settings)
            .field("faults", &self.inner.faults.is_some())
            .finish()
    }
}

/// The kinds of saga, each with its steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Register,
    Unregister,
}

impl Kind {
    fn parse(s: &str) -> Result<Kind> {
        match s {
            register::KIND => Ok(Kind::Register),
            unregister::KIND => Ok(Kind::Unregister),
            other => Err(Error::internal(format!(
                "a saga of the unknown kind `{other}`"
            ))),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Kind::Register => register::KIND,
            Kind::Unregister => unregister::KIND,
        }
    }

    fn steps(self) -> &'static [&'static str] {
        match self {
            Kind::Register => register::STEPS,
            Kind::Unregister => unregister::STEPS,
        }
    }

    /// Whether a failed saga of this kind is undone (else it only rolls
    /// forward, retrying until done).
    fn compensable(self) -> bool {
        match self {
            Kind::Register => true,
            Kind::Unregister => false,
        }
    }
}

impl Sagas {
    /// Sagas over these engines, driven by this process.
    pub(crate) fn new(
        db: DatabaseConnection,
        relational: Arc<Layers>,
        docs: Arc<dyn DocumentStore>,
        kv: Arc<dyn KvStore>,
        settings: SagasConfig,
        rows: RowCaches,
        outbox: crate::platform::outbox::Outbox,
    ) -> Sagas {
        let owner = format!("pid{}-{:08x}", std::process::id(), rand::random::<u32>());
        Sagas {
            inner: Arc::new(Inner {
                db,
                relational,
                docs,
                kv,
                settings,
                owner,
                faults: None,
                tasks: TaskTracker::new(),
                rows,
                outbox,
            }),
        }
    }

    /// The same sagas with `faults` called before every step and
    /// compensation (tests, and the demo's compensation section).
    pub fn with_faults(&self, faults: Faults) -> Sagas {
        self.derived(|inner| inner.faults = Some(faults))
    }

    /// The same sagas retrying failed steps by `policy` instead.
    pub fn with_retry(&self, policy: RetryPolicy) -> Sagas {
        self.derived(|inner| inner.settings.retry = policy)
    }

    fn derived(&self, change: impl FnOnce(&mut Inner)) -> Sagas {
        let mut inner = (*self.inner).clone();
        change(&mut inner);
        Sagas {
            inner: Arc::new(inner),
        }
    }

    /// The settings in force.
    pub fn settings(&self) -> SagasConfig {
        self.inner.settings
    }

    /// The saga `id`, or NotFound; an id that is not a saga id
    /// ([`SAGA_ID_PATTERN`]) is invalid input.
    pub async fn get(&self, id: &str) -> Result<Saga> {
        if !is_valid_saga_id(id) {
            return Err(Error::invalid(format!(
                "`id` must be a saga id matching {SAGA_ID_PATTERN}: `{}` is not one",
                id.escape_debug()
            ))
            .with_field("id"));
        }
        let row = saga::Entity::find_by_id(id.to_owned())
            .one(&self.inner.db)
            .await
            .map_err(db_err("saga"))?
            .ok_or_else(|| Error::not_found(format!("no saga `{id}`")).with_field("id"))?;
        Saga::from_row(&row)
    }

    /// Sagas, newest first: of one subject when given, open ones only when
    /// `open_only`, at most `limit`.
    pub async fn list(
        &self,
        subject: Option<&str>,
        open_only: bool,
        limit: u64,
    ) -> Result<Vec<Saga>> {
        if let Some(subject) = subject {
            crate::platform::names::check_model_id("subject", subject)?;
        }
        let mut query = saga::Entity::find();
        if let Some(subject) = subject {
            query = query.filter(saga::Column::Subject.eq(subject));
        }
        if open_only {
            query = query.filter(saga::Column::State.is_in(open_states()));
        }
        let rows = query
            .order_by_desc(saga::Column::CreatedAt)
            .order_by_desc(saga::Column::Id)
            .limit(limit)
            .all(&self.inner.db)
            .await
            .map_err(db_err("list_sagas"))?;
        rows.iter().map(Saga::from_row).collect()
    }

    /// How many sagas are in each state.
    pub async fn counts(&self) -> Result<BTreeMap<String, i64>> {
        let rows: Vec<(String, i64)> = saga::Entity::find()
            .select_only()
            .column(saga::Column::State)
            .expr_as(Expr::col(saga::Column::Id).count(), "n")
            .group_by(saga::Column::State)
            .into_tuple()
            .all(&self.inner.db)
            .await
            .map_err(db_err("count_sagas"))?;
        Ok(rows.into_iter().collect())
    }

    /// Waits until every saga this process is driving has stopped (at
    /// shutdown), at most `limit`. Returns whether all stopped; those that
    /// did not are recovered by the next process.
    pub async fn drain(&self, limit: Duration) -> bool {
        self.inner.tasks.close();
        let drained = tokio::time::timeout(limit, self.inner.tasks.wait())
            .await
            .is_ok();
        self.inner.tasks.reopen();
        drained
    }

    /// Finishes or compensates every open saga whose lease ran out, one
    /// after the other, and deletes ended sagas older than
    /// `sagas.retention`. Returns the ids of the open sagas it drove to an
    /// end.
    pub async fn recover(&self) -> Result<Vec<String>> {
        let horizon = now()
            - chrono::Duration::from_std(self.inner.settings.retention)
                .unwrap_or_else(|_| chrono::Duration::days(7));
        saga::Entity::delete_many()
            .filter(saga::Column::State.is_in([
                SagaState::Completed.as_str(),
                SagaState::Compensated.as_str(),
            ]))
            .filter(saga::Column::UpdatedAt.lt(horizon))
            .exec(&self.inner.db)
            .await
            .map_err(db_err("purge_sagas"))?;
        let expired = saga::Entity::find()
            .filter(saga::Column::State.is_in(open_states()))
            .filter(saga::Column::LeaseUntil.lte(now()))
            .order_by_asc(saga::Column::LeaseUntil)
            .limit(100)
            .all(&self.inner.db)
            .await
            .map_err(db_err("recover_sagas"))?;
        let mut ended = Vec::new();
        for row in expired {
            let Some(row) = self.claim(&row).await? else {
                continue;
            };
            let id = row.id.clone();
            match self.drive(row).await {
                Ok(_) => ended.push(id),
                Err(e) => match self.get(&id).await {
                    Ok(saga) if saga.state.is_final() => ended.push(id),
                    _ => tracing::warn!(saga = %id, "saga still open after recovery: {e}"),
                },
            }
        }
        Ok(ended)
    }

    /// Removes what a step's write left behind when it landed after its
    /// saga was undone (see [`register::remove_late_writes`]); returns
    /// how many such writes there were. Run by every sweep, for sagas
    /// undone within `sagas.late_write_window`.
    pub async fn remove_late_writes(&self) -> Result<u64> {
        register::remove_late_writes(self, self.inner.settings.late_write_window).await
    }

    /// Runs [`recover`](Self::recover), then
    /// [`remove_late_writes`](Self::remove_late_writes), every
    /// `sweep_interval` until the platform closes.
    pub fn spawn_sweeper(&self) -> tokio::task::JoinHandle<()> {
        let sagas = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(sagas.inner.settings.sweep_interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if let Err(e) = sagas.recover().await {
                    tracing::warn!("saga recovery sweep failed: {e}");
                }
                if let Err(e) = sagas.remove_late_writes().await {
                    tracing::warn!("the sweep for late writes failed: {e}");
                }
            }
        })
    }

    /// Takes over an expired saga: it becomes ours if its lease is still
    /// out when we write (another process may have been quicker).
    async fn claim(&self, row: &saga::Model) -> Result<Option<saga::Model>> {
        let kind = Kind::parse(&row.kind)?;
        let mut state = SagaState::parse(&row.state)?;
        let attempts = row.attempts.saturating_add(1);
        if state == SagaState::Running
            && kind.compensable()
            && u32::try_from(attempts).unwrap_or(u32::MAX) > self.inner.settings.max_takeovers
        {
            state = SagaState::Compensating;
        }
        let at = now();
        let claimed = saga::Entity::update_many()
            .col_expr(saga::Column::Owner, Expr::value(self.driver()))
            .col_expr(saga::Column::LeaseUntil, Expr::value(self.lease_from(at)))
            .col_expr(saga::Column::Attempts, Expr::value(attempts))
            .col_expr(saga::Column::State, Expr::value(state.as_str()))
            .col_expr(saga::Column::UpdatedAt, Expr::value(at))
            .filter(saga::Column::Id.eq(row.id.clone()))
            .filter(saga::Column::State.eq(row.state.clone()))
            .filter(saga::Column::LeaseUntil.lte(at))
            .exec(&self.inner.db)
            .await
            .map_err(db_err("claim_saga"))?;
        if claimed.rows_affected == 0 {
            return Ok(None);
        }
        tracing::info!(saga = %row.id, kind = %row.kind, subject = %row.subject, %state, "taking over an open saga");
        saga::Entity::find_by_id(row.id.clone())
            .one(&self.inner.db)
            .await
            .map_err(db_err("claim_saga"))
    }

    /// The `owner` of a new drive: this process and a token of the drive,
    /// so that two drives of one saga in one process (a request's stalled
    /// past its lease, and the sweep's that took it over) are told apart.
    fn driver(&self) -> String {
        format!("{}/{:016x}", self.inner.owner, rand::random::<u64>())
    }

    fn lease_from(&self, at: DateTime<Utc>) -> DateTime<Utc> {
        at + chrono::Duration::from_std(self.inner.settings.lease)
            .unwrap_or_else(|_| chrono::Duration::seconds(30))
    }

    /// Records a new saga (the subject's lock with it) and returns its row,
    /// or the open saga that holds the subject.
    async fn begin(
        &self,
        kind: Kind,
        subject: &str,
        request: &serde_json::Value,
        request_hash: &str,
    ) -> Result<Begun> {
        let at = now();
        let row = saga::ActiveModel {
            id: Set(new_saga_id()),
            kind: Set(kind.name().to_owned()),
            subject: Set(subject.to_owned()),
            active_subject: Set(Some(subject.to_owned())),
            request: Set(request.to_string()),
            request_hash: Set(request_hash.to_owned()),
            state: Set(SagaState::Running.as_str().to_owned()),
            steps: Set("[]".to_owned()),
            result: Set(None),
            error: Set(None),
            attempts: Set(0),
            owner: Set(Some(self.driver())),
            lease_until: Set(Some(self.lease_from(at))),
            created_at: Set(at),
            updated_at: Set(at),
        };
        match row.insert(&self.inner.db).await {
            Ok(row) => Ok(Begun::New(row)),
            Err(e) => {
                let error = crate::engines::relational::map_db_err(e);
                if error.kind() != ErrorKind::Conflict {
                    return Err(error.with_operation("begin_saga"));
                }
                match self.open_saga(subject).await? {
                    Some(open) => Ok(Begun::Open(open)),
                    // It ended between our insert and our look: try again
                    // once; a second collision is a real conflict.
                    None => Err(Error::conflict(format!(
                        "another operation on `{subject}` just ended; retry"
                    ))
                    .with_field("model_id")
                    .with_retry_after(Duration::from_millis(50))),
                }
            }
        }
    }

    /// The open saga holding `subject`, if any.
    async fn open_saga(&self, subject: &str) -> Result<Option<saga::Model>> {
        saga::Entity::find()
            .filter(saga::Column::ActiveSubject.eq(subject))
            .one(&self.inner.db)
            .await
            .map_err(db_err("saga"))
    }

    /// The newest completed saga of `kind` on `subject`.
    async fn last_completed(&self, kind: Kind, subject: &str) -> Result<Option<saga::Model>> {
        saga::Entity::find()
            .filter(saga::Column::Kind.eq(kind.name()))
            .filter(saga::Column::Subject.eq(subject))
            .filter(saga::Column::State.eq(SagaState::Completed.as_str()))
            .order_by_desc(saga::Column::CreatedAt)
            .one(&self.inner.db)
            .await
            .map_err(db_err("saga"))
    }

    /// Drives a new saga in a task of its own and waits for its end until
    /// `deadline` (forever when `None`); past it, answers with the saga
    /// still under way.
    async fn run_until(
        &self,
        row: saga::Model,
        deadline: Option<Instant>,
    ) -> Result<SagaOutcome<serde_json::Value>> {
        let id = row.id.clone();
        let sagas = self.clone();
        let task = self
            .inner
            .tasks
            .spawn(async move { sagas.drive(row).await });
        let joined = match deadline {
            Some(deadline) => match tokio::time::timeout_at(deadline, task).await {
                Ok(joined) => joined,
                Err(_) => return Ok(SagaOutcome::Pending(Box::new(self.get(&id).await?))),
            },
            None => task.await,
        };
        match joined {
            Ok(Ok(result)) => Ok(SagaOutcome::Done(result)),
            // Left open for a later attempt (a compensation that failed, a
            // removal still retrying): the saga is the answer, not the
            // error, since it will still end.
            Ok(Err(e)) => match self.get(&id).await {
                Ok(saga) if !saga.state.is_final() => Ok(SagaOutcome::Pending(Box::new(saga))),
                _ => Err(e),
            },
            Err(e) => {
                // The task panicked: its row stays open and its lease runs
                // out, then recovery takes it over.
                tracing::error!(saga = %id, "saga task failed: {e}");
                Ok(SagaOutcome::Pending(Box::new(self.get(&id).await?)))
            }
        }
    }

    /// Drives a saga we own until it ends or cannot go on for now.
    /// Returns its result when completed, the error that ended it when
    /// compensated, or an `Unavailable` error when it stays open for a
    /// later attempt.
    async fn drive(&self, row: saga::Model) -> Result<serde_json::Value> {
        let kind = Kind::parse(&row.kind)?;
        let mut run = Progress::new(self, &row)?;
        loop {
            match run.state {
                SagaState::Completed => {
                    // The model appeared or went: drop what the caches
                    // hold of it (a cached "not found" included).
                    self.inner.rows.model_changed(&row.subject).await;
                    return Ok(run.result.clone().unwrap_or(serde_json::Value::Null));
                }
                SagaState::Compensated => {
                    self.inner.rows.model_changed(&row.subject).await;
                    return Err(run.final_error(kind));
                }
                SagaState::Running => self.roll_forward(kind, &mut run).await?,
                SagaState::Compensating => self.roll_back(kind, &mut run).await?,
            }
        }
    }

    async fn roll_forward(&self, kind: Kind, run: &mut Progress) -> Result<()> {
        for &step in kind.steps() {
            if run.is_done(step) {
                continue;
            }
            let Err(error) = self.attempt(kind, step, Phase::Apply, run).await else {
                continue;
            };
            if is_lost_lease(&error) {
                return Err(error);
            }
            if kind.compensable() || !run.any_done() {
                tracing::warn!(saga = %run.id, step, "saga step failed, compensating: {error}");
                run.set_state(SagaState::Compensating, Some(&error)).await?;
                return Ok(());
            }
            // Cannot be undone: keep it open and try again later.
            run.release(&error, self.inner.settings.sweep_interval)
                .await?;
            return Err(pending_error(&run.id, kind, &error));
        }
        let result = self.result_of(kind, run)?;
        let event = match kind {
            Kind::Register => Some(register::event(&result)),
            Kind::Unregister => None,
        };
        let announced = event.is_some();
        run.complete(result, event).await?;
        if announced {
            self.inner.outbox.committed().await;
        }
        Ok(())
    }

    async fn roll_back(&self, kind: Kind, run: &mut Progress) -> Result<()> {
        // Steps run in order, so only the first step not done can be half
        // applied: undo it and every step before it.
        let steps = kind.steps();
        let reached = steps
            .iter()
            .position(|s| !run.is_done(s))
            .map_or(steps.len(), |first_open| first_open + 1);
        for &step in steps[..reached].iter().rev() {
            if run.is_compensated(step) {
                continue;
            }
            let Err(error) = self.attempt(kind, step, Phase::Compensate, run).await else {
                continue;
            };
            if is_lost_lease(&error) {
                return Err(error);
            }
            tracing::error!(saga = %run.id, step, "compensation failed, retried later: {error}");
            run.release(&error, self.inner.settings.sweep_interval)
                .await?;
            return Err(pending_error(&run.id, kind, &error));
        }
        run.set_state(SagaState::Compensated, None).await
    }

    /// Does or undoes one step: the fault hooks first, then the step, again
    /// after errors a retry may help, as the step retry policy allows.
    /// After a failed attempt the record is read again, since the step's
    /// own write may have landed although its answer was lost.
    async fn attempt(
        &self,
        kind: Kind,
        step: &'static str,
        phase: Phase,
        run: &mut Progress,
    ) -> Result<()> {
        let point = FaultPoint {
            kind: kind.name(),
            step,
            phase,
        };
        let policy = self.inner.settings.retry;
        let started = Instant::now();
        let mut attempts = 1;
        loop {
            let outcome = match self.inject(point).await {
                Err(injected) => Err(injected),
                Ok(()) => match phase {
                    Phase::Apply => self.apply(kind, step, run).await,
                    Phase::Compensate => self.compensate(kind, step, run).await,
                },
            };
            let Err(error) = outcome else { return Ok(()) };
            if is_lost_lease(&error) {
                return Err(error);
            }
            run.reload().await?;
            let landed = match phase {
                Phase::Apply => run.is_done(step),
                Phase::Compensate => run.is_compensated(step),
            };
            if landed {
                return Ok(());
            }
            let Some(wait) = policy.next_wait(&error, attempts, started.elapsed()) else {
                return Err(error);
            };
            tracing::debug!(saga = %run.id, step, "attempt {attempts} failed, again in {wait:?}: {error}");
            tokio::time::sleep(wait).await;
            attempts += 1;
        }
    }

    async fn inject(&self, point: FaultPoint) -> Result<()> {
        let name = format!(
            "saga.{}.{}.{}",
            point.kind,
            point.step,
            point.phase.as_str()
        );
        failpoint::check(&name).await?;
        match &self.inner.faults {
            Some(faults) => faults(point),
            None => Ok(()),
        }
    }

    async fn apply(&self, kind: Kind, step: &'static str, run: &mut Progress) -> Result<()> {
        match kind {
            Kind::Register => register::apply(self, step, run).await,
            Kind::Unregister => unregister::apply(self, step, run).await,
        }
    }

    async fn compensate(&self, kind: Kind, step: &'static str, run: &mut Progress) -> Result<()> {
        match kind {
            Kind::Register => register::compensate(self, step, run).await,
            // Only a removal refused at its first step is "undone": it had
            // removed nothing.
            Kind::Unregister if !run.is_done(step) => Ok(()),
            Kind::Unregister => Err(Error::internal(format!(
                "`{}` cannot be undone (step {step})",
                unregister::KIND
            ))),
        }
    }

    fn result_of(&self, kind: Kind, run: &Progress) -> Result<serde_json::Value> {
        match kind {
            Kind::Register => register::result(run),
            Kind::Unregister => Ok(unregister::result(run)),
        }
    }
}

enum Begun {
    New(saga::Model),
    Open(saga::Model),
}

const LOST_LEASE: &str = "lost the lease of saga";

fn is_lost_lease(error: &Error) -> bool {
    error.kind() == ErrorKind::Internal && error.message().starts_with(LOST_LEASE)
}

/// How an error is stored in a saga's row: `[kind] text`, so that the kind
/// survives a restart.
fn error_text(error: &Error) -> String {
    format!("[{}] {error}", error.kind())
}

fn open_states() -> [&'static str; 2] {
    [
        SagaState::Running.as_str(),
        SagaState::Compensating.as_str(),
    ]
}

/// The pattern of a saga's id: a UUID as strata writes it, lower-case
/// and hyphenated.
pub const SAGA_ID_PATTERN: &str = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$";

/// Whether `id` can be a saga's id ([`SAGA_ID_PATTERN`]).
pub fn is_valid_saga_id(id: &str) -> bool {
    id.len() == 36
        && id.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => matches!(b, b'0'..=b'9' | b'a'..=b'f'),
        })
}

fn new_saga_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// The error of a saga left open for a later attempt: retryable, and
/// saying what will happen.
fn pending_error(id: &str, kind: Kind, cause: &Error) -> Error {
    Error::new(
        ErrorKind::Unavailable,
        format!(
            "{} is not finished: {cause}; saga {id} stays open and is retried in the background",
            kind.name()
        ),
    )
    .with_field("saga")
}

/// SHA-256 of a request's canonical JSON (keys sorted at every depth), as
/// hex: equal for equal requests however their keys were ordered.
pub(crate) fn request_hash(request: &serde_json::Value) -> String {
    fn canonical(value: &serde_json::Value) -> serde_json::Value {
        match value {
            serde_json::Value::Object(map) => {
                let sorted: BTreeMap<&String, serde_json::Value> =
                    map.iter().map(|(k, v)| (k, canonical(v))).collect();
                serde_json::Value::Object(sorted.into_iter().map(|(k, v)| (k.clone(), v)).collect())
            }
            serde_json::Value::Array(items) => {
                serde_json::Value::Array(items.iter().map(canonical).collect())
            }
            other => other.clone(),
        }
    }
    let digest = Sha256::digest(canonical(request).to_string().as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// A saga being driven by this process: its record as last written.
pub(crate) struct Progress {
    db: DatabaseConnection,
    /// This drive's `owner`, which guards every write.
    owner: String,
    lease: Duration,
    id: String,
    kind: &'static str,
    request: serde_json::Value,
    state: SagaState,
    steps: Vec<StepRecord>,
    result: Option<serde_json::Value>,
    error: Option<String>,
}

impl Progress {
    fn new(sagas: &Sagas, row: &saga::Model) -> Result<Progress> {
        let saga = Saga::from_row(row)?;
        let request = serde_json::from_str(&row.request)
            .map_err(|e| Error::internal(format!("saga {}: unreadable request: {e}", row.id)))?;
        // The row as this drive began or claimed it, so with its owner.
        let owner = row
            .owner
            .clone()
            .ok_or_else(|| Error::internal(format!("saga {}: driven without an owner", row.id)))?;
        Ok(Progress {
            db: sagas.inner.db.clone(),
            owner,
            lease: sagas.inner.settings.lease,
            id: saga.id,
            kind: Kind::parse(&saga.kind)?.name(),
            request,
            state: saga.state,
            steps: saga.steps,
            result: saga.result,
            error: saga.error,
        })
    }

    /// The saga's id.
    pub(crate) fn id(&self) -> &str {
        &self.id
    }

    /// The request it was started with.
    pub(crate) fn request<T: serde::de::DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_value(self.request.clone()).map_err(|e| {
            Error::internal(format!(
                "saga {}: unreadable {} request: {e}",
                self.id, self.kind
            ))
        })
    }

    fn record(&self, step: &str) -> Option<&StepRecord> {
        self.steps.iter().rev().find(|r| r.step == step)
    }

    fn is_done(&self, step: &str) -> bool {
        self.record(step).is_some()
    }

    fn is_compensated(&self, step: &str) -> bool {
        self.record(step)
            .is_some_and(|r| r.state == StepState::Compensated)
    }

    fn any_done(&self) -> bool {
        !self.steps.is_empty()
    }

    /// What `step` produced when it was done, if it was.
    pub(crate) fn output(&self, step: &str) -> Option<&serde_json::Value> {
        self.steps
            .iter()
            .find(|r| r.step == step && r.state == StepState::Done)
            .map(|r| &r.output)
    }

    /// Records `step` done, on the pool.
    pub(crate) async fn done(&mut self, step: &str, output: serde_json::Value) -> Result<()> {
        let db = self.db.clone();
        self.mark(&db, step, StepState::Done, output).await
    }

    /// Records `step` done inside `txn`, the step's own transaction: it is
    /// done exactly when `txn` commits.
    pub(crate) async fn done_in(
        &mut self,
        txn: &impl ConnectionTrait,
        step: &str,
        output: serde_json::Value,
    ) -> Result<()> {
        self.mark(txn, step, StepState::Done, output).await
    }

    /// Records `step` undone, on the pool.
    pub(crate) async fn compensated(&mut self, step: &str) -> Result<()> {
        let db = self.db.clone();
        self.mark(&db, step, StepState::Compensated, serde_json::Value::Null)
            .await
    }

    /// Records `step` undone when it had been recorded done; a step undone
    /// while in flight (never recorded) leaves no record, and undoing it
    /// again is harmless.
    pub(crate) async fn compensated_if_done(&mut self, step: &str) -> Result<()> {
        if self.is_done(step) {
            self.compensated(step).await
        } else {
            Ok(())
        }
    }

    /// Records `step` undone inside `txn`.
    pub(crate) async fn compensated_in(
        &mut self,
        txn: &impl ConnectionTrait,
        step: &str,
    ) -> Result<()> {
        self.mark(txn, step, StepState::Compensated, serde_json::Value::Null)
            .await
    }

    async fn mark(
        &mut self,
        db: &impl ConnectionTrait,
        step: &str,
        state: StepState,
        output: serde_json::Value,
    ) -> Result<()> {
        let output = match (&state, self.output(step)) {
            // An undone step keeps what it had produced, for the record.
            (StepState::Compensated, Some(done)) => done.clone(),
            _ => output,
        };
        let mut steps = self.steps.clone();
        steps.retain(|r| r.step != step);
        steps.push(StepRecord {
            step: step.to_owned(),
            state,
            output,
            at: now(),
        });
        let text = serde_json::to_string(&steps)
            .map_err(|e| Error::internal(format!("saga {}: {e}", self.id)))?;
        self.write(db, vec![(saga::Column::Steps, Expr::value(text))])
            .await?;
        self.steps = steps;
        Ok(())
    }

    async fn set_state(&mut self, state: SagaState, error: Option<&Error>) -> Result<()> {
        let mut columns = vec![(saga::Column::State, Expr::value(state.as_str()))];
        if state.is_final() {
            columns.push((
                saga::Column::ActiveSubject,
                Expr::value(Option::<String>::None),
            ));
        }
        if let Some(error) = error {
            columns.push((saga::Column::Error, Expr::value(error_text(error))));
        }
        let db = self.db.clone();
        self.write(&db, columns).await?;
        self.state = state;
        if let Some(error) = error {
            self.error = Some(error_text(error));
        }
        Ok(())
    }

    /// Records the saga completed, with the event that announces it (a
    /// topic, an aggregate and its data) written into the outbox in the same
    /// transaction: the event exists exactly when the saga completed.
    async fn complete(
        &mut self,
        result: serde_json::Value,
        event: Option<(&'static str, String, serde_json::Value)>,
    ) -> Result<()> {
        let columns = vec![
            (
                saga::Column::State,
                Expr::value(SagaState::Completed.as_str()),
            ),
            (
                saga::Column::ActiveSubject,
                Expr::value(Option::<String>::None),
            ),
            (saga::Column::Result, Expr::value(result.to_string())),
            (saga::Column::Error, Expr::value(Option::<String>::None)),
        ];
        let db = self.db.clone();
        match event {
            None => self.write(&db, columns).await?,
            Some((topic, aggregate, data)) => {
                let txn = crate::engines::relational::begin_write(&db)
                    .await
                    .map_err(db_err("saga"))?;
                self.write(&txn, columns).await?;
                crate::platform::outbox::enqueue(&txn, topic, &aggregate, data).await?;
                txn.commit().await.map_err(db_err("saga"))?;
            }
        }
        self.state = SagaState::Completed;
        self.result = Some(result);
        Ok(())
    }

    /// Leaves the saga open for another attempt after `wait`, noting why.
    async fn release(&mut self, error: &Error, wait: Duration) -> Result<()> {
        let until = now() + chrono::Duration::from_std(wait).unwrap_or_default();
        let columns = vec![
            (saga::Column::LeaseUntil, Expr::value(until)),
            (saga::Column::Error, Expr::value(error_text(error))),
        ];
        let db = self.db.clone();
        // Written without renewing the lease (write() would extend it).
        self.update(&db, columns).await?;
        self.error = Some(error_text(error));
        Ok(())
    }

    /// Writes columns of our row, renewing the lease; fails when another
    /// process took the saga over.
    async fn write(
        &self,
        db: &impl ConnectionTrait,
        mut columns: Vec<(saga::Column, sea_orm::sea_query::SimpleExpr)>,
    ) -> Result<()> {
        let at = now();
        let lease = at + chrono::Duration::from_std(self.lease).unwrap_or_default();
        columns.push((saga::Column::LeaseUntil, Expr::value(lease)));
        self.update(db, columns).await
    }

    async fn update(
        &self,
        db: &impl ConnectionTrait,
        columns: Vec<(saga::Column, sea_orm::sea_query::SimpleExpr)>,
    ) -> Result<()> {
        let mut update = saga::Entity::update_many()
            .col_expr(saga::Column::UpdatedAt, Expr::value(now()))
            .filter(saga::Column::Id.eq(self.id.clone()))
            .filter(saga::Column::Owner.eq(self.owner.clone()));
        for (column, value) in columns {
            update = update.col_expr(column, value);
        }
        let written = update.exec(db).await.map_err(db_err("saga"))?;
        if written.rows_affected == 0 {
            return Err(Error::internal(format!(
                "{LOST_LEASE} {}: another process took it over",
                self.id
            ))
            .with_operation("saga"));
        }
        Ok(())
    }

    /// Reads the row again (after an error, a write may or may not have
    /// landed).
    async fn reload(&mut self) -> Result<()> {
        let row = saga::Entity::find_by_id(self.id.clone())
            .one(&self.db)
            .await
            .map_err(db_err("saga"))?
            .ok_or_else(|| Error::internal(format!("saga {} vanished", self.id)))?;
        if row.owner.as_deref() != Some(self.owner.as_str()) {
            return Err(Error::internal(format!(
                "{LOST_LEASE} {}: another process took it over",
                self.id
            )));
        }
        let saga = Saga::from_row(&row)?;
        self.state = saga.state;
        self.steps = saga.steps;
        self.result = saga.result;
        self.error = saga.error;
        Ok(())
    }

    /// The error a compensated saga answers with: the step's failure, by
    /// its kind (a conflict stays a conflict).
    fn final_error(&self, kind: Kind) -> Error {
        let (error_kind, message) = match self.error.as_deref() {
            Some(text) => stored_error(text),
            None => (ErrorKind::Internal, "undone"),
        };
        Error::new(
            error_kind,
            format!("{message}; nothing of it was kept (saga {})", self.id),
        )
        .with_operation(kind.name())
    }
}

/// The kind and text of an error stored by [`error_text`].
fn stored_error(text: &str) -> (ErrorKind, &str) {
    let Some((name, message)) = text
        .strip_prefix('[')
        .and_then(|rest| rest.split_once("] "))
    else {
        return (ErrorKind::Internal, text);
    };
    let kind = [
        ErrorKind::NotFound,
        ErrorKind::Conflict,
        ErrorKind::Unsupported,
        ErrorKind::InvalidInput,
        ErrorKind::WrongType,
        ErrorKind::Unavailable,
        ErrorKind::Timeout,
        ErrorKind::AuthenticationFailed,
        ErrorKind::Config,
        ErrorKind::Internal,
    ]
    .into_iter()
    .find(|k| k.as_str() == name)
    .unwrap_or(ErrorKind::Internal);
    (kind, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_hash_ignores_key_order_but_not_values() {
        let a = serde_json::json!({"b": 1, "a": {"y": [1, 2], "x": null}});
        let b = serde_json::json!({"a": {"x": null, "y": [1, 2]}, "b": 1});
        let c = serde_json::json!({"a": {"x": null, "y": [2, 1]}, "b": 1});
        assert_eq!(request_hash(&a), request_hash(&b));
        assert_ne!(request_hash(&a), request_hash(&c));
        assert_eq!(request_hash(&a).len(), 64);
    }

    #[test]
    fn stored_errors_read_back() {
        let stored = error_text(&Error::conflict("taken").with_operation("create_run"));
        assert_eq!(stored, "[conflict] create_run: taken");
        assert_eq!(
            stored_error(&stored),
            (ErrorKind::Conflict, "create_run: taken")
        );
        assert_eq!(
            stored_error("no prefix"),
            (ErrorKind::Internal, "no prefix")
        );
        assert_eq!(stored_error("[nonsense] x"), (ErrorKind::Internal, "x"));
    }
}
