//! RBM model files: `W` [visible, hidden], `b` [visible], `c` [hidden]; gaussian_rbm also
//! `sigma` [visible] and, when trained on standardized data, `transform_mean` and
//! `transform_std` [visible] (x_model = (x_data - mean) / std). Metadata `type`, `visible`,
//! `hidden` and whatever the trainer adds.

use crate::backend::VisibleUnits;
use crate::error::{EngineError, Result};
use crate::rbm::{RbmModel, Standardization};
use crate::spec::ModelType;
use crate::tensors::{TensorReader, TensorWriter};
use std::collections::BTreeMap;

/// Upper bound on dimensions read from an uploaded file.
const MAX_DIM: usize = 10_000_000;

/// Writes an RBM; `metadata` is added to the header (`type`, `visible`, `hidden` are set here).
pub fn rbm_to_bytes(model: &RbmModel, metadata: &BTreeMap<String, String>) -> Result<Vec<u8>> {
    let (nv, nh) = (model.visible, model.hidden);
    let mut out = TensorWriter::new();
    out.add("W", &[nv, nh], &model.w)?;
    out.add("b", &[nv], &model.b)?;
    out.add("c", &[nh], &model.c)?;
    if let Some(sigma) = &model.sigma {
        out.add("sigma", &[nv], sigma)?;
    }
    if let Some(t) = &model.transform {
        out.add("transform_mean", &[nv], &t.mean)?;
        out.add("transform_std", &[nv], &t.std)?;
    }
    for (k, v) in metadata {
        out.meta(k, v.clone());
    }
    out.meta("type", model.model_type().name());
    out.meta("visible", nv.to_string());
    out.meta("hidden", nh.to_string());
    out.to_bytes()
}

/// Reads an RBM model file (either RBM type), checking names, shapes and values.
pub fn rbm_from_bytes(bytes: &[u8]) -> Result<RbmModel> {
    let file = TensorReader::parse(bytes, "the model file")?;
    rbm_from_reader(&file)
}

fn rbm_from_reader(file: &TensorReader<'_>) -> Result<RbmModel> {
    let model_type = ModelType::from_name(file.meta("type").unwrap_or(""))?;
    let units = match model_type {
        ModelType::BernoulliRbm => VisibleUnits::Bernoulli,
        ModelType::GaussianRbm => VisibleUnits::Gaussian,
        other => {
            return Err(EngineError::invalid(format!(
                "the model file holds a {} model, not an RBM",
                other.name()
            )))
        }
    };
    let shape = file.shape("W").ok_or_else(|| {
        EngineError::invalid("the RBM model file has no tensor \"W\" [visible, hidden]")
    })?;
    let [nv, nh] = shape[..] else {
        return Err(EngineError::invalid(format!(
            "tensor \"W\" must be 2-D [visible, hidden], got {shape:?}"
        )));
    };
    if nv == 0 || nh == 0 || nv > MAX_DIM || nh > MAX_DIM {
        return Err(EngineError::invalid(format!(
            "tensor \"W\" has unusable shape {shape:?}"
        )));
    }
    let w = file.finite_f32("W", Some(&[nv, nh]))?;
    let b = file.finite_f32("b", Some(&[nv]))?;
    let c = file.finite_f32("c", Some(&[nh]))?;
    let sigma = match units {
        VisibleUnits::Gaussian => {
            let s = file.finite_f32("sigma", Some(&[nv]))?;
            if let Some(i) = s.iter().position(|&x| x <= 0.0) {
                return Err(EngineError::invalid(format!(
                    "sigma[{i}] = {} must be positive",
                    s[i]
                )));
            }
            Some(s)
        }
        VisibleUnits::Bernoulli => None,
    };
    let transform = if file.has("transform_mean") || file.has("transform_std") {
        let mean = file.finite_f32("transform_mean", Some(&[nv]))?;
        let std = file.finite_f32("transform_std", Some(&[nv]))?;
        if std.iter().any(|&s| s <= 0.0) {
            return Err(EngineError::invalid("transform_std must be positive"));
        }
        Some(Standardization { mean, std })
    } else {
        None
    };
    let allowed = ["W", "b", "c", "sigma", "transform_mean", "transform_std"];
    if let Some(extra) = file
        .names()
        .into_iter()
        .find(|n| !allowed.contains(&n.as_str()))
    {
        return Err(EngineError::invalid(format!(
            "unexpected tensor {extra:?} in an RBM model file (expected W, b, c{})",
            if units == VisibleUnits::Gaussian {
                ", sigma"
            } else {
                ""
            }
        )));
    }
    Ok(RbmModel {
        units,
        visible: nv,
        hidden: nh,
        w,
        b,
        c,
        sigma,
        transform,
    })
}

pub(crate) fn rbm_from_reader_typed(
    file: &TensorReader<'_>,
    model_type: ModelType,
) -> Result<RbmModel> {
    if file.meta("type") == Some(model_type.name()) {
        return rbm_from_reader(file);
    }
    // No type metadata: validate as the given type by checking the tensors directly.
    let units = if model_type == ModelType::GaussianRbm {
        VisibleUnits::Gaussian
    } else {
        VisibleUnits::Bernoulli
    };
    let shape = file
        .shape("W")
        .ok_or_else(|| EngineError::invalid("the RBM model file has no tensor \"W\""))?;
    let [nv, nh] = shape[..] else {
        return Err(EngineError::invalid(format!(
            "tensor \"W\" must be 2-D [visible, hidden], got {shape:?}"
        )));
    };
    let w = file.finite_f32("W", Some(&[nv, nh]))?;
    let b = file.finite_f32("b", Some(&[nv]))?;
    let c = file.finite_f32("c", Some(&[nh]))?;
    let sigma = if units == VisibleUnits::Gaussian {
        Some(file.finite_f32("sigma", Some(&[nv]))?)
    } else {
        None
    };
    Ok(RbmModel {
        units,
        visible: nv,
        hidden: nh,
        w,
        b,
        c,
        sigma,
        transform: None,
    })
}
