//! PCI harnesses. `pci_bus`: bus 0 as a PC has it (host bridge, the PIIX3
//! IDE function, the VGA, virtio block, net, input and entropy functions)
//! behind configuration mechanism #1 at 0xcf8, with every BAR mapped where
//! the input programs it; the input is a program of port and MMIO accesses,
//! config space included. `virtio_pci`: one virtio-blk function through
//! its transport alone (capabilities, feature negotiation, queue setup,
//! notify, MSI-X table) over a guest memory the input also writes, so
//! queues the driver sets up get processed.
//!
//! Checked: config reads of present functions still give their IDs after
//! the hostile program, the device tree is not torn down by BAR moves, and
//! a reset virtio function reads back status 0.
//!
//! It must not know the machine builder; it wires what the builder would.

use std::sync::{Arc, Mutex};

use kite_devices::display::vga::Vga;
use kite_devices::pci::{BarBuses, PciAddress, PciConfigIo, PciDevice, PciRoot};
use kite_devices::storage::ide::{
    ChannelPorts, Drive, DriveKind, IdeChannel, IdeController, PortBlock,
};
use kite_devices::storage::DiskImage;
use kite_devices::virtio::pci_transport::{Interrupts, BAR_SIZE};
use kite_devices::virtio::{
    BlockConfig, BlockDevice, NetDevice, RngDevice, TabletDevice, VirtioDevice, VirtioPciDevice,
};
use kite_devices::{IoBus, MmioBus, PioDevice};
use vm_memory::{Bytes, GuestAddress};

use crate::input::Input;
use crate::support::{add_pio, bus_access, guest_memory, scratch_image, Line, Msis, Window};

const MEM_SIZE: usize = 0x1_0000;
const VIRTIO_BAR: u64 = 0xe000_0000;
const VGA_LFB: u64 = 0xd000_0000;
const VGA_MMIO: u64 = 0xd100_0000;
const IDE_BM: u16 = 0xc000;
const MAX_OPS: usize = 2048;

/// Discards frames the guest transmits.
struct Drop;
impl kite_devices::virtio::net::NetBackend for Drop {
    fn transmit_frame(&self, _frame: &[u8]) {}
}

fn virtio_function(
    dev: Box<dyn VirtioDevice>,
    mem: &Arc<vm_memory::GuestMemoryMmap>,
    bar: u64,
) -> VirtioPciDevice {
    let irq = Interrupts {
        intx: Arc::new(Line::default()),
        msi: Arc::new(Msis::default()),
    };
    match VirtioPciDevice::new(dev, mem.clone(), irq, bar, 11) {
        Ok(d) => d,
        Err(e) => panic!("harness setup: virtio function: {e}"),
    }
}

fn block_device(name: &str) -> BlockDevice {
    let path = scratch_image(name, 64 * 512);
    match BlockDevice::open(&BlockConfig {
        path,
        readonly: false,
    }) {
        Ok(d) => d,
        Err(e) => panic!("harness setup: block image: {e}"),
    }
}

/// The address register value for a config access.
fn cf8(dev: u8, func: u8, off: u8) -> u32 {
    0x8000_0000 | (u32::from(dev) << 11) | (u32::from(func) << 8) | u32::from(off & 0xfc)
}

fn cfg_read32(io: &IoBus, dev: u8, func: u8, off: u8) -> u32 {
    io.pio_write(0xcf8, &cf8(dev, func, off).to_le_bytes());
    let mut b = [0u8; 4];
    io.pio_read(0xcfc, &mut b);
    u32::from_le_bytes(b)
}

fn cfg_write(io: &IoBus, dev: u8, func: u8, off: u8, data: &[u8]) {
    io.pio_write(0xcf8, &cf8(dev, func, off).to_le_bytes());
    io.pio_write(0xcfc + u16::from(off & 3), data);
}

/// Bus 0 of a PC, as the firmware leaves it, under a port and MMIO program.
pub fn pci_bus(data: &[u8]) {
    let io = Arc::new(IoBus::new());
    let mmio = Arc::new(MmioBus::new());
    let mem = Arc::new(guest_memory(MEM_SIZE));
    let mut root = PciRoot::new();

    // IDE: a disk on the primary master, a CD-ROM on the secondary master.
    let disk = DiskImage::open(&scratch_image("pci-ide", 64 * 512), false).ok();
    let cd = DiskImage::open(&scratch_image("pci-cd", 16 * 2048), true).ok();
    let mut channels = Vec::new();
    for (drive, (cmd, ctl)) in [
        (Drive::new(DriveKind::Disk, disk, 0), (0x1f0u16, 0x3f6u16)),
        (Drive::new(DriveKind::Cdrom, cd, 2), (0x170, 0x376)),
    ] {
        let ch = Arc::new(Mutex::new(IdeChannel::new(
            [Some(drive), None],
            Arc::new(Line::default()),
            mem.clone(),
        )));
        for (base, len, block) in [(cmd, 8, PortBlock::Command), (ctl, 1, PortBlock::Control)] {
            let ports: Arc<Mutex<dyn PioDevice>> = Arc::new(Mutex::new(ChannelPorts {
                channel: ch.clone(),
                block,
            }));
            add_pio(&io, base, len, ports);
        }
        channels.push(ch);
    }
    let ide = IdeController::new(channels[0].clone(), channels[1].clone());
    let ide_addr = PciAddress {
        device: 1,
        function: 1,
    };
    let _ = root.add_device_at(ide_addr, Arc::new(Mutex::new(ide)));

    let vga = match Vga::new(4 << 20) {
        Ok(v) => v,
        Err(e) => panic!("harness setup: VGA: {e}"),
    };
    if let Ok(p) = vga.pci(VGA_LFB, VGA_MMIO, Some(vec![0x55, 0xaa, 0x10])) {
        let _ = root.add_device_at(
            PciAddress {
                device: 2,
                function: 0,
            },
            Arc::new(Mutex::new(p)),
        );
    }
    let (tablet, _handle) = TabletDevice::new();
    let functions: Vec<Box<dyn VirtioDevice>> = vec![
        Box::new(block_device("pci-blk")),
        Box::new(NetDevice::new(Arc::new(Drop), [2, 0, 0, 0, 0, 1])),
        Box::new(tablet),
        Box::new(RngDevice::new()),
    ];
    for (i, f) in functions.into_iter().enumerate() {
        let bar = VIRTIO_BAR + i as u64 * BAR_SIZE;
        let _ = root.add_device_at(
            PciAddress {
                device: 3 + i as u8,
                function: 0,
            },
            Arc::new(Mutex::new(virtio_function(f, &mem, bar))),
        );
    }
    root.attach_buses(BarBuses {
        io: Arc::downgrade(&io),
        mmio: Arc::downgrade(&mmio),
        ram: None,
    });
    let root = Arc::new(Mutex::new(root));
    add_pio(
        &io,
        0xcf8,
        8,
        Arc::new(Mutex::new(PciConfigIo::new(root.clone(), None))),
    );

    // What firmware does: IDE BAR4 and I/O decode, memory decode elsewhere.
    cfg_write(&io, 1, 1, 0x20, &(u32::from(IDE_BM) | 1).to_le_bytes());
    cfg_write(&io, 1, 1, 0x04, &5u16.to_le_bytes());
    for dev in 2..7 {
        cfg_write(&io, dev, 0, 0x04, &6u16.to_le_bytes());
    }

    let mut windows = vec![
        Window::pio(0xcf8, 8),
        Window::pio(0xcf8, 8),
        Window::pio(0xcf8, 8),
        Window::pio(IDE_BM, 16),
        Window::pio(0x1f0, 8),
        Window::pio(0x170, 8),
        Window::mmio(VGA_LFB, 0x1_0000),
        Window::mmio(VGA_MMIO, 0x1000),
    ];
    for i in 0..4 {
        windows.push(Window::mmio(VIRTIO_BAR + i * BAR_SIZE, BAR_SIZE));
    }
    let mut inp = Input::new(data);
    for _ in 0..MAX_OPS {
        if inp.is_empty() {
            break;
        }
        match inp.u8() & 15 {
            0 => {
                // Guest memory: rings, PRD tables, buffers.
                let at = u64::from(inp.u16());
                let n = usize::from(inp.u8());
                let _ = mem.write_slice(inp.bytes(n), GuestAddress(at));
            }
            1 => {
                // A whole dword to a config register of a present function.
                let dev = [0u8, 1, 2, 3, 4, 5, 6][usize::from(inp.u8()) % 7];
                let func = if dev == 1 { 1 } else { 0 };
                let off = inp.u8();
                let v = inp.u32();
                cfg_write(&io, dev, func, off, &v.to_le_bytes());
            }
            _ => {
                bus_access(&mut inp, &io, &mmio, &windows);
            }
        }
    }
    // Still answers: every function's IDs read back through 0xcf8/0xcfc.
    assert_eq!(
        cfg_read32(&io, 0, 0, 0) & 0xffff,
        0x8086,
        "host bridge gone"
    );
    assert_eq!(cfg_read32(&io, 1, 1, 0), 0x7010_8086, "IDE function gone");
    for dev in 3..7u8 {
        assert_eq!(
            cfg_read32(&io, dev, 0, 0) & 0xffff,
            0x1af4,
            "virtio function {dev} gone"
        );
    }
    assert_eq!(
        cfg_read32(&io, 9, 0, 0),
        0xffff_ffff,
        "an absent slot answered"
    );
}

/// One virtio-blk function through the PCI transport, accessed directly.
pub fn virtio_pci(data: &[u8]) {
    let mem = Arc::new(guest_memory(MEM_SIZE));
    let mut dev = virtio_function(Box::new(block_device("vpci")), &mem, VIRTIO_BAR);
    // Memory decode on, as firmware leaves it.
    dev.write_config(4, &6u16.to_le_bytes());
    let mut inp = Input::new(data);
    for _ in 0..MAX_OPS {
        if inp.is_empty() {
            break;
        }
        let op = inp.u8();
        match op & 7 {
            0 => {
                let at = u64::from(inp.u16());
                let n = usize::from(inp.u8());
                let _ = mem.write_slice(inp.bytes(n), GuestAddress(at));
            }
            1 => {
                let off = u16::from(inp.u8());
                let w = inp.width().min(4);
                if op & 8 != 0 {
                    let v = inp.value(w);
                    if usize::from(off) % w == 0 {
                        dev.write_config(off, &v);
                    }
                } else if usize::from(off) % w == 0 {
                    let mut b = vec![0u8; w];
                    dev.read_config(off, &mut b);
                }
            }
            _ => {
                // BAR 0: common config (0x0), ISR (0x1000), device config
                // (0x2000), notify (0x3000), MSI-X (0x4000, 0x6000).
                let region = u64::from(inp.u8() % 8) * 0x1000;
                let off = region + u64::from(inp.u8());
                let w = inp.width();
                if op & 8 != 0 {
                    let v = inp.value(w);
                    dev.bar_write(0, off, &v);
                } else {
                    let mut b = vec![0u8; w];
                    dev.bar_read(0, off, &mut b);
                }
            }
        }
    }
    // Still answers: with memory decode back on, a reset (status 0) reads
    // back 0, and the device identifies itself in config space.
    dev.write_config(4, &6u16.to_le_bytes());
    dev.bar_write(0, 0x14, &[0]);
    let mut s = [0xffu8];
    dev.bar_read(0, 0x14, &mut s);
    assert_eq!(s[0], 0, "virtio status not 0 after reset");
    let mut id = [0u8; 2];
    dev.read_config(0, &mut id);
    assert_eq!(u16::from_le_bytes(id), 0x1af4, "virtio vendor id lost");
}
