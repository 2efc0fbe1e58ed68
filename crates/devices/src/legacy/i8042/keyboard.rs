//! The PS/2 keyboard behind the i8042's first port: its command set (reset,
//! identify, scan code set, LEDs, typematic, scanning on/off, echo, resend,
//! defaults) and its 16-byte output buffer, filled from key events.
//!
//! It knows nothing of the controller: no status bits, no interrupts, no
//! set 1 translation (the controller does that to the bytes it takes).

use super::queue::OutputQueue;

use std::collections::VecDeque;

use super::scancodes::{encode, ScanSet};

/// A real keyboard's buffer size.
pub const KBD_QUEUE: usize = 16;
/// Key events from the host that wait for room in the buffer. A person (or
/// a VNC client sending a whole string at once) types faster than a busy
/// guest reads, and a real keyboard would not have lost those keys: they
/// are pressed one by one as the buffer drains. Past this many, keys are
/// dropped and the guest gets the overrun code.
pub const PENDING_KEYS: usize = 4096;

pub const ACK: u8 = 0xfa;
pub const RESEND: u8 = 0xfe;
pub const BAT_OK: u8 = 0xaa;
pub const ECHO: u8 = 0xee;

/// A command waiting for its parameter byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Param {
    Leds,
    Typematic,
    ScanSet,
}

pub struct Keyboard {
    queue: OutputQueue,
    /// Key events (evdev code, down) not yet in `queue`, oldest first.
    pending: VecDeque<(u16, bool)>,
    set: ScanSet,
    scanning: bool,
    param: Option<Param>,
    leds: u8,
    typematic: u8,
    /// Key events dropped because the buffer was full.
    dropped: u64,
}

impl Default for Keyboard {
    fn default() -> Self {
        Self::new()
    }
}

impl Keyboard {
    pub fn new() -> Keyboard {
        Keyboard {
            queue: OutputQueue::new(KBD_QUEUE),
            pending: VecDeque::new(),
            set: ScanSet::Set2,
            scanning: true,
            param: None,
            leds: 0,
            typematic: 0x2b,
            dropped: 0,
        }
    }

    fn defaults(&mut self) {
        self.set = ScanSet::Set2;
        self.typematic = 0x2b;
        self.leds = 0;
    }

    /// The LED state last set (bit 0 Scroll, 1 Num, 2 Caps Lock).
    pub fn leds(&self) -> u8 {
        self.leds
    }

    /// The scan code set the keyboard sends.
    pub fn scan_set(&self) -> ScanSet {
        self.set
    }

    /// Whether the keyboard sends key events.
    pub fn scanning(&self) -> bool {
        self.scanning
    }

    /// Key events lost to a full buffer so far.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// The next byte for the controller.
    pub fn pop(&mut self) -> Option<u8> {
        let b = self.queue.pop();
        self.refill();
        b
    }

    /// Bytes waiting in the buffer.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Key events waiting for room in the buffer.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Move waiting key events into the buffer while whole sequences fit,
    /// keeping one byte free for a reply or the overrun code.
    fn refill(&mut self) {
        let mut bytes = Vec::with_capacity(8);
        while let Some(&(code, down)) = self.pending.front() {
            bytes.clear();
            if !encode(code, down, self.set, &mut bytes) {
                log::debug!("i8042 keyboard: no scan code for key {code}");
                self.pending.pop_front();
                continue;
            }
            if bytes.len() >= self.queue.room() {
                break;
            }
            self.queue.push(&bytes);
            self.pending.pop_front();
        }
    }

    fn reply(&mut self, bytes: &[u8]) {
        self.queue.push(bytes);
    }

    /// Key `code` (evdev) went down or up.
    pub fn key(&mut self, code: u16, down: bool) {
        if !self.scanning {
            return;
        }
        if self.pending.len() < PENDING_KEYS {
            self.pending.push_back((code, down));
            self.refill();
            return;
        }
        // Even the backlog is full: the guest has not read its keyboard
        // for thousands of keys. Drop this one and say so once.
        self.dropped += 1;
        let overrun = self.set.overrun();
        if self.queue.back() != Some(overrun) && self.queue.room() > 0 {
            self.queue.push(&[overrun]);
        }
    }

    /// A byte the guest wrote to the keyboard.
    pub fn command(&mut self, b: u8) {
        if let Some(p) = self.param.take() {
            if self.parameter(p, b) {
                return;
            }
        }
        // Any command but resend cancels what was waiting to be sent.
        if b != RESEND {
            self.queue.clear();
        }
        // Reset and disable also forget the keys not yet sent.
        if b == 0xff || b == 0xf5 {
            self.pending.clear();
        }
        match b {
            0xff => {
                self.defaults();
                self.scanning = true;
                self.reply(&[ACK, BAT_OK]);
            }
            RESEND => {
                let last = self.queue.last_sent();
                self.reply(&[last]);
            }
            // Set-3-only key type commands: acknowledged, without effect.
            0xf7..=0xfd => self.reply(&[ACK]),
            0xf6 => {
                self.defaults();
                self.reply(&[ACK]);
            }
            0xf5 => {
                self.defaults();
                self.scanning = false;
                self.reply(&[ACK]);
            }
            0xf4 => {
                self.scanning = true;
                self.reply(&[ACK]);
            }
            0xf3 => {
                self.param = Some(Param::Typematic);
                self.reply(&[ACK]);
            }
            // Identify: an MF2 keyboard.
            0xf2 => self.reply(&[ACK, 0xab, 0x83]),
            0xf0 => {
                self.param = Some(Param::ScanSet);
                self.reply(&[ACK]);
            }
            ECHO => self.reply(&[ECHO]),
            0xed => {
                self.param = Some(Param::Leds);
                self.reply(&[ACK]);
            }
            _ => self.reply(&[RESEND]),
        }
    }

    /// The parameter `b` of command `p`; false when `b` is not a parameter
    /// but a new command (as keyboards take a command byte there).
    fn parameter(&mut self, p: Param, b: u8) -> bool {
        match p {
            Param::Leds | Param::Typematic if b & 0x80 != 0 => false,
            Param::Leds => {
                self.leds = b & 7;
                self.reply(&[ACK]);
                true
            }
            Param::Typematic => {
                self.typematic = b;
                self.reply(&[ACK]);
                true
            }
            Param::ScanSet => {
                match b {
                    0 => {
                        let n = match self.set {
                            ScanSet::Set1 => 1,
                            ScanSet::Set2 => 2,
                        };
                        self.reply(&[ACK, n]);
                    }
                    1 => {
                        self.set = ScanSet::Set1;
                        self.reply(&[ACK]);
                    }
                    2 => {
                        self.set = ScanSet::Set2;
                        self.reply(&[ACK]);
                    }
                    // Set 3 is not implemented: the guest reads back set 2.
                    _ => self.reply(&[RESEND]),
                }
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(k: &mut Keyboard) -> Vec<u8> {
        std::iter::from_fn(|| k.pop()).collect()
    }

    #[test]
    fn reset_identify_echo() {
        let mut k = Keyboard::new();
        k.command(0xff);
        assert_eq!(drain(&mut k), [ACK, BAT_OK]);
        k.command(0xf2);
        assert_eq!(drain(&mut k), [ACK, 0xab, 0x83]);
        k.command(0xee);
        assert_eq!(drain(&mut k), [0xee]);
        k.command(0x12);
        assert_eq!(drain(&mut k), [RESEND], "unknown command");
    }

    #[test]
    fn scan_set_select_and_query() {
        let mut k = Keyboard::new();
        k.command(0xf0);
        k.command(0x00);
        assert_eq!(drain(&mut k), [ACK, ACK, 2]);
        k.command(0xf0);
        k.command(0x01);
        assert_eq!(drain(&mut k), [ACK, ACK]);
        k.key(30, true);
        k.key(30, false);
        assert_eq!(drain(&mut k), [0x1e, 0x9e]);
        k.command(0xf0);
        k.command(0x03);
        assert_eq!(drain(&mut k), [ACK, RESEND], "set 3 refused");
        k.command(0xf0);
        k.command(0x00);
        assert_eq!(drain(&mut k), [ACK, ACK, 1]);
        k.command(0xff);
        drain(&mut k);
        assert_eq!(k.scan_set(), ScanSet::Set2, "reset restores set 2");
    }

    #[test]
    fn leds_typematic_and_a_command_in_place_of_a_parameter() {
        let mut k = Keyboard::new();
        k.command(0xed);
        k.command(0x05);
        assert_eq!(drain(&mut k), [ACK, ACK]);
        assert_eq!(k.leds(), 5);
        k.command(0xf3);
        k.command(0x20);
        assert_eq!(drain(&mut k), [ACK, ACK]);
        // LEDs then identify instead of the LED byte: identify runs.
        k.command(0xed);
        k.command(0xf2);
        assert_eq!(drain(&mut k), [ACK, 0xab, 0x83]);
        assert_eq!(k.leds(), 5);
    }

    #[test]
    fn scanning_off_drops_keys_and_resend_repeats() {
        let mut k = Keyboard::new();
        k.command(0xf5);
        assert_eq!(drain(&mut k), [ACK]);
        k.key(30, true);
        assert_eq!(k.queued(), 0);
        k.command(0xf4);
        drain(&mut k);
        k.key(103, true);
        assert_eq!(drain(&mut k), [0xe0, 0x75]);
        k.command(RESEND);
        assert_eq!(drain(&mut k), [0x75]);
    }

    #[test]
    fn a_burst_of_typing_is_held_back_and_delivered_in_order() {
        let mut k = Keyboard::new();
        // 200 keystrokes at once: the device buffer never exceeds 16 bytes,
        // and every key arrives, in order, as the guest reads.
        for _ in 0..100 {
            k.key(30, true);
            k.key(30, false);
            k.key(103, true);
            k.key(103, false);
            assert!(k.queued() <= KBD_QUEUE);
        }
        let mut bytes = Vec::new();
        while let Some(b) = k.pop() {
            assert!(k.queued() <= KBD_QUEUE);
            bytes.push(b);
        }
        let one: &[u8] = &[0x1c, 0xf0, 0x1c, 0xe0, 0x75, 0xe0, 0xf0, 0x75];
        assert_eq!(bytes, one.repeat(100));
        assert_eq!(k.dropped(), 0);
        assert_eq!(k.pending(), 0);
    }

    #[test]
    fn past_the_backlog_keys_are_dropped_with_an_overrun_mark() {
        let mut k = Keyboard::new();
        for i in 0..PENDING_KEYS + 1000 {
            k.key(103, i % 2 == 0);
            assert!(k.queued() <= KBD_QUEUE);
        }
        assert_eq!(k.pending(), PENDING_KEYS);
        assert!(k.dropped() > 990, "{}", k.dropped());
        let bytes = drain(&mut k);
        assert_eq!(&bytes[..5], &[0xe0, 0x75, 0xe0, 0xf0, 0x75]);
        assert!(bytes.contains(&0x00), "set 2 overrun code");
        // A command is answered; reset forgets what was waiting.
        for _ in 0..100 {
            k.key(30, true);
        }
        k.command(0xff);
        assert_eq!(drain(&mut k), [ACK, BAT_OK]);
        assert_eq!(k.pending(), 0);
    }
}
