//! `ebm models import` of files made by NumPy or PyTorch in their own dtypes: float64 (and
//! float16/bfloat16) tensors are converted to float32 once, the model's metadata says so,
//! and the imported model is the float32 rounding of the file (checked through an exact
//! ln Z job against brute force); a non-finite value is refused naming tensor and index.
use crate::estimators::lattice_log_z;
use ebm_client::v1::{self, JobSpec, JobState};
use ebm_e2e::process::{cli_json, ebm_cli};
use ebm_e2e::*;
use safetensors::{tensor::TensorView, Dtype};
use std::collections::HashMap;
use std::time::Duration;

/// A lattice_ising file (`J`, `h` scalars) with both tensors in `dtype`, `encode` giving
/// one value's little-endian bytes.
fn lattice_file(dtype: Dtype, coupling: f64, field: f64, encode: fn(f64) -> Vec<u8>) -> Vec<u8> {
    let (j, h) = (encode(coupling), encode(field));
    let views = [
        ("J", TensorView::new(dtype, vec![], &j).unwrap()),
        ("h", TensorView::new(dtype, vec![], &h).unwrap()),
    ];
    let metadata: HashMap<String, String> = [("type", "lattice_ising"), ("size", "4")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    safetensors::serialize(views, Some(metadata)).unwrap()
}

async fn cli_import(url: &str, file: &std::path::Path) -> (bool, serde_json::Value) {
    let args = [
        "models",
        "import",
        file.to_str().unwrap(),
        "--type",
        "lattice_ising",
    ];
    cli_json(&ebm_cli(url, &args).await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn float64_models_import_as_float32_and_non_finite_ones_are_refused() {
    let server = TestServer::start(StoreKind::Sqlite).await;
    let dir = tempfile::tempdir().unwrap();
    // K = 0.3 + 1e-9 is not a float32: the import must round it (once) to the nearest one.
    let (k, h) = (0.3 + 1e-9, 0.1);
    let path = dir.path().join("ising64.safetensors");
    std::fs::write(
        &path,
        lattice_file(Dtype::F64, k, h, |x| x.to_le_bytes().to_vec()),
    )
    .unwrap();
    let (ok, model) = cli_import(&server.url(), &path).await;
    assert!(ok, "{model}");
    let notes = model["metadata"]["import_notes"]
        .as_str()
        .unwrap_or_default();
    assert!(
        notes.contains("J: converted from float64") && notes.contains("h: converted from float64"),
        "{model}"
    );
    let id = model["id"].as_str().unwrap().to_string();
    let job = server
        .client
        .submit(
            JobSpec {
                kind: "estimate_log_z".into(),
                model: id,
                seed: 1,
                estimate: Some(v1::EstimateConfig {
                    method: "exact".into(),
                    ..Default::default()
                }),
                ..Default::default()
            },
            None,
        )
        .await
        .expect("submit");
    events_to_end(&server.client, &job.id, Duration::from_secs(120)).await;
    let job = server.client.get_job(&job.id).await.unwrap();
    assert_eq!(job.state(), JobState::Succeeded, "{}", job.error);
    let log_z = job.result.unwrap().log_z.unwrap();
    let truth = lattice_log_z(4, k as f32 as f64, h as f32 as f64);
    // Enumeration in f64 of the same float32 parameters: equal up to summation order.
    assert!((log_z - truth).abs() < 1e-9, "{log_z} vs {truth}");

    // float16 with a NaN coupling: refused, naming the tensor and its index.
    let path = dir.path().join("ising16-nan.safetensors");
    let nan16 = |x: f64| {
        let v = if x == 0.3 { f64::NAN } else { x };
        half_bits(v).to_le_bytes().to_vec()
    };
    std::fs::write(&path, lattice_file(Dtype::F16, 0.3, 0.1, nan16)).unwrap();
    let (ok, refused) = cli_import(&server.url(), &path).await;
    let message = refused["error"]["message"].as_str().unwrap_or_default();
    assert!(
        !ok && message.contains("tensor \"J\"") && message.contains("index [] (flat 0)"),
        "{refused}"
    );
    let models = server.client.list_models().await.unwrap();
    assert_eq!(models.len(), 1, "the refused file stored nothing");
    server.stop().await;
}

/// IEEE binary16 bits of `x` for the two values used here (NaN, and 0.1 rounded).
fn half_bits(x: f64) -> u16 {
    if x.is_nan() {
        0x7e00
    } else {
        assert_eq!(x, 0.1);
        0x2e66 // 0.0999755859375, the float16 nearest 0.1
    }
}
