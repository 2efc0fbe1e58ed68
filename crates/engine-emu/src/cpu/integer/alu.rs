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
    match OP {
        ADD | ADC => cpu.flags.set_add(a, b, OP == ADC && carry, r, bits),
        SUB | SBB | CMP => cpu.flags.set_sub(a, b, OP == SBB && carry, r, bits),
        _ => cpu.flags.set_logic(r, bits),
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
