//! A developer's guest profiler: with KITE_EMU_PROFILE=PATH set, each vCPU
//! counts the linear addresses of the blocks it enters (one in 64) and, when
//! it is dropped, writes the hottest to PATH.<vcpu> as "count address" lines,
//! to be matched against the guest kernel's System.map. The first line
//! counts the blocks entered and the instructions they hold (an upper bound
//! of the instructions run: a block left early counts whole), to compare
//! how much work guests do apart from what each instruction costs.

use std::collections::HashMap;

pub struct Profile {
    path: String,
    tick: u32,
    counts: HashMap<u64, u64>,
    blocks: u64,
    insns: u64,
}

impl Profile {
    pub fn from_env(vcpu: u32) -> Option<Box<Profile>> {
        let base = std::env::var("KITE_EMU_PROFILE").ok()?;
        Some(Box::new(Profile {
            path: format!("{base}.{vcpu}"),
            tick: 0,
            counts: HashMap::new(),
            blocks: 0,
            insns: 0,
        }))
    }

    /// A block of `insns` instructions at `lin` is entered.
    #[inline]
    pub fn sample(&mut self, lin: u64, insns: usize) {
        self.blocks += 1;
        self.insns += insns as u64;
        self.tick = self.tick.wrapping_add(1);
        if self.tick.is_multiple_of(64) {
            *self.counts.entry(lin).or_insert(0) += 1;
        }
    }
}

impl Drop for Profile {
    fn drop(&mut self) {
        let mut v: Vec<_> = self.counts.iter().map(|(a, c)| (*c, *a)).collect();
        v.sort_unstable_by(|a, b| b.cmp(a));
        let head = format!("# blocks {} instructions {}\n", self.blocks, self.insns);
        let text: String = std::iter::once(head)
            .chain(v.iter().take(2000).map(|(c, a)| format!("{c} {a:#x}\n")))
            .collect();
        if let Err(e) = std::fs::write(&self.path, text) {
            eprintln!("kite: emu: cannot write the profile {}: {e}", self.path);
        }
    }
}
