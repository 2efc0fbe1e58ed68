//! Virtqueue harnesses: a 64 KiB guest memory holding one split queue's
//! descriptor table, avail and used rings, and the buffers; the input
//! writes descriptors, memory and ring indexes, then notifies the device.
//! One harness per device (block, net, input, entropy) plus the chain
//! walker alone.
//!
//! Checked beyond "no panic": the used index moves by no more than the
//! chains the driver made available, every used length fits in guest
//! memory, the chain walker's buffers all lie inside guest memory and add
//! up to at most its bound, and after the hostile input a fresh, well-formed
//! request on a reset queue is still answered.
//!
//! It must not know the PCI transport (see `pci`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use kite_devices::virtio::net::NetBackend;
use kite_devices::virtio::{
    BlockConfig, BlockDevice, ChainBuffers, NetDevice, RngDevice, TabletDevice, VirtioDevice,
};
use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};

use crate::input::Input;
use crate::support::{guest_memory, scratch_image};

const MEM_SIZE: usize = 0x1_0000;
const QUEUE_SIZE: u16 = 16;
const DESC: u64 = 0x0;
const AVAIL: u64 = 0x100;
const USED: u64 = 0x200;
/// Buffers the harness's own well-formed requests use.
const SAFE_BUF: u64 = 0x8000;

/// A queue over guest memory as a driver would set it up.
struct Rig {
    mem: GuestMemoryMmap,
    queue: Queue,
    avail_idx: u16,
}

impl Rig {
    fn new() -> Rig {
        let mem = guest_memory(MEM_SIZE);
        let queue = fresh_queue();
        Rig {
            mem,
            queue,
            avail_idx: 0,
        }
    }

    fn reset_queue(&mut self) {
        self.queue = fresh_queue();
        self.avail_idx = 0;
        let _ = self.mem.write_obj(0u16, GuestAddress(AVAIL + 2));
        let _ = self.mem.write_obj(0u16, GuestAddress(USED + 2));
    }

    fn desc(&self, i: u16, addr: u64, len: u32, flags: u16, next: u16) {
        let at = DESC + 16 * u64::from(i % QUEUE_SIZE);
        let _ = self.mem.write_obj(addr, GuestAddress(at));
        let _ = self.mem.write_obj(len, GuestAddress(at + 8));
        let _ = self.mem.write_obj(flags, GuestAddress(at + 12));
        let _ = self.mem.write_obj(next, GuestAddress(at + 14));
    }

    fn publish(&mut self, head: u16) {
        let slot = u64::from(self.avail_idx % QUEUE_SIZE);
        let _ = self.mem.write_obj(head, GuestAddress(AVAIL + 4 + 2 * slot));
        self.avail_idx = self.avail_idx.wrapping_add(1);
        let _ = self.mem.write_obj(self.avail_idx, GuestAddress(AVAIL + 2));
    }

    fn used_idx(&self) -> u16 {
        self.mem.read_obj(GuestAddress(USED + 2)).unwrap_or(0)
    }

    /// Notify `dev` on queue `index` and check what it put in the used ring.
    fn notify(&mut self, dev: &mut dyn VirtioDevice, index: usize) {
        // The queue's own counters: the guest may scribble over the rings,
        // and the device's own writes may land on them (a buffer over the
        // avail index is the guest's choice), so compare with what it popped.
        let before = self.queue.next_used();
        let popped_before = self.queue.next_avail();
        let _ = dev.process_queue(index, &mut self.queue, &self.mem);
        let added = self.queue.next_used().wrapping_sub(before);
        let popped = self.queue.next_avail().wrapping_sub(popped_before);
        assert!(
            added <= popped,
            "the device used {added} chains, it took {popped} from the ring"
        );
        // Only the last element is the device's for sure: a later chain's
        // buffer may lie over the used ring (the guest's choice) and the
        // device then writes data over the earlier elements.
        if added > 0 {
            let slot = u64::from(before.wrapping_add(added - 1) % QUEUE_SIZE);
            let len: u32 = self
                .mem
                .read_obj(GuestAddress(USED + 4 + 8 * slot + 4))
                .unwrap_or(0);
            assert!(
                (len as usize) <= MEM_SIZE,
                "a used length ({len}) larger than guest memory"
            );
        }
    }
}

fn fresh_queue() -> Queue {
    let mut q = match Queue::new(QUEUE_SIZE) {
        Ok(q) => q,
        Err(e) => panic!("harness setup: queue: {e:?}"),
    };
    q.set_size(QUEUE_SIZE);
    q.set_desc_table_address(Some(DESC as u32), Some(0));
    q.set_avail_ring_address(Some(AVAIL as u32), Some(0));
    q.set_used_ring_address(Some(USED as u32), Some(0));
    q.set_ready(true);
    q
}

/// An address the input picks: mostly inside guest memory, sometimes
/// anywhere (past the end, wrapping).
fn addr(inp: &mut Input) -> u64 {
    match inp.u8() & 7 {
        0 => inp.u64(),
        1 => MEM_SIZE as u64 - u64::from(inp.u8()),
        _ => u64::from(inp.u16()),
    }
}

fn len(inp: &mut Input) -> u32 {
    match inp.u8() & 3 {
        0 => inp.u32(),
        _ => u32::from(inp.u16() & 0x1fff),
    }
}

/// The shared operation loop; `extra` handles device-specific operations.
fn drive(
    inp: &mut Input,
    rig: &mut Rig,
    dev: &mut dyn VirtioDevice,
    queues: usize,
    mut extra: impl FnMut(&mut Input, &mut Rig, &mut dyn VirtioDevice),
) {
    let mut ops = 0;
    while !inp.is_empty() && ops < 256 {
        ops += 1;
        match inp.u8() % 8 {
            0 => {
                let at = u64::from(inp.u16());
                let n = usize::from(inp.u8());
                let b = inp.bytes(n);
                let _ = rig.mem.write_slice(b, GuestAddress(at));
            }
            1 | 2 => {
                let i = inp.u16();
                let a = addr(inp);
                let l = len(inp);
                let flags = inp.u16() & 7;
                let next = inp.u16();
                rig.desc(i, a, l, flags, next);
            }
            3 => {
                let head = inp.u16();
                rig.publish(if head & 0x8000 != 0 {
                    head
                } else {
                    head % QUEUE_SIZE
                });
            }
            4 | 5 => {
                let q = usize::from(inp.u8()) % (queues + 1);
                rig.notify(dev, q);
            }
            6 => {
                // A raw avail index: the driver claims chains it never wrote.
                let idx = inp.u16();
                let _ = rig.mem.write_obj(idx, GuestAddress(AVAIL + 2));
            }
            _ => extra(inp, rig, dev),
        }
    }
}

/// The chain walker alone: every buffer it returns is in guest memory and
/// the chain's total is bounded.
pub fn virtio_chain(data: &[u8]) {
    let mut inp = Input::new(data);
    let mut rig = Rig::new();
    let n = usize::from(inp.u8() % 17);
    for i in 0..n {
        let a = addr(&mut inp);
        let l = len(&mut inp);
        let flags = inp.u16() & 7;
        let next = inp.u16();
        rig.desc(i as u16, a, l, flags, next);
    }
    let heads = usize::from(inp.u8() % 8) + 1;
    for _ in 0..heads {
        let h = inp.u16() % (QUEUE_SIZE + 2);
        rig.publish(h);
    }
    while let Some(chain) = rig.queue.pop_descriptor_chain(&rig.mem) {
        if let Ok(c) = ChainBuffers::parse(chain, &rig.mem) {
            let mut total = 0u64;
            for r in c.readable.iter().chain(c.writable.iter()) {
                if r.len > 0 {
                    assert!(
                        GuestMemoryBackend::check_range(&rig.mem, r.addr, r.len as usize),
                        "a parsed buffer outside guest memory"
                    );
                }
                total += u64::from(r.len);
            }
            assert!(total <= MEM_SIZE as u64 * u64::from(QUEUE_SIZE));
            assert_eq!(total, c.readable_len() + c.writable_len());
        }
    }
}

/// virtio-blk: requests (type, sector, buffers) of the input's choosing
/// against a 32 KiB image; then a well-formed GET_ID must still complete.
pub fn virtio_blk(data: &[u8]) {
    let path = scratch_image("blk", 64 * 512);
    let mut dev = match BlockDevice::open(&BlockConfig {
        path,
        readonly: data.first().is_some_and(|b| b & 0x80 != 0),
    }) {
        Ok(d) => d,
        Err(e) => panic!("harness setup: block image: {e}"),
    };
    let mut inp = Input::new(data);
    let mut rig = Rig::new();
    drive(&mut inp, &mut rig, &mut dev, 1, |inp, rig, _| {
        // A request header at a chosen place: a type near the known ones, a
        // sector near the end of the disk or anywhere.
        let at = u64::from(inp.u16());
        let t = inp.u32() % 16;
        let sector = match inp.u8() & 3 {
            0 => inp.u64(),
            _ => u64::from(inp.u8()),
        };
        let _ = rig.mem.write_obj(t, GuestAddress(at));
        let _ = rig.mem.write_obj(sector, GuestAddress(at + 8));
    });
    // Still answers: a GET_ID (type 8) request on a fresh queue.
    let mut rig = Rig::new();
    let _ = rig.mem.write_obj(8u32, GuestAddress(SAFE_BUF));
    let _ = rig.mem.write_obj(0u64, GuestAddress(SAFE_BUF + 8));
    let _ = rig.mem.write_obj(0xffu8, GuestAddress(SAFE_BUF + 0x100));
    rig.desc(0, SAFE_BUF, 16, 1, 1);
    rig.desc(1, SAFE_BUF + 0x40, 20, 3, 2);
    rig.desc(2, SAFE_BUF + 0x100, 1, 2, 0);
    rig.publish(0);
    let _ = dev.process_queue(0, &mut rig.queue, &rig.mem);
    assert_eq!(rig.used_idx(), 1, "virtio-blk stopped answering");
    let status: u8 = rig
        .mem
        .read_obj(GuestAddress(SAFE_BUF + 0x100))
        .unwrap_or(0xff);
    assert_eq!(status, 0, "GET_ID after hostile input did not succeed");
}

/// Counts the frames the guest sent and checks their size.
#[derive(Default)]
struct CountingBackend {
    frames: AtomicU64,
}

impl NetBackend for CountingBackend {
    fn transmit_frame(&self, frame: &[u8]) {
        assert!(
            frame.len() <= MEM_SIZE,
            "a transmitted frame larger than guest memory"
        );
        self.frames.fetch_add(1, Ordering::Relaxed);
    }
}

/// virtio-net: transmit chains of the input's making, and received frames
/// (pushed by the input) into its receive buffers.
pub fn virtio_net(data: &[u8]) {
    let backend = Arc::new(CountingBackend::default());
    let mut dev = NetDevice::new(backend.clone(), [0x52, 0x54, 0, 0x12, 0x34, 0x56]);
    let frames = dev.rx_frames();
    let mut inp = Input::new(data);
    let mut rig = Rig::new();
    drive(&mut inp, &mut rig, &mut dev, 2, |inp, _, _| {
        let n = usize::from(inp.u16() & 0x7ff);
        NetDevice::push_rx(&frames, inp.bytes(n).to_vec());
    });
    // The pending receive queue stays bounded whatever the guest does.
    assert!(frames.lock().map(|q| q.len()).unwrap_or(0) <= 1024);
    // Still answers: one transmit of a 14-byte frame after a 12-byte header.
    let mut rig = Rig::new();
    let sent = backend.frames.load(Ordering::Relaxed);
    rig.desc(0, SAFE_BUF, 12 + 14, 0, 0);
    rig.publish(0);
    let _ = dev.process_queue(1, &mut rig.queue, &rig.mem);
    assert_eq!(rig.used_idx(), 1, "virtio-net stopped answering");
    assert_eq!(backend.frames.load(Ordering::Relaxed), sent + 1);
}

/// virtio-input (the tablet): event and status queues, config selects, and
/// pointer reports queued by the host side.
pub fn virtio_input(data: &[u8]) {
    let (mut dev, handle) = TabletDevice::new();
    dev.activate(0);
    let mut inp = Input::new(data);
    let mut rig = Rig::new();
    drive(&mut inp, &mut rig, &mut dev, 2, |inp, _, dev| {
        match inp.u8() & 3 {
            0 => {
                let (x, y, w, h) = (inp.u32(), inp.u32(), inp.u16(), inp.u16());
                let (b, wheel) = (inp.u8(), inp.u32() as i32);
                handle.pointer(x, y, u32::from(w), u32::from(h), b, wheel);
            }
            1 => {
                let off = u64::from(inp.u8());
                let v = inp.value(2);
                dev.write_config(off, &v);
                let cfg = dev.config_bytes();
                assert!(cfg.len() <= 256, "input config space grew to {}", cfg.len());
            }
            2 => dev.reset(),
            _ => dev.activate(0),
        }
    });
    assert!(
        handle.pending_events() <= 4096,
        "{} events pending: the queue is unbounded",
        handle.pending_events()
    );
}

/// virtio-rng: the entropy device fills whatever writable buffers it gets.
pub fn virtio_rng(data: &[u8]) {
    let mut dev = RngDevice::new();
    let mut inp = Input::new(data);
    let mut rig = Rig::new();
    drive(&mut inp, &mut rig, &mut dev, 1, |_, _, _| {});
    rig.reset_queue();
    let _ = rig.mem.write_slice(&[0u8; 64], GuestAddress(SAFE_BUF));
    rig.desc(0, SAFE_BUF, 64, 2, 0);
    rig.publish(0);
    let _ = dev.process_queue(0, &mut rig.queue, &rig.mem);
    assert_eq!(rig.used_idx(), 1, "virtio-rng stopped answering");
}
