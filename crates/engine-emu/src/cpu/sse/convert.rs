//! Conversions between integers and floats that involve a general or MMX
//! register: CVTSI2SS/SD, CVT(T)SS2SI, CVT(T)SD2SI, CVTPI2PS/PD,
//! CVT(T)PS2PI, CVT(T)PD2PI. Out-of-range and NaN sources give the
//! "integer indefinite" value (0x80000000 / 0x8000000000000000) with IE,
//! exactly as the host instruction does. (The xmm-to-xmm conversions are
//! in `float_arith`.)

use iced_x86::{Instruction, Mnemonic as M};

use super::host;
use crate::cpu::exec::Handler;
use crate::cpu::{Cpu, Res};

pub fn handler(ins: &Instruction) -> Option<Handler> {
    Some(match ins.mnemonic() {
        M::Cvtsi2ss | M::Cvtsi2sd => from_int,
        M::Cvtss2si | M::Cvttss2si | M::Cvtsd2si | M::Cvttsd2si => to_int,
        M::Cvtpi2ps | M::Cvtpi2pd => from_pi,
        M::Cvtps2pi | M::Cvttps2pi | M::Cvtpd2pi | M::Cvttpd2pi => to_pi,
        _ => return None,
    })
}

fn from_int(cpu: &mut Cpu, ins: &Instruction) -> Res {
    cpu.simd_check(ins)?;
    let a = cpu.vread(ins, 0)?;
    let v = cpu.vread(ins, 1)? as u64;
    let wide = cpu.op_size(ins, 1) == 8;
    let k = match (ins.mnemonic(), wide) {
        (M::Cvtsi2ss, false) => host::cvtsi2ss_32,
        (M::Cvtsi2ss, true) => host::cvtsi2ss_64,
        (_, false) => host::cvtsi2sd_32,
        (_, true) => host::cvtsi2sd_64,
    };
    let (r, flags) = k(a, v, cpu.fpu.mxcsr);
    cpu.simd_fp_exceptions(flags)?;
    cpu.vwrite(ins, 0, r)
}

fn to_int(cpu: &mut Cpu, ins: &Instruction) -> Res {
    cpu.simd_check(ins)?;
    let b = cpu.vread(ins, 1)?;
    let wide = cpu.op_size(ins, 0) == 8;
    let k = match (ins.mnemonic(), wide) {
        (M::Cvtss2si, false) => host::cvtss2si_32,
        (M::Cvtss2si, true) => host::cvtss2si_64,
        (M::Cvttss2si, false) => host::cvttss2si_32,
        (M::Cvttss2si, true) => host::cvttss2si_64,
        (M::Cvtsd2si, false) => host::cvtsd2si_32,
        (M::Cvtsd2si, true) => host::cvtsd2si_64,
        (_, false) => host::cvttsd2si_32,
        (_, true) => host::cvttsd2si_64,
    };
    let (r, flags) = k(b, cpu.fpu.mxcsr);
    cpu.simd_fp_exceptions(flags)?;
    cpu.vwrite(ins, 0, u128::from(r))
}

const LO: u128 = 0xffff_ffff_ffff_ffff;

/// CVTPI2PS keeps the destination's high quadword; CVTPI2PD fills it.
fn from_pi(cpu: &mut Cpu, ins: &Instruction) -> Res {
    cpu.simd_check(ins)?;
    let a = cpu.vread(ins, 0)?;
    let b = cpu.vread(ins, 1)? & LO;
    let r = if ins.mnemonic() == M::Cvtpi2ps {
        let (r, flags) = cpu.simd_kernel(host::cvtdq2ps, 0, b);
        cpu.simd_fp_exceptions(flags)?;
        (a & !LO) | (r & LO)
    } else {
        host::cvtdq2pd(0, b, cpu.fpu.mxcsr).0
    };
    cpu.vwrite(ins, 0, r)
}

fn to_pi(cpu: &mut Cpu, ins: &Instruction) -> Res {
    cpu.simd_check(ins)?;
    let b = cpu.vread(ins, 1)?;
    let (k, b): (host::Kernel, u128) = match ins.mnemonic() {
        M::Cvtps2pi => (host::cvtps2dq, b & LO),
        M::Cvttps2pi => (host::cvttps2dq, b & LO),
        M::Cvtpd2pi => (host::cvtpd2dq, b),
        _ => (host::cvttpd2dq, b),
    };
    let (r, flags) = cpu.simd_kernel(k, 0, b);
    cpu.simd_fp_exceptions(flags)?;
    cpu.vwrite(ins, 0, r & LO)
}
