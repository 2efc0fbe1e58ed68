//! `KvmVm`: a KVM VM file descriptor, its memory slots and in-kernel irqchip.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use kite_hypervisor::{Error, MemoryRegion, Msi, Result, Vcpu, Vm, VmConfig};
use kvm_bindings::{
    kvm_irq_routing_entry, kvm_msi, kvm_pit_config, kvm_userspace_memory_region, KvmIrqRouting,
    KVM_IRQCHIP_IOAPIC, KVM_IRQCHIP_PIC_MASTER, KVM_IRQCHIP_PIC_SLAVE, KVM_IRQ_ROUTING_IRQCHIP,
    KVM_MEM_LOG_DIRTY_PAGES, KVM_MEM_READONLY, KVM_PIT_SPEAKER_DUMMY,
};
use kvm_ioctls::{Kvm, VmFd};

use crate::page_walk::{self, Slots};
use crate::sw_breakpoints::SwPatches;
use crate::vcpu::KvmVcpu;

mod state;

/// Where KVM puts the three pages of its real-mode TSS (Intel only): just below
/// the 4 GiB boundary, under the BIOS area, where no RAM or device lives.
pub const TSS_ADDRESS: u64 = 0xfffb_d000;
/// The page KVM uses for the real-mode identity page table (Intel only).
pub const IDENTITY_MAP_ADDRESS: u64 = 0xfffb_c000;

/// Number of IOAPIC pins, which is the number of GSIs routed to irqchips.
const IOAPIC_PINS: u32 = 24;
const PAGE_SIZE: u64 = 4096;

/// A VM on /dev/kvm.
pub struct KvmVm {
    fd: VmFd,
    irqchip: bool,
    /// The in-kernel PIT exists.
    pit: bool,
    /// The MSRs KVM saves and restores (KVM_GET_MSR_INDEX_LIST), for vCPU state.
    msr_list: Arc<Vec<u32>>,
    /// Slots added so far, by slot number: dirty_log needs each slot's size,
    /// translate reads page tables through them.
    slots: Slots,
    /// INT3 software breakpoints, shared by the vCPUs.
    patches: SwPatches,
}

impl KvmVm {
    pub(crate) fn new(kvm: &Kvm, config: &VmConfig) -> Result<Self> {
        if config.pit && !config.irqchip {
            return Err(Error::Invalid(
                "the in-kernel PIT needs the in-kernel irqchip".into(),
            ));
        }
        let fd = kvm
            .create_vm()
            .map_err(|e| Error::host("KVM_CREATE_VM", e))?;
        fd.set_tss_address(TSS_ADDRESS as usize)
            .map_err(|e| Error::host("KVM_SET_TSS_ADDR", e))?;
        fd.set_identity_map_address(IDENTITY_MAP_ADDRESS)
            .map_err(|e| Error::host("KVM_SET_IDENTITY_MAP_ADDR", e))?;
        if config.irqchip {
            fd.create_irq_chip()
                .map_err(|e| Error::host("KVM_CREATE_IRQCHIP", e))?;
            fd.set_gsi_routing(&default_routing()?)
                .map_err(|e| Error::host("KVM_SET_GSI_ROUTING", e))?;
        }
        if config.pit {
            let pit = kvm_pit_config {
                flags: KVM_PIT_SPEAKER_DUMMY,
                ..Default::default()
            };
            fd.create_pit2(pit)
                .map_err(|e| Error::host("KVM_CREATE_PIT2", e))?;
        }
        // Without the list a vCPU state carries no MSRs beyond the fixed ones.
        let msr_list = kvm
            .get_msr_index_list()
            .map(|l| l.as_slice().to_vec())
            .unwrap_or_default();
        Ok(KvmVm {
            fd,
            irqchip: config.irqchip,
            pit: config.pit,
            msr_list: Arc::new(msr_list),
            slots: Arc::new(Mutex::new(HashMap::new())),
            patches: SwPatches::default(),
        })
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, HashMap<u32, MemoryRegion>> {
        page_walk::lock(&self.slots)
    }

    fn need_irqchip(&self, what: &str) -> Result<()> {
        if self.irqchip {
            Ok(())
        } else {
            Err(Error::Invalid(format!(
                "{what} needs a VM created with an irqchip"
            )))
        }
    }
}

fn irqchip_route(gsi: u32, chip: u32, pin: u32) -> kvm_irq_routing_entry {
    let mut entry = kvm_irq_routing_entry {
        gsi,
        type_: KVM_IRQ_ROUTING_IRQCHIP,
        ..Default::default()
    };
    entry.u.irqchip.irqchip = chip;
    entry.u.irqchip.pin = pin;
    entry
}

/// GSI 0-15 reach the 8259 pair (pins 0-7 master, 8-15 slave) and the IOAPIC
/// pin of the same number; GSI 16-23 reach the IOAPIC only.
fn default_routing() -> Result<KvmIrqRouting> {
    let mut entries = Vec::new();
    for gsi in 0..IOAPIC_PINS {
        if gsi < 8 {
            entries.push(irqchip_route(gsi, KVM_IRQCHIP_PIC_MASTER, gsi));
        } else if gsi < 16 {
            entries.push(irqchip_route(gsi, KVM_IRQCHIP_PIC_SLAVE, gsi - 8));
        }
        entries.push(irqchip_route(gsi, KVM_IRQCHIP_IOAPIC, gsi));
    }
    KvmIrqRouting::from_entries(&entries)
        .map_err(|e| Error::Invalid(format!("GSI routing table: {e:?}")))
}

impl Vm for KvmVm {
    unsafe fn set_memory_region(&self, region: MemoryRegion) -> Result<()> {
        if !region.size.is_multiple_of(PAGE_SIZE)
            || !region.guest_phys_addr.is_multiple_of(PAGE_SIZE)
            || (region.size != 0 && !region.host_addr.is_multiple_of(PAGE_SIZE))
        {
            return Err(Error::Invalid(format!(
                "memory slot {}: guest address {:#x}, size {:#x} and host address {:#x} must be 4 KiB aligned",
                region.slot, region.guest_phys_addr, region.size, region.host_addr
            )));
        }
        let mut flags = 0;
        if region.log_dirty {
            flags |= KVM_MEM_LOG_DIRTY_PAGES;
        }
        if region.readonly {
            flags |= KVM_MEM_READONLY;
        }
        let kvm_region = kvm_userspace_memory_region {
            slot: region.slot,
            flags,
            guest_phys_addr: region.guest_phys_addr,
            memory_size: region.size,
            userspace_addr: region.host_addr,
        };
        let mut slots = self.slots();
        // SAFETY: the caller guarantees the mapping is valid for the slot's life.
        unsafe { self.fd.set_user_memory_region(kvm_region) }
            .map_err(|e| Error::host("KVM_SET_USER_MEMORY_REGION", e))?;
        if region.size == 0 {
            slots.remove(&region.slot);
        } else {
            slots.insert(region.slot, region);
        }
        Ok(())
    }

    fn dirty_log(&self, slot: u32) -> Result<Vec<u64>> {
        let region = self
            .slots()
            .get(&slot)
            .copied()
            .ok_or_else(|| Error::Invalid(format!("memory slot {slot} does not exist")))?;
        if !region.log_dirty {
            return Err(Error::Invalid(format!(
                "memory slot {slot} was not added with dirty logging"
            )));
        }
        let size = usize::try_from(region.size)
            .map_err(|_| Error::Invalid(format!("memory slot {slot} is too large")))?;
        self.fd
            .get_dirty_log(slot, size)
            .map_err(|e| Error::host("KVM_GET_DIRTY_LOG", e))
    }

    fn create_vcpu(&self, id: u32) -> Result<Box<dyn Vcpu>> {
        let fd = self
            .fd
            .create_vcpu(u64::from(id))
            .map_err(|e| Error::host("KVM_CREATE_VCPU", e))?;
        Ok(Box::new(KvmVcpu::new(
            id,
            fd,
            self.fd.run_size(),
            self.slots.clone(),
            self.irqchip,
            self.msr_list.clone(),
            self.patches.clone(),
        )))
    }

    fn set_irq_line(&self, gsi: u32, level: bool) -> Result<()> {
        self.need_irqchip("set_irq_line")?;
        if gsi >= IOAPIC_PINS {
            return Err(Error::Invalid(format!("GSI {gsi} does not exist (0-23)")));
        }
        self.fd
            .set_irq_line(gsi, level)
            .map_err(|e| Error::host("KVM_IRQ_LINE", e))
    }

    fn save_state(&self) -> Result<Vec<u8>> {
        Ok(self.save_neutral()?.to_bytes())
    }

    fn restore_state(&self, state: &[u8]) -> Result<()> {
        let s = kite_hypervisor::state::VmState::from_bytes(state)?;
        self.restore_neutral(&s)
    }

    fn signal_msi(&self, msi: Msi) -> Result<()> {
        self.need_irqchip("signal_msi")?;
        let kvm = kvm_msi {
            address_lo: msi.address as u32,
            address_hi: (msi.address >> 32) as u32,
            data: msi.data,
            ..Default::default()
        };
        // A result of 0 means the guest blocked it (masked, no matching
        // destination), which is the guest's business, not an error.
        self.fd
            .signal_msi(kvm)
            .map(|_| ())
            .map_err(|e| Error::host("KVM_SIGNAL_MSI", e))
    }
}
