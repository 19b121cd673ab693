//! AIS held-out log-likelihood during training (`train.ais_every`) end to end on SQLite:
//! the metrics appear in the watched epoch events (and the final metrics) on schedule and
//! agree with the exact held-out log-likelihood the server reports for an enumerable RBM;
//! bad AIS settings are refused with INVALID_ARGUMENT before the job is queued.
use ebm_client::v1::JobState;
use ebm_e2e::*;
use std::time::Duration;

const EPOCHS: u32 = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ais_metrics_stream_with_the_epochs_and_match_the_exact_likelihood() {
    let server = TestServer::start(StoreKind::Sqlite).await;
    let client = &server.client;
    let (train, _) = digits_split();
    let dataset = upload(client, "digits-400", &train.slice_rows(0..400)).await;
    let mut spec = train_spec(&dataset.id, 8, EPOCHS);
    {
        let t = spec.train.as_mut().expect("a train section");
        t.validation_fraction = Some(0.25);
        t.ais_every = Some(2);
        t.ais_chains = Some(200);
        t.ais_betas = Some(2000);
    }
    let job = client.submit(spec, None).await.expect("submit");
    let events = events_to_end(client, &job.id, Duration::from_secs(300)).await;
    let last = events.last().expect("events");
    assert_eq!(last.state(), JobState::Succeeded, "{}", last.message);

    let metric_events: Vec<_> = events
        .iter()
        .filter(|e| e.kind == "metrics" && !e.metrics.is_empty())
        .collect();
    assert_eq!(metric_events.len(), EPOCHS as usize);
    let with_ais: Vec<u32> = metric_events
        .iter()
        .filter(|e| e.metrics.contains_key("val_ais_log_likelihood"))
        .map(|e| e.epoch)
        .collect();
    assert_eq!(with_ais, vec![2, 4], "AIS every 2 epochs");
    for e in metric_events.iter().filter(|e| e.epoch % 2 == 0) {
        let m = &e.metrics;
        let se = m["ais_log_likelihood_stderr"];
        assert!(se > 0.0 && se < 0.1, "epoch {}: stderr {se}", e.epoch);
        // 8 hidden units: the server also reports the exact held-out log-likelihood.
        // Forward AIS: within 3 standard errors plus 0.01 nats (its Jensen bias, about
        // se^2 / 2, and f32 rounding; see engine/src/estimate/heldout.rs).
        let (ais, exact) = (m["val_ais_log_likelihood"], m["val_log_likelihood"]);
        assert!(
            (ais - exact).abs() < 3.0 * se + 0.01,
            "epoch {}: AIS {ais} vs exact {exact} (se {se})",
            e.epoch
        );
        assert!((m["ais_log_z"] - m["log_z"]).abs() < 3.0 * se + 0.01);
    }
    let job = client.get_job(&job.id).await.expect("get job");
    let final_metrics = &job.result.expect("a result").final_metrics;
    assert!(final_metrics.contains_key("val_ais_log_likelihood"));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_ais_settings_are_refused_before_queueing() {
    let server = TestServer::start(StoreKind::Sqlite).await;
    let client = &server.client;
    let dataset = upload(client, "digits", &digits().slice_rows(0..200)).await;
    let good = train_spec(&dataset.id, 8, 2);
    let with = |f: &dyn Fn(&mut ebm_client::v1::JobSpec)| {
        let mut s = good.clone();
        f(&mut s);
        s
    };
    let cases = [
        (
            "too many AIS chains",
            with(&|s| {
                let t = s.train.as_mut().unwrap();
                t.ais_every = Some(1);
                t.ais_chains = Some(10_000_000);
            }),
            "ais_chains",
        ),
        (
            "too many AIS betas",
            with(&|s| {
                let t = s.train.as_mut().unwrap();
                t.ais_every = Some(1);
                t.ais_betas = Some(100_000_000);
            }),
            "ais_betas",
        ),
        (
            "AIS settings without a schedule",
            with(&|s| s.train.as_mut().unwrap().ais_betas = Some(100)),
            "ais_every",
        ),
        (
            "AIS for a lattice model",
            with(&|s| {
                let m = s.model_config.as_mut().unwrap();
                m.r#type = "lattice_ising".into();
                m.hidden = None;
                m.size = Some(8);
                s.train.as_mut().unwrap().ais_every = Some(1);
            }),
            "estimate_log_z",
        ),
    ];
    for (what, spec, word) in cases {
        assert_refused(client, what, spec, word).await;
    }
    assert!(client.list_jobs(None).await.expect("list jobs").is_empty());
    server.stop().await;
}
