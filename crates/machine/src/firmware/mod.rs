//! Booting through firmware: the BIOS image (SeaBIOS by default) mapped at
//! the top of 4 GiB, the vCPU's reset state, and what the firmware reads
//! from fw_cfg and CMOS (`contents`).

pub mod acpi_loader;
pub mod contents;
pub mod smbios;

use std::path::{Path, PathBuf};

use kite_hypervisor::{Regs, Segment, Sregs};

use crate::loader::BootState;

/// Where Debian's seabios package puts SeaBIOS for QEMU.
pub const DEFAULT_BIOS: &str = "/usr/share/seabios/bios.bin";
/// The smallest and largest firmware images Kite maps.
const MIN_ROM: u64 = 64 << 10;
const MAX_ROM: u64 = 16 << 20;

/// A device firmware may boot from, in QEMU's `-boot order=` letters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootDevice {
    /// c: the hard disks.
    Disk,
    /// d: the CD-ROM.
    Cdrom,
    /// n: a network boot ROM.
    Network,
}

/// What Kite does when the firmware finds nothing to boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BootFailure {
    /// Exit with `STATUS_NO_BOOTABLE_DEVICE`.
    #[default]
    Exit,
    /// Leave the firmware retrying, as a real PC does.
    Wait,
}

/// How the firmware is set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirmwareConfig {
    pub bios: PathBuf,
    /// Where the firmware's debug output (port 0x402) goes; nowhere if None.
    pub log: Option<PathBuf>,
    /// Boot order; empty means disk, then CD-ROM.
    pub order: Vec<BootDevice>,
    pub on_failure: BootFailure,
    /// Offer the firmware's boot menu (ESC at start-up).
    pub menu: bool,
    /// Option ROM images the firmware runs (fw_cfg "genroms/", as QEMU's
    /// -option-rom), read and checked at start-up.
    pub option_roms: Vec<PathBuf>,
}

impl Default for FirmwareConfig {
    fn default() -> Self {
        FirmwareConfig {
            bios: PathBuf::from(DEFAULT_BIOS),
            log: None,
            order: Vec::new(),
            on_failure: BootFailure::Exit,
            menu: false,
            option_roms: Vec::new(),
        }
    }
}

impl FirmwareConfig {
    /// The boot order with the default filled in.
    pub fn order(&self) -> Vec<BootDevice> {
        if self.order.is_empty() {
            vec![BootDevice::Disk, BootDevice::Cdrom]
        } else {
            self.order.clone()
        }
    }
}

/// Read a firmware image and check it can be mapped below 4 GiB.
pub fn read_bios(path: &Path) -> Result<Vec<u8>, String> {
    let name = path.display();
    let bytes = std::fs::read(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound && path == Path::new(DEFAULT_BIOS) {
            format!(
                "firmware {name} not found: install SeaBIOS (apt-get install seabios) \
                 or give one with --bios FILE"
            )
        } else {
            format!("firmware {name}: {e}")
        }
    })?;
    let len = bytes.len() as u64;
    if !(MIN_ROM..=MAX_ROM).contains(&len) || !len.is_multiple_of(MIN_ROM) {
        return Err(format!(
            "firmware {name}: {len} bytes; a BIOS image is a multiple of 64 KiB, \
             from 64 KiB to 16 MiB"
        ));
    }
    Ok(bytes)
}

/// The largest option ROM Kite accepts (the 0xc0000-0xdffff area is 128 KiB).
const MAX_OPTION_ROM: usize = 128 << 10;

/// Read an option ROM: a 0x55 0xAA signature and a length byte (in 512-byte
/// blocks) that the file covers.
pub fn read_option_rom(path: &Path) -> Result<(String, Vec<u8>), String> {
    let name = path.display();
    let bytes = std::fs::read(path).map_err(|e| format!("option ROM {name}: {e}"))?;
    if bytes.len() < 3 || bytes[0] != 0x55 || bytes[1] != 0xaa {
        return Err(format!(
            "option ROM {name}: no 0x55 0xAA signature; not an option ROM"
        ));
    }
    let declared = usize::from(bytes[2]) * 512;
    if declared == 0 || declared > bytes.len() || bytes.len() > MAX_OPTION_ROM {
        return Err(format!(
            "option ROM {name}: {} bytes with a header saying {declared}; \
             an option ROM is at most 128 KiB and as long as its header says",
            bytes.len()
        ));
    }
    let file = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "rom".into());
    Ok((file, bytes))
}

/// A processor's state after RESET: real mode at F000:FFF0 with CS's base
/// at 0xffff0000, so the first fetch is at 0xfffffff0 in the ROM.
pub fn reset_state() -> BootState {
    let mut sregs = Sregs {
        cs: Segment {
            base: 0xffff_0000,
            ..Segment::real_mode(0xf000, true)
        },
        ..Default::default()
    };
    for seg in [
        &mut sregs.ds,
        &mut sregs.es,
        &mut sregs.fs,
        &mut sregs.gs,
        &mut sregs.ss,
    ] {
        *seg = Segment::real_mode(0, false);
    }
    sregs.tr = Segment {
        type_: 0xb,
        s: false,
        ..Segment::real_mode(0, false)
    };
    sregs.ldt = Segment {
        type_: 0x2,
        s: false,
        ..Segment::real_mode(0, false)
    };
    sregs.gdt.limit = 0xffff;
    sregs.idt.limit = 0xffff;
    // CD and NW set, ET set (as after RESET).
    sregs.cr0 = 0x6000_0010;
    let regs = Regs {
        rip: 0xfff0,
        rflags: 0x2,
        // EDX holds the processor signature (family 6).
        rdx: 0x0600,
        ..Default::default()
    };
    BootState { regs, sregs }
}
