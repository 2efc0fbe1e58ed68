//! The i8042 keyboard controller, on ports 0x60 (data) and 0x64 (status and
//! command): enough for a guest to reset the machine (command 0xfe, or an
//! output-port write with bit 0 clear) and for Linux's probe to find a
//! keyboard controller with a keyboard and no PS/2 mouse.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use crate::bus::{lock, IrqLine, PioDevice};

pub const DATA_PORT: u16 = 0x60;
pub const COMMAND_PORT: u16 = 0x64;
pub const KEYBOARD_IRQ: u32 = 1;

// Status register bits.
const STS_OBF: u8 = 1 << 0;
const STS_SYS: u8 = 1 << 2;
const STS_CMD: u8 = 1 << 3;
const STS_UNLOCKED: u8 = 1 << 4;

// Controller configuration ("command byte") bits.
const CTR_KBD_INT: u8 = 1 << 0;
const CTR_SYS: u8 = 1 << 2;
const CTR_KBD_DISABLE: u8 = 1 << 4;
const CTR_AUX_DISABLE: u8 = 1 << 5;
const CTR_XLATE: u8 = 1 << 6;

// Controller commands (port 0x64).
const CMD_READ_CTR: u8 = 0x20;
const CMD_WRITE_CTR: u8 = 0x60;
const CMD_AUX_DISABLE: u8 = 0xa7;
const CMD_AUX_ENABLE: u8 = 0xa8;
const CMD_AUX_TEST: u8 = 0xa9;
const CMD_SELF_TEST: u8 = 0xaa;
const CMD_KBD_TEST: u8 = 0xab;
const CMD_KBD_DISABLE: u8 = 0xad;
const CMD_KBD_ENABLE: u8 = 0xae;
const CMD_READ_INPUT: u8 = 0xc0;
const CMD_READ_OUTPUT: u8 = 0xd0;
const CMD_WRITE_OUTPUT: u8 = 0xd1;
const CMD_WRITE_KBD_OUTBUF: u8 = 0xd2;
const CMD_WRITE_AUX_OUTBUF: u8 = 0xd3;
const CMD_WRITE_AUX: u8 = 0xd4;
const CMD_PULSE_RESET: u8 = 0xfe;

// Keyboard replies.
const KBD_ACK: u8 = 0xfa;
const KBD_RESEND: u8 = 0xfe;
const KBD_BAT_OK: u8 = 0xaa;

/// What the next byte written to port 0x60 means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pending {
    /// A command to the keyboard itself.
    Keyboard,
    /// The new configuration byte.
    Ctr,
    /// The new output port (bit 0 low resets the CPU).
    OutputPort,
    /// A byte to hand back as if the keyboard sent it.
    KbdOutbuf,
    /// A byte for the (absent) PS/2 mouse: dropped.
    Aux,
    /// The parameter of a keyboard command (LEDs, typematic, scan code set).
    KbdParam(u8),
}

pub struct I8042 {
    ctr: u8,
    output_port: u8,
    last_was_command: bool,
    pending: Pending,
    out: VecDeque<u8>,
    /// What port 0x60 returns when nothing is queued.
    last_out: u8,
    irq: Option<Arc<dyn IrqLine>>,
    on_reset: Box<dyn FnMut() + Send>,
}

impl I8042 {
    /// `irq` is line 1 (keyboard); `on_reset` is called when the guest pulls
    /// the CPU reset line.
    pub fn new(irq: Option<Arc<dyn IrqLine>>, on_reset: Box<dyn FnMut() + Send>) -> Self {
        I8042 {
            ctr: CTR_KBD_INT | CTR_SYS | CTR_AUX_DISABLE | CTR_XLATE,
            output_port: 0x03,
            last_was_command: false,
            pending: Pending::Keyboard,
            out: VecDeque::new(),
            last_out: 0,
            irq,
            on_reset,
        }
    }

    /// Bus adapters for the two ports of one controller.
    pub fn ports(dev: &Arc<Mutex<I8042>>) -> (I8042Port, I8042Port) {
        (
            I8042Port {
                dev: dev.clone(),
                port: DATA_PORT,
            },
            I8042Port {
                dev: dev.clone(),
                port: COMMAND_PORT,
            },
        )
    }

    pub fn status(&self) -> u8 {
        let mut s = STS_UNLOCKED;
        if !self.out.is_empty() {
            s |= STS_OBF;
        }
        if self.ctr & CTR_SYS != 0 {
            s |= STS_SYS;
        }
        if self.last_was_command {
            s |= STS_CMD;
        }
        s
    }

    fn push(&mut self, b: u8) {
        // The real controller holds one byte; a short queue keeps multi-byte
        // keyboard replies in order.
        if self.out.len() < 16 {
            self.out.push_back(b);
        }
        if self.ctr & CTR_KBD_INT != 0 {
            if let Some(irq) = &self.irq {
                irq.pulse();
            }
        }
    }

    pub fn read_data(&mut self) -> u8 {
        if let Some(b) = self.out.pop_front() {
            self.last_out = b;
            if !self.out.is_empty() && self.ctr & CTR_KBD_INT != 0 {
                if let Some(irq) = &self.irq {
                    irq.pulse();
                }
            }
        }
        self.last_out
    }

    pub fn write_command(&mut self, cmd: u8) {
        self.last_was_command = true;
        self.pending = Pending::Keyboard;
        match cmd {
            CMD_READ_CTR => self.push(self.ctr),
            CMD_WRITE_CTR => self.pending = Pending::Ctr,
            CMD_AUX_DISABLE => self.ctr |= CTR_AUX_DISABLE,
            CMD_AUX_ENABLE => self.ctr &= !CTR_AUX_DISABLE,
            // 0x01: "clock line stuck low", so Linux concludes there is no
            // PS/2 mouse port.
            CMD_AUX_TEST => self.push(0x01),
            CMD_SELF_TEST => {
                self.ctr |= CTR_SYS;
                self.push(0x55);
            }
            CMD_KBD_TEST => self.push(0x00),
            CMD_KBD_DISABLE => self.ctr |= CTR_KBD_DISABLE,
            CMD_KBD_ENABLE => self.ctr &= !CTR_KBD_DISABLE,
            CMD_READ_INPUT => self.push(0x00),
            CMD_READ_OUTPUT => self.push(self.output_port),
            CMD_WRITE_OUTPUT => self.pending = Pending::OutputPort,
            CMD_WRITE_KBD_OUTBUF => self.pending = Pending::KbdOutbuf,
            // No mouse: the loopback byte never comes back, so the driver's
            // aux loop test times out.
            CMD_WRITE_AUX_OUTBUF | CMD_WRITE_AUX => self.pending = Pending::Aux,
            CMD_PULSE_RESET => (self.on_reset)(),
            // 0xf0-0xff pulse output-port lines for 6 us; bit 0 clear pulses reset.
            0xf0..=0xff if cmd & 1 == 0 => (self.on_reset)(),
            _ => {}
        }
    }

    pub fn write_data(&mut self, b: u8) {
        self.last_was_command = false;
        let pending = std::mem::replace(&mut self.pending, Pending::Keyboard);
        match pending {
            Pending::Ctr => self.ctr = b,
            Pending::OutputPort => {
                self.output_port = b;
                if b & 1 == 0 {
                    (self.on_reset)();
                }
            }
            Pending::KbdOutbuf => self.push(b),
            Pending::Aux => {}
            Pending::KbdParam(_) => self.push(KBD_ACK),
            Pending::Keyboard => self.keyboard_command(b),
        }
    }

    fn keyboard_command(&mut self, b: u8) {
        match b {
            // Reset and self-test.
            0xff => {
                self.push(KBD_ACK);
                self.push(KBD_BAT_OK);
            }
            // Identify: an MF2 keyboard (translated).
            0xf2 => {
                self.push(KBD_ACK);
                self.push(0xab);
                self.push(if self.ctr & CTR_XLATE != 0 {
                    0x41
                } else {
                    0x83
                });
            }
            // Set LEDs, typematic rate, scan code set: a parameter follows.
            0xed | 0xf3 | 0xf0 => {
                self.push(KBD_ACK);
                self.pending = Pending::KbdParam(b);
            }
            0xee => self.push(0xee),
            // Enable, disable, set defaults, and the set-all-keys family.
            0xf4..=0xfd => self.push(KBD_ACK),
            _ => self.push(KBD_RESEND),
        }
    }
}

/// One port of an `I8042`, as the port bus sees it.
pub struct I8042Port {
    dev: Arc<Mutex<I8042>>,
    port: u16,
}

impl I8042Port {
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl PioDevice for I8042Port {
    fn read(&mut self, offset: u16, data: &mut [u8]) {
        let mut d = lock(&self.dev);
        let v = match (self.port, offset) {
            (DATA_PORT, 0) => d.read_data(),
            (COMMAND_PORT, 0) => d.status(),
            _ => 0xff,
        };
        data.fill(0xff);
        if let Some(first) = data.first_mut() {
            *first = v;
        }
    }

    fn write(&mut self, offset: u16, data: &[u8]) {
        let Some(&b) = data.first() else { return };
        let mut d = lock(&self.dev);
        match (self.port, offset) {
            (DATA_PORT, 0) => d.write_data(b),
            (COMMAND_PORT, 0) => d.write_command(b),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn controller() -> (I8042, Arc<AtomicUsize>) {
        let resets = Arc::new(AtomicUsize::new(0));
        let r = resets.clone();
        (
            I8042::new(
                None,
                Box::new(move || {
                    r.fetch_add(1, Ordering::SeqCst);
                }),
            ),
            resets,
        )
    }

    #[test]
    fn reset_by_command_and_by_output_port() {
        let (mut c, resets) = controller();
        c.write_command(0xfe);
        assert_eq!(resets.load(Ordering::SeqCst), 1);
        c.write_command(0xd1);
        c.write_data(0x03); // bit 0 set: no reset
        assert_eq!(resets.load(Ordering::SeqCst), 1);
        c.write_command(0xd1);
        c.write_data(0x02);
        assert_eq!(resets.load(Ordering::SeqCst), 2);
        c.write_command(0xff); // bit 0 set: pulses nothing
        assert_eq!(resets.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn linux_style_probe() {
        let (mut c, resets) = controller();
        // Nothing queued: OBF clear, controller present (status is not 0xff).
        assert_eq!(c.status() & STS_OBF, 0);
        assert_ne!(c.status(), 0xff);
        // Self test.
        c.write_command(0xaa);
        assert_ne!(c.status() & STS_OBF, 0);
        assert_eq!(c.read_data(), 0x55);
        assert_eq!(c.status() & STS_OBF, 0);
        // Read, change, write back and re-read the command byte.
        c.write_command(0x20);
        let ctr = c.read_data();
        assert_ne!(ctr & CTR_SYS, 0);
        c.write_command(0x60);
        c.write_data(ctr & !CTR_KBD_INT | CTR_KBD_DISABLE);
        c.write_command(0x20);
        assert_eq!(c.read_data(), ctr & !CTR_KBD_INT | CTR_KBD_DISABLE);
        c.write_command(0xae);
        c.write_command(0x20);
        assert_eq!(c.read_data() & CTR_KBD_DISABLE, 0);
        // Keyboard interface test passes; the mouse port looks absent.
        c.write_command(0xab);
        assert_eq!(c.read_data(), 0x00);
        c.write_command(0xd3);
        c.write_data(0x5a);
        assert_eq!(c.status() & STS_OBF, 0, "aux loopback gets no answer");
        c.write_command(0xa9);
        assert_eq!(c.read_data(), 0x01);
        // Keyboard reset and identify.
        c.write_data(0xff);
        assert_eq!((c.read_data(), c.read_data()), (KBD_ACK, KBD_BAT_OK));
        c.write_data(0xf2);
        assert_eq!(c.read_data(), KBD_ACK);
        assert_eq!(c.read_data(), 0xab);
        c.read_data();
        c.write_data(0xed);
        assert_eq!(c.read_data(), KBD_ACK);
        c.write_data(0x07);
        assert_eq!(c.read_data(), KBD_ACK);
        assert_eq!(resets.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn port_adapters_route_and_raise_irq() {
        #[derive(Default)]
        struct Count(AtomicUsize);
        impl IrqLine for Count {
            fn set_level(&self, l: bool) {
                if l {
                    self.0.fetch_add(1, Ordering::SeqCst);
                }
            }
        }
        let irq = Arc::new(Count::default());
        let dev = Arc::new(Mutex::new(I8042::new(Some(irq.clone()), Box::new(|| {}))));
        let (mut data, mut cmd) = I8042::ports(&dev);
        cmd.write(0, &[0xaa]);
        assert_eq!(irq.0.load(Ordering::SeqCst), 1);
        let mut b = [0u8; 1];
        cmd.read(0, &mut b);
        assert_ne!(b[0] & STS_OBF, 0);
        data.read(0, &mut b);
        assert_eq!(b[0], 0x55);
        data.write(0, &[]);
    }
}
