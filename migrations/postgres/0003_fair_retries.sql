-- Fair share between tenants and retries that survive preemption.
-- run_after: a requeued job is not claimed before this time (ms; exponential backoff).
-- progressed_attempt: the latest attempt that saved a checkpoint or finished an epoch.
-- stalled_attempts: attempts in a row that lost their worker without progress; the job
--   fails when it reaches the configured limit.
ALTER TABLE jobs ADD COLUMN run_after BIGINT NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN progressed_attempt BIGINT NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN stalled_attempts BIGINT NOT NULL DEFAULT 0;
-- The claim counts each tenant's running jobs.
CREATE INDEX jobs_tenant_state ON jobs (tenant, state);
