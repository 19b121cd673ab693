//! The TOML job spec (see docs/job-spec.md) turned into `v1::JobSpec`.
//!
//! The spec mirrors the proto message, so the conversion is serde's, with three renames that
//! make the TOML read naturally: `model = "mdl_..."` is the model id, a `[model]` table is the
//! model configuration (`model_config`), and `dataset_path` names a local file that the CLI
//! uploads first. `--set key=value` overrides are applied to the TOML before conversion; their
//! values are TOML values (`train.epochs=5`, `train.betas=[0.5, 1.0]`), and anything that does
//! not parse as one is taken as a string (`name=digits`). Unknown keys are errors that name the
//! key and suggest the closest known one, since a misspelt option silently ignored would train
//! the wrong model.
use crate::error::{ClientError, Result};
use ebm_api::spec_path::{closest, known_keys, spec_name};
use ebm_api::v1::JobSpec;
use serde_json::Value as Json;
use toml::{Table, Value};

/// Job kinds the service runs.
pub const KINDS: &[&str] = &[
    "train",
    "estimate_log_z",
    "sample",
    "observe",
    "score",
    "scan",
];

/// A parsed spec, plus the local data file to upload first if it named one.
#[derive(Clone, Debug, PartialEq)]
pub struct ParsedSpec {
    pub spec: JobSpec,
    /// `dataset_path` as written (the CLI resolves it and sets `spec.dataset` after uploading).
    pub dataset_path: Option<String>,
}

fn invalid(message: String) -> ClientError {
    ClientError::Invalid(message)
}

/// Parses a TOML job spec and applies `key=value` overrides.
pub fn parse_spec(text: &str, overrides: &[String]) -> Result<ParsedSpec> {
    let mut table: Table = text
        .parse()
        .map_err(|e: toml::de::Error| invalid(format!("the job spec is not valid TOML: {e}")))?;
    for assignment in overrides {
        apply_override(&mut table, assignment)?;
    }
    let dataset_path = match table.remove("dataset_path") {
        None => None,
        Some(Value::String(path)) => Some(path),
        Some(other) => {
            return Err(invalid(format!(
                "`dataset_path` must be a string (a file path), not {}",
                other.type_str()
            )))
        }
    };
    match table.remove("model") {
        None => {}
        Some(Value::String(id)) => {
            table.insert("model".into(), Value::String(id));
        }
        Some(Value::Table(config)) => {
            table.insert("model_config".into(), Value::Table(config));
        }
        Some(other) => {
            return Err(invalid(format!(
                "`model` must be a model id (\"mdl_...\") or a [model] table, not {}",
                other.type_str()
            )))
        }
    }
    check_known_keys(&table, &known_keys(), "")?;
    let spec: JobSpec = Value::Table(table.clone())
        .try_into()
        .map_err(|e| name_bad_value(&table, e))?;
    if spec.kind.is_empty() {
        return Err(invalid(format!(
            "the job spec needs `kind`: one of {}",
            KINDS.join(", ")
        )));
    }
    if !KINDS.contains(&spec.kind.as_str()) {
        return Err(invalid(format!(
            "unknown job kind {:?}: use one of {}",
            spec.kind,
            KINDS.join(", ")
        )));
    }
    if dataset_path.is_some() && !spec.dataset.is_empty() {
        return Err(invalid(
            "give either `dataset` (an uploaded data set's id) or `dataset_path` (a file to upload), not both".into(),
        ));
    }
    Ok(ParsedSpec { spec, dataset_path })
}

/// Applies one `key=value` override (dotted keys reach into tables, creating them).
fn apply_override(table: &mut Table, assignment: &str) -> Result<()> {
    let Some((key, raw)) = assignment.split_once('=') else {
        return Err(invalid(format!(
            "--set {assignment:?}: expected key=value, e.g. train.epochs=5"
        )));
    };
    let key = key.trim();
    let path: Vec<&str> = key.split('.').map(str::trim).collect();
    if path.iter().any(|p| p.is_empty()) {
        return Err(invalid(format!("--set {assignment:?}: empty key segment")));
    }
    let raw = raw.trim();
    let value = format!("v = {raw}")
        .parse::<Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| Value::String(raw.to_string()));
    let (last, parents) = path
        .split_last()
        .expect("split yields at least one segment");
    let mut here = table;
    for (depth, segment) in parents.iter().enumerate() {
        let entry = here
            .entry(segment.to_string())
            .or_insert_with(|| Value::Table(Table::new()));
        here = match entry {
            Value::Table(t) => t,
            other => {
                return Err(invalid(format!(
                    "--set {key}: `{}` is a {}, not a table",
                    path[..=depth].join("."),
                    other.type_str()
                )))
            }
        };
    }
    here.insert(last.to_string(), value);
    Ok(())
}

fn check_known_keys(table: &Table, known: &Json, prefix: &str) -> Result<()> {
    let Json::Object(known) = known else {
        return Ok(());
    };
    for (key, value) in table {
        let name = spec_name(prefix, key);
        let Some(known_value) = known.get(key) else {
            let mut candidates: Vec<String> = known
                .keys()
                .filter(|k| !(prefix.is_empty() && *k == "model_config"))
                .cloned()
                .collect();
            if prefix.is_empty() {
                candidates.push("dataset_path".into());
            }
            candidates.sort();
            let section = if prefix.is_empty() {
                "the top level".to_string()
            } else {
                format!("[{prefix}]")
            };
            let hint = closest(key, &candidates)
                .map(|c| format!(" (did you mean `{}`?)", spec_name(prefix, c)))
                .unwrap_or_default();
            return Err(invalid(format!(
                "unknown key `{name}` in the job spec{hint}; keys allowed at {section}: {}",
                candidates.join(", ")
            )));
        };
        match (value, known_value) {
            (Value::Table(inner), Json::Object(_)) => check_known_keys(inner, known_value, &name)?,
            (Value::Table(_), _) => {
                return Err(invalid(format!(
                    "`{name}` must be a single value, not a table"
                )))
            }
            (_, Json::Object(_)) => {
                return Err(invalid(format!(
                    "`{name}` must be a table ([{name}] section), not a {}",
                    value.type_str()
                )))
            }
            _ => {}
        }
    }
    Ok(())
}

/// Finds which key made the conversion fail, by converting one key at a time, and says so.
fn name_bad_value(table: &Table, error: toml::de::Error) -> ClientError {
    let mut leaves = Vec::new();
    collect_leaves(table, &mut Vec::new(), &mut leaves);
    for (path, value) in leaves {
        let mut single = Table::new();
        let mut here = &mut single;
        for segment in &path[..path.len() - 1] {
            here = match here
                .entry(segment.clone())
                .or_insert_with(|| Value::Table(Table::new()))
            {
                Value::Table(t) => t,
                _ => unreachable!("freshly inserted tables"),
            };
        }
        here.insert(path[path.len() - 1].clone(), value.clone());
        if let Err(e) = Value::Table(single).try_into::<JobSpec>() {
            let mut prefix = path[..path.len() - 1].to_vec();
            if prefix.first().is_some_and(|p| p == "model_config") {
                prefix[0] = "model".into();
            }
            let prefix = prefix.join(".");
            let name = spec_name(&prefix, &path[path.len() - 1]);
            let reason = e.message().trim().to_string();
            return invalid(format!("bad value for `{name}` ({value}): {reason}"));
        }
    }
    invalid(format!(
        "the job spec does not fit: {}",
        error.message().trim()
    ))
}

fn collect_leaves<'a>(
    table: &'a Table,
    path: &mut Vec<String>,
    out: &mut Vec<(Vec<String>, &'a Value)>,
) {
    for (key, value) in table {
        path.push(key.clone());
        match value {
            Value::Table(inner) => collect_leaves(inner, path, out),
            leaf => out.push((path.clone(), leaf)),
        }
        path.pop();
    }
}

#[cfg(test)]
#[path = "spec/tests.rs"]
mod tests;
