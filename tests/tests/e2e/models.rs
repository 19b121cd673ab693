//! Every model type, method and option reachable from a TOML job spec through the real
//! server and client: Potts (BM-DCA) on a slice of the bundled PF00014 alignment uploaded
//! as FASTA, the lattice Ising model learned from spin configurations, Gaussian and
//! Bernoulli RBMs; CD-k, PCD and PT; SGD and Adam; L1/L2; linear and exponential
//! learning-rate schedules; centering; validation split; init_model. Each job is tiny (a
//! few epochs on small data): these tests check that each option arrives in the engine and
//! does what it says, not what the models learn (the engine's tests do that). Then a table
//! of bad combinations, each refused with INVALID_ARGUMENT and a message naming the field.
use ebm_client::v1::{Job, JobSpec, JobState};
use ebm_client::{npy, Client, DatasetFormat};
use ebm_e2e::*;
use std::collections::HashMap;
use std::time::Duration;

on_both_stores!(every_model_type_and_option_trains_through_the_service);

const JOB_TIMEOUT: Duration = Duration::from_secs(120);

/// The first `records` sequences of the bundled PF00014 alignment, as FASTA text.
fn pf00014_slice(records: usize) -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../data/msa/PF00014.fasta");
    let text = std::fs::read_to_string(path).expect("the bundled PF00014 alignment");
    let mut out = String::new();
    for record in text
        .split('>')
        .filter(|r| !r.trim().is_empty())
        .take(records)
    {
        out.push('>');
        out.push_str(record);
    }
    out
}

/// A small deterministic generator (64-bit LCG), so the data do not depend on the engine.
struct Lcg(u64);

impl Lcg {
    fn next_f64(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// `rows` configurations of a 4 x 4 lattice, each spin +1 with probability 0.85 (a
/// mostly aligned, "ferromagnetic-looking" sample), as 0/1 (0 is read as -1).
fn lattice_rows(rows: usize) -> npy::Matrix {
    let mut rng = Lcg(17);
    let values = (0..rows * 16)
        .map(|_| if rng.next_f64() < 0.85 { 1.0 } else { 0.0 })
        .collect();
    npy::Matrix {
        rows,
        cols: 16,
        values,
    }
}

/// Mean bond product per site, (sum over the 2 N bonds of s_i s_j) / (2 N), and mean spin
/// of 0/1 rows of a periodic L x L lattice, computed here in f64.
fn lattice_moments(data: &npy::Matrix, l: usize) -> (f64, f64) {
    let n = (l * l) as f64;
    let (mut bond, mut spin) = (0.0, 0.0);
    for r in 0..data.rows {
        let s = |y: usize, x: usize| 2.0 * f64::from(data.row(r)[(y % l) * l + x % l]) - 1.0;
        for y in 0..l {
            for x in 0..l {
                bond += s(y, x) * (s(y, x + 1) + s(y + 1, x));
                spin += s(y, x);
            }
        }
    }
    (
        bond / (2.0 * n * data.rows as f64),
        spin / (n * data.rows as f64),
    )
}

/// Real-valued rows: two clusters in `cols` dimensions.
fn real_rows(rows: usize, cols: usize) -> npy::Matrix {
    let mut rng = Lcg(5);
    let mut values = Vec::with_capacity(rows * cols);
    for r in 0..rows {
        let centre = if r % 2 == 0 { 1.5 } else { -1.0 };
        for j in 0..cols {
            let noise = rng.next_f64() - 0.5;
            values.push((centre * (j as f64 + 1.0) / 4.0 + noise) as f32);
        }
    }
    npy::Matrix { rows, cols, values }
}

fn parse(toml: &str) -> JobSpec {
    ebm_client::spec::parse_spec(toml, &[])
        .unwrap_or_else(|e| panic!("a valid spec: {e}\n{toml}"))
        .spec
}

/// Submits every spec, then waits for each to succeed (the server runs two at a time).
async fn run_all(client: &Client, specs: Vec<(&'static str, JobSpec)>) -> Vec<(&'static str, Job)> {
    let mut submitted = Vec::new();
    for (what, spec) in specs {
        let job = client
            .submit(spec, None)
            .await
            .unwrap_or_else(|e| panic!("{what}: submit: {e}"));
        submitted.push((what, job.id));
    }
    let mut done = Vec::new();
    for (what, id) in submitted {
        let job = wait_until(client, &id, JOB_TIMEOUT, |j| {
            j.state() != JobState::Queued && j.state() != JobState::Running
        })
        .await;
        assert_eq!(
            job.state(),
            JobState::Succeeded,
            "{what}: job {id} ended {}: {}",
            job.state().name(),
            job.error
        );
        done.push((what, job));
    }
    done
}

/// The job whose description starts with `name`.
fn find<'a>(jobs: &'a [(&'static str, Job)], name: &str) -> &'a Job {
    &jobs
        .iter()
        .find(|(what, _)| what.starts_with(name))
        .unwrap_or_else(|| panic!("job {name}"))
        .1
}

fn metrics(job: &Job) -> HashMap<String, f64> {
    job.result
        .as_ref()
        .expect("a result")
        .final_metrics
        .clone()
        .into_iter()
        .collect()
}

fn metric(what: &str, m: &HashMap<String, f64>, name: &str) -> f64 {
    *m.get(name)
        .unwrap_or_else(|| panic!("{what}: no metric {name} in {m:?}"))
}

/// Downloads the job's model and returns (metadata, tensors as f64 with shapes).
struct ModelFile {
    bytes: Vec<u8>,
    metadata: HashMap<String, String>,
    tensors: HashMap<String, (Vec<usize>, Vec<f64>)>,
}

async fn download(client: &Client, job: &Job) -> ModelFile {
    let id = &job.result.as_ref().expect("a result").model_id;
    let bytes = client.download_model(id).await.expect("download the model");
    let file = safetensors::SafeTensors::deserialize(&bytes).expect("a safetensors file");
    let mut tensors = HashMap::new();
    for (name, view) in file.tensors() {
        assert_eq!(view.dtype(), safetensors::Dtype::F32, "{name} is float32");
        let values = view
            .data()
            .chunks_exact(4)
            .map(|c| f64::from(f32::from_le_bytes([c[0], c[1], c[2], c[3]])))
            .collect();
        tensors.insert(name.to_string(), (view.shape().to_vec(), values));
    }
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).expect("a header");
    let metadata = header
        .metadata()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    ModelFile {
        bytes,
        metadata,
        tensors,
    }
}

impl ModelFile {
    fn tensor(&self, name: &str, shape: &[usize]) -> &[f64] {
        let (s, v) = self
            .tensors
            .get(name)
            .unwrap_or_else(|| panic!("tensor {name} in the model file"));
        assert_eq!(s, shape, "shape of {name}");
        assert!(v.iter().all(|x| x.is_finite()), "{name} is finite");
        v
    }

    /// The training spec recorded in the metadata, as JSON.
    fn train_spec(&self) -> serde_json::Value {
        serde_json::from_str(&self.metadata["train_spec"]).expect("train_spec metadata is JSON")
    }
}

async fn every_model_type_and_option_trains_through_the_service(kind: StoreKind) {
    let server = TestServer::start_with(kind, |c| c.workers = 2).await;
    let client = &server.client;

    // ---- data sets, uploaded as the CLI does ----
    let fasta = pf00014_slice(80);
    let alignment = client
        .upload_dataset_bytes("pf00014-80", DatasetFormat::Fasta, fasta.into_bytes())
        .await
        .expect("upload the alignment");
    assert_eq!(
        (alignment.rows, alignment.cols, alignment.q),
        (80, 53, 21),
        "{alignment:?}"
    );
    assert_eq!(alignment.value_kind, "categorical");
    let spins = lattice_rows(64);
    let lattice = upload(client, "spins-4x4", &spins).await;
    assert_eq!((lattice.rows, lattice.cols), (64, 16));
    let real = real_rows(120, 8);
    let reals = client
        .upload_dataset_bytes("clusters", DatasetFormat::Npy, npy::write_f32(&real))
        .await
        .expect("upload real data");
    assert_eq!(reals.value_kind, "real");
    let digits = upload(client, "digits-200", &digits().slice_rows(0..200)).await;

    let specs = vec![
        (
            "potts pcd adam metropolis, reweighting, pseudocount, validation",
            parse(&format!(
                r#"kind = "train"
name = "potts-pcd"
seed = 3
dataset = "{}"
[model]
type = "potts"
q = 21
reweight_identity = 0.7
pseudocount = 0.05
unknown_residues = "drop"
[train]
method = "pcd"
chains = 40
k = 2
epochs = 2
optimizer = "adam"
learning_rate = 0.01
adam_beta1 = 0.8
l2 = 0.001
sampler = "metropolis"
validation_fraction = 0.25
"#,
                alignment.id
            )),
        ),
        (
            "potts pt sgd gibbs, l1, exponential schedule",
            parse(&format!(
                r#"kind = "train"
seed = 4
dataset = "{}"
[model]
type = "potts"
reweight_identity = 0.0
[train]
method = "pt"
betas = [0.5, 1.0]
pt_swap_every = 1
chains = 20
k = 2
epochs = 2
optimizer = "sgd"
momentum = 0.9
learning_rate = 0.02
l1 = 0.0001
lr_schedule = "exponential"
lr_final = 0.005
sampler = "gibbs"
"#,
                alignment.id
            )),
        ),
        (
            "potts cd",
            parse(&format!(
                r#"kind = "train"
seed = 5
dataset = "{}"
[model]
type = "potts"
[train]
method = "cd"
chains = 20
k = 1
epochs = 1
"#,
                alignment.id
            )),
        ),
        (
            "lattice cd sgd heat bath",
            parse(&format!(
                r#"kind = "train"
seed = 6
dataset = "{}"
[model]
type = "lattice_ising"
size = 4
[train]
method = "cd"
chains = 16
k = 2
epochs = 1
optimizer = "sgd"
momentum = 0.0
learning_rate = 0.1
sampler = "gibbs"
"#,
                lattice.id
            )),
        ),
        (
            "lattice pt adam metropolis, l2, linear schedule",
            parse(&format!(
                r#"kind = "train"
seed = 7
dataset = "{}"
[model]
type = "lattice_ising"
[train]
method = "pt"
betas = [0.6, 1.0]
pt_swap_every = 2
chains = 8
k = 4
epochs = 3
optimizer = "adam"
learning_rate = 0.05
l2 = 0.01
lr_schedule = "linear"
lr_final = 0.01
sampler = "metropolis"
checkpoint_every = 2
"#,
                lattice.id
            )),
        ),
        (
            "gaussian rbm pcd, learned sigma",
            parse(&format!(
                r#"kind = "train"
seed = 8
dataset = "{}"
[model]
type = "gaussian_rbm"
hidden = 4
learn_sigma = true
standardize = true
[train]
method = "pcd"
chains = 20
batch_size = 20
k = 1
epochs = 2
learning_rate = 0.01
"#,
                reals.id
            )),
        ),
        (
            "bernoulli rbm cd-2 sgd, l1, linear schedule, centering, zero visible biases, data order",
            parse(&format!(
                r#"kind = "train"
seed = 9
dataset = "{}"
[model]
type = "bernoulli_rbm"
hidden = 8
visible = 64
[train]
method = "cd"
k = 2
batch_size = 20
epochs = 2
optimizer = "sgd"
momentum = 0.9
learning_rate = 0.05
l1 = 0.0001
lr_schedule = "linear"
lr_final = 0.01
centering = true
visible_bias_init = "zero"
shuffle = false
"#,
                digits.id
            )),
        ),
        (
            "bernoulli rbm pt adam, l2, validation split",
            parse(&format!(
                r#"kind = "train"
seed = 10
dataset = "{}"
[model]
type = "bernoulli_rbm"
hidden = 6
[train]
method = "pt"
betas = [0.4, 0.7, 1.0]
pt_swap_every = 2
chains = 10
k = 2
batch_size = 25
epochs = 2
optimizer = "adam"
learning_rate = 0.01
adam_beta1 = 0.85
adam_beta2 = 0.99
adam_eps = 1e-6
l2 = 0.001
validation_fraction = 0.2
"#,
                digits.id
            )),
        ),
    ];
    let jobs = run_all(client, specs).await;
    let job = |name: &'static str| find(&jobs, name);

    // ---- Potts ----
    let what = "potts pcd";
    let potts = job(what);
    let m = metrics(potts);
    let pearson = metric(what, &m, "pearson");
    assert!((-1.0..=1.0).contains(&pearson), "{what}: pearson {pearson}");
    assert!(metric(what, &m, "pseudo_log_likelihood") < 0.0, "{m:?}");
    assert!(m.contains_key("val_pseudo_log_likelihood"), "{m:?}");
    // 80 sequences, a quarter held out: M_eff of the 60 training sequences, reweighted at
    // 70% identity, lies in (0, 60].
    let m_eff = metric(what, &m, "m_eff");
    assert!(m_eff > 0.0 && m_eff <= 60.0 + 1e-9, "{what}: m_eff {m_eff}");
    let file = download(client, potts).await;
    assert_eq!(file.metadata["type"], "potts");
    assert_eq!(file.metadata["alphabet"], "-ACDEFGHIKLMNPQRSTVWY");
    assert_eq!(file.metadata["pseudocount"].parse::<f64>().ok(), Some(0.05));
    let (l, q) = (53, 21);
    file.tensor("h", &[l, q]);
    let j = file.tensor("J", &[l, q, l, q]);
    let at = |i: usize, a: usize, k: usize, b: usize| j[((i * q + a) * l + k) * q + b];
    for i in 0..l {
        for k in 0..l {
            for a in 0..q {
                for b in 0..q {
                    if i == k {
                        assert_eq!(at(i, a, k, b), 0.0, "diagonal block J[{i},{a},{i},{b}]");
                    } else {
                        assert_eq!(at(i, a, k, b), at(k, b, i, a), "J symmetric");
                    }
                }
            }
        }
    }
    assert!(
        j.iter().any(|&x| x != 0.0),
        "two updates moved the couplings"
    );
    let spec = file.train_spec();
    assert_eq!(spec["sampler"], "metropolis");
    assert_eq!(spec["optimizer"], "adam");
    // The file loads: the server's importer accepts it, and a sample job draws from it.
    let imported = client
        .import_model("potts", "potts-again", file.bytes.clone())
        .await
        .expect("the downloaded Potts file imports");
    assert_eq!(
        (imported.dims.get("sites"), imported.dims.get("q")),
        (Some(&53), Some(&21))
    );
    let sample = parse(&format!(
        r#"kind = "sample"
seed = 1
model = "{}"
[sample]
samples = 40
burn_in = 5
chains = 4
"#,
        imported.id
    ));
    let sampled = run_all(client, vec![("potts sample", sample)]).await;
    let bytes = client
        .download_artifact(&sampled[0].1.id, "samples.npy")
        .await
        .expect("download samples");
    let draws = npy::read(&bytes).expect("samples.npy");
    assert_eq!((draws.rows, draws.cols), (40, 53));
    assert!(draws
        .values
        .iter()
        .all(|&s| (0.0..21.0).contains(&s) && s.fract() == 0.0));

    let what = "potts pt";
    let m = metrics(job(what));
    assert!((-1.0..=1.0).contains(&metric(what, &m, "pearson")), "{m:?}");
    let swap = metric(what, &m, "pt_swap_rate_min");
    assert!((0.0..=1.0).contains(&swap), "{what}: swap rate {swap}");
    // exponential schedule, 2 epochs: the last epoch runs at lr_final
    let lr = metric(what, &m, "learning_rate");
    assert!((lr - 0.005).abs() < 1e-12, "{what}: learning rate {lr}");
    let file = download(client, job(what)).await;
    assert_eq!(file.train_spec()["l1"], 0.0001);
    assert_eq!(file.metadata["method"], "pt");

    let what = "potts cd";
    let m = metrics(job(what));
    assert!(m.contains_key("pearson"), "{what}: {m:?}");
    assert_eq!(download(client, job(what)).await.metadata["method"], "cd");

    // ---- lattice Ising ----
    let (bond, magnetization) = lattice_moments(&spins, 4);
    let what = "lattice cd";
    let m = metrics(job(what));
    // The data moments the server computed are the ones computed here from the same rows.
    assert!((metric(what, &m, "bond_data") - bond).abs() < 1e-9, "{m:?}");
    assert!(
        (metric(what, &m, "magnetization_data") - magnetization).abs() < 1e-9,
        "{m:?}"
    );
    // One SGD step from J = h = 0: heat-bath sweeps at J = h = 0 draw every spin
    // independently, so the model's bond average has mean 0 and sd 1/sqrt(16 chains x 32
    // bonds) = 0.044, far below the data's (about 0.49 at p = 0.85); the step
    // 0.1 * 2 (bond_data - bond_model) must be positive, and likewise for h.
    let coupling = metric(what, &m, "coupling");
    let field = metric(what, &m, "field");
    assert!(bond > 0.3 && magnetization > 0.5, "{bond} {magnetization}");
    assert!(
        coupling > 0.0 && field > 0.0,
        "{what}: J = {coupling}, h = {field}"
    );
    // 16 sites: the exact log-likelihood is reported.
    assert!(metric(what, &m, "log_likelihood") < 0.0, "{m:?}");
    let file = download(client, job(what)).await;
    assert_eq!(file.metadata["type"], "lattice_ising");
    assert_eq!(file.metadata["size"], "4");
    let j = file.tensor("J", &[])[0];
    assert!(
        (j - coupling).abs() < 1e-6,
        "file J {j} vs metric {coupling}"
    );
    client
        .import_model("lattice_ising", "lattice-again", file.bytes.clone())
        .await
        .expect("the downloaded lattice file imports");

    let what = "lattice pt";
    let m = metrics(job(what));
    assert!(m.contains_key("pt_swap_rate_0"), "{what}: {m:?}");
    let lr = metric(what, &m, "learning_rate");
    assert!((lr - 0.01).abs() < 1e-12, "{what}: learning rate {lr}");
    let file = download(client, job(what)).await;
    assert_eq!(file.train_spec()["optimizer"], "adam");

    // ---- RBMs ----
    let what = "gaussian rbm";
    let m = metrics(job(what));
    assert!(metric(what, &m, "reconstruction_error") >= 0.0, "{m:?}");
    let file = download(client, job(what)).await;
    assert_eq!(file.metadata["type"], "gaussian_rbm");
    file.tensor("W", &[8, 4]);
    let sigma = file.tensor("sigma", &[8]);
    assert!(sigma.iter().all(|&s| s > 0.0), "sigma {sigma:?}");
    assert_eq!(file.train_spec()["method"], "pcd");

    let what = "bernoulli rbm cd-2";
    let m = metrics(job(what));
    let lr = metric(what, &m, "learning_rate");
    assert!((lr - 0.01).abs() < 1e-12, "{what}: learning rate {lr}");
    // 8 hidden units: the exact log-likelihood by enumeration.
    assert!(metric(what, &m, "log_likelihood") < 0.0, "{m:?}");
    let file = download(client, job(what)).await;
    file.tensor("W", &[64, 8]);
    let spec = file.train_spec();
    assert_eq!(spec["centering"], true);
    assert_eq!(spec["visible_bias_init"], "zero");
    assert_eq!(spec["shuffle"], false);
    assert_eq!(spec["k"], 2);

    let what = "bernoulli rbm pt";
    let m = metrics(job(what));
    for name in [
        "val_pseudo_log_likelihood",
        "val_reconstruction_error",
        "pt_swap_rate_0",
        "pt_swap_rate_1",
    ] {
        assert!(m.contains_key(name), "{what}: no {name} in {m:?}");
    }
    let file = download(client, job(what)).await;
    assert_eq!(file.train_spec()["adam_beta2"], 0.99);

    // ---- init_model: continue from a trained model of the same shape ----
    let init = parse(&format!(
        r#"kind = "train"
seed = 11
dataset = "{}"
[model]
type = "lattice_ising"
init_model = "{}"
[train]
epochs = 1
learning_rate = 1e-9
"#,
        lattice.id,
        job("lattice cd").result.as_ref().unwrap().model_id
    ));
    let continued = run_all(client, vec![("init_model", init)]).await;
    let m = metrics(&continued[0].1);
    // A step of 1e-9 leaves J where the first job left it.
    let from = metric("init_model", &m, "coupling");
    assert!(
        (from - coupling).abs() < 1e-6,
        "init_model: J {from}, the model it started from {coupling}"
    );
    server.stop().await;
}

/// Bad combinations are refused at submission with INVALID_ARGUMENT and a message that
/// names what to fix; nothing is queued.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_combinations_are_refused_naming_the_field() {
    let server = TestServer::start(StoreKind::Sqlite).await;
    let client = &server.client;
    let alignment = client
        .upload_dataset_bytes(
            "pf00014-20",
            DatasetFormat::Fasta,
            pf00014_slice(20).into_bytes(),
        )
        .await
        .expect("upload the alignment");
    let lattice = upload(client, "spins", &lattice_rows(10)).await;
    let digits = upload(client, "digits", &digits().slice_rows(0..50)).await;
    let reals = client
        .upload_dataset_bytes(
            "reals",
            DatasetFormat::Npy,
            npy::write_f32(&real_rows(20, 16)),
        )
        .await
        .expect("upload real data");
    // Integer states 0..39 as real numbers: a Potts alphabet of q = 40.
    let wide = client
        .upload_dataset_bytes(
            "wide-alphabet",
            DatasetFormat::Npy,
            npy::write_f32(&npy::Matrix {
                rows: 20,
                cols: 4,
                values: (0..80).map(|i| ((i * 7) % 40) as f32).collect(),
            }),
        )
        .await
        .expect("upload wide-alphabet data");
    let trained_rbm = {
        let spec = train_spec(&digits.id, 4, 1);
        let jobs = run_all(client, vec![("rbm", spec)]).await;
        jobs[0].1.result.as_ref().unwrap().model_id.clone()
    };

    let spec = |dataset: &str, model: &str, train: &str| {
        parse(&format!(
            "kind = \"train\"\ndataset = \"{dataset}\"\n[model]\n{model}\n[train]\nepochs = 1\n{train}\n"
        ))
    };
    let potts = |model: &str, train: &str| {
        spec(&alignment.id, &format!("type = \"potts\"\n{model}"), train)
    };
    let ising = |model: &str, train: &str| {
        spec(
            &lattice.id,
            &format!("type = \"lattice_ising\"\n{model}"),
            train,
        )
    };
    let rbm = |model: &str, train: &str| {
        spec(
            &digits.id,
            &format!("type = \"bernoulli_rbm\"\nhidden = 4\n{model}"),
            train,
        )
    };
    // (what, spec, text the message must contain)
    let cases: Vec<(&str, JobSpec, &str)> = vec![
        (
            "rbm pt without a ladder",
            rbm("", "method = \"pt\""),
            "train.betas",
        ),
        (
            "potts pt without a ladder",
            potts("", "method = \"pt\""),
            "train.betas",
        ),
        (
            "lattice pt without a ladder",
            ising("", "method = \"pt\""),
            "train.betas",
        ),
        (
            "ladder not ending at 1",
            rbm("", "method = \"pt\"\nbetas = [0.2, 0.5]"),
            "train.betas",
        ),
        (
            "ladder without pt",
            potts("", "betas = [0.5, 1.0]"),
            "train.betas",
        ),
        ("q = 1 on an alignment", potts("q = 1", ""), "model.q"),
        (
            "q = 1 on binary data",
            spec(&digits.id, "type = \"potts\"\nq = 1", ""),
            "model.q",
        ),
        ("q = 0", potts("q = 0", ""), "model.q"),
        (
            "q disagreeing with the alphabet",
            potts("q = 4", ""),
            "model.q",
        ),
        (
            "potts on real-valued data",
            spec(&reals.id, "type = \"potts\"\nq = 3", ""),
            "integer states",
        ),
        ("lattice size mismatch", ising("size = 6", ""), "model.size"),
        (
            "lattice on an alignment",
            spec(&alignment.id, "type = \"lattice_ising\"", ""),
            "lattice_ising",
        ),
        (
            "lattice on non-spin values",
            spec(&reals.id, "type = \"lattice_ising\"\nsize = 4", ""),
            "spins",
        ),
        (
            "bernoulli rbm on values outside [0, 1]",
            spec(&reals.id, "type = \"bernoulli_rbm\"\nhidden = 2", ""),
            "[0, 1]",
        ),
        (
            "negative learning rate",
            potts("", "learning_rate = -0.01"),
            "train.learning_rate",
        ),
        (
            "zero learning rate",
            ising("", "learning_rate = 0.0"),
            "train.learning_rate",
        ),
        (
            "unknown optimizer",
            rbm("", "optimizer = \"rmsprop\""),
            "train.optimizer",
        ),
        (
            "unknown method",
            potts("", "method = \"wolff\""),
            "train.method",
        ),
        (
            "unknown sampler",
            ising("", "sampler = \"wolff\""),
            "train.sampler",
        ),
        (
            "sampler on an rbm",
            rbm("", "sampler = \"gibbs\""),
            "train.sampler",
        ),
        (
            "unknown schedule",
            rbm("", "lr_schedule = \"cosine\""),
            "train.lr_schedule",
        ),
        (
            "lr_final without a schedule",
            potts("", "lr_final = 0.001"),
            "train.lr_final",
        ),
        (
            "momentum with adam",
            ising("", "optimizer = \"adam\"\nmomentum = 0.5"),
            "train.momentum",
        ),
        (
            "adam options with sgd",
            potts("", "adam_beta1 = 0.9"),
            "train.adam_beta1",
        ),
        ("negative l2", potts("", "l2 = -1.0"), "train.l2"),
        (
            "batch_size on potts",
            potts("", "batch_size = 10"),
            "train.batch_size",
        ),
        (
            "batch_size on lattice",
            ising("", "batch_size = 5"),
            "train.batch_size",
        ),
        (
            "batch_size above the rows",
            rbm("", "batch_size = 51"),
            "train.batch_size",
        ),
        (
            "centering on potts",
            potts("", "centering = true"),
            "train.centering",
        ),
        (
            "centering on lattice",
            ising("", "centering = true"),
            "train.centering",
        ),
        (
            "visible_bias_init on potts",
            potts("", "visible_bias_init = \"zero\""),
            "train.visible_bias_init",
        ),
        (
            "shuffle on lattice",
            ising("", "shuffle = false"),
            "train.shuffle",
        ),
        (
            "an unknown visible_bias_init",
            rbm("", "visible_bias_init = \"ones\""),
            "train.visible_bias_init",
        ),
        (
            "centering on a gaussian rbm",
            spec(
                &reals.id,
                "type = \"gaussian_rbm\"\nhidden = 2",
                "centering = true",
            ),
            "train.centering",
        ),
        (
            "chains with cd on an rbm",
            rbm("", "method = \"cd\"\nchains = 10"),
            "train.chains",
        ),
        ("hidden on potts", potts("hidden = 3", ""), "model.hidden"),
        ("hidden on lattice", ising("hidden = 3", ""), "model.hidden"),
        (
            "learn_sigma on potts",
            potts("learn_sigma = true", ""),
            "model.learn_sigma",
        ),
        (
            "standardize on lattice",
            ising("standardize = false", ""),
            "model.standardize",
        ),
        (
            "pseudocount on lattice",
            ising("pseudocount = 0.1", ""),
            "model.pseudocount",
        ),
        (
            "reweighting on an rbm",
            rbm("reweight_identity = 0.8", ""),
            "reweight_identity",
        ),
        (
            "pseudocount of 1",
            potts("pseudocount = 1.0", ""),
            "model.pseudocount",
        ),
        (
            "reweight_identity above 1",
            potts("reweight_identity = 1.5", ""),
            "model.reweight_identity",
        ),
        (
            "unknown residue rule",
            potts("unknown_residues = \"keep\"", ""),
            "model.unknown_residues",
        ),
        (
            "validation on lattice",
            ising("", "validation_fraction = 0.2"),
            "train.validation_fraction",
        ),
        (
            "validation holding out everything",
            potts("", "validation_fraction = 0.95"),
            "train.validation_fraction",
        ),
        (
            "hidden missing",
            spec(&digits.id, "type = \"bernoulli_rbm\"", ""),
            "model.hidden",
        ),
        (
            "visible disagreeing with the data",
            rbm("visible = 10", ""),
            "model.visible",
        ),
        (
            "init_model of another type",
            ising(&format!("init_model = \"{trained_rbm}\""), ""),
            "model.init_model",
        ),
        (
            "init_model of another shape",
            spec(
                &digits.id,
                &format!("type = \"bernoulli_rbm\"\nhidden = 7\ninit_model = \"{trained_rbm}\""),
                "",
            ),
            "model.init_model",
        ),
        (
            "unknown model type",
            potts("", "").clone_with_type("boltzmann"),
            "model.type",
        ),
        // Every family trains on the GPU backends, but their Potts kernels hold at most 32
        // states per site (a build without the backend refuses it too, also naming cpu).
        (
            "potts with q > 32 on wgpu",
            on_backend(spec(&wide.id, "type = \"potts\"\nq = 40", ""), "wgpu"),
            "cpu",
        ),
        (
            "potts with q > 32 on cuda",
            on_backend(spec(&wide.id, "type = \"potts\"\nq = 40", ""), "cuda"),
            "cpu",
        ),
    ];
    for (what, spec, needle) in cases {
        assert_refused(client, what, spec, needle).await;
    }

    // A ragged alignment is refused at upload, naming the record.
    let ragged = ">first\nACDE-\n>second\nACD\n";
    let status = status_of(
        client
            .upload_dataset_bytes("ragged", DatasetFormat::Fasta, ragged.as_bytes().to_vec())
            .await,
    );
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().contains("ragged") && status.message().contains("second"),
        "{status:?}"
    );
    // An unknown init_model is not found; nothing above was queued.
    let status = status_of(
        client
            .submit(ising("init_model = \"mdl_nope\"", ""), None)
            .await,
    );
    assert_eq!(status.code(), tonic::Code::NotFound, "{status:?}");
    assert!(status.message().contains("mdl_nope"), "{status:?}");
    assert_eq!(client.list_jobs(None).await.expect("list").len(), 1);
    server.stop().await;
}

fn on_backend(mut spec: JobSpec, backend: &str) -> JobSpec {
    spec.backend = backend.into();
    spec
}

trait WithType {
    fn clone_with_type(&self, model_type: &str) -> JobSpec;
}

impl WithType for JobSpec {
    fn clone_with_type(&self, model_type: &str) -> JobSpec {
        let mut spec = self.clone();
        if let Some(m) = spec.model_config.as_mut() {
            m.r#type = model_type.into();
        }
        spec
    }
}
