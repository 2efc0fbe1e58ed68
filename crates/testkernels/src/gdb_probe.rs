//! Probe kernels for debugger tests: Multiboot ELF images with a symbol
//! table (`.symtab`) naming their steps, so gdb can load the file, break at
//! a name, step, and check registers and memory against the constants here.
//!
//! It knows nothing about gdb or Kite; it only makes bytes and names.

use iced_x86::code_asm::*;
use iced_x86::IcedError;

use crate::elf::{elf32_exec_with_symbols, Symbol};
use crate::layout::*;
use crate::long_mode::{self, Names, Placed};
use crate::serial_asm;

/// What the probes leave in EAX/RAX before their break symbol.
pub const PROBE_EAX: u32 = 0x1122_3344;
pub const PROBE_RAX: u64 = 0x0102_0304_0506_0708;
/// What the instruction at the break symbol puts in EBX.
pub const PROBE_EBX: u32 = 0x5566_7788;
/// What the probes store at `probe_value` before the break symbol.
pub const PROBE_VALUE: u32 = 0xcafe_f00d;
/// What the 32-bit probe stores at `probe_counter` (at `probe_store`).
pub const PROBE_COUNTER: u32 = 7;
/// The probes' stack top (RSP/ESP at their break symbol).
pub const PROBE_STACK_TOP: u32 = LOAD_ADDR + STACK_TOP_OFF;

const VALUE_ADDR: u32 = LOAD_ADDR + 0x7000;
const COUNTER_ADDR: u32 = LOAD_ADDR + 0x7010;

/// A probe kernel and its symbols.
#[derive(Debug, Clone)]
pub struct ProbeKernel {
    /// The ELF file (what `--kernel` and gdb's `file` load).
    pub elf: Vec<u8>,
    pub symbols: Vec<Symbol>,
}

impl ProbeKernel {
    /// The address of symbol `name`.
    pub fn addr(&self, name: &str) -> Option<u32> {
        self.symbols.iter().find(|s| s.name == name).map(|s| s.addr)
    }
}

fn symbols(placed: Placed) -> Vec<Symbol> {
    let mut out: Vec<Symbol> = placed
        .into_iter()
        .map(|(name, addr)| Symbol {
            name: name.into(),
            addr,
            size: 0,
            code: true,
        })
        .collect();
    for (name, addr) in [("probe_value", VALUE_ADDR), ("probe_counter", COUNTER_ADDR)] {
        out.push(Symbol {
            name: name.into(),
            addr,
            size: 4,
            code: false,
        });
    }
    out
}

fn finish(built: Result<(Vec<u8>, Placed), IcedError>) -> ProbeKernel {
    // The assembler only fails on a bug in this crate; probes take no input.
    let (seg, placed) = built.unwrap_or_else(|e| panic!("testkernels: assembling failed: {e}"));
    let symbols = symbols(placed);
    let elf = elf32_exec_with_symbols(
        &seg,
        LOAD_ADDR,
        SEGMENT_END_OFF,
        LOAD_ADDR + ENTRY_OFF,
        &symbols,
    );
    ProbeKernel { elf, symbols }
}

fn label(a: &mut CodeAssembler, names: &mut Names, name: &'static str) -> Result<(), IcedError> {
    let mut l = a.create_label();
    a.set_label(&mut l)?;
    names.push((name, l));
    Ok(())
}

/// 32-bit protected mode, paging off: `probe_start` sets EAX to
/// [`PROBE_EAX`] and stores [`PROBE_VALUE`] at `probe_value`;
/// `probe_break` loads [`PROBE_EBX`] into EBX (one 5-byte instruction);
/// `probe_store` stores [`PROBE_COUNTER`] at `probe_counter`;
/// `probe_after_store` is a NOP; `probe_exit` writes `value` to the
/// debug-exit port.
pub fn gdb_probe32(value: u8) -> ProbeKernel {
    finish(long_mode::build_protected_named(|a| {
        let mut names = Names::new();
        label(a, &mut names, "probe_start")?;
        a.mov(eax, PROBE_EAX)?;
        a.mov(dword_ptr(VALUE_ADDR), PROBE_VALUE)?;
        label(a, &mut names, "probe_break")?;
        a.mov(ebx, PROBE_EBX)?;
        label(a, &mut names, "probe_next")?;
        a.add(eax, 1)?;
        label(a, &mut names, "probe_store")?;
        a.mov(dword_ptr(COUNTER_ADDR), PROBE_COUNTER)?;
        label(a, &mut names, "probe_after_store")?;
        a.nop()?;
        label(a, &mut names, "probe_exit")?;
        serial_asm::debug_exit32(a, value)?;
        Ok(names)
    }))
}

/// Long mode: `probe64_start` sets RAX to [`PROBE_RAX`] and stores
/// [`PROBE_VALUE`] at `probe_value`; at `probe64_break` RSP is
/// [`PROBE_STACK_TOP`]; `probe64_exit` writes `value` to the debug-exit port.
pub fn gdb_probe64(value: u8) -> ProbeKernel {
    finish(long_mode::build_named(|a| {
        let mut names = Names::new();
        label(a, &mut names, "probe64_start")?;
        a.mov(rax, PROBE_RAX)?;
        a.mov(dword_ptr(u64::from(VALUE_ADDR)), PROBE_VALUE)?;
        label(a, &mut names, "probe64_break")?;
        a.mov(ebx, PROBE_EBX)?;
        label(a, &mut names, "probe64_exit")?;
        serial_asm::debug_exit64(a, value)?;
        Ok(names)
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The section headers and symbols, read back as a loader would.
    fn symbol_names(elf: &[u8]) -> Vec<(String, u32)> {
        let u16_at = |o: usize| u16::from_le_bytes([elf[o], elf[o + 1]]) as usize;
        let u32_at = |o: usize| u32::from_le_bytes(elf[o..o + 4].try_into().unwrap());
        let shoff = u32_at(32) as usize;
        let shnum = u16_at(48);
        let sh = |i: usize, field: usize| u32_at(shoff + 40 * i + 4 * field) as usize;
        let symtab = (0..shnum)
            .find(|&i| sh(i, 1) == 2)
            .expect("a SYMTAB section");
        let strtab = sh(symtab, 6);
        let (off, size) = (sh(symtab, 4), sh(symtab, 5));
        let str_off = sh(strtab, 4);
        (1..size / 16)
            .map(|i| {
                let e = off + 16 * i;
                let name_at = str_off + u32_at(e) as usize;
                let end = elf[name_at..].iter().position(|&b| b == 0).unwrap();
                let name = String::from_utf8(elf[name_at..name_at + end].to_vec()).unwrap();
                (name, u32_at(e + 4))
            })
            .collect()
    }

    #[test]
    fn probes_carry_their_symbols() {
        let p = gdb_probe32(1);
        let names = symbol_names(&p.elf);
        let start = p.addr("probe_start").unwrap();
        assert_eq!(start, LOAD_ADDR + ENTRY_OFF + 6, "after cli and mov esp");
        assert!(names.contains(&("probe_break".into(), p.addr("probe_break").unwrap())));
        assert!(names.contains(&("probe_value".into(), VALUE_ADDR)));
        // mov ebx, imm32 is 5 bytes.
        assert_eq!(
            p.addr("probe_next").unwrap() - p.addr("probe_break").unwrap(),
            5
        );
        // The code at probe_break is that mov (BB imm32).
        let off = 0x1000 + (p.addr("probe_break").unwrap() - LOAD_ADDR) as usize;
        assert_eq!(p.elf[off], 0xbb);
        assert_eq!(p.elf[off + 1..off + 5], PROBE_EBX.to_le_bytes());

        let p = gdb_probe64(1);
        let names = symbol_names(&p.elf);
        assert!(p.addr("probe64_break").unwrap() > LOAD_ADDR + CODE64_OFF);
        assert!(names.iter().any(|(n, _)| n == "probe64_exit"));
    }
}
