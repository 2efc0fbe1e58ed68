//! The transport as a driver sees it: capabilities, feature negotiation,
//! queue setup, notification, INTx and MSI-X, errors and reset.

use super::*;
use crate::virtio::chain::test_ring::{self, DATA, F_NEXT, F_WRITE};
use crate::virtio::RngDevice;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

#[derive(Default)]
struct Line(AtomicBool);
impl IrqLine for Line {
    fn set_level(&self, level: bool) {
        self.0.store(level, Ordering::SeqCst);
    }
}

#[derive(Default)]
struct Msis(Mutex<Vec<(u64, u32)>>);
impl MsiSender for Msis {
    fn send_msi(&self, address: u64, data: u32) {
        self.0.lock().unwrap().push((address, data));
    }
}

struct Driver {
    dev: VirtioPciDevice,
    line: Arc<Line>,
    msis: Arc<Msis>,
    mem: Arc<GuestMemoryMmap>,
}

const BAR: u64 = 0xc000_0000;

impl Driver {
    fn new() -> Driver {
        let mem = Arc::new(test_ring::memory());
        let line = Arc::new(Line::default());
        let msis = Arc::new(Msis::default());
        let dev = VirtioPciDevice::new(
            Box::new(RngDevice::new()),
            mem.clone(),
            Interrupts {
                intx: line.clone(),
                msi: msis.clone(),
            },
            BAR,
            17,
        )
        .unwrap();
        let mut d = Driver {
            dev,
            line,
            msis,
            mem,
        };
        d.cfg_write(4, &COMMAND_MEMORY_SPACE.to_le_bytes());
        d
    }

    fn cfg_read(&mut self, off: u16, len: usize) -> u32 {
        let mut b = [0u8; 4];
        self.dev.read_config(off, &mut b[..len]);
        u32::from_le_bytes(b)
    }

    fn cfg_write(&mut self, off: u16, data: &[u8]) {
        self.dev.write_config(off, data);
    }

    fn rd(&mut self, off: u64, len: usize) -> u64 {
        let mut b = [0u8; 8];
        MmioDevice::read(&mut self.dev, off, &mut b[..len]);
        u64::from_le_bytes(b)
    }

    fn wr(&mut self, off: u64, len: usize, v: u64) {
        MmioDevice::write(&mut self.dev, off, &v.to_le_bytes()[..len]);
    }

    fn status(&mut self) -> u8 {
        self.rd(0x14, 1) as u8
    }

    /// The full driver bring-up with queue 0 at the test ring's addresses.
    fn bring_up(&mut self) {
        self.wr(0x14, 1, 1);
        self.wr(0x14, 1, 3);
        self.wr(0x08, 4, 1);
        self.wr(0x0c, 4, 1); // VERSION_1
        self.wr(0x14, 1, 0xb);
        assert_eq!(self.status(), 0xb, "FEATURES_OK kept");
        self.wr(0x16, 2, 0);
        self.wr(0x18, 2, 16);
        self.wr(0x20, 8, test_ring::DESC);
        self.wr(0x28, 4, test_ring::AVAIL);
        self.wr(0x2c, 4, 0);
        self.wr(0x30, 4, test_ring::USED);
        self.wr(0x34, 4, 0);
        self.wr(0x1c, 2, 1);
        self.wr(0x14, 1, 0xf);
    }

    fn rng_request(&mut self, slot: u16) {
        test_ring::desc(&self.mem, 0, DATA, 32, F_WRITE, 0);
        test_ring::publish(&self.mem, slot, 0);
    }
}

/// The capabilities, as (id, offset) in list order.
fn caps(d: &mut Driver) -> Vec<(u8, u16)> {
    let mut out = Vec::new();
    let mut at = d.cfg_read(0x34, 1) as u16;
    while at != 0 && out.len() < 16 {
        out.push((d.cfg_read(at, 1) as u8, at));
        at = d.cfg_read(at + 1, 1) as u16;
    }
    out
}

#[test]
fn identity_and_capabilities() {
    let mut d = Driver::new();
    assert_eq!(d.cfg_read(0, 4), 0x1044_1af4);
    assert_eq!(d.cfg_read(8, 1), 1, "revision 1: a modern device");
    assert_eq!(d.cfg_read(0x3d, 1), 1, "INTA#");
    assert_eq!(d.cfg_read(0x10, 4), BAR as u32);
    let caps = caps(&mut d);
    let vendor: Vec<(u8, u8, u32, u32)> = caps
        .iter()
        .filter(|c| c.0 == PCI_CAP_VENDOR)
        .map(|&(_, at)| {
            (
                d.cfg_read(at + 3, 1) as u8,
                d.cfg_read(at + 4, 1) as u8,
                d.cfg_read(at + 8, 4),
                d.cfg_read(at + 12, 4),
            )
        })
        .collect();
    assert_eq!(
        vendor,
        vec![
            (CAP_COMMON, 0, 0, 0x38),
            (CAP_NOTIFY, 0, 0x3000, 4),
            (CAP_ISR, 0, 0x1000, 1),
            (CAP_DEVICE, 0, 0x2000, 0x1000),
            (CAP_PCI_CFG, 0, 0, 0)
        ]
    );
    let notify = caps
        .iter()
        .find(|c| c.0 == PCI_CAP_VENDOR && d.cfg_read(c.1 + 3, 1) == 2);
    assert_eq!(d.cfg_read(notify.unwrap().1 + 16, 4), NOTIFY_MULTIPLIER);
    let msix = caps.iter().find(|c| c.0 == PCI_CAP_MSIX).unwrap().1;
    assert_eq!(
        d.cfg_read(msix + 2, 2) & 0x7ff,
        1,
        "two vectors: config and queue"
    );
    assert_eq!(d.cfg_read(msix + 4, 4), 0x4000);
    assert_eq!(d.cfg_read(msix + 8, 4), 0x6000);
}

#[test]
fn features_need_version_1_and_must_be_offered() {
    let mut d = Driver::new();
    d.wr(0x00, 4, 1);
    assert_eq!(d.rd(0x04, 4), 1, "VERSION_1 is bit 32");
    d.wr(0x00, 4, 0);
    assert_eq!(d.rd(0x04, 4), 0, "the entropy device has no feature bits");
    // Without VERSION_1: FEATURES_OK does not stick.
    d.wr(0x14, 1, 3);
    d.wr(0x14, 1, 0xb);
    assert_eq!(d.status() & 8, 0);
    // A feature the device did not offer: refused too.
    d.wr(0x14, 1, 0);
    d.wr(0x14, 1, 3);
    d.wr(0x08, 4, 1);
    d.wr(0x0c, 4, 1 | (1 << 5));
    d.wr(0x14, 1, 0xb);
    assert_eq!(d.status() & 8, 0);
    d.wr(0x0c, 4, 1);
    d.wr(0x14, 1, 0xb);
    assert_eq!(d.status(), 0xb);
    // Once FEATURES_OK is set, the features are fixed.
    d.wr(0x0c, 4, 0);
    assert_eq!(d.rd(0x0c, 4), 1);
}

#[test]
fn queue_registers_and_bad_sizes() {
    let mut d = Driver::new();
    assert_eq!(d.rd(0x12, 2), 1, "one queue");
    assert_eq!(d.rd(0x18, 2), 64, "maximum size by default");
    d.wr(0x18, 2, 48);
    assert_eq!(d.rd(0x18, 2), 64, "not a power of two: ignored");
    d.wr(0x18, 2, 16);
    assert_eq!(d.rd(0x18, 2), 16);
    d.wr(0x20, 4, 0x1234_5000);
    d.wr(0x24, 4, 0x1);
    assert_eq!(d.rd(0x20, 4), 0x1234_5000);
    assert_eq!(d.rd(0x24, 4), 1);
    d.wr(0x16, 2, 7);
    assert_eq!(
        d.rd(0x18, 2),
        0,
        "a queue that does not exist reads as size 0"
    );
    d.wr(0x1c, 2, 1);
    d.wr(0x0c, 4, 0);
}

#[test]
fn intx_raised_on_used_buffers_and_cleared_by_isr_read() {
    let mut d = Driver::new();
    d.bring_up();
    d.rng_request(0);
    d.wr(0x3000, 2, 0);
    assert_eq!(test_ring::used(&d.mem, 0), (1, 0, 32));
    assert!(d.line.0.load(Ordering::SeqCst));
    assert_eq!(d.rd(0x1000, 1), 1, "ISR: queue interrupt");
    assert!(!d.line.0.load(Ordering::SeqCst));
    assert_eq!(d.rd(0x1000, 1), 0, "read clears the ISR");
    assert!(d.msis.0.lock().unwrap().is_empty());
}

#[test]
fn msix_vectors_masking_and_pending_bits() {
    let mut d = Driver::new();
    let msix = caps(&mut d).iter().find(|c| c.0 == PCI_CAP_MSIX).unwrap().1;
    d.cfg_write(msix + 2, &0x8000u16.to_le_bytes());
    // Vector 1: address/data, still masked.
    d.wr(0x4010, 4, 0xfee0_0000);
    d.wr(0x4014, 4, 0);
    d.wr(0x4018, 4, 0x4041);
    d.bring_up();
    d.wr(0x1a, 2, 1);
    assert_eq!(d.rd(0x1a, 2), 1);
    d.rng_request(0);
    d.wr(0x3000, 2, 0);
    assert!(d.msis.0.lock().unwrap().is_empty(), "masked: no message");
    assert_eq!(d.rd(0x6000, 8), 0b10, "vector 1 pending");
    d.wr(0x401c, 4, 0);
    assert_eq!(*d.msis.0.lock().unwrap(), vec![(0xfee0_0000, 0x4041)]);
    assert_eq!(d.rd(0x6000, 8), 0);
    // Unmasked: sent at once; INTx stays low throughout.
    d.rng_request(1);
    d.wr(0x3000, 2, 0);
    assert_eq!(d.msis.0.lock().unwrap().len(), 2);
    assert!(!d.line.0.load(Ordering::SeqCst));
    assert_eq!(d.rd(0x1000, 1), 0);
}

#[test]
fn a_malformed_chain_needs_reset_and_reset_recovers() {
    let mut d = Driver::new();
    d.bring_up();
    // A chain pointing outside guest memory.
    test_ring::desc(&d.mem, 0, 1 << 40, 32, F_WRITE | F_NEXT, 0);
    test_ring::publish(&d.mem, 0, 0);
    d.wr(0x3000, 2, 0);
    assert_eq!(d.status() & 0x40, 0x40, "DEVICE_NEEDS_RESET");
    assert_eq!(d.rd(0x1000, 1), 2, "config change interrupt");
    assert_eq!(test_ring::used(&d.mem, 0).0, 0, "nothing used");
    // Further notifications are ignored until reset.
    d.rng_request(1);
    d.wr(0x3000, 2, 0);
    assert_eq!(test_ring::used(&d.mem, 0).0, 0);
    d.wr(0x14, 1, 0);
    assert_eq!(d.status(), 0);
    assert_eq!(d.rd(0x1c, 2), 0, "queues disabled by reset");
    // Zero the rings and bring it up again: it works.
    for a in [test_ring::AVAIL, test_ring::USED] {
        use vm_memory::Bytes;
        d.mem
            .write_slice(&[0u8; 64], vm_memory::GuestAddress(a))
            .unwrap();
    }
    d.bring_up();
    d.rng_request(0);
    d.wr(0x3000, 2, 0);
    assert_eq!(test_ring::used(&d.mem, 0), (1, 0, 32));
}

#[test]
fn rings_outside_memory_need_reset() {
    let mut d = Driver::new();
    d.bring_up();
    d.wr(0x14, 1, 0);
    d.wr(0x14, 1, 3);
    d.wr(0x08, 4, 1);
    d.wr(0x0c, 4, 1);
    d.wr(0x14, 1, 0xb);
    d.wr(0x20, 8, !0xf);
    d.wr(0x1c, 2, 1);
    d.wr(0x14, 1, 0xf);
    d.wr(0x3000, 2, 0);
    assert_eq!(d.status() & 0x40, 0x40);
}

#[test]
fn no_notification_before_driver_ok_and_no_decode_when_memory_is_off() {
    let mut d = Driver::new();
    d.rng_request(0);
    d.wr(0x3000, 2, 0);
    assert_eq!(test_ring::used(&d.mem, 0).0, 0);
    d.cfg_write(4, &[0, 0]);
    assert_eq!(d.rd(0x12, 2), 0xffff);
    d.wr(0x14, 1, 1);
    d.cfg_write(4, &COMMAND_MEMORY_SPACE.to_le_bytes());
    assert_eq!(d.status(), 0, "writes with decode off are dropped");
}

#[test]
fn hostile_offsets_and_widths_do_not_panic() {
    let mut d = Driver::new();
    d.bring_up();
    for off in (0..BAR_SIZE).step_by(3) {
        for len in [1usize, 2, 4, 8] {
            let _ = d.rd(off, len);
        }
    }
    for off in [0x16u64, 0x1a, 0x3ffc, 0x4000 + 16 * 40, 0x6000, 0x7fff] {
        d.wr(off, 4, 0xffff_ffff);
    }
    d.wr(0x16, 2, 0xffff);
    d.wr(0x1a, 2, 0x1234);
    d.wr(0x3000 + 4 * 900, 2, 0);
}

#[test]
fn pci_cfg_window_reaches_the_bar() {
    let mut d = Driver::new();
    let at = caps(&mut d)
        .into_iter()
        .find(|&(id, at)| id == PCI_CAP_VENDOR && d.cfg_read(at + 3, 1) == u32::from(CAP_PCI_CFG))
        .unwrap()
        .1;
    // Read num_queues (common cfg 0x12, 2 bytes) through the window.
    d.cfg_write(at + 8, &0x12u32.to_le_bytes());
    d.cfg_write(at + 12, &2u32.to_le_bytes());
    assert_eq!(d.cfg_read(at + 16, 2), 1);
    // Write the device status through it.
    d.cfg_write(at + 8, &0x14u32.to_le_bytes());
    d.cfg_write(at + 12, &1u32.to_le_bytes());
    d.cfg_write(at + 16, &[1]);
    assert_eq!(d.status(), 1);
    // A bad length or an offset outside the BAR does nothing.
    d.cfg_write(at + 12, &3u32.to_le_bytes());
    d.cfg_write(at + 16, &[0]);
    assert_eq!(d.status(), 1);
    d.cfg_write(at + 8, &0xffff_fff0u32.to_le_bytes());
    d.cfg_write(at + 12, &4u32.to_le_bytes());
    d.cfg_write(at + 16, &[0, 0, 0, 0]);
    assert_eq!(d.status(), 1);
}

#[test]
fn a_restored_device_goes_on_with_the_queue_where_it_was() {
    let mut a = Driver::new();
    a.bring_up();
    a.rng_request(0);
    a.wr(0x3000, 2, 0);
    assert_eq!(test_ring::used(&a.mem, 0), (1, 0, 32));
    let saved = crate::state::save_to_vec(&a.dev);

    // A fresh device on the same memory, restored: the driver's setup is
    // there (status, queue), and the next request lands in used slot 1.
    let mut b = Driver::new();
    b.mem = a.mem.clone();
    b.dev = VirtioPciDevice::new(
        Box::new(RngDevice::new()),
        a.mem.clone(),
        Interrupts {
            intx: b.line.clone(),
            msi: b.msis.clone(),
        },
        BAR,
        17,
    )
    .unwrap();
    crate::state::restore_from(&mut b.dev, &saved).unwrap();
    assert_eq!(b.status(), 0xf);
    assert_eq!(b.rd(0x18, 2), 16, "queue size");
    assert_eq!(b.rd(0x1c, 2), 1, "queue enabled");
    assert_eq!(b.rd(0x20, 4), test_ring::DESC);
    assert_eq!(
        b.cfg_read(4, 2) as u16 & COMMAND_MEMORY_SPACE,
        COMMAND_MEMORY_SPACE
    );
    b.rng_request(1);
    b.wr(0x3000, 2, 0);
    assert_eq!(test_ring::used(&b.mem, 1), (2, 0, 32), "used index goes on");
}

#[test]
fn impossible_queue_states_are_refused() {
    let mut a = Driver::new();
    a.bring_up();
    let saved = crate::state::save_to_vec(&a.dev);
    // Find the queue's size (16) after the 256-byte config space and the
    // fixed registers: feature selects (8), features (8), status,
    // generation (2), vectors and select (4), count (2).
    let q = 256 + 8 + 8 + 2 + 4 + 2;
    assert_eq!(u16::from_le_bytes([saved[q], saved[q + 1]]), 16);
    let mut fresh = Driver::new();
    let mut bad = saved.clone();
    bad[q..q + 2].copy_from_slice(&3u16.to_le_bytes()); // not a power of two
    assert!(crate::state::restore_from(&mut fresh.dev, &bad).is_err());
    let mut bad = saved.clone();
    // next_avail 40 ahead of next_used 0 in a 16-entry ring.
    let idx = q + 2 + 1 + 24;
    bad[idx..idx + 2].copy_from_slice(&40u16.to_le_bytes());
    assert!(crate::state::restore_from(&mut fresh.dev, &bad).is_err());
    let mut bad = saved.clone();
    bad[256 + 8..256 + 16].copy_from_slice(&(1u64 << 40).to_le_bytes()); // not offered
    assert!(crate::state::restore_from(&mut fresh.dev, &bad).is_err());
    assert!(crate::state::restore_from(&mut fresh.dev, &saved[..saved.len() - 1]).is_err());
    crate::state::restore_from(&mut fresh.dev, &saved).unwrap();
}
