//! JSON views of API messages, as printed by `ebm --output json`: state enums become their
//! lower-case names, and unset or empty fields are left out so each result shows only the
//! fields of its job kind.
use crate::v1::{Job, JobEvent, JobState};
use serde::Serialize;
use serde_json::Value;

/// Any message as JSON with empty fields pruned.
pub fn to_json<T: Serialize>(message: &T) -> Value {
    let mut value = serde_json::to_value(message).unwrap_or(Value::Null);
    prune_empty(&mut value);
    value
}

/// A job as JSON: `state` is the lower-case name (e.g. "succeeded").
pub fn job_json(job: &Job) -> Value {
    let mut value = to_json(job);
    if let Value::Object(map) = &mut value {
        map.insert("state".into(), Value::from(job.state().name()));
    }
    value
}

/// A job event as JSON; `state` (state events only) is the lower-case name.
pub fn event_json(event: &JobEvent) -> Value {
    let mut value = to_json(event);
    if let Value::Object(map) = &mut value {
        if event.state() != JobState::Unspecified {
            map.insert("state".into(), Value::from(event.state().name()));
        } else {
            map.remove("state");
        }
    }
    value
}

/// Removes nulls, empty strings, empty arrays and empty objects, recursively.
fn prune_empty(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for v in map.values_mut() {
                prune_empty(v);
            }
            map.retain(|_, v| !is_empty(v));
        }
        Value::Array(items) => items.iter_mut().for_each(prune_empty),
        _ => {}
    }
}

fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1::JobResult;

    #[test]
    fn job_json_names_state_and_prunes_empty_fields() {
        let job = Job {
            id: "job_1".into(),
            state: JobState::Succeeded as i32,
            result: Some(JobResult {
                model_id: "mdl_1".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let v = job_json(&job);
        assert_eq!(v["state"], "succeeded");
        assert_eq!(v["result"]["model_id"], "mdl_1");
        assert!(v["result"].get("log_z").is_none());
        assert!(v.get("error").is_none());
    }
}
