//! The worker's side of the jobs table: claim, heartbeat, fenced writes (events,
//! checkpoints, the final outcome), requeue on shutdown, and reaping of expired leases.
use super::jobs::{insert_event, state_event, JobRecord, JOB_COLUMNS};
use super::{now_ms, Dialect, ModelRecord, Result, Store, StoreError};
use ebm_api::v1::{JobEvent, JobState};
use sqlx::{Any, Transaction};

/// A worker's claim on one attempt of a job. Every write a worker makes names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    pub job_id: String,
    pub attempt: i64,
    pub owner: String,
}

/// A job just claimed, with the lease that fences its writes.
#[derive(Clone, Debug)]
pub struct ClaimedJob {
    pub lease: Lease,
    pub job: JobRecord,
}

/// How a job ended.
#[derive(Debug, Default)]
pub struct Finish {
    pub state: Option<JobState>,
    /// JSON of `ebm.v1.JobResult`.
    pub result: Option<String>,
    pub error: Option<String>,
    pub message: String,
    /// A model the job produced (train), stored in the same transaction.
    pub model: Option<(ModelRecord, Vec<u8>)>,
    /// Named files the job produced (e.g. "samples.npy").
    pub artifacts: Vec<(String, Vec<u8>)>,
}

/// The fence: the job is still running this attempt under this owner.
const FENCE: &str = "id = $1 AND attempt = $2 AND lease_owner = $3 AND state = 'running'";

impl Store {
    /// Claims the most urgent queued job for `owner`, leasing it for `lease_ms`.
    pub async fn claim_next_job(&self, owner: &str, lease_ms: i64) -> Result<Option<ClaimedJob>> {
        let now = now_ms();
        let claim = match self.dialect {
            Dialect::Sqlite => super::sqlite::CLAIM_NEXT_JOB,
            Dialect::Postgres => super::postgres::CLAIM_NEXT_JOB,
        };
        let mut tx = self.pool.begin().await?;
        let claimed: Option<(String, i64, i64)> = sqlx::query_as(claim)
            .bind(owner)
            .bind(now + lease_ms)
            .bind(now)
            .fetch_optional(&mut *tx)
            .await?;
        let Some((job_id, attempt, seq)) = claimed else {
            tx.rollback().await?;
            return Ok(None);
        };
        let event = state_event(JobState::Running, &format!("claimed by {owner}"), attempt);
        insert_event(&mut tx, &job_id, seq, now, &event).await?;
        let row = sqlx::query(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1"))
            .bind(&job_id)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        self.announce_events(&job_id).await;
        Ok(Some(ClaimedJob {
            lease: Lease {
                job_id,
                attempt,
                owner: owner.to_string(),
            },
            job: JobRecord::from_row(&row)?,
        }))
    }

    /// Renews the lease for `lease_ms` from now; returns whether cancellation was requested.
    pub async fn heartbeat(&self, lease: &Lease, lease_ms: i64) -> Result<bool> {
        let now = now_ms();
        let cancel: Option<i64> = sqlx::query_scalar(&format!(
            "UPDATE jobs SET lease_expires_at = $4, updated_at = $5 WHERE {FENCE}
             RETURNING cancel_requested"
        ))
        .bind(&lease.job_id)
        .bind(lease.attempt)
        .bind(&lease.owner)
        .bind(now + lease_ms)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        cancel.map(|c| c != 0).ok_or(StoreError::LeaseLost)
    }

    /// Appends an event of the leased attempt, and records its progress if given.
    pub async fn append_event(
        &self,
        lease: &Lease,
        event: JobEvent,
        progress: Option<f64>,
    ) -> Result<i64> {
        self.append_events(lease, vec![event], progress).await
    }

    /// Appends events of the leased attempt in one transaction (consecutive sequence
    /// numbers), and records its progress if given. Returns the last sequence number.
    pub async fn append_events(
        &self,
        lease: &Lease,
        events: Vec<JobEvent>,
        progress: Option<f64>,
    ) -> Result<i64> {
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        let last = fenced_reserve_seqs(&mut tx, lease, now, progress, events.len() as i64).await?;
        let first = last - events.len() as i64 + 1;
        for (seq, mut event) in (first..).zip(events) {
            event.attempt = lease.attempt as u32;
            insert_event(&mut tx, &lease.job_id, seq, now, &event).await?;
        }
        tx.commit().await?;
        self.announce_events(&lease.job_id).await;
        Ok(last)
    }

    /// Stores the job's latest checkpoint, replacing the previous one.
    pub async fn save_checkpoint(&self, lease: &Lease, epoch: u64, data: &[u8]) -> Result<()> {
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        let fenced = sqlx::query(&format!("UPDATE jobs SET updated_at = $4 WHERE {FENCE}"))
            .bind(&lease.job_id)
            .bind(lease.attempt)
            .bind(&lease.owner)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if fenced != 1 {
            return Err(StoreError::LeaseLost);
        }
        sqlx::query(
            "INSERT INTO checkpoints (job_id, attempt, epoch, data, created_at)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (job_id) DO UPDATE SET attempt = excluded.attempt,
                 epoch = excluded.epoch, data = excluded.data, created_at = excluded.created_at",
        )
        .bind(&lease.job_id)
        .bind(lease.attempt)
        .bind(epoch as i64)
        .bind(data)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Ends the leased attempt as succeeded, failed or cancelled, storing its outputs.
    pub async fn finish_job(&self, lease: &Lease, finish: Finish) -> Result<()> {
        let now = now_ms();
        let state = finish.state.unwrap_or(JobState::Failed);
        let mut tx = self.pool.begin().await?;
        let seq: Option<i64> = sqlx::query_scalar(&format!(
            "UPDATE jobs SET state = $4, result = $5, error = $6, finished_at = $7,
                    updated_at = $7, lease_expires_at = NULL, last_seq = last_seq + 1,
                    progress = CASE WHEN $4 = 'succeeded' THEN 1.0 ELSE progress END
              WHERE {FENCE}
          RETURNING last_seq"
        ))
        .bind(&lease.job_id)
        .bind(lease.attempt)
        .bind(&lease.owner)
        .bind(state.name())
        .bind(&finish.result)
        .bind(&finish.error)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        let seq = seq.ok_or(StoreError::LeaseLost)?;
        let message = match (&finish.error, finish.message.is_empty()) {
            (Some(error), true) => error.clone(),
            _ => finish.message.clone(),
        };
        let event = state_event(state, &message, lease.attempt);
        insert_event(&mut tx, &lease.job_id, seq, now, &event).await?;
        if let Some((model, data)) = &finish.model {
            super::blobs::insert_model(&mut tx, model, data).await?;
        }
        for (name, data) in &finish.artifacts {
            sqlx::query(
                "INSERT INTO artifacts (job_id, name, data, created_at) VALUES ($1, $2, $3, $4)",
            )
            .bind(&lease.job_id)
            .bind(name)
            .bind(data.as_slice())
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        self.announce_events(&lease.job_id).await;
        Ok(())
    }

    /// Gives the leased job back to the queue (graceful shutdown): the next claim resumes it
    /// from its latest checkpoint.
    pub async fn requeue_job(&self, lease: &Lease, message: &str) -> Result<()> {
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        let seq: Option<i64> = sqlx::query_scalar(&format!(
            "UPDATE jobs SET state = 'queued', lease_owner = NULL, lease_expires_at = NULL,
                    updated_at = $4, last_seq = last_seq + 1
              WHERE {FENCE}
          RETURNING last_seq"
        ))
        .bind(&lease.job_id)
        .bind(lease.attempt)
        .bind(&lease.owner)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        let seq = seq.ok_or(StoreError::LeaseLost)?;
        let event = state_event(JobState::Queued, message, lease.attempt);
        insert_event(&mut tx, &lease.job_id, seq, now, &event).await?;
        tx.commit().await?;
        self.announce_events(&lease.job_id).await;
        self.announce_work().await;
        Ok(())
    }

    /// Requeues running jobs whose lease expired (their worker died or hung). A job whose
    /// cancellation was requested ends cancelled instead, and one that already used
    /// `max_attempts` attempts ends failed. Returns the ids of the jobs it touched.
    pub async fn reap_expired_leases(&self, max_attempts: i64) -> Result<Vec<String>> {
        let now = now_ms();
        let expired: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM jobs WHERE state = 'running' AND lease_expires_at < $1",
        )
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        let mut reaped = Vec::new();
        for id in expired {
            let mut tx = self.pool.begin().await?;
            let row: Option<(String, i64, i64)> = sqlx::query_as(
                "UPDATE jobs SET
                        state = CASE WHEN cancel_requested = 1 THEN 'cancelled'
                                     WHEN attempt >= $3 THEN 'failed'
                                     ELSE 'queued' END,
                        error = CASE WHEN cancel_requested = 0 AND attempt >= $3
                                     THEN 'the job lost its worker too many times' ELSE error END,
                        finished_at = CASE WHEN cancel_requested = 1 OR attempt >= $3
                                           THEN $2 ELSE finished_at END,
                        lease_owner = NULL, lease_expires_at = NULL,
                        updated_at = $2, last_seq = last_seq + 1
                  WHERE id = $1 AND state = 'running' AND lease_expires_at < $2
              RETURNING state, attempt, last_seq",
            )
            .bind(&id)
            .bind(now)
            .bind(max_attempts)
            .fetch_optional(&mut *tx)
            .await?;
            let Some((state, attempt, seq)) = row else {
                tx.rollback().await?;
                continue;
            };
            let state = JobState::from_name(&state).unwrap_or(JobState::Queued);
            let message = match state {
                JobState::Queued => "lease expired; requeued",
                JobState::Cancelled => "lease expired while cancelling; cancelled",
                _ => "lease expired too many times; failed",
            };
            insert_event(
                &mut tx,
                &id,
                seq,
                now,
                &state_event(state, message, attempt),
            )
            .await?;
            tx.commit().await?;
            self.announce_events(&id).await;
            reaped.push(id);
        }
        if !reaped.is_empty() {
            self.announce_work().await;
        }
        Ok(reaped)
    }
}

/// Reserves the next `count` event numbers of a leased job (and records its progress),
/// returning the last; fails with `LeaseLost` if the lease is no longer current.
async fn fenced_reserve_seqs(
    tx: &mut Transaction<'static, Any>,
    lease: &Lease,
    now: i64,
    progress: Option<f64>,
    count: i64,
) -> Result<i64> {
    // "No progress" is -1, never a NULL: sqlx 0.8's Any driver sends a NULL f64 to Postgres
    // typed as float4, the connection caches the statement with that parameter type, and
    // every later call on that connection with a real f64 then fails ("incorrect binary
    // data format in bind parameter 5"), losing those events.
    let seq: Option<i64> = sqlx::query_scalar(&format!(
        "UPDATE jobs SET last_seq = last_seq + $6, updated_at = $4,
                progress = CASE WHEN $5 >= 0 THEN $5 ELSE progress END
          WHERE {FENCE}
      RETURNING last_seq"
    ))
    .bind(&lease.job_id)
    .bind(lease.attempt)
    .bind(&lease.owner)
    .bind(now)
    .bind(progress.map_or(-1.0, |p| p.max(0.0)))
    .bind(count)
    .fetch_optional(&mut **tx)
    .await?;
    seq.ok_or(StoreError::LeaseLost)
}

#[cfg(test)]
impl Store {
    /// Makes a running job's lease expire now, as if its worker had stopped heartbeating.
    pub(crate) async fn expire_lease_for_test(&self, job_id: &str) -> Result<()> {
        sqlx::query("UPDATE jobs SET lease_expires_at = 0 WHERE id = $1")
            .bind(job_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
