//! The Linux x86 boot protocol (Documentation/arch/x86/boot.rst): loads a
//! bzImage (protocol 2.06 or newer) or a 64-bit vmlinux ELF, places the
//! command line and initrd, fills the zero page (boot_params) and says how
//! the boot vCPU enters the kernel.
//!
//! bzImage: the protected-mode kernel goes at `kernel_address` (1 MiB); a
//! kernel with XLF_KERNEL_64 is entered at its 64-bit entry (load + 0x200) in
//! long mode on identity-mapped page tables covering 4 GiB, others at the
//! 32-bit entry in flat protected mode with paging off; RSI holds the zero
//! page's address either way.
//!
//! vmlinux ELF: PT_LOAD segments go to their physical addresses; with a Xen
//! PVH note the vCPU enters there in 32-bit mode with EBX pointing at an
//! hvm_start_info, else at the ELF entry in long mode with RSI = boot_params.
//!
//! Low memory the loader uses (all below 640 KiB): GDT at 0x500, PVH start
//! info at 0x6000, zero page at 0x7000, boot stack below 0x9000, page tables at
//! 0x9000-0xefff, command line at 0x20000.

use super::{BootState, LoadError};
use kite_hypervisor::{x86, DescriptorTable, FlatKind, Regs, Segment, Sregs};
use linux_loader::loader::bootparam::{boot_e820_entry, boot_params, E820_MAX_ENTRIES_ZEROPAGE};
use vm_memory::{ByteValued, Bytes, GuestAddress, GuestMemoryMmap};

/// Where the protected-mode kernel goes by default.
pub const KERNEL_ADDRESS: u64 = 0x10_0000;
pub const GDT_ADDRESS: u64 = 0x500;
pub const PVH_INFO_ADDRESS: u64 = 0x6000;
pub const ZERO_PAGE_ADDRESS: u64 = 0x7000;
pub const BOOT_STACK_TOP: u64 = 0x8ff0;
pub const PAGE_TABLES_ADDRESS: u64 = 0x9000;
pub const CMDLINE_ADDRESS: u64 = 0x2_0000;
/// Room for the command line at `CMDLINE_ADDRESS`.
pub const CMDLINE_MAX: u64 = 0x1_0000;

/// e820 entry types.
pub const E820_RAM: u32 = 1;
pub const E820_RESERVED: u32 = 2;
pub const E820_ACPI: u32 = 3;

/// The boot GDT's selectors (boot.rst's __BOOT_CS and __BOOT_DS), and a TSS.
const SEL_CODE: u16 = 0x10;
const SEL_DATA: u16 = 0x18;
const SEL_TSS: u16 = 0x20;

const HDR_MAGIC: &[u8; 4] = b"HdrS";
const MIN_PROTOCOL: u16 = 0x0206;
const LOADED_HIGH: u8 = 0x01;
const CAN_USE_HEAP: u8 = 0x80;
const XLF_KERNEL_64: u16 = 1 << 0;
/// The setup header starts here in the image and in the zero page.
const SETUP_HEADER_OFFSET: usize = 0x1f1;
const PVH_MAGIC: u32 = 0x336e_c578;
const XEN_ELFNOTE_PHYS32_ENTRY: u32 = 18;

/// One e820 memory-map entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct E820Entry {
    pub addr: u64,
    pub size: u64,
    /// `E820_RAM`, `E820_RESERVED`, `E820_ACPI`...
    pub kind: u32,
}

/// The PC's usual e820 map for RAM at `ram` (guest address, length) ranges:
/// conventional memory to 0x9fc00, the EBDA and BIOS area (0xe0000-0xfffff,
/// where the ACPI tables live) reserved, the rest RAM.
pub fn pc_e820_map(ram: &[(u64, u64)]) -> Vec<E820Entry> {
    const LOW_END: u64 = 0x9_fc00;
    const BIOS_START: u64 = 0xe_0000;
    const ONE_MIB: u64 = 0x10_0000;
    let mut map = Vec::new();
    for &(start, len) in ram {
        let end = start.saturating_add(len);
        if start < LOW_END {
            map.push(E820Entry {
                addr: start,
                size: end.min(LOW_END) - start,
                kind: E820_RAM,
            });
        }
        if start < ONE_MIB && end > LOW_END {
            map.push(E820Entry {
                addr: LOW_END,
                size: 0xa_0000 - LOW_END,
                kind: E820_RESERVED,
            });
            map.push(E820Entry {
                addr: BIOS_START,
                size: ONE_MIB - BIOS_START,
                kind: E820_RESERVED,
            });
        }
        let hi = start.max(ONE_MIB);
        if end > hi {
            map.push(E820Entry {
                addr: hi,
                size: end - hi,
                kind: E820_RAM,
            });
        }
    }
    map
}

/// Where things go and what the kernel is told about the machine.
#[derive(Debug, Clone)]
pub struct LinuxBootParams {
    /// The memory map handed to the kernel; RAM entries also bound where the
    /// loader may put the kernel and initrd.
    pub e820: Vec<E820Entry>,
    /// The ACPI RSDP (boot_params.acpi_rsdp_addr, PVH rsdp_paddr).
    pub rsdp_address: Option<u64>,
    /// Where a bzImage's protected-mode kernel goes.
    pub kernel_address: u64,
    pub zero_page_address: u64,
    pub cmdline_address: u64,
    /// A fixed initrd address, instead of the highest place that fits.
    pub initrd_address: Option<u64>,
    /// Names for messages (the files' paths).
    pub kernel_name: String,
    pub initrd_name: String,
}

impl LinuxBootParams {
    /// Defaults for the given memory map.
    pub fn new(e820: Vec<E820Entry>) -> LinuxBootParams {
        LinuxBootParams {
            e820,
            rsdp_address: None,
            kernel_address: KERNEL_ADDRESS,
            zero_page_address: ZERO_PAGE_ADDRESS,
            cmdline_address: CMDLINE_ADDRESS,
            initrd_address: None,
            kernel_name: "kernel".into(),
            initrd_name: "initrd".into(),
        }
    }

    fn in_ram(&self, addr: u64, len: u64) -> bool {
        let Some(end) = addr.checked_add(len) else {
            return false;
        };
        self.e820
            .iter()
            .any(|e| e.kind == E820_RAM && e.addr <= addr && end <= e.addr.saturating_add(e.size))
    }
}

/// Whether `kernel` looks like an image `load_linux` takes (bzImage or ELF).
pub fn is_linux_image(kernel: &[u8]) -> bool {
    kernel.get(0x202..0x206) == Some(HDR_MAGIC) || kernel.starts_with(b"\x7fELF")
}

/// Load a Linux bzImage or vmlinux ELF with its initrd and command line.
pub fn load_linux(
    mem: &GuestMemoryMmap,
    kernel: &[u8],
    initrd: Option<&[u8]>,
    cmdline: &str,
    params: &LinuxBootParams,
) -> Result<BootState, LoadError> {
    if kernel.get(0x202..0x206) == Some(HDR_MAGIC) {
        load_bzimage(mem, kernel, initrd, cmdline, params)
    } else if kernel.starts_with(b"\x7fELF") {
        load_elf(mem, kernel, initrd, cmdline, params)
    } else {
        Err(LoadError::UnknownFormat(params.kernel_name.clone()))
    }
}

fn corrupt(params: &LinuxBootParams, detail: impl Into<String>) -> LoadError {
    LoadError::Corrupt {
        what: params.kernel_name.clone(),
        detail: detail.into(),
    }
}

fn too_large(what: &str, detail: impl Into<String>) -> LoadError {
    LoadError::TooLarge {
        what: what.to_string(),
        detail: detail.into(),
    }
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn write(mem: &GuestMemoryMmap, what: &str, addr: u64, bytes: &[u8]) -> Result<(), LoadError> {
    mem.write_slice(bytes, GuestAddress(addr)).map_err(|e| {
        too_large(
            what,
            format!("writing {:#x} bytes at {addr:#x}: {e}", bytes.len()),
        )
    })
}

fn load_bzimage(
    mem: &GuestMemoryMmap,
    kernel: &[u8],
    initrd: Option<&[u8]>,
    cmdline: &str,
    params: &LinuxBootParams,
) -> Result<BootState, LoadError> {
    let mut bp = boot_params::default();
    let hdr_size = std::mem::size_of_val(&bp.hdr);
    if kernel.len() < SETUP_HEADER_OFFSET + hdr_size {
        return Err(corrupt(
            params,
            format!(
                "{} bytes is too short for a bzImage setup header",
                kernel.len()
            ),
        ));
    }
    let version = u16_at(kernel, 0x206);
    if version < MIN_PROTOCOL {
        return Err(LoadError::Unsupported {
            what: params.kernel_name.clone(),
            detail: format!(
                "Linux boot protocol {}.{:02} is older than 2.06, which Kite needs (kernels since 2.6.22 have it)",
                version >> 8,
                version & 0xff
            ),
        });
    }
    // The header ends at 0x202 + the jump's offset byte; copy no further
    // than the fields Kite knows.
    let hdr_end = (0x202 + usize::from(kernel[0x201])).min(SETUP_HEADER_OFFSET + hdr_size);
    bp.as_mut_slice()[SETUP_HEADER_OFFSET..hdr_end]
        .copy_from_slice(&kernel[SETUP_HEADER_OFFSET..hdr_end]);
    let hdr = bp.hdr;
    if hdr.loadflags & LOADED_HIGH == 0 {
        return Err(LoadError::Unsupported {
            what: params.kernel_name.clone(),
            detail: "a zImage (loaded below 1 MiB) is not supported; build a bzImage".into(),
        });
    }
    let setup_sects = match hdr.setup_sects {
        0 => 4,
        n => usize::from(n),
    };
    let setup_size = (setup_sects + 1) * 512;
    let syssize = hdr.syssize as usize;
    let Some(pm) = kernel.get(setup_size..).filter(|pm| !pm.is_empty()) else {
        return Err(corrupt(
            params,
            format!(
                "setup is {setup_size} bytes but the file has only {}",
                kernel.len()
            ),
        ));
    };
    if syssize.saturating_mul(16) > pm.len() {
        return Err(corrupt(
            params,
            format!(
                "the header says the kernel is {} bytes but only {} follow the setup code",
                syssize * 16,
                pm.len()
            ),
        ));
    }

    let load = params.kernel_address;
    let pm_len = pm.len() as u64;
    if !params.in_ram(load, pm_len) {
        return Err(too_large(
            &params.kernel_name,
            format!("the kernel's {pm_len:#x} bytes do not fit in RAM at {load:#x}; give the guest more memory"),
        ));
    }
    // Where the kernel decompresses itself and runs (boot.rst, init_size):
    // a relocatable kernel at the load address aligned up, but no lower
    // than pref_address; a fixed one at pref_address.
    let (runtime_start, init_size) = runtime_area(&hdr, version, load);
    if !params.in_ram(runtime_start, init_size) {
        return Err(too_large(
            &params.kernel_name,
            format!(
                "the kernel needs {init_size:#x} bytes of RAM from {runtime_start:#x} to start; give the guest more memory"
            ),
        ));
    }
    write(mem, &params.kernel_name, load, pm)?;
    let kernel_end = (load + pm_len).max(runtime_start + init_size);

    write_cmdline(mem, cmdline, u64::from(hdr.cmdline_size), params)?;
    let ramdisk = match initrd {
        Some(rd) => Some(place_initrd(
            mem,
            rd,
            u64::from(hdr.initrd_addr_max),
            kernel_end,
            params,
        )?),
        None => None,
    };

    bp.hdr.type_of_loader = 0xff;
    bp.hdr.vid_mode = 0xffff;
    bp.hdr.loadflags |= CAN_USE_HEAP;
    bp.hdr.heap_end_ptr = 0xde00;
    bp.hdr.code32_start = load as u32;
    bp.hdr.cmd_line_ptr = params.cmdline_address as u32;
    if let Some((addr, size)) = ramdisk {
        bp.hdr.ramdisk_image = addr as u32;
        bp.hdr.ramdisk_size = size as u32;
    }
    fill_common(&mut bp, params)?;
    write(mem, "boot_params", params.zero_page_address, bp.as_slice())?;

    let long_mode = version >= 0x020c && hdr.xloadflags & XLF_KERNEL_64 != 0;
    write_gdt(mem, long_mode)?;
    if long_mode {
        write_page_tables(mem)?;
        Ok(long_mode_state(load + 0x200, params.zero_page_address))
    } else {
        Ok(protected_mode_state(load, params.zero_page_address, 0))
    }
}

/// The kernel's runtime start address and the bytes it needs there.
fn runtime_area(
    hdr: &linux_loader::loader::bootparam::setup_header,
    version: u16,
    load: u64,
) -> (u64, u64) {
    if version < 0x020a {
        return (load, 0);
    }
    let pref = hdr.pref_address;
    let init_size = u64::from(hdr.init_size);
    if hdr.relocatable_kernel != 0 {
        let align = u64::from(hdr.kernel_alignment).max(1);
        let base = load.max(pref);
        let start = base.checked_next_multiple_of(align).unwrap_or(base);
        (start, init_size)
    } else {
        (pref, init_size)
    }
}

/// The e820 map and RSDP, shared by the bzImage and ELF paths.
fn fill_common(bp: &mut boot_params, params: &LinuxBootParams) -> Result<(), LoadError> {
    if params.e820.len() > E820_MAX_ENTRIES_ZEROPAGE {
        return Err(too_large(
            "memory map",
            format!(
                "{} e820 entries, the zero page holds {E820_MAX_ENTRIES_ZEROPAGE}",
                params.e820.len()
            ),
        ));
    }
    for (slot, e) in bp.e820_table.iter_mut().zip(&params.e820) {
        *slot = boot_e820_entry {
            addr: e.addr,
            size: e.size,
            r#type: e.kind,
        };
    }
    bp.e820_entries = params.e820.len() as u8;
    if let Some(rsdp) = params.rsdp_address {
        bp.acpi_rsdp_addr = rsdp;
    }
    Ok(())
}

/// Write the NUL-terminated command line; `limit` is the kernel's
/// cmdline_size (the longest line it takes, without the NUL).
fn write_cmdline(
    mem: &GuestMemoryMmap,
    cmdline: &str,
    limit: u64,
    params: &LinuxBootParams,
) -> Result<(), LoadError> {
    let len = cmdline.len() as u64;
    if cmdline.as_bytes().contains(&0) {
        return Err(LoadError::Unsupported {
            what: "command line".into(),
            detail: "it contains a NUL byte".into(),
        });
    }
    if len > limit || len + 1 > CMDLINE_MAX {
        return Err(too_large(
            "command line",
            format!(
                "{len} bytes, the kernel takes at most {}",
                limit.min(CMDLINE_MAX - 1)
            ),
        ));
    }
    let mut bytes = Vec::with_capacity(cmdline.len() + 1);
    bytes.extend_from_slice(cmdline.as_bytes());
    bytes.push(0);
    write(mem, "command line", params.cmdline_address, &bytes)
}

/// Put the initrd at the highest page-aligned RAM address that ends at or
/// below `max_addr` (the last byte it may occupy) and starts above
/// `kernel_end`. Returns (address, size).
fn place_initrd(
    mem: &GuestMemoryMmap,
    rd: &[u8],
    max_addr: u64,
    kernel_end: u64,
    params: &LinuxBootParams,
) -> Result<(u64, u64), LoadError> {
    let size = rd.len() as u64;
    let name = &params.initrd_name;
    let limit = max_addr.min(u64::from(u32::MAX)).saturating_add(1);
    let addr = match params.initrd_address {
        Some(a) => {
            if !params.in_ram(a, size) || a.saturating_add(size) > limit {
                return Err(too_large(name, format!("{size:#x} bytes at {a:#x} is not in RAM below {limit:#x}")));
            }
            a
        }
        None => params
            .e820
            .iter()
            .filter(|e| e.kind == E820_RAM)
            .filter_map(|e| {
                let top = e.addr.saturating_add(e.size).min(limit);
                let start = top.checked_sub(size)? & !0xfff;
                (start >= e.addr && start >= kernel_end).then_some(start)
            })
            .max()
            .ok_or_else(|| {
                too_large(
                    name,
                    format!(
                        "{size:#x} bytes do not fit in RAM between the kernel's end ({kernel_end:#x}) and {limit:#x}"
                    ),
                )
            })?,
    };
    write(mem, name, addr, rd)?;
    Ok((addr, size))
}

/// The boot GDT: null, null, code (0x10), data (0x18), TSS (0x20). The code
/// descriptor is 64-bit for a long-mode entry, 32-bit otherwise.
fn write_gdt(mem: &GuestMemoryMmap, long_mode: bool) -> Result<(), LoadError> {
    let code = if long_mode {
        FlatKind::Code64
    } else {
        FlatKind::Code32
    };
    let gdt: [u64; 5] = [
        0,
        0,
        Segment::flat(SEL_CODE, code).to_descriptor(),
        Segment::flat(SEL_DATA, FlatKind::Data).to_descriptor(),
        tss_segment().to_descriptor(),
    ];
    let bytes: Vec<u8> = gdt.iter().flat_map(|d| d.to_le_bytes()).collect();
    write(mem, "boot GDT", GDT_ADDRESS, &bytes)
}

fn tss_segment() -> Segment {
    Segment {
        base: 0,
        limit: 0x67,
        selector: SEL_TSS,
        type_: 11,
        present: true,
        ..Default::default()
    }
}

/// Identity map 0-4 GiB with 2 MiB pages: PML4, PDPT, four page directories.
fn write_page_tables(mem: &GuestMemoryMmap) -> Result<(), LoadError> {
    const PRESENT_RW: u64 = 0x3;
    const PAGE_2M: u64 = 0x80;
    let pml4 = PAGE_TABLES_ADDRESS;
    let pdpt = pml4 + 0x1000;
    let pd = pdpt + 0x1000;
    let mut bytes = vec![0u8; 6 * 0x1000];
    bytes[0..8].copy_from_slice(&(pdpt | PRESENT_RW).to_le_bytes());
    for i in 0..4u64 {
        let at = 0x1000 + 8 * i as usize;
        bytes[at..at + 8].copy_from_slice(&((pd + i * 0x1000) | PRESENT_RW).to_le_bytes());
    }
    for i in 0..2048u64 {
        let at = 0x2000 + 8 * i as usize;
        bytes[at..at + 8].copy_from_slice(&((i << 21) | PRESENT_RW | PAGE_2M).to_le_bytes());
    }
    write(mem, "boot page tables", PAGE_TABLES_ADDRESS, &bytes)
}

fn gdtr() -> DescriptorTable {
    DescriptorTable {
        base: GDT_ADDRESS,
        limit: 5 * 8 - 1,
    }
}

fn data_segments(sregs: &mut Sregs) {
    let data = Segment::flat(SEL_DATA, FlatKind::Data);
    sregs.ds = data;
    sregs.es = data;
    sregs.fs = data;
    sregs.gs = data;
    sregs.ss = data;
    sregs.tr = tss_segment();
    sregs.ldt = Segment {
        limit: 0xffff,
        type_: 2,
        present: true,
        ..Default::default()
    };
    sregs.gdt = gdtr();
}

/// 64-bit mode, paging on the identity map, RSI = boot_params.
fn long_mode_state(entry: u64, zero_page: u64) -> BootState {
    let regs = Regs {
        rip: entry,
        rsi: zero_page,
        rsp: BOOT_STACK_TOP,
        rflags: x86::RFLAGS_FIXED,
        ..Default::default()
    };
    let mut sregs = Sregs {
        cs: Segment::flat(SEL_CODE, FlatKind::Code64),
        cr0: x86::CR0_PE | x86::CR0_ET | x86::CR0_PG,
        cr3: PAGE_TABLES_ADDRESS,
        cr4: x86::CR4_PAE,
        efer: x86::EFER_LME | x86::EFER_LMA,
        ..Default::default()
    };
    data_segments(&mut sregs);
    BootState { regs, sregs }
}

/// 32-bit flat protected mode, paging off; ESI = boot_params (Linux) and
/// EBX = `ebx` (the PVH start info).
fn protected_mode_state(entry: u64, esi: u64, ebx: u64) -> BootState {
    let regs = Regs {
        rip: entry,
        rsi: esi,
        rbx: ebx,
        rsp: BOOT_STACK_TOP,
        rflags: x86::RFLAGS_FIXED,
        ..Default::default()
    };
    let mut sregs = Sregs {
        cs: Segment::flat(SEL_CODE, FlatKind::Code32),
        cr0: x86::CR0_PE | x86::CR0_ET,
        ..Default::default()
    };
    data_segments(&mut sregs);
    BootState { regs, sregs }
}

/// A 64-bit ELF's header fields Kite uses.
struct Elf64<'a> {
    bytes: &'a [u8],
    entry: u64,
    phoff: usize,
    phnum: usize,
}

struct Phdr {
    p_type: u32,
    offset: u64,
    paddr: u64,
    filesz: u64,
    memsz: u64,
}

const PT_LOAD: u32 = 1;
const PT_NOTE: u32 = 4;
const PHDR_SIZE: usize = 56;

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from(u32_at(b, at)) | (u64::from(u32_at(b, at + 4)) << 32)
}

impl<'a> Elf64<'a> {
    fn parse(bytes: &'a [u8], params: &LinuxBootParams) -> Result<Elf64<'a>, LoadError> {
        if bytes.len() < 64 {
            return Err(corrupt(params, "truncated ELF header"));
        }
        if bytes[4] != 2 {
            return Err(LoadError::Unsupported {
                what: params.kernel_name.clone(),
                detail: "a 32-bit vmlinux ELF cannot be booted directly; use the bzImage (vmlinuz)"
                    .into(),
            });
        }
        if bytes[5] != 1 || u16_at(bytes, 18) != 62 {
            return Err(LoadError::Unsupported {
                what: params.kernel_name.clone(),
                detail: "not a little-endian x86-64 ELF".into(),
            });
        }
        let phoff = u64_at(bytes, 32);
        let phentsize = usize::from(u16_at(bytes, 54));
        let phnum = usize::from(u16_at(bytes, 56));
        if phentsize != PHDR_SIZE {
            return Err(corrupt(
                params,
                format!("program header size {phentsize}, expected {PHDR_SIZE}"),
            ));
        }
        let end = phoff.checked_add((phnum * PHDR_SIZE) as u64);
        if phnum == 0 || end.is_none_or(|e| e > bytes.len() as u64) {
            return Err(corrupt(
                params,
                "program headers missing or past the end of the file",
            ));
        }
        Ok(Elf64 {
            bytes,
            entry: u64_at(bytes, 24),
            phoff: phoff as usize,
            phnum,
        })
    }

    fn phdrs(&self) -> impl Iterator<Item = Phdr> + '_ {
        (0..self.phnum).map(move |i| {
            let p = &self.bytes[self.phoff + i * PHDR_SIZE..];
            Phdr {
                p_type: u32_at(p, 0),
                offset: u64_at(p, 8),
                paddr: u64_at(p, 24),
                filesz: u64_at(p, 32),
                memsz: u64_at(p, 40),
            }
        })
    }

    /// The file bytes of a segment, if inside the file.
    fn segment(&self, ph: &Phdr) -> Option<&'a [u8]> {
        let start = usize::try_from(ph.offset).ok()?;
        let len = usize::try_from(ph.filesz).ok()?;
        self.bytes.get(start..start.checked_add(len)?)
    }

    /// The Xen PVH 32-bit entry point, if a note names one.
    fn pvh_entry(&self) -> Option<u64> {
        for ph in self.phdrs().filter(|p| p.p_type == PT_NOTE) {
            let mut notes = self.segment(&ph)?;
            while notes.len() >= 12 {
                let namesz = u32_at(notes, 0) as usize;
                let descsz = u32_at(notes, 4) as usize;
                let ty = u32_at(notes, 8);
                let name_end = 12usize.checked_add(namesz.checked_add(3)? & !3)?;
                let desc_end = name_end.checked_add(descsz.checked_add(3)? & !3)?;
                let name = notes.get(12..12 + namesz)?;
                let desc = notes.get(name_end..name_end + descsz)?;
                if ty == XEN_ELFNOTE_PHYS32_ENTRY && name == b"Xen\0" && descsz >= 4 {
                    return Some(if descsz >= 8 {
                        u64_at(desc, 0)
                    } else {
                        u64::from(u32_at(desc, 0))
                    });
                }
                notes = notes.get(desc_end..)?;
            }
        }
        None
    }
}

fn load_elf(
    mem: &GuestMemoryMmap,
    kernel: &[u8],
    initrd: Option<&[u8]>,
    cmdline: &str,
    params: &LinuxBootParams,
) -> Result<BootState, LoadError> {
    let elf = Elf64::parse(kernel, params)?;
    let mut kernel_end = 0u64;
    let mut loaded = 0;
    for ph in elf.phdrs().filter(|p| p.p_type == PT_LOAD) {
        let data = elf.segment(&ph).ok_or_else(|| {
            corrupt(
                params,
                format!(
                    "segment at file offset {:#x} runs past the end of the file",
                    ph.offset
                ),
            )
        })?;
        if ph.memsz < ph.filesz {
            return Err(corrupt(
                params,
                "a segment's memory size is smaller than its file size",
            ));
        }
        if !params.in_ram(ph.paddr, ph.memsz) {
            return Err(too_large(
                &params.kernel_name,
                format!(
                    "segment {:#x}+{:#x} is not in guest RAM",
                    ph.paddr, ph.memsz
                ),
            ));
        }
        write(mem, &params.kernel_name, ph.paddr, data)?;
        // Clear the bss: guest RAM may hold an earlier boot's bytes.
        let bss = vec![0u8; (ph.memsz - ph.filesz) as usize];
        write(mem, &params.kernel_name, ph.paddr + ph.filesz, &bss)?;
        kernel_end = kernel_end.max(ph.paddr + ph.memsz);
        loaded += 1;
    }
    if loaded == 0 {
        return Err(corrupt(params, "the ELF has no loadable segments"));
    }
    write_cmdline(mem, cmdline, CMDLINE_MAX - 1, params)?;
    let ramdisk = match initrd {
        Some(rd) => Some(place_initrd(
            mem,
            rd,
            u64::from(u32::MAX),
            kernel_end,
            params,
        )?),
        None => None,
    };
    if let Some(entry) = elf.pvh_entry() {
        write_gdt(mem, false)?;
        write_pvh_start_info(mem, ramdisk, params)?;
        return Ok(protected_mode_state(entry, 0, PVH_INFO_ADDRESS));
    }

    // No PVH note: the 64-bit entry with a boot_params as a bzImage would get.
    let mut bp = boot_params::default();
    bp.hdr.boot_flag = 0xaa55;
    bp.hdr.header = u32::from_le_bytes(*HDR_MAGIC);
    bp.hdr.version = 0x020f;
    bp.hdr.type_of_loader = 0xff;
    bp.hdr.vid_mode = 0xffff;
    bp.hdr.loadflags = LOADED_HIGH | CAN_USE_HEAP;
    bp.hdr.heap_end_ptr = 0xde00;
    bp.hdr.kernel_alignment = 0x100_0000;
    bp.hdr.cmd_line_ptr = params.cmdline_address as u32;
    bp.hdr.cmdline_size = (CMDLINE_MAX - 1) as u32;
    if let Some((addr, size)) = ramdisk {
        bp.hdr.ramdisk_image = addr as u32;
        bp.hdr.ramdisk_size = size as u32;
    }
    fill_common(&mut bp, params)?;
    write(mem, "boot_params", params.zero_page_address, bp.as_slice())?;
    write_gdt(mem, true)?;
    write_page_tables(mem)?;
    Ok(long_mode_state(elf.entry, params.zero_page_address))
}

/// hvm_start_info at `PVH_INFO_ADDRESS`, its module list at +0x40 and the
/// memory map at +0x80.
fn write_pvh_start_info(
    mem: &GuestMemoryMmap,
    ramdisk: Option<(u64, u64)>,
    params: &LinuxBootParams,
) -> Result<(), LoadError> {
    let modlist = PVH_INFO_ADDRESS + 0x40;
    let memmap = PVH_INFO_ADDRESS + 0x80;
    if params.e820.len() > E820_MAX_ENTRIES_ZEROPAGE {
        return Err(too_large(
            "memory map",
            format!("{} entries, at most 128", params.e820.len()),
        ));
    }
    let mut info = Vec::with_capacity(0x80 + 24 * params.e820.len());
    info.extend_from_slice(&PVH_MAGIC.to_le_bytes());
    info.extend_from_slice(&1u32.to_le_bytes()); // version
    info.extend_from_slice(&0u32.to_le_bytes()); // flags
    info.extend_from_slice(&u32::from(ramdisk.is_some()).to_le_bytes());
    info.extend_from_slice(&(if ramdisk.is_some() { modlist } else { 0 }).to_le_bytes());
    info.extend_from_slice(&params.cmdline_address.to_le_bytes());
    info.extend_from_slice(&params.rsdp_address.unwrap_or(0).to_le_bytes());
    info.extend_from_slice(&memmap.to_le_bytes());
    info.extend_from_slice(&(params.e820.len() as u32).to_le_bytes());
    info.extend_from_slice(&0u32.to_le_bytes());
    info.resize(0x40, 0);
    if let Some((addr, size)) = ramdisk {
        info.extend_from_slice(&addr.to_le_bytes());
        info.extend_from_slice(&size.to_le_bytes());
    }
    info.resize(0x80, 0);
    for e in &params.e820 {
        info.extend_from_slice(&e.addr.to_le_bytes());
        info.extend_from_slice(&e.size.to_le_bytes());
        info.extend_from_slice(&e.kind.to_le_bytes());
        info.extend_from_slice(&0u32.to_le_bytes());
    }
    write(mem, "PVH start info", PVH_INFO_ADDRESS, &info)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    fn guest(size: u64) -> (GuestMemoryMmap, LinuxBootParams) {
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), size as usize)]).unwrap();
        let mut p = LinuxBootParams::new(pc_e820_map(&[(0, size)]));
        p.rsdp_address = Some(0xe0000);
        (mem, p)
    }

    fn put16(b: &mut [u8], at: usize, v: u16) {
        b[at..at + 2].copy_from_slice(&v.to_le_bytes());
    }

    fn put32(b: &mut [u8], at: usize, v: u32) {
        b[at..at + 4].copy_from_slice(&v.to_le_bytes());
    }

    /// A bzImage with the given protocol version and xloadflags, whose
    /// protected-mode part is `pm_len` bytes of a counting pattern.
    fn bzimage(version: u16, xloadflags: u16, pm_len: usize) -> Vec<u8> {
        let setup_sects = 3usize;
        let setup = (setup_sects + 1) * 512;
        let mut k = vec![0u8; setup + pm_len];
        k[0x1f1] = setup_sects as u8;
        put32(&mut k, 0x1f4, (pm_len / 16) as u32);
        put16(&mut k, 0x1fe, 0xaa55);
        k[0x200] = 0xeb;
        k[0x201] = 0x66;
        k[0x202..0x206].copy_from_slice(b"HdrS");
        put16(&mut k, 0x206, version);
        k[0x211] = LOADED_HIGH;
        put32(&mut k, 0x214, 0x10_0000);
        put32(&mut k, 0x22c, 0x37ff_ffff);
        put32(&mut k, 0x230, 0x20_0000);
        k[0x234] = 1;
        put16(&mut k, 0x236, xloadflags);
        put32(&mut k, 0x238, 2047);
        put32(&mut k, 0x260, (pm_len as u32 + 0xfff) & !0xfff);
        for (i, b) in k[setup..].iter_mut().enumerate() {
            *b = (i % 251) as u8;
        }
        k
    }

    fn read_params(mem: &GuestMemoryMmap) -> boot_params {
        mem.read_obj(GuestAddress(ZERO_PAGE_ADDRESS)).unwrap()
    }

    fn cstr(mem: &GuestMemoryMmap, addr: u64) -> String {
        let mut buf = vec![0u8; 4096];
        mem.read_slice(&mut buf, GuestAddress(addr)).unwrap();
        let end = buf.iter().position(|&b| b == 0).unwrap();
        String::from_utf8(buf[..end].to_vec()).unwrap()
    }

    #[test]
    fn pc_memory_map() {
        let m = pc_e820_map(&[(0, 0xc000_0000), (0x1_0000_0000, 0x4000_0000)]);
        assert_eq!(
            m,
            vec![
                E820Entry {
                    addr: 0,
                    size: 0x9_fc00,
                    kind: E820_RAM
                },
                E820Entry {
                    addr: 0x9_fc00,
                    size: 0x400,
                    kind: E820_RESERVED
                },
                E820Entry {
                    addr: 0xe_0000,
                    size: 0x2_0000,
                    kind: E820_RESERVED
                },
                E820Entry {
                    addr: 0x10_0000,
                    size: 0xc000_0000 - 0x10_0000,
                    kind: E820_RAM
                },
                E820Entry {
                    addr: 0x1_0000_0000,
                    size: 0x4000_0000,
                    kind: E820_RAM
                },
            ]
        );
    }

    #[test]
    fn bzimage_64bit_entry_and_zero_page() {
        let (mem, params) = guest(256 * MIB);
        let kernel = bzimage(0x020f, XLF_KERNEL_64, 0x8000);
        let initrd: Vec<u8> = (0..0x3001u32).map(|i| (i * 7) as u8).collect();
        let st = load_linux(
            &mem,
            &kernel,
            Some(&initrd),
            "console=ttyS0 root=/dev/vda",
            &params,
        )
        .unwrap();

        // The protected-mode kernel sits at 1 MiB.
        let mut pm = vec![0u8; 0x8000];
        mem.read_slice(&mut pm, GuestAddress(0x10_0000)).unwrap();
        assert_eq!(pm, kernel[4 * 512..]);

        // 64-bit entry, long mode on the identity map, RSI = zero page.
        assert_eq!(st.regs.rip, 0x10_0200);
        assert_eq!(st.regs.rsi, ZERO_PAGE_ADDRESS);
        assert_eq!(st.regs.rflags & (1 << 9), 0, "interrupts off");
        assert!(st.sregs.cs.l && !st.sregs.cs.db);
        assert_eq!(st.sregs.cs.selector, 0x10);
        assert_eq!(st.sregs.ds.selector, 0x18);
        assert_ne!(st.sregs.cr0 & x86::CR0_PG, 0);
        assert_ne!(st.sregs.cr4 & x86::CR4_PAE, 0);
        assert_eq!(
            st.sregs.efer & (x86::EFER_LME | x86::EFER_LMA),
            x86::EFER_LME | x86::EFER_LMA
        );
        // Walk the page tables for 0x3fe0_1234 (PML4 0, PDPT 0, PD 511).
        let pml4e: u64 = mem.read_obj(GuestAddress(st.sregs.cr3)).unwrap();
        let pdpte: u64 = mem.read_obj(GuestAddress(pml4e & !0xfff)).unwrap();
        let pde: u64 = mem
            .read_obj(GuestAddress((pdpte & !0xfff) + 8 * 511))
            .unwrap();
        assert_eq!(pde & 0x83, 0x83);
        assert_eq!(pde & !0xfff & !0x80, 0x3fe0_0000);
        // The GDT's code descriptor is 64-bit code.
        let code: u64 = mem.read_obj(GuestAddress(GDT_ADDRESS + 0x10)).unwrap();
        assert_ne!(code & (1 << 53), 0);

        let bp = read_params(&mem);
        let hdr = bp.hdr;
        assert_eq!({ hdr.header }, u32::from_le_bytes(*b"HdrS"));
        assert_eq!(hdr.type_of_loader, 0xff);
        assert_eq!({ hdr.vid_mode }, 0xffff);
        assert_ne!(hdr.loadflags & CAN_USE_HEAP, 0);
        assert_eq!({ hdr.heap_end_ptr }, 0xde00);
        assert_eq!({ hdr.code32_start }, 0x10_0000);
        assert_eq!({ hdr.cmd_line_ptr }, CMDLINE_ADDRESS as u32);
        assert_eq!(cstr(&mem, CMDLINE_ADDRESS), "console=ttyS0 root=/dev/vda");
        assert_eq!({ bp.acpi_rsdp_addr }, 0xe0000);
        assert_eq!(bp.e820_entries as usize, params.e820.len());
        let e = bp.e820_table[3];
        assert_eq!(
            ({ e.addr }, { e.size }, { e.r#type }),
            (0x10_0000, 255 * MIB, E820_RAM)
        );
        // The initrd: page aligned, as high as RAM allows, intact.
        let (rd_addr, rd_size) = (u64::from(hdr.ramdisk_image), u64::from(hdr.ramdisk_size));
        assert_eq!(rd_size, initrd.len() as u64);
        assert_eq!(rd_addr % 4096, 0);
        assert!(rd_addr + rd_size <= 256 * MIB && rd_addr + rd_size + 4096 > 256 * MIB);
        let mut back = vec![0u8; initrd.len()];
        mem.read_slice(&mut back, GuestAddress(rd_addr)).unwrap();
        assert_eq!(back, initrd);
    }

    #[test]
    fn initrd_stays_below_initrd_addr_max() {
        let (mem, params) = guest(1024 * MIB);
        let kernel = bzimage(0x020f, XLF_KERNEL_64, 0x1000);
        let st = load_linux(&mem, &kernel, Some(&[1u8; 0x10000]), "", &params).unwrap();
        assert_eq!(st.regs.rip, 0x10_0200);
        let hdr = read_params(&mem).hdr;
        assert_eq!(u64::from(hdr.ramdisk_image) + 0x10000, 0x3800_0000);
    }

    #[test]
    fn bzimage_32bit_entry() {
        let (mem, params) = guest(64 * MIB);
        // A 686 kernel: protocol 2.15 without XLF_KERNEL_64.
        let st = load_linux(&mem, &bzimage(0x020f, 0, 0x2000), None, "quiet", &params).unwrap();
        assert_eq!(st.regs.rip, 0x10_0000);
        assert_eq!(st.regs.rsi, ZERO_PAGE_ADDRESS);
        assert_eq!(st.sregs.cr0 & x86::CR0_PG, 0);
        assert_ne!(st.sregs.cr0 & x86::CR0_PE, 0);
        assert_eq!(st.sregs.efer, 0);
        assert!(st.sregs.cs.db && !st.sregs.cs.l);
        assert_eq!(st.sregs.tr.type_, 11);
        let hdr = read_params(&mem).hdr;
        assert_eq!({ hdr.ramdisk_image }, 0);
        // Protocol 2.11 predates xloadflags: 32-bit even if the bit were set.
        let st = load_linux(
            &mem,
            &bzimage(0x020b, XLF_KERNEL_64, 0x2000),
            None,
            "",
            &params,
        )
        .unwrap();
        assert_eq!(st.regs.rip, 0x10_0000);
    }

    #[test]
    fn old_protocols_and_zimages_are_refused() {
        let (mem, params) = guest(64 * MIB);
        let err = load_linux(&mem, &bzimage(0x0204, 0, 0x1000), None, "", &params).unwrap_err();
        assert!(matches!(err, LoadError::Unsupported { .. }));
        assert!(err.to_string().contains("2.04 is older than 2.06"), "{err}");
        let mut z = bzimage(0x0206, 0, 0x1000);
        z[0x211] = 0;
        let err = load_linux(&mem, &z, None, "", &params).unwrap_err();
        assert!(err.to_string().contains("zImage"), "{err}");
    }

    #[test]
    fn truncated_and_mangled_images_fail_cleanly() {
        let (mem, params) = guest(64 * MIB);
        let good = bzimage(0x020f, XLF_KERNEL_64, 0x4000);
        for cut in [
            0,
            0x100,
            0x205,
            0x206,
            0x250,
            0x800,
            0xa00,
            0x1000,
            good.len() - 1,
        ] {
            let r = load_linux(&mem, &good[..cut], None, "", &params);
            assert!(r.is_err(), "cut at {cut:#x} was accepted");
        }
        // Every single-byte corruption of the header loads or errs, never panics.
        for at in 0x1f1..0x26c {
            for v in [0x00u8, 0x7f, 0xff] {
                let mut k = good.clone();
                k[at] = v;
                let _ = load_linux(&mem, &k, Some(&[0u8; 100]), "x", &params);
            }
        }
        let err = load_linux(&mem, b"not a kernel at all", None, "", &params).unwrap_err();
        assert!(matches!(err, LoadError::UnknownFormat(_)));
    }

    #[test]
    fn things_that_do_not_fit() {
        let (mem, params) = guest(4 * MIB);
        // Kernel bigger than RAM above 1 MiB.
        let err = load_linux(
            &mem,
            &bzimage(0x020f, XLF_KERNEL_64, 0x40_0000),
            None,
            "",
            &params,
        )
        .unwrap_err();
        assert!(matches!(err, LoadError::TooLarge { .. }), "{err}");
        // Initrd bigger than what is left.
        let k = bzimage(0x020f, XLF_KERNEL_64, 0x1000);
        let err =
            load_linux(&mem, &k, Some(&vec![0u8; 3 * MIB as usize]), "", &params).unwrap_err();
        assert!(err.to_string().starts_with("initrd does not fit"), "{err}");
        // A command line longer than the kernel's cmdline_size.
        let long = "x".repeat(2048);
        let err = load_linux(&mem, &k, None, &long, &params).unwrap_err();
        assert!(err.to_string().contains("at most 2047"), "{err}");
        assert!(load_linux(&mem, &k, None, &long[..2047], &params).is_ok());
    }

    #[test]
    fn initrd_avoids_the_kernels_runtime_area() {
        let (mem, params) = guest(64 * MIB);
        let mut k = bzimage(0x020f, XLF_KERNEL_64, 0x1000);
        // Runs at pref_address 16 MiB and needs 40 MiB there: up to 56 MiB.
        k[0x258..0x260].copy_from_slice(&(16 * MIB).to_le_bytes());
        put32(&mut k, 0x260, (40 * MIB) as u32);
        load_linux(&mem, &k, Some(&vec![1u8; (7 * MIB) as usize]), "", &params).unwrap();
        assert!(u64::from(read_params(&mem).hdr.ramdisk_image) >= 56 * MIB);
        let err =
            load_linux(&mem, &k, Some(&vec![1u8; (9 * MIB) as usize]), "", &params).unwrap_err();
        assert!(err.to_string().starts_with("initrd does not fit"), "{err}");
        // Needing more than RAM holds is refused up front.
        put32(&mut k, 0x260, (60 * MIB) as u32);
        let err = load_linux(&mem, &k, None, "", &params).unwrap_err();
        assert!(err.to_string().contains("from 0x1000000 to start"), "{err}");
    }

    /// A 64-bit ELF with one PT_LOAD at `paddr` and optionally a PVH note.
    fn elf64(paddr: u64, entry: u64, pvh: Option<u32>) -> Vec<u8> {
        let code = vec![0x90u8; 0x300];
        let note: Vec<u8> = match pvh {
            Some(e) => {
                let mut n = Vec::new();
                n.extend_from_slice(&4u32.to_le_bytes());
                n.extend_from_slice(&4u32.to_le_bytes());
                n.extend_from_slice(&XEN_ELFNOTE_PHYS32_ENTRY.to_le_bytes());
                n.extend_from_slice(b"Xen\0");
                n.extend_from_slice(&e.to_le_bytes());
                n
            }
            None => Vec::new(),
        };
        let phnum = if pvh.is_some() { 2 } else { 1 };
        let data_off = 64 + PHDR_SIZE * phnum;
        let mut f = vec![0u8; data_off];
        f[0..4].copy_from_slice(b"\x7fELF");
        f[4] = 2;
        f[5] = 1;
        f[6] = 1;
        put16(&mut f, 16, 2);
        put16(&mut f, 18, 62);
        f[24..32].copy_from_slice(&entry.to_le_bytes());
        f[32..40].copy_from_slice(&64u64.to_le_bytes());
        put16(&mut f, 52, 64);
        put16(&mut f, 54, PHDR_SIZE as u16);
        put16(&mut f, 56, phnum as u16);
        let mut ph = |i: usize, ty: u32, off: u64, addr: u64, filesz: u64, memsz: u64| {
            let p = 64 + i * PHDR_SIZE;
            put32(&mut f, p, ty);
            f[p + 8..p + 16].copy_from_slice(&off.to_le_bytes());
            f[p + 16..p + 24].copy_from_slice(&(addr | 0xffff_ffff_8000_0000).to_le_bytes());
            f[p + 24..p + 32].copy_from_slice(&addr.to_le_bytes());
            f[p + 32..p + 40].copy_from_slice(&filesz.to_le_bytes());
            f[p + 40..p + 48].copy_from_slice(&memsz.to_le_bytes());
        };
        ph(
            0,
            PT_LOAD,
            data_off as u64,
            paddr,
            code.len() as u64,
            0x1000,
        );
        if pvh.is_some() {
            ph(
                1,
                PT_NOTE,
                (data_off + code.len()) as u64,
                0,
                note.len() as u64,
                note.len() as u64,
            );
        }
        f.extend_from_slice(&code);
        f.extend_from_slice(&note);
        f
    }

    #[test]
    fn vmlinux_elf_64bit_entry() {
        let (mem, params) = guest(64 * MIB);
        let img = elf64(0x100_0000, 0x100_0000, None);
        // Junk where the bss goes must be cleared.
        mem.write_slice(&[0xee; 0x100], GuestAddress(0x100_0300))
            .unwrap();
        let st = load_linux(&mem, &img, Some(&[9u8; 0x2000]), "console=hvc0", &params).unwrap();
        assert_eq!(st.regs.rip, 0x100_0000);
        assert_eq!(st.regs.rsi, ZERO_PAGE_ADDRESS);
        assert!(st.sregs.cs.l);
        let b: u8 = mem.read_obj(GuestAddress(0x100_0000)).unwrap();
        assert_eq!(b, 0x90);
        let bss: u8 = mem.read_obj(GuestAddress(0x100_0380)).unwrap();
        assert_eq!(bss, 0);
        let bp = read_params(&mem);
        assert_eq!({ bp.hdr.header }, u32::from_le_bytes(*b"HdrS"));
        assert_eq!({ bp.hdr.boot_flag }, 0xaa55);
        assert_eq!(cstr(&mem, u64::from(bp.hdr.cmd_line_ptr)), "console=hvc0");
        assert!(u64::from(bp.hdr.ramdisk_image) >= 0x100_1000);
        assert_eq!({ bp.hdr.ramdisk_size }, 0x2000);
    }

    #[test]
    fn vmlinux_elf_pvh_entry() {
        let (mem, params) = guest(64 * MIB);
        let img = elf64(0x100_0000, 0x100_0000, Some(0x100_0100));
        let st = load_linux(&mem, &img, Some(&[9u8; 0x2000]), "console=ttyS0", &params).unwrap();
        assert_eq!(st.regs.rip, 0x100_0100);
        assert_eq!(st.regs.rbx, PVH_INFO_ADDRESS);
        assert_eq!(st.sregs.cr0 & x86::CR0_PG, 0);
        assert!(st.sregs.cs.db && !st.sregs.cs.l);
        let magic: u32 = mem.read_obj(GuestAddress(PVH_INFO_ADDRESS)).unwrap();
        assert_eq!(magic, PVH_MAGIC);
        let nr_modules: u32 = mem.read_obj(GuestAddress(PVH_INFO_ADDRESS + 12)).unwrap();
        assert_eq!(nr_modules, 1);
        let cmdline: u64 = mem.read_obj(GuestAddress(PVH_INFO_ADDRESS + 24)).unwrap();
        assert_eq!(cstr(&mem, cmdline), "console=ttyS0");
        let rsdp: u64 = mem.read_obj(GuestAddress(PVH_INFO_ADDRESS + 32)).unwrap();
        assert_eq!(rsdp, 0xe0000);
        let memmap: u64 = mem.read_obj(GuestAddress(PVH_INFO_ADDRESS + 40)).unwrap();
        let entries: u32 = mem.read_obj(GuestAddress(PVH_INFO_ADDRESS + 48)).unwrap();
        assert_eq!(entries as usize, params.e820.len());
        let last_size: u64 = mem
            .read_obj(GuestAddress(memmap + 24 * (u64::from(entries) - 1) + 8))
            .unwrap();
        assert_eq!(last_size, 63 * MIB);
        let mod_size: u64 = mem.read_obj(GuestAddress(PVH_INFO_ADDRESS + 0x48)).unwrap();
        assert_eq!(mod_size, 0x2000);
    }

    #[test]
    fn bad_elves_fail_cleanly() {
        let (mem, params) = guest(64 * MIB);
        let good = elf64(0x100_0000, 0x100_0000, Some(0x100_0100));
        for cut in [4, 63, 64, 100, 64 + PHDR_SIZE, good.len() - 21] {
            assert!(
                load_linux(&mem, &good[..cut], None, "", &params).is_err(),
                "cut at {cut}"
            );
        }
        // A cut inside the PVH note loses the note, not the kernel: 64-bit entry.
        let st = load_linux(&mem, &good[..good.len() - 1], None, "", &params).unwrap();
        assert_eq!(st.regs.rip, 0x100_0000);
        assert!(st.sregs.cs.l);
        let mut e32 = good.clone();
        e32[4] = 1;
        let err = load_linux(&mem, &e32, None, "", &params).unwrap_err();
        assert!(err.to_string().contains("32-bit vmlinux"), "{err}");
        // A segment outside RAM.
        let far = elf64(0x1000_0000, 0x1000_0000, None);
        let err = load_linux(&mem, &far, None, "", &params).unwrap_err();
        assert!(matches!(err, LoadError::TooLarge { .. }), "{err}");
        // Mangled headers never panic.
        for at in 0..good.len() {
            let mut k = good.clone();
            k[at] ^= 0xff;
            let _ = load_linux(&mem, &k, None, "", &params);
        }
    }

    /// Debian's kernels, if they were fetched into /var/cache/kite-test with
    /// `apt-get download linux-image-<version>-cloud-amd64` (and the i386
    /// `-686` / `-686-pae` packages) and unpacked with `dpkg-deb -x` under
    /// root/ and root686/. amd64 kernels take the 64-bit entry, 686 ones
    /// the 32-bit entry.
    #[test]
    fn debian_kernels_load() {
        let kernels: Vec<std::path::PathBuf> = [
            "/var/cache/kite-test/root/boot",
            "/var/cache/kite-test/root686/boot",
        ]
        .iter()
        .filter_map(|d| std::fs::read_dir(d).ok())
        .flat_map(|d| d.filter_map(|e| e.ok().map(|e| e.path())))
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-"))
        })
        .collect();
        if kernels.is_empty() {
            eprintln!("skipping: no Debian kernel under /var/cache/kite-test (see the test's doc comment)");
            return;
        }
        for path in kernels {
            let name = path.display().to_string();
            let kernel = std::fs::read(&path).unwrap();
            let (mem, params) = guest(512 * MIB);
            let st = load_linux(
                &mem,
                &kernel,
                Some(&[0u8; 0x10_0000]),
                "console=ttyS0",
                &params,
            )
            .unwrap_or_else(|e| panic!("{name}: {e}"));
            let version = u16_at(&kernel, 0x206);
            assert!(version >= 0x020f, "{name}: protocol {version:#x}");
            if name.ends_with("amd64") {
                assert_eq!(
                    st.regs.rip, 0x10_0200,
                    "{name} should take the 64-bit entry"
                );
                assert!(st.sregs.cs.l);
            } else {
                assert_eq!(
                    st.regs.rip, 0x10_0000,
                    "{name} should take the 32-bit entry"
                );
                assert_eq!(st.sregs.cr0 & x86::CR0_PG, 0);
                assert!(st.sregs.cs.db);
            }
            assert_eq!(st.regs.rsi, ZERO_PAGE_ADDRESS);
            let bp = read_params(&mem);
            assert_eq!({ bp.hdr.header }, u32::from_le_bytes(*b"HdrS"));
            assert_eq!({ bp.hdr.version }, version);
            assert_eq!(bp.hdr.type_of_loader, 0xff);
            assert_eq!({ bp.hdr.cmd_line_ptr }, CMDLINE_ADDRESS as u32);
            let init_size = u64::from(bp.hdr.init_size);
            let rd = u64::from(bp.hdr.ramdisk_image);
            assert!(
                rd >= 0x10_0000 + init_size,
                "{name}: initrd {rd:#x} overlaps the kernel"
            );
            assert!(rd + 0x10_0000 <= u64::from(bp.hdr.initrd_addr_max) + 1);
            eprintln!(
                "{name}: protocol {}.{:02}, init_size {init_size:#x}, pref_address {:#x}, initrd at {rd:#x}, entry {:#x}",
                version >> 8,
                version & 0xff,
                { bp.hdr.pref_address },
                st.regs.rip
            );
            let setup = (usize::from(kernel[0x1f1]) + 1) * 512;
            let mut head = vec![0u8; 4096];
            mem.read_slice(&mut head, GuestAddress(0x10_0000)).unwrap();
            assert_eq!(head, kernel[setup..setup + 4096]);
        }
    }
}
