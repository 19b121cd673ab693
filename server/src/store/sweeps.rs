//! Sweeps: a grid of variants of one spec, queued by one request. The sweep row and all
//! its jobs (with their labels and first events) are inserted in one transaction, keyed by
//! (tenant, request id) like single jobs, so a retried request finds the whole sweep and a
//! failure leaves none of it.
use super::jobs::{insert_job, JobRecord, NewJob, JOB_COLUMNS};
use super::labels::Labels;
use super::quotas::{self, Quota};
use super::{now_ms, Result, Store};
use sqlx::any::AnyRow;
use sqlx::Row;

/// A row of `sweeps`.
#[derive(Clone, Debug)]
pub struct SweepRecord {
    pub id: String,
    pub tenant: String,
    pub request_id: String,
    pub spec_hash: String,
    /// JSON of the base `ebm.v1.JobSpec`.
    pub spec: String,
    /// JSON of the grid (`[ebm.v1.GridAxis]`).
    pub grid: String,
    /// JSON of the extra labels every job got.
    pub labels: String,
    pub seeds: i64,
    pub priority: i64,
    pub variants: i64,
    pub created_at: i64,
}

const SWEEP_COLUMNS: &str =
    "id, tenant, request_id, spec_hash, spec, grid, labels, seeds, priority, variants, created_at";

impl SweepRecord {
    fn from_row(row: &AnyRow) -> Result<SweepRecord> {
        Ok(SweepRecord {
            id: row.try_get("id")?,
            tenant: row.try_get("tenant")?,
            request_id: row.try_get("request_id")?,
            spec_hash: row.try_get("spec_hash")?,
            spec: row.try_get("spec")?,
            grid: row.try_get("grid")?,
            labels: row.try_get("labels")?,
            seeds: row.try_get("seeds")?,
            priority: row.try_get("priority")?,
            variants: row.try_get("variants")?,
            created_at: row.try_get("created_at")?,
        })
    }
}

/// One variant of a new sweep: its job (with a fresh id) and that job's labels.
#[derive(Clone, Debug)]
pub struct NewVariant {
    pub job_id: String,
    pub job: NewJob,
    pub labels: Labels,
}

/// Outcome of a sweep submit.
#[derive(Debug)]
pub enum SweepSubmitted {
    Created(SweepRecord),
    /// A sweep with this (tenant, request id) existed already; the caller compares hashes.
    Existing(SweepRecord),
}

impl Store {
    /// Creates the sweep and queues all its variants, or returns the sweep submitted earlier
    /// with the same request id (then nothing is queued).
    pub async fn submit_sweep(
        &self,
        sweep: &SweepRecord,
        variants: &[NewVariant],
    ) -> Result<SweepSubmitted> {
        self.submit_sweep_within(sweep, variants, &Quota::UNLIMITED)
            .await
    }

    /// [`Store::submit_sweep`] checked against the tenant's `quota` (all of the sweep's jobs
    /// count as queued) in the insert's transaction.
    pub async fn submit_sweep_within(
        &self,
        sweep: &SweepRecord,
        variants: &[NewVariant],
        quota: &Quota,
    ) -> Result<SweepSubmitted> {
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        quotas::lock_tenant(&mut tx, self.dialect, &sweep.tenant, quota).await?;
        let inserted = sqlx::query(&format!(
            "INSERT INTO sweeps ({SWEEP_COLUMNS})
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
             ON CONFLICT (tenant, request_id) DO NOTHING"
        ))
        .bind(&sweep.id)
        .bind(&sweep.tenant)
        .bind(&sweep.request_id)
        .bind(&sweep.spec_hash)
        .bind(&sweep.spec)
        .bind(&sweep.grid)
        .bind(&sweep.labels)
        .bind(sweep.seeds)
        .bind(sweep.priority)
        .bind(variants.len() as i64)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if inserted {
            for (index, variant) in variants.iter().enumerate() {
                insert_job(&mut tx, &variant.job_id, &variant.job, &variant.labels, now).await?;
                sqlx::query(
                    "INSERT INTO sweep_jobs (sweep_id, variant, job_id) VALUES ($1, $2, $3)",
                )
                .bind(&sweep.id)
                .bind(index as i64)
                .bind(&variant.job_id)
                .execute(&mut *tx)
                .await?;
            }
            let adding = quotas::Adding::Jobs(variants.len() as u64);
            quotas::check(&mut tx, &sweep.tenant, quota, adding).await?;
        }
        tx.commit().await?;
        let row = sqlx::query(&format!(
            "SELECT {SWEEP_COLUMNS} FROM sweeps WHERE tenant = $1 AND request_id = $2"
        ))
        .bind(&sweep.tenant)
        .bind(&sweep.request_id)
        .fetch_one(&self.pool)
        .await?;
        let record = SweepRecord::from_row(&row)?;
        if inserted {
            for variant in variants {
                self.announce_events(&variant.job_id).await;
            }
            self.announce_work().await;
            Ok(SweepSubmitted::Created(record))
        } else {
            Ok(SweepSubmitted::Existing(record))
        }
    }

    /// The tenant's sweep with this id.
    pub async fn get_sweep(&self, tenant: &str, id: &str) -> Result<Option<SweepRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {SWEEP_COLUMNS} FROM sweeps WHERE tenant = $1 AND id = $2"
        ))
        .bind(tenant)
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(SweepRecord::from_row).transpose()
    }

    /// The jobs of a sweep, in variant order, with their labels.
    pub async fn sweep_jobs(&self, tenant: &str, sweep_id: &str) -> Result<Vec<JobRecord>> {
        let columns: String = JOB_COLUMNS
            .split(", ")
            .map(|c| format!("j.{}", c.trim()))
            .collect::<Vec<_>>()
            .join(", ");
        let rows = sqlx::query(&format!(
            "SELECT {columns} FROM sweep_jobs s JOIN jobs j ON j.id = s.job_id
              WHERE s.sweep_id = $1 AND j.tenant = $2 ORDER BY s.variant"
        ))
        .bind(sweep_id)
        .bind(tenant)
        .fetch_all(&self.pool)
        .await?;
        let mut jobs = rows
            .iter()
            .map(JobRecord::from_row)
            .collect::<Result<Vec<_>>>()?;
        self.attach_labels(&mut jobs).await?;
        Ok(jobs)
    }

    /// Number of a sweep's jobs per state.
    pub async fn sweep_job_states(&self, sweep_id: &str) -> Result<Vec<(String, i64)>> {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT j.state, COUNT(*) FROM sweep_jobs s JOIN jobs j ON j.id = s.job_id
              WHERE s.sweep_id = $1 GROUP BY j.state",
        )
        .bind(sweep_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows)
    }

    /// The tenant's sweeps, newest first, after the cursor (created_at, id).
    pub async fn list_sweeps(
        &self,
        tenant: &str,
        after: Option<(i64, String)>,
        limit: u32,
    ) -> Result<Vec<SweepRecord>> {
        let (after_time, after_id) = after.unwrap_or((i64::MAX, String::new()));
        let rows = sqlx::query(&format!(
            "SELECT {SWEEP_COLUMNS} FROM sweeps
              WHERE tenant = $1 AND (created_at < $2 OR (created_at = $2 AND id < $3))
              ORDER BY created_at DESC, id DESC LIMIT $4"
        ))
        .bind(tenant)
        .bind(after_time)
        .bind(after_id)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(SweepRecord::from_row).collect()
    }
}
