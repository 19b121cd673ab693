//! Jobs as the API sees them: submit (idempotent by request id), read, list, cancel, and
//! the sequenced event log that WatchJob replays.
use super::labels::{insert_labels, Labels};
use super::quotas::{self, Quota};
use super::{new_id, now_ms, Result, Store, StoreError};
use ebm_api::v1::{JobEvent, JobState};
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

/// A row of `jobs`.
#[derive(Clone, Debug)]
pub struct JobRecord {
    pub id: String,
    pub tenant: String,
    pub request_id: String,
    pub spec_hash: String,
    pub kind: String,
    /// JSON of `ebm.v1.JobSpec`.
    pub spec: String,
    pub state: String,
    pub priority: i64,
    pub attempt: i64,
    pub lease_owner: Option<String>,
    pub lease_expires_at: Option<i64>,
    pub cancel_requested: bool,
    pub progress: f64,
    /// JSON of `ebm.v1.JobResult`.
    pub result: Option<String>,
    pub error: Option<String>,
    pub last_seq: i64,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub updated_at: i64,
    /// The job's labels (filled by the reads the API makes: get, list, sweeps).
    pub labels: Labels,
}

pub(super) const JOB_COLUMNS: &str = "id, tenant, request_id, spec_hash, kind, spec, state, \
     priority, attempt, lease_owner, lease_expires_at, cancel_requested, progress, result, \
     error, last_seq, created_at, started_at, finished_at, updated_at";

impl JobRecord {
    pub(super) fn from_row(row: &AnyRow) -> Result<JobRecord> {
        Ok(JobRecord {
            id: row.try_get("id")?,
            tenant: row.try_get("tenant")?,
            request_id: row.try_get("request_id")?,
            spec_hash: row.try_get("spec_hash")?,
            kind: row.try_get("kind")?,
            spec: row.try_get("spec")?,
            state: row.try_get("state")?,
            priority: row.try_get("priority")?,
            attempt: row.try_get("attempt")?,
            lease_owner: row.try_get("lease_owner")?,
            lease_expires_at: row.try_get("lease_expires_at")?,
            cancel_requested: row.try_get::<i64, _>("cancel_requested")? != 0,
            progress: row.try_get("progress")?,
            result: row.try_get("result")?,
            error: row.try_get("error")?,
            last_seq: row.try_get("last_seq")?,
            created_at: row.try_get("created_at")?,
            started_at: row.try_get("started_at")?,
            finished_at: row.try_get("finished_at")?,
            updated_at: row.try_get("updated_at")?,
            labels: Labels::new(),
        })
    }

    pub fn job_state(&self) -> JobState {
        JobState::from_name(&self.state).unwrap_or(JobState::Unspecified)
    }
}

/// A job to create.
#[derive(Clone, Debug)]
pub struct NewJob {
    pub tenant: String,
    pub request_id: String,
    /// Hash of the canonical spec: a retried submit must carry the same one.
    pub spec_hash: String,
    pub kind: String,
    pub spec: String,
    pub priority: i64,
}

/// Outcome of a submit.
#[derive(Debug)]
pub enum Submitted {
    Created(JobRecord),
    /// A job with this (tenant, request id) existed already; the caller compares spec hashes.
    Existing(JobRecord),
}

/// An event to append; `seq`, `job_id` and `time` are filled in by the store.
pub type NewEvent = JobEvent;

/// A stored event, ready for the API.
pub type EventRecord = JobEvent;

impl Store {
    /// Creates a queued job, or returns the one already submitted with the same request id.
    pub async fn submit_job(&self, new: &NewJob) -> Result<Submitted> {
        self.submit_labelled_job(new, &Labels::new()).await
    }

    /// [`Store::submit_job`] with labels, stored with the job in the same transaction.
    pub async fn submit_labelled_job(&self, new: &NewJob, labels: &Labels) -> Result<Submitted> {
        self.submit_job_within(new, labels, &Quota::UNLIMITED).await
    }

    /// [`Store::submit_labelled_job`] checked against the tenant's `quota` in the insert's
    /// transaction ([`StoreError::QuotaExceeded`] over it). A retry of a job that exists
    /// already is never refused.
    pub async fn submit_job_within(
        &self,
        new: &NewJob,
        labels: &Labels,
        quota: &Quota,
    ) -> Result<Submitted> {
        let id = new_id("job");
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        quotas::lock_tenant(&mut tx, self.dialect, &new.tenant, quota).await?;
        let inserted = insert_job(&mut tx, &id, new, labels, now).await?;
        if inserted {
            // Dropping `tx` on the error rolls the insert back.
            quotas::check(&mut tx, &new.tenant, quota, quotas::Adding::Jobs(1)).await?;
        }
        tx.commit().await?;
        let row = sqlx::query(&format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE tenant = $1 AND request_id = $2"
        ))
        .bind(&new.tenant)
        .bind(&new.request_id)
        .fetch_one(&self.pool)
        .await?;
        let mut job = JobRecord::from_row(&row)?;
        self.attach_labels(std::slice::from_mut(&mut job)).await?;
        if inserted {
            self.announce_events(&job.id).await;
            self.announce_work().await;
            Ok(Submitted::Created(job))
        } else {
            Ok(Submitted::Existing(job))
        }
    }

    /// The tenant's job with this id.
    pub async fn get_job(&self, tenant: &str, id: &str) -> Result<Option<JobRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE tenant = $1 AND id = $2"
        ))
        .bind(tenant)
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        let mut job = row.as_ref().map(JobRecord::from_row).transpose()?;
        if let Some(job) = &mut job {
            self.attach_labels(std::slice::from_mut(job)).await?;
        }
        Ok(job)
    }

    /// The tenant's jobs, newest first, optionally in one state, starting after the cursor
    /// (created_at, id) of the previous page.
    pub async fn list_jobs(
        &self,
        tenant: &str,
        state: Option<&str>,
        after: Option<(i64, String)>,
        limit: u32,
    ) -> Result<Vec<JobRecord>> {
        self.list_labelled_jobs(tenant, state, &Labels::new(), after, limit)
            .await
    }

    /// [`Store::list_jobs`] of the jobs that carry every one of `labels`.
    pub async fn list_labelled_jobs(
        &self,
        tenant: &str,
        state: Option<&str>,
        labels: &Labels,
        after: Option<(i64, String)>,
        limit: u32,
    ) -> Result<Vec<JobRecord>> {
        let (after_time, after_id) = after.unwrap_or((i64::MAX, String::new()));
        // One EXISTS per label; parameters $6, $7, ... hold the keys and values.
        let label_filter: String = (0..labels.len())
            .map(|i| {
                format!(
                    " AND EXISTS (SELECT 1 FROM job_labels l WHERE l.job_id = jobs.id
                                  AND l.key = ${} AND l.value = ${})",
                    6 + 2 * i,
                    7 + 2 * i
                )
            })
            .collect();
        let sql = format!(
            "SELECT {JOB_COLUMNS} FROM jobs
              WHERE tenant = $1 AND ($2 = '' OR state = $2)
                AND (created_at < $3 OR (created_at = $3 AND id < $4)){label_filter}
              ORDER BY created_at DESC, id DESC
              LIMIT $5"
        );
        let mut query = sqlx::query(&sql)
            .bind(tenant)
            .bind(state.unwrap_or(""))
            .bind(after_time)
            .bind(after_id)
            .bind(i64::from(limit));
        for (key, value) in labels {
            query = query.bind(key).bind(value);
        }
        let rows = query.fetch_all(&self.pool).await?;
        let mut jobs = rows
            .iter()
            .map(JobRecord::from_row)
            .collect::<Result<Vec<_>>>()?;
        self.attach_labels(&mut jobs).await?;
        Ok(jobs)
    }

    /// Cancels a job: a queued one at once; a running one is flagged, and its worker stops
    /// it at the next check. A finished job is left as it is. `None` if there is no such job.
    pub async fn cancel_job(&self, tenant: &str, id: &str) -> Result<Option<JobRecord>> {
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        let cancelled: Option<i64> = sqlx::query_scalar(
            "UPDATE jobs SET state = 'cancelled', cancel_requested = 1, finished_at = $3,
                    updated_at = $3, lease_expires_at = NULL, last_seq = last_seq + 1
              WHERE tenant = $1 AND id = $2 AND state = 'queued'
          RETURNING last_seq",
        )
        .bind(tenant)
        .bind(id)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        let mut changed = false;
        if let Some(seq) = cancelled {
            let event = state_event(JobState::Cancelled, "cancelled before it started", 0);
            insert_event(&mut tx, id, seq, now, &event).await?;
            changed = true;
        } else {
            let flagged: Option<(i64, i64)> = sqlx::query_as(
                "UPDATE jobs SET cancel_requested = 1, updated_at = $3, last_seq = last_seq + 1
                  WHERE tenant = $1 AND id = $2 AND state = 'running' AND cancel_requested = 0
              RETURNING last_seq, attempt",
            )
            .bind(tenant)
            .bind(id)
            .bind(now)
            .fetch_optional(&mut *tx)
            .await?;
            if let Some((seq, attempt)) = flagged {
                let event = JobEvent {
                    kind: "log".into(),
                    message: "cancellation requested".into(),
                    attempt: attempt as u32,
                    ..Default::default()
                };
                insert_event(&mut tx, id, seq, now, &event).await?;
                changed = true;
            }
        }
        tx.commit().await?;
        if changed {
            self.announce_events(id).await;
        }
        self.get_job(tenant, id).await
    }

    /// Events of a job with seq > `after_seq`, in order, at most `limit`.
    pub async fn events_after(
        &self,
        job_id: &str,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<EventRecord>> {
        let rows = sqlx::query(
            "SELECT seq, time, payload FROM job_events
              WHERE job_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
        )
        .bind(job_id)
        .bind(after_seq)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let mut event: JobEvent = serde_json::from_str(row.try_get("payload")?)?;
                event.seq = row.try_get("seq")?;
                event.time = super::rfc3339(row.try_get("time")?);
                event.job_id = job_id.to_string();
                Ok(event)
            })
            .collect()
    }
}

/// Inserts a queued job with its labels and its first event, unless the tenant has a job
/// with this request id already; true if it inserted.
pub(super) async fn insert_job(
    tx: &mut Transaction<'static, Any>,
    id: &str,
    new: &NewJob,
    labels: &Labels,
    now: i64,
) -> Result<bool> {
    let inserted = sqlx::query(
        "INSERT INTO jobs (id, tenant, request_id, spec_hash, kind, spec, state, priority,
                           last_seq, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, 'queued', $7, 1, $8, $8)
         ON CONFLICT (tenant, request_id) DO NOTHING",
    )
    .bind(id)
    .bind(&new.tenant)
    .bind(&new.request_id)
    .bind(&new.spec_hash)
    .bind(&new.kind)
    .bind(&new.spec)
    .bind(new.priority)
    .bind(now)
    .execute(&mut **tx)
    .await?
    .rows_affected()
        == 1;
    if inserted {
        let event = state_event(JobState::Queued, "submitted", 0);
        insert_event(tx, id, 1, now, &event).await?;
        insert_labels(tx, id, labels).await?;
    }
    Ok(inserted)
}

/// A `state` event.
pub(super) fn state_event(state: JobState, message: &str, attempt: i64) -> JobEvent {
    JobEvent {
        kind: "state".into(),
        state: state as i32,
        message: message.into(),
        attempt: attempt as u32,
        ..Default::default()
    }
}

/// Inserts event number `seq` (already reserved by bumping `jobs.last_seq` in `tx`).
pub(super) async fn insert_event(
    tx: &mut Transaction<'static, Any>,
    job_id: &str,
    seq: i64,
    time: i64,
    event: &JobEvent,
) -> Result<()> {
    let payload = serde_json::to_string(event).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    sqlx::query(
        "INSERT INTO job_events (job_id, seq, time, kind, payload) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(job_id)
    .bind(seq)
    .bind(time)
    .bind(&event.kind)
    .bind(payload)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
