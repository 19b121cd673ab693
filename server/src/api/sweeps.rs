//! `ebm.v1.SweepService`: submit a grid of variants as one idempotent request (expanded and
//! checked here, each variant validated like a SubmitJob, all queued in one transaction),
//! read a sweep with its jobs, list sweeps, and cancel every unfinished job of a sweep.
use super::grid::{self, Variant};
use super::jobs::{spec_hash, JobApi};
use super::labels::{check_labels, SEED_KEY, SWEEP_KEY};
use super::{check_id, check_len, job_message, page_size, store_status, ApiState};
use crate::auth::tenant;
use crate::store::{new_id, JobRecord, Labels, NewJob, NewVariant, SweepRecord, SweepSubmitted};
use ebm_api::v1::{self, sweep_service_server::SweepService};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use tonic::{Request, Response, Status};

pub struct SweepApi {
    pub state: ApiState,
}

const MAX_PRIORITY: i32 = 1000;

/// Hash of what makes two sweep submissions the same sweep.
fn sweep_hash(spec: &str, grid: &str, labels: &str, seeds: u32, priority: i32) -> String {
    let text = format!("{priority}\n{seeds}\n{spec}\n{grid}\n{labels}");
    let digest = Sha256::digest(text.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

fn encode<T: serde::Serialize>(value: &T) -> Result<String, Status> {
    serde_json::to_string(value).map_err(|e| Status::internal(format!("cannot encode: {e}")))
}

fn corrupt(what: &str, id: &str, e: serde_json::Error) -> Status {
    Status::internal(format!("stored {what} of sweep {id} is unreadable: {e}"))
}

/// A sweep record (and, if given, its jobs) as the API shows it.
fn sweep_message(sweep: &SweepRecord, jobs: &[JobRecord]) -> Result<v1::Sweep, Status> {
    let spec: v1::JobSpec =
        serde_json::from_str(&sweep.spec).map_err(|e| corrupt("spec", &sweep.id, e))?;
    let grid: Vec<v1::GridAxis> =
        serde_json::from_str(&sweep.grid).map_err(|e| corrupt("grid", &sweep.id, e))?;
    let labels: HashMap<String, String> =
        serde_json::from_str(&sweep.labels).map_err(|e| corrupt("labels", &sweep.id, e))?;
    let mut job_states = HashMap::new();
    for job in jobs {
        *job_states.entry(job.state.clone()).or_insert(0) += 1;
    }
    Ok(v1::Sweep {
        id: sweep.id.clone(),
        spec: Some(spec),
        grid,
        seeds: sweep.seeds as u32,
        request_id: sweep.request_id.clone(),
        created_at: crate::store::rfc3339(sweep.created_at),
        priority: sweep.priority as i32,
        labels,
        jobs: jobs.iter().map(job_message).collect::<Result<_, _>>()?,
        variants: sweep.variants as u32,
        job_states,
    })
}

impl SweepApi {
    async fn sweep_with_jobs(&self, tenant: &str, id: &str) -> Result<v1::Sweep, Status> {
        check_id("id", id, self.state.config.limits.max_name_len)?;
        let store = &self.state.store;
        let sweep = store
            .get_sweep(tenant, id)
            .await
            .map_err(store_status)?
            .ok_or_else(|| Status::not_found(format!("sweep {id} not found")))?;
        let jobs = store.sweep_jobs(tenant, id).await.map_err(store_status)?;
        sweep_message(&sweep, &jobs)
    }

    fn job_api(&self) -> JobApi {
        JobApi {
            state: self.state.clone(),
        }
    }
}

#[tonic::async_trait]
impl SweepService for SweepApi {
    async fn submit_sweep(
        &self,
        request: Request<v1::SubmitSweepRequest>,
    ) -> Result<Response<v1::Sweep>, Status> {
        let tenant = tenant(&request)?;
        let request = request.into_inner();
        let limits = &self.state.config.limits;
        check_len("request_id", &request.request_id, limits.max_name_len)?;
        if request.priority.abs() > MAX_PRIORITY {
            return Err(Status::invalid_argument(format!(
                "priority must be between -{MAX_PRIORITY} and {MAX_PRIORITY}"
            )));
        }
        let base = request
            .spec
            .ok_or_else(|| Status::invalid_argument("spec is required"))?;
        let added = 1 + request.grid.len() + usize::from(request.seeds > 0);
        let labels = check_labels(&request.labels, added, limits)?;
        for key in labels.keys() {
            let reserved = [SWEEP_KEY, SEED_KEY].contains(&key.as_str())
                || request.grid.iter().any(|a| a.field.trim() == key);
            if reserved {
                return Err(Status::invalid_argument(format!(
                    "label {key:?} is set by the sweep itself (sweep id, seed, grid fields): use another key"
                )));
            }
        }
        let variants = grid::expand(&base, &request.grid, request.seeds, limits)?;
        let job_api = self.job_api();
        for (index, Variant { spec, labels }) in variants.iter().enumerate() {
            if let Err(status) = job_api.validate(&tenant, spec).await {
                let place: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                return Err(Status::new(
                    status.code(),
                    format!(
                        "sweep variant {index} ({}): {}",
                        place.join(", "),
                        status.message()
                    ),
                ));
            }
        }
        let spec_json = encode(&base)?;
        let grid_json = encode(&request.grid)?;
        let labels_json = encode(&labels)?;
        let hash = sweep_hash(
            &spec_json,
            &grid_json,
            &labels_json,
            request.seeds,
            request.priority,
        );
        let request_id = if request.request_id.is_empty() {
            new_id("req")
        } else {
            request.request_id
        };
        let sweep_id = new_id("swp");
        let mut new_variants = Vec::with_capacity(variants.len());
        for (index, variant) in variants.into_iter().enumerate() {
            let mut job_labels: Labels = labels.clone();
            job_labels.extend(variant.labels);
            job_labels.insert(SWEEP_KEY.into(), sweep_id.clone());
            let spec = encode(&variant.spec)?;
            new_variants.push(NewVariant {
                job_id: new_id("job"),
                job: NewJob {
                    tenant: tenant.clone(),
                    request_id: format!("{sweep_id}/{index}"),
                    spec_hash: spec_hash(&spec, request.priority, &job_labels),
                    kind: variant.spec.kind.clone(),
                    spec,
                    priority: i64::from(request.priority),
                },
                labels: job_labels,
            });
        }
        let record = SweepRecord {
            id: sweep_id,
            tenant: tenant.clone(),
            request_id: request_id.clone(),
            spec_hash: hash.clone(),
            spec: spec_json,
            grid: grid_json,
            labels: labels_json,
            seeds: i64::from(request.seeds),
            priority: i64::from(request.priority),
            variants: new_variants.len() as i64,
            created_at: 0,
        };
        let quota = self.state.quota(&record.tenant);
        let sweep = match self
            .state
            .store
            .submit_sweep_within(&record, &new_variants, &quota)
            .await
            .map_err(store_status)?
        {
            SweepSubmitted::Created(sweep) => {
                tracing::info!(sweep = %sweep.id, variants = sweep.variants, "sweep submitted");
                sweep
            }
            SweepSubmitted::Existing(sweep) if sweep.spec_hash == hash => sweep,
            SweepSubmitted::Existing(sweep) => {
                return Err(Status::already_exists(format!(
                    "request_id {request_id:?} was already used for a different sweep ({}); \
                     use a new request_id to submit a different sweep",
                    sweep.id
                )))
            }
        };
        Ok(Response::new(
            self.sweep_with_jobs(&tenant, &sweep.id).await?,
        ))
    }

    async fn get_sweep(
        &self,
        request: Request<v1::GetSweepRequest>,
    ) -> Result<Response<v1::Sweep>, Status> {
        let tenant = tenant(&request)?;
        let id = request.into_inner().id;
        Ok(Response::new(self.sweep_with_jobs(&tenant, &id).await?))
    }

    async fn list_sweeps(
        &self,
        request: Request<v1::ListSweepsRequest>,
    ) -> Result<Response<v1::ListSweepsResponse>, Status> {
        let tenant = tenant(&request)?;
        let request = request.into_inner();
        let limit = page_size(&self.state.config, request.page_size);
        let after = super::parse_page_token(&request.page_token)?;
        let store = &self.state.store;
        let sweeps = store
            .list_sweeps(&tenant, after, limit)
            .await
            .map_err(store_status)?;
        let mut messages = Vec::with_capacity(sweeps.len());
        for sweep in &sweeps {
            let mut message = sweep_message(sweep, &[])?;
            message.job_states = store
                .sweep_job_states(&sweep.id)
                .await
                .map_err(store_status)?
                .into_iter()
                .map(|(state, n)| (state, n as u32))
                .collect();
            messages.push(message);
        }
        let next_page_token = super::next_page_token(
            sweeps.len(),
            limit,
            sweeps.last().map(|s| (s.created_at, s.id.as_str())),
        );
        Ok(Response::new(v1::ListSweepsResponse {
            sweeps: messages,
            next_page_token,
        }))
    }

    async fn cancel_sweep(
        &self,
        request: Request<v1::CancelSweepRequest>,
    ) -> Result<Response<v1::Sweep>, Status> {
        let tenant = tenant(&request)?;
        let id = request.into_inner().id;
        let sweep = self.sweep_with_jobs(&tenant, &id).await?;
        let job_api = self.job_api();
        for job in &sweep.jobs {
            if !job.state().is_terminal() && !job.cancel_requested {
                job_api.cancel(&tenant, &job.id).await?;
            }
        }
        tracing::info!(sweep = %id, "sweep cancelled");
        Ok(Response::new(self.sweep_with_jobs(&tenant, &id).await?))
    }
}
