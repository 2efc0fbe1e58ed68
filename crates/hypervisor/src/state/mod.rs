//! Engine-neutral saved state of vCPUs and VMs, for snapshots and migration.
//!
//! `Vcpu::save_state` and `Vm::save_state` of every engine produce these
//! structs in the binary encoding of [`codec`] (a magic, a version, then the
//! fields in a fixed order); `restore_state` of every engine decodes them, so
//! a state saved on one engine restores on another. The structs are plain
//! data laid out as the architecture defines the state (registers as KVM's
//! structures name them, the local APIC by its registers, the 8259/IOAPIC/PIT
//! by their programming model), never as one engine keeps it.
//!
//! Decoding treats the bytes as hostile: it never panics, never allocates
//! more than the input could hold, refuses out-of-range values, and either
//! yields a complete struct or an error (nothing half-decoded).
//!
//! This module knows nothing of any engine, nor of snapshot files, streams
//! or devices.

pub mod codec;
pub mod ioapic;
pub mod lapic;
pub mod pic;
pub mod pit;
pub mod vcpu;
pub mod vm;

pub use codec::DecodeError;
pub use ioapic::IoapicState;
pub use lapic::LapicState;
pub use pic::PicState;
pub use pit::{PitChannelState, PitState};
pub use vcpu::{EventState, MpState, PendingException, VcpuState};
pub use vm::{ClockState, VmState};
