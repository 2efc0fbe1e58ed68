//! Running a machine: one host thread per vCPU (`kite-vcpu<N>`), each
//! dispatching its vCPU's exits to the buses; the first event that ends the
//! run (debug exit, reset, power-off, failure, quit) stops every vCPU; a
//! session reboots by building the machine afresh.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use kite_devices::legacy::debug_exit::exit_status;
use kite_devices::{IoBus, MmioBus};
use kite_hypervisor::{Hypervisor, Vcpu, VcpuKick};
use vm_memory::GuestMemoryMmap;

use crate::builder::{self, VmHandle};
use crate::config::MachineConfig;
use crate::console::Console;
use crate::engine::open_engine;
use crate::error::MachineError;
use crate::memory_map::GuestMap;
use crate::vcpu_loop::run_vcpu;

/// Something that ends a machine's run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VmEvent {
    /// The guest wrote this value to the debug-exit port.
    DebugExit(u32),
    /// The guest asked for a reset (i8042, or the engine's reset event).
    Reset,
    /// The guest powered off.
    PowerOff,
    /// A vCPU triple-faulted; the message names its state.
    TripleFault(String),
    /// The engine could not go on (or a vCPU thread died).
    Failed(String),
    /// The user quit from the console (Ctrl-A x).
    Quit,
    /// The firmware found nothing to boot (and the machine is set to exit).
    NoBootableDevice,
}

/// How a session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    DebugExit(u32),
    PowerOff,
    /// A reset or triple fault under `no_reboot`.
    ResetRefused(Option<String>),
    Quit,
    Failed(String),
    /// The firmware found no bootable device.
    NoBootableDevice,
}

/// The exit status when the firmware finds nothing to boot (even, so it
/// never collides with a debug-exit status, which is always odd).
pub const STATUS_NO_BOOTABLE_DEVICE: i32 = 4;

impl Outcome {
    /// The process exit status: debug exit `(v << 1) | 1`, power-off, quit
    /// and a refused reset 0, a refused triple fault or failure 1.
    pub fn status(&self) -> i32 {
        match self {
            Outcome::DebugExit(v) => exit_status(*v),
            Outcome::PowerOff | Outcome::Quit | Outcome::ResetRefused(None) => 0,
            Outcome::ResetRefused(Some(_)) | Outcome::Failed(_) => 1,
            Outcome::NoBootableDevice => STATUS_NO_BOOTABLE_DEVICE,
        }
    }

    /// A line for stderr, if the outcome deserves one.
    pub fn message(&self) -> Option<String> {
        match self {
            Outcome::ResetRefused(Some(m)) => Some(format!("{m}; not rebooting (--no-reboot)")),
            Outcome::Failed(m) => Some(m.clone()),
            Outcome::NoBootableDevice => {
                Some("the firmware found no bootable device (see --disk, --cdrom, --boot)".into())
            }
            _ => None,
        }
    }
}

/// Ends a run: raises the stop flag, then tells the session why.
#[derive(Clone)]
pub struct Control {
    events: Sender<VmEvent>,
    stop: Arc<AtomicBool>,
}

impl Control {
    pub fn new(events: Sender<VmEvent>, stop: Arc<AtomicBool>) -> Self {
        Control { events, stop }
    }

    pub fn request(&self, ev: VmEvent) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.events.send(ev);
    }

    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }
}

/// A built machine, ready to run once.
pub struct Machine {
    // Drop order: the vCPUs (moved out by `run`), then the VM, then the memory
    // behind its slots.
    vcpus: Vec<Box<dyn Vcpu>>,
    vm: VmHandle,
    mem: Arc<GuestMemoryMmap>,
    map: Arc<GuestMap>,
    io_bus: Arc<IoBus>,
    mmio_bus: Arc<MmioBus>,
    control: Control,
}

impl Machine {
    pub(crate) fn new(
        vm: VmHandle,
        mem: Arc<GuestMemoryMmap>,
        map: Arc<GuestMap>,
        io_bus: Arc<IoBus>,
        mmio_bus: Arc<MmioBus>,
        vcpus: Vec<Box<dyn Vcpu>>,
        control: Control,
    ) -> Self {
        Machine {
            vcpus,
            vm,
            mem,
            map,
            io_bus,
            mmio_bus,
            control,
        }
    }

    pub fn memory(&self) -> &Arc<GuestMemoryMmap> {
        &self.mem
    }

    pub fn vm(&self) -> &VmHandle {
        &self.vm
    }

    /// Run every vCPU on its own thread until the first event on `events`
    /// (the receiver paired with the sender the machine was built with).
    pub fn run(mut self, events: &Receiver<VmEvent>) -> Result<VmEvent, MachineError> {
        let mut threads: Vec<JoinHandle<()>> = Vec::new();
        let mut kicks: Vec<Arc<dyn VcpuKick>> = Vec::new();
        let mut spawn_error = None;
        for vcpu in self.vcpus.drain(..) {
            kicks.push(vcpu.kick_handle());
            let id = vcpu.id();
            let (io, mmio, control) = (
                self.io_bus.clone(),
                self.mmio_bus.clone(),
                self.control.clone(),
            );
            match std::thread::Builder::new()
                .name(format!("kite-vcpu{id}"))
                .spawn(move || run_vcpu(vcpu, &io, &mmio, &control))
            {
                Ok(t) => threads.push(t),
                Err(e) => {
                    spawn_error = Some(e);
                    break;
                }
            }
        }
        let first = match spawn_error {
            Some(e) => Err(MachineError::Thread(e)),
            None => Ok(events
                .recv()
                .unwrap_or_else(|_| VmEvent::Failed("every vCPU thread ended".into()))),
        };

        // Stop the others: raise the flag and kick until every thread is out.
        self.control.stop.store(true, Ordering::SeqCst);
        while threads.iter().any(|t| !t.is_finished()) {
            for k in &kicks {
                k.kick();
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        for t in threads {
            // A panicking vCPU thread already sent its event (see run_vcpu).
            let _ = t.join();
        }
        first
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        // Devices (and the console) may hold the VM a while longer; the
        // memory goes now, so the VM must stop referring to it first.
        self.map.unmap_all();
    }
}

/// Build and run the machine `config` describes, rebooting on reset unless
/// `no_reboot`, until it ends.
pub fn run_session(config: &MachineConfig) -> Result<Outcome, MachineError> {
    // Bad images and unusable serial files are the user's errors whichever
    // engine would have run the guest: find them before opening one.
    let guest = builder::load_guest(config)?;
    let (tx, rx) = channel();
    let console = Console::open(&config.serial, tx.clone())?;
    let hv = open_engine(config.engine)?;
    run_loaded(config, guest, hv.as_ref(), console, (tx, rx))
}

/// `run_session` on an engine already open.
pub fn run_session_on(
    config: &MachineConfig,
    hv: &dyn Hypervisor,
) -> Result<Outcome, MachineError> {
    let guest = builder::load_guest(config)?;
    let (tx, rx) = channel();
    let console = Console::open(&config.serial, tx.clone())?;
    run_loaded(config, guest, hv, console, (tx, rx))
}

fn run_loaded(
    config: &MachineConfig,
    first: builder::LoadedGuest,
    hv: &dyn Hypervisor,
    console: Console,
    (tx, rx): (Sender<VmEvent>, Receiver<VmEvent>),
) -> Result<Outcome, MachineError> {
    let mut guest = Some(first);
    loop {
        // Each boot starts from fresh memory with the kernel reloaded.
        let loaded = match guest.take() {
            Some(g) => g,
            None => builder::load_guest(config)?,
        };
        let machine = builder::build(config, loaded, hv, &console, &tx)?;
        let event = machine.run(&rx)?;
        // Events raised by other vCPUs while this one ended are moot, but a
        // quit from the console still counts.
        let mut quit = false;
        while let Ok(ev) = rx.try_recv() {
            quit |= ev == VmEvent::Quit;
        }
        if quit && matches!(event, VmEvent::Reset | VmEvent::TripleFault(_)) {
            return Ok(Outcome::Quit);
        }
        match event {
            VmEvent::DebugExit(v) => return Ok(Outcome::DebugExit(v)),
            VmEvent::PowerOff => return Ok(Outcome::PowerOff),
            VmEvent::Quit => return Ok(Outcome::Quit),
            VmEvent::Failed(m) => return Ok(Outcome::Failed(m)),
            VmEvent::NoBootableDevice => return Ok(Outcome::NoBootableDevice),
            VmEvent::Reset if config.no_reboot => return Ok(Outcome::ResetRefused(None)),
            VmEvent::TripleFault(m) if config.no_reboot => {
                return Ok(Outcome::ResetRefused(Some(m)))
            }
            VmEvent::Reset | VmEvent::TripleFault(_) => continue,
        }
    }
}

#[cfg(test)]
mod tests;
