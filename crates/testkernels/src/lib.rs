//! Kite's built-in guests: small Multiboot v1 kernels assembled in memory with
//! iced-x86's `code_asm`, returned as ELF32 images any Multiboot loader boots.
//!
//! Each kernel talks to the PC only through COM1 (0x3f8, polled: wait for LSR
//! bit 5 "THR empty", then write THR) and the isa-debug-exit port 0xf4 (a write
//! of `v` ends the VMM with status `(v << 1) | 1`). They use no interrupts and
//! no IRET, and keep their loops short, so they run on slow engines too.
//!
//! Long-mode kernels start in 32-bit protected mode (as Multiboot enters), load
//! their own GDT, identity-map the first GiB with 2 MiB pages, set CR4.PAE,
//! EFER.LME and CR0.PG, and far-jump to 64-bit code.
//!
//! This crate knows nothing about Kite's engines or devices; it only makes bytes.

mod boot_disk;
mod elf;
mod exceptions;
mod gdb_probe;
mod layout;
mod long_mode;
mod serial_asm;

use iced_x86::code_asm::*;
use iced_x86::IcedError;

pub use elf::Symbol;
pub use gdb_probe::{
    gdb_probe32, gdb_probe64, ProbeKernel, PROBE_COUNTER, PROBE_EAX, PROBE_EBX, PROBE_RAX,
    PROBE_STACK_TOP, PROBE_VALUE,
};
pub use layout::{LOAD_ADDR, MULTIBOOT_MAGIC_BOOTLOADER};

/// The isa-debug-exit value the built-in greeting kernel writes: the process
/// ends with status `(0x10 << 1) | 1 = 33` (the "success" convention of
/// bootimage-style test kernels).
pub use boot_disk::{boot_disk, option_rom, BOOT_DISK_GREETING, OPTION_ROM_GREETING};

pub const HELLO_EXIT_VALUE: u8 = 0x10;

/// The line the greeting kernel prints.
pub const HELLO_GREETING: &str = "Hello from Kite! (64-bit long mode)";

/// The line the 32-bit kernel prints.
pub const HELLO32_GREETING: &str = "Hello from Kite! (32-bit protected mode)";

/// The number of 64-bit words the compute kernel fills and checks.
pub const COMPUTE_WORDS: usize = 2048;

/// The process exit status a debug-exit write of `value` produces.
pub fn debug_exit_status(value: u8) -> i32 {
    (i32::from(value) << 1) | 1
}

/// The default guest: enters long mode, prints [`HELLO_GREETING`] on COM1 and
/// writes [`HELLO_EXIT_VALUE`] to port 0xf4.
pub fn hello() -> Vec<u8> {
    build_long_mode(|a| {
        serial_asm::print_str64(a, &format!("{HELLO_GREETING}\n"))?;
        serial_asm::debug_exit64(a, HELLO_EXIT_VALUE)
    })
}

/// Enters long mode and writes `value` to port 0xf4 without printing anything.
pub fn exit_with(value: u8) -> Vec<u8> {
    build_long_mode(|a| serial_asm::debug_exit64(a, value))
}

/// Enters long mode, fills a buffer of [`COMPUTE_WORDS`] words from a linear
/// congruential generator, folds it back into a checksum, prints
/// `checksum=<16 hex digits>` on COM1, and writes `value` to port 0xf4.
/// [`compute_checksum`] gives the line's expected value.
pub fn compute(value: u8) -> Vec<u8> {
    build_long_mode(|a| {
        long_mode::emit_compute(a, COMPUTE_WORDS as u32)?;
        serial_asm::debug_exit64(a, value)
    })
}

/// The compute kernel with its fill-and-fold repeated `rounds` times before
/// the checksum is printed (the same line as [`compute`]): a CPU-bound
/// benchmark guest (scripts/bench.sh).
pub fn compute_rounds(value: u8, rounds: u32) -> Vec<u8> {
    build_long_mode(|a| {
        long_mode::emit_compute_rounds(a, COMPUTE_WORDS as u32, rounds)?;
        serial_asm::debug_exit64(a, value)
    })
}

/// Enters long mode, installs an IDT, takes a #DE (`div` by zero) and a #PF
/// (a read of an unmapped page) through it and recovers from both with
/// IRETQ, prints [`exceptions_report`] on COM1 and writes `value` to port
/// 0xf4. Unlike the others, this kernel needs IRET.
pub fn exceptions(value: u8) -> Vec<u8> {
    build_long_mode(|a| {
        exceptions::emit_exceptions(a)?;
        serial_asm::debug_exit64(a, value)
    })
}

/// The line the exceptions kernel prints when the CPU did everything right:
/// one #DE, one #PF at the unmapped address with error code 0 (a supervisor
/// read of a not-present page), and the read returning the Multiboot magic
/// found through the new mapping.
pub fn exceptions_report() -> String {
    format!(
        "de={:016x} pf={:016x} cr2={:016x} err={:016x} read={:016x}",
        1,
        1,
        exceptions::FAULT_ADDR,
        0,
        layout::MULTIBOOT_HEADER_MAGIC
    )
}

/// Enters long mode and executes VZEROUPPER (VEX-encoded AVX, which the emu
/// engine does not implement or advertise), with no IDT: the #UD becomes a
/// triple fault. On a CPU with AVX it instead writes `value` to port 0xf4.
pub fn unimplemented_instruction(value: u8) -> Vec<u8> {
    build_long_mode(|a| {
        a.vzeroupper()?;
        serial_asm::debug_exit64(a, value)
    })
}

/// What the compute kernel prints after `checksum=`: the same algorithm in Rust.
pub fn compute_checksum() -> u64 {
    let mut x: u64 = long_mode::COMPUTE_SEED;
    let mut buf = vec![0u64; COMPUTE_WORDS];
    for w in buf.iter_mut() {
        x = x
            .wrapping_mul(long_mode::LCG_MUL)
            .wrapping_add(long_mode::LCG_ADD);
        *w = x;
    }
    let mut sum: u64 = 0;
    for (i, w) in buf.iter().enumerate() {
        sum = sum.rotate_left(5) ^ w.wrapping_add(i as u64);
    }
    sum
}

/// Stays in 32-bit protected mode (paging off): checks that EAX holds the
/// Multiboot magic, prints [`HELLO32_GREETING`] and writes `value` to port
/// 0xf4. If EAX was wrong it prints `bad multiboot magic` and writes 0x7f.
pub fn hello32(value: u8) -> Vec<u8> {
    build_protected_mode(|a| {
        let mut bad = a.create_label();
        a.cmp(eax, MULTIBOOT_MAGIC_BOOTLOADER)?;
        a.jne(bad)?;
        serial_asm::print_str32(a, &format!("{HELLO32_GREETING}\n"))?;
        serial_asm::debug_exit32(a, value)?;
        a.set_label(&mut bad)?;
        serial_asm::print_str32(a, "bad multiboot magic\n")?;
        serial_asm::debug_exit32(a, 0x7f)
    })
}

/// Enters long mode, prints `mbi cmdline=<cmdline>` taken from the Multiboot
/// information structure (flag bit 2), and writes `value` to port 0xf4. Tests
/// use it to check the loader's info structure from inside the guest.
pub fn print_cmdline(value: u8) -> Vec<u8> {
    build_long_mode(|a| {
        long_mode::emit_print_cmdline(a)?;
        serial_asm::debug_exit64(a, value)
    })
}

/// The prefix of each line the counter kernel prints.
pub const COUNTER_PREFIX: &str = "count=";

/// Enters long mode and counts for ever: prints `count=<16 hex digits>` on
/// COM1 about every 20 ms of guest time (measured on the ACPI PM timer at
/// port 0x608), starting at 0. A guest whose progress a test can watch
/// stop and go on (pause/resume); only the VMM ends it.
pub fn counter() -> Vec<u8> {
    build_long_mode(|a| {
        let mut top = a.create_label();
        let mut wait = a.create_label();
        a.xor(r9d, r9d)?;
        a.set_label(&mut top)?;
        a.mov(r8, r9)?;
        serial_asm::print_hex_r8(a, COUNTER_PREFIX)?;
        a.mov(ebx, b'\n' as u32)?;
        serial_asm::putc_bl(a)?;
        a.inc(r9)?;
        a.mov(dx, 0x608u32)?;
        a.in_(eax, dx)?;
        a.mov(r10d, eax)?;
        a.set_label(&mut wait)?;
        a.pause()?;
        a.in_(eax, dx)?;
        a.sub(eax, r10d)?;
        a.and(eax, 0x00ff_ffff)?;
        // 20 ms at 3.579545 MHz.
        a.cmp(eax, 71_591)?;
        a.jb(wait)?;
        a.jmp(top)
    })
}

/// The prefix of each line the memory-load kernel prints after a sweep.
pub const SWEEP_PREFIX: &str = "sweep=";
/// What it prints (then halts) when a page does not hold what it wrote.
pub const STALE_PAGE: &str = "stale page at ";
/// The memory the memory-load kernel writes: 16 MiB from 8 MiB (a guest
/// needs 24 MiB or more).
pub const MEMORY_LOAD_BASE: u64 = 8 << 20;
pub const MEMORY_LOAD_PAGES: u64 = 4096;

/// Enters long mode and dirties memory for ever: sweep N (from 1) writes N
/// into the first word of each 4 KiB page of `MEMORY_LOAD_BASE` ..
/// +`MEMORY_LOAD_PAGES` pages, first checking that the page still holds
/// N - 1; every 16 sweeps it prints `sweep=<16 hex digits>`. A page that
/// lost a write (a migration that missed it) prints `stale page at
/// <address>` and halts. For live migration under load.
pub fn memory_load() -> Vec<u8> {
    build_long_mode(|a| {
        let mut top = a.create_label();
        let mut page = a.create_label();
        let mut quiet = a.create_label();
        let mut bad = a.create_label();
        a.mov(r9d, 1u32)?;
        a.set_label(&mut top)?;
        a.mov(rdi, MEMORY_LOAD_BASE)?;
        a.mov(r11, MEMORY_LOAD_BASE + MEMORY_LOAD_PAGES * 4096)?;
        a.set_label(&mut page)?;
        a.mov(rax, qword_ptr(rdi))?;
        a.lea(r10, qword_ptr(r9 - 1))?;
        a.cmp(rax, r10)?;
        a.jne(bad)?;
        a.mov(qword_ptr(rdi), r9)?;
        a.add(rdi, 4096)?;
        a.cmp(rdi, r11)?;
        a.jb(page)?;
        a.test(r9d, 15u32)?;
        a.jnz(quiet)?;
        a.mov(r8, r9)?;
        serial_asm::print_hex_r8(a, SWEEP_PREFIX)?;
        a.mov(ebx, b'\n' as u32)?;
        serial_asm::putc_bl(a)?;
        a.set_label(&mut quiet)?;
        a.inc(r9)?;
        a.jmp(top)?;
        a.set_label(&mut bad)?;
        a.mov(r8, rdi)?;
        serial_asm::print_hex_r8(a, STALE_PAGE)?;
        a.mov(ebx, b'\n' as u32)?;
        serial_asm::putc_bl(a)
    })
}

/// Enters long mode, prints `halted` and halts with interrupts off, for good:
/// only the VMM (Ctrl-A x, a signal) ends it.
pub fn halt() -> Vec<u8> {
    build_long_mode(|a| serial_asm::print_str64(a, "halted\n"))
}

/// The byte that ends [`echo`].
pub const ECHO_END: u8 = b'.';

/// Enters long mode and echoes COM1 input back (polling LSR bit 0, "data
/// ready"), until it has echoed [`ECHO_END`]; then writes `value` to 0xf4.
pub fn echo(value: u8) -> Vec<u8> {
    build_long_mode(|a| {
        serial_asm::emit_echo_until(a, ECHO_END)?;
        serial_asm::debug_exit64(a, value)
    })
}

/// Stays in 32-bit mode, loads an empty IDT and executes UD2: the #UD cannot
/// be delivered, nor the #DF after it, so the CPU shuts down (triple fault).
pub fn triple_fault() -> Vec<u8> {
    build_protected_mode(|a| {
        let mut idtr = a.create_label();
        let mut after = a.create_label();
        a.call(after)?;
        a.set_label(&mut idtr)?;
        a.db(&[0; 6])?; // limit 0, base 0
        a.set_label(&mut after)?;
        a.pop(eax)?;
        a.lidt(ptr(eax))?;
        serial_asm::print_str32(a, "faulting\n")?;
        a.ud2()
    })
}

/// Stays in 32-bit mode and asks the i8042 keyboard controller to pulse the
/// CPU reset line (command 0xfe on port 0x64).
pub fn i8042_reset() -> Vec<u8> {
    build_protected_mode(|a| {
        serial_asm::print_str32(a, "resetting\n")?;
        a.mov(al, 0xfe)?;
        a.out(0x64, al)
    })
}

fn build_long_mode(body: impl FnOnce(&mut CodeAssembler) -> Result<(), IcedError>) -> Vec<u8> {
    // The assembler only fails on a bug in this crate (a bad operand
    // combination); the kernels take no outside input.
    long_mode::build(body).unwrap_or_else(|e| panic!("testkernels: assembling failed: {e}"))
}

fn build_protected_mode(body: impl FnOnce(&mut CodeAssembler) -> Result<(), IcedError>) -> Vec<u8> {
    long_mode::build_protected(body)
        .unwrap_or_else(|e| panic!("testkernels: assembling failed: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u32_at(b: &[u8], off: usize) -> u32 {
        u32::from_le_bytes(b[off..off + 4].try_into().unwrap())
    }

    #[test]
    fn images_are_multiboot_elf32() {
        for img in [
            hello(),
            exit_with(3),
            compute(5),
            compute_rounds(5, 3),
            hello32(1),
            print_cmdline(2),
        ] {
            assert_eq!(&img[..4], b"\x7fELF");
            assert_eq!(img[4], 1, "ELFCLASS32");
            // The multiboot header sits in the first 8 KiB, 4-aligned, with a
            // checksum that makes the three words sum to zero.
            let off = (0..8192 - 12)
                .step_by(4)
                .find(|&o| u32_at(&img, o) == 0x1bad_b002)
                .expect("multiboot header");
            let sum = u32_at(&img, off)
                .wrapping_add(u32_at(&img, off + 4))
                .wrapping_add(u32_at(&img, off + 8));
            assert_eq!(sum, 0);
            assert!(img.len() < 64 * 1024, "kernels stay small");
        }
    }

    #[test]
    fn exit_status_formula() {
        assert_eq!(debug_exit_status(HELLO_EXIT_VALUE), 33);
        assert_eq!(debug_exit_status(0), 1);
        assert_eq!(debug_exit_status(0x7f), 255);
    }

    #[test]
    fn greeting_bytes_are_in_the_image() {
        let img = hello();
        let g = HELLO_GREETING.as_bytes();
        assert!(img.windows(g.len()).any(|w| w == g));
    }
}
