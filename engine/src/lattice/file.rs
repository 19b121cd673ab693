//! Lattice Ising model files: safetensors with scalar (shape []) float32 tensors `J` and
//! `h`, metadata `type` = "lattice_ising" and `size` = L.

use crate::error::{EngineError, Result};
use crate::lattice::LatticeIsing;
use crate::tensors::{TensorReader, TensorWriter};
use std::collections::BTreeMap;

pub fn to_bytes(model: &LatticeIsing, metadata: &BTreeMap<String, String>) -> Result<Vec<u8>> {
    let mut out = TensorWriter::new();
    out.add("J", &[], &[model.coupling])?;
    out.add("h", &[], &[model.field])?;
    for (k, v) in metadata {
        out.meta(k, v.clone());
    }
    out.meta("type", "lattice_ising");
    out.meta("size", model.size.to_string());
    out.to_bytes()
}

pub fn from_bytes(bytes: &[u8]) -> Result<LatticeIsing> {
    from_reader(&TensorReader::parse(bytes, "the model file")?)
}

pub fn from_reader(file: &TensorReader<'_>) -> Result<LatticeIsing> {
    if let Some(t) = file.meta("type") {
        if t != "lattice_ising" {
            return Err(EngineError::invalid(format!(
                "the model file holds a {t} model, not lattice_ising"
            )));
        }
    }
    let size: usize = file
        .meta("size")
        .and_then(|s| s.trim().parse().ok())
        .ok_or_else(|| {
            EngineError::invalid("a lattice_ising model file needs metadata \"size\" = L")
        })?;
    let coupling = file.finite_f32("J", Some(&[]))?[0];
    let field = file.finite_f32("h", Some(&[]))?[0];
    if let Some(extra) = file.names().into_iter().find(|n| n != "J" && n != "h") {
        return Err(EngineError::invalid(format!(
            "unexpected tensor {extra:?} in a lattice_ising model file (expected J and h)"
        )));
    }
    LatticeIsing::new(size, coupling, field)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_validation() {
        let m = LatticeIsing::new(32, 0.44, -0.1).unwrap();
        let bytes = to_bytes(&m, &BTreeMap::new()).unwrap();
        assert_eq!(from_bytes(&bytes).unwrap(), m);
        let info = crate::model_file::inspect_model(&bytes).unwrap();
        assert_eq!(
            (info.model_type.as_str(), info.dims["size"]),
            ("lattice_ising", 32)
        );
        let mut w = TensorWriter::new();
        w.add("J", &[], &[1.0]).unwrap();
        w.add("h", &[], &[0.0]).unwrap();
        w.meta("type", "lattice_ising");
        w.meta("size", "7");
        assert!(
            from_bytes(&w.to_bytes().unwrap()).is_err(),
            "odd sizes are refused"
        );
    }
}
