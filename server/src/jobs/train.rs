//! The `train` job: converts the proto spec into the engine's specs, checks a submission
//! against its data set and the server's limits, and runs the engine's [`Trainer`] epoch by
//! epoch, reporting metrics, checkpointing, and stopping at a minibatch boundary on request.
use super::{JobContext, Outcome, ProducedModel, Report, StopReason};
use crate::config::Limits;
use crate::store::{DatasetRecord, ModelRecord};
use ebm_api::v1;
use ebm_engine::backend::BackendKind;
use ebm_engine::data::{parse_dataset, DataFormat, ParseLimits, ValueKind};
use ebm_engine::error::EngineError;
use ebm_engine::model_file::inspect_model;
use ebm_engine::spec::{DataShape, ModelSpec, TrainSpec};
use ebm_engine::train::validate_train;
use ebm_engine::train::Trainer;
use std::collections::BTreeMap;

/// The engine's model spec for a proto `ModelConfig` (field for field).
pub fn model_spec(config: &v1::ModelConfig) -> ModelSpec {
    ModelSpec {
        model_type: config.r#type.clone(),
        hidden: config.hidden,
        q: config.q,
        size: config.size,
        learn_sigma: config.learn_sigma,
        standardize: config.standardize,
        reweight_identity: config.reweight_identity,
        pseudocount: config.pseudocount,
        unknown_residues: config.unknown_residues.clone(),
        visible: config.visible,
    }
}

/// The engine's train spec for a proto `TrainConfig` (field for field).
pub fn train_spec(config: &v1::TrainConfig) -> TrainSpec {
    TrainSpec {
        method: config.method.clone(),
        k: config.k,
        chains: config.chains,
        epochs: config.epochs,
        batch_size: config.batch_size,
        learning_rate: config.learning_rate,
        optimizer: config.optimizer.clone(),
        momentum: config.momentum,
        l1: config.l1,
        l2: config.l2,
        checkpoint_every: config.checkpoint_every,
        lr_schedule: config.lr_schedule.clone(),
        lr_final: config.lr_final,
        centering: config.centering,
        betas: config.betas.clone(),
        sampler: config.sampler.clone(),
        validation_fraction: config.validation_fraction,
        ais_every: config.ais_every,
        ais_betas: config.ais_betas,
        ais_chains: config.ais_chains,
        adam_beta1: config.adam_beta1,
        adam_beta2: config.adam_beta2,
        adam_eps: config.adam_eps,
        pt_swap_every: config.pt_swap_every,
        visible_bias_init: config.visible_bias_init.clone(),
        shuffle: config.shuffle,
    }
}

/// The engine's parse limits from the server's.
pub fn parse_limits(limits: &Limits) -> ParseLimits {
    ParseLimits {
        max_rows: limits.max_rows,
        max_cols: limits.max_cols,
        max_cells: limits.max_cells,
    }
}

pub fn value_kind_from_name(name: &str) -> Result<ValueKind, EngineError> {
    match name {
        "binary" => Ok(ValueKind::Binary),
        "real" => Ok(ValueKind::Real),
        "categorical" => Ok(ValueKind::Categorical),
        other => Err(EngineError::Internal(format!(
            "stored data set has value kind {other:?}"
        ))),
    }
}

/// Checks a train submission before it is queued: the server's limits, then the engine's
/// own validation against the data set's shape. The message says what to fix.
pub fn validate(
    spec: &v1::JobSpec,
    dataset: &DatasetRecord,
    limits: &Limits,
) -> Result<(), EngineError> {
    let config = spec.model_config.as_ref().ok_or_else(|| {
        EngineError::invalid("a train job needs a model: set the [model] table (model_config)")
    })?;
    let model = model_spec(config);
    let train = spec.train.as_ref().map(train_spec).unwrap_or_default();
    for (name, value, max) in [
        ("model.hidden", model.hidden, limits.max_hidden),
        ("train.epochs", train.epochs, limits.max_epochs),
        ("train.chains", train.chains, limits.max_chains),
        ("train.ais_chains", train.ais_chains, limits.max_chains),
        ("train.batch_size", train.batch_size, limits.max_batch_size),
        ("train.k", train.k, limits.max_gibbs_steps),
    ] {
        if let Some(value) = value {
            if value > max {
                return Err(EngineError::invalid(format!(
                    "{name} = {value} is above this server's limit of {max}"
                )));
            }
        }
    }
    let shape = DataShape {
        rows: dataset.rows as usize,
        cols: dataset.cols as usize,
        kind: value_kind_from_name(&dataset.value_kind)?,
        q: dataset.q as u32,
    };
    validate_train(&model, &train, &shape)?;
    let backend = spec.backend.trim();
    if config.r#type.trim() == "potts" && !backend.is_empty() && backend != "cpu" {
        let q = model.q.map_or(dataset.q as usize, |q| q as usize);
        let max = ebm_engine::potts::sampler::DEVICE_MAX_STATES;
        if q > max {
            return Err(EngineError::invalid(format!(
                "backend = {backend:?}: the device Potts sweeps hold at most {max} states per \
                 site, but this model has q = {q}: set backend = \"cpu\""
            )));
        }
    }
    Ok(())
}

/// Whether a submission's data set must be read to validate it: its value kind leaves
/// open whether the values suit the model (e.g. real numbers for a Potts model must be
/// integer states); see [`ebm_engine::train::values_need_checking`].
pub fn needs_values(spec: &v1::JobSpec, dataset: &DatasetRecord) -> bool {
    let (Some(config), Ok(kind)) = (
        spec.model_config.as_ref(),
        value_kind_from_name(&dataset.value_kind),
    ) else {
        return false;
    };
    ebm_engine::train::values_need_checking(&model_spec(config), kind)
}

/// The checks of a submission that need the data set's values (parsed from its stored
/// bytes): everything the trainer would refuse before its first epoch.
pub fn validate_values(
    spec: &v1::JobSpec,
    dataset: &DatasetRecord,
    bytes: &[u8],
    limits: &Limits,
) -> Result<(), EngineError> {
    let config = spec
        .model_config
        .as_ref()
        .ok_or_else(|| EngineError::invalid("a train job needs a model: set [model]"))?;
    let train = spec.train.as_ref().map(train_spec).unwrap_or_default();
    let data = parse_dataset(
        DataFormat::from_name(&dataset.format)?,
        bytes,
        &parse_limits(limits),
    )?;
    ebm_engine::train::validate_train_data(&model_spec(config), &train, &data)
}

/// Checks `model.init_model` (the listing of the model it names) against the request:
/// the same model type and the shape the data set and spec imply.
pub fn validate_init_model(
    spec: &v1::JobSpec,
    dataset: &DatasetRecord,
    init: &ModelRecord,
) -> Result<(), EngineError> {
    let config = spec
        .model_config
        .as_ref()
        .ok_or_else(|| EngineError::invalid("a train job needs a model: set [model]"))?;
    if init.model_type != config.r#type.trim() {
        return Err(EngineError::invalid(format!(
            "model.init_model {} is a {} model, but model.type is {:?}: start from a model of \
             the same type",
            init.id, init.model_type, config.r#type
        )));
    }
    let dim = |name: &str| init.dims.get(name).copied();
    let cols = dataset.cols as u64;
    let mut expected: Vec<(&str, u64)> = Vec::new();
    match init.model_type.as_str() {
        "bernoulli_rbm" | "gaussian_rbm" => {
            expected.push(("visible", cols));
            if let Some(h) = config.hidden {
                expected.push(("hidden", u64::from(h)));
            }
        }
        "potts" => {
            expected.push(("sites", cols));
            match (config.q, dataset.q) {
                (Some(q), _) => expected.push(("q", u64::from(q))),
                (None, q) if q > 0 => expected.push(("q", q as u64)),
                _ => {}
            }
        }
        "lattice_ising" => {
            let side = (cols as f64).sqrt().round() as u64;
            expected.push(("size", config.size.map_or(side, u64::from)));
        }
        _ => {}
    }
    for (name, want) in expected {
        if let Some(have) = dim(name).filter(|&have| have != want) {
            return Err(EngineError::invalid(format!(
                "model.init_model {} has {name} = {have}, but this job needs {name} = {want} \
                 (from the data set and the [model] table): start from a model of the same shape",
                init.id
            )));
        }
    }
    Ok(())
}

/// Runs a train job on the calling (dedicated) thread.
pub fn run(mut ctx: JobContext) -> Outcome {
    match train(&mut ctx) {
        Ok(outcome) => outcome,
        Err(EngineError::Interrupted) => stopped(&ctx, None),
        Err(EngineError::Diverged(message)) => Outcome::Failed(format!(
            "training diverged: {message} (the last good checkpoint is kept)"
        )),
        Err(EngineError::InvalidInput(message)) => Outcome::Failed(message),
        Err(EngineError::Internal(message)) => {
            Outcome::Failed(format!("internal error: {message}"))
        }
    }
}

fn train(ctx: &mut JobContext) -> Result<Outcome, EngineError> {
    let (record, bytes) = ctx
        .inputs
        .dataset
        .take()
        .ok_or_else(|| EngineError::invalid("a train job needs a data set"))?;
    let data = parse_dataset(
        DataFormat::from_name(&record.format)?,
        &bytes,
        &parse_limits(&ctx.limits),
    )?;
    drop(bytes);
    let config = ctx
        .spec
        .model_config
        .clone()
        .ok_or_else(|| EngineError::invalid("a train job needs a model: set [model]"))?;
    let model = model_spec(&config);
    let train = ctx.spec.train.as_ref().map(train_spec).unwrap_or_default();
    // Every family trains on every backend (Potts and lattice sweeps run on the device,
    // the rest on the host; see the engine's `potts::sampler`, `lattice::sampler`).
    let backend = BackendKind::from_name(ctx.backend_name())?;
    let seed = ctx.spec.seed;
    let mut trainer = match ctx.inputs.checkpoint.take() {
        Some(checkpoint) => {
            let trainer = Trainer::resume(&model, &train, seed, data, backend, &checkpoint.data)?;
            ctx.report(Report::Log(format!(
                "resumed from the checkpoint of attempt {} after {} epochs",
                checkpoint.attempt,
                trainer.epochs_done()
            )));
            trainer
        }
        None => match ctx.inputs.init_model.take() {
            Some((record, init)) => {
                let trainer =
                    Trainer::new_with_initial_model(&model, &train, seed, data, backend, &init)?;
                ctx.report(Report::Log(format!(
                    "started from the parameters of model {}",
                    record.id
                )));
                trainer
            }
            None if !config.init_model.is_empty() => {
                return Err(EngineError::invalid(format!(
                    "model.init_model {} no longer exists",
                    config.init_model
                )))
            }
            None => Trainer::new(&model, &train, seed, data, backend)?,
        },
    };
    let epochs = trainer.epochs_total() as u32;
    let checkpoint_every = train.checkpoint_every.unwrap_or(1).max(1) as usize;
    let mut final_metrics = BTreeMap::new();
    while !trainer.is_finished() {
        let stop = ctx.stop.clone();
        let should_stop = move || stop.is_set();
        let done = trainer.epochs_done();
        let report = {
            let mut progress = |fraction: f64| {
                let overall = (done as f64 + fraction) / f64::from(epochs.max(1));
                ctx.progress(overall, done as u32 + 1, epochs);
            };
            trainer.run_epoch(&should_stop, &mut progress)?
        };
        let Some(report) = report else {
            return Ok(stopped(ctx, Some(&trainer)));
        };
        let done = trainer.epochs_done();
        ctx.report(Report::Metrics {
            epoch: done as u32,
            epochs,
            metrics: report.metrics.clone(),
        });
        final_metrics = report.metrics;
        if done % checkpoint_every == 0 && !trainer.is_finished() {
            ctx.report(Report::Checkpoint {
                epoch: done as u64,
                data: trainer.checkpoint()?,
            });
        }
    }
    let data = trainer.model_file()?;
    let info = inspect_model(&data)?;
    let name = if ctx.spec.name.is_empty() {
        ctx.job.id.clone()
    } else {
        ctx.spec.name.clone()
    };
    Ok(Outcome::Succeeded {
        result: v1::JobResult {
            final_metrics: final_metrics.into_iter().collect(),
            ..Default::default()
        },
        model: Some(ProducedModel {
            model_type: info.model_type,
            name,
            dims: info.dims,
            metadata: info.metadata,
            data,
        }),
        artifacts: Vec::new(),
    })
}

/// The job stopped on request. For a shutdown, the exact mid-epoch state is checkpointed
/// first so the next attempt continues where this one stopped.
fn stopped(ctx: &JobContext, trainer: Option<&Trainer>) -> Outcome {
    if ctx.stop.reason() == Some(StopReason::Shutdown) {
        if let Some(trainer) = trainer {
            match trainer.checkpoint() {
                Ok(data) => ctx.report(Report::Checkpoint {
                    epoch: trainer.epochs_done() as u64,
                    data,
                }),
                Err(e) => ctx.report(Report::Log(format!(
                    "could not checkpoint on shutdown ({e}); resuming from the previous checkpoint"
                ))),
            }
        }
    }
    Outcome::Stopped
}
