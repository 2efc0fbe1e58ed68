//! The kernel skeletons: a 32-bit entry that either stays in protected mode
//! or switches to long mode, around a body the caller assembles.

use iced_x86::code_asm::*;
use iced_x86::{Code, IcedError, Instruction};

use crate::elf::elf32_exec;
use crate::layout::*;
use crate::serial_asm;

/// The compute kernel's generator: x = x * LCG_MUL + LCG_ADD (Knuth's MMIX).
pub const COMPUTE_SEED: u64 = 0x1234_5678_9abc_def0;
pub const LCG_MUL: u64 = 6_364_136_223_846_793_005;
pub const LCG_ADD: u64 = 1_442_695_040_888_963_407;

const CR4_PAE: u32 = 1 << 5;
const CR0_PG: u32 = 1 << 31;
const MSR_EFER: u32 = 0xc000_0080;
const EFER_LME: u32 = 1 << 8;

/// Flat descriptors: null, 64-bit code, data, 32-bit code.
const GDT: [u64; 4] = [
    0,
    0x00af_9a00_0000_ffff,
    0x00cf_9200_0000_ffff,
    0x00cf_9a00_0000_ffff,
];
const GDTR_OFF: u32 = GDT_OFF + 0x20;

/// Labels a kernel body names (for a symbol table), and where they ended up.
pub type Names = Vec<(&'static str, CodeLabel)>;
pub type Placed = Vec<(&'static str, u32)>;

fn assemble_at(a: &mut CodeAssembler, ip: u32, max: u32) -> Result<Vec<u8>, IcedError> {
    assemble_named(a, ip, max, &Vec::new()).map(|(code, _)| code)
}

/// Assemble at `ip` and resolve the addresses of `names`.
fn assemble_named(
    a: &mut CodeAssembler,
    ip: u32,
    max: u32,
    names: &Names,
) -> Result<(Vec<u8>, Placed), IcedError> {
    let result = a.assemble_options(
        u64::from(ip),
        iced_x86::BlockEncoderOptions::RETURN_NEW_INSTRUCTION_OFFSETS,
    )?;
    let mut placed = Vec::new();
    for (name, label) in names {
        placed.push((*name, result.label_ip(label)? as u32));
    }
    let code = result.inner.code_buffer;
    // A slot overflow is a bug in this crate, not an input error.
    assert!(
        code.len() <= max as usize,
        "test kernel code does not fit its slot"
    );
    Ok((code, placed))
}

fn put(seg: &mut [u8], off: u32, bytes: &[u8]) {
    seg[off as usize..off as usize + bytes.len()].copy_from_slice(bytes);
}

/// The file part of the segment, with the Multiboot header in place.
fn segment_with_header() -> Vec<u8> {
    let mut seg = vec![0u8; FILE_END_OFF as usize];
    // Flags: bit 0 page-align modules, bit 1 memory information wanted.
    let flags: u32 = 0x3;
    let checksum = 0u32.wrapping_sub(MULTIBOOT_HEADER_MAGIC.wrapping_add(flags));
    put(&mut seg, 0, &MULTIBOOT_HEADER_MAGIC.to_le_bytes());
    put(&mut seg, 4, &flags.to_le_bytes());
    put(&mut seg, 8, &checksum.to_le_bytes());
    for (i, d) in GDT.iter().enumerate() {
        put(&mut seg, GDT_OFF + 8 * i as u32, &d.to_le_bytes());
    }
    put(
        &mut seg,
        GDTR_OFF,
        &((GDT.len() * 8 - 1) as u16).to_le_bytes(),
    );
    put(&mut seg, GDTR_OFF + 2, &(LOAD_ADDR + GDT_OFF).to_le_bytes());
    seg
}

fn finish(seg: Vec<u8>) -> Vec<u8> {
    elf32_exec(&seg, LOAD_ADDR, SEGMENT_END_OFF, LOAD_ADDR + ENTRY_OFF)
}

/// A kernel that switches to long mode and runs `body` as 64-bit code. EBX
/// (the Multiboot information address) survives into RBX.
pub fn build(
    body: impl FnOnce(&mut CodeAssembler) -> Result<(), IcedError>,
) -> Result<Vec<u8>, IcedError> {
    let (seg, _) = build_named(|a| body(a).map(|()| Vec::new()))?;
    Ok(finish(seg))
}

/// `build`'s segment (file part), with the addresses of the labels `body` names.
pub fn build_named(
    body: impl FnOnce(&mut CodeAssembler) -> Result<Names, IcedError>,
) -> Result<(Vec<u8>, Placed), IcedError> {
    let mut seg = segment_with_header();

    // Identity map of the first GiB with 2 MiB pages.
    put(
        &mut seg,
        PML4_OFF,
        &u64::from((LOAD_ADDR + PDPT_OFF) | 3).to_le_bytes(),
    );
    put(
        &mut seg,
        PDPT_OFF,
        &u64::from((LOAD_ADDR + PD_OFF) | 3).to_le_bytes(),
    );
    for i in 0..512u32 {
        let pde = (u64::from(i) << 21) | 0x83; // present, writable, 2 MiB page
        put(&mut seg, PD_OFF + 8 * i, &pde.to_le_bytes());
    }

    let mut a = CodeAssembler::new(32)?;
    a.cli()?;
    a.mov(esp, LOAD_ADDR + STACK_TOP_OFF)?;
    a.lgdt(ptr(LOAD_ADDR + GDTR_OFF))?;
    a.mov(edx, cr4)?;
    a.or(edx, CR4_PAE)?;
    a.mov(cr4, edx)?;
    a.mov(edx, LOAD_ADDR + PML4_OFF)?;
    a.mov(cr3, edx)?;
    a.mov(ecx, MSR_EFER)?;
    a.rdmsr()?;
    a.or(eax, EFER_LME)?;
    a.wrmsr()?;
    a.mov(edx, cr0)?;
    a.or(edx, CR0_PG)?;
    a.mov(cr0, edx)?;
    a.add_instruction(Instruction::with_far_branch(
        Code::Jmp_ptr1632,
        SEL_CODE64,
        LOAD_ADDR + CODE64_OFF,
    )?)?;
    let entry = assemble_at(&mut a, LOAD_ADDR + ENTRY_OFF, GDT_OFF - ENTRY_OFF)?;
    put(&mut seg, ENTRY_OFF, &entry);

    let mut a = CodeAssembler::new(64)?;
    a.mov(ax, SEL_DATA as u32)?;
    a.mov(ds, ax)?;
    a.mov(es, ax)?;
    a.mov(ss, ax)?;
    a.mov(ebx, ebx)?; // zero-extend the Multiboot info address
    a.mov(rsp, u64::from(LOAD_ADDR + STACK_TOP_OFF))?;
    let names = body(&mut a)?;
    serial_asm::halt_forever(&mut a)?;
    let (code, placed) = assemble_named(
        &mut a,
        LOAD_ADDR + CODE64_OFF,
        FILE_END_OFF - CODE64_OFF,
        &names,
    )?;
    put(&mut seg, CODE64_OFF, &code);
    Ok((seg, placed))
}

/// A kernel that stays in 32-bit protected mode, paging off, and runs `body`.
/// EAX and EBX hold what the loader left there.
pub fn build_protected(
    body: impl FnOnce(&mut CodeAssembler) -> Result<(), IcedError>,
) -> Result<Vec<u8>, IcedError> {
    let (seg, _) = build_protected_named(|a| body(a).map(|()| Vec::new()))?;
    Ok(finish(seg))
}

/// `build_protected`'s segment (file part), with the addresses of the
/// labels `body` names.
pub fn build_protected_named(
    body: impl FnOnce(&mut CodeAssembler) -> Result<Names, IcedError>,
) -> Result<(Vec<u8>, Placed), IcedError> {
    let mut seg = segment_with_header();
    let mut a = CodeAssembler::new(32)?;
    a.cli()?;
    a.mov(esp, LOAD_ADDR + STACK_TOP_OFF)?;
    let names = body(&mut a)?;
    serial_asm::halt_forever(&mut a)?;
    let (code, placed) =
        assemble_named(&mut a, LOAD_ADDR + ENTRY_OFF, GDT_OFF - ENTRY_OFF, &names)?;
    put(&mut seg, ENTRY_OFF, &code);
    Ok((seg, placed))
}

/// Fill the buffer from the generator, fold it into a checksum, print it.
pub fn emit_compute(a: &mut CodeAssembler, words: u32) -> Result<(), IcedError> {
    let buf = u64::from(LOAD_ADDR + BUFFER_OFF);
    let mut fill = a.create_label();
    let mut fold = a.create_label();

    a.mov(rdi, buf)?;
    a.mov(ecx, words)?;
    a.mov(rax, COMPUTE_SEED)?;
    a.mov(r9, LCG_MUL)?;
    a.mov(r10, LCG_ADD)?;
    a.set_label(&mut fill)?;
    a.imul_2(rax, r9)?;
    a.add(rax, r10)?;
    a.mov(qword_ptr(rdi), rax)?;
    a.add(rdi, 8)?;
    a.dec(ecx)?;
    a.jnz(fill)?;

    a.xor(r8, r8)?;
    a.xor(ecx, ecx)?;
    a.mov(rdi, buf)?;
    a.set_label(&mut fold)?;
    a.mov(rax, qword_ptr(rdi + rcx * 8))?;
    a.add(rax, rcx)?;
    a.rol(r8, 5)?;
    a.xor(r8, rax)?;
    a.inc(ecx)?;
    a.cmp(ecx, words)?;
    a.jb(fold)?;

    serial_asm::print_hex_r8(a, "checksum=")?;
    serial_asm::print_str64(a, "\n")
}

/// Like [`emit_compute`], but runs the fill-and-fold `rounds` times (each
/// round starts from the seed again, so the printed checksum is the same):
/// a CPU-bound loop whose length benchmarks choose.
pub fn emit_compute_rounds(
    a: &mut CodeAssembler,
    words: u32,
    rounds: u32,
) -> Result<(), IcedError> {
    let buf = u64::from(LOAD_ADDR + BUFFER_OFF);
    let mut round = a.create_label();
    let mut fill = a.create_label();
    let mut fold = a.create_label();
    a.mov(r15d, rounds.max(1))?;
    a.set_label(&mut round)?;
    a.mov(rdi, buf)?;
    a.mov(ecx, words)?;
    a.mov(rax, COMPUTE_SEED)?;
    a.mov(r9, LCG_MUL)?;
    a.mov(r10, LCG_ADD)?;
    a.set_label(&mut fill)?;
    a.imul_2(rax, r9)?;
    a.add(rax, r10)?;
    a.mov(qword_ptr(rdi), rax)?;
    a.add(rdi, 8)?;
    a.dec(ecx)?;
    a.jnz(fill)?;
    a.xor(r8, r8)?;
    a.xor(ecx, ecx)?;
    a.mov(rdi, buf)?;
    a.set_label(&mut fold)?;
    a.mov(rax, qword_ptr(rdi + rcx * 8))?;
    a.add(rax, rcx)?;
    a.rol(r8, 5)?;
    a.xor(r8, rax)?;
    a.inc(ecx)?;
    a.cmp(ecx, words)?;
    a.jb(fold)?;
    a.dec(r15d)?;
    a.jnz(round)?;
    // Print the checksum of the last round with the ordinary printer: a
    // single round more of the same work.
    emit_compute(a, words)
}

/// Print `mbi cmdline=` and the Multiboot command line (or `<none>`).
pub fn emit_print_cmdline(a: &mut CodeAssembler) -> Result<(), IcedError> {
    let mut none = a.create_label();
    let mut done = a.create_label();
    a.mov(r12, rbx)?; // the printers clobber RBX
    serial_asm::print_str64(a, "mbi cmdline=")?;
    a.test(dword_ptr(r12), 1 << 2)?;
    a.jz(none)?;
    a.mov(esi, dword_ptr(r12 + 16))?;
    serial_asm::print_at_rsi64(a)?;
    a.jmp(done)?;
    a.set_label(&mut none)?;
    serial_asm::print_str64(a, "<none>")?;
    a.set_label(&mut done)?;
    serial_asm::print_str64(a, "\n")
}
