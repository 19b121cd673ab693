//! `ebm.v1.DatasetService`: client-streaming upload (size checked while streaming, parsed
//! by the engine before it is stored), get, list, delete.
use super::{check_id, check_len, dataset_message, page_size, store_status, ApiState};
use crate::auth::tenant;
use crate::jobs::train::parse_limits;
use crate::store::{new_id, now_ms, DatasetRecord};
use ebm_api::v1::{self, dataset_service_server::DatasetService, upload_dataset_request::Part};
use ebm_engine::data::{parse_dataset, DataFormat};
use tonic::{Request, Response, Status, Streaming};

pub struct DatasetApi {
    pub state: ApiState,
}

/// The uploaded bytes, refused as soon as they pass `limit`.
pub async fn collect_upload<M>(
    stream: &mut Streaming<M>,
    limit: u64,
    what: &str,
    chunk_of: impl Fn(M) -> Result<Vec<u8>, Status>,
) -> Result<Vec<u8>, Status> {
    let mut data = Vec::new();
    while let Some(message) = stream.message().await? {
        let chunk = chunk_of(message)?;
        if (data.len() + chunk.len()) as u64 > limit {
            return Err(too_large(what, limit));
        }
        data.extend_from_slice(&chunk);
    }
    if data.is_empty() {
        return Err(Status::invalid_argument(format!(
            "the {what} is empty: send its bytes in chunk messages after the header"
        )));
    }
    Ok(data)
}

pub fn too_large(what: &str, limit: u64) -> Status {
    Status::invalid_argument(format!(
        "the {what} is larger than this server's limit of {limit} bytes \
         (limits.max_upload_bytes); upload a smaller file or raise the limit"
    ))
}

#[tonic::async_trait]
impl DatasetService for DatasetApi {
    async fn upload_dataset(
        &self,
        request: Request<Streaming<v1::UploadDatasetRequest>>,
    ) -> Result<Response<v1::Dataset>, Status> {
        let tenant = tenant(&request)?;
        let limits = self.state.config.limits.clone();
        let mut stream = request.into_inner();
        let header = match stream.message().await?.and_then(|m| m.part) {
            Some(Part::Header(header)) => header,
            _ => {
                return Err(Status::invalid_argument(
                    "the first upload message must carry the header (name and format)",
                ))
            }
        };
        check_len("name", &header.name, limits.max_name_len)?;
        let format = DataFormat::from_name(&header.format).map_err(super::engine_status)?;
        if header.size_bytes > limits.max_upload_bytes {
            return Err(too_large("data set", limits.max_upload_bytes));
        }
        let data = collect_upload(
            &mut stream,
            limits.max_upload_bytes,
            "data set",
            |m| match m.part {
                Some(Part::Chunk(chunk)) => Ok(chunk),
                _ => Err(Status::invalid_argument(
                    "only the first upload message may carry a header",
                )),
            },
        )
        .await?;
        let parse = parse_limits(&limits);
        let (data, parsed) = tokio::task::spawn_blocking(move || {
            let parsed = parse_dataset(format, &data, &parse);
            (data, parsed)
        })
        .await
        .map_err(|e| Status::internal(format!("parsing failed: {e}")))?;
        let parsed = parsed.map_err(super::engine_status)?;
        let id = new_id("ds");
        let record = DatasetRecord {
            name: if header.name.is_empty() {
                id.clone()
            } else {
                header.name
            },
            id,
            tenant,
            format: format.name().to_string(),
            rows: parsed.rows as i64,
            cols: parsed.cols as i64,
            value_kind: parsed.kind.name().to_string(),
            q: i64::from(parsed.q),
            size_bytes: data.len() as i64,
            notes: parsed.notes.join("; "),
            created_at: now_ms(),
        };
        let quota = self.state.quota(&record.tenant);
        self.state
            .store
            .insert_dataset_within(&record, &data, &quota)
            .await
            .map_err(store_status)?;
        tracing::info!(dataset = %record.id, rows = record.rows, cols = record.cols, "data set uploaded");
        Ok(Response::new(dataset_message(&record)))
    }

    async fn get_dataset(
        &self,
        request: Request<v1::GetDatasetRequest>,
    ) -> Result<Response<v1::Dataset>, Status> {
        let tenant = tenant(&request)?;
        let id = request.into_inner().id;
        check_id("id", &id, self.state.config.limits.max_name_len)?;
        let dataset = self
            .state
            .store
            .get_dataset(&tenant, &id)
            .await
            .map_err(store_status)?
            .ok_or_else(|| Status::not_found(format!("data set {id} not found")))?;
        Ok(Response::new(dataset_message(&dataset)))
    }

    async fn list_datasets(
        &self,
        request: Request<v1::ListDatasetsRequest>,
    ) -> Result<Response<v1::ListDatasetsResponse>, Status> {
        let tenant = tenant(&request)?;
        let request = request.into_inner();
        let limit = page_size(&self.state.config, request.page_size);
        let after = super::parse_page_token(&request.page_token)?;
        let datasets = self
            .state
            .store
            .list_datasets(&tenant, after, limit)
            .await
            .map_err(store_status)?;
        let next_page_token = super::next_page_token(
            datasets.len(),
            limit,
            datasets.last().map(|d| (d.created_at, d.id.as_str())),
        );
        Ok(Response::new(v1::ListDatasetsResponse {
            datasets: datasets.iter().map(dataset_message).collect(),
            next_page_token,
        }))
    }

    async fn delete_dataset(
        &self,
        request: Request<v1::DeleteDatasetRequest>,
    ) -> Result<Response<v1::DeleteDatasetResponse>, Status> {
        let tenant = tenant(&request)?;
        let id = request.into_inner().id;
        check_id("id", &id, self.state.config.limits.max_name_len)?;
        if self
            .state
            .store
            .delete_dataset(&tenant, &id)
            .await
            .map_err(store_status)?
        {
            Ok(Response::new(v1::DeleteDatasetResponse {}))
        } else {
            Err(Status::not_found(format!("data set {id} not found")))
        }
    }
}
