//! The guest's time-stamp counter as a function of host monotonic time.
//!
//! One [`TscClock`] per VM, shared by every vCPU: the CPU's RDTSC and the
//! local APIC's TSC-deadline timer read the same clock, so a deadline written
//! as "RDTSC + n" expires n TSC ticks later. The TSC runs at [`TSC_HZ`]
//! (1 GHz: one tick per host nanosecond) from 0 at VM creation; each vCPU may
//! add an offset (IA32_TSC writes), kept by its `VcpuIrq`.

use std::time::{Duration, Instant};

/// Guest TSC frequency, to report in CPUID leaf 0x15/0x16.
pub const TSC_HZ: u64 = 1_000_000_000;

/// Local APIC timer input frequency: the core crystal clock reported in
/// CPUID leaf 0x15 ECX (25 MHz; Linux then skips calibrating the APIC timer
/// and programs it from this value). The timer counts down once per
/// (divisor) crystal periods (40 ns).
pub const APIC_BUS_HZ: u64 = 25_000_000;

const NANOS_PER_SEC: u128 = 1_000_000_000;

/// The VM-wide TSC: ticks since `epoch` at [`TSC_HZ`].
#[derive(Debug, Clone, Copy)]
pub struct TscClock {
    epoch: Instant,
}

impl TscClock {
    pub fn new(epoch: Instant) -> Self {
        TscClock { epoch }
    }

    /// TSC value (before any per-vCPU offset) at host time `now`.
    pub fn tsc(&self, now: Instant) -> u64 {
        let ns = now.saturating_duration_since(self.epoch).as_nanos();
        u64::try_from(ns * u128::from(TSC_HZ) / NANOS_PER_SEC).unwrap_or(u64::MAX)
    }

    /// Host time after `now` at which `ticks` more TSC ticks have elapsed
    /// (None if beyond what `Instant` can represent).
    pub fn after(now: Instant, ticks: u64) -> Option<Instant> {
        let ns = (u128::from(ticks) * NANOS_PER_SEC).div_ceil(u128::from(TSC_HZ));
        now.checked_add(Duration::from_nanos(u64::try_from(ns).ok()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tsc_counts_from_epoch_and_deadlines_agree() {
        let t0 = Instant::now();
        let c = TscClock::new(t0);
        assert_eq!(c.tsc(t0), 0);
        let t1 = t0 + Duration::from_millis(3);
        assert_eq!(c.tsc(t1), 3 * TSC_HZ / 1000);
        let d = TscClock::after(t1, 500).unwrap();
        assert_eq!(c.tsc(d), c.tsc(t1) + 500);
        // Before the epoch reads 0, never panics.
        assert_eq!(TscClock::new(t1).tsc(t0), 0);
        // A huge deadline must not panic (it may or may not be representable).
        let _ = TscClock::after(t1, u64::MAX);
    }
}
