//! The CPUID the emu engine presents: a coherent Intel-style identity and
//! exactly the features the engine implements. Add a bit here only together
//! with the instructions or behaviour it promises.

use kite_hypervisor::CpuidEntry;

use super::Cpu;

/// Bits of leaf 1 EDX.
pub mod edx1 {
    pub const FPU: u32 = 1 << 0;
    pub const DE: u32 = 1 << 2;
    pub const PSE: u32 = 1 << 3;
    pub const TSC: u32 = 1 << 4;
    pub const MSR: u32 = 1 << 5;
    pub const PAE: u32 = 1 << 6;
    pub const CX8: u32 = 1 << 8;
    pub const APIC: u32 = 1 << 9;
    pub const SEP: u32 = 1 << 11;
    pub const MTRR: u32 = 1 << 12;
    pub const PGE: u32 = 1 << 13;
    pub const CMOV: u32 = 1 << 15;
    pub const PAT: u32 = 1 << 16;
    pub const PSE36: u32 = 1 << 17;
    pub const CLFSH: u32 = 1 << 19;
    pub const MMX: u32 = 1 << 23;
    pub const FXSR: u32 = 1 << 24;
    pub const SSE: u32 = 1 << 25;
    pub const SSE2: u32 = 1 << 26;
}

/// Bits of leaf 1 ECX.
pub mod ecx1 {
    pub const SSE3: u32 = 1 << 0;
    pub const SSSE3: u32 = 1 << 9;
    pub const CX16: u32 = 1 << 13;
    pub const SSE41: u32 = 1 << 19;
    pub const SSE42: u32 = 1 << 20;
    pub const MOVBE: u32 = 1 << 22;
    pub const POPCNT: u32 = 1 << 23;
    pub const TSC_DEADLINE: u32 = 1 << 24;
    pub const XSAVE: u32 = 1 << 26;
    pub const OSXSAVE: u32 = 1 << 27;
}

/// TSC frequency the engine's RDTSC runs at (Hz), reported in leaves 0x15/0x16.
pub const TSC_HZ: u64 = 1_000_000_000;

fn leaf(function: u32, index: u32, sig: bool, r: [u32; 4]) -> CpuidEntry {
    CpuidEntry {
        function,
        index,
        significant_index: sig,
        eax: r[0],
        ebx: r[1],
        ecx: r[2],
        edx: r[3],
    }
}

fn ascii4(s: &[u8]) -> u32 {
    u32::from_le_bytes([s[0], s[1], s[2], s[3]])
}

/// The leaves the engine supports.
pub fn supported() -> Vec<CpuidEntry> {
    use ecx1::*;
    use edx1::*;
    let vendor = b"GenuineIntel";
    let edx = FPU
        | DE
        | PSE
        | TSC
        | MSR
        | PAE
        | CX8
        | APIC
        | SEP
        | MTRR
        | PGE
        | CMOV
        | PAT
        | PSE36
        | CLFSH
        | MMX
        | FXSR
        | SSE
        | SSE2;
    let ecx = SSE3 | SSSE3 | CX16 | SSE41 | SSE42 | MOVBE | POPCNT | TSC_DEADLINE | XSAVE;
    let brand = *b"Kite emu x86-64 virtual CPU\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0";
    let b = |i: usize| -> [u32; 4] {
        let o = i * 16;
        [
            ascii4(&brand[o..]),
            ascii4(&brand[o + 4..]),
            ascii4(&brand[o + 8..]),
            ascii4(&brand[o + 12..]),
        ]
    };
    vec![
        leaf(
            0,
            0,
            false,
            [
                0x16,
                ascii4(&vendor[0..]),
                ascii4(&vendor[8..]),
                ascii4(&vendor[4..]),
            ],
        ),
        // Family 6, model 0x3a, stepping 9 (a model without the early PAT
        // errata Linux works around by disabling PAT).
        leaf(1, 0, false, [0x0003_06a9, 0x0001_0800, ecx, edx]),
        leaf(2, 0, false, [1, 0, 0, 0x002c_307d]),
        leaf(4, 0, true, [0x0000_0121, 0x01c0_003f, 0x3f, 0]),
        leaf(4, 1, true, [0x0000_0122, 0x01c0_003f, 0x3f, 0]),
        leaf(4, 2, true, [0x0000_0143, 0x03c0_003f, 0xfff, 0]),
        leaf(4, 3, true, [0, 0, 0, 0]),
        leaf(6, 0, false, [0x4, 0, 0, 0]), // ARAT: the APIC timer runs in every state
        leaf(7, 0, true, [0, 0, 0, 0]),
        leaf(0xb, 0, true, [0, 1, 0x100, 0]),
        leaf(0xb, 1, true, [0, 1, 0x201, 0]),
        // XSAVE: x87 and SSE state (XCR0 bits 0-1), 576-byte area; XSAVEOPT.
        leaf(0xd, 0, true, [3, 576, 576, 0]),
        leaf(0xd, 1, true, [1, 0, 0, 0]),
        // TSC/crystal ratio: crystal 25 MHz * 40 = 1 GHz.
        leaf(0x15, 0, false, [1, 40, 25_000_000, 0]),
        leaf(0x16, 0, false, [1000, 1000, 100, 0]),
        leaf(0x8000_0000, 0, false, [0x8000_0008, 0, 0, 0]),
        // LAHF/SAHF in 64-bit mode, ABM (LZCNT); SYSCALL, NX, 1 GiB pages, RDTSCP, long mode.
        leaf(
            0x8000_0001,
            0,
            false,
            [
                0,
                0,
                1 | (1 << 5),
                (1 << 11) | (1 << 20) | (1 << 26) | (1 << 27) | (1 << 29),
            ],
        ),
        leaf(0x8000_0002, 0, false, b(0)),
        leaf(0x8000_0003, 0, false, b(1)),
        leaf(0x8000_0004, 0, false, b(2)),
        leaf(0x8000_0006, 0, false, [0, 0, 0x0100_6040, 0]),
        leaf(0x8000_0007, 0, false, [0, 0, 0, 1 << 8]), // invariant TSC
        leaf(
            0x8000_0008,
            0,
            false,
            [0x3000 | crate::mmu::page_walk::PHYS_BITS, 0, 0, 0],
        ),
    ]
}

/// The default leaves for the vCPU with this APIC id (leaf 1 EBX[31:24],
/// leaf 0xB EDX). Leaves set through `Vcpu::set_cpuid` are used as given,
/// as on KVM: the VMM puts the APIC id in them.
pub fn for_vcpu(apic_id: u32) -> Vec<CpuidEntry> {
    let mut v = supported();
    for e in v.iter_mut() {
        match e.function {
            1 => e.ebx = (e.ebx & 0x00ff_ffff) | (apic_id << 24),
            0xb => e.edx = apic_id,
            _ => {}
        }
    }
    v
}

impl Cpu {
    /// CPUID for (leaf, subleaf), with the dynamic bits (OSXSAVE).
    pub fn cpuid_query(&self, function: u32, index: u32) -> [u32; 4] {
        let max_basic = self
            .cpuid
            .iter()
            .find(|e| e.function == 0)
            .map_or(0, |e| e.eax);
        let max_ext = self
            .cpuid
            .iter()
            .find(|e| e.function == 0x8000_0000)
            .map_or(0, |e| e.eax);
        let f = if function >= 0x8000_0000 {
            if function > max_ext {
                max_basic
            } else {
                function
            }
        } else if function > max_basic {
            max_basic
        } else {
            function
        };
        let e = self
            .cpuid
            .iter()
            .find(|e| e.function == f && (!e.significant_index || e.index == index));
        let mut r = e.map_or([0; 4], |e| [e.eax, e.ebx, e.ecx, e.edx]);
        if f == 1 {
            if self.cr4 & kite_hypervisor::x86::CR4_OSXSAVE != 0 && r[2] & ecx1::XSAVE != 0 {
                r[2] |= ecx1::OSXSAVE;
            } else {
                r[2] &= !ecx1::OSXSAVE;
            }
        }
        r
    }
}
