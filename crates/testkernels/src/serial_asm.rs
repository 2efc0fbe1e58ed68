//! Code snippets that print on COM1 by polling and leave through port 0xf4.

use iced_x86::code_asm::*;
use iced_x86::IcedError;

const COM1_THR: u16 = 0x3f8;
const COM1_LSR: u16 = 0x3fd;
const LSR_THR_EMPTY: u32 = 0x20;
const LSR_DATA_READY: u32 = 0x01;
const DEBUG_EXIT_PORT: u16 = 0xf4;

/// Write the byte in BL to COM1 once the transmitter is empty. Clobbers AL, DX.
pub fn putc_bl(a: &mut CodeAssembler) -> Result<(), IcedError> {
    let mut wait = a.create_label();
    a.mov(dx, COM1_LSR as u32)?;
    a.set_label(&mut wait)?;
    a.in_(al, dx)?;
    a.test(al, LSR_THR_EMPTY)?;
    a.jz(wait)?;
    a.mov(dx, COM1_THR as u32)?;
    a.mov(al, bl)?;
    a.out(dx, al)?;
    Ok(())
}

/// Print the NUL-terminated string at RSI (64-bit code). Clobbers RAX, RBX,
/// RDX, RSI.
pub fn print_at_rsi64(a: &mut CodeAssembler) -> Result<(), IcedError> {
    let mut next = a.create_label();
    let mut done = a.create_label();
    a.set_label(&mut next)?;
    a.mov(bl, byte_ptr(rsi))?;
    a.test(bl, bl)?;
    a.jz(done)?;
    putc_bl(a)?;
    a.inc(rsi)?;
    a.jmp(next)?;
    a.set_label(&mut done)?;
    a.nop()?;
    Ok(())
}

/// Print `s` (64-bit code): the string travels inline, its address taken
/// with the call/pop idiom. Clobbers RAX, RBX, RDX, RSI.
pub fn print_str64(a: &mut CodeAssembler, s: &str) -> Result<(), IcedError> {
    let mut after = a.create_label();
    a.call(after)?;
    a.db(s.as_bytes())?;
    a.db(&[0])?;
    a.set_label(&mut after)?;
    a.pop(rsi)?;
    print_at_rsi64(a)
}

/// Print `s` (32-bit code). Clobbers EAX, EBX, EDX, ESI.
pub fn print_str32(a: &mut CodeAssembler, s: &str) -> Result<(), IcedError> {
    let mut after = a.create_label();
    let mut next = a.create_label();
    let mut done = a.create_label();
    a.call(after)?;
    a.db(s.as_bytes())?;
    a.db(&[0])?;
    a.set_label(&mut after)?;
    a.pop(esi)?;
    a.set_label(&mut next)?;
    a.mov(bl, byte_ptr(esi))?;
    a.test(bl, bl)?;
    a.jz(done)?;
    putc_bl(a)?;
    a.inc(esi)?;
    a.jmp(next)?;
    a.set_label(&mut done)?;
    a.nop()?;
    Ok(())
}

/// Write `value` to the debug-exit port, then stop for good (64-bit code).
pub fn debug_exit64(a: &mut CodeAssembler, value: u8) -> Result<(), IcedError> {
    a.mov(dx, DEBUG_EXIT_PORT as u32)?;
    a.mov(al, value as u32)?;
    a.out(dx, al)?;
    halt_forever(a)
}

/// Write `value` to the debug-exit port, then stop for good (32-bit code).
pub fn debug_exit32(a: &mut CodeAssembler, value: u8) -> Result<(), IcedError> {
    debug_exit64(a, value)
}

/// `cli; hlt` in a loop: if the VMM ignores the exit, the CPU stays put.
pub fn halt_forever(a: &mut CodeAssembler) -> Result<(), IcedError> {
    let mut again = a.create_label();
    a.set_label(&mut again)?;
    a.cli()?;
    a.hlt()?;
    a.jmp(again)?;
    Ok(())
}

/// Read COM1 by polling and write each byte back, until `end` has been
/// echoed. Clobbers AL, BL, DX.
pub fn emit_echo_until(a: &mut CodeAssembler, end: u8) -> Result<(), IcedError> {
    let mut wait = a.create_label();
    a.set_label(&mut wait)?;
    a.mov(dx, COM1_LSR as u32)?;
    a.in_(al, dx)?;
    a.test(al, LSR_DATA_READY)?;
    a.jz(wait)?;
    a.mov(dx, COM1_THR as u32)?;
    a.in_(al, dx)?;
    a.mov(bl, al)?;
    putc_bl(a)?;
    a.cmp(bl, end as u32)?;
    a.jne(wait)?;
    Ok(())
}

/// Print `label` and R8 as 16 hex digits (64-bit code). Clobbers RAX, RBX,
/// RCX, RDX, RSI, R8.
pub fn print_hex_r8(a: &mut CodeAssembler, label: &str) -> Result<(), IcedError> {
    let mut hex = a.create_label();
    let mut digit = a.create_label();
    print_str64(a, label)?;
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
    putc_bl(a)?;
    a.dec(ecx)?;
    a.jnz(hex)
}
