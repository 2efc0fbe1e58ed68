//! The i8042 keyboard controller, on ports 0x60 (data) and 0x64 (status and
//! command): its command byte, self tests, output port (CPU reset, A20), the
//! keyboard on the first port (IRQ 1, with the set 2 to set 1 translation
//! when the command byte asks for it) and, when built with an IRQ 12 line,
//! a PS/2 mouse on the aux port.
//!
//! Like the real part it holds one byte for the guest at a time; the
//! keyboard and the mouse keep their own bounded buffers and the controller
//! takes the next byte when the guest has read the last one. Key and
//! pointer events come in through `key_event` and `mouse_event`; this
//! module knows nothing of where they come from.

pub mod keyboard;
pub mod mouse;
mod queue;
pub mod scancodes;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use crate::bus::{lock, IrqLine, PioDevice};
use keyboard::Keyboard;
use mouse::Mouse;

pub const DATA_PORT: u16 = 0x60;
pub const COMMAND_PORT: u16 = 0x64;
pub const KEYBOARD_IRQ: u32 = 1;
pub const MOUSE_IRQ: u32 = 12;

// Status register bits.
const STS_OBF: u8 = 1 << 0;
const STS_SYS: u8 = 1 << 2;
const STS_CMD: u8 = 1 << 3;
const STS_UNLOCKED: u8 = 1 << 4;
const STS_AUX_OBF: u8 = 1 << 5;

// Controller configuration ("command byte") bits.
const CTR_KBD_INT: u8 = 1 << 0;
const CTR_AUX_INT: u8 = 1 << 1;
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

// Keyboard replies (the tests' names for them).
#[cfg(test)]
const KBD_ACK: u8 = keyboard::ACK;
#[cfg(test)]
const KBD_BAT_OK: u8 = keyboard::BAT_OK;

/// Bytes the controller itself answers with (command replies), at most.
const REPLY_QUEUE: usize = 16;

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
    /// A byte to hand back as if the mouse sent it.
    AuxOutbuf,
    /// A byte for the mouse.
    Aux,
}

/// Which port a byte in the output buffer came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Kbd,
    Aux,
}

/// The mouse and its interrupt line, when the controller has an aux port.
struct Aux {
    mouse: Mouse,
    irq: Option<Arc<dyn IrqLine>>,
}

pub struct I8042 {
    ctr: u8,
    output_port: u8,
    last_was_command: bool,
    pending: Pending,
    /// The output buffer: the one byte the guest reads next.
    obuf: Option<(u8, Source)>,
    /// Controller replies waiting for the output buffer.
    replies: VecDeque<(u8, Source)>,
    keyboard: Keyboard,
    /// A set 2 break prefix the translation is holding.
    xlate_break: bool,
    aux: Option<Aux>,
    /// What port 0x60 returns when nothing is queued.
    last_out: u8,
    irq: Option<Arc<dyn IrqLine>>,
    on_reset: Box<dyn FnMut() + Send>,
}

impl I8042 {
    /// A controller with a keyboard and no mouse. `irq` is line 1
    /// (keyboard); `on_reset` is called when the guest pulls the CPU reset
    /// line.
    pub fn new(irq: Option<Arc<dyn IrqLine>>, on_reset: Box<dyn FnMut() + Send>) -> Self {
        I8042 {
            ctr: CTR_KBD_INT | CTR_SYS | CTR_AUX_DISABLE | CTR_XLATE,
            output_port: 0x03,
            last_was_command: false,
            pending: Pending::Keyboard,
            obuf: None,
            replies: VecDeque::new(),
            keyboard: Keyboard::new(),
            xlate_break: false,
            aux: None,
            last_out: 0,
            irq,
            on_reset,
        }
    }

    /// Plug a PS/2 mouse into the aux port, interrupting on `irq` (line 12).
    pub fn with_mouse(mut self, irq: Option<Arc<dyn IrqLine>>) -> Self {
        self.aux = Some(Aux {
            mouse: Mouse::new(),
            irq,
        });
        self
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
        match self.obuf {
            Some((_, Source::Kbd)) => s |= STS_OBF,
            Some((_, Source::Aux)) => s |= STS_OBF | STS_AUX_OBF,
            None => {}
        }
        if self.ctr & CTR_SYS != 0 {
            s |= STS_SYS;
        }
        if self.last_was_command {
            s |= STS_CMD;
        }
        s
    }

    /// The keyboard (its LEDs, scan code set).
    pub fn keyboard(&self) -> &Keyboard {
        &self.keyboard
    }

    /// The mouse, when there is one.
    pub fn mouse(&self) -> Option<&Mouse> {
        self.aux.as_ref().map(|a| &a.mouse)
    }

    /// Key `code` (a Linux evdev code) went down or up.
    pub fn key_event(&mut self, code: u16, down: bool) {
        self.keyboard.key(code, down);
        self.fill();
    }

    /// The pointer moved by (`dx` right, `dy` down, in screen sense), the
    /// wheel turned `wheel` notches up, and `buttons` (`mouse::BTN_*`) are
    /// held. Ignored without a mouse.
    pub fn mouse_event(&mut self, dx: i32, dy: i32, wheel: i32, buttons: u8) {
        if let Some(aux) = &mut self.aux {
            aux.mouse.motion(dx, dy, wheel, buttons);
        }
        self.fill();
    }

    /// Queue a controller reply.
    fn push(&mut self, b: u8) {
        self.push_from(b, Source::Kbd);
    }

    fn push_from(&mut self, b: u8, src: Source) {
        if self.replies.len() < REPLY_QUEUE {
            self.replies.push_back((b, src));
        }
        self.fill();
    }

    /// Move the next byte into an empty output buffer: controller replies
    /// first, then the keyboard (unless its clock is disabled), then the
    /// mouse (likewise), and raise that port's interrupt if enabled.
    fn fill(&mut self) {
        if self.obuf.is_some() {
            return;
        }
        let next = if let Some(r) = self.replies.pop_front() {
            Some(r)
        } else if let Some(b) = self.next_keyboard_byte() {
            Some((b, Source::Kbd))
        } else if self.ctr & CTR_AUX_DISABLE == 0 {
            self.aux
                .as_mut()
                .and_then(|a| a.mouse.pop())
                .map(|b| (b, Source::Aux))
        } else {
            None
        };
        let Some((b, src)) = next else { return };
        self.obuf = Some((b, src));
        match src {
            Source::Kbd if self.ctr & CTR_KBD_INT != 0 => {
                if let Some(irq) = &self.irq {
                    irq.pulse();
                }
            }
            Source::Aux if self.ctr & CTR_AUX_INT != 0 => {
                if let Some(irq) = self.aux.as_ref().and_then(|a| a.irq.as_ref()) {
                    irq.pulse();
                }
            }
            _ => {}
        }
    }

    /// The keyboard's next byte as the guest sees it: translated to set 1
    /// (a break prefix folded into the byte after it) when asked to.
    fn next_keyboard_byte(&mut self) -> Option<u8> {
        if self.ctr & CTR_KBD_DISABLE != 0 {
            return None;
        }
        loop {
            let b = self.keyboard.pop()?;
            if self.ctr & CTR_XLATE == 0 {
                return Some(b);
            }
            if b == 0xf0 {
                self.xlate_break = true;
                continue;
            }
            let t = scancodes::translate(b);
            let brk = std::mem::take(&mut self.xlate_break);
            return Some(if brk { t | 0x80 } else { t });
        }
    }

    pub fn read_data(&mut self) -> u8 {
        if let Some((b, _)) = self.obuf.take() {
            self.last_out = b;
            self.fill();
        }
        self.last_out
    }

    pub fn write_command(&mut self, cmd: u8) {
        self.last_was_command = true;
        self.pending = Pending::Keyboard;
        let has_aux = self.aux.is_some();
        match cmd {
            CMD_READ_CTR => self.push(self.ctr),
            CMD_WRITE_CTR => self.pending = Pending::Ctr,
            CMD_AUX_DISABLE => self.ctr |= CTR_AUX_DISABLE,
            CMD_AUX_ENABLE => {
                self.ctr &= !CTR_AUX_DISABLE;
                self.fill();
            }
            // 0x00: the aux port works; 0x01 ("clock line stuck low") tells
            // Linux there is no PS/2 mouse port.
            CMD_AUX_TEST => self.push(if has_aux { 0x00 } else { 0x01 }),
            CMD_SELF_TEST => {
                self.ctr |= CTR_SYS;
                self.push(0x55);
            }
            CMD_KBD_TEST => self.push(0x00),
            CMD_KBD_DISABLE => self.ctr |= CTR_KBD_DISABLE,
            CMD_KBD_ENABLE => {
                self.ctr &= !CTR_KBD_DISABLE;
                self.fill();
            }
            CMD_READ_INPUT => self.push(0x00),
            CMD_READ_OUTPUT => self.push(self.output_port),
            CMD_WRITE_OUTPUT => self.pending = Pending::OutputPort,
            CMD_WRITE_KBD_OUTBUF => self.pending = Pending::KbdOutbuf,
            // Without a mouse the loopback byte never comes back, so the
            // driver's aux loop test times out.
            CMD_WRITE_AUX_OUTBUF => self.pending = Pending::AuxOutbuf,
            CMD_WRITE_AUX => self.pending = Pending::Aux,
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
            Pending::Ctr => {
                self.ctr = b;
                self.fill();
            }
            Pending::OutputPort => {
                self.output_port = b;
                if b & 1 == 0 {
                    (self.on_reset)();
                }
            }
            Pending::KbdOutbuf => self.push(b),
            Pending::AuxOutbuf => {
                if self.aux.is_some() {
                    self.push_from(b, Source::Aux);
                }
            }
            Pending::Aux => {
                if let Some(aux) = &mut self.aux {
                    aux.mouse.command(b);
                }
                self.fill();
            }
            Pending::Keyboard => {
                // A new command starts the translation afresh.
                self.xlate_break = false;
                self.keyboard.command(b);
                self.fill();
            }
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

#[cfg(test)]
mod aux_tests {
    //! The controller with a keyboard and a mouse, driven as Linux's i8042,
    //! atkbd and psmouse drivers drive it.
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[derive(Default)]
    struct Count(AtomicUsize);
    impl IrqLine for Count {
        fn set_level(&self, l: bool) {
            if l {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
    }
    impl Count {
        fn get(&self) -> usize {
            self.0.load(Ordering::SeqCst)
        }
    }

    fn controller() -> (I8042, Arc<Count>, Arc<Count>) {
        let kbd = Arc::new(Count::default());
        let aux = Arc::new(Count::default());
        let c = I8042::new(Some(kbd.clone()), Box::new(|| {})).with_mouse(Some(aux.clone()));
        (c, kbd, aux)
    }

    /// Everything waiting, with whether each byte came from the aux port.
    fn drain(c: &mut I8042) -> Vec<(u8, bool)> {
        let mut v = Vec::new();
        while c.status() & STS_OBF != 0 {
            let aux = c.status() & STS_AUX_OBF != 0;
            v.push((c.read_data(), aux));
        }
        v
    }

    fn bytes(c: &mut I8042) -> Vec<u8> {
        drain(c).into_iter().map(|(b, _)| b).collect()
    }

    /// A byte to the mouse, as libps2 sends it through the controller.
    fn to_mouse(c: &mut I8042, b: u8) -> Vec<(u8, bool)> {
        c.write_command(CMD_WRITE_AUX);
        c.write_data(b);
        drain(c)
    }

    fn ctr(c: &mut I8042) -> u8 {
        c.write_command(CMD_READ_CTR);
        c.read_data()
    }

    #[test]
    fn linux_aux_port_checks_find_a_mouse_port() {
        let (mut c, _, aux) = controller();
        // i8042_check_aux: the loopback comes back as aux data.
        c.write_command(CMD_WRITE_AUX_OUTBUF);
        c.write_data(0x5a);
        assert_eq!(drain(&mut c), [(0x5a, true)]);
        c.write_command(CMD_AUX_TEST);
        assert_eq!(bytes(&mut c), [0x00]);
        // Bit assignment test: 0xa7 sets, 0xa8 clears the aux disable bit.
        c.write_command(CMD_AUX_DISABLE);
        assert_ne!(ctr(&mut c) & CTR_AUX_DISABLE, 0);
        c.write_command(CMD_AUX_ENABLE);
        assert_eq!(ctr(&mut c) & CTR_AUX_DISABLE, 0);
        // IRQ delivery test: aux interrupt on, loopback 0xa5 raises IRQ 12.
        let before = aux.get();
        let v = ctr(&mut c) | CTR_AUX_INT;
        c.write_command(CMD_WRITE_CTR);
        c.write_data(v);
        c.write_command(CMD_WRITE_AUX_OUTBUF);
        c.write_data(0xa5);
        assert_eq!(aux.get(), before + 1);
        assert_ne!(c.status() & STS_AUX_OBF, 0);
        assert_eq!(c.read_data(), 0xa5);
        assert_eq!(c.status() & (STS_OBF | STS_AUX_OBF), 0);
    }

    #[test]
    fn psmouse_probe_and_imex_detection() {
        let (mut c, kbd, aux) = controller();
        c.write_command(CMD_WRITE_CTR);
        c.write_data(CTR_KBD_INT | CTR_AUX_INT | CTR_SYS | CTR_XLATE);
        // psmouse_probe: get id, then reset-and-disable.
        assert_eq!(to_mouse(&mut c, 0xf2), [(0xfa, true), (0x00, true)]);
        assert_eq!(to_mouse(&mut c, 0xf6), [(0xfa, true)]);
        // Reset with BAT.
        let r: Vec<u8> = to_mouse(&mut c, 0xff).into_iter().map(|x| x.0).collect();
        assert_eq!(r, [0xfa, 0xaa, 0x00]);
        // Wheel knock, then the 5-button one.
        for rate in [200, 100, 80, 200, 200, 80] {
            assert_eq!(to_mouse(&mut c, 0xf3), [(0xfa, true)]);
            assert_eq!(to_mouse(&mut c, rate), [(0xfa, true)]);
        }
        assert_eq!(to_mouse(&mut c, 0xf2), [(0xfa, true), (0x04, true)]);
        // Mouse bytes interrupt on 12 only, never on 1.
        assert_eq!(kbd.get(), 0);
        assert!(aux.get() >= 19);
        // Enable streaming; a move comes as one 4-byte packet.
        to_mouse(&mut c, 0xf4);
        c.mouse_event(2, -1, -1, mouse::BTN_RIGHT);
        assert_eq!(bytes(&mut c), [0x0a, 2, 1, 0x01]);
    }

    #[test]
    fn aux_clock_disable_holds_mouse_bytes() {
        let (mut c, _, aux) = controller();
        c.write_command(CMD_WRITE_CTR);
        c.write_data(CTR_KBD_INT | CTR_AUX_INT | CTR_SYS | CTR_XLATE);
        to_mouse(&mut c, 0xf4);
        c.write_command(CMD_AUX_DISABLE);
        let before = aux.get();
        c.mouse_event(1, 0, 0, 0);
        assert_eq!(c.status() & STS_OBF, 0, "held while the aux clock is off");
        assert_eq!(aux.get(), before);
        c.write_command(CMD_AUX_ENABLE);
        assert_eq!(aux.get(), before + 1);
        assert_eq!(bytes(&mut c), [0x08, 1, 0]);
        assert_eq!(aux.get(), before + 3, "one IRQ 12 per byte");
        // Aux interrupt off: data arrives, no IRQ 12.
        c.write_command(CMD_WRITE_CTR);
        c.write_data(CTR_KBD_INT | CTR_SYS | CTR_XLATE);
        c.mouse_event(0, 1, 0, 0);
        assert_eq!(aux.get(), before + 3);
        assert_eq!(drain(&mut c), [(0x28, true), (0, true), (0xff, true)]);
    }

    #[test]
    fn keys_are_translated_to_set_1_unless_translation_is_off() {
        let (mut c, kbd, _) = controller();
        let before = kbd.get();
        c.key_event(30, true); // A
        c.key_event(30, false);
        c.key_event(105, true); // Left arrow
        c.key_event(105, false);
        assert_eq!(
            drain(&mut c),
            [
                (0x1e, false),
                (0x9e, false),
                (0xe0, false),
                (0x4b, false),
                (0xe0, false),
                (0xcb, false)
            ]
        );
        assert_eq!(kbd.get(), before + 6, "IRQ 1 per byte");
        // Identify reads as an MF2 keyboard in translated mode.
        c.write_data(0xf2);
        assert_eq!(bytes(&mut c), [0xfa, 0xab, 0x41]);
        // Translation off: raw set 2.
        let v = ctr(&mut c) & !CTR_XLATE;
        c.write_command(CMD_WRITE_CTR);
        c.write_data(v);
        c.key_event(30, false);
        assert_eq!(bytes(&mut c), [0xf0, 0x1c]);
        c.write_data(0xf2);
        assert_eq!(bytes(&mut c), [0xfa, 0xab, 0x83]);
    }

    #[test]
    fn keyboard_disable_holds_keys_and_overrun_translates() {
        let (mut c, _, _) = controller();
        c.write_command(CMD_KBD_DISABLE);
        for _ in 0..50 {
            c.key_event(57, true);
        }
        assert_eq!(c.status() & STS_OBF, 0);
        c.write_command(CMD_KBD_ENABLE);
        assert_eq!(bytes(&mut c), [0x39; 50], "every held key arrives");
        // Past the keyboard's backlog the guest gets the overrun code.
        c.write_command(CMD_KBD_DISABLE);
        for _ in 0..keyboard::PENDING_KEYS + 100 {
            c.key_event(57, true);
        }
        c.write_command(CMD_KBD_ENABLE);
        let b = bytes(&mut c);
        assert_eq!(b[0], 0x39);
        assert!(b.len() >= keyboard::PENDING_KEYS);
        assert!(b.contains(&0xff), "set 1 overrun code after translation");
    }

    #[test]
    fn hostile_byte_sequences_do_not_wedge_the_controller() {
        let (mut c, _, _) = controller();
        for i in 0..5000u32 {
            let b = (i.wrapping_mul(2654435761) >> 13) as u8;
            match i % 3 {
                0 if b != CMD_PULSE_RESET && b < 0xf0 && b != CMD_WRITE_OUTPUT => {
                    c.write_command(b)
                }
                1 => c.write_data(b),
                _ => {
                    c.read_data();
                }
            }
            c.key_event(u16::from(b), b & 1 == 0);
            c.mouse_event(i32::from(b) - 128, 7, 1, b);
        }
        // Still answers the self test.
        drain(&mut c);
        c.write_command(CMD_SELF_TEST);
        assert_eq!(bytes(&mut c), [0x55]);
        c.write_command(CMD_WRITE_CTR);
        c.write_data(CTR_SYS | CTR_XLATE);
        c.write_command(CMD_KBD_ENABLE);
        c.write_command(CMD_AUX_ENABLE);
        assert_eq!(to_mouse(&mut c, 0xff)[..1], [(0xfa, true)]);
    }
}
