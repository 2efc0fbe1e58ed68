//! The PC's display: QEMU's standard VGA at PCI 00:02.0 (as on QEMU's pc
//! machine), its legacy ports (0x3B0-0x3DF, Bochs VBE at 0x1CE-0x1CF) and
//! the 0xA0000-0xBFFFF window on the buses, its framebuffer and MMIO BARs
//! from the board's PCI window, and the VGA BIOS as its expansion ROM. What
//! it returns is the `kite_display::Display` viewers subscribe to.
//!
//! This file must not know how the VGA draws, nor about viewers' protocols.

use std::path::Path;
use std::sync::{Arc, Mutex};

use kite_devices::display::vga::{
    pci::MMIO_BAR_SIZE, Vga, VgaRenderer, DISPI_PORT_BASE, DISPI_PORT_LEN, VGA_PORT_BASE,
    VGA_PORT_LEN, WINDOW_BASE, WINDOW_LEN,
};
use kite_devices::pci::{Bar, BarAllocator, BarKind, PciAddress, PciRoot};
use kite_devices::{IoBus, MmioBus};
use kite_display::{Display, InputSink};

use crate::error::MachineError;

/// Where the VGA sits on bus 0.
pub const VGA_ADDRESS: PciAddress = PciAddress {
    device: 2,
    function: 0,
};

/// Debian's seabios package puts QEMU's stdvga BIOS here.
pub const DEFAULT_VGA_BIOS: &str = "/usr/share/seabios/vgabios-stdvga.bin";

/// A VGA BIOS larger than this is not a VGA BIOS (the ROM BAR takes 16 MiB
/// at most; real ones are under 64 KiB).
const MAX_VGA_BIOS: u64 = 1 << 20;

/// Read a VGA BIOS image for the expansion ROM.
pub fn read_vga_bios(path: &Path) -> Result<Vec<u8>, MachineError> {
    let fail = |e: String| MachineError::Config(format!("VGA BIOS {}: {e}", path.display()));
    let len = std::fs::metadata(path)
        .map_err(|e| fail(e.to_string()))?
        .len();
    if len == 0 || len > MAX_VGA_BIOS {
        return Err(fail(format!(
            "{len} bytes is not a VGA BIOS (1 byte to 1 MiB)"
        )));
    }
    std::fs::read(path).map_err(|e| fail(e.to_string()))
}

/// Build the VGA and put it on `root` (at 00:02.0) and the buses; returns
/// its renderer (for `Display::new`, or `Display::attach` after a reboot).
/// `vram_bytes`: a power of two from 4 to 256 MiB (16 MiB is QEMU's
/// default); `rom`: the VGA BIOS bytes (see `read_vga_bios`), if any.
pub fn install_vga(
    root: &mut PciRoot,
    bars: &mut BarAllocator,
    io_bus: &IoBus,
    mmio_bus: &MmioBus,
    vram_bytes: u64,
    rom: Option<Vec<u8>>,
) -> Result<VgaRenderer, MachineError> {
    let vga = Vga::new(vram_bytes).map_err(|e| MachineError::Config(e.to_string()))?;
    let mut place = |kind, size| {
        bars.allocate(&Bar { kind, size })
            .map_err(|e| MachineError::Config(format!("VGA: {e}")))
    };
    let lfb = place(BarKind::Memory32 { prefetchable: true }, vram_bytes)?;
    let mmio = place(
        BarKind::Memory32 {
            prefetchable: false,
        },
        MMIO_BAR_SIZE,
    )?;
    let pci = vga
        .pci(lfb, mmio, rom)
        .map_err(|e| MachineError::Config(e.to_string()))?;
    root.add_device_at(VGA_ADDRESS, Arc::new(Mutex::new(pci)))
        .map_err(|e| MachineError::Config(e.to_string()))?;
    io_bus.insert(
        u64::from(VGA_PORT_BASE),
        VGA_PORT_LEN,
        Arc::new(Mutex::new(vga.ports())),
    )?;
    io_bus.insert(
        u64::from(DISPI_PORT_BASE),
        DISPI_PORT_LEN,
        Arc::new(Mutex::new(vga.dispi_ports())),
    )?;
    mmio_bus.insert(WINDOW_BASE, WINDOW_LEN, Arc::new(Mutex::new(vga.window())))?;
    Ok(vga.renderer())
}

/// `install_vga`, and a new display showing it with input going to `input`.
pub fn add_vga(
    root: &mut PciRoot,
    bars: &mut BarAllocator,
    io_bus: &IoBus,
    mmio_bus: &MmioBus,
    vram_bytes: u64,
    rom: Option<Vec<u8>>,
    input: Arc<dyn InputSink>,
) -> Result<Display, MachineError> {
    let renderer = install_vga(root, bars, io_bus, mmio_bus, vram_bytes, rom)?;
    Ok(Display::new(Box::new(renderer), input))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kite_devices::pci::{BarBuses, PciWindows};
    use kite_display::NullInput;

    fn cfg32(root: &PciRoot, offset: u16) -> u32 {
        let mut b = [0u8; 4];
        root.config_read(VGA_ADDRESS, offset, &mut b);
        u32::from_le_bytes(b)
    }

    #[test]
    fn vga_on_the_buses_draws_what_the_guest_writes() {
        let io = Arc::new(IoBus::new());
        let mmio = Arc::new(MmioBus::new());
        let mut root = PciRoot::new();
        let mut bars = BarAllocator::new(&PciWindows {
            mmio32: (0xc000_0000, 0x3000_0000),
            mmio64: None,
            io: (0xc000, 0x4000),
        });
        let rom = read_vga_bios(Path::new(DEFAULT_VGA_BIOS)).ok();
        let has_rom = rom.is_some();
        let display = add_vga(
            &mut root,
            &mut bars,
            &io,
            &mmio,
            16 << 20,
            rom,
            Arc::new(NullInput),
        )
        .unwrap();
        root.attach_buses(BarBuses {
            io: Arc::downgrade(&io),
            mmio: Arc::downgrade(&mmio),
            ram: None,
        });
        assert_eq!(cfg32(&root, 0), 0x1111_1234);
        assert_eq!(cfg32(&root, 0x10), 0xc000_0008);
        // Text mode from power on: 80x25 of 9x16 cells.
        mmio.mmio_write(0xb8000, &[b'x', 0x1f]);
        let s = display.snapshot();
        assert_eq!((s.width(), s.height()), (720, 400));
        assert_eq!(s.pixel(0, 0), Some(0x0000aa), "blue background");
        // A VBE mode through the ports, a pixel through BAR 0 once decoded.
        for (i, v) in [(1u16, 64u16), (2, 48), (3, 32), (4, 0x41)] {
            io.pio_write(0x1ce, &i.to_le_bytes());
            io.pio_write(0x1cf, &v.to_le_bytes());
        }
        root.config_write(VGA_ADDRESS, 4, &[0x02, 0]);
        assert!(mmio.mmio_write(0xc000_0000 + 4 * (64 * 2 + 3), &[0x56, 0x34, 0x12, 0]));
        let s = display.snapshot();
        assert_eq!((s.width(), s.height()), (64, 48));
        assert_eq!(s.pixel(3, 2), Some(0x123456));
        // The ROM BAR serves the BIOS (0x55 0xAA signature) once enabled.
        if has_rom {
            root.config_write(VGA_ADDRESS, 0x30, &0xc200_0001u32.to_le_bytes());
            let mut sig = [0u8; 2];
            assert!(mmio.mmio_read(0xc200_0000, &mut sig));
            assert_eq!(sig, [0x55, 0xaa]);
        }
        // The legacy ranges are taken: a second VGA cannot be added.
        assert!(install_vga(&mut root, &mut bars, &io, &mmio, 16 << 20, None).is_err());
        assert!(matches!(
            install_vga(&mut PciRoot::new(), &mut bars, &io, &mmio, 5 << 20, None),
            Err(MachineError::Config(_))
        ));
    }

    #[test]
    fn bad_bios_files_are_refused() {
        assert!(read_vga_bios(Path::new("/nonexistent/vgabios.bin")).is_err());
        assert!(read_vga_bios(Path::new("/dev/null")).is_err());
    }
}
