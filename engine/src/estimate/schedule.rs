//! Annealing schedules (inverse temperatures 0 = base model ... 1 = target model) for AIS.

use crate::error::EngineError;

/// Default number of annealing steps (distributions after the base), as in Salakhutdinov
/// & Murray (2008), who used ~14.5k.
pub const DEFAULT_STEPS: usize = 10_000;
/// Upper bound on steps a request may ask for (work grows linearly with it).
pub const MAX_STEPS: usize = 10_000_000;

/// `steps + 1` betas from 0 to 1: 10% of the steps spread linearly over [0, 0.5], 40%
/// over [0.5, 0.9] and 50% over [0.9, 1], because the distributions change fastest near
/// the target, where the couplings are at full strength (the S&M schedule has the same
/// shape). Fewer than 10 steps: linear.
pub fn default_schedule(steps: usize) -> Vec<f64> {
    let steps = steps.max(1);
    if steps < 10 {
        return linear_schedule(steps);
    }
    let n1 = (steps / 10).max(1);
    let n2 = (steps * 4 / 10).max(1);
    let n3 = steps - n1 - n2;
    let mut betas = Vec::with_capacity(steps + 1);
    betas.push(0.0);
    for (n, lo, hi) in [(n1, 0.0, 0.5), (n2, 0.5, 0.9), (n3, 0.9, 1.0)] {
        for k in 1..=n {
            betas.push(lo + (hi - lo) * k as f64 / n as f64);
        }
    }
    *betas.last_mut().expect("non-empty") = 1.0;
    betas
}

/// `steps + 1` equally spaced betas from 0 to 1. For lattice and Potts models, whose
/// energy variance along the path is broad (largest near the critical point, not at the
/// end), the AIS log-weight variance sum_k (dbeta_k)^2 Var_beta(E) is smaller with equal
/// steps than with steps crowded near 1.
pub fn linear_schedule(steps: usize) -> Vec<f64> {
    let steps = steps.max(1);
    (0..=steps).map(|k| k as f64 / steps as f64).collect()
}

/// An explicit schedule must start at exactly 0, end at exactly 1, be strictly
/// increasing and finite, and have at most [`MAX_STEPS`] steps.
pub fn validate_schedule(betas: &[f64]) -> Result<(), EngineError> {
    let bad = |why: String| {
        Err(EngineError::InvalidInput(format!(
            "estimate.schedule {why}; give inverse temperatures increasing strictly from 0 to 1, e.g. [0, 0.5, 0.9, 1]"
        )))
    };
    if betas.len() < 2 {
        return bad(format!("has {} value(s)", betas.len()));
    }
    if betas.len() > MAX_STEPS + 1 {
        return bad(format!(
            "has {} values, more than the limit {}",
            betas.len(),
            MAX_STEPS + 1
        ));
    }
    if let Some(b) = betas.iter().find(|b| !b.is_finite()) {
        return bad(format!("contains {b}"));
    }
    if betas[0] != 0.0 {
        return bad(format!("starts at {} instead of 0", betas[0]));
    }
    if betas[betas.len() - 1] != 1.0 {
        return bad(format!("ends at {} instead of 1", betas[betas.len() - 1]));
    }
    if let Some(k) = (1..betas.len()).find(|&k| betas[k] <= betas[k - 1]) {
        return bad(format!(
            "is not increasing at position {k} ({} after {})",
            betas[k],
            betas[k - 1]
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_schedule_runs_from_zero_to_one_and_is_denser_near_one() {
        for steps in [1, 3, 9, 10, 11, 100, 10_000] {
            let s = default_schedule(steps);
            assert_eq!(s.len(), steps + 1);
            validate_schedule(&s).unwrap();
        }
        let s = default_schedule(10_000);
        let near_one = s.iter().filter(|&&b| b > 0.9).count();
        assert_eq!(near_one, 5000);
    }

    #[test]
    fn bad_schedules_are_refused_with_the_reason() {
        let msg = |s: &[f64]| match validate_schedule(s) {
            Err(EngineError::InvalidInput(m)) => m,
            other => panic!("{other:?}"),
        };
        assert!(msg(&[0.0]).contains("1 value"));
        assert!(msg(&[0.1, 1.0]).contains("starts at 0.1"));
        assert!(msg(&[0.0, 0.5]).contains("ends at 0.5"));
        assert!(msg(&[0.0, 0.6, 0.5, 1.0]).contains("not increasing at position 2"));
        assert!(msg(&[0.0, 0.5, 0.5, 1.0]).contains("not increasing"));
        assert!(msg(&[0.0, f64::NAN, 1.0]).contains("NaN"));
    }
}
