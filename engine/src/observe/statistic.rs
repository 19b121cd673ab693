//! The statistics `observe` reports the distribution of: macrostates of a microstate
//! (fraction of units on, magnetisation, energy, Hamming distance to a reference, a
//! linear projection, the product of two units), each with its natural histogram range.

use crate::error::EngineError;
use crate::estimate::chains::{check_state, Encoding, ModelChains};

#[derive(Clone, Debug, PartialEq)]
pub enum Statistic {
    /// Fraction of units "on": RBM units = 1, spins = +1, Potts states != 0.
    FractionOn,
    /// Mean spin in ±1 units (RBM: mean of 2v - 1); Potts: the order parameter
    /// (q max_a f_a - 1) / (q - 1), f_a the fraction of sites in state a.
    Magnetization,
    /// The model's energy (RBMs: the free energy of the visible units).
    Energy,
    /// Number of units that differ from the reference state.
    HammingTo(Vec<f32>),
    /// sum_i w_i x_i in the model's encoding.
    Projection(Vec<f32>),
    /// x_a x_b in the model's encoding (Potts: 1 if the two sites agree, else 0); its mean
    /// is the (uncentred) correlation of the two units.
    Correlation(usize, usize),
}

/// How a statistic's values are laid out, for histogram bins.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Support {
    /// Values on lo, lo + step, ..., hi.
    Lattice { lo: f64, hi: f64, step: f64 },
    /// Continuous or irregular: bins span the observed range.
    Observed,
}

pub const STATISTIC_NAMES: &str =
    "fraction_on | magnetization | energy | hamming_to | projection | correlation";

impl Statistic {
    /// Builds and validates a statistic from its name and parameters.
    pub fn parse(
        name: &str,
        reference: &[f32],
        weights: &[f32],
        units: &[u32],
        model: &dyn ModelChains,
    ) -> Result<Statistic, EngineError> {
        let n = model.units();
        let discrete_only = |what: &str| {
            Err(EngineError::InvalidInput(format!(
                "statistic {what} needs binary, spin or categorical units; this model has real-valued \
                 visible units: use energy, projection or correlation"
            )))
        };
        let real = model.encoding() == Encoding::Real;
        let stat = match name {
            "fraction_on" | "magnetization" | "magnetisation" | "hamming_to" if real => {
                return discrete_only(name)
            }
            "fraction_on" => Statistic::FractionOn,
            "magnetization" | "magnetisation" => Statistic::Magnetization,
            "energy" => Statistic::Energy,
            "hamming_to" => {
                if reference.is_empty() {
                    return Err(EngineError::InvalidInput(format!(
                        "statistic hamming_to needs observe.reference, a state of {n} values"
                    )));
                }
                check_state(model.encoding(), n, reference).map_err(|e| {
                    EngineError::InvalidInput(format!("observe.reference: {}", message(&e)))
                })?;
                Statistic::HammingTo(reference.to_vec())
            }
            "projection" => {
                if weights.len() != n {
                    return Err(EngineError::InvalidInput(format!(
                        "statistic projection needs observe.weights with one value per unit ({n}), got {}",
                        weights.len()
                    )));
                }
                if weights.iter().any(|w| !w.is_finite()) {
                    return Err(EngineError::InvalidInput(
                        "observe.weights must be finite".into(),
                    ));
                }
                Statistic::Projection(weights.to_vec())
            }
            "correlation" => {
                if units.len() != 2
                    || units.iter().any(|&u| u as usize >= n)
                    || units[0] == units[1]
                {
                    return Err(EngineError::InvalidInput(format!(
                        "statistic correlation needs observe.units = two different unit indices in 0..{}, got {units:?}",
                        n - 1
                    )));
                }
                Statistic::Correlation(units[0] as usize, units[1] as usize)
            }
            other => {
                return Err(EngineError::InvalidInput(format!(
                    "unknown statistic {other:?}; use one of {STATISTIC_NAMES}"
                )))
            }
        };
        Ok(stat)
    }

    pub fn name(&self) -> &'static str {
        match self {
            Statistic::FractionOn => "fraction_on",
            Statistic::Magnetization => "magnetization",
            Statistic::Energy => "energy",
            Statistic::HammingTo(_) => "hamming_to",
            Statistic::Projection(_) => "projection",
            Statistic::Correlation(..) => "correlation",
        }
    }

    /// The statistic as `scale * sum_i w_i x_i + offset` of a state x (weights, scale,
    /// offset; for categorical states the weights are one-hot, `scale * sum_i
    /// w[i * q + x_i] + offset`), where it is one for this encoding: then device chains can compute it
    /// where they live ([`ModelChains::linear_statistics`]). Equal to [`Statistic::value`]
    /// (for `hamming_to`, given a reference of valid values, which parsing checks).
    pub fn as_linear(&self, units: usize, encoding: Encoding) -> Option<(Vec<f32>, f64, f64)> {
        let n = units as f64;
        let ones = || vec![1.0f32; units];
        match (self, encoding) {
            // count of ones / n; spins: (sum s + n) / 2n
            (Statistic::FractionOn, Encoding::Binary) => Some((ones(), 1.0 / n, 0.0)),
            (Statistic::FractionOn, Encoding::Spin) => Some((ones(), 0.5 / n, 0.5)),
            // mean of 2v - 1; spins: mean of s
            (Statistic::Magnetization, Encoding::Binary) => Some((ones(), 2.0 / n, -1.0)),
            (Statistic::Magnetization, Encoding::Spin) => Some((ones(), 1.0 / n, 0.0)),
            // v != r  <=>  v (1 - 2r) + r = 1;  s != r  <=>  (1 - s r) / 2 = 1
            (Statistic::HammingTo(r), Encoding::Binary) => Some((
                r.iter().map(|&r| 1.0 - 2.0 * r).collect(),
                1.0,
                r.iter().map(|&r| r as f64).sum(),
            )),
            (Statistic::HammingTo(r), Encoding::Spin) => Some((r.clone(), -0.5, 0.5 * n)),
            (Statistic::Projection(w), Encoding::Binary | Encoding::Spin | Encoding::Real) => {
                Some((w.clone(), 1.0, 0.0))
            }
            // Categorical states in one-hot form (weights[i * q + a] for site i in state a):
            // sites not in state 0; sites whose state differs from r_i; sum_i w_i s_i.
            (Statistic::FractionOn, Encoding::Categorical(q)) => Some((
                one_hot(units, q, |_, a| (a != 0) as u8 as f32),
                1.0 / n,
                0.0,
            )),
            (Statistic::HammingTo(r), Encoding::Categorical(q)) => Some((
                one_hot(units, q, |i, a| (a as f32 != r[i]) as u8 as f32),
                1.0,
                0.0,
            )),
            (Statistic::Projection(w), Encoding::Categorical(q)) => {
                Some((one_hot(units, q, |i, a| w[i] * a as f32), 1.0, 0.0))
            }
            _ => None,
        }
    }

    /// The statistic of one state.
    pub fn value(&self, state: &[f32], model: &dyn ModelChains) -> f64 {
        let n = state.len() as f64;
        let encoding = model.encoding();
        match self {
            Statistic::FractionOn => {
                let on = match encoding {
                    Encoding::Binary | Encoding::Spin | Encoding::Real => {
                        state.iter().filter(|&&x| x > 0.0).count()
                    }
                    Encoding::Categorical(_) => state.iter().filter(|&&x| x != 0.0).count(),
                };
                on as f64 / n
            }
            Statistic::Magnetization => match encoding {
                Encoding::Binary => state.iter().map(|&x| 2.0 * x as f64 - 1.0).sum::<f64>() / n,
                Encoding::Spin | Encoding::Real => state.iter().map(|&x| x as f64).sum::<f64>() / n,
                Encoding::Categorical(q) => {
                    let mut counts = vec![0u32; q];
                    for &x in state {
                        counts[x as usize] += 1;
                    }
                    potts_order_parameter(&counts, state.len())
                }
            },
            Statistic::Energy => -model.log_target(state),
            Statistic::HammingTo(reference) => {
                state.iter().zip(reference).filter(|(a, b)| a != b).count() as f64
            }
            Statistic::Projection(w) => state
                .iter()
                .zip(w)
                .map(|(&x, &w)| x as f64 * w as f64)
                .sum(),
            Statistic::Correlation(a, b) => match encoding {
                Encoding::Categorical(_) => (state[*a] == state[*b]) as u8 as f64,
                _ => state[*a] as f64 * state[*b] as f64,
            },
        }
    }

    pub fn support(&self, units: usize, encoding: Encoding) -> Support {
        let n = units as f64;
        match (self, encoding) {
            (Statistic::FractionOn, _) => Support::Lattice {
                lo: 0.0,
                hi: 1.0,
                step: 1.0 / n,
            },
            (Statistic::Magnetization, Encoding::Binary | Encoding::Spin) => Support::Lattice {
                lo: -1.0,
                hi: 1.0,
                step: 2.0 / n,
            },
            (Statistic::HammingTo(_), _) => Support::Lattice {
                lo: 0.0,
                hi: n,
                step: 1.0,
            },
            (Statistic::Correlation(..), Encoding::Spin) => Support::Lattice {
                lo: -1.0,
                hi: 1.0,
                step: 2.0,
            },
            (Statistic::Correlation(..), Encoding::Real) => Support::Observed,
            (Statistic::Correlation(..), _) => Support::Lattice {
                lo: 0.0,
                hi: 1.0,
                step: 1.0,
            },
            _ => Support::Observed,
        }
    }
}

/// Weights of a statistic of categorical states in one-hot form: `weight(i, a)` at
/// `i * q + a` (site i in state a).
fn one_hot(units: usize, q: usize, weight: impl Fn(usize, usize) -> f32) -> Vec<f32> {
    (0..units * q).map(|k| weight(k / q, k % q)).collect()
}

/// The Potts order parameter (q max_a f_a - 1) / (q - 1), f_a = counts[a] / units: the
/// `magnetization` of a categorical state from its counts per state.
pub fn potts_order_parameter(counts: &[u32], units: usize) -> f64 {
    let q = counts.len() as f64;
    let top = *counts.iter().max().unwrap_or(&0) as f64 / units as f64;
    (q * top - 1.0) / (q - 1.0)
}

fn message(e: &EngineError) -> String {
    match e {
        EngineError::InvalidInput(m) | EngineError::Diverged(m) | EngineError::Internal(m) => {
            m.clone()
        }
        EngineError::Interrupted => "interrupted".into(),
    }
}

/// Histogram range and bin count for values with this support: on a lattice, bins are a
/// whole number of lattice steps wide and centred on lattice points (so no bin holds more
/// lattice values than its neighbours, which would fake modes); otherwise the observed
/// range padded by half a bin.
pub fn histogram_layout(support: Support, values: &[f64], bins: usize) -> (f64, f64, usize) {
    match support {
        Support::Lattice { lo, hi, step } => {
            let points = ((hi - lo) / step).round() as usize + 1;
            let per_bin = points.div_ceil(bins.max(1));
            let used = points.div_ceil(per_bin);
            let width = per_bin as f64 * step;
            let start = lo - step / 2.0;
            (start, start + width * used as f64, used)
        }
        Support::Observed => {
            let lo = values.iter().cloned().fold(f64::INFINITY, f64::min);
            let hi = values.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            if !lo.is_finite() || !hi.is_finite() || hi <= lo {
                let c = if lo.is_finite() { lo } else { 0.0 };
                return (c - 0.5, c + 0.5, bins.max(1));
            }
            let half = (hi - lo) / (bins.max(2) - 1) as f64 / 2.0;
            (lo - half, hi + half, bins.max(1))
        }
    }
}
