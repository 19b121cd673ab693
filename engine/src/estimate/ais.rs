//! Annealed importance sampling (Neal 2001), generic over the model family.
//!
//! A family implements [`AnnealingPath`]: chains that move along the geometric path
//! p_beta ∝ f_0^(1-beta) f_1^beta between a tractable base f_0 (known Z_0, exact samples)
//! and the target f_1. The driver here owns the schedule, the log-weights (f64) and the
//! estimate: log Z = log Z_0 + log mean exp(w), with a delta-method standard error,
//! a confidence interval and the effective sample size of the weights. Forward AIS is a
//! stochastic lower bound on log Z (Jensen); reverse AIS, started from target samples and
//! annealed back to the base, estimates log(Z_0 / Z_1) and so gives a stochastic upper
//! bound (Burda, Grosse & Salakhutdinov 2015). Both together sandwich the truth.

use super::diagnostics::WeightDiagnostics;
use crate::error::EngineError;
use crate::rng::{RngKey, RngStream};
use crate::stats::logspace::log_mean_exp;

/// Chains of one model family on the annealing path. Every method acts on all chains.
pub trait AnnealingPath: Send {
    fn chains(&self) -> usize;
    /// ln Z_0 of the base model, exactly.
    fn log_z_base(&self) -> f64;
    /// Replaces every chain by an exact, independent draw from the base model.
    fn draw_base(&mut self, key: RngKey);
    /// Adds ln f_{to}(x) - ln f_{from}(x) to each chain's log-weight at its current state
    /// x, then moves every chain by one MCMC transition that leaves p_{to} invariant.
    fn advance(&mut self, from: f64, to: f64, rng: &mut RngStream, log_weights: &mut [f64]);
    /// One transition leaving p_beta invariant (burn-in), without weights.
    fn transition(&mut self, beta: f64, rng: &mut RngStream);
    /// Moves log-weight increments that `advance` kept elsewhere (device-resident chains
    /// accumulate them on the device) into `log_weights`, and surfaces any device error.
    /// Host chains add to `log_weights` directly and keep this default. The driver calls
    /// it before every check of the weights and at the end of each anneal.
    fn flush_weights(&mut self, _log_weights: &mut [f64]) -> Result<(), EngineError> {
        Ok(())
    }
}

/// Confidence level of the reported interval: 95%, z = 1.96.
pub const CONFIDENCE_Z: f64 = 1.959_963_984_540_054;

/// One AIS estimate of ln Z with its error bars.
#[derive(Clone, Debug, PartialEq)]
pub struct AisEstimate {
    pub log_z: f64,
    /// Delta-method standard error of ln Z: sd(e^w) / (sqrt(n) mean(e^w)). It measures the
    /// spread of the weights only; AIS bias (too few betas) shows as disagreement between
    /// the forward and reverse estimates, not here.
    pub log_z_stderr: f64,
    /// 95% interval: ln(mean ± 1.96 se) of the normalised weights, shifted back to ln Z
    /// (asymmetric, as the weights' mean is what is normal); where mean - 1.96 se <= 0 the
    /// lower end falls back to ln Z - 1.96 stderr.
    pub log_z_low: f64,
    pub log_z_high: f64,
    /// Effective sample size of the importance weights, (sum w)^2 / sum w^2, in [1, n].
    pub ess: f64,
    pub chains: usize,
    pub steps: usize,
    pub log_z_base: f64,
    /// True for reverse AIS (an upper-bound side estimate).
    pub reverse: bool,
    /// ESS fraction, largest normalised weight, log-weight variance.
    pub diagnostics: WeightDiagnostics,
    /// Set when the weights are too concentrated for the error bar to be trusted.
    pub warning: Option<String>,
}

/// Summarises forward log-weights (`reverse = false`: ln Z = ln Z_0 + lme(w)) or reverse
/// ones (`reverse = true`: ln Z = ln Z_0 - lme(w)).
pub fn summarize_log_weights(
    log_z_base: f64,
    log_weights: &[f64],
    steps: usize,
    reverse: bool,
) -> AisEstimate {
    let n = log_weights.len() as f64;
    let max = log_weights
        .iter()
        .cloned()
        .fold(f64::NEG_INFINITY, f64::max);
    let normalised: Vec<f64> = log_weights.iter().map(|w| (w - max).exp()).collect();
    let mean = normalised.iter().sum::<f64>() / n;
    let var = if log_weights.len() > 1 {
        normalised.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    let se_mean = (var / n).sqrt();
    let stderr = se_mean / mean;
    let lme = log_mean_exp(log_weights);
    let diagnostics = WeightDiagnostics::of(log_weights);
    let what = if reverse {
        "reverse AIS"
    } else {
        "forward AIS"
    };
    let warning = diagnostics.warning(what, steps);
    // ln of the interval ends of the weights' mean, in the original scale.
    let upper = max + (mean + CONFIDENCE_Z * se_mean).ln();
    let lower = if mean - CONFIDENCE_Z * se_mean > 0.0 {
        Some(max + (mean - CONFIDENCE_Z * se_mean).ln())
    } else {
        None
    };
    let (log_z, low, high) = if reverse {
        let log_z = log_z_base - lme;
        let high = match lower {
            Some(l) => log_z_base - l,
            None => log_z + CONFIDENCE_Z * stderr,
        };
        (log_z, log_z_base - upper, high)
    } else {
        let log_z = log_z_base + lme;
        let low = match lower {
            Some(l) => log_z_base + l,
            None => log_z - CONFIDENCE_Z * stderr,
        };
        (log_z, low, log_z_base + upper)
    };
    AisEstimate {
        log_z,
        log_z_stderr: stderr,
        log_z_low: low,
        log_z_high: high,
        ess: diagnostics.ess,
        chains: log_weights.len(),
        steps,
        log_z_base,
        reverse,
        diagnostics,
        warning,
    }
}

/// Stop and progress hooks of a long computation.
pub struct Hooks<'a> {
    pub should_stop: &'a dyn Fn() -> bool,
    pub progress: &'a mut dyn FnMut(f64),
}

fn check_weights(log_weights: &[f64], beta: f64) -> Result<(), EngineError> {
    if let Some(w) = log_weights.iter().find(|w| !w.is_finite()) {
        return Err(EngineError::Diverged(format!(
            "an AIS log-weight became {w} at beta = {beta}; the model's parameters are too \
             extreme for f64 (check the model file for huge weights)"
        )));
    }
    Ok(())
}

/// Forward AIS: draws every chain from the base, anneals along `schedule` (validated by
/// the caller: 0 ... 1 increasing), and returns the estimate of ln Z_1.
pub fn forward_ais(
    path: &mut dyn AnnealingPath,
    schedule: &[f64],
    rng: &mut RngStream,
    hooks: &mut Hooks<'_>,
) -> Result<AisEstimate, EngineError> {
    let mut log_weights = vec![0.0; path.chains()];
    path.draw_base(rng.next_key());
    anneal(
        path,
        schedule.windows(2).map(|w| (w[0], w[1])),
        schedule.len() - 1,
        rng,
        hooks,
        &mut log_weights,
    )?;
    Ok(summarize_log_weights(
        path.log_z_base(),
        &log_weights,
        schedule.len() - 1,
        false,
    ))
}

/// Reverse AIS: the chains must already hold (approximate) target samples, e.g. data or
/// long-run model chains; anneals from 1 back to 0 along the reversed schedule.
pub fn reverse_ais(
    path: &mut dyn AnnealingPath,
    schedule: &[f64],
    rng: &mut RngStream,
    hooks: &mut Hooks<'_>,
) -> Result<AisEstimate, EngineError> {
    let mut log_weights = vec![0.0; path.chains()];
    anneal(
        path,
        schedule.windows(2).rev().map(|w| (w[1], w[0])),
        schedule.len() - 1,
        rng,
        hooks,
        &mut log_weights,
    )?;
    Ok(summarize_log_weights(
        path.log_z_base(),
        &log_weights,
        schedule.len() - 1,
        true,
    ))
}

fn anneal(
    path: &mut dyn AnnealingPath,
    steps: impl Iterator<Item = (f64, f64)>,
    total: usize,
    rng: &mut RngStream,
    hooks: &mut Hooks<'_>,
    log_weights: &mut [f64],
) -> Result<(), EngineError> {
    let report_every = (total / 200).max(1);
    for (k, (from, to)) in steps.enumerate() {
        if (hooks.should_stop)() {
            return Err(EngineError::Interrupted);
        }
        path.advance(from, to, rng, log_weights);
        if k % report_every == 0 || k + 1 == total {
            path.flush_weights(log_weights)?;
            check_weights(log_weights, to)?;
            (hooks.progress)((k + 1) as f64 / total as f64);
        }
    }
    path.flush_weights(log_weights)?;
    check_weights(log_weights, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Weights all equal: the estimate is exact, with zero error and full ESS.
    #[test]
    fn equal_weights_give_an_exact_estimate() {
        let e = summarize_log_weights(2.0, &[0.5; 10], 100, false);
        assert!((e.log_z - 2.5).abs() < 1e-14);
        assert_eq!(e.log_z_stderr, 0.0);
        assert!((e.ess - 10.0).abs() < 1e-12);
        assert!((e.log_z_low - 2.5).abs() < 1e-14 && (e.log_z_high - 2.5).abs() < 1e-14);
        let r = summarize_log_weights(2.0, &[0.5; 10], 100, true);
        assert!((r.log_z - 1.5).abs() < 1e-14);
    }

    /// Two weights e^0 and e^ln3: mean 2, sd sqrt(2), se 1, stderr of ln = 1/2,
    /// ESS = 16 / 10.
    #[test]
    fn the_delta_method_matches_a_hand_computation() {
        let e = summarize_log_weights(0.0, &[0.0, 3f64.ln()], 1, false);
        assert!((e.log_z - 2f64.ln()).abs() < 1e-14);
        assert!((e.log_z_stderr - 0.5).abs() < 1e-14);
        assert!((e.ess - 1.6).abs() < 1e-14);
        assert!((e.log_z_high - (2.0 + CONFIDENCE_Z).ln()).abs() < 1e-14);
        // mean - 1.96 se = 0.04 > 0
        assert!((e.log_z_low - (2.0 - CONFIDENCE_Z).ln()).abs() < 1e-12);
        assert!(e.log_z_low < e.log_z && e.log_z < e.log_z_high);
        let r = summarize_log_weights(0.0, &[0.0, 3f64.ln()], 1, true);
        assert!(r.log_z_low < r.log_z && r.log_z < r.log_z_high);
    }
}
