//! `score` and `scan` jobs through the real server and CLI: per-row energies and
//! log-likelihoods against brute force computed here in f64, and single-mutant scans.
use super::dca::{parse, png_size, run_job};
use ebm_client::npy::{self, Matrix};
use ebm_client::v1::Job;
use ebm_client::{Client, DatasetFormat};
use ebm_e2e::process::{cli_json, ebm_cli};
use ebm_e2e::{assert_refused, events_to_end, upload, StoreKind, TestServer};
use ebm_engine::backend::VisibleUnits;
use ebm_engine::potts::PottsModel;
use ebm_engine::rbm::RbmModel;
use std::collections::BTreeMap;
use std::time::Duration;

/// A deterministic pseudo-random number in [-1, 1) (a hash of k).
fn noise(k: usize) -> f64 {
    let mut x = (k as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x5555;
    x ^= x >> 29;
    x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x ^= x >> 32;
    (x % 2_000_000) as f64 / 1_000_000.0 - 1.0
}

struct Potts {
    l: usize,
    q: usize,
    h: Vec<f64>,
    j: Vec<f64>,
}

impl Potts {
    fn random(l: usize, q: usize) -> Potts {
        let lq = l * q;
        let mut j = vec![0.0; lq * lq];
        for x in 0..lq {
            for y in 0..x {
                if x / q != y / q {
                    // values exact in f32, so the file holds exactly these numbers
                    let v = (noise(x * lq + y) * 0.8 * 1024.0).round() / 1024.0;
                    j[x * lq + y] = v;
                    j[y * lq + x] = v;
                }
            }
        }
        let h = (0..lq)
            .map(|k| (noise(7_000 + k) * 1024.0).round() / 1024.0)
            .collect();
        Potts { l, q, h, j }
    }

    fn file(&self) -> Vec<u8> {
        let to32 = |v: &[f64]| v.iter().map(|&x| x as f32).collect::<Vec<_>>();
        let model = PottsModel::from_parts(self.l, self.q, to32(&self.h), to32(&self.j)).unwrap();
        ebm_engine::potts::file::to_bytes(&model, &BTreeMap::new()).unwrap()
    }

    /// E(s) = -sum_i h_i(s_i) - sum_{i<j} J_ij(s_i, s_j).
    fn energy(&self, s: &[usize]) -> f64 {
        let (q, lq) = (self.q, self.l * self.q);
        let mut e = 0.0;
        for i in 0..self.l {
            e -= self.h[i * q + s[i]];
            for j in i + 1..self.l {
                e -= self.j[(i * q + s[i]) * lq + j * q + s[j]];
            }
        }
        e
    }

    fn log_z(&self) -> f64 {
        let n = (self.q as u64).pow(self.l as u32) as usize;
        let neg: Vec<f64> = (0..n)
            .map(|k| -self.energy(&decode(k, self.l, self.q)))
            .collect();
        log_sum_exp(&neg)
    }
}

fn decode(mut k: usize, l: usize, q: usize) -> Vec<usize> {
    (0..l)
        .map(|_| {
            let s = k % q;
            k /= q;
            s
        })
        .collect()
}

fn log_sum_exp(v: &[f64]) -> f64 {
    let m = v.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    m + v.iter().map(|x| (x - m).exp()).sum::<f64>().ln()
}

/// The rows of a scores.csv: (score, log_likelihood).
async fn scores(client: &Client, job: &Job) -> (Vec<String>, Vec<Vec<f64>>) {
    let bytes = client
        .download_artifact(&job.id, "scores.csv")
        .await
        .expect("download scores.csv");
    let text = String::from_utf8(bytes).unwrap();
    let mut lines = text.lines();
    let header: Vec<String> = lines.next().unwrap().split(',').map(String::from).collect();
    let rows = lines
        .map(|l| l.split(',').map(|x| x.parse::<f64>().unwrap()).collect())
        .collect();
    (header, rows)
}

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol * (1.0 + b.abs())
}

/// A FASTA alignment with an unknown residue (X) scores it as the gap state, as training
/// reads it by default, and the job's log says so: row 0 (`CX-`) scores as row 1 (`C--`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fasta_unknown_residues_score_as_gaps() {
    let server = TestServer::start(StoreKind::Sqlite).await;
    let client = &server.client;
    let truth = Potts::random(3, 21);
    let model = client
        .import_model("potts", "q21", truth.file())
        .await
        .unwrap();
    let alignment = client
        .upload_dataset_bytes("x", DatasetFormat::Fasta, b">a\nCX-\n>b\nC--\n".to_vec())
        .await
        .unwrap();
    let spec = parse(&format!(
        "kind = \"score\"\nmodel = \"{}\"\ndataset = \"{}\"\n[score]\nlog_likelihood = false\n",
        model.id, alignment.id
    ));
    let job = run_job(client, "score fasta", spec).await;
    let (_, table) = scores(client, &job).await;
    let gapped = truth.energy(&[2, 0, 0]); // C is state 2 of "-ACDE..."
    assert!(close(table[0][1], gapped, 1e-9), "{table:?} vs {gapped}");
    assert!(close(table[1][1], gapped, 1e-9), "{table:?} vs {gapped}");
    let events = events_to_end(client, &job.id, Duration::from_secs(60)).await;
    let logged = events
        .iter()
        .any(|e| e.message.contains("1 unknown residues"));
    assert!(logged, "{events:?}");
}

/// Potts: per-row energies equal brute force; log-likelihoods use the exact ln Z
/// (enumerable: 3^6 states), or the one given, or an estimate job's; scan entries equal
/// E(mutant) - E(reference) computed here; the CLI draws the scan as a heat map.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn potts_scores_and_scans_match_brute_force() {
    let server = TestServer::start(StoreKind::Sqlite).await;
    let client = &server.client;
    let truth = Potts::random(6, 3);
    let model = client
        .import_model("potts", "random", truth.file())
        .await
        .unwrap();
    let rows: Vec<Vec<usize>> = (0..40)
        .map(|r| {
            (0..6)
                .map(|i| (noise(100 + r * 6 + i).abs() * 3.0) as usize % 3)
                .collect()
        })
        .collect();
    let data = Matrix {
        rows: 40,
        cols: 6,
        values: rows.iter().flatten().map(|&s| s as f32).collect(),
    };
    let dataset = upload(client, "rows", &data).await;
    let score_spec = |extra: &str| {
        parse(&format!(
            "kind = \"score\"\nmodel = \"{}\"\ndataset = \"{}\"\n{extra}",
            model.id, dataset.id
        ))
    };
    let job = run_job(client, "score exact", score_spec("")).await;
    let result = job.result.clone().unwrap();
    let log_z = truth.log_z();
    assert_eq!(result.log_z_source, "exact");
    assert_eq!(result.score_column, "energy");
    assert!(
        close(result.log_z.unwrap(), log_z, 1e-9),
        "{result:?} vs {log_z}"
    );
    assert_eq!(result.rows, 40);
    let (header, table) = scores(client, &job).await;
    assert_eq!(header, ["row", "energy", "log_likelihood"]);
    for (r, (row, s)) in table.iter().zip(&rows).enumerate() {
        let e = truth.energy(s);
        assert_eq!(row[0], r as f64);
        // f64 sums of the same f32-exact parameters: equal up to summation order
        assert!(close(row[1], e, 1e-9), "row {r}: {} vs {e}", row[1]);
        assert!(
            close(row[2], -e - log_z, 1e-9),
            "row {r}: {} vs {}",
            row[2],
            -e - log_z
        );
    }
    let mean = table.iter().map(|r| r[1]).sum::<f64>() / 40.0;
    assert!(close(result.mean.unwrap(), mean, 1e-9));

    // a given ln Z, and no log-likelihoods at all
    let given = run_job(
        client,
        "score given",
        score_spec("[score]\nlog_z = 2.5\nlog_z_stderr = 0.1\n"),
    )
    .await;
    assert_eq!(given.result.as_ref().unwrap().log_z_source, "given");
    let (_, table) = scores(client, &given).await;
    assert!(table.iter().all(|r| close(r[2], -r[1] - 2.5, 1e-12)));
    let none = run_job(
        client,
        "score only",
        score_spec("[score]\nlog_likelihood = false\n"),
    )
    .await;
    let (header, _) = scores(client, &none).await;
    assert_eq!(header, ["row", "energy"]);
    assert!(none.result.unwrap().log_z.is_none());

    // ln Z from an estimate_log_z job of this model
    let estimate = run_job(
        client,
        "estimate",
        parse(&format!(
            "kind = \"estimate_log_z\"\nmodel = \"{}\"\n[estimate]\nmethod = \"exact\"\n",
            model.id
        )),
    )
    .await;
    let from_job = run_job(
        client,
        "score from job",
        score_spec(&format!("[score]\nlog_z_job = \"{}\"\n", estimate.id)),
    )
    .await;
    let r = from_job.result.unwrap();
    assert_eq!(r.log_z_source, format!("job:{}", estimate.id));
    assert!(close(r.log_z.unwrap(), log_z, 1e-9));

    // refusals
    assert_refused(
        client,
        "log_z_job of a score job",
        score_spec(&format!("[score]\nlog_z_job = \"{}\"\n", job.id)),
        "estimate_log_z",
    )
    .await;
    assert_refused(
        client,
        "both",
        score_spec(&format!(
            "[score]\nlog_z = 1.0\nlog_z_job = \"{}\"\n",
            estimate.id
        )),
        "not both",
    )
    .await;
    assert_refused(
        client,
        "no data set",
        parse(&format!("kind = \"score\"\nmodel = \"{}\"\n", model.id)),
        "spec.dataset",
    )
    .await;
    // a row that is not a state of the model (q = 3): refused at submission, naming it
    let mut outside = data.clone();
    outside.values[2 * 6 + 4] = 3.0;
    let outside = upload(client, "outside", &outside).await;
    assert_refused(
        client,
        "a value outside the states",
        parse(&format!(
            "kind = \"score\"\nmodel = \"{}\"\ndataset = \"{}\"\n",
            model.id, outside.id
        )),
        "row 2 column 4 is 3, but each unit of this potts model must be a state 0..2 (q = 3)",
    )
    .await;

    // scan of a reference state
    let reference = &rows[3];
    let scan_spec = |reference: &[usize]| {
        parse(&format!(
            "kind = \"scan\"\nmodel = \"{}\"\n[scan]\nreference = {:?}\n",
            model.id, reference
        ))
    };
    let scan = run_job(client, "scan", scan_spec(reference)).await;
    let r = scan.result.clone().unwrap();
    assert_eq!((r.rows, r.cols, r.artifact.as_str()), (6, 3, "scan.npy"));
    assert!(close(
        r.reference_energy.unwrap(),
        truth.energy(reference),
        1e-9
    ));
    let matrix = npy::read(
        &client
            .download_artifact(&scan.id, "scan.npy")
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!((matrix.rows, matrix.cols), (6, 3));
    for i in 0..6 {
        for a in 0..3 {
            let mut mutant = reference.clone();
            mutant[i] = a;
            let want = truth.energy(&mutant) - truth.energy(reference);
            let got = matrix.values[i * 3 + a] as f64;
            // float32 in the .npy: relative rounding 2^-24
            assert!(
                (got - want).abs() <= 1e-6 * (1.0 + want.abs()),
                "({i},{a}): {got} vs {want}"
            );
        }
    }
    assert_refused(
        client,
        "short reference",
        scan_spec(&reference[..5]),
        "scan.reference",
    )
    .await;
    assert_refused(
        client,
        "bad state",
        scan_spec(&[0, 1, 2, 3, 0, 1]),
        "scan.reference",
    )
    .await;

    // the heat map: sites across, states down
    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("scan.png");
    let output = ebm_cli(
        &server.url(),
        &["jobs", "get", &scan.id, "--png", png.to_str().unwrap()],
    )
    .await;
    let (ok, doc) = cli_json(&output);
    assert!(ok, "{doc}");
    let picture = &doc["png"];
    assert_eq!(picture["kind"], "heat_map");
    assert_eq!(
        (picture["rows"].as_u64(), picture["cols"].as_u64()),
        (Some(3), Some(6))
    );
    let cell = picture["cell"].as_u64().unwrap() as u32;
    assert_eq!(
        png_size(&std::fs::read(&png).unwrap()),
        (6 * cell, 3 * cell)
    );
    server.stop().await;
}

/// Bernoulli RBM: per-row log-likelihoods equal exact enumeration done here over every
/// (v, h) (2^8 x 2^5 states), and free energies -ln sum_h e^{-E(v,h)}; a scan flips each
/// visible unit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rbm_log_likelihoods_match_exact_enumeration() {
    let server = TestServer::start(StoreKind::Sqlite).await;
    let client = &server.client;
    let (nv, nh) = (8, 5);
    let q = |x: f64| ((x * 1024.0).round() / 1024.0) as f32;
    let rbm = RbmModel {
        units: VisibleUnits::Bernoulli,
        visible: nv,
        hidden: nh,
        w: (0..nv * nh).map(|k| q(noise(k) * 1.5)).collect(),
        b: (0..nv).map(|k| q(noise(500 + k) * 0.5)).collect(),
        c: (0..nh).map(|k| q(noise(900 + k) * 0.5)).collect(),
        sigma: None,
        transform: None,
    };
    let file = ebm_engine::model_file::rbm_to_bytes(&rbm, &BTreeMap::new()).unwrap();
    let model = client
        .import_model("bernoulli_rbm", "rbm", file)
        .await
        .unwrap();
    let (w, b, c): (Vec<f64>, Vec<f64>, Vec<f64>) = (
        rbm.w.iter().map(|&x| x as f64).collect(),
        rbm.b.iter().map(|&x| x as f64).collect(),
        rbm.c.iter().map(|&x| x as f64).collect(),
    );
    // E(v, h) = -v.b - h.c - v^T W h
    let energy = |v: &[f64], h: &[f64]| {
        let mut e = 0.0;
        for i in 0..nv {
            e -= v[i] * b[i];
            for j in 0..nh {
                e -= v[i] * w[i * nh + j] * h[j];
            }
        }
        for j in 0..nh {
            e -= h[j] * c[j];
        }
        e
    };
    let bits = |k: usize, n: usize| (0..n).map(|i| ((k >> i) & 1) as f64).collect::<Vec<_>>();
    let free = |v: &[f64]| {
        let neg: Vec<f64> = (0..1 << nh).map(|k| -energy(v, &bits(k, nh))).collect();
        -log_sum_exp(&neg)
    };
    let log_z = log_sum_exp(
        &(0..1 << nv)
            .map(|k| -free(&bits(k, nv)))
            .collect::<Vec<_>>(),
    );
    let rows: Vec<Vec<f64>> = (0..30).map(|r| bits((r * 37 + 11) % 256, nv)).collect();
    let data = Matrix {
        rows: 30,
        cols: nv,
        values: rows.iter().flatten().map(|&x| x as f32).collect(),
    };
    let dataset = upload(client, "rows", &data).await;
    let job = run_job(
        client,
        "score rbm",
        parse(&format!(
            "kind = \"score\"\nmodel = \"{}\"\ndataset = \"{}\"\n",
            model.id, dataset.id
        )),
    )
    .await;
    let result = job.result.clone().unwrap();
    assert_eq!(
        (result.score_column.as_str(), result.log_z_source.as_str()),
        ("free_energy", "exact")
    );
    assert!(close(result.log_z.unwrap(), log_z, 1e-9));
    let (header, table) = scores(client, &job).await;
    assert_eq!(header, ["row", "free_energy", "log_likelihood"]);
    for (r, (row, v)) in table.iter().zip(&rows).enumerate() {
        let f = free(v);
        assert!(close(row[1], f, 1e-9), "row {r}: F {} vs {f}", row[1]);
        assert!(
            close(row[2], -f - log_z, 1e-9),
            "row {r}: ln p {} vs {}",
            row[2],
            -f - log_z
        );
    }
    // the log-likelihoods of all 256 states sum to probability 1 (checked on the rows: each <= 0)
    assert!(table.iter().all(|r| r[2] < 0.0));

    let reference = &rows[0];
    let scan = run_job(
        client,
        "scan rbm",
        parse(&format!(
            "kind = \"scan\"\nmodel = \"{}\"\n[scan]\nreference = {:?}\n",
            model.id, reference
        )),
    )
    .await;
    let matrix = npy::read(
        &client
            .download_artifact(&scan.id, "scan.npy")
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!((matrix.rows, matrix.cols), (nv, 2));
    for i in 0..nv {
        let mut mutant = reference.clone();
        mutant[i] = 1.0 - mutant[i];
        let want = free(&mutant) - free(reference);
        let flipped = mutant[i] as usize;
        let got = matrix.values[i * 2 + flipped] as f64;
        assert!(
            (got - want).abs() <= 1e-5 * (1.0 + want.abs()),
            "unit {i}: {got} vs {want}"
        );
        assert_eq!(matrix.values[i * 2 + 1 - flipped], 0.0);
    }
    server.stop().await;
}

/// Lattice Ising: energies -J sum_<ij> s_i s_j - h sum_i s_i by brute force (4 x 4, with a
/// field, so ln Z comes from enumeration of 2^16 states), and a scan of single spin flips.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lattice_scores_and_flips_match_brute_force() {
    let server = TestServer::start(StoreKind::Sqlite).await;
    let client = &server.client;
    let (n, coupling, field) = (4usize, 0.375f64, 0.125f64);
    let lattice = ebm_engine::lattice::LatticeIsing::new(n, coupling as f32, field as f32).unwrap();
    let file = ebm_engine::lattice::file::to_bytes(&lattice, &BTreeMap::new()).unwrap();
    let model = client
        .import_model("lattice_ising", "ising", file)
        .await
        .unwrap();
    let energy = |s: &[f64]| {
        let mut e = 0.0;
        for r in 0..n {
            for c in 0..n {
                let x = s[r * n + c];
                e -= coupling * x * (s[r * n + (c + 1) % n] + s[((r + 1) % n) * n + c]);
                e -= field * x;
            }
        }
        e
    };
    let spins = |k: usize| {
        (0..n * n)
            .map(|i| if (k >> i) & 1 == 1 { 1.0 } else { -1.0 })
            .collect::<Vec<f64>>()
    };
    let log_z = log_sum_exp(
        &(0..1usize << 16)
            .map(|k| -energy(&spins(k)))
            .collect::<Vec<_>>(),
    );
    let rows: Vec<Vec<f64>> = (0..20).map(|r| spins((r * 7919 + 3) % 65536)).collect();
    // uploaded as 0/1 (0 = spin -1)
    let data = Matrix {
        rows: 20,
        cols: 16,
        values: rows
            .iter()
            .flatten()
            .map(|&x| ((x + 1.0) / 2.0) as f32)
            .collect(),
    };
    let dataset = upload(client, "spins", &data).await;
    let job = run_job(
        client,
        "score lattice",
        parse(&format!(
            "kind = \"score\"\nmodel = \"{}\"\ndataset = \"{}\"\n",
            model.id, dataset.id
        )),
    )
    .await;
    let result = job.result.clone().unwrap();
    assert!(
        close(result.log_z.unwrap(), log_z, 1e-9),
        "{result:?} vs {log_z}"
    );
    let (_, table) = scores(client, &job).await;
    for (row, s) in table.iter().zip(&rows) {
        assert!(close(row[1], energy(s), 1e-12));
        assert!(close(row[2], -energy(s) - log_z, 1e-9));
    }
    let reference = &rows[1];
    let scan = run_job(
        client,
        "scan lattice",
        parse(&format!(
            "kind = \"scan\"\nmodel = \"{}\"\n[scan]\nreference = {:?}\n",
            model.id, reference
        )),
    )
    .await;
    let matrix = npy::read(
        &client
            .download_artifact(&scan.id, "scan.npy")
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!((matrix.rows, matrix.cols), (16, 2));
    for i in 0..16 {
        let mut flipped = reference.clone();
        flipped[i] = -flipped[i];
        let want = energy(&flipped) - energy(reference);
        let column = (flipped[i] > 0.0) as usize;
        assert!(
            ((matrix.values[i * 2 + column] as f64) - want).abs() < 1e-6,
            "site {i}"
        );
        assert_eq!(matrix.values[i * 2 + 1 - column], 0.0);
    }
    server.stop().await;
}
