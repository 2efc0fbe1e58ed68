//! The Kite PC: guest memory layout, kernel loaders, the board (devices on the
//! buses, interrupt wiring), and one host thread per vCPU that runs it and
//! dispatches its exits.
//!
//! This crate knows what a PC is; it must not know how an engine runs guest
//! code: it talks to engines only through the hypervisor API (and picks one
//! in `engine`).

pub mod board;
pub mod builder;
pub mod config;
pub mod console;
pub mod control;
pub mod display_devices;
pub mod engine;
pub mod error;
pub mod firmware;
pub mod firmware_devices;
pub mod gdb;
pub mod ide_devices;
pub mod input_devices;
pub mod irq;
pub mod loader;
pub mod memory;
pub mod memory_map;
pub mod run;
pub mod snapshot;
pub mod vcpu_loop;
pub mod virtio_devices;

pub use config::{
    BlockConfig, BootDevice, BootFailure, DisplayConfig, EngineChoice, FirmwareConfig, HostForward,
    IdeDriveConfig, IdeDriveKind, MachineConfig, NetConfig, SerialMode,
};
pub use control::{
    ControlError, MachineControl, MachineEvent, RunStatus, ShutdownCause, VcpuThread,
};
pub use error::MachineError;
/// The emu engine's execution tier (`KITE_EMU_TIER`), for a front end to
/// check before it builds a machine.
pub use kite_engine_emu::jit::Tier as EmuTier;
pub use loader::Image;
pub use run::{run_session, run_session_controlled, run_session_incoming, Outcome};
