//! A minimal ELF32 executable with one PT_LOAD segment, as a Multiboot loader
//! reads it.

/// File offset of the loadable segment (page aligned, so it is congruent to
/// its address).
const SEGMENT_FILE_OFF: u32 = 0x1000;

/// An i386 ELF executable whose single PT_LOAD segment holds `image` at
/// `load_addr`, `memsz` bytes in memory (the rest zero), entered at `entry`.
pub fn elf32_exec(image: &[u8], load_addr: u32, memsz: u32, entry: u32) -> Vec<u8> {
    let mut f = vec![0u8; SEGMENT_FILE_OFF as usize];
    // e_ident: magic, ELFCLASS32, ELFDATA2LSB, EV_CURRENT.
    f[..7].copy_from_slice(b"\x7fELF\x01\x01\x01");
    let put16 =
        |f: &mut Vec<u8>, off: usize, v: u16| f[off..off + 2].copy_from_slice(&v.to_le_bytes());
    put16(&mut f, 16, 2); // ET_EXEC
    put16(&mut f, 18, 3); // EM_386
    let put32 =
        |f: &mut Vec<u8>, off: usize, v: u32| f[off..off + 4].copy_from_slice(&v.to_le_bytes());
    put32(&mut f, 20, 1); // e_version
    put32(&mut f, 24, entry);
    put32(&mut f, 28, 52); // e_phoff
    put32(&mut f, 32, 0); // e_shoff
    put32(&mut f, 36, 0); // e_flags
    put16(&mut f, 40, 52); // e_ehsize
    put16(&mut f, 42, 32); // e_phentsize
    put16(&mut f, 44, 1); // e_phnum
    put16(&mut f, 46, 40); // e_shentsize
                           // Program header: PT_LOAD, RWX.
    let ph = 52;
    put32(&mut f, ph, 1);
    put32(&mut f, ph + 4, SEGMENT_FILE_OFF);
    put32(&mut f, ph + 8, load_addr);
    put32(&mut f, ph + 12, load_addr);
    put32(&mut f, ph + 16, image.len() as u32);
    put32(&mut f, ph + 20, memsz);
    put32(&mut f, ph + 24, 7);
    put32(&mut f, ph + 28, 0x1000);
    f.extend_from_slice(image);
    f
}
