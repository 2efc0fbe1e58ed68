//! Multiboot v1 (specification 0.6.96): find the header in the first 8 KiB,
//! load an ELF32 kernel by its PT_LOAD segments or an a.out-kludge kernel by
//! the header's addresses, place the initrd as the first module, build the
//! information structure (memory sizes, e820-style map, command line, modules,
//! boot loader name), and start the boot vCPU in 32-bit protected mode with
//! paging off, EAX = 0x2BADB002 and EBX = the information's address.

use kite_hypervisor::{x86, FlatKind, Regs, Segment, Sregs};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::{BootSpec, BootState, LoadError};
use crate::memory::{MemoryLayout, HIGH_RAM_START, LEGACY_ROM_START, LOW_RAM_END, ONE_MIB};

pub const HEADER_MAGIC: u32 = 0x1bad_b002;
pub const BOOTLOADER_MAGIC: u32 = 0x2bad_b002;
/// The header must lie wholly in the file's first 8192 bytes.
pub const HEADER_SEARCH: usize = 8192;

const FLAG_PAGE_ALIGN: u32 = 1 << 0;
const FLAG_MEMORY_INFO: u32 = 1 << 1;
const FLAG_VIDEO_MODE: u32 = 1 << 2;
const FLAG_AOUT_KLUDGE: u32 = 1 << 16;
/// Required-feature bits (0-15) Kite understands. Video mode (bit 2) is a
/// preference: Kite offers the text console and says nothing of video.
const KNOWN_REQUIRED: u32 = FLAG_PAGE_ALIGN | FLAG_MEMORY_INFO | FLAG_VIDEO_MODE;

const INFO_MEM: u32 = 1 << 0;
const INFO_CMDLINE: u32 = 1 << 2;
const INFO_MODS: u32 = 1 << 3;
const INFO_MMAP: u32 = 1 << 6;
const INFO_LOADER_NAME: u32 = 1 << 9;
/// Size of `struct multiboot_info` up to and including the framebuffer fields.
const INFO_SIZE: usize = 120;
const MMAP_RAM: u32 = 1;
const MMAP_RESERVED: u32 = 2;
const PAGE: u64 = 4096;

pub const BOOT_LOADER_NAME: &str = "Kite";
const SEL_CODE: u16 = 0x08;
const SEL_DATA: u16 = 0x10;

/// A Multiboot header found in a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// File offset of the magic.
    pub offset: usize,
    pub flags: u32,
    /// header_addr, load_addr, load_end_addr, bss_end_addr, entry_addr, when
    /// flag bit 16 is set and the file is long enough to hold them.
    pub aout: Option<[u32; 5]>,
}

fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    let s = b.get(off..off.checked_add(4)?)?;
    Some(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

fn u16_at(b: &[u8], off: usize) -> Option<u16> {
    let s = b.get(off..off.checked_add(2)?)?;
    Some(u16::from_le_bytes([s[0], s[1]]))
}

/// The first valid Multiboot header (magic and checksum) in the first 8 KiB,
/// 4-byte aligned.
pub fn find_header(image: &[u8]) -> Option<Header> {
    let end = image.len().min(HEADER_SEARCH);
    (0..end.saturating_sub(11)).step_by(4).find_map(|off| {
        let magic = u32_at(image, off)?;
        let flags = u32_at(image, off + 4)?;
        let sum = u32_at(image, off + 8)?;
        if magic != HEADER_MAGIC || magic.wrapping_add(flags).wrapping_add(sum) != 0 {
            return None;
        }
        let aout = if flags & FLAG_AOUT_KLUDGE != 0 {
            let mut f = [0u32; 5];
            for (i, v) in f.iter_mut().enumerate() {
                *v = u32_at(image, off + 12 + 4 * i).unwrap_or(0);
            }
            // A truncated address block is reported by `load`.
            u32_at(image, off + 28).map(|_| f)
        } else {
            None
        };
        Some(Header {
            offset: off,
            flags,
            aout,
        })
    })
}

/// One piece of the kernel to place: file bytes, then zeros up to `mem_len`.
struct Piece<'a> {
    addr: u64,
    data: &'a [u8],
    mem_len: u64,
}

fn corrupt(what: &str, detail: impl Into<String>) -> LoadError {
    LoadError::Corrupt {
        what: what.to_string(),
        detail: detail.into(),
    }
}

fn too_large(what: &str, detail: impl Into<String>) -> LoadError {
    LoadError::TooLarge {
        what: what.to_string(),
        detail: detail.into(),
    }
}

/// The pieces of an a.out-kludge kernel, and its entry point.
fn aout_pieces<'a>(
    name: &str,
    image: &'a [u8],
    h: &Header,
) -> Result<(Vec<Piece<'a>>, u64), LoadError> {
    let [header_addr, load_addr, load_end, bss_end, entry] = h
        .aout
        .ok_or_else(|| corrupt(name, "multiboot header ends before its address fields"))?;
    if header_addr < load_addr {
        return Err(corrupt(
            name,
            format!("header_addr {header_addr:#x} is below load_addr {load_addr:#x}"),
        ));
    }
    let skip = (header_addr - load_addr) as usize;
    let file_start = h
        .offset
        .checked_sub(skip)
        .ok_or_else(|| corrupt(name, "load_addr lies before the start of the file"))?;
    let load_len = if load_end == 0 {
        image.len() - file_start
    } else {
        if load_end < load_addr {
            return Err(corrupt(
                name,
                format!("load_end_addr {load_end:#x} is below load_addr {load_addr:#x}"),
            ));
        }
        (load_end - load_addr) as usize
    };
    let data = file_start
        .checked_add(load_len)
        .and_then(|end| image.get(file_start..end))
        .ok_or_else(|| {
            corrupt(
                name,
                format!("the file ends before load_end_addr {load_end:#x}"),
            )
        })?;
    let mem_end = if bss_end == 0 {
        u64::from(load_addr) + load_len as u64
    } else {
        u64::from(bss_end)
    };
    let mem_len = mem_end
        .checked_sub(u64::from(load_addr))
        .filter(|&l| l >= load_len as u64)
        .ok_or_else(|| {
            corrupt(
                name,
                format!("bss_end_addr {bss_end:#x} is below the loaded image's end"),
            )
        })?;
    Ok((
        vec![Piece {
            addr: u64::from(load_addr),
            data,
            mem_len,
        }],
        u64::from(entry),
    ))
}

/// The PT_LOAD segments of an ELF32 i386 executable, and its entry point.
fn elf_pieces<'a>(name: &str, image: &'a [u8]) -> Result<(Vec<Piece<'a>>, u64), LoadError> {
    if image.get(..4) != Some(b"\x7fELF") {
        return Err(LoadError::Unsupported {
            what: name.to_string(),
            detail: "multiboot kernel is neither ELF nor uses the a.out kludge (header flag 16)"
                .into(),
        });
    }
    let short = || corrupt(name, "the ELF header is truncated");
    if image.get(4) != Some(&1) {
        return Err(LoadError::Unsupported {
            what: name.to_string(),
            detail: "only 32-bit (ELFCLASS32) multiboot ELF kernels are supported".into(),
        });
    }
    if image.get(5) != Some(&1) || u16_at(image, 18).ok_or_else(short)? != 3 {
        return Err(LoadError::Unsupported {
            what: name.to_string(),
            detail: "ELF kernel is not little-endian i386".into(),
        });
    }
    let entry = u32_at(image, 24).ok_or_else(short)?;
    let phoff = u32_at(image, 28).ok_or_else(short)? as usize;
    let phentsize = u16_at(image, 42).ok_or_else(short)? as usize;
    let phnum = u16_at(image, 44).ok_or_else(short)? as usize;
    if phentsize < 32 {
        return Err(corrupt(
            name,
            format!("program header size {phentsize} is too small"),
        ));
    }
    let mut pieces = Vec::new();
    for i in 0..phnum {
        let ph = phoff
            .checked_add(i * phentsize)
            .ok_or_else(|| corrupt(name, "program header offset overflows"))?;
        let field = |n: usize| {
            u32_at(image, ph + 4 * n).ok_or_else(|| {
                corrupt(
                    name,
                    format!("program header {i} lies past the end of the file"),
                )
            })
        };
        if field(0)? != 1 {
            continue; // not PT_LOAD
        }
        let (offset, paddr, filesz, memsz) =
            (field(1)? as usize, field(3)?, field(4)? as usize, field(5)?);
        if (memsz as usize) < filesz {
            return Err(corrupt(name, format!("segment {i} has p_memsz < p_filesz")));
        }
        let data = offset
            .checked_add(filesz)
            .and_then(|end| image.get(offset..end))
            .ok_or_else(|| corrupt(name, format!("segment {i} lies past the end of the file")))?;
        pieces.push(Piece {
            addr: u64::from(paddr),
            data,
            mem_len: u64::from(memsz),
        });
    }
    if pieces.is_empty() {
        return Err(corrupt(name, "the ELF file has no loadable segment"));
    }
    Ok((pieces, u64::from(entry)))
}

fn align_up(v: u64, a: u64) -> Option<u64> {
    Some(v.checked_add(a - 1)? & !(a - 1))
}

/// The end of what a kernel may not overlap below 1 MiB (see `load`).
const RESERVED_BELOW_1M_END: u64 = 0xf_0000;

/// Load a Multiboot kernel whose header is `h`.
pub fn load(
    mem: &GuestMemoryMmap,
    layout: &MemoryLayout,
    spec: &BootSpec<'_>,
    h: &Header,
) -> Result<BootState, LoadError> {
    let name = spec.kernel.name.as_str();
    let image = spec.kernel.bytes.as_slice();
    let unknown = h.flags & 0xffff & !KNOWN_REQUIRED;
    if unknown != 0 {
        return Err(LoadError::Unsupported {
            what: name.to_string(),
            detail: format!(
                "multiboot kernel requires features Kite lacks (header flags {unknown:#x})"
            ),
        });
    }
    let (pieces, entry) = if h.flags & FLAG_AOUT_KLUDGE != 0 {
        aout_pieces(name, image, h)?
    } else {
        elf_pieces(name, image)?
    };

    // Place the kernel.
    let mut kernel_end = 0u64;
    for p in &pieces {
        if !layout.in_low_ram(p.addr, p.mem_len) {
            return Err(too_large(
                name,
                format!(
                    "it loads at {:#x}+{:#x}, beyond RAM below {:#x}",
                    p.addr, p.mem_len, layout.low_size
                ),
            ));
        }
        // Below 1 MiB only the EBDA, the VGA window and the area the ACPI
        // tables use are off limits; 0xf0000-0xfffff is RAM for a kernel Kite
        // boots itself (newer linkers put the ELF headers' segment of a
        // kernel linked at 1 MiB at 0xff000, and QEMU loads it).
        if p.mem_len > 0 && p.addr < RESERVED_BELOW_1M_END && p.addr + p.mem_len > LOW_RAM_END {
            return Err(too_large(
                name,
                format!(
                    "it loads at {:#x}+{:#x}, over the EBDA, VGA window or ACPI tables                      ({LOW_RAM_END:#x}-{RESERVED_BELOW_1M_END:#x})",
                    p.addr, p.mem_len
                ),
            ));
        }
        let write = |data: &[u8], at: u64| {
            mem.write_slice(data, GuestAddress(at))
                .map_err(|e| too_large(name, format!("writing {:#x}: {e}", at)))
        };
        write(p.data, p.addr)?;
        let bss = p.mem_len - p.data.len() as u64;
        if bss > 0 {
            let zeros =
                vec![0u8; usize::try_from(bss).map_err(|_| too_large(name, "bss too large"))?];
            write(&zeros, p.addr + p.data.len() as u64)?;
        }
        kernel_end = kernel_end.max(p.addr + p.mem_len);
    }
    let kernel_end = kernel_end.max(ONE_MIB);

    // The first module: the initrd, page-aligned after the kernel.
    let mut next =
        align_up(kernel_end, PAGE).ok_or_else(|| too_large(name, "no room after the kernel"))?;
    let mut module = None;
    if let Some(initrd) = spec.initrd {
        let len = initrd.bytes.len() as u64;
        if !layout.in_low_ram(next, len) || next + len > u64::from(u32::MAX) {
            return Err(too_large(
                &initrd.name,
                format!(
                    "{len} bytes at {next:#x} do not fit below {:#x}; give the guest more memory",
                    layout.low_size
                ),
            ));
        }
        mem.write_slice(&initrd.bytes, GuestAddress(next))
            .map_err(|e| too_large(&initrd.name, e.to_string()))?;
        module = Some((next, next + len, initrd.name.clone()));
        next = align_up(next + len, PAGE)
            .ok_or_else(|| too_large(&initrd.name, "no room after the initrd"))?;
    }

    // The information structure and everything it points to, in one block.
    let info_addr = next;
    let info = build_info(info_addr, layout, spec.cmdline, module.as_ref());
    if !layout.in_low_ram(info_addr, info.bytes.len() as u64)
        || info_addr + info.bytes.len() as u64 > u64::from(u32::MAX)
    {
        return Err(too_large(
            "multiboot information",
            format!("no room at {info_addr:#x}; give the guest more memory"),
        ));
    }
    mem.write_slice(&info.bytes, GuestAddress(info_addr))
        .map_err(|e| too_large("multiboot information", e.to_string()))?;

    Ok(boot_state(entry, info_addr, info.gdt_addr))
}

struct InfoBlock {
    bytes: Vec<u8>,
    gdt_addr: u64,
}

/// Lay out: info struct, memory map, module list, GDT, strings.
fn build_info(
    base: u64,
    layout: &MemoryLayout,
    cmdline: &str,
    module: Option<&(u64, u64, String)>,
) -> InfoBlock {
    let mut b = vec![0u8; INFO_SIZE];
    let addr = |b: &Vec<u8>| (base + b.len() as u64) as u32;
    let put =
        |b: &mut Vec<u8>, off: usize, v: u32| b[off..off + 4].copy_from_slice(&v.to_le_bytes());

    // e820-style map: low RAM, the EBDA/ROM hole, RAM from 1 MiB, high RAM.
    let mut map: Vec<(u64, u64, u32)> = vec![
        (0, LOW_RAM_END, MMAP_RAM),
        (LOW_RAM_END, LEGACY_ROM_START - LOW_RAM_END, MMAP_RESERVED),
        (0xf_0000, 0x1_0000, MMAP_RESERVED),
    ];
    if layout.low_size > ONE_MIB {
        map.push((ONE_MIB, layout.low_size - ONE_MIB, MMAP_RAM));
    }
    if layout.high_size > 0 {
        map.push((HIGH_RAM_START, layout.high_size, MMAP_RAM));
    }
    let mmap_addr = addr(&b);
    for (start, len, kind) in &map {
        b.extend_from_slice(&20u32.to_le_bytes());
        b.extend_from_slice(&start.to_le_bytes());
        b.extend_from_slice(&len.to_le_bytes());
        b.extend_from_slice(&kind.to_le_bytes());
    }
    let mmap_len = addr(&b) - mmap_addr;

    let mods_addr = addr(&b);
    let mods_entry = b.len();
    if module.is_some() {
        b.extend_from_slice(&[0u8; 16]);
    }
    while !b.len().is_multiple_of(8) {
        b.push(0);
    }
    let gdt_addr = u64::from(addr(&b));
    for seg in [
        Segment::default(),
        Segment::flat(SEL_CODE, FlatKind::Code32),
        Segment::flat(SEL_DATA, FlatKind::Data),
    ] {
        let d = if seg.present { seg.to_descriptor() } else { 0 };
        b.extend_from_slice(&d.to_le_bytes());
    }
    let string = |b: &mut Vec<u8>, s: &str| {
        let a = addr(b);
        b.extend_from_slice(s.as_bytes());
        b.push(0);
        a
    };
    let cmdline_addr = string(&mut b, cmdline);
    let name_addr = string(&mut b, BOOT_LOADER_NAME);
    if let Some((start, end, name)) = module {
        let s = string(&mut b, name);
        put(&mut b, mods_entry, *start as u32);
        put(&mut b, mods_entry + 4, *end as u32);
        put(&mut b, mods_entry + 8, s);
    }

    let mem_upper =
        (layout.low_size.saturating_sub(ONE_MIB) / 1024).min(u64::from(u32::MAX)) as u32;
    put(
        &mut b,
        0,
        INFO_MEM | INFO_CMDLINE | INFO_MODS | INFO_MMAP | INFO_LOADER_NAME,
    );
    put(&mut b, 4, (LOW_RAM_END / 1024) as u32);
    put(&mut b, 8, mem_upper);
    put(&mut b, 16, cmdline_addr);
    put(&mut b, 20, u32::from(module.is_some()));
    put(&mut b, 24, mods_addr);
    put(&mut b, 44, mmap_len);
    put(&mut b, 48, mmap_addr);
    put(&mut b, 64, name_addr);
    InfoBlock { bytes: b, gdt_addr }
}

/// 32-bit protected mode, flat segments, paging and interrupts off.
fn boot_state(entry: u64, info_addr: u64, gdt_addr: u64) -> BootState {
    let regs = Regs {
        rax: u64::from(BOOTLOADER_MAGIC),
        rbx: info_addr,
        rip: entry,
        rflags: x86::RFLAGS_FIXED,
        ..Default::default()
    };
    let data = Segment::flat(SEL_DATA, FlatKind::Data);
    let sregs = Sregs {
        cs: Segment::flat(SEL_CODE, FlatKind::Code32),
        ds: data,
        es: data,
        fs: data,
        gs: data,
        ss: data,
        // A busy 32-bit TSS and an empty LDT, as hardware requires of any
        // protected-mode state even if the kernel never uses them.
        tr: Segment {
            limit: 0xffff,
            type_: 11,
            present: true,
            ..Default::default()
        },
        ldt: Segment {
            limit: 0xffff,
            type_: 2,
            present: true,
            ..Default::default()
        },
        gdt: kite_hypervisor::DescriptorTable {
            base: gdt_addr,
            limit: 3 * 8 - 1,
        },
        idt: kite_hypervisor::DescriptorTable { base: 0, limit: 0 },
        cr0: x86::CR0_PE | x86::CR0_ET,
        ..Default::default()
    };
    BootState { regs, sregs }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loader::{load_kernel, Image};
    use crate::memory::create_guest_memory;

    fn setup(size: u64) -> (MemoryLayout, GuestMemoryMmap) {
        let layout = MemoryLayout::new(size).unwrap();
        let mem = create_guest_memory(&layout).unwrap();
        (layout, mem)
    }

    fn rd32(mem: &GuestMemoryMmap, a: u64) -> u32 {
        mem.read_obj(GuestAddress(a)).unwrap()
    }

    fn cstr(mem: &GuestMemoryMmap, a: u64) -> String {
        let mut s = Vec::new();
        for i in 0..4096 {
            let c: u8 = mem.read_obj(GuestAddress(a + i)).unwrap();
            if c == 0 {
                break;
            }
            s.push(c);
        }
        String::from_utf8(s).unwrap()
    }

    /// An a.out-kludge kernel: header at file offset 0x40, loaded at 2 MiB.
    fn aout_kernel(load_end_extra: u32, bss: u32) -> Vec<u8> {
        aout_kernel_at(0x20_0000, load_end_extra, bss)
    }

    fn aout_kernel_at(load: u32, load_end_extra: u32, bss: u32) -> Vec<u8> {
        let mut img = vec![0u8; 0x40];
        let flags = FLAG_AOUT_KLUDGE | FLAG_MEMORY_INFO;
        let file_len = 0x200u32;
        for v in [
            HEADER_MAGIC,
            flags,
            0u32.wrapping_sub(HEADER_MAGIC.wrapping_add(flags)),
            load + 0x40,
            load,
            load + file_len + load_end_extra,
            load + file_len + bss,
            load + 0x100,
        ] {
            img.extend_from_slice(&v.to_le_bytes());
        }
        img.resize(file_len as usize, 0);
        img[0x100] = 0xf4; // hlt at the entry
        img[0x1ff] = 0xab;
        img
    }

    #[test]
    fn finds_header_only_with_valid_checksum() {
        let mut img = vec![0u8; 64];
        img[8..12].copy_from_slice(&HEADER_MAGIC.to_le_bytes());
        img[12..16].copy_from_slice(&3u32.to_le_bytes());
        img[16..20].copy_from_slice(&0u32.wrapping_sub(HEADER_MAGIC + 3).to_le_bytes());
        assert_eq!(
            find_header(&img),
            Some(Header {
                offset: 8,
                flags: 3,
                aout: None
            })
        );
        img[16] ^= 1;
        assert_eq!(find_header(&img), None);
        // Past the first 8 KiB it does not count.
        let mut far = vec![0u8; 8192];
        far.extend_from_slice(&img[8..20]);
        far[8192 + 8] ^= 1;
        assert_eq!(find_header(&far), None);
        assert_eq!(find_header(&[]), None);
    }

    #[test]
    fn loads_elf_testkernel_and_builds_info() {
        let (layout, mem) = setup(64 << 20);
        let kernel = Image::from_bytes("hello", kite_testkernels::hello());
        let initrd = Image::from_bytes("initrd.img", vec![0x42; 5000]);
        let spec = BootSpec {
            kernel: &kernel,
            initrd: Some(&initrd),
            cmdline: "console=ttyS0 quiet",
            rsdp_address: None,
        };
        let st = load_kernel(&mem, &layout, &spec).unwrap();

        assert_eq!(st.regs.rax, u64::from(BOOTLOADER_MAGIC));
        assert_eq!(st.regs.rip, u64::from(kite_testkernels::LOAD_ADDR) + 0x40);
        assert_eq!(st.sregs.cr0 & x86::CR0_PG, 0);
        assert_ne!(st.sregs.cr0 & x86::CR0_PE, 0);
        assert!(st.sregs.cs.db && !st.sregs.cs.l);
        // The segment's file bytes are in place (the multiboot header at 1 MiB).
        assert_eq!(rd32(&mem, 0x10_0000), HEADER_MAGIC);

        let info = st.regs.rbx;
        assert_eq!(info % 4, 0);
        let flags = rd32(&mem, info);
        for bit in [
            INFO_MEM,
            INFO_CMDLINE,
            INFO_MODS,
            INFO_MMAP,
            INFO_LOADER_NAME,
        ] {
            assert_ne!(flags & bit, 0, "info flag {bit:#x}");
        }
        assert_eq!(rd32(&mem, info + 4), 639);
        assert_eq!(rd32(&mem, info + 8), (63 << 20) / 1024);
        assert_eq!(
            cstr(&mem, u64::from(rd32(&mem, info + 16))),
            "console=ttyS0 quiet"
        );
        assert_eq!(cstr(&mem, u64::from(rd32(&mem, info + 64))), "Kite");

        // Module 0 is the initrd, page aligned, after the kernel's memory image.
        assert_eq!(rd32(&mem, info + 20), 1);
        let m = u64::from(rd32(&mem, info + 24));
        let (start, end) = (u64::from(rd32(&mem, m)), u64::from(rd32(&mem, m + 4)));
        assert_eq!(start % 4096, 0);
        assert!(start >= 0x10_0000 + 0x2_0000);
        assert_eq!(end - start, 5000);
        assert_eq!(
            mem.read_obj::<u8>(GuestAddress(start + 4999)).unwrap(),
            0x42
        );
        assert_eq!(cstr(&mem, u64::from(rd32(&mem, m + 8))), "initrd.img");

        // The memory map covers RAM and marks the ROM area reserved.
        let (len, addr) = (
            u64::from(rd32(&mem, info + 44)),
            u64::from(rd32(&mem, info + 48)),
        );
        let mut entries = Vec::new();
        let mut p = addr;
        while p < addr + len {
            let size = u64::from(rd32(&mem, p));
            let base: u64 = mem.read_obj(GuestAddress(p + 4)).unwrap();
            let l: u64 = mem.read_obj(GuestAddress(p + 12)).unwrap();
            entries.push((base, l, rd32(&mem, p + 20)));
            p += size + 4;
        }
        assert!(entries.contains(&(0, 0x9_fc00, MMAP_RAM)));
        assert!(entries.contains(&(0x10_0000, (64 << 20) - 0x10_0000, MMAP_RAM)));
        assert!(entries
            .iter()
            .any(|&(b, _, t)| b == 0xf_0000 && t == MMAP_RESERVED));
        let ram: u64 = entries
            .iter()
            .filter(|e| e.2 == MMAP_RAM)
            .map(|e| e.1)
            .sum();
        assert_eq!(ram, (64 << 20) - 0x400 - 0x6_0000);
    }

    #[test]
    fn high_memory_appears_in_the_map() {
        let (layout, mem) = setup((3 << 30) + (64 << 20));
        let kernel = Image::from_bytes("k", kite_testkernels::exit_with(1));
        let st = load_kernel(
            &mem,
            &layout,
            &BootSpec {
                kernel: &kernel,
                initrd: None,
                cmdline: "",
                rsdp_address: None,
            },
        )
        .unwrap();
        let info = st.regs.rbx;
        assert_eq!(rd32(&mem, info + 20), 0, "no modules without an initrd");
        let (len, addr) = (
            u64::from(rd32(&mem, info + 44)),
            u64::from(rd32(&mem, info + 48)),
        );
        let last = addr + len - 24;
        assert_eq!(
            mem.read_obj::<u64>(GuestAddress(last + 4)).unwrap(),
            HIGH_RAM_START
        );
        assert_eq!(
            mem.read_obj::<u64>(GuestAddress(last + 12)).unwrap(),
            64 << 20
        );
    }

    #[test]
    fn loads_aout_kludge_with_bss() {
        let (layout, mem) = setup(16 << 20);
        let mut mem_junk = vec![0xeeu8; 0x1000];
        mem_junk[0] = 1;
        mem.write_slice(&mem_junk, GuestAddress(0x20_0200)).unwrap();
        let kernel = Image::from_bytes("aout", aout_kernel(0, 0x800));
        let st = load_kernel(
            &mem,
            &layout,
            &BootSpec {
                kernel: &kernel,
                initrd: None,
                cmdline: "x",
                rsdp_address: None,
            },
        )
        .unwrap();
        assert_eq!(st.regs.rip, 0x20_0100);
        assert_eq!(mem.read_obj::<u8>(GuestAddress(0x20_0100)).unwrap(), 0xf4);
        assert_eq!(mem.read_obj::<u8>(GuestAddress(0x20_01ff)).unwrap(), 0xab);
        // bss is zeroed, what lies past it is untouched.
        assert_eq!(mem.read_obj::<u8>(GuestAddress(0x20_0200)).unwrap(), 0);
        assert_eq!(mem.read_obj::<u8>(GuestAddress(0x20_09ff)).unwrap(), 0);
        assert_eq!(mem.read_obj::<u8>(GuestAddress(0x20_0a00)).unwrap(), 0xee);
        // Info lies after the bss, page aligned.
        assert_eq!(st.regs.rbx, 0x20_1000);
    }

    #[test]
    fn hostile_images_are_errors_not_panics() {
        let (layout, mem) = setup(16 << 20);
        let try_load = |bytes: Vec<u8>| {
            let k = Image::from_bytes("bad", bytes);
            load_kernel(
                &mem,
                &layout,
                &BootSpec {
                    kernel: &k,
                    initrd: None,
                    cmdline: "",
                    rsdp_address: None,
                },
            )
        };
        // load_end beyond the file.
        assert!(matches!(
            try_load(aout_kernel(0x1000, 0x2000)),
            Err(LoadError::Corrupt { .. })
        ));
        // bss_end below the loaded end.
        let mut k = aout_kernel(0, 0);
        k[0x40 + 24..0x40 + 28].copy_from_slice(&0x20_0010u32.to_le_bytes());
        assert!(matches!(try_load(k), Err(LoadError::Corrupt { .. })));
        // Header at the very end of the file: address fields cut off.
        let mut k = vec![0u8; 16];
        let flags = FLAG_AOUT_KLUDGE;
        k[4..8].copy_from_slice(&HEADER_MAGIC.to_le_bytes());
        k[8..12].copy_from_slice(&flags.to_le_bytes());
        k[12..16].copy_from_slice(
            &0u32
                .wrapping_sub(HEADER_MAGIC.wrapping_add(flags))
                .to_le_bytes(),
        );
        assert!(matches!(try_load(k), Err(LoadError::Corrupt { .. })));
        // Every truncation of a real ELF kernel fails cleanly. Cut before its
        // Multiboot header, it is an ELF32 without one, which the Linux
        // loader refuses as unsupported.
        let elf = kite_testkernels::hello();
        for cut in [13, 60, 100, 0x1000, 0x1010, elf.len() - 1] {
            match try_load(elf[..cut].to_vec()) {
                Err(LoadError::Corrupt { .. })
                | Err(LoadError::UnknownFormat(_))
                | Err(LoadError::Unsupported { .. }) => {}
                other => panic!("cut at {cut}: {other:?}"),
            }
        }
        // A segment far beyond RAM.
        let mut big = elf.clone();
        big[52 + 12..52 + 16].copy_from_slice(&0xf000_0000u32.to_le_bytes());
        assert!(matches!(try_load(big), Err(LoadError::TooLarge { .. })));
        // A segment whose p_memsz is absurd.
        let mut big = elf.clone();
        big[52 + 20..52 + 24].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(try_load(big), Err(LoadError::TooLarge { .. })));
        // Program headers pointing outside the file.
        let mut bad = elf.clone();
        bad[28..32].copy_from_slice(&0xffff_fff0u32.to_le_bytes());
        assert!(matches!(try_load(bad), Err(LoadError::Corrupt { .. })));
        // ELF64 is refused with a reason.
        let mut e64 = elf.clone();
        e64[4] = 2;
        assert!(matches!(try_load(e64), Err(LoadError::Unsupported { .. })));
        // Unknown required feature bits.
        let mut req = elf;
        let off = 0x1000;
        let flags = 0x3u32 | (1 << 5);
        req[off + 4..off + 8].copy_from_slice(&flags.to_le_bytes());
        req[off + 8..off + 12].copy_from_slice(
            &0u32
                .wrapping_sub(HEADER_MAGIC.wrapping_add(flags))
                .to_le_bytes(),
        );
        assert!(matches!(try_load(req), Err(LoadError::Unsupported { .. })));
    }

    #[test]
    fn initrd_too_big_for_memory() {
        let (layout, mem) = setup(4 << 20);
        let kernel = Image::from_bytes("k", kite_testkernels::exit_with(1));
        let initrd = Image::from_bytes("huge.img", vec![0; 8 << 20]);
        let err = load_kernel(
            &mem,
            &layout,
            &BootSpec {
                kernel: &kernel,
                initrd: Some(&initrd),
                cmdline: "",
                rsdp_address: None,
            },
        )
        .unwrap_err();
        assert!(matches!(err, LoadError::TooLarge { .. }));
        assert!(err.to_string().contains("huge.img"), "{err}");
    }

    #[test]
    fn a_kernel_loading_at_0xff000_loads_as_on_qemu() {
        let (layout, mem) = setup(16 << 20);
        let kernel = Image::from_bytes("low", aout_kernel_at(0xf_f000, 0, 0x2000));
        let spec = BootSpec {
            kernel: &kernel,
            initrd: None,
            cmdline: "",
            rsdp_address: None,
        };
        let boot = load_kernel(&mem, &layout, &spec).expect("0xff000 loads");
        assert_eq!(boot.regs.rip, 0xf_f100);
        let b: u8 = mem.read_obj(GuestAddress(0xf_f100)).unwrap();
        assert_eq!(b, 0xf4);
        // Over the VGA window or the ACPI area: refused, naming the range.
        for at in [0xa_0000u32, 0xe_0000] {
            let kernel = Image::from_bytes("vga", aout_kernel_at(at, 0, 0));
            let err = load_kernel(
                &mem,
                &layout,
                &BootSpec {
                    kernel: &kernel,
                    initrd: None,
                    cmdline: "",
                    rsdp_address: None,
                },
            )
            .unwrap_err();
            assert!(err.to_string().contains("VGA window"), "{err}");
        }
    }
}
