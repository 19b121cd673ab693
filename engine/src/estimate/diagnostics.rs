//! How far to trust an AIS estimate: diagnostics of its importance weights and the
//! warnings they raise.
//!
//! With n chains and log-weights w_i, the effective sample size is
//!   ESS = (sum e^w)^2 / sum e^(2w) = exp(2 lse(w) - lse(2w)),
//! computed in log space (log-sum-exp), so it is exact however spread the weights are.
//! The largest normalised weight is max e^w / sum e^w = exp(max w - lse(w)). When few chains
//! carry the weight (ESS < 10% of n, or one chain more than half of it), the sample of
//! weights has not seen their tail: the delta-method standard error is itself badly
//! estimated and usually too small. The remedy is a longer schedule, which narrows the
//! log-weights: for long schedules their variance falls like 1/betas, and for roughly
//! normal log-weights ESS/n ≈ exp(-Var w), so `suggested_betas` scales the current betas
//! by Var(w) / ln 2 (aiming at ESS/n ≈ 1/2).

use crate::stats::logspace::log_sum_exp;

/// ESS below this share of the chains raises a warning.
pub const MIN_ESS_FRACTION: f64 = 0.1;
/// A normalised weight above this raises a warning.
pub const MAX_NORMALISED_WEIGHT: f64 = 0.5;
/// Log-weight variance the suggested schedule aims at: ESS/n ≈ exp(-ln 2) = 1/2.
const TARGET_LOG_WEIGHT_VARIANCE: f64 = std::f64::consts::LN_2;

/// Diagnostics of one set of AIS log-weights.
#[derive(Clone, Debug, PartialEq)]
pub struct WeightDiagnostics {
    /// (sum w)^2 / sum w^2 of the importance weights w = e^(log-weight), in [1, n].
    pub ess: f64,
    /// ESS / chains, in [1/n, 1].
    pub ess_fraction: f64,
    /// The largest normalised weight, max w / sum w, in [1/n, 1].
    pub max_weight: f64,
    /// Sample variance of the log-weights (0 for one chain).
    pub log_weight_variance: f64,
}

impl WeightDiagnostics {
    pub fn of(log_weights: &[f64]) -> Self {
        let n = log_weights.len() as f64;
        let lse = log_sum_exp(log_weights);
        let doubled: Vec<f64> = log_weights.iter().map(|w| 2.0 * w).collect();
        let ess = (2.0 * lse - log_sum_exp(&doubled)).exp().clamp(1.0, n);
        let max = log_weights
            .iter()
            .cloned()
            .fold(f64::NEG_INFINITY, f64::max);
        let mean = log_weights.iter().sum::<f64>() / n;
        let log_weight_variance = if log_weights.len() > 1 {
            log_weights.iter().map(|w| (w - mean).powi(2)).sum::<f64>() / (n - 1.0)
        } else {
            0.0
        };
        WeightDiagnostics {
            ess,
            ess_fraction: ess / n,
            max_weight: (max - lse).exp().min(1.0),
            log_weight_variance,
        }
    }

    /// Whether the weights are too concentrated for the error bar to mean much.
    pub fn unreliable(&self) -> bool {
        self.ess_fraction < MIN_ESS_FRACTION || self.max_weight > MAX_NORMALISED_WEIGHT
    }

    /// Annealing steps that should bring ESS/n near 1/2: `steps` x Var(w) / ln 2 (the
    /// variance falls ~1/steps), at least twice `steps`, rounded up to two significant
    /// digits.
    pub fn suggested_betas(&self, steps: usize) -> u64 {
        let scaled = steps as f64 * self.log_weight_variance / TARGET_LOG_WEIGHT_VARIANCE;
        round_up_2_digits(scaled.max(2.0 * steps as f64).min(1e15) as u64)
    }

    /// The warning for an unreliable estimate (`what` names it: "forward AIS"), or none.
    pub fn warning(&self, what: &str, steps: usize) -> Option<String> {
        if !self.unreliable() {
            return None;
        }
        let chains = (self.ess / self.ess_fraction).round();
        Some(format!(
            "{what}: the error bar is not reliable (ESS {:.1} of {chains} chains, {:.0}%; the \
             largest chain carries {:.0}% of the weight); use more temperatures (e.g. betas = {})",
            self.ess,
            100.0 * self.ess_fraction,
            100.0 * self.max_weight,
            self.suggested_betas(steps)
        ))
    }
}

fn round_up_2_digits(x: u64) -> u64 {
    let mut unit = 1u64;
    while x / unit >= 100 {
        unit *= 10;
    }
    x.div_ceil(unit) * unit
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_weights_are_fully_effective() {
        let d = WeightDiagnostics::of(&[3.0; 8]);
        assert!((d.ess - 8.0).abs() < 1e-12 && (d.ess_fraction - 1.0).abs() < 1e-12);
        assert!((d.max_weight - 0.125).abs() < 1e-12);
        assert!(d.warning("ais", 100).is_none());
    }

    /// One weight e^1000 among e^0s: one chain has all the weight, no overflow.
    #[test]
    fn a_dominant_chain_raises_the_warning_with_a_suggestion() {
        let mut w = vec![0.0; 20];
        w[3] = 1000.0;
        let d = WeightDiagnostics::of(&w);
        assert!((d.ess - 1.0).abs() < 1e-9);
        assert!((d.max_weight - 1.0).abs() < 1e-9);
        let message = d.warning("forward AIS", 100).unwrap();
        assert!(
            message.contains("the error bar is not reliable"),
            "{message}"
        );
        // Var(w) = 1000^2 (1/20)(19/20)(20/19) = 50000; 100 x that / ln 2 ≈ 7.21e6 -> 7.3e6
        assert!(message.contains("betas = 7300000"), "{message}");
    }

    /// Two weights 1 and 3: ESS = 16/10, max weight 3/4.
    #[test]
    fn diagnostics_match_a_hand_computation() {
        let d = WeightDiagnostics::of(&[0.0, 3f64.ln()]);
        assert!((d.ess - 1.6).abs() < 1e-12);
        assert!((d.max_weight - 0.75).abs() < 1e-12);
        assert!(d.unreliable());
        assert_eq!(round_up_2_digits(1234), 1300);
        assert_eq!(round_up_2_digits(99), 99);
        assert_eq!(round_up_2_digits(100), 100);
    }
}
