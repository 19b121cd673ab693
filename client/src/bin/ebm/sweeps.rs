//! `ebm sweep` and `ebm sweeps list | get | cancel`: submitting a grid of variants as one
//! request, and showing a sweep as a table of its variants (job id, grid values, state,
//! final metrics), optionally sorted by a metric (see `ebm_client::sweep` for the order).
use crate::output::{print_table, Printer};
use ebm_api::json::{job_json, to_json};
use ebm_client::sweep::{sort_rows, sweep_rows, SweepRow};
use ebm_client::v1::Sweep;
use serde_json::{json, Value};
use std::collections::BTreeSet;

/// A sweep as JSON: its fields, `jobs` as job JSON (lower-case states), and `rows`.
pub fn sweep_json(sweep: &Sweep, rows: &[SweepRow]) -> Value {
    let mut value = to_json(sweep);
    if let Value::Object(map) = &mut value {
        map.insert(
            "jobs".into(),
            Value::Array(sweep.jobs.iter().map(job_json).collect()),
        );
        if !rows.is_empty() {
            map.insert(
                "rows".into(),
                Value::Array(rows.iter().map(SweepRow::json).collect()),
            );
        }
    }
    value
}

/// Prints one sweep: JSON, or a header and the variants' table; `sort` orders the rows.
pub fn print_sweep(
    printer: &Printer,
    sweep: &Sweep,
    sort: Option<&str>,
    verb: &str,
) -> anyhow::Result<()> {
    let mut rows = sweep_rows(sweep);
    if let Some(metric) = sort {
        sort_rows(&mut rows, metric)?;
    }
    if printer.is_json() {
        printer.json(&sweep_json(sweep, &rows));
        return Ok(());
    }
    if !verb.is_empty() {
        println!("{verb} {} ({} jobs)", sweep.id, sweep.jobs.len());
    }
    let grid: Vec<String> = rows
        .first()
        .map(|r| r.grid.keys().cloned().collect())
        .unwrap_or_default();
    let metrics: BTreeSet<String> = rows
        .iter()
        .flat_map(|r| r.metrics.keys().cloned())
        .collect();
    let mut header: Vec<String> = vec!["JOB".into()];
    header.extend(grid.iter().cloned());
    header.push("STATE".into());
    header.extend(metrics.iter().cloned());
    let table = rows
        .iter()
        .map(|r| {
            let mut cells = vec![r.job_id.clone()];
            cells.extend(
                grid.iter()
                    .map(|k| r.grid.get(k).cloned().unwrap_or_default()),
            );
            cells.push(r.state.clone());
            cells.extend(metrics.iter().map(|m| {
                r.metrics
                    .get(m)
                    .map(|x| format!("{x:.6}"))
                    .unwrap_or_else(|| "-".into())
            }));
            cells
        })
        .collect();
    let header: Vec<&str> = header.iter().map(String::as_str).collect();
    print_table(&header, table);
    Ok(())
}

/// Prints the sweep list.
pub fn print_sweeps(printer: &Printer, sweeps: &[Sweep]) {
    if printer.is_json() {
        return printer.json(&json!({ "sweeps": sweeps.iter().map(to_json).collect::<Vec<_>>() }));
    }
    let rows = sweeps
        .iter()
        .map(|s| {
            let mut states: Vec<String> = s
                .job_states
                .iter()
                .map(|(state, n)| format!("{state} {n}"))
                .collect();
            states.sort();
            let fields: Vec<&str> = s.grid.iter().map(|a| a.field.as_str()).collect();
            vec![
                s.id.clone(),
                s.variants.to_string(),
                fields.join(" x "),
                states.join(", "),
                s.created_at.clone(),
            ]
        })
        .collect();
    print_table(&["ID", "JOBS", "GRID", "STATES", "CREATED"], rows);
}
