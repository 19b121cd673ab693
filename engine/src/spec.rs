//! Engine-side job specs. `ModelSpec` and `TrainSpec` mirror `ModelConfig` and
//! `TrainConfig` of proto/ebm/v1/jobs.proto field for field (unset = `None` or `""`), so
//! the server converts mechanically; `validate_common` holds the checks of a training
//! request that every family shares (each family adds its own: `crate::family`), and
//! `TrainSpec::resolve` fills in the defaults (documented on each field) as one
//! `TrainSettings` every family uses.

use crate::data::ValueKind;
use crate::error::{EngineError, Result};
use serde::{Deserialize, Serialize};

mod ais;
use ais::validate_ais;
pub use ais::AisSettings;

/// Upper bounds on every size a client controls.
pub const MAX_HIDDEN: u32 = 100_000;
pub const MAX_PARAMETERS: u64 = 200_000_000;
pub const MAX_K: u32 = 10_000;
pub const MAX_CHAINS: u32 = 1_000_000;
pub const MAX_EPOCHS: u32 = 1_000_000;
pub const MAX_BATCH: u32 = 1_000_000;
pub const MAX_TEMPERATURES: usize = 256;
/// Bound on chains x visible units held in memory (f32 values).
pub const MAX_CHAIN_CELLS: u64 = 500_000_000;
/// AIS during training (`train.ais_*`): defaults and bounds. One evaluation costs
/// chains x betas block-Gibbs transitions of the RBM.
pub const DEFAULT_AIS_CHAINS: u32 = 100;
pub const DEFAULT_AIS_BETAS: u32 = 10_000;
pub const MAX_AIS_CHAINS: u32 = 10_000;
pub const MAX_AIS_BETAS: u32 = 1_000_000;
pub const MAX_AIS_CHAIN_STEPS: u64 = 1 << 30;

/// Model families.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelType {
    BernoulliRbm,
    GaussianRbm,
    Potts,
    LatticeIsing,
}

impl ModelType {
    pub fn from_name(name: &str) -> Result<Self> {
        match name.trim() {
            "bernoulli_rbm" => Ok(ModelType::BernoulliRbm),
            "gaussian_rbm" => Ok(ModelType::GaussianRbm),
            "potts" => Ok(ModelType::Potts),
            "lattice_ising" => Ok(ModelType::LatticeIsing),
            "" => Err(EngineError::invalid(
                "model type is missing: set model.type to bernoulli_rbm, gaussian_rbm, potts or lattice_ising",
            )),
            other => Err(EngineError::invalid(format!(
                "unknown model type {other:?} (model.type): use bernoulli_rbm, gaussian_rbm, potts or lattice_ising"
            ))),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            ModelType::BernoulliRbm => "bernoulli_rbm",
            ModelType::GaussianRbm => "gaussian_rbm",
            ModelType::Potts => "potts",
            ModelType::LatticeIsing => "lattice_ising",
        }
    }

    pub fn is_rbm(&self) -> bool {
        matches!(self, ModelType::BernoulliRbm | ModelType::GaussianRbm)
    }
}

/// Mirrors proto `ModelConfig` (without `init_model`, which the server resolves).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ModelSpec {
    /// bernoulli_rbm | gaussian_rbm | potts | lattice_ising
    pub model_type: String,
    /// RBMs: hidden units (required).
    pub hidden: Option<u32>,
    /// potts: states per site.
    pub q: Option<u32>,
    /// lattice_ising: L of the L x L torus.
    pub size: Option<u32>,
    /// gaussian_rbm: learn per-visible sigma (default false: sigma = 1 on standardized data).
    pub learn_sigma: Option<bool>,
    /// gaussian_rbm: standardize each column to mean 0, std 1 (default true).
    pub standardize: Option<bool>,
    pub reweight_identity: Option<f64>,
    pub pseudocount: Option<f64>,
    pub unknown_residues: Option<String>,
    /// Optional check: the data must have this many columns.
    pub visible: Option<u32>,
}

/// Mirrors proto `TrainConfig`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TrainSpec {
    /// cd | pcd | pt (default pcd)
    pub method: String,
    /// Gibbs steps per update (default 1).
    pub k: Option<u32>,
    /// Persistent chains for pcd/pt (default: the batch size).
    pub chains: Option<u32>,
    /// Default 10.
    pub epochs: Option<u32>,
    /// Default min(100, training rows).
    pub batch_size: Option<u32>,
    /// Default 0.05 (sgd) or 0.001 (adam).
    pub learning_rate: Option<f64>,
    /// sgd | adam (default sgd)
    pub optimizer: String,
    /// sgd momentum (default 0.5).
    pub momentum: Option<f64>,
    pub l1: Option<f64>,
    pub l2: Option<f64>,
    /// Epochs between checkpoints (default 1).
    pub checkpoint_every: Option<u32>,
    /// constant | linear | exponential (default constant)
    pub lr_schedule: String,
    /// Final learning rate of a schedule (default learning_rate / 100).
    pub lr_final: Option<f64>,
    /// RBMs: centering (default false).
    pub centering: Option<bool>,
    /// pt: inverse temperatures, increasing, ending at 1.
    pub betas: Vec<f64>,
    /// potts: gibbs | metropolis
    pub sampler: String,
    /// Held-out share of the rows (default 0).
    pub validation_fraction: Option<f64>,
    /// RBMs: AIS held-out log-likelihood every n epochs (and after the last); off by default.
    pub ais_every: Option<u32>,
    /// Annealing steps of each AIS evaluation (default 10000).
    pub ais_betas: Option<u32>,
    /// AIS chains (default 100).
    pub ais_chains: Option<u32>,
    pub adam_beta1: Option<f64>,
    pub adam_beta2: Option<f64>,
    pub adam_eps: Option<f64>,
    /// pt: Gibbs steps between swap attempts (default 1).
    pub pt_swap_every: Option<u32>,
    /// RBMs: where the visible biases start: data (default) | zero.
    #[serde(default)]
    pub visible_bias_init: String,
    /// RBMs: visit the training rows in a new random order every epoch (default true);
    /// false keeps the data's own order.
    #[serde(default)]
    pub shuffle: Option<bool>,
}

/// The shape of a data set, for validation without the values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DataShape {
    pub rows: usize,
    pub cols: usize,
    pub kind: ValueKind,
    pub q: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    Cd,
    Pcd,
    Pt,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OptimizerKind {
    Sgd,
    Adam,
}

/// Where an RBM's visible biases start.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VisibleBiasInit {
    /// The independent-unit model of the data: Bernoulli units at the log-odds of each
    /// column's mean (Hinton's guide), Gaussian units at the column means.
    #[default]
    Data,
    /// Zero, as scikit-learn's BernoulliRBM starts.
    Zero,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LrSchedule {
    Constant,
    Linear,
    Exponential,
}

/// A `TrainSpec` with every default filled in and every value checked.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainSettings {
    pub method: Method,
    pub k: usize,
    pub chains: usize,
    pub epochs: usize,
    pub batch_size: usize,
    pub learning_rate: f64,
    pub optimizer: OptimizerKind,
    pub momentum: f64,
    pub l1: f64,
    pub l2: f64,
    pub checkpoint_every: usize,
    pub lr_schedule: LrSchedule,
    pub lr_final: f64,
    pub centering: bool,
    pub betas: Vec<f64>,
    pub validation_fraction: f64,
    pub adam_beta1: f64,
    pub adam_beta2: f64,
    pub adam_eps: f64,
    pub pt_swap_every: usize,
    /// potts: "" (the family's default) | gibbs | metropolis; checked by the family.
    pub sampler: String,
    /// RBMs (others refuse a value in the spec); absent in settings stored before it existed.
    #[serde(default)]
    pub visible_bias_init: VisibleBiasInit,
    /// RBMs: a new random row order every epoch (true unless the spec says false).
    #[serde(default = "shuffle_by_default")]
    pub shuffle: bool,
}

fn shuffle_by_default() -> bool {
    true
}

impl TrainSettings {
    /// Learning rate for an epoch (0-based) under the schedule.
    pub fn learning_rate_at(&self, epoch: usize) -> f64 {
        let t = if self.epochs <= 1 {
            0.0
        } else {
            epoch.min(self.epochs - 1) as f64 / (self.epochs - 1) as f64
        };
        match self.lr_schedule {
            LrSchedule::Constant => self.learning_rate,
            LrSchedule::Linear => self.learning_rate + t * (self.lr_final - self.learning_rate),
            LrSchedule::Exponential => {
                self.learning_rate * (self.lr_final / self.learning_rate).powf(t)
            }
        }
    }

    /// Rows used for training after the validation split.
    pub fn training_rows(&self, rows: usize) -> usize {
        rows - validation_rows(rows, self.validation_fraction)
    }
}

/// Rows held out for validation: floor(fraction * rows).
pub fn validation_rows(rows: usize, fraction: f64) -> usize {
    ((rows as f64) * fraction).floor() as usize
}

fn positive_finite(name: &str, value: f64) -> Result<f64> {
    if value.is_finite() && value > 0.0 {
        Ok(value)
    } else {
        Err(EngineError::invalid(format!(
            "train.{name} must be a positive finite number, got {value}"
        )))
    }
}

fn in_range(name: &str, value: f64, low: f64, high: f64, what: &str) -> Result<f64> {
    if value.is_finite() && value >= low && value < high {
        Ok(value)
    } else {
        Err(EngineError::invalid(format!(
            "train.{name} must be {what}, got {value}"
        )))
    }
}

fn bounded(name: &str, value: u32, max: u32) -> Result<usize> {
    if value == 0 || value > max {
        Err(EngineError::invalid(format!(
            "train.{name} must be between 1 and {max}, got {value}"
        )))
    } else {
        Ok(value as usize)
    }
}

impl TrainSpec {
    /// Fills in defaults and checks every value; `rows` is the data set's row count.
    pub fn resolve(&self, rows: usize) -> Result<TrainSettings> {
        let method = match self.method.trim() {
            "" | "pcd" => Method::Pcd,
            "cd" => Method::Cd,
            "pt" => Method::Pt,
            other => {
                return Err(EngineError::invalid(format!(
                    "unknown train.method {other:?}: use cd, pcd or pt"
                )))
            }
        };
        let optimizer = match self.optimizer.trim() {
            "" | "sgd" => OptimizerKind::Sgd,
            "adam" => OptimizerKind::Adam,
            other => {
                return Err(EngineError::invalid(format!(
                    "unknown train.optimizer {other:?}: use sgd or adam"
                )))
            }
        };
        let lr_schedule = match self.lr_schedule.trim() {
            "" | "constant" => LrSchedule::Constant,
            "linear" => LrSchedule::Linear,
            "exponential" => LrSchedule::Exponential,
            other => {
                return Err(EngineError::invalid(format!(
                    "unknown train.lr_schedule {other:?}: use constant, linear or exponential"
                )))
            }
        };
        let validation_fraction = in_range(
            "validation_fraction",
            self.validation_fraction.unwrap_or(0.0),
            0.0,
            0.91,
            "between 0 and 0.9",
        )?;
        let held_out = validation_rows(rows, validation_fraction);
        let train_rows = rows - held_out;
        if train_rows == 0 {
            return Err(EngineError::invalid(format!(
                "train.validation_fraction {validation_fraction} leaves no training rows out of {rows}"
            )));
        }
        if validation_fraction > 0.0 && held_out == 0 {
            return Err(EngineError::invalid(format!(
                "train.validation_fraction {validation_fraction} holds out no rows of {rows}: raise it or set it to 0"
            )));
        }
        let batch_size = match self.batch_size {
            None => train_rows.min(100),
            Some(b) => {
                let b = bounded("batch_size", b, MAX_BATCH)?;
                if b > train_rows {
                    return Err(EngineError::invalid(format!(
                        "train.batch_size {b} is larger than the {train_rows} training rows: lower it"
                    )));
                }
                b
            }
        };
        let k = bounded("k", self.k.unwrap_or(1), MAX_K)?;
        let chains = match self.chains {
            None => batch_size,
            Some(c) => bounded("chains", c, MAX_CHAINS)?,
        };
        let epochs = bounded("epochs", self.epochs.unwrap_or(10), MAX_EPOCHS)?;
        let default_lr = match optimizer {
            OptimizerKind::Sgd => 0.05,
            OptimizerKind::Adam => 0.001,
        };
        let learning_rate =
            positive_finite("learning_rate", self.learning_rate.unwrap_or(default_lr))?;
        if learning_rate > 100.0 {
            return Err(EngineError::invalid(format!(
                "train.learning_rate {learning_rate} is too large (at most 100)"
            )));
        }
        let lr_final = positive_finite("lr_final", self.lr_final.unwrap_or(learning_rate / 100.0))?;
        if self.lr_final.is_some() && lr_schedule == LrSchedule::Constant {
            return Err(EngineError::invalid(
                "train.lr_final needs a schedule: set train.lr_schedule to linear or exponential",
            ));
        }
        let momentum = in_range(
            "momentum",
            self.momentum.unwrap_or(0.5),
            0.0,
            1.0,
            "in [0, 1)",
        )?;
        if self.momentum.is_some() && optimizer == OptimizerKind::Adam {
            return Err(EngineError::invalid(
                "train.momentum applies to sgd; for adam set adam_beta1 instead",
            ));
        }
        let l1 = in_range("l1", self.l1.unwrap_or(0.0), 0.0, 100.0, "in [0, 100)")?;
        let l2 = in_range("l2", self.l2.unwrap_or(0.0), 0.0, 100.0, "in [0, 100)")?;
        let checkpoint_every = bounded(
            "checkpoint_every",
            self.checkpoint_every.unwrap_or(1),
            MAX_EPOCHS,
        )?;
        let adam_beta1 = in_range(
            "adam_beta1",
            self.adam_beta1.unwrap_or(0.9),
            0.0,
            1.0,
            "in [0, 1)",
        )?;
        let adam_beta2 = in_range(
            "adam_beta2",
            self.adam_beta2.unwrap_or(0.999),
            0.0,
            1.0,
            "in [0, 1)",
        )?;
        let adam_eps = positive_finite("adam_eps", self.adam_eps.unwrap_or(1e-8))?;
        if optimizer == OptimizerKind::Sgd
            && (self.adam_beta1.is_some() || self.adam_beta2.is_some() || self.adam_eps.is_some())
        {
            return Err(EngineError::invalid(
                "train.adam_beta1/adam_beta2/adam_eps apply to optimizer = \"adam\"",
            ));
        }
        let pt_swap_every = bounded("pt_swap_every", self.pt_swap_every.unwrap_or(1), MAX_K)?;
        let betas = self.betas.clone();
        if method == Method::Pt {
            check_ladder(&betas)?;
        } else {
            if !betas.is_empty() {
                return Err(EngineError::invalid(
                    "train.betas (a temperature ladder) applies only to method = \"pt\"",
                ));
            }
            if self.pt_swap_every.is_some() {
                return Err(EngineError::invalid(
                    "train.pt_swap_every applies only to method = \"pt\"",
                ));
            }
        }
        self.resolve_ais()?;
        let visible_bias_init = match self.visible_bias_init.trim() {
            "" | "data" => VisibleBiasInit::Data,
            "zero" => VisibleBiasInit::Zero,
            other => {
                return Err(EngineError::invalid(format!(
                    "train.visible_bias_init must be \"data\" (the data's independent-unit \
                     model, the default) or \"zero\", got {other:?}"
                )))
            }
        };
        Ok(TrainSettings {
            method,
            k,
            chains,
            epochs,
            batch_size,
            learning_rate,
            optimizer,
            momentum,
            l1,
            l2,
            checkpoint_every,
            lr_schedule,
            lr_final,
            centering: self.centering.unwrap_or(false),
            betas,
            validation_fraction,
            adam_beta1,
            adam_beta2,
            adam_eps,
            pt_swap_every,
            sampler: self.sampler.trim().to_string(),
            visible_bias_init,
            shuffle: self.shuffle.unwrap_or(true),
        })
    }
}

/// Refuses the RBM-only training options for a full-batch family (`potts`,
/// `lattice_ising`), naming the field: centering is an RBM gradient, and the visible-bias
/// start and the row order mean nothing where every update uses all the data.
pub fn refuse_rbm_options(train: &TrainSpec, family: &str) -> Result<(), EngineError> {
    let refused = if train.centering.is_some() {
        format!("train.centering applies to bernoulli_rbm, not {family}: remove it")
    } else if !train.visible_bias_init.trim().is_empty() {
        format!("train.visible_bias_init applies to RBMs, not {family}: remove it")
    } else if train.shuffle.is_some() {
        format!(
            "train.shuffle applies to RBMs, not {family}: every update uses all the data \
             (remove it)"
        )
    } else {
        return Ok(());
    };
    Err(EngineError::invalid(refused))
}

/// A parallel-tempering ladder: 2..=MAX_TEMPERATURES finite values in (0, 1], strictly
/// increasing, ending at 1.
pub fn check_ladder(betas: &[f64]) -> Result<()> {
    if betas.len() < 2 {
        return Err(EngineError::invalid(
            "method = \"pt\" needs a temperature ladder: set train.betas to at least two \
             increasing inverse temperatures ending at 1, e.g. [0.5, 0.75, 1.0]",
        ));
    }
    if betas.len() > MAX_TEMPERATURES {
        return Err(EngineError::invalid(format!(
            "train.betas has {} temperatures, at most {MAX_TEMPERATURES} are allowed",
            betas.len()
        )));
    }
    if betas
        .iter()
        .any(|b| !(b.is_finite() && *b > 0.0 && *b <= 1.0))
    {
        return Err(EngineError::invalid("train.betas must all lie in (0, 1]"));
    }
    if betas.windows(2).any(|w| w[0] >= w[1]) {
        return Err(EngineError::invalid(
            "train.betas must be strictly increasing",
        ));
    }
    if *betas.last().unwrap_or(&0.0) != 1.0 {
        return Err(EngineError::invalid(
            "train.betas must end at 1 (the model itself)",
        ));
    }
    Ok(())
}

/// The checks of a training request that every family shares (the data is not empty, its
/// columns match `model.visible`, the options resolve, `ais_every` fits the family); each
/// family's own follow in [`crate::train::validate_train`]. Returns the model type and the
/// resolved options.
pub fn validate_common(
    model: &ModelSpec,
    train: &TrainSpec,
    data: &DataShape,
) -> Result<(ModelType, TrainSettings)> {
    let model_type = ModelType::from_name(&model.model_type)?;
    if data.rows == 0 || data.cols == 0 {
        return Err(EngineError::invalid("the data set is empty"));
    }
    if let Some(v) = model.visible {
        if v as usize != data.cols {
            return Err(EngineError::invalid(format!(
                "model.visible is {v} but the data set has {} columns: use a data set with {v} columns or change model.visible",
                data.cols
            )));
        }
    }
    let settings = train.resolve(data.rows)?;
    validate_ais(model_type, train, data)?;
    Ok((model_type, settings))
}

#[cfg(test)]
mod tests;
