//! The `estimate_log_z` job: converts the proto `EstimateConfig` into the engine's spec,
//! checks a submission against the model's listing before it is queued, and runs the
//! engine's estimator (exact, AIS, reverse AIS with forward AIS, the sandwich; with
//! `target_stderr`, planned from a pilot) and passes on its diagnostics and warnings.
use super::train::parse_limits;
use super::{JobContext, Outcome, Report};
use crate::store::ModelRecord;
use ebm_api::v1;
use ebm_engine::backend::BackendKind;
use ebm_engine::data::{parse_dataset, DataFormat, Dataset};
use ebm_engine::error::EngineError;
use ebm_engine::estimate::ais::AisEstimate;
use ebm_engine::estimate::job::check_estimate_request;
use ebm_engine::estimate::{estimate_log_z, EstimateSpec};

/// The engine's spec for a proto `EstimateConfig` (field for field).
pub fn estimate_spec(config: Option<&v1::EstimateConfig>) -> EstimateSpec {
    let config = config.cloned().unwrap_or_default();
    EstimateSpec {
        method: config.method,
        chains: config.chains,
        betas: config.betas,
        schedule: config.schedule,
        burn_in: config.burn_in,
        target_stderr: config.target_stderr,
    }
}

/// Checks a submission against the model it names, before it is queued.
pub fn validate(spec: &v1::JobSpec, model: &ModelRecord) -> Result<(), EngineError> {
    check_estimate_request(
        &estimate_spec(spec.estimate.as_ref()),
        &model.model_type,
        &model.dims,
    )
}

pub fn run(mut ctx: JobContext) -> Outcome {
    match estimate(&mut ctx) {
        Ok(outcome) => outcome,
        Err(error) => engine_failure(error),
    }
}

fn estimate(ctx: &mut JobContext) -> Result<Outcome, EngineError> {
    let (_, model) =
        ctx.inputs.model.take().ok_or_else(|| {
            EngineError::invalid("an estimate_log_z job needs a model (spec.model)")
        })?;
    let data = parse_job_dataset(ctx)?;
    let spec = estimate_spec(ctx.spec.estimate.as_ref());
    let backend = BackendKind::from_name(ctx.backend_name())?;
    let stop = ctx.stop.clone();
    let should_stop = move || stop.is_set();
    let seed = ctx.spec.seed;
    let estimate = {
        let mut progress = |fraction: f64| ctx.progress(fraction, 0, 0);
        estimate_log_z(
            &model,
            &spec,
            data.as_ref(),
            seed,
            backend,
            &should_stop,
            &mut progress,
        )?
    };
    for note in &estimate.notes {
        ctx.report(Report::Log(note.clone()));
    }
    for warning in &estimate.warnings {
        ctx.report(Report::Log(format!("warning: {warning}")));
    }
    let reverse = estimate.reverse.as_ref();
    let bracket = estimate.bracket.as_ref();
    Ok(Outcome::Succeeded {
        result: v1::JobResult {
            method: estimate.method.name().to_string(),
            log_z: Some(estimate.log_z),
            log_z_stderr: Some(estimate.log_z_stderr),
            log_z_low: Some(estimate.log_z_low),
            log_z_high: Some(estimate.log_z_high),
            ess: estimate.ess,
            log_z_reverse: reverse.map(|r| r.log_z),
            log_z_reverse_stderr: reverse.map(|r| r.log_z_stderr),
            forward_diagnostics: estimate.forward.as_ref().map(diagnostics),
            reverse_diagnostics: reverse.map(diagnostics),
            warnings: estimate.warnings.clone(),
            log_z_lower_bound: bracket.map(|b| b.lower),
            log_z_upper_bound: bracket.map(|b| b.upper),
            precision: estimate.precision.as_ref().map(|p| v1::PrecisionPlan {
                target_stderr: p.target_stderr,
                pilot_chains: p.pilot_chains as u32,
                pilot_betas: p.pilot_steps as u32,
                pilot_stderr: p.pilot_stderr,
                chains: p.chains as u32,
                betas: p.steps as u32,
                target_reached: p.target_reached,
            }),
            ..Default::default()
        },
        model: None,
        artifacts: Vec::new(),
    })
}

fn diagnostics(e: &AisEstimate) -> v1::AisDiagnostics {
    v1::AisDiagnostics {
        ess: e.diagnostics.ess,
        ess_fraction: e.diagnostics.ess_fraction,
        max_weight: e.diagnostics.max_weight,
        log_weight_variance: e.diagnostics.log_weight_variance,
        chains: e.chains as u32,
        betas: e.steps as u32,
    }
}

/// How an engine error ends a job of the estimator kinds. A stop request ends it as
/// stopped: these jobs keep no checkpoint and restart from scratch when requeued.
pub fn engine_failure(error: EngineError) -> Outcome {
    match error {
        EngineError::Interrupted => Outcome::Stopped,
        EngineError::Diverged(message) => Outcome::Failed(format!("diverged: {message}")),
        EngineError::InvalidInput(message) => Outcome::Failed(message),
        EngineError::Internal(message) => Outcome::Failed(format!("internal error: {message}")),
    }
}

/// The job's data set (if it names one), parsed.
pub fn parse_job_dataset(ctx: &mut JobContext) -> Result<Option<Dataset>, EngineError> {
    match ctx.inputs.dataset.take() {
        Some((record, bytes)) => Ok(Some(parse_dataset(
            DataFormat::from_name(&record.format)?,
            &bytes,
            &parse_limits(&ctx.limits),
        )?)),
        None => Ok(None),
    }
}
