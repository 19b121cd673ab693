//! Restarting the server on the same store keeps every job, event, data set and model, and a
//! job that was running at shutdown is checkpointed, requeued and finished by the new server.
use ebm_client::v1::JobState;
use ebm_client::Client;
use ebm_e2e::*;
use std::time::Duration;

on_both_stores!(restart_keeps_jobs_events_datasets_and_models);

/// Everything a client can see, in comparable form.
#[derive(Debug, PartialEq)]
struct Snapshot {
    jobs: Vec<ebm_client::v1::Job>,
    events: Vec<Vec<ebm_client::v1::JobEvent>>,
    datasets: Vec<ebm_client::v1::Dataset>,
    models: Vec<ebm_client::v1::Model>,
    model_files: Vec<Vec<u8>>,
}

async fn snapshot(client: &Client) -> Snapshot {
    let mut jobs = client.list_jobs(None).await.expect("list jobs");
    jobs.sort_by(|a, b| a.id.cmp(&b.id));
    let mut events = Vec::new();
    for job in &jobs {
        events.push(events_to_end(client, &job.id, Duration::from_secs(60)).await);
    }
    let mut datasets = client.list_datasets().await.expect("list datasets");
    datasets.sort_by(|a, b| a.id.cmp(&b.id));
    let mut models = client.list_models().await.expect("list models");
    models.sort_by(|a, b| a.id.cmp(&b.id));
    let mut model_files = Vec::new();
    for model in &models {
        model_files.push(client.download_model(&model.id).await.expect("download"));
    }
    Snapshot {
        jobs,
        events,
        datasets,
        models,
        model_files,
    }
}

async fn restart_keeps_jobs_events_datasets_and_models(kind: StoreKind) {
    let mut server = TestServer::start(kind).await;
    let (train, _) = digits_split();
    let dataset = upload(&server.client, "digits", &train).await;
    upload(&server.client, "digits-small", &train.slice_rows(0..100)).await;
    let client = server.client.clone();
    let done = client
        .submit(train_spec(&dataset.id, 16, 2), None)
        .await
        .expect("submit");
    events_to_end(&client, &done.id, Duration::from_secs(120)).await;
    let cancelled = client
        .submit(train_spec(&dataset.id, 16, 5000), None)
        .await
        .expect("submit");
    wait_until(
        &client,
        &cancelled.id,
        Duration::from_secs(60),
        is_state(JobState::Running),
    )
    .await;
    client.cancel(&cancelled.id).await.expect("cancel");
    events_to_end(&client, &cancelled.id, Duration::from_secs(30)).await;
    let before = snapshot(&client).await;
    assert_eq!(
        (
            before.jobs.len(),
            before.datasets.len(),
            before.models.len()
        ),
        (2, 2, 1)
    );

    // A job in the middle of training when the server stops.
    let interrupted = client
        .submit(train_spec(&dataset.id, 32, 20), None)
        .await
        .expect("submit");
    wait_until(&client, &interrupted.id, Duration::from_secs(60), |j| {
        j.state() == JobState::Running && j.progress > 0.0
    })
    .await;

    server.restart().await;
    let client = server.client.clone();
    let job = client
        .get_job(&interrupted.id)
        .await
        .expect("the interrupted job survives");
    assert!(
        matches!(
            job.state(),
            JobState::Queued | JobState::Running | JobState::Succeeded
        ),
        "requeued, not lost: {}",
        job.state().name()
    );
    let events = events_to_end(&client, &interrupted.id, Duration::from_secs(300)).await;
    assert_eq!(events.last().map(|e| e.state()), Some(JobState::Succeeded));
    let job = client.get_job(&interrupted.id).await.expect("get");
    assert!(
        job.attempt >= 2,
        "resumed in a second attempt, got attempt {}",
        job.attempt
    );
    assert!(events.windows(2).all(|w| w[0].seq < w[1].seq));

    let mut after = snapshot(&client).await;
    // Compare what existed before the restart: drop the job and model created after it.
    let keep: Vec<usize> = (0..after.jobs.len())
        .filter(|&i| after.jobs[i].id != interrupted.id)
        .collect();
    after.events = keep.iter().map(|&i| after.events[i].clone()).collect();
    after.jobs = keep.iter().map(|&i| after.jobs[i].clone()).collect();
    let new_model = job
        .result
        .as_ref()
        .map(|r| r.model_id.clone())
        .unwrap_or_default();
    let keep: Vec<usize> = (0..after.models.len())
        .filter(|&i| after.models[i].id != new_model)
        .collect();
    after.model_files = keep.iter().map(|&i| after.model_files[i].clone()).collect();
    after.models = keep.iter().map(|&i| after.models[i].clone()).collect();
    assert_eq!(
        after, before,
        "everything from before the restart is unchanged"
    );
    server.stop().await;
}
