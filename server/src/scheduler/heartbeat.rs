//! Heartbeat of one running job: renews its lease, turns a stored cancel request into a
//! stop signal (for cancels that reached another server process), and turns the server's
//! shutdown into a stop signal. It keeps renewing while the job checkpoints on its way out.
use super::Shared;
use crate::jobs::{StopReason, StopSignal};
use crate::store::{Lease, StoreError};

pub(super) async fn heartbeat_loop(shared: Shared, lease: Lease, stop: StopSignal) {
    let mut shutting_down = false;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(shared.heartbeat_interval()) => {}
            _ = shared.shutdown.cancelled(), if !shutting_down => {
                shutting_down = true;
                stop.request(StopReason::Shutdown);
                continue;
            }
        }
        match shared.store.heartbeat(&lease, shared.lease_ms()).await {
            Ok(true) => stop.request(StopReason::Cancel),
            Ok(false) => {}
            Err(StoreError::LeaseLost) => {
                tracing::warn!(job = %lease.job_id, attempt = lease.attempt, "lease lost; stopping");
                stop.request(StopReason::LeaseLost);
                return;
            }
            Err(e) => tracing::warn!(job = %lease.job_id, error = %e, "heartbeat failed"),
        }
    }
}
