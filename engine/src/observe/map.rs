//! The most likely microstate found, for contrast with the macrostate distribution:
//! exact where the model factorises, otherwise simulated annealing of the chains towards
//! p^tau with tau rising geometrically from 1 to [`FINAL_TAU`], then greedy single-unit
//! polishing of every chain; the best state wins.

use crate::error::EngineError;
use crate::estimate::chains::ModelChains;
use crate::rng::RngStream;

pub const ANNEALING_SWEEPS: usize = 300;
pub const FINAL_TAU: f64 = 30.0;

#[derive(Clone, Debug, PartialEq)]
pub struct MapState {
    pub state: Vec<f32>,
    /// ln of its unnormalised probability (minus its (free) energy).
    pub log_target: f64,
    /// True if found in closed form, false if by annealing (a lower bound on the best).
    pub exact: bool,
}

/// Finds the most likely state. Leaves the chains annealed (call last).
pub fn most_likely_state(
    chains: &mut dyn ModelChains,
    rng: &mut RngStream,
    should_stop: &dyn Fn() -> bool,
) -> Result<MapState, EngineError> {
    if let Some(state) = chains.exact_map() {
        let log_target = chains.log_target(&state);
        return Ok(MapState {
            state,
            log_target,
            exact: true,
        });
    }
    for k in 0..ANNEALING_SWEEPS {
        if should_stop() {
            return Err(EngineError::Interrupted);
        }
        let tau = FINAL_TAU.powf(k as f64 / (ANNEALING_SWEEPS - 1) as f64);
        chains.sweep(tau, rng);
    }
    let mut best: Option<MapState> = None;
    let units = chains.units();
    let mut states = vec![0.0; chains.chains() * units];
    chains.read_states(&mut states)?;
    for state in states.chunks_exact_mut(units) {
        chains.polish(state);
        let log_target = chains.log_target(state);
        if best.as_ref().is_none_or(|b| log_target > b.log_target) {
            best = Some(MapState {
                state: state.to_vec(),
                log_target,
                exact: false,
            });
        }
    }
    best.ok_or_else(|| EngineError::Internal("no chains to anneal".into()))
}
