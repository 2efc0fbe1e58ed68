//! Shifts and rotates: SHL/SAL SHR SAR ROL ROR RCL RCR, SHLD SHRD.
//!
//! Count is masked to 5 bits (6 for 64-bit operands). A masked count of 0
//! leaves the flags alone, but a register destination is still written (so
//! a 32-bit one is zero-extended in 64-bit mode), as hardware does.
//!
//! Flags the SDM leaves undefined follow the AMD EPYC host (measured):
//! - shifts (SHL SHR SAR SHLD SHRD) with a nonzero count set AF = 1;
//! - OF is computed for every nonzero count, not only 1: left shifts and
//!   rotates give MSB(result) XOR CF, right ones give the XOR of the two top
//!   bits of the result (for a count of 1 both equal the SDM's definition);
//! - 8/16-bit SHL/SHR with counts >= the width shift the bits out through a
//!   wider value (CF is the last bit shifted out, 0 beyond);
//! - RCL/RCR with count mod (width + 1) == 0 keep CF and still set OF;
//! - 16-bit SHLD with count > 16 shifts dest:src:src (48 bits) and clears
//!   CF and OF (count 16 sets OF = CF); 16-bit SHRD with count > 16 shifts
//!   src:src:dest and clears CF.

use iced_x86::Instruction;

use super::Loc;
use crate::cpu::flags::{mask, sign_bit};
use crate::cpu::{Cpu, Res};

pub const SHL: u8 = 0;
pub const SHR: u8 = 1;
pub const SAR: u8 = 2;
pub const ROL: u8 = 3;
pub const ROR: u8 = 4;
pub const RCL: u8 = 5;
pub const RCR: u8 = 6;

/// Result and CF of a shift/rotate by a nonzero masked `count`.
#[inline]
fn compute<const OP: u8>(a: u64, count: u32, bits: u32, cf_in: bool) -> (u64, bool) {
    let m = mask(bits);
    match OP {
        SHL => {
            let x = u128::from(a) << count;
            ((x as u64) & m, (x >> bits) & 1 != 0)
        }
        SHR => (a >> count, (a >> (count - 1)) & 1 != 0),
        SAR => {
            let sa = ((a << (64 - bits)) as i64) >> (64 - bits);
            ((sa >> count) as u64 & m, (sa >> (count - 1)) & 1 != 0)
        }
        ROL => {
            let c = count % bits;
            let r = if c == 0 {
                a
            } else {
                ((a << c) | (a >> (bits - c))) & m
            };
            (r, r & 1 != 0)
        }
        ROR => {
            let c = count % bits;
            let r = if c == 0 {
                a
            } else {
                ((a >> c) | (a << (bits - c))) & m
            };
            (r, r & sign_bit(bits) != 0)
        }
        _ => {
            // RCL / RCR: rotate the (bits + 1)-bit value CF:a.
            let c = count % (bits + 1);
            if c == 0 {
                return (a, cf_in);
            }
            let w = bits + 1;
            let wm = (1u128 << w) - 1;
            let x = (u128::from(cf_in) << bits) | u128::from(a);
            let y = if OP == RCL {
                ((x << c) | (x >> (w - c))) & wm
            } else {
                ((x >> c) | (x << (w - c))) & wm
            };
            ((y as u64) & m, (y >> bits) & 1 != 0)
        }
    }
}

/// OF of a left shift/rotate: MSB(result) XOR CF.
#[inline]
fn of_left(r: u64, cf: bool, bits: u32) -> bool {
    (r & sign_bit(bits) != 0) != cf
}

/// OF of a right shift/rotate: XOR of the two top bits of the result.
#[inline]
fn of_right(r: u64, bits: u32) -> bool {
    ((r >> (bits - 1)) ^ (r >> (bits - 2))) & 1 != 0
}

/// A masked count of zero: flags unchanged; a register destination is
/// rewritten (zero-extending a 32-bit one), memory is only read.
fn count_zero(cpu: &mut Cpu, loc: Loc, size: u32) -> Res {
    match loc {
        Loc::Reg(r) => {
            let v = cpu.reg_read(r);
            cpu.reg_write(r, v);
        }
        Loc::Mem(_) => {
            cpu.loc_read(loc, size)?;
        }
    }
    Ok(())
}

#[inline]
fn count_mask(bits: u32) -> u32 {
    if bits == 64 {
        0x3f
    } else {
        0x1f
    }
}

pub fn shift<const OP: u8>(cpu: &mut Cpu, ins: &Instruction) -> Res {
    let size = cpu.op_size(ins, 0);
    let bits = size * 8;
    let count = cpu.read_op(ins, 1)? as u32 & count_mask(bits);
    let loc = cpu.loc(ins, 0, size, true)?;
    if count == 0 {
        return count_zero(cpu, loc, size);
    }
    let a = cpu.loc_read(loc, size)? & mask(bits);
    let (r, cf) = compute::<OP>(a, count, bits, cpu.flags.cf());
    cpu.loc_write(loc, size, r)?;
    shift_flags::<OP>(cpu, r, cf, bits);
    Ok(())
}

/// The flags of a shift/rotate by a nonzero count.
#[inline(always)]
fn shift_flags<const OP: u8>(cpu: &mut Cpu, r: u64, cf: bool, bits: u32) {
    match OP {
        SHL | SHR | SAR => {
            let of = if OP == SHL {
                of_left(r, cf, bits)
            } else {
                of_right(r, bits)
            };
            cpu.flags.set_shift(r, bits, cf, of);
        }
        _ => {
            let of = if OP == ROL || OP == RCL {
                of_left(r, cf, bits)
            } else {
                of_right(r, bits)
            };
            cpu.flags.set_cf_of(cf, of);
        }
    }
}

/// `shift` specialized at decode time for a 32/64-bit GPR destination and
/// a count in CL (`CL`) or an immediate (including the implicit 1).
pub fn shift_r<const OP: u8, const SIZE: u32, const CL: bool>(
    cpu: &mut Cpu,
    ins: &Instruction,
) -> Res {
    let bits = SIZE * 8;
    let count = if CL {
        cpu.gpr[crate::cpu::reg::RCX] as u32
    } else {
        u32::from(ins.immediate8())
    } & count_mask(bits);
    let d = super::gpr_index::<SIZE>(ins.op0_register());
    let a = cpu.gpr[d] & mask(bits);
    if count == 0 {
        cpu.gpr[d] = a;
        return Ok(());
    }
    let (r, cf) = compute::<OP>(a, count, bits, cpu.flags.cf());
    cpu.gpr[d] = r;
    shift_flags::<OP>(cpu, r, cf, bits);
    Ok(())
}

/// Shared part of SHLD/SHRD: returns (result, CF, OF).
fn double_shift(left: bool, a: u64, b: u64, count: u32, bits: u32) -> (u64, bool, bool) {
    let m = mask(bits);
    if bits == 16 {
        let (a, b) = (u128::from(a), u128::from(b));
        if left {
            let x = (a << 32) | (b << 16) | b;
            let r = ((x << count) >> 32) as u64 & m;
            if count > 16 {
                return (r, false, false);
            }
            let cf = (x >> (48 - count)) & 1 != 0;
            // At exactly 16 the host sets OF = CF.
            let of = if count == 16 {
                cf
            } else {
                of_left(r, cf, bits)
            };
            return (r, cf, of);
        }
        let x = (b << 32) | (b << 16) | a;
        let r = (x >> count) as u64 & m;
        let cf = count <= 16 && (x >> (count - 1)) & 1 != 0;
        return (r, cf, of_right(r, bits));
    }
    let (a, b) = (u128::from(a), u128::from(b));
    if left {
        let x = (a << bits) | b;
        let r = ((x << count) >> bits) as u64 & m;
        let cf = (x >> (2 * bits - count)) & 1 != 0;
        (r, cf, of_left(r, cf, bits))
    } else {
        let x = (b << bits) | a;
        let r = (x >> count) as u64 & m;
        let cf = (x >> (count - 1)) & 1 != 0;
        (r, cf, of_right(r, bits))
    }
}

fn shld_shrd(cpu: &mut Cpu, ins: &Instruction, left: bool) -> Res {
    let size = cpu.op_size(ins, 0);
    let bits = size * 8;
    let count = cpu.read_op(ins, 2)? as u32 & count_mask(bits);
    let b = cpu.read_op(ins, 1)? & mask(bits);
    let loc = cpu.loc(ins, 0, size, true)?;
    if count == 0 {
        return count_zero(cpu, loc, size);
    }
    let a = cpu.loc_read(loc, size)? & mask(bits);
    let (r, cf, of) = double_shift(left, a, b, count, bits);
    cpu.loc_write(loc, size, r)?;
    cpu.flags.set_shift(r, bits, cf, of);
    Ok(())
}

pub fn shld(cpu: &mut Cpu, ins: &Instruction) -> Res {
    shld_shrd(cpu, ins, true)
}

pub fn shrd(cpu: &mut Cpu, ins: &Instruction) -> Res {
    shld_shrd(cpu, ins, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shl_counts_at_and_beyond_width() {
        // Measured on the host: shl ax,16 of 1 -> 0 with CF=1; shl ax,17 -> CF=0.
        assert_eq!(compute::<SHL>(1, 16, 16, false), (0, true));
        assert_eq!(compute::<SHL>(3, 17, 16, false), (0, false));
        assert_eq!(compute::<SHR>(0x8000, 16, 16, false), (0, true));
        assert_eq!(compute::<SHR>(0x8000, 17, 16, false), (0, false));
        assert_eq!(compute::<SAR>(0x8000, 20, 16, false), (0xffff, true));
        assert_eq!(compute::<SHL>(1 << 63, 1, 64, false), (0, true));
    }

    #[test]
    fn rotates() {
        assert_eq!(compute::<ROL>(0x81, 8, 8, false), (0x81, true));
        assert_eq!(compute::<ROR>(0x40, 24, 8, true), (0x40, false));
        assert_eq!(
            compute::<ROL>(0x8000_0000_0000_0001, 1, 64, false),
            (3, true)
        );
        // rcl al,9 (count mod 9 == 0) keeps value and CF.
        assert_eq!(compute::<RCL>(0x81, 9, 8, true), (0x81, true));
        // rcl al,1 of 0x80 with CF=1: 0x01, CF=1.
        assert_eq!(compute::<RCL>(0x80, 1, 8, true), (0x01, true));
        // rcr al,1 of 0x01 with CF=0: 0x00, CF=1.
        assert_eq!(compute::<RCR>(0x01, 1, 8, false), (0x00, true));
        assert_eq!(
            compute::<RCR>(0, 1, 64, true),
            (0x8000_0000_0000_0000, false)
        );
    }

    #[test]
    fn double_shifts_match_host() {
        // Values measured on the AMD EPYC host.
        assert_eq!(double_shift(true, 0x1234, 0x5678, 17, 16).0, 0xacf0);
        assert_eq!(double_shift(true, 0x1234, 0x5678, 20, 16).0, 0x6785);
        assert_eq!(double_shift(true, 0x1234, 0x5678, 31, 16).0, 0x2b3c);
        assert_eq!(
            double_shift(true, 0x8421, 0x0ff0, 16, 16),
            (0x0ff0, true, true)
        );
        assert_eq!(
            double_shift(false, 0x1234, 0x5678, 20, 16),
            (0x8567, false, true)
        );
        assert_eq!(double_shift(false, 0x8421, 0x0ff0, 24, 16).0, 0xf00f);
        assert_eq!(
            double_shift(false, 0x8421, 0x0ff0, 16, 16),
            (0x0ff0, true, false)
        );
        assert_eq!(
            double_shift(true, 0x529e_3719, 0x372d, 1, 32),
            (0xa53c_6e32, false, true)
        );
    }
}

#[cfg(test)]
mod vm_tests {
    use super::super::test_support::*;
    use iced_x86::code_asm::*;
    use kite_hypervisor::x86::*;

    #[test]
    fn count_zero_keeps_flags_but_zero_extends() {
        let mut t = TestCpu::new(64);
        t.cpu.gpr[0] = 0xffff_ffff_8000_0001;
        t.cpu.flags.set(RFLAGS_OF | RFLAGS_CF | RFLAGS_ZF, true);
        let before = t.rflags();
        t.exec(|a| {
            a.shl(eax, 32u32).unwrap(); // masked to 0
        });
        assert_eq!(t.cpu.gpr[0], 0x8000_0001);
        assert_eq!(t.rflags(), before);
    }

    #[test]
    fn shifts_set_af_and_of() {
        let mut t = TestCpu::new(64);
        t.exec(|a| {
            a.mov(eax, 0x4000_0000u32).unwrap();
            a.shl(eax, 1u32).unwrap();
        });
        assert_eq!(t.cpu.gpr[0], 0x8000_0000);
        let f = t.rflags();
        assert!(f & RFLAGS_OF != 0 && f & RFLAGS_AF != 0 && f & RFLAGS_CF == 0);
        let mut t = TestCpu::new(64);
        t.exec(|a| {
            a.mov(rax, -16i64).unwrap();
            a.mov(cl, 66u32).unwrap(); // masked to 2
            a.sar(rax, cl).unwrap();
        });
        assert_eq!(t.cpu.gpr[0], (-4i64) as u64);
        assert!(t.rflags() & (RFLAGS_OF | RFLAGS_CF) == 0);
    }

    #[test]
    fn rcl_through_carry_on_memory() {
        let mut t = TestCpu::new(32);
        t.write(DATA, &[0x80]);
        t.exec(|a| {
            a.stc().unwrap();
            a.rcl(byte_ptr(DATA as u32), 1u32).unwrap();
        });
        assert_eq!(t.read(DATA, 1)[0], 0x01);
        assert!(t.cpu.flags.cf());
        // OF = MSB(result) XOR CF = 0 ^ 1.
        assert!(t.cpu.flags.of());
    }
}
