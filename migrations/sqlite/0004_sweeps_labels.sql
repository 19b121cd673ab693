-- Job labels (key=value, set at submit; ListJobs filters by them) and sweeps: one request
-- that queued a grid of variants of a spec, each variant a job of its own. A sweep's jobs
-- also carry the labels sweep=<id>, one per grid field, and seed=<n>.

CREATE TABLE job_labels (
    job_id TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    key    TEXT NOT NULL,
    value  TEXT NOT NULL,
    PRIMARY KEY (job_id, key)
);
CREATE INDEX job_labels_key_value ON job_labels (key, value);

CREATE TABLE sweeps (
    id         TEXT PRIMARY KEY,
    tenant     TEXT NOT NULL,
    request_id TEXT NOT NULL,
    -- Hash of everything that defines the sweep: a retried request must carry the same one.
    spec_hash  TEXT NOT NULL,
    -- JSON of ebm.v1.JobSpec (the base spec), of the grid ([GridAxis]) and of the labels.
    spec       TEXT NOT NULL,
    grid       TEXT NOT NULL,
    labels     TEXT NOT NULL,
    seeds      INTEGER NOT NULL,
    priority   INTEGER NOT NULL,
    variants   INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    UNIQUE (tenant, request_id)
);
CREATE INDEX sweeps_tenant_created ON sweeps (tenant, created_at DESC, id DESC);

-- The jobs of a sweep, by variant number (the order of the grid's expansion).
CREATE TABLE sweep_jobs (
    sweep_id TEXT NOT NULL REFERENCES sweeps (id) ON DELETE CASCADE,
    variant  INTEGER NOT NULL,
    job_id   TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    PRIMARY KEY (sweep_id, variant)
);
