//! Restricted Boltzmann machines: the host-side model (parameters in f32, evaluation in
//! f64), its metrics (pseudo-log-likelihood, reconstruction error, exact log-likelihood by
//! enumeration of the smaller layer in `exact`), spec validation, and the trainer
//! (`trainer`), which runs on any [`crate::backend::Backend`].

pub mod checkpoint;
pub mod exact;
pub mod family;
pub mod file;
pub mod trainer;

use crate::backend::cpu::elementwise::{fast_softplus, softplus_change};
use crate::backend::VisibleUnits;
use crate::data::{Dataset, ValueKind};
use crate::error::{EngineError, Result};
use crate::spec::{
    DataShape, Method, ModelSpec, ModelType, TrainSettings, TrainSpec, MAX_CHAIN_CELLS, MAX_HIDDEN,
    MAX_PARAMETERS,
};
use rayon::prelude::*;

/// Per-column affine transform applied to the data before training (Gaussian RBMs):
/// `x_model = (x_data - mean) / std`.
#[derive(Clone, Debug, PartialEq)]
pub struct Standardization {
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

impl Standardization {
    /// Column means and standard deviations; a constant column gets std 1.
    pub fn fit(values: &[f32], rows: usize, cols: usize) -> Self {
        let mut mean = vec![0.0f64; cols];
        let mut sq = vec![0.0f64; cols];
        for row in values.chunks_exact(cols) {
            for j in 0..cols {
                mean[j] += row[j] as f64;
            }
        }
        mean.iter_mut().for_each(|m| *m /= rows as f64);
        for row in values.chunks_exact(cols) {
            for j in 0..cols {
                sq[j] += (row[j] as f64 - mean[j]).powi(2);
            }
        }
        let std = sq
            .iter()
            .map(|s| {
                let sd = (s / rows as f64).sqrt();
                if sd > 1e-8 {
                    sd as f32
                } else {
                    1.0
                }
            })
            .collect();
        Standardization {
            mean: mean.iter().map(|m| *m as f32).collect(),
            std,
        }
    }

    pub fn apply(&self, values: &mut [f32]) {
        let cols = self.mean.len();
        for row in values.chunks_exact_mut(cols) {
            for j in 0..cols {
                row[j] = (row[j] - self.mean[j]) / self.std[j];
            }
        }
    }
}

/// An RBM's parameters on the host. `w` is visible x hidden, row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct RbmModel {
    pub units: VisibleUnits,
    pub visible: usize,
    pub hidden: usize,
    pub w: Vec<f32>,
    pub b: Vec<f32>,
    pub c: Vec<f32>,
    /// Gaussian visible units: per-visible standard deviation.
    pub sigma: Option<Vec<f32>>,
    /// Gaussian RBMs trained on standardized data: the transform of the data.
    pub transform: Option<Standardization>,
}

/// ln(1 + e^x), stable for large |x|.
#[inline(always)]
pub fn softplus(x: f64) -> f64 {
    if x > 0.0 {
        x + (-x).exp().ln_1p()
    } else {
        x.exp().ln_1p()
    }
}

/// ln(sum exp(x)) of a running (max, sum) pair: combine two partial sums.
pub fn lse_combine(a: (f64, f64), b: (f64, f64)) -> (f64, f64) {
    let (ma, sa) = a;
    let (mb, sb) = b;
    if ma == f64::NEG_INFINITY {
        return b;
    }
    if mb == f64::NEG_INFINITY {
        return a;
    }
    if ma >= mb {
        (ma, sa + sb * (mb - ma).exp())
    } else {
        (mb, sb + sa * (ma - mb).exp())
    }
}

impl RbmModel {
    pub fn model_type(&self) -> ModelType {
        match self.units {
            VisibleUnits::Bernoulli => ModelType::BernoulliRbm,
            VisibleUnits::Gaussian => ModelType::GaussianRbm,
        }
    }

    fn sigma_at(&self, i: usize) -> f64 {
        self.sigma.as_ref().map_or(1.0, |s| s[i] as f64)
    }

    /// Hidden pre-activations c_j + sum_i x_i W_ij (x = v, or v / sigma for Gaussian units).
    pub fn hidden_input(&self, v: &[f32]) -> Vec<f64> {
        let mut a: Vec<f64> = self.c.iter().map(|&c| c as f64).collect();
        for (i, &vi) in v.iter().enumerate() {
            if vi == 0.0 {
                continue;
            }
            let x = vi as f64 / self.sigma_at(i);
            let row = &self.w[i * self.hidden..(i + 1) * self.hidden];
            for (aj, &wij) in a.iter_mut().zip(row) {
                *aj += x * wij as f64;
            }
        }
        a
    }

    /// Free energy F(v) = -ln sum_h exp(-E(v, h)), in f64.
    pub fn free_energy(&self, v: &[f32]) -> f64 {
        let visible_term: f64 = match self.units {
            VisibleUnits::Bernoulli => -v
                .iter()
                .zip(&self.b)
                .map(|(&x, &b)| x as f64 * b as f64)
                .sum::<f64>(),
            VisibleUnits::Gaussian => v
                .iter()
                .enumerate()
                .map(|(i, &x)| {
                    let z = (x as f64 - self.b[i] as f64) / self.sigma_at(i);
                    0.5 * z * z
                })
                .sum(),
        };
        visible_term
            - self
                .hidden_input(v)
                .iter()
                .map(|&a| softplus(a))
                .sum::<f64>()
    }

    /// Average log-likelihood of rows (row-major, `visible` columns) given ln Z.
    pub fn average_log_likelihood(&self, rows: &[f32], log_z: f64) -> f64 {
        let n = rows.len() / self.visible;
        if n == 0 {
            return f64::NAN;
        }
        let total: f64 = rows
            .par_chunks(self.visible)
            .map(|v| -self.free_energy(v))
            .sum();
        total / n as f64 - log_z
    }

    /// Pseudo-log-likelihood per row, sum_i ln p(v_i | v_-i), averaged over rows
    /// (Bernoulli units; every unit flipped, none sampled).
    pub fn pseudo_log_likelihood(&self, rows: &[f32]) -> f64 {
        let n = rows.len() / self.visible;
        let nh = self.hidden;
        let total: f64 = rows
            .par_chunks(self.visible)
            .map(|v| {
                let a: Vec<f32> = self.hidden_input(v).iter().map(|&x| x as f32).collect();
                let base: Vec<f32> = a.iter().map(|&x| fast_softplus(x)).collect();
                let mut sum = 0.0f64;
                for (i, &vi) in v.iter().enumerate() {
                    let s = 1.0 - 2.0 * vi; // +1 turns a unit on, -1 turns it off
                    let row = &self.w[i * nh..(i + 1) * nh];
                    // F(v') - F(v)
                    let delta = -(self.b[i] * s) as f64 - softplus_change(&a, &base, row, s);
                    // ln p(v_i | rest) = ln sigmoid(F(v') - F(v)) = -softplus(F(v) - F(v'))
                    sum -= softplus(-delta);
                }
                sum
            })
            .sum();
        total / n.max(1) as f64
    }

    /// Mean squared error per unit of the mean-field reconstruction E[v | E[h | v]].
    pub fn reconstruction_error(&self, rows: &[f32]) -> f64 {
        let n = rows.len() / self.visible;
        let nh = self.hidden;
        let total: f64 = rows
            .par_chunks(self.visible)
            .map(|v| {
                let ph: Vec<f64> = self
                    .hidden_input(v)
                    .iter()
                    .map(|&a| 1.0 / (1.0 + (-a).exp()))
                    .collect();
                let mut err = 0.0;
                for (i, &vi) in v.iter().enumerate() {
                    let row = &self.w[i * nh..(i + 1) * nh];
                    let wh: f64 = row.iter().zip(&ph).map(|(&w, &p)| w as f64 * p).sum();
                    let recon = match self.units {
                        VisibleUnits::Bernoulli => 1.0 / (1.0 + (-(self.b[i] as f64 + wh)).exp()),
                        VisibleUnits::Gaussian => self.b[i] as f64 + self.sigma_at(i) * wh,
                    };
                    err += (vi as f64 - recon).powi(2);
                }
                err
            })
            .sum();
        total / (n.max(1) * self.visible) as f64
    }

    /// True if every parameter is finite; else a message naming the first bad tensor.
    pub fn check_finite(&self) -> Result<()> {
        let tensors: [(&str, Option<&Vec<f32>>); 4] = [
            ("W", Some(&self.w)),
            ("b", Some(&self.b)),
            ("c", Some(&self.c)),
            ("sigma", self.sigma.as_ref()),
        ];
        for (name, t) in tensors {
            if let Some(t) = t {
                if let Some(i) = t.iter().position(|x| !x.is_finite()) {
                    return Err(EngineError::Diverged(format!(
                        "parameter {name}[{i}] became {}; lower the learning rate (or use adam, add l2)",
                        t[i]
                    )));
                }
            }
        }
        Ok(())
    }
}

/// Checks an RBM training request (after the common checks in `spec::validate_common`).
pub fn validate(
    model_type: ModelType,
    model: &ModelSpec,
    train: &TrainSpec,
    settings: &TrainSettings,
    data: &DataShape,
) -> Result<()> {
    let hidden = match model.hidden {
        None => {
            return Err(EngineError::invalid(format!(
                "model.hidden is missing: set the number of hidden units of the {}",
                model_type.name()
            )))
        }
        Some(0) => {
            return Err(EngineError::invalid(
                "model.hidden must be at least 1, got 0",
            ))
        }
        Some(h) if h > MAX_HIDDEN => {
            return Err(EngineError::invalid(format!(
                "model.hidden {h} is more than the limit of {MAX_HIDDEN}"
            )))
        }
        Some(h) => h as u64,
    };
    if hidden * data.cols as u64 > MAX_PARAMETERS {
        return Err(EngineError::invalid(format!(
            "{} visible x {hidden} hidden units is more than {MAX_PARAMETERS} weights",
            data.cols
        )));
    }
    let chain_rows =
        settings.chains.max(settings.batch_size) as u64 * settings.betas.len().max(1) as u64;
    if chain_rows * (data.cols as u64 + hidden) > MAX_CHAIN_CELLS {
        return Err(EngineError::invalid(format!(
            "{chain_rows} chains x {} units is more than {MAX_CHAIN_CELLS} values: use fewer chains",
            data.cols as u64 + hidden
        )));
    }
    if model.q.is_some()
        || model.size.is_some()
        || model.reweight_identity.is_some()
        || model.pseudocount.is_some()
        || model.unknown_residues.is_some()
    {
        return Err(EngineError::invalid(format!(
            "model.q, size, reweight_identity, pseudocount and unknown_residues do not apply to {}",
            model_type.name()
        )));
    }
    match model_type {
        ModelType::BernoulliRbm => {
            if data.kind == ValueKind::Categorical {
                return Err(EngineError::invalid(
                    "bernoulli_rbm needs values in [0, 1]; categorical data (an alignment) fits a potts model",
                ));
            }
            if model.learn_sigma.is_some() || model.standardize.is_some() {
                return Err(EngineError::invalid(
                    "model.learn_sigma and model.standardize apply to gaussian_rbm",
                ));
            }
        }
        ModelType::GaussianRbm => {
            if data.kind == ValueKind::Categorical {
                return Err(EngineError::invalid(
                    "gaussian_rbm needs real-valued data, not an alignment",
                ));
            }
            if settings.centering {
                return Err(EngineError::invalid(
                    "train.centering is supported for bernoulli_rbm only",
                ));
            }
        }
        _ => {
            return Err(EngineError::Internal(
                "rbm::validate called for a non-RBM".into(),
            ))
        }
    }
    if !settings.sampler.is_empty() {
        return Err(EngineError::invalid(
            "train.sampler (gibbs | metropolis) applies to potts and lattice_ising models; \
             RBMs use block Gibbs sampling",
        ));
    }
    if settings.method == Method::Pt && settings.pt_swap_every > settings.k {
        return Err(EngineError::invalid(format!(
            "train.pt_swap_every = {} is more than train.k = {}: an RBM update attempts swaps \
             every pt_swap_every of its k Gibbs steps, so it would never swap; lower \
             pt_swap_every or raise k",
            settings.pt_swap_every, settings.k
        )));
    }
    if settings.method == Method::Cd && train.chains.is_some() {
        return Err(EngineError::invalid(
            "train.chains applies to method = \"pcd\" and \"pt\": cd starts one negative chain at \
             each row of the minibatch (train.batch_size chains); remove train.chains",
        ));
    }
    Ok(())
}

/// The checks of an RBM request that need the data's values: a Bernoulli RBM needs values
/// in [0, 1] (binary, or probabilities).
pub fn check_values(model_type: ModelType, data: &Dataset) -> Result<()> {
    if model_type != ModelType::BernoulliRbm {
        return Ok(());
    }
    match data.values.iter().position(|&x| !(0.0..=1.0).contains(&x)) {
        None => Ok(()),
        Some(i) => Err(EngineError::invalid(format!(
            "bernoulli_rbm needs values in [0, 1] (binary or probabilities), but row {}, column {} \
             of the data set is {}: binarize the data or use gaussian_rbm",
            i / data.cols,
            i % data.cols,
            data.values[i]
        ))),
    }
}

#[cfg(test)]
mod proof_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_support;
