//! System instructions and mechanisms: segment loading and descriptor
//! checks, interrupt and exception delivery (real mode IVT, protected-mode
//! and long-mode IDT gates, TSS stack switching, IST, double and triple
//! fault), far transfers and IRET across privilege levels, control and debug
//! registers, MSRs, SYSCALL/SYSRET, SYSENTER/SYSEXIT, task state.
//!
//! A file per concern: `segments.rs` (descriptors, segment loads, stack
//! frames), `interrupts.rs` (event delivery, INT n), `iret.rs`, `far.rs`
//! (far JMP/CALL/RET, call gates), `control_regs.rs` (CR/DR, LMSW, SMSW,
//! CLTS, INVLPG, mode transitions), `msr.rs`, `syscall.rs`
//! (SYSCALL/SYSRET, SYSENTER/SYSEXIT, SWAPGS), `descriptors.rs`
//! (LGDT...ARPL), `tsc.rs` (the TSC clock, RDTSC/RDTSCP), `task.rs` (I/O
//! permission, task switches), `misc.rs` (CLI/STI, CPUID, UD2, MOV Sreg).
//!
//! What the other groups use from here:
//! - `load_segment(seg, sel)` for MOV/POP Sreg and LDS/LES/LFS/LGS/LSS (the
//!   caller sets `interrupt_shadow` after a load of SS);
//! - `check_io(port, size)` before IN/OUT/INS/OUTS;
//! - `deliver_event`/`deliver_exception` (the execution loop and the vCPU),
//!   `single_step_trap` after an instruction that began with TF set;
//! - `tsc::host_tsc()`: the engine-wide 1 GHz clock (the LAPIC's
//!   TSC-deadline timer uses it; `tsc::instant_of_host_tsc` converts back).
//! - Intel behaviour throughout (the CPUID vendor is GenuineIntel): SYSCALL
//!   and SYSRET exist only in 64-bit mode, null FS/GS loads clear the base.

mod control_regs;
mod descriptors;
mod far;
mod interrupts;
mod iret;
mod misc;
pub(crate) mod msr;
pub mod segments;
mod syscall;
mod task;
pub mod tsc;

#[cfg(test)]
mod tests;

use iced_x86::{Code, Instruction, Mnemonic};

use super::exec::Handler;

/// What kind of event is being delivered through the IDT/IVT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// A fault or trap raised by an instruction (RIP points at it for faults).
    Exception,
    /// An external interrupt from the irqchip.
    External,
    /// NMI.
    Nmi,
    /// INT n / INT3 / INTO: RIP is the next instruction; gate DPL is checked.
    Software,
}

/// The handler for a system instruction, if this group implements it.
pub fn handler(ins: &Instruction) -> Option<Handler> {
    use Code as C;
    let h: Handler = match ins.code() {
        C::Mov_r32_cr | C::Mov_r64_cr => control_regs::mov_from_cr,
        C::Mov_cr_r32 | C::Mov_cr_r64 => control_regs::mov_to_cr,
        C::Mov_r32_dr | C::Mov_r64_dr => control_regs::mov_from_dr,
        C::Mov_dr_r32 | C::Mov_dr_r64 => control_regs::mov_to_dr,
        C::Mov_Sreg_rm16 | C::Mov_Sreg_r32m16 | C::Mov_Sreg_r64m16 => misc::mov_to_sreg,
        C::Mov_rm16_Sreg | C::Mov_r32m16_Sreg | C::Mov_r64m16_Sreg => misc::mov_from_sreg,
        C::Jmp_ptr1616 | C::Jmp_ptr1632 | C::Jmp_m1616 | C::Jmp_m1632 | C::Jmp_m1664 => {
            far::jmp_far
        }
        C::Call_ptr1616 | C::Call_ptr1632 | C::Call_m1616 | C::Call_m1632 | C::Call_m1664 => {
            far::call_far
        }
        C::Retfw | C::Retfd | C::Retfq | C::Retfw_imm16 | C::Retfd_imm16 | C::Retfq_imm16 => {
            far::retf
        }
        C::Iretw | C::Iretd | C::Iretq => iret::iret,
        C::Int_imm8 => interrupts::int_n,
        C::Int3 => interrupts::int3,
        C::Into => interrupts::into,
        C::Int1 => interrupts::int1,
        C::Sysretd | C::Sysretq => syscall::sysret,
        C::Sysexitd | C::Sysexitq => syscall::sysexit,
        _ => match ins.mnemonic() {
            Mnemonic::Cli => misc::cli,
            Mnemonic::Sti => misc::sti,
            Mnemonic::Cpuid => misc::cpuid,
            Mnemonic::Ud2 => misc::ud2,
            Mnemonic::Lgdt => descriptors::lgdt,
            Mnemonic::Lidt => descriptors::lidt,
            Mnemonic::Sgdt => descriptors::sgdt,
            Mnemonic::Sidt => descriptors::sidt,
            Mnemonic::Lldt => descriptors::lldt,
            Mnemonic::Sldt => descriptors::sldt,
            Mnemonic::Ltr => descriptors::ltr,
            Mnemonic::Str => descriptors::str_,
            Mnemonic::Lar => descriptors::lar,
            Mnemonic::Lsl => descriptors::lsl,
            Mnemonic::Verr => descriptors::verr,
            Mnemonic::Verw => descriptors::verw,
            Mnemonic::Arpl => descriptors::arpl,
            Mnemonic::Lmsw => control_regs::lmsw,
            Mnemonic::Smsw => control_regs::smsw,
            Mnemonic::Clts => control_regs::clts,
            Mnemonic::Invlpg => control_regs::invlpg,
            Mnemonic::Invd | Mnemonic::Wbinvd => control_regs::cache_flush,
            Mnemonic::Rdmsr => msr::rdmsr,
            Mnemonic::Wrmsr => msr::wrmsr,
            Mnemonic::Rdtsc => tsc::rdtsc,
            Mnemonic::Rdtscp => tsc::rdtscp,
            Mnemonic::Syscall => syscall::syscall,
            Mnemonic::Sysenter => syscall::sysenter,
            Mnemonic::Swapgs => syscall::swapgs,
            _ => return None,
        },
    };
    Some(h)
}
