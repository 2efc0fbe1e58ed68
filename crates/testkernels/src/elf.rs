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

/// A named address for a symbol table: code (a function) or data (an object).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Symbol {
    pub name: String,
    pub addr: u32,
    pub size: u32,
    pub code: bool,
}

/// `elf32_exec` with section headers and a `.symtab`/`.strtab` naming
/// `symbols`, so a debugger can load it (`gdb probe.elf`): the segment is
/// one `.text` section, the symbols global and inside it.
pub fn elf32_exec_with_symbols(
    image: &[u8],
    load_addr: u32,
    memsz: u32,
    entry: u32,
    symbols: &[Symbol],
) -> Vec<u8> {
    let mut f = elf32_exec(image, load_addr, memsz, entry);
    let put16 =
        |f: &mut [u8], off: usize, v: u16| f[off..off + 2].copy_from_slice(&v.to_le_bytes());
    let put32 =
        |f: &mut [u8], off: usize, v: u32| f[off..off + 4].copy_from_slice(&v.to_le_bytes());
    let align4 = |f: &mut Vec<u8>| f.resize(f.len().next_multiple_of(4), 0);

    // .strtab: a leading NUL, then each name.
    let mut strtab = vec![0u8];
    let mut symtab = vec![0u8; 16]; // the null symbol
    for s in symbols {
        let name = strtab.len() as u32;
        strtab.extend_from_slice(s.name.as_bytes());
        strtab.push(0);
        let mut e = [0u8; 16];
        put32(&mut e, 0, name);
        put32(&mut e, 4, s.addr);
        put32(&mut e, 8, s.size);
        // STB_GLOBAL, STT_FUNC or STT_OBJECT; section 1 (.text).
        e[12] = (1 << 4) | if s.code { 2 } else { 1 };
        put16(&mut e, 14, 1);
        symtab.extend_from_slice(&e);
    }
    let shstrtab = b"\0.text\0.symtab\0.strtab\0.shstrtab\0";
    let names = [0u32, 1, 7, 15, 23];

    align4(&mut f);
    let symtab_off = f.len() as u32;
    f.extend_from_slice(&symtab);
    let strtab_off = f.len() as u32;
    f.extend_from_slice(&strtab);
    let shstrtab_off = f.len() as u32;
    f.extend_from_slice(shstrtab);
    align4(&mut f);
    let shoff = f.len() as u32;

    // (type, flags, addr, offset, size, link, info, align, entsize)
    let sections: [[u32; 9]; 5] = [
        [0; 9],
        [
            1,
            7,
            load_addr,
            SEGMENT_FILE_OFF,
            image.len() as u32,
            0,
            0,
            16,
            0,
        ],
        [2, 0, 0, symtab_off, symtab.len() as u32, 3, 1, 4, 16],
        [3, 0, 0, strtab_off, strtab.len() as u32, 0, 0, 1, 0],
        [3, 0, 0, shstrtab_off, shstrtab.len() as u32, 0, 0, 1, 0],
    ];
    for (name, s) in names.iter().zip(sections.iter()) {
        let mut h = [0u8; 40];
        put32(&mut h, 0, *name);
        for (i, v) in s.iter().enumerate() {
            put32(&mut h, 4 + 4 * i, *v);
        }
        f.extend_from_slice(&h);
    }
    put32(&mut f, 32, shoff); // e_shoff
    put16(&mut f, 48, sections.len() as u16); // e_shnum
    put16(&mut f, 50, 4); // e_shstrndx
    f
}
