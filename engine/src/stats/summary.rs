//! Moments and quantiles of a sample, and the whole report `observe` gives for one
//! statistic across chains: histogram, modes, mean, std, quantiles, ESS and R-hat.

use super::histogram::{Histogram, Mode};
use super::mcmc::{effective_sample_size, split_r_hat};

pub fn mean(x: &[f64]) -> f64 {
    x.iter().sum::<f64>() / x.len() as f64
}

/// Sample standard deviation (n - 1 in the denominator; 0 for fewer than two values).
pub fn std_dev(x: &[f64]) -> f64 {
    if x.len() < 2 {
        return 0.0;
    }
    let m = mean(x);
    (x.iter().map(|v| (v - m).powi(2)).sum::<f64>() / (x.len() - 1) as f64).sqrt()
}

/// Quantile q of sorted values, linear interpolation between order statistics
/// (Hyndman & Fan type 7, the R and NumPy default).
pub fn quantile_sorted(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let h = (sorted.len() - 1) as f64 * q.clamp(0.0, 1.0);
    let lo = h.floor() as usize;
    let hi = (lo + 1).min(sorted.len() - 1);
    sorted[lo] + (h - lo as f64) * (sorted[hi] - sorted[lo])
}

/// The quantile levels every report carries.
pub const REPORTED_QUANTILES: [f64; 7] = [0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99];

/// Distribution of a statistic under a model, estimated from MCMC chains.
#[derive(Clone, Debug, PartialEq)]
pub struct StatisticSummary {
    pub histogram: Histogram,
    /// The highest mode (centre of its bin).
    pub mode: f64,
    /// Every significant mode, highest first.
    pub modes: Vec<Mode>,
    pub mean: f64,
    pub std: f64,
    /// (level, value) pairs at [`REPORTED_QUANTILES`].
    pub quantiles: Vec<(f64, f64)>,
    /// Sum over chains of each chain's effective sample size.
    pub ess: f64,
    pub ess_per_chain: Vec<f64>,
    /// Split R-hat across chains (NaN if chains are shorter than 4 draws).
    pub r_hat: f64,
    pub samples: usize,
}

impl StatisticSummary {
    /// `chains[c]` holds chain c's draws in time order; the histogram spans [lo, hi).
    pub fn of_chains(chains: &[Vec<f64>], lo: f64, hi: f64, bins: usize) -> Self {
        let all: Vec<f64> = chains.iter().flatten().cloned().collect();
        let histogram = Histogram::new(all.iter().cloned(), lo, hi, bins);
        let ess_per_chain: Vec<f64> = chains.iter().map(|c| effective_sample_size(c)).collect();
        let ess: f64 = ess_per_chain.iter().sum();
        let refs: Vec<&[f64]> = chains.iter().map(|c| c.as_slice()).collect();
        let r_hat = split_r_hat(&refs);
        let inflation = if ess > 0.0 {
            all.len() as f64 / ess
        } else {
            1.0
        };
        let modes = histogram.modes(inflation);
        let mut sorted = all.clone();
        sorted.sort_by(f64::total_cmp);
        StatisticSummary {
            mode: modes.first().map(|m| m.value).unwrap_or(f64::NAN),
            modes,
            mean: mean(&all),
            std: std_dev(&all),
            quantiles: REPORTED_QUANTILES
                .iter()
                .map(|&q| (q, quantile_sorted(&sorted, q)))
                .collect(),
            ess,
            ess_per_chain,
            r_hat,
            samples: all.len(),
            histogram,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moments_and_quantiles_of_a_known_sample() {
        let x = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert_eq!(mean(&x), 3.0);
        assert!((std_dev(&x) - 2.5f64.sqrt()).abs() < 1e-15);
        assert_eq!(quantile_sorted(&x, 0.5), 3.0);
        assert_eq!(quantile_sorted(&x, 0.25), 2.0);
        assert!((quantile_sorted(&x, 0.1) - 1.4).abs() < 1e-15);
        assert_eq!(quantile_sorted(&x, 1.0), 5.0);
    }

    #[test]
    fn summary_of_chains_puts_everything_together() {
        let chains: Vec<Vec<f64>> = (0..4)
            .map(|c| (0..100).map(|i| ((i * 7 + c * 13) % 10) as f64).collect())
            .collect();
        let s = StatisticSummary::of_chains(&chains, -0.5, 9.5, 10);
        assert_eq!(s.samples, 400);
        assert_eq!(s.histogram.total(), 400);
        assert!((s.mean - 4.5).abs() < 1e-12);
        assert_eq!(s.quantiles.len(), REPORTED_QUANTILES.len());
        assert!(s.r_hat.is_finite() && s.ess > 0.0);
    }
}
