//! Architectural register state, laid out as KVM's structures (struct kvm_regs,
//! kvm_sregs, kvm_fpu) so engines translate field by field.

/// General-purpose registers, RIP and RFLAGS.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Regs {
    pub rax: u64,
    pub rbx: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub rsi: u64,
    pub rdi: u64,
    pub rsp: u64,
    pub rbp: u64,
    pub r8: u64,
    pub r9: u64,
    pub r10: u64,
    pub r11: u64,
    pub r12: u64,
    pub r13: u64,
    pub r14: u64,
    pub r15: u64,
    pub rip: u64,
    pub rflags: u64,
}

impl Regs {
    /// The 16 GPRs in encoding order (RAX, RCX, RDX, RBX, RSP, RBP, RSI, RDI, R8..R15).
    pub fn gprs(&self) -> [u64; 16] {
        [
            self.rax, self.rcx, self.rdx, self.rbx, self.rsp, self.rbp, self.rsi, self.rdi,
            self.r8, self.r9, self.r10, self.r11, self.r12, self.r13, self.r14, self.r15,
        ]
    }

    /// Set the 16 GPRs from encoding order.
    pub fn set_gprs(&mut self, g: &[u64; 16]) {
        self.rax = g[0];
        self.rcx = g[1];
        self.rdx = g[2];
        self.rbx = g[3];
        self.rsp = g[4];
        self.rbp = g[5];
        self.rsi = g[6];
        self.rdi = g[7];
        self.r8 = g[8];
        self.r9 = g[9];
        self.r10 = g[10];
        self.r11 = g[11];
        self.r12 = g[12];
        self.r13 = g[13];
        self.r14 = g[14];
        self.r15 = g[15];
    }
}

/// A segment register with its hidden descriptor cache (struct kvm_segment).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Segment {
    pub base: u64,
    pub limit: u32,
    pub selector: u16,
    /// Descriptor type field (4 bits).
    pub type_: u8,
    pub present: bool,
    pub dpl: u8,
    /// Default operation size (D/B bit).
    pub db: bool,
    /// Code/data (true) or system (false) descriptor.
    pub s: bool,
    /// 64-bit code segment.
    pub l: bool,
    /// Granularity.
    pub g: bool,
    pub avl: bool,
    pub unusable: bool,
}

impl Segment {
    /// A real-mode style segment: base = selector * 16, 64 KiB limit.
    pub fn real_mode(selector: u16, code: bool) -> Segment {
        Segment {
            base: u64::from(selector) << 4,
            limit: 0xffff,
            selector,
            type_: if code { 0xb } else { 0x3 },
            present: true,
            dpl: 0,
            db: false,
            s: true,
            l: false,
            g: false,
            avl: false,
            unusable: false,
        }
    }

    /// A flat 4 GiB segment at privilege 0: 32-bit code, 64-bit code or data.
    pub fn flat(selector: u16, kind: FlatKind) -> Segment {
        let (type_, db, l) = match kind {
            FlatKind::Code32 => (0xb, true, false),
            FlatKind::Code64 => (0xb, false, true),
            FlatKind::Data => (0x3, true, false),
        };
        Segment {
            base: 0,
            limit: 0xffff_ffff,
            selector,
            type_,
            present: true,
            dpl: 0,
            db,
            s: true,
            l,
            g: true,
            avl: false,
            unusable: false,
        }
    }

    /// The 8-byte GDT descriptor that loads into this segment.
    pub fn to_descriptor(&self) -> u64 {
        let limit = if self.g { self.limit >> 12 } else { self.limit } as u64;
        let base = self.base & 0xffff_ffff;
        (limit & 0xffff)
            | ((base & 0xff_ffff) << 16)
            | (u64::from(self.type_ & 0xf) << 40)
            | (u64::from(self.s) << 44)
            | (u64::from(self.dpl & 3) << 45)
            | (u64::from(self.present) << 47)
            | (((limit >> 16) & 0xf) << 48)
            | (u64::from(self.avl) << 52)
            | (u64::from(self.l) << 53)
            | (u64::from(self.db) << 54)
            | (u64::from(self.g) << 55)
            | (((base >> 24) & 0xff) << 56)
    }
}

/// Kinds of flat segment for `Segment::flat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlatKind {
    Code32,
    Code64,
    Data,
}

/// GDTR or IDTR.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DescriptorTable {
    pub base: u64,
    pub limit: u16,
}

/// Segment, control and system registers (struct kvm_sregs).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sregs {
    pub cs: Segment,
    pub ds: Segment,
    pub es: Segment,
    pub fs: Segment,
    pub gs: Segment,
    pub ss: Segment,
    pub tr: Segment,
    pub ldt: Segment,
    pub gdt: DescriptorTable,
    pub idt: DescriptorTable,
    pub cr0: u64,
    pub cr2: u64,
    pub cr3: u64,
    pub cr4: u64,
    pub cr8: u64,
    pub efer: u64,
    pub apic_base: u64,
}

/// x87, MMX and SSE state (struct kvm_fpu).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fpu {
    /// ST0..ST7 as 80-bit values in the low 10 bytes of each 16.
    pub fpr: [[u8; 16]; 8],
    pub fcw: u16,
    pub fsw: u16,
    /// Abridged tag word, as FXSAVE stores it (bit set = register valid).
    pub ftwx: u8,
    pub last_opcode: u16,
    pub last_ip: u64,
    pub last_dp: u64,
    pub xmm: [[u8; 16]; 16],
    pub mxcsr: u32,
}

impl Default for Fpu {
    fn default() -> Self {
        Fpu {
            fpr: [[0; 16]; 8],
            fcw: 0x37f,
            fsw: 0,
            ftwx: 0,
            last_opcode: 0,
            last_ip: 0,
            last_dp: 0,
            xmm: [[0; 16]; 16],
            mxcsr: 0x1f80,
        }
    }
}

/// One CPUID leaf/subleaf and its result.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuidEntry {
    pub function: u32,
    pub index: u32,
    /// The leaf depends on ECX (subleaf `index`).
    pub significant_index: bool,
    pub eax: u32,
    pub ebx: u32,
    pub ecx: u32,
    pub edx: u32,
}

/// Well-known bits and MSR indices, shared by engines, loaders and tests.
pub mod x86 {
    pub const CR0_PE: u64 = 1 << 0;
    pub const CR0_MP: u64 = 1 << 1;
    pub const CR0_EM: u64 = 1 << 2;
    pub const CR0_TS: u64 = 1 << 3;
    pub const CR0_ET: u64 = 1 << 4;
    pub const CR0_NE: u64 = 1 << 5;
    pub const CR0_WP: u64 = 1 << 16;
    pub const CR0_AM: u64 = 1 << 18;
    pub const CR0_NW: u64 = 1 << 29;
    pub const CR0_CD: u64 = 1 << 30;
    pub const CR0_PG: u64 = 1 << 31;

    pub const CR4_VME: u64 = 1 << 0;
    pub const CR4_PVI: u64 = 1 << 1;
    pub const CR4_TSD: u64 = 1 << 2;
    pub const CR4_DE: u64 = 1 << 3;
    pub const CR4_PSE: u64 = 1 << 4;
    pub const CR4_PAE: u64 = 1 << 5;
    pub const CR4_MCE: u64 = 1 << 6;
    pub const CR4_PGE: u64 = 1 << 7;
    pub const CR4_PCE: u64 = 1 << 8;
    pub const CR4_OSFXSR: u64 = 1 << 9;
    pub const CR4_OSXMMEXCPT: u64 = 1 << 10;
    pub const CR4_UMIP: u64 = 1 << 11;
    pub const CR4_FSGSBASE: u64 = 1 << 16;
    pub const CR4_PCIDE: u64 = 1 << 17;
    pub const CR4_OSXSAVE: u64 = 1 << 18;
    pub const CR4_SMEP: u64 = 1 << 20;
    pub const CR4_SMAP: u64 = 1 << 21;

    pub const EFER_SCE: u64 = 1 << 0;
    pub const EFER_LME: u64 = 1 << 8;
    pub const EFER_LMA: u64 = 1 << 10;
    pub const EFER_NXE: u64 = 1 << 11;

    pub const RFLAGS_CF: u64 = 1 << 0;
    pub const RFLAGS_FIXED: u64 = 1 << 1;
    pub const RFLAGS_PF: u64 = 1 << 2;
    pub const RFLAGS_AF: u64 = 1 << 4;
    pub const RFLAGS_ZF: u64 = 1 << 6;
    pub const RFLAGS_SF: u64 = 1 << 7;
    pub const RFLAGS_TF: u64 = 1 << 8;
    pub const RFLAGS_IF: u64 = 1 << 9;
    pub const RFLAGS_DF: u64 = 1 << 10;
    pub const RFLAGS_OF: u64 = 1 << 11;
    pub const RFLAGS_IOPL: u64 = 3 << 12;
    pub const RFLAGS_NT: u64 = 1 << 14;
    pub const RFLAGS_RF: u64 = 1 << 16;
    pub const RFLAGS_VM: u64 = 1 << 17;
    pub const RFLAGS_AC: u64 = 1 << 18;
    pub const RFLAGS_VIF: u64 = 1 << 19;
    pub const RFLAGS_VIP: u64 = 1 << 20;
    pub const RFLAGS_ID: u64 = 1 << 21;

    pub const MSR_IA32_TSC: u32 = 0x10;
    pub const MSR_IA32_APIC_BASE: u32 = 0x1b;
    pub const MSR_IA32_FEATURE_CONTROL: u32 = 0x3a;
    pub const MSR_IA32_TSC_ADJUST: u32 = 0x3b;
    pub const MSR_IA32_SYSENTER_CS: u32 = 0x174;
    pub const MSR_IA32_SYSENTER_ESP: u32 = 0x175;
    pub const MSR_IA32_SYSENTER_EIP: u32 = 0x176;
    pub const MSR_IA32_MISC_ENABLE: u32 = 0x1a0;
    pub const MSR_IA32_CR_PAT: u32 = 0x277;
    pub const MSR_MTRR_DEF_TYPE: u32 = 0x2ff;
    pub const MSR_IA32_TSC_DEADLINE: u32 = 0x6e0;
    pub const MSR_EFER: u32 = 0xc000_0080;
    pub const MSR_STAR: u32 = 0xc000_0081;
    pub const MSR_LSTAR: u32 = 0xc000_0082;
    pub const MSR_CSTAR: u32 = 0xc000_0083;
    pub const MSR_SYSCALL_MASK: u32 = 0xc000_0084;
    pub const MSR_FS_BASE: u32 = 0xc000_0100;
    pub const MSR_GS_BASE: u32 = 0xc000_0101;
    pub const MSR_KERNEL_GS_BASE: u32 = 0xc000_0102;
    pub const MSR_TSC_AUX: u32 = 0xc000_0103;

    /// Exception vectors.
    pub const DE: u8 = 0;
    pub const DB: u8 = 1;
    pub const NMI: u8 = 2;
    pub const BP: u8 = 3;
    pub const OF: u8 = 4;
    pub const BR: u8 = 5;
    pub const UD: u8 = 6;
    pub const NM: u8 = 7;
    pub const DF: u8 = 8;
    pub const TS: u8 = 10;
    pub const NP: u8 = 11;
    pub const SS: u8 = 12;
    pub const GP: u8 = 13;
    pub const PF: u8 = 14;
    pub const MF: u8 = 16;
    pub const AC: u8 = 17;
    pub const MC: u8 = 18;
    pub const XM: u8 = 19;
}
