//! AIS benchmark (issue 4, Speed), run by bench/ais_bench.sh: trains (or loads) a Bernoulli
//! RBM, then measures forward AIS on the cpu backend: chain-transitions per second (one
//! transition = one block-Gibbs step h|v, v|h of one chain plus its log-weight update), and
//! the standard error of ln Z at several schedule lengths, from which it derives the chains
//! x betas, and the wall time, that reach a target standard error (default 0.05 nats); the
//! cheapest of these is then run to check it.
//!
//! Usage: ais_bench --data TRAIN.npy [--model M.safetensors] [--hidden 500] [--epochs 1]
//!        [--batch 100] [--lr 0.05] [--seed 1] [--chains 100] [--betas 1000,3000,10000]
//!        [--target 0.05] [--verify-max-seconds 900]
//! With --model: loads it if the file exists, else trains and saves it there.
//! Prints one JSON object per line: "train", one "run" per schedule, "plan", "verify".

use ebm_engine::backend::BackendKind;
use ebm_engine::data::{parse_dataset, DataFormat, Dataset, ParseLimits};
use ebm_engine::estimate::ais::{forward_ais, Hooks};
use ebm_engine::estimate::model::{load_model, LoadedModel};
use ebm_engine::estimate::schedule::default_schedule;
use ebm_engine::rng::RngStream;
use ebm_engine::spec::{ModelSpec, TrainSpec};
use ebm_engine::train::Trainer;
use std::collections::HashMap;
use std::time::Instant;

fn args() -> HashMap<String, String> {
    let raw: Vec<String> = std::env::args().skip(1).collect();
    let mut map = HashMap::new();
    let mut it = raw.iter();
    while let Some(k) = it.next() {
        if let Some(name) = k.strip_prefix("--") {
            map.insert(name.to_string(), it.next().cloned().unwrap_or_default());
        }
    }
    map
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

struct Run {
    log_z: f64,
    stderr: f64,
    ess: f64,
    seconds: f64,
}

fn ais(model: &LoadedModel, data: &Dataset, chains: usize, betas: usize, seed: u64) -> Run {
    let mut path = model.chains(chains, Some(data)).expect("chains");
    let mut rng = RngStream::new(seed, 0xB0A1);
    let mut progress = |_: f64| {};
    let mut hooks = Hooks {
        should_stop: &|| false,
        progress: &mut progress,
    };
    let schedule = default_schedule(betas);
    let started = Instant::now();
    let est = forward_ais(path.as_mut(), &schedule, &mut rng, &mut hooks).expect("AIS");
    Run {
        log_z: est.log_z,
        stderr: est.log_z_stderr,
        ess: est.ess,
        seconds: started.elapsed().as_secs_f64(),
    }
}

fn main() {
    let a = args();
    let get = |k: &str, default: &str| a.get(k).cloned().unwrap_or_else(|| default.to_string());
    let data = load(&a.get("data").cloned().expect("--data TRAIN.npy"));
    let hidden: u32 = get("hidden", "500").parse().unwrap();
    let seed: u64 = get("seed", "1").parse().unwrap();
    let chains: usize = get("chains", "100").parse().unwrap();
    let target: f64 = get("target", "0.05").parse().unwrap();
    let verify_max: f64 = get("verify-max-seconds", "900").parse().unwrap();
    let betas_list: Vec<usize> = get("betas", "1000,3000,10000")
        .split(',')
        .map(|s| s.trim().parse().unwrap())
        .collect();
    let threads = rayon::current_num_threads();

    let model_path = a.get("model").cloned();
    let bytes = match model_path.as_ref().and_then(|p| std::fs::read(p).ok()) {
        Some(bytes) => {
            println!(
                "{{\"train\": \"loaded\", \"model\": {:?}}}",
                model_path.unwrap()
            );
            bytes
        }
        None => {
            let batch: u32 = get("batch", "100").parse().unwrap();
            let epochs: u32 = get("epochs", "1").parse().unwrap();
            let spec = ModelSpec {
                model_type: "bernoulli_rbm".into(),
                hidden: Some(hidden),
                ..Default::default()
            };
            let train = TrainSpec {
                method: "pcd".into(),
                k: Some(1),
                chains: Some(batch),
                epochs: Some(epochs),
                batch_size: Some(batch),
                learning_rate: Some(get("lr", "0.05").parse().unwrap()),
                ..Default::default()
            };
            let started = Instant::now();
            let mut trainer =
                Trainer::new(&spec, &train, seed, data.clone(), BackendKind::Cpu).unwrap();
            let mut pll = f64::NAN;
            while !trainer.is_finished() {
                let r = trainer.run_epoch(&|| false, &mut |_| {}).unwrap().unwrap();
                pll = r.metrics["pseudo_log_likelihood"];
            }
            let bytes = trainer.model_file().unwrap();
            if let Some(p) = &model_path {
                std::fs::write(p, &bytes).unwrap();
            }
            println!(
                "{{\"train\": \"trained\", \"rows\": {}, \"visible\": {}, \"hidden\": {hidden}, \
                 \"epochs\": {epochs}, \"batch\": {batch}, \"seconds\": {:.1}, \"pseudo_log_likelihood\": {pll:.3}}}",
                data.rows,
                data.cols,
                started.elapsed().as_secs_f64()
            );
            bytes
        }
    };
    let model = load_model(&bytes).expect("a model file");

    // One run per schedule length with `chains` chains: rate and standard error.
    let mut plans = Vec::new();
    for &betas in &betas_list {
        let r = ais(&model, &data, chains, betas, seed + betas as u64);
        let rate = (chains * betas) as f64 / r.seconds;
        // the delta-method error falls as 1 / sqrt(chains) at a fixed schedule
        let needed = ((chains as f64) * (r.stderr / target).powi(2))
            .ceil()
            .max(16.0) as usize;
        let predicted = (needed * betas) as f64 / rate;
        println!(
            "{{\"run\": {{\"chains\": {chains}, \"betas\": {betas}, \"log_z\": {:.4}, \"stderr\": {:.4}, \
             \"ess\": {:.1}, \"seconds\": {:.2}, \"transitions_per_second\": {rate:.0}, \"threads\": {threads}}}, \
             \"for_target\": {{\"target\": {target}, \"chains\": {needed}, \"betas\": {betas}, \"predicted_seconds\": {predicted:.1}}}}}",
            r.log_z, r.stderr, r.ess, r.seconds
        );
        plans.push((needed * betas, needed, betas, predicted, rate));
    }
    plans.sort_by_key(|p| p.0);
    let (_, needed, betas, predicted, rate) = plans[0];
    println!(
        "{{\"plan\": {{\"target\": {target}, \"chains\": {needed}, \"betas\": {betas}, \
         \"transitions\": {}, \"predicted_seconds\": {predicted:.1}, \"rate\": {rate:.0}}}}}",
        needed * betas
    );
    if predicted <= verify_max {
        let r = ais(&model, &data, needed, betas, seed + 7);
        println!(
            "{{\"verify\": {{\"chains\": {needed}, \"betas\": {betas}, \"log_z\": {:.4}, \"stderr\": {:.4}, \
             \"ess\": {:.1}, \"seconds\": {:.1}, \"transitions_per_second\": {:.0}, \"reached\": {}}}}}",
            r.log_z,
            r.stderr,
            r.ess,
            r.seconds,
            (needed * betas) as f64 / r.seconds,
            r.stderr <= target
        );
    } else {
        println!(
            "{{\"verify\": \"skipped: predicted {predicted:.0} s > --verify-max-seconds {verify_max}\"}}"
        );
    }
}
