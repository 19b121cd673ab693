-- Jobs, their events, and every blob a job needs or makes (data sets, models, checkpoints,
-- artifacts), so that the database alone holds the service's state.
-- Times are milliseconds since the Unix epoch; flags are 0/1 integers; specs, results and
-- event payloads are JSON text (the serde form of the ebm.v1 messages).

CREATE TABLE jobs (
    id               TEXT PRIMARY KEY,
    tenant           TEXT NOT NULL,
    request_id       TEXT NOT NULL,
    spec_hash        TEXT NOT NULL,
    kind             TEXT NOT NULL,
    spec             TEXT NOT NULL,
    state            TEXT NOT NULL,
    priority         INTEGER NOT NULL DEFAULT 0,
    attempt          INTEGER NOT NULL DEFAULT 0,
    lease_owner      TEXT,
    lease_expires_at INTEGER,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    progress         REAL NOT NULL DEFAULT 0,
    result           TEXT,
    error            TEXT,
    last_seq         INTEGER NOT NULL DEFAULT 0,
    created_at       INTEGER NOT NULL,
    started_at       INTEGER,
    finished_at      INTEGER,
    updated_at       INTEGER NOT NULL,
    UNIQUE (tenant, request_id)
);
CREATE INDEX jobs_queue ON jobs (state, priority DESC, created_at, id);
CREATE INDEX jobs_lease ON jobs (state, lease_expires_at);
CREATE INDEX jobs_tenant_created ON jobs (tenant, created_at DESC, id DESC);

CREATE TABLE job_events (
    job_id  TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    seq     INTEGER NOT NULL,
    time    INTEGER NOT NULL,
    kind    TEXT NOT NULL,
    payload TEXT NOT NULL,
    PRIMARY KEY (job_id, seq)
);

CREATE TABLE datasets (
    id         TEXT PRIMARY KEY,
    tenant     TEXT NOT NULL,
    name       TEXT NOT NULL,
    format     TEXT NOT NULL,
    n_rows     INTEGER NOT NULL,
    n_cols     INTEGER NOT NULL,
    value_kind TEXT NOT NULL,
    q          INTEGER NOT NULL,
    size_bytes INTEGER NOT NULL,
    notes      TEXT NOT NULL,
    data       BLOB NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX datasets_tenant_created ON datasets (tenant, created_at DESC, id DESC);

CREATE TABLE models (
    id         TEXT PRIMARY KEY,
    tenant     TEXT NOT NULL,
    name       TEXT NOT NULL,
    model_type TEXT NOT NULL,
    job_id     TEXT,
    size_bytes INTEGER NOT NULL,
    dims       TEXT NOT NULL,
    metadata   TEXT NOT NULL,
    data       BLOB NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX models_tenant_created ON models (tenant, created_at DESC, id DESC);

-- The latest complete checkpoint of a job (written atomically, replaced as training goes on).
CREATE TABLE checkpoints (
    job_id     TEXT PRIMARY KEY REFERENCES jobs (id) ON DELETE CASCADE,
    attempt    INTEGER NOT NULL,
    epoch      INTEGER NOT NULL,
    data       BLOB NOT NULL,
    created_at INTEGER NOT NULL
);

CREATE TABLE artifacts (
    job_id     TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    name       TEXT NOT NULL,
    data       BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (job_id, name)
);
