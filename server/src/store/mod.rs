//! The store: every piece of state the service keeps (jobs, their events, data sets, models,
//! checkpoints, artifacts) lives in one SQL database, so several server processes sharing a
//! Postgres database see the same world.
//!
//! The queries are written once, in the SQL that SQLite and Postgres share, and run through
//! sqlx's `Any` driver with runtime-checked queries (the build never needs a database). What
//! differs between the databases lives in one module each: connecting and tuning
//! ([`sqlite`], [`postgres`]), the claim's locking, and wake-ups (Postgres LISTEN/NOTIFY).
//! The scheduler and the API see only [`Store`] and the record types below.
//!
//! Every write a worker makes is fenced by its [`Lease`] (job id, attempt, lease owner): it
//! only applies while the job is still `running` under that same attempt and owner, so a
//! worker whose lease expired and whose job was requeued and claimed again cannot overwrite
//! the newer attempt (the write fails with [`StoreError::LeaseLost`]).
mod blobs;
mod jobs;
mod labels;
mod leases;
mod migrate;
pub mod postgres;
mod quotas;
pub mod sqlite;
mod sweeps;
mod tokens;

pub use blobs::{Checkpoint, DatasetRecord, ModelRecord};
pub use jobs::{EventRecord, JobRecord, NewEvent, NewJob, Submitted};
pub use labels::Labels;
pub use leases::{ClaimedJob, Finish, Lease, RetryPolicy, RunningLimits};
pub use quotas::Quota;
pub use sweeps::{NewVariant, SweepRecord, SweepSubmitted};
pub use tokens::{TokenRecord, LAST_USED_RESOLUTION_MS};

use sqlx::AnyPool;
use tokio::sync::{broadcast, Notify};

/// What can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// A fenced write found that the job no longer belongs to this attempt and owner.
    #[error("the job's lease was lost (it was requeued or finished elsewhere)")]
    LeaseLost,
    /// An insert would take the tenant over one of its quotas (the message says which, and
    /// the current use); nothing was stored.
    #[error("{0}")]
    QuotaExceeded(String),
}

impl StoreError {
    /// True when the database could not be reached or cut the session (a restart, a
    /// failover, the network): the request was fine and is worth repeating shortly.
    /// SQLSTATE classes 08 (connection exception) and 57P (operator intervention: shutdown,
    /// "the database system is starting up").
    pub fn is_unreachable(&self) -> bool {
        match self {
            StoreError::Database(
                sqlx::Error::Io(_)
                | sqlx::Error::PoolTimedOut
                | sqlx::Error::Tls(_)
                | sqlx::Error::Protocol(_)
                | sqlx::Error::WorkerCrashed,
            ) => true,
            StoreError::Database(sqlx::Error::Database(e)) => e
                .code()
                .is_some_and(|code| code.starts_with("08") || code.starts_with("57P")),
            _ => false,
        }
    }
}

impl From<serde_json::Error> for StoreError {
    fn from(e: serde_json::Error) -> Self {
        StoreError::Corrupt(e.to_string())
    }
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// Which database is behind the pool; selects the backend-specific statements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

/// Handle to the database, cheap to clone.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    dialect: Dialect,
    /// Wakes idle workers when a job becomes claimable (local submits, and Postgres NOTIFY
    /// from other processes).
    work_available: std::sync::Arc<Notify>,
    /// Announces "job X has new events" to WatchJob streams in this process.
    job_events: broadcast::Sender<String>,
    /// Cancelled by [`Store::close`]; ends the Postgres listener.
    closed: tokio_util::sync::CancellationToken,
}

impl Store {
    /// Connects (creating a SQLite file if missing) and runs the migrations.
    pub async fn connect(url: &str) -> anyhow::Result<Store> {
        sqlx::any::install_default_drivers();
        let dialect = if url.starts_with("sqlite:") {
            Dialect::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Dialect::Postgres
        } else {
            anyhow::bail!("database_url must start with sqlite: or postgres:, got {url:?}");
        };
        let pool = match dialect {
            Dialect::Sqlite => sqlite::connect(url).await?,
            Dialect::Postgres => postgres::connect(url).await?,
        };
        migrate::run(&pool, dialect).await?;
        let (job_events, _) = broadcast::channel(1024);
        let store = Store {
            pool,
            dialect,
            work_available: Default::default(),
            job_events,
            closed: Default::default(),
        };
        if dialect == Dialect::Postgres {
            postgres::spawn_listener(url, store.clone()).await?;
        }
        Ok(store)
    }

    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// Notified when a job may have become claimable (callers also poll, as a fallback).
    pub fn work_notify(&self) -> std::sync::Arc<Notify> {
        self.work_available.clone()
    }

    /// Subscribes to "job X has new events" announcements of this process.
    pub fn subscribe_events(&self) -> broadcast::Receiver<String> {
        self.job_events.subscribe()
    }

    /// Announces new work: to this process directly, and to others through Postgres NOTIFY.
    async fn announce_work(&self) {
        self.work_available.notify_waiters();
        if self.dialect == Dialect::Postgres {
            postgres::notify(&self.pool, postgres::WORK_CHANNEL, "").await;
        }
    }

    /// Announces that a job has new events.
    async fn announce_events(&self, job_id: &str) {
        let _ = self.job_events.send(job_id.to_string());
        if self.dialect == Dialect::Postgres {
            postgres::notify(&self.pool, postgres::EVENTS_CHANNEL, job_id).await;
        }
    }

    /// Number of jobs per state (for metrics), all tenants.
    pub async fn count_jobs_by_state(&self) -> Result<Vec<(String, i64)>> {
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT state, COUNT(*) FROM jobs GROUP BY state")
                .fetch_all(&self.pool)
                .await?;
        Ok(rows)
    }

    pub async fn close(&self) {
        self.closed.cancel();
        self.pool.close().await
    }
}

/// Milliseconds since the Unix epoch, the store's clock.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// RFC 3339 text of a store time, as the API shows it.
pub fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

/// A fresh id with a readable prefix ("job", "ds", "mdl"). UUIDv7: ids sort by creation
/// time, which makes (created_at, id) a FIFO order even within one millisecond.
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::now_v7().simple())
}

#[cfg(test)]
mod tests;
