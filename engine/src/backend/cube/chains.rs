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
//! Errors: kernel launches cannot report failure where the trait methods return nothing;
//! the first error is kept and returned by the next `flush_weights`, `read_states` or
//! `write_states`.

use cubecl::prelude::*;

use super::device::{CubeRuntime, DeviceArray, DeviceElem};
use super::lattice::{self, SpinRule};
use super::matmul::{matmul, Layout, Product};
use super::observe::PairForm;
use super::{ais, observe, potts, rbm};
use crate::error::EngineError;
use crate::estimate::ais::AnnealingPath;
use crate::estimate::chains::lattice::{LatticeChains, LatticeParams};
use crate::estimate::chains::potts::{PottsChains, PottsParams};
use crate::estimate::chains::rbm::{RbmChains, RbmParams};
use crate::estimate::chains::{check_chain_size, Encoding, ModelChains};
use crate::potts::sweep::field_only_states;
use crate::rng::{RngKey, RngStream};
use crate::stats::logspace::sigmoid_f32;

/// Largest device array (elements of 4 bytes) the chains allocate: 2^25 = 128 MiB, the
/// storage-buffer limit of lavapipe and of wgpu's default limits.
pub const MAX_ARRAY_ELEMENTS: usize = 1 << 25;

/// Why a model cannot run on the device chains, or `None` if it can.
pub fn rbm_unsupported(params: &RbmParams, chains: usize) -> Option<String> {
    let biggest = (params.visible * params.hidden).max(chains * params.visible.max(params.hidden));
    (biggest > MAX_ARRAY_ELEMENTS).then(|| {
        format!(
            "{chains} chains of a {}x{} RBM need a device array of {biggest} values, more than \
             the {MAX_ARRAY_ELEMENTS} a storage buffer may hold",
            params.visible, params.hidden
        )
    })
}

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

/// Bernoulli-Bernoulli RBM chains on the device (see the module docs).
pub struct CubeRbmChains<R: CubeRuntime> {
    client: ComputeClient<R>,
    /// One-chain CPU twin: ln Z_0, ln f(v), exact MAP, polishing.
    host: RbmChains,
    base_bias: Vec<f32>,
    chains: usize,
    visible: usize,
    hidden: usize,
    w: DeviceArray<f32>,
    b: DeviceArray<f32>,
    c: DeviceArray<f32>,
    /// Visible biases of the base-rate model.
    a: DeviceArray<f32>,
    /// b - a.
    bias_delta: DeviceArray<f32>,
    v: DeviceArray<f32>,
    h: DeviceArray<f32>,
    pre_h: DeviceArray<f32>,
    pre_v: DeviceArray<f32>,
    /// Hidden scratch: softplus differences (AIS) or probabilities (plain steps).
    terms: DeviceArray<f32>,
    prob_v: DeviceArray<f32>,
    weights: DeviceWeights,
    error: Option<EngineError>,
}

impl<R: CubeRuntime> CubeRbmChains<R> {
    /// `base_bias`: visible biases of the base-rate model (as for `RbmChains::new`).
    pub fn new(
        client: ComputeClient<R>,
        params: RbmParams,
        base_bias: Vec<f32>,
        chains: usize,
    ) -> Result<Self, EngineError> {
        let host = RbmChains::new(params.clone(), base_bias.clone(), 1)?;
        check_chain_size(chains, params.visible.max(params.hidden))?;
        if let Some(why) = rbm_unsupported(&params, chains) {
            return Err(EngineError::InvalidInput(why));
        }
        let (nv, nh) = (params.visible, params.hidden);
        let delta: Vec<f32> = params
            .visible_bias
            .iter()
            .zip(&base_bias)
            .map(|(b, a)| b - a)
            .collect();
        let z = |n: usize| DeviceArray::<f32>::zeros(&client, n);
        Ok(CubeRbmChains {
            w: DeviceArray::upload(&client, &params.weights),
            b: DeviceArray::upload(&client, &params.visible_bias),
            c: DeviceArray::upload(&client, &params.hidden_bias),
            a: DeviceArray::upload(&client, &base_bias),
            bias_delta: DeviceArray::upload(&client, &delta),
            v: z(chains * nv),
            h: z(chains * nh),
            pre_h: z(chains * nh),
            pre_v: z(chains * nv),
            terms: z(chains * nh),
            prob_v: z(chains * nv),
            weights: DeviceWeights::new(&client, chains),
            host,
            base_bias,
            chains,
            visible: nv,
            hidden: nh,
            error: None,
            client,
        })
    }

    fn keep_error(&mut self, r: Result<(), EngineError>) {
        if let Err(e) = r {
            self.error.get_or_insert(e);
        }
    }

    fn take_error(&mut self) -> Result<(), EngineError> {
        match self.error.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// pre_h = v W + c.
    fn hidden_pre(&mut self) {
        let p = Product {
            m: self.chains,
            n: self.hidden,
            k: self.visible,
            layout: Layout::Plain,
            alpha: 1.0,
            beta: 0.0,
        };
        let r = matmul(
            &self.client,
            p,
            &self.v,
            &self.w,
            Some(&self.c),
            &self.pre_h,
        );
        self.keep_error(r);
    }

    /// pre_v = h W^T + b.
    fn visible_pre(&mut self) {
        let p = Product {
            m: self.chains,
            n: self.visible,
            k: self.hidden,
            layout: Layout::TransposedB,
            alpha: 1.0,
            beta: 0.0,
        };
        let r = matmul(
            &self.client,
            p,
            &self.h,
            &self.w,
            Some(&self.b),
            &self.pre_v,
        );
        self.keep_error(r);
    }

    /// v ~ sigmoid(target_scale (b + W h) + base_scale a) from `pre_v`.
    fn draw_visible(&self, key: RngKey, target_scale: f32, base_scale: f32) {
        // `betas` is not read (per-row betas off); `b` fills the binding.
        rbm::sample_bernoulli(
            &self.client,
            &self.pre_v,
            &self.b,
            &self.a,
            &self.prob_v,
            &self.v,
            key,
            self.visible,
            target_scale,
            base_scale,
            false,
            true,
        );
    }

    /// One block-Gibbs step of the joint at hidden scale `target_scale` and visible logits
    /// base_scale a + target_scale (b + W h), without weights (`RbmChains::gibbs`).
    fn gibbs(&mut self, base_scale: f32, target_scale: f32, rng: &mut RngStream) {
        let key_h = rng.next_key();
        let key_v = rng.next_key();
        self.hidden_pre();
        rbm::sample_bernoulli(
            &self.client,
            &self.pre_h,
            &self.c,
            &self.c,
            &self.terms,
            &self.h,
            key_h,
            self.hidden,
            target_scale,
            0.0,
            false,
            true,
        );
        self.visible_pre();
        self.draw_visible(key_v, target_scale, base_scale);
    }
}

impl<R: CubeRuntime> AnnealingPath for CubeRbmChains<R> {
    fn chains(&self) -> usize {
        self.chains
    }

    fn log_z_base(&self) -> f64 {
        self.host.log_z_base()
    }

    /// Exact base-model draws, on the host with the CPU chains' element indices (so both
    /// backends start from the same states), then one upload.
    fn draw_base(&mut self, key: RngKey) {
        let nv = self.visible;
        let p: Vec<f32> = self.base_bias.iter().map(|&a| sigmoid_f32(a)).collect();
        let v: Vec<f32> = (0..self.chains * nv)
            .map(|k| (key.uniform(k as u32) < p[k % nv]) as u8 as f32)
            .collect();
        self.v.write(&self.client, &v);
    }

    fn advance(&mut self, from: f64, to: f64, rng: &mut RngStream, _log_weights: &mut [f64]) {
        let key_h = rng.next_key();
        let key_v = rng.next_key();
        self.hidden_pre();
        ais::ais_hidden(
            &self.client,
            &self.pre_h,
            &self.terms,
            &self.h,
            key_h,
            to as f32,
            from as f32,
        );
        ais::ais_weight(
            &self.client,
            &self.terms,
            &self.v,
            &self.bias_delta,
            &self.weights.sum,
            &self.weights.carry,
            self.chains,
            self.hidden,
            self.visible,
            (to - from) as f32,
        );
        self.visible_pre();
        self.draw_visible(key_v, to as f32, (1.0 - to) as f32);
    }

    fn transition(&mut self, beta: f64, rng: &mut RngStream) {
        self.gibbs((1.0 - beta) as f32, beta as f32, rng);
    }

    fn flush_weights(&mut self, log_weights: &mut [f64]) -> Result<(), EngineError> {
        self.take_error()?;
        self.weights.flush(&self.client, log_weights)
    }
}

impl<R: CubeRuntime> ModelChains for CubeRbmChains<R> {
    fn units(&self) -> usize {
        self.visible
    }

    fn linear_statistics(
        &mut self,
        weights: &[f32],
        scale: f64,
        offset: f64,
    ) -> Option<Result<Vec<f64>, EngineError>> {
        Some(self.take_error().and_then(|()| {
            let shape = (self.chains, self.visible);
            observe::per_chain_linear(&self.client, &self.v, shape, weights, 0, scale, offset)
        }))
    }

    fn pair_products(&mut self, a: usize, b: usize) -> Option<Result<Vec<f64>, EngineError>> {
        Some(self.take_error().and_then(|()| {
            let shape = (self.chains, self.visible);
            observe::pair_products(&self.client, &self.v, shape, (a, b), PairForm::IDENTITY)
        }))
    }

    /// F(v) = -b.v - sum_j softplus(c_j + (v W)_j): the pre-activations from the sweep's
    /// matmul, then one cube per chain (`observe::free_energies`, f32; see its precision).
    fn energies(&mut self) -> Option<Result<Vec<f64>, EngineError>> {
        self.hidden_pre();
        Some(self.take_error().and_then(|()| {
            let shape = (self.chains, self.hidden, self.visible);
            observe::free_energies(&self.client, &self.pre_h, &self.v, &self.b, None, shape)
        }))
    }

    fn encoding(&self) -> Encoding {
        Encoding::Binary
    }

    /// One chain: downloads all states (use `read_states` for many chains).
    fn read_state(&self, chain: usize, out: &mut [f32]) {
        let nv = self.visible;
        match self.v.download(&self.client) {
            Ok(v) => out.copy_from_slice(&v[chain * nv..(chain + 1) * nv]),
            // Not finite: `observe` reports it as a failed run rather than a wrong answer.
            Err(_) => out.fill(f32::NAN),
        }
    }

    fn write_state(&mut self, chain: usize, state: &[f32]) {
        let nv = self.visible;
        let r = self.v.download(&self.client).map(|mut v| {
            v[chain * nv..(chain + 1) * nv].copy_from_slice(state);
            self.v.write(&self.client, &v);
        });
        self.keep_error(r);
    }

    fn read_states(&self, out: &mut [f32]) -> Result<(), EngineError> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        out.copy_from_slice(&self.v.download(&self.client)?);
        Ok(())
    }

    fn write_states(&mut self, states: &[f32]) -> Result<(), EngineError> {
        self.take_error()?;
        self.v.write(&self.client, states);
        Ok(())
    }

    fn backend_name(&self) -> &'static str {
        R::NAME
    }

    fn sweep(&mut self, tau: f64, rng: &mut RngStream) {
        self.gibbs(0.0, tau as f32, rng);
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
