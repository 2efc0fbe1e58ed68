//! Errors of the hypervisor API.

use thiserror::Error;

/// What can go wrong talking to an engine.
#[derive(Debug, Error)]
pub enum Error {
    /// The engine is not available on this host (for example no /dev/kvm).
    #[error("engine unavailable: {0}")]
    Unavailable(String),
    /// A host system call failed.
    #[error("{op} failed: {source}")]
    Host {
        op: &'static str,
        source: std::io::Error,
    },
    /// The request does not fit this VM or vCPU (bad slot, overlapping memory,
    /// unknown MSR, vCPU id in use...).
    #[error("invalid request: {0}")]
    Invalid(String),
    /// The engine does not implement this operation.
    #[error("not supported by the {engine} engine: {what}")]
    Unsupported { engine: &'static str, what: String },
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn host(op: &'static str, source: impl Into<std::io::Error>) -> Self {
        Error::Host {
            op,
            source: source.into(),
        }
    }
}
