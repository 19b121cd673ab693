//! Errors of the client library, with messages a person can act on: a refused connection says
//! which address was tried and that the server may not be running; a refused request keeps the
//! gRPC status code (so callers can match on it) and the server's explanation.
use tonic::Code;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server could not be reached at all.
    #[error("cannot reach the server at {url}: {detail}. Is ebm-server running? (set --server or EBM_SERVER)")]
    Unreachable { url: String, detail: String },
    /// The URL itself is malformed.
    #[error("invalid server URL {url:?}: {detail}")]
    BadUrl { url: String, detail: String },
    /// The server answered with an error status. (Not a `#[source]`: its message is already
    /// in ours, and error chains would print it twice.)
    #[error("{}", describe_status(.0))]
    Status(tonic::Status),
    /// A local file could not be read or written.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// The request was malformed before it was sent (e.g. a bad job spec).
    #[error("{0}")]
    Invalid(String),
    /// The TLS settings of the two ends do not fit; the message says what to change.
    #[error("{message}")]
    Tls {
        mismatch: TlsMismatch,
        message: String,
    },
}

/// Why a connection failed at the TLS level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMismatch {
    /// A plain-text (`http://`) client reached a server that speaks TLS.
    ServerSpeaksTls,
    /// An `https://` client reached a server that does not speak TLS.
    ServerNotTls,
    /// The server's certificate is not signed by the CA the client trusts.
    UntrustedCertificate,
    /// The server's certificate does not name the host of the URL.
    WrongHost,
    /// The server requires a client certificate (mutual TLS) and got none, or one it does
    /// not accept.
    ClientCertificateRequired,
}

/// Metadata key that carries a [`TlsMismatch`] from the transport layer of the client to
/// [`ClientError`] (a status made there keeps its metadata, not its source).
pub(crate) const MISMATCH_KEY: &str = "ebm-client-tls-mismatch";

impl TlsMismatch {
    pub fn name(self) -> &'static str {
        match self {
            TlsMismatch::ServerSpeaksTls => "tls_required",
            TlsMismatch::ServerNotTls => "tls_not_spoken",
            TlsMismatch::UntrustedCertificate => "untrusted_certificate",
            TlsMismatch::WrongHost => "certificate_wrong_host",
            TlsMismatch::ClientCertificateRequired => "client_certificate_required",
        }
    }

    fn from_name(name: &str) -> Option<TlsMismatch> {
        [
            TlsMismatch::ServerSpeaksTls,
            TlsMismatch::ServerNotTls,
            TlsMismatch::UntrustedCertificate,
            TlsMismatch::WrongHost,
            TlsMismatch::ClientCertificateRequired,
        ]
        .into_iter()
        .find(|m| m.name() == name)
    }

    /// What to do about it. `ca_cert`: the CA file the client was given.
    pub fn advice(self, ca_cert: Option<&std::path::Path>) -> String {
        match self {
            TlsMismatch::ServerSpeaksTls => "the server speaks TLS: use an https:// URL (with --ca-cert FILE if its certificate comes from a private CA)".into(),
            TlsMismatch::ServerNotTls => "the server does not speak TLS: use an http:// URL, or start the server with --tls-cert and --tls-key".into(),
            TlsMismatch::UntrustedCertificate => match ca_cert {
                Some(path) => format!("the server's certificate is not signed by the CA given (--ca-cert {})", path.display()),
                None => "the server's certificate is not signed by a public CA: give the CA that signed it with --ca-cert FILE (or EBM_CA_CERT)".into(),
            },
            TlsMismatch::WrongHost => "the server's certificate is not valid for the host in the URL: connect with a name the certificate carries".into(),
            TlsMismatch::ClientCertificateRequired => "the server requires a client certificate signed by its client CA (mutual TLS): pass --client-cert FILE --client-key FILE".into(),
        }
    }

    pub(crate) fn error(self, ca_cert: Option<&std::path::Path>, detail: &str) -> ClientError {
        ClientError::Tls {
            mismatch: self,
            message: format!("{} [{detail}]", self.advice(ca_cert)),
        }
    }
}

impl From<tonic::Status> for ClientError {
    fn from(status: tonic::Status) -> Self {
        let mismatch = status
            .metadata()
            .get(MISMATCH_KEY)
            .and_then(|v| v.to_str().ok())
            .and_then(TlsMismatch::from_name);
        match mismatch {
            Some(mismatch) => ClientError::Tls {
                mismatch,
                message: status.message().to_string(),
            },
            None => ClientError::Status(status),
        }
    }
}

/// The TLS mismatch an error text describes, if any (rustls' messages).
pub(crate) fn tls_problem(detail: &str) -> Option<TlsMismatch> {
    let has = |needle: &str| detail.contains(needle);
    Some(
        if has("UnknownIssuer") || has("BadSignature") || has("unknown issuer") {
            TlsMismatch::UntrustedCertificate
        } else if has("NotValidForName") || has("not valid for name") {
            TlsMismatch::WrongHost
        } else if has("CertificateRequired")
            || (has("received fatal alert") && (has("BadCertificate") || has("UnknownCA")))
        {
            TlsMismatch::ClientCertificateRequired
        } else if has("InvalidContentType")
            || has("corrupt message")
            || has("tls handshake eof")
            || has("peer is incompatible")
        {
            TlsMismatch::ServerNotTls
        } else {
            return None;
        },
    )
}

impl ClientError {
    /// The gRPC status code, if the server answered with one.
    pub fn code(&self) -> Option<Code> {
        match self {
            ClientError::Status(status) => Some(status.code()),
            _ => None,
        }
    }

    /// A short snake-case name of the error kind, for JSON output.
    pub fn kind(&self) -> &'static str {
        match self {
            ClientError::Unreachable { .. } => "unreachable",
            ClientError::BadUrl { .. } => "bad_url",
            ClientError::Io { .. } => "io",
            ClientError::Invalid(_) => "invalid_argument",
            ClientError::Tls { mismatch, .. } => mismatch.name(),
            ClientError::Status(status) => code_name(status.code()),
        }
    }

    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        ClientError::Io {
            context: context.into(),
            source,
        }
    }
}

/// True for errors after which retrying the same call may succeed (the connection dropped,
/// the server restarted, a deadline passed).
pub fn is_transient(status: &tonic::Status) -> bool {
    matches!(
        status.code(),
        Code::Unavailable
            | Code::Unknown
            | Code::Aborted
            | Code::DeadlineExceeded
            | Code::Cancelled
    )
}

fn describe_status(status: &tonic::Status) -> String {
    let message = status.message();
    let detail = if message.is_empty() {
        "(no details)"
    } else {
        message
    };
    match status.code() {
        Code::InvalidArgument => format!("invalid request: {detail}"),
        Code::NotFound => format!("not found: {detail}"),
        Code::AlreadyExists => format!("already exists: {detail}"),
        Code::Unauthenticated => {
            format!("not authenticated: {detail} (pass --token or set EBM_TOKEN)")
        }
        Code::PermissionDenied => format!("permission denied: {detail}"),
        Code::ResourceExhausted => format!("too large or too many: {detail}"),
        Code::FailedPrecondition => format!("not possible now: {detail}"),
        Code::Unavailable => format!("the server is unavailable: {detail}"),
        code => format!("server error ({}): {detail}", code_name(code)),
    }
}

fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "ok",
        Code::Cancelled => "cancelled",
        Code::Unknown => "unknown",
        Code::InvalidArgument => "invalid_argument",
        Code::DeadlineExceeded => "deadline_exceeded",
        Code::NotFound => "not_found",
        Code::AlreadyExists => "already_exists",
        Code::PermissionDenied => "permission_denied",
        Code::ResourceExhausted => "resource_exhausted",
        Code::FailedPrecondition => "failed_precondition",
        Code::Aborted => "aborted",
        Code::OutOfRange => "out_of_range",
        Code::Unimplemented => "unimplemented",
        Code::Internal => "internal",
        Code::Unavailable => "unavailable",
        Code::DataLoss => "data_loss",
        Code::Unauthenticated => "unauthenticated",
    }
}

pub type Result<T, E = ClientError> = std::result::Result<T, E>;
