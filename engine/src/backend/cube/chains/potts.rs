//! [`CubePottsChains`]: dense Potts chains on the device (see `chains`).

use cubecl::prelude::*;

use super::{
    read_all, read_chain, unless_failed, write_all, write_chain, DeviceWeights, MAX_ARRAY_ELEMENTS,
};
use crate::backend::cube::device::{CubeRuntime, DeviceArray};
use crate::backend::cube::observe::{self, PairForm};
use crate::backend::cube::{ais, potts};
use crate::error::EngineError;
use crate::estimate::ais::AnnealingPath;
use crate::estimate::chains::potts::{PottsChains, PottsParams};
use crate::estimate::chains::{check_chain_size, Encoding, ModelChains};
use crate::potts::sweep::field_only_states;
use crate::rng::{RngKey, RngStream};

/// Why a Potts model cannot run on the device chains, or `None` if it can.
pub fn potts_unsupported(params: &PottsParams, chains: usize) -> Option<String> {
    if params.q > potts::MAX_STATES {
        Some(format!(
            "the Potts kernels hold at most {} states per site, this model has q = {}",
            potts::MAX_STATES,
            params.q
        ))
    } else if params.couplings.len() > MAX_ARRAY_ELEMENTS
        || chains * params.sites > MAX_ARRAY_ELEMENTS
    {
        Some(format!(
            "{chains} chains of a Potts model with {} sites and q = {} exceed {MAX_ARRAY_ELEMENTS} device values",
            params.sites, params.q
        ))
    } else {
        None
    }
}

/// Potts chains on the device (see the module docs). Path as on the CPU: base = the
/// independent sites with fields h, ln f_beta(s) = sum_i h_i(s_i) + beta C(s); the
/// transition at beta is one site-sequential heat-bath sweep with fields at scale 1 and
/// couplings at scale beta.
pub struct CubePottsChains<R: CubeRuntime> {
    client: ComputeClient<R>,
    /// One-chain CPU twin (holds the symmetrised parameters).
    host: PottsChains,
    chains: usize,
    sites: usize,
    q: usize,
    states: DeviceArray<u32>,
    coupling: DeviceArray<f32>,
    field: DeviceArray<f32>,
    /// Zero fields: the energy kernel on them gives -C(s).
    no_field: DeviceArray<f32>,
    ones: DeviceArray<f32>,
    energy: DeviceArray<f32>,
    weights: DeviceWeights,
    error: Option<EngineError>,
}

impl<R: CubeRuntime> CubePottsChains<R> {
    pub fn new(
        client: ComputeClient<R>,
        params: PottsParams,
        chains: usize,
    ) -> Result<Self, EngineError> {
        let host = PottsChains::new(params, 1)?;
        let p = host.params();
        check_chain_size(chains, p.sites)?;
        if let Some(why) = potts_unsupported(p, chains) {
            return Err(EngineError::InvalidInput(why));
        }
        Ok(CubePottsChains {
            states: DeviceArray::zeros(&client, chains * p.sites),
            coupling: DeviceArray::upload(&client, &p.couplings),
            field: DeviceArray::upload(&client, &p.fields),
            no_field: DeviceArray::zeros(&client, p.fields.len()),
            ones: DeviceArray::upload(&client, &vec![1.0f32; chains]),
            energy: DeviceArray::zeros(&client, chains),
            weights: DeviceWeights::new(&client, chains),
            sites: p.sites,
            q: p.q,
            host,
            chains,
            error: None,
            client,
        })
    }

    fn heat_bath(&self, field_scale: f64, coupling_scale: f64, rng: &mut RngStream) {
        potts::sweep_scaled(
            &self.client,
            &self.states,
            &self.coupling,
            &self.field,
            &self.ones,
            &[rng.next_key()],
            self.chains,
            self.sites,
            self.q,
            coupling_scale as f32,
            field_scale as f32,
        );
    }
}

impl<R: CubeRuntime> AnnealingPath for CubePottsChains<R> {
    fn chains(&self) -> usize {
        self.chains
    }

    fn log_z_base(&self) -> f64 {
        self.host.log_z_base()
    }

    /// Same draws as the CPU chains (host, element = chain * L + site), one upload.
    fn draw_base(&mut self, key: RngKey) {
        let p = self.host.params();
        let states: Vec<u32> = field_only_states(&p.fields, p.q, self.chains, key)
            .into_iter()
            .map(u32::from)
            .collect();
        self.states.write(&self.client, &states);
    }

    fn advance(&mut self, from: f64, to: f64, rng: &mut RngStream, _log_weights: &mut [f64]) {
        // log_w += (to - from) C(s) = -(to - from) E_C(s), E_C the energy without fields.
        potts::energies(
            &self.client,
            &self.states,
            &self.coupling,
            &self.no_field,
            &self.energy,
            self.chains,
            self.sites,
            self.q,
        );
        ais::energy_weight(
            &self.client,
            &self.energy,
            &self.weights.sum,
            &self.weights.carry,
            (to - from) as f32,
        );
        self.heat_bath(1.0, to, rng);
    }

    fn transition(&mut self, beta: f64, rng: &mut RngStream) {
        self.heat_bath(1.0, beta, rng);
    }

    fn flush_weights(&mut self, log_weights: &mut [f64]) -> Result<(), EngineError> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        self.weights.flush(&self.client, log_weights)
    }
}

impl<R: CubeRuntime> ModelChains for CubePottsChains<R> {
    fn units(&self) -> usize {
        self.sites
    }

    /// Sites in states other than 0, sites that differ from a reference, projections:
    /// one-hot weights, q per site (`Statistic::as_linear`).
    fn linear_statistics(
        &mut self,
        weights: &[f32],
        scale: f64,
        offset: f64,
    ) -> Option<Result<Vec<f64>, EngineError>> {
        let (shape, q) = ((self.chains, self.sites), self.q);
        let (client, states) = (&self.client, &self.states);
        unless_failed(&mut self.error, || {
            observe::per_chain_linear(client, states, shape, weights, q, scale, offset)
        })
    }

    fn pair_products(&mut self, a: usize, b: usize) -> Option<Result<Vec<f64>, EngineError>> {
        let shape = (self.chains, self.sites);
        let (client, states) = (&self.client, &self.states);
        unless_failed(&mut self.error, || {
            observe::pair_products(client, states, shape, (a, b), PairForm::Categorical)
        })
    }

    fn state_counts(&mut self) -> Option<Result<Vec<u32>, EngineError>> {
        let (shape, q) = ((self.chains, self.sites), self.q);
        let (client, states) = (&self.client, &self.states);
        unless_failed(&mut self.error, || {
            observe::state_counts(client, states, shape, q)
        })
    }

    /// E(s) = -sum_i h_i(s_i) - sum_{i<j} J_ij(s_i, s_j): the AIS energy kernel with the
    /// fields on, one unit per chain (f32, two-level sums; see `potts_energy_kernel`).
    fn energies(&mut self) -> Option<Result<Vec<f64>, EngineError>> {
        if let Some(e) = self.error.take() {
            return Some(Err(e));
        }
        potts::energies(
            &self.client,
            &self.states,
            &self.coupling,
            &self.field,
            &self.energy,
            self.chains,
            self.sites,
            self.q,
        );
        Some(
            self.energy
                .download(&self.client)
                .map(|e| e.into_iter().map(f64::from).collect()),
        )
    }

    fn encoding(&self) -> Encoding {
        Encoding::Categorical(self.q)
    }

    fn read_state(&self, chain: usize, out: &mut [f32]) {
        let units = self.sites;
        read_chain(&self.client, &self.states, (chain, units), out, |x| {
            x as f32
        });
    }

    fn write_state(&mut self, chain: usize, state: &[f32]) {
        let units = self.sites;
        let (client, states) = (&self.client, &mut self.states);
        write_chain(
            client,
            states,
            &mut self.error,
            (chain, units),
            state,
            |x| x as u32,
        );
    }

    fn read_states(&self, out: &mut [f32]) -> Result<(), EngineError> {
        read_all(&self.client, &self.states, &self.error, out, |x| x as f32)
    }

    fn write_states(&mut self, states: &[f32]) -> Result<(), EngineError> {
        write_all(
            &self.client,
            &mut self.states,
            &mut self.error,
            states,
            |x| x as u32,
        )
    }

    fn backend_name(&self) -> &'static str {
        R::NAME
    }

    fn sweep(&mut self, tau: f64, rng: &mut RngStream) {
        self.heat_bath(tau, tau, rng);
    }

    fn log_target(&self, state: &[f32]) -> f64 {
        self.host.log_target(state)
    }

    fn exact_map(&self) -> Option<Vec<f32>> {
        self.host.exact_map()
    }

    fn polish(&self, state: &mut [f32]) {
        self.host.polish(state)
    }
}
