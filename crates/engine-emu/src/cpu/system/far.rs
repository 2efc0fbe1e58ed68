//! Far JMP, far CALL and far RET (RETF, RETF imm16): real mode and VM86,
//! protected mode to code segments, call gates (16/32-bit with the stack
//! switch and parameter copy, 64-bit in long mode), task gates and TSSs.

use iced_x86::{Code, Instruction};
use kite_hypervisor::Segment;

use super::super::access::canonical;
use super::super::{gp, gp0, reg, Cpu, Mode, Res, Seg};
use super::segments::{
    is_code, is_conforming, np, null_seg, seg_from_desc, sel_code, ss_fault, StackTarget,
};

/// The selector, offset and operand size (2, 4, 8) of a far JMP/CALL.
fn far_operand(cpu: &mut Cpu, ins: &Instruction) -> Res<(u16, u64, u32)> {
    let size = match ins.code() {
        Code::Jmp_ptr1616 | Code::Call_ptr1616 => {
            return Ok((ins.far_branch_selector(), u64::from(ins.far_branch16()), 2))
        }
        Code::Jmp_ptr1632 | Code::Call_ptr1632 => {
            return Ok((ins.far_branch_selector(), u64::from(ins.far_branch32()), 4))
        }
        Code::Jmp_m1616 | Code::Call_m1616 => 2,
        Code::Jmp_m1632 | Code::Call_m1632 => 4,
        _ => 8,
    };
    let seg = cpu.mem_seg(ins);
    let ea = cpu.ea(ins);
    let off = cpu.read_mem(seg, ea, size)?;
    let sel = cpu.read_mem(seg, ea.wrapping_add(u64::from(size)), 2)? as u16;
    Ok((sel, off, size))
}

fn mask(size: u32) -> u64 {
    match size {
        2 => 0xffff,
        4 => 0xffff_ffff,
        _ => u64::MAX,
    }
}

/// Load CS the real-mode/VM86 way.
fn load_cs_real(cpu: &mut Cpu, sel: u16) {
    if cpu.mode == Mode::Vm86 {
        cpu.seg[Seg::Cs as usize] = super::segments::vm86_seg(sel, true);
    } else {
        let c = &mut cpu.seg[Seg::Cs as usize];
        c.selector = sel;
        c.base = u64::from(sel) << 4;
    }
}

/// A checked far-transfer target in protected mode.
struct CodeTarget {
    cs: Segment,
    raw: u64,
    rip: u64,
}

impl Cpu {
    /// Check `rip` against the target code segment (limit, or canonical in 64-bit code).
    fn check_target_rip(&self, cs: &Segment, rip: u64) -> Res {
        if self.long_mode_active() && cs.l {
            if !canonical(rip) {
                return Err(gp0());
            }
        } else if rip > u64::from(cs.limit) {
            return Err(gp0());
        }
        Ok(())
    }

    /// Checks of a direct far JMP/CALL to a code segment at the same privilege.
    fn direct_code_target(&mut self, sel: u16, raw: u64, rip: u64) -> Res<CodeTarget> {
        let cs = seg_from_desc(sel, raw);
        let rpl = (sel & 3) as u8;
        let ok = if is_conforming(&cs) {
            cs.dpl <= self.cpl
        } else {
            rpl <= self.cpl && cs.dpl == self.cpl
        };
        if !ok || (self.long_mode_active() && cs.l && cs.db) {
            return Err(gp(sel_code(sel, false)));
        }
        if !cs.present {
            return Err(np(sel_code(sel, false)));
        }
        self.check_target_rip(&cs, rip)?;
        Ok(CodeTarget {
            cs: Segment {
                selector: (sel & 0xfffc) | u16::from(self.cpl),
                ..cs
            },
            raw,
            rip,
        })
    }

    /// Commit a far transfer at the current privilege level.
    fn commit_cs(&mut self, t: CodeTarget) -> Res {
        self.set_accessed(t.cs.selector, t.raw)?;
        self.seg[Seg::Cs as usize] = t.cs;
        self.branch_to(t.rip);
        self.update_mode();
        self.end_block = true;
        Ok(())
    }

    /// Read a call gate (8 bytes, or 16 in long mode) and its target code
    /// segment. Returns (gate type, target selector, target offset,
    /// parameter count, target cache, target raw descriptor).
    fn call_gate(&mut self, sel: u16, raw: u64, call: bool) -> Res<(u8, Segment, u64, u64, u32)> {
        let gtype = ((raw >> 40) & 0xf) as u8;
        let gdpl = ((raw >> 45) & 3) as u8;
        let rpl = (sel & 3) as u8;
        if gdpl < self.cpl || gdpl < rpl {
            return Err(gp(sel_code(sel, false)));
        }
        if raw & (1 << 47) == 0 {
            return Err(np(sel_code(sel, false)));
        }
        let mut off = (raw & 0xffff) | ((raw >> 32) & 0xffff_0000);
        if self.long_mode_active() {
            let hi = match self.read_desc16(sel)? {
                Some((_, hi)) => hi,
                None => return Err(gp(sel_code(sel, false))),
            };
            if (hi >> 40) & 0x1f != 0 {
                return Err(gp(sel_code(sel, false)));
            }
            off |= hi << 32;
        } else if gtype == 0x4 {
            off &= 0xffff;
        }
        let tsel = (raw >> 16) as u16;
        if tsel & 0xfffc == 0 {
            return Err(gp0());
        }
        let traw = match self.read_desc(tsel)? {
            Some(r) => r,
            None => return Err(gp(sel_code(tsel, false))),
        };
        let td = seg_from_desc(tsel, traw);
        let ok = is_code(&td)
            && if is_conforming(&td) || call {
                td.dpl <= self.cpl
            } else {
                td.dpl == self.cpl
            };
        if !ok || (self.long_mode_active() && (!td.l || td.db)) {
            return Err(gp(sel_code(tsel, false)));
        }
        if !td.present {
            return Err(np(sel_code(tsel, false)));
        }
        Ok((gtype, td, traw, off, ((raw >> 32) & 0x1f) as u32))
    }
}

/// Far JMP.
pub(super) fn jmp_far(cpu: &mut Cpu, ins: &Instruction) -> Res {
    let (sel, off, size) = far_operand(cpu, ins)?;
    if matches!(cpu.mode, Mode::Real | Mode::Vm86) {
        load_cs_real(cpu, sel);
        cpu.branch_to(off & mask(size));
        cpu.update_mode();
        cpu.end_block = true;
        return Ok(());
    }
    let off = off & mask(size);
    if sel & 0xfffc == 0 {
        return Err(gp0());
    }
    let raw = match cpu.read_desc(sel)? {
        Some(r) => r,
        None => return Err(gp(sel_code(sel, false))),
    };
    if raw & (1 << 44) != 0 {
        if raw & (1 << 43) == 0 {
            return Err(gp(sel_code(sel, false)));
        }
        let t = cpu.direct_code_target(sel, raw, off)?;
        return cpu.commit_cs(t);
    }
    let stype = ((raw >> 40) & 0xf) as u8;
    let long = cpu.long_mode_active();
    match stype {
        0xc | 0x4 => {
            if long && stype != 0xc {
                return Err(gp(sel_code(sel, false)));
            }
            let (_, td, traw, toff, _) = cpu.call_gate(sel, raw, false)?;
            cpu.check_target_rip(&td, toff)?;
            let t = CodeTarget {
                cs: Segment {
                    selector: (td.selector & 0xfffc) | u16::from(cpu.cpl),
                    ..td
                },
                raw: traw,
                rip: toff,
            };
            cpu.commit_cs(t)
        }
        0x5 | 0x1 | 0x9 if !long => cpu.task_switch_far(sel, raw, false),
        _ => Err(gp(sel_code(sel, false))),
    }
}

/// Far CALL.
pub(super) fn call_far(cpu: &mut Cpu, ins: &Instruction) -> Res {
    let (sel, off, size) = far_operand(cpu, ins)?;
    let old_cs = u64::from(cpu.seg[Seg::Cs as usize].selector);
    let ret = cpu.next_rip;
    if matches!(cpu.mode, Mode::Real | Mode::Vm86) {
        let st = cpu.current_stack();
        let sp = cpu.push_frame(&st, size, &[old_cs, ret])?;
        cpu.set_sp(sp);
        load_cs_real(cpu, sel);
        cpu.branch_to(off & mask(size));
        cpu.update_mode();
        cpu.end_block = true;
        return Ok(());
    }
    let off = off & mask(size);
    if sel & 0xfffc == 0 {
        return Err(gp0());
    }
    let raw = match cpu.read_desc(sel)? {
        Some(r) => r,
        None => return Err(gp(sel_code(sel, false))),
    };
    if raw & (1 << 44) != 0 {
        if raw & (1 << 43) == 0 {
            return Err(gp(sel_code(sel, false)));
        }
        let t = cpu.direct_code_target(sel, raw, off)?;
        let st = cpu.current_stack();
        let sp = cpu.push_frame(&st, size, &[old_cs, ret])?;
        cpu.commit_cs(t)?;
        cpu.set_sp(sp);
        return Ok(());
    }
    let stype = ((raw >> 40) & 0xf) as u8;
    let long = cpu.long_mode_active();
    match stype {
        0xc | 0x4 => {
            if long && stype != 0xc {
                return Err(gp(sel_code(sel, false)));
            }
            call_gate(cpu, sel, raw, old_cs, ret)
        }
        0x5 | 0x1 | 0x9 if !long => cpu.task_switch_far(sel, raw, true),
        _ => Err(gp(sel_code(sel, false))),
    }
}

/// CALL through a call gate, with a stack switch to an inner level.
fn call_gate(cpu: &mut Cpu, sel: u16, raw: u64, old_cs: u64, ret: u64) -> Res {
    let (gtype, td, traw, toff, params) = cpu.call_gate(sel, raw, true)?;
    cpu.check_target_rip(&td, toff)?;
    let long = cpu.long_mode_active();
    let gsize: u32 = if long {
        8
    } else if gtype == 0xc {
        4
    } else {
        2
    };
    let inner = !is_conforming(&td) && td.dpl < cpu.cpl;
    let new_cpl = if inner { td.dpl } else { cpu.cpl };
    let target = Segment {
        selector: (td.selector & 0xfffc) | u16::from(new_cpl),
        ..td
    };
    if !inner {
        let st = cpu.current_stack();
        let sp = cpu.push_frame(&st, gsize, &[old_cs, ret])?;
        cpu.commit_cs(CodeTarget {
            cs: target,
            raw: traw,
            rip: toff,
        })?;
        cpu.set_sp(sp);
        return Ok(());
    }
    let old_ss = u64::from(cpu.seg[Seg::Ss as usize].selector);
    let old_sp = cpu.gpr[reg::RSP];
    let mut vals = vec![old_ss, old_sp];
    let (st, new_ss) = if long {
        let rsp = cpu.tss_read64(4 + 8 * u64::from(new_cpl), false)?;
        let st = StackTarget {
            ss: cpu.seg[Seg::Ss as usize],
            sp: rsp,
            bits: 64,
            sys: new_cpl < 3,
            fault: ss_fault(0),
        };
        (st, (null_seg(u16::from(new_cpl), new_cpl), None))
    } else {
        let (ss_sel, sp) = cpu.tss_stack_legacy(new_cpl, false)?;
        let (ssd, ss_raw) = cpu.check_stack_seg(ss_sel, new_cpl, false, false)?;
        // Parameters, deepest first, so they keep their order.
        for i in (0..params).rev() {
            vals.push(cpu.stack_peek(u64::from(i * gsize), gsize)?);
        }
        let st = StackTarget {
            ss: ssd,
            sp,
            bits: if ssd.db { 32 } else { 16 },
            sys: new_cpl < 3,
            fault: ss_fault(sel_code(ss_sel, false)),
        };
        (st, (ssd, Some((ss_sel, ss_raw))))
    };
    vals.push(old_cs);
    vals.push(ret);
    let sp = cpu.push_frame(&st, gsize, &vals)?;
    if let Some((s, r)) = new_ss.1 {
        cpu.set_accessed(s, r)?;
    }
    cpu.set_accessed(target.selector, traw)?;
    cpu.seg[Seg::Ss as usize] = new_ss.0;
    cpu.gpr[reg::RSP] = st.merge(old_sp, sp);
    cpu.seg[Seg::Cs as usize] = target;
    cpu.cpl = new_cpl;
    cpu.branch_to(toff);
    cpu.update_mode();
    cpu.end_block = true;
    Ok(())
}

/// RETF and RETF imm16.
pub(super) fn retf(cpu: &mut Cpu, ins: &Instruction) -> Res {
    let size: u32 = match ins.code() {
        Code::Retfw | Code::Retfw_imm16 => 2,
        Code::Retfd | Code::Retfd_imm16 => 4,
        _ => 8,
    };
    let imm = match ins.code() {
        Code::Retfw_imm16 | Code::Retfd_imm16 | Code::Retfq_imm16 => u64::from(ins.immediate16()),
        _ => 0,
    };
    let sz = u64::from(size);
    let ip = cpu.stack_peek(0, size)? & mask(size);
    let sel = cpu.stack_peek(sz, size)? as u16;
    if matches!(cpu.mode, Mode::Real | Mode::Vm86) {
        if ip > 0xffff {
            return Err(gp0());
        }
        let sp = cpu.gpr[reg::RSP].wrapping_add(2 * sz + imm);
        cpu.set_sp(sp);
        load_cs_real(cpu, sel);
        cpu.branch_to(ip);
        cpu.update_mode();
        cpu.end_block = true;
        return Ok(());
    }
    if sel & 0xfffc == 0 {
        return Err(gp0());
    }
    let raw = match cpu.read_desc(sel)? {
        Some(r) => r,
        None => return Err(gp(sel_code(sel, false))),
    };
    let cs = seg_from_desc(sel, raw);
    let rpl = (sel & 3) as u8;
    let long = cpu.long_mode_active();
    let bad = !is_code(&cs)
        || rpl < cpu.cpl
        || (is_conforming(&cs) && cs.dpl > rpl)
        || (!is_conforming(&cs) && cs.dpl != rpl)
        || (long && cs.l && cs.db);
    if bad {
        return Err(gp(sel_code(sel, false)));
    }
    if !cs.present {
        return Err(np(sel_code(sel, false)));
    }
    cpu.check_target_rip(&cs, ip)?;
    if rpl == cpu.cpl {
        let sp = cpu.gpr[reg::RSP].wrapping_add(2 * sz + imm);
        cpu.commit_cs(CodeTarget { cs, raw, rip: ip })?;
        cpu.set_sp(sp);
        return Ok(());
    }
    // Return to an outer privilege level: SS:ESP follow the parameters.
    let rsp = cpu.stack_peek(2 * sz + imm, size)?;
    let ss_sel = cpu.stack_peek(3 * sz + imm, size)? as u16;
    let (ssd, ss_raw) = if ss_sel & 0xfffc == 0 {
        if !(long && cs.l && rpl < 3) {
            return Err(gp0());
        }
        (null_seg(ss_sel, rpl), None)
    } else {
        let (d, r) = cpu.check_stack_seg(ss_sel, rpl, true, false)?;
        (d, Some(r))
    };
    if let Some(r) = ss_raw {
        cpu.set_accessed(ss_sel, r)?;
    }
    cpu.set_accessed(sel, raw)?;
    let rsp = rsp.wrapping_add(imm);
    cpu.gpr[reg::RSP] = if size == 8 || (long && cs.l) {
        rsp
    } else if ssd.db {
        rsp & 0xffff_ffff
    } else {
        (cpu.gpr[reg::RSP] & !0xffff) | (rsp & 0xffff)
    };
    cpu.seg[Seg::Ss as usize] = ssd;
    cpu.seg[Seg::Cs as usize] = cs;
    cpu.cpl = rpl;
    cpu.branch_to(ip);
    cpu.null_inaccessible_data_segs();
    cpu.update_mode();
    cpu.end_block = true;
    Ok(())
}
