//! Sequence scores and mutational scans: what a model says about given states.
//!
//! `score`: for each row of a data set, the energy E(x) (potts, lattice_ising) or the free
//! energy F(v) = -ln sum_h e^{-E(v,h)} (RBMs, the hidden units summed out), and, when ln Z is
//! known (given, or exact for an enumerable model), the log-likelihood ln p(x) = -E(x) - ln Z
//! (RBMs: -F(v) - ln Z). A gaussian_rbm trained on standardized data scores the data in the
//! data's units: its log-density carries the Jacobian -sum_i ln std_i of the standardization.
//!
//! `scan`: for a reference state, the energy change E(x^(i,a)) - E(x) of every single
//! mutant (site i set to state a), an L x q matrix (0 where a is the reference state): the
//! deep-mutational-scan prediction. Lattice spins: state 0 is -1, state 1 is +1; RBMs: F
//! instead of E.

use crate::data::Dataset;
use crate::error::EngineError;
use crate::estimate::ais::Hooks;
use crate::estimate::chains::check_state;
use crate::estimate::model::{load_model, LoadedModel};

/// Where ln Z comes from.
#[derive(Clone, Debug, PartialEq)]
pub enum LogZ {
    /// A value the caller knows (e.g. from an `estimate_log_z` job), with its standard error.
    Given { value: f64, stderr: f64 },
    /// Exact enumeration (or Kaufman's formula) when the model allows it; else none.
    ExactIfEnumerable,
    /// No log-likelihoods.
    None,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Scores {
    /// "energy" (potts, lattice_ising) or "free_energy" (RBMs).
    pub column: &'static str,
    /// Per row.
    pub values: Vec<f64>,
    /// ln Z used, its standard error and where it came from ("given" | "exact").
    pub log_z: Option<(f64, f64, &'static str)>,
    /// Per row, when ln Z is known.
    pub log_likelihood: Option<Vec<f64>>,
    /// What the scoring assumed (e.g. unknown residues read as gaps), for the job's log.
    pub notes: Vec<String>,
}

impl Scores {
    /// The rows as CSV: `row,energy[,log_likelihood]` (or `free_energy`), full f64 precision.
    pub fn to_csv(&self) -> String {
        let mut out = format!("row,{}", self.column);
        if self.log_likelihood.is_some() {
            out.push_str(",log_likelihood");
        }
        out.push('\n');
        for (r, v) in self.values.iter().enumerate() {
            out.push_str(&format!("{r},{v}"));
            if let Some(ll) = &self.log_likelihood {
                out.push_str(&format!(",{}", ll[r]));
            }
            out.push('\n');
        }
        out
    }
}

fn score_column(model: &LoadedModel) -> &'static str {
    match model {
        LoadedModel::BernoulliRbm(_) | LoadedModel::GaussianRbm(_) => "free_energy",
        LoadedModel::LatticeIsing(_) | LoadedModel::Potts(_) => "energy",
    }
}

/// Scores every row of `data` under the model in `model_file`. Progress 0..1 over the rows
/// (and the enumeration of ln Z first, when it is computed).
pub fn score_rows(
    model_file: &[u8],
    data: &Dataset,
    log_z: &LogZ,
    should_stop: &dyn Fn() -> bool,
    progress: &mut dyn FnMut(f64),
) -> Result<Scores, EngineError> {
    let model = load_model(model_file)?;
    let chains = model.chains(1, None)?;
    let states = model.data_states(data, chains.as_ref())?;
    let mut notes = Vec::new();
    let unknown = model.unknown_residues(data);
    if unknown > 0 {
        notes.push(format!(
            "{unknown} unknown residues (letters outside the alphabet) scored as the gap state, \
             as training reads them by default"
        ));
    }
    let log_z = match log_z {
        LogZ::Given { value, stderr } => {
            if !(value.is_finite() && stderr.is_finite() && *stderr >= 0.0) {
                return Err(EngineError::invalid(
                    "score.log_z must be finite (and its stderr finite and >= 0)",
                ));
            }
            Some((*value, *stderr, "given"))
        }
        LogZ::ExactIfEnumerable if model.check_exact().is_ok() => {
            let mut part = |f: f64| progress(0.5 * f);
            let mut hooks = Hooks {
                should_stop,
                progress: &mut part,
            };
            Some((model.exact_log_z(&mut hooks)?, 0.0, "exact"))
        }
        _ => None,
    };
    let jacobian = match &model {
        LoadedModel::GaussianRbm(p) => p
            .transform
            .as_ref()
            .map_or(0.0, |(_, std)| std.iter().map(|&s| (s as f64).ln()).sum()),
        _ => 0.0,
    };
    let start = if log_z.is_some() { 0.5 } else { 0.0 };
    let mut values = Vec::with_capacity(states.len());
    let total = states.len().max(1) as f64;
    for (r, state) in states.iter().enumerate() {
        if r % 256 == 0 {
            if should_stop() {
                return Err(EngineError::Interrupted);
            }
            progress(start + (1.0 - start) * r as f64 / total);
        }
        let v = -chains.log_target(state);
        if !v.is_finite() {
            return Err(EngineError::Diverged(format!(
                "the score of row {r} came out as {v}; the model's parameters may be extreme"
            )));
        }
        values.push(v);
    }
    progress(1.0);
    let log_likelihood =
        log_z.map(|(lz, _, _)| values.iter().map(|v| -v - lz - jacobian).collect());
    Ok(Scores {
        column: score_column(&model),
        values,
        log_z,
        log_likelihood,
        notes,
    })
}

/// A mutational scan.
#[derive(Clone, Debug, PartialEq)]
pub struct Scan {
    pub sites: usize,
    pub states: usize,
    /// sites x states, row-major: E(mutant) - E(reference) (RBMs: F).
    pub delta: Vec<f64>,
    pub reference_energy: f64,
    /// "energy" or "free_energy".
    pub column: &'static str,
}

/// Most mutants x (work per mutant) a scan of an RBM does (it recomputes F per mutant).
const MAX_RBM_SCAN_WORK: u64 = 1 << 33;

/// The energy change of every single mutant of `reference` (a state in the model's
/// encoding: potts states 0..q-1, lattice spins ±1 (0 counts as -1), RBM units 0/1).
pub fn scan(model_file: &[u8], reference: &[f32]) -> Result<Scan, EngineError> {
    let model = load_model(model_file)?;
    let chains = model.chains(1, None)?;
    let units = chains.units();
    let reference: Vec<f32> = match &model {
        LoadedModel::LatticeIsing(_) => reference
            .iter()
            .map(|&x| if x == 0.0 { -1.0 } else { x })
            .collect(),
        _ => reference.to_vec(),
    };
    check_state(chains.encoding(), units, &reference)
        .map_err(|e| EngineError::invalid(format!("scan.reference: {}", message(e))))?;
    let reference_energy = -chains.log_target(&reference);
    let (states, delta) = match &model {
        LoadedModel::GaussianRbm(_) => {
            return Err(EngineError::invalid(
                "a mutational scan needs discrete units; a gaussian_rbm has real-valued ones",
            ))
        }
        LoadedModel::Potts(p) => {
            let (l, q) = (p.sites, p.q);
            let p = p.clone().symmetrised();
            let s: Vec<usize> = reference.iter().map(|&x| x as usize).collect();
            let mut delta = vec![0.0f64; l * q];
            for i in 0..l {
                // local field of site i in state a: h_i(a) + sum_{j != i} J_ij(a, s_j)
                let field = |a: usize| -> f64 {
                    let mut f = p.fields[i * q + a] as f64;
                    for (j, &b) in s.iter().enumerate() {
                        if j != i {
                            f += p.coupling(i, a, j, b) as f64;
                        }
                    }
                    f
                };
                let own = field(s[i]);
                for a in 0..q {
                    if a != s[i] {
                        delta[i * q + a] = own - field(a);
                    }
                }
            }
            (q, delta)
        }
        LoadedModel::LatticeIsing(p) => {
            let n = p.size;
            let mut delta = vec![0.0f64; units * 2];
            for site in 0..units {
                let (r, c) = (site / n, site % n);
                let nb = [
                    r * n + (c + 1) % n,
                    r * n + (c + n - 1) % n,
                    ((r + 1) % n) * n + c,
                    ((r + n - 1) % n) * n + c,
                ];
                let sum: f64 = nb.iter().map(|&k| reference[k] as f64).sum();
                let s = reference[site] as f64;
                // flipping s to -s: E changes by 2 s (J sum + h)
                let flip = 2.0 * s * (p.coupling * sum + p.field);
                let other = if s > 0.0 { 0 } else { 1 };
                delta[site * 2 + other] = flip;
            }
            (2, delta)
        }
        LoadedModel::BernoulliRbm(p) => {
            let work = (units as u64)
                .saturating_mul(units as u64)
                .saturating_mul(p.hidden as u64);
            if work > MAX_RBM_SCAN_WORK {
                return Err(EngineError::invalid(format!(
                    "a scan of a bernoulli_rbm with {units} visible and {} hidden units is too large \
                     (visible^2 x hidden at most {MAX_RBM_SCAN_WORK})",
                    p.hidden
                )));
            }
            let mut delta = vec![0.0f64; units * 2];
            let mut mutant = reference.clone();
            for i in 0..units {
                let v = reference[i];
                mutant[i] = 1.0 - v;
                delta[i * 2 + (1 - v as usize)] = -chains.log_target(&mutant) - reference_energy;
                mutant[i] = v;
            }
            (2, delta)
        }
    };
    if let Some(bad) = delta.iter().find(|d| !d.is_finite()) {
        return Err(EngineError::Diverged(format!(
            "an energy change came out as {bad}; the model's parameters may be extreme"
        )));
    }
    Ok(Scan {
        sites: units,
        states,
        delta,
        reference_energy,
        column: score_column(&model),
    })
}

fn message(e: EngineError) -> String {
    match e {
        EngineError::InvalidInput(m) | EngineError::Diverged(m) | EngineError::Internal(m) => m,
        EngineError::Interrupted => "interrupted".into(),
    }
}

impl Scan {
    /// The matrix as a float32 .npy [sites, states].
    pub fn to_npy(&self) -> Vec<u8> {
        crate::sample::SampleMatrix {
            rows: self.sites,
            cols: self.states,
            values: self.delta.iter().map(|&d| d as f32).collect(),
            chains: 0,
            draws_per_chain: 0,
        }
        .to_npy()
    }
}
