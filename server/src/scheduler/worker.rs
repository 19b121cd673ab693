//! A claim loop: take the most urgent queued job, run it to the end, repeat; sleep until
//! woken (a submit here, a Postgres NOTIFY, a requeue) or the poll interval passes.
use super::{run, Shared};

pub(super) async fn claim_loop(shared: Shared, index: usize) {
    let owner = format!("{}/w{index}", shared.owner);
    let wake = shared.store.work_notify();
    // Per-tenant running limits are enforced by the claim statement, across processes.
    let limits = shared.config.quotas.running_limits();
    tracing::debug!(%owner, "worker started");
    while !shared.shutdown.is_cancelled() {
        // Register for wake-ups before looking, so a submit in between is not missed.
        let woken = wake.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        match shared
            .store
            .claim_next_job_within(&owner, shared.lease_ms(), &limits)
            .await
        {
            Ok(Some(claimed)) => {
                if run::run_claimed(&shared, claimed).await {
                    // This worker looked dead or stuck to the rest of the system, which
                    // requeued or handed over its job: wait a poll interval before claiming
                    // again, so that the requeued job goes to another worker first rather
                    // than straight back to the one that just lost it.
                    tokio::select! {
                        _ = tokio::time::sleep(shared.poll_interval()) => {}
                        _ = shared.shutdown.cancelled() => {}
                    }
                }
                continue;
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "claiming a job failed; retrying"),
        }
        tokio::select! {
            _ = &mut woken => {}
            _ = tokio::time::sleep(shared.poll_interval()) => {}
            _ = shared.shutdown.cancelled() => {}
        }
    }
    tracing::debug!(%owner, "worker stopped");
}
