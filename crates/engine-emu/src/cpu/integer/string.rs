//! String instructions MOVS CMPS SCAS LODS STOS INS OUTS, with REP,
//! REPE and REPNE.
//!
//! The address size (from the operand kinds iced gives: MemorySegSI/ESI/RSI,
//! MemoryESDI/EDI/RDI) selects SI/ESI/RSI, DI/EDI/RDI and CX/ECX/RCX and how
//! they wrap; DF selects the direction. A repeated instruction runs up to
//! `MAX_ITERATIONS` iterations per call, then leaves RIP on itself so
//! interrupts can be taken between calls; it also stops after any iteration
//! that went out of the engine (a replayed MMIO/port read, a posted MMIO or
//! port write) or wrote to decoded code. Every iteration commits its
//! registers, so a fault in iteration k leaves the state after k-1 (the
//! architectural REP behaviour).

use iced_x86::{Instruction, OpKind, Register};

use super::control::set_counter;
use crate::cpu::flags::mask;
use crate::cpu::reg::{RAX, RCX, RDI, RDX, RSI};
use crate::cpu::{Cpu, Res, Seg};
use crate::mmu::page_walk::Access;

/// Iterations of a repeated string instruction per handler call.
const MAX_ITERATIONS: u32 = 4096;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Rep {
    Once,
    Plain,
    WhileEqual,
    WhileNotEqual,
}

/// Address size of a string instruction, from its memory operand kinds.
fn addr_bits(ins: &Instruction) -> u32 {
    for i in 0..ins.op_count() {
        match ins.op_kind(i) {
            OpKind::MemorySegSI | OpKind::MemoryESDI | OpKind::MemorySegDI => return 16,
            OpKind::MemorySegESI | OpKind::MemoryESEDI | OpKind::MemorySegEDI => return 32,
            OpKind::MemorySegRSI | OpKind::MemoryESRDI | OpKind::MemorySegRDI => return 64,
            _ => {}
        }
    }
    64
}

/// Element size in bytes.
fn elem_size(ins: &Instruction) -> u32 {
    (ins.memory_size().size() as u32).clamp(1, 8)
}

/// Write an index/counter register at the address size.
fn set_index(cpu: &mut Cpu, r: usize, bits: u32, v: u64) {
    let m = mask(bits);
    cpu.gpr[r] = match bits {
        16 => (cpu.gpr[r] & !m) | (v & m),
        _ => v & m,
    };
}

/// One iteration's context.
#[derive(Clone, Copy)]
struct Ctx {
    bits: u32,
    size: u32,
    src_seg: Seg,
}

impl Ctx {
    fn si(&self, cpu: &Cpu) -> u64 {
        cpu.gpr[RSI] & mask(self.bits)
    }
    fn di(&self, cpu: &Cpu) -> u64 {
        cpu.gpr[RDI] & mask(self.bits)
    }
    fn delta(&self, cpu: &Cpu) -> u64 {
        if cpu.flags.df() {
            u64::from(self.size).wrapping_neg()
        } else {
            u64::from(self.size)
        }
    }
    fn advance(&self, cpu: &mut Cpu, r: usize) {
        let v = cpu.gpr[r].wrapping_add(self.delta(cpu));
        set_index(cpu, r, self.bits, v);
    }
}

/// Run `step` once, or as a REP loop.
fn drive(cpu: &mut Cpu, ins: &Instruction, rep: Rep, step: fn(&mut Cpu, &Ctx) -> Res) -> Res {
    let ctx = Ctx {
        bits: addr_bits(ins),
        size: elem_size(ins),
        src_seg: Seg::from_iced(ins.memory_segment()).unwrap_or(Seg::Ds),
    };
    if rep == Rep::Once {
        return step(cpu, &ctx);
    }
    let cm = mask(ctx.bits);
    for _ in 0..MAX_ITERATIONS {
        let count = cpu.gpr[RCX] & cm;
        if count == 0 {
            return Ok(());
        }
        step(cpu, &ctx)?;
        set_counter(cpu, ctx.bits, count - 1);
        if count == 1 {
            return Ok(());
        }
        match rep {
            Rep::WhileEqual if !cpu.flags.zf() => return Ok(()),
            Rep::WhileNotEqual if cpu.flags.zf() => return Ok(()),
            _ => {}
        }
        if cpu.replay_pos > 0 || !cpu.posted.is_empty() || cpu.end_block {
            break;
        }
    }
    // More iterations remain: run this instruction again.
    cpu.next_rip = cpu.rip;
    Ok(())
}

fn rep_plain(ins: &Instruction) -> Rep {
    if ins.has_rep_prefix() || ins.has_repne_prefix() {
        Rep::Plain
    } else {
        Rep::Once
    }
}

fn rep_cond(ins: &Instruction) -> Rep {
    if ins.has_repe_prefix() {
        Rep::WhileEqual
    } else if ins.has_repne_prefix() {
        Rep::WhileNotEqual
    } else {
        Rep::Once
    }
}

fn acc_reg(size: u32) -> Register {
    match size {
        1 => Register::AL,
        2 => Register::AX,
        4 => Register::EAX,
        _ => Register::RAX,
    }
}

fn movs_step(cpu: &mut Cpu, c: &Ctx) -> Res {
    let v = cpu.read_mem(c.src_seg, c.si(cpu), c.size)?;
    cpu.write_mem(Seg::Es, c.di(cpu), c.size, v)?;
    c.advance(cpu, RSI);
    c.advance(cpu, RDI);
    Ok(())
}

fn cmps_step(cpu: &mut Cpu, c: &Ctx) -> Res {
    let a = cpu.read_mem(c.src_seg, c.si(cpu), c.size)?;
    let b = cpu.read_mem(Seg::Es, c.di(cpu), c.size)?;
    c.advance(cpu, RSI);
    c.advance(cpu, RDI);
    cpu.flags
        .set_sub(a, b, false, a.wrapping_sub(b), c.size * 8);
    Ok(())
}

fn scas_step(cpu: &mut Cpu, c: &Ctx) -> Res {
    let a = cpu.gpr[RAX] & mask(c.size * 8);
    let b = cpu.read_mem(Seg::Es, c.di(cpu), c.size)?;
    c.advance(cpu, RDI);
    cpu.flags
        .set_sub(a, b, false, a.wrapping_sub(b), c.size * 8);
    Ok(())
}

fn lods_step(cpu: &mut Cpu, c: &Ctx) -> Res {
    let v = cpu.read_mem(c.src_seg, c.si(cpu), c.size)?;
    cpu.reg_write(acc_reg(c.size), v);
    c.advance(cpu, RSI);
    Ok(())
}

fn stos_step(cpu: &mut Cpu, c: &Ctx) -> Res {
    let v = cpu.gpr[RAX];
    cpu.write_mem(Seg::Es, c.di(cpu), c.size, v)?;
    c.advance(cpu, RDI);
    Ok(())
}

fn ins_step(cpu: &mut Cpu, c: &Ctx) -> Res {
    let port = cpu.gpr[RDX] as u16;
    cpu.check_io(port, c.size)?;
    // Fault on the destination before the port is read, so a page fault
    // does not lose a device read.
    let lin = cpu.seg_lin(Seg::Es, c.di(cpu), c.size, true)?;
    let acc = Access {
        write: true,
        fetch: false,
        user: cpu.cpl == 3,
    };
    cpu.translate(lin, acc)?;
    let last = lin.wrapping_add(u64::from(c.size) - 1);
    if last & !0xfff != lin & !0xfff {
        cpu.translate(last, acc)?;
    }
    let v = cpu.io_in(port, c.size)?;
    cpu.write_lin(lin, c.size, v, false)?;
    c.advance(cpu, RDI);
    Ok(())
}

fn outs_step(cpu: &mut Cpu, c: &Ctx) -> Res {
    let port = cpu.gpr[RDX] as u16;
    cpu.check_io(port, c.size)?;
    let v = cpu.read_mem(c.src_seg, c.si(cpu), c.size)?;
    cpu.io_out(port, c.size, v)?;
    c.advance(cpu, RSI);
    Ok(())
}

pub fn movs(cpu: &mut Cpu, ins: &Instruction) -> Res {
    drive(cpu, ins, rep_plain(ins), movs_step)
}

pub fn cmps(cpu: &mut Cpu, ins: &Instruction) -> Res {
    drive(cpu, ins, rep_cond(ins), cmps_step)
}

pub fn scas(cpu: &mut Cpu, ins: &Instruction) -> Res {
    drive(cpu, ins, rep_cond(ins), scas_step)
}

pub fn lods(cpu: &mut Cpu, ins: &Instruction) -> Res {
    drive(cpu, ins, rep_plain(ins), lods_step)
}

pub fn stos(cpu: &mut Cpu, ins: &Instruction) -> Res {
    drive(cpu, ins, rep_plain(ins), stos_step)
}

pub fn ins(cpu: &mut Cpu, ins: &Instruction) -> Res {
    drive(cpu, ins, rep_plain(ins), ins_step)
}

pub fn outs(cpu: &mut Cpu, ins: &Instruction) -> Res {
    drive(cpu, ins, rep_plain(ins), outs_step)
}
