//! Job kinds: checking a submitted spec before it is queued, and running a claimed job on
//! its compute thread. The scheduler knows nothing of what a job computes; a job knows
//! nothing of leases and the database: it gets its inputs in a [`JobContext`], reports
//! through it, watches its [`StopSignal`], and returns an [`Outcome`].
pub mod estimate;
pub mod observe;
pub mod sample;
pub mod score;
pub mod train;

use crate::config::Limits;
use crate::store::{Checkpoint, DatasetRecord, JobRecord, ModelRecord};
use ebm_api::v1;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Why a running job is asked to stop. The first reason given wins.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// The user cancelled it: end as `cancelled`.
    Cancel = 1,
    /// The server is shutting down: checkpoint, then requeue.
    Shutdown = 2,
    /// Another attempt owns the job now: stop writing, just exit.
    LeaseLost = 3,
}

/// Shared flag between a job's compute thread and its worker.
#[derive(Clone, Default)]
pub struct StopSignal(Arc<AtomicU8>);

impl StopSignal {
    pub fn request(&self, reason: StopReason) {
        let _ = self
            .0
            .compare_exchange(0, reason as u8, Ordering::SeqCst, Ordering::SeqCst);
    }

    pub fn reason(&self) -> Option<StopReason> {
        match self.0.load(Ordering::SeqCst) {
            1 => Some(StopReason::Cancel),
            2 => Some(StopReason::Shutdown),
            3 => Some(StopReason::LeaseLost),
            _ => None,
        }
    }

    pub fn is_set(&self) -> bool {
        self.0.load(Ordering::Relaxed) != 0
    }
}

/// What a compute thread reports; the worker turns each into a stored event (or
/// checkpoint), in order.
#[derive(Debug)]
pub enum Report {
    Progress {
        fraction: f64,
        epoch: u32,
        epochs: u32,
    },
    Metrics {
        epoch: u32,
        epochs: u32,
        metrics: BTreeMap<String, f64>,
    },
    Log(String),
    Checkpoint {
        epoch: u64,
        data: Vec<u8>,
    },
}

/// Inputs a job needs, loaded from the store before its thread starts.
#[derive(Default)]
pub struct Inputs {
    pub dataset: Option<(DatasetRecord, Vec<u8>)>,
    /// The model a job reads (estimate, sample, observe).
    pub model: Option<(ModelRecord, Vec<u8>)>,
    /// Initial parameters of a train job (`model_config.init_model`).
    pub init_model: Option<(ModelRecord, Vec<u8>)>,
    /// The latest checkpoint of an earlier attempt.
    pub checkpoint: Option<Checkpoint>,
    /// A score job's `score.log_z_job`: that estimate's ln Z and its standard error.
    pub log_z: Option<(f64, f64)>,
}

/// Everything a compute thread gets.
pub struct JobContext {
    pub job: JobRecord,
    pub spec: v1::JobSpec,
    pub inputs: Inputs,
    pub limits: Limits,
    /// Backend when the spec names none.
    pub default_backend: String,
    pub stop: StopSignal,
    reports: mpsc::Sender<Report>,
    last_progress: Option<Instant>,
}

/// A model a job produced.
pub struct ProducedModel {
    pub model_type: String,
    pub name: String,
    pub dims: BTreeMap<String, u64>,
    pub metadata: BTreeMap<String, String>,
    pub data: Vec<u8>,
}

/// How a job's computation ended. (One per job: its size does not matter.)
#[allow(clippy::large_enum_variant)]
pub enum Outcome {
    Succeeded {
        result: v1::JobResult,
        model: Option<ProducedModel>,
        artifacts: Vec<(String, Vec<u8>)>,
    },
    /// The job cannot succeed; the message says why (shown to the user).
    Failed(String),
    /// Stopped on request (see the stop signal's reason); state saved as needed.
    Stopped,
}

/// Progress events are rate-limited so a fast job does not flood the event log.
const PROGRESS_INTERVAL: Duration = Duration::from_millis(250);

impl JobContext {
    pub fn new(
        job: JobRecord,
        spec: v1::JobSpec,
        inputs: Inputs,
        limits: Limits,
        default_backend: String,
        stop: StopSignal,
        reports: mpsc::Sender<Report>,
    ) -> JobContext {
        JobContext {
            job,
            spec,
            inputs,
            limits,
            default_backend,
            stop,
            reports,
            last_progress: None,
        }
    }

    /// Hands a report to the worker. Blocks while the worker's queue is full, so a job
    /// cannot run far ahead of what the store has recorded.
    pub fn report(&self, report: Report) {
        // The worker outlives the thread; a send fails only if it gave up on the job.
        let _ = self.reports.blocking_send(report);
    }

    /// Reports progress, at most every 250 ms.
    pub fn progress(&mut self, fraction: f64, epoch: u32, epochs: u32) {
        let now = Instant::now();
        if self
            .last_progress
            .is_some_and(|last| now.duration_since(last) < PROGRESS_INTERVAL)
        {
            return;
        }
        self.last_progress = Some(now);
        self.report(Report::Progress {
            fraction: fraction.clamp(0.0, 1.0),
            epoch,
            epochs,
        });
    }

    /// The backend to run on.
    pub fn backend_name(&self) -> &str {
        if self.spec.backend.is_empty() {
            &self.default_backend
        } else {
            &self.spec.backend
        }
    }
}

/// Runs a claimed job to its outcome. Called on the job's own OS thread.
pub fn run(ctx: JobContext) -> Outcome {
    match ctx.spec.kind.as_str() {
        "train" => train::run(ctx),
        "estimate_log_z" => estimate::run(ctx),
        "sample" => sample::run(ctx),
        "observe" => observe::run(ctx),
        "score" | "scan" => score::run(ctx),
        other => Outcome::Failed(format!(
            "job kind {other:?} is not supported by this server"
        )),
    }
}
