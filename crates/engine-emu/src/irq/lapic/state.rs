//! The local APIC to and from the engine-neutral `LapicState`. Knows the
//! Lapic's fields, nothing of how a snapshot is stored.

use std::time::{Duration, Instant};

use kite_hypervisor::state::lapic::{LVT_CMCI, LVT_ENTRIES};
use kite_hypervisor::state::LapicState;

use super::*;

/// The IA32_APIC_BASE bits a restore accepts.
const APIC_BASE_VALID: u64 = APIC_BASE_ADDR | APIC_BASE_BSP | APIC_BASE_EXTD | APIC_BASE_ENABLE;

impl Lapic {
    /// The neutral state at `now`. Run `run_timer(now)` first so an expiry
    /// that is due is in the IRR rather than lost.
    pub fn save(&self, now: Instant) -> LapicState {
        let mut lvt = [LVT_MASKED; LVT_ENTRIES];
        lvt[..LVT_COUNT].copy_from_slice(&self.lvt);
        lvt[LVT_CMCI] = LVT_MASKED;
        LapicState {
            id: self.id,
            tpr: self.tpr,
            ldr: self.ldr,
            dfr: self.dfr,
            svr: self.svr,
            isr: self.isr.0,
            tmr: self.tmr.0,
            irr: self.irr.0,
            esr: self.esr,
            esr_pending: self.esr_pending,
            icr_low: self.icr_low,
            icr_high: self.icr_high,
            lvt,
            timer_initial: self.timer_initial,
            timer_current: self.current_count(now),
            timer_divide: self.timer_divide,
            tsc_deadline: if self.timer_mode() == TIMER_TSC_DEADLINE {
                self.tsc_deadline
            } else {
                0
            },
        }
    }

    /// Replace this APIC's state with `s` at `now`: IA32_APIC_BASE
    /// `apic_base`, the guest TSC reading `guest_tsc` (so a TSC deadline
    /// keeps its distance), the timer running on from its current count.
    /// Checks everything before changing anything.
    pub fn restore(
        &mut self,
        s: &LapicState,
        apic_base: u64,
        guest_tsc: u64,
        now: Instant,
    ) -> Result<(), String> {
        if apic_base & !APIC_BASE_VALID != 0
            || (apic_base & APIC_BASE_EXTD != 0 && apic_base & APIC_BASE_ENABLE == 0)
        {
            return Err(format!("IA32_APIC_BASE {apic_base:#x} is not valid"));
        }
        if s.id > 0xff {
            return Err(format!("APIC id {:#x} is out of range (0-255)", s.id));
        }
        let mut l = Lapic::new(s.id, false, self.tsc);
        l.apic_base = apic_base;
        l.tpr = s.tpr & 0xff;
        l.ldr = s.ldr;
        l.dfr = s.dfr | 0x0fff_ffff;
        l.svr = s.svr & 0x3ff;
        l.isr = Bits256(s.isr);
        l.tmr = Bits256(s.tmr);
        l.irr = Bits256(s.irr);
        l.esr = s.esr;
        l.esr_pending = s.esr_pending;
        l.icr_low = s.icr_low & !(1 << 12);
        l.icr_high = s.icr_high;
        for (i, v) in l.lvt.iter_mut().enumerate() {
            *v = s.lvt[i] & LVT_WRITABLE[i];
        }
        if l.timer_mode() == TIMER_MODE_MASK {
            // Reserved timer mode 3: one-shot.
            l.lvt[LVT_TIMER] &= !TIMER_MODE_MASK;
        }
        l.timer_initial = s.timer_initial;
        l.timer_divide = s.timer_divide & 0xb;
        l.set_guest_tsc(now, guest_tsc);
        match l.timer_mode() {
            TIMER_TSC_DEADLINE => l.arm_tsc_deadline(now, s.tsc_deadline),
            mode => {
                let current = s.timer_current.min(s.timer_initial);
                if current != 0 {
                    let mut period = l.count_duration(u64::from(l.timer_initial));
                    if mode == TIMER_PERIODIC {
                        period = period.max(Duration::from_nanos(MIN_PERIODIC_NS));
                    }
                    l.timer_period = period;
                    l.timer_next = now.checked_add(l.count_duration(u64::from(current)));
                }
            }
        }
        *self = l;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lapic_round_trips_through_the_neutral_state() {
        let t0 = Instant::now();
        let clock = TscClock::new(t0);
        let mut a = Lapic::new(0, true, clock);
        let mut out = Outbox::default();
        let wr = |l: &mut Lapic, reg: u32, v: u32, out: &mut Outbox| {
            assert!(l.mmio_write(
                LAPIC_DEFAULT_BASE + u64::from(reg),
                &v.to_le_bytes(),
                t0,
                out
            ));
        };
        wr(&mut a, REG_SVR, 0x1ff, &mut out);
        wr(&mut a, REG_TPR, 0x20, &mut out);
        wr(&mut a, REG_LDR, 0x0100_0000, &mut out);
        wr(&mut a, REG_TIMER_DIVIDE, 0xb, &mut out);
        wr(&mut a, REG_LVT_TIMER, 0x2_00ec, &mut out); // periodic, vector 0xec
        wr(&mut a, REG_TIMER_INITIAL, 2_500_000, &mut out); // 100 ms at 25 MHz
        assert!(a.accept_fixed(0x41, true));
        assert_eq!(a.acknowledge(), Some(0x41));
        assert!(a.accept_fixed(0x51, false));
        let later = t0 + Duration::from_millis(30);
        let s = a.save(later);
        assert_eq!(s.svr, 0x1ff);
        assert_eq!(s.tpr, 0x20);
        assert_eq!(s.lvt[LVT_TIMER], 0x2_00ec);
        assert!(s.isr[2] & 2 != 0 && s.tmr[2] & 2 != 0 && s.irr[2] & (1 << 17) != 0);
        // 70 ms left of 100 ms.
        assert!(
            (1_749_000..=1_750_000).contains(&s.timer_current),
            "{}",
            s.timer_current
        );

        // Restore much later on another clock: the count goes on from 70 ms.
        let t1 = t0 + Duration::from_secs(5);
        let mut b = Lapic::new(0, true, TscClock::new(t1));
        b.restore(&s, a.apic_base(), 12345, t1).unwrap();
        assert_eq!(b.save(t1), s);
        assert_eq!(b.guest_tsc(t1), 12345);
        let next = b.next_deadline().unwrap();
        assert_eq!(next.duration_since(t1).as_millis(), 70);
        assert!(!b.run_timer(t1 + Duration::from_millis(69)));
        assert!(b.run_timer(t1 + Duration::from_millis(71)));
        assert!(b.irr_has(0xec));
    }

    #[test]
    fn tsc_deadline_keeps_its_distance_and_bad_bases_are_refused() {
        let t0 = Instant::now();
        let mut a = Lapic::new(1, false, TscClock::new(t0));
        let mut out = Outbox::default();
        assert!(a.mmio_write(
            LAPIC_DEFAULT_BASE + 0xf0,
            &0x1ffu32.to_le_bytes(),
            t0,
            &mut out
        ));
        assert!(a.mmio_write(
            LAPIC_DEFAULT_BASE + 0x320,
            &0x4_0030u32.to_le_bytes(),
            t0,
            &mut out
        ));
        let tsc = a.guest_tsc(t0);
        a.wrmsr(MSR_TSC_DEADLINE, tsc + 1_000_000, t0, &mut out);
        let s = a.save(t0);
        assert_eq!(s.tsc_deadline, tsc + 1_000_000);
        let t1 = t0 + Duration::from_secs(1);
        let mut b = Lapic::new(1, false, TscClock::new(t1));
        b.restore(&s, a.apic_base(), tsc, t1).unwrap();
        // 1 ms of TSC (1 GHz) ahead, as when saved.
        assert_eq!(
            b.next_deadline().unwrap().duration_since(t1),
            Duration::from_millis(1)
        );

        let before = b.save(t1);
        assert!(b.restore(&s, 1 << 63, tsc, t1).is_err());
        assert!(b.restore(&s, APIC_BASE_EXTD, tsc, t1).is_err());
        let bad_id = LapicState { id: 0x100, ..s };
        assert!(b.restore(&bad_id, a.apic_base(), tsc, t1).is_err());
        assert_eq!(b.save(t1), before, "a refused restore changes nothing");
    }
}
