//! INT3 software breakpoints on KVM: the first byte of each breakpoint's
//! instruction is replaced by 0xCC in guest RAM, and KVM hands the #BP it
//! raises to user mode (KVM_GUESTDBG_USE_SW_BP). Guest memory is the VM's,
//! so the table of patched bytes is too: the VM's vCPUs share it.
//!
//! It knows guest RAM only through the VM's memory slots; nothing of who
//! sets the breakpoints.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use kite_hypervisor::{Error, Result};

use crate::page_walk::{self, Slots};

/// The INT3 opcode.
const INT3: u8 = 0xcc;

/// Patched linear addresses: (guest-physical address, the byte it held).
pub(crate) type SwPatches = Arc<Mutex<HashMap<u64, (u64, u8)>>>;

/// A pointer to the RAM byte at `gpa`, if a slot backs it. Call with the
/// slot table locked, and use the pointer only while it stays locked.
fn host_byte(slots: &HashMap<u32, kite_hypervisor::MemoryRegion>, gpa: u64) -> Option<*mut u8> {
    let region = slots
        .values()
        .find(|r| gpa >= r.guest_phys_addr && gpa - r.guest_phys_addr < r.size)?;
    let host = region.host_addr.checked_add(gpa - region.guest_phys_addr)?;
    Some(host as *mut u8)
}

/// Make the patched set `want` (linear address, its translation): restore
/// what is no longer wanted, patch what is new. A breakpoint that is not
/// mapped to RAM is an error (and nothing after it is patched).
pub(crate) fn sync(patches: &SwPatches, slots: &Slots, want: &[(u64, Option<u64>)]) -> Result<()> {
    let mut patched = patches.lock().unwrap_or_else(|e| e.into_inner());
    let slots = page_walk::lock(slots);
    patched.retain(|lin, (gpa, original)| {
        if want.iter().any(|(w, _)| w == lin) {
            return true;
        }
        if let Some(p) = host_byte(&slots, *gpa) {
            // SAFETY: `p` is inside a slot's mapping, which stays valid while
            // the slot table is locked (held here); volatile, as the guest
            // may run on another vCPU. Only restore our own INT3.
            unsafe {
                if std::ptr::read_volatile(p) == INT3 {
                    std::ptr::write_volatile(p, *original);
                }
            }
        }
        false
    });
    for &(lin, gpa) in want {
        if patched.contains_key(&lin) {
            continue;
        }
        let p = gpa.and_then(|g| host_byte(&slots, g).map(|p| (g, p)));
        let Some((gpa, p)) = p else {
            return Err(Error::Invalid(format!(
                "software breakpoint at {lin:#x}: the address is not mapped to RAM"
            )));
        };
        // SAFETY: as above.
        let original = unsafe {
            let original = std::ptr::read_volatile(p);
            std::ptr::write_volatile(p, INT3);
            original
        };
        patched.insert(lin, (gpa, original));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kite_hypervisor::MemoryRegion;

    #[test]
    fn breakpoints_patch_int3_and_restore_the_byte() {
        let mut ram = vec![0x90u8; 4096];
        let region = MemoryRegion {
            slot: 0,
            guest_phys_addr: 0x1000,
            size: 4096,
            host_addr: ram.as_mut_ptr() as u64,
            readonly: false,
            log_dirty: false,
        };
        let slots: Slots = Arc::new(Mutex::new(HashMap::from([(0, region)])));
        let patches = SwPatches::default();
        ram[0x10] = 0x41;
        sync(
            &patches,
            &slots,
            &[(0x8010, Some(0x1010)), (0x8020, Some(0x1020))],
        )
        .unwrap();
        assert_eq!((ram[0x10], ram[0x20]), (INT3, INT3));
        sync(&patches, &slots, &[(0x8020, Some(0x1020))]).unwrap();
        assert_eq!(
            (ram[0x10], ram[0x20]),
            (0x41, INT3),
            "the first is restored"
        );
        assert!(
            sync(&patches, &slots, &[(0x9000, Some(0x9_0000))]).is_err(),
            "not RAM"
        );
        assert!(
            sync(&patches, &slots, &[(0x9000, None)]).is_err(),
            "not mapped"
        );
        sync(&patches, &slots, &[]).unwrap();
        assert_eq!(ram[0x20], 0x90);
    }
}
