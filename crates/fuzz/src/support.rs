//! What every harness needs around a device: a small guest memory, interrupt
//! lines and MSI senders that count what the device raised, an output sink,
//! and scratch disk images (one file per harness and process, emptied before
//! each input so runs do not depend on each other).
//!
//! It must not know which device a harness drives.

use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use kite_devices::{IoBus, IrqLine, MmioBus, MmioDevice, MsiSender, PioDevice};
use vm_memory::{GuestAddress, GuestMemoryMmap};

use crate::input::Input;

/// Guest memory of `size` bytes at guest-physical 0. Sizes are the
/// harness's own constants, never the input's.
pub fn guest_memory(size: usize) -> GuestMemoryMmap {
    match GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), size)]) {
        Ok(m) => m,
        Err(e) => panic!("harness setup: guest memory of {size:#x} bytes: {e}"),
    }
}

/// An interrupt line that counts its edges and remembers its level.
#[derive(Default)]
pub struct Line {
    pub raised: AtomicU64,
    pub level: Mutex<bool>,
}

impl IrqLine for Line {
    fn set_level(&self, level: bool) {
        let mut l = self.level.lock().unwrap_or_else(|e| e.into_inner());
        if level && !*l {
            self.raised.fetch_add(1, Ordering::Relaxed);
        }
        *l = level;
    }
}

/// An MSI sender that counts messages.
#[derive(Default)]
pub struct Msis {
    pub sent: AtomicU64,
}

impl MsiSender for Msis {
    fn send_msi(&self, _address: u64, _data: u32) {
        self.sent.fetch_add(1, Ordering::Relaxed);
    }
}

/// A writer that counts bytes and keeps none (a serial console, a socket).
#[derive(Clone, Default)]
pub struct Sink(pub Arc<AtomicU64>);

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.fetch_add(buf.len() as u64, Ordering::Relaxed);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A scratch image file `<tmp>/kite-fuzz-<pid>-<name>.img` of `len` bytes,
/// zeroed (truncated and re-extended) on every call. The file is removed
/// when the process exits normally (best effort: a crash leaves it in /tmp).
pub fn scratch_image(name: &str, len: u64) -> PathBuf {
    let path = std::env::temp_dir().join(format!("kite-fuzz-{}-{name}.img", std::process::id()));
    let f = match File::create(&path) {
        Ok(f) => f,
        Err(e) => panic!("harness setup: {}: {e}", path.display()),
    };
    if let Err(e) = f.set_len(len) {
        panic!("harness setup: sizing {}: {e}", path.display());
    }
    path
}

/// A range of ports or MMIO addresses a harness aims at.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub mmio: bool,
    pub base: u64,
    pub len: u64,
}

impl Window {
    pub const fn pio(base: u16, len: u64) -> Window {
        Window {
            mmio: false,
            base: base as u64,
            len,
        }
    }
    pub const fn mmio(base: u64, len: u64) -> Window {
        Window {
            mmio: true,
            base,
            len,
        }
    }
}

/// One port or MMIO access of the input's choosing, at one of `windows`
/// (an offset mostly inside it, sometimes just past its end), 1, 2, 4 or 8
/// bytes wide (8 only on MMIO). Returns the bytes a read gave, if a read.
pub fn bus_access(
    inp: &mut Input,
    io: &IoBus,
    mmio: &MmioBus,
    windows: &[Window],
) -> Option<Vec<u8>> {
    if windows.is_empty() {
        return None;
    }
    let kind = inp.u8();
    let w = windows[usize::from(kind >> 1) % windows.len()];
    let raw = u64::from(inp.u16());
    let off = if raw & 0x8000 != 0 {
        raw & 0x7fff
    } else {
        raw % w.len.max(1)
    };
    let mut width = inp.width();
    if !w.mmio && width == 8 {
        width = 4;
    }
    let addr = w.base.wrapping_add(off);
    if kind & 1 == 0 {
        let mut data = vec![0u8; width];
        if w.mmio {
            mmio.mmio_read(addr, &mut data);
        } else {
            io.pio_read(addr as u16, &mut data);
        }
        Some(data)
    } else {
        let data = inp.value(width);
        if w.mmio {
            mmio.mmio_write(addr, &data);
        } else {
            io.pio_write(addr as u16, &data);
        }
        None
    }
}

/// Put `dev` on the port bus at `base` (harness setup: the ranges are ours).
pub fn add_pio(io: &IoBus, base: u16, len: u64, dev: Arc<Mutex<dyn PioDevice>>) {
    if let Err(e) = io.insert(u64::from(base), len, dev) {
        panic!("harness setup: port {base:#x}: {e}");
    }
}

/// Put `dev` on the MMIO bus at `base`.
pub fn add_mmio(mmio: &MmioBus, base: u64, len: u64, dev: Arc<Mutex<dyn MmioDevice>>) {
    if let Err(e) = mmio.insert(base, len, dev) {
        panic!("harness setup: MMIO {base:#x}: {e}");
    }
}

/// A byte read from port `port`.
pub fn inb(io: &IoBus, port: u16) -> u8 {
    let mut b = [0u8; 1];
    io.pio_read(port, &mut b);
    b[0]
}

pub fn outb(io: &IoBus, port: u16, v: u8) {
    io.pio_write(port, &[v]);
}
