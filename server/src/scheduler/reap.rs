//! The reaper: requeues running jobs whose lease expired because their worker died or
//! hung, so that another worker resumes them from their latest checkpoint. Every server
//! process runs one; the store's conditional update makes concurrent reapers harmless.
use super::{Shared, MAX_ATTEMPTS};
use std::time::Duration;

pub(super) async fn reap_loop(shared: Shared) {
    let interval = Duration::from_secs_f64(shared.config.reap_seconds);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shared.shutdown.cancelled() => break,
        }
        match shared.store.reap_expired_leases(MAX_ATTEMPTS).await {
            Ok(reaped) if !reaped.is_empty() => {
                tracing::warn!(jobs = ?reaped, "requeued jobs whose lease expired")
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "reaping expired leases failed"),
        }
    }
}
