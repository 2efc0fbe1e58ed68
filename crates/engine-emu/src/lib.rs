//! Kite's `emu` engine: x86 guest mode in software.
//!
//! It implements the hypervisor API (crate `kite-hypervisor`) with an x86 CPU
//! written in Rust: `cpu/` decodes (iced-x86's decoder, cached per guest-physical
//! block) and executes instructions, `mmu/` walks the guest's page tables and
//! keeps a software TLB of host pointers, `irq/` holds the interrupt controllers
//! and the PIT (as KVM's in-kernel irqchip). Every port and MMIO access that no
//! in-engine device owns leaves `Vcpu::run` as the same exit the KVM engine
//! produces.
//!
//! This crate must not know what devices a PC has beyond the in-kernel ones, nor
//! anything about loaders or the CLI.

pub mod cpu;
pub mod irq;
pub mod jit;
pub mod memory;
pub mod mmu;
mod vcpu;
mod vm;

use std::sync::Arc;

use kite_hypervisor::{CpuidEntry, EngineKind, Hypervisor, Result, Vm, VmConfig};

pub use vcpu::EmuVcpu;
pub use vm::EmuVm;

/// The software engine. Always available.
#[derive(Debug, Default)]
pub struct EmuHypervisor {
    /// The execution tier its vCPUs use; `None`: `KITE_EMU_TIER`.
    tier: Option<jit::Tier>,
}

impl EmuHypervisor {
    pub fn new() -> Self {
        EmuHypervisor { tier: None }
    }

    /// An engine whose vCPUs run on `tier` whatever `KITE_EMU_TIER` says
    /// (tests run the same suites on each tier this way).
    pub fn with_tier(tier: jit::Tier) -> Self {
        EmuHypervisor { tier: Some(tier) }
    }
}

impl Hypervisor for EmuHypervisor {
    fn kind(&self) -> EngineKind {
        EngineKind::Emu
    }

    fn create_vm(&self, config: &VmConfig) -> Result<Arc<dyn Vm>> {
        Ok(EmuVm::with_tier(config, self.tier))
    }

    fn supported_cpuid(&self) -> Result<Vec<CpuidEntry>> {
        Ok(cpu::cpuid::supported())
    }
}
