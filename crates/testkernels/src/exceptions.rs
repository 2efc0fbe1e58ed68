//! The exceptions kernel's body: an IDT in long mode, a #DE from `div` by
//! zero and a #PF from a read of an unmapped page, both handled through the
//! IDT and recovered from with IRETQ, then a report on COM1.

use iced_x86::code_asm::*;
use iced_x86::IcedError;

use crate::layout::*;
use crate::serial_asm;

/// Where the IDT (256 16-byte gates) and the IDTR live, in the zeroed memory
/// after the file image.
const IDT_OFF: u32 = 0x9000;
const IDTR_OFF: u32 = 0xa000;
/// An address the identity map leaves unmapped (PDPT entry 1); the #PF
/// handler maps that GiB onto the first one, so the read then returns the
/// byte at `FAULT_ADDR - (1 << 30)`: the kernel's own Multiboot header.
pub const FAULT_ADDR: u64 = (1 << 30) + LOAD_ADDR as u64;

/// Write a 64-bit interrupt gate for `vector` pointing at `handler`.
fn set_gate(a: &mut CodeAssembler, vector: u32, handler: CodeLabel) -> Result<(), IcedError> {
    let gate = u64::from(LOAD_ADDR + IDT_OFF + 16 * vector);
    a.lea(rax, ptr(handler))?;
    a.mov(rdi, gate)?;
    a.mov(word_ptr(rdi), ax)?;
    a.mov(word_ptr(rdi + 2), SEL_CODE64 as u32)?;
    a.mov(word_ptr(rdi + 4), 0x8e00u32)?; // present, DPL 0, 64-bit interrupt gate
    a.shr(rax, 16)?;
    a.mov(word_ptr(rdi + 6), ax)?;
    a.shr(rax, 16)?;
    a.mov(dword_ptr(rdi + 8), eax)?;
    a.mov(dword_ptr(rdi + 12), 0u32)?;
    Ok(())
}

/// Print `label` and R8 as 16 hex digits. Clobbers RAX, RBX, RCX, RDX, RSI, R8.
pub fn print_hex_r8(a: &mut CodeAssembler, label: &str) -> Result<(), IcedError> {
    let mut hex = a.create_label();
    let mut digit = a.create_label();
    serial_asm::print_str64(a, label)?;
    a.mov(ecx, 16)?;
    a.set_label(&mut hex)?;
    a.rol(r8, 4)?;
    a.mov(eax, r8d)?;
    a.and(eax, 0xf)?;
    a.add(eax, b'0' as u32)?;
    a.cmp(eax, b'9' as u32)?;
    a.jbe(digit)?;
    a.add(eax, (b'a' - b'0' - 10) as u32)?;
    a.set_label(&mut digit)?;
    a.mov(ebx, eax)?;
    serial_asm::putc_bl(a)?;
    a.dec(ecx)?;
    a.jnz(hex)
}

/// The body: R12 counts #DE, R13 counts #PF, R14 = CR2 and R15 = the error
/// code the #PF handler saw, RBP = the value the faulting read returned.
pub fn emit_exceptions(a: &mut CodeAssembler) -> Result<(), IcedError> {
    let mut de_handler = a.create_label();
    let mut pf_handler = a.create_label();
    let mut de_resume = a.create_label();
    let mut body = a.create_label();
    a.jmp(body)?;

    // #DE: count it and resume after the division.
    a.set_label(&mut de_handler)?;
    a.inc(r12)?;
    a.lea(rax, ptr(de_resume))?;
    a.mov(qword_ptr(rsp), rax)?;
    a.iretq()?;

    // #PF: record CR2 and the error code, map the faulting GiB, retry.
    a.set_label(&mut pf_handler)?;
    a.inc(r13)?;
    a.mov(r14, cr2)?;
    a.pop(r15)?;
    a.mov(rax, u64::from(LOAD_ADDR + PD_OFF) | 3)?;
    a.mov(rdi, u64::from(LOAD_ADDR + PDPT_OFF + 8))?;
    a.mov(qword_ptr(rdi), rax)?;
    a.mov(rax, cr3)?;
    a.mov(cr3, rax)?;
    a.iretq()?;

    a.set_label(&mut body)?;
    set_gate(a, 0, de_handler)?;
    set_gate(a, 14, pf_handler)?;
    a.mov(rdi, u64::from(LOAD_ADDR + IDTR_OFF))?;
    a.mov(word_ptr(rdi), 0xfffu32)?;
    a.mov(rax, u64::from(LOAD_ADDR + IDT_OFF))?;
    a.mov(qword_ptr(rdi + 2), rax)?;
    a.lidt(ptr(rdi))?;
    a.xor(r12d, r12d)?;
    a.xor(r13d, r13d)?;

    a.mov(eax, 7)?;
    a.xor(edx, edx)?;
    a.xor(ecx, ecx)?;
    a.div(ecx)?;
    a.set_label(&mut de_resume)?;

    a.mov(rsi, FAULT_ADDR)?;
    a.mov(ebp, dword_ptr(rsi))?;

    a.mov(r8, r12)?;
    print_hex_r8(a, "de=")?;
    a.mov(r8, r13)?;
    print_hex_r8(a, " pf=")?;
    a.mov(r8, r14)?;
    print_hex_r8(a, " cr2=")?;
    a.mov(r8, r15)?;
    print_hex_r8(a, " err=")?;
    a.mov(r8, rbp)?;
    print_hex_r8(a, " read=")?;
    serial_asm::print_str64(a, "\n")
}
