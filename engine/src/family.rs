//! The interface a model family implements, below the facades (`train`, and through it the
//! server) and above the shared layers (backend, rng, stats, spec, data): the facades reach
//! a family only through [`Family`], found by model type in [`crate::registry`], so they
//! never match on the model type themselves.
//!
//! Import direction: backend, rng, stats, spec <- family <- rbm, potts, lattice <- registry
//! <- train.

use crate::backend::BackendKind;
use crate::data::{Dataset, ValueKind};
use crate::error::Result;
use crate::spec::{DataShape, ModelSpec, ModelType, TrainSettings, TrainSpec};
use crate::tensors::TensorReader;
use std::collections::BTreeMap;

/// What one finished epoch reports: `epoch` counts from 1.
#[derive(Clone, Debug, PartialEq)]
pub struct EpochReport {
    pub epoch: usize,
    pub metrics: BTreeMap<String, f64>,
}

/// A model family's trainer.
pub trait FamilyTrainer: Send {
    fn epochs_done(&self) -> usize;
    fn epochs_total(&self) -> usize;
    /// See [`crate::train::Trainer::run_epoch`].
    fn run_epoch(
        &mut self,
        should_stop: &dyn Fn() -> bool,
        progress: &mut dyn FnMut(f64),
    ) -> Result<Option<EpochReport>>;
    fn checkpoint(&self) -> Result<Vec<u8>>;
    fn model_file(&self) -> Result<Vec<u8>>;
}

/// Where a trainer starts from.
#[derive(Clone, Copy, Debug)]
pub enum Start<'a> {
    /// The family's own initialisation from the seed.
    Fresh,
    /// The parameters of a model file of the same type and shape (`init_model`).
    InitialModel(&'a [u8]),
    /// Exactly where a checkpoint of the same spec, seed and data left off.
    Checkpoint(&'a [u8]),
}

/// A training request, as the facade hands it to a family (already past the common checks).
pub struct TrainRequest<'a> {
    pub model_type: ModelType,
    pub model: &'a ModelSpec,
    pub train: &'a TrainSpec,
    /// `train` resolved against the data (`TrainSpec::resolve`).
    pub settings: &'a TrainSettings,
    pub seed: u64,
    pub backend: BackendKind,
}

/// A family's trainer, as the facade holds it.
pub type BoxedTrainer = Box<dyn FamilyTrainer>;

/// One model family: its model files, its training-request checks and its trainers on
/// every backend.
pub trait Family: Sync {
    /// Reads a model file of `model_type` (names, shapes, finite values: the checks of an
    /// import) and returns its dimensions for listings (e.g. `visible`, `hidden`).
    fn describe_file(
        &self,
        model_type: ModelType,
        file: &TensorReader,
    ) -> Result<BTreeMap<String, u64>>;

    /// The family's checks of a training request, after the common ones
    /// ([`crate::spec::validate_common`]): options it does not use are refused here,
    /// naming the field.
    fn validate(&self, request: &TrainRequest, data: &DataShape) -> Result<()>;

    /// Whether data values of this kind can fail [`Family::check_values`] when the shape
    /// passed [`Family::validate`] (real values where the family needs binary, spins or
    /// integer states). By default real-valued data can, binary and categorical data
    /// cannot.
    fn values_need_checking(&self, _model_type: ModelType, kind: ValueKind) -> bool {
        kind == ValueKind::Real
    }

    /// The checks only the data's values can tell.
    fn check_values(&self, request: &TrainRequest, data: &Dataset) -> Result<()>;

    /// The family's trainer on `request.backend`, started from `start`.
    fn trainer(&self, request: &TrainRequest, data: Dataset, start: Start) -> Result<BoxedTrainer>;
}
