//! gRPC over TLS, with certificates generated at test time: a real TLS server (in this
//! process) and the real client. The client trusts only the CA it is given; a wrong CA, a
//! plain-text client, an https client against a plain server, and (mutual TLS) a client
//! without an accepted certificate are refused, each with a message that says which of
//! these it is. Also: a server with tokens and no TLS on a non-loopback address warns.
use ebm_client::{Client, ClientError, TlsMismatch, TlsOptions};
use ebm_e2e::process::{cli_json, ebm_cli, workspace_binary};
use ebm_e2e::tls::TestPki;
use ebm_e2e::*;
use ebm_server::config::{Config, Tls};
use ebm_server::startup::{RunningServer, Server};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A TLS server on a fresh SQLite store, with one configured token (tenant alice);
/// `mtls`: client certificates from the PKI's client CA are required.
async fn tls_server(pki: &TestPki, mtls: bool) -> (RunningServer, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::for_tests(dir.path());
    config.log_filter = "warn".into();
    config.tokens.insert("alice-secret".into(), "alice".into());
    config.tls = Tls {
        cert: Some(pki.server_cert.clone()),
        key: Some(pki.server_key.clone()),
        client_ca: mtls.then(|| pki.client_ca.clone()),
    };
    let server = Server::start(config).await.expect("start a TLS server");
    (server, dir)
}

fn trusting(ca: &std::path::Path) -> TlsOptions {
    TlsOptions {
        ca_cert: Some(ca.to_path_buf()),
        ..TlsOptions::default()
    }
}

/// The TLS mismatch of a failed connect or call.
fn mismatch<T: std::fmt::Debug>(result: Result<T, ClientError>) -> (TlsMismatch, String) {
    match result {
        Err(ClientError::Tls { mismatch, message }) => (mismatch, message),
        other => panic!("expected a TLS mismatch, got {other:?}"),
    }
}

/// Connects (a call may be what fails: TLS 1.3 servers refuse a client certificate after
/// the client's handshake is done) and lists data sets.
async fn connect_and_list(
    url: &str,
    tls: &TlsOptions,
) -> Result<Vec<ebm_client::v1::Dataset>, ClientError> {
    let client = Client::connect_with(url, Some("alice-secret".into()), tls).await?;
    client.list_datasets().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_server_serves_clients_that_trust_its_ca_and_refuses_the_others() {
    let pki = TestPki::generate();
    let (server, _dir) = tls_server(&pki, false).await;
    let url = server.grpc_url();
    assert!(url.starts_with("https://localhost:"), "{url}");
    let by_ip = format!("https://127.0.0.1:{}", server.grpc_addr().port());

    // The right CA: works by name and by address, with the token.
    for (uploaded, url) in [&url, &by_ip].into_iter().enumerate() {
        let client =
            Client::connect_with(url, Some("alice-secret".into()), &trusting(&pki.server_ca))
                .await
                .unwrap_or_else(|e| panic!("{url}: {e}"));
        let (train, _) = digits_split();
        upload(&client, "over tls", &train.slice_rows(0..20)).await;
        assert_eq!(client.list_datasets().await.unwrap().len(), uploaded + 1);
    }

    // A wrong CA, and no CA (the public CAs do not know this one).
    let (m, text) = mismatch(connect_and_list(&url, &trusting(&pki.other_ca)).await);
    assert_eq!(m, TlsMismatch::UntrustedCertificate, "{m:?}");
    assert!(
        text.contains("not signed by the CA given (--ca-cert")
            && text.contains(&pki.other_ca.display().to_string()),
        "{text}"
    );
    let (m, _) = mismatch(connect_and_list(&url, &TlsOptions::default()).await);
    assert_eq!(m, TlsMismatch::UntrustedCertificate, "{m:?}");

    // A plain-text client.
    let plain = format!("http://127.0.0.1:{}", server.grpc_addr().port());
    let (m, text) = mismatch(connect_and_list(&plain, &TlsOptions::default()).await);
    assert_eq!(m, TlsMismatch::ServerSpeaksTls, "{m:?}");
    assert!(text.contains("use an https:// URL"), "{text}");

    // The CLI: --ca-cert (and EBM_CA_CERT) reach the connection.
    let ca = pki.server_ca.display().to_string();
    let (ok, value) = cli_json(
        &ebm_cli(
            &url,
            &[
                "--token",
                "alice-secret",
                "--ca-cert",
                &ca,
                "datasets",
                "list",
            ],
        )
        .await,
    );
    assert!(ok, "{value}");
    let other = pki.other_ca.display().to_string();
    let (ok, value) = cli_json(
        &ebm_cli(
            &url,
            &[
                "--token",
                "alice-secret",
                "--ca-cert",
                &other,
                "datasets",
                "list",
            ],
        )
        .await,
    );
    assert!(!ok, "{value}");
    let text = value.to_string();
    assert!(
        text.contains("untrusted_certificate") && text.contains("--ca-cert"),
        "{text}"
    );
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_client_against_a_plain_server_says_the_server_does_not_speak_tls() {
    let pki = TestPki::generate();
    let server = TestServer::start(StoreKind::Sqlite).await;
    let url = server.url().replace("http://", "https://");
    let (m, text) = mismatch(connect_and_list(&url, &trusting(&pki.server_ca)).await);
    assert_eq!(m, TlsMismatch::ServerNotTls, "{m:?}");
    assert!(text.contains("does not speak TLS"), "{text}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_needs_a_client_certificate_from_the_client_ca() {
    let pki = TestPki::generate();
    let (server, _dir) = tls_server(&pki, true).await;
    let url = server.grpc_url();
    let with_cert = |cert: &std::path::Path, key: &std::path::Path| TlsOptions {
        ca_cert: Some(pki.server_ca.clone()),
        client_cert: Some(cert.to_path_buf()),
        client_key: Some(key.to_path_buf()),
    };
    let listed = connect_and_list(&url, &with_cert(&pki.client_cert, &pki.client_key)).await;
    assert!(listed.unwrap().is_empty());

    let (m, text) = mismatch(connect_and_list(&url, &trusting(&pki.server_ca)).await);
    assert_eq!(m, TlsMismatch::ClientCertificateRequired, "{m:?}");
    assert!(text.contains("--client-cert"), "{text}");
    let (m, _) =
        mismatch(connect_and_list(&url, &with_cert(&pki.stranger_cert, &pki.stranger_key)).await);
    assert_eq!(m, TlsMismatch::ClientCertificateRequired, "{m:?}");

    // The CLI's mTLS flags.
    let (ca, cert, key) = (
        pki.server_ca.display().to_string(),
        pki.client_cert.display().to_string(),
        pki.client_key.display().to_string(),
    );
    let args = [
        "--token",
        "alice-secret",
        "--ca-cert",
        &ca,
        "--client-cert",
        &cert,
        "--client-key",
        &key,
        "datasets",
        "list",
    ];
    let (ok, value) = cli_json(&ebm_cli(&url, &args).await);
    assert!(ok, "{value}");
    server.shutdown().await.unwrap();
}

#[test]
fn tokens_without_tls_on_a_network_address_warn_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("0.0.0.0:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let mut child = Command::new(workspace_binary("ebm-server"))
        .args(["--listen", &format!("0.0.0.0:{port}")])
        .args(["--metrics-listen", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(dir.path())
        .env("EBM__WORKERS", "0")
        .env("EBM__TOKENS__DEV-SECRET", "alice")
        .env("EBM__LOG_FILTER", "warn,ebm_server::startup=info")
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start ebm-server");
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let start = Instant::now();
    let mut log = String::new();
    for line in stderr.lines() {
        let line = line.unwrap();
        log.push_str(&line);
        log.push('\n');
        if line.contains("ebm-server started") || start.elapsed() > Duration::from_secs(60) {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(log.contains("ebm-server started"), "{log}");
    assert!(
        log.contains("WARN") && log.contains("bearer tokens travel in plain text"),
        "{log}"
    );
}
