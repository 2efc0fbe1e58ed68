//! Hands out BAR addresses from the board's PCI windows, each aligned to its
//! size, as firmware would before the kernel starts.

use super::config_space::{Bar, BarKind};
use thiserror::Error;

/// The address windows the host bridge forwards to PCI; the DSDT's root bridge
/// `_CRS` describes the same windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PciWindows {
    /// 32-bit memory window: (base, length).
    pub mmio32: (u64, u64),
    /// 64-bit memory window above RAM, if any: (base, length).
    pub mmio64: Option<(u64, u64)>,
    /// Port I/O window: (base, length).
    pub io: (u64, u64),
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum BarAllocError {
    #[error("no room for a {size:#x}-byte {kind} BAR in the PCI window")]
    Exhausted { size: u64, kind: &'static str },
}

#[derive(Debug, Clone, Copy)]
struct Window {
    next: u64,
    end: u64,
}

impl Window {
    fn new((base, len): (u64, u64)) -> Window {
        Window {
            next: base,
            end: base.saturating_add(len),
        }
    }

    fn take(&mut self, size: u64) -> Option<u64> {
        let mask = size.checked_sub(1)?;
        let start = self.next.checked_add(mask)? & !mask;
        let end = start.checked_add(size)?;
        if end > self.end {
            return None;
        }
        self.next = end;
        Some(start)
    }
}

/// A bump allocator over the three windows.
#[derive(Debug, Clone)]
pub struct BarAllocator {
    mmio32: Window,
    mmio64: Option<Window>,
    io: Window,
}

impl BarAllocator {
    pub fn new(windows: &PciWindows) -> BarAllocator {
        BarAllocator {
            mmio32: Window::new(windows.mmio32),
            mmio64: windows.mmio64.map(Window::new),
            io: Window::new(windows.io),
        }
    }

    /// An address for `bar`, aligned to its size. 64-bit BARs go above 4 GiB
    /// when there is a 64-bit window, else below.
    pub fn allocate(&mut self, bar: &Bar) -> Result<u64, BarAllocError> {
        let (got, kind) = match bar.kind {
            BarKind::Io => (self.io.take(bar.size), "I/O"),
            BarKind::Memory32 { .. } => (self.mmio32.take(bar.size), "32-bit memory"),
            BarKind::Memory64 { .. } => {
                let high = self.mmio64.as_mut().and_then(|w| w.take(bar.size));
                (high.or_else(|| self.mmio32.take(bar.size)), "64-bit memory")
            }
        };
        got.ok_or(BarAllocError::Exhausted {
            size: bar.size,
            kind,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_and_bounded() {
        let w = PciWindows {
            mmio32: (0xc000_0000, 0x10_0000),
            mmio64: Some((0x80_0000_0000, 0x1_0000_0000)),
            io: (0xc000, 0x1000),
        };
        let mut a = BarAllocator::new(&w);
        let m = |size| Bar {
            kind: BarKind::Memory32 {
                prefetchable: false,
            },
            size,
        };
        assert_eq!(a.allocate(&m(0x100)), Ok(0xc000_0000));
        assert_eq!(a.allocate(&m(0x1000)), Ok(0xc000_1000));
        assert_eq!(
            a.allocate(&Bar {
                kind: BarKind::Io,
                size: 0x40
            }),
            Ok(0xc000)
        );
        assert_eq!(
            a.allocate(&Bar {
                kind: BarKind::Io,
                size: 0x20
            }),
            Ok(0xc040)
        );
        let wide = Bar {
            kind: BarKind::Memory64 { prefetchable: true },
            size: 0x4000,
        };
        assert_eq!(a.allocate(&wide), Ok(0x80_0000_0000));
        assert!(a.allocate(&m(0x10_0000)).is_err());
        assert_eq!(a.allocate(&m(0x8000)), Ok(0xc000_8000));
    }
}
