//! The client's pixel format (RFB PIXEL_FORMAT) and the conversion of
//! 0x00RRGGBB surface pixels into it.
//!
//! Knows nothing of sockets or encodings.

use crate::error::VncError;

/// A true-colour pixel format as the client asked for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PixelFormat {
    pub bits_per_pixel: u8,
    pub depth: u8,
    pub big_endian: bool,
    pub red_max: u16,
    pub green_max: u16,
    pub blue_max: u16,
    pub red_shift: u8,
    pub green_shift: u8,
    pub blue_shift: u8,
}

impl PixelFormat {
    /// What the server offers: 32 bpp, depth 24, little endian, 0x00RRGGBB.
    pub const fn default_rgb888() -> Self {
        PixelFormat {
            bits_per_pixel: 32,
            depth: 24,
            big_endian: false,
            red_max: 255,
            green_max: 255,
            blue_max: 255,
            red_shift: 16,
            green_shift: 8,
            blue_shift: 0,
        }
    }

    /// The 16 bytes of PIXEL_FORMAT on the wire.
    pub fn to_bytes(&self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[0] = self.bits_per_pixel;
        b[1] = self.depth;
        b[2] = self.big_endian as u8;
        b[3] = 1; // true colour
        b[4..6].copy_from_slice(&self.red_max.to_be_bytes());
        b[6..8].copy_from_slice(&self.green_max.to_be_bytes());
        b[8..10].copy_from_slice(&self.blue_max.to_be_bytes());
        b[10] = self.red_shift;
        b[11] = self.green_shift;
        b[12] = self.blue_shift;
        b
    }

    /// Parses and checks a client's PIXEL_FORMAT: only true colour at 8, 16
    /// or 32 bits per pixel, each channel's bits inside the pixel.
    pub fn from_bytes(b: &[u8; 16]) -> Result<Self, VncError> {
        let pf = PixelFormat {
            bits_per_pixel: b[0],
            depth: b[1],
            big_endian: b[2] != 0,
            red_max: u16::from_be_bytes([b[4], b[5]]),
            green_max: u16::from_be_bytes([b[6], b[7]]),
            blue_max: u16::from_be_bytes([b[8], b[9]]),
            red_shift: b[10],
            green_shift: b[11],
            blue_shift: b[12],
        };
        if b[3] == 0 {
            return Err(VncError::protocol(
                "colour-map pixel formats are not supported",
            ));
        }
        if !matches!(pf.bits_per_pixel, 8 | 16 | 32) {
            return Err(VncError::protocol(format!(
                "{} bits per pixel is not supported (8, 16 or 32)",
                pf.bits_per_pixel
            )));
        }
        let bpp = u32::from(pf.bits_per_pixel);
        for (max, shift) in [
            (pf.red_max, pf.red_shift),
            (pf.green_max, pf.green_shift),
            (pf.blue_max, pf.blue_shift),
        ] {
            let bits = 16 - max.leading_zeros();
            if max == 0 || u32::from(shift) + bits > bpp {
                return Err(VncError::protocol(format!(
                    "channel max {max} shift {shift} does not fit {bpp} bits per pixel"
                )));
            }
        }
        Ok(pf)
    }

    pub fn bytes_per_pixel(&self) -> usize {
        usize::from(self.bits_per_pixel / 8)
    }

    /// The client's pixel value for a 0x00RRGGBB colour.
    #[inline]
    pub fn pixel_value(&self, rgb: u32) -> u32 {
        let scale = |c: u32, max: u16| match max {
            255 => c,
            0..=254 => div255(c * u32::from(max)),
            _ => (c * u32::from(max) + 127) / 255,
        };
        let r = scale((rgb >> 16) & 0xff, self.red_max);
        let g = scale((rgb >> 8) & 0xff, self.green_max);
        let b = scale(rgb & 0xff, self.blue_max);
        (r << self.red_shift) | (g << self.green_shift) | (b << self.blue_shift)
    }

    /// Appends one pixel in the client's format (bits_per_pixel/8 bytes).
    #[inline]
    pub fn put(&self, out: &mut Vec<u8>, rgb: u32) {
        let v = self.pixel_value(rgb);
        match (self.bits_per_pixel, self.big_endian) {
            (8, _) => out.push(v as u8),
            (16, false) => out.extend_from_slice(&(v as u16).to_le_bytes()),
            (16, true) => out.extend_from_slice(&(v as u16).to_be_bytes()),
            (_, false) => out.extend_from_slice(&v.to_le_bytes()),
            (_, true) => out.extend_from_slice(&v.to_be_bytes()),
        }
    }

    /// Appends pixels as fast as the common formats allow.
    pub fn put_row(&self, out: &mut Vec<u8>, row: &[u32]) {
        if *self == Self::default_rgb888() {
            out.reserve(row.len() * 4);
            for &p in row {
                out.extend_from_slice(&(p & 0x00ff_ffff).to_le_bytes());
            }
        } else {
            for &p in row {
                self.put(out, p);
            }
        }
    }

    /// ZRLE's CPIXEL: 3 bytes when a 32 bpp true-colour pixel of depth <= 24
    /// keeps all its colour bits in its low (or high) 3 bytes, else a PIXEL.
    pub fn cpixel(&self) -> CPixel {
        if self.bits_per_pixel != 32 || self.depth > 24 {
            return CPixel::Full;
        }
        let mask = self.pixel_value(0x00ff_ffff);
        if mask & 0xff00_0000 == 0 {
            CPixel::Low3
        } else if mask & 0x0000_00ff == 0 {
            CPixel::High3
        } else {
            CPixel::Full
        }
    }
}

/// `x / 255` rounded to nearest, for `x <= 255 * 255`, without a division.
#[inline]
fn div255(x: u32) -> u32 {
    let v = x + 128;
    (v + (v >> 8)) >> 8
}

/// How ZRLE writes one pixel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CPixel {
    /// The whole pixel.
    Full,
    /// The three least significant bytes, in the pixel's byte order.
    Low3,
    /// The three most significant bytes, in the pixel's byte order.
    High3,
}

impl CPixel {
    /// The size of one CPIXEL for `pf`.
    pub fn len(self, pf: &PixelFormat) -> usize {
        match self {
            CPixel::Full => pf.bytes_per_pixel(),
            _ => 3,
        }
    }

    /// Appends the CPIXEL for `rgb`.
    #[inline]
    pub fn put(self, pf: &PixelFormat, out: &mut Vec<u8>, rgb: u32) {
        let v = pf.pixel_value(rgb);
        match self {
            CPixel::Full => pf.put(out, rgb),
            CPixel::Low3 if pf.big_endian => out.extend_from_slice(&v.to_be_bytes()[1..]),
            CPixel::Low3 => out.extend_from_slice(&v.to_le_bytes()[..3]),
            CPixel::High3 if pf.big_endian => out.extend_from_slice(&v.to_be_bytes()[..3]),
            CPixel::High3 => out.extend_from_slice(&v.to_le_bytes()[1..]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rgb565_be() -> [u8; 16] {
        [16, 16, 1, 1, 0, 31, 0, 63, 0, 31, 11, 5, 0, 0, 0, 0]
    }

    #[test]
    fn converts_to_16bpp_big_endian() {
        let pf = PixelFormat::from_bytes(&rgb565_be()).unwrap();
        let mut out = Vec::new();
        pf.put(&mut out, 0xff0000);
        pf.put(&mut out, 0x00ff00);
        pf.put(&mut out, 0x0000ff);
        assert_eq!(out, vec![0xf8, 0x00, 0x07, 0xe0, 0x00, 0x1f]);
    }

    #[test]
    fn fast_division_by_255_is_exact() {
        for c in 0..=255u32 {
            for max in 0..=255u32 {
                assert_eq!(div255(c * max), (c * max + 127) / 255, "{c} * {max}");
            }
        }
    }

    #[test]
    fn converts_to_8bpp_bgr233() {
        // red 3 bits at 0, green 3 bits at 3, blue 2 bits at 6.
        let pf =
            PixelFormat::from_bytes(&[8, 8, 0, 1, 0, 7, 0, 7, 0, 3, 0, 3, 6, 0, 0, 0]).unwrap();
        let mut out = Vec::new();
        pf.put(&mut out, 0xffffff);
        pf.put(&mut out, 0x0000ff);
        assert_eq!(out, vec![0xff, 0xc0]);
    }

    #[test]
    fn default_round_trips_and_is_fast_pathed() {
        let pf = PixelFormat::default_rgb888();
        assert_eq!(PixelFormat::from_bytes(&pf.to_bytes()).unwrap(), pf);
        let mut a = Vec::new();
        let mut b = Vec::new();
        pf.put_row(&mut a, &[0x123456, 0xff00ff00]);
        for p in [0x123456, 0xff00ff00] {
            pf.put(&mut b, p);
        }
        assert_eq!(a, b);
        assert_eq!(&a[..4], &[0x56, 0x34, 0x12, 0]);
    }

    #[test]
    fn rejects_what_cannot_be_drawn() {
        let mut b = rgb565_be();
        b[3] = 0;
        assert!(PixelFormat::from_bytes(&b).is_err(), "colour map");
        let mut b = rgb565_be();
        b[0] = 24;
        assert!(PixelFormat::from_bytes(&b).is_err(), "24 bpp");
        let mut b = rgb565_be();
        b[10] = 12; // red would need bits 12..17 of a 16-bit pixel
        assert!(PixelFormat::from_bytes(&b).is_err(), "overflowing shift");
        let mut b = rgb565_be();
        b[10] = 255;
        assert!(PixelFormat::from_bytes(&b).is_err(), "huge shift");
        let mut b = rgb565_be();
        b[5] = 0;
        assert!(PixelFormat::from_bytes(&b).is_err(), "zero max");
    }

    #[test]
    fn cpixel_is_three_bytes_when_colour_fits() {
        let pf = PixelFormat::default_rgb888();
        assert_eq!(pf.cpixel(), CPixel::Low3);
        let mut out = Vec::new();
        pf.cpixel().put(&pf, &mut out, 0x123456);
        assert_eq!(out, vec![0x56, 0x34, 0x12]);
        let be_high = PixelFormat {
            big_endian: true,
            red_shift: 24,
            green_shift: 16,
            blue_shift: 8,
            ..pf
        };
        assert_eq!(be_high.cpixel(), CPixel::High3);
        let mut out = Vec::new();
        be_high.cpixel().put(&be_high, &mut out, 0x123456);
        assert_eq!(out, vec![0x12, 0x34, 0x56]);
        let pf16 = PixelFormat::from_bytes(&rgb565_be()).unwrap();
        assert_eq!(pf16.cpixel(), CPixel::Full);
    }
}
