//! Load benchmark: one real release `ebm-server` process (a child, on free ports, with its own
//! SQLite file in a temporary directory, or a fresh Postgres database on `DATABASE_URL`),
//! driven through the real `ebm_client::Client`. Run by `bench/load_bench.sh`, which builds
//! release and runs both stores; results and their reading: docs/benchmarks.md, section
//! "Load: 200 watchers and a stream of submissions".
//!
//! ```text
//! cargo run --release -p ebm-e2e --example load -- --store sqlite|postgres [options]
//! ```
//!
//! Two tenants (tokens from the server's configuration file):
//! - `watch` submits `--watchers` long training jobs and holds one WatchJob stream open on each
//!   for the whole run, each stream on its own connection (as many `ebm watch` processes
//!   would). Its running-jobs quota is 1, so one of these jobs runs (and emits events) while
//!   the others stay queued without taking the other worker slots.
//! - `load` submits tiny training jobs (well under a second each), which the remaining idle
//!   worker slots take.
//!
//! Phases, in order:
//! 1. `idle`: one tiny job at a time on an otherwise idle server, waiting for each to end.
//! 2. the watchers are opened (every WatchJob call answered before going on).
//! 3. `idle+watchers`: as 1, with the watchers open.
//! 4. `load`: `--submissions` tiny jobs at `--rate` per second, each followed by a watch
//!    stream of its own, while ListJobs is called `--list-rate` times per second.
//! 5. every watched job is cancelled; each watcher must then see its job's `cancelled` state
//!    event and a clean end of stream.
//!
//! "submit -> running" of a job is measured on the client: from the moment the SubmitJob call
//! returns to the moment its `running` state event arrives on a WatchJob stream opened (with
//! `after_seq` 0) right after that. So it includes the WatchJob call itself; when the job was
//! claimed before the stream opened, the event arrives in the stream's replay. The server's
//! own view (the running event's time minus the job's `created_at`, both stored times, 1 ms
//! resolution) is reported beside it as "claim".
//!
//! Prints a human summary on stderr and one Markdown table row on stdout; exits 1 if any
//! stream was dropped (ended with an error, or before its job's terminal state).
use ebm_client::v1::{Job, JobEvent, JobState};
use ebm_client::Client;
use ebm_e2e::process::ServerProcess;
use ebm_e2e::{digits, train_spec, upload, PgDatabase};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const CONFIG: &str = r#"
[tokens]
"watch-token" = "watch"
"load-token" = "load"

[quotas.tenants.watch]
max_running_jobs = 1
"#;

#[derive(Clone, Debug)]
struct Args {
    store: String,
    watchers: usize,
    submissions: usize,
    rate: f64,
    idle: usize,
    workers: u32,
    list_rate: f64,
    /// Epochs of each watched (long) job; enough that the running one outlasts the run.
    long_epochs: u32,
}

impl Args {
    fn parse() -> anyhow::Result<Args> {
        let mut args = Args {
            store: "sqlite".into(),
            watchers: 200,
            submissions: 300,
            rate: 5.0,
            idle: 100,
            workers: 3,
            list_rate: 10.0,
            long_epochs: 100_000,
        };
        let mut it = std::env::args().skip(1);
        while let Some(flag) = it.next() {
            let mut value = || {
                it.next()
                    .ok_or_else(|| anyhow::anyhow!("{flag} needs a value"))
            };
            match flag.as_str() {
                "--store" => args.store = value()?,
                "--watchers" => args.watchers = value()?.parse()?,
                "--submissions" => args.submissions = value()?.parse()?,
                "--rate" => args.rate = value()?.parse()?,
                "--idle" => args.idle = value()?.parse()?,
                "--workers" => args.workers = value()?.parse()?,
                "--list-rate" => args.list_rate = value()?.parse()?,
                "--long-epochs" => args.long_epochs = value()?.parse()?,
                other => anyhow::bail!(
                    "unknown flag {other}; flags: --store sqlite|postgres --watchers N \
                     --submissions N --rate PER_S --idle N --workers N --list-rate PER_S \
                     --long-epochs N"
                ),
            }
        }
        anyhow::ensure!(
            args.store == "sqlite" || args.store == "postgres",
            "--store is sqlite or postgres"
        );
        anyhow::ensure!(
            args.workers >= 2,
            "--workers: at least 2 (one runs a watched job)"
        );
        anyhow::ensure!(
            args.rate > 0.0 && args.list_rate > 0.0,
            "rates must be positive"
        );
        Ok(args)
    }
}

// ---- small statistics ----

/// Nearest-rank percentile (q in 0..=1) of unsorted samples, in milliseconds.
fn percentile(samples: &[f64], q: f64) -> f64 {
    if samples.is_empty() {
        return f64::NAN;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn summary(samples: &[f64]) -> String {
    format!(
        "p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms (n = {})",
        percentile(samples, 0.5),
        percentile(samples, 0.99),
        percentile(samples, 1.0),
        samples.len()
    )
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Milliseconds since the epoch of the server's RFC 3339 times
/// (`2026-12-07T23:59:01.123Z`); None for anything else.
fn epoch_ms(time: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(time)
        .ok()
        .map(|t| t.timestamp_millis())
}

// ---- the server process ----

/// `VmHWM` and `VmRSS` of a process, in KiB.
fn memory_kib(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
    };
    Some((field("VmHWM:")?, field("VmRSS:")?))
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn one_minute_load() -> f64 {
    load_average()
        .split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN)
}

// ---- streams ----

/// How a WatchJob stream ended.
#[derive(Debug)]
enum StreamEnd {
    /// After its job's terminal state event, cleanly.
    Terminal,
    /// Cleanly, but before any terminal state event.
    Early,
    Error(String),
}

impl std::fmt::Display for StreamEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StreamEnd::Terminal => write!(f, "after the terminal state"),
            StreamEnd::Early => write!(f, "cleanly but before a terminal state"),
            StreamEnd::Error(e) => write!(f, "with an error: {e}"),
        }
    }
}

/// Reads a raw WatchJob stream (no reconnection, so a drop shows) to its end; `on_event` sees
/// each event as it arrives. Also returns when the WatchJob call itself returned.
async fn follow(
    client: &Client,
    job_id: &str,
    mut on_event: impl FnMut(&JobEvent),
) -> (StreamEnd, Option<Instant>) {
    let mut stream = match client.watch_once(job_id, 0).await {
        Ok(s) => s,
        Err(e) => return (StreamEnd::Error(format!("WatchJob call: {e}")), None),
    };
    let opened = Some(Instant::now());
    let mut terminal = false;
    loop {
        match stream.message().await {
            Ok(Some(event)) => {
                terminal |= event.kind == "state" && event.state().is_terminal();
                on_event(&event);
            }
            Ok(None) if terminal => return (StreamEnd::Terminal, opened),
            Ok(None) => return (StreamEnd::Early, opened),
            Err(status) => return (StreamEnd::Error(status.to_string()), opened),
        }
    }
}

/// One tiny job's measurement.
struct Submission {
    /// SubmitJob returned -> running event arrived on the stream, ms.
    to_running: Option<f64>,
    /// Running event time - job created_at, both stored by the server, ms.
    claim: Option<f64>,
    /// The SubmitJob call itself, ms.
    submit: f64,
    /// SubmitJob returned -> the WatchJob call returned, ms.
    watch_call: Option<f64>,
    /// SubmitJob returned -> the job's first (queued) state event arrived, ms.
    first_event: Option<f64>,
    end: StreamEnd,
    state: Option<JobState>,
}

/// Submits a tiny job and follows it to its end.
async fn submit_and_follow(client: &Client, spec: ebm_client::v1::JobSpec) -> Submission {
    let before = Instant::now();
    let job: Job = match client.submit(spec, None).await {
        Ok(job) => job,
        Err(e) => {
            return Submission {
                to_running: None,
                claim: None,
                submit: ms(before.elapsed()),
                watch_call: None,
                first_event: None,
                end: StreamEnd::Error(format!("SubmitJob: {e}")),
                state: None,
            }
        }
    };
    let returned = Instant::now();
    let created = epoch_ms(&job.created_at);
    let (mut to_running, mut claim, mut state, mut first_event) = (None, None, None, None);
    let (end, opened) = follow(client, &job.id, |event| {
        if first_event.is_none() {
            first_event = Some(ms(returned.elapsed()));
        }
        if event.kind != "state" {
            return;
        }
        state = Some(event.state());
        if event.state() == JobState::Running && to_running.is_none() {
            to_running = Some(ms(returned.elapsed()));
            claim = created
                .zip(epoch_ms(&event.time))
                .map(|(c, r)| (r - c) as f64);
        }
    })
    .await;
    Submission {
        to_running,
        claim,
        submit: ms(returned.duration_since(before)),
        watch_call: opened.map(|o| ms(o.duration_since(returned))),
        first_event,
        end,
        state,
    }
}

/// Tiny jobs one at a time, each to its end, with a pause so every worker is back waiting.
async fn sequential(
    client: &Client,
    dataset: &str,
    n: usize,
    problems: &mut Vec<String>,
) -> Vec<Submission> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let s = submit_and_follow(client, train_spec(dataset, 4, 1)).await;
        check(&s, problems);
        out.push(s);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    out
}

fn check(s: &Submission, problems: &mut Vec<String>) {
    if !matches!(s.end, StreamEnd::Terminal) {
        problems.push(format!("a tiny job's stream ended {}", s.end));
    }
    if s.state != Some(JobState::Succeeded) {
        problems.push(format!("a tiny job ended {:?}", s.state));
    }
}

fn latencies(subs: &[Submission], f: impl Fn(&Submission) -> Option<f64>) -> Vec<f64> {
    subs.iter().filter_map(f).collect()
}

/// The long job of the watch tenant: PCD on the 1500 training digits with 64 hidden units
/// (an epoch takes a noticeable fraction of a second, so its events come at a few per second).
fn long_spec(dataset: &str, epochs: u32) -> ebm_client::v1::JobSpec {
    let mut spec = train_spec(dataset, 64, epochs);
    spec.name = "load-watched".into();
    spec
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse()?;
    let mut problems = Vec::new();

    // The store: a SQLite file of our own, or a fresh Postgres database (dropped at the end).
    let dir = tempfile::tempdir()?;
    let (_pg, database_url) = if args.store == "postgres" {
        let (db, url) = PgDatabase::create().await.map_err(|e| {
            anyhow::anyhow!("create a database on DATABASE_URL (the server's admin URL): {e}")
        })?;
        (Some(db), url)
    } else {
        let path = dir.path().join("ebm.db");
        (None, format!("sqlite://{}?mode=rwc", path.display()))
    };
    let workers = args.workers.to_string();
    // Production timings (the test helper's defaults are 0.2 s).
    let env = [
        ("EBM__POLL_SECONDS", "1"),
        ("EBM__HEARTBEAT_SECONDS", "1"),
        ("EBM__LEASE_SECONDS", "30"),
    ];
    let (server, _) =
        ServerProcess::start_configured_with_env(&database_url, args.workers, CONFIG, &env).await;
    let pid = server.pid();
    eprintln!(
        "ebm-server pid {pid} on {} ({}), {workers} worker slots; RSS at start {:?} KiB",
        server.url,
        args.store,
        memory_kib(pid).map(|m| m.1)
    );
    let connect = |token: &'static str| {
        let url = server.url.clone();
        async move { Client::connect(url, Some(token.to_string())).await }
    };
    let load = connect("load-token").await?;
    let watch = connect("watch-token").await?;
    let all = digits();
    let tiny_rows = upload(&load, "tiny", &all.slice_rows(0..100)).await;
    let long_rows = upload(&watch, "long", &all.slice_rows(0..1500)).await;

    // Memory and load average, sampled through the run.
    let peak_rss = Arc::new(AtomicU64::new(0));
    let max_load = Arc::new(std::sync::Mutex::new(0.0f64));
    let sampler = {
        let (peak_rss, max_load) = (peak_rss.clone(), max_load.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            let mut n = 0u64;
            loop {
                tick.tick().await;
                if let Some((_, rss)) = memory_kib(pid) {
                    peak_rss.fetch_max(rss, Ordering::Relaxed);
                }
                if n.is_multiple_of(10) {
                    let mut m = max_load.lock().unwrap();
                    *m = m.max(one_minute_load());
                }
                n += 1;
            }
        })
    };
    let load_at_start = load_average();

    // 1. Idle server.
    let idle = sequential(&load, &tiny_rows.id, args.idle, &mut problems).await;
    eprintln!(
        "idle: submit -> running {}",
        summary(&latencies(&idle, |s| s.to_running))
    );

    // 2. The watchers: long jobs of the watch tenant, one stream (and connection) each.
    let opened = Arc::new(tokio::sync::Semaphore::new(0));
    let events_seen = Arc::new(AtomicU64::new(0));
    let mut watched = Vec::with_capacity(args.watchers);
    let mut watchers = Vec::with_capacity(args.watchers);
    for _ in 0..args.watchers {
        let job = watch
            .submit(long_spec(&long_rows.id, args.long_epochs), None)
            .await?;
        watched.push(job.id.clone());
        let own = connect("watch-token").await?;
        let (opened, events_seen) = (opened.clone(), events_seen.clone());
        watchers.push(tokio::spawn(async move {
            let mut stream = match own.watch_once(&job.id, 0).await {
                Ok(s) => s,
                Err(e) => {
                    opened.add_permits(1);
                    return (StreamEnd::Error(format!("WatchJob call: {e}")), None);
                }
            };
            opened.add_permits(1);
            let mut last_state = None;
            loop {
                match stream.message().await {
                    Ok(Some(event)) => {
                        events_seen.fetch_add(1, Ordering::Relaxed);
                        if event.kind == "state" {
                            last_state = Some(event.state());
                        }
                    }
                    Ok(None) if last_state.is_some_and(|s| s.is_terminal()) => {
                        return (StreamEnd::Terminal, last_state)
                    }
                    Ok(None) => return (StreamEnd::Early, last_state),
                    Err(status) => return (StreamEnd::Error(status.to_string()), last_state),
                }
            }
        }));
    }
    let _ = opened.acquire_many(args.watchers as u32).await?;
    let watching_since = Instant::now();
    eprintln!("{} watchers open", args.watchers);

    // 3. Idle workers, with the watchers open.
    let idle_watched = sequential(&load, &tiny_rows.id, args.idle, &mut problems).await;
    eprintln!(
        "idle + {} watchers: submit -> running {}",
        args.watchers,
        summary(&latencies(&idle_watched, |s| s.to_running))
    );

    // 4. A stream of submissions at a fixed rate, and ListJobs alongside.
    let load_started = Instant::now();
    let stop_listing = Arc::new(AtomicBool::new(false));
    let lister = {
        let (client, stop) = (connect("load-token").await?, stop_listing.clone());
        let period = Duration::from_secs_f64(1.0 / args.list_rate);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let (mut times, mut errors) = (Vec::new(), Vec::new());
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                let t = Instant::now();
                match client.list_jobs_page(None, 100, String::new()).await {
                    Ok(page) if !page.jobs.is_empty() => times.push(ms(t.elapsed())),
                    Ok(_) => errors.push("ListJobs answered an empty page".to_string()),
                    Err(e) => errors.push(e.to_string()),
                }
            }
            (times, errors)
        })
    };
    let period = Duration::from_secs_f64(1.0 / args.rate);
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut running = Vec::with_capacity(args.submissions);
    for _ in 0..args.submissions {
        tick.tick().await;
        let (client, dataset) = (load.clone(), tiny_rows.id.clone());
        running.push(tokio::spawn(async move {
            submit_and_follow(&client, train_spec(&dataset, 4, 1)).await
        }));
    }
    let mut loaded = Vec::with_capacity(running.len());
    for task in running {
        let s = task.await?;
        check(&s, &mut problems);
        loaded.push(s);
    }
    stop_listing.store(true, Ordering::Relaxed);
    let (list_times, list_errors) = lister.await?;
    let load_seconds = load_started.elapsed().as_secs_f64();
    let load_at_end = load_average();
    problems.extend(list_errors.iter().map(|e| format!("ListJobs: {e}")));
    eprintln!(
        "load ({} submissions at {}/s, {load_seconds:.1} s): submit -> running {}",
        args.submissions,
        args.rate,
        summary(&latencies(&loaded, |s| s.to_running))
    );

    // 5. Cancel the watched jobs; each stream must see its job's end.
    for id in &watched {
        watch.cancel(id).await?;
    }
    let mut dropped = 0;
    let mut cancelled = 0;
    for task in watchers {
        match tokio::time::timeout(Duration::from_secs(120), task).await {
            Ok(Ok((StreamEnd::Terminal, state))) => {
                if state == Some(JobState::Cancelled) {
                    cancelled += 1;
                } else {
                    problems.push(format!("a watched job ended {state:?}, not cancelled"));
                }
            }
            Ok(Ok((end, state))) => {
                dropped += 1;
                problems.push(format!("a watcher ended {end} (last state {state:?})"));
            }
            Ok(Err(e)) => {
                dropped += 1;
                problems.push(format!("a watcher task failed: {e}"));
            }
            Err(_) => {
                dropped += 1;
                problems.push("a watcher did not end within 120 s of the cancel".into());
            }
        }
    }
    let watched_seconds = watching_since.elapsed().as_secs_f64();
    let tiny_dropped = idle
        .iter()
        .chain(&idle_watched)
        .chain(&loaded)
        .filter(|s| !matches!(s.end, StreamEnd::Terminal))
        .count();
    sampler.abort();
    let (hwm, rss_end) = memory_kib(pid).unwrap_or((0, 0));
    let peak_sampled = peak_rss.load(Ordering::Relaxed);
    let max_load = *max_load.lock().unwrap();
    drop(server);

    let to_running = |v: &[Submission]| latencies(v, |s| s.to_running);
    let claims = |v: &[Submission]| latencies(v, |s| s.claim);
    let submits = |v: &[Submission]| latencies(v, |s| Some(s.submit));
    for (name, v) in [
        ("idle", &idle),
        ("idle+watchers", &idle_watched),
        ("load", &loaded),
    ] {
        eprintln!(
            "{name}: submit -> running {}; claim (server times) {}; SubmitJob {}; \
             WatchJob call {}; first event {}",
            summary(&to_running(v)),
            summary(&claims(v)),
            summary(&submits(v)),
            summary(&latencies(v, |s| s.watch_call)),
            summary(&latencies(v, |s| s.first_event)),
        );
    }
    eprintln!(
        "ListJobs (page of 100) under load: {}",
        summary(&list_times)
    );
    eprintln!(
        "watchers: {} open for {watched_seconds:.1} s, {} events delivered, {cancelled} saw \
         their job cancelled and a clean end, {dropped} dropped; tiny-job streams dropped: \
         {tiny_dropped} of {}",
        args.watchers,
        events_seen.load(Ordering::Relaxed),
        idle.len() + idle_watched.len() + loaded.len()
    );
    eprintln!(
        "server memory: VmHWM {hwm} KiB, VmRSS at end {rss_end} KiB (sampled peak {peak_sampled} \
         KiB); load average at start {load_at_start}, end of load {load_at_end}, highest \
         1-min during the run {max_load:.2}"
    );
    for p in &problems {
        eprintln!("PROBLEM: {p}");
    }

    let pair = |v: &[f64]| format!("{:.1} / {:.1}", percentile(v, 0.5), percentile(v, 0.99));
    println!(
        "| {} | {} (n={}) | {} (n={}) | {} (n={}, {}/s) | {} | {} (n={}) | {} of {} (+{} of {} tiny) | {:.0} / {:.0} MiB | {:.2} |",
        args.store,
        pair(&to_running(&idle)),
        idle.len(),
        pair(&to_running(&idle_watched)),
        idle_watched.len(),
        pair(&to_running(&loaded)),
        loaded.len(),
        args.rate,
        pair(&claims(&loaded)),
        pair(&list_times),
        list_times.len(),
        dropped,
        args.watchers,
        tiny_dropped,
        idle.len() + idle_watched.len() + loaded.len(),
        hwm as f64 / 1024.0,
        rss_end as f64 / 1024.0,
        max_load,
    );
    if dropped > 0 || tiny_dropped > 0 {
        std::process::exit(1);
    }
    Ok(())
}
