//! virtio-input (type 18, virtio 1.2 section 5.8) as an absolute pointing
//! tablet: the select/subsel configuration queries (name, serial, ids,
//! property and event bits, axis ranges), the event queue filled with
//! `virtio_input_event`s (le16 type, le16 code, le32 value) ending each
//! report with SYN_REPORT, and the status queue, whose LED events are
//! accepted and ignored.
//!
//! The host side holds a [`TabletHandle`]: it queues reports (bounded; the
//! oldest report goes when the guest posts no buffers) and says whether the
//! guest's driver is up. This module knows nothing of displays or viewers:
//! positions arrive in pixels of a screen of given size.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use virtio_queue::{Queue, QueueT};
use vm_memory::GuestMemoryMmap;

use super::chain::{write_regions, ChainBuffers, ChainError};
use super::{VirtioDevice, VirtioError};
use crate::bus::lock;
use crate::state::{StateError, StateReader, StateWriter};

/// The virtio device id of input devices.
pub const VIRTIO_ID_INPUT: u16 = 18;
pub const EVENT_QUEUE: usize = 0;
pub const STATUS_QUEUE: usize = 1;
const QUEUE_SIZES: [u16; 2] = [64, 64];

/// Events waiting for guest buffers, at most (a few hundred reports).
pub const MAX_PENDING_EVENTS: usize = 1024;

/// The tablet's axis range, as QEMU's virtio-tablet has it.
pub const ABS_MAX: u32 = 32767;

/// Buttons for [`TabletHandle::pointer`], one bit each.
pub const BUTTON_LEFT: u8 = 1 << 0;
pub const BUTTON_RIGHT: u8 = 1 << 1;
pub const BUTTON_MIDDLE: u8 = 1 << 2;

// Configuration selectors (virtio_input_config_select).
const CFG_UNSET: u8 = 0x00;
const CFG_ID_NAME: u8 = 0x01;
const CFG_ID_SERIAL: u8 = 0x02;
const CFG_ID_DEVIDS: u8 = 0x03;
const CFG_PROP_BITS: u8 = 0x10;
const CFG_EV_BITS: u8 = 0x11;
const CFG_ABS_INFO: u8 = 0x12;
/// select, subsel, size, 5 reserved bytes, then 128 bytes of payload.
const CFG_HEADER: usize = 8;
const CFG_PAYLOAD: usize = 128;

// Linux input event types and codes (linux/input-event-codes.h).
pub const EV_SYN: u16 = 0x00;
pub const EV_KEY: u16 = 0x01;
pub const EV_REL: u16 = 0x02;
pub const EV_ABS: u16 = 0x03;
pub const SYN_REPORT: u16 = 0;
pub const BTN_LEFT: u16 = 0x110;
pub const BTN_RIGHT: u16 = 0x111;
pub const BTN_MIDDLE: u16 = 0x112;
pub const REL_WHEEL: u16 = 0x08;
pub const ABS_X: u16 = 0x00;
pub const ABS_Y: u16 = 0x01;
const BUS_VIRTUAL: u16 = 0x06;

pub const TABLET_NAME: &str = "Kite Virtio Tablet";
const TABLET_SERIAL: &str = "kite-tablet-0";

/// One `virtio_input_event`, as the guest reads it.
pub fn encode_event(type_: u16, code: u16, value: i32) -> [u8; 8] {
    let mut b = [0u8; 8];
    b[0..2].copy_from_slice(&type_.to_le_bytes());
    b[2..4].copy_from_slice(&code.to_le_bytes());
    b[4..8].copy_from_slice(&value.to_le_bytes());
    b
}

#[derive(Default)]
struct Pending {
    events: VecDeque<[u8; 8]>,
    /// The buttons the guest was last told about.
    buttons: u8,
}

/// What the device and its host-side handle share.
#[derive(Default)]
struct Shared {
    /// The driver set DRIVER_OK and has not reset the device since.
    active: AtomicBool,
    pending: Mutex<Pending>,
    dropped_reports: AtomicU64,
}

/// The host side of a tablet: where pointer events go in.
#[derive(Clone)]
pub struct TabletHandle {
    shared: Arc<Shared>,
}

impl TabletHandle {
    /// Whether the guest's driver has the device running.
    pub fn is_active(&self) -> bool {
        self.shared.active.load(Ordering::Acquire)
    }

    /// Reports lost because the guest posted no buffers for them.
    pub fn dropped_reports(&self) -> u64 {
        self.shared.dropped_reports.load(Ordering::Relaxed)
    }

    /// Events waiting for guest buffers.
    pub fn pending_events(&self) -> usize {
        lock(&self.shared.pending).events.len()
    }

    /// The pointer is at pixel (`x`, `y`) of a `width` x `height` screen
    /// with `buttons` (`BUTTON_*`) held and the wheel turned `wheel`
    /// notches up (negative: down). Queues one report; returns false (and
    /// queues nothing) for an empty screen or while the driver is not up.
    /// The caller then runs the event queue.
    pub fn pointer(
        &self,
        x: u32,
        y: u32,
        width: u32,
        height: u32,
        buttons: u8,
        wheel: i32,
    ) -> bool {
        if width == 0 || height == 0 || !self.is_active() {
            return false;
        }
        let scale = |v: u32, size: u32| -> i32 {
            let max = u64::from(size - 1).max(1);
            let v = u64::from(v).min(max);
            // At most ABS_MAX, so it fits.
            (v * u64::from(ABS_MAX) / max) as i32
        };
        let mut p = lock(&self.shared.pending);
        let mut report = Vec::with_capacity(8);
        report.push(encode_event(EV_ABS, ABS_X, scale(x, width)));
        report.push(encode_event(EV_ABS, ABS_Y, scale(y, height)));
        for (bit, code) in [
            (BUTTON_LEFT, BTN_LEFT),
            (BUTTON_RIGHT, BTN_RIGHT),
            (BUTTON_MIDDLE, BTN_MIDDLE),
        ] {
            if (p.buttons ^ buttons) & bit != 0 {
                report.push(encode_event(EV_KEY, code, i32::from(buttons & bit != 0)));
            }
        }
        p.buttons = buttons;
        if wheel != 0 {
            report.push(encode_event(EV_REL, REL_WHEEL, wheel.clamp(-16, 16)));
        }
        report.push(encode_event(EV_SYN, SYN_REPORT, 0));
        // Make room by dropping the oldest reports whole.
        while p.events.len() + report.len() > MAX_PENDING_EVENTS {
            while let Some(ev) = p.events.pop_front() {
                if ev == encode_event(EV_SYN, SYN_REPORT, 0) {
                    break;
                }
            }
            self.shared.dropped_reports.fetch_add(1, Ordering::Relaxed);
        }
        p.events.extend(report);
        true
    }
}

/// The tablet as its virtio transport sees it.
pub struct TabletDevice {
    shared: Arc<Shared>,
    select: u8,
    subsel: u8,
}

impl TabletDevice {
    /// A tablet and the handle that feeds it.
    pub fn new() -> (TabletDevice, TabletHandle) {
        let shared = Arc::new(Shared::default());
        (
            TabletDevice {
                shared: shared.clone(),
                select: CFG_UNSET,
                subsel: 0,
            },
            TabletHandle { shared },
        )
    }

    /// The payload the current select/subsel asks for (empty: not present).
    fn payload(&self) -> Vec<u8> {
        match (self.select, self.subsel) {
            (CFG_ID_NAME, 0) => TABLET_NAME.as_bytes().to_vec(),
            (CFG_ID_SERIAL, 0) => TABLET_SERIAL.as_bytes().to_vec(),
            (CFG_ID_DEVIDS, 0) => {
                let mut v = Vec::with_capacity(8);
                for w in [BUS_VIRTUAL, 0x0627, 0x0003, 0x0001] {
                    v.extend_from_slice(&w.to_le_bytes());
                }
                v
            }
            (CFG_EV_BITS, s) => match u16::from(s) {
                EV_SYN => bitmap(&[SYN_REPORT]),
                EV_KEY => bitmap(&[BTN_LEFT, BTN_RIGHT, BTN_MIDDLE]),
                EV_REL => bitmap(&[REL_WHEEL]),
                EV_ABS => bitmap(&[ABS_X, ABS_Y]),
                _ => Vec::new(),
            },
            (CFG_ABS_INFO, s) if u16::from(s) == ABS_X || u16::from(s) == ABS_Y => {
                let mut v = Vec::with_capacity(20);
                for w in [0, ABS_MAX, 0, 0, 0] {
                    v.extend_from_slice(&w.to_le_bytes());
                }
                v
            }
            // No input properties; anything else is not there.
            (CFG_PROP_BITS, _) => Vec::new(),
            _ => Vec::new(),
        }
    }
}

/// The shortest bitmap with `bits` set.
fn bitmap(bits: &[u16]) -> Vec<u8> {
    let len = bits
        .iter()
        .map(|&b| usize::from(b) / 8 + 1)
        .max()
        .unwrap_or(0);
    let mut v = vec![0u8; len];
    for &b in bits {
        v[usize::from(b) / 8] |= 1 << (b % 8);
    }
    v
}

impl VirtioDevice for TabletDevice {
    fn device_type(&self) -> u16 {
        VIRTIO_ID_INPUT
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &QUEUE_SIZES
    }

    fn features(&self) -> u64 {
        0
    }

    fn config_bytes(&self) -> Vec<u8> {
        let mut cfg = vec![0u8; CFG_HEADER + CFG_PAYLOAD];
        let payload = self.payload();
        let n = payload.len().min(CFG_PAYLOAD);
        cfg[0] = self.select;
        cfg[1] = self.subsel;
        cfg[2] = n as u8;
        cfg[CFG_HEADER..CFG_HEADER + n].copy_from_slice(&payload[..n]);
        cfg
    }

    fn write_config(&mut self, offset: u64, data: &[u8]) {
        // Only select and subsel are the driver's to write.
        for (i, &b) in data.iter().enumerate() {
            match offset.checked_add(i as u64) {
                Some(0) => self.select = b,
                Some(1) => self.subsel = b,
                _ => {}
            }
        }
    }

    fn activate(&mut self, _features: u64) {
        self.shared.active.store(true, Ordering::Release);
    }

    fn save_state(&self, w: &mut StateWriter) {
        w.u8(self.select);
        w.u8(self.subsel);
        w.u8(lock(&self.shared.pending).buttons);
    }

    fn restore_state(&mut self, r: &mut StateReader<'_>) -> Result<(), StateError> {
        self.select = r.u8("tablet config select")?;
        self.subsel = r.u8("tablet config subselect")?;
        lock(&self.shared.pending).buttons = r.u8("tablet buttons")? & 0x07;
        Ok(())
    }

    fn reset(&mut self) {
        self.shared.active.store(false, Ordering::Release);
        let mut p = lock(&self.shared.pending);
        p.events.clear();
        p.buttons = 0;
        self.select = CFG_UNSET;
        self.subsel = 0;
    }

    fn process_queue(
        &mut self,
        index: usize,
        queue: &mut Queue,
        mem: &GuestMemoryMmap,
    ) -> Result<bool, VirtioError> {
        let mut used = false;
        match index {
            EVENT_QUEUE => loop {
                let Some(ev) = lock(&self.shared.pending).events.front().copied() else {
                    break;
                };
                let Some(chain) = queue.pop_descriptor_chain(mem) else {
                    break;
                };
                let c = ChainBuffers::parse(chain, mem)?;
                if c.writable_len() < ev.len() as u64 {
                    return Err(ChainError::MissingBuffer("event").into());
                }
                write_regions(mem, &c.writable, 0, &ev)?;
                queue
                    .add_used(mem, c.head, ev.len() as u32)
                    .map_err(|_| VirtioError::BadRing)?;
                lock(&self.shared.pending).events.pop_front();
                used = true;
            },
            STATUS_QUEUE => {
                // LED and other status events: taken and ignored.
                while let Some(chain) = queue.pop_descriptor_chain(mem) {
                    let c = ChainBuffers::parse(chain, mem)?;
                    queue
                        .add_used(mem, c.head, 0)
                        .map_err(|_| VirtioError::BadRing)?;
                    used = true;
                }
            }
            _ => {}
        }
        Ok(used)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::virtio::chain::test_ring::*;
    use vm_memory::{Bytes, GuestAddress};

    fn query(dev: &mut TabletDevice, select: u8, subsel: u8) -> Vec<u8> {
        dev.write_config(0, &[select, subsel]);
        let cfg = dev.config_bytes();
        assert_eq!(cfg.len(), 136);
        assert_eq!((cfg[0], cfg[1]), (select, subsel));
        cfg[8..8 + usize::from(cfg[2])].to_vec()
    }

    fn active() -> (TabletDevice, TabletHandle) {
        let (mut dev, h) = TabletDevice::new();
        dev.activate(0);
        (dev, h)
    }

    /// Post `n` one-event buffers, 8 bytes each at DATA + 16 * i.
    fn post(mem: &GuestMemoryMmap, n: u16) {
        for i in 0..n {
            desc(mem, i, DATA + 16 * u64::from(i), 8, F_WRITE, 0);
            publish(mem, i, i);
        }
    }

    fn event_at(mem: &GuestMemoryMmap, i: u64) -> (u16, u16, i32) {
        let t: u16 = mem.read_obj(GuestAddress(DATA + 16 * i)).unwrap();
        let c: u16 = mem.read_obj(GuestAddress(DATA + 16 * i + 2)).unwrap();
        let v: i32 = mem.read_obj(GuestAddress(DATA + 16 * i + 4)).unwrap();
        (t, c, v)
    }

    #[test]
    fn config_queries_describe_a_tablet() {
        let (mut dev, _) = TabletDevice::new();
        assert_eq!(dev.device_type(), 18);
        assert_eq!(query(&mut dev, CFG_ID_NAME, 0), TABLET_NAME.as_bytes());
        assert!(!query(&mut dev, CFG_ID_SERIAL, 0).is_empty());
        assert_eq!(
            query(&mut dev, CFG_ID_DEVIDS, 0),
            [0x06, 0, 0x27, 0x06, 0x03, 0, 0x01, 0]
        );
        let keys = query(&mut dev, CFG_EV_BITS, EV_KEY as u8);
        assert_eq!(keys.len(), 35);
        assert_eq!(keys[34], 0x07, "BTN_LEFT, BTN_RIGHT, BTN_MIDDLE");
        assert!(keys[..34].iter().all(|&b| b == 0));
        assert_eq!(query(&mut dev, CFG_EV_BITS, EV_REL as u8), [0, 1]);
        assert_eq!(query(&mut dev, CFG_EV_BITS, EV_ABS as u8), [3]);
        assert_eq!(query(&mut dev, CFG_EV_BITS, EV_SYN as u8), [1]);
        assert!(query(&mut dev, CFG_EV_BITS, 0x11).is_empty(), "no LEDs");
        let abs = query(&mut dev, CFG_ABS_INFO, ABS_Y as u8);
        assert_eq!(abs.len(), 20);
        assert_eq!(&abs[0..8], &[0, 0, 0, 0, 0xff, 0x7f, 0, 0]);
        assert!(query(&mut dev, CFG_ABS_INFO, 2).is_empty());
        assert!(query(&mut dev, CFG_PROP_BITS, 0).is_empty());
        assert!(query(&mut dev, 0x77, 3).is_empty());
        // Writes past select/subsel change nothing.
        dev.write_config(2, &[0x55; 200]);
        dev.write_config(u64::MAX, &[1, 2]);
        assert_eq!(dev.config_bytes()[0..3], [0x77, 3, 0]);
    }

    #[test]
    fn pointer_reports_reach_the_event_queue() {
        let mem = memory();
        let mut q = queue(&mem, 16);
        let (mut dev, h) = active();
        assert!(h.pointer(1023, 0, 1024, 768, BUTTON_LEFT, 0));
        assert_eq!(h.pending_events(), 4);
        post(&mem, 3);
        assert!(dev.process_queue(EVENT_QUEUE, &mut q, &mem).unwrap());
        assert_eq!(used(&mem, 2), (3, 2, 8));
        assert_eq!(event_at(&mem, 0), (EV_ABS, ABS_X, 32767));
        assert_eq!(event_at(&mem, 1), (EV_ABS, ABS_Y, 0));
        assert_eq!(event_at(&mem, 2), (EV_KEY, BTN_LEFT, 1));
        // The SYN waits for the next buffer.
        assert_eq!(h.pending_events(), 1);
        desc(&mem, 3, DATA + 16 * 3, 8, F_WRITE, 0);
        publish(&mem, 3, 3);
        assert!(dev.process_queue(EVENT_QUEUE, &mut q, &mem).unwrap());
        assert_eq!(event_at(&mem, 3), (EV_SYN, SYN_REPORT, 0));
        // Release and wheel down in the middle of the screen.
        assert!(h.pointer(512, 384, 1024, 768, 0, -1));
        for i in 4..9u16 {
            desc(&mem, i, DATA + 16 * u64::from(i), 8, F_WRITE, 0);
            publish(&mem, i, i);
        }
        assert!(dev.process_queue(EVENT_QUEUE, &mut q, &mem).unwrap());
        assert_eq!(event_at(&mem, 4), (EV_ABS, ABS_X, 512 * 32767 / 1023));
        assert_eq!(event_at(&mem, 5), (EV_ABS, ABS_Y, 384 * 32767 / 767));
        assert_eq!(event_at(&mem, 6), (EV_KEY, BTN_LEFT, 0));
        assert_eq!(event_at(&mem, 7), (EV_REL, REL_WHEEL, -1));
        assert_eq!(event_at(&mem, 8), (EV_SYN, SYN_REPORT, 0));
        assert_eq!(used(&mem, 8).0, 9);
    }

    #[test]
    fn nothing_is_queued_before_driver_ok_or_after_reset() {
        let (mut dev, h) = TabletDevice::new();
        assert!(!h.is_active());
        assert!(!h.pointer(1, 1, 10, 10, 0, 0));
        dev.activate(0);
        assert!(h.is_active());
        assert!(h.pointer(1, 1, 10, 10, 0, 0));
        dev.reset();
        assert!(!h.is_active());
        assert_eq!(h.pending_events(), 0);
        dev.activate(0);
        assert!(!h.pointer(1, 1, 0, 10, 0, 0), "an empty screen");
        assert!(h.pointer(u32::MAX, u32::MAX, 1, 1, 0, i32::MIN));
    }

    #[test]
    fn a_flood_without_buffers_keeps_the_newest_reports_bounded() {
        let mem = memory();
        let mut q = queue(&mem, 16);
        let (mut dev, h) = active();
        for i in 0..100_000u32 {
            h.pointer(i % 1000, 5, 1000, 1000, 0, 0);
            assert!(h.pending_events() <= MAX_PENDING_EVENTS);
        }
        assert!(h.dropped_reports() > 90_000);
        post(&mem, 3);
        dev.process_queue(EVENT_QUEUE, &mut q, &mem).unwrap();
        // The first event delivered starts a whole report (ABS_X).
        assert_eq!(event_at(&mem, 0).0, EV_ABS);
        assert_eq!(event_at(&mem, 0).1, ABS_X);
        assert_eq!(event_at(&mem, 2), (EV_SYN, SYN_REPORT, 0));
    }

    #[test]
    fn bad_event_buffers_are_errors_not_writes() {
        let mem = memory();
        let (mut dev, h) = active();
        // Too small.
        let mut q = queue(&mem, 16);
        h.pointer(1, 1, 10, 10, 0, 0);
        desc(&mem, 0, DATA, 4, F_WRITE, 0);
        publish(&mem, 0, 0);
        assert!(dev.process_queue(EVENT_QUEUE, &mut q, &mem).is_err());
        // Read-only.
        let mut q = queue(&mem, 16);
        desc(&mem, 0, DATA, 8, 0, 0);
        publish(&mem, 0, 0);
        assert!(dev.process_queue(EVENT_QUEUE, &mut q, &mem).is_err());
        // Outside guest memory.
        let mut q = queue(&mem, 16);
        desc(&mem, 0, MEM_SIZE as u64 - 4, 8, F_WRITE, 0);
        publish(&mem, 0, 0);
        assert!(dev.process_queue(EVENT_QUEUE, &mut q, &mem).is_err());
        // A loop.
        let mut q = queue(&mem, 16);
        desc(&mem, 0, DATA, 8, F_WRITE | F_NEXT, 0);
        publish(&mem, 0, 0);
        assert!(dev.process_queue(EVENT_QUEUE, &mut q, &mem).is_err());
        assert_eq!(used(&mem, 0).0, 0, "nothing was completed");
        // The event that found no good buffer is still waiting.
        assert_eq!(h.pending_events(), 3);
    }

    #[test]
    fn status_queue_is_accepted_and_ignored() {
        let mem = memory();
        let mut q = queue(&mem, 16);
        let (mut dev, h) = active();
        mem.write_slice(&encode_event(0x11, 0, 1), GuestAddress(DATA))
            .unwrap();
        desc(&mem, 0, DATA, 8, 0, 0);
        publish(&mem, 0, 0);
        assert!(dev.process_queue(STATUS_QUEUE, &mut q, &mem).unwrap());
        assert_eq!(used(&mem, 0), (1, 0, 0));
        assert_eq!(h.pending_events(), 0);
        assert!(!dev.process_queue(5, &mut q, &mem).unwrap());
    }
}
