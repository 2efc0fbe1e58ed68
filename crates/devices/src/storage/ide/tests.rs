//! The controller driven through its ports as a driver would: identify,
//! PIO and DMA reads and writes against temporary images, ATAPI packets,
//! sense after errors, and hostile register values.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use vm_memory::{Address, Bytes, GuestAddress, GuestMemoryMmap};

use super::drive::*;
use super::*;
use crate::bus::{IrqLine, PioDevice};
use crate::pci::PciDevice;
use crate::storage::DiskImage;

const MEM_SIZE: usize = 4 << 20;
const BM: u64 = 0; // channel 0's bus-master registers in BAR4

#[derive(Default)]
struct TestIrq {
    level: AtomicBool,
    raises: AtomicU32,
}

impl IrqLine for TestIrq {
    fn set_level(&self, level: bool) {
        if level && !self.level.load(Ordering::SeqCst) {
            self.raises.fetch_add(1, Ordering::SeqCst);
        }
        self.level.store(level, Ordering::SeqCst);
    }
}

struct Rig {
    ctl: IdeController,
    ch: Arc<Mutex<IdeChannel>>,
    cmd: ChannelPorts,
    ctrl: ChannelPorts,
    irq: Arc<TestIrq>,
    mem: Arc<GuestMemoryMmap>,
    paths: Vec<PathBuf>,
}

impl Drop for Rig {
    fn drop(&mut self) {
        for p in &self.paths {
            let _ = std::fs::remove_file(p);
        }
    }
}

fn temp_path(name: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::SeqCst);
    std::env::temp_dir().join(format!("kite-ide-{}-{n}-{name}", std::process::id()))
}

/// An image of `len` bytes whose every 512-byte sector starts with its number.
fn image(name: &str, len: u64, block: u64) -> PathBuf {
    let p = temp_path(name);
    let f = std::fs::File::create(&p).unwrap();
    f.set_len(len).unwrap();
    use std::os::unix::fs::FileExt;
    let n = (len / block).min(4096);
    for i in 0..n {
        f.write_all_at(&(i as u32).to_le_bytes(), i * block)
            .unwrap();
    }
    p
}

enum Spec {
    Disk(u64, bool),
    Cd(u64),
    EmptyCd,
}

fn rig(master: Option<Spec>, slave: Option<Spec>) -> Rig {
    let mem = Arc::new(GuestMemoryMmap::from_ranges(&[(GuestAddress(0), MEM_SIZE)]).unwrap());
    let mut paths = Vec::new();
    let mut make = |s: Option<Spec>, i: usize| -> Option<Drive> {
        match s? {
            Spec::Disk(len, ro) => {
                let p = image("disk", len, SECTOR);
                paths.push(p.clone());
                Some(Drive::new(
                    DriveKind::Disk,
                    Some(DiskImage::open(&p, ro).unwrap()),
                    i,
                ))
            }
            Spec::Cd(len) => {
                let p = image("iso", len, CD_BLOCK);
                paths.push(p.clone());
                Some(Drive::new(
                    DriveKind::Cdrom,
                    Some(DiskImage::open(&p, true).unwrap()),
                    i,
                ))
            }
            Spec::EmptyCd => Some(Drive::new(DriveKind::Cdrom, None, i)),
        }
    };
    let drives = [make(master, 0), make(slave, 1)];
    let irq = Arc::new(TestIrq::default());
    let ch = Arc::new(Mutex::new(IdeChannel::new(
        drives,
        irq.clone(),
        mem.clone(),
    )));
    let ch2 = Arc::new(Mutex::new(IdeChannel::new(
        [None, None],
        Arc::new(TestIrq::default()),
        mem.clone(),
    )));
    let mut ctl = IdeController::new(ch.clone(), ch2);
    // Firmware: BAR4 at 0xc000, I/O and bus mastering on.
    ctl.write_config(0x20, &0xc000u32.to_le_bytes());
    ctl.write_config(0x04, &0x0005u16.to_le_bytes());
    Rig {
        ctl,
        cmd: ChannelPorts {
            channel: ch.clone(),
            block: PortBlock::Command,
        },
        ctrl: ChannelPorts {
            channel: ch.clone(),
            block: PortBlock::Control,
        },
        ch,
        irq,
        mem,
        paths,
    }
}

impl Rig {
    fn outb(&mut self, reg: u16, v: u8) {
        self.cmd.write(reg, &[v]);
    }
    fn inb(&mut self, reg: u16) -> u8 {
        let mut b = [0u8];
        self.cmd.read(reg, &mut b);
        b[0]
    }
    fn status(&mut self) -> u8 {
        self.inb(7)
    }
    fn alt_status(&mut self) -> u8 {
        let mut b = [0u8];
        self.ctrl.read(0, &mut b);
        b[0]
    }
    fn control(&mut self, v: u8) {
        self.ctrl.write(0, &[v]);
    }
    fn error(&mut self) -> u8 {
        self.inb(1)
    }
    fn read_data(&mut self, n: usize) -> Vec<u8> {
        let mut out = vec![0u8; n];
        for c in out.chunks_mut(2) {
            let mut w = [0u8; 2];
            self.cmd.read(0, &mut w);
            c.copy_from_slice(&w[..c.len()]);
        }
        out
    }
    fn write_data(&mut self, data: &[u8]) {
        for c in data.chunks(4) {
            self.cmd.write(0, c);
        }
    }
    fn select(&mut self, slave: bool) {
        self.outb(6, 0xa0 | 0x40 | (u8::from(slave) << 4));
    }
    /// Task file for an LBA28 command (device 0).
    fn lba28(&mut self, lba: u32, count: u8) {
        self.outb(2, count);
        self.outb(3, lba as u8);
        self.outb(4, (lba >> 8) as u8);
        self.outb(5, (lba >> 16) as u8);
        self.outb(6, 0xe0 | ((lba >> 24) as u8 & 0x0f));
    }
    fn lba48(&mut self, lba: u64, count: u16) {
        self.outb(2, (count >> 8) as u8);
        self.outb(3, (lba >> 24) as u8);
        self.outb(4, (lba >> 32) as u8);
        self.outb(5, (lba >> 40) as u8);
        self.outb(2, count as u8);
        self.outb(3, lba as u8);
        self.outb(4, (lba >> 8) as u8);
        self.outb(5, (lba >> 16) as u8);
        self.outb(6, 0x40);
    }
    fn identify(&mut self, cmd: u8) -> Vec<u16> {
        self.outb(7, cmd);
        assert_eq!(self.status() & (ST_DRQ | ST_ERR), ST_DRQ);
        let b = self.read_data(512);
        assert_eq!(self.status() & ST_DRQ, 0);
        b.chunks(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect()
    }
    fn bm_write(&mut self, off: u64, data: &[u8]) {
        self.ctl.bar_write(4, BM + off, data);
    }
    fn bm_status(&mut self) -> u8 {
        let mut b = [0u8];
        self.ctl.bar_read(4, BM + 2, &mut b);
        b[0]
    }
    /// A PRD table at `table` with (address, bytes) entries, the last EOT.
    fn prd(&mut self, table: u64, entries: &[(u32, u32)]) {
        for (i, &(addr, len)) in entries.iter().enumerate() {
            let eot: u16 = if i + 1 == entries.len() { 0x8000 } else { 0 };
            let at = GuestAddress(table + 8 * i as u64);
            self.mem.write_obj(addr, at).unwrap();
            self.mem
                .write_obj((len & 0xffff) as u16, at.unchecked_add(4))
                .unwrap();
            self.mem.write_obj(eot, at.unchecked_add(6)).unwrap();
        }
        self.bm_write(4, &(table as u32).to_le_bytes());
    }
    fn disk_bytes(&self, i: usize) -> Vec<u8> {
        std::fs::read(&self.paths[i]).unwrap()
    }
    fn raises(&self) -> u32 {
        self.irq.raises.load(Ordering::SeqCst)
    }
    fn line(&self) -> bool {
        self.irq.level.load(Ordering::SeqCst)
    }
}

fn string(words: &[u16], first: usize, len: usize) -> String {
    let mut s = String::new();
    for w in &words[first..first + len / 2] {
        s.push((w >> 8) as u8 as char);
        s.push(*w as u8 as char);
    }
    s.trim_end().to_string()
}

#[test]
fn pci_function_is_a_piix3_ide() {
    let mut r = rig(None, None);
    let mut b = [0u8; 4];
    r.ctl.read_config(0, &mut b);
    assert_eq!(u32::from_le_bytes(b), 0x7010_8086);
    r.ctl.read_config(8, &mut b);
    assert_eq!(u32::from_le_bytes(b) >> 8, 0x010180);
    // BARs 0-3 absent; BAR4 16 bytes of I/O.
    for bar in 0..4u16 {
        r.ctl.write_config(0x10 + 4 * bar, &[0xff; 4]);
        r.ctl.read_config(0x10 + 4 * bar, &mut b);
        assert_eq!(u32::from_le_bytes(b), 0);
    }
    r.ctl.write_config(0x20, &[0xff; 4]);
    r.ctl.read_config(0x20, &mut b);
    assert_eq!(u32::from_le_bytes(b), 0xffff_fff1);
    r.ctl.write_config(0x20, &0xc040u32.to_le_bytes());
    let regions = r.ctl.bar_regions();
    assert_eq!(regions.len(), 1);
    assert_eq!(
        (regions[0].index, regions[0].address, regions[0].size),
        (4, 0xc040, 16)
    );
    // Timing registers: decode enabled at reset, writable.
    let mut w = [0u8; 2];
    r.ctl.read_config(0x40, &mut w);
    assert_eq!(u16::from_le_bytes(w), 0x8000);
    r.ctl.read_config(0x42, &mut w);
    assert_eq!(u16::from_le_bytes(w), 0x8000);
    r.ctl.write_config(0x40, &0xa307u16.to_le_bytes());
    r.ctl.read_config(0x40, &mut w);
    assert_eq!(u16::from_le_bytes(w), 0xa307);
    // Empty channels read as no device (Linux's and SeaBIOS's probes).
    assert_eq!(r.status(), 0);
    r.outb(2, 0x55);
    assert_eq!(r.inb(2), 0);
}

#[test]
fn decode_disable_hides_the_channel() {
    let mut r = rig(Some(Spec::Disk(64 * 512, false)), None);
    assert_eq!(r.status(), ST_DRDY | ST_DSC);
    r.ctl.write_config(0x41, &[0x00]);
    assert_eq!(r.status(), 0xff);
    r.ctl.write_config(0x41, &[0x80]);
    assert_eq!(r.status(), ST_DRDY | ST_DSC);
}

#[test]
fn signatures_after_soft_reset() {
    let mut r = rig(Some(Spec::Disk(64 * 512, false)), Some(Spec::Cd(64 * 2048)));
    r.control(0x04);
    assert_eq!(r.alt_status() & ST_BSY, ST_BSY);
    r.outb(7, 0xec); // ignored during reset
    r.control(0x00);
    r.select(false);
    assert_eq!((r.inb(2), r.inb(3), r.inb(4), r.inb(5)), (1, 1, 0, 0));
    assert_eq!(r.error(), 1);
    assert_eq!(r.status(), ST_DRDY | ST_DSC);
    r.select(true);
    assert_eq!((r.inb(2), r.inb(3), r.inb(4), r.inb(5)), (1, 1, 0x14, 0xeb));
    assert_eq!(r.status() & ST_BSY, 0);
    // IDENTIFY DEVICE to the CD-ROM aborts and leaves the signature.
    r.outb(7, 0xec);
    assert_eq!(r.status() & ST_ERR, ST_ERR);
    assert_eq!(r.error() & ER_ABRT, ER_ABRT);
    assert_eq!((r.inb(4), r.inb(5)), (0x14, 0xeb));
    // EXECUTE DEVICE DIAGNOSTIC: both pass, device 0 selected.
    r.outb(7, 0x90);
    assert_eq!(r.error(), 1);
    assert_eq!(r.inb(6) & 0x10, 0);
}

#[test]
fn absent_slave_answers_nothing() {
    let mut r = rig(Some(Spec::Disk(64 * 512, false)), None);
    r.select(true);
    assert_eq!(r.status(), 0);
    r.outb(7, 0xec);
    assert_eq!(r.status(), 0);
    assert_eq!(r.raises(), 0);
    r.select(false);
    assert_eq!(r.status(), ST_DRDY | ST_DSC);
}

#[test]
fn identify_device_describes_the_disk() {
    // 3 GiB + 1 sector: more than CHS can say, less than LBA28's limit.
    let sectors: u64 = (3 << 21) + 1;
    let mut r = rig(Some(Spec::Disk(sectors * 512, false)), None);
    let w = r.identify(0xec);
    assert_eq!(string(&w, 27, 40), "KITE HARDDISK");
    assert_eq!(string(&w, 10, 20), "KITE0000000000000001");
    assert_eq!(string(&w, 23, 8), "1.0");
    assert_eq!(u64::from(w[60]) | u64::from(w[61]) << 16, sectors);
    let lba48 = (0..4).fold(0u64, |a, i| a | u64::from(w[100 + i]) << (16 * i));
    assert_eq!(lba48, sectors);
    assert_eq!((w[1], w[3], w[6]), (6241, 16, 63));
    assert_ne!(w[49] & (1 << 9), 0, "LBA");
    assert_ne!(w[49] & (1 << 8), 0, "DMA");
    assert_ne!(w[83] & (1 << 10), 0, "48-bit");
    assert_eq!(w[83] >> 14, 1);
    assert_eq!(w[47] & 0xff, 16);
    assert_eq!(w[53] & 7, 7);
    assert_eq!(w[63] & 7, 7);
    assert_eq!(w[88] & 0x3f, 0x3f);
    assert_eq!(r.raises(), 1);
    // SET FEATURES: multiword DMA 2 then shows as selected.
    r.outb(1, 0x03);
    r.outb(2, 0x22);
    r.outb(7, 0xef);
    assert_eq!(r.status(), ST_DRDY | ST_DSC);
    let w = r.identify(0xec);
    assert_eq!(w[63], 0x0407);
    // An unknown transfer mode is refused.
    r.outb(1, 0x03);
    r.outb(2, 0x50);
    r.outb(7, 0xef);
    assert_eq!(r.status() & ST_ERR, ST_ERR);
    assert_eq!(r.error(), ER_ABRT);
}

#[test]
fn lba28_is_capped_for_huge_disks_and_lba48_reads_past_it() {
    let sectors: u64 = (1 << 28) + 100;
    let mut r = rig(Some(Spec::Disk(sectors * 512, false)), None);
    let w = r.identify(0xec);
    assert_eq!(u32::from(w[60]) | u32::from(w[61]) << 16, 0x0fff_ffff);
    // Write a pattern at the last sector with WRITE SECTORS EXT, read it back.
    let last = sectors - 1;
    r.lba48(last, 1);
    r.outb(7, 0x34);
    assert_eq!(r.status() & ST_DRQ, ST_DRQ);
    let data: Vec<u8> = (0..512u32).map(|i| (i * 3) as u8).collect();
    r.write_data(&data);
    assert_eq!(r.status(), ST_DRDY | ST_DSC);
    r.lba48(last, 1);
    r.outb(7, 0x24);
    assert_eq!(r.read_data(512), data);
    // One past the end: IDNF, nothing read.
    r.lba48(last, 2);
    r.outb(7, 0x24);
    assert_eq!(r.status(), ST_DRDY | ST_ERR);
    assert_ne!(r.error() & ER_IDNF, 0);
}

#[test]
fn pio_write_then_read_back() {
    let mut r = rig(Some(Spec::Disk(64 * 512, false)), None);
    let data: Vec<u8> = (0..3 * 512u32).map(|i| (i * 7 + 1) as u8).collect();
    r.lba28(10, 3);
    r.outb(7, 0x30);
    // The first block is asked for without an interrupt.
    assert_eq!(r.raises(), 0);
    for (i, s) in data.chunks(512).enumerate() {
        // As a driver's interrupt handler: status, then the data.
        assert_eq!(r.status() & ST_DRQ, ST_DRQ, "block {i}");
        r.write_data(s);
    }
    assert_eq!(r.status(), ST_DRDY | ST_DSC);
    assert_eq!(r.raises(), 3);
    assert_eq!(&r.disk_bytes(0)[10 * 512..13 * 512], &data[..]);
    r.outb(7, 0xe7); // FLUSH CACHE
    assert_eq!(r.status(), ST_DRDY | ST_DSC);
    r.lba28(9, 5);
    r.outb(7, 0x20);
    let back = r.read_data(5 * 512);
    assert_eq!(&back[..4], &9u32.to_le_bytes());
    assert_eq!(&back[512..4 * 512], &data[..]);
    assert_eq!(&back[4 * 512..4 * 512 + 4], &13u32.to_le_bytes());
    assert_eq!(r.status(), ST_DRDY | ST_DSC);
    // Reading on with no data phase gives all ones.
    assert_eq!(r.read_data(2), vec![0xff, 0xff]);
}

#[test]
fn multiple_mode_moves_blocks_of_sectors() {
    let mut r = rig(Some(Spec::Disk(64 * 512, false)), None);
    r.lba28(0, 8);
    r.outb(7, 0xc4);
    assert_eq!(
        r.status() & ST_ERR,
        ST_ERR,
        "READ MULTIPLE before SET MULTIPLE"
    );
    r.outb(2, 3);
    r.outb(7, 0xc6);
    assert_eq!(r.error(), ER_ABRT, "3 is not a power of two");
    r.outb(2, 4);
    r.outb(7, 0xc6);
    assert_eq!(r.status(), ST_DRDY | ST_DSC);
    let w = r.identify(0xec);
    assert_eq!(w[59], 0x104);
    r.status();
    let before = r.raises();
    r.lba28(0, 8);
    r.outb(7, 0xc4);
    assert_eq!(r.status() & ST_DRQ, ST_DRQ);
    let first = r.read_data(4 * 512);
    assert_eq!(r.status() & ST_DRQ, ST_DRQ);
    let second = r.read_data(4 * 512);
    assert_eq!(r.status(), ST_DRDY | ST_DSC);
    assert_eq!(r.raises() - before, 2, "one interrupt per block");
    assert_eq!(&first[3 * 512..3 * 512 + 4], &3u32.to_le_bytes());
    assert_eq!(&second[3 * 512..3 * 512 + 4], &7u32.to_le_bytes());
    // WRITE MULTIPLE EXT of 6 sectors: blocks of 4 and 2.
    r.lba48(20, 6);
    r.outb(7, 0x39);
    r.write_data(&[0xaa; 4 * 512]);
    assert_eq!(r.status() & ST_DRQ, ST_DRQ);
    r.write_data(&[0xbb; 2 * 512]);
    assert_eq!(r.status(), ST_DRDY | ST_DSC);
    let disk = r.disk_bytes(0);
    assert!(disk[20 * 512..24 * 512].iter().all(|&b| b == 0xaa));
    assert!(disk[24 * 512..26 * 512].iter().all(|&b| b == 0xbb));
}

#[test]
fn chs_addressing_and_initialize_device_parameters() {
    let mut r = rig(Some(Spec::Disk(2 * 16 * 63 * 512, false)), None);
    // Cylinder 1, head 2, sector 5 in 16/63 geometry: LBA 16*63 + 2*63 + 4.
    r.outb(2, 1);
    r.outb(3, 5);
    r.outb(4, 1);
    r.outb(5, 0);
    r.outb(6, 0xa2);
    r.outb(7, 0x20);
    let lba = 16 * 63 + 2 * 63 + 4;
    assert_eq!(r.read_data(512)[..4], (lba as u32).to_le_bytes());
    // Sector 0 does not exist.
    r.outb(3, 0);
    r.outb(7, 0x20);
    assert_ne!(r.error() & ER_IDNF, 0);
    // 4 heads of 17 sectors: C/H/S 0/1/1 is LBA 17.
    r.outb(2, 17);
    r.outb(6, 0xa3);
    r.outb(7, 0x91);
    assert_eq!(r.status(), ST_DRDY | ST_DSC);
    r.outb(2, 1);
    r.outb(3, 1);
    r.outb(4, 0);
    r.outb(6, 0xa1);
    r.outb(7, 0x20);
    assert_eq!(r.read_data(512)[..4], 17u32.to_le_bytes());
    let w = r.identify(0xec);
    assert_eq!((w[55], w[56]), (4, 17));
}

#[test]
fn bad_commands_and_readonly_disks() {
    let mut r = rig(Some(Spec::Disk(64 * 512, true)), None);
    r.outb(7, 0x00); // NOP aborts
    assert_eq!((r.status(), r.error()), (ST_DRDY | ST_ERR, ER_ABRT));
    r.outb(7, 0xfe);
    assert_eq!((r.status(), r.error()), (ST_DRDY | ST_ERR, ER_ABRT));
    r.lba28(0, 1);
    r.outb(7, 0x30);
    assert_eq!(
        r.status() & (ST_ERR | ST_DRQ),
        ST_ERR,
        "read-only refuses writes"
    );
    r.outb(7, 0xca);
    assert_eq!(r.status() & (ST_ERR | ST_DRQ), ST_ERR);
    // Reads still work, and so do power-management answers.
    r.lba28(63, 1);
    r.outb(7, 0x20);
    assert_eq!(r.read_data(512)[..4], 63u32.to_le_bytes());
    r.outb(7, 0xe5);
    assert_eq!((r.status(), r.inb(2)), (ST_DRDY | ST_DSC, 0xff));
    // READ VERIFY checks the range.
    r.lba28(64, 1);
    r.outb(7, 0x40);
    assert_ne!(r.error() & ER_IDNF, 0);
    r.lba28(63, 1);
    r.outb(7, 0x40);
    assert_eq!(r.status(), ST_DRDY | ST_DSC);
}

#[test]
fn interrupts_follow_nien_and_status_reads() {
    let mut r = rig(Some(Spec::Disk(64 * 512, false)), None);
    r.lba28(0, 0); // READ VERIFY of 256 sectors: out of range
    r.lba28(0, 1);
    r.outb(7, 0x40);
    assert!(r.line());
    assert_eq!(r.alt_status(), ST_DRDY | ST_DSC);
    assert!(r.line(), "alternate status leaves the interrupt pending");
    r.status();
    assert!(!r.line(), "status read clears it");
    r.control(0x02); // nIEN
    r.outb(7, 0x40);
    assert!(!r.line());
    r.control(0x00);
    assert!(r.line(), "pending interrupt shows once nIEN clears");
    r.status();
    assert!(!r.line());
}

#[test]
fn dma_read_and_write_through_prd_tables() {
    let mut r = rig(Some(Spec::Disk(256 * 512, false)), None);
    // Read 16 sectors into two regions, the second crossing nothing odd.
    r.prd(0x1000, &[(0x10000, 3 * 512), (0x20000, 13 * 512)]);
    r.bm_write(0, &[0x08]); // direction: write memory
    r.lba28(40, 16);
    r.outb(7, 0xc8);
    assert_eq!(r.raises(), 0, "nothing until the engine starts");
    r.bm_write(0, &[0x09]);
    assert_eq!(r.bm_status() & 0x07, 0x04, "done: interrupt, not active");
    assert_eq!(r.status(), ST_DRDY | ST_DSC);
    assert_eq!(r.raises(), 1);
    let mut b = [0u8; 4];
    r.mem
        .read_slice(&mut b, GuestAddress(0x10000 + 2 * 512))
        .unwrap();
    assert_eq!(b, 42u32.to_le_bytes());
    r.mem
        .read_slice(&mut b, GuestAddress(0x20000 + 512))
        .unwrap();
    assert_eq!(b, 44u32.to_le_bytes());
    r.bm_write(0, &[0x00]);
    r.bm_write(2, &[0x04]); // clear the interrupt bit
    assert_eq!(r.bm_status() & 0x04, 0);
    // Write 128 sectors (64 KiB, PRD count 0 = 64 KiB) with WRITE DMA EXT;
    // the engine starts before the command this time.
    let pattern: Vec<u8> = (0..65536u32).map(|i| (i ^ (i >> 8)) as u8).collect();
    r.mem.write_slice(&pattern, GuestAddress(0x30000)).unwrap();
    r.prd(0x1000, &[(0x30000, 0)]);
    r.bm_write(0, &[0x01]);
    r.lba48(100, 128);
    r.outb(7, 0x35);
    assert_eq!(r.status(), ST_DRDY | ST_DSC);
    assert_eq!(r.bm_status() & 0x07, 0x04);
    assert_eq!(&r.disk_bytes(0)[100 * 512..228 * 512], &pattern[..]);
}

#[test]
fn dma_with_hostile_prd_tables() {
    let mut r = rig(Some(Spec::Disk(256 * 512, false)), None);
    // A region outside guest RAM: error and interrupt, nothing written.
    r.prd(0x1000, &[(0x10000, 512), (MEM_SIZE as u32 - 256, 512)]);
    r.bm_write(0, &[0x08]);
    r.lba28(0, 2);
    r.outb(7, 0xc8);
    r.bm_write(0, &[0x09]);
    assert_eq!(r.bm_status() & 0x07, 0x06, "error + interrupt, not active");
    assert_eq!(r.status() & ST_ERR, ST_ERR);
    // The table itself outside RAM.
    r.bm_write(0, &[0x00]);
    r.bm_write(2, &[0x26]);
    r.bm_write(4, &0xffff_fff0u32.to_le_bytes());
    r.lba28(0, 1);
    r.outb(7, 0xc8);
    r.bm_write(0, &[0x09]);
    assert_eq!(r.bm_status() & 0x07, 0x06);
    // A table shorter than the transfer: engine stops, no interrupt.
    r.bm_write(0, &[0x00]);
    r.bm_write(2, &[0x26]);
    r.prd(0x1000, &[(0x10000, 512)]);
    r.lba28(0, 4);
    r.status();
    let before = r.raises();
    r.outb(7, 0xc8);
    r.bm_write(0, &[0x09]);
    assert_eq!(r.bm_status() & 0x07, 0x00);
    assert_eq!(r.raises(), before);
    // A table longer than the transfer: interrupt with the engine active.
    r.bm_write(0, &[0x00]);
    r.prd(0x1000, &[(0x10000, 4096), (0x20000, 4096)]);
    r.lba28(5, 2);
    r.outb(7, 0xc8);
    r.bm_write(0, &[0x09]);
    assert_eq!(r.bm_status() & 0x07, 0x05);
    assert_eq!(r.status(), ST_DRDY | ST_DSC);
    // Wrong direction: the engine reads memory but the command reads the disk.
    r.bm_write(0, &[0x00]);
    r.bm_write(2, &[0x26]);
    r.prd(0x1000, &[(0x10000, 512)]);
    r.bm_write(0, &[0x01]);
    r.lba28(0, 1);
    r.outb(7, 0xc8);
    assert_eq!(r.bm_status() & 0x07, 0x06);
    // A PRD pointer's low bits are not writable.
    r.bm_write(4, &0x1003u32.to_le_bytes());
    let mut p = [0u8; 4];
    r.ctl.bar_read(4, 4, &mut p);
    assert_eq!(u32::from_le_bytes(p), 0x1000);
    // Bit 5 (drive 0 DMA capable) is set and stays writable.
    assert_eq!(r.bm_status() & 0x60, 0x20);
}

/// Send an ATAPI packet with byte count limit `bcl` (PIO, or DMA).
fn packet(r: &mut Rig, cdb: &[u8], bcl: u16, dma: bool) {
    r.outb(1, u8::from(dma));
    r.outb(4, bcl as u8);
    r.outb(5, (bcl >> 8) as u8);
    r.outb(7, 0xa0);
    assert_eq!(r.alt_status() & ST_DRQ, ST_DRQ);
    assert_eq!(r.inb(2) & 3, 1, "interrupt reason: command packet");
    let mut p = [0u8; 12];
    p[..cdb.len()].copy_from_slice(cdb);
    r.write_data(&p);
}

/// Read a PIO data-in reply to the end; each DRQ block's size is checked
/// against the limit.
fn pio_reply(r: &mut Rig, bcl: usize) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let st = r.status();
        if st & ST_DRQ == 0 {
            assert_eq!(r.inb(2) & 3, 3, "interrupt reason: status");
            return out;
        }
        assert_eq!(r.inb(2) & 3, 2, "interrupt reason: data in");
        let n = usize::from(r.inb(4)) | usize::from(r.inb(5)) << 8;
        assert!(n > 0 && n <= bcl, "block of {n} bytes, limit {bcl}");
        out.extend(r.read_data(n));
    }
}

fn sense(r: &mut Rig) -> (u8, u8) {
    packet(r, &[0x03, 0, 0, 0, 18], 0xfffe, false);
    let s = pio_reply(r, 0xfffe);
    assert_eq!(s.len(), 18);
    assert_eq!(s[0], 0x70);
    (s[2], s[12])
}

fn cd_rig() -> Rig {
    let mut r = rig(
        Some(Spec::Disk(64 * 512, false)),
        Some(Spec::Cd(400 * 2048)),
    );
    r.select(true);
    r
}

#[test]
fn atapi_identify_inquiry_and_capacity() {
    let mut r = cd_rig();
    let w = r.identify(0xa1);
    assert_eq!(w[0], 0x85c0);
    assert_eq!(string(&w, 27, 40), "KITE DVD-ROM");
    packet(&mut r, &[0x12, 0, 0, 0, 36], 0xfffe, false);
    let q = pio_reply(&mut r, 0xfffe);
    assert_eq!((q[0], q[1]), (5, 0x80));
    assert_eq!(&q[8..16], b"KITE    ");
    packet(&mut r, &[0x25], 0xfffe, false);
    let c = pio_reply(&mut r, 0xfffe);
    assert_eq!(c, [0, 0, 1, 143, 0, 0, 8, 0]); // last block 399, 2048 bytes
                                               // An allocation length shorter than the data cuts it.
    packet(&mut r, &[0x12, 0, 0, 0, 5], 0xfffe, false);
    assert_eq!(pio_reply(&mut r, 0xfffe).len(), 5);
    packet(&mut r, &[0x00], 0xfffe, false);
    assert_eq!(r.status(), ST_DRDY | ST_DSC);
}

#[test]
fn atapi_read10_in_drq_blocks_of_the_byte_count() {
    let mut r = cd_rig();
    // Blocks 16.. 19 in DRQ blocks of at most 2048 bytes.
    packet(&mut r, &[0x28, 0, 0, 0, 0, 16, 0, 0, 4, 0], 2048, false);
    let d = pio_reply(&mut r, 2048);
    assert_eq!(d.len(), 4 * 2048);
    for i in 0..4 {
        assert_eq!(d[i * 2048..i * 2048 + 4], (16 + i as u32).to_le_bytes());
    }
    // An odd limit below a block: even-sized blocks that split sectors.
    packet(&mut r, &[0x28, 0, 0, 0, 0, 3, 0, 0, 2, 0], 1001, false);
    let d = pio_reply(&mut r, 1000);
    assert_eq!(d.len(), 2 * 2048);
    assert_eq!(d[2048..2052], 4u32.to_le_bytes());
    // READ(12) past the end: ILLEGAL REQUEST, LBA out of range.
    packet(
        &mut r,
        &[0xa8, 0, 0, 0, 1, 0x8f, 0, 0, 0, 2, 0, 0],
        0xfffe,
        false,
    );
    assert_eq!(r.status(), ST_DRDY | ST_ERR);
    assert_eq!(r.error() >> 4, SENSE_ILLEGAL_REQUEST);
    assert_eq!(r.inb(2) & 3, 3);
    assert_eq!(sense(&mut r), (SENSE_ILLEGAL_REQUEST, 0x21));
    // Sense is cleared once read.
    assert_eq!(sense(&mut r), (0, 0));
    // A huge count within the disc streams without a huge buffer.
    packet(
        &mut r,
        &[0xa8, 0, 0, 0, 0, 0, 0, 0, 1, 0x90, 0, 0],
        0xfffe,
        false,
    );
    assert_eq!(pio_reply(&mut r, 0xfffe).len(), 400 * 2048);
    // Unknown opcode.
    packet(&mut r, &[0xff], 0xfffe, false);
    assert_eq!(r.status() & ST_ERR, ST_ERR);
    assert_eq!(sense(&mut r), (SENSE_ILLEGAL_REQUEST, 0x20));
}

#[test]
fn atapi_dma_read() {
    let mut r = cd_rig();
    r.prd(0x1000, &[(0x40000, 0x2000), (0x50000, 0x2000)]);
    r.ctl.bar_write(4, 0, &[0x08]);
    packet(&mut r, &[0x28, 0, 0, 0, 0, 100, 0, 0, 8, 0], 0, true);
    r.ctl.bar_write(4, 0, &[0x09]);
    assert_eq!(r.bm_status() & 0x07, 0x04);
    assert_eq!(r.status(), ST_DRDY | ST_DSC);
    assert_eq!(r.inb(2) & 3, 3);
    let mut b = [0u8; 4];
    r.mem
        .read_slice(&mut b, GuestAddress(0x50000 + 2048))
        .unwrap();
    assert_eq!(b, 105u32.to_le_bytes());
}

#[test]
fn atapi_toc_mode_sense_configuration_and_events() {
    let mut r = cd_rig();
    packet(&mut r, &[0x43, 0, 0, 0, 0, 0, 0, 0, 100, 0], 0xfffe, false);
    let t = pio_reply(&mut r, 0xfffe);
    assert_eq!(t.len(), 20);
    assert_eq!(&t[..4], &[0, 18, 1, 1]);
    assert_eq!(&t[4..12], &[0, 0x14, 1, 0, 0, 0, 0, 0]);
    assert_eq!(&t[12..20], &[0, 0x16, 0xaa, 0, 0, 0, 1, 144]);
    // MSF: lead-out at block 400 = 550 frames = 00:07:25.
    packet(&mut r, &[0x43, 2, 0, 0, 0, 0, 0, 0, 100, 0], 0xfffe, false);
    let t = pio_reply(&mut r, 0xfffe);
    assert_eq!(&t[16..20], &[0, 0, 7, 25]);
    assert_eq!(&t[8..12], &[0, 0, 2, 0]);
    // Session info.
    packet(&mut r, &[0x43, 0, 1, 0, 0, 0, 0, 0, 12, 0], 0xfffe, false);
    assert_eq!(pio_reply(&mut r, 0xfffe)[..4], [0, 10, 1, 1]);
    // Capabilities page through MODE SENSE(10).
    packet(
        &mut r,
        &[0x5a, 0, 0x2a, 0, 0, 0, 0, 0, 28, 0],
        0xfffe,
        false,
    );
    let m = pio_reply(&mut r, 0xfffe);
    assert_eq!(m.len(), 28);
    assert_eq!(u16::from_be_bytes([m[0], m[1]]), 26);
    assert_eq!(&m[8..10], &[0x2a, 0x12]);
    // Saved values are not supported; an unknown page is refused.
    packet(
        &mut r,
        &[0x5a, 0, 0xc1, 0, 0, 0, 0, 0, 28, 0],
        0xfffe,
        false,
    );
    assert_eq!(sense(&mut r), (SENSE_ILLEGAL_REQUEST, 0x39));
    packet(&mut r, &[0x1a, 0, 0x05, 0, 40], 0xfffe, false);
    assert_eq!(sense(&mut r), (SENSE_ILLEGAL_REQUEST, 0x24));
    packet(&mut r, &[0x1a, 0, 0x01, 0, 40], 0xfffe, false);
    assert_eq!(pio_reply(&mut r, 0xfffe)[4..6], [0x01, 0x06]);
    // GET CONFIGURATION: a small disc is a CD-ROM.
    packet(&mut r, &[0x46, 0, 0, 0, 0, 0, 0, 0, 64, 0], 0xfffe, false);
    let g = pio_reply(&mut r, 0xfffe);
    assert_eq!(&g[6..8], &[0, 0x08]);
    assert_eq!(&g[8..12], &[0, 0, 3, 8]);
    // GET EVENT STATUS NOTIFICATION (polled, media class).
    packet(&mut r, &[0x4a, 1, 0, 0, 0x10, 0, 0, 0, 8, 0], 0xfffe, false);
    let e = pio_reply(&mut r, 0xfffe);
    assert_eq!(e, [0, 6, 4, 0x10, 0, 2, 0, 0]);
    packet(&mut r, &[0x4a, 0, 0, 0, 0x10, 0, 0, 0, 8, 0], 0xfffe, false);
    assert_eq!(sense(&mut r), (SENSE_ILLEGAL_REQUEST, 0x24));
    // READ DISC INFORMATION, MECHANISM STATUS, SET CD SPEED, READ SUB-CHANNEL.
    packet(&mut r, &[0x51, 0, 0, 0, 0, 0, 0, 0, 34, 0], 0xfffe, false);
    assert_eq!(pio_reply(&mut r, 0xfffe)[..3], [0, 32, 0x0e]);
    packet(
        &mut r,
        &[0xbd, 0, 0, 0, 0, 0, 0, 0, 0, 8, 0, 0],
        0xfffe,
        false,
    );
    assert_eq!(pio_reply(&mut r, 0xfffe).len(), 8);
    packet(&mut r, &[0xbb, 0, 0xff, 0xff], 0xfffe, false);
    assert_eq!(r.status(), ST_DRDY | ST_DSC);
    packet(
        &mut r,
        &[0x42, 0, 0x40, 1, 0, 0, 0, 0, 16, 0],
        0xfffe,
        false,
    );
    assert_eq!(pio_reply(&mut r, 0xfffe).len(), 16);
}

#[test]
fn atapi_medium_changes_and_locks() {
    let mut r = cd_rig();
    // Locked: eject refused.
    packet(&mut r, &[0x1e, 0, 0, 0, 1], 0xfffe, false);
    assert_eq!(r.status(), ST_DRDY | ST_DSC);
    packet(&mut r, &[0x1b, 0, 0, 0, 0x02], 0xfffe, false);
    assert_eq!(sense(&mut r), (SENSE_ILLEGAL_REQUEST, 0x53));
    packet(&mut r, &[0x1e, 0, 0, 0, 0], 0xfffe, false);
    packet(&mut r, &[0x1b, 0, 0, 0, 0x02], 0xfffe, false);
    assert_eq!(r.status(), ST_DRDY | ST_DSC);
    // No disc: NOT READY, medium not present.
    packet(&mut r, &[0x00], 0xfffe, false);
    assert_eq!(r.error() >> 4, SENSE_NOT_READY);
    assert_eq!(sense(&mut r), (SENSE_NOT_READY, 0x3a));
    packet(&mut r, &[0x4a, 1, 0, 0, 0x10, 0, 0, 0, 8, 0], 0xfffe, false);
    assert_eq!(pio_reply(&mut r, 0xfffe)[4..6], [3, 0]);
    // A new disc: UNIT ATTENTION once, then ready.
    let p = image("iso2", 100 * 2048, CD_BLOCK);
    r.paths.push(p.clone());
    assert!(lock_ch(&r).change_medium(1, Some(DiskImage::open(&p, true).unwrap())));
    packet(&mut r, &[0x00], 0xfffe, false);
    assert_eq!(r.error() >> 4, SENSE_UNIT_ATTENTION);
    assert_eq!(sense(&mut r), (SENSE_UNIT_ATTENTION, 0x28));
    packet(&mut r, &[0x00], 0xfffe, false);
    assert_eq!(r.status(), ST_DRDY | ST_DSC);
    packet(&mut r, &[0x25], 0xfffe, false);
    assert_eq!(pio_reply(&mut r, 0xfffe)[..4], [0, 0, 0, 99]);
    // The disk cannot change media.
    assert!(!lock_ch(&r).change_medium(0, None));
}

#[test]
fn empty_cd_drive_is_not_ready() {
    let mut r = rig(Some(Spec::EmptyCd), None);
    r.control(0x04);
    r.control(0x00);
    r.select(false);
    packet(&mut r, &[0x25], 0xfffe, false);
    assert_eq!(sense(&mut r), (SENSE_NOT_READY, 0x3a));
    packet(&mut r, &[0x46, 0, 0, 0, 0, 0, 0, 0, 8, 0], 0xfffe, false);
    assert_eq!(pio_reply(&mut r, 0xfffe)[6..8], [0, 0]);
}

fn lock_ch(r: &Rig) -> std::sync::MutexGuard<'_, IdeChannel> {
    crate::bus::lock(&r.ch)
}

#[test]
fn a_pio_read_in_progress_goes_on_after_a_restore() {
    let mut a = rig(Some(Spec::Disk(1 << 20, false)), None);
    a.select(false);
    a.lba28(5, 2);
    a.outb(7, 0x20); // READ SECTORS
    assert_eq!(a.status() & ST_DRQ, ST_DRQ);
    let first = a.read_data(256);
    assert_eq!(&first[..4], &5u32.to_le_bytes());
    let saved = crate::state::save_to_vec(&a.ctl);

    let mut b = rig(Some(Spec::Disk(1 << 20, false)), None);
    crate::state::restore_from(&mut b.ctl, &saved).unwrap();
    assert_eq!(b.status() & ST_DRQ, ST_DRQ, "still in the data phase");
    let rest = b.read_data(256);
    assert_eq!(rest, vec![0u8; 256], "the rest of sector 5");
    let next = b.read_data(512);
    assert_eq!(&next[..4], &6u32.to_le_bytes(), "then sector 6");
    // The timing registers and BAR4 came back too.
    let mut v = [0u8; 4];
    b.ctl.read_config(0x20, &mut v);
    assert_eq!(u32::from_le_bytes(v) & !3, 0xc000);

    // A machine without that drive refuses the state; so does a transfer
    // past the end of the disk.
    let mut empty = rig(None, None);
    assert!(crate::state::restore_from(&mut empty.ctl, &saved).is_err());
    let mut small = rig(Some(Spec::Disk(2048, false)), None);
    assert!(crate::state::restore_from(&mut small.ctl, &saved).is_err());
}
