//! A downloaded Bernoulli RBM, read from its safetensors file (`W` [visible, hidden], `b`
//! [visible], `c` [hidden], float32), with the few mean-field operations the CLI uses to show
//! what a model learned: reconstructing an input and completing a partly hidden one.
use crate::error::{ClientError, Result};
use safetensors::{Dtype, SafeTensors};
use std::collections::HashMap;

pub struct Rbm {
    pub visible: usize,
    pub hidden: usize,
    /// Row-major [visible, hidden].
    pub w: Vec<f32>,
    pub b: Vec<f32>,
    pub c: Vec<f32>,
    /// The file's `__metadata__`.
    pub metadata: HashMap<String, String>,
}

fn bad(why: impl Into<String>) -> ClientError {
    ClientError::Invalid(format!("not a Bernoulli RBM model file: {}", why.into()))
}

fn tensor(file: &SafeTensors, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
    let view = file
        .tensor(name)
        .map_err(|_| bad(format!("no tensor {name}")))?;
    if view.dtype() != Dtype::F32 || view.shape() != shape {
        return Err(bad(format!(
            "tensor {name} is {:?} {:?}, expected F32 {shape:?}",
            view.dtype(),
            view.shape()
        )));
    }
    Ok(view
        .data()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

impl Rbm {
    pub fn from_safetensors(bytes: &[u8]) -> Result<Rbm> {
        let (_, header) = SafeTensors::read_metadata(bytes).map_err(|e| bad(e.to_string()))?;
        let metadata = header.metadata().clone().unwrap_or_default();
        let file = SafeTensors::deserialize(bytes).map_err(|e| bad(e.to_string()))?;
        let shape = file
            .tensor("W")
            .map_err(|_| bad("no tensor W"))?
            .shape()
            .to_vec();
        let [visible, hidden] = shape[..] else {
            return Err(bad(format!(
                "W has shape {shape:?}, expected [visible, hidden]"
            )));
        };
        Ok(Rbm {
            visible,
            hidden,
            w: tensor(&file, "W", &[visible, hidden])?,
            b: tensor(&file, "b", &[visible])?,
            c: tensor(&file, "c", &[hidden])?,
            metadata,
        })
    }

    /// p(h_j = 1 | v) for every hidden unit.
    pub fn hidden_probs(&self, v: &[f32]) -> Vec<f32> {
        let mut pre = self.c.clone();
        for (i, &vi) in v.iter().enumerate() {
            if vi != 0.0 {
                let row = &self.w[i * self.hidden..(i + 1) * self.hidden];
                pre.iter_mut().zip(row).for_each(|(p, w)| *p += vi * w);
            }
        }
        pre.into_iter().map(sigmoid).collect()
    }

    /// p(v_i = 1 | h) for every visible unit.
    pub fn visible_probs(&self, h: &[f32]) -> Vec<f32> {
        (0..self.visible)
            .map(|i| {
                let row = &self.w[i * self.hidden..(i + 1) * self.hidden];
                sigmoid(self.b[i] + row.iter().zip(h).map(|(w, h)| w * h).sum::<f32>())
            })
            .collect()
    }

    /// Mean-field reconstruction: p(v | h = p(h | v)).
    pub fn reconstruct(&self, v: &[f32]) -> Vec<f32> {
        self.visible_probs(&self.hidden_probs(v))
    }

    /// Fills in the units where `known` is false, keeping the others clamped, by iterating the
    /// mean-field updates from the visible biases.
    pub fn complete(&self, v: &[f32], known: &[bool], iterations: usize) -> Vec<f32> {
        let mut state: Vec<f32> = (0..self.visible)
            .map(|i| if known[i] { v[i] } else { sigmoid(self.b[i]) })
            .collect();
        for _ in 0..iterations {
            let p = self.reconstruct(&state);
            for i in 0..self.visible {
                if !known[i] {
                    state[i] = p[i];
                }
            }
        }
        state
    }
}

/// Mean squared difference between rows and their reconstructions.
pub fn reconstruction_error(reconstruct: impl Fn(&[f32]) -> Vec<f32>, rows: &[&[f32]]) -> f64 {
    let mut total = 0.0f64;
    let mut count = 0usize;
    for row in rows {
        let r = reconstruct(row);
        total += row
            .iter()
            .zip(&r)
            .map(|(a, b)| f64::from(a - b).powi(2))
            .sum::<f64>();
        count += row.len();
    }
    total / count.max(1) as f64
}
