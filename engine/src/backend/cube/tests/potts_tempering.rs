//! Potts sweeps and energies vs a CPU twin and vs exact marginals; replica swaps vs a twin.

use super::*;
use crate::backend::cube::device::DeviceArray;
use crate::backend::cube::{potts, tempering};

const HEAT_BATH: potts::SiteRule = potts::SiteRule::HeatBath;

/// Symmetric couplings with zero diagonal blocks, and fields.
fn random_potts(seed: u64, sites: usize, q: usize, scale: f32) -> (Vec<f32>, Vec<f32>) {
    let raw = random_vec(seed, 40, sites * q * sites * q, -scale, scale);
    let mut j = vec![0.0f32; raw.len()];
    for i in 0..sites {
        for a in 0..q {
            for k in 0..sites {
                for b in 0..q {
                    if i == k {
                        continue;
                    }
                    let (lo, hi) = if i < k {
                        ((i, a), (k, b))
                    } else {
                        ((k, b), (i, a))
                    };
                    let v = raw[((lo.0 * q + lo.1) * sites + hi.0) * q + hi.1];
                    j[((i * q + a) * sites + k) * q + b] = v;
                }
            }
        }
    }
    (j, random_vec(seed, 41, sites * q, -scale, scale))
}

fn energy64(s: &[u32], j: &[f32], h: &[f32], sites: usize, q: usize) -> f64 {
    let mut e = 0.0f64;
    for i in 0..sites {
        let si = s[i] as usize;
        e -= h[i * q + si] as f64;
        for k in i + 1..sites {
            e -= j[((i * q + si) * sites + k) * q + s[k] as usize] as f64;
        }
    }
    e
}

/// The sweep kernel's arithmetic in the same f32 order. Returns the number of near ties
/// (the uniform within 1e-5 relative of a cumulative boundary).
#[allow(clippy::too_many_arguments)]
fn sweep_twin(
    states: &mut [u32],
    j: &[f32],
    h: &[f32],
    betas: &[f32],
    key: RngKey,
    sites: usize,
    q: usize,
) -> usize {
    let mut ties = 0;
    for (chain, &beta) in betas.iter().enumerate() {
        let base = chain * sites;
        for i in 0..sites {
            let mut local = vec![0.0f32; q];
            for a in 0..q {
                let mut e = h[i * q + a];
                for k in 0..sites {
                    if k != i {
                        e += j[((i * q + a) * sites + k) * q + states[base + k] as usize];
                    }
                }
                local[a] = e;
            }
            let best = local.iter().cloned().fold(f32::MIN, f32::max);
            let w: Vec<f32> = local.iter().map(|e| (beta * (e - best)).exp()).collect();
            let total: f32 = w.iter().sum();
            let target = key.uniform((base + i) as u32) * total;
            let mut cumulative = 0.0f32;
            let mut chosen = q - 1;
            for (a, wa) in w.iter().enumerate() {
                cumulative += wa;
                if (target - cumulative).abs() < 1e-5 * total {
                    ties += 1;
                }
                if target < cumulative {
                    chosen = a;
                    break;
                }
            }
            states[base + i] = chosen as u32;
        }
    }
    ties
}

/// Three sweeps of 7 chains (L = 5, q = 3 and q = 21) with different betas: identical
/// states unless a near tie occurred (then reported and skipped), and energies within
/// 8 * L^2 ulps of the f64 energy's scale.
#[test]
fn potts_sweep_and_energy_match_cpu() {
    let client = client();
    let seed = test_seed("potts_sweep");
    for (sites, q) in [(5usize, 3usize), (6, 21)] {
        let (j, h) = random_potts(seed, sites, q, 0.8);
        let betas: Vec<f32> = (0..7).map(|c| 0.4 + 0.15 * c as f32).collect();
        let chains = betas.len();
        let mut want: Vec<u32> = random_vec(seed, 42, chains * sites, 0.0, q as f32)
            .into_iter()
            .map(|x| (x as u32).min(q as u32 - 1))
            .collect();
        let states = DeviceArray::upload(&client, &want);
        let (dj, dh, db) = (
            DeviceArray::upload(&client, &j),
            DeviceArray::upload(&client, &h),
            DeviceArray::upload(&client, &betas),
        );
        let keys: Vec<RngKey> = (0..3).map(|s| RngKey::new(seed, 43, s)).collect();
        let shape = (chains, sites, q);
        potts::sweep(
            &client, HEAT_BATH, &states, &dj, &dh, &db, &keys, shape, 1.0,
        );
        let ties: usize = keys
            .iter()
            .map(|&k| sweep_twin(&mut want, &j, &h, &betas, k, sites, q))
            .sum();
        let got = states.download(&client).unwrap();
        if ties > 0 {
            eprintln!("potts q={q}: {ties} near ties, comparison skipped");
            assert!(ties <= 2);
            continue;
        }
        assert_eq!(got, want, "potts q={q} states");
        let energy = DeviceArray::<f32>::zeros(&client, chains);
        potts::energies(&client, &states, &dj, &dh, &energy, chains, sites, q);
        let e_want: Vec<f64> = (0..chains)
            .map(|c| energy64(&want[c * sites..(c + 1) * sites], &j, &h, sites, q))
            .collect();
        let tol = 8.0 * (sites * sites) as f64 * f32::EPSILON as f64;
        assert_within(
            "potts energies",
            &energy.download(&client).unwrap(),
            &e_want,
            |i| tol * (1.0 + e_want[i].abs()),
        );
    }
}

/// Single-site marginals of a 5-site q = 3 model from 1024 device chains (100 sweeps burn-in,
/// 200 measured) vs exact enumeration of 3^5 states; 5 standard errors of the mean of the
/// independent per-chain averages.
#[test]
fn potts_chains_match_exact_marginals() {
    let client = client();
    let seed = test_seed("potts_exact");
    let (sites, q, chains) = (5usize, 3usize, 1024usize);
    let (j, h) = random_potts(seed, sites, q, 0.7);
    let mut exact = vec![0.0f64; sites * q];
    let mut z = 0.0;
    for code in 0..q.pow(sites as u32) {
        let s: Vec<u32> = (0..sites)
            .map(|i| ((code / q.pow(i as u32)) % q) as u32)
            .collect();
        let w = (-energy64(&s, &j, &h, sites, q)).exp();
        z += w;
        for i in 0..sites {
            exact[i * q + s[i] as usize] += w;
        }
    }
    exact.iter_mut().for_each(|p| *p /= z);
    let states = DeviceArray::upload(&client, &vec![0u32; chains * sites]);
    let (dj, dh) = (
        DeviceArray::upload(&client, &j),
        DeviceArray::upload(&client, &h),
    );
    let ones = DeviceArray::upload(&client, &vec![1.0f32; chains]);
    let burn: Vec<RngKey> = (0..100).map(|s| RngKey::new(seed, 44, s)).collect();
    let shape = (chains, sites, q);
    potts::sweep(
        &client, HEAT_BATH, &states, &dj, &dh, &ones, &burn, shape, 1.0,
    );
    let mut counts = vec![0.0f64; chains * sites * q];
    let measured = 200u64;
    for s in 0..measured {
        let key = [RngKey::new(seed, 44, 100 + s)];
        potts::sweep(
            &client, HEAT_BATH, &states, &dj, &dh, &ones, &key, shape, 1.0,
        );
        let st = states.download(&client).unwrap();
        for c in 0..chains {
            for i in 0..sites {
                counts[(c * sites + i) * q + st[c * sites + i] as usize] += 1.0;
            }
        }
    }
    for i in 0..sites {
        for a in 0..q {
            let avgs: Vec<f64> = (0..chains)
                .map(|c| counts[(c * sites + i) * q + a] / measured as f64)
                .collect();
            let mean = avgs.iter().sum::<f64>() / chains as f64;
            let var = avgs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (chains - 1) as f64;
            let se = (var / chains as f64).sqrt();
            assert!(
                (mean - exact[i * q + a]).abs() < 5.0 * se + 1e-9,
                "P(s_{i} = {a}): {mean} vs {} (se {se})",
                exact[i * q + a]
            );
        }
    }
}

/// Two swap passes over 3 ladders of 5 rungs vs a twin of the same f32 arithmetic.
#[test]
fn tempering_swaps_match_cpu() {
    let client = client();
    let seed = test_seed("tempering");
    let (ladders, rungs) = (3usize, 5usize);
    let chains = ladders * rungs;
    let ladder_betas: Vec<f32> = (0..rungs).map(|r| 1.0 - 0.2 * r as f32).collect();
    let energy = random_vec(seed, 50, chains, -3.0, 3.0);
    // Chains placed on rungs in a scrambled order.
    let mut rung_chain: Vec<u32> = (0..chains as u32)
        .map(|c| (c * 7) % chains as u32)
        .collect();
    let mut betas = vec![0.0f32; chains];
    for l in 0..ladders {
        for r in 0..rungs {
            betas[rung_chain[l * rungs + r] as usize] = ladder_betas[r];
        }
    }
    let mut accepted = vec![0u32; ladders * (rungs - 1)];
    let (de, dl) = (
        DeviceArray::upload(&client, &energy),
        DeviceArray::upload(&client, &ladder_betas),
    );
    let (drc, db, da) = (
        DeviceArray::upload(&client, &rung_chain),
        DeviceArray::upload(&client, &betas),
        DeviceArray::upload(&client, &accepted),
    );
    for parity in [0u32, 1] {
        let key = RngKey::new(seed, 51, parity as u64);
        tempering::swap(
            &client, &de, &dl, &drc, &db, &da, key, ladders, rungs, parity,
        );
        for l in 0..ladders {
            let mut r = parity as usize;
            while r + 1 < rungs {
                let at = l * rungs + r;
                let (a, b) = (rung_chain[at] as usize, rung_chain[at + 1] as usize);
                let ratio =
                    ((ladder_betas[r] - ladder_betas[r + 1]) * (energy[a] - energy[b])).exp();
                let u = key.uniform(at as u32);
                assert!((u - ratio).abs() > 1e-6, "near tie: rerun");
                if u < ratio {
                    rung_chain.swap(at, at + 1);
                    betas[b] = ladder_betas[r];
                    betas[a] = ladder_betas[r + 1];
                    accepted[l * (rungs - 1) + r] += 1;
                }
                r += 2;
            }
        }
    }
    assert_eq!(drc.download(&client).unwrap(), rung_chain);
    assert_eq!(db.download(&client).unwrap(), betas);
    assert_eq!(da.download(&client).unwrap(), accepted);
}
