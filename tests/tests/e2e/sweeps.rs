//! Sweeps and labels end to end. On Postgres: a 2 x 2 x 2 sweep (learning rates x hidden
//! sizes x seeds; a tiny RBM on the digits, one epoch) submitted with the real `ebm` CLI to
//! one of two real `ebm-server` processes sharing a fresh database: every variant runs
//! exactly once, spread over both processes, with the right labels, and `ebm sweeps get`
//! shows each job's own result. On SQLite the same checks with one in-process server.
//! Both: a retried submit is idempotent, bad grids are refused naming the field, the label
//! filter of ListJobs, and cancelling a sweep cancels its jobs.
use ebm_client::v1::{GridAxis, Job, JobState, Sweep};
use ebm_client::Client;
use ebm_e2e::process::{cli_json, ebm_cli, ServerProcess};
use ebm_e2e::*;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

const LEARNING_RATES: [&str; 2] = ["0.01", "0.05"];
const HIDDEN: [&str; 2] = ["8", "16"];
const SEED: u64 = 11;

/// A tiny one-epoch RBM spec on `dataset`, with a held-out AIS log-likelihood.
fn spec_toml(dataset: &str, epochs: u32) -> String {
    format!(
        r#"kind = "train"
name = "sweep-rbm"
seed = {SEED}
dataset = "{dataset}"
[model]
type = "bernoulli_rbm"
hidden = 8
[train]
method = "pcd"
chains = 20
epochs = {epochs}
batch_size = 50
learning_rate = 0.05
validation_fraction = 0.2
ais_every = 1
ais_betas = 100
ais_chains = 16
"#
    )
}

fn axis(field: &str, values: &[&str]) -> GridAxis {
    GridAxis {
        field: field.into(),
        values: values.iter().map(|v| v.to_string()).collect(),
    }
}

/// Polls the sweep until every job is finished.
async fn wait_for_sweep(client: &Client, id: &str, timeout: Duration) -> Sweep {
    let start = Instant::now();
    loop {
        let sweep = client.get_sweep(id).await.expect("get the sweep");
        if sweep.jobs.iter().all(|j| j.state().is_terminal()) {
            return sweep;
        }
        assert!(
            start.elapsed() < timeout,
            "sweep {id} unfinished after {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The lease owners' process parts ("pid-tag") of the jobs' running events.
async fn claiming_processes(client: &Client, jobs: &[Job]) -> BTreeSet<String> {
    let mut processes = BTreeSet::new();
    for job in jobs {
        let events = events_to_end(client, &job.id, Duration::from_secs(30)).await;
        let running: Vec<_> = events
            .iter()
            .filter(|e| e.kind == "state" && e.state() == JobState::Running)
            .collect();
        assert_eq!(
            running.len(),
            1,
            "job {} ran exactly once: {running:?}",
            job.id
        );
        let owner = running[0].message.trim_start_matches("claimed by ");
        processes.insert(owner.split('/').next().unwrap_or("").to_string());
    }
    processes
}

/// Submits the sweep with the CLI (twice: the retry is idempotent, also through `retry_url`),
/// waits for it, and checks jobs, labels, models and the `sweeps get` table. Returns it.
async fn run_sweep(
    client: &Client,
    url: &str,
    retry_url: &str,
    dir: &std::path::Path,
    dataset: &str,
    seeds: u32,
) -> Sweep {
    let spec = dir.join("sweep.toml");
    std::fs::write(&spec, spec_toml(dataset, 1)).unwrap();
    let lr = format!("train.learning_rate=[{}]", LEARNING_RATES.join(","));
    let hidden = format!("model.hidden=[{}]", HIDDEN.join(","));
    let seeds_arg = seeds.to_string();
    let args = [
        "sweep",
        spec.to_str().unwrap(),
        "--grid",
        &lr,
        "--grid",
        &hidden,
        "--seeds",
        &seeds_arg,
        "--request-id",
        "sweep-1",
        "--label",
        "team=e2e",
    ];
    let (ok, submitted) = cli_json(&ebm_cli(url, &args).await);
    assert!(ok, "ebm sweep failed: {submitted}");
    let id = submitted["id"].as_str().expect("a sweep id").to_string();
    assert!(id.starts_with("swp_"), "{id}");
    let variants = 4 * seeds.max(1) as usize;
    let job_ids: Vec<&str> = submitted["jobs"]
        .as_array()
        .expect("jobs")
        .iter()
        .map(|j| j["id"].as_str().expect("a job id"))
        .collect();
    assert_eq!(job_ids.len(), variants);
    let (ok, retried) = cli_json(&ebm_cli(retry_url, &args).await);
    assert!(ok, "retried ebm sweep failed: {retried}");
    assert_eq!(
        retried["id"], submitted["id"],
        "a retry returns the same sweep"
    );
    let retried_ids: Vec<&str> = retried["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_str().unwrap())
        .collect();
    assert_eq!(retried_ids, job_ids, "and the same jobs");

    let sweep = wait_for_sweep(client, &id, Duration::from_secs(300)).await;
    assert_eq!(sweep.jobs.len(), variants, "no job was added by the retry");
    let all = client.list_jobs(None).await.expect("list jobs");
    let of_sweep = all
        .iter()
        .filter(|j| j.labels.get("sweep") == Some(&id))
        .count();
    assert_eq!(of_sweep, variants, "the store holds each variant once");

    // Labels name each variant's place in the grid, and its spec is that variant.
    let mut places = BTreeSet::new();
    for job in &sweep.jobs {
        assert_eq!(
            job.state(),
            JobState::Succeeded,
            "{}: {}",
            job.id,
            job.error
        );
        assert_eq!(job.attempt, 1, "{} ran once", job.id);
        let labels = &job.labels;
        assert_eq!(labels.get("sweep"), Some(&id));
        assert_eq!(labels.get("team").map(String::as_str), Some("e2e"));
        let spec = job.spec.as_ref().unwrap();
        let lr = &labels["train.learning_rate"];
        let hidden = &labels["model.hidden"];
        assert_eq!(
            spec.train.as_ref().unwrap().learning_rate,
            Some(lr.parse().unwrap())
        );
        assert_eq!(
            spec.model_config.as_ref().unwrap().hidden,
            Some(hidden.parse().unwrap())
        );
        let seed = labels.get("seed").cloned().unwrap_or_default();
        if seeds > 0 {
            assert_eq!(spec.seed.to_string(), seed);
        } else {
            assert_eq!(spec.seed, SEED);
        }
        places.insert((lr.clone(), hidden.clone(), seed));
    }
    assert_eq!(places.len(), variants, "every grid point once: {places:?}");
    let models: BTreeSet<String> = sweep
        .jobs
        .iter()
        .map(|j| j.result.as_ref().unwrap().model_id.clone())
        .collect();
    assert_eq!(models.len(), variants, "one model per variant");
    let listed = client.list_models().await.expect("list models");
    for model in &models {
        let m = listed
            .iter()
            .find(|m| &m.id == model)
            .expect("model listed");
        assert!(sweep.jobs.iter().any(|j| j.id == m.job_id));
    }

    // The table: each row's values are that job's own result, best first.
    let metric = "val_ais_log_likelihood";
    let (ok, table) = cli_json(&ebm_cli(url, &["sweeps", "get", &id, "--sort", metric]).await);
    assert!(ok, "ebm sweeps get failed: {table}");
    let rows = table["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), variants);
    let mut previous = f64::INFINITY;
    for row in rows {
        let job = client
            .get_job(row["job_id"].as_str().unwrap())
            .await
            .unwrap();
        assert_eq!(row["state"], "succeeded");
        let own = &job.result.as_ref().unwrap().final_metrics;
        assert!(own.contains_key(metric), "{metric} in {own:?}");
        for (name, value) in own {
            assert_eq!(
                row["metrics"][name].as_f64(),
                Some(*value),
                "{name} of {}",
                job.id
            );
        }
        let grid: BTreeMap<String, String> = serde_json::from_value(row["grid"].clone()).unwrap();
        assert_eq!(grid["model.hidden"], job.labels["model.hidden"]);
        let value = own[metric];
        assert!(value <= previous, "sorted descending by {metric}");
        previous = value;
    }
    let (ok, refused) = cli_json(&ebm_cli(url, &["sweeps", "get", &id, "--sort", "nope"]).await);
    assert!(
        !ok && refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("nope")
    );
    let (ok, listed) = cli_json(&ebm_cli(url, &["sweeps", "list"]).await);
    assert!(ok);
    let entry = listed["sweeps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == id.as_str())
        .expect("the sweep is listed")
        .clone();
    assert_eq!(
        entry["job_states"]["succeeded"].as_u64(),
        Some(variants as u64)
    );

    // Label filter: the jobs of this sweep with hidden = 8.
    let filter = [
        ("sweep".to_string(), id.clone()),
        ("model.hidden".to_string(), "8".to_string()),
    ];
    let filtered = client.list_labelled_jobs(None, &filter).await.unwrap();
    assert_eq!(filtered.len(), variants / 2);
    assert!(filtered.iter().all(|j| j.labels["model.hidden"] == "8"));
    let (ok, cli_filtered) = cli_json(
        &ebm_cli(
            url,
            &[
                "jobs",
                "list",
                "--label",
                &format!("sweep={id}"),
                "--label",
                "model.hidden=16",
            ],
        )
        .await,
    );
    assert!(ok);
    assert_eq!(cli_filtered["jobs"].as_array().unwrap().len(), variants / 2);
    sweep
}

/// Bad grids and labels are refused, naming the field; a cancelled sweep's jobs end cancelled.
async fn refusals_and_cancel(client: &Client, url: &str, dir: &std::path::Path, dataset: &str) {
    let base = ebm_client::spec::parse_spec(&spec_toml(dataset, 1), &[])
        .unwrap()
        .spec;
    let refused = |grid: Vec<GridAxis>, seeds: u32| {
        let (client, base) = (client.clone(), base.clone());
        async move { status_of(client.submit_sweep(base, grid, seeds, None, &[]).await) }
    };
    let s = refused(vec![axis("train.learnig_rate", &["0.1"])], 0).await;
    assert_eq!(s.code(), tonic::Code::InvalidArgument);
    assert!(
        s.message().contains("train.learnig_rate") && s.message().contains("train.learning_rate"),
        "{s:?}"
    );
    let s = refused(vec![axis("model.hidden", &[])], 0).await;
    assert_eq!(s.code(), tonic::Code::InvalidArgument);
    assert!(
        s.message().contains("model.hidden") && s.message().contains("empty"),
        "{s:?}"
    );
    let many: Vec<String> = (1..=20).map(|h| h.to_string()).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    let s = refused(vec![axis("model.hidden", &many), axis("train.k", &many)], 0).await;
    assert_eq!(s.code(), tonic::Code::ResourceExhausted);
    assert!(
        s.message().contains("model.hidden") && s.message().contains("max_sweep_variants"),
        "{s:?}"
    );
    // A variant that fails the normal spec validation is refused, naming its grid values.
    let s = refused(vec![axis("train.learning_rate", &["0.1", "-1"])], 0).await;
    assert_eq!(s.code(), tonic::Code::InvalidArgument);
    assert!(s.message().contains("train.learning_rate=-1"), "{s:?}");
    let labels = [("sweep".to_string(), "mine".to_string())];
    let s = status_of(
        client
            .submit_sweep(base.clone(), vec![axis("seed", &["1"])], 0, None, &labels)
            .await,
    );
    assert!(s.message().contains("sweep"), "{s:?}");
    // Through the CLI: an unknown field, the message naming it.
    let spec = dir.join("cancel.toml");
    std::fs::write(&spec, spec_toml(dataset, 2000)).unwrap();
    let output = ebm_cli(
        url,
        &[
            "sweep",
            spec.to_str().unwrap(),
            "--grid",
            "model.hiden=[4,8]",
        ],
    )
    .await;
    let (ok, error) = cli_json(&output);
    assert!(
        !ok && error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("model.hiden"),
        "{error}"
    );
    assert_eq!(
        client.list_sweeps().await.unwrap().len(),
        1,
        "refused sweeps leave nothing"
    );

    // Cancel: long jobs, cancelled while queued or running.
    let (ok, submitted) = cli_json(
        &ebm_cli(
            url,
            &[
                "sweep",
                spec.to_str().unwrap(),
                "--grid",
                "model.hidden=[4,8]",
                "--seeds",
                "2",
            ],
        )
        .await,
    );
    assert!(ok, "{submitted}");
    let id = submitted["id"].as_str().unwrap();
    let (ok, cancelled) = cli_json(&ebm_cli(url, &["sweeps", "cancel", id]).await);
    assert!(ok, "{cancelled}");
    let sweep = wait_for_sweep(client, id, Duration::from_secs(60)).await;
    assert_eq!(sweep.jobs.len(), 4);
    for job in &sweep.jobs {
        assert_eq!(job.state(), JobState::Cancelled, "{}", job.id);
    }
}

/// The digits' first 500 rows (enough for one quick epoch).
async fn upload_digits(client: &Client) -> String {
    upload(client, "digits-500", &digits().slice_rows(0..500))
        .await
        .id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_sweep_on_one_server() {
    let server = TestServer::start(StoreKind::Sqlite).await;
    let dir = tempfile::tempdir().unwrap();
    let dataset = upload_digits(&server.client).await;
    let url = server.url();
    run_sweep(&server.client, &url, &url, dir.path(), &dataset, 0).await;
    refusals_and_cancel(&server.client, &url, dir.path(), &dataset).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_sweep_over_two_server_processes() {
    if !postgres_available("postgres_sweep_over_two_server_processes") {
        return;
    }
    let (_db, database_url) = PgDatabase::create().await.expect("a fresh database");
    let (a, client_a) = ServerProcess::start(&database_url, 1).await;
    let (b, client_b) = ServerProcess::start(&database_url, 1).await;
    let dir = tempfile::tempdir().unwrap();
    let dataset = upload_digits(&client_a).await;
    let sweep = run_sweep(&client_b, &a.url, &b.url, dir.path(), &dataset, 2).await;
    let processes = claiming_processes(&client_a, &sweep.jobs).await;
    assert_eq!(
        processes.len(),
        2,
        "both server processes ran variants: {processes:?}"
    );
    refusals_and_cancel(&client_a, &b.url, dir.path(), &dataset).await;
}
