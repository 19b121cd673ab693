//! The `sample` job: draws samples from a model's chains (burn-in, thinning, chains) and
//! stores them as the artifact `samples.npy` (float32, rows = draws, chain-major).
use super::estimate::engine_failure;
use super::{JobContext, Outcome, Report};
use crate::store::ModelRecord;
use ebm_api::v1;
use ebm_engine::backend::BackendKind;
use ebm_engine::error::EngineError;
use ebm_engine::sample::{check_sample_request, run_sample, SampleSpec};

pub const ARTIFACT: &str = "samples.npy";

pub fn sample_spec(config: Option<&v1::SampleConfig>) -> SampleSpec {
    let config = config.cloned().unwrap_or_default();
    SampleSpec {
        samples: config.samples,
        burn_in: config.burn_in,
        thin: config.thin,
        chains: config.chains,
    }
}

pub fn validate(spec: &v1::JobSpec, model: &ModelRecord) -> Result<(), EngineError> {
    check_sample_request(
        &sample_spec(spec.sample.as_ref()),
        &model.model_type,
        &model.dims,
    )
}

pub fn run(mut ctx: JobContext) -> Outcome {
    match sample(&mut ctx) {
        Ok(outcome) => outcome,
        Err(error) => engine_failure(error),
    }
}

fn sample(ctx: &mut JobContext) -> Result<Outcome, EngineError> {
    let (_, model) = ctx
        .inputs
        .model
        .take()
        .ok_or_else(|| EngineError::invalid("a sample job needs a model (spec.model)"))?;
    let spec = sample_spec(ctx.spec.sample.as_ref());
    let backend = BackendKind::from_name(ctx.backend_name())?;
    let stop = ctx.stop.clone();
    let should_stop = move || stop.is_set();
    let seed = ctx.spec.seed;
    let (matrix, notes) = {
        let mut progress = |fraction: f64| ctx.progress(fraction, 0, 0);
        run_sample(&model, &spec, seed, backend, &should_stop, &mut progress)?
    };
    for note in notes {
        ctx.report(Report::Log(note));
    }
    ctx.report(Report::Log(format!(
        "{} draws from {} chains ({} each), chain-major",
        matrix.rows, matrix.chains, matrix.draws_per_chain
    )));
    Ok(Outcome::Succeeded {
        result: v1::JobResult {
            artifact: ARTIFACT.to_string(),
            rows: matrix.rows as u64,
            cols: matrix.cols as u64,
            ..Default::default()
        },
        model: None,
        artifacts: vec![(ARTIFACT.to_string(), matrix.to_npy())],
    })
}
