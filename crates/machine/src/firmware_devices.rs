//! The devices a firmware boot adds to the board: fw_cfg with what the
//! firmware reads, and the firmware's debug console at 0x402 (to a log file
//! when asked; watched for SeaBIOS's "No bootable device").

use std::sync::{Arc, Mutex};

use kite_devices::acpi::AcpiConfig;
use kite_devices::firmware::debug_console::DEBUG_CONSOLE_PORT;
use kite_devices::firmware::fw_cfg::{
    FwCfgDma, FW_CFG_DMA_PORT, FW_CFG_DMA_PORT_LEN, FW_CFG_PORT, FW_CFG_PORT_LEN,
};
use kite_devices::firmware::DebugConsole;
use kite_devices::legacy::uart16550::COM1_PORT;
use kite_devices::IoBus;
use vm_memory::GuestMemoryMmap;

use crate::config::{IdeDriveKind, MachineConfig};
use crate::error::MachineError;
use crate::firmware::contents::{fw_cfg, BootEntry, FirmwareInfo};
use crate::firmware::{BootDevice, BootFailure};
use crate::memory::MemoryLayout;
use crate::run::{Control, VmEvent};
use crate::virtio_devices::FIRST_VIRTIO_SLOT;

/// What SeaBIOS prints when nothing boots.
const NO_BOOTABLE_DEVICE: &str = "No bootable device";

/// The machine as the firmware is told about it.
pub fn firmware_info<'a>(
    config: &'a MachineConfig,
    layout: &'a MemoryLayout,
    option_roms: Vec<(String, Vec<u8>)>,
) -> FirmwareInfo<'a> {
    let mut devices = Vec::new();
    for (i, d) in config.ide.iter().enumerate() {
        if let Some(d) = d {
            let kind = match d.kind {
                IdeDriveKind::Disk => BootDevice::Disk,
                IdeDriveKind::Cdrom => BootDevice::Cdrom,
            };
            devices.push(BootEntry::ide(kind, (i / 2) as u8, (i % 2) as u8));
        }
    }
    for i in 0..config.disks.len() {
        devices.push(BootEntry::pci(
            BootDevice::Disk,
            FIRST_VIRTIO_SLOT + i as u8,
        ));
    }
    FirmwareInfo {
        cpus: config.cpus,
        layout,
        acpi: AcpiConfig {
            vga: config.display.is_some(),
            ..AcpiConfig::new(config.cpus, crate::board::pci_windows(layout))
        },
        firmware: &config.firmware,
        devices,
        // With a screen the firmware shows itself there; without one, on COM1.
        serial_console: config.display.is_none().then_some(COM1_PORT),
        option_roms,
    }
}

/// Put fw_cfg and the debug console on the port bus; fw_cfg's state goes in
/// a snapshot's `devices`.
pub fn add_firmware_devices(
    io_bus: &IoBus,
    info: &FirmwareInfo<'_>,
    mem: &Arc<GuestMemoryMmap>,
    config: &MachineConfig,
    control: &Control,
    devices: &mut crate::snapshot::DeviceTable,
) -> Result<(), MachineError> {
    let cfg = fw_cfg(info, mem.clone()).map_err(MachineError::Config)?;
    let cfg = Arc::new(Mutex::new(cfg));
    io_bus.insert(u64::from(FW_CFG_PORT), FW_CFG_PORT_LEN, cfg.clone())?;
    devices.add("fw_cfg", cfg.clone());
    io_bus.insert(
        u64::from(FW_CFG_DMA_PORT),
        FW_CFG_DMA_PORT_LEN,
        Arc::new(Mutex::new(FwCfgDma(cfg))),
    )?;

    let log: Option<Box<dyn std::io::Write + Send>> = match &config.firmware.log {
        Some(p) => Some(Box::new(std::io::BufWriter::new(
            std::fs::File::create(p)
                .map_err(|e| MachineError::Config(format!("--bios-log {}: {e}", p.display())))?,
        ))),
        None => None,
    };
    let watcher: Option<kite_devices::firmware::debug_console::LineWatcher> =
        match config.firmware.on_failure {
            BootFailure::Exit => {
                let c = control.clone();
                Some(Box::new(move |line: &str| {
                    if line.contains(NO_BOOTABLE_DEVICE) {
                        c.request(VmEvent::NoBootableDevice);
                    }
                }))
            }
            BootFailure::Wait => None,
        };
    io_bus.insert(
        u64::from(DEBUG_CONSOLE_PORT),
        1,
        Arc::new(Mutex::new(DebugConsole::new(log, watcher))),
    )?;
    Ok(())
}
