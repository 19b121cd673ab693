//! The lattice_ising options of a training request: the family's defaults where the spec
//! is silent (k = 10 sweeps, 100 chains), the refusal of options that do not apply, and the
//! checks `validate_train` runs on the data's shape (and values) before any work starts.

use super::checkerboard::LatticeUpdate;
use super::LatticeIsing;
use crate::data::{Dataset, ValueKind};
use crate::error::{EngineError, Result};
use crate::spec::{refuse_rbm_options, DataShape, ModelSpec, TrainSettings, TrainSpec};

/// Settings with the lattice defaults (k = 10 sweeps, 100 chains) where the spec is silent.
/// Options of minibatch RBM training are refused rather than ignored: every update uses the
/// moments of all the data (two numbers), so there is no `batch_size`, and centering is an
/// RBM gradient.
pub fn lattice_settings(train: &TrainSpec, rows: usize) -> Result<TrainSettings> {
    if let Some(b) = train.batch_size {
        return Err(EngineError::invalid(format!(
            "train.batch_size ({b}) does not apply to lattice_ising: every update uses the bond \
             and magnetisation averages of all the data (one epoch = one full-batch update); \
             remove train.batch_size"
        )));
    }
    refuse_rbm_options(train, "lattice_ising")?;
    let mut spec = train.clone();
    spec.k = spec.k.or(Some(10));
    spec.chains = spec.chains.or(Some(100));
    spec.resolve(rows)
}

/// Checks a lattice_ising training request against the data's shape.
pub fn validate(model: &ModelSpec, train: &TrainSpec, data: &DataShape) -> Result<()> {
    if data.kind == ValueKind::Categorical {
        return Err(EngineError::invalid(
            "lattice_ising needs spin data (+1/-1 or 0/1) in the data set, not an alignment",
        ));
    }
    check_spec(model, train, data.cols)?;
    lattice_settings(train, data.rows).map(|_| ())
}

/// The checks of a lattice request that need the values: every value a spin.
pub fn check_values(data: &Dataset) -> Result<()> {
    spins_of(data).map(|_| ())
}

pub(super) fn check_spec(model: &ModelSpec, train: &TrainSpec, cols: usize) -> Result<usize> {
    if model.hidden.is_some() || model.q.is_some() {
        return Err(EngineError::invalid(
            "model.hidden and model.q do not apply to lattice_ising",
        ));
    }
    for (name, set) in [
        ("model.learn_sigma", model.learn_sigma.is_some()),
        ("model.standardize", model.standardize.is_some()),
        ("model.reweight_identity", model.reweight_identity.is_some()),
        ("model.pseudocount", model.pseudocount.is_some()),
        ("model.unknown_residues", model.unknown_residues.is_some()),
    ] {
        if set {
            return Err(EngineError::invalid(format!(
                "{name} does not apply to lattice_ising: remove it"
            )));
        }
    }
    let side = (cols as f64).sqrt().round() as usize;
    let size = model.size.map_or(side, |s| s as usize);
    if size * size != cols {
        return Err(EngineError::invalid(match model.size {
            Some(_) => format!(
                "model.size = {size} needs rows of {} spins (L x L, row-major), but the data set \
                 has {cols} columns: set model.size to match the data or leave it out",
                size * size
            ),
            None => format!(
                "lattice_ising needs rows of L x L spins, but the data set has {cols} columns, \
                 not a square number"
            ),
        }));
    }
    LatticeIsing::new(size, 0.0, 0.0).map_err(|e| match e {
        EngineError::InvalidInput(m) => EngineError::invalid(format!("model.size: {m}")),
        other => other,
    })?;
    LatticeUpdate::from_name(train.sampler.trim()).map_err(|_| {
        EngineError::invalid(format!(
            "train.sampler for lattice_ising must be \"metropolis\" or \"gibbs\" (heat bath), not {:?}",
            train.sampler
        ))
    })?;
    if train.validation_fraction.is_some_and(|f| f > 0.0) {
        return Err(EngineError::invalid(
            "train.validation_fraction is not supported for lattice_ising",
        ));
    }
    Ok(size)
}

pub(super) fn spins_of(data: &Dataset) -> Result<Vec<i8>> {
    let binary = data.values.iter().all(|&v| v == 0.0 || v == 1.0);
    data.values
        .iter()
        .enumerate()
        .map(|(i, &v)| match v {
            1.0 => Ok(1),
            -1.0 => Ok(-1),
            0.0 if binary => Ok(-1),
            _ => Err(EngineError::invalid(format!(
                "lattice_ising data must be spins +1/-1 (or 0/1), but row {}, column {} is {v}",
                i / data.cols,
                i % data.cols
            ))),
        })
        .collect()
}
