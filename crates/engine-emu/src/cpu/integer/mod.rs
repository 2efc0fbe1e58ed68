//! The general-purpose instruction set: integer arithmetic and logic, shifts
//! and rotates, multiply and divide, bit operations, BCD adjusts, data
//! movement, the stack, near control transfers, flag operations, port I/O,
//! string instructions with REP, and atomic (LOCK) read-modify-write.
//!
//! `handler` dispatches on the iced-x86 mnemonic at decode time. Instructions
//! owned by other groups (far transfers, INT/IRET, control registers, ...)
//! return `None` so the next group can claim them.
//!
//! Where the SDM leaves flags "undefined", the handlers reproduce what an AMD
//! EPYC host produces (measured), so differential tests against the host agree:
//! see the notes in `shift_rotate.rs`, `muldiv.rs` and `bits.rs`.

mod alu;
mod atomic;
mod bcd;
mod bits;
mod control;
mod data_move;
mod flags_ops;
mod io;
mod misc;
mod muldiv;
mod shift_rotate;
mod stack;
mod string;

#[cfg(test)]
mod addr32_tests;
#[cfg(test)]
pub(crate) mod test_support;

use iced_x86::{Instruction, Mnemonic, OpKind, Register};

use super::addr32::{by_form, GENERIC};
use super::exec::Handler;
use super::{Cpu, Res, Seg};

/// The handler for a general-purpose instruction, if this group implements it.
pub fn handler(ins: &Instruction) -> Option<Handler> {
    use Mnemonic as M;
    Some(match ins.mnemonic() {
        // Arithmetic and logic.
        M::Add => alu_handler::<{ alu::ADD }>(ins),
        M::Or => alu_handler::<{ alu::OR }>(ins),
        M::Adc => alu_handler::<{ alu::ADC }>(ins),
        M::Sbb => alu_handler::<{ alu::SBB }>(ins),
        M::And => alu_handler::<{ alu::AND }>(ins),
        M::Sub => alu_handler::<{ alu::SUB }>(ins),
        M::Xor => alu_handler::<{ alu::XOR }>(ins),
        M::Cmp => alu_handler::<{ alu::CMP }>(ins),
        M::Test => alu_handler::<{ alu::TEST }>(ins),
        M::Not => alu::unop::<{ alu::NOT }>,
        M::Neg => alu::unop::<{ alu::NEG }>,
        M::Inc => incdec_handler::<{ alu::INC }>(ins),
        M::Dec => incdec_handler::<{ alu::DEC }>(ins),

        // Shifts and rotates.
        M::Shl | M::Sal => shift_handler::<{ shift_rotate::SHL }>(ins),
        M::Shr => shift_handler::<{ shift_rotate::SHR }>(ins),
        M::Sar => shift_handler::<{ shift_rotate::SAR }>(ins),
        M::Rol => shift_handler::<{ shift_rotate::ROL }>(ins),
        M::Ror => shift_handler::<{ shift_rotate::ROR }>(ins),
        M::Rcl => shift_handler::<{ shift_rotate::RCL }>(ins),
        M::Rcr => shift_handler::<{ shift_rotate::RCR }>(ins),
        M::Shld => shift_rotate::shld,
        M::Shrd => shift_rotate::shrd,

        // Multiply and divide.
        M::Mul => muldiv::mul,
        M::Imul => {
            let regs = ins.op_count() == 2
                && ins.op0_kind() == OpKind::Register
                && ins.op1_kind() == OpKind::Register;
            match (
                regs,
                gpr_size(ins.op0_register()),
                gpr_size(ins.op1_register()),
            ) {
                (true, 8, 8) => muldiv::imul_rr::<8>,
                (true, 4, 4) => muldiv::imul_rr::<4>,
                _ => muldiv::imul,
            }
        }
        M::Div => muldiv::div,
        M::Idiv => muldiv::idiv,

        // Bits.
        M::Bt => bits::bt::<{ bits::BT }>,
        M::Bts => bits::bt::<{ bits::BTS }>,
        M::Btr => bits::bt::<{ bits::BTR }>,
        M::Btc => bits::bt::<{ bits::BTC }>,
        M::Bsf => bits::bsf,
        M::Bsr => bits::bsr,
        M::Tzcnt => bits::tzcnt,
        M::Lzcnt => bits::lzcnt,
        M::Popcnt => bits::popcnt,
        M::Bswap => bits::bswap,
        M::Movbe => bits::movbe,

        // BCD.
        M::Daa => bcd::daa,
        M::Das => bcd::das,
        M::Aaa => bcd::aaa,
        M::Aas => bcd::aas,
        M::Aam => bcd::aam,
        M::Aad => bcd::aad,

        // Data movement.
        M::Mov => {
            let r0 = ins.op0_register();
            let r1 = ins.op1_register();
            if is_system_reg(r0) || is_system_reg(r1) {
                return None;
            }
            if r0.is_segment_register() {
                data_move::mov_to_seg
            } else {
                mov_handler(ins)
            }
        }
        M::Movzx => extend_handler::<false>(ins),
        M::Movsx | M::Movsxd => extend_handler::<true>(ins),
        M::Lea => {
            if gpr_size(ins.op0_register()) == 4 && ins.op1_kind() == OpKind::Memory {
                match super::addr32::form(ins) {
                    GENERIC => data_move::lea,
                    _ => by_form!(ins, data_move::lea32[]),
                }
            } else {
                data_move::lea
            }
        }
        m if is_cmov(m) => cmov_handler(ins),
        m if is_setcc(m) => {
            if ins.op0_kind() == OpKind::Register {
                data_move::setcc_r
            } else {
                data_move::setcc
            }
        }
        M::Cbw | M::Cwde | M::Cdqe => data_move::cbw,
        M::Cwd | M::Cdq | M::Cqo => data_move::cwd,
        M::Xlatb => data_move::xlat,
        M::Xchg => data_move::xchg,
        M::Xadd => data_move::xadd,
        M::Cmpxchg => data_move::cmpxchg,
        M::Cmpxchg8b | M::Cmpxchg16b => data_move::cmpxchg8b16b,
        M::Bound => data_move::bound,
        M::Lds | M::Les | M::Lfs | M::Lgs | M::Lss => data_move::load_far_pointer,
        M::Salc => data_move::salc,

        // Flags.
        M::Clc => flags_ops::clc,
        M::Stc => flags_ops::stc,
        M::Cmc => flags_ops::cmc,
        M::Cld => flags_ops::cld,
        M::Std => flags_ops::std,
        M::Lahf => flags_ops::lahf,
        M::Sahf => flags_ops::sahf,

        // Stack.
        M::Push => {
            let reg = ins.op0_kind() == OpKind::Register;
            match (reg, gpr_size(ins.op0_register()), stack_op_size(ins)) {
                (true, 8, 8) => stack::push_r::<8>,
                (true, 4, 4) => stack::push_r::<4>,
                _ => stack::push,
            }
        }
        M::Pop => {
            if ins.op0_kind() == OpKind::Register && ins.op0_register().is_segment_register() {
                stack::pop_seg
            } else if ins.op0_kind() == OpKind::Register {
                match (gpr_size(ins.op0_register()), stack_op_size(ins)) {
                    (8, 8) => stack::pop_r::<8>,
                    (4, 4) => stack::pop_r::<4>,
                    _ => stack::pop,
                }
            } else {
                stack::pop
            }
        }
        M::Pusha | M::Pushad => stack::pusha,
        M::Popa | M::Popad => stack::popa,
        M::Pushf | M::Pushfd | M::Pushfq => stack::pushf,
        M::Popf | M::Popfd | M::Popfq => stack::popf,
        M::Enter => stack::enter,
        M::Leave => stack::leave,

        // Near control transfers.
        M::Jmp => {
            if ins.is_jmp_far() || ins.is_jmp_far_indirect() {
                return None;
            }
            control::jmp
        }
        M::Jo
        | M::Jno
        | M::Jb
        | M::Jae
        | M::Je
        | M::Jne
        | M::Jbe
        | M::Ja
        | M::Js
        | M::Jns
        | M::Jp
        | M::Jnp
        | M::Jl
        | M::Jge
        | M::Jle
        | M::Jg => control::JCC_BY_CC[usize::from(data_move::cc(ins))],
        M::Call => {
            if ins.is_call_far() || ins.is_call_far_indirect() {
                return None;
            }
            control::call
        }
        M::Ret => control::ret,
        M::Loop | M::Loope | M::Loopne => control::loop_,
        M::Jcxz | M::Jecxz | M::Jrcxz => control::jcxz,

        // Strings.
        M::Movsb | M::Movsw | M::Movsd | M::Movsq
            if matches!(
                ins.op0_kind(),
                OpKind::MemoryESDI | OpKind::MemoryESEDI | OpKind::MemoryESRDI
            ) =>
        {
            string::movs
        }
        M::Cmpsb | M::Cmpsw | M::Cmpsd | M::Cmpsq
            if matches!(
                ins.op0_kind(),
                OpKind::MemorySegSI | OpKind::MemorySegESI | OpKind::MemorySegRSI
            ) =>
        {
            string::cmps
        }
        M::Scasb | M::Scasw | M::Scasd | M::Scasq => string::scas,
        M::Lodsb | M::Lodsw | M::Lodsd | M::Lodsq => string::lods,
        M::Stosb | M::Stosw | M::Stosd | M::Stosq => string::stos,
        M::Insb | M::Insw | M::Insd => string::ins,
        M::Outsb | M::Outsw | M::Outsd => string::outs,

        // Port I/O.
        M::In => io::in_,
        M::Out => io::out,

        // Miscellaneous.
        // ENDBR32/64 are hint NOPs while CET is off (it is not advertised).
        M::Nop | M::Reservednop | M::Pause | M::Endbr32 | M::Endbr64 => misc::nop,
        M::Ud0 | M::Ud1 | M::Ud2 => misc::undefined,
        M::Hlt => misc::hlt,
        M::Lfence | M::Mfence | M::Sfence => misc::fence,
        M::Clflush | M::Clflushopt => misc::clflush,
        M::Prefetch
        | M::Prefetchw
        | M::Prefetchnta
        | M::Prefetcht0
        | M::Prefetcht1
        | M::Prefetcht2 => misc::nop,
        _ => return None,
    })
}

/// The size in bytes of a 32- or 64-bit GPR, else 0 (other registers, or
/// no register).
#[inline]
fn gpr_size(r: Register) -> u32 {
    let n = r as u32;
    if (Register::RAX as u32..=Register::R15 as u32).contains(&n) {
        8
    } else if (Register::EAX as u32..=Register::R15D as u32).contains(&n) {
        4
    } else {
        0
    }
}

/// The `cpu.gpr` index of a GPR of `SIZE` (4 or 8) bytes; the handlers that
/// use it are chosen only for such registers (`gpr_size`).
#[inline(always)]
pub(crate) fn gpr_index<const SIZE: u32>(r: Register) -> usize {
    let first = if SIZE == 8 {
        Register::RAX
    } else {
        Register::EAX
    };
    (r as usize).wrapping_sub(first as usize) & 15
}

/// Whether operand `i` is memory with an explicit address (not a string
/// operand).
#[inline]
fn plain_memory(ins: &Instruction, i: u32) -> bool {
    ins.op_kind(i) == OpKind::Memory
}

/// ADD..TEST: specialized handlers for the common register forms.
fn alu_handler<const OP: u8>(ins: &Instruction) -> Handler {
    if !ins.has_lock_prefix() && ins.op0_kind() == OpKind::Register {
        let size = gpr_size(ins.op0_register());
        let k1 = ins.op1_kind();
        match size {
            8 if k1 == OpKind::Register && gpr_size(ins.op1_register()) == 8 => {
                return alu::binop_rr::<OP, 8>
            }
            4 if k1 == OpKind::Register && gpr_size(ins.op1_register()) == 4 => {
                return alu::binop_rr::<OP, 4>
            }
            8 if matches!(k1, OpKind::Immediate8to64 | OpKind::Immediate32to64) => {
                return alu::binop_ri::<OP, 8>
            }
            4 if matches!(k1, OpKind::Immediate8to32 | OpKind::Immediate32) => {
                return alu::binop_ri::<OP, 4>
            }
            8 if plain_memory(ins, 1) && ins.memory_size().size() == 8 => {
                return alu::binop_rm::<OP, 8, GENERIC>
            }
            4 if plain_memory(ins, 1) && ins.memory_size().size() == 4 => {
                return by_form!(ins, alu::binop_rm[OP, 4])
            }
            _ => {}
        }
        let small = ins.op0_register().size();
        let src = match k1 {
            OpKind::Register if ins.op1_register().size() == small => Some(0),
            OpKind::Immediate8 | OpKind::Immediate16 | OpKind::Immediate8to16 => Some(1),
            OpKind::Memory if ins.memory_size().size() == small => Some(2),
            _ => None,
        };
        match (small, src) {
            (1, Some(0)) => return alu::binop_small_r::<OP, 1, 0, GENERIC>,
            (1, Some(1)) => return alu::binop_small_r::<OP, 1, 1, GENERIC>,
            (1, Some(2)) => return by_form!(ins, alu::binop_small_r[OP, 1, 2]),
            (2, Some(0)) => return alu::binop_small_r::<OP, 2, 0, GENERIC>,
            (2, Some(1)) => return alu::binop_small_r::<OP, 2, 1, GENERIC>,
            (2, Some(2)) => return by_form!(ins, alu::binop_small_r[OP, 2, 2]),
            _ => {}
        }
    }
    if !ins.has_lock_prefix() && plain_memory(ins, 0) {
        let size = ins.memory_size().size();
        let k1 = ins.op1_kind();
        let r1 = if k1 == OpKind::Register {
            gpr_size(ins.op1_register()) as usize
        } else {
            0
        };
        match size {
            8 if r1 == 8 => return alu::binop_m::<OP, 8, false, GENERIC>,
            4 if r1 == 4 => return by_form!(ins, alu::binop_m[OP, 4, false]),
            8 if matches!(k1, OpKind::Immediate8to64 | OpKind::Immediate32to64) => {
                return alu::binop_m::<OP, 8, true, GENERIC>
            }
            4 if matches!(k1, OpKind::Immediate8to32 | OpKind::Immediate32) => {
                return by_form!(ins, alu::binop_m[OP, 4, true])
            }
            2 if matches!(k1, OpKind::Immediate8to16 | OpKind::Immediate16) => {
                return by_form!(ins, alu::binop_m[OP, 2, true])
            }
            1 if k1 == OpKind::Immediate8 => return by_form!(ins, alu::binop_m[OP, 1, true]),
            _ => {}
        }
    }
    alu::binop::<OP>
}

/// MOVZX/MOVSX/MOVSXD into a 32/64-bit GPR: specialized by source size.
fn extend_handler<const SIGN: bool>(ins: &Instruction) -> Handler {
    let dst = gpr_size(ins.op0_register());
    let src = match ins.op1_kind() {
        OpKind::Memory => ins.memory_size().size() as u32,
        OpKind::Register => ins.op1_register().size() as u32,
        _ => 0,
    };
    match (dst, src) {
        (8, 1) => data_move::extend::<8, 1, SIGN, GENERIC>,
        (8, 2) => data_move::extend::<8, 2, SIGN, GENERIC>,
        (8, 4) => data_move::extend::<8, 4, SIGN, GENERIC>,
        (4, 1) => by_form!(ins, data_move::extend[4, 1, SIGN]),
        (4, 2) => by_form!(ins, data_move::extend[4, 2, SIGN]),
        (4, 4) => data_move::extend::<4, 4, SIGN, GENERIC>,
        _ if SIGN => data_move::movsx,
        _ => data_move::movzx,
    }
}

/// CMOVcc into a 32/64-bit GPR.
fn cmov_handler(ins: &Instruction) -> Handler {
    let size = gpr_size(ins.op0_register());
    match (size, ins.op1_kind()) {
        (8, OpKind::Register) if gpr_size(ins.op1_register()) == 8 => {
            data_move::cmov_r::<8, false, GENERIC>
        }
        (4, OpKind::Register) if gpr_size(ins.op1_register()) == 4 => {
            data_move::cmov_r::<4, false, GENERIC>
        }
        (8, OpKind::Memory) => data_move::cmov_r::<8, true, GENERIC>,
        (4, OpKind::Memory) => by_form!(ins, data_move::cmov_r[4, true]),
        _ => data_move::cmov,
    }
}

/// Shifts and rotates: specialized handlers for 32/64-bit registers.
fn shift_handler<const OP: u8>(ins: &Instruction) -> Handler {
    if ins.op0_kind() == OpKind::Register {
        let cl = ins.op1_kind() == OpKind::Register;
        match (gpr_size(ins.op0_register()), cl) {
            (8, true) => return shift_rotate::shift_r::<OP, 8, true>,
            (4, true) => return shift_rotate::shift_r::<OP, 4, true>,
            (8, false) => return shift_rotate::shift_r::<OP, 8, false>,
            (4, false) => return shift_rotate::shift_r::<OP, 4, false>,
            _ => {}
        }
    }
    shift_rotate::shift::<OP>
}

/// INC/DEC: specialized handlers for 32/64-bit registers.
fn incdec_handler<const OP: u8>(ins: &Instruction) -> Handler {
    if !ins.has_lock_prefix() && ins.op0_kind() == OpKind::Register {
        match gpr_size(ins.op0_register()) {
            8 => return alu::incdec_r::<OP, 8>,
            4 => return alu::incdec_r::<OP, 4>,
            _ => {}
        }
    }
    alu::unop::<OP>
}

/// MOV between GPRs, immediates and memory: specialized 32/64-bit forms.
fn mov_handler(ins: &Instruction) -> Handler {
    let (k0, k1) = (ins.op0_kind(), ins.op1_kind());
    if k0 == OpKind::Register {
        let size = gpr_size(ins.op0_register());
        match size {
            8 if k1 == OpKind::Register && gpr_size(ins.op1_register()) == 8 => {
                return data_move::mov_rr::<8>
            }
            4 if k1 == OpKind::Register && gpr_size(ins.op1_register()) == 4 => {
                return data_move::mov_rr::<4>
            }
            8 if matches!(k1, OpKind::Immediate64 | OpKind::Immediate32to64) => {
                return data_move::mov_ri::<8>
            }
            4 if k1 == OpKind::Immediate32 => return data_move::mov_ri::<4>,
            8 if plain_memory(ins, 1) && ins.memory_size().size() == 8 => {
                return match flat64_form(ins) {
                    Some(false) => data_move::mov_rm_flat::<8, false>,
                    Some(true) => data_move::mov_rm_flat::<8, true>,
                    None => data_move::mov_rm::<8, GENERIC>,
                };
            }
            4 if plain_memory(ins, 1) && ins.memory_size().size() == 4 => {
                return match flat64_form(ins) {
                    Some(false) => data_move::mov_rm_flat::<4, false>,
                    Some(true) => data_move::mov_rm_flat::<4, true>,
                    None => by_form!(ins, data_move::mov_rm[4]),
                };
            }
            _ => {}
        }
        // 8/16-bit registers from memory.
        let small = ins.op0_register().size();
        if plain_memory(ins, 1) && ins.memory_size().size() == small {
            match small {
                1 => return by_form!(ins, data_move::mov_rm_small[1]),
                2 => return by_form!(ins, data_move::mov_rm_small[2]),
                _ => {}
            }
        }
    } else if plain_memory(ins, 0) && k1 == OpKind::Register {
        match (
            gpr_size(ins.op1_register()),
            ins.memory_size().size(),
            flat64_form(ins),
        ) {
            (8, 8, Some(false)) => return data_move::mov_mr_flat::<8, false>,
            (8, 8, Some(true)) => return data_move::mov_mr_flat::<8, true>,
            (4, 4, Some(false)) => return data_move::mov_mr_flat::<4, false>,
            (4, 4, Some(true)) => return data_move::mov_mr_flat::<4, true>,
            (8, 8, None) => return data_move::mov_mr::<8, GENERIC>,
            (4, 4, None) => return by_form!(ins, data_move::mov_mr[4]),
            _ => {}
        }
        let small = ins.op1_register().size();
        if ins.op1_register().is_gpr() && ins.memory_size().size() == small {
            match small {
                1 => return by_form!(ins, data_move::mov_mr_small[1]),
                2 => return by_form!(ins, data_move::mov_mr_small[2]),
                _ => {}
            }
        }
    } else if plain_memory(ins, 0) {
        // Memory <- immediate.
        match (k1, ins.memory_size().size()) {
            (OpKind::Immediate8, 1) => return by_form!(ins, data_move::mov_mi[1]),
            (OpKind::Immediate16, 2) => return by_form!(ins, data_move::mov_mi[2]),
            (OpKind::Immediate32, 4) => return by_form!(ins, data_move::mov_mi[4]),
            _ => {}
        }
    }
    data_move::mov
}

/// Whether a memory operand of 64-bit code is flat (segment base 0: no FS
/// or GS) and addressed by a 64-bit base register, with (`Some(true)`) or
/// without an index register; `None` for every other form (RIP-relative,
/// 32-bit address size, no base, FS/GS).
fn flat64_form(ins: &Instruction) -> Option<bool> {
    let gpr64 = |r: Register| (Register::RAX..=Register::R15).contains(&r);
    if ins.code_size() != iced_x86::CodeSize::Code64
        || matches!(ins.memory_segment(), Register::FS | Register::GS)
        || !gpr64(ins.memory_base())
    {
        return None;
    }
    match ins.memory_index() {
        Register::None => Some(false),
        r if gpr64(r) => Some(true),
        _ => None,
    }
}

/// Control, debug and test registers belong to the system group.
fn is_system_reg(r: Register) -> bool {
    r.is_cr() || r.is_dr() || r.is_tr()
}

/// Where an r/m operand lives, resolved once so a read-modify-write computes
/// its address (and checks its segment) only once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Loc {
    Reg(Register),
    /// A linear address (segment checks done for the access kind).
    Mem(u64),
}

impl Cpu {
    /// Resolve operand `i` (register or memory) for an access of `size`
    /// bytes; `write` checks the segment for writing (read-modify-write).
    #[inline]
    pub(crate) fn loc(&self, ins: &Instruction, i: u32, size: u32, write: bool) -> Res<Loc> {
        match ins.op_kind(i) {
            OpKind::Register => Ok(Loc::Reg(ins.op_register(i))),
            _ => {
                let off = self.ea(ins);
                Ok(Loc::Mem(self.seg_lin(
                    self.mem_seg(ins),
                    off,
                    size,
                    write,
                )?))
            }
        }
    }

    #[inline]
    pub(crate) fn loc_read(&mut self, loc: Loc, size: u32) -> Res<u64> {
        match loc {
            Loc::Reg(r) => Ok(self.reg_read(r)),
            Loc::Mem(lin) => self.read_lin(lin, size, false),
        }
    }

    #[inline]
    pub(crate) fn loc_write(&mut self, loc: Loc, size: u32, v: u64) -> Res {
        match loc {
            Loc::Reg(r) => {
                self.reg_write(r, v);
                Ok(())
            }
            Loc::Mem(lin) => self.write_lin(lin, size, v, false),
        }
    }

    /// Near branch target check: canonical in 64-bit mode, else within the
    /// CS limit. Raises #GP(0).
    #[inline]
    pub(crate) fn check_near_target(&self, target: u64) -> Res {
        if self.mode == super::Mode::Long {
            if !super::access::canonical(target) {
                return Err(super::gp0());
            }
        } else if target > u64::from(self.seg[Seg::Cs as usize].limit) {
            return Err(super::gp0());
        }
        Ok(())
    }
}

/// The operand size in bytes of ENTER, LEAVE, near RET, PUSHA and POPA.
#[inline]
pub(crate) fn sized_by_code(ins: &Instruction) -> u32 {
    use iced_x86::Code as C;
    match ins.code() {
        C::Enterw_imm16_imm8 | C::Leavew | C::Retnw | C::Retnw_imm16 | C::Pushaw | C::Popaw => 2,
        C::Enterq_imm16_imm8 | C::Leaveq | C::Retnq | C::Retnq_imm16 => 8,
        _ => 4,
    }
}

/// The operand size in bytes of a push or pop (from iced's stack increment).
#[inline]
pub(crate) fn stack_op_size(ins: &Instruction) -> u32 {
    ins.stack_pointer_increment().unsigned_abs().min(8)
}

/// SETcc, any condition.
pub(crate) fn is_setcc(m: Mnemonic) -> bool {
    use Mnemonic as M;
    matches!(
        m,
        M::Seto
            | M::Setno
            | M::Setb
            | M::Setae
            | M::Sete
            | M::Setne
            | M::Setbe
            | M::Seta
            | M::Sets
            | M::Setns
            | M::Setp
            | M::Setnp
            | M::Setl
            | M::Setge
            | M::Setle
            | M::Setg
    )
}

/// CMOVcc, any condition.
pub(crate) fn is_cmov(m: Mnemonic) -> bool {
    use Mnemonic as M;
    matches!(
        m,
        M::Cmovo
            | M::Cmovno
            | M::Cmovb
            | M::Cmovae
            | M::Cmove
            | M::Cmovne
            | M::Cmovbe
            | M::Cmova
            | M::Cmovs
            | M::Cmovns
            | M::Cmovp
            | M::Cmovnp
            | M::Cmovl
            | M::Cmovge
            | M::Cmovle
            | M::Cmovg
    )
}
