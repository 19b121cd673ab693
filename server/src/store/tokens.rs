//! API tokens kept in the database (`ebm-server tokens create|list|revoke`): a row per token
//! with its tenant, name, creation time, last use, optional expiry and revocation. Only the
//! SHA-256 of a token is stored; see [`crate::auth`] for the token format and the check.
use super::{now_ms, Result, Store};
use sqlx::any::AnyRow;
use sqlx::Row;

/// `last_used_at` is written at most this often per token, so that a busy client does not
/// turn every request into a write.
pub const LAST_USED_RESOLUTION_MS: i64 = 60_000;

/// A row of `api_tokens`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenRecord {
    pub id: String,
    pub tenant: String,
    pub name: String,
    /// Hex SHA-256 of the whole token text.
    pub token_hash: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

const TOKEN_COLUMNS: &str =
    "id, tenant, name, token_hash, created_at, last_used_at, expires_at, revoked_at";

impl TokenRecord {
    fn from_row(row: &AnyRow) -> Result<TokenRecord> {
        Ok(TokenRecord {
            id: row.try_get("id")?,
            tenant: row.try_get("tenant")?,
            name: row.try_get("name")?,
            token_hash: row.try_get("token_hash")?,
            created_at: row.try_get("created_at")?,
            last_used_at: row.try_get("last_used_at")?,
            expires_at: row.try_get("expires_at")?,
            revoked_at: row.try_get("revoked_at")?,
        })
    }

    /// Usable at `now`: not revoked and not expired.
    pub fn is_active(&self, now: i64) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|e| now < e)
    }
}

impl Store {
    /// Stores a new token (its hash only).
    pub async fn insert_token(&self, token: &TokenRecord) -> Result<()> {
        sqlx::query(&format!(
            "INSERT INTO api_tokens ({TOKEN_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        ))
        .bind(&token.id)
        .bind(&token.tenant)
        .bind(&token.name)
        .bind(&token.token_hash)
        .bind(token.created_at)
        .bind(token.last_used_at)
        .bind(token.expires_at)
        .bind(token.revoked_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The token with this id, revoked or not.
    pub async fn token(&self, id: &str) -> Result<Option<TokenRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(TokenRecord::from_row).transpose()
    }

    /// Every token, oldest first.
    pub async fn list_tokens(&self) -> Result<Vec<TokenRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {TOKEN_COLUMNS} FROM api_tokens ORDER BY created_at, id"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(TokenRecord::from_row).collect()
    }

    /// True once any token has been created (rows are never deleted).
    pub async fn has_tokens(&self) -> Result<bool> {
        let row = sqlx::query("SELECT id FROM api_tokens LIMIT 1")
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.is_some())
    }

    /// Revokes a token; false if there is none with this id. Revoking twice keeps the
    /// first revocation time.
    pub async fn revoke_token(&self, id: &str) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE api_tokens SET revoked_at = COALESCE(revoked_at, $2) WHERE id = $1",
        )
        .bind(id)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Records a use at `now`, unless one was recorded less than
    /// [`LAST_USED_RESOLUTION_MS`] ago (then no row is written).
    pub async fn touch_token(&self, id: &str, now: i64) -> Result<()> {
        sqlx::query(
            "UPDATE api_tokens SET last_used_at = $2
             WHERE id = $1 AND (last_used_at IS NULL OR last_used_at <= $3)",
        )
        .bind(id)
        .bind(now)
        .bind(now - LAST_USED_RESOLUTION_MS)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
