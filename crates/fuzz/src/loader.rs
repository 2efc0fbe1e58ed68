//! The kernel loaders with hostile files: bzImage setup headers, vmlinux
//! and Multiboot ELF program headers, Multiboot a.out-kludge headers, and
//! initrds of any size, loaded into a 16 MiB guest. Each harness forces the
//! magic its format needs (so the fuzzer spends its time past the format
//! check) and leaves every other byte to the input.
//!
//! Checked: the loaders only write guest memory through the memory
//! abstraction (out-of-range writes fail as errors), and a loaded initrd
//! lies in RAM where the zero page says, byte for byte.
//!
//! It must not know the rest of the machine (board, vCPUs).

use kite_machine::loader::linux::ZERO_PAGE_ADDRESS;
use kite_machine::loader::{load_kernel, BootSpec, Image};
use kite_machine::memory::{create_guest_memory, MemoryLayout};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use crate::input::Input;

const RAM: u64 = 16 << 20;

fn guest() -> (GuestMemoryMmap, MemoryLayout) {
    let layout = match MemoryLayout::new(RAM) {
        Ok(l) => l,
        Err(e) => panic!("harness setup: layout: {e}"),
    };
    match create_guest_memory(&layout) {
        Ok(m) => (m, layout),
        Err(e) => panic!("harness setup: guest RAM: {e}"),
    }
}

/// Load `kernel` (and `initrd`) the way the CLI does; returns whether it loaded.
fn load(kernel: Vec<u8>, initrd: Option<Vec<u8>>, cmdline: &str) -> bool {
    let (mem, layout) = guest();
    let k = Image::from_bytes("fuzz-kernel", kernel);
    let i = initrd.map(|b| Image::from_bytes("fuzz-initrd", b));
    let spec = BootSpec {
        kernel: &k,
        initrd: i.as_ref(),
        cmdline,
        rsdp_address: Some(0xf_0000),
    };
    let ok = load_kernel(&mem, &layout, &spec).is_ok();
    if ok {
        if let Some(rd) = &i {
            check_initrd(&mem, &rd.bytes);
        }
    }
    ok
}

/// The zero page's ramdisk fields point at the initrd's bytes in RAM.
fn check_initrd(mem: &GuestMemoryMmap, initrd: &[u8]) {
    let image: u32 = mem
        .read_obj(GuestAddress(ZERO_PAGE_ADDRESS + 0x218))
        .unwrap_or(0);
    let size: u32 = mem
        .read_obj(GuestAddress(ZERO_PAGE_ADDRESS + 0x21c))
        .unwrap_or(0);
    if image == 0 && size == 0 {
        // A Multiboot or PVH boot reports modules elsewhere.
        return;
    }
    assert_eq!(size as usize, initrd.len(), "zero page ramdisk_size");
    assert!(
        u64::from(image) + u64::from(size) <= RAM,
        "initrd at {image:#x}+{size:#x} is outside RAM"
    );
    let mut back = vec![0u8; initrd.len()];
    assert!(mem
        .read_slice(&mut back, GuestAddress(u64::from(image)))
        .is_ok());
    assert!(
        back == initrd,
        "the initrd in guest memory differs from the file"
    );
}

fn cmdline(inp: &mut Input) -> String {
    let n = usize::from(inp.u8());
    String::from_utf8_lossy(inp.bytes(n)).into_owned()
}

/// A bzImage: the input is the file (setup header included), with "HdrS"
/// forced at 0x202; a small initrd and a command line come first.
pub fn loader_bzimage(data: &[u8]) {
    let mut inp = Input::new(data);
    let cl = cmdline(&mut inp);
    let rd_len = usize::from(inp.u8());
    let rd = inp.bytes(rd_len).to_vec();
    let mut k = inp.rest().to_vec();
    if k.len() < 0x300 {
        k.resize(0x300, 0);
    }
    k[0x202..0x206].copy_from_slice(b"HdrS");
    load(k, (!rd.is_empty()).then_some(rd), &cl);
}

/// A vmlinux ELF (with or without a PVH note): "\x7fELF" forced at 0.
pub fn loader_elf(data: &[u8]) {
    let mut k = data.to_vec();
    if k.len() < 64 {
        k.resize(64, 0);
    }
    k[..4].copy_from_slice(b"\x7fELF");
    load(k, None, "console=ttyS0");
}

/// A Multiboot v1 kernel: the header (magic, the input's flags, a valid
/// checksum) is written at an aligned offset the input picks in the first
/// 8 KiB; the a.out-kludge fields and an ELF image, if any, are the input's.
pub fn loader_multiboot(data: &[u8]) {
    let mut inp = Input::new(data);
    let at = (usize::from(inp.u16()) % 2048) * 4;
    let flags = inp.u32() & 0x0001_0007;
    let modules = usize::from(inp.u8() & 1);
    let mut k = inp.rest().to_vec();
    if k.len() < at + 48 {
        k.resize(at + 48, 0);
    }
    let magic: u32 = 0x1bad_b002;
    let checksum = 0u32.wrapping_sub(magic).wrapping_sub(flags);
    k[at..at + 4].copy_from_slice(&magic.to_le_bytes());
    k[at + 4..at + 8].copy_from_slice(&flags.to_le_bytes());
    k[at + 8..at + 12].copy_from_slice(&checksum.to_le_bytes());
    let initrd = (modules == 1).then(|| b"module".to_vec());
    load(k, initrd, "multiboot");
}

/// A well-formed bzImage (protocol 2.15, 64-bit entry) with an initrd and a
/// command line from the input, and initrd_addr_max, cmdline_size and
/// init_size from the input: where the initrd goes and what the zero page
/// says about it.
pub fn loader_initrd(data: &[u8]) {
    let mut inp = Input::new(data);
    let initrd_addr_max = match inp.u8() & 3 {
        0 => inp.u32(),
        _ => 0x37ff_ffff,
    };
    let cmdline_size = match inp.u8() & 3 {
        0 => inp.u32(),
        _ => 0x7ff,
    };
    let init_size = u32::from(inp.u16()) << 8;
    let cl = cmdline(&mut inp);
    let rd = inp.rest().to_vec();
    let k = bzimage(initrd_addr_max, cmdline_size, init_size);
    load(k, (!rd.is_empty()).then_some(rd), &cl);
}

/// A minimal bzImage whose protected-mode part is 4 KiB of zeros.
fn bzimage(initrd_addr_max: u32, cmdline_size: u32, init_size: u32) -> Vec<u8> {
    let setup_sects = 1u8;
    let mut k = vec![0u8; (usize::from(setup_sects) + 1) * 512 + 4096];
    k[0x1f1] = setup_sects;
    k[0x1f4..0x1f8].copy_from_slice(&(4096u32 / 16).to_le_bytes()); // syssize
    k[0x1fe..0x200].copy_from_slice(&0xaa55u16.to_le_bytes());
    k[0x200] = 0xeb;
    k[0x201] = 0x6a; // the header runs to 0x26c
    k[0x202..0x206].copy_from_slice(b"HdrS");
    k[0x206..0x208].copy_from_slice(&0x020fu16.to_le_bytes());
    k[0x211] = 0x01; // LOADED_HIGH
    k[0x22c..0x230].copy_from_slice(&initrd_addr_max.to_le_bytes());
    k[0x234] = 1; // relocatable
    k[0x236..0x238].copy_from_slice(&1u16.to_le_bytes()); // XLF_KERNEL_64
    k[0x238..0x23c].copy_from_slice(&cmdline_size.to_le_bytes());
    k[0x258..0x260].copy_from_slice(&0x10_0000u64.to_le_bytes()); // pref_address
    k[0x260..0x264].copy_from_slice(&init_size.to_le_bytes());
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_initrd_harness_image_loads_and_its_initrd_is_checked() {
        let rd: Vec<u8> = (0..5000u32).map(|i| i as u8).collect();
        assert!(load(
            bzimage(0x37ff_ffff, 0x7ff, 0x1_0000),
            Some(rd),
            "quiet"
        ));
    }

    #[test]
    fn an_initrd_above_initrd_addr_max_is_refused_not_misplaced() {
        // The highest address allowed is below the kernel: nowhere fits.
        assert!(!load(
            bzimage(0x1000, 0x7ff, 0x1_0000),
            Some(vec![1; 8192]),
            ""
        ));
    }
}
