//! The `ebm` binary against a live server, with `--output json`: every command prints exactly
//! one JSON document on stdout, `watch` exits 0 iff the job succeeded, and errors are
//! human messages with a non-zero exit code, never a panic.
use ebm_server::config::Config;
use ebm_server::startup::Server;
use serde_json::Value;
use std::path::Path;
use std::process::Output;

const EBM: &str = env!("CARGO_BIN_EXE_ebm");

/// Runs `ebm --server URL --output json ARGS...`.
async fn ebm(url: &str, args: &[&str]) -> Output {
    tokio::process::Command::new(EBM)
        .env_remove("EBM_SERVER")
        .env_remove("EBM_TOKEN")
        .args(["--server", url, "--output", "json"])
        .args(args)
        .output()
        .await
        .expect("run ebm")
}

/// The single JSON document on stdout (fails if there is anything else).
fn json(output: &Output) -> Value {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "ebm panicked: {stderr}");
    serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!("stdout is not one JSON document ({e}):\n{stdout}\nstderr:\n{stderr}")
    })
}

async fn ok(url: &str, args: &[&str]) -> Value {
    let output = ebm(url, args).await;
    assert!(
        output.status.success(),
        "ebm {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&output.stderr),
        String::from_utf8_lossy(&output.stdout)
    );
    json(&output)
}

fn digits_path() -> &'static Path {
    Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../data/digits/digits_binarized.npy"
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_drives_a_training_job_with_json_output() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::for_tests(dir.path());
    config.log_filter = "warn".into();
    let server = Server::start(config).await.expect("start the server");
    let url = server.grpc_url();
    let url = url.as_str();
    let digits = digits_path().to_str().unwrap();

    let dataset = ok(url, &["datasets", "upload", digits, "--name", "digits"]).await;
    let dataset_id = dataset["id"].as_str().expect("an id").to_string();
    assert_eq!(
        (dataset["rows"].as_u64(), dataset["cols"].as_u64()),
        (Some(1797), Some(64))
    );
    assert_eq!(dataset["name"], "digits");
    let listed = ok(url, &["datasets", "list"]).await;
    assert_eq!(listed["datasets"].as_array().map(Vec::len), Some(1));
    assert_eq!(
        ok(url, &["datasets", "get", &dataset_id]).await["id"],
        dataset_id.as_str()
    );

    // A spec with dataset_path (uploaded by the CLI) and overrides.
    let spec = dir.path().join("rbm.toml");
    std::fs::write(
        &spec,
        format!(
            "kind = \"train\"\nname = \"cli\"\nseed = 3\ndataset_path = \"{digits}\"\n\
             [model]\ntype = \"bernoulli_rbm\"\nhidden = 8\n\
             [train]\nmethod = \"pcd\"\nchains = 20\nepochs = 50\nbatch_size = 50\nlearning_rate = 0.05\n"
        ),
    )
    .unwrap();
    let spec = spec.to_str().unwrap();
    let job = ok(
        url,
        &[
            "submit",
            spec,
            "--set",
            "train.epochs=2",
            "--request-id",
            "cli-1",
        ],
    )
    .await;
    let job_id = job["id"].as_str().expect("a job id").to_string();
    assert!(
        ["queued", "running"].contains(&job["state"].as_str().unwrap()),
        "{job}"
    );
    assert_eq!(job["spec"]["train"]["epochs"], 2, "--set applied: {job}");
    assert!(
        job["spec"]["dataset"].as_str().unwrap().starts_with("ds"),
        "uploaded: {job}"
    );
    let again = ok(
        url,
        &[
            "submit",
            spec,
            "--set",
            "train.epochs=2",
            "--request-id",
            "cli-1",
        ],
    )
    .await;
    assert_eq!(again["id"], job_id.as_str(), "same request id, same job");

    let finished = ok(url, &["watch", &job_id]).await;
    assert_eq!(finished["state"], "succeeded", "{finished}");
    let model_id = finished["result"]["model_id"]
        .as_str()
        .expect("model_id")
        .to_string();
    let got = ok(url, &["jobs", "get", &job_id]).await;
    assert_eq!(got["state"], "succeeded");
    let listed = ok(url, &["jobs", "list", "--state", "succeeded"]).await;
    assert_eq!(listed["jobs"].as_array().map(Vec::len), Some(1), "{listed}");
    let none = ok(url, &["jobs", "list", "--state", "running"]).await;
    assert_eq!(none["jobs"].as_array().map(Vec::len), Some(0), "{none}");

    let model = ok(url, &["models", "get", &model_id]).await;
    assert_eq!(model["type"], "bernoulli_rbm");
    assert_eq!(
        ok(url, &["models", "list"]).await["models"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    let file = dir.path().join("m.safetensors");
    let written = ok(
        url,
        &[
            "models",
            "download",
            &model_id,
            "-o",
            file.to_str().unwrap(),
        ],
    )
    .await;
    let bytes = std::fs::read(&file).unwrap();
    assert_eq!(written["size_bytes"].as_u64(), Some(bytes.len() as u64));
    assert_eq!(model["size_bytes"].as_u64(), Some(bytes.len() as u64));
    let imported = ok(
        url,
        &[
            "models",
            "import",
            file.to_str().unwrap(),
            "--type",
            "bernoulli_rbm",
            "--name",
            "again",
        ],
    )
    .await;
    assert_ne!(imported["id"], model_id.as_str());
    assert_eq!(imported["type"], "bernoulli_rbm");

    // A job that is cancelled: `watch` exits non-zero and still prints the job.
    let long = ok(
        url,
        &[
            "submit",
            spec,
            "--set",
            "train.epochs=5000",
            "--set",
            "model.hidden=64",
        ],
    )
    .await;
    let long_id = long["id"].as_str().unwrap().to_string();
    let cancelled = ok(url, &["cancel", &long_id]).await;
    assert_eq!(cancelled["id"], long_id.as_str());
    let watched = ebm(url, &["watch", &long_id]).await;
    assert!(
        !watched.status.success(),
        "watch exits non-zero for a cancelled job"
    );
    assert_eq!(json(&watched)["state"], "cancelled");

    // Errors: one JSON document with the error, a human message on stderr, exit code 1.
    let missing = ebm(url, &["jobs", "get", "job_missing"]).await;
    assert_eq!(missing.status.code(), Some(1));
    let error = json(&missing);
    assert_eq!(error["error"]["kind"], "not_found", "{error}");
    let typo = ebm(url, &["submit", spec, "--set", "train.epoch=3"]).await;
    assert_eq!(typo.status.code(), Some(1));
    let message = json(&typo)["error"]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        message.contains("train.epoch") && message.contains("train.epochs"),
        "{message}"
    );

    let deleted = ok(url, &["datasets", "delete", &dataset_id]).await;
    assert_eq!(deleted["deleted"], true);
    server.shutdown().await.expect("shutdown");

    // Nothing listening: a clear message, not a panic.
    let down = ebm(url, &["jobs", "list"]).await;
    assert_eq!(down.status.code(), Some(1));
    let error = json(&down);
    assert_eq!(error["error"]["kind"], "unreachable");
    assert!(String::from_utf8_lossy(&down.stderr).contains("Is ebm-server running?"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_trains_and_reports_what_the_model_learned() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::for_tests(dir.path());
    config.log_filter = "warn".into();
    let server = Server::start(config).await.expect("start the server");
    let report = ok(
        &server.grpc_url(),
        &["demo", "--epochs", "5", "--hidden", "32"],
    )
    .await;
    assert_eq!(report["job"]["state"], "succeeded", "{report}");
    let errors = &report["held_out_reconstruction_error"];
    let trained = errors["trained"].as_f64().unwrap();
    let independent = errors["independent_pixels"].as_f64().unwrap();
    assert!((errors["untrained"].as_f64().unwrap() - 0.25).abs() < 1e-9);
    assert!(trained < independent, "{report}");
    server.shutdown().await.expect("shutdown");
}
