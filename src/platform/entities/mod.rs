//! The sea-orm entities, one module per table: the registry's
//! (`m20261122_000002_registry` and later) and the customers'
//! (`m20261201_000030_customers`: countries, cities, users, addresses,
//! orders).
//!
//! The entity definitions mirror the migration: the migration is the
//! schema, these are how Rust reads and writes it. Generated items
//! (`Entity`, `Column`, `ActiveModel`, ...) are sea-orm's and documented
//! there.

pub mod address;
pub mod alias_history;
pub mod api_token;
pub mod city;
pub mod country;
pub mod customer;
pub mod dataset;
pub mod deployment;
pub mod fence;
pub mod model_alias;
pub mod model_artifact;
pub mod order;
pub mod outbox;
pub mod run_tag;
pub mod saga;
pub mod training_run;

pub use deployment::DeploymentStatus;
pub use training_run::RunStatus;
