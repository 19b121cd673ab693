//! Faults of the database itself: the job store's Postgres stopped and started again under
//! two running `ebm-server` processes with training jobs in flight, first as an operator's
//! restart does (fast shutdown: every session cut), then as a crash (kill -9 of the
//! postmaster, crash recovery at the next start). The servers are not restarted. What must
//! survive: every job, succeeding exactly once in its first attempt, with exactly one model
//! bit-identical to the same spec's model trained with the database up all along; every
//! epoch's metrics event, exactly once; the API, which answers again once the database is
//! back; and the queue: a job submitted after the outages runs.
//!
//! The database is a private Postgres server (initdb in a temporary directory, see
//! `ebm_e2e::private_postgres`), so the shared one on `DATABASE_URL` keeps serving the tests
//! that run beside this one.
use super::chaos::tensors;
use ebm_client::v1::{Job, JobEvent, JobState};
use ebm_client::Client;
use ebm_e2e::private_postgres::PrivatePostgres;
use ebm_e2e::process::ServerProcess;
use ebm_e2e::*;
use std::time::{Duration, Instant};

/// Leases outlast the outages (a few seconds each), so no job needs a second attempt.
const SETTINGS: [(&str, &str); 2] = [("EBM__LEASE_SECONDS", "20"), ("EBM__REAP_SECONDS", "1")];
const EPOCHS: u32 = 150;

/// The job, once the API answers again; fails if it does not within 60 s.
async fn job_when_answering(client: &Client, id: &str) -> Job {
    let start = Instant::now();
    loop {
        match client.get_job(id).await {
            Ok(job) => return job,
            Err(e) => assert!(
                start.elapsed() < Duration::from_secs(60),
                "the API did not answer within 60 s of the database's restart: {e}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until `job` has finished `epochs` epochs (and is still running).
async fn wait_for_epoch(client: &Client, id: &str, epoch: u32) {
    let start = Instant::now();
    loop {
        let job = job_when_answering(client, id).await;
        let done = (job.progress * f64::from(EPOCHS)).round() as u32;
        if done >= epoch {
            assert_eq!(
                job.state(),
                JobState::Running,
                "job {id} ended before the outage could hit it; make its epochs longer"
            );
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "job {id} did not reach epoch {epoch}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Each epoch's metrics event, checked to be there exactly once; and the job's state events.
fn check_events(id: &str, events: &[JobEvent]) {
    let mut per_epoch = vec![0u32; EPOCHS as usize + 1];
    for event in events.iter().filter(|e| e.kind == "metrics") {
        per_epoch[event.epoch as usize] += 1;
    }
    let wrong: Vec<(usize, u32)> = per_epoch
        .iter()
        .enumerate()
        .skip(1)
        .filter(|(_, &n)| n != 1)
        .map(|(epoch, &n)| (epoch, n))
        .collect();
    assert!(
        wrong.is_empty(),
        "job {id}: metrics events (epoch, count) not exactly once: {wrong:?}"
    );
    let succeeded = events
        .iter()
        .filter(|e| e.kind == "state" && e.state() == JobState::Succeeded)
        .count();
    assert_eq!(succeeded, 1, "job {id} succeeded exactly once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_ride_out_a_restart_and_a_crash_of_postgres() {
    let mut postgres = match PrivatePostgres::start() {
        Ok(postgres) => postgres,
        Err(why) => {
            eprintln!("SKIPPED postgres_restart: cannot run a private Postgres: {why}");
            return;
        }
    };
    let url = postgres.url();
    let (mut front, client) = ServerProcess::start_with_env(&url, 1, &SETTINGS).await;
    let (mut back, _) = ServerProcess::start_with_env(&url, 1, &SETTINGS).await;
    let (train, _) = digits_split();
    let dataset = upload(&client, "digits", &train).await;
    let hidden = [16, 24];
    let mut jobs = Vec::new();
    for h in hidden {
        let job = client
            .submit(train_spec(&dataset.id, h, EPOCHS), None)
            .await
            .expect("submit");
        jobs.push(job.id);
    }

    // A restart as an operator does it, then a crash, each while both jobs train.
    for (outage, crash) in [(1, false), (2, true)] {
        for id in &jobs {
            wait_for_epoch(&client, id, 10 * outage).await;
        }
        postgres.stop(crash);
        let down = Instant::now();
        let refused = status_of(client.list_jobs(None).await);
        assert_eq!(
            refused.code(),
            tonic::Code::Unavailable,
            "ListJobs without a database: {refused:?}"
        );
        let answered = down.elapsed();
        assert!(
            answered < Duration::from_secs(10),
            "UNAVAILABLE took {answered:?}"
        );
        tokio::time::sleep(Duration::from_secs(3).saturating_sub(answered)).await;
        postgres.start_again().expect("start Postgres again");
        eprintln!(
            "outage {outage} ({}): database down {:?}",
            if crash { "kill -9" } else { "fast shutdown" },
            down.elapsed()
        );
        job_when_answering(&client, &jobs[0]).await;
    }

    let mut models = Vec::new();
    for id in &jobs {
        let events = events_to_end(&client, id, Duration::from_secs(300)).await;
        check_events(id, &events);
        let job = client.get_job(id).await.expect("get");
        assert_eq!(job.state(), JobState::Succeeded, "job {id}: {}", job.error);
        assert_eq!(job.attempt, 1, "job {id} needed no second attempt");
        models.push(job.result.unwrap_or_default().model_id);
    }
    let stored = client.list_models().await.expect("list models");
    assert_eq!(stored.len(), jobs.len(), "exactly one model per job");
    assert!(
        front.is_running() && back.is_running(),
        "no server restarted"
    );

    // The same specs again, with the database up all along: same model bytes.
    for (h, model) in hidden.into_iter().zip(&models) {
        let again = client
            .submit(train_spec(&dataset.id, h, EPOCHS), None)
            .await
            .expect("submit after the outages");
        let events = events_to_end(&client, &again.id, Duration::from_secs(300)).await;
        check_events(&again.id, &events);
        let again = client.get_job(&again.id).await.expect("get");
        let quiet = client
            .download_model(&again.result.unwrap_or_default().model_id)
            .await
            .expect("download");
        let through_outages = client.download_model(model).await.expect("download");
        assert!(
            tensors(&quiet) == tensors(&through_outages),
            "hidden {h}: the model trained through the outages differs from the quiet run's"
        );
    }
    drop((front, back));
}
