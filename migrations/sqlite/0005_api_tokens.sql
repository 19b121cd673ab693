-- API tokens managed with `ebm-server tokens create|list|revoke`. Only the SHA-256 of a
-- token is stored, never the token itself. A token reads `<id>.<secret>`: the id finds the
-- row, the hash of the whole token is compared in constant time. Times are milliseconds
-- since the Unix epoch; revoked_at set means revoked (rows are never deleted, so the
-- server stays closed to anonymous calls once a token has existed).

CREATE TABLE api_tokens (
    id           TEXT PRIMARY KEY,
    tenant       TEXT NOT NULL,
    name         TEXT NOT NULL,
    token_hash   TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    last_used_at INTEGER,
    expires_at   INTEGER,
    revoked_at   INTEGER
);
