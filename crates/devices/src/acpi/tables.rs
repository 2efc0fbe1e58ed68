//! The ACPI tables Kite's PC offers: RSDP (in the BIOS area at 0xe0000, where
//! Linux scans for it), XSDT, FADT, FACS, MADT and DSDT.
//!
//! `acpi_tables` builds the tables as byte vectors (pure, for tests);
//! `build_acpi` writes them to guest memory and returns the RSDP's address,
//! also to be passed in boot_params.acpi_rsdp_addr.

use super::dsdt::{dsdt_aml, LegacyPorts};
use super::pm_registers::{
    PM1_CNT_LEN, PM1_CNT_OFFSET, PM1_EVT_LEN, PM1_EVT_OFFSET, PM_BASE, PM_TMR_LEN, PM_TMR_OFFSET,
};
use super::reset_control::{RESET_PORT, RESET_VALUE};
use crate::pci::PciWindows;
use crate::rtc_cmos::REG_CENTURY;
use acpi_tables::rsdp::Rsdp;
use acpi_tables::sdt::Sdt;
use acpi_tables::Aml;
use thiserror::Error;
use vm_memory::{Bytes, GuestAddress};

const OEM_ID: [u8; 6] = *b"KITE  ";
const OEM_TABLE_ID: [u8; 8] = *b"KITEPC  ";
const OEM_REVISION: u32 = 1;

/// Where the RSDP goes: the start of the BIOS area Linux scans (0xe0000-0xfffff).
pub const DEFAULT_RSDP_ADDRESS: u64 = 0xe_0000;
/// The end of the BIOS area; the tables must fit below it by default.
pub const BIOS_AREA_END: u64 = 0x10_0000;
pub const IOAPIC_ADDRESS: u32 = 0xfec0_0000;
pub const LAPIC_ADDRESS: u32 = 0xfee0_0000;
/// The SCI's ISA IRQ (and GSI).
pub const SCI_IRQ: u8 = 9;

/// FADT flags.
const FADT_WBINVD: u32 = 1 << 0;
const FADT_PROC_C1: u32 = 1 << 2;
/// No fixed-feature sleep button (bit 5 set); the power button is fixed (bit 4 clear).
const FADT_SLP_BUTTON: u32 = 1 << 5;
const FADT_TMR_VAL_EXT: u32 = 1 << 8;
const FADT_RESET_REG_SUP: u32 = 1 << 10;
/// IA-PC boot architecture flags: legacy devices, 8042, no VGA.
const IAPC_LEGACY_DEVICES: u16 = 1 << 0;
const IAPC_8042: u16 = 1 << 1;
const IAPC_NO_VGA: u16 = 1 << 2;

/// What the tables describe and where they go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcpiConfig {
    /// vCPUs, with local APIC ids 0..vcpus-1 (1-255).
    pub vcpus: u32,
    /// The IOAPIC's id (by default `vcpus`, after the local APICs).
    pub ioapic_id: u8,
    pub ioapic_address: u32,
    pub lapic_address: u32,
    /// The PCI windows the root bridge's `_CRS` offers.
    pub pci_windows: PciWindows,
    pub legacy: LegacyPorts,
    /// Whether the FADT says the PM timer is 32 bits (TMR_VAL_EXT); the PM
    /// device must be built to match.
    pub pm_timer_32bit: bool,
    /// Whether the board has a VGA (else the FADT says "no VGA": don't probe it).
    pub vga: bool,
    /// Where the RSDP goes (16-byte aligned, in 0xe0000-0xfffff for scanning).
    pub rsdp_address: u64,
    /// Where the other tables go, and how many bytes they may take.
    pub tables_address: u64,
    pub tables_size: u64,
}

impl AcpiConfig {
    /// The usual layout: RSDP at 0xe0000, tables after it in the BIOS area.
    pub fn new(vcpus: u32, pci_windows: PciWindows) -> AcpiConfig {
        AcpiConfig {
            vcpus,
            ioapic_id: vcpus.min(255) as u8,
            ioapic_address: IOAPIC_ADDRESS,
            lapic_address: LAPIC_ADDRESS,
            pci_windows,
            legacy: LegacyPorts::default(),
            pm_timer_32bit: true,
            vga: false,
            rsdp_address: DEFAULT_RSDP_ADDRESS,
            tables_address: DEFAULT_RSDP_ADDRESS + 0x40,
            tables_size: BIOS_AREA_END - DEFAULT_RSDP_ADDRESS - 0x40,
        }
    }
}

#[derive(Debug, Error)]
pub enum AcpiError {
    #[error("ACPI tables describe 1 to 255 vCPUs, not {0}")]
    BadVcpuCount(u32),
    #[error("the IOAPIC id {0} collides with a local APIC id")]
    IoapicIdCollides(u8),
    #[error("the RSDP address {0:#x} must be 16-byte aligned")]
    MisalignedRsdp(u64),
    #[error("the ACPI tables need {needed:#x} bytes but only {room:#x} are set aside")]
    NoRoom { needed: u64, room: u64 },
    #[error("the PCI 32-bit window {base:#x}+{len:#x} must be non-empty and below 4 GiB")]
    BadPciWindow { base: u64, len: u64 },
    #[error("writing ACPI tables at {address:#x}: {detail}")]
    Write { address: u64, detail: String },
}

/// The tables, each with the guest address it is built for.
#[derive(Debug, Clone)]
pub struct AcpiTables {
    pub rsdp_address: u64,
    pub rsdp: Vec<u8>,
    /// (address, bytes) for FACS, DSDT, FADT, MADT and XSDT.
    pub tables: Vec<(u64, Vec<u8>)>,
}

fn gas(space: u8, bit_width: u8, access_size: u8, address: u64) -> [u8; 12] {
    let mut g = [0u8; 12];
    g[0] = space;
    g[1] = bit_width;
    g[3] = access_size;
    g[4..].copy_from_slice(&address.to_le_bytes());
    g
}

const GAS_IO: u8 = 1;

fn facs() -> Vec<u8> {
    let mut t = vec![0u8; 64];
    t[0..4].copy_from_slice(b"FACS");
    t[4..8].copy_from_slice(&64u32.to_le_bytes());
    // Version 2 (ACPI 2.0+ layout).
    t[32] = 2;
    t
}

fn fadt(cfg: &AcpiConfig, facs_addr: u64, dsdt_addr: u64) -> Vec<u8> {
    let mut f = Sdt::new(*b"FACP", 276, 6, OEM_ID, OEM_TABLE_ID, OEM_REVISION);
    let pm1_evt = u32::from(PM_BASE + PM1_EVT_OFFSET);
    let pm1_cnt = u32::from(PM_BASE + PM1_CNT_OFFSET);
    let pm_tmr = u32::from(PM_BASE + PM_TMR_OFFSET);
    f.write_u32(36, facs_addr as u32);
    f.write_u32(40, dsdt_addr as u32);
    // Preferred PM profile: 0 (unspecified).
    f.write_u16(46, u16::from(SCI_IRQ));
    // SMI_CMD = 0: no SMM, the board is in ACPI mode from the start.
    f.write_u32(56, pm1_evt);
    f.write_u32(64, pm1_cnt);
    f.write_u32(76, pm_tmr);
    f.write_u8(88, PM1_EVT_LEN);
    f.write_u8(89, PM1_CNT_LEN);
    f.write_u8(91, PM_TMR_LEN);
    // C2/C3 are not supported: latencies over 100 and 1000 µs.
    f.write_u16(96, 101);
    f.write_u16(98, 1001);
    f.write_u8(108, REG_CENTURY);
    let no_vga = if cfg.vga { 0 } else { IAPC_NO_VGA };
    f.write_u16(109, IAPC_LEGACY_DEVICES | IAPC_8042 | no_vga);
    let mut flags = FADT_WBINVD | FADT_PROC_C1 | FADT_SLP_BUTTON | FADT_RESET_REG_SUP;
    if cfg.pm_timer_32bit {
        flags |= FADT_TMR_VAL_EXT;
    }
    f.write_u32(112, flags);
    f.write_bytes(116, &gas(GAS_IO, 8, 1, u64::from(RESET_PORT)));
    f.write_u8(128, RESET_VALUE);
    // FADT minor version 5 (ACPI 6.5).
    f.write_u8(131, 5);
    // X_FIRMWARE_CTRL stays zero: the spec allows only one FACS pointer.
    f.write_u64(140, dsdt_addr);
    f.write_bytes(148, &gas(GAS_IO, PM1_EVT_LEN * 8, 0, u64::from(pm1_evt)));
    f.write_bytes(172, &gas(GAS_IO, PM1_CNT_LEN * 8, 0, u64::from(pm1_cnt)));
    let tmr_width = if cfg.pm_timer_32bit { 32 } else { 24 };
    f.write_bytes(208, &gas(GAS_IO, tmr_width, 3, u64::from(pm_tmr)));
    f.as_slice().to_vec()
}

fn madt(cfg: &AcpiConfig) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&cfg.lapic_address.to_le_bytes());
    // PCAT_COMPAT: the board has a pair of 8259s.
    body.extend_from_slice(&1u32.to_le_bytes());
    for id in 0..cfg.vcpus {
        // Processor Local APIC: UID, APIC id, enabled.
        body.extend_from_slice(&[0, 8, id as u8, id as u8, 1, 0, 0, 0]);
    }
    body.extend_from_slice(&[1, 12, cfg.ioapic_id, 0]);
    body.extend_from_slice(&cfg.ioapic_address.to_le_bytes());
    body.extend_from_slice(&0u32.to_le_bytes());
    let iso = |body: &mut Vec<u8>, irq: u8, gsi: u32, flags: u16| {
        body.extend_from_slice(&[2, 10, 0, irq]);
        body.extend_from_slice(&gsi.to_le_bytes());
        body.extend_from_slice(&flags.to_le_bytes());
    };
    // The PIT's IRQ 0 reaches IOAPIC pin 2.
    iso(&mut body, 0, 2, 0);
    // The SCI: level-triggered, active high.
    iso(&mut body, SCI_IRQ, u32::from(SCI_IRQ), 0x000d);
    // LINT1 of every processor is NMI.
    body.extend_from_slice(&[4, 6, 0xff, 0, 0, 1]);
    let mut t = Sdt::new(*b"APIC", 36, 6, OEM_ID, OEM_TABLE_ID, OEM_REVISION);
    t.append_slice(&body);
    t.as_slice().to_vec()
}

fn dsdt(cfg: &AcpiConfig) -> Vec<u8> {
    let mut t = Sdt::new(*b"DSDT", 36, 2, OEM_ID, OEM_TABLE_ID, OEM_REVISION);
    t.append_slice(&dsdt_aml(&cfg.pci_windows, &cfg.legacy));
    t.as_slice().to_vec()
}

fn xsdt(entries: &[u64]) -> Vec<u8> {
    let mut t = Sdt::new(*b"XSDT", 36, 1, OEM_ID, OEM_TABLE_ID, OEM_REVISION);
    let body: Vec<u8> = entries.iter().flat_map(|e| e.to_le_bytes()).collect();
    t.append_slice(&body);
    t.as_slice().to_vec()
}

fn align_up(v: u64, a: u64) -> u64 {
    (v + a - 1) & !(a - 1)
}

/// Build the tables for `cfg`, laid out at its addresses.
pub fn acpi_tables(cfg: &AcpiConfig) -> Result<AcpiTables, AcpiError> {
    if cfg.vcpus == 0 || cfg.vcpus > 255 {
        return Err(AcpiError::BadVcpuCount(cfg.vcpus));
    }
    if u32::from(cfg.ioapic_id) < cfg.vcpus {
        return Err(AcpiError::IoapicIdCollides(cfg.ioapic_id));
    }
    if !cfg.rsdp_address.is_multiple_of(16) {
        return Err(AcpiError::MisalignedRsdp(cfg.rsdp_address));
    }
    let (base, len) = cfg.pci_windows.mmio32;
    if len == 0 || base.checked_add(len).is_none_or(|end| end > 1 << 32) {
        return Err(AcpiError::BadPciWindow { base, len });
    }
    if let Some((base, len)) = cfg.pci_windows.mmio64 {
        if len == 0 || base.checked_add(len).is_none() {
            return Err(AcpiError::BadPciWindow { base, len });
        }
    }

    let mut tables = Vec::new();
    let mut next = align_up(cfg.tables_address, 64);
    let mut place = |bytes: Vec<u8>, align: u64| -> u64 {
        let at = align_up(next, align);
        next = at + bytes.len() as u64;
        tables.push((at, bytes));
        at
    };
    let facs_addr = place(facs(), 64);
    let dsdt_addr = place(dsdt(cfg), 8);
    let fadt_addr = place(fadt(cfg, facs_addr, dsdt_addr), 8);
    let madt_addr = place(madt(cfg), 8);
    let xsdt_addr = place(xsdt(&[fadt_addr, madt_addr]), 8);
    let needed = next - cfg.tables_address;
    if needed > cfg.tables_size || next > u64::from(u32::MAX) {
        return Err(AcpiError::NoRoom {
            needed,
            room: cfg.tables_size,
        });
    }
    let rsdp = Rsdp::new(OEM_ID, xsdt_addr);
    let mut rsdp_bytes = Vec::new();
    rsdp.to_aml_bytes(&mut rsdp_bytes);
    let rsdp = rsdp_bytes;
    Ok(AcpiTables {
        rsdp_address: cfg.rsdp_address,
        rsdp,
        tables,
    })
}

/// Write the tables for `cfg` into guest memory; returns the RSDP's address.
pub fn build_acpi<M: Bytes<GuestAddress>>(
    mem: &M,
    cfg: &AcpiConfig,
) -> Result<GuestAddress, AcpiError>
where
    M::E: std::fmt::Display,
{
    let t = acpi_tables(cfg)?;
    let write = |addr: u64, bytes: &[u8]| {
        mem.write_slice(bytes, GuestAddress(addr))
            .map_err(|e| AcpiError::Write {
                address: addr,
                detail: e.to_string(),
            })
    };
    for (addr, bytes) in &t.tables {
        write(*addr, bytes)?;
    }
    write(t.rsdp_address, &t.rsdp)?;
    Ok(GuestAddress(t.rsdp_address))
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::GuestMemoryMmap;

    fn windows() -> PciWindows {
        PciWindows {
            mmio32: (0xc000_0000, 0x3ec0_0000),
            mmio64: Some((0x100_0000_0000, 0x10_0000_0000)),
            io: (0xc000, 0x4000),
        }
    }

    fn sum(b: &[u8]) -> u8 {
        b.iter().fold(0u8, |a, &x| a.wrapping_add(x))
    }

    fn u32_at(b: &[u8], at: usize) -> u32 {
        u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
    }

    fn u64_at(b: &[u8], at: usize) -> u64 {
        u64::from(u32_at(b, at)) | (u64::from(u32_at(b, at + 4)) << 32)
    }

    fn table<'a>(t: &'a AcpiTables, sig: &[u8]) -> (u64, &'a [u8]) {
        t.tables
            .iter()
            .find(|(_, b)| &b[0..4] == sig)
            .map(|(a, b)| (*a, b.as_slice()))
            .unwrap()
    }

    #[test]
    fn checksums_lengths_and_links() {
        let t = acpi_tables(&AcpiConfig::new(4, windows())).unwrap();
        assert_eq!(&t.rsdp[0..8], b"RSD PTR ");
        assert_eq!(t.rsdp.len(), 36);
        assert_eq!(t.rsdp[15], 2, "RSDP revision");
        assert_eq!(sum(&t.rsdp[0..20]), 0);
        assert_eq!(sum(&t.rsdp), 0);
        let (xsdt_addr, xsdt) = table(&t, b"XSDT");
        assert_eq!(u64_at(&t.rsdp, 24), xsdt_addr);
        for (addr, b) in &t.tables {
            assert_eq!(u32_at(b, 4) as usize, b.len(), "length of {:?}", &b[0..4]);
            if &b[0..4] != b"FACS" {
                assert_eq!(sum(b), 0, "checksum of {:?}", &b[0..4]);
                assert_eq!(addr % 8, 0);
            } else {
                assert_eq!(addr % 64, 0);
            }
            assert!(*addr >= 0xe0040 && addr + b.len() as u64 <= 0x10_0000);
        }
        let (fadt_addr, fadt) = table(&t, b"FACP");
        let (madt_addr, _) = table(&t, b"APIC");
        assert_eq!(xsdt.len(), 36 + 16);
        assert_eq!([u64_at(xsdt, 36), u64_at(xsdt, 44)], [fadt_addr, madt_addr]);
        let (dsdt_addr, _) = table(&t, b"DSDT");
        let (facs_addr, _) = table(&t, b"FACS");
        assert_eq!(u64_at(fadt, 140), dsdt_addr);
        assert_eq!(u64::from(u32_at(fadt, 36)), facs_addr);
        assert_eq!(u64_at(fadt, 132), 0);
    }

    #[test]
    fn fadt_fields() {
        let t = acpi_tables(&AcpiConfig::new(1, windows())).unwrap();
        let (_, f) = table(&t, b"FACP");
        assert_eq!(f.len(), 276);
        assert_eq!(u16::from_le_bytes([f[46], f[47]]), 9, "SCI_INT");
        assert_eq!(u32_at(f, 48), 0, "no SMI_CMD");
        assert_eq!(u32_at(f, 56), 0x600);
        assert_eq!(u32_at(f, 64), 0x604);
        assert_eq!(u32_at(f, 76), 0x608);
        assert_eq!([f[88], f[89], f[91]], [4, 2, 4]);
        assert_eq!(f[108], 0x32, "century");
        let flags = u32_at(f, 112);
        assert_ne!(flags & FADT_TMR_VAL_EXT, 0);
        assert_ne!(flags & FADT_RESET_REG_SUP, 0);
        assert_eq!(flags & (1 << 20), 0, "not hardware-reduced");
        assert_eq!(&f[116..120], &[1, 8, 0, 1]);
        assert_eq!(u64_at(f, 120), 0xcf9);
        assert_eq!(f[128], 0x06);
        assert_eq!(u64_at(f, 148 + 4), 0x600);
        assert_eq!(u64_at(f, 172 + 4), 0x604);
        assert_eq!(u64_at(f, 208 + 4), 0x608);
        assert_eq!(f[209], 32);
        let boot_arch = |t: &AcpiTables| {
            let (_, f) = table(t, b"FACP");
            u16::from_le_bytes([f[109], f[110]])
        };
        assert_ne!(boot_arch(&t) & IAPC_NO_VGA, 0, "no VGA on a headless board");
        let with_vga = acpi_tables(&AcpiConfig {
            vga: true,
            ..AcpiConfig::new(1, windows())
        })
        .unwrap();
        assert_eq!(boot_arch(&with_vga) & IAPC_NO_VGA, 0);
    }

    #[test]
    fn madt_lists_each_cpu_ioapic_and_overrides() {
        let t = acpi_tables(&AcpiConfig::new(3, windows())).unwrap();
        let (_, m) = table(&t, b"APIC");
        assert_eq!(u32_at(m, 36), 0xfee0_0000);
        let mut at = 44;
        let (mut cpus, mut ioapics, mut isos) = (vec![], vec![], vec![]);
        while at < m.len() {
            let (ty, len) = (m[at], usize::from(m[at + 1]));
            assert!(len >= 2 && at + len <= m.len());
            match ty {
                0 => cpus.push((m[at + 2], m[at + 3], m[at + 4])),
                1 => ioapics.push((m[at + 2], u32_at(m, at + 4), u32_at(m, at + 8))),
                2 => isos.push((
                    m[at + 3],
                    u32_at(m, at + 4),
                    u16::from_le_bytes([m[at + 8], m[at + 9]]),
                )),
                _ => {}
            }
            at += len;
        }
        assert_eq!(at, m.len());
        assert_eq!(cpus, vec![(0, 0, 1), (1, 1, 1), (2, 2, 1)]);
        assert_eq!(ioapics, vec![(3, 0xfec0_0000, 0)]);
        assert_eq!(isos, vec![(0, 2, 0), (9, 9, 0xd)]);
    }

    #[test]
    fn bad_configs_are_refused() {
        assert!(matches!(
            acpi_tables(&AcpiConfig::new(0, windows())),
            Err(AcpiError::BadVcpuCount(0))
        ));
        assert!(acpi_tables(&AcpiConfig::new(256, windows())).is_err());
        let mut c = AcpiConfig::new(2, windows());
        c.ioapic_id = 1;
        assert!(matches!(
            acpi_tables(&c),
            Err(AcpiError::IoapicIdCollides(1))
        ));
        let mut c = AcpiConfig::new(2, windows());
        c.tables_size = 0x100;
        assert!(matches!(acpi_tables(&c), Err(AcpiError::NoRoom { .. })));
        let mut c = AcpiConfig::new(2, windows());
        c.pci_windows.mmio32 = (0xf000_0000, 0x2000_0000);
        assert!(matches!(
            acpi_tables(&c),
            Err(AcpiError::BadPciWindow { .. })
        ));
    }

    #[test]
    fn written_to_guest_memory_where_linux_scans() {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 2 << 20)]).unwrap();
        let rsdp = build_acpi(&mem, &AcpiConfig::new(2, windows())).unwrap();
        assert_eq!(rsdp, GuestAddress(0xe0000));
        // Scan 0xe0000-0xfffff on 16-byte boundaries as Linux does.
        let mut found = None;
        for a in (0xe0000u64..0x100000).step_by(16) {
            let mut sig = [0u8; 8];
            mem.read_slice(&mut sig, GuestAddress(a)).unwrap();
            if &sig == b"RSD PTR " {
                found = Some(a);
                break;
            }
        }
        assert_eq!(found, Some(0xe0000));
        let mut x = [0u8; 8];
        mem.read_slice(&mut x, GuestAddress(0xe0000 + 24)).unwrap();
        let mut sig = [0u8; 4];
        mem.read_slice(&mut sig, GuestAddress(u64::from_le_bytes(x)))
            .unwrap();
        assert_eq!(&sig, b"XSDT");
        // Too little memory: an error, not a panic.
        let small = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x8_0000)]).unwrap();
        assert!(matches!(
            build_acpi(&small, &AcpiConfig::new(1, windows())),
            Err(AcpiError::Write { .. })
        ));
    }

    /// Disassemble the DSDT with ACPICA's iasl when it is installed
    /// (Debian: acpica-tools) and check it parses cleanly with the expected names.
    #[test]
    fn dsdt_disassembles_with_iasl() {
        let Ok(out) = std::process::Command::new("iasl").arg("-v").output() else {
            eprintln!("skipping: iasl not installed (apt-get install acpica-tools)");
            return;
        };
        assert!(out.status.success());
        let dir = std::env::temp_dir().join(format!("kite-dsdt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let t = acpi_tables(&AcpiConfig::new(2, windows())).unwrap();
        let (_, dsdt) = table(&t, b"DSDT");
        let path = dir.join("dsdt.dat");
        std::fs::write(&path, dsdt).unwrap();
        let out = std::process::Command::new("iasl")
            .arg("-d")
            .arg(&path)
            .output()
            .unwrap();
        let log = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "iasl -d failed: {log}");
        let dsl = std::fs::read_to_string(dir.join("dsdt.dsl")).unwrap();
        for want in [
            "PNP0A03",
            "PNP0501",
            "PNP0B00",
            "PNP0303",
            "PNP0F13",
            "_S5_",
            "_PRT",
            "0x03F8",
            "0xC0000000",
        ] {
            assert!(
                dsl.contains(want),
                "{want} missing from disassembly:\n{dsl}"
            );
        }
        // Recompile the disassembly: it must assemble without errors.
        let out = std::process::Command::new("iasl")
            .arg(dir.join("dsdt.dsl"))
            .output()
            .unwrap();
        let log = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "recompiling the DSDT failed: {log}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
