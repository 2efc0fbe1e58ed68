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
mod test_support;

use iced_x86::{Instruction, Mnemonic, OpKind, Register};

use super::exec::Handler;
use super::{Cpu, Res, Seg};

/// The handler for a general-purpose instruction, if this group implements it.
pub fn handler(ins: &Instruction) -> Option<Handler> {
    use Mnemonic as M;
    Some(match ins.mnemonic() {
        // Arithmetic and logic.
        M::Add => alu::binop::<{ alu::ADD }>,
        M::Or => alu::binop::<{ alu::OR }>,
        M::Adc => alu::binop::<{ alu::ADC }>,
        M::Sbb => alu::binop::<{ alu::SBB }>,
        M::And => alu::binop::<{ alu::AND }>,
        M::Sub => alu::binop::<{ alu::SUB }>,
        M::Xor => alu::binop::<{ alu::XOR }>,
        M::Cmp => alu::binop::<{ alu::CMP }>,
        M::Test => alu::binop::<{ alu::TEST }>,
        M::Not => alu::unop::<{ alu::NOT }>,
        M::Neg => alu::unop::<{ alu::NEG }>,
        M::Inc => alu::unop::<{ alu::INC }>,
        M::Dec => alu::unop::<{ alu::DEC }>,

        // Shifts and rotates.
        M::Shl | M::Sal => shift_rotate::shift::<{ shift_rotate::SHL }>,
        M::Shr => shift_rotate::shift::<{ shift_rotate::SHR }>,
        M::Sar => shift_rotate::shift::<{ shift_rotate::SAR }>,
        M::Rol => shift_rotate::shift::<{ shift_rotate::ROL }>,
        M::Ror => shift_rotate::shift::<{ shift_rotate::ROR }>,
        M::Rcl => shift_rotate::shift::<{ shift_rotate::RCL }>,
        M::Rcr => shift_rotate::shift::<{ shift_rotate::RCR }>,
        M::Shld => shift_rotate::shld,
        M::Shrd => shift_rotate::shrd,

        // Multiply and divide.
        M::Mul => muldiv::mul,
        M::Imul => muldiv::imul,
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
                data_move::mov
            }
        }
        M::Movzx => data_move::movzx,
        M::Movsx | M::Movsxd => data_move::movsx,
        M::Lea => data_move::lea,
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
        | M::Cmovg => data_move::cmov,
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
        | M::Setg => data_move::setcc,
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
        M::Push => stack::push,
        M::Pop => {
            if ins.op0_kind() == OpKind::Register && ins.op0_register().is_segment_register() {
                stack::pop_seg
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
        | M::Jg => control::jcc,
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
