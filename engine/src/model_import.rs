//! Model files from elsewhere (NumPy, PyTorch) arrive in the dtype they were made in. Model
//! files store float32 (DESIGN.md), so an import converts float64, float16 and bfloat16
//! tensors to float32 once, says so in the model's metadata (`import_notes`), and refuses
//! non-finite values naming the tensor and the index. A file that is already float32 is kept
//! byte for byte.

use crate::error::{EngineError, Result};
use crate::model_file::{inspect_model_as, ModelInfo};
use crate::tensors::TensorWriter;
use safetensors::tensor::Dtype;
use safetensors::SafeTensors;

/// The metadata key that records what the import changed.
pub const IMPORT_NOTES_KEY: &str = "import_notes";

/// A model file ready to store: float32 throughout, validated, and described.
#[derive(Debug)]
pub struct ImportedModel {
    pub bytes: Vec<u8>,
    pub info: ModelInfo,
    /// One line per converted tensor (empty when the file was float32 already).
    pub notes: Vec<String>,
}

/// Converts `bytes` (a safetensors file) to float32 where needed and validates it as a
/// model of `expected_type` (empty: the file's own `type` metadata).
pub fn import_model(bytes: Vec<u8>, expected_type: &str) -> Result<ImportedModel> {
    let (bytes, notes) = to_float32(bytes)?;
    let info = inspect_model_as(&bytes, expected_type)?;
    Ok(ImportedModel { bytes, info, notes })
}

fn invalid_file(e: impl std::fmt::Display) -> EngineError {
    EngineError::invalid(format!(
        "the model file is not a valid safetensors file: {e}"
    ))
}

/// The file with every tensor as finite float32, and a note per converted tensor.
fn to_float32(bytes: Vec<u8>) -> Result<(Vec<u8>, Vec<String>)> {
    let (_, header) = SafeTensors::read_metadata(&bytes).map_err(invalid_file)?;
    let file = SafeTensors::deserialize(&bytes).map_err(invalid_file)?;
    let mut names: Vec<String> = file.names().into_iter().map(String::from).collect();
    names.sort();
    let mut converted = Vec::new();
    let mut notes = Vec::new();
    for name in &names {
        let tensor = file.tensor(name).map_err(invalid_file)?;
        let data = tensor.data();
        let shape = tensor.shape();
        let (values, change) = match tensor.dtype() {
            Dtype::F32 => (words::<4>(data).map(f32::from_le_bytes).collect(), None),
            Dtype::F64 => {
                let wide: Vec<f64> = words::<8>(data).map(f64::from_le_bytes).collect();
                check_finite(name, shape, wide.iter().copied())?;
                if let Some(at) = wide.iter().position(|v| v.abs() > f32::MAX as f64) {
                    return Err(EngineError::invalid(format!(
                        "tensor {name:?} holds {} at {}, outside float32's range (|x| <= {:e}): \
                         model files store float32",
                        wide[at],
                        index_text(at, shape),
                        f32::MAX
                    )));
                }
                let narrow: Vec<f32> = wide.iter().map(|&v| v as f32).collect();
                let largest = wide
                    .iter()
                    .zip(&narrow)
                    .map(|(&w, &n)| (w - n as f64).abs())
                    .fold(0.0, f64::max);
                (
                    narrow,
                    Some(format!("float64 (largest rounding {largest:.1e})")),
                )
            }
            Dtype::F16 => (
                words::<2>(data)
                    .map(|b| half::f16::from_le_bytes(b).to_f32())
                    .collect(),
                Some("float16 (exact)".to_string()),
            ),
            Dtype::BF16 => (
                words::<2>(data)
                    .map(|b| half::bf16::from_le_bytes(b).to_f32())
                    .collect(),
                Some("bfloat16 (exact)".to_string()),
            ),
            other => {
                return Err(EngineError::invalid(format!(
                    "tensor {name:?} has dtype {other:?}; a model's tensors must be floats \
                     (float32, float64, float16 or bfloat16; they are stored as float32)"
                )))
            }
        };
        check_finite(name, shape, values.iter().map(|&v| v as f64))?;
        if let Some(from) = change {
            notes.push(format!("{name}: converted from {from} to float32"));
        }
        converted.push((name.clone(), shape.to_vec(), values));
    }
    if notes.is_empty() {
        return Ok((bytes, notes));
    }
    let mut writer = TensorWriter::new();
    for (name, shape, values) in &converted {
        writer.add(name, shape, values)?;
    }
    for (key, value) in header.metadata().iter().flatten() {
        writer.meta(key, value.clone());
    }
    writer.meta(IMPORT_NOTES_KEY, notes.join("; "));
    Ok((writer.to_bytes()?, notes))
}

/// Little-endian words of `N` bytes (safetensors checked that the length fits the dtype).
fn words<const N: usize>(data: &[u8]) -> impl Iterator<Item = [u8; N]> + '_ {
    data.chunks_exact(N)
        .map(|c| c.try_into().expect("chunks_exact gives N bytes"))
}

fn check_finite(name: &str, shape: &[usize], values: impl Iterator<Item = f64>) -> Result<()> {
    for (at, v) in values.enumerate() {
        if !v.is_finite() {
            return Err(EngineError::invalid(format!(
                "tensor {name:?} holds a non-finite value ({v}) at {}: a model's parameters \
                 must be finite",
                index_text(at, shape)
            )));
        }
    }
    Ok(())
}

/// "index [i, j] (flat k)" of the element at flat position `flat` of a row-major `shape`.
fn index_text(flat: usize, shape: &[usize]) -> String {
    let mut rest = flat;
    let mut index = vec![0; shape.len()];
    for (slot, &extent) in index.iter_mut().zip(shape).rev() {
        *slot = rest % extent.max(1);
        rest /= extent.max(1);
    }
    let parts: Vec<String> = index.iter().map(usize::to_string).collect();
    format!("index [{}] (flat {flat})", parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rbm::file::rbm_from_bytes;
    use safetensors::tensor::TensorView;
    use std::collections::HashMap;

    /// A safetensors file with one dtype for every tensor, `encode` writing one value.
    fn file_of(
        dtype: Dtype,
        tensors: &[(&str, Vec<usize>, Vec<f64>)],
        encode: fn(f64) -> Vec<u8>,
        metadata: &[(&str, &str)],
    ) -> Vec<u8> {
        let raw: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
            .iter()
            .map(|(n, s, v)| {
                (
                    n.to_string(),
                    s.clone(),
                    v.iter().flat_map(|&x| encode(x)).collect(),
                )
            })
            .collect();
        let views: Vec<(String, TensorView<'_>)> = raw
            .iter()
            .map(|(n, s, b)| (n.clone(), TensorView::new(dtype, s.clone(), b).unwrap()))
            .collect();
        let meta: HashMap<String, String> = metadata
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        safetensors::serialize(views, Some(meta)).unwrap()
    }

    fn rbm_tensors(w: Vec<f64>) -> Vec<(&'static str, Vec<usize>, Vec<f64>)> {
        vec![
            ("W", vec![2, 3], w),
            ("b", vec![2], vec![0.5, -0.25]),
            ("c", vec![3], vec![1.0, 2.0, -3.0]),
        ]
    }

    const W: [f64; 6] = [0.1, -0.2, 0.3, 1.0 / 3.0, 1e-3, -7.0];

    #[test]
    fn float64_is_converted_rounded_once_and_noted() {
        let bytes = file_of(
            Dtype::F64,
            &rbm_tensors(W.to_vec()),
            |x| x.to_le_bytes().to_vec(),
            &[("type", "bernoulli_rbm"), ("source", "numpy")],
        );
        let imported = import_model(bytes, "bernoulli_rbm").unwrap();
        assert_eq!(imported.notes.len(), 3, "{:?}", imported.notes);
        assert!(imported.notes[0].starts_with("W: converted from float64"));
        let model = rbm_from_bytes(&imported.bytes).unwrap();
        // Each value is the nearest float32 of the float64 one (one rounding, no more).
        let expect: Vec<f32> = W.iter().map(|&x| x as f32).collect();
        assert_eq!(model.w, expect);
        let meta = &imported.info.metadata;
        assert_eq!(meta.get("source").map(String::as_str), Some("numpy"));
        assert!(meta[IMPORT_NOTES_KEY].contains("b: converted from float64 (largest rounding"));
    }

    #[test]
    fn half_precisions_convert_exactly() {
        // Values representable in both 16-bit formats, so the f32 result is exact.
        let w = vec![0.5, -1.5, 2.0, 0.125, -0.0625, 8.0];
        for (dtype, encode, label) in [
            (
                Dtype::F16,
                (|x| half::f16::from_f64(x).to_le_bytes().to_vec()) as fn(f64) -> Vec<u8>,
                "float16",
            ),
            (
                Dtype::BF16,
                |x| half::bf16::from_f64(x).to_le_bytes().to_vec(),
                "bfloat16",
            ),
        ] {
            let bytes = file_of(
                dtype,
                &rbm_tensors(w.clone()),
                encode,
                &[("type", "bernoulli_rbm")],
            );
            let imported = import_model(bytes, "").unwrap();
            let model = rbm_from_bytes(&imported.bytes).unwrap();
            let expect: Vec<f32> = w.iter().map(|&x| x as f32).collect();
            assert_eq!(model.w, expect, "{label}");
            assert!(
                imported.notes[0] == format!("W: converted from {label} (exact) to float32"),
                "{:?}",
                imported.notes
            );
        }
    }

    #[test]
    fn a_float32_file_is_kept_byte_for_byte() {
        let bytes = file_of(
            Dtype::F32,
            &rbm_tensors(W.to_vec()),
            |x| (x as f32).to_le_bytes().to_vec(),
            &[("type", "bernoulli_rbm")],
        );
        let imported = import_model(bytes.clone(), "").unwrap();
        assert!(imported.notes.is_empty());
        assert_eq!(imported.bytes, bytes);
        assert!(!imported.info.metadata.contains_key(IMPORT_NOTES_KEY));
    }

    #[test]
    fn non_finite_values_are_refused_with_the_tensor_and_index() {
        let mut w = W.to_vec();
        w[4] = f64::NAN; // [1, 1] of a [2, 3] matrix
        for (dtype, encode) in [
            (
                Dtype::F64,
                (|x: f64| x.to_le_bytes().to_vec()) as fn(f64) -> Vec<u8>,
            ),
            (Dtype::F32, |x| (x as f32).to_le_bytes().to_vec()),
            (Dtype::F16, |x| {
                half::f16::from_f64(x).to_le_bytes().to_vec()
            }),
        ] {
            let bytes = file_of(
                dtype,
                &rbm_tensors(w.clone()),
                encode,
                &[("type", "bernoulli_rbm")],
            );
            let err = import_model(bytes, "").unwrap_err().to_string();
            assert!(
                err.contains("tensor \"W\"") && err.contains("index [1, 1] (flat 4)"),
                "{dtype:?}: {err}"
            );
        }
        let mut w = W.to_vec();
        w[5] = 1e300;
        let bytes = file_of(
            Dtype::F64,
            &rbm_tensors(w),
            |x| x.to_le_bytes().to_vec(),
            &[("type", "bernoulli_rbm")],
        );
        let err = import_model(bytes, "").unwrap_err().to_string();
        assert!(
            err.contains("outside float32's range") && err.contains("index [1, 2] (flat 5)"),
            "{err}"
        );
    }

    #[test]
    fn integer_tensors_are_refused_naming_the_dtype() {
        let bytes = file_of(
            Dtype::I32,
            &rbm_tensors(W.to_vec()),
            |x| (x as i32).to_le_bytes().to_vec(),
            &[("type", "bernoulli_rbm")],
        );
        let err = import_model(bytes, "").unwrap_err().to_string();
        assert!(err.contains("tensor \"W\" has dtype I32"), "{err}");
    }

    #[test]
    fn index_text_is_row_major() {
        assert_eq!(index_text(0, &[]), "index [] (flat 0)");
        assert_eq!(index_text(7, &[2, 3, 4]), "index [0, 1, 3] (flat 7)");
        assert_eq!(index_text(23, &[2, 3, 4]), "index [1, 2, 3] (flat 23)");
    }
}
