//! Where the test kernels put things: one loadable segment at 1 MiB.
//!
//! ```text
//! LOAD_ADDR + 0x0000  Multiboot header
//!           + 0x0040  32-bit entry code
//!           + 0x0800  GDT and GDTR
//!           + 0x1000  PML4, + 0x2000 PDPT, + 0x3000 PD (2 MiB pages, first GiB)
//!           + 0x4000  64-bit code
//!           + 0x8000  end of the file image; zeroed memory (bss) follows
//!           + 0x10000 compute buffer
//!           + 0x20000 top of the stack, end of the segment
//! ```

/// Guest-physical (and, identity-mapped, virtual) load address.
pub const LOAD_ADDR: u32 = 0x10_0000;
/// What a Multiboot loader leaves in EAX.
pub const MULTIBOOT_MAGIC_BOOTLOADER: u32 = 0x2bad_b002;
/// The magic of the kernel's Multiboot header.
pub const MULTIBOOT_HEADER_MAGIC: u32 = 0x1bad_b002;

pub const ENTRY_OFF: u32 = 0x40;
pub const GDT_OFF: u32 = 0x800;
pub const PML4_OFF: u32 = 0x1000;
pub const PDPT_OFF: u32 = 0x2000;
pub const PD_OFF: u32 = 0x3000;
pub const CODE64_OFF: u32 = 0x4000;
pub const FILE_END_OFF: u32 = 0x8000;
pub const BUFFER_OFF: u32 = 0x1_0000;
pub const STACK_TOP_OFF: u32 = 0x2_0000;
pub const SEGMENT_END_OFF: u32 = 0x2_0000;

/// GDT selectors the kernels load.
pub const SEL_CODE64: u16 = 0x08;
pub const SEL_DATA: u16 = 0x10;
