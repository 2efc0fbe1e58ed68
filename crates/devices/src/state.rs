//! Device state for snapshots: the `Snapshot` trait every stateful device
//! implements, and the little-endian writer and bounds-checked reader its
//! `save_state`/`restore_state` use.
//!
//! A device's state is a flat byte string in its own versioned layout; the
//! machine wraps each one in a section (name, version, length, checksum).
//! The reader refuses short input, trailing bytes and out-of-range values,
//! so a restored device is always in a state the device could have reached.
//! This module must not know the snapshot file's format nor which devices a
//! machine has.

use thiserror::Error;

/// Why a device refused its saved state.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum StateError {
    /// The state ended before `what` was read.
    #[error("the saved state ends early (reading {what})")]
    Truncated { what: &'static str },
    /// Bytes were left after the device read everything it saved.
    #[error("{0} unexpected bytes after the saved state")]
    Trailing(usize),
    /// A value the device could never have had.
    #[error("{0}")]
    Invalid(String),
}

impl StateError {
    pub fn invalid(msg: impl Into<String>) -> StateError {
        StateError::Invalid(msg.into())
    }
}

/// A device whose state a snapshot saves and restores.
///
/// `restore_state` runs on a device freshly built from the same
/// configuration, before any vCPU runs. It checks everything it reads
/// (lengths, indices, enums) and returns an error rather than adopt a state
/// the device could not have reached.
pub trait Snapshot: Send {
    /// The layout version `save_state` writes (and `restore_state` reads).
    fn state_version(&self) -> u16 {
        1
    }
    fn save_state(&self, w: &mut StateWriter);
    fn restore_state(&mut self, r: &mut StateReader<'_>) -> Result<(), StateError>;
    /// Live migration hands the machine to another process: `false` lets go
    /// of what that process needs to run this device (a disk image's lock,
    /// once its data is on stable storage), `true` takes it back. Nothing to
    /// do by default.
    fn set_images_active(&mut self, _active: bool) -> Result<(), String> {
        Ok(())
    }
}

/// Builds a device's state, little endian.
#[derive(Debug, Default, Clone)]
pub struct StateWriter {
    buf: Vec<u8>,
}

impl StateWriter {
    pub fn new() -> StateWriter {
        StateWriter::default()
    }
    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }
    pub fn bool(&mut self, v: bool) {
        self.buf.push(u8::from(v));
    }
    pub fn u16(&mut self, v: u16) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub fn i64(&mut self, v: i64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    /// Bytes of a fixed length the reader knows.
    pub fn raw(&mut self, b: &[u8]) {
        self.buf.extend_from_slice(b);
    }
    /// Bytes preceded by their length (u32).
    pub fn bytes(&mut self, b: &[u8]) {
        self.u32(u32::try_from(b.len()).unwrap_or(u32::MAX));
        self.buf
            .extend_from_slice(&b[..b.len().min(u32::MAX as usize)]);
    }
    /// The saved state of a nested device, preceded by its length.
    pub fn nested(&mut self, dev: &dyn Snapshot) {
        let mut w = StateWriter::new();
        dev.save_state(&mut w);
        self.u16(dev.state_version());
        self.bytes(&w.buf);
    }
    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }
    pub fn len(&self) -> usize {
        self.buf.len()
    }
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
}

/// Reads a device's state back, refusing anything short or out of range.
#[derive(Debug, Clone)]
pub struct StateReader<'a> {
    data: &'a [u8],
}

impl<'a> StateReader<'a> {
    pub fn new(data: &'a [u8]) -> StateReader<'a> {
        StateReader { data }
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], StateError> {
        if self.data.len() < n {
            return Err(StateError::Truncated { what });
        }
        let (head, rest) = self.data.split_at(n);
        self.data = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], StateError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N, what)?);
        Ok(a)
    }

    pub fn u8(&mut self, what: &'static str) -> Result<u8, StateError> {
        Ok(self.take(1, what)?[0])
    }
    /// A bool saved as 0 or 1 (anything else is refused).
    pub fn bool(&mut self, what: &'static str) -> Result<bool, StateError> {
        match self.u8(what)? {
            0 => Ok(false),
            1 => Ok(true),
            v => Err(StateError::Invalid(format!("{what}: {v} is not a boolean"))),
        }
    }
    pub fn u16(&mut self, what: &'static str) -> Result<u16, StateError> {
        Ok(u16::from_le_bytes(self.array(what)?))
    }
    pub fn u32(&mut self, what: &'static str) -> Result<u32, StateError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }
    pub fn u64(&mut self, what: &'static str) -> Result<u64, StateError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }
    pub fn i64(&mut self, what: &'static str) -> Result<i64, StateError> {
        Ok(i64::from_le_bytes(self.array(what)?))
    }
    /// A value that must be at most `max`.
    pub fn u8_max(&mut self, max: u8, what: &'static str) -> Result<u8, StateError> {
        let v = self.u8(what)?;
        if v > max {
            return Err(StateError::Invalid(format!(
                "{what}: {v} is out of range (at most {max})"
            )));
        }
        Ok(v)
    }
    /// `n` bytes of a fixed length.
    pub fn raw(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], StateError> {
        self.take(n, what)
    }
    /// Length-prefixed bytes, at most `max` of them.
    pub fn bytes(&mut self, max: usize, what: &'static str) -> Result<&'a [u8], StateError> {
        let n = self.u32(what)? as usize;
        if n > max {
            return Err(StateError::Invalid(format!(
                "{what}: {n} bytes, more than the {max} the device holds"
            )));
        }
        self.take(n, what)
    }
    /// Restore `dev` from a nested state `StateWriter::nested` wrote.
    pub fn nested(&mut self, dev: &mut dyn Snapshot, what: &'static str) -> Result<(), StateError> {
        let version = self.u16(what)?;
        if version != dev.state_version() {
            return Err(StateError::Invalid(format!(
                "{what}: state version {version}, this Kite reads version {}",
                dev.state_version()
            )));
        }
        let body = self.bytes(usize::MAX, what)?;
        let mut r = StateReader::new(body);
        dev.restore_state(&mut r)?;
        r.finish()
    }
    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.data.len()
    }
    /// Everything must have been read.
    pub fn finish(&self) -> Result<(), StateError> {
        if self.data.is_empty() {
            Ok(())
        } else {
            Err(StateError::Trailing(self.data.len()))
        }
    }
}

/// Save `dev` into a fresh byte string.
pub fn save_to_vec(dev: &dyn Snapshot) -> Vec<u8> {
    let mut w = StateWriter::new();
    dev.save_state(&mut w);
    w.into_bytes()
}

/// Restore `dev` from exactly `data`.
pub fn restore_from(dev: &mut dyn Snapshot, data: &[u8]) -> Result<(), StateError> {
    let mut r = StateReader::new(data);
    dev.restore_state(&mut r)?;
    r.finish()
}

/// Restore a virtio device's own state from exactly `data`.
pub fn restore_from_reader(
    dev: &mut dyn crate::virtio::VirtioDevice,
    data: &[u8],
) -> Result<(), StateError> {
    let mut r = StateReader::new(data);
    dev.restore_state(&mut r)?;
    r.finish()
}

/// `set(item, active)` on each item in turn. Taking images back (`active`)
/// is all or nothing: when one refuses, those already taken back are let
/// go again. The error is the refusing item's, with its index.
pub fn activate_all<T, E>(
    items: &[T],
    active: bool,
    set: impl Fn(&T, bool) -> Result<(), E>,
) -> Result<(), (usize, E)> {
    for (i, item) in items.iter().enumerate() {
        if let Err(e) = set(item, active) {
            if active {
                for done in &items[..i] {
                    let _ = set(done, false);
                }
            }
            return Err((i, e));
        }
    }
    Ok(())
}

/// `Snapshot::set_images_active` on each named device, all or nothing
/// (`activate_all`). The error names the device that refused.
pub fn set_images_active_all<T: Snapshot + ?Sized>(
    devices: &[(String, &std::sync::Mutex<T>)],
    active: bool,
) -> Result<(), String> {
    activate_all(devices, active, |(_, dev), on| {
        crate::bus::lock(dev).set_images_active(on)
    })
    .map_err(|(i, e)| format!("{}: {e}", devices[i].0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default, Debug, PartialEq)]
    struct Toy {
        a: u8,
        b: u32,
        flag: bool,
        fifo: Vec<u8>,
    }

    impl Snapshot for Toy {
        fn save_state(&self, w: &mut StateWriter) {
            w.u8(self.a);
            w.u32(self.b);
            w.bool(self.flag);
            w.bytes(&self.fifo);
        }
        fn restore_state(&mut self, r: &mut StateReader<'_>) -> Result<(), StateError> {
            let a = r.u8_max(9, "a")?;
            let b = r.u32("b")?;
            let flag = r.bool("flag")?;
            let fifo = r.bytes(16, "fifo")?.to_vec();
            *self = Toy { a, b, flag, fifo };
            Ok(())
        }
    }

    fn toy() -> Toy {
        Toy {
            a: 7,
            b: 0xdead_beef,
            flag: true,
            fifo: b"abc".to_vec(),
        }
    }

    #[test]
    fn round_trip() {
        let bytes = save_to_vec(&toy());
        let mut t = Toy::default();
        restore_from(&mut t, &bytes).unwrap();
        assert_eq!(t, toy());
    }

    #[test]
    fn every_truncation_is_refused() {
        let bytes = save_to_vec(&toy());
        for n in 0..bytes.len() {
            let mut t = Toy::default();
            assert!(
                restore_from(&mut t, &bytes[..n]).is_err(),
                "{n} bytes accepted"
            );
        }
    }

    #[test]
    fn out_of_range_values_and_trailing_bytes_are_refused() {
        let mut bytes = save_to_vec(&toy());
        let mut t = Toy::default();
        let mut long = bytes.clone();
        long.push(0);
        assert_eq!(restore_from(&mut t, &long), Err(StateError::Trailing(1)));
        bytes[0] = 10; // a > 9
        assert!(matches!(
            restore_from(&mut t, &bytes),
            Err(StateError::Invalid(_))
        ));
        let mut bytes = save_to_vec(&toy());
        bytes[5] = 2; // not a bool
        assert!(restore_from(&mut t, &bytes).is_err());
        let mut bytes = save_to_vec(&toy());
        bytes[6..10].copy_from_slice(&17u32.to_le_bytes()); // fifo longer than 16
        assert!(restore_from(&mut t, &bytes).is_err());
    }

    #[test]
    fn nested_states_check_their_version() {
        let mut w = StateWriter::new();
        w.nested(&toy());
        let bytes = w.into_bytes();
        let mut t = Toy::default();
        StateReader::new(&bytes).nested(&mut t, "toy").unwrap();
        assert_eq!(t, toy());
        let mut bad = bytes.clone();
        bad[0] = 2;
        assert!(StateReader::new(&bad).nested(&mut t, "toy").is_err());
    }
}
