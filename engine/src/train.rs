//! The training facade the server calls: one `Trainer` type for every model family. It
//! validates the request, builds the family's trainer on the chosen backend, and runs it
//! epoch by epoch, stoppable between minibatches, with checkpoints that continue exactly.
//! Families implement [`FamilyTrainer`]. With `train.ais_every` the facade adds AIS
//! held-out log-likelihood metrics (RBMs) after every n-th epoch and the last
//! ([`crate::estimate::heldout`]); they draw from a stream of their own, so training and
//! checkpoints are the same with or without them.

use crate::backend::BackendKind;
use crate::data::{Dataset, ValueKind};
use crate::error::{EngineError, Result};
use crate::estimate::heldout::HeldOutAis;
pub use crate::family::{EpochReport, FamilyTrainer};
use crate::family::{Family, Start, TrainRequest};
use crate::registry::family;
use crate::spec::{validate_common, DataShape, ModelSpec, ModelType, TrainSpec};

/// Runs `then` on a validated request: the common checks, then the family's. (Validation
/// does not depend on the seed or the backend.)
fn validated<T>(
    model: &ModelSpec,
    train: &TrainSpec,
    data: &DataShape,
    (seed, backend): (u64, BackendKind),
    then: impl FnOnce(&dyn Family, &TrainRequest) -> Result<T>,
) -> Result<T> {
    let (model_type, settings) = validate_common(model, train, data)?;
    let request = TrainRequest {
        model_type,
        model,
        train,
        settings: &settings,
        seed,
        backend,
    };
    let family = family(model_type);
    family.validate(&request, data)?;
    then(family, &request)
}

/// Checks a training request against the data before any work starts: the common checks,
/// then the family's.
pub fn validate_train(model: &ModelSpec, train: &TrainSpec, data: &DataShape) -> Result<()> {
    validated(model, train, data, (0, BackendKind::Cpu), |_, _| Ok(()))
}

/// Whether the values of a data set of this kind can make a request that passed
/// `validate_train` fail, so that a caller that has only the shape (the server, at
/// submission) should load the values and run [`validate_train_data`]: Bernoulli RBMs need
/// values in [0, 1], Potts models integer states, the lattice spins; real-valued data can
/// break each of those, binary and categorical data cannot.
pub fn values_need_checking(model: &ModelSpec, kind: ValueKind) -> bool {
    ModelType::from_name(&model.model_type).is_ok_and(|t| family(t).values_need_checking(t, kind))
}

/// `validate_train` plus the checks that need the values themselves (see
/// [`values_need_checking`]): everything a trainer would refuse, without training.
pub fn validate_train_data(model: &ModelSpec, train: &TrainSpec, data: &Dataset) -> Result<()> {
    validated(
        model,
        train,
        &shape_of(data),
        (0, BackendKind::Cpu),
        |f, r| f.check_values(r, data),
    )
}

/// Trains one model. Create with `new` (or `resume` from a checkpoint), call `run_epoch`
/// until `is_finished`, then `model_file`.
pub struct Trainer {
    inner: Box<dyn FamilyTrainer>,
    checkpoint_every: usize,
    /// AIS held-out log-likelihood on a schedule (`train.ais_every`), RBMs only.
    ais: Option<HeldOutAis>,
}

fn shape_of(data: &Dataset) -> DataShape {
    DataShape {
        rows: data.rows,
        cols: data.cols,
        kind: data.kind,
        q: data.q,
    }
}

/// The held-out AIS evaluation of a validated spec, when `train.ais_every` is set.
fn heldout_ais(
    model: &ModelSpec,
    train: &TrainSpec,
    seed: u64,
    data: &Dataset,
    backend: BackendKind,
) -> Result<Option<HeldOutAis>> {
    let Some(settings) = train.resolve_ais()? else {
        return Ok(None);
    };
    let units = match ModelType::from_name(&model.model_type)? {
        ModelType::BernoulliRbm => crate::backend::VisibleUnits::Bernoulli,
        ModelType::GaussianRbm => crate::backend::VisibleUnits::Gaussian,
        // refused by validate_train
        other => {
            return Err(EngineError::invalid(format!(
                "train.ais_every does not apply to {}",
                other.name()
            )))
        }
    };
    let fraction = train.resolve(data.rows)?.validation_fraction;
    Ok(Some(HeldOutAis::new(
        settings, units, data, seed, fraction, backend,
    )?))
}

impl Trainer {
    /// Validates the request, then builds the family's trainer on `backend` from `start`.
    fn start(
        model: &ModelSpec,
        train: &TrainSpec,
        seed: u64,
        data: Dataset,
        backend: BackendKind,
        start: Start,
    ) -> Result<Self> {
        let shape = shape_of(&data);
        validated(model, train, &shape, (seed, backend), |family, request| {
            let ais = heldout_ais(model, train, seed, &data, backend)?;
            Ok(Trainer {
                checkpoint_every: request.settings.checkpoint_every,
                inner: family.trainer(request, data, start)?,
                ais,
            })
        })
    }

    pub fn new(
        model: &ModelSpec,
        train: &TrainSpec,
        seed: u64,
        data: Dataset,
        backend: BackendKind,
    ) -> Result<Self> {
        Self::start(model, train, seed, data, backend, Start::Fresh)
    }

    /// Like `new`, starting from the parameters of `init_model` (a model file of the same
    /// type and shape, e.g. from an earlier job) instead of a random initialisation.
    pub fn new_with_initial_model(
        model: &ModelSpec,
        train: &TrainSpec,
        seed: u64,
        data: Dataset,
        backend: BackendKind,
        init_model: &[u8],
    ) -> Result<Self> {
        let start = Start::InitialModel(init_model);
        Self::start(model, train, seed, data, backend, start)
    }

    /// Continues from `checkpoint` (bytes from `checkpoint()`), which must come from the
    /// same spec, seed and data.
    pub fn resume(
        model: &ModelSpec,
        train: &TrainSpec,
        seed: u64,
        data: Dataset,
        backend: BackendKind,
        checkpoint: &[u8],
    ) -> Result<Self> {
        let start = Start::Checkpoint(checkpoint);
        Self::start(model, train, seed, data, backend, start)
    }

    /// Wraps a family trainer built elsewhere.
    pub fn from_family(inner: Box<dyn FamilyTrainer>, checkpoint_every: usize) -> Self {
        Trainer {
            inner,
            checkpoint_every: checkpoint_every.max(1),
            ais: None,
        }
    }

    pub fn epochs_done(&self) -> usize {
        self.inner.epochs_done()
    }

    pub fn epochs_total(&self) -> usize {
        self.inner.epochs_total()
    }

    pub fn is_finished(&self) -> bool {
        self.epochs_done() >= self.epochs_total()
    }

    /// Epochs between checkpoints (train.checkpoint_every, default 1).
    pub fn checkpoint_every(&self) -> usize {
        self.checkpoint_every
    }

    /// Runs (the rest of) one epoch. `should_stop` is checked before every minibatch; on
    /// stop it returns `Ok(None)` with the state consistent, so `checkpoint()` captures the
    /// exact mid-epoch position. `progress` receives the overall fraction done (0..1),
    /// at most every 0.2% and at the end of the epoch.
    ///
    /// When an AIS evaluation is due (`train.ais_every`) it runs after the epoch and its
    /// metrics join the report. A stop during it returns `Err(Interrupted)`: the epoch is
    /// done, but its report (with the AIS metrics) is not, so the caller should not
    /// checkpoint now; resuming from the previous checkpoint repeats the epoch exactly.
    pub fn run_epoch(
        &mut self,
        should_stop: &dyn Fn() -> bool,
        progress: &mut dyn FnMut(f64),
    ) -> Result<Option<EpochReport>> {
        let Some(mut report) = self.inner.run_epoch(should_stop, progress)? else {
            return Ok(None);
        };
        if let Some(ais) = &self.ais {
            if ais.is_due(report.epoch, self.inner.epochs_total()) {
                let model = crate::rbm::file::rbm_from_bytes(&self.inner.model_file()?)?;
                ais.evaluate(&model, report.epoch, should_stop, &mut report.metrics)?;
            }
        }
        Ok(Some(report))
    }

    /// Serialized training state; `resume` continues exactly from it.
    pub fn checkpoint(&self) -> Result<Vec<u8>> {
        self.inner.checkpoint()
    }

    /// The model as a safetensors file (tensor names of DESIGN.md, `type` metadata).
    pub fn model_file(&self) -> Result<Vec<u8>> {
        self.inner.model_file()
    }
}

#[cfg(test)]
mod pins;
