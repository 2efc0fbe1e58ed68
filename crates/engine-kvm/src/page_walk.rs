//! Effective page permissions of a guest-virtual address, by walking the guest's
//! page tables in the VM's memory slots.
//!
//! KVM_TRANSLATE on x86 gives the physical address but always reports
//! "writeable" and never "user", so `Vcpu::translate` gets those two bits here.
//! Page-table contents are guest input: every table address is checked against
//! the slots before it is read.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use kite_hypervisor::x86::{CR0_PG, CR4_PAE, CR4_PSE, EFER_LMA};
use kite_hypervisor::MemoryRegion;
use kvm_bindings::kvm_sregs;

/// 5-level paging (not in the API's list of CR4 bits).
const CR4_LA57: u64 = 1 << 12;
const PRESENT: u64 = 1 << 0;
const WRITABLE: u64 = 1 << 1;
const USER: u64 = 1 << 2;
const LARGE: u64 = 1 << 7;
/// Physical-address bits 51:12 of a 64-bit paging entry.
const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;

/// The VM's memory slots, shared by the VM and its vCPUs.
pub(crate) type Slots = Arc<Mutex<HashMap<u32, MemoryRegion>>>;

pub(crate) fn lock(slots: &Slots) -> MutexGuard<'_, HashMap<u32, MemoryRegion>> {
    slots
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Reads of guest-physical RAM while the slot table is locked (so no slot can
/// be deleted, and its mapping unmapped, during the walk).
struct Ram<'a> {
    slots: &'a HashMap<u32, MemoryRegion>,
}

impl Ram<'_> {
    /// The naturally aligned `N`-byte little-endian value at `gpa`, if RAM backs it.
    fn read<const N: usize>(&self, gpa: u64) -> Option<u64> {
        let len = N as u64;
        if !gpa.is_multiple_of(len) {
            return None;
        }
        let region = self.slots.values().find(|r| {
            gpa >= r.guest_phys_addr
                && gpa
                    .checked_add(len)
                    .is_some_and(|end| end <= r.guest_phys_addr + r.size)
        })?;
        let host = region.host_addr.checked_add(gpa - region.guest_phys_addr)?;
        let mut bytes = [0u8; 8];
        // SAFETY: `host..host+N` lies inside the slot's mapping (checked above),
        // which the `set_memory_region` contract keeps valid while the slot
        // exists; the slot table is locked, so it cannot be deleted meanwhile.
        // A volatile read, because the guest may be writing it concurrently.
        unsafe {
            for (i, b) in bytes.iter_mut().take(N).enumerate() {
                *b = std::ptr::read_volatile((host as *const u8).add(i));
            }
        }
        Some(u64::from_le_bytes(bytes))
    }
}

/// (writable, user) for `gva` under the paging mode in `sregs`, or `None` if
/// the walk finds no present mapping or leaves RAM.
pub(crate) fn permissions(slots: &Slots, sregs: &kvm_sregs, gva: u64) -> Option<(bool, bool)> {
    if sregs.cr0 & CR0_PG == 0 {
        return Some((true, true));
    }
    let guard = lock(slots);
    let ram = Ram { slots: &guard };
    if sregs.efer & EFER_LMA != 0 {
        let levels = if sregs.cr4 & CR4_LA57 != 0 { 5 } else { 4 };
        walk64(&ram, sregs.cr3 & ADDR_MASK, gva, levels)
    } else if sregs.cr4 & CR4_PAE != 0 {
        let pdpte = ram.read::<8>((sregs.cr3 & 0xffff_ffe0) + 8 * ((gva >> 30) & 3))?;
        if pdpte & PRESENT == 0 {
            return None;
        }
        // PAE PDPTEs carry no R/W or U/S bits: the walk goes on at the PD.
        walk64(&ram, pdpte & ADDR_MASK, gva, 2)
    } else {
        walk32(&ram, sregs.cr3 & 0xffff_f000, gva, sregs.cr4 & CR4_PSE != 0)
    }
}

/// Walk `levels` levels of 8-byte entries from `table` (level `levels` down
/// to 1, 9 index bits each above bit 12); PS makes levels 2 and 3 leaves.
fn walk64(ram: &Ram, mut table: u64, gva: u64, levels: u32) -> Option<(bool, bool)> {
    let (mut writable, mut user) = (true, true);
    for level in (1..=levels).rev() {
        let index = (gva >> (12 + 9 * (level - 1))) & 0x1ff;
        let entry = ram.read::<8>(table + 8 * index)?;
        if entry & PRESENT == 0 {
            return None;
        }
        writable &= entry & WRITABLE != 0;
        user &= entry & USER != 0;
        if level == 1 || (level <= 3 && entry & LARGE != 0) {
            return Some((writable, user));
        }
        table = entry & ADDR_MASK;
    }
    None
}

/// Two-level 32-bit paging with 4-byte entries.
fn walk32(ram: &Ram, dir: u64, gva: u64, pse: bool) -> Option<(bool, bool)> {
    let pde = ram.read::<4>(dir + 4 * ((gva >> 22) & 0x3ff))?;
    if pde & PRESENT == 0 {
        return None;
    }
    if pse && pde & LARGE != 0 {
        return Some((pde & WRITABLE != 0, pde & USER != 0));
    }
    let pte = ram.read::<4>((pde & 0xffff_f000) + 4 * ((gva >> 12) & 0x3ff))?;
    if pte & PRESENT == 0 {
        return None;
    }
    Some((pde & pte & WRITABLE != 0, pde & pte & USER != 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 64 KiB of "guest RAM" at guest-physical 0, as a slot table.
    fn ram(buf: &mut [u64]) -> Slots {
        let region = MemoryRegion {
            slot: 0,
            guest_phys_addr: 0,
            size: (buf.len() * 8) as u64,
            host_addr: buf.as_mut_ptr() as u64,
            readonly: false,
            log_dirty: false,
        };
        Arc::new(Mutex::new(HashMap::from([(0, region)])))
    }

    fn long_mode(cr3: u64) -> kvm_sregs {
        kvm_sregs {
            cr0: CR0_PG | 1,
            cr3,
            cr4: CR4_PAE,
            efer: EFER_LMA | (1 << 8),
            ..Default::default()
        }
    }

    #[test]
    fn four_level_ands_write_and_user_bits() {
        let mut buf = vec![0u64; 0x2000];
        // PML4 0x1000 -> PDPT 0x2000 -> PD 0x3000 -> PT 0x4000.
        buf[0x1000 / 8] = 0x2000 | 7;
        buf[0x2000 / 8] = 0x3000 | 7;
        buf[0x3000 / 8] = 0x4000 | 3; // supervisor only
        buf[0x4000 / 8 + 1] = 0x9000 | 7;
        buf[0x4000 / 8 + 2] = 0x9000 | 5; // read-only
        buf[0x3000 / 8 + 1] = 0x20_0000 | 0x80 | 7; // 2 MiB page
        let slots = ram(&mut buf);
        let s = long_mode(0x1000);
        assert_eq!(permissions(&slots, &s, 0x1000), Some((true, false)));
        assert_eq!(permissions(&slots, &s, 0x2000), Some((false, false)));
        assert_eq!(permissions(&slots, &s, 0x3000), None);
        assert_eq!(
            permissions(&slots, &s, 0x20_0000 + 0x1234),
            Some((true, true))
        );
    }

    #[test]
    fn tables_outside_ram_are_not_read() {
        let mut buf = vec![0u64; 0x200];
        buf[0] = 0xdead_0000_0000 | 7; // PML4 entry pointing far outside RAM
        let slots = ram(&mut buf);
        assert_eq!(permissions(&slots, &long_mode(0), 0), None);
        // CR3 itself outside RAM.
        assert_eq!(permissions(&slots, &long_mode(0x7fff_f000), 0), None);
    }

    #[test]
    fn legacy_32_bit_paging() {
        let mut buf = vec![0u64; 0x800];
        let bytes: &mut [u32] =
            // SAFETY: reinterpreting an owned u64 buffer as u32s of the same bytes.
            unsafe { std::slice::from_raw_parts_mut(buf.as_mut_ptr().cast::<u32>(), buf.len() * 2) };
        bytes[0x1000 / 4] = 0x2000 | 7; // PDE 0 -> PT at 0x2000
        bytes[0x2000 / 4 + 3] = 0x5000 | 5; // page 3 read-only user
        bytes[0x1000 / 4 + 1] = 0x40_0000 | 0x80 | 3; // 4 MiB page, supervisor
        let slots = ram(&mut buf);
        let s = kvm_sregs {
            cr0: CR0_PG | 1,
            cr3: 0x1000,
            cr4: CR4_PSE,
            ..Default::default()
        };
        assert_eq!(permissions(&slots, &s, 0x3000), Some((false, true)));
        assert_eq!(permissions(&slots, &s, 0x40_0000), Some((true, false)));
        assert_eq!(permissions(&slots, &s, 0x4000), None);
    }
}
