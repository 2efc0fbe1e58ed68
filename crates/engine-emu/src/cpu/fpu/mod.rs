//! x87 FPU: state and instructions, FXSAVE/FXRSTOR and XSAVE.
//!
//! Layout:
//! - `mod.rs`: `FpuState` (the FXSAVE image's contents), the register stack
//!   and tags, x87 exception bookkeeping, the #NM/#MF checks, dispatch;
//! - `f80.rs`: the 80-bit register format (tags, classes, byte images);
//! - `host.rs`: arithmetic kernels that run the guest's x87 operation on the
//!   host's x87 unit with the guest's control word (precision, rounding,
//!   exception masks): results, condition codes, exception flags and the
//!   unmasked-exception behaviour are those of the hardware, including the
//!   transcendental instructions (no soft-float approximation);
//! - `arith.rs`: FADD..FDIVR, compares, FXAM, FCHS/FABS, FSQRT, FRNDINT,
//!   FSCALE, FXTRACT, FPREM/FPREM1, transcendental instructions;
//! - `load_store.rs`: FLD/FST/FILD/FIST/FISTTP/FBLD/FBSTP, constants, FXCH,
//!   FCMOVcc, FFREE, FINCSTP/FDECSTP;
//! - `control.rs`: FLDCW/FNSTCW/FNSTSW/FNCLEX/FNINIT/FNSTENV/FLDENV/FNSAVE/
//!   FRSTOR/FWAIT, FXSAVE/FXRSTOR, XSAVE/XSAVEOPT/XRSTOR/XGETBV/XSETBV.
//!
//! MMX instructions live with their SSE counterparts in `cpu/sse/`; they
//! use the register mantissas here (`FpuState::regs[i].mant`).
//!
//! The engine therefore needs an x86-64 host (SSE4.1 for ROUNDPS/DPPS).
//! `native_check.rs` (tests) runs every x87 form on the host and through
//! the engine from random states and compares the FXSAVE images.
//!
//! Unmasked x87 exceptions set ES and B; the next waiting x87 (or MMX)
//! instruction raises #MF when CR0.NE is set. With CR0.NE clear (the
//! legacy FERR#/IRQ13 path) the pending exception is left in FSW and
//! execution continues.

pub mod arith;
pub mod control;
pub mod f80;
pub mod host;
pub mod load_store;
#[cfg(test)]
pub mod testing;

use iced_x86::{Instruction, Register};
use kite_hypervisor::x86;

pub use f80::F80;

use super::exec::Handler;
use super::{exception, Cpu, Res, Seg};

/// FSW bits.
pub mod sw {
    pub const IE: u16 = 1;
    pub const DE: u16 = 2;
    pub const ZE: u16 = 4;
    pub const OE: u16 = 8;
    pub const UE: u16 = 0x10;
    pub const PE: u16 = 0x20;
    pub const SF: u16 = 0x40;
    pub const ES: u16 = 0x80;
    pub const C0: u16 = 0x100;
    pub const C1: u16 = 0x200;
    pub const C2: u16 = 0x400;
    pub const C3: u16 = 0x4000;
    pub const B: u16 = 0x8000;
    /// C0..C3.
    pub const CC: u16 = C0 | C1 | C2 | C3;
}

/// x87, MMX and SSE register state (the FXSAVE image's contents).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FpuState {
    /// Physical registers R0..R7 (ST(i) = R[(top + i) & 7]); MMX aliases the mantissas.
    pub regs: [F80; 8],
    pub top: u8,
    pub fcw: u16,
    /// Status word without TOP (bits 13:11 come from `top`).
    pub fsw: u16,
    /// Full tag word: 2 bits per physical register (0 valid, 1 zero, 2 special, 3 empty).
    pub ftw: u16,
    pub fop: u16,
    pub fip: u64,
    pub fcs: u16,
    pub fdp: u64,
    pub fds: u16,
    pub xmm: [u128; 16],
    pub mxcsr: u32,
}

impl Default for FpuState {
    fn default() -> Self {
        FpuState {
            regs: [F80::default(); 8],
            top: 0,
            fcw: 0x37f,
            fsw: 0,
            ftw: 0xffff,
            fop: 0,
            fip: 0,
            fcs: 0,
            fdp: 0,
            fds: 0,
            xmm: [0; 16],
            mxcsr: 0x1f80,
        }
    }
}

impl FpuState {
    /// The status word with TOP.
    pub fn status_word(&self) -> u16 {
        (self.fsw & !0x3800) | (u16::from(self.top & 7) << 11)
    }

    /// The abridged (FXSAVE) tag byte: bit i set when R[i] is not empty.
    pub fn abridged_tags(&self) -> u8 {
        (0..8).fold(0u8, |acc, i| {
            if (self.ftw >> (2 * i)) & 3 != 3 {
                acc | (1 << i)
            } else {
                acc
            }
        })
    }

    /// Rebuild the full tag word from an abridged one and the register contents.
    pub fn set_abridged_tags(&mut self, tags: u8) {
        let mut ftw = 0u16;
        for i in 0..8 {
            let t = if tags & (1 << i) == 0 {
                3
            } else {
                let r = self.regs[i];
                let exp = r.se & 0x7fff;
                if exp == 0x7fff {
                    2
                } else if exp == 0 {
                    if r.mant == 0 {
                        1
                    } else {
                        2
                    }
                } else if r.mant >> 63 == 0 {
                    2
                } else {
                    0
                }
            };
            ftw |= t << (2 * i);
        }
        self.ftw = ftw;
    }

    pub fn to_api(&self) -> kite_hypervisor::Fpu {
        let mut f = kite_hypervisor::Fpu::default();
        for i in 0..8 {
            // kvm_fpu.fpr holds ST(i) in stack order.
            let r = self.regs[(usize::from(self.top) + i) & 7];
            f.fpr[i][..8].copy_from_slice(&r.mant.to_le_bytes());
            f.fpr[i][8..10].copy_from_slice(&r.se.to_le_bytes());
        }
        f.fcw = self.fcw;
        f.fsw = self.status_word();
        f.ftwx = self.abridged_tags();
        f.last_opcode = self.fop;
        f.last_ip = self.fip;
        f.last_dp = self.fdp;
        for i in 0..16 {
            f.xmm[i] = self.xmm[i].to_le_bytes();
        }
        f.mxcsr = self.mxcsr;
        f
    }

    pub fn from_api(&mut self, f: &kite_hypervisor::Fpu) {
        self.top = ((f.fsw >> 11) & 7) as u8;
        for i in 0..8 {
            let mut m = [0u8; 8];
            m.copy_from_slice(&f.fpr[i][..8]);
            let se = u16::from_le_bytes([f.fpr[i][8], f.fpr[i][9]]);
            self.regs[(usize::from(self.top) + i) & 7] = F80 {
                mant: u64::from_le_bytes(m),
                se,
            };
        }
        self.fcw = f.fcw;
        self.fsw = f.fsw & !0x3800;
        self.set_abridged_tags(f.ftwx);
        self.fop = f.last_opcode;
        self.fip = f.last_ip;
        self.fdp = f.last_dp;
        for i in 0..16 {
            self.xmm[i] = u128::from_le_bytes(f.xmm[i]);
        }
        self.mxcsr = f.mxcsr;
    }
}

/// The handler for an x87 instruction (or FXSAVE/XSAVE), if this group
/// implements it.
pub fn handler(ins: &Instruction) -> Option<Handler> {
    arith::handler(ins)
        .or_else(|| load_store::handler(ins))
        .or_else(|| control::handler(ins))
}

impl FpuState {
    /// Physical register of ST(i).
    #[inline]
    pub fn phys(&self, i: usize) -> usize {
        (usize::from(self.top) + i) & 7
    }

    /// Tag of ST(i).
    #[inline]
    pub fn tag(&self, i: usize) -> u16 {
        (self.ftw >> (2 * self.phys(i))) & 3
    }

    #[inline]
    pub fn set_tag_phys(&mut self, p: usize, t: u16) {
        let sh = 2 * (p & 7);
        self.ftw = (self.ftw & !(3 << sh)) | ((t & 3) << sh);
    }

    #[inline]
    pub fn is_empty(&self, i: usize) -> bool {
        self.tag(i) == f80::TAG_EMPTY
    }

    #[inline]
    pub fn st(&self, i: usize) -> F80 {
        self.regs[self.phys(i)]
    }

    /// Write ST(i) and its tag.
    pub fn set_st(&mut self, i: usize, v: F80) {
        let p = self.phys(i);
        self.regs[p] = v;
        self.set_tag_phys(p, v.tag());
    }

    pub fn push(&mut self, v: F80) {
        self.top = self.top.wrapping_sub(1) & 7;
        self.set_st(0, v);
    }

    pub fn pop(&mut self) {
        let p = self.phys(0);
        self.set_tag_phys(p, f80::TAG_EMPTY);
        self.top = (self.top + 1) & 7;
    }

    /// Replace C0..C3.
    pub fn set_cc(&mut self, c: u16) {
        self.fsw = (self.fsw & !sw::CC) | (c & sw::CC);
    }

    /// ES and B follow the unmasked exception flags.
    pub fn update_es(&mut self) {
        if self.fsw & 0x3f & !self.fcw != 0 {
            self.fsw |= sw::ES | sw::B;
        } else {
            self.fsw &= !(sw::ES | sw::B);
        }
    }

    /// FNINIT: control word 0x37F, status and pointers clear, all empty.
    pub fn finit(&mut self) {
        self.fcw = 0x37f;
        self.fsw = 0;
        self.top = 0;
        self.ftw = 0xffff;
        self.fop = 0;
        self.fip = 0;
        self.fcs = 0;
        self.fdp = 0;
        self.fds = 0;
    }
}

/// Index of an ST(i) register operand.
pub fn st_index(r: Register) -> usize {
    (r as usize).wrapping_sub(Register::ST0 as usize) & 7
}

impl Cpu {
    /// #NM for an x87 instruction when CR0.EM or CR0.TS (without the
    /// pending-exception check: FNINIT, FNSTSW...).
    pub fn fpu_check_nowait(&self) -> Res {
        if self.cr0 & (x86::CR0_EM | x86::CR0_TS) != 0 {
            return Err(exception(x86::NM, None));
        }
        Ok(())
    }

    /// #NM, then #MF for a pending unmasked exception (waiting instructions).
    pub fn fpu_check(&self) -> Res {
        self.fpu_check_nowait()?;
        self.fpu_pending_check()
    }

    /// #MF when an unmasked x87 exception is pending and CR0.NE is set.
    pub fn fpu_pending_check(&self) -> Res {
        if self.fpu.fsw & sw::ES != 0 && self.cr0 & x86::CR0_NE != 0 {
            return Err(exception(x86::MF, None));
        }
        Ok(())
    }

    /// Record x87 exception flags (bits 6:0) raised by an operation. The
    /// host kernels run with the guest's exception masks, so the flags are
    /// exactly those of the hardware (an operation stopped by an unmasked
    /// invalid, denormal or divide-by-zero exception reports no precision
    /// or underflow flags). Returns false when such an unmasked
    /// pre-computation exception means the destination must not be
    /// written (and the stack not popped or pushed).
    pub fn x87_raise(&mut self, exc: u16) -> bool {
        let exc = exc & 0x7f;
        self.fpu.fsw |= exc;
        let unmasked = exc & 0x3f & !self.fpu.fcw;
        if unmasked != 0 {
            self.fpu.fsw |= sw::ES | sw::B;
            self.fpu.fop = self.x87_opcode();
        }
        unmasked & (sw::IE | sw::DE | sw::ZE) == 0
    }

    /// FOP of the current instruction: the low 3 bits of its D8..DF opcode
    /// byte and its ModRM byte. As on Intel processors with the FOP
    /// compatibility mode off, FOP is recorded only for instructions that
    /// raise an unmasked exception, so the code bytes are read only then.
    fn x87_opcode(&mut self) -> u16 {
        let mut b = [0u8; 15];
        let lin = self.rip_lin();
        let n = (0x1000 - (lin & 0xfff) as usize).min(15);
        if self.read_lin_bytes(lin, &mut b[..n], true).is_err() {
            return self.fpu.fop;
        }
        let long = self.mode == super::Mode::Long;
        let mut i = 0;
        while i + 1 < n {
            match b[i] {
                0x26 | 0x2e | 0x36 | 0x3e | 0x64 | 0x65 | 0x66 | 0x67 | 0xf0 | 0xf2 | 0xf3 => {
                    i += 1
                }
                0x40..=0x4f if long => i += 1,
                0xd8..=0xdf => return (u16::from(b[i] & 7) << 8) | u16::from(b[i + 1]),
                _ => break,
            }
        }
        self.fpu.fop
    }

    /// Stack underflow (an empty register was read): IE|SF, C1 = 0.
    /// Returns true when masked (the destination gets the indefinite).
    pub fn x87_underflow(&mut self) -> bool {
        self.fpu.fsw &= !sw::C1;
        self.x87_raise(sw::IE | sw::SF)
    }

    /// Stack overflow (a push onto a full register): IE|SF, C1 = 1.
    pub fn x87_overflow(&mut self) -> bool {
        self.fpu.fsw |= sw::C1;
        self.x87_raise(sw::IE | sw::SF)
    }

    /// Remember the last x87 instruction (FIP/FCS, FDP/FDS for memory).
    pub fn x87_note(&mut self, ins: &Instruction) {
        self.fpu.fip = self.rip;
        self.fpu.fcs = self.seg[Seg::Cs as usize].selector;
        if (0..ins.op_count()).any(|i| ins.op_kind(i) == iced_x86::OpKind::Memory) {
            self.fpu.fdp = self.ea(ins);
            self.fpu.fds = self.seg[self.mem_seg(ins) as usize].selector;
        }
    }
}

#[cfg(test)]
pub mod native_check;
#[cfg(test)]
mod tests;
