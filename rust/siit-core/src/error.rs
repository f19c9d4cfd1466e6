//! Errors of the core. Every message says what is wrong and where (argument, row, level),
//! so the bindings can surface them unchanged as Python `ValueError`s.

/// Result alias used throughout the core.
pub type Result<T> = std::result::Result<T, Error>;

/// What went wrong. Each variant carries a complete, human-readable message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// An array has the wrong number of dimensions or an inconsistent shape.
    #[error("{0}")]
    Shape(String),
    /// A value lies outside its allowed range (a code outside its codebook, a NaN score, ...).
    #[error("{0}")]
    Value(String),
    /// Two rows hold the same identifier where identifiers must be unique.
    #[error("{0}")]
    Duplicate(String),
    /// More identifiers are needed than the codebooks can spell.
    #[error("{0}")]
    Capacity(String),
    /// Some items could not receive one of their own candidates and no fallback was allowed.
    #[error("{0}")]
    Unassigned(String),
}

macro_rules! bail {
    ($kind:ident, $($fmt:tt)*) => {
        return Err($crate::error::Error::$kind(format!($($fmt)*)))
    };
}
pub(crate) use bail;
