//! Sweeps and labels on the client side: parsing `--label key=value` and
//! `--grid FIELD=[v1,v2]`, the SweepService calls, and the table `ebm sweeps get` prints
//! (one row per variant: job id, grid values, state, final metrics), sortable by a metric.
//!
//! Sort order: descending (best first for log-likelihoods, pseudo-log-likelihood, Pearson
//! correlations, ...), except for metrics whose name says smaller is better (containing
//! `error`, `loss`, `stderr` or `r_hat`), which sort ascending. Rows without the metric
//! (e.g. unfinished jobs) come last.
use crate::client::{request_id_or_fresh, Client};
use crate::error::{ClientError, Result};
use ebm_api::v1::{self, GridAxis, Job, JobSpec, Sweep};
use serde_json::Value as Json;
use std::collections::BTreeMap;
use toml::Value;

fn invalid(message: String) -> ClientError {
    ClientError::Invalid(message)
}

/// `key=value` -> (key, value); the key is trimmed, the value kept as written.
pub fn parse_label(text: &str) -> Result<(String, String)> {
    match text.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => {
            Ok((key.trim().to_string(), value.to_string()))
        }
        _ => Err(invalid(format!(
            "label {text:?}: expected key=value, e.g. --label team=vision"
        ))),
    }
}

/// A TOML value as JSON (the wire form of grid values).
fn toml_to_json(value: &Value) -> Json {
    serde_json::to_value(value).unwrap_or(Json::Null)
}

/// `FIELD=[v1,v2,...]` -> a grid axis. Values are TOML like `--set` values; bare words that
/// are not TOML are taken as strings (`train.method=[cd,pcd]`).
pub fn parse_grid(text: &str) -> Result<GridAxis> {
    let Some((field, list)) = text.split_once('=') else {
        return Err(invalid(format!(
            "--grid {text:?}: expected FIELD=[v1,v2], e.g. train.learning_rate=[0.01,0.05]"
        )));
    };
    let (field, list) = (field.trim(), list.trim());
    if field.is_empty() {
        return Err(invalid(format!("--grid {text:?}: the field name is empty")));
    }
    let Some(inner) = list.strip_prefix('[').and_then(|l| l.strip_suffix(']')) else {
        return Err(invalid(format!(
            "--grid {field}: the values must be a list in brackets, e.g. {field}=[1,2]"
        )));
    };
    let values: Vec<Json> = match format!("v = {list}").parse::<toml::Table>() {
        Ok(mut table) => match table.remove("v") {
            Some(Value::Array(items)) => items.iter().map(toml_to_json).collect(),
            _ => Vec::new(),
        },
        // Not a TOML array: split on commas, each item a TOML value or else a string.
        Err(_) => inner
            .split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .map(|item| {
                format!("v = {item}")
                    .parse::<toml::Table>()
                    .ok()
                    .and_then(|mut t| t.remove("v"))
                    .map(|v| toml_to_json(&v))
                    .unwrap_or_else(|| Json::String(item.to_string()))
            })
            .collect(),
    };
    Ok(GridAxis {
        field: field.to_string(),
        values: values.iter().map(Json::to_string).collect(),
    })
}

impl Client {
    /// Submits a sweep: the grid's variants of `spec` (times `seeds`), as one idempotent
    /// request (a retry with the same `request_id` returns the same sweep and jobs).
    pub async fn submit_sweep(
        &self,
        spec: JobSpec,
        grid: Vec<GridAxis>,
        seeds: u32,
        request_id: Option<String>,
        labels: &[(String, String)],
    ) -> Result<Sweep> {
        let request = v1::SubmitSweepRequest {
            request_id: request_id_or_fresh(request_id),
            spec: Some(spec),
            grid,
            seeds,
            priority: 0,
            labels: labels.iter().cloned().collect(),
        };
        Ok(self
            .sweeps
            .clone()
            .submit_sweep(request)
            .await?
            .into_inner())
    }

    /// A sweep with all its jobs, in variant order.
    pub async fn get_sweep(&self, id: &str) -> Result<Sweep> {
        let request = v1::GetSweepRequest { id: id.into() };
        Ok(self.sweeps.clone().get_sweep(request).await?.into_inner())
    }

    /// Every sweep (without jobs, with job counts by state), newest first.
    pub async fn list_sweeps(&self) -> Result<Vec<Sweep>> {
        let mut all = Vec::new();
        let mut page_token = String::new();
        loop {
            let request = v1::ListSweepsRequest {
                page_size: 100,
                page_token,
            };
            let page = self.sweeps.clone().list_sweeps(request).await?.into_inner();
            all.extend(page.sweeps);
            if page.next_page_token.is_empty() {
                return Ok(all);
            }
            page_token = page.next_page_token;
        }
    }

    /// Cancels every unfinished job of a sweep; returns the sweep right after.
    pub async fn cancel_sweep(&self, id: &str) -> Result<Sweep> {
        let request = v1::CancelSweepRequest { id: id.into() };
        Ok(self
            .sweeps
            .clone()
            .cancel_sweep(request)
            .await?
            .into_inner())
    }
}

/// One variant of a sweep as `ebm sweeps get` shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct SweepRow {
    pub job_id: String,
    /// Grid field (and `seed`) -> the variant's value, from the job's labels.
    pub grid: BTreeMap<String, String>,
    pub state: String,
    /// The job's final metrics: a train job's last-epoch metrics, and the numeric fields of
    /// other kinds' results (log_z, mean, ...).
    pub metrics: BTreeMap<String, f64>,
}

impl SweepRow {
    /// The row as JSON: {"job_id", "grid": {...}, "state", "metrics": {...}}.
    pub fn json(&self) -> Json {
        serde_json::json!({
            "job_id": self.job_id,
            "grid": self.grid,
            "state": self.state,
            "metrics": self.metrics,
        })
    }
}

/// The final metrics of a job, from its own result.
pub fn job_metrics(job: &Job) -> BTreeMap<String, f64> {
    let Some(result) = &job.result else {
        return BTreeMap::new();
    };
    let mut metrics: BTreeMap<String, f64> = result
        .final_metrics
        .iter()
        .map(|(k, v)| (k.clone(), *v))
        .collect();
    if let Ok(Json::Object(fields)) = serde_json::to_value(result) {
        for (name, value) in fields {
            // rows/cols are sizes, not metrics (and 0 when unset)
            if matches!(name.as_str(), "rows" | "cols") {
                continue;
            }
            if let Some(x) = value.as_f64() {
                metrics.insert(name, x);
            }
        }
    }
    metrics
}

/// The table rows of a sweep, in variant order.
pub fn sweep_rows(sweep: &Sweep) -> Vec<SweepRow> {
    let keys: Vec<String> = sweep
        .grid
        .iter()
        .map(|a| a.field.trim().to_string())
        .chain((sweep.seeds > 0).then(|| "seed".to_string()))
        .collect();
    sweep
        .jobs
        .iter()
        .map(|job| SweepRow {
            job_id: job.id.clone(),
            grid: keys
                .iter()
                .filter_map(|k| job.labels.get(k).map(|v| (k.clone(), v.clone())))
                .collect(),
            state: job.state().name().to_string(),
            metrics: job_metrics(job),
        })
        .collect()
}

/// True if larger values of this metric are better (see the module doc).
pub fn larger_is_better(metric: &str) -> bool {
    !["error", "loss", "stderr", "r_hat"]
        .iter()
        .any(|word| metric.contains(word))
}

/// Sorts rows by `metric` (best first, rows without it last); refuses a metric no row has.
pub fn sort_rows(rows: &mut [SweepRow], metric: &str) -> Result<()> {
    let known: std::collections::BTreeSet<&String> =
        rows.iter().flat_map(|r| r.metrics.keys()).collect();
    if !known.iter().any(|k| *k == metric) {
        let names: Vec<&str> = known.iter().map(|k| k.as_str()).collect();
        return Err(invalid(format!(
            "--sort {metric}: no job of this sweep has that metric; known: {}",
            if names.is_empty() {
                "none yet (no job has finished)".to_string()
            } else {
                names.join(", ")
            }
        )));
    }
    let descending = larger_is_better(metric);
    rows.sort_by(
        |a, b| match (a.metrics.get(metric), b.metrics.get(metric)) {
            (Some(x), Some(y)) if descending => y.total_cmp(x),
            (Some(x), Some(y)) => x.total_cmp(y),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => std::cmp::Ordering::Equal,
        },
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_grids_as_toml_lists_and_bare_words_as_strings() {
        let axis = parse_grid("train.learning_rate=[0.01, 0.05]").unwrap();
        assert_eq!(axis.field, "train.learning_rate");
        assert_eq!(axis.values, ["0.01", "0.05"]);
        assert_eq!(
            parse_grid("model.hidden=[64,256]").unwrap().values,
            ["64", "256"]
        );
        assert_eq!(
            parse_grid("train.method=[cd,pcd]").unwrap().values,
            ["\"cd\"", "\"pcd\""]
        );
        assert_eq!(parse_grid("x=[]").unwrap().values, Vec::<String>::new());
        assert!(parse_grid("train.k=3").is_err());
        assert!(parse_grid("=[1]").is_err());
        assert_eq!(parse_label("a=b=c").unwrap(), ("a".into(), "b=c".into()));
        assert!(parse_label("nokey").is_err());
    }

    fn row(id: &str, metric: Option<f64>) -> SweepRow {
        SweepRow {
            job_id: id.into(),
            grid: BTreeMap::new(),
            state: "succeeded".into(),
            metrics: metric.map(|m| ("m".to_string(), m)).into_iter().collect(),
        }
    }

    #[test]
    fn sorts_best_first_with_missing_last_and_refuses_unknown_metrics() {
        let mut rows = vec![row("a", Some(-3.0)), row("b", None), row("c", Some(-1.0))];
        sort_rows(&mut rows, "m").unwrap();
        let ids: Vec<&str> = rows.iter().map(|r| r.job_id.as_str()).collect();
        assert_eq!(ids, ["c", "a", "b"]);
        let e = sort_rows(&mut rows, "val_ais_log_likelihood").unwrap_err();
        assert!(e.to_string().contains("val_ais_log_likelihood"), "{e}");
        assert!(larger_is_better("val_ais_log_likelihood") && !larger_is_better("recon_error"));
    }
}
