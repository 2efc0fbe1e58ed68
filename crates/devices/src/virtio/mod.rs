//! Virtio devices (virtio 1.2) behind the modern PCI transport: the transport
//! itself (`pci_transport`), guest-hostile descriptor chain parsing
//! (`chain`), and the devices: block (`block`), entropy (`rng`), network over a tap
//! (`net`) and the input tablet (`input`).
//!
//! Split virtqueues come from the rust-vmm `virtio-queue` crate; everything a
//! guest writes (ring indexes, descriptor addresses and lengths) is checked
//! before it is used, and a malformed chain puts the device into its
//! DEVICE_NEEDS_RESET state instead of panicking.

pub mod block;
pub mod chain;
pub mod input;
pub mod net;
pub mod pci_transport;
pub mod rng;

pub use block::{BlockConfig, BlockDevice};
pub use chain::{ChainBuffers, ChainError};
pub use input::{TabletDevice, TabletHandle};
pub use net::{NetDevice, Tap, TapError};
pub use pci_transport::VirtioPciDevice;
pub use rng::RngDevice;

use thiserror::Error;

use crate::state::{StateError, StateReader, StateWriter};
use virtio_queue::Queue;
use vm_memory::GuestMemoryMmap;

/// The VIRTIO_F_VERSION_1 feature bit: every device here is a modern one.
pub const VIRTIO_F_VERSION_1: u64 = 1 << virtio_bindings::virtio_config::VIRTIO_F_VERSION_1;

/// Why a device stopped processing a queue: the guest broke the protocol.
#[derive(Debug, Error)]
pub enum VirtioError {
    #[error("malformed descriptor chain: {0}")]
    Chain(#[from] ChainError),
    #[error("the queue's rings are not in guest memory or its avail index is bad")]
    BadRing,
    #[error("a request's header or buffer could not be accessed in guest memory")]
    GuestMemory,
}

/// A device type behind a virtio transport.
pub trait VirtioDevice: Send {
    /// The virtio device id (2 = block, 4 = entropy, 1 = network).
    fn device_type(&self) -> u16;
    /// The largest size of each of the device's queues.
    fn queue_max_sizes(&self) -> &[u16];
    /// Device feature bits, without the transport's VIRTIO_F_VERSION_1.
    fn features(&self) -> u64;
    /// The device-specific configuration space, little endian.
    fn config_bytes(&self) -> Vec<u8>;
    /// A driver write into the device-specific configuration space.
    fn write_config(&mut self, _offset: u64, _data: &[u8]) {}
    /// The driver set DRIVER_OK with these features.
    fn activate(&mut self, _features: u64) {}
    /// The driver reset the device.
    fn reset(&mut self) {}
    /// The device's own state beyond the transport's (queues, features and
    /// status are the transport's), for a snapshot; nothing by default.
    /// Requests are handled synchronously, so none is in flight when a
    /// snapshot is taken with the vCPUs parked.
    fn save_state(&self, _w: &mut StateWriter) {}
    /// Restore what `save_state` wrote (after the transport re-activated
    /// the device with its saved features).
    fn restore_state(&mut self, _r: &mut StateReader<'_>) -> Result<(), StateError> {
        Ok(())
    }
    /// As `Snapshot::set_images_active`: let go of (or take back) the
    /// device's host resources another process needs.
    fn set_images_active(&mut self, _active: bool) -> Result<(), String> {
        Ok(())
    }
    /// Handle whatever the driver made available on queue `index`; returns
    /// whether anything was added to the used ring.
    fn process_queue(
        &mut self,
        index: usize,
        queue: &mut Queue,
        mem: &GuestMemoryMmap,
    ) -> Result<bool, VirtioError>;
}
