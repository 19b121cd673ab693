//! Fair share between tenants through the real `ebm-server` binary, with tokens from its
//! configuration file: tenant A's 40 queued jobs do not hold back tenant B's 2, and A's
//! running-jobs limit of 1 keeps A to one job at a time while the second slot serves B.
//!
//! The 42 jobs are queued first by a server process with no workers, then one process with
//! 2 worker slots runs them on the same SQLite store: every claim then sees the whole queue
//! (had the workers run while A was still submitting, A's first jobs would have run before B
//! submitted at all, and the order would say nothing about fairness).
use ebm_api::v1::{JobEvent, JobState};
use ebm_client::Client;
use ebm_e2e::process::ServerProcess;
use ebm_e2e::*;
use std::time::Duration;

const CONFIG: &str = r#"
[tokens]
"a-token" = "tenant-a"
"b-token" = "tenant-b"
"#;

/// One job's run: when it started and when it ended, as the store's event times
/// (RFC 3339 UTC with milliseconds, one fixed width, so text order is time order).
struct Run {
    started: String,
    ended: String,
}

fn run_of(events: &[JobEvent]) -> Run {
    let time_of = |wanted: &dyn Fn(JobState) -> bool| {
        events
            .iter()
            .find(|e| e.kind == "state" && wanted(e.state()))
            .map(|e| e.time.clone())
            .unwrap_or_else(|| panic!("no such state event in {events:?}"))
    };
    let last = events.last().expect("events");
    assert_eq!(last.state(), JobState::Succeeded, "{events:?}");
    Run {
        started: time_of(&|s| s == JobState::Running),
        ended: time_of(&|s| s == JobState::Succeeded),
    }
}

/// Queues 40 jobs of A, then 2 of B, with no worker running; then runs them with 2 worker
/// slots (plus `quotas`, TOML) and returns the runs of A's and B's jobs in submit order.
async fn queue_then_run(quotas: &str) -> (Vec<Run>, Vec<Run>) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("ebm.db").display());
    let config = format!("{CONFIG}\n{quotas}");
    let (api, _) = ServerProcess::start_configured(&url, 0, &config).await;
    let a = Client::connect(api.url.clone(), Some("a-token".into()))
        .await
        .unwrap();
    let b = Client::connect(api.url.clone(), Some("b-token".into()))
        .await
        .unwrap();
    let rows = digits().slice_rows(0..40);
    let a_data = upload(&a, "a", &rows).await;
    let b_data = upload(&b, "b", &rows).await;
    let mut a_jobs = Vec::new();
    for _ in 0..40 {
        a_jobs.push(
            a.submit(train_spec(&a_data.id, 2, 1), None)
                .await
                .unwrap()
                .id,
        );
    }
    let mut b_jobs = Vec::new();
    for _ in 0..2 {
        b_jobs.push(
            b.submit(train_spec(&b_data.id, 2, 1), None)
                .await
                .unwrap()
                .id,
        );
    }
    drop(api);

    let (worker, _) = ServerProcess::start_configured(&url, 2, &config).await;
    let a = Client::connect(worker.url.clone(), Some("a-token".into()))
        .await
        .unwrap();
    let b = Client::connect(worker.url.clone(), Some("b-token".into()))
        .await
        .unwrap();
    let mut runs = (Vec::new(), Vec::new());
    for (client, jobs, into) in [(&a, &a_jobs, &mut runs.0), (&b, &b_jobs, &mut runs.1)] {
        for id in jobs {
            into.push(run_of(
                &events_to_end(client, id, Duration::from_secs(120)).await,
            ));
        }
    }
    drop(worker);
    runs
}

/// The claim takes the tenant with the fewest running jobs first: B's two jobs start while
/// A's first few run (A1 and B1 at once, then B2 as soon as B1 ends: B then has none
/// running and A one), long before A's fifth job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_tenant_is_not_starved_by_a_big_queue() {
    let (a, b) = queue_then_run("").await;
    let mut a_starts: Vec<&str> = a.iter().map(|r| r.started.as_str()).collect();
    a_starts.sort();
    let b_last = b.iter().map(|r| r.started.as_str()).max().unwrap();
    assert!(
        b_last < a_starts[4],
        "B's last job started at {b_last}, after A's fifth at {}; A's starts: {a_starts:?}",
        a_starts[4]
    );
}

/// With a running-jobs limit of 1 for A, A's runs never overlap, although the second slot
/// was free: B's jobs finished before A's last job started.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_jobs_limit_of_one_is_kept() {
    let (mut a, b) = queue_then_run("[quotas.tenants.tenant-a]\nmax_running_jobs = 1\n").await;
    a.sort_by(|x, y| x.started.cmp(&y.started));
    for pair in a.windows(2) {
        assert!(
            pair[1].started >= pair[0].ended,
            "A ran two jobs at once: one from {} to {}, the next from {}",
            pair[0].started,
            pair[0].ended,
            pair[1].started
        );
    }
    let b_end = b.iter().map(|r| r.ended.as_str()).max().unwrap();
    let a_last = a.last().unwrap().started.as_str();
    assert!(
        b_end < a_last,
        "B's jobs ended at {b_end}, not before A's last start at {a_last}"
    );
}
