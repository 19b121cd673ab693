//! Job labels: `key=value` pairs stored with a job when it is submitted (never changed
//! afterwards), read back with the jobs the API shows, and used to filter job lists.
use super::{JobRecord, Result, Store};
use sqlx::{Any, Row, Transaction};
use std::collections::BTreeMap;

/// A job's labels, by key.
pub type Labels = BTreeMap<String, String>;

/// Stores a new job's labels (in the transaction that inserts the job).
pub(super) async fn insert_labels(
    tx: &mut Transaction<'static, Any>,
    job_id: &str,
    labels: &Labels,
) -> Result<()> {
    for (key, value) in labels {
        sqlx::query("INSERT INTO job_labels (job_id, key, value) VALUES ($1, $2, $3)")
            .bind(job_id)
            .bind(key)
            .bind(value)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

impl Store {
    /// Fills in the labels of `jobs` (one query for all of them).
    pub async fn attach_labels(&self, jobs: &mut [JobRecord]) -> Result<()> {
        if jobs.is_empty() {
            return Ok(());
        }
        let placeholders: Vec<String> = (1..=jobs.len()).map(|i| format!("${i}")).collect();
        let sql = format!(
            "SELECT job_id, key, value FROM job_labels WHERE job_id IN ({})",
            placeholders.join(", ")
        );
        let mut query = sqlx::query(&sql);
        for job in jobs.iter() {
            query = query.bind(&job.id);
        }
        let mut by_job: BTreeMap<String, Labels> = BTreeMap::new();
        for row in query.fetch_all(&self.pool).await? {
            by_job
                .entry(row.try_get("job_id")?)
                .or_default()
                .insert(row.try_get("key")?, row.try_get("value")?);
        }
        for job in jobs {
            job.labels = by_job.remove(&job.id).unwrap_or_default();
        }
        Ok(())
    }
}
