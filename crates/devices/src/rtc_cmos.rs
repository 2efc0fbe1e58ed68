//! The MC146818 real-time clock and its CMOS memory, at ports 0x70 (index)
//! and 0x71 (data), as on every PC.
//!
//! The clock runs from the host's clock (UTC) plus an offset the guest may set;
//! it reads in BCD or binary and in 12- or 24-hour form as register B says.
//! Register A's update-in-progress bit is set for the last 244 µs of every
//! second, as on the chip. Periodic, alarm and update-ended interrupts set
//! register C's flags and, when enabled, raise IRQ 8 until the guest reads
//! register C. A small timer thread (`kite-rtc`) wakes only while one of those
//! interrupts is enabled.
//!
//! The CMOS bytes the firmware would leave (memory sizes, century) are set from
//! `CmosMemory` at construction.

use crate::bus::{lock, IrqLine, PioDevice};
use crate::state::{Snapshot, StateError, StateReader, StateWriter};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const REG_SECONDS: u8 = 0x00;
const REG_SECONDS_ALARM: u8 = 0x01;
const REG_MINUTES: u8 = 0x02;
const REG_MINUTES_ALARM: u8 = 0x03;
const REG_HOURS: u8 = 0x04;
const REG_HOURS_ALARM: u8 = 0x05;
const REG_DAY_OF_WEEK: u8 = 0x06;
const REG_DAY_OF_MONTH: u8 = 0x07;
const REG_MONTH: u8 = 0x08;
const REG_YEAR: u8 = 0x09;
const REG_A: u8 = 0x0a;
const REG_B: u8 = 0x0b;
const REG_C: u8 = 0x0c;
const REG_D: u8 = 0x0d;
/// The century byte (IBM PC convention; the FADT's CENTURY field names it).
pub const REG_CENTURY: u8 = 0x32;

const A_UIP: u8 = 0x80;
const B_SET: u8 = 0x80;
const B_PIE: u8 = 0x40;
const B_AIE: u8 = 0x20;
const B_UIE: u8 = 0x10;
const B_DM_BINARY: u8 = 0x04;
const B_24H: u8 = 0x02;
const C_IRQF: u8 = 0x80;
const C_PF: u8 = 0x40;
const C_AF: u8 = 0x20;
const C_UF: u8 = 0x10;
const D_VRT: u8 = 0x80;
/// Alarm registers with both top bits set match any value.
const ALARM_DONT_CARE: u8 = 0xc0;

const NANOS_PER_SEC: i128 = 1_000_000_000;
/// How long before each second's end the update-in-progress bit reads set.
const UIP_NANOS: i128 = 244_000;

/// The memory sizes the BIOS records in CMOS, which some guests read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CmosMemory {
    /// Bytes of RAM below 4 GiB (including the first MiB).
    pub ram_below_4g: u64,
    /// Bytes of RAM above 4 GiB.
    pub ram_above_4g: u64,
}

/// A calendar date and time of day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct DateTime {
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
    /// 0 = Sunday.
    weekday: u32,
}

/// Days since 1970-01-01 to a (year, month, day), proleptic Gregorian.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// A (year, month, day) to days since 1970-01-01.
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(month);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

impl DateTime {
    fn from_unix(secs: i64) -> DateTime {
        let days = secs.div_euclid(86_400);
        let sod = secs.rem_euclid(86_400);
        let (year, month, day) = civil_from_days(days);
        DateTime {
            year,
            month,
            day,
            hour: (sod / 3600) as u32,
            minute: (sod / 60 % 60) as u32,
            second: (sod % 60) as u32,
            weekday: (days + 4).rem_euclid(7) as u32,
        }
    }

    fn to_unix(self) -> i64 {
        days_from_civil(self.year, self.month, self.day) * 86_400
            + i64::from(self.hour) * 3600
            + i64::from(self.minute) * 60
            + i64::from(self.second)
    }
}

fn to_bcd(v: u8) -> u8 {
    ((v / 10) << 4) | (v % 10)
}

fn from_bcd(v: u8) -> u8 {
    (v >> 4).saturating_mul(10).saturating_add(v & 0xf)
}

/// The clock's state, shared between the port handler and the timer thread.
struct RtcState {
    index: u8,
    cmos: [u8; 128],
    reg_a: u8,
    reg_b: u8,
    reg_c: u8,
    /// Guest time = host UTC time + offset, in nanoseconds.
    offset_nanos: i128,
    /// Host UTC at `origin`, in nanoseconds since the epoch.
    origin_utc_nanos: i128,
    origin: Instant,
    /// Time registers as the guest wrote them while SET was on.
    pending: Option<DateTime>,
    /// The guest second last checked for update/alarm events.
    last_second: i64,
    /// The periodic tick index last checked.
    last_tick: i128,
    irq: Arc<dyn IrqLine>,
    irq_high: bool,
    stop: bool,
}

impl RtcState {
    fn guest_nanos(&self, now: Instant) -> i128 {
        self.origin_utc_nanos
            + now.saturating_duration_since(self.origin).as_nanos() as i128
            + self.offset_nanos
    }

    /// The periodic interrupt's period, if register A selects one.
    fn periodic_period(&self) -> Option<i128> {
        match self.reg_a & 0xf {
            0 => None,
            1 => Some(3_906_250),
            2 => Some(7_812_500),
            r => Some(NANOS_PER_SEC * (1 << (r - 1)) / 32_768),
        }
    }

    fn now_datetime(&self, now: Instant) -> DateTime {
        match self.pending {
            Some(dt) => dt,
            None => DateTime::from_unix(self.guest_nanos(now).div_euclid(NANOS_PER_SEC) as i64),
        }
    }

    fn binary(&self) -> bool {
        self.reg_b & B_DM_BINARY != 0
    }

    fn encode(&self, v: u32) -> u8 {
        let v = (v % 100) as u8;
        if self.binary() {
            v
        } else {
            to_bcd(v)
        }
    }

    fn decode(&self, v: u8) -> u32 {
        u32::from(if self.binary() { v } else { from_bcd(v) })
    }

    fn encode_hour(&self, hour: u32) -> u8 {
        if self.reg_b & B_24H != 0 {
            return self.encode(hour);
        }
        let pm = hour >= 12;
        let h12 = match hour % 12 {
            0 => 12,
            h => h,
        };
        self.encode(h12) | if pm { 0x80 } else { 0 }
    }

    fn decode_hour(&self, v: u8) -> u32 {
        if self.reg_b & B_24H != 0 {
            return self.decode(v);
        }
        let h12 = self.decode(v & 0x7f) % 12;
        if v & 0x80 != 0 {
            h12 + 12
        } else {
            h12
        }
    }

    fn read_reg(&mut self, reg: u8, now: Instant) -> u8 {
        let dt = self.now_datetime(now);
        match reg {
            REG_SECONDS => self.encode(dt.second),
            REG_MINUTES => self.encode(dt.minute),
            REG_HOURS => self.encode_hour(dt.hour),
            REG_DAY_OF_WEEK => self.encode(dt.weekday + 1),
            REG_DAY_OF_MONTH => self.encode(dt.day),
            REG_MONTH => self.encode(dt.month),
            REG_YEAR => self.encode(dt.year.rem_euclid(100) as u32),
            REG_CENTURY => self.encode(dt.year.div_euclid(100).clamp(0, 99) as u32),
            REG_A => {
                let frac = self.guest_nanos(now).rem_euclid(NANOS_PER_SEC);
                let uip = self.pending.is_none() && frac >= NANOS_PER_SEC - UIP_NANOS;
                (self.reg_a & !A_UIP) | if uip { A_UIP } else { 0 }
            }
            REG_B => self.reg_b,
            REG_C => {
                self.catch_up(now);
                let v = self.reg_c;
                self.reg_c = 0;
                self.update_irq();
                v
            }
            REG_D => D_VRT,
            r => self.cmos[usize::from(r & 0x7f)],
        }
    }

    fn write_reg(&mut self, reg: u8, v: u8, now: Instant) {
        match reg {
            REG_SECONDS | REG_MINUTES | REG_HOURS | REG_DAY_OF_WEEK | REG_DAY_OF_MONTH
            | REG_MONTH | REG_YEAR | REG_CENTURY => {
                // Time writes take effect when SET is cleared; without SET the
                // chip would carry on counting from the written value at once.
                let mut dt = self.now_datetime(now);
                match reg {
                    REG_SECONDS => dt.second = self.decode(v).min(59),
                    REG_MINUTES => dt.minute = self.decode(v).min(59),
                    REG_HOURS => dt.hour = self.decode_hour(v).min(23),
                    REG_DAY_OF_WEEK => {}
                    REG_DAY_OF_MONTH => dt.day = self.decode(v).clamp(1, 31),
                    REG_MONTH => dt.month = self.decode(v).clamp(1, 12),
                    REG_YEAR => dt.year = dt.year.div_euclid(100) * 100 + i64::from(self.decode(v)),
                    _ => dt.year = i64::from(self.decode(v)) * 100 + dt.year.rem_euclid(100),
                }
                if self.reg_b & B_SET != 0 {
                    self.pending = Some(dt);
                } else {
                    self.set_time(dt, now);
                }
            }
            REG_SECONDS_ALARM | REG_MINUTES_ALARM | REG_HOURS_ALARM => {
                self.cmos[usize::from(reg)] = v;
            }
            REG_A => self.reg_a = v & !A_UIP,
            REG_B => {
                let was_set = self.reg_b & B_SET != 0;
                self.catch_up(now);
                self.reg_b = v;
                if v & B_SET != 0 {
                    if !was_set {
                        self.pending = Some(self.now_datetime(now));
                    }
                    // SET stops updates; the chip clears UIE with it.
                    self.reg_b &= !B_UIE;
                } else if let Some(dt) = self.pending.take() {
                    self.set_time(dt, now);
                }
                self.update_irq();
            }
            REG_C | REG_D => {}
            r => self.cmos[usize::from(r & 0x7f)] = v,
        }
    }

    /// Make the clock read `dt` now, at the start of its second.
    fn set_time(&mut self, dt: DateTime, now: Instant) {
        let host = self.guest_nanos(now) - self.offset_nanos;
        self.offset_nanos = i128::from(dt.to_unix()) * NANOS_PER_SEC - host;
        self.last_second = dt.to_unix();
    }

    /// Alarm registers against a time of day.
    fn alarm_matches(&self, dt: &DateTime) -> bool {
        let check = |reg: u8, value: u32, hour: bool| {
            let a = self.cmos[usize::from(reg)];
            if a & ALARM_DONT_CARE == ALARM_DONT_CARE {
                return true;
            }
            let want = if hour {
                self.decode_hour(a)
            } else {
                self.decode(a)
            };
            want == value
        };
        check(REG_SECONDS_ALARM, dt.second, false)
            && check(REG_MINUTES_ALARM, dt.minute, false)
            && check(REG_HOURS_ALARM, dt.hour, true)
    }

    /// Set register C's flags for every event since the last check.
    fn catch_up(&mut self, now: Instant) {
        let nanos = self.guest_nanos(now);
        if self.pending.is_none() {
            let second = nanos.div_euclid(NANOS_PER_SEC) as i64;
            if second > self.last_second {
                self.reg_c |= C_UF;
                // Any alarm setting matches at least once a day.
                let first = self.last_second.saturating_add(1).max(second - 86_400);
                if (first..=second).any(|s| self.alarm_matches(&DateTime::from_unix(s))) {
                    self.reg_c |= C_AF;
                }
            }
            self.last_second = second;
        }
        if let Some(period) = self.periodic_period() {
            let tick = nanos.div_euclid(period);
            if tick > self.last_tick {
                self.reg_c |= C_PF;
            }
            self.last_tick = tick;
        }
        let enabled = (self.reg_c & self.reg_b) & (C_PF | C_AF | C_UF);
        if enabled != 0 {
            self.reg_c |= C_IRQF;
        }
        self.update_irq();
    }

    fn update_irq(&mut self) {
        let level = self.reg_c & C_IRQF != 0;
        if level != self.irq_high {
            self.irq_high = level;
            self.irq.set_level(level);
        }
    }

    /// When the timer thread should next look, if any interrupt is enabled.
    fn next_deadline(&self, now: Instant) -> Option<Instant> {
        let nanos = self.guest_nanos(now);
        let mut wait: Option<i128> = None;
        if self.reg_b & B_PIE != 0 {
            if let Some(p) = self.periodic_period() {
                wait = Some(p - nanos.rem_euclid(p));
            }
        }
        if self.reg_b & (B_UIE | B_AIE) != 0 && self.pending.is_none() {
            let w = NANOS_PER_SEC - nanos.rem_euclid(NANOS_PER_SEC);
            wait = Some(wait.map_or(w, |x| x.min(w)));
        }
        wait.map(|w| now + Duration::from_nanos(w.clamp(1, i128::from(u32::MAX)) as u64))
    }
}

struct Shared {
    state: Mutex<RtcState>,
    wake: Condvar,
}

/// The MC146818 RTC and CMOS memory; map it at port 0x70 with length 2.
pub struct RtcCmos {
    shared: Arc<Shared>,
    timer: Option<JoinHandle<()>>,
}

impl RtcCmos {
    /// An RTC reading the host's UTC time, with CMOS memory sizes from `memory`,
    /// raising `irq` (IRQ 8). Starts its timer thread.
    pub fn new(memory: CmosMemory, irq: Arc<dyn IrqLine>) -> std::io::Result<RtcCmos> {
        let origin = Instant::now();
        let origin_utc_nanos = match SystemTime::now().duration_since(UNIX_EPOCH) {
            Ok(d) => d.as_nanos() as i128,
            Err(e) => -(e.duration().as_nanos() as i128),
        };
        let mut cmos = [0u8; 128];
        fill_memory_sizes(&mut cmos, memory);
        let mut state = RtcState {
            index: 0,
            cmos,
            // 32.768 kHz time base, 1024 Hz periodic rate (the BIOS default).
            reg_a: 0x26,
            reg_b: B_24H,
            reg_c: 0,
            offset_nanos: 0,
            origin_utc_nanos,
            origin,
            pending: None,
            last_second: 0,
            last_tick: 0,
            irq,
            irq_high: false,
            stop: false,
        };
        let nanos = state.guest_nanos(origin);
        state.last_second = nanos.div_euclid(NANOS_PER_SEC) as i64;
        state.last_tick = state.periodic_period().map_or(0, |p| nanos.div_euclid(p));
        let shared = Arc::new(Shared {
            state: Mutex::new(state),
            wake: Condvar::new(),
        });
        let thread_shared = Arc::clone(&shared);
        let timer = std::thread::Builder::new()
            .name("kite-rtc".into())
            .spawn(move || {
                kite_sandbox::thread_started(kite_sandbox::Role::Timer);
                timer_loop(&thread_shared)
            })?;
        Ok(RtcCmos {
            shared,
            timer: Some(timer),
        })
    }

    /// Set a CMOS memory byte (index 0x0e-0x7f) as firmware settings would
    /// have left it (boot order, CPU count); clock registers are refused.
    pub fn set_cmos_byte(&self, index: u8, value: u8) {
        if (0x0e..0x80).contains(&index) {
            lock(&self.shared.state).cmos[usize::from(index)] = value;
        }
    }

    /// Read a CMOS byte directly (for the board and tests).
    pub fn cmos_byte(&self, index: u8) -> u8 {
        let mut s = lock(&self.shared.state);
        s.read_reg(index & 0x7f, Instant::now())
    }
}

impl Snapshot for RtcCmos {
    fn save_state(&self, w: &mut StateWriter) {
        let s = lock(&self.shared.state);
        w.u8(s.index);
        w.raw(&s.cmos);
        w.u8(s.reg_a);
        w.u8(s.reg_b);
        w.u8(s.reg_c);
        // The guest's clock as an offset from the host's UTC: the restored
        // guest reads the wall-clock time, as after any pause.
        let off = s
            .offset_nanos
            .clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64;
        w.i64(off);
        match s.pending {
            None => w.bool(false),
            Some(dt) => {
                w.bool(true);
                w.i64(dt.year);
                for v in [dt.month, dt.day, dt.hour, dt.minute, dt.second, dt.weekday] {
                    w.u32(v);
                }
            }
        }
    }

    fn restore_state(&mut self, r: &mut StateReader<'_>) -> Result<(), StateError> {
        let index = r.u8_max(0x7f, "RTC index")?;
        let mut cmos = [0u8; 128];
        cmos.copy_from_slice(r.raw(128, "CMOS memory")?);
        let reg_a = r.u8("RTC register A")?;
        let reg_b = r.u8("RTC register B")?;
        let reg_c = r.u8("RTC register C")?;
        let offset = r.i64("RTC offset")?;
        let pending = if r.bool("RTC SET latch")? {
            let year = r.i64("RTC year")?;
            let mut f = [0u32; 6];
            for v in &mut f {
                *v = r.u32("RTC date")?;
            }
            let [month, day, hour, minute, second, weekday] = f;
            if !(1..=12).contains(&month)
                || !(1..=31).contains(&day)
                || hour > 23
                || minute > 59
                || second > 59
                || weekday > 6
                || !(0..=9999).contains(&year)
            {
                return Err(StateError::invalid("RTC: a latched date out of range"));
            }
            Some(DateTime {
                year,
                month,
                day,
                hour,
                minute,
                second,
                weekday,
            })
        } else {
            None
        };
        let mut s = lock(&self.shared.state);
        s.index = index;
        s.cmos = cmos;
        s.reg_a = reg_a & 0x7f;
        s.reg_b = reg_b;
        s.reg_c = reg_c & 0xf0;
        s.offset_nanos = i128::from(offset);
        s.pending = pending;
        let now = Instant::now();
        let nanos = s.guest_nanos(now);
        s.last_second = nanos.div_euclid(NANOS_PER_SEC) as i64;
        s.last_tick = s.periodic_period().map_or(0, |p| nanos.div_euclid(p));
        s.update_irq();
        drop(s);
        self.shared.wake.notify_all();
        Ok(())
    }
}

fn timer_loop(shared: &Shared) {
    let mut s = lock(&shared.state);
    while !s.stop {
        let now = Instant::now();
        s.catch_up(now);
        s = match s.next_deadline(now) {
            Some(deadline) => {
                let wait = deadline.saturating_duration_since(Instant::now());
                shared
                    .wake
                    .wait_timeout(s, wait)
                    .map(|r| r.0)
                    .unwrap_or_else(|e| e.into_inner().0)
            }
            None => shared.wake.wait(s).unwrap_or_else(|e| e.into_inner()),
        };
    }
}

impl Drop for RtcCmos {
    fn drop(&mut self) {
        lock(&self.shared.state).stop = true;
        self.shared.wake.notify_all();
        if let Some(t) = self.timer.take() {
            let _ = t.join();
        }
    }
}

/// The BIOS's memory-size bytes, each capped at what its field can hold.
fn fill_memory_sizes(cmos: &mut [u8; 128], memory: CmosMemory) {
    const KIB: u64 = 1024;
    const MIB: u64 = 1024 * KIB;
    let put16 = |cmos: &mut [u8; 128], at: usize, v: u64| {
        let v = v.min(0xffff) as u16;
        cmos[at..at + 2].copy_from_slice(&v.to_le_bytes());
    };
    // Conventional memory: 640 KiB.
    put16(cmos, 0x15, 640);
    let ext_kib = memory.ram_below_4g.saturating_sub(MIB) / KIB;
    put16(cmos, 0x17, ext_kib);
    put16(cmos, 0x30, ext_kib);
    let above_16m = memory.ram_below_4g.saturating_sub(16 * MIB) / (64 * KIB);
    put16(cmos, 0x34, above_16m);
    let above_4g = (memory.ram_above_4g / (64 * KIB)).min(0xff_ffff) as u32;
    cmos[0x5b..0x5e].copy_from_slice(&above_4g.to_le_bytes()[..3]);
    // Checksum of 0x10..=0x2d at 0x2e (high byte first).
    let sum: u16 = cmos[0x10..0x2e].iter().map(|&b| u16::from(b)).sum();
    cmos[0x2e..0x30].copy_from_slice(&sum.to_be_bytes());
}

impl PioDevice for RtcCmos {
    fn read(&mut self, offset: u16, data: &mut [u8]) {
        let mut s = lock(&self.shared.state);
        let v = match offset {
            0 => s.index,
            1 => {
                let idx = s.index;
                s.read_reg(idx, Instant::now())
            }
            _ => 0xff,
        };
        data.fill(0);
        if let Some(b) = data.first_mut() {
            *b = v;
        }
    }

    fn write(&mut self, offset: u16, data: &[u8]) {
        let Some(&v) = data.first() else { return };
        let mut s = lock(&self.shared.state);
        match offset {
            // Bit 7 masks NMI on a real board; Kite has no NMI source to mask.
            0 => s.index = v & 0x7f,
            1 => {
                let idx = s.index;
                s.write_reg(idx, v, Instant::now());
                drop(s);
                self.shared.wake.notify_all();
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    #[derive(Default)]
    struct TestIrq {
        level: AtomicBool,
        raises: AtomicUsize,
    }
    impl IrqLine for TestIrq {
        fn set_level(&self, level: bool) {
            if level && !self.level.load(Ordering::SeqCst) {
                self.raises.fetch_add(1, Ordering::SeqCst);
            }
            self.level.store(level, Ordering::SeqCst);
        }
    }

    fn rtc() -> (RtcCmos, Arc<TestIrq>) {
        let irq = Arc::new(TestIrq::default());
        let mem = CmosMemory {
            ram_below_4g: 3 << 30,
            ram_above_4g: 1 << 30,
        };
        (RtcCmos::new(mem, irq.clone()).unwrap(), irq)
    }

    /// Wait up to 3 s for `cond` (the timer thread may be slow on a busy host).
    fn wait_for(cond: impl Fn() -> bool) -> bool {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(3) {
            if cond() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        false
    }

    fn rd(r: &mut RtcCmos, reg: u8) -> u8 {
        r.write(0, &[reg]);
        let mut b = [0u8];
        r.read(1, &mut b);
        b[0]
    }

    fn wr(r: &mut RtcCmos, reg: u8, v: u8) {
        r.write(0, &[reg]);
        r.write(1, &[v]);
    }

    /// Read the time as Linux does: wait for UIP clear, read, re-read seconds.
    fn read_time(r: &mut RtcCmos) -> [u8; 8] {
        loop {
            while rd(r, REG_A) & A_UIP != 0 {}
            let t = [
                rd(r, 0),
                rd(r, 2),
                rd(r, 4),
                rd(r, 6),
                rd(r, 7),
                rd(r, 8),
                rd(r, 9),
                rd(r, REG_CENTURY),
            ];
            if rd(r, 0) == t[0] {
                return t;
            }
        }
    }

    #[test]
    fn state_round_trip_keeps_cmos_registers_and_the_guest_clock() {
        let (mut a, _) = rtc();
        wr(&mut a, 0x40, 0x77); // a CMOS byte
        wr(&mut a, REG_B, B_24H | B_DM_BINARY); // binary mode
                                                // Set the year to 2010 (binary) through SET.
        wr(&mut a, REG_B, B_24H | B_DM_BINARY | B_SET);
        wr(&mut a, 9, 10);
        wr(&mut a, REG_B, B_24H | B_DM_BINARY);
        let saved = crate::state::save_to_vec(&a);
        let (mut b, _) = rtc();
        crate::state::restore_from(&mut b, &saved).unwrap();
        assert_eq!(rd(&mut b, 0x40), 0x77);
        assert_eq!(rd(&mut b, REG_B) & B_DM_BINARY, B_DM_BINARY);
        assert_eq!(read_time(&mut b)[6], 10, "the guest's year offset survives");
        // A latched date out of range is refused.
        let mut bad = saved.clone();
        let at = 1 + 128 + 3 + 8;
        bad[at] = 1;
        bad.truncate(at + 1);
        bad.extend_from_slice(&2010i64.to_le_bytes());
        for v in [13u32, 1, 0, 0, 0, 0] {
            bad.extend_from_slice(&v.to_le_bytes());
        }
        assert!(crate::state::restore_from(&mut b, &bad).is_err());
    }

    #[test]
    fn calendar_round_trip() {
        // 2024-02-29 12:34:56 UTC, a Thursday.
        let dt = DateTime::from_unix(1_709_210_096);
        assert_eq!((dt.year, dt.month, dt.day), (2024, 2, 29));
        assert_eq!((dt.hour, dt.minute, dt.second, dt.weekday), (12, 34, 56, 4));
        assert_eq!(dt.to_unix(), 1_709_210_096);
        assert_eq!(DateTime::from_unix(0).weekday, 4);
        for s in [0i64, 951_782_400, 4_102_444_800, 1_000_000_007] {
            assert_eq!(DateTime::from_unix(s).to_unix(), s);
        }
    }

    #[test]
    fn reads_host_utc_in_bcd_24h() {
        let (mut r, _) = rtc();
        let t = read_time(&mut r);
        let host = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let dt = DateTime {
            year: i64::from(from_bcd(t[7])) * 100 + i64::from(from_bcd(t[6])),
            month: from_bcd(t[5]).into(),
            day: from_bcd(t[4]).into(),
            hour: from_bcd(t[2]).into(),
            minute: from_bcd(t[1]).into(),
            second: from_bcd(t[0]).into(),
            weekday: 0,
        };
        assert!(
            (dt.to_unix() - host).abs() <= 2,
            "rtc {dt:?} vs host {host}"
        );
        assert_eq!(
            u32::from(from_bcd(t[3])),
            DateTime::from_unix(host).weekday + 1
        );
        assert_eq!(rd(&mut r, REG_D), D_VRT);
    }

    #[test]
    fn set_time_binary_12h() {
        let (mut r, _) = rtc();
        // Binary, 12-hour mode, SET on.
        wr(&mut r, REG_B, B_SET | B_DM_BINARY);
        wr(&mut r, REG_YEAR, 99);
        wr(&mut r, REG_CENTURY, 19);
        wr(&mut r, REG_MONTH, 12);
        wr(&mut r, REG_DAY_OF_MONTH, 31);
        wr(&mut r, REG_HOURS, 0x80 | 11); // 11 PM
        wr(&mut r, REG_MINUTES, 59);
        wr(&mut r, REG_SECONDS, 58);
        // While SET is on, the clock holds the written time.
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(rd(&mut r, REG_SECONDS), 58);
        wr(&mut r, REG_B, B_DM_BINARY);
        assert_eq!(rd(&mut r, REG_HOURS), 0x80 | 11);
        // Switch to 24-hour BCD and read the same instant.
        wr(&mut r, REG_B, B_24H);
        assert_eq!(rd(&mut r, REG_HOURS), 0x23);
        assert_eq!(rd(&mut r, REG_CENTURY), 0x19);
        // It rolls over into 2000 within three seconds.
        std::thread::sleep(Duration::from_millis(2100));
        assert_eq!(rd(&mut r, REG_YEAR), 0x00);
        assert_eq!(rd(&mut r, REG_CENTURY), 0x20);
        assert_eq!(rd(&mut r, REG_MONTH), 0x01);
        assert_eq!(rd(&mut r, REG_HOURS), 0x00);
    }

    #[test]
    fn twelve_hour_midnight_and_noon() {
        let (mut r, _) = rtc();
        wr(&mut r, REG_B, B_SET);
        wr(&mut r, REG_HOURS, 0x12); // 12 AM = 00h
        assert_eq!(lock(&r.shared.state).pending.unwrap().hour, 0);
        wr(&mut r, REG_HOURS, 0x80 | 0x12); // 12 PM = 12h
        assert_eq!(lock(&r.shared.state).pending.unwrap().hour, 12);
        assert_eq!(rd(&mut r, REG_HOURS), 0x80 | 0x12);
    }

    #[test]
    fn uip_is_set_near_the_end_of_a_second() {
        let (r, _) = rtc();
        let mut s = lock(&r.shared.state);
        let origin = s.origin;
        let frac = s.guest_nanos(origin).rem_euclid(NANOS_PER_SEC);
        // An instant `before_end` ns before the end of a second.
        let at = |before_end: i128| {
            origin + Duration::from_nanos((2 * NANOS_PER_SEC - frac - before_end) as u64)
        };
        assert_eq!(s.read_reg(REG_A, at(100_000)) & A_UIP, A_UIP);
        assert_eq!(s.read_reg(REG_A, at(243_000)) & A_UIP, A_UIP);
        assert_eq!(s.read_reg(REG_A, at(245_000)) & A_UIP, 0);
        assert_eq!(s.read_reg(REG_A, at(500_000_000)) & A_UIP, 0);
        assert_eq!(s.read_reg(REG_A, at(100_000)) & 0x7f, 0x26);
        // While SET holds the clock, no update is in progress.
        s.reg_b |= B_SET;
        s.pending = Some(s.now_datetime(origin));
        assert_eq!(s.read_reg(REG_A, at(100_000)) & A_UIP, 0);
    }

    #[test]
    fn periodic_interrupt_raises_irq8_until_c_is_read() {
        let (mut r, irq) = rtc();
        // 64 Hz periodic rate (rate 10), then enable PIE.
        wr(&mut r, REG_A, 0x2a);
        rd(&mut r, REG_C);
        assert!(!irq.level.load(Ordering::SeqCst));
        wr(&mut r, REG_B, B_24H | B_PIE);
        assert!(
            wait_for(|| irq.level.load(Ordering::SeqCst)),
            "periodic interrupt never raised"
        );
        let c = rd(&mut r, REG_C);
        assert_eq!(c & (C_IRQF | C_PF), C_IRQF | C_PF);
        assert!(!irq.level.load(Ordering::SeqCst));
        assert!(wait_for(|| irq.raises.load(Ordering::SeqCst) >= 2));
        // Disabled: flags may set, the line stays low.
        wr(&mut r, REG_B, B_24H);
        rd(&mut r, REG_C);
        std::thread::sleep(Duration::from_millis(50));
        assert!(!irq.level.load(Ordering::SeqCst));
        assert_eq!(rd(&mut r, REG_C) & (C_IRQF | C_PF), C_PF);
    }

    #[test]
    fn update_and_alarm_interrupts() {
        let (mut r, irq) = rtc();
        // Alarm on every second (all don't-care), update interrupt on.
        wr(&mut r, REG_SECONDS_ALARM, 0xff);
        wr(&mut r, REG_MINUTES_ALARM, 0xff);
        wr(&mut r, REG_HOURS_ALARM, 0xff);
        rd(&mut r, REG_C);
        wr(&mut r, REG_B, B_24H | B_AIE | B_UIE);
        assert!(
            wait_for(|| irq.level.load(Ordering::SeqCst)),
            "no update/alarm interrupt"
        );
        // PF also sets (periodic rate 6 runs) but raises nothing while PIE is off.
        assert_eq!(rd(&mut r, REG_C) & !C_PF, C_IRQF | C_AF | C_UF);
        // An alarm that cannot match soon: only UF.
        let now_hour = from_bcd(rd(&mut r, REG_HOURS));
        wr(&mut r, REG_HOURS_ALARM, to_bcd((now_hour + 2) % 24));
        wr(&mut r, REG_B, B_24H | B_UIE);
        std::thread::sleep(Duration::from_millis(1100));
        assert_eq!(rd(&mut r, REG_C) & !C_PF, C_IRQF | C_UF);
    }

    #[test]
    fn cmos_memory_sizes_and_nmi_bit() {
        let (mut r, _) = rtc();
        assert_eq!(
            u16::from_le_bytes([rd(&mut r, 0x15), rd(&mut r, 0x16)]),
            640
        );
        // 3 GiB: extended memory caps at 0xffff KiB.
        assert_eq!(
            u16::from_le_bytes([rd(&mut r, 0x17), rd(&mut r, 0x18)]),
            0xffff
        );
        assert_eq!(
            u16::from_le_bytes([rd(&mut r, 0x30), rd(&mut r, 0x31)]),
            0xffff
        );
        // (3 GiB - 16 MiB) / 64 KiB.
        assert_eq!(
            u16::from_le_bytes([rd(&mut r, 0x34), rd(&mut r, 0x35)]),
            0xbf00
        );
        // 1 GiB above 4G / 64 KiB = 0x4000.
        assert_eq!(
            [rd(&mut r, 0x5b), rd(&mut r, 0x5c), rd(&mut r, 0x5d)],
            [0, 0x40, 0]
        );
        // The NMI-mask bit in the index is ignored.
        r.write(0, &[0x80 | 0x15]);
        let mut b = [0u8];
        r.read(1, &mut b);
        assert_eq!(b[0], 640u16.to_le_bytes()[0]);
        // Plain CMOS bytes are read/write memory.
        wr(&mut r, 0x40, 0x5a);
        assert_eq!(rd(&mut r, 0x40), 0x5a);
        assert_eq!(r.cmos_byte(0x40), 0x5a);
    }

    #[test]
    fn small_memory_sizes() {
        let mut cmos = [0u8; 128];
        fill_memory_sizes(
            &mut cmos,
            CmosMemory {
                ram_below_4g: 32 << 20,
                ram_above_4g: 0,
            },
        );
        assert_eq!(u16::from_le_bytes([cmos[0x17], cmos[0x18]]), 31 * 1024);
        assert_eq!(u16::from_le_bytes([cmos[0x34], cmos[0x35]]), 256);
        assert_eq!(&cmos[0x5b..0x5e], &[0, 0, 0]);
    }
}
