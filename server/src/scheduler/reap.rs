//! The reaper: requeues running jobs whose lease expired because their worker died or
//! hung, so that another worker resumes them from their latest checkpoint. Every server
//! process runs one; the store's conditional update makes concurrent reapers harmless.
//! Whether the lost attempt counts against the job, and how long it waits before its next
//! claim, is the store's [`crate::store::RetryPolicy`] from `[retries]`.
use super::Shared;
use std::time::Duration;

pub(super) async fn reap_loop(shared: Shared) {
    let interval = Duration::from_secs_f64(shared.config.reap_seconds);
    let policy = shared.config.retries.policy();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shared.shutdown.cancelled() => break,
        }
        match shared.store.reap_expired_leases(&policy).await {
            Ok(reaped) if !reaped.is_empty() => {
                tracing::warn!(jobs = ?reaped, "requeued jobs whose lease expired")
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "reaping expired leases failed"),
        }
    }
}
