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
//! Using it (what a snapshot or migration does):
//! - save: stop every vCPU at an instruction boundary (kick it, then call
//!   `run` until it returns `Interrupted`: that completes the last exit, as
//!   KVM's immediate_exit does); then `Vm::save_state` and, on each vCPU's
//!   thread, `Vcpu::save_state`. Guest RAM is the caller's.
//! - restore: create a VM with the same `VmConfig`, the same memory contents
//!   and the vCPUs (with their CPUID), then `Vm::restore_state`, then each
//!   `Vcpu::restore_state`, then run.
//! - across engines, what differs by nature is not converted: the TSC and
//!   the APIC timer tick at each engine's own rate (emu: 1 GHz TSC, 25 MHz
//!   APIC timer), the guest sees the new engine's CPUID, MSRs the restoring
//!   engine does not implement are skipped, and KVM restarts PIT counters
//!   from their reload value (KVM_SET_PIT2 reloads them).
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
