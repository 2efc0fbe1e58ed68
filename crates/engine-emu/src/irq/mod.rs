//! The emu engine's in-engine irqchip, as KVM's in-kernel one: the 8259 pair,
//! the I/O APIC, the 8254 PIT (optional) and one local APIC per vCPU. Devices
//! above the API only drive GSI lines ([`IrqChip::set_irq_line`]) and send
//! MSIs ([`IrqChip::signal_msi`]); the CPU code forwards the chip's ports and
//! MMIO windows here and asks its [`VcpuIrq`] for interrupts.
//!
//! Wiring (a PC with the usual MADT interrupt source override):
//! - GSI 0-15 drive the 8259 pair (IRQ2 is the cascade, not a device line)
//!   and the I/O APIC; GSI 0 (the PIT's IRQ0) enters the I/O APIC on pin 2,
//!   GSI 2 too; GSI 16-23 drive the I/O APIC only. I/O APIC pin 0 is unused.
//! - The 8259's INTR reaches a CPU whose LAPIC has LINT0 unmasked in ExtINT
//!   mode (the BSP at reset: virtual wire) or whose APIC is globally
//!   disabled.
//! - Clocks: the guest TSC runs at 1 GHz ([`TSC_HZ`]), the LAPIC timer at the
//!   25 MHz crystal ([`APIC_BUS_HZ`], CPUID 0x15), the PIT at 1.193182 MHz,
//!   all from host monotonic time.
//!   A per-VM timer thread ("kite-irq-timer") fires armed deadlines.
//!
//! For the CPU loop (per vCPU, with its [`VcpuIrq`]):
//! - at block boundaries, if `events()` is non-zero: `poll(now)` and keep
//!   its answer ("interrupt pending"); `take_nmi`, `take_init`, `take_sipi`
//!   and `kicked_take` consume their bits (a bit left set keeps `events()`
//!   non-zero). `poll` clears `EV_INTERRUPT`/`EV_TIMER`; they come back only
//!   on news, so a pending interrupt held off by IF=0 costs nothing.
//! - with IF=1 and "pending": `acknowledge()` for the vector, then `poll`
//!   again (more may be waiting).
//! - HLT: `halt_wait_if(IF)` (`halt_wait()` = IF=1): CLI; HLT must not
//!   return for maskable interrupts, or it would spin.
//! - RDTSC/RDTSCP: `guest_tsc(Instant::now())`; IA32_TSC, IA32_APIC_BASE,
//!   IA32_TSC_DEADLINE and x2APIC MSRs go to `rdmsr`/`wrmsr`.
//!
//! Locking: the chip-wide state (PIC, IOAPIC, PIT) is one mutex; each vCPU's
//! LAPIC another. No code holds both: deliveries and EOI broadcasts are
//! collected under one lock and carried out after releasing it.

pub mod clock;
pub mod ioapic;
pub mod lapic;
pub mod message;
pub mod pic;
pub mod pit;
mod timers;
mod vcpu;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::thread::JoinHandle;
use std::time::Instant;

pub use clock::{TscClock, APIC_BUS_HZ, TSC_HZ};
pub use ioapic::{IOAPIC_BASE, IOAPIC_SIZE};
pub use vcpu::{VcpuIrq, EV_INIT, EV_INTERRUPT, EV_KICK, EV_NMI, EV_SIPI, EV_TIMER, MSR_TSC};

use ioapic::Ioapic;
use lapic::Lapic;
use message::{DeliveryMode, Message};
use pic::PicPair;
use pit::Pit;
use timers::{TimerKey, TimerScheduler};

/// Number of GSIs (I/O APIC pins).
pub const NUM_GSIS: u32 = ioapic::IOAPIC_PINS as u32;

/// Lock a mutex; a poisoned lock (a panic elsewhere) still yields its data,
/// the irqchip state stays consistent between statements.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[derive(Debug)]
struct ChipState {
    pic: PicPair,
    ioapic: Ioapic,
    pit: Option<Pit>,
    /// PIT deadline last given to the timer thread.
    pit_armed: Option<Instant>,
}

impl ChipState {
    fn route(&mut self, gsi: u32, level: bool, out: &mut Vec<Message>) {
        if gsi < 16 && gsi != 2 {
            self.pic.set_irq(gsi, level);
        }
        let pin = if gsi == 0 { 2 } else { gsi };
        self.ioapic.set_irq(pin, level, out);
    }

    fn run_pit(&mut self, now: Instant, out: &mut Vec<Message>) {
        let fired = self.pit.as_mut().is_some_and(|p| p.run(now));
        if fired {
            // Edge on IRQ0: a pulse.
            self.route(0, true, out);
            self.route(0, false, out);
        }
    }
}

/// The interrupt controllers of one VM. Shared by its vCPUs and device
/// threads (`Send + Sync`, interior locking).
#[derive(Debug)]
pub struct IrqChip {
    state: Mutex<ChipState>,
    vcpus: RwLock<Vec<Arc<VcpuIrq>>>,
    tsc: TscClock,
    with_pit: bool,
    timers: Arc<TimerScheduler>,
    timer_thread: Mutex<Option<JoinHandle<()>>>,
    /// Rotates lowest-priority ties between equal candidates.
    lowest_rr: AtomicUsize,
}

impl IrqChip {
    /// A chip in its power-on state; `with_pit` adds the 8254 and port 0x61.
    pub fn new(with_pit: bool) -> Arc<IrqChip> {
        let now = Instant::now();
        let timers = Arc::new(TimerScheduler::default());
        let chip = Arc::new(IrqChip {
            state: Mutex::new(ChipState {
                pic: PicPair::new(),
                ioapic: Ioapic::new(),
                pit: with_pit.then(|| Pit::new(now)),
                pit_armed: None,
            }),
            vcpus: RwLock::new(Vec::new()),
            tsc: TscClock::new(now),
            with_pit,
            timers: Arc::clone(&timers),
            timer_thread: Mutex::new(None),
            lowest_rr: AtomicUsize::new(0),
        });
        let handle = timers::spawn(&timers, Arc::downgrade(&chip));
        *lock(&chip.timer_thread) = handle;
        chip
    }

    /// Register vCPU `id` (its APIC id; id 0 is the bootstrap processor).
    /// Returns the handle the vCPU thread keeps.
    pub fn add_vcpu(self: &Arc<Self>, id: u32) -> Arc<VcpuIrq> {
        let mut vcpus = self.vcpus.write().unwrap_or_else(PoisonError::into_inner);
        let lapic = Lapic::new(id, id == 0, self.tsc);
        let v = Arc::new(VcpuIrq::new(vcpus.len(), Arc::downgrade(self), lapic));
        vcpus.push(Arc::clone(&v));
        v
    }

    /// The VM's TSC clock (RDTSC = `VcpuIrq::guest_tsc`, which adds the vCPU's offset).
    pub fn tsc_clock(&self) -> TscClock {
        self.tsc
    }

    pub(crate) fn has_timer_thread(&self) -> bool {
        lock(&self.timer_thread).is_some()
    }

    fn vcpus(&self) -> std::sync::RwLockReadGuard<'_, Vec<Arc<VcpuIrq>>> {
        self.vcpus.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Run `f` on the chip state, then, with the lock released: re-arm the
    /// PIT deadline, tell vCPUs that take the 8259's INTR of a new request,
    /// deliver messages.
    fn locked<R>(&self, f: impl FnOnce(&mut ChipState, &mut Vec<Message>) -> R) -> R {
        let mut out = Vec::new();
        let (r, pic_new, rearm) = {
            let mut s = lock(&self.state);
            let before = s.pic.request();
            let r = f(&mut s, &mut out);
            let after = s.pic.request();
            let deadline = s.pit.as_ref().and_then(Pit::next_deadline);
            let rearm = (deadline != s.pit_armed).then(|| {
                s.pit_armed = deadline;
                deadline
            });
            (r, after.is_some() && after != before, rearm)
        };
        if let Some(deadline) = rearm {
            self.timers.set(TimerKey::Pit, deadline);
        }
        if pic_new {
            for v in self.vcpus().iter() {
                if v.accepts_pic() {
                    v.notify(EV_INTERRUPT);
                }
            }
        }
        for m in &out {
            self.deliver(m);
        }
        r
    }

    /// Drive GSI `gsi` (0-23) to `level` (true = asserted). Others ignored.
    pub fn set_irq_line(&self, gsi: u32, level: bool) {
        if gsi >= NUM_GSIS {
            return;
        }
        self.locked(|s, out| s.route(gsi, level, out));
    }

    /// Deliver an Intel-format MSI (address 0xfeexxxxx) to the local APICs.
    /// Anything else is dropped.
    pub fn signal_msi(&self, address: u64, data: u32) {
        if let Some(m) = Message::from_msi(address, data) {
            self.deliver(&m);
        }
    }

    /// Route an interrupt message to the matching local APICs.
    pub(crate) fn deliver(&self, msg: &Message) {
        let vcpus = self.vcpus();
        if msg.mode == DeliveryMode::LowestPriority {
            let n = vcpus.len();
            if n == 0 {
                return;
            }
            let start = self.lowest_rr.fetch_add(1, Ordering::Relaxed) % n;
            let mut best: Option<(u32, &Arc<VcpuIrq>)> = None;
            for i in 0..n {
                let v = &vcpus[(start + i) % n];
                if let Some(ppr) = v.candidate(&msg.dest, true) {
                    if best.is_none_or(|(b, _)| ppr < b) {
                        best = Some((ppr, v));
                    }
                }
            }
            if let Some((_, v)) = best {
                v.receive(msg);
            }
        } else {
            for v in vcpus.iter() {
                if v.candidate(&msg.dest, false).is_some() {
                    v.receive(msg);
                }
            }
        }
    }

    pub(crate) fn ioapic_eoi(&self, vector: u8) {
        self.locked(|s, out| s.ioapic.eoi(vector, out));
    }

    pub(crate) fn pic_output(&self) -> bool {
        lock(&self.state).pic.output()
    }

    /// INTA cycle on the 8259 pair if its INTR is up.
    pub(crate) fn pic_acknowledge(&self) -> Option<u8> {
        self.locked(|s, _| s.pic.output().then(|| s.pic.acknowledge()))
    }

    pub(crate) fn run_pit(&self, now: Instant) {
        if self.with_pit {
            self.locked(|s, out| s.run_pit(now, out));
        }
    }

    pub(crate) fn pit_deadline(&self) -> Option<Instant> {
        lock(&self.state).pit.as_ref().and_then(Pit::next_deadline)
    }

    /// The timer thread saw `key`'s deadline pass.
    pub(crate) fn fire_timer(&self, key: TimerKey, now: Instant) {
        match key {
            TimerKey::Pit => self.locked(|s, out| {
                // The entry is gone from the scheduler: re-arm whatever comes next.
                s.pit_armed = None;
                s.run_pit(now, out);
            }),
            TimerKey::Vcpu(i) => {
                let v = self.vcpus().get(i).cloned();
                if let Some(v) = v {
                    v.fire_timer(now);
                }
            }
        }
    }

    fn owns_port(&self, port: u16) -> bool {
        PicPair::owns(port) || (self.with_pit && Pit::owns(port))
    }

    /// Port read for the ports the chip owns: PIC 0x20-0x21, 0xa0-0xa1,
    /// ELCR 0x4d0-0x4d1, and with the PIT 0x40-0x43 and 0x61. Multi-byte
    /// accesses read consecutive ports. False if `port` is not the chip's.
    pub fn pio_read(&self, port: u16, data: &mut [u8]) -> bool {
        if !self.owns_port(port) {
            return false;
        }
        let now = Instant::now();
        self.locked(|s, _| {
            for (i, b) in data.iter_mut().enumerate() {
                let p = port.wrapping_add(i as u16);
                *b = if PicPair::owns(p) {
                    s.pic.read(p)
                } else if Pit::owns(p) {
                    s.pit.as_mut().and_then(|pit| pit.read(p, now))
                } else {
                    None
                }
                .unwrap_or(0xff);
            }
        });
        true
    }

    /// Port write; false if `port` is not the chip's.
    pub fn pio_write(&self, port: u16, data: &[u8]) -> bool {
        if !self.owns_port(port) {
            return false;
        }
        let now = Instant::now();
        self.locked(|s, _| {
            for (i, &b) in data.iter().enumerate() {
                let p = port.wrapping_add(i as u16);
                if PicPair::owns(p) {
                    s.pic.write(p, b);
                } else if let Some(pit) = s.pit.as_mut() {
                    pit.write(p, b, now);
                }
            }
        });
        true
    }

    fn ioapic_offset(addr: u64) -> Option<u64> {
        addr.checked_sub(IOAPIC_BASE).filter(|&o| o < IOAPIC_SIZE)
    }

    /// I/O APIC MMIO read at 0xfec00000..+0x1000; false if not in range.
    pub fn ioapic_mmio_read(&self, addr: u64, data: &mut [u8]) -> bool {
        let Some(off) = Self::ioapic_offset(addr) else {
            return false;
        };
        lock(&self.state).ioapic.mmio_read(off, data);
        true
    }

    /// I/O APIC MMIO write; false if not in range.
    pub fn ioapic_mmio_write(&self, addr: u64, data: &[u8]) -> bool {
        let Some(off) = Self::ioapic_offset(addr) else {
            return false;
        };
        self.locked(|s, out| s.ioapic.mmio_write(off, data, out));
        true
    }
}

impl IrqChip {
    /// The chip's neutral state: the 8259 pair, the I/O APIC, the PIT (if
    /// any) and the VM clock (the TSC clock's nanoseconds).
    pub fn save_state(&self) -> kite_hypervisor::state::VmState {
        let now = Instant::now();
        let s = lock(&self.state);
        kite_hypervisor::state::VmState {
            pic: Some([s.pic.master.save(), s.pic.slave.save()]),
            ioapic: Some(s.ioapic.save()),
            pit: s.pit.as_ref().map(|p| p.save(now)),
            clock: kite_hypervisor::state::ClockState {
                ns: self.tsc.tsc(now),
            },
        }
    }

    /// Load a neutral state. A PIT in the state needs a chip with one.
    /// The VM clock is not set: guest time on this engine is each vCPU's
    /// TSC, restored with the vCPU. Nothing changes on error.
    pub fn restore_state(&self, st: &kite_hypervisor::state::VmState) -> Result<(), String> {
        if st.pit.is_some() && !self.with_pit {
            return Err("the state has a PIT but this VM was created without one".into());
        }
        let (Some([master, slave]), Some(ioapic)) = (&st.pic, &st.ioapic) else {
            return Err("the state has no 8259/IOAPIC but this VM has an irqchip".into());
        };
        let now = Instant::now();
        self.locked(|s, _| {
            s.pic.master.restore(master);
            s.pic.slave.restore(slave);
            s.ioapic.restore(ioapic);
            if let (Some(pit), Some(p)) = (s.pit.as_mut(), &st.pit) {
                pit.restore(p, now);
            }
        });
        for v in self.vcpus().iter() {
            v.notify(EV_INTERRUPT);
        }
        Ok(())
    }
}

impl Drop for IrqChip {
    fn drop(&mut self) {
        self.timers.shutdown();
        let handle = lock(&self.timer_thread).take();
        if let Some(h) = handle {
            // The last reference may be dropped by the timer thread itself.
            if h.thread().id() != std::thread::current().id() {
                let _ = h.join();
            }
        }
    }
}

#[cfg(test)]
mod tests;
