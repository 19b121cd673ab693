//! The training metadata every trained model's file carries (safetensors `__metadata__`):
//! epochs done, seed, method, the model and train specs as JSON, and the backend.

use crate::spec::{ModelSpec, TrainSettings, TrainSpec};
use std::collections::BTreeMap;

pub(crate) fn training_metadata(
    epochs_done: usize,
    seed: u64,
    settings: &TrainSettings,
    model_spec: &ModelSpec,
    train_spec: &TrainSpec,
    backend: &str,
) -> BTreeMap<String, String> {
    let mut meta = BTreeMap::new();
    meta.insert("epochs".into(), epochs_done.to_string());
    meta.insert("seed".into(), seed.to_string());
    meta.insert(
        "method".into(),
        format!("{:?}", settings.method).to_lowercase(),
    );
    meta.insert(
        "model_spec".into(),
        serde_json::to_string(model_spec).unwrap_or_default(),
    );
    meta.insert(
        "train_spec".into(),
        serde_json::to_string(train_spec).unwrap_or_default(),
    );
    meta.insert("backend".into(), backend.into());
    meta
}
