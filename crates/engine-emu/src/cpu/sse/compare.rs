//! Compares that set RFLAGS: COMISS/UCOMISS/COMISD/UCOMISD (ZF PF CF from
//! the compare, OF SF AF cleared) and PTEST (ZF, CF).

use iced_x86::{Instruction, Mnemonic as M};

use super::host;
use crate::cpu::exec::Handler;
use crate::cpu::{Cpu, Res};

pub fn handler(ins: &Instruction) -> Option<Handler> {
    Some(match ins.mnemonic() {
        M::Comiss | M::Ucomiss | M::Comisd | M::Ucomisd => comis,
        M::Ptest => ptest,
        _ => return None,
    })
}

fn comis(cpu: &mut Cpu, ins: &Instruction) -> Res {
    cpu.simd_check(ins)?;
    let a = cpu.vread(ins, 0)?;
    let b = cpu.vread(ins, 1)?;
    let k = match ins.mnemonic() {
        M::Comiss => host::comiss,
        M::Ucomiss => host::ucomiss,
        M::Comisd => host::comisd,
        _ => host::ucomisd,
    };
    let (zf, pf, cf, flags) = k(a, b, cpu.fpu.mxcsr);
    cpu.simd_fp_exceptions(flags)?;
    cpu.flags.set_arith(cf, pf, false, zf, false, false);
    Ok(())
}

fn ptest(cpu: &mut Cpu, ins: &Instruction) -> Res {
    cpu.simd_check(ins)?;
    let a = cpu.vread(ins, 0)?;
    let b = cpu.vread(ins, 1)?;
    cpu.flags
        .set_arith(!a & b == 0, false, false, a & b == 0, false, false);
    Ok(())
}
