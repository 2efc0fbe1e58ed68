//! The IDE controller: both legacy channels (a disk on the primary master,
//! a CD-ROM on the secondary master, the slaves absent) and the bus-master
//! registers of BAR4, over a 64 KiB guest memory for PRD tables and DMA
//! buffers. The input is a program of task-file writes, commands, data-port
//! transfers (PIO), ATAPI packets and bus-master starts.
//!
//! Checked: DMA stays in guest memory and the images (the abstractions
//! enforce it; the harness sizes them), and after the program a software
//! reset leaves the disk answering IDENTIFY DEVICE with its 512 bytes.
//!
//! It must not know the PCI bus (the controller's config space is in
//! `pci_bus`).

use std::sync::{Arc, Mutex};

use kite_devices::pci::PciDevice;
use kite_devices::storage::ide::{
    ChannelPorts, Drive, DriveKind, IdeChannel, IdeController, PortBlock,
};
use kite_devices::storage::DiskImage;
use kite_devices::{IoBus, MmioBus, PioDevice};
use vm_memory::{Bytes, GuestAddress};

use crate::input::Input;
use crate::support::{add_pio, bus_access, guest_memory, inb, outb, scratch_image, Line, Window};

const MEM_SIZE: usize = 0x1_0000;
const MAX_OPS: usize = 4096;

/// The two channels and the controller over them.
pub fn ide(data: &[u8]) {
    let io = IoBus::new();
    let mmio = MmioBus::new();
    let mem = Arc::new(guest_memory(MEM_SIZE));
    let disk = DiskImage::open(&scratch_image("ide-disk", 64 * 512), false).ok();
    let cd = DiskImage::open(&scratch_image("ide-cd", 16 * 2048), true).ok();
    let mut channels = Vec::new();
    for (drives, (cmd, ctl)) in [
        (
            [Some(Drive::new(DriveKind::Disk, disk, 0)), None],
            (0x1f0u16, 0x3f6u16),
        ),
        (
            [Some(Drive::new(DriveKind::Cdrom, cd, 2)), None],
            (0x170, 0x376),
        ),
    ] {
        let ch = Arc::new(Mutex::new(IdeChannel::new(
            drives,
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
    let mut ctrl = IdeController::new(channels[0].clone(), channels[1].clone());
    let windows = [
        Window::pio(0x1f0, 8),
        Window::pio(0x1f0, 8),
        Window::pio(0x3f6, 1),
        Window::pio(0x170, 8),
        Window::pio(0x170, 8),
        Window::pio(0x376, 1),
    ];
    let mut inp = Input::new(data);
    for _ in 0..MAX_OPS {
        if inp.is_empty() {
            break;
        }
        match inp.u8() & 15 {
            0 => {
                let at = u64::from(inp.u16());
                let n = usize::from(inp.u8());
                let _ = mem.write_slice(inp.bytes(n), GuestAddress(at));
            }
            1 => {
                // A PRD entry: address, byte count, end-of-table flag.
                let at = u64::from(inp.u16() & !7);
                let (addr, count, eot) = (inp.u32(), inp.u16(), inp.u8() & 0x80);
                let _ = mem.write_obj(addr, GuestAddress(at));
                let _ = mem.write_obj(count, GuestAddress(at + 4));
                let _ = mem.write_obj(u16::from(eot) << 8, GuestAddress(at + 6));
            }
            2 | 3 => {
                // The bus-master registers (BAR4): command, status, PRD address.
                let off = u64::from(inp.u8() & 15);
                let w = inp.width().min(4);
                if inp.bool() {
                    ctrl.bar_write(4, off, &inp.value(w));
                } else {
                    let mut b = vec![0u8; w];
                    ctrl.bar_read(4, off, &mut b);
                }
            }
            4 => {
                // A whole command: drive/head, LBA, count, then the command.
                let base = if inp.bool() { 0x1f0 } else { 0x170 };
                for reg in 1..7u16 {
                    outb(&io, base + reg, inp.u8());
                }
                outb(&io, base + 7, inp.u8());
            }
            5 => {
                // A burst on the data port: a sector's worth of words.
                let base = if inp.bool() { 0x1f0 } else { 0x170 };
                let write = inp.bool();
                for _ in 0..256 {
                    if write {
                        io.pio_write(base, &inp.u16().to_le_bytes());
                    } else {
                        let mut b = [0u8; 2];
                        io.pio_read(base, &mut b);
                    }
                }
            }
            _ => {
                bus_access(&mut inp, &io, &mmio, &windows);
            }
        }
    }
    // Still answers: stop the bus master, reset the primary channel, select
    // the master, IDENTIFY DEVICE gives DRQ and 256 words with the ATA
    // signature word 0 bit 15 clear (an ATA device).
    ctrl.bar_write(4, 0, &[0]);
    outb(&io, 0x3f6, 0x04);
    outb(&io, 0x3f6, 0x00);
    outb(&io, 0x1f6, 0xa0);
    outb(&io, 0x1f7, 0xec);
    let status = inb(&io, 0x1f7);
    assert_eq!(
        status & 0x88,
        0x08,
        "IDENTIFY after hostile input: status {status:#x}"
    );
    let mut words = Vec::new();
    for _ in 0..256 {
        let mut b = [0u8; 2];
        io.pio_read(0x1f0, &mut b);
        words.push(u16::from_le_bytes(b));
    }
    assert_eq!(words[0] & 0x8000, 0, "IDENTIFY data is not an ATA device's");
    assert_eq!(inb(&io, 0x1f7) & 0x08, 0, "DRQ still set after 512 bytes");
}
