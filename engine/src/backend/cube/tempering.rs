//! Parallel-tempering swaps for any model: replicas keep their states; what moves is the
//! inverse temperature. `rung_chain[ladder * rungs + r]` is the chain at rung r of a
//! ladder, `betas[chain]` its inverse temperature (read by every sampling kernel), and
//! `ladder_betas[r]` the ladder itself.
//!
//! A swap pass with parity p proposes, in every ladder, the pairs (r, r+1) with r % 2 == p,
//! and accepts with probability min(1, exp((beta_r - beta_{r+1}) (E_a - E_b))) where a and
//! b are the chains at rungs r and r+1 and E the energies at beta = 1. Random numbers: one
//! key per pass, element `ladder * rungs + r`.

use cubecl::prelude::*;

use super::device::{cube_dim, cubes_for, linear_pos, DeviceArray};
use super::philox::{key_launch, uniform, PhiloxKey};
use crate::rng::RngKey;

#[cube(launch)]
#[allow(clippy::too_many_arguments)]
pub fn swap_kernel(
    energy: &Array<f32>,
    ladder_betas: &Array<f32>,
    rung_chain: &mut Array<u32>,
    betas: &mut Array<f32>,
    accepted: &mut Array<u32>,
    key: PhiloxKey,
    ladders: u32,
    rungs: u32,
    parity: u32,
) {
    let t = linear_pos();
    let pairs = rungs / 2;
    if t < ladders * pairs {
        let ladder = t / pairs;
        let r = 2 * (t % pairs) + parity;
        if r + 1 < rungs {
            let at = ladder * rungs + r;
            let a = rung_chain[at as usize];
            let b = rung_chain[(at + 1) as usize];
            let beta_lo = ladder_betas[r as usize];
            let beta_hi = ladder_betas[(r + 1) as usize];
            let log_ratio = (beta_lo - beta_hi) * (energy[a as usize] - energy[b as usize]);
            if uniform(&key, at) < f32::exp(log_ratio) {
                rung_chain[at as usize] = b;
                rung_chain[(at + 1) as usize] = a;
                betas[b as usize] = beta_lo;
                betas[a as usize] = beta_hi;
                let slot = (ladder * (rungs - 1) + r) as usize;
                accepted[slot] += 1;
            }
        }
    }
}

/// One swap pass of the given parity (0 or 1) over all ladders.
#[allow(clippy::too_many_arguments)]
pub fn swap<R: Runtime>(
    client: &ComputeClient<R>,
    energy: &DeviceArray<f32>,
    ladder_betas: &DeviceArray<f32>,
    rung_chain: &DeviceArray<u32>,
    betas: &DeviceArray<f32>,
    accepted: &DeviceArray<u32>,
    key: RngKey,
    ladders: usize,
    rungs: usize,
    parity: u32,
) {
    let threads = ladders * (rungs / 2);
    swap_kernel::launch::<R>(
        client,
        cubes_for(threads),
        cube_dim(),
        energy.arg(),
        ladder_betas.arg(),
        rung_chain.arg(),
        betas.arg(),
        accepted.arg(),
        key_launch(key),
        ladders as u32,
        rungs as u32,
        parity,
    );
}
