//! The PIIX3 IDE controller as a PC has it at 00:01.1: two legacy channels
//! (primary 0x1f0-0x1f7 + 0x3f6 on IRQ 14, secondary 0x170-0x177 + 0x376
//! on IRQ 15), each with a master and a slave that are ATA disks or ATAPI
//! CD-ROMs, and bus-master DMA through BAR4.
//!
//! Files: `controller` (the PCI function), `channel` (ports, selection,
//! reset, PIO phases, interrupts), `drive` (per-device state), `identify`
//! (IDENTIFY pages), `ata` (disk commands), `atapi` (packet commands),
//! `bus_master` (BAR4 registers and PRD-driven DMA), `state` (snapshots). Everything here is
//! synchronous on the vCPU thread that touches a port. This module must
//! not know the machine's interrupt controller or memory map beyond the
//! `IrqLine` and `GuestMemoryMmap` it is handed.

pub mod ata;
pub mod atapi;
pub mod bus_master;
pub mod channel;
pub mod controller;
pub mod drive;
pub mod identify;
mod state;

pub use channel::{ChannelPorts, IdeChannel, PortBlock};
pub use controller::IdeController;
pub use drive::{Drive, DriveKind, IdeDriveConfig};

/// Legacy port bases and interrupts of the two channels: (command block,
/// control block, IRQ).
pub const PRIMARY: (u16, u16, u32) = (0x1f0, 0x3f6, 14);
pub const SECONDARY: (u16, u16, u32) = (0x170, 0x376, 15);

#[cfg(test)]
mod tests;
