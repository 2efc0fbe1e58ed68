//! Text mode: character/attribute cells (planes 0 and 1) drawn with the
//! font the BIOS or the guest loaded into plane 2 (32 bytes a glyph; map A
//! or B by attribute bit 3), 8 or 9 dots wide, the cursor from CRTC
//! 0x0A-0x0F. Only cells that differ from the last render are redrawn.
//! Blinking text is drawn steadily on (blinking is optional).
//!
//! It must not know about registers beyond reading them, or about viewers.

use kite_display::{Damage, Rect, Surface};

use super::registers::Registers;
use super::render::Colours;

/// Where text is and how big a cell is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TextLayout {
    pub cols: u32,
    pub rows: u32,
    /// 8 or 9.
    pub char_w: u32,
    /// 1 to 32.
    pub char_h: u32,
    /// Memory offsets from one row to the next.
    pub stride: u32,
    pub start: u32,
    /// Plane 2 offsets of font maps A (attribute bit 3 set) and B.
    pub font_a: u32,
    pub font_b: u32,
    /// 9th column repeats the 8th for line-drawing characters 0xC0-0xDF.
    pub line_graphics: bool,
    /// Attribute bit 7 is blink, not background intensity.
    pub blink: bool,
}

/// Offset in plane 2 of character map `n` (0-7).
fn font_offset(n: u8) -> u32 {
    u32::from(n & 3) * 0x4000 + u32::from(n >> 2) * 0x2000
}

impl TextLayout {
    pub fn of(r: &Registers) -> TextLayout {
        let char_h = u32::from(r.crtc[9] & 0x1f) + 1;
        let mut lines = r.vertical_display_lines();
        if r.crtc[9] & 0x80 != 0 {
            lines /= 2;
        }
        let s3 = r.seq[3];
        TextLayout {
            cols: r.horizontal_chars(),
            rows: lines / char_h,
            char_w: if r.seq[1] & 1 != 0 { 8 } else { 9 },
            char_h,
            stride: r.line_stride(),
            start: r.start_address(),
            font_a: font_offset(((s3 >> 2) & 3) | ((s3 >> 3) & 4)),
            font_b: font_offset((s3 & 3) | ((s3 >> 2) & 4)),
            line_graphics: r.ar[0x10] & 0x04 != 0,
            blink: r.ar[0x10] & 0x08 != 0,
        }
    }
}

/// The cursor as drawn: cell index and the glyph rows it covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub cell: usize,
    pub first: u32,
    pub last: u32,
}

fn cursor(r: &Registers, t: &TextLayout) -> Option<Cursor> {
    if r.crtc[0x0a] & 0x20 != 0 || t.stride == 0 {
        return None;
    }
    let first = u32::from(r.crtc[0x0a] & 0x1f);
    let last = u32::from(r.crtc[0x0b] & 0x1f).min(t.char_h - 1);
    if first > last {
        return None;
    }
    let loc = (u32::from(r.crtc[0x0e]) << 8) | u32::from(r.crtc[0x0f]);
    let rel = loc.wrapping_sub(t.start) & 0xffff;
    let (row, col) = (rel / t.stride, rel % t.stride);
    (row < t.rows && col < t.cols).then(|| Cursor {
        cell: (row * t.cols + col) as usize,
        first,
        last,
    })
}

/// What the last render drew.
#[derive(Debug, Default)]
pub struct TextCache {
    cells: Vec<u16>,
    cursor: Option<Cursor>,
}

fn byte(vram: &[u8], at: usize) -> u8 {
    vram.get(at).copied().unwrap_or(0)
}

/// Redraw the cells that changed (all when `full`), returning their damage.
pub fn render(
    vram: &[u8],
    r: &Registers,
    t: &TextLayout,
    colours: &Colours,
    cache: &mut TextCache,
    full: bool,
    surface: &mut Surface,
) -> Damage {
    let n = (t.cols * t.rows) as usize;
    let full = full || cache.cells.len() != n;
    if full {
        cache.cells = vec![0; n];
    }
    let cur = cursor(r, t);
    let (w, h) = (surface.width(), surface.height());
    let mut damage = Damage::None;
    for row in 0..t.rows {
        let mut span: Option<(u32, u32)> = None;
        for col in 0..t.cols {
            let i = (row * t.cols + col) as usize;
            let o = (t.start + row * t.stride + col) as usize & 0xffff;
            let cell = u16::from_le_bytes([byte(vram, o * 4), byte(vram, o * 4 + 1)]);
            let has_cursor = cur.is_some_and(|c| c.cell == i);
            let had_cursor = cache.cursor.is_some_and(|c| c.cell == i);
            let changed = full
                || cache.cells[i] != cell
                || ((has_cursor || had_cursor) && cur != cache.cursor);
            if !changed {
                continue;
            }
            cache.cells[i] = cell;
            draw_cell(
                vram,
                t,
                colours,
                cell,
                has_cursor.then_some(cur).flatten(),
                col,
                row,
                surface,
            );
            span = Some(span.map_or((col, col), |(a, _)| (a, col)));
        }
        if let Some((a, b)) = span {
            damage.add_rect(
                Rect::new(
                    a * t.char_w,
                    row * t.char_h,
                    (b - a + 1) * t.char_w,
                    t.char_h,
                ),
                w,
                h,
            );
        }
    }
    cache.cursor = cur;
    if full {
        Damage::Full
    } else {
        damage
    }
}

/// The characters of every row, as `Vga::screen_text` describes.
pub fn screen_text(vram: &[u8], t: &TextLayout) -> Vec<String> {
    (0..t.rows)
        .map(|row| {
            let line: String = (0..t.cols)
                .map(|col| {
                    let o = (t.start + row * t.stride + col) as usize & 0xffff;
                    match byte(vram, o * 4) {
                        0 => ' ',
                        c @ 0x20..=0x7e => char::from(c),
                        _ => '.',
                    }
                })
                .collect();
            line.trim_end().to_string()
        })
        .collect()
}

#[allow(clippy::too_many_arguments)]
fn draw_cell(
    vram: &[u8],
    t: &TextLayout,
    colours: &Colours,
    cell: u16,
    cursor: Option<Cursor>,
    col: u32,
    row: u32,
    surface: &mut Surface,
) {
    let [ch, attr] = cell.to_le_bytes();
    let fg = colours.attr[usize::from(attr & 0x0f)];
    let bg_index = if t.blink { (attr >> 4) & 7 } else { attr >> 4 };
    let bg = colours.attr[usize::from(bg_index)];
    let font = if attr & 0x08 != 0 { t.font_a } else { t.font_b };
    let glyph = font as usize + usize::from(ch) * 32;
    let x0 = (col * t.char_w) as usize;
    let ninth = t.line_graphics && (0xc0..=0xdf).contains(&ch);
    for gy in 0..t.char_h {
        let y = row * t.char_h + gy;
        let line = surface.row_mut(y);
        let Some(px) = line.get_mut(x0..x0 + t.char_w as usize) else {
            continue;
        };
        let in_cursor = cursor.is_some_and(|c| (c.first..=c.last).contains(&gy));
        let bits = if in_cursor {
            0xff
        } else {
            byte(vram, (glyph + gy as usize) * 4 + 2)
        };
        for (x, p) in px.iter_mut().take(8).enumerate() {
            *p = if bits & (0x80 >> x) != 0 { fg } else { bg };
        }
        if let Some(p) = px.get_mut(8) {
            *p = if (ninth || in_cursor) && bits & 1 != 0 {
                fg
            } else {
                bg
            };
        }
    }
}
