//! Schema migrations, embedded in the binary from `migrations/{sqlite,postgres}` and
//! applied with sqlx's migrator at startup (tracked in `_sqlx_migrations`).
use super::Dialect;
use futures_util::future::BoxFuture;
use sqlx::error::BoxDynError;
use sqlx::migrate::{Migration, MigrationSource, MigrationType, Migrator};
use sqlx::AnyPool;
use std::borrow::Cow;

/// (version, description, SQL) per backend, in order.
const SQLITE: &[(i64, &str, &str)] = &[
    (
        1,
        "init",
        include_str!("../../../migrations/sqlite/0001_init.sql"),
    ),
    (
        3,
        "fair retries",
        include_str!("../../../migrations/sqlite/0003_fair_retries.sql"),
    ),
    (
        4,
        "sweeps labels",
        include_str!("../../../migrations/sqlite/0004_sweeps_labels.sql"),
    ),
    (
        5,
        "api tokens",
        include_str!("../../../migrations/sqlite/0005_api_tokens.sql"),
    ),
];
const POSTGRES: &[(i64, &str, &str)] = &[
    (
        1,
        "init",
        include_str!("../../../migrations/postgres/0001_init.sql"),
    ),
    (
        3,
        "fair retries",
        include_str!("../../../migrations/postgres/0003_fair_retries.sql"),
    ),
    (
        4,
        "sweeps labels",
        include_str!("../../../migrations/postgres/0004_sweeps_labels.sql"),
    ),
    (
        5,
        "api tokens",
        include_str!("../../../migrations/postgres/0005_api_tokens.sql"),
    ),
];

#[derive(Debug)]
struct Embedded(&'static [(i64, &'static str, &'static str)]);

impl<'s> MigrationSource<'s> for Embedded {
    fn resolve(self) -> BoxFuture<'s, Result<Vec<Migration>, BoxDynError>> {
        Box::pin(async move {
            Ok(self
                .0
                .iter()
                .map(|(version, description, sql)| {
                    Migration::new(
                        *version,
                        Cow::Borrowed(*description),
                        MigrationType::Simple,
                        Cow::Borrowed(*sql),
                        false,
                    )
                })
                .collect())
        })
    }
}

pub(super) async fn run(pool: &AnyPool, dialect: Dialect) -> anyhow::Result<()> {
    let source = match dialect {
        Dialect::Sqlite => Embedded(SQLITE),
        Dialect::Postgres => Embedded(POSTGRES),
    };
    let migrator = Migrator::new(source).await?;
    migrator
        .run(pool)
        .await
        .map_err(|e| anyhow::anyhow!("applying database migrations: {e}"))?;
    Ok(())
}
