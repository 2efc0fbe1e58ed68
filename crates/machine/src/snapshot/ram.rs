//! Guest RAM in a snapshot: one section per RAM range, holding the range's
//! base and size and then its non-zero 4 KiB pages (index, bytes), in
//! ascending order. Pages absent are zero. Delta sections (live migration)
//! carry pages to overwrite and say nothing of the others.
//!
//! It must not know the stream's framing, nor devices.

use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};

pub const PAGE: usize = 4096;
const RECORD: usize = 8 + PAGE;

/// The RAM ranges (base, size) of `mem`, in order.
pub fn ranges(mem: &GuestMemoryMmap) -> Vec<(u64, u64)> {
    mem.iter().map(|r| (r.start_addr().0, r.len())).collect()
}

fn is_zero(page: &[u8]) -> bool {
    page.iter().all(|&b| b == 0)
}

/// The indices of the non-zero pages of range (`base`, `size`), or of the
/// pages in `only` (a delta) whatever they hold.
pub fn pages_to_send(
    mem: &GuestMemoryMmap,
    base: u64,
    size: u64,
    only: Option<&[u64]>,
) -> Vec<u64> {
    let count = size / PAGE as u64;
    let mut page = [0u8; PAGE];
    match only {
        Some(list) => list.iter().copied().filter(|&i| i < count).collect(),
        None => (0..count)
            .filter(|&i| {
                mem.read_slice(&mut page, GuestAddress(base + i * PAGE as u64))
                    .is_ok()
                    && !is_zero(&page)
            })
            .collect(),
    }
}

/// A check value of page `page` of the range at `base`.
pub fn page_sum(mem: &GuestMemoryMmap, base: u64, page: u64) -> u32 {
    let mut buf = [0u8; PAGE];
    match mem.read_slice(&mut buf, GuestAddress(base + page * PAGE as u64)) {
        Ok(()) => crc32fast::hash(&buf),
        Err(_) => 0,
    }
}

/// The check value of every page of range (`base`, `size`).
pub fn page_sums(mem: &GuestMemoryMmap, base: u64, size: u64) -> Vec<u32> {
    (0..size / PAGE as u64)
        .map(|p| page_sum(mem, base, p))
        .collect()
}

/// The payload length for `pages`.
pub fn payload_len(pages: &[u64]) -> u64 {
    16 + (pages.len() * RECORD) as u64
}

/// Write the payload for `pages` of range (`base`, `size`) through `sink`.
pub fn write_pages(
    mem: &GuestMemoryMmap,
    base: u64,
    size: u64,
    pages: &[u64],
    sink: &mut dyn FnMut(&[u8]) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let mut head = [0u8; 16];
    head[..8].copy_from_slice(&base.to_le_bytes());
    head[8..].copy_from_slice(&size.to_le_bytes());
    sink(&head)?;
    let mut rec = vec![0u8; RECORD];
    for &i in pages {
        rec[..8].copy_from_slice(&i.to_le_bytes());
        mem.read_slice(&mut rec[8..], GuestAddress(base + i * PAGE as u64))
            .map_err(|e| std::io::Error::other(format!("reading guest RAM: {e}")))?;
        sink(&rec)?;
    }
    Ok(())
}

/// A RAM payload, checked against the machine's ranges.
pub struct RamPages<'a> {
    pub base: u64,
    pub size: u64,
    data: &'a [u8],
}

impl<'a> RamPages<'a> {
    /// Check `payload` (a range this machine has, pages inside it, in
    /// ascending order) without touching memory.
    pub fn parse(payload: &'a [u8], ranges: &[(u64, u64)]) -> Result<RamPages<'a>, String> {
        if payload.len() < 16 || !(payload.len() - 16).is_multiple_of(RECORD) {
            return Err(format!(
                "a RAM section of {} bytes is not whole pages",
                payload.len()
            ));
        }
        let word = |at: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&payload[at..at + 8]);
            u64::from_le_bytes(a)
        };
        let (base, size) = (word(0), word(8));
        if !ranges.contains(&(base, size)) {
            return Err(format!(
                "the snapshot has RAM at {base:#x} ({} MiB), this machine does not",
                size >> 20
            ));
        }
        let p = RamPages {
            base,
            size,
            data: &payload[16..],
        };
        let count = size / PAGE as u64;
        let mut last: Option<u64> = None;
        for (i, _) in p.iter() {
            if i >= count || last.is_some_and(|l| i <= l) {
                return Err(format!(
                    "RAM page {i} at {base:#x} is out of range or out of order"
                ));
            }
            last = Some(i);
        }
        Ok(p)
    }

    /// (page index, bytes) in order.
    pub fn iter(&self) -> impl Iterator<Item = (u64, &'a [u8])> + 'a {
        self.data.chunks_exact(RECORD).map(|r| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&r[..8]);
            (u64::from_le_bytes(a), &r[8..])
        })
    }

    /// Make the range hold exactly these pages (others zero).
    pub fn apply_full(&self, mem: &GuestMemoryMmap) -> Result<(), String> {
        let count = self.size / PAGE as u64;
        let mut next = self.iter().peekable();
        let mut page = [0u8; PAGE];
        let zero = [0u8; PAGE];
        for i in 0..count {
            let gpa = GuestAddress(self.base + i * PAGE as u64);
            match next.peek() {
                Some(&(j, bytes)) if j == i => {
                    mem.write_slice(bytes, gpa).map_err(|e| e.to_string())?;
                    next.next();
                }
                _ => {
                    // Reading an untouched page costs nothing; zero only
                    // what the fresh build wrote (the kernel, tables).
                    mem.read_slice(&mut page, gpa).map_err(|e| e.to_string())?;
                    if !is_zero(&page) {
                        mem.write_slice(&zero, gpa).map_err(|e| e.to_string())?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Overwrite these pages only.
    pub fn apply_delta(&self, mem: &GuestMemoryMmap) -> Result<(), String> {
        for (i, bytes) in self.iter() {
            mem.write_slice(bytes, GuestAddress(self.base + i * PAGE as u64))
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mem() -> GuestMemoryMmap {
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 64 * PAGE)]).unwrap()
    }

    fn payload(m: &GuestMemoryMmap, only: Option<&[u64]>) -> Vec<u8> {
        let (base, size) = ranges(m)[0];
        let pages = pages_to_send(m, base, size, only);
        let mut out = Vec::new();
        write_pages(m, base, size, &pages, &mut |b| {
            out.extend_from_slice(b);
            Ok(())
        })
        .unwrap();
        assert_eq!(out.len() as u64, payload_len(&pages));
        out
    }

    #[test]
    fn zero_pages_are_skipped_and_restored_as_zero() {
        let a = mem();
        a.write_slice(b"page three", GuestAddress(3 * PAGE as u64))
            .unwrap();
        a.write_slice(b"last", GuestAddress(63 * PAGE as u64))
            .unwrap();
        let p = payload(&a, None);
        assert_eq!(p.len(), 16 + 2 * RECORD);
        let b = mem();
        b.write_slice(b"stale kernel", GuestAddress(5 * PAGE as u64))
            .unwrap();
        let pages = RamPages::parse(&p, &ranges(&b)).unwrap();
        pages.apply_full(&b).unwrap();
        let mut x = [0u8; 12];
        b.read_slice(&mut x, GuestAddress(5 * PAGE as u64)).unwrap();
        assert_eq!(x, [0; 12], "a page the snapshot lacks is zero");
        b.read_slice(&mut x[..10], GuestAddress(3 * PAGE as u64))
            .unwrap();
        assert_eq!(&x[..10], b"page three");
    }

    #[test]
    fn deltas_overwrite_only_their_pages() {
        let a = mem();
        a.write_slice(b"new", GuestAddress(7 * PAGE as u64))
            .unwrap();
        let p = payload(&a, Some(&[7]));
        let b = mem();
        b.write_slice(b"keep", GuestAddress(9 * PAGE as u64))
            .unwrap();
        RamPages::parse(&p, &ranges(&b))
            .unwrap()
            .apply_delta(&b)
            .unwrap();
        let mut x = [0u8; 4];
        b.read_slice(&mut x, GuestAddress(9 * PAGE as u64)).unwrap();
        assert_eq!(&x, b"keep");
        b.read_slice(&mut x[..3], GuestAddress(7 * PAGE as u64))
            .unwrap();
        assert_eq!(&x[..3], b"new");
    }

    #[test]
    fn foreign_ranges_and_bad_pages_are_refused() {
        let a = mem();
        a.write_slice(b"x", GuestAddress(0)).unwrap();
        let p = payload(&a, None);
        let other = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 32 * PAGE)]).unwrap();
        assert!(RamPages::parse(&p, &ranges(&other)).is_err());
        let mut bad = p.clone();
        bad[16..24].copy_from_slice(&64u64.to_le_bytes()); // past the range
        assert!(RamPages::parse(&bad, &ranges(&a)).is_err());
        assert!(RamPages::parse(&p[..p.len() - 1], &ranges(&a)).is_err());
    }
}
