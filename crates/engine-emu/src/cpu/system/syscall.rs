//! Fast system calls: SYSCALL/SYSRET (Intel behaviour: 64-bit mode only),
//! SYSENTER/SYSEXIT (legacy and 64-bit), and SWAPGS. They load CS and SS
//! with fixed flat descriptors from the MSRs, not from the GDT.

use iced_x86::{Code, Instruction};
use kite_hypervisor::{x86, Segment};

use super::super::access::canonical;
use super::super::{gp0, reg, ud, Cpu, Mode, Res, Seg};

/// The flat code segment SYSCALL/SYSENTER/SYSRET/SYSEXIT load.
fn flat_code(selector: u16, dpl: u8, long: bool) -> Segment {
    Segment {
        base: 0,
        limit: 0xffff_ffff,
        selector,
        type_: 0xb,
        present: true,
        dpl,
        db: !long,
        s: true,
        l: long,
        g: true,
        avl: false,
        unusable: false,
    }
}

/// The flat stack segment they load.
fn flat_data(selector: u16, dpl: u8) -> Segment {
    Segment {
        type_: 0x3,
        db: true,
        l: false,
        ..flat_code(selector, dpl, false)
    }
}

impl Cpu {
    fn enter_flat(&mut self, cs: Segment, ss: Segment, cpl: u8) {
        self.seg[Seg::Cs as usize] = cs;
        self.seg[Seg::Ss as usize] = ss;
        self.cpl = cpl;
        self.update_mode();
        self.end_block = true;
    }
}

/// SYSCALL (64-bit mode, EFER.SCE).
pub(super) fn syscall(cpu: &mut Cpu, _: &Instruction) -> Res {
    if cpu.mode != Mode::Long || cpu.efer & x86::EFER_SCE == 0 {
        return Err(ud());
    }
    let sel = ((cpu.msr.star >> 32) & 0xffff) as u16;
    cpu.gpr[reg::RCX] = cpu.next_rip;
    let fl = cpu.flags.rflags() & !x86::RFLAGS_RF;
    cpu.gpr[11] = fl;
    cpu.flags
        .set_rflags(fl & !cpu.msr.sfmask & !x86::RFLAGS_RF & !x86::RFLAGS_VM);
    cpu.branch_to(cpu.msr.lstar);
    cpu.enter_flat(
        flat_code(sel & 0xfffc, 0, true),
        flat_data(sel.wrapping_add(8) & 0xfffc, 0),
        0,
    );
    Ok(())
}

/// SYSRET (to 64-bit code with REX.W, else to 32-bit compatibility code).
pub(super) fn sysret(cpu: &mut Cpu, ins: &Instruction) -> Res {
    if cpu.mode != Mode::Long || cpu.efer & x86::EFER_SCE == 0 {
        return Err(ud());
    }
    if cpu.cpl != 0 {
        return Err(gp0());
    }
    let sel = ((cpu.msr.star >> 48) & 0xffff) as u16;
    let to64 = ins.code() == Code::Sysretq;
    let (rip, cs) = if to64 {
        let rip = cpu.gpr[reg::RCX];
        if !canonical(rip) {
            return Err(gp0());
        }
        (rip, flat_code(sel.wrapping_add(16) | 3, 3, true))
    } else {
        (
            cpu.gpr[reg::RCX] & 0xffff_ffff,
            flat_code(sel | 3, 3, false),
        )
    };
    cpu.flags.set_rflags((cpu.gpr[11] & 0x003c_7fd7) | 2);
    cpu.branch_to(rip);
    cpu.enter_flat(cs, flat_data(sel.wrapping_add(8) | 3, 3), 3);
    Ok(())
}

/// SYSENTER.
pub(super) fn sysenter(cpu: &mut Cpu, _: &Instruction) -> Res {
    let sel = (cpu.msr.sysenter_cs & 0xfffc) as u16;
    if cpu.mode == Mode::Real || sel == 0 {
        return Err(gp0());
    }
    let long = cpu.long_mode_active();
    cpu.flags
        .set(x86::RFLAGS_VM | x86::RFLAGS_IF | x86::RFLAGS_RF, false);
    let m = if long { u64::MAX } else { 0xffff_ffff };
    cpu.gpr[reg::RSP] = cpu.msr.sysenter_esp & m;
    cpu.branch_to(cpu.msr.sysenter_eip & m);
    cpu.enter_flat(
        flat_code(sel, 0, long),
        flat_data(sel.wrapping_add(8), 0),
        0,
    );
    Ok(())
}

/// SYSEXIT (to 64-bit code with REX.W).
pub(super) fn sysexit(cpu: &mut Cpu, ins: &Instruction) -> Res {
    let sel = (cpu.msr.sysenter_cs & 0xfffc) as u16;
    if cpu.mode == Mode::Real || cpu.mode == Mode::Vm86 || cpu.cpl != 0 || sel == 0 {
        return Err(gp0());
    }
    let (cs, ss, rip, rsp) = if ins.code() == Code::Sysexitq {
        let (rip, rsp) = (cpu.gpr[reg::RDX], cpu.gpr[reg::RCX]);
        if !canonical(rip) || !canonical(rsp) {
            return Err(gp0());
        }
        (
            flat_code(sel.wrapping_add(32) | 3, 3, true),
            flat_data(sel.wrapping_add(40) | 3, 3),
            rip,
            rsp,
        )
    } else {
        (
            flat_code(sel.wrapping_add(16) | 3, 3, false),
            flat_data(sel.wrapping_add(24) | 3, 3),
            cpu.gpr[reg::RDX] & 0xffff_ffff,
            cpu.gpr[reg::RCX] & 0xffff_ffff,
        )
    };
    cpu.gpr[reg::RSP] = rsp;
    cpu.branch_to(rip);
    cpu.enter_flat(cs, ss, 3);
    Ok(())
}

/// SWAPGS (64-bit mode, CPL 0).
pub(super) fn swapgs(cpu: &mut Cpu, _: &Instruction) -> Res {
    if cpu.mode != Mode::Long {
        return Err(ud());
    }
    if cpu.cpl != 0 {
        return Err(gp0());
    }
    let gs = &mut cpu.seg[Seg::Gs as usize].base;
    std::mem::swap(gs, &mut cpu.msr.kernel_gs_base);
    cpu.end_block = true;
    Ok(())
}
