//! The "etc/table-loader" script firmware runs to place tables that fw_cfg
//! hands over as files (QEMU's hw/acpi/bios-linker-loader.c describes the
//! format): 128-byte little-endian commands that allocate a file in a memory
//! zone, patch a pointer in one file with another file's final address, and
//! recompute a checksum once everything is placed.

use super::fw_cfg::FILE_NAME_LEN;

/// Where firmware puts an allocated file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoaderZone {
    /// Anywhere in RAM (high memory).
    High = 1,
    /// The F segment (0xe0000-0xfffff), where an OS scans for the RSDP.
    FSeg = 2,
}

const COMMAND_LEN: usize = 128;
const ALLOCATE: u32 = 1;
const ADD_POINTER: u32 = 2;
const ADD_CHECKSUM: u32 = 3;

/// A table-loader script under construction.
#[derive(Debug, Default, Clone)]
pub struct TableLoader {
    bytes: Vec<u8>,
}

fn name(out: &mut [u8], file: &str) {
    let n = file.len().min(FILE_NAME_LEN - 1);
    out[..n].copy_from_slice(&file.as_bytes()[..n]);
}

impl TableLoader {
    pub fn new() -> TableLoader {
        TableLoader::default()
    }

    fn command(&mut self, kind: u32) -> &mut [u8] {
        let at = self.bytes.len();
        self.bytes.resize(at + COMMAND_LEN, 0);
        self.bytes[at..at + 4].copy_from_slice(&kind.to_le_bytes());
        &mut self.bytes[at + 4..at + COMMAND_LEN]
    }

    /// Allocate `file` aligned to `align` bytes in `zone`.
    pub fn allocate(&mut self, file: &str, align: u32, zone: LoaderZone) {
        let c = self.command(ALLOCATE);
        name(&mut c[..FILE_NAME_LEN], file);
        c[56..60].copy_from_slice(&align.to_le_bytes());
        c[60] = zone as u8;
    }

    /// Add `src`'s final address to the `size`-byte little-endian value at
    /// `offset` in `dest` (which holds an offset into `src`).
    pub fn add_pointer(&mut self, dest: &str, src: &str, offset: u32, size: u8) {
        let c = self.command(ADD_POINTER);
        name(&mut c[..FILE_NAME_LEN], dest);
        name(&mut c[56..56 + FILE_NAME_LEN], src);
        c[112..116].copy_from_slice(&offset.to_le_bytes());
        c[116] = size;
    }

    /// Make the byte at `offset` in `file` the checksum of `start..start+len`.
    pub fn add_checksum(&mut self, file: &str, offset: u32, start: u32, len: u32) {
        let c = self.command(ADD_CHECKSUM);
        name(&mut c[..FILE_NAME_LEN], file);
        c[56..60].copy_from_slice(&offset.to_le_bytes());
        c[60..64].copy_from_slice(&start.to_le_bytes());
        c[64..68].copy_from_slice(&len.to_le_bytes());
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_have_the_documented_layout() {
        let mut l = TableLoader::new();
        l.allocate("etc/acpi/rsdp", 16, LoaderZone::FSeg);
        l.add_pointer("etc/acpi/rsdp", "etc/acpi/tables", 24, 8);
        l.add_checksum("etc/acpi/tables", 9, 64, 36);
        let b = l.into_bytes();
        assert_eq!(b.len(), 3 * 128);
        assert_eq!(&b[0..4], &1u32.to_le_bytes());
        assert_eq!(&b[4..17], b"etc/acpi/rsdp");
        assert_eq!(b[17], 0);
        assert_eq!(&b[60..64], &16u32.to_le_bytes());
        assert_eq!(b[64], 2);
        let p = &b[128..256];
        assert_eq!(&p[0..4], &2u32.to_le_bytes());
        assert_eq!(&p[60..75], b"etc/acpi/tables");
        assert_eq!(&p[116..120], &24u32.to_le_bytes());
        assert_eq!(p[120], 8);
        let c = &b[256..384];
        assert_eq!(&c[0..4], &3u32.to_le_bytes());
        assert_eq!(&c[60..64], &9u32.to_le_bytes());
        assert_eq!(&c[64..68], &64u32.to_le_bytes());
        assert_eq!(&c[68..72], &36u32.to_le_bytes());
    }
}
