//! The emu engine's interrupt controllers and timer, driven directly with a
//! synthetic clock (the input advances it), so a run is deterministic: the
//! 8254 PIT (ports 0x40-0x43, 0x61), the 8259A pair with ELCR (0x20, 0x21,
//! 0xa0, 0xa1, 0x4d0, 0x4d1) and IRQ lines, the 82093AA I/O APIC (MMIO
//! window, pins, EOIs) and the local APIC (xAPIC MMIO, x2APIC MSRs, the
//! timer, IPIs, accepted and acknowledged vectors).
//!
//! Checked beyond "no panic": bounded output (an operation sends at most a
//! few messages), a vector acknowledged was one the controller offered, and
//! after the program each controller still answers a re-initialisation as
//! its data sheet says.
//!
//! It must not know the rest of the engine (CPU, memory).

use std::time::{Duration, Instant};

use kite_engine_emu::irq::ioapic::{Ioapic, IOAPIC_PINS};
use kite_engine_emu::irq::lapic::{Lapic, Outbox, LAPIC_DEFAULT_BASE, MSR_X2APIC_FIRST};
use kite_engine_emu::irq::pic::PicPair;
use kite_engine_emu::irq::pit::Pit;
use kite_engine_emu::irq::TscClock;

use crate::input::Input;

const MAX_OPS: usize = 4096;

/// A clock the input moves forward: by nanoseconds up to about 65 ms, or
/// sometimes by up to an hour.
struct Clock {
    now: Instant,
}

impl Clock {
    fn new() -> Clock {
        Clock {
            now: Instant::now(),
        }
    }
    fn advance(&mut self, inp: &mut Input) {
        let d = if inp.u8() & 15 == 0 {
            Duration::from_millis(u64::from(inp.u32() % 3_600_000))
        } else {
            Duration::from_nanos(u64::from(inp.u16()) * 1000)
        };
        self.now += d;
    }
}

pub fn pit(data: &[u8]) {
    let mut clock = Clock::new();
    let mut pit = Pit::new(clock.now);
    let ports = [0x40u16, 0x41, 0x42, 0x43, 0x43, 0x61];
    let mut inp = Input::new(data);
    for _ in 0..MAX_OPS {
        if inp.is_empty() {
            break;
        }
        let op = inp.u8();
        let port = ports[usize::from(op >> 4) % ports.len()];
        match op & 3 {
            0 => {
                assert!(
                    pit.read(port, clock.now).is_some(),
                    "PIT port {port:#x} not claimed"
                );
            }
            1 => {
                assert!(
                    pit.write(port, inp.u8(), clock.now),
                    "PIT port {port:#x} not claimed"
                );
            }
            2 => clock.advance(&mut inp),
            _ => {
                pit.run(clock.now);
                if let Some(d) = pit.next_deadline() {
                    assert!(
                        d + Duration::from_secs(1) >= clock.now,
                        "PIT deadline in the past"
                    );
                }
            }
        }
    }
    // Still answers: channel 0 in mode 2 with count 0x1234, latched at
    // once, reads back a count no larger than what was loaded.
    pit.write(0x43, 0x34, clock.now);
    pit.write(0x40, 0x34, clock.now);
    pit.write(0x40, 0x12, clock.now);
    pit.write(0x43, 0x00, clock.now);
    let lo = pit.read(0x40, clock.now).unwrap_or(0xff);
    let hi = pit.read(0x40, clock.now).unwrap_or(0xff);
    let count = u16::from_le_bytes([lo, hi]);
    assert!(
        (1..=0x1234).contains(&count),
        "PIT count {count:#x} after reprogramming"
    );
}

pub fn pic(data: &[u8]) {
    let mut pic = PicPair::new();
    let ports = [0x20u16, 0x21, 0xa0, 0xa1, 0x4d0, 0x4d1];
    let mut inp = Input::new(data);
    for _ in 0..MAX_OPS {
        if inp.is_empty() {
            break;
        }
        let op = inp.u8();
        let port = ports[usize::from(op >> 4) % ports.len()];
        match op & 3 {
            0 => {
                assert!(pic.read(port).is_some(), "PIC port {port:#x} not claimed");
            }
            1 => {
                assert!(pic.write(port, inp.u8()), "PIC port {port:#x} not claimed");
            }
            2 => {
                let irq = u32::from(inp.u8() % 20);
                pic.set_irq(irq, inp.bool());
            }
            _ => {
                if pic.output() {
                    pic.acknowledge();
                }
            }
        }
    }
    // Still answers: the BIOS initialisation (ICW1-4, vectors 0x08 and
    // 0x70), all unmasked; IRQ 1 raised gives vector 0x09.
    for (port, v) in [
        (0x20, 0x11),
        (0x21, 0x08),
        (0x21, 0x04),
        (0x21, 0x01),
        (0xa0, 0x11),
        (0xa1, 0x70),
        (0xa1, 0x02),
        (0xa1, 0x01),
        (0x21, 0x00),
        (0xa1, 0x00),
        (0x4d0, 0x00),
        (0x4d1, 0x00),
    ] {
        pic.write(port, v);
    }
    for irq in 0..16 {
        pic.set_irq(irq, false);
    }
    pic.set_irq(1, true);
    assert!(
        pic.output(),
        "PIC raises no interrupt after re-initialisation"
    );
    assert_eq!(
        pic.acknowledge(),
        0x09,
        "PIC vector after re-initialisation"
    );
}

pub fn ioapic(data: &[u8]) {
    let mut io = Ioapic::new();
    let mut out = Vec::new();
    let mut inp = Input::new(data);
    for _ in 0..MAX_OPS {
        if inp.is_empty() {
            break;
        }
        let op = inp.u8();
        out.clear();
        match op & 7 {
            0 | 1 => {
                // Select a register, then write its window.
                let reg = inp.u8();
                io.mmio_write(0, &[reg], &mut out);
                io.mmio_write(0x10, &inp.u32().to_le_bytes(), &mut out);
            }
            2 => {
                let off = u64::from(inp.u8());
                let w = inp.width();
                let v = inp.value(w);
                io.mmio_write(off, &v, &mut out);
            }
            3 => {
                let off = match inp.u8() & 3 {
                    0 => inp.u64(),
                    _ => u64::from(inp.u8()),
                };
                let mut b = vec![0u8; inp.width()];
                io.mmio_read(off, &mut b);
            }
            4 | 5 => {
                let pin = u32::from(inp.u8() % (IOAPIC_PINS as u8 + 4));
                io.set_irq(pin, inp.bool(), &mut out);
            }
            _ => io.eoi(inp.u8(), &mut out),
        }
        assert!(
            out.len() <= IOAPIC_PINS,
            "{} messages from one operation",
            out.len()
        );
    }
    // Still answers: the version register, and pin 1 routed unmasked to
    // vector 0x31 edge-triggered delivers exactly that vector.
    let mut v = [0u8; 4];
    io.mmio_write(0, &[1], &mut out);
    io.mmio_read(0x10, &mut v);
    assert_eq!(u32::from_le_bytes(v) & 0xff, 0x11, "I/O APIC version lost");
    io.mmio_write(0, &[0x12], &mut out);
    io.mmio_write(0x10, &0x31u32.to_le_bytes(), &mut out);
    io.mmio_write(0, &[0x13], &mut out);
    io.mmio_write(0x10, &0u32.to_le_bytes(), &mut out);
    io.set_irq(1, false, &mut out);
    out.clear();
    io.set_irq(1, true, &mut out);
    assert_eq!(
        out.len(),
        1,
        "I/O APIC pin 1 delivered {} messages",
        out.len()
    );
    assert_eq!(out[0].vector, 0x31);
}

pub fn lapic(data: &[u8]) {
    let mut clock = Clock::new();
    let mut apic = Lapic::new(0, true, TscClock::new(clock.now));
    let mut out = Outbox::default();
    let mut inp = Input::new(data);
    for _ in 0..MAX_OPS {
        if inp.is_empty() {
            break;
        }
        let op = inp.u8();
        out.messages.clear();
        out.eois.clear();
        match op & 7 {
            0 | 1 => {
                // An aligned register write (the only kind that takes effect).
                let reg = u64::from(inp.u8()) << 4;
                let v = inp.u32();
                apic.mmio_write(
                    LAPIC_DEFAULT_BASE + reg,
                    &v.to_le_bytes(),
                    clock.now,
                    &mut out,
                );
            }
            2 => {
                let off = u64::from(inp.u16() & 0xfff);
                let mut b = vec![0u8; inp.width()];
                apic.mmio_read(LAPIC_DEFAULT_BASE + off, &mut b, clock.now);
            }
            3 => {
                // MSRs: APIC base, TSC deadline, x2APIC registers.
                let msr = match inp.u8() & 3 {
                    0 => 0x1b,
                    1 => 0x6e0,
                    _ => MSR_X2APIC_FIRST + u32::from(inp.u8()),
                };
                if inp.bool() {
                    let v = inp.u64();
                    apic.wrmsr(msr, v, clock.now, &mut out);
                } else {
                    apic.rdmsr(msr, clock.now);
                }
            }
            4 => {
                let vector = inp.u8();
                apic.accept_fixed(vector, inp.bool());
            }
            5 => {
                if let Some(offered) = apic.deliverable() {
                    let got = apic.acknowledge();
                    assert_eq!(got, Some(offered), "acknowledged a vector not offered");
                }
            }
            6 => clock.advance(&mut inp),
            _ => {
                apic.run_timer(clock.now);
            }
        }
        assert!(
            out.messages.len() <= 1,
            "{} IPIs from one write",
            out.messages.len()
        );
    }
    // Still answers: after INIT, disabled (the one way out of x2APIC mode)
    // then enabled in xAPIC mode at the default base, the version register
    // reads its constant.
    apic.init_reset();
    let _ = apic.wrmsr(0x1b, LAPIC_DEFAULT_BASE | 0x100, clock.now, &mut out);
    let _ = apic.wrmsr(0x1b, LAPIC_DEFAULT_BASE | 0x900, clock.now, &mut out);
    let mut v = [0u8; 4];
    assert!(
        apic.mmio_read(LAPIC_DEFAULT_BASE + 0x30, &mut v, clock.now),
        "the APIC window is not mapped after INIT"
    );
    assert_eq!(u32::from_le_bytes(v) & 0xff, 0x14, "APIC version lost");
}
