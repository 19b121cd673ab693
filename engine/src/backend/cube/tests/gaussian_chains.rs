//! Gaussian-Bernoulli RBM chains on the device (`backend::cube::gaussian_chains`): in
//! lockstep with the CPU chains, AIS against the exact ln Z, sampled moments against the
//! exact mixture of Gaussians, device statistics against the host definitions, and
//! placement. The AIS tolerances are those of `estimators.rs` (3 reported se + 1e-3).

use super::*;
use crate::backend::cube::gaussian_chains::{gaussian_unsupported, CubeGaussianRbmChains};
use crate::backend::BackendKind;
use crate::estimate::ais::{AnnealingPath, Hooks};
use crate::estimate::chains::gaussian::{GaussianRbmChains, GaussianRbmParams};
use crate::estimate::chains::rbm::RbmParams;
use crate::estimate::chains::ModelChains;
use crate::estimate::model::LoadedModel;
use crate::estimate::placement::place_chains;
use crate::estimate::tests::random_rbm;
use crate::estimate::{estimate_log_z, EstimateResult, EstimateSpec};
use crate::observe::{run_observe, ObserveSpec};
use crate::rng::RngStream;
use crate::sample::{run_sample, SampleSpec};
use crate::tensors::TensorWriter;

/// A Gaussian RBM with sigma in [0.6, 1.4] and, if asked, a transform (mean in
/// [-3, 5], std in [0.5, 2]), so that every scale of the path is exercised.
pub(super) fn gaussian(rbm: RbmParams, transform: bool) -> GaussianRbmParams {
    let nv = rbm.visible;
    let spread = |i: usize, lo: f32, hi: f32| lo + (hi - lo) * i as f32 / (nv - 1) as f32;
    GaussianRbmParams {
        sigma: (0..nv).map(|i| spread(i, 0.6, 1.4)).collect(),
        transform: transform.then(|| {
            (
                (0..nv).map(|i| spread(nv - 1 - i, -3.0, 5.0)).collect(),
                (0..nv).map(|i| spread(i, 0.5, 2.0)).collect(),
            )
        }),
        rbm,
    }
}

fn gaussian_file(p: &GaussianRbmParams) -> Vec<u8> {
    let r = &p.rbm;
    let mut w = TensorWriter::new();
    w.add("W", &[r.visible, r.hidden], &r.weights).unwrap();
    w.add("b", &[r.visible], &r.visible_bias).unwrap();
    w.add("c", &[r.hidden], &r.hidden_bias).unwrap();
    w.add("sigma", &[r.visible], &p.sigma).unwrap();
    if let Some((mean, std)) = &p.transform {
        w.add("transform_mean", &[r.visible], mean).unwrap();
        w.add("transform_std", &[r.visible], std).unwrap();
    }
    w.meta("type", "gaussian_rbm");
    w.to_bytes().unwrap()
}

fn exact_log_z(p: &GaussianRbmParams) -> f64 {
    let mut progress = |_: f64| {};
    p.exact_log_z(&mut Hooks {
        should_stop: &|| false,
        progress: &mut progress,
    })
    .unwrap()
}

/// Exact data-space moments, in f64: given h the model-space visibles are independent
/// N(b + sigma W h, sigma^2), and p(h) ∝ exp(c.h + sum_i (a_i b_i / sigma_i + a_i^2 / 2)),
/// a = W h (`GaussianRbmParams::exact_log_z`). Returns, per unit, E[x] and E[x^2], and
/// E[x_0 x_1] (units 0 and 1 are independent given h).
fn exact_moments(p: &GaussianRbmParams) -> (Vec<f64>, Vec<f64>, f64) {
    let r = &p.rbm;
    let (nv, nh) = (r.visible, r.hidden);
    let (mean, std) = match &p.transform {
        Some((m, s)) => (m.clone(), s.clone()),
        None => (vec![0.0; nv], vec![1.0; nv]),
    };
    let states: Vec<(f64, Vec<f64>)> = (0..1u32 << nh)
        .map(|g| {
            let h: Vec<f64> = (0..nh).map(|j| ((g >> j) & 1) as f64).collect();
            let mut log_p: f64 = (0..nh).map(|j| r.hidden_bias[j] as f64 * h[j]).sum();
            let mu: Vec<f64> = (0..nv)
                .map(|i| {
                    let a: f64 = (0..nh).map(|j| r.weights[i * nh + j] as f64 * h[j]).sum();
                    let (b, s) = (r.visible_bias[i] as f64, p.sigma[i] as f64);
                    log_p += a * b / s + a * a / 2.0;
                    mean[i] as f64 + std[i] as f64 * (b + s * a)
                })
                .collect();
            (log_p, mu)
        })
        .collect();
    let top = states.iter().map(|s| s.0).fold(f64::NEG_INFINITY, f64::max);
    let norm: f64 = states.iter().map(|s| (s.0 - top).exp()).sum();
    let (mut m1, mut m2, mut cross) = (vec![0.0; nv], vec![0.0; nv], 0.0);
    for (log_p, mu) in &states {
        let w = (log_p - top).exp() / norm;
        for i in 0..nv {
            let var = (std[i] as f64 * p.sigma[i] as f64).powi(2);
            m1[i] += w * mu[i];
            m2[i] += w * (mu[i] * mu[i] + var);
        }
        cross += w * mu[0] * mu[1];
    }
    (m1, m2, cross)
}

/// Mean and standard error of independent per-chain values.
fn mean_se(values: &[f64]) -> (f64, f64) {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let var = values.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, (var / n).sqrt())
}

/// The device chains make the CPU chains' transitions with the CPU chains' random numbers
/// (same keys, same elements, Box-Muller of the same element): 40 AIS steps, 3 sweeps at
/// tau = 1 and 2 at tau = 2.5 of 45 chains (7 x 5, with a transform) in lockstep. Device
/// normals differ from the CPU's by <= 2e-5 (1 + |z|) (`tests/rbm.rs`), so a visible unit
/// by <= sigma 2e-5 (1 + 6) < 2e-4 in model space and, times std <= 2, < 4e-4 in data space
/// (the matmul's f32 rounding adds ~1e-6): states must agree within 1e-3 (1 + |x|).
/// Log-weights: a pre-activation moves by |d pre_j| <= sum_i |W_ij| / sigma_i 2e-4 < 4e-3
/// (7 weights |W| < 1.5, sigma >= 0.6), and an increment softplus(to x) - softplus(from x)
/// has slope <= 1.25 dbeta in x, so over the path the 5 units move a weight by < 0.025;
/// with f32 vs f64 sums (~1e-6 per step): within 5e-2 + 1e-4 |w|. A wrong increment (with
/// the visible term, or at the wrong beta) errs by O(1) nats. A hidden draw flips (and its
/// chain splits) only at a near tie |u - p| < |dp| <= 0.25 |d pre|: typical errors are ~1e-7
/// (bound 1e-3), so splits are rare in the 45 x 5 x 45 draws; at most 3 chains may split.
#[test]
fn device_gaussian_chains_step_with_the_cpu_chains() {
    let client = client();
    let seed = test_seed("gaussian_lockstep");
    let p = gaussian(random_rbm(7, 5, 0.5, seed), true);
    let chains = 45;
    let mut cpu = GaussianRbmChains::new(p.clone(), chains).unwrap();
    let mut dev = CubeGaussianRbmChains::new(client, p.clone(), chains).unwrap();
    assert!((cpu.log_z_base() - dev.log_z_base()).abs() < 1e-12);
    assert_eq!(dev.backend_name(), "wgpu");
    let mut rng_cpu = RngStream::new(seed, 5);
    let mut rng_dev = rng_cpu;
    cpu.draw_base(rng_cpu.next_key());
    dev.draw_base(rng_dev.next_key());
    let (mut w_cpu, mut w_dev) = (vec![0.0; chains], vec![0.0; chains]);
    let steps = 40;
    for k in 0..steps {
        let (from, to) = (k as f64 / steps as f64, (k + 1) as f64 / steps as f64);
        cpu.advance(from, to, &mut rng_cpu, &mut w_cpu);
        dev.advance(from, to, &mut rng_dev, &mut w_dev);
        if k == steps / 2 {
            dev.flush_weights(&mut w_dev).unwrap();
        }
    }
    dev.flush_weights(&mut w_dev).unwrap();
    for tau in [1.0, 1.0, 1.0, 2.5, 2.5] {
        cpu.sweep(tau, &mut rng_cpu);
        dev.sweep(tau, &mut rng_dev);
    }
    let units = 7;
    let (mut s_cpu, mut s_dev) = (vec![0.0; chains * units], vec![0.0; chains * units]);
    cpu.read_states(&mut s_cpu).unwrap();
    dev.read_states(&mut s_dev).unwrap();
    let mut split = 0;
    let mut worst = (0.0f64, 0.0f64);
    for c in 0..chains {
        let rows = (
            &s_cpu[c * units..(c + 1) * units],
            &s_dev[c * units..(c + 1) * units],
        );
        let state_err = rows
            .0
            .iter()
            .zip(rows.1)
            .map(|(&a, &b)| (a - b).abs() as f64 / (1.0 + a.abs() as f64))
            .fold(0.0, f64::max);
        let weight_err = (w_cpu[c] - w_dev[c]).abs();
        if state_err < 1e-3 && weight_err < 5e-2 + 1e-4 * w_cpu[c].abs() {
            worst = (worst.0.max(state_err), worst.1.max(weight_err));
        } else {
            eprintln!(
                "chain {c} split: weights {} vs {}, state error {state_err:.2e}",
                w_cpu[c], w_dev[c]
            );
            split += 1;
        }
    }
    eprintln!(
        "lockstep: worst state error {:.2e}, worst weight error {:.2e}",
        worst.0, worst.1
    );
    assert!(
        split <= 3,
        "{split} of {chains} chains differ from the cpu chains"
    );
}

fn estimate(file: &[u8], spec: &EstimateSpec, backend: BackendKind, seed: u64) -> EstimateResult {
    estimate_log_z(file, spec, None, seed, backend, &|| false, &mut |_| {}).unwrap()
}

/// `estimate_log_z` with backend wgpu on 5 x 4 Gaussian RBMs (weights N(0, 0.6^2), sigma
/// 0.6-1.4), without and with a data transform (ln Z is that of the model-space density
/// either way): forward AIS (77 chains x 1000 steps) and reverse AIS (from the forward
/// chains after 50 sweeps) on the device with no fallback note, within 3 se + 1e-3 of
/// `GaussianRbmParams::exact_log_z` and of the CPU run with the same seed.
#[test]
fn gaussian_ais_runs_on_the_device() {
    let seed = test_seed("gaussian_ais_device");
    for transform in [false, true] {
        let p = gaussian(random_rbm(5, 4, 0.6, seed ^ transform as u64), transform);
        let file = gaussian_file(&p);
        let exact = exact_log_z(&p);
        let request = EstimateSpec {
            method: "reverse_ais".into(),
            chains: Some(77),
            betas: Some(1000),
            burn_in: Some(50),
            ..Default::default()
        };
        let dev = estimate(&file, &request, BackendKind::Wgpu, seed);
        let cpu = estimate(&file, &request, BackendKind::Cpu, seed);
        assert!(
            dev.notes.len() == 1 && dev.notes[0].starts_with("reverse AIS started"),
            "{:?}",
            dev.notes
        );
        let what = |dir: &str| format!("gaussian {dir} transform={transform}");
        let rev = dev.reverse.as_ref().unwrap();
        let rev_cpu = cpu.reverse.as_ref().unwrap();
        for (dir, d, c) in [
            (
                "forward",
                (dev.log_z, dev.log_z_stderr),
                (cpu.log_z, cpu.log_z_stderr),
            ),
            (
                "reverse",
                (rev.log_z, rev.log_z_stderr),
                (rev_cpu.log_z, rev_cpu.log_z_stderr),
            ),
        ] {
            eprintln!(
                "{}: wgpu {:.5} cpu {:.5} exact {exact:.5} se {:.5}",
                what(dir),
                d.0,
                c.0,
                d.1
            );
            assert!(
                (d.0 - exact).abs() < 3.0 * d.1 + 1e-3,
                "{}: {} vs exact {exact} (se {})",
                what(dir),
                d.0,
                d.1
            );
            let combined = (d.1 * d.1 + c.1 * c.1).sqrt();
            assert!(
                (d.0 - c.0).abs() < 3.0 * combined + 1e-3,
                "{}: wgpu {} vs cpu {} (combined se {combined})",
                what(dir),
                d.0,
                c.0
            );
        }
    }
}

/// `sample` on the device: 37 chains of a 5 x 4 Gaussian RBM with a transform (weights
/// N(0, 0.9^2), so the hidden layer shifts the visible moments), 150 draws each after 30
/// sweeps. Per unit, E[x] and E[x^2] in data space: the 37 per-chain averages are
/// independent, so their spread gives a standard error; each must be within 5 se of the
/// exact mixture (t with 36 df: ~2e-5 false alarms per check, 10 checks). The test has
/// power: a sampler that ignored the hidden layer (x ~ N(b, sigma^2)) would miss the exact
/// first moment of some unit by more than 5 se (asserted). And `observe` on the device: a
/// projection (reduced on the device, `linear_statistics`) and the correlation of units
/// 0 and 1 (computed on the host from downloaded states), means within 5 se = 5 std /
/// sqrt(ESS) of exact, no fallback note.
#[test]
fn gaussian_moments_on_the_device_match_the_exact_mixture() {
    let seed = test_seed("gaussian_moments_device");
    let p = gaussian(random_rbm(5, 4, 0.9, 17), true);
    let file = gaussian_file(&p);
    let (m1, m2, cross) = exact_moments(&p);
    let (chains, per_chain, nv) = (37usize, 150usize, 5usize);
    let (matrix, notes) = run_sample(
        &file,
        &SampleSpec {
            samples: Some((chains * per_chain) as u32),
            burn_in: Some(30),
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
    assert_eq!((matrix.rows, matrix.cols), (chains * per_chain, nv));
    let (mean, std) = p.transform.clone().unwrap();
    let mut power = 0.0f64;
    for i in 0..nv {
        let per_chain_avg = |f: &dyn Fn(f64) -> f64| -> Vec<f64> {
            (0..chains)
                .map(|c| {
                    (0..per_chain)
                        .map(|k| f(matrix.values[(c * per_chain + k) * nv + i] as f64))
                        .sum::<f64>()
                        / per_chain as f64
                })
                .collect()
        };
        let (got1, se1) = mean_se(&per_chain_avg(&|x| x));
        let (got2, se2) = mean_se(&per_chain_avg(&|x| x * x));
        eprintln!(
            "unit {i}: E[x] {got1:.4} exact {:.4} se {se1:.4}; E[x^2] {got2:.4} exact {:.4} se {se2:.4}",
            m1[i], m2[i]
        );
        assert!(
            (got1 - m1[i]).abs() < 5.0 * se1,
            "unit {i}: E[x] {got1} vs {}",
            m1[i]
        );
        assert!(
            (got2 - m2[i]).abs() < 5.0 * se2,
            "unit {i}: E[x^2] {got2} vs {}",
            m2[i]
        );
        let no_hidden = mean[i] as f64 + std[i] as f64 * p.rbm.visible_bias[i] as f64;
        power = power.max((no_hidden - m1[i]).abs() / se1);
    }
    eprintln!("largest shift of a mean by the hidden layer: {power:.1} se");
    assert!(
        power > 5.0,
        "the hidden layer moves no mean by 5 se ({power})"
    );

    let weights = [0.5f32, -1.0, 0.25, 2.0, -0.75];
    let want_projection: f64 = weights.iter().zip(&m1).map(|(&w, m)| w as f64 * m).sum();
    for (statistic, want) in [("projection", want_projection), ("correlation", cross)] {
        let (report, notes) = run_observe(
            &file,
            &ObserveSpec {
                statistic: statistic.into(),
                samples: Some(6000),
                chains: Some(30),
                burn_in: Some(30),
                weights: weights.to_vec(),
                units: vec![0, 1],
                ..Default::default()
            },
            seed,
            BackendKind::Wgpu,
            &|| false,
            &mut |_| {},
        )
        .unwrap();
        assert!(notes.is_empty(), "{notes:?}");
        let s = &report.summary;
        let se = s.std / s.ess.sqrt();
        eprintln!(
            "observe {statistic}: {:.4} exact {want:.4} se {se:.4} (ess {:.0})",
            s.mean, s.ess
        );
        assert!(
            (s.mean - want).abs() < 5.0 * se,
            "{statistic}: {} vs {want}",
            s.mean
        );
        assert!(report.map_statistic.is_finite());
    }
}

/// `linear_statistics` on the device (model-space states, the transform folded into the
/// weights and offset) equals the projection of the downloaded data-space states, for 23
/// chains of a 6 x 3 model with a transform. f32 sums of 6 terms |w x| <= 2 * 12 and the
/// f32 transform of the download: within 1e-4 (1 + sum_i |w_i x_i|).
#[test]
fn gaussian_device_statistics_equal_the_host_definition() {
    use crate::observe::statistic::Statistic;
    let client = client();
    let seed = test_seed("gaussian_statistics");
    let p = gaussian(random_rbm(6, 3, 0.5, seed), true);
    let mut chains = CubeGaussianRbmChains::new(client, p, 23).unwrap();
    let mut rng = RngStream::new(seed, 9);
    chains.draw_base(rng.next_key());
    for _ in 0..3 {
        chains.sweep(1.0, &mut rng);
    }
    let (n, k) = (chains.units(), chains.chains());
    let mut states = vec![0.0f32; n * k];
    chains.read_states(&mut states).unwrap();
    let weights: Vec<f32> = (0..n).map(|i| ((i * 37 % 17) as f32 - 8.0) / 4.0).collect();
    let stat = Statistic::parse("projection", &[], &weights, &[], &chains).unwrap();
    let (w, scale, offset) = stat.as_linear(n, chains.encoding()).expect("linear");
    let got = chains
        .linear_statistics(&w, scale, offset)
        .expect("device chains reduce on the device")
        .unwrap();
    assert_eq!(got.len(), k);
    for (c, state) in states.chunks_exact(n).enumerate() {
        let want = stat.value(state, &chains);
        let size: f64 = state
            .iter()
            .zip(&weights)
            .map(|(&x, &w)| (x * w).abs() as f64)
            .sum();
        assert!(
            (got[c] - want).abs() <= 1e-4 * (1.0 + size),
            "chain {c}: device {} host {want}",
            got[c]
        );
    }
    // Written states come back as written (data space in, data space out).
    let written: Vec<f32> = (0..n * k).map(|i| (i % 11) as f32 - 4.5).collect();
    chains.write_states(&written).unwrap();
    chains.read_states(&mut states).unwrap();
    assert_within(
        "write/read",
        &states,
        &written.iter().map(|&x| x as f64).collect::<Vec<_>>(),
        |i| 1e-5 * (1.0 + written[i].abs() as f64),
    );
}

/// Placement: a Gaussian RBM asked for on wgpu gets the device chains without a note; one
/// too large for a storage buffer is refused by the device chains with the reason the
/// fallback note carries.
#[test]
fn gaussian_rbm_is_placed_on_the_device() {
    let seed = test_seed("gaussian_placement");
    let p = gaussian(random_rbm(5, 4, 0.5, seed), true);
    let (chains, note) = place_chains(
        &LoadedModel::GaussianRbm(p.clone()),
        9,
        None,
        BackendKind::Wgpu,
    )
    .unwrap();
    assert_eq!(note, None);
    assert_eq!(chains.backend_name(), "wgpu");
    assert_eq!(chains.chains(), 9);
    assert!(gaussian_unsupported(&p, 9).is_none());
    let why = gaussian_unsupported(&p, (1 << 25) / 5 + 1).expect("too many chains");
    assert!(why.contains("storage buffer"), "{why}");
}
