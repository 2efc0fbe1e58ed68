//! The PIIX3 IDE function at 00:01.1 with its legacy channels: primary at
//! ports 0x1f0-0x1f7 + 0x3f6 on GSI 14, secondary at 0x170-0x177 + 0x376
//! on GSI 15, and up to four drives (primary master, primary slave,
//! secondary master, secondary slave). The controller is there even with
//! no drives, as on a PC. BAR4 (bus master) is left for firmware or the OS
//! to place.

use std::sync::{Arc, Mutex};

use kite_devices::pci::{PciAddress, PciRoot};
use kite_devices::storage::ide::{
    ChannelPorts, Drive, IdeChannel, IdeController, IdeDriveConfig, PortBlock, PRIMARY, SECONDARY,
};
use kite_devices::{IoBus, PioDevice};
use kite_hypervisor::Vm;
use vm_memory::GuestMemoryMmap;

use crate::error::MachineError;
use crate::irq::VmIrqLine;

/// Where the IDE function sits: function 1 of the PIIX3's slot.
pub const IDE_ADDRESS: PciAddress = PciAddress {
    device: 1,
    function: 1,
};

/// Put the controller on `root` and its ports on `io_bus`, with `drives`
/// in slot order (primary master first; at most four).
pub fn add_ide(
    root: &mut PciRoot,
    io_bus: &IoBus,
    vm: &Arc<dyn Vm>,
    mem: &Arc<GuestMemoryMmap>,
    drives: &[IdeDriveConfig],
) -> Result<(), MachineError> {
    if drives.len() > 4 {
        return Err(MachineError::Config(format!(
            "{} IDE drives asked for; a PC's two channels hold four",
            drives.len()
        )));
    }
    let mut slots: [Option<IdeDriveConfig>; 4] = Default::default();
    for (slot, d) in slots.iter_mut().zip(drives) {
        *slot = Some(d.clone());
    }
    add_ide_slots(root, io_bus, vm, mem, &slots)
}

/// As `add_ide`, with slots that may stay empty (a CD-ROM alone on the
/// secondary master, as QEMU puts `-cdrom`).
pub fn add_ide_slots(
    root: &mut PciRoot,
    io_bus: &IoBus,
    vm: &Arc<dyn Vm>,
    mem: &Arc<GuestMemoryMmap>,
    slots: &[Option<IdeDriveConfig>; 4],
) -> Result<(), MachineError> {
    let mut opened: Vec<Option<Drive>> = Vec::with_capacity(4);
    for (i, slot) in slots.iter().enumerate() {
        opened.push(match slot {
            Some(c) => Some(Drive::open(c, i).map_err(|e| MachineError::Config(e.to_string()))?),
            None => None,
        });
    }
    let mut it = opened.into_iter();
    let mut channel = |(cmd, ctl, gsi): (u16, u16, u32)| -> Result<_, MachineError> {
        let drives = [it.next().flatten(), it.next().flatten()];
        let ch = Arc::new(Mutex::new(IdeChannel::new(
            drives,
            VmIrqLine::new(vm.clone(), gsi),
            mem.clone(),
        )));
        for (base, len, block) in [(cmd, 8, PortBlock::Command), (ctl, 1, PortBlock::Control)] {
            let ports: Arc<Mutex<dyn PioDevice>> = Arc::new(Mutex::new(ChannelPorts {
                channel: ch.clone(),
                block,
            }));
            io_bus.insert(u64::from(base), len, ports)?;
        }
        Ok(ch)
    };
    let primary = channel(PRIMARY)?;
    let secondary = channel(SECONDARY)?;
    let controller = IdeController::new(primary, secondary);
    root.add_device_at(IDE_ADDRESS, Arc::new(Mutex::new(controller)))
        .map_err(|e| MachineError::Config(e.to_string()))?;
    Ok(())
}
