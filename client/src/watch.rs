//! Following a job's events as a `Stream` that survives a dropped connection or a server
//! restart: it remembers the last sequence number it delivered and, on a transient error,
//! reconnects with `after_seq` set to it, so no event is lost or repeated. The stream ends
//! after the job's terminal state event.
use crate::error::{is_transient, ClientError, Result};
use crate::Client;
use ebm_api::v1::{JobEvent, JobState, WatchJobRequest};
use futures_util::Stream;
use std::pin::Pin;
use std::time::Duration;

/// Consecutive failed reconnection attempts before giving up (with the back-off below this
/// covers about a minute of a server being down, e.g. while it restarts).
const MAX_RETRIES: u32 = 40;
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// A job's events, in sequence order, ending after its terminal state.
pub type WatchStream = Pin<Box<dyn Stream<Item = Result<JobEvent>> + Send>>;

struct Follower {
    client: Client,
    job_id: String,
    last_seq: i64,
    events: Option<tonic::Streaming<JobEvent>>,
    failures: u32,
    /// Set when the stream ended cleanly and the job was already finished: one more replay
    /// picks up anything after `last_seq`, then the stream ends.
    final_replay: bool,
    done: bool,
}

impl Client {
    /// Follows job `id` from the event after `after_seq` (0 = from the start).
    pub fn watch(&self, id: &str, after_seq: i64) -> WatchStream {
        let follower = Follower {
            client: self.clone(),
            job_id: id.to_string(),
            last_seq: after_seq,
            events: None,
            failures: 0,
            final_replay: false,
            done: false,
        };
        Box::pin(futures_util::stream::unfold(follower, |mut f| async move {
            let item = f.next_event().await?;
            Some((item, f))
        }))
    }
}

impl Follower {
    async fn next_event(&mut self) -> Option<Result<JobEvent>> {
        loop {
            if self.done {
                return None;
            }
            if self.events.is_none() {
                let request = WatchJobRequest {
                    id: self.job_id.clone(),
                    after_seq: self.last_seq,
                };
                match self.client.jobs_client().watch_job(request).await {
                    Ok(response) => self.events = Some(response.into_inner()),
                    Err(status) => {
                        if let Some(err) = self.retry_or_fail(status).await {
                            return Some(Err(err));
                        }
                        continue;
                    }
                }
            }
            let events = self.events.as_mut()?;
            match events.message().await {
                Ok(Some(event)) => {
                    self.failures = 0;
                    if event.seq <= self.last_seq {
                        continue; // already delivered before a reconnect
                    }
                    self.last_seq = event.seq;
                    if event.kind == "state" && event.state().is_terminal() {
                        self.done = true;
                    }
                    return Some(Ok(event));
                }
                Ok(None) => {
                    // The server closed the stream without a terminal event (e.g. it is
                    // shutting down). Reconnect unless the job is over and was replayed.
                    self.events = None;
                    match self.client.get_job(&self.job_id).await {
                        Ok(job) if job.state().is_terminal() => {
                            if self.final_replay {
                                self.done = true;
                                return None;
                            }
                            self.final_replay = true;
                        }
                        Ok(_) => {}
                        Err(ClientError::Status(status)) => {
                            if let Some(err) = self.retry_or_fail(status).await {
                                return Some(Err(err));
                            }
                        }
                        Err(other) => {
                            self.done = true;
                            return Some(Err(other));
                        }
                    }
                }
                Err(status) => {
                    self.events = None;
                    if let Some(err) = self.retry_or_fail(status).await {
                        return Some(Err(err));
                    }
                }
            }
        }
    }

    /// Sleeps before the next attempt if the error is transient and retries are left;
    /// otherwise ends the stream with the error.
    async fn retry_or_fail(&mut self, status: tonic::Status) -> Option<ClientError> {
        if !is_transient(&status) || self.failures >= MAX_RETRIES {
            self.done = true;
            return Some(status.into());
        }
        let backoff = FIRST_BACKOFF
            .saturating_mul(1 << self.failures.min(5))
            .min(MAX_BACKOFF);
        self.failures += 1;
        tokio::time::sleep(backoff).await;
        None
    }
}

/// True if `event` reports that its job reached `state`.
pub fn reached(event: &JobEvent, state: JobState) -> bool {
    event.kind == "state" && event.state() == state
}
