//! Why a machine could not be built or run.

use thiserror::Error;

use crate::loader::LoadError;
use crate::memory::MemoryError;

#[derive(Debug, Error)]
pub enum MachineError {
    /// The user's configuration cannot work (bad size, bad count, bad file).
    #[error("{0}")]
    Config(String),
    /// The kernel or initrd could not be loaded.
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error(transparent)]
    Memory(#[from] MemoryError),
    /// The chosen engine cannot run on this host.
    #[error("{0}")]
    EngineUnavailable(String),
    /// The engine refused an operation while building the VM.
    #[error("engine error while {while_}: {source}")]
    Engine {
        while_: &'static str,
        source: kite_hypervisor::Error,
    },
    /// Wiring the devices failed (a bug in the board's layout).
    #[error("device setup failed: {0}")]
    Device(#[from] kite_devices::BusError),
    /// The host would not start a thread.
    #[error("cannot start a thread: {0}")]
    Thread(std::io::Error),
    /// A snapshot to restore was refused (or could not be applied).
    #[error("{0}")]
    Snapshot(#[from] crate::snapshot::SnapshotError),
}

impl MachineError {
    /// Whether the user's input is at fault (the CLI exits 2), rather than
    /// the engine or host (exit 1).
    pub fn is_user_error(&self) -> bool {
        match self {
            MachineError::Snapshot(e) => e.is_user_error(),
            _ => matches!(
                self,
                MachineError::Config(_)
                    | MachineError::Load(_)
                    | MachineError::Memory(MemoryError::BadSize { .. })
            ),
        }
    }

    pub(crate) fn engine(
        while_: &'static str,
    ) -> impl FnOnce(kite_hypervisor::Error) -> MachineError {
        move |source| MachineError::Engine { while_, source }
    }
}
