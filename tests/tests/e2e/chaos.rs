//! Faults: three `ebm-server` processes on one Postgres queue, one of them killed with
//! SIGKILL (kill -9: no graceful shutdown, no final checkpoint, the lease left to expire)
//! every 1-3 s and restarted, while small training jobs with a checkpoint every epoch run.
//! Every job must end succeeded exactly once, with exactly one model whose bytes equal the
//! same spec's model from a quiet single server (every tensor bit for bit) (same seed on cpu => bit-identical, as a
//! resumed job continues from its checkpoint with the saved RNG state).
use ebm_client::v1::JobState;
use ebm_e2e::process::ServerProcess;
use ebm_e2e::*;
use ebm_server::config::{Config, Role};
use futures_util::StreamExt;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// A small deterministic generator (splitmix64) so that a failing schedule can be replayed.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Quick reclaim: a killed worker's lease expires after 1.5 s and the reaper looks every
/// 0.3 s; heartbeats (0.2 s) stay well inside the lease, so live workers keep theirs.
/// Backoff is short: a job killed before its first checkpoint counts as a stalled attempt.
const FAST_RECLAIM: [(&str, &str); 5] = [
    ("EBM__LEASE_SECONDS", "1.5"),
    ("EBM__REAP_SECONDS", "0.3"),
    ("EBM__RETRIES__MAX_STALLED_ATTEMPTS", "50"),
    ("EBM__RETRIES__BACKOFF_BASE_SECONDS", "0.2"),
    ("EBM__RETRIES__BACKOFF_MAX_SECONDS", "1"),
];

const JOBS: u32 = 6;
const EPOCHS: u32 = 40;

fn hidden_of(i: u32) -> u32 {
    8 + 2 * i
}

/// Every tensor of a safetensors file: name, dtype, shape and raw bytes. (The file's
/// `__metadata__` names the job that trained it, so whole files of two jobs differ there.)
pub(crate) fn tensors(file: &[u8]) -> Vec<(String, String, Vec<usize>, Vec<u8>)> {
    let file = safetensors::SafeTensors::deserialize(file).expect("a safetensors file");
    let mut all: Vec<_> = file
        .tensors()
        .into_iter()
        .map(|(name, t)| {
            let dtype = format!("{:?}", t.dtype());
            (name, dtype, t.shape().to_vec(), t.data().to_vec())
        })
        .collect();
    all.sort();
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_in_a_loop_loses_and_duplicates_nothing() {
    if !postgres_available("chaos::kill_9_in_a_loop_loses_and_duplicates_nothing") {
        return;
    }
    let seed: u64 = std::env::var("EBM_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    eprintln!("chaos seed {seed} (EBM_CHAOS_SEED replays a schedule)");
    let mut rng = SplitMix(seed);
    let (train, _) = digits_split();
    let rows = train.slice_rows(0..1000);

    // An API-only server in this process on the chaos database: never killed, runs no jobs.
    let api = TestServer::start_with(StoreKind::Postgres, |c| c.role = Role::Api).await;
    let client = api.client.clone();
    let database_url = api.config.database_url.clone().expect("a Postgres URL");
    let dataset = upload(&client, "digits-1000", &rows).await;
    let mut servers: Vec<Option<ServerProcess>> = Vec::new();
    for _ in 0..3 {
        let (server, _) = ServerProcess::start_with_env(&database_url, 1, &FAST_RECLAIM).await;
        servers.push(Some(server));
    }
    let mut jobs = Vec::new();
    for i in 0..JOBS {
        let job = client
            .submit(train_spec(&dataset.id, hidden_of(i), EPOCHS), None)
            .await
            .expect("submit");
        jobs.push(job.id);
    }

    let chaos_start = Instant::now();
    let mut kills = 0;
    while chaos_start.elapsed() < Duration::from_secs(35) {
        tokio::time::sleep(Duration::from_millis(1000 + rng.below(2000))).await;
        let victim = rng.below(3) as usize;
        if let Some(server) = servers[victim].take() {
            server.kill_9();
            kills += 1;
        }
        let (server, _) = ServerProcess::start_with_env(&database_url, 1, &FAST_RECLAIM).await;
        servers[victim] = Some(server);
    }
    eprintln!("{kills} kill -9 in {:?}", chaos_start.elapsed());

    let mut done = Vec::new();
    for id in &jobs {
        let events = events_to_end(&client, id, Duration::from_secs(120)).await;
        let successes = events
            .iter()
            .filter(|e| e.state() == JobState::Succeeded)
            .count();
        assert_eq!(successes, 1, "job {id} succeeded exactly once: {events:?}");
        let job = client.get_job(id).await.expect("get");
        assert_eq!(job.state(), JobState::Succeeded, "job {id}");
        done.push(job);
    }
    let attempts: Vec<u32> = done.iter().map(|j| j.attempt).collect();
    eprintln!("attempts per job: {attempts:?}");
    let models = client.list_models().await.expect("list models");
    let mut per_job: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for model in &models {
        per_job
            .entry(model.job_id.clone())
            .or_default()
            .push(model.id.clone());
    }
    let mut chaos_bytes = Vec::new();
    for job in &done {
        let ids = per_job.get(&job.id).cloned().unwrap_or_default();
        assert_eq!(ids.len(), 1, "exactly one model of job {}: {ids:?}", job.id);
        let result = job.result.clone().unwrap_or_default();
        assert_eq!(result.model_id, ids[0], "the job's result names its model");
        chaos_bytes.push(client.download_model(&ids[0]).await.expect("download"));
    }
    assert_eq!(models.len(), JOBS as usize, "no stray models");
    drop(servers);
    api.stop().await;

    // The same specs on a quiet single server.
    let quiet = TestServer::start_with(StoreKind::Postgres, |c: &mut Config| c.workers = 2).await;
    let dataset = upload(&quiet.client, "digits-1000", &rows).await;
    for i in 0..JOBS {
        let job = quiet
            .client
            .submit(train_spec(&dataset.id, hidden_of(i), EPOCHS), None)
            .await
            .expect("submit");
        events_to_end(&quiet.client, &job.id, Duration::from_secs(120)).await;
        let job = quiet.client.get_job(&job.id).await.expect("get");
        assert_eq!(job.state(), JobState::Succeeded);
        let model = job.result.unwrap_or_default().model_id;
        let bytes = quiet.client.download_model(&model).await.expect("download");
        assert!(
            tensors(&bytes) == tensors(&chaos_bytes[i as usize]),
            "job {i} (hidden {}): the model trained under kill -9 differs from the quiet run's",
            hidden_of(i)
        );
    }
    quiet.stop().await;
}

/// A job that takes its worker down with it every time it runs, as one that exhausts its
/// node's memory does (here: the worker process is killed with SIGKILL as soon as the job
/// is running, long before its first epoch could end), fails after
/// `retries.max_stalled_attempts` attempts without progress, with an error that says so,
/// having waited a backoff before each new attempt; a healthy job queued behind it on the
/// same single worker still runs. What must hold: the poison job ends `failed` after exactly
/// the limit of attempts and leaves no model; the healthy one succeeds exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_kills_its_worker_every_time_fails_after_the_limit() {
    if !postgres_available("chaos::a_job_that_kills_its_worker_every_time_fails_after_the_limit") {
        return;
    }
    const LIMIT: u32 = 3;
    let (lease, reap, backoff_base, backoff_max) = (1.5, 0.3, 0.5, 2.0);
    let values = [lease, reap, f64::from(LIMIT), backoff_base, backoff_max].map(|v| v.to_string());
    let names = [
        "EBM__LEASE_SECONDS",
        "EBM__REAP_SECONDS",
        "EBM__RETRIES__MAX_STALLED_ATTEMPTS",
        "EBM__RETRIES__BACKOFF_BASE_SECONDS",
        "EBM__RETRIES__BACKOFF_MAX_SECONDS",
    ];
    let settings: Vec<(&str, &str)> = names
        .into_iter()
        .zip(values.iter().map(String::as_str))
        .collect();
    // Every process reaps expired leases with its own [retries] policy: the API server's
    // is the workers' (docs/server.md says to keep them equal across replicas).
    let api = TestServer::start_with(StoreKind::Postgres, |c| {
        c.role = Role::Api;
        c.lease_seconds = lease;
        c.reap_seconds = reap;
        c.retries.max_stalled_attempts = LIMIT;
        c.retries.backoff_base_seconds = backoff_base;
        c.retries.backoff_max_seconds = backoff_max;
    })
    .await;
    let client = api.client.clone();
    let database_url = api.config.database_url.clone().expect("a Postgres URL");
    let (train, _) = digits_split();
    let dataset = upload(&client, "digits", &train).await;
    // 75 minibatches of 2,000 Gibbs steps for 50 chains of a 64 x 64 RBM: the first epoch
    // takes seconds, the kill comes within milliseconds of the job starting.
    let poison = ebm_client::spec::parse_spec(
        &format!(
            r#"kind = "train"
dataset = "{}"
seed = 3
[model]
type = "bernoulli_rbm"
hidden = 64
[train]
method = "pcd"
k = 2000
chains = 50
epochs = 2
batch_size = 20
"#,
            dataset.id
        ),
        &[],
    )
    .expect("a valid spec")
    .spec;
    let poison = client.submit(poison, None).await.expect("submit").id;
    let healthy = client
        .submit(train_spec(&dataset.id, 8, 3), None)
        .await
        .expect("submit")
        .id;

    let mut worker = Some(
        ServerProcess::start_with_env(&database_url, 1, &settings)
            .await
            .0,
    );
    let mut events = Vec::new();
    let mut stream = client.watch(&poison, 0);
    let follow = async {
        while let Some(event) = stream.next().await {
            let event = event.expect("a job event");
            if event.kind == "state" && event.state() == JobState::Running {
                worker.take().expect("a worker").kill_9();
                let (restarted, _) =
                    ServerProcess::start_with_env(&database_url, 1, &settings).await;
                worker = Some(restarted);
            }
            events.push(event);
        }
    };
    tokio::time::timeout(Duration::from_secs(120), follow)
        .await
        .expect("the poison job ended within 120 s");

    let job = client.get_job(&poison).await.expect("get");
    let history: Vec<String> = events
        .iter()
        .filter(|e| e.kind != "progress")
        .map(|e| format!("{} {} {:?} {}", e.attempt, e.kind, e.state(), e.message))
        .collect();
    assert_eq!(job.state(), JobState::Failed, "poison job: {history:#?}");
    assert_eq!(
        job.attempt, LIMIT,
        "attempts of the poison job: {history:#?}"
    );
    let expected = format!("{LIMIT} attempts in a row without progress (attempts 1 to {LIMIT}");
    assert!(job.error.contains(&expected), "error: {}", job.error);
    let backoffs = events
        .iter()
        .filter(|e| e.kind == "state" && e.message.contains("backoff"))
        .count();
    assert_eq!(backoffs, LIMIT as usize - 1, "a backoff before each retry");
    let healthy_events = events_to_end(&client, &healthy, Duration::from_secs(120)).await;
    let successes = healthy_events
        .iter()
        .filter(|e| e.kind == "state" && e.state() == JobState::Succeeded)
        .count();
    assert_eq!(successes, 1, "the healthy job succeeded once");
    let models = client.list_models().await.expect("list models");
    assert_eq!(models.len(), 1, "only the healthy job's model: {models:?}");
    assert_eq!(models[0].job_id, healthy);
    drop(worker);
    api.stop().await;
}
