//! Bad input is refused with INVALID_ARGUMENT and a message that says what to fix, and the
//! server keeps serving afterwards.
use ebm_client::v1::{JobSpec, JobState};
use ebm_client::DatasetFormat;
use ebm_e2e::*;
use std::time::Duration;

/// Upload limit of the test server (the digits upload, ~96 KB, fits).
const MAX_UPLOAD: u64 = 200_000;

fn with(spec: &JobSpec, change: impl FnOnce(&mut JobSpec)) -> JobSpec {
    let mut spec = spec.clone();
    change(&mut spec);
    spec
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_and_the_server_keeps_serving() {
    let server = TestServer::start_with(StoreKind::Sqlite, |c| {
        c.limits.max_upload_bytes = MAX_UPLOAD
    })
    .await;
    let client = &server.client;
    let (train, _) = digits_split();
    let dataset = upload(client, "digits", &train).await;
    let good = train_spec(&dataset.id, 16, 1);

    // (what, spec, words of which the message must contain at least one)
    let cases: Vec<(&str, JobSpec, &[&str])> = vec![
        (
            "data set with the wrong number of columns for the model",
            with(&good, |s| {
                s.model_config.as_mut().unwrap().visible = Some(100)
            }),
            &["64", "column", "visible"],
        ),
        (
            "unknown model type",
            with(&good, |s| {
                s.model_config.as_mut().unwrap().r#type = "boltzmann_brain".into()
            }),
            &["boltzmann_brain"],
        ),
        (
            "NaN learning rate",
            with(&good, |s| {
                s.train.as_mut().unwrap().learning_rate = Some(f64::NAN)
            }),
            &["learning_rate", "learning rate"],
        ),
        (
            "negative learning rate",
            with(&good, |s| {
                s.train.as_mut().unwrap().learning_rate = Some(-0.1)
            }),
            &["learning_rate", "learning rate"],
        ),
        (
            "zero hidden units",
            with(&good, |s| s.model_config.as_mut().unwrap().hidden = Some(0)),
            &["hidden"],
        ),
        (
            "unknown data set",
            with(&good, |s| s.dataset = "ds_does_not_exist".into()),
            &["ds_does_not_exist"],
        ),
    ];
    for (what, spec, words) in cases {
        let status = status_of(client.submit(spec, None).await);
        let message = status.message().to_lowercase();
        if what == "unknown data set" {
            assert!(
                matches!(
                    status.code(),
                    tonic::Code::InvalidArgument | tonic::Code::NotFound
                ),
                "{what}: {status:?}"
            );
        } else {
            assert_eq!(
                status.code(),
                tonic::Code::InvalidArgument,
                "{what}: {status:?}"
            );
        }
        assert!(
            words.iter().any(|w| message.contains(&w.to_lowercase())),
            "{what}: the message {message:?} should mention one of {words:?}"
        );
        // Still serving.
        client
            .get_dataset(&dataset.id)
            .await
            .expect("the server keeps serving");
    }

    // A malformed .npy file.
    let status = status_of(
        client
            .upload_dataset_bytes(
                "garbage",
                DatasetFormat::Npy,
                b"\x93NUMPY\x01\x00garbage".to_vec(),
            )
            .await,
    );
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().to_lowercase().contains("npy"),
        "{status:?}"
    );

    // An upload over the limit, refused before the server reads it all.
    let mut big = ebm_client::npy::Matrix {
        rows: 4000,
        cols: 64,
        values: vec![0.0; 4000 * 64],
    };
    big.values[0] = 1.0;
    let status = status_of(
        client
            .upload_dataset_bytes(
                "too-big",
                DatasetFormat::Npy,
                ebm_client::npy::write_u8(&big),
            )
            .await,
    );
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().contains(&MAX_UPLOAD.to_string()) || status.message().contains("limit"),
        "says what the limit is: {status:?}"
    );

    // None of that was stored, and a good job still runs to the end.
    let datasets = client.list_datasets().await.expect("list");
    assert_eq!(datasets.len(), 1, "{datasets:?}");
    assert!(client.list_jobs(None).await.expect("list").is_empty());
    let job = client.submit(good, None).await.expect("a good job");
    let events = events_to_end(client, &job.id, Duration::from_secs(120)).await;
    assert_eq!(events.last().map(|e| e.state()), Some(JobState::Succeeded));
    server.stop().await;
}
