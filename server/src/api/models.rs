//! `ebm.v1.ModelService`: get, list, download (a stream of chunks of at most 1 MiB), and
//! import of a safetensors file validated by the engine.
use super::datasets::{collect_upload, too_large};
use super::{check_id, check_len, chunked, model_message, page_size, store_status, ApiState};
use crate::auth::tenant;
use crate::store::{new_id, now_ms, ModelRecord};
use ebm_api::v1::{self, import_model_request::Part, model_service_server::ModelService};
use ebm_engine::model_import::import_model;
use std::pin::Pin;
use tokio_stream::Stream;
use tonic::{Request, Response, Status, Streaming};

pub struct ModelApi {
    pub state: ApiState,
}

type ChunkStream = Pin<Box<dyn Stream<Item = Result<v1::Chunk, Status>> + Send>>;

#[tonic::async_trait]
impl ModelService for ModelApi {
    async fn get_model(
        &self,
        request: Request<v1::GetModelRequest>,
    ) -> Result<Response<v1::Model>, Status> {
        let tenant = tenant(&request)?;
        let id = request.into_inner().id;
        check_id("id", &id, self.state.config.limits.max_name_len)?;
        let model = self
            .state
            .store
            .get_model(&tenant, &id)
            .await
            .map_err(store_status)?
            .ok_or_else(|| Status::not_found(format!("model {id} not found")))?;
        Ok(Response::new(model_message(&model)))
    }

    async fn list_models(
        &self,
        request: Request<v1::ListModelsRequest>,
    ) -> Result<Response<v1::ListModelsResponse>, Status> {
        let tenant = tenant(&request)?;
        let request = request.into_inner();
        let limit = page_size(&self.state.config, request.page_size);
        let after = super::parse_page_token(&request.page_token)?;
        let models = self
            .state
            .store
            .list_models(&tenant, after, limit)
            .await
            .map_err(store_status)?;
        let next_page_token = super::next_page_token(
            models.len(),
            limit,
            models.last().map(|m| (m.created_at, m.id.as_str())),
        );
        Ok(Response::new(v1::ListModelsResponse {
            models: models.iter().map(model_message).collect(),
            next_page_token,
        }))
    }

    type DownloadModelStream = ChunkStream;

    async fn download_model(
        &self,
        request: Request<v1::DownloadModelRequest>,
    ) -> Result<Response<Self::DownloadModelStream>, Status> {
        let tenant = tenant(&request)?;
        let id = request.into_inner().id;
        check_id("id", &id, self.state.config.limits.max_name_len)?;
        let data = self
            .state
            .store
            .model_bytes(&tenant, &id)
            .await
            .map_err(store_status)?
            .ok_or_else(|| Status::not_found(format!("model {id} not found")))?;
        let chunk = self.state.config.limits.download_chunk_bytes;
        Ok(Response::new(Box::pin(chunked(data, chunk))))
    }

    async fn import_model(
        &self,
        request: Request<Streaming<v1::ImportModelRequest>>,
    ) -> Result<Response<v1::Model>, Status> {
        let tenant = tenant(&request)?;
        let limits = self.state.config.limits.clone();
        let mut stream = request.into_inner();
        let header = match stream.message().await?.and_then(|m| m.part) {
            Some(Part::Header(header)) => header,
            _ => {
                return Err(Status::invalid_argument(
                    "the first import message must carry the header (type and name)",
                ))
            }
        };
        check_len("name", &header.name, limits.max_name_len)?;
        check_len("type", &header.r#type, limits.max_name_len)?;
        if header.size_bytes > limits.max_upload_bytes {
            return Err(too_large("model file", limits.max_upload_bytes));
        }
        let data = collect_upload(
            &mut stream,
            limits.max_upload_bytes,
            "model file",
            |m| match m.part {
                Some(Part::Chunk(chunk)) => Ok(chunk),
                _ => Err(Status::invalid_argument(
                    "only the first import message may carry a header",
                )),
            },
        )
        .await?;
        let expected = header.r#type.clone();
        // Converting float64/16 tensors and checking every value is CPU work on a large file.
        let imported = tokio::task::spawn_blocking(move || import_model(data, &expected))
            .await
            .map_err(|e| Status::internal(format!("inspecting the model failed: {e}")))?
            .map_err(super::engine_status)?;
        let (data, info) = (imported.bytes, imported.info);
        let id = new_id("mdl");
        let record = ModelRecord {
            name: if header.name.is_empty() {
                id.clone()
            } else {
                header.name
            },
            id,
            tenant,
            model_type: info.model_type,
            job_id: None,
            size_bytes: data.len() as i64,
            dims: info.dims,
            metadata: info.metadata,
            created_at: now_ms(),
        };
        let quota = self.state.quota(&record.tenant);
        self.state
            .store
            .insert_model_within(&record, &data, &quota)
            .await
            .map_err(store_status)?;
        tracing::info!(model = %record.id, r#type = %record.model_type, "model imported");
        Ok(Response::new(model_message(&record)))
    }

    async fn get_contacts(
        &self,
        request: Request<v1::GetContactsRequest>,
    ) -> Result<Response<v1::Contacts>, Status> {
        let tenant = tenant(&request)?;
        let request = request.into_inner();
        let limits = &self.state.config.limits;
        check_id("id", &request.id, limits.max_name_len)?;
        let model = self
            .state
            .store
            .get_model(&tenant, &request.id)
            .await
            .map_err(store_status)?
            .ok_or_else(|| Status::not_found(format!("model {} not found", request.id)))?;
        if model.model_type != "potts" {
            return Err(Status::invalid_argument(format!(
                "contacts are read from the couplings of a potts model; model {} is a {}",
                model.id, model.model_type
            )));
        }
        let sites = model.dims.get("sites").copied().unwrap_or(0);
        let max = limits.max_result_values;
        let pair_total = sites.saturating_mul(sites.saturating_sub(1)) / 2;
        let wanted = if request.top == 0 {
            pair_total
        } else {
            u64::from(request.top).min(pair_total)
        };
        if wanted > max {
            return Err(Status::invalid_argument(format!(
                "{wanted} contact pairs asked for; at most {max} come back in one answer \
                 (limits.max_result_values): ask for fewer with top"
            )));
        }
        if request.include_matrix && sites.saturating_mul(sites) > max {
            return Err(Status::invalid_argument(format!(
                "a contact matrix of {sites} x {sites} values is more than the {max} one answer \
                 may carry (limits.max_result_values): leave out include_matrix"
            )));
        }
        let data = self
            .state
            .store
            .model_bytes(&tenant, &request.id)
            .await
            .map_err(store_status)?
            .ok_or_else(|| Status::not_found(format!("model {} not found", request.id)))?;
        let (top, separation, include_matrix) = (
            (request.top > 0).then_some(request.top as usize),
            request.min_separation as usize,
            request.include_matrix,
        );
        let model_id = model.id.clone();
        let contacts = tokio::task::spawn_blocking(move || {
            let map = ebm_engine::potts::contacts::contacts_from_file(&data)?;
            let pairs = map.ranked(separation, top);
            Ok::<_, ebm_engine::EngineError>(v1::Contacts {
                model_id,
                sites: map.sites as u32,
                q: map.q as u32,
                total_pairs: map.pair_count(separation) as u64,
                pairs: pairs
                    .iter()
                    .map(|p| v1::ContactPair {
                        i: p.i as u32,
                        j: p.j as u32,
                        score: p.score,
                        frobenius: p.frobenius,
                    })
                    .collect(),
                matrix: if include_matrix {
                    map.apc.iter().map(|&x| x as f32).collect()
                } else {
                    Vec::new()
                },
            })
        })
        .await
        .map_err(|e| Status::internal(format!("computing contacts failed: {e}")))?
        .map_err(super::engine_status)?;
        Ok(Response::new(contacts))
    }
}
