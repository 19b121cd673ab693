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
    /// The TLS settings of the two ends do not fit (see [`TlsMismatch`]).
    #[error("{0}")]
    Tls(TlsMismatch),
}

/// Why a connection failed at the TLS level, in words that say what to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlsMismatch {
    /// A plain-text (`http://`) client reached a server that speaks TLS.
    #[error("the server speaks TLS: use an https:// URL (with --ca-cert FILE if its certificate comes from a private CA) [{detail}]")]
    ServerSpeaksTls { detail: String },
    /// An `https://` client reached a server that does not speak TLS.
    #[error("the server does not speak TLS: use an http:// URL, or start the server with --tls-cert and --tls-key [{detail}]")]
    ServerNotTls { detail: String },
    /// The server's certificate is not signed by the CA the client trusts.
    #[error("the server's certificate is not signed by {trusted} [{detail}]")]
    UntrustedCertificate { trusted: String, detail: String },
    /// The server's certificate does not name the host of the URL.
    #[error("the server's certificate is not valid for the host in the URL: connect with a name the certificate carries [{detail}]")]
    WrongHost { detail: String },
    /// The server requires a client certificate (mutual TLS) and got none, or one it does
    /// not accept.
    #[error("the server requires a client certificate signed by its client CA: pass --client-cert FILE --client-key FILE [{detail}]")]
    ClientCertificateRequired { detail: String },
}

impl From<tonic::Status> for ClientError {
    fn from(status: tonic::Status) -> Self {
        // Transport failures reach the caller as a status with the error chain as source;
        // a TLS mismatch is told apart by that text (rustls' and h2's error messages).
        if matches!(
            status.code(),
            Code::Unavailable | Code::Unknown | Code::Internal
        ) {
            let mut detail = status.message().to_string();
            let mut source = std::error::Error::source(&status);
            while let Some(cause) = source {
                detail.push_str(": ");
                detail.push_str(&cause.to_string());
                source = cause.source();
            }
            if let Some(tls) = tls_problem(&detail, None) {
                return tls;
            }
        }
        ClientError::Status(status)
    }
}

/// The TLS mismatch an error text describes, if any. `ca_cert`: the CA file the client was
/// given (named in the message when the server's certificate is not signed by it).
pub(crate) fn tls_problem(detail: &str, ca_cert: Option<&std::path::Path>) -> Option<ClientError> {
    let has = |needle: &str| detail.contains(needle);
    let detail = detail.to_string();
    let mismatch = if has("UnknownIssuer") || has("BadSignature") || has("unknown issuer") {
        let trusted = match ca_cert {
            Some(path) => format!("the CA given (--ca-cert {})", path.display()),
            None => "the CA given (--ca-cert), or by a public CA if none was given".to_string(),
        };
        TlsMismatch::UntrustedCertificate { trusted, detail }
    } else if has("NotValidForName") || has("not valid for name") {
        TlsMismatch::WrongHost { detail }
    } else if has("CertificateRequired")
        || has("certificate required")
        || (has("received fatal alert") && (has("BadCertificate") || has("UnknownCA")))
    {
        TlsMismatch::ClientCertificateRequired { detail }
    } else if has("InvalidContentType")
        || has("corrupt message")
        || has("tls handshake eof")
        || has("peer is incompatible")
    {
        TlsMismatch::ServerNotTls { detail }
    } else if has("frame with invalid size")
        || has("FRAME_SIZE_ERROR")
        || has("invalid HTTP version")
    {
        TlsMismatch::ServerSpeaksTls { detail }
    } else {
        return None;
    };
    Some(ClientError::Tls(mismatch))
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
            ClientError::Tls(TlsMismatch::ServerSpeaksTls { .. }) => "tls_required",
            ClientError::Tls(TlsMismatch::ServerNotTls { .. }) => "tls_not_spoken",
            ClientError::Tls(TlsMismatch::UntrustedCertificate { .. }) => "untrusted_certificate",
            ClientError::Tls(TlsMismatch::WrongHost { .. }) => "certificate_wrong_host",
            ClientError::Tls(TlsMismatch::ClientCertificateRequired { .. }) => {
                "client_certificate_required"
            }
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
