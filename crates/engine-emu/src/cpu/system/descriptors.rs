//! Descriptor-table instructions: LGDT/LIDT/SGDT/SIDT, LLDT/SLDT, LTR/STR
//! (TSS busy bit), and the descriptor probes LAR/LSL/VERR/VERW and ARPL.

use iced_x86::{Code, Instruction, OpKind};
use kite_hypervisor::{x86, DescriptorTable, Segment};

use super::super::access::canonical;
use super::super::{gp, gp0, ud, Cpu, Mode, Res};
use super::control_regs::require_cpl0;
use super::segments::{is_code, is_conforming, np, null_seg, seg_from_desc, sel_code};

/// Instructions that only exist in protected mode (#UD in real mode and VM86).
fn require_protected(cpu: &Cpu) -> Res {
    if matches!(cpu.mode, Mode::Real | Mode::Vm86) {
        return Err(ud());
    }
    Ok(())
}

fn load_table(cpu: &mut Cpu, ins: &Instruction) -> Res<DescriptorTable> {
    require_cpl0(cpu)?;
    if ins.op_kind(0) != OpKind::Memory {
        return Err(ud());
    }
    let seg = cpu.mem_seg(ins);
    let ea = cpu.ea(ins);
    let limit = cpu.read_mem(seg, ea, 2)? as u16;
    let mut base = if cpu.mode == Mode::Long {
        cpu.read_mem(seg, ea.wrapping_add(2), 8)?
    } else {
        cpu.read_mem(seg, ea.wrapping_add(2), 4)?
    };
    if matches!(ins.code(), Code::Lgdt_m1632_16 | Code::Lidt_m1632_16) {
        base &= 0xff_ffff;
    }
    if cpu.mode == Mode::Long && !canonical(base) {
        return Err(gp0());
    }
    cpu.end_block = true;
    Ok(DescriptorTable { base, limit })
}

pub(super) fn lgdt(cpu: &mut Cpu, ins: &Instruction) -> Res {
    cpu.gdtr = load_table(cpu, ins)?;
    Ok(())
}

pub(super) fn lidt(cpu: &mut Cpu, ins: &Instruction) -> Res {
    cpu.idtr = load_table(cpu, ins)?;
    Ok(())
}

fn store_table(cpu: &mut Cpu, ins: &Instruction, t: DescriptorTable) -> Res {
    if ins.op_kind(0) != OpKind::Memory {
        return Err(ud());
    }
    let mut b = [0u8; 10];
    b[..2].copy_from_slice(&t.limit.to_le_bytes());
    b[2..].copy_from_slice(&t.base.to_le_bytes());
    let n = if cpu.mode == Mode::Long { 10 } else { 6 };
    let seg = cpu.mem_seg(ins);
    let ea = cpu.ea(ins);
    cpu.write_mem_bytes(seg, ea, &b[..n])
}

pub(super) fn sgdt(cpu: &mut Cpu, ins: &Instruction) -> Res {
    let t = cpu.gdtr;
    store_table(cpu, ins, t)
}

pub(super) fn sidt(cpu: &mut Cpu, ins: &Instruction) -> Res {
    let t = cpu.idtr;
    store_table(cpu, ins, t)
}

impl Cpu {
    /// Read a system descriptor from the GDT for LLDT/LTR (16 bytes in long
    /// mode): the cache with the full base, and its linear address.
    fn system_desc(&mut self, sel: u16) -> Res<(Segment, u64)> {
        if sel & 4 != 0 {
            return Err(gp(sel_code(sel, false)));
        }
        let long = self.long_mode_active();
        let size = if long { 16 } else { 8 };
        let lin = match self.desc_addr(sel, size) {
            Some(l) => l,
            None => return Err(gp(sel_code(sel, false))),
        };
        let raw = self.read_lin(lin, 8, true)?;
        let mut d = seg_from_desc(sel, raw);
        if long {
            let hi = self.read_lin(lin.wrapping_add(8), 8, true)?;
            d.base |= hi << 32;
            if !canonical(d.base) || (hi >> 40) & 0x1f != 0 {
                return Err(gp(sel_code(sel, false)));
            }
        }
        Ok((d, lin))
    }
}

pub(super) fn lldt(cpu: &mut Cpu, ins: &Instruction) -> Res {
    require_protected(cpu)?;
    require_cpl0(cpu)?;
    let sel = cpu.read_op(ins, 0)? as u16;
    if sel & 0xfffc == 0 {
        cpu.ldtr = null_seg(sel, 0);
        cpu.end_block = true;
        return Ok(());
    }
    let (d, _) = cpu.system_desc(sel)?;
    if d.s || d.type_ != 0x2 {
        return Err(gp(sel_code(sel, false)));
    }
    if !d.present {
        return Err(np(sel_code(sel, false)));
    }
    cpu.ldtr = d;
    cpu.end_block = true;
    Ok(())
}

pub(super) fn ltr(cpu: &mut Cpu, ins: &Instruction) -> Res {
    require_protected(cpu)?;
    require_cpl0(cpu)?;
    let sel = cpu.read_op(ins, 0)? as u16;
    if sel & 0xfffc == 0 {
        return Err(gp0());
    }
    let (mut d, lin) = cpu.system_desc(sel)?;
    let ok = !d.s && (d.type_ == 0x9 || (d.type_ == 0x1 && !cpu.long_mode_active()));
    if !ok {
        return Err(gp(sel_code(sel, false)));
    }
    if !d.present {
        return Err(np(sel_code(sel, false)));
    }
    // Mark the TSS busy in the GDT.
    d.type_ |= 0x2;
    let b = u64::from(d.type_) | (u64::from(d.dpl) << 5) | 0x80;
    cpu.write_lin(lin.wrapping_add(5), 1, b, true)?;
    cpu.tr = d;
    cpu.end_block = true;
    Ok(())
}

pub(super) fn sldt(cpu: &mut Cpu, ins: &Instruction) -> Res {
    require_protected(cpu)?;
    let sel = u64::from(cpu.ldtr.selector);
    cpu.write_op(ins, 0, sel)
}

pub(super) fn str_(cpu: &mut Cpu, ins: &Instruction) -> Res {
    require_protected(cpu)?;
    let sel = u64::from(cpu.tr.selector);
    cpu.write_op(ins, 0, sel)
}

/// Which probe is asking (they accept different descriptor types).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Probe {
    Lar,
    Lsl,
    Verr,
    Verw,
}

impl Cpu {
    /// The descriptor of `sel` if `probe` may see it from the current CPL.
    fn probe_desc(&mut self, sel: u16, probe: Probe) -> Res<Option<(Segment, u64)>> {
        if sel & 0xfffc == 0 {
            return Ok(None);
        }
        let raw = match self.read_desc(sel)? {
            Some(r) => r,
            None => return Ok(None),
        };
        let d = seg_from_desc(sel, raw);
        let long = self.long_mode_active();
        let type_ok = if !d.s {
            match probe {
                Probe::Lar if long => matches!(d.type_, 2 | 9 | 0xb | 0xc),
                Probe::Lar => matches!(d.type_, 1 | 2 | 3 | 4 | 5 | 9 | 0xb | 0xc),
                Probe::Lsl if long => matches!(d.type_, 2 | 9 | 0xb),
                Probe::Lsl => matches!(d.type_, 1 | 2 | 3 | 9 | 0xb),
                _ => false,
            }
        } else {
            match probe {
                Probe::Verr => !is_code(&d) || d.type_ & 0x2 != 0,
                Probe::Verw => !is_code(&d) && d.type_ & 0x2 != 0,
                _ => true,
            }
        };
        if !type_ok {
            return Ok(None);
        }
        let rpl = (sel & 3) as u8;
        if !is_conforming(&d) && (d.dpl < self.cpl || d.dpl < rpl) {
            return Ok(None);
        }
        Ok(Some((d, raw)))
    }
}

pub(super) fn lar(cpu: &mut Cpu, ins: &Instruction) -> Res {
    require_protected(cpu)?;
    let sel = cpu.read_op(ins, 1)? as u16;
    let r = cpu.probe_desc(sel, Probe::Lar)?;
    if let Some((_, raw)) = r {
        let mask = if ins.op0_register().size() == 2 {
            0xff00
        } else {
            0x00f0_ff00
        };
        cpu.reg_write(ins.op0_register(), (raw >> 32) & mask);
    }
    cpu.flags.set(x86::RFLAGS_ZF, r.is_some());
    Ok(())
}

pub(super) fn lsl(cpu: &mut Cpu, ins: &Instruction) -> Res {
    require_protected(cpu)?;
    let sel = cpu.read_op(ins, 1)? as u16;
    let r = cpu.probe_desc(sel, Probe::Lsl)?;
    if let Some((d, _)) = r {
        cpu.reg_write(ins.op0_register(), u64::from(d.limit));
    }
    cpu.flags.set(x86::RFLAGS_ZF, r.is_some());
    Ok(())
}

fn verify(cpu: &mut Cpu, ins: &Instruction, probe: Probe) -> Res {
    require_protected(cpu)?;
    let sel = cpu.read_op(ins, 0)? as u16;
    let ok = cpu.probe_desc(sel, probe)?.is_some();
    cpu.flags.set(x86::RFLAGS_ZF, ok);
    Ok(())
}

pub(super) fn verr(cpu: &mut Cpu, ins: &Instruction) -> Res {
    verify(cpu, ins, Probe::Verr)
}

pub(super) fn verw(cpu: &mut Cpu, ins: &Instruction) -> Res {
    verify(cpu, ins, Probe::Verw)
}

/// ARPL r/m16, r16: raise the destination selector's RPL to the source's.
pub(super) fn arpl(cpu: &mut Cpu, ins: &Instruction) -> Res {
    require_protected(cpu)?;
    let dest = cpu.read_op(ins, 0)?;
    let src = cpu.reg_read(ins.op1_register());
    let adjust = dest & 3 < src & 3;
    if adjust {
        let v = (dest & !3) | (src & 3);
        if ins.op_kind(0) == OpKind::Memory {
            let seg = cpu.mem_seg(ins);
            let ea = cpu.ea(ins);
            cpu.write_mem(seg, ea, 2, v & 0xffff)?;
        } else {
            cpu.reg_write(ins.op0_register(), v);
        }
    }
    cpu.flags.set(x86::RFLAGS_ZF, adjust);
    Ok(())
}
