//! The engine's one error type. Every failure a caller can act on says what to fix;
//! the server maps `InvalidInput` to INVALID_ARGUMENT and `Diverged` to a failed job.

use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq)]
pub enum EngineError {
    /// The caller's input (data, spec, model file, checkpoint) is unusable; the message
    /// says what is wrong and how to fix it.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// Training produced NaN or infinite values; the message says where and suggests a fix.
    #[error("training diverged: {0}")]
    Diverged(String),
    /// The caller asked the computation to stop.
    #[error("interrupted")]
    Interrupted,
    /// A bug or an environment failure (e.g. a device error), not the caller's fault.
    #[error("internal error: {0}")]
    Internal(String),
}

impl EngineError {
    pub fn invalid(message: impl Into<String>) -> Self {
        EngineError::InvalidInput(message.into())
    }
}

pub type Result<T, E = EngineError> = std::result::Result<T, E>;
