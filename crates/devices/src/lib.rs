//! Kite's device model: the PC's legacy devices, PCI and virtio, all in
//! user mode. Devices see port and MMIO accesses through `bus`, and raise
//! interrupts through `IrqLine` and `MsiSender`.
//!
//! This crate must not know which engine runs the guest, nor the hypervisor API:
//! the machine wires the buses to vCPU exits and the interrupt lines to the VM.

pub mod acpi;
pub mod bus;
pub mod chipset;
pub mod display;
pub mod firmware;
pub mod legacy;
pub mod pci;
pub mod ratelimit;
pub mod rtc_cmos;
pub mod state;
pub mod storage;
pub mod virtio;

pub use bus::{BusError, IoBus, IrqLine, MmioBus, MmioDevice, MsiSender, PioDevice};
pub use state::{Snapshot, StateError, StateReader, StateWriter};
