//! Reading and writing named f32 tensors plus string metadata as safetensors: the format
//! of model files and of checkpoints. Every read checks names, shapes, dtype and (for
//! parameters) finiteness, and reports problems as `InvalidInput`.

use crate::error::{EngineError, Result};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use std::collections::{BTreeMap, HashMap};

/// Tensors to be written, in insertion order (the file sorts them by name).
#[derive(Default)]
pub struct TensorWriter {
    tensors: Vec<(String, Vec<usize>, Vec<u8>)>,
    metadata: HashMap<String, String>,
}

impl TensorWriter {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn add(&mut self, name: &str, shape: &[usize], values: &[f32]) -> Result<()> {
        let n: usize = shape.iter().product();
        if n != values.len() {
            return Err(EngineError::Internal(format!(
                "tensor {name}: {} values for shape {shape:?}",
                values.len()
            )));
        }
        let bytes = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.tensors.push((name.to_string(), shape.to_vec(), bytes));
        Ok(())
    }

    pub fn meta(&mut self, key: &str, value: impl Into<String>) {
        self.metadata.insert(key.to_string(), value.into());
    }

    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let views = self
            .tensors
            .iter()
            .map(|(name, shape, bytes)| {
                TensorView::new(Dtype::F32, shape.clone(), bytes)
                    .map(|v| (name.clone(), v))
                    .map_err(|e| EngineError::Internal(format!("tensor {name}: {e}")))
            })
            .collect::<Result<Vec<_>>>()?;
        safetensors::serialize(views, Some(self.metadata.clone()))
            .map_err(|e| EngineError::Internal(format!("writing safetensors: {e}")))
    }
}

/// A parsed safetensors file.
pub struct TensorReader<'a> {
    file: SafeTensors<'a>,
    metadata: BTreeMap<String, String>,
}

impl<'a> TensorReader<'a> {
    pub fn parse(bytes: &'a [u8], what: &str) -> Result<Self> {
        let (_, header) = SafeTensors::read_metadata(bytes).map_err(|e| {
            EngineError::invalid(format!("{what} is not a valid safetensors file: {e}"))
        })?;
        let metadata = header
            .metadata()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect();
        let file = SafeTensors::deserialize(bytes).map_err(|e| {
            EngineError::invalid(format!("{what} is not a valid safetensors file: {e}"))
        })?;
        Ok(TensorReader { file, metadata })
    }

    pub fn metadata(&self) -> &BTreeMap<String, String> {
        &self.metadata
    }

    pub fn meta(&self, key: &str) -> Option<&str> {
        self.metadata.get(key).map(String::as_str)
    }

    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.file.names().into_iter().map(String::from).collect();
        names.sort();
        names
    }

    pub fn has(&self, name: &str) -> bool {
        self.file.tensor(name).is_ok()
    }

    pub fn shape(&self, name: &str) -> Option<Vec<usize>> {
        self.file.tensor(name).ok().map(|t| t.shape().to_vec())
    }

    /// The tensor `name` as f32 values; `shape` (if given) must match exactly.
    pub fn f32(&self, name: &str, shape: Option<&[usize]>) -> Result<Vec<f32>> {
        let t = self
            .file
            .tensor(name)
            .map_err(|_| EngineError::invalid(format!("tensor {name:?} is missing")))?;
        if t.dtype() != Dtype::F32 {
            return Err(EngineError::invalid(format!(
                "tensor {name:?} has dtype {:?}; model files store float32",
                t.dtype()
            )));
        }
        if let Some(shape) = shape {
            if t.shape() != shape {
                return Err(EngineError::invalid(format!(
                    "tensor {name:?} has shape {:?}, expected {shape:?}",
                    t.shape()
                )));
            }
        }
        Ok(t.data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect())
    }

    /// Like `f32`, and every value must be finite.
    pub fn finite_f32(&self, name: &str, shape: Option<&[usize]>) -> Result<Vec<f32>> {
        let values = self.f32(name, shape)?;
        if let Some(i) = values.iter().position(|v| !v.is_finite()) {
            return Err(EngineError::invalid(format!(
                "tensor {name:?} holds a non-finite value ({}) at flat index {i}",
                values[i]
            )));
        }
        Ok(values)
    }
}
