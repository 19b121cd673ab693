//! Potts checkpoints: parameters, optimizer state, every chain (all replicas), the RNG
//! counters and the tempering statistics, as safetensors with a JSON `state` entry in the
//! metadata. Resuming rebuilds the data statistics from the same data and spec (checked by
//! fingerprint) and continues exactly: 10 epochs straight equal 5 + resume + 5.

use super::trainer::{fingerprint, PottsTrainer};
use crate::data::Dataset;
use crate::error::{EngineError, Result};
use crate::spec::{ModelSpec, TrainSpec};
use crate::tensors::{TensorReader, TensorWriter};
use serde::{Deserialize, Serialize};

const FORMAT: &str = "ebm-potts-checkpoint/1";

#[derive(Serialize, Deserialize)]
struct State {
    format: String,
    model_spec: ModelSpec,
    train_spec: TrainSpec,
    seed: u64,
    data_fingerprint: u64,
    epoch: usize,
    updates: u64,
    rng_sweep: u64,
    rng_swap: u64,
    pt_attempted: Vec<u64>,
    pt_accepted: Vec<u64>,
    pt_rounds: u64,
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
    let pt = t.tempering.as_ref();
    let state = State {
        format: FORMAT.into(),
        model_spec: t.model_spec.clone(),
        train_spec: t.train_spec.clone(),
        seed: t.seed,
        data_fingerprint: t.data_fingerprint,
        epoch: t.epoch,
        updates: t.updates,
        rng_sweep: t.rng_sweep.step,
        rng_swap: t.rng_swap.step,
        pt_attempted: pt.map(|p| p.attempted.clone()).unwrap_or_default(),
        pt_accepted: pt.map(|p| p.accepted.clone()).unwrap_or_default(),
        pt_rounds: pt.map_or(0, |p| p.rounds),
    };
    out.meta("type", "potts-checkpoint");
    out.meta(
        "state",
        serde_json::to_string(&state)
            .map_err(|e| EngineError::Internal(format!("checkpoint state: {e}")))?,
    );
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
    let fp = fingerprint(&data);
    let mut t = PottsTrainer::new(model_spec, train_spec, seed, data)?;
    let file = TensorReader::parse(bytes, "the checkpoint")?;
    let state: State = serde_json::from_str(file.meta("state").unwrap_or("")).map_err(|e| {
        EngineError::invalid(format!("the checkpoint has no readable Potts state: {e}"))
    })?;
    if state.format != FORMAT {
        return Err(EngineError::invalid(format!(
            "checkpoint format {:?} is not {FORMAT}",
            state.format
        )));
    }
    if state.seed != seed
        || state.data_fingerprint != fp
        || &state.model_spec != model_spec
        || &state.train_spec != train_spec
    {
        return Err(EngineError::invalid(
            "the checkpoint belongs to a different spec, seed or data set; start a new job instead",
        ));
    }
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
    if let Some(pt) = t.tempering.as_mut() {
        if state.pt_attempted.len() != pt.attempted.len()
            || state.pt_accepted.len() != pt.accepted.len()
        {
            return Err(EngineError::invalid(
                "the checkpoint's tempering ladder differs from the spec",
            ));
        }
        pt.attempted = state.pt_attempted;
        pt.accepted = state.pt_accepted;
        pt.rounds = state.pt_rounds;
    }
    Ok(t)
}
