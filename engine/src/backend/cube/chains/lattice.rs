//! [`CubeLatticeChains`]: periodic L x L Ising chains on the device (see `chains`).

use cubecl::prelude::*;

use super::{
    encode_spin, read_all, read_chain, unless_failed, write_all, write_chain, DeviceWeights,
    MAX_ARRAY_ELEMENTS,
};
use crate::backend::cube::device::{CubeRuntime, DeviceArray};
use crate::backend::cube::lattice::{self, SpinRule};
use crate::backend::cube::observe::{self, PairForm};
use crate::error::EngineError;
use crate::estimate::ais::AnnealingPath;
use crate::estimate::chains::lattice::{LatticeChains, LatticeParams};
use crate::estimate::chains::{check_chain_size, Encoding, ModelChains};
use crate::rng::{RngKey, RngStream};
use crate::stats::logspace::sigmoid_f32;

/// Why a lattice cannot run on the device chains, or `None` if it can.
pub fn lattice_unsupported(params: &LatticeParams, chains: usize) -> Option<String> {
    if !params.size.is_multiple_of(2) {
        Some(format!(
            "the checkerboard kernel needs an even lattice size, this one is {}",
            params.size
        ))
    } else if chains > lattice::MAX_CHAINS {
        Some(format!(
            "the lattice reduction takes at most {} chains, {chains} were asked for",
            lattice::MAX_CHAINS
        ))
    } else if chains * params.sites() > MAX_ARRAY_ELEMENTS {
        Some(format!(
            "{chains} chains of {} sites exceed {MAX_ARRAY_ELEMENTS} device values",
            params.sites()
        ))
    } else {
        None
    }
}

/// Lattice Ising chains on the device (see the module docs). Path as on the CPU: the
/// base is the independent-spin model with the full field h, and ln f_beta(s) = h M(s) +
/// beta J B(s); the transition at beta is one checkerboard heat-bath sweep with coupling
/// beta J and field h.
pub struct CubeLatticeChains<R: CubeRuntime> {
    client: ComputeClient<R>,
    host: LatticeChains,
    params: LatticeParams,
    chains: usize,
    spins: DeviceArray<i32>,
    /// Per-chain betas of the sweep kernel: all 1 (the scales go into J and h).
    ones: DeviceArray<f32>,
    bonds: DeviceArray<i32>,
    magnetization: DeviceArray<i32>,
    weights: DeviceWeights,
    error: Option<EngineError>,
}

impl<R: CubeRuntime> CubeLatticeChains<R> {
    pub fn new(
        client: ComputeClient<R>,
        params: LatticeParams,
        chains: usize,
    ) -> Result<Self, EngineError> {
        let host = LatticeChains::new(params, 1)?;
        check_chain_size(chains, params.sites())?;
        if let Some(why) = lattice_unsupported(&params, chains) {
            return Err(EngineError::InvalidInput(why));
        }
        Ok(CubeLatticeChains {
            spins: DeviceArray::upload(&client, &vec![1i32; chains * params.sites()]),
            ones: DeviceArray::upload(&client, &vec![1.0f32; chains]),
            bonds: DeviceArray::zeros(&client, chains),
            magnetization: DeviceArray::zeros(&client, chains),
            weights: DeviceWeights::new(&client, chains),
            host,
            params,
            chains,
            error: None,
            client,
        })
    }

    /// One checkerboard heat-bath sweep with local field field_scale h + coupling_scale J
    /// sum_nbrs; two keys (one per colour).
    fn heat_bath(&self, field_scale: f64, coupling_scale: f64, rng: &mut RngStream) {
        let keys = [rng.next_key(), rng.next_key()];
        lattice::sweep(
            &self.client,
            &self.spins,
            &self.ones,
            keys,
            self.chains,
            self.params.size,
            (coupling_scale * self.params.coupling) as f32,
            (field_scale * self.params.field) as f32,
            1.0,
            SpinRule::HeatBath,
        );
    }
}

impl<R: CubeRuntime> AnnealingPath for CubeLatticeChains<R> {
    fn chains(&self) -> usize {
        self.chains
    }

    fn log_z_base(&self) -> f64 {
        self.host.log_z_base()
    }

    /// Same draws as the CPU chains (host, element = chain * L^2 + site), one upload.
    fn draw_base(&mut self, key: RngKey) {
        let up = sigmoid_f32(2.0 * self.params.field as f32);
        let spins: Vec<i32> = (0..self.chains * self.params.sites())
            .map(|i| if key.uniform(i as u32) < up { 1 } else { -1 })
            .collect();
        self.spins.write(&self.client, &spins);
    }

    fn advance(&mut self, from: f64, to: f64, rng: &mut RngStream, _log_weights: &mut [f64]) {
        // log_w += (to - from) J B(s): the fused sum kernel with the field term off.
        lattice::sums(
            &self.client,
            &self.spins,
            &self.bonds,
            &self.magnetization,
            &self.weights.sum,
            &self.weights.carry,
            self.chains,
            self.params.size,
            self.params.coupling as f32,
            0.0,
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

impl<R: CubeRuntime> ModelChains for CubeLatticeChains<R> {
    fn units(&self) -> usize {
        self.params.sites()
    }

    fn linear_statistics(
        &mut self,
        weights: &[f32],
        scale: f64,
        offset: f64,
    ) -> Option<Result<Vec<f64>, EngineError>> {
        let shape = (self.chains, self.params.sites());
        let (client, spins) = (&self.client, &self.spins);
        unless_failed(&mut self.error, || {
            observe::per_chain_linear(client, spins, shape, weights, 0, scale, offset)
        })
    }

    fn pair_products(&mut self, a: usize, b: usize) -> Option<Result<Vec<f64>, EngineError>> {
        let shape = (self.chains, self.params.sites());
        let (client, spins) = (&self.client, &self.spins);
        unless_failed(&mut self.error, || {
            observe::pair_products(client, spins, shape, (a, b), PairForm::IDENTITY)
        })
    }

    /// E(s) = -(J B(s) + h M(s)): the bond and spin sums are exact integers on the device
    /// (the AIS reduction with its log-weight update off); the two per-chain integers are
    /// downloaded and combined in f64, so this equals the host's value exactly.
    fn energies(&mut self) -> Option<Result<Vec<f64>, EngineError>> {
        if let Some(e) = self.error.take() {
            return Some(Err(e));
        }
        let (j, h) = (self.params.coupling, self.params.field);
        lattice::sums(
            &self.client,
            &self.spins,
            &self.bonds,
            &self.magnetization,
            &self.weights.sum,
            &self.weights.carry,
            self.chains,
            self.params.size,
            j as f32,
            h as f32,
            0.0,
        );
        let sums = self
            .bonds
            .download(&self.client)
            .and_then(|b| Ok((b, self.magnetization.download(&self.client)?)));
        Some(sums.map(|(bonds, magnetization)| {
            bonds
                .into_iter()
                .zip(magnetization)
                .map(|(b, m)| -(j * b as f64 + h * m as f64))
                .collect()
        }))
    }

    fn encoding(&self) -> Encoding {
        Encoding::Spin
    }

    fn read_state(&self, chain: usize, out: &mut [f32]) {
        let units = self.params.sites();
        read_chain(&self.client, &self.spins, (chain, units), out, |x| x as f32);
    }

    fn write_state(&mut self, chain: usize, state: &[f32]) {
        let units = self.params.sites();
        let (client, spins) = (&self.client, &mut self.spins);
        write_chain(
            client,
            spins,
            &mut self.error,
            (chain, units),
            state,
            encode_spin,
        );
    }

    fn read_states(&self, out: &mut [f32]) -> Result<(), EngineError> {
        read_all(&self.client, &self.spins, &self.error, out, |x| x as f32)
    }

    fn write_states(&mut self, states: &[f32]) -> Result<(), EngineError> {
        write_all(
            &self.client,
            &mut self.spins,
            &mut self.error,
            states,
            encode_spin,
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
