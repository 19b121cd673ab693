//! The negative phase of lattice training as one interface with a CPU and a device
//! implementation: `sweep` runs full checkerboard sweeps of all chains with the
//! random-number contract of [`crate::lattice::checkerboard`] (two keys per sweep, Philox
//! words against integer thresholds computed on the host), so the trainer (`pcd`, `cd`,
//! `pt`) is the same code on every backend. The CPU sampler is
//! [`LatticeChains::sweep`] itself; the device sampler (`backend::cube::lattice_sampler`)
//! runs a cube kernel with the same element and word mapping and the same integer
//! thresholds, so it makes exactly the CPU's decisions (no float arithmetic decides a
//! flip).

use crate::backend::BackendKind;
use crate::error::Result;
use crate::lattice::checkerboard::{LatticeChains, LatticeUpdate};
use crate::lattice::LatticeIsing;
use crate::rng::RngStream;

/// Checkerboard sweeps of lattice chains on some backend.
pub trait LatticeSampler: Send {
    /// The backend the sweeps run on.
    fn backend(&self) -> BackendKind;

    /// Refuses, with a message that says what to change, a lattice or chain count the
    /// backend cannot run. Called once before training starts.
    fn check_size(&self, _size: usize, _chains: usize) -> Result<()> {
        Ok(())
    }

    /// `n_sweeps` full sweeps of `chains`, chain c at inverse temperature `betas[c]`
    /// (two keys of `rng` per sweep, colour 0 then colour 1).
    fn sweep(
        &mut self,
        chains: &mut LatticeChains,
        model: &LatticeIsing,
        betas: &[f32],
        update: LatticeUpdate,
        rng: &mut RngStream,
        n_sweeps: usize,
    ) -> Result<()>;
}

/// The CPU sampler: [`LatticeChains::sweep`].
pub struct CpuLatticeSampler;

impl LatticeSampler for CpuLatticeSampler {
    fn backend(&self) -> BackendKind {
        BackendKind::Cpu
    }

    fn sweep(
        &mut self,
        chains: &mut LatticeChains,
        model: &LatticeIsing,
        betas: &[f32],
        update: LatticeUpdate,
        rng: &mut RngStream,
        n_sweeps: usize,
    ) -> Result<()> {
        chains.sweep(model, betas, update, rng, n_sweeps);
        Ok(())
    }
}
