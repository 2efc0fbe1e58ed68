//! Fuzz the split virtqueue and virtio-blk request parsing: the input is a
//! small guest memory holding the descriptor table, the avail ring and the
//! buffers, so descriptors, indexes, addresses, lengths and request headers
//! are all attacker-chosen. The device must never panic and must only touch
//! guest memory and its own image.
#![no_main]

use std::sync::{Mutex, OnceLock};

use kite_devices::virtio::{BlockConfig, BlockDevice, RngDevice, VirtioDevice};
use libfuzzer_sys::fuzz_target;
use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

const MEM_SIZE: usize = 0x10000;
const QUEUE_SIZE: u16 = 16;
const DESC: u64 = 0x0;
const AVAIL: u64 = 0x100;
const USED: u64 = 0x200;

fn disk() -> &'static Mutex<BlockDevice> {
    static DISK: OnceLock<Mutex<BlockDevice>> = OnceLock::new();
    DISK.get_or_init(|| {
        let path = std::env::temp_dir().join(format!("kite-fuzz-{}.img", std::process::id()));
        let f = std::fs::File::create(&path).expect("fuzz image");
        f.set_len(64 * 512).expect("size fuzz image");
        let dev = BlockDevice::open(&BlockConfig {
            path,
            readonly: false,
        })
        .expect("open fuzz image");
        Mutex::new(dev)
    })
}

fuzz_target!(|data: &[u8]| {
    if data.is_empty() {
        return;
    }
    let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), MEM_SIZE)])
        .expect("guest memory");
    let n = data.len().min(MEM_SIZE);
    mem.write_slice(&data[..n], GuestAddress(0)).expect("fill memory");
    let mut q = Queue::new(QUEUE_SIZE).expect("queue");
    q.set_size(QUEUE_SIZE);
    q.set_desc_table_address(Some(DESC as u32), Some(0));
    q.set_avail_ring_address(Some(AVAIL as u32), Some(0));
    q.set_used_ring_address(Some(USED as u32), Some(0));
    q.set_ready(true);
    if !q.is_valid(&mem) {
        return;
    }
    // The first byte picks the device: block most of the time, else entropy.
    if data[0] & 7 != 0 {
        let mut dev = disk().lock().unwrap_or_else(|e| e.into_inner());
        let _ = dev.process_queue(0, &mut q, &mem);
    } else {
        let _ = RngDevice::new().process_queue(0, &mut q, &mem);
    }
});
