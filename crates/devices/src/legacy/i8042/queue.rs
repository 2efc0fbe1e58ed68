//! A PS/2 device's output buffer: a bounded byte queue that remembers the
//! last byte handed to the controller (for the resend command, 0xfe).

use std::collections::VecDeque;

use crate::state::{StateError, StateReader, StateWriter};

pub(super) struct OutputQueue {
    bytes: VecDeque<u8>,
    cap: usize,
    last_sent: u8,
}

impl OutputQueue {
    pub fn new(cap: usize) -> OutputQueue {
        OutputQueue {
            bytes: VecDeque::with_capacity(cap),
            cap,
            last_sent: 0,
        }
    }

    /// The next byte for the controller.
    pub fn pop(&mut self) -> Option<u8> {
        let b = self.bytes.pop_front()?;
        self.last_sent = b;
        Some(b)
    }

    /// What `pop` last returned.
    pub fn last_sent(&self) -> u8 {
        self.last_sent
    }

    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Bytes that still fit.
    pub fn room(&self) -> usize {
        self.cap - self.bytes.len()
    }

    pub fn back(&self) -> Option<u8> {
        self.bytes.back().copied()
    }

    /// Queue each byte that fits; the rest is dropped.
    pub fn push(&mut self, bytes: &[u8]) {
        let n = bytes.len().min(self.room());
        self.bytes.extend(&bytes[..n]);
    }

    pub fn clear(&mut self) {
        self.bytes.clear();
    }

    pub fn save_state(&self, w: &mut StateWriter) {
        let b: Vec<u8> = self.bytes.iter().copied().collect();
        w.bytes(&b);
        w.u8(self.last_sent);
    }

    pub fn restore_state(&mut self, r: &mut StateReader<'_>) -> Result<(), StateError> {
        let b = r.bytes(self.cap, "PS/2 output queue")?;
        let last = r.u8("PS/2 last byte sent")?;
        self.bytes = b.iter().copied().collect();
        self.last_sent = last;
        Ok(())
    }
}
