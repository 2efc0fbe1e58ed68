//! Raw encoding: every pixel of the rectangle, row by row.

use kite_display::{Rect, Surface};

use crate::rfb::pixel_format::PixelFormat;

/// Appends the Raw data of `rect` (inside `surface`) to `out`.
pub fn encode(surface: &Surface, rect: Rect, pf: &PixelFormat, out: &mut Vec<u8>) {
    let r = rect.clip(surface.width(), surface.height());
    out.reserve(r.area() as usize * pf.bytes_per_pixel());
    for y in r.y..r.y + r.h {
        let row = surface.row(y);
        pf.put_row(out, &row[r.x as usize..(r.x + r.w) as usize]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_is_the_rectangle_in_client_format() {
        let mut s = Surface::new(4, 3);
        s.fill(Rect::new(1, 1, 2, 1), 0x0000ff);
        let mut out = Vec::new();
        encode(
            &s,
            Rect::new(1, 1, 2, 2),
            &PixelFormat::default_rgb888(),
            &mut out,
        );
        assert_eq!(
            out,
            vec![0xff, 0, 0, 0, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
        );
    }
}
