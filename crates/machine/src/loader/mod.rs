//! Kernel loaders: each puts an image into guest memory and says how the boot
//! vCPU starts.

pub mod linux;

use kite_hypervisor::{Regs, Sregs};
use thiserror::Error;

/// The state the boot vCPU starts in, once a kernel is loaded.
#[derive(Debug, Clone, Default)]
pub struct BootState {
    pub regs: Regs,
    pub sregs: Sregs,
}

/// Why a kernel or initrd could not be loaded. Messages name the file's fault
/// so the user can act on it.
#[derive(Debug, Error)]
pub enum LoadError {
    #[error("{0}: not a kernel image Kite knows (multiboot, Linux bzImage or ELF)")]
    UnknownFormat(String),
    #[error("{what}: image is truncated or corrupt: {detail}")]
    Corrupt { what: String, detail: String },
    #[error("{what} does not fit in guest memory: {detail}")]
    TooLarge { what: String, detail: String },
    #[error("{what}: {detail}")]
    Unsupported { what: String, detail: String },
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}
