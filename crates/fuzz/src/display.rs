//! The VGA and its Bochs VBE extension: the VGA register ports
//! (0x3b0-0x3df), the DISPI index/data ports (0x1ce, 0x1cf), the legacy
//! window at 0xa0000, and the PCI function's BARs (framebuffer, the MMIO
//! register block, the ROM); between accesses the renderer draws the
//! screen, in whatever text or graphics mode the registers describe.
//!
//! Checked: the surface the renderer produces stays within the VBE limits
//! whatever the registers say (no unbounded host allocation), and the DISPI
//! ID register still answers a Bochs ID after the program.
//!
//! It must not know how a viewer shows the surface.

use std::sync::{Arc, Mutex};

use kite_devices::display::vga::{
    Vga, DISPI_PORT_BASE, DISPI_PORT_LEN, VGA_PORT_BASE, VGA_PORT_LEN, WINDOW_BASE, WINDOW_LEN,
};
use kite_devices::pci::{PciDevice, ROM_BAR};
use kite_devices::{IoBus, MmioBus};
use kite_display::{Renderer, Surface};

use crate::input::Input;
use crate::support::{add_mmio, add_pio, bus_access, Window};

const MAX_OPS: usize = 4096;
/// Renders per input at most (a frame is the costly part).
const MAX_RENDERS: usize = 4;
/// The largest surface the VBE allows (its X and Y resolution limits).
const MAX_PIXELS: u64 = 16384 * 16384;

pub fn vga(data: &[u8]) {
    let io = IoBus::new();
    let mmio = MmioBus::new();
    let vga = match Vga::new(4 << 20) {
        Ok(v) => v,
        Err(e) => panic!("harness setup: VGA: {e}"),
    };
    add_pio(
        &io,
        VGA_PORT_BASE,
        VGA_PORT_LEN,
        Arc::new(Mutex::new(vga.ports())),
    );
    add_pio(
        &io,
        DISPI_PORT_BASE,
        DISPI_PORT_LEN,
        Arc::new(Mutex::new(vga.dispi_ports())),
    );
    add_mmio(
        &mmio,
        WINDOW_BASE,
        WINDOW_LEN,
        Arc::new(Mutex::new(vga.window())),
    );
    let mut pci = match vga.pci(0xd000_0000, 0xd100_0000, Some(vec![0x55, 0xaa, 1])) {
        Ok(p) => p,
        Err(e) => panic!("harness setup: VGA PCI: {e}"),
    };
    let mut renderer = vga.renderer();
    let mut surface = Surface::new(0, 0);
    let windows = [
        Window::pio(VGA_PORT_BASE, VGA_PORT_LEN),
        Window::pio(VGA_PORT_BASE, VGA_PORT_LEN),
        Window::pio(DISPI_PORT_BASE, DISPI_PORT_LEN),
        Window::mmio(WINDOW_BASE, WINDOW_LEN),
    ];
    let mut inp = Input::new(data);
    let mut renders = 0;
    for _ in 0..MAX_OPS {
        if inp.is_empty() {
            break;
        }
        match inp.u8() & 15 {
            0 if renders < MAX_RENDERS => {
                renders += 1;
                let _ = renderer.render(&mut surface);
                let pixels = u64::from(surface.width()) * u64::from(surface.height());
                assert!(
                    pixels <= MAX_PIXELS,
                    "a {}x{} surface",
                    surface.width(),
                    surface.height()
                );
            }
            1 => {
                // A DISPI register: index then value.
                io.pio_write(DISPI_PORT_BASE, &u16::from(inp.u8() & 15).to_le_bytes());
                io.pio_write(DISPI_PORT_BASE + 1, &inp.u16().to_le_bytes());
            }
            2 | 3 => {
                // The PCI BARs: framebuffer (0), MMIO registers (2), ROM (6).
                let bar = [0u8, 2, ROM_BAR][usize::from(inp.u8()) % 3];
                let off = match inp.u8() & 3 {
                    0 => inp.u64(),
                    _ => u64::from(inp.u32() & 0x3f_ffff),
                };
                let w = inp.width();
                if inp.bool() {
                    pci.bar_write(bar, off, &inp.value(w));
                } else {
                    let mut b = vec![0u8; w];
                    pci.bar_read(bar, off, &mut b);
                }
            }
            4 => {
                let off = u16::from(inp.u8());
                let w = inp.width().min(4);
                if usize::from(off) % w == 0 && usize::from(off) + w <= 256 {
                    pci.write_config(off, &inp.value(w));
                }
            }
            _ => {
                bus_access(&mut inp, &io, &mmio, &windows);
            }
        }
    }
    let _ = renderer.render(&mut surface);
    io.pio_write(DISPI_PORT_BASE, &0u16.to_le_bytes());
    let mut id = [0u8; 2];
    io.pio_read(DISPI_PORT_BASE + 1, &mut id);
    let id = u16::from_le_bytes(id);
    assert!(
        (0xb0c0..=0xb0c5).contains(&id),
        "DISPI ID {id:#x} after hostile input"
    );
}
