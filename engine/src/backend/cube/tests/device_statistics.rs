//! `observe`'s statistics computed on the device: the `energy` statistic
//! (`ModelChains::energies`) per chain equal to the host definition (`-log_target` of the
//! downloaded state) for every device family, and `observe` using the device path for
//! every statistic (energies, linear forms, products of two units, counts per state), with
//! the same per-draw values as the host path on the same draws.
//!
//! Tolerances, from f32 rounding (eps = 2^-24; a recursive f32 sum of m terms errs by at
//! most (m - 1) eps sum |terms|):
//! * Lattice: the device sums are exact integers combined in f64: 1e-12 (1 + sum |terms|).
//! * Potts: the device sums each row (<= L terms) and then the L rows, so every term is
//!   rounded at most 2L times: 2 L eps S, S = sum_i |h_i(s_i)| + sum_{i<j} |J_ij(s_i, s_j)|
//!   (the host sums in f64).
//! * RBMs (n = V + H): three f32 computations, each within n eps S: the host's and the
//!   device's pre-activations c + x W (V products each) and the device's reduction of the
//!   V + H terms of the free energy (softplus has slope < 1, so pre-activation errors pass
//!   through unamplified); so 3 n eps S, S = sum of |terms| of the visible term, plus
//!   sum_j (softplus(pre_j) + |c_j| + sum_i |x_i W_ij| / sigma_i). Gaussian RBMs with a
//!   transform add the host's f32 round trip data -> model space: x errs by dx_i <= 3 eps
//!   (|d_i| + |mean_i|) / std_i, and |dF/dx_i| <= (|z_i| + sum_j |W_ij|) / sigma_i.

// `!(ratio <= x)` is deliberate: a NaN ratio must fail.
#![allow(clippy::neg_cmp_op_on_partial_ord)]

use std::cell::{Cell, RefCell};

use super::gaussian_chains::gaussian;
use super::*;
use crate::backend::cube::chains::{CubeLatticeChains, CubePottsChains, CubeRbmChains};
use crate::backend::cube::gaussian_chains::CubeGaussianRbmChains;
use crate::error::EngineError;
use crate::estimate::ais::AnnealingPath;
use crate::estimate::chains::gaussian::GaussianRbmParams;
use crate::estimate::chains::lattice::LatticeParams;
use crate::estimate::chains::potts::PottsParams;
use crate::estimate::chains::rbm::RbmParams;
use crate::estimate::chains::{Encoding, ModelChains};
use crate::estimate::tests::{random_potts, random_rbm};
use crate::observe::statistic::Statistic;
use crate::observe::{observe_chains, statistic_series, ChainPlan};
use crate::rng::{RngKey, RngStream};

/// Unit roundoff of f32.
const EPS: f64 = f32::EPSILON as f64 / 2.0;

fn softplus64(x: f64) -> f64 {
    x.max(0.0) + (-x.abs()).exp().ln_1p()
}

/// A device family under test: its parameters (for the tolerances) and fresh chains.
enum Family {
    Rbm(RbmParams),
    Gaussian(GaussianRbmParams),
    Lattice(LatticeParams),
    Potts(PottsParams),
}

impl Family {
    fn name(&self) -> String {
        match self {
            Family::Rbm(p) => format!("rbm {}x{}", p.visible, p.hidden),
            Family::Gaussian(p) => format!("gaussian rbm {}x{}", p.rbm.visible, p.rbm.hidden),
            Family::Lattice(p) => format!("lattice {0}x{0}", p.size),
            Family::Potts(p) => format!("potts L={} q={}", p.sites, p.q),
        }
    }

    fn chains(&self, chains: usize) -> Box<dyn ModelChains> {
        let client = client();
        match self {
            Family::Rbm(p) => {
                let base = p.visible_bias.clone();
                Box::new(CubeRbmChains::new(client, p.clone(), base, chains).unwrap())
            }
            Family::Gaussian(p) => {
                Box::new(CubeGaussianRbmChains::new(client, p.clone(), chains).unwrap())
            }
            Family::Lattice(p) => Box::new(CubeLatticeChains::new(client, *p, chains).unwrap()),
            Family::Potts(p) => Box::new(CubePottsChains::new(client, p.clone(), chains).unwrap()),
        }
    }

    /// Allowed |device - host| for the energy of the (data-space) state (module docs).
    fn tolerance(&self, state: &[f32]) -> f64 {
        match self {
            Family::Rbm(p) => {
                let ones = vec![1.0f32; p.visible];
                let visible: f64 = state
                    .iter()
                    .zip(&p.visible_bias)
                    .map(|(&v, &b)| (v * b).abs() as f64)
                    .sum();
                let x: Vec<f64> = state.iter().map(|&v| v as f64).collect();
                let n = (p.visible + p.hidden) as f64;
                3.0 * n * EPS * (visible + hidden_terms(p, &x, &ones))
            }
            Family::Gaussian(g) => {
                let p = &g.rbm;
                let d: Vec<f64> = state.iter().map(|&v| v as f64).collect();
                let x: Vec<f64> = match &g.transform {
                    Some((mean, std)) => (0..p.visible)
                        .map(|i| (d[i] - mean[i] as f64) / std[i] as f64)
                        .collect(),
                    None => d.clone(),
                };
                let z: Vec<f64> = (0..p.visible)
                    .map(|i| (x[i] - p.visible_bias[i] as f64) / g.sigma[i] as f64)
                    .collect();
                let visible: f64 = z.iter().map(|z| 0.5 * z * z).sum();
                let n = (p.visible + p.hidden) as f64;
                let rounding = 3.0 * n * EPS * (visible + hidden_terms(p, &x, &g.sigma));
                let round_trip: f64 = match &g.transform {
                    Some((mean, std)) => (0..p.visible)
                        .map(|i| {
                            let dx =
                                3.0 * EPS * (d[i].abs() + mean[i].abs() as f64) / std[i] as f64;
                            let row = &p.weights[i * p.hidden..(i + 1) * p.hidden];
                            let slope =
                                z[i].abs() + row.iter().map(|&w| w.abs() as f64).sum::<f64>();
                            dx * slope / g.sigma[i] as f64
                        })
                        .sum(),
                    None => 0.0,
                };
                rounding + round_trip
            }
            Family::Lattice(p) => {
                let n = p.sites() as f64;
                1e-12 * (1.0 + 2.0 * n * p.coupling.abs() + n * p.field.abs())
            }
            Family::Potts(p) => {
                let (l, q) = (p.sites, p.q);
                let s: Vec<usize> = state.iter().map(|&x| x as usize).collect();
                let mut total = 0.0;
                for i in 0..l {
                    total += p.fields[i * q + s[i]].abs() as f64;
                    for j in i + 1..l {
                        total += p.coupling(i, s[i], j, s[j]).abs() as f64;
                    }
                }
                2.0 * l as f64 * EPS * total
            }
        }
    }
}

/// sum_j (softplus(pre_j) + |c_j| + sum_i |x_i W_ij| / sigma_i), pre = c + (x / sigma) W.
fn hidden_terms(p: &RbmParams, x: &[f64], sigma: &[f32]) -> f64 {
    (0..p.hidden)
        .map(|j| {
            let (mut pre, mut size) = (p.hidden_bias[j] as f64, (p.hidden_bias[j] as f64).abs());
            for i in 0..p.visible {
                let t = x[i] / sigma[i] as f64 * p.weights[i * p.hidden + j] as f64;
                pre += t;
                size += t.abs();
            }
            softplus64(pre) + size
        })
        .sum()
}

/// Awkward sizes: chain counts that are not multiples of any cube size, odd lattices
/// counts, q = 3 and q = 21 (past one warp of states).
fn families(seed: u64) -> Vec<(Family, usize)> {
    vec![
        (Family::Rbm(random_rbm(100, 13, 0.4, seed)), 37),
        (
            Family::Gaussian(gaussian(random_rbm(100, 13, 0.2, seed), true)),
            23,
        ),
        (
            Family::Lattice(LatticeParams {
                size: 6,
                coupling: 0.3,
                field: 0.2,
            }),
            37,
        ),
        (
            Family::Lattice(LatticeParams {
                size: 8,
                coupling: -0.4,
                field: 0.3,
            }),
            5,
        ),
        (Family::Potts(random_potts(7, 3, 0.5, seed)), 37),
        (Family::Potts(random_potts(7, 21, 0.5, seed)), 37),
    ]
}

/// `energies()` after a few sweeps equals -log_target of each downloaded state, within
/// the tolerances of the module docs, for every family and size of [`families`].
#[test]
fn device_energies_equal_the_host_definition() {
    let seed = test_seed("device_energies");
    let mut failed = Vec::new();
    for (family, k) in families(seed) {
        let mut chains = family.chains(k);
        let mut rng = RngStream::new(seed, 11);
        chains.draw_base(rng.next_key());
        for _ in 0..3 {
            chains.sweep(1.0, &mut rng);
        }
        let n = chains.units();
        let mut states = vec![0.0f32; n * k];
        chains.read_states(&mut states).unwrap();
        let got = chains
            .energies()
            .expect("device chains compute energies on the device")
            .unwrap();
        assert_eq!(got.len(), k, "{}", family.name());
        let mut worst = (0usize, 0.0f64);
        for (c, state) in states.chunks_exact(n).enumerate() {
            let want = Statistic::Energy.value(state, &*chains);
            let ratio = (got[c] - want).abs() / family.tolerance(state);
            // `!(a <= b)`: a NaN ratio counts as the worst.
            if !(ratio <= worst.1) {
                worst = (c, ratio);
            }
        }
        let (c, ratio) = worst;
        eprintln!(
            "{}: worst error / tolerance {ratio:.3} (chain {c}: device {}, host {})",
            family.name(),
            got[c],
            Statistic::Energy.value(&states[c * n..(c + 1) * n], &*chains)
        );
        if !(ratio <= 1.0) {
            failed.push(family.name());
        }
    }
    assert!(failed.is_empty(), "beyond tolerance: {failed:?}");
}

/// Device chains seen through a probe that counts what `observe` asks of them, keeps the
/// states it reads, and can hide the statistics computed on the device (so `observe`
/// takes its host path).
struct Probe<'a> {
    inner: &'a mut dyn ModelChains,
    offer_device: bool,
    device_calls: usize,
    state_reads: Cell<usize>,
    states: RefCell<Vec<Vec<f32>>>,
}

impl<'a> Probe<'a> {
    fn new(inner: &'a mut dyn ModelChains, offer_device: bool) -> Self {
        Probe {
            inner,
            offer_device,
            device_calls: 0,
            state_reads: Cell::new(0),
            states: RefCell::new(Vec::new()),
        }
    }
}

impl Probe<'_> {
    /// Counts a call of a device statistic; `None` when they are hidden.
    fn device_call(&mut self) -> Option<()> {
        self.device_calls += self.offer_device as usize;
        self.offer_device.then_some(())
    }
}

impl AnnealingPath for Probe<'_> {
    fn chains(&self) -> usize {
        self.inner.chains()
    }
    fn log_z_base(&self) -> f64 {
        self.inner.log_z_base()
    }
    fn draw_base(&mut self, key: RngKey) {
        self.inner.draw_base(key)
    }
    fn advance(&mut self, from: f64, to: f64, rng: &mut RngStream, log_weights: &mut [f64]) {
        self.inner.advance(from, to, rng, log_weights)
    }
    fn transition(&mut self, beta: f64, rng: &mut RngStream) {
        self.inner.transition(beta, rng)
    }
    fn flush_weights(&mut self, log_weights: &mut [f64]) -> Result<(), EngineError> {
        self.inner.flush_weights(log_weights)
    }
}

impl ModelChains for Probe<'_> {
    fn units(&self) -> usize {
        self.inner.units()
    }
    fn encoding(&self) -> Encoding {
        self.inner.encoding()
    }
    fn read_state(&self, chain: usize, out: &mut [f32]) {
        self.inner.read_state(chain, out)
    }
    fn write_state(&mut self, chain: usize, state: &[f32]) {
        self.inner.write_state(chain, state)
    }
    fn read_states(&self, out: &mut [f32]) -> Result<(), EngineError> {
        self.inner.read_states(out)?;
        self.state_reads.set(self.state_reads.get() + 1);
        self.states.borrow_mut().push(out.to_vec());
        Ok(())
    }
    fn write_states(&mut self, states: &[f32]) -> Result<(), EngineError> {
        self.inner.write_states(states)
    }
    fn backend_name(&self) -> &'static str {
        self.inner.backend_name()
    }
    fn linear_statistics(
        &mut self,
        weights: &[f32],
        scale: f64,
        offset: f64,
    ) -> Option<Result<Vec<f64>, EngineError>> {
        self.device_call()?;
        self.inner.linear_statistics(weights, scale, offset)
    }
    fn energies(&mut self) -> Option<Result<Vec<f64>, EngineError>> {
        self.device_call()?;
        self.inner.energies()
    }
    fn pair_products(&mut self, a: usize, b: usize) -> Option<Result<Vec<f64>, EngineError>> {
        self.device_call()?;
        self.inner.pair_products(a, b)
    }
    fn state_counts(&mut self) -> Option<Result<Vec<u32>, EngineError>> {
        self.device_call()?;
        self.inner.state_counts()
    }
    fn sweep(&mut self, tau: f64, rng: &mut RngStream) {
        self.inner.sweep(tau, rng)
    }
    fn log_target(&self, state: &[f32]) -> f64 {
        self.inner.log_target(state)
    }
    fn exact_map(&self) -> Option<Vec<f32>> {
        self.inner.exact_map()
    }
    fn polish(&self, state: &mut [f32]) {
        self.inner.polish(state)
    }
}

/// `observe` of the energy on the device: the per-draw series (`statistic_series`, what
/// `observe_chains` summarises) takes the device path (one `energies` call per draw, no
/// state download) and equals, draw by draw, the host path on twin chains with the same
/// seed (same kernels and keys, so the same draws: `energies` only overwrites scratch the
/// next sweep recomputes), within the module's tolerances of each draw's state; and
/// `observe_chains` reports the mean of those host values (to the largest tolerance).
#[test]
fn observe_energy_on_the_device_equals_the_host_values() {
    let seed = test_seed("observe_energy_device");
    let mut failed = Vec::new();
    for (family, k) in families(seed) {
        let plan = ChainPlan {
            samples: 4 * k,
            burn_in: 2,
            thin: 2,
            chains: k,
        };
        let draws = plan.per_chain();
        let run = |offer: bool| {
            let mut chains = family.chains(k);
            let mut probe = Probe::new(&mut *chains, offer);
            let mut rng = RngStream::new(seed, 12);
            let series = statistic_series(
                &mut probe,
                &Statistic::Energy,
                &plan,
                &mut rng,
                &|| false,
                &mut |_| {},
            )
            .unwrap();
            let states = probe.states.take();
            (series, probe.device_calls, probe.state_reads.get(), states)
        };
        let (device, calls, reads, _) = run(true);
        assert_eq!((calls, reads), (draws, 0), "{}: device path", family.name());
        let (host, calls, reads, states) = run(false);
        assert_eq!((calls, reads), (0, draws), "{}: host path", family.name());
        let n = states[0].len() / k;
        let (mut max_tol, mut worst) = (0.0f64, (0, 0, 0.0f64));
        for c in 0..k {
            assert_eq!(device[c].len(), draws);
            for d in 0..draws {
                let tol = family.tolerance(&states[d][c * n..(c + 1) * n]);
                max_tol = max_tol.max(tol);
                let ratio = (device[c][d] - host[c][d]).abs() / tol;
                if !(ratio <= worst.2) {
                    worst = (c, d, ratio);
                }
            }
        }
        let (c, d, ratio) = worst;
        eprintln!(
            "{}: worst error / tolerance {ratio:.3} (chain {c} draw {d}: device {}, host {})",
            family.name(),
            device[c][d],
            host[c][d]
        );
        if !(ratio <= 1.0) {
            failed.push(family.name());
            continue;
        }

        let mut chains = family.chains(k);
        let mut probe = Probe::new(&mut *chains, true);
        let mut rng = RngStream::new(seed, 12);
        let report = observe_chains(
            &mut probe,
            &Statistic::Energy,
            &plan,
            65,
            &mut rng,
            &|| false,
            &mut |_| {},
        )
        .unwrap();
        assert_eq!(probe.device_calls, draws, "{}", family.name());
        let host_mean = host.iter().flatten().sum::<f64>() / (k * draws) as f64;
        assert!(
            (report.summary.mean - host_mean).abs() <= max_tol,
            "{}: observe mean {} host mean {host_mean}",
            family.name(),
            report.summary.mean
        );
        assert_eq!(report.summary.samples, k * draws);
    }
    assert!(
        failed.is_empty(),
        "per-draw values beyond tolerance: {failed:?}"
    );
}

/// Allowed |device - host| of a statistic other than the energy on a (data-space) state:
/// counts and products of 0/1, +-1 or categorical units are exact in f32 (1e-12 for the
/// f64 scaling). The projection's f32 sum of n terms errs by at most n eps sum |w_i x_i|;
/// Gaussian RBMs reduce model-space states x = (d - m) / s with weights w s (one rounding
/// each) and the host rounds d = s x + m (two), so (n + 4) eps sum_i |w_i| (|d_i| +
/// 2|m_i|) covers both (m = 0 without a transform; Potts weights w_i a round once).
/// Products of two real units: each factor s x + m rounds twice and the product once:
/// 8 eps (|d_a| + 2|m_a|) (|d_b| + 2|m_b|).
fn statistic_tolerance(family: &Family, statistic: &Statistic, state: &[f32]) -> f64 {
    let mean = |i: usize| match family {
        Family::Gaussian(g) => g.transform.as_ref().map_or(0.0, |(m, _)| m[i].abs() as f64),
        _ => 0.0,
    };
    let size = |i: usize| state[i].abs() as f64 + 2.0 * mean(i);
    let n = state.len();
    1e-12
        + match statistic {
            Statistic::Projection(w) => {
                let sum: f64 = (0..n).map(|i| w[i].abs() as f64 * size(i)).sum();
                (n + 4) as f64 * EPS * sum
            }
            Statistic::Correlation(a, b) if matches!(family, Family::Gaussian(_)) => {
                8.0 * EPS * size(*a) * size(*b)
            }
            _ => 0.0,
        }
}

/// Every statistic of `observe` other than the energy (which the tests above cover), on
/// every device family of [`families`]: the per-draw series takes the device path (one
/// device call per draw, no state download) and equals, draw by draw, the host path
/// (`Statistic::value` of the downloaded states) on twin chains with the same seed, within
/// [`statistic_tolerance`]. Statistics a family refuses (e.g. `fraction_on` of real
/// units) are skipped; Potts chains take `magnetization` from counts per state and the
/// rest from one-hot linear forms.
#[test]
fn observe_statistics_on_the_device_equal_the_host_values() {
    let seed = test_seed("observe_statistics_device");
    let mut failed = Vec::new();
    for (family, k) in families(seed) {
        let plan = ChainPlan {
            samples: 3 * k,
            burn_in: 1,
            thin: 1,
            chains: k,
        };
        let draws = plan.per_chain();
        let mut chains = family.chains(k);
        let n = chains.units();
        let mut rng = RngStream::new(seed, 13);
        chains.draw_base(rng.next_key());
        chains.sweep(1.0, &mut rng);
        let mut first = vec![0.0f32; n * k];
        chains.read_states(&mut first).unwrap();
        let reference: Vec<f32> = first[..n].iter().rev().cloned().collect();
        let weights: Vec<f32> = (0..n).map(|i| ((i * 37 % 17) as f32 - 8.0) / 8.0).collect();
        let units = [1u32, n as u32 - 2];
        for name in [
            "fraction_on",
            "magnetization",
            "hamming_to",
            "projection",
            "correlation",
        ] {
            let Ok(stat) = Statistic::parse(name, &reference, &weights, &units, &*chains) else {
                assert!(matches!(family, Family::Gaussian(_)), "{name} refused");
                continue;
            };
            let run = |offer: bool| {
                let mut chains = family.chains(k);
                let mut probe = Probe::new(&mut *chains, offer);
                let mut rng = RngStream::new(seed, 14);
                let series =
                    statistic_series(&mut probe, &stat, &plan, &mut rng, &|| false, &mut |_| {})
                        .unwrap();
                let states = probe.states.take();
                (series, probe.device_calls, probe.state_reads.get(), states)
            };
            let what = format!("{} {name}", family.name());
            let (device, calls, reads, _) = run(true);
            assert_eq!((calls, reads), (draws, 0), "{what}: device path");
            let (host, calls, reads, states) = run(false);
            assert_eq!((calls, reads), (0, draws), "{what}: host path");
            let mut worst = (0, 0, 0.0f64);
            for c in 0..k {
                for d in 0..draws {
                    let state = &states[d][c * n..(c + 1) * n];
                    let tol = statistic_tolerance(&family, &stat, state);
                    let ratio = (device[c][d] - host[c][d]).abs() / tol;
                    if !(ratio <= worst.2) {
                        worst = (c, d, ratio);
                    }
                }
            }
            let (c, d, ratio) = worst;
            eprintln!(
                "{what}: worst error / tolerance {ratio:.3} (chain {c} draw {d}: device {}, host {})",
                device[c][d], host[c][d]
            );
            if !(ratio <= 1.0) {
                failed.push(what);
            }
        }
    }
    assert!(failed.is_empty(), "beyond tolerance: {failed:?}");
}
