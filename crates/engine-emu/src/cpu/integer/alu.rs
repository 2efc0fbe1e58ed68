//! Integer arithmetic and logic: ADD ADC SUB SBB CMP AND OR XOR TEST (two
//! operands) and NOT NEG INC DEC (one operand), LOCKable on memory.

use iced_x86::Instruction;

use crate::cpu::flags::mask;
use crate::cpu::{Cpu, Res};

pub const ADD: u8 = 0;
pub const OR: u8 = 1;
pub const ADC: u8 = 2;
pub const SBB: u8 = 3;
pub const AND: u8 = 4;
pub const SUB: u8 = 5;
pub const XOR: u8 = 6;
pub const CMP: u8 = 7;
pub const TEST: u8 = 8;

pub const NOT: u8 = 0;
pub const NEG: u8 = 1;
pub const INC: u8 = 2;
pub const DEC: u8 = 3;

#[inline(always)]
fn compute<const OP: u8>(a: u64, b: u64, carry: bool) -> u64 {
    match OP {
        ADD => a.wrapping_add(b),
        ADC => a.wrapping_add(b).wrapping_add(u64::from(carry)),
        SUB | CMP => a.wrapping_sub(b),
        SBB => a.wrapping_sub(b).wrapping_sub(u64::from(carry)),
        AND | TEST => a & b,
        OR => a | b,
        _ => a ^ b,
    }
}

/// Two-operand arithmetic/logic: `op0 = op0 OP op1`.
pub fn binop<const OP: u8>(cpu: &mut Cpu, ins: &Instruction) -> Res {
    let size = cpu.op_size(ins, 0);
    let bits = size * 8;
    let m = mask(bits);
    let b = cpu.read_op(ins, 1)? & m;
    let write = !matches!(OP, CMP | TEST);
    let loc = cpu.loc(ins, 0, size, write)?;
    let carry = cpu.flags.cf();
    let f = move |a: u64| compute::<OP>(a & m, b, carry) & m;
    let (a, r) = if write {
        cpu.rmw(loc, size, ins.has_lock_prefix(), f)?
    } else {
        let a = cpu.loc_read(loc, size)?;
        (a, f(a))
    };
    let a = a & m;
    binop_flags::<OP>(cpu, a, b, carry, r, bits);
    Ok(())
}

/// Flags of a two-operand ALU op of `bits` bits.
#[inline(always)]
fn binop_flags<const OP: u8>(cpu: &mut Cpu, a: u64, b: u64, carry: bool, r: u64, bits: u32) {
    match OP {
        ADD | ADC => cpu.flags.set_add(a, b, OP == ADC && carry, r, bits),
        SUB | SBB | CMP => cpu.flags.set_sub(a, b, OP == SBB && carry, r, bits),
        _ => cpu.flags.set_logic(r, bits),
    }
}

/// `binop` specialized at decode time for an 8/16-bit register destination
/// (`SIZE` bytes; AH..BH and partial writes through `reg_read`/`reg_write`)
/// and a source that is a register (`SRC` 0), an immediate (1) or memory (2)
/// with the operand form `FORM` (`addr32`).
pub fn binop_small_r<const OP: u8, const SIZE: u32, const SRC: u8, const FORM: u8>(
    cpu: &mut Cpu,
    ins: &Instruction,
) -> Res {
    let m = mask(SIZE * 8);
    let b = match SRC {
        0 => cpu.reg_read(ins.op1_register()),
        1 => ins.immediate(1),
        _ => cpu.mem_read::<FORM>(ins, SIZE)?,
    } & m;
    let dst = ins.op0_register();
    let a = cpu.reg_read(dst) & m;
    let carry = cpu.flags.cf();
    let r = compute::<OP>(a, b, carry) & m;
    if !matches!(OP, CMP | TEST) {
        cpu.reg_write(dst, r);
    }
    binop_flags::<OP>(cpu, a, b, carry, r, SIZE * 8);
    Ok(())
}

/// `binop` specialized at decode time for a 32/64-bit GPR destination
/// (`SIZE` bytes) and a GPR source of the same size, no LOCK.
pub fn binop_rr<const OP: u8, const SIZE: u32>(cpu: &mut Cpu, ins: &Instruction) -> Res {
    let m = mask(SIZE * 8);
    let d = super::gpr_index::<SIZE>(ins.op0_register());
    let s = super::gpr_index::<SIZE>(ins.op1_register());
    let a = cpu.gpr[d] & m;
    let b = cpu.gpr[s] & m;
    let carry = cpu.flags.cf();
    let r = compute::<OP>(a, b, carry) & m;
    if !matches!(OP, CMP | TEST) {
        cpu.gpr[d] = r;
    }
    binop_flags::<OP>(cpu, a, b, carry, r, SIZE * 8);
    Ok(())
}

/// `binop` specialized for a 32/64-bit GPR destination and an immediate.
pub fn binop_ri<const OP: u8, const SIZE: u32>(cpu: &mut Cpu, ins: &Instruction) -> Res {
    let m = mask(SIZE * 8);
    let d = super::gpr_index::<SIZE>(ins.op0_register());
    let a = cpu.gpr[d] & m;
    let b = ins.immediate(1) & m;
    let carry = cpu.flags.cf();
    let r = compute::<OP>(a, b, carry) & m;
    if !matches!(OP, CMP | TEST) {
        cpu.gpr[d] = r;
    }
    binop_flags::<OP>(cpu, a, b, carry, r, SIZE * 8);
    Ok(())
}

/// `binop` specialized for a 32/64-bit GPR destination and a memory source
/// of operand form `FORM` (`addr32`).
pub fn binop_rm<const OP: u8, const SIZE: u32, const FORM: u8>(
    cpu: &mut Cpu,
    ins: &Instruction,
) -> Res {
    let m = mask(SIZE * 8);
    let d = super::gpr_index::<SIZE>(ins.op0_register());
    let b = cpu.mem_read::<FORM>(ins, SIZE)? & m;
    let a = cpu.gpr[d] & m;
    let carry = cpu.flags.cf();
    let r = compute::<OP>(a, b, carry) & m;
    if !matches!(OP, CMP | TEST) {
        cpu.gpr[d] = r;
    }
    binop_flags::<OP>(cpu, a, b, carry, r, SIZE * 8);
    Ok(())
}

/// `binop` specialized for a 32/64-bit memory destination (no LOCK) and a
/// GPR source (`IMM` false) or an immediate (`IMM` true); 8/16-bit memory
/// destinations with an immediate only. The operand form is `FORM`
/// (`addr32`).
pub fn binop_m<const OP: u8, const SIZE: u32, const IMM: bool, const FORM: u8>(
    cpu: &mut Cpu,
    ins: &Instruction,
) -> Res {
    let m = mask(SIZE * 8);
    let b = if IMM {
        ins.immediate(1)
    } else {
        cpu.gpr[super::gpr_index::<SIZE>(ins.op1_register())]
    } & m;
    let write = !matches!(OP, CMP | TEST);
    let lin = cpu.mem_lin::<FORM>(ins, SIZE, write)?;
    let a = cpu.read_lin(lin, SIZE, false)? & m;
    let carry = cpu.flags.cf();
    let r = compute::<OP>(a, b, carry) & m;
    if write {
        cpu.write_lin(lin, SIZE, r, false)?;
    }
    binop_flags::<OP>(cpu, a, b, carry, r, SIZE * 8);
    Ok(())
}

/// INC/DEC specialized for a 32/64-bit GPR.
pub fn incdec_r<const OP: u8, const SIZE: u32>(cpu: &mut Cpu, ins: &Instruction) -> Res {
    let m = mask(SIZE * 8);
    let d = super::gpr_index::<SIZE>(ins.op0_register());
    let a = cpu.gpr[d] & m;
    if OP == INC {
        let r = a.wrapping_add(1) & m;
        cpu.gpr[d] = r;
        cpu.flags.set_inc(a, r, SIZE * 8);
    } else {
        let r = a.wrapping_sub(1) & m;
        cpu.gpr[d] = r;
        cpu.flags.set_dec(a, r, SIZE * 8);
    }
    Ok(())
}

/// One-operand arithmetic: NOT NEG INC DEC.
pub fn unop<const OP: u8>(cpu: &mut Cpu, ins: &Instruction) -> Res {
    let size = cpu.op_size(ins, 0);
    let bits = size * 8;
    let m = mask(bits);
    let loc = cpu.loc(ins, 0, size, true)?;
    let (a, r) = cpu.rmw(loc, size, ins.has_lock_prefix(), move |a| {
        (match OP {
            NOT => !a,
            NEG => 0u64.wrapping_sub(a),
            INC => a.wrapping_add(1),
            _ => a.wrapping_sub(1),
        }) & m
    })?;
    let a = a & m;
    match OP {
        NEG => cpu.flags.set_sub(0, a, false, r, bits),
        INC => cpu.flags.set_inc(a, r, bits),
        DEC => cpu.flags.set_dec(a, r, bits),
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use iced_x86::code_asm::*;
    use kite_hypervisor::x86::*;

    const ARITH: u64 = RFLAGS_CF | RFLAGS_PF | RFLAGS_AF | RFLAGS_ZF | RFLAGS_SF | RFLAGS_OF;

    #[test]
    fn add_sets_of_sf_af_and_zero_extends() {
        let mut t = TestCpu::new(64);
        t.cpu.gpr[0] = 0xffff_ffff_7fff_ffff;
        t.exec(|a| {
            a.add(eax, 1u32).unwrap();
        });
        assert_eq!(t.cpu.gpr[0], 0x8000_0000);
        assert_eq!(
            t.rflags() & ARITH,
            RFLAGS_OF | RFLAGS_SF | RFLAGS_AF | RFLAGS_PF
        );
    }

    #[test]
    fn adc_sbb_chain_and_neg_inc() {
        let mut t = TestCpu::new(64);
        t.exec(|a| {
            a.mov(rax, -1i64).unwrap();
            a.mov(rdx, 0u64).unwrap();
            a.add(rax, 1i32).unwrap(); // CF=1
            a.adc(rdx, 0i32).unwrap(); // rdx = 1
            a.mov(rbx, 0u64).unwrap();
            a.sub(rbx, 1i32).unwrap(); // CF=1
            a.sbb(rcx, rcx).unwrap(); // rcx = -1
            a.stc().unwrap();
            a.inc(rsi).unwrap(); // CF stays 1
            a.setc(dil).unwrap();
            a.neg(r8).unwrap(); // r8=0: CF=0
            a.setc(r9b).unwrap();
        });
        assert_eq!(t.cpu.gpr[2], 1);
        assert_eq!(t.cpu.gpr[1], u64::MAX);
        assert_eq!(t.cpu.gpr[7] & 0xff, 1);
        assert_eq!(t.cpu.gpr[9] & 0xff, 0);
    }

    #[test]
    fn logic_clears_cf_of_af_and_cmp_does_not_write() {
        let mut t = TestCpu::new(32);
        t.exec(|a| {
            a.mov(eax, 0x80u32).unwrap();
            a.stc().unwrap();
            a.and(al, 0xffu32).unwrap();
            a.mov(dword_ptr(DATA as u32), 5u32).unwrap();
            a.cmp(dword_ptr(DATA as u32), 6u32).unwrap();
        });
        // CMP 5,6: CF SF AF PF set (0xffffffff has even parity in its low byte).
        assert_eq!(
            t.rflags() & ARITH,
            RFLAGS_CF | RFLAGS_SF | RFLAGS_AF | RFLAGS_PF
        );
        assert_eq!(t.read_u64(DATA) & 0xffff_ffff, 5);
        let mut t = TestCpu::new(32);
        t.exec(|a| {
            a.mov(eax, 0x80u32).unwrap();
            a.stc().unwrap();
            a.or(al, 0u32).unwrap();
        });
        assert_eq!(t.rflags() & ARITH, RFLAGS_SF);
    }

    #[test]
    fn locked_add_to_memory_16bit_mode() {
        let mut t = TestCpu::new(16);
        t.write_u64(0x500, 0xfffe);
        t.exec(|a| {
            a.lock().add(word_ptr(0x500), 3u32).unwrap();
        });
        assert_eq!(t.read_u64(0x500), 1);
        assert!(t.cpu.flags.cf());
    }
}
