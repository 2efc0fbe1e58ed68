//! Flag instructions: CLC STC CMC CLD STD, LAHF SAHF.

use iced_x86::{Instruction, Register};
use kite_hypervisor::x86::{RFLAGS_AF, RFLAGS_CF, RFLAGS_DF, RFLAGS_PF, RFLAGS_SF, RFLAGS_ZF};

use crate::cpu::{Cpu, Res};

/// The flags LAHF/SAHF move.
const AH_FLAGS: u64 = RFLAGS_SF | RFLAGS_ZF | RFLAGS_AF | RFLAGS_PF | RFLAGS_CF;

pub fn clc(cpu: &mut Cpu, _: &Instruction) -> Res {
    cpu.flags.set(RFLAGS_CF, false);
    Ok(())
}

pub fn stc(cpu: &mut Cpu, _: &Instruction) -> Res {
    cpu.flags.set(RFLAGS_CF, true);
    Ok(())
}

pub fn cmc(cpu: &mut Cpu, _: &Instruction) -> Res {
    let cf = cpu.flags.cf();
    cpu.flags.set(RFLAGS_CF, !cf);
    Ok(())
}

pub fn cld(cpu: &mut Cpu, _: &Instruction) -> Res {
    cpu.flags.set(RFLAGS_DF, false);
    Ok(())
}

pub fn std(cpu: &mut Cpu, _: &Instruction) -> Res {
    cpu.flags.set(RFLAGS_DF, true);
    Ok(())
}

pub fn lahf(cpu: &mut Cpu, _: &Instruction) -> Res {
    let v = (cpu.flags.rflags() & AH_FLAGS) | 2;
    cpu.reg_write(Register::AH, v);
    Ok(())
}

pub fn sahf(cpu: &mut Cpu, _: &Instruction) -> Res {
    let ah = cpu.reg_read(Register::AH);
    let f = cpu.flags.rflags();
    cpu.flags.set_rflags((f & !AH_FLAGS) | (ah & AH_FLAGS));
    Ok(())
}
