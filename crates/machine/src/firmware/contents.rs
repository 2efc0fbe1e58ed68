//! What firmware reads about the machine: the fw_cfg items and files
//! SeaBIOS asks for (src/fw/paravirt.c in SeaBIOS: the CPU counts, RAM size,
//! the e820 map, the ACPI tables with their loader script, the boot order,
//! the serial console port, the boot menu settings) and the CMOS bytes it
//! reads the boot order and CPU count from.

use std::sync::Arc;

use kite_devices::acpi::AcpiConfig;
use kite_devices::firmware::{FwCfg, FwCfgItem};
use vm_memory::GuestMemoryMmap;

use super::acpi_loader::{acpi_files, LOADER_FILE, RSDP_FILE, TABLES_FILE};
use super::smbios::{
    smbios, SmbiosInfo, ANCHOR_FILE as SMBIOS_ANCHOR, TABLES_FILE as SMBIOS_TABLES,
};
use super::{BootDevice, FirmwareConfig};
use crate::memory::{MemoryLayout, HIGH_RAM_START};

/// A bootable device and its firmware path (SeaBIOS's bootorder syntax).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootEntry {
    pub kind: BootDevice,
    pub path: String,
}

impl BootEntry {
    /// An ATA or ATAPI drive on PIIX IDE (00:01.1), channel and unit 0/1.
    pub fn ide(kind: BootDevice, channel: u8, unit: u8) -> BootEntry {
        BootEntry {
            kind,
            path: format!("/pci@i0cf8/ide@1,1/drive@{channel:x}/disk@{unit:x}"),
        }
    }

    /// A PCI device in slot `slot` of bus 0 (a virtio disk, a NIC).
    pub fn pci(kind: BootDevice, slot: u8) -> BootEntry {
        BootEntry {
            kind,
            path: format!("/pci@i0cf8/*@{slot:x}"),
        }
    }
}

/// What the machine tells the firmware.
pub struct FirmwareInfo<'a> {
    pub cpus: u32,
    pub layout: &'a MemoryLayout,
    pub acpi: AcpiConfig,
    pub firmware: &'a FirmwareConfig,
    /// Every bootable device, in the machine's own order.
    pub devices: Vec<BootEntry>,
    /// No display: the firmware's console goes to COM1.
    pub serial_console: Option<u16>,
    /// Option ROMs (file name, bytes) the firmware runs from "genroms/".
    pub option_roms: Vec<(String, Vec<u8>)>,
}

/// e820 types.
const E820_RAM: u32 = 1;

/// The fw_cfg device's contents (DMA through `mem`).
pub fn fw_cfg(info: &FirmwareInfo<'_>, mem: Arc<GuestMemoryMmap>) -> Result<FwCfg, String> {
    let mut f = FwCfg::new(Some(mem));
    let cpus = info.cpus as u16;
    f.set(FwCfgItem::NbCpus, cpus.to_le_bytes().to_vec());
    f.set(FwCfgItem::MaxCpus, cpus.to_le_bytes().to_vec());
    f.set(FwCfgItem::RamSize, info.layout.size.to_le_bytes().to_vec());
    let nographic = u16::from(info.serial_console.is_some());
    f.set(FwCfgItem::NoGraphic, nographic.to_le_bytes().to_vec());
    f.set(
        FwCfgItem::BootMenu,
        u16::from(info.firmware.menu).to_le_bytes().to_vec(),
    );
    f.set(FwCfgItem::Uuid, machine_uuid().to_vec());
    // IRQ 0 reaches IOAPIC pin 2 (the MADT says the same).
    f.set(FwCfgItem::X86Irq0Override, 1u32.to_le_bytes().to_vec());

    let file = |f: &mut FwCfg, name: &str, data: Vec<u8>| {
        f.add_file(name, data).map_err(|e| format!("fw_cfg: {e}"))
    };
    let mut e820 = Vec::new();
    let mut entry = |addr: u64, len: u64, kind: u32| {
        e820.extend_from_slice(&addr.to_le_bytes());
        e820.extend_from_slice(&len.to_le_bytes());
        e820.extend_from_slice(&kind.to_le_bytes());
    };
    entry(0, info.layout.low_size, E820_RAM);
    if info.layout.high_size > 0 {
        entry(HIGH_RAM_START, info.layout.high_size, E820_RAM);
    }
    file(&mut f, "etc/e820", e820)?;

    let acpi = acpi_files(info.acpi.clone())?;
    file(&mut f, TABLES_FILE, acpi.tables)?;
    file(&mut f, RSDP_FILE, acpi.rsdp)?;
    file(&mut f, LOADER_FILE, acpi.loader)?;

    let (tables, anchor) = smbios(&SmbiosInfo {
        cpus: info.cpus,
        layout: info.layout,
        uuid: machine_uuid(),
    });
    file(&mut f, SMBIOS_TABLES, tables)?;
    file(&mut f, SMBIOS_ANCHOR, anchor)?;

    for (name, rom) in &info.option_roms {
        file(&mut f, &format!("genroms/{name}"), rom.clone())?;
    }
    file(&mut f, "bootorder", bootorder(info))?;
    // Firmware retries a failed boot after this many milliseconds; Kite
    // watches for the failure itself, so a short wait is enough.
    file(&mut f, "etc/boot-fail-wait", 1000u32.to_le_bytes().to_vec())?;
    let menu = u16::from(info.firmware.menu);
    file(&mut f, "etc/show-boot-menu", menu.to_le_bytes().to_vec())?;
    if let Some(port) = info.serial_console {
        file(&mut f, "etc/sercon-port", u16::to_le_bytes(port).to_vec())?;
    }
    Ok(f)
}

/// The "bootorder" file: the devices of each kind, kinds in the configured
/// order, one path a line.
fn bootorder(info: &FirmwareInfo<'_>) -> Vec<u8> {
    let mut out = String::new();
    for kind in info.firmware.order() {
        for d in info.devices.iter().filter(|d| d.kind == kind) {
            out.push_str(&d.path);
            out.push('\n');
        }
    }
    let mut b = out.into_bytes();
    b.push(0);
    b
}

/// The CMOS bytes firmware reads: boot order (0x3d, 0x38), CPU count - 1 (0x5f).
pub fn cmos_settings(info: &FirmwareInfo<'_>) -> Vec<(u8, u8)> {
    let code = |d: &BootDevice| match d {
        BootDevice::Disk => 2u16,
        BootDevice::Cdrom => 3,
        BootDevice::Network => 4,
    };
    let order = info.firmware.order();
    let mut v: u16 = 0;
    for (i, d) in order.iter().take(3).enumerate() {
        v |= code(d) << (4 * i);
    }
    vec![
        (0x3d, v as u8),
        // Bit 0: skip the floppy boot-signature check (there is no floppy).
        (0x38, (((v >> 8) as u8) << 4) | 1),
        (0x5f, (info.cpus.saturating_sub(1)).min(255) as u8),
    ]
}

/// A fixed UUID for the machine's SMBIOS (random ones would make runs differ).
fn machine_uuid() -> [u8; 16] {
    *b"kite-pc-uuid-001"
}

#[cfg(test)]
mod tests {
    use super::*;
    use kite_devices::pci::PciWindows;
    use kite_devices::PioDevice;

    fn info(cfg: &FirmwareConfig, layout: &MemoryLayout) -> FirmwareInfo<'static> {
        let windows = PciWindows {
            mmio32: (0xc000_0000, 0x3ec0_0000),
            mmio64: None,
            io: (0xc000, 0x4000),
        };
        // Leak for 'static in tests only.
        FirmwareInfo {
            cpus: 2,
            layout: Box::leak(Box::new(*layout)),
            acpi: AcpiConfig::new(2, windows),
            firmware: Box::leak(Box::new(cfg.clone())),
            devices: vec![
                BootEntry::ide(BootDevice::Disk, 0, 0),
                BootEntry::ide(BootDevice::Cdrom, 1, 0),
                BootEntry::pci(BootDevice::Disk, 3),
            ],
            serial_console: Some(0x3f8),
            option_roms: vec![("t.rom".into(), vec![0x55, 0xaa, 1])],
        }
    }

    fn read_file(f: &mut FwCfg, name: &str) -> Vec<u8> {
        f.write(0, &0x19u16.to_le_bytes());
        let mut b = [0u8; 4];
        for x in b.iter_mut() {
            let mut v = [0u8];
            f.read(1, &mut v);
            *x = v[0];
        }
        let n = u32::from_be_bytes(b);
        for _ in 0..n {
            let mut e = [0u8; 64];
            for x in e.iter_mut() {
                let mut v = [0u8];
                f.read(1, &mut v);
                *x = v[0];
            }
            let nm = &e[8..];
            let nm = String::from_utf8_lossy(&nm[..nm.iter().position(|&c| c == 0).unwrap()])
                .into_owned();
            if nm == name {
                let size = u32::from_be_bytes(e[0..4].try_into().unwrap()) as usize;
                let sel = u16::from_be_bytes([e[4], e[5]]);
                f.write(0, &sel.to_le_bytes());
                return (0..size)
                    .map(|_| {
                        let mut v = [0u8];
                        f.read(1, &mut v);
                        v[0]
                    })
                    .collect();
            }
        }
        panic!("no file {name}");
    }

    #[test]
    fn files_firmware_reads() {
        let layout = MemoryLayout::new(4 << 30).unwrap();
        let cfg = FirmwareConfig {
            order: vec![BootDevice::Cdrom, BootDevice::Disk],
            ..Default::default()
        };
        let i = info(&cfg, &layout);
        let mem = Arc::new(
            GuestMemoryMmap::<()>::from_ranges(&[(vm_memory::GuestAddress(0), 1 << 20)]).unwrap(),
        );
        let mut f = fw_cfg(&i, mem).unwrap();
        let e820 = read_file(&mut f, "etc/e820");
        assert_eq!(e820.len(), 40);
        assert_eq!(u64::from_le_bytes(e820[8..16].try_into().unwrap()), 3 << 30);
        assert_eq!(
            u64::from_le_bytes(e820[20..28].try_into().unwrap()),
            1 << 32
        );
        let order = String::from_utf8(read_file(&mut f, "bootorder")).unwrap();
        assert_eq!(
            order,
            "/pci@i0cf8/ide@1,1/drive@1/disk@0\n/pci@i0cf8/ide@1,1/drive@0/disk@0\n/pci@i0cf8/*@3\n\0"
        );
        assert_eq!(read_file(&mut f, "etc/sercon-port"), vec![0xf8, 0x03]);
        assert_eq!(read_file(&mut f, "genroms/t.rom"), vec![0x55, 0xaa, 1]);
        assert_eq!(read_file(&mut f, "etc/show-boot-menu"), vec![0, 0]);
        assert_eq!(read_file(&mut f, "etc/table-loader").len() % 128, 0);
        let cmos = cmos_settings(&i);
        assert_eq!(cmos, vec![(0x3d, 0x23), (0x38, 0x01), (0x5f, 1)]);
    }
}
