//! The training facade the server calls: one `Trainer` type for every model family. It
//! validates the request, builds the family's trainer on the chosen backend, and runs it
//! epoch by epoch, stoppable between minibatches, with checkpoints that continue exactly.
//! Families implement [`FamilyTrainer`]. With `train.ais_every` the facade adds AIS
//! held-out log-likelihood metrics (RBMs) after every n-th epoch and the last
//! ([`crate::estimate::heldout`]); they draw from a stream of their own, so training and
//! checkpoints are the same with or without them.

use crate::backend::cpu::CpuBackend;
use crate::backend::BackendKind;
use crate::data::Dataset;
use crate::error::{EngineError, Result};
use crate::estimate::heldout::HeldOutAis;
use crate::lattice::sampler::{CpuLatticeSampler, LatticeSampler};
use crate::lattice::trainer::LatticeTrainer;
use crate::potts::sampler::{CpuPottsSampler, PottsSampler};
use crate::potts::trainer::PottsTrainer;
use crate::rbm::trainer::RbmTrainer;
use crate::spec::{validate_train, DataShape, ModelSpec, ModelType, TrainSpec};
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
    /// See [`Trainer::run_epoch`].
    fn run_epoch(
        &mut self,
        should_stop: &dyn Fn() -> bool,
        progress: &mut dyn FnMut(f64),
    ) -> Result<Option<EpochReport>>;
    fn checkpoint(&self) -> Result<Vec<u8>>;
    fn model_file(&self) -> Result<Vec<u8>>;
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

fn unavailable(backend: BackendKind) -> EngineError {
    EngineError::invalid(format!(
        "backend {} is not available in this build: use backend = \"cpu\"",
        backend.name()
    ))
}

/// The sweeps of Potts training on `backend`.
fn potts_sampler(backend: BackendKind) -> Result<Box<dyn PottsSampler>> {
    Ok(match backend {
        BackendKind::Cpu => Box::new(CpuPottsSampler),
        #[cfg(feature = "wgpu")]
        BackendKind::Wgpu => Box::new(crate::backend::cube::samplers::CubePottsSampler::<
            cubecl::wgpu::WgpuRuntime,
        >::new()?),
        #[cfg(feature = "cuda")]
        BackendKind::Cuda => Box::new(crate::backend::cube::samplers::CubePottsSampler::<
            cubecl::cuda::CudaRuntime,
        >::new()?),
        #[allow(unreachable_patterns)]
        other => return Err(unavailable(other)),
    })
}

/// The sweeps of lattice training on `backend`.
fn lattice_sampler(backend: BackendKind) -> Result<Box<dyn LatticeSampler>> {
    Ok(match backend {
        BackendKind::Cpu => Box::new(CpuLatticeSampler),
        #[cfg(feature = "wgpu")]
        BackendKind::Wgpu => Box::new(crate::backend::cube::samplers::CubeLatticeSampler::<
            cubecl::wgpu::WgpuRuntime,
        >::new()?),
        #[cfg(feature = "cuda")]
        BackendKind::Cuda => Box::new(crate::backend::cube::samplers::CubeLatticeSampler::<
            cubecl::cuda::CudaRuntime,
        >::new()?),
        #[allow(unreachable_patterns)]
        other => return Err(unavailable(other)),
    })
}

impl Trainer {
    pub fn new(
        model: &ModelSpec,
        train: &TrainSpec,
        seed: u64,
        data: Dataset,
        backend: BackendKind,
    ) -> Result<Self> {
        validate_train(model, train, &shape_of(&data))?;
        let checkpoint_every = train.resolve(data.rows)?.checkpoint_every;
        let ais = heldout_ais(model, train, seed, &data, backend)?;
        let inner: Box<dyn FamilyTrainer> = match ModelType::from_name(&model.model_type)? {
            ModelType::BernoulliRbm | ModelType::GaussianRbm => match backend {
                BackendKind::Cpu => Box::new(RbmTrainer::new(
                    CpuBackend::new(),
                    model,
                    train,
                    seed,
                    data,
                )?),
                #[cfg(feature = "wgpu")]
                BackendKind::Wgpu => Box::new(RbmTrainer::new(
                    crate::backend::cube::WgpuBackend::new()?,
                    model,
                    train,
                    seed,
                    data,
                )?),
                #[cfg(feature = "cuda")]
                BackendKind::Cuda => Box::new(RbmTrainer::new(
                    crate::backend::cube::CudaBackend::new()?,
                    model,
                    train,
                    seed,
                    data,
                )?),
                #[allow(unreachable_patterns)]
                other => return Err(unavailable(other)),
            },
            ModelType::Potts => Box::new(PottsTrainer::with_sampler(
                model,
                train,
                seed,
                data,
                potts_sampler(backend)?,
            )?),
            ModelType::LatticeIsing => Box::new(LatticeTrainer::with_sampler(
                model,
                train,
                seed,
                data,
                lattice_sampler(backend)?,
            )?),
        };
        Ok(Trainer {
            inner,
            checkpoint_every,
            ais,
        })
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
        validate_train(model, train, &shape_of(&data))?;
        let checkpoint_every = train.resolve(data.rows)?.checkpoint_every;
        let ais = heldout_ais(model, train, seed, &data, backend)?;
        let inner: Box<dyn FamilyTrainer> = match ModelType::from_name(&model.model_type)? {
            ModelType::BernoulliRbm | ModelType::GaussianRbm => match backend {
                BackendKind::Cpu => {
                    let mut t = RbmTrainer::new(CpuBackend::new(), model, train, seed, data)?;
                    t.initialize_from(init_model)?;
                    Box::new(t)
                }
                #[cfg(feature = "wgpu")]
                BackendKind::Wgpu => {
                    let backend = crate::backend::cube::WgpuBackend::new()?;
                    let mut t = RbmTrainer::new(backend, model, train, seed, data)?;
                    t.initialize_from(init_model)?;
                    Box::new(t)
                }
                #[cfg(feature = "cuda")]
                BackendKind::Cuda => {
                    let backend = crate::backend::cube::CudaBackend::new()?;
                    let mut t = RbmTrainer::new(backend, model, train, seed, data)?;
                    t.initialize_from(init_model)?;
                    Box::new(t)
                }
                #[allow(unreachable_patterns)]
                other => return Err(unavailable(other)),
            },
            ModelType::Potts => {
                let sampler = potts_sampler(backend)?;
                let mut t = PottsTrainer::with_sampler(model, train, seed, data, sampler)?;
                t.initialize_from(init_model)?;
                Box::new(t)
            }
            ModelType::LatticeIsing => {
                let sampler = lattice_sampler(backend)?;
                let mut t = LatticeTrainer::with_sampler(model, train, seed, data, sampler)?;
                t.initialize_from(init_model)?;
                Box::new(t)
            }
        };
        Ok(Trainer {
            inner,
            checkpoint_every,
            ais,
        })
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
        validate_train(model, train, &shape_of(&data))?;
        let checkpoint_every = train.resolve(data.rows)?.checkpoint_every;
        let ais = heldout_ais(model, train, seed, &data, backend)?;
        let inner: Box<dyn FamilyTrainer> = match ModelType::from_name(&model.model_type)? {
            ModelType::BernoulliRbm | ModelType::GaussianRbm => match backend {
                BackendKind::Cpu => {
                    let mut t = RbmTrainer::new(CpuBackend::new(), model, train, seed, data)?;
                    crate::rbm::checkpoint::restore(&mut t, checkpoint)?;
                    Box::new(t)
                }
                #[cfg(feature = "wgpu")]
                BackendKind::Wgpu => {
                    let backend = crate::backend::cube::WgpuBackend::new()?;
                    let mut t = RbmTrainer::new(backend, model, train, seed, data)?;
                    crate::rbm::checkpoint::restore(&mut t, checkpoint)?;
                    Box::new(t)
                }
                #[cfg(feature = "cuda")]
                BackendKind::Cuda => {
                    let backend = crate::backend::cube::CudaBackend::new()?;
                    let mut t = RbmTrainer::new(backend, model, train, seed, data)?;
                    crate::rbm::checkpoint::restore(&mut t, checkpoint)?;
                    Box::new(t)
                }
                #[allow(unreachable_patterns)]
                other => return Err(unavailable(other)),
            },
            ModelType::Potts => Box::new(crate::potts::checkpoint::resume_with_sampler(
                model,
                train,
                seed,
                data,
                checkpoint,
                potts_sampler(backend)?,
            )?),
            ModelType::LatticeIsing => Box::new(LatticeTrainer::resume_with_sampler(
                model,
                train,
                seed,
                data,
                checkpoint,
                lattice_sampler(backend)?,
            )?),
        };
        Ok(Trainer {
            inner,
            checkpoint_every,
            ais,
        })
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
                let model = crate::model_file::rbm_from_bytes(&self.inner.model_file()?)?;
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
