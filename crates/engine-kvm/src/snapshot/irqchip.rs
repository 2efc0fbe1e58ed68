//! KVM's irqchip structures to and from the neutral ones: kvm_pic_state <->
//! `PicState`, kvm_ioapic_state <-> `IoapicState`, kvm_pit_state2 <->
//! `PitState`. KVM keeps a PIT counter's progress as the host monotonic
//! time it was loaded (`count_load_time`); the neutral state as PIT ticks
//! since loading, so the conversions take the host's monotonic `now_ns`.

use kite_hypervisor::state::{IoapicState, PicState, PitChannelState, PitState};
use kvm_bindings::{
    kvm_ioapic_state, kvm_pic_state, kvm_pit_channel_state, kvm_pit_state2,
    KVM_PIT_FLAGS_SPEAKER_DATA_ON,
};

/// The 8254's input clock.
const PIT_HZ: u128 = 1_193_182;
const NANOS: u128 = 1_000_000_000;

/// KVM's read/write state machine of a counter (i8254.c).
const RW_STATE_LSB: u8 = 1;
const RW_STATE_MSB: u8 = 2;
const RW_STATE_WORD0: u8 = 3;
const RW_STATE_WORD1: u8 = 4;
/// The mode KVM gives a counter at reset, before any control word.
const KVM_PIT_UNPROGRAMMED: u8 = 0xff;

pub fn pic_from_kvm(k: &kvm_pic_state) -> PicState {
    PicState {
        irr: k.irr,
        isr: k.isr,
        imr: k.imr,
        lines: k.last_irr,
        vector_base: k.irq_base & 0xf8,
        // KVM names the highest-priority IR; the lowest is the one before it.
        lowest_priority: k.priority_add.wrapping_add(7) & 7,
        init_step: k.init_state.min(3),
        needs_icw4: k.init4 != 0,
        single: false,
        level_triggered: false,
        auto_eoi: k.auto_eoi != 0,
        rotate_on_auto_eoi: k.rotate_on_auto_eoi != 0,
        special_mask: k.special_mask != 0,
        special_fully_nested: k.special_fully_nested_mode != 0,
        read_isr: k.read_reg_select != 0,
        poll: k.poll != 0,
        elcr: k.elcr,
        elcr_mask: k.elcr_mask,
    }
}

/// `s` over `base` (what KVM_GET_IRQCHIP gave): the chip's own ELCR mask
/// stays. KVM has no single or LTIM mode (both unsupported there).
pub fn pic_to_kvm(s: &PicState, base: &kvm_pic_state) -> kvm_pic_state {
    kvm_pic_state {
        last_irr: s.lines,
        irr: s.irr,
        imr: s.imr,
        isr: s.isr,
        priority_add: s.lowest_priority.wrapping_add(1) & 7,
        irq_base: s.vector_base & 0xf8,
        read_reg_select: u8::from(s.read_isr),
        poll: u8::from(s.poll),
        special_mask: u8::from(s.special_mask),
        init_state: s.init_step.min(3),
        auto_eoi: u8::from(s.auto_eoi),
        rotate_on_auto_eoi: u8::from(s.rotate_on_auto_eoi),
        special_fully_nested_mode: u8::from(s.special_fully_nested),
        init4: u8::from(s.needs_icw4),
        elcr: s.elcr & base.elcr_mask,
        elcr_mask: base.elcr_mask,
    }
}

pub fn ioapic_from_kvm(k: &kvm_ioapic_state) -> IoapicState {
    let mut s = IoapicState {
        id: (k.id & 0x0f) as u8,
        select: k.ioregsel as u8,
        lines: k.irr & 0x00ff_ffff,
        ..Default::default()
    };
    for (d, e) in s.redir.iter_mut().zip(k.redirtbl.iter()) {
        // SAFETY: `bits` is the whole 64-bit entry; every bit pattern is valid.
        *d = unsafe { e.bits };
    }
    s
}

/// `s` over `base` (what KVM_GET_IRQCHIP gave): the base address stays.
pub fn ioapic_to_kvm(s: &IoapicState, base: &kvm_ioapic_state) -> kvm_ioapic_state {
    let mut k = *base;
    k.id = u32::from(s.id & 0x0f);
    k.ioregsel = u32::from(s.select);
    k.irr = s.lines & 0x00ff_ffff;
    for (d, e) in k.redirtbl.iter_mut().zip(s.redir.iter()) {
        d.bits = *e;
    }
    k
}

fn ticks_of_ns(ns: i64) -> u64 {
    let ns = u128::try_from(ns.max(0)).unwrap_or(0);
    u64::try_from(ns * PIT_HZ / NANOS).unwrap_or(u64::MAX)
}

fn ns_of_ticks(ticks: u64) -> i64 {
    i64::try_from(u128::from(ticks) * NANOS / PIT_HZ).unwrap_or(i64::MAX)
}

/// The next IRQ0 edge (ticks since loading) of channel 0 in `mode`.
fn next_edge(mode: u8, reload: u64, elapsed: u64) -> Option<u64> {
    match mode {
        2 | 3 => (elapsed / reload).checked_add(1)?.checked_mul(reload),
        0 => (elapsed < reload).then_some(reload),
        4 => (elapsed <= reload).then_some(reload + 1),
        _ => None,
    }
}

fn channel_from_kvm(c: &kvm_pit_channel_state, now_ns: i64, channel: usize) -> PitChannelState {
    let loaded = c.mode != KVM_PIT_UNPROGRAMMED && c.mode <= 5;
    let mode = if loaded { c.mode } else { 0 };
    let access = if (1..=3).contains(&c.rw_mode) {
        c.rw_mode
    } else {
        3
    };
    let reload = if c.count == 0 {
        0x10000
    } else {
        c.count.min(0x10000)
    };
    let gate = c.gate != 0;
    let elapsed = ticks_of_ns(now_ns.saturating_sub(c.count_load_time));
    PitChannelState {
        mode,
        access,
        bcd: c.bcd != 0,
        reload,
        loaded,
        gate,
        triggered: gate && matches!(mode, 1 | 5),
        counting: loaded && gate,
        elapsed_ticks: elapsed,
        next_edge: if channel == 0 && loaded {
            next_edge(mode, u64::from(reload), elapsed)
        } else {
            None
        },
        write_low: (access == 3 && c.write_state == RW_STATE_WORD1).then_some(c.write_latch),
        read_high_next: access == 3 && c.read_state == RW_STATE_WORD1,
        latched: (c.count_latched != 0)
            .then_some((c.latched_count, c.count_latched == RW_STATE_WORD1)),
        status: (c.status_latched != 0).then_some(c.status),
    }
}

fn rw_state(access: u8, second: bool) -> u8 {
    match access {
        1 => RW_STATE_LSB,
        2 => RW_STATE_MSB,
        _ if second => RW_STATE_WORD1,
        _ => RW_STATE_WORD0,
    }
}

fn channel_to_kvm(s: &PitChannelState, now_ns: i64) -> kvm_pit_channel_state {
    kvm_pit_channel_state {
        count: s.reload.clamp(1, 0x10000),
        latched_count: s.latched.map_or(0, |(v, _)| v),
        count_latched: s.latched.map_or(0, |(_, low)| rw_state(s.access, low)),
        status_latched: u8::from(s.status.is_some()),
        status: s.status.unwrap_or(0),
        read_state: rw_state(s.access, s.read_high_next),
        write_state: rw_state(s.access, s.write_low.is_some()),
        write_latch: s.write_low.unwrap_or(0),
        rw_mode: s.access.clamp(1, 3),
        // KVM's "never programmed" mode: no counter timer, no IRQ 0.
        mode: if s.loaded {
            s.mode.min(5)
        } else {
            KVM_PIT_UNPROGRAMMED
        },
        bcd: u8::from(s.bcd),
        gate: u8::from(s.gate),
        count_load_time: now_ns.saturating_sub(ns_of_ticks(s.elapsed_ticks)),
    }
}

pub fn pit_from_kvm(k: &kvm_pit_state2, now_ns: i64) -> PitState {
    PitState {
        channels: [
            channel_from_kvm(&k.channels[0], now_ns, 0),
            channel_from_kvm(&k.channels[1], now_ns, 1),
            channel_from_kvm(&k.channels[2], now_ns, 2),
        ],
        port61: u8::from(k.channels[2].gate != 0)
            | (u8::from(k.flags & KVM_PIT_FLAGS_SPEAKER_DATA_ON != 0) << 1),
    }
}

/// `s` over `base` (KVM_GET_PIT2's answer: its other flags stay). KVM
/// reloads each counter on KVM_SET_PIT2, so a counter restarts its period.
pub fn pit_to_kvm(s: &PitState, base: &kvm_pit_state2, now_ns: i64) -> kvm_pit_state2 {
    let mut k = *base;
    for (d, c) in k.channels.iter_mut().zip(s.channels.iter()) {
        *d = channel_to_kvm(c, now_ns);
    }
    k.channels[2].gate = s.port61 & 1;
    k.flags &= !KVM_PIT_FLAGS_SPEAKER_DATA_ON;
    if s.port61 & 2 != 0 {
        k.flags |= KVM_PIT_FLAGS_SPEAKER_DATA_ON;
    }
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pic_round_trips_and_keeps_the_chips_elcr_mask() {
        let s = PicState {
            irr: 0x11,
            isr: 0x02,
            imr: 0xe5,
            lines: 0x10,
            vector_base: 0x20,
            lowest_priority: 4,
            init_step: 0,
            needs_icw4: true,
            auto_eoi: true,
            read_isr: true,
            elcr: 0x0c,
            elcr_mask: 0xf8,
            ..Default::default()
        };
        let base = kvm_pic_state {
            elcr_mask: 0xf8,
            ..Default::default()
        };
        let k = pic_to_kvm(&s, &base);
        assert_eq!(k.priority_add, 5, "IR5 has the highest priority after IR4");
        assert_eq!(k.elcr, 0x08, "ELCR bits the chip lacks stay clear");
        assert_eq!(pic_from_kvm(&k), PicState { elcr: 0x08, ..s });
    }

    #[test]
    fn ioapic_round_trips() {
        let mut s = IoapicState {
            id: 5,
            select: 0x21,
            lines: 1 << 9,
            ..Default::default()
        };
        s.redir[9] = 0x0100_0000_0000_c039;
        let base = kvm_ioapic_state {
            base_address: 0xfec0_0000,
            ..Default::default()
        };
        let k = ioapic_to_kvm(&s, &base);
        assert_eq!(k.base_address, 0xfec0_0000);
        assert_eq!(ioapic_from_kvm(&k), s);
    }

    #[test]
    fn pit_round_trips_with_its_progress() {
        let now = 5_000_000_000i64;
        let mut s = PitState {
            port61: 3,
            ..Default::default()
        };
        s.channels[0] = PitChannelState {
            mode: 2,
            access: 3,
            reload: 11932,
            loaded: true,
            gate: true,
            counting: true,
            elapsed_ticks: 30_000,
            next_edge: Some(35_796),
            write_low: Some(0x9c),
            read_high_next: true,
            latched: Some((0x1234, true)),
            status: Some(0x34),
            ..Default::default()
        };
        s.channels[1] = PitChannelState {
            mode: 3,
            access: 1,
            reload: 18,
            loaded: true,
            gate: true,
            counting: true,
            elapsed_ticks: 7,
            ..Default::default()
        };
        s.channels[2] = PitChannelState {
            mode: 0,
            access: 3,
            reload: 0x10000,
            loaded: true,
            gate: true,
            counting: true,
            elapsed_ticks: 100,
            ..Default::default()
        };
        let base = kvm_pit_state2::default();
        let k = pit_to_kvm(&s, &base, now);
        assert_eq!(k.channels[0].count, 11932);
        assert_eq!(
            k.flags & KVM_PIT_FLAGS_SPEAKER_DATA_ON,
            KVM_PIT_FLAGS_SPEAKER_DATA_ON
        );
        let back = pit_from_kvm(&k, now);
        for (i, (b, w)) in back.channels.iter().zip(s.channels.iter()).enumerate() {
            // Tick counts survive to within the nanosecond rounding.
            assert!(
                b.elapsed_ticks.abs_diff(w.elapsed_ticks) <= 1,
                "channel {i}"
            );
            assert_eq!(
                PitChannelState {
                    elapsed_ticks: w.elapsed_ticks,
                    ..*b
                },
                *w,
                "channel {i}"
            );
        }
        assert_eq!(back.port61, 3);
        // A counter KVM never saw programmed (mode 0xff) is "not loaded",
        // and one not loaded goes to KVM as never programmed (no IRQ 0).
        let mut fresh = kvm_pit_state2::default();
        fresh.channels[1].mode = 0xff;
        assert!(!pit_from_kvm(&fresh, now).channels[1].loaded);
        let idle = PitState::default();
        assert_eq!(pit_to_kvm(&idle, &base, now).channels[0].mode, 0xff);
    }
}
