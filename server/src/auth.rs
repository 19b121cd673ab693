//! Bearer-token authentication: `authorization: Bearer TOKEN` maps to a tenant through the
//! configured `tokens` table. With no tokens configured the service is open and everything
//! belongs to the tenant "default". Every store query takes the tenant, so a tenant sees
//! only its own jobs, data sets and models.
use std::collections::BTreeMap;
use std::sync::Arc;
use tonic::{Request, Status};

/// The tenant a request acts for, put into the request's extensions by [`Auth`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tenant(pub String);

pub const DEFAULT_TENANT: &str = "default";

/// Interceptor resolving the bearer token of each request to its tenant.
#[derive(Clone)]
pub struct Auth {
    tokens: Arc<BTreeMap<String, String>>,
}

impl Auth {
    pub fn new(tokens: BTreeMap<String, String>) -> Auth {
        Auth {
            tokens: Arc::new(tokens),
        }
    }

    fn tenant_of(&self, authorization: Option<&str>) -> Result<Tenant, Status> {
        if self.tokens.is_empty() {
            return Ok(Tenant(DEFAULT_TENANT.into()));
        }
        let header = authorization.ok_or_else(|| {
            Status::unauthenticated(
                "this server needs a token: send `authorization: Bearer TOKEN` (ebm --token)",
            )
        })?;
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .ok_or_else(|| {
                Status::unauthenticated("the authorization header must be `Bearer TOKEN`")
            })?
            .trim();
        self.tokens
            .get(token)
            .map(|tenant| Tenant(tenant.clone()))
            .ok_or_else(|| Status::unauthenticated("unknown token"))
    }
}

impl tonic::service::Interceptor for Auth {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let header = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let tenant = self.tenant_of(header.as_deref())?;
        request.extensions_mut().insert(tenant);
        Ok(request)
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

    #[test]
    fn maps_tokens_to_tenants() {
        let open = Auth::new(BTreeMap::new());
        assert_eq!(open.tenant_of(None).unwrap(), Tenant("default".into()));
        let auth = Auth::new([("s3cret".to_string(), "alice".to_string())].into());
        assert_eq!(
            auth.tenant_of(Some("Bearer s3cret")).unwrap(),
            Tenant("alice".into())
        );
        for bad in [
            None,
            Some("Bearer nope"),
            Some("s3cret"),
            Some("Basic s3cret"),
        ] {
            let err = auth.tenant_of(bad).unwrap_err();
            assert_eq!(err.code(), tonic::Code::Unauthenticated, "{bad:?}");
        }
    }
}
