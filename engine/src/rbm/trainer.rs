//! Training RBMs on any backend: CD-k, persistent CD and PCD with parallel tempering;
//! SGD with momentum or Adam, L1/L2, a learning-rate schedule, optional centering; per-
//! epoch metrics; exact checkpoints (`super::checkpoint`).
//!
//! The data set is uploaded once; each minibatch is gathered on the device by a
//! permutation drawn from (seed, ORDER, epoch) (in the data's order with `shuffle =
//! false`), so a checkpoint only records the epoch, the minibatch index and the RNG
//! counters. Epochs drop the last incomplete minibatch.

use super::{exact, RbmModel, Standardization};
use crate::backend::cpu::{CpuBackend, CpuMatrix};
use crate::backend::{
    Backend, HiddenPass, Offsets, OptimizerRule, RbmGradient, RbmTensors, UpdateRule, VisibleUnits,
};
use crate::data::Dataset;
use crate::error::{EngineError, Result};
use crate::rng::{permutation, streams, RngKey, RngStream};
use crate::spec::{
    validation_rows, Method, ModelSpec, ModelType, OptimizerKind, TrainSettings, TrainSpec,
    VisibleBiasInit,
};
use crate::tempering::{ParallelTempering, TemperedChains};
use crate::training::checkpoint::fingerprint;
use crate::training::epoch::EpochSteps;
use crate::training::metadata::training_metadata;
use crate::training::{optimizer_slots, uniform_rows};
use std::collections::BTreeMap;

/// Enumeration budget (states x units) for an exact log-likelihood every epoch, and
/// for the final epoch only.
const EXACT_LL_EVERY_EPOCH: u64 = 1 << 26;
const EXACT_LL_FINAL: u64 = 1 << 31;
/// Budget (rows x visible x hidden) for the per-epoch pseudo-log-likelihood and
/// reconstruction error, evaluated on a fixed subset of rows.
const METRIC_BUDGET: usize = 1 << 26;
/// Sliding-average rate of centering offsets.
const OFFSET_RATE: f32 = 0.01;
/// Learning rate of log sigma relative to the other parameters (Gaussian RBMs).
const SIGMA_RATE_FACTOR: f32 = 0.1;

/// A set of chains (or a minibatch) with its workspace: visible states and means,
/// hidden probabilities and states.
pub(super) struct ChainSet<M> {
    pub v: M,
    pub vm: M,
    pub hp: M,
    pub hs: M,
}

impl<M> ChainSet<M> {
    pub(super) fn new<B: Backend<Matrix = M>>(
        backend: &B,
        rows: usize,
        nv: usize,
        nh: usize,
    ) -> Result<Self> {
        Ok(ChainSet {
            v: backend.zeros(rows, nv)?,
            vm: backend.zeros(rows, nv)?,
            hp: backend.zeros(rows, nh)?,
            hs: backend.zeros(rows, nh)?,
        })
    }
}

/// Host-side learned log sigma (Gaussian RBMs): tiny, so updated on the CPU.
pub(super) struct LearnedSigma {
    pub log_sigma: CpuMatrix,
    pub state: Vec<CpuMatrix>,
}

pub struct RbmTrainer<B: Backend> {
    pub(super) backend: B,
    pub(super) model_type: ModelType,
    pub(super) model_spec: ModelSpec,
    pub(super) train_spec: TrainSpec,
    pub(super) settings: TrainSettings,
    pub(super) seed: u64,
    pub(super) data_fingerprint: u64,
    pub(super) visible: usize,
    pub(super) hidden: usize,
    /// Training rows (host copy, for metrics) and held-out rows, after any transform.
    pub(super) train_rows: Vec<f32>,
    pub(super) valid_rows: Vec<f32>,
    pub(super) transform: Option<Standardization>,
    pub(super) data: B::Matrix,
    pub(super) params: RbmTensors<B::Matrix>,
    pub(super) grad: RbmGradient<B::Matrix>,
    /// Optimizer state of W, b, c (one tensor each for sgd, two for adam).
    pub(super) opt_state: [Vec<B::Matrix>; 3],
    pub(super) sigma: Option<LearnedSigma>,
    pub(super) batch: ChainSet<B::Matrix>,
    /// Persistent chains: one set (pcd) or one per temperature (pt); none for cd.
    pub(super) chains: Vec<ChainSet<B::Matrix>>,
    pub(super) tempering: Option<ParallelTempering>,
    pub(super) offsets: Option<(B::Matrix, B::Matrix)>,
    pub(super) rng_hidden: RngStream,
    pub(super) rng_visible: RngStream,
    pub(super) rng_swap: RngStream,
    pub(super) epoch: usize,
    pub(super) batch_in_epoch: usize,
    pub(super) updates: u64,
}

impl<B: Backend> RbmTrainer<B> {
    /// A fresh trainer (parameters initialised from the seed). The spec must already have
    /// passed `train::validate_train`.
    pub fn new(
        backend: B,
        model: &ModelSpec,
        train: &TrainSpec,
        seed: u64,
        data: Dataset,
    ) -> Result<Self> {
        let model_type = ModelType::from_name(&model.model_type)?;
        let settings = train.resolve(data.rows)?;
        let units = match model_type {
            ModelType::BernoulliRbm => VisibleUnits::Bernoulli,
            ModelType::GaussianRbm => VisibleUnits::Gaussian,
            _ => return Err(EngineError::Internal("RbmTrainer for a non-RBM".into())),
        };
        super::check_values(model_type, &data)?;
        let (nv, nh) = (data.cols, model.hidden.unwrap_or(0) as usize);
        if nh == 0 {
            return Err(EngineError::invalid("model.hidden must be at least 1"));
        }
        let data_fingerprint = fingerprint(&data);
        // Deterministic split: a permutation of the rows; the last share is held out.
        let order = permutation(data.rows, RngKey::new(seed, streams::SPLIT, 0));
        let n_valid = validation_rows(data.rows, settings.validation_fraction);
        let n_train = data.rows - n_valid;
        let pick = |idx: &[u32]| -> Vec<f32> {
            let mut out = Vec::with_capacity(idx.len() * nv);
            for &r in idx {
                out.extend_from_slice(data.row(r as usize));
            }
            out
        };
        let (mut train_rows, mut valid_rows) = if n_valid == 0 {
            (data.values.clone(), Vec::new())
        } else {
            let mut train_idx = order[..n_train].to_vec();
            if !settings.shuffle {
                // without shuffling, the training rows keep the data's order
                train_idx.sort_unstable();
            }
            (pick(&train_idx), pick(&order[n_train..]))
        };
        drop(data);
        let standardize = units == VisibleUnits::Gaussian && model.standardize.unwrap_or(true);
        let transform = standardize.then(|| Standardization::fit(&train_rows, n_train, nv));
        if let Some(t) = &transform {
            t.apply(&mut train_rows);
            t.apply(&mut valid_rows);
        }
        let init = RngKey::new(seed, streams::INIT, 0);
        let w: Vec<f32> = (0..nv * nh).map(|i| 0.01 * init.normal(i as u32)).collect();
        let column_mean = |j: usize| -> f64 {
            train_rows
                .chunks_exact(nv)
                .map(|r| r[j] as f64)
                .sum::<f64>()
                / n_train as f64
        };
        let b: Vec<f32> = (0..nv)
            .map(|j| {
                if settings.visible_bias_init == VisibleBiasInit::Zero {
                    return 0.0;
                }
                let m = column_mean(j);
                match units {
                    // Hinton's guide: b_i = ln(p_i / (1 - p_i)) of the data's mean activation
                    VisibleUnits::Bernoulli => {
                        let p = m.clamp(0.01, 0.99);
                        (p / (1.0 - p)).ln() as f32
                    }
                    VisibleUnits::Gaussian => m as f32,
                }
            })
            .collect();
        let sigma: Option<Vec<f32>> = (units == VisibleUnits::Gaussian).then(|| {
            if standardize {
                vec![1.0; nv]
            } else {
                Standardization::fit(&train_rows, n_train, nv).std
            }
        });
        let learn_sigma = units == VisibleUnits::Gaussian && model.learn_sigma.unwrap_or(false);
        let n_state = optimizer_slots(settings.optimizer);
        let zeros_n = |r: usize, c: usize| -> Result<Vec<B::Matrix>> {
            (0..n_state).map(|_| backend.zeros(r, c)).collect()
        };
        let opt_state = [zeros_n(nv, nh)?, zeros_n(1, nv)?, zeros_n(1, nh)?];
        let sigma_state = if learn_sigma {
            let s = sigma
                .as_ref()
                .ok_or_else(|| EngineError::Internal("no sigma".into()))?;
            Some(LearnedSigma {
                log_sigma: CpuMatrix {
                    rows: 1,
                    cols: nv,
                    data: s.iter().map(|x| x.ln()).collect(),
                },
                state: (0..n_state).map(|_| CpuMatrix::zeros(1, nv)).collect(),
            })
        } else {
            None
        };
        let params = RbmTensors {
            units,
            w: backend.upload(nv, nh, &w)?,
            b: backend.upload(1, nv, &b)?,
            c: backend.zeros(1, nh)?,
            sigma: sigma
                .as_ref()
                .map(|s| backend.upload(1, nv, s))
                .transpose()?,
        };
        let grad = RbmGradient {
            w: backend.zeros(nv, nh)?,
            b: backend.zeros(1, nv)?,
            c: backend.zeros(1, nh)?,
            log_sigma: if learn_sigma {
                Some(backend.zeros(1, nv)?)
            } else {
                None
            },
        };
        let data_dev = backend.upload(n_train, nv, &train_rows)?;
        let batch = ChainSet::new(&backend, settings.batch_size, nv, nh)?;
        // cd keeps one set of batch-sized negative chains as workspace (restarted at the
        // data every update); pcd one set of persistent chains; pt one per temperature.
        let (replicas, chain_rows) = match settings.method {
            Method::Cd => (1, settings.batch_size),
            Method::Pcd => (1, settings.chains),
            Method::Pt => (settings.betas.len(), settings.chains),
        };
        let mut chains = Vec::with_capacity(replicas);
        let start = RngKey::new(seed, streams::CHAIN_INIT, 0);
        let start_rows: Vec<u32> = uniform_rows(start, chain_rows, n_train)
            .into_iter()
            .map(|r| r as u32)
            .collect();
        for _ in 0..replicas {
            let mut set = ChainSet::new(&backend, chain_rows, nv, nh)?;
            backend.gather_rows(&data_dev, &start_rows, &mut set.v)?;
            chains.push(set);
        }
        let mut rng_hidden = RngStream::new(seed, streams::HIDDEN);
        if settings.method == Method::Pcd {
            // PCD chains carry their hidden sample from one update to the next (see
            // `update`): draw the first one from the starting rows.
            let set = &mut chains[0];
            backend.sample_hidden(
                &params,
                &set.v,
                1.0,
                rng_hidden.next_key(),
                &mut set.hp,
                Some(&mut set.hs),
            )?;
        }
        let offsets = if settings.centering {
            let mu: Vec<f32> = (0..nv).map(|j| column_mean(j) as f32).collect();
            Some((
                backend.upload(1, nv, &mu)?,
                backend.upload(1, nh, &vec![0.5; nh])?,
            ))
        } else {
            None
        };
        let tempering =
            (settings.method == Method::Pt).then(|| ParallelTempering::new(settings.betas.clone()));
        Ok(RbmTrainer {
            backend,
            model_type,
            model_spec: model.clone(),
            train_spec: train.clone(),
            settings,
            seed,
            data_fingerprint,
            visible: nv,
            hidden: nh,
            train_rows,
            valid_rows,
            transform,
            data: data_dev,
            params,
            grad,
            opt_state,
            sigma: sigma_state,
            batch,
            chains,
            tempering,
            offsets,
            rng_hidden,
            rng_visible: RngStream::new(seed, streams::VISIBLE),
            rng_swap: RngStream::new(seed, streams::SWAP),
            epoch: 0,
            batch_in_epoch: 0,
            updates: 0,
        })
    }

    /// Starts from the parameters of a model file (`init_model`): same type and shape;
    /// Gaussian models must agree on standardization (both off, or the file's transform
    /// is used for the data in place of the one fitted here).
    pub fn initialize_from(&mut self, model_bytes: &[u8]) -> Result<()> {
        let init = crate::rbm::file::rbm_from_bytes(model_bytes)?;
        if init.model_type() != self.model_type {
            return Err(EngineError::invalid(format!(
                "init_model is a {}, but the job trains a {}",
                init.model_type().name(),
                self.model_type.name()
            )));
        }
        if (init.visible, init.hidden) != (self.visible, self.hidden) {
            return Err(EngineError::invalid(format!(
                "init_model has {} visible x {} hidden units, but the job has {} x {}: \
                 use a data set with {} columns and model.hidden = {}",
                init.visible, init.hidden, self.visible, self.hidden, init.visible, init.hidden
            )));
        }
        if init.transform.is_some() != self.transform.is_some() {
            return Err(EngineError::invalid(
                "init_model and this job disagree on standardization: set model.standardize to match the model",
            ));
        }
        if let (Some(old), Some(new)) = (&self.transform, &init.transform) {
            // undo this job's transform, apply the model's, and upload the data again
            let nv = self.visible;
            for rows in [&mut self.train_rows, &mut self.valid_rows] {
                for row in rows.chunks_exact_mut(nv) {
                    for j in 0..nv {
                        let raw = row[j] * old.std[j] + old.mean[j];
                        row[j] = (raw - new.mean[j]) / new.std[j];
                    }
                }
            }
            let n = self.train_rows.len() / nv;
            self.data = self.backend.upload(n, nv, &self.train_rows)?;
            self.transform = Some(new.clone());
        }
        let be = &self.backend;
        self.params.w = be.upload(self.visible, self.hidden, &init.w)?;
        self.params.b = be.upload(1, self.visible, &init.b)?;
        self.params.c = be.upload(1, self.hidden, &init.c)?;
        if let Some(sigma) = &init.sigma {
            self.params.sigma = Some(be.upload(1, self.visible, sigma)?);
            if let Some(learned) = self.sigma.as_mut() {
                learned.log_sigma.data = sigma.iter().map(|s| s.ln()).collect();
            }
        }
        Ok(())
    }

    pub fn settings(&self) -> &TrainSettings {
        &self.settings
    }

    /// The current parameters, downloaded.
    pub fn model(&self) -> Result<RbmModel> {
        let b = &self.backend;
        Ok(RbmModel {
            units: self.params.units,
            visible: self.visible,
            hidden: self.hidden,
            w: b.download(&self.params.w)?,
            b: b.download(&self.params.b)?,
            c: b.download(&self.params.c)?,
            sigma: self
                .params
                .sigma
                .as_ref()
                .map(|s| b.download(s))
                .transpose()?,
            transform: self.transform.clone(),
        })
    }

    fn batches_per_epoch(&self) -> usize {
        (self.train_rows.len() / self.visible) / self.settings.batch_size
    }

    /// One minibatch update from the data rows `rows`.
    fn update(&mut self, rows: &[u32], learning_rate: f64) -> Result<()> {
        let be = &self.backend;
        let k = self.settings.k;
        let batch = &mut self.batch;
        be.gather_rows(&self.data, rows, &mut batch.v)?;
        match self.settings.method {
            Method::Cd => {
                // positive phase, then k Gibbs steps starting at the data
                be.sample_hidden(
                    &self.params,
                    &batch.v,
                    1.0,
                    self.rng_hidden.next_key(),
                    &mut batch.hp,
                    Some(&mut batch.hs),
                )?;
                let neg = &mut self.chains[0];
                for step in 0..k {
                    let hidden = if step == 0 { &batch.hs } else { &neg.hs };
                    be.sample_visible(
                        &self.params,
                        hidden,
                        1.0,
                        self.rng_visible.next_key(),
                        &mut neg.vm,
                        &mut neg.v,
                    )?;
                    let states = if step + 1 < k {
                        Some(&mut neg.hs)
                    } else {
                        None
                    };
                    be.sample_hidden(
                        &self.params,
                        &neg.v,
                        1.0,
                        self.rng_hidden.next_key(),
                        &mut neg.hp,
                        states,
                    )?;
                }
            }
            Method::Pcd | Method::Pt => {
                let positive_key = self.rng_hidden.next_key();
                if let Some(pt) = self.tempering.as_mut() {
                    be.sample_hidden(
                        &self.params,
                        &batch.v,
                        1.0,
                        positive_key,
                        &mut batch.hp,
                        None,
                    )?;
                    let mut replicas = Replicas {
                        backend: be,
                        params: &self.params,
                        sets: &mut self.chains,
                        rng_hidden: &mut self.rng_hidden,
                        rng_visible: &mut self.rng_visible,
                    };
                    let every = self.settings.pt_swap_every;
                    for step in 0..k {
                        for (t, &beta) in pt.betas.clone().iter().enumerate() {
                            replicas.sweep(t, beta)?;
                        }
                        if (step + 1) % every == 0 {
                            pt.swap_neighbours(&mut replicas, self.rng_swap.next_key())?;
                        }
                    }
                    let model_chains = self
                        .chains
                        .last_mut()
                        .ok_or_else(|| EngineError::Internal("no chains".into()))?;
                    be.sample_hidden(
                        &self.params,
                        &model_chains.v,
                        1.0,
                        self.rng_hidden.next_key(),
                        &mut model_chains.hp,
                        None,
                    )?;
                } else {
                    // The chains' persistent state is their hidden sample (as in scikit-
                    // learn's BernoulliRBM): each step draws v from h, then h from v, and
                    // the hidden probabilities of the last step serve both the gradient and
                    // the next state, so PCD-k costs 2k products instead of 2k + 1. The
                    // data's hidden probabilities come with the chains' first step, in one
                    // pair (one product over the stacked rows on the CPU); the random keys
                    // are drawn in the same order as one call after the other.
                    let set = &mut self.chains[0];
                    for step in 0..k {
                        be.sample_visible(
                            &self.params,
                            &set.hs,
                            1.0,
                            self.rng_visible.next_key(),
                            &mut set.vm,
                            &mut set.v,
                        )?;
                        let chains = HiddenPass {
                            visible: &set.v,
                            key: self.rng_hidden.next_key(),
                            probs: &mut set.hp,
                            states: Some(&mut set.hs),
                        };
                        if step == 0 {
                            let data = HiddenPass {
                                visible: &batch.v,
                                key: positive_key,
                                probs: &mut batch.hp,
                                states: None,
                            };
                            be.sample_hidden_pair(&self.params, data, chains)?;
                        } else {
                            chains.sample_alone(be, &self.params)?;
                        }
                    }
                }
            }
        }
        // The gradient from the data and the model's chains (cd's one set of negative
        // chains; the last, beta = 1, set for pcd and pt). With plain SGD (scikit-learn's
        // rule) the weights' step may be folded into the gradient's products.
        let model_chains = self
            .chains
            .last()
            .ok_or_else(|| EngineError::Internal("no chains".into()))?;
        let offsets = self
            .offsets
            .as_ref()
            .map(|(mu, lambda)| Offsets { mu, lambda });
        let s = &self.settings;
        let plain_sgd =
            s.optimizer == OptimizerKind::Sgd && s.momentum == 0.0 && s.l1 == 0.0 && s.l2 == 0.0;
        let weights_stepped = plain_sgd
            && offsets.is_none()
            && be.gradient_with_weight_step(
                &mut self.params,
                &batch.v,
                &batch.hp,
                &model_chains.v,
                &model_chains.hp,
                learning_rate as f32,
                &mut self.grad,
            )?;
        if !weights_stepped {
            be.gradient(
                &self.params,
                &batch.v,
                &batch.hp,
                &model_chains.v,
                &model_chains.hp,
                offsets,
                &mut self.grad,
            )?;
        }
        self.updates += 1;
        let optimizer = match s.optimizer {
            OptimizerKind::Sgd => OptimizerRule::Sgd {
                momentum: s.momentum as f32,
            },
            OptimizerKind::Adam => OptimizerRule::Adam {
                beta1: s.adam_beta1 as f32,
                beta2: s.adam_beta2 as f32,
                eps: s.adam_eps as f32,
                t: self.updates,
            },
        };
        let rule = UpdateRule {
            learning_rate: learning_rate as f32,
            optimizer,
            l1: s.l1 as f32,
            l2: s.l2 as f32,
        };
        let [sw, sb, sc] = &mut self.opt_state;
        if !weights_stepped {
            be.apply_update(&mut self.params.w, &self.grad.w, sw, &rule, true)?;
        }
        be.apply_update(&mut self.params.b, &self.grad.b, sb, &rule, false)?;
        be.apply_update(&mut self.params.c, &self.grad.c, sc, &rule, false)?;
        if let (Some(learned), Some(g)) = (self.sigma.as_mut(), self.grad.log_sigma.as_ref()) {
            let g = CpuMatrix {
                rows: 1,
                cols: self.visible,
                data: be.download(g)?,
            };
            // sigma learns ten times slower than W, b, c: its gradient (z^2 terms) is
            // large and noisy, and a collapsing sigma is the usual failure of GB-RBMs.
            let sigma_rule = UpdateRule {
                learning_rate: rule.learning_rate * SIGMA_RATE_FACTOR,
                ..rule
            };
            CpuBackend.apply_update(
                &mut learned.log_sigma,
                &g,
                &mut learned.state,
                &sigma_rule,
                false,
            )?;
            // keep sigma within [1e-2, 1e2] of the standardized scale: beyond it the model degenerates
            let sigma: Vec<f32> = learned
                .log_sigma
                .data
                .iter()
                .map(|x| x.clamp(-4.6, 4.6).exp())
                .collect();
            self.params.sigma = Some(be.upload(1, self.visible, &sigma)?);
        }
        if let Some((mu, lambda)) = self.offsets.as_mut() {
            be.update_offsets(mu, &self.batch.v, OFFSET_RATE)?;
            be.update_offsets(lambda, &self.batch.hp, OFFSET_RATE)?;
        }
        if !(be.all_finite(&self.params.b)? && be.all_finite(&self.params.c)?) {
            return Err(EngineError::Diverged(format!(
                "a bias became NaN or infinite at epoch {}, minibatch {}; lower the learning rate \
                 (now {learning_rate}) or use adam / l2",
                self.epoch + 1,
                self.batch_in_epoch + 1
            )));
        }
        Ok(())
    }

    fn metrics(&self, metrics: &mut BTreeMap<String, f64>) -> Result<()> {
        let model = self.model()?;
        model.check_finite()?;
        let nv = self.visible;
        let per_row = (nv * self.hidden).max(1);
        let eval_rows = (METRIC_BUDGET / per_row).clamp(64, 2000);
        let subset = |rows: &[f32]| rows[..rows.len().min(eval_rows * nv)].to_vec();
        let train_eval = subset(&self.train_rows);
        metrics.insert(
            "reconstruction_error".into(),
            model.reconstruction_error(&train_eval),
        );
        if !self.valid_rows.is_empty() {
            metrics.insert(
                "val_reconstruction_error".into(),
                model.reconstruction_error(&subset(&self.valid_rows)),
            );
        }
        if model.units == VisibleUnits::Bernoulli {
            metrics.insert(
                "pseudo_log_likelihood".into(),
                model.pseudo_log_likelihood(&train_eval),
            );
            if !self.valid_rows.is_empty() {
                metrics.insert(
                    "val_pseudo_log_likelihood".into(),
                    model.pseudo_log_likelihood(&subset(&self.valid_rows)),
                );
            }
        }
        let last_epoch = self.epoch >= self.settings.epochs;
        if let Some((_, cost)) = exact::enumeration_plan(&model) {
            if cost <= EXACT_LL_EVERY_EPOCH || (last_epoch && cost <= EXACT_LL_FINAL) {
                let log_z = exact::log_partition(&model)?;
                metrics.insert("log_z".into(), log_z);
                metrics.insert(
                    "log_likelihood".into(),
                    model.average_log_likelihood(&self.train_rows, log_z),
                );
                if !self.valid_rows.is_empty() {
                    metrics.insert(
                        "val_log_likelihood".into(),
                        model.average_log_likelihood(&self.valid_rows, log_z),
                    );
                }
            }
        }
        Ok(())
    }
}

/// The replicas of PCD with parallel tempering, seen through `TemperedChains`.
pub(super) struct Replicas<'a, B: Backend> {
    pub(super) backend: &'a B,
    pub(super) params: &'a RbmTensors<B::Matrix>,
    pub(super) sets: &'a mut [ChainSet<B::Matrix>],
    pub(super) rng_hidden: &'a mut RngStream,
    pub(super) rng_visible: &'a mut RngStream,
}

impl<B: Backend> TemperedChains for Replicas<'_, B> {
    fn chains_per_replica(&self) -> usize {
        self.backend.shape(&self.sets[0].v).0
    }

    fn sweep(&mut self, replica: usize, beta: f64) -> Result<()> {
        let set = &mut self.sets[replica];
        let be = self.backend;
        be.sample_hidden(
            self.params,
            &set.v,
            beta as f32,
            self.rng_hidden.next_key(),
            &mut set.hp,
            Some(&mut set.hs),
        )?;
        be.sample_visible(
            self.params,
            &set.hs,
            beta as f32,
            self.rng_visible.next_key(),
            &mut set.vm,
            &mut set.v,
        )
    }

    fn energies(&mut self, replica: usize) -> Result<Vec<f64>> {
        let set = &self.sets[replica];
        Ok(self
            .backend
            .energies(self.params, &set.v, &set.hs)?
            .into_iter()
            .map(f64::from)
            .collect())
    }

    fn swap(&mut self, a: usize, b: usize, mask: &[bool]) -> Result<()> {
        let (lo, hi) = self.sets.split_at_mut(b.max(a));
        let (x, y) = (&mut lo[a.min(b)], &mut hi[0]);
        self.backend.swap_rows(&mut x.v, &mut y.v, mask)?;
        self.backend.swap_rows(&mut x.hs, &mut y.hs, mask)
    }
}

impl<B: Backend> EpochSteps for RbmTrainer<B> {
    const DIVERGENCE_HINT: &'static str = "lower the learning rate or use adam / l2";

    fn settings(&self) -> &TrainSettings {
        &self.settings
    }

    /// The rest of the epoch's minibatches (a permutation of the rows from (seed, ORDER,
    /// epoch); the last incomplete minibatch is dropped).
    fn train(
        &mut self,
        learning_rate: f64,
        should_stop: &dyn Fn() -> bool,
        progress: &mut dyn FnMut(f64),
    ) -> Result<Option<f64>> {
        let n_batches = self.batches_per_epoch();
        let bs = self.settings.batch_size;
        let rows = self.train_rows.len() / self.visible;
        let order = epoch_order(rows, self.settings.shuffle, self.seed, self.epoch);
        let first_batch = self.batch_in_epoch;
        let total = (self.settings.epochs * n_batches) as f64;
        let mut last_report = -1.0f64;
        while self.batch_in_epoch < n_batches {
            if should_stop() {
                return Ok(None);
            }
            let i = self.batch_in_epoch;
            self.update(&order[i * bs..(i + 1) * bs], learning_rate)?;
            self.batch_in_epoch += 1;
            let done = (self.epoch * n_batches + self.batch_in_epoch) as f64 / total;
            if done - last_report >= 0.002 {
                progress(done);
                last_report = done;
            }
        }
        Ok(Some(((n_batches - first_batch) * bs) as f64))
    }

    fn end_epoch(&mut self) {
        self.epoch += 1;
        self.batch_in_epoch = 0;
    }

    fn epoch_metrics(&self, metrics: &mut BTreeMap<String, f64>) -> Result<()> {
        self.metrics(metrics)
    }

    fn tempering(&self) -> Option<&ParallelTempering> {
        self.tempering.as_ref()
    }

    fn epoch(&self) -> usize {
        self.epoch
    }

    fn save_checkpoint(&self) -> Result<Vec<u8>> {
        super::checkpoint::save(self)
    }

    fn save_model(&self) -> Result<Vec<u8>> {
        let model = self.model()?;
        model.check_finite()?;
        let meta = training_metadata(
            self.epoch,
            self.seed,
            &self.settings,
            &self.model_spec,
            &self.train_spec,
            self.backend.kind().name(),
        );
        crate::rbm::file::rbm_to_bytes(&model, &meta)
    }
}

/// The order in which an epoch visits the training rows: a permutation drawn from (seed,
/// ORDER, epoch), or the rows' own order (the data's, as scikit-learn's BernoulliRBM visits
/// them) without shuffling.
pub(super) fn epoch_order(rows: usize, shuffle: bool, seed: u64, epoch: usize) -> Vec<u32> {
    if shuffle {
        permutation(rows, RngKey::new(seed, streams::ORDER, epoch as u64))
    } else {
        (0..rows as u32).collect()
    }
}
