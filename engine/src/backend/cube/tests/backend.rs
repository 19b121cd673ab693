//! `CubeBackend` as the engine sees it: every trait op against the CPU backend, and RBM
//! training through `Trainer` with `BackendKind::Wgpu` against `BackendKind::Cpu`.

use crate::backend::cube::bench::check_against_cpu;
use crate::backend::cube::WgpuBackend;
use crate::backend::BackendKind;
use crate::spec::{ModelSpec, TrainSpec};
use crate::train::Trainer;

/// Every op of the `Backend` trait (both unit types, centering, log-sigma, both
/// optimizers), the generator and the lattice sweep against the CPU backend, with the
/// tolerances listed in `bench::check_against_cpu`.
#[test]
fn cube_backend_matches_cpu_backend() {
    let backend = WgpuBackend::new().unwrap();
    let report = check_against_cpu(&backend).unwrap();
    for line in &report.lines {
        eprintln!("{line}");
    }
    assert!(report.passed, "{:#?}", report.lines);
}

fn digits(rows: usize) -> crate::data::Dataset {
    let bytes = include_bytes!("../../../../../data/digits/digits_binarized.npy");
    let all = crate::data::parse_dataset(crate::data::DataFormat::Npy, bytes, &Default::default())
        .unwrap();
    all.select_rows(&(0..rows).collect::<Vec<_>>())
}

fn final_log_likelihood(backend: BackendKind, seed: u64) -> f64 {
    let model = ModelSpec {
        model_type: "bernoulli_rbm".into(),
        hidden: Some(10),
        ..Default::default()
    };
    let train = TrainSpec {
        method: "pcd".into(),
        epochs: Some(4),
        batch_size: Some(20),
        learning_rate: Some(0.1),
        ..Default::default()
    };
    let mut t = Trainer::new(&model, &train, seed, digits(400), backend).unwrap();
    let mut last = f64::NAN;
    while !t.is_finished() {
        let report = t.run_epoch(&|| false, &mut |_| {}).unwrap().unwrap();
        last = report.metrics["log_likelihood"];
    }
    last
}

/// PCD training on 400 binarized digits (10 hidden units, exact log-likelihood) with
/// backend = wgpu reaches the CPU's log-likelihood within the run-to-run spread: the
/// tolerance is 3 x |LL(seed 1) - LL(seed 2)| on the CPU (+0.05 nats), the statistical
/// error of one training run. With the same seed both backends draw the same random
/// numbers, so in practice they agree far closer than that.
#[test]
fn wgpu_training_agrees_with_cpu() {
    let cpu1 = final_log_likelihood(BackendKind::Cpu, 1);
    let cpu2 = final_log_likelihood(BackendKind::Cpu, 2);
    let gpu1 = final_log_likelihood(BackendKind::Wgpu, 1);
    let tolerance = 3.0 * (cpu1 - cpu2).abs() + 0.05;
    eprintln!("log-likelihood: cpu {cpu1:.4} (seed 2: {cpu2:.4}), wgpu {gpu1:.4}, tolerance {tolerance:.4}");
    assert!(
        gpu1.is_finite() && (gpu1 - cpu1).abs() <= tolerance,
        "wgpu {gpu1} vs cpu {cpu1}"
    );
}
