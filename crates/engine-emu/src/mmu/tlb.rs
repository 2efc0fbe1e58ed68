//! The software TLB: linear page -> host pointer, with the permissions the
//! page walk granted. One compare on the fast path.

/// Permission bits of an entry.
pub const READ_S: u8 = 1;
pub const WRITE_S: u8 = 2;
pub const EXEC_S: u8 = 4;
pub const READ_U: u8 = 8;
pub const WRITE_U: u8 = 16;
pub const EXEC_U: u8 = 32;
const WRITE_ANY: u8 = WRITE_S | WRITE_U;

const ENTRIES: usize = 8192;
const PAGE_MASK: u64 = !0xfff;

/// An entry as the rest of the engine sees it.
#[derive(Debug, Clone, Copy)]
pub struct Entry {
    /// Guest-physical page address.
    pub phys: u64,
    pub perms: u8,
    pub global: bool,
}

/// The part of an entry the access fast path reads, 16 bytes: the linear
/// page address with the permission bits in its low 12 bits, and the
/// host-minus-linear addend. An empty entry is 0 (no permissions), which no
/// lookup accepts since every lookup needs at least one permission.
#[derive(Debug, Clone, Copy)]
#[repr(C)]
struct Hot {
    tag: u64,
    /// Host address of the page start minus the linear page start, so that
    /// host = addend + linear.
    addend: u64,
}

/// The rest of an entry.
#[derive(Debug, Clone, Copy)]
struct Cold {
    phys: u64,
    global: bool,
    /// The index is in `Tlb::filled`.
    listed: bool,
}

/// What generated code needs to repeat `Tlb::lookup` inline
/// (jit/translate.rs): where the entries start (a `usize` in the `Tlb`),
/// their number and size, and the tag/addend offsets inside one.
pub mod layout {
    use super::{Hot, Tlb};
    pub const HOT_BASE: usize = core::mem::offset_of!(Tlb, hot_base);
    /// `Tlb::epoch` (a u64).
    pub const EPOCH: usize = core::mem::offset_of!(Tlb, epoch);
    pub const ENTRIES: usize = super::ENTRIES;
    pub const ENTRY_SIZE: usize = core::mem::size_of::<Hot>();
    pub const TAG: usize = core::mem::offset_of!(Hot, tag);
    pub const ADDEND: usize = core::mem::offset_of!(Hot, addend);
    const _: () = assert!(ENTRY_SIZE == 16 && TAG == 0 && ADDEND == 8);
}

const EMPTY_HOT: Hot = Hot { tag: 0, addend: 0 };
const EMPTY_COLD: Cold = Cold {
    phys: 0,
    global: false,
    listed: false,
};

pub struct Tlb {
    hot: Box<[Hot]>,
    /// The address of `hot`'s first entry (the boxed slice never moves),
    /// for generated code's inline lookup (see `layout`).
    hot_base: usize,
    cold: Box<[Cold]>,
    /// Linear regions (base, log2 size) of large pages cached as 4 KiB
    /// entries since the last full flush: INVLPG in one flushes the region.
    large: Vec<(u64, u32)>,
    large_overflow: bool,
    /// Bumped by every flush: what was learnt from translations before
    /// (block links, see `BlockCache`) is stale once it changes.
    epoch: u64,
    /// The entries filled since the table was last scanned whole (each
    /// once), so that a flush clears those instead of scanning every
    /// entry; past `MAX_FILLED` of them (`filled_overflow`) the next flush
    /// scans the table.
    filled: Vec<u32>,
    filled_overflow: bool,
}

const MAX_LARGE: usize = 64;
const MAX_FILLED: usize = ENTRIES / 4;

impl Default for Tlb {
    fn default() -> Self {
        Self::new()
    }
}

impl Tlb {
    pub fn new() -> Tlb {
        let hot = vec![EMPTY_HOT; ENTRIES].into_boxed_slice();
        Tlb {
            hot_base: hot.as_ptr() as usize,
            hot,
            cold: vec![EMPTY_COLD; ENTRIES].into_boxed_slice(),
            large: Vec::new(),
            large_overflow: false,
            epoch: 0,
            filled: Vec::new(),
            filled_overflow: false,
        }
    }

    /// Changes whenever a translation may have changed (every flush).
    #[inline(always)]
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Make what was learnt from earlier translations stale without
    /// flushing (a code page was written).
    pub fn bump_epoch(&mut self) {
        self.epoch = self.epoch.wrapping_add(1);
    }

    #[inline(always)]
    fn index(lin: u64) -> usize {
        ((lin >> 12) as usize) & (ENTRIES - 1)
    }

    /// Host address for `lin` if the entry grants every bit of `need`
    /// (`need` is never 0).
    #[inline(always)]
    pub fn lookup(&self, lin: u64, need: u8) -> Option<u64> {
        let e = &self.hot[Self::index(lin)];
        // Page bits equal (XOR is 0 above bit 11) and the needed permission
        // bits present: one compare.
        let x = e.tag ^ (lin & PAGE_MASK);
        if x & (PAGE_MASK | u64::from(need)) == u64::from(need) {
            Some(e.addend.wrapping_add(lin))
        } else {
            None
        }
    }

    /// The entry for `lin`'s page, whatever its permissions.
    #[inline]
    pub fn entry(&self, lin: u64) -> Option<Entry> {
        let i = Self::index(lin);
        let e = &self.hot[i];
        let perms = (e.tag & 0xff) as u8;
        (perms != 0 && e.tag & PAGE_MASK == lin & PAGE_MASK).then_some(Entry {
            phys: self.cold[i].phys,
            perms,
            global: self.cold[i].global,
        })
    }

    /// Install a 4 KiB mapping.
    pub fn insert(&mut self, lin: u64, host_page: u64, phys_page: u64, perms: u8, global: bool) {
        let page = lin & PAGE_MASK;
        let i = Self::index(lin);
        self.hot[i] = Hot {
            tag: page | u64::from(perms),
            addend: host_page.wrapping_sub(page),
        };
        let listed = self.cold[i].listed || self.list(i);
        self.cold[i] = Cold {
            phys: phys_page,
            global,
            listed,
        };
    }

    /// Note entry `i` in `filled`; whether it is listed.
    fn list(&mut self, i: usize) -> bool {
        if self.filled.len() >= MAX_FILLED {
            self.filled_overflow = true;
            return false;
        }
        self.filled.push(i as u32);
        true
    }

    /// After a whole-table pass: list exactly the entries still filled.
    fn relist(&mut self) {
        self.filled.clear();
        self.filled_overflow = false;
        for i in 0..ENTRIES {
            let filled = self.hot[i].tag != 0;
            self.cold[i].listed = filled && self.filled.len() < MAX_FILLED;
            if filled {
                if self.cold[i].listed {
                    self.filled.push(i as u32);
                } else {
                    self.filled_overflow = true;
                }
            }
        }
    }

    /// Note that `lin` was mapped by a page of 2^`shift` bytes (> 4 KiB).
    pub fn note_large(&mut self, lin: u64, shift: u32) {
        let base = lin & !((1u64 << shift) - 1);
        if self.large.iter().any(|&(b, s)| b == base && s == shift) {
            return;
        }
        if self.large.len() >= MAX_LARGE {
            self.large_overflow = true;
        } else {
            self.large.push((base, shift));
        }
    }

    pub fn flush_all(&mut self) {
        self.bump_epoch();
        if self.filled_overflow {
            self.hot.fill(EMPTY_HOT);
            self.cold.fill(EMPTY_COLD);
            self.filled_overflow = false;
        } else {
            for &i in &self.filled {
                self.hot[i as usize] = EMPTY_HOT;
                self.cold[i as usize].listed = false;
            }
        }
        self.filled.clear();
        self.large.clear();
        self.large_overflow = false;
    }

    /// Flush all but global entries (a CR3 write without PCID): the listed
    /// entries, or every entry if more were filled than are listed.
    pub fn flush_non_global(&mut self) {
        self.bump_epoch();
        if self.filled_overflow {
            for (h, c) in self.hot.iter_mut().zip(self.cold.iter()) {
                if !c.global {
                    *h = EMPTY_HOT;
                }
            }
            self.relist();
            return;
        }
        let mut kept = 0;
        for k in 0..self.filled.len() {
            let i = self.filled[k] as usize;
            if self.cold[i].global && self.hot[i].tag != 0 {
                self.filled[kept] = i as u32;
                kept += 1;
            } else {
                self.hot[i] = EMPTY_HOT;
                self.cold[i].listed = false;
            }
        }
        self.filled.truncate(kept);
    }

    fn flush_range(&mut self, base: u64, shift: u32) {
        let (lo, hi) = (base & PAGE_MASK, (base + (1u64 << shift) - 1) & PAGE_MASK);
        for h in self.hot.iter_mut() {
            let page = h.tag & PAGE_MASK;
            if h.tag != 0 && page >= lo && page <= hi {
                *h = EMPTY_HOT;
            }
        }
    }

    /// INVLPG: flush any entry for this linear page.
    pub fn flush_page(&mut self, lin: u64) {
        self.bump_epoch();
        if self.large_overflow {
            self.flush_all();
            return;
        }
        let h = &mut self.hot[Self::index(lin)];
        if h.tag & PAGE_MASK == lin & PAGE_MASK {
            *h = EMPTY_HOT;
        }
        let hits: Vec<(u64, u32)> = self
            .large
            .iter()
            .copied()
            .filter(|&(b, s)| lin.wrapping_sub(b) < (1u64 << s))
            .collect();
        for (b, s) in hits {
            self.flush_range(b, s);
            self.large.retain(|&x| x != (b, s));
        }
    }

    /// Drop write permission everywhere, so the next write to each page
    /// takes the slow path (new code pages, dirty-log resets).
    pub fn drop_write_permissions(&mut self) {
        for h in self.hot.iter_mut() {
            h.tag &= !u64::from(WRITE_ANY);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A CR3 flush clears every non-global entry and keeps every global
    /// one, whether it walks the listed entries or (after more fills than
    /// it lists) the whole table; then the list holds again.
    #[test]
    fn flushes_clear_what_was_filled_listed_or_not() {
        let mut t = Tlb::new();
        for round in 0..3 {
            // Round 1 fills more entries than the list holds.
            let n = if round == 1 { ENTRIES } else { 300 };
            for k in 0..n as u64 {
                let lin = 0x40_0000 + (k << 12);
                t.insert(lin, 0x1000_0000 + (k << 12), k << 12, READ_S, k % 3 == 0);
            }
            t.flush_non_global();
            for k in 0..n as u64 {
                let lin = 0x40_0000 + (k << 12);
                let kept = t.lookup(lin, READ_S).is_some();
                assert_eq!(kept, k % 3 == 0, "round {round}, entry {k}");
            }
        }
        t.flush_all();
        for k in 0..ENTRIES as u64 {
            assert_eq!(t.lookup(0x40_0000 + (k << 12), READ_S), None);
        }
        assert!(t.filled.is_empty() && !t.filled_overflow);
    }

    #[test]
    fn lookup_needs_page_and_permissions() {
        let mut t = Tlb::new();
        assert_eq!(t.lookup(0, READ_S), None);
        assert_eq!(t.lookup(0xffff_ffff_ffff_f123, READ_S), None);
        t.insert(0x7000_1234, 0x10_0000, 0x5000, READ_S | WRITE_S, false);
        assert_eq!(t.lookup(0x7000_1fff, READ_S), Some(0x10_0fff));
        assert_eq!(t.lookup(0x7000_1000, WRITE_S), Some(0x10_0000));
        assert_eq!(t.lookup(0x7000_1000, READ_U), None);
        // Same index, other page.
        assert_eq!(
            t.lookup(0x7000_1000 + (ENTRIES as u64) * 4096, READ_S),
            None
        );
        let e = t.entry(0x7000_1010).map(|e| (e.phys, e.perms));
        assert_eq!(e, Some((0x5000, READ_S | WRITE_S)));
        t.drop_write_permissions();
        assert_eq!(t.lookup(0x7000_1000, WRITE_S), None);
        assert_eq!(t.lookup(0x7000_1000, READ_S), Some(0x10_0000));
        t.flush_page(0x7000_1000);
        assert_eq!(t.lookup(0x7000_1000, READ_S), None);
        assert!(t.entry(0x7000_1000).is_none());
        t.insert(0xffff_ffff_ffff_f000, 0x20_0000, 0x6000, READ_S, true);
        t.insert(0x4000, 0x30_0000, 0x7000, READ_S, false);
        t.flush_non_global();
        assert_eq!(t.lookup(0xffff_ffff_ffff_f008, READ_S), Some(0x20_0008));
        assert_eq!(t.lookup(0x4000, READ_S), None);
        t.note_large(0x20_0000, 21);
        t.insert(0x20_3000, 0x40_0000, 0x8000, READ_S, false);
        t.flush_page(0x20_0000);
        assert_eq!(t.lookup(0x20_3000, READ_S), None);
    }
}
