//! Segment descriptors: reading them from the GDT/LDT, turning them into
//! segment-register caches, the privilege and type checks of every segment
//! load, and stack frames written through a segment other than the current SS
//! (stack switches on interrupts, call gates and returns).

use kite_hypervisor::{x86, Segment};

use super::super::access::canonical;
use super::super::{exception, gp, gp0, Cpu, Fault, Mode, Res, Seg};

/// Error code of a selector fault: the selector's index and TI, plus EXT.
#[inline]
pub fn sel_code(sel: u16, ext: bool) -> u32 {
    u32::from(sel & 0xfffc) | u32::from(ext)
}

/// #TS(code).
#[inline]
pub fn ts(code: u32) -> Fault {
    exception(x86::TS, Some(code))
}

/// #NP(code).
#[inline]
pub fn np(code: u32) -> Fault {
    exception(x86::NP, Some(code))
}

/// #SS(code).
#[inline]
pub fn ss_fault(code: u32) -> Fault {
    exception(x86::SS, Some(code))
}

/// The segment-register cache an 8-byte descriptor loads.
pub fn seg_from_desc(selector: u16, raw: u64) -> Segment {
    let g = raw & (1 << 55) != 0;
    let mut limit = ((raw & 0xffff) | ((raw >> 32) & 0xf_0000)) as u32;
    if g {
        limit = (limit << 12) | 0xfff;
    }
    Segment {
        base: ((raw >> 16) & 0xff_ffff) | (((raw >> 56) & 0xff) << 24),
        limit,
        selector,
        type_: ((raw >> 40) & 0xf) as u8,
        s: raw & (1 << 44) != 0,
        dpl: ((raw >> 45) & 3) as u8,
        present: raw & (1 << 47) != 0,
        avl: raw & (1 << 52) != 0,
        l: raw & (1 << 53) != 0,
        db: raw & (1 << 54) != 0,
        g,
        unusable: false,
    }
}

/// A null segment register (unusable) holding `selector`.
pub fn null_seg(selector: u16, dpl: u8) -> Segment {
    Segment {
        selector,
        dpl,
        unusable: true,
        ..Default::default()
    }
}

/// A segment as the VM86 mode and real mode load it: base = selector * 16.
pub fn vm86_seg(selector: u16, code: bool) -> Segment {
    Segment {
        dpl: 3,
        ..Segment::real_mode(selector, code)
    }
}

/// Code segment (S=1, type bit 3).
#[inline]
pub fn is_code(s: &Segment) -> bool {
    s.s && s.type_ & 0x8 != 0
}

/// Conforming code segment.
#[inline]
pub fn is_conforming(s: &Segment) -> bool {
    is_code(s) && s.type_ & 0x4 != 0
}

/// Writable data segment (what SS needs).
#[inline]
pub fn is_writable_data(s: &Segment) -> bool {
    s.s && s.type_ & 0xa == 0x2
}

/// Is the access `off..off+size` inside the segment's limit (expand-down aware)?
pub fn within_limit(s: &Segment, off: u64, size: u64) -> bool {
    let last = off.wrapping_add(size.saturating_sub(1));
    let limit = u64::from(s.limit);
    if s.s && s.type_ & 0xc == 0x4 {
        let upper = if s.db { 0xffff_ffff } else { 0xffff };
        off > limit && last <= upper && last >= off
    } else {
        last <= limit && last >= off
    }
}

/// Where a sequence of pushes goes when it is not (necessarily) the current
/// stack: the stack segment's cache, the stack pointer and its width.
#[derive(Debug, Clone, Copy)]
pub struct StackTarget {
    pub ss: Segment,
    pub sp: u64,
    /// 16, 32 or 64 (64: flat, canonical checks only).
    pub bits: u32,
    /// Implicit supervisor access (a stack of privilege level 0-2).
    pub sys: bool,
    /// The fault a limit or canonical violation raises.
    pub fault: Fault,
}

impl StackTarget {
    fn mask(&self) -> u64 {
        match self.bits {
            64 => u64::MAX,
            32 => 0xffff_ffff,
            _ => 0xffff,
        }
    }

    /// The full stack-pointer register after the pushes/pops left `sp`:
    /// 16-bit stacks keep the bits above SP of `old`.
    pub fn merge(&self, old: u64, sp: u64) -> u64 {
        match self.bits {
            64 => sp,
            32 => sp & 0xffff_ffff,
            _ => (old & !0xffff) | (sp & 0xffff),
        }
    }
}

impl Cpu {
    /// The linear address of the `size`-byte descriptor of `sel` in the GDT
    /// or LDT, or None when it is outside the table (or the LDT is null).
    pub fn desc_addr(&self, sel: u16, size: u64) -> Option<u64> {
        let off = u64::from(sel & 0xfff8);
        let (base, limit) = if sel & 4 != 0 {
            if self.ldtr.unusable || !self.ldtr.present {
                return None;
            }
            (self.ldtr.base, u64::from(self.ldtr.limit))
        } else {
            (self.gdtr.base, u64::from(self.gdtr.limit))
        };
        if off + size - 1 > limit {
            return None;
        }
        let lin = base.wrapping_add(off);
        Some(if self.long_mode_active() {
            lin
        } else {
            lin & 0xffff_ffff
        })
    }

    /// Read the 8-byte descriptor of `sel`; None when outside its table.
    pub fn read_desc(&mut self, sel: u16) -> Res<Option<u64>> {
        match self.desc_addr(sel, 8) {
            Some(lin) => Ok(Some(self.read_lin(lin, 8, true)?)),
            None => Ok(None),
        }
    }

    /// Read a 16-byte system descriptor (long mode): (low, high).
    pub fn read_desc16(&mut self, sel: u16) -> Res<Option<(u64, u64)>> {
        match self.desc_addr(sel, 16) {
            Some(lin) => {
                let lo = self.read_lin(lin, 8, true)?;
                let hi = self.read_lin(lin.wrapping_add(8), 8, true)?;
                Ok(Some((lo, hi)))
            }
            None => Ok(None),
        }
    }

    /// Set the accessed bit of a code/data descriptor if it is clear.
    pub fn set_accessed(&mut self, sel: u16, raw: u64) -> Res {
        if raw & (1 << 40) != 0 {
            return Ok(());
        }
        if let Some(lin) = self.desc_addr(sel, 8) {
            let b = ((raw >> 40) as u8) | 1;
            self.write_lin(lin.wrapping_add(5), 1, u64::from(b), true)?;
        }
        Ok(())
    }

    /// Checks of a load of SS with `sel` for privilege level `cpl` (MOV SS,
    /// far returns, IRET: #GP; stacks from the TSS: #TS when `fault_gp` is
    /// false). A non-present segment raises #SS. Returns the cache and the
    /// raw descriptor.
    pub fn check_stack_seg(
        &mut self,
        sel: u16,
        cpl: u8,
        fault_gp: bool,
        ext: bool,
    ) -> Res<(Segment, u64)> {
        let err = |c: u32| if fault_gp { gp(c) } else { ts(c) };
        if sel & 0xfffc == 0 {
            return Err(err(u32::from(ext)));
        }
        let raw = match self.read_desc(sel)? {
            Some(r) => r,
            None => return Err(err(sel_code(sel, ext))),
        };
        let d = seg_from_desc(sel, raw);
        if u16::from(cpl) != sel & 3 || !is_writable_data(&d) || d.dpl != cpl {
            return Err(err(sel_code(sel, ext)));
        }
        if !d.present {
            return Err(ss_fault(sel_code(sel, ext)));
        }
        Ok((d, raw))
    }

    /// MOV/POP/LxS to DS, ES, FS, GS, SS in protected and long mode.
    fn load_segment_protected(&mut self, seg: Seg, sel: u16) -> Res {
        let rpl = (sel & 3) as u8;
        if sel & 0xfffc == 0 {
            if seg == Seg::Ss {
                if !(self.mode == Mode::Long && self.cpl < 3 && rpl == self.cpl) {
                    return Err(gp0());
                }
                self.seg[Seg::Ss as usize] = null_seg(sel, self.cpl);
            } else {
                self.seg[seg as usize] = null_seg(sel, 0);
            }
            return Ok(());
        }
        if seg == Seg::Ss {
            let (d, raw) = self.check_stack_seg(sel, self.cpl, true, false)?;
            self.set_accessed(sel, raw)?;
            self.seg[Seg::Ss as usize] = d;
            return Ok(());
        }
        let raw = match self.read_desc(sel)? {
            Some(r) => r,
            None => return Err(gp(sel_code(sel, false))),
        };
        let d = seg_from_desc(sel, raw);
        let code = is_code(&d);
        if !d.s || (code && d.type_ & 0x2 == 0) {
            return Err(gp(sel_code(sel, false)));
        }
        if (!code || !is_conforming(&d)) && (rpl > d.dpl || self.cpl > d.dpl) {
            return Err(gp(sel_code(sel, false)));
        }
        if !d.present {
            return Err(np(sel_code(sel, false)));
        }
        self.set_accessed(sel, raw)?;
        self.seg[seg as usize] = d;
        Ok(())
    }

    /// Load a segment register from a selector with the checks of the
    /// current mode (MOV/POP to a segment register, LDS...).
    pub fn load_segment(&mut self, seg: Seg, selector: u16) -> Res {
        let r = self.load_segment_unrefreshed(seg, selector);
        self.refresh_seg_cache();
        r
    }

    fn load_segment_unrefreshed(&mut self, seg: Seg, selector: u16) -> Res {
        match self.mode {
            Mode::Real | Mode::Vm86 => {
                let vm86 = self.mode == Mode::Vm86;
                let s = &mut self.seg[seg as usize];
                s.selector = selector;
                s.base = u64::from(selector) << 4;
                s.unusable = false;
                s.present = true;
                if vm86 {
                    *s = vm86_seg(selector, seg == Seg::Cs);
                }
                if seg == Seg::Cs {
                    self.update_mode();
                }
                self.end_block = true;
                Ok(())
            }
            _ => {
                if seg == Seg::Cs {
                    // CS only changes through far transfers.
                    return Err(super::super::ud());
                }
                self.load_segment_protected(seg, selector)?;
                self.end_block = true;
                Ok(())
            }
        }
    }

    /// Null the data segment registers a return to an outer privilege level
    /// may no longer use (SDM vol 2, RET/IRET: DPL < CPL and not conforming code).
    pub fn null_inaccessible_data_segs(&mut self) {
        for s in [Seg::Es, Seg::Ds, Seg::Fs, Seg::Gs] {
            let c = &self.seg[s as usize];
            if c.unusable {
                continue;
            }
            if (!is_code(c) || !is_conforming(c)) && c.dpl < self.cpl {
                self.seg[s as usize] = null_seg(0, 0);
            }
        }
        self.refresh_seg_cache();
    }

    /// Linear address of one push of `size` bytes at `sp` on `t`, checked
    /// against its limit (or canonical form).
    fn frame_addr(t: &StackTarget, sp: u64, size: u32) -> Res<u64> {
        if t.bits == 64 {
            if !canonical(sp) || !canonical(sp.wrapping_add(u64::from(size) - 1)) {
                return Err(t.fault);
            }
            Ok(sp)
        } else {
            if !within_limit(&t.ss, sp, u64::from(size)) {
                return Err(t.fault);
            }
            Ok(t.ss.base.wrapping_add(sp) & 0xffff_ffff)
        }
    }

    /// Write `vals` (in push order) as pushes of `size` bytes onto `t`.
    /// Every limit is checked before the first write; registers are not
    /// touched. Returns the final stack pointer (masked to the stack width).
    pub fn push_frame(&mut self, t: &StackTarget, size: u32, vals: &[u64]) -> Res<u64> {
        let mut sp = t.sp & t.mask();
        let mut addrs = [0u64; 16];
        let mut spill = Vec::new();
        for i in 0..vals.len() {
            sp = sp.wrapping_sub(u64::from(size)) & t.mask();
            let lin = Self::frame_addr(t, sp, size)?;
            match addrs.get_mut(i) {
                Some(a) => *a = lin,
                None => spill.push(lin),
            }
        }
        for (i, v) in vals.iter().enumerate() {
            let lin = match addrs.get(i) {
                Some(a) => *a,
                None => spill[i - addrs.len()],
            };
            self.write_lin(lin, size, *v, t.sys)?;
        }
        Ok(sp)
    }

    /// A StackTarget for the current SS:RSP.
    pub fn current_stack(&self) -> StackTarget {
        StackTarget {
            ss: self.seg[Seg::Ss as usize],
            sp: self.gpr[super::super::reg::RSP],
            bits: self.stack_bits(),
            sys: false,
            fault: ss_fault(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptor_decoding() {
        // Flat 32-bit ring-0 code: base 0, limit 4 GiB, type 0xb (accessed).
        let s = seg_from_desc(0x08, 0x00cf_9b00_0000_ffff);
        assert_eq!((s.base, s.limit, s.type_, s.dpl), (0, 0xffff_ffff, 0xb, 0));
        assert!(s.present && s.db && s.g && s.s && !s.l);
        // Round trip through the API's encoder.
        let seg = Segment {
            base: 0x1234_5678,
            limit: 0xabcde,
            selector: 0x2b,
            type_: 0x3,
            present: true,
            dpl: 3,
            db: true,
            s: true,
            ..Default::default()
        };
        assert_eq!(seg_from_desc(0x2b, seg.to_descriptor()), seg);
    }

    #[test]
    fn limits() {
        let mut s = Segment::real_mode(0, false);
        assert!(within_limit(&s, 0xfffe, 2));
        assert!(!within_limit(&s, 0xffff, 2));
        // Expand-down, 16-bit: valid offsets are limit+1..=0xffff.
        s.type_ = 0x7;
        s.limit = 0x0fff;
        assert!(!within_limit(&s, 0x0fff, 1));
        assert!(within_limit(&s, 0x1000, 4));
        assert!(!within_limit(&s, 0xfffe, 4));
    }
}
