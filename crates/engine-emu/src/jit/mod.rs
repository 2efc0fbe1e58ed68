//! The code-generating tier (tier 2): hot decoded blocks translated to host
//! machine code on x86-64 hosts. Each guest instruction becomes a native
//! template or a call into the interpreter's own handler, so the tier is
//! exact by construction wherever it calls, and by differential tests where
//! it emits (see JIT.md beside this crate's Cargo.toml).
//!
//! - `emitter.rs`: the x86-64 instruction encodings the templates use;
//! - `code_cache.rs`: W^X executable memory, bounded, flushed wholesale;
//! - `translate.rs`: a block to host code (templates, handler calls);
//! - `liveness.rs`: which flag writes of a block nothing can see;
//! - `perf_map.rs`: the translations described for `perf` (developers).
//!
//! It must not know about devices or exits beyond what the interpreter's
//! handlers already do: everything that leaves the engine goes through them.

use std::sync::OnceLock;

#[cfg(target_arch = "x86_64")]
pub mod chain;
#[cfg(target_arch = "x86_64")]
pub mod code_cache;
#[cfg(target_arch = "x86_64")]
pub mod emitter;
#[cfg(target_arch = "x86_64")]
pub mod liveness;
#[cfg(target_arch = "x86_64")]
pub mod perf_map;
#[cfg(target_arch = "x86_64")]
pub mod translate;

#[cfg(all(test, target_arch = "x86_64"))]
mod tier_tests;

/// Which blocks run as generated code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    /// The interpreter runs everything.
    Interp,
    /// Blocks that have run `HOT` times are translated (the default).
    Auto,
    /// Every block is translated on its first run (for tests).
    All,
}

/// Runs of a block before `Tier::Auto` translates it.
pub const HOT: u32 = 32;

impl Tier {
    /// The tier `KITE_EMU_TIER` names: `interp`, `auto`, `all`; unset or
    /// empty is `auto`. Anything else is an error (the one line a front end
    /// prints).
    pub fn parse_env(value: Option<&str>) -> Result<Tier, String> {
        match value {
            None | Some("") | Some("auto") => Ok(Tier::Auto),
            Some("all") => Ok(Tier::All),
            Some("interp") => Ok(Tier::Interp),
            Some(other) => Err(format!(
                "KITE_EMU_TIER={other:?} is not interp, auto or all"
            )),
        }
    }

    /// Checks `KITE_EMU_TIER` (for a front end to refuse a bad value before
    /// it builds anything).
    pub fn check_env() -> Result<(), String> {
        Self::parse_env(std::env::var("KITE_EMU_TIER").ok().as_deref()).map(|_| ())
    }

    /// The tier from `KITE_EMU_TIER`, read once per process: `auto` unless
    /// it says otherwise (a bad value warns and falls back to `auto`; the
    /// `kite` binary refuses it before this is reached). On hosts other
    /// than x86-64 every tier is the interpreter.
    pub fn from_env() -> Tier {
        static TIER: OnceLock<Tier> = OnceLock::new();
        *TIER.get_or_init(|| {
            let t = Self::parse_env(std::env::var("KITE_EMU_TIER").ok().as_deref()).unwrap_or_else(
                |e| {
                    eprintln!("kite: emu: {e}; using auto");
                    Tier::Auto
                },
            );
            if cfg!(target_arch = "x86_64") {
                t
            } else {
                Tier::Interp
            }
        })
    }
}

/// A block's translation: where it is, which cache generation it belongs
/// to, and the RIP it was made for (the templates bake RIP in; the same
/// physical block entered at another RIP runs on the interpreter until it
/// is translated again).
#[derive(Clone, Copy)]
pub struct Translation {
    /// The address of its code (an integer, so blocks stay `Send`).
    pub entry: usize,
    pub generation: u32,
    pub rip: u64,
}

/// The per-block state of the tier.
#[derive(Clone, Copy, Default)]
pub struct BlockJit {
    /// Runs since decoding (counted only while the tier is `Auto`).
    pub runs: u32,
    pub code: Option<Translation>,
    /// Translation was tried and gave nothing (or failed): do not retry.
    pub refused: bool,
}

/// The translation cache and statistics of one vCPU's block cache.
pub struct Jit {
    #[cfg(target_arch = "x86_64")]
    pub cache: code_cache::CodeCache,
    /// Which native templates translations use (tests narrow it).
    #[cfg(target_arch = "x86_64")]
    pub templates: translate::Templates,
    /// The chain slots of the translations in `cache` (reset with it).
    #[cfg(target_arch = "x86_64")]
    pub slots: chain::Slots,
    pub stats: Stats,
}

/// Counters for tests and tuning.
#[derive(Default, Clone, Copy, Debug)]
pub struct Stats {
    pub translated: u64,
    pub native_insns: u64,
    pub call_insns: u64,
    pub flushes: u64,
    pub runs: u64,
    /// Entries that declined (`translate::DECLINED`).
    pub declined: u64,
}

impl Default for Jit {
    fn default() -> Self {
        Jit {
            #[cfg(target_arch = "x86_64")]
            cache: code_cache::CodeCache::new(),
            #[cfg(target_arch = "x86_64")]
            templates: translate::Templates::ALL,
            #[cfg(target_arch = "x86_64")]
            slots: chain::Slots::default(),
            stats: Stats::default(),
        }
    }
}

impl Jit {
    /// Drop every translation (with the blocks they came from).
    pub fn flush(&mut self) {
        #[cfg(target_arch = "x86_64")]
        {
            if self.cache.used() > 0 {
                self.stats.flushes += 1;
            }
            self.cache.flush();
            self.slots.reset();
        }
    }
}
