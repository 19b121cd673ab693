//! The device samplers of Potts and lattice training ([`crate::potts::sampler`],
//! [`crate::lattice::sampler`]): the trainers' chains swept by the cube kernels that the
//! estimators' device chains use too (`potts`, `lattice`), with the CPU samplers'
//! random-number contracts, so a training job gives the same model on either backend.
//!
//! Each call uploads the chains, runs its sweeps on the device and downloads them: the
//! trainer keeps the chains on the host between calls, where the moments, swaps, metrics
//! and checkpoints are computed by the CPU path's own code. The Potts parameters are
//! uploaded once per gradient step (`parameters_changed`), not per call.
//!
//! Agreement with the CPU: the lattice kernel compares the same Philox words with the
//! same integer thresholds (computed on the host), so every decision is the CPU's, exactly.
//! The Potts kernels sum the local fields afresh in f32 where the CPU updates them
//! incrementally, and use the device's exp where the CPU uses a polynomial (relative error
//! < 2e-7): the heat-bath weights and the Metropolis ratios differ by a few ulps, so a
//! draw can differ only when its uniform falls within that distance of a boundary (a near
//! tie, ~1e-6 per draw).

use cubecl::prelude::*;

use super::chains::MAX_ARRAY_ELEMENTS;
use super::device::{CubeRuntime, DeviceArray};
use super::lattice::{self, SpinRule};
use super::potts;
use crate::backend::BackendKind;
use crate::error::{EngineError, Result};
use crate::lattice::checkerboard::{
    elements_per_chain, threshold_table, LatticeChains, LatticeUpdate,
};
use crate::lattice::sampler::LatticeSampler;
use crate::lattice::LatticeIsing;
use crate::potts::sampler::PottsSampler;
use crate::potts::sweep::PottsUpdate;
use crate::potts::PottsModel;
use crate::rng::{RngKey, RngStream};

/// Potts sweeps on the device (see the module docs).
pub struct CubePottsSampler<R: CubeRuntime> {
    client: ComputeClient<R>,
    /// (couplings, fields) as last uploaded; `None` once the model changed.
    params: Option<(DeviceArray<f32>, DeviceArray<f32>)>,
}

impl<R: CubeRuntime> CubePottsSampler<R> {
    /// Connects to the process-wide client of `R`; a clear error if there is no device.
    pub fn new() -> Result<Self> {
        Ok(CubePottsSampler {
            client: R::shared_client()?,
            params: None,
        })
    }
}

impl<R: CubeRuntime> PottsSampler for CubePottsSampler<R> {
    fn backend(&self) -> BackendKind {
        R::KIND
    }

    fn check_size(&self, sites: usize, q: usize, chains: usize) -> Result<()> {
        if q > potts::MAX_STATES {
            return Err(EngineError::invalid(format!(
                "the {} Potts sweep kernel holds at most {} states per site, but the data have \
                 q = {q}: use backend = \"cpu\"",
                R::NAME,
                potts::MAX_STATES
            )));
        }
        let couplings = (sites * q) * (sites * q);
        if couplings > MAX_ARRAY_ELEMENTS || chains * sites > MAX_ARRAY_ELEMENTS {
            return Err(EngineError::invalid(format!(
                "{chains} chains of a Potts model with L = {sites}, q = {q} need device arrays \
                 of more than {MAX_ARRAY_ELEMENTS} values: use fewer train.chains, or \
                 backend = \"cpu\""
            )));
        }
        Ok(())
    }

    fn parameters_changed(&mut self) {
        self.params = None;
    }

    fn sweeps(
        &mut self,
        model: &PottsModel,
        chains: &mut [u8],
        betas: &[f32],
        update: PottsUpdate,
        keys: &[RngKey],
    ) -> Result<()> {
        let (l, q, n) = (model.sites, model.q, betas.len());
        if chains.len() != n * l {
            return Err(EngineError::Internal(format!(
                "{} Potts states for {n} chains of {l} sites",
                chains.len()
            )));
        }
        if keys.is_empty() || n == 0 {
            return Ok(());
        }
        let client = &self.client;
        let (coupling, field) = self.params.get_or_insert_with(|| {
            (
                DeviceArray::upload(client, &model.couplings),
                DeviceArray::upload(client, &model.fields),
            )
        });
        let host: Vec<u32> = chains.iter().map(|&s| u32::from(s)).collect();
        let states = DeviceArray::upload(client, &host);
        let betas = DeviceArray::upload(client, betas);
        let rule = match update {
            PottsUpdate::Gibbs => potts::SiteRule::HeatBath,
            PottsUpdate::Metropolis => potts::SiteRule::Metropolis,
        };
        let shape = (n, l, q);
        potts::sweep(
            client, rule, &states, coupling, field, &betas, keys, shape, 1.0,
        );
        for (c, s) in chains.iter_mut().zip(states.download(client)?) {
            *c = s as u8;
        }
        Ok(())
    }
}

/// Lattice checkerboard sweeps on the device (see the module docs).
pub struct CubeLatticeSampler<R: CubeRuntime> {
    client: ComputeClient<R>,
}

impl<R: CubeRuntime> CubeLatticeSampler<R> {
    /// Connects to the process-wide client of `R`; a clear error if there is no device.
    pub fn new() -> Result<Self> {
        Ok(CubeLatticeSampler {
            client: R::shared_client()?,
        })
    }
}

impl<R: CubeRuntime> LatticeSampler for CubeLatticeSampler<R> {
    fn backend(&self) -> BackendKind {
        R::KIND
    }

    fn check_size(&self, size: usize, chains: usize) -> Result<()> {
        if chains * size * size > MAX_ARRAY_ELEMENTS {
            return Err(EngineError::invalid(format!(
                "{chains} chains of a {size} x {size} lattice exceed the {MAX_ARRAY_ELEMENTS} \
                 values of a device array: use fewer train.chains, or backend = \"cpu\""
            )));
        }
        Ok(())
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
        let (size, n) = (chains.size, chains.chains);
        if model.size != size || betas.len() != n {
            return Err(EngineError::Internal(format!(
                "lattice sweep of {n} chains of size {size} with {} betas and a model of size {}",
                betas.len(),
                model.size
            )));
        }
        if n_sweeps == 0 {
            return Ok(());
        }
        let client = &self.client;
        let host: Vec<i32> = chains.spins().iter().map(|&s| i32::from(s)).collect();
        let spins = DeviceArray::upload(client, &host);
        let tables: Vec<u32> = betas
            .iter()
            .flat_map(|&b| threshold_table(model, b))
            .collect();
        let tables = DeviceArray::upload(client, &tables);
        let rule = match update {
            LatticeUpdate::Metropolis => SpinRule::Metropolis,
            LatticeUpdate::HeatBath => SpinRule::HeatBath,
        };
        let elements = elements_per_chain(size);
        for _ in 0..n_sweeps {
            for colour in 0..2 {
                let key = rng.next_key();
                lattice::table_half_sweep(
                    client, &spins, &tables, key, n, size, colour, elements, rule,
                );
            }
        }
        let spins: Vec<i8> = spins
            .download(client)?
            .into_iter()
            .map(|s| if s > 0 { 1 } else { -1 })
            .collect();
        *chains = LatticeChains::from_spins(size, n, &spins)?;
        Ok(())
    }
}
