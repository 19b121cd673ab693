//! Gaussian-Bernoulli RBM chains. In the model's space (x = v, or the standardized data
//! (data - mean) / std when the file carries a transform):
//!   E(x, h) = sum_i (x_i - b_i)^2 / (2 sigma_i^2) - c.h - sum_ij (x_i / sigma_i) W_ij h_j.
//!
//! AIS path: the base keeps the Gaussian visible term and drops the weights (and hidden
//! biases), so ln Z_0 = sum_i ln(sqrt(2 pi) sigma_i) + hidden ln 2 and
//! ln f_beta(x) = -sum_i (x_i - b_i)^2 / (2 sigma_i^2) + sum_j softplus(beta pre_j(x)),
//! pre = c + W^T (x / sigma). A transition is one block-Gibbs step of the joint at beta.
//! States are exchanged in data space (the transform undone), so samples, statistics and
//! reverse-AIS start states read like the data; ln Z is that of the model-space density.

use super::rbm::RbmParams;
use super::{team_gibbs, Encoding, ModelChains};
use crate::backend::cpu::gemm::{matmul, View};
use crate::backend::cpu::lookup::product_of_states;
use crate::error::EngineError;
use crate::estimate::ais::{AnnealingPath, Hooks};
use crate::rng::{RngKey, RngStream};
use crate::stats::logspace::{softplus, LogSumExp};

#[derive(Clone, Debug, PartialEq)]
pub struct GaussianRbmParams {
    pub rbm: RbmParams,
    pub sigma: Vec<f32>,
    /// Data transform (mean, std): x_model = (x_data - mean) / std.
    pub transform: Option<(Vec<f32>, Vec<f32>)>,
}

impl GaussianRbmParams {
    pub(crate) fn to_model(&self, data: &[f32], out: &mut [f32]) {
        match &self.transform {
            Some((mean, std)) => {
                for i in 0..out.len() {
                    out[i] = (data[i] - mean[i]) / std[i];
                }
            }
            None => out.copy_from_slice(data),
        }
    }

    pub(crate) fn to_data(&self, model: &[f32], out: &mut [f32]) {
        match &self.transform {
            Some((mean, std)) => {
                for i in 0..out.len() {
                    out[i] = model[i] * std[i] + mean[i];
                }
            }
            None => out.copy_from_slice(model),
        }
    }

    /// ln f(x) of the model-space state x, hidden units summed out.
    fn log_marginal_model(&self, x: &[f32]) -> f64 {
        let p = &self.rbm;
        let mut total = 0.0;
        let mut pre: Vec<f64> = p.hidden_bias.iter().map(|&c| c as f64).collect();
        for i in 0..p.visible {
            let s = self.sigma[i] as f64;
            let xi = x[i] as f64;
            total -= (xi - p.visible_bias[i] as f64).powi(2) / (2.0 * s * s);
            for (j, pj) in pre.iter_mut().enumerate() {
                *pj += xi / s * p.weights[i * p.hidden + j] as f64;
            }
        }
        total + pre.iter().map(|&v| softplus(v)).sum::<f64>()
    }

    /// Exact ln Z by enumerating the hidden layer, integrating the Gaussian visibles:
    /// ln Z = ln sum_h exp(c.h + sum_i (a_i b_i / sigma_i + a_i^2 / 2)) + sum_i ln(sqrt(2 pi) sigma_i),
    /// a = W h.
    pub fn exact_log_z(&self, hooks: &mut Hooks<'_>) -> Result<f64, EngineError> {
        let p = &self.rbm;
        if p.hidden > super::super::exact::MAX_RBM_BITS {
            return Err(EngineError::InvalidInput(format!(
                "exact ln Z of a gaussian_rbm sums over the hidden layer, which has {} units here; at most {} are allowed: use method = \"ais\"",
                p.hidden,
                super::super::exact::MAX_RBM_BITS
            )));
        }
        let (nv, nh) = (p.visible, p.hidden);
        let columns: Vec<f64> = (0..nh * nv)
            .map(|k| p.weights[(k % nv) * nh + k / nv] as f64)
            .collect();
        let b_over_s: Vec<f64> = (0..nv)
            .map(|i| p.visible_bias[i] as f64 / self.sigma[i] as f64)
            .collect();
        let mut acc = LogSumExp::new();
        let mut a = vec![0.0f64; nv];
        let mut on = vec![false; nh];
        let mut linear = 0.0;
        for g in 0u64..(1 << nh) {
            if g > 0 {
                let j = g.trailing_zeros() as usize;
                let sign = if on[j] { -1.0 } else { 1.0 };
                on[j] = !on[j];
                linear += sign * p.hidden_bias[j] as f64;
                for (ai, w) in a.iter_mut().zip(&columns[j * nv..(j + 1) * nv]) {
                    *ai += sign * w;
                }
            }
            if g % 4096 == 0 && (hooks.should_stop)() {
                return Err(EngineError::Interrupted);
            }
            acc.add(
                linear
                    + a.iter()
                        .zip(&b_over_s)
                        .map(|(&ai, &bs)| ai * bs + ai * ai / 2.0)
                        .sum::<f64>(),
            );
        }
        (hooks.progress)(1.0);
        let norm: f64 = self
            .sigma
            .iter()
            .map(|&s| (std::f64::consts::TAU.sqrt() * s as f64).ln())
            .sum();
        Ok(acc.value() + norm)
    }
}

pub struct GaussianRbmChains {
    params: GaussianRbmParams,
    chains: usize,
    /// Model-space visible states.
    visible_states: Vec<f32>,
    hidden_states: Vec<f32>,
    scaled: Vec<f32>,
    pre_hidden: Vec<f32>,
    pre_visible: Vec<f32>,
}

impl GaussianRbmChains {
    pub fn new(params: GaussianRbmParams, chains: usize) -> Result<Self, EngineError> {
        params.rbm.check()?;
        if params.sigma.len() != params.rbm.visible
            || params.sigma.iter().any(|&s| !(s > 0.0 && s.is_finite()))
        {
            return Err(EngineError::InvalidInput(
                "sigma must have one positive value per visible unit".into(),
            ));
        }
        super::check_chain_size(chains, params.rbm.visible.max(params.rbm.hidden))?;
        let (nv, nh) = (params.rbm.visible, params.rbm.hidden);
        Ok(GaussianRbmChains {
            visible_states: vec![0.0; chains * nv],
            hidden_states: vec![0.0; chains * nh],
            scaled: vec![0.0; chains * nv],
            pre_hidden: vec![0.0; chains * nh],
            pre_visible: vec![0.0; chains * nv],
            params,
            chains,
        })
    }

    /// Hidden logits hidden_scale (c + W^T x/sigma); visible means b + sigma mean_scale W h
    /// with sd sigma sd_scale. Adds the AIS increment first if asked.
    #[allow(clippy::too_many_arguments)]
    fn gibbs(
        &mut self,
        hidden_scale: f32,
        mean_scale: f32,
        sd_scale: f32,
        rng: &mut RngStream,
        weights: &mut [f64],
        increment: Option<(f64, f64)>,
    ) {
        let (nv, nh, n) = (self.params.rbm.visible, self.params.rbm.hidden, self.chains);
        let key_h = rng.next_key();
        let key_v = rng.next_key();
        let p = &self.params.rbm;
        let sigma = &self.params.sigma;
        for (k, (s, &x)) in self.scaled.iter_mut().zip(&self.visible_states).enumerate() {
            *s = x / sigma[k % nv];
        }
        matmul(
            &mut self.pre_hidden,
            View::new(&self.scaled, n, nv),
            View::new(&p.weights, nv, nh),
            1.0,
            false,
        );
        team_gibbs::hidden_half(
            &mut self.pre_hidden,
            &mut self.hidden_states,
            weights,
            &p.hidden_bias,
            hidden_scale,
            &key_h,
            increment,
            &|_| 0.0,
        );
        product_of_states(
            &mut self.pre_visible,
            &self.hidden_states,
            n,
            &p.weights,
            (nh, nv),
            true,
        );
        team_gibbs::visible_half(
            &mut self.pre_visible,
            &mut self.visible_states,
            nv,
            &|c, pre, v| {
                for (i, vi) in v.iter_mut().enumerate() {
                    let mean = p.visible_bias[i] + sigma[i] * mean_scale * pre[i];
                    *vi = mean + sigma[i] * sd_scale * key_v.normal((c * nv + i) as u32);
                }
            },
        );
    }
}

impl AnnealingPath for GaussianRbmChains {
    fn chains(&self) -> usize {
        self.chains
    }

    fn log_z_base(&self) -> f64 {
        self.params
            .sigma
            .iter()
            .map(|&s| (std::f64::consts::TAU.sqrt() * s as f64).ln())
            .sum::<f64>()
            + self.params.rbm.hidden as f64 * 2f64.ln()
    }

    fn draw_base(&mut self, key: RngKey) {
        let nv = self.params.rbm.visible;
        let (b, sigma) = (&self.params.rbm.visible_bias, &self.params.sigma);
        for (k, x) in self.visible_states.iter_mut().enumerate() {
            *x = b[k % nv] + sigma[k % nv] * key.normal(k as u32);
        }
    }

    fn advance(&mut self, from: f64, to: f64, rng: &mut RngStream, log_weights: &mut [f64]) {
        self.gibbs(
            to as f32,
            to as f32,
            1.0,
            rng,
            log_weights,
            Some((from, to)),
        );
    }

    fn transition(&mut self, beta: f64, rng: &mut RngStream) {
        let mut unused = vec![0.0; self.chains];
        self.gibbs(beta as f32, beta as f32, 1.0, rng, &mut unused, None);
    }
}

impl ModelChains for GaussianRbmChains {
    fn units(&self) -> usize {
        self.params.rbm.visible
    }

    fn encoding(&self) -> Encoding {
        Encoding::Real
    }

    fn read_state(&self, chain: usize, out: &mut [f32]) {
        let nv = self.params.rbm.visible;
        self.params
            .to_data(&self.visible_states[chain * nv..(chain + 1) * nv], out);
    }

    fn write_state(&mut self, chain: usize, state: &[f32]) {
        let nv = self.params.rbm.visible;
        let mut x = vec![0.0; nv];
        self.params.to_model(state, &mut x);
        self.visible_states[chain * nv..(chain + 1) * nv].copy_from_slice(&x);
    }

    /// p^tau of the joint: hidden logits scale by tau, visible variances by 1/tau.
    fn sweep(&mut self, tau: f64, rng: &mut RngStream) {
        let mut unused = vec![0.0; self.chains];
        self.gibbs(
            tau as f32,
            1.0,
            (1.0 / tau.sqrt()) as f32,
            rng,
            &mut unused,
            None,
        );
    }

    fn log_target(&self, state: &[f32]) -> f64 {
        let mut x = vec![0.0; state.len()];
        self.params.to_model(state, &mut x);
        self.params.log_marginal_model(&x)
    }

    /// Zero weights: every visible unit sits at its mean b_i.
    fn exact_map(&self) -> Option<Vec<f32>> {
        self.params.rbm.has_zero_weights().then(|| {
            let mut out = vec![0.0; self.params.rbm.visible];
            self.params.to_data(&self.params.rbm.visible_bias, &mut out);
            out
        })
    }

    /// Continuous units: the annealed state at high tau is already near a local maximum.
    fn polish(&self, _state: &mut [f32]) {}
}
