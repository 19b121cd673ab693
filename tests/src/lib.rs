//! Support code for the end-to-end tests (tests/e2e/*.rs, built as one test binary, and
//! tests/wgpu.rs): each test starts a real `ebm-server` (`ebm_server::startup::Server`) on
//! ephemeral ports, with a fresh store — a SQLite file in a temporary directory, or a
//! uniquely named Postgres database created on the server that `DATABASE_URL` points to and
//! dropped afterwards — and drives it through the real `ebm_client::Client`. Also: the
//! bundled digits, job specs, and reference computations done here, independently of the
//! engine, in f64.
use ebm_client::npy::{self, Matrix};
use ebm_client::v1::{self, Job, JobEvent, JobSpec, JobState};
use ebm_client::Client;
use ebm_server::config::Config;
use ebm_server::startup::{RunningServer, Server};
use futures_util::StreamExt;
use sqlx::{Connection, Executor, PgConnection};
use std::time::{Duration, Instant};

pub use ebm_client;

pub mod private_postgres;
pub mod process;
pub mod tls;

/// Which database a test server stores into.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreKind {
    Sqlite,
    Postgres,
}

/// Defines each listed `async fn(StoreKind)` test twice: `sqlite::name`, and `postgres::name`
/// which reports itself skipped when `DATABASE_URL` is not set.
#[macro_export]
macro_rules! on_both_stores {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::StoreKind::Sqlite).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if !$crate::postgres_available(stringify!($name)) {
                        return;
                    }
                    super::$name($crate::StoreKind::Postgres).await;
                }
            )*
        }
    };
}

/// True if `DATABASE_URL` is set; otherwise says that `test` was skipped.
pub fn postgres_available(test: &str) -> bool {
    if std::env::var("DATABASE_URL").is_ok_and(|u| !u.is_empty()) {
        return true;
    }
    eprintln!("SKIPPED postgres::{test}: DATABASE_URL is not set (.ci/run sets it)");
    false
}

/// A uniquely named Postgres database, dropped (connections and all) when this is dropped.
pub struct PgDatabase {
    admin_url: String,
    name: String,
}

impl PgDatabase {
    /// Creates the database on `DATABASE_URL`'s server; returns it and its URL.
    pub async fn create() -> anyhow::Result<(PgDatabase, String)> {
        let admin_url = std::env::var("DATABASE_URL")?;
        let name = format!("ebm_e2e_{}", uuid::Uuid::new_v4().simple());
        let mut admin = PgConnection::connect(&admin_url).await?;
        admin
            .execute(format!("CREATE DATABASE {name}").as_str())
            .await?;
        admin.close().await?;
        let url = replace_database(&admin_url, &name);
        Ok((PgDatabase { admin_url, name }, url))
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        // Drop runs outside any async context we could borrow: use a private runtime on a
        // thread of its own.
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        let dropper = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async {
                let mut admin = PgConnection::connect(&admin_url).await.ok()?;
                let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                admin.execute(sql.as_str()).await.ok()?;
                admin.close().await.ok()
            })
        });
        let _ = dropper.join();
    }
}

/// `postgres://user@host:port/db?opts` with `db` replaced.
pub fn replace_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (url, String::new()),
    };
    let after_scheme = base.find("://").map_or(0, |i| i + 3);
    let base = match base[after_scheme..].find('/') {
        Some(slash) => &base[..after_scheme + slash],
        None => base,
    };
    format!("{base}/{database}{query}")
}

/// A running server with its own fresh store, and a client connected to it.
pub struct TestServer {
    pub client: Client,
    pub config: Config,
    server: Option<RunningServer>,
    _dir: tempfile::TempDir,
    _postgres: Option<PgDatabase>,
}

impl TestServer {
    pub async fn start(kind: StoreKind) -> TestServer {
        TestServer::start_with(kind, |_| {}).await
    }

    /// Starts with `Config::for_tests` adjusted by `adjust` (e.g. smaller limits).
    pub async fn start_with(kind: StoreKind, adjust: impl FnOnce(&mut Config)) -> TestServer {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let mut config = Config::for_tests(dir.path());
        config.log_filter = "warn".into();
        let postgres = match kind {
            StoreKind::Sqlite => None,
            StoreKind::Postgres => {
                let (db, url) = PgDatabase::create()
                    .await
                    .expect("create a test database on DATABASE_URL");
                config.database_url = Some(url);
                Some(db)
            }
        };
        adjust(&mut config);
        let server = Server::start(config.clone())
            .await
            .expect("start ebm-server");
        let client = Client::connect(server.grpc_url(), None)
            .await
            .expect("connect to the test server");
        TestServer {
            client,
            config,
            server: Some(server),
            _dir: dir,
            _postgres: postgres,
        }
    }

    pub fn url(&self) -> String {
        self.server
            .as_ref()
            .map(|s| s.grpc_url())
            .unwrap_or_default()
    }

    pub fn metrics_url(&self) -> String {
        let addr = self.server.as_ref().map(|s| s.metrics_addr());
        addr.map(|a| format!("http://{a}/metrics"))
            .unwrap_or_default()
    }

    /// Graceful shutdown, then a new server on the same store (new ports, new client).
    pub async fn restart(&mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown().await.expect("graceful shutdown");
        }
        let server = Server::start(self.config.clone())
            .await
            .expect("restart ebm-server on the same store");
        self.client = Client::connect(server.grpc_url(), None)
            .await
            .expect("connect to the restarted server");
        self.server = Some(server);
    }

    /// Graceful shutdown; the store is removed when `self` is dropped.
    pub async fn stop(mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown().await.expect("graceful shutdown");
        }
    }
}

// ---- data and specs ----

/// The bundled 1797 binarized 8x8 digits.
pub fn digits() -> Matrix {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../data/digits/digits_binarized.npy"
    );
    let bytes = std::fs::read(path).expect("the bundled digits");
    npy::read(&bytes).expect("a 2-D .npy")
}

/// Training rows (the first 1500) and held-out rows (the rest) of the digits.
pub fn digits_split() -> (Matrix, Matrix) {
    let all = digits();
    (all.slice_rows(0..1500), all.slice_rows(1500..all.rows))
}

/// Uploads `rows` as a uint8 .npy data set.
pub async fn upload(client: &Client, name: &str, rows: &Matrix) -> v1::Dataset {
    client
        .upload_dataset_bytes(name, ebm_client::DatasetFormat::Npy, npy::write_u8(rows))
        .await
        .expect("upload a data set")
}

/// A small PCD training job for a Bernoulli RBM on `dataset`.
pub fn train_spec(dataset: &str, hidden: u32, epochs: u32) -> JobSpec {
    let toml = format!(
        r#"kind = "train"
name = "e2e-rbm"
seed = 11
dataset = "{dataset}"
[model]
type = "bernoulli_rbm"
hidden = {hidden}
[train]
method = "pcd"
k = 1
chains = 50
epochs = {epochs}
batch_size = 20
learning_rate = 0.05
momentum = 0.5
checkpoint_every = 1
"#
    );
    ebm_client::spec::parse_spec(&toml, &[])
        .expect("a valid spec")
        .spec
}

/// Every event of a job, following it to its end (fails after `timeout`).
pub async fn events_to_end(client: &Client, job_id: &str, timeout: Duration) -> Vec<JobEvent> {
    let collect = async {
        let mut events = Vec::new();
        let mut stream = client.watch(job_id, 0);
        while let Some(event) = stream.next().await {
            events.push(event.expect("a job event"));
        }
        events
    };
    tokio::time::timeout(timeout, collect)
        .await
        .unwrap_or_else(|_| panic!("job {job_id} did not finish within {timeout:?}"))
}

/// Polls until the job satisfies `done`, failing after `timeout`.
pub async fn wait_until(
    client: &Client,
    job_id: &str,
    timeout: Duration,
    done: impl Fn(&Job) -> bool,
) -> Job {
    let start = Instant::now();
    loop {
        let job = client.get_job(job_id).await.expect("get the job");
        if done(&job) {
            return job;
        }
        assert!(
            start.elapsed() < timeout,
            "job {job_id} still {} after {timeout:?}",
            job.state().name()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn is_state(state: JobState) -> impl Fn(&Job) -> bool {
    move |job| job.state() == state
}

// ---- reference computations (f64, independent of the engine) ----

/// A Bernoulli RBM read from a downloaded safetensors file.
pub struct RbmParams {
    pub visible: usize,
    pub hidden: usize,
    pub w: Vec<f64>,
    pub b: Vec<f64>,
    pub c: Vec<f64>,
}

/// Reads `W`, `b`, `c` (float32), checking names, dtypes and shapes.
pub fn read_rbm(bytes: &[u8], visible: usize, hidden: usize) -> RbmParams {
    let file = safetensors::SafeTensors::deserialize(bytes).expect("a safetensors file");
    let read = |name: &str, shape: &[usize]| -> Vec<f64> {
        let t = file
            .tensor(name)
            .unwrap_or_else(|_| panic!("tensor {name} in the model file"));
        assert_eq!(t.dtype(), safetensors::Dtype::F32, "{name} is float32");
        assert_eq!(t.shape(), shape, "shape of {name}");
        t.data()
            .chunks_exact(4)
            .map(|c| f64::from(f32::from_le_bytes([c[0], c[1], c[2], c[3]])))
            .collect()
    };
    RbmParams {
        visible,
        hidden,
        w: read("W", &[visible, hidden]),
        b: read("b", &[visible]),
        c: read("c", &[hidden]),
    }
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

impl RbmParams {
    /// Mean-field reconstruction p(v | h = p(h | v)).
    pub fn reconstruct(&self, v: &[f32]) -> Vec<f64> {
        let h: Vec<f64> = (0..self.hidden)
            .map(|j| {
                let pre: f64 = (0..self.visible)
                    .map(|i| f64::from(v[i]) * self.w[i * self.hidden + j])
                    .sum();
                sigmoid(self.c[j] + pre)
            })
            .collect();
        (0..self.visible)
            .map(|i| {
                let row = &self.w[i * self.hidden..(i + 1) * self.hidden];
                sigmoid(self.b[i] + row.iter().zip(&h).map(|(w, h)| w * h).sum::<f64>())
            })
            .collect()
    }
}

/// Mean squared difference per pixel between `data` and `predict(row)`.
pub fn mean_squared_error(data: &Matrix, predict: impl Fn(&[f32]) -> Vec<f64>) -> f64 {
    let mut total = 0.0;
    for i in 0..data.rows {
        let row = data.row(i);
        let p = predict(row);
        total += row
            .iter()
            .zip(&p)
            .map(|(&v, &p)| (f64::from(v) - p).powi(2))
            .sum::<f64>();
    }
    total / (data.rows * data.cols) as f64
}

/// Per-column frequency of ones.
pub fn column_means(data: &Matrix) -> Vec<f64> {
    (0..data.cols)
        .map(|j| {
            (0..data.rows)
                .map(|i| f64::from(data.row(i)[j]))
                .sum::<f64>()
                / data.rows as f64
        })
        .collect()
}

/// Submits `spec` and checks that the server refuses it with INVALID_ARGUMENT and a message
/// that contains `word` (`what` names the case in a failure).
pub async fn assert_refused(client: &Client, what: &str, spec: JobSpec, word: &str) {
    let status = status_of(client.submit(spec, None).await);
    assert_eq!(
        status.code(),
        tonic::Code::InvalidArgument,
        "{what}: {status:?}"
    );
    assert!(
        status.message().contains(word),
        "{what}: the message {:?} should name {word:?}",
        status.message()
    );
}

/// The gRPC status code of a failed call (panics if it succeeded or failed otherwise).
pub fn status_of<T: std::fmt::Debug>(result: Result<T, ebm_client::ClientError>) -> tonic::Status {
    match result {
        Err(ebm_client::ClientError::Status(status)) => status,
        other => panic!("expected a gRPC error status, got {other:?}"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn replaces_the_database_in_urls() {
        use super::replace_database as r;
        assert_eq!(
            r("postgres://postgres@127.0.0.1:5432/test", "x"),
            "postgres://postgres@127.0.0.1:5432/x"
        );
        assert_eq!(
            r("postgres://u:p@h/db?sslmode=disable", "x"),
            "postgres://u:p@h/x?sslmode=disable"
        );
        assert_eq!(r("postgres://h:5432", "x"), "postgres://h:5432/x");
    }
}
