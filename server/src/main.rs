//! `ebm-server`: reads the configuration, starts the service, and shuts it down gracefully
//! on SIGINT/SIGTERM (running jobs are checkpointed and requeued).
use clap::Parser;
use ebm_server::config::{self, Command, Flags};
use ebm_server::startup::Server;
use ebm_server::telemetry;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let flags = Flags::parse();
    let config = config::load(&flags)?;
    telemetry::init(&config.log_format, &config.log_filter);
    if flags.command == Some(Command::Migrate) {
        return ebm_server::startup::migrate(&config).await;
    }
    if let Some(Command::Tokens { action }) = &flags.command {
        return ebm_server::startup::tokens(&config, action).await;
    }
    let server = Server::start(config).await?;
    shutdown_signal().await;
    tracing::info!("shutting down: stopping running jobs at a checkpoint and requeueing them");
    server.shutdown().await
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(_) => {
                    let _ = interrupt.await;
                    return;
                }
            };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}
