//! Held-out log-likelihood by AIS during training (`train.ais_every`): every n epochs the
//! training facade ([`crate::train::Trainer`]) hands the current RBM to [`HeldOutAis`],
//! which runs forward AIS from the base-rate model (Salakhutdinov & Murray 2008: zero
//! weights, visible biases the logits of the training rows' per-unit means; Gaussian RBMs:
//! the Gaussian visible layer without weights) and reports
//!   log-likelihood = mean over rows of -F(v) - ln Z_AIS.
//! The data term is exact for the rows given, so the standard error is that of ln Z.
//!
//! Random numbers: a stream of its own ([`HELDOUT_STREAM`]), keyed by the epoch, so the
//! evaluation draws nothing from training's streams and needs no state in a checkpoint:
//! a resumed job trains bit-identically and reports the same AIS values.

use super::ais::{forward_ais, Hooks};
use super::chains::gaussian::GaussianRbmParams;
use super::chains::rbm::{base_rate_bias, RbmParams};
use super::model::LoadedModel;
use super::placement::{place_chains, place_rbm_chains};
use super::schedule::default_schedule;
use crate::backend::BackendKind;
use crate::backend::VisibleUnits;
use crate::data::Dataset;
use crate::error::EngineError;
use crate::rbm::RbmModel;
use crate::rng::{permutation, streams, RngKey, RngStream};
use crate::spec::{validation_rows, AisSettings};
use std::collections::BTreeMap;
use std::time::Instant;

/// RNG stream of held-out AIS (distinct from training's and the estimate job's).
pub const HELDOUT_STREAM: u32 = 0xA15E;
/// Training rows whose free energy enters `ais_log_likelihood` (the first ones of the
/// training split); held-out rows are all used.
pub const MAX_TRAIN_EVAL_ROWS: usize = 10_000;

impl LoadedModel {
    /// The estimators' view of a trained RBM, in the model's space (a Gaussian RBM's
    /// standardization is left to the caller).
    pub fn from_rbm_model(model: &RbmModel) -> LoadedModel {
        let rbm = RbmParams {
            visible: model.visible,
            hidden: model.hidden,
            weights: model.w.clone(),
            visible_bias: model.b.clone(),
            hidden_bias: model.c.clone(),
        };
        match model.units {
            VisibleUnits::Bernoulli => LoadedModel::BernoulliRbm(rbm),
            VisibleUnits::Gaussian => LoadedModel::GaussianRbm(GaussianRbmParams {
                sigma: model
                    .sigma
                    .clone()
                    .unwrap_or_else(|| vec![1.0; rbm.visible]),
                transform: None,
                rbm,
            }),
        }
    }
}

/// AIS held-out evaluation of an RBM trainer: the rows it evaluates (in data space, as
/// uploaded) and the base model, fixed when training starts.
pub struct HeldOutAis {
    settings: AisSettings,
    seed: u64,
    visible: usize,
    /// Bernoulli RBMs: visible biases of the base-rate model (training rows).
    base_bias: Option<Vec<f32>>,
    /// The trainer's backend: Bernoulli-RBM AIS chains run on its device (wgpu, cuda).
    backend: BackendKind,
    train_eval: Vec<f32>,
    heldout: Vec<f32>,
}

/// Row indices of the RBM trainer's split: a permutation keyed by (seed, SPLIT); the
/// last `validation_rows` of it are held out, and without a validation share the
/// training rows keep their order. (Mirrors `rbm::trainer`; a test checks that the
/// exact log-likelihood over these rows equals the trainer's own `val_log_likelihood`.)
fn split(rows: usize, seed: u64, validation_fraction: f64) -> (Vec<u32>, Vec<u32>) {
    let n_valid = validation_rows(rows, validation_fraction);
    if n_valid == 0 {
        return ((0..rows as u32).collect(), Vec::new());
    }
    let order = permutation(rows, RngKey::new(seed, streams::SPLIT, 0));
    let n_train = rows - n_valid;
    (order[..n_train].to_vec(), order[n_train..].to_vec())
}

fn gather(data: &Dataset, idx: &[u32]) -> Vec<f32> {
    let mut out = Vec::with_capacity(idx.len() * data.cols);
    for &r in idx {
        out.extend_from_slice(data.row(r as usize));
    }
    out
}

impl HeldOutAis {
    /// Sets up the evaluation for an RBM trained on `data` with this seed and validation
    /// share (the spec has been validated).
    pub fn new(
        settings: AisSettings,
        units: VisibleUnits,
        data: &Dataset,
        seed: u64,
        validation_fraction: f64,
        backend: BackendKind,
    ) -> Result<Self, EngineError> {
        let (train_idx, valid_idx) = split(data.rows, seed, validation_fraction);
        if train_idx.is_empty() {
            return Err(EngineError::invalid("no training rows for AIS base rates"));
        }
        let base_bias = match units {
            VisibleUnits::Bernoulli => {
                let rows = gather(data, &train_idx);
                Some(base_rate_bias(&rows, train_idx.len(), data.cols))
            }
            VisibleUnits::Gaussian => None,
        };
        let eval_idx = &train_idx[..train_idx.len().min(MAX_TRAIN_EVAL_ROWS)];
        Ok(HeldOutAis {
            settings,
            seed,
            visible: data.cols,
            base_bias,
            backend,
            train_eval: gather(data, eval_idx),
            heldout: gather(data, &valid_idx),
        })
    }

    pub fn settings(&self) -> AisSettings {
        self.settings
    }

    /// Whether the evaluation runs after epoch `epoch` (counted from 1) of `total`.
    pub fn is_due(&self, epoch: usize, total: usize) -> bool {
        epoch > 0 && (epoch.is_multiple_of(self.settings.every) || epoch == total)
    }

    /// Runs forward AIS on `model` (the trainer's current parameters) and adds the
    /// metrics: `ais_log_z`, `ais_log_z_stderr`, `ais_log_likelihood` (training rows, at
    /// most [`MAX_TRAIN_EVAL_ROWS`]), `val_ais_log_likelihood` (held-out rows, when there
    /// are any), `ais_log_likelihood_stderr` (= `ais_log_z_stderr`), `ais_ess`,
    /// `ais_ess_fraction`, `ais_max_weight`, `ais_unreliable` (1 when the error bar is not
    /// to be trusted, see `diagnostics`) and `ais_seconds`. Stops with `Interrupted` when `should_stop` says so.
    pub fn evaluate(
        &self,
        model: &RbmModel,
        epoch: usize,
        should_stop: &dyn Fn() -> bool,
        metrics: &mut BTreeMap<String, f64>,
    ) -> Result<(), EngineError> {
        if model.visible != self.visible {
            return Err(EngineError::Internal(format!(
                "held-out AIS set up for {} visible units, model has {}",
                self.visible, model.visible
            )));
        }
        let started = Instant::now();
        let loaded = LoadedModel::from_rbm_model(model);
        // On the trainer's device when it has one (else on the cpu); `ais_on_device` says
        // which. Bernoulli RBMs start from the training rows' base rates.
        let chains = self.settings.chains;
        let (mut path, note) = match (&loaded, &self.base_bias) {
            (LoadedModel::BernoulliRbm(p), Some(base)) => {
                place_rbm_chains(p, base.clone(), chains, self.backend)?
            }
            _ => place_chains(&loaded, chains, None, self.backend)?,
        };
        let on_device = self.backend != BackendKind::Cpu && note.is_none();
        // Keyed by the epoch: every evaluation is reproducible on its own.
        let mut rng = RngStream {
            seed: self.seed,
            stream: HELDOUT_STREAM,
            step: (epoch as u64) << 32,
        };
        let mut progress = |_: f64| {};
        let mut hooks = Hooks {
            should_stop,
            progress: &mut progress,
        };
        let est = forward_ais(
            path.as_mut(),
            &default_schedule(self.settings.betas),
            &mut rng,
            &mut hooks,
        )?;
        let to_model_space = |rows: &[f32]| -> Vec<f32> {
            let mut rows = rows.to_vec();
            if let Some(t) = &model.transform {
                t.apply(&mut rows);
            }
            rows
        };
        metrics.insert("ais_log_z".into(), est.log_z);
        metrics.insert("ais_log_z_stderr".into(), est.log_z_stderr);
        metrics.insert("ais_log_likelihood_stderr".into(), est.log_z_stderr);
        metrics.insert("ais_ess".into(), est.ess);
        metrics.insert(
            "ais_log_likelihood".into(),
            model.average_log_likelihood(&to_model_space(&self.train_eval), est.log_z),
        );
        if !self.heldout.is_empty() {
            metrics.insert(
                "val_ais_log_likelihood".into(),
                model.average_log_likelihood(&to_model_space(&self.heldout), est.log_z),
            );
        }
        // The weight diagnostics (see `diagnostics`); the metrics map holds numbers, so
        // the warning's text is not carried: `ais_unreliable` = 1 stands for it.
        metrics.insert("ais_ess_fraction".into(), est.diagnostics.ess_fraction);
        metrics.insert("ais_max_weight".into(), est.diagnostics.max_weight);
        metrics.insert(
            "ais_unreliable".into(),
            est.diagnostics.unreliable() as u8 as f64,
        );
        metrics.insert("ais_seconds".into(), started.elapsed().as_secs_f64());
        metrics.insert("ais_on_device".into(), on_device as u8 as f64);
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use crate::backend::BackendKind;
    use crate::data::{parse_dataset, DataFormat, Dataset};
    use crate::error::EngineError;
    use crate::spec::{ModelSpec, TrainSpec};
    use crate::train::{EpochReport, Trainer};
    use std::collections::BTreeMap;

    pub(crate) fn digits(rows: usize) -> Dataset {
        let bytes = include_bytes!("../../../data/digits/digits_binarized.npy");
        let all = parse_dataset(DataFormat::Npy, bytes, &Default::default()).unwrap();
        all.select_rows(&(0..rows).collect::<Vec<_>>())
    }

    fn run_all(t: &mut Trainer) -> Vec<EpochReport> {
        let mut reports = Vec::new();
        while !t.is_finished() {
            reports.push(t.run_epoch(&|| false, &mut |_| {}).unwrap().unwrap());
        }
        reports
    }

    /// The AIS metrics agree with the exact ones the trainer reports for an enumerable
    /// model. Both subtract their ln Z from the same mean of -F(v) over the same rows, so
    /// (a) ll + ln Z must agree to rounding (the same rows: the held-out split matches
    /// the trainer's), and (b) the AIS value must lie within 3 standard errors of the
    /// exact one plus a slack of 0.01 nats. The slack covers forward AIS's downward
    /// (Jensen) bias, about se^2 / 2 < 0.005 for se < 0.1, and f32 pre-activations in
    /// the transitions (~1e-5 nats); 3 se leaves a two-sided miss chance of 0.3% per
    /// comparison if the delta-method error is right.
    pub(crate) fn check_against_exact(m: &BTreeMap<String, f64>, epoch: usize) {
        let se = m["ais_log_likelihood_stderr"];
        assert!(se > 0.0 && se < 0.1, "epoch {epoch}: stderr {se}");
        assert_eq!(se, m["ais_log_z_stderr"]);
        for (ais, exact) in [
            ("ais_log_likelihood", "log_likelihood"),
            ("val_ais_log_likelihood", "val_log_likelihood"),
        ] {
            let data_ais = m[ais] + m["ais_log_z"];
            let data_exact = m[exact] + m["log_z"];
            assert!(
                (data_ais - data_exact).abs() < 1e-9 * data_exact.abs().max(1.0),
                "epoch {epoch}: {ais} is over other rows than {exact}: {data_ais} vs {data_exact}"
            );
            let diff = m[ais] - m[exact];
            eprintln!(
                "epoch {epoch}: {ais} {:.4} vs exact {:.4}, se {se:.4}",
                m[ais], m[exact]
            );
            assert!(
                diff.abs() < 3.0 * se + 0.01,
                "epoch {epoch}: {ais} {} vs exact {} (diff {diff}, se {se})",
                m[ais],
                m[exact]
            );
        }
    }

    #[test]
    fn bernoulli_ais_heldout_likelihood_matches_the_exact_one() {
        let model = ModelSpec {
            model_type: "bernoulli_rbm".into(),
            hidden: Some(8),
            ..Default::default()
        };
        let train = TrainSpec {
            epochs: Some(5),
            batch_size: Some(20),
            learning_rate: Some(0.1),
            validation_fraction: Some(0.25),
            ais_every: Some(2),
            ais_chains: Some(200),
            ais_betas: Some(2000),
            ..Default::default()
        };
        let mut t = Trainer::new(&model, &train, 3, digits(400), BackendKind::Cpu).unwrap();
        let reports = run_all(&mut t);
        // epochs 2, 4 and the last (5)
        let with_ais: Vec<usize> = reports
            .iter()
            .filter(|r| r.metrics.contains_key("val_ais_log_likelihood"))
            .map(|r| r.epoch)
            .collect();
        assert_eq!(with_ais, vec![2, 4, 5]);
        for r in &reports {
            if r.metrics.contains_key("ais_log_z") {
                check_against_exact(&r.metrics, r.epoch);
                assert_eq!(r.metrics["ais_on_device"], 0.0);
                assert!(r.metrics["ais_seconds"] >= 0.0);
                assert!(r.metrics["ais_ess"] >= 1.0 && r.metrics["ais_ess"] <= 200.0);
                assert!(
                    r.metrics["ais_ess_fraction"] > 0.0 && r.metrics["ais_ess_fraction"] <= 1.0
                );
                assert!(r.metrics["ais_max_weight"] > 0.0 && r.metrics["ais_max_weight"] <= 1.0);
            }
        }
    }

    #[test]
    fn gaussian_ais_heldout_likelihood_matches_the_exact_one() {
        let m = gaussian_training_ais(BackendKind::Cpu);
        assert_eq!(m["ais_on_device"], 0.0, "{m:?}");
    }

    /// Trains a 4 x 4 Gaussian RBM on two-cluster data for 4 epochs with AIS after the
    /// last, checks the AIS log-likelihoods against the exact ones and returns the metrics.
    pub(crate) fn gaussian_training_ais(backend: BackendKind) -> BTreeMap<String, f64> {
        let key = crate::rng::RngKey::new(8, 1, 0);
        let values: Vec<f32> = (0..300 * 4)
            .map(|i| {
                let row = i / 4;
                let centre = if row % 2 == 0 { 5.0 } else { -3.0 };
                100.0 + centre * (1 + i % 4) as f32 + 4.0 * key.normal(i as u32)
            })
            .collect();
        let data = Dataset::from_values(300, 4, values).unwrap();
        let model = ModelSpec {
            model_type: "gaussian_rbm".into(),
            hidden: Some(4),
            ..Default::default()
        };
        let train = TrainSpec {
            epochs: Some(4),
            batch_size: Some(20),
            learning_rate: Some(0.05),
            validation_fraction: Some(0.2),
            ais_every: Some(4),
            ais_chains: Some(200),
            ais_betas: Some(2000),
            ..Default::default()
        };
        let mut t = Trainer::new(&model, &train, 4, data, backend).unwrap();
        let reports = run_all(&mut t);
        assert!(!reports[0].metrics.contains_key("ais_log_z"));
        check_against_exact(&reports[3].metrics, 4);
        reports[3].metrics.clone()
    }

    fn params(t: &Trainer) -> crate::rbm::RbmModel {
        crate::rbm::file::rbm_from_bytes(&t.model_file().unwrap()).unwrap()
    }

    /// AIS metrics leave training untouched: 10 epochs straight equal 4 + a stop in the
    /// middle of epoch 5 + resume + 6, parameters and AIS values bit for bit, and equal
    /// training without AIS.
    #[test]
    fn resume_with_ais_is_exact_and_ais_does_not_disturb_training() {
        let model = ModelSpec {
            model_type: "bernoulli_rbm".into(),
            hidden: Some(12),
            ..Default::default()
        };
        let plain = TrainSpec {
            method: "pcd".into(),
            chains: Some(16),
            epochs: Some(10),
            batch_size: Some(20),
            validation_fraction: Some(0.2),
            ..Default::default()
        };
        let train = TrainSpec {
            ais_every: Some(2),
            ais_chains: Some(20),
            ais_betas: Some(100),
            ..plain.clone()
        };
        let data = digits(150);
        let mut straight = Trainer::new(&model, &train, 5, data.clone(), BackendKind::Cpu).unwrap();
        let straight_reports = run_all(&mut straight);
        let mut first = Trainer::new(&model, &train, 5, data.clone(), BackendKind::Cpu).unwrap();
        for _ in 0..4 {
            first.run_epoch(&|| false, &mut |_| {}).unwrap().unwrap();
        }
        let calls = std::cell::Cell::new(0);
        let stop = || {
            calls.set(calls.get() + 1);
            calls.get() > 2
        };
        assert!(first.run_epoch(&stop, &mut |_| {}).unwrap().is_none());
        let bytes = first.checkpoint().unwrap();
        let mut resumed =
            Trainer::resume(&model, &train, 5, data.clone(), BackendKind::Cpu, &bytes).unwrap();
        assert_eq!(resumed.epochs_done(), 4);
        let resumed_reports = run_all(&mut resumed);
        assert_eq!(params(&straight), params(&resumed));
        for r in &resumed_reports {
            let s = &straight_reports[r.epoch - 1];
            for key in ["ais_log_z", "ais_log_z_stderr", "val_ais_log_likelihood"] {
                assert_eq!(
                    r.metrics.get(key),
                    s.metrics.get(key),
                    "epoch {} {key}",
                    r.epoch
                );
            }
            assert_eq!(r.metrics.contains_key("ais_log_z"), r.epoch % 2 == 0);
        }
        let mut without = Trainer::new(&model, &plain, 5, data, BackendKind::Cpu).unwrap();
        run_all(&mut without);
        assert_eq!(params(&straight), params(&without));
    }

    /// A stop during the AIS evaluation interrupts it (the epoch itself is done).
    #[test]
    fn a_stop_during_ais_interrupts_it() {
        let model = ModelSpec {
            model_type: "bernoulli_rbm".into(),
            hidden: Some(6),
            ..Default::default()
        };
        let train = TrainSpec {
            epochs: Some(2),
            batch_size: Some(50),
            ais_every: Some(1),
            ais_chains: Some(10),
            ais_betas: Some(1000),
            ..Default::default()
        };
        let mut t = Trainer::new(&model, &train, 1, digits(100), BackendKind::Cpu).unwrap();
        // 2 minibatches, then the AIS steps
        let calls = std::cell::Cell::new(0);
        let stop = || {
            calls.set(calls.get() + 1);
            calls.get() > 10
        };
        assert!(matches!(
            t.run_epoch(&stop, &mut |_| {}),
            Err(EngineError::Interrupted)
        ));
        assert_eq!(t.epochs_done(), 1);
    }

    #[test]
    fn ais_is_refused_for_models_it_does_not_apply_to() {
        let model = ModelSpec {
            model_type: "lattice_ising".into(),
            size: Some(4),
            ..Default::default()
        };
        let values: Vec<f32> = (0..10 * 16).map(|i| (i % 2) as f32 * 2.0 - 1.0).collect();
        let data = Dataset::from_values(10, 16, values).unwrap();
        let train = TrainSpec {
            ais_every: Some(1),
            ..Default::default()
        };
        match Trainer::new(&model, &train, 1, data, BackendKind::Cpu) {
            Err(EngineError::InvalidInput(msg)) => {
                assert!(msg.contains("estimate_log_z"), "{msg}")
            }
            other => panic!("expected InvalidInput, got {:?}", other.err()),
        }
    }
}
