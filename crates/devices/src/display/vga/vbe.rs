//! The Bochs VBE "dispi" interface: 16-bit registers behind an index (port
//! 0x1CE, data 0x1CF, or BAR 2 at 0x500 + index * 2) that set a linear
//! framebuffer mode: resolution, depth, virtual width and panning offsets,
//! and a 64 KiB bank for the legacy window.
//!
//! A mode that does not fit is refused when it is enabled (the enable does
//! nothing), so whatever renders a mode this module reports stays inside
//! video memory. It must not know about pixels or the VGA registers.

pub const INDEX_ID: u16 = 0;
pub const INDEX_XRES: u16 = 1;
pub const INDEX_YRES: u16 = 2;
pub const INDEX_BPP: u16 = 3;
pub const INDEX_ENABLE: u16 = 4;
pub const INDEX_BANK: u16 = 5;
pub const INDEX_VIRT_WIDTH: u16 = 6;
pub const INDEX_VIRT_HEIGHT: u16 = 7;
pub const INDEX_X_OFFSET: u16 = 8;
pub const INDEX_Y_OFFSET: u16 = 9;
pub const INDEX_VIDEO_MEMORY_64K: u16 = 10;
/// Registers 0..REG_COUNT exist; others read as 0 and ignore writes.
pub const REG_COUNT: u16 = 11;

pub const ID0: u16 = 0xb0c0;
pub const ID5: u16 = 0xb0c5;

pub const ENABLED: u16 = 0x01;
pub const GETCAPS: u16 = 0x02;
pub const DAC_8BIT: u16 = 0x20;
pub const LFB_ENABLED: u16 = 0x40;
pub const NOCLEARMEM: u16 = 0x80;

/// The largest mode offered (GETCAPS reports these), as QEMU's.
pub const MAX_XRES: u16 = 16000;
pub const MAX_YRES: u16 = 12000;
pub const MAX_BPP: u16 = 32;

/// A mode being shown: every byte of `start .. start + (yres - 1) * line +
/// xres * bytes_per_pixel` lies inside video memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VbeMode {
    pub xres: u32,
    pub yres: u32,
    /// 8, 15, 16, 24 or 32.
    pub bpp: u32,
    /// Bytes from one line to the next (virtual width * bytes per pixel).
    pub line: usize,
    /// Byte offset of the top-left visible pixel.
    pub start: usize,
    /// Palette entries are 8 bits, not 6.
    pub dac_8bit: bool,
}

pub fn bytes_per_pixel(bpp: u32) -> usize {
    (bpp as usize).div_ceil(8)
}

/// What a register write did that the rest of the device must follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DispiEffect {
    None,
    /// A mode was enabled; clear `clear` bytes of video memory first (0
    /// with NOCLEARMEM).
    Enabled {
        clear: usize,
    },
    Disabled,
}

/// The dispi register file.
#[derive(Debug, Clone)]
pub struct Dispi {
    pub index: u16,
    regs: [u16; REG_COUNT as usize],
    vram_len: usize,
    refused: super::LogLimit,
}

impl Dispi {
    pub fn new(vram_len: usize) -> Dispi {
        let mut regs = [0u16; REG_COUNT as usize];
        regs[usize::from(INDEX_ID)] = ID5;
        regs[usize::from(INDEX_BPP)] = 8;
        Dispi {
            index: 0,
            regs,
            vram_len,
            refused: super::LogLimit::default(),
        }
    }

    fn reg(&self, i: u16) -> u16 {
        self.regs[usize::from(i)]
    }

    fn set(&mut self, i: u16, v: u16) {
        self.regs[usize::from(i)] = v;
    }

    /// The register file, for a snapshot.
    pub fn registers(&self) -> [u16; REG_COUNT as usize] {
        self.regs
    }

    /// Restore `registers`, refusing a set the device could not have
    /// reached (an unknown id, a bank past video memory, or an enabled mode
    /// that does not fit it).
    pub fn restore(&mut self, index: u16, regs: [u16; REG_COUNT as usize]) -> Result<(), String> {
        let old = self.regs;
        self.regs = regs;
        self.index = index;
        // The memory size is not a register anyone writes.
        self.regs[usize::from(INDEX_VIDEO_MEMORY_64K)] = old[usize::from(INDEX_VIDEO_MEMORY_64K)];
        let banks = (self.vram_len >> 16).max(1);
        let bad = if !(ID0..=ID5).contains(&self.reg(INDEX_ID)) {
            Some(format!("VBE id {:#x}", self.reg(INDEX_ID)))
        } else if usize::from(self.reg(INDEX_BANK)) >= banks {
            Some(format!("VBE bank {}", self.reg(INDEX_BANK)))
        } else if self.enabled() && self.mode().is_none() {
            Some("a VBE mode that does not fit video memory".to_string())
        } else {
            None
        };
        if let Some(b) = bad {
            self.regs = old;
            return Err(b);
        }
        Ok(())
    }

    pub fn enabled(&self) -> bool {
        self.reg(INDEX_ENABLE) & ENABLED != 0
    }

    /// The byte offset the legacy window's 64 KiB bank starts at.
    pub fn bank_offset(&self) -> u32 {
        u32::from(self.reg(INDEX_BANK)) << 16
    }

    /// Read register `index` (0 for ones that do not exist).
    pub fn read(&self, index: u16) -> u16 {
        if index >= REG_COUNT {
            return 0;
        }
        let caps = self.reg(INDEX_ENABLE) & GETCAPS != 0;
        match index {
            INDEX_XRES if caps => MAX_XRES,
            INDEX_YRES if caps => MAX_YRES,
            INDEX_BPP if caps => MAX_BPP,
            INDEX_VIDEO_MEMORY_64K => (self.vram_len >> 16).min(0xffff) as u16,
            _ => self.reg(index),
        }
    }

    /// Write register `index`; values that cannot work are refused.
    pub fn write(&mut self, index: u16, v: u16) -> DispiEffect {
        match index {
            INDEX_ID if (ID0..=ID5).contains(&v) => self.set(INDEX_ID, v),
            // Geometry changes only while disabled (as Bochs).
            INDEX_XRES | INDEX_YRES | INDEX_BPP if !self.enabled() => self.set(index, v),
            INDEX_ENABLE => return self.write_enable(v),
            INDEX_BANK => {
                let banks = (self.vram_len >> 16).max(1);
                self.set(INDEX_BANK, (usize::from(v) % banks) as u16);
            }
            INDEX_VIRT_WIDTH => {
                if !self.enabled() {
                    self.set(INDEX_VIRT_WIDTH, v);
                } else if let Some(m) = self.mode() {
                    let line = usize::from(v) * bytes_per_pixel(m.bpp);
                    if u32::from(v) >= m.xres && line * m.yres as usize <= self.vram_len {
                        self.set(INDEX_VIRT_WIDTH, v);
                        self.set(INDEX_VIRT_HEIGHT, self.max_virt_height(line));
                        self.set(INDEX_X_OFFSET, 0);
                        self.set(INDEX_Y_OFFSET, 0);
                    }
                }
            }
            INDEX_X_OFFSET | INDEX_Y_OFFSET => {
                if !self.enabled() {
                    self.set(index, v);
                } else {
                    let old = self.reg(index);
                    self.set(index, v);
                    if self.mode().is_none() {
                        self.set(index, old);
                    }
                }
            }
            // VIRT_HEIGHT follows VIRT_WIDTH; the memory size is read-only.
            _ => {}
        }
        DispiEffect::None
    }

    /// The most lines of `line` bytes that fit in video memory.
    fn max_virt_height(&self, line: usize) -> u16 {
        (self.vram_len / line.max(1)).min(0xffff) as u16
    }

    fn write_enable(&mut self, v: u16) -> DispiEffect {
        let v = v & (ENABLED | GETCAPS | DAC_8BIT | LFB_ENABLED | NOCLEARMEM);
        let was = self.enabled();
        if v & ENABLED == 0 {
            self.set(INDEX_ENABLE, v);
            return if was {
                DispiEffect::Disabled
            } else {
                DispiEffect::None
            };
        }
        if was {
            // Already on: only the flag bits change.
            self.set(INDEX_ENABLE, v);
            return DispiEffect::None;
        }
        let (x, y, bpp) = (
            self.reg(INDEX_XRES),
            self.reg(INDEX_YRES),
            self.reg(INDEX_BPP),
        );
        let line = usize::from(x) * bytes_per_pixel(u32::from(bpp));
        let fits = matches!(bpp, 8 | 15 | 16 | 24 | 32)
            && x != 0
            && y != 0
            && x <= MAX_XRES
            && y <= MAX_YRES
            && x % 8 == 0
            && line * usize::from(y) <= self.vram_len;
        if !fits {
            if let Some(n) = self.refused.allow() {
                log::warn!(
                    "vga: VBE mode {x}x{y}x{bpp} refused (video memory {} MiB; {n} refused so far)",
                    self.vram_len >> 20
                );
            }
            return DispiEffect::None;
        }
        self.set(INDEX_ENABLE, v);
        self.set(INDEX_VIRT_WIDTH, x);
        self.set(INDEX_VIRT_HEIGHT, self.max_virt_height(line));
        self.set(INDEX_X_OFFSET, 0);
        self.set(INDEX_Y_OFFSET, 0);
        self.set(INDEX_BANK, 0);
        let clear = if v & NOCLEARMEM != 0 {
            0
        } else {
            line * usize::from(y)
        };
        DispiEffect::Enabled { clear }
    }

    /// The mode shown now, if VBE is on and it fits.
    pub fn mode(&self) -> Option<VbeMode> {
        if !self.enabled() {
            return None;
        }
        let bpp = u32::from(self.reg(INDEX_BPP));
        let bypp = bytes_per_pixel(bpp);
        let (xres, yres) = (
            u32::from(self.reg(INDEX_XRES)),
            u32::from(self.reg(INDEX_YRES)),
        );
        let line = usize::from(self.reg(INDEX_VIRT_WIDTH)) * bypp;
        let start = usize::from(self.reg(INDEX_Y_OFFSET)) * line
            + usize::from(self.reg(INDEX_X_OFFSET)) * bypp;
        let end = start + (yres as usize).checked_sub(1)? * line + xres as usize * bypp;
        let x_end = u32::from(self.reg(INDEX_X_OFFSET)) + xres;
        if xres == 0 || end > self.vram_len || x_end > u32::from(self.reg(INDEX_VIRT_WIDTH)) {
            return None;
        }
        Some(VbeMode {
            xres,
            yres,
            bpp,
            line,
            start,
            dac_8bit: self.reg(INDEX_ENABLE) & DAC_8BIT != 0,
        })
    }
}
