//! Potts model files: safetensors with `J` [L, q, L, q] and `h` [L, q] (float32), metadata
//! `type` = "potts", `sites`, `q` and whatever the trainer adds (alphabet, spec, notes).

use crate::error::{EngineError, Result};
use crate::potts::PottsModel;
use crate::tensors::{TensorReader, TensorWriter};
use std::collections::BTreeMap;

pub fn to_bytes(model: &PottsModel, metadata: &BTreeMap<String, String>) -> Result<Vec<u8>> {
    let (l, q) = (model.sites, model.q);
    let mut out = TensorWriter::new();
    out.add("J", &[l, q, l, q], &model.couplings)?;
    out.add("h", &[l, q], &model.fields)?;
    for (k, v) in metadata {
        out.meta(k, v.clone());
    }
    out.meta("type", "potts");
    out.meta("sites", l.to_string());
    out.meta("q", q.to_string());
    out.to_bytes()
}

/// Reads and validates a Potts model file: names, shapes, finite values, symmetric J with
/// zero diagonal blocks (see `PottsModel::from_parts`).
pub fn from_bytes(bytes: &[u8]) -> Result<PottsModel> {
    let file = TensorReader::parse(bytes, "the model file")?;
    from_reader(&file)
}

pub fn from_reader(file: &TensorReader<'_>) -> Result<PottsModel> {
    if let Some(t) = file.meta("type") {
        if t != "potts" {
            return Err(EngineError::invalid(format!(
                "the model file holds a {t} model, not potts"
            )));
        }
    }
    let shape = file.shape("J").ok_or_else(|| {
        EngineError::invalid("a potts model file needs tensor \"J\" [L, q, L, q]")
    })?;
    let [l, q, l2, q2] = shape[..] else {
        return Err(EngineError::invalid(format!(
            "tensor \"J\" must be [L, q, L, q], got {shape:?}"
        )));
    };
    if l != l2 || q != q2 {
        return Err(EngineError::invalid(format!(
            "tensor \"J\" must be [L, q, L, q], got {shape:?}"
        )));
    }
    crate::potts::check_shape(l, q)?;
    if (l * q) as u64 * (l * q) as u64 > 400_000_000 {
        return Err(EngineError::invalid(format!(
            "tensor \"J\" {shape:?} is too large"
        )));
    }
    let couplings = file.finite_f32("J", Some(&[l, q, l, q]))?;
    let fields = file.finite_f32("h", Some(&[l, q]))?;
    if let Some(extra) = file.names().into_iter().find(|n| n != "J" && n != "h") {
        return Err(EngineError::invalid(format!(
            "unexpected tensor {extra:?} in a potts model file (expected J and h)"
        )));
    }
    PottsModel::from_parts(l, q, fields, couplings)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::potts::tests::random_model;

    #[test]
    fn round_trip_and_validation() {
        let m = random_model(4, 3, 0.5, 1);
        let bytes = to_bytes(&m, &BTreeMap::new()).unwrap();
        assert_eq!(from_bytes(&bytes).unwrap(), m);
        let info = crate::model_file::inspect_model(&bytes).unwrap();
        assert_eq!(info.model_type, "potts");
        assert_eq!((info.dims["sites"], info.dims["q"]), (4, 3));
        // An asymmetric J is refused.
        let mut bad = m.clone();
        bad.couplings[5] += 1.0;
        let bytes = to_bytes(&bad, &BTreeMap::new()).unwrap();
        assert!(matches!(
            from_bytes(&bytes),
            Err(EngineError::InvalidInput(_))
        ));
        assert!(crate::model_file::inspect_model(&bytes).is_err());
    }
}
