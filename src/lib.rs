//! strata: the data plane of an ML platform, in one binary.
//!
//! It keeps datasets, training runs, model configs, experiments, online
//! features, cached predictions, leaderboards and events, each in the kind of
//! store that suits it, and runs the pipelines between them. The same code
//! runs on embedded engines (SQLite, an in-process document store, a
//! moka-backed key-value store, an in-process broker) and on PostgreSQL +
//! MongoDB + Redis + RabbitMQ, switched by configuration alone.
//!
//! # Layout
//!
//! Layers point down only: `api`/`cli` → services ([`platform`]) →
//! `engines`.
//!
//! - [`error`]: the one error type, with kinds callers act on. Imported by
//!   every layer.
//! - [`config`]: configuration from defaults, files, environment and flags
//!   (figment). Imported by `engines` (to build themselves) and `cli`.
//! - [`engines`]: the four engine kinds. [`engines::relational`] (sea-orm on
//!   SQLite or PostgreSQL), [`engines::document`] (`DocumentStore`, shaped
//!   after MongoDB), [`engines::kv`] (`KvStore`, shaped after Redis),
//!   [`engines::queue`] (`Broker`, shaped after AMQP 0-9-1). Knows nothing of
//!   ML; imports only `error` and `config`.
//! - [`migration`]: the relational schema as sea-orm migrations, applied at
//!   start. Imports `engines::relational` for error mapping.
//! - [`platform`]: the composition root ([`platform::Platform`]: engines
//!   wrapped in their layers, the schema applied, typed services handed
//!   out) and the services, which hand out the platform's own records
//!   ([`platform::records`]): registry and tracking (datasets, runs,
//!   artifacts, deployments and aliases on the relational engine, the run
//!   search language), model configs and experiments on the document
//!   engine, operations spanning engines (the register and unregister
//!   sagas, model info, the runs-to-documents migration) and the sample
//!   data. Imports `engines`, `migration`, `retry` and `error`.
//! - [`analytics`]: customer segments, churn, lifetime value and
//!   recommendations over [`platform::Customers`], stored as one model
//!   document; the seeded synthetic population. Imports `platform`,
//!   `config` and `error`, never a concrete engine.
//! - [`api`]: the HTTP API (axum) served by `strata serve`, with its OpenAPI
//!   document. Imports `platform`, `error` and `config`, never `engines`.
//! - [`ops`]: one snapshot of the process and its engines (pings, caches,
//!   queues, dead letters, outbox, sagas, feature views), gathered over
//!   `platform`, `serving`, `pipelines` and `analytics` for `api` (`/v1/ops`,
//!   the dashboard) and for gauges.
//! - [`cli`]: the `strata` command (clap), with `strata demo`, the main
//!   job ([`cli::demo`]). May import everything.
//!
//! Modules that arrive with later capabilities slot in between: `cache` (the
//! three-tier cache over the engines), `serving` (features, predictions,
//! leaderboards), `pipelines` and `bench`.

#![warn(missing_docs, missing_debug_implementations)]

pub mod analytics;
pub mod api;
pub mod bench;
pub mod cache;
pub mod cli;
pub mod config;
pub mod engines;
pub mod error;
mod failpoint;
pub mod metrics;
pub mod migration;
pub mod ops;
pub mod pipelines;
pub mod platform;
pub mod retry;
pub mod serving;
pub mod telemetry;
pub mod trace;

pub use error::{Error, ErrorKind, Result};
