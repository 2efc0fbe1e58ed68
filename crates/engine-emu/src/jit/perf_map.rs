//! A developer's view of generated code for `perf`: with KITE_PERF_MAP set
//! (and `--seccomp off`, as the file is written from the vCPU thread), each
//! translation is described in /tmp/perf-PID.map, the file `perf report`
//! reads for code without symbols. Each guest instruction's host code is one
//! symbol, `g<rip> n|h <instruction>` (n: a native template, h: a handler
//! call), and the block's exits and epilogue one more, `g<rip> exits`; so
//! `perf report --sort sym` ranks the guest instructions by host time, and
//! summing by mnemonic ranks the templates.

use std::io::Write;
use std::sync::{Mutex, OnceLock};

use super::translate::Mark;

fn file() -> Option<&'static Mutex<std::fs::File>> {
    static FILE: OnceLock<Option<Mutex<std::fs::File>>> = OnceLock::new();
    FILE.get_or_init(|| {
        std::env::var_os("KITE_PERF_MAP")?;
        let path = format!("/tmp/perf-{}.map", std::process::id());
        match std::fs::File::create(&path) {
            Ok(f) => Some(Mutex::new(f)),
            Err(e) => {
                eprintln!("kite: emu: cannot write the perf map {path}: {e}");
                None
            }
        }
    })
    .as_ref()
}

/// Whether translations are to be described (KITE_PERF_MAP is set).
pub fn enabled() -> bool {
    file().is_some()
}

/// Describe the translation of `len` bytes at `entry` with `marks`, its
/// exits and epilogue from offset `exits`.
pub fn describe(entry: *const u8, len: usize, marks: &[Mark], exits: usize) {
    let Some(f) = file() else {
        return;
    };
    let base = entry as usize;
    let mut text = String::new();
    for (i, m) in marks.iter().enumerate() {
        let end = marks.get(i + 1).map_or(exits, |n| n.at);
        if end > m.at {
            let kind = if m.native { "n" } else { "h" };
            text += &format!(
                "{:x} {:x} g{:x} {kind} {}\n",
                base + m.at,
                end - m.at,
                m.rip,
                m.ins
            );
        }
    }
    if let Some(first) = marks.first() {
        if len > exits {
            text += &format!(
                "{:x} {:x} g{:x} exits\n",
                base + exits,
                len - exits,
                first.rip
            );
        }
    }
    if let Ok(mut f) = f.lock() {
        let _ = f.write_all(text.as_bytes());
    }
}
