//! One AIS run of the `estimate_log_z` job: chains placed on the requested backend,
//! forward AIS, and (for `reverse_ais` and `sandwich`) reverse AIS started from data rows
//! or from the forward chains after burn-in sweeps at the target.

use super::ais::{forward_ais, reverse_ais, AisEstimate, Hooks};
use super::model::LoadedModel;
use super::placement::place_chains;
use crate::backend::BackendKind;
use crate::data::Dataset;
use crate::error::EngineError;
use crate::rng::RngStream;

/// What one run asks for.
pub struct RunPlan<'a> {
    pub chains: usize,
    pub schedule: &'a [f64],
    pub burn_in: usize,
    /// Also run reverse AIS.
    pub reverse: bool,
}

/// Forward and (if asked) reverse estimates, with the notes the run produced.
pub struct AisRun {
    pub forward: AisEstimate,
    pub reverse: Option<AisEstimate>,
    pub notes: Vec<String>,
}

/// The shared inputs of every run of one job.
pub struct RunContext<'a> {
    pub model: &'a LoadedModel,
    pub data: Option<&'a Dataset>,
    pub backend: BackendKind,
    pub should_stop: &'a dyn Fn() -> bool,
}

/// Runs `plan`; progress goes from 0 to 1 over the run.
pub fn run_ais(
    ctx: &RunContext<'_>,
    plan: &RunPlan<'_>,
    rng: &mut RngStream,
    progress: &mut dyn FnMut(f64),
) -> Result<AisRun, EngineError> {
    let should_stop = ctx.should_stop;
    // Chains on the requested backend's device where it has them (see `placement`).
    let (mut chains, placement_note) = place_chains(ctx.model, plan.chains, ctx.data, ctx.backend)?;
    let mut notes: Vec<String> = placement_note.into_iter().collect();
    // Progress: forward AIS takes all of it, or the first half with reverse AIS.
    let share = if plan.reverse { 0.5 } else { 1.0 };
    let forward = {
        let mut part = |f: f64| progress(share * f);
        let mut hooks = Hooks {
            should_stop,
            progress: &mut part,
        };
        forward_ais(chains.as_mut(), plan.schedule, rng, &mut hooks)?
    };
    if !plan.reverse {
        return Ok(AisRun {
            forward,
            reverse: None,
            notes,
        });
    }
    match ctx.data {
        Some(d) => {
            let states = ctx.model.data_states(d, chains.as_ref())?;
            let unknown = ctx.model.unknown_residues(d);
            if unknown > 0 {
                notes.push(format!(
                    "{unknown} unknown residues in the data read as the gap state for the \
                     reverse-AIS start"
                ));
            }
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
            // Continue from where forward AIS left the chains (annealed to the target),
            // then burn in at the target.
            for k in 0..plan.burn_in {
                if should_stop() {
                    return Err(EngineError::Interrupted);
                }
                chains.sweep(1.0, rng);
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
    let reverse = reverse_ais(chains.as_mut(), plan.schedule, rng, &mut hooks)?;
    Ok(AisRun {
        forward,
        reverse: Some(reverse),
        notes,
    })
}
