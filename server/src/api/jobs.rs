//! `ebm.v1.JobService`: submit (idempotent by request id, validated before queueing), get,
//! list, cancel, watch (replay then follow), and artifact downloads.
use super::labels::check_labels;
use super::{check_id, check_len, chunked, job_message, page_size, store_status, ApiState};
use crate::auth::tenant;
use crate::jobs::{self, StopReason};
use crate::store::{new_id, Labels, Submitted};
use ebm_api::v1::{self, job_service_server::JobService, JobState};
use ebm_engine::backend::BackendKind;
use ebm_engine::error::EngineError;
use sha2::{Digest, Sha256};
use std::pin::Pin;
use std::time::Duration;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

pub struct JobApi {
    pub state: ApiState,
}

type EventStream = Pin<Box<dyn Stream<Item = Result<v1::JobEvent, Status>> + Send>>;
type ChunkStream = Pin<Box<dyn Stream<Item = Result<v1::Chunk, Status>> + Send>>;

/// How often a WatchJob stream looks for events if no notification arrived.
const WATCH_POLL: Duration = Duration::from_millis(500);
/// Events read per query while replaying.
const WATCH_BATCH: u32 = 500;
const MAX_PRIORITY: i32 = 1000;

impl JobApi {
    /// Checks a spec against what it references and the limits, before it is queued.
    pub(crate) async fn validate(&self, tenant: &str, spec: &v1::JobSpec) -> Result<(), Status> {
        let limits = &self.state.config.limits;
        check_len("spec.name", &spec.name, limits.max_name_len)?;
        if !spec.backend.is_empty() && !["cpu", "wgpu", "cuda"].contains(&spec.backend.as_str()) {
            return Err(Status::invalid_argument(format!(
                "unknown backend {:?}: use cpu, wgpu or cuda (or leave it empty for the server's default)",
                spec.backend
            )));
        }
        // A backend this server was built without would only fail later, on a worker.
        if let Ok(backend) = BackendKind::from_name(&spec.backend) {
            if !backend.is_built() {
                return Err(Status::invalid_argument(backend.not_built_message()));
            }
        }
        match spec.kind.as_str() {
            "train" => {
                check_id(
                    "spec.dataset (the data set id)",
                    &spec.dataset,
                    limits.max_name_len,
                )?;
                let dataset = self
                    .state
                    .store
                    .get_dataset(tenant, &spec.dataset)
                    .await
                    .map_err(store_status)?
                    .ok_or_else(|| {
                        Status::not_found(format!(
                            "data set {} not found: upload it first (ebm datasets upload)",
                            spec.dataset
                        ))
                    })?;
                jobs::train::validate(spec, &dataset, limits).map_err(super::engine_status)?;
                let init_model = spec
                    .model_config
                    .as_ref()
                    .map(|m| m.init_model.as_str())
                    .unwrap_or("");
                if !init_model.is_empty() {
                    check_id("model.init_model", init_model, limits.max_name_len)?;
                    let init = self
                        .state
                        .store
                        .get_model(tenant, init_model)
                        .await
                        .map_err(store_status)?
                        .ok_or_else(|| {
                            Status::not_found(format!(
                                "model.init_model {init_model} not found: train or import it first (ebm models list)"
                            ))
                        })?;
                    jobs::train::validate_init_model(spec, &dataset, &init)
                        .map_err(super::engine_status)?;
                }
                if jobs::train::needs_values(spec, &dataset) {
                    let (id, spec, limits) = (&spec.dataset, spec.clone(), limits.clone());
                    self.check_values(tenant, id, move |bytes| {
                        jobs::train::validate_values(&spec, &dataset, bytes, &limits)
                    })
                    .await?;
                }
                Ok(())
            }
            kind @ ("estimate_log_z" | "sample" | "observe" | "score" | "scan") => {
                check_id(
                    "spec.model (the model id)",
                    &spec.model,
                    limits.max_name_len,
                )?;
                if spec.model.starts_with("ds_") {
                    return Err(Status::invalid_argument(format!(
                        "spec.model must be a model id (mdl_...), but {} is a data set id; \
                         a {kind} job reads a trained or imported model",
                        spec.model
                    )));
                }
                let model = self
                    .state
                    .store
                    .get_model(tenant, &spec.model)
                    .await
                    .map_err(store_status)?
                    .ok_or_else(|| {
                        Status::not_found(format!(
                            "model {} not found: train or import one first (ebm models list)",
                            spec.model
                        ))
                    })?;
                if !spec.dataset.is_empty() {
                    if !matches!(kind, "estimate_log_z" | "score") {
                        return Err(Status::invalid_argument(format!(
                            "a {kind} job takes no data set: remove spec.dataset"
                        )));
                    }
                    let dataset = self
                        .state
                        .store
                        .get_dataset(tenant, &spec.dataset)
                        .await
                        .map_err(store_status)?
                        .ok_or_else(|| {
                            Status::not_found(format!("data set {} not found", spec.dataset))
                        })?;
                    let units =
                        ebm_engine::estimate::job::units_from_dims(&model.model_type, &model.dims);
                    if units.is_some_and(|u| u != dataset.cols as u64) {
                        return Err(Status::invalid_argument(format!(
                            "data set {} has {} columns but model {} has {} units",
                            spec.dataset,
                            dataset.cols,
                            spec.model,
                            units.unwrap_or(0)
                        )));
                    }
                    if kind == "score" && jobs::score::needs_values(&model, &dataset) {
                        let (model, limits) = (model.clone(), limits.clone());
                        self.check_values(tenant, &spec.dataset, move |bytes| {
                            jobs::score::validate_values(&model, &dataset, bytes, &limits)
                        })
                        .await?;
                    }
                }
                let log_z_job = spec.score.as_ref().map(|s| s.log_z_job.as_str()).unwrap_or("");
                if kind == "score" && !log_z_job.is_empty() {
                    check_id("score.log_z_job", log_z_job, limits.max_name_len)?;
                    let estimate = self
                        .state
                        .store
                        .get_job(tenant, log_z_job)
                        .await
                        .map_err(store_status)?
                        .ok_or_else(|| {
                            Status::not_found(format!("score.log_z_job {log_z_job} not found"))
                        })?;
                    jobs::score::log_z_of(&estimate, &spec.model)
                        .map_err(Status::invalid_argument)?;
                }
                match kind {
                    "estimate_log_z" => jobs::estimate::validate(spec, &model),
                    "score" | "scan" => jobs::score::validate(spec, &model),
                    "sample" => jobs::sample::validate(spec, &model),
                    _ => jobs::observe::validate(spec, &model),
                }
                .map_err(super::engine_status)
            }
            "" => Err(Status::invalid_argument(
                "spec.kind is required: train, estimate_log_z, sample, observe, score or scan",
            )),
            other => Err(Status::invalid_argument(format!(
                "unknown job kind {other:?}: use train, estimate_log_z, sample, observe, score or scan"
            ))),
        }
    }
}

impl JobApi {
    /// Reads the values of data set `id` (bounded by the upload limit) and runs `check` on
    /// its stored bytes on a blocking thread: for submissions whose data set's value kind
    /// leaves open whether the values suit the model, so that they are refused now rather
    /// than failing after queueing.
    async fn check_values(
        &self,
        tenant: &str,
        id: &str,
        check: impl FnOnce(&[u8]) -> Result<(), EngineError> + Send + 'static,
    ) -> Result<(), Status> {
        let bytes = self
            .state
            .store
            .dataset_bytes(tenant, id)
            .await
            .map_err(store_status)?
            .ok_or_else(|| Status::not_found(format!("data set {id} not found")))?;
        tokio::task::spawn_blocking(move || check(&bytes))
            .await
            .map_err(|e| Status::internal(format!("checking the data failed: {e}")))?
            .map_err(super::engine_status)
    }

    /// Cancels one job (the path CancelJob and CancelSweep share).
    pub(crate) async fn cancel(
        &self,
        tenant: &str,
        id: &str,
    ) -> Result<crate::store::JobRecord, Status> {
        let job = self
            .state
            .store
            .cancel_job(tenant, id)
            .await
            .map_err(store_status)?
            .ok_or_else(|| Status::not_found(format!("job {id} not found")))?;
        if job.state == "running" {
            // Running here: stop it now; elsewhere, its heartbeat sees the stored flag.
            self.state.running.stop(id, StopReason::Cancel);
        }
        Ok(job)
    }
}

/// Hash of what makes two submissions the same job: the spec, the priority and the labels
/// (left out when there are none, which keeps the hashes of unlabelled jobs as they were).
pub(crate) fn spec_hash(spec_json: &str, priority: i32, labels: &Labels) -> String {
    let mut text = format!("{priority}\n{spec_json}");
    if !labels.is_empty() {
        text.push_str(&serde_json::to_string(labels).unwrap_or_default());
    }
    let digest = Sha256::digest(text.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

#[tonic::async_trait]
impl JobService for JobApi {
    async fn submit_job(
        &self,
        request: Request<v1::SubmitJobRequest>,
    ) -> Result<Response<v1::Job>, Status> {
        let tenant = tenant(&request)?;
        let request = request.into_inner();
        let limits = &self.state.config.limits;
        check_len("request_id", &request.request_id, limits.max_name_len)?;
        if request.priority.abs() > MAX_PRIORITY {
            return Err(Status::invalid_argument(format!(
                "priority must be between -{MAX_PRIORITY} and {MAX_PRIORITY}"
            )));
        }
        let spec = request
            .spec
            .ok_or_else(|| Status::invalid_argument("spec is required"))?;
        let labels = check_labels(&request.labels, 0, limits)?;
        self.validate(&tenant, &spec).await?;
        let spec_json = serde_json::to_string(&spec)
            .map_err(|e| Status::internal(format!("cannot encode the spec: {e}")))?;
        let hash = spec_hash(&spec_json, request.priority, &labels);
        let request_id = if request.request_id.is_empty() {
            new_id("req")
        } else {
            request.request_id
        };
        let new = crate::store::NewJob {
            tenant,
            request_id: request_id.clone(),
            spec_hash: hash.clone(),
            kind: spec.kind.clone(),
            spec: spec_json,
            priority: i64::from(request.priority),
        };
        let quota = self.state.quota(&new.tenant);
        let job = match self
            .state
            .store
            .submit_job_within(&new, &labels, &quota)
            .await
            .map_err(store_status)?
        {
            Submitted::Created(job) => {
                tracing::info!(job = %job.id, kind = %job.kind, "job submitted");
                job
            }
            Submitted::Existing(job) if job.spec_hash == hash => job,
            Submitted::Existing(job) => {
                return Err(Status::already_exists(format!(
                    "request_id {request_id:?} was already used for a different job ({}); \
                     use a new request_id to submit a different spec",
                    job.id
                )))
            }
        };
        Ok(Response::new(job_message(&job)?))
    }

    async fn get_job(
        &self,
        request: Request<v1::GetJobRequest>,
    ) -> Result<Response<v1::Job>, Status> {
        let tenant = tenant(&request)?;
        let id = request.into_inner().id;
        check_id("id", &id, self.state.config.limits.max_name_len)?;
        let job = self
            .state
            .store
            .get_job(&tenant, &id)
            .await
            .map_err(store_status)?
            .ok_or_else(|| Status::not_found(format!("job {id} not found")))?;
        Ok(Response::new(job_message(&job)?))
    }

    async fn list_jobs(
        &self,
        request: Request<v1::ListJobsRequest>,
    ) -> Result<Response<v1::ListJobsResponse>, Status> {
        let tenant = tenant(&request)?;
        let request = request.into_inner();
        let state = match JobState::try_from(request.state) {
            Ok(JobState::Unspecified) => None,
            Ok(state) => Some(state.name()),
            Err(_) => {
                return Err(Status::invalid_argument(format!(
                    "unknown state {}: use queued, running, succeeded, failed or cancelled",
                    request.state
                )))
            }
        };
        let labels = check_labels(&request.labels, 0, &self.state.config.limits)?;
        let limit = page_size(&self.state.config, request.page_size);
        let after = super::parse_page_token(&request.page_token)?;
        let jobs = self
            .state
            .store
            .list_labelled_jobs(&tenant, state, &labels, after, limit)
            .await
            .map_err(store_status)?;
        let next_page_token = super::next_page_token(
            jobs.len(),
            limit,
            jobs.last().map(|j| (j.created_at, j.id.as_str())),
        );
        Ok(Response::new(v1::ListJobsResponse {
            jobs: jobs.iter().map(job_message).collect::<Result<_, _>>()?,
            next_page_token,
        }))
    }

    async fn cancel_job(
        &self,
        request: Request<v1::CancelJobRequest>,
    ) -> Result<Response<v1::Job>, Status> {
        let tenant = tenant(&request)?;
        let id = request.into_inner().id;
        check_id("id", &id, self.state.config.limits.max_name_len)?;
        let job = self.cancel(&tenant, &id).await?;
        Ok(Response::new(job_message(&job)?))
    }

    type WatchJobStream = EventStream;

    async fn watch_job(
        &self,
        request: Request<v1::WatchJobRequest>,
    ) -> Result<Response<Self::WatchJobStream>, Status> {
        let tenant = tenant(&request)?;
        let request = request.into_inner();
        check_id("id", &request.id, self.state.config.limits.max_name_len)?;
        let store = self.state.store.clone();
        store
            .get_job(&tenant, &request.id)
            .await
            .map_err(store_status)?
            .ok_or_else(|| Status::not_found(format!("job {} not found", request.id)))?;
        let (sender, receiver) = tokio::sync::mpsc::channel(64);
        let shutdown = self.state.shutdown.clone();
        let mut announcements = store.subscribe_events();
        let (job_id, mut cursor) = (request.id, request.after_seq.max(0));
        tokio::spawn(async move {
            loop {
                let events = match store.events_after(&job_id, cursor, WATCH_BATCH).await {
                    Ok(events) => events,
                    Err(e) => {
                        let _ = sender.send(Err(store_status(e))).await;
                        return;
                    }
                };
                let full_batch = events.len() == WATCH_BATCH as usize;
                let mut ended = false;
                for event in events {
                    cursor = event.seq;
                    ended |= event.kind == "state" && event.state().is_terminal();
                    if sender.send(Ok(event)).await.is_err() {
                        return;
                    }
                }
                if ended {
                    return;
                }
                if full_batch {
                    continue;
                }
                // Nothing more to replay: a finished job whose end the client already saw
                // (after_seq past it) ends the stream too.
                match store.get_job(&tenant, &job_id).await {
                    Ok(Some(job)) if job.job_state().is_terminal() && job.last_seq <= cursor => {
                        return
                    }
                    Ok(Some(_)) => {}
                    Ok(None) => return,
                    Err(e) => {
                        let _ = sender.send(Err(store_status(e))).await;
                        return;
                    }
                }
                let wait_for_news = async {
                    loop {
                        match announcements.recv().await {
                            Ok(id) if id == job_id => return,
                            Ok(_) => {}
                            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => return,
                            Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                                std::future::pending::<()>().await
                            }
                        }
                    }
                };
                tokio::select! {
                    _ = wait_for_news => {}
                    _ = tokio::time::sleep(WATCH_POLL) => {}
                    _ = sender.closed() => return,
                    _ = shutdown.cancelled() => {
                        let _ = sender
                            .send(Err(Status::unavailable("the server is shutting down; reconnect with after_seq")))
                            .await;
                        return;
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(receiver),
        )))
    }

    type DownloadArtifactStream = ChunkStream;

    async fn download_artifact(
        &self,
        request: Request<v1::DownloadArtifactRequest>,
    ) -> Result<Response<Self::DownloadArtifactStream>, Status> {
        let tenant = tenant(&request)?;
        let request = request.into_inner();
        let max_len = self.state.config.limits.max_name_len;
        check_id("job_id", &request.job_id, max_len)?;
        check_id("name", &request.name, max_len)?;
        let data = self
            .state
            .store
            .artifact_bytes(&tenant, &request.job_id, &request.name)
            .await
            .map_err(store_status)?
            .ok_or_else(|| {
                Status::not_found(format!(
                    "job {} has no artifact named {:?}",
                    request.job_id, request.name
                ))
            })?;
        let chunk = self.state.config.limits.download_chunk_bytes;
        Ok(Response::new(Box::pin(chunked(data, chunk))))
    }
}
