//! A 16550A UART (vm-superio's `Serial`) on the port bus: the guest's console.
//!
//! Output bytes go to a host writer as the guest writes them (no buffering
//! beyond the writer's own); input bytes are queued by the host with
//! `enqueue_input` and raise the UART's interrupt line when the guest enabled
//! the receive interrupt.

use std::io::Write;
use std::sync::Arc;

use vm_superio::serial::{NoEvents, SerialState};
use vm_superio::{Serial, Trigger};

use crate::bus::{IrqLine, PioDevice};
use crate::state::{Snapshot, StateError, StateReader, StateWriter};

/// The receive FIFO's size (vm-superio's).
const FIFO_SIZE: usize = 64;

/// COM1's port base and interrupt line.
pub const COM1_PORT: u16 = 0x3f8;
pub const COM1_IRQ: u32 = 4;
/// The UART's eight registers.
pub const UART_PORT_LEN: u64 = 8;

/// Pulses an interrupt line each time the UART asks for attention (the ISA
/// UART interrupt is edge-triggered).
pub struct IrqTrigger(pub Arc<dyn IrqLine>);

impl Trigger for IrqTrigger {
    type E = std::convert::Infallible;

    fn trigger(&self) -> Result<(), Self::E> {
        self.0.pulse();
        Ok(())
    }
}

/// A host writer for guest output.
pub type SerialOut = Box<dyn Write + Send>;

pub struct Uart16550 {
    serial: Serial<IrqTrigger, NoEvents, SerialOut>,
    /// Whether a failed host write was already reported (report once).
    out_failed: bool,
}

impl Uart16550 {
    pub fn new(irq: Arc<dyn IrqLine>, out: SerialOut) -> Self {
        Uart16550 {
            serial: Serial::new(IrqTrigger(irq), out),
            out_failed: false,
        }
    }

    /// Queue host input for the guest; returns how many bytes fit in the
    /// receive FIFO (the rest should be offered again later).
    pub fn enqueue_input(&mut self, bytes: &[u8]) -> usize {
        if bytes.is_empty() || self.serial.fifo_capacity() == 0 {
            return 0;
        }
        self.serial.enqueue_raw_bytes(bytes).unwrap_or(0)
    }

    /// Room left in the receive FIFO.
    pub fn input_capacity(&self) -> usize {
        self.serial.fifo_capacity()
    }
}

impl Snapshot for Uart16550 {
    fn save_state(&self, w: &mut StateWriter) {
        let s = self.serial.state();
        for b in [
            s.baud_divisor_low,
            s.baud_divisor_high,
            s.interrupt_enable,
            s.interrupt_identification,
            s.line_control,
            s.line_status,
            s.modem_control,
            s.modem_status,
            s.scratch,
        ] {
            w.u8(b);
        }
        w.bytes(&s.in_buffer);
    }

    fn restore_state(&mut self, r: &mut StateReader<'_>) -> Result<(), StateError> {
        let mut regs = [0u8; 9];
        for b in &mut regs {
            *b = r.u8("UART register")?;
        }
        let in_buffer = r.bytes(FIFO_SIZE, "UART receive FIFO")?.to_vec();
        let state = SerialState {
            baud_divisor_low: regs[0],
            baud_divisor_high: regs[1],
            interrupt_enable: regs[2] & 0x0f,
            interrupt_identification: regs[3],
            line_control: regs[4],
            line_status: regs[5],
            modem_control: regs[6] & 0x1f,
            modem_status: regs[7],
            scratch: regs[8],
            in_buffer,
        };
        let trigger = IrqTrigger(self.serial.interrupt_evt().0.clone());
        let out = std::mem::replace(self.serial.writer_mut(), Box::new(std::io::sink()));
        match Serial::from_state(&state, trigger, NoEvents, out) {
            Ok(s) => {
                self.serial = s;
                Ok(())
            }
            Err(e) => {
                // Unreachable for a FIFO within FIFO_SIZE; keep the writer.
                Err(StateError::invalid(format!("UART state refused: {e:?}")))
            }
        }
    }
}

impl PioDevice for Uart16550 {
    fn read(&mut self, offset: u16, data: &mut [u8]) {
        for (i, b) in data.iter_mut().enumerate() {
            *b = match u8::try_from(usize::from(offset) + i) {
                Ok(reg) if reg < UART_PORT_LEN as u8 => self.serial.read(reg),
                _ => 0xff,
            };
        }
    }

    fn write(&mut self, offset: u16, data: &[u8]) {
        for (i, &b) in data.iter().enumerate() {
            let Ok(reg) = u8::try_from(usize::from(offset) + i) else {
                return;
            };
            if reg >= UART_PORT_LEN as u8 {
                return;
            }
            if let Err(e) = self.serial.write(reg, b) {
                if !self.out_failed {
                    log::warn!("serial output lost: {e:?}");
                    self.out_failed = true;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;

    #[derive(Default)]
    struct CountingIrq(AtomicUsize);
    impl IrqLine for CountingIrq {
        fn set_level(&self, level: bool) {
            if level {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
    }

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);
    impl Write for Shared {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn output_input_and_interrupts() {
        let irq = Arc::new(CountingIrq::default());
        let out = Shared::default();
        let mut u = Uart16550::new(irq.clone(), Box::new(out.clone()));
        // Transmitter is empty: LSR bit 5.
        let mut b = [0u8];
        u.read(5, &mut b);
        assert_ne!(b[0] & 0x20, 0);
        for c in b"hi" {
            u.write(0, &[*c]);
        }
        assert_eq!(out.0.lock().unwrap().as_slice(), b"hi");
        assert_eq!(
            irq.0.load(Ordering::SeqCst),
            0,
            "no interrupt while IER is 0"
        );

        // Enable the receive interrupt, feed input: one pulse, data ready.
        u.write(1, &[0x01]);
        assert_eq!(u.enqueue_input(b"ok"), 2);
        assert_eq!(irq.0.load(Ordering::SeqCst), 1);
        u.read(5, &mut b);
        assert_ne!(b[0] & 0x01, 0);
        u.read(0, &mut b);
        assert_eq!(b[0], b'o');
        u.read(0, &mut b);
        assert_eq!(b[0], b'k');
        u.read(5, &mut b);
        assert_eq!(b[0] & 0x01, 0);
        // Out-of-range offsets read as ones, not panic.
        let mut wide = [0u8; 4];
        u.read(6, &mut wide);
        assert_eq!(&wide[2..], &[0xff, 0xff]);
    }

    #[test]
    fn state_round_trip_keeps_registers_and_input() {
        let irq = Arc::new(CountingIrq::default());
        let out = Shared::default();
        let mut u = Uart16550::new(irq.clone(), Box::new(out.clone()));
        u.write(3, &[0x83]); // DLAB
        u.write(0, &[0x01]);
        u.write(3, &[0x03]);
        u.write(7, &[0x5a]); // scratch
        u.enqueue_input(b"xy");
        let saved = crate::state::save_to_vec(&u);

        let out2 = Shared::default();
        let mut v = Uart16550::new(irq.clone(), Box::new(out2.clone()));
        crate::state::restore_from(&mut v, &saved).unwrap();
        let mut b = [0u8];
        v.read(7, &mut b);
        assert_eq!(b[0], 0x5a);
        v.read(3, &mut b);
        assert_eq!(b[0], 0x03);
        v.read(0, &mut b);
        assert_eq!(b[0], b'x');
        v.read(0, &mut b);
        assert_eq!(b[0], b'y');
        // Output still goes to the restored UART's own writer.
        v.write(0, b"z");
        assert_eq!(out2.0.lock().unwrap().as_slice(), b"z");

        // A FIFO longer than the UART's is refused.
        let mut bad = saved.clone();
        bad[9..13].copy_from_slice(&65u32.to_le_bytes());
        bad.extend(std::iter::repeat_n(0, 63));
        assert!(crate::state::restore_from(&mut v, &bad).is_err());
    }

    #[test]
    fn fifo_fills_up() {
        let mut u = Uart16550::new(Arc::new(CountingIrq::default()), Box::new(std::io::sink()));
        let cap = u.input_capacity();
        assert_eq!(u.enqueue_input(&vec![b'x'; cap + 10]), cap);
        assert_eq!(u.enqueue_input(b"y"), 0);
    }
}
