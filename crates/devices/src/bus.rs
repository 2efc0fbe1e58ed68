//! Port-I/O and MMIO buses: ranges of addresses mapped to devices.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};
use thiserror::Error;

/// A device on the port-I/O bus.
pub trait PioDevice: Send {
    /// A read of `data.len()` bytes at `offset` from the range's base.
    fn read(&mut self, offset: u16, data: &mut [u8]);
    /// A write of `data.len()` bytes at `offset` from the range's base.
    fn write(&mut self, offset: u16, data: &[u8]);
}

/// A device on the MMIO bus.
pub trait MmioDevice: Send {
    fn read(&mut self, offset: u64, data: &mut [u8]);
    fn write(&mut self, offset: u64, data: &[u8]);
}

/// An interrupt line (GSI) a device drives.
pub trait IrqLine: Send + Sync {
    fn set_level(&self, level: bool);
    /// Raise then lower the line (an edge).
    fn pulse(&self) {
        self.set_level(true);
        self.set_level(false);
    }
}

/// Sends message-signalled interrupts.
pub trait MsiSender: Send + Sync {
    fn send_msi(&self, address: u64, data: u32);
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum BusError {
    /// Two devices claim overlapping ranges.
    #[error("bus range {base:#x}+{len:#x} overlaps an existing device")]
    Overlap { base: u64, len: u64 },
    #[error("bus range {base:#x}+{len:#x} is empty or wraps")]
    BadRange { base: u64, len: u64 },
}

struct Entry<D: ?Sized> {
    len: u64,
    dev: Arc<Mutex<D>>,
}

/// A bus of address ranges, generic over the device kind. Ranges may be
/// added and removed while vCPUs dispatch through it (a guest moving a PCI
/// BAR): lookups take a read lock only long enough to clone the device's
/// handle, so a device may itself change the map (a config write).
pub struct Bus<D: ?Sized> {
    ranges: RwLock<BTreeMap<u64, Entry<D>>>,
}

impl<D: ?Sized> Default for Bus<D> {
    fn default() -> Self {
        Bus {
            ranges: RwLock::new(BTreeMap::new()),
        }
    }
}

impl<D: ?Sized> Bus<D> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Map `dev` at `base .. base + len`.
    pub fn insert(&self, base: u64, len: u64, dev: Arc<Mutex<D>>) -> Result<(), BusError> {
        if len == 0 || base.checked_add(len).is_none() {
            return Err(BusError::BadRange { base, len });
        }
        let mut ranges = self.ranges.write().unwrap_or_else(|e| e.into_inner());
        if let Some((b, e)) = ranges.range(..base + len).next_back() {
            if b + e.len > base {
                return Err(BusError::Overlap { base, len });
            }
        }
        ranges.insert(base, Entry { len, dev });
        Ok(())
    }

    /// Remove the device mapped at exactly `base`.
    pub fn remove(&self, base: u64) -> bool {
        let mut ranges = self.ranges.write().unwrap_or_else(|e| e.into_inner());
        ranges.remove(&base).is_some()
    }

    /// The device covering `addr`, with the offset of `addr` in its range.
    pub fn find(&self, addr: u64) -> Option<(u64, Arc<Mutex<D>>)> {
        let ranges = self.ranges.read().unwrap_or_else(|e| e.into_inner());
        let (b, e) = ranges.range(..=addr).next_back()?;
        if addr - b < e.len {
            Some((addr - b, e.dev.clone()))
        } else {
            None
        }
    }
}

/// Ports 0 to 0xffff.
pub type IoBus = Bus<dyn PioDevice>;
/// Guest-physical addresses not backed by RAM.
pub type MmioBus = Bus<dyn MmioDevice>;

impl Bus<dyn PioDevice> {
    /// Dispatch a port read; unclaimed ports read as all ones. Returns whether a device claimed it.
    pub fn pio_read(&self, port: u16, data: &mut [u8]) -> bool {
        match self.find(u64::from(port)) {
            Some((off, dev)) => {
                lock(&dev).read(off as u16, data);
                true
            }
            None => {
                data.fill(0xff);
                false
            }
        }
    }

    /// Dispatch a port write; unclaimed ports ignore it. Returns whether a device claimed it.
    pub fn pio_write(&self, port: u16, data: &[u8]) -> bool {
        match self.find(u64::from(port)) {
            Some((off, dev)) => {
                lock(&dev).write(off as u16, data);
                true
            }
            None => false,
        }
    }
}

impl Bus<dyn MmioDevice> {
    /// Dispatch an MMIO read; unclaimed addresses read as all ones.
    pub fn mmio_read(&self, addr: u64, data: &mut [u8]) -> bool {
        match self.find(addr) {
            Some((off, dev)) => {
                lock(&dev).read(off, data);
                true
            }
            None => {
                data.fill(0xff);
                false
            }
        }
    }

    /// Dispatch an MMIO write; unclaimed addresses ignore it.
    pub fn mmio_write(&self, addr: u64, data: &[u8]) -> bool {
        match self.find(addr) {
            Some((off, dev)) => {
                lock(&dev).write(off, data);
                true
            }
            None => false,
        }
    }
}

/// Lock a device, recovering from a poisoned lock (a device that panicked
/// keeps its last state rather than taking the VM down with it).
pub fn lock<D: ?Sized>(m: &Mutex<D>) -> std::sync::MutexGuard<'_, D> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Echo(u8);
    impl PioDevice for Echo {
        fn read(&mut self, offset: u16, data: &mut [u8]) {
            data.fill(self.0.wrapping_add(offset as u8));
        }
        fn write(&mut self, _offset: u16, data: &[u8]) {
            self.0 = data[0];
        }
    }

    #[test]
    fn dispatch_and_overlap() {
        let bus = IoBus::new();
        bus.insert(0x3f8, 8, Arc::new(Mutex::new(Echo(1)))).unwrap();
        assert_eq!(
            bus.insert(0x3f0, 9, Arc::new(Mutex::new(Echo(0)))),
            Err(BusError::Overlap {
                base: 0x3f0,
                len: 9
            })
        );
        bus.insert(0x3f0, 8, Arc::new(Mutex::new(Echo(0)))).unwrap();
        let mut b = [0u8; 1];
        assert!(bus.pio_read(0x3fa, &mut b));
        assert_eq!(b[0], 3);
        assert!(bus.pio_write(0x3f8, &[7]));
        bus.pio_read(0x3f9, &mut b);
        assert_eq!(b[0], 8);
        assert!(!bus.pio_read(0x400, &mut b));
        assert_eq!(b[0], 0xff);
    }
}
