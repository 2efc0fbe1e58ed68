//! The VGA as a guest drives it: registers set by port writes, pixels
//! through the 0xA0000 window or the framebuffer, then a render checked for
//! pixels and damage.

use std::sync::{Arc, Mutex};

use kite_display::{Damage, Rect, Renderer, Surface};

use super::vbe::*;
use super::*;
use crate::pci::{PciDevice, ROM_BAR};

struct Guest {
    vga: Vga,
    ports: VgaPorts,
    dispi: DispiPorts,
    window: VgaWindow,
    renderer: VgaRenderer,
    surface: Surface,
}

impl Guest {
    fn new() -> Guest {
        let vga = Vga::new(DEFAULT_VRAM).unwrap();
        Guest {
            ports: vga.ports(),
            dispi: vga.dispi_ports(),
            window: vga.window(),
            renderer: vga.renderer(),
            vga,
            surface: Surface::new(0, 0),
        }
    }
    fn outb(&mut self, port: u16, v: u8) {
        self.ports.write(port - VGA_PORT_BASE, &[v]);
    }
    fn inb(&mut self, port: u16) -> u8 {
        let mut b = [0u8];
        self.ports.read(port - VGA_PORT_BASE, &mut b);
        b[0]
    }
    fn set_indexed(&mut self, index_port: u16, regs: &[u8]) {
        for (i, &v) in regs.iter().enumerate() {
            self.outb(index_port, i as u8);
            self.outb(index_port + 1, v);
        }
    }
    fn set_ar(&mut self, regs: &[u8]) {
        self.inb(0x3da);
        for (i, &v) in regs.iter().enumerate() {
            self.outb(0x3c0, i as u8);
            self.outb(0x3c0, v);
        }
        self.outb(0x3c0, 0x20);
    }
    /// Program a BIOS-style register table (as vgabios does on a mode set).
    fn set_mode(&mut self, misc: u8, seq: &[u8], crtc: &[u8], gc: &[u8], ar: &[u8]) {
        self.outb(0x3c2, misc);
        self.set_indexed(0x3c4, seq);
        self.outb(0x3d4, 0x11);
        self.outb(0x3d5, 0);
        self.set_indexed(0x3d4, crtc);
        self.set_indexed(0x3ce, gc);
        self.set_ar(ar);
    }
    fn set_dac(&mut self, index: u8, rgb: [u8; 3]) {
        self.outb(0x3c8, index);
        for c in rgb {
            self.outb(0x3c9, c);
        }
    }
    fn poke(&mut self, addr: u64, v: u8) {
        self.window.write(addr - WINDOW_BASE, &[v]);
    }
    fn peek(&mut self, addr: u64) -> u8 {
        let mut b = [0u8];
        self.window.read(addr - WINDOW_BASE, &mut b);
        b[0]
    }
    fn dispi_write(&mut self, index: u16, v: u16) {
        self.dispi.write(0, &index.to_le_bytes());
        self.dispi.write(1, &v.to_le_bytes());
    }
    fn dispi_read(&mut self, index: u16) -> u16 {
        self.dispi.write(0, &index.to_le_bytes());
        let mut b = [0u8; 2];
        self.dispi.read(1, &mut b);
        u16::from_le_bytes(b)
    }
    fn render(&mut self) -> Damage {
        self.renderer.render(&mut self.surface)
    }
    fn px(&self, x: u32, y: u32) -> u32 {
        self.surface.pixel(x, y).unwrap()
    }
    /// Map BAR 0 (memory decoding on) and fake the engine's dirty log for
    /// it, as the machine's mapper does; returns the log to mark pages in.
    fn dirty_log(&self) -> (VgaPci, Arc<Mutex<Vec<u64>>>) {
        let mut pci = self.vga.pci(0xe000_0000, 0xe100_0000, None).unwrap();
        pci.write_config(4, &[0x02, 0]);
        let log = Arc::new(Mutex::new(vec![0u64; (DEFAULT_VRAM as usize / 4096) / 64]));
        let l = log.clone();
        self.vga.vram().set_dirty_log(Some(Box::new(move || {
            let mut g = l.lock().unwrap();
            let n = g.len();
            Some(std::mem::replace(&mut *g, vec![0; n]))
        })));
        (pci, log)
    }
}

const MODE13_SEQ: [u8; 5] = [0x03, 0x01, 0x0f, 0x00, 0x0e];
const MODE13_CRTC: [u8; 25] = [
    0x5f, 0x4f, 0x50, 0x82, 0x54, 0x80, 0xbf, 0x1f, 0x00, 0x41, 0, 0, 0, 0, 0, 0, 0x9c, 0x8e, 0x8f,
    0x28, 0x40, 0x96, 0xb9, 0xa3, 0xff,
];
const MODE13_GC: [u8; 9] = [0, 0, 0, 0, 0, 0x40, 0x05, 0x0f, 0xff];
const MODE13_AR: [u8; 21] = [
    0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 0x41, 0x00, 0x0f, 0x00, 0x00,
];

const MODE12_SEQ: [u8; 5] = [0x03, 0x01, 0x0f, 0x00, 0x06];
const MODE12_CRTC: [u8; 25] = [
    0x5f, 0x4f, 0x50, 0x82, 0x54, 0x80, 0x0b, 0x3e, 0x00, 0x40, 0, 0, 0, 0, 0, 0, 0xea, 0x8c, 0xdf,
    0x28, 0x00, 0xe7, 0x04, 0xe3, 0xff,
];
const MODE12_GC: [u8; 9] = [0, 0, 0, 0, 0, 0, 0x05, 0x0f, 0xff];
const MODE12_AR: [u8; 21] = [
    0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x14, 0x07, 0x38, 0x39, 0x3a, 0x3b, 0x3c, 0x3d, 0x3e, 0x3f,
    0x01, 0x00, 0x0f, 0x00, 0x00,
];

#[test]
fn mode_13h_pixels_through_the_window_and_line_damage() {
    let mut g = Guest::new();
    g.set_mode(0x63, &MODE13_SEQ, &MODE13_CRTC, &MODE13_GC, &MODE13_AR);
    g.set_dac(5, [0x3f, 0, 0]);
    g.set_dac(9, [0, 0x3f, 0x20]);
    g.poke(0xa0000, 5);
    g.poke(0xa0000 + 199 * 320 + 319, 9);
    assert_eq!(g.render(), Damage::Full);
    assert_eq!((g.surface.width(), g.surface.height()), (320, 200));
    assert_eq!(g.px(0, 0), 0xff0000);
    assert_eq!(g.px(319, 199), 0x00ff82);
    assert_eq!(g.px(1, 0), 0, "untouched memory is colour 0, black");
    assert_eq!(g.render(), Damage::None, "nothing written, nothing damaged");
    g.poke(0xa0000 + 100 * 320 + 7, 5);
    assert_eq!(g.peek(0xa0000 + 100 * 320 + 7), 5);
    let d = g.render();
    assert_eq!(g.px(7, 100), 0xff0000);
    // Page 32000/4096 = 7 holds lines 89..102: only those are redrawn.
    let rects = d.rects(320, 200);
    assert_eq!(rects.len(), 1);
    assert!(rects[0].y <= 100 && rects[0].y + rects[0].h > 100 && rects[0].h <= 14);
    // A palette change redraws everything.
    g.set_dac(5, [0, 0, 0x3f]);
    assert_eq!(g.render(), Damage::Full);
    assert_eq!(g.px(0, 0), 0x0000ff);
}

#[test]
fn mode_12h_write_modes_latches_and_read_modes() {
    let mut g = Guest::new();
    g.set_mode(0xe3, &MODE12_SEQ, &MODE12_CRTC, &MODE12_GC, &MODE12_AR);
    // Write mode 2: colour 4 (red: attribute 4 -> DAC 4) in pixel 0 only.
    g.outb(0x3ce, 5);
    g.outb(0x3cf, 0x02);
    g.outb(0x3ce, 8);
    g.outb(0x3cf, 0x80);
    g.peek(0xa0000); // load latches
    g.poke(0xa0000, 0x04);
    // Write mode 0 with set/reset: colour 0xf (white) in pixels 8..15 of line 1.
    g.outb(0x3ce, 5);
    g.outb(0x3cf, 0x00);
    g.outb(0x3ce, 0);
    g.outb(0x3cf, 0x0f);
    g.outb(0x3ce, 1);
    g.outb(0x3cf, 0x0f);
    g.outb(0x3ce, 8);
    g.outb(0x3cf, 0xff);
    g.poke(0xa0000 + 80 + 1, 0);
    // Write mode 1 copies the latches: copy line 1's byte 1 to line 2's byte 0.
    g.peek(0xa0000 + 80 + 1);
    g.outb(0x3ce, 5);
    g.outb(0x3cf, 0x01);
    g.poke(0xa0000 + 160, 0x55);
    g.render();
    assert_eq!((g.surface.width(), g.surface.height()), (640, 480));
    assert_eq!(g.px(0, 0), 0xaa0000, "colour 4 is red");
    assert_eq!(g.px(1, 0), 0, "the bit mask kept pixel 1");
    assert_eq!(g.px(8, 1), 0xffffff);
    assert_eq!(g.px(15, 1), 0xffffff);
    assert_eq!(g.px(16, 1), 0);
    assert_eq!(g.px(3, 2), 0xffffff, "write mode 1 copied the latches");
    // Read mode 1: compare with colour 0xf, every plane cares.
    g.outb(0x3ce, 5);
    g.outb(0x3cf, 0x08);
    g.outb(0x3ce, 2);
    g.outb(0x3cf, 0x0f);
    g.outb(0x3ce, 7);
    g.outb(0x3cf, 0x0f);
    assert_eq!(g.peek(0xa0000 + 81), 0xff);
    assert_eq!(g.peek(0xa0000), 0x00);
    // Read mode 0, plane 2 of the red pixel's byte.
    g.outb(0x3ce, 5);
    g.outb(0x3cf, 0x00);
    g.outb(0x3ce, 4);
    g.outb(0x3cf, 2);
    assert_eq!(g.peek(0xa0000), 0x80);
}

/// Load an 8x16 glyph for `ch` into font map 0 of plane 2, as a BIOS does.
fn load_glyph(g: &mut Guest, ch: u8, rows: &[u8; 16]) {
    g.outb(0x3c4, 2);
    g.outb(0x3c5, 0x04);
    g.outb(0x3c4, 4);
    g.outb(0x3c5, 0x06);
    g.set_indexed(0x3ce, &[0, 0, 0, 0, 2, 0, 0x04]);
    for (r, &bits) in rows.iter().enumerate() {
        g.poke(0xa0000 + u64::from(ch) * 32 + r as u64, bits);
    }
    g.outb(0x3c4, 2);
    g.outb(0x3c5, 0x03);
    g.outb(0x3c4, 4);
    g.outb(0x3c5, 0x02);
    g.set_indexed(0x3ce, &[0, 0, 0, 0, 0, 0x10, 0x0e]);
}

#[test]
fn text_mode_glyphs_attributes_cursor_and_cell_damage() {
    let mut g = Guest::new();
    let glyph = [
        0x00, 0x00, 0x10, 0x38, 0x6c, 0xc6, 0xc6, 0xfe, 0xc6, 0xc6, 0xc6, 0xc6, 0x00, 0x00, 0x00,
        0x00,
    ];
    load_glyph(&mut g, b'A', &glyph);
    // 'A' yellow on blue at (0,0); 'A' light grey on black at row 1, col 2.
    g.poke(0xb8000, b'A');
    g.poke(0xb8001, 0x1e);
    g.poke(0xb8000 + 2 * 82, b'A');
    g.poke(0xb8000 + 2 * 82 + 1, 0x07);
    // Cursor on row 1, col 1, scanlines 14-15.
    for (i, v) in [(0x0a, 0x0e), (0x0b, 0x0f), (0x0e, 0), (0x0f, 81)] {
        g.outb(0x3d4, i);
        g.outb(0x3d5, v);
    }
    assert_eq!(g.render(), Damage::Full);
    assert_eq!((g.surface.width(), g.surface.height()), (720, 400));
    let (yellow, blue, grey) = (0xffff55, 0x0000aa, 0xaaaaaa);
    // Row 7 of the glyph is 0xfe: columns 0-6 on, 7 off, 9th = background.
    for x in 0..7 {
        assert_eq!(g.px(x, 7), yellow, "x {x}");
    }
    assert_eq!(g.px(7, 7), blue);
    assert_eq!(g.px(8, 7), blue, "9th column of a letter is background");
    assert_eq!(g.px(3, 2), yellow, "0x10: only column 3");
    assert_eq!(g.px(2, 2), blue);
    assert_eq!(g.px(18 + 3, 16 + 2), grey);
    assert_eq!(g.px(18 + 2, 16 + 2), 0);
    // The cursor takes the cell's foreground (grey on black, attribute 0).
    assert_eq!(g.px(9, 16 + 14), 0, "attribute 0 cell: black cursor");
    assert_eq!(g.render(), Damage::None);
    let text = g.vga.screen_text().unwrap();
    assert_eq!(text.len(), 25);
    assert_eq!((text[0].as_str(), text[1].as_str()), ("A", "  A"));
    // One cell changes: only it is damaged.
    g.poke(0xb8000 + 2 * 5, b'A');
    assert_eq!(g.render().rects(720, 400), vec![Rect::new(45, 0, 9, 16)]);
    // Moving the cursor damages the old and new cells.
    g.poke(0xb8000 + 2 * 81 + 1, 0x07);
    g.render();
    assert_eq!(g.px(9, 16 + 15), grey, "cursor on a grey cell");
    assert_eq!(g.px(9, 16 + 13), 0);
    g.outb(0x3d4, 0x0f);
    g.outb(0x3d5, 82);
    let mut rects = g.render().rects(720, 400);
    rects.sort_by_key(|r| r.x);
    assert_eq!(rects, vec![Rect::new(9, 16, 18, 16)]);
    assert_eq!(g.px(9, 16 + 15), 0, "old cursor cell redrawn");
    assert_eq!(g.px(18, 16 + 15), grey);
}

#[test]
fn vbe_1024x768x32_framebuffer_and_row_damage() {
    let mut g = Guest::new();
    let (_pci, log) = g.dirty_log();
    assert_eq!(g.dispi_read(INDEX_ID), ID5);
    g.dispi_write(INDEX_ENABLE, 0);
    g.dispi_write(INDEX_XRES, 1024);
    g.dispi_write(INDEX_YRES, 768);
    g.dispi_write(INDEX_BPP, 32);
    g.dispi_write(INDEX_ENABLE, ENABLED | LFB_ENABLED);
    assert_eq!(g.dispi_read(INDEX_ENABLE), ENABLED | LFB_ENABLED);
    assert_eq!(g.dispi_read(INDEX_VIRT_WIDTH), 1024);
    assert_eq!(g.render(), Damage::Full);
    assert_eq!((g.surface.width(), g.surface.height()), (1024, 768));
    assert_eq!(g.render(), Damage::None);
    // The guest writes row 100, pixels 10 and 11 (BGRX), through the LFB.
    let vram = g.vga.vram();
    let at = 100 * 4096 + 10 * 4;
    assert!(vram.write(at, &[0x30, 0x20, 0x10, 0, 0xff, 0xff, 0xff, 0]));
    log.lock().unwrap()[100 / 64] |= 1 << (100 % 64);
    let d = g.render();
    assert_eq!(d.rects(1024, 768), vec![Rect::new(0, 100, 1024, 1)]);
    assert_eq!(g.px(10, 100), 0x102030);
    assert_eq!(g.px(11, 100), 0xffffff);
    // Panning: y offset 100 puts that row at the top (a full redraw).
    g.dispi_write(INDEX_Y_OFFSET, 100);
    assert_eq!(g.dispi_read(INDEX_Y_OFFSET), 100);
    assert_eq!(g.render(), Damage::Full);
    assert_eq!(g.px(10, 0), 0x102030);
    assert_eq!(g.vga.screen_text(), None, "no text in graphics modes");
    // Disable: back to the VGA text screen.
    g.dispi_write(INDEX_ENABLE, 0);
    g.render();
    assert_eq!((g.surface.width(), g.surface.height()), (720, 400));
}

#[test]
fn vbe_16bpp_banked_window_and_8bit_dac() {
    let mut g = Guest::new();
    g.dispi_write(INDEX_XRES, 640);
    g.dispi_write(INDEX_YRES, 480);
    g.dispi_write(INDEX_BPP, 16);
    g.dispi_write(INDEX_ENABLE, ENABLED);
    // Pixel (0, 52) is byte 52 * 1280 = 66560 = bank 1, offset 1024.
    g.dispi_write(INDEX_BANK, 1);
    g.poke(0xa0000 + 1024, 0x00);
    g.poke(0xa0000 + 1025, 0xf8);
    g.render();
    assert_eq!((g.surface.width(), g.surface.height()), (640, 480));
    assert_eq!(g.px(0, 52), 0xff0000);
    let mut b = [0u8; 2];
    assert!(g.vga.vram().read(66560, &mut b));
    assert_eq!(b, [0x00, 0xf8]);
    // 8 bpp with an 8-bit DAC takes palette bytes as they are.
    g.dispi_write(INDEX_ENABLE, 0);
    g.dispi_write(INDEX_BPP, 8);
    g.dispi_write(INDEX_ENABLE, ENABLED | DAC_8BIT);
    g.set_dac(1, [0x80, 0x40, 0xc0]);
    g.dispi_write(INDEX_BANK, 0);
    g.poke(0xa0000 + 3, 1);
    g.render();
    assert_eq!(g.px(3, 0), 0x8040c0);
}

#[test]
fn absurd_vbe_modes_are_refused_and_nothing_reads_out_of_bounds() {
    let mut g = Guest::new();
    let text = (720, 400);
    for (x, y, bpp) in [
        (0, 768, 32),
        (1024, 0, 32),
        (1024, 768, 7),
        (1024, 768, 0),
        (u16::MAX, 768, 32),
        (1021, 768, 32),
        (16000, 12000, 32),
        (4096, 4096, 32),
    ] {
        g.dispi_write(INDEX_XRES, x);
        g.dispi_write(INDEX_YRES, y);
        g.dispi_write(INDEX_BPP, bpp);
        g.dispi_write(INDEX_ENABLE, ENABLED | LFB_ENABLED);
        assert_eq!(g.dispi_read(INDEX_ENABLE) & ENABLED, 0, "{x}x{y}x{bpp}");
        g.render();
        assert_eq!((g.surface.width(), g.surface.height()), text);
    }
    // GETCAPS reports the largest mode; the memory size in 64 KiB units.
    g.dispi_write(INDEX_ENABLE, GETCAPS);
    assert_eq!(g.dispi_read(INDEX_XRES), MAX_XRES);
    assert_eq!(g.dispi_read(INDEX_BPP), 32);
    assert_eq!(g.dispi_read(INDEX_VIDEO_MEMORY_64K), 256);
    assert_eq!(g.dispi_read(0x55), 0, "no such register");
    assert_eq!(g.dispi_read(0xffff), 0);
    g.dispi_write(0x1234, 7);
    // A good mode, then panning and virtual widths past the end are refused.
    g.dispi_write(INDEX_XRES, 2048);
    g.dispi_write(INDEX_YRES, 1536);
    g.dispi_write(INDEX_BPP, 32);
    g.dispi_write(INDEX_ENABLE, ENABLED | NOCLEARMEM);
    assert_eq!(g.dispi_read(INDEX_ENABLE) & ENABLED, ENABLED);
    g.dispi_write(INDEX_XRES, 4000);
    assert_eq!(
        g.dispi_read(INDEX_XRES),
        2048,
        "no geometry change while on"
    );
    g.dispi_write(INDEX_Y_OFFSET, 1000);
    assert_eq!(g.dispi_read(INDEX_Y_OFFSET), 0);
    g.dispi_write(INDEX_X_OFFSET, u16::MAX);
    assert_eq!(g.dispi_read(INDEX_X_OFFSET), 0);
    g.dispi_write(INDEX_VIRT_WIDTH, 8192);
    assert_eq!(g.dispi_read(INDEX_VIRT_WIDTH), 2048);
    g.dispi_write(INDEX_VIRT_WIDTH, 100);
    assert_eq!(g.dispi_read(INDEX_VIRT_WIDTH), 2048);
    g.dispi_write(INDEX_BANK, 0xffff);
    assert_eq!(g.dispi_read(INDEX_BANK), 0xff, "bank wraps inside 16 MiB");
    g.poke(0xaffff, 0x11);
    let mut b = [0u8];
    assert!(g.vga.vram().read(0xff_ffff, &mut b));
    assert_eq!(b[0], 0x11);
    g.render();
    assert_eq!((g.surface.width(), g.surface.height()), (2048, 1536));
}

#[test]
fn hostile_ports_and_window_accesses() {
    let mut g = Guest::new();
    // Unimplemented ports and registers read as all ones; writes are ignored.
    assert_eq!(g.inb(0x3c3), 0xff);
    assert_eq!(g.inb(0x3b5), 0xff, "mono CRTC in colour mode");
    g.outb(0x3d4, 0x3f);
    assert_eq!(g.inb(0x3d5), 0xff);
    g.outb(0x3d5, 0x12);
    g.outb(0x3ce, 0x0f);
    assert_eq!(g.inb(0x3cf), 0xff);
    g.outb(0x3cf, 0x12);
    g.outb(0x3c0, 0x1f);
    g.outb(0x3c0, 0x55);
    // Input status 1 toggles its retrace bits and resets the flip-flop.
    let a = g.inb(0x3da);
    let b = g.inb(0x3da);
    assert_eq!(a ^ b, 0x09);
    g.outb(0x3c0, 0x30);
    g.inb(0x3da);
    g.outb(0x3c0, 0x12);
    assert_eq!(g.inb(0x3c0), 0x12, "index, not data, after the reset");
    // DAC read-back with its own index.
    g.set_dac(200, [1, 2, 3]);
    g.outb(0x3c7, 200);
    assert_eq!([g.inb(0x3c9), g.inb(0x3c9), g.inb(0x3c9)], [1, 2, 3]);
    assert_eq!(g.inb(0x3c7), 3);
    // Window accesses past the decoded range and wide ones at the end.
    g.window.write(0x1_ffff, &[1, 2, 3, 4, 5, 6, 7, 8]);
    g.window.write(u64::MAX - 2, &[1, 2, 3, 4]);
    let mut buf = [0u8; 8];
    g.window.read(u64::MAX - 4, &mut buf);
    assert_eq!(buf, [0xff; 8]);
    // Text mode maps 0xB8000-0xBFFFF only: 0xA0000 reads as all ones.
    assert_eq!(g.peek(0xa0000), 0xff);
    // Absurd CRTC values: huge rows, zero stride, start at the top.
    g.inb(0x3da);
    g.outb(0x3c0, 0x20);
    g.outb(0x3d4, 0x11);
    g.outb(0x3d5, 0);
    for (i, v) in [
        (1, 0xff),
        (0x12, 0xff),
        (7, 0x42),
        (9, 0x00),
        (0x13, 0),
        (0x0c, 0xff),
        (0x0d, 0xff),
    ] {
        g.outb(0x3d4, i);
        g.outb(0x3d5, v);
    }
    g.render();
    assert_eq!((g.surface.width(), g.surface.height()), (256 * 9, 1024));
    g.set_mode(0x63, &MODE13_SEQ, &MODE13_CRTC, &MODE13_GC, &MODE13_AR);
    g.outb(0x3d4, 0x0c);
    g.outb(0x3d5, 0xff);
    g.outb(0x3d4, 0x13);
    g.outb(0x3d5, 0xff);
    g.render();
}

#[test]
fn log_lines_are_rate_limited() {
    let mut l = LogLimit::default();
    let let_through = (0..10_000).filter(|_| l.allow().is_some()).count();
    assert_eq!(let_through, 4 + 11, "1-4, then 8, 16, ..., 8192");
}

#[test]
fn pci_function_ids_bars_and_rom() {
    let vga = Vga::new(DEFAULT_VRAM).unwrap();
    let rom: Vec<u8> = [0x55, 0xaa, 0x4e]
        .iter()
        .copied()
        .chain(vec![0; 39933])
        .collect();
    let mut pci = vga.pci(0xfd00_0000, 0xfebf_0000, Some(rom)).unwrap();
    let rd = |p: &mut VgaPci, off: u16| {
        let mut b = [0u8; 4];
        p.read_config(off, &mut b);
        u32::from_le_bytes(b)
    };
    assert_eq!(rd(&mut pci, 0), 0x1111_1234);
    assert_eq!(rd(&mut pci, 8), 0x0300_0002);
    assert_eq!(rd(&mut pci, 0x2c), 0x1100_1af4);
    assert_eq!(rd(&mut pci, 0x10), 0xfd00_0008, "prefetchable memory32");
    for (off, size) in [(0x10u16, 16u32 << 20), (0x18, 4096)] {
        pci.write_config(off, &[0xff; 4]);
        assert_eq!(rd(&mut pci, off) & !0xf, !(size - 1), "BAR at {off:#x}");
    }
    pci.write_config(0x30, &[0xff; 4]);
    assert_eq!(rd(&mut pci, 0x30), !(0x10000 - 1) | 1, "64 KiB ROM");
    let mut b = [0u8; 4];
    pci.bar_read(ROM_BAR, 0, &mut b);
    assert_eq!(b, [0x55, 0xaa, 0x4e, 0]);
    pci.bar_read(ROM_BAR, 0xffff, &mut b);
    assert_eq!(b, [0, 0xff, 0xff, 0xff]);
    assert!(pci.bar_ram(0).is_some() && pci.bar_ram(2).is_none());
    // BAR 2: dispi at 0x500 + index * 2, the VGA ports at 0x400, QEMU's area.
    let mut w = [0u8; 2];
    pci.bar_read(2, 0x500, &mut w);
    assert_eq!(u16::from_le_bytes(w), ID5);
    pci.bar_write(2, 0x502, &800u16.to_le_bytes());
    pci.bar_read(2, 0x502, &mut w);
    assert_eq!(u16::from_le_bytes(w), 800);
    pci.bar_write(2, 0x408, &[7]); // 0x3c8: DAC write index
    let mut one = [0u8];
    pci.bar_read(2, 0x408, &mut one);
    assert_eq!(one[0], 7);
    pci.bar_read(2, 0x600, &mut b);
    assert_eq!(u32::from_le_bytes(b), 8);
    pci.bar_read(2, 0x604, &mut b);
    assert_eq!(u32::from_le_bytes(b), 0x1e1e_1e1e);
    pci.bar_read(2, 0x700, &mut b);
    assert_eq!(b, [0xff; 4]);
    pci.bar_read(2, 0x604, &mut [0u8; 8]);
    pci.bar_read(2, u64::MAX, &mut b);
    pci.bar_read(0, u64::MAX - 1, &mut b);
    assert_eq!(b, [0xff; 4]);
    pci.bar_write(0, u64::MAX - 1, &b);
    pci.bar_write(2, u64::MAX - 1, &b);
    assert!(matches!(Vga::new(3 << 20), Err(VgaError::BadVramSize(_))));
    assert!(matches!(Vga::new(512 << 20), Err(VgaError::BadVramSize(_))));
}

#[test]
fn nothing_is_drawn_without_a_render_and_blank_screens_are_black() {
    let mut g = Guest::new();
    g.render();
    // Clearing the palette address source blanks the screen.
    g.inb(0x3da);
    g.outb(0x3c0, 0x00);
    assert_eq!(g.render(), Damage::Full);
    assert!(g.surface.pixels().iter().all(|&p| p == 0));
    assert_eq!(g.render(), Damage::None);
}

#[test]
fn a_restored_vga_shows_the_same_mode_palette_and_pixels() {
    let mut a = Guest::new();
    let mut pci = a.vga.pci(0xe000_0000, 0xe100_0000, None).unwrap();
    pci.write_config(4, &[0x02, 0]);
    a.dispi_write(INDEX_XRES, 64);
    a.dispi_write(INDEX_YRES, 48);
    a.dispi_write(INDEX_BPP, 32);
    a.dispi_write(INDEX_ENABLE, ENABLED | LFB_ENABLED);
    pci.bar_write(0, 4 * (10 * 64 + 3), &0x00ab_cdefu32.to_le_bytes());
    a.set_dac(7, [1, 2, 3]);
    a.render();
    let saved = crate::state::save_to_vec(&pci);

    let mut b = Guest::new();
    let mut pci_b = b.vga.pci(0xe000_0000, 0xe100_0000, None).unwrap();
    crate::state::restore_from(&mut pci_b, &saved).unwrap();
    assert_eq!(b.dispi_read(INDEX_XRES), 64);
    assert_eq!(b.dispi_read(INDEX_ENABLE) & ENABLED, ENABLED);
    b.render();
    assert_eq!((b.surface.width(), b.surface.height()), (64, 48));
    assert_eq!(b.px(3, 10) & 0x00ff_ffff, 0x00ab_cdef);
    b.outb(0x3c7, 7);
    assert_eq!([b.inb(0x3c9), b.inb(0x3c9), b.inb(0x3c9)], [1, 2, 3]);

    // Another video memory size, or a mode too big for it: refused.
    let small = Vga::new(MIN_VRAM).unwrap();
    let mut pci_s = small.pci(0xe000_0000, 0xe100_0000, None).unwrap();
    assert!(crate::state::restore_from(&mut pci_s, &saved).is_err());
}
