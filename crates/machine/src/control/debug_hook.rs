//! `DebugHook`: what a debugger (the gdb stub) plugs into a session so the
//! vCPU threads stop for it. The vCPU loop calls it between exits; the run
//! tells it when a boot starts and ends.
//!
//! It must not know any debugger protocol: it speaks in vCPUs and exits.

use std::sync::Arc;

use kite_hypervisor::{DebugHit, Vcpu, VcpuKick};
use vm_memory::GuestMemoryMmap;

use super::Control;

/// What a vCPU's last exit means to a debugger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DebugEvent {
    /// A `VcpuExit::Debug`.
    Hit(DebugHit),
    /// The vCPU triple-faulted: the machine resets (or ends) after the
    /// debugger has looked.
    TripleFault,
}

/// A debugger attached to the session.
pub trait DebugHook: Send + Sync {
    /// A boot starts: its memory and its vCPUs (id, kick).
    fn boot_started(
        &self,
        control: &Control,
        mem: Arc<GuestMemoryMmap>,
        vcpus: Vec<(u32, Arc<dyn VcpuKick>)>,
    );
    /// Every vCPU thread of the boot has ended.
    fn boot_ended(&self);
    /// On a vCPU thread, before each `run`: `event` is what the previous
    /// exit meant, if anything. Returns when the vCPU may run (at once when
    /// no debugger holds it), or when the run stops.
    fn vcpu_checkpoint(&self, vcpu: &mut dyn Vcpu, event: Option<DebugEvent>, control: &Control);
}
