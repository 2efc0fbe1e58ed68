//! virtio-net (type 1): queue 0 receives, queue 1 transmits; frames carry
//! the 12-byte virtio-net header (no offloads). The guest's TX notification
//! hands frames to a [`NetBackend`] on the vCPU thread (a host tap, or the
//! user-mode network stack in `user`); a backend thread (the machine's) puts
//! frames for the guest into `rx_frames` and asks the transport to run
//! queue 0.

pub mod tap;
pub mod user;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use virtio_queue::{Queue, QueueT};
use vm_memory::GuestMemoryMmap;

pub use tap::{Tap, TapError};

use super::chain::{read_regions, write_regions, ChainBuffers};
use super::{VirtioDevice, VirtioError};
use crate::bus::lock;

pub const RX_QUEUE: usize = 0;
pub const TX_QUEUE: usize = 1;
const QUEUE_SIZE: u16 = 256;
/// virtio_net_hdr_v1 (VERSION_1 always has num_buffers).
pub const NET_HDR_LEN: usize = 12;
/// Largest Ethernet frame without offloads (plus VLAN tag).
pub const MAX_FRAME: usize = 1518;
/// Frames held for the guest while it has no receive buffers.
const MAX_PENDING: usize = 256;
const VIRTIO_NET_F_MAC: u64 = 1 << 5;
const VIRTIO_NET_F_STATUS: u64 = 1 << 16;
const VIRTIO_NET_S_LINK_UP: u16 = 1;

/// Frames from the host waiting for the guest.
pub type RxFrames = Arc<Mutex<VecDeque<Vec<u8>>>>;

/// Where the guest's transmitted frames go.
pub trait NetBackend: Send + Sync {
    /// Take one Ethernet frame from the guest (dropped on failure).
    fn transmit_frame(&self, frame: &[u8]);
}

impl NetBackend for Tap {
    fn transmit_frame(&self, frame: &[u8]) {
        if let Err(e) = self.send(frame) {
            log::debug!("virtio-net: tap write failed: {e}");
        }
    }
}

/// The network device.
pub struct NetDevice {
    backend: Arc<dyn NetBackend>,
    mac: [u8; 6],
    rx_frames: RxFrames,
}

impl NetDevice {
    pub fn new(backend: Arc<dyn NetBackend>, mac: [u8; 6]) -> NetDevice {
        NetDevice {
            backend,
            mac,
            rx_frames: Arc::new(Mutex::new(VecDeque::new())),
        }
    }

    /// Where the backend thread puts received frames.
    pub fn rx_frames(&self) -> RxFrames {
        self.rx_frames.clone()
    }

    /// Queue a frame for the guest (the oldest is dropped when full).
    pub fn push_rx(frames: &RxFrames, frame: Vec<u8>) {
        let mut q = lock(frames);
        if q.len() >= MAX_PENDING {
            q.pop_front();
        }
        q.push_back(frame);
    }

    fn receive(&mut self, queue: &mut Queue, mem: &GuestMemoryMmap) -> Result<bool, VirtioError> {
        let mut used = false;
        loop {
            let Some(frame) = lock(&self.rx_frames).pop_front() else {
                break;
            };
            let Some(chain) = queue.pop_descriptor_chain(mem) else {
                // No buffer: keep the frame for the next notification.
                lock(&self.rx_frames).push_front(frame);
                break;
            };
            let c = ChainBuffers::parse(chain, mem)?;
            let total = NET_HDR_LEN + frame.len();
            let len = if c.writable_len() >= total as u64 {
                let mut hdr = [0u8; NET_HDR_LEN];
                hdr[10] = 1; // num_buffers
                write_regions(mem, &c.writable, 0, &hdr)?;
                write_regions(mem, &c.writable, NET_HDR_LEN as u64, &frame)?;
                total as u32
            } else {
                log::debug!("virtio-net: receive buffer too small; frame dropped");
                0
            };
            queue
                .add_used(mem, c.head, len)
                .map_err(|_| VirtioError::BadRing)?;
            used = true;
        }
        Ok(used)
    }

    fn transmit(&mut self, queue: &mut Queue, mem: &GuestMemoryMmap) -> Result<bool, VirtioError> {
        let mut used = false;
        while let Some(chain) = queue.pop_descriptor_chain(mem) {
            let c = ChainBuffers::parse(chain, mem)?;
            let len = c.readable_len();
            if len >= NET_HDR_LEN as u64 && len - NET_HDR_LEN as u64 <= (MAX_FRAME + 4) as u64 {
                let mut frame = vec![0u8; (len - NET_HDR_LEN as u64) as usize];
                read_regions(mem, &c.readable, NET_HDR_LEN as u64, &mut frame)?;
                self.backend.transmit_frame(&frame);
            } else {
                log::debug!("virtio-net: dropping a {len}-byte transmit buffer");
            }
            queue
                .add_used(mem, c.head, 0)
                .map_err(|_| VirtioError::BadRing)?;
            used = true;
        }
        Ok(used)
    }
}

impl VirtioDevice for NetDevice {
    fn device_type(&self) -> u16 {
        1
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[QUEUE_SIZE, QUEUE_SIZE]
    }

    fn features(&self) -> u64 {
        VIRTIO_NET_F_MAC | VIRTIO_NET_F_STATUS
    }

    fn config_bytes(&self) -> Vec<u8> {
        let mut c = self.mac.to_vec();
        c.extend_from_slice(&VIRTIO_NET_S_LINK_UP.to_le_bytes());
        c
    }

    fn reset(&mut self) {
        lock(&self.rx_frames).clear();
    }

    fn process_queue(
        &mut self,
        index: usize,
        queue: &mut Queue,
        mem: &GuestMemoryMmap,
    ) -> Result<bool, VirtioError> {
        match index {
            RX_QUEUE => self.receive(queue, mem),
            TX_QUEUE => self.transmit(queue, mem),
            _ => Ok(false),
        }
    }
}

#[cfg(test)]
mod tests;
