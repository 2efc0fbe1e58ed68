//! QEMU's firmware configuration interface (docs/specs/fw_cfg.rst in QEMU):
//! a 16-bit selector at port 0x510, a byte-wide data port at 0x511 that
//! reads the selected item from an offset that advances, and the DMA
//! interface at 0x514 (a big-endian guest-physical address of a
//! `{be32 control, be32 length, be64 address}` descriptor; writing the low
//! half starts it). Items have fixed selectors (signature, id, CPU count, ...)
//! or are named files listed in the directory at selector 0x19.
//!
//! Everything is read-only to the guest: writes through the data port are
//! ignored, DMA writes and unknown selectors end with the error bit, reads
//! past an item's end give zeros (as QEMU does). This module knows nothing
//! about what the items mean; the machine fills them.

use crate::state::{Snapshot, StateError, StateReader, StateWriter};
use std::collections::BTreeMap;
use std::sync::Arc;

use thiserror::Error;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use crate::bus::PioDevice;

/// The selector and data ports, and the DMA address register.
pub const FW_CFG_PORT: u16 = 0x510;
pub const FW_CFG_PORT_LEN: u64 = 2;
pub const FW_CFG_DMA_PORT: u16 = 0x514;
pub const FW_CFG_DMA_PORT_LEN: u64 = 8;

/// What reading the DMA register gives: "QEMU CFG", big-endian.
const DMA_SIGNATURE: u64 = 0x5145_4d55_2043_4647;

/// Fixed selectors (the generic ones and x86's, which set bit 15).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u16)]
pub enum FwCfgItem {
    Signature = 0x0000,
    Id = 0x0001,
    Uuid = 0x0002,
    RamSize = 0x0003,
    NoGraphic = 0x0004,
    NbCpus = 0x0005,
    MachineId = 0x0006,
    KernelAddr = 0x0007,
    KernelSize = 0x0008,
    KernelCmdline = 0x0009,
    InitrdAddr = 0x000a,
    InitrdSize = 0x000b,
    BootDevice = 0x000c,
    Numa = 0x000d,
    BootMenu = 0x000e,
    MaxCpus = 0x000f,
    KernelEntry = 0x0010,
    KernelData = 0x0011,
    InitrdData = 0x0012,
    CmdlineAddr = 0x0013,
    CmdlineSize = 0x0014,
    CmdlineData = 0x0015,
    SetupAddr = 0x0016,
    SetupSize = 0x0017,
    SetupData = 0x0018,
    FileDir = 0x0019,
    X86AcpiTables = 0x8000,
    X86SmbiosEntries = 0x8001,
    X86Irq0Override = 0x8002,
    X86E820Table = 0x8003,
    X86Hpet = 0x8004,
}

/// The first selector given to a named file.
const FILE_FIRST: u16 = 0x0020;
/// How many files the directory holds at most (QEMU's default limit).
pub const MAX_FILES: usize = 0x1000;
/// A file name's room in a directory entry, with its terminating NUL.
pub const FILE_NAME_LEN: usize = 56;
/// The "arch-specific" bit; bit 14 asked to write (legacy, ignored).
const SELECT_MASK: u16 = 0xbfff;

/// DMA control bits.
const DMA_ERROR: u32 = 1 << 0;
const DMA_READ: u32 = 1 << 1;
const DMA_SKIP: u32 = 1 << 2;
const DMA_SELECT: u32 = 1 << 3;
const DMA_WRITE: u32 = 1 << 4;
/// A single DMA transfer moves at most this much (bounded host work per
/// guest request; SeaBIOS's largest item is the ACPI tables).
const DMA_MAX_LEN: u32 = 64 << 20;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum FwCfgError {
    #[error("fw_cfg file name {0:?} is empty or longer than 55 bytes")]
    BadName(String),
    #[error("fw_cfg file {0:?} is added twice")]
    Duplicate(String),
    #[error("fw_cfg holds at most {MAX_FILES} files")]
    TooManyFiles,
}

impl Snapshot for FwCfg {
    /// The guest's selection and position (the items come from the machine's
    /// configuration, which a restore rebuilds the same).
    fn save_state(&self, w: &mut StateWriter) {
        w.u16(self.selected);
        w.u64(self.offset as u64);
        w.u32(self.dma_high);
    }

    fn restore_state(&mut self, r: &mut StateReader<'_>) -> Result<(), StateError> {
        let selected = r.u16("fw_cfg selector")?;
        let offset = r.u64("fw_cfg offset")?;
        let dma_high = r.u32("fw_cfg DMA address")?;
        self.select(selected);
        let len = self.current().map_or(0, |d| d.len()) as u64;
        if offset > len {
            return Err(StateError::Invalid(format!(
                "fw_cfg: offset {offset} past item {selected:#x}'s {len} bytes"
            )));
        }
        self.offset = offset as usize;
        self.dma_high = dma_high;
        Ok(())
    }
}

/// The fw_cfg device: its items, and the guest's current selection.
pub struct FwCfg {
    mem: Option<Arc<GuestMemoryMmap>>,
    items: BTreeMap<u16, Arc<[u8]>>,
    files: BTreeMap<String, Arc<[u8]>>,
    selected: u16,
    offset: usize,
    dma_high: u32,
    /// The directory and file selectors, rebuilt when a file is added.
    dir_built: bool,
}

impl FwCfg {
    /// A device with the signature and id items; `mem` enables DMA.
    pub fn new(mem: Option<Arc<GuestMemoryMmap>>) -> FwCfg {
        let mut f = FwCfg {
            mem,
            items: BTreeMap::new(),
            files: BTreeMap::new(),
            selected: 0,
            offset: 0,
            dma_high: 0,
            dir_built: false,
        };
        f.set(FwCfgItem::Signature, b"QEMU".to_vec());
        let id: u32 = if f.mem.is_some() { 0b11 } else { 0b01 };
        f.set(FwCfgItem::Id, id.to_le_bytes().to_vec());
        f
    }

    /// Set a fixed item.
    pub fn set(&mut self, item: FwCfgItem, data: Vec<u8>) {
        self.items.insert(item as u16, data.into());
    }

    /// Add a named file (selectors follow the files' sorted names, as QEMU's).
    pub fn add_file(&mut self, name: &str, data: Vec<u8>) -> Result<(), FwCfgError> {
        if name.is_empty() || name.len() >= FILE_NAME_LEN || name.contains('\0') {
            return Err(FwCfgError::BadName(name.to_string()));
        }
        if self.files.contains_key(name) {
            return Err(FwCfgError::Duplicate(name.to_string()));
        }
        if self.files.len() >= MAX_FILES {
            return Err(FwCfgError::TooManyFiles);
        }
        self.files.insert(name.to_string(), data.into());
        self.dir_built = false;
        Ok(())
    }

    /// The bytes of a file, for tests and for the machine's own checks.
    pub fn file(&self, name: &str) -> Option<&[u8]> {
        self.files.get(name).map(|d| &d[..])
    }

    fn build_dir(&mut self) {
        if self.dir_built {
            return;
        }
        self.items.retain(|&k, _| k < FILE_FIRST || k & 0x8000 != 0);
        let mut dir = Vec::with_capacity(4 + 64 * self.files.len());
        dir.extend_from_slice(&(self.files.len() as u32).to_be_bytes());
        for (i, (name, data)) in self.files.iter().enumerate() {
            let select = FILE_FIRST + i as u16;
            dir.extend_from_slice(&(data.len() as u32).to_be_bytes());
            dir.extend_from_slice(&select.to_be_bytes());
            dir.extend_from_slice(&[0, 0]);
            let mut n = [0u8; FILE_NAME_LEN];
            n[..name.len()].copy_from_slice(name.as_bytes());
            dir.extend_from_slice(&n);
            self.items.insert(select, data.clone());
        }
        self.items.insert(FwCfgItem::FileDir as u16, dir.into());
        self.dir_built = true;
    }

    fn select(&mut self, selector: u16) {
        self.build_dir();
        self.selected = selector & SELECT_MASK;
        self.offset = 0;
    }

    fn current(&self) -> Option<&Arc<[u8]>> {
        self.items.get(&self.selected)
    }

    /// Read from the selected item at the current offset; past the end (or
    /// with no item) the bytes are zero.
    fn read_data(&mut self, out: &mut [u8]) {
        let item = self.current().cloned();
        for b in out.iter_mut() {
            *b = item
                .as_ref()
                .and_then(|d| d.get(self.offset).copied())
                .unwrap_or(0);
            if item.as_ref().is_some_and(|d| self.offset < d.len()) {
                self.offset += 1;
            }
        }
    }

    /// Run the DMA descriptor at `addr`; its control word ends as 0 or ERROR.
    fn dma(&mut self, addr: u64) {
        let Some(mem) = self.mem.clone() else {
            return;
        };
        let mut desc = [0u8; 16];
        if mem.read_slice(&mut desc, GuestAddress(addr)).is_err() {
            crate::guest_warn!("fw_cfg: DMA descriptor at {addr:#x} is outside guest memory");
            return;
        }
        let control = u32::from_be_bytes([desc[0], desc[1], desc[2], desc[3]]);
        let length = u32::from_be_bytes([desc[4], desc[5], desc[6], desc[7]]);
        let target = u64::from_be_bytes([
            desc[8], desc[9], desc[10], desc[11], desc[12], desc[13], desc[14], desc[15],
        ]);
        if control & DMA_SELECT != 0 {
            self.select((control >> 16) as u16);
        }
        let mut result = 0;
        if control & DMA_WRITE != 0 || length > DMA_MAX_LEN {
            result = DMA_ERROR;
        } else if control & DMA_READ != 0 {
            let mut buf = vec![0u8; length as usize];
            self.read_data(&mut buf);
            if mem.write_slice(&buf, GuestAddress(target)).is_err() {
                result = DMA_ERROR;
            }
        } else if control & DMA_SKIP != 0 {
            let len = self.current().map_or(0, |d| d.len());
            self.offset = (self.offset + length as usize).min(len);
        }
        // The guest polls the control word until it is 0 (or has ERROR).
        let _ = mem.write_slice(&result.to_be_bytes(), GuestAddress(addr));
    }
}

impl PioDevice for FwCfg {
    /// Offsets are relative to `FW_CFG_PORT` for the selector/data pair and
    /// to `FW_CFG_DMA_PORT` for the DMA register: the machine inserts the
    /// device twice, and tells the two apart by `data.len()` and offset.
    fn read(&mut self, offset: u16, data: &mut [u8]) {
        match offset {
            1 => self.read_data(data),
            // Reading the selector gives nothing useful.
            0 => data.fill(0),
            _ => data.fill(0xff),
        }
    }

    fn write(&mut self, offset: u16, data: &[u8]) {
        if offset == 0 && data.len() == 2 {
            self.select(u16::from_le_bytes([data[0], data[1]]));
        }
        // Data port writes are ignored (QEMU 2.4 and later).
    }
}

/// The DMA address register as its own port range (0x514-0x51b).
pub struct FwCfgDma(pub Arc<std::sync::Mutex<FwCfg>>);

impl PioDevice for FwCfgDma {
    fn read(&mut self, offset: u16, data: &mut [u8]) {
        let sig = DMA_SIGNATURE.to_be_bytes();
        for (i, b) in data.iter_mut().enumerate() {
            *b = sig.get(usize::from(offset) + i).copied().unwrap_or(0xff);
        }
    }

    fn write(&mut self, offset: u16, data: &[u8]) {
        let mut f = crate::bus::lock(&self.0);
        match (offset, data.len()) {
            (0, 4) => f.dma_high = u32::from_be_bytes([data[0], data[1], data[2], data[3]]),
            (4, 4) => {
                let low = u32::from_be_bytes([data[0], data[1], data[2], data[3]]);
                let addr = (u64::from(f.dma_high) << 32) | u64::from(low);
                f.dma_high = 0;
                f.dma(addr);
            }
            (0, 8) => {
                let mut b = [0u8; 8];
                b.copy_from_slice(data);
                f.dma(u64::from_be_bytes(b));
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn select(f: &mut FwCfg, s: u16) {
        f.write(0, &s.to_le_bytes());
    }

    fn read_n(f: &mut FwCfg, n: usize) -> Vec<u8> {
        (0..n)
            .map(|_| {
                let mut b = [0u8];
                f.read(1, &mut b);
                b[0]
            })
            .collect()
    }

    #[test]
    fn state_round_trip_keeps_the_selection_and_offset() {
        let mut a = FwCfg::new(None);
        select(&mut a, FwCfgItem::Signature as u16);
        assert_eq!(read_n(&mut a, 2), b"QE");
        let saved = crate::state::save_to_vec(&a);
        let mut b = FwCfg::new(None);
        crate::state::restore_from(&mut b, &saved).unwrap();
        assert_eq!(read_n(&mut b, 2), b"MU");
        let mut bad = saved.clone();
        bad[2..10].copy_from_slice(&5u64.to_le_bytes());
        assert!(crate::state::restore_from(&mut b, &bad).is_err());
    }

    #[test]
    fn signature_id_and_fixed_items() {
        let mut f = FwCfg::new(None);
        f.set(FwCfgItem::NbCpus, 4u16.to_le_bytes().to_vec());
        select(&mut f, 0);
        assert_eq!(read_n(&mut f, 6), b"QEMU\0\0");
        select(&mut f, 1);
        assert_eq!(read_n(&mut f, 4), [1, 0, 0, 0]);
        select(&mut f, 5);
        assert_eq!(read_n(&mut f, 2), [4, 0]);
        // An unknown selector reads zeros.
        select(&mut f, 0x1234);
        assert_eq!(read_n(&mut f, 3), [0, 0, 0]);
    }

    #[test]
    fn directory_lists_sorted_files() {
        let mut f = FwCfg::new(None);
        f.add_file("etc/zeta", vec![9; 3]).unwrap();
        f.add_file("bootorder", b"/pci@i0cf8/ide@1,1/drive@0/disk@0\0".to_vec())
            .unwrap();
        assert_eq!(
            f.add_file("bootorder", vec![]),
            Err(FwCfgError::Duplicate("bootorder".into()))
        );
        assert!(f.add_file(&"x".repeat(56), vec![]).is_err());
        select(&mut f, FwCfgItem::FileDir as u16);
        let dir = read_n(&mut f, 4 + 2 * 64);
        assert_eq!(&dir[..4], &2u32.to_be_bytes());
        let e0 = &dir[4..68];
        assert_eq!(&e0[0..4], &34u32.to_be_bytes());
        assert_eq!(u16::from_be_bytes([e0[4], e0[5]]), 0x20);
        assert_eq!(&e0[8..17], b"bootorder");
        let e1 = &dir[68..132];
        assert_eq!(u16::from_be_bytes([e1[4], e1[5]]), 0x21);
        assert_eq!(&e1[8..16], b"etc/zeta");
        select(&mut f, 0x21);
        assert_eq!(read_n(&mut f, 4), [9, 9, 9, 0]);
    }

    #[test]
    fn dma_reads_skips_and_refuses_writes() {
        let mem =
            Arc::new(GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x10000)]).unwrap());
        let f = Arc::new(std::sync::Mutex::new(FwCfg::new(Some(mem.clone()))));
        f.lock()
            .unwrap()
            .add_file("etc/e820", (0u8..32).collect())
            .unwrap();
        let mut dma = FwCfgDma(f.clone());
        let mut sig = [0u8; 8];
        dma.read(0, &mut sig);
        assert_eq!(&sig, b"QEMU CFG");
        let run = |dma: &mut FwCfgDma, control: u32, len: u32, target: u64| -> u32 {
            let mut d = Vec::new();
            d.extend_from_slice(&control.to_be_bytes());
            d.extend_from_slice(&len.to_be_bytes());
            d.extend_from_slice(&target.to_be_bytes());
            mem.write_slice(&d, GuestAddress(0x100)).unwrap();
            dma.write(0, &0u32.to_be_bytes());
            dma.write(4, &0x100u32.to_be_bytes());
            u32::from_be_bytes(mem.read_obj::<[u8; 4]>(GuestAddress(0x100)).unwrap())
        };
        // Select the file and skip 4 bytes, then read 8.
        assert_eq!(run(&mut dma, (0x20 << 16) | DMA_SELECT | DMA_SKIP, 4, 0), 0);
        assert_eq!(run(&mut dma, DMA_READ, 8, 0x200), 0);
        let got: [u8; 8] = mem.read_obj(GuestAddress(0x200)).unwrap();
        assert_eq!(got, [4, 5, 6, 7, 8, 9, 10, 11]);
        // Past the end: zeros.
        assert_eq!(run(&mut dma, DMA_READ, 24, 0x300), 0);
        let got: [u8; 24] = mem.read_obj(GuestAddress(0x300)).unwrap();
        assert_eq!(&got[..20], &(12u8..32).collect::<Vec<_>>()[..]);
        assert_eq!(&got[20..], &[0; 4]);
        // Writes, huge lengths and targets outside RAM: the error bit.
        assert_eq!(run(&mut dma, DMA_WRITE, 4, 0x200), DMA_ERROR);
        assert_eq!(run(&mut dma, DMA_READ, u32::MAX, 0x200), DMA_ERROR);
        assert_eq!(run(&mut dma, DMA_READ, 16, 0xffff_0000), DMA_ERROR);
        // A descriptor outside RAM is ignored (nothing to report it in).
        dma.write(4, &0xffff_fff0u32.to_be_bytes());
    }
}
