//! Test support (public so that end-to-end tests can use it too): a fresh database per
//! test, on SQLite (a temporary file) or on Postgres (a uniquely named database on the
//! server that `DATABASE_URL` points to, dropped afterwards).
use crate::store::Store;
use sqlx::{Connection, Executor, PgConnection};

pub struct TestDb {
    pub store: Store,
    /// The database URL, for tests that start a whole server on this database
    /// (`Config::database_url`).
    pub url: String,
    _dir: Option<tempfile::TempDir>,
    postgres: Option<(String, String)>,
}

impl TestDb {
    pub async fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().expect("temporary directory");
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("ebm.db").display());
        let store = Store::connect(&url).await.expect("open SQLite store");
        TestDb {
            store,
            url,
            _dir: Some(dir),
            postgres: None,
        }
    }

    /// `None` (the test is skipped, with a note) when `DATABASE_URL` is not set.
    pub async fn postgres() -> Option<TestDb> {
        let Ok(admin_url) = std::env::var("DATABASE_URL") else {
            eprintln!("DATABASE_URL not set: skipping the Postgres variant");
            return None;
        };
        let name = format!("ebm_test_{}", uuid::Uuid::new_v4().simple());
        let mut admin = PgConnection::connect(&admin_url)
            .await
            .expect("connect to DATABASE_URL");
        admin
            .execute(format!("CREATE DATABASE {name}").as_str())
            .await
            .expect("create a test database");
        admin.close().await.ok();
        let url = replace_database(&admin_url, &name);
        let store = Store::connect(&url).await.expect("open Postgres store");
        Some(TestDb {
            store,
            url,
            _dir: None,
            postgres: Some((admin_url, name)),
        })
    }

    /// Drops the Postgres test database (a failed test leaves it for inspection).
    pub async fn drop_database(self) {
        self.store.close().await;
        if let Some((admin_url, name)) = &self.postgres {
            if let Ok(mut admin) = PgConnection::connect(admin_url).await {
                let _ = admin
                    .execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
                    .await;
            }
        }
    }
}

/// Defines each listed `async fn(Store)` test twice: on SQLite, and on Postgres when
/// `DATABASE_URL` is set.
#[cfg(test)]
macro_rules! on_every_database {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let db = $crate::testing::TestDb::sqlite().await;
                    super::$name(db.store.clone()).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(db) = $crate::testing::TestDb::postgres().await else { return };
                    super::$name(db.store.clone()).await;
                    db.drop_database().await;
                }
            )*
        }
    };
}
#[cfg(test)]
pub(crate) use on_every_database;

/// `postgres://user@host:port/db?params` with the database name replaced.
fn replace_database(url: &str, name: &str) -> String {
    let (base, params) = match url.split_once('?') {
        Some((base, params)) => (base, format!("?{params}")),
        None => (url, String::new()),
    };
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let host_part = match base[scheme_end..].find('/') {
        Some(i) => &base[..scheme_end + i],
        None => base,
    };
    format!("{host_part}/{name}{params}")
}

#[test]
fn replaces_the_database_name() {
    assert_eq!(
        replace_database("postgres://postgres@127.0.0.1:5432/test", "x"),
        "postgres://postgres@127.0.0.1:5432/x"
    );
    assert_eq!(
        replace_database("postgres://h/test?sslmode=disable", "x"),
        "postgres://h/x?sslmode=disable"
    );
    assert_eq!(replace_database("postgres://h", "x"), "postgres://h/x");
}
