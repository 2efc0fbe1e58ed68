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
const INVALID: u64 = u64::MAX;

#[derive(Debug, Clone, Copy)]
pub struct Entry {
    /// Linear page number, or INVALID.
    pub tag: u64,
    /// Host address of the page start minus the linear page start, so that
    /// host = addend + linear.
    pub addend: u64,
    /// Guest-physical page address.
    pub phys: u64,
    pub perms: u8,
    pub global: bool,
}

const EMPTY: Entry = Entry {
    tag: INVALID,
    addend: 0,
    phys: 0,
    perms: 0,
    global: false,
};

pub struct Tlb {
    entries: Box<[Entry]>,
    /// Linear regions (base, log2 size) of large pages cached as 4 KiB
    /// entries since the last full flush: INVLPG in one flushes the region.
    large: Vec<(u64, u32)>,
    large_overflow: bool,
}

const MAX_LARGE: usize = 64;

impl Default for Tlb {
    fn default() -> Self {
        Self::new()
    }
}

impl Tlb {
    pub fn new() -> Tlb {
        Tlb {
            entries: vec![EMPTY; ENTRIES].into_boxed_slice(),
            large: Vec::new(),
            large_overflow: false,
        }
    }

    #[inline(always)]
    fn index(lin: u64) -> usize {
        ((lin >> 12) as usize) & (ENTRIES - 1)
    }

    /// Host address for `lin` if the entry grants every bit of `need`.
    #[inline(always)]
    pub fn lookup(&self, lin: u64, need: u8) -> Option<u64> {
        let e = &self.entries[Self::index(lin)];
        if e.tag == lin >> 12 && e.perms & need == need {
            Some(e.addend.wrapping_add(lin))
        } else {
            None
        }
    }

    /// The entry for `lin`'s page, whatever its permissions.
    #[inline]
    pub fn entry(&self, lin: u64) -> Option<&Entry> {
        let e = &self.entries[Self::index(lin)];
        (e.tag == lin >> 12).then_some(e)
    }

    /// Install a 4 KiB mapping.
    pub fn insert(&mut self, lin: u64, host_page: u64, phys_page: u64, perms: u8, global: bool) {
        let page = lin & !0xfff;
        self.entries[Self::index(lin)] = Entry {
            tag: lin >> 12,
            addend: host_page.wrapping_sub(page),
            phys: phys_page,
            perms,
            global,
        };
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
        self.entries.fill(EMPTY);
        self.large.clear();
        self.large_overflow = false;
    }

    /// Flush all but global entries (a CR3 write without PCID).
    pub fn flush_non_global(&mut self) {
        for e in self.entries.iter_mut() {
            if !e.global {
                *e = EMPTY;
            }
        }
    }

    fn flush_range(&mut self, base: u64, shift: u32) {
        let (lo, hi) = (base >> 12, (base + (1u64 << shift) - 1) >> 12);
        for e in self.entries.iter_mut() {
            if e.tag >= lo && e.tag <= hi {
                *e = EMPTY;
            }
        }
    }

    /// INVLPG: flush any entry for this linear page.
    pub fn flush_page(&mut self, lin: u64) {
        if self.large_overflow {
            self.flush_all();
            return;
        }
        let e = &mut self.entries[Self::index(lin)];
        if e.tag == lin >> 12 {
            *e = EMPTY;
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
        for e in self.entries.iter_mut() {
            e.perms &= !WRITE_ANY;
        }
    }
}
