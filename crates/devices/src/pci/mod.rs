//! PCI: configuration mechanism #1 at ports 0xcf8-0xcff, a root bus with a
//! host bridge at 00:00.0, the `PciDevice` trait devices implement (with
//! `ConfigSpace` doing the standard header, BAR sizing and capabilities), and
//! a BAR allocator over the board's PCI windows.

pub mod bar_allocator;
pub mod bar_ram;
pub mod config_io;
pub mod config_space;
pub mod root;

use crate::state::Snapshot;

pub use bar_allocator::{BarAllocator, PciWindows};
pub use bar_ram::{BarRam, DirtyPages, RamMapper};
pub use config_io::PciConfigIo;
pub use config_space::{Bar, BarKind, ConfigSpace, ConfigSpaceError};
pub use root::{BarBuses, PciAddress, PciError, PciRoot};

/// The index `bar_regions` and `bar_read`/`bar_write` use for the
/// expansion ROM (configuration offset 0x30), after BARs 0-5.
pub const ROM_BAR: u8 = 6;

/// One BAR as it decodes now: declared, enabled by the command register,
/// and at an address the root can map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BarRegion {
    /// 0-5, or `ROM_BAR`.
    pub index: u8,
    pub kind: BarKind,
    pub address: u64,
    pub size: u64,
}

/// A PCI function as its configuration space sees it.
///
/// Accesses are 1, 2 or 4 bytes at an offset aligned to their size, inside
/// the 256-byte configuration space; the root checks that before calling.
///
/// Its `Snapshot` half saves the configuration space and whatever the
/// function keeps beyond it; the root re-maps the BARs after a restore.
pub trait PciDevice: Snapshot + Send {
    /// Read `data.len()` bytes at `offset`.
    fn read_config(&mut self, offset: u16, data: &mut [u8]);
    /// Write `data` at `offset`.
    fn write_config(&mut self, offset: u16, data: &[u8]);

    /// The BARs that decode now (usually `ConfigSpace::bar_regions`). The
    /// root asks after every configuration write and moves the device's
    /// ranges on the port and MMIO buses to match.
    fn bar_regions(&self) -> Vec<BarRegion> {
        Vec::new()
    }

    /// A read of `data.len()` bytes at `offset` inside BAR `bar`.
    fn bar_read(&mut self, bar: u8, offset: u64, data: &mut [u8]) {
        let _ = (bar, offset);
        data.fill(0xff);
    }

    /// A write of `data` at `offset` inside BAR `bar`.
    fn bar_write(&mut self, bar: u8, offset: u64, data: &[u8]) {
        let _ = (bar, offset, data);
    }

    /// Host memory behind memory BAR `bar`, which the root maps into the
    /// guest as RAM (a framebuffer) instead of trapping each access.
    fn bar_ram(&self, bar: u8) -> Option<std::sync::Arc<BarRam>> {
        let _ = bar;
        None
    }
}
