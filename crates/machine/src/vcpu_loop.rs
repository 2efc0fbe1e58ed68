//! One vCPU's loop: enter guest mode, dispatch the exit, repeat until the
//! machine stops; between exits, wait while the session is paused.

use std::time::Duration;

use kite_devices::{IoBus, MmioBus};
use kite_hypervisor::exit::SystemEvent;
use kite_hypervisor::{DebugHit, Vcpu, VcpuExit};

use crate::control::{Control, DebugEvent, MachineControl, VmEvent};

/// What to do after an exit, decided while the exit borrows the vCPU.
enum Next {
    Continue,
    Idle,
    Debug(DebugHit),
    End(VmEvent),
    TripleFault,
}

/// Sends `Failed` if the vCPU thread unwinds, so the session never waits on
/// a dead thread.
struct PanicGuard<'a> {
    id: u32,
    control: &'a Control,
}

impl Drop for PanicGuard<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.control.request(VmEvent::Failed(format!(
                "vCPU {}: internal error in kite (thread panicked)",
                self.id
            )));
        }
    }
}

pub fn run_vcpu(
    mut vcpu: Box<dyn Vcpu>,
    io: &IoBus,
    mmio: &MmioBus,
    control: &Control,
    session: &MachineControl,
) {
    let id = vcpu.id();
    let _guard = PanicGuard { id, control };
    // SAFETY: gettid has no preconditions and touches no memory.
    session.vcpu_started(id, unsafe { libc::gettid() });
    let debugger = session.debug_hook();
    let mut debug_event = None;
    // The last `run` returned with no exit left half done (Interrupted),
    // or the vCPU has not run yet: its state may be saved.
    let mut settled = true;
    while !control.stopping() {
        if session.pause_pending() && !settled {
            // Before parking, let the engine finish the last exit's
            // instruction: kicked, `run` completes it and returns at once.
            vcpu.kick_handle().kick();
        } else {
            // A pause takes effect here: outside `run`, between two exits.
            session.park_while_paused(control, vcpu.as_mut());
            if let Some(d) = &debugger {
                d.vcpu_checkpoint(vcpu.as_mut(), debug_event.take(), control);
            }
        }
        if control.stopping() {
            break;
        }
        let next = match vcpu.run() {
            Err(e) => Next::End(VmEvent::Failed(name_vcpu(id, e.to_string()))),
            Ok(exit) => {
                settled = matches!(exit, VcpuExit::Interrupted);
                dispatch(id, exit, io, mmio)
            }
        };
        match next {
            Next::Continue => {}
            // HLT with nothing to wake it (no irqchip): do not spin hot.
            Next::Idle => std::thread::sleep(Duration::from_millis(1)),
            Next::Debug(hit) => debug_event = Some(DebugEvent::Hit(hit)),
            Next::End(ev) => {
                control.request(ev);
                return;
            }
            Next::TripleFault => {
                // An attached debugger sees the vCPU as it died, first.
                if let Some(d) = &debugger {
                    d.vcpu_checkpoint(vcpu.as_mut(), Some(DebugEvent::TripleFault), control);
                }
                control.request(VmEvent::TripleFault(format!(
                    "vCPU {id}: triple fault (guest shutdown): {}",
                    describe_state(vcpu.as_ref())
                )));
                return;
            }
        }
    }
}

fn dispatch(id: u32, exit: VcpuExit<'_>, io: &IoBus, mmio: &MmioBus) -> Next {
    match exit {
        VcpuExit::IoIn { port, size, data } => {
            for chunk in data.chunks_mut(usize::from(size.max(1))) {
                io.pio_read(port, chunk);
            }
            Next::Continue
        }
        VcpuExit::IoOut { port, size, data } => {
            for chunk in data.chunks(usize::from(size.max(1))) {
                io.pio_write(port, chunk);
            }
            Next::Continue
        }
        VcpuExit::MmioRead { addr, data } => {
            mmio.mmio_read(addr, data);
            Next::Continue
        }
        VcpuExit::MmioWrite { addr, data } => {
            mmio.mmio_write(addr, data);
            Next::Continue
        }
        VcpuExit::Hlt => Next::Idle,
        VcpuExit::Shutdown => Next::TripleFault,
        VcpuExit::SystemEvent(SystemEvent::Reset) => Next::End(VmEvent::Reset),
        VcpuExit::SystemEvent(SystemEvent::Shutdown) => Next::End(VmEvent::PowerOff),
        VcpuExit::FailEntry { reason } => Next::End(VmEvent::Failed(format!(
            "vCPU {id}: the engine could not enter guest mode (hardware reason {reason:#x})"
        ))),
        VcpuExit::Debug { hit, .. } => Next::Debug(hit),
        VcpuExit::Interrupted => Next::Continue,
        VcpuExit::InternalError(msg) => Next::End(VmEvent::Failed(name_vcpu(id, msg))),
    }
}

/// `msg` prefixed with `vCPU <id>: ` unless the engine named the vCPU already.
fn name_vcpu(id: u32, msg: String) -> String {
    let prefix = format!("vCPU {id}:");
    if msg.starts_with(&prefix) {
        msg
    } else {
        format!("{prefix} {msg}")
    }
}

/// rip, cr0, cr3, cr4, efer and cs, for a message about a dead vCPU.
pub fn describe_state(vcpu: &dyn Vcpu) -> String {
    match (vcpu.regs(), vcpu.sregs()) {
        (Ok(r), Ok(s)) => format!(
            "rip={:#x} cr0={:#x} cr3={:#x} cr4={:#x} efer={:#x} cs={:#x} (base={:#x} l={} db={})",
            r.rip,
            s.cr0,
            s.cr3,
            s.cr4,
            s.efer,
            s.cs.selector,
            s.cs.base,
            u8::from(s.cs.l),
            u8::from(s.cs.db)
        ),
        (Err(e), _) | (_, Err(e)) => format!("vCPU state unavailable: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::name_vcpu;

    #[test]
    fn messages_name_the_vcpu_once() {
        assert_eq!(name_vcpu(1, "bad opcode".into()), "vCPU 1: bad opcode");
        assert_eq!(
            name_vcpu(1, "vCPU 1: bad opcode".into()),
            "vCPU 1: bad opcode"
        );
        assert_eq!(name_vcpu(1, "vCPU 10: x".into()), "vCPU 1: vCPU 10: x");
    }
}
