//! The VGA register file behind ports 0x3B0-0x3DF: miscellaneous output,
//! sequencer, CRT controller (at 0x3B4/0x3D4 as misc bit 0 says), graphics
//! controller, attribute controller (index/data flip-flop, reset by reading
//! input status 1) and the DAC (6-bit palette, read and write indices).
//!
//! It holds register values only: it must not know about video memory or
//! how a picture is drawn from them.

/// Sequencer registers (index 0-4 are defined; 5-7 read back what was written).
pub const SEQ_COUNT: usize = 8;
/// CRT controller registers 0x00-0x18.
pub const CRTC_COUNT: usize = 0x19;
/// Graphics controller registers 0-8.
pub const GC_COUNT: usize = 9;
/// Attribute controller registers 0x00-0x14.
pub const AR_COUNT: usize = 0x15;

/// Attribute index bit 5: the palette address source; clear while the CPU
/// loads the palette, and the screen shows the overscan colour (black).
pub const AR_INDEX_PAS: u8 = 0x20;

/// The standard BIOS register values of mode 3 (80x25 colour text); the
/// device starts in them so a screen shows text before any BIOS runs.
const MODE3_SEQ: [u8; 5] = [0x03, 0x00, 0x03, 0x00, 0x02];
const MODE3_CRTC: [u8; CRTC_COUNT] = [
    0x5f, 0x4f, 0x50, 0x82, 0x55, 0x81, 0xbf, 0x1f, 0x00, 0x4f, 0x0d, 0x0e, 0x00, 0x00, 0x00, 0x00,
    0x9c, 0x8e, 0x8f, 0x28, 0x1f, 0x96, 0xb9, 0xa3, 0xff,
];
const MODE3_GC: [u8; GC_COUNT] = [0x00, 0x00, 0x00, 0x00, 0x00, 0x10, 0x0e, 0x00, 0xff];
const MODE3_AR: [u8; AR_COUNT] = [
    0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x14, 0x07, 0x38, 0x39, 0x3a, 0x3b, 0x3c, 0x3d, 0x3e, 0x3f,
    0x0c, 0x00, 0x0f, 0x08, 0x00,
];

/// The VGA registers (not VBE).
#[derive(Debug, Clone)]
pub struct Registers {
    pub misc: u8,
    pub feature: u8,
    pub seq_index: u8,
    pub seq: [u8; SEQ_COUNT],
    pub crtc_index: u8,
    pub crtc: [u8; CRTC_COUNT],
    pub gc_index: u8,
    pub gc: [u8; GC_COUNT],
    pub ar_index: u8,
    pub ar: [u8; AR_COUNT],
    /// false: the next 0x3C0 write is an index; true: it is data.
    pub ar_flip_flop: bool,
    pub pel_mask: u8,
    pub dac_read_index: u8,
    pub dac_write_index: u8,
    /// Which of red, green, blue the next 0x3C9 access is.
    pub dac_sub: u8,
    /// 0x3C7 reads 0 after a write-index set, 3 after a read-index set.
    pub dac_state: u8,
    pub dac_cache: [u8; 3],
    /// 256 entries of red, green, blue (6 bits each in VGA modes).
    pub palette: [u8; 768],
    /// Input status 1, whose retrace bits toggle on each read.
    pub st01: u8,
    /// Something that changes every pixel's colour changed (DAC, attribute
    /// palette, clocking): the renderer redraws everything.
    pub colours_changed: bool,
}

impl Default for Registers {
    fn default() -> Self {
        Self::new()
    }
}

impl Registers {
    /// Mode 3, with the EGA-compatible 64-colour DAC palette a BIOS loads.
    pub fn new() -> Registers {
        let mut seq = [0; SEQ_COUNT];
        seq[..5].copy_from_slice(&MODE3_SEQ);
        let mut palette = [0u8; 768];
        for i in 0..64usize {
            // EGA colour bits: b g r (2/3 intensity) then B G R (1/3).
            let c =
                |lo: usize, hi: usize| ((i >> lo) & 1) as u8 * 0x2a + ((i >> hi) & 1) as u8 * 0x15;
            palette[i * 3] = c(2, 5);
            palette[i * 3 + 1] = c(1, 4);
            palette[i * 3 + 2] = c(0, 3);
        }
        Registers {
            misc: 0x67,
            feature: 0,
            seq_index: 0,
            seq,
            crtc_index: 0,
            crtc: MODE3_CRTC,
            gc_index: 0,
            gc: MODE3_GC,
            ar_index: AR_INDEX_PAS,
            ar: MODE3_AR,
            ar_flip_flop: false,
            pel_mask: 0xff,
            dac_read_index: 0,
            dac_write_index: 0,
            dac_sub: 0,
            dac_state: 0,
            dac_cache: [0; 3],
            palette,
            st01: 0,
            colours_changed: true,
        }
    }

    /// Whether the CRTC answers at 0x3D4 (colour) rather than 0x3B4.
    fn colour(&self) -> bool {
        self.misc & 1 != 0
    }

    /// Whether `port` (0x3B0-0x3DF) belongs to the emulation misc bit 0 does
    /// not select (a mono port in colour mode or the reverse).
    fn wrong_emulation(&self, port: u16) -> bool {
        match port {
            0x3b0..=0x3bf => self.colour(),
            0x3d0..=0x3df => !self.colour(),
            _ => false,
        }
    }

    /// A read of one VGA port; absent registers read as all ones.
    pub fn read_port(&mut self, port: u16) -> u8 {
        if self.wrong_emulation(port) {
            return 0xff;
        }
        match port {
            0x3c0 => self.ar_index,
            0x3c1 => self
                .ar
                .get(usize::from(self.ar_index & 0x1f))
                .copied()
                .unwrap_or(0),
            0x3c2 => 0, // input status 0: no switch sense, no interrupt
            0x3c4 => self.seq_index,
            0x3c5 => self.seq[usize::from(self.seq_index) % SEQ_COUNT],
            0x3c6 => self.pel_mask,
            0x3c7 => self.dac_state,
            0x3c8 => self.dac_write_index,
            0x3c9 => {
                let at = usize::from(self.dac_read_index) * 3 + usize::from(self.dac_sub);
                let v = self.palette[at];
                self.dac_sub += 1;
                if self.dac_sub == 3 {
                    self.dac_sub = 0;
                    self.dac_read_index = self.dac_read_index.wrapping_add(1);
                }
                v
            }
            0x3ca => self.feature,
            0x3cc => self.misc,
            0x3ce => self.gc_index,
            0x3cf => self
                .gc
                .get(usize::from(self.gc_index))
                .copied()
                .unwrap_or(0xff),
            0x3b4 | 0x3d4 => self.crtc_index,
            0x3b5 | 0x3d5 => self
                .crtc
                .get(usize::from(self.crtc_index))
                .copied()
                .unwrap_or(0xff),
            0x3ba | 0x3da => {
                // Toggle display-enable and vertical retrace so a guest
                // waiting for either (or for the end of either) sees it.
                self.st01 ^= 0x09;
                self.ar_flip_flop = false;
                self.st01
            }
            _ => 0xff,
        }
    }

    /// A write of one VGA port; read-only and absent registers ignore it.
    pub fn write_port(&mut self, port: u16, v: u8) {
        if self.wrong_emulation(port) {
            return;
        }
        match port {
            0x3c0 => {
                if self.ar_flip_flop {
                    let i = usize::from(self.ar_index & 0x1f);
                    if i < AR_COUNT {
                        let v = match i {
                            0x00..=0x0f => v & 0x3f,
                            0x11 => v,
                            0x12 => v & 0x3f,
                            0x13 => v & 0x0f,
                            0x14 => v & 0x0f,
                            _ => v & 0xef,
                        };
                        self.set_colour_reg(|r| &mut r.ar[i], v);
                    }
                } else {
                    let old = self.ar_index & AR_INDEX_PAS;
                    self.ar_index = v & 0x3f;
                    if old != self.ar_index & AR_INDEX_PAS {
                        self.colours_changed = true;
                    }
                }
                self.ar_flip_flop = !self.ar_flip_flop;
            }
            0x3c2 => self.misc = v,
            0x3c4 => self.seq_index = v & 7,
            0x3c5 => {
                let i = usize::from(self.seq_index) % SEQ_COUNT;
                if i == 1 || i == 3 {
                    self.set_colour_reg(|r| &mut r.seq[i], v);
                } else {
                    self.seq[i] = v;
                }
            }
            0x3c6 => self.set_colour_reg(|r| &mut r.pel_mask, v),
            0x3c7 => {
                self.dac_read_index = v;
                self.dac_sub = 0;
                self.dac_state = 3;
            }
            0x3c8 => {
                self.dac_write_index = v;
                self.dac_sub = 0;
                self.dac_state = 0;
            }
            0x3c9 => {
                self.dac_cache[usize::from(self.dac_sub)] = v;
                self.dac_sub += 1;
                if self.dac_sub == 3 {
                    let at = usize::from(self.dac_write_index) * 3;
                    if self.palette[at..at + 3] != self.dac_cache {
                        self.palette[at..at + 3].copy_from_slice(&self.dac_cache);
                        self.colours_changed = true;
                    }
                    self.dac_sub = 0;
                    self.dac_write_index = self.dac_write_index.wrapping_add(1);
                }
            }
            0x3ce => self.gc_index = v & 0x0f,
            0x3cf => {
                if let Some(r) = self.gc.get_mut(usize::from(self.gc_index)) {
                    *r = v;
                }
            }
            0x3b4 | 0x3d4 => self.crtc_index = v & 0x3f,
            0x3b5 | 0x3d5 => {
                let i = usize::from(self.crtc_index);
                // CRTC 0x11 bit 7 write-protects 0-7, except 7's line compare bit.
                let protect = self.crtc[0x11] & 0x80 != 0;
                match i {
                    0..=6 if protect => {}
                    7 if protect => self.crtc[7] = (self.crtc[7] & !0x10) | (v & 0x10),
                    _ if i < CRTC_COUNT => self.crtc[i] = v,
                    _ => {}
                }
            }
            0x3ba | 0x3da => self.feature = v & 0x03,
            _ => {}
        }
    }

    /// Set a register that changes colours, noting when it really changed.
    fn set_colour_reg(&mut self, reg: impl Fn(&mut Registers) -> &mut u8, v: u8) {
        let r = reg(self);
        if *r != v {
            *r = v;
            self.colours_changed = true;
        }
    }

    /// CRTC start address (in memory offsets).
    pub fn start_address(&self) -> u32 {
        (u32::from(self.crtc[0x0c]) << 8) | u32::from(self.crtc[0x0d])
    }

    /// Scanlines displayed (vertical display end + 1, with overflow bits).
    pub fn vertical_display_lines(&self) -> u32 {
        let ov = self.crtc[7];
        let vde =
            u32::from(self.crtc[0x12]) | (u32::from(ov & 0x02) << 7) | (u32::from(ov & 0x40) << 3);
        vde + 1
    }

    /// Character clocks displayed per line.
    pub fn horizontal_chars(&self) -> u32 {
        u32::from(self.crtc[1]) + 1
    }

    /// Memory offsets from one character row (or scanline) to the next.
    pub fn line_stride(&self) -> u32 {
        u32::from(self.crtc[0x13]) * 2
    }

    /// Colour index (0-15) through the attribute palette to a DAC index.
    pub fn attribute_to_dac(&self, c: u8) -> u8 {
        let mut v = self.ar[usize::from(c & 0x0f)];
        if self.ar[0x10] & 0x80 != 0 {
            v = (v & 0x0f) | ((self.ar[0x14] & 0x03) << 4);
        } else {
            v &= 0x3f;
        }
        v | ((self.ar[0x14] & 0x0c) << 4)
    }
}
