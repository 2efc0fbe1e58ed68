//! IRET/IRETD/IRETQ in every mode: real mode and VM86 (IOPL 3), protected
//! mode to the same or an outer privilege level, back into VM86, 64-bit
//! IRETQ (always pops SS:RSP), and nested-task returns.

use iced_x86::{Code, Instruction};
use kite_hypervisor::x86;

use super::super::access::canonical;
use super::super::{gp, gp0, reg, Cpu, Mode, Res, Seg};
use super::segments::{is_code, is_conforming, np, null_seg, seg_from_desc, sel_code, vm86_seg};

/// Flags any IRET/POPF may change (CF PF AF ZF SF TF DF OF NT RF AC ID).
pub const IRET_FLAGS: u64 = 0x0025_4fd5;

pub(super) fn iret(cpu: &mut Cpu, ins: &Instruction) -> Res {
    let size = match ins.code() {
        Code::Iretw => 2,
        Code::Iretd => 4,
        _ => 8,
    };
    match cpu.mode {
        Mode::Real => iret_real(cpu, size, false),
        Mode::Vm86 => {
            if cpu.iopl() < 3 {
                return Err(gp0());
            }
            iret_real(cpu, size, true)
        }
        _ => iret_protected(cpu, size),
    }?;
    cpu.nmi_blocked = false;
    cpu.end_block = true;
    Ok(())
}

fn iret_real(cpu: &mut Cpu, size: u32, vm86: bool) -> Res {
    let ip = cpu.stack_peek(0, size)?;
    let cs = cpu.stack_peek(u64::from(size), size)? as u16;
    let fl = cpu.stack_peek(2 * u64::from(size), size)?;
    if ip > 0xffff {
        return Err(gp0());
    }
    let old = cpu.flags.rflags();
    let mut new = if size == 2 {
        (old & !0xffff) | fl
    } else {
        // VIP, VIF and VM are kept.
        (fl & 0x0025_7fd5) | (old & 0x001a_0000)
    };
    if vm86 {
        new = (new & !x86::RFLAGS_IOPL) | (old & x86::RFLAGS_IOPL);
    }
    let sp = cpu.gpr[reg::RSP].wrapping_add(3 * u64::from(size));
    cpu.set_sp(sp);
    if vm86 {
        cpu.seg[Seg::Cs as usize] = vm86_seg(cs, true);
    } else {
        let c = &mut cpu.seg[Seg::Cs as usize];
        c.selector = cs;
        c.base = u64::from(cs) << 4;
    }
    cpu.flags.set_rflags(new);
    cpu.branch_to(ip);
    cpu.update_mode();
    Ok(())
}

fn iret_protected(cpu: &mut Cpu, size: u32) -> Res {
    if cpu.flags.get(x86::RFLAGS_NT) {
        if cpu.long_mode_active() {
            return Err(gp0());
        }
        return cpu.task_return();
    }
    let sz = u64::from(size);
    let ip = cpu.stack_peek(0, size)?;
    let cs_sel = cpu.stack_peek(sz, size)? as u16;
    let old = cpu.flags.rflags();
    let mut fl = cpu.stack_peek(2 * sz, size)?;
    if size == 2 {
        fl |= old & !0xffff;
    }
    let long = cpu.long_mode_active();
    if fl & x86::RFLAGS_VM != 0 && cpu.cpl == 0 && !long && size == 4 {
        return iret_to_vm86(cpu, ip, cs_sel, fl);
    }
    if cs_sel & 0xfffc == 0 {
        return Err(gp0());
    }
    let raw = match cpu.read_desc(cs_sel)? {
        Some(r) => r,
        None => return Err(gp(sel_code(cs_sel, false))),
    };
    let cs = seg_from_desc(cs_sel, raw);
    let rpl = (cs_sel & 3) as u8;
    let bad = !is_code(&cs)
        || rpl < cpu.cpl
        || (is_conforming(&cs) && cs.dpl > rpl)
        || (!is_conforming(&cs) && cs.dpl != rpl)
        || (long && cs.l && cs.db);
    if bad {
        return Err(gp(sel_code(cs_sel, false)));
    }
    if !cs.present {
        return Err(np(sel_code(cs_sel, false)));
    }
    let to64 = long && cs.l;
    let outer = rpl > cpu.cpl;
    let pop_ss = outer || cpu.mode == Mode::Long;
    let mut ss = None;
    if pop_ss {
        let rsp = cpu.stack_peek(3 * sz, size)?;
        let ss_sel = cpu.stack_peek(4 * sz, size)? as u16;
        if ss_sel & 0xfffc == 0 {
            if !(to64 && rpl < 3) {
                return Err(gp0());
            }
            ss = Some((null_seg(ss_sel, rpl), None, rsp));
        } else {
            let (d, r) = cpu.check_stack_seg(ss_sel, rpl, true, false)?;
            ss = Some((d, Some((ss_sel, r)), rsp));
        }
    }
    let ip = match size {
        2 => ip & 0xffff,
        4 => ip & 0xffff_ffff,
        _ => ip,
    };
    if to64 {
        if !canonical(ip) {
            return Err(gp0());
        }
    } else if ip > u64::from(cs.limit) {
        return Err(gp0());
    }
    let mut mask = IRET_FLAGS;
    if cpu.cpl <= cpu.iopl() {
        mask |= x86::RFLAGS_IF;
    }
    if cpu.cpl == 0 {
        mask |= x86::RFLAGS_IOPL | x86::RFLAGS_VIF | x86::RFLAGS_VIP;
    }
    if size == 2 {
        mask &= 0xffff;
    }
    let new_flags = (old & !mask) | (fl & mask);
    cpu.set_accessed(cs_sel, raw)?;
    match ss {
        Some((d, sel_raw, rsp)) => {
            if let Some((s, r)) = sel_raw {
                cpu.set_accessed(s, r)?;
            }
            cpu.gpr[reg::RSP] = if size == 8 || to64 {
                rsp
            } else if d.db {
                rsp & 0xffff_ffff
            } else {
                (cpu.gpr[reg::RSP] & !0xffff) | (rsp & 0xffff)
            };
            cpu.seg[Seg::Ss as usize] = d;
        }
        None => {
            let sp = cpu.gpr[reg::RSP].wrapping_add(3 * sz);
            cpu.set_sp(sp);
        }
    }
    cpu.seg[Seg::Cs as usize] = cs;
    cpu.cpl = rpl;
    cpu.flags.set_rflags(new_flags);
    cpu.branch_to(ip);
    if outer {
        cpu.null_inaccessible_data_segs();
    }
    cpu.update_mode();
    Ok(())
}

/// IRETD at CPL 0 with VM set in the popped EFLAGS: enter virtual-8086 mode.
fn iret_to_vm86(cpu: &mut Cpu, ip: u64, cs: u16, fl: u64) -> Res {
    let mut v = [0u64; 6];
    for (i, slot) in v.iter_mut().enumerate() {
        *slot = cpu.stack_peek(12 + 4 * i as u64, 4)?;
    }
    let [esp, ss, es, ds, fs, gs] = v;
    cpu.flags.set_rflags(fl);
    cpu.seg[Seg::Cs as usize] = vm86_seg(cs, true);
    cpu.seg[Seg::Ss as usize] = vm86_seg(ss as u16, false);
    cpu.seg[Seg::Es as usize] = vm86_seg(es as u16, false);
    cpu.seg[Seg::Ds as usize] = vm86_seg(ds as u16, false);
    cpu.seg[Seg::Fs as usize] = vm86_seg(fs as u16, false);
    cpu.seg[Seg::Gs as usize] = vm86_seg(gs as u16, false);
    cpu.gpr[reg::RSP] = esp & 0xffff_ffff;
    cpu.branch_to(ip & 0xffff);
    cpu.update_mode();
    cpu.cpl = 3;
    Ok(())
}
