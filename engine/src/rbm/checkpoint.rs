//! RBM checkpoints: everything needed to continue training exactly (parameters,
//! optimizer state, persistent chains, centering offsets, RNG counters, the position in
//! the epoch), as a safetensors file whose metadata `state` is JSON.

use super::trainer::RbmTrainer;
use crate::backend::cpu::CpuMatrix;
use crate::backend::Backend;
use crate::error::{EngineError, Result};
use crate::tensors::{TensorReader, TensorWriter};
use crate::training::checkpoint::{read_state, write_state, RunIdentity, TemperingCounters};
use serde::{Deserialize, Serialize};

const FORMAT: &str = "ebm-rbm-checkpoint/1";

#[derive(Serialize, Deserialize)]
struct State {
    #[serde(flatten)]
    run: RunIdentity,
    epoch: usize,
    batch_in_epoch: usize,
    updates: u64,
    rng_hidden: u64,
    rng_visible: u64,
    rng_swap: u64,
    #[serde(flatten)]
    tempering: TemperingCounters,
}

fn identity<B: Backend>(t: &RbmTrainer<B>) -> RunIdentity {
    RunIdentity {
        format: FORMAT.into(),
        model_spec: t.model_spec.clone(),
        train_spec: t.train_spec.clone(),
        seed: t.seed,
        data_fingerprint: t.data_fingerprint,
    }
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
    let state = State {
        run: identity(t),
        epoch: t.epoch,
        batch_in_epoch: t.batch_in_epoch,
        updates: t.updates,
        rng_hidden: t.rng_hidden.step,
        rng_visible: t.rng_visible.step,
        rng_swap: t.rng_swap.step,
        tempering: TemperingCounters::of(t.tempering.as_ref()),
    };
    write_state(&mut out, &t.model_spec.model_type, &state)?;
    out.to_bytes()
}

/// Loads a checkpoint into a trainer freshly built from the same spec, seed and data.
pub(crate) fn restore<B: Backend>(t: &mut RbmTrainer<B>, bytes: &[u8]) -> Result<()> {
    let file = TensorReader::parse(bytes, "the checkpoint")?;
    let state: State = read_state(&file)?;
    state.run.check(&identity(t))?;
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
    state.tempering.restore(t.tempering.as_mut())?;
    t.epoch = state.epoch;
    t.batch_in_epoch = state.batch_in_epoch;
    t.updates = state.updates;
    t.rng_hidden.step = state.rng_hidden;
    t.rng_visible.step = state.rng_visible;
    t.rng_swap.step = state.rng_swap;
    Ok(())
}
