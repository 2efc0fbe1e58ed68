//! PCI bus 0: the functions present, by device and function number. Config
//! accesses to absent functions read as all ones, as on a real bus.

use super::{BarKind, BarRegion, PciDevice, RamMapper};
use crate::bus::{lock, IoBus, MmioBus, MmioDevice, PioDevice};
use crate::state::{StateError, StateReader, StateWriter};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, Weak};
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

/// Where BARs get mapped: the port and MMIO buses (weak: the port bus
/// holds the configuration ports that hold this root), and the machine's
/// mapper for BARs backed by host memory.
#[derive(Clone)]
pub struct BarBuses {
    pub io: Weak<IoBus>,
    pub mmio: Weak<MmioBus>,
    pub ram: Option<Arc<dyn RamMapper>>,
}

/// Bus 0 with its host bridge at 00:00.0.
pub struct PciRoot {
    functions: BTreeMap<PciAddress, Arc<Mutex<dyn PciDevice>>>,
    buses: Option<BarBuses>,
    /// What each function's BARs are mapped as now.
    mapped: Mutex<BTreeMap<(PciAddress, u8), BarRegion>>,
}

/// A bus range that forwards to one BAR of a PCI function.
struct BarHandle {
    dev: Arc<Mutex<dyn PciDevice>>,
    bar: u8,
}

impl PioDevice for BarHandle {
    fn read(&mut self, offset: u16, data: &mut [u8]) {
        lock(&self.dev).bar_read(self.bar, u64::from(offset), data);
    }
    fn write(&mut self, offset: u16, data: &[u8]) {
        lock(&self.dev).bar_write(self.bar, u64::from(offset), data);
    }
}

impl MmioDevice for BarHandle {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        lock(&self.dev).bar_read(self.bar, offset, data);
    }
    fn write(&mut self, offset: u64, data: &[u8]) {
        lock(&self.dev).bar_write(self.bar, offset, data);
    }
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
            Arc::new(Mutex::new(crate::chipset::I440fx::default())),
        );
        PciRoot {
            functions,
            buses: None,
            mapped: Mutex::new(BTreeMap::new()),
        }
    }

    /// Replace the host bridge at 00:00.0 (with one wired to the memory map).
    pub fn set_host_bridge(&mut self, dev: Arc<Mutex<dyn PciDevice>>) {
        self.functions.insert(
            PciAddress {
                device: 0,
                function: 0,
            },
            dev,
        );
    }

    /// Map BARs on these buses from now on (and map what decodes already).
    pub fn attach_buses(&mut self, buses: BarBuses) {
        self.buses = Some(buses);
        let addrs: Vec<PciAddress> = self.functions.keys().copied().collect();
        for a in addrs {
            self.remap(a);
        }
    }

    /// Bring `addr`'s bus ranges in line with what its BARs decode now.
    fn remap(&self, addr: PciAddress) {
        let (Some(buses), Some(dev)) = (&self.buses, self.functions.get(&addr)) else {
            return;
        };
        let (Some(io), Some(mmio)) = (buses.io.upgrade(), buses.mmio.upgrade()) else {
            return;
        };
        let now = lock(dev).bar_regions();
        let mut mapped = lock(&self.mapped);
        for index in 0..=super::ROM_BAR {
            let old = mapped.get(&(addr, index)).copied();
            let new = now.iter().find(|r| r.index == index).copied();
            if old == new {
                continue;
            }
            let ram = lock(dev).bar_ram(index);
            let id =
                (u32::from(addr.device) << 6) | (u32::from(addr.function) << 3) | u32::from(index);
            if let Some(o) = old {
                match (&ram, &buses.ram) {
                    (Some(r), Some(m)) => m.map(id, r, None),
                    _ if o.kind == BarKind::Io => {
                        io.remove(o.address);
                    }
                    _ => {
                        mmio.remove(o.address);
                    }
                }
                mapped.remove(&(addr, index));
            }
            let Some(n) = new else { continue };
            let handle = BarHandle {
                dev: dev.clone(),
                bar: index,
            };
            let placed = match (&ram, &buses.ram) {
                (Some(r), Some(m)) => {
                    m.map(id, r, Some(n.address));
                    Ok(())
                }
                _ if n.kind == BarKind::Io => {
                    io.insert(n.address, n.size, Arc::new(Mutex::new(handle)))
                }
                _ => mmio.insert(n.address, n.size, Arc::new(Mutex::new(handle))),
            };
            match placed {
                Ok(()) => {
                    mapped.insert((addr, index), n);
                }
                Err(e) => crate::guest_warn!(
                    "pci {addr}: BAR {index} at {:#x} not mapped: {e}",
                    n.address
                ),
            }
        }
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
                self.remap(addr);
            }
        }
    }
}

impl PciRoot {
    /// Save every function's state, by address.
    pub fn save_state(&self, w: &mut StateWriter) {
        w.u32(self.functions.len() as u32);
        for (addr, dev) in &self.functions {
            w.u8(addr.device);
            w.u8(addr.function);
            w.nested(&*lock(dev));
        }
    }

    /// `Snapshot::set_images_active` on every function, all or nothing
    /// when taking them back.
    pub fn set_images_active(&self, active: bool) -> Result<(), String> {
        let functions: Vec<_> = self
            .functions
            .iter()
            .map(|(addr, dev)| (format!("PCI {addr}"), &**dev))
            .collect();
        crate::state::set_images_active_all(&functions, active)
    }

    /// Restore every function (the same functions at the same addresses as
    /// saved), then map their BARs where the saved configuration puts them.
    pub fn restore_state(&mut self, r: &mut StateReader<'_>) -> Result<(), StateError> {
        let n = r.u32("PCI function count")? as usize;
        if n != self.functions.len() {
            return Err(StateError::Invalid(format!(
                "the snapshot has {n} PCI functions, this machine {}",
                self.functions.len()
            )));
        }
        let addrs: Vec<PciAddress> = self.functions.keys().copied().collect();
        for want in &addrs {
            let got = PciAddress {
                device: r.u8("PCI device number")?,
                function: r.u8("PCI function number")?,
            };
            if got != *want {
                return Err(StateError::Invalid(format!(
                    "the snapshot has a PCI function at {got}, this machine at {want}"
                )));
            }
            let dev = self.functions[want].clone();
            r.nested(&mut *lock(&dev), "PCI function")?;
        }
        for a in addrs {
            self.remap(a);
        }
        Ok(())
    }
}

/// 1, 2 or 4 bytes, naturally aligned, inside the 256-byte space.
fn valid_access(offset: u16, len: usize) -> bool {
    matches!(len, 1 | 2 | 4) && usize::from(offset) % len == 0 && usize::from(offset) + len <= 256
}
