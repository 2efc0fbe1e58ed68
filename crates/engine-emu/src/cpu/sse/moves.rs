//! Data movement: full-width moves (aligned, unaligned, non-temporal),
//! MOVD/MOVQ, scalar MOVSS/MOVSD, half moves (MOVHPS, MOVLPD...), MOVMSK*,
//! PEXTR*/PINSR*, EXTRACTPS, MASKMOVQ/MASKMOVDQU, EMMS, the fences,
//! LDMXCSR/STMXCSR.

use iced_x86::{Code, Instruction, Mnemonic as M, OpKind};

use super::lanes::*;
use crate::cpu::exec::Handler;
use crate::cpu::{gp0, Cpu, Res};
use crate::mmu::page_walk::Access;

const LO: u128 = 0xffff_ffff_ffff_ffff;

pub fn handler(ins: &Instruction) -> Option<Handler> {
    Some(match ins.mnemonic() {
        M::Movaps
        | M::Movapd
        | M::Movdqa
        | M::Movups
        | M::Movupd
        | M::Movdqu
        | M::Lddqu
        | M::Movntps
        | M::Movntpd
        | M::Movntdq
        | M::Movntdqa
        | M::Movntq => mov_full,
        M::Movq | M::Movq2dq | M::Movdq2q => mov_q,
        M::Movd => mov_d,
        M::Movss => mov_ss,
        M::Movsd if ins.code() != Code::Movsd_m32_m32 => mov_sd,
        M::Movsd => return None,
        M::Movhps | M::Movhpd => mov_high,
        M::Movlps | M::Movlpd => mov_low,
        M::Movmskps => movmskps,
        M::Movmskpd => movmskpd,
        M::Pmovmskb => pmovmskb,
        M::Pextrb | M::Pextrw | M::Pextrd | M::Pextrq | M::Extractps => pextr,
        M::Pinsrb | M::Pinsrw | M::Pinsrd | M::Pinsrq => pinsr,
        M::Maskmovq | M::Maskmovdqu => maskmov,
        M::Emms => emms,
        M::Ldmxcsr => ldmxcsr,
        M::Stmxcsr => stmxcsr,
        M::Lfence | M::Sfence | M::Mfence => fence,
        M::Movnti => movnti,
        _ => return None,
    })
}

fn mov_full(cpu: &mut Cpu, ins: &Instruction) -> Res {
    cpu.simd_check(ins)?;
    let v = cpu.vread(ins, 1)?;
    cpu.vwrite(ins, 0, v)
}

/// MOVQ in every form: 64 bits, zero-extended into an XMM destination.
fn mov_q(cpu: &mut Cpu, ins: &Instruction) -> Res {
    cpu.simd_check(ins)?;
    let v = cpu.vread(ins, 1)? & LO;
    cpu.vwrite(ins, 0, v)
}

fn mov_d(cpu: &mut Cpu, ins: &Instruction) -> Res {
    cpu.simd_check(ins)?;
    let v = cpu.vread(ins, 1)? & 0xffff_ffff;
    cpu.vwrite(ins, 0, v)
}

/// MOVSS/MOVSD: register to register merges the low element; a load
/// zero-extends; a store writes the element.
fn mov_scalar(cpu: &mut Cpu, ins: &Instruction, m: u128) -> Res {
    cpu.simd_check(ins)?;
    let b = cpu.vread(ins, 1)? & m;
    let v = if ins.op_kind(0) == OpKind::Register && ins.op_kind(1) == OpKind::Register {
        (cpu.vread(ins, 0)? & !m) | b
    } else {
        b
    };
    cpu.vwrite(ins, 0, v)
}

fn mov_ss(cpu: &mut Cpu, ins: &Instruction) -> Res {
    mov_scalar(cpu, ins, 0xffff_ffff)
}

fn mov_sd(cpu: &mut Cpu, ins: &Instruction) -> Res {
    mov_scalar(cpu, ins, LO)
}

/// MOVHPS/MOVHPD: load into, or store from, the high quadword.
fn mov_high(cpu: &mut Cpu, ins: &Instruction) -> Res {
    cpu.simd_check(ins)?;
    if ins.op_kind(0) == OpKind::Memory {
        let v = cpu.vread(ins, 1)? >> 64;
        cpu.vwrite(ins, 0, v)
    } else {
        let a = cpu.vread(ins, 0)?;
        let m = cpu.vread(ins, 1)? & LO;
        cpu.vwrite(ins, 0, (a & LO) | (m << 64))
    }
}

/// MOVLPS/MOVLPD: load into, or store from, the low quadword.
fn mov_low(cpu: &mut Cpu, ins: &Instruction) -> Res {
    cpu.simd_check(ins)?;
    if ins.op_kind(0) == OpKind::Memory {
        let v = cpu.vread(ins, 1)? & LO;
        cpu.vwrite(ins, 0, v)
    } else {
        let a = cpu.vread(ins, 0)?;
        let m = cpu.vread(ins, 1)? & LO;
        cpu.vwrite(ins, 0, (a & !LO) | m)
    }
}

fn movmskps(cpu: &mut Cpu, ins: &Instruction) -> Res {
    cpu.simd_check(ins)?;
    let v = cpu.vread(ins, 1)?;
    let r = (0..4).fold(0u128, |acc, i| acc | (u128::from(get(v, i, 32) >> 31) << i));
    cpu.vwrite(ins, 0, r)
}

fn movmskpd(cpu: &mut Cpu, ins: &Instruction) -> Res {
    cpu.simd_check(ins)?;
    let v = cpu.vread(ins, 1)?;
    let r = (0..2).fold(0u128, |acc, i| acc | (u128::from(get(v, i, 64) >> 63) << i));
    cpu.vwrite(ins, 0, r)
}

fn pmovmskb(cpu: &mut Cpu, ins: &Instruction) -> Res {
    cpu.simd_check(ins)?;
    let v = cpu.vread(ins, 1)?;
    let n = if super::has_mm(ins) { 8 } else { 16 };
    let r = (0..n).fold(0u128, |acc, i| acc | (u128::from(get(v, i, 8) >> 7) << i));
    cpu.vwrite(ins, 0, r)
}

/// PEXTRB/W/D/Q and EXTRACTPS: element imm of the source to a GPR or memory
/// (a GPR destination is zero-extended).
fn pextr(cpu: &mut Cpu, ins: &Instruction) -> Res {
    cpu.simd_check(ins)?;
    let v = cpu.vread(ins, 1)?;
    let imm = u32::from(ins.immediate8());
    let mm = super::has_mm(ins);
    let (bits, idx) = match ins.mnemonic() {
        M::Pextrb => (8, imm & 15),
        M::Pextrw => (16, imm & if mm { 3 } else { 7 }),
        M::Pextrd | M::Extractps => (32, imm & 3),
        _ => (64, imm & 1),
    };
    let e = u128::from(get(v, idx, bits));
    cpu.vwrite(ins, 0, e)
}

/// PINSRB/W/D/Q: a GPR or memory element into lane imm.
fn pinsr(cpu: &mut Cpu, ins: &Instruction) -> Res {
    cpu.simd_check(ins)?;
    let a = cpu.vread(ins, 0)?;
    let v = cpu.vread(ins, 1)?;
    let imm = u32::from(ins.immediate8());
    let mm = super::has_mm(ins);
    let (bits, idx) = match ins.mnemonic() {
        M::Pinsrb => (8, imm & 15),
        M::Pinsrw => (16, imm & if mm { 3 } else { 7 }),
        M::Pinsrd => (32, imm & 3),
        _ => (64, imm & 1),
    };
    let m = u128::from(mask(bits)) << (idx * bits);
    let r = (a & !m) | ((v << (idx * bits)) & m);
    cpu.vwrite(ins, 0, r)
}

/// MASKMOVQ/MASKMOVDQU: store the bytes whose mask byte has its top bit set
/// to DS:rDI (segment override allowed). Every page is checked first.
fn maskmov(cpu: &mut Cpu, ins: &Instruction) -> Res {
    cpu.simd_check(ins)?;
    let mut regs = (0..ins.op_count())
        .filter(|&i| ins.op_kind(i) == OpKind::Register)
        .map(|i| ins.op_register(i));
    let (Some(rd), Some(rs)) = (regs.next(), regs.next()) else {
        return Err(crate::cpu::ud());
    };
    let data = cpu.vreg(rd);
    let sel = cpu.vreg(rs);
    let n: u32 = if super::has_mm(ins) { 8 } else { 16 };
    let rdi = cpu.gpr[crate::cpu::reg::RDI];
    let off = if (0..ins.op_count()).any(|i| ins.op_kind(i) == OpKind::MemorySegRDI) {
        rdi
    } else if (0..ins.op_count()).any(|i| ins.op_kind(i) == OpKind::MemorySegEDI) {
        rdi & 0xffff_ffff
    } else {
        rdi & 0xffff
    };
    let seg = crate::cpu::Seg::from_iced(ins.memory_segment()).unwrap_or(crate::cpu::Seg::Ds);
    let lin = cpu.seg_lin(seg, off, n, true)?;
    let picked: Vec<u32> = (0..n).filter(|&i| get(sel, i, 8) & 0x80 != 0).collect();
    let acc = Access {
        write: true,
        fetch: false,
        user: cpu.cpl == 3,
    };
    for &i in &picked {
        cpu.translate(lin.wrapping_add(u64::from(i)), acc)?;
    }
    for &i in &picked {
        cpu.write_lin(lin.wrapping_add(u64::from(i)), 1, get(data, i, 8), false)?;
    }
    if super::has_mm(ins) {
        cpu.mmx_enter();
    }
    Ok(())
}

/// EMMS: every x87 register empty.
/// EMMS: every tag empty and, as every MMX instruction, TOP = 0 (SDM
/// vol. 3, 12.2 "The MMX State and MMX Register Aliasing": "Each time an
/// MMX instruction is executed, the TOS value is set to 000B"; table 12-2
/// lists EMMS with TOS 000B). AMD processors do the same.
fn emms(cpu: &mut Cpu, _ins: &Instruction) -> Res {
    cpu.mmx_check()?;
    cpu.fpu.top = 0;
    cpu.fpu.ftw = 0xffff;
    Ok(())
}

/// MXCSR bits the engine implements (MXCSR_MASK): DAZ and everything below.
pub const MXCSR_MASK: u32 = 0xffff;

fn ldmxcsr(cpu: &mut Cpu, ins: &Instruction) -> Res {
    cpu.sse_check()?;
    let v = cpu.vread(ins, 0)? as u32;
    if v & !MXCSR_MASK != 0 {
        return Err(gp0());
    }
    cpu.fpu.mxcsr = v;
    Ok(())
}

fn stmxcsr(cpu: &mut Cpu, ins: &Instruction) -> Res {
    cpu.sse_check()?;
    let v = cpu.fpu.mxcsr;
    cpu.vwrite(ins, 0, u128::from(v))
}

/// The engine runs each vCPU's instructions in order; MFENCE also orders
/// this thread's accesses against the other vCPU threads.
fn fence(_cpu: &mut Cpu, ins: &Instruction) -> Res {
    if ins.mnemonic() == M::Mfence {
        std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
    }
    Ok(())
}

fn movnti(cpu: &mut Cpu, ins: &Instruction) -> Res {
    let v = cpu.read_op(ins, 1)?;
    cpu.write_op(ins, 0, v)
}
