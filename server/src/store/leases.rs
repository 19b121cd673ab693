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

/// Running-jobs limits per tenant, enforced by the claim statement: a tenant at its limit
/// has no claimable job. `None` is no limit.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunningLimits {
    pub default: Option<u64>,
    /// Tenants whose limit differs from the default.
    pub tenants: Vec<(String, Option<u64>)>,
}

/// When a job whose lease expired is retried, and when it is given up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in a row without progress (no newer checkpoint, no finished epoch) after
    /// which the job fails.
    pub max_stalled_attempts: i64,
    /// Backoff after the first attempt without progress, doubling with each further one.
    pub backoff_base_ms: i64,
    pub backoff_max_ms: i64,
}

impl RetryPolicy {
    /// How long a job waits after its `stalled`-th attempt in a row without progress
    /// (0 after an attempt that progressed).
    pub fn backoff_ms(&self, stalled: i64) -> i64 {
        if stalled <= 0 {
            return 0;
        }
        let doublings = (stalled - 1).min(30) as u32;
        self.backoff_base_ms
            .saturating_mul(1 << doublings)
            .min(self.backoff_max_ms)
    }
}

/// The claim as one statement. `running` counts each tenant's running jobs; a queued job
/// is eligible when its backoff has passed and its tenant is below its limit (a CASE over
/// the tenants with their own limit, bound as parameters $4, $5, ...). The tenant with the
/// fewest running jobs goes first, so one tenant's long queue cannot starve another's job.
fn claim_statement(limits: &RunningLimits, skip_locked: &str) -> String {
    let limit = if limits.tenants.is_empty() {
        "$4".to_string()
    } else {
        let mut case = String::from("CASE queued.tenant");
        let mut param = 4;
        for _ in &limits.tenants {
            case.push_str(&format!(" WHEN ${param} THEN ${}", param + 1));
            param += 2;
        }
        case + &format!(" ELSE ${param} END")
    };
    format!(
        "WITH running AS (SELECT tenant, COUNT(*) AS n FROM jobs
                           WHERE state = 'running' GROUP BY tenant)
         UPDATE jobs
            SET state = 'running', attempt = attempt + 1, lease_owner = $1,
                lease_expires_at = $2, started_at = COALESCE(started_at, $3), updated_at = $3,
                last_seq = last_seq + 1
          WHERE id = (SELECT queued.id
                        FROM jobs AS queued LEFT JOIN running ON running.tenant = queued.tenant
                       WHERE queued.state = 'queued' AND queued.run_after <= $3
                         AND COALESCE(running.n, 0) < {limit}
                       ORDER BY COALESCE(running.n, 0), queued.priority DESC,
                                queued.created_at, queued.id
                       LIMIT 1
                       {skip_locked})
      RETURNING id, attempt, last_seq"
    )
}

/// A limit as the claim binds it (no limit: the largest count).
fn limit_value(limit: Option<u64>) -> i64 {
    limit.map_or(i64::MAX, |l| l.min(i64::MAX as u64) as i64)
}

/// The fence: the job is still running this attempt under this owner.
const FENCE: &str = "id = $1 AND attempt = $2 AND lease_owner = $3 AND state = 'running'";

impl Store {
    /// Claims the most urgent queued job for `owner`, leasing it for `lease_ms`, with no
    /// running-jobs limits.
    pub async fn claim_next_job(&self, owner: &str, lease_ms: i64) -> Result<Option<ClaimedJob>> {
        self.claim_next_job_within(owner, lease_ms, &RunningLimits::default())
            .await
    }

    /// Claims the next job for `owner`, leasing it for `lease_ms`: among queued jobs whose
    /// backoff has passed and whose tenant is below its running-jobs limit, one of the
    /// tenant with the fewest running jobs, then the highest priority, then the oldest.
    pub async fn claim_next_job_within(
        &self,
        owner: &str,
        lease_ms: i64,
        limits: &RunningLimits,
    ) -> Result<Option<ClaimedJob>> {
        let now = now_ms();
        let (lock, skip_locked) = match self.dialect {
            Dialect::Sqlite => (None, ""),
            Dialect::Postgres => (
                Some(super::postgres::SERIALIZE_CLAIMS),
                super::postgres::CLAIM_SKIP_LOCKED,
            ),
        };
        let mut tx = self.pool.begin().await?;
        if let Some(lock) = lock {
            sqlx::query(lock).execute(&mut *tx).await?;
        }
        let statement = claim_statement(limits, skip_locked);
        let mut claim = sqlx::query_as(&statement)
            .bind(owner)
            .bind(now + lease_ms)
            .bind(now);
        for (tenant, limit) in &limits.tenants {
            claim = claim.bind(tenant.as_str()).bind(limit_value(*limit));
        }
        let claimed: Option<(String, i64, i64)> = claim
            .bind(limit_value(limits.default))
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
        // A finished epoch (its metrics) is progress: losing the worker after it does not
        // count against the job's attempts.
        let finished_epoch = events.iter().any(|e| e.kind == "metrics");
        let reserve = Reserve {
            progress,
            count: events.len() as i64,
            finished_epoch,
        };
        let last = fenced_reserve_seqs(&mut tx, lease, now, reserve).await?;
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
        let fenced = sqlx::query(&format!(
            "UPDATE jobs SET updated_at = $4, progressed_attempt = attempt WHERE {FENCE}"
        ))
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
    pub async fn finish_job(&self, lease: &Lease, finish: &Finish) -> Result<()> {
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

    /// Requeues running jobs whose lease expired (their worker died or hung). An attempt
    /// that progressed (saved a checkpoint or finished an epoch) is requeued at once and not
    /// counted; one that did not counts as stalled, and the job waits an exponential
    /// backoff (`run_after`) before its next claim, or fails once `max_stalled_attempts`
    /// attempts in a row stalled. A job whose cancellation was requested ends cancelled.
    /// Returns the ids of the jobs it touched.
    pub async fn reap_expired_leases(&self, policy: &RetryPolicy) -> Result<Vec<String>> {
        let now = now_ms();
        let expired: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM jobs WHERE state = 'running' AND lease_expires_at < $1",
        )
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        let mut reaped = Vec::new();
        for id in expired {
            if self.reap_one(&id, now, policy).await? {
                reaped.push(id);
            }
        }
        if !reaped.is_empty() {
            self.announce_work().await;
        }
        Ok(reaped)
    }

    /// Ends or requeues one job whose lease expired; false if it was no longer expired.
    async fn reap_one(&self, id: &str, now: i64, policy: &RetryPolicy) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        // In an UPDATE every right-hand side sees the row as it was: "stalled" below is
        // whether this attempt made no progress, "stalled_attempts + 1" the new count.
        let row: Option<(String, i64, i64, i64, i64)> = sqlx::query_as(
            "UPDATE jobs SET
                    state = CASE WHEN cancel_requested = 1 THEN 'cancelled'
                                 WHEN progressed_attempt < attempt
                                      AND stalled_attempts + 1 >= $3 THEN 'failed'
                                 ELSE 'queued' END,
                    stalled_attempts = CASE WHEN progressed_attempt < attempt
                                            THEN stalled_attempts + 1 ELSE 0 END,
                    finished_at = CASE WHEN cancel_requested = 1
                                         OR (progressed_attempt < attempt
                                             AND stalled_attempts + 1 >= $3)
                                       THEN $2 ELSE finished_at END,
                    lease_owner = NULL, lease_expires_at = NULL,
                    updated_at = $2, last_seq = last_seq + 1
              WHERE id = $1 AND state = 'running' AND lease_expires_at < $2
          RETURNING state, attempt, last_seq, stalled_attempts, progressed_attempt",
        )
        .bind(id)
        .bind(now)
        .bind(policy.max_stalled_attempts)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((state, attempt, seq, stalled, progressed)) = row else {
            tx.rollback().await?;
            return Ok(false);
        };
        let state = JobState::from_name(&state).unwrap_or(JobState::Queued);
        let message = match state {
            JobState::Cancelled => "lease expired while cancelling; cancelled".to_string(),
            JobState::Failed => {
                let error = stalled_error(attempt, stalled);
                sqlx::query("UPDATE jobs SET error = $2 WHERE id = $1")
                    .bind(id)
                    .bind(&error)
                    .execute(&mut *tx)
                    .await?;
                error
            }
            _ if stalled == 0 => format!(
                "lease expired after attempt {attempt} made progress \
                 (checkpoint or finished epoch); requeued to resume at once"
            ),
            _ => {
                let backoff = policy.backoff_ms(stalled);
                sqlx::query("UPDATE jobs SET run_after = $2 WHERE id = $1")
                    .bind(id)
                    .bind(now + backoff)
                    .execute(&mut *tx)
                    .await?;
                let since = if progressed > 0 {
                    format!("since attempt {progressed}")
                } else {
                    "ever".to_string()
                };
                format!(
                    "lease expired without progress in attempt {attempt} ({stalled} of {} \
                     stalled attempts in a row allowed, no progress {since}); requeued, \
                     claimable after a backoff of {:.1} s, at {}",
                    policy.max_stalled_attempts,
                    backoff as f64 / 1000.0,
                    super::rfc3339(now + backoff)
                )
            }
        };
        insert_event(
            &mut tx,
            id,
            seq,
            now,
            &state_event(state, &message, attempt),
        )
        .await?;
        tx.commit().await?;
        self.announce_events(id).await;
        Ok(true)
    }
}

/// Why a job whose attempts keep stalling failed.
fn stalled_error(attempt: i64, stalled: i64) -> String {
    format!(
        "the job lost its worker in {stalled} attempts in a row without progress \
         (attempts {} to {attempt}: no newer checkpoint, no finished epoch); it may crash or \
         exhaust the memory of its worker",
        attempt - stalled + 1
    )
}

/// What a batch of events reserves and records.
struct Reserve {
    progress: Option<f64>,
    count: i64,
    finished_epoch: bool,
}

/// Reserves the next `count` event numbers of a leased job (and records its progress),
/// returning the last; fails with `LeaseLost` if the lease is no longer current.
async fn fenced_reserve_seqs(
    tx: &mut Transaction<'static, Any>,
    lease: &Lease,
    now: i64,
    reserve: Reserve,
) -> Result<i64> {
    // "No progress" is -1, never a NULL: sqlx 0.8's Any driver sends a NULL f64 to Postgres
    // typed as float4, the connection caches the statement with that parameter type, and
    // every later call on that connection with a real f64 then fails ("incorrect binary
    // data format in bind parameter 5"), losing those events.
    let seq: Option<i64> = sqlx::query_scalar(&format!(
        "UPDATE jobs SET last_seq = last_seq + $6, updated_at = $4,
                progress = CASE WHEN $5 >= 0 THEN $5 ELSE progress END,
                progressed_attempt = CASE WHEN $7 = 1 THEN attempt ELSE progressed_attempt END
          WHERE {FENCE}
      RETURNING last_seq"
    ))
    .bind(&lease.job_id)
    .bind(lease.attempt)
    .bind(&lease.owner)
    .bind(now)
    .bind(reserve.progress.map_or(-1.0, |p| p.max(0.0)))
    .bind(reserve.count)
    .bind(i64::from(reserve.finished_epoch))
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
