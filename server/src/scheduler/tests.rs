//! The scheduler against a real store and real (small) training jobs: cancellation stops a
//! running job within a second or two, and a shutdown checkpoints and requeues a running job,
//! which a fresh scheduler then resumes from its checkpoint.
use super::*;
use crate::store::{new_id, now_ms, DatasetRecord, NewJob, Submitted};
use ebm_api::v1;
use std::time::Instant;

/// A binary data set: 200 rows of 16 columns, two noisy prototypes.
async fn upload_binary_dataset(store: &Store) -> String {
    let mut csv = String::new();
    for row in 0..200u32 {
        let cells: Vec<String> = (0..16u32)
            .map(|col| {
                let prototype = (row % 2 == 0) == (col < 8);
                let flip = (row * 31 + col * 17) % 11 == 0;
                ((prototype != flip) as u8).to_string()
            })
            .collect();
        csv.push_str(&cells.join(","));
        csv.push('\n');
    }
    let id = new_id("ds");
    let record = DatasetRecord {
        id: id.clone(),
        tenant: "default".into(),
        name: "prototypes".into(),
        format: "csv".into(),
        rows: 200,
        cols: 16,
        value_kind: "binary".into(),
        q: 0,
        size_bytes: csv.len() as i64,
        notes: String::new(),
        created_at: now_ms(),
    };
    store.insert_dataset(&record, csv.as_bytes()).await.unwrap();
    id
}

async fn submit_train(store: &Store, dataset: &str, epochs: u32) -> String {
    let spec = v1::JobSpec {
        kind: "train".into(),
        seed: 7,
        dataset: dataset.into(),
        model_config: Some(v1::ModelConfig {
            r#type: "bernoulli_rbm".into(),
            hidden: Some(8),
            ..Default::default()
        }),
        train: Some(v1::TrainConfig {
            method: "pcd".into(),
            epochs: Some(epochs),
            batch_size: Some(10),
            ..Default::default()
        }),
        ..Default::default()
    };
    let new = NewJob {
        tenant: "default".into(),
        request_id: new_id("req"),
        spec_hash: "h".into(),
        kind: "train".into(),
        spec: serde_json::to_string(&spec).unwrap(),
        priority: 0,
    };
    match store.submit_job(&new).await.unwrap() {
        Submitted::Created(job) => job.id,
        Submitted::Existing(_) => unreachable!("fresh request id"),
    }
}

fn test_config() -> Arc<Config> {
    let dir = std::env::temp_dir();
    Arc::new(Config::for_tests(&dir))
}

/// Polls the job until `done` holds (or fails the test after `limit`).
async fn wait_for(
    store: &Store,
    id: &str,
    limit: Duration,
    done: impl Fn(&crate::store::JobRecord, &[v1::JobEvent]) -> bool,
) -> crate::store::JobRecord {
    let started = Instant::now();
    loop {
        let job = store.get_job("default", id).await.unwrap().unwrap();
        let events = store.events_after(id, 0, 10_000).await.unwrap();
        if done(&job, &events) {
            return job;
        }
        assert!(
            started.elapsed() < limit,
            "timed out in state {} with events {:?}",
            job.state,
            events
                .iter()
                .map(|e| (&e.kind, &e.message))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn epochs_done(events: &[v1::JobEvent]) -> u32 {
    events
        .iter()
        .filter(|e| e.kind == "metrics")
        .map(|e| e.epoch)
        .max()
        .unwrap_or(0)
}

async fn cancel_stops_a_running_job_quickly(store: Store) {
    let dataset = upload_binary_dataset(&store).await;
    let id = submit_train(&store, &dataset, 1_000_000).await;
    let running = RunningJobs::default();
    let shutdown = CancellationToken::new();
    let scheduler = Scheduler::start(
        store.clone(),
        test_config(),
        running.clone(),
        shutdown.clone(),
    );
    wait_for(&store, &id, Duration::from_secs(60), |_, events| {
        epochs_done(events) >= 1
    })
    .await;
    // Cancel as another process would: only the stored flag, seen at the next heartbeat.
    let requested = Instant::now();
    store.cancel_job("default", &id).await.unwrap();
    let job = wait_for(&store, &id, Duration::from_secs(10), |job, _| {
        job.state != "running"
    })
    .await;
    assert_eq!(job.state, "cancelled");
    let took = requested.elapsed();
    assert!(took < Duration::from_secs(2), "cancel took {took:?}");
    shutdown.cancel();
    scheduler.wait().await;
    assert!(running.is_empty());
}

async fn shutdown_requeues_with_a_checkpoint_and_resumes(store: Store) {
    let dataset = upload_binary_dataset(&store).await;
    let id = submit_train(&store, &dataset, 1_000_000).await;
    let shutdown = CancellationToken::new();
    let scheduler = Scheduler::start(
        store.clone(),
        test_config(),
        RunningJobs::default(),
        shutdown.clone(),
    );
    wait_for(&store, &id, Duration::from_secs(60), |_, events| {
        epochs_done(events) >= 2
    })
    .await;
    shutdown.cancel();
    scheduler.wait().await;
    let job = store.get_job("default", &id).await.unwrap().unwrap();
    assert_eq!((job.state.as_str(), job.attempt), ("queued", 1));
    let checkpoint = store
        .load_checkpoint(&id)
        .await
        .unwrap()
        .expect("a checkpoint");
    assert_eq!(checkpoint.attempt, 1);
    assert!(checkpoint.epoch >= 2);
    let before = epochs_done(&store.events_after(&id, 0, 10_000).await.unwrap());

    // A fresh scheduler claims it again and continues from the checkpoint.
    let shutdown = CancellationToken::new();
    let running = RunningJobs::default();
    let scheduler = Scheduler::start(
        store.clone(),
        test_config(),
        running.clone(),
        shutdown.clone(),
    );
    let job = wait_for(&store, &id, Duration::from_secs(60), |job, events| {
        job.attempt == 2 && epochs_done(events) > before
    })
    .await;
    let events = store.events_after(&id, 0, 10_000).await.unwrap();
    let resumed = events
        .iter()
        .find(|e| e.kind == "log" && e.message.starts_with("resumed"))
        .expect("a resume event");
    assert_eq!(resumed.attempt, 2);
    let first_epoch_of_attempt_2 = events
        .iter()
        .filter(|e| e.kind == "metrics" && e.attempt == 2)
        .map(|e| e.epoch)
        .min()
        .unwrap();
    assert_eq!(
        first_epoch_of_attempt_2,
        checkpoint.epoch as u32 + 1,
        "training continues after the checkpointed epoch instead of starting over"
    );
    assert_eq!(job.state, "running");
    running.stop(&id, crate::jobs::StopReason::Cancel);
    store.cancel_job("default", &id).await.unwrap();
    wait_for(&store, &id, Duration::from_secs(10), |job, _| {
        job.state == "cancelled"
    })
    .await;
    shutdown.cancel();
    scheduler.wait().await;
}

async fn a_short_job_succeeds_with_a_model(store: Store) {
    let dataset = upload_binary_dataset(&store).await;
    let id = submit_train(&store, &dataset, 3).await;
    let shutdown = CancellationToken::new();
    let scheduler = Scheduler::start(
        store.clone(),
        test_config(),
        RunningJobs::default(),
        shutdown.clone(),
    );
    let job = wait_for(&store, &id, Duration::from_secs(60), |job, _| {
        ebm_api::JobState::from_name(&job.state).is_some_and(|s| s.is_terminal())
    })
    .await;
    assert_eq!(job.state, "succeeded", "error: {:?}", job.error);
    let result: v1::JobResult = serde_json::from_str(job.result.as_deref().unwrap()).unwrap();
    let model = store
        .get_model("default", &result.model_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(model.model_type, "bernoulli_rbm");
    assert_eq!(model.job_id.as_deref(), Some(id.as_str()));
    let events = store.events_after(&id, 0, 10_000).await.unwrap();
    assert_eq!(epochs_done(&events), 3);
    let seqs: Vec<i64> = events.iter().map(|e| e.seq).collect();
    assert_eq!(
        seqs,
        (1..=seqs.len() as i64).collect::<Vec<_>>(),
        "gapless sequence"
    );
    shutdown.cancel();
    scheduler.wait().await;
}

async fn divergence_fails_the_job_and_keeps_the_last_good_checkpoint(store: Store) {
    // Huge real values and a huge learning rate: a Gaussian RBM overflows in a few updates.
    let csv: String = (0..50)
        .map(|row| {
            let cells: Vec<String> = (0..4)
                .map(|col| {
                    if (row * 4 + col) % 3 == 0 {
                        "3e18"
                    } else {
                        "-2e18"
                    }
                    .to_string()
                })
                .collect();
            cells.join(",") + "\n"
        })
        .collect();
    let id = new_id("ds");
    let record = DatasetRecord {
        id: id.clone(),
        tenant: "default".into(),
        name: "huge".into(),
        format: "csv".into(),
        rows: 50,
        cols: 4,
        value_kind: "real".into(),
        q: 0,
        size_bytes: csv.len() as i64,
        notes: String::new(),
        created_at: now_ms(),
    };
    store.insert_dataset(&record, csv.as_bytes()).await.unwrap();
    let spec = v1::JobSpec {
        kind: "train".into(),
        seed: 1,
        dataset: id,
        model_config: Some(v1::ModelConfig {
            r#type: "gaussian_rbm".into(),
            hidden: Some(3),
            standardize: Some(false),
            ..Default::default()
        }),
        train: Some(v1::TrainConfig {
            epochs: Some(3),
            batch_size: Some(10),
            learning_rate: Some(50.0),
            ..Default::default()
        }),
        ..Default::default()
    };
    let new = NewJob {
        tenant: "default".into(),
        request_id: "diverge".into(),
        spec_hash: "h".into(),
        kind: "train".into(),
        spec: serde_json::to_string(&spec).unwrap(),
        priority: 0,
    };
    let Submitted::Created(job) = store.submit_job(&new).await.unwrap() else {
        unreachable!()
    };
    let shutdown = CancellationToken::new();
    let scheduler = Scheduler::start(
        store.clone(),
        test_config(),
        RunningJobs::default(),
        shutdown.clone(),
    );
    let job = wait_for(&store, &job.id, Duration::from_secs(60), |job, _| {
        ebm_api::JobState::from_name(&job.state).is_some_and(|s| s.is_terminal())
    })
    .await;
    assert_eq!(job.state, "failed");
    let error = job.error.unwrap();
    assert!(error.contains("diverged"), "{error}");
    // Any checkpoint kept is from an epoch that completed (and reported metrics) before the
    // divergence, never from the diverged state.
    let events = store.events_after(&job.id, 0, 1000).await.unwrap();
    if let Some(checkpoint) = store.load_checkpoint(&job.id).await.unwrap() {
        assert!(checkpoint.epoch as u32 <= epochs_done(&events));
    }
    assert_eq!(
        events.last().unwrap().message,
        error,
        "the failure event says why"
    );
    shutdown.cancel();
    scheduler.wait().await;
}

async fn a_worker_that_lost_its_lease_stops_without_writing(store: Store) {
    let dataset = upload_binary_dataset(&store).await;
    let id = submit_train(&store, &dataset, 1_000_000).await;
    let shutdown = CancellationToken::new();
    let running = RunningJobs::default();
    let scheduler = Scheduler::start(
        store.clone(),
        test_config(),
        running.clone(),
        shutdown.clone(),
    );
    wait_for(&store, &id, Duration::from_secs(60), |_, events| {
        epochs_done(events) >= 1
    })
    .await;
    // The worker looks dead to the rest of the system: its job is requeued and claimed by
    // another worker (attempt 2), which this test plays by hand.
    // (the worker's heartbeat may renew the lease between the two calls: then again)
    let started = Instant::now();
    loop {
        store.expire_lease_for_test(&id).await.unwrap();
        let reaped = store
            .reap_expired_leases(&test_config().retries.policy())
            .await
            .unwrap();
        if reaped == vec![id.clone()] {
            break;
        }
        assert!(reaped.is_empty(), "reaped other jobs: {reaped:?}");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "the expired lease was never reaped"
        );
    }
    // Postgres claims with SKIP LOCKED: while the old worker's heartbeat or event write
    // holds the row for a moment, a claim skips it, so retry briefly (the old worker itself
    // waits a poll interval after losing its lease before it claims again).
    let started = Instant::now();
    let thief = loop {
        if let Some(claimed) = store
            .claim_next_job("other-process/w0", 60_000)
            .await
            .unwrap()
        {
            break claimed;
        }
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "the requeued job could not be claimed"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    assert_eq!(thief.lease.attempt, 2);
    let seq_at_takeover = store
        .get_job("default", &id)
        .await
        .unwrap()
        .unwrap()
        .last_seq;
    // The first worker notices at its next heartbeat and stops its thread.
    let started = Instant::now();
    while !running.is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the old worker keeps running"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let job = store.get_job("default", &id).await.unwrap().unwrap();
    assert_eq!((job.state.as_str(), job.attempt), ("running", 2));
    assert_eq!(job.lease_owner.as_deref(), Some("other-process/w0"));
    assert_eq!(
        job.last_seq, seq_at_takeover,
        "no event written by the stale attempt"
    );
    if let Some(checkpoint) = store.load_checkpoint(&id).await.unwrap() {
        assert_eq!(
            checkpoint.attempt, 1,
            "only attempt 1 ever checkpointed, before takeover"
        );
    }
    shutdown.cancel();
    scheduler.wait().await;
}

crate::testing::on_every_database!(
    divergence_fails_the_job_and_keeps_the_last_good_checkpoint,
    a_worker_that_lost_its_lease_stops_without_writing,
    cancel_stops_a_running_job_quickly,
    shutdown_requeues_with_a_checkpoint_and_resumes,
    a_short_job_succeeds_with_a_model,
);
