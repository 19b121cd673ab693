//! Benchmark harness for CPU RBM training (run by bench/rbm_vs_sklearn.sh, which puts
//! scikit-learn's BernoulliRBM beside it on the same data and settings).
//!
//! Subcommands (arguments after `cargo bench -p ebm-engine --bench rbm_epoch --`):
//!   train --data D.npy --heldout H.npy --hidden N --batch B --epochs E --lr R --seed S
//!         [--init data|zero]   (`train.visible_bias_init`; scikit-learn starts at zero)
//!         [--shuffle true|false]   (`train.shuffle`; scikit-learn keeps the data's order)
//!         prints one JSON line: seconds per epoch (training only), the nominal GEMM
//!         FLOP rate of the training loop, and held-out log-likelihood (exact when the
//!         hidden layer is enumerable) and pseudo-log-likelihood.
//!   eval  --params DIR --data D.npy --heldout H.npy
//!         (DIR holds W.npy [visible, hidden], b.npy, c.npy) the same held-out metrics for
//!         parameters trained elsewhere (scikit-learn); D gives the AIS base rates.
//!   gemm  prints the machine's single-precision GEMM rate (best of several runs).
//!   products --visible V --hidden H --batch B [--density D]
//!         times the three products of a PCD update (v W, h W^T, v^T h) as dense GEMM and
//!         by table lookup (`backend::cpu::lookup`, the backend's default where a factor is
//!         binary), on random {0, 1} operands.
//!
//! The held-out log-likelihood is also estimated by forward AIS (the only value where the
//! hidden layer is too wide to enumerate; beside the exact one, a check of AIS): the
//! evaluation the service runs for `train.ais_every` (`estimate::heldout::HeldOutAis`:
//! base-rate model of the training rows, the default schedule), with the same seed and
//! settings for both sides. `--ais CHAINS,BETAS` (default 100,10000; `0` skips it) sets its
//! size.

use ebm_engine::backend::cpu::gemm::{matmul, View};
use ebm_engine::backend::{BackendKind, VisibleUnits};
use ebm_engine::data::{parse_dataset, DataFormat, Dataset, ParseLimits};
use ebm_engine::estimate::heldout::HeldOutAis;
use ebm_engine::rbm::{exact, RbmModel};
use ebm_engine::spec::{AisSettings, ModelSpec, TrainSpec};
use ebm_engine::train::Trainer;
use ndarray::Array1;
use ndarray_npy::ReadNpyExt;
use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

fn args() -> (String, HashMap<String, String>) {
    let raw: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let cmd = raw.first().cloned().unwrap_or_else(|| "gemm".into());
    let mut map = HashMap::new();
    let mut it = raw.iter().skip(1);
    while let Some(k) = it.next() {
        if let Some(name) = k.strip_prefix("--") {
            map.insert(name.to_string(), it.next().cloned().unwrap_or_default());
        }
    }
    (cmd, map)
}

fn load(path: &str) -> Dataset {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    let limits = ParseLimits {
        max_rows: 1 << 24,
        max_cols: 1 << 16,
        max_cells: 1 << 30,
    };
    parse_dataset(DataFormat::Npy, &bytes, &limits).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Held-out metrics shared by both sides: the log-likelihood, exact when the hidden layer
/// is enumerable (20 units here), and by AIS (`ais`) for every model, so that the rows
/// with an exact value show how close AIS comes; and the pseudo-log-likelihood on up to
/// 1000 rows.
fn heldout_metrics(model: &RbmModel, heldout: &Dataset, ais: Option<&HeldOutAis>) -> String {
    let exact_ll = match exact::enumeration_plan(model) {
        Some((_, cost)) if cost <= 1 << 31 => {
            let log_z = exact::log_partition(model).expect("log Z");
            format!(
                "{:.4}",
                model.average_log_likelihood(&heldout.values, log_z)
            )
        }
        _ => "null".into(),
    };
    let ais_ll = ais.map_or(String::new(), |ais| ais_heldout(model, heldout, ais));
    let rows = heldout.rows.min(1000) * heldout.cols;
    let pll = model.pseudo_log_likelihood(&heldout.values[..rows]);
    format!(
        "\"heldout_log_likelihood\": {exact_ll}, {ais_ll}\"heldout_pseudo_log_likelihood\": {pll:.4}"
    )
}

/// AIS settings from `--ais CHAINS,BETAS` (default 100 chains x 10000 steps); `0` turns
/// it off. The evaluator is built on the training rows (base rates), with no validation
/// share of its own.
fn ais_evaluator(a: &HashMap<String, String>, data: &Dataset) -> Option<HeldOutAis> {
    let spec = a.get("ais").map_or("100,10000", String::as_str);
    if spec == "0" {
        return None;
    }
    let (chains, betas) = spec
        .split_once(',')
        .and_then(|(c, b)| Some((c.parse().ok()?, b.parse().ok()?)))
        .unwrap_or_else(|| panic!("--ais wants CHAINS,BETAS or 0, got {spec:?}"));
    let settings = AisSettings {
        every: 1,
        chains,
        betas,
    };
    Some(
        HeldOutAis::new(
            settings,
            VisibleUnits::Bernoulli,
            data,
            1,
            0.0,
            BackendKind::Cpu,
        )
        .expect("AIS evaluator"),
    )
}

/// JSON fields of a forward-AIS estimate of the held-out log-likelihood: the value, its
/// standard error (that of ln Z: the data term is exact), the effective sample size of
/// the weights and the seconds it took.
fn ais_heldout(model: &RbmModel, heldout: &Dataset, ais: &HeldOutAis) -> String {
    let mut m = BTreeMap::new();
    ais.evaluate(model, 1, &|| false, &mut m).expect("AIS");
    let ll = model.average_log_likelihood(&heldout.values, m["ais_log_z"]);
    format!(
        "\"heldout_ais_log_likelihood\": {ll:.4}, \"heldout_ais_stderr\": {:.4}, \"ais_ess\": {:.1}, \"ais_seconds\": {:.1}, ",
        m["ais_log_z_stderr"], m["ais_ess"], m["ais_seconds"]
    )
}

fn gemm_rate() -> f64 {
    // A square product big enough to reach the kernel's peak on this machine.
    let n = 1024;
    let a: Vec<f32> = (0..n * n).map(|i| (i % 7) as f32 * 0.1).collect();
    let b: Vec<f32> = (0..n * n).map(|i| (i % 5) as f32 * 0.1).collect();
    let mut c = vec![0.0f32; n * n];
    let mut best = f64::INFINITY;
    for _ in 0..7 {
        let t = Instant::now();
        matmul(&mut c, View::new(&a, n, n), View::new(&b, n, n), 1.0, false);
        best = best.min(t.elapsed().as_secs_f64());
    }
    2.0 * (n * n * n) as f64 / best
}

fn main() {
    let (cmd, a) = args();
    let get = |k: &str| a.get(k).cloned().unwrap_or_else(|| panic!("missing --{k}"));
    let threads = rayon::current_num_threads();
    match cmd.as_str() {
        "gemm" => println!(
            "{{\"gemm_gflops\": {:.2}, \"threads\": {threads}}}",
            gemm_rate() / 1e9
        ),
        "train" => {
            let data = load(&get("data"));
            let heldout = load(&get("heldout"));
            let hidden: u32 = get("hidden").parse().unwrap();
            let batch: u32 = get("batch").parse().unwrap();
            let epochs: u32 = get("epochs").parse().unwrap();
            let model = ModelSpec {
                model_type: "bernoulli_rbm".into(),
                hidden: Some(hidden),
                ..Default::default()
            };
            // scikit-learn's BernoulliRBM: PCD with one Gibbs step, as many persistent
            // chains as the batch size, plain SGD (no momentum, no weight decay); its
            // visible biases start at zero (`--init zero`; ours default to `data`) and it
            // visits the rows in the data's order every epoch (`--shuffle false`).
            let train = TrainSpec {
                method: "pcd".into(),
                k: Some(1),
                chains: Some(batch),
                epochs: Some(epochs),
                batch_size: Some(batch),
                learning_rate: Some(get("lr").parse().unwrap()),
                momentum: Some(0.0),
                visible_bias_init: a.get("init").cloned().unwrap_or_default(),
                shuffle: a.get("shuffle").map(|s| s == "true"),
                ..Default::default()
            };
            let (rows, visible) = (data.rows, data.cols);
            let ais = ais_evaluator(&a, &data);
            let seed: u64 = a.get("seed").map_or(1, |s| s.parse().unwrap());
            let mut trainer = Trainer::new(&model, &train, seed, data, BackendKind::Cpu).unwrap();
            let mut train_seconds = Vec::new();
            let mut train_cpu = 0.0;
            let mut epoch_wall = 0.0;
            while !trainer.is_finished() {
                // CPU seconds of this process at progress reports (made during the
                // minibatches, then once after the metrics): the last report within the
                // training time gives the training CPU time, robust to a loaded machine.
                // Reading /proc costs ~20 us, which the trainer's wall clock would count, so
                // at most one read per 20 ms (the CPU figure may miss the last 20 ms).
                let (start, cpu0) = (Instant::now(), cpu_seconds());
                let mut reports = Vec::new();
                let mut last_read = f64::NEG_INFINITY;
                let r = trainer
                    .run_epoch(&|| false, &mut |_| {
                        let wall = start.elapsed().as_secs_f64();
                        if wall - last_read >= 0.02 {
                            reports.push((wall, cpu_seconds()));
                            last_read = wall;
                        }
                    })
                    .unwrap()
                    .unwrap();
                let t = r.metrics["train_seconds"];
                train_seconds.push(t);
                // the whole epoch as a job sees it: training plus the per-epoch metrics
                epoch_wall += start.elapsed().as_secs_f64();
                let cpu_end = reports
                    .iter()
                    .filter(|(wall, _)| *wall <= t)
                    .map(|(_, cpu)| *cpu)
                    .fold(cpu0, f64::max);
                train_cpu += cpu_end - cpu0;
            }
            let per_epoch = train_seconds.iter().sum::<f64>() / train_seconds.len() as f64;
            let cpu_per_epoch = train_cpu / train_seconds.len() as f64;
            // nominal FLOPs of one PCD-1 update with C = B chains: 5 dense products of
            // B x visible x hidden (positive hidden, chain visible, chain hidden, two
            // gradient products), 2 FLOPs per multiply-add. Where a factor is binary the CPU
            // backend does one add per 4 multiply-adds (table lookup, `backend::cpu::lookup`):
            // then this is a dense-equivalent rate, and may exceed the machine's GEMM rate.
            let batches = (rows / batch as usize) as f64;
            let flops = 10.0 * batch as f64 * visible as f64 * hidden as f64 * batches / per_epoch;
            let m = ebm_engine::model_file::rbm_from_bytes(&trainer.model_file().unwrap()).unwrap();
            println!(
                "{{\"impl\": \"ebm\", \"rows\": {rows}, \"visible\": {visible}, \"hidden\": {hidden}, \"batch\": {batch}, \
                 \"epochs\": {epochs}, \"seconds_per_epoch\": {per_epoch:.6}, \"wall_seconds_per_epoch\": {:.4}, \"cpu_seconds_per_epoch\": {cpu_per_epoch:.3}, \"train_gflops\": {:.2}, \"threads\": {threads}, {}}}",
                epoch_wall / train_seconds.len() as f64,
                flops / 1e9,
                heldout_metrics(&m, &heldout, ais.as_ref())
            );
        }
        "eval" => {
            let dir = get("params");
            let read = |name: &str| -> Vec<f32> {
                let f = std::fs::File::open(format!("{dir}/{name}.npy")).unwrap();
                Array1::<f32>::read_npy(f).unwrap().to_vec()
            };
            let w = read("W");
            let b = read("b");
            let c = read("c");
            let heldout = load(&get("heldout"));
            let model = RbmModel {
                units: VisibleUnits::Bernoulli,
                visible: b.len(),
                hidden: c.len(),
                w,
                b,
                c,
                sigma: None,
                transform: None,
            };
            assert_eq!(
                model.w.len(),
                model.visible * model.hidden,
                "W must be [visible, hidden] (flattened)"
            );
            let ais = ais_evaluator(&a, &load(&get("data")));
            println!("{{{}}}", heldout_metrics(&model, &heldout, ais.as_ref()));
        }
        "products" => {
            let num = |k: &str| get(k).parse::<usize>().unwrap();
            let (nv, nh, b) = (num("visible"), num("hidden"), num("batch"));
            let density: f32 = a.get("density").map_or(0.31, |d| d.parse().unwrap());
            products(nv, nh, b, density);
        }
        other => panic!("unknown subcommand {other}: use train, eval, gemm or products"),
    }
}

/// Best-of-20 seconds of `f`.
fn best_of(mut f: impl FnMut()) -> f64 {
    (0..20)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

fn products(nv: usize, nh: usize, b: usize, density: f32) {
    let key = ebm_engine::rng::RngKey::new(1, 2, 3);
    let bits = |n: usize, at: u32| -> Vec<f32> {
        (0..n)
            .map(|i| (key.uniform(at + i as u32) < density) as u8 as f32)
            .collect()
    };
    let v = bits(b * nv, 0);
    let h = bits(b * nh, 1 << 24);
    let hp: Vec<f32> = (0..b * nh)
        .map(|i| key.uniform((2 << 24) + i as u32))
        .collect();
    let w: Vec<f32> = (0..nv * nh)
        .map(|i| key.uniform((3 << 24) + i as u32) - 0.5)
        .collect();
    let (mut out_h, mut out_v, mut grad) =
        (vec![0f32; b * nh], vec![0f32; b * nv], vec![0f32; nv * nh]);
    let (vv, wv) = (View::new(&v, b, nv), View::new(&w, nv, nh));
    let dense = [
        best_of(|| matmul(&mut out_h, vv, wv, 1.0, false)),
        best_of(|| matmul(&mut out_v, View::new(&h, b, nh), wv.t(), 1.0, false)),
        best_of(|| {
            matmul(&mut grad, vv.t(), View::new(&hp, b, nh), 1.0, false);
            matmul(&mut grad, vv.t(), View::new(&hp, b, nh), -1.0, true);
        }),
    ];
    // the lookup form (`backend::cpu::lookup`, what the CPU backend uses for binary factors)
    use ebm_engine::backend::cpu::lookup::{multiply, Codes, Factor, Target};
    let (mut vc, mut hc, mut cc) = (Codes::default(), Codes::default(), Codes::default());
    let w_rows = [(&w[..], 1.0f32)];
    let h_rows = [(&hp[..], 1.0f32), (&hp[..], -1.0f32)];
    let lookup = [
        best_of(|| {
            vc.of_rows(&v, b, nv);
            let factor = Factor::Rows {
                parts: &w_rows,
                n: nh,
            };
            multiply(
                &mut [Target {
                    codes: &vc,
                    dst: &mut out_h,
                }],
                &factor,
                false,
            )
        }),
        best_of(|| {
            hc.of_rows(&h, b, nh);
            let factor = Factor::Transposed {
                w: &w,
                k: nh,
                n: nv,
            };
            multiply(
                &mut [Target {
                    codes: &hc,
                    dst: &mut out_v,
                }],
                &factor,
                false,
            )
        }),
        best_of(|| {
            cc.of_columns(&[&v, &v], nv);
            let factor = Factor::Rows {
                parts: &h_rows,
                n: nh,
            };
            multiply(
                &mut [Target {
                    codes: &cc,
                    dst: &mut grad,
                }],
                &factor,
                true,
            )
        }),
    ];
    for (k, name) in ["v W", "h W^T", "v^T h (x2)"].iter().enumerate() {
        println!(
            "{{\"product\": \"{name}\", \"visible\": {nv}, \"hidden\": {nh}, \"batch\": {b}, \"density\": {density}, \"dense_us\": {:.1}, \"lookup_us\": {:.1}, \"lookup_speedup\": {:.2}}}",
            dense[k] * 1e6,
            lookup[k] * 1e6,
            dense[k] / lookup[k]
        );
    }
}

/// User + system CPU seconds of this process (from /proc; 0 where unavailable).
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks: f64 = fields.get(11..13).map_or(0.0, |f| {
        f.iter().filter_map(|v| v.parse::<f64>().ok()).sum()
    });
    ticks / 100.0
}
