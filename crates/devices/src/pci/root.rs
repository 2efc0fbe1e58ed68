//! PCI bus 0: the functions present, by device and function number. Config
//! accesses to absent functions read as all ones, as on a real bus.

use super::host_bridge::PciHostBridge;
use super::PciDevice;
use crate::bus::lock;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use thiserror::Error;

/// A function's place on bus 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct PciAddress {
    pub device: u8,
    pub function: u8,
}

impl fmt::Display for PciAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "00:{:02x}.{}", self.device, self.function)
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum PciError {
    #[error("PCI slot {0} is already taken")]
    SlotTaken(PciAddress),
    #[error("PCI address {0} is out of range (device 0-31, function 0-7)")]
    BadAddress(PciAddress),
    #[error("no free PCI slot on bus 0")]
    NoFreeSlot,
}

/// Bus 0 with its host bridge at 00:00.0.
pub struct PciRoot {
    functions: BTreeMap<PciAddress, Arc<Mutex<dyn PciDevice>>>,
}

impl Default for PciRoot {
    fn default() -> Self {
        Self::new()
    }
}

impl PciRoot {
    /// A bus holding only the host bridge.
    pub fn new() -> PciRoot {
        let mut functions: BTreeMap<PciAddress, Arc<Mutex<dyn PciDevice>>> = BTreeMap::new();
        functions.insert(
            PciAddress {
                device: 0,
                function: 0,
            },
            Arc::new(Mutex::new(PciHostBridge::new())),
        );
        PciRoot { functions }
    }

    /// Put `dev` at `addr`.
    pub fn add_device_at(
        &mut self,
        addr: PciAddress,
        dev: Arc<Mutex<dyn PciDevice>>,
    ) -> Result<(), PciError> {
        if addr.device > 31 || addr.function > 7 {
            return Err(PciError::BadAddress(addr));
        }
        if self.functions.contains_key(&addr) {
            return Err(PciError::SlotTaken(addr));
        }
        self.functions.insert(addr, dev);
        Ok(())
    }

    /// Put `dev` at function 0 of the first free device number.
    pub fn add_device(&mut self, dev: Arc<Mutex<dyn PciDevice>>) -> Result<PciAddress, PciError> {
        let addr = (1..32)
            .map(|device| PciAddress {
                device,
                function: 0,
            })
            .find(|a| !self.functions.keys().any(|k| k.device == a.device))
            .ok_or(PciError::NoFreeSlot)?;
        self.add_device_at(addr, dev)?;
        Ok(addr)
    }

    /// Whether a function answers at `addr`.
    pub fn is_present(&self, addr: PciAddress) -> bool {
        self.functions.contains_key(&addr)
    }

    /// A config read; absent functions and bad accesses read as all ones.
    pub fn config_read(&self, addr: PciAddress, offset: u16, data: &mut [u8]) {
        match self.functions.get(&addr) {
            Some(dev) if valid_access(offset, data.len()) => lock(dev).read_config(offset, data),
            _ => data.fill(0xff),
        }
    }

    /// A config write; absent functions and bad accesses ignore it.
    pub fn config_write(&self, addr: PciAddress, offset: u16, data: &[u8]) {
        if let Some(dev) = self.functions.get(&addr) {
            if valid_access(offset, data.len()) {
                lock(dev).write_config(offset, data);
            }
        }
    }
}

/// 1, 2 or 4 bytes, naturally aligned, inside the 256-byte space.
fn valid_access(offset: u16, len: usize) -> bool {
    matches!(len, 1 | 2 | 4) && usize::from(offset) % len == 0 && usize::from(offset) + len <= 256
}
