//! ACPI for Kite's PC: the tables (built into guest memory), the fixed PM
//! registers at 0x600 (PM1 event/control, PM timer), the reset control
//! register at 0xcf9, and the `PowerEvent`s they send the machine.

pub mod dsdt;
pub mod pm_registers;
pub mod power_event;
pub mod reset_control;
pub mod tables;

pub use dsdt::{pci_intx_gsi, LegacyPorts};
pub use pm_registers::{AcpiPmRegisters, PM_BASE, PM_LEN};
pub use power_event::{PowerEvent, PowerEventFn, PowerEventSink};
pub use reset_control::{ResetControl, RESET_PORT};
pub use tables::{acpi_tables, build_acpi, AcpiConfig, AcpiError, AcpiTables};
