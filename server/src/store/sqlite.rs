//! SQLite specifics: the embedded default store, a file in the data directory.
//!
//! One file, many readers, one writer at a time: WAL journaling lets readers proceed while
//! a write is in progress, and sqlx's default busy timeout (5 s) queues writers. Every
//! transaction the store runs starts with its write, so it takes the write lock first and
//! never has to upgrade a read snapshot (which SQLite would refuse under contention).
use sqlx::any::AnyPoolOptions;
use sqlx::AnyPool;

pub(super) async fn connect(url: &str) -> anyhow::Result<AnyPool> {
    if let Some(path) = file_path(url) {
        if let Some(dir) = std::path::Path::new(&path).parent() {
            if !dir.as_os_str().is_empty() {
                std::fs::create_dir_all(dir).map_err(|e| {
                    anyhow::anyhow!("cannot create the data directory {}: {e}", dir.display())
                })?;
            }
        }
    }
    let url = if url.contains("mode=") {
        url.to_string()
    } else if url.contains('?') {
        format!("{url}&mode=rwc")
    } else {
        format!("{url}?mode=rwc")
    };
    let pool = AnyPoolOptions::new()
        .max_connections(8)
        .after_connect(|conn, _| {
            Box::pin(async move {
                use sqlx::Executor;
                conn.execute("PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000;")
                    .await?;
                Ok(())
            })
        })
        .connect(&url)
        .await
        .map_err(|e| anyhow::anyhow!("cannot open the SQLite store {url}: {e}"))?;
    // Persistent in the file: set once.
    sqlx::query("PRAGMA journal_mode = WAL")
        .execute(&pool)
        .await?;
    Ok(pool)
}

/// The file behind a `sqlite://PATH?...` URL, if it names one.
fn file_path(url: &str) -> Option<String> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next()?;
    (!path.is_empty() && path != ":memory:").then(|| path.to_string())
}

#[cfg(test)]
mod tests {
    #[test]
    fn finds_the_file_of_a_url() {
        assert_eq!(
            super::file_path("sqlite://a/b.db?mode=rwc").as_deref(),
            Some("a/b.db")
        );
        assert_eq!(
            super::file_path("sqlite:///tmp/x.db").as_deref(),
            Some("/tmp/x.db")
        );
        assert_eq!(super::file_path("sqlite::memory:"), None);
    }
}
