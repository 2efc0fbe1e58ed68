//! The page walk: 32-bit two-level (with 4 MiB PSE pages), PAE three-level and
//! 4-level long-mode paging; U/S, R/W, NX and WP checks; accessed and dirty
//! bits written back atomically; #PF error codes (SDM vol 3, ch. 4).

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use kite_hypervisor::x86::*;

use crate::memory::SlotView;

/// The kind of access being translated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Access {
    pub write: bool,
    pub fetch: bool,
    /// A CPL-3 access (not an implicit supervisor access such as a GDT read).
    pub user: bool,
}

impl Access {
    pub const READ: Access = Access {
        write: false,
        fetch: false,
        user: false,
    };
}

/// #PF error code bits.
pub const PF_PRESENT: u32 = 1;
pub const PF_WRITE: u32 = 2;
pub const PF_USER: u32 = 4;
pub const PF_RSVD: u32 = 8;
pub const PF_FETCH: u32 = 16;

/// Physical-address width the engine reports in CPUID 0x8000_0008.
pub const PHYS_BITS: u32 = 40;
const PHYS_MASK: u64 = ((1u64 << PHYS_BITS) - 1) & !0xfff;

/// The paging registers a walk depends on.
#[derive(Debug, Clone, Copy)]
pub struct PagingRegs {
    pub cr0: u64,
    pub cr3: u64,
    pub cr4: u64,
    pub efer: u64,
}

/// A successful translation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Walk {
    /// Physical address of the translated byte.
    pub phys: u64,
    /// Effective permissions of the whole walk.
    pub writable: bool,
    pub user: bool,
    pub nx: bool,
    pub global: bool,
    /// The final entry's dirty bit is set (so writes need no write-back).
    pub dirty: bool,
    /// log2 of the page size (12, 21, 22 or 30).
    pub page_shift: u32,
}

fn entry_ptr(view: &SlotView, gpa: u64) -> Option<*mut u8> {
    let s = view.find(gpa)?;
    if s.region.readonly {
        return None;
    }
    Some(s.host_ptr(gpa))
}

fn read_entry(view: &SlotView, gpa: u64, wide: bool) -> u64 {
    let mut b = [0u8; 8];
    let n = if wide { 8 } else { 4 };
    if view.read(gpa, &mut b[..n]) {
        u64::from_le_bytes(b)
    } else {
        0
    }
}

/// Atomically OR `bits` into the entry at `gpa` (accessed/dirty updates).
fn set_bits(view: &SlotView, gpa: u64, bits: u64, wide: bool) {
    let Some(p) = entry_ptr(view, gpa) else {
        return;
    };
    if let Some(s) = view.find(gpa) {
        s.mark_dirty(gpa);
    }
    // SAFETY: `p` points into a RAM slot (checked by entry_ptr) at an address
    // aligned to the entry size (table bases are page aligned, indices scale by
    // the entry size); other vCPUs may update the same entry, hence atomics.
    unsafe {
        if wide {
            (*AtomicU64::from_ptr(p as *mut u64)).fetch_or(bits, Ordering::AcqRel);
        } else {
            (*AtomicU32::from_ptr(p as *mut u32)).fetch_or(bits as u32, Ordering::AcqRel);
        }
    }
}

const P: u64 = 1;
const RW: u64 = 2;
const US: u64 = 4;
const A: u64 = 1 << 5;
const D: u64 = 1 << 6;
const PS: u64 = 1 << 7;
const G: u64 = 1 << 8;
const NX: u64 = 1 << 63;

/// Translate `lin` for `acc`. `Err` carries the #PF error code (CR2 = lin).
pub fn walk(view: &SlotView, regs: &PagingRegs, lin: u64, acc: Access) -> Result<Walk, u32> {
    walk_inner(view, regs, lin, acc, true)
}

/// Translate without touching accessed/dirty bits (debuggers, `translate`).
pub fn walk_no_update(view: &SlotView, regs: &PagingRegs, lin: u64, acc: Access) -> Option<Walk> {
    walk_inner(view, regs, lin, acc, false).ok()
}

fn walk_inner(
    view: &SlotView,
    regs: &PagingRegs,
    lin: u64,
    acc: Access,
    update: bool,
) -> Result<Walk, u32> {
    let nxe = regs.efer & EFER_NXE != 0;
    let wp = regs.cr0 & CR0_WP != 0;
    let base_err = if acc.write { PF_WRITE } else { 0 }
        | if acc.user { PF_USER } else { 0 }
        | if acc.fetch && nxe { PF_FETCH } else { 0 };

    let mut entries: [(u64, u64); 5] = [(0, 0); 5];
    let mut n = 0;
    let (leaf, shift, wide) = if regs.efer & EFER_LMA != 0 || regs.cr4 & CR4_PAE != 0 {
        // Reserved bits in every entry: above PHYS_BITS (bits 51:PHYS_BITS), and NX without NXE.
        let rsvd_hi: u64 =
            (((1u64 << 52) - 1) & !((1u64 << PHYS_BITS) - 1)) | if nxe { 0 } else { NX };
        let long = regs.efer & EFER_LMA != 0;
        let mut table;
        let levels: &[u32];
        if long {
            table = regs.cr3 & PHYS_MASK;
            levels = &[39, 30, 21, 12];
        } else {
            // PAE: the PDPTE.
            let pdpte_addr = (regs.cr3 & 0xffff_ffe0) + ((lin >> 30) & 3) * 8;
            let e = read_entry(view, pdpte_addr, true);
            if e & P == 0 {
                return Err(base_err);
            }
            if e & (rsvd_hi | 0x1e6) != 0 {
                return Err(base_err | PF_PRESENT | PF_RSVD);
            }
            table = e & PHYS_MASK;
            levels = &[21, 12];
        }
        let mut result = None;
        for (i, &sh) in levels.iter().enumerate() {
            let addr = table + ((lin >> sh) & 0x1ff) * 8;
            let e = read_entry(view, addr, true);
            if e & P == 0 {
                return Err(base_err);
            }
            let last = sh == 12;
            let large = !last && e & PS != 0;
            if e & rsvd_hi != 0 || (long && i == 0 && e & PS != 0) {
                return Err(base_err | PF_PRESENT | PF_RSVD);
            }
            if large {
                // Bits between 12 (PAT) and the page size must be zero.
                let lowmask = ((1u64 << sh) - 1) & !0x1fff;
                if e & lowmask != 0 {
                    return Err(base_err | PF_PRESENT | PF_RSVD);
                }
            }
            entries[n] = (addr, e);
            n += 1;
            if last || large {
                result = Some((e, sh));
                break;
            }
            table = e & PHYS_MASK;
        }
        let (leaf, shift) = result.ok_or(base_err)?;
        (leaf, shift, true)
    } else {
        // 32-bit paging.
        let pde_addr = (regs.cr3 & 0xffff_f000) + ((lin >> 22) & 0x3ff) * 4;
        let pde = read_entry(view, pde_addr, false);
        if pde & P == 0 {
            return Err(base_err);
        }
        entries[n] = (pde_addr, pde);
        n += 1;
        if pde & PS != 0 && regs.cr4 & CR4_PSE != 0 {
            // 4 MiB page; bits 20:13 carry physical bits 39:32 (PSE-36).
            let phys_hi = ((pde >> 13) & 0xff) << 32;
            if pde & (1 << 21) != 0 {
                return Err(base_err | PF_PRESENT | PF_RSVD);
            }
            ((pde & 0xffc0_0000) | phys_hi | (pde & 0xfff), 22, false)
        } else {
            let pte_addr = (pde & 0xffff_f000) + ((lin >> 12) & 0x3ff) * 4;
            let pte = read_entry(view, pte_addr, false);
            if pte & P == 0 {
                return Err(base_err);
            }
            entries[n] = (pte_addr, pte);
            n += 1;
            (pte, 12, false)
        }
    };

    // Effective permissions: AND of R/W and U/S, OR of NX, over all levels.
    let mut writable = true;
    let mut user = true;
    let mut nx = false;
    for &(_, e) in &entries[..n] {
        writable &= e & RW != 0;
        user &= e & US != 0;
        nx |= nxe && e & NX != 0;
    }
    let prot = base_err | PF_PRESENT;
    if acc.user && !user {
        return Err(prot);
    }
    if acc.write && !writable && (acc.user || wp) {
        return Err(prot);
    }
    if acc.fetch && nx {
        return Err(prot);
    }
    // Accessed bits on every level, dirty on the leaf for writes.
    for (i, &(addr, e)) in entries[..n].iter().enumerate() {
        let leaf_entry = i == n - 1;
        let mut bits = 0;
        if e & A == 0 {
            bits |= A;
        }
        if leaf_entry && acc.write && e & D == 0 {
            bits |= D;
        }
        if bits != 0 && update {
            set_bits(view, addr, bits, wide);
        }
    }
    let dirty = leaf & D != 0 || acc.write;
    let page_mask = (1u64 << shift) - 1;
    let frame = if shift == 22 && !wide {
        leaf & !0x3f_ffff & ((1 << 40) - 1)
    } else {
        leaf & PHYS_MASK & !page_mask
    };
    let global = regs.cr4 & CR4_PGE != 0 && leaf & G != 0;
    Ok(Walk {
        phys: frame | (lin & page_mask),
        writable,
        user,
        nx,
        global,
        dirty,
        page_shift: shift,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::PhysMemory;
    use kite_hypervisor::MemoryRegion;
    use std::sync::Arc;

    struct Mem {
        buf: Vec<u64>,
        view: SlotView,
        _pm: Arc<PhysMemory>,
    }

    fn mem(size: usize) -> Mem {
        let mut buf = vec![0u64; size / 8];
        let pm = Arc::new(PhysMemory::new());
        pm.set_region(MemoryRegion {
            slot: 0,
            guest_phys_addr: 0,
            size: size as u64,
            host_addr: buf.as_mut_ptr() as u64,
            readonly: false,
            log_dirty: false,
        })
        .unwrap();
        let view = SlotView { slots: pm.slots() };
        Mem { buf, view, _pm: pm }
    }

    impl Mem {
        fn w64(&mut self, gpa: u64, v: u64) {
            self.buf[(gpa / 8) as usize] = v;
        }
        fn r64(&self, gpa: u64) -> u64 {
            self.buf[(gpa / 8) as usize]
        }
        fn w32(&mut self, gpa: u64, v: u32) {
            let w = &mut self.buf[(gpa / 8) as usize];
            let sh = (gpa % 8) * 8;
            *w = (*w & !(0xffff_ffffu64 << sh)) | (u64::from(v) << sh);
        }
    }

    const LONG: PagingRegs = PagingRegs {
        cr0: CR0_PG | CR0_PE | CR0_WP,
        cr3: 0x1000,
        cr4: CR4_PAE,
        efer: EFER_LMA | EFER_LME | EFER_NXE,
    };

    #[test]
    fn four_level_4k_and_2m_with_ad_bits() {
        let mut m = mem(1 << 20);
        m.w64(0x1000, 0x2000 | P | RW | US);
        m.w64(0x2000, 0x3000 | P | RW | US);
        m.w64(0x3000, 0x4000 | P | RW | US); // PD[0] -> PT
        m.w64(0x3008, 0x20_0000 | P | PS); // PD[1]: 2 MiB page, supervisor read-only
        m.w64(0x4000 + 5 * 8, 0x7000 | P | RW | US | NX);
        let w = walk(
            &m.view,
            &LONG,
            0x5123,
            Access {
                write: true,
                fetch: false,
                user: true,
            },
        )
        .unwrap();
        assert_eq!(w.phys, 0x7123);
        assert!(w.writable && w.user && w.nx);
        assert_eq!(m.r64(0x4028) & (A | D), A | D);
        assert_eq!(m.r64(0x1000) & A, A);
        // NX page: fetch faults with P|I/D|U.
        assert_eq!(
            walk(
                &m.view,
                &LONG,
                0x5000,
                Access {
                    write: false,
                    fetch: true,
                    user: true
                }
            ),
            Err(PF_PRESENT | PF_FETCH | PF_USER)
        );
        let w = walk(&m.view, &LONG, 0x23_4567, Access::READ).unwrap();
        assert_eq!((w.phys, w.page_shift), (0x23_4567, 21));
        // Supervisor write to a read-only page with CR0.WP: protection fault.
        assert_eq!(
            walk(
                &m.view,
                &LONG,
                0x23_4567,
                Access {
                    write: true,
                    fetch: false,
                    user: false
                }
            ),
            Err(PF_PRESENT | PF_WRITE)
        );
        // User read of a supervisor page.
        assert_eq!(
            walk(
                &m.view,
                &LONG,
                0x20_0000,
                Access {
                    write: false,
                    fetch: false,
                    user: true
                }
            ),
            Err(PF_PRESENT | PF_USER)
        );
        // Not present.
        assert_eq!(walk(&m.view, &LONG, 0x40_0000, Access::READ), Err(0));
        // Reserved bit (above PHYS_BITS).
        m.w64(0x3010, (1u64 << 45) | P | PS);
        assert_eq!(
            walk(&m.view, &LONG, 0x40_0000, Access::READ),
            Err(PF_PRESENT | PF_RSVD)
        );
    }

    #[test]
    fn legacy_32bit_and_pse() {
        let mut m = mem(1 << 20);
        let regs = PagingRegs {
            cr0: CR0_PG | CR0_PE,
            cr3: 0x1000,
            cr4: CR4_PSE,
            efer: 0,
        };
        m.w32(0x1000, (0x2000 | P | RW) as u32);
        m.w32(0x2000 + 3 * 4, (0x9000 | P) as u32);
        m.w32(0x1004, (0x40_0000 | P | PS | RW | US) as u32);
        assert_eq!(
            walk(&m.view, &regs, 0x3abc, Access::READ).unwrap().phys,
            0x9abc
        );
        // WP clear: supervisor may write a read-only page.
        assert!(walk(
            &m.view,
            &regs,
            0x3abc,
            Access {
                write: true,
                fetch: false,
                user: false
            }
        )
        .is_ok());
        let w = walk(
            &m.view,
            &regs,
            0x41_2345,
            Access {
                write: true,
                fetch: false,
                user: true,
            },
        )
        .unwrap();
        assert_eq!((w.phys, w.page_shift), (0x41_2345, 22));
    }

    #[test]
    fn pae() {
        let mut m = mem(1 << 20);
        let regs = PagingRegs {
            cr0: CR0_PG | CR0_PE,
            cr3: 0x1000,
            cr4: CR4_PAE,
            efer: 0,
        };
        m.w64(0x1000 + 8 * 3, 0x2000 | P); // PDPTE[3] for 0xc0000000..
        m.w64(0x2000, 0x3000 | P | RW);
        m.w64(0x3000 + 8, 0x8000 | P | RW);
        assert_eq!(
            walk(&m.view, &regs, 0xc000_1010, Access::READ)
                .unwrap()
                .phys,
            0x8010
        );
        // NX bit without EFER.NXE is reserved.
        m.w64(0x3000 + 16, 0x8000 | P | NX);
        assert_eq!(
            walk(&m.view, &regs, 0xc000_2000, Access::READ),
            Err(PF_PRESENT | PF_RSVD)
        );
    }
}
