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

/// A safetensors file of f32 tensors with the model type in its metadata (from the
/// `safetensors` crate, not the engine's writer).
fn safetensors_file(tensors: &[(&str, Vec<usize>, Vec<f32>)], model_type: &str) -> Vec<u8> {
    let bytes: Vec<Vec<u8>> = tensors
        .iter()
        .map(|(_, _, values)| values.iter().flat_map(|v| v.to_le_bytes()).collect())
        .collect();
    let views = tensors.iter().zip(&bytes).map(|((name, shape, _), data)| {
        let view =
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), data)
                .expect("a tensor view");
        (*name, view)
    });
    let metadata = [("type".to_string(), model_type.to_string())].into();
    safetensors::serialize(views, Some(metadata)).expect("serialize")
}

/// Decodes an 8-bit RGB PNG: (width, height, pixels).
fn read_png(path: &Path) -> (usize, usize, Vec<u8>) {
    let file = std::io::BufReader::new(std::fs::File::open(path).expect("the PNG exists"));
    let mut reader = png::Decoder::new(file).read_info().expect("a PNG");
    let mut buf = vec![0; reader.output_buffer_size().expect("a buffer size")];
    let info = reader.next_frame(&mut buf).expect("one frame");
    assert_eq!(info.color_type, png::ColorType::Rgb);
    assert_eq!(info.bit_depth, png::BitDepth::Eight);
    buf.truncate(info.buffer_size());
    (info.width as usize, info.height as usize, buf)
}

fn pixel(png: &(usize, usize, Vec<u8>), x: usize, y: usize) -> [u8; 3] {
    let i = (y * png.0 + x) * 3;
    [png.2[i], png.2[i + 1], png.2[i + 2]]
}

fn usize_of(v: &Value) -> usize {
    v.as_u64().unwrap_or_else(|| panic!("not a count: {v}")) as usize
}

/// Checks that the centre of each unit's square in the grid has the sample's grey level
/// (0/1 units: 0 black, 1 white).
fn check_grid(png: &(usize, usize, Vec<u8>), info: &Value, samples: &ebm_client::npy::Matrix) {
    assert_eq!(
        (png.0, png.1),
        (usize_of(&info["width"]), usize_of(&info["height"]))
    );
    let (h, w) = (usize_of(&info["shape"][0]), usize_of(&info["shape"][1]));
    assert_eq!(h * w, samples.cols);
    let (scale, gap, per_row) = (
        usize_of(&info["scale"]),
        usize_of(&info["gap"]),
        usize_of(&info["tiles_per_row"]),
    );
    let n = usize_of(&info["samples"]);
    assert_eq!(n, samples.rows.min(100));
    for k in 0..n {
        let x0 = gap + (k % per_row) * (w * scale + gap);
        let y0 = gap + (k / per_row) * (h * scale + gap);
        for u in 0..samples.cols {
            let (i, j) = (u / w, u % w);
            let got = pixel(png, x0 + j * scale + scale / 2, y0 + i * scale + scale / 2);
            let want = (samples.row(k)[u] * 255.0).round() as u8;
            assert_eq!(got, [want; 3], "sample {k}, unit {u}");
        }
    }
    // the gaps are neither black nor white
    assert_eq!(pixel(png, 0, 0), [64, 96, 160]);
}

/// `--png`: a sample job's samples as a grid (after `submit --watch`, and from the
/// downloaded artifact with `--shape`), and an observe job's histogram as a bar chart with
/// the mode, mean and map_statistic marked; each PNG is decoded and checked pixel by pixel
/// against the job's own numbers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_draws_samples_and_histograms_as_png() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::for_tests(dir.path());
    config.log_filter = "warn".into();
    let server = Server::start(config).await.expect("start the server");
    let url = server.grpc_url();
    let url = url.as_str();
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_string();

    // 64 independent units, each on with p = 0.3 (zero weights)
    let b = (0.3f32 / 0.7).ln();
    let model_file = path("p30.safetensors");
    std::fs::write(
        &model_file,
        safetensors_file(
            &[
                ("W", vec![64, 2], vec![0.0; 128]),
                ("b", vec![64], vec![b; 64]),
                ("c", vec![2], vec![0.0; 2]),
            ],
            "bernoulli_rbm",
        ),
    )
    .unwrap();
    let model = ok(
        url,
        &["models", "import", &model_file, "--type", "bernoulli_rbm"],
    )
    .await;
    let model_id = model["id"].as_str().unwrap().to_string();

    // samples, drawn as 4 x 16 images (the spec's image_width hint)
    let spec = path("sample.toml");
    std::fs::write(
        &spec,
        format!(
            "kind = \"sample\"\nmodel = \"{model_id}\"\nseed = 2\n\
             [sample]\nsamples = 24\nburn_in = 5\nchains = 4\nimage_width = 16\n"
        ),
    )
    .unwrap();
    let grid_path = path("grid.png");
    let job = ok(url, &["submit", &spec, "--watch", "--png", &grid_path]).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    let info = &job["png"];
    assert_eq!(info["kind"], "samples", "{job}");
    assert_eq!(info["shape"], serde_json::json!([4, 16]));
    let job_id = job["id"].as_str().unwrap().to_string();
    let npy_path = path("samples.npy");
    let artifact_png = path("grid8.png");
    let written = ok(
        url,
        &[
            "jobs",
            "artifact",
            &job_id,
            "samples.npy",
            "-o",
            &npy_path,
            "--png",
            &artifact_png,
            "--shape",
            "8x8",
        ],
    )
    .await;
    let samples = ebm_client::npy::read(&std::fs::read(&npy_path).unwrap()).unwrap();
    assert_eq!((samples.rows, samples.cols), (24, 64));
    let on = samples.values.iter().filter(|&&v| v == 1.0).count();
    assert!(
        on > 0 && on < samples.values.len(),
        "samples are not constant"
    );
    check_grid(&read_png(Path::new(&grid_path)), info, &samples);
    assert_eq!(written["png"]["shape"], serde_json::json!([8, 8]));
    check_grid(
        &read_png(Path::new(&artifact_png)),
        &written["png"],
        &samples,
    );
    // a shape that does not fit is refused, and nothing is drawn for a bad request
    let bad = ebm(
        url,
        &[
            "jobs",
            "get",
            &job_id,
            "--png",
            &path("bad.png"),
            "--shape",
            "5x5",
        ],
    )
    .await;
    assert_eq!(bad.status.code(), Some(1));
    assert!(json(&bad)["error"]["message"]
        .as_str()
        .unwrap()
        .contains("--shape"));

    // observe: fraction on, histogram with mode ~0.3, mean ~0.3 and map_statistic 0
    let spec = path("observe.toml");
    std::fs::write(
        &spec,
        format!(
            "kind = \"observe\"\nmodel = \"{model_id}\"\nseed = 3\n\
             [observe]\nstatistic = \"fraction_on\"\nsamples = 2000\nburn_in = 5\nchains = 4\nbins = 33\n"
        ),
    )
    .unwrap();
    let observed = ok(url, &["submit", &spec]).await;
    let observe_id = observed["id"].as_str().unwrap().to_string();
    assert_eq!(ok(url, &["watch", &observe_id]).await["state"], "succeeded");
    let hist_path = path("hist.png");
    let got = ok(url, &["jobs", "get", &observe_id, "--png", &hist_path]).await;
    let info = &got["png"];
    assert_eq!(info["kind"], "histogram", "{got}");
    let png = read_png(Path::new(&hist_path));
    assert_eq!((png.0, png.1), (800, 400));
    let plot: Vec<usize> = info["plot"]
        .as_array()
        .unwrap()
        .iter()
        .map(usize_of)
        .collect();
    let (left, top, right, bottom) = (plot[0], plot[1], plot[2], plot[3]);
    let lo = info["x_range"][0].as_f64().unwrap();
    let hi = info["x_range"][1].as_f64().unwrap();
    let x_of =
        |v: f64| left + (((v - lo) / (hi - lo)) * (right - left - 1) as f64).round() as usize;
    let result = &got["result"];
    let mode = result["mode"].as_f64().unwrap();
    let mean = result["mean"].as_f64().unwrap();
    assert_eq!(result["map_statistic"].as_f64(), Some(0.0));
    let markers = &info["markers"];
    assert_eq!(usize_of(&markers["mode"]["x"]), x_of(mode));
    assert_eq!(usize_of(&markers["map_statistic"]["x"]), x_of(0.0));
    // the marker lines (the mode is drawn last, over the others)
    let mid = (top + bottom) / 2;
    assert_eq!(pixel(&png, x_of(mode), mid), [220, 30, 30], "mode line");
    assert_eq!(
        pixel(&png, x_of(0.0), mid),
        [20, 160, 60],
        "map_statistic line"
    );
    let x_mean = x_of(mean);
    if x_mean.abs_diff(x_of(mode)) >= 2 {
        assert_eq!(pixel(&png, x_mean, mid), [30, 60, 220], "mean line");
    }
    // the tallest bar reaches the top of the plot somewhere within its bin, and the top
    // left corner of the plot (at x = lo, below no bar) is background
    let edges: Vec<f64> = result["histogram"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    let counts: Vec<u64> = result["histogram"]["counts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert_eq!(counts.iter().sum::<u64>(), 2000);
    let tallest = (0..counts.len()).max_by_key(|&k| counts[k]).unwrap();
    let (x0, x1) = (x_of(edges[tallest]), x_of(edges[tallest + 1]));
    assert!(
        (x0..x1).any(|x| pixel(&png, x, top + 1) == [150, 150, 150]),
        "the tallest bar reaches the top"
    );
    assert_eq!(pixel(&png, left + 1, top + 1), [255, 255, 255]);
    server.shutdown().await.expect("shutdown");
}
