//! Lattice Ising kernels: checkerboard sweeps and sums vs a CPU twin, equilibrium
//! averages vs exact enumeration of a 4 x 4 torus, and AIS log Z vs the exact value.

use super::*;
use crate::backend::cube::ais;
use crate::backend::cube::device::DeviceArray;
use crate::backend::cube::lattice::{self, SpinRule};

fn random_spins(seed: u64, stream: u32, len: usize) -> Vec<i32> {
    random_bits(seed, stream, len)
        .into_iter()
        .map(|b| if b > 0.5 { 1 } else { -1 })
        .collect()
}

/// Two sweeps of each rule on 3 chains of a 6 x 6 torus and 1 chain of 10 x 10, with
/// different per-chain betas: identical spins (a near tie, expected ~1e-4 times per run,
/// makes a run inconclusive and is reported, not failed), then exact sums.
#[test]
fn checkerboard_and_sums_match_cpu() {
    let client = client();
    let seed = test_seed("checkerboard");
    for (case, (size, betas)) in [(6usize, vec![0.3f32, 0.44, 0.7]), (10, vec![0.5])]
        .into_iter()
        .enumerate()
    {
        let chains = betas.len();
        let (coupling, field) = (1.0f32, 0.15f32);
        for rule in [SpinRule::HeatBath, SpinRule::Metropolis] {
            let mut want = random_spins(seed, case as u32, chains * size * size);
            let spins = DeviceArray::upload(&client, &want);
            let dbetas = DeviceArray::upload(&client, &betas);
            let mut ties = 0;
            for sweep in 0..2u64 {
                let keys = [
                    RngKey::new(seed, 20, 2 * sweep),
                    RngKey::new(seed, 20, 2 * sweep + 1),
                ];
                lattice::sweep(
                    &client, &spins, &dbetas, keys, chains, size, coupling, field, 1.0, rule,
                );
                ties += lattice::sweep_reference(
                    &mut want, &betas, keys, size, coupling, field, 1.0, rule,
                );
            }
            let got = spins.download(&client).unwrap();
            if ties > 0 {
                eprintln!("{rule:?} L={size}: {ties} near ties, comparison skipped");
                assert!(ties <= 2, "too many near ties: {ties}");
                continue;
            }
            assert_eq!(got, want, "{rule:?} L={size}: spins after two sweeps");

            let bonds = DeviceArray::<i32>::zeros(&client, chains);
            let magnet = DeviceArray::<i32>::zeros(&client, chains);
            let log_w = DeviceArray::<f32>::upload(&client, &vec![0.5; chains]);
            let carry = DeviceArray::<f32>::zeros(&client, chains);
            lattice::sums(
                &client, &spins, &bonds, &magnet, &log_w, &carry, chains, size, coupling, field,
                0.01,
            );
            let (b, m) = (
                bonds.download(&client).unwrap(),
                magnet.download(&client).unwrap(),
            );
            let lw = log_w.download(&client).unwrap();
            for c in 0..chains {
                let s = &want[c * size * size..(c + 1) * size * size];
                let (mut wb, mut wm) = (0, 0);
                for r in 0..size {
                    for col in 0..size {
                        let x = s[r * size + col];
                        wb +=
                            x * (s[r * size + (col + 1) % size] + s[((r + 1) % size) * size + col]);
                        wm += x;
                    }
                }
                assert_eq!((b[c], m[c]), (wb, wm), "sums of chain {c}");
                let lw_want = 0.5 + 0.01 * (coupling as f64 * wb as f64 + field as f64 * wm as f64);
                assert!(
                    (lw[c] as f64 - lw_want).abs() < 1e-5,
                    "log-weight {c}: {} vs {lw_want}",
                    lw[c]
                );
            }
        }
    }
}

/// Exact averages of a 4 x 4 periodic lattice by enumerating 2^16 states:
/// (log Z, <bonds>/32, <magnetization>/16) at inverse temperature beta.
pub(super) fn exact_4x4(beta: f64, coupling: f64, field: f64) -> (f64, f64, f64) {
    let mut terms = Vec::with_capacity(1 << 16);
    for state in 0u32..(1 << 16) {
        let s = |r: usize, c: usize| {
            if state >> ((r % 4) * 4 + c % 4) & 1 == 1 {
                1.0
            } else {
                -1.0
            }
        };
        let (mut bonds, mut magnet) = (0.0, 0.0);
        for r in 0..4 {
            for c in 0..4 {
                bonds += s(r, c) * (s(r, c + 1) + s(r + 1, c));
                magnet += s(r, c);
            }
        }
        terms.push((beta * (coupling * bonds + field * magnet), bonds, magnet));
    }
    let max = terms.iter().map(|t| t.0).fold(f64::MIN, f64::max);
    let z: f64 = terms.iter().map(|t| (t.0 - max).exp()).sum();
    let eb: f64 = terms.iter().map(|t| (t.0 - max).exp() * t.1).sum::<f64>() / z;
    let em: f64 = terms.iter().map(|t| (t.0 - max).exp() * t.2).sum::<f64>() / z;
    (max + z.ln(), eb / 32.0, em / 16.0)
}

/// Heat-bath chains on a 4 x 4 torus (beta 0.35, field 0.1) reproduce the exact bond and
/// magnetization averages. 512 independent chains, each averaged over 300 sweeps after
/// 100 of burn-in; the standard error is that of the mean of the 512 chain averages
/// (independent, so autocorrelation is accounted for). Tolerance: 5 standard errors.
#[test]
fn lattice_chains_match_exact_enumeration() {
    let client = client();
    let seed = test_seed("lattice_exact");
    let (size, chains, beta, coupling, field) = (4usize, 512usize, 0.35f32, 1.0f32, 0.1f32);
    let spins = DeviceArray::upload(&client, &random_spins(seed, 0, chains * size * size));
    let betas = DeviceArray::upload(&client, &vec![beta; chains]);
    let bonds = DeviceArray::<i32>::zeros(&client, chains);
    let magnet = DeviceArray::<i32>::zeros(&client, chains);
    let (lw, carry) = (
        DeviceArray::<f32>::zeros(&client, chains),
        DeviceArray::<f32>::zeros(&client, chains),
    );
    let (mut sum_b, mut sum_m) = (vec![0.0f64; chains], vec![0.0f64; chains]);
    let (burn, measure) = (100u64, 300u64);
    for sweep in 0..burn + measure {
        let keys = [
            RngKey::new(seed, 0, 2 * sweep),
            RngKey::new(seed, 0, 2 * sweep + 1),
        ];
        lattice::sweep(
            &client,
            &spins,
            &betas,
            keys,
            chains,
            size,
            coupling,
            field,
            1.0,
            SpinRule::HeatBath,
        );
        if sweep >= burn {
            lattice::sums(
                &client, &spins, &bonds, &magnet, &lw, &carry, chains, size, coupling, field, 0.0,
            );
            let (b, m) = (
                bonds.download(&client).unwrap(),
                magnet.download(&client).unwrap(),
            );
            for c in 0..chains {
                sum_b[c] += b[c] as f64 / 32.0;
                sum_m[c] += m[c] as f64 / 16.0;
            }
        }
    }
    let (_, exact_b, exact_m) = exact_4x4(beta as f64, coupling as f64, field as f64);
    for (what, sums, exact) in [
        ("bonds", &sum_b, exact_b),
        ("magnetization", &sum_m, exact_m),
    ] {
        let avgs: Vec<f64> = sums.iter().map(|s| s / measure as f64).collect();
        let mean = avgs.iter().sum::<f64>() / chains as f64;
        let var = avgs.iter().map(|a| (a - mean).powi(2)).sum::<f64>() / (chains - 1) as f64;
        let se = (var / chains as f64).sqrt();
        eprintln!("{what}: chains {mean:.5} exact {exact:.5} se {se:.5}");
        assert!(
            (mean - exact).abs() < 5.0 * se + 1e-9,
            "{what}: {mean} vs exact {exact} (se {se})"
        );
    }
}

/// AIS from beta = 0 (uniform spins, log Z_0 = 16 ln 2) to beta = 0.4 on the 4 x 4 torus
/// with 400 linear steps and 1024 chains: the estimate agrees with exact log Z within 4
/// of its standard errors (delta method: se = sqrt(var(w)) / (sqrt(n) mean(w)) =
/// sqrt((n / ESS - 1) / n)) plus 0.01 for the O(var) downward bias of a log of a mean.
#[test]
fn lattice_ais_matches_exact_log_z() {
    let client = client();
    let seed = test_seed("lattice_ais");
    let (size, chains, coupling, field, target) = (4usize, 1024usize, 1.0f32, 0.05f32, 0.4f64);
    let steps = 400u64;
    let spins = DeviceArray::upload(&client, &random_spins(seed, 1, chains * size * size));
    let ones = DeviceArray::upload(&client, &vec![1.0f32; chains]);
    let bonds = DeviceArray::<i32>::zeros(&client, chains);
    let magnet = DeviceArray::<i32>::zeros(&client, chains);
    let (lw, carry) = (
        DeviceArray::<f32>::zeros(&client, chains),
        DeviceArray::<f32>::zeros(&client, chains),
    );
    for k in 1..=steps {
        let (b_old, b_new) = (
            target * (k - 1) as f64 / steps as f64,
            target * k as f64 / steps as f64,
        );
        lattice::sums(
            &client,
            &spins,
            &bonds,
            &magnet,
            &lw,
            &carry,
            chains,
            size,
            coupling,
            field,
            (b_new - b_old) as f32,
        );
        let keys = [RngKey::new(seed, 5, 2 * k), RngKey::new(seed, 5, 2 * k + 1)];
        lattice::sweep(
            &client,
            &spins,
            &ones,
            keys,
            chains,
            size,
            coupling,
            field,
            b_new as f32,
            SpinRule::HeatBath,
        );
    }
    let (lse, ess) = ais::logsumexp(&client, &lw).unwrap();
    let estimate = 16.0 * 2f64.ln() + lse - (chains as f64).ln();
    let (exact, _, _) = exact_4x4(target, coupling as f64, field as f64);
    let n = chains as f64;
    let se = ((n / ess - 1.0) / n).sqrt();
    eprintln!("lattice AIS: {estimate:.4} exact {exact:.4} se {se:.4} ess {ess:.1}");
    assert!(
        (estimate - exact).abs() < 4.0 * se + 0.01,
        "{estimate} vs {exact}"
    );
}
