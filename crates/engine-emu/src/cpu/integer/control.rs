//! Near control transfers: JMP, Jcc, CALL, RET (with imm16), LOOP LOOPE
//! LOOPNE, JCXZ/JECXZ/JRCXZ. Targets are checked (canonical in 64-bit mode,
//! CS limit otherwise, #GP(0)) before anything is pushed or committed.

use iced_x86::{Code, Instruction, OpKind};

use super::{sized_by_code, stack_op_size};
use crate::cpu::flags::mask;
use crate::cpu::reg::{RCX, RSP};
use crate::cpu::{Cpu, Res};

#[inline]
fn is_rel(ins: &Instruction) -> bool {
    matches!(
        ins.op0_kind(),
        OpKind::NearBranch16 | OpKind::NearBranch32 | OpKind::NearBranch64
    )
}

/// The target of a near JMP/CALL: relative, or read from r/m (masked to
/// the operand size).
fn target(cpu: &mut Cpu, ins: &Instruction) -> Res<u64> {
    if is_rel(ins) {
        return Ok(cpu.branch_target(ins));
    }
    let size = cpu.op_size(ins, 0);
    Ok(cpu.read_op(ins, 0)? & mask(size * 8))
}

pub fn jmp(cpu: &mut Cpu, ins: &Instruction) -> Res {
    let t = target(cpu, ins)?;
    cpu.check_near_target(t)?;
    cpu.branch_to(t);
    Ok(())
}

/// Jcc with its condition code (0..15) fixed at decode time, so only the
/// flags it tests are computed.
pub fn jcc_cc<const CC: u8>(cpu: &mut Cpu, ins: &Instruction) -> Res {
    if cpu.flags.cond(CC) {
        let t = cpu.branch_target(ins);
        cpu.check_near_target(t)?;
        cpu.branch_to(t);
    }
    Ok(())
}

/// `jcc_cc` for each condition code.
pub(crate) const JCC_BY_CC: [crate::cpu::exec::Handler; 16] = [
    jcc_cc::<0>,
    jcc_cc::<1>,
    jcc_cc::<2>,
    jcc_cc::<3>,
    jcc_cc::<4>,
    jcc_cc::<5>,
    jcc_cc::<6>,
    jcc_cc::<7>,
    jcc_cc::<8>,
    jcc_cc::<9>,
    jcc_cc::<10>,
    jcc_cc::<11>,
    jcc_cc::<12>,
    jcc_cc::<13>,
    jcc_cc::<14>,
    jcc_cc::<15>,
];

pub fn call(cpu: &mut Cpu, ins: &Instruction) -> Res {
    let t = target(cpu, ins)?;
    cpu.check_near_target(t)?;
    let size = stack_op_size(ins);
    cpu.push(cpu.next_rip & mask(size * 8), size)?;
    cpu.branch_to(t);
    Ok(())
}

pub fn ret(cpu: &mut Cpu, ins: &Instruction) -> Res {
    let size = sized_by_code(ins);
    let imm = if ins.op_count() > 0 {
        u64::from(ins.immediate16())
    } else {
        0
    };
    let t = cpu.stack_peek(0, size)? & mask(size * 8);
    cpu.check_near_target(t)?;
    let sp = cpu.gpr[RSP].wrapping_add(u64::from(size)).wrapping_add(imm);
    cpu.set_sp(sp);
    cpu.branch_to(t);
    Ok(())
}

/// Width in bits of the counter register (CX, ECX, RCX) of LOOP/JrCXZ.
fn counter_bits(code: Code) -> u32 {
    use Code as C;
    match code {
        C::Loop_rel8_16_CX
        | C::Loop_rel8_32_CX
        | C::Loope_rel8_16_CX
        | C::Loope_rel8_32_CX
        | C::Loopne_rel8_16_CX
        | C::Loopne_rel8_32_CX
        | C::Jcxz_rel8_16
        | C::Jcxz_rel8_32 => 16,
        C::Loop_rel8_16_ECX
        | C::Loop_rel8_32_ECX
        | C::Loop_rel8_64_ECX
        | C::Loope_rel8_16_ECX
        | C::Loope_rel8_32_ECX
        | C::Loope_rel8_64_ECX
        | C::Loopne_rel8_16_ECX
        | C::Loopne_rel8_32_ECX
        | C::Loopne_rel8_64_ECX
        | C::Jecxz_rel8_16
        | C::Jecxz_rel8_32
        | C::Jecxz_rel8_64 => 32,
        _ => 64,
    }
}

/// Write the low `bits` of RCX (16: merge, 32: zero-extend).
pub(crate) fn set_counter(cpu: &mut Cpu, bits: u32, v: u64) {
    let m = mask(bits);
    cpu.gpr[RCX] = match bits {
        16 => (cpu.gpr[RCX] & !m) | (v & m),
        _ => v & m,
    };
}

pub fn loop_(cpu: &mut Cpu, ins: &Instruction) -> Res {
    let bits = counter_bits(ins.code());
    let count = cpu.gpr[RCX].wrapping_sub(1) & mask(bits);
    let take = count != 0
        && match ins.mnemonic() {
            iced_x86::Mnemonic::Loope => cpu.flags.zf(),
            iced_x86::Mnemonic::Loopne => !cpu.flags.zf(),
            _ => true,
        };
    if take {
        let t = cpu.branch_target(ins);
        cpu.check_near_target(t)?;
        cpu.branch_to(t);
    }
    set_counter(cpu, bits, count);
    Ok(())
}

pub fn jcxz(cpu: &mut Cpu, ins: &Instruction) -> Res {
    let bits = counter_bits(ins.code());
    if cpu.gpr[RCX] & mask(bits) == 0 {
        let t = cpu.branch_target(ins);
        cpu.check_near_target(t)?;
        cpu.branch_to(t);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use iced_x86::code_asm::*;

    use crate::cpu::{exception, gp0, Fault};
    use kite_hypervisor::x86;

    #[test]
    fn call_ret_imm_loop_jcxz() {
        let mut t = TestCpu::new(64);
        t.exec(|a| {
            let mut f = a.create_label();
            let mut top = a.create_label();
            let mut skip = a.create_label();
            let mut done = a.create_label();
            a.push(7i32).unwrap();
            a.call(f).unwrap();
            a.mov(ecx, 5u32).unwrap();
            a.xor(ebx, ebx).unwrap();
            a.set_label(&mut top).unwrap();
            a.inc(ebx).unwrap();
            a.loop_(top).unwrap();
            a.jrcxz(skip).unwrap();
            a.mov(ebx, 99u32).unwrap();
            a.set_label(&mut skip).unwrap();
            a.jmp(done).unwrap();
            a.set_label(&mut f).unwrap();
            a.mov(rax, qword_ptr(rsp + 8)).unwrap();
            a.ret_1(8u32).unwrap();
            a.set_label(&mut done).unwrap();
        });
        assert_eq!(t.cpu.gpr[0], 7);
        assert_eq!(t.cpu.gpr[3], 5);
        assert_eq!(t.cpu.gpr[4], STACK_TOP);
    }

    #[test]
    fn non_canonical_call_target_faults_before_push() {
        let mut t = TestCpu::new(64);
        let (f, _) = t.fault(|a| {
            a.mov(rax, 0x8000_0000_0000u64).unwrap();
            a.call(rax).unwrap();
        });
        assert_eq!(f, gp0());
        assert_eq!(t.cpu.gpr[4], STACK_TOP);
    }

    #[test]
    fn non_canonical_data_address_faults_without_writing() {
        // Base-only and base+index forms, loads and stores; a stack
        // reference (RSP/RBP base) is #SS(0), any other #GP(0).
        type Build = fn(&mut CodeAssembler);
        let cases: [(Build, Fault); 5] = [
            (|a| a.mov(rax, qword_ptr(rbx)).unwrap(), gp0()),
            (
                |a| a.mov(qword_ptr(rbx + rcx * 8 + 16), rax).unwrap(),
                gp0(),
            ),
            (|a| a.mov(eax, dword_ptr(rcx + rbx)).unwrap(), gp0()),
            (
                |a| a.mov(qword_ptr(rbp - 8), rax).unwrap(),
                exception(x86::SS, Some(0)),
            ),
            (
                |a| a.mov(rax, qword_ptr(rsp + rbx)).unwrap(),
                exception(x86::SS, Some(0)),
            ),
        ];
        for (build, want) in cases {
            let mut t = TestCpu::new(64);
            t.cpu.gpr[0] = 0x1111;
            t.cpu.gpr[1] = 0;
            t.cpu.gpr[3] = 0x8000_0000_0000;
            t.cpu.gpr[5] = 0x8000_0000_0008;
            let (f, _) = t.fault(build);
            assert_eq!(f, want);
            assert_eq!(t.cpu.gpr[0], 0x1111, "destination untouched");
        }
    }

    #[test]
    fn sixteen_bit_near_jump_wraps_ip() {
        let mut t = TestCpu::new(16);
        t.cpu.gpr[4] = 0x8000;
        t.exec(|a| {
            a.mov(ax, 0x1234u32).unwrap();
            a.push(ax).unwrap();
            a.pop(bx).unwrap();
        });
        assert_eq!(t.cpu.gpr[3] & 0xffff, 0x1234);
        // LOOP with CX (16-bit address size) keeps the upper half of ECX.
        let mut t = TestCpu::new(16);
        t.cpu.gpr[1] = 0x0001_0002;
        t.exec(|a| {
            let mut l = a.create_label();
            a.set_label(&mut l).unwrap();
            a.loop_(l).unwrap();
        });
        assert_eq!(t.cpu.gpr[1], 0x0001_0000);
    }
}
