//! Sums of exponentials in f64 without overflow: log-sum-exp in one pass or streaming,
//! with signs (for alternating sums such as Kaufman's), and the stable softplus/sigmoid
//! that free energies and Gibbs conditionals need.

/// ln(1 + e^x), exact to rounding for every finite x.
#[inline]
pub fn softplus(x: f64) -> f64 {
    if x > 0.0 {
        x + (-x).exp().ln_1p()
    } else {
        x.exp().ln_1p()
    }
}

/// 1 / (1 + e^-x) in f32, saturating cleanly at both ends.
#[inline]
pub fn sigmoid_f32(x: f32) -> f32 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// ln(sum_i e^{x_i}); -inf for an empty slice or all -inf; NaN if any x is NaN;
/// +inf if any x is +inf.
pub fn log_sum_exp(xs: &[f64]) -> f64 {
    let mut acc = LogSumExp::new();
    for &x in xs {
        acc.add(x);
    }
    acc.value()
}

/// ln((1/n) sum_i e^{x_i}).
pub fn log_mean_exp(xs: &[f64]) -> f64 {
    if xs.is_empty() {
        return f64::NEG_INFINITY;
    }
    log_sum_exp(xs) - (xs.len() as f64).ln()
}

/// Streaming log-sum-exp: a running maximum and the sum of e^{x - max}, so chunks of an
/// enumeration can be reduced in parallel and merged.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LogSumExp {
    max: f64,
    scaled_sum: f64,
    nan: bool,
}

impl Default for LogSumExp {
    fn default() -> Self {
        Self::new()
    }
}

impl LogSumExp {
    pub fn new() -> Self {
        LogSumExp {
            max: f64::NEG_INFINITY,
            scaled_sum: 0.0,
            nan: false,
        }
    }

    #[inline]
    pub fn add(&mut self, x: f64) {
        if x.is_nan() {
            self.nan = true;
        } else if x == f64::INFINITY {
            self.max = f64::INFINITY;
        } else if x <= self.max {
            if self.max.is_finite() {
                self.scaled_sum += (x - self.max).exp();
            }
        } else {
            // x is a new finite maximum: rescale what we have.
            self.scaled_sum = self.scaled_sum * (self.max - x).exp() + 1.0;
            self.max = x;
        }
    }

    pub fn merge(&mut self, other: &LogSumExp) {
        self.nan |= other.nan;
        if other.max == f64::NEG_INFINITY {
            return;
        }
        if other.max == f64::INFINITY || self.max == f64::INFINITY {
            self.max = f64::INFINITY;
            return;
        }
        if other.max <= self.max {
            self.scaled_sum += other.scaled_sum * (other.max - self.max).exp();
        } else {
            self.scaled_sum = self.scaled_sum * (self.max - other.max).exp() + other.scaled_sum;
            self.max = other.max;
        }
    }

    pub fn value(&self) -> f64 {
        if self.nan {
            f64::NAN
        } else if !self.max.is_finite() {
            self.max
        } else {
            self.max + self.scaled_sum.ln()
        }
    }
}

/// A real number kept as (ln |x|, sign) so products of huge factors do not overflow.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SignedLog {
    pub log_abs: f64,
    /// +1, -1, or 0 for x = 0.
    pub sign: f64,
}

impl SignedLog {
    pub const ONE: SignedLog = SignedLog {
        log_abs: 0.0,
        sign: 1.0,
    };

    pub fn times(self, other: SignedLog) -> SignedLog {
        SignedLog {
            log_abs: self.log_abs + other.log_abs,
            sign: self.sign * other.sign,
        }
    }
}

/// ln |sum_i x_i| and the sign of the sum, for terms given as signed logs.
pub fn signed_log_sum_exp(terms: &[SignedLog]) -> SignedLog {
    let max = terms
        .iter()
        .filter(|t| t.sign != 0.0)
        .map(|t| t.log_abs)
        .fold(f64::NEG_INFINITY, f64::max);
    if max == f64::NEG_INFINITY {
        return SignedLog {
            log_abs: f64::NEG_INFINITY,
            sign: 0.0,
        };
    }
    let sum: f64 = terms
        .iter()
        .filter(|t| t.sign != 0.0)
        .map(|t| t.sign * (t.log_abs - max).exp())
        .sum();
    SignedLog {
        log_abs: max + sum.abs().ln(),
        sign: if sum > 0.0 {
            1.0
        } else if sum < 0.0 {
            -1.0
        } else {
            0.0
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_sum_exp_matches_the_naive_sum_and_survives_huge_values() {
        let xs = [0.1, -2.0, 3.5, 1.0];
        let naive: f64 = xs.iter().map(|x: &f64| x.exp()).sum::<f64>().ln();
        assert!((log_sum_exp(&xs) - naive).abs() < 1e-14);
        // e^1000 overflows f64; the result is 1000 + ln 2.
        assert!((log_sum_exp(&[1000.0, 1000.0]) - (1000.0 + 2f64.ln())).abs() < 1e-12);
        assert_eq!(log_sum_exp(&[]), f64::NEG_INFINITY);
        assert_eq!(log_sum_exp(&[f64::NEG_INFINITY, 2.0]), 2.0);
        assert!(log_sum_exp(&[1.0, f64::NAN]).is_nan());
        assert_eq!(log_sum_exp(&[1.0, f64::INFINITY]), f64::INFINITY);
        assert!((log_mean_exp(&[2.0, 2.0, 2.0]) - 2.0).abs() < 1e-15);
    }

    #[test]
    fn streaming_merge_equals_one_pass() {
        let xs: Vec<f64> = (0..100)
            .map(|i| ((i * 37) % 23) as f64 * 0.7 - 5.0)
            .collect();
        let mut a = LogSumExp::new();
        let mut b = LogSumExp::new();
        for &x in &xs[..40] {
            a.add(x);
        }
        for &x in &xs[40..] {
            b.add(x);
        }
        a.merge(&b);
        assert!((a.value() - log_sum_exp(&xs)).abs() < 1e-13);
        let mut empty = LogSumExp::new();
        empty.merge(&a);
        assert!((empty.value() - a.value()).abs() < 1e-15);
    }

    #[test]
    fn softplus_and_sigmoid_are_stable() {
        assert!((softplus(0.0) - 2f64.ln()).abs() < 1e-15);
        assert_eq!(softplus(800.0), 800.0);
        assert!(softplus(-800.0) >= 0.0 && softplus(-800.0) < 1e-300);
        assert!((softplus(1.3) - (1.0 + 1.3f64.exp()).ln()).abs() < 1e-14);
        assert_eq!(sigmoid_f32(200.0), 1.0);
        assert_eq!(sigmoid_f32(-200.0), 0.0);
        assert!((sigmoid_f32(0.0) - 0.5).abs() < 1e-7);
    }

    #[test]
    fn signed_sums_cancel_exactly_where_they_should() {
        let t = |x: f64| SignedLog {
            log_abs: x.abs().ln(),
            sign: x.signum(),
        };
        let s = signed_log_sum_exp(&[t(5.0), t(-3.0), t(0.5)]);
        assert!((s.log_abs - 2.5f64.ln()).abs() < 1e-14 && s.sign == 1.0);
        let s = signed_log_sum_exp(&[t(2.0), t(-3.0)]);
        assert!(s.log_abs.abs() < 1e-14 && s.sign == -1.0);
    }
}
