//! Per-tenant quotas at submit, upload and import, through a real server's gRPC API on
//! SQLite and (with `DATABASE_URL` set) Postgres: over a limit the request is refused with
//! RESOURCE_EXHAUSTED naming the limit and the current use, nothing is stored, other
//! tenants are unaffected, and the request is accepted again once the use drops.
use ebm_api::v1::{
    self, dataset_service_client::DatasetServiceClient, import_model_request,
    job_service_client::JobServiceClient, model_service_client::ModelServiceClient,
    upload_dataset_request::Part, JobState,
};
use ebm_server::config::{Config, TenantQuotas};
use ebm_server::startup::{RunningServer, Server};
use ebm_server::testing::TestDb;
use tonic::transport::Channel;
use tonic::{Code, Request};

const ALICE: &str = "alice-token";
const BOB: &str = "bob-token";

/// A binary CSV data set: 200 rows of 4 columns (1600 bytes, ten times a model file).
fn binary_csv() -> Vec<u8> {
    let mut csv = String::new();
    for row in 0..200u32 {
        let cells: Vec<String> = (0..4u32).map(|c| ((row + c) % 2).to_string()).collect();
        csv.push_str(&cells.join(","));
        csv.push('\n');
    }
    csv.into_bytes()
}

/// A lattice Ising model file (safetensors, written out by hand): scalar J and h.
fn lattice_file() -> Vec<u8> {
    let mut header = String::from(
        r#"{"__metadata__":{"type":"lattice_ising","size":"4"},"J":{"dtype":"F32","shape":[],"data_offsets":[0,4]},"h":{"dtype":"F32","shape":[],"data_offsets":[4,8]}}"#,
    );
    while header.len() % 8 != 0 {
        header.push(' ');
    }
    let mut file = (header.len() as u64).to_le_bytes().to_vec();
    file.extend_from_slice(header.as_bytes());
    file.extend_from_slice(&0.3f32.to_le_bytes());
    file.extend_from_slice(&0.0f32.to_le_bytes());
    file
}

async fn start(db: &TestDb, configure: impl FnOnce(&mut Config)) -> RunningServer {
    let mut config = Config::for_tests(std::env::temp_dir().as_path());
    config.database_url = Some(db.url.clone());
    config.workers = 0;
    config.tokens = [
        (ALICE.to_string(), "alice".to_string()),
        (BOB.to_string(), "bob".to_string()),
    ]
    .into();
    configure(&mut config);
    Server::start(config).await.expect("server starts")
}

async fn channel(server: &RunningServer) -> Channel {
    Channel::from_shared(server.grpc_url())
        .unwrap()
        .connect()
        .await
        .unwrap()
}

fn with_token<T>(message: T, token: &str) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}

async fn upload(channel: &Channel, token: &str) -> Result<v1::Dataset, tonic::Status> {
    let messages = vec![
        v1::UploadDatasetRequest {
            part: Some(Part::Header(v1::DatasetHeader {
                name: "tiny".into(),
                format: "csv".into(),
                size_bytes: 0,
            })),
        },
        v1::UploadDatasetRequest {
            part: Some(Part::Chunk(binary_csv())),
        },
    ];
    DatasetServiceClient::new(channel.clone())
        .upload_dataset(with_token(tokio_stream::iter(messages), token))
        .await
        .map(|r| r.into_inner())
}

async fn import(channel: &Channel, token: &str) -> Result<v1::Model, tonic::Status> {
    use import_model_request::Part;
    let messages = vec![
        v1::ImportModelRequest {
            part: Some(Part::Header(v1::ImportModelHeader {
                r#type: "lattice_ising".into(),
                name: "ising4".into(),
                ..Default::default()
            })),
        },
        v1::ImportModelRequest {
            part: Some(Part::Chunk(lattice_file())),
        },
    ];
    ModelServiceClient::new(channel.clone())
        .import_model(with_token(tokio_stream::iter(messages), token))
        .await
        .map(|r| r.into_inner())
}

async fn submit(
    channel: &Channel,
    token: &str,
    dataset: &str,
    request_id: &str,
) -> Result<v1::Job, tonic::Status> {
    let spec = v1::JobSpec {
        kind: "train".into(),
        seed: 1,
        dataset: dataset.into(),
        model_config: Some(v1::ModelConfig {
            r#type: "bernoulli_rbm".into(),
            hidden: Some(2),
            ..Default::default()
        }),
        train: Some(v1::TrainConfig {
            epochs: Some(1),
            batch_size: Some(10),
            ..Default::default()
        }),
        ..Default::default()
    };
    let request = v1::SubmitJobRequest {
        request_id: request_id.into(),
        spec: Some(spec),
        priority: 0,
        labels: Default::default(),
    };
    JobServiceClient::new(channel.clone())
        .submit_job(with_token(request, token))
        .await
        .map(|r| r.into_inner())
}

fn assert_exhausted(status: tonic::Status, expected: &str) {
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(
        status.message().contains(expected),
        "message {:?} should contain {expected:?}",
        status.message()
    );
}

/// Alice may have 2 queued jobs (her override), bob 3 (the default).
async fn queued_jobs_limit(db: &TestDb) {
    let server = start(db, |c| {
        c.quotas.max_queued_jobs = 3;
        c.quotas.tenants.insert(
            "alice".into(),
            TenantQuotas {
                max_queued_jobs: Some(2),
                ..Default::default()
            },
        );
    })
    .await;
    let channel = channel(&server).await;
    let alice_data = upload(&channel, ALICE).await.unwrap();
    let bob_data = upload(&channel, BOB).await.unwrap();
    let first = submit(&channel, ALICE, &alice_data.id, "a1").await.unwrap();
    submit(&channel, ALICE, &alice_data.id, "a2").await.unwrap();
    let refused = submit(&channel, ALICE, &alice_data.id, "a3")
        .await
        .unwrap_err();
    assert_exhausted(
        refused,
        "tenant alice has 2 queued jobs; the queued-jobs limit is 2",
    );
    // A retry of a job that exists is answered, not refused.
    let again = submit(&channel, ALICE, &alice_data.id, "a1").await.unwrap();
    assert_eq!(again.id, first.id);
    // The refused job was not stored.
    let listed = JobServiceClient::new(channel.clone())
        .list_jobs(with_token(v1::ListJobsRequest::default(), ALICE))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.jobs.len(), 2);
    // Bob has his own count and the default limit.
    for id in ["b1", "b2", "b3"] {
        submit(&channel, BOB, &bob_data.id, id).await.unwrap();
    }
    assert_exhausted(
        submit(&channel, BOB, &bob_data.id, "b4").await.unwrap_err(),
        "tenant bob has 3 queued jobs; the queued-jobs limit is 3",
    );
    // A cancelled job no longer counts.
    let cancelled = JobServiceClient::new(channel.clone())
        .cancel_job(with_token(
            v1::CancelJobRequest {
                id: first.id.clone(),
            },
            ALICE,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(cancelled.state(), JobState::Cancelled);
    submit(&channel, ALICE, &alice_data.id, "a3").await.unwrap();
    assert_eq!(db.store.queued_jobs("alice").await.unwrap(), 2);
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_jobs_limit_on_sqlite() {
    queued_jobs_limit(&TestDb::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_jobs_limit_on_postgres() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    queued_jobs_limit(&db).await;
    db.drop_database().await;
}

/// A running job leaves the queue: with one worker and a queued-jobs limit of 1, a second
/// job is accepted once the first has started.
async fn started_jobs_leave_the_queue(db: &TestDb) {
    let server = start(db, |c| {
        c.workers = 1;
        c.quotas.max_queued_jobs = 1;
    })
    .await;
    let channel = channel(&server).await;
    let data = upload(&channel, ALICE).await.unwrap();
    let first = submit(&channel, ALICE, &data.id, "r1").await.unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let job = db.store.get_job("alice", &first.id).await.unwrap().unwrap();
        if job.state != "queued" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the job never started"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    submit(&channel, ALICE, &data.id, "r2").await.unwrap();
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn started_jobs_leave_the_queue_on_sqlite() {
    started_jobs_leave_the_queue(&TestDb::sqlite().await).await;
}

/// Twelve submits at once against a limit of 5: the count runs in each insert's
/// transaction (serialised per tenant), so exactly 5 are accepted and 7 refused.
async fn concurrent_submits_do_not_overshoot(db: &TestDb) {
    let server = start(db, |c| c.quotas.max_queued_jobs = 5).await;
    let channel = channel(&server).await;
    let data = upload(&channel, ALICE).await.unwrap();
    let submits = (0..12).map(|i| {
        let (channel, data) = (channel.clone(), data.id.clone());
        tokio::spawn(async move { submit(&channel, ALICE, &data, &format!("c{i}")).await })
    });
    let mut accepted = 0;
    for submit in submits.collect::<Vec<_>>() {
        match submit.await.unwrap() {
            Ok(_) => accepted += 1,
            Err(status) => assert_exhausted(status, "the queued-jobs limit is 5"),
        }
    }
    assert_eq!(accepted, 5);
    assert_eq!(db.store.queued_jobs("alice").await.unwrap(), 5);
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_submits_do_not_overshoot_on_sqlite() {
    concurrent_submits_do_not_overshoot(&TestDb::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_submits_do_not_overshoot_on_postgres() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    concurrent_submits_do_not_overshoot(&db).await;
    db.drop_database().await;
}

/// Alice may store one data set's bytes plus half of another's; bob is unlimited.
async fn stored_bytes_limit(db: &TestDb) {
    let size = binary_csv().len() as u64;
    let model_size = lattice_file().len() as u64;
    assert!(model_size < size / 2, "the model must fit into the slack");
    let limit = size + size / 2;
    let server = start(db, |c| {
        c.quotas.tenants.insert(
            "alice".into(),
            TenantQuotas {
                max_stored_bytes: Some(limit),
                ..Default::default()
            },
        );
    })
    .await;
    let channel = channel(&server).await;
    let first = upload(&channel, ALICE).await.unwrap();
    assert_exhausted(
        upload(&channel, ALICE).await.unwrap_err(),
        &format!(
            "tenant alice stores {size} bytes (data sets, models and artifacts); the \
             stored-bytes limit is {limit} and this data set has {size} bytes"
        ),
    );
    assert_eq!(db.store.stored_bytes("alice").await.unwrap(), size as i64);
    // Below the limit, jobs are accepted.
    submit(&channel, ALICE, &first.id, "s1").await.unwrap();
    // A model that fits; then the tenant is at its limit or within a model of it.
    import(&channel, ALICE).await.unwrap();
    let used = size + model_size;
    assert_eq!(db.store.stored_bytes("alice").await.unwrap(), used as i64);
    while db.store.stored_bytes("alice").await.unwrap() as u64 + model_size <= limit {
        import(&channel, ALICE).await.unwrap();
    }
    let used = db.store.stored_bytes("alice").await.unwrap();
    assert_exhausted(
        import(&channel, ALICE).await.unwrap_err(),
        &format!(
            "tenant alice stores {used} bytes (data sets, models and artifacts); the \
             stored-bytes limit is {limit} and this model has {model_size} bytes"
        ),
    );
    // Bob is not limited by alice's use.
    upload(&channel, BOB).await.unwrap();
    upload(&channel, BOB).await.unwrap();
    // Deleting the data set frees its bytes.
    DatasetServiceClient::new(channel.clone())
        .delete_dataset(with_token(
            v1::DeleteDatasetRequest {
                id: first.id.clone(),
            },
            ALICE,
        ))
        .await
        .unwrap();
    let again = upload(&channel, ALICE).await.unwrap();
    server.shutdown().await.unwrap();

    // At the limit exactly, submits are refused too (a job's outputs would add to it).
    let stored = db.store.stored_bytes("alice").await.unwrap() as u64;
    let server = start(db, |c| c.quotas.max_stored_bytes = stored).await;
    let channel = self::channel(&server).await;
    assert_exhausted(
        submit(&channel, ALICE, &again.id, "s2").await.unwrap_err(),
        &format!(
            "tenant alice stores {stored} bytes (data sets, models and artifacts); the \
             stored-bytes limit is {stored}; delete data sets or models before submitting"
        ),
    );
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_bytes_limit_on_sqlite() {
    stored_bytes_limit(&TestDb::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_bytes_limit_on_postgres() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    stored_bytes_limit(&db).await;
    db.drop_database().await;
}
