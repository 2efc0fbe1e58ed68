//! The virtio devices a configuration asks for, on PCI bus 0: the disks
//! first (/dev/vda, vdb, ... in slot order), then the entropy device. Each
//! gets a BAR from the board's PCI window (mapped on the MMIO bus), INTx
//! routed as the DSDT's `_PRT` says, and MSI-X through the VM.

use std::sync::{Arc, Mutex};

use kite_devices::acpi::dsdt::pci_intx_gsi;
use kite_devices::pci::{Bar, BarAllocator, BarKind, PciAddress, PciRoot};
use kite_devices::virtio::pci_transport::{Interrupts, BAR_SIZE};
use kite_devices::virtio::{BlockDevice, RngDevice, VirtioDevice, VirtioPciDevice};
use kite_devices::MmioBus;
use kite_hypervisor::Vm;
use vm_memory::GuestMemoryMmap;

use crate::config::MachineConfig;
use crate::error::MachineError;
use crate::irq::{VmIrqLine, VmMsiSender};
use crate::memory::MemoryLayout;

/// Open every disk (checking locks) before anything else is built.
pub fn open_disks(config: &MachineConfig) -> Result<Vec<BlockDevice>, MachineError> {
    config
        .disks
        .iter()
        .map(|d| BlockDevice::open(d).map_err(|e| MachineError::Config(e.to_string())))
        .collect()
}

/// Put the virtio devices on `root` and their BARs on `mmio_bus`.
pub fn add_virtio_devices(
    config: &MachineConfig,
    disks: Vec<BlockDevice>,
    vm: &Arc<dyn Vm>,
    mem: &Arc<GuestMemoryMmap>,
    layout: &MemoryLayout,
    root: &mut PciRoot,
    mmio_bus: &mut MmioBus,
) -> Result<(), MachineError> {
    let mut devices: Vec<Box<dyn VirtioDevice>> = Vec::new();
    for d in disks {
        devices.push(Box::new(d));
    }
    if config.rng {
        devices.push(Box::new(RngDevice::new()));
    }
    let mut bars = BarAllocator::new(&crate::board::pci_windows(layout));
    for (i, device) in devices.into_iter().enumerate() {
        let slot = u8::try_from(i + 1)
            .ok()
            .filter(|&s| s < 32)
            .ok_or_else(|| MachineError::Config("too many virtio devices (at most 31)".into()))?;
        let bar = Bar {
            kind: BarKind::Memory32 {
                prefetchable: false,
            },
            size: BAR_SIZE,
        };
        let address = bars
            .allocate(&bar)
            .map_err(|e| MachineError::Config(format!("virtio device in slot {slot}: {e}")))?;
        let gsi = pci_intx_gsi(slot, 0);
        let irq = Interrupts {
            intx: VmIrqLine::new(vm.clone(), gsi),
            msi: VmMsiSender::new(vm.clone()),
        };
        let dev = VirtioPciDevice::new(device, mem.clone(), irq, address, gsi as u8)
            .map_err(|e| MachineError::Config(format!("virtio device in slot {slot}: {e}")))?;
        let dev = Arc::new(Mutex::new(dev));
        root.add_device_at(
            PciAddress {
                device: slot,
                function: 0,
            },
            dev.clone(),
        )
        .map_err(|e| MachineError::Config(e.to_string()))?;
        mmio_bus.insert(address, BAR_SIZE, dev)?;
    }
    Ok(())
}
