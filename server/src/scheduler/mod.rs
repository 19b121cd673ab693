//! The scheduler: `workers` claim loops, each running one job at a time on its own OS
//! thread, plus the reaper. The queue logic knows nothing of the database beyond the
//! store's claim / heartbeat / fenced-write interface.
//!
//! Lifecycle of a job here: [`worker`] claims it (lease), [`heartbeat`] renews the lease
//! and watches for cancellation, [`run`] executes it on a compute thread and stores its
//! reports and outcome, [`reap`] requeues jobs whose worker vanished.
//!
//! Shutdown is designed in: cancelling the shared token stops the claim loops, asks every
//! running job to stop at its next minibatch, and each worker then stores the job's
//! checkpoint and requeues it before its task ends; [`Scheduler::wait`] waits for that.
mod heartbeat;
mod reap;
mod run;
mod worker;

use crate::config::Config;
use crate::jobs::{StopReason, StopSignal};
use crate::store::Store;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Jobs running in this process, by id, so that a cancel reaching this process stops its
/// job at once rather than at the next heartbeat.
#[derive(Clone, Default)]
pub struct RunningJobs(Arc<Mutex<HashMap<String, StopSignal>>>);

impl RunningJobs {
    fn insert(&self, job_id: &str, stop: StopSignal) {
        self.lock().insert(job_id.to_string(), stop);
    }

    fn remove(&self, job_id: &str) {
        self.lock().remove(job_id);
    }

    /// Asks a job running here to stop; false if it does not run in this process.
    pub fn stop(&self, job_id: &str, reason: StopReason) -> bool {
        match self.lock().get(job_id) {
            Some(stop) => {
                stop.request(reason);
                true
            }
            None => false,
        }
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, StopSignal>> {
        // A panic while holding this lock cannot leave the map inconsistent.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Timing and identity shared by the scheduler's tasks.
#[derive(Clone)]
pub(crate) struct Shared {
    store: Store,
    config: Arc<Config>,
    running: RunningJobs,
    shutdown: CancellationToken,
    /// This process's lease-owner prefix (pid and a random tag).
    owner: String,
}

impl Shared {
    fn lease_ms(&self) -> i64 {
        (self.config.lease_seconds * 1000.0) as i64
    }

    fn heartbeat_interval(&self) -> Duration {
        Duration::from_secs_f64(self.config.heartbeat_seconds)
    }

    fn poll_interval(&self) -> Duration {
        Duration::from_secs_f64(self.config.poll_seconds)
    }
}

/// Handle to the scheduler's tasks.
pub struct Scheduler {
    tracker: TaskTracker,
}

impl Scheduler {
    /// Starts the workers and the reaper; they stop when `shutdown` is cancelled.
    pub fn start(
        store: Store,
        config: Arc<Config>,
        running: RunningJobs,
        shutdown: CancellationToken,
    ) -> Scheduler {
        let tag = uuid::Uuid::new_v4().simple().to_string();
        let shared = Shared {
            store,
            config: config.clone(),
            running,
            shutdown,
            owner: format!("{}-{}", std::process::id(), &tag[..8]),
        };
        let tracker = TaskTracker::new();
        for index in 0..config.workers {
            tracker.spawn(worker::claim_loop(shared.clone(), index));
        }
        tracker.spawn(reap::reap_loop(shared));
        tracker.close();
        Scheduler { tracker }
    }

    /// Waits until every worker has stopped (after the shutdown token was cancelled):
    /// running jobs are checkpointed and requeued by then.
    pub async fn wait(&self) {
        self.tracker.wait().await
    }
}

#[cfg(test)]
mod tests;
