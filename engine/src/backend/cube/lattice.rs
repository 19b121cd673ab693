//! Nearest-neighbour Ising model on periodic L x L tori, many chains at once: checkerboard
//! sweeps (Metropolis or heat-bath) and per-chain sums of bonds and spins, with the AIS
//! log-weight update fused into the reduction.
//!
//! Spins are i32 +1/-1, chain-major `[chain, row, col]`. L must be even (the checkerboard
//! of a torus is bipartite only then). Energy E = -J sum_<ij> s_i s_j - h sum_i s_i;
//! chain c samples exp(-beta_scale * betas[c] E). Random numbers: the half sweep of colour `color`
//! ((row + col) % 2 == color) draws its own key, element `chain * L * L + row * L + col`.

use cubecl::prelude::*;

use super::device::{cube_dim, cubes_for, linear_pos, DeviceArray};
use super::philox::{key_launch, philox_words, uniform, PhiloxKey};
use super::rbm::sigmoid;
use crate::rng::RngKey;

/// Most chains one reduction launch covers (one cube each along one axis).
pub const MAX_CHAINS: usize = 65_535;

/// Metropolis or heat-bath single-spin updates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpinRule {
    /// Flip iff uniform < exp(-beta dE).
    Metropolis,
    /// Set +1 iff uniform < sigmoid(2 beta (J sum_nb + h)).
    HeatBath,
}

#[cube(launch)]
// `s * 0` keeps a runtime i32 in the generated kernel (see below), on purpose.
#[allow(clippy::too_many_arguments, clippy::erasing_op)]
pub fn checkerboard_kernel(
    spins: &mut Array<i32>,
    betas: &Array<f32>,
    key: PhiloxKey,
    chains: u32,
    size: u32,
    color: u32,
    coupling: f32,
    field: f32,
    beta_scale: f32,
    heat_bath: u32,
) {
    let t = linear_pos();
    let half_row = size / 2;
    let per_chain = size * half_row;
    if t < chains * per_chain {
        let chain = t / per_chain;
        let r = t % per_chain;
        let row = r / half_row;
        let col = 2 * (r % half_row) + ((row + color) % 2);
        let base = chain * size * size;
        let up = (row + size - 1) % size;
        let down = (row + 1) % size;
        let left = (col + size - 1) % size;
        let right = (col + 1) % size;
        let nb = spins[(base + up * size + col) as usize]
            + spins[(base + down * size + col) as usize]
            + spins[(base + row * size + left) as usize]
            + spins[(base + row * size + right) as usize];
        let site = base + row * size + col;
        let local = coupling * f32::cast_from(nb) + field;
        let beta = beta_scale * betas[chain as usize];
        let u = uniform(&key, site);
        let s = spins[site as usize];
        if heat_bath != 0 {
            // Written from `s` so that the compiler keeps a runtime i32.
            let mut new_spin = s * 0 - 1;
            if u < sigmoid(2.0f32 * beta * local) {
                new_spin = s * 0 + 1;
            }
            spins[site as usize] = new_spin;
        } else {
            let delta = 2.0f32 * f32::cast_from(s) * local;
            if u < f32::exp(-beta * delta) {
                spins[site as usize] = s * (s * 0 - 1);
            }
        }
    }
}

/// One half-sweep with the CPU checkerboard's random-number contract
/// (`crate::lattice::checkerboard`): colour site k = row * (L/2) + col/2 of chain c uses
/// word ((k mod 64) / 16) of element `c * E + 16 (k / 64) + (k mod 16)`, and its 24 high
/// bits u decide against the host's integer thresholds `tables[c * 15 ..]`
/// (`checkerboard::threshold_table`): Metropolis flips iff u < T[spin][(n + 4) / 2], heat
/// bath sets +1 iff u < T_up[(n + 4) / 2]. Integer comparisons of the same words and
/// thresholds: exactly the CPU's decisions.
#[cube(launch)]
#[allow(clippy::too_many_arguments, clippy::erasing_op)]
pub fn checkerboard_table_kernel(
    spins: &mut Array<i32>,
    tables: &Array<u32>,
    key: PhiloxKey,
    chains: u32,
    size: u32,
    color: u32,
    elements_per_chain: u32,
    heat_bath: u32,
) {
    let t = linear_pos();
    let half_row = size / 2;
    let per_chain = size * half_row;
    if t < chains * per_chain {
        let chain = t / per_chain;
        let k = t % per_chain;
        let row = k / half_row;
        let col = 2 * (k % half_row) + ((row + color) % 2);
        let base = chain * size * size;
        let up = (row + size - 1) % size;
        let down = (row + 1) % size;
        let left = (col + size - 1) % size;
        let right = (col + 1) % size;
        let nb = spins[(base + up * size + col) as usize]
            + spins[(base + down * size + col) as usize]
            + spins[(base + row * size + left) as usize]
            + spins[(base + row * size + right) as usize];
        let element = chain * elements_per_chain + 16 * (k / 64) + (k % 16);
        let words = philox_words(&key, element);
        let slot = (k % 64) / 16;
        let mut word = words.w0;
        if slot == 1 {
            word = words.w1;
        }
        if slot == 2 {
            word = words.w2;
        }
        if slot == 3 {
            word = words.w3;
        }
        let u = word >> 8;
        let n = u32::cast_from(nb + 4) / 2;
        let site = base + row * size + col;
        let s = spins[site as usize];
        let table = chain * 15;
        if heat_bath != 0 {
            // Written from `s` so that the compiler keeps a runtime i32.
            let mut new_spin = s * 0 - 1;
            if u < tables[(table + 10 + n) as usize] {
                new_spin = s * 0 + 1;
            }
            spins[site as usize] = new_spin;
        } else {
            let mut which = 0u32;
            if s > 0 {
                which = 5u32;
            }
            if u < tables[(table + which + n) as usize] {
                spins[site as usize] = s * (s * 0 - 1);
            }
        }
    }
}

/// Per chain (one cube each): bonds = sum over right and down neighbours of s_i s_j,
/// magnetization = sum s_i, both exact integers. If `dbeta != 0`, also adds
/// dbeta * (J bonds + h magnetization) = -dbeta * E to the chain's AIS log-weight,
/// Kahan-compensated (`log_weight_carry` holds the lost low-order part).
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
pub fn lattice_sums_kernel(
    spins: &Array<i32>,
    bonds: &mut Array<i32>,
    magnetization: &mut Array<i32>,
    log_weight: &mut Array<f32>,
    log_weight_carry: &mut Array<f32>,
    size: u32,
    coupling: f32,
    field: f32,
    dbeta: f32,
) {
    let mut shared_bonds = SharedMemory::<i32>::new(256usize);
    let mut shared_magnet = SharedMemory::<i32>::new(256usize);
    let chain = CUBE_POS_Y * CUBE_COUNT_X + CUBE_POS_X;
    let tid = UNIT_POS_X;
    let sites = size * size;
    let base = chain * sites;
    let mut bond_sum = 0i32;
    let mut spin_sum = 0i32;
    let mut site = tid;
    while site < sites {
        let row = site / size;
        let col = site % size;
        let s = spins[(base + site) as usize];
        let right = spins[(base + row * size + (col + 1) % size) as usize];
        let down = spins[(base + ((row + 1) % size) * size + col) as usize];
        bond_sum += s * (right + down);
        spin_sum += s;
        site += CUBE_DIM_X;
    }
    shared_bonds[tid as usize] = bond_sum;
    shared_magnet[tid as usize] = spin_sum;
    sync_cube();
    let mut stride = 128u32;
    while stride > 0 {
        if tid < stride {
            shared_bonds[tid as usize] += shared_bonds[(tid + stride) as usize];
            shared_magnet[tid as usize] += shared_magnet[(tid + stride) as usize];
        }
        sync_cube();
        stride /= 2;
    }
    if tid == 0 {
        let b = shared_bonds[0];
        let m = shared_magnet[0];
        bonds[chain as usize] = b;
        magnetization[chain as usize] = m;
        if dbeta != 0.0 {
            let increment = dbeta * (coupling * f32::cast_from(b) + field * f32::cast_from(m));
            let y = increment - log_weight_carry[chain as usize];
            let sum = log_weight[chain as usize];
            let t = sum + y;
            log_weight_carry[chain as usize] = (t - sum) - y;
            log_weight[chain as usize] = t;
        }
    }
}

/// One full sweep (colour 0 then colour 1) of every chain, with keys `keys[0]`, `keys[1]`.
#[allow(clippy::too_many_arguments)]
pub fn sweep<R: Runtime>(
    client: &ComputeClient<R>,
    spins: &DeviceArray<i32>,
    betas: &DeviceArray<f32>,
    keys: [RngKey; 2],
    chains: usize,
    size: usize,
    coupling: f32,
    field: f32,
    beta_scale: f32,
    rule: SpinRule,
) {
    let threads = chains * size * size / 2;
    for (color, key) in keys.into_iter().enumerate() {
        checkerboard_kernel::launch::<R>(
            client,
            cubes_for(threads),
            cube_dim(),
            spins.arg(),
            betas.arg(),
            key_launch(key),
            chains as u32,
            size as u32,
            color as u32,
            coupling,
            field,
            beta_scale,
            (rule == SpinRule::HeatBath) as u32,
        );
    }
}

/// One half-sweep of colour `color` of every chain with [`checkerboard_table_kernel`].
#[allow(clippy::too_many_arguments)]
pub fn table_half_sweep<R: Runtime>(
    client: &ComputeClient<R>,
    spins: &DeviceArray<i32>,
    tables: &DeviceArray<u32>,
    key: RngKey,
    chains: usize,
    size: usize,
    color: u32,
    elements_per_chain: usize,
    rule: SpinRule,
) {
    let threads = chains * size * size / 2;
    checkerboard_table_kernel::launch::<R>(
        client,
        cubes_for(threads),
        cube_dim(),
        spins.arg(),
        tables.arg(),
        key_launch(key),
        chains as u32,
        size as u32,
        color,
        elements_per_chain as u32,
        (rule == SpinRule::HeatBath) as u32,
    );
}

/// Per-chain sums into `bonds` and `magnetization`; with `dbeta != 0` also the AIS
/// log-weight update (see [`lattice_sums_kernel`]).
#[allow(clippy::too_many_arguments)]
pub fn sums<R: Runtime>(
    client: &ComputeClient<R>,
    spins: &DeviceArray<i32>,
    bonds: &DeviceArray<i32>,
    magnetization: &DeviceArray<i32>,
    log_weight: &DeviceArray<f32>,
    log_weight_carry: &DeviceArray<f32>,
    chains: usize,
    size: usize,
    coupling: f32,
    field: f32,
    dbeta: f32,
) {
    // One cube per chain; callers bound chains by MAX_CHAINS.
    let (x, y) = (chains as u32, 1);
    lattice_sums_kernel::launch::<R>(
        client,
        CubeCount::Static(x, y, 1),
        CubeDim::new_1d(256),
        spins.arg(),
        bonds.arg(),
        magnetization.arg(),
        log_weight.arg(),
        log_weight_carry.arg(),
        size as u32,
        coupling,
        field,
        dbeta,
    );
}

/// The CPU twin of [`sweep`]: the kernel's arithmetic in the same f32 operations. Returns the
/// number of near ties (|uniform - threshold| < 1e-6), where the device's exp may decide
/// the other way.
#[allow(clippy::too_many_arguments)]
pub fn sweep_reference(
    spins: &mut [i32],
    betas: &[f32],
    keys: [RngKey; 2],
    size: usize,
    coupling: f32,
    field: f32,
    beta_scale: f32,
    rule: SpinRule,
) -> usize {
    let sites = size * size;
    let mut near_ties = 0;
    for (color, key) in keys.iter().enumerate() {
        for (chain, &beta) in betas.iter().enumerate() {
            let beta = beta_scale * beta;
            let base = chain * sites;
            for row in 0..size {
                for col in 0..size {
                    if (row + col) % 2 != color {
                        continue;
                    }
                    let at = |r: usize, c: usize| spins[base + r * size + c];
                    let nb = at((row + size - 1) % size, col)
                        + at((row + 1) % size, col)
                        + at(row, (col + size - 1) % size)
                        + at(row, (col + 1) % size);
                    let site = base + row * size + col;
                    let local = coupling * nb as f32 + field;
                    let u = key.uniform(site as u32);
                    let threshold = match rule {
                        SpinRule::HeatBath => 1.0 / (1.0 + (-(2.0 * beta * local)).exp()),
                        SpinRule::Metropolis => (-beta * (2.0 * spins[site] as f32 * local)).exp(),
                    };
                    if (u - threshold).abs() < 1e-6 {
                        near_ties += 1;
                    }
                    let take = u < threshold;
                    spins[site] = match rule {
                        SpinRule::HeatBath => {
                            if take {
                                1
                            } else {
                                -1
                            }
                        }
                        SpinRule::Metropolis => {
                            if take {
                                -spins[site]
                            } else {
                                spins[site]
                            }
                        }
                    };
                }
            }
        }
    }
    near_ties
}
