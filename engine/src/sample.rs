//! `sample`: n states from a model's chains after burn-in and thinning, as a matrix
//! (rows = draws, chain-major: all of chain 0's draws in time order, then chain 1's...).

use crate::backend::BackendKind;
use crate::error::EngineError;
use crate::estimate::chains::ModelChains;
use crate::estimate::model::load_model;
use crate::estimate::placement::place_chains;
use crate::observe::{run_chains, ChainPlan};
use crate::rng::RngStream;

/// Bound on the cells of a sample matrix (f32): 2^25 = 128 MiB.
pub const MAX_SAMPLE_CELLS: usize = 1 << 25;

#[derive(Clone, Debug, PartialEq)]
pub struct SampleMatrix {
    pub rows: usize,
    pub cols: usize,
    /// Row-major, in the model's encoding (RBM 0/1, spins ±1, Potts state indices).
    pub values: Vec<f32>,
    pub chains: usize,
    pub draws_per_chain: usize,
}

pub fn sample_chains(
    chains: &mut dyn ModelChains,
    plan: &ChainPlan,
    rng: &mut RngStream,
    should_stop: &dyn Fn() -> bool,
    progress: &mut dyn FnMut(f64),
) -> Result<SampleMatrix, EngineError> {
    let (n_chains, units, per_chain) = (chains.chains(), chains.units(), plan.per_chain());
    let rows = n_chains * per_chain;
    if rows.saturating_mul(units) > MAX_SAMPLE_CELLS {
        return Err(EngineError::InvalidInput(format!(
            "{rows} samples of {units} units exceed the limit of {MAX_SAMPLE_CELLS} values; ask for fewer samples"
        )));
    }
    let mut values = vec![0.0f32; rows * units];
    let mut drawn = vec![0usize; n_chains];
    let mut record = |c: usize, s: &[f32], _: &dyn ModelChains| {
        let row = c * per_chain + drawn[c];
        values[row * units..(row + 1) * units].copy_from_slice(s);
        drawn[c] += 1;
    };
    run_chains(chains, plan, rng, should_stop, progress, &mut record)?;
    Ok(SampleMatrix {
        rows,
        cols: units,
        values,
        chains: n_chains,
        draws_per_chain: per_chain,
    })
}

/// What a client asks for (proto `SampleConfig`; `None` = default).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SampleSpec {
    pub samples: Option<u32>,
    pub burn_in: Option<u32>,
    pub thin: Option<u32>,
    pub chains: Option<u32>,
}

pub const DEFAULT_SAMPLES: usize = 1000;
pub const DEFAULT_SAMPLE_CHAINS: usize = 10;
pub const DEFAULT_BURN_IN: usize = 1000;
pub const MAX_CHAINS: usize = 100_000;
pub const MAX_BURN_IN: usize = 1_000_000;
pub const MAX_THIN: usize = 10_000;
/// Bound on the total sweeps x chains of one request.
pub const MAX_CHAIN_SWEEPS: u64 = 1 << 32;
pub const SAMPLE_STREAM: u32 = 0x5A4F;

/// Validates the numbers of a sample/observe request and applies defaults.
pub fn chain_plan(
    what: &str,
    samples: Option<u32>,
    burn_in: Option<u32>,
    thin: Option<u32>,
    chains: Option<u32>,
    defaults: (usize, usize),
) -> Result<ChainPlan, EngineError> {
    let plan = ChainPlan {
        samples: samples.map_or(defaults.0, |s| s as usize),
        burn_in: burn_in.map_or(DEFAULT_BURN_IN, |b| b as usize),
        thin: thin.map_or(1, |t| t as usize),
        chains: chains.map_or(defaults.1, |c| c as usize),
    };
    let bad = |m: String| Err(EngineError::InvalidInput(m));
    if plan.chains == 0 || plan.chains > MAX_CHAINS {
        return bad(format!(
            "{what}.chains must be between 1 and {MAX_CHAINS}, got {}",
            plan.chains
        ));
    }
    if plan.samples == 0 {
        return bad(format!("{what}.samples must be at least 1"));
    }
    if plan.thin == 0 || plan.thin > MAX_THIN {
        return bad(format!(
            "{what}.thin must be between 1 and {MAX_THIN}, got {}",
            plan.thin
        ));
    }
    if plan.burn_in > MAX_BURN_IN {
        return bad(format!("{what}.burn_in must be at most {MAX_BURN_IN}"));
    }
    if plan.sweeps() as u64 * plan.chains as u64 > MAX_CHAIN_SWEEPS {
        return bad(format!(
            "{what}: {} chains x {} sweeps exceed the limit of {MAX_CHAIN_SWEEPS} chain-sweeps",
            plan.chains,
            plan.sweeps()
        ));
    }
    Ok(plan)
}

/// Runs a `sample` request: the matrix of draws (rows rounded up to a multiple of the
/// chains).
pub fn run_sample(
    model_file: &[u8],
    spec: &SampleSpec,
    seed: u64,
    backend: BackendKind,
    should_stop: &dyn Fn() -> bool,
    progress: &mut dyn FnMut(f64),
) -> Result<(SampleMatrix, Vec<String>), EngineError> {
    let plan = chain_plan(
        "sample",
        spec.samples,
        spec.burn_in,
        spec.thin,
        spec.chains,
        (DEFAULT_SAMPLES, DEFAULT_SAMPLE_CHAINS),
    )?;
    let model = load_model(model_file)?;
    if plan
        .chains
        .saturating_mul(plan.per_chain())
        .saturating_mul(model.units())
        > MAX_SAMPLE_CELLS
    {
        return Err(EngineError::InvalidInput(format!(
            "{} samples of {} units exceed the limit of {MAX_SAMPLE_CELLS} values; ask for fewer samples",
            plan.samples,
            model.units()
        )));
    }
    let (mut chains, note) = place_chains(&model, plan.chains, None, backend)?;
    let notes: Vec<String> = note.into_iter().collect();
    let mut rng = RngStream::new(seed, SAMPLE_STREAM);
    let matrix = sample_chains(chains.as_mut(), &plan, &mut rng, should_stop, progress)?;
    Ok((matrix, notes))
}

/// Checks a sample request against a model's listing before it is queued.
pub fn check_sample_request(
    spec: &SampleSpec,
    model_type: &str,
    dims: &std::collections::BTreeMap<String, u64>,
) -> Result<(), EngineError> {
    let plan = chain_plan(
        "sample",
        spec.samples,
        spec.burn_in,
        spec.thin,
        spec.chains,
        (DEFAULT_SAMPLES, DEFAULT_SAMPLE_CHAINS),
    )?;
    crate::estimate::job::check_model_type(model_type)?;
    let units = crate::estimate::job::units_from_dims(model_type, dims).unwrap_or(0) as usize;
    if (plan.chains * plan.per_chain()).saturating_mul(units) > MAX_SAMPLE_CELLS {
        return Err(EngineError::InvalidInput(format!(
            "{} samples of {units} units exceed the limit of {MAX_SAMPLE_CELLS} values; ask for fewer samples",
            plan.samples
        )));
    }
    Ok(())
}

impl SampleMatrix {
    /// The matrix as a NumPy `.npy` file (format 1.0, little-endian float32, C order),
    /// which NumPy and PyTorch read directly.
    pub fn to_npy(&self) -> Vec<u8> {
        let mut header = format!(
            "{{'descr': '<f4', 'fortran_order': False, 'shape': ({}, {}), }}",
            self.rows, self.cols
        );
        // Magic (6) + version (2) + length (2) + header + '\n' is a multiple of 64.
        let unpadded = 10 + header.len() + 1;
        header.push_str(&" ".repeat(unpadded.next_multiple_of(64) - unpadded));
        header.push('\n');
        let mut out = Vec::with_capacity(10 + header.len() + 4 * self.values.len());
        out.extend_from_slice(b"\x93NUMPY\x01\x00");
        out.extend_from_slice(&(header.len() as u16).to_le_bytes());
        out.extend_from_slice(header.as_bytes());
        for v in &self.values {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out
    }
}
