//! virtio-rng (entropy device, type 4): one queue whose device-writable
//! buffers are filled from the host's getrandom(2).

use virtio_queue::{Queue, QueueT};
use vm_memory::GuestMemoryMmap;

use super::chain::{write_regions, ChainBuffers};
use super::{VirtioDevice, VirtioError};

/// Bytes given per request at most.
const MAX_PER_REQUEST: u64 = 64 * 1024;

/// The entropy device.
#[derive(Default)]
pub struct RngDevice {}

impl RngDevice {
    pub fn new() -> RngDevice {
        RngDevice {}
    }
}

/// Fill `buf` from the host's entropy pool.
fn host_random(buf: &mut [u8]) -> bool {
    let mut done = 0;
    while done < buf.len() {
        let rest = &mut buf[done..];
        // SAFETY: getrandom writes at most `rest.len()` bytes into `rest`.
        let n = unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
        if n < 0 {
            if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return false;
        }
        done += n as usize;
    }
    true
}

impl VirtioDevice for RngDevice {
    fn device_type(&self) -> u16 {
        virtio_bindings::virtio_ids::VIRTIO_ID_RNG as u16
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[64]
    }

    fn features(&self) -> u64 {
        0
    }

    fn config_bytes(&self) -> Vec<u8> {
        Vec::new()
    }

    fn process_queue(
        &mut self,
        _index: usize,
        queue: &mut Queue,
        mem: &GuestMemoryMmap,
    ) -> Result<bool, VirtioError> {
        let mut used = false;
        while let Some(chain) = queue.pop_descriptor_chain(mem) {
            let c = ChainBuffers::parse(chain, mem)?;
            let n = c.writable_len().min(MAX_PER_REQUEST) as usize;
            let mut buf = vec![0u8; n];
            let written = if host_random(&mut buf) {
                write_regions(mem, &c.writable, 0, &buf)?;
                n as u32
            } else {
                log::warn!("virtio-rng: the host's getrandom failed; giving the guest nothing");
                0
            };
            queue
                .add_used(mem, c.head, written)
                .map_err(|_| VirtioError::BadRing)?;
            used = true;
        }
        Ok(used)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::virtio::chain::test_ring::*;
    use vm_memory::{Bytes, GuestAddress};

    #[test]
    fn fills_writable_buffers_with_random_bytes() {
        let mem = memory();
        let mut q = queue(&mem, 16);
        desc(&mem, 0, DATA, 64, F_WRITE | F_NEXT, 1);
        desc(&mem, 1, DATA + 0x100, 64, F_WRITE, 0);
        publish(&mem, 0, 0);
        let mut dev = RngDevice::new();
        assert!(dev.process_queue(0, &mut q, &mem).unwrap());
        assert_eq!(used(&mem, 0), (1, 0, 128));
        let mut a = [0u8; 64];
        let mut b = [0u8; 64];
        mem.read_slice(&mut a, GuestAddress(DATA)).unwrap();
        mem.read_slice(&mut b, GuestAddress(DATA + 0x100)).unwrap();
        assert_ne!(a, [0u8; 64]);
        assert_ne!(a, b);
    }

    #[test]
    fn a_buffer_outside_memory_is_an_error_not_a_write() {
        let mem = memory();
        let mut q = queue(&mem, 16);
        desc(&mem, 0, MEM_SIZE as u64 - 16, 64, F_WRITE, 0);
        publish(&mem, 0, 0);
        let mut dev = RngDevice::new();
        assert!(dev.process_queue(0, &mut q, &mem).is_err());
        assert_eq!(used(&mem, 0).0, 0);
    }
}
