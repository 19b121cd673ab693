//! AIS during RBM training (`train.ais_every`): its settings, resolved and bounded, and the
//! check that the request is an RBM one whose chains fit in memory.

use super::{
    bounded, DataShape, ModelType, TrainSpec, DEFAULT_AIS_BETAS, DEFAULT_AIS_CHAINS, MAX_AIS_BETAS,
    MAX_AIS_CHAINS, MAX_AIS_CHAIN_STEPS, MAX_CHAIN_CELLS, MAX_EPOCHS,
};
use crate::error::{EngineError, Result};

/// AIS during training, resolved: every `every` epochs (and after the last one), forward
/// AIS with `chains` chains over `betas` annealing steps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AisSettings {
    pub every: usize,
    pub chains: usize,
    pub betas: usize,
}

impl TrainSpec {
    /// `None` unless `ais_every` is set; `ais_betas`/`ais_chains` alone are an error.
    pub fn resolve_ais(&self) -> Result<Option<AisSettings>> {
        let Some(every) = self.ais_every else {
            if self.ais_betas.is_some() || self.ais_chains.is_some() {
                return Err(EngineError::invalid(
                    "train.ais_betas and train.ais_chains need train.ais_every (epochs between \
                     AIS evaluations), e.g. ais_every = 5",
                ));
            }
            return Ok(None);
        };
        let every = bounded("ais_every", every, MAX_EPOCHS)?;
        let chains = bounded(
            "ais_chains",
            self.ais_chains.unwrap_or(DEFAULT_AIS_CHAINS),
            MAX_AIS_CHAINS,
        )?;
        let betas = bounded(
            "ais_betas",
            self.ais_betas.unwrap_or(DEFAULT_AIS_BETAS),
            MAX_AIS_BETAS,
        )?;
        if chains as u64 * betas as u64 > MAX_AIS_CHAIN_STEPS {
            return Err(EngineError::invalid(format!(
                "train.ais_chains x train.ais_betas = {chains} x {betas} is more than \
                 {MAX_AIS_CHAIN_STEPS} transitions per evaluation: use fewer chains or betas"
            )));
        }
        Ok(Some(AisSettings {
            every,
            chains,
            betas,
        }))
    }
}

/// AIS during training applies to RBMs only; their chains must fit in memory.
pub(super) fn validate_ais(
    model_type: ModelType,
    train: &TrainSpec,
    data: &DataShape,
) -> Result<()> {
    let Some(ais) = train.resolve_ais()? else {
        return Ok(());
    };
    match model_type {
        ModelType::BernoulliRbm | ModelType::GaussianRbm => {}
        ModelType::Potts | ModelType::LatticeIsing => {
            return Err(EngineError::invalid(format!(
                "train.ais_every (AIS held-out log-likelihood during training) applies to \
                 bernoulli_rbm and gaussian_rbm, not to {}: drop the ais_* keys and run an \
                 estimate_log_z job (method = \"ais\" or \"exact\") on the trained model",
                model_type.name()
            )));
        }
    }
    if ais.chains as u64 * data.cols as u64 > MAX_CHAIN_CELLS {
        return Err(EngineError::invalid(format!(
            "train.ais_chains = {} chains x {} units is more than {MAX_CHAIN_CELLS} values: \
             use fewer AIS chains",
            ais.chains, data.cols
        )));
    }
    Ok(())
}
