//! The hypervisor API of Kite: one set of traits that every engine implements.
//!
//! `Hypervisor` creates `Vm`s; a `Vm` owns guest-physical memory slots, interrupt
//! lines and vCPUs; a `Vcpu` runs guest code in guest mode until an exit that user
//! mode must handle (port I/O, MMIO, HLT without an irqchip, shutdown...).
//!
//! This crate knows nothing about PCs (no devices, no loaders) and nothing about
//! how an engine runs guest code (no /dev/kvm, no interpreter). The interrupt
//! controllers (LAPIC, IOAPIC, PIC) live *below* this API, inside each engine, as
//! KVM's in-kernel irqchip does; devices above it only raise GSI lines and MSIs.

pub mod error;
pub mod exit;
pub mod regs;
pub mod state;

#[cfg(feature = "conformance")]
pub mod conformance;

use std::sync::Arc;

pub use error::{Error, Result};
pub use exit::VcpuExit;
pub use regs::*;

/// Which engine runs guest mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineKind {
    /// The host's /dev/kvm (Intel VT-x, AMD-V).
    Kvm,
    /// Guest mode in software (Kite's own x86 CPU).
    Emu,
}

impl EngineKind {
    pub fn name(self) -> &'static str {
        match self {
            EngineKind::Kvm => "kvm",
            EngineKind::Emu => "emu",
        }
    }
}

/// How a VM is built.
#[derive(Debug, Clone)]
pub struct VmConfig {
    /// Create the interrupt controllers inside the engine (LAPIC per vCPU,
    /// IOAPIC, 8259 pair), as KVM_CREATE_IRQCHIP. With an irqchip, HLT sleeps
    /// inside `Vcpu::run` until an interrupt arrives; without one, HLT is an exit.
    pub irqchip: bool,
    /// Create the in-engine 8254 PIT (as KVM_CREATE_PIT2). Only with `irqchip`.
    pub pit: bool,
    /// The number of vCPUs that will be created (for MADT/APIC id planning).
    pub vcpus: u32,
}

impl Default for VmConfig {
    fn default() -> Self {
        VmConfig {
            irqchip: true,
            pit: false,
            vcpus: 1,
        }
    }
}

/// An engine: creates VMs.
pub trait Hypervisor: Send + Sync {
    fn kind(&self) -> EngineKind;
    /// Create a VM. Each VM is independent; several may exist in one process.
    fn create_vm(&self, config: &VmConfig) -> Result<Arc<dyn Vm>>;
    /// The CPUID leaves this engine can present to a guest (what it implements,
    /// or what the host supports, for KVM). Suitable for `Vcpu::set_cpuid`.
    fn supported_cpuid(&self) -> Result<Vec<CpuidEntry>>;
}

/// One guest-physical memory slot, as KVM_SET_USER_MEMORY_REGION.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryRegion {
    pub slot: u32,
    pub guest_phys_addr: u64,
    /// Size in bytes, a multiple of 4 KiB. Zero deletes the slot.
    pub size: u64,
    /// Host virtual address of the backing mapping.
    pub host_addr: u64,
    /// Guest writes to a read-only slot leave as MMIO write exits (ROM).
    pub readonly: bool,
    /// Record written pages, read and cleared by `Vm::dirty_log`.
    pub log_dirty: bool,
}

/// A message-signalled interrupt, as KVM_SIGNAL_MSI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Msi {
    pub address: u64,
    pub data: u32,
}

/// A virtual machine: memory, interrupt lines, vCPUs. Shared between the vCPU
/// threads and the device model.
pub trait Vm: Send + Sync {
    /// Add, change or (size 0) delete a memory slot.
    ///
    /// # Safety
    /// `region.host_addr .. + size` must be a valid, writable mapping that lives
    /// as long as the slot (until deleted or the VM is dropped).
    unsafe fn set_memory_region(&self, region: MemoryRegion) -> Result<()>;
    /// The dirty bitmap of a slot (bit n = page n was written since the last
    /// call), then cleared. The slot must have been added with `log_dirty`.
    fn dirty_log(&self, slot: u32) -> Result<Vec<u64>>;
    /// Create vCPU `id` (its APIC id). Move it to its own thread to run it.
    fn create_vcpu(&self, id: u32) -> Result<Box<dyn Vcpu>>;
    /// Drive an interrupt line (GSI) of the irqchip: IRQ 0-15 reach both the
    /// 8259 pair and the IOAPIC, 16-23 the IOAPIC only.
    fn set_irq_line(&self, gsi: u32, level: bool) -> Result<()>;
    /// Deliver a message-signalled interrupt to the local APICs.
    fn signal_msi(&self, msi: Msi) -> Result<()>;
    /// The VM-wide engine state a snapshot needs (the irqchips the engine
    /// owns: 8259 pair, IOAPIC, PIT; guest clock), in an engine-neutral,
    /// versioned encoding that `restore_state` of either engine accepts.
    /// Call only while every vCPU is out of `run`.
    fn save_state(&self) -> Result<Vec<u8>> {
        Err(Error::Unsupported {
            engine: "this",
            what: "saving VM state".into(),
        })
    }
    /// Load what `save_state` (of this or another engine) produced. A state
    /// that does not decode is refused before anything changes.
    fn restore_state(&self, state: &[u8]) -> Result<()> {
        let _ = state;
        Err(Error::Unsupported {
            engine: "this",
            what: "restoring VM state".into(),
        })
    }
}

/// A handle that makes a running vCPU leave `run` soon with
/// `VcpuExit::Interrupted`. Cheap to clone, usable from any thread.
pub trait VcpuKick: Send + Sync {
    fn kick(&self);
}

/// An event injected into a vCPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// Non-maskable interrupt.
    Nmi,
    /// An external interrupt with this vector (delivered when IF allows).
    Interrupt(u8),
    /// An exception, with its error code where the vector has one.
    Exception { vector: u8, error_code: Option<u32> },
}

/// How a guest-virtual address translates under the vCPU's current paging.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Translation {
    pub phys: u64,
    pub writable: bool,
    pub user: bool,
}

/// Debug controls, as KVM_SET_GUEST_DEBUG.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GuestDebug {
    /// Exit with `VcpuExit::Debug` after each instruction.
    pub single_step: bool,
    /// Exit with `VcpuExit::Debug` before executing at any of these linear addresses.
    pub breakpoints: Vec<u64>,
}

/// A virtual CPU. `run` enters guest mode on the calling thread.
pub trait Vcpu: Send {
    fn id(&self) -> u32;
    /// Run guest code until an exit. For `IoIn` and `MmioRead` exits, fill the
    /// exit's buffer before calling `run` again: the access completes then.
    fn run(&mut self) -> Result<VcpuExit<'_>>;
    fn kick_handle(&self) -> Arc<dyn VcpuKick>;

    fn regs(&self) -> Result<Regs>;
    fn set_regs(&mut self, regs: &Regs) -> Result<()>;
    fn sregs(&self) -> Result<Sregs>;
    fn set_sregs(&mut self, sregs: &Sregs) -> Result<()>;
    fn fpu(&self) -> Result<Fpu>;
    fn set_fpu(&mut self, fpu: &Fpu) -> Result<()>;
    /// Read the MSRs named by `indices`; an index the engine does not know is an error.
    fn msrs(&self, indices: &[u32]) -> Result<Vec<(u32, u64)>>;
    fn set_msrs(&mut self, msrs: &[(u32, u64)]) -> Result<()>;
    /// The CPUID leaves the guest sees.
    fn set_cpuid(&mut self, entries: &[CpuidEntry]) -> Result<()>;
    fn inject(&mut self, event: Event) -> Result<()>;
    /// Translate a guest-virtual (linear) address; `None` if not mapped.
    fn translate(&self, gva: u64) -> Result<Option<Translation>>;
    fn set_guest_debug(&mut self, debug: &GuestDebug) -> Result<()>;
    /// Everything of this vCPU a snapshot needs (registers, segment and
    /// control state, FPU/SSE, MSRs, local APIC, pending events), in an
    /// engine-neutral, versioned encoding that `restore_state` of either
    /// engine accepts. Call on the vCPU's thread while it is out of `run`,
    /// after completing the last exit: kick the vCPU and call `run` once
    /// (it finishes the exit's instruction and returns `Interrupted`), as
    /// KVM's immediate_exit. The structs and encoding are in [`state`].
    fn save_state(&self) -> Result<Vec<u8>> {
        Err(Error::Unsupported {
            engine: "this",
            what: "saving vCPU state".into(),
        })
    }
    /// Load what `save_state` (of this or another engine) produced. A state
    /// that does not decode is refused before anything changes.
    fn restore_state(&mut self, state: &[u8]) -> Result<()> {
        let _ = state;
        Err(Error::Unsupported {
            engine: "this",
            what: "restoring vCPU state".into(),
        })
    }
}
