//! [`CubeRbmChains`]: Bernoulli-Bernoulli RBM chains on the device (see `chains`).

use cubecl::prelude::*;

use super::{DeviceWeights, MAX_ARRAY_ELEMENTS};
use crate::backend::cube::device::{CubeRuntime, DeviceArray};
use crate::backend::cube::matmul::{matmul, Layout, Product};
use crate::backend::cube::observe::{self, PairForm};
use crate::backend::cube::{ais, rbm};
use crate::error::EngineError;
use crate::estimate::ais::AnnealingPath;
use crate::estimate::chains::rbm::{RbmChains, RbmParams};
use crate::estimate::chains::{check_chain_size, Encoding, ModelChains};
use crate::rng::{RngKey, RngStream};
use crate::stats::logspace::sigmoid_f32;

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
