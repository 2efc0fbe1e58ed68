//! Snapshots: a machine's whole state to a stream and back. `format` is the
//! stream (header with the configuration fingerprint, checksummed
//! sections, end marker; `decode` checks all of it first), `fingerprint`
//! what must match between the saved and the restoring machine, `ram` the
//! RAM sections, `machine_state` the assembly of one boot's state (devices,
//! RAM, VM and vCPUs), `uri` the `file:` and `tcp:` places a snapshot
//! goes, and `migration` the job that writes one while the session runs
//! (QMP `migrate`) and the incoming side (`--incoming`).
//!
//! It must not know the QMP protocol nor the CLI.

pub mod fingerprint;
pub mod format;
pub mod machine_state;
pub mod migration;
pub mod ram;
pub mod uri;

pub use format::{decode, Decoded, FormatError};
pub use machine_state::{DeviceTable, MachineState, NoProgress, Progress, SavedRun};
pub use migration::{Incoming, IncomingSource, MigrationInfo, MigrationStatus, Migrations};
pub use uri::MigrationUri;

use thiserror::Error;

/// Why a snapshot could not be written or restored.
#[derive(Debug, Error)]
pub enum SnapshotError {
    #[error("{0}")]
    Format(#[from] FormatError),
    /// The snapshot is of another machine configuration.
    #[error("{0}")]
    Mismatch(String),
    #[error("the snapshot is corrupt: {0}")]
    Corrupt(String),
    #[error("device {name} refused its saved state: {reason}")]
    Device { name: String, reason: String },
    #[error("{0}")]
    Engine(String),
    #[error("cannot apply the snapshot's RAM: {0}")]
    Apply(String),
    #[error("{0}")]
    Io(#[source] std::io::Error),
    /// A device's images could not be handed over or taken back.
    #[error("device {0}")]
    Images(String),
}

impl SnapshotError {
    /// Whether the user's file (or configuration) is at fault (status 2).
    pub fn is_user_error(&self) -> bool {
        matches!(
            self,
            SnapshotError::Format(_)
                | SnapshotError::Mismatch(_)
                | SnapshotError::Corrupt(_)
                | SnapshotError::Device { .. }
        )
    }
}
