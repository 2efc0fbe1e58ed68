//! ZRLE encoding (RFB encoding 16): the rectangle cut into 64x64 tiles, each
//! sent as solid, packed palette, raw, plain RLE or palette RLE (whichever is
//! smallest), all through one zlib stream that lives as long as the
//! connection.

use flate2::{Compress, Compression, FlushCompress};
use kite_display::{Rect, Surface};

use crate::rfb::pixel_format::{CPixel, PixelFormat};

const TILE: u32 = 64;
const MAX_PALETTE: usize = 127;
const EMPTY: u32 = u32::MAX;

/// One connection's ZRLE state (the zlib stream must persist across updates).
pub struct ZrleEncoder {
    z: Compress,
    tiles: Vec<u8>,
    runs: Vec<(u32, u32)>,
    palette: Vec<u32>,
    slots: Vec<(u32, u8)>,
}

impl Default for ZrleEncoder {
    fn default() -> Self {
        Self::new()
    }
}

impl ZrleEncoder {
    pub fn new() -> Self {
        ZrleEncoder {
            // Level 1: a full 1024x768 screen costs ~8 ms rather than ~55 ms at
            // level 6, for ~15% more bytes.
            z: Compress::new(Compression::new(1), true),
            tiles: Vec::new(),
            runs: Vec::with_capacity((TILE * TILE) as usize),
            palette: Vec::with_capacity(MAX_PALETTE),
            slots: vec![(EMPTY, 0); 256],
        }
    }

    /// Appends the ZRLE data of `rect` (a u32 length, then zlib data) to `out`.
    pub fn encode(&mut self, surface: &Surface, rect: Rect, pf: &PixelFormat, out: &mut Vec<u8>) {
        let r = rect.clip(surface.width(), surface.height());
        let cp = pf.cpixel();
        self.tiles.clear();
        let mut ty = r.y;
        while ty < r.y + r.h {
            let th = TILE.min(r.y + r.h - ty);
            let mut tx = r.x;
            while tx < r.x + r.w {
                let tw = TILE.min(r.x + r.w - tx);
                self.tile(surface, Rect::new(tx, ty, tw, th), pf, cp);
                tx += tw;
            }
            ty += th;
        }
        let len_at = out.len();
        out.extend_from_slice(&[0; 4]);
        let mut input: &[u8] = &self.tiles;
        loop {
            out.reserve((input.len() / 2).max(4096) + 64);
            let before = self.z.total_in();
            // Compressing into a Vec cannot fail: the only errors are for
            // corrupt streams, which a compressor never sees.
            if self
                .z
                .compress_vec(input, out, FlushCompress::Sync)
                .is_err()
            {
                break;
            }
            let used = (self.z.total_in() - before) as usize;
            input = &input[used.min(input.len())..];
            if input.is_empty() && out.len() < out.capacity() {
                break;
            }
        }
        let len = (out.len() - len_at - 4) as u32;
        out[len_at..len_at + 4].copy_from_slice(&len.to_be_bytes());
    }

    fn index_of(&mut self, colour: u32) -> Option<u8> {
        let mut h = (colour.wrapping_mul(0x9e37_79b1) >> 24) as usize;
        loop {
            let (c, i) = self.slots[h];
            if c == colour {
                return Some(i);
            }
            if c == EMPTY {
                if self.palette.len() >= MAX_PALETTE {
                    return None;
                }
                let i = self.palette.len() as u8;
                self.palette.push(colour);
                self.slots[h] = (colour, i);
                return Some(i);
            }
            h = (h + 1) & 255;
        }
    }

    fn tile(&mut self, s: &Surface, t: Rect, pf: &PixelFormat, cp: CPixel) {
        // Runs in raster order (ZRLE runs may cross rows).
        self.runs.clear();
        for y in t.y..t.y + t.h {
            let row = &s.row(y)[t.x as usize..(t.x + t.w) as usize];
            for &p in row {
                let p = p & 0x00ff_ffff;
                match self.runs.last_mut() {
                    Some((c, n)) if *c == p => *n += 1,
                    _ => self.runs.push((p, 1)),
                }
            }
        }
        self.palette.clear();
        self.slots.iter_mut().for_each(|s| *s = (EMPTY, 0));
        let mut palette_ok = true;
        for i in 0..self.runs.len() {
            if self.index_of(self.runs[i].0).is_none() {
                palette_ok = false;
                break;
            }
        }
        let cpl = cp.len(pf);
        let pixels = (t.w * t.h) as usize;
        let n = self.palette.len();
        let len_bytes = |len: u32| ((len - 1) / 255 + 1) as usize;
        let raw = pixels * cpl;
        let plain_rle: usize = self.runs.iter().map(|&(_, l)| cpl + len_bytes(l)).sum();
        let mut best = (raw, 0u8);
        if plain_rle < best.0 {
            best = (plain_rle, 128);
        }
        if palette_ok {
            if n == 1 {
                best = (cpl, 1);
            } else {
                let pal_rle: usize = n * cpl
                    + self
                        .runs
                        .iter()
                        .map(|&(_, l)| if l == 1 { 1 } else { 1 + len_bytes(l) })
                        .sum::<usize>();
                if pal_rle < best.0 {
                    best = (pal_rle, 128 + n as u8);
                }
                if n <= 16 {
                    let bits = bits_for(n);
                    let packed = n * cpl + t.h as usize * (t.w as usize * bits).div_ceil(8);
                    if packed < best.0 {
                        best = (packed, n as u8);
                    }
                }
            }
        }
        let out = &mut self.tiles;
        let sub = best.1;
        out.push(sub);
        match sub {
            0 => {
                for y in t.y..t.y + t.h {
                    for &p in &s.row(y)[t.x as usize..(t.x + t.w) as usize] {
                        cp.put(pf, out, p);
                    }
                }
            }
            1 => cp.put(pf, out, self.palette[0]),
            2..=16 => {
                for &c in &self.palette {
                    cp.put(pf, out, c);
                }
                let bits = bits_for(n);
                let (mut acc, mut nbits, mut x) = (0u32, 0usize, 0u32);
                for &(c, len) in &self.runs {
                    let idx = u32::from(lookup(&self.slots, c));
                    for _ in 0..len {
                        acc = (acc << bits) | idx;
                        nbits += bits;
                        if nbits == 8 {
                            out.push(acc as u8);
                            acc = 0;
                            nbits = 0;
                        }
                        x += 1;
                        if x == t.w {
                            if nbits > 0 {
                                out.push((acc << (8 - nbits)) as u8);
                                acc = 0;
                                nbits = 0;
                            }
                            x = 0;
                        }
                    }
                }
            }
            128 => {
                for &(c, len) in &self.runs {
                    cp.put(pf, out, c);
                    put_run_len(out, len);
                }
            }
            _ => {
                for &c in &self.palette {
                    cp.put(pf, out, c);
                }
                for &(c, len) in &self.runs {
                    let idx = lookup(&self.slots, c);
                    if len == 1 {
                        out.push(idx);
                    } else {
                        out.push(idx | 128);
                        put_run_len(out, len);
                    }
                }
            }
        }
    }
}

fn lookup(slots: &[(u32, u8)], colour: u32) -> u8 {
    let mut h = (colour.wrapping_mul(0x9e37_79b1) >> 24) as usize;
    for _ in 0..slots.len() {
        let (c, i) = slots[h];
        if c == colour {
            return i;
        }
        h = (h + 1) & 255;
    }
    0
}

fn bits_for(n: usize) -> usize {
    match n {
        0..=2 => 1,
        3..=4 => 2,
        _ => 4,
    }
}

/// A run length as ZRLE writes it: (len-1) as 255s and a final byte < 255.
fn put_run_len(out: &mut Vec<u8>, len: u32) {
    let mut rest = len - 1;
    while rest >= 255 {
        out.push(255);
        rest -= 255;
    }
    out.push(rest as u8);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reference ZRLE decoder for 3-byte CPIXELs (the default format).
    pub(crate) fn decode(data: &[u8], w: u32, h: u32) -> Vec<u32> {
        let mut img = vec![0u32; (w * h) as usize];
        let mut i = 0;
        let cpix = |d: &[u8], i: &mut usize| {
            let v = u32::from(d[*i]) | u32::from(d[*i + 1]) << 8 | u32::from(d[*i + 2]) << 16;
            *i += 3;
            v
        };
        let run_len = |d: &[u8], i: &mut usize| {
            let mut len = 1u32;
            loop {
                let b = d[*i];
                *i += 1;
                len += u32::from(b);
                if b != 255 {
                    return len;
                }
            }
        };
        for ty in (0..h).step_by(64) {
            for tx in (0..w).step_by(64) {
                let (tw, th) = (64.min(w - tx), 64.min(h - ty));
                let mut px = Vec::with_capacity((tw * th) as usize);
                let sub = data[i];
                i += 1;
                match sub {
                    0 => (0..tw * th).for_each(|_| px.push(cpix(data, &mut i))),
                    1 => {
                        let c = cpix(data, &mut i);
                        px.resize((tw * th) as usize, c);
                    }
                    2..=16 => {
                        let pal: Vec<u32> = (0..sub).map(|_| cpix(data, &mut i)).collect();
                        let bits = bits_for(sub as usize);
                        for _ in 0..th {
                            let mut nb = 0;
                            let mut byte = 0u8;
                            for _ in 0..tw {
                                if nb == 0 {
                                    byte = data[i];
                                    i += 1;
                                    nb = 8;
                                }
                                nb -= bits;
                                let idx = (byte >> nb) & ((1 << bits) - 1) as u8;
                                px.push(pal[idx as usize]);
                            }
                        }
                    }
                    128 => {
                        while px.len() < (tw * th) as usize {
                            let c = cpix(data, &mut i);
                            let l = run_len(data, &mut i);
                            (0..l).for_each(|_| px.push(c));
                        }
                    }
                    130..=255 => {
                        let pal: Vec<u32> = (0..sub - 128).map(|_| cpix(data, &mut i)).collect();
                        while px.len() < (tw * th) as usize {
                            let b = data[i];
                            i += 1;
                            let l = if b & 128 != 0 {
                                run_len(data, &mut i)
                            } else {
                                1
                            };
                            (0..l).for_each(|_| px.push(pal[(b & 127) as usize]));
                        }
                    }
                    other => panic!("bad subencoding {other}"),
                }
                assert_eq!(px.len(), (tw * th) as usize);
                for (k, c) in px.into_iter().enumerate() {
                    let (x, y) = (tx + k as u32 % tw, ty + k as u32 / tw);
                    img[(y * w + x) as usize] = c;
                }
            }
        }
        assert_eq!(i, data.len(), "trailing bytes");
        img
    }

    fn unzip(stream: &mut flate2::Decompress, chunk: &[u8]) -> Vec<u8> {
        let len = u32::from_be_bytes(chunk[..4].try_into().unwrap()) as usize;
        assert_eq!(len, chunk.len() - 4);
        let mut out = Vec::with_capacity(1 << 24);
        stream
            .decompress_vec(&chunk[4..], &mut out, flate2::FlushDecompress::Sync)
            .unwrap();
        out
    }

    fn pattern(w: u32, h: u32) -> Surface {
        let mut s = Surface::new(w, h);
        // Solid areas, a 2-colour checker, a 12-colour stripe, long runs and noise.
        s.fill(Rect::new(0, 0, w, h), 0x202020);
        for y in 0..h {
            for x in 0..w {
                let v = if x < 64 {
                    continue;
                } else if x < 128 {
                    if (x + y) % 2 == 0 {
                        0xffffff
                    } else {
                        0
                    }
                } else if x < 192 {
                    (x % 12) * 0x101010
                } else if y < 64 {
                    (x.wrapping_mul(2654435761) ^ y.wrapping_mul(40503)).wrapping_mul(2246822519)
                        & 0xffffff
                } else {
                    0x0000ff * (y % 3)
                };
                s.row_mut(y)[x as usize] = v;
            }
        }
        s
    }

    #[test]
    fn zrle_round_trips_every_subencoding_across_updates() {
        let (w, h) = (300, 150);
        let s = pattern(w, h);
        let pf = PixelFormat::default_rgb888();
        let mut enc = ZrleEncoder::new();
        let mut z = flate2::Decompress::new(true);
        let mut out = Vec::new();
        enc.encode(&s, Rect::new(0, 0, w, h), &pf, &mut out);
        let tiles = unzip(&mut z, &out);
        let subs: std::collections::BTreeSet<u8> = {
            // Walk the first tile row's sub-encodings by decoding, then check the picture.
            let img = decode(&tiles, w, h);
            assert_eq!(
                img,
                s.pixels().iter().map(|p| p & 0xffffff).collect::<Vec<_>>()
            );
            let mut set = std::collections::BTreeSet::new();
            set.insert(tiles[0]);
            set
        };
        assert!(subs.contains(&1), "the first tile is solid: {subs:?}");
        // A second update on the same stream decodes too (a sub-rectangle).
        let mut out2 = Vec::new();
        enc.encode(&s, Rect::new(64, 10, 70, 70), &pf, &mut out2);
        let tiles2 = unzip(&mut z, &out2);
        let img2 = decode(&tiles2, 70, 70);
        assert_eq!(img2[0], s.pixel(64, 10).unwrap());
        assert_eq!(img2[70 * 69 + 69], s.pixel(133, 79).unwrap());
        assert!(
            out.len() < (w * h * 3) as usize / 2,
            "it compresses: {}",
            out.len()
        );
    }

    #[test]
    fn each_tile_kind_is_chosen_where_it_is_smallest() {
        let pf = PixelFormat::default_rgb888();
        let kind = |s: &Surface| {
            let mut enc = ZrleEncoder::new();
            enc.tiles.clear();
            enc.tile(s, Rect::new(0, 0, s.width(), s.height()), &pf, pf.cpixel());
            let sub = enc.tiles[0];
            assert_eq!(decode(&enc.tiles, s.width(), s.height()), s.pixels());
            sub
        };
        assert_eq!(kind(&pattern(64, 64)), 1, "solid");
        let mut checker = Surface::new(64, 64);
        for y in 0..64u32 {
            for x in 0..64u32 {
                checker.row_mut(y)[x as usize] = if (x + y) % 2 == 0 { 0xffffff } else { 0 };
            }
        }
        assert_eq!(kind(&checker), 2, "packed palette of 2");
        let mut bands = Surface::new(64, 64);
        for y in 0..64u32 {
            bands.fill(Rect::new(0, y, 64, 1), (y % 20) * 0x0a0a0a);
        }
        assert_eq!(kind(&bands), 128 + 20, "palette RLE");
        let mut noise = Surface::new(64, 64);
        for (i, p) in noise.pixels_mut().iter_mut().enumerate() {
            *p = (i as u32).wrapping_mul(2654435761) & 0xffffff;
        }
        assert_eq!(kind(&noise), 0, "raw");
        let mut long = Surface::new(64, 64);
        for y in 0..64u32 {
            long.fill(Rect::new(0, y, 64, 1), y * 0x030201 + 7);
        }
        assert_eq!(kind(&long), 128, "plain RLE: 64 colours, long runs");
    }

    #[test]
    fn sixteen_bit_clients_get_two_byte_cpixels() {
        // RGB565 little endian: CPIXEL is the whole 2-byte pixel.
        let pf = PixelFormat {
            bits_per_pixel: 16,
            depth: 16,
            big_endian: false,
            red_max: 31,
            green_max: 63,
            blue_max: 31,
            red_shift: 11,
            green_shift: 5,
            blue_shift: 0,
        };
        let mut s = Surface::new(64, 2);
        s.fill(Rect::new(0, 0, 64, 2), 0xff0000);
        let mut enc = ZrleEncoder::new();
        enc.tile(&s, Rect::new(0, 0, 64, 2), &pf, pf.cpixel());
        assert_eq!(enc.tiles, vec![1, 0x00, 0xf8], "solid red");
        s.fill(Rect::new(0, 1, 64, 1), 0x0000ff);
        enc.tiles.clear();
        enc.tile(&s, Rect::new(0, 0, 64, 2), &pf, pf.cpixel());
        // Two runs of 64: plain RLE (2 * (2 + 1) bytes) beats palettes.
        assert_eq!(enc.tiles, vec![128, 0x00, 0xf8, 63, 0x1f, 0x00, 63]);
    }
}
