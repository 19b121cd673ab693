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
}

impl From<tonic::Status> for ClientError {
    fn from(status: tonic::Status) -> Self {
        ClientError::Status(status)
    }
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
