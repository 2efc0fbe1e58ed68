//! `MachineControl`: the session's handle for whoever drives a running
//! machine (a monitor such as QMP). It outlives reboots: each boot attaches
//! its `Control`, vCPU kicks and thread ids, and detaches when its vCPU
//! threads are gone.
//!
//! Pause is real: every vCPU thread leaves `Vcpu::run` (kicked out of it)
//! and waits on a condition variable at the top of its loop, so no guest
//! instruction runs and no host CPU burns until `resume`. While paused, every
//! vCPU is outside `run` with its state readable through the `Vcpu` API,
//! which is where a snapshot will be taken. A pause survives a reset: the
//! next boot's vCPUs park before their first instruction.
//!
//! It must not know how a monitor protocol names or encodes anything.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use kite_devices::bus::lock;
use kite_hypervisor::{EngineKind, Vcpu, VcpuKick};

use super::{Control, DebugHook, VmEvent};
use crate::snapshot::MachineState;

/// How long `pause` waits for every vCPU to leave guest mode.
const PAUSE_TIMEOUT: Duration = Duration::from_secs(5);

/// What a running session is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunStatus {
    Running,
    Paused,
    /// Waiting for (or applying) the snapshot it starts from.
    Incoming,
    /// The session ended (the process is about to exit).
    Shutdown,
    /// Paused after a completed live migration: the destination runs the
    /// guest and holds its disk images (QEMU's `postmigrate`).
    PostMigrate,
}

/// Why the machine shut down or reset (QEMU's ShutdownCause, by meaning).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShutdownCause {
    /// The engine failed.
    HostError,
    /// A monitor's `quit`.
    HostQmpQuit,
    /// A monitor's `system_reset`.
    HostQmpSystemReset,
    /// The user quit from the console (Ctrl-A x).
    HostUi,
    /// The guest powered off (ACPI S5, debug exit).
    GuestShutdown,
    /// The guest reset (or triple-faulted).
    GuestReset,
}

impl ShutdownCause {
    /// Whether the guest caused it.
    pub fn by_guest(self) -> bool {
        matches!(
            self,
            ShutdownCause::GuestShutdown | ShutdownCause::GuestReset
        )
    }
}

/// What a monitor hears about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MachineEvent {
    /// Every vCPU stopped (pause).
    Stop,
    /// The vCPUs run again.
    Resume,
    /// The machine resets (and reboots).
    Reset(ShutdownCause),
    /// The power button was pressed.
    Powerdown,
    /// The machine is shutting down: the session ends.
    Shutdown(ShutdownCause),
}

/// A vCPU's host thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VcpuThread {
    pub index: u32,
    /// The host thread id (what `top -H` shows).
    pub tid: i32,
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    /// The session ended.
    #[error("the machine has shut down")]
    Ended,
    /// Some vCPU did not leave guest mode in time.
    #[error("vCPUs did not stop within {0:?}; they will stop when they leave guest mode")]
    PauseTimeout(Duration),
    /// No board is built (between boots), or it has no power button.
    #[error("the machine has no power button right now")]
    NoPowerButton,
    /// The machine is still being restored from its snapshot.
    #[error("the incoming migration has not finished")]
    Incoming,
    /// No machine is running to save.
    #[error("no machine is running right now")]
    NoMachine,
    /// A vCPU could not save its state.
    #[error("vCPU {index}: cannot save its state: {reason}")]
    VcpuState { index: u32, reason: String },
    /// The guest was migrated away and cannot take its disks back.
    #[error("the machine was migrated and its destination holds its disks: {0}")]
    HandedOver(String),
    /// A reset would reopen disks the migration's destination holds.
    #[error("the machine was migrated away: `cont` it (taking its disks back) before a reset")]
    MigratedAway,
}

type Listener = Box<dyn Fn(&MachineEvent) + Send + Sync>;

/// The session's control handle; clones share it.
#[derive(Clone, Default)]
pub struct MachineControl {
    shared: Arc<Shared>,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    /// `State::paused`, readable without the lock: every vCPU looks at it
    /// after every exit, and only takes the lock when it is set.
    paused: AtomicBool,
    cond: Condvar,
    listeners: Mutex<Vec<Listener>>,
    /// A debugger's hook into the vCPU loop and the run, if one is attached.
    debug_hook: Mutex<Option<Arc<dyn DebugHook>>>,
}

#[derive(Default)]
struct State {
    paused: bool,
    ended: bool,
    quit: bool,
    incoming: bool,
    /// Paused after handing the machine to a migration's destination.
    postmigrate: bool,
    engine: Option<EngineKind>,
    boot: Option<Boot>,
    /// Bumped to ask every parked vCPU for its state.
    save_round: u64,
    /// The states of this round, by vCPU index.
    saved: Vec<Option<Result<Vec<u8>, String>>>,
}

/// The boot now running.
struct Boot {
    control: Control,
    kicks: Vec<Arc<dyn VcpuKick>>,
    /// vCPU threads waiting at the top of their loop.
    parked: usize,
    threads: Vec<VcpuThread>,
    /// The boot's devices, RAM and VM, for a snapshot.
    machine: Option<Arc<MachineState>>,
}

/// What `capture` hands a snapshot writer.
pub struct Captured {
    pub machine: Arc<MachineState>,
    /// Each vCPU's engine state, by index.
    pub vcpus: Vec<Vec<u8>>,
    /// The machine ran before the capture paused it.
    pub was_running: bool,
}

impl MachineControl {
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.shared.state)
    }

    /// Call `f` on every event from now on. It runs on the thread that made
    /// the event happen, so it must be quick and must not call back here.
    pub fn subscribe(&self, f: impl Fn(&MachineEvent) + Send + Sync + 'static) {
        lock(&self.shared.listeners).push(Box::new(f));
    }

    pub(crate) fn emit(&self, ev: MachineEvent) {
        for l in lock(&self.shared.listeners).iter() {
            l(&ev);
        }
    }

    pub fn status(&self) -> RunStatus {
        let st = self.state();
        if st.ended {
            RunStatus::Shutdown
        } else if st.incoming {
            RunStatus::Incoming
        } else if st.postmigrate {
            RunStatus::PostMigrate
        } else if st.paused {
            RunStatus::Paused
        } else {
            RunStatus::Running
        }
    }

    /// The engine the session runs on, once it is open.
    pub fn engine(&self) -> Option<EngineKind> {
        self.state().engine
    }

    /// The running boot's vCPU threads, by index.
    pub fn vcpu_threads(&self) -> Vec<VcpuThread> {
        let mut v = self
            .state()
            .boot
            .as_ref()
            .map(|b| b.threads.clone())
            .unwrap_or_default();
        v.sort_by_key(|t| t.index);
        v
    }

    /// Stop every vCPU: returns once all are out of guest mode and waiting
    /// (or the run ended). Pausing a paused machine does nothing.
    pub fn pause(&self) -> Result<(), ControlError> {
        let mut st = self.state();
        if st.ended {
            return Err(ControlError::Ended);
        }
        if st.paused {
            return Ok(());
        }
        st.paused = true;
        self.shared.paused.store(true, Ordering::Release);
        let deadline = Instant::now() + PAUSE_TIMEOUT;
        let mut result = Ok(());
        loop {
            match &st.boot {
                None => break,
                Some(b) if b.parked >= b.kicks.len() || b.control.stopping() => break,
                Some(b) => b.kicks.iter().for_each(|k| k.kick()),
            }
            if Instant::now() >= deadline {
                result = Err(ControlError::PauseTimeout(PAUSE_TIMEOUT));
                break;
            }
            st = self
                .shared
                .cond
                .wait_timeout(st, Duration::from_millis(2))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        drop(st);
        self.emit(MachineEvent::Stop);
        result
    }

    /// The running boot's machine state (devices, RAM, VM), if a boot runs.
    pub fn machine(&self) -> Option<Arc<MachineState>> {
        self.state().boot.as_ref().and_then(|b| b.machine.clone())
    }

    /// Pause (if running) and have every parked vCPU save its state; the
    /// machine stays paused (`resume` it after writing, if `was_running`).
    pub fn capture(&self) -> Result<Captured, ControlError> {
        if self.status() == RunStatus::Incoming {
            return Err(ControlError::Incoming);
        }
        let was_running = self.status() == RunStatus::Running;
        self.pause()?;
        let mut st = self.state();
        let (n, machine) = match &st.boot {
            Some(b) if b.parked >= b.kicks.len() => match &b.machine {
                Some(m) => (b.kicks.len(), m.clone()),
                None => return Err(ControlError::NoMachine),
            },
            Some(_) => return Err(ControlError::PauseTimeout(PAUSE_TIMEOUT)),
            None => return Err(ControlError::NoMachine),
        };
        st.save_round += 1;
        st.saved = vec![None; n];
        self.shared.cond.notify_all();
        let deadline = Instant::now() + PAUSE_TIMEOUT;
        while st.saved.iter().any(Option::is_none) {
            if Instant::now() >= deadline || st.boot.is_none() || st.ended {
                drop(st);
                if was_running {
                    let _ = self.resume();
                }
                return Err(ControlError::PauseTimeout(PAUSE_TIMEOUT));
            }
            st = self
                .shared
                .cond
                .wait_timeout(st, Duration::from_millis(5))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        let mut vcpus = Vec::with_capacity(n);
        let mut failure = None;
        for (i, s) in std::mem::take(&mut st.saved).into_iter().enumerate() {
            match s {
                Some(Ok(b)) => vcpus.push(b),
                Some(Err(reason)) => {
                    failure.get_or_insert(ControlError::VcpuState {
                        index: i as u32,
                        reason,
                    });
                }
                None => {}
            }
        }
        drop(st);
        if let Some(e) = failure {
            if was_running {
                let _ = self.resume();
            }
            return Err(e);
        }
        Ok(Captured {
            machine,
            vcpus,
            was_running,
        })
    }

    /// The session starts from a snapshot not applied yet (`Incoming`
    /// until then), or has applied it.
    pub fn set_incoming(&self, on: bool) {
        self.state().incoming = on;
    }

    /// Let the vCPUs run again. Resuming a running machine does nothing.
    pub fn resume(&self) -> Result<(), ControlError> {
        let mut st = self.state();
        if st.ended {
            return Err(ControlError::Ended);
        }
        if st.incoming {
            return Err(ControlError::Incoming);
        }
        if !st.paused {
            return Ok(());
        }
        if st.postmigrate {
            let machine = st.boot.as_ref().and_then(|b| b.machine.clone());
            if let Some(m) = machine {
                m.set_images_active(true)
                    .map_err(|e| ControlError::HandedOver(e.to_string()))?;
            }
            st.postmigrate = false;
        }
        st.paused = false;
        self.shared.paused.store(false, Ordering::Release);
        self.shared.cond.notify_all();
        drop(st);
        self.emit(MachineEvent::Resume);
        Ok(())
    }

    /// After a completed live migration (the machine paused): let the
    /// destination have the disk images and stay paused (`postmigrate`)
    /// until a `cont` takes them back or the management quits.
    pub fn handed_over(&self) -> Result<(), ControlError> {
        let mut st = self.state();
        if st.ended {
            return Err(ControlError::Ended);
        }
        let machine = st.boot.as_ref().and_then(|b| b.machine.clone());
        if let Some(m) = machine {
            m.set_images_active(false)
                .map_err(|e| ControlError::HandedOver(e.to_string()))?;
        }
        st.postmigrate = true;
        Ok(())
    }

    /// Reset the machine (it reboots, or ends under `no_reboot`). A paused
    /// machine stays paused through the reset.
    pub fn reset(&self) -> Result<(), ControlError> {
        let st = self.state();
        if st.ended {
            return Err(ControlError::Ended);
        }
        if st.postmigrate {
            return Err(ControlError::MigratedAway);
        }
        if let Some(b) = &st.boot {
            b.control.request(VmEvent::HostReset);
        }
        Ok(())
    }

    /// Press the ACPI power button: the guest decides what to do.
    pub fn power_button(&self) -> Result<(), ControlError> {
        let pm = {
            let st = self.state();
            if st.ended {
                return Err(ControlError::Ended);
            }
            st.boot.as_ref().and_then(|b| b.control.power_button())
        };
        let pm = pm.ok_or(ControlError::NoPowerButton)?;
        lock(&pm).press_power_button();
        self.emit(MachineEvent::Powerdown);
        Ok(())
    }

    /// End the session (status 0).
    pub fn quit(&self) {
        let mut st = self.state();
        st.quit = true;
        if let Some(b) = &st.boot {
            b.control.request(VmEvent::HostQuit);
        }
        self.shared.cond.notify_all();
    }

    /// Let a debugger stop the vCPUs (set before the session runs).
    pub fn set_debug_hook(&self, hook: Arc<dyn DebugHook>) {
        *lock(&self.shared.debug_hook) = Some(hook);
    }

    pub(crate) fn debug_hook(&self) -> Option<Arc<dyn DebugHook>> {
        lock(&self.shared.debug_hook).clone()
    }

    // The session's side.

    pub(crate) fn set_engine(&self, kind: EngineKind) {
        self.state().engine = Some(kind);
    }

    /// Whether `quit` was asked for (also before any boot runs).
    pub fn quit_requested(&self) -> bool {
        self.state().quit
    }

    /// A boot starts with these vCPUs (one kick each).
    pub(crate) fn attach(
        &self,
        control: &Control,
        kicks: Vec<Arc<dyn VcpuKick>>,
        machine: Option<Arc<MachineState>>,
    ) {
        let mut st = self.state();
        if st.quit {
            control.request(VmEvent::HostQuit);
        }
        st.boot = Some(Boot {
            control: control.clone(),
            kicks,
            parked: 0,
            threads: Vec::new(),
            machine,
        });
    }

    /// The boot's vCPU threads are gone.
    pub(crate) fn detach(&self) {
        self.state().boot = None;
        self.shared.cond.notify_all();
    }

    /// Called by each vCPU thread as it starts.
    pub(crate) fn vcpu_started(&self, index: u32, tid: i32) {
        if let Some(b) = self.state().boot.as_mut() {
            b.threads.push(VcpuThread { index, tid });
        }
    }

    /// Whether a pause is on (a vCPU about to park completes its exit first).
    pub(crate) fn pause_pending(&self) -> bool {
        self.shared.paused.load(Ordering::Acquire)
    }

    /// Called by a vCPU thread between exits: while paused (and the run not
    /// stopping), wait; a `capture` while parked has it save `vcpu`'s state.
    pub(crate) fn park_while_paused(&self, control: &Control, vcpu: &mut dyn Vcpu) {
        if !self.shared.paused.load(Ordering::Acquire) {
            return;
        }
        let mut st = self.state();
        if !st.paused || control.stopping() {
            return;
        }
        if let Some(b) = st.boot.as_mut() {
            b.parked += 1;
        }
        self.shared.cond.notify_all();
        let mut seen = st.save_round;
        while st.paused && !control.stopping() {
            if st.save_round != seen {
                seen = st.save_round;
                let state = vcpu.save_state().map_err(|e| e.to_string());
                if let Some(slot) = st.saved.get_mut(vcpu.id() as usize) {
                    *slot = Some(state);
                }
                self.shared.cond.notify_all();
                continue;
            }
            st = self
                .shared
                .cond
                .wait_timeout(st, Duration::from_millis(200))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        if let Some(b) = st.boot.as_mut() {
            b.parked = b.parked.saturating_sub(1);
        }
    }

    /// Wake parked vCPU threads so they see the stop flag.
    pub(crate) fn wake_all(&self) {
        let _st = self.state();
        self.shared.cond.notify_all();
    }

    /// The session ended (SHUTDOWN to listeners, once).
    pub fn end(&self, cause: ShutdownCause) {
        {
            let mut st = self.state();
            if st.ended {
                return;
            }
            st.ended = true;
            st.paused = false;
            self.shared.paused.store(false, Ordering::Release);
            self.shared.cond.notify_all();
        }
        self.emit(MachineEvent::Shutdown(cause));
    }
}
