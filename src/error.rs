//! The crate's error type. Every error names what it was about (a file, a tensor, a session) so a
//! game can show it to a player or a log reader can act on it.

use std::path::PathBuf;

/// Errors from models, the worker, files and datasets.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A tensor operation failed.
    #[error("tensor error: {0}")]
    Candle(#[from] candle_core::Error),
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// A file exists but its contents are wrong (corrupt, truncated, wrong version, wrong shape).
    #[error("{}: {message}", path.display())]
    BadFile {
        /// The file.
        path: PathBuf,
        /// What was wrong with it.
        message: String,
    },
    /// Saved session state that this model cannot restore.
    #[error("saved session: {0}")]
    BadSessionState(String),
    /// An action or controls that do not fit the model.
    #[error(transparent)]
    Spec(#[from] crate::spec::SpecMismatch),
    /// A model produced something unusable (wrong frame size, NaN samples).
    #[error("model output: {0}")]
    BadOutput(String),
    /// A model panicked; the message is the panic's.
    #[error("model panicked: {0}")]
    Panic(String),
    /// The inference worker is gone or its queue is full.
    #[error("worker: {0}")]
    Worker(String),
    /// Anything else, with a message.
    #[error("{0}")]
    Other(String),
}

impl Error {
    /// An I/O error about `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// A "this file is wrong" error about `path`.
    pub fn bad_file(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Error::BadFile {
            path: path.into(),
            message: message.into(),
        }
    }
}

/// Result with the crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
