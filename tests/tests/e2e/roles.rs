//! Process roles on one Postgres queue: a `--role api` server accepts jobs but runs none, a
//! `--role worker` server on the same database runs them, answers grpc.health.v1 and serves
//! metrics, and refuses the API (UNIMPLEMENTED). Also `ebm-server migrate` on a fresh store.
//! Both servers run in this test process on their own ports and connection pools; they
//! share nothing but the database, as two pods would.
use ebm_client::v1::JobState;
use ebm_client::Client;
use ebm_e2e::*;
use ebm_server::config::{Config, Role};
use ebm_server::startup::Server;
use sqlx::Connection;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic_health::pb::{health_check_response::ServingStatus, health_client::HealthClient};

/// The health status of `service` ("" = the whole server) at `url`.
async fn health(url: &str, service: &str) -> Result<ServingStatus, tonic::Status> {
    let channel = tonic::transport::Endpoint::from_shared(url.to_string())
        .expect("a URL")
        .connect()
        .await
        .expect("connect for a health check");
    let request = tonic_health::pb::HealthCheckRequest {
        service: service.into(),
    };
    let response = HealthClient::new(channel).check(request).await?;
    Ok(response.into_inner().status())
}

/// The body of `GET /metrics` at `addr`.
async fn metrics_text(addr: std::net::SocketAddr) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let request = format!("GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut text = String::new();
    stream.read_to_string(&mut text).await.expect("read");
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_queues_and_a_worker_on_the_same_database_runs() {
    if !postgres_available("roles::api_queues_and_a_worker_on_the_same_database_runs") {
        return;
    }
    let api = TestServer::start_with(StoreKind::Postgres, |c| c.role = Role::Api).await;
    let client = api.client.clone();
    let (train, _) = digits_split();
    let dataset = upload(&client, "digits", &train.slice_rows(0..200)).await;
    let job = client
        .submit(train_spec(&dataset.id, 8, 2), None)
        .await
        .expect("the api process accepts a job");
    // Several poll intervals (0.2 s) and reaper runs: nothing in this process may claim it.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let queued = client.get_job(&job.id).await.expect("get");
    assert_eq!(
        queued.state(),
        JobState::Queued,
        "an api-only server runs no job"
    );
    assert_eq!(
        health(&api.url(), "").await.unwrap(),
        ServingStatus::Serving
    );
    assert_eq!(
        health(&api.url(), "ebm.v1.JobService").await.unwrap(),
        ServingStatus::Serving
    );

    let worker_config = Config {
        role: Role::Worker,
        ..api.config.clone()
    };
    let worker = Server::start(worker_config).await.expect("start a worker");
    let events = events_to_end(&client, &job.id, Duration::from_secs(120)).await;
    assert_eq!(events.last().map(|e| e.state()), Some(JobState::Succeeded));
    let done = client.get_job(&job.id).await.expect("get");
    assert!(!done.result.unwrap_or_default().model_id.is_empty());

    assert_eq!(
        health(&worker.grpc_url(), "").await.unwrap(),
        ServingStatus::Serving,
        "the same gRPC health probe works on a worker"
    );
    let job_service = health(&worker.grpc_url(), "ebm.v1.JobService").await;
    assert_eq!(
        job_service.unwrap_err().code(),
        tonic::Code::NotFound,
        "a worker does not claim to serve the API"
    );
    let worker_client = Client::connect(worker.grpc_url(), None)
        .await
        .expect("connect to the worker");
    for result in [
        worker_client.list_jobs(None).await.map(|_| ()),
        worker_client.get_job(&job.id).await.map(|_| ()),
        worker_client.list_datasets().await.map(|_| ()),
    ] {
        assert_eq!(status_of(result).code(), tonic::Code::Unimplemented);
    }
    let metrics = metrics_text(worker.metrics_addr()).await;
    assert!(
        metrics.starts_with("HTTP/1.") && metrics.contains(" 200 "),
        "{metrics}"
    );
    assert!(
        metrics.contains("ebm_"),
        "the worker's metrics endpoint serves: {metrics}"
    );

    worker.shutdown().await.expect("worker shutdown");
    api.stop().await;
}

/// `ebm-server migrate`'s function applies every migration to a fresh Postgres database
/// (one row per file in migrations/postgres) and a second run is a no-op.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_prepares_a_fresh_database() {
    if !postgres_available("roles::migrate_prepares_a_fresh_database") {
        return;
    }
    let (_db, url) = PgDatabase::create().await.expect("a fresh database");
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        database_url: Some(url.clone()),
        ..Config::for_tests(dir.path())
    };
    ebm_server::startup::migrate(&config)
        .await
        .expect("migrate");
    ebm_server::startup::migrate(&config)
        .await
        .expect("migrating twice is a no-op");
    let files = std::fs::read_dir(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../migrations/postgres"
    ))
    .unwrap()
    .filter(|e| {
        e.as_ref()
            .unwrap()
            .path()
            .extension()
            .is_some_and(|x| x == "sql")
    })
    .count() as i64;
    let mut db = sqlx::PgConnection::connect(&url).await.unwrap();
    let (applied,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM _sqlx_migrations WHERE success")
        .fetch_one(&mut db)
        .await
        .unwrap();
    assert_eq!(applied, files, "every migration applied once");
    let (jobs,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM jobs")
        .fetch_one(&mut db)
        .await
        .expect("the jobs table exists");
    assert_eq!(jobs, 0);
    db.close().await.unwrap();
}
