//! What DCA users read from a Potts model, through the real server and the `ebm` CLI:
//! contact prediction (`ebm models contacts`).
use ebm_client::npy::{self, Matrix};
use ebm_client::v1::{Job, JobSpec, JobState};
use ebm_client::Client;
use ebm_e2e::process::{cli_json, ebm_cli};
use ebm_e2e::{status_of, upload, wait_until, StoreKind, TestServer};
use ebm_engine::potts::PottsModel;
use std::collections::BTreeMap;
use std::time::Duration;

const JOB_TIMEOUT: Duration = Duration::from_secs(240);

pub fn parse(toml: &str) -> JobSpec {
    ebm_client::spec::parse_spec(toml, &[])
        .unwrap_or_else(|e| panic!("a valid spec: {e}\n{toml}"))
        .spec
}

/// Submits a job and waits for it to succeed.
pub async fn run_job(client: &Client, what: &str, spec: JobSpec) -> Job {
    let job = client
        .submit(spec, None)
        .await
        .unwrap_or_else(|e| panic!("{what}: submit: {e}"));
    let job = wait_until(client, &job.id, JOB_TIMEOUT, |j| {
        j.state() != JobState::Queued && j.state() != JobState::Running
    })
    .await;
    assert_eq!(
        job.state(),
        JobState::Succeeded,
        "{what}: job {} ended {}: {}",
        job.id,
        job.state().name(),
        job.error
    );
    job
}

/// A Potts model whose only couplings are J_ij(a, b) = `strength` [a = b] on `edges`.
pub fn planted_potts(sites: usize, q: usize, edges: &[(usize, usize)], strength: f32) -> Vec<u8> {
    let lq = sites * q;
    let mut couplings = vec![0.0f32; lq * lq];
    for &(i, j) in edges {
        for a in 0..q {
            couplings[(i * q + a) * lq + j * q + a] = strength;
            couplings[(j * q + a) * lq + i * q + a] = strength;
        }
    }
    // small fields so that the states are not exchangeable
    let fields: Vec<f32> = (0..lq).map(|k| 0.1 * ((k * 7 % 5) as f32 - 2.0)).collect();
    let model = PottsModel::from_parts(sites, q, fields, couplings).expect("a valid model");
    ebm_engine::potts::file::to_bytes(&model, &BTreeMap::new()).expect("a model file")
}

/// The planted contacts: a cycle through all L = 10 sites in a scrambled order, so that
/// the L true pairs are neither neighbours in the sequence nor a pattern APC could favour.
const ORDER: [usize; 10] = [0, 3, 7, 1, 5, 9, 2, 8, 4, 6];

fn planted_edges() -> Vec<(usize, usize)> {
    (0..ORDER.len())
        .map(|k| {
            let (a, b) = (ORDER[k], ORDER[(k + 1) % ORDER.len()]);
            (a.min(b), a.max(b))
        })
        .collect()
}

/// Data sampled (by a sample job) from the planted model, a Potts model trained on it (a
/// train job), and its contacts from `ebm models contacts`: the top-L precision must be at
/// least 0.9. Why this is attainable: with K = 1, q = 3 the connected correlation of a
/// planted pair is ~ (e^K - 1)/(e^K + q - 1) = 0.36 against a sampling noise of
/// 1/sqrt(3000) = 0.02, and the indirect pairs two steps apart correlate at ~0.13, which
/// the couplings (DCA) explain away; so the L planted pairs stand far above the other 35.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contacts_recover_a_planted_chain() {
    let server = TestServer::start(StoreKind::Sqlite).await;
    let client = &server.client;
    let (sites, q) = (ORDER.len(), 3);
    let edges = planted_edges();
    let planted = client
        .import_model("potts", "planted", planted_potts(sites, q, &edges, 1.0))
        .await
        .expect("import the planted model");
    let sampled = run_job(
        client,
        "sample the planted model",
        parse(&format!(
            "kind = \"sample\"\nseed = 3\nmodel = \"{}\"\n[sample]\nsamples = 3000\nburn_in = 200\nthin = 5\nchains = 30\n",
            planted.id
        )),
    )
    .await;
    let bytes = client
        .download_artifact(&sampled.id, "samples.npy")
        .await
        .expect("download samples");
    let draws = npy::read(&bytes).expect("samples.npy");
    assert_eq!((draws.rows, draws.cols), (3000, sites));
    let data = upload(client, "planted-samples", &draws).await;
    let trained = run_job(
        client,
        "train on the samples",
        parse(&format!(
            r#"kind = "train"
seed = 5
dataset = "{}"
[model]
type = "potts"
q = {q}
reweight_identity = 0.0
pseudocount = 0.0
[train]
method = "pcd"
chains = 500
k = 5
epochs = 150
optimizer = "adam"
learning_rate = 0.05
"#,
            data.id
        )),
    )
    .await;
    let model_id = trained.result.expect("a result").model_id;

    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("contacts.png");
    let top = sites.to_string();
    let output = ebm_cli(
        &server.url(),
        &[
            "models",
            "contacts",
            &model_id,
            "--top",
            &top,
            "--png",
            png.to_str().unwrap(),
        ],
    )
    .await;
    let (ok, doc) = cli_json(&output);
    assert!(ok, "ebm models contacts failed: {doc}");
    assert_eq!(doc["sites"], sites as u64);
    assert_eq!(doc["total_pairs"], (sites * (sites - 1) / 2) as u64);
    let pairs = doc["pairs"].as_array().expect("pairs");
    assert_eq!(pairs.len(), sites);
    let hits = pairs
        .iter()
        .filter(|p| {
            let (i, j) = (p["i"].as_u64().unwrap(), p["j"].as_u64().unwrap());
            edges.contains(&(i as usize, j as usize))
        })
        .count();
    let precision = hits as f64 / sites as f64;
    eprintln!("top-L precision {precision}: {pairs:?}");
    assert!(precision >= 0.9, "top-L precision {precision}: {doc}");
    let scores: Vec<f64> = pairs.iter().map(|p| p["score"].as_f64().unwrap()).collect();
    assert!(
        scores.windows(2).all(|w| w[0] >= w[1]),
        "ranked: {scores:?}"
    );
    assert_eq!(pairs[0]["rank"], 1);

    // the picture: L x L cells, the listed pairs marked red below the diagonal
    let picture = &doc["picture"];
    assert_eq!(picture["kind"], "heat_map");
    let cell = picture["cell"].as_u64().unwrap() as usize;
    let decoder = png_size(&std::fs::read(&png).expect("the PNG was written"));
    assert_eq!(decoder, ((sites * cell) as u32, (sites * cell) as u32));

    // the same through the typed client: every pair, with the matrix; APC is symmetric
    let all = client
        .get_contacts(&model_id, 0, 1, true)
        .await
        .expect("all contacts");
    assert_eq!(all.pairs.len(), sites * (sites - 1) / 2);
    assert_eq!(all.matrix.len(), sites * sites);
    for p in &all.pairs {
        let (i, j) = (p.i as usize, p.j as usize);
        assert!(i < j);
        assert!((all.matrix[i * sites + j] as f64 - p.score).abs() < 1e-4 * (1.0 + p.score.abs()));
        assert_eq!(all.matrix[i * sites + j], all.matrix[j * sites + i]);
    }
    // separation filter
    let far = client.get_contacts(&model_id, 0, 3, false).await.unwrap();
    assert!(far.pairs.iter().all(|p| p.j - p.i >= 3));
    assert_eq!(far.total_pairs, far.pairs.len() as u64);
    assert!(far.matrix.is_empty());

    // refusals: an RBM has no contacts; more pairs than the limit allows
    let values = (0..80).map(|k| (k % 3 == 0) as u8 as f32).collect();
    let rbm = upload(
        client,
        "tiny",
        &Matrix {
            rows: 40,
            cols: 2,
            values,
        },
    )
    .await;
    let rbm_job = run_job(client, "tiny rbm", ebm_e2e::train_spec(&rbm.id, 2, 1)).await;
    let status = status_of(
        client
            .get_contacts(&rbm_job.result.unwrap().model_id, 0, 1, false)
            .await,
    );
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(status.message().contains("potts"), "{}", status.message());
    let missing = status_of(client.get_contacts("mdl_nope", 0, 1, false).await);
    assert_eq!(missing.code(), tonic::Code::NotFound);
    let output = ebm_cli(&server.url(), &["models", "contacts", "mdl_nope"]).await;
    let (ok, doc) = cli_json(&output);
    assert!(
        !ok && doc["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not found")
    );
    server.stop().await;
}

/// A small server limit on answer sizes refuses a large request with a message naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contacts_are_bounded_by_the_limit() {
    let server =
        TestServer::start_with(StoreKind::Sqlite, |c| c.limits.max_result_values = 20).await;
    let client = &server.client;
    let model = client
        .import_model(
            "potts",
            "planted",
            planted_potts(10, 2, &planted_edges(), 0.5),
        )
        .await
        .unwrap();
    // 45 pairs > 20
    let status = status_of(client.get_contacts(&model.id, 0, 1, false).await);
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(
        status.message().contains("max_result_values"),
        "{}",
        status.message()
    );
    // a 10 x 10 matrix > 20
    let status = status_of(client.get_contacts(&model.id, 5, 1, true).await);
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    let five = client.get_contacts(&model.id, 5, 1, false).await.unwrap();
    assert_eq!(five.pairs.len(), 5);
    server.stop().await;
}

/// Width and height from a PNG's IHDR chunk.
pub fn png_size(bytes: &[u8]) -> (u32, u32) {
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "a PNG signature");
    let word = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap());
    (word(16), word(20))
}
