//! Postgres specifics: the production store that several server processes share.
//!
//! Claiming uses `FOR UPDATE SKIP LOCKED`, so concurrent workers each take a different
//! queued job without waiting on each other. LISTEN/NOTIFY wakes idle workers and
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
        .connect(url)
        .await
        .map_err(|e| anyhow::anyhow!("cannot connect to Postgres: {e}"))
}

/// Claims the most urgent queued job in one statement. `SKIP LOCKED` lets concurrent
/// claimers pass over a row another transaction is claiming instead of queueing behind it.
pub(super) const CLAIM_NEXT_JOB: &str = "
    UPDATE jobs
       SET state = 'running', attempt = attempt + 1, lease_owner = $1,
           lease_expires_at = $2, started_at = COALESCE(started_at, $3), updated_at = $3,
           last_seq = last_seq + 1
     WHERE id = (SELECT id FROM jobs
                  WHERE state = 'queued'
                  ORDER BY priority DESC, created_at, id
                  LIMIT 1
                  FOR UPDATE SKIP LOCKED)
 RETURNING id, attempt, last_seq";

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
