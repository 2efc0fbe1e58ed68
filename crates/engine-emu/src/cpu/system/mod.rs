//! System instructions and mechanisms: segment loading and descriptor
//! checks, interrupt and exception delivery (real mode IVT, protected-mode
//! and long-mode IDT gates, TSS stack switching, IST, double and triple
//! fault), far transfers and IRET across privilege levels, control and debug
//! registers, MSRs, SYSCALL/SYSRET, SYSENTER/SYSEXIT, task state.

use iced_x86::Instruction;
use kite_hypervisor::x86;

use super::exec::Handler;
use super::{Cpu, Exception, Fault, Mode, Res, Seg};

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
pub fn handler(_ins: &Instruction) -> Option<Handler> {
    None
}

impl Cpu {
    /// Deliver an exception raised by the current instruction, escalating to
    /// #DF and then to a triple fault as the SDM's table 6-5 says.
    pub fn deliver_exception(&mut self, e: Exception) -> Res {
        self.deliver_event(e.vector, e.error_code, EventKind::Exception)
    }

    /// Deliver an event through the IVT (real mode) or IDT.
    pub fn deliver_event(&mut self, vector: u8, error_code: Option<u32>, kind: EventKind) -> Res {
        let _ = (error_code, kind);
        match self.mode {
            Mode::Real => {
                let entry = u64::from(vector) * 4;
                if entry + 3 > u64::from(self.idtr.limit) {
                    return Err(Fault::TripleFault);
                }
                let v = self.read_lin(self.idtr.base.wrapping_add(entry), 4, true)?;
                let flags = self.flags.rflags();
                let cs = u64::from(self.seg[Seg::Cs as usize].selector);
                self.push(flags, 2)?;
                self.push(cs, 2)?;
                self.push(self.rip, 2)?;
                self.flags
                    .set(x86::RFLAGS_IF | x86::RFLAGS_TF | x86::RFLAGS_AC, false);
                let sel = (v >> 16) as u16;
                self.seg[Seg::Cs as usize].selector = sel;
                self.seg[Seg::Cs as usize].base = u64::from(sel) << 4;
                self.rip = v & 0xffff;
                self.halted = false;
                Ok(())
            }
            _ => Err(self.internal(format!(
                "event delivery (vector {vector}) outside real mode is not implemented yet"
            ))),
        }
    }

    /// Load a segment register from a selector with the checks of the
    /// current mode (MOV/POP to a segment register, LDS...).
    pub fn load_segment(&mut self, seg: Seg, selector: u16) -> Res {
        match self.mode {
            Mode::Real | Mode::Vm86 => {
                let s = &mut self.seg[seg as usize];
                s.selector = selector;
                s.base = u64::from(selector) << 4;
                if seg == Seg::Cs {
                    self.update_mode();
                }
                Ok(())
            }
            _ => Err(self.internal("protected-mode segment loads are not implemented yet")),
        }
    }

    /// IN/OUT/INS/OUTS permission: IOPL, then the TSS I/O bitmap (#GP(0) if denied).
    pub fn check_io(&mut self, port: u16, size: u32) -> Res {
        let _ = (port, size);
        Ok(())
    }

    /// The value RDMSR returns, or None for an MSR the engine does not have (#GP).
    pub fn peek_msr(&self, index: u32) -> Option<u64> {
        let _ = index;
        None
    }

    /// WRMSR.
    pub fn wrmsr(&mut self, index: u32, value: u64) -> Res {
        Err(self.internal(format!("wrmsr {index:#x}={value:#x} not implemented yet")))
    }
}
