//! From a data set to what Potts training needs: category states, unknown residues mapped
//! to gap or dropped, the validation split, sequence weights and the effective number of
//! sequences, with notes saying what was done.

use crate::data::fasta::UnknownResidues;
use crate::data::{Dataset, ValueKind};
use crate::error::{EngineError, Result};
use crate::potts::stats::sequence_weights;
use crate::potts::MAX_Q;

/// Sequences ready for training: row-major states [rows, sites] and their weights.
#[derive(Clone, Debug, PartialEq)]
pub struct Sequences {
    pub rows: usize,
    pub sites: usize,
    pub states: Vec<u8>,
    pub weights: Vec<f64>,
}

impl Sequences {
    /// Effective number of sequences, the sum of the weights.
    pub fn m_eff(&self) -> f64 {
        self.weights.iter().sum()
    }

    pub fn select(&self, rows: &[usize]) -> Sequences {
        let mut states = Vec::with_capacity(rows.len() * self.sites);
        for &r in rows {
            states.extend_from_slice(&self.states[r * self.sites..(r + 1) * self.sites]);
        }
        Sequences {
            rows: rows.len(),
            sites: self.sites,
            states,
            weights: rows.iter().map(|&r| self.weights[r]).collect(),
        }
    }
}

/// The alphabet size of a data set for a Potts model: categorical data brings its own q
/// (a `model_q` must agree); other data must hold integers 0..q, with q = `model_q` or
/// 1 + the largest value.
pub fn resolve_q(data: &Dataset, model_q: Option<u32>) -> Result<usize> {
    if let Some(q) = model_q {
        if q < 2 || q as usize > MAX_Q {
            return Err(EngineError::invalid(format!(
                "model.q must be between 2 and {MAX_Q}, not {q}"
            )));
        }
    }
    if data.kind == ValueKind::Categorical && data.q > 0 {
        if let Some(q) = model_q {
            if q != data.q {
                return Err(EngineError::invalid(format!(
                    "model.q = {q} but the data set's alphabet has q = {}: leave model.q out or set it to {}",
                    data.q, data.q
                )));
            }
        }
        return Ok(data.q as usize);
    }
    let mut largest = 0f32;
    for (i, &v) in data.values.iter().enumerate() {
        if !(v.is_finite() && v >= 0.0 && v.fract() == 0.0 && v < MAX_Q as f32) {
            return Err(EngineError::invalid(format!(
                "a Potts model needs integer states 0..q, but row {}, column {} is {v}",
                i / data.cols.max(1),
                i % data.cols.max(1)
            )));
        }
        largest = largest.max(v);
    }
    let q = model_q.map_or((largest as usize + 1).max(2), |q| q as usize);
    if largest as usize >= q {
        return Err(EngineError::invalid(format!(
            "the data hold state {largest}, outside 0..q with q = {q}: raise model.q"
        )));
    }
    Ok(q)
}

/// States of every row, unknown residues (NaN) mapped to gap (state 0) or their rows
/// dropped; returns the states, the kept row indices and notes.
pub fn states_of(
    data: &Dataset,
    q: usize,
    unknown: UnknownResidues,
) -> Result<(Vec<u8>, Vec<usize>, Vec<String>)> {
    let cols = data.cols;
    if cols < 2 {
        return Err(EngineError::invalid(
            "a Potts model needs at least 2 columns (sites)",
        ));
    }
    let mut states = Vec::with_capacity(data.values.len());
    let mut kept = Vec::with_capacity(data.rows);
    let (mut unknown_cells, mut unknown_rows) = (0usize, 0usize);
    for r in 0..data.rows {
        let row = data.row(r);
        let unknowns = row.iter().filter(|v| v.is_nan()).count();
        if unknowns > 0 {
            unknown_cells += unknowns;
            unknown_rows += 1;
            if unknown == UnknownResidues::Drop {
                continue;
            }
        }
        for (c, &v) in row.iter().enumerate() {
            if v.is_nan() {
                states.push(0);
            } else if v >= 0.0 && v.fract() == 0.0 && (v as usize) < q {
                states.push(v as u8);
            } else {
                return Err(EngineError::invalid(format!(
                    "row {r}, column {c} holds {v}, not a state in 0..{q}"
                )));
            }
        }
        kept.push(r);
    }
    let mut notes = Vec::new();
    if unknown_cells > 0 {
        notes.push(match unknown {
            UnknownResidues::Gap => format!(
                "{unknown_cells} unknown residues in {unknown_rows} sequences mapped to gap"
            ),
            UnknownResidues::Drop => format!(
                "{unknown_rows} sequences with unknown residues dropped ({unknown_cells} residues)"
            ),
        });
    }
    if kept.is_empty() {
        return Err(EngineError::invalid(
            "no sequences left after dropping those with unknown residues: use unknown_residues = \"gap\"",
        ));
    }
    Ok((states, kept, notes))
}

/// Weights each sequence by 1 / (number of sequences within `identity`), or 1 when
/// `identity` is 0.
pub fn weigh(states: Vec<u8>, rows: usize, sites: usize, identity: f64) -> Result<Sequences> {
    if !(identity.is_finite() && (0.0..=1.0).contains(&identity)) {
        return Err(EngineError::invalid(format!(
            "model.reweight_identity must lie in [0, 1] (0 switches reweighting off), not {identity}"
        )));
    }
    let weights = sequence_weights(&states, rows, sites, identity);
    Ok(Sequences {
        rows,
        sites,
        states,
        weights,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn categorical(rows: usize, cols: usize, values: Vec<f32>, q: u32) -> Dataset {
        Dataset {
            rows,
            cols,
            values,
            kind: ValueKind::Categorical,
            q,
            notes: vec![],
        }
    }

    #[test]
    fn unknown_residues_map_to_gap_or_drop_the_row() {
        let d = categorical(3, 2, vec![1.0, f32::NAN, 2.0, 3.0, f32::NAN, f32::NAN], 21);
        let (s, kept, notes) = states_of(&d, 21, UnknownResidues::Gap).unwrap();
        assert_eq!((s, kept), (vec![1, 0, 2, 3, 0, 0], vec![0, 1, 2]));
        assert!(
            notes[0].contains("3 unknown residues in 2 sequences"),
            "{notes:?}"
        );
        let (s, kept, notes) = states_of(&d, 21, UnknownResidues::Drop).unwrap();
        assert_eq!((s, kept), (vec![2, 3], vec![1]));
        assert!(notes[0].contains("2 sequences"), "{notes:?}");
        let all_unknown = categorical(1, 2, vec![f32::NAN, 1.0], 21);
        assert!(states_of(&all_unknown, 21, UnknownResidues::Drop).is_err());
    }

    #[test]
    fn q_comes_from_the_data_or_the_spec() {
        let d = categorical(1, 2, vec![0.0, 1.0], 21);
        assert_eq!(resolve_q(&d, None).unwrap(), 21);
        assert!(resolve_q(&d, Some(5)).is_err());
        assert!(resolve_q(&d, Some(1)).is_err());
        let binary = Dataset {
            kind: ValueKind::Binary,
            q: 0,
            ..d.clone()
        };
        assert_eq!(resolve_q(&binary, None).unwrap(), 2);
        assert_eq!(resolve_q(&binary, Some(3)).unwrap(), 3);
        let real = Dataset {
            kind: ValueKind::Real,
            q: 0,
            values: vec![0.0, 2.5],
            ..d.clone()
        };
        assert!(resolve_q(&real, None).is_err());
        let ints = Dataset {
            kind: ValueKind::Real,
            q: 0,
            values: vec![0.0, 4.0],
            ..d
        };
        assert_eq!(resolve_q(&ints, None).unwrap(), 5);
        assert!(resolve_q(&ints, Some(3)).is_err());
    }

    #[test]
    fn weighing_checks_the_threshold() {
        assert!(weigh(vec![0, 1], 1, 2, 1.5).is_err());
        let s = weigh(vec![0, 1, 0, 1], 2, 2, 0.8).unwrap();
        assert_eq!(s.m_eff(), 1.0);
    }
}
