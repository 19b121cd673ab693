//! Tokens managed in the database: `ebm-server tokens create` (the real binary, talking to
//! the database directly) makes a token that two server processes on one Postgres accept at
//! once; `tokens list` shows it (never the token itself) with its last use; `tokens revoke`
//! makes both refuse it from the next request on, and an expired token is refused too.
use ebm_client::{Client, ClientError};
use ebm_e2e::process::{workspace_binary, ServerProcess};
use ebm_e2e::*;
use std::process::Output;

/// Runs `ebm-server --database-url URL tokens ARGS...`.
async fn tokens(database_url: &str, args: &[&str]) -> Output {
    tokio::process::Command::new(workspace_binary("ebm-server"))
        .args(["--database-url", database_url, "tokens"])
        .args(args)
        .env("EBM__LOG_FILTER", "warn")
        .env_remove("RUST_LOG")
        .output()
        .await
        .expect("run ebm-server tokens")
}

fn stdout(output: &Output) -> String {
    assert!(
        output.status.success(),
        "ebm-server tokens failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

fn refused(result: Result<impl std::fmt::Debug, ClientError>) -> String {
    match result {
        Err(ClientError::Status(s)) if s.code() == tonic::Code::Unauthenticated => {
            s.message().to_string()
        }
        other => panic!("expected UNAUTHENTICATED, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_use_revoke_across_two_servers_on_one_postgres() {
    if !postgres_available("create_use_revoke_across_two_servers_on_one_postgres") {
        return;
    }
    let (_db, url) = PgDatabase::create().await.expect("a test database");
    // Both servers start open (no token exists yet): the harness waits for an anonymous call.
    let (a, anonymous_a) = ServerProcess::start(&url, 0).await;
    let (b, anonymous_b) = ServerProcess::start(&url, 0).await;

    let created = tokens(&url, &["create", "--tenant", "alice", "--name", "ci"]).await;
    let token = stdout(&created);
    let note = String::from_utf8_lossy(&created.stderr);
    assert!(note.contains("shown only this once"), "{note}");
    let (id, secret) = token.split_once('.').expect("a token reads ID.SECRET");
    assert!(id.starts_with("tok_") && secret.len() == 64, "{token}");

    // A token now exists: both servers refuse anonymous calls at once.
    for anonymous in [&anonymous_a, &anonymous_b] {
        let message = refused(anonymous.list_datasets().await);
        assert!(message.contains("needs a token"), "{message}");
    }
    // Both accept the token, for the same tenant.
    let alice_a = Client::connect(a.url.clone(), Some(token.clone()))
        .await
        .unwrap();
    let alice_b = Client::connect(b.url.clone(), Some(token.clone()))
        .await
        .unwrap();
    let (train, _) = digits_split();
    upload(&alice_a, "alice's digits", &train.slice_rows(0..20)).await;
    assert_eq!(
        alice_b.list_datasets().await.unwrap().len(),
        1,
        "same tenant on B"
    );
    // A forged secret with the real id is refused.
    let forged = format!("{id}.{}", "0".repeat(64));
    let forged = Client::connect(a.url.clone(), Some(forged)).await.unwrap();
    assert_eq!(refused(forged.list_datasets().await), "unknown token");

    // The list shows the token's metadata and its last use, never the token.
    let listed = stdout(&tokens(&url, &["list", "--json"]).await);
    assert!(
        !listed.contains(secret),
        "the list must not show the token: {listed}"
    );
    let rows: serde_json::Value = serde_json::from_str(&listed).unwrap();
    let row = &rows.as_array().unwrap()[0];
    assert_eq!(row["id"], id);
    assert_eq!(row["tenant"], "alice");
    assert_eq!(row["name"], "ci");
    assert_eq!(row["state"], "active");
    assert!(row["last_used_at"].is_string(), "{row}");
    assert!(row["expires_at"].is_null(), "{row}");
    let table = stdout(&tokens(&url, &["list"]).await);
    assert!(table.contains(id) && table.contains("active"), "{table}");

    // Revoked: both servers refuse it on the very next request.
    let revoked = tokens(&url, &["revoke", id]).await;
    stdout(&revoked);
    for client in [&alice_a, &alice_b] {
        let message = refused(client.list_datasets().await);
        assert!(message.contains("revoked"), "{message}");
    }
    let listed = stdout(&tokens(&url, &["list", "--json"]).await);
    let rows: serde_json::Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(rows[0]["state"], "revoked");
    assert!(rows[0]["revoked_at"].is_string());
    // Revoking what does not exist says so.
    let missing = tokens(&url, &["revoke", "tok_nope"]).await;
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no token"));

    // Expiry: a token valid for two seconds works, then is refused everywhere.
    let short = stdout(&tokens(&url, &["create", "--tenant", "bob", "--expires", "2s"]).await);
    let created = std::time::Instant::now();
    let bob_a = Client::connect(a.url.clone(), Some(short.clone()))
        .await
        .unwrap();
    let bob_b = Client::connect(b.url.clone(), Some(short)).await.unwrap();
    let datasets = bob_a
        .list_datasets()
        .await
        .expect("bob's token before it expires");
    assert!(datasets.is_empty(), "bob sees none of alice's data");
    tokio::time::sleep(std::time::Duration::from_millis(2200).saturating_sub(created.elapsed()))
        .await;
    for client in [&bob_a, &bob_b] {
        let message = refused(client.list_datasets().await);
        assert!(message.contains("expired"), "{message}");
    }
    drop((a, b));
}
