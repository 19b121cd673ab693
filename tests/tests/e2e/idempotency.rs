//! SubmitJob's `request_id`: a retried submit returns the original job; the same id with a
//! different spec is refused with ALREADY_EXISTS; without an id every submit is a new job.
use ebm_e2e::*;

on_both_stores!(request_id_makes_submit_idempotent);

async fn request_id_makes_submit_idempotent(kind: StoreKind) {
    let server = TestServer::start(kind).await;
    let client = &server.client;
    let (train, _) = digits_split();
    let dataset = upload(client, "digits", &train.slice_rows(0..200)).await;
    let spec = train_spec(&dataset.id, 8, 1);

    let first = client
        .submit(spec.clone(), Some("retry-me".into()))
        .await
        .expect("submit");
    let again = client
        .submit(spec.clone(), Some("retry-me".into()))
        .await
        .expect("resubmit");
    assert_eq!(
        first.id, again.id,
        "the same request id returns the same job"
    );
    assert_eq!(again.request_id, "retry-me");

    let mut different = spec.clone();
    different.seed += 1;
    let status = status_of(client.submit(different, Some("retry-me".into())).await);
    assert_eq!(status.code(), tonic::Code::AlreadyExists, "{status:?}");
    assert!(
        status.message().contains("retry-me"),
        "names the request id: {}",
        status.message()
    );

    let other = client
        .submit(spec.clone(), None)
        .await
        .expect("submit without id");
    assert_ne!(other.id, first.id, "a fresh request id is a new job");
    let jobs = client.list_jobs(None).await.expect("list");
    assert_eq!(jobs.len(), 2, "no duplicate was created");
    server.stop().await;
}
