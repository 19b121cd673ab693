//! The `estimate_log_z` job: validates a request (mirroring proto `EstimateConfig`),
//! loads the model and runs exact enumeration, AIS, or reverse AIS together with forward
//! AIS (so the user sees the sandwich).

use super::ais::{forward_ais, reverse_ais, AisEstimate, Hooks};
use super::model::load_model;
use super::placement::{exact_note, place_chains};
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
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EstimateMethod {
    Exact,
    Ais,
    ReverseAis,
}

impl EstimateMethod {
    pub fn from_name(name: &str) -> Result<Self, EngineError> {
        match name.trim() {
            "exact" => Ok(EstimateMethod::Exact),
            "" | "ais" => Ok(EstimateMethod::Ais),
            "reverse_ais" => Ok(EstimateMethod::ReverseAis),
            other => Err(EngineError::InvalidInput(format!(
                "unknown estimate.method {other:?}; use exact, ais or reverse_ais"
            ))),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            EstimateMethod::Exact => "exact",
            EstimateMethod::Ais => "ais",
            EstimateMethod::ReverseAis => "reverse_ais",
        }
    }
}

/// The outcome. For `ais` and `reverse_ais` the headline `log_z*` fields are forward
/// AIS (the lower side of the sandwich); `reverse` holds reverse AIS (the upper side).
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
    /// What the run decided that the user should know (e.g. backend fallback).
    pub notes: Vec<String>,
}

struct Plan {
    method: EstimateMethod,
    chains: usize,
    schedule: Vec<f64>,
    burn_in: usize,
}

fn plan(spec: &EstimateSpec) -> Result<Plan, EngineError> {
    let method = EstimateMethod::from_name(&spec.method)?;
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
            notes,
        });
    }
    // Chains on the requested backend's device where it has them (see `placement`).
    let (mut chains, placement_note) = place_chains(&model, plan.chains, data, backend)?;
    let mut notes: Vec<String> = placement_note.into_iter().collect();
    let reverse = plan.method == EstimateMethod::ReverseAis;
    // Progress: forward AIS takes all of it, or the first half with reverse AIS.
    let share = if reverse { 0.5 } else { 1.0 };
    let forward = {
        let mut part = |f: f64| progress(share * f);
        let mut hooks = Hooks {
            should_stop,
            progress: &mut part,
        };
        forward_ais(chains.as_mut(), &plan.schedule, &mut rng, &mut hooks)?
    };
    let reverse_estimate = if reverse {
        match data {
            Some(d) => {
                let states = model.data_states(d, chains.as_ref())?;
                let start: Vec<f32> = (0..plan.chains)
                    .flat_map(|c| states[c % states.len()].iter().copied())
                    .collect();
                chains.write_states(&start)?;
                if d.rows < plan.chains {
                    notes.push(format!(
                        "reverse AIS started {} chains from {} data rows (rows reused)",
                        plan.chains, d.rows
                    ));
                }
            }
            None => {
                // Continue from where forward AIS left the chains (annealed to the
                // target), then burn in at the target.
                for k in 0..plan.burn_in {
                    if should_stop() {
                        return Err(EngineError::Interrupted);
                    }
                    chains.sweep(1.0, &mut rng);
                    if k % 64 == 0 {
                        progress(0.5 + 0.1 * k as f64 / plan.burn_in as f64);
                    }
                }
                notes.push(format!(
                    "reverse AIS started from model samples after {} sweeps; if they are not yet at \
                     equilibrium the reverse estimate is not a bound",
                    plan.burn_in
                ));
            }
        }
        let mut part = |f: f64| progress(0.6 + 0.4 * f);
        let mut hooks = Hooks {
            should_stop,
            progress: &mut part,
        };
        Some(reverse_ais(
            chains.as_mut(),
            &plan.schedule,
            &mut rng,
            &mut hooks,
        )?)
    } else {
        None
    };
    progress(1.0);
    Ok(EstimateResult {
        method: plan.method,
        model_type: model.type_name().into(),
        log_z: forward.log_z,
        log_z_stderr: forward.log_z_stderr,
        log_z_low: forward.log_z_low,
        log_z_high: forward.log_z_high,
        ess: Some(forward.ess),
        forward: Some(forward),
        reverse: reverse_estimate,
        notes,
    })
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
