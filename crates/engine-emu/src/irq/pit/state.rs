//! The 8254 to and from the engine-neutral `PitState`: each counter's
//! progress travels as PIT ticks since loading, so it continues where it
//! stopped whatever the host clock. Knows the chip's fields, nothing of how
//! a snapshot is stored.

use std::time::Instant;

use kite_hypervisor::state::{PitChannelState, PitState};

use super::{Channel, Pit};

impl Channel {
    fn save(&self, now: Instant) -> PitChannelState {
        PitChannelState {
            mode: self.mode,
            access: self.access,
            bcd: self.bcd,
            reload: self.reload.clamp(1, 0x10000) as u32,
            loaded: self.loaded,
            gate: self.gate,
            triggered: self.triggered,
            counting: self.start.is_some(),
            elapsed_ticks: self.ticks(now),
            next_edge: self.next_edge,
            write_low: self.write_low,
            read_high_next: self.read_high_next,
            latched: self.latched,
            status: self.status,
        }
    }

    fn restore(&mut self, s: &PitChannelState, now: Instant) {
        self.mode = s.mode.min(5);
        self.access = s.access.clamp(1, 3);
        self.bcd = s.bcd;
        self.reload = u64::from(s.reload.clamp(1, 0x10000));
        self.loaded = s.loaded;
        self.gate = s.gate;
        self.triggered = s.triggered;
        self.start = s.counting.then_some(now);
        self.paused_ticks = s.elapsed_ticks;
        self.next_edge = s.next_edge;
        self.write_low = s.write_low;
        self.read_high_next = s.read_high_next;
        self.latched = s.latched;
        self.status = s.status;
    }
}

impl Pit {
    pub fn save(&self, now: Instant) -> PitState {
        PitState {
            channels: [
                self.channels[0].save(now),
                self.channels[1].save(now),
                self.channels[2].save(now),
            ],
            port61: self.port61,
        }
    }

    pub fn restore(&mut self, s: &PitState, now: Instant) {
        for (c, st) in self.channels.iter_mut().zip(s.channels.iter()) {
            c.restore(st, now);
        }
        self.port61 = s.port61 & 0x0f;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn pit_counts_on_from_where_it_was_saved() {
        let t0 = Instant::now();
        let mut a = Pit::new(t0);
        // Channel 0, lohi, mode 2, 11932 (100 Hz); channel 2 latched.
        a.write(0x43, 0x34, t0);
        a.write(0x40, 0x9c, t0);
        a.write(0x40, 0x2e, t0);
        a.write(0x61, 0x01, t0);
        a.write(0x43, 0xb0, t0);
        a.write(0x42, 0x10, t0);
        a.write(0x42, 0x00, t0);
        a.write(0x43, 0x80, t0); // latch channel 2
        let t1 = t0 + Duration::from_millis(5);
        let s = a.save(t1);
        assert_eq!(s.channels[0].mode, 2);
        assert_eq!(s.channels[0].reload, 11932);
        assert!(s.channels[0].counting);
        assert!(s.channels[2].latched.is_some());

        // Restored an hour later: the same count as at save, same edge.
        let t2 = t0 + Duration::from_secs(3600);
        let mut b = Pit::new(t2);
        b.restore(&s, t2);
        assert_eq!(b.save(t2), s);
        let mut ca = [0u8; 2];
        let mut cb = [0u8; 2];
        for i in 0..2 {
            ca[i] = a.read(0x40, t1).unwrap();
            cb[i] = b.read(0x40, t2).unwrap();
        }
        assert_eq!(ca, cb);
        assert_eq!(a.read(0x42, t1), b.read(0x42, t2));
        let da = a.next_deadline().unwrap().duration_since(t1);
        let db = b.next_deadline().unwrap().duration_since(t2);
        assert!(
            da.abs_diff(db) < Duration::from_micros(2),
            "{da:?} vs {db:?}"
        );
    }
}
