//! Boltzmann-machine DCA on the bundled PF00014 alignment (Kunitz domain, 4914 x 53, q = 21):
//! time per gradient update and the Pearson correlation of connected correlations after a
//! number of updates, at adabmDCA's settings (1000 chains, 10 sweeps per update, SGD with
//! learning rate 0.01, 80% identity reweighting, pseudocount 1/M_eff).
//! Run: `cargo bench -p ebm-engine --bench potts_dca -- [updates] [chains] [sweeps] [gibbs|metropolis] [alignment] [seed] [model-out]`
//! (`model-out`: where to write the final model file, for bench/potts_equilibrium_pearson.py).
//! `bench/potts_vs_adabmdca.sh` runs this next to adabmDCA; results in docs/benchmarks.md.

use ebm_engine::data::{parse_dataset, DataFormat, ParseLimits};
use ebm_engine::potts::trainer::PottsTrainer;
use ebm_engine::spec::{ModelSpec, TrainSpec};
use ebm_engine::train::FamilyTrainer;
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let updates: u32 = args.first().and_then(|a| a.parse().ok()).unwrap_or(100);
    let chains: u32 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(1000);
    let sweeps: u32 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(10);
    let sampler = args.get(3).cloned().unwrap_or_else(|| "gibbs".into());
    let default_path =
        concat!(env!("CARGO_MANIFEST_DIR"), "/../data/msa/PF00014.fasta").to_string();
    let path = args.get(4).cloned().unwrap_or(default_path);
    let seed: u64 = args.get(5).and_then(|a| a.parse().ok()).unwrap_or(1);
    let model_out = args.get(6).cloned();
    let bytes = std::fs::read(&path).expect("the alignment file");
    let started = Instant::now();
    let data = parse_dataset(DataFormat::Fasta, &bytes, &ParseLimits::default()).unwrap();
    let model = ModelSpec {
        model_type: "potts".into(),
        ..Default::default()
    };
    let train = TrainSpec {
        chains: Some(chains),
        k: Some(sweeps),
        epochs: Some(updates),
        learning_rate: Some(0.01),
        sampler: sampler.clone(),
        ..Default::default()
    };
    let mut trainer = PottsTrainer::new(&model, &train, seed, data).unwrap();
    let setup = started.elapsed().as_secs_f64();
    println!(
        "{path}: {} threads, {chains} chains, {sweeps} {sampler} sweeps per update, lr 0.01; setup (parse + reweighting + statistics) {setup:.3} s",
        rayon::current_num_threads()
    );
    for note in trainer.notes() {
        println!("  {note}");
    }
    println!(
        "{:>7} {:>12} {:>12} {:>9} {:>10}",
        "update", "update s", "metrics s", "pearson", "pll"
    );
    let mut total_update = 0.0;
    let mut total_epoch = 0.0;
    let mut last = None;
    while trainer.epochs_done() < trainer.epochs_total() {
        let report = trainer.run_epoch(&|| false, &mut |_| {}).unwrap().unwrap();
        let m = &report.metrics;
        total_update += m["train_seconds"];
        total_epoch += m["epoch_seconds"];
        if report.epoch % 10 == 0 || report.epoch == 1 || report.epoch as u32 == updates {
            println!(
                "{:>7} {:>12.4} {:>12.4} {:>9.4} {:>10.3}",
                report.epoch,
                m["train_seconds"],
                m["metrics_seconds"],
                m["pearson"],
                m["pseudo_log_likelihood"]
            );
        }
        last = Some(report);
    }
    let m = last.unwrap().metrics;
    println!(
        "RESULT updates={updates} mean_update_s={:.4} mean_update_with_metrics_s={:.4} pearson={:.4}",
        total_update / updates as f64,
        total_epoch / updates as f64,
        m["pearson"]
    );
    if let Some(path) = model_out {
        std::fs::write(&path, trainer.model_file().unwrap()).expect("writing the model file");
    }
}
