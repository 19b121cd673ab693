//! The gRPC services, one module each, kept thin: check the request, call the store (and
//! the engine's validators), convert records to API messages. Shared here: the services'
//! state, status mapping, page tokens and record conversions.
pub mod datasets;
pub mod grid;
pub mod jobs;
pub mod labels;
pub mod models;
pub mod sweeps;

use crate::config::Config;
use crate::scheduler::RunningJobs;
use crate::store::{rfc3339, DatasetRecord, JobRecord, ModelRecord, Store, StoreError};
use ebm_api::v1;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use tonic::Status;

/// What every service needs.
#[derive(Clone)]
pub struct ApiState {
    pub store: Store,
    pub config: Arc<Config>,
    /// Fires when the server shuts down: live streams end.
    pub shutdown: CancellationToken,
    /// Jobs running in this process, for an immediate in-process cancel.
    pub running: RunningJobs,
}

/// Store failures are the server's fault: log the details, tell the client little.
pub fn store_status(error: StoreError) -> Status {
    if let StoreError::QuotaExceeded(message) = error {
        return Status::resource_exhausted(message);
    }
    if error.is_unreachable() {
        tracing::warn!(error = %error, "database unreachable");
        return Status::unavailable(format!(
            "the server's database is unreachable ({error}); retry shortly"
        ));
    }
    tracing::error!(error = %error, "store error");
    Status::internal(format!("the server's database failed: {error}"))
}

impl ApiState {
    /// The queued-jobs and stored-bytes limits of `tenant` (`[quotas]` and its overrides).
    pub fn quota(&self, tenant: &str) -> crate::store::Quota {
        let limits = self.config.quotas.for_tenant(tenant);
        crate::store::Quota {
            max_queued_jobs: limits.max_queued_jobs,
            max_stored_bytes: limits.max_stored_bytes,
        }
    }
}

/// Engine errors on client input become INVALID_ARGUMENT with the engine's message.
pub fn engine_status(error: ebm_engine::error::EngineError) -> Status {
    use ebm_engine::error::EngineError;
    match error {
        EngineError::InvalidInput(message) => Status::invalid_argument(message),
        EngineError::Diverged(message) => Status::failed_precondition(message),
        EngineError::Interrupted => Status::aborted("interrupted"),
        EngineError::Internal(message) => Status::internal(message),
    }
}

/// Checks a client-supplied id or name: non-empty (if required) and bounded.
pub fn check_id(what: &str, value: &str, max_len: usize) -> Result<(), Status> {
    if value.is_empty() {
        return Err(Status::invalid_argument(format!("{what} is required")));
    }
    check_len(what, value, max_len)
}

pub fn check_len(what: &str, value: &str, max_len: usize) -> Result<(), Status> {
    if value.len() > max_len {
        return Err(Status::invalid_argument(format!(
            "{what} is {} bytes long; the limit is {max_len}",
            value.len()
        )));
    }
    Ok(())
}

/// Page size to use: the default for 0, else the request's, bounded by the limit.
pub fn page_size(config: &Config, requested: u32) -> u32 {
    match requested {
        0 => config.limits.default_page_size,
        n => n.min(config.limits.max_page_size),
    }
}

/// Page tokens are the keyset cursor "created_at_ms.id" of the last item of a page.
pub fn parse_page_token(token: &str) -> Result<Option<(i64, String)>, Status> {
    if token.is_empty() {
        return Ok(None);
    }
    let bad = || {
        Status::invalid_argument("page_token is not one this server issued; pass the next_page_token of the previous page")
    };
    let (time, id) = token.split_once('.').ok_or_else(bad)?;
    let time: i64 = time.parse().map_err(|_| bad())?;
    if id.is_empty() || id.len() > 128 {
        return Err(bad());
    }
    Ok(Some((time, id.to_string())))
}

/// The next page's token, if the page was full.
pub fn next_page_token(page_len: usize, limit: u32, last: Option<(i64, &str)>) -> String {
    match last {
        Some((time, id)) if page_len >= limit as usize => format!("{time}.{id}"),
        _ => String::new(),
    }
}

fn optional_time(ms: Option<i64>) -> String {
    ms.map(rfc3339).unwrap_or_default()
}

/// A job record as the API shows it.
pub fn job_message(job: &JobRecord) -> Result<v1::Job, Status> {
    let spec: v1::JobSpec = serde_json::from_str(&job.spec)
        .map_err(|e| Status::internal(format!("stored spec of {} is unreadable: {e}", job.id)))?;
    let result = match &job.result {
        Some(text) => Some(serde_json::from_str::<v1::JobResult>(text).map_err(|e| {
            Status::internal(format!("stored result of {} is unreadable: {e}", job.id))
        })?),
        None => None,
    };
    Ok(v1::Job {
        id: job.id.clone(),
        state: job.job_state() as i32,
        spec: Some(spec),
        request_id: job.request_id.clone(),
        priority: job.priority as i32,
        attempt: job.attempt as u32,
        created_at: rfc3339(job.created_at),
        started_at: optional_time(job.started_at),
        finished_at: optional_time(job.finished_at),
        progress: job.progress,
        error: job.error.clone().unwrap_or_default(),
        result,
        cancel_requested: job.cancel_requested,
        labels: job.labels.clone().into_iter().collect(),
    })
}

pub fn dataset_message(dataset: &DatasetRecord) -> v1::Dataset {
    v1::Dataset {
        id: dataset.id.clone(),
        name: dataset.name.clone(),
        format: dataset.format.clone(),
        rows: dataset.rows as u64,
        cols: dataset.cols as u64,
        value_kind: dataset.value_kind.clone(),
        q: dataset.q as u32,
        size_bytes: dataset.size_bytes as u64,
        created_at: rfc3339(dataset.created_at),
        notes: dataset.notes.clone(),
    }
}

pub fn model_message(model: &ModelRecord) -> v1::Model {
    v1::Model {
        id: model.id.clone(),
        r#type: model.model_type.clone(),
        name: model.name.clone(),
        job_id: model.job_id.clone().unwrap_or_default(),
        created_at: rfc3339(model.created_at),
        size_bytes: model.size_bytes as u64,
        dims: model.dims.clone().into_iter().collect(),
        metadata: model.metadata.clone().into_iter().collect(),
    }
}

/// A byte buffer as a stream of chunks of at most `chunk` bytes.
pub fn chunked(
    data: Vec<u8>,
    chunk: usize,
) -> impl tokio_stream::Stream<Item = Result<v1::Chunk, Status>> + Send + 'static {
    let chunks: Vec<Result<v1::Chunk, Status>> = data
        .chunks(chunk.max(1))
        .map(|c| Ok(v1::Chunk { data: c.to_vec() }))
        .collect();
    tokio_stream::iter(chunks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_tokens_round_trip_and_refuse_junk() {
        let token = next_page_token(2, 2, Some((17, "job_x")));
        assert_eq!(
            parse_page_token(&token).unwrap(),
            Some((17, "job_x".into()))
        );
        assert_eq!(next_page_token(1, 2, Some((17, "job_x"))), "");
        assert_eq!(parse_page_token("").unwrap(), None);
        for junk in ["x", "1.", "a.b", ".job"] {
            assert_eq!(
                parse_page_token(junk).unwrap_err().code(),
                tonic::Code::InvalidArgument
            );
        }
    }
}
