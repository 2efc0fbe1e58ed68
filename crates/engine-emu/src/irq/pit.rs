//! The 8254 programmable interval timer (ports 0x40-0x43) and the PC's port
//! 0x61 (channel 2 gate, speaker data, refresh toggle, channel 2 output).
//!
//! Pure state machine: every access takes the host monotonic `now`, and the
//! counters are computed from the time elapsed since they were loaded at
//! [`PIT_HZ`]. Modes 0-5, counter latch, read-back, lobyte/hibyte/lohi
//! access and BCD counting are modelled. Channel 0's output drives IRQ0:
//! [`Pit::run`] reports a rising edge at most once per call, so ticks missed
//! while the VM was descheduled are dropped, not replayed in a burst (as
//! KVM's reinject=false). Simplification: writing a new count in modes 2/3
//! restarts the period at once instead of at the next reload.

use std::time::{Duration, Instant};

/// Input clock of the 8254 on a PC.
pub const PIT_HZ: u64 = 1_193_182;
/// Period of the DRAM refresh toggle seen in port 0x61 bit 4 (15.085 us).
const REFRESH_NS: u128 = 15_085;

const NANOS_PER_SEC: u128 = 1_000_000_000;

#[derive(Debug, Clone)]
struct Channel {
    mode: u8,
    /// 1 = lobyte, 2 = hibyte, 3 = lobyte then hibyte.
    access: u8,
    bcd: bool,
    /// Counter reload value in clock ticks (1..=65536, or 10000 in BCD).
    reload: u64,
    /// A count has been written since the control word.
    loaded: bool,
    /// Modes 1 and 5 count only after a gate rising edge.
    triggered: bool,
    /// Counting since this instant (None: stopped or paused).
    start: Option<Instant>,
    /// Ticks counted before the last pause (gate low in modes 0 and 4).
    paused_ticks: u64,
    gate: bool,
    /// lohi write: the low byte is in, waiting for the high byte.
    write_low: Option<u8>,
    /// lohi live read: the low byte was read, the high byte is next.
    read_high_next: bool,
    /// Counter latch: the latched count and whether its low byte was read.
    latched: Option<(u16, bool)>,
    /// Read-back status latch.
    status: Option<u8>,
    /// Next IRQ edge (channel 0), in ticks since loading.
    next_edge: Option<u64>,
}

impl Channel {
    fn new(gate: bool) -> Self {
        Channel {
            mode: 0,
            access: 3,
            bcd: false,
            reload: 0x10000,
            loaded: false,
            triggered: false,
            start: None,
            paused_ticks: 0,
            gate,
            write_low: None,
            read_high_next: false,
            latched: None,
            status: None,
            next_edge: None,
        }
    }

    fn modulus(&self) -> u64 {
        if self.bcd {
            10_000
        } else {
            0x10000
        }
    }

    fn ticks(&self, now: Instant) -> u64 {
        let running = match self.start {
            Some(start) => {
                let ns = now.saturating_duration_since(start).as_nanos();
                u64::try_from(ns * u128::from(PIT_HZ) / NANOS_PER_SEC).unwrap_or(u64::MAX)
            }
            None => 0,
        };
        self.paused_ticks.saturating_add(running)
    }

    /// Current count and output level.
    fn state(&self, now: Instant) -> (u64, bool) {
        let n = self.reload;
        if !self.loaded {
            return (n % self.modulus(), self.mode != 0);
        }
        if matches!(self.mode, 1 | 5) && !self.triggered {
            return (n % self.modulus(), true);
        }
        if matches!(self.mode, 2 | 3) && self.start.is_none() {
            return (n % self.modulus(), true);
        }
        let t = self.ticks(now);
        let m = self.modulus();
        match self.mode {
            0 | 1 => ((n + m - t % m) % m, t >= n),
            2 => {
                let phase = t % n;
                (n - phase, n < 2 || phase != n - 1)
            }
            3 => {
                let high = n.div_ceil(2);
                let phase = t % n;
                if phase < high {
                    ((n - 2 * phase) & !1, true)
                } else {
                    ((n - 2 * (phase - high)) & !1, false)
                }
            }
            _ => ((n + m - t % m) % m, t != n),
        }
    }

    fn count(&self, now: Instant) -> u16 {
        let c = self.state(now).0;
        if self.bcd {
            to_bcd(c % 10_000)
        } else {
            c as u16
        }
    }

    fn control(&self) -> u8 {
        (self.access << 4) | (self.mode << 1) | u8::from(self.bcd)
    }

    /// Edge of channel 0's output that raises IRQ0, first one after loading.
    fn first_edge(&self) -> Option<u64> {
        match self.mode {
            0 => Some(self.reload),
            2 | 3 => Some(self.reload),
            4 => Some(self.reload + 1),
            _ => None,
        }
    }

    fn start_counting(&mut self, now: Instant) {
        self.paused_ticks = 0;
        self.start = Some(now);
        self.next_edge = self.first_edge();
    }

    fn load(&mut self, raw: u16, now: Instant) {
        let value = if self.bcd {
            u64::from(from_bcd(raw))
        } else {
            u64::from(raw)
        };
        self.reload = if value == 0 { self.modulus() } else { value };
        self.loaded = true;
        self.triggered = false;
        self.start = None;
        self.paused_ticks = 0;
        self.next_edge = None;
        match self.mode {
            1 | 5 => {}
            _ if self.gate => self.start_counting(now),
            _ => {}
        }
    }

    fn set_gate(&mut self, gate: bool, now: Instant) {
        if gate == self.gate {
            return;
        }
        self.gate = gate;
        if !self.loaded {
            return;
        }
        match (self.mode, gate) {
            (0 | 4, true) if self.start.is_none() => {
                self.start = Some(now);
                if self.paused_ticks == 0 {
                    self.next_edge = self.first_edge();
                }
            }
            (0 | 4, false) => {
                self.paused_ticks = self.ticks(now);
                self.start = None;
            }
            (1 | 5 | 2 | 3, true) => {
                self.triggered = true;
                self.start_counting(now);
            }
            (2 | 3, false) => {
                self.start = None;
                self.paused_ticks = 0;
                self.next_edge = None;
            }
            _ => {}
        }
    }

    fn write_control(&mut self, val: u8) {
        self.access = (val >> 4) & 3;
        self.mode = match (val >> 1) & 7 {
            6 => 2,
            7 => 3,
            m => m,
        };
        self.bcd = val & 1 != 0;
        self.loaded = false;
        self.triggered = false;
        self.start = None;
        self.paused_ticks = 0;
        self.write_low = None;
        self.read_high_next = false;
        self.latched = None;
        self.status = None;
        self.next_edge = None;
    }

    fn latch_count(&mut self, now: Instant) {
        if self.latched.is_none() {
            self.latched = Some((self.count(now), false));
        }
    }

    fn latch_status(&mut self, now: Instant) {
        if self.status.is_none() {
            let out = self.state(now).1;
            let null = !self.loaded;
            self.status = Some((u8::from(out) << 7) | (u8::from(null) << 6) | self.control());
        }
    }

    fn read(&mut self, now: Instant) -> u8 {
        if let Some(s) = self.status.take() {
            return s;
        }
        if let Some((v, low_read)) = self.latched {
            let [lo, hi] = v.to_le_bytes();
            return match self.access {
                1 => {
                    self.latched = None;
                    lo
                }
                2 => {
                    self.latched = None;
                    hi
                }
                _ if !low_read => {
                    self.latched = Some((v, true));
                    lo
                }
                _ => {
                    self.latched = None;
                    hi
                }
            };
        }
        let [lo, hi] = self.count(now).to_le_bytes();
        match self.access {
            1 => lo,
            2 => hi,
            _ => {
                self.read_high_next = !self.read_high_next;
                if self.read_high_next {
                    lo
                } else {
                    hi
                }
            }
        }
    }

    fn write(&mut self, val: u8, now: Instant) {
        match self.access {
            1 => self.load(u16::from(val), now),
            2 => self.load(u16::from(val) << 8, now),
            _ => match self.write_low.take() {
                None => self.write_low = Some(val),
                Some(lo) => self.load(u16::from_le_bytes([lo, val]), now),
            },
        }
    }

    fn deadline_of(&self, tick: u64) -> Option<Instant> {
        let start = self.start?;
        let ticks = u128::from(tick.saturating_sub(self.paused_ticks));
        let ns = (ticks * NANOS_PER_SEC).div_ceil(u128::from(PIT_HZ));
        start.checked_add(Duration::from_nanos(u64::try_from(ns).ok()?))
    }
}

fn to_bcd(v: u64) -> u16 {
    let mut out = 0u16;
    let mut v = v;
    for shift in [0, 4, 8, 12] {
        out |= ((v % 10) as u16) << shift;
        v /= 10;
    }
    out
}

fn from_bcd(v: u16) -> u16 {
    // Invalid BCD digits are taken as their binary value.
    (v & 0xf) + ((v >> 4) & 0xf) * 10 + ((v >> 8) & 0xf) * 100 + ((v >> 12) & 0xf) * 1000
}

/// The 8254 with port 0x61.
#[derive(Debug, Clone)]
pub struct Pit {
    channels: [Channel; 3],
    /// Port 0x61 bits 0-3 as last written.
    port61: u8,
    epoch: Instant,
}

impl Pit {
    /// Power-on state: channels unprogrammed, channel 2's gate low.
    pub fn new(now: Instant) -> Self {
        Pit {
            channels: [Channel::new(true), Channel::new(true), Channel::new(false)],
            port61: 0,
            epoch: now,
        }
    }

    pub fn owns(port: u16) -> bool {
        matches!(port, 0x40..=0x43 | 0x61)
    }

    /// Port read; None if the port is not the PIT's.
    pub fn read(&mut self, port: u16, now: Instant) -> Option<u8> {
        match port {
            0x40..=0x42 => Some(self.channels[usize::from(port - 0x40)].read(now)),
            // The control word register cannot be read.
            0x43 => Some(0xff),
            0x61 => {
                let refresh =
                    (now.saturating_duration_since(self.epoch).as_nanos() / REFRESH_NS) & 1;
                let out2 = self.channels[2].state(now).1;
                Some((self.port61 & 0x0f) | (u8::from(refresh == 1) << 4) | (u8::from(out2) << 5))
            }
            _ => None,
        }
    }

    /// Port write; false if the port is not the PIT's.
    pub fn write(&mut self, port: u16, val: u8, now: Instant) -> bool {
        match port {
            0x40..=0x42 => self.channels[usize::from(port - 0x40)].write(val, now),
            0x43 => {
                let sc = val >> 6;
                if sc == 3 {
                    // Read-back command.
                    for ch in 0..3 {
                        if val & (2 << ch) != 0 {
                            if val & 0x20 == 0 {
                                self.channels[ch].latch_count(now);
                            }
                            if val & 0x10 == 0 {
                                self.channels[ch].latch_status(now);
                            }
                        }
                    }
                } else if val & 0x30 == 0 {
                    self.channels[usize::from(sc)].latch_count(now);
                } else {
                    self.channels[usize::from(sc)].write_control(val);
                }
            }
            0x61 => {
                self.port61 = val & 0x0f;
                self.channels[2].set_gate(val & 1 != 0, now);
            }
            _ => return false,
        }
        true
    }

    /// Advance channel 0: true if IRQ0 saw a rising edge since the last call
    /// (at most one, however many periods passed).
    pub fn run(&mut self, now: Instant) -> bool {
        let ch = &mut self.channels[0];
        let Some(edge) = ch.next_edge else {
            return false;
        };
        if ch.start.is_none() {
            return false;
        }
        let t = ch.ticks(now);
        if t < edge {
            return false;
        }
        ch.next_edge = match ch.mode {
            2 | 3 => (t / ch.reload)
                .checked_add(1)
                .and_then(|k| k.checked_mul(ch.reload)),
            _ => None,
        };
        true
    }

    /// When channel 0 raises IRQ0 next, if it will.
    pub fn next_deadline(&self) -> Option<Instant> {
        let ch = &self.channels[0];
        ch.deadline_of(ch.next_edge?)
    }
}

mod state;

#[cfg(test)]
mod tests {
    use super::*;

    fn at(t0: Instant, ns: u64) -> Instant {
        t0 + Duration::from_nanos(ns)
    }

    /// Nanoseconds of `ticks` PIT clocks, rounded up.
    fn ns_of(ticks: u64) -> u64 {
        (ticks * 1_000_000_000).div_ceil(PIT_HZ)
    }

    #[test]
    fn linux_periodic_mode2_raises_irq0_each_period() {
        let t0 = Instant::now();
        let mut pit = Pit::new(t0);
        // Linux HZ=1000: LATCH = 1193.
        pit.write(0x43, 0x34, t0);
        pit.write(0x40, (1193u16 & 0xff) as u8, t0);
        pit.write(0x40, (1193u16 >> 8) as u8, t0);
        assert!(!pit.run(at(t0, ns_of(1192))));
        assert_eq!(pit.next_deadline(), Some(at(t0, ns_of(1193))));
        assert!(pit.run(at(t0, ns_of(1193))));
        assert!(!pit.run(at(t0, ns_of(1193))));
        assert!(pit.run(at(t0, ns_of(2 * 1193))));
        // 10 periods late: one tick, not ten.
        assert!(pit.run(at(t0, ns_of(12 * 1193) + 10)));
        assert!(!pit.run(at(t0, ns_of(12 * 1193) + 20)));
        assert_eq!(pit.next_deadline(), Some(at(t0, ns_of(13 * 1193))));
    }

    #[test]
    fn mode0_one_shot_and_count_readout() {
        let t0 = Instant::now();
        let mut pit = Pit::new(t0);
        pit.write(0x43, 0x30, t0);
        pit.write(0x40, 0x10, t0);
        pit.write(0x40, 0x27, t0); // 10000
                                   // Latch after 1000 ticks.
        let t = at(t0, ns_of(1000));
        pit.write(0x43, 0x00, t);
        let lo = pit.read(0x40, at(t0, ns_of(5000))).unwrap();
        let hi = pit.read(0x40, at(t0, ns_of(6000))).unwrap();
        assert_eq!(
            u16::from_le_bytes([lo, hi]),
            9000,
            "latched value is stable"
        );
        assert!(!pit.run(at(t0, ns_of(9999))));
        assert!(pit.run(at(t0, ns_of(10_000))));
        assert!(!pit.run(at(t0, ns_of(100_000))), "one shot fires once");
        assert_eq!(pit.next_deadline(), None);
    }

    #[test]
    fn mode4_software_strobe_fires_once() {
        let t0 = Instant::now();
        let mut pit = Pit::new(t0);
        pit.write(0x43, 0x38, t0);
        pit.write(0x40, 100, t0);
        pit.write(0x40, 0, t0);
        assert!(!pit.run(at(t0, ns_of(100))));
        assert!(pit.run(at(t0, ns_of(101))));
        assert!(!pit.run(at(t0, ns_of(1000))));
    }

    #[test]
    fn linux_calibration_channel2_out_via_port61() {
        let t0 = Instant::now();
        let mut pit = Pit::new(t0);
        // pit_calibrate_tsc(): gate high, speaker off, mode 0 lohi on ch2.
        let v = pit.read(0x61, t0).unwrap();
        pit.write(0x61, (v & !0x02) | 0x01, t0);
        pit.write(0x43, 0xb0, t0);
        pit.write(0x42, 0x2e, t0);
        pit.write(0x42, 0x9b, t0); // 0x9b2e
        let latch = 0x9b2eu64;
        assert_eq!(
            pit.read(0x61, at(t0, ns_of(latch - 1))).unwrap() & 0x21,
            0x01
        );
        assert_eq!(pit.read(0x61, at(t0, ns_of(latch))).unwrap() & 0x21, 0x21);
        // Channel 2 never raises IRQ0.
        assert!(!pit.run(at(t0, ns_of(latch * 2))));
    }

    /// Nanoseconds to the middle of tick `ticks` (safe from rounding when
    /// counting from a later start).
    fn mid(ticks: u64) -> u64 {
        ((2 * ticks + 1) * 1_000_000_000) / (2 * PIT_HZ)
    }

    #[test]
    fn gate_low_pauses_mode0() {
        let t0 = Instant::now();
        let mut pit = Pit::new(t0);
        pit.write(0x43, 0xb0, t0);
        pit.write(0x42, 0xe8, t0);
        pit.write(0x42, 0x03, t0); // 1000, gate low: not counting
        let read = |pit: &mut Pit, t: Instant| {
            pit.write(0x43, 0x80, t);
            let lo = pit.read(0x42, t).unwrap();
            let hi = pit.read(0x42, t).unwrap();
            u16::from_le_bytes([lo, hi])
        };
        // Gate edges on tick boundaries, reads mid-tick.
        assert_eq!(read(&mut pit, at(t0, mid(500))), 1000);
        pit.write(0x61, 1, at(t0, ns_of(500)));
        assert_eq!(read(&mut pit, at(t0, ns_of(500) + mid(200))), 800);
        pit.write(0x61, 0, at(t0, ns_of(500) + mid(200)));
        assert_eq!(read(&mut pit, at(t0, mid(5000))), 800);
        pit.write(0x61, 1, at(t0, ns_of(5000)));
        assert_eq!(read(&mut pit, at(t0, ns_of(5000) + mid(100))), 700);
    }

    #[test]
    fn live_lohi_read_alternates_and_msb_only() {
        let t0 = Instant::now();
        let mut pit = Pit::new(t0);
        pit.write(0x43, 0x34, t0);
        pit.write(0x40, 0x00, t0);
        pit.write(0x40, 0x00, t0); // 65536
        let t = at(t0, ns_of(0x100));
        let lo = pit.read(0x40, t).unwrap();
        let hi = pit.read(0x40, t).unwrap();
        assert_eq!(u16::from_le_bytes([lo, hi]), 0xff00);
        // Hibyte-only access mode (pit_expect_msb style reads).
        pit.write(0x43, 0x24, t);
        pit.write(0x40, 0x20, t); // 0x2000
        assert_eq!(pit.read(0x40, at(t, ns_of(0x100))), Some(0x1f));
        assert_eq!(pit.read(0x40, at(t, ns_of(0x200))), Some(0x1e));
    }

    #[test]
    fn read_back_status_and_count() {
        let t0 = Instant::now();
        let mut pit = Pit::new(t0);
        pit.write(0x43, 0x34, t0);
        // Null count before the count is written.
        pit.write(0x43, 0xe2, t0);
        assert_eq!(pit.read(0x40, t0), Some(0x40 | 0x80 | 0x34));
        pit.write(0x40, 100, t0);
        pit.write(0x40, 0, t0);
        let t = at(t0, ns_of(30));
        pit.write(0x43, 0xc2, t); // latch count and status of ch0
        assert_eq!(pit.read(0x40, t), Some(0x80 | 0x34));
        assert_eq!(pit.read(0x40, t), Some(70));
        assert_eq!(pit.read(0x40, t), Some(0));
    }

    #[test]
    fn mode3_square_wave_output() {
        let t0 = Instant::now();
        let mut pit = Pit::new(t0);
        pit.write(0x61, 1, t0);
        pit.write(0x43, 0xb6, t0);
        pit.write(0x42, 100, t0);
        pit.write(0x42, 0, t0);
        let out =
            |pit: &mut Pit, ticks: u64| pit.read(0x61, at(t0, ns_of(ticks))).unwrap() & 0x20 != 0;
        assert!(out(&mut pit, 10));
        assert!(!out(&mut pit, 60));
        assert!(out(&mut pit, 110));
    }

    #[test]
    fn bcd_counting() {
        let t0 = Instant::now();
        let mut pit = Pit::new(t0);
        pit.write(0x43, 0x31, t0); // mode 0 BCD
        pit.write(0x40, 0x00, t0);
        pit.write(0x40, 0x10, t0); // 1000 decimal
        let t = at(t0, ns_of(1));
        let lo = pit.read(0x40, t).unwrap();
        let hi = pit.read(0x40, t).unwrap();
        assert_eq!(u16::from_le_bytes([lo, hi]), 0x0999);
        assert!(pit.run(at(t0, ns_of(1000))));
    }

    #[test]
    fn refresh_toggle_changes_and_foreign_ports() {
        let t0 = Instant::now();
        let mut pit = Pit::new(t0);
        let a = pit.read(0x61, at(t0, 1)).unwrap() & 0x10;
        let b = pit.read(0x61, at(t0, 16_000)).unwrap() & 0x10;
        assert_ne!(a, b);
        assert_eq!(pit.read(0x44, t0), None);
        assert!(!pit.write(0x60, 0, t0));
    }
}
