//! Decoded blocks: straight-line runs of instructions decoded once (by
//! iced-x86) and cached by guest-physical address and code size. A block
//! ends at any unconditional control transfer, at the end of its page, or
//! after an instruction that crosses into the next page; a taken
//! conditional branch leaves it in the middle. Each block remembers the
//! generation of the page(s) it came from; a guest write to a code page bumps
//! the generation (see `memory::CodePages`) and the block is decoded again.

use std::collections::HashMap;

use iced_x86::{Decoder, DecoderOptions, FlowControl, Instruction};

use super::exec::Handler;
use super::{Cpu, Res};

/// One decoded instruction and its handler.
pub struct Decoded {
    pub ins: Instruction,
    pub handler: Handler,
}

pub struct Block {
    pub insns: Box<[Decoded]>,
    /// (page frame number, generation) of the pages the bytes came from.
    pub pages: [(u64, u32); 2],
    pub npages: u8,
    /// Where execution went after this block: the fall-through in 0,
    /// branches (taken anywhere in the block) in the others, by address
    /// (see `BlockCache::follow`).
    links: [Link; LINKS],
    /// The code-generating tier's state of this block (a re-decoded block
    /// starts without a translation, so a stale one can never run).
    pub jit: crate::jit::BlockJit,
}

/// A successor learnt from an earlier run of a block: at linear address
/// `lin`, in context `ctx` (see `Cpu::chain_ctx`), the block is `index`.
#[derive(Clone, Copy)]
struct Link {
    lin: u64,
    ctx: u64,
    index: u32,
}

const LINKS: usize = 4;

/// No context is 0 (it holds the code size).
const NO_LINK: Link = Link {
    lin: 0,
    ctx: 0,
    index: 0,
};

/// A multiplicative hash for the u64 block keys (SipHash is needlessly slow here).
#[derive(Default, Clone, Copy)]
pub struct KeyHasher(u64);

impl std::hash::Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(0x517c_c1b7_2722_0a95);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = (v ^ (v >> 29)).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
}

type KeyMap = HashMap<u64, u32, std::hash::BuildHasherDefault<KeyHasher>>;

/// Blocks by (physical address, code size), in a slab indexed by `map`.
pub struct BlockCache {
    map: KeyMap,
    slab: Vec<Block>,
    /// A direct-mapped cache of (key, slab index) in front of `map`: most
    /// lookups are one compare instead of a hash-table probe.
    fast: Box<[(u64, u32)]>,
    /// Blocks by linear address in a context (as links are): where a link
    /// does not know the successor (returns, indirect branches), this
    /// finds it without translating RIP or checking generations.
    jump: Box<[Link]>,
    /// Translations of hot blocks (see `crate::jit`); flushed with the blocks.
    pub jit: crate::jit::Jit,
}

pub(crate) const JUMP_ENTRIES: usize = 4096;

#[inline(always)]
pub(crate) fn jump_slot(lin: u64) -> usize {
    (lin ^ (lin >> 12)) as usize & (JUMP_ENTRIES - 1)
}

const FAST_ENTRIES: usize = 4096;
/// No key has all bits set (code sizes are 16, 32 or 64).
const NO_KEY: u64 = u64::MAX;

#[inline]
fn fast_slot(k: u64) -> usize {
    (k.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 52) as usize & (FAST_ENTRIES - 1)
}

const MAX_BLOCKS: usize = 1 << 16;
/// Instructions per block at most (bounds latency of interrupt checks).
const MAX_INSNS: usize = 64;

fn key(phys: u64, bits: u32) -> u64 {
    phys | (u64::from(bits) << 56)
}

impl Default for BlockCache {
    fn default() -> Self {
        Self::new()
    }
}

impl BlockCache {
    pub fn new() -> BlockCache {
        BlockCache {
            map: KeyMap::default(),
            slab: Vec::new(),
            fast: vec![(NO_KEY, 0); FAST_ENTRIES].into_boxed_slice(),
            jump: vec![NO_LINK; JUMP_ENTRIES].into_boxed_slice(),
            jit: crate::jit::Jit::default(),
        }
    }

    pub fn clear(&mut self) {
        self.map.clear();
        self.slab.clear();
        self.fast.fill((NO_KEY, 0));
        self.jump.fill(NO_LINK);
        self.jit.flush();
    }

    /// The translation of block `i` for the CPU's RIP, making it if the
    /// block is hot (or the tier translates everything). `None`: run it on
    /// the interpreter.
    #[cfg(target_arch = "x86_64")]
    #[inline]
    pub fn translation(&mut self, i: u32, cpu: &Cpu) -> Option<crate::jit::translate::BlockFn> {
        let generation = self.jit.cache.generation();
        let b = self.slab.get_mut(i as usize)?;
        if b.jit.refused {
            return None;
        }
        if let Some(t) = b.jit.code {
            if t.generation == generation {
                if t.rip == cpu.rip {
                    self.jit.stats.runs += 1;
                    // SAFETY: `entry` is the start of a function made by
                    // `translate` for this block, in the current generation
                    // of the cache (so still mapped and executable).
                    return Some(unsafe { crate::jit::translate::entry(t.entry as *const u8) });
                }
                // The same block entered elsewhere (an alias of its page):
                // the interpreter runs it from now on.
                b.jit.refused = true;
                return None;
            }
        }
        if cpu.tier == crate::jit::Tier::Auto {
            b.jit.runs = b.jit.runs.saturating_add(1);
            if b.jit.runs < crate::jit::HOT {
                return None;
            }
        }
        self.translate(i, cpu)
    }

    #[cfg(target_arch = "x86_64")]
    #[cold]
    fn translate(&mut self, i: u32, cpu: &Cpu) -> Option<crate::jit::translate::BlockFn> {
        let b = self.slab.get_mut(i as usize)?;
        let made = crate::jit::translate::translate(
            &b.insns,
            cpu.rip,
            cpu.code_bits,
            cpu.cpl,
            self.jit.templates,
            &mut self.jit.slots,
        );
        let generation_before = self.jit.cache.generation();
        let installed = made.and_then(|made| {
            let (code, counts) = (&made.code, made.counts);
            let (entry, generation) = self.jit.cache.install(code)?;
            crate::jit::perf_map::describe(entry, code.len(), &made.marks, made.exits);
            self.jit.stats.translated += 1;
            self.jit.stats.native_insns += u64::from(counts.native);
            self.jit.stats.call_insns += u64::from(counts.calls);
            Some((entry, generation))
        });
        if self.jit.cache.generation() != generation_before {
            // The cache was full and flushed to take this translation, whose
            // chain slots belong to the arena of the old generation: start a
            // new arena and translate the block again on its next run.
            self.jit.stats.flushes += 1;
            self.jit.slots.reset();
            return None;
        }
        let b = self.slab.get_mut(i as usize)?;
        match installed {
            Some((entry, generation)) => {
                b.jit.code = Some(crate::jit::Translation {
                    entry: entry as usize,
                    generation,
                    rip: cpu.rip,
                });
                self.jit.stats.runs += 1;
                // SAFETY: just made by `translate` and installed executable.
                Some(unsafe { crate::jit::translate::entry(entry) })
            }
            None => {
                b.jit.refused = true;
                None
            }
        }
    }

    /// The block at index `i` (from `get`).
    #[inline]
    pub fn block(&self, i: u32) -> &Block {
        &self.slab[i as usize]
    }

    /// The successor of block `from` at `lin` if an earlier run of it went
    /// there in the same context: no translation, lookup or generation
    /// check, as nothing they depend on has changed since (the context
    /// changes with every TLB flush and every write to a code page).
    #[inline(always)]
    pub fn follow(&self, from: u32, lin: u64, ctx: u64) -> Option<u32> {
        let b = self.slab.get(from as usize)?;
        b.links
            .iter()
            .find(|l| l.lin == lin && l.ctx == ctx)
            .map(|l| l.index)
    }

    /// The block at `lin` in context `ctx` if it was looked up there
    /// before, with the same validity as `follow`.
    #[inline(always)]
    pub fn jump(&self, lin: u64, ctx: u64) -> Option<u32> {
        let l = &self.jump[jump_slot(lin)];
        (l.lin == lin && l.ctx == ctx).then_some(l.index)
    }

    /// Remember the block found at `lin` in context `ctx` (see `jump`).
    #[inline]
    pub fn remember(&mut self, lin: u64, ctx: u64, index: u32) {
        self.jump[jump_slot(lin)] = Link { lin, ctx, index };
    }

    /// Remember that block `from` continued at `lin` with block `to`.
    #[inline]
    pub fn link(&mut self, from: u32, lin: u64, ctx: u64, to: u32) {
        if let Some(b) = self.slab.get_mut(from as usize) {
            let end = b.insns.last().map(|d| d.ins.next_ip());
            let slot = if end == Some(lin) {
                0
            } else {
                1 + (lin as usize ^ (lin >> 5) as usize) % (LINKS - 1)
            };
            b.links[slot] = Link {
                lin,
                ctx,
                index: to,
            };
        }
    }

    /// The index of the block at the CPU's RIP, decoding it if needed.
    #[inline]
    pub fn get(&mut self, cpu: &mut Cpu, lin: u64, phys: u64) -> Res<u32> {
        let k = key(phys, cpu.code_bits);
        let slot = fast_slot(k);
        let (fk, fi) = self.fast[slot];
        let found = if fk == k {
            Some(fi)
        } else {
            self.map.get(&k).copied()
        };
        if let Some(i) = found {
            let b = &self.slab[i as usize];
            let valid = b.pages[..b.npages as usize]
                .iter()
                .all(|&(pfn, gen)| cpu.code.generation(pfn) == gen);
            if !valid {
                self.slab[i as usize] = decode_block(cpu, lin, phys)?;
            }
            self.fast[slot] = (k, i);
            return Ok(i);
        }
        self.insert(cpu, lin, phys, k, slot)
    }

    #[cold]
    fn insert(&mut self, cpu: &mut Cpu, lin: u64, phys: u64, k: u64, slot: usize) -> Res<u32> {
        let nb = decode_block(cpu, lin, phys)?;
        if self.slab.len() >= MAX_BLOCKS {
            self.clear();
        }
        let i = self.slab.len() as u32;
        self.slab.push(nb);
        self.map.insert(k, i);
        self.fast[slot] = (k, i);
        Ok(i)
    }
}

fn decode_block(cpu: &mut Cpu, lin: u64, phys: u64) -> Res<Block> {
    let pfn = phys >> 12;
    let gen = cpu.code.mark_code(pfn);
    let mut pages = [(pfn, gen), (0, 0)];
    let mut npages = 1u8;
    // This vCPU's own TLB must stop writing the page directly at once.
    cpu.sync_memory_epochs();

    let in_page = (0x1000 - (phys & 0xfff)) as usize;
    let mut bytes = vec![0u8; in_page + 15];
    if !cpu.slots.read(phys, &mut bytes[..in_page]) {
        return Err(cpu.internal(format!("executing from non-RAM address {phys:#x}")));
    }
    let mut have = in_page;
    let mut insns = Vec::with_capacity(16);
    let mut decoder = Decoder::with_ip(cpu.code_bits, &bytes[..have], lin, DecoderOptions::NONE);
    let mut offset = 0usize;
    loop {
        let mut ins = Instruction::default();
        decoder.decode_out(&mut ins);
        let crossed =
            ins.is_invalid() && decoder.last_error() == iced_x86::DecoderError::NoMoreBytes;
        if crossed {
            // The instruction continues on the next page.
            if npages == 2 || have > in_page {
                break;
            }
            if !insns.is_empty() {
                break; // decode it as the first instruction of its own block
            }
            let next_lin = lin.wrapping_add(in_page as u64);
            let next_lin = if cpu.code_bits == 64 {
                next_lin
            } else {
                next_lin & 0xffff_ffff
            };
            let phys2 = cpu.translate_fetch(next_lin)?;
            let pfn2 = phys2 >> 12;
            let gen2 = cpu.code.mark_code(pfn2);
            cpu.sync_memory_epochs();
            if !cpu.slots.read(phys2, &mut bytes[in_page..in_page + 15]) {
                return Err(cpu.internal(format!("executing from non-RAM address {phys2:#x}")));
            }
            pages[1] = (pfn2, gen2);
            npages = 2;
            have = in_page + 15;
            decoder = Decoder::with_ip(
                cpu.code_bits,
                &bytes[offset..have],
                lin.wrapping_add(offset as u64),
                DecoderOptions::NONE,
            );
            continue;
        }
        let len = ins.len();
        let handler = super::exec::handler_for(&ins);
        let flow = ins.flow_control();
        insns.push(Decoded { ins, handler });
        offset += len;
        // A block goes on past a conditional branch: when it is taken the
        // run loop leaves the block there (RIP is not the fall-through).
        if !matches!(flow, FlowControl::Next | FlowControl::ConditionalBranch)
            || offset >= in_page
            || insns.len() >= MAX_INSNS
            || super::exec::ends_block(&ins)
        {
            break;
        }
    }
    Ok(Block {
        insns: insns.into_boxed_slice(),
        pages,
        npages,
        links: [NO_LINK; LINKS],
        jit: Default::default(),
    })
}
