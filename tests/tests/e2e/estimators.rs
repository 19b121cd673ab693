//! The three estimator job kinds end to end on SQLite: import a model through the real
//! client, submit `estimate_log_z`, `sample` and `observe` jobs, and check their results
//! against answers computed here (enumeration, closed forms); bad requests are refused with
//! INVALID_ARGUMENT before they are queued.
use ebm_client::v1::{self, JobSpec, JobState};
use ebm_client::Client;
use ebm_e2e::*;
use std::time::Duration;

/// A safetensors file from the `safetensors` crate, so the test does not depend on the
/// engine's writer.
fn safetensors(tensors: &[(&str, Vec<usize>, Vec<f32>)], metadata: &[(&str, String)]) -> Vec<u8> {
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
    let metadata = metadata
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    safetensors::serialize(views, Some(metadata)).expect("serialize")
}

fn lattice_file(size: usize, coupling: f32, field: f32) -> Vec<u8> {
    safetensors(
        &[("J", vec![], vec![coupling]), ("h", vec![], vec![field])],
        &[("type", "lattice_ising".into()), ("size", size.to_string())],
    )
}

/// Visible units independently on with probability `p_on` (zero weights).
fn independent_rbm(visible: usize, hidden: usize, p_on: f64) -> Vec<u8> {
    let b = (p_on / (1.0 - p_on)).ln() as f32;
    safetensors(
        &[
            ("W", vec![visible, hidden], vec![0.0; visible * hidden]),
            ("b", vec![visible], vec![b; visible]),
            ("c", vec![hidden], vec![0.0; hidden]),
        ],
        &[("type", "bernoulli_rbm".into())],
    )
}

/// ln Z of the periodic L x L Ising model with field, by brute force in f64.
pub(crate) fn lattice_log_z(l: usize, k: f64, h: f64) -> f64 {
    let n = l * l;
    let terms: Vec<f64> = (0u64..1 << n)
        .map(|bits| {
            let s = |r: usize, c: usize| {
                if bits >> ((r % l) * l + c % l) & 1 == 1 {
                    1.0
                } else {
                    -1.0
                }
            };
            let mut e = 0.0;
            for r in 0..l {
                for c in 0..l {
                    e += k * s(r, c) * (s(r + 1, c) + s(r, c + 1)) + h * s(r, c);
                }
            }
            e
        })
        .collect();
    let max = terms.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    max + terms.iter().map(|t| (t - max).exp()).sum::<f64>().ln()
}

fn spec(kind: &str, model: &str) -> JobSpec {
    JobSpec {
        kind: kind.into(),
        model: model.into(),
        seed: 5,
        ..Default::default()
    }
}

async fn run(client: &Client, spec: JobSpec) -> v1::JobResult {
    run_job(client, spec).await.1
}

async fn run_job(client: &Client, spec: JobSpec) -> (String, v1::JobResult) {
    let job = client.submit(spec, None).await.expect("submit");
    events_to_end(client, &job.id, Duration::from_secs(300)).await;
    let job = client.get_job(&job.id).await.expect("get job");
    assert_eq!(job.state(), JobState::Succeeded, "error: {}", job.error);
    (job.id, job.result.expect("a result"))
}

/// exact (enumeration of a 4 x 4 torus in a field) against brute force here; AIS and
/// reverse AIS (100 chains x 2000 steps; measured se ~0.01) within 0.05 nats of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn estimate_log_z_exact_ais_and_reverse() {
    let server = TestServer::start(StoreKind::Sqlite).await;
    let client = &server.client;
    let model = client
        .import_model("lattice_ising", "ising4", lattice_file(4, 0.3, 0.1))
        .await
        .expect("import");
    let truth = lattice_log_z(4, 0.3f32 as f64, 0.1f32 as f64);
    let exact = run(
        client,
        JobSpec {
            estimate: Some(v1::EstimateConfig {
                method: "exact".into(),
                ..Default::default()
            }),
            ..spec("estimate_log_z", &model.id)
        },
    )
    .await;
    assert_eq!(exact.method, "exact");
    assert!(
        (exact.log_z.unwrap() - truth).abs() < 1e-6,
        "{exact:?} vs {truth}"
    );
    let config = v1::EstimateConfig {
        method: "reverse_ais".into(),
        chains: Some(100),
        betas: Some(2000),
        ..Default::default()
    };
    let both = run(
        client,
        JobSpec {
            estimate: Some(config),
            ..spec("estimate_log_z", &model.id)
        },
    )
    .await;
    let (forward, reverse) = (both.log_z.unwrap(), both.log_z_reverse.unwrap());
    assert!(
        (forward - truth).abs() < 0.05,
        "forward {forward} vs {truth}"
    );
    assert!(
        (reverse - truth).abs() < 0.05,
        "reverse {reverse} vs {truth}"
    );
    assert!(both.log_z_low.unwrap() <= forward && forward <= both.log_z_high.unwrap());
    assert!(both.log_z_stderr.unwrap() >= 0.0 && both.ess.unwrap() >= 1.0);
}

/// 2000 draws of 16 independent pixels with p = 0.3, downloaded as samples.npy: the
/// mean over 32000 values has se 0.0026, the tolerance 0.02 is ~8 se.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sample_stores_a_downloadable_matrix() {
    let server = TestServer::start(StoreKind::Sqlite).await;
    let client = &server.client;
    let model = client
        .import_model("bernoulli_rbm", "p30", independent_rbm(16, 2, 0.3))
        .await
        .expect("import");
    let config = v1::SampleConfig {
        samples: Some(2000),
        burn_in: Some(10),
        thin: Some(1),
        chains: Some(20),
        ..Default::default()
    };
    let (job_id, result) = run_job(
        client,
        JobSpec {
            sample: Some(config),
            ..spec("sample", &model.id)
        },
    )
    .await;
    assert_eq!(
        (result.artifact.as_str(), result.rows, result.cols),
        ("samples.npy", 2000, 16)
    );
    let bytes = client
        .download_artifact(&job_id, "samples.npy")
        .await
        .expect("download");
    let m = ebm_client::npy::read(&bytes).expect("a valid .npy file");
    assert_eq!((m.rows, m.cols), (2000, 16));
    assert!(m.values.iter().all(|&x| x == 0.0 || x == 1.0));
    let mean = m.values.iter().map(|&x| x as f64).sum::<f64>() / m.values.len() as f64;
    assert!((mean - 0.3).abs() < 0.02, "mean {mean}");
}

/// DESIGN's 51% example through the service: mode within one bin of 0.48-0.49, mean
/// within 0.01 of 0.49 (16 standard errors at 10^4 independent draws), the most likely
/// microstate all off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn observe_reports_the_macrostate_and_the_map_contrast() {
    let server = TestServer::start(StoreKind::Sqlite).await;
    let client = &server.client;
    let model = client
        .import_model("bernoulli_rbm", "p49", independent_rbm(64, 1, 0.49))
        .await
        .expect("import");
    let config = v1::ObserveConfig {
        statistic: "fraction_on".into(),
        burn_in: Some(10),
        ..Default::default()
    };
    let r = run(
        client,
        JobSpec {
            observe: Some(config),
            ..spec("observe", &model.id)
        },
    )
    .await;
    assert_eq!(r.statistic, "fraction_on");
    let width = 1.0 / 64.0;
    let mode = r.mode.unwrap();
    assert!(mode > 0.48 - width && mode < 0.49 + width, "mode {mode}");
    assert!((r.mean.unwrap() - 0.49).abs() < 0.01);
    assert_eq!(r.map_statistic, Some(0.0));
    assert_eq!(r.modes.len(), 1);
    let h = r.histogram.expect("a histogram");
    assert_eq!((h.edges.len(), h.counts.len()), (66, 65));
    assert_eq!(h.counts.iter().sum::<u64>(), 10_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_estimator_requests_are_refused() {
    let server = TestServer::start(StoreKind::Sqlite).await;
    let client = &server.client;
    let lattice = client
        .import_model("lattice_ising", "ising8", lattice_file(8, 0.4, 0.0))
        .await
        .expect("import");
    let big = client
        .import_model("bernoulli_rbm", "wide", independent_rbm(40, 30, 0.5))
        .await
        .expect("import");
    let estimate = |model: &str, config: v1::EstimateConfig| JobSpec {
        estimate: Some(config),
        ..spec("estimate_log_z", model)
    };
    let ais = |config: v1::EstimateConfig| v1::EstimateConfig {
        method: "ais".into(),
        ..config
    };
    let dataset = upload(client, "digits", &digits()).await;
    let observe = JobSpec {
        observe: Some(v1::ObserveConfig {
            statistic: "hamming_to".into(),
            reference: vec![1.0; 3],
            ..Default::default()
        }),
        ..spec("observe", &lattice.id)
    };
    let cases = [
        (
            "AIS without chains",
            estimate(
                &lattice.id,
                ais(v1::EstimateConfig {
                    chains: Some(0),
                    ..Default::default()
                }),
            ),
            "chains",
        ),
        (
            "a schedule that falls",
            estimate(
                &lattice.id,
                ais(v1::EstimateConfig {
                    schedule: vec![0.0, 0.6, 0.4, 1.0],
                    ..Default::default()
                }),
            ),
            "increasing",
        ),
        (
            "exact ln Z of a model too big to enumerate",
            estimate(
                &big.id,
                v1::EstimateConfig {
                    method: "exact".into(),
                    ..Default::default()
                },
            ),
            "ais",
        ),
        (
            "a data set in place of a model",
            estimate(&dataset.id, v1::EstimateConfig::default()),
            "data set",
        ),
        ("a reference of the wrong length", observe, "64"),
    ];
    for (what, spec, word) in cases {
        assert_refused(client, what, spec, word).await;
    }
}
