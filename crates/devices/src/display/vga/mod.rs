//! QEMU's standard VGA (`-vga std`): a VGA register file and planar memory,
//! the Bochs VBE extensions for linear framebuffer modes, a PCI function
//! (1234:1111) whose BAR 0 is the framebuffer, and a renderer that draws
//! text, VGA graphics and VBE modes into a `kite_display::Surface`.
//!
//! One `VgaState` holds everything; the handles a machine puts on its buses
//! (`VgaPorts`, `DispiPorts`, `VgaWindow`, `VgaPci`) and the `VgaRenderer`
//! share it. Guest accesses do no drawing: they update registers and mark
//! pages dirty; the renderer draws only when a viewer asks.
//!
//! This module must not know where the machine puts PCI BARs, which engine
//! runs the guest, or how viewers reach the picture.

pub mod graphics;
pub mod memory;
pub mod pci;
pub mod registers;
pub mod render;
mod state;
pub mod text;
pub mod vbe;

#[cfg(test)]
mod tests;

use std::sync::{Arc, Mutex};

use thiserror::Error;

use crate::bus::{lock, MmioDevice, PioDevice};
use crate::pci::bar_ram::{BarRam, BarRamError};
use registers::Registers;
use vbe::{Dispi, DispiEffect};

pub use pci::VgaPci;
pub use render::VgaRenderer;

/// First legacy VGA port and how many there are (0x3B0-0x3DF).
pub const VGA_PORT_BASE: u16 = 0x3b0;
pub const VGA_PORT_LEN: u64 = 0x30;
/// The Bochs dispi index and data ports.
pub const DISPI_PORT_BASE: u16 = 0x1ce;
pub const DISPI_PORT_LEN: u64 = 2;
/// The legacy memory window.
pub const WINDOW_BASE: u64 = 0xa0000;
pub use memory::WINDOW_LEN;

/// Video memory sizes allowed (QEMU's vga_mem_mb range).
pub const MIN_VRAM: u64 = 4 << 20;
pub const MAX_VRAM: u64 = 256 << 20;
pub const DEFAULT_VRAM: u64 = 16 << 20;

#[derive(Debug, Error)]
pub enum VgaError {
    #[error("VGA memory of {0} bytes must be a power of two from 4 MiB to 256 MiB")]
    BadVramSize(u64),
    #[error(transparent)]
    Ram(#[from] BarRamError),
    #[error("the VGA BIOS of {0} bytes is larger than a PCI expansion ROM may be (16 MiB)")]
    RomTooLarge(usize),
    #[error("VGA PCI setup: {0}")]
    Config(#[from] crate::pci::ConfigSpaceError),
}

/// Lets a log line through the first few times, then at powers of two, so
/// a guest repeating a bad access cannot flood the log.
#[derive(Debug, Default, Clone)]
pub struct LogLimit(u64);

impl LogLimit {
    /// The number of times this happened, if this one should be logged.
    pub fn allow(&mut self) -> Option<u64> {
        self.0 = self.0.saturating_add(1);
        (self.0 <= 4 || self.0.is_power_of_two()).then_some(self.0)
    }
}

/// Which 4 KiB pages of video memory the legacy window or BAR 2 wrote
/// since the renderer last looked.
#[derive(Debug, Clone)]
pub struct DirtyMap {
    bits: Vec<u64>,
}

impl DirtyMap {
    pub fn new(vram_len: usize) -> DirtyMap {
        DirtyMap {
            bits: vec![0; (vram_len / 4096).div_ceil(64)],
        }
    }

    /// Mark the page holding byte `at`.
    pub fn mark(&mut self, at: usize) {
        let page = at / 4096;
        if let Some(w) = self.bits.get_mut(page / 64) {
            *w |= 1 << (page % 64);
        }
    }

    /// Mark `len` bytes from `at`.
    pub fn mark_range(&mut self, at: usize, len: usize) {
        if len == 0 {
            return;
        }
        let last = at.saturating_add(len - 1) / 4096;
        for page in at / 4096..=last.min(self.bits.len() * 64) {
            if let Some(w) = self.bits.get_mut(page / 64) {
                *w |= 1 << (page % 64);
            }
        }
    }

    /// The bitmap, cleared.
    pub fn take(&mut self) -> Vec<u64> {
        let empty = vec![0; self.bits.len()];
        std::mem::replace(&mut self.bits, empty)
    }
}

/// Everything the VGA is: registers, VBE, video memory and dirty pages.
pub struct VgaState {
    pub vram: Arc<BarRam>,
    pub regs: Registers,
    pub vbe: Dispi,
    /// The four plane bytes last read through the window.
    pub latch: u32,
    pub dirty: DirtyMap,
    /// Plane 2 (the font) was written since the last render.
    pub font_written: bool,
    /// BAR 0 decodes (the guest can write the framebuffer behind our back,
    /// so its dirty log counts).
    pub lfb_mapped: bool,
    /// Graphics controller 6 and sequencer 4 as they were before VBE took
    /// the window over, restored when it lets go.
    saved_window_regs: Option<(u8, u8)>,
}

impl VgaState {
    /// A VGA with `vram_bytes` of video memory, in 80x25 text mode.
    pub fn new(vram_bytes: u64) -> Result<VgaState, VgaError> {
        if !vram_bytes.is_power_of_two() || !(MIN_VRAM..=MAX_VRAM).contains(&vram_bytes) {
            return Err(VgaError::BadVramSize(vram_bytes));
        }
        let len = vram_bytes as usize;
        Ok(VgaState {
            vram: Arc::new(BarRam::new(len)?),
            regs: Registers::new(),
            vbe: Dispi::new(len),
            latch: 0,
            dirty: DirtyMap::new(len),
            font_written: true,
            lfb_mapped: false,
            saved_window_regs: None,
        })
    }

    /// A port read (0x3B0-0x3DF).
    pub fn port_read(&mut self, port: u16) -> u8 {
        self.regs.read_port(port)
    }

    /// A port write (0x3B0-0x3DF).
    pub fn port_write(&mut self, port: u16, v: u8) {
        self.regs.write_port(port, v)
    }

    pub fn dispi_read(&self, index: u16) -> u16 {
        self.vbe.read(index)
    }

    /// A dispi register write, and what it implies for the VGA side.
    pub fn dispi_write(&mut self, index: u16, v: u16) {
        match self.vbe.write(index, v) {
            DispiEffect::None => {}
            DispiEffect::Enabled { clear } => {
                let zero = [0u8; 4096];
                let mut at = 0;
                while at < clear {
                    let n = (clear - at).min(zero.len());
                    self.vram.write(at, &zero[..n]);
                    at += n;
                }
                self.dirty.mark_range(0, clear);
                // The legacy window becomes a linear 64 KiB bank (graphics
                // mode, map A0000-AFFFF, chain-4), as QEMU sets it.
                self.saved_window_regs = Some((self.regs.gc[6], self.regs.seq[4]));
                self.regs.gc[6] = (self.regs.gc[6] & !0x0c) | 0x05;
                self.regs.seq[4] |= 0x08;
                self.regs.colours_changed = true;
            }
            DispiEffect::Disabled => {
                if let Some((gc6, seq4)) = self.saved_window_regs.take() {
                    self.regs.gc[6] = gc6;
                    self.regs.seq[4] = seq4;
                }
                self.regs.colours_changed = true;
            }
        }
    }
}

/// Ports 0x3B0-0x3DF.
pub struct VgaPorts(Arc<Mutex<VgaState>>);

impl PioDevice for VgaPorts {
    fn read(&mut self, offset: u16, data: &mut [u8]) {
        let mut st = lock(&self.0);
        for (i, b) in data.iter_mut().enumerate() {
            *b = st.port_read(VGA_PORT_BASE.wrapping_add(offset).wrapping_add(i as u16));
        }
    }
    fn write(&mut self, offset: u16, data: &[u8]) {
        // A 16-bit write is an index then its data (outw 0x3c4, 0x0f02).
        let mut st = lock(&self.0);
        for (i, b) in data.iter().enumerate() {
            st.port_write(
                VGA_PORT_BASE.wrapping_add(offset).wrapping_add(i as u16),
                *b,
            );
        }
    }
}

/// Ports 0x1CE (index) and 0x1CF (data), 16 bits each.
pub struct DispiPorts(Arc<Mutex<VgaState>>);

impl PioDevice for DispiPorts {
    fn read(&mut self, offset: u16, data: &mut [u8]) {
        let st = lock(&self.0);
        let v = if offset == 0 {
            st.vbe.index
        } else {
            st.dispi_read(st.vbe.index)
        };
        for (i, b) in data.iter_mut().enumerate() {
            *b = v.to_le_bytes().get(i).copied().unwrap_or(0);
        }
    }
    fn write(&mut self, offset: u16, data: &[u8]) {
        let mut st = lock(&self.0);
        let v = match data {
            [lo] => u16::from(*lo),
            [lo, hi, ..] => u16::from_le_bytes([*lo, *hi]),
            [] => return,
        };
        if offset == 0 {
            st.vbe.index = v;
        } else {
            let index = st.vbe.index;
            st.dispi_write(index, v);
        }
    }
}

/// The legacy memory window at 0xA0000 (WINDOW_LEN bytes).
pub struct VgaWindow(Arc<Mutex<VgaState>>);

impl MmioDevice for VgaWindow {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        let mut st = lock(&self.0);
        for (i, b) in data.iter_mut().enumerate() {
            let a = offset.saturating_add(i as u64);
            *b = if a < WINDOW_LEN {
                st.window_read(a as u32)
            } else {
                0xff
            };
        }
    }
    fn write(&mut self, offset: u64, data: &[u8]) {
        let mut st = lock(&self.0);
        for (i, b) in data.iter().enumerate() {
            let a = offset.saturating_add(i as u64);
            if a < WINDOW_LEN {
                st.window_write(a as u32, *b);
            }
        }
    }
}

/// The shared state and a constructor for each handle.
#[derive(Clone)]
pub struct Vga {
    state: Arc<Mutex<VgaState>>,
}

impl Vga {
    pub fn new(vram_bytes: u64) -> Result<Vga, VgaError> {
        Ok(Vga {
            state: Arc::new(Mutex::new(VgaState::new(vram_bytes)?)),
        })
    }

    pub fn state(&self) -> &Arc<Mutex<VgaState>> {
        &self.state
    }

    /// Video memory (the BAR 0 framebuffer).
    pub fn vram(&self) -> Arc<BarRam> {
        lock(&self.state).vram.clone()
    }

    /// For ports VGA_PORT_BASE..+VGA_PORT_LEN.
    pub fn ports(&self) -> VgaPorts {
        VgaPorts(self.state.clone())
    }

    /// For ports DISPI_PORT_BASE..+DISPI_PORT_LEN.
    pub fn dispi_ports(&self) -> DispiPorts {
        DispiPorts(self.state.clone())
    }

    /// For MMIO WINDOW_BASE..+WINDOW_LEN.
    pub fn window(&self) -> VgaWindow {
        VgaWindow(self.state.clone())
    }

    /// The PCI function, BAR 0 (framebuffer) at `lfb_address`, BAR 2 (MMIO
    /// registers) at `mmio_address`, and an expansion ROM holding `rom`.
    pub fn pci(
        &self,
        lfb_address: u64,
        mmio_address: u64,
        rom: Option<Vec<u8>>,
    ) -> Result<VgaPci, VgaError> {
        VgaPci::new(self.state.clone(), lfb_address, mmio_address, rom)
    }

    /// The text on screen, one line per row (trailing blanks trimmed), in
    /// text mode; None in graphics modes. Characters outside printable
    /// ASCII read as '.', NUL as a blank. For tests and logs that check
    /// what a guest printed on its console.
    pub fn screen_text(&self) -> Option<Vec<String>> {
        let st = lock(&self.state);
        match render::Layout::of(&st) {
            render::Layout::Text(t) => Some(st.vram.with_bytes(|b| text::screen_text(b, &t))),
            _ => None,
        }
    }

    /// The renderer for a `kite_display::Display`.
    pub fn renderer(&self) -> VgaRenderer {
        VgaRenderer::new(self.state.clone())
    }
}
