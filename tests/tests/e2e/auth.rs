//! The client's bearer token reaches the server: with tokens configured, each token is a
//! tenant that sees only its own data sets and jobs, and a call without a token is refused.
use ebm_client::{Client, ClientError};
use ebm_e2e::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_separate_tenants() {
    let server = TestServer::start_with(StoreKind::Sqlite, |c| {
        c.tokens.insert("alice-secret".into(), "alice".into());
        c.tokens.insert("bob-secret".into(), "bob".into());
    })
    .await;
    let alice = Client::connect(server.url(), Some("alice-secret".into()))
        .await
        .unwrap();
    let bob = Client::connect(server.url(), Some("bob-secret".into()))
        .await
        .unwrap();
    let (train, _) = digits_split();
    let dataset = upload(&alice, "alice's digits", &train.slice_rows(0..100)).await;
    let job = alice
        .submit(train_spec(&dataset.id, 4, 1), None)
        .await
        .unwrap();

    assert_eq!(alice.list_datasets().await.unwrap().len(), 1);
    assert!(
        bob.list_datasets().await.unwrap().is_empty(),
        "bob sees none of alice's data"
    );
    assert!(
        bob.list_jobs(None).await.unwrap().is_empty(),
        "nor her jobs"
    );
    let status = status_of(bob.get_job(&job.id).await);
    assert_eq!(status.code(), tonic::Code::NotFound, "{status:?}");

    // The test server's own client sends no token.
    let refused = server.client.list_jobs(None).await;
    assert!(
        matches!(&refused, Err(ClientError::Status(s)) if s.code() == tonic::Code::Unauthenticated),
        "{refused:?}"
    );
    let message = refused.unwrap_err().to_string();
    assert!(
        message.contains("--token"),
        "says how to authenticate: {message}"
    );
    server.stop().await;
}
