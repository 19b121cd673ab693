//! `ebm-server`: the gRPC service that stores data sets and models, schedules jobs on
//! workers and runs them on the engine.
//!
//! - [`config`]: layered configuration (defaults < ebm.toml < EBM__ env < flags).
//! - [`store`]: the database (SQLite or Postgres) behind one type.
//! - [`scheduler`]: workers that claim, heartbeat, run and finish jobs; the reaper.
//! - [`jobs`]: what each job kind checks and computes (on the engine).
//! - [`api`]: one module per gRPC service, thin: validate, call the store, convert.
//! - [`auth`]: bearer tokens to tenants.
//! - [`metrics`]: Prometheus endpoint and the gRPC metrics layer.
//! - [`startup`]: wires it all into a running server ([`startup::Server::start`]).
pub mod api;
pub mod auth;
pub mod config;
pub mod jobs;
pub mod metrics;
pub mod scheduler;
pub mod startup;
pub mod store;
pub mod telemetry;
pub mod testing;
