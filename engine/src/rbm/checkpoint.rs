//! RBM checkpoints: everything needed to continue training exactly (parameters,
//! optimizer state, persistent chains, centering offsets, RNG counters, the position in
//! the epoch), as a safetensors file whose metadata `state` is JSON.

use super::trainer::RbmTrainer;
use crate::backend::cpu::CpuMatrix;
use crate::backend::Backend;
use crate::error::{EngineError, Result};
use crate::spec::{ModelSpec, TrainSpec};
use crate::tensors::{TensorReader, TensorWriter};
use serde::{Deserialize, Serialize};

const FORMAT: &str = "ebm-rbm-checkpoint/1";

#[derive(Serialize, Deserialize)]
struct State {
    format: String,
    model_spec: ModelSpec,
    train_spec: TrainSpec,
    seed: u64,
    data_fingerprint: u64,
    epoch: usize,
    batch_in_epoch: usize,
    updates: u64,
    rng_hidden: u64,
    rng_visible: u64,
    rng_swap: u64,
    pt_attempted: Vec<u64>,
    pt_accepted: Vec<u64>,
    pt_rounds: u64,
}

pub(super) fn save<B: Backend>(t: &RbmTrainer<B>) -> Result<Vec<u8>> {
    let be = &t.backend;
    let mut out = TensorWriter::new();
    let mut put = |name: &str, m: &B::Matrix| -> Result<()> {
        let (r, c) = be.shape(m);
        out.add(name, &[r, c], &be.download(m)?)
    };
    put("W", &t.params.w)?;
    put("b", &t.params.b)?;
    put("c", &t.params.c)?;
    if let Some(s) = &t.params.sigma {
        put("sigma", s)?;
    }
    for (tensor, states) in ["W", "b", "c"].iter().zip(&t.opt_state) {
        for (i, s) in states.iter().enumerate() {
            put(&format!("opt.{tensor}.{i}"), s)?;
        }
    }
    for (r, set) in t.chains.iter().enumerate() {
        put(&format!("chains.{r}.v"), &set.v)?;
        put(&format!("chains.{r}.hs"), &set.hs)?;
    }
    if let Some((mu, lambda)) = &t.offsets {
        put("offset.mu", mu)?;
        put("offset.lambda", lambda)?;
    }
    if let Some(learned) = &t.sigma {
        out.add("log_sigma", &[1, t.visible], &learned.log_sigma.data)?;
        for (i, s) in learned.state.iter().enumerate() {
            out.add(&format!("opt.log_sigma.{i}"), &[1, t.visible], &s.data)?;
        }
    }
    let pt = t.tempering.as_ref();
    let state = State {
        format: FORMAT.into(),
        model_spec: t.model_spec.clone(),
        train_spec: t.train_spec.clone(),
        seed: t.seed,
        data_fingerprint: t.data_fingerprint,
        epoch: t.epoch,
        batch_in_epoch: t.batch_in_epoch,
        updates: t.updates,
        rng_hidden: t.rng_hidden.step,
        rng_visible: t.rng_visible.step,
        rng_swap: t.rng_swap.step,
        pt_attempted: pt.map(|p| p.attempted.clone()).unwrap_or_default(),
        pt_accepted: pt.map(|p| p.accepted.clone()).unwrap_or_default(),
        pt_rounds: pt.map_or(0, |p| p.rounds),
    };
    let json = serde_json::to_string(&state)
        .map_err(|e| EngineError::Internal(format!("checkpoint state: {e}")))?;
    out.meta("state", json);
    out.meta("type", t.model_spec.model_type.clone());
    out.to_bytes()
}

/// Loads a checkpoint into a trainer freshly built from the same spec, seed and data.
pub(crate) fn restore<B: Backend>(t: &mut RbmTrainer<B>, bytes: &[u8]) -> Result<()> {
    let file = TensorReader::parse(bytes, "the checkpoint")?;
    let state: State = serde_json::from_str(file.meta("state").unwrap_or(""))
        .map_err(|e| EngineError::invalid(format!("the checkpoint has no readable state: {e}")))?;
    if state.format != FORMAT {
        return Err(EngineError::invalid(format!(
            "checkpoint format {:?} is not {FORMAT:?}",
            state.format
        )));
    }
    if state.model_spec != t.model_spec || state.train_spec != t.train_spec || state.seed != t.seed
    {
        return Err(EngineError::invalid(
            "the checkpoint was made for a different model spec, train spec or seed",
        ));
    }
    if state.data_fingerprint != t.data_fingerprint {
        return Err(EngineError::invalid(
            "the checkpoint was made on a different data set",
        ));
    }
    if state.epoch > t.settings.epochs {
        return Err(EngineError::invalid(
            "the checkpoint is past the last epoch",
        ));
    }
    let be = &t.backend;
    let load = |name: &str, m: &mut B::Matrix| -> Result<()> {
        let (r, c) = be.shape(m);
        *m = be.upload(r, c, &file.f32(name, Some(&[r, c]))?)?;
        Ok(())
    };
    load("W", &mut t.params.w)?;
    load("b", &mut t.params.b)?;
    load("c", &mut t.params.c)?;
    if let Some(s) = t.params.sigma.as_mut() {
        load("sigma", s)?;
    }
    for (tensor, states) in ["W", "b", "c"].iter().zip(t.opt_state.iter_mut()) {
        for (i, s) in states.iter_mut().enumerate() {
            load(&format!("opt.{tensor}.{i}"), s)?;
        }
    }
    for (r, set) in t.chains.iter_mut().enumerate() {
        load(&format!("chains.{r}.v"), &mut set.v)?;
        load(&format!("chains.{r}.hs"), &mut set.hs)?;
    }
    if let Some((mu, lambda)) = t.offsets.as_mut() {
        load("offset.mu", mu)?;
        load("offset.lambda", lambda)?;
    }
    if let Some(learned) = t.sigma.as_mut() {
        let nv = t.visible;
        learned.log_sigma = CpuMatrix {
            rows: 1,
            cols: nv,
            data: file.f32("log_sigma", Some(&[1, nv]))?,
        };
        for (i, s) in learned.state.iter_mut().enumerate() {
            *s = CpuMatrix {
                rows: 1,
                cols: nv,
                data: file.f32(&format!("opt.log_sigma.{i}"), Some(&[1, nv]))?,
            };
        }
    }
    if let Some(pt) = t.tempering.as_mut() {
        if state.pt_attempted.len() != pt.attempted.len()
            || state.pt_accepted.len() != pt.accepted.len()
        {
            return Err(EngineError::invalid(
                "the checkpoint's tempering ladder does not match the spec",
            ));
        }
        pt.attempted = state.pt_attempted;
        pt.accepted = state.pt_accepted;
        pt.rounds = state.pt_rounds;
    }
    t.epoch = state.epoch;
    t.batch_in_epoch = state.batch_in_epoch;
    t.updates = state.updates;
    t.rng_hidden.step = state.rng_hidden;
    t.rng_visible.step = state.rng_visible;
    t.rng_swap.step = state.rng_swap;
    Ok(())
}
