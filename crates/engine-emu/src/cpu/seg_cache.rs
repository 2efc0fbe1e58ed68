//! The per-segment fast-path decision: which segment registers are *flat*
//! (protected mode, usable, base 0, limit 4 GiB, expand-up, and readable or
//! writable for the access kind), so that an access through them costs what
//! a 64-bit access costs: the effective address is the linear address, and
//! only the wrap past 4 GiB is checked.
//!
//! The decision is made when segment state changes (every segment register
//! load, mode switch, descriptor cache write and restore through set_sregs
//! end in `Cpu::refresh_seg_cache`), never per access. It is a pure function
//! of the mode and the six descriptor caches; it must not know about
//! instructions, paging or privilege checks (those happen at load time).

use kite_hypervisor::Segment;

use super::{Cpu, Mode, Seg};

/// What `refresh_seg_cache` derives from the segment state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SegCache {
    /// Bit `seg` set: reads through `seg` are flat.
    pub flat_read: u8,
    /// Bit `seg` set: writes through `seg` are flat.
    pub flat_write: u8,
    /// As `flat_read`/`flat_write` but with any base: the linear address
    /// is the base plus the offset (modulo 4 GiB), only offsets past 4 GiB
    /// fault (FS and GS of per-CPU data and thread-local storage).
    pub based_read: u8,
    pub based_write: u8,
    /// Mask of the stack pointer (SS.B, or 64-bit mode).
    pub sp_mask: u64,
}

/// Whether a protected-mode access through `s` behaves exactly like a flat
/// one for every offset: no type fault for the access kind, offset = linear
/// address, and only offsets past 4 GiB fault.
fn flat(s: &Segment, write: bool) -> bool {
    s.base & 0xffff_ffff == 0 && based(s, write)
}

/// As `flat`, whatever the base.
fn based(s: &Segment, write: bool) -> bool {
    let code = s.type_ & 0x8 != 0;
    let readable_or_data = !code || s.type_ & 0x2 != 0;
    let writable = !code && s.type_ & 0x2 != 0;
    let expand_down = !code && s.type_ & 0x4 != 0;
    !s.unusable
        && s.s
        && s.limit == 0xffff_ffff
        && !expand_down
        && if write { writable } else { readable_or_data }
}

/// The cache for `mode` and the six segment registers (in `Seg` order).
pub fn compute(mode: Mode, segs: &[Segment; 6]) -> SegCache {
    let mut c = SegCache::default();
    if mode == Mode::Protected {
        for s in Seg::ALL {
            let d = &segs[s as usize];
            if flat(d, false) {
                c.flat_read |= 1 << s as u8;
            }
            if flat(d, true) {
                c.flat_write |= 1 << s as u8;
            }
            if based(d, false) {
                c.based_read |= 1 << s as u8;
            }
            if based(d, true) {
                c.based_write |= 1 << s as u8;
            }
        }
    }
    let ss32 = segs[Seg::Ss as usize].db;
    c.sp_mask = match mode {
        Mode::Long => u64::MAX,
        _ if ss32 => 0xffff_ffff,
        _ => 0xffff,
    };
    c
}

impl Cpu {
    /// Recompute the segment fast-path decisions after the mode or any
    /// segment register changed.
    #[inline]
    pub fn refresh_seg_cache(&mut self) {
        self.seg_cache = compute(self.mode, &self.seg);
    }

    /// Whether the cached decisions match the segment state (checked in
    /// debug builds on every access, so a change that forgets to refresh
    /// shows up in the tests).
    pub fn seg_cache_is_current(&self) -> bool {
        self.seg_cache == compute(self.mode, &self.seg)
    }

    /// Whether accesses of the kind through `seg` take the flat path.
    #[inline(always)]
    pub fn seg_is_flat(&self, seg: Seg, write: bool) -> bool {
        let m = if write {
            self.seg_cache.flat_write
        } else {
            self.seg_cache.flat_read
        };
        m & (1 << seg as u8) != 0
    }
}

#[cfg(test)]
mod tests {
    use kite_hypervisor::{x86, FlatKind};

    use super::*;
    use crate::cpu::integer::test_support::TestCpu;

    fn data() -> Segment {
        Segment::flat(0x10, FlatKind::Data)
    }

    #[test]
    fn flat_data_segment_is_flat_for_reads_and_writes() {
        let c = compute(Mode::Protected, &[data(); 6]);
        assert_eq!(c.flat_read, 0x3f);
        assert_eq!(c.flat_write, 0x3f);
        assert_eq!(c.sp_mask, 0xffff_ffff);
    }

    #[test]
    fn small_limit_base_expand_down_and_types_are_not_flat() {
        let mut segs = [data(); 6];
        segs[Seg::Ds as usize].limit = 0xffff_efff;
        segs[Seg::Es as usize].base = 0x1000;
        segs[Seg::Ss as usize].type_ = 0x7; // expand-down, writable
        segs[Seg::Fs as usize].unusable = true;
        segs[Seg::Gs as usize].type_ = 0x1; // read-only data
        segs[Seg::Cs as usize] = Segment::flat(8, FlatKind::Code32); // execute/read
        let c = compute(Mode::Protected, &segs);
        let bit = |s: Seg| 1u8 << s as u8;
        assert_eq!(c.flat_read, bit(Seg::Gs) | bit(Seg::Cs));
        assert_eq!(c.flat_write, 0);
        // Execute-only code is not readable.
        segs[Seg::Cs as usize].type_ = 0x9;
        assert_eq!(compute(Mode::Protected, &segs).flat_read, bit(Seg::Gs));
    }

    #[test]
    fn real_vm86_and_long_mode_are_never_flat() {
        for mode in [Mode::Real, Mode::Vm86, Mode::Long] {
            let c = compute(mode, &[data(); 6]);
            assert_eq!((c.flat_read, c.flat_write), (0, 0), "{mode:?}");
        }
        let mut segs = [Segment::real_mode(0, false); 6];
        assert_eq!(compute(Mode::Real, &segs).sp_mask, 0xffff);
        segs[Seg::Ss as usize].db = true;
        assert_eq!(compute(Mode::Real, &segs).sp_mask, 0xffff_ffff);
        assert_eq!(compute(Mode::Long, &segs).sp_mask, u64::MAX);
    }

    /// A GDT with a flat data segment at 0x10 and a 64 KiB one at 0x18.
    fn gdt_cpu() -> TestCpu {
        let mut t = TestCpu::new(32);
        let gdt = 0x8000u64;
        let flat = Segment::flat(0x10, FlatKind::Data).to_descriptor();
        let small = Segment {
            limit: 0xffff,
            g: false,
            ..Segment::flat(0x18, FlatKind::Data)
        }
        .to_descriptor();
        t.write(gdt + 0x10, &flat.to_le_bytes());
        t.write(gdt + 0x18, &small.to_le_bytes());
        t.cpu.gdtr = kite_hypervisor::DescriptorTable {
            base: gdt,
            limit: 0x1f,
        };
        t
    }

    #[test]
    fn segment_loads_update_the_decision_and_limits_still_fault() {
        let mut t = gdt_cpu();
        let c = &mut t.cpu;
        assert!(c.seg_is_flat(Seg::Ds, false) && c.seg_is_flat(Seg::Ds, true));
        assert_eq!(c.read_mem(Seg::Ds, 0x2_0000, 4), Ok(0));
        c.load_segment(Seg::Ds, 0x18).unwrap();
        assert!(!c.seg_is_flat(Seg::Ds, false) && !c.seg_is_flat(Seg::Ds, true));
        assert!(c.seg_cache_is_current());
        // Beyond the 64 KiB limit: #GP(0); within it the access works.
        let gp = crate::cpu::exception(x86::GP, Some(0));
        assert_eq!(c.read_mem(Seg::Ds, 0x2_0000, 4), Err(gp));
        assert_eq!(c.read_mem(Seg::Ds, 0xfffd, 4), Err(gp));
        assert_eq!(c.write_mem(Seg::Ds, 0xfffe, 2, 7), Ok(()));
        assert_eq!(c.read_mem(Seg::Ds, 0xfffe, 2), Ok(7));
        // Through SS a limit fault is #SS(0).
        c.load_segment(Seg::Ss, 0x18).unwrap();
        assert_eq!(
            c.read_mem(Seg::Ss, 0x1_0000, 1),
            Err(crate::cpu::exception(x86::SS, Some(0)))
        );
        assert_eq!(c.seg_cache.sp_mask, 0xffff_ffff);
        // Back to the flat descriptor.
        c.load_segment(Seg::Ds, 0x10).unwrap();
        assert!(c.seg_is_flat(Seg::Ds, true));
        assert_eq!(c.read_mem(Seg::Ds, 0x2_0000, 4), Ok(0));
        // A null selector makes DS unusable: every access faults.
        c.load_segment(Seg::Ds, 0).unwrap();
        assert!(!c.seg_is_flat(Seg::Ds, false));
        assert_eq!(c.read_mem(Seg::Ds, 0x2_0000, 4), Err(gp));
    }

    #[test]
    fn flat_access_past_4_gib_faults() {
        let mut t = gdt_cpu();
        let c = &mut t.cpu;
        let gp = crate::cpu::exception(x86::GP, Some(0));
        assert!(c.seg_is_flat(Seg::Es, false));
        assert_eq!(c.seg_lin(Seg::Es, 0xffff_fffc, 4, false), Ok(0xffff_fffc));
        assert_eq!(c.seg_lin(Seg::Es, 0xffff_fffd, 4, false), Err(gp));
        assert_eq!(c.seg_lin(Seg::Es, 0xffff_ffff, 1, true), Ok(0xffff_ffff));
        assert_eq!(c.seg_lin(Seg::Es, 0x1_0000_0000, 1, true), Err(gp));
    }

    #[test]
    fn mode_switches_and_set_sregs_refresh_the_decision() {
        let mut t = TestCpu::new(32);
        assert!(t.cpu.seg_is_flat(Seg::Ds, false));
        // Back to real mode (CR0.PE clear): nothing is flat.
        t.cpu.cr0 &= !x86::CR0_PE;
        t.cpu.update_mode();
        assert!(!t.cpu.seg_is_flat(Seg::Ds, false));
        assert_eq!(t.cpu.seg_cache.sp_mask, 0xffff_ffff);
        // A descriptor cache written directly and then refreshed.
        t.cpu.cr0 |= x86::CR0_PE;
        t.cpu.update_mode();
        t.cpu.seg[Seg::Ds as usize].base = 0x10_0000;
        assert!(!t.cpu.seg_cache_is_current());
        t.cpu.refresh_seg_cache();
        assert!(!t.cpu.seg_is_flat(Seg::Ds, false));
        assert_eq!(t.cpu.seg_lin(Seg::Ds, 0x10, 4, false), Ok(0x10_0010));
    }
}
