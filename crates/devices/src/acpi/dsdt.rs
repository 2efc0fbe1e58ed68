//! The DSDT's AML: the PCI root bridge with its windows and interrupt routing,
//! the legacy devices (COM1, RTC, i8042 keyboard and PS/2 mouse) and `\_S5` so the guest can
//! power off.

use super::pm_registers::SLP_TYP_S5;
use crate::pci::PciWindows;
use acpi_tables::aml::{
    self, AddressSpace, AddressSpaceCacheable, Device, EISAName, Name, Package, PackageBuilder,
    Path, ResourceTemplate, Scope, IO,
};
use acpi_tables::{Aml, AmlSink};

/// The first IOAPIC input PCI INTx lines use; slots share GSIs 16-19.
pub const PCI_INTX_GSI_BASE: u32 = 16;

/// The GSI a PCI device's INTx pin (0 = INTA#) reaches, per the DSDT's `_PRT`.
pub fn pci_intx_gsi(device: u8, pin: u8) -> u32 {
    PCI_INTX_GSI_BASE + (u32::from(device) + u32::from(pin)) % 4
}

/// The 16550 UART the DSDT names as COM1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LegacyPorts {
    pub com1: Option<(u16, u8)>,
    pub rtc: bool,
    pub i8042: bool,
}

impl Default for LegacyPorts {
    fn default() -> Self {
        LegacyPorts {
            com1: Some((0x3f8, 4)),
            rtc: true,
            i8042: true,
        }
    }
}

/// An ISA IRQ descriptor without flags (edge, active high), `IRQNoFlags(){n}`.
struct IrqNoFlags(u8);

impl Aml for IrqNoFlags {
    fn to_aml_bytes(&self, sink: &mut dyn AmlSink) {
        let mask = 1u16 << (self.0 & 15);
        sink.byte(0x22);
        sink.word(mask);
    }
}

fn legacy_devices(legacy: &LegacyPorts, sink: &mut dyn AmlSink) {
    if let Some((port, irq)) = legacy.com1 {
        let io = IO::new(port, port, 1, 8);
        let int = IrqNoFlags(irq);
        let crs = ResourceTemplate::new(vec![&io, &int]);
        Device::new(
            "COM1".into(),
            vec![
                &Name::new("_HID".into(), &EISAName::new("PNP0501")),
                &Name::new("_UID".into(), &aml::ONE),
                &Name::new("_CRS".into(), &crs),
            ],
        )
        .to_aml_bytes(sink);
    }
    if legacy.rtc {
        let io = IO::new(0x70, 0x70, 1, 2);
        let int = IrqNoFlags(8);
        let crs = ResourceTemplate::new(vec![&io, &int]);
        Device::new(
            "RTC_".into(),
            vec![
                &Name::new("_HID".into(), &EISAName::new("PNP0B00")),
                &Name::new("_CRS".into(), &crs),
            ],
        )
        .to_aml_bytes(sink);
    }
    if legacy.i8042 {
        let data = IO::new(0x60, 0x60, 1, 1);
        let cmd = IO::new(0x64, 0x64, 1, 1);
        let int = IrqNoFlags(1);
        let crs = ResourceTemplate::new(vec![&data, &cmd, &int]);
        Device::new(
            "KBD_".into(),
            vec![
                &Name::new("_HID".into(), &EISAName::new("PNP0303")),
                &Name::new("_CRS".into(), &crs),
            ],
        )
        .to_aml_bytes(sink);
        // The PS/2 mouse on the controller's aux port (Linux's i8042
        // driver looks for it through PNP).
        let int = IrqNoFlags(12);
        let crs = ResourceTemplate::new(vec![&int]);
        Device::new(
            "MOU_".into(),
            vec![
                &Name::new("_HID".into(), &EISAName::new("PNP0F13")),
                &Name::new("_CRS".into(), &crs),
            ],
        )
        .to_aml_bytes(sink);
    }
}

/// `_PRT`: every slot's four pins to GSIs 16-19 (level, active low).
fn pci_routing_table() -> PackageBuilder {
    let mut prt = PackageBuilder::new();
    for device in 1u8..32 {
        for pin in 0u8..4 {
            let address: u32 = (u32::from(device) << 16) | 0xffff;
            let gsi = pci_intx_gsi(device, pin);
            let entry = Package::new(vec![&address, &pin, &aml::ZERO, &gsi]);
            prt.add_element(&entry);
        }
    }
    prt
}

fn pci_root_bridge(windows: &PciWindows, sink: &mut dyn AmlSink) {
    let bus = AddressSpace::<u16>::new_bus_number(0, 0xff);
    let cfg_ports = IO::new(0xcf8, 0xcf8, 1, 8);
    let io_low = AddressSpace::<u16>::new_io(0, 0xcf7, None);
    let io_high = AddressSpace::<u16>::new_io(0xd00, 0xffff, None);
    let vga = AddressSpace::<u32>::new_memory(
        AddressSpaceCacheable::Cacheable,
        true,
        0xa_0000,
        0xb_ffff,
        None,
    );
    let (m32_base, m32_len) = windows.mmio32;
    let mmio32 = AddressSpace::<u32>::new_memory(
        AddressSpaceCacheable::NotCacheable,
        true,
        m32_base as u32,
        (m32_base + m32_len - 1) as u32,
        None,
    );
    let mmio64 = windows.mmio64.map(|(base, len)| {
        AddressSpace::<u64>::new_memory(
            AddressSpaceCacheable::NotCacheable,
            true,
            base,
            base + len - 1,
            None,
        )
    });
    let mut resources: Vec<&dyn Aml> = vec![&bus, &cfg_ports, &io_low, &io_high, &vga, &mmio32];
    if let Some(m) = mmio64.as_ref() {
        resources.push(m);
    }
    let crs = ResourceTemplate::new(resources);
    let prt = pci_routing_table();
    Device::new(
        "PCI0".into(),
        vec![
            &Name::new("_HID".into(), &EISAName::new("PNP0A03")),
            &Name::new("_ADR".into(), &aml::ZERO),
            &Name::new("_SEG".into(), &aml::ZERO),
            &Name::new("_UID".into(), &aml::ZERO),
            &Name::new("_BBN".into(), &aml::ZERO),
            &Name::new("_CRS".into(), &crs),
            &Name::new("_PRT".into(), &prt),
        ],
    )
    .to_aml_bytes(sink);
}

/// The DSDT body (the AML after the table header).
pub fn dsdt_aml(windows: &PciWindows, legacy: &LegacyPorts) -> Vec<u8> {
    let mut sb_body = Vec::new();
    pci_root_bridge(windows, &mut sb_body);
    legacy_devices(legacy, &mut sb_body);
    let raw = RawAml(sb_body);
    let mut out = Vec::new();
    Scope::new(Path::new("\\_SB_"), vec![&raw]).to_aml_bytes(&mut out);
    // \_S5: PM1a and PM1b SLP_TYP values for soft-off.
    let s5 = Package::new(vec![
        &SLP_TYP_S5_BYTE,
        &SLP_TYP_S5_BYTE,
        &aml::ZERO,
        &aml::ZERO,
    ]);
    Name::new(Path::new("\\_S5_"), &s5).to_aml_bytes(&mut out);
    out
}

const SLP_TYP_S5_BYTE: u8 = SLP_TYP_S5 as u8;

/// Already-encoded AML, spliced in as is.
struct RawAml(Vec<u8>);

impl Aml for RawAml {
    fn to_aml_bytes(&self, sink: &mut dyn AmlSink) {
        sink.vec(&self.0);
    }
}
