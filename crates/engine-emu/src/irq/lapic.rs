//! A local APIC (Intel SDM vol 3, chapters 10/11 "Advanced Programmable
//! Interrupt Controller"), in xAPIC (MMIO) and x2APIC (MSR) modes.
//!
//! Pure state machine: no locking; every call that depends on time takes the
//! host monotonic `now`. Interrupts the APIC sends (IPIs) and EOIs it
//! broadcasts to the I/O APIC are appended to an [`Outbox`] for the caller.
//!
//! Model choices: version 0x14 with 6 LVT entries (timer, thermal, perf,
//! LINT0, LINT1, error; no CMCI); the timer counts at [`APIC_BUS_HZ`] (25 MHz)
//! divided by the divide configuration; a periodic timer never fires more
//! often than every [`MIN_PERIODIC_NS`]; delivery status always reads idle;
//! EOI-broadcast suppression is not offered. Fixed interrupts sent to a
//! software-disabled APIC are dropped (INIT, SIPI, NMI still arrive).

use std::time::{Duration, Instant};

use super::clock::{TscClock, APIC_BUS_HZ};
use super::message::{read_reg_bytes, DeliveryMode, Destination, Message};

/// Default physical base of the xAPIC window.
pub const LAPIC_DEFAULT_BASE: u64 = 0xfee0_0000;
/// Version register: version 0x14, 6 LVT entries (max LVT index 5).
pub const LAPIC_VERSION: u32 = 0x0005_0014;
/// Shortest period of the periodic timer mode (a guest cannot make the host
/// wake more often than 10 kHz).
pub const MIN_PERIODIC_NS: u64 = 100_000;

pub const MSR_APIC_BASE: u32 = 0x1b;
pub const MSR_TSC_DEADLINE: u32 = 0x6e0;
pub const MSR_X2APIC_FIRST: u32 = 0x800;
pub const MSR_X2APIC_LAST: u32 = 0x8ff;

/// IA32_APIC_BASE bits.
pub const APIC_BASE_BSP: u64 = 1 << 8;
pub const APIC_BASE_EXTD: u64 = 1 << 10;
pub const APIC_BASE_ENABLE: u64 = 1 << 11;
/// Physical-address bits of the base (MAXPHYADDR 52).
const APIC_BASE_ADDR: u64 = 0x000f_ffff_ffff_f000;

// Register offsets (xAPIC MMIO; x2APIC MSR = 0x800 + offset / 16).
const REG_ID: u32 = 0x20;
const REG_VERSION: u32 = 0x30;
const REG_TPR: u32 = 0x80;
const REG_APR: u32 = 0x90;
const REG_PPR: u32 = 0xa0;
const REG_EOI: u32 = 0xb0;
const REG_RRD: u32 = 0xc0;
const REG_LDR: u32 = 0xd0;
const REG_DFR: u32 = 0xe0;
const REG_SVR: u32 = 0xf0;
const REG_ISR: u32 = 0x100;
const REG_TMR: u32 = 0x180;
const REG_IRR: u32 = 0x200;
const REG_ESR: u32 = 0x280;
const REG_ICR_LOW: u32 = 0x300;
const REG_ICR_HIGH: u32 = 0x310;
const REG_LVT_TIMER: u32 = 0x320;
const REG_LVT_ERROR: u32 = 0x370;
const REG_TIMER_INITIAL: u32 = 0x380;
const REG_TIMER_CURRENT: u32 = 0x390;
const REG_TIMER_DIVIDE: u32 = 0x3e0;
const REG_SELF_IPI: u32 = 0x3f0;

const LVT_TIMER: usize = 0;
const LVT_LINT0: usize = 3;
const LVT_ERROR: usize = 5;
const LVT_COUNT: usize = 6;
/// Writable bits of each LVT entry (timer, thermal, perf, LINT0, LINT1, error).
const LVT_WRITABLE: [u32; LVT_COUNT] = [
    0x0007_00ff,
    0x0001_07ff,
    0x0001_07ff,
    0x0001_a7ff,
    0x0001_a7ff,
    0x0001_00ff,
];
const LVT_MASKED: u32 = 1 << 16;
const TIMER_MODE_MASK: u32 = 3 << 17;
const TIMER_PERIODIC: u32 = 1 << 17;
const TIMER_TSC_DEADLINE: u32 = 2 << 17;

const SVR_ENABLE: u32 = 1 << 8;

/// ESR bits.
const ESR_SEND_ILLEGAL_VECTOR: u32 = 1 << 5;
const ESR_RECEIVE_ILLEGAL_VECTOR: u32 = 1 << 6;
const ESR_ILLEGAL_REGISTER: u32 = 1 << 7;

/// What an APIC operation asks the rest of the irqchip to do.
#[derive(Debug, Default)]
pub struct Outbox {
    /// Interrupt messages to route to local APICs (IPIs).
    pub messages: Vec<Message>,
    /// Vectors of level-triggered interrupts EOI'd: broadcast to the I/O APIC.
    pub eois: Vec<u8>,
}

/// 256-bit register (ISR, TMR, IRR).
#[derive(Debug, Clone, Copy, Default)]
struct Bits256([u32; 8]);

impl Bits256 {
    fn get(&self, v: u8) -> bool {
        self.0[usize::from(v >> 5)] & (1 << (v & 31)) != 0
    }
    fn set(&mut self, v: u8, on: bool) {
        let w = &mut self.0[usize::from(v >> 5)];
        if on {
            *w |= 1 << (v & 31);
        } else {
            *w &= !(1 << (v & 31));
        }
    }
    fn highest(&self) -> Option<u8> {
        (0..8usize)
            .rev()
            .find(|&i| self.0[i] != 0)
            .map(|i| (i as u8) * 32 + (31 - self.0[i].leading_zeros() as u8))
    }
}

/// How an x2APIC MSR access ended.
#[derive(Debug, PartialEq, Eq)]
pub enum MsrResult {
    Ok,
    /// Not a valid access: the CPU raises #GP.
    Fault,
}

/// One local APIC.
#[derive(Debug, Clone)]
pub struct Lapic {
    id: u32,
    apic_base: u64,
    tpr: u32,
    ldr: u32,
    dfr: u32,
    svr: u32,
    isr: Bits256,
    tmr: Bits256,
    irr: Bits256,
    esr: u32,
    esr_pending: u32,
    icr_low: u32,
    icr_high: u32,
    lvt: [u32; LVT_COUNT],
    timer_initial: u32,
    timer_divide: u32,
    /// Next expiry of the one-shot/periodic/TSC-deadline timer.
    timer_next: Option<Instant>,
    /// Period of the running periodic timer.
    timer_period: Duration,
    /// IA32_TSC_DEADLINE as written (0 = disarmed).
    tsc_deadline: u64,
    tsc: TscClock,
    /// Per-vCPU TSC offset (IA32_TSC writes), wrapping.
    tsc_offset: u64,
}

impl Lapic {
    /// Power-on state. The BSP's LINT0 is set up as ExtINT (virtual wire),
    /// as firmware leaves it, so the 8259 reaches the CPU before the OS
    /// touches the APIC.
    pub fn new(id: u32, bsp: bool, tsc: TscClock) -> Self {
        let mut l = Lapic {
            id,
            apic_base: LAPIC_DEFAULT_BASE | APIC_BASE_ENABLE | if bsp { APIC_BASE_BSP } else { 0 },
            tpr: 0,
            ldr: 0,
            dfr: 0xffff_ffff,
            svr: 0xff,
            isr: Bits256::default(),
            tmr: Bits256::default(),
            irr: Bits256::default(),
            esr: 0,
            esr_pending: 0,
            icr_low: 0,
            icr_high: 0,
            lvt: [LVT_MASKED; LVT_COUNT],
            timer_initial: 0,
            timer_divide: 0,
            timer_next: None,
            timer_period: Duration::ZERO,
            tsc_deadline: 0,
            tsc,
            tsc_offset: 0,
        };
        if bsp {
            l.lvt[LVT_LINT0] = 0x700;
        }
        l
    }

    /// INIT: every register to its power-up value except the APIC id and
    /// IA32_APIC_BASE (SDM 10.4.7.3).
    pub fn init_reset(&mut self) {
        let fresh = Lapic::new(self.id, false, self.tsc);
        let apic_base = self.apic_base;
        let tsc_offset = self.tsc_offset;
        *self = fresh;
        self.apic_base = apic_base;
        self.tsc_offset = tsc_offset;
        if self.x2apic() {
            self.ldr = self.x2apic_ldr();
        }
    }

    pub fn id(&self) -> u32 {
        self.id
    }

    /// Globally enabled by IA32_APIC_BASE.
    pub fn hw_enabled(&self) -> bool {
        self.apic_base & APIC_BASE_ENABLE != 0
    }

    /// Software enabled by SVR bit 8.
    pub fn sw_enabled(&self) -> bool {
        self.svr & SVR_ENABLE != 0
    }

    pub fn x2apic(&self) -> bool {
        self.hw_enabled() && self.apic_base & APIC_BASE_EXTD != 0
    }

    pub fn apic_base(&self) -> u64 {
        self.apic_base
    }

    fn x2apic_ldr(&self) -> u32 {
        ((self.id & 0xffff_fff0) << 12) | (1 << (self.id & 0xf))
    }

    /// Does the 8259's INTR reach this CPU (LINT0 unmasked in ExtINT mode,
    /// or the APIC globally disabled)?
    pub fn accepts_pic(&self) -> bool {
        let lint0 = self.lvt[LVT_LINT0];
        !self.hw_enabled()
            || (lint0 & LVT_MASKED == 0
                && DeliveryMode::from_bits(lint0 >> 8) == DeliveryMode::ExtInt)
    }

    // ---- priorities -------------------------------------------------------

    pub fn ppr(&self) -> u32 {
        let isrv = self.isr.highest().map_or(0, u32::from);
        if (self.tpr >> 4) >= (isrv >> 4) {
            self.tpr & 0xff
        } else {
            isrv & 0xf0
        }
    }

    fn apr(&self) -> u32 {
        let isrv = self.isr.highest().map_or(0, u32::from) & 0xf0;
        let irrv = self.irr.highest().map_or(0, u32::from) & 0xf0;
        let tpr = self.tpr & 0xff;
        if (tpr >> 4) >= (isrv >> 4) && (tpr >> 4) > (irrv >> 4) {
            tpr
        } else {
            (tpr & 0xf0).max(isrv).max(irrv)
        }
    }

    /// The vector the APIC would present to the CPU now, if any.
    pub fn deliverable(&self) -> Option<u8> {
        if !self.hw_enabled() {
            return None;
        }
        let v = self.irr.highest()?;
        (u32::from(v >> 4) > self.ppr() >> 4).then_some(v)
    }

    /// INTA: the highest deliverable vector moves from IRR to ISR.
    pub fn acknowledge(&mut self) -> Option<u8> {
        let v = self.deliverable()?;
        self.irr.set(v, false);
        self.isr.set(v, true);
        Some(v)
    }

    pub fn tpr(&self) -> u32 {
        self.tpr
    }

    pub fn set_tpr(&mut self, v: u32) {
        self.tpr = v & 0xff;
    }

    pub fn irr_has(&self, v: u8) -> bool {
        self.irr.get(v)
    }

    pub fn isr_has(&self, v: u8) -> bool {
        self.isr.get(v)
    }

    // ---- receiving --------------------------------------------------------

    fn error(&mut self, bits: u32) {
        let new = bits & !self.esr_pending;
        self.esr_pending |= bits;
        let lvt = self.lvt[LVT_ERROR];
        if new != 0 && lvt & LVT_MASKED == 0 {
            self.set_irr(lvt as u8, false);
        }
    }

    fn set_irr(&mut self, vector: u8, level: bool) -> bool {
        if vector < 16 {
            self.error(ESR_RECEIVE_ILLEGAL_VECTOR);
            return false;
        }
        self.irr.set(vector, true);
        self.tmr.set(vector, level);
        true
    }

    /// A fixed or lowest-priority interrupt arrives. False if dropped.
    pub fn accept_fixed(&mut self, vector: u8, level: bool) -> bool {
        if !self.hw_enabled() || !self.sw_enabled() {
            return false;
        }
        self.set_irr(vector, level)
    }

    /// Is this APIC one of the message's destinations?
    pub fn matches(&self, dest: &Destination) -> bool {
        if !self.hw_enabled() {
            return false;
        }
        match *dest {
            Destination::All => true,
            Destination::OnlySelf(id) => id == self.id,
            Destination::AllBut(id) => id != self.id,
            Destination::Field {
                dest,
                logical: false,
                wide,
            } => {
                if wide {
                    dest == 0xffff_ffff || dest == self.id
                } else {
                    dest == 0xff || dest == self.id
                }
            }
            Destination::Field {
                dest,
                logical: true,
                wide,
            } => {
                if (!wide && dest == 0xff) || (wide && dest == 0xffff_ffff) {
                    return true;
                }
                if self.x2apic() {
                    let ldr = self.x2apic_ldr();
                    if wide {
                        dest >> 16 == ldr >> 16 && dest & ldr & 0xffff != 0
                    } else {
                        // 8-bit logical destinations reach x2APIC cluster 0.
                        ldr >> 16 == 0 && dest & ldr & 0xff != 0
                    }
                } else {
                    let d = dest & 0xff;
                    let ldr = self.ldr >> 24;
                    if self.dfr >> 28 == 0xf {
                        d & ldr != 0
                    } else {
                        d >> 4 == ldr >> 4 && d & ldr & 0xf != 0
                    }
                }
            }
        }
    }

    // ---- sending ----------------------------------------------------------

    fn send_ipi(&mut self, out: &mut Outbox) {
        let low = self.icr_low;
        let mode = DeliveryMode::from_bits(low >> 8);
        let vector = low as u8;
        let level_assert = low & (1 << 14) != 0;
        let level_trigger = low & (1 << 15) != 0;
        match mode {
            // INIT level de-assert: only synchronises arbitration IDs.
            DeliveryMode::Init if !level_assert && level_trigger => return,
            DeliveryMode::Fixed | DeliveryMode::LowestPriority if vector < 16 => {
                self.error(ESR_SEND_ILLEGAL_VECTOR);
                return;
            }
            DeliveryMode::Reserved | DeliveryMode::ExtInt => return,
            _ => {}
        }
        let dest = match (low >> 18) & 3 {
            0 => Destination::Field {
                dest: if self.x2apic() {
                    self.icr_high
                } else {
                    self.icr_high >> 24
                },
                logical: low & (1 << 11) != 0,
                wide: self.x2apic(),
            },
            1 => Destination::OnlySelf(self.id),
            2 => Destination::All,
            _ => Destination::AllBut(self.id),
        };
        out.messages.push(Message {
            vector,
            mode,
            dest,
            level: level_trigger
                && matches!(mode, DeliveryMode::Fixed | DeliveryMode::LowestPriority),
        });
    }

    fn eoi(&mut self, out: &mut Outbox) {
        if let Some(v) = self.isr.highest() {
            self.isr.set(v, false);
            if self.tmr.get(v) {
                self.tmr.set(v, false);
                out.eois.push(v);
            }
        }
    }

    // ---- timer ------------------------------------------------------------

    fn timer_mode(&self) -> u32 {
        self.lvt[LVT_TIMER] & TIMER_MODE_MASK
    }

    fn divisor(&self) -> u64 {
        let d = (self.timer_divide & 3) | ((self.timer_divide >> 1) & 4);
        if d == 7 {
            1
        } else {
            2 << d
        }
    }

    fn count_duration(&self, count: u64) -> Duration {
        let ns = u128::from(count) * u128::from(self.divisor()) * 1_000_000_000
            / u128::from(APIC_BUS_HZ);
        Duration::from_nanos(u64::try_from(ns).unwrap_or(u64::MAX))
    }

    fn start_timer(&mut self, now: Instant, count: u64) {
        if count == 0 || self.timer_mode() == TIMER_TSC_DEADLINE {
            self.timer_next = None;
            return;
        }
        let mut period = self.count_duration(count);
        if self.timer_mode() == TIMER_PERIODIC {
            period = period.max(Duration::from_nanos(MIN_PERIODIC_NS));
        }
        self.timer_period = period;
        self.timer_next = now.checked_add(period);
    }

    fn current_count(&self, now: Instant) -> u32 {
        if self.timer_mode() == TIMER_TSC_DEADLINE {
            return 0;
        }
        let Some(next) = self.timer_next else {
            return 0;
        };
        let left = next.saturating_duration_since(now).as_nanos() * u128::from(APIC_BUS_HZ)
            / 1_000_000_000;
        let count = left.div_ceil(u128::from(self.divisor()));
        u32::try_from(count)
            .unwrap_or(u32::MAX)
            .min(self.timer_initial)
    }

    /// When the timer expires next, if armed.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.timer_next
    }

    /// Expire the timer if its deadline passed: the LVT timer interrupt
    /// becomes pending (unless masked). At most one expiry per call; a
    /// periodic timer skips periods missed. True if it expired.
    pub fn run_timer(&mut self, now: Instant) -> bool {
        let Some(next) = self.timer_next else {
            return false;
        };
        if now < next {
            return false;
        }
        let mode = self.timer_mode();
        if mode == TIMER_PERIODIC && !self.timer_period.is_zero() {
            let behind = now.saturating_duration_since(next).as_nanos();
            let periods = behind / self.timer_period.as_nanos() + 1;
            let skip = self.timer_period.as_nanos().saturating_mul(periods);
            self.timer_next = next.checked_add(Duration::from_nanos(
                u64::try_from(skip).unwrap_or(u64::MAX),
            ));
        } else {
            self.timer_next = None;
            if mode == TIMER_TSC_DEADLINE {
                self.tsc_deadline = 0;
            }
        }
        let lvt = self.lvt[LVT_TIMER];
        if lvt & LVT_MASKED == 0 && self.sw_enabled() {
            self.set_irr(lvt as u8, false);
        }
        true
    }

    /// Guest TSC at `now` (VM clock plus this vCPU's offset).
    pub fn guest_tsc(&self, now: Instant) -> u64 {
        self.tsc.tsc(now).wrapping_add(self.tsc_offset)
    }

    /// IA32_TSC write: make the guest TSC read `value` at `now`.
    pub fn set_guest_tsc(&mut self, now: Instant, value: u64) {
        let deadline = self.tsc_deadline;
        self.tsc_offset = value.wrapping_sub(self.tsc.tsc(now));
        if deadline != 0 {
            self.arm_tsc_deadline(now, deadline);
        }
    }

    fn arm_tsc_deadline(&mut self, now: Instant, deadline: u64) {
        self.tsc_deadline = deadline;
        if deadline == 0 {
            self.timer_next = None;
            return;
        }
        let cur = self.guest_tsc(now);
        // A deadline in the past (as signed distance) fires at once.
        let ahead = deadline.wrapping_sub(cur);
        self.timer_next = if deadline <= cur || ahead > i64::MAX as u64 {
            Some(now)
        } else {
            TscClock::after(now, ahead)
        };
    }

    // ---- register access ---------------------------------------------------

    /// Read a register by its xAPIC offset (16-byte aligned). None for a
    /// register that does not exist or cannot be read.
    fn read_reg(&self, reg: u32, now: Instant) -> Option<u32> {
        let x2 = self.x2apic();
        Some(match reg {
            REG_ID => {
                if x2 {
                    self.id
                } else {
                    self.id << 24
                }
            }
            REG_VERSION => LAPIC_VERSION,
            REG_TPR => self.tpr,
            REG_APR if !x2 => self.apr(),
            REG_PPR => self.ppr(),
            REG_RRD if !x2 => 0,
            REG_LDR => self.ldr,
            REG_DFR if !x2 => self.dfr,
            REG_SVR => self.svr,
            0x100..=0x170 => self.isr.0[((reg - REG_ISR) >> 4) as usize],
            0x180..=0x1f0 => self.tmr.0[((reg - REG_TMR) >> 4) as usize],
            0x200..=0x270 => self.irr.0[((reg - REG_IRR) >> 4) as usize],
            REG_ESR => self.esr,
            REG_ICR_LOW => self.icr_low,
            REG_ICR_HIGH if !x2 => self.icr_high,
            REG_LVT_TIMER..=REG_LVT_ERROR => self.lvt[((reg - REG_LVT_TIMER) >> 4) as usize],
            REG_TIMER_INITIAL => self.timer_initial,
            REG_TIMER_CURRENT => self.current_count(now),
            REG_TIMER_DIVIDE => self.timer_divide,
            REG_EOI if !x2 => 0,
            _ => return None,
        })
    }

    /// Write a register by its xAPIC offset. False for a register that does
    /// not exist or is read-only (x2APIC: #GP).
    fn write_reg(&mut self, reg: u32, val: u32, now: Instant, out: &mut Outbox) -> bool {
        let x2 = self.x2apic();
        match reg {
            REG_ID if !x2 => self.id = val >> 24,
            REG_TPR => self.tpr = val & 0xff,
            REG_EOI => {
                if x2 && val != 0 {
                    return false;
                }
                self.eoi(out);
            }
            REG_LDR if !x2 => self.ldr = val & 0xff00_0000,
            REG_DFR if !x2 => self.dfr = val | 0x0fff_ffff,
            REG_SVR => {
                self.svr = val & 0x3ff;
                if !self.sw_enabled() {
                    for l in self.lvt.iter_mut() {
                        *l |= LVT_MASKED;
                    }
                }
            }
            REG_ESR => {
                if x2 && val != 0 {
                    return false;
                }
                self.esr = self.esr_pending;
                self.esr_pending = 0;
            }
            REG_ICR_LOW => {
                self.icr_low = val & !(1 << 12);
                self.send_ipi(out);
            }
            REG_ICR_HIGH if !x2 => self.icr_high = val & 0xff00_0000,
            REG_LVT_TIMER..=REG_LVT_ERROR => {
                let idx = ((reg - REG_LVT_TIMER) >> 4) as usize;
                let mut v = val & LVT_WRITABLE[idx];
                if !self.sw_enabled() {
                    v |= LVT_MASKED;
                }
                if idx == LVT_TIMER {
                    if v & TIMER_MODE_MASK == TIMER_MODE_MASK {
                        // Reserved mode 3: keep the current mode.
                        v = (v & !TIMER_MODE_MASK) | self.timer_mode();
                    }
                    if v & TIMER_MODE_MASK != self.timer_mode() {
                        self.timer_next = None;
                        self.tsc_deadline = 0;
                        self.timer_initial = 0;
                    }
                }
                self.lvt[idx] = v;
            }
            REG_TIMER_INITIAL => {
                if self.timer_mode() != TIMER_TSC_DEADLINE {
                    self.timer_initial = val;
                    self.start_timer(now, u64::from(val));
                }
            }
            REG_TIMER_DIVIDE => {
                let current = self.current_count(now);
                self.timer_divide = val & 0xb;
                if self.timer_next.is_some() && self.timer_mode() != TIMER_TSC_DEADLINE {
                    // Keep counting from the current count at the new rate.
                    if self.timer_mode() == TIMER_PERIODIC {
                        self.timer_period = self
                            .count_duration(u64::from(self.timer_initial))
                            .max(Duration::from_nanos(MIN_PERIODIC_NS));
                    }
                    self.timer_next = now.checked_add(self.count_duration(u64::from(current)));
                }
            }
            REG_SELF_IPI if x2 => {
                self.icr_low = val & 0xff;
                self.icr_high = 0;
                let vector = val as u8;
                if vector < 16 {
                    self.error(ESR_SEND_ILLEGAL_VECTOR);
                } else {
                    out.messages.push(Message {
                        vector,
                        mode: DeliveryMode::Fixed,
                        dest: Destination::OnlySelf(self.id),
                        level: false,
                    });
                }
            }
            // Read-only or absent registers: writes ignored in xAPIC mode.
            _ => return !x2 && reg < 0x400,
        }
        true
    }

    fn mmio_offset(&self, addr: u64) -> Option<u64> {
        if !self.hw_enabled() || self.x2apic() {
            return None;
        }
        let base = self.apic_base & APIC_BASE_ADDR;
        addr.checked_sub(base).filter(|&off| off < 0x1000)
    }

    /// xAPIC MMIO read at physical `addr`. False if the address is not in
    /// this APIC's window (or the window is off: disabled or x2APIC mode).
    pub fn mmio_read(&self, addr: u64, data: &mut [u8], now: Instant) -> bool {
        let Some(off) = self.mmio_offset(addr) else {
            return false;
        };
        let reg = (off & !0xf) as u32;
        let value = self.read_reg(reg, now).unwrap_or(0);
        read_reg_bytes(value, (off & 0xf) as usize, data);
        true
    }

    /// xAPIC MMIO write. Only aligned 32-bit writes take effect (others are
    /// ignored, as on hardware where they are undefined).
    pub fn mmio_write(&mut self, addr: u64, data: &[u8], now: Instant, out: &mut Outbox) -> bool {
        let Some(off) = self.mmio_offset(addr) else {
            return false;
        };
        if off & 0xf != 0 || data.len() != 4 {
            return true;
        }
        let val = u32::from_le_bytes([data[0], data[1], data[2], data[3]]);
        let reg = off as u32;
        if !self.write_reg(reg, val, now, out) {
            self.error(ESR_ILLEGAL_REGISTER);
        }
        true
    }

    /// RDMSR of IA32_APIC_BASE, IA32_TSC_DEADLINE or an x2APIC register.
    /// None: not an APIC MSR or not valid now (#GP).
    pub fn rdmsr(&self, msr: u32, now: Instant) -> Option<u64> {
        match msr {
            MSR_APIC_BASE => Some(self.apic_base),
            MSR_TSC_DEADLINE => Some(if self.timer_mode() == TIMER_TSC_DEADLINE {
                self.tsc_deadline
            } else {
                0
            }),
            MSR_X2APIC_FIRST..=MSR_X2APIC_LAST if self.x2apic() => {
                let reg = (msr - MSR_X2APIC_FIRST) << 4;
                match reg {
                    REG_ICR_LOW => Some(u64::from(self.icr_low) | (u64::from(self.icr_high) << 32)),
                    REG_EOI | REG_SELF_IPI => None,
                    _ => self.read_reg(reg, now).map(u64::from),
                }
            }
            _ => None,
        }
    }

    /// WRMSR of an APIC MSR; `MsrResult::Fault` means #GP. Returns None if
    /// the MSR is not the APIC's.
    pub fn wrmsr(
        &mut self,
        msr: u32,
        value: u64,
        now: Instant,
        out: &mut Outbox,
    ) -> Option<MsrResult> {
        let ok = |b: bool| Some(if b { MsrResult::Ok } else { MsrResult::Fault });
        match msr {
            MSR_APIC_BASE => ok(self.write_apic_base(value)),
            MSR_TSC_DEADLINE => {
                if self.timer_mode() == TIMER_TSC_DEADLINE {
                    self.arm_tsc_deadline(now, value);
                }
                ok(true)
            }
            MSR_X2APIC_FIRST..=MSR_X2APIC_LAST => {
                if !self.x2apic() {
                    return ok(false);
                }
                let reg = (msr - MSR_X2APIC_FIRST) << 4;
                if reg == REG_ICR_LOW {
                    self.icr_high = (value >> 32) as u32;
                    self.icr_low = (value as u32) & !(1 << 12);
                    self.send_ipi(out);
                    return ok(true);
                }
                if value >> 32 != 0 {
                    return ok(false);
                }
                ok(self.write_reg(reg, value as u32, now, out))
            }
            _ => None,
        }
    }

    fn write_apic_base(&mut self, value: u64) -> bool {
        if value & !(APIC_BASE_ADDR | APIC_BASE_BSP | APIC_BASE_EXTD | APIC_BASE_ENABLE) != 0 {
            return false;
        }
        let en = value & APIC_BASE_ENABLE != 0;
        let extd = value & APIC_BASE_EXTD != 0;
        let was_en = self.hw_enabled();
        let was_x2 = self.x2apic();
        // Invalid: EXTD without EN; x2APIC -> xAPIC; disabled -> x2APIC.
        if (extd && !en) || (was_x2 && en && !extd) || (!was_en && extd) {
            return false;
        }
        if was_en && !en {
            // Globally disabling loses the APIC's state.
            let offset = self.tsc_offset;
            *self = Lapic::new(self.id, false, self.tsc);
            self.tsc_offset = offset;
        }
        self.apic_base = value;
        if extd && !was_x2 {
            self.ldr = self.x2apic_ldr();
        }
        true
    }
}

mod state;

#[cfg(test)]
mod tests {
    use super::*;

    fn lapic(id: u32) -> (Lapic, Instant) {
        let t0 = Instant::now();
        (Lapic::new(id, id == 0, TscClock::new(t0)), t0)
    }

    fn w(l: &mut Lapic, reg: u32, val: u32, now: Instant) -> Outbox {
        let mut out = Outbox::default();
        assert!(l.mmio_write(
            LAPIC_DEFAULT_BASE + u64::from(reg),
            &val.to_le_bytes(),
            now,
            &mut out
        ));
        out
    }

    fn r(l: &Lapic, reg: u32, now: Instant) -> u32 {
        let mut d = [0u8; 4];
        assert!(l.mmio_read(LAPIC_DEFAULT_BASE + u64::from(reg), &mut d, now));
        u32::from_le_bytes(d)
    }

    /// Host time of `count` timer ticks at divisor `div`.
    fn ticks(count: u64, div: u64) -> Duration {
        Duration::from_nanos(count * div * 1_000_000_000 / APIC_BUS_HZ)
    }

    fn enable(l: &mut Lapic, now: Instant) {
        w(l, REG_SVR, 0x1ff, now);
    }

    #[test]
    fn reset_values() {
        let (l, t0) = lapic(0);
        assert_eq!(r(&l, REG_ID, t0), 0);
        assert_eq!(r(&l, REG_VERSION, t0), 0x0005_0014);
        assert_eq!(r(&l, REG_SVR, t0), 0xff);
        assert_eq!(r(&l, REG_DFR, t0), 0xffff_ffff);
        assert_eq!(r(&l, 0x350, t0), 0x700, "BSP LINT0 ExtINT virtual wire");
        assert_eq!(r(&l, 0x360, t0), LVT_MASKED);
        assert_eq!(l.rdmsr(MSR_APIC_BASE, t0), Some(0xfee0_0900));
        assert!(l.accepts_pic());
        let (ap, _) = lapic(3);
        assert_eq!(r(&ap, REG_ID, t0), 0x0300_0000);
        assert_eq!(ap.rdmsr(MSR_APIC_BASE, t0), Some(0xfee0_0800));
        assert!(!ap.accepts_pic());
    }

    #[test]
    fn fixed_interrupt_priority_tpr_ppr_and_eoi() {
        let (mut l, t0) = lapic(0);
        enable(&mut l, t0);
        assert!(l.accept_fixed(0x31, false));
        assert!(l.accept_fixed(0x52, false));
        assert_eq!(l.deliverable(), Some(0x52));
        assert_eq!(l.acknowledge(), Some(0x52));
        assert_eq!(r(&l, REG_PPR, t0), 0x50);
        assert_eq!(l.deliverable(), None, "0x31 below PPR");
        assert!(l.accept_fixed(0x61, false));
        assert_eq!(l.acknowledge(), Some(0x61), "higher class nests");
        let out = w(&mut l, REG_EOI, 0, t0);
        assert!(out.eois.is_empty());
        assert!(l.isr_has(0x52) && !l.isr_has(0x61));
        w(&mut l, REG_EOI, 0, t0);
        assert_eq!(l.deliverable(), Some(0x31));
        // TPR blocks the class.
        w(&mut l, REG_TPR, 0x30, t0);
        assert_eq!(r(&l, REG_PPR, t0), 0x30);
        assert_eq!(l.deliverable(), None);
        l.set_tpr(0x20);
        assert_eq!(l.acknowledge(), Some(0x31));
        // IRR/ISR visible through their 256-bit register banks.
        assert_eq!(r(&l, REG_ISR + 0x10, t0), 1 << (0x31 - 32));
    }

    #[test]
    fn level_interrupt_eoi_is_broadcast() {
        let (mut l, t0) = lapic(0);
        enable(&mut l, t0);
        l.accept_fixed(0x41, true);
        assert_eq!(r(&l, REG_TMR + 0x20, t0), 1 << 1);
        l.acknowledge();
        let out = w(&mut l, REG_EOI, 0, t0);
        assert_eq!(out.eois, vec![0x41]);
    }

    #[test]
    fn software_disabled_drops_fixed_and_masks_lvts() {
        let (mut l, t0) = lapic(1);
        assert!(!l.accept_fixed(0x40, false));
        w(&mut l, 0x350, 0x700, t0);
        assert_eq!(r(&l, 0x350, t0), 0x10700, "mask sticks while disabled");
        enable(&mut l, t0);
        w(&mut l, 0x350, 0x700, t0);
        assert_eq!(r(&l, 0x350, t0), 0x700);
        assert!(l.accepts_pic());
        w(&mut l, REG_SVR, 0xff, t0);
        assert_eq!(r(&l, 0x350, t0), 0x10700);
    }

    #[test]
    fn illegal_vector_sets_esr_and_error_lvt() {
        let (mut l, t0) = lapic(0);
        enable(&mut l, t0);
        w(&mut l, REG_LVT_ERROR, 0xfe, t0);
        assert!(!l.accept_fixed(0x05, false));
        assert_eq!(r(&l, REG_ESR, t0), 0, "ESR updates on write");
        w(&mut l, REG_ESR, 0, t0);
        assert_eq!(r(&l, REG_ESR, t0), ESR_RECEIVE_ILLEGAL_VECTOR);
        assert_eq!(l.deliverable(), Some(0xfe));
        w(&mut l, REG_ESR, 0, t0);
        assert_eq!(r(&l, REG_ESR, t0), 0);
        // Sending an illegal vector.
        let out = w(&mut l, REG_ICR_LOW, 0x0000_4003, t0);
        assert!(out.messages.is_empty());
        w(&mut l, REG_ESR, 0, t0);
        assert_eq!(r(&l, REG_ESR, t0), ESR_SEND_ILLEGAL_VECTOR);
    }

    #[test]
    fn icr_builds_ipis() {
        let (mut l, t0) = lapic(0);
        enable(&mut l, t0);
        w(&mut l, REG_ICR_HIGH, 0x0200_0000, t0);
        let out = w(&mut l, REG_ICR_LOW, 0x0000_4040, t0);
        assert_eq!(
            out.messages,
            vec![Message {
                vector: 0x40,
                mode: DeliveryMode::Fixed,
                dest: Destination::Field {
                    dest: 2,
                    logical: false,
                    wide: false
                },
                level: false
            }]
        );
        assert_eq!(
            r(&l, REG_ICR_LOW, t0) & (1 << 12),
            0,
            "delivery status idle"
        );
        // INIT, SIPI to all but self.
        let out = w(&mut l, REG_ICR_LOW, 0x000c_4500, t0);
        assert_eq!(out.messages[0].mode, DeliveryMode::Init);
        assert_eq!(out.messages[0].dest, Destination::AllBut(0));
        let out = w(&mut l, REG_ICR_LOW, 0x000c_4608, t0);
        assert_eq!(out.messages[0].mode, DeliveryMode::StartUp);
        assert_eq!(out.messages[0].vector, 0x08);
        // INIT level de-assert sends nothing.
        let out = w(&mut l, REG_ICR_LOW, 0x000c_8500, t0);
        assert!(out.messages.is_empty());
        // Self shorthand.
        let out = w(&mut l, REG_ICR_LOW, 0x0004_0077, t0);
        assert_eq!(out.messages[0].dest, Destination::OnlySelf(0));
    }

    #[test]
    fn logical_destination_flat_and_cluster() {
        let (mut l, t0) = lapic(1);
        enable(&mut l, t0);
        w(&mut l, REG_LDR, 0x0200_0000, t0);
        let f = |dest| Destination::Field {
            dest,
            logical: true,
            wide: false,
        };
        assert!(l.matches(&f(0x02)));
        assert!(l.matches(&f(0x03)));
        assert!(!l.matches(&f(0x01)));
        assert!(l.matches(&f(0xff)));
        w(&mut l, REG_DFR, 0x0fff_ffff, t0);
        assert_eq!(r(&l, REG_DFR, t0), 0x0fff_ffff);
        w(&mut l, REG_LDR, 0x3400_0000, t0); // cluster 3, member bit 2
        assert!(l.matches(&f(0x34)));
        assert!(l.matches(&f(0x36)));
        assert!(!l.matches(&f(0x24)));
        assert!(!l.matches(&f(0x31)));
        let p = |dest| Destination::Field {
            dest,
            logical: false,
            wide: false,
        };
        assert!(l.matches(&p(1)));
        assert!(!l.matches(&p(2)));
        assert!(l.matches(&p(0xff)));
    }

    #[test]
    fn one_shot_timer_expires_at_deadline() {
        let (mut l, t0) = lapic(0);
        enable(&mut l, t0);
        w(&mut l, REG_TIMER_DIVIDE, 0x3, t0); // divide by 16
        w(&mut l, REG_LVT_TIMER, 0xec, t0);
        w(&mut l, REG_TIMER_INITIAL, 1000, t0);
        let end = t0 + ticks(1000, 16);
        assert_eq!(l.next_deadline(), Some(end));
        assert_eq!(r(&l, REG_TIMER_CURRENT, t0 + ticks(500, 16)), 500);
        assert_eq!(r(&l, REG_TIMER_INITIAL, t0), 1000);
        assert!(!l.run_timer(end - Duration::from_nanos(1)));
        assert!(l.run_timer(end));
        assert_eq!(l.deliverable(), Some(0xec));
        assert_eq!(r(&l, REG_TIMER_CURRENT, end + Duration::from_nanos(1)), 0);
        assert!(!l.run_timer(t0 + Duration::from_secs(1)));
        assert_eq!(l.next_deadline(), None);
    }

    #[test]
    fn periodic_timer_reloads_and_skips_missed_periods() {
        let (mut l, t0) = lapic(0);
        enable(&mut l, t0);
        w(&mut l, REG_TIMER_DIVIDE, 0xb, t0); // divide by 1
        w(&mut l, REG_LVT_TIMER, 0x2_00ef, t0);
        w(&mut l, REG_TIMER_INITIAL, (APIC_BUS_HZ / 1000) as u32, t0); // 1 ms
        let ms = |n: u64| t0 + Duration::from_millis(n);
        assert!(l.run_timer(ms(1)));
        assert_eq!(l.next_deadline(), Some(ms(2)));
        assert_eq!(
            r(&l, REG_TIMER_CURRENT, ms(1) + Duration::from_micros(250)),
            (APIC_BUS_HZ / 1000 * 3 / 4) as u32
        );
        l.acknowledge();
        // 10 ms late: one interrupt, next deadline on the period grid.
        assert!(l.run_timer(ms(12) + Duration::from_micros(1)));
        assert_eq!(l.next_deadline(), Some(ms(13)));
        assert!(!l.run_timer(ms(12) + Duration::from_micros(2)));
        // Initial count 0 stops it.
        w(&mut l, REG_TIMER_INITIAL, 0, ms(12));
        assert_eq!(l.next_deadline(), None);
    }

    #[test]
    fn periodic_timer_has_minimum_period() {
        let (mut l, t0) = lapic(0);
        enable(&mut l, t0);
        w(&mut l, REG_TIMER_DIVIDE, 0xb, t0);
        w(&mut l, REG_LVT_TIMER, 0x2_00ef, t0);
        w(&mut l, REG_TIMER_INITIAL, 1, t0);
        assert_eq!(
            l.next_deadline(),
            Some(t0 + Duration::from_nanos(MIN_PERIODIC_NS))
        );
    }

    #[test]
    fn masked_timer_counts_without_interrupt() {
        let (mut l, t0) = lapic(0);
        enable(&mut l, t0);
        w(&mut l, REG_TIMER_DIVIDE, 0xb, t0);
        w(&mut l, REG_LVT_TIMER, 0x1_00ec, t0);
        w(&mut l, REG_TIMER_INITIAL, 100, t0);
        assert!(l.run_timer(t0 + ticks(100, 1)));
        assert_eq!(l.deliverable(), None);
    }

    #[test]
    fn tsc_deadline_timer() {
        let (mut l, t0) = lapic(0);
        enable(&mut l, t0);
        let mut out = Outbox::default();
        // Ignored outside TSC-deadline mode.
        l.wrmsr(MSR_TSC_DEADLINE, 5000, t0, &mut out);
        assert_eq!(l.next_deadline(), None);
        w(&mut l, REG_LVT_TIMER, 0x4_00e0, t0);
        let now = t0 + Duration::from_micros(10);
        let tsc = l.guest_tsc(now);
        assert_eq!(tsc, 10_000);
        l.wrmsr(MSR_TSC_DEADLINE, tsc + 2_000, now, &mut out);
        assert_eq!(l.rdmsr(MSR_TSC_DEADLINE, now), Some(tsc + 2_000));
        assert_eq!(l.next_deadline(), Some(now + Duration::from_nanos(2_000)));
        // Initial count writes are ignored in this mode.
        w(&mut l, REG_TIMER_INITIAL, 5, now);
        assert_eq!(r(&l, REG_TIMER_INITIAL, now), 0);
        assert!(!l.run_timer(now + Duration::from_nanos(1_999)));
        assert!(l.run_timer(now + Duration::from_nanos(2_000)));
        assert_eq!(l.deliverable(), Some(0xe0));
        assert_eq!(
            l.rdmsr(MSR_TSC_DEADLINE, now),
            Some(0),
            "disarmed after expiry"
        );
        // A deadline in the past fires at once; 0 disarms.
        l.wrmsr(MSR_TSC_DEADLINE, 1, now, &mut out);
        assert!(l.run_timer(now));
        l.wrmsr(MSR_TSC_DEADLINE, tsc + 1_000_000, now, &mut out);
        l.wrmsr(MSR_TSC_DEADLINE, 0, now, &mut out);
        assert_eq!(l.next_deadline(), None);
        // Leaving TSC-deadline mode disarms.
        l.wrmsr(MSR_TSC_DEADLINE, tsc + 1_000_000, now, &mut out);
        w(&mut l, REG_LVT_TIMER, 0x0_00e0, now);
        assert_eq!(l.next_deadline(), None);
    }

    #[test]
    fn tsc_write_moves_guest_tsc_and_deadline() {
        let (mut l, t0) = lapic(0);
        let now = t0 + Duration::from_micros(5);
        l.set_guest_tsc(now, 1_000_000);
        assert_eq!(l.guest_tsc(now), 1_000_000);
        assert_eq!(l.guest_tsc(now + Duration::from_nanos(7)), 1_000_007);
    }

    #[test]
    fn x2apic_mode_msrs() {
        let (mut l, t0) = lapic(0x21);
        let mut out = Outbox::default();
        assert_eq!(l.rdmsr(0x802, t0), None, "x2APIC MSRs #GP in xAPIC mode");
        // Disabled -> x2APIC directly is invalid; xAPIC -> x2APIC fine.
        assert_eq!(
            l.wrmsr(MSR_APIC_BASE, 0xfee0_0c00, t0, &mut out),
            Some(MsrResult::Ok)
        );
        assert_eq!(l.rdmsr(0x802, t0), Some(0x21));
        assert_eq!(l.rdmsr(0x80d, t0), Some((2 << 16) | (1 << 1)));
        assert_eq!(l.rdmsr(0x80e, t0), None, "no DFR in x2APIC mode");
        assert_eq!(l.wrmsr(0x802, 5, t0, &mut out), Some(MsrResult::Fault));
        assert_eq!(l.wrmsr(0x80f, 0x1ff, t0, &mut out), Some(MsrResult::Ok));
        // ICR: 32-bit destination.
        assert_eq!(
            l.wrmsr(0x830, (7u64 << 32) | 0x4041, t0, &mut out),
            Some(MsrResult::Ok)
        );
        assert_eq!(
            out.messages[0].dest,
            Destination::Field {
                dest: 7,
                logical: false,
                wide: true
            }
        );
        assert_eq!(l.rdmsr(0x830, t0), Some((7u64 << 32) | 0x4041));
        // SELF IPI.
        l.wrmsr(0x83f, 0x55, t0, &mut out);
        assert_eq!(out.messages[1].dest, Destination::OnlySelf(0x21));
        assert_eq!(l.rdmsr(0x83f, t0), None);
        assert_eq!(l.wrmsr(0x80b, 1, t0, &mut out), Some(MsrResult::Fault));
        assert_eq!(
            l.wrmsr(0x808, 1 << 32, t0, &mut out),
            Some(MsrResult::Fault)
        );
        // MMIO window is off in x2APIC mode.
        let mut d = [0u8; 4];
        assert!(!l.mmio_read(LAPIC_DEFAULT_BASE + 0x20, &mut d, t0));
        // x2APIC -> xAPIC invalid; -> disabled valid.
        assert_eq!(
            l.wrmsr(MSR_APIC_BASE, 0xfee0_0800, t0, &mut out),
            Some(MsrResult::Fault)
        );
        assert_eq!(
            l.wrmsr(MSR_APIC_BASE, 0xfee0_0000, t0, &mut out),
            Some(MsrResult::Ok)
        );
        assert!(l.accepts_pic());
        assert_eq!(
            l.wrmsr(MSR_APIC_BASE, 0xfee0_0c00, t0, &mut out),
            Some(MsrResult::Fault)
        );
        // Reserved bits.
        assert_eq!(
            l.wrmsr(MSR_APIC_BASE, 0xfee0_0801, t0, &mut out),
            Some(MsrResult::Fault)
        );
        assert_eq!(l.wrmsr(0x10, 0, t0, &mut out), None);
    }

    #[test]
    fn x2apic_logical_cluster_match() {
        let (mut l, t0) = lapic(0x13);
        let mut out = Outbox::default();
        l.wrmsr(MSR_APIC_BASE, 0xfee0_0c00, t0, &mut out);
        let f = |dest| Destination::Field {
            dest,
            logical: true,
            wide: true,
        };
        assert!(l.matches(&f((1 << 16) | (1 << 3))));
        assert!(!l.matches(&f((1 << 16) | (1 << 2))));
        assert!(!l.matches(&f(1 << 3)));
        assert!(l.matches(&f(0xffff_ffff)));
    }

    #[test]
    fn relocated_base_and_odd_accesses() {
        let (mut l, t0) = lapic(0);
        let mut out = Outbox::default();
        l.wrmsr(MSR_APIC_BASE, 0xfed0_0900, t0, &mut out);
        let mut d = [0u8; 4];
        assert!(!l.mmio_read(LAPIC_DEFAULT_BASE + 0x30, &mut d, t0));
        assert!(l.mmio_read(0xfed0_0030, &mut d, t0));
        assert_eq!(u32::from_le_bytes(d), LAPIC_VERSION);
        // Sub-dword, misaligned and wide accesses never panic.
        for off in [0u64, 1, 2, 3, 0x31, 0x3ff, 0x400, 0xff0, 0xfff] {
            for len in [0usize, 1, 2, 3, 4, 8] {
                let mut d = vec![0xffu8; len];
                assert!(l.mmio_read(0xfed0_0000 + off, &mut d, t0));
                assert!(l.mmio_write(0xfed0_0000 + off, &d, t0, &mut out));
            }
        }
        let mut b = [0u8; 1];
        l.mmio_read(0xfed0_0032, &mut b, t0);
        assert_eq!(b[0], 0x05);
        assert!(!l.mmio_read(0xfed0_1000, &mut b, t0));
        assert!(!l.mmio_read(0, &mut b, t0));
    }

    #[test]
    fn init_reset_keeps_id_and_base() {
        let (mut l, t0) = lapic(2);
        enable(&mut l, t0);
        l.accept_fixed(0x40, false);
        l.init_reset();
        assert_eq!(l.id(), 2);
        assert!(l.hw_enabled());
        assert!(!l.sw_enabled());
        assert!(!l.irr_has(0x40));
    }
}
