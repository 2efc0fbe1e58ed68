//! The ACPI fixed-hardware PM registers at `PM_BASE` (0x600): PM1a event block
//! (status and enable), PM1a control and the 3.579545 MHz PM timer.
//!
//! Writing PM1 control with SLP_EN and the S5 sleep type powers the machine
//! off; `press_power_button` raises the fixed power-button event on the SCI so
//! a guest can shut down cleanly.

use super::power_event::{PowerEvent, PowerEventSink};
use crate::bus::{IrqLine, PioDevice};
use crate::state::{Snapshot, StateError, StateReader, StateWriter};
use std::sync::Arc;
use std::time::Instant;

/// First port of the PM register block.
pub const PM_BASE: u16 = 0x600;
/// Ports the block spans: PM1a_EVT (4), PM1a_CNT (2, padded to 4), PM_TMR (4).
pub const PM_LEN: u16 = 12;
pub const PM1_EVT_OFFSET: u16 = 0;
pub const PM1_EVT_LEN: u8 = 4;
pub const PM1_CNT_OFFSET: u16 = 4;
pub const PM1_CNT_LEN: u8 = 2;
pub const PM_TMR_OFFSET: u16 = 8;
pub const PM_TMR_LEN: u8 = 4;
/// The SLP_TYP value the DSDT's `\_S5` names.
pub const SLP_TYP_S5: u16 = 5;
/// The PM timer's rate.
pub const PM_TIMER_HZ: u128 = 3_579_545;

const STS_TMR: u16 = 1 << 0;
const STS_PWRBTN: u16 = 1 << 8;
const STS_WAK: u16 = 1 << 15;
const STS_W1C: u16 = STS_TMR | (1 << 4) | (1 << 5) | STS_PWRBTN | (1 << 9) | (1 << 10) | STS_WAK;
const EN_WRITABLE: u16 = STS_TMR | (1 << 5) | STS_PWRBTN | (1 << 9) | (1 << 10);
const CNT_SCI_EN: u16 = 1 << 0;
const CNT_SLP_TYP_SHIFT: u16 = 10;
const CNT_SLP_TYP: u16 = 0x7 << CNT_SLP_TYP_SHIFT;
const CNT_SLP_EN: u16 = 1 << 13;

/// PM1 status, enable and control, and the PM timer.
pub struct AcpiPmRegisters {
    status: u16,
    enable: u16,
    control: u16,
    timer_start: Instant,
    /// Nanoseconds the timer had counted before `timer_start` (a restored
    /// snapshot's).
    timer_offset_ns: u64,
    timer_32bit: bool,
    sci: Arc<dyn IrqLine>,
    sci_high: bool,
    sink: Arc<dyn PowerEventSink>,
}

impl AcpiPmRegisters {
    /// PM registers raising `sci` (IRQ 9) and reporting S5 to `sink`; the
    /// timer counts 32 bits when `timer_32bit` (FADT TMR_VAL_EXT), else 24.
    pub fn new(
        sci: Arc<dyn IrqLine>,
        sink: Arc<dyn PowerEventSink>,
        timer_32bit: bool,
    ) -> AcpiPmRegisters {
        AcpiPmRegisters {
            status: 0,
            enable: 0,
            // No SMI command port: the board starts in ACPI mode.
            control: CNT_SCI_EN,
            timer_start: Instant::now(),
            timer_offset_ns: 0,
            timer_32bit,
            sci,
            sci_high: false,
            sink,
        }
    }

    /// The PM timer's current count.
    pub fn timer(&self) -> u32 {
        let ticks = self.timer_nanos() * PM_TIMER_HZ / 1_000_000_000;
        let mask = if self.timer_32bit {
            0xffff_ffff
        } else {
            0x00ff_ffff
        };
        (ticks & mask) as u32
    }

    fn timer_nanos(&self) -> u128 {
        self.timer_start.elapsed().as_nanos() + u128::from(self.timer_offset_ns)
    }

    /// The power button was pressed: set PWRBTN_STS, raising the SCI if the
    /// guest enabled it.
    pub fn press_power_button(&mut self) {
        self.status |= STS_PWRBTN;
        self.update_sci();
    }

    fn update_sci(&mut self) {
        let level = self.control & CNT_SCI_EN != 0 && self.status & self.enable != 0;
        if level != self.sci_high {
            self.sci_high = level;
            self.sci.set_level(level);
        }
    }

    fn register(&self, offset: u16) -> u32 {
        match offset {
            0 => u32::from(self.status) | (u32::from(self.enable) << 16),
            4 => u32::from(self.control),
            8 => self.timer(),
            _ => 0,
        }
    }

    fn write_control(&mut self, value: u16) {
        let sleep_type = (value & CNT_SLP_TYP) >> CNT_SLP_TYP_SHIFT;
        // SCI_EN is fixed: there is no legacy mode to switch to.
        self.control = (value & CNT_SLP_TYP) | CNT_SCI_EN;
        if value & CNT_SLP_EN != 0 {
            if sleep_type == SLP_TYP_S5 {
                log::info!("guest entered ACPI S5: powering off");
                self.sink.power_event(PowerEvent::PowerOff);
            } else {
                crate::guest_warn!(
                    "guest asked for sleep type {sleep_type}, which Kite does not offer"
                );
            }
        }
    }
}

impl Snapshot for AcpiPmRegisters {
    fn save_state(&self, w: &mut StateWriter) {
        w.u16(self.status);
        w.u16(self.enable);
        w.u16(self.control);
        // The timer goes on from the count it had (it does not jump by the
        // time the snapshot spent on disk).
        w.u64(u64::try_from(self.timer_nanos()).unwrap_or(u64::MAX));
    }

    fn restore_state(&mut self, r: &mut StateReader<'_>) -> Result<(), StateError> {
        let status = r.u16("PM1 status")?;
        let enable = r.u16("PM1 enable")?;
        let control = r.u16("PM1 control")?;
        let nanos = r.u64("PM timer")?;
        if status & !STS_W1C != 0
            || enable & !EN_WRITABLE != 0
            || control & !(CNT_SLP_TYP | CNT_SCI_EN) != 0
        {
            return Err(StateError::invalid(format!(
                "PM registers: status {status:#x}, enable {enable:#x}, control {control:#x} hold bits the board never sets"
            )));
        }
        self.status = status;
        self.enable = enable;
        self.control = control | CNT_SCI_EN;
        self.timer_start = Instant::now();
        self.timer_offset_ns = nanos;
        self.update_sci();
        Ok(())
    }
}

impl PioDevice for AcpiPmRegisters {
    fn read(&mut self, offset: u16, data: &mut [u8]) {
        for (i, b) in data.iter_mut().enumerate() {
            let at = offset.saturating_add(i as u16);
            let reg = at & !3;
            *b = (self.register(reg) >> (8 * (at & 3))) as u8;
        }
    }

    fn write(&mut self, offset: u16, data: &[u8]) {
        // Gather the written bytes per register as (value, mask of written bits).
        let mut regs = [(0u32, 0u32); 3];
        for (i, &v) in data.iter().enumerate() {
            let at = usize::from(offset) + i;
            if let Some(r) = regs.get_mut(at / 4) {
                r.0 |= u32::from(v) << (8 * (at % 4));
                r.1 |= 0xff << (8 * (at % 4));
            }
        }
        let (evt, evt_mask) = regs[0];
        if evt_mask & 0xffff != 0 {
            self.status &= !((evt as u16) & STS_W1C);
        }
        if evt_mask & 0xffff_0000 != 0 {
            let mask = (evt_mask >> 16) as u16 & EN_WRITABLE;
            self.enable = (self.enable & !mask) | ((evt >> 16) as u16 & mask);
        }
        let (cnt, cnt_mask) = regs[1];
        if cnt_mask & 0xffff != 0 {
            let merged = (self.control & !(cnt_mask as u16)) | (cnt as u16 & cnt_mask as u16);
            self.write_control(merged);
        }
        // The timer is read-only.
        self.update_sci();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::mpsc;

    #[derive(Default)]
    struct Line(AtomicBool);
    impl IrqLine for Line {
        fn set_level(&self, level: bool) {
            self.0.store(level, Ordering::SeqCst);
        }
    }

    fn pm(timer_32bit: bool) -> (AcpiPmRegisters, Arc<Line>, mpsc::Receiver<PowerEvent>) {
        let line = Arc::new(Line::default());
        let (tx, rx) = mpsc::channel();
        let sink: Arc<dyn PowerEventSink> = Arc::new(tx);
        (
            AcpiPmRegisters::new(line.clone(), sink, timer_32bit),
            line,
            rx,
        )
    }

    fn rd16(p: &mut AcpiPmRegisters, off: u16) -> u16 {
        let mut b = [0u8; 2];
        p.read(off, &mut b);
        u16::from_le_bytes(b)
    }

    fn rd32(p: &mut AcpiPmRegisters, off: u16) -> u32 {
        let mut b = [0u8; 4];
        p.read(off, &mut b);
        u32::from_le_bytes(b)
    }

    #[test]
    fn state_round_trip_keeps_enables_and_the_timer_count() {
        let (mut p, _, _rx) = pm(true);
        p.write(2, &STS_PWRBTN.to_le_bytes()); // enable the power button
        std::thread::sleep(std::time::Duration::from_millis(5));
        let before = p.timer();
        let saved = crate::state::save_to_vec(&p);
        let (mut q, line, _rx2) = pm(true);
        crate::state::restore_from(&mut q, &saved).unwrap();
        assert_eq!(rd16(&mut q, 2), STS_PWRBTN);
        // The restored timer starts from the saved count, not from zero.
        assert!(q.timer() >= before, "{} < {before}", q.timer());
        q.press_power_button();
        assert!(line.0.load(Ordering::SeqCst));
        // Bits the board never sets are refused.
        let mut bad = saved.clone();
        bad[4] = 0xff;
        bad[5] = 0xff;
        assert!(crate::state::restore_from(&mut q, &bad).is_err());
    }

    #[test]
    fn s5_sleep_powers_off() {
        let (mut p, _, rx) = pm(true);
        assert_eq!(rd16(&mut p, 4) & CNT_SCI_EN, CNT_SCI_EN);
        // SLP_TYP alone does nothing; S3 with SLP_EN is refused.
        p.write(4, &(SLP_TYP_S5 << 10).to_le_bytes());
        assert!(rx.try_recv().is_err());
        p.write(4, &((3 << 10) | CNT_SLP_EN).to_le_bytes());
        assert!(rx.try_recv().is_err());
        // Linux writes SLP_TYP then SLP_EN|SLP_TYP.
        p.write(
            4,
            &((SLP_TYP_S5 << 10) | CNT_SLP_EN | CNT_SCI_EN).to_le_bytes(),
        );
        assert_eq!(rx.try_recv(), Ok(PowerEvent::PowerOff));
        // SLP_EN reads as zero.
        assert_eq!(rd16(&mut p, 4) & CNT_SLP_EN, 0);
    }

    #[test]
    fn power_button_raises_sci_when_enabled() {
        let (mut p, line, _) = pm(true);
        p.press_power_button();
        assert!(!line.0.load(Ordering::SeqCst));
        assert_eq!(rd16(&mut p, 0) & STS_PWRBTN, STS_PWRBTN);
        p.write(2, &STS_PWRBTN.to_le_bytes());
        assert_eq!(rd16(&mut p, 2), STS_PWRBTN);
        assert!(line.0.load(Ordering::SeqCst));
        // Write 1 to clear; writing 0 leaves it.
        p.write(0, &0u16.to_le_bytes());
        assert!(line.0.load(Ordering::SeqCst));
        p.write(0, &STS_PWRBTN.to_le_bytes());
        assert_eq!(rd16(&mut p, 0) & STS_PWRBTN, 0);
        assert!(!line.0.load(Ordering::SeqCst));
        // A dword write of status+enable clears status and sets enable together.
        p.press_power_button();
        p.write(0, &(u32::from(STS_PWRBTN)).to_le_bytes());
        assert_eq!(rd32(&mut p, 0), 0);
    }

    #[test]
    fn pm_timer_runs_at_3_58_mhz() {
        let (mut p, _, _) = pm(false);
        let outer = Instant::now();
        let t0 = rd32(&mut p, 8);
        std::thread::sleep(std::time::Duration::from_millis(50));
        let t1 = rd32(&mut p, 8);
        let outer = outer.elapsed().as_secs_f64();
        let ticks = f64::from(t1.wrapping_sub(t0) & 0x00ff_ffff);
        // At least the 50 ms slept, at most the time measured around both reads.
        let hz = PM_TIMER_HZ as f64;
        assert!(ticks >= 0.050 * hz * 0.999, "{ticks} ticks in >= 50 ms");
        assert!(
            ticks <= outer * hz * 1.001 + 2.0,
            "{ticks} ticks in {outer} s"
        );
        assert!(t1 <= 0x00ff_ffff, "24-bit timer read {t1:#x}");
        // Writes do not change it.
        p.write(8, &[0; 4]);
        assert!(rd32(&mut p, 8) >= t1);
    }

    #[test]
    fn timer_width_follows_tmr_val_ext() {
        let five_s = std::time::Duration::from_secs(5);
        for (wide, limit) in [(false, 1u64 << 24), (true, 1u64 << 32)] {
            let (mut p, _, _) = pm(wide);
            let Some(start) = Instant::now().checked_sub(five_s) else {
                eprintln!("skipping: host uptime under 5 s");
                return;
            };
            p.timer_start = start;
            // 5 s is about 17.9 million ticks: past 24 bits, within 32.
            let t = u64::from(rd32(&mut p, 8));
            assert!(t < limit);
            if wide {
                assert!(t >= 5 * 3_579_545, "{t}");
            } else {
                assert!(t < 5 * 3_579_545 - (1 << 24) + 1_000_000, "{t}");
            }
        }
    }
}
