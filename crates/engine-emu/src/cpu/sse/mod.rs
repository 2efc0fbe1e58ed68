//! SSE, SSE2, SSE3, SSSE3, SSE4.1, SSE4.2 instructions on the XMM registers,
//! and the MMX forms of the integer operations (on the x87 register
//! mantissas).
//!
//! Layout:
//! - `mod.rs`: dispatch, the availability checks (#UD/#NM/#MF), and operand
//!   access for XMM/MM/GPR/memory operands with the 16-byte alignment rule;
//! - `lanes.rs`: lane helpers (extract, build, saturate);
//! - `int_arith.rs`: packed integer arithmetic, logic, compares, shifts;
//! - `shuffle.rs`: pack/unpack, shuffles, byte shifts, blends, PMOVZX/SX;
//! - `moves.rs`: data movement, MOVMSK, PEXTR/PINSR, MASKMOV, EMMS, fences,
//!   LDMXCSR/STMXCSR;
//! - `host.rs`: the floating-point kernels, which run the very same SSE
//!   instruction on the host with the guest's MXCSR (rounding, DAZ, FTZ) so
//!   results and exception flags are bit-exact;
//! - `float_arith.rs`: float arithmetic and SIMD floating-point exceptions;
//! - `compare.rs`: COMISS/UCOMISS/COMISD/UCOMISD and PTEST (RFLAGS);
//! - `convert.rs`: the CVT* family;
//! - `string.rs`: PCMPESTRI/PCMPESTRM/PCMPISTRI/PCMPISTRM and CRC32;
//! - `tests.rs`, `native_check.rs` (tests): instruction tests with host
//!   intrinsics as the oracle, and a differential test of every register
//!   and memory form against the host CPU.

pub mod compare;
pub mod convert;
pub mod float_arith;
pub mod host;
pub mod int_arith;
pub mod lanes;
pub mod moves;
pub mod shuffle;
pub mod string;

use iced_x86::{Instruction, Mnemonic, OpKind, Register};
use kite_hypervisor::x86;

use super::exec::Handler;
use super::{exception, gp0, ud, Cpu, Res};

/// The handler for an SSE/MMX instruction, if this group implements it.
pub fn handler(ins: &Instruction) -> Option<Handler> {
    moves::handler(ins)
        .or_else(|| int_arith::handler(ins))
        .or_else(|| shuffle::handler(ins))
        .or_else(|| float_arith::handler(ins))
        .or_else(|| compare::handler(ins))
        .or_else(|| convert::handler(ins))
        .or_else(|| string::handler(ins))
}

/// Does the instruction name an MMX register?
pub fn has_mm(ins: &Instruction) -> bool {
    (0..ins.op_count()).any(|i| ins.op_kind(i) == OpKind::Register && ins.op_register(i).is_mm())
}

/// Does the instruction name an XMM register?
pub fn has_xmm(ins: &Instruction) -> bool {
    (0..ins.op_count()).any(|i| ins.op_kind(i) == OpKind::Register && ins.op_register(i).is_xmm())
}

/// Legacy-SSE instructions whose 16-byte memory operand may be unaligned.
fn unaligned_ok(m: Mnemonic) -> bool {
    matches!(
        m,
        Mnemonic::Movups
            | Mnemonic::Movupd
            | Mnemonic::Movdqu
            | Mnemonic::Lddqu
            | Mnemonic::Pcmpestri
            | Mnemonic::Pcmpestrm
            | Mnemonic::Pcmpistri
            | Mnemonic::Pcmpistrm
            | Mnemonic::Pcmpestri64
            | Mnemonic::Pcmpestrm64
    )
}

impl Cpu {
    /// SSE availability: #UD when CR0.EM or !CR4.OSFXSR, #NM when CR0.TS.
    pub fn sse_check(&self) -> Res {
        if self.cr0 & x86::CR0_EM != 0 || self.cr4 & x86::CR4_OSFXSR == 0 {
            return Err(ud());
        }
        if self.cr0 & x86::CR0_TS != 0 {
            return Err(exception(x86::NM, None));
        }
        Ok(())
    }

    /// MMX availability: #UD when CR0.EM, #NM when CR0.TS, #MF for a pending
    /// unmasked x87 exception.
    pub fn mmx_check(&self) -> Res {
        if self.cr0 & x86::CR0_EM != 0 {
            return Err(ud());
        }
        if self.cr0 & x86::CR0_TS != 0 {
            return Err(exception(x86::NM, None));
        }
        self.fpu_pending_check()
    }

    /// The checks for an SSE or MMX instruction, by its register operands.
    pub fn simd_check(&self, ins: &Instruction) -> Res {
        let mm = has_mm(ins);
        if mm {
            self.mmx_check()?;
        }
        if !mm || has_xmm(ins) {
            self.sse_check()?;
        }
        Ok(())
    }

    /// Linear address of the memory operand for an access of `size` bytes,
    /// with the 16-byte alignment check of legacy SSE.
    pub fn simd_lin(&mut self, ins: &Instruction, size: u32, write: bool) -> Res<u64> {
        let seg = self.mem_seg(ins);
        let off = self.ea(ins);
        let lin = self.seg_lin(seg, off, size, write)?;
        if size == 16 && lin & 15 != 0 && !unaligned_ok(ins.mnemonic()) {
            return Err(gp0());
        }
        Ok(lin)
    }

    /// Read operand `i`: an XMM, MM or general register, memory of the
    /// operand's size (zero-extended), or an immediate.
    pub fn vread(&mut self, ins: &Instruction, i: u32) -> Res<u128> {
        match ins.op_kind(i) {
            OpKind::Register => Ok(self.vreg(ins.op_register(i))),
            OpKind::Memory => {
                let size = (ins.memory_size().size() as u32).min(16);
                self.vread_mem(ins, size)
            }
            _ => Ok(u128::from(ins.immediate(i))),
        }
    }

    /// Read `size` bytes at the memory operand.
    pub fn vread_mem(&mut self, ins: &Instruction, size: u32) -> Res<u128> {
        let lin = self.simd_lin(ins, size, false)?;
        if size <= 8 {
            return Ok(u128::from(self.read_lin(lin, size.max(1), false)?));
        }
        let mut b = [0u8; 16];
        self.read_lin_bytes(lin, &mut b[..size as usize], false)?;
        Ok(u128::from_le_bytes(b))
    }

    /// The value of a register as a vector operand.
    pub fn vreg(&self, r: Register) -> u128 {
        if r.is_xmm() {
            self.fpu.xmm[r.number() & 15]
        } else if r.is_mm() {
            u128::from(self.fpu.regs[r.number() & 7].mant)
        } else {
            u128::from(self.reg_read(r))
        }
    }

    /// Write operand `i` (XMM, MM, GPR or memory of the operand's size).
    /// An instruction naming an MM register enters MMX state when it commits.
    pub fn vwrite(&mut self, ins: &Instruction, i: u32, v: u128) -> Res {
        match ins.op_kind(i) {
            OpKind::Register => {
                let r = ins.op_register(i);
                if r.is_xmm() {
                    self.fpu.xmm[r.number() & 15] = v;
                } else if r.is_mm() {
                    self.fpu.regs[r.number() & 7] = crate::cpu::fpu::F80 {
                        mant: v as u64,
                        se: 0xffff,
                    };
                } else {
                    self.reg_write(r, v as u64);
                }
            }
            _ => {
                let size = (ins.memory_size().size() as u32).min(16);
                self.vwrite_mem(ins, size, v)?;
            }
        }
        if has_mm(ins) {
            self.mmx_enter();
        }
        Ok(())
    }

    /// Write `size` bytes at the memory operand.
    pub fn vwrite_mem(&mut self, ins: &Instruction, size: u32, v: u128) -> Res {
        let lin = self.simd_lin(ins, size, true)?;
        if size <= 8 {
            return self.write_lin(lin, size.max(1), v as u64, false);
        }
        let b = v.to_le_bytes();
        self.write_lin_bytes(lin, &b[..size as usize], false)
    }

    /// An MMX instruction completed: TOP = 0 and every tag valid.
    pub fn mmx_enter(&mut self) {
        self.fpu.top = 0;
        self.fpu.ftw = 0;
    }
}

#[cfg(test)]
mod native_check;
#[cfg(test)]
mod tests;
