//! The gRPC surface of a real server on ephemeral ports, through the generated clients:
//! health, reflection and metrics are served; request ids make submits idempotent; bad
//! uploads are refused while the server keeps serving; tenants see only their own data;
//! WatchJob replays from a cursor; and two servers sharing Postgres cooperate.
use ebm_api::v1::{
    self, dataset_service_client::DatasetServiceClient, job_service_client::JobServiceClient,
    upload_dataset_request::Part, JobState,
};
use ebm_server::config::Config;
use ebm_server::startup::{RunningServer, Server};
use ebm_server::testing::TestDb;
use std::time::Duration;
use tokio_stream::StreamExt;
use tonic::transport::Channel;
use tonic::{Code, Request};

/// A binary CSV data set: 60 rows of 8 columns, two noisy prototypes.
fn binary_csv() -> Vec<u8> {
    let mut csv = String::new();
    for row in 0..60u32 {
        let cells: Vec<String> = (0..8u32)
            .map(|col| (((row % 2 == 0) == (col < 4)) != ((row * 7 + col * 3) % 9 == 0)) as u8)
            .map(|v| v.to_string())
            .collect();
        csv.push_str(&cells.join(","));
        csv.push('\n');
    }
    csv.into_bytes()
}

async fn start(db: &TestDb, configure: impl FnOnce(&mut Config)) -> RunningServer {
    let mut config = Config::for_tests(std::env::temp_dir().as_path());
    config.database_url = Some(db.url.clone());
    configure(&mut config);
    Server::start(config).await.expect("server starts")
}

fn with_token<T>(message: T, token: Option<&str>) -> Request<T> {
    let mut request = Request::new(message);
    if let Some(token) = token {
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    request
}

async fn upload(
    channel: Channel,
    bytes: Vec<u8>,
    chunk: usize,
    token: Option<&str>,
) -> Result<v1::Dataset, tonic::Status> {
    let mut messages = vec![v1::UploadDatasetRequest {
        part: Some(Part::Header(v1::DatasetHeader {
            name: "prototypes".into(),
            format: "csv".into(),
            size_bytes: 0,
        })),
    }];
    messages.extend(bytes.chunks(chunk).map(|c| v1::UploadDatasetRequest {
        part: Some(Part::Chunk(c.to_vec())),
    }));
    let request = with_token(tokio_stream::iter(messages), token);
    DatasetServiceClient::new(channel)
        .upload_dataset(request)
        .await
        .map(|r| r.into_inner())
}

fn train_spec(dataset: &str, epochs: u32) -> v1::JobSpec {
    v1::JobSpec {
        kind: "train".into(),
        seed: 3,
        dataset: dataset.into(),
        model_config: Some(v1::ModelConfig {
            r#type: "bernoulli_rbm".into(),
            hidden: Some(4),
            ..Default::default()
        }),
        train: Some(v1::TrainConfig {
            epochs: Some(epochs),
            batch_size: Some(10),
            ..Default::default()
        }),
        ..Default::default()
    }
}

async fn channel(server: &RunningServer) -> Channel {
    Channel::from_shared(server.grpc_url())
        .unwrap()
        .connect()
        .await
        .unwrap()
}

async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response
}

/// Watches a job from `after_seq` to the end of the stream.
async fn watch(channel: Channel, id: &str, after_seq: i64) -> Vec<v1::JobEvent> {
    let request = v1::WatchJobRequest {
        id: id.into(),
        after_seq,
    };
    let mut stream = JobServiceClient::new(channel)
        .watch_job(request)
        .await
        .unwrap()
        .into_inner();
    let mut events = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while let Ok(Some(event)) = tokio::time::timeout_at(deadline, stream.next()).await {
        events.push(event.unwrap());
    }
    events
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_reflection_and_metrics_are_served() {
    let db = TestDb::sqlite().await;
    let server = start(&db, |_| {}).await;
    let channel = channel(&server).await;

    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    let reply = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "ebm.v1.JobService".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        reply.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );

    use tonic_reflection::pb::v1::{
        server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
        ServerReflectionRequest,
    };
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut replies = ServerReflectionClient::new(channel.clone())
        .server_reflection_info(tokio_stream::iter(vec![request]))
        .await
        .unwrap()
        .into_inner();
    let Some(MessageResponse::ListServicesResponse(list)) =
        replies.next().await.unwrap().unwrap().message_response
    else {
        panic!("no service list")
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for service in [
        "ebm.v1.JobService",
        "ebm.v1.DatasetService",
        "ebm.v1.ModelService",
    ] {
        assert!(
            names.iter().any(|n| n == service),
            "{service} missing from {names:?}"
        );
    }

    let missing = JobServiceClient::new(channel)
        .get_job(v1::GetJobRequest {
            id: "job_nope".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    let metrics = http_get(server.metrics_addr(), "/metrics").await;
    assert!(metrics.starts_with("HTTP/1.1 200"), "{metrics}");
    for needle in [
        "ebm_jobs{state=\"queued\"}",
        "ebm_queue_depth",
        "ebm_grpc_requests_total{method=\"/ebm.v1.JobService/GetJob\",code=\"NotFound\"}",
        "ebm_grpc_request_duration_seconds_bucket{method=\"/ebm.v1.JobService/GetJob\"",
    ] {
        assert!(metrics.contains(needle), "{needle} not in\n{metrics}");
    }
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_ids_make_submits_idempotent() {
    let db = TestDb::sqlite().await;
    let server = start(&db, |c| c.workers = 0).await;
    let channel = channel(&server).await;
    let dataset = upload(channel.clone(), binary_csv(), 100, None)
        .await
        .unwrap();
    assert_eq!(
        (dataset.rows, dataset.cols, dataset.value_kind.as_str()),
        (60, 8, "binary")
    );
    let mut jobs = JobServiceClient::new(channel);
    let submit = |spec: v1::JobSpec| v1::SubmitJobRequest {
        request_id: "retry-me".into(),
        spec: Some(spec),
        priority: 0,
        labels: Default::default(),
    };
    let first = jobs
        .submit_job(submit(train_spec(&dataset.id, 2)))
        .await
        .unwrap()
        .into_inner();
    let again = jobs
        .submit_job(submit(train_spec(&dataset.id, 2)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.id, first.id);
    assert_eq!(first.state(), JobState::Queued);
    let other = jobs
        .submit_job(submit(train_spec(&dataset.id, 3)))
        .await
        .unwrap_err();
    assert_eq!(other.code(), Code::AlreadyExists);
    assert!(other.message().contains(&first.id), "{}", other.message());
    let listed = jobs
        .list_jobs(v1::ListJobsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.jobs.len(), 1);
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_uploads_are_refused_and_the_server_keeps_serving() {
    let db = TestDb::sqlite().await;
    let server = start(&db, |c| c.limits.max_upload_bytes = 300).await;
    let channel = channel(&server).await;
    let oversized = upload(channel.clone(), vec![b'1'; 1000], 64, None)
        .await
        .unwrap_err();
    assert_eq!(oversized.code(), Code::InvalidArgument);
    assert!(
        oversized.message().contains("limit of 300 bytes"),
        "{}",
        oversized.message()
    );
    let ragged = upload(channel.clone(), b"1,0,1\n0,1\n".to_vec(), 4, None)
        .await
        .unwrap_err();
    assert_eq!(ragged.code(), Code::InvalidArgument, "{}", ragged.message());
    let headerless = DatasetServiceClient::new(channel.clone())
        .upload_dataset(tokio_stream::iter(vec![v1::UploadDatasetRequest {
            part: Some(Part::Chunk(b"1,0\n".to_vec())),
        }]))
        .await
        .unwrap_err();
    assert_eq!(headerless.code(), Code::InvalidArgument);
    // Still serving: a good upload goes through.
    let ok = upload(channel, b"1,0\n0,1\n".to_vec(), 3, None)
        .await
        .unwrap();
    assert_eq!((ok.rows, ok.cols), (2, 2));
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_see_only_their_own_data() {
    let db = TestDb::sqlite().await;
    let server = start(&db, |c| {
        c.tokens = [
            ("alice-token".to_string(), "alice".to_string()),
            ("bob-token".to_string(), "bob".to_string()),
        ]
        .into();
    })
    .await;
    let channel = channel(&server).await;
    let anonymous = upload(channel.clone(), binary_csv(), 100, None)
        .await
        .unwrap_err();
    assert_eq!(anonymous.code(), Code::Unauthenticated);
    let wrong = upload(channel.clone(), binary_csv(), 100, Some("guess"))
        .await
        .unwrap_err();
    assert_eq!(wrong.code(), Code::Unauthenticated);
    let dataset = upload(channel.clone(), binary_csv(), 100, Some("alice-token"))
        .await
        .unwrap();
    let mut datasets = DatasetServiceClient::new(channel.clone());
    let get = |token| {
        with_token(
            v1::GetDatasetRequest {
                id: dataset.id.clone(),
            },
            Some(token),
        )
    };
    assert!(datasets.get_dataset(get("alice-token")).await.is_ok());
    let hidden = datasets.get_dataset(get("bob-token")).await.unwrap_err();
    assert_eq!(hidden.code(), Code::NotFound);
    // Bob cannot train on Alice's data either.
    let submit = v1::SubmitJobRequest {
        request_id: String::new(),
        spec: Some(train_spec(&dataset.id, 1)),
        priority: 0,
        labels: Default::default(),
    };
    let refused = JobServiceClient::new(channel)
        .submit_job(with_token(submit, Some("bob-token")))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::NotFound);
    server.shutdown().await.unwrap();
}

/// Trains a short job and checks the event stream: replay from 0 to the end, and resuming
/// from a cursor returns exactly the events after it.
async fn watch_replays_from_a_cursor(db: &TestDb) {
    let server = start(db, |_| {}).await;
    let channel = channel(&server).await;
    let dataset = upload(channel.clone(), binary_csv(), 100, None)
        .await
        .unwrap();
    let job = JobServiceClient::new(channel.clone())
        .submit_job(v1::SubmitJobRequest {
            request_id: String::new(),
            spec: Some(train_spec(&dataset.id, 3)),
            priority: 0,
            labels: Default::default(),
        })
        .await
        .unwrap()
        .into_inner();
    let events = watch(channel.clone(), &job.id, 0).await;
    let last = events.last().expect("events");
    assert_eq!(last.state(), JobState::Succeeded, "{events:?}");
    let seqs: Vec<i64> = events.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=seqs.len() as i64).collect::<Vec<_>>());
    assert_eq!(events.iter().filter(|e| e.kind == "metrics").count(), 3);
    let tail = watch(channel.clone(), &job.id, last.seq - 2).await;
    assert_eq!(
        tail.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![last.seq - 1, last.seq]
    );
    assert!(
        watch(channel, &job.id, last.seq).await.is_empty(),
        "nothing after the end"
    );
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_replays_from_a_cursor_on_sqlite() {
    watch_replays_from_a_cursor(&TestDb::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_replays_from_a_cursor_on_postgres() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    watch_replays_from_a_cursor(&db).await;
    db.drop_database().await;
}

/// Two server processes' worth of servers on one Postgres database: an API-only server
/// (no workers) takes the submit, the other server's worker runs the job (woken by NOTIFY),
/// and the first server's WatchJob follows it to the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_share_a_postgres_store() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let api_only = start(&db, |c| {
        c.workers = 0;
        c.poll_seconds = 30.0;
    })
    .await;
    let worker = start(&db, |c| c.poll_seconds = 30.0).await;
    let channel = channel(&api_only).await;
    let dataset = upload(channel.clone(), binary_csv(), 100, None)
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let job = JobServiceClient::new(channel.clone())
        .submit_job(v1::SubmitJobRequest {
            request_id: String::new(),
            spec: Some(train_spec(&dataset.id, 2)),
            priority: 0,
            labels: Default::default(),
        })
        .await
        .unwrap()
        .into_inner();
    let events = watch(channel, &job.id, 0).await;
    assert_eq!(
        events.last().unwrap().state(),
        JobState::Succeeded,
        "{events:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "the idle worker polls every 30 s, so only NOTIFY can have woken it this soon"
    );
    api_only.shutdown().await.unwrap();
    worker.shutdown().await.unwrap();
    db.drop_database().await;
}
