//! fw_cfg: the selector and data ports (0x510, 0x511) and the DMA register
//! (0x514), with the items a PC build has (signature, id, files, the file
//! directory), over a 64 KiB guest memory the DMA descriptors and buffers
//! live in. The input selects items, reads them a byte at a time, and
//! writes DMA descriptors (control, length, address) of its choosing.
//!
//! Checked: DMA never touches memory outside the guest (the memory
//! abstraction), a descriptor's length is bounded by the device, and after
//! the program the signature item still reads "QEMU".
//!
//! It must not know what the files hold (the firmware crate's business).

use std::sync::{Arc, Mutex};

use kite_devices::firmware::fw_cfg::{
    FwCfg, FwCfgDma, FW_CFG_DMA_PORT, FW_CFG_DMA_PORT_LEN, FW_CFG_PORT, FW_CFG_PORT_LEN,
};
use kite_devices::{IoBus, MmioBus, PioDevice};
use vm_memory::{Bytes, GuestAddress};

use crate::input::Input;
use crate::support::{add_pio, bus_access, guest_memory, inb, Window};

const MEM_SIZE: usize = 0x1_0000;
const MAX_OPS: usize = 4096;

pub fn fw_cfg(data: &[u8]) {
    let io = IoBus::new();
    let mmio = MmioBus::new();
    let mem = Arc::new(guest_memory(MEM_SIZE));
    let mut f = FwCfg::new(Some(mem.clone()));
    for (name, len) in [
        ("etc/table-loader", 300),
        ("etc/acpi/tables", 5000),
        ("opt/x", 1),
    ] {
        if let Err(e) = f.add_file(name, vec![0x5a; len]) {
            panic!("harness setup: fw_cfg file: {e}");
        }
    }
    let f = Arc::new(Mutex::new(f));
    let ports: Arc<Mutex<dyn PioDevice>> = f.clone();
    add_pio(&io, FW_CFG_PORT, FW_CFG_PORT_LEN, ports);
    add_pio(
        &io,
        FW_CFG_DMA_PORT,
        FW_CFG_DMA_PORT_LEN,
        Arc::new(Mutex::new(FwCfgDma(f.clone()))),
    );
    let windows = [
        Window::pio(FW_CFG_PORT, FW_CFG_PORT_LEN),
        Window::pio(FW_CFG_DMA_PORT, FW_CFG_DMA_PORT_LEN),
    ];
    let mut inp = Input::new(data);
    for _ in 0..MAX_OPS {
        if inp.is_empty() {
            break;
        }
        match inp.u8() & 7 {
            0 => {
                // Select an item near the known ones (or anything).
                let sel = match inp.u8() & 3 {
                    0 => inp.u16(),
                    1 => 0x8000 | u16::from(inp.u8() & 7),
                    _ => u16::from(inp.u8() & 0x3f),
                };
                io.pio_write(FW_CFG_PORT, &sel.to_le_bytes());
            }
            1 => {
                let n = usize::from(inp.u8());
                for _ in 0..n {
                    inb(&io, FW_CFG_PORT + 1);
                }
            }
            2 | 3 => {
                // A DMA descriptor (big endian control, length, address),
                // then its address to the register.
                let at = u64::from(inp.u16() & 0xfff8);
                let control = inp.u32() & 0xffff_001f;
                let len = match inp.u8() & 3 {
                    0 => inp.u32(),
                    _ => u32::from(inp.u16()),
                };
                let addr = match inp.u8() & 3 {
                    0 => inp.u64(),
                    _ => u64::from(inp.u16()),
                };
                let _ = mem.write_slice(&control.to_be_bytes(), GuestAddress(at));
                let _ = mem.write_slice(&len.to_be_bytes(), GuestAddress(at + 4));
                let _ = mem.write_slice(&addr.to_be_bytes(), GuestAddress(at + 8));
                // The address register: high half (0 mostly), then the low
                // half, which starts the transfer.
                let high: u32 = if inp.u8() & 15 == 0 { inp.u32() } else { 0 };
                io.pio_write(FW_CFG_DMA_PORT, &high.to_be_bytes());
                io.pio_write(FW_CFG_DMA_PORT + 4, &(at as u32).to_be_bytes());
            }
            _ => {
                bus_access(&mut inp, &io, &mmio, &windows);
            }
        }
    }
    io.pio_write(FW_CFG_PORT, &0u16.to_le_bytes());
    let sig: Vec<u8> = (0..4).map(|_| inb(&io, FW_CFG_PORT + 1)).collect();
    assert_eq!(sig, b"QEMU", "fw_cfg signature lost after hostile input");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The harness's DMA operation reaches the device: a read of the
    /// signature item by DMA lands in guest memory.
    #[test]
    fn the_dma_operation_transfers_into_guest_memory() {
        let mem = Arc::new(guest_memory(MEM_SIZE));
        let f = Arc::new(Mutex::new(FwCfg::new(Some(mem.clone()))));
        let io = IoBus::new();
        let ports: Arc<Mutex<dyn PioDevice>> = f.clone();
        add_pio(&io, FW_CFG_PORT, FW_CFG_PORT_LEN, ports);
        add_pio(
            &io,
            FW_CFG_DMA_PORT,
            FW_CFG_DMA_PORT_LEN,
            Arc::new(Mutex::new(FwCfgDma(f))),
        );
        // control: item 0 in bits 31-16, SELECT, READ; 4 bytes to 0x2000.
        let at = 0x1000u64;
        let _ = mem.write_slice(&(0x8u32 | 0x2).to_be_bytes(), GuestAddress(at));
        let _ = mem.write_slice(&4u32.to_be_bytes(), GuestAddress(at + 4));
        let _ = mem.write_slice(&0x2000u64.to_be_bytes(), GuestAddress(at + 8));
        io.pio_write(FW_CFG_DMA_PORT, &0u32.to_be_bytes());
        io.pio_write(FW_CFG_DMA_PORT + 4, &(at as u32).to_be_bytes());
        let mut sig = [0u8; 4];
        mem.read_slice(&mut sig, GuestAddress(0x2000)).unwrap();
        assert_eq!(&sig, b"QEMU");
    }
}
