//! NOPs (all forms, PAUSE, prefetches), UD0/UD1/UD2, HLT, fences, CLFLUSH.

use iced_x86::Instruction;

use crate::cpu::{gp0, ud, Cpu, Pending, Res};
use crate::mmu::page_walk::Access;

pub fn nop(_: &mut Cpu, _: &Instruction) -> Res {
    Ok(())
}

pub fn undefined(_: &mut Cpu, _: &Instruction) -> Res {
    Err(ud())
}

pub fn hlt(cpu: &mut Cpu, _: &Instruction) -> Res {
    if cpu.cpl != 0 {
        return Err(gp0());
    }
    if cpu.irq.is_some() {
        cpu.halted = true;
    } else {
        cpu.posted.push_back(Pending::Hlt);
        cpu.end_block = true;
    }
    Ok(())
}

/// LFENCE MFENCE SFENCE: every access of this engine is already ordered
/// with respect to its own vCPU; make host stores visible to other vCPUs.
pub fn fence(_: &mut Cpu, _: &Instruction) -> Res {
    std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
    Ok(())
}

/// CLFLUSH/CLFLUSHOPT: no cache to flush, but the operand is checked as a
/// byte read (segment, page fault) without touching MMIO.
pub fn clflush(cpu: &mut Cpu, ins: &Instruction) -> Res {
    if ins.op0_kind() != iced_x86::OpKind::Memory {
        return Err(ud());
    }
    let off = cpu.ea(ins);
    let lin = cpu.seg_lin(cpu.mem_seg(ins), off, 1, false)?;
    let user = cpu.cpl == 3;
    cpu.translate(
        lin,
        Access {
            write: false,
            fetch: false,
            user,
        },
    )?;
    Ok(())
}
