//! Event delivery (SDM vol 3 ch. 6): real-mode IVT, protected-mode IDT with
//! interrupt/trap/task gates and TSS stack switches (also out of VM86),
//! long-mode IDT with IST and the 64-bit frame, #DF escalation and triple
//! fault; and the instructions that raise software interrupts (INT n, INT3,
//! INTO, INT1).

use iced_x86::Instruction;
use kite_hypervisor::x86;

use super::super::access::canonical;
use super::super::{gp, gp0, reg, Cpu, Exception, Fault, Mode, Res, Seg};
use super::segments::{
    is_code, is_conforming, np, null_seg, seg_from_desc, sel_code, ss_fault, ts, StackTarget,
};
use super::EventKind;

/// The SDM's classes for double-fault escalation (table 6-4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Benign,
    Contributory,
    PageFault,
}

fn class(vector: u8, kind: EventKind) -> Class {
    if kind != EventKind::Exception {
        return Class::Benign;
    }
    match vector {
        0 | 10..=13 => Class::Contributory,
        14 => Class::PageFault,
        _ => Class::Benign,
    }
}

/// Does a `second` exception raised while delivering `first` make a #DF (table 6-5)?
fn escalates(first: Class, second: Class) -> bool {
    matches!(
        (first, second),
        (Class::Contributory, Class::Contributory)
            | (Class::PageFault, Class::Contributory)
            | (Class::PageFault, Class::PageFault)
    )
}

/// A gate's target, after all checks, ready to commit.
struct Target {
    cs: kite_hypervisor::Segment,
    cs_raw: u64,
    rip: u64,
    new_cpl: u8,
    /// Clear IF (interrupt gate).
    clear_if: bool,
}

impl Cpu {
    /// Deliver an exception raised by the current instruction, escalating to
    /// #DF and then to a triple fault as the SDM's table 6-5 says.
    pub fn deliver_exception(&mut self, e: Exception) -> Res {
        self.deliver_event(e.vector, e.error_code(), EventKind::Exception)
    }

    /// Deliver an event through the IVT (real mode) or IDT. Faults return to
    /// `rip` (the faulting instruction, or the next one at an instruction
    /// boundary), software interrupts to `next_rip`.
    pub fn deliver_event(&mut self, vector: u8, error_code: Option<u32>, kind: EventKind) -> Res {
        let ret = if kind == EventKind::Software {
            self.next_rip
        } else {
            self.rip
        };
        self.deliver_returning_to(vector, error_code, kind, ret)
    }

    /// Deliver an event whose frame returns to `ret`; an exception raised by
    /// the delivery itself is delivered in its place (or escalates).
    pub fn deliver_returning_to(
        &mut self,
        vector: u8,
        error_code: Option<u32>,
        kind: EventKind,
        ret: u64,
    ) -> Res {
        let (mut v, mut ec, mut k, mut ret) = (vector, error_code, kind, ret);
        for _ in 0..6 {
            match self.deliver_once(v, ec, k, ret) {
                Ok(()) => {
                    self.halted = false;
                    // Delivery ends the STI / MOV SS interrupt shadow.
                    self.interrupt_shadow = false;
                    if k == EventKind::Nmi {
                        self.nmi_blocked = true;
                    }
                    self.end_block = true;
                    return Ok(());
                }
                Err(Fault::Exception(e)) => {
                    if v == x86::DF && k == EventKind::Exception {
                        return Err(Fault::TripleFault);
                    }
                    if escalates(class(v, k), class(e.vector, EventKind::Exception)) {
                        (v, ec) = (x86::DF, Some(0));
                    } else {
                        (v, ec) = (e.vector, e.error_code());
                    }
                    k = EventKind::Exception;
                    // The nested fault is reported at the instruction (or
                    // boundary) where the first event happened.
                    ret = self.rip;
                }
                Err(f) => return Err(f),
            }
        }
        Err(Fault::TripleFault)
    }

    fn deliver_once(&mut self, vector: u8, ec: Option<u32>, kind: EventKind, ret: u64) -> Res {
        let ec = if kind == EventKind::Exception {
            ec
        } else {
            None
        };
        if self.mode == Mode::Real {
            self.deliver_real(vector, ret)
        } else if self.long_mode_active() {
            self.deliver_long(vector, ec, kind, ret)
        } else {
            self.deliver_legacy(vector, ec, kind, ret)
        }
    }

    fn deliver_real(&mut self, vector: u8, ret: u64) -> Res {
        let entry = u64::from(vector) * 4;
        if entry + 3 > u64::from(self.idtr.limit) {
            return Err(gp(u32::from(vector) * 8 + 2));
        }
        let v = self.read_lin(self.idtr.base.wrapping_add(entry) & 0xffff_ffff, 4, true)?;
        let cs = u64::from(self.seg[Seg::Cs as usize].selector);
        let t = self.current_stack();
        let sp = self.push_frame(&t, 2, &[self.flags.rflags(), cs, ret & 0xffff])?;
        self.set_sp(sp);
        self.flags.set(
            x86::RFLAGS_IF | x86::RFLAGS_TF | x86::RFLAGS_AC | x86::RFLAGS_RF,
            false,
        );
        let sel = (v >> 16) as u16;
        let c = &mut self.seg[Seg::Cs as usize];
        c.selector = sel;
        c.base = u64::from(sel) << 4;
        self.rip = v & 0xffff;
        self.branch_to(self.rip);
        Ok(())
    }

    /// Read and check the code segment a gate points to (shared by the
    /// legacy and long-mode IDT). Returns the cache and raw descriptor.
    fn gate_code_segment(&mut self, sel: u16, ext: bool) -> Res<(kite_hypervisor::Segment, u64)> {
        if sel & 0xfffc == 0 {
            return Err(gp(u32::from(ext)));
        }
        let raw = match self.read_desc(sel)? {
            Some(r) => r,
            None => return Err(gp(sel_code(sel, ext))),
        };
        let cs = seg_from_desc(sel, raw);
        if !is_code(&cs) || cs.dpl > self.cpl {
            return Err(gp(sel_code(sel, ext)));
        }
        if !cs.present {
            return Err(np(sel_code(sel, ext)));
        }
        Ok((cs, raw))
    }

    /// The stack pointer and SS selector for privilege `dpl` from a 16- or
    /// 32-bit TSS.
    pub fn tss_stack_legacy(&mut self, dpl: u8, ext: bool) -> Res<(u16, u64)> {
        let tr = self.tr;
        let code = sel_code(tr.selector, ext);
        let limit = u64::from(tr.limit);
        if tr.type_ & 0x8 != 0 {
            let off = 4 + 8 * u64::from(dpl);
            if off + 5 > limit {
                return Err(ts(code));
            }
            let lin = tr.base.wrapping_add(off) & 0xffff_ffff;
            let sp = self.read_lin(lin, 4, true)?;
            let ss = self.read_lin(lin.wrapping_add(4) & 0xffff_ffff, 2, true)?;
            Ok((ss as u16, sp))
        } else {
            let off = 2 + 4 * u64::from(dpl);
            if off + 3 > limit {
                return Err(ts(code));
            }
            let lin = tr.base.wrapping_add(off) & 0xffff_ffff;
            let sp = self.read_lin(lin, 2, true)?;
            let ss = self.read_lin(lin.wrapping_add(2) & 0xffff_ffff, 2, true)?;
            Ok((ss as u16, sp))
        }
    }

    /// A 64-bit TSS field at `off` (RSP0-2 at 4 + 8n, IST1-7 at 0x24 + 8(n-1)).
    pub fn tss_read64(&mut self, off: u64, ext: bool) -> Res<u64> {
        let tr = self.tr;
        if off + 7 > u64::from(tr.limit) {
            return Err(ts(sel_code(tr.selector, ext)));
        }
        self.read_lin(tr.base.wrapping_add(off), 8, true)
    }

    fn deliver_legacy(&mut self, vector: u8, ec: Option<u32>, kind: EventKind, ret: u64) -> Res {
        let ext = kind != EventKind::Software;
        let idt_code = u32::from(vector) * 8 + 2 + u32::from(ext);
        let off = u64::from(vector) * 8;
        if off + 7 > u64::from(self.idtr.limit) {
            return Err(gp(idt_code));
        }
        let gate = self.read_lin(self.idtr.base.wrapping_add(off) & 0xffff_ffff, 8, true)?;
        let gtype = ((gate >> 40) & 0x1f) as u8;
        if !matches!(gtype, 0x5 | 0x6 | 0x7 | 0xe | 0xf) {
            return Err(gp(idt_code));
        }
        let gdpl = ((gate >> 45) & 3) as u8;
        if kind == EventKind::Software && gdpl < self.cpl {
            return Err(gp(u32::from(vector) * 8 + 2));
        }
        if gate & (1 << 47) == 0 {
            return Err(np(idt_code));
        }
        if gtype == 0x5 {
            return self.task_gate_event((gate >> 16) as u16, ret, ec, ext);
        }
        let gate32 = gtype & 0x8 != 0;
        let mut rip = (gate & 0xffff) | ((gate >> 32) & 0xffff_0000);
        if !gate32 {
            rip &= 0xffff;
        }
        let sel = (gate >> 16) as u16;
        let (cs, cs_raw) = self.gate_code_segment(sel, ext)?;
        let vm86 = self.mode == Mode::Vm86;
        let inner = !is_conforming(&cs) && cs.dpl < self.cpl;
        if vm86 && !(inner && cs.dpl == 0) {
            return Err(gp(sel_code(sel, ext)));
        }
        if rip > u64::from(cs.limit) {
            return Err(gp(u32::from(ext)));
        }
        let t = Target {
            cs,
            cs_raw,
            rip,
            new_cpl: if inner { cs.dpl } else { self.cpl },
            clear_if: gtype & 1 == 0,
        };
        let size = if gate32 { 4 } else { 2 };
        let flags = self.flags.rflags();
        let old_cs = u64::from(self.seg[Seg::Cs as usize].selector);
        let mut vals = [0u64; 10];
        let mut n = 0;
        let mut put = |v: u64| {
            vals[n] = v;
            n += 1;
        };
        if inner {
            let (ss_sel, sp) = self.tss_stack_legacy(cs.dpl, ext)?;
            let (ssd, ss_raw) = self.check_stack_seg(ss_sel, cs.dpl, false, ext)?;
            if vm86 {
                for s in [Seg::Gs, Seg::Fs, Seg::Ds, Seg::Es] {
                    put(u64::from(self.seg[s as usize].selector));
                }
            }
            put(u64::from(self.seg[Seg::Ss as usize].selector));
            put(self.gpr[reg::RSP]);
            put(flags);
            put(old_cs);
            put(ret);
            if let Some(e) = ec {
                put(u64::from(e));
            }
            let st = StackTarget {
                ss: ssd,
                sp,
                bits: if ssd.db { 32 } else { 16 },
                sys: cs.dpl < 3,
                fault: ss_fault(sel_code(ss_sel, ext)),
            };
            let new_sp = self.push_frame(&st, size, &vals[..n])?;
            self.set_accessed(ss_sel, ss_raw)?;
            self.set_accessed(sel, t.cs_raw)?;
            self.seg[Seg::Ss as usize] = ssd;
            self.gpr[reg::RSP] = st.merge(self.gpr[reg::RSP], new_sp);
            if vm86 {
                for s in [Seg::Gs, Seg::Fs, Seg::Ds, Seg::Es] {
                    self.seg[s as usize] = null_seg(0, 0);
                }
            }
        } else {
            put(flags);
            put(old_cs);
            put(ret);
            if let Some(e) = ec {
                put(u64::from(e));
            }
            let mut st = self.current_stack();
            st.fault = ss_fault(u32::from(ext));
            let new_sp = self.push_frame(&st, size, &vals[..n])?;
            self.set_accessed(sel, t.cs_raw)?;
            self.set_sp(new_sp);
        }
        self.enter_target(t, sel);
        Ok(())
    }

    fn deliver_long(&mut self, vector: u8, ec: Option<u32>, kind: EventKind, ret: u64) -> Res {
        let ext = kind != EventKind::Software;
        let idt_code = u32::from(vector) * 8 + 2 + u32::from(ext);
        let off = u64::from(vector) * 16;
        if off + 15 > u64::from(self.idtr.limit) {
            return Err(gp(idt_code));
        }
        let base = self.idtr.base.wrapping_add(off);
        let lo = self.read_lin(base, 8, true)?;
        let hi = self.read_lin(base.wrapping_add(8), 8, true)?;
        let gtype = ((lo >> 40) & 0x1f) as u8;
        if !matches!(gtype, 0xe | 0xf) {
            return Err(gp(idt_code));
        }
        let gdpl = ((lo >> 45) & 3) as u8;
        if kind == EventKind::Software && gdpl < self.cpl {
            return Err(gp(u32::from(vector) * 8 + 2));
        }
        if lo & (1 << 47) == 0 {
            return Err(np(idt_code));
        }
        let sel = (lo >> 16) as u16;
        let rip = (lo & 0xffff) | ((lo >> 32) & 0xffff_0000) | (hi << 32);
        let (cs, cs_raw) = self.gate_code_segment(sel, ext)?;
        if !cs.l || cs.db {
            return Err(gp(sel_code(sel, ext)));
        }
        let inner = !is_conforming(&cs) && cs.dpl < self.cpl;
        let new_cpl = if inner { cs.dpl } else { self.cpl };
        let ist = (lo >> 32) & 7;
        let rsp = if ist != 0 {
            self.tss_read64(0x24 + 8 * (ist - 1), ext)?
        } else if inner {
            self.tss_read64(4 + 8 * u64::from(cs.dpl), ext)?
        } else {
            self.gpr[reg::RSP]
        } & !0xf;
        if !canonical(rip) {
            return Err(gp(u32::from(ext)));
        }
        let mut vals = [
            u64::from(self.seg[Seg::Ss as usize].selector),
            self.gpr[reg::RSP],
            self.flags.rflags(),
            u64::from(self.seg[Seg::Cs as usize].selector),
            ret,
            0,
        ];
        let n = match ec {
            Some(e) => {
                vals[5] = u64::from(e);
                6
            }
            None => 5,
        };
        let st = StackTarget {
            ss: self.seg[Seg::Ss as usize],
            sp: rsp,
            bits: 64,
            sys: new_cpl < 3,
            fault: ss_fault(u32::from(ext)),
        };
        let new_sp = self.push_frame(&st, 8, &vals[..n])?;
        self.set_accessed(sel, cs_raw)?;
        if inner {
            self.seg[Seg::Ss as usize] = null_seg(u16::from(new_cpl), new_cpl);
        }
        self.gpr[reg::RSP] = new_sp;
        self.enter_target(
            Target {
                cs,
                cs_raw,
                rip,
                new_cpl,
                clear_if: gtype & 1 == 0,
            },
            sel,
        );
        Ok(())
    }

    /// Commit the code segment, CPL, RIP and the flags an interrupt/trap gate clears.
    fn enter_target(&mut self, t: Target, sel: u16) {
        self.seg[Seg::Cs as usize] = kite_hypervisor::Segment {
            selector: (sel & 0xfffc) | u16::from(t.new_cpl),
            ..t.cs
        };
        self.cpl = t.new_cpl;
        self.flags.set(
            x86::RFLAGS_TF | x86::RFLAGS_NT | x86::RFLAGS_RF | x86::RFLAGS_VM,
            false,
        );
        if t.clear_if {
            self.flags.set(x86::RFLAGS_IF, false);
        }
        self.rip = t.rip;
        self.branch_to(t.rip);
        self.update_mode();
    }
}

/// Deliver a software interrupt from an instruction handler: the frame
/// returns after the instruction, and execution continues in the handler.
fn software_interrupt(cpu: &mut Cpu, vector: u8, kind: EventKind) -> Res {
    let ret = cpu.next_rip;
    cpu.deliver_returning_to(vector, None, kind, ret)?;
    cpu.branch_to(cpu.rip);
    Ok(())
}

/// INT imm8.
pub(super) fn int_n(cpu: &mut Cpu, ins: &Instruction) -> Res {
    if cpu.mode == Mode::Vm86 && cpu.iopl() < 3 {
        return Err(gp0());
    }
    software_interrupt(cpu, ins.immediate8(), EventKind::Software)
}

/// INT3.
pub(super) fn int3(cpu: &mut Cpu, _: &Instruction) -> Res {
    software_interrupt(cpu, x86::BP, EventKind::Software)
}

/// INTO: #OF if OF is set.
pub(super) fn into(cpu: &mut Cpu, _: &Instruction) -> Res {
    if cpu.flags.of() {
        software_interrupt(cpu, x86::OF, EventKind::Software)
    } else {
        Ok(())
    }
}

/// INT1 (ICEBP): a #DB trap delivered as a hardware exception (no gate DPL check).
pub(super) fn int1(cpu: &mut Cpu, _: &Instruction) -> Res {
    software_interrupt(cpu, x86::DB, EventKind::Exception)
}

impl Cpu {
    /// The single-step trap (SDM vol 3, 17.3.1.4): the execution loop calls
    /// this after an instruction that began with RFLAGS.TF set completes.
    /// DR6.BS is set and #DB is delivered with the frame returning to the
    /// next instruction (`rip`, already advanced).
    pub fn single_step_trap(&mut self) -> Res {
        self.dr[6] |= 1 << 14;
        let ret = self.rip;
        self.deliver_returning_to(x86::DB, None, EventKind::Exception, ret)
    }

    /// RFLAGS.IOPL.
    #[inline]
    pub fn iopl(&self) -> u8 {
        ((self.flags.rflags() >> 12) & 3) as u8
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use kite_hypervisor::MemoryRegion;

    use super::*;
    use crate::memory::PhysMemory;

    #[test]
    fn single_step_trap_delivers_db_after_the_instruction() {
        let mut buf = vec![0u8; 0x10000];
        buf[4..8].copy_from_slice(&0x0000_5000u32.to_le_bytes()); // IVT[1] = 0000:5000
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
        c.seg[Seg::Cs as usize] = kite_hypervisor::Segment::real_mode(0, true);
        c.update_mode();
        c.rip = 0x1234;
        c.gpr[reg::RSP] = 0x8000;
        c.flags.set(x86::RFLAGS_TF, true);
        c.single_step_trap().unwrap();
        assert_eq!(c.rip, 0x5000);
        assert_ne!(c.dr[6] & (1 << 14), 0);
        assert!(!c.flags.get(x86::RFLAGS_TF));
        assert_eq!(c.gpr[reg::RSP], 0x8000 - 6);
        assert_eq!(c.read_lin(0x8000 - 6, 2, true), Ok(0x1234));
        drop(c);
        drop(buf);
    }
}
