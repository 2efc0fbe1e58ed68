//! Data movement: MOV (including moffs and segment registers), MOVZX MOVSX
//! MOVSXD, LEA, CMOVcc, SETcc, CBW/CWDE/CDQE, CWD/CDQ/CQO, XLAT, and the
//! exchanging instructions XCHG XADD CMPXCHG CMPXCHG8B CMPXCHG16B; BOUND.
//!
//! Register results follow the host (measured): CMOVcc with a false
//! condition still zero-extends a 32-bit destination in 64-bit mode;
//! CMPXCHG that fails leaves a register destination unwritten.

use iced_x86::{Instruction, OpKind, Register};
use kite_hypervisor::x86::{self, RFLAGS_ZF};

use super::Loc;
use crate::cpu::flags::mask;
use crate::cpu::reg::{RAX, RBX, RCX, RDX};
use crate::cpu::{exception, gp0, ud, Cpu, Res, Seg};

#[inline]
fn sext(v: u64, bits: u32) -> u64 {
    (((v << (64 - bits)) as i64) >> (64 - bits)) as u64
}

/// The condition code index (0..15) of a Jcc/SETcc/CMOVcc.
#[inline]
pub(crate) fn cc(ins: &Instruction) -> u8 {
    (ins.condition_code() as u8).wrapping_sub(1) & 0xf
}

pub fn mov(cpu: &mut Cpu, ins: &Instruction) -> Res {
    let v = cpu.read_op(ins, 1)?;
    cpu.write_op(ins, 0, v)
}

/// MOV specialized at decode time: GPR <- GPR of `SIZE` (4 or 8) bytes.
pub fn mov_rr<const SIZE: u32>(cpu: &mut Cpu, ins: &Instruction) -> Res {
    let d = super::gpr_index::<SIZE>(ins.op0_register());
    let s = super::gpr_index::<SIZE>(ins.op1_register());
    cpu.gpr[d] = cpu.gpr[s] & mask(SIZE * 8);
    Ok(())
}

/// MOV GPR <- immediate.
pub fn mov_ri<const SIZE: u32>(cpu: &mut Cpu, ins: &Instruction) -> Res {
    let d = super::gpr_index::<SIZE>(ins.op0_register());
    cpu.gpr[d] = ins.immediate(1) & mask(SIZE * 8);
    Ok(())
}

/// MOV GPR <- memory, the memory operand of form `FORM` (`addr32`).
pub fn mov_rm<const SIZE: u32, const FORM: u8>(cpu: &mut Cpu, ins: &Instruction) -> Res {
    let d = super::gpr_index::<SIZE>(ins.op0_register());
    let v = cpu.mem_read::<FORM>(ins, SIZE)?;
    cpu.gpr[d] = v & mask(SIZE * 8);
    Ok(())
}

/// MOV 8/16-bit register <- memory (form `FORM`).
pub fn mov_rm_small<const SIZE: u32, const FORM: u8>(cpu: &mut Cpu, ins: &Instruction) -> Res {
    let v = cpu.mem_read::<FORM>(ins, SIZE)?;
    cpu.reg_write(ins.op0_register(), v);
    Ok(())
}

/// MOV memory <- 8/16-bit register (form `FORM`).
pub fn mov_mr_small<const SIZE: u32, const FORM: u8>(cpu: &mut Cpu, ins: &Instruction) -> Res {
    let v = cpu.reg_read(ins.op1_register()) & mask(SIZE * 8);
    cpu.mem_write::<FORM>(ins, SIZE, v)
}

/// MOV memory <- immediate of `SIZE` (1, 2, 4) bytes (form `FORM`).
pub fn mov_mi<const SIZE: u32, const FORM: u8>(cpu: &mut Cpu, ins: &Instruction) -> Res {
    cpu.mem_write::<FORM>(ins, SIZE, ins.immediate(1) & mask(SIZE * 8))
}

/// The linear address of a memory operand of 64-bit code whose base is a
/// 64-bit GPR, with an index register when `INDEX`, and no FS/GS override
/// (`integer::flat64_form` chose it): segment bases are 0 there, so only
/// the canonical form is checked (#SS for stack references, else #GP).
#[inline(always)]
fn flat64_lin<const INDEX: bool>(cpu: &Cpu, ins: &Instruction) -> Res<u64> {
    let base = (ins.memory_base() as usize).wrapping_sub(Register::RAX as usize) & 15;
    let mut lin = cpu.gpr[base].wrapping_add(ins.memory_displacement64());
    if INDEX {
        let index = (ins.memory_index() as usize).wrapping_sub(Register::RAX as usize) & 15;
        lin = lin.wrapping_add(cpu.gpr[index] << ins.memory_index_scale().trailing_zeros());
    }
    if !crate::cpu::access::canonical(lin) {
        return Err(if ins.memory_segment() == Register::SS {
            exception(x86::SS, Some(0))
        } else {
            gp0()
        });
    }
    Ok(lin)
}

/// `mov_rm` for a flat 64-bit memory operand (see `flat64_lin`).
pub fn mov_rm_flat<const SIZE: u32, const INDEX: bool>(cpu: &mut Cpu, ins: &Instruction) -> Res {
    let lin = flat64_lin::<INDEX>(cpu, ins)?;
    let v = cpu.read_lin(lin, SIZE, false)?;
    cpu.gpr[super::gpr_index::<SIZE>(ins.op0_register())] = v & mask(SIZE * 8);
    Ok(())
}

/// `mov_mr` for a flat 64-bit memory operand (see `flat64_lin`).
pub fn mov_mr_flat<const SIZE: u32, const INDEX: bool>(cpu: &mut Cpu, ins: &Instruction) -> Res {
    let lin = flat64_lin::<INDEX>(cpu, ins)?;
    let v = cpu.gpr[super::gpr_index::<SIZE>(ins.op1_register())] & mask(SIZE * 8);
    cpu.write_lin(lin, SIZE, v, false)
}

/// MOV memory <- GPR, the memory operand of form `FORM` (`addr32`).
pub fn mov_mr<const SIZE: u32, const FORM: u8>(cpu: &mut Cpu, ins: &Instruction) -> Res {
    let s = super::gpr_index::<SIZE>(ins.op1_register());
    cpu.mem_write::<FORM>(ins, SIZE, cpu.gpr[s] & mask(SIZE * 8))
}

/// MOV Sreg, r/m16.
pub fn mov_to_seg(cpu: &mut Cpu, ins: &Instruction) -> Res {
    let Some(seg) = Seg::from_iced(ins.op0_register()) else {
        return Err(ud());
    };
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

pub fn movzx(cpu: &mut Cpu, ins: &Instruction) -> Res {
    let v = cpu.read_op(ins, 1)?;
    cpu.reg_write(ins.op0_register(), v);
    Ok(())
}

/// MOVSX, MOVSXD (MOVSXD with a 16/32-bit destination is a plain move).
pub fn movsx(cpu: &mut Cpu, ins: &Instruction) -> Res {
    let bits = cpu.op_size(ins, 1) * 8;
    let v = sext(cpu.read_op(ins, 1)?, bits);
    cpu.reg_write(ins.op0_register(), v);
    Ok(())
}

/// MOVZX/MOVSX/MOVSXD specialized at decode time: a `SRC`-byte register or
/// memory source into a `DST`-byte (4 or 8) GPR.
/// A memory source has the operand form `FORM` (`addr32`).
pub fn extend<const DST: u32, const SRC: u32, const SIGN: bool, const FORM: u8>(
    cpu: &mut Cpu,
    ins: &Instruction,
) -> Res {
    let v = if ins.op1_kind() == OpKind::Memory {
        cpu.mem_read::<FORM>(ins, SRC)?
    } else {
        cpu.reg_read(ins.op1_register())
    } & mask(SRC * 8);
    let v = if SIGN { sext(v, SRC * 8) } else { v };
    cpu.gpr[super::gpr_index::<DST>(ins.op0_register())] = v & mask(DST * 8);
    Ok(())
}

/// LEA into a 32-bit GPR of a 32-bit address of form `FORM` (not
/// `GENERIC`; `addr32`).
pub fn lea32<const FORM: u8>(cpu: &mut Cpu, ins: &Instruction) -> Res {
    if FORM == crate::cpu::addr32::GENERIC {
        return lea(cpu, ins);
    }
    cpu.gpr[super::gpr_index::<4>(ins.op0_register())] = cpu.off32::<FORM>(ins);
    Ok(())
}

pub fn lea(cpu: &mut Cpu, ins: &Instruction) -> Res {
    if ins.op1_kind() != OpKind::Memory {
        return Err(ud());
    }
    let a = cpu.ea(ins);
    cpu.reg_write(ins.op0_register(), a);
    Ok(())
}

pub fn cmov(cpu: &mut Cpu, ins: &Instruction) -> Res {
    let v = cpu.read_op(ins, 1)?;
    let dst = ins.op0_register();
    let v = if cpu.flags.cond(cc(ins)) {
        v
    } else {
        cpu.reg_read(dst)
    };
    cpu.reg_write(dst, v);
    Ok(())
}

/// CMOVcc specialized for a 32/64-bit GPR destination and a GPR source of
/// the same size (or memory, which is read whatever the condition). A
/// 32-bit destination is zero-extended even when nothing moves. A memory
/// source has the operand form `FORM` (`addr32`).
pub fn cmov_r<const SIZE: u32, const MEM: bool, const FORM: u8>(
    cpu: &mut Cpu,
    ins: &Instruction,
) -> Res {
    let d = super::gpr_index::<SIZE>(ins.op0_register());
    let v = if MEM {
        cpu.mem_read::<FORM>(ins, SIZE)?
    } else {
        cpu.gpr[super::gpr_index::<SIZE>(ins.op1_register())]
    };
    let v = if cpu.flags.cond(cc(ins)) {
        v
    } else {
        cpu.gpr[d]
    };
    cpu.gpr[d] = v & mask(SIZE * 8);
    Ok(())
}

/// SETcc into a byte register.
pub fn setcc_r(cpu: &mut Cpu, ins: &Instruction) -> Res {
    let v = u64::from(cpu.flags.cond(cc(ins)));
    cpu.reg_write(ins.op0_register(), v);
    Ok(())
}

pub fn setcc(cpu: &mut Cpu, ins: &Instruction) -> Res {
    let v = u64::from(cpu.flags.cond(cc(ins)));
    cpu.write_op(ins, 0, v)
}

/// CBW, CWDE, CDQE: sign-extend the lower half of the accumulator.
pub fn cbw(cpu: &mut Cpu, ins: &Instruction) -> Res {
    let (dst, bits) = match ins.mnemonic() {
        iced_x86::Mnemonic::Cbw => (Register::AX, 8),
        iced_x86::Mnemonic::Cwde => (Register::EAX, 16),
        _ => (Register::RAX, 32),
    };
    let v = sext(cpu.gpr[RAX], bits);
    cpu.reg_write(dst, v);
    Ok(())
}

/// CWD, CDQ, CQO: fill rDX with the accumulator's sign.
pub fn cwd(cpu: &mut Cpu, ins: &Instruction) -> Res {
    let (dst, bits) = match ins.mnemonic() {
        iced_x86::Mnemonic::Cwd => (Register::DX, 16),
        iced_x86::Mnemonic::Cdq => (Register::EDX, 32),
        _ => (Register::RDX, 64),
    };
    let neg = cpu.gpr[RAX] >> (bits - 1) & 1 != 0;
    cpu.reg_write(dst, if neg { u64::MAX } else { 0 });
    Ok(())
}

/// XLAT: AL = [seg: rBX + AL], wrapped to the address size.
pub fn xlat(cpu: &mut Cpu, ins: &Instruction) -> Res {
    let base = ins.memory_base();
    let bits = match base.size() {
        2 => 16,
        4 => 32,
        _ => 64,
    };
    let off = cpu.reg_read(base).wrapping_add(cpu.gpr[RAX] & 0xff) & mask(bits);
    let v = cpu.read_mem(cpu.mem_seg(ins), off, 1)?;
    cpu.reg_write(Register::AL, v);
    Ok(())
}

/// XCHG: with a memory operand always atomic (implicitly locked).
pub fn xchg(cpu: &mut Cpu, ins: &Instruction) -> Res {
    let size = cpu.op_size(ins, 0);
    if ins.op0_kind() == OpKind::Register && ins.op1_kind() == OpKind::Register {
        let (r0, r1) = (ins.op0_register(), ins.op1_register());
        let (a, b) = (cpu.reg_read(r0), cpu.reg_read(r1));
        cpu.reg_write(r0, b);
        cpu.reg_write(r1, a);
        return Ok(());
    }
    let (mi, ri) = if ins.op0_kind() == OpKind::Memory {
        (0, 1)
    } else {
        (1, 0)
    };
    let reg = ins.op_register(ri);
    let v = cpu.reg_read(reg);
    let loc = cpu.loc(ins, mi, size, true)?;
    let (old, _) = cpu.rmw(loc, size, true, move |_| v)?;
    cpu.reg_write(reg, old);
    Ok(())
}

/// XADD: dest = dest + src, src = old dest.
pub fn xadd(cpu: &mut Cpu, ins: &Instruction) -> Res {
    let size = cpu.op_size(ins, 0);
    let bits = size * 8;
    let m = mask(bits);
    let src_reg = ins.op1_register();
    let b = cpu.reg_read(src_reg) & m;
    let loc = cpu.loc(ins, 0, size, true)?;
    let (a, r) = match loc {
        Loc::Reg(dst) => {
            // SRC := DEST, then DEST := SUM (so `xadd eax, eax` keeps the sum).
            let a = cpu.reg_read(dst) & m;
            let r = a.wrapping_add(b) & m;
            cpu.reg_write(src_reg, a);
            cpu.reg_write(dst, r);
            (a, r)
        }
        Loc::Mem(_) => {
            let (a, r) = cpu.rmw(loc, size, ins.has_lock_prefix(), move |a| {
                a.wrapping_add(b) & m
            })?;
            cpu.reg_write(src_reg, a);
            (a, r)
        }
    };
    cpu.flags.set_add(a, b, false, r, bits);
    Ok(())
}

/// The accumulator register of a size in bytes.
fn acc_reg(size: u32) -> Register {
    match size {
        1 => Register::AL,
        2 => Register::AX,
        4 => Register::EAX,
        _ => Register::RAX,
    }
}

pub fn cmpxchg(cpu: &mut Cpu, ins: &Instruction) -> Res {
    let size = cpu.op_size(ins, 0);
    let bits = size * 8;
    let m = mask(bits);
    let acc = cpu.reg_read(acc_reg(size)) & m;
    let src = cpu.reg_read(ins.op1_register()) & m;
    let loc = cpu.loc(ins, 0, size, true)?;
    let old = match loc {
        Loc::Reg(dst) => {
            let old = cpu.reg_read(dst) & m;
            if old == acc {
                cpu.reg_write(dst, src);
            }
            old
        }
        Loc::Mem(_) => {
            // The destination is always written (with its old value when the
            // comparison fails), so a read-only page faults either way.
            cpu.rmw(loc, size, ins.has_lock_prefix(), move |old| {
                if old & m == acc {
                    src
                } else {
                    old
                }
            })?
            .0
        }
    } & m;
    if old != acc {
        cpu.reg_write(acc_reg(size), old);
    }
    cpu.flags
        .set_sub(acc, old, false, acc.wrapping_sub(old), bits);
    Ok(())
}

/// CMPXCHG8B / CMPXCHG16B.
pub fn cmpxchg8b16b(cpu: &mut Cpu, ins: &Instruction) -> Res {
    if ins.op0_kind() != OpKind::Memory {
        return Err(ud());
    }
    let wide = ins.mnemonic() == iced_x86::Mnemonic::Cmpxchg16b;
    let off = cpu.ea(ins);
    let seg = cpu.mem_seg(ins);
    if wide {
        if off & 15 != 0 {
            return Err(gp0());
        }
        let lin = cpu.seg_lin(seg, off, 16, true)?;
        let cmp = u128::from(cpu.gpr[RAX]) | (u128::from(cpu.gpr[RDX]) << 64);
        let new = u128::from(cpu.gpr[RBX]) | (u128::from(cpu.gpr[RCX]) << 64);
        let (old, _) = cpu.rmw16(lin, ins.has_lock_prefix(), move |old| {
            if old == cmp {
                new
            } else {
                old
            }
        })?;
        let eq = old == cmp;
        if !eq {
            cpu.gpr[RAX] = old as u64;
            cpu.gpr[RDX] = (old >> 64) as u64;
        }
        cpu.flags.set(RFLAGS_ZF, eq);
        return Ok(());
    }
    let lin = cpu.seg_lin(seg, off, 8, true)?;
    let cmp = (cpu.gpr[RAX] & 0xffff_ffff) | (cpu.gpr[RDX] << 32);
    let new = (cpu.gpr[RBX] & 0xffff_ffff) | (cpu.gpr[RCX] << 32);
    let (old, _) = cpu.rmw(Loc::Mem(lin), 8, ins.has_lock_prefix(), move |old| {
        if old == cmp {
            new
        } else {
            old
        }
    })?;
    let eq = old == cmp;
    if !eq {
        cpu.reg_write(Register::EAX, old & 0xffff_ffff);
        cpu.reg_write(Register::EDX, old >> 32);
    }
    cpu.flags.set(RFLAGS_ZF, eq);
    Ok(())
}

/// LDS LES LFS LGS LSS: load a far pointer (offset, then selector) into a
/// segment register and a general register.
pub fn load_far_pointer(cpu: &mut Cpu, ins: &Instruction) -> Res {
    use iced_x86::Mnemonic as M;
    if ins.op1_kind() != OpKind::Memory {
        return Err(ud());
    }
    let seg = match ins.mnemonic() {
        M::Lds => Seg::Ds,
        M::Les => Seg::Es,
        M::Lfs => Seg::Fs,
        M::Lgs => Seg::Gs,
        _ => Seg::Ss,
    };
    let dst = ins.op0_register();
    let size = dst.size() as u32;
    let off = cpu.ea(ins);
    let mseg = cpu.mem_seg(ins);
    let addr_mask = match (ins.memory_base().size(), ins.memory_index().size()) {
        (2, _) | (_, 2) => 0xffff,
        (8, _) | (_, 8) => u64::MAX,
        _ if cpu.code_bits == 64 => u64::MAX,
        _ => 0xffff_ffff,
    };
    let v = cpu.read_mem(mseg, off, size)?;
    let sel = cpu.read_mem(mseg, off.wrapping_add(u64::from(size)) & addr_mask, 2)?;
    cpu.load_segment(seg, sel as u16)?;
    cpu.reg_write(dst, v);
    cpu.end_block = true;
    Ok(())
}

/// SALC (undocumented, 16/32-bit modes): AL = CF ? 0xFF : 0.
pub fn salc(cpu: &mut Cpu, _: &Instruction) -> Res {
    let v = if cpu.flags.cf() { 0xff } else { 0 };
    cpu.reg_write(Register::AL, v);
    Ok(())
}

/// BOUND: #BR unless lower <= index <= upper (signed).
pub fn bound(cpu: &mut Cpu, ins: &Instruction) -> Res {
    if ins.op1_kind() != OpKind::Memory {
        return Err(ud());
    }
    let size = cpu.op_size(ins, 0);
    let bits = size * 8;
    let seg = cpu.mem_seg(ins);
    let off = cpu.ea(ins);
    let addr_mask = if ins.memory_base().size() == 2 || ins.memory_index().size() == 2 {
        0xffff
    } else {
        0xffff_ffff
    };
    let lower = sext(cpu.read_mem(seg, off, size)?, bits) as i64;
    let upper = sext(
        cpu.read_mem(seg, off.wrapping_add(u64::from(size)) & addr_mask, size)?,
        bits,
    ) as i64;
    let index = sext(cpu.reg_read(ins.op0_register()), bits) as i64;
    if index < lower || index > upper {
        return Err(exception(x86::BR, None));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use iced_x86::code_asm::*;

    use crate::cpu::gp0;

    #[test]
    fn cmov_false_zero_extends_and_cmpxchg_semantics() {
        let mut t = TestCpu::new(64);
        t.cpu.gpr[0] = 0xffff_ffff_1234_5678;
        t.exec(|a| {
            a.mov(rcx, -1i64).unwrap();
            a.xor(edx, edx).unwrap(); // ZF=1
            a.cmovnz(eax, ecx).unwrap();
        });
        assert_eq!(t.cpu.gpr[0], 0x1234_5678);
        // Failing CMPXCHG: accumulator loaded, register destination untouched.
        let mut t = TestCpu::new(64);
        t.cpu.gpr[0] = 0xffff_ffff_0000_0001;
        t.cpu.gpr[1] = 0xffff_ffff_0000_0002;
        t.cpu.gpr[2] = 3;
        t.exec(|a| {
            a.cmpxchg(ecx, edx).unwrap();
        });
        assert_eq!(t.cpu.gpr[0], 2);
        assert_eq!(t.cpu.gpr[1], 0xffff_ffff_0000_0002);
        assert!(!t.cpu.flags.zf());
        // Succeeding LOCK CMPXCHG on memory.
        let mut t = TestCpu::new(64);
        t.write_u64(DATA, 5);
        t.exec(|a| {
            a.mov(eax, 5u32).unwrap();
            a.mov(ecx, 9u32).unwrap();
            a.lock().cmpxchg(dword_ptr(DATA), ecx).unwrap();
        });
        assert_eq!(t.read_u64(DATA), 9);
        assert!(t.cpu.flags.zf());
    }

    #[test]
    fn cmpxchg8b_16b_and_alignment() {
        let mut t = TestCpu::new(64);
        t.write_u64(DATA, 0x1111_2222_3333_4444);
        t.exec(|a| {
            a.mov(eax, 0x3333_4444u32).unwrap();
            a.mov(edx, 0x1111_2222u32).unwrap();
            a.mov(ebx, 0xaaaa_bbbbu32).unwrap();
            a.mov(ecx, 0xcccc_ddddu32).unwrap();
            a.lock().cmpxchg8b(qword_ptr(DATA)).unwrap();
        });
        assert_eq!(t.read_u64(DATA), 0xcccc_dddd_aaaa_bbbb);
        assert!(t.cpu.flags.zf());
        let mut t = TestCpu::new(64);
        t.write_u64(DATA, 1);
        t.write_u64(DATA + 8, 2);
        t.exec(|a| {
            a.mov(eax, 1u32).unwrap();
            a.mov(edx, 2u32).unwrap();
            a.mov(ebx, 3u32).unwrap();
            a.mov(ecx, 4u32).unwrap();
            a.lock().cmpxchg16b(xmmword_ptr(DATA)).unwrap();
        });
        assert_eq!((t.read_u64(DATA), t.read_u64(DATA + 8)), (3, 4));
        let mut t = TestCpu::new(64);
        let (f, _) = t.fault(|a| {
            a.cmpxchg16b(xmmword_ptr(DATA + 8)).unwrap();
        });
        assert_eq!(f, gp0());
    }

    #[test]
    fn xchg_xadd_extend_xlat_lea_movsx() {
        let mut t = TestCpu::new(64);
        t.write_u64(DATA, 10);
        t.write(DATA + 0x100, &[0, 11, 22, 33]);
        t.exec(|a| {
            a.mov(ecx, 3u32).unwrap();
            a.lock().xadd(dword_ptr(DATA), ecx).unwrap();
            a.mov(edx, 7u32).unwrap();
            a.xchg(dword_ptr(DATA), edx).unwrap();
            a.mov(rbx, DATA + 0x100).unwrap();
            a.mov(al, 2u32).unwrap();
            a.xlatb().unwrap();
            a.mov(r8d, 0xffu32).unwrap();
            a.movsx(r9, r8b).unwrap();
            a.lea(r10d, dword_ptr(rbx + rcx * 4 + 1)).unwrap();
            a.mov(r11w, -1i32).unwrap();
            a.movzx(r12, r11w).unwrap();
            a.mov(eax, 0x8000u32).unwrap();
            a.cwde().unwrap();
            a.cdq().unwrap();
        });
        assert_eq!(t.cpu.gpr[1], 10);
        assert_eq!(t.read_u64(DATA), 7);
        assert_eq!(t.cpu.gpr[9], u64::MAX);
        assert_eq!(t.cpu.gpr[10], DATA + 0x100 + 41);
        assert_eq!(t.cpu.gpr[12], 0xffff);
        assert_eq!(t.cpu.gpr[0], 0xffff_8000);
        assert_eq!(t.cpu.gpr[2], 0xffff_ffff);
        // XLAT read 22 before AL was reloaded.
        let mut t = TestCpu::new(16);
        t.write(0x100, &[0, 11, 22, 33]);
        t.exec(|a| {
            a.mov(bx, 0x100u32).unwrap();
            a.mov(al, 3u32).unwrap();
            a.xlatb().unwrap();
        });
        assert_eq!(t.cpu.gpr[0] & 0xff, 33);
    }

    #[test]
    fn bound_raises_br() {
        let mut t = TestCpu::new(32);
        t.write(DATA, &[0, 0, 0, 0, 10, 0, 0, 0]);
        let (f, _) = t.fault(|a| {
            a.mov(eax, 11u32).unwrap();
            a.bound(eax, qword_ptr(DATA as u32)).unwrap();
        });
        assert_eq!(f, crate::cpu::exception(kite_hypervisor::x86::BR, None));
    }

    #[test]
    fn les_loads_far_pointer_in_real_mode_and_salc() {
        let mut t = TestCpu::new(16);
        t.write(0x100, &[0x34, 0x12, 0x78, 0x56]);
        t.exec(|a| {
            a.les(di, dword_ptr(0x100)).unwrap();
            a.stc().unwrap();
            a.salc().unwrap();
        });
        assert_eq!(t.cpu.gpr[7] & 0xffff, 0x1234);
        assert_eq!(t.cpu.seg[crate::cpu::Seg::Es as usize].selector, 0x5678);
        assert_eq!(t.cpu.seg[crate::cpu::Seg::Es as usize].base, 0x56780);
        assert_eq!(t.cpu.gpr[0] & 0xff, 0xff);
    }
}
