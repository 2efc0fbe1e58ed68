//! BARs backed by host memory (a framebuffer), mapped into the guest as
//! memory slots that log dirty pages, wherever the guest puts the BAR.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use kite_devices::pci::{BarRam, RamMapper};
use kite_hypervisor::{MemoryRegion, Vm};

/// Slots from here up belong to BARs (RAM and firmware take the ones below).
const FIRST_BAR_SLOT: u32 = 64;

/// Maps `BarRam`s as memory slots of one VM.
pub struct VmRamMapper {
    vm: Arc<dyn Vm>,
    /// BAR id -> (slot, the region as registered).
    slots: Mutex<BTreeMap<u32, MemoryRegion>>,
}

impl VmRamMapper {
    pub fn new(vm: Arc<dyn Vm>) -> Arc<Self> {
        Arc::new(VmRamMapper {
            vm,
            slots: Mutex::new(BTreeMap::new()),
        })
    }

    /// Delete every slot (before the machine lets the BAR memory go).
    pub fn unmap_all(&self) {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        for (_, r) in std::mem::take(&mut *slots) {
            delete(&self.vm, r);
        }
    }
}

fn delete(vm: &Arc<dyn Vm>, r: MemoryRegion) {
    // SAFETY: a zero-sized region deletes the slot; no mapping is named.
    if let Err(e) = unsafe { vm.set_memory_region(MemoryRegion { size: 0, ..r }) } {
        log::warn!("cannot delete BAR memory slot {}: {e}", r.slot);
    }
}

impl RamMapper for VmRamMapper {
    fn map(&self, id: u32, ram: &Arc<BarRam>, address: Option<u64>) {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(old) = slots.remove(&id) {
            ram.set_dirty_log(None);
            delete(&self.vm, old);
        }
        let Some(gpa) = address else { return };
        let slot = (FIRST_BAR_SLOT..)
            .find(|s| !slots.values().any(|r| r.slot == *s))
            .unwrap_or(FIRST_BAR_SLOT);
        let region = MemoryRegion {
            slot,
            guest_phys_addr: gpa,
            size: ram.len() as u64,
            host_addr: ram.host_addr() as u64,
            readonly: false,
            log_dirty: true,
        };
        // SAFETY: the mapping belongs to `ram`, which the device keeps alive
        // for the machine's life; the machine deletes the slot (unmap_all)
        // before it drops its devices.
        match unsafe { self.vm.set_memory_region(region) } {
            Ok(()) => {
                slots.insert(id, region);
                let vm = self.vm.clone();
                ram.set_dirty_log(Some(Box::new(move || vm.dirty_log(slot).ok())));
            }
            Err(e) => log::warn!("BAR memory at {gpa:#x} not mapped: {e}"),
        }
    }
}
