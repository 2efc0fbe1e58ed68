//! PCI: configuration mechanism #1 at ports 0xcf8-0xcff, a root bus with a
//! host bridge at 00:00.0, the `PciDevice` trait devices implement (with
//! `ConfigSpace` doing the standard header, BAR sizing and capabilities), and
//! a BAR allocator over the board's PCI windows.

pub mod bar_allocator;
pub mod config_io;
pub mod config_space;
pub mod host_bridge;
pub mod root;

pub use bar_allocator::{BarAllocator, PciWindows};
pub use config_io::PciConfigIo;
pub use config_space::{Bar, BarKind, ConfigSpace, ConfigSpaceError};
pub use host_bridge::PciHostBridge;
pub use root::{PciAddress, PciError, PciRoot};

/// A PCI function as its configuration space sees it.
///
/// Accesses are 1, 2 or 4 bytes at an offset aligned to their size, inside
/// the 256-byte configuration space; the root checks that before calling.
pub trait PciDevice: Send {
    /// Read `data.len()` bytes at `offset`.
    fn read_config(&mut self, offset: u16, data: &mut [u8]);
    /// Write `data` at `offset`.
    fn write_config(&mut self, offset: u16, data: &[u8]);
}
