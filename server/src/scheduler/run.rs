//! Running one claimed job: load its inputs, start its compute thread, store its reports
//! (events, checkpoints) in order under the lease, then record how it ended: succeeded,
//! failed, cancelled, or requeued because the server is shutting down.
use super::{heartbeat, Shared};
use crate::jobs::{self, Inputs, JobContext, Outcome, Report, StopReason, StopSignal};
use crate::metrics as names;
use crate::store::{new_id, now_ms, ClaimedJob, Finish, Lease, ModelRecord, StoreError};
use ebm_api::v1::{self, JobEvent, JobState};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// Reports a compute thread may queue before it waits for the store to catch up.
const REPORT_QUEUE: usize = 64;

/// Runs the job to its end; true when it stopped because its lease was lost.
pub(super) async fn run_claimed(shared: &Shared, claimed: ClaimedJob) -> bool {
    let ClaimedJob { lease, job } = claimed;
    let stop = StopSignal::default();
    shared.running.insert(&lease.job_id, stop.clone());
    let heartbeat = tokio::spawn(heartbeat::heartbeat_loop(
        shared.clone(),
        lease.clone(),
        stop.clone(),
    ));
    if job.cancel_requested {
        stop.request(StopReason::Cancel);
    }
    tracing::info!(job = %job.id, attempt = lease.attempt, kind = %job.kind, "job started");
    let (kind, tenant) = (job.kind.clone(), job.tenant.clone());
    let outcome = match prepare(shared, &job).await {
        Ok((spec, inputs)) => {
            let (reports, receiver) = mpsc::channel(REPORT_QUEUE);
            let ctx = JobContext::new(
                job,
                spec,
                inputs,
                shared.config.limits.clone(),
                shared.config.backend.clone(),
                stop.clone(),
                reports,
            );
            compute(shared, &lease, &stop, ctx, receiver).await
        }
        Err(message) => Outcome::Failed(message),
    };
    heartbeat.abort();
    shared.running.remove(&lease.job_id);
    record_outcome(shared, &lease, &tenant, &kind, &stop, outcome).await;
    stop.reason() == Some(StopReason::LeaseLost)
}

/// The job's spec and inputs, or why the job cannot run.
async fn prepare(
    shared: &Shared,
    job: &crate::store::JobRecord,
) -> Result<(v1::JobSpec, Inputs), String> {
    let spec: v1::JobSpec =
        serde_json::from_str(&job.spec).map_err(|e| format!("stored spec is unreadable: {e}"))?;
    let store = &shared.store;
    let failed = |e: StoreError| format!("loading the job's inputs failed: {e}");
    let mut inputs = Inputs::default();
    if !spec.dataset.is_empty() {
        let record = store
            .get_dataset(&job.tenant, &spec.dataset)
            .await
            .map_err(failed)?;
        let bytes = store
            .dataset_bytes(&job.tenant, &spec.dataset)
            .await
            .map_err(failed)?;
        match (record, bytes) {
            (Some(record), Some(bytes)) => inputs.dataset = Some((record, bytes)),
            _ => return Err(format!("data set {} no longer exists", spec.dataset)),
        }
    }
    let init_model = spec
        .model_config
        .as_ref()
        .map(|m| m.init_model.clone())
        .unwrap_or_default();
    for (id, slot) in [
        (&spec.model, &mut inputs.model),
        (&init_model, &mut inputs.init_model),
    ] {
        if id.is_empty() {
            continue;
        }
        let record = store.get_model(&job.tenant, id).await.map_err(failed)?;
        let bytes = store.model_bytes(&job.tenant, id).await.map_err(failed)?;
        match (record, bytes) {
            (Some(record), Some(bytes)) => *slot = Some((record, bytes)),
            _ => return Err(format!("model {id} no longer exists")),
        }
    }
    inputs.checkpoint = store.load_checkpoint(&job.id).await.map_err(failed)?;
    let log_z_job = spec
        .score
        .as_ref()
        .map(|s| s.log_z_job.as_str())
        .unwrap_or("");
    if spec.kind == "score" && !log_z_job.is_empty() {
        let estimate = store
            .get_job(&job.tenant, log_z_job)
            .await
            .map_err(failed)?
            .ok_or_else(|| format!("score.log_z_job {log_z_job} no longer exists"))?;
        inputs.log_z = Some(crate::jobs::score::log_z_of(&estimate, &spec.model)?);
    }
    Ok((spec, inputs))
}

/// Runs the computation on its own OS thread and stores its reports until it ends.
async fn compute(
    shared: &Shared,
    lease: &Lease,
    stop: &StopSignal,
    ctx: JobContext,
    mut reports: mpsc::Receiver<Report>,
) -> Outcome {
    let (done, finished) = oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name(format!("job-{}", &lease.job_id))
        .spawn(move || {
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| jobs::run(ctx)))
                .unwrap_or_else(|panic| {
                    let what = panic
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_default();
                    Outcome::Failed(format!("internal error in the engine: {what}"))
                });
            let _ = done.send(outcome);
        });
    if let Err(e) = spawned {
        return Outcome::Failed(format!("cannot start a compute thread: {e}"));
    }
    // The channel closes when the thread drops its context, i.e. when it is done. Reports
    // that queued up while the store was busy are written together.
    let mut batch = Vec::new();
    while reports.recv_many(&mut batch, REPORT_QUEUE).await > 0 {
        if stop.reason() != Some(StopReason::LeaseLost) {
            match store_reports(shared, lease, stop, &batch).await {
                Ok(()) => {}
                Err(StoreError::LeaseLost) => stop.request(StopReason::LeaseLost),
                Err(e) => {
                    tracing::warn!(job = %lease.job_id, error = %e, "storing job reports failed")
                }
            }
        }
        batch.clear();
    }
    finished
        .await
        .unwrap_or_else(|_| Outcome::Failed("the compute thread vanished".into()))
}

/// Stores a batch of reports: every metrics and log event, the latest progress, and the
/// latest checkpoint (an older one in the same batch is superseded; a cancelled job needs
/// none). The events are built (and counted in the process metrics) once; the two writes
/// are retried separately while the database is unreachable, so that a checkpoint that
/// fails after its events were stored does not store them twice.
async fn store_reports(
    shared: &Shared,
    lease: &Lease,
    stop: &StopSignal,
    reports: &[Report],
) -> Result<(), StoreError> {
    let mut events = Vec::new();
    let mut last_progress: Option<(f64, JobEvent)> = None;
    let mut checkpoint = None;
    let mut fraction = None;
    for report in reports {
        match report {
            &Report::Progress {
                fraction: f,
                epoch,
                epochs,
            } => {
                let event = JobEvent {
                    kind: "progress".into(),
                    progress: f,
                    epoch,
                    epochs,
                    ..Default::default()
                };
                last_progress = Some((f, event));
                fraction = Some(f);
            }
            Report::Metrics {
                epoch,
                epochs,
                metrics,
            } => {
                let (epoch, epochs) = (*epoch, *epochs);
                ::metrics::counter!(names::EPOCHS).increment(1);
                if let Some(rate) = metrics.get("samples_per_second") {
                    ::metrics::gauge!(names::SAMPLER_THROUGHPUT).set(*rate);
                }
                let f = if epochs > 0 {
                    f64::from(epoch) / f64::from(epochs)
                } else {
                    0.0
                };
                // A progress report older than these metrics says nothing new.
                last_progress = None;
                fraction = Some(f);
                events.push(JobEvent {
                    kind: "metrics".into(),
                    progress: f,
                    epoch,
                    epochs,
                    metrics: metrics.clone().into_iter().collect(),
                    ..Default::default()
                });
            }
            Report::Log(message) => events.push(JobEvent {
                kind: "log".into(),
                message: message.clone(),
                ..Default::default()
            }),
            Report::Checkpoint { epoch, data } => checkpoint = Some((*epoch, data)),
        }
    }
    events.extend(last_progress.map(|(_, event)| event));
    let store = &shared.store;
    if !events.is_empty() {
        retry_while_unreachable(lease, stop, "storing job events", || {
            store.append_events(lease, events.clone(), fraction)
        })
        .await?;
    }
    match checkpoint {
        Some(_) if stop.reason() == Some(StopReason::Cancel) => Ok(()),
        Some((epoch, data)) => {
            retry_while_unreachable(lease, stop, "storing a checkpoint", || {
                store.save_checkpoint(lease, epoch, data)
            })
            .await
        }
        None => Ok(()),
    }
}

/// Stores how the job ended (fenced by its lease).
async fn record_outcome(
    shared: &Shared,
    lease: &Lease,
    tenant: &str,
    kind: &str,
    stop: &StopSignal,
    outcome: Outcome,
) {
    let store = &shared.store;
    let finish = match outcome {
        Outcome::Succeeded {
            mut result,
            model,
            artifacts,
        } => {
            let model = model.map(|produced| {
                let id = new_id("mdl");
                result.model_id = id.clone();
                let record = ModelRecord {
                    id,
                    tenant: tenant.to_string(),
                    name: produced.name,
                    model_type: produced.model_type,
                    job_id: Some(lease.job_id.clone()),
                    size_bytes: produced.data.len() as i64,
                    dims: produced.dims,
                    metadata: produced.metadata,
                    created_at: now_ms(),
                };
                (record, produced.data)
            });
            Finish {
                state: Some(JobState::Succeeded),
                result: serde_json::to_string(&result).ok(),
                message: "succeeded".into(),
                model,
                artifacts,
                ..Default::default()
            }
        }
        Outcome::Failed(error) => Finish {
            state: Some(JobState::Failed),
            error: Some(error),
            ..Default::default()
        },
        Outcome::Stopped => match stop.reason() {
            Some(StopReason::Cancel) => Finish {
                state: Some(JobState::Cancelled),
                message: "cancelled while running".into(),
                ..Default::default()
            },
            Some(StopReason::Shutdown) => {
                match store
                    .requeue_job(
                        lease,
                        "server shutting down; requeued to resume from its checkpoint",
                    )
                    .await
                {
                    Ok(()) => tracing::info!(job = %lease.job_id, "job requeued for shutdown"),
                    Err(e) => tracing::warn!(job = %lease.job_id, error = %e, "requeue failed"),
                }
                return;
            }
            Some(StopReason::LeaseLost) => return,
            None => Finish {
                state: Some(JobState::Failed),
                error: Some("internal error: the job stopped without a reason".into()),
                ..Default::default()
            },
        },
    };
    let state = finish.state.unwrap_or(JobState::Failed);
    let stored = retry_while_unreachable(lease, stop, "storing the outcome", || {
        store.finish_job(lease, &finish)
    })
    .await;
    match stored {
        Ok(()) => {
            ::metrics::counter!(names::JOBS_FINISHED, "kind" => kind.to_string(), "state" => state.name())
                .increment(1);
            tracing::info!(job = %lease.job_id, state = state.name(), "job finished");
        }
        Err(StoreError::LeaseLost) => {
            tracing::warn!(job = %lease.job_id, "lease lost before the outcome was stored")
        }
        Err(e) => tracing::error!(job = %lease.job_id, error = %e, "storing the outcome failed"),
    }
}

/// How long a worker keeps retrying a write while the database is unreachable (a Postgres
/// restart or failover) before it gives up on that write.
const STORE_OUTAGE_LIMIT: Duration = Duration::from_secs(300);

/// Runs `write` until it succeeds or fails for a reason other than the database being
/// unreachable, waiting 0.2 s, doubling to 5 s, between tries, for at most
/// [`STORE_OUTAGE_LIMIT`]. Without this, a job's metrics, checkpoint or outcome written
/// during a database restart would be lost although the job itself keeps running. The
/// lease decides meanwhile: once the database is back, a lease that expired during the
/// outage makes the next fenced write fail with `LeaseLost`, and this attempt stops. (A
/// write whose commit went through but whose answer was lost with the connection is
/// repeated: for events that is a duplicate event, for an outcome the fence refuses the
/// second one.)
async fn retry_while_unreachable<T, F, Fut>(
    lease: &Lease,
    stop: &StopSignal,
    what: &str,
    mut write: F,
) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, StoreError>>,
{
    let started = Instant::now();
    let mut delay = Duration::from_millis(200);
    loop {
        match write().await {
            Err(e)
                if e.is_unreachable()
                    && started.elapsed() < STORE_OUTAGE_LIMIT
                    && !matches!(
                        stop.reason(),
                        Some(StopReason::LeaseLost | StopReason::Shutdown)
                    ) =>
            {
                tracing::warn!(job = %lease.job_id, error = %e, "{what} failed; retrying in {delay:?}");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            other => return other,
        }
    }
}
