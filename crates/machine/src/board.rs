//! The PC board beyond the console devices: the MC146818 RTC/CMOS, PCI
//! configuration space with its host bridge (and the reset control at 0xcf9),
//! the ACPI PM registers (power-off by S5), and the ACPI tables that describe
//! them, the APICs and the legacy devices to the guest.

use std::sync::{Arc, Mutex};

use kite_devices::acpi::{
    build_acpi, AcpiConfig, AcpiPmRegisters, PowerEvent, PowerEventFn, ResetControl, PM_BASE,
    PM_LEN,
};
use kite_devices::pci::{PciConfigIo, PciRoot, PciWindows};
use kite_devices::rtc_cmos::{CmosMemory, RtcCmos};
use kite_devices::IoBus;
use kite_hypervisor::Vm;
use vm_memory::GuestMemoryMmap;

use crate::control::{Control, VmEvent};
use crate::error::MachineError;
use crate::irq::VmIrqLine;
use crate::memory::{MemoryLayout, HIGH_RAM_START, MMIO_HOLE_START};
use crate::snapshot::DeviceTable;

/// The RTC's ports and interrupt.
const RTC_PORT: u64 = 0x70;
const RTC_IRQ: u32 = 8;
/// The ACPI system control interrupt (level, active high in the MADT).
const SCI_IRQ: u32 = 9;
/// PCI configuration mechanism #1.
const PCI_CONFIG_PORT: u64 = 0xcf8;
/// Below the IOAPIC (0xfec00000) and the rest of the top 20 MiB.
const PCI_MMIO32_END: u64 = 0xfec0_0000;

/// The PCI address windows for a memory layout: 32-bit MMIO in the hole
/// below 4 GiB, 64-bit MMIO above RAM, ports 0xc000-0xffff.
pub fn pci_windows(layout: &MemoryLayout) -> PciWindows {
    let high_end = HIGH_RAM_START + layout.high_size;
    let mmio64_base = high_end.next_multiple_of(1 << 30).max(1 << 36);
    PciWindows {
        mmio32: (MMIO_HOLE_START, PCI_MMIO32_END - MMIO_HOLE_START),
        mmio64: Some((mmio64_base, 1 << 36)),
        io: (0xc000, 0x4000),
    }
}

/// Write the ACPI tables into guest memory (`vga`: the board has one);
/// returns the RSDP's address.
pub fn write_acpi_tables(
    mem: &GuestMemoryMmap,
    layout: &MemoryLayout,
    cpus: u32,
    vga: bool,
) -> Result<u64, MachineError> {
    let cfg = AcpiConfig {
        vga,
        ..AcpiConfig::new(cpus, pci_windows(layout))
    };
    build_acpi(mem, &cfg)
        .map(|a| a.0)
        .map_err(|e| MachineError::Config(format!("building the ACPI tables: {e}")))
}

/// Put the RTC, PCI (bus 0 as `root` holds it) and ACPI power devices on
/// the port bus, and their state in a snapshot's `devices`.
pub fn add_pc_devices(
    io_bus: &IoBus,
    root: PciRoot,
    vm: &Arc<dyn Vm>,
    layout: &MemoryLayout,
    control: &Control,
    cmos: &[(u8, u8)],
    devices: &mut DeviceTable,
) -> Result<(), MachineError> {
    let ram_below_4g = layout.low_size;
    let rtc = RtcCmos::new(
        CmosMemory {
            ram_below_4g,
            ram_above_4g: layout.high_size,
        },
        VmIrqLine::new(vm.clone(), RTC_IRQ),
    )
    .map_err(MachineError::Thread)?;
    for &(index, value) in cmos {
        rtc.set_cmos_byte(index, value);
    }
    let rtc = Arc::new(Mutex::new(rtc));
    io_bus.insert(RTC_PORT, 2, rtc.clone())?;
    devices.add("rtc", rtc);

    let c = control.clone();
    let sink = Arc::new(PowerEventFn(move |ev| {
        c.request(match ev {
            PowerEvent::PowerOff => VmEvent::PowerOff,
            PowerEvent::Reset => VmEvent::Reset,
        })
    }));

    let root = Arc::new(Mutex::new(root));
    let config_io = PciConfigIo::new(root, Some(ResetControl::new(sink.clone())));
    let config_io = Arc::new(Mutex::new(config_io));
    io_bus.insert(PCI_CONFIG_PORT, 8, config_io.clone())?;
    devices.add("pci", config_io);

    let pm = Arc::new(Mutex::new(AcpiPmRegisters::new(
        VmIrqLine::new(vm.clone(), SCI_IRQ),
        sink,
        true,
    )));
    control.set_power_button(pm.clone());
    io_bus.insert(u64::from(PM_BASE), u64::from(PM_LEN), pm.clone())?;
    devices.add("acpi_pm", pm);
    Ok(())
}
