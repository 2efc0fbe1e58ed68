//! The saved local APIC: its architectural registers (xAPIC layout) and the
//! timer's progress. The base (IA32_APIC_BASE) travels in `Sregs::apic_base`.
//! Knows nothing of how an engine models the APIC.

use super::codec::{DecodeResult, Reader, Writer};

/// LVT entries in [`LapicState::lvt`].
pub const LVT_TIMER: usize = 0;
pub const LVT_THERMAL: usize = 1;
pub const LVT_PERF: usize = 2;
pub const LVT_LINT0: usize = 3;
pub const LVT_LINT1: usize = 4;
pub const LVT_ERROR: usize = 5;
pub const LVT_CMCI: usize = 6;
pub const LVT_ENTRIES: usize = 7;

/// A local APIC's state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LapicState {
    /// The APIC id (full 32 bits; xAPIC uses bits 7:0).
    pub id: u32,
    pub tpr: u32,
    /// Logical destination register as read (xAPIC: id in bits 31:24).
    pub ldr: u32,
    pub dfr: u32,
    /// Spurious-interrupt vector register.
    pub svr: u32,
    /// In-service, trigger-mode and request registers, 32 vectors a word.
    pub isr: [u32; 8],
    pub tmr: [u32; 8],
    pub irr: [u32; 8],
    /// The error status register as the guest last read it.
    pub esr: u32,
    /// Errors seen since the last ESR write (shown at the next write).
    pub esr_pending: u32,
    pub icr_low: u32,
    pub icr_high: u32,
    /// Timer, thermal, perf, LINT0, LINT1, error, CMCI (see `LVT_*`).
    pub lvt: [u32; LVT_ENTRIES],
    pub timer_initial: u32,
    /// The timer's current count at save time (0: not running). Counts at
    /// the saving engine's APIC timer rate.
    pub timer_current: u32,
    pub timer_divide: u32,
    /// IA32_TSC_DEADLINE (0: disarmed), in guest TSC ticks.
    pub tsc_deadline: u64,
}

impl LapicState {
    pub(crate) fn encode(&self, w: &mut Writer) {
        for v in [self.id, self.tpr, self.ldr, self.dfr, self.svr] {
            w.u32(v);
        }
        for bank in [&self.isr, &self.tmr, &self.irr] {
            for &v in bank.iter() {
                w.u32(v);
            }
        }
        for v in [self.esr, self.esr_pending, self.icr_low, self.icr_high] {
            w.u32(v);
        }
        for &v in &self.lvt {
            w.u32(v);
        }
        w.u32(self.timer_initial);
        w.u32(self.timer_current);
        w.u32(self.timer_divide);
        w.u64(self.tsc_deadline);
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> DecodeResult<LapicState> {
        let mut s = LapicState {
            id: r.u32("lapic id")?,
            tpr: r.u32("lapic tpr")?,
            ldr: r.u32("lapic ldr")?,
            dfr: r.u32("lapic dfr")?,
            svr: r.u32("lapic svr")?,
            ..Default::default()
        };
        for v in s.isr.iter_mut() {
            *v = r.u32("lapic isr")?;
        }
        for v in s.tmr.iter_mut() {
            *v = r.u32("lapic tmr")?;
        }
        for v in s.irr.iter_mut() {
            *v = r.u32("lapic irr")?;
        }
        s.esr = r.u32("lapic esr")?;
        s.esr_pending = r.u32("lapic esr")?;
        s.icr_low = r.u32("lapic icr")?;
        s.icr_high = r.u32("lapic icr")?;
        for v in s.lvt.iter_mut() {
            *v = r.u32("lapic lvt")?;
        }
        s.timer_initial = r.u32("lapic timer")?;
        s.timer_current = r.u32("lapic timer")?;
        s.timer_divide = r.u32("lapic timer")?;
        s.tsc_deadline = r.u64("lapic tsc deadline")?;
        Ok(s)
    }
}
