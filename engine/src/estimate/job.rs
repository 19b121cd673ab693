//! The `estimate_log_z` job: validates a request (mirroring proto `EstimateConfig`),
//! loads the model and runs exact enumeration, AIS, reverse AIS together with forward
//! AIS, or the sandwich of the two; with `target_stderr`, a pilot first plans the run.

use super::ais::{AisEstimate, Hooks};
use super::ais_run::{run_ais, AisRun, RunContext, RunPlan};
use super::bracket::{bracket, Bracket};
use super::model::load_model;
use super::placement::exact_note;
use super::precision::{
    check_target, plan_for_target, PlanLimits, PrecisionPlan, Side, PILOT_CHAINS, PILOT_STEPS,
};
use super::schedule::{default_schedule, validate_schedule, DEFAULT_STEPS, MAX_STEPS};
use crate::backend::BackendKind;
use crate::data::Dataset;
use crate::error::EngineError;
use crate::rng::RngStream;

pub const DEFAULT_CHAINS: usize = 100;
pub const MAX_CHAINS: usize = 100_000;
pub const DEFAULT_BURN_IN: usize = 1000;
pub const MAX_BURN_IN: usize = 1_000_000;
/// Bound on chains x annealing steps of one request.
pub const MAX_CHAIN_STEPS: u64 = 1 << 32;
/// RNG stream of the estimators (distinct from training's streams).
pub const ESTIMATE_STREAM: u32 = 0xE571;

/// What a client asks for (fields of proto `EstimateConfig`; `None` = default).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EstimateSpec {
    /// exact | ais | reverse_ais
    pub method: String,
    pub chains: Option<u32>,
    /// Annealing steps (the schedule has betas + 1 points from 0 to 1).
    pub betas: Option<u32>,
    /// Explicit schedule, increasing from 0 to 1; overrides `betas`.
    pub schedule: Vec<f64>,
    /// Reverse AIS without data: sweeps at the target before annealing back.
    pub burn_in: Option<u32>,
    /// Asks for this standard error of ln Z instead of chains x betas (see `precision`).
    pub target_stderr: Option<f64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EstimateMethod {
    Exact,
    Ais,
    ReverseAis,
    Sandwich,
}

impl EstimateMethod {
    pub fn from_name(name: &str) -> Result<Self, EngineError> {
        match name.trim() {
            "exact" => Ok(EstimateMethod::Exact),
            "" | "ais" => Ok(EstimateMethod::Ais),
            "reverse_ais" => Ok(EstimateMethod::ReverseAis),
            "sandwich" => Ok(EstimateMethod::Sandwich),
            other => Err(EngineError::InvalidInput(format!(
                "unknown estimate.method {other:?}; use exact, ais, reverse_ais or sandwich"
            ))),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            EstimateMethod::Exact => "exact",
            EstimateMethod::Ais => "ais",
            EstimateMethod::ReverseAis => "reverse_ais",
            EstimateMethod::Sandwich => "sandwich",
        }
    }
}

/// The outcome. For `ais` and `reverse_ais` the headline `log_z*` fields are forward
/// AIS (the lower side of the sandwich); `reverse` holds reverse AIS (the upper side).
/// For `sandwich` they are the midpoint, its standard error and the bracket.
#[derive(Clone, Debug, PartialEq)]
pub struct EstimateResult {
    pub method: EstimateMethod,
    pub model_type: String,
    pub log_z: f64,
    pub log_z_stderr: f64,
    pub log_z_low: f64,
    pub log_z_high: f64,
    /// ESS of the forward AIS weights.
    pub ess: Option<f64>,
    pub forward: Option<AisEstimate>,
    pub reverse: Option<AisEstimate>,
    /// `sandwich`: the bracket and point estimate.
    pub bracket: Option<Bracket>,
    /// `target_stderr`: the plan used and whether the target was reached.
    pub precision: Option<PrecisionPlan>,
    /// Why the error bar may not be trusted (see `diagnostics`); empty when it may.
    pub warnings: Vec<String>,
    /// What the run decided that the user should know (e.g. backend fallback).
    pub notes: Vec<String>,
}

struct Plan {
    method: EstimateMethod,
    chains: usize,
    schedule: Vec<f64>,
    burn_in: usize,
    target_stderr: Option<f64>,
}

fn plan(spec: &EstimateSpec) -> Result<Plan, EngineError> {
    let method = EstimateMethod::from_name(&spec.method)?;
    if let Some(target) = spec.target_stderr {
        check_target(target)?;
        if method == EstimateMethod::Exact {
            return Err(EngineError::invalid(
                "estimate.target_stderr applies to ais, reverse_ais and sandwich; exact \
                 enumeration has no error: drop target_stderr",
            ));
        }
        let given: Vec<&str> = [
            ("estimate.chains", spec.chains.is_some()),
            ("estimate.betas", spec.betas.is_some()),
            ("estimate.schedule", !spec.schedule.is_empty()),
        ]
        .iter()
        .filter(|(_, set)| *set)
        .map(|(name, _)| *name)
        .collect();
        if !given.is_empty() {
            return Err(EngineError::InvalidInput(format!(
                "estimate.target_stderr plans the chains and betas itself; drop {} or drop \
                 target_stderr",
                given.join(" and ")
            )));
        }
    }
    let chains = spec.chains.map_or(DEFAULT_CHAINS, |c| c as usize);
    if chains == 0 || chains > MAX_CHAINS {
        return Err(EngineError::InvalidInput(format!(
            "estimate.chains must be between 1 and {MAX_CHAINS}, got {chains}"
        )));
    }
    let schedule = if !spec.schedule.is_empty() {
        validate_schedule(&spec.schedule)?;
        spec.schedule.clone()
    } else {
        let steps = spec.betas.map_or(DEFAULT_STEPS, |b| b as usize);
        if steps == 0 || steps > MAX_STEPS {
            return Err(EngineError::InvalidInput(format!(
                "estimate.betas must be between 1 and {MAX_STEPS}, got {steps}"
            )));
        }
        default_schedule(steps)
    };
    if method != EstimateMethod::Exact
        && chains as u64 * (schedule.len() as u64 - 1) > MAX_CHAIN_STEPS
    {
        return Err(EngineError::InvalidInput(format!(
            "{chains} chains x {} steps exceed the limit of {MAX_CHAIN_STEPS} chain-steps",
            schedule.len() - 1
        )));
    }
    let burn_in = spec.burn_in.map_or(DEFAULT_BURN_IN, |b| b as usize);
    if burn_in > MAX_BURN_IN {
        return Err(EngineError::InvalidInput(format!(
            "estimate.burn_in must be at most {MAX_BURN_IN}"
        )));
    }
    Ok(Plan {
        method,
        chains,
        schedule,
        burn_in,
        target_stderr: spec.target_stderr,
    })
}

/// Runs an `estimate_log_z` request. `data` (optional) gives RBM base rates and reverse
/// AIS start states.
pub fn estimate_log_z(
    model_file: &[u8],
    spec: &EstimateSpec,
    data: Option<&Dataset>,
    seed: u64,
    backend: BackendKind,
    should_stop: &dyn Fn() -> bool,
    progress: &mut dyn FnMut(f64),
) -> Result<EstimateResult, EngineError> {
    let plan = plan(spec)?;
    let model = load_model(model_file)?;
    let mut rng = RngStream::new(seed, ESTIMATE_STREAM);
    if plan.method == EstimateMethod::Exact {
        let notes: Vec<String> = exact_note(backend).into_iter().collect();
        let mut hooks = Hooks {
            should_stop,
            progress,
        };
        let log_z = model.exact_log_z(&mut hooks)?;
        return Ok(EstimateResult {
            method: plan.method,
            model_type: model.type_name().into(),
            log_z,
            log_z_stderr: 0.0,
            log_z_low: log_z,
            log_z_high: log_z,
            ess: None,
            forward: None,
            reverse: None,
            bracket: None,
            precision: None,
            warnings: Vec::new(),
            notes,
        });
    }
    let ctx = RunContext {
        model: &model,
        data,
        backend,
        should_stop,
    };
    let reverse = plan.method != EstimateMethod::Ais;
    let (run, precision) = match plan.target_stderr {
        None => {
            let run_plan = RunPlan {
                chains: plan.chains,
                schedule: &plan.schedule,
                burn_in: plan.burn_in,
                reverse,
            };
            (run_ais(&ctx, &run_plan, &mut rng, progress)?, None)
        }
        Some(target) => {
            let (run, precision) = run_to_target(&ctx, &plan, target, &mut rng, progress)?;
            (run, Some(precision))
        }
    };
    progress(1.0);
    Ok(assemble(plan.method, model.type_name(), run, precision))
}

/// `target_stderr`: the pilot, a plan from its error, the planned run, and (when the
/// planned run misses the target, as a pilot in the short-schedule regime can mislead)
/// one more plan from the planned run's own error, within the limits.
fn run_to_target(
    ctx: &RunContext<'_>,
    plan: &Plan,
    target: f64,
    rng: &mut RngStream,
    progress: &mut dyn FnMut(f64),
) -> Result<(AisRun, PrecisionPlan), EngineError> {
    let reverse = plan.method != EstimateMethod::Ais;
    let limits = PlanLimits {
        max_chains: MAX_CHAINS,
        max_steps: MAX_STEPS,
        max_chain_steps: MAX_CHAIN_STEPS,
    };
    let schedule = default_schedule(PILOT_STEPS);
    let pilot_plan = RunPlan {
        chains: PILOT_CHAINS,
        schedule: &schedule,
        burn_in: plan.burn_in,
        reverse,
    };
    let pilot = run_ais(ctx, &pilot_plan, rng, &mut |f| progress(0.05 * f))?;
    let pilot_stderr = headline_stderr(plan.method, &pilot);
    let mut precision = PrecisionPlan {
        target_stderr: target,
        pilot_chains: PILOT_CHAINS,
        pilot_steps: PILOT_STEPS,
        pilot_stderr,
        chains: PILOT_CHAINS,
        steps: PILOT_STEPS,
        target_reached: pilot_stderr <= target,
    };
    let mut last = pilot;
    for round in 0..2 {
        let (chains, steps) = plan_for_target(&sides(plan.method, &last), target, limits)?;
        if round > 0 && chains <= precision.chains && steps <= precision.steps {
            break;
        }
        let schedule = default_schedule(steps);
        let run_plan = RunPlan {
            chains,
            schedule: &schedule,
            burn_in: plan.burn_in,
            reverse,
        };
        let (from, to) = if round == 0 { (0.05, 0.8) } else { (0.8, 1.0) };
        last = run_ais(ctx, &run_plan, rng, &mut |f| {
            progress(from + (to - from) * f)
        })?;
        precision.chains = chains;
        precision.steps = steps;
        precision.target_reached = headline_stderr(plan.method, &last) <= target;
        if precision.target_reached {
            break;
        }
    }
    Ok((last, precision))
}

/// The sides of a run whose errors make up the headline standard error.
fn sides(method: EstimateMethod, run: &AisRun) -> Vec<Side<'_>> {
    match (method, &run.reverse) {
        (EstimateMethod::Sandwich, Some(reverse)) => vec![
            Side {
                estimate: &run.forward,
                share: 0.25,
            },
            Side {
                estimate: reverse,
                share: 0.25,
            },
        ],
        _ => vec![Side {
            estimate: &run.forward,
            share: 1.0,
        }],
    }
}

fn headline_stderr(method: EstimateMethod, run: &AisRun) -> f64 {
    match (method, &run.reverse) {
        (EstimateMethod::Sandwich, Some(reverse)) => bracket(&run.forward, reverse).point_stderr,
        _ => run.forward.log_z_stderr,
    }
}

/// The result of a run: forward AIS as the headline, or for `sandwich` the midpoint with
/// the bracket as its interval; every warning of the run collected.
fn assemble(
    method: EstimateMethod,
    model_type: &str,
    run: AisRun,
    precision: Option<PrecisionPlan>,
) -> EstimateResult {
    let forward = run.forward;
    let sandwich = match (method, &run.reverse) {
        (EstimateMethod::Sandwich, Some(reverse)) => Some(bracket(&forward, reverse)),
        _ => None,
    };
    let mut warnings: Vec<String> = forward.warning.iter().cloned().collect();
    warnings.extend(run.reverse.iter().filter_map(|r| r.warning.clone()));
    warnings.extend(sandwich.iter().filter_map(|b| b.warning.clone()));
    if let Some(p) = precision.as_ref().filter(|p| !p.target_reached) {
        warnings.push(format!(
            "estimate.target_stderr = {} was not reached with the plan of {} chains x {} betas",
            p.target_stderr, p.chains, p.steps
        ));
    }
    let (log_z, log_z_stderr, log_z_low, log_z_high) = match &sandwich {
        Some(b) => (b.point, b.point_stderr, b.lower, b.upper),
        None => (
            forward.log_z,
            forward.log_z_stderr,
            forward.log_z_low,
            forward.log_z_high,
        ),
    };
    EstimateResult {
        method,
        model_type: model_type.into(),
        log_z,
        log_z_stderr,
        log_z_low,
        log_z_high,
        ess: Some(forward.ess),
        forward: Some(forward),
        reverse: run.reverse,
        bracket: sandwich,
        precision,
        warnings,
        notes: run.notes,
    }
}

/// Number of units of a model from its listing dims (`inspect_model`): RBM visible,
/// lattice size^2, Potts sites.
pub fn units_from_dims(
    model_type: &str,
    dims: &std::collections::BTreeMap<String, u64>,
) -> Option<u64> {
    match model_type {
        "bernoulli_rbm" | "gaussian_rbm" => dims.get("visible").copied(),
        "lattice_ising" => dims.get("size").map(|s| s * s),
        "potts" => dims.get("sites").copied(),
        _ => None,
    }
}

/// Checks an estimate request against a model's listing (type and dims) before it is
/// queued, so that a request that cannot run is refused at once: bad numbers, a bad
/// schedule, a model type the estimators do not handle, an exact request too large.
pub fn check_estimate_request(
    spec: &EstimateSpec,
    model_type: &str,
    dims: &std::collections::BTreeMap<String, u64>,
) -> Result<(), EngineError> {
    let plan = plan(spec)?;
    check_model_type(model_type)?;
    if plan.method == EstimateMethod::Exact {
        let dim = |k: &str| dims.get(k).copied().unwrap_or(0);
        match model_type {
            "bernoulli_rbm" => {
                let bits = dim("visible").min(dim("hidden"));
                if bits > super::exact::MAX_RBM_BITS as u64 {
                    return Err(EngineError::InvalidInput(format!(
                        "exact enumeration sums over the smaller layer, which has {bits} units here \
                         (2^{bits} states); at most {} are allowed: use method = \"ais\"",
                        super::exact::MAX_RBM_BITS
                    )));
                }
            }
            "gaussian_rbm" if dim("hidden") > super::exact::MAX_RBM_BITS as u64 => {
                return Err(EngineError::InvalidInput(format!(
                    "exact ln Z of a gaussian_rbm sums over the hidden layer, which has {} units here; at most {} are allowed: use method = \"ais\"",
                    dim("hidden"),
                    super::exact::MAX_RBM_BITS
                )));
            }
            "potts" => {
                let states = (dim("q") as f64).powf(dim("sites") as f64);
                if states > super::exact::MAX_DISCRETE_STATES as f64 {
                    return Err(EngineError::InvalidInput(format!(
                        "exact enumeration of {} sites with {} states each is too large (at most {} configurations); use method = \"ais\"",
                        dim("sites"),
                        dim("q"),
                        super::exact::MAX_DISCRETE_STATES
                    )));
                }
            }
            // Lattices: Kaufman's closed form at zero field, whatever the size; the field
            // is only known once the file is read.
            _ => {}
        }
    }
    Ok(())
}

/// The model types the estimators, `sample` and `observe` handle.
pub fn check_model_type(model_type: &str) -> Result<(), EngineError> {
    match model_type {
        "bernoulli_rbm" | "gaussian_rbm" | "lattice_ising" | "potts" => Ok(()),
        other => Err(EngineError::InvalidInput(format!(
            "estimate_log_z, sample and observe support bernoulli_rbm, gaussian_rbm, potts and \
             lattice_ising models; this model is {other:?}"
        ))),
    }
}
