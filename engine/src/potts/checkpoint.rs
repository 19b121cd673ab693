//! Potts checkpoints: parameters, optimizer state, every chain (all replicas), the RNG
//! counters and the tempering statistics, as safetensors with a JSON `state` entry in the
//! metadata. Resuming rebuilds the data statistics from the same data and spec (checked by
//! fingerprint) and continues exactly: 10 epochs straight equal 5 + resume + 5.

use super::trainer::PottsTrainer;
use crate::data::Dataset;
use crate::error::{EngineError, Result};
use crate::potts::sampler::{CpuPottsSampler, PottsSampler};
use crate::spec::{ModelSpec, TrainSpec};
use crate::tensors::{TensorReader, TensorWriter};
use crate::training::checkpoint::{
    fingerprint, read_state, write_state, RunIdentity, TemperingCounters,
};

const FORMAT: &str = "ebm-potts-checkpoint/1";

use crate::training::checkpoint::SweepTrainerState as State;

fn identity(
    model_spec: &ModelSpec,
    train_spec: &TrainSpec,
    seed: u64,
    data_fingerprint: u64,
) -> RunIdentity {
    RunIdentity {
        format: FORMAT.into(),
        model_spec: model_spec.clone(),
        train_spec: train_spec.clone(),
        seed,
        data_fingerprint,
    }
}

pub fn save(t: &PottsTrainer) -> Result<Vec<u8>> {
    let (l, q) = (t.model.sites, t.model.q);
    let mut out = TensorWriter::new();
    out.add("h", &[l, q], &t.model.fields)?;
    out.add("J", &[l, q, l, q], &t.model.couplings)?;
    for (i, s) in t.opt_h.iter().enumerate() {
        out.add(&format!("opt.h.{i}"), &[l, q], s)?;
    }
    for (i, s) in t.opt_j.iter().enumerate() {
        out.add(&format!("opt.J.{i}"), &[l, q, l, q], s)?;
    }
    let chains: Vec<f32> = t.chains.iter().map(|&s| s as f32).collect();
    out.add("chains", &[t.chains.len() / l, l], &chains)?;
    let state = State {
        run: identity(&t.model_spec, &t.train_spec, t.seed, t.data_fingerprint),
        epoch: t.epoch,
        updates: t.updates,
        rng_sweep: t.rng_sweep.step,
        rng_swap: t.rng_swap.step,
        tempering: TemperingCounters::of(t.tempering.as_ref()),
    };
    write_state(&mut out, "potts-checkpoint", &state)?;
    out.to_bytes()
}

/// A trainer rebuilt from spec, seed and data, then moved to the checkpoint's position.
pub fn resume(
    model_spec: &ModelSpec,
    train_spec: &TrainSpec,
    seed: u64,
    data: Dataset,
    bytes: &[u8],
) -> Result<PottsTrainer> {
    resume_with_sampler(
        model_spec,
        train_spec,
        seed,
        data,
        bytes,
        Box::new(CpuPottsSampler),
    )
}

/// [`resume`] with the sweeps on `sampler` (a checkpoint continues on any backend: it
/// holds no backend state).
pub fn resume_with_sampler(
    model_spec: &ModelSpec,
    train_spec: &TrainSpec,
    seed: u64,
    data: Dataset,
    bytes: &[u8],
    sampler: Box<dyn PottsSampler>,
) -> Result<PottsTrainer> {
    let fp = fingerprint(&data);
    let mut t = PottsTrainer::with_sampler(model_spec, train_spec, seed, data, sampler)?;
    let file = TensorReader::parse(bytes, "the checkpoint")?;
    let state: State = read_state(&file)?;
    state
        .run
        .check(&identity(model_spec, train_spec, seed, fp))?;
    let (l, q) = (t.model.sites, t.model.q);
    t.model.fields = file.finite_f32("h", Some(&[l, q]))?;
    t.model.couplings = file.finite_f32("J", Some(&[l, q, l, q]))?;
    for (i, s) in t.opt_h.iter_mut().enumerate() {
        *s = file.finite_f32(&format!("opt.h.{i}"), Some(&[l, q]))?;
    }
    for (i, s) in t.opt_j.iter_mut().enumerate() {
        *s = file.finite_f32(&format!("opt.J.{i}"), Some(&[l, q, l, q]))?;
    }
    let chains = file.finite_f32("chains", Some(&[t.chains.len() / l, l]))?;
    if chains
        .iter()
        .any(|&s| !(s >= 0.0 && (s as usize) < q && s.fract() == 0.0))
    {
        return Err(EngineError::invalid(
            "the checkpoint's chains hold states outside 0..q",
        ));
    }
    t.chains = chains.iter().map(|&s| s as u8).collect();
    t.epoch = state.epoch;
    t.updates = state.updates;
    t.rng_sweep.step = state.rng_sweep;
    t.rng_swap.step = state.rng_swap;
    state.tempering.restore(t.tempering.as_mut())?;
    t.sampler.parameters_changed();
    Ok(t)
}
