//! Checking the labels a client sends (on a job, a sweep, or a list filter): bounded in
//! number and length, keys from a small alphabet so that `key=value` on the command line
//! and in filters is unambiguous.
use crate::config::Limits;
use crate::store::Labels;
use std::collections::HashMap;
use tonic::Status;

/// Label keys the server sets on a sweep's jobs; a client may not set them itself.
pub const SWEEP_KEY: &str = "sweep";
pub const SEED_KEY: &str = "seed";

/// Checks one label, naming it in the error.
pub fn check_label(key: &str, value: &str, limits: &Limits) -> Result<(), Status> {
    let max = limits.max_label_len;
    if key.is_empty() {
        return Err(Status::invalid_argument(
            "a label key is empty: labels are key=value with a non-empty key",
        ));
    }
    if !key
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/'))
    {
        return Err(Status::invalid_argument(format!(
            "label key {key:?} may contain only letters, digits and . _ - /"
        )));
    }
    if key.len() > max || value.len() > max {
        return Err(Status::invalid_argument(format!(
            "label {key:?} is too long: keys and values are limited to {max} bytes (limits.max_label_len)"
        )));
    }
    if value.chars().any(char::is_control) {
        return Err(Status::invalid_argument(format!(
            "the value of label {key:?} contains control characters"
        )));
    }
    Ok(())
}

/// Checks a client's labels (`extra` more will be added by the server) and orders them.
pub fn check_labels(
    labels: &HashMap<String, String>,
    extra: usize,
    limits: &Limits,
) -> Result<Labels, Status> {
    if labels.len() + extra > limits.max_labels {
        return Err(Status::invalid_argument(format!(
            "{} labels given{}; a job may carry at most {} (limits.max_labels)",
            labels.len(),
            if extra > 0 {
                format!(" (and the sweep adds {extra})")
            } else {
                String::new()
            },
            limits.max_labels
        )));
    }
    for (key, value) in labels {
        check_label(key, value, limits)?;
    }
    Ok(labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_bad_and_too_many_labels_naming_them() {
        let limits = Limits {
            max_labels: 2,
            max_label_len: 8,
            ..Limits::default()
        };
        let ok: HashMap<_, _> = [("team".to_string(), "a b".to_string())].into();
        assert_eq!(check_labels(&ok, 1, &limits).unwrap().len(), 1);
        assert!(check_labels(&ok, 2, &limits)
            .unwrap_err()
            .message()
            .contains("limits.max_labels"));
        for (key, value, word) in [
            ("", "x", "empty"),
            ("a=b", "x", "a=b"),
            ("longerthan8", "x", "longerthan8"),
            ("k", "longer than 8", "max_label_len"),
            ("k", "a\nb", "control"),
        ] {
            let e = check_label(key, value, &limits).unwrap_err();
            assert_eq!(e.code(), tonic::Code::InvalidArgument);
            assert!(e.message().contains(word), "{}", e.message());
        }
    }
}
