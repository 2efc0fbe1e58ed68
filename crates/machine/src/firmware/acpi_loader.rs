//! The ACPI tables as firmware receives them: one "etc/acpi/tables" file
//! with every table at an offset from its start, the RSDP in
//! "etc/acpi/rsdp", and an "etc/table-loader" script that places both and
//! turns the offsets into addresses (SeaBIOS runs it; the tables are the
//! same ones direct boot writes into RAM itself).

use kite_devices::acpi::{acpi_tables, AcpiConfig};
use kite_devices::firmware::{LoaderZone, TableLoader};

pub const TABLES_FILE: &str = "etc/acpi/tables";
pub const RSDP_FILE: &str = "etc/acpi/rsdp";
pub const LOADER_FILE: &str = "etc/table-loader";

/// The three files.
pub struct AcpiFiles {
    pub tables: Vec<u8>,
    pub rsdp: Vec<u8>,
    pub loader: Vec<u8>,
}

/// SDT header offsets.
const SDT_LENGTH: usize = 4;
const SDT_CHECKSUM: u32 = 9;
const SDT_HEADER: usize = 36;
/// FADT pointer fields: FIRMWARE_CTRL, DSDT, X_DSDT.
const FADT_POINTERS: [(u32, u8); 3] = [(36, 4), (40, 4), (140, 8)];
/// RSDP fields: checksum over 20 bytes, XSDT address, extended checksum over the rest.
const RSDP_CHECKSUM: u32 = 8;
const RSDP_XSDT: u32 = 24;
const RSDP_EXT_CHECKSUM: u32 = 32;

pub fn acpi_files(mut cfg: AcpiConfig) -> Result<AcpiFiles, String> {
    // Lay the tables out from offset 0 of the file.
    cfg.rsdp_address = 0;
    cfg.tables_address = 0;
    cfg.tables_size = 1 << 24;
    let t = acpi_tables(&cfg).map_err(|e| format!("building the ACPI tables: {e}"))?;
    let end = t
        .tables
        .iter()
        .map(|(a, b)| *a as usize + b.len())
        .max()
        .unwrap_or(0);
    let mut tables = vec![0u8; end];
    let mut loader = TableLoader::new();
    loader.allocate(RSDP_FILE, 16, LoaderZone::FSeg);
    loader.allocate(TABLES_FILE, 64, LoaderZone::High);
    for (addr, bytes) in &t.tables {
        let at = *addr as usize;
        tables[at..at + bytes.len()].copy_from_slice(bytes);
        let sig = &bytes[..4];
        let pointers: Vec<(u32, u8)> = match sig {
            b"FACP" => FADT_POINTERS.to_vec(),
            b"XSDT" | b"RSDT" => {
                let width = if sig == b"XSDT" { 8 } else { 4 };
                let len = u32::from_le_bytes([
                    bytes[SDT_LENGTH],
                    bytes[SDT_LENGTH + 1],
                    bytes[SDT_LENGTH + 2],
                    bytes[SDT_LENGTH + 3],
                ]) as usize;
                (SDT_HEADER..len)
                    .step_by(width as usize)
                    .map(|o| (o as u32, width))
                    .collect()
            }
            _ => Vec::new(),
        };
        if pointers.is_empty() {
            continue;
        }
        for (off, size) in pointers {
            // FACS at offset 0 is a real pointer too (the field holds 0).
            loader.add_pointer(TABLES_FILE, TABLES_FILE, *addr as u32 + off, size);
        }
        loader.add_checksum(
            TABLES_FILE,
            *addr as u32 + SDT_CHECKSUM,
            *addr as u32,
            bytes.len() as u32,
        );
    }
    loader.add_pointer(RSDP_FILE, TABLES_FILE, RSDP_XSDT, 8);
    loader.add_checksum(RSDP_FILE, RSDP_CHECKSUM, 0, 20);
    loader.add_checksum(RSDP_FILE, RSDP_EXT_CHECKSUM, 0, t.rsdp.len() as u32);
    Ok(AcpiFiles {
        tables,
        rsdp: t.rsdp,
        loader: loader.into_bytes(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use kite_devices::pci::PciWindows;

    /// Run the loader as firmware would, with the tables at `base` and the
    /// RSDP at `rsdp_base`, and check every table's checksum and links.
    #[test]
    fn loader_script_relocates_tables_and_fixes_checksums() {
        let windows = PciWindows {
            mmio32: (0xc000_0000, 0x3ec0_0000),
            mmio64: None,
            io: (0xc000, 0x4000),
        };
        let f = acpi_files(AcpiConfig::new(2, windows)).unwrap();
        let base: u64 = 0x7ff_0000;
        let mut tables = f.tables.clone();
        let mut rsdp = f.rsdp.clone();
        for cmd in f.loader.chunks(128) {
            let kind = u32::from_le_bytes(cmd[0..4].try_into().unwrap());
            let file = |at: usize| {
                let n = &cmd[at..at + 56];
                String::from_utf8_lossy(&n[..n.iter().position(|&b| b == 0).unwrap()]).into_owned()
            };
            match kind {
                1 => {}
                2 => {
                    assert_eq!(file(60), TABLES_FILE);
                    let off = u32::from_le_bytes(cmd[116..120].try_into().unwrap()) as usize;
                    let size = cmd[120] as usize;
                    let dest = if file(4) == RSDP_FILE {
                        &mut rsdp
                    } else {
                        &mut tables
                    };
                    let mut v = [0u8; 8];
                    v[..size].copy_from_slice(&dest[off..off + size]);
                    let p = u64::from_le_bytes(v) + base;
                    dest[off..off + size].copy_from_slice(&p.to_le_bytes()[..size]);
                }
                3 => {
                    let off = u32::from_le_bytes(cmd[60..64].try_into().unwrap()) as usize;
                    let start = u32::from_le_bytes(cmd[64..68].try_into().unwrap()) as usize;
                    let len = u32::from_le_bytes(cmd[68..72].try_into().unwrap()) as usize;
                    let dest = if file(4) == RSDP_FILE {
                        &mut rsdp
                    } else {
                        &mut tables
                    };
                    let sum = dest[start..start + len]
                        .iter()
                        .fold(0u8, |a, &b| a.wrapping_add(b));
                    dest[off] = dest[off].wrapping_sub(sum);
                }
                k => panic!("unexpected command {k}"),
            }
        }
        let sum = |b: &[u8]| b.iter().fold(0u8, |a, &x| a.wrapping_add(x));
        assert_eq!(sum(&rsdp[..20]), 0);
        assert_eq!(sum(&rsdp[..36]), 0);
        let xsdt = u64::from_le_bytes(rsdp[24..32].try_into().unwrap());
        let table_at = |addr: u64| {
            let at = (addr - base) as usize;
            let len = u32::from_le_bytes(tables[at + 4..at + 8].try_into().unwrap()) as usize;
            &tables[at..at + len]
        };
        let x = table_at(xsdt);
        assert_eq!(&x[..4], b"XSDT");
        assert_eq!(sum(x), 0);
        let mut sigs = Vec::new();
        for e in x[36..].chunks(8) {
            let t = table_at(u64::from_le_bytes(e.try_into().unwrap()));
            assert_eq!(sum(t), 0, "{:?}", &t[..4]);
            sigs.push(t[..4].to_vec());
            if &t[..4] == b"FACP" {
                let dsdt = u64::from_le_bytes(t[140..148].try_into().unwrap());
                let d = table_at(dsdt);
                assert_eq!(&d[..4], b"DSDT");
                assert_eq!(sum(d), 0);
                let facs = u32::from_le_bytes(t[36..40].try_into().unwrap()) as u64;
                assert_eq!(&tables[(facs - base) as usize..][..4], b"FACS");
            }
        }
        assert_eq!(sigs, vec![b"FACP".to_vec(), b"APIC".to_vec()]);
    }
}
