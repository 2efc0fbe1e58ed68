//! The general-purpose instruction set.

use iced_x86::{Instruction, Mnemonic};

use super::exec::Handler;
use super::{Cpu, Res};

/// The handler for a general-purpose instruction, if this group implements it.
pub fn handler(ins: &Instruction) -> Option<Handler> {
    Some(match ins.mnemonic() {
        Mnemonic::Nop => nop,
        // MOV to/from CR, DR and segment registers and far JMP are the system group's.
        Mnemonic::Mov
            if !(0..2).any(|i| {
                let r = ins.op_register(i);
                r.is_cr() || r.is_dr() || r.is_segment_register()
            }) =>
        {
            mov
        }
        Mnemonic::Add => add,
        Mnemonic::Jmp if !ins.is_jmp_far() && !ins.is_jmp_far_indirect() => jmp,
        Mnemonic::Out => out,
        Mnemonic::In => in_,
        Mnemonic::Hlt => hlt,
        _ => return None,
    })
}

fn nop(_: &mut Cpu, _: &Instruction) -> Res {
    Ok(())
}

fn mov(cpu: &mut Cpu, ins: &Instruction) -> Res {
    let v = cpu.read_op(ins, 1)?;
    cpu.write_op(ins, 0, v)
}

fn add(cpu: &mut Cpu, ins: &Instruction) -> Res {
    let bits = cpu.op_size(ins, 0) * 8;
    let a = cpu.read_op(ins, 0)?;
    let b = cpu.read_op(ins, 1)?;
    let r = a.wrapping_add(b);
    cpu.write_op(ins, 0, r)?;
    cpu.flags.set_add(a, b, false, r, bits);
    Ok(())
}

fn jmp(cpu: &mut Cpu, ins: &Instruction) -> Res {
    cpu.next_rip = cpu.branch_target(ins);
    Ok(())
}

fn port_of(cpu: &mut Cpu, ins: &Instruction, i: u32) -> Res<u16> {
    Ok(cpu.read_op(ins, i)? as u16)
}

fn out(cpu: &mut Cpu, ins: &Instruction) -> Res {
    let port = port_of(cpu, ins, 0)?;
    let size = cpu.op_size(ins, 1);
    let v = cpu.read_op(ins, 1)?;
    cpu.io_out(port, size, v)
}

fn in_(cpu: &mut Cpu, ins: &Instruction) -> Res {
    let port = port_of(cpu, ins, 1)?;
    let size = cpu.op_size(ins, 0);
    let v = cpu.io_in(port, size)?;
    cpu.write_op(ins, 0, v)
}

fn hlt(cpu: &mut Cpu, _: &Instruction) -> Res {
    if cpu.cpl != 0 {
        return Err(super::gp0());
    }
    if cpu.irq.is_some() {
        cpu.halted = true;
    } else {
        cpu.posted.push_back(super::Pending::Hlt);
    }
    Ok(())
}
