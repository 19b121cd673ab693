//! Printing results: aligned text for people, or with `--output json` exactly one JSON
//! document per command on stdout (errors included, as {"error": {...}}), so scripts can
//! parse every outcome.
use crate::Output;
use ebm_api::json::{job_json, to_json};
use ebm_client::v1::{Dataset, Job, JobResult, Model};
use ebm_client::ClientError;
use serde_json::{json, Value};
use std::path::Path;

pub struct Printer {
    output: Output,
}

impl Printer {
    pub fn new(output: Output) -> Self {
        Printer { output }
    }

    pub fn is_json(&self) -> bool {
        self.output == Output::Json
    }

    /// Progress bars and event lines go to stderr in text mode only.
    pub fn shows_progress(&self) -> bool {
        !self.is_json()
    }

    pub fn json(&self, value: &Value) {
        println!(
            "{}",
            serde_json::to_string_pretty(value).unwrap_or_else(|_| "null".into())
        );
    }

    pub fn error(&self, error: &anyhow::Error) {
        let message = format!("{error:#}");
        eprintln!("error: {message}");
        if self.is_json() {
            let kind = error
                .downcast_ref::<ClientError>()
                .map(ClientError::kind)
                .unwrap_or("error");
            self.json(&json!({"error": {"kind": kind, "message": message}}));
        }
    }

    pub fn dataset(&self, d: &Dataset, verb: &str) {
        if self.is_json() {
            return self.json(&to_json(d));
        }
        if !verb.is_empty() {
            println!("{verb} {}", d.id);
        }
        let mut lines = vec![
            ("id", d.id.clone()),
            ("name", d.name.clone()),
            ("format", d.format.clone()),
            ("rows", d.rows.to_string()),
            ("cols", d.cols.to_string()),
            ("values", d.value_kind.clone()),
        ];
        if d.q > 0 {
            lines.push(("q", d.q.to_string()));
        }
        lines.push(("size", human_bytes(d.size_bytes)));
        lines.push(("created", d.created_at.clone()));
        if !d.notes.is_empty() {
            lines.push(("notes", d.notes.clone()));
        }
        print_fields(&lines);
    }

    pub fn datasets(&self, all: &[Dataset]) {
        if self.is_json() {
            return self.json(&json!({ "datasets": all.iter().map(to_json).collect::<Vec<_>>() }));
        }
        let rows = all
            .iter()
            .map(|d| {
                vec![
                    d.id.clone(),
                    d.name.clone(),
                    d.format.clone(),
                    format!("{} x {}", d.rows, d.cols),
                    d.value_kind.clone(),
                    d.created_at.clone(),
                ]
            })
            .collect();
        print_table(
            &["ID", "NAME", "FORMAT", "SHAPE", "VALUES", "CREATED"],
            rows,
        );
    }

    pub fn deleted(&self, id: &str) {
        if self.is_json() {
            return self.json(&json!({"id": id, "deleted": true}));
        }
        println!("deleted {id}");
    }

    pub fn submitted(&self, job: &Job) {
        if self.is_json() {
            return self.json(&job_json(job));
        }
        let kind = job.spec.as_ref().map(|s| s.kind.as_str()).unwrap_or("");
        println!("submitted {} ({kind}), {}", job.id, job.state().name());
        println!("follow it with: ebm watch {}", job.id);
    }

    pub fn job(&self, job: &Job) {
        self.job_with_picture(job, None)
    }

    /// A job, and the PNG drawn of it (`--png`): JSON gets a `png` member.
    pub fn job_with_picture(&self, job: &Job, picture: Option<&Value>) {
        if self.is_json() {
            return self.json(&with_picture(job_json(job), picture));
        }
        let spec = job.spec.clone().unwrap_or_default();
        let mut lines = vec![
            ("id", job.id.clone()),
            ("kind", spec.kind.clone()),
            ("name", spec.name.clone()),
            ("state", job.state().name().to_string()),
            ("progress", format!("{:.0}%", job.progress * 100.0)),
            ("attempt", job.attempt.to_string()),
            ("created", job.created_at.clone()),
            ("started", job.started_at.clone()),
            ("finished", job.finished_at.clone()),
        ];
        if job.cancel_requested && !job.state().is_terminal() {
            lines.push(("cancel", "requested".into()));
        }
        if !job.error.is_empty() {
            lines.push(("error", job.error.clone()));
        }
        if let Some(result) = &job.result {
            lines.extend(result_lines(result));
        }
        lines.extend(picture_lines(picture));
        print_fields(&lines);
    }

    /// The end of `watch`: the final job (JSON), or a one-line verdict plus its result; and
    /// the PNG drawn of it, if any.
    pub fn finished_with_picture(&self, job: &Job, picture: Option<&Value>) {
        if self.is_json() {
            return self.json(&with_picture(job_json(job), picture));
        }
        match job.state().name() {
            "succeeded" => println!("job {} succeeded", job.id),
            "failed" => println!("job {} failed: {}", job.id, job.error),
            other => println!("job {} {other}", job.id),
        }
        let mut lines = job.result.as_ref().map(result_lines).unwrap_or_default();
        lines.extend(picture_lines(picture));
        print_fields(&lines);
    }

    pub fn jobs(&self, all: &[Job]) {
        if self.is_json() {
            return self.json(&json!({ "jobs": all.iter().map(job_json).collect::<Vec<_>>() }));
        }
        let rows = all
            .iter()
            .map(|j| {
                let spec = j.spec.clone().unwrap_or_default();
                vec![
                    j.id.clone(),
                    spec.kind,
                    spec.name,
                    j.state().name().to_string(),
                    format!("{:.0}%", j.progress * 100.0),
                    j.created_at.clone(),
                ]
            })
            .collect();
        print_table(
            &["ID", "KIND", "NAME", "STATE", "PROGRESS", "CREATED"],
            rows,
        );
    }

    pub fn model(&self, m: &Model, verb: &str) {
        if self.is_json() {
            return self.json(&to_json(m));
        }
        if !verb.is_empty() {
            println!("{verb} {}", m.id);
        }
        let mut lines = vec![
            ("id", m.id.clone()),
            ("type", m.r#type.clone()),
            ("name", m.name.clone()),
            ("dims", dims(m)),
            ("job", m.job_id.clone()),
            ("size", human_bytes(m.size_bytes)),
            ("created", m.created_at.clone()),
        ];
        let mut metadata: Vec<_> = m.metadata.iter().collect();
        metadata.sort();
        for (k, v) in metadata {
            if k != "type" {
                lines.push(("metadata", format!("{k} = {v}")));
            }
        }
        print_fields(&lines);
    }

    pub fn models(&self, all: &[Model]) {
        if self.is_json() {
            return self.json(&json!({ "models": all.iter().map(to_json).collect::<Vec<_>>() }));
        }
        let rows = all
            .iter()
            .map(|m| {
                vec![
                    m.id.clone(),
                    m.r#type.clone(),
                    m.name.clone(),
                    dims(m),
                    m.job_id.clone(),
                    m.created_at.clone(),
                ]
            })
            .collect();
        print_table(&["ID", "TYPE", "NAME", "DIMS", "JOB", "CREATED"], rows);
    }

    pub fn written(&self, id: &str, path: &Path, bytes: usize) {
        self.written_with_picture(id, path, bytes, None)
    }

    pub fn written_with_picture(
        &self,
        id: &str,
        path: &Path,
        bytes: usize,
        picture: Option<&Value>,
    ) {
        if self.is_json() {
            let value = json!({"id": id, "path": path.display().to_string(), "size_bytes": bytes});
            return self.json(&with_picture(value, picture));
        }
        println!("wrote {} ({})", path.display(), human_bytes(bytes as u64));
        print_fields(&picture_lines(picture));
    }
}

fn with_picture(mut value: Value, picture: Option<&Value>) -> Value {
    if let (Some(object), Some(picture)) = (value.as_object_mut(), picture) {
        object.insert("png".into(), picture.clone());
    }
    value
}

/// One line describing a PNG that was written.
fn picture_lines(picture: Option<&Value>) -> Vec<(&'static str, String)> {
    let Some(p) = picture else {
        return Vec::new();
    };
    let path = p["path"].as_str().unwrap_or("");
    let size = format!("{} x {} px", p["width"], p["height"]);
    let what = match p["kind"].as_str() {
        Some("histogram") => {
            "histogram bars; red = mode, blue = mean, green = map_statistic".to_string()
        }
        _ if p["strip"] == true => format!(
            "{} samples, one pixel row each (give --shape HxW for images)",
            p["samples"]
        ),
        _ => format!(
            "{} samples as {} x {} images",
            p["samples"], p["shape"][0], p["shape"][1]
        ),
    };
    vec![("png", format!("wrote {path} ({size}; {what})"))]
}

fn dims(m: &Model) -> String {
    let mut dims: Vec<_> = m.dims.iter().map(|(k, v)| format!("{k}={v}")).collect();
    dims.sort();
    dims.join(" ")
}

fn result_lines(r: &JobResult) -> Vec<(&'static str, String)> {
    let mut lines = Vec::new();
    if !r.model_id.is_empty() {
        lines.push(("model", r.model_id.clone()));
    }
    let mut metrics: Vec<_> = r.final_metrics.iter().collect();
    metrics.sort_by(|a, b| a.0.cmp(b.0));
    for (k, v) in metrics {
        lines.push(("metric", format!("{k} = {v:.6}")));
    }
    if let Some(log_z) = r.log_z {
        let mut text = format!("{log_z:.4}");
        if let Some(se) = r.log_z_stderr {
            text.push_str(&format!(" ± {se:.4}"));
        }
        if let (Some(lo), Some(hi)) = (r.log_z_low, r.log_z_high) {
            text.push_str(&format!(" (interval {lo:.4} .. {hi:.4})"));
        }
        lines.push(("log Z", text));
    }
    if let Some(rev) = r.log_z_reverse {
        lines.push(("log Z (reverse)", format!("{rev:.4}")));
    }
    if let Some(ess) = r.ess {
        lines.push(("ess", format!("{ess:.1}")));
    }
    if let (Some(lo), Some(hi)) = (r.log_z_lower_bound, r.log_z_upper_bound) {
        lines.push(("bracket", format!("{lo:.4} .. {hi:.4} (sandwich)")));
    }
    for (name, d) in [
        ("forward", &r.forward_diagnostics),
        ("reverse", &r.reverse_diagnostics),
    ] {
        if let Some(d) = d {
            lines.push((
                name,
                format!(
                    "{} chains x {} betas: ESS {:.1} ({:.0}%), largest weight {:.2}",
                    d.chains,
                    d.betas,
                    d.ess,
                    100.0 * d.ess_fraction,
                    d.max_weight
                ),
            ));
        }
    }
    if let Some(p) = &r.precision {
        lines.push((
            "plan",
            format!(
                "target stderr {} {}: {} chains x {} betas (pilot {} x {}, stderr {:.4})",
                p.target_stderr,
                if p.target_reached {
                    "reached"
                } else {
                    "NOT reached"
                },
                p.chains,
                p.betas,
                p.pilot_chains,
                p.pilot_betas,
                p.pilot_stderr
            ),
        ));
    }
    for w in &r.warnings {
        lines.push(("warning", w.clone()));
    }
    if !r.artifact.is_empty() {
        lines.push((
            "artifact",
            format!("{} ({} x {})", r.artifact, r.rows, r.cols),
        ));
    }
    if !r.statistic.is_empty() {
        lines.push(("statistic", r.statistic.clone()));
        for (name, value) in [
            ("mode", r.mode),
            ("mean", r.mean),
            ("std", r.std),
            ("r_hat", r.r_hat),
            ("map statistic", r.map_statistic),
        ] {
            if let Some(v) = value {
                lines.push((name, format!("{v:.4}")));
            }
        }
        if r.modes.len() > 1 {
            let modes: Vec<String> = r.modes.iter().map(|m| format!("{m:.4}")).collect();
            lines.push((
                "modes",
                format!("{} (multimodal: the mean alone misleads)", modes.join(", ")),
            ));
        }
        for q in &r.quantiles {
            lines.push(("quantile", format!("{:.2}: {:.4}", q.q, q.value)));
        }
        if let Some(h) = &r.histogram {
            for line in histogram_lines(&h.edges, &h.counts) {
                lines.push(("", line));
            }
        }
        if !r.points.is_empty() {
            lines.push((
                "points",
                "beta  J  h  mean±se  variance±se  per_site±se  binder±se".into(),
            ));
            for p in &r.points {
                lines.push((
                    "",
                    format!(
                        "{:.4}  {:.4}  {:.4}  {:.5}±{:.5}  {:.5}±{:.5}  {:.5}±{:.5}  {:.5}±{:.5}",
                        p.beta,
                        p.coupling,
                        p.field,
                        p.mean,
                        p.mean_stderr,
                        p.variance,
                        p.variance_stderr,
                        p.per_site,
                        p.per_site_stderr,
                        p.binder,
                        p.binder_stderr
                    ),
                ));
            }
        }
    }
    if !r.score_column.is_empty() {
        lines.push(("scored", r.score_column.clone()));
        if let Some(e) = r.reference_energy {
            lines.push(("reference", format!("{e:.6}")));
        }
        if let Some(m) = r.mean {
            lines.push(("mean", format!("{m:.6}")));
        }
        if let Some(m) = r.mean_log_likelihood {
            lines.push(("mean log-lik.", format!("{m:.6}")));
        }
        if !r.log_z_source.is_empty() {
            lines.push(("ln Z from", r.log_z_source.clone()));
        }
    }
    lines
}

/// A histogram as horizontal bars, at most 40 characters wide.
fn histogram_lines(edges: &[f64], counts: &[u64]) -> Vec<String> {
    let max = counts.iter().copied().max().unwrap_or(0).max(1);
    counts
        .iter()
        .enumerate()
        .filter_map(|(i, &count)| {
            let (lo, hi) = (edges.get(i)?, edges.get(i + 1)?);
            let width = (count as f64 / max as f64 * 40.0).round() as usize;
            Some(format!(
                "{lo:>9.4} .. {hi:<9.4} {:<40} {count}",
                "#".repeat(width)
            ))
        })
        .collect()
}

fn print_fields(lines: &[(&str, String)]) {
    let width = lines.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (key, value) in lines {
        if !value.is_empty() {
            println!("{key:>width$}  {value}");
        }
    }
}

pub fn print_table(header: &[&str], rows: Vec<Vec<String>>) {
    if rows.is_empty() {
        println!("(none)");
        return;
    }
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let text: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", text.join("  ").trim_end());
    };
    line(header.to_vec());
    for row in &rows {
        line(row.iter().map(String::as_str).collect());
    }
}

pub fn human_bytes(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / (1 << 20) as f64),
        b if b >= 1 << 10 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{b} B"),
    }
}
