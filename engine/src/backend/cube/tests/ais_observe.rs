//! RBM block-Gibbs chains and AIS vs exact enumeration, one AIS transition vs a twin, the
//! log-sum-exp reduction, and the observe statistics.

use super::*;
use crate::backend::cube::ais;
use crate::backend::cube::device::DeviceArray;
use crate::backend::cube::matmul::{matmul, Layout, Product};
use crate::backend::cube::observe;
use crate::backend::cube::rbm;
use cubecl::prelude::ComputeClient;

fn softplus64(x: f64) -> f64 {
    x.max(0.0) + (-x.abs()).exp().ln_1p()
}

/// A small Bernoulli RBM on the device with chains `v` [chains, V], `h` [chains, H].
struct SmallRbm {
    visible: usize,
    hidden: usize,
    chains: usize,
    w: DeviceArray<f32>,
    b: DeviceArray<f32>,
    c: DeviceArray<f32>,
    v: DeviceArray<f32>,
    h: DeviceArray<f32>,
    pre_h: DeviceArray<f32>,
    pre_v: DeviceArray<f32>,
    prob_h: DeviceArray<f32>,
    prob_v: DeviceArray<f32>,
    ones: DeviceArray<f32>,
}

impl SmallRbm {
    #[allow(clippy::too_many_arguments)]
    fn new(
        client: &ComputeClient<TestRuntime>,
        w: &[f32],
        b: &[f32],
        c: &[f32],
        v: &[f32],
        chains: usize,
    ) -> Self {
        let (visible, hidden) = (b.len(), c.len());
        let z = |n| DeviceArray::<f32>::zeros(client, n);
        SmallRbm {
            visible,
            hidden,
            chains,
            w: DeviceArray::upload(client, w),
            b: DeviceArray::upload(client, b),
            c: DeviceArray::upload(client, c),
            v: DeviceArray::upload(client, v),
            h: z(chains * hidden),
            pre_h: z(chains * hidden),
            pre_v: z(chains * visible),
            prob_h: z(chains * hidden),
            prob_v: z(chains * visible),
            ones: DeviceArray::upload(client, &vec![1.0; chains]),
        }
    }

    fn hidden_pre(&self, client: &ComputeClient<TestRuntime>) {
        let p = Product {
            m: self.chains,
            n: self.hidden,
            k: self.visible,
            layout: Layout::Plain,
            alpha: 1.0,
            beta: 0.0,
        };
        matmul(client, p, &self.v, &self.w, Some(&self.c), &self.pre_h).unwrap();
    }

    fn visible_pre(&self, client: &ComputeClient<TestRuntime>, bias: &DeviceArray<f32>) {
        let p = Product {
            m: self.chains,
            n: self.visible,
            k: self.hidden,
            layout: Layout::TransposedB,
            alpha: 1.0,
            beta: 0.0,
        };
        matmul(client, p, &self.h, &self.w, Some(bias), &self.pre_v).unwrap();
    }

    /// One block-Gibbs sweep h ~ p(h|v), v ~ p(v|h).
    fn gibbs(&self, client: &ComputeClient<TestRuntime>, keys: [RngKey; 2]) {
        self.hidden_pre(client);
        rbm::sample_bernoulli(
            client,
            &self.pre_h,
            &self.ones,
            &self.c,
            &self.prob_h,
            &self.h,
            keys[0],
            self.hidden,
            1.0,
            0.0,
            false,
            true,
        );
        self.visible_pre(client, &self.b);
        rbm::sample_bernoulli(
            client,
            &self.pre_v,
            &self.ones,
            &self.b,
            &self.prob_v,
            &self.v,
            keys[1],
            self.visible,
            1.0,
            0.0,
            false,
            true,
        );
    }
}

/// Exact log Z and visible marginals of a small RBM by enumerating the hidden layer.
fn exact_rbm(w: &[f32], b: &[f32], c: &[f32]) -> (f64, Vec<f64>) {
    let (visible, hidden) = (b.len(), c.len());
    let mut logs = Vec::new();
    let mut marg_terms = Vec::new();
    for code in 0u32..(1 << hidden) {
        let h: Vec<f64> = (0..hidden).map(|j| (code >> j & 1) as f64).collect();
        let mut log = (0..hidden).map(|j| c[j] as f64 * h[j]).sum::<f64>();
        let mut probs = Vec::with_capacity(visible);
        for i in 0..visible {
            let x = b[i] as f64
                + (0..hidden)
                    .map(|j| w[i * hidden + j] as f64 * h[j])
                    .sum::<f64>();
            log += softplus64(x);
            probs.push(1.0 / (1.0 + (-x).exp()));
        }
        logs.push(log);
        marg_terms.push(probs);
    }
    let max = logs.iter().cloned().fold(f64::MIN, f64::max);
    let z: f64 = logs.iter().map(|l| (l - max).exp()).sum();
    let marginals = (0..visible)
        .map(|i| {
            logs.iter()
                .zip(&marg_terms)
                .map(|(l, p)| (l - max).exp() * p[i])
                .sum::<f64>()
                / z
        })
        .collect();
    (max + z.ln(), marginals)
}

/// Visible marginals of an 8 x 5 RBM from 1024 device chains (50 sweeps burn-in, 200
/// measured) vs exact enumeration; 5 standard errors of the mean of the independent
/// per-chain averages.
#[test]
fn rbm_gibbs_chains_match_exact_marginals() {
    let client = client();
    let seed = test_seed("rbm_exact");
    let (visible, hidden, chains) = (8usize, 5usize, 1024usize);
    let w = random_vec(seed, 60, visible * hidden, -1.5, 1.5);
    let b = random_vec(seed, 61, visible, -1.0, 1.0);
    let c = random_vec(seed, 62, hidden, -1.0, 1.0);
    let rbm = SmallRbm::new(
        &client,
        &w,
        &b,
        &c,
        &random_bits(seed, 63, chains * visible),
        chains,
    );
    let (burn, measure) = (50u64, 200u64);
    let mut sums = vec![0.0f64; chains * visible];
    for s in 0..burn + measure {
        rbm.gibbs(
            &client,
            [RngKey::new(seed, 64, s), RngKey::new(seed, 65, s)],
        );
        if s >= burn {
            // Rao-Blackwellised: the conditional probabilities p(v | h) of the last step.
            for (acc, p) in sums.iter_mut().zip(rbm.prob_v.download(&client).unwrap()) {
                *acc += p as f64;
            }
        }
    }
    let (_, exact) = exact_rbm(&w, &b, &c);
    for i in 0..visible {
        let avgs: Vec<f64> = (0..chains)
            .map(|ch| sums[ch * visible + i] / measure as f64)
            .collect();
        let mean = avgs.iter().sum::<f64>() / chains as f64;
        let var = avgs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (chains - 1) as f64;
        let se = (var / chains as f64).sqrt();
        assert!(
            (mean - exact[i]).abs() < 5.0 * se + 1e-9,
            "P(v_{i}) {mean} vs {} (se {se})",
            exact[i]
        );
    }
}

/// One AIS transition vs an f64 twin: log-weights within the product bound, hidden and
/// visible samples identical except at near ties (counted, at most 2).
#[allow(clippy::too_many_arguments)]
fn ais_run(
    client: &ComputeClient<TestRuntime>,
    rbm: &SmallRbm,
    base_bias: &DeviceArray<f32>,
    bias_delta: &DeviceArray<f32>,
    terms: &DeviceArray<f32>,
    log_w: &DeviceArray<f32>,
    carry: &DeviceArray<f32>,
    keys: [RngKey; 2],
    beta_old: f32,
    beta_new: f32,
) {
    rbm.hidden_pre(client);
    ais::ais_hidden(
        client, &rbm.pre_h, terms, &rbm.h, keys[0], beta_new, beta_old,
    );
    ais::ais_weight(
        client,
        terms,
        &rbm.v,
        bias_delta,
        log_w,
        carry,
        rbm.chains,
        rbm.hidden,
        rbm.visible,
        beta_new - beta_old,
    );
    rbm.visible_pre(client, &rbm.b);
    rbm::sample_bernoulli(
        client,
        &rbm.pre_v,
        &rbm.ones,
        base_bias,
        &rbm.prob_v,
        &rbm.v,
        keys[1],
        rbm.visible,
        beta_new,
        1.0 - beta_new,
        false,
        true,
    );
}

/// AIS with the base-rate model (b_A = data-like biases) on a 10 x 6 RBM: 513 chains,
/// 1000 linear temperatures. Exact log Z by enumeration; tolerance 4 standard errors
/// (delta method, as in the lattice test) + 0.02 for the bias of the log of a mean.
/// The first transition is also checked against an f64 twin.
#[test]
fn rbm_ais_matches_exact_log_z() {
    let client = client();
    let seed = test_seed("rbm_ais");
    let (visible, hidden, chains) = (10usize, 6usize, 513usize);
    let w = random_vec(seed, 70, visible * hidden, -1.0, 1.0);
    let b = random_vec(seed, 71, visible, -1.0, 1.0);
    let c = random_vec(seed, 72, hidden, -1.0, 1.0);
    let base = random_vec(seed, 73, visible, -0.5, 0.5);
    // Exact samples of the base model: v_i ~ Bernoulli(sigmoid(base_i)).
    let key0 = RngKey::new(seed, 74, 0);
    let v0: Vec<f32> = (0..chains * visible)
        .map(|i| {
            if (key0.uniform(i as u32) as f64) < 1.0 / (1.0 + (-(base[i % visible] as f64)).exp()) {
                1.0
            } else {
                0.0
            }
        })
        .collect();
    let rbm = SmallRbm::new(&client, &w, &b, &c, &v0, chains);
    let base_bias = DeviceArray::upload(&client, &base);
    let delta: Vec<f32> = (0..visible).map(|i| b[i] - base[i]).collect();
    let bias_delta = DeviceArray::upload(&client, &delta);
    let terms = DeviceArray::<f32>::zeros(&client, chains * hidden);
    let log_w = DeviceArray::<f32>::zeros(&client, chains);
    let carry = DeviceArray::<f32>::zeros(&client, chains);
    let steps = 1000u32;
    let beta = |k: u32| k as f32 / steps as f32;

    // First transition against the twin.
    let keys = [RngKey::new(seed, 75, 1), RngKey::new(seed, 76, 1)];
    ais_run(
        &client,
        &rbm,
        &base_bias,
        &bias_delta,
        &terms,
        &log_w,
        &carry,
        keys,
        beta(0),
        beta(1),
    );
    let (b1, lw) = (beta(1) as f64, log_w.download(&client).unwrap());
    let h_got = rbm.h.download(&client).unwrap();
    let mut ties = 0;
    for ch in 0..chains {
        let v = &v0[ch * visible..(ch + 1) * visible];
        let mut inc = b1
            * (0..visible)
                .map(|i| v[i] as f64 * delta[i] as f64)
                .sum::<f64>();
        for j in 0..hidden {
            let x = c[j] as f64
                + (0..visible)
                    .map(|i| v[i] as f64 * w[i * hidden + j] as f64)
                    .sum::<f64>();
            inc += softplus64(b1 * x) - softplus64(0.0);
            let p = 1.0 / (1.0 + (-b1 * x).exp());
            let u = keys[0].uniform((ch * hidden + j) as u32) as f64;
            if (h_got[ch * hidden + j] == 1.0) != (u < p) {
                assert!((u - p).abs() < 1e-5, "hidden sample off a tie");
                ties += 1;
            }
        }
        assert!(
            (lw[ch] as f64 - inc).abs() < 1e-5 * (1.0 + inc.abs()),
            "log-weight {ch}: {} vs {inc}",
            lw[ch]
        );
    }
    assert!(ties <= 2);

    for k in 2..=steps {
        let keys = [
            RngKey::new(seed, 75, k as u64),
            RngKey::new(seed, 76, k as u64),
        ];
        ais_run(
            &client,
            &rbm,
            &base_bias,
            &bias_delta,
            &terms,
            &log_w,
            &carry,
            keys,
            beta(k - 1),
            beta(k),
        );
    }
    let (lse, ess) = ais::logsumexp(&client, &log_w).unwrap();
    let log_z_base =
        hidden as f64 * 2f64.ln() + base.iter().map(|&x| softplus64(x as f64)).sum::<f64>();
    let estimate = log_z_base + lse - (chains as f64).ln();
    let (exact, _) = exact_rbm(&w, &b, &c);
    let n = chains as f64;
    let se = ((n / ess - 1.0) / n).sqrt();
    eprintln!("rbm AIS: {estimate:.4} exact {exact:.4} se {se:.4} ess {ess:.1}");
    assert!(
        (estimate - exact).abs() < 4.0 * se + 0.02,
        "{estimate} vs {exact}"
    );
}

/// Log-sum-exp of 1001 values spread over [-60, 40] vs f64; ESS vs f64.
#[test]
fn logsumexp_matches_f64() {
    let client = client();
    let seed = test_seed("logsumexp");
    let x = random_vec(seed, 80, 1001, -60.0, 40.0);
    let (lse, ess) = ais::logsumexp(&client, &DeviceArray::upload(&client, &x)).unwrap();
    let max = x.iter().cloned().fold(f32::MIN, f32::max) as f64;
    let s1: f64 = x.iter().map(|&v| (v as f64 - max).exp()).sum();
    let s2: f64 = x.iter().map(|&v| (2.0 * (v as f64 - max)).exp()).sum();
    // Each exp within a few ulps, sums of <= 1001 positive terms: 1e-5 relative.
    assert!(
        (lse - (max + s1.ln())).abs() < 1e-5,
        "{lse} vs {}",
        max + s1.ln()
    );
    assert!((ess - s1 * s1 / s2).abs() < 1e-4 * ess);
}

/// More chains than one grid axis holds (65,535 cubes; observe allows 100,000 chains):
/// every row gets its own value, categorical (one-hot weights) and numeric alike. Sums of
/// at most 7 small integers are exact in f32.
#[test]
fn linear_statistics_cover_more_rows_than_one_grid_axis() {
    let client = client();
    let seed = test_seed("linear_rows");
    let (rows, width, q) = (65_536 + 3001, 7usize, 3usize);
    let bits = random_bits(seed, 93, rows * width);
    let states: Vec<u32> = random_vec(seed, 94, rows * width, 0.0, q as f32)
        .iter()
        .map(|&u| (u as u32).min(q as u32 - 1))
        .collect();
    let weights: Vec<f32> = (0..width).map(|i| i as f32 - 3.0).collect();
    let one_hot: Vec<f32> = (0..width * q).map(|k| (k % q) as f32).collect();
    let numeric = observe::per_chain_linear(
        &client,
        &DeviceArray::upload(&client, &bits),
        (rows, width),
        &weights,
        0,
        0.5,
        1.0,
    )
    .unwrap();
    let categorical = observe::per_chain_linear(
        &client,
        &DeviceArray::upload(&client, &states),
        (rows, width),
        &one_hot,
        q,
        1.0,
        0.0,
    )
    .unwrap();
    for r in 0..rows {
        let row = r * width..(r + 1) * width;
        let want: f64 = bits[row.clone()]
            .iter()
            .zip(&weights)
            .map(|(&x, &w)| (x * w) as f64)
            .sum();
        assert_eq!(numeric[r], 0.5 * want + 1.0, "numeric row {r}");
        let want: u32 = states[row].iter().sum();
        assert_eq!(categorical[r], want as f64, "categorical row {r}");
    }
}

/// Linear statistics (fraction on; Hamming distance to a reference) per row, and a
/// histogram with values outside the range clamped into the end bins.
#[test]
fn observe_statistics_match_cpu() {
    let client = client();
    let seed = test_seed("observe");
    let (rows, width) = (300usize, 83usize);
    let x = random_bits(seed, 90, rows * width);
    let reference = random_bits(seed, 91, width);
    let dx = DeviceArray::upload(&client, &x);
    let out = DeviceArray::<f32>::zeros(&client, rows);
    // Hamming: sum |x - r| = sum x (1 - 2r) + sum r.
    let weights: Vec<f32> = reference.iter().map(|r| 1.0 - 2.0 * r).collect();
    let offset = reference.iter().sum::<f32>() / width as f32;
    observe::linear_statistic(
        &client,
        &dx,
        &DeviceArray::upload(&client, &weights),
        &out,
        (rows, width),
        0,
        1.0 / width as f32,
        offset,
    );
    let got = out.download(&client).unwrap();
    let want: Vec<f64> = (0..rows)
        .map(|r| {
            (0..width)
                .map(|i| (x[r * width + i] - reference[i]).abs() as f64)
                .sum::<f64>()
                / width as f64
        })
        .collect();
    assert_within("hamming", &got, &want, |_| 1e-5);

    let values = random_vec(seed, 92, 1003, -0.2, 1.2);
    let bins = 13usize;
    let counts = DeviceArray::<u32>::zeros(&client, bins);
    observe::histogram(
        &client,
        &DeviceArray::upload(&client, &values),
        &counts,
        0.0,
        1.0,
    );
    let mut want = vec![0u32; bins];
    for &v in &values {
        let pos = (v - 0.0) / (1.0 - 0.0) * bins as f32;
        let bin = if pos >= bins as f32 {
            bins - 1
        } else if pos > 0.0 {
            pos as usize
        } else {
            0
        };
        want[bin] += 1;
    }
    assert_eq!(counts.download(&client).unwrap(), want);
}
