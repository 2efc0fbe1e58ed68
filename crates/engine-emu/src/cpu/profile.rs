//! A developer's guest profiler: with KITE_EMU_PROFILE=PATH set, each vCPU
//! counts the linear addresses of the blocks it enters (one in 64) and, when
//! it is dropped, writes the hottest to PATH.<vcpu> as "count address" lines,
//! to be matched against the guest kernel's System.map. The first line
//! counts the blocks entered and the instructions they hold (an upper bound
//! of the instructions run: a block left early counts whole), to compare
//! how much work guests do apart from what each instruction costs. The
//! last lines count the instructions generated code ran through their
//! handlers, by form: the templates the tier still lacks.

use std::collections::HashMap;

pub struct Profile {
    path: String,
    tick: u32,
    counts: HashMap<u64, u64>,
    blocks: u64,
    insns: u64,
    /// Instructions generated code ran through `call_handler`, by form
    /// (the templates still missing, weighted by how often they run).
    calls: HashMap<(iced_x86::Code, bool), u64>,
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
            calls: HashMap::new(),
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

    /// Generated code calls the handler of `ins`.
    #[inline]
    pub fn handler_call(&mut self, ins: &iced_x86::Instruction) {
        let mem = (0..ins.op_count()).any(|i| ins.op_kind(i) == iced_x86::OpKind::Memory);
        *self.calls.entry((ins.code(), mem)).or_insert(0) += 1;
    }
}

impl Drop for Profile {
    fn drop(&mut self) {
        let mut v: Vec<_> = self.counts.iter().map(|(a, c)| (*c, *a)).collect();
        v.sort_unstable_by(|a, b| b.cmp(a));
        let head = format!("# blocks {} instructions {}\n", self.blocks, self.insns);
        let mut calls: Vec<_> = self.calls.iter().map(|(k, c)| (*c, *k)).collect();
        calls.sort_unstable_by_key(|c| std::cmp::Reverse(c.0));
        let total: u64 = calls.iter().map(|c| c.0).sum();
        let calls_head = format!("# handler calls from generated code {total}\n");
        let text: String = std::iter::once(head)
            .chain(v.iter().take(2000).map(|(c, a)| format!("{c} {a:#x}\n")))
            .chain(std::iter::once(calls_head))
            .chain(calls.iter().take(200).map(|(c, (code, mem))| {
                let kind = if *mem { "mem" } else { "reg" };
                format!("# call {c} {code:?} {kind}\n")
            }))
            .collect();
        if let Err(e) = std::fs::write(&self.path, text) {
            eprintln!("kite: emu: cannot write the profile {}: {e}", self.path);
        }
    }
}
