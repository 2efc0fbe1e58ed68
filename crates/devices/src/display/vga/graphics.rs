//! Graphics modes: VGA planar 16-colour (modes 0Dh, 10h, 12h; 06h's one
//! plane with CGA line interleave), CGA 4-colour (04h/05h: two bits a pixel,
//! even and odd lines 8 KiB apart), 256-colour (13h and unchained "mode X"),
//! and VBE linear modes of 8, 15, 16, 24 and 32 bits with virtual width and
//! panning. A scanline is redrawn when a page it reads was written.
//!
//! It must not know about registers beyond reading them, or about viewers.

use kite_display::{Damage, Surface};

use super::registers::Registers;
use super::render::{Colours, LineDamage, Pages};
use super::vbe::{bytes_per_pixel, VbeMode};

/// How pixels are packed in VGA graphics modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GfxKind {
    /// One bit a pixel in each of 4 planes.
    Planar16,
    /// Two bits a pixel in odd/even memory (CGA modes 04h/05h).
    Cga4,
    /// One byte a pixel, 4 pixels an offset (chain-4 or mode X).
    Chain256,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GfxLayout {
    pub kind: GfxKind,
    pub width: u32,
    pub height: u32,
    /// Memory offsets from one row to the next.
    pub stride: u32,
    pub start: u32,
    /// Scanlines per character row (the row scan counter's period).
    pub scans: u32,
    /// CRTC 0x17 bit 0 clear: scan line bit 0 replaces address bit 13.
    pub cga_interleave: bool,
    /// Which planes take part (attribute 0x12).
    pub plane_enable: u8,
}

impl GfxLayout {
    pub fn of(r: &Registers) -> GfxLayout {
        let kind = if r.gc[5] & 0x40 != 0 {
            GfxKind::Chain256
        } else if r.gc[5] & 0x20 != 0 {
            GfxKind::Cga4
        } else {
            GfxKind::Planar16
        };
        let mut width = r.horizontal_chars() * 8;
        if kind == GfxKind::Chain256 {
            width /= 2;
        }
        let mut lines = r.vertical_display_lines();
        if r.crtc[9] & 0x80 != 0 {
            lines /= 2;
        }
        let scans = u32::from(r.crtc[9] & 0x1f) + 1;
        let cga_interleave = r.crtc[0x17] & 1 == 0;
        let height = if cga_interleave { lines } else { lines / scans };
        GfxLayout {
            kind,
            width,
            height,
            stride: r.line_stride(),
            start: r.start_address(),
            scans,
            cga_interleave,
            plane_enable: r.ar[0x12] & 0x0f,
        }
    }

    /// The memory offset (CPU byte address for Cga4) of scanline `y`.
    fn line_address(&self, y: u32) -> usize {
        if self.cga_interleave {
            let (row, scan) = (y / self.scans, y % self.scans);
            let base = match self.kind {
                GfxKind::Cga4 => self.start * 2 + row * self.stride,
                _ => self.start + row * self.stride,
            };
            // Address bit 13 (8 KiB) selects the odd scanlines' bank.
            ((base & !0x2000) | ((scan & 1) << 13)) as usize & 0xffff
        } else {
            (self.start + y * self.stride) as usize & 0xffff
        }
    }
}

fn byte(vram: &[u8], at: usize) -> u8 {
    vram.get(at).copied().unwrap_or(0)
}

/// Redraw the VGA graphics lines that changed (all when `full`).
pub fn render_vga(
    vram: &[u8],
    g: &GfxLayout,
    colours: &Colours,
    pages: &Pages<'_>,
    full: bool,
    surface: &mut Surface,
) -> Damage {
    let mut damage = LineDamage::new(g.width, g.height);
    let w = g.width as usize;
    for y in 0..g.height {
        let a = g.line_address(y);
        // The video memory bytes this line reads.
        let (from, len) = match g.kind {
            GfxKind::Planar16 => (a * 4, w.div_ceil(8) * 4),
            GfxKind::Chain256 => (a * 4, w),
            GfxKind::Cga4 => ((a >> 1) * 4, (w.div_ceil(4) / 2 + 1) * 4),
        };
        if !full && !pages.any(from, len) {
            continue;
        }
        let row = surface.row_mut(y);
        match g.kind {
            GfxKind::Planar16 => {
                for (bx, px) in row.chunks_mut(8).enumerate() {
                    let o = (a + bx) * 4;
                    let planes = [
                        byte(vram, o),
                        byte(vram, o + 1),
                        byte(vram, o + 2),
                        byte(vram, o + 3),
                    ];
                    for (i, p) in px.iter_mut().enumerate() {
                        let bit = 7 - i;
                        let c = planes
                            .iter()
                            .enumerate()
                            .fold(0u8, |c, (pl, b)| c | (((b >> bit) & 1) << pl));
                        *p = colours.attr[usize::from(c & g.plane_enable)];
                    }
                }
            }
            GfxKind::Cga4 => {
                for (x, p) in row.iter_mut().enumerate() {
                    let c = a + x / 4;
                    let b = byte(vram, (c >> 1) * 4 + (c & 1));
                    let v = (b >> (6 - 2 * (x % 4))) & 3;
                    *p = colours.attr[usize::from(v)];
                }
            }
            GfxKind::Chain256 => {
                for (x, p) in row.iter_mut().enumerate() {
                    *p = colours.dac[usize::from(byte(vram, a * 4 + x))];
                }
            }
        }
        damage.add(y, 1);
    }
    if full {
        Damage::Full
    } else {
        damage.finish()
    }
}

/// Redraw the VBE lines that changed (all when `full`).
pub fn render_vbe(
    vram: &[u8],
    m: &VbeMode,
    colours: &Colours,
    pages: &Pages<'_>,
    full: bool,
    surface: &mut Surface,
) -> Damage {
    let bypp = bytes_per_pixel(m.bpp);
    let len = m.xres as usize * bypp;
    let dac = if m.dac_8bit {
        &colours.dac8
    } else {
        &colours.dac
    };
    let mut damage = LineDamage::new(m.xres, m.yres);
    for y in 0..m.yres {
        let from = m.start + y as usize * m.line;
        if !full && !pages.any(from, len) {
            continue;
        }
        let row = surface.row_mut(y);
        match vram.get(from..from + len) {
            Some(src) => convert_line(src, m.bpp, dac, row),
            None => row.fill(0),
        }
        damage.add(y, 1);
    }
    if full {
        Damage::Full
    } else {
        damage.finish()
    }
}

/// Expand a `bits`-bit colour channel to 8 bits.
fn widen(v: u32, bits: u32) -> u32 {
    (v << (8 - bits)) | (v >> (2 * bits - 8))
}

fn convert_line(src: &[u8], bpp: u32, dac: &[u32; 256], row: &mut [u32]) {
    match bpp {
        8 => {
            for (p, &b) in row.iter_mut().zip(src) {
                *p = dac[usize::from(b)];
            }
        }
        15 | 16 => {
            for (p, b) in row.iter_mut().zip(src.chunks_exact(2)) {
                let v = u32::from(u16::from_le_bytes([b[0], b[1]]));
                *p = if bpp == 15 {
                    (widen((v >> 10) & 0x1f, 5) << 16)
                        | (widen((v >> 5) & 0x1f, 5) << 8)
                        | widen(v & 0x1f, 5)
                } else {
                    (widen(v >> 11, 5) << 16)
                        | (widen((v >> 5) & 0x3f, 6) << 8)
                        | widen(v & 0x1f, 5)
                };
            }
        }
        24 => {
            for (p, b) in row.iter_mut().zip(src.chunks_exact(3)) {
                *p = (u32::from(b[2]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[0]);
            }
        }
        _ => {
            for (p, b) in row.iter_mut().zip(src.chunks_exact(4)) {
                *p = (u32::from(b[2]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[0]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::widen;

    #[test]
    fn channels_widen_to_full_range() {
        assert_eq!(widen(0x1f, 5), 0xff);
        assert_eq!(widen(0x3f, 6), 0xff);
        assert_eq!(widen(0, 5), 0);
        assert_eq!(widen(0x10, 5), 0x84);
    }
}
