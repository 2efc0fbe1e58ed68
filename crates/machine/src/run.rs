//! Running a machine: one host thread per vCPU (`kite-vcpu<N>`), each
//! dispatching its vCPU's exits to the buses; the first event that ends the
//! run (debug exit, reset, power-off, failure, quit) stops every vCPU; a
//! session reboots by building the machine afresh.

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
pub use crate::control::{Control, VmEvent};
use crate::control::{MachineControl, MachineEvent, ShutdownCause};
use crate::engine::open_engine;
use crate::error::MachineError;
use crate::memory_map::GuestMap;
use crate::snapshot::{Decoded, Incoming, MachineState, SavedRun, SnapshotError};
use crate::vcpu_loop::run_vcpu;

/// How a session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    DebugExit(u32),
    PowerOff,
    /// A reset or triple fault under `no_reboot`.
    ResetRefused(Option<String>),
    /// A monitor's reset under `no_reboot`.
    HostResetRefused,
    /// The user quit from the console.
    Quit,
    /// A monitor asked Kite to quit.
    HostQuit,
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
            Outcome::PowerOff
            | Outcome::Quit
            | Outcome::HostQuit
            | Outcome::HostResetRefused
            | Outcome::ResetRefused(None) => 0,
            Outcome::ResetRefused(Some(_)) | Outcome::Failed(_) => 1,
            Outcome::NoBootableDevice => STATUS_NO_BOOTABLE_DEVICE,
        }
    }

    /// Why the machine shut down, as a monitor reports it.
    pub fn cause(&self) -> ShutdownCause {
        match self {
            Outcome::DebugExit(_) | Outcome::PowerOff => ShutdownCause::GuestShutdown,
            Outcome::ResetRefused(_) => ShutdownCause::GuestReset,
            Outcome::HostResetRefused => ShutdownCause::HostQmpSystemReset,
            Outcome::Quit => ShutdownCause::HostUi,
            Outcome::HostQuit => ShutdownCause::HostQmpQuit,
            Outcome::Failed(_) => ShutdownCause::HostError,
            Outcome::NoBootableDevice => ShutdownCause::GuestShutdown,
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
    state: Arc<MachineState>,
}

impl Machine {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        vm: VmHandle,
        mem: Arc<GuestMemoryMmap>,
        map: Arc<GuestMap>,
        io_bus: Arc<IoBus>,
        mmio_bus: Arc<MmioBus>,
        vcpus: Vec<Box<dyn Vcpu>>,
        control: Control,
        state: Arc<MachineState>,
    ) -> Self {
        Machine {
            vcpus,
            vm,
            mem,
            map,
            io_bus,
            mmio_bus,
            control,
            state,
        }
    }

    /// What a snapshot saves of this machine.
    pub fn state(&self) -> &Arc<MachineState> {
        &self.state
    }

    /// Put a checked snapshot into this machine before it runs.
    pub fn restore(&mut self, image: &Decoded<'_>) -> Result<SavedRun, SnapshotError> {
        self.state.restore(image, &mut self.vcpus)
    }

    pub fn memory(&self) -> &Arc<GuestMemoryMmap> {
        &self.mem
    }

    pub fn vm(&self) -> &VmHandle {
        &self.vm
    }

    /// Run every vCPU on its own thread until the first event on `events`
    /// (the receiver paired with the sender the machine was built with).
    pub fn run(self, events: &Receiver<VmEvent>) -> Result<VmEvent, MachineError> {
        self.run_controlled(events, &MachineControl::new())
    }

    /// `run`, attached to a session's `MachineControl` (pause, resume,
    /// reset, power button and quit reach this run through it).
    pub fn run_controlled(
        mut self,
        events: &Receiver<VmEvent>,
        session: &MachineControl,
    ) -> Result<VmEvent, MachineError> {
        let kicks: Vec<Arc<dyn VcpuKick>> = self.vcpus.iter().map(|v| v.kick_handle()).collect();
        session.attach(&self.control, kicks.clone(), Some(self.state.clone()));
        let debug = session.debug_hook();
        if let Some(d) = &debug {
            let ids = self.vcpus.iter().map(|v| v.id());
            d.boot_started(
                &self.control,
                self.mem.clone(),
                ids.zip(kicks.clone()).collect(),
            );
        }
        let mut threads: Vec<JoinHandle<()>> = Vec::new();
        let mut spawn_error = None;
        let role = kite_sandbox::Role::Vcpu(match session.engine() {
            Some(kite_hypervisor::EngineKind::Emu) => kite_sandbox::Engine::Emu,
            _ => kite_sandbox::Engine::Kvm,
        });
        for vcpu in self.vcpus.drain(..) {
            let id = vcpu.id();
            let (io, mmio, control, session) = (
                self.io_bus.clone(),
                self.mmio_bus.clone(),
                self.control.clone(),
                session.clone(),
            );
            match std::thread::Builder::new()
                .name(format!("kite-vcpu{id}"))
                .spawn(move || {
                    kite_sandbox::thread_started(role);
                    run_vcpu(vcpu, &io, &mmio, &control, &session)
                }) {
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

        // Stop the others: raise the flag, wake the parked and kick the
        // running until every thread is out.
        self.control.raise_stop();
        while threads.iter().any(|t| !t.is_finished()) {
            session.wake_all();
            for k in &kicks {
                k.kick();
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        for t in threads {
            // A panicking vCPU thread already sent its event (see run_vcpu).
            let _ = t.join();
        }
        session.detach();
        if let Some(d) = &debug {
            d.boot_ended();
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
    run_session_controlled(config, &MachineControl::new())
}

/// `run_session` driven through `session` (a monitor's handle): it may
/// pause, resume, reset, press the power button or quit while the guest
/// runs, and hears every event.
pub fn run_session_controlled(
    config: &MachineConfig,
    session: &MachineControl,
) -> Result<Outcome, MachineError> {
    // Bad images and unusable serial files are the user's errors whichever
    // engine would have run the guest: find them before opening one.
    let guest = builder::load_guest(config)?;
    let (tx, rx) = channel();
    let console = Console::open(&config.serial, tx.clone())?;
    let hv = open_engine(config.engine)?;
    run_loaded(config, guest, hv.as_ref(), console, (tx, rx), session)
}

/// `run_session_controlled`, starting from the snapshot `incoming` instead
/// of a fresh boot: the stream is checked whole (format, checksums, the
/// configuration it was taken with) before anything is built, and the
/// machine runs (or stays paused) as it was saved.
pub fn run_session_incoming(
    config: &MachineConfig,
    session: &MachineControl,
    incoming: &Incoming,
) -> Result<Outcome, MachineError> {
    session.set_incoming(true);
    let image = check_incoming(config, incoming)?;
    wait_for_disks(config, incoming.disk_wait)?;
    let guest = builder::load_guest(config)?;
    let (tx, rx) = channel();
    let console = Console::open(&config.serial, tx.clone())?;
    let hv = open_engine(config.engine)?;
    restored_session(
        config,
        guest,
        hv.as_ref(),
        console,
        (tx, rx),
        session,
        &image,
    )
}

/// `run_session_incoming` on an engine already open.
pub fn run_session_incoming_on(
    config: &MachineConfig,
    hv: &dyn Hypervisor,
    session: &MachineControl,
    incoming: &Incoming,
) -> Result<Outcome, MachineError> {
    session.set_incoming(true);
    let image = check_incoming(config, incoming)?;
    wait_for_disks(config, incoming.disk_wait)?;
    let guest = builder::load_guest(config)?;
    let (tx, rx) = channel();
    let console = Console::open(&config.serial, tx.clone())?;
    restored_session(config, guest, hv, console, (tx, rx), session, &image)
}

/// Wait up to `wait` for every disk image of `config` to be free of other
/// processes' locks (a live migration's source hands them over once it has
/// the destination's verdict); an image still locked then is refused as a
/// fresh boot would refuse it.
fn wait_for_disks(config: &MachineConfig, wait: std::time::Duration) -> Result<(), MachineError> {
    let virtio = config.disks.iter().map(|d| (&d.path, d.readonly));
    let ide = config
        .ide
        .iter()
        .flatten()
        .map(|d| (&d.path, d.opens_readonly()));
    for (path, readonly) in virtio.chain(ide) {
        kite_devices::storage::DiskImage::wait_until_free(path, readonly, wait)
            .map_err(|e| MachineError::Config(e.to_string()))?;
    }
    Ok(())
}

/// Whether `bytes` is a whole, intact snapshot taken with `config` (what a
/// destination tells its source before restoring).
pub fn check_stream(config: &MachineConfig, bytes: &[u8]) -> Result<(), String> {
    let image = crate::snapshot::decode(bytes).map_err(|e| e.to_string())?;
    crate::snapshot::fingerprint::check(
        &image.header.fingerprint,
        &crate::snapshot::fingerprint::fingerprint(config),
    )
}

/// The whole stream checked, and taken with this configuration.
fn check_incoming<'a>(
    config: &MachineConfig,
    incoming: &'a Incoming,
) -> Result<Decoded<'a>, MachineError> {
    let image = crate::snapshot::decode(&incoming.bytes).map_err(SnapshotError::from)?;
    crate::snapshot::fingerprint::check(
        &image.header.fingerprint,
        &crate::snapshot::fingerprint::fingerprint(config),
    )
    .map_err(SnapshotError::Mismatch)?;
    Ok(image)
}

fn restored_session(
    config: &MachineConfig,
    guest: builder::LoadedGuest,
    hv: &dyn Hypervisor,
    console: Console,
    channel: (Sender<VmEvent>, Receiver<VmEvent>),
    session: &MachineControl,
    image: &Decoded<'_>,
) -> Result<Outcome, MachineError> {
    session.set_engine(hv.kind());
    let result = boot_until_end(config, guest, hv, console, channel, session, Some(image));
    session.end(match &result {
        Ok(o) => o.cause(),
        Err(_) => ShutdownCause::HostError,
    });
    result
}

/// `run_session` on an engine already open.
pub fn run_session_on(
    config: &MachineConfig,
    hv: &dyn Hypervisor,
) -> Result<Outcome, MachineError> {
    run_session_on_controlled(config, hv, &MachineControl::new())
}

/// `run_session_controlled` on an engine already open.
pub fn run_session_on_controlled(
    config: &MachineConfig,
    hv: &dyn Hypervisor,
    session: &MachineControl,
) -> Result<Outcome, MachineError> {
    let guest = builder::load_guest(config)?;
    let (tx, rx) = channel();
    let console = Console::open(&config.serial, tx.clone())?;
    run_loaded(config, guest, hv, console, (tx, rx), session)
}

fn run_loaded(
    config: &MachineConfig,
    first: builder::LoadedGuest,
    hv: &dyn Hypervisor,
    console: Console,
    channel: (Sender<VmEvent>, Receiver<VmEvent>),
    session: &MachineControl,
) -> Result<Outcome, MachineError> {
    session.set_engine(hv.kind());
    let result = boot_until_end(config, first, hv, console, channel, session, None);
    session.end(match &result {
        Ok(o) => o.cause(),
        Err(_) => ShutdownCause::HostError,
    });
    result
}

fn boot_until_end(
    config: &MachineConfig,
    first: builder::LoadedGuest,
    hv: &dyn Hypervisor,
    console: Console,
    (tx, rx): (Sender<VmEvent>, Receiver<VmEvent>),
    session: &MachineControl,
    mut restore: Option<&Decoded<'_>>,
) -> Result<Outcome, MachineError> {
    let mut guest = Some(first);
    loop {
        // Each boot starts from fresh memory with the kernel reloaded.
        let loaded = match guest.take() {
            Some(g) => g,
            None => builder::load_guest(config)?,
        };
        let mut machine = builder::build(config, loaded, hv, &console, &tx)?;
        // The first boot of a restored session continues the snapshot.
        if let Some(image) = restore.take() {
            let saved = machine.restore(image)?;
            if !saved.running {
                let _ = session.pause();
            }
            session.set_incoming(false);
        }
        // Set-up is done: the main thread's filter (once; a reset rebuilds
        // under it), inherited by the vCPU threads spawned next. The emu
        // engine's code-generating tier needs read+execute pages.
        if hv.kind() == kite_hypervisor::EngineKind::Emu
            && kite_engine_emu::jit::Tier::from_env() != kite_engine_emu::jit::Tier::Interp
        {
            kite_sandbox::allow_emu_translations();
        }
        kite_sandbox::thread_started(kite_sandbox::Role::Main);
        let event = machine.run_controlled(&rx, session)?;
        // Events raised by other vCPUs while this one ended are moot, but a
        // quit (console or monitor) still counts.
        let mut quit = None;
        while let Ok(ev) = rx.try_recv() {
            if matches!(ev, VmEvent::Quit | VmEvent::HostQuit) {
                quit = Some(ev);
            }
        }
        if session.quit_requested() {
            quit = Some(VmEvent::HostQuit);
        }
        let resets = matches!(
            event,
            VmEvent::Reset | VmEvent::HostReset | VmEvent::TripleFault(_)
        );
        if let (Some(q), true) = (quit, resets) {
            // The reset happened (QEMU too reports it), then the quit.
            session.emit(MachineEvent::Reset(reset_cause(&event)));
            return Ok(if q == VmEvent::HostQuit {
                Outcome::HostQuit
            } else {
                Outcome::Quit
            });
        }
        match event {
            VmEvent::DebugExit(v) => return Ok(Outcome::DebugExit(v)),
            VmEvent::PowerOff => return Ok(Outcome::PowerOff),
            VmEvent::Quit => return Ok(Outcome::Quit),
            VmEvent::HostQuit => return Ok(Outcome::HostQuit),
            VmEvent::Failed(m) => return Ok(Outcome::Failed(m)),
            VmEvent::NoBootableDevice => return Ok(Outcome::NoBootableDevice),
            VmEvent::Reset if config.no_reboot => return Ok(Outcome::ResetRefused(None)),
            VmEvent::HostReset if config.no_reboot => return Ok(Outcome::HostResetRefused),
            VmEvent::TripleFault(m) if config.no_reboot => {
                return Ok(Outcome::ResetRefused(Some(m)))
            }
            VmEvent::Reset | VmEvent::HostReset | VmEvent::TripleFault(_) => {
                session.emit(MachineEvent::Reset(reset_cause(&event)))
            }
        }
    }
}

/// Who caused a reset event.
fn reset_cause(event: &VmEvent) -> ShutdownCause {
    if *event == VmEvent::HostReset {
        ShutdownCause::HostQmpSystemReset
    } else {
        ShutdownCause::GuestReset
    }
}

#[cfg(test)]
mod tests;
