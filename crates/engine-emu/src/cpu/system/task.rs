//! Task state: the I/O permission check (IOPL, then the TSS I/O bitmap) and
//! hardware task switches (task gates in the IDT, far JMP/CALL to a task
//! gate or TSS, IRET with NT set).

use kite_hypervisor::{x86, Segment};

use super::super::{gp, gp0, Cpu, Fault, Mode, Res, Seg};
use super::segments::{
    is_code, is_conforming, np, null_seg, seg_from_desc, sel_code, ts, vm86_seg,
};

impl Cpu {
    /// IN/OUT/INS/OUTS permission: IOPL, then the TSS I/O bitmap (#GP(0) if denied).
    pub fn check_io(&mut self, port: u16, size: u32) -> Res {
        match self.mode {
            Mode::Real => return Ok(()),
            Mode::Protected | Mode::Long if self.cpl <= self.iopl() => return Ok(()),
            _ => {}
        }
        // CPL > IOPL or VM86: the bitmap of a 32-bit (or 64-bit) TSS decides.
        let tr = self.tr;
        if tr.unusable || !tr.present || tr.type_ & 0x8 == 0 || tr.limit < 0x67 {
            return Err(gp0());
        }
        let long = self.long_mode_active();
        let lin = |base: u64, off: u64| {
            let a = base.wrapping_add(off);
            if long {
                a
            } else {
                a & 0xffff_ffff
            }
        };
        let map = self.read_lin(lin(tr.base, 0x66), 2, true)?;
        let byte = map + u64::from(port / 8);
        if byte + 1 > u64::from(tr.limit) {
            return Err(gp0());
        }
        let bits = self.read_lin(lin(tr.base, byte), 2, true)?;
        let want = ((1u64 << size) - 1) << (port & 7);
        if bits & want != 0 {
            return Err(gp0());
        }
        Ok(())
    }

    /// An IDT task gate: switch to the task of TSS selector `sel`; an error
    /// code is pushed on the new task's stack.
    pub(super) fn task_gate_event(
        &mut self,
        sel: u16,
        ret: u64,
        ec: Option<u32>,
        ext: bool,
    ) -> Res {
        self.task_switch(sel, Source::Event, ret, ec, ext)
    }

    /// IRET with NT set: return to the task named by the back link.
    pub(super) fn task_return(&mut self) -> Res {
        let tr = self.tr;
        if tr.type_ & 0x8 == 0 && tr.type_ != 0x3 {
            return Err(ts(sel_code(tr.selector, false)));
        }
        let link = self.read_lin(tr.base & 0xffff_ffff, 2, true)? as u16;
        let ret = self.next_rip;
        self.task_switch(link, Source::Iret, ret, None, false)
    }

    /// Far JMP/CALL to a task gate (type 5) or an available TSS.
    pub(super) fn task_switch_far(&mut self, sel: u16, raw: u64, call: bool) -> Res {
        let dpl = ((raw >> 45) & 3) as u8;
        let rpl = (sel & 3) as u8;
        if dpl < self.cpl || dpl < rpl {
            return Err(gp(sel_code(sel, false)));
        }
        if raw & (1 << 47) == 0 {
            return Err(np(sel_code(sel, false)));
        }
        let tss = if (raw >> 40) & 0xf == 0x5 {
            (raw >> 16) as u16
        } else {
            sel
        };
        let src = if call { Source::Call } else { Source::Jmp };
        let ret = self.next_rip;
        self.task_switch(tss, src, ret, None, false)
    }

    /// Set or clear the busy bit of the TSS descriptor of `sel` in the GDT.
    fn set_tss_busy(&mut self, sel: u16, busy: bool) -> Res {
        if let Some(lin) = self.desc_addr(sel & !4, 8) {
            let b = self.read_lin(lin.wrapping_add(5), 1, true)?;
            let b = if busy { b | 0x2 } else { b & !0x2 };
            self.write_lin(lin.wrapping_add(5), 1, b, true)?;
        }
        Ok(())
    }

    /// The hardware task switch (SDM vol 3, 7.3) between 32-bit or 16-bit
    /// TSSs: save the current task in its TSS, load the new one, and keep the
    /// busy bits, the back link and NT as the source of the switch requires.
    fn task_switch(&mut self, sel: u16, src: Source, ret: u64, ec: Option<u32>, ext: bool) -> Res {
        let code = sel_code(sel, ext);
        let bad = |c: u32| if src == Source::Iret { ts(c) } else { gp(c) };
        if sel & 4 != 0 || sel & 0xfffc == 0 {
            return Err(bad(code));
        }
        let lin = self.desc_addr(sel, 8).ok_or_else(|| bad(code))?;
        let raw = self.read_lin(lin, 8, true)?;
        let d = seg_from_desc(sel, raw);
        let type_ok = if src == Source::Iret {
            matches!(d.type_, 0x3 | 0xb)
        } else {
            matches!(d.type_, 0x1 | 0x9)
        };
        if d.s || !type_ok {
            return Err(bad(code));
        }
        if !d.present {
            return Err(np(code));
        }
        let new = TssLayout::of(&d);
        if d.limit < new.min_limit() {
            return Err(ts(code));
        }
        // Read the new task's state before anything changes.
        let mut img = [0u8; 0x68];
        let n = new.min_limit() as usize + 1;
        self.read_lin_bytes(d.base & 0xffff_ffff, &mut img[..n], true)?;
        let new_cr3 = new.field(&img, 0x1c);
        let new_eip = new.field(&img, new.ip());
        let mut new_flags = new.field(&img, new.flags());
        let gprs: [u64; 8] = std::array::from_fn(|i| new.field(&img, new.gpr(i)));
        let sels: [Option<u16>; 6] =
            std::array::from_fn(|i| (i < new.segs()).then(|| new.field(&img, new.sel(i)) as u16));
        let ldt = new.field(&img, new.ldt()) as u16;

        // Save the current task.
        let old = TssLayout::of(&self.tr);
        let mut old_flags = self.flags.rflags();
        if matches!(src, Source::Jmp | Source::Iret) {
            old_flags &= !x86::RFLAGS_NT;
        }
        let mut save = [0u8; 0x40];
        let base = old.ip();
        old.put(&mut save, old.ip() - base, ret);
        old.put(&mut save, old.flags() - base, old_flags);
        for i in 0..8 {
            old.put(&mut save, old.gpr(i) - base, self.gpr[i]);
        }
        for (i, s) in Seg::ALL.iter().enumerate().take(old.segs()) {
            let v = u64::from(self.seg[*s as usize].selector);
            old.put(&mut save, old.sel(i) - base, v);
        }
        let old_tr = self.tr;
        let len = old.ldt() - base;
        let at = old_tr.base.wrapping_add(base as u64) & 0xffff_ffff;
        self.write_lin_bytes(at, &save[..len], true)?;
        if matches!(src, Source::Jmp | Source::Iret) {
            self.set_tss_busy(old_tr.selector, false)?;
        }
        if src != Source::Iret {
            self.set_tss_busy(sel, true)?;
        }
        if matches!(src, Source::Call | Source::Event) {
            self.write_lin(d.base & 0xffff_ffff, 2, u64::from(old_tr.selector), true)?;
            new_flags |= x86::RFLAGS_NT;
        }

        // Commit: from here on, faults belong to the new task.
        self.tr = Segment {
            type_: d.type_ | 0x2,
            ..d
        };
        self.cr0 |= x86::CR0_TS;
        if new.wide && self.cr0 & x86::CR0_PG != 0 {
            self.cr3 = new_cr3;
            self.tlb.flush_non_global();
        }
        for (i, g) in gprs.iter().enumerate() {
            self.gpr[i] = *g;
        }
        if !new.wide {
            new_flags |= self.flags.rflags() & !0xffff & !x86::RFLAGS_VM;
        }
        self.flags.set_rflags(new_flags);
        self.rip = new_eip;
        self.branch_to(new_eip);
        let mut loaded = [0u16; 6];
        for (i, s) in Seg::ALL.iter().enumerate() {
            loaded[i] = sels[i].unwrap_or(self.seg[*s as usize].selector);
            self.seg[*s as usize].selector = loaded[i];
        }
        self.end_block = true;
        self.load_task_segments(loaded, new.segs(), ldt, ext)?;
        if let Some(e) = ec {
            self.push(u64::from(e), new.width as u32)?;
        }
        Ok(())
    }

    /// Load LDTR and the segment registers of the task just switched to.
    fn load_task_segments(&mut self, sels: [u16; 6], nsegs: usize, ldt: u16, ext: bool) -> Res {
        if self.flags.get(x86::RFLAGS_VM) {
            for (i, s) in Seg::ALL.iter().enumerate() {
                self.seg[*s as usize] = vm86_seg(sels[i], *s == Seg::Cs);
            }
            self.update_mode();
            return Ok(());
        }
        if ldt & 0xfffc == 0 {
            self.ldtr = null_seg(ldt, 0);
        } else {
            let lraw = match self.read_desc(ldt & !4)? {
                Some(r) if ldt & 4 == 0 => r,
                _ => return Err(ts(sel_code(ldt, ext))),
            };
            let l = seg_from_desc(ldt, lraw);
            if l.s || l.type_ != 0x2 {
                return Err(ts(sel_code(ldt, ext)));
            }
            if !l.present {
                return Err(np(sel_code(ldt, ext)));
            }
            self.ldtr = l;
        }
        let cs_sel = sels[Seg::Cs as usize];
        let craw = match self.read_desc(cs_sel)? {
            Some(r) if cs_sel & 0xfffc != 0 => r,
            _ => return Err(ts(sel_code(cs_sel, ext))),
        };
        let cs = seg_from_desc(cs_sel, craw);
        let rpl = (cs_sel & 3) as u8;
        let ok = is_code(&cs)
            && if is_conforming(&cs) {
                cs.dpl <= rpl
            } else {
                cs.dpl == rpl
            };
        if !ok {
            return Err(ts(sel_code(cs_sel, ext)));
        }
        if !cs.present {
            return Err(np(sel_code(cs_sel, ext)));
        }
        self.set_accessed(cs_sel, craw)?;
        self.seg[Seg::Cs as usize] = cs;
        self.cpl = rpl;
        self.update_mode();
        let ss_sel = sels[Seg::Ss as usize];
        let (ss, ss_raw) = self.check_stack_seg(ss_sel, rpl, false, ext)?;
        self.set_accessed(ss_sel, ss_raw)?;
        self.seg[Seg::Ss as usize] = ss;
        self.refresh_seg_cache();
        let data = [Seg::Es, Seg::Ds, Seg::Fs, Seg::Gs];
        for s in data.into_iter().filter(|s| (*s as usize) < nsegs) {
            self.load_segment(s, sels[s as usize])
                .map_err(|f| match f {
                    Fault::Exception(e) if e.vector == x86::GP => ts(e.error_code().unwrap_or(0)),
                    other => other,
                })?;
        }
        Ok(())
    }
}

/// Where the fields of a 32-bit (`wide`) or 16-bit TSS are.
struct TssLayout {
    wide: bool,
    /// Bytes per register field.
    width: usize,
}

impl TssLayout {
    fn of(tss: &Segment) -> TssLayout {
        let wide = tss.type_ & 0x8 != 0;
        TssLayout {
            wide,
            width: if wide { 4 } else { 2 },
        }
    }
    fn min_limit(&self) -> u32 {
        if self.wide {
            0x67
        } else {
            0x2b
        }
    }
    fn ip(&self) -> usize {
        if self.wide {
            0x20
        } else {
            0x0e
        }
    }
    fn flags(&self) -> usize {
        self.ip() + self.width
    }
    /// GPR `i` in encoding order (AX CX DX BX SP BP SI DI).
    fn gpr(&self, i: usize) -> usize {
        self.flags() + self.width * (1 + i)
    }
    /// Segment selector `i` in encoding order (ES CS SS DS, then FS GS).
    fn sel(&self, i: usize) -> usize {
        self.gpr(8) + self.width * i
    }
    /// Segment registers the format holds (16-bit TSSs have no FS/GS).
    fn segs(&self) -> usize {
        if self.wide {
            6
        } else {
            4
        }
    }
    fn ldt(&self) -> usize {
        self.sel(self.segs())
    }
    fn field(&self, img: &[u8], off: usize) -> u64 {
        let mut b = [0u8; 4];
        if let Some(src) = img.get(off..off + self.width) {
            b[..self.width].copy_from_slice(src);
        }
        u64::from(u32::from_le_bytes(b))
    }
    fn put(&self, buf: &mut [u8], off: usize, v: u64) {
        if let Some(dst) = buf.get_mut(off..off + self.width) {
            dst.copy_from_slice(&v.to_le_bytes()[..self.width]);
        }
    }
}

/// What started a task switch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Jmp,
    Call,
    Iret,
    Event,
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use kite_hypervisor::{FlatKind, MemoryRegion};

    use super::*;
    use crate::memory::PhysMemory;

    #[test]
    fn io_permission_from_iopl_and_the_tss_bitmap() {
        let mut buf = vec![0u8; 0x10000];
        buf[0x1066..0x1068].copy_from_slice(&0x68u16.to_le_bytes());
        // Ports 0-0x3ff denied except 0x3f8-0x3ff; the byte after the map is 0xff.
        buf[0x1068..0x10e9].fill(0xff);
        buf[0x1068 + 0x7f] = 0;
        let mem = PhysMemory::new();
        mem.set_region(MemoryRegion {
            slot: 0,
            guest_phys_addr: 0,
            size: buf.len() as u64,
            host_addr: buf.as_mut_ptr() as u64,
            readonly: false,
            log_dirty: false,
        })
        .unwrap();
        let mut c = Cpu::new(Arc::new(mem), None, None, 0);
        assert_eq!(
            c.check_io(0x60, 1),
            Ok(()),
            "real mode has no I/O protection"
        );
        c.cr0 |= x86::CR0_PE;
        c.seg[Seg::Cs as usize] = Segment {
            dpl: 3,
            ..Segment::flat(0x1b, FlatKind::Code32)
        };
        c.update_mode();
        c.cpl = 3;
        c.tr = Segment {
            base: 0x1000,
            limit: 0xe8,
            selector: 0x38,
            type_: 0xb,
            present: true,
            ..Default::default()
        };
        assert_eq!(c.check_io(0x3f8, 1), Ok(()));
        assert_eq!(c.check_io(0x3fc, 4), Ok(()));
        assert_eq!(c.check_io(0x3f7, 2), Err(gp0()));
        assert_eq!(c.check_io(0x60, 1), Err(gp0()));
        assert_eq!(c.check_io(0x400, 1), Err(gp0()), "beyond the TSS limit");
        c.flags.set(x86::RFLAGS_IOPL, true);
        assert_eq!(c.check_io(0x60, 1), Ok(()), "CPL <= IOPL");
        c.flags.set(x86::RFLAGS_VM, true);
        c.update_mode();
        assert_eq!(c.mode, Mode::Vm86);
        assert_eq!(
            c.check_io(0x60, 1),
            Err(gp0()),
            "VM86 always uses the bitmap"
        );
        assert_eq!(c.check_io(0x3f9, 1), Ok(()));
        drop(c);
        drop(buf);
    }
}
