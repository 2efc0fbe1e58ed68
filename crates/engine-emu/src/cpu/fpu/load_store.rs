//! x87 loads and stores: FLD/FST/FSTP (m32fp, m64fp, m80fp, ST(i)),
//! FILD/FIST/FISTP/FISTTP (m16, m32, m64), FBLD/FBSTP, the constants
//! (FLD1, FLDZ, FLDPI, FLDL2E, FLDL2T, FLDLG2, FLDLN2), FXCH, FCMOVcc,
//! FFREE/FFREEP, FINCSTP/FDECSTP, FNOP.

use iced_x86::{Instruction, Mnemonic as M, OpKind};

use super::host::{self, Kernel};
use super::{st_index, sw, F80};
use crate::cpu::exec::Handler;
use crate::cpu::{Cpu, Res};

pub fn handler(ins: &Instruction) -> Option<Handler> {
    Some(match ins.mnemonic() {
        M::Fld | M::Fild | M::Fbld => load,
        M::Fld1 | M::Fldl2t | M::Fldl2e | M::Fldpi | M::Fldlg2 | M::Fldln2 | M::Fldz => constant,
        M::Fst | M::Fstp | M::Fstpnce | M::Fist | M::Fistp | M::Fisttp | M::Fbstp => store,
        M::Fxch => fxch,
        M::Fcmovb
        | M::Fcmove
        | M::Fcmovbe
        | M::Fcmovu
        | M::Fcmovnb
        | M::Fcmovne
        | M::Fcmovnbe
        | M::Fcmovnu => fcmov,
        M::Ffree | M::Ffreep => ffree,
        M::Fincstp | M::Fdecstp => incdec,
        M::Fnop => fnop,
        _ => return None,
    })
}

fn buf_u64(v: u64) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&v.to_le_bytes());
    b
}

/// Push `v` (overflow when ST(7) is in use; masked: push the indefinite).
fn push_checked(cpu: &mut Cpu, v: F80) {
    if !cpu.fpu.is_empty(7) {
        if cpu.x87_overflow() {
            cpu.fpu.push(F80::INDEFINITE);
        }
        return;
    }
    cpu.fpu.fsw &= !sw::C1;
    cpu.fpu.push(v);
}

fn load(cpu: &mut Cpu, ins: &Instruction) -> Res {
    cpu.fpu_check()?;
    let m = ins.mnemonic();
    let value = if ins.op_kind(0) == OpKind::Register {
        let i = st_index(ins.op_register(0));
        cpu.x87_note(ins);
        if cpu.fpu.is_empty(i) {
            if cpu.x87_underflow() {
                cpu.fpu.push(F80::INDEFINITE);
            }
            return Ok(());
        }
        cpu.fpu.st(i)
    } else {
        let size = ins.memory_size().size() as u32;
        let seg = cpu.mem_seg(ins);
        let off = cpu.ea(ins);
        let mut b = [0u8; 16];
        cpu.read_mem_bytes(seg, off, &mut b[..size as usize])?;
        cpu.x87_note(ins);
        if size == 10 && m == M::Fld {
            F80::from_bytes(&b)
        } else {
            let k: Kernel = match (m, size) {
                (M::Fld, 4) => host::ld_m32,
                (M::Fld, _) => host::ld_m64,
                (M::Fild, 2) => host::ild_16,
                (M::Fild, 4) => host::ild_32,
                (M::Fild, _) => host::ild_64,
                _ => host::bld,
            };
            let out = k(cpu.fpu.fcw, cpu.fpu.fsw, &[0; 16], &b);
            if !cpu.fpu.is_empty(7) {
                if cpu.x87_overflow() {
                    cpu.fpu.push(F80::INDEFINITE);
                }
                return Ok(());
            }
            cpu.x87_raise(out.exc);
            // The hardware loads unless an unmasked exception stopped it
            // (a denormal source still loads): the host's push says which.
            if out.top() != 7 {
                return Ok(());
            }
            F80::from_bytes(&out.r)
        }
    };
    push_checked(cpu, value);
    Ok(())
}

fn constant(cpu: &mut Cpu, ins: &Instruction) -> Res {
    cpu.fpu_check()?;
    cpu.x87_note(ins);
    let k: Kernel = match ins.mnemonic() {
        M::Fld1 => host::c_one,
        M::Fldl2t => host::c_l2t,
        M::Fldl2e => host::c_l2e,
        M::Fldpi => host::c_pi,
        M::Fldlg2 => host::c_lg2,
        M::Fldln2 => host::c_ln2,
        _ => host::c_zero,
    };
    let out = k(cpu.fpu.fcw, cpu.fpu.fsw, &[0; 16], &[0; 16]);
    push_checked(cpu, F80::from_bytes(&out.r));
    Ok(())
}

fn store(cpu: &mut Cpu, ins: &Instruction) -> Res {
    cpu.fpu_check()?;
    let m = ins.mnemonic();
    let pop = matches!(m, M::Fstp | M::Fstpnce | M::Fistp | M::Fisttp | M::Fbstp);
    let empty = cpu.fpu.is_empty(0);
    if m == M::Fstpnce {
        // FSTPNCE (D9 D8+i): no empty check; an empty ST(0) leaves the
        // destination as it was (what the hardware does).
        let i = st_index(ins.op_register(0));
        cpu.x87_note(ins);
        if !empty {
            let v = cpu.fpu.st(0);
            cpu.fpu.set_st(i, v);
        }
        cpu.fpu.fsw &= !sw::C1;
        cpu.fpu.pop();
        return Ok(());
    }
    if ins.op_kind(0) == OpKind::Register {
        let i = st_index(ins.op_register(0));
        cpu.x87_note(ins);
        if empty {
            if cpu.x87_underflow() {
                cpu.fpu.set_st(i, F80::INDEFINITE);
                if pop {
                    cpu.fpu.pop();
                }
            }
            return Ok(());
        }
        let v = cpu.fpu.st(0);
        cpu.fpu.set_st(i, v);
        cpu.fpu.fsw &= !sw::C1;
        if pop {
            cpu.fpu.pop();
        }
        return Ok(());
    }
    let size = ins.memory_size().size() as u32;
    // The memory image, the exceptions the store raises, C1, and whether
    // the store (and pop) happens.
    let (img, exc, c1, done): ([u8; 16], u16, u16, bool) = if empty {
        let mut b = [0u8; 16];
        match (m, size) {
            (M::Fst | M::Fstp, 4) => b[..4].copy_from_slice(&0xffc0_0000u32.to_le_bytes()),
            (M::Fst | M::Fstp, 8) => {
                b[..8].copy_from_slice(&0xfff8_0000_0000_0000u64.to_le_bytes())
            }
            (M::Fst | M::Fstp, _) => b[..10].copy_from_slice(&F80::INDEFINITE.to_bytes()),
            (M::Fbstp, _) => b[..10].copy_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0xc0, 0xff, 0xff]),
            _ => b[..size as usize]
                .copy_from_slice(&(1u64 << (8 * size - 1)).to_le_bytes()[..size as usize]),
        }
        let masked = cpu.fpu.fcw & sw::IE != 0;
        (b, sw::IE | sw::SF, 0, masked)
    } else if size == 10 && m != M::Fbstp {
        (cpu.fpu.st(0).to_buf(), 0, 0, true)
    } else {
        let k: Kernel = match (m, size) {
            (M::Fst | M::Fstp, 4) => host::st_m32,
            (M::Fst | M::Fstp, _) => host::st_m64,
            (M::Fist | M::Fistp, 2) => host::ist_16,
            (M::Fist | M::Fistp, 4) => host::ist_32,
            (M::Fist | M::Fistp, _) => host::ist_64,
            (M::Fisttp, 2) => host::istt_16,
            (M::Fisttp, 4) => host::istt_32,
            (M::Fisttp, _) => host::istt_64,
            _ => host::bstp,
        };
        let out = k(
            cpu.fpu.fcw,
            cpu.fpu.fsw,
            &cpu.fpu.st(0).to_buf(),
            &buf_u64(0),
        );
        // The host's store popped its stack unless an unmasked exception
        // stopped it.
        (out.r, out.exc, out.sw_op & sw::C1, out.top() == 0)
    };
    if done {
        let seg = cpu.mem_seg(ins);
        let off = cpu.ea(ins);
        if size <= 8 {
            let mut v = [0u8; 8];
            v.copy_from_slice(&img[..8]);
            cpu.write_mem(seg, off, size, u64::from_le_bytes(v))?;
        } else {
            cpu.write_mem_bytes(seg, off, &img[..size as usize])?;
        }
    }
    cpu.x87_note(ins);
    if empty {
        if cpu.x87_underflow() && pop {
            cpu.fpu.pop();
        }
        return Ok(());
    }
    cpu.x87_raise(exc);
    // C1 comes from the host's store, which started from the guest's C1:
    // round-up when it completed, cleared when an unmasked exception
    // stopped it.
    cpu.fpu.fsw = (cpu.fpu.fsw & !sw::C1) | c1;
    if done && pop {
        cpu.fpu.pop();
    }
    Ok(())
}

fn fxch(cpu: &mut Cpu, ins: &Instruction) -> Res {
    cpu.fpu_check()?;
    cpu.x87_note(ins);
    let i = if ins.op_count() >= 2 {
        st_index(ins.op_register(1))
    } else {
        1
    };
    if cpu.fpu.is_empty(0) || cpu.fpu.is_empty(i) {
        if !cpu.x87_underflow() {
            return Ok(());
        }
        for j in [0, i] {
            if cpu.fpu.is_empty(j) {
                cpu.fpu.set_st(j, F80::INDEFINITE);
            }
        }
    }
    let (a, b) = (cpu.fpu.st(0), cpu.fpu.st(i));
    cpu.fpu.set_st(0, b);
    cpu.fpu.set_st(i, a);
    cpu.fpu.fsw &= !sw::C1;
    Ok(())
}

fn fcmov(cpu: &mut Cpu, ins: &Instruction) -> Res {
    cpu.fpu_check()?;
    cpu.x87_note(ins);
    let i = st_index(ins.op_register(1));
    let f = &cpu.flags;
    let take = match ins.mnemonic() {
        M::Fcmovb => f.cf(),
        M::Fcmove => f.zf(),
        M::Fcmovbe => f.cf() || f.zf(),
        M::Fcmovu => f.pf(),
        M::Fcmovnb => !f.cf(),
        M::Fcmovne => !f.zf(),
        M::Fcmovnbe => !f.cf() && !f.zf(),
        _ => !f.pf(),
    };
    if cpu.fpu.is_empty(0) || cpu.fpu.is_empty(i) {
        if cpu.x87_underflow() {
            cpu.fpu.set_st(0, F80::INDEFINITE);
        }
        return Ok(());
    }
    if take {
        let v = cpu.fpu.st(i);
        cpu.fpu.set_st(0, v);
    }
    Ok(())
}

fn ffree(cpu: &mut Cpu, ins: &Instruction) -> Res {
    cpu.fpu_check()?;
    cpu.x87_note(ins);
    let i = st_index(ins.op_register(0));
    let p = cpu.fpu.phys(i);
    cpu.fpu.set_tag_phys(p, super::f80::TAG_EMPTY);
    if ins.mnemonic() == M::Ffreep {
        cpu.fpu.pop();
    }
    Ok(())
}

fn incdec(cpu: &mut Cpu, ins: &Instruction) -> Res {
    cpu.fpu_check()?;
    cpu.x87_note(ins);
    cpu.fpu.top = if ins.mnemonic() == M::Fincstp {
        cpu.fpu.top.wrapping_add(1)
    } else {
        cpu.fpu.top.wrapping_sub(1)
    } & 7;
    cpu.fpu.fsw &= !sw::C1;
    Ok(())
}

fn fnop(cpu: &mut Cpu, ins: &Instruction) -> Res {
    cpu.fpu_check()?;
    cpu.x87_note(ins);
    Ok(())
}
