//! [`VcpuIrq`]: a vCPU's side of the irqchip. It owns the vCPU's local APIC,
//! the "event pending" word the CPU loop polls, and the halt/wake machinery.
//!
//! Threads: the vCPU thread calls everything; device threads, other vCPUs
//! (IPIs) and the timer thread reach a vCPU only through `receive`,
//! `fire_timer`, `notify` and `kick`, which set a bit in the event word and
//! wake the vCPU if it is in `halt_wait`.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Condvar, Mutex, Weak};
use std::time::Instant;

use super::lapic::{Lapic, MsrResult, Outbox};
use super::message::{DeliveryMode, Destination, Message};
use super::timers::TimerKey;
use super::{lock, IrqChip};

/// Event word bits (see [`VcpuIrq::events`]).
/// An interrupt may be deliverable (LAPIC IRR above PPR, or the 8259's INTR).
pub const EV_INTERRUPT: u32 = 1 << 0;
/// A local APIC timer expired (the interrupt, if unmasked, is in the IRR).
pub const EV_TIMER: u32 = 1 << 1;
/// `kick()` was called: leave `run` with `VcpuExit::Interrupted`.
pub const EV_KICK: u32 = 1 << 2;
/// An NMI is pending (`take_nmi`).
pub const EV_NMI: u32 = 1 << 3;
/// An INIT IPI arrived (`take_init`).
pub const EV_INIT: u32 = 1 << 4;
/// A start-up IPI arrived (`take_sipi`).
pub const EV_SIPI: u32 = 1 << 5;

/// IA32_TSC: handled here so RDTSC and the TSC-deadline timer share one clock.
pub const MSR_TSC: u32 = 0x10;

#[derive(Debug)]
struct Local {
    lapic: Lapic,
    /// Deadline last given to the timer thread.
    armed: Option<Instant>,
}

/// Per-vCPU interrupt state; see the module doc.
#[derive(Debug)]
pub struct VcpuIrq {
    index: usize,
    chip: Weak<IrqChip>,
    local: Mutex<Local>,
    events: AtomicU32,
    accepts_pic: AtomicBool,
    sipi_vector: AtomicU32,
    halting: AtomicBool,
    wake_gen: Mutex<u64>,
    wake_cv: Condvar,
}

impl VcpuIrq {
    pub(crate) fn new(index: usize, chip: Weak<IrqChip>, lapic: Lapic) -> Self {
        let accepts_pic = lapic.accepts_pic();
        VcpuIrq {
            index,
            chip,
            local: Mutex::new(Local { lapic, armed: None }),
            events: AtomicU32::new(0),
            accepts_pic: AtomicBool::new(accepts_pic),
            sipi_vector: AtomicU32::new(0),
            halting: AtomicBool::new(false),
            wake_gen: Mutex::new(0),
            wake_cv: Condvar::new(),
        }
    }

    /// Run `f` on the local APIC, then do what it asked (IPIs, EOI
    /// broadcasts, timer re-arming) with the lock released, and flag a
    /// newly deliverable interrupt in the event word.
    fn with_lapic<R>(&self, force_rearm: bool, f: impl FnOnce(&mut Lapic, &mut Outbox) -> R) -> R {
        let mut out = Outbox::default();
        let (r, newly_deliverable, accepts_pic, rearm) = {
            let mut local = lock(&self.local);
            let before = local.lapic.deliverable();
            let r = f(&mut local.lapic, &mut out);
            let after = local.lapic.deliverable();
            let deadline = local.lapic.next_deadline();
            let rearm = if force_rearm || deadline != local.armed {
                local.armed = deadline;
                Some(deadline)
            } else {
                None
            };
            (
                r,
                after.is_some() && after != before,
                local.lapic.accepts_pic(),
                rearm,
            )
        };
        let had_pic = self.accepts_pic.swap(accepts_pic, Ordering::SeqCst);
        let chip = self.chip.upgrade();
        if let Some(chip) = &chip {
            if let Some(deadline) = rearm {
                chip.timers.set(TimerKey::Vcpu(self.index), deadline);
            }
            for m in &out.messages {
                chip.deliver(m);
            }
            for &v in &out.eois {
                chip.ioapic_eoi(v);
            }
            if accepts_pic && !had_pic && chip.pic_output() {
                self.notify(EV_INTERRUPT);
            }
        }
        if newly_deliverable {
            self.notify(EV_INTERRUPT);
        }
        r
    }

    /// Set event bits and wake the vCPU if it is halted.
    pub(crate) fn notify(&self, bits: u32) {
        self.events.fetch_or(bits, Ordering::SeqCst);
        if self.halting.load(Ordering::SeqCst) {
            *lock(&self.wake_gen) += 1;
            self.wake_cv.notify_all();
        }
    }

    pub(crate) fn accepts_pic(&self) -> bool {
        self.accepts_pic.load(Ordering::SeqCst)
    }

    /// Is this vCPU's APIC among `dest`? Some(PPR) if so (for lowest
    /// priority arbitration; only software-enabled APICs take part).
    pub(crate) fn candidate(&self, dest: &Destination, lowest: bool) -> Option<u32> {
        let local = lock(&self.local);
        let l = &local.lapic;
        (l.matches(dest) && (!lowest || l.sw_enabled())).then(|| l.ppr())
    }

    /// An interrupt message for this APIC arrives.
    pub(crate) fn receive(&self, msg: &Message) {
        match msg.mode {
            DeliveryMode::Fixed | DeliveryMode::LowestPriority => {
                self.with_lapic(false, |l, _| l.accept_fixed(msg.vector, msg.level));
            }
            DeliveryMode::Nmi => self.notify(EV_NMI),
            DeliveryMode::Init => {
                self.with_lapic(false, |l, _| l.init_reset());
                self.notify(EV_INIT);
            }
            DeliveryMode::StartUp => {
                self.sipi_vector
                    .store(u32::from(msg.vector), Ordering::SeqCst);
                self.notify(EV_SIPI);
            }
            // SMI is not modelled; ExtINT through the I/O APIC is not wired.
            DeliveryMode::Smi | DeliveryMode::ExtInt | DeliveryMode::Reserved => {}
        }
    }

    /// The timer thread saw this vCPU's deadline pass.
    pub(crate) fn fire_timer(&self, now: Instant) {
        if self.with_lapic(true, |l, _| l.run_timer(now)) {
            self.notify(EV_TIMER);
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        lock(&self.local).lapic.next_deadline()
    }

    /// The "event pending" word: non-zero when an interrupt may be
    /// deliverable, a timer expired, a kick/NMI/INIT/SIPI arrived (bits
    /// `EV_*`). Cheap to load (Relaxed) at every block boundary; when
    /// non-zero, call [`VcpuIrq::poll`] and the `take_*` methods.
    pub fn events(&self) -> &AtomicU32 {
        &self.events
    }

    /// The APIC id.
    pub fn apic_id(&self) -> u32 {
        lock(&self.local).lapic.id()
    }

    /// LAPIC MMIO read at physical `addr`; false if not in the APIC window
    /// (default 0xfee00000; off when the APIC is disabled or in x2APIC mode).
    pub fn lapic_mmio_read(&self, addr: u64, data: &mut [u8]) -> bool {
        lock(&self.local)
            .lapic
            .mmio_read(addr, data, Instant::now())
    }

    /// LAPIC MMIO write; false if not in the APIC window.
    pub fn lapic_mmio_write(&self, addr: u64, data: &[u8]) -> bool {
        let now = Instant::now();
        self.with_lapic(false, |l, out| l.mmio_write(addr, data, now, out))
    }

    /// RDMSR for IA32_TSC (0x10), IA32_APIC_BASE (0x1b), IA32_TSC_DEADLINE
    /// (0x6e0) and the x2APIC range 0x800-0x8ff. None: not handled here or
    /// not valid now (the CPU raises #GP).
    pub fn rdmsr(&self, msr: u32) -> Option<u64> {
        let now = Instant::now();
        let local = lock(&self.local);
        if msr == MSR_TSC {
            return Some(local.lapic.guest_tsc(now));
        }
        local.lapic.rdmsr(msr, now)
    }

    /// WRMSR for the same MSRs; false means #GP (or not an APIC MSR).
    pub fn wrmsr(&self, msr: u32, value: u64) -> bool {
        let now = Instant::now();
        if msr == MSR_TSC {
            self.with_lapic(false, |l, _| l.set_guest_tsc(now, value));
            return true;
        }
        matches!(
            self.with_lapic(false, |l, out| l.wrmsr(msr, value, now, out)),
            Some(MsrResult::Ok)
        )
    }

    /// Guest TSC at `now` (the VM's [`super::TscClock`] plus this vCPU's
    /// IA32_TSC offset): what RDTSC returns.
    pub fn guest_tsc(&self, now: Instant) -> u64 {
        lock(&self.local).lapic.guest_tsc(now)
    }

    /// Run expired timers and tell whether an external interrupt is pending
    /// for this vCPU (LAPIC IRR above PPR, or the 8259's INTR when LINT0 is
    /// ExtINT or the APIC is globally disabled). Call when `events() != 0`.
    ///
    /// Clears `EV_INTERRUPT` and `EV_TIMER`: the caller keeps the answer
    /// (e.g. while IF=0) and asks again after `acknowledge`; the bits are
    /// set again only when something changes (a new interrupt, an EOI, a
    /// TPR write, a timer expiry).
    pub fn poll(&self, now: Instant) -> bool {
        self.events
            .fetch_and(!(EV_INTERRUPT | EV_TIMER), Ordering::SeqCst);
        let chip = self.chip.upgrade();
        if let Some(chip) = &chip {
            if !chip.has_timer_thread() {
                chip.run_pit(now);
            }
        }
        let (lapic_pending, accepts_pic) = self.with_lapic(false, |l, _| {
            l.run_timer(now);
            (l.deliverable().is_some(), l.accepts_pic())
        });
        lapic_pending || (accepts_pic && chip.is_some_and(|c| c.pic_output()))
    }

    /// INTA: the CPU (IF=1) takes the interrupt. Returns its vector: from
    /// the 8259 if its INTR reaches this CPU and is up (as KVM, ExtINT
    /// first), else the LAPIC's highest deliverable vector, moved from IRR
    /// to ISR. None if the interrupt vanished.
    pub fn acknowledge(&self) -> Option<u8> {
        if self.accepts_pic() {
            if let Some(chip) = self.chip.upgrade() {
                if let Some(v) = chip.pic_acknowledge() {
                    return Some(v);
                }
            }
        }
        self.with_lapic(false, |l, _| l.acknowledge())
    }

    /// Take a pending NMI.
    pub fn take_nmi(&self) -> bool {
        self.events.fetch_and(!EV_NMI, Ordering::SeqCst) & EV_NMI != 0
    }

    /// Take a pending INIT (the local APIC was already reset by it).
    pub fn take_init(&self) -> bool {
        self.events.fetch_and(!EV_INIT, Ordering::SeqCst) & EV_INIT != 0
    }

    /// Take a pending start-up IPI: its vector (start at vector << 12).
    pub fn take_sipi(&self) -> Option<u8> {
        (self.events.fetch_and(!EV_SIPI, Ordering::SeqCst) & EV_SIPI != 0)
            .then(|| self.sipi_vector.load(Ordering::SeqCst) as u8)
    }

    /// HLT: block until an external interrupt is pending (whatever IF is),
    /// an NMI/INIT/SIPI or a kick arrives. Timer deadlines wake it (the
    /// timer is run and the state re-checked). Sleeps on a condition
    /// variable: an idle vCPU costs no host CPU. When it returns for an
    /// interrupt, `EV_INTERRUPT` is set so the next `events()` check polls.
    pub fn halt_wait(&self) {
        self.halt_wait_if(true);
    }

    /// HLT with the guest's IF: with `interrupts_enabled` false (CLI; HLT)
    /// a pending external interrupt does not end the halt, only an NMI,
    /// INIT, SIPI or a kick do, as on hardware.
    pub fn halt_wait_if(&self, interrupts_enabled: bool) {
        const WAKE: u32 = EV_KICK | EV_NMI | EV_INIT | EV_SIPI;
        self.halting.store(true, Ordering::SeqCst);
        loop {
            let gen = *lock(&self.wake_gen);
            let now = Instant::now();
            if self.poll(now) && interrupts_enabled {
                self.events.fetch_or(EV_INTERRUPT, Ordering::SeqCst);
                break;
            }
            if self.events.load(Ordering::SeqCst) & WAKE != 0 {
                break;
            }
            let mut deadline = self.next_deadline();
            if let Some(chip) = self.chip.upgrade() {
                if !chip.has_timer_thread() {
                    deadline = match (deadline, chip.pit_deadline()) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    };
                }
            }
            let mut g = lock(&self.wake_gen);
            while *g == gen {
                match deadline {
                    None => g = self.wake_cv.wait(g).unwrap_or_else(|e| e.into_inner()),
                    Some(d) => {
                        let now = Instant::now();
                        if now >= d {
                            break;
                        }
                        g = self
                            .wake_cv
                            .wait_timeout(g, d - now)
                            .unwrap_or_else(|e| e.into_inner())
                            .0;
                    }
                }
            }
        }
        self.halting.store(false, Ordering::SeqCst);
    }

    /// Make the vCPU leave `run` soon (`VcpuExit::Interrupted`): wakes it
    /// from `halt_wait` and makes `events()` non-zero until `kicked_take`.
    pub fn kick(&self) {
        self.notify(EV_KICK);
    }

    /// Was `kick()` called since the last take?
    pub fn kicked_take(&self) -> bool {
        self.events.fetch_and(!EV_KICK, Ordering::SeqCst) & EV_KICK != 0
    }

    /// The local APIC's neutral state now (an expiry that is due is run
    /// first, so it is in the IRR rather than lost).
    pub fn save_lapic(&self) -> kite_hypervisor::state::LapicState {
        let now = Instant::now();
        self.with_lapic(false, |l, _| {
            l.run_timer(now);
            l.save(now)
        })
    }

    /// Replace the local APIC's state (see `Lapic::restore`) and make the
    /// vCPU look for interrupts again. Nothing changes on error.
    pub fn restore_lapic(
        &self,
        s: &kite_hypervisor::state::LapicState,
        apic_base: u64,
        guest_tsc: u64,
    ) -> Result<(), String> {
        let now = Instant::now();
        self.with_lapic(true, |l, _| l.restore(s, apic_base, guest_tsc, now))?;
        self.notify(EV_INTERRUPT);
        Ok(())
    }

    /// NMI, INIT and start-up IPI (its vector) that arrived and are not yet taken.
    pub fn pending_signals(&self) -> (bool, bool, Option<u8>) {
        let ev = self.events.load(Ordering::SeqCst);
        (
            ev & EV_NMI != 0,
            ev & EV_INIT != 0,
            (ev & EV_SIPI != 0).then(|| self.sipi_vector.load(Ordering::SeqCst) as u8),
        )
    }

    /// Replace the pending NMI/INIT/SIPI signals (a restore).
    pub fn set_pending_signals(&self, nmi: bool, init: bool, sipi: Option<u8>) {
        self.events
            .fetch_and(!(EV_NMI | EV_INIT | EV_SIPI), Ordering::SeqCst);
        if let Some(v) = sipi {
            self.sipi_vector.store(u32::from(v), Ordering::SeqCst);
        }
        let bits = if nmi { EV_NMI } else { 0 }
            | if init { EV_INIT } else { 0 }
            | if sipi.is_some() { EV_SIPI } else { 0 };
        self.notify(bits | EV_INTERRUPT);
    }

    /// CR8 view of the TPR (TPR bits 7:4).
    pub fn cr8(&self) -> u64 {
        u64::from(lock(&self.local).lapic.tpr() >> 4)
    }

    /// MOV to CR8: TPR = (v & 0xf) << 4.
    pub fn set_cr8(&self, v: u64) {
        self.with_lapic(false, |l, _| l.set_tpr(((v & 0xf) as u32) << 4));
    }
}
