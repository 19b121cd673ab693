//! `method = "sandwich"`: forward and reverse AIS of one request combined into a bracket
//! on ln Z and a point estimate.
//!
//! Forward AIS is a stochastic lower bound on ln Z (E[Ẑ] = Z, so by Jensen E[ln Ẑ] <= ln Z,
//! and P(ln Ẑ > ln Z + t) <= e^-t by Markov); reverse AIS, started at the target, is the
//! same for ln(1/Z) and so a stochastic upper bound. Each estimate also carries sampling
//! noise, which for many chains outweighs the bias: the bracket therefore runs from the
//! lower end of forward AIS's 95% interval to the upper end of reverse AIS's (the hull of
//! both intervals, should the pair come out inverted).
//!
//! The point estimate is the midpoint of the two. Their biases have opposite signs and,
//! for a schedule run both ways, about equal size (both ≈ Var(w)/2 for normal log-weights),
//! so the midpoint cancels the leading bias term; a precision-weighted mean would lean to
//! the side with the smaller spread, which is not the side with the smaller bias. Its
//! standard error is sqrt(se_f² + se_r²) / 2 (the two runs are independent given the
//! start states).

use super::ais::{AisEstimate, CONFIDENCE_Z};

/// The sandwich of one forward/reverse pair.
#[derive(Clone, Debug, PartialEq)]
pub struct Bracket {
    pub lower: f64,
    pub upper: f64,
    pub point: f64,
    pub point_stderr: f64,
    /// Set when forward AIS lies above reverse AIS beyond their error bars.
    pub warning: Option<String>,
}

pub fn bracket(forward: &AisEstimate, reverse: &AisEstimate) -> Bracket {
    let point = 0.5 * (forward.log_z + reverse.log_z);
    let spread = forward.log_z_stderr.hypot(reverse.log_z_stderr);
    let gap = forward.log_z - reverse.log_z;
    let warning = (gap > CONFIDENCE_Z * spread).then(|| {
        format!(
            "forward AIS lies {gap:.4} above reverse AIS, beyond their error bars: the reverse \
             chains did not start at equilibrium or the schedule is too short, so neither side \
             is a bound here; use more temperatures (betas) or a longer burn_in"
        )
    });
    Bracket {
        lower: forward.log_z_low.min(reverse.log_z_low),
        upper: forward.log_z_high.max(reverse.log_z_high),
        point,
        point_stderr: 0.5 * spread,
        warning,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::estimate::ais::summarize_log_weights;

    #[test]
    fn the_bracket_runs_from_forward_low_to_reverse_high() {
        let f = summarize_log_weights(0.0, &[0.0, 0.1, -0.1, 0.05], 10, false);
        let r = summarize_log_weights(-1.0, &[-1.2, -1.1, -1.3, -1.15], 10, true);
        let b = bracket(&f, &r);
        assert_eq!(b.lower, f.log_z_low);
        assert_eq!(b.upper, r.log_z_high);
        assert!(b.lower <= b.point && b.point <= b.upper);
        assert!((b.point - 0.5 * (f.log_z + r.log_z)).abs() < 1e-15);
        assert!(b.warning.is_none());
        // inverted: forward far above reverse
        let high = summarize_log_weights(5.0, &[0.0, 0.01], 10, false);
        let inverted = bracket(&high, &r);
        assert!(inverted.warning.unwrap().contains("above reverse AIS"));
        assert!(inverted.lower <= inverted.point && inverted.point <= inverted.upper);
    }
}
