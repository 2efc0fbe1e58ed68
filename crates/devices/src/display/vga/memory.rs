//! The legacy memory window (0xA0000-0xBFFFF) onto video memory: the
//! graphics controller's memory map select, chain-4, odd/even and planar
//! addressing, read modes 0/1, write modes 0-3 with set/reset, rotate,
//! logical operation, bit mask and the latches.
//!
//! Layout of video memory (shared with the linear framebuffer): plane `p` of
//! memory offset `o` is byte `o * 4 + p`. So chain-4 address `a` is byte `a`
//! (offset `a >> 2`, plane `a & 3`), and in odd/even mode address `a` is
//! offset `a >> 1` of plane `a & 1` (the CRTC then counts in characters).
//!
//! This file must not know how the picture is drawn; it only marks which
//! pages it wrote.

use super::VgaState;

/// The window's length from 0xA0000.
pub const WINDOW_LEN: u64 = 0x20000;

/// Each bit of the low nibble of `n` spread to a whole byte (bit p -> byte p).
fn expand_planes(n: u8) -> u32 {
    (0..4).fold(0, |acc, p| {
        if n & (1 << p) != 0 {
            acc | (0xff << (8 * p))
        } else {
            acc
        }
    })
}

impl VgaState {
    /// The video memory address a window address reaches, if the memory map
    /// select decodes it.
    fn window_address(&self, addr: u32) -> Option<u32> {
        match (self.regs.gc[6] >> 2) & 3 {
            0 => Some(addr),
            1 => (addr < 0x10000).then(|| addr + self.vbe.bank_offset()),
            2 => (0x10000..0x18000).contains(&addr).then(|| addr - 0x10000),
            _ => (addr >= 0x18000).then(|| addr - 0x18000),
        }
    }

    fn vram_byte(&self, at: usize) -> Option<u8> {
        let mut b = [0u8; 1];
        self.vram.read(at, &mut b).then_some(b[0])
    }

    fn put_vram_byte(&mut self, at: usize, v: u8) {
        if self.vram.write(at, &[v]) {
            self.dirty.mark(at);
            if at % 4 == 2 {
                self.font_written = true;
            }
        }
    }

    /// A read of one byte at `addr` (0..WINDOW_LEN) of the window.
    pub fn window_read(&mut self, addr: u32) -> u8 {
        let Some(a) = self.window_address(addr) else {
            return 0xff;
        };
        let gc = self.regs.gc;
        if self.regs.seq[4] & 0x08 != 0 || self.vbe.enabled() {
            return self.vram_byte(a as usize).unwrap_or(0xff);
        }
        let odd_even = gc[5] & 0x10 != 0;
        let offset = if odd_even { a >> 1 } else { a } as usize;
        let mut w = [0u8; 4];
        if !self.vram.read(offset * 4, &mut w) {
            return 0xff;
        }
        self.latch = u32::from_le_bytes(w);
        if odd_even {
            let plane = (gc[4] & 2) | (a as u8 & 1);
            return w[usize::from(plane)];
        }
        if gc[5] & 0x08 == 0 {
            w[usize::from(gc[4] & 3)]
        } else {
            // Read mode 1: a bit is set where every plane that "cares"
            // matches the colour compare value.
            let diff = (self.latch ^ expand_planes(gc[2])) & expand_planes(gc[7]);
            !(diff.to_le_bytes().iter().fold(0, |a, b| a | b))
        }
    }

    /// A write of one byte at `addr` (0..WINDOW_LEN) of the window.
    pub fn window_write(&mut self, addr: u32, v: u8) {
        let Some(a) = self.window_address(addr) else {
            return;
        };
        let gc = self.regs.gc;
        let map_mask = self.regs.seq[2] & 0x0f;
        if self.vbe.enabled() {
            // VBE banked access: the bank is plain bytes of the framebuffer.
            self.put_vram_byte(a as usize, v);
            return;
        }
        if self.regs.seq[4] & 0x08 != 0 {
            if map_mask & (1 << (a & 3)) != 0 {
                self.put_vram_byte(a as usize, v);
            }
            return;
        }
        if self.regs.seq[4] & 0x04 == 0 {
            // Odd/even: even addresses reach planes 0 and 2, odd ones 1 and 3.
            let planes = map_mask & if a & 1 == 0 { 0b0101 } else { 0b1010 };
            let base = (a >> 1) as usize * 4;
            for p in 0..4 {
                if planes & (1 << p) != 0 {
                    self.put_vram_byte(base + p, v);
                }
            }
            return;
        }
        let rotate = gc[3] & 7;
        let mut bit_mask = gc[8];
        let data = match gc[5] & 3 {
            0 => {
                let r = u32::from(v.rotate_right(u32::from(rotate))) * 0x0101_0101;
                let sr = expand_planes(gc[1]);
                (r & !sr) | (expand_planes(gc[0]) & sr)
            }
            1 => {
                // Write mode 1: the latches as they are.
                self.store_planes(a as usize, self.latch, map_mask);
                return;
            }
            2 => expand_planes(v),
            _ => {
                bit_mask &= v.rotate_right(u32::from(rotate));
                expand_planes(gc[0])
            }
        };
        let data = match (gc[3] >> 3) & 3 {
            0 => data,
            1 => data & self.latch,
            2 => data | self.latch,
            _ => data ^ self.latch,
        };
        let bm = u32::from(bit_mask) * 0x0101_0101;
        let data = (data & bm) | (self.latch & !bm);
        self.store_planes(a as usize, data, map_mask);
    }

    /// Write the planes `mask` selects of memory offset `offset`.
    fn store_planes(&mut self, offset: usize, data: u32, mask: u8) {
        let bytes = data.to_le_bytes();
        let Some(base) = offset.checked_mul(4) else {
            return;
        };
        for (p, b) in bytes.iter().enumerate() {
            if mask & (1 << p) != 0 {
                self.put_vram_byte(base + p, *b);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::expand_planes;

    #[test]
    fn plane_bits_spread_to_bytes() {
        assert_eq!(expand_planes(0b0101), 0x00ff_00ff);
        assert_eq!(expand_planes(0xff), 0xffff_ffff);
    }
}
