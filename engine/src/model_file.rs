//! Model files: safetensors, float32, with the tensor names of DESIGN.md, and the
//! model type plus anything useful in the header's `__metadata__`. `inspect_model`
//! validates an uploaded file (names, shapes, finite values) for ImportModel; each family
//! reads its own tensors ([`Family::describe_file`], in `rbm/file.rs`, `potts/file.rs`,
//! `lattice/file.rs`), so nothing here knows a family's format.

use crate::error::{EngineError, Result};
use crate::registry::family;
use crate::spec::ModelType;
use crate::tensors::TensorReader;
use std::collections::BTreeMap;

// The RBM file functions, where callers outside the engine have always found them.
pub use crate::rbm::file::{rbm_from_bytes, rbm_to_bytes};

/// What a model file holds, for listings.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelInfo {
    pub model_type: String,
    pub dims: BTreeMap<String, u64>,
    pub metadata: BTreeMap<String, String>,
}

/// Validates a model file and describes it. `expected_type` (if not empty) must match the
/// file's `type` metadata; a file without `type` metadata takes `expected_type`.
pub fn inspect_model_as(bytes: &[u8], expected_type: &str) -> Result<ModelInfo> {
    let file = TensorReader::parse(bytes, "the model file")?;
    let declared = file.meta("type").unwrap_or("");
    let name = match (declared, expected_type.trim()) {
        ("", "") => {
            return Err(EngineError::invalid(
                "the model file has no \"type\" metadata: say which model type it is",
            ))
        }
        (d, "") => d.to_string(),
        ("", e) => e.to_string(),
        (d, e) if d == e => d.to_string(),
        (d, e) => {
            return Err(EngineError::invalid(format!(
                "the model file says type {d:?} but {e:?} was given"
            )))
        }
    };
    let model_type = ModelType::from_name(&name)?;
    let dims = family(model_type).describe_file(model_type, &file)?;
    let mut metadata = file.metadata().clone();
    metadata.insert("type".into(), name.clone());
    Ok(ModelInfo {
        model_type: name,
        dims,
        metadata,
    })
}

/// Validates a model file that names its own type (as files from training do).
pub fn inspect_model(bytes: &[u8]) -> Result<ModelInfo> {
    inspect_model_as(bytes, "")
}
