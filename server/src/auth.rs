//! Bearer-token authentication: `authorization: Bearer TOKEN` maps to a tenant. Tokens come
//! from two places:
//!
//! - the database (`ebm-server tokens create|list|revoke`, the managed way): a token reads
//!   `tok_<32 hex>.<64 hex>`, the part before the dot is the row's id, the part after it 256
//!   random bits. Only the SHA-256 of the whole token is stored. Every request reads the row
//!   (no cache), so a revoked or expired token is refused at once by every server process
//!   sharing the database; `last_used_at` is written at most once a minute per token.
//! - the configuration's `tokens` table (token -> tenant), kept for development.
//!
//! SHA-256 rather than a slow password KDF (argon2, bcrypt): those exist to make guessing a
//! low-entropy password from its hash expensive. A token is 256 uniformly random bits, so
//! there is nothing to guess, and one hash per request keeps the check cheap. Hashes are
//! compared in constant time (`subtle`), and so are the configured tokens (through their
//! hashes, which also makes the compared lengths equal).
//!
//! With no token in the configuration and none ever created in the database, the service is
//! open and everything belongs to the tenant "default". Once a token exists in the database
//! the service stays closed (rows are never deleted; revoking every token does not open it).
//!
//! The check is async (a database read), so it runs in a tower layer ([`AuthLayer`]) around
//! each API service, not in a synchronous tonic interceptor. Every store query takes the
//! tenant, so a tenant sees only its own jobs, data sets and models.
use crate::store::{new_id, now_ms, Store, TokenRecord};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use subtle::ConstantTimeEq;
use tonic::{Request, Status};

/// The tenant a request acts for, put into the request's extensions by [`AuthLayer`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tenant(pub String);

pub const DEFAULT_TENANT: &str = "default";

/// Prefix of the id part of a database token.
const TOKEN_ID_PREFIX: &str = "tok_";
/// Random bytes of a token's secret part (256 bits).
const SECRET_BYTES: usize = 32;
/// Longest authorization header looked at (a database token is 101 characters).
const MAX_TOKEN_LEN: usize = 4096;

/// Resolves bearer tokens to tenants. Cheap to clone.
#[derive(Clone)]
pub struct Auth {
    /// SHA-256 of each configured token, with its tenant.
    configured: Arc<Vec<([u8; 32], String)>>,
    store: Option<Store>,
    /// Set once a token was seen in the database (never unset: tokens are never deleted).
    closed: Arc<AtomicBool>,
}

fn sha256(text: &str) -> [u8; 32] {
    Sha256::digest(text.as_bytes()).into()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Hex SHA-256 of a token, as stored in `api_tokens.token_hash`.
pub fn hash_token(token: &str) -> String {
    hex(&sha256(token))
}

/// A fresh database token: (its id, the token text to hand out once).
pub fn generate_token() -> anyhow::Result<(String, String)> {
    let mut secret = [0u8; SECRET_BYTES];
    getrandom::fill(&mut secret)
        .map_err(|e| anyhow::anyhow!("the system random generator failed: {e}"))?;
    let id = new_id(TOKEN_ID_PREFIX.trim_end_matches('_'));
    let token = format!("{id}.{}", hex(&secret));
    Ok((id, token))
}

/// Creates a token for `tenant` in the database, valid for `expires_in_ms` if given;
/// returns its record and the token text (which is not stored anywhere).
pub async fn create_token(
    store: &Store,
    tenant: &str,
    name: &str,
    expires_in_ms: Option<i64>,
) -> anyhow::Result<(TokenRecord, String)> {
    let (id, token) = generate_token()?;
    let now = now_ms();
    let record = TokenRecord {
        id,
        tenant: tenant.to_string(),
        name: name.to_string(),
        token_hash: hash_token(&token),
        created_at: now,
        last_used_at: None,
        expires_at: expires_in_ms.map(|ms| now.saturating_add(ms)),
        revoked_at: None,
    };
    store.insert_token(&record).await?;
    Ok((record, token))
}

fn unauthenticated(message: &str) -> Status {
    Status::unauthenticated(message)
}

impl Auth {
    /// `tokens`: the configured token -> tenant table; `store`: where managed tokens live
    /// (`None`: configured tokens only).
    pub fn new(tokens: BTreeMap<String, String>, store: Option<Store>) -> Auth {
        Auth {
            configured: Arc::new(
                tokens
                    .into_iter()
                    .map(|(token, tenant)| (sha256(&token), tenant))
                    .collect(),
            ),
            store,
            closed: Arc::new(AtomicBool::new(false)),
        }
    }

    /// True if requests need a token: one is configured, or one exists in the database.
    pub async fn required(&self) -> Result<bool, Status> {
        if !self.configured.is_empty() || self.closed.load(Ordering::Relaxed) {
            return Ok(true);
        }
        let Some(store) = &self.store else {
            return Ok(false);
        };
        let has = store.has_tokens().await.map_err(|e| {
            tracing::warn!(error = %e, "cannot check for API tokens");
            Status::unavailable("cannot check the token: the database is unavailable")
        })?;
        if has {
            self.closed.store(true, Ordering::Relaxed);
        }
        Ok(has)
    }

    /// The tenant of a request with this `authorization` header.
    pub async fn tenant_of(&self, authorization: Option<&str>) -> Result<Tenant, Status> {
        if !self.required().await? {
            return Ok(Tenant(DEFAULT_TENANT.into()));
        }
        let header = authorization.ok_or_else(|| {
            unauthenticated(
                "this server needs a token: send `authorization: Bearer TOKEN` (ebm --token)",
            )
        })?;
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .ok_or_else(|| unauthenticated("the authorization header must be `Bearer TOKEN`"))?
            .trim();
        if token.is_empty() || token.len() > MAX_TOKEN_LEN {
            return Err(unauthenticated("unknown token"));
        }
        let presented = sha256(token);
        if let Some((id, _)) = token.split_once('.') {
            if id.starts_with(TOKEN_ID_PREFIX) {
                if let Some(store) = &self.store {
                    return self.database_tenant(store, id, &presented).await;
                }
            }
        }
        // Every configured token is compared, so the time taken does not tell which one
        // (or whether any) matched.
        let mut found: Option<&String> = None;
        for (hash, tenant) in self.configured.iter() {
            if bool::from(hash.ct_eq(&presented)) {
                found = Some(tenant);
            }
        }
        found
            .map(|tenant| Tenant(tenant.clone()))
            .ok_or_else(|| unauthenticated("unknown token"))
    }

    async fn database_tenant(
        &self,
        store: &Store,
        id: &str,
        presented: &[u8; 32],
    ) -> Result<Tenant, Status> {
        let unavailable = |e: crate::store::StoreError| {
            tracing::warn!(error = %e, "cannot read an API token");
            Status::unavailable("cannot check the token: the database is unavailable")
        };
        let record = store
            .token(id)
            .await
            .map_err(unavailable)?
            .ok_or_else(|| unauthenticated("unknown token"))?;
        let stored = decode_hex(&record.token_hash).unwrap_or([0u8; 32]);
        if !bool::from(stored.ct_eq(presented)) {
            return Err(unauthenticated("unknown token"));
        }
        let now = now_ms();
        if record.revoked_at.is_some() {
            return Err(unauthenticated(&format!(
                "token {} was revoked: ask for a new one",
                record.id
            )));
        }
        if !record.is_active(now) {
            return Err(unauthenticated(&format!(
                "token {} has expired: ask for a new one",
                record.id
            )));
        }
        let recent = record
            .last_used_at
            .is_some_and(|t| t > now - crate::store::LAST_USED_RESOLUTION_MS);
        if !recent {
            if let Err(e) = store.touch_token(&record.id, now).await {
                tracing::warn!(error = %e, token = %record.id, "cannot record a token's last use");
            }
        }
        Ok(Tenant(record.tenant))
    }
}

fn decode_hex(text: &str) -> Option<[u8; 32]> {
    let bytes = text.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in bytes.chunks(2).enumerate() {
        let digit = |c: u8| (c as char).to_digit(16);
        out[i] = (digit(pair[0])? * 16 + digit(pair[1])?) as u8;
    }
    Some(out)
}

/// Tower layer that authenticates each request before the wrapped gRPC service sees it:
/// the resolved [`Tenant`] goes into the request's extensions, a refusal is answered with
/// UNAUTHENTICATED (or UNAVAILABLE when the database cannot be read) without calling it.
#[derive(Clone)]
pub struct AuthLayer {
    auth: Auth,
}

impl AuthLayer {
    pub fn new(auth: Auth) -> AuthLayer {
        AuthLayer { auth }
    }
}

impl<S> tower::Layer<S> for AuthLayer {
    type Service = Authenticated<S>;

    fn layer(&self, inner: S) -> Authenticated<S> {
        Authenticated {
            inner,
            auth: self.auth.clone(),
        }
    }
}

/// A gRPC service behind [`AuthLayer`].
#[derive(Clone)]
pub struct Authenticated<S> {
    inner: S,
    auth: Auth,
}

impl<S: tonic::server::NamedService> tonic::server::NamedService for Authenticated<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, B> tower::Service<http::Request<B>> for Authenticated<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        // The clone that was polled ready serves this request; the fresh clone stays.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let auth = self.auth.clone();
        Box::pin(async move {
            let header = request
                .headers()
                .get(http::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            match auth.tenant_of(header.as_deref()).await {
                Ok(tenant) => {
                    request.extensions_mut().insert(tenant);
                    inner.call(request).await
                }
                Err(status) => Ok(status.into_http()),
            }
        })
    }
}

/// The tenant of an authenticated request.
pub fn tenant<T>(request: &Request<T>) -> Result<String, Status> {
    request
        .extensions()
        .get::<Tenant>()
        .map(|t| t.0.clone())
        .ok_or_else(|| Status::internal("request reached a service without authentication"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn maps_configured_tokens_to_tenants() {
        let open = Auth::new(BTreeMap::new(), None);
        assert_eq!(
            open.tenant_of(None).await.unwrap(),
            Tenant("default".into())
        );
        let auth = Auth::new([("s3cret".to_string(), "alice".to_string())].into(), None);
        assert_eq!(
            auth.tenant_of(Some("Bearer s3cret")).await.unwrap(),
            Tenant("alice".into())
        );
        for bad in [
            None,
            Some("Bearer nope"),
            Some("Bearer s3cre"),
            Some("Bearer s3crett"),
            Some("s3cret"),
            Some("Basic s3cret"),
            Some("Bearer tok_x.s3cret"),
        ] {
            let err = auth.tenant_of(bad).await.unwrap_err();
            assert_eq!(err.code(), tonic::Code::Unauthenticated, "{bad:?}");
        }
    }

    #[tokio::test]
    async fn database_tokens_work_until_revoked_or_expired() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/t.db", dir.path().display());
        let store = Store::connect(&url).await.unwrap();
        let auth = Auth::new(BTreeMap::new(), Some(store.clone()));
        assert_eq!(
            auth.tenant_of(None).await.unwrap(),
            Tenant("default".into()),
            "open before any token exists"
        );
        let (record, token) = create_token(&store, "alice", "ci", None).await.unwrap();
        assert!(token.starts_with(&format!("{}.", record.id)), "{token}");
        assert_eq!(token.len(), 4 + 32 + 1 + 64);
        let stored = store.token(&record.id).await.unwrap().unwrap();
        assert_eq!(stored.token_hash, hash_token(&token));
        assert!(!stored.token_hash.contains(&token[record.id.len() + 1..]));
        assert_eq!(stored.last_used_at, None);

        let err = auth.tenant_of(None).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unauthenticated, "closed now");
        let header = format!("Bearer {token}");
        assert_eq!(
            auth.tenant_of(Some(&header)).await.unwrap(),
            Tenant("alice".into())
        );
        let used = store.token(&record.id).await.unwrap().unwrap();
        assert!(used.last_used_at.is_some(), "last use recorded");

        // Right id, wrong secret; and an unknown id.
        let mut forged = token.clone();
        let last = forged.pop().unwrap();
        forged.push(if last == '0' { '1' } else { '0' });
        for bad in [forged, format!("{}.{}", new_id("tok"), "0".repeat(64))] {
            let err = auth
                .tenant_of(Some(&format!("Bearer {bad}")))
                .await
                .unwrap_err();
            assert_eq!(err.code(), tonic::Code::Unauthenticated);
            assert_eq!(err.message(), "unknown token");
        }

        assert!(store.revoke_token(&record.id).await.unwrap());
        let err = auth.tenant_of(Some(&header)).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unauthenticated);
        assert!(err.message().contains("revoked"), "{}", err.message());
        assert!(!store.revoke_token("tok_none").await.unwrap());

        // Expired: created with a validity that has already passed.
        let (_, old) = create_token(&store, "bob", "", Some(-1)).await.unwrap();
        let err = auth
            .tenant_of(Some(&format!("Bearer {old}")))
            .await
            .unwrap_err();
        assert!(err.message().contains("expired"), "{}", err.message());
        store.close().await;
    }

    #[tokio::test]
    async fn last_use_is_written_at_most_once_a_minute() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/t.db", dir.path().display());
        let store = Store::connect(&url).await.unwrap();
        let (record, _) = create_token(&store, "alice", "", None).await.unwrap();
        store.touch_token(&record.id, 1_000_000).await.unwrap();
        store.touch_token(&record.id, 1_030_000).await.unwrap();
        let seen = store.token(&record.id).await.unwrap().unwrap();
        assert_eq!(
            seen.last_used_at,
            Some(1_000_000),
            "30 s later: not written"
        );
        store.touch_token(&record.id, 1_060_000).await.unwrap();
        let seen = store.token(&record.id).await.unwrap().unwrap();
        assert_eq!(
            seen.last_used_at,
            Some(1_060_000),
            "a minute later: written"
        );
        store.close().await;
    }
}
