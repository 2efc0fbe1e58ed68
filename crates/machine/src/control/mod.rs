//! How a running machine is driven: `VmEvent` (what ends one boot's run),
//! `Control` (the per-boot handle devices and vCPU threads use to end it) and
//! `MachineControl` (the session's handle for a monitor: pause and resume,
//! reset, power button, quit, status, vCPU threads, events).
//!
//! This module sits below the builder, the console and the run loop, so
//! they all import it and it imports none of them. It must not know how
//! the board is wired nor how a monitor protocol spells things.

mod debug_hook;
mod machine_control;
mod run_control;
mod vm_event;

pub use debug_hook::{DebugEvent, DebugHook};
pub use machine_control::{
    Captured, ControlError, MachineControl, MachineEvent, RunStatus, ShutdownCause, VcpuThread,
};
pub use run_control::Control;
pub use vm_event::VmEvent;
