//! Decimal adjusts: DAA DAS AAA AAS AAM AAD (invalid in 64-bit mode: the
//! decoder marks them invalid there, so they raise #UD).
//!
//! Results and the flags the SDM leaves undefined match the AMD EPYC host
//! exactly (measured in compatibility mode over every AX value): DAA/DAS
//! set OF as the overflow of the adjustment's add or subtract; AAA/AAS
//! compute AX +/- 0x106 and take OF SF ZF PF from that 16-bit operation (or
//! from AX unchanged, OF=0, when no adjustment is needed); AAM sets flags
//! as a logic result of AL; AAD sets them as the 8-bit ADD AL, AH*imm.

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
    let ax = cpu.gpr[RAX] & 0xffff;
    let adjust = ax & 0xf > 9 || cpu.flags.af();
    if adjust {
        // AX +/- 0x106, flags as that 16-bit add/subtract, CF = AF = 1.
        let t = if add {
            ax.wrapping_add(0x106)
        } else {
            ax.wrapping_sub(0x106)
        } & 0xffff;
        if add {
            cpu.flags.set_add(ax, 0x106, false, t, 16);
        } else {
            cpu.flags.set_sub(ax, 0x106, false, t, 16);
        }
        cpu.flags.set(RFLAGS_AF | RFLAGS_CF, true);
        cpu.reg_write(Register::AX, t & 0xff0f);
    } else {
        let sf = ax & 0x8000 != 0;
        cpu.flags
            .set_arith(false, parity(ax as u8), false, ax == 0, sf, false);
        cpu.reg_write(Register::AX, ax & 0xff0f);
    }
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
    let (l, p) = (al(cpu), ah(cpu).wrapping_mul(base));
    let a = l.wrapping_add(p);
    cpu.reg_write(Register::AX, u64::from(a));
    cpu.flags
        .set_add(u64::from(l), u64::from(p), false, u64::from(a), 8);
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

    /// (instruction bytes, AX in, flags in, AX out, flags out) measured on
    /// the AMD EPYC host in compatibility mode.
    const HOST: &[(&[u8], u16, u64, u16, u64)] = &[
        (&[0x37], 0x00fa, 0x000, 0x0200, 0x015),
        (&[0x37], 0x8000, 0x000, 0x8000, 0x084),
        (&[0x37], 0x000a, 0x000, 0x0100, 0x011),
        (&[0x3f], 0x8000, 0x010, 0x7e0a, 0x815),
        (&[0x3f], 0x0006, 0x010, 0xff00, 0x095),
        (&[0x3f], 0x0010, 0x000, 0x0000, 0x000),
        (&[0xd5, 0x0a], 0x0176, 0x000, 0x0080, 0x890),
        (&[0xd5, 0x0a], 0x01f6, 0x000, 0x0000, 0x055),
        (&[0x27], 0x0000, 0x001, 0x0060, 0x005),
        (&[0x27], 0x0000, 0x010, 0x0006, 0x014),
    ];

    #[test]
    fn matches_host_measurements() {
        const ARITH: u64 = 0x8d5;
        for &(bytes, ax_in, f0, ax1, f1) in HOST {
            let mut t = TestCpu::new(32);
            let mut code = bytes.to_vec();
            code.push(0xf4);
            t.write(CODE, &code);
            t.cpu.rip = CODE;
            t.cpu.gpr[0] = u64::from(ax_in);
            t.cpu.flags.set_rflags(f0 | 2);
            t.run().unwrap();
            assert_eq!(
                (t.cpu.gpr[0] as u16, t.rflags() & ARITH),
                (ax1, f1),
                "{bytes:02x?} ax={ax_in:#06x} flags={f0:#x}"
            );
        }
    }
}
