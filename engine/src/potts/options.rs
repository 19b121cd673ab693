//! The Potts options of a training request: the family's defaults where the spec is silent
//! (chains 1000, k = 10 sweeps, learning rate 0.01, SGD momentum 0, sampler gibbs,
//! reweighting at 80% identity, pseudocount 1 / M_eff), and the checks `validate_train`
//! runs on the data's shape before any work starts.

use crate::data::fasta::UnknownResidues;
use crate::data::{Dataset, ValueKind};
use crate::error::{EngineError, Result};
use crate::potts::data::resolve_q;
use crate::potts::sweep::PottsUpdate;
use crate::spec::{DataShape, ModelSpec, TrainSettings, TrainSpec};

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
        let pseudocount = match model.pseudocount {
            None => None,
            Some(p) if p.is_finite() && (0.0..1.0).contains(&p) => Some(p),
            Some(p) => {
                return Err(EngineError::invalid(format!(
                    "model.pseudocount must lie in [0, 1), not {p}"
                )))
            }
        };
        if model.hidden.is_some() || model.size.is_some() {
            return Err(EngineError::invalid(
                "model.hidden and model.size do not apply to potts (sites come from the data)",
            ));
        }
        Ok(PottsOptions {
            q: resolve_q(data, model.q)?,
            reweight_identity: model.reweight_identity.unwrap_or(0.8),
            pseudocount,
            unknown_residues: UnknownResidues::from_name(
                model.unknown_residues.as_deref().unwrap_or(""),
            )?,
            update: PottsUpdate::from_name(&train.sampler)?,
        })
    }
}

/// Checks a Potts training request against the data's shape before any work starts.
pub fn validate(model: &ModelSpec, train: &TrainSpec, data: &DataShape) -> Result<()> {
    if model.hidden.is_some() || model.size.is_some() {
        return Err(EngineError::invalid(
            "model.hidden and model.size do not apply to potts (sites come from the data)",
        ));
    }
    let q = match (data.kind, data.q, model.q) {
        (ValueKind::Categorical, dq, Some(mq)) if dq > 0 && dq != mq => {
            return Err(EngineError::invalid(format!(
                "model.q = {mq} but the data set's alphabet has q = {dq}: leave model.q out or set it to {dq}"
            )))
        }
        (ValueKind::Categorical, dq, _) if dq > 0 => dq as usize,
        (ValueKind::Real, _, None) => {
            return Err(EngineError::invalid(
                "a potts model on numeric data needs model.q (states 0..q-1 per column)",
            ))
        }
        (_, _, Some(mq)) => mq as usize,
        (_, _, None) => 2,
    };
    crate::potts::check_shape(data.cols, q)?;
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
    UnknownResidues::from_name(model.unknown_residues.as_deref().unwrap_or(""))?;
    PottsUpdate::from_name(&train.sampler)?;
    let settings = potts_settings(train, data.rows)?;
    check_sizes(&settings, data.cols, q)
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

/// Settings with the Potts defaults applied where the spec left a value unset.
pub fn potts_settings(train: &TrainSpec, rows: usize) -> Result<TrainSettings> {
    let mut spec = train.clone();
    spec.chains = spec.chains.or(Some(1000));
    spec.k = spec.k.or(Some(10));
    if spec.optimizer.trim().is_empty() || spec.optimizer.trim() == "sgd" {
        spec.learning_rate = spec.learning_rate.or(Some(0.01));
        spec.momentum = spec.momentum.or(Some(0.0));
    }
    // Full-batch updates: the batch size is not used; keep resolve's check quiet.
    spec.batch_size = None;
    spec.resolve(rows)
}
