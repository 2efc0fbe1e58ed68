//! A descriptor chain turned into checked guest buffers: the driver-readable
//! regions, then the device-writable ones, each wholly inside guest memory.
//! Everything here is guest-controlled; nothing is trusted.

use thiserror::Error;
use virtio_queue::DescriptorChain;
use vm_memory::{Address, Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};

/// The most bytes one chain may describe (the spec's 2^32 limit is far above
/// what any device here needs; this bounds the bounce buffers).
pub const MAX_CHAIN_BYTES: u64 = 64 << 20;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ChainError {
    #[error("the chain has no descriptors (bad head index)")]
    Empty,
    #[error("the chain loops, points outside the table or cannot be read")]
    Truncated,
    #[error("descriptor {addr:#x}+{len:#x} is outside guest memory")]
    OutOfRange { addr: u64, len: u32 },
    #[error("a driver-readable descriptor follows a device-writable one")]
    ReadableAfterWritable,
    #[error("the chain describes more than {MAX_CHAIN_BYTES} bytes")]
    TooLong,
    #[error("the chain has no {0} buffer of the size the request needs")]
    MissingBuffer(&'static str),
}

/// One guest buffer, known to lie inside guest memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region {
    pub addr: GuestAddress,
    pub len: u32,
}

/// A parsed chain: its head (for the used ring) and its buffers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainBuffers {
    pub head: u16,
    pub readable: Vec<Region>,
    pub writable: Vec<Region>,
}

impl ChainBuffers {
    /// Walk `chain`, checking every descriptor.
    pub fn parse(
        chain: DescriptorChain<&GuestMemoryMmap>,
        mem: &GuestMemoryMmap,
    ) -> Result<ChainBuffers, ChainError> {
        let head = chain.head_index();
        let mut out = ChainBuffers {
            head,
            readable: Vec::new(),
            writable: Vec::new(),
        };
        let mut total: u64 = 0;
        let mut last_has_next = false;
        let mut count = 0usize;
        for desc in chain {
            count += 1;
            last_has_next = desc.has_next();
            let region = Region {
                addr: desc.addr(),
                len: desc.len(),
            };
            total += u64::from(region.len);
            if total > MAX_CHAIN_BYTES {
                return Err(ChainError::TooLong);
            }
            if region.len > 0
                && !GuestMemoryBackend::check_range(mem, region.addr, region.len as usize)
            {
                return Err(ChainError::OutOfRange {
                    addr: region.addr.0,
                    len: region.len,
                });
            }
            if desc.is_write_only() {
                out.writable.push(region);
            } else if !out.writable.is_empty() {
                return Err(ChainError::ReadableAfterWritable);
            } else {
                out.readable.push(region);
            }
        }
        if count == 0 {
            return Err(ChainError::Empty);
        }
        // The iterator stops quietly on a loop (its time-to-live runs out), a
        // next index past the table or an unreadable descriptor: the last
        // descriptor it gave then still says "next".
        if last_has_next {
            return Err(ChainError::Truncated);
        }
        Ok(out)
    }

    /// Total bytes the driver gave to read.
    pub fn readable_len(&self) -> u64 {
        self.readable.iter().map(|r| u64::from(r.len)).sum()
    }

    /// Total bytes the device may write.
    pub fn writable_len(&self) -> u64 {
        self.writable.iter().map(|r| u64::from(r.len)).sum()
    }
}

/// Read `buf.len()` bytes starting `skip` bytes into `regions`.
pub fn read_regions(
    mem: &GuestMemoryMmap,
    regions: &[Region],
    mut skip: u64,
    buf: &mut [u8],
) -> Result<(), ChainError> {
    let mut done = 0usize;
    for r in regions {
        if done == buf.len() {
            break;
        }
        let len = u64::from(r.len);
        if skip >= len {
            skip -= len;
            continue;
        }
        let n = ((len - skip) as usize).min(buf.len() - done);
        let addr = r
            .addr
            .checked_add(skip)
            .ok_or(ChainError::MissingBuffer("readable"))?;
        mem.read_slice(&mut buf[done..done + n], addr)
            .map_err(|_| ChainError::OutOfRange {
                addr: addr.0,
                len: n as u32,
            })?;
        done += n;
        skip = 0;
    }
    if done == buf.len() {
        Ok(())
    } else {
        Err(ChainError::MissingBuffer("readable"))
    }
}

/// Write `buf` starting `skip` bytes into `regions`.
pub fn write_regions(
    mem: &GuestMemoryMmap,
    regions: &[Region],
    mut skip: u64,
    buf: &[u8],
) -> Result<(), ChainError> {
    let mut done = 0usize;
    for r in regions {
        if done == buf.len() {
            break;
        }
        let len = u64::from(r.len);
        if skip >= len {
            skip -= len;
            continue;
        }
        let n = ((len - skip) as usize).min(buf.len() - done);
        let addr = r
            .addr
            .checked_add(skip)
            .ok_or(ChainError::MissingBuffer("writable"))?;
        mem.write_slice(&buf[done..done + n], addr)
            .map_err(|_| ChainError::OutOfRange {
                addr: addr.0,
                len: n as u32,
            })?;
        done += n;
        skip = 0;
    }
    if done == buf.len() {
        Ok(())
    } else {
        Err(ChainError::MissingBuffer("writable"))
    }
}

#[cfg(test)]
pub(crate) mod test_ring {
    //! A tiny split-ring driver for tests: descriptors, avail ring and used
    //! ring at fixed places in a small guest memory.
    use virtio_queue::{Queue, QueueT};
    use vm_memory::{Address, Bytes, GuestAddress, GuestMemoryMmap};

    pub const DESC: u64 = 0x1000;
    pub const AVAIL: u64 = 0x2000;
    pub const USED: u64 = 0x3000;
    pub const DATA: u64 = 0x10000;
    pub const MEM_SIZE: usize = 0x40000;
    pub const F_NEXT: u16 = 1;
    pub const F_WRITE: u16 = 2;

    pub fn memory() -> GuestMemoryMmap {
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), MEM_SIZE)]).unwrap()
    }

    pub fn queue(mem: &GuestMemoryMmap, size: u16) -> Queue {
        let mut q = Queue::new(size).unwrap();
        q.set_size(size);
        q.set_desc_table_address(Some(DESC as u32), Some(0));
        q.set_avail_ring_address(Some(AVAIL as u32), Some(0));
        q.set_used_ring_address(Some(USED as u32), Some(0));
        q.set_ready(true);
        assert!(q.is_valid(mem));
        q
    }

    /// Write descriptor `i`.
    pub fn desc(mem: &GuestMemoryMmap, i: u16, addr: u64, len: u32, flags: u16, next: u16) {
        let at = GuestAddress(DESC + 16 * u64::from(i));
        mem.write_obj(addr, at).unwrap();
        mem.write_obj(len, at.unchecked_add(8)).unwrap();
        mem.write_obj(flags, at.unchecked_add(12)).unwrap();
        mem.write_obj(next, at.unchecked_add(14)).unwrap();
    }

    /// Make chain `head` available as avail entry `slot` (avail idx = slot + 1).
    pub fn publish(mem: &GuestMemoryMmap, slot: u16, head: u16) {
        mem.write_obj(head, GuestAddress(AVAIL + 4 + 2 * u64::from(slot)))
            .unwrap();
        mem.write_obj(slot + 1, GuestAddress(AVAIL + 2)).unwrap();
    }

    /// The used ring's index and its entry `slot` (id, len).
    pub fn used(mem: &GuestMemoryMmap, slot: u16) -> (u16, u32, u32) {
        let idx: u16 = mem.read_obj(GuestAddress(USED + 2)).unwrap();
        let at = GuestAddress(USED + 4 + 8 * u64::from(slot));
        let id: u32 = mem.read_obj(at).unwrap();
        let len: u32 = mem.read_obj(at.unchecked_add(4)).unwrap();
        (idx, id, len)
    }
}

#[cfg(test)]
mod tests {
    use super::test_ring::*;
    use super::*;
    use virtio_queue::QueueT;

    fn pop(mem: &GuestMemoryMmap) -> Result<ChainBuffers, ChainError> {
        let mut q = queue(mem, 16);
        let chain = q.pop_descriptor_chain(mem).expect("a chain is available");
        ChainBuffers::parse(chain, mem)
    }

    #[test]
    fn a_good_chain_gives_its_regions() {
        let mem = memory();
        desc(&mem, 0, DATA, 16, F_NEXT, 1);
        desc(&mem, 1, DATA + 0x100, 512, F_NEXT | F_WRITE, 2);
        desc(&mem, 2, DATA + 0x400, 1, F_WRITE, 0);
        publish(&mem, 0, 0);
        let c = pop(&mem).unwrap();
        assert_eq!(c.head, 0);
        assert_eq!(c.readable.len(), 1);
        assert_eq!(c.writable.len(), 2);
        assert_eq!(c.readable_len(), 16);
        assert_eq!(c.writable_len(), 513);
    }

    #[test]
    fn a_loop_is_refused() {
        let mem = memory();
        desc(&mem, 0, DATA, 16, F_NEXT, 1);
        desc(&mem, 1, DATA, 16, F_NEXT, 0);
        publish(&mem, 0, 0);
        assert_eq!(pop(&mem), Err(ChainError::Truncated));
    }

    #[test]
    fn a_next_past_the_table_is_refused() {
        let mem = memory();
        desc(&mem, 0, DATA, 16, F_NEXT, 500);
        publish(&mem, 0, 0);
        assert_eq!(pop(&mem), Err(ChainError::Truncated));
    }

    #[test]
    fn a_head_past_the_table_is_refused() {
        let mem = memory();
        publish(&mem, 0, 40);
        assert_eq!(pop(&mem), Err(ChainError::Empty));
    }

    #[test]
    fn out_of_range_addresses_are_refused() {
        let mem = memory();
        desc(&mem, 0, MEM_SIZE as u64 - 8, 16, 0, 0);
        publish(&mem, 0, 0);
        assert!(matches!(pop(&mem), Err(ChainError::OutOfRange { .. })));
        desc(&mem, 0, u64::MAX - 4, 16, 0, 0);
        assert!(matches!(pop(&mem), Err(ChainError::OutOfRange { .. })));
    }

    #[test]
    fn huge_lengths_are_refused() {
        let mem = memory();
        desc(&mem, 0, DATA, u32::MAX, 0, 0);
        publish(&mem, 0, 0);
        assert_eq!(pop(&mem), Err(ChainError::TooLong));
    }

    #[test]
    fn readable_after_writable_is_refused() {
        let mem = memory();
        desc(&mem, 0, DATA, 16, F_WRITE | F_NEXT, 1);
        desc(&mem, 1, DATA + 16, 16, 0, 0);
        publish(&mem, 0, 0);
        assert_eq!(pop(&mem), Err(ChainError::ReadableAfterWritable));
    }

    #[test]
    fn region_reads_and_writes_span_descriptors() {
        let mem = memory();
        let regions = [
            Region {
                addr: GuestAddress(DATA),
                len: 3,
            },
            Region {
                addr: GuestAddress(DATA + 0x100),
                len: 5,
            },
        ];
        write_regions(&mem, &regions, 1, &[1, 2, 3, 4, 5, 6]).unwrap();
        let mut b = [0u8; 7];
        read_regions(&mem, &regions, 1, &mut b).unwrap();
        assert_eq!(b, [1, 2, 3, 4, 5, 6, 0]);
        assert!(read_regions(&mem, &regions, 2, &mut [0u8; 7]).is_err());
        assert!(write_regions(&mem, &regions, 0, &[0u8; 9]).is_err());
    }
}
