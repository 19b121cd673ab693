//! Job-spec fields by the dotted names of the TOML spec (`train.learning_rate`,
//! `model.hidden`, `seed`): which names exist, the closest one to a misspelling, and setting
//! one field of a `JobSpec` to a JSON value. The CLI's `--set` checks its keys with these,
//! and the server expands sweep grids with [`set_field`], so both sides accept the same
//! names and say the same thing about a wrong one.
//!
//! The names follow the proto message through its serde form, so new proto fields are known
//! without changes here; the one rename is that the `[model]` table is `model_config` in the
//! proto (a bare `model` is the model id).
use crate::v1::{
    EstimateConfig, JobSpec, ModelConfig, ObserveConfig, SampleConfig, ScanConfig, ScoreConfig,
    TrainConfig,
};
use serde_json::Value;

/// The keys a `JobSpec` has, as a JSON object tree (nested configs filled with defaults so
/// their keys show up).
pub fn known_keys() -> Value {
    let full = JobSpec {
        model_config: Some(ModelConfig::default()),
        train: Some(TrainConfig::default()),
        estimate: Some(EstimateConfig::default()),
        sample: Some(SampleConfig::default()),
        observe: Some(ObserveConfig::default()),
        score: Some(ScoreConfig::default()),
        scan: Some(ScanConfig::default()),
        ..Default::default()
    };
    serde_json::to_value(full).unwrap_or(Value::Null)
}

/// The name a key has in the TOML spec (`model_config` is written `[model]`), below `prefix`.
pub fn spec_name(prefix: &str, key: &str) -> String {
    let key = if prefix.is_empty() && key == "model_config" {
        "model"
    } else {
        key
    };
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

/// The candidate within edit distance 2 of `key`, if any.
pub fn closest<'a>(key: &str, candidates: &'a [String]) -> Option<&'a String> {
    candidates
        .iter()
        .map(|c| (edit_distance(key, c), c))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            current.push(substitution.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}

/// The proto (serde) path of a dotted spec name: `model.hidden` -> `model_config.hidden`.
/// Fails, naming the field and the closest known name, if the spec has no such leaf field.
pub fn resolve(field: &str) -> Result<Vec<String>, String> {
    let segments: Vec<&str> = field.split('.').map(str::trim).collect();
    if field.trim().is_empty() || segments.iter().any(|s| s.is_empty()) {
        return Err(format!(
            "field {field:?} is not a dotted spec name like train.learning_rate"
        ));
    }
    let mut path: Vec<String> = segments.iter().map(|s| s.to_string()).collect();
    if path.len() > 1 && path[0] == "model" {
        path[0] = "model_config".into();
    }
    let known = known_keys();
    let mut here = &known;
    let mut prefix = String::new();
    for (depth, segment) in path.iter().enumerate() {
        let Value::Object(keys) = here else {
            return Err(format!(
                "unknown field `{field}`: `{prefix}` is a single value, not a table"
            ));
        };
        let Some(next) = keys.get(segment) else {
            let candidates: Vec<String> = keys.keys().cloned().collect();
            let hint = closest(segment, &candidates)
                .map(|c| format!(" (did you mean `{}`?)", spec_name(&prefix, c)))
                .unwrap_or_default();
            return Err(format!("unknown field `{field}` in the job spec{hint}"));
        };
        prefix = spec_name(&prefix, segment);
        here = next;
        if depth + 1 == path.len() && here.is_object() {
            return Err(format!(
                "`{field}` is a table ([{field}]); name one of its fields, e.g. {field}.{}",
                here.as_object()
                    .and_then(|o| o.keys().next())
                    .map(String::as_str)
                    .unwrap_or("...")
            ));
        }
    }
    Ok(path)
}

/// A copy of `spec` with the field named `field` (dotted spec name) set to `value`.
/// Fails with a message naming the field if there is no such field or the value does not
/// fit its type.
pub fn set_field(spec: &JobSpec, field: &str, value: &Value) -> Result<JobSpec, String> {
    let path = resolve(field)?;
    let mut json = serde_json::to_value(spec).map_err(|e| e.to_string())?;
    let (last, parents) = path.split_last().expect("resolve yields a segment");
    let mut here = &mut json;
    for segment in parents {
        let object = here
            .as_object_mut()
            .ok_or_else(|| format!("field `{field}`: the spec is not an object"))?;
        let entry = object.entry(segment.clone()).or_insert(Value::Null);
        if entry.is_null() {
            *entry = Value::Object(Default::default());
        }
        here = entry;
    }
    here.as_object_mut()
        .ok_or_else(|| format!("field `{field}`: the spec is not an object"))?
        .insert(last.clone(), value.clone());
    serde_json::from_value(json)
        .map_err(|e| format!("value {value} does not fit field `{field}`: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_nested_fields_by_their_spec_names() {
        let spec = JobSpec {
            kind: "train".into(),
            ..Default::default()
        };
        let spec = set_field(&spec, "train.learning_rate", &Value::from(0.01)).unwrap();
        let spec = set_field(&spec, "model.hidden", &Value::from(64)).unwrap();
        let spec = set_field(&spec, "seed", &Value::from(3)).unwrap();
        assert_eq!(spec.train.as_ref().unwrap().learning_rate, Some(0.01));
        assert_eq!(spec.model_config.as_ref().unwrap().hidden, Some(64));
        assert_eq!(spec.seed, 3);
        assert_eq!(spec.kind, "train", "other fields are kept");
        let spec = set_field(&spec, "model", &Value::from("mdl_1")).unwrap();
        assert_eq!(spec.model, "mdl_1");
    }

    #[test]
    fn refuses_unknown_fields_and_bad_values_naming_the_field() {
        let spec = JobSpec::default();
        let e = set_field(&spec, "train.learnin_rate", &Value::from(1)).unwrap_err();
        assert!(
            e.contains("train.learnin_rate") && e.contains("train.learning_rate"),
            "{e}"
        );
        let e = set_field(&spec, "model.hidden", &Value::from("many")).unwrap_err();
        assert!(e.contains("model.hidden"), "{e}");
        let e = set_field(&spec, "train", &Value::from(1)).unwrap_err();
        assert!(e.contains("table"), "{e}");
        let e = set_field(&spec, "seed.x", &Value::from(1)).unwrap_err();
        assert!(e.contains("seed.x"), "{e}");
        assert!(set_field(&spec, "train..k", &Value::from(1)).is_err());
    }
}
