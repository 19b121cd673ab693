//! The negative phase of Potts training as one interface with a CPU and a device
//! implementation: `sweeps` runs sweeps of a block of chains at given inverse temperatures,
//! with the random-number contract of [`crate::potts::sweep`] (one key per sweep, element
//! `c * L + i` of the block), so the trainer (`pcd`, `cd`, `pt`) is the same code on every
//! backend. The CPU sampler is [`crate::potts::sweep::sweeps`] itself; the device sampler
//! (`backend::cube::potts_sampler`) runs the cube kernels of `backend::cube::potts`, which
//! the estimators' device chains use too, and agrees with the CPU up to f32 rounding of
//! the local fields (see there).

use crate::backend::BackendKind;
use crate::error::Result;
use crate::potts::sweep::{sweeps, PottsUpdate};
use crate::potts::PottsModel;
use crate::rng::RngKey;

/// The largest alphabet the device sweep kernels hold (`backend::cube::potts::MAX_STATES`),
/// here so that a server without the GPU features can refuse a request before it runs.
pub const DEVICE_MAX_STATES: usize = 32;

/// Sweeps of Potts chains on some backend.
pub trait PottsSampler: Send {
    /// The backend the sweeps run on.
    fn backend(&self) -> BackendKind;

    /// Refuses, with a message that says what to change, a model or chain count the
    /// backend cannot run. Called once before training starts.
    fn check_size(&self, _sites: usize, _q: usize, _chains: usize) -> Result<()> {
        Ok(())
    }

    /// Says that the model's parameters changed since the last `sweeps` (a device sampler
    /// keeps a copy and uploads it again before the next sweep).
    fn parameters_changed(&mut self) {}

    /// `keys.len()` sweeps of every chain of `chains` ([n, L], element base `c * L`),
    /// chain c at inverse temperature `betas[c]`, sweep t with `keys[t]`.
    fn sweeps(
        &mut self,
        model: &PottsModel,
        chains: &mut [u8],
        betas: &[f32],
        update: PottsUpdate,
        keys: &[RngKey],
    ) -> Result<()>;
}

/// The CPU sampler: [`sweeps`] (rayon over chains, incremental local fields).
pub struct CpuPottsSampler;

impl PottsSampler for CpuPottsSampler {
    fn backend(&self) -> BackendKind {
        BackendKind::Cpu
    }

    fn sweeps(
        &mut self,
        model: &PottsModel,
        chains: &mut [u8],
        betas: &[f32],
        update: PottsUpdate,
        keys: &[RngKey],
    ) -> Result<()> {
        sweeps(model, chains, betas, update, keys);
        Ok(())
    }
}
