//! SMBIOS (DMTF DSP0134, 2.8) structures describing the machine, handed to
//! firmware as fw_cfg files "etc/smbios/smbios-tables" and
//! "etc/smbios/smbios-anchor" (a 2.1 entry point whose table address the
//! firmware fills in when it places the tables). The BIOS information
//! (type 0) is the firmware's own to write.

use crate::memory::MemoryLayout;

pub const TABLES_FILE: &str = "etc/smbios/smbios-tables";
pub const ANCHOR_FILE: &str = "etc/smbios/smbios-anchor";

/// What the tables say.
pub struct SmbiosInfo<'a> {
    pub cpus: u32,
    pub layout: &'a MemoryLayout,
    pub uuid: [u8; 16],
}

/// One structure: formatted area then its strings.
struct Structure {
    bytes: Vec<u8>,
    strings: Vec<String>,
}

impl Structure {
    fn new(kind: u8, len: u8, handle: u16) -> Structure {
        let mut bytes = vec![0u8; usize::from(len)];
        bytes[0] = kind;
        bytes[1] = len;
        bytes[2..4].copy_from_slice(&handle.to_le_bytes());
        Structure {
            bytes,
            strings: Vec::new(),
        }
    }

    fn u8(&mut self, at: usize, v: u8) -> &mut Self {
        self.bytes[at] = v;
        self
    }

    fn u16(&mut self, at: usize, v: u16) -> &mut Self {
        self.bytes[at..at + 2].copy_from_slice(&v.to_le_bytes());
        self
    }

    fn u32(&mut self, at: usize, v: u32) -> &mut Self {
        self.bytes[at..at + 4].copy_from_slice(&v.to_le_bytes());
        self
    }

    fn u64(&mut self, at: usize, v: u64) -> &mut Self {
        self.bytes[at..at + 8].copy_from_slice(&v.to_le_bytes());
        self
    }

    /// Put string `s` in the table and its number at `at`.
    fn string(&mut self, at: usize, s: &str) -> &mut Self {
        self.strings.push(s.to_string());
        self.bytes[at] = self.strings.len() as u8;
        self
    }

    fn encode(&self, out: &mut Vec<u8>) -> usize {
        let start = out.len();
        out.extend_from_slice(&self.bytes);
        if self.strings.is_empty() {
            out.extend_from_slice(&[0, 0]);
        } else {
            for s in &self.strings {
                out.extend_from_slice(s.as_bytes());
                out.push(0);
            }
            out.push(0);
        }
        out.len() - start
    }
}

/// The tables and their 2.1 entry point.
pub fn smbios(info: &SmbiosInfo<'_>) -> (Vec<u8>, Vec<u8>) {
    let mut all = Vec::new();
    // Type 1: the system.
    let mut t = Structure::new(1, 0x1b, 0x100);
    t.string(4, "Kite")
        .string(5, "Kite PC (i440FX + PIIX3)")
        .string(6, env!("CARGO_PKG_VERSION"))
        .string(7, "0");
    t.bytes[8..24].copy_from_slice(&info.uuid);
    t.u8(0x18, 6).string(0x1a, "Kite");
    all.push(t);
    // Type 3: the chassis.
    let mut t = Structure::new(3, 0x15, 0x300);
    t.string(4, "Kite")
        .u8(5, 1)
        .u8(9, 3)
        .u8(0xa, 3)
        .u8(0xb, 3)
        .u8(0xc, 2);
    all.push(t);
    // Type 4: one per CPU.
    for cpu in 0..info.cpus {
        let mut t = Structure::new(4, 0x2a, 0x400 + cpu as u16);
        t.string(4, &format!("CPU {cpu}"))
            .u8(5, 3)
            .u8(6, 0xfe)
            .string(7, "Kite")
            .u32(8, 0x0003_06a9)
            .u32(0xc, 0x178b_fbff)
            .u16(0x14, 1000)
            .u16(0x16, 1000)
            .u8(0x18, 0x41)
            .u8(0x19, 1)
            .u16(0x1a, 0xffff)
            .u16(0x1c, 0xffff)
            .u16(0x1e, 0xffff)
            .u8(0x23, 1)
            .u8(0x24, 1)
            .u8(0x25, 1)
            .u16(0x26, 0x02)
            .u16(0x28, 0x01);
        all.push(t);
    }
    // Type 16: the memory array, type 17: one device holding all of RAM.
    let mut t = Structure::new(16, 0x17, 0x1000);
    t.u8(4, 1)
        .u8(5, 3)
        .u8(6, 3)
        .u32(7, 0x8000_0000)
        .u16(0xb, 0xfffe)
        .u16(0xd, 1)
        .u64(0xf, info.layout.size);
    all.push(t);
    let mib = info.layout.size >> 20;
    let mut t = Structure::new(17, 0x28, 0x1100);
    t.u16(4, 0x1000)
        .u16(6, 0xfffe)
        .u16(8, 0xffff)
        .u16(0xa, 0xffff)
        .u16(0xc, if mib < 0x7fff { mib as u16 } else { 0x7fff })
        .u8(0xe, 9)
        .string(0x10, "DIMM 0")
        .u8(0x12, 7)
        .u16(0x13, 2)
        .string(0x17, "Kite")
        .u32(0x1c, mib.min(u64::from(u32::MAX)) as u32);
    all.push(t);
    // Type 19: where RAM is mapped, one per range.
    for (i, (start, len)) in info.layout.ram_ranges().into_iter().enumerate() {
        let mut t = Structure::new(19, 0x1f, 0x1300 + i as u16);
        let end = start + len - 1;
        if end < 1 << 42 {
            t.u32(4, (start / 1024) as u32).u32(8, (end / 1024) as u32);
        } else {
            t.u32(4, u32::MAX)
                .u32(8, u32::MAX)
                .u64(0xf, start)
                .u64(0x17, end);
        }
        t.u16(0xc, 0x1000).u8(0xe, 1);
        all.push(t);
    }
    // Type 32: boot status, type 127: the end.
    all.push(Structure::new(32, 0x0b, 0x2000));
    all.push(Structure::new(127, 4, 0x7f00));

    let mut tables = Vec::new();
    let mut max = 0;
    for s in &all {
        max = max.max(s.encode(&mut tables));
    }
    let mut ep = vec![0u8; 0x1f];
    ep[0..4].copy_from_slice(b"_SM_");
    ep[5] = 0x1f;
    ep[6] = 2;
    ep[7] = 8;
    ep[8..10].copy_from_slice(&(max as u16).to_le_bytes());
    ep[0x10..0x15].copy_from_slice(b"_DMI_");
    ep[0x16..0x18].copy_from_slice(&(tables.len() as u16).to_le_bytes());
    ep[0x1c..0x1e].copy_from_slice(&(all.len() as u16).to_le_bytes());
    ep[0x1e] = 0x28;
    let sum = |b: &[u8]| b.iter().fold(0u8, |a, &x| a.wrapping_add(x));
    ep[0x15] = 0u8.wrapping_sub(sum(&ep[0x10..0x1f]));
    ep[4] = 0u8.wrapping_sub(sum(&ep));
    (tables, ep)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn structures_are_well_formed() {
        let layout = MemoryLayout::new(6 << 30).unwrap();
        let (tables, ep) = smbios(&SmbiosInfo {
            cpus: 2,
            layout: &layout,
            uuid: [7; 16],
        });
        assert_eq!(ep.len(), 31);
        assert_eq!(ep.iter().fold(0u8, |a, &x| a.wrapping_add(x)), 0);
        assert_eq!(
            u16::from_le_bytes([ep[0x16], ep[0x17]]) as usize,
            tables.len()
        );
        // Walk: each structure's formatted length, then strings up to a double NUL.
        let mut at = 0;
        let mut kinds = Vec::new();
        while at < tables.len() {
            let kind = tables[at];
            let len = tables[at + 1] as usize;
            kinds.push(kind);
            let mut p = at + len;
            while !(tables[p] == 0 && tables[p + 1] == 0) {
                p += 1;
            }
            at = p + 2;
        }
        assert_eq!(at, tables.len());
        assert_eq!(kinds, vec![1, 3, 4, 4, 16, 17, 19, 19, 32, 127]);
        assert_eq!(
            u16::from_le_bytes([ep[0x1c], ep[0x1d]]) as usize,
            kinds.len()
        );
        let text = String::from_utf8_lossy(&tables);
        assert!(text.contains("Kite PC (i440FX + PIIX3)"));
    }
}
