//! The estimator jobs on the device (`backend::cube::chains` through the engine facades
//! with `BackendKind::Wgpu`): AIS and reverse AIS of RBMs, lattices and Potts models
//! against exact ln Z and against the CPU chains; `sample` and `observe` against exact
//! averages; and the fallback notes of what still runs on the CPU.
//!
//! Tolerances. The AIS estimate ln Z_0 + ln mean e^w has the delta-method standard error
//! se = sd(e^w) / (sqrt(n) mean(e^w)) that the result reports; with the schedules below
//! the weights are nearly equal (ESS close to n), where that error is accurate and the
//! Jensen bias of the log (-se^2 / 2, < 1e-4 here) is negligible. So the estimate must
//! be within 3 se of the exact value (a 0.3% false-alarm rate for an unbiased normal
//! estimate), plus 1e-3 nats for the f32 arithmetic of the device (softplus and sums in
//! f32: ~1e-7 relative per term over <= 10^3 steps of increments of O(1) nats in all,
//! i.e. < 1e-4, with a margin). Device and CPU estimates, independent or not, must agree
//! within 3 combined standard errors sqrt(se_1^2 + se_2^2) + 1e-3.

use super::lattice::exact_4x4;
use super::*;
use crate::backend::cube::chains::{CubeLatticeChains, CubeRbmChains};
use crate::backend::BackendKind;
use crate::estimate::ais::AnnealingPath;
use crate::estimate::chains::lattice::LatticeParams;
use crate::estimate::chains::rbm::RbmChains;
use crate::estimate::chains::ModelChains;
use crate::estimate::job_tests::{lattice_file, rbm_file};
use crate::estimate::tests::{random_potts, random_rbm};
use crate::estimate::{estimate_log_z, EstimateResult, EstimateSpec};
use crate::observe::{run_observe, ObserveSpec};
use crate::rng::RngStream;
use crate::sample::{run_sample, SampleSpec};
use crate::tensors::TensorWriter;

fn estimate(file: &[u8], spec: &EstimateSpec, backend: BackendKind, seed: u64) -> EstimateResult {
    estimate_log_z(file, spec, None, seed, backend, &|| false, &mut |_| {}).unwrap()
}

fn spec(method: &str, chains: u32, betas: u32, burn_in: u32) -> EstimateSpec {
    EstimateSpec {
        method: method.into(),
        chains: Some(chains),
        betas: Some(betas),
        burn_in: Some(burn_in),
        ..Default::default()
    }
}

fn assert_near_exact(what: &str, log_z: f64, se: f64, exact: f64) {
    eprintln!(
        "{what}: {log_z:.5} exact {exact:.5} diff {:.5} se {se:.5}",
        log_z - exact
    );
    assert!(
        (log_z - exact).abs() < 3.0 * se + 1e-3,
        "{what}: {log_z} vs exact {exact} (se {se})"
    );
}

fn assert_agree(what: &str, a: (f64, f64), b: (f64, f64)) {
    let combined = (a.1 * a.1 + b.1 * b.1).sqrt();
    eprintln!(
        "{what}: device {:.5} cpu {:.5} diff {:.2e} combined se {combined:.5}",
        a.0,
        b.0,
        a.0 - b.0
    );
    assert!(
        (a.0 - b.0).abs() < 3.0 * combined + 1e-3,
        "{what}: device {} vs cpu {} (combined se {combined})",
        a.0,
        b.0
    );
}

/// The device RBM chains make the CPU chains' transition with the CPU chains' random
/// numbers: 60 AIS steps of 64 chains in lockstep, then the per-chain log-weights agree to
/// 1e-4 (f32 vs f64 increments) on all chains whose trajectories did not split at an f32
/// near tie (|u - p| ~ 1e-7, expected ~0.1 times in the 60 x 64 x 18 draws; at most 2
/// chains may split), and so do the states.
#[test]
fn device_rbm_chains_step_with_the_cpu_chains() {
    let client = client();
    let seed = test_seed("rbm_lockstep");
    let p = random_rbm(12, 6, 0.5, seed);
    let base: Vec<f32> = p.visible_bias.iter().map(|b| 0.5 * b).collect();
    let chains = 64;
    let mut cpu = RbmChains::new(p.clone(), base.clone(), chains).unwrap();
    let mut dev = CubeRbmChains::new(client, p.clone(), base, chains).unwrap();
    assert!((cpu.log_z_base() - dev.log_z_base()).abs() < 1e-12);
    let mut rng_cpu = RngStream::new(seed, 5);
    let mut rng_dev = rng_cpu;
    cpu.draw_base(rng_cpu.next_key());
    dev.draw_base(rng_dev.next_key());
    let (mut w_cpu, mut w_dev) = (vec![0.0; chains], vec![0.0; chains]);
    let steps = 60;
    for k in 0..steps {
        let (from, to) = (k as f64 / steps as f64, (k + 1) as f64 / steps as f64);
        cpu.advance(from, to, &mut rng_cpu, &mut w_cpu);
        dev.advance(from, to, &mut rng_dev, &mut w_dev);
        if k == steps / 2 {
            dev.flush_weights(&mut w_dev).unwrap();
        }
    }
    dev.flush_weights(&mut w_dev).unwrap();
    let units = 12;
    let (mut s_cpu, mut s_dev) = (vec![0.0; chains * units], vec![0.0; chains * units]);
    cpu.read_states(&mut s_cpu).unwrap();
    dev.read_states(&mut s_dev).unwrap();
    let mut split = 0;
    for c in 0..chains {
        let same_state = s_cpu[c * units..(c + 1) * units] == s_dev[c * units..(c + 1) * units];
        let same_weight = (w_cpu[c] - w_dev[c]).abs() < 1e-4 * (1.0 + w_cpu[c].abs());
        if !(same_state && same_weight) {
            eprintln!("chain {c} split: weights {} vs {}", w_cpu[c], w_dev[c]);
            split += 1;
        }
    }
    assert!(
        split <= 2,
        "{split} of {chains} chains differ from the cpu chains"
    );
}

/// `estimate_log_z` with backend wgpu on a 12 x 6 RBM (weights N(0, 0.5^2); exact ln Z by
/// enumeration): forward AIS (128 chains x 1000 steps) and reverse AIS (from the forward
/// chains after 100 sweeps), on the device with no note, each within 3 se of exact and
/// of the CPU run with the same seed.
#[test]
fn rbm_ais_and_reverse_ais_run_on_the_device() {
    let seed = test_seed("rbm_ais_device");
    let p = random_rbm(12, 6, 0.5, seed);
    let file = rbm_file(&p);
    let exact = estimate(&file, &spec("exact", 1, 1, 0), BackendKind::Cpu, seed).log_z;
    let request = spec("reverse_ais", 128, 1000, 100);
    let dev = estimate(&file, &request, BackendKind::Wgpu, seed);
    let cpu = estimate(&file, &request, BackendKind::Cpu, seed);
    // The one note is reverse AIS's own (started from model samples), not a fallback.
    assert!(
        dev.notes.len() == 1 && dev.notes[0].starts_with("reverse AIS started"),
        "{:?}",
        dev.notes
    );
    assert_near_exact("rbm forward (wgpu)", dev.log_z, dev.log_z_stderr, exact);
    let rev = dev.reverse.as_ref().unwrap();
    assert_near_exact("rbm reverse (wgpu)", rev.log_z, rev.log_z_stderr, exact);
    assert_agree(
        "rbm forward",
        (dev.log_z, dev.log_z_stderr),
        (cpu.log_z, cpu.log_z_stderr),
    );
    let rev_cpu = cpu.reverse.as_ref().unwrap();
    assert_agree(
        "rbm reverse",
        (rev.log_z, rev.log_z_stderr),
        (rev_cpu.log_z, rev_cpu.log_z_stderr),
    );
}

/// A 4 x 4 torus with a field (J = 0.35, h = 0.1) and one below T_c at zero field
/// (J = 0.6): AIS on the device (256 chains x 500 steps, checkerboard heat bath) within
/// 3 se of brute-force enumeration of the 2^16 states, and of the CPU chains (heat bath +
/// Swendsen-Wang: a different transition, so an independent estimate).
#[test]
fn lattice_ais_runs_on_the_device() {
    let seed = test_seed("lattice_ais_device");
    for (coupling, field) in [(0.35f32, 0.1f32), (0.6, 0.0)] {
        let file = lattice_file(4, coupling, field);
        let (exact, _, _) = exact_4x4(1.0, coupling as f64, field as f64);
        let request = spec("ais", 256, 500, 0);
        let dev = estimate(&file, &request, BackendKind::Wgpu, seed);
        let cpu = estimate(&file, &request, BackendKind::Cpu, seed);
        assert!(dev.notes.is_empty(), "{:?}", dev.notes);
        let what = format!("lattice J={coupling} h={field}");
        assert_near_exact(&what, dev.log_z, dev.log_z_stderr, exact);
        assert_agree(
            &what,
            (dev.log_z, dev.log_z_stderr),
            (cpu.log_z, cpu.log_z_stderr),
        );
    }
}

fn potts_file(p: &crate::estimate::chains::potts::PottsParams) -> Vec<u8> {
    let mut w = TensorWriter::new();
    w.add("J", &[p.sites, p.q, p.sites, p.q], &p.couplings)
        .unwrap();
    w.add("h", &[p.sites, p.q], &p.fields).unwrap();
    w.meta("type", "potts");
    w.to_bytes().unwrap()
}

/// Potts, 5 sites, q = 3 (243 states; couplings N(0, 0.7^2)): AIS on the device (128
/// chains x 500 steps) within 3 se of exact enumeration and of the CPU chains.
#[test]
fn potts_ais_runs_on_the_device() {
    let seed = test_seed("potts_ais_device");
    let p = random_potts(5, 3, 0.7, seed);
    let file = potts_file(&p);
    let exact = estimate(&file, &spec("exact", 1, 1, 0), BackendKind::Cpu, seed).log_z;
    let request = spec("ais", 128, 500, 0);
    let dev = estimate(&file, &request, BackendKind::Wgpu, seed);
    let cpu = estimate(&file, &request, BackendKind::Cpu, seed);
    assert!(dev.notes.is_empty(), "{:?}", dev.notes);
    assert_near_exact("potts (wgpu)", dev.log_z, dev.log_z_stderr, exact);
    assert_agree(
        "potts",
        (dev.log_z, dev.log_z_stderr),
        (cpu.log_z, cpu.log_z_stderr),
    );
}

/// `sample` on the device: 64 chains of the 4 x 4 torus (J = 0.35, h = 0.1), 40 draws
/// each after 50 sweeps; the bond and spin averages per chain (independent chains, so
/// the spread of the 64 chain means gives an honest standard error) within 5 se of exact
/// enumeration. And `observe` of the 51% example (64 independent units on with
/// p = 0.49) on the device: mean within 0.01 (se ~ 0.0006 at 10^4 draws of sd 0.062),
/// MAP statistic exactly 0, no note.
#[test]
fn sample_and_observe_run_on_the_device() {
    let seed = test_seed("sample_observe_device");
    let (coupling, field) = (0.35f32, 0.1f32);
    let (chains, per_chain) = (64usize, 40usize);
    let (matrix, notes) = run_sample(
        &lattice_file(4, coupling, field),
        &SampleSpec {
            samples: Some((chains * per_chain) as u32),
            burn_in: Some(50),
            thin: Some(1),
            chains: Some(chains as u32),
        },
        seed,
        BackendKind::Wgpu,
        &|| false,
        &mut |_| {},
    )
    .unwrap();
    assert!(notes.is_empty(), "{notes:?}");
    assert_eq!((matrix.rows, matrix.cols), (chains * per_chain, 16));
    assert!(matrix.values.iter().all(|&x| x == 1.0 || x == -1.0));
    let params = LatticeParams {
        size: 4,
        coupling: coupling as f64,
        field: field as f64,
    };
    let (_, exact_b, exact_m) = exact_4x4(1.0, coupling as f64, field as f64);
    let mut means = vec![(0.0f64, 0.0f64); chains];
    for (row, state) in matrix.values.chunks_exact(16).enumerate() {
        let m = &mut means[row / per_chain];
        m.0 += params.bond_sum(state) / 32.0 / per_chain as f64;
        m.1 += state.iter().map(|&x| x as f64).sum::<f64>() / 16.0 / per_chain as f64;
    }
    for (what, values, exact) in [
        (
            "bonds",
            means.iter().map(|m| m.0).collect::<Vec<_>>(),
            exact_b,
        ),
        (
            "magnetization",
            means.iter().map(|m| m.1).collect(),
            exact_m,
        ),
    ] {
        let n = values.len() as f64;
        let mean = values.iter().sum::<f64>() / n;
        let var = values.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
        let se = (var / n).sqrt();
        eprintln!("sample {what}: {mean:.4} exact {exact:.4} se {se:.4}");
        assert!(
            (mean - exact).abs() < 5.0 * se + 1e-9,
            "{what}: {mean} vs {exact}"
        );
    }

    let b = (0.49f64 / 0.51).ln() as f32;
    let rbm = crate::estimate::chains::rbm::RbmParams {
        visible: 64,
        hidden: 1,
        weights: vec![0.0; 64],
        visible_bias: vec![b; 64],
        hidden_bias: vec![0.0],
    };
    let (report, notes) = run_observe(
        &rbm_file(&rbm),
        &ObserveSpec {
            statistic: "fraction_on".into(),
            burn_in: Some(10),
            ..Default::default()
        },
        seed,
        BackendKind::Wgpu,
        &|| false,
        &mut |_| {},
    )
    .unwrap();
    assert!(notes.is_empty(), "{notes:?}");
    assert!(
        (report.summary.mean - 0.49).abs() < 0.01,
        "{}",
        report.summary.mean
    );
    assert_eq!(report.map_statistic, 0.0);
}

/// What the device chains cannot take falls back to the CPU with a note that says why:
/// an odd lattice (the checkerboard needs even L), and `exact` (enumeration in f64).
#[test]
fn unsupported_requests_fall_back_with_a_note() {
    let seed = test_seed("fallback");
    let odd = estimate(
        &lattice_file(5, 0.3, 0.0),
        &spec("ais", 8, 20, 0),
        BackendKind::Wgpu,
        seed,
    );
    assert!(
        odd.notes
            .iter()
            .any(|n| n.contains("even lattice size") && n.contains("ran on the cpu")),
        "{:?}",
        odd.notes
    );
    let exact = estimate(
        &lattice_file(4, 0.3, 0.1),
        &spec("exact", 1, 1, 0),
        BackendKind::Wgpu,
        seed,
    );
    assert!(
        exact.notes.iter().any(|n| n.contains("f64 on the cpu")),
        "{:?}",
        exact.notes
    );
    // Device lattice chains refuse what they cannot hold (the facade never asks).
    let client = client();
    assert!(CubeLatticeChains::new(
        client,
        LatticeParams {
            size: 5,
            coupling: 0.3,
            field: 0.0
        },
        4
    )
    .is_err());
}

/// `train.ais_every` with a wgpu trainer runs the Bernoulli-RBM AIS chains on the device
/// (`ais_on_device` = 1), and its log-likelihoods agree with the exact ones as on the cpu
/// (within 3 standard errors + 0.01 nats: `heldout::tests::check_against_exact`).
#[test]
fn training_ais_runs_on_the_device() {
    use crate::estimate::heldout::tests::{check_against_exact, digits};
    use crate::spec::{ModelSpec, TrainSpec};
    use crate::train::Trainer;
    let model = ModelSpec {
        model_type: "bernoulli_rbm".into(),
        hidden: Some(8),
        ..Default::default()
    };
    let train = TrainSpec {
        epochs: Some(3),
        batch_size: Some(20),
        learning_rate: Some(0.1),
        validation_fraction: Some(0.25),
        ais_every: Some(3),
        ais_chains: Some(200),
        ais_betas: Some(2000),
        ..Default::default()
    };
    let seed = test_seed("training_ais_device");
    let mut t = Trainer::new(&model, &train, seed, digits(400), BackendKind::Wgpu).unwrap();
    let mut last = None;
    while !t.is_finished() {
        last = t.run_epoch(&|| false, &mut |_| {}).unwrap();
    }
    let m = last.unwrap().metrics;
    assert_eq!(m["ais_on_device"], 1.0, "{m:?}");
    check_against_exact(&m, 3);
}

/// `train.ais_every` on a Gaussian RBM trained on the device: the AIS chains run there too
/// and the log-likelihoods agree with the exact ones (the CPU test's check).
#[test]
fn gaussian_training_ais_runs_on_the_device() {
    let m = crate::estimate::heldout::tests::gaussian_training_ais(BackendKind::Wgpu);
    assert_eq!(m["ais_on_device"], 1.0, "{m:?}");
}
