//! Store behaviour that the scheduler relies on, against SQLite always and against Postgres
//! when `DATABASE_URL` is set (each test gets a fresh database, dropped afterwards).
use super::*;
use ebm_api::v1::{JobEvent, JobState};

fn new_job(tenant: &str, request_id: &str, spec_hash: &str) -> NewJob {
    NewJob {
        tenant: tenant.into(),
        request_id: request_id.into(),
        spec_hash: spec_hash.into(),
        kind: "train".into(),
        spec: "{}".into(),
        priority: 0,
    }
}

/// Retries without backoff: a reaped job is claimable again at once.
fn retries(max_stalled_attempts: i64) -> RetryPolicy {
    RetryPolicy {
        max_stalled_attempts,
        backoff_base_ms: 0,
        backoff_max_ms: 0,
    }
}

async fn submit(store: &Store, request_id: &str) -> JobRecord {
    match store
        .submit_job(&new_job("t", request_id, "h"))
        .await
        .unwrap()
    {
        Submitted::Created(job) => job,
        Submitted::Existing(job) => panic!("{} existed", job.id),
    }
}

async fn same_request_id_returns_the_same_job(store: Store) {
    let first = submit(&store, "r1").await;
    let again = store
        .submit_job(&new_job("t", "r1", "other"))
        .await
        .unwrap();
    let Submitted::Existing(again) = again else {
        panic!("a second submit created a job")
    };
    assert_eq!(again.id, first.id);
    assert_eq!(
        again.spec_hash, "h",
        "the caller sees the original hash to compare"
    );
    // Another tenant may use the same request id for its own job.
    let other = store.submit_job(&new_job("u", "r1", "h")).await.unwrap();
    let Submitted::Created(other) = other else {
        panic!("tenants share request ids")
    };
    assert_ne!(other.id, first.id);
    assert!(
        store.get_job("u", &first.id).await.unwrap().is_none(),
        "tenant isolation"
    );
}

async fn claim_is_exclusive(store: Store) {
    let ids: Vec<String> = {
        let mut ids = Vec::new();
        for i in 0..6 {
            ids.push(submit(&store, &format!("r{i}")).await.id);
        }
        ids
    };
    // Eight claimers race for six jobs: each job is claimed exactly once.
    let mut tasks = Vec::new();
    for w in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            while let Some(claimed) = store
                .claim_next_job(&format!("w{w}"), 60_000)
                .await
                .unwrap()
            {
                mine.push(claimed.lease.job_id);
            }
            mine
        }));
    }
    let mut claimed = Vec::new();
    for task in tasks {
        claimed.extend(task.await.unwrap());
    }
    claimed.sort();
    let mut expected = ids.clone();
    expected.sort();
    assert_eq!(claimed, expected);
    for id in &ids {
        let job = store.get_job("t", id).await.unwrap().unwrap();
        assert_eq!(job.state, "running");
        assert_eq!(job.attempt, 1);
    }
}

async fn claim_takes_priority_then_age(store: Store) {
    let old = submit(&store, "old").await;
    let mut urgent = new_job("t", "urgent", "h");
    urgent.priority = 5;
    store.submit_job(&urgent).await.unwrap();
    let first = store.claim_next_job("w", 60_000).await.unwrap().unwrap();
    assert_eq!(first.job.request_id, "urgent");
    let second = store.claim_next_job("w", 60_000).await.unwrap().unwrap();
    assert_eq!(second.job.id, old.id);
    assert!(store.claim_next_job("w", 60_000).await.unwrap().is_none());
}

async fn stale_attempt_cannot_write(store: Store) {
    submit(&store, "r").await;
    // Attempt 1 gets a lease that expires at once; the reaper requeues it; attempt 2 claims.
    let stale = store.claim_next_job("w1", -1).await.unwrap().unwrap();
    assert_eq!(
        store.reap_expired_leases(&retries(5)).await.unwrap(),
        vec![stale.lease.job_id.clone()]
    );
    let fresh = store.claim_next_job("w2", 60_000).await.unwrap().unwrap();
    assert_eq!(fresh.lease.attempt, 2);

    let lost = |r: Result<()>| matches!(r, Err(StoreError::LeaseLost));
    assert!(matches!(
        store.heartbeat(&stale.lease, 60_000).await,
        Err(StoreError::LeaseLost)
    ));
    assert!(lost(store.save_checkpoint(&stale.lease, 3, b"stale").await));
    assert!(lost(
        store
            .append_event(&stale.lease, JobEvent::default(), Some(0.9))
            .await
            .map(|_| ())
    ));
    let finish = Finish {
        state: Some(JobState::Succeeded),
        ..Default::default()
    };
    assert!(lost(store.finish_job(&stale.lease, &finish).await));
    assert!(lost(store.requeue_job(&stale.lease, "x").await));

    // The current attempt's writes apply.
    store
        .save_checkpoint(&fresh.lease, 1, b"fresh")
        .await
        .unwrap();
    assert!(!store.heartbeat(&fresh.lease, 60_000).await.unwrap());
    let checkpoint = store
        .load_checkpoint(&fresh.lease.job_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (checkpoint.attempt, checkpoint.data.as_slice()),
        (2, &b"fresh"[..])
    );
    let job = store
        .get_job("t", &fresh.lease.job_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((job.state.as_str(), job.attempt), ("running", 2));
}

async fn reaper_spares_live_leases_and_honours_cancel(store: Store) {
    submit(&store, "live").await;
    submit(&store, "cancelling").await;
    let live = store
        .claim_next_job("w", 60_000)
        .await
        .unwrap()
        .unwrap()
        .job;
    let cancelling = store.claim_next_job("w", -1).await.unwrap().unwrap().job;
    store.cancel_job("t", &cancelling.id).await.unwrap();
    assert_eq!(
        store.reap_expired_leases(&retries(5)).await.unwrap(),
        vec![cancelling.id.clone()]
    );
    let job = store.get_job("t", &cancelling.id).await.unwrap().unwrap();
    assert_eq!(job.state, "cancelled");
    assert_eq!(
        store.get_job("t", &live.id).await.unwrap().unwrap().state,
        "running"
    );
    // A job that keeps losing its worker ends failed rather than looping forever.
    let doomed = submit(&store, "doomed").await;
    for _ in 0..2 {
        store.claim_next_job("w", -1).await.unwrap().unwrap();
        store.reap_expired_leases(&retries(2)).await.unwrap();
    }
    let job = store.get_job("t", &doomed.id).await.unwrap().unwrap();
    assert_eq!(job.state, "failed");
    let error = job.error.unwrap();
    assert!(
        error.contains("2 attempts in a row without progress"),
        "{error}"
    );
}

async fn cancel_queued_is_immediate_and_running_is_flagged(store: Store) {
    let queued = submit(&store, "q").await;
    let job = store.cancel_job("t", &queued.id).await.unwrap().unwrap();
    assert_eq!(job.state, "cancelled");
    assert!(store.claim_next_job("w", 60_000).await.unwrap().is_none());
    let running = submit(&store, "r").await;
    let claimed = store.claim_next_job("w", 60_000).await.unwrap().unwrap();
    let job = store.cancel_job("t", &running.id).await.unwrap().unwrap();
    assert_eq!(job.state, "running");
    assert!(job.cancel_requested);
    assert!(
        store.heartbeat(&claimed.lease, 60_000).await.unwrap(),
        "worker sees the flag"
    );
    assert!(
        store.cancel_job("u", &running.id).await.unwrap().is_none(),
        "tenant isolation"
    );
}

async fn events_are_sequenced_and_replayable(store: Store) {
    let job = submit(&store, "r").await;
    let claimed = store.claim_next_job("w", 60_000).await.unwrap().unwrap();
    let mut tasks = Vec::new();
    for i in 0..10 {
        let (store, lease) = (store.clone(), claimed.lease.clone());
        tasks.push(tokio::spawn(async move {
            let event = JobEvent {
                kind: "progress".into(),
                progress: i as f64 / 10.0,
                ..Default::default()
            };
            store
                .append_event(&lease, event, Some(i as f64 / 10.0))
                .await
                .unwrap()
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let finish = Finish {
        state: Some(JobState::Succeeded),
        result: Some("{}".into()),
        ..Default::default()
    };
    store.finish_job(&claimed.lease, &finish).await.unwrap();
    let events = store.events_after(&job.id, 0, 100).await.unwrap();
    let seqs: Vec<i64> = events.iter().map(|e| e.seq).collect();
    assert_eq!(
        seqs,
        (1..=13).collect::<Vec<_>>(),
        "queued, running, 10 progress, succeeded"
    );
    assert_eq!(events[0].state(), JobState::Queued);
    assert_eq!(events[1].state(), JobState::Running);
    assert_eq!(events[12].state(), JobState::Succeeded);
    assert!(events
        .iter()
        .all(|e| e.job_id == job.id && !e.time.is_empty()));
    let tail = store.events_after(&job.id, 11, 100).await.unwrap();
    assert_eq!(tail.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![12, 13]);
    let job = store.get_job("t", &job.id).await.unwrap().unwrap();
    assert_eq!(
        (job.state.as_str(), job.progress, job.last_seq),
        ("succeeded", 1.0, 13)
    );
}

async fn lists_page_newest_first_with_state_filter(store: Store) {
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(submit(&store, &format!("r{i}")).await.id);
    }
    store.cancel_job("t", &ids[1]).await.unwrap();
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = store.list_jobs("t", None, cursor.clone(), 2).await.unwrap();
        seen.extend(page.iter().map(|j| j.id.clone()));
        if page.len() < 2 {
            break;
        }
        let last = page.last().unwrap();
        cursor = Some((last.created_at, last.id.clone()));
    }
    let mut all = ids.clone();
    all.sort();
    let mut got = seen.clone();
    got.sort();
    assert_eq!(got, all, "every job exactly once across pages");
    let cancelled = store
        .list_jobs("t", Some("cancelled"), None, 10)
        .await
        .unwrap();
    assert_eq!(cancelled.len(), 1);
    assert_eq!(cancelled[0].id, ids[1]);
    assert!(store
        .list_jobs("u", None, None, 10)
        .await
        .unwrap()
        .is_empty());
}

async fn blobs_round_trip_per_tenant(store: Store) {
    let dataset = DatasetRecord {
        id: new_id("ds"),
        tenant: "t".into(),
        name: "digits".into(),
        format: "npy".into(),
        rows: 3,
        cols: 4,
        value_kind: "binary".into(),
        q: 0,
        size_bytes: 5,
        notes: String::new(),
        created_at: now_ms(),
    };
    store.insert_dataset(&dataset, b"bytes").await.unwrap();
    assert_eq!(
        store.get_dataset("t", &dataset.id).await.unwrap(),
        Some(dataset.clone())
    );
    assert_eq!(
        store
            .dataset_bytes("t", &dataset.id)
            .await
            .unwrap()
            .unwrap(),
        b"bytes"
    );
    assert!(store.get_dataset("u", &dataset.id).await.unwrap().is_none());
    assert_eq!(store.list_datasets("t", None, 10).await.unwrap().len(), 1);
    assert!(!store.delete_dataset("u", &dataset.id).await.unwrap());
    assert!(store.delete_dataset("t", &dataset.id).await.unwrap());
    assert!(store.get_dataset("t", &dataset.id).await.unwrap().is_none());

    let model = ModelRecord {
        id: new_id("mdl"),
        tenant: "t".into(),
        name: "m".into(),
        model_type: "bernoulli_rbm".into(),
        job_id: None,
        size_bytes: 3,
        dims: [("visible".to_string(), 64u64)].into(),
        metadata: [("type".to_string(), "bernoulli_rbm".to_string())].into(),
        created_at: now_ms(),
    };
    store.insert_model(&model, b"abc").await.unwrap();
    assert_eq!(
        store.get_model("t", &model.id).await.unwrap(),
        Some(model.clone())
    );
    assert_eq!(
        store.model_bytes("t", &model.id).await.unwrap().unwrap(),
        b"abc"
    );
    assert!(store.model_bytes("u", &model.id).await.unwrap().is_none());
    assert_eq!(store.list_models("t", None, 10).await.unwrap().len(), 1);
}

/// Events without progress, then with progress, on the same connection: both are stored
/// and the progress is recorded (a NULL progress once made Postgres refuse every later
/// progress on that connection: sqlx's Any driver typed the NULL as float4).
async fn progress_after_an_event_without_progress_is_stored(store: Store) {
    let job = submit(&store, "r").await;
    let claimed = store.claim_next_job("w", 60_000).await.unwrap().unwrap();
    let log = |message: &str| JobEvent {
        kind: "log".into(),
        message: message.into(),
        ..Default::default()
    };
    for round in 0..3 {
        store
            .append_event(&claimed.lease, log("no progress"), None)
            .await
            .unwrap();
        let fraction = 0.25 * (round + 1) as f64;
        store
            .append_events(&claimed.lease, vec![log("with progress")], Some(fraction))
            .await
            .unwrap();
        let stored = store.get_job("t", &job.id).await.unwrap().unwrap();
        assert_eq!(stored.progress, fraction);
    }
    let events = store.events_after(&job.id, 0, 100).await.unwrap();
    assert_eq!(events.len(), 2 + 6, "queued, running and six logs");
}

/// Tenant A queues 40 jobs, then tenant B 2: with two claimers, B's jobs start before A's
/// fifth; with a running limit of 1 for A, A never has two running at once.
async fn claim_shares_fairly_between_tenants(store: Store) {
    for i in 0..40 {
        let new = new_job("a", &format!("a{i}"), "h");
        store.submit_job(&new).await.unwrap();
    }
    for i in 0..2 {
        store
            .submit_job(&new_job("b", &format!("b{i}"), "h"))
            .await
            .unwrap();
    }
    // Two workers: each claims, and finishes its job before claiming the next.
    let mut order = Vec::new();
    let mut leases: Vec<Lease> = Vec::new();
    for round in 0..3 {
        for w in 0..2 {
            let claimed = store
                .claim_next_job(&format!("w{w}"), 60_000)
                .await
                .unwrap()
                .unwrap();
            order.push(claimed.job.tenant.clone());
            leases.push(claimed.lease);
        }
        for lease in leases.drain(..) {
            let finish = Finish {
                state: Some(JobState::Succeeded),
                ..Default::default()
            };
            store.finish_job(&lease, &finish).await.unwrap();
        }
        assert!(round < 3);
    }
    let a_fifth = order.iter().enumerate().filter(|(_, t)| *t == "a").nth(4);
    let b_last = order.iter().rposition(|t| t == "b").unwrap();
    assert!(
        a_fifth.is_none_or(|(i, _)| b_last < i),
        "B's jobs start before A's fifth: {order:?}"
    );
    assert_eq!(&order[..2], ["a", "b"], "fewest running first: {order:?}");

    // A at a running limit of 1: eight concurrent claimers take one job of A (and B's
    // remaining none), and nothing else of A while it runs.
    let limits = RunningLimits {
        default: None,
        tenants: vec![("a".into(), Some(1))],
    };
    let mut tasks = Vec::new();
    for w in 0..8 {
        let (store, limits) = (store.clone(), limits.clone());
        tasks.push(tokio::spawn(async move {
            store
                .claim_next_job_within(&format!("x{w}"), 60_000, &limits)
                .await
                .unwrap()
        }));
    }
    let mut claimed = Vec::new();
    for task in tasks {
        claimed.extend(task.await.unwrap());
    }
    let of_a = claimed.iter().filter(|c| c.job.tenant == "a").count();
    assert_eq!(of_a, 1, "A never runs two at once");
}

/// An attempt that checkpointed or finished an epoch is not counted when its worker
/// vanishes; attempts without progress are, with a growing backoff, until the job fails.
async fn only_attempts_without_progress_count(store: Store) {
    let policy = RetryPolicy {
        max_stalled_attempts: 2,
        backoff_base_ms: 300,
        backoff_max_ms: 10_000,
    };
    let job = submit(&store, "preempted").await;
    // Ten attempts, each killed after saving a newer checkpoint or finishing an epoch.
    for attempt in 1..=10 {
        let claimed = store.claim_next_job("w", -1).await.unwrap().unwrap();
        assert_eq!(claimed.lease.attempt, attempt);
        if attempt % 2 == 0 {
            store
                .save_checkpoint(&claimed.lease, attempt as u64, b"state")
                .await
                .unwrap();
        } else {
            let epoch = JobEvent {
                kind: "metrics".into(),
                epoch: attempt as u32,
                ..Default::default()
            };
            store
                .append_event(&claimed.lease, epoch, Some(0.5))
                .await
                .unwrap();
        }
        store.expire_lease_for_test(&job.id).await.unwrap();
        assert_eq!(
            store.reap_expired_leases(&policy).await.unwrap(),
            vec![job.id.clone()]
        );
        let stored = store.get_job("t", &job.id).await.unwrap().unwrap();
        assert_eq!(stored.state, "queued", "attempt {attempt} progressed");
    }
    // Now one without progress: requeued, but not claimable before its backoff.
    store.claim_next_job("w", -1).await.unwrap().unwrap();
    store.reap_expired_leases(&policy).await.unwrap();
    assert!(
        store.claim_next_job("w", -1).await.unwrap().is_none(),
        "backing off"
    );
    tokio::time::sleep(std::time::Duration::from_millis(350)).await;
    store
        .claim_next_job("w", -1)
        .await
        .unwrap()
        .expect("claimable after the backoff");
    store.reap_expired_leases(&policy).await.unwrap();
    let stored = store.get_job("t", &job.id).await.unwrap().unwrap();
    assert_eq!(stored.state, "failed");
    let error = stored.error.unwrap();
    assert!(
        error.contains("2 attempts in a row without progress (attempts 11 to 12"),
        "{error}"
    );
    let events = store.events_after(&job.id, 0, 1000).await.unwrap();
    assert!(
        events
            .iter()
            .any(|e| e.message.contains("backoff of 0.3 s")),
        "the backoff shows in the events"
    );
}

#[test]
fn backoff_doubles_up_to_its_cap() {
    let policy = RetryPolicy {
        max_stalled_attempts: 9,
        backoff_base_ms: 1000,
        backoff_max_ms: 5000,
    };
    let delays: Vec<i64> = (0..5).map(|n| policy.backoff_ms(n)).collect();
    assert_eq!(delays, [0, 1000, 2000, 4000, 5000]);
    assert_eq!(policy.backoff_ms(200), 5000, "no overflow");
}

crate::testing::on_every_database!(
    claim_shares_fairly_between_tenants,
    only_attempts_without_progress_count,
    progress_after_an_event_without_progress_is_stored,
    same_request_id_returns_the_same_job,
    claim_is_exclusive,
    claim_takes_priority_then_age,
    stale_attempt_cannot_write,
    reaper_spares_live_leases_and_honours_cancel,
    cancel_queued_is_immediate_and_running_is_flagged,
    events_are_sequenced_and_replayable,
    lists_page_newest_first_with_state_filter,
    blobs_round_trip_per_tenant,
);
