//! `estimate.target_stderr`: plans chains x betas for a requested standard error of ln Z
//! from a pilot run.
//!
//! The model of the error (derived in docs/estimators.md): with C chains and a schedule
//! of B steps, forward AIS log-weights are roughly normal with variance s²(B), and for long
//! schedules s²(B) ≈ a / B (each of the B steps contributes a variance ∝ (1/B)², B of them).
//! The delta-method standard error of ln Z is sqrt(v(B) / C) with v = Var(e^w)/E(e^w)² =
//! exp(s²) - 1 for normal log-weights. The planner
//!   1. estimates a = s²_pilot x B_pilot from the pilot's log-weights (per side: forward and,
//!      when the method runs it, reverse AIS);
//!   2. picks B so that s²(B) <= 1/2 on every side (ESS/n ≈ 0.6, well clear of the
//!      warning; the work B x C is within 30% of its minimum there), and never fewer than
//!      the pilot's steps;
//!   3. picks C = 1.25 x v(B) / target² (the 25% margin covers the noise of the final
//!      run's own stderr, whose relative sd is ~1/sqrt(2C)), taking for v the larger of the
//!      normal-weights value and the pilot's measured one scaled by s²(B)/s²_pilot.
//!
//! A plan beyond the request limits (chains, steps, chains x steps) is refused naming
//! `estimate.target_stderr` and the limit.

use super::ais::AisEstimate;
use crate::error::EngineError;

/// The pilot run: chains and annealing steps.
pub const PILOT_CHAINS: usize = 32;
pub const PILOT_STEPS: usize = 200;
/// Fewest chains of a plan (a stderr from fewer is too noisy to check a target with).
pub const MIN_PLAN_CHAINS: usize = 32;
/// Largest meaningful target (nats); beyond it any estimate would do.
pub const MAX_TARGET_STDERR: f64 = 10.0;
/// Log-weight variance the plan aims at.
const PLAN_LOG_WEIGHT_VARIANCE: f64 = 0.5;
const CHAINS_MARGIN: f64 = 1.25;

/// The limits a plan must respect (those of an explicit request).
#[derive(Clone, Copy, Debug)]
pub struct PlanLimits {
    pub max_chains: usize,
    pub max_steps: usize,
    pub max_chain_steps: u64,
}

/// What the service decided for a `target_stderr` request, and what it measured.
#[derive(Clone, Debug, PartialEq)]
pub struct PrecisionPlan {
    pub target_stderr: f64,
    pub pilot_chains: usize,
    pub pilot_steps: usize,
    /// The pilot's headline standard error.
    pub pilot_stderr: f64,
    /// The chains and steps of the run reported.
    pub chains: usize,
    pub steps: usize,
    /// Whether the reported standard error is at most the target.
    pub target_reached: bool,
}

/// One side's contribution to the headline variance: `share` x v(B) / C (forward alone:
/// share 1; the sandwich midpoint: 1/4 for each side).
pub struct Side<'a> {
    pub estimate: &'a AisEstimate,
    pub share: f64,
}

/// Chains and steps for `target` from a run's sides (the pilot's or a previous plan's).
pub fn plan_for_target(
    sides: &[Side<'_>],
    target: f64,
    limits: PlanLimits,
) -> Result<(usize, usize), EngineError> {
    let run_steps = sides.first().map_or(PILOT_STEPS, |s| s.estimate.steps);
    // 2. steps: s²(B) = a / B <= PLAN_LOG_WEIGHT_VARIANCE on every side
    let widest = sides
        .iter()
        .map(|s| s.estimate.diagnostics.log_weight_variance)
        .fold(0.0, f64::max);
    let a = widest * run_steps as f64;
    let steps = ((a / PLAN_LOG_WEIGHT_VARIANCE).ceil() as usize).max(run_steps);
    // 3. chains from each side's v(B)
    let variance: f64 = sides
        .iter()
        .map(|s| {
            let e = s.estimate;
            let s2_run = e.diagnostics.log_weight_variance;
            let s2 = s2_run * run_steps as f64 / steps as f64;
            let normal = s2.exp_m1();
            let measured = if s2_run > 0.0 {
                e.log_z_stderr.powi(2) * e.chains as f64 * s2 / s2_run
            } else {
                0.0
            };
            s.share * normal.max(measured)
        })
        .sum();
    let chains = (CHAINS_MARGIN * variance / (target * target)).ceil();
    let chains = if chains.is_finite() {
        (chains as usize).max(MIN_PLAN_CHAINS)
    } else {
        usize::MAX
    };
    let refuse = |what: String| {
        Err(EngineError::InvalidInput(format!(
            "estimate.target_stderr = {target} needs about {chains} chains x {steps} betas by the \
             pilot's error ({what}); ask for a larger target_stderr, or give estimate.chains and \
             estimate.betas yourself"
        )))
    };
    if chains > limits.max_chains {
        return refuse(format!(
            "more than the limit of {} chains",
            limits.max_chains
        ));
    }
    if steps > limits.max_steps {
        return refuse(format!("more than the limit of {} betas", limits.max_steps));
    }
    if chains as u64 * steps as u64 > limits.max_chain_steps {
        return refuse(format!(
            "more than the limit of {} chain-steps",
            limits.max_chain_steps
        ));
    }
    Ok((chains, steps))
}

/// Checks the request's `target_stderr` itself.
pub fn check_target(target: f64) -> Result<(), EngineError> {
    if !(target.is_finite() && target > 0.0 && target <= MAX_TARGET_STDERR) {
        return Err(EngineError::InvalidInput(format!(
            "estimate.target_stderr must be a standard error of ln Z in nats, above 0 and at \
             most {MAX_TARGET_STDERR} (e.g. 0.05), got {target}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::estimate::ais::summarize_log_weights;

    const LIMITS: PlanLimits = PlanLimits {
        max_chains: 100_000,
        max_steps: 10_000_000,
        max_chain_steps: 1 << 32,
    };

    /// Log-weights with sample variance 2 at 200 steps: a = 400, B = 800 (s² = 1/2),
    /// v = e^0.5 - 1 = 0.6487; the measured v (stderr² x C) is smaller for these
    /// symmetric weights, so C = 1.25 x 0.6487 / 0.05² = 325 (rounded up).
    #[test]
    fn the_plan_follows_the_error_model() {
        let w: Vec<f64> = (0..32)
            .map(|i| if i % 2 == 0 { 1.0 } else { -1.0 })
            .collect();
        let mut e = summarize_log_weights(0.0, &w, 200, false);
        e.diagnostics.log_weight_variance = 2.0;
        e.log_z_stderr = 0.01;
        let (chains, steps) = plan_for_target(
            &[Side {
                estimate: &e,
                share: 1.0,
            }],
            0.05,
            LIMITS,
        )
        .unwrap();
        assert_eq!(steps, 800);
        assert_eq!(chains, (1.25 * 0.5f64.exp_m1() / 0.0025).ceil() as usize);
    }

    #[test]
    fn a_plan_beyond_the_limits_is_refused_naming_the_field_and_limit() {
        let w: Vec<f64> = (0..32).map(|i| i as f64 * 0.1).collect();
        let e = summarize_log_weights(0.0, &w, 200, false);
        let side = [Side {
            estimate: &e,
            share: 1.0,
        }];
        match plan_for_target(&side, 1e-6, LIMITS) {
            Err(EngineError::InvalidInput(m)) => {
                assert!(m.contains("estimate.target_stderr = 0.000001"), "{m}");
                assert!(m.contains("limit of 100000 chains"), "{m}");
            }
            other => panic!("{other:?}"),
        }
        assert!(check_target(0.0).is_err() && check_target(f64::NAN).is_err());
        assert!(check_target(0.05).is_ok());
    }
}
