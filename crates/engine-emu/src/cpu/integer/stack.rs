//! The stack: PUSH/POP (registers, memory, immediates, segment registers),
//! PUSHA/POPA, PUSHF/POPF (with the IOPL/CPL/VM86 rules), ENTER, LEAVE.
//!
//! A 32-bit push of a segment register writes the selector zero-extended.

use iced_x86::{Instruction, OpKind, Register};
use kite_hypervisor::x86::{
    RFLAGS_AC, RFLAGS_ID, RFLAGS_IF, RFLAGS_IOPL, RFLAGS_RF, RFLAGS_VIF, RFLAGS_VIP, RFLAGS_VM,
};

use super::{sized_by_code, stack_op_size};
use crate::cpu::flags::mask;
use crate::cpu::reg::{RBP, RSP};
use crate::cpu::{gp0, ud, Cpu, Mode, Res, Seg};

pub fn push(cpu: &mut Cpu, ins: &Instruction) -> Res {
    let size = stack_op_size(ins);
    let v = match ins.op0_kind() {
        OpKind::Register | OpKind::Memory => cpu.read_op(ins, 0)?,
        _ => ins.immediate(0),
    } & mask(size * 8);
    cpu.push(v, size)
}

pub fn pop(cpu: &mut Cpu, ins: &Instruction) -> Res {
    let size = stack_op_size(ins);
    let v = cpu.stack_peek(0, size)?;
    let old = cpu.gpr[RSP];
    cpu.set_sp(old.wrapping_add(u64::from(size)));
    match ins.op0_kind() {
        OpKind::Register => {
            // POP rSP loads the popped value (written after the increment).
            cpu.reg_write(ins.op0_register(), v);
            Ok(())
        }
        _ => {
            // The address of a memory destination uses the incremented rSP.
            if let Err(e) = cpu.write_op(ins, 0, v) {
                cpu.gpr[RSP] = old;
                return Err(e);
            }
            Ok(())
        }
    }
}

/// PUSH of a GPR whose size (4 or 8 bytes) is the stack operand size,
/// chosen at decode time.
pub fn push_r<const SIZE: u32>(cpu: &mut Cpu, ins: &Instruction) -> Res {
    let v = cpu.gpr[super::gpr_index::<SIZE>(ins.op0_register())] & mask(SIZE * 8);
    cpu.push(v, SIZE)
}

/// POP into a GPR whose size (4 or 8 bytes) is the stack operand size.
pub fn pop_r<const SIZE: u32>(cpu: &mut Cpu, ins: &Instruction) -> Res {
    let v = cpu.stack_peek(0, SIZE)?;
    let old = cpu.gpr[RSP];
    cpu.set_sp(old.wrapping_add(u64::from(SIZE)));
    // POP rSP loads the popped value (written after the increment).
    cpu.gpr[super::gpr_index::<SIZE>(ins.op0_register())] = v & mask(SIZE * 8);
    Ok(())
}

/// POP Sreg.
pub fn pop_seg(cpu: &mut Cpu, ins: &Instruction) -> Res {
    let Some(seg) = Seg::from_iced(ins.op0_register()) else {
        return Err(ud());
    };
    if seg == Seg::Cs {
        return Err(ud());
    }
    let size = stack_op_size(ins);
    let v = cpu.stack_peek(0, size)?;
    cpu.load_segment(seg, v as u16)?;
    let sp = cpu.gpr[RSP].wrapping_add(u64::from(size));
    cpu.set_sp(sp);
    if seg == Seg::Ss {
        cpu.interrupt_shadow = true;
    }
    cpu.end_block = true;
    Ok(())
}

const PUSHA_ORDER: [usize; 8] = [0, 1, 2, 3, 4, 5, 6, 7];

pub fn pusha(cpu: &mut Cpu, ins: &Instruction) -> Res {
    let size = sized_by_code(ins);
    let m = mask(size * 8);
    let sp = cpu.gpr[RSP] & cpu.sp_mask();
    let total = u64::from(size) * 8;
    // Memory order (lowest address first): DI SI BP SP BX DX CX AX.
    let vals: Vec<u64> = PUSHA_ORDER.iter().rev().map(|&r| cpu.gpr[r] & m).collect();
    if sp >= total {
        let new_sp = sp - total;
        let mut buf = Vec::with_capacity(total as usize);
        for v in &vals {
            buf.extend_from_slice(&v.to_le_bytes()[..size as usize]);
        }
        let lin = cpu.seg_lin(Seg::Ss, new_sp, total as u32, true)?;
        cpu.write_lin_bytes(lin, &buf, false)?;
        cpu.set_sp(new_sp);
        return Ok(());
    }
    // The stack pointer wraps inside the 8 pushes: one at a time, all
    // addresses checked first.
    let smask = cpu.sp_mask();
    let mut lins = [0u64; 8];
    for (i, l) in lins.iter_mut().enumerate() {
        let a = sp.wrapping_sub(u64::from(size) * (8 - i as u64)) & smask;
        *l = cpu.seg_lin(Seg::Ss, a, size, true)?;
    }
    for (l, v) in lins.iter().zip(vals.iter()) {
        cpu.write_lin(*l, size, *v, false)?;
    }
    cpu.set_sp(sp.wrapping_sub(total));
    Ok(())
}

pub fn popa(cpu: &mut Cpu, ins: &Instruction) -> Res {
    let size = sized_by_code(ins);
    let mut vals = [0u64; 8];
    for (i, v) in vals.iter_mut().enumerate() {
        *v = cpu.stack_peek(u64::from(size) * i as u64, size)?;
    }
    // vals: DI SI BP (SP skipped) BX DX CX AX.
    let regs16 = [
        Register::DI,
        Register::SI,
        Register::BP,
        Register::SP,
        Register::BX,
        Register::DX,
        Register::CX,
        Register::AX,
    ];
    let regs32 = [
        Register::EDI,
        Register::ESI,
        Register::EBP,
        Register::ESP,
        Register::EBX,
        Register::EDX,
        Register::ECX,
        Register::EAX,
    ];
    let regs = if size == 2 { regs16 } else { regs32 };
    for (i, r) in regs.iter().enumerate() {
        if i != 3 {
            cpu.reg_write(*r, vals[i]);
        }
    }
    let sp = cpu.gpr[RSP].wrapping_add(u64::from(size) * 8);
    cpu.set_sp(sp);
    Ok(())
}

fn iopl(cpu: &Cpu) -> u8 {
    ((cpu.flags.rflags() & RFLAGS_IOPL) >> 12) as u8
}

pub fn pushf(cpu: &mut Cpu, ins: &Instruction) -> Res {
    if cpu.mode == Mode::Vm86 && iopl(cpu) < 3 {
        return Err(gp0());
    }
    let size = stack_op_size(ins);
    let v = cpu.flags.rflags() & !(RFLAGS_VM | RFLAGS_RF);
    cpu.push(v & mask(size * 8), size)
}

pub fn popf(cpu: &mut Cpu, ins: &Instruction) -> Res {
    let size = stack_op_size(ins);
    let iopl = iopl(cpu);
    if cpu.mode == Mode::Vm86 && iopl < 3 {
        return Err(gp0());
    }
    let v = cpu.stack_peek(0, size)?;
    let mut keep = RFLAGS_VIP | RFLAGS_VIF | RFLAGS_VM | RFLAGS_RF;
    match cpu.mode {
        Mode::Real => {}
        Mode::Vm86 => keep |= RFLAGS_IOPL,
        _ => {
            if cpu.cpl > 0 {
                keep |= RFLAGS_IOPL;
            }
            if cpu.cpl > iopl {
                keep |= RFLAGS_IF;
            }
        }
    }
    let mut modifiable = !keep & mask(size * 8);
    if size == 2 {
        modifiable &= !(RFLAGS_AC | RFLAGS_ID);
    }
    let old = cpu.flags.rflags();
    let new = ((old & !modifiable) | (v & modifiable)) & !RFLAGS_RF;
    let sp = cpu.gpr[RSP].wrapping_add(u64::from(size));
    cpu.set_sp(sp);
    cpu.flags.set_rflags(new);
    cpu.end_block = true;
    Ok(())
}

/// The rBP register of an operand size in bytes.
fn bp_reg(size: u32) -> Register {
    match size {
        2 => Register::BP,
        4 => Register::EBP,
        _ => Register::RBP,
    }
}

/// ENTER runs its steps in order on the hardware: push rBP, then for each
/// nesting level read the frame pointer at [rBP - n*size] and push it, then
/// push the frame pointer. With a deep nesting level the reads can reach
/// the slots this ENTER has just pushed (rBP close above rSP), so each read
/// sees the earlier pushes. The pushes are kept pending (to fault before any
/// state changes) and every read is overlaid with them.
pub fn enter(cpu: &mut Cpu, ins: &Instruction) -> Res {
    let size = sized_by_code(ins);
    let sz = u64::from(size);
    let alloc = u64::from(ins.immediate16());
    let level = u64::from(ins.immediate8_2nd() & 31);
    let smask = cpu.sp_mask();
    let m = mask(size * 8);
    let sp = cpu.gpr[RSP] & smask;
    let mut bp = cpu.gpr[RBP] & smask;
    // Pending pushes: (linear address, value), in order.
    let mut writes: Vec<(u64, u64)> = Vec::with_capacity(level as usize + 1);
    let mut cur = sp.wrapping_sub(sz) & smask;
    writes.push((cpu.seg_lin(Seg::Ss, cur, size, true)?, cpu.gpr[RBP] & m));
    let frame_temp = cur;
    if level > 0 {
        for _ in 1..level {
            bp = bp.wrapping_sub(sz) & smask;
            let lin = cpu.seg_lin(Seg::Ss, bp, size, false)?;
            let v = enter_overlay(cpu.read_lin(lin, size, false)?, lin, size, &writes);
            cur = cur.wrapping_sub(sz) & smask;
            writes.push((cpu.seg_lin(Seg::Ss, cur, size, true)?, v));
        }
        cur = cur.wrapping_sub(sz) & smask;
        writes.push((cpu.seg_lin(Seg::Ss, cur, size, true)?, frame_temp & m));
    }
    let new_sp = cur.wrapping_sub(alloc) & smask;
    if cpu.mode != Mode::Long && alloc != 0 {
        // The final stack pointer must be inside the stack segment.
        cpu.seg_lin(Seg::Ss, new_sp, size, true)?;
    }
    for &(l, v) in &writes {
        cpu.write_lin(l, size, v, false)?;
    }
    cpu.reg_write(bp_reg(size), frame_temp);
    cpu.set_sp(new_sp);
    Ok(())
}

/// `v`, read from `size` bytes at linear `lin`, with the bytes of the
/// pending ENTER pushes (each `size` bytes) laid over it, later ones last.
fn enter_overlay(v: u64, lin: u64, size: u32, writes: &[(u64, u64)]) -> u64 {
    let n = size as usize;
    let mut bytes = v.to_le_bytes();
    for &(wl, wv) in writes {
        let wb = wv.to_le_bytes();
        for (j, b) in bytes.iter_mut().enumerate().take(n) {
            let d = lin.wrapping_add(j as u64).wrapping_sub(wl);
            if d < u64::from(size) {
                *b = wb[d as usize];
            }
        }
    }
    u64::from_le_bytes(bytes)
}

pub fn leave(cpu: &mut Cpu, ins: &Instruction) -> Res {
    let size = sized_by_code(ins);
    let smask = cpu.sp_mask();
    let bp = cpu.gpr[RBP] & smask;
    let lin = cpu.seg_lin(Seg::Ss, bp, size, false)?;
    let v = cpu.read_lin(lin, size, false)?;
    cpu.set_sp(bp.wrapping_add(u64::from(size)));
    cpu.reg_write(bp_reg(size), v);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use iced_x86::code_asm::*;
    use kite_hypervisor::x86::*;

    #[test]
    fn push_pop_forms_and_pop_rsp() {
        let mut t = TestCpu::new(64);
        t.exec(|a| {
            a.push(-2i32).unwrap();
            a.pop(rax).unwrap();
            a.push(rsp).unwrap();
            a.pop(rbx).unwrap();
            a.mov(qword_ptr(DATA), 0x55i32).unwrap();
            a.push(qword_ptr(DATA)).unwrap();
            a.pop(rcx).unwrap();
            a.push(0x1234i32).unwrap();
            a.pop(rsp).unwrap();
        });
        assert_eq!(t.cpu.gpr[0], (-2i64) as u64);
        assert_eq!(t.cpu.gpr[3], STACK_TOP);
        assert_eq!(t.cpu.gpr[1], 0x55);
        assert_eq!(t.cpu.gpr[4], 0x1234);
    }

    #[test]
    fn pusha_popa_and_enter_leave_16bit() {
        let mut t = TestCpu::new(16);
        t.cpu.gpr[4] = 0x8000;
        t.exec(|a| {
            a.mov(ax, 1u32).unwrap();
            a.mov(bp, 0x7000u32).unwrap();
            a.pusha().unwrap();
            a.mov(ax, 9u32).unwrap();
            a.mov(bp, 9u32).unwrap();
            a.popa().unwrap();
        });
        assert_eq!(t.cpu.gpr[0] & 0xffff, 1);
        assert_eq!(t.cpu.gpr[5] & 0xffff, 0x7000);
        assert_eq!(t.cpu.gpr[4] & 0xffff, 0x8000);
        // ENTER 4,2: pushes BP, one outer frame pointer, the new frame.
        let mut t = TestCpu::new(32);
        t.cpu.gpr[5] = 0x7_0000;
        t.write(0x7_0000 - 4, &0x1111u32.to_le_bytes());
        t.exec(|a| {
            a.enter(4u32, 2u32).unwrap();
            a.mov(esi, esp).unwrap();
            a.mov(edi, ebp).unwrap();
            a.leave().unwrap();
        });
        let top = STACK_TOP;
        assert_eq!(t.cpu.gpr[7], top - 4);
        assert_eq!(t.cpu.gpr[6], top - 12 - 4);
        assert_eq!(t.read_u64(top - 4) as u32, 0x7_0000);
        assert_eq!(t.read_u64(top - 8) as u32, 0x1111);
        assert_eq!(t.read_u64(top - 12) as u32, (top - 4) as u32);
        assert_eq!(t.cpu.gpr[5], 0x7_0000);
        assert_eq!(t.cpu.gpr[4], top);
    }

    #[test]
    fn enter_nesting_reads_the_slots_it_has_just_pushed() {
        // rBP just above rSP: from the second level on, ENTER reads the
        // frame pointers from the slots it pushed itself (as the hardware
        // does, step by step), not from the memory as it was before.
        let mut t = TestCpu::new(64);
        let top = STACK_TOP;
        t.cpu.gpr[5] = top + 8;
        t.write_u64(top, 0xaaaa);
        t.write_u64(top - 8, 0xdead_0008);
        t.write_u64(top - 16, 0xdead_0010);
        t.exec(|a| {
            a.enter(0u32, 4u32).unwrap();
        });
        assert_eq!(t.read_u64(top - 8), top + 8, "old rBP");
        assert_eq!(t.read_u64(top - 16), 0xaaaa, "[rBP - 8]");
        assert_eq!(t.read_u64(top - 24), top + 8, "[rBP - 16]: pushed above");
        assert_eq!(t.read_u64(top - 32), 0xaaaa, "[rBP - 24]: pushed above");
        assert_eq!(t.read_u64(top - 40), top - 8, "the new frame pointer");
        assert_eq!(t.cpu.gpr[5], top - 8);
        assert_eq!(t.cpu.gpr[4], top - 40);
    }

    #[test]
    fn popf_privilege_rules() {
        // CPL 3 > IOPL 0: IF and IOPL unchanged, VM never set.
        let mut t = TestCpu::new(32);
        t.cpu.flags.set(RFLAGS_IF, true);
        t.cpu.cpl = 3;
        t.exec(|a| {
            a.push(0x0002_3000u32 | 0x8c5).unwrap();
            a.popfd().unwrap();
        });
        let f = t.rflags();
        assert!(f & RFLAGS_IF != 0);
        assert_eq!(f & RFLAGS_IOPL, 0);
        assert_eq!(f & RFLAGS_VM, 0);
        assert_eq!(f & 0x8c5, 0x8c5);
        // CPL 0: IF can be cleared, IOPL set.
        let mut t = TestCpu::new(32);
        t.cpu.flags.set(RFLAGS_IF, true);
        t.exec(|a| {
            a.push(0x3002u32).unwrap();
            a.popfd().unwrap();
            a.pushfd().unwrap();
            a.pop(eax).unwrap();
        });
        assert_eq!(t.rflags() & RFLAGS_IF, 0);
        assert_eq!(t.rflags() & RFLAGS_IOPL, RFLAGS_IOPL);
        assert_eq!(t.cpu.gpr[0], 0x3002);
    }
}
