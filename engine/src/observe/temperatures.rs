//! `observe` over a list of inverse temperatures or couplings of a lattice Ising model, in
//! one job: at each point the statistic's mean, its variance, the variance per site as the
//! physicist reads it (statistic `energy`: the specific heat per spin c = Var(E)/N; statistic
//! `magnetization`: the susceptibility per spin chi = N Var(m); otherwise Var/N), and the
//! Binder cumulant U = 1 - <x^4> / (3 <x^2>^2) (raw moments of the statistic), each with a
//! standard error.
//!
//! Points: `betas` multiply the model's energy (J -> beta J, h -> beta h); `couplings` replace
//! J (h kept). Energies are those of the model at the point (k_B T = 1 absorbed into J), so
//! c = K^2 Var(sum s_i s_j) / N = K^2 / N d^2 ln Z / dK^2 at zero field.
//!
//! Errors: the chains are independent, so the jackknife over chains (leave one chain out of
//! the pooled moments) gives standard errors that account for the autocorrelation within a
//! chain, for the nonlinear variance and Binder estimators as well as for the mean.

use super::statistic::Statistic;
use super::{statistic_series, ChainPlan};
use crate::error::EngineError;
use crate::estimate::chains::lattice::{LatticeChains, LatticeParams};
use crate::estimate::chains::ModelChains;
use crate::rng::RngStream;
use crate::stats::mcmc::split_r_hat;

/// Most points one request may ask for.
pub const MAX_POINTS: usize = 256;
/// Fewest chains a scan accepts (the jackknife over chains needs several).
pub const MIN_CHAINS: usize = 4;

/// The parameter that varies.
#[derive(Clone, Debug, PartialEq)]
pub enum Points {
    Betas(Vec<f64>),
    Couplings(Vec<f64>),
}

impl Points {
    pub fn values(&self) -> &[f64] {
        match self {
            Points::Betas(v) | Points::Couplings(v) => v,
        }
    }

    /// The model at point `k`.
    pub fn params(&self, base: &LatticeParams, k: usize) -> LatticeParams {
        match self {
            Points::Betas(b) => LatticeParams {
                size: base.size,
                coupling: base.coupling * b[k],
                field: base.field * b[k],
            },
            Points::Couplings(j) => LatticeParams {
                size: base.size,
                coupling: j[k],
                field: base.field,
            },
        }
    }

    pub fn check(&self) -> Result<(), EngineError> {
        let (name, v) = match self {
            Points::Betas(v) => ("observe.betas", v),
            Points::Couplings(v) => ("observe.couplings", v),
        };
        if v.is_empty() || v.len() > MAX_POINTS {
            return Err(EngineError::invalid(format!(
                "{name} must hold 1 to {MAX_POINTS} values, got {}",
                v.len()
            )));
        }
        if let Some(x) = v.iter().find(|x| !x.is_finite() || x.abs() > 1e3) {
            return Err(EngineError::invalid(format!(
                "{name} must be finite numbers of size at most 1000, got {x}"
            )));
        }
        if matches!(self, Points::Betas(_)) && v.iter().any(|&b| b < 0.0) {
            return Err(EngineError::invalid("observe.betas must be >= 0"));
        }
        Ok(())
    }
}

/// One point of the scan.
#[derive(Clone, Debug, PartialEq)]
pub struct PointSummary {
    /// The point's beta (1 for coupling scans) and the coupling J and field h used.
    pub beta: f64,
    pub coupling: f64,
    pub field: f64,
    pub mean: f64,
    pub mean_stderr: f64,
    pub variance: f64,
    pub variance_stderr: f64,
    /// Specific heat per spin (energy), susceptibility per spin (magnetization), else Var/N.
    pub per_site: f64,
    pub per_site_stderr: f64,
    pub binder: f64,
    pub binder_stderr: f64,
    pub r_hat: f64,
}

/// Mean, variance (1/(n-1)) and Binder cumulant from power sums.
fn estimates(n: f64, s1: f64, s2: f64, s4: f64) -> [f64; 3] {
    let mean = s1 / n;
    let m2 = s2 / n;
    let variance = (m2 - mean * mean) * n / (n - 1.0);
    let binder = if m2 > 0.0 {
        1.0 - (s4 / n) / (3.0 * m2 * m2)
    } else {
        f64::NAN
    };
    [mean, variance, binder]
}

/// Pooled estimates of `series[chain][draw]` and their jackknife (over chains) errors.
pub fn summarise(series: &[Vec<f64>]) -> ([f64; 3], [f64; 3]) {
    // sums of x, x^2, x^4 per chain, in f64 (values centred by the pooled mean would not
    // change the Binder cumulant's raw moments, so none is applied)
    let sums: Vec<[f64; 4]> = series
        .iter()
        .map(|s| {
            let mut t = [s.len() as f64, 0.0, 0.0, 0.0];
            for &x in s {
                let x2 = x * x;
                t[1] += x;
                t[2] += x2;
                t[3] += x2 * x2;
            }
            t
        })
        .collect();
    let total = sums.iter().fold([0.0; 4], |mut a, t| {
        for k in 0..4 {
            a[k] += t[k];
        }
        a
    });
    let all = estimates(total[0], total[1], total[2], total[3]);
    let c = sums.len() as f64;
    let leave_out: Vec<[f64; 3]> = sums
        .iter()
        .map(|t| {
            estimates(
                total[0] - t[0],
                total[1] - t[1],
                total[2] - t[2],
                total[3] - t[3],
            )
        })
        .collect();
    let mut errors = [0.0; 3];
    for k in 0..3 {
        let mean = leave_out.iter().map(|e| e[k]).sum::<f64>() / c;
        let ss: f64 = leave_out.iter().map(|e| (e[k] - mean).powi(2)).sum();
        errors[k] = ((c - 1.0) / c * ss).sqrt();
    }
    (all, errors)
}

/// Runs the chains at every point and summarises the statistic there. Progress 0..1 over
/// the points.
#[allow(clippy::too_many_arguments)]
pub fn observe_points(
    base: &LatticeParams,
    points: &Points,
    statistic_name: &str,
    plan: &ChainPlan,
    rng: &mut RngStream,
    should_stop: &dyn Fn() -> bool,
    progress: &mut dyn FnMut(f64),
) -> Result<Vec<PointSummary>, EngineError> {
    points.check()?;
    if plan.chains < MIN_CHAINS {
        return Err(EngineError::invalid(format!(
            "observe over temperatures needs at least {MIN_CHAINS} chains (its error bars come \
             from the spread between chains), got {}",
            plan.chains
        )));
    }
    let n = points.values().len();
    let mut out = Vec::with_capacity(n);
    for k in 0..n {
        let params = points.params(base, k);
        let mut chains = LatticeChains::new(params, plan.chains)?;
        let statistic = Statistic::parse(statistic_name, &[], &[], &[], &chains)?;
        if matches!(
            statistic,
            Statistic::HammingTo(_) | Statistic::Projection(_) | Statistic::Correlation(..)
        ) {
            return Err(EngineError::invalid(
                "observe over temperatures takes energy, magnetization or fraction_on",
            ));
        }
        let sites = chains.units() as f64;
        let mut part = |f: f64| progress((k as f64 + f) / n as f64);
        let series = statistic_series(&mut chains, &statistic, plan, rng, should_stop, &mut part)?;
        let ([mean, variance, binder], [mean_e, variance_e, binder_e]) = summarise(&series);
        let per_site_scale = match statistic {
            Statistic::Magnetization | Statistic::FractionOn => sites,
            _ => 1.0 / sites,
        };
        let refs: Vec<&[f64]> = series.iter().map(|s| s.as_slice()).collect();
        out.push(PointSummary {
            beta: match points {
                Points::Betas(b) => b[k],
                Points::Couplings(_) => 1.0,
            },
            coupling: params.coupling,
            field: params.field,
            mean,
            mean_stderr: mean_e,
            variance,
            variance_stderr: variance_e,
            per_site: variance * per_site_scale,
            per_site_stderr: variance_e * per_site_scale,
            binder,
            binder_stderr: binder_e,
            r_hat: split_r_hat(&refs),
        });
    }
    progress(1.0);
    Ok(out)
}
