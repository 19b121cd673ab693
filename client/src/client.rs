//! The `Client`: one method per RPC of the job, data-set and model services. Every call carries
//! the bearer token as `authorization` metadata; uploads stream files in `CHUNK_BYTES` pieces;
//! downloads collect the server's chunk stream; list calls come with helpers that follow page
//! tokens to the end.
use crate::error::{tls_problem, ClientError, Result};
use crate::transport::{Explained, TlsContext};
use ebm_api::v1::{
    self, dataset_service_client::DatasetServiceClient, job_service_client::JobServiceClient,
    model_service_client::ModelServiceClient, sweep_service_client::SweepServiceClient,
    upload_dataset_request, Chunk, Dataset, Job, JobSpec, JobState, Model,
};
use futures_util::{Stream, StreamExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

/// Size of the pieces uploads are cut into (well under gRPC's 4 MiB message limit).
pub const CHUNK_BYTES: usize = 256 * 1024;
/// Largest single message the client accepts from the server.
const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;
/// Page size the "all pages" helpers ask for.
const PAGE_SIZE: u32 = 100;

/// The caller's request id, or a fresh UUID.
pub(crate) fn request_id_or_fresh(request_id: Option<String>) -> String {
    request_id
        .filter(|r| !r.is_empty())
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}

/// Adds `authorization: Bearer <token>` to every request, if a token was given.
#[derive(Clone)]
pub struct BearerToken(Option<MetadataValue<Ascii>>);

impl tonic::service::Interceptor for BearerToken {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

type Authed = InterceptedService<Explained, BearerToken>;

/// A connection to an `ebm-server`. Cheap to clone (clones share one HTTP/2 connection).
#[derive(Clone)]
pub struct Client {
    url: String,
    jobs: JobServiceClient<Authed>,
    datasets: DatasetServiceClient<Authed>,
    models: ModelServiceClient<Authed>,
    pub(crate) sweeps: SweepServiceClient<Authed>,
}

/// Data-set file formats the server parses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DatasetFormat {
    Npy,
    Csv,
    Fasta,
}

impl DatasetFormat {
    pub fn name(self) -> &'static str {
        match self {
            DatasetFormat::Npy => "npy",
            DatasetFormat::Csv => "csv",
            DatasetFormat::Fasta => "fasta",
        }
    }

    pub fn from_name(name: &str) -> Result<Self> {
        match name.to_ascii_lowercase().as_str() {
            "npy" => Ok(DatasetFormat::Npy),
            "csv" => Ok(DatasetFormat::Csv),
            "fasta" | "fa" | "a2m" | "afa" => Ok(DatasetFormat::Fasta),
            other => Err(ClientError::Invalid(format!(
                "unknown data-set format {other:?}: use npy, csv or fasta"
            ))),
        }
    }

    /// The format named by a file's extension (`.npy`, `.csv`, `.fasta`/`.fa`/`.a2m`/`.afa`).
    pub fn from_path(path: &Path) -> Result<Self> {
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        DatasetFormat::from_name(ext).map_err(|_| {
            ClientError::Invalid(format!(
                "cannot tell the format of {} from its extension: pass --format npy|csv|fasta",
                path.display()
            ))
        })
    }
}

/// TLS settings of a connection to an `https://` URL. Without `ca_cert` the server's
/// certificate must be signed by a public CA (Mozilla's list, built in).
#[derive(Clone, Debug, Default)]
pub struct TlsOptions {
    /// PEM file with the CA certificate(s) that sign the server's certificate (a private CA).
    pub ca_cert: Option<PathBuf>,
    /// PEM client certificate chain, for servers that require one (mutual TLS).
    pub client_cert: Option<PathBuf>,
    /// PEM private key of `client_cert`.
    pub client_key: Option<PathBuf>,
}

impl TlsOptions {
    fn is_empty(&self) -> bool {
        self.ca_cert.is_none() && self.client_cert.is_none() && self.client_key.is_none()
    }

    fn read(what: &str, path: &Path) -> Result<Vec<u8>> {
        std::fs::read(path)
            .map_err(|e| ClientError::io(format!("cannot read the {what} {}", path.display()), e))
    }

    /// The rustls configuration these options describe.
    fn client_config(&self) -> Result<ClientTlsConfig> {
        let mut config = ClientTlsConfig::new();
        config = match &self.ca_cert {
            Some(path) => {
                config.ca_certificate(Certificate::from_pem(Self::read("CA certificate", path)?))
            }
            None => config.with_webpki_roots(),
        };
        match (&self.client_cert, &self.client_key) {
            (Some(cert), Some(key)) => Ok(config.identity(Identity::from_pem(
                Self::read("client certificate", cert)?,
                Self::read("client key", key)?,
            ))),
            (None, None) => Ok(config),
            _ => Err(ClientError::Invalid(
                "--client-cert and --client-key go together: give both or neither".into(),
            )),
        }
    }
}

impl Client {
    /// Connects to `url` (e.g. `http://127.0.0.1:50051`; a missing scheme means `http://`),
    /// failing with [`ClientError::Unreachable`] if nothing answers within five seconds.
    pub async fn connect(url: impl Into<String>, token: Option<String>) -> Result<Client> {
        Client::connect_with(url, token, &TlsOptions::default()).await
    }

    /// [`Client::connect`] with TLS settings: an `https://` URL is served over TLS, checked
    /// against `tls.ca_cert` (or the public CAs), with `tls.client_cert` for mutual TLS.
    pub async fn connect_with(
        url: impl Into<String>,
        token: Option<String>,
        tls: &TlsOptions,
    ) -> Result<Client> {
        let mut url = url.into();
        if !url.contains("://") {
            url = format!("http://{url}");
        }
        let bad_url = |detail: String| ClientError::BadUrl {
            url: url.clone(),
            detail,
        };
        let https = url.starts_with("https://");
        if !https && !tls.is_empty() {
            return Err(bad_url(
                "--ca-cert, --client-cert and --client-key are TLS settings: use an https:// URL"
                    .into(),
            ));
        }
        let mut endpoint = Endpoint::from_shared(url.clone())
            .map_err(|e| bad_url(e.to_string()))?
            .connect_timeout(Duration::from_secs(5))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(30))
            .keep_alive_while_idle(true);
        if https {
            endpoint = endpoint
                .tls_config(tls.client_config()?)
                .map_err(|e| bad_url(error_chain(&e)))?;
        }
        let channel = endpoint.connect().await.map_err(|e| {
            let detail = error_chain(&e);
            match tls_problem(&detail) {
                Some(mismatch) => mismatch.error(tls.ca_cert.as_deref(), &detail),
                None => ClientError::Unreachable {
                    url: url.clone(),
                    detail,
                },
            }
        })?;
        let uri = endpoint.uri();
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let address = format!("{}:{port}", uri.host().unwrap_or("localhost"));
        let context = TlsContext::new(https, tls.ca_cert.clone(), address);
        let token = match token.filter(|t| !t.is_empty()) {
            None => None,
            Some(t) => Some(format!("Bearer {t}").parse().map_err(|_| {
                ClientError::Invalid("the token may contain only visible ASCII characters".into())
            })?),
        };
        let auth = BearerToken(token);
        let service = |channel: Channel| {
            let explained = Explained {
                channel,
                context: context.clone(),
            };
            InterceptedService::new(explained, auth.clone())
        };
        Ok(Client {
            jobs: JobServiceClient::new(service(channel.clone()))
                .max_decoding_message_size(MAX_MESSAGE_BYTES),
            datasets: DatasetServiceClient::new(service(channel.clone()))
                .max_decoding_message_size(MAX_MESSAGE_BYTES),
            models: ModelServiceClient::new(service(channel.clone()))
                .max_decoding_message_size(MAX_MESSAGE_BYTES),
            sweeps: SweepServiceClient::new(service(channel))
                .max_decoding_message_size(MAX_MESSAGE_BYTES),
            url,
        })
    }

    /// The server URL this client talks to.
    pub fn url(&self) -> &str {
        &self.url
    }

    // ---- data sets ----

    /// Uploads a data-set file, streaming it in chunks. `name` defaults to the file name,
    /// `format` to the one its extension names.
    pub async fn upload_dataset_file(
        &self,
        path: &Path,
        name: Option<String>,
        format: Option<DatasetFormat>,
    ) -> Result<Dataset> {
        let format = match format {
            Some(f) => f,
            None => DatasetFormat::from_path(path)?,
        };
        let name = name.unwrap_or_else(|| {
            path.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        });
        let context = format!("cannot read {}", path.display());
        let file = tokio::fs::File::open(path)
            .await
            .map_err(|e| ClientError::io(&context, e))?;
        let size_bytes = file
            .metadata()
            .await
            .map_err(|e| ClientError::io(&context, e))?
            .len();
        let read_error = Arc::new(Mutex::new(None));
        let chunks = file_chunks(file, read_error.clone());
        let result = self.upload_parts(&name, format, size_bytes, chunks).await;
        if let Some(e) = read_error.lock().map(|mut e| e.take()).unwrap_or(None) {
            return Err(ClientError::io(context, e));
        }
        result
    }

    /// Uploads a data-set file unless this tenant already has the same bytes from an earlier
    /// call: the data set is named `<file name> sha256:<16 hex digits of its hash>`, and an
    /// existing data set with that name and size is reused. This keeps `ebm submit` with a
    /// `dataset_path` idempotent under a fixed `request_id` (a second upload would give the
    /// spec a different dataset id) and saves uploading the same file for every job.
    pub async fn ensure_dataset_file(&self, path: &Path) -> Result<Dataset> {
        use sha2::Digest;
        let format = DatasetFormat::from_path(path)?;
        let context = format!("cannot read {}", path.display());
        let mut file = tokio::fs::File::open(path)
            .await
            .map_err(|e| ClientError::io(&context, e))?;
        let mut hasher = sha2::Sha256::new();
        let mut size = 0u64;
        let mut buf = vec![0u8; CHUNK_BYTES];
        loop {
            let n = file
                .read(&mut buf)
                .await
                .map_err(|e| ClientError::io(&context, e))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            size += n as u64;
        }
        let digest: String = hasher.finalize()[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let file_name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let name = format!("{file_name} sha256:{digest}");
        let existing = self.list_datasets().await?;
        if let Some(found) = existing
            .into_iter()
            .find(|d| d.name == name && d.size_bytes == size)
        {
            return Ok(found);
        }
        self.upload_dataset_file(path, Some(name), Some(format))
            .await
    }

    /// Uploads a data set held in memory.
    pub async fn upload_dataset_bytes(
        &self,
        name: &str,
        format: DatasetFormat,
        bytes: Vec<u8>,
    ) -> Result<Dataset> {
        let size = bytes.len() as u64;
        let chunks: Vec<Vec<u8>> = bytes.chunks(CHUNK_BYTES).map(<[u8]>::to_vec).collect();
        self.upload_parts(name, format, size, futures_util::stream::iter(chunks))
            .await
    }

    async fn upload_parts(
        &self,
        name: &str,
        format: DatasetFormat,
        size_bytes: u64,
        chunks: impl Stream<Item = Vec<u8>> + Send + 'static,
    ) -> Result<Dataset> {
        use upload_dataset_request::Part;
        let header = v1::UploadDatasetRequest {
            part: Some(Part::Header(v1::DatasetHeader {
                name: name.to_string(),
                format: format.name().to_string(),
                size_bytes,
            })),
        };
        let requests = futures_util::stream::iter([header]).chain(chunks.map(|data| {
            v1::UploadDatasetRequest {
                part: Some(Part::Chunk(data)),
            }
        }));
        let mut datasets = self.datasets.clone();
        Ok(datasets.upload_dataset(requests).await?.into_inner())
    }

    pub async fn get_dataset(&self, id: &str) -> Result<Dataset> {
        let request = v1::GetDatasetRequest { id: id.into() };
        Ok(self
            .datasets
            .clone()
            .get_dataset(request)
            .await?
            .into_inner())
    }

    /// One page of data sets.
    pub async fn list_datasets_page(
        &self,
        page_size: u32,
        page_token: String,
    ) -> Result<v1::ListDatasetsResponse> {
        let request = v1::ListDatasetsRequest {
            page_size,
            page_token,
        };
        Ok(self
            .datasets
            .clone()
            .list_datasets(request)
            .await?
            .into_inner())
    }

    /// Every data set, following page tokens.
    pub async fn list_datasets(&self) -> Result<Vec<Dataset>> {
        let mut all = Vec::new();
        let mut token = String::new();
        loop {
            let page = self.list_datasets_page(PAGE_SIZE, token).await?;
            all.extend(page.datasets);
            if page.next_page_token.is_empty() {
                return Ok(all);
            }
            token = page.next_page_token;
        }
    }

    pub async fn delete_dataset(&self, id: &str) -> Result<()> {
        let request = v1::DeleteDatasetRequest { id: id.into() };
        self.datasets.clone().delete_dataset(request).await?;
        Ok(())
    }

    // ---- jobs ----

    /// Submits a job. Without a `request_id` a fresh UUID is used; retrying with the same
    /// `request_id` returns the original job instead of creating a second one.
    pub async fn submit(&self, spec: JobSpec, request_id: Option<String>) -> Result<Job> {
        self.submit_with_priority(spec, request_id, 0).await
    }

    pub async fn submit_with_priority(
        &self,
        spec: JobSpec,
        request_id: Option<String>,
        priority: i32,
    ) -> Result<Job> {
        self.submit_labelled(spec, request_id, priority, &[]).await
    }

    /// Submits a job with `key=value` labels (see [`crate::sweep::parse_label`]).
    pub async fn submit_labelled(
        &self,
        spec: JobSpec,
        request_id: Option<String>,
        priority: i32,
        labels: &[(String, String)],
    ) -> Result<Job> {
        let request = v1::SubmitJobRequest {
            request_id: request_id_or_fresh(request_id),
            spec: Some(spec),
            priority,
            labels: labels.iter().cloned().collect(),
        };
        Ok(self.jobs.clone().submit_job(request).await?.into_inner())
    }

    pub async fn get_job(&self, id: &str) -> Result<Job> {
        let request = v1::GetJobRequest { id: id.into() };
        Ok(self.jobs.clone().get_job(request).await?.into_inner())
    }

    /// One page of jobs, optionally only those in `state`.
    pub async fn list_jobs_page(
        &self,
        state: Option<JobState>,
        page_size: u32,
        page_token: String,
    ) -> Result<v1::ListJobsResponse> {
        self.list_labelled_jobs_page(state, &[], page_size, page_token)
            .await
    }

    /// One page of the jobs that carry all of `labels` (and are in `state`, if given).
    pub async fn list_labelled_jobs_page(
        &self,
        state: Option<JobState>,
        labels: &[(String, String)],
        page_size: u32,
        page_token: String,
    ) -> Result<v1::ListJobsResponse> {
        let request = v1::ListJobsRequest {
            page_size,
            page_token,
            state: state.unwrap_or(JobState::Unspecified) as i32,
            labels: labels.iter().cloned().collect(),
        };
        Ok(self.jobs.clone().list_jobs(request).await?.into_inner())
    }

    /// Every job (optionally only those in `state`), following page tokens.
    pub async fn list_jobs(&self, state: Option<JobState>) -> Result<Vec<Job>> {
        self.list_labelled_jobs(state, &[]).await
    }

    /// Every job that carries all of `labels` (and is in `state`, if given).
    pub async fn list_labelled_jobs(
        &self,
        state: Option<JobState>,
        labels: &[(String, String)],
    ) -> Result<Vec<Job>> {
        let mut all = Vec::new();
        let mut token = String::new();
        loop {
            let page = self
                .list_labelled_jobs_page(state, labels, PAGE_SIZE, token)
                .await?;
            all.extend(page.jobs);
            if page.next_page_token.is_empty() {
                return Ok(all);
            }
            token = page.next_page_token;
        }
    }

    /// Requests cancellation; returns the job as it is right after the request.
    pub async fn cancel(&self, id: &str) -> Result<Job> {
        let request = v1::CancelJobRequest { id: id.into() };
        Ok(self.jobs.clone().cancel_job(request).await?.into_inner())
    }

    /// The raw WatchJob stream from `after_seq` (no reconnection; see [`Client::watch`]).
    pub async fn watch_once(
        &self,
        id: &str,
        after_seq: i64,
    ) -> Result<tonic::Streaming<v1::JobEvent>> {
        let request = v1::WatchJobRequest {
            id: id.into(),
            after_seq,
        };
        Ok(self.jobs.clone().watch_job(request).await?.into_inner())
    }

    /// Waits for a job to finish by following its events, and returns the final job.
    pub async fn wait(&self, id: &str) -> Result<Job> {
        let mut events = self.watch(id, 0);
        while let Some(event) = events.next().await {
            event?;
        }
        self.get_job(id).await
    }

    /// Downloads a file a job produced (e.g. `samples.npy`).
    pub async fn download_artifact(&self, job_id: &str, name: &str) -> Result<Vec<u8>> {
        let request = v1::DownloadArtifactRequest {
            job_id: job_id.into(),
            name: name.into(),
        };
        let stream = self
            .jobs
            .clone()
            .download_artifact(request)
            .await?
            .into_inner();
        collect_chunks(stream).await
    }

    // ---- models ----

    pub async fn get_model(&self, id: &str) -> Result<Model> {
        let request = v1::GetModelRequest { id: id.into() };
        Ok(self.models.clone().get_model(request).await?.into_inner())
    }

    pub async fn list_models_page(
        &self,
        page_size: u32,
        page_token: String,
    ) -> Result<v1::ListModelsResponse> {
        let request = v1::ListModelsRequest {
            page_size,
            page_token,
        };
        Ok(self.models.clone().list_models(request).await?.into_inner())
    }

    /// Every model, following page tokens.
    pub async fn list_models(&self) -> Result<Vec<Model>> {
        let mut all = Vec::new();
        let mut token = String::new();
        loop {
            let page = self.list_models_page(PAGE_SIZE, token).await?;
            all.extend(page.models);
            if page.next_page_token.is_empty() {
                return Ok(all);
            }
            token = page.next_page_token;
        }
    }

    /// Downloads a model's safetensors file.
    /// Contact prediction of a potts model: ranked site pairs (zero-sum-gauge Frobenius
    /// norm with APC), at most `top` (0 = all), with j - i >= `min_separation`, and the
    /// sites x sites score matrix when `include_matrix`.
    pub async fn get_contacts(
        &self,
        id: &str,
        top: u32,
        min_separation: u32,
        include_matrix: bool,
    ) -> Result<v1::Contacts> {
        let request = v1::GetContactsRequest {
            id: id.into(),
            top,
            min_separation,
            include_matrix,
        };
        Ok(self
            .models
            .clone()
            .get_contacts(request)
            .await?
            .into_inner())
    }

    pub async fn download_model(&self, id: &str) -> Result<Vec<u8>> {
        let request = v1::DownloadModelRequest { id: id.into() };
        let stream = self
            .models
            .clone()
            .download_model(request)
            .await?
            .into_inner();
        collect_chunks(stream).await
    }

    /// Imports a safetensors file as a model of `model_type`.
    pub async fn import_model(
        &self,
        model_type: &str,
        name: &str,
        bytes: Vec<u8>,
    ) -> Result<Model> {
        use v1::import_model_request::Part;
        let header = v1::ImportModelRequest {
            part: Some(Part::Header(v1::ImportModelHeader {
                r#type: model_type.into(),
                name: name.into(),
                size_bytes: bytes.len() as u64,
            })),
        };
        let chunks: Vec<v1::ImportModelRequest> = bytes
            .chunks(CHUNK_BYTES)
            .map(|c| v1::ImportModelRequest {
                part: Some(Part::Chunk(c.to_vec())),
            })
            .collect();
        let requests = futures_util::stream::iter(std::iter::once(header).chain(chunks));
        Ok(self
            .models
            .clone()
            .import_model(requests)
            .await?
            .into_inner())
    }

    pub(crate) fn jobs_client(&self) -> JobServiceClient<Authed> {
        self.jobs.clone()
    }
}

/// Reads a file lazily in `CHUNK_BYTES` pieces; a read error ends the stream and is left in
/// `error` for the caller (a request stream cannot carry errors itself).
fn file_chunks(
    file: tokio::fs::File,
    error: Arc<Mutex<Option<std::io::Error>>>,
) -> impl Stream<Item = Vec<u8>> + Send + 'static {
    futures_util::stream::unfold(Some(file), move |file| {
        let error = error.clone();
        async move {
            let mut file = file?;
            let mut buf = Vec::with_capacity(CHUNK_BYTES);
            match (&mut file)
                .take(CHUNK_BYTES as u64)
                .read_to_end(&mut buf)
                .await
            {
                Ok(0) => None,
                Ok(_) => Some((buf, Some(file))),
                Err(e) => {
                    if let Ok(mut slot) = error.lock() {
                        *slot = Some(e);
                    }
                    None
                }
            }
        }
    })
}

async fn collect_chunks(mut stream: tonic::Streaming<Chunk>) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.message().await? {
        bytes.extend_from_slice(&chunk.data);
    }
    Ok(bytes)
}

/// An error with its causes, e.g. "transport error: tcp connect error: Connection refused".
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_follow_extensions() {
        let f = |p: &str| DatasetFormat::from_path(Path::new(p)).map(DatasetFormat::name);
        assert_eq!(f("a/digits.npy").unwrap(), "npy");
        assert_eq!(f("x.CSV").unwrap(), "csv");
        assert_eq!(f("PF00014.fasta").unwrap(), "fasta");
        assert_eq!(f("aln.a2m").unwrap(), "fasta");
        let err = f("data.bin").unwrap_err().to_string();
        assert!(err.contains("--format"), "{err}");
    }

    #[tokio::test]
    async fn connect_to_nothing_says_so() {
        // Port 1 on localhost: nothing listens there.
        let err = Client::connect("127.0.0.1:1", None).await.err().unwrap();
        let text = err.to_string();
        assert!(
            text.contains("cannot reach the server at http://127.0.0.1:1"),
            "{text}"
        );
        assert!(text.contains("Is ebm-server running?"), "{text}");
    }
}
