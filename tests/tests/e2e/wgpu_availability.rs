//! A server built without a backend (the `wgpu` and `cuda` cargo features are off by
//! default) says so clearly: `--backend wgpu` refuses to start with a message naming the
//! feature, and a job that names the backend is refused with INVALID_ARGUMENT at submission,
//! instead of failing later on a worker. Each check runs for the backends this build lacks
//! (both of them in the plain `cargo test --workspace`) and says which it skipped.
use ebm_e2e::*;
use ebm_engine::backend::BackendKind;
use ebm_server::config::Config;
use ebm_server::startup::Server;

const OPTIONAL: [BackendKind; 2] = [BackendKind::Wgpu, BackendKind::Cuda];

fn missing() -> Vec<BackendKind> {
    let (built, missing): (Vec<_>, Vec<_>) = OPTIONAL.into_iter().partition(|b| b.is_built());
    for b in built {
        eprintln!("SKIPPED for {}: this build includes it", b.name());
    }
    missing
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_without_the_backend_refuses_to_start_with_it() {
    for backend in missing() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let config = Config {
            backend: backend.name().into(),
            ..Config::for_tests(dir.path())
        };
        let error = match Server::start(config).await {
            Ok(_) => panic!("started with backend {} missing", backend.name()),
            Err(error) => format!("{error:#}"),
        };
        let feature = format!("--features {}", backend.name());
        assert!(
            error.contains("not available in this build") && error.contains(&feature),
            "{error}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_naming_a_backend_the_server_lacks_are_refused() {
    let server = TestServer::start(StoreKind::Sqlite).await;
    let client = &server.client;
    let (train, _) = digits_split();
    let dataset = upload(client, "digits", &train).await;
    for backend in missing() {
        let spec = ebm_client::v1::JobSpec {
            backend: backend.name().into(),
            ..train_spec(&dataset.id, 8, 1)
        };
        let feature = format!("--features {}", backend.name());
        assert_refused(client, backend.name(), spec, &feature).await;
    }
    // Nothing was queued.
    assert!(client.list_jobs(None).await.expect("list jobs").is_empty());
    server.stop().await;
}
