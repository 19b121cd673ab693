//! Per-tenant quotas checked when something is added: queued jobs (at submit) and stored
//! bytes (data sets + models + job artifacts, at upload, import and submit).
//!
//! Every check runs inside the transaction of the insert it guards, after the insert, so
//! it counts the new row together with everything committed before it; over the limit, the
//! transaction is rolled back. This is exact under concurrent requests, also across server
//! processes: on SQLite the insert takes the database's single write lock before the count,
//! so concurrent writers are serialised; on Postgres (READ COMMITTED) the transaction first
//! takes a per-tenant advisory lock (`pg_advisory_xact_lock`), so two submits of one tenant
//! cannot both count before either commits.
//!
//! What is not checked here: models and artifacts that a running job stores (a job is not
//! failed for its output), so a tenant can end above its stored-bytes limit by the outputs
//! of the jobs it had queued; further uploads, imports and submits are then refused until
//! it deletes something.
use super::{Dialect, Result, Store, StoreError};
use sqlx::{Any, Transaction};

/// The limits a store insert is checked against (`None`: unlimited).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Quota {
    pub max_queued_jobs: Option<u64>,
    pub max_stored_bytes: Option<u64>,
}

impl Quota {
    pub const UNLIMITED: Quota = Quota {
        max_queued_jobs: None,
        max_stored_bytes: None,
    };

    fn is_unlimited(&self) -> bool {
        self.max_queued_jobs.is_none() && self.max_stored_bytes.is_none()
    }
}

/// What a refused insert would have added (for the message).
pub(super) enum Adding {
    /// `n` queued jobs.
    Jobs(u64),
    /// A data set or model of this many bytes.
    Bytes(&'static str, u64),
}

const STORED_BYTES_SQL: &str = "SELECT CAST(
        COALESCE((SELECT SUM(size_bytes) FROM datasets WHERE tenant = $1), 0)
      + COALESCE((SELECT SUM(size_bytes) FROM models WHERE tenant = $1), 0)
      + COALESCE((SELECT SUM(LENGTH(a.data)) FROM artifacts a JOIN jobs j ON j.id = a.job_id
                   WHERE j.tenant = $1), 0) AS BIGINT)";

const QUEUED_JOBS_SQL: &str = "SELECT COUNT(*) FROM jobs WHERE tenant = $1 AND state = 'queued'";

/// Serialises quota-checked inserts of one tenant on Postgres (released at commit or
/// rollback); a no-op on SQLite, whose write lock does the same.
pub(super) async fn lock_tenant(
    tx: &mut Transaction<'static, Any>,
    dialect: Dialect,
    tenant: &str,
    quota: &Quota,
) -> Result<()> {
    if dialect == Dialect::Postgres && !quota.is_unlimited() {
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext('ebm-quota:' || $1))")
            .bind(tenant)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// Checks `quota` after `adding` was inserted in `tx` (the counts include it).
pub(super) async fn check(
    tx: &mut Transaction<'static, Any>,
    tenant: &str,
    quota: &Quota,
    adding: Adding,
) -> Result<()> {
    if let (Some(limit), Adding::Jobs(added)) = (quota.max_queued_jobs, &adding) {
        let queued: i64 = sqlx::query_scalar(QUEUED_JOBS_SQL)
            .bind(tenant)
            .fetch_one(&mut **tx)
            .await?;
        let before = (queued as u64).saturating_sub(*added);
        if queued as u64 > limit {
            let what = if *added == 1 {
                String::new()
            } else {
                format!(" (this request adds {added})")
            };
            return Err(StoreError::QuotaExceeded(format!(
                "tenant {tenant} has {before} queued jobs; the queued-jobs limit is {limit}{what}; \
                 wait for some to start or cancel some"
            )));
        }
    }
    if let Some(limit) = quota.max_stored_bytes {
        let stored: i64 = sqlx::query_scalar(STORED_BYTES_SQL)
            .bind(tenant)
            .fetch_one(&mut **tx)
            .await?;
        let stored = stored.max(0) as u64;
        match adding {
            Adding::Bytes(what, size) if stored > limit => {
                return Err(StoreError::QuotaExceeded(format!(
                    "tenant {tenant} stores {} bytes (data sets, models and artifacts); the \
                     stored-bytes limit is {limit} and this {what} has {size} bytes; delete \
                     data sets or models first",
                    stored - size
                )));
            }
            // A job stores its outputs later: refuse new jobs once the limit is reached.
            Adding::Jobs(_) if stored >= limit => {
                return Err(StoreError::QuotaExceeded(format!(
                    "tenant {tenant} stores {stored} bytes (data sets, models and artifacts); \
                     the stored-bytes limit is {limit}; delete data sets or models before \
                     submitting jobs"
                )));
            }
            _ => {}
        }
    }
    Ok(())
}

impl Store {
    /// Jobs of `tenant` waiting in the queue.
    pub async fn queued_jobs(&self, tenant: &str) -> Result<i64> {
        Ok(sqlx::query_scalar(QUEUED_JOBS_SQL)
            .bind(tenant)
            .fetch_one(&self.pool)
            .await?)
    }

    /// Bytes `tenant` stores: data sets + models + artifacts of its jobs.
    pub async fn stored_bytes(&self, tenant: &str) -> Result<i64> {
        Ok(sqlx::query_scalar(STORED_BYTES_SQL)
            .bind(tenant)
            .fetch_one(&self.pool)
            .await?)
    }
}
