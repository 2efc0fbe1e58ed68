//! x87 control instructions and state save/restore: FLDCW, FNSTCW/FSTCW,
//! FNSTSW/FSTSW (m16 and AX), FNCLEX/FCLEX, FNINIT/FINIT, FNSTENV/FSTENV,
//! FLDENV, FNSAVE/FSAVE, FRSTOR (16- and 32-bit, real and protected
//! formats), FWAIT; FXSAVE/FXRSTOR (and their REX.W forms); XSAVE,
//! XSAVEOPT, XRSTOR (standard form), XGETBV, XSETBV for the x87 and SSE
//! state components (XCR0 bits 0 and 1).

use iced_x86::{Instruction, Mnemonic as M, OpKind};
use kite_hypervisor::x86;

use super::{sw, FpuState, F80};
use crate::cpu::exec::Handler;
use crate::cpu::sse::moves::MXCSR_MASK;
use crate::cpu::{exception, gp0, ud, Cpu, Mode, Res};

/// XCR0 bits the engine supports: x87 and SSE state.
pub const XCR0_SUPPORTED: u64 = 0x3;
/// Size of the XSAVE area for the supported components (legacy region and
/// header): CPUID.(EAX=0DH,ECX=0):EBX and ECX.
pub const XSAVE_SIZE: u32 = 576;

pub fn handler(ins: &Instruction) -> Option<Handler> {
    Some(match ins.mnemonic() {
        M::Fldcw => fldcw,
        M::Fnstcw | M::Fstcw => fstcw,
        M::Fnstsw | M::Fstsw => fstsw,
        M::Fnclex | M::Fclex => fclex,
        M::Fninit | M::Finit => finit,
        M::Fnstenv | M::Fstenv => fstenv,
        M::Fldenv => fldenv,
        M::Fnsave | M::Fsave => fsave,
        M::Frstor => frstor,
        M::Wait => fwait,
        M::Fneni | M::Fndisi | M::Fnsetpm | M::Feni | M::Fdisi | M::Fsetpm => f287_nop,
        M::Fxsave | M::Fxsave64 => fxsave,
        M::Fxrstor | M::Fxrstor64 => fxrstor,
        M::Xsave | M::Xsave64 | M::Xsaveopt | M::Xsaveopt64 => xsave,
        M::Xrstor | M::Xrstor64 => xrstor,
        M::Xgetbv => xgetbv,
        M::Xsetbv => xsetbv,
        _ => return None,
    })
}

/// FSTCW/FSTSW/FCLEX/FINIT/FSTENV/FSAVE are the waiting forms (iced folds
/// the WAIT prefix into them).
fn waiting(ins: &Instruction) -> bool {
    matches!(
        ins.mnemonic(),
        M::Fstcw | M::Fstsw | M::Fclex | M::Finit | M::Fstenv | M::Fsave
    )
}

fn check(cpu: &Cpu, ins: &Instruction) -> Res {
    if waiting(ins) {
        cpu.fpu_check()
    } else {
        cpu.fpu_check_nowait()
    }
}

/// The control word as the hardware keeps it: bit 6 reads as 1, bits 7
/// and 13..15 as 0.
pub fn normalize_fcw(v: u16) -> u16 {
    (v & 0x1f3f) | 0x40
}

fn fldcw(cpu: &mut Cpu, ins: &Instruction) -> Res {
    cpu.fpu_check()?;
    let v = cpu.x87_read_mem(ins, 2)? as u16;
    cpu.fpu.fcw = normalize_fcw(v);
    cpu.fpu.update_es();
    Ok(())
}

fn fstcw(cpu: &mut Cpu, ins: &Instruction) -> Res {
    check(cpu, ins)?;
    let seg = cpu.mem_seg(ins);
    let off = cpu.ea(ins);
    cpu.write_mem(seg, off, 2, u64::from(cpu.fpu.fcw))
}

fn fstsw(cpu: &mut Cpu, ins: &Instruction) -> Res {
    check(cpu, ins)?;
    let v = u64::from(cpu.fpu.status_word());
    if ins.op_kind(0) == OpKind::Register {
        cpu.reg_write(ins.op_register(0), v);
        Ok(())
    } else {
        let seg = cpu.mem_seg(ins);
        let off = cpu.ea(ins);
        cpu.write_mem(seg, off, 2, v)
    }
}

fn fclex(cpu: &mut Cpu, ins: &Instruction) -> Res {
    check(cpu, ins)?;
    cpu.fpu.fsw &= !(0xff | sw::B);
    Ok(())
}

fn finit(cpu: &mut Cpu, ins: &Instruction) -> Res {
    check(cpu, ins)?;
    cpu.fpu.finit();
    Ok(())
}

fn f287_nop(cpu: &mut Cpu, ins: &Instruction) -> Res {
    check(cpu, ins)
}

/// FWAIT: #NM when CR0.MP and CR0.TS, then pending exceptions (#MF).
fn fwait(cpu: &mut Cpu, _ins: &Instruction) -> Res {
    if cpu.cr0 & x86::CR0_MP != 0 && cpu.cr0 & x86::CR0_TS != 0 {
        return Err(exception(x86::NM, None));
    }
    cpu.fpu_pending_check()
}

impl FpuState {
    /// The full tag word with the tags of non-empty registers recomputed
    /// from their contents (what FNSTENV/FNSAVE store).
    pub fn full_tags(&self) -> u16 {
        (0..8).fold(0u16, |acc, p| {
            let t = if (self.ftw >> (2 * p)) & 3 == 3 {
                3
            } else {
                self.regs[p].tag()
            };
            acc | (t << (2 * p))
        })
    }

    /// Load a full tag word: only "empty" is kept, the rest is recomputed.
    pub fn load_tags(&mut self, ftw: u16) {
        let abridged = (0..8).fold(0u8, |acc, p| {
            if (ftw >> (2 * p)) & 3 != 3 {
                acc | (1 << p)
            } else {
                acc
            }
        });
        self.set_abridged_tags(abridged);
    }
}

fn put16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_le_bytes());
}

fn put32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn put64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

fn get16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn get32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn get64(b: &[u8], at: usize) -> u64 {
    u64::from(get32(b, at)) | (u64::from(get32(b, at + 4)) << 32)
}

fn real_format(cpu: &Cpu) -> bool {
    matches!(cpu.mode, Mode::Real | Mode::Vm86)
}

/// The FNSTENV image (14 or 28 bytes).
fn env_image(cpu: &Cpu, size: usize) -> Vec<u8> {
    let f = &cpu.fpu;
    let mut b = vec![0u8; size];
    let real = real_format(cpu);
    let (fip, fdp) = (f.fip as u32, f.fdp as u32);
    let vals: [u32; 7] = if real {
        [
            u32::from(f.fcw),
            u32::from(f.status_word()),
            u32::from(f.full_tags()),
            fip & 0xffff,
            if size == 14 {
                ((fip >> 16 & 0xf) << 12) | u32::from(f.fop & 0x7ff)
            } else {
                ((fip >> 16) << 12) | u32::from(f.fop & 0x7ff)
            },
            fdp & 0xffff,
            if size == 14 {
                (fdp >> 16 & 0xf) << 12
            } else {
                (fdp >> 16) << 12
            },
        ]
    } else {
        [
            u32::from(f.fcw),
            u32::from(f.status_word()),
            u32::from(f.full_tags()),
            fip,
            u32::from(f.fcs) | (u32::from(f.fop & 0x7ff) << 16),
            fdp,
            u32::from(f.fds),
        ]
    };
    for (i, v) in vals.iter().enumerate() {
        if size == 14 {
            put16(&mut b, 2 * i, *v as u16);
        } else {
            // The reserved upper halves of the 16-bit fields read as ones.
            let reserved = match i {
                0..=2 => 0xffff_0000,
                6 if !real => 0xffff_0000,
                _ => 0,
            };
            put32(&mut b, 4 * i, *v | reserved);
        }
    }
    b
}

/// Load an FLDENV image.
fn load_env(cpu: &mut Cpu, b: &[u8]) {
    let size = b.len().min(28);
    let small = size < 28;
    let v = |i: usize| -> u32 {
        if small {
            u32::from(get16(b, 2 * i))
        } else {
            get32(b, 4 * i)
        }
    };
    let real = real_format(cpu);
    let f = &mut cpu.fpu;
    f.fcw = normalize_fcw(v(0) as u16);
    let fsw = v(1) as u16;
    f.top = ((fsw >> 11) & 7) as u8;
    f.fsw = fsw & !0x3800;
    f.load_tags(v(2) as u16);
    if real {
        let hi_mask = if small { 0xf } else { 0xffff };
        f.fip = u64::from((v(3) & 0xffff) | (((v(4) >> 12) & hi_mask) << 16));
        f.fop = (v(4) & 0x7ff) as u16;
        f.fdp = u64::from((v(5) & 0xffff) | (((v(6) >> 12) & hi_mask) << 16));
    } else {
        f.fip = u64::from(v(3));
        f.fcs = v(4) as u16;
        f.fop = if small {
            0
        } else {
            ((v(4) >> 16) & 0x7ff) as u16
        };
        f.fdp = u64::from(v(5));
        f.fds = v(6) as u16;
    }
    f.update_es();
}

fn fstenv(cpu: &mut Cpu, ins: &Instruction) -> Res {
    check(cpu, ins)?;
    let size = ins.memory_size().size();
    let img = env_image(cpu, size);
    let seg = cpu.mem_seg(ins);
    let off = cpu.ea(ins);
    cpu.write_mem_bytes(seg, off, &img)?;
    cpu.fpu.fcw |= 0x3f;
    cpu.fpu.update_es();
    Ok(())
}

fn fldenv(cpu: &mut Cpu, ins: &Instruction) -> Res {
    cpu.fpu_check()?;
    let size = ins.memory_size().size();
    let mut b = vec![0u8; size];
    let seg = cpu.mem_seg(ins);
    let off = cpu.ea(ins);
    cpu.read_mem_bytes(seg, off, &mut b)?;
    load_env(cpu, &b);
    Ok(())
}

fn fsave(cpu: &mut Cpu, ins: &Instruction) -> Res {
    check(cpu, ins)?;
    let size = ins.memory_size().size();
    let env = if size == 94 { 14 } else { 28 };
    let mut img = env_image(cpu, env);
    for i in 0..8 {
        img.extend_from_slice(&cpu.fpu.st(i).to_bytes());
    }
    let seg = cpu.mem_seg(ins);
    let off = cpu.ea(ins);
    cpu.write_mem_bytes(seg, off, &img)?;
    cpu.fpu.finit();
    Ok(())
}

fn frstor(cpu: &mut Cpu, ins: &Instruction) -> Res {
    cpu.fpu_check()?;
    let size = ins.memory_size().size();
    let env = if size == 94 { 14 } else { 28 };
    let mut b = vec![0u8; env + 80];
    let seg = cpu.mem_seg(ins);
    let off = cpu.ea(ins);
    cpu.read_mem_bytes(seg, off, &mut b)?;
    // Registers first (ST(i) relative to the TOP being loaded), then the
    // environment, whose tag word is recomputed against them.
    let fsw = if env == 14 {
        get16(&b, 2)
    } else {
        get32(&b, 4) as u16
    };
    let top = usize::from((fsw >> 11) & 7);
    for i in 0..8 {
        cpu.fpu.regs[(top + i) & 7] = F80::from_bytes(&b[env + 10 * i..]);
    }
    load_env(cpu, &b[..env]);
    Ok(())
}

/// FXSAVE/XSAVE checks: #NM on CR0.TS or CR0.EM.
fn save_check(cpu: &Cpu) -> Res {
    if cpu.cr0 & (x86::CR0_TS | x86::CR0_EM) != 0 {
        return Err(exception(x86::NM, None));
    }
    Ok(())
}

/// Number of XMM registers FXSAVE/XSAVE cover in the current mode.
fn xmm_count(cpu: &Cpu) -> usize {
    if cpu.mode == Mode::Long {
        16
    } else {
        8
    }
}

/// Bytes 0..160 of the FXSAVE image (x87 state and MXCSR).
fn legacy_x87(cpu: &Cpu, wide: bool) -> [u8; 160] {
    let f = &cpu.fpu;
    let mut b = [0u8; 160];
    put16(&mut b, 0, f.fcw);
    put16(&mut b, 2, f.status_word());
    b[4] = f.abridged_tags();
    put16(&mut b, 6, f.fop & 0x7ff);
    if wide {
        put64(&mut b, 8, f.fip);
        put64(&mut b, 16, f.fdp);
    } else {
        put32(&mut b, 8, f.fip as u32);
        put16(&mut b, 12, f.fcs);
        put32(&mut b, 16, f.fdp as u32);
        put16(&mut b, 20, f.fds);
    }
    put32(&mut b, 24, f.mxcsr);
    put32(&mut b, 28, MXCSR_MASK);
    for i in 0..8 {
        b[32 + 16 * i..42 + 16 * i].copy_from_slice(&f.st(i).to_bytes());
    }
    b
}

/// Load bytes 0..160 of an FXSAVE image except MXCSR.
fn load_legacy_x87(cpu: &mut Cpu, b: &[u8], wide: bool) {
    let f = &mut cpu.fpu;
    f.fcw = normalize_fcw(get16(b, 0));
    let fsw = get16(b, 2);
    f.top = ((fsw >> 11) & 7) as u8;
    f.fsw = fsw & !0x3800;
    f.fop = get16(b, 6) & 0x7ff;
    if wide {
        f.fip = get64(b, 8);
        f.fdp = get64(b, 16);
    } else {
        f.fip = u64::from(get32(b, 8));
        f.fcs = get16(b, 12);
        f.fdp = u64::from(get32(b, 16));
        f.fds = get16(b, 20);
    }
    let top = usize::from(f.top);
    for i in 0..8 {
        f.regs[(top + i) & 7] = F80::from_bytes(&b[32 + 16 * i..]);
    }
    f.set_abridged_tags(b[4]);
}

fn is_wide(ins: &Instruction) -> bool {
    matches!(
        ins.mnemonic(),
        M::Fxsave64 | M::Fxrstor64 | M::Xsave64 | M::Xsaveopt64 | M::Xrstor64
    )
}

/// Linear address of a save area with its alignment check.
fn area(cpu: &mut Cpu, ins: &Instruction, size: u32, align: u64, write: bool) -> Res<u64> {
    let seg = cpu.mem_seg(ins);
    let off = cpu.ea(ins);
    let lin = cpu.seg_lin(seg, off, size, write)?;
    if lin & (align - 1) != 0 {
        return Err(gp0());
    }
    Ok(lin)
}

fn fxsave(cpu: &mut Cpu, ins: &Instruction) -> Res {
    save_check(cpu)?;
    let n = xmm_count(cpu);
    let lin = area(cpu, ins, 512, 16, true)?;
    let mut img = vec![0u8; 160 + 16 * n];
    img[..160].copy_from_slice(&legacy_x87(cpu, is_wide(ins)));
    for i in 0..n {
        img[160 + 16 * i..176 + 16 * i].copy_from_slice(&cpu.fpu.xmm[i].to_le_bytes());
    }
    cpu.write_lin_bytes(lin, &img, false)
}

fn fxrstor(cpu: &mut Cpu, ins: &Instruction) -> Res {
    save_check(cpu)?;
    let n = xmm_count(cpu);
    let lin = area(cpu, ins, 512, 16, false)?;
    let mut img = vec![0u8; 160 + 16 * n];
    cpu.read_lin_bytes(lin, &mut img, false)?;
    let mxcsr = get32(&img, 24);
    if mxcsr & !MXCSR_MASK != 0 {
        return Err(gp0());
    }
    load_legacy_x87(cpu, &img, is_wide(ins));
    cpu.fpu.mxcsr = mxcsr;
    for i in 0..n {
        cpu.fpu.xmm[i] = u128::from_le_bytes(
            img[160 + 16 * i..176 + 16 * i]
                .try_into()
                .unwrap_or([0; 16]),
        );
    }
    Ok(())
}

/// XCR0 as the engine sees it (bit 0 is always set).
fn xcr0(cpu: &Cpu) -> u64 {
    (cpu.msr.xcr0 | 1) & XCR0_SUPPORTED
}

/// XSAVE/XRSTOR: #UD without CR4.OSXSAVE, #NM on CR0.TS (CR0.EM does not
/// matter, unlike FXSAVE).
fn xsave_check(cpu: &Cpu) -> Res {
    if cpu.cr4 & x86::CR4_OSXSAVE == 0 {
        return Err(ud());
    }
    if cpu.cr0 & x86::CR0_TS != 0 {
        return Err(exception(x86::NM, None));
    }
    Ok(())
}

/// Requested-feature bitmap: XCR0 & EDX:EAX.
fn rfbm(cpu: &Cpu) -> u64 {
    let mask = (cpu.gpr[2] << 32) | (cpu.gpr[0] & 0xffff_ffff);
    xcr0(cpu) & mask
}

fn xsave(cpu: &mut Cpu, ins: &Instruction) -> Res {
    xsave_check(cpu)?;
    let rfbm = rfbm(cpu);
    let lin = area(cpu, ins, XSAVE_SIZE, 64, true)?;
    let n = xmm_count(cpu);
    let mut img = vec![0u8; XSAVE_SIZE as usize];
    cpu.read_lin_bytes(lin, &mut img, false)?;
    let legacy = legacy_x87(cpu, is_wide(ins));
    if rfbm & 1 != 0 {
        img[..24].copy_from_slice(&legacy[..24]);
        img[32..160].copy_from_slice(&legacy[32..160]);
    }
    if rfbm & 2 != 0 {
        img[24..32].copy_from_slice(&legacy[24..32]);
        for i in 0..n {
            img[160 + 16 * i..176 + 16 * i].copy_from_slice(&cpu.fpu.xmm[i].to_le_bytes());
        }
    }
    let bv = (get64(&img, 512) & !rfbm) | rfbm;
    put64(&mut img, 512, bv);
    cpu.write_lin_bytes(lin, &img, false)
}

fn xrstor(cpu: &mut Cpu, ins: &Instruction) -> Res {
    xsave_check(cpu)?;
    let rfbm = rfbm(cpu);
    let lin = area(cpu, ins, XSAVE_SIZE, 64, false)?;
    let n = xmm_count(cpu);
    let mut img = vec![0u8; XSAVE_SIZE as usize];
    cpu.read_lin_bytes(lin, &mut img, false)?;
    let bv = get64(&img, 512);
    // Standard form only: XCOMP_BV and the rest of the header must be zero.
    if bv & !xcr0(cpu) != 0 || img[520..576].iter().any(|&x| x != 0) {
        return Err(gp0());
    }
    let mxcsr = get32(&img, 24);
    if rfbm & 2 != 0 && mxcsr & !MXCSR_MASK != 0 {
        return Err(gp0());
    }
    if rfbm & 1 != 0 {
        if bv & 1 != 0 {
            load_legacy_x87(cpu, &img, is_wide(ins));
        } else {
            cpu.fpu.finit();
            cpu.fpu.regs = [F80::ZERO; 8];
        }
    }
    if rfbm & 2 != 0 {
        cpu.fpu.mxcsr = mxcsr;
        for i in 0..n {
            cpu.fpu.xmm[i] = if bv & 2 != 0 {
                u128::from_le_bytes(
                    img[160 + 16 * i..176 + 16 * i]
                        .try_into()
                        .unwrap_or([0; 16]),
                )
            } else {
                0
            };
        }
    }
    Ok(())
}

fn xgetbv(cpu: &mut Cpu, _ins: &Instruction) -> Res {
    if cpu.cr4 & x86::CR4_OSXSAVE == 0 {
        return Err(ud());
    }
    if cpu.gpr[1] as u32 != 0 {
        return Err(gp0());
    }
    let v = xcr0(cpu);
    cpu.gpr[0] = v & 0xffff_ffff;
    cpu.gpr[2] = v >> 32;
    Ok(())
}

fn xsetbv(cpu: &mut Cpu, _ins: &Instruction) -> Res {
    if cpu.cr4 & x86::CR4_OSXSAVE == 0 {
        return Err(ud());
    }
    if cpu.cpl != 0 || cpu.gpr[1] as u32 != 0 {
        return Err(gp0());
    }
    let v = (cpu.gpr[2] << 32) | (cpu.gpr[0] & 0xffff_ffff);
    if v & 1 == 0 || v & !XCR0_SUPPORTED != 0 {
        return Err(gp0());
    }
    cpu.msr.xcr0 = v;
    cpu.end_block = true;
    Ok(())
}
