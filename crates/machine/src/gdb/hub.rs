//! `DebugHub`: where the vCPU threads and the gdb stub meet. The stub halts
//! and resumes vCPUs, sets breakpoints, and runs small requests (read the
//! registers, translate an address) on a halted vCPU's own thread; the vCPU
//! threads report what stopped them and wait while halted.
//!
//! It must not know the remote protocol: it speaks in vCPU ids, addresses
//! and `GuestDebug`.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use kite_devices::bus::lock;
use kite_hypervisor::{GuestDebug, Vcpu, VcpuKick, Watchpoint};
use vm_memory::GuestMemoryMmap;

use crate::control::{Control, DebugEvent, DebugHook};

/// How long a request to a halted vCPU may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long halting waits for every vCPU to leave guest mode.
const HALT_TIMEOUT: Duration = Duration::from_secs(5);

/// Work for a halted vCPU's thread.
type Request = Box<dyn FnOnce(&mut dyn Vcpu) + Send>;

/// Why the vCPUs stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stop {
    pub vcpu: u32,
    pub event: DebugEvent,
}

/// Why a request to a vCPU got no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HubError {
    #[error("no vCPU {0} is running")]
    NoVcpu(u32),
    #[error("vCPU {0} did not answer (it is not halted)")]
    Timeout(u32),
}

#[derive(Default)]
struct VcpuState {
    parked: bool,
    /// The `HubState::generation` whose `GuestDebug` this vCPU has applied.
    applied: u64,
    requests: VecDeque<Request>,
}

struct Boot {
    control: Control,
    mem: Arc<GuestMemoryMmap>,
    kicks: Vec<Arc<dyn VcpuKick>>,
}

#[derive(Default)]
struct HubState {
    /// A debugger is connected.
    attached: bool,
    /// vCPUs park at their next checkpoint.
    halt: bool,
    /// What stopped them, until the stub takes it.
    stop: Option<Stop>,
    boot: Option<Boot>,
    vcpus: BTreeMap<u32, VcpuState>,
    sw_breakpoints: BTreeSet<u64>,
    hw_breakpoints: Vec<u64>,
    watchpoints: Vec<Watchpoint>,
    /// vCPUs that single-step when resumed.
    stepping: BTreeSet<u32>,
    /// Scheduler locking: only these vCPUs run when resumed.
    only: Option<BTreeSet<u32>>,
    /// Bumped whenever the debug settings change.
    generation: u64,
    /// The session ended with this exit status.
    ended: Option<i32>,
}

impl HubState {
    fn guest_debug(&self, vcpu: u32) -> GuestDebug {
        GuestDebug {
            single_step: self.stepping.contains(&vcpu),
            breakpoints: self.hw_breakpoints.clone(),
            watchpoints: self.watchpoints.clone(),
            sw_breakpoints: self.sw_breakpoints.iter().copied().collect(),
        }
    }

    fn kick_all(&self) {
        if let Some(b) = &self.boot {
            b.kicks.iter().for_each(|k| k.kick());
        }
    }

    /// vCPU `id` must stay parked.
    fn held(&self, id: u32) -> bool {
        self.halt || self.only.as_ref().is_some_and(|only| !only.contains(&id))
    }

    /// Every vCPU is parked, or there is nothing left to wait for.
    fn all_parked(&self) -> bool {
        match &self.boot {
            None => true,
            Some(b) if b.control.stopping() => true,
            Some(_) => self.vcpus.values().all(|v| v.parked),
        }
    }
}

/// The meeting point; clones of the `Arc` go to the stub and the session.
#[derive(Default)]
pub struct DebugHub {
    state: Mutex<HubState>,
    cond: Condvar,
    /// The vCPUs have something to look at (a debugger, a halt, settings
    /// to apply). Raised with the lock held by whatever changes the state;
    /// lowered by a vCPU, with the lock held, once nothing is left. Without
    /// it, vCPUs pass their checkpoint without taking the lock.
    active: AtomicBool,
}

impl DebugHub {
    /// A hub; with `start_halted` no vCPU runs a guest instruction until a
    /// debugger attaches and resumes it.
    pub fn new(start_halted: bool) -> Arc<DebugHub> {
        let hub = DebugHub::default();
        lock(&hub.state).halt = start_halted;
        hub.active.store(start_halted, Ordering::Release);
        Arc::new(hub)
    }

    fn state(&self) -> MutexGuard<'_, HubState> {
        lock(&self.state)
    }

    /// The state, locked, with the vCPUs told to look at it.
    fn changing(&self) -> MutexGuard<'_, HubState> {
        let st = lock(&self.state);
        self.active.store(true, Ordering::Release);
        st
    }

    fn wait<'a>(
        &self,
        st: MutexGuard<'a, HubState>,
        timeout: Duration,
    ) -> MutexGuard<'a, HubState> {
        self.cond
            .wait_timeout(st, timeout)
            .unwrap_or_else(|e| e.into_inner())
            .0
    }

    /// A debugger connected: halt every vCPU (it expects a stopped target).
    pub fn attach(&self) {
        let mut st = self.changing();
        st.attached = true;
        st.stop = None;
        st.halt = true;
        // gdb may come before the machine is built: wait for its vCPUs.
        let deadline = Instant::now() + HALT_TIMEOUT;
        while st.boot.is_none() && st.ended.is_none() && Instant::now() < deadline {
            st = self.wait(st, Duration::from_millis(5));
        }
        st.kick_all();
        self.wait_parked(st);
    }

    /// The debugger went away: forget its breakpoints and let the guest run.
    pub fn detach(&self) {
        let mut st = self.changing();
        st.attached = false;
        st.sw_breakpoints.clear();
        st.hw_breakpoints.clear();
        st.watchpoints.clear();
        st.stepping.clear();
        st.only = None;
        st.stop = None;
        st.halt = false;
        st.generation += 1;
        self.cond.notify_all();
    }

    /// Halt every vCPU (Ctrl-C); returns once all are parked.
    pub fn halt(&self) {
        let mut st = self.changing();
        st.halt = true;
        st.kick_all();
        self.wait_parked(st);
    }

    fn wait_parked(&self, mut st: MutexGuard<'_, HubState>) {
        let deadline = Instant::now() + HALT_TIMEOUT;
        while !st.all_parked() && Instant::now() < deadline {
            st.kick_all();
            st = self.wait(st, Duration::from_millis(5));
        }
    }

    /// Resume every vCPU (or, with `only`, those), single-stepping those in
    /// `stepping`.
    pub fn resume(&self, stepping: BTreeSet<u32>, only: Option<BTreeSet<u32>>) {
        let mut st = self.changing();
        st.stepping = stepping;
        st.only = only;
        st.stop = None;
        st.halt = false;
        st.generation += 1;
        self.cond.notify_all();
    }

    /// Wait up to `timeout` for a vCPU to stop the machine; once every vCPU
    /// is parked, take the reason.
    pub fn wait_stop(&self, timeout: Duration) -> Option<Stop> {
        let deadline = Instant::now() + timeout;
        let mut st = self.state();
        loop {
            if st.stop.is_some() && st.all_parked() {
                return st.stop.take();
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            st = self.wait(st, (deadline - now).min(Duration::from_millis(5)));
        }
    }

    /// The session's exit status, once it has ended.
    pub fn ended(&self) -> Option<i32> {
        self.state().ended
    }

    /// The session ended with `status`.
    pub fn set_ended(&self, status: i32) {
        let mut st = self.changing();
        st.ended = Some(status);
        st.halt = false;
        st.only = None;
        self.cond.notify_all();
    }

    /// The running boot's vCPU ids.
    pub fn vcpus(&self) -> Vec<u32> {
        self.state().vcpus.keys().copied().collect()
    }

    /// The running boot's memory.
    pub fn memory(&self) -> Option<Arc<GuestMemoryMmap>> {
        self.state().boot.as_ref().map(|b| b.mem.clone())
    }

    /// Run `f` on halted vCPU `id`'s thread and return its result.
    pub fn on_vcpu<R: Send + 'static>(
        &self,
        id: u32,
        f: impl FnOnce(&mut dyn Vcpu) -> R + Send + 'static,
    ) -> Result<R, HubError> {
        let (tx, rx) = mpsc::channel();
        {
            let mut st = self.state();
            let v = st.vcpus.get_mut(&id).ok_or(HubError::NoVcpu(id))?;
            v.requests.push_back(Box::new(move |vcpu| {
                let _ = tx.send(f(vcpu));
            }));
            self.cond.notify_all();
        }
        rx.recv_timeout(REQUEST_TIMEOUT)
            .map_err(|_| HubError::Timeout(id))
    }

    /// Change the breakpoints and watchpoints with `change`, then check the
    /// result on one vCPU: if its engine refuses it (too many), undo it and
    /// return false.
    pub fn change_debug(&self, change: impl Fn(&mut DebugSet) -> bool) -> bool {
        let (probe, debug, before) = {
            let mut st = self.changing();
            let before = DebugSet {
                sw: st.sw_breakpoints.clone(),
                hw: st.hw_breakpoints.clone(),
                watch: st.watchpoints.clone(),
            };
            let mut set = before.clone();
            if !change(&mut set) {
                return false;
            }
            st.sw_breakpoints = set.sw;
            st.hw_breakpoints = set.hw;
            st.watchpoints = set.watch;
            st.generation += 1;
            let Some(&probe) = st.vcpus.keys().next() else {
                return true;
            };
            (probe, st.guest_debug(probe), before)
        };
        let accepted = matches!(
            self.on_vcpu(probe, move |v| v.set_guest_debug(&debug).is_ok()),
            Ok(true)
        );
        if !accepted {
            let mut st = self.changing();
            st.sw_breakpoints = before.sw;
            st.hw_breakpoints = before.hw;
            st.watchpoints = before.watch;
            st.generation += 1;
        }
        accepted
    }

    /// Whether `addr` is one of the software breakpoints.
    pub fn is_sw_breakpoint(&self, addr: u64) -> bool {
        self.state().sw_breakpoints.contains(&addr)
    }
}

/// The breakpoints and watchpoints a debugger set.
#[derive(Debug, Clone, Default)]
pub struct DebugSet {
    pub sw: BTreeSet<u64>,
    pub hw: Vec<u64>,
    pub watch: Vec<Watchpoint>,
}

impl DebugHook for DebugHub {
    fn boot_started(
        &self,
        control: &Control,
        mem: Arc<GuestMemoryMmap>,
        vcpus: Vec<(u32, Arc<dyn VcpuKick>)>,
    ) {
        let mut st = self.changing();
        st.vcpus = vcpus
            .iter()
            .map(|(id, _)| (*id, VcpuState::default()))
            .collect();
        st.boot = Some(Boot {
            control: control.clone(),
            mem,
            kicks: vcpus.into_iter().map(|(_, k)| k).collect(),
        });
        self.cond.notify_all();
    }

    fn boot_ended(&self) {
        let mut st = self.state();
        st.boot = None;
        st.vcpus.clear();
        self.cond.notify_all();
    }

    fn vcpu_checkpoint(&self, vcpu: &mut dyn Vcpu, event: Option<DebugEvent>, control: &Control) {
        if event.is_none() && !self.active.load(Ordering::Acquire) {
            return;
        }
        let id = vcpu.id();
        let mut st = self.state();
        if let Some(event) = event {
            // A triple fault stops even a halting machine: it is news.
            let report = st.attached && (!st.held(id) || event == DebugEvent::TripleFault);
            if report {
                if st.stop.is_none() || event == DebugEvent::TripleFault {
                    st.stop = Some(Stop { vcpu: id, event });
                }
                st.halt = true;
                st.kick_all();
            }
        }
        if st.held(id) && st.ended.is_none() {
            if let Some(v) = st.vcpus.get_mut(&id) {
                v.parked = true;
            }
            self.cond.notify_all();
            loop {
                let request = st.vcpus.get_mut(&id).and_then(|v| v.requests.pop_front());
                if let Some(request) = request {
                    drop(st);
                    request(vcpu);
                    st = self.state();
                    continue;
                }
                if !st.held(id) || control.stopping() || st.ended.is_some() {
                    break;
                }
                st = self.wait(st, Duration::from_millis(50));
            }
            if let Some(v) = st.vcpus.get_mut(&id) {
                v.parked = false;
            }
        }
        let generation = st.generation;
        let apply = st.vcpus.get(&id).is_some_and(|v| v.applied != generation);
        let debug = st.guest_debug(id);
        if let Some(v) = st.vcpus.get_mut(&id) {
            v.applied = generation;
        }
        let quiet = !st.attached
            && !st.halt
            && st.only.is_none()
            && st.vcpus.values().all(|v| v.applied == generation);
        if quiet {
            self.active.store(false, Ordering::Release);
        }
        drop(st);
        if apply {
            if let Err(e) = vcpu.set_guest_debug(&debug) {
                log::warn!("vCPU {id}: the debugger's breakpoints were refused: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;
    use std::sync::mpsc::channel;

    use kite_hypervisor::{
        CpuidEntry, DebugHit, Event, Fpu, Regs, Result, Sregs, Translation, VcpuExit,
    };
    use vm_memory::GuestAddress;

    use super::*;

    struct NoKick;
    impl VcpuKick for NoKick {
        fn kick(&self) {}
    }

    /// A vCPU that only records the debug settings it is given.
    struct FakeVcpu {
        rip: u64,
        applied: Arc<Mutex<Vec<GuestDebug>>>,
    }

    impl Vcpu for FakeVcpu {
        fn id(&self) -> u32 {
            0
        }
        fn run(&mut self) -> Result<VcpuExit<'_>> {
            Ok(VcpuExit::Interrupted)
        }
        fn kick_handle(&self) -> Arc<dyn VcpuKick> {
            Arc::new(NoKick)
        }
        fn regs(&self) -> Result<Regs> {
            Ok(Regs {
                rip: self.rip,
                ..Regs::default()
            })
        }
        fn set_regs(&mut self, r: &Regs) -> Result<()> {
            self.rip = r.rip;
            Ok(())
        }
        fn sregs(&self) -> Result<Sregs> {
            Ok(Sregs::default())
        }
        fn set_sregs(&mut self, _s: &Sregs) -> Result<()> {
            Ok(())
        }
        fn fpu(&self) -> Result<Fpu> {
            Ok(Fpu::default())
        }
        fn set_fpu(&mut self, _f: &Fpu) -> Result<()> {
            Ok(())
        }
        fn msrs(&self, _i: &[u32]) -> Result<Vec<(u32, u64)>> {
            Ok(Vec::new())
        }
        fn set_msrs(&mut self, _m: &[(u32, u64)]) -> Result<()> {
            Ok(())
        }
        fn set_cpuid(&mut self, _e: &[CpuidEntry]) -> Result<()> {
            Ok(())
        }
        fn inject(&mut self, _e: Event) -> Result<()> {
            Ok(())
        }
        fn translate(&self, gva: u64) -> Result<Option<Translation>> {
            Ok(Some(Translation {
                phys: gva,
                writable: true,
                user: false,
            }))
        }
        fn set_guest_debug(&mut self, d: &GuestDebug) -> Result<()> {
            self.applied.lock().unwrap().push(d.clone());
            Ok(())
        }
    }

    #[test]
    fn a_stop_halts_the_vcpu_which_serves_requests_until_resumed() {
        let hub = DebugHub::new(false);
        let (tx, _rx) = channel();
        let stop = Arc::new(AtomicBool::new(false));
        let control = Control::new(tx, stop.clone());
        let mem =
            Arc::new(GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x1000)]).unwrap());
        hub.boot_started(
            &control,
            mem,
            vec![(0, Arc::new(NoKick) as Arc<dyn VcpuKick>)],
        );

        let applied = Arc::new(Mutex::new(Vec::new()));
        let fire = Arc::new(AtomicBool::new(false));
        let vcpu_thread = {
            let (hub, control, applied, fire) =
                (hub.clone(), control.clone(), applied.clone(), fire.clone());
            std::thread::spawn(move || {
                let mut vcpu = FakeVcpu {
                    rip: 0x1234,
                    applied,
                };
                let mut event = None;
                while !control.stopping() {
                    hub.vcpu_checkpoint(&mut vcpu, event.take(), &control);
                    if fire.swap(false, Ordering::SeqCst) {
                        event = Some(DebugEvent::Hit(DebugHit::Breakpoint(0x1234)));
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
            })
        };

        // Attached: halted, and the vCPU's thread answers.
        hub.attach();
        let rip = hub
            .on_vcpu(0, |v| v.regs().map(|r| r.rip))
            .unwrap()
            .unwrap();
        assert_eq!(rip, 0x1234);
        assert!(matches!(hub.on_vcpu(7, |_| ()), Err(HubError::NoVcpu(7))));
        // A breakpoint is checked on the vCPU at once.
        assert!(hub.change_debug(|set| {
            set.sw.insert(0x1234);
            true
        }));
        let last = applied.lock().unwrap().last().cloned().unwrap();
        assert_eq!(last.sw_breakpoints, vec![0x1234]);

        // Resumed with a step: the vCPU runs with single-step on, then stops.
        hub.resume(BTreeSet::from([0]), None);
        fire.store(true, Ordering::SeqCst);
        let stop_seen = hub.wait_stop(Duration::from_secs(5)).expect("a stop");
        assert_eq!(
            stop_seen,
            Stop {
                vcpu: 0,
                event: DebugEvent::Hit(DebugHit::Breakpoint(0x1234))
            }
        );
        assert!(applied.lock().unwrap().iter().any(|d| d.single_step));

        // Detached: the breakpoints go and the vCPU runs on.
        hub.detach();
        let deadline = Instant::now() + Duration::from_secs(5);
        while applied.lock().unwrap().last() != Some(&GuestDebug::default()) {
            assert!(Instant::now() < deadline, "the vCPU kept the breakpoints");
            std::thread::sleep(Duration::from_millis(1));
        }
        control.request(crate::control::VmEvent::Quit);
        vcpu_thread.join().unwrap();
    }
}
