//! Multiply and divide: MUL, IMUL (one, two and three operands), DIV, IDIV.
//!
//! Undefined flags follow the AMD EPYC host (measured): MUL and IMUL leave
//! SF ZF AF PF unchanged; DIV and IDIV leave CF and OF unchanged, clear SF
//! ZF PF and set AF.

use iced_x86::Instruction;
use kite_hypervisor::x86::{self, RFLAGS_AF, RFLAGS_PF, RFLAGS_SF, RFLAGS_ZF};

use crate::cpu::flags::mask;
use crate::cpu::reg::{RAX, RDX};
use crate::cpu::{exception, Cpu, Fault, Res};

#[inline]
fn de() -> Fault {
    exception(x86::DE, None)
}

/// Sign-extend the low `bits` of `v`.
#[inline]
fn sext(v: u64, bits: u32) -> i64 {
    ((v << (64 - bits)) as i64) >> (64 - bits)
}

/// The implicit double-width accumulator: (low, high) halves.
fn acc_read(cpu: &Cpu, bits: u32) -> (u64, u64) {
    let m = mask(bits);
    match bits {
        8 => (cpu.gpr[RAX] & 0xff, (cpu.gpr[RAX] >> 8) & 0xff),
        _ => (cpu.gpr[RAX] & m, cpu.gpr[RDX] & m),
    }
}

/// Write the (low, high) halves of the accumulator: AL/AH, or rAX/rDX
/// (32-bit writes zero-extend, 16-bit ones merge).
fn acc_write(cpu: &mut Cpu, bits: u32, lo: u64, hi: u64) {
    use iced_x86::Register as R;
    match bits {
        8 => cpu.reg_write(R::AX, (lo & 0xff) | ((hi & 0xff) << 8)),
        16 => {
            cpu.reg_write(R::AX, lo);
            cpu.reg_write(R::DX, hi);
        }
        32 => {
            cpu.reg_write(R::EAX, lo);
            cpu.reg_write(R::EDX, hi);
        }
        _ => {
            cpu.gpr[RAX] = lo;
            cpu.gpr[RDX] = hi;
        }
    }
}

fn set_mul_flags(cpu: &mut Cpu, overflow: bool) {
    cpu.flags.set_cf_of(overflow, overflow);
}

fn set_div_flags(cpu: &mut Cpu) {
    cpu.flags.set(RFLAGS_SF | RFLAGS_ZF | RFLAGS_PF, false);
    cpu.flags.set(RFLAGS_AF, true);
}

pub fn mul(cpu: &mut Cpu, ins: &Instruction) -> Res {
    let size = cpu.op_size(ins, 0);
    let bits = size * 8;
    let src = cpu.read_op(ins, 0)? & mask(bits);
    let (a, _) = acc_read(cpu, bits);
    let p = u128::from(a) * u128::from(src);
    let lo = p as u64 & mask(bits);
    let hi = (p >> bits) as u64 & mask(bits);
    acc_write(cpu, bits, lo, hi);
    set_mul_flags(cpu, hi != 0);
    Ok(())
}

pub fn imul(cpu: &mut Cpu, ins: &Instruction) -> Res {
    let size = cpu.op_size(ins, 0);
    let bits = size * 8;
    if ins.op_count() == 1 {
        let src = sext(cpu.read_op(ins, 0)?, bits);
        let (a, _) = acc_read(cpu, bits);
        let p = i128::from(sext(a, bits)) * i128::from(src);
        let lo = p as u64 & mask(bits);
        let hi = (p >> bits) as u64 & mask(bits);
        let fits = i128::from(sext(lo, bits)) == p;
        acc_write(cpu, bits, lo, hi);
        set_mul_flags(cpu, !fits);
        return Ok(());
    }
    let (x, y) = if ins.op_count() == 3 {
        (cpu.read_op(ins, 1)?, cpu.read_op(ins, 2)?)
    } else {
        (cpu.read_op(ins, 0)?, cpu.read_op(ins, 1)?)
    };
    let p = i128::from(sext(x, bits)) * i128::from(sext(y, bits));
    let lo = p as u64 & mask(bits);
    let fits = i128::from(sext(lo, bits)) == p;
    cpu.reg_write(ins.op0_register(), lo);
    set_mul_flags(cpu, !fits);
    Ok(())
}

/// Two-operand IMUL specialized at decode time for 32/64-bit GPRs.
pub fn imul_rr<const SIZE: u32>(cpu: &mut Cpu, ins: &Instruction) -> Res {
    let bits = SIZE * 8;
    let d = super::gpr_index::<SIZE>(ins.op0_register());
    let s = super::gpr_index::<SIZE>(ins.op1_register());
    let p = i128::from(sext(cpu.gpr[d], bits)) * i128::from(sext(cpu.gpr[s], bits));
    let lo = p as u64 & mask(bits);
    let fits = i128::from(sext(lo, bits)) == p;
    cpu.gpr[d] = lo;
    set_mul_flags(cpu, !fits);
    Ok(())
}

pub fn div(cpu: &mut Cpu, ins: &Instruction) -> Res {
    let size = cpu.op_size(ins, 0);
    let bits = size * 8;
    let d = u128::from(cpu.read_op(ins, 0)? & mask(bits));
    if d == 0 {
        return Err(de());
    }
    let (lo, hi) = acc_read(cpu, bits);
    let n = (u128::from(hi) << bits) | u128::from(lo);
    let q = n / d;
    let r = n % d;
    if q > u128::from(mask(bits)) {
        return Err(de());
    }
    acc_write(cpu, bits, q as u64, r as u64);
    set_div_flags(cpu);
    Ok(())
}

pub fn idiv(cpu: &mut Cpu, ins: &Instruction) -> Res {
    let size = cpu.op_size(ins, 0);
    let bits = size * 8;
    let d = i128::from(sext(cpu.read_op(ins, 0)?, bits));
    if d == 0 {
        return Err(de());
    }
    let (lo, hi) = acc_read(cpu, bits);
    let n = ((u128::from(hi) << bits) | u128::from(lo)) as i128;
    // Sign-extend the 2*bits-wide dividend.
    let n = if bits == 64 {
        n
    } else {
        (n << (128 - 2 * bits)) >> (128 - 2 * bits)
    };
    let (Some(q), Some(r)) = (n.checked_div(d), n.checked_rem(d)) else {
        return Err(de());
    };
    let min = -(1i128 << (bits - 1));
    let max = (1i128 << (bits - 1)) - 1;
    if q < min || q > max {
        return Err(de());
    }
    acc_write(cpu, bits, q as u64 & mask(bits), r as u64 & mask(bits));
    set_div_flags(cpu);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use iced_x86::code_asm::*;
    use kite_hypervisor::x86::*;

    use crate::cpu::{exception, Fault};

    fn de() -> Fault {
        exception(DE, None)
    }

    #[test]
    fn divide_by_zero_and_overflow_raise_de_without_effect() {
        let mut t = TestCpu::new(64);
        let (f, rip) = t.fault(|a| {
            a.mov(eax, 7u32).unwrap();
            a.xor(ecx, ecx).unwrap();
            a.div(ecx).unwrap();
        });
        assert_eq!(f, de());
        assert_eq!(rip, t.cpu.rip);
        assert_eq!(t.cpu.gpr[0], 7);
        // INT64_MIN / -1 overflows.
        let mut t = TestCpu::new(64);
        let (f, _) = t.fault(|a| {
            a.mov(rax, i64::MIN).unwrap();
            a.cqo().unwrap();
            a.mov(rcx, -1i64).unwrap();
            a.idiv(rcx).unwrap();
        });
        assert_eq!(f, de());
        assert_eq!(t.cpu.gpr[0], i64::MIN as u64);
        // Unsigned quotient too large for AL.
        let mut t = TestCpu::new(16);
        let (f, _) = t.fault(|a| {
            a.mov(ax, 0x1000u32).unwrap();
            a.mov(cl, 2u32).unwrap();
            a.div(cl).unwrap();
        });
        assert_eq!(f, de());
    }

    #[test]
    fn mul_imul_div_results_and_flags() {
        let mut t = TestCpu::new(64);
        t.exec(|a| {
            a.mov(rax, u64::MAX).unwrap();
            a.mov(rcx, 2u64).unwrap();
            a.mul(rcx).unwrap();
            a.mov(r8, rax).unwrap();
            a.mov(r9, rdx).unwrap();
            a.mov(eax, -7i32).unwrap();
            a.cdq().unwrap();
            a.mov(ecx, 2u32).unwrap();
            a.idiv(ecx).unwrap();
            a.mov(r10, rax).unwrap();
            a.mov(r11, rdx).unwrap();
            a.imul_3(ebx, ecx, 0x4000_0000).unwrap();
        });
        assert_eq!(t.cpu.gpr[8], u64::MAX - 1);
        assert_eq!(t.cpu.gpr[9], 1);
        assert_eq!(t.cpu.gpr[10], (-3i32) as u32 as u64);
        assert_eq!(t.cpu.gpr[11], (-1i32) as u32 as u64);
        assert_eq!(t.cpu.gpr[3], 0x8000_0000);
        assert!(t.cpu.flags.cf() && t.cpu.flags.of());
        // DIV: AF set, SF ZF PF clear.
        let mut t = TestCpu::new(16);
        t.exec(|a| {
            a.mov(ax, 100u32).unwrap();
            a.mov(cl, 7u32).unwrap();
            a.div(cl).unwrap();
        });
        assert_eq!(t.cpu.gpr[0] & 0xffff, 0x020e);
        assert!(t.cpu.flags.af() && !t.cpu.flags.zf());
    }
}
