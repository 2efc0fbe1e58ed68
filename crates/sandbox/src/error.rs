//! The sandbox's errors: building a filter or installing it.

/// Why a filter could not be built or installed.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// A rule the sandbox wrote was rejected by the filter compiler.
    #[error("seccomp: building the {role} filter: {source}")]
    Build {
        role: &'static str,
        source: seccompiler::BackendError,
    },
    /// The kernel refused the filter (no seccomp support, or a limit).
    #[error("seccomp: installing the {role} filter: {source}")]
    Install {
        role: &'static str,
        source: seccompiler::Error,
    },
    /// The SIGSYS reporter could not be installed.
    #[error("seccomp: installing the SIGSYS reporter: {0}")]
    Reporter(std::io::Error),
}
