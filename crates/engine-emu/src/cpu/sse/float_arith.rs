//! Packed and scalar float arithmetic (SSE, SSE2, SSE3, SSE4.1): ADD SUB
//! MUL DIV SQRT MIN MAX RCP RSQRT, ADDSUB, HADD/HSUB, CMPcc, ROUND, DP, and
//! the xmm-to-xmm conversions; and SIMD floating-point exception reporting.

use iced_x86::{Code, Instruction, Mnemonic as M, OpKind};
use kite_hypervisor::x86;

use super::host::{self, ImmOp, Kernel};
use crate::cpu::exec::Handler;
use crate::cpu::{exception, ud, Cpu, Res};

/// The kernel of a float operation without immediate.
pub fn kernel(m: M) -> Option<Kernel> {
    use host::*;
    Some(match m {
        M::Addps => addps,
        M::Addpd => addpd,
        M::Addss => addss,
        M::Addsd => addsd,
        M::Subps => subps,
        M::Subpd => subpd,
        M::Subss => subss,
        M::Subsd => subsd,
        M::Mulps => mulps,
        M::Mulpd => mulpd,
        M::Mulss => mulss,
        M::Mulsd => mulsd,
        M::Divps => divps,
        M::Divpd => divpd,
        M::Divss => divss,
        M::Divsd => divsd,
        M::Sqrtps => sqrtps,
        M::Sqrtpd => sqrtpd,
        M::Sqrtss => sqrtss,
        M::Sqrtsd => sqrtsd,
        M::Minps => minps,
        M::Minpd => minpd,
        M::Minss => minss,
        M::Minsd => minsd,
        M::Maxps => maxps,
        M::Maxpd => maxpd,
        M::Maxss => maxss,
        M::Maxsd => maxsd,
        M::Rcpps => rcpps,
        M::Rcpss => rcpss,
        M::Rsqrtps => rsqrtps,
        M::Rsqrtss => rsqrtss,
        M::Addsubps => addsubps,
        M::Addsubpd => addsubpd,
        M::Haddps => haddps,
        M::Haddpd => haddpd,
        M::Hsubps => hsubps,
        M::Hsubpd => hsubpd,
        M::Cvtps2pd => cvtps2pd,
        M::Cvtpd2ps => cvtpd2ps,
        M::Cvtss2sd => cvtss2sd,
        M::Cvtsd2ss => cvtsd2ss,
        M::Cvtdq2ps => cvtdq2ps,
        M::Cvtps2dq => cvtps2dq,
        M::Cvttps2dq => cvttps2dq,
        M::Cvtdq2pd => cvtdq2pd,
        M::Cvtpd2dq => cvtpd2dq,
        M::Cvttpd2dq => cvttpd2dq,
        _ => return None,
    })
}

/// The immediate-taking float operation of an instruction.
pub fn imm_op(ins: &Instruction) -> Option<ImmOp> {
    Some(match ins.mnemonic() {
        M::Cmpps => ImmOp::Cmpps,
        M::Cmppd => ImmOp::Cmppd,
        M::Cmpss => ImmOp::Cmpss,
        M::Cmpsd if ins.code() == Code::Cmpsd_xmm_xmmm64_imm8 => ImmOp::Cmpsd,
        M::Roundps => ImmOp::Roundps,
        M::Roundpd => ImmOp::Roundpd,
        M::Roundss => ImmOp::Roundss,
        M::Roundsd => ImmOp::Roundsd,
        M::Dpps => ImmOp::Dpps,
        M::Dppd => ImmOp::Dppd,
        _ => return None,
    })
}

pub fn handler(ins: &Instruction) -> Option<Handler> {
    if kernel(ins.mnemonic()).is_some() || imm_op(ins).is_some() {
        Some(float_op)
    } else {
        None
    }
}

fn float_op(cpu: &mut Cpu, ins: &Instruction) -> Res {
    cpu.simd_check(ins)?;
    let a = cpu.vread(ins, 0)?;
    let b = cpu.vread(ins, 1)?;
    let k = match imm_op(ins) {
        Some(
            op @ (ImmOp::Roundps
            | ImmOp::Roundpd
            | ImmOp::Roundss
            | ImmOp::Roundsd
            | ImmOp::Dpps
            | ImmOp::Dppd),
        ) if !host::has_sse41() => {
            return Err(cpu.internal(format!(
                "{op:?} needs a host CPU with SSE4.1 (the emu engine runs SIMD float operations on the host)"
            )));
        }
        Some(op) => {
            let imm = if ins.op_count() >= 3 && ins.op_kind(2) == OpKind::Immediate8 {
                ins.immediate8()
            } else {
                0
            };
            host::imm_kernel(op, imm)
        }
        None => match kernel(ins.mnemonic()) {
            Some(k) => k,
            None => return Err(ud()),
        },
    };
    let (r, flags) = cpu.simd_kernel(k, a, b);
    cpu.simd_fp_exceptions(flags)?;
    cpu.vwrite(ins, 0, r)
}

impl Cpu {
    /// Run a float kernel with the guest's MXCSR. The kernels run with every
    /// exception masked; when the guest unmasks underflow, a tiny result
    /// raises UE even when exact, which a second run with flush-to-zero
    /// (where every tiny result flags UE) detects.
    pub fn simd_kernel(&self, k: Kernel, a: u128, b: u128) -> (u128, u32) {
        let csr = self.fpu.mxcsr;
        let (r, mut flags) = k(a, b, csr);
        if csr & (1 << 11) == 0 && flags & 0x10 == 0 {
            let (_, f) = k(a, b, csr | (1 << 15));
            flags |= f & 0x10;
        }
        (r, flags)
    }

    /// Record SIMD floating-point exception flags; an unmasked one raises
    /// #XM (CR4.OSXMMEXCPT) or #UD, and the destination is left unchanged.
    ///
    /// An unmasked invalid, denormal or divide-by-zero exception stops the
    /// operation before it completes, so the overflow, underflow and
    /// precision flags a completed operation would add are not recorded.
    pub fn simd_fp_exceptions(&mut self, flags: u32) -> Res {
        let mut flags = flags & 0x3f;
        let masks = self.fpu.mxcsr >> 7;
        if flags & 0x7 & !masks != 0 {
            flags &= 0x7;
        }
        self.fpu.mxcsr |= flags;
        let unmasked = flags & !masks & 0x3f;
        if unmasked != 0 {
            if self.cr4 & x86::CR4_OSXMMEXCPT != 0 {
                return Err(exception(x86::XM, None));
            }
            return Err(ud());
        }
        Ok(())
    }
}
