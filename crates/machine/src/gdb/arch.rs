//! `KiteX86`: gdb's x86 register layouts, chosen per connection: i386 (the
//! 32-bit layout, for guests in real or protected mode) or x86-64. Both
//! carry the same `X86_64CoreRegs`; the narrow one is cut down to 32 bits
//! on the way out and widened on the way in.
//!
//! It must not know vCPUs or the protocol's transport.

use gdbstub::arch::{Arch, Registers};
use gdbstub_arch::x86::reg::id::X86_64CoreRegId;
use gdbstub_arch::x86::reg::{X86CoreRegs, X86_64CoreRegs};

/// The target description gdb gets for each layout.
pub const XML_X86_64: &str = r#"<?xml version="1.0"?><!DOCTYPE target SYSTEM "gdb-target.dtd"><target version="1.0"><architecture>i386:x86-64</architecture><feature name="org.gnu.gdb.i386.sse"></feature></target>"#;
pub const XML_I386: &str = r#"<?xml version="1.0"?><!DOCTYPE target SYSTEM "gdb-target.dtd"><target version="1.0"><architecture>i386</architecture><feature name="org.gnu.gdb.i386.sse"></feature></target>"#;

/// The x86-64 'g' packet's size: a shorter one is the i386 layout.
const WIDE_BYTES: usize = 0x218;

pub enum KiteX86 {}

impl Arch for KiteX86 {
    type Usize = u64;
    type Registers = KiteRegs;
    type BreakpointKind = usize;
    type RegId = X86_64CoreRegId;

    fn target_description_xml() -> Option<&'static str> {
        // Chosen per connection (`TargetDescriptionXmlOverride`).
        None
    }
}

/// The registers, and which layout gdb reads them in.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct KiteRegs {
    pub wide: bool,
    pub regs: X86_64CoreRegs,
}

fn narrow(r: &X86_64CoreRegs) -> X86CoreRegs {
    let g = &r.regs; // rax rbx rcx rdx rsi rdi rbp rsp
    let mut xmm = [0u128; 8];
    xmm.copy_from_slice(&r.xmm[..8]);
    X86CoreRegs {
        eax: g[0] as u32,
        ecx: g[2] as u32,
        edx: g[3] as u32,
        ebx: g[1] as u32,
        esp: g[7] as u32,
        ebp: g[6] as u32,
        esi: g[4] as u32,
        edi: g[5] as u32,
        eip: r.rip as u32,
        eflags: r.eflags,
        segments: r.segments.clone(),
        st: r.st,
        fpu: r.fpu.clone(),
        xmm,
        mxcsr: r.mxcsr,
    }
}

fn widen(n: &X86CoreRegs, into: &mut X86_64CoreRegs) {
    let g = &mut into.regs;
    g[0] = n.eax.into();
    g[1] = n.ebx.into();
    g[2] = n.ecx.into();
    g[3] = n.edx.into();
    g[4] = n.esi.into();
    g[5] = n.edi.into();
    g[6] = n.ebp.into();
    g[7] = n.esp.into();
    into.rip = n.eip.into();
    into.eflags = n.eflags;
    into.segments = n.segments.clone();
    into.st = n.st;
    into.fpu = n.fpu.clone();
    into.xmm[..8].copy_from_slice(&n.xmm);
    into.mxcsr = n.mxcsr;
}

impl Registers for KiteRegs {
    type ProgramCounter = u64;

    fn pc(&self) -> u64 {
        if self.wide {
            self.regs.rip
        } else {
            self.regs.rip & 0xffff_ffff
        }
    }

    fn gdb_serialize(&self, write_byte: impl FnMut(Option<u8>)) {
        if self.wide {
            self.regs.gdb_serialize(write_byte)
        } else {
            narrow(&self.regs).gdb_serialize(write_byte)
        }
    }

    fn gdb_deserialize(&mut self, bytes: &[u8]) -> Result<(), ()> {
        if bytes.len() >= WIDE_BYTES {
            self.wide = true;
            self.regs.gdb_deserialize(bytes)
        } else {
            self.wide = false;
            let mut n = X86CoreRegs::default();
            n.gdb_deserialize(bytes)?;
            widen(&n, &mut self.regs);
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(r: &KiteRegs) -> Vec<u8> {
        let mut out = Vec::new();
        r.gdb_serialize(|b| out.push(b.unwrap_or(0)));
        out
    }

    #[test]
    fn the_narrow_layout_is_i386s_and_round_trips() {
        let mut r = KiteRegs::default();
        r.regs.regs[0] = 0x1_1122_3344; // rax: the high half is cut
        r.regs.regs[1] = 0xbb; // rbx
        r.regs.regs[7] = 0x7000; // rsp
        r.regs.rip = 0x10_0055;
        let narrow = bytes(&r);
        // eax ecx edx ebx esp ...: gdb's i386 order.
        assert_eq!(narrow[0..4], 0x1122_3344u32.to_le_bytes());
        assert_eq!(narrow[12..16], 0xbbu32.to_le_bytes());
        assert_eq!(narrow[16..20], 0x7000u32.to_le_bytes());
        assert_eq!(narrow[32..36], 0x10_0055u32.to_le_bytes());
        assert!(narrow.len() < WIDE_BYTES);

        let mut back = KiteRegs::default();
        back.gdb_deserialize(&narrow).unwrap();
        assert!(!back.wide);
        assert_eq!(back.regs.regs[0], 0x1122_3344);
        assert_eq!((back.regs.regs[1], back.regs.regs[7]), (0xbb, 0x7000));
        assert_eq!(back.pc(), 0x10_0055);

        r.wide = true;
        let wide = bytes(&r);
        assert_eq!(wide.len(), WIDE_BYTES);
        let mut back = KiteRegs::default();
        back.gdb_deserialize(&wide).unwrap();
        assert!(back.wide);
        assert_eq!(back.regs, r.regs);
    }
}
