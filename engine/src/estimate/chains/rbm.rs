//! Bernoulli-Bernoulli RBM chains. E(v, h) = -v.b - h.c - v^T W h, v, h in {0, 1}.
//!
//! AIS path (Salakhutdinov & Murray 2008): the base model has zero weights and visible
//! biases `a` (the data's base rates, or the model's own b), and the intermediate
//! distribution at beta is the joint
//!   p_beta(v, h) ∝ exp((1 - beta) a.v + beta (b.v + c.h + v^T W h)),
//! whose visible marginal is
//!   ln f_beta(v) = (1-beta) a.v + beta b.v + sum_j softplus(beta (c_j + W_j.v)).
//! At beta = 0 this is exp(a.v) 2^hidden, so ln Z_0 = sum_i softplus(a_i) + hidden ln 2.
//! A transition at beta is one block-Gibbs step of the joint (h | v, then v | h).

use rayon::prelude::*;

use super::{team_gibbs, Encoding, ModelChains};
use crate::backend::cpu::elementwise::bernoulli_rows;
use crate::backend::cpu::lookup::product_of_states;
use crate::error::EngineError;
use crate::estimate::ais::AnnealingPath;
use crate::rng::{RngKey, RngStream};
use crate::stats::logspace::{sigmoid_f32, softplus};

/// Parameters of a Bernoulli-Bernoulli RBM. `weights` is [visible, hidden] row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct RbmParams {
    pub visible: usize,
    pub hidden: usize,
    pub weights: Vec<f32>,
    pub visible_bias: Vec<f32>,
    pub hidden_bias: Vec<f32>,
}

impl RbmParams {
    pub fn check(&self) -> Result<(), EngineError> {
        if self.visible == 0 || self.hidden == 0 {
            return Err(EngineError::InvalidInput(
                "an RBM needs at least one visible and one hidden unit".into(),
            ));
        }
        if self.weights.len() != self.visible * self.hidden
            || self.visible_bias.len() != self.visible
            || self.hidden_bias.len() != self.hidden
        {
            return Err(EngineError::InvalidInput(
                "RBM parameter shapes do not match visible x hidden".into(),
            ));
        }
        if self
            .weights
            .iter()
            .chain(&self.visible_bias)
            .chain(&self.hidden_bias)
            .any(|x| !x.is_finite())
        {
            return Err(EngineError::InvalidInput(
                "the RBM has non-finite parameters".into(),
            ));
        }
        Ok(())
    }

    /// Hidden pre-activations c + W^T v (f32, as the samplers use them).
    fn hidden_input(&self, v: &[f32], pre: &mut [f32]) {
        pre.copy_from_slice(&self.hidden_bias);
        for (i, &vi) in v.iter().enumerate() {
            if vi != 0.0 {
                let row = &self.weights[i * self.hidden..(i + 1) * self.hidden];
                for (p, w) in pre.iter_mut().zip(row) {
                    *p += vi * w;
                }
            }
        }
    }

    /// Minus the free energy: ln sum_h exp(-E(v, h)) = b.v + sum_j softplus(c_j + W_j.v).
    pub fn log_marginal(&self, v: &[f32]) -> f64 {
        let mut pre = vec![0.0; self.hidden];
        self.hidden_input(v, &mut pre);
        let linear: f64 = v
            .iter()
            .zip(&self.visible_bias)
            .map(|(&x, &b)| x as f64 * b as f64)
            .sum();
        linear + pre.iter().map(|&p| softplus(p as f64)).sum::<f64>()
    }

    pub fn has_zero_weights(&self) -> bool {
        self.weights.iter().all(|&w| w == 0.0)
    }
}

/// Visible biases of the base-rate model: logits of the data's per-unit means with one
/// pseudo-count on each side (so a unit never on in the data gets a finite bias).
pub fn base_rate_bias(data: &[f32], rows: usize, visible: usize) -> Vec<f32> {
    let mut on = vec![0.0f64; visible];
    for row in data.chunks_exact(visible).take(rows) {
        for (s, &x) in on.iter_mut().zip(row) {
            *s += x.clamp(0.0, 1.0) as f64;
        }
    }
    on.iter()
        .map(|&s| {
            let p = (s + 1.0) / (rows as f64 + 2.0);
            (p / (1.0 - p)).ln() as f32
        })
        .collect()
}

pub struct RbmChains {
    params: RbmParams,
    base_bias: Vec<f32>,
    chains: usize,
    visible_states: Vec<f32>,
    hidden_states: Vec<f32>,
    /// Scratch: pre-activations of all chains (GEMM outputs).
    pre_hidden: Vec<f32>,
    pre_visible: Vec<f32>,
    /// Zeros (length visible): the visible logits are complete before the sigmoid.
    zero_visible_bias: Vec<f32>,
    /// Log-weights that plain transitions (no AIS step) write nowhere: kept, not
    /// allocated per step.
    unused_weights: Vec<f64>,
}

impl RbmChains {
    /// `base_bias`: visible biases of the base-rate model (length visible).
    pub fn new(params: RbmParams, base_bias: Vec<f32>, chains: usize) -> Result<Self, EngineError> {
        params.check()?;
        super::check_chain_size(chains, params.visible.max(params.hidden))?;
        if base_bias.len() != params.visible || base_bias.iter().any(|x| !x.is_finite()) {
            return Err(EngineError::Internal(
                "base-rate biases do not match the model".into(),
            ));
        }
        Ok(RbmChains {
            visible_states: vec![0.0; chains * params.visible],
            hidden_states: vec![0.0; chains * params.hidden],
            pre_hidden: vec![0.0; chains * params.hidden],
            pre_visible: vec![0.0; chains * params.visible],
            zero_visible_bias: vec![0.0; params.visible],
            unused_weights: vec![0.0; chains],
            params,
            base_bias,
            chains,
        })
    }

    pub fn params(&self) -> &RbmParams {
        &self.params
    }

    /// One block-Gibbs step of the joint with visible logits base_scale a + target_scale
    /// (b + W h) and hidden logits target_scale (c + W^T v); before moving, adds
    /// ln f_to(v) - ln f_from(v) of the AIS path to each weight if `increment` is given.
    /// The two pre-activation products are GEMMs over all chains; the rest is per chain.
    fn gibbs(
        &mut self,
        base_scale: f32,
        target_scale: f32,
        rng: &mut RngStream,
        weights: &mut [f64],
        increment: Option<(f64, f64)>,
    ) {
        let (nv, nh, n) = (self.params.visible, self.params.hidden, self.chains);
        let key_h = rng.next_key();
        let key_v = rng.next_key();
        let p = &self.params;
        let a = &self.base_bias;
        product_of_states(
            &mut self.pre_hidden,
            &self.visible_states,
            n,
            &p.weights,
            (nv, nh),
            false,
        );
        let visible = &self.visible_states;
        let linear = |c: usize| -> f64 {
            let v = &visible[c * nv..(c + 1) * nv];
            v.iter()
                .zip(&p.visible_bias)
                .zip(a)
                .map(|((&x, &b), &a)| x as f64 * (b as f64 - a as f64))
                .sum()
        };
        team_gibbs::hidden_half(
            &mut self.pre_hidden,
            &mut self.hidden_states,
            weights,
            &p.hidden_bias,
            target_scale,
            &key_h,
            increment,
            &linear,
        );
        product_of_states(
            &mut self.pre_visible,
            &self.hidden_states,
            n,
            &p.weights,
            (nh, nv),
            true,
        );
        let zero_bias = &self.zero_visible_bias;
        team_gibbs::visible_half(
            &mut self.pre_visible,
            &mut self.visible_states,
            nv,
            &|c, pre, v| {
                for ((x, &a), &b) in pre.iter_mut().zip(a).zip(&p.visible_bias) {
                    *x = base_scale * a + target_scale * (b + *x);
                }
                bernoulli_rows(pre, zero_bias, 1.0, &key_v, (c * nv) as u32, Some(v));
            },
        );
    }
}

impl AnnealingPath for RbmChains {
    fn chains(&self) -> usize {
        self.chains
    }

    fn log_z_base(&self) -> f64 {
        self.base_bias
            .iter()
            .map(|&a| softplus(a as f64))
            .sum::<f64>()
            + self.params.hidden as f64 * 2f64.ln()
    }

    fn draw_base(&mut self, key: RngKey) {
        let nv = self.params.visible;
        let a = &self.base_bias;
        self.visible_states
            .par_chunks_mut(nv)
            .enumerate()
            .for_each(|(c, v)| {
                for (i, vi) in v.iter_mut().enumerate() {
                    *vi = (key.uniform((c * nv + i) as u32) < sigmoid_f32(a[i])) as u8 as f32;
                }
            });
    }

    fn advance(&mut self, from: f64, to: f64, rng: &mut RngStream, log_weights: &mut [f64]) {
        self.gibbs(
            (1.0 - to) as f32,
            to as f32,
            rng,
            log_weights,
            Some((from, to)),
        );
    }

    fn transition(&mut self, beta: f64, rng: &mut RngStream) {
        let mut unused = std::mem::take(&mut self.unused_weights);
        self.gibbs((1.0 - beta) as f32, beta as f32, rng, &mut unused, None);
        self.unused_weights = unused;
    }
}

impl ModelChains for RbmChains {
    fn units(&self) -> usize {
        self.params.visible
    }

    fn encoding(&self) -> Encoding {
        Encoding::Binary
    }

    fn read_state(&self, chain: usize, out: &mut [f32]) {
        let nv = self.params.visible;
        out.copy_from_slice(&self.visible_states[chain * nv..(chain + 1) * nv]);
    }

    fn write_state(&mut self, chain: usize, state: &[f32]) {
        let nv = self.params.visible;
        self.visible_states[chain * nv..(chain + 1) * nv].copy_from_slice(state);
    }

    fn sweep(&mut self, tau: f64, rng: &mut RngStream) {
        let mut unused = std::mem::take(&mut self.unused_weights);
        self.gibbs(0.0, tau as f32, rng, &mut unused, None);
        self.unused_weights = unused;
    }

    fn log_target(&self, state: &[f32]) -> f64 {
        self.params.log_marginal(state)
    }

    /// With zero weights the visible units are independent: on iff b_i > 0.
    fn exact_map(&self) -> Option<Vec<f32>> {
        self.params.has_zero_weights().then(|| {
            self.params
                .visible_bias
                .iter()
                .map(|&b| (b > 0.0) as u8 as f32)
                .collect()
        })
    }

    fn polish(&self, state: &mut [f32]) {
        let p = &self.params;
        let nh = p.hidden;
        let mut pre32 = vec![0.0f32; nh];
        p.hidden_input(state, &mut pre32);
        let mut pre: Vec<f64> = pre32.iter().map(|&x| x as f64).collect();
        for _pass in 0..1000 {
            let mut improved = false;
            for i in 0..p.visible {
                let sign = if state[i] == 0.0 { 1.0 } else { -1.0 };
                let row = &p.weights[i * nh..(i + 1) * nh];
                let gain: f64 = sign * p.visible_bias[i] as f64
                    + pre
                        .iter()
                        .zip(row)
                        .map(|(&x, &w)| softplus(x + sign * w as f64) - softplus(x))
                        .sum::<f64>();
                if gain > 1e-12 {
                    state[i] = 1.0 - state[i];
                    for (x, &w) in pre.iter_mut().zip(row) {
                        *x += sign * w as f64;
                    }
                    improved = true;
                }
            }
            if !improved {
                break;
            }
        }
    }
}
