//! The Potts options of a training request: the family's defaults where the spec is silent
//! (chains 1000, k = 10 sweeps, learning rate 0.01, SGD momentum 0, sampler gibbs,
//! reweighting at 80% identity, pseudocount 1 / M_eff), and the checks `validate_train`
//! runs on the data's shape before any work starts.

use crate::data::fasta::UnknownResidues;
use crate::data::{Dataset, ValueKind};
use crate::error::{EngineError, Result};
use crate::potts::data::{resolve_q, states_of};
use crate::potts::sweep::PottsUpdate;
use crate::potts::MAX_Q;
use crate::spec::{refuse_rbm_options, DataShape, ModelSpec, TrainSettings, TrainSpec};

/// Potts-specific options of the model spec, resolved.
#[derive(Clone, Debug, PartialEq)]
pub struct PottsOptions {
    pub q: usize,
    pub reweight_identity: f64,
    /// None: 1 / M_eff.
    pub pseudocount: Option<f64>,
    pub unknown_residues: UnknownResidues,
    pub update: PottsUpdate,
}

impl PottsOptions {
    pub fn resolve(model: &ModelSpec, train: &TrainSpec, data: &Dataset) -> Result<Self> {
        check_model_options(model)?;
        Ok(PottsOptions {
            q: resolve_q(data, model.q)?,
            reweight_identity: model.reweight_identity.unwrap_or(0.8),
            pseudocount: model.pseudocount,
            unknown_residues: unknown_residues(model)?,
            update: sampler(train)?,
        })
    }
}

fn unknown_residues(model: &ModelSpec) -> Result<UnknownResidues> {
    let name = model.unknown_residues.as_deref().unwrap_or("");
    UnknownResidues::from_name(name).map_err(|_| {
        EngineError::invalid(format!(
            "model.unknown_residues must be \"gap\" (map them to the gap state) or \"drop\" \
             (drop their sequences), not {name:?}"
        ))
    })
}

fn sampler(train: &TrainSpec) -> Result<PottsUpdate> {
    PottsUpdate::from_name(train.sampler.trim()).map_err(|_| {
        EngineError::invalid(format!(
            "train.sampler for a potts model must be \"gibbs\" (heat bath) or \"metropolis\", not {:?}",
            train.sampler
        ))
    })
}

/// The model options that do not need the data: the ones of other families refused, the
/// Potts ones in range.
fn check_model_options(model: &ModelSpec) -> Result<()> {
    if model.hidden.is_some() || model.size.is_some() {
        return Err(EngineError::invalid(
            "model.hidden and model.size do not apply to potts (sites come from the data)",
        ));
    }
    if model.learn_sigma.is_some() || model.standardize.is_some() {
        return Err(EngineError::invalid(
            "model.learn_sigma and model.standardize apply to gaussian_rbm, not potts",
        ));
    }
    if let Some(q) = model.q {
        if q < 2 || q as usize > MAX_Q {
            return Err(EngineError::invalid(format!(
                "model.q must be between 2 and {MAX_Q} states per site, not {q}"
            )));
        }
    }
    if let Some(p) = model.pseudocount {
        if !(p.is_finite() && (0.0..1.0).contains(&p)) {
            return Err(EngineError::invalid(format!(
                "model.pseudocount must lie in [0, 1), not {p}"
            )));
        }
    }
    if let Some(r) = model.reweight_identity {
        if !(r.is_finite() && (0.0..=1.0).contains(&r)) {
            return Err(EngineError::invalid(format!(
                "model.reweight_identity must lie in [0, 1] (0 switches reweighting off), not {r}"
            )));
        }
    }
    unknown_residues(model)?;
    Ok(())
}

/// Checks a Potts training request against the data's shape before any work starts.
/// Numeric (non-categorical, non-binary) data are checked further by [`check_values`],
/// which needs the values: q then comes from `model.q` or the largest state.
pub fn validate(model: &ModelSpec, train: &TrainSpec, data: &DataShape) -> Result<()> {
    check_model_options(model)?;
    let q = match (data.kind, data.q, model.q) {
        (ValueKind::Categorical, dq, Some(mq)) if dq > 0 && dq != mq => {
            return Err(EngineError::invalid(format!(
                "model.q = {mq} but the data set's alphabet has q = {dq}: leave model.q out or set it to {dq}"
            )))
        }
        (ValueKind::Categorical, dq, _) if dq > 0 => dq as usize,
        (_, _, Some(mq)) => mq as usize,
        // binary data, or integer states whose largest value check_values finds
        (_, _, None) => 2,
    };
    crate::potts::check_shape(data.cols, q)?;
    sampler(train)?;
    let settings = potts_settings(train, data.rows)?;
    check_sizes(&settings, data.cols, q)
}

/// The checks of a Potts request that need the values: integer states 0..q (q from
/// `model.q` or the largest state), sequences left after dropping unknown residues, and
/// the sizes with the actual q.
pub fn check_values(model: &ModelSpec, train: &TrainSpec, data: &Dataset) -> Result<()> {
    let options = PottsOptions::resolve(model, train, data)?;
    let (_, kept, _) = states_of(data, options.q, options.unknown_residues)?;
    let settings = potts_settings(train, kept.len())?;
    check_sizes(&settings, data.cols, options.q)
}

pub(crate) fn check_sizes(settings: &TrainSettings, sites: usize, q: usize) -> Result<()> {
    let chains_total = settings.chains * settings.betas.len().max(1);
    if (chains_total as u64) * (sites as u64) >= u32::MAX as u64 / 2 {
        return Err(EngineError::invalid(format!(
            "{chains_total} chains x {sites} sites is too many: lower train.chains"
        )));
    }
    let lq = (sites * q) as u64;
    if lq * lq > 400_000_000 {
        return Err(EngineError::invalid(format!(
            "a Potts model with L = {sites} sites and q = {q} has {} couplings, more than this \
             server trains (4e8)",
            lq * lq
        )));
    }
    Ok(())
}

/// Settings with the Potts defaults applied where the spec left a value unset. Options of
/// minibatch RBM training are refused rather than ignored: every Potts update uses the
/// statistics of the whole (reweighted) alignment, so there is no `batch_size`, and
/// centering is an RBM gradient.
pub fn potts_settings(train: &TrainSpec, rows: usize) -> Result<TrainSettings> {
    if let Some(b) = train.batch_size {
        return Err(EngineError::invalid(format!(
            "train.batch_size ({b}) does not apply to potts: every update uses the frequencies of \
             the whole reweighted alignment (one epoch = one full-batch update, as in adabmDCA); \
             remove train.batch_size"
        )));
    }
    refuse_rbm_options(train, "potts")?;
    let mut spec = train.clone();
    spec.chains = spec.chains.or(Some(1000));
    spec.k = spec.k.or(Some(10));
    if spec.optimizer.trim().is_empty() || spec.optimizer.trim() == "sgd" {
        spec.learning_rate = spec.learning_rate.or(Some(0.01));
        spec.momentum = spec.momentum.or(Some(0.0));
    }
    spec.resolve(rows)
}
