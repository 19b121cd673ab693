//! Following a job on the terminal: an indicatif progress bar with the epoch and the latest
//! metrics, one line per state change and per epoch above it (so the history stays visible),
//! or plain lines on stderr when it is not a terminal. Returns the job as it ended.
use ebm_client::v1::{Job, JobEvent};
use ebm_client::Client;
use futures_util::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use std::time::Duration;

/// Metric names shown first, in this order; others follow alphabetically.
const PREFERRED: &[&str] = &[
    "reconstruction_error",
    "pseudo_log_likelihood",
    "log_likelihood",
];

pub async fn follow(client: &Client, id: &str, show_progress: bool) -> anyhow::Result<Job> {
    let bar = if show_progress {
        ProgressBar::new(1000)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} {prefix:<14} [{bar:30}] {percent:>3}% {elapsed:>4} {wide_msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.set_prefix(id.to_string());
    bar.enable_steady_tick(Duration::from_millis(200));
    let say = |line: String| {
        if !show_progress {
            return;
        }
        if bar.is_hidden() {
            eprintln!("{line}");
        } else {
            bar.println(line);
        }
    };
    let mut events = client.watch(id, 0);
    while let Some(event) = events.next().await {
        let event = match event {
            Ok(event) => event,
            Err(error) => {
                bar.abandon();
                return Err(error.into());
            }
        };
        if event.progress > 0.0 {
            bar.set_position((event.progress.clamp(0.0, 1.0) * 1000.0) as u64);
        }
        if event.epochs > 0 {
            bar.set_prefix(format!("epoch {}/{}", event.epoch, event.epochs));
        }
        match event.kind.as_str() {
            "state" => {
                let mut line = format!("{} {}", short_time(&event), event.state().name());
                if event.attempt > 1 {
                    line.push_str(&format!(" (attempt {})", event.attempt));
                }
                if !event.message.is_empty() && event.message != event.state().name() {
                    line.push_str(&format!(": {}", event.message));
                }
                say(line);
            }
            "metrics" => {
                let metrics = format_metrics(&event);
                bar.set_message(metrics.clone());
                let epoch = if event.epochs > 0 {
                    format!("epoch {:>3}/{}", event.epoch, event.epochs)
                } else {
                    "metrics".to_string()
                };
                say(format!("{} {epoch}  {metrics}", short_time(&event)));
            }
            "log" if !event.message.is_empty() => {
                say(format!("{} {}", short_time(&event), event.message));
            }
            _ => {}
        }
    }
    let job = client.get_job(id).await?;
    if job.state().name() == "succeeded" {
        bar.set_position(1000);
        bar.finish_and_clear();
    } else {
        bar.abandon_with_message(job.state().name().to_string());
    }
    Ok(job)
}

/// "12:03:04" from an RFC 3339 time, or the whole string if it has another shape.
fn short_time(event: &JobEvent) -> String {
    event
        .time
        .split('T')
        .nth(1)
        .map(|t| t.chars().take(8).collect())
        .unwrap_or_else(|| event.time.clone())
}

fn format_metrics(event: &JobEvent) -> String {
    // Timings (`*_seconds`) and the current learning rate are in the JSON and the job; the
    // line shows what tells a person whether training works.
    let mut names: Vec<&String> = event
        .metrics
        .keys()
        .filter(|n| !n.ends_with("_seconds") && n.as_str() != "learning_rate")
        .collect();
    names.sort_by_key(|n| {
        (
            PREFERRED
                .iter()
                .position(|p| p == n)
                .unwrap_or(PREFERRED.len()),
            n.to_string(),
        )
    });
    names
        .into_iter()
        .map(|n| format!("{n} {}", format_number(event.metrics[n])))
        .collect::<Vec<_>>()
        .join("  ")
}

fn format_number(x: f64) -> String {
    if x != 0.0 && (x.abs() >= 1e5 || x.abs() < 1e-3) {
        format!("{x:.3e}")
    } else {
        format!("{x:.4}")
    }
}
