//! Screenshots of a surface as PNG or binary PPM (`--screenshot-on-exit`,
//! QMP's screendump, whose default format is PPM).

use std::io::Write;

use crate::surface::Surface;

#[derive(Debug, thiserror::Error)]
pub enum ScreenshotError {
    /// The screen has no picture yet (the guest has not set a mode).
    #[error("the screen is empty (no video mode set)")]
    Empty,
    /// The PNG encoder failed (usually: writing the file).
    #[error("encoding the PNG failed: {0}")]
    Encode(#[from] png::EncodingError),
    /// Writing the PPM failed.
    #[error("writing the PPM failed: {0}")]
    Io(#[from] std::io::Error),
}

/// The pixels as 8-bit RGB triples.
fn rgb(surface: &Surface) -> Vec<u8> {
    let mut rgb = Vec::with_capacity(surface.pixels().len() * 3);
    for &p in surface.pixels() {
        rgb.extend_from_slice(&[(p >> 16) as u8, (p >> 8) as u8, p as u8]);
    }
    rgb
}

/// Writes `surface` as a binary PPM (P6, maxval 255) to `out`.
pub fn encode_ppm(surface: &Surface, mut out: impl Write) -> Result<(), ScreenshotError> {
    if surface.width() == 0 || surface.height() == 0 {
        return Err(ScreenshotError::Empty);
    }
    write!(out, "P6\n{} {}\n255\n", surface.width(), surface.height())?;
    out.write_all(&rgb(surface))?;
    out.flush()?;
    Ok(())
}

/// Writes `surface` as an 8-bit RGB PNG to `out`.
pub fn encode_png(surface: &Surface, out: impl Write) -> Result<(), ScreenshotError> {
    if surface.width() == 0 || surface.height() == 0 {
        return Err(ScreenshotError::Empty);
    }
    let mut enc = png::Encoder::new(out, surface.width(), surface.height());
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    let mut writer = enc.write_header()?;
    writer.write_image_data(&rgb(surface))?;
    writer.finish()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::surface::Rect;

    #[test]
    fn ppm_has_header_and_pixels() {
        let mut s = Surface::new(2, 1);
        s.fill(Rect::new(1, 0, 1, 1), 0x123456);
        let mut bytes = Vec::new();
        encode_ppm(&s, &mut bytes).unwrap();
        assert_eq!(&bytes[..11], b"P6\n2 1\n255\n");
        assert_eq!(&bytes[11..], &[0, 0, 0, 0x12, 0x34, 0x56]);
        assert!(matches!(
            encode_ppm(&Surface::new(0, 0), Vec::new()),
            Err(ScreenshotError::Empty)
        ));
    }

    #[test]
    fn png_round_trips_pixels() {
        let mut s = Surface::new(3, 2);
        s.fill(Rect::new(1, 0, 1, 1), 0x123456);
        let mut bytes = Vec::new();
        encode_png(&s, &mut bytes).unwrap();
        let dec = png::Decoder::new(std::io::Cursor::new(bytes));
        let mut reader = dec.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size()];
        let info = reader.next_frame(&mut buf).unwrap();
        assert_eq!((info.width, info.height), (3, 2));
        assert_eq!(&buf[3..6], &[0x12, 0x34, 0x56]);
        assert_eq!(&buf[0..3], &[0, 0, 0]);
    }

    #[test]
    fn empty_screen_is_an_error() {
        assert!(matches!(
            encode_png(&Surface::new(0, 0), Vec::new()),
            Err(ScreenshotError::Empty)
        ));
    }
}
