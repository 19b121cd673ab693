//! Dense Potts models (L sites, q <= 32 states, couplings J [L, q, L, q], fields h [L, q]):
//! site-sequential heat-bath sweeps, one unit per chain, so each chain is updated exactly as
//! a sequential Gibbs sampler would (detailed balance holds site by site) while all chains
//! run in parallel; and per-chain energies for parallel tempering and observe.
//!
//! States are u32 in [0, q), chain-major `[chain, site]`. Chain c samples exp(-beta_scale * betas[c] E),
//! E(s) = -sum_i h_i(s_i) - sum_{i<j} J_ij(s_i, s_j). Random numbers: one key per sweep,
//! element `chain * L + site`; the new state is the smallest a with
//! uniform * Z < sum_{b<=a} exp(beta (e_b - e_max)), e_a = h_i(a) + sum_{j != i} J_ij(a, s_j).

use cubecl::prelude::*;

use super::device::{cube_dim, cubes_for, linear_pos, DeviceArray};
use super::philox::{key_launch, philox_words, uniform, uniform_from_bits, PhiloxKey};
use crate::rng::RngKey;

/// Largest alphabet the sweep kernel holds in registers.
pub const MAX_STATES: usize = crate::potts::sampler::DEVICE_MAX_STATES;

#[cube(launch)]
#[allow(clippy::too_many_arguments)]
pub fn potts_sweep_kernel(
    states: &mut Array<u32>,
    coupling: &Array<f32>,
    field: &Array<f32>,
    betas: &Array<f32>,
    key: PhiloxKey,
    chains: u32,
    sites: u32,
    q: u32,
    beta_scale: f32,
) {
    let chain = linear_pos();
    if chain < chains {
        let mut local = Array::<f32>::new(MAX_STATES);
        let beta = beta_scale * betas[chain as usize];
        let base = chain * sites;
        for i in 0..sites {
            let mut best = f32::new(-3.402_823_5e38);
            for a in 0..q {
                let mut e = field[(i * q + a) as usize];
                let row = (i * q + a) * sites;
                for j in 0..sites {
                    if j != i {
                        let sj = states[(base + j) as usize];
                        e += coupling[((row + j) * q + sj) as usize];
                    }
                }
                local[a as usize] = e;
                best = f32::max(best, e);
            }
            let mut total = 0.0f32;
            for a in 0..q {
                let w = f32::exp(beta * (local[a as usize] - best));
                local[a as usize] = w;
                total += w;
            }
            let target = uniform(&key, base + i) * total;
            let mut cumulative = 0.0f32;
            let mut chosen = q - 1;
            let mut found = false;
            for a in 0..q {
                cumulative += local[a as usize];
                if !found && target < cumulative {
                    chosen = a;
                    found = true;
                }
            }
            states[(base + i) as usize] = chosen;
        }
    }
}

/// The heat-bath sweep with the fields and the couplings scaled apart: site i of chain c
/// takes state a with probability ∝ exp(field_scale h_i(a) + coupling_scale betas[c]
/// sum_{j != i} J_ij(a, s_j)). This is the AIS path of the estimators (fields at full
/// strength, couplings annealed); [`potts_sweep_kernel`] is the tempered one
/// (both scaled by beta). Same random-number convention.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
pub fn potts_sweep_scaled_kernel(
    states: &mut Array<u32>,
    coupling: &Array<f32>,
    field: &Array<f32>,
    betas: &Array<f32>,
    key: PhiloxKey,
    chains: u32,
    sites: u32,
    q: u32,
    coupling_scale: f32,
    field_scale: f32,
) {
    let chain = linear_pos();
    if chain < chains {
        let mut local = Array::<f32>::new(MAX_STATES);
        let beta = coupling_scale * betas[chain as usize];
        let base = chain * sites;
        for i in 0..sites {
            let mut best = f32::new(-3.402_823_5e38);
            for a in 0..q {
                let mut sum = 0.0f32;
                let row = (i * q + a) * sites;
                for j in 0..sites {
                    if j != i {
                        let sj = states[(base + j) as usize];
                        sum += coupling[((row + j) * q + sj) as usize];
                    }
                }
                let e = field_scale * field[(i * q + a) as usize] + beta * sum;
                local[a as usize] = e;
                best = f32::max(best, e);
            }
            let mut total = 0.0f32;
            for a in 0..q {
                let w = f32::exp(local[a as usize] - best);
                local[a as usize] = w;
                total += w;
            }
            let target = uniform(&key, base + i) * total;
            let mut cumulative = 0.0f32;
            let mut chosen = q - 1;
            let mut found = false;
            for a in 0..q {
                cumulative += local[a as usize];
                if !found && target < cumulative {
                    chosen = a;
                    found = true;
                }
            }
            states[(base + i) as usize] = chosen;
        }
    }
}

/// Site-sequential Metropolis sweep, the device twin of the CPU's
/// (`crate::potts::sweep`, `PottsUpdate::Metropolis`): site i of chain c reads words 0 and
/// 1 of element `c * L + i`; the proposal is b = (s + 1 + ((word1 >> 8) (q - 1) >> 24))
/// mod q (uniform over the other q - 1 states), accepted iff uniform_from_bits(word0) <
/// exp(beta_scale betas[c] (e_b - e_s)), e_a = h_i(a) + sum_{j != i} J_ij(a, s_j).
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
pub fn potts_metropolis_kernel(
    states: &mut Array<u32>,
    coupling: &Array<f32>,
    field: &Array<f32>,
    betas: &Array<f32>,
    key: PhiloxKey,
    chains: u32,
    sites: u32,
    q: u32,
    beta_scale: f32,
) {
    let chain = linear_pos();
    if chain < chains {
        let beta = beta_scale * betas[chain as usize];
        let base = chain * sites;
        for i in 0..sites {
            let words = philox_words(&key, base + i);
            let old = states[(base + i) as usize];
            let offset = ((words.w1 >> 8) * (q - 1)) >> 24;
            let proposal = (old + 1 + offset) % q;
            let mut e_old = field[(i * q + old) as usize];
            let mut e_new = field[(i * q + proposal) as usize];
            let row_old = (i * q + old) * sites;
            let row_new = (i * q + proposal) * sites;
            for j in 0..sites {
                if j != i {
                    let sj = states[(base + j) as usize];
                    e_old += coupling[((row_old + j) * q + sj) as usize];
                    e_new += coupling[((row_new + j) * q + sj) as usize];
                }
            }
            if uniform_from_bits(words.w0) < f32::exp(beta * (e_new - e_old)) {
                states[(base + i) as usize] = proposal;
            }
        }
    }
}

/// Per-chain energy E(s) (one unit per chain), summed in two levels in f32: site i's
/// field and couplings to the later sites (<= L terms) into a row sum, then the L row
/// sums into the total. Each of the L (L + 1) / 2 terms thus passes through at most 2L
/// roundings, so |error| <= 2 L eps sum |terms| (eps = 2^-24; ~1e-4 relative for L =
/// 1000 at worst, ~1e-6 typically), instead of L^2 / 2 eps for one running sum.
#[cube(launch)]
pub fn potts_energy_kernel(
    states: &Array<u32>,
    coupling: &Array<f32>,
    field: &Array<f32>,
    energy: &mut Array<f32>,
    chains: u32,
    sites: u32,
    q: u32,
) {
    let chain = linear_pos();
    if chain < chains {
        let base = chain * sites;
        let mut e = 0.0f32;
        for i in 0..sites {
            let si = states[(base + i) as usize];
            let mut row_sum = field[(i * q + si) as usize];
            let row = (i * q + si) * sites;
            for j in (i + 1)..sites {
                let sj = states[(base + j) as usize];
                row_sum += coupling[((row + j) * q + sj) as usize];
            }
            e -= row_sum;
        }
        energy[chain as usize] = e;
    }
}

/// How a site of a Potts chain moves in [`sweep`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SiteRule {
    /// Heat bath: a new state drawn from the site's conditional ([`potts_sweep_kernel`]).
    HeatBath,
    /// Metropolis: a proposed state accepted or not ([`potts_metropolis_kernel`]).
    Metropolis,
}

/// `keys.len()` site-sequential sweeps of every chain by `rule`; sweep `s` uses `keys[s]`.
#[allow(clippy::too_many_arguments)]
pub fn sweep<R: Runtime>(
    client: &ComputeClient<R>,
    rule: SiteRule,
    states: &DeviceArray<u32>,
    coupling: &DeviceArray<f32>,
    field: &DeviceArray<f32>,
    betas: &DeviceArray<f32>,
    keys: &[RngKey],
    (chains, sites, q): (usize, usize, usize),
    beta_scale: f32,
) {
    let launch = match rule {
        SiteRule::HeatBath => potts_sweep_kernel::launch::<R>,
        SiteRule::Metropolis => potts_metropolis_kernel::launch::<R>,
    };
    for key in keys {
        launch(
            client,
            cubes_for(chains),
            cube_dim(),
            states.arg(),
            coupling.arg(),
            field.arg(),
            betas.arg(),
            key_launch(*key),
            chains as u32,
            sites as u32,
            q as u32,
            beta_scale,
        );
    }
}

/// `keys.len()` sweeps of [`potts_sweep_scaled_kernel`]; sweep `s` uses `keys[s]`.
#[allow(clippy::too_many_arguments)]
pub fn sweep_scaled<R: Runtime>(
    client: &ComputeClient<R>,
    states: &DeviceArray<u32>,
    coupling: &DeviceArray<f32>,
    field: &DeviceArray<f32>,
    betas: &DeviceArray<f32>,
    keys: &[RngKey],
    chains: usize,
    sites: usize,
    q: usize,
    coupling_scale: f32,
    field_scale: f32,
) {
    for key in keys {
        potts_sweep_scaled_kernel::launch::<R>(
            client,
            cubes_for(chains),
            cube_dim(),
            states.arg(),
            coupling.arg(),
            field.arg(),
            betas.arg(),
            key_launch(*key),
            chains as u32,
            sites as u32,
            q as u32,
            coupling_scale,
            field_scale,
        );
    }
}

/// Per-chain energies into `energy`.
#[allow(clippy::too_many_arguments)]
pub fn energies<R: Runtime>(
    client: &ComputeClient<R>,
    states: &DeviceArray<u32>,
    coupling: &DeviceArray<f32>,
    field: &DeviceArray<f32>,
    energy: &DeviceArray<f32>,
    chains: usize,
    sites: usize,
    q: usize,
) {
    potts_energy_kernel::launch::<R>(
        client,
        cubes_for(chains),
        cube_dim(),
        states.arg(),
        coupling.arg(),
        field.arg(),
        energy.arg(),
        chains as u32,
        sites as u32,
        q as u32,
    );
}
