//! Gaussian-Bernoulli RBM chains on the device: what `estimate::chains::gaussian::
//! GaussianRbmChains` computes (its module docs give the path), with the states, scratch
//! and log-weights resident. Same AIS base and ln Z_0, same increments (the softplus
//! differences only: the Gaussian visible term is the same at every beta, so it cancels),
//! same transition (one block-Gibbs step of the joint at beta), same keys and elements
//! (`chain * width + unit`; Box-Muller of the element for the visibles), so with one seed
//! both make the same draws up to f32 rounding and near ties.
//!
//! The device holds model-space states; the transform is applied on the host where states
//! cross the bus, and folded into the weights and offset of `linear_statistics`, so that
//! everything the callers see is in data space, as on the CPU.

use cubecl::prelude::*;

use super::chains::{rbm_unsupported, DeviceWeights};
use super::device::{CubeRuntime, DeviceArray};
use super::matmul::{matmul, Layout, Product};
use super::observe::PairForm;
use super::{ais, observe, rbm};
use crate::error::EngineError;
use crate::estimate::ais::AnnealingPath;
use crate::estimate::chains::gaussian::{GaussianRbmChains, GaussianRbmParams};
use crate::estimate::chains::{check_chain_size, Encoding, ModelChains};
use crate::rng::{RngKey, RngStream};

/// Why a Gaussian RBM cannot run on the device chains, or `None` if it can (the arrays
/// are those of a Bernoulli RBM of the same shape).
pub fn gaussian_unsupported(params: &GaussianRbmParams, chains: usize) -> Option<String> {
    rbm_unsupported(&params.rbm, chains)
}

/// Gaussian-Bernoulli RBM chains on the device (see the module docs).
pub struct CubeGaussianRbmChains<R: CubeRuntime> {
    client: ComputeClient<R>,
    /// One-chain CPU twin: ln Z_0, ln f(x), exact MAP, polishing.
    host: GaussianRbmChains,
    params: GaussianRbmParams,
    chains: usize,
    visible: usize,
    hidden: usize,
    w: DeviceArray<f32>,
    b: DeviceArray<f32>,
    c: DeviceArray<f32>,
    sigma: DeviceArray<f32>,
    /// Zero "bias delta" of `ais_weight`: no visible term in the increments.
    no_visible_term: DeviceArray<f32>,
    /// Model-space visible states.
    x: DeviceArray<f32>,
    /// x / sigma.
    scaled: DeviceArray<f32>,
    h: DeviceArray<f32>,
    pre_h: DeviceArray<f32>,
    pre_v: DeviceArray<f32>,
    /// Hidden scratch: softplus differences (AIS) or probabilities (plain steps).
    terms: DeviceArray<f32>,
    mean_v: DeviceArray<f32>,
    weights: DeviceWeights,
    error: Option<EngineError>,
}

impl<R: CubeRuntime> CubeGaussianRbmChains<R> {
    pub fn new(
        client: ComputeClient<R>,
        params: GaussianRbmParams,
        chains: usize,
    ) -> Result<Self, EngineError> {
        // Validates the parameters and sigma as the CPU chains do.
        let host = GaussianRbmChains::new(params.clone(), 1)?;
        let (nv, nh) = (params.rbm.visible, params.rbm.hidden);
        check_chain_size(chains, nv.max(nh))?;
        if let Some(why) = gaussian_unsupported(&params, chains) {
            return Err(EngineError::InvalidInput(why));
        }
        let z = |n: usize| DeviceArray::<f32>::zeros(&client, n);
        Ok(CubeGaussianRbmChains {
            w: DeviceArray::upload(&client, &params.rbm.weights),
            b: DeviceArray::upload(&client, &params.rbm.visible_bias),
            c: DeviceArray::upload(&client, &params.rbm.hidden_bias),
            sigma: DeviceArray::upload(&client, &params.sigma),
            no_visible_term: z(nv),
            x: z(chains * nv),
            scaled: z(chains * nv),
            h: z(chains * nh),
            pre_h: z(chains * nh),
            pre_v: z(chains * nv),
            terms: z(chains * nh),
            mean_v: z(chains * nv),
            weights: DeviceWeights::new(&client, chains),
            host,
            params,
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

    /// pre_h = (x / sigma) W + c (via `scaled`).
    fn hidden_pre(&mut self) {
        let (n, nv, nh) = (self.chains, self.visible, self.hidden);
        rbm::divide_columns(&self.client, &self.x, &self.sigma, &self.scaled, nv);
        let p = Product {
            m: n,
            n: nh,
            k: nv,
            layout: Layout::Plain,
            alpha: 1.0,
            beta: 0.0,
        };
        let r = matmul(
            &self.client,
            p,
            &self.scaled,
            &self.w,
            Some(&self.c),
            &self.pre_h,
        );
        self.keep_error(r);
    }

    /// `GaussianRbmChains::gibbs`: hidden logits hidden_scale (c + W^T x/sigma), visible
    /// means b + sigma mean_scale W h with sd sigma sd_scale; with `increment = (from, to)`
    /// (then hidden_scale = to) the softplus differences go into the log-weights first.
    fn gibbs(
        &mut self,
        hidden_scale: f32,
        mean_scale: f32,
        sd_scale: f32,
        rng: &mut RngStream,
        increment: Option<(f64, f64)>,
    ) {
        let key_h = rng.next_key();
        let key_v = rng.next_key();
        let (n, nv, nh) = (self.chains, self.visible, self.hidden);
        self.hidden_pre();
        match increment {
            Some((from, to)) => {
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
                    &self.x,
                    &self.no_visible_term,
                    &self.weights.sum,
                    &self.weights.carry,
                    n,
                    nh,
                    nv,
                    0.0,
                );
            }
            // `betas` is not read (per-row betas off); `c` fills the binding.
            None => rbm::sample_bernoulli(
                &self.client,
                &self.pre_h,
                &self.c,
                &self.c,
                &self.terms,
                &self.h,
                key_h,
                nh,
                hidden_scale,
                0.0,
                false,
                true,
            ),
        }
        // pre_v = mean_scale W h, so that the epilogue's per-unit scale is just sigma.
        let visible_pre = Product {
            m: n,
            n: nv,
            k: nh,
            layout: Layout::TransposedB,
            alpha: mean_scale,
            beta: 0.0,
        };
        let r = matmul(
            &self.client,
            visible_pre,
            &self.h,
            &self.w,
            None,
            &self.pre_v,
        );
        self.keep_error(r);
        rbm::sample_gaussian(
            &self.client,
            &self.pre_v,
            &self.b,
            &self.sigma,
            &self.sigma,
            &self.mean_v,
            &self.x,
            key_v,
            nv,
            sd_scale,
        );
    }

    /// All model-space states, downloaded.
    fn download_model(&self) -> Result<Vec<f32>, EngineError> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        self.x.download(&self.client)
    }
}

impl<R: CubeRuntime> AnnealingPath for CubeGaussianRbmChains<R> {
    fn chains(&self) -> usize {
        self.chains
    }

    fn log_z_base(&self) -> f64 {
        self.host.log_z_base()
    }

    /// x = b + sigma z, z the normal of element `chain * visible + unit` as on the CPU;
    /// drawn on the host, one upload.
    fn draw_base(&mut self, key: RngKey) {
        let nv = self.visible;
        let (b, sigma) = (&self.params.rbm.visible_bias, &self.params.sigma);
        let x: Vec<f32> = (0..self.chains * nv)
            .map(|k| b[k % nv] + sigma[k % nv] * key.normal(k as u32))
            .collect();
        self.x.write(&self.client, &x);
    }

    fn advance(&mut self, from: f64, to: f64, rng: &mut RngStream, _log_weights: &mut [f64]) {
        self.gibbs(to as f32, to as f32, 1.0, rng, Some((from, to)));
    }

    fn transition(&mut self, beta: f64, rng: &mut RngStream) {
        self.gibbs(beta as f32, beta as f32, 1.0, rng, None);
    }

    fn flush_weights(&mut self, log_weights: &mut [f64]) -> Result<(), EngineError> {
        self.take_error()?;
        self.weights.flush(&self.client, log_weights)
    }
}

impl<R: CubeRuntime> ModelChains for CubeGaussianRbmChains<R> {
    fn units(&self) -> usize {
        self.visible
    }

    fn encoding(&self) -> Encoding {
        Encoding::Real
    }

    /// In data space: sum_i w_i (x_i std_i + mean_i) = sum_i (w_i std_i) x_i + w.mean, so
    /// the device reduces the model-space states with weights w std and the offset takes
    /// scale w.mean (in f64).
    fn linear_statistics(
        &mut self,
        weights: &[f32],
        scale: f64,
        offset: f64,
    ) -> Option<Result<Vec<f64>, EngineError>> {
        let (weights, offset) = match &self.params.transform {
            Some((mean, std)) => (
                weights.iter().zip(std).map(|(w, s)| w * s).collect(),
                offset
                    + scale
                        * weights
                            .iter()
                            .zip(mean)
                            .map(|(&w, &m)| w as f64 * m as f64)
                            .sum::<f64>(),
            ),
            None => (weights.to_vec(), offset),
        };
        Some(self.take_error().and_then(|()| {
            let shape = (self.chains, self.visible);
            observe::per_chain_linear(&self.client, &self.x, shape, &weights, 0, scale, offset)
        }))
    }

    /// In data space: (std_a x_a + mean_a)(std_b x_b + mean_b) of the model-space states.
    fn pair_products(&mut self, a: usize, b: usize) -> Option<Result<Vec<f64>, EngineError>> {
        let affine = match &self.params.transform {
            Some((mean, std)) => [(std[a], mean[a]), (std[b], mean[b])],
            None => [(1.0, 0.0); 2],
        };
        Some(self.take_error().and_then(|()| {
            let shape = (self.chains, self.visible);
            let form = PairForm::Numeric(affine);
            observe::pair_products(&self.client, &self.x, shape, (a, b), form)
        }))
    }

    /// F(x) = sum_i (x_i - b_i)^2 / (2 sigma_i^2) - sum_j softplus(c_j + (x/sigma W)_j) of
    /// the model-space state (what `log_target` computes from the data-space state): the
    /// sweep's scaling and matmul, then one cube per chain (`observe::free_energies`).
    fn energies(&mut self) -> Option<Result<Vec<f64>, EngineError>> {
        let (n, nv, nh) = (self.chains, self.visible, self.hidden);
        self.hidden_pre();
        Some(self.take_error().and_then(|()| {
            let (b, sigma) = (&self.b, Some(&self.sigma));
            observe::free_energies(&self.client, &self.pre_h, &self.x, b, sigma, (n, nh, nv))
        }))
    }

    /// One chain: downloads all states (use `read_states` for many chains).
    fn read_state(&self, chain: usize, out: &mut [f32]) {
        let nv = self.visible;
        match self.x.download(&self.client) {
            Ok(x) => self.params.to_data(&x[chain * nv..(chain + 1) * nv], out),
            // Not finite: `observe` reports it as a failed run rather than a wrong answer.
            Err(_) => out.fill(f32::NAN),
        }
    }

    fn write_state(&mut self, chain: usize, state: &[f32]) {
        let nv = self.visible;
        let r = self.x.download(&self.client).map(|mut x| {
            self.params
                .to_model(state, &mut x[chain * nv..(chain + 1) * nv]);
            self.x.write(&self.client, &x);
        });
        self.keep_error(r);
    }

    fn read_states(&self, out: &mut [f32]) -> Result<(), EngineError> {
        let x = self.download_model()?;
        let nv = self.visible;
        for (o, m) in out.chunks_exact_mut(nv).zip(x.chunks_exact(nv)) {
            self.params.to_data(m, o);
        }
        Ok(())
    }

    fn write_states(&mut self, states: &[f32]) -> Result<(), EngineError> {
        self.take_error()?;
        let nv = self.visible;
        let mut x = vec![0.0; states.len()];
        for (m, s) in x.chunks_exact_mut(nv).zip(states.chunks_exact(nv)) {
            self.params.to_model(s, m);
        }
        self.x.write(&self.client, &x);
        Ok(())
    }

    fn backend_name(&self) -> &'static str {
        R::NAME
    }

    /// p^tau of the joint: hidden logits scale by tau, visible variances by 1/tau.
    fn sweep(&mut self, tau: f64, rng: &mut RngStream) {
        self.gibbs(tau as f32, 1.0, (1.0 / tau.sqrt()) as f32, rng, None);
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
