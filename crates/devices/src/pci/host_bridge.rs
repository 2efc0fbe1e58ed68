//! The host bridge at 00:00.0: an Intel 440FX (8086:1237), class 06:00:00,
//! which Linux's PCI probe expects to find first.

use super::config_space::ConfigSpace;
use super::PciDevice;

pub const HOST_BRIDGE_VENDOR: u16 = 0x8086;
pub const HOST_BRIDGE_DEVICE: u16 = 0x1237;
const CLASS_HOST_BRIDGE: u32 = 0x06_00_00;

/// A host bridge with no BARs: a header and nothing else.
pub struct PciHostBridge {
    config: ConfigSpace,
}

impl Default for PciHostBridge {
    fn default() -> Self {
        Self::new()
    }
}

impl PciHostBridge {
    pub fn new() -> PciHostBridge {
        let mut config =
            ConfigSpace::new(HOST_BRIDGE_VENDOR, HOST_BRIDGE_DEVICE, CLASS_HOST_BRIDGE, 2);
        config.set_subsystem(0x1af4, 0x1100);
        PciHostBridge { config }
    }
}

impl PciDevice for PciHostBridge {
    fn read_config(&mut self, offset: u16, data: &mut [u8]) {
        self.config.read(offset, data);
    }

    fn write_config(&mut self, offset: u16, data: &[u8]) {
        self.config.write(offset, data);
    }
}
