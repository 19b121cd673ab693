//! The end-to-end tests, one module per area, built as one test binary: each file as its own
//! binary linked the server, the client and the support library again, and compiled the
//! same tokio and tonic generics again (ten binaries took ~330 s of a 2-core CI build's CPU).
//! Test names keep the file's name as their first part (`train::sqlite::...`), so
//! `cargo test -p ebm-e2e --test e2e train::` runs one area.
mod ais_train;
mod auth;
mod bad_input;
mod cancel;
mod chaos;
mod dca;
mod estimators;
mod fairness;
mod idempotency;
mod imports;
mod models;
mod postgres_restart;
mod restart;
mod roles;
mod scores;
mod sweeps;
mod temperatures;
mod tls;
mod tokens;
mod train;
mod wgpu_availability;
