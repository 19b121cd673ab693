//! Device-resident chains for the estimators (`estimate_log_z`, `sample`, `observe`):
//! [`ModelChains`] implementations whose states, scratch and AIS log-weights live on the
//! device and move with the kernels of this backend, so that only summaries cross the bus:
//! the log-weights when the AIS driver checks them (`flush_weights`, ~200 times per run),
//! and the states when `sample`/`observe` keep a draw (one value per chain for `observe`'s
//! linear statistics and energies, which are reduced on the device).
//!
//! * [`CubeRbmChains`]: Bernoulli-Bernoulli RBM on the Salakhutdinov & Murray path, the
//!   same transition as `estimate::chains::rbm::RbmChains` (hidden half, then visible
//!   half, keys drawn in the same order, element `chain * width + unit`): with the same
//!   seed the device and CPU chains make the same draws except at f32 near ties.
//! * [`CubeLatticeChains`]: periodic L x L Ising (L even), checkerboard heat bath. The CPU
//!   chains add a Swendsen-Wang update to every transition; there is no cluster kernel, so
//!   the device chains mix more slowly below T_c (valid AIS, larger variance).
//! * [`CubePottsChains`]: dense Potts models (q <= 32), site-sequential heat bath, one unit
//!   per chain, on the same path as the CPU chains (fields at full strength, couplings
//!   annealed).
//! * Gaussian-Bernoulli RBM chains live in `gaussian_chains.rs` (same machinery).
//!
//! The log-weights are accumulated on the device in f32 with Kahan compensation between
//! flushes (at most total/200 + 1 transitions), then added in f64 on the host, so a run of
//! 10^4 steps loses nothing the CPU's f64 keeps. Host-side helpers (ln Z_0, the exact
//! most likely state, greedy polishing, ln f of one state) are the CPU chains' own code,
//! on a one-chain instance.
//!
//! Modules: `rbm`, `lattice`, `potts` (one per family); this one keeps what they share
//! (the device log-weights, host access to integer states, the array limit).
//!
//! Errors: kernel launches cannot report failure where the trait methods return nothing;
//! the first error is kept and returned by the next `flush_weights`, `read_states` or
//! `write_states`.

mod lattice;
mod potts;
mod rbm;

pub use lattice::{lattice_unsupported, CubeLatticeChains};
pub use potts::{potts_unsupported, CubePottsChains};
pub use rbm::{rbm_unsupported, CubeRbmChains};

use cubecl::prelude::*;

use super::device::{DeviceArray, DeviceElem};
use crate::error::EngineError;

/// Largest device array (elements of 4 bytes) the chains allocate: 2^25 = 128 MiB, the
/// storage-buffer limit of lavapipe and of wgpu's default limits.
pub const MAX_ARRAY_ELEMENTS: usize = 1 << 25;

/// Log-weights on the device: a Kahan-compensated f32 sum per chain since the last flush.
pub(super) struct DeviceWeights {
    pub(super) sum: DeviceArray<f32>,
    pub(super) carry: DeviceArray<f32>,
}

impl DeviceWeights {
    pub(super) fn new<R: Runtime>(client: &ComputeClient<R>, chains: usize) -> Self {
        DeviceWeights {
            sum: DeviceArray::zeros(client, chains),
            carry: DeviceArray::zeros(client, chains),
        }
    }

    /// Adds sum - carry (the compensated value) to `log_weights` in f64 and restarts the
    /// device sums from zero.
    pub(super) fn flush<R: Runtime>(
        &mut self,
        client: &ComputeClient<R>,
        log_weights: &mut [f64],
    ) -> Result<(), EngineError> {
        let sum = self.sum.download(client)?;
        let carry = self.carry.download(client)?;
        for ((w, s), c) in log_weights.iter_mut().zip(sum).zip(carry) {
            *w += s as f64 - c as f64;
        }
        *self = Self::new(client, log_weights.len());
        Ok(())
    }
}

/// A statistic computed on the device, or the error an earlier state write left (the
/// per-chain writes of `ModelChains` cannot return one).
fn unless_failed<T>(
    error: &mut Option<EngineError>,
    compute: impl FnOnce() -> Result<T, EngineError>,
) -> Option<Result<T, EngineError>> {
    Some(match error.take() {
        Some(e) => Err(e),
        None => compute(),
    })
}

/// Spin encoding of a host state value (+1 for positive, else -1).
fn encode_spin(x: f32) -> i32 {
    if x > 0.0 {
        1
    } else {
        -1
    }
}

// Host access to integer chain states kept on the device (lattice spins, Potts states), shared
// by the `ModelChains` state accessors. The per-chain forms cannot return errors (the trait's
// signature): a failed read gives NaN, a failed write is kept in `error` for the next call.

fn read_chain<R: Runtime, T: DeviceElem>(
    client: &ComputeClient<R>,
    states: &DeviceArray<T>,
    (chain, units): (usize, usize),
    out: &mut [f32],
    decode: impl Fn(T) -> f32,
) {
    match states.download(client) {
        Ok(s) => {
            for (o, &x) in out.iter_mut().zip(&s[chain * units..(chain + 1) * units]) {
                *o = decode(x);
            }
        }
        Err(_) => out.fill(f32::NAN),
    }
}

fn write_chain<R: Runtime, T: DeviceElem>(
    client: &ComputeClient<R>,
    states: &mut DeviceArray<T>,
    error: &mut Option<EngineError>,
    (chain, units): (usize, usize),
    state: &[f32],
    encode: impl Fn(f32) -> T,
) {
    match states.download(client) {
        Ok(mut s) => {
            for (x, &y) in s[chain * units..(chain + 1) * units].iter_mut().zip(state) {
                *x = encode(y);
            }
            states.write(client, &s);
        }
        Err(e) => {
            error.get_or_insert(e);
        }
    }
}

fn read_all<R: Runtime, T: DeviceElem>(
    client: &ComputeClient<R>,
    states: &DeviceArray<T>,
    error: &Option<EngineError>,
    out: &mut [f32],
    decode: impl Fn(T) -> f32,
) -> Result<(), EngineError> {
    if let Some(e) = error {
        return Err(e.clone());
    }
    for (o, x) in out.iter_mut().zip(states.download(client)?) {
        *o = decode(x);
    }
    Ok(())
}

fn write_all<R: Runtime, T: DeviceElem>(
    client: &ComputeClient<R>,
    states: &mut DeviceArray<T>,
    error: &mut Option<EngineError>,
    values: &[f32],
    encode: impl Fn(f32) -> T,
) -> Result<(), EngineError> {
    if let Some(e) = error.take() {
        return Err(e);
    }
    let encoded: Vec<T> = values.iter().map(|&x| encode(x)).collect();
    states.write(client, &encoded);
    Ok(())
}
