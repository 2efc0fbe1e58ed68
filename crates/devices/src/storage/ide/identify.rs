//! The 512-byte IDENTIFY DEVICE (ATA disk) and IDENTIFY PACKET DEVICE
//! (ATAPI CD-ROM) pages: model, serial, firmware, capacity, geometry and
//! transfer modes, in the words Linux's libata and SeaBIOS read.
//!
//! It must not know about ports or how the page is transferred.

use super::drive::{Drive, MAX_MULTIPLE};

pub const MODEL_DISK: &str = "KITE HARDDISK";
pub const MODEL_CD: &str = "KITE DVD-ROM";
pub const FIRMWARE: &str = "1.0";

/// Put `s` in words `first..first + len/2`, space-padded, each word's two
/// characters swapped as ATA strings are.
fn put_string(words: &mut [u16; 256], first: usize, len: usize, s: &str) {
    let mut bytes = vec![b' '; len];
    for (b, c) in bytes.iter_mut().zip(s.bytes()) {
        *b = c;
    }
    for i in 0..len / 2 {
        words[first + i] = u16::from(bytes[2 * i]) << 8 | u16::from(bytes[2 * i + 1]);
    }
}

fn to_bytes(words: &[u16; 256]) -> [u8; 512] {
    let mut out = [0u8; 512];
    for (i, w) in words.iter().enumerate() {
        out[2 * i..2 * i + 2].copy_from_slice(&w.to_le_bytes());
    }
    out
}

/// Multiword DMA (word 63) and UDMA (word 88) words: modes supported in
/// the low byte, the selected one in the high byte.
fn dma_words(d: &Drive) -> (u16, u16) {
    let mut mw = 0x0007u16;
    let mut udma = 0x003fu16;
    match d.dma_mode {
        m @ 0x20..=0x22 => mw |= 1 << (8 + (m & 7)),
        m @ 0x40..=0x45 => udma |= 1 << (8 + (m & 7)),
        _ => {}
    }
    (mw, udma)
}

/// IDENTIFY DEVICE for an ATA disk.
pub fn ata_identify(d: &Drive) -> [u8; 512] {
    let mut w = [0u16; 256];
    let sectors = d.sectors();
    let g = d.geometry;
    let c = d.current;
    w[0] = 0x0040; // fixed device
    w[1] = g.cylinders;
    w[3] = u16::from(g.heads);
    w[6] = u16::from(g.sectors);
    put_string(&mut w, 10, 20, &d.serial);
    w[20] = 3;
    w[21] = 512;
    w[22] = 4;
    put_string(&mut w, 23, 8, FIRMWARE);
    put_string(&mut w, 27, 40, MODEL_DISK);
    w[47] = 0x8000 | u16::from(MAX_MULTIPLE);
    w[48] = 1; // dword I/O
    w[49] = (1 << 11) | (1 << 9) | (1 << 8); // IORDY, LBA, DMA
    w[50] = 0x4000;
    w[51] = 0x200;
    w[52] = 0x200;
    w[53] = 0x0007; // words 54-58, 64-70 and 88 are valid
    let chs_capacity =
        (u32::from(c.cylinders) * u32::from(c.heads) * u32::from(c.sectors)).min(sectors as u32);
    w[54] = c.cylinders;
    w[55] = u16::from(c.heads);
    w[56] = u16::from(c.sectors);
    w[57] = chs_capacity as u16;
    w[58] = (chs_capacity >> 16) as u16;
    if d.multiple != 0 {
        w[59] = 0x100 | u16::from(d.multiple);
    }
    let lba28 = sectors.min(0x0fff_ffff) as u32;
    w[60] = lba28 as u16;
    w[61] = (lba28 >> 16) as u16;
    let (mw, udma) = dma_words(d);
    w[62] = 0;
    w[63] = mw;
    w[64] = 0x0003; // PIO 3 and 4
    w[65] = 120;
    w[66] = 120;
    w[67] = 120;
    w[68] = 120;
    w[80] = 0x00f0; // ATA/ATAPI-4 to -7
    w[81] = 0x0016;
    // Supported: NOP-less set; write cache, power management; bit 14 set.
    w[82] = (1 << 14) | (1 << 5) | (1 << 3);
    // Must-be-one, FLUSH CACHE EXT, FLUSH CACHE, 48-bit addresses.
    w[83] = (1 << 14) | (1 << 13) | (1 << 12) | (1 << 10);
    w[84] = 1 << 14;
    w[85] = (1 << 14) | (u16::from(d.write_cache) << 5) | (1 << 3);
    w[86] = (1 << 13) | (1 << 12) | (1 << 10);
    w[87] = 1 << 14;
    w[88] = udma;
    w[93] = (1 << 14) | (1 << 13) | 1;
    w[100] = sectors as u16;
    w[101] = (sectors >> 16) as u16;
    w[102] = (sectors >> 32) as u16;
    w[103] = (sectors >> 48) as u16;
    to_bytes(&w)
}

/// IDENTIFY PACKET DEVICE for the CD-ROM.
pub fn atapi_identify(d: &Drive) -> [u8; 512] {
    let mut w = [0u16; 256];
    // ATAPI, CD-ROM device type, removable, DRQ within 50 us, 12-byte packets.
    w[0] = (2 << 14) | (5 << 8) | (1 << 7) | (2 << 5);
    put_string(&mut w, 10, 20, &d.serial);
    put_string(&mut w, 23, 8, FIRMWARE);
    put_string(&mut w, 27, 40, MODEL_CD);
    w[48] = 1;
    w[49] = (1 << 11) | (1 << 9) | (1 << 8); // IORDY, LBA, DMA
    w[53] = 0x0007;
    let (mw, udma) = dma_words(d);
    w[62] = 0;
    w[63] = mw;
    w[64] = 0x0003;
    w[65] = 0xb4;
    w[66] = 0xb4;
    w[67] = 0x12c;
    w[68] = 0xb4;
    w[71] = 30;
    w[72] = 30;
    w[80] = 0x001e; // ATA/ATAPI-1 to -4
    w[82] = 1 << 4; // PACKET feature set
    w[83] = 1 << 14;
    w[84] = 1 << 14;
    w[85] = 1 << 4;
    w[87] = 1 << 14;
    w[88] = udma;
    w[93] = (1 << 14) | (1 << 13) | 1;
    to_bytes(&w)
}
