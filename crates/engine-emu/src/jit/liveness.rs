//! Which guest flags a block's instructions leave for someone to read: a
//! backward pass over the block before it is translated, so that a template
//! whose flags every later reader would find overwritten first can skip
//! recording them (most flag writes in compiled code are never read: an
//! ADD before a CMP, an IMUL before a SHR).
//!
//! Everything outside the instruction forms named here is an *observation
//! point*, where every flag is live: a handler call, an instruction that
//! touches memory (it can fault, and a fault must find the guest's flags
//! exact), one that can leave the block (branches, CALL, RET), the block's
//! end. So a dead flag write is one that nothing, not even a fault or an
//! exit, can see: only register-to-register instructions that cannot fault
//! lie between it and the instruction that overwrites it.
//!
//! The classification describes what the interpreter's handlers do to the
//! flags (the templates do the same): `must` the flags an instruction always
//! writes, `may` those it writes for some operand value (a shift by CL
//! writes all or none), `reads` those it reads. A flag an instruction
//! passes through unchanged needs no entry: one not in `must` stays live
//! across it by the pass itself.

use iced_x86::{Instruction, Mnemonic, OpKind};
use kite_hypervisor::x86::{RFLAGS_AF, RFLAGS_CF, RFLAGS_OF, RFLAGS_PF, RFLAGS_SF, RFLAGS_ZF};

/// A set of the six arithmetic flags (RFLAGS bit positions).
pub type FlagSet = u32;

pub const ALL: FlagSet =
    (RFLAGS_CF | RFLAGS_PF | RFLAGS_AF | RFLAGS_ZF | RFLAGS_SF | RFLAGS_OF) as FlagSet;
pub const CF: FlagSet = RFLAGS_CF as FlagSet;
pub const CF_OF: FlagSet = (RFLAGS_CF | RFLAGS_OF) as FlagSet;

/// What one instruction does with the flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Use {
    pub reads: FlagSet,
    pub must: FlagSet,
    pub may: FlagSet,
}

/// An observation point (see the module's text): it reads every flag, so
/// every flag is live before it.
const OBSERVE: Use = Use {
    reads: ALL,
    must: 0,
    may: ALL,
};

const fn writes(reads: FlagSet, w: FlagSet) -> Use {
    Use {
        reads,
        must: w,
        may: w,
    }
}

const NEUTRAL: Use = writes(0, 0);

/// Whether every operand of `ins` is a general-purpose register or an
/// immediate (so it touches no memory and, being none of the forms that
/// fault on their operands, cannot fault).
fn registers_only(ins: &Instruction) -> bool {
    (0..ins.op_count()).all(|i| match ins.op_kind(i) {
        OpKind::Register => {
            let r = ins.op_register(i);
            r.is_gpr8() || r.is_gpr16() || r.is_gpr32() || r.is_gpr64()
        }
        OpKind::Immediate8
        | OpKind::Immediate8_2nd
        | OpKind::Immediate16
        | OpKind::Immediate32
        | OpKind::Immediate64
        | OpKind::Immediate8to16
        | OpKind::Immediate8to32
        | OpKind::Immediate8to64
        | OpKind::Immediate32to64 => true,
        _ => false,
    })
}

/// The flag use of `ins` (see `Use`).
pub fn flag_use(ins: &Instruction) -> Use {
    use Mnemonic as M;
    if ins.has_lock_prefix() || ins.has_xacquire_prefix() || ins.has_xrelease_prefix() {
        return OBSERVE; // LOCK on a register is #UD
    }
    let m = ins.mnemonic();
    // Forms that name memory without touching it.
    match m {
        M::Lea if ins.op0_kind() == OpKind::Register && ins.op0_register().is_gpr() => {
            return NEUTRAL
        }
        M::Nop | M::Reservednop | M::Pause | M::Endbr32 | M::Endbr64 => return NEUTRAL,
        _ => {}
    }
    if !registers_only(ins) {
        return OBSERVE;
    }
    let shift_count = || {
        let bits = ins.op0_register().size() * 8;
        let mask = if bits == 64 { 63 } else { 31 };
        match ins.op1_kind() {
            OpKind::Immediate8 => Some(u32::from(ins.immediate8()) & mask),
            _ => None, // CL: known at run time only
        }
    };
    match m {
        M::Add | M::Sub | M::And | M::Or | M::Xor | M::Cmp | M::Test | M::Neg => writes(0, ALL),
        M::Adc | M::Sbb => writes(CF, ALL),
        M::Inc | M::Dec => writes(0, ALL & !CF),
        M::Not
        | M::Mov
        | M::Movzx
        | M::Movsx
        | M::Movsxd
        | M::Xchg
        | M::Bswap
        | M::Cbw
        | M::Cwde
        | M::Cdqe
        | M::Cwd
        | M::Cdq
        | M::Cqo => NEUTRAL,
        M::Imul if ins.op_count() >= 2 => writes(0, CF_OF),
        M::Shl | M::Sal | M::Shr | M::Sar | M::Rol | M::Ror if ins.op_count() == 2 => {
            let w = if matches!(m, M::Rol | M::Ror) {
                CF_OF
            } else {
                ALL
            };
            match shift_count() {
                Some(0) => NEUTRAL,
                Some(_) => writes(0, w),
                None => Use {
                    reads: 0,
                    must: 0,
                    may: w,
                },
            }
        }
        _ if crate::cpu::integer::is_setcc(m) || crate::cpu::integer::is_cmov(m) => writes(ALL, 0),
        _ => OBSERVE,
    }
}

/// The flags live after each instruction of a block (all of them after the
/// last: the block's end is an observation point).
pub fn live_after(insns: impl DoubleEndedIterator<Item = Use> + ExactSizeIterator) -> Vec<FlagSet> {
    let mut out = vec![0; insns.len()];
    let mut live = ALL;
    for (i, u) in insns.enumerate().rev() {
        out[i] = live;
        live = (live & !u.must) | u.reads;
    }
    out
}

/// Whether an instruction with `u` may skip recording its flags when
/// `live` are live after it: it writes some, and none of them is live.
pub fn dead(u: Use, live: FlagSet) -> bool {
    u.may != 0 && u.may & live == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use iced_x86::code_asm::*;

    /// Which instructions of the 64-bit code `f` assembles may skip their
    /// flags.
    fn dead_of(f: impl FnOnce(&mut CodeAssembler) -> Result<(), IcedError>) -> Vec<bool> {
        let mut a = CodeAssembler::new(64).unwrap();
        f(&mut a).unwrap();
        let code = a.assemble(0x1000).unwrap();
        let insns: Vec<Instruction> =
            iced_x86::Decoder::with_ip(64, &code, 0x1000, iced_x86::DecoderOptions::NONE)
                .into_iter()
                .collect();
        let uses: Vec<Use> = insns.iter().map(flag_use).collect();
        let live = live_after(uses.iter().copied());
        uses.iter().zip(live).map(|(u, l)| dead(*u, l)).collect()
    }

    #[test]
    fn overwritten_flags_are_dead_and_read_ones_live() {
        // ADD and SUB overwritten by CMP; CMP read by the branch.
        let d = dead_of(|a| {
            let mut l = a.create_label();
            a.add(rax, rbx)?;
            a.sub(ecx, 5)?;
            a.mov(rdx, rax)?;
            a.cmp(rax, rcx)?;
            a.jne(l)?;
            a.set_label(&mut l)?;
            a.nop()
        });
        assert_eq!(d, [true, true, false, false, false, false]);
        // The block's end sees everything.
        assert_eq!(dead_of(|a| a.xor(eax, eax)), [false]);
    }

    #[test]
    fn passed_through_flags_stay_live() {
        // INC keeps CF, which ADC reads: ADD's CF is live (ADC's own
        // flags are overwritten by TEST).
        assert_eq!(
            dead_of(|a| {
                a.add(rax, rbx)?;
                a.inc(rcx)?;
                a.adc(rdx, 0)?;
                a.test(eax, eax)
            }),
            [false, true, true, false]
        );
        // IMUL and ROL keep SF ZF AF PF: ADD's are live through them; a
        // second IMUL's CF/OF overwrite the first's.
        assert_eq!(
            dead_of(|a| {
                a.add(rax, rbx)?;
                a.imul_2(rcx, rdx)?;
                a.rol(rsi, 3)?;
                a.imul_2(rcx, rdx)?;
                a.sete(al)?;
                a.sub(eax, eax)
            }),
            [false, true, true, false, false, false]
        );
        // A shift by CL may write nothing (a zero count): what is live
        // after it is live before, but it overwrites nothing for sure.
        assert_eq!(
            dead_of(|a| {
                a.add(rax, rbx)?;
                a.shl(rdx, cl)?;
                a.setc(al)?;
                a.xor(eax, eax)
            }),
            [false, false, false, false]
        );
        assert_eq!(
            dead_of(|a| {
                a.add(rax, rbx)?;
                a.shl(rdx, cl)?;
                a.xor(eax, eax)
            }),
            [true, true, false]
        );
    }

    #[test]
    fn memory_branches_and_handlers_see_every_flag() {
        // A memory access can fault, a branch leave, a handler read.
        for f in [
            (|a: &mut CodeAssembler| a.mov(qword_ptr(rdi), rcx)) as fn(&mut CodeAssembler) -> _,
            |a| a.push(rax),
            |a| a.cpuid(),
            |a| a.div(rcx),
            |a| a.mov(rax, cr0),
        ] {
            let d = dead_of(|a| {
                a.add(rax, rbx)?;
                f(a)?;
                a.sub(rax, rcx)
            });
            assert!(!d[0], "{d:?}");
        }
        // A register-only MOV, LEA (no access) or NOP sees nothing.
        let d = dead_of(|a| {
            a.add(rax, rbx)?;
            a.lea(rsi, qword_ptr(rdi + rcx * 4 + 8))?;
            a.mov(ecx, edx)?;
            a.nop_1(dword_ptr(rax))?;
            a.sub(rax, rcx)
        });
        assert!(d[0], "{d:?}");
        // A locked instruction is #UD on a register.
        let d = dead_of(|a| {
            a.add(rax, rbx)?;
            a.db(&[0xf0, 0x01, 0xd8])?; // lock add eax, ebx
            a.sub(rax, rcx)
        });
        assert!(!d[0], "{d:?}");
    }
}
