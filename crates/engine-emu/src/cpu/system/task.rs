//! Task state: the I/O permission check (IOPL, then the TSS I/O bitmap) and
//! hardware task switches (task gates in the IDT, far JMP/CALL to a task
//! gate or TSS, IRET with NT set).

use kite_hypervisor::x86;

use super::super::{gp0, Cpu, Mode, Res};

impl Cpu {
    /// IN/OUT/INS/OUTS permission: IOPL, then the TSS I/O bitmap (#GP(0) if denied).
    pub fn check_io(&mut self, port: u16, size: u32) -> Res {
        match self.mode {
            Mode::Real => return Ok(()),
            Mode::Protected | Mode::Long if self.cpl <= self.iopl() => return Ok(()),
            _ => {}
        }
        // CPL > IOPL or VM86: the bitmap of a 32-bit (or 64-bit) TSS decides.
        let tr = self.tr;
        if tr.unusable || !tr.present || tr.type_ & 0x8 == 0 || tr.limit < 0x67 {
            return Err(gp0());
        }
        let long = self.long_mode_active();
        let lin = |base: u64, off: u64| {
            let a = base.wrapping_add(off);
            if long {
                a
            } else {
                a & 0xffff_ffff
            }
        };
        let map = self.read_lin(lin(tr.base, 0x66), 2, true)?;
        let byte = map + u64::from(port / 8);
        if byte + 1 > u64::from(tr.limit) {
            return Err(gp0());
        }
        let bits = self.read_lin(lin(tr.base, byte), 2, true)?;
        let want = ((1u64 << size) - 1) << (port & 7);
        if bits & want != 0 {
            return Err(gp0());
        }
        Ok(())
    }

    /// An IDT task gate: switch to the task of TSS selector `sel`.
    pub(super) fn task_gate_event(&mut self, sel: u16, ec: Option<u32>, ext: bool) -> Res {
        let _ = (ec, ext);
        Err(self.internal(format!(
            "hardware task switch through an IDT task gate (TSS {sel:#x}) is not implemented"
        )))
    }

    /// IRET with NT set: return to the previous task.
    pub(super) fn task_return(&mut self) -> Res {
        let _ = x86::RFLAGS_NT;
        Err(self.internal("IRET to a nested task (hardware task switch) is not implemented"))
    }

    /// Far JMP/CALL to a task gate or TSS.
    pub(super) fn task_switch_far(&mut self, sel: u16, raw: u64, call: bool) -> Res {
        let _ = (raw, call);
        Err(self.internal(format!(
            "far JMP/CALL to a task (selector {sel:#x}) is not implemented"
        )))
    }
}
