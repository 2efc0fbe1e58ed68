//! Small system instructions: CLI/STI (IOPL checks), CPUID, UD2, and MOV
//! to/from segment registers (through `load_segment`).

use iced_x86::{Instruction, OpKind};
use kite_hypervisor::x86;

use super::super::{gp0, reg, ud, Cpu, Mode, Res, Seg};

/// May the current code change IF? (No VME/PVI: IOPL decides.)
fn if_allowed(cpu: &Cpu) -> Res {
    match cpu.mode {
        Mode::Real => Ok(()),
        Mode::Vm86 if cpu.iopl() == 3 => Ok(()),
        Mode::Protected | Mode::Long if cpu.cpl <= cpu.iopl() => Ok(()),
        _ => Err(gp0()),
    }
}

pub(super) fn cli(cpu: &mut Cpu, _: &Instruction) -> Res {
    if_allowed(cpu)?;
    cpu.flags.set(x86::RFLAGS_IF, false);
    cpu.end_block = true;
    Ok(())
}

pub(super) fn sti(cpu: &mut Cpu, _: &Instruction) -> Res {
    if_allowed(cpu)?;
    if !cpu.flags.if_() {
        cpu.interrupt_shadow = true;
    }
    cpu.flags.set(x86::RFLAGS_IF, true);
    cpu.end_block = true;
    Ok(())
}

pub(super) fn cpuid(cpu: &mut Cpu, _: &Instruction) -> Res {
    let r = cpu.cpuid_query(cpu.gpr[reg::RAX] as u32, cpu.gpr[reg::RCX] as u32);
    cpu.gpr[reg::RAX] = u64::from(r[0]);
    cpu.gpr[reg::RBX] = u64::from(r[1]);
    cpu.gpr[reg::RCX] = u64::from(r[2]);
    cpu.gpr[reg::RDX] = u64::from(r[3]);
    Ok(())
}

pub(super) fn ud2(_: &mut Cpu, _: &Instruction) -> Res {
    Err(ud())
}

/// MOV Sreg, r/m16.
pub(super) fn mov_to_sreg(cpu: &mut Cpu, ins: &Instruction) -> Res {
    let seg = Seg::from_iced(ins.op0_register()).ok_or_else(ud)?;
    if seg == Seg::Cs {
        return Err(ud());
    }
    let sel = cpu.read_op(ins, 1)? as u16;
    cpu.load_segment(seg, sel)?;
    if seg == Seg::Ss {
        cpu.interrupt_shadow = true;
    }
    cpu.end_block = true;
    Ok(())
}

/// MOV r/m16, Sreg (a register destination is zero-extended).
pub(super) fn mov_from_sreg(cpu: &mut Cpu, ins: &Instruction) -> Res {
    let seg = Seg::from_iced(ins.op1_register()).ok_or_else(ud)?;
    let sel = u64::from(cpu.seg[seg as usize].selector);
    if ins.op_kind(0) == OpKind::Memory {
        let s = cpu.mem_seg(ins);
        let ea = cpu.ea(ins);
        cpu.write_mem(s, ea, 2, sel)
    } else {
        cpu.reg_write(ins.op0_register(), sel);
        Ok(())
    }
}
