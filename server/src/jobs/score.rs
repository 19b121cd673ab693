//! The `score` job (per-row energies or free energies of a data set under a model, and
//! log-likelihoods when ln Z is known: artifact `scores.csv`) and the `scan` job (the energy
//! change of every single mutant of a reference state: artifact `scan.npy` [sites, states]).
use super::estimate::{engine_failure, parse_job_dataset};
use super::train::parse_limits;
use super::{JobContext, Outcome, Report};
use crate::config::Limits;
use crate::store::{DatasetRecord, JobRecord, ModelRecord};
use ebm_api::v1;
use ebm_engine::data::{parse_dataset, DataFormat};
use ebm_engine::error::EngineError;
use ebm_engine::score::{scan, score_rows, LogZ};

pub const SCORES_ARTIFACT: &str = "scores.csv";
pub const SCAN_ARTIFACT: &str = "scan.npy";

/// Checks a score or scan submission against the model it names, before it is queued.
pub fn validate(spec: &v1::JobSpec, model: &ModelRecord) -> Result<(), EngineError> {
    ebm_engine::estimate::job::check_model_type(&model.model_type)?;
    let units =
        ebm_engine::estimate::job::units_from_dims(&model.model_type, &model.dims).unwrap_or(0);
    match spec.kind.as_str() {
        "score" => {
            if spec.dataset.is_empty() {
                return Err(EngineError::invalid(
                    "a score job needs spec.dataset: the rows to score",
                ));
            }
            if spec.scan.is_some() {
                return Err(EngineError::invalid("a score job takes no [scan] section"));
            }
            let config = spec.score.clone().unwrap_or_default();
            if let Some(v) = config.log_z {
                if !v.is_finite() {
                    return Err(EngineError::invalid("score.log_z must be a finite number"));
                }
                if !config.log_z_job.is_empty() {
                    return Err(EngineError::invalid(
                        "give score.log_z or score.log_z_job, not both",
                    ));
                }
            }
            if let Some(e) = config.log_z_stderr {
                if !(e.is_finite() && e >= 0.0) || config.log_z.is_none() {
                    return Err(EngineError::invalid(
                        "score.log_z_stderr must be finite, >= 0, and go with score.log_z",
                    ));
                }
            }
            if config.log_likelihood == Some(false)
                && (config.log_z.is_some() || !config.log_z_job.is_empty())
            {
                return Err(EngineError::invalid(
                    "score.log_likelihood = false asks for no log-likelihoods: drop score.log_z / log_z_job",
                ));
            }
            Ok(())
        }
        _ => {
            if !spec.dataset.is_empty() || spec.score.is_some() {
                return Err(EngineError::invalid(
                    "a scan job takes a reference state (scan.reference), no data set or [score]",
                ));
            }
            if model.model_type == "gaussian_rbm" {
                return Err(EngineError::invalid(
                    "a mutational scan needs discrete units; a gaussian_rbm has real-valued ones",
                ));
            }
            let reference = spec.scan.as_ref().map(|s| s.reference.len()).unwrap_or(0);
            if reference as u64 != units {
                return Err(EngineError::invalid(format!(
                    "scan.reference must be a state of the model: one value per unit ({units}), got {reference}"
                )));
            }
            let values = &spec
                .scan
                .as_ref()
                .map(|s| s.reference.as_slice())
                .unwrap_or(&[]);
            let q = model.dims.get("q").copied().unwrap_or(0) as f32;
            let (ok, allowed): (fn(f32, f32) -> bool, String) = match model.model_type.as_str() {
                "potts" => (
                    |x, q| x >= 0.0 && x < q && x.fract() == 0.0,
                    format!("a state 0..{}", q - 1.0),
                ),
                "lattice_ising" => (|x, _| x == -1.0 || x == 1.0 || x == 0.0, "-1 or +1".into()),
                _ => (|x, _| x == 0.0 || x == 1.0, "0 or 1".into()),
            };
            if let Some((i, x)) = values.iter().enumerate().find(|(_, &x)| !ok(x, q)) {
                return Err(EngineError::invalid(format!(
                    "scan.reference[{i}] = {x}, but each unit of this {} model must be {allowed}",
                    model.model_type
                )));
            }
            Ok(())
        }
    }
}

/// Whether a score submission's data set must be read to check it: Potts rows must be
/// integer states below the model's q and lattice rows spins (-1/+1, or 0 for -1), which
/// binary data always are and other data may not be. RBM rows are always scorable
/// (Bernoulli units read x >= 1/2 as on, Gaussian units any real value).
pub fn needs_values(model: &ModelRecord, dataset: &DatasetRecord) -> bool {
    matches!(model.model_type.as_str(), "potts" | "lattice_ising") && dataset.value_kind != "binary"
}

/// Refuses a score submission whose data set holds a value that is not a state of the
/// model, naming the first such row and column (before the job is queued; the job would
/// fail on it).
pub fn validate_values(
    model: &ModelRecord,
    dataset: &DatasetRecord,
    bytes: &[u8],
    limits: &Limits,
) -> Result<(), EngineError> {
    let format = DataFormat::from_name(&dataset.format)?;
    let data = parse_dataset(format, bytes, &parse_limits(limits))?;
    let q = model.dims.get("q").copied().unwrap_or(0);
    let (ok, allowed): (Box<dyn Fn(f32) -> bool>, String) = match model.model_type.as_str() {
        // NaN marks an unknown residue of a FASTA upload: scored as the gap state, as
        // training reads it by default (the job's log says how many).
        "potts" if format == DataFormat::Fasta => (
            Box::new(move |x| x.is_nan() || (x >= 0.0 && x < q as f32 && x.fract() == 0.0)),
            format!("a state 0..{} (q = {q})", q.saturating_sub(1)),
        ),
        "potts" => (
            Box::new(move |x| x >= 0.0 && x < q as f32 && x.fract() == 0.0),
            format!("a state 0..{} (q = {q})", q.saturating_sub(1)),
        ),
        _ => (
            Box::new(|x| x == -1.0 || x == 1.0 || x == 0.0),
            "a spin: -1 or +1 (0 reads as -1)".into(),
        ),
    };
    let cols = data.cols.max(1);
    match data.values.iter().position(|&x| !ok(x)) {
        None => Ok(()),
        Some(i) => Err(EngineError::invalid(format!(
            "data set {} row {} column {} is {}, but each unit of this {} model must be {allowed}",
            dataset.id,
            i / cols,
            i % cols,
            data.values[i],
            model.model_type
        ))),
    }
}

/// The ln Z (and its standard error) of a succeeded `estimate_log_z` job of `model`, for
/// `score.log_z_job`; else what is wrong with it.
pub fn log_z_of(estimate: &JobRecord, model: &str) -> Result<(f64, f64), String> {
    let id = &estimate.id;
    if estimate.kind != "estimate_log_z" {
        return Err(format!(
            "score.log_z_job {id} is a {} job, not an estimate_log_z job",
            estimate.kind
        ));
    }
    if estimate.state != "succeeded" {
        return Err(format!(
            "score.log_z_job {id} is {}: it must have succeeded",
            estimate.state
        ));
    }
    let spec: v1::JobSpec = serde_json::from_str(&estimate.spec)
        .map_err(|e| format!("job {id}'s spec is unreadable: {e}"))?;
    if spec.model != model {
        return Err(format!(
            "score.log_z_job {id} estimated ln Z of model {}, not of {model}",
            spec.model
        ));
    }
    let result: v1::JobResult = serde_json::from_str(estimate.result.as_deref().unwrap_or("{}"))
        .map_err(|e| format!("job {id}'s result is unreadable: {e}"))?;
    match result.log_z {
        Some(v) if v.is_finite() => Ok((v, result.log_z_stderr.unwrap_or(0.0))),
        _ => Err(format!("score.log_z_job {id} has no ln Z")),
    }
}

pub fn run(mut ctx: JobContext) -> Outcome {
    let result = if ctx.spec.kind == "scan" {
        run_scan(&mut ctx)
    } else {
        run_score(&mut ctx)
    };
    result.unwrap_or_else(engine_failure)
}

fn run_score(ctx: &mut JobContext) -> Result<Outcome, EngineError> {
    let (_, model) = ctx
        .inputs
        .model
        .take()
        .ok_or_else(|| EngineError::invalid("a score job needs a model (spec.model)"))?;
    let data = parse_job_dataset(ctx)?
        .ok_or_else(|| EngineError::invalid("a score job needs a data set (spec.dataset)"))?;
    let config = ctx.spec.score.clone().unwrap_or_default();
    let (log_z, source) = match (config.log_z, &ctx.inputs.log_z, config.log_likelihood) {
        (_, _, Some(false)) => (LogZ::None, String::new()),
        (Some(value), _, _) => (
            LogZ::Given {
                value,
                stderr: config.log_z_stderr.unwrap_or(0.0),
            },
            "given".to_string(),
        ),
        (None, Some((value, stderr)), _) => (
            LogZ::Given {
                value: *value,
                stderr: *stderr,
            },
            format!("job:{}", config.log_z_job),
        ),
        (None, None, _) if !config.log_z_job.is_empty() => {
            return Err(EngineError::invalid(format!(
                "the ln Z of job {} could not be read",
                config.log_z_job
            )))
        }
        _ => (LogZ::ExactIfEnumerable, "exact".to_string()),
    };
    let stop = ctx.stop.clone();
    let should_stop = move || stop.is_set();
    let scores = {
        let mut progress = |fraction: f64| ctx.progress(fraction, 0, 0);
        score_rows(&model, &data, &log_z, &should_stop, &mut progress)?
    };
    for note in &scores.notes {
        ctx.report(Report::Log(note.clone()));
    }
    if scores.log_z.is_none() && log_z == LogZ::ExactIfEnumerable {
        ctx.report(Report::Log(
            "the model is too large for exact ln Z: no log-likelihoods; give score.log_z or \
             score.log_z_job (an estimate_log_z job of this model) to get them"
                .into(),
        ));
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let result = v1::JobResult {
        artifact: SCORES_ARTIFACT.to_string(),
        rows: scores.values.len() as u64,
        cols: 1 + scores.log_likelihood.is_some() as u64,
        score_column: scores.column.to_string(),
        mean: Some(mean(&scores.values)),
        log_z: scores.log_z.map(|(v, _, _)| v),
        log_z_stderr: scores.log_z.map(|(_, e, _)| e),
        log_z_source: if scores.log_z.is_some() {
            source
        } else {
            String::new()
        },
        mean_log_likelihood: scores.log_likelihood.as_deref().map(mean),
        ..Default::default()
    };
    Ok(Outcome::Succeeded {
        result,
        model: None,
        artifacts: vec![(SCORES_ARTIFACT.to_string(), scores.to_csv().into_bytes())],
    })
}

fn run_scan(ctx: &mut JobContext) -> Result<Outcome, EngineError> {
    let (_, model) = ctx
        .inputs
        .model
        .take()
        .ok_or_else(|| EngineError::invalid("a scan job needs a model (spec.model)"))?;
    let reference = ctx
        .spec
        .scan
        .as_ref()
        .map(|s| s.reference.clone())
        .unwrap_or_default();
    let scan = scan(&model, &reference)?;
    Ok(Outcome::Succeeded {
        result: v1::JobResult {
            artifact: SCAN_ARTIFACT.to_string(),
            rows: scan.sites as u64,
            cols: scan.states as u64,
            score_column: scan.column.to_string(),
            reference_energy: Some(scan.reference_energy),
            ..Default::default()
        },
        model: None,
        artifacts: vec![(SCAN_ARTIFACT.to_string(), scan.to_npy())],
    })
}
