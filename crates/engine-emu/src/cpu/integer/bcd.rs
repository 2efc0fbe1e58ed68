//! Decimal adjusts: DAA DAS AAA AAS AAM AAD (invalid in 64-bit mode: the
//! decoder marks them invalid there, so they raise #UD).
//!
//! Flags the SDM leaves undefined (not measured: the host cannot run them
//! in 64-bit mode): DAA/DAS set OF as the overflow of the adjustment's add
//! or subtract; AAA/AAS set SF ZF PF from the final AL and clear OF;
//! AAM/AAD clear OF AF CF. AAA/AAS adjust AL and AH separately (AMD's
//! definition: AL+6 does not carry into AH).

use iced_x86::{Instruction, Register};
use kite_hypervisor::x86::{self, RFLAGS_AF, RFLAGS_CF};

use crate::cpu::reg::RAX;
use crate::cpu::{exception, Cpu, Res};

fn al(cpu: &Cpu) -> u8 {
    cpu.gpr[RAX] as u8
}

fn ah(cpu: &Cpu) -> u8 {
    (cpu.gpr[RAX] >> 8) as u8
}

fn parity(v: u8) -> bool {
    v.count_ones().is_multiple_of(2)
}

pub fn daa(cpu: &mut Cpu, _: &Instruction) -> Res {
    let old = al(cpu);
    let old_cf = cpu.flags.cf();
    let mut a = old;
    let mut af = false;
    let mut adj = 0u8;
    if old & 0xf > 9 || cpu.flags.af() {
        a = a.wrapping_add(6);
        adj = 6;
        af = true;
    }
    let cf = old > 0x99 || old_cf;
    if cf {
        a = a.wrapping_add(0x60);
        adj = adj.wrapping_add(0x60);
    }
    let of = (old ^ a) & (adj ^ a) & 0x80 != 0;
    cpu.reg_write(Register::AL, u64::from(a));
    cpu.flags
        .set_arith(cf, parity(a), af, a == 0, a & 0x80 != 0, of);
    Ok(())
}

pub fn das(cpu: &mut Cpu, _: &Instruction) -> Res {
    let old = al(cpu);
    let old_cf = cpu.flags.cf();
    let mut a = old;
    let mut af = false;
    let mut cf = false;
    let mut adj = 0u8;
    if old & 0xf > 9 || cpu.flags.af() {
        cf = old_cf || old < 6;
        a = a.wrapping_sub(6);
        adj = 6;
        af = true;
    }
    if old > 0x99 || old_cf {
        a = a.wrapping_sub(0x60);
        adj = adj.wrapping_add(0x60);
        cf = true;
    }
    let of = (old ^ adj) & (old ^ a) & 0x80 != 0;
    cpu.reg_write(Register::AL, u64::from(a));
    cpu.flags
        .set_arith(cf, parity(a), af, a == 0, a & 0x80 != 0, of);
    Ok(())
}

fn ascii_adjust(cpu: &mut Cpu, add: bool) -> Res {
    let (mut a, mut h) = (al(cpu), ah(cpu));
    let adjust = a & 0xf > 9 || cpu.flags.af();
    if adjust {
        if add {
            a = a.wrapping_add(6);
            h = h.wrapping_add(1);
        } else {
            a = a.wrapping_sub(6);
            h = h.wrapping_sub(1);
        }
    }
    a &= 0xf;
    cpu.reg_write(Register::AX, u64::from(a) | (u64::from(h) << 8));
    cpu.flags
        .set_arith(adjust, parity(a), adjust, a == 0, false, false);
    Ok(())
}

pub fn aaa(cpu: &mut Cpu, _: &Instruction) -> Res {
    ascii_adjust(cpu, true)
}

pub fn aas(cpu: &mut Cpu, _: &Instruction) -> Res {
    ascii_adjust(cpu, false)
}

pub fn aam(cpu: &mut Cpu, ins: &Instruction) -> Res {
    let base = ins.immediate8();
    if base == 0 {
        return Err(exception(x86::DE, None));
    }
    let a = al(cpu);
    let (q, r) = (a / base, a % base);
    cpu.reg_write(Register::AX, u64::from(r) | (u64::from(q) << 8));
    cpu.flags.set_logic(u64::from(r), 8);
    Ok(())
}

pub fn aad(cpu: &mut Cpu, ins: &Instruction) -> Res {
    let base = ins.immediate8();
    let a = al(cpu).wrapping_add(ah(cpu).wrapping_mul(base));
    cpu.reg_write(Register::AX, u64::from(a));
    cpu.flags.set_logic(u64::from(a), 8);
    cpu.flags.set(RFLAGS_AF | RFLAGS_CF, false);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use iced_x86::code_asm::*;

    #[test]
    fn daa_das_aaa_aam_aad() {
        let mut t = TestCpu::new(32);
        t.exec(|a| {
            a.mov(al, 0x15u32).unwrap();
            a.add(al, 0x27u32).unwrap();
            a.daa().unwrap(); // 0x42
            a.mov(bl, al).unwrap();
            a.mov(al, 0x42u32).unwrap();
            a.sub(al, 0x15u32).unwrap();
            a.das().unwrap(); // 0x27
            a.mov(bh, al).unwrap();
            a.mov(ax, 0x0009u32).unwrap();
            a.add(al, 0x05u32).unwrap();
            a.aaa().unwrap(); // AX = 0x0104
            a.mov(cx, ax).unwrap();
            a.mov(al, 47u32).unwrap();
            a.aam(10u32).unwrap(); // AX = 0x0407
            a.mov(dx, ax).unwrap();
            a.aad(10u32).unwrap(); // AX = 47
        });
        assert_eq!(t.cpu.gpr[3] & 0xffff, 0x2742);
        assert_eq!(t.cpu.gpr[1] & 0xffff, 0x0104);
        assert_eq!(t.cpu.gpr[2] & 0xffff, 0x0407);
        assert_eq!(t.cpu.gpr[0] & 0xffff, 47);
    }

    #[test]
    fn aam_zero_is_de_and_bcd_is_ud_in_64bit_mode() {
        let mut t = TestCpu::new(16);
        t.write(CODE, &[0xd4, 0x00, 0xf4]);
        t.cpu.seg[crate::cpu::Seg::Cs as usize] =
            kite_hypervisor::Segment::real_mode((CODE >> 4) as u16, true);
        t.cpu.rip = 0;
        assert_eq!(
            t.run().unwrap_err().0,
            crate::cpu::exception(kite_hypervisor::x86::DE, None)
        );
        let mut t = TestCpu::new(64);
        t.write(CODE, &[0x27, 0xf4]);
        t.cpu.rip = CODE;
        assert_eq!(t.run().unwrap_err().0, crate::cpu::ud());
    }
}
