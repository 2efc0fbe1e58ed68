//! A raw disk whose MBR runs in real mode under firmware: proof that a
//! firmware boot loads and runs a disk's own code.

/// What [`boot_disk`]'s boot sector prints when it ran and read its second
/// sector through the BIOS.
pub const BOOT_DISK_GREETING: &str = "Kite boot sector: BIOS disk read ok";

/// A 1 MiB raw disk whose MBR boot code (run by firmware at 0x7c00 in real
/// mode) reads the disk's second sector through INT 13h AH=42h (EDD, the
/// drive in DL), prints the text stored there through INT 10h AH=0Eh (the
/// firmware's console), and writes `value` to port 0xf4. On a read error
/// it prints `disk read failed` and writes 0x7e. Tests use it to check
/// that a firmware boot loads and runs a disk's own code on either engine
/// and drive type.
pub fn boot_disk(value: u8) -> Vec<u8> {
    let mut disk = vec![0u8; 1 << 20];
    let code = boot_sector_code(value).expect("boot sector assembles");
    assert!(code.len() <= BOOT_DAP, "boot code fits before its data");
    disk[..code.len()].copy_from_slice(&code);
    // The disk address packet: size 16, 1 sector, to 0000:8000, LBA 1.
    disk[BOOT_DAP..BOOT_DAP + 16]
        .copy_from_slice(&[16, 0, 1, 0, 0x00, 0x80, 0x00, 0x00, 1, 0, 0, 0, 0, 0, 0, 0]);
    let failed = b"disk read failed\r\n\0";
    disk[BOOT_FAILED..BOOT_FAILED + failed.len()].copy_from_slice(failed);
    disk[510] = 0x55;
    disk[511] = 0xaa;
    let text = format!("{BOOT_DISK_GREETING}\r\n\0");
    disk[512..512 + text.len()].copy_from_slice(text.as_bytes());
    disk
}

/// Where the boot sector keeps its disk address packet and failure message.
const BOOT_DAP: usize = 0x180;
const BOOT_FAILED: usize = 0x190;

fn boot_sector_code(value: u8) -> Result<Vec<u8>, iced_x86::IcedError> {
    use iced_x86::code_asm::*;
    let mut a = CodeAssembler::new(16)?;
    let mut failed = a.create_label();
    let mut print = a.create_label();
    let mut exit = a.create_label();
    a.cli()?;
    a.xor(ax, ax)?;
    a.mov(ds, ax)?;
    a.mov(es, ax)?;
    a.mov(ss, ax)?;
    a.mov(sp, 0x7c00u32)?;
    a.sti()?;
    // INT 13h AH=42h: read 1 sector at LBA 1 to 0000:8000 (DL: boot drive).
    a.mov(si, 0x7c00 + BOOT_DAP as u32)?;
    a.mov(ah, 0x42u32)?;
    a.int(0x13)?;
    a.jc(failed)?;
    a.mov(si, 0x8000u32)?;
    a.call(print)?;
    a.mov(al, value as u32)?;
    a.jmp(exit)?;
    a.set_label(&mut failed)?;
    a.mov(si, 0x7c00 + BOOT_FAILED as u32)?;
    a.call(print)?;
    a.mov(al, 0x7eu32)?;
    a.set_label(&mut exit)?;
    // Give the firmware's console (which may buffer) 1 s to drain:
    // INT 15h AH=86h waits CX:DX microseconds.
    a.push(ax)?;
    a.mov(ah, 0x86u32)?;
    a.mov(cx, 0x000fu32)?;
    a.mov(dx, 0x4240u32)?;
    a.int(0x15)?;
    a.pop(ax)?;
    a.out(0xf4, al)?;
    let mut spin = a.create_label();
    a.set_label(&mut spin)?;
    a.hlt()?;
    a.jmp(spin)?;
    // print: the NUL-terminated string at DS:SI through INT 10h teletype.
    a.set_label(&mut print)?;
    let mut done = a.create_label();
    a.lodsb()?;
    a.test(al, al)?;
    a.jz(done)?;
    a.mov(ah, 0x0eu32)?;
    a.mov(bx, 0x0007u32)?;
    a.int(0x10)?;
    a.jmp(print)?;
    a.set_label(&mut done)?;
    a.ret()?;
    a.assemble(0x7c00)
}

/// What [`option_rom`] prints when the firmware runs it.
pub const OPTION_ROM_GREETING: &str = "Kite option ROM: initialised";

/// Where the option ROM keeps its message.
const ROM_TEXT: usize = 0x100;

/// A 512-byte legacy option ROM (0x55 0xAA, one block, a valid checksum)
/// whose initialisation entry (offset 3, far-called by the firmware in real
/// mode) prints [`OPTION_ROM_GREETING`] through INT 10h and returns.
pub fn option_rom() -> Vec<u8> {
    let code = option_rom_code().expect("option ROM assembles");
    let mut rom = vec![0u8; 512];
    rom[0] = 0x55;
    rom[1] = 0xaa;
    rom[2] = 1;
    assert!(
        3 + code.len() <= ROM_TEXT,
        "option ROM code fits before its text"
    );
    rom[3..3 + code.len()].copy_from_slice(&code);
    let text = format!("{OPTION_ROM_GREETING}\r\n\0");
    rom[ROM_TEXT..ROM_TEXT + text.len()].copy_from_slice(text.as_bytes());
    let sum = rom.iter().fold(0u8, |a, &b| a.wrapping_add(b));
    rom[511] = 0u8.wrapping_sub(sum);
    rom
}

fn option_rom_code() -> Result<Vec<u8>, iced_x86::IcedError> {
    use iced_x86::code_asm::*;
    let mut a = CodeAssembler::new(16)?;
    let mut next = a.create_label();
    let mut done = a.create_label();
    a.pushf()?;
    a.push(ds)?;
    a.pusha()?;
    a.push(cs)?;
    a.pop(ds)?;
    a.mov(si, ROM_TEXT as u32)?;
    a.set_label(&mut next)?;
    a.lodsb()?;
    a.test(al, al)?;
    a.jz(done)?;
    a.mov(ah, 0x0eu32)?;
    a.mov(bx, 0x0007u32)?;
    a.int(0x10)?;
    a.jmp(next)?;
    a.set_label(&mut done)?;
    a.popa()?;
    a.pop(ds)?;
    a.popf()?;
    a.retf()?;
    a.assemble(3)
}
