//! The VGA as a `kite_display::Renderer`: works out what the registers say
//! is on screen (text, VGA graphics, a VBE mode, or nothing), resizes the
//! surface to it, and redraws only what changed: text cells that differ
//! from the last render, scanlines whose video memory pages were written
//! (the window's own log plus the framebuffer BAR's dirty log), everything
//! after a mode or palette change.
//!
//! It must not know about viewers or how the surface reaches them.

use std::sync::{Arc, Mutex};

use kite_display::{Damage, Rect, Renderer, Surface};

use super::graphics::{self, GfxLayout};
use super::registers::{Registers, AR_INDEX_PAS};
use super::text::{self, TextCache, TextLayout};
use super::vbe::VbeMode;
use super::VgaState;
use crate::bus::lock;
use crate::pci::DirtyPages;

/// What the screen shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Screen off (or the attribute palette being loaded): black.
    Blank {
        width: u32,
        height: u32,
    },
    Text(TextLayout),
    Graphics(GfxLayout),
    Vbe(VbeMode),
}

impl Layout {
    pub fn of(st: &VgaState) -> Layout {
        if let Some(m) = st.vbe.mode() {
            return Layout::Vbe(m);
        }
        let r = &st.regs;
        let l = if r.gc[6] & 1 == 0 {
            Layout::Text(TextLayout::of(r))
        } else {
            Layout::Graphics(GfxLayout::of(r))
        };
        if r.ar_index & AR_INDEX_PAS == 0 || r.seq[1] & 0x20 != 0 {
            let (width, height) = l.size();
            return Layout::Blank { width, height };
        }
        l
    }

    pub fn size(&self) -> (u32, u32) {
        match self {
            Layout::Blank { width, height } => (*width, *height),
            Layout::Text(t) => (t.cols * t.char_w, t.rows * t.char_h),
            Layout::Graphics(g) => (g.width, g.height),
            Layout::Vbe(m) => (m.xres, m.yres),
        }
    }
}

/// Which pages of video memory were written since the last render.
pub struct Pages<'a> {
    pub lfb: &'a DirtyPages,
    pub legacy: &'a [u64],
}

impl Pages<'_> {
    /// Whether any byte of `start..start + len` may have changed.
    pub fn any(&self, start: usize, len: usize) -> bool {
        if len == 0 {
            return false;
        }
        let last = start.saturating_add(len - 1) / 4096;
        (start / 4096..=last).any(|p| {
            self.lfb.is_dirty(p)
                || self
                    .legacy
                    .get(p / 64)
                    .is_some_and(|w| w & (1 << (p % 64)) != 0)
        })
    }
}

/// Colours for one render: the DAC through the pel mask (6- and 8-bit
/// readings) and the 16 attribute colours.
pub struct Colours {
    pub dac: [u32; 256],
    pub dac8: [u32; 256],
    pub attr: [u32; 16],
}

impl Colours {
    pub fn of(r: &Registers) -> Colours {
        let mut dac = [0u32; 256];
        let mut dac8 = [0u32; 256];
        for i in 0..256 {
            let e = usize::from(i as u8 & r.pel_mask) * 3;
            let c6 = |v: u8| {
                let v = v & 0x3f;
                u32::from((v << 2) | (v >> 4))
            };
            let p = &r.palette[e..e + 3];
            dac[i] = (c6(p[0]) << 16) | (c6(p[1]) << 8) | c6(p[2]);
            dac8[i] = (u32::from(p[0]) << 16) | (u32::from(p[1]) << 8) | u32::from(p[2]);
        }
        let mut attr = [0u32; 16];
        for (c, a) in attr.iter_mut().enumerate() {
            *a = dac[usize::from(r.attribute_to_dac(c as u8))];
        }
        Colours { dac, dac8, attr }
    }
}

/// Collects changed scanlines into rectangles the width of the screen.
pub struct LineDamage {
    width: u32,
    height: u32,
    run: Option<(u32, u32)>,
    pub damage: Damage,
}

impl LineDamage {
    pub fn new(width: u32, height: u32) -> LineDamage {
        LineDamage {
            width,
            height,
            run: None,
            damage: Damage::None,
        }
    }

    /// Scanlines `y..y + n` changed (call in increasing `y`).
    pub fn add(&mut self, y: u32, n: u32) {
        match &mut self.run {
            Some((y0, len)) if *y0 + *len == y => *len += n,
            _ => {
                self.flush();
                self.run = Some((y, n));
            }
        }
    }

    fn flush(&mut self) {
        if let Some((y, n)) = self.run.take() {
            self.damage
                .add_rect(Rect::new(0, y, self.width, n), self.width, self.height);
        }
    }

    pub fn finish(mut self) -> Damage {
        self.flush();
        self.damage
    }
}

/// Draws the VGA's picture for viewers.
pub struct VgaRenderer {
    state: Arc<Mutex<VgaState>>,
    last: Option<Layout>,
    text: TextCache,
}

impl VgaRenderer {
    pub fn new(state: Arc<Mutex<VgaState>>) -> VgaRenderer {
        VgaRenderer {
            state,
            last: None,
            text: TextCache::default(),
        }
    }
}

impl Renderer for VgaRenderer {
    fn render(&mut self, surface: &mut Surface) -> Damage {
        let mut st = lock(&self.state);
        let layout = Layout::of(&st);
        let (w, h) = layout.size();
        let resized = surface.resize(w, h);
        let full = resized || self.last != Some(layout) || st.regs.colours_changed;
        st.regs.colours_changed = false;
        self.last = Some(layout);
        // Without BAR 0 decoding, only our own handlers write video memory.
        let lfb = if st.lfb_mapped {
            st.vram.take_dirty()
        } else {
            DirtyPages::Bitmap(Vec::new())
        };
        let legacy = st.dirty.take();
        let font = std::mem::take(&mut st.font_written);
        let pages = Pages {
            lfb: &lfb,
            legacy: &legacy,
        };
        let colours = Colours::of(&st.regs);
        let vram = st.vram.clone();
        let damage = vram.with_bytes(|bytes| match layout {
            Layout::Blank { .. } => {
                if full {
                    surface.pixels_mut().fill(0);
                    Damage::Full
                } else {
                    Damage::None
                }
            }
            Layout::Text(t) => text::render(
                bytes,
                &st.regs,
                &t,
                &colours,
                &mut self.text,
                full || font,
                surface,
            ),
            Layout::Graphics(g) => graphics::render_vga(bytes, &g, &colours, &pages, full, surface),
            Layout::Vbe(m) => graphics::render_vbe(bytes, &m, &colours, &pages, full, surface),
        });
        if full && !damage.is_none() && w > 0 && h > 0 {
            return Damage::Full;
        }
        damage
    }
}
