//! Starting an `ebm-server` for `ebm demo --start-server`: the binary next to `ebm` (both are
//! built into the same target folder) or else the one on PATH, on the default ports when they
//! are free, with its log in the data directory; stopped with SIGTERM (graceful) at the end.
use ebm_client::Client;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};

pub struct LocalServer {
    child: Child,
    pub url: String,
    pub log: PathBuf,
}

/// `preferred` if nothing listens there, else any free port.
fn free_port(preferred: u16) -> std::io::Result<u16> {
    match TcpListener::bind(("127.0.0.1", preferred)) {
        Ok(_) => Ok(preferred),
        Err(_) => Ok(TcpListener::bind(("127.0.0.1", 0))?.local_addr()?.port()),
    }
}

fn server_binary() -> PathBuf {
    let name = format!("ebm-server{}", std::env::consts::EXE_SUFFIX);
    std::env::current_exe()
        .ok()
        .map(|exe| exe.with_file_name(&name))
        .filter(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from(name))
}

impl LocalServer {
    pub async fn start(data_dir: &Path, token: Option<String>) -> anyhow::Result<LocalServer> {
        std::fs::create_dir_all(data_dir)
            .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", data_dir.display()))?;
        let log = data_dir.join("demo-server.log");
        let log_file = std::fs::File::create(&log)
            .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", log.display()))?;
        let grpc = free_port(50051)?;
        let metrics = free_port(9091)?;
        let binary = server_binary();
        let child = Command::new(&binary)
            .arg("--listen")
            .arg(format!("127.0.0.1:{grpc}"))
            .arg("--metrics-listen")
            .arg(format!("127.0.0.1:{metrics}"))
            .arg("--data-dir")
            .arg(data_dir)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                anyhow::anyhow!(
                    "cannot start {}: {e}. Build it first: cargo build --release -p ebm-server",
                    binary.display()
                )
            })?;
        let mut server = LocalServer {
            child,
            url: format!("http://127.0.0.1:{grpc}"),
            log,
        };
        eprintln!(
            "started ebm-server on {} (metrics on http://127.0.0.1:{metrics}/metrics, data in {}, log in {})",
            server.url,
            data_dir.display(),
            server.log.display()
        );
        server.wait_ready(token).await?;
        Ok(server)
    }

    async fn wait_ready(&mut self, token: Option<String>) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait()? {
                let log = std::fs::read_to_string(&self.log).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(15).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                anyhow::bail!(
                    "ebm-server exited ({status}) before it was ready:\n{}",
                    tail.join("\n")
                );
            }
            if Client::connect(self.url.clone(), token.clone())
                .await
                .is_ok()
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                anyhow::bail!(
                    "ebm-server did not answer within a minute; see {}",
                    self.log.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Asks the server to shut down gracefully, and kills it if it takes too long.
    pub async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(pid.to_string())
                .status()
                .await;
            if tokio::time::timeout(Duration::from_secs(15), self.child.wait())
                .await
                .is_ok()
            {
                return;
            }
        }
        let _ = self.child.kill().await;
    }
}
