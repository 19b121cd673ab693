//! The parts of a checkpoint every family writes the same way: what identifies the
//! training run (format, model and train spec, seed, fingerprint of the data), checked on
//! resume, and the counters of parallel tempering. A family's checkpoint state embeds both
//! with `#[serde(flatten)]`, so its JSON keeps one flat object.

use crate::data::Dataset;
use crate::error::{EngineError, Result};
use crate::spec::{ModelSpec, TrainSpec};
use crate::tempering::ParallelTempering;
use crate::tensors::{TensorReader, TensorWriter};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// What a checkpoint must share with the trainer that resumes it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct RunIdentity {
    pub format: String,
    pub model_spec: ModelSpec,
    pub train_spec: TrainSpec,
    pub seed: u64,
    pub data_fingerprint: u64,
}

impl RunIdentity {
    /// Refuses a checkpoint (`self`) made by another kind of trainer or for another spec,
    /// seed or data set than `expected`, saying which.
    pub fn check(&self, expected: &RunIdentity) -> Result<()> {
        if self.format != expected.format {
            return Err(EngineError::invalid(format!(
                "checkpoint format {:?} is not {:?}",
                self.format, expected.format
            )));
        }
        if self.model_spec != expected.model_spec
            || self.train_spec != expected.train_spec
            || self.seed != expected.seed
        {
            return Err(EngineError::invalid(
                "the checkpoint was made for a different model spec, train spec or seed; \
                 start a new job instead",
            ));
        }
        if self.data_fingerprint != expected.data_fingerprint {
            return Err(EngineError::invalid(
                "the checkpoint was made on a different data set; start a new job instead",
            ));
        }
        Ok(())
    }
}

/// The checkpoint state of a full-batch sweep trainer (potts, lattice): the run, where it
/// is, and the counters of its two random streams (sweeps, tempering swaps).
#[derive(Serialize, Deserialize)]
pub(crate) struct SweepTrainerState {
    #[serde(flatten)]
    pub run: RunIdentity,
    pub epoch: usize,
    pub updates: u64,
    pub rng_sweep: u64,
    pub rng_swap: u64,
    #[serde(flatten)]
    pub tempering: TemperingCounters,
}

/// Swap statistics of parallel tempering (empty without a ladder).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct TemperingCounters {
    pub pt_attempted: Vec<u64>,
    pub pt_accepted: Vec<u64>,
    pub pt_rounds: u64,
}

impl TemperingCounters {
    pub fn of(pt: Option<&ParallelTempering>) -> Self {
        pt.map_or_else(TemperingCounters::default, |p| TemperingCounters {
            pt_attempted: p.attempted.clone(),
            pt_accepted: p.accepted.clone(),
            pt_rounds: p.rounds,
        })
    }

    /// Puts the counters back into the trainer's ladder, which must have as many pairs.
    pub fn restore(self, pt: Option<&mut ParallelTempering>) -> Result<()> {
        let Some(pt) = pt else { return Ok(()) };
        if self.pt_attempted.len() != pt.attempted.len()
            || self.pt_accepted.len() != pt.accepted.len()
        {
            return Err(EngineError::invalid(
                "the checkpoint's tempering ladder does not match the spec",
            ));
        }
        pt.attempted = self.pt_attempted;
        pt.accepted = self.pt_accepted;
        pt.rounds = self.pt_rounds;
        Ok(())
    }
}

/// Stores a family's checkpoint state as JSON in the metadata (`state`), with `type`.
pub(crate) fn write_state<S: Serialize>(
    out: &mut TensorWriter,
    kind: &str,
    state: &S,
) -> Result<()> {
    let json = serde_json::to_string(state)
        .map_err(|e| EngineError::Internal(format!("checkpoint state: {e}")))?;
    out.meta("state", json);
    out.meta("type", kind);
    Ok(())
}

/// Reads back what [`write_state`] stored.
pub(crate) fn read_state<S: DeserializeOwned>(file: &TensorReader) -> Result<S> {
    serde_json::from_str(file.meta("state").unwrap_or(""))
        .map_err(|e| EngineError::invalid(format!("the checkpoint has no readable state: {e}")))
}

/// FNV-1a over the shape and the value bits of a data set: a checkpoint is resumed only
/// on the data it was made on.
pub(crate) fn fingerprint(data: &Dataset) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |x: u64| {
        h ^= x;
        h = h.wrapping_mul(0x0100_0000_01b3);
    };
    eat(data.rows as u64);
    eat(data.cols as u64);
    for v in &data.values {
        eat(v.to_bits() as u64);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity() -> RunIdentity {
        RunIdentity {
            format: "ebm-test-checkpoint/1".into(),
            model_spec: ModelSpec::default(),
            train_spec: TrainSpec::default(),
            seed: 3,
            data_fingerprint: u64::MAX - 1,
        }
    }

    /// The flattened state is one flat JSON object (the format the families always wrote),
    /// and reads back; other seeds, formats and data are refused.
    #[test]
    fn identity_round_trips_flat_and_is_checked() {
        #[derive(Serialize, Deserialize)]
        struct State {
            #[serde(flatten)]
            run: RunIdentity,
            epoch: usize,
            #[serde(flatten)]
            tempering: TemperingCounters,
        }
        let mut pt = ParallelTempering::new(vec![0.5, 1.0]);
        pt.attempted = vec![7];
        pt.accepted = vec![2];
        pt.rounds = 7;
        let state = State {
            run: identity(),
            epoch: 4,
            tempering: TemperingCounters::of(Some(&pt)),
        };
        let json: serde_json::Value = serde_json::to_value(&state).unwrap();
        for key in ["format", "seed", "data_fingerprint", "epoch", "pt_rounds"] {
            assert!(json.get(key).is_some(), "{key} at the top level: {json}");
        }
        let mut out = TensorWriter::new();
        out.add("x", &[1], &[0.0]).unwrap();
        write_state(&mut out, "test-checkpoint", &state).unwrap();
        let bytes = out.to_bytes().unwrap();
        let file = TensorReader::parse(&bytes, "test").unwrap();
        let back: State = read_state(&file).unwrap();
        assert_eq!((back.run.clone(), back.epoch), (identity(), 4));
        back.run.check(&identity()).unwrap();
        let mut fresh = ParallelTempering::new(vec![0.5, 1.0]);
        back.tempering.clone().restore(Some(&mut fresh)).unwrap();
        assert_eq!(fresh, pt);
        let mut three = ParallelTempering::new(vec![0.2, 0.5, 1.0]);
        assert!(back.tempering.restore(Some(&mut three)).is_err());
        for other in [
            RunIdentity {
                seed: 4,
                ..identity()
            },
            RunIdentity {
                format: "x".into(),
                ..identity()
            },
            RunIdentity {
                data_fingerprint: 1,
                ..identity()
            },
        ] {
            assert!(matches!(
                other.check(&identity()),
                Err(EngineError::InvalidInput(_))
            ));
        }
    }
}
