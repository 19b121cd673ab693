//! Held-out log-likelihood by AIS, for training metrics on a schedule (`train.ais_every`):
//! mean over rows of ln f(x) minus the AIS estimate of ln Z. Its error is that of ln Z
//! (the data mean is exact for the rows given).

use super::ais::{forward_ais, Hooks};
use super::chains::gaussian::GaussianRbmParams;
use super::chains::rbm::RbmParams;
use super::model::LoadedModel;
use super::schedule::default_schedule;
use crate::backend::VisibleUnits;
use crate::data::Dataset;
use crate::error::EngineError;
use crate::rbm::RbmModel;
use crate::rng::RngStream;

/// RNG stream of held-out AIS (distinct from the estimate job's).
pub const HELDOUT_STREAM: u32 = 0xA15E;

#[derive(Clone, Debug, PartialEq)]
pub struct HeldOutLikelihood {
    /// Mean ln p(x) per row.
    pub log_likelihood: f64,
    /// Standard error (that of the ln Z estimate).
    pub stderr: f64,
    pub log_z: f64,
}

impl LoadedModel {
    /// The estimators' view of a trained RBM.
    pub fn from_rbm_model(model: &RbmModel) -> LoadedModel {
        let rbm = RbmParams {
            visible: model.visible,
            hidden: model.hidden,
            weights: model.w.clone(),
            visible_bias: model.b.clone(),
            hidden_bias: model.c.clone(),
        };
        match model.units {
            VisibleUnits::Bernoulli => LoadedModel::BernoulliRbm(rbm),
            VisibleUnits::Gaussian => LoadedModel::GaussianRbm(GaussianRbmParams {
                sigma: model
                    .sigma
                    .clone()
                    .unwrap_or_else(|| vec![1.0; rbm.visible]),
                transform: None,
                rbm,
            }),
        }
    }
}

/// AIS held-out log-likelihood of `heldout` rows (in the model's space and encoding).
/// `base_data` (e.g. the training rows) gives RBM base rates.
#[allow(clippy::too_many_arguments)]
pub fn ais_log_likelihood(
    model: &LoadedModel,
    heldout: &Dataset,
    base_data: Option<&Dataset>,
    chains: usize,
    steps: usize,
    seed: u64,
    should_stop: &dyn Fn() -> bool,
    progress: &mut dyn FnMut(f64),
) -> Result<HeldOutLikelihood, EngineError> {
    if heldout.rows == 0 {
        return Err(EngineError::InvalidInput(
            "no held-out rows to evaluate".into(),
        ));
    }
    let mut path = model.chains(chains.max(1), base_data)?;
    let states = model.data_states(heldout, path.as_ref())?;
    let mean_log_f = states.iter().map(|s| path.log_target(s)).sum::<f64>() / states.len() as f64;
    let mut rng = RngStream::new(seed, HELDOUT_STREAM);
    let mut hooks = Hooks {
        should_stop,
        progress,
    };
    let est = forward_ais(
        path.as_mut(),
        &default_schedule(steps.max(1)),
        &mut rng,
        &mut hooks,
    )?;
    Ok(HeldOutLikelihood {
        log_likelihood: mean_log_f - est.log_z,
        stderr: est.log_z_stderr,
        log_z: est.log_z,
    })
}
