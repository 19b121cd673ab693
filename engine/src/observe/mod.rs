//! `observe`: the distribution of a statistic (a macrostate) under a model, estimated
//! from MCMC chains, with its histogram, all modes, mean, std, quantiles, effective
//! sample size and R-hat, and the statistic of the most likely microstate for contrast.
//! (DESIGN: the mode of a high-dimensional distribution is a poor summary; report the
//! distribution of what the user cares about instead.)

pub mod map;
pub mod statistic;
pub mod temperatures;
#[cfg(test)]
mod tests;

use crate::backend::BackendKind;
use crate::error::EngineError;
use crate::estimate::chains::{Encoding, ModelChains};
use crate::estimate::model::load_model;
use crate::estimate::placement::place_chains;
use crate::rng::RngStream;
use crate::sample::chain_plan;
use crate::stats::summary::StatisticSummary;
use statistic::{histogram_layout, potts_order_parameter, Statistic};

/// How to run the chains (the numbers of `observe`/`sample` specs, defaults applied).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ChainPlan {
    pub samples: usize,
    pub burn_in: usize,
    pub thin: usize,
    pub chains: usize,
}

impl ChainPlan {
    /// Draws per chain: the requested samples rounded up to a multiple of the chains.
    pub fn per_chain(&self) -> usize {
        self.samples.div_ceil(self.chains)
    }

    pub fn sweeps(&self) -> usize {
        self.burn_in + self.per_chain() * self.thin
    }
}

/// Receives (chain, state, model) for each kept draw.
pub type Recorder<'a> = dyn FnMut(usize, &[f32], &dyn ModelChains) + 'a;

/// Starts every chain from the base model, burns in, then calls `record(chain, state)`
/// for each kept state, per draw in chain order (`record` also gets the model, e.g. for
/// energies). Progress runs 0..1 over all sweeps.
pub fn run_chains(
    chains: &mut dyn ModelChains,
    plan: &ChainPlan,
    rng: &mut RngStream,
    should_stop: &dyn Fn() -> bool,
    progress: &mut dyn FnMut(f64),
    record: &mut Recorder<'_>,
) -> Result<(), EngineError> {
    // One bulk read per draw (a single download for device chains).
    let units = chains.units();
    let mut states = vec![0.0; chains.chains() * units];
    run_draws(chains, plan, rng, should_stop, progress, &mut |chains| {
        chains.read_states(&mut states)?;
        for (c, state) in states.chunks_exact(units).enumerate() {
            record(c, state, &*chains);
        }
        Ok(())
    })
}

/// Called once per kept draw with the chains at that draw.
pub type DrawHandler<'a> = dyn FnMut(&mut dyn ModelChains) -> Result<(), EngineError> + 'a;

/// Starts every chain from the base model, burns in, then calls `draw(chains)` after each
/// `thin` sweeps, `per_chain` times. Progress runs 0..1 over all sweeps.
pub fn run_draws(
    chains: &mut dyn ModelChains,
    plan: &ChainPlan,
    rng: &mut RngStream,
    should_stop: &dyn Fn() -> bool,
    progress: &mut dyn FnMut(f64),
    draw: &mut DrawHandler<'_>,
) -> Result<(), EngineError> {
    let total = plan.sweeps().max(1) as f64;
    let report_every = (plan.sweeps() / 200).max(1);
    let mut done = 0usize;
    let mut sweep =
        |chains: &mut dyn ModelChains, rng: &mut RngStream| -> Result<(), EngineError> {
            if should_stop() {
                return Err(EngineError::Interrupted);
            }
            chains.sweep(1.0, rng);
            done += 1;
            if done.is_multiple_of(report_every) {
                progress(done as f64 / total);
            }
            Ok(())
        };
    chains.draw_base(rng.next_key());
    for _ in 0..plan.burn_in {
        sweep(chains, rng)?;
    }
    for _ in 0..plan.per_chain() {
        for _ in 0..plan.thin {
            sweep(chains, rng)?;
        }
        draw(chains)?;
    }
    Ok(())
}

/// The result of `observe`.
#[derive(Clone, Debug, PartialEq)]
pub struct ObserveReport {
    pub statistic: String,
    pub summary: StatisticSummary,
    /// The statistic of the most likely microstate found.
    pub map_statistic: f64,
    /// Whether that microstate is exact (factorised model) or the best found by annealing.
    pub map_exact: bool,
    pub chains: usize,
    pub draws_per_chain: usize,
}

/// The statistic of every kept draw, per chain (`series[chain][draw]`): runs the chains
/// as [`run_draws`] does (progress 0..1 over all sweeps). A linear statistic, and the
/// energy, are reduced where the chains live when the chains offer it
/// ([`ModelChains::linear_statistics`], [`ModelChains::energies`]): one value per chain
/// comes back from a device; otherwise the states are read and [`Statistic::value`] is
/// computed here.
pub fn statistic_series(
    chains: &mut dyn ModelChains,
    statistic: &Statistic,
    plan: &ChainPlan,
    rng: &mut RngStream,
    should_stop: &dyn Fn() -> bool,
    progress: &mut dyn FnMut(f64),
) -> Result<Vec<Vec<f64>>, EngineError> {
    let mut series: Vec<Vec<f64>> = vec![Vec::with_capacity(plan.per_chain()); chains.chains()];
    let units = chains.units();
    let linear = statistic.as_linear(units, chains.encoding());
    let mut states = vec![0.0; chains.chains() * units];
    let mut draw = |chains: &mut dyn ModelChains| -> Result<(), EngineError> {
        if let Some(values) = reduced_where_chains_live(chains, statistic, linear.as_ref()) {
            for (s, v) in series.iter_mut().zip(values?) {
                s.push(v);
            }
            return Ok(());
        }
        chains.read_states(&mut states)?;
        for (s, state) in series.iter_mut().zip(states.chunks_exact(units)) {
            s.push(statistic.value(state, &*chains));
        }
        Ok(())
    };
    run_draws(chains, plan, rng, should_stop, progress, &mut draw)?;
    Ok(series)
}

/// The statistic of every chain's current state, computed where the chains live when they
/// offer it (device chains: one value, or q counts, per chain crosses the bus); `None`
/// when the states must be read instead.
fn reduced_where_chains_live(
    chains: &mut dyn ModelChains,
    statistic: &Statistic,
    linear: Option<&(Vec<f32>, f64, f64)>,
) -> Option<Result<Vec<f64>, EngineError>> {
    if let Some((weights, scale, offset)) = linear {
        return chains.linear_statistics(weights, *scale, *offset);
    }
    match (statistic, chains.encoding()) {
        (Statistic::Energy, _) => chains.energies(),
        (Statistic::Correlation(a, b), _) => chains.pair_products(*a, *b),
        (Statistic::Magnetization, Encoding::Categorical(q)) => {
            let units = chains.units();
            Some(chains.state_counts()?.map(|counts| {
                counts
                    .chunks_exact(q)
                    .map(|c| potts_order_parameter(c, units))
                    .collect()
            }))
        }
        _ => None,
    }
}

/// Samples the chains, summarises the statistic, then finds the most likely microstate.
/// Progress: 0..0.9 sampling, 0.9..1 annealing.
pub fn observe_chains(
    chains: &mut dyn ModelChains,
    statistic: &Statistic,
    plan: &ChainPlan,
    bins: usize,
    rng: &mut RngStream,
    should_stop: &dyn Fn() -> bool,
    progress: &mut dyn FnMut(f64),
) -> Result<ObserveReport, EngineError> {
    let units = chains.units();
    let mut sampling_progress = |f: f64| progress(0.9 * f);
    let series = statistic_series(
        chains,
        statistic,
        plan,
        rng,
        should_stop,
        &mut sampling_progress,
    )?;
    if let Some(bad) = series.iter().flatten().find(|v| !v.is_finite()) {
        return Err(EngineError::Diverged(format!(
            "the statistic {} came out as {bad}; the model's parameters may be extreme",
            statistic.name()
        )));
    }
    let all: Vec<f64> = series.iter().flatten().cloned().collect();
    let (lo, hi, used_bins) =
        histogram_layout(statistic.support(units, chains.encoding()), &all, bins);
    let summary = StatisticSummary::of_chains(&series, lo, hi, used_bins);
    let map = map::most_likely_state(chains, rng, should_stop)?;
    progress(1.0);
    Ok(ObserveReport {
        statistic: statistic.name().to_string(),
        map_statistic: statistic.value(&map.state, &*chains),
        map_exact: map.exact,
        summary,
        chains: chains.chains(),
        draws_per_chain: plan.per_chain(),
    })
}

/// What a client asks for (proto `ObserveConfig`; `None` = default).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ObserveSpec {
    pub statistic: String,
    pub samples: Option<u32>,
    pub burn_in: Option<u32>,
    pub chains: Option<u32>,
    pub bins: Option<u32>,
    pub reference: Vec<f32>,
    pub weights: Vec<f32>,
    pub units: Vec<u32>,
    pub thin: Option<u32>,
    /// lattice_ising: observe at each of these inverse temperatures (or couplings) instead.
    pub betas: Vec<f64>,
    pub couplings: Vec<f64>,
}

impl ObserveSpec {
    /// The points of an observe over temperatures, if the spec asks for one.
    pub fn points(&self) -> Result<Option<temperatures::Points>, EngineError> {
        match (self.betas.is_empty(), self.couplings.is_empty()) {
            (true, true) => Ok(None),
            (false, false) => Err(EngineError::InvalidInput(
                "give observe.betas or observe.couplings, not both".into(),
            )),
            (false, true) => Ok(Some(temperatures::Points::Betas(self.betas.clone()))),
            (true, false) => Ok(Some(temperatures::Points::Couplings(
                self.couplings.clone(),
            ))),
        }
    }
}

/// Runs an observe over temperatures (`betas` or `couplings`) of a lattice_ising model.
pub fn run_observe_points(
    model_file: &[u8],
    spec: &ObserveSpec,
    seed: u64,
    should_stop: &dyn Fn() -> bool,
    progress: &mut dyn FnMut(f64),
) -> Result<Vec<temperatures::PointSummary>, EngineError> {
    let points = spec
        .points()?
        .ok_or_else(|| EngineError::Internal("no points to observe at".into()))?;
    let plan = chain_plan(
        "observe",
        spec.samples,
        spec.burn_in,
        spec.thin,
        spec.chains,
        (DEFAULT_OBSERVE_SAMPLES, DEFAULT_OBSERVE_CHAINS),
    )?;
    check_points_work(&plan, points.values().len())?;
    let crate::estimate::model::LoadedModel::LatticeIsing(base) = load_model(model_file)? else {
        return Err(EngineError::InvalidInput(
            "observe over temperatures (observe.betas / observe.couplings) is offered for lattice_ising models".into(),
        ));
    };
    let mut rng = RngStream::new(seed, OBSERVE_STREAM);
    temperatures::observe_points(
        &base,
        &points,
        spec.statistic.trim(),
        &plan,
        &mut rng,
        should_stop,
        progress,
    )
}

/// Bound on the draws of all points together.
fn check_points_work(plan: &ChainPlan, points: usize) -> Result<(), EngineError> {
    let draws = (plan.chains * plan.per_chain()).saturating_mul(points);
    if draws > 100_000_000 {
        return Err(EngineError::InvalidInput(format!(
            "observe over {points} points of {} samples each is {draws} draws; at most 100000000 are allowed",
            plan.samples
        )));
    }
    if plan.chains < temperatures::MIN_CHAINS {
        return Err(EngineError::InvalidInput(format!(
            "observe over temperatures needs at least {} chains (its error bars come from the spread between chains)",
            temperatures::MIN_CHAINS
        )));
    }
    Ok(())
}

pub const DEFAULT_OBSERVE_SAMPLES: usize = 10_000;
pub const DEFAULT_OBSERVE_CHAINS: usize = 16;
pub const DEFAULT_BINS: usize = 65;
pub const MAX_BINS: usize = 10_000;
pub const OBSERVE_STREAM: u32 = 0x0B5E;

/// Runs an `observe` request; returns the report and notes for the user.
pub fn run_observe(
    model_file: &[u8],
    spec: &ObserveSpec,
    seed: u64,
    backend: BackendKind,
    should_stop: &dyn Fn() -> bool,
    progress: &mut dyn FnMut(f64),
) -> Result<(ObserveReport, Vec<String>), EngineError> {
    let plan = chain_plan(
        "observe",
        spec.samples,
        spec.burn_in,
        spec.thin,
        spec.chains,
        (DEFAULT_OBSERVE_SAMPLES, DEFAULT_OBSERVE_CHAINS),
    )?;
    if plan.samples > 100_000_000 {
        return Err(EngineError::InvalidInput(
            "observe.samples must be at most 100000000".into(),
        ));
    }
    let bins = spec.bins.map_or(DEFAULT_BINS, |b| b as usize);
    if bins == 0 || bins > MAX_BINS {
        return Err(EngineError::InvalidInput(format!(
            "observe.bins must be between 1 and {MAX_BINS}, got {bins}"
        )));
    }
    if spec.statistic.trim().is_empty() {
        return Err(EngineError::InvalidInput(format!(
            "observe.statistic is required: one of {}",
            statistic::STATISTIC_NAMES
        )));
    }
    let model = load_model(model_file)?;
    let (mut chains, note) = place_chains(&model, plan.chains, None, backend)?;
    let stat = Statistic::parse(
        spec.statistic.trim(),
        &spec.reference,
        &spec.weights,
        &spec.units,
        chains.as_ref(),
    )?;
    let notes: Vec<String> = note.into_iter().collect();
    let mut rng = RngStream::new(seed, OBSERVE_STREAM);
    let report = observe_chains(
        chains.as_mut(),
        &stat,
        &plan,
        bins,
        &mut rng,
        should_stop,
        progress,
    )?;
    Ok((report, notes))
}

/// Checks an observe request against a model's listing before it is queued (numbers,
/// statistic name, and the lengths of reference/weights/units against the model's units).
pub fn check_observe_request(
    spec: &ObserveSpec,
    model_type: &str,
    dims: &std::collections::BTreeMap<String, u64>,
) -> Result<(), EngineError> {
    chain_plan(
        "observe",
        spec.samples,
        spec.burn_in,
        spec.thin,
        spec.chains,
        (DEFAULT_OBSERVE_SAMPLES, DEFAULT_OBSERVE_CHAINS),
    )?;
    let bins = spec.bins.map_or(DEFAULT_BINS, |b| b as usize);
    if bins == 0 || bins > MAX_BINS {
        return Err(EngineError::InvalidInput(format!(
            "observe.bins must be between 1 and {MAX_BINS}, got {bins}"
        )));
    }
    crate::estimate::job::check_model_type(model_type)?;
    if let Some(points) = spec.points()? {
        if model_type != "lattice_ising" {
            return Err(EngineError::InvalidInput(format!(
                "observe over temperatures (observe.betas / observe.couplings) is offered for lattice_ising models; this model is a {model_type}"
            )));
        }
        points.check()?;
        let plan = chain_plan(
            "observe",
            spec.samples,
            spec.burn_in,
            spec.thin,
            spec.chains,
            (DEFAULT_OBSERVE_SAMPLES, DEFAULT_OBSERVE_CHAINS),
        )?;
        check_points_work(&plan, points.values().len())?;
        if !matches!(
            spec.statistic.trim(),
            "energy" | "magnetization" | "magnetisation" | "fraction_on"
        ) {
            return Err(EngineError::InvalidInput(format!(
                "observe over temperatures takes statistic energy, magnetization or fraction_on, got {:?}",
                spec.statistic
            )));
        }
    }
    let units = crate::estimate::job::units_from_dims(model_type, dims).unwrap_or(0) as usize;
    let bad = |m: String| Err(EngineError::InvalidInput(m));
    match spec.statistic.trim() {
        "fraction_on" | "magnetization" | "magnetisation" | "energy" => Ok(()),
        "hamming_to" if spec.reference.len() != units => bad(format!(
            "statistic hamming_to needs observe.reference with one value per unit ({units}), got {}",
            spec.reference.len()
        )),
        "projection" if spec.weights.len() != units => bad(format!(
            "statistic projection needs observe.weights with one value per unit ({units}), got {}",
            spec.weights.len()
        )),
        "correlation" if spec.units.len() != 2 || spec.units.iter().any(|&u| u as usize >= units) || spec.units.first() == spec.units.last() => {
            bad(format!(
                "statistic correlation needs observe.units = two different unit indices below {units}, got {:?}",
                spec.units
            ))
        }
        "hamming_to" | "projection" | "correlation" => Ok(()),
        "" => bad(format!("observe.statistic is required: one of {}", statistic::STATISTIC_NAMES)),
        other => bad(format!("unknown statistic {other:?}; use one of {}", statistic::STATISTIC_NAMES)),
    }
}
