//! Postgres specifics: the production store that several server processes share.
//!
//! Claiming takes a transaction-scoped advisory lock, so that claims from every process
//! run one at a time and per-tenant running limits hold, and locks its row with
//! `FOR UPDATE SKIP LOCKED`. LISTEN/NOTIFY wakes idle workers and
//! WatchJob streams in every process as soon as something changes; polling stays as the
//! fallback if a notification is missed (e.g. while the listener reconnects).
use super::Store;
use sqlx::any::AnyPoolOptions;
use sqlx::postgres::PgListener;
use sqlx::AnyPool;

/// Channel announcing claimable work (payload unused).
pub(super) const WORK_CHANNEL: &str = "ebm_work";
/// Channel announcing new events of a job (payload: the job id).
pub(super) const EVENTS_CHANNEL: &str = "ebm_job_events";

pub(super) async fn connect(url: &str) -> anyhow::Result<AnyPool> {
    AnyPoolOptions::new()
        .max_connections(16)
        // While the database is down (a restart, a failover) a call waits this long for a
        // connection, then answers UNAVAILABLE, instead of sqlx's default 30 s.
        .acquire_timeout(std::time::Duration::from_secs(5))
        .connect(url)
        .await
        .map_err(|e| anyhow::anyhow!("cannot connect to Postgres: {e}"))
}

/// Taken (for the rest of the transaction) before the claim statement: claims run one at
/// a time, so each sees every running job the others claimed and a tenant's running-jobs
/// limit holds across processes. A claim is one short statement, so the wait is brief.
pub(super) const SERIALIZE_CLAIMS: &str =
    "SELECT 1 AS locked FROM (SELECT pg_advisory_xact_lock(4242)) AS claim_lock";

/// The claim's row lock: `SKIP LOCKED` passes over a queued row that another transaction
/// holds (e.g. a cancel) instead of waiting for it.
pub(super) const CLAIM_SKIP_LOCKED: &str = "FOR UPDATE OF queued SKIP LOCKED";

/// Sends a notification; a failure only delays the listeners until their next poll.
pub(super) async fn notify(pool: &AnyPool, channel: &str, payload: &str) {
    if let Err(e) = sqlx::query("SELECT 1 AS sent FROM (SELECT pg_notify($1, $2)) AS notified")
        .bind(channel)
        .bind(payload)
        .execute(pool)
        .await
    {
        tracing::warn!(error = %e, "pg_notify failed; listeners fall back to polling");
    }
}

/// Listens on both channels and relays notifications to this process's waiters.
pub(super) async fn spawn_listener(url: &str, store: Store) -> anyhow::Result<()> {
    let mut listener = PgListener::connect(url).await?;
    listener.listen_all([WORK_CHANNEL, EVENTS_CHANNEL]).await?;
    let work = store.work_available.clone();
    let events = store.job_events.clone();
    tokio::spawn(async move {
        loop {
            let received = tokio::select! {
                received = listener.recv() => received,
                _ = store.closed.cancelled() => break,
            };
            match received {
                Ok(note) if note.channel() == WORK_CHANNEL => work.notify_waiters(),
                Ok(note) => {
                    let _ = events.send(note.payload().to_string());
                }
                Err(e) => {
                    tracing::warn!(error = %e, "LISTEN connection lost; retrying");
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                }
            }
        }
    });
    Ok(())
}
