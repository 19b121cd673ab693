//! The `observe` job: the distribution of a statistic under a model (histogram, modes,
//! mean, std, quantiles, ESS, R-hat) and the statistic of the most likely microstate.
use super::estimate::engine_failure;
use super::{JobContext, Outcome, Report};
use crate::store::ModelRecord;
use ebm_api::v1;
use ebm_engine::backend::BackendKind;
use ebm_engine::error::EngineError;
use ebm_engine::observe::{check_observe_request, run_observe, ObserveSpec};

pub fn observe_spec(config: Option<&v1::ObserveConfig>) -> ObserveSpec {
    let config = config.cloned().unwrap_or_default();
    ObserveSpec {
        statistic: config.statistic,
        samples: config.samples,
        burn_in: config.burn_in,
        chains: config.chains,
        bins: config.bins,
        reference: config.reference,
        weights: config.weights,
        units: config.units,
        thin: config.thin,
        betas: config.betas,
        couplings: config.couplings,
    }
}

pub fn validate(spec: &v1::JobSpec, model: &ModelRecord) -> Result<(), EngineError> {
    check_observe_request(
        &observe_spec(spec.observe.as_ref()),
        &model.model_type,
        &model.dims,
    )
}

pub fn run(mut ctx: JobContext) -> Outcome {
    match observe(&mut ctx) {
        Ok(outcome) => outcome,
        Err(error) => engine_failure(error),
    }
}

fn observe(ctx: &mut JobContext) -> Result<Outcome, EngineError> {
    let (_, model) = ctx
        .inputs
        .model
        .take()
        .ok_or_else(|| EngineError::invalid("an observe job needs a model (spec.model)"))?;
    let spec = observe_spec(ctx.spec.observe.as_ref());
    if spec.points()?.is_some() {
        return observe_points(ctx, &model, &spec);
    }
    let backend = BackendKind::from_name(ctx.backend_name())?;
    let stop = ctx.stop.clone();
    let should_stop = move || stop.is_set();
    let seed = ctx.spec.seed;
    let (report, notes) = {
        let mut progress = |fraction: f64| ctx.progress(fraction, 0, 0);
        run_observe(&model, &spec, seed, backend, &should_stop, &mut progress)?
    };
    for note in notes {
        ctx.report(Report::Log(note));
    }
    let s = &report.summary;
    if s.modes.len() > 1 {
        ctx.report(Report::Log(format!(
            "the distribution of {} has {} modes; its mean alone would mislead",
            report.statistic,
            s.modes.len()
        )));
    }
    if s.r_hat.is_finite() && s.r_hat > 1.1 {
        ctx.report(Report::Log(format!(
            "R-hat is {:.3} (> 1.1): the chains disagree, so the histogram may not represent the model; \
             use more burn-in or samples",
            s.r_hat
        )));
    }
    let finite = |x: f64| x.is_finite().then_some(x);
    Ok(Outcome::Succeeded {
        result: v1::JobResult {
            statistic: report.statistic.clone(),
            histogram: Some(v1::Histogram {
                edges: s.histogram.edges.clone(),
                counts: s.histogram.counts.clone(),
            }),
            mode: finite(s.mode),
            modes: s.modes.iter().map(|m| m.value).collect(),
            mean: finite(s.mean),
            std: finite(s.std),
            quantiles: s
                .quantiles
                .iter()
                .map(|&(q, value)| v1::Quantile { q, value })
                .collect(),
            ess: finite(s.ess),
            r_hat: finite(s.r_hat),
            map_statistic: finite(report.map_statistic),
            ..Default::default()
        },
        model: None,
        artifacts: Vec::new(),
    })
}

/// An observe over `betas` / `couplings`: one summary per point.
fn observe_points(
    ctx: &mut JobContext,
    model: &[u8],
    spec: &ebm_engine::observe::ObserveSpec,
) -> Result<Outcome, EngineError> {
    let stop = ctx.stop.clone();
    let should_stop = move || stop.is_set();
    let seed = ctx.spec.seed;
    let points = {
        let mut progress = |fraction: f64| ctx.progress(fraction, 0, 0);
        ebm_engine::observe::run_observe_points(model, spec, seed, &should_stop, &mut progress)?
    };
    if let Some(p) = points.iter().find(|p| p.r_hat.is_finite() && p.r_hat > 1.1) {
        ctx.report(Report::Log(format!(
            "R-hat is {:.3} (> 1.1) at beta = {}, J = {}: the chains disagree there; use more burn-in or samples",
            p.r_hat, p.beta, p.coupling
        )));
    }
    Ok(Outcome::Succeeded {
        result: v1::JobResult {
            statistic: spec.statistic.trim().to_string(),
            points: points
                .iter()
                .map(|p| v1::ObservePoint {
                    beta: p.beta,
                    coupling: p.coupling,
                    field: p.field,
                    mean: p.mean,
                    mean_stderr: p.mean_stderr,
                    variance: p.variance,
                    variance_stderr: p.variance_stderr,
                    per_site: p.per_site,
                    per_site_stderr: p.per_site_stderr,
                    binder: p.binder,
                    binder_stderr: p.binder_stderr,
                    r_hat: p.r_hat,
                })
                .collect(),
            ..Default::default()
        },
        model: None,
        artifacts: Vec::new(),
    })
}
