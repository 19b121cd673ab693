//! The one error type of the engine. Messages say what to fix.

use std::fmt;

#[derive(Debug, Clone, PartialEq)]
pub enum EngineError {
    /// The request cannot run as given; the message says what to fix.
    InvalidInput(String),
    /// NaN or infinity appeared in a computation.
    Diverged(String),
    /// A caller's stop request ended the computation early.
    Interrupted,
    /// A bug: an invariant did not hold.
    Internal(String),
}

impl fmt::Display for EngineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EngineError::InvalidInput(m) => write!(f, "invalid input: {m}"),
            EngineError::Diverged(m) => write!(f, "diverged: {m}"),
            EngineError::Interrupted => write!(f, "interrupted"),
            EngineError::Internal(m) => write!(f, "internal error: {m}"),
        }
    }
}

impl std::error::Error for EngineError {}
